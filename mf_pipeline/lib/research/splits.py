"""Walk-forward split definitions (research.md §7.1) with an embargo, plus the ``full`` split.

A split is identified by its train-end date (ISO string, usable as a partition key) or by
``full`` for the in-sample run. Train = dates <= train_end; then ``embargo_bars`` trading
dates of the panel calendar belong to neither side; test = the following dates up to
``test_end`` (default: end of data, the old expanding design). The embargo is counted on the
panel calendar (distinct trade dates of the frame) because a split is shared by all tickers.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import polars as pl

FULL_SPLIT_ID = "full"
DEFAULT_TRAIN_ENDS: tuple[str, ...] = (
    "2012-12-31",
    "2014-12-31",
    "2016-12-31",
    "2018-12-31",
    "2020-12-31",
)
DEFAULT_EMBARGO_BARS = 20
"""Longest default forward horizon (``fwd_ret_20``); labels.check_embargo enforces >=."""


@dataclass(frozen=True)
class Split:
    """One research partition. ``train_end is None`` means the in-sample ``full`` split."""

    split_id: str
    train_end: date | None
    embargo_bars: int = DEFAULT_EMBARGO_BARS
    test_end: date | None = None

    @property
    def in_sample(self) -> bool:
        """True for ``full``: fit and evaluation rows coincide, so every metric is in-sample."""
        return self.train_end is None

    @property
    def kind(self) -> str:
        return "full_in_sample" if self.in_sample else "walk_forward"


def full_split() -> Split:
    """The in-sample split: fit and predict on all rows, labelled as such downstream."""
    return Split(split_id=FULL_SPLIT_ID, train_end=None, embargo_bars=0)


def parse_train_ends(values: str | Iterable[str | date]) -> list[date]:
    """Comma-separated string or iterable of ISO dates → deduplicated, ascending dates."""
    items = values.split(",") if isinstance(values, str) else list(values)
    out: set[date] = set()
    for v in items:
        if isinstance(v, date):
            out.add(v)
        elif str(v).strip():
            out.add(date.fromisoformat(str(v).strip()))
    return sorted(out)


def walkforward_splits(
    train_ends: str | Iterable[str | date] = DEFAULT_TRAIN_ENDS,
    embargo_bars: int = DEFAULT_EMBARGO_BARS,
    max_splits: int | None = None,
    include_full: bool = True,
    test_end: date | None = None,
) -> list[Split]:
    """Splits for the train-end list (sorted, deduplicated, first ``max_splits``), then ``full``."""
    if embargo_bars < 0:
        raise ValueError("embargo_bars must be >= 0")
    ends = parse_train_ends(train_ends)
    if max_splits is not None:
        ends = ends[: max(0, int(max_splits))]
    splits = [
        Split(split_id=d.isoformat(), train_end=d, embargo_bars=embargo_bars, test_end=test_end)
        for d in ends
    ]
    if include_full:
        splits.append(full_split())
    return splits


def split_from_id(
    split_id: str, embargo_bars: int = DEFAULT_EMBARGO_BARS, test_end: date | None = None
) -> Split:
    """Rebuild a split from its partition key."""
    if split_id == FULL_SPLIT_ID:
        return full_split()
    return Split(split_id, date.fromisoformat(split_id), embargo_bars, test_end)


@dataclass(frozen=True)
class ResolvedSplit:
    """A split placed on a concrete calendar: the actual date boundaries of each segment."""

    split: Split
    train_first: date
    train_last: date
    embargo_first: date | None
    embargo_last: date | None
    test_start: date | None
    test_end: date | None

    def payload(self) -> dict[str, Any]:
        s = self.split

        def iso(d: date | None) -> str | None:
            return d.isoformat() if d else None

        return {
            "split_id": s.split_id,
            "split_kind": s.kind,
            "in_sample": s.in_sample,
            "split_mode": "none" if s.in_sample else "time",
            "train_end": iso(s.train_end),
            "embargo_bars": s.embargo_bars,
            "embargo_first_date": iso(self.embargo_first),
            "embargo_last_date": iso(self.embargo_last),
            "test_start": iso(self.test_start),
            "test_end": iso(self.test_end),
            "train_first_date": iso(self.train_first),
            "train_last_date": iso(self.train_last),
        }


def trade_calendar(trade_dates: pl.Series | Sequence[date]) -> np.ndarray:
    """Sorted distinct dates as datetime64[D] (the panel calendar the embargo counts on)."""
    s = trade_dates if isinstance(trade_dates, pl.Series) else pl.Series(list(trade_dates))
    s = s.cast(pl.Date).drop_nulls().unique().sort()
    return s.to_numpy().astype("datetime64[D]")


def resolve_split(split: Split, trade_dates: pl.Series | Sequence[date]) -> ResolvedSplit:
    """Place ``split`` on the calendar of ``trade_dates``; error if train or test is empty."""
    cal = trade_calendar(trade_dates)
    if cal.size == 0:
        raise ValueError("no trade dates")

    def to_date(x: np.datetime64) -> date:
        return x.astype(object)

    if split.in_sample:
        return ResolvedSplit(split, to_date(cal[0]), to_date(cal[-1]), None, None, None, None)
    n_train = int(np.searchsorted(cal, np.datetime64(split.train_end, "D"), side="right"))
    if n_train == 0:
        raise ValueError(f"split {split.split_id}: no trade date on or before train_end")
    first_test = n_train + split.embargo_bars
    if first_test >= cal.size:
        raise ValueError(
            f"split {split.split_id}: no trade date left after train_end + "
            f"{split.embargo_bars} embargo bars"
        )
    test_end = to_date(cal[-1]) if split.test_end is None else split.test_end
    test_start = to_date(cal[first_test])
    if test_end < test_start:
        raise ValueError(f"split {split.split_id}: test_end {test_end} < test_start {test_start}")
    emb = cal[n_train:first_test]
    return ResolvedSplit(
        split=split,
        train_first=to_date(cal[0]),
        train_last=to_date(cal[n_train - 1]),
        embargo_first=to_date(emb[0]) if emb.size else None,
        embargo_last=to_date(emb[-1]) if emb.size else None,
        test_start=test_start,
        test_end=test_end,
    )


def infeasible_reason(split: Split, trade_dates: pl.Series | Sequence[date]) -> str | None:
    """Why ``split`` cannot be fitted on this calendar (no train or no test dates), else None."""
    try:
        resolve_split(split, trade_dates)
    except ValueError as error:
        return str(error)
    return None
