"""Per-ticker row offsets and bar indices for long frames sorted by ticker.

Every kernel in this package walks one flat array per column and learns where each ticker's
rows start from an ``offsets`` array: ticker ``t`` owns rows ``offsets[t]:offsets[t + 1]``.
Building it is one vectorised pass over the ticker column, so no code ever loops over tickers
in Python.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def ticker_offsets(ticker_col: pl.Series) -> np.ndarray:
    """Return int64 offsets (length ``n_tickers + 1``) of the ticker runs in ``ticker_col``.

    The column must hold each ticker as one contiguous block (a frame sorted by ticker);
    a ticker that appears in two separate blocks raises ``ValueError``, because a kernel would
    otherwise silently restart its recursion in the middle of that ticker. Nulls count as one
    key of their own. An empty column gives ``[0]``.
    """
    n = ticker_col.len()
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    is_start = ticker_col.ne_missing(ticker_col.shift(1))
    starts = is_start.arg_true().cast(pl.Int64).to_numpy()
    if not ticker_col.gather(starts).is_unique().all():
        raise ValueError(
            f"column {ticker_col.name!r} is not grouped: a ticker occurs in more than one "
            "contiguous block; sort the frame by ticker first"
        )
    offsets = np.empty(starts.shape[0] + 1, dtype=np.int64)
    offsets[:-1] = starts
    offsets[-1] = n
    return offsets


def bar_index(offsets: np.ndarray) -> np.ndarray:
    """Return the 0-based row index inside its ticker (``i_t`` of the spec) for every row.

    Masking a whole-column ``shift(k)`` with ``bar_index >= k`` gives a per-ticker lag without
    a grouped ``over()``; likewise a whole-column rolling window of width ``W`` is exact where
    ``bar_index >= W - 1``.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    n = int(offsets[-1])
    counts = np.diff(offsets)
    return np.arange(n, dtype=np.int64) - np.repeat(offsets[:-1], counts)


def kernel_array(values: pl.Series | np.ndarray) -> np.ndarray:
    """A Float64 column (or array) as the one input type every kernel is compiled for.

    Numba compiles a kernel once per argument type, and read-only and writable arrays are
    different types: Polars hands out a read-only zero-copy view for a column without nulls
    but a writable copy (nulls as NaN) otherwise. Marking every input read-only, which costs
    nothing, keeps it to one compilation (~1 s each when the on-disk cache is cold).
    """
    if isinstance(values, pl.Series):
        return readonly(values.cast(pl.Float64).to_numpy())
    return readonly(np.ascontiguousarray(values, dtype=np.float64))


def readonly(arr: np.ndarray) -> np.ndarray:
    """``arr`` as a read-only array (a view when it is writable): one Numba type for a kernel
    input however NumPy or Polars produced it (see :func:`kernel_array`)."""
    if not arr.flags.writeable:
        return arr
    view = arr.view()
    view.flags.writeable = False
    return view
