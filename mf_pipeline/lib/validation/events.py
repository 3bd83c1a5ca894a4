"""Transition event study: what happens around the bar where a ticker's state changes.

research.md §6.3 with three faults of the old tool fixed:

* #21 codes are the strings ``"prev->next"`` (``"-1->3"`` for HDBSCAN noise), never the
  ambiguous integer ``prev*1000 + next``; ``prev_state_id`` / ``next_state_id`` keep the ids.
* #22 a state change across a date gap wider than ``max_gap_days`` calendar days (a halt, a
  delisting and relisting, rows dropped upstream) is not an event; an event window covers only
  the run of the state left (pre) and the run of the state entered (post), so it stops at the
  neighbouring transitions and at gaps, and ``rel_bar = +k`` really means "k bars into the new
  state". The path summary is filtered by ``min_events_per_transition`` like the summary.
* #29 all per-row work is one Numba pass (:mod:`mf_pipeline.lib.kernels.validation_windows`).

Daily returns that span a gap are NaN, so a cut window never starts with a multi-week return.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.kernels.offsets import bar_index, kernel_array, ticker_offsets
from mf_pipeline.lib.kernels.validation_windows import event_paths, state_runs
from mf_pipeline.lib.research.labels import FORWARD_RETURN_COLUMNS

EVENT_CONTEXT_COLUMNS: tuple[str, ...] = (
    "tmf_21",
    "flow_bias_20",
    "oscillation_index_20",
    "flow_activity_20",
)
TOP_CODES = 20
PATH_COLUMNS = ("daily_ret_1_mean", "abs_daily_ret_mean", "cumulative_ret_from_event_mean")


@dataclass
class EventStudy:
    """The four artefacts of one event study (spec §6.3 steps 3, 5, 6, 7)."""

    events: pl.DataFrame
    summary: pl.DataFrame
    path_summary: pl.DataFrame
    top_codes: dict[str, Any]


def _grouped_offsets(df: pl.DataFrame) -> np.ndarray | None:
    """Ticker offsets when each ticker is one block with strictly increasing dates, else None."""
    try:
        offsets = ticker_offsets(df["ticker"])
    except ValueError:
        return None
    step = np.diff(df["trade_date"].cast(pl.Int64).to_numpy())
    return None if (step[bar_index(offsets)[1:] > 0] <= 0).any() else offsets


def ordered_panel(frame: pl.DataFrame, columns: Sequence[str]) -> tuple[pl.DataFrame, np.ndarray]:
    """``columns`` of the rows with a date and a state, sorted by (ticker, trade_date), + offsets.

    The adapted frame is already sorted, so this is one check and the sort only happens for
    other input. A ticker with two rows on one date is an error: "the previous row" would be
    ambiguous.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks required columns {missing}")
    df = frame.select(columns).drop_nulls(["trade_date", "state_id"])
    offsets = _grouped_offsets(df)
    if offsets is None:
        df = df.sort("ticker", "trade_date")
        offsets = _grouped_offsets(df)
        if offsets is None:
            raise ValueError("the frame has duplicate (ticker, trade_date) rows")
    return df, offsets


def _finite(col: str) -> pl.Expr:
    return pl.when(pl.col(col).is_finite()).then(pl.col(col)).otherwise(None).alias(col)


def _event_frame(
    df: pl.DataFrame, rows: np.ndarray, offsets: np.ndarray, fwd: list[str], ctx: list[str]
) -> pl.DataFrame:
    """The event records (spec §6.3 step 3) of the event rows ``rows``."""
    state = df["state_id"].cast(pl.Int32).to_numpy()
    tick = np.searchsorted(offsets, rows, side="right") - 1
    first = np.searchsorted(tick, tick, side="left")
    prev = pl.Series("prev_state_id", state[rows - 1], dtype=pl.Int32)
    nxt = pl.Series("next_state_id", state[rows], dtype=pl.Int32)
    at = df[rows]
    return (
        pl.DataFrame(
            [
                at["ticker"],
                at["trade_date"].alias("event_trade_date"),
                prev,
                nxt,
                nxt.alias("state_id"),
            ]
        )
        .with_columns(
            pl.format("{}->{}", "prev_state_id", "next_state_id").alias("transition_code"),
            pl.Series("event_index_in_ticker", np.arange(rows.size) - first, dtype=pl.Int64),
            *[at[c].cast(pl.Float64) for c in ctx + fwd],
        )
        .with_columns(*[_finite(c) for c in ctx + fwd])
    )


