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
from numba import njit

from mf_pipeline.lib.kernels.recursive import check_offsets

NULL_SENTINEL = -1


@njit(cache=True)
def bars_since(flag: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    """Bars since the most recent row ``<= t`` of the same ticker where ``flag`` is True.

    ``out[t] = i_t - i_last_event``: 0 on the event bar itself, counting up afterwards, reset
    to 0 only when the flag fires again (spec §7.4). Before the ticker's first event the
    value is null, written as ``-1`` (:data:`NULL_SENTINEL`). ``flag`` is a bool array (fill
    nulls with False first, as the event layer does); ``out`` is an integer array, normally
    int32 to match the ``bs_*`` columns. Only rows at or before ``t`` are read (causal).
    """
    n = flag.shape[0]
    if out.shape[0] != n:
        raise ValueError("out must have the same length as flag")
    check_offsets(offsets, n)
    for t in range(offsets.shape[0] - 1):
        last = -1
        for i in range(offsets[t], offsets[t + 1]):
            if flag[i]:
                last = i
            out[i] = i - last if last >= 0 else NULL_SENTINEL


@njit(cache=True)
def run_length(values: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    """Length of the current run of equal ``values`` ending at row ``t`` within its ticker.

    1 on a ticker's first row and wherever the value differs from the previous row's, else the
    previous row's run length + 1 (e.g. bars spent in the current state, counting this one).
    ``values`` is an integer array (encode nulls as a sentinel code first: a null is then a
    state like any other); ``out`` is an integer array (int32 is enough). Causal.
    """
    n = values.shape[0]
    if out.shape[0] != n:
        raise ValueError("out must have the same length as values")
    check_offsets(offsets, n)
    for t in range(offsets.shape[0] - 1):
        start = offsets[t]
        for i in range(start, offsets[t + 1]):
            if i > start and values[i] == values[i - 1]:
                out[i] = out[i - 1] + 1
            else:
                out[i] = 1


def sentinel_to_null(
    name: str, values: np.ndarray, sentinel: int = NULL_SENTINEL, dtype: pl.DataType = pl.Int32
) -> pl.Series:
    """Wrap a counter array as a Polars Series of ``dtype`` with ``sentinel`` turned into null."""
    s = pl.Series(name, values, dtype=dtype)
    return pl.select(pl.when(s != sentinel).then(s).alias(name)).to_series()
