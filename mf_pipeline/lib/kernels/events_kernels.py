"""Numba kernels for the Gold event and feature layers.

Every kernel walks a flat, (ticker, trade_date)-sorted array once. Ticker ``g`` owns rows
``offsets[g] .. offsets[g + 1] - 1`` (``offsets`` is int64 of length n_tickers + 1), so no state
ever crosses a ticker boundary. Outputs are allocated by the caller (NumPy allocations are
cheaper to fault in than Numba's, see notes/perf_anchors.md) and filled in place.

All kernels are causal: the value at row t reads rows <= t of the same ticker only.

Null convention: counters that are undefined (no event yet) are written as ``-1``; the polars
layer turns negative values into nulls.
"""

import numpy as np

from mf_pipeline.lib.kernels.jit import njit
from mf_pipeline.lib.kernels.recursive import begin_state, check_resume, whole_tickers

TRUE_RUN_FRESH = np.array([0.0])  # consecutive True rows ending at the previous row
SUM_FRESH = np.array([0.0, 0.0])  # (running sum, rows since the last re-summation)


@njit(cache=True)
def true_run_length(flags: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    """Number of consecutive True rows ending at t (0 when row t is False).

    ``out >= H`` is "the last H bars all satisfied the condition", which needs H real rows of
    the ticker, so it is never True on the first H-1 rows.
    """
    start, scratch = whole_tickers(offsets, 1)
    true_run_length_resume(flags, offsets, start, scratch, scratch, out)


@njit(cache=True)
def true_run_length_resume(
    flags: np.ndarray,
    offsets: np.ndarray,
    start: np.ndarray,
    init: np.ndarray,
    final: np.ndarray,
    out: np.ndarray,
) -> None:
    """:func:`true_run_length` emitting rows ``start[t]:`` from state ``init[t]`` (the run
    at the row before; n_tickers x 1), the run after the last row going to ``final[t]``."""
    check_resume(offsets, start, init, final, 1)
    for g in range(offsets.size - 1):
        begin_state(offsets, start, init, final, TRUE_RUN_FRESH, g)
        run = int(final[g, 0])
        for i in range(start[g], offsets[g + 1]):
            run = run + 1 if flags[i] else 0
            out[i] = run
        final[g, 0] = run


@njit(cache=True)
def event_in_lookback(
    flags: np.ndarray, offsets: np.ndarray, lookback: int, out: np.ndarray
) -> None:
    """True when ``flags`` fired on at least one row in t-lookback .. t-1 (t excluded).

    This is the respect-fail window of the event grammar: it looks *back* from the failure
    bar, so it never reads a bar after t. The window is shorter at the start of a ticker.
    """
    for g in range(offsets.size - 1):
        last = -1
        for i in range(offsets[g], offsets[g + 1]):
            out[i] = last >= 0 and i - last <= lookback
            if flags[i]:
                last = i


@njit(cache=True)
def rolling_sum_int(x: np.ndarray, offsets: np.ndarray, window: int, out: np.ndarray) -> None:
    """Trailing sum over rows t-window+1 .. t of an integer/boolean column (min samples 1).

    Partial windows at the start of a ticker sum what exists. Integer accumulation is exact.
    """
    for g in range(offsets.size - 1):
        start = offsets[g]
        acc = 0
        for i in range(start, offsets[g + 1]):
            acc += x[i]
            if i - window >= start:
                acc -= x[i - window]
            out[i] = acc


@njit(cache=True)
def rolling_sum_float(x: np.ndarray, offsets: np.ndarray, window: int, out: np.ndarray) -> None:
    """Trailing sum over rows t-window+1 .. t of a float64 column with no nulls (min samples 1).

    The running sum is re-summed from scratch every ``window`` rows so rounding cannot drift
    over long series; for the default score weights (multiples of 0.5) it is exact anyway.
    """
    start, scratch = whole_tickers(offsets, 2)
    rolling_sum_float_resume(x, offsets, window, start, scratch, scratch, out)


@njit(cache=True)
def rolling_sum_float_resume(
    x: np.ndarray,
    offsets: np.ndarray,
    window: int,
    start: np.ndarray,
    init: np.ndarray,
    final: np.ndarray,
    out: np.ndarray,
) -> None:
    """:func:`rolling_sum_float` emitting rows ``start[t]:`` from state ``init[t]``.

    State per ticker: ``(running sum, rows since the last re-summation)`` (n_tickers x 2),
    because both depend on the whole history; the window's values are read from the rows
    before ``start[t]``, so a resumed ticker needs ``window`` context rows.
    """
    check_resume(offsets, start, init, final, 2)
    for g in range(offsets.size - 1):
        first = offsets[g]
        begin_state(offsets, start, init, final, SUM_FRESH, g)
        acc = final[g, 0]
        since_reset = int(final[g, 1])
        for i in range(start[g], offsets[g + 1]):
            if since_reset >= window:
                acc = 0.0
                for j in range(max(first, i - window + 1), i + 1):
                    acc += x[j]
                since_reset = 0
            else:
                acc += x[i]
                if i - window >= first:
                    acc -= x[i - window]
                since_reset += 1
            out[i] = acc
        final[g, 0] = acc
        final[g, 1] = since_reset