def _summary(events: pl.DataFrame, fwd: list[str], ctx: list[str], min_events: int) -> pl.DataFrame:
    """Per transition: event count, forward mean/median/hit rate, context means (spec step 6)."""
    aggs: list[pl.Expr] = [pl.len().cast(pl.Int64).alias("count_events")]
    for c in fwd:
        n = pl.col(c).count()
        aggs += [
            pl.col(c).mean().alias(f"{c}_mean"),
            pl.col(c).median().alias(f"{c}_median"),
            pl.when(n > 0).then((pl.col(c) > 0).sum() / n).alias(f"{c}_hit_rate"),
        ]
    aggs += [pl.col(c).mean().alias(f"{c}_mean") for c in ctx]
    keys = ["transition_code", "prev_state_id", "next_state_id"]
    return (
        events.group_by(keys)
        .agg(aggs)
        .sort(["count_events", "prev_state_id", "next_state_id"], descending=[True, False, False])
        .filter(pl.col("count_events") >= min_events)
    )


def _path_summary(
    count: np.ndarray, sums: np.ndarray, finite: np.ndarray, codes: pl.DataFrame, window_pre: int
) -> pl.DataFrame:
    """Rows (code, rel_bar) with at least one point, in code order then rel_bar."""
    c, r = np.nonzero(count)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = sums[c, r] / finite[c, r]
    return pl.DataFrame(
        {
            "transition_code": codes["transition_code"].gather(c),
            "rel_bar": pl.Series(r - window_pre, dtype=pl.Int32),
            "count_points": pl.Series(count[c, r], dtype=pl.Int64),
            **{name: pl.Series(means[:, k]).fill_nan(None) for k, name in enumerate(PATH_COLUMNS)},
        }
    )


def transition_event_study(
    frame: pl.DataFrame,
    *,
    window_pre: int = 10,
    window_post: int = 20,
    min_events_per_transition: int = 50,
    max_gap_days: int = 7,
) -> EventStudy:
    """Events, per-transition summary, path summary and top codes of an adapted frame.

    Needs ``ticker, trade_date, state_id, close``; forward returns (``fwd_ret_5/10/20``) and
    context columns (``tmf_21, flow_bias_20, oscillation_index_20, flow_activity_20``) are used
    when present. The summary is sorted by event count (descending) and keeps transitions with
    at least ``min_events_per_transition`` events; the path summary keeps the same transitions.
    """
    if window_pre < 0 or window_post < 0:
        raise ValueError("window_pre and window_post must be >= 0")
    if max_gap_days < 1:
        raise ValueError("max_gap_days must be >= 1")
    fwd = [c for c in FORWARD_RETURN_COLUMNS if c in frame.columns]
    ctx = [c for c in EVENT_CONTEXT_COLUMNS if c in frame.columns]
    df, offsets = ordered_panel(frame, ["ticker", "trade_date", "state_id", "close", *ctx, *fwd])
    n = df.height
    state = np.array(df["state_id"].cast(pl.Int32).to_numpy(), dtype=np.int32)
    day = np.array(df["trade_date"].cast(pl.Int64).to_numpy(), dtype=np.int64)
    close = kernel_array(df["close"])
    run_start = np.empty(n, dtype=np.int64)
    run_end = np.empty(n, dtype=np.int64)
    is_event = np.empty(n, dtype=np.bool_)
    daily_ret = np.empty(n, dtype=np.float64)
    state_runs(
        state, day, close, offsets, int(max_gap_days), run_start, run_end, is_event, daily_ret
    )
    rows = np.flatnonzero(is_event)

    events = _event_frame(df, rows, offsets, fwd, ctx)
    key = events["prev_state_id"].to_numpy().astype(np.int64) * (1 << 32) + (
        events["next_state_id"].to_numpy().astype(np.int64) + (1 << 31)
    )
    uniq, first, code_idx = np.unique(key, return_index=True, return_inverse=True)
    codes = events.select("transition_code")[first]
    width = window_pre + window_post + 1
    count = np.zeros((uniq.size, width), dtype=np.int64)
    sums = np.zeros((uniq.size, width, 3), dtype=np.float64)
    finite = np.zeros((uniq.size, width, 3), dtype=np.int64)
    event_paths(
        rows.astype(np.int64),
        code_idx.astype(np.int64),
        run_start,
        run_end,
        close,
        daily_ret,
        int(window_pre),
        int(window_post),
        count,
        sums,
        finite,
    )

    summary = _summary(events, fwd, ctx, min_events_per_transition)
    path = _path_summary(count, sums, finite, codes, window_pre).filter(
        pl.col("transition_code").is_in(summary["transition_code"].implode())
    )
    top_codes = {
        "generated_ts": dt.date.today().isoformat(),
        "min_events_per_transition": int(min_events_per_transition),
        "max_gap_days": int(max_gap_days),
        "top_transitions": summary.head(TOP_CODES).to_dicts(),
    }
    return EventStudy(events=events, summary=summary, path_summary=path, top_codes=top_codes)
