"""Numba kernels of the transition event study (validation, research.md §6.3).

Same conventions as the other kernels: flat arrays over a frame sorted by (ticker, trade_date),
``offsets`` from :func:`~mf_pipeline.lib.kernels.offsets.ticker_offsets`, outputs preallocated
by the caller, one call for all tickers.

A *run* is a maximal block of consecutive rows of one ticker with the same state and no date
gap wider than ``max_gap_days`` between neighbours. A transition event is the first row of a
run whose previous row belongs to the same ticker and is not separated by such a gap; its event
window is confined to the run it leaves (pre) and the run it enters (post), so no window ever
crosses another transition or a gap.
"""

from __future__ import annotations

import numpy as np

from mf_pipeline.lib.kernels.jit import njit


@njit(cache=True)
def state_runs(
    state: np.ndarray,
    day: np.ndarray,
    close: np.ndarray,
    offsets: np.ndarray,
    max_gap_days: int,
    run_start: np.ndarray,
    run_end: np.ndarray,
    is_event: np.ndarray,
    daily_ret: np.ndarray,
) -> None:
    """Run bounds, transition flags and gap-aware daily returns for every row.

    ``run_start[i]`` / ``run_end[i]``: first / last row (inclusive) of the run holding row i.
    ``is_event[i]``: row i starts a run and its previous row is the same ticker within
    ``max_gap_days`` calendar days (so the run starts because the state changed).
    ``daily_ret[i] = close[i]/close[i-1] - 1``; NaN on a ticker's first row, after a gap, and
    when either close is not finite or the previous close is 0 (a one-bar return that spans a
    gap is not a daily return).
    """
    for g in range(offsets.size - 1):
        a = offsets[g]
        b = offsets[g + 1]
        for i in range(a, b):
            gap = i == a or day[i] - day[i - 1] > max_gap_days
            changed = gap or state[i] != state[i - 1]
            run_start[i] = i if changed else run_start[i - 1]
            is_event[i] = changed and not gap
            ret = np.nan
            if not gap:
                prev = close[i - 1]
                if np.isfinite(prev) and np.isfinite(close[i]) and prev != 0.0:
                    ret = close[i] / prev - 1.0
            daily_ret[i] = ret
        for i in range(b - 1, a - 1, -1):
            if i == b - 1 or run_start[i + 1] == i + 1:
                run_end[i] = i
            else:
                run_end[i] = run_end[i + 1]


@njit(cache=True)
def event_paths(
    event_rows: np.ndarray,
    event_code: np.ndarray,
    run_start: np.ndarray,
    run_end: np.ndarray,
    close: np.ndarray,
    daily_ret: np.ndarray,
    window_pre: int,
    window_post: int,
    count: np.ndarray,
    sums: np.ndarray,
    finite: np.ndarray,
) -> None:
    """Accumulate the event paths per (transition code, rel_bar).

    Event ``e`` at row ``i`` covers rows ``max(i - window_pre, run_start[i - 1])`` ..
    ``min(i + window_post, run_end[i])``; ``rel_bar = row - i`` is stored at column
    ``rel_bar + window_pre``. ``count`` (codes x bars) counts the points; ``sums`` and
    ``finite`` (codes x bars x 3) hold the sum and the number of finite values of the daily
    return, its absolute value, and the cumulative return ``close[row]/close[i] - 1`` (finite
    event close != 0 only). All outputs must be zeroed by the caller.
    """
    for e in range(event_rows.size):
        i = event_rows[e]
        c = event_code[e]
        lo = max(i - window_pre, run_start[i - 1])
        hi = min(i + window_post, run_end[i])
        base = close[i]
        base_ok = np.isfinite(base) and base != 0.0
        for j in range(lo, hi + 1):
            r = j - i + window_pre
            count[c, r] += 1
            d = daily_ret[j]
            if np.isfinite(d):
                sums[c, r, 0] += d
                finite[c, r, 0] += 1
                sums[c, r, 1] += abs(d)
                finite[c, r, 1] += 1
            if base_ok:
                cum = close[j] / base - 1.0
                if np.isfinite(cum):
                    sums[c, r, 2] += cum
                    finite[c, r, 2] += 1
