"""Forward outcome labels (research.md §3), computed per split so train never sees test prices.

The old tool labelled the whole frame before splitting, so train rows near ``train_end`` read
test-period closes. Here each segment (train, test) is labelled from its own rows only: a
train label whose horizon crosses ``train_end`` is null (purged), and an embargo of at least
the longest horizon separates the segments. Horizons are row offsets within a ticker, as in
the old tool.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from mf_pipeline.lib.kernels.offsets import bar_index, ticker_offsets
from mf_pipeline.lib.research.splits import ResolvedSplit, Split, resolve_split

FORWARD_COLUMNS: tuple[str, ...] = (
    "fwd_ret_5",
    "fwd_ret_10",
    "fwd_ret_20",
    "fwd_abs_ret_10",
    "fwd_vol_proxy_10",
)
FORWARD_RETURN_COLUMNS: tuple[str, ...] = ("fwd_ret_5", "fwd_ret_10", "fwd_ret_20")
DEFAULT_WINDOWS: tuple[int, ...] = (5, 10, 20)
DEFAULT_VOL_HORIZON = 10


def normalize_windows(windows: Sequence[int]) -> tuple[int, ...]:
    """Positive, deduplicated, ascending horizons; error if none remain."""
    out = tuple(sorted({int(w) for w in windows if int(w) > 0}))
    if not out:
        raise ValueError("forward windows must contain at least one positive integer")
    return out


def label_horizon(
    windows: Sequence[int] = DEFAULT_WINDOWS, vol_horizon: int = DEFAULT_VOL_HORIZON
) -> int:
    """Bars a label looks ahead at most: the minimum embargo that keeps segments apart."""
    return max(*normalize_windows(windows), int(vol_horizon))


def _sort_keys(frame: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in ("ticker", "trade_date", "close") if c not in frame.columns]
    if missing:
        raise ValueError(f"forward labels need columns {missing}")
    return frame.sort("ticker", "trade_date")


def add_forward_labels(
    frame: pl.DataFrame,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    vol_horizon: int = DEFAULT_VOL_HORIZON,
) -> pl.DataFrame:
    """Sort by (ticker, trade_date) and add ``fwd_ret_h``, ``fwd_abs_ret_10``, ``fwd_vol_proxy_10``.

    ``fwd_ret_h[t] = close[t+h]/close[t] - 1`` with ``t+h`` the h-th next row of the ticker;
    ``fwd_vol_proxy_10`` = population std of the next ``vol_horizon`` daily returns (all must be
    finite). Every label is finite or null. Existing label columns are overwritten.
    """
    wins = normalize_windows(windows)
    vh = int(vol_horizon)
    if vh < 1:
        raise ValueError("vol_horizon must be >= 1")
    df = _sort_keys(frame)
    n = df.height
    offsets = ticker_offsets(df["ticker"])
    pos = bar_index(offsets)
    remaining = np.repeat(np.diff(offsets), np.diff(offsets)) - pos - 1
    close = df["close"].cast(pl.Float64).to_numpy().astype(np.float64, copy=True)

    cols: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for h in wins:
            out = np.full(n, np.nan)
            idx = np.flatnonzero(remaining >= h)
            out[idx] = close[idx + h] / close[idx] - 1.0
            cols[f"fwd_ret_{h}"] = out
        if 10 in wins:
            cols["fwd_abs_ret_10"] = np.abs(cols["fwd_ret_10"])
        daily = np.full(n, np.nan)
        if n > 1:
            daily[1:] = close[1:] / close[:-1] - 1.0
        daily[pos == 0] = np.nan
        daily[~np.isfinite(daily)] = np.nan
        # Row t's window is daily[t+1 .. t+vh]; NaN anywhere in it makes the std NaN (null).
        padded = np.concatenate([daily[1:], np.full(vh, np.nan)])
        vol = sliding_window_view(padded, vh)[:n].std(axis=1)
        vol[remaining < vh] = np.nan
        cols["fwd_vol_proxy_10"] = vol
    series = []
    for name, arr in cols.items():
        arr[~np.isfinite(arr)] = np.nan
        series.append(pl.Series(name, arr, dtype=pl.Float64, nan_to_null=True))
    return df.with_columns(series)


def check_embargo(split: Split, windows: Sequence[int], vol_horizon: int) -> None:
    """Refuse a walk-forward split whose embargo is shorter than the longest label horizon."""
    need = label_horizon(windows, vol_horizon)
    if not split.in_sample and split.embargo_bars < need:
        raise ValueError(
            f"split {split.split_id}: embargo_bars={split.embargo_bars} < longest forward "
            f"horizon {need}"
        )


def _stats(df: pl.DataFrame | None) -> dict[str, Any] | None:
    if df is None:
        return None
    if df.height == 0:
        return {"rows": 0, "tickers": 0, "min_trade_date": None, "max_trade_date": None}
    lo, hi = df["trade_date"].min(), df["trade_date"].max()
    return {
        "rows": df.height,
        "tickers": df["ticker"].n_unique(),
        "min_trade_date": lo.isoformat() if lo else None,
        "max_trade_date": hi.isoformat() if hi else None,
    }


@dataclass(frozen=True)
class SplitFrames:
    """Labelled segments of one split; ``test`` is None for the in-sample ``full`` split."""

    resolved: ResolvedSplit
    train: pl.DataFrame
    test: pl.DataFrame | None
    summary: dict[str, Any]


def labelled_split(
    frame: pl.DataFrame,
    split: Split,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    vol_horizon: int = DEFAULT_VOL_HORIZON,
) -> SplitFrames:
    """Cut ``frame`` by ``split`` and label each segment from its own rows only.

    Train rows are ``trade_date <= train_end``, test rows lie in ``[test_start, test_end]``
    (after the embargo); embargo rows are discarded. ``full`` labels the whole frame once and
    marks the result in-sample.
    """
    check_embargo(split, windows, vol_horizon)
    df = _sort_keys(frame)
    if df["trade_date"].dtype != pl.Date:
        df = df.with_columns(pl.col("trade_date").cast(pl.Date, strict=True))
    if df["trade_date"].null_count():
        raise ValueError(f"{df['trade_date'].null_count()} rows have a null trade_date")
    resolved = resolve_split(split, df["trade_date"])
    if split.in_sample:
        train = add_forward_labels(df, windows, vol_horizon)
        test = None
        embargo_rows = 0
    else:
        td = pl.col("trade_date")
        train_raw = df.filter(td <= split.train_end)
        test_raw = df.filter((td >= resolved.test_start) & (td <= resolved.test_end))
        if test_raw.height == 0:
            raise ValueError(f"split {split.split_id}: empty test segment")
        embargo_rows = df.height - train_raw.height - test_raw.height
        embargo_rows -= df.filter(td > resolved.test_end).height
        train = add_forward_labels(train_raw, windows, vol_horizon)
        test = add_forward_labels(test_raw, windows, vol_horizon)
    summary = {
        **resolved.payload(),
        "label_horizon_bars": label_horizon(windows, vol_horizon),
        "forward_windows": list(normalize_windows(windows)),
        "labels_computed_per_segment": True,
        "raw_stats": {"all": _stats(df), "train": _stats(train), "test": _stats(test)},
        "rows_embargoed": int(embargo_rows),
    }
    return SplitFrames(resolved=resolved, train=train, test=test, summary=summary)
