"""Numba per-ticker counters for event and feature layers (bars since an event, run lengths).

Same conventions as :mod:`mf_pipeline.lib.kernels.recursive`: flat arrays over a frame sorted
by ticker, ``offsets`` from :func:`~mf_pipeline.lib.kernels.offsets.ticker_offsets`, outputs
preallocated by the caller, one call for all tickers, state reset at every ticker start.

Integer outputs cannot hold NaN, so "null" is the sentinel ``-1``; turn it into a real null
with :func:`sentinel_to_null`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from mf_pipeline.lib.kernels.jit import njit
from mf_pipeline.lib.kernels.recursive import (
    begin_state,
    check_offsets,
    check_resume,
    whole_tickers,
)

NULL_SENTINEL = -1


BARS_SINCE_FRESH = np.array([-1.0])  # bars since the last event; -1: none yet
RUN_FRESH = np.array([0.0])  # length of the run ending at the previous row


@njit(cache=True)
def bars_since(flag: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    """Bars since the most recent row ``<= t`` of the same ticker where ``flag`` is True.

    ``out[t] = i_t - i_last_event``: 0 on the event bar itself, counting up afterwards, reset
    to 0 only when the flag fires again (spec §7.4). Before the ticker's first event the
    value is null, written as ``-1`` (:data:`NULL_SENTINEL`). ``flag`` is a bool array (fill
    nulls with False first, as the event layer does); ``out`` is an integer array, normally
    int32 to match the ``bs_*`` columns. Only rows at or before ``t`` are read (causal).
    """
    start, scratch = whole_tickers(offsets, 1)
    bars_since_resume(flag, offsets, start, scratch, scratch, out)


@njit(cache=True)
def bars_since_resume(
    flag: np.ndarray,
    offsets: np.ndarray,
    start: np.ndarray,
    init: np.ndarray,
    final: np.ndarray,
    out: np.ndarray,
) -> None:
    """:func:`bars_since` emitting rows ``start[t]:`` of each ticker from state ``init[t]``.

    State per ticker (n_tickers x 1): the counter at the row before ``start[t]`` (-1: no
    event yet), since the last event may lie any number of bars back.
    """
    n = flag.shape[0]
    if out.shape[0] != n:
        raise ValueError("out must have the same length as flag")
    check_offsets(offsets, n)
    check_resume(offsets, start, init, final, 1)
    for t in range(offsets.shape[0] - 1):
        begin_state(offsets, start, init, final, BARS_SINCE_FRESH, t)
        since = int(final[t, 0])
        for i in range(start[t], offsets[t + 1]):
            if flag[i]:
                since = 0
            elif since >= 0:
                since += 1
            out[i] = since if since >= 0 else NULL_SENTINEL
        final[t, 0] = since


@njit(cache=True)
def run_length(values: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    """Length of the current run of equal ``values`` ending at row ``t`` within its ticker.

    1 on a ticker's first row and wherever the value differs from the previous row's, else the
    previous row's run length + 1 (e.g. bars spent in the current state, counting this one).
    ``values`` is an integer array (encode nulls as a sentinel code first: a null is then a
    state like any other); ``out`` is an integer array (int32 is enough). Causal.
    """
    start, scratch = whole_tickers(offsets, 1)
    run_length_resume(values, offsets, start, scratch, scratch, out)


@njit(cache=True)
def run_length_resume(
    values: np.ndarray,
    offsets: np.ndarray,
    start: np.ndarray,
    init: np.ndarray,
    final: np.ndarray,
    out: np.ndarray,
) -> None:
    """:func:`run_length` emitting rows ``start[t]:`` of each ticker from state ``init[t]``.

    State per ticker (n_tickers x 1): the run length at the row before ``start[t]``; that
    row's value is read from the context, so one context row is needed.
    """
    n = values.shape[0]
    if out.shape[0] != n:
        raise ValueError("out must have the same length as values")
    check_offsets(offsets, n)
    check_resume(offsets, start, init, final, 1)
    for t in range(offsets.shape[0] - 1):
        first = offsets[t]
        begin_state(offsets, start, init, final, RUN_FRESH, t)
        run = int(final[t, 0])
        for i in range(start[t], offsets[t + 1]):
            if i > first and values[i] == values[i - 1]:
                run += 1
            else:
                run = 1
            out[i] = run
        final[t, 0] = run


def sentinel_to_null(
    name: str, values: np.ndarray, sentinel: int = NULL_SENTINEL, dtype: pl.DataType = pl.Int32
) -> pl.Series:
    """Wrap a counter array as a Polars Series of ``dtype`` with ``sentinel`` turned into null."""
    s = pl.Series(name, values, dtype=dtype)
    return pl.select(pl.when(s != sentinel).then(s).alias(name)).to_series()
