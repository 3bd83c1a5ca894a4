"""Numba kernels for bootstrap replicate statistics from resampling weights.

A bootstrap replicate that draws resampling unit ``u`` (a date, or a row in the iid mode)
``w[u]`` times is the original sample with every value repeated ``w`` times. Its median is
therefore a weighted median with integer weights, found by walking the values in ascending
order and accumulating weights; no replicate is ever materialised. The walk starts at the
observed median, where the caller already knows the weight below (one matrix product for all
replicates), so it only covers the distance the replicate median moved.
"""

from __future__ import annotations

import numpy as np

from mf_pipeline.lib.kernels.jit import njit


@njit(cache=True)
def _value_at_rank(
    sorted_vals: np.ndarray,
    units: np.ndarray,
    w: np.ndarray,
    rank: float,
    pos: int,
    below: float,
) -> tuple[float, int, float]:
    """Value at 0-based ``rank`` of the expanded sample, starting from position ``pos`` whose
    preceding values carry ``below`` weight; returns (value, position, weight below it)."""
    while below > rank:
        pos -= 1
        below -= w[units[pos]]
    while below + w[units[pos]] <= rank:
        below += w[units[pos]]
        pos += 1
    return sorted_vals[pos], pos, below


@njit(cache=True)
def weighted_medians(
    sorted_vals: np.ndarray,
    units: np.ndarray,
    weights: np.ndarray,
    start: int,
    below: np.ndarray,
    total: np.ndarray,
    out: np.ndarray,
) -> None:
    """Median of every replicate: ``out[b]`` = median of ``sorted_vals`` with value ``i``
    repeated ``weights[b, units[i]]`` times (numpy's definition: the mean of the two middle
    values when the expanded size is even).

    ``sorted_vals`` ascending (float64), ``units`` int64 unit of each value, ``weights``
    float64 (replicates x units) holding integer counts, ``below[b]`` the weight of positions
    ``< start`` and ``total[b]`` the replicate's total weight. A replicate of total weight 0
    (none of its units drawn) gives NaN.
    """
    for b in range(weights.shape[0]):
        n = total[b]
        if n <= 0.0:
            out[b] = np.nan
            continue
        w = weights[b]
        r1 = np.floor((n - 1.0) / 2.0)
        r2 = np.floor(n / 2.0)
        v1, pos, c = _value_at_rank(sorted_vals, units, w, r1, start, below[b])
        if r2 == r1:
            out[b] = v1
        else:
            v2, pos, c = _value_at_rank(sorted_vals, units, w, r2, pos, c)
            out[b] = 0.5 * (v1 + v2)


@njit(cache=True)
def draw_counts(idx: np.ndarray, out: np.ndarray) -> None:
    """``out[b, i]`` = how often row ``i`` occurs in iid draw ``idx[b]`` (``out`` zeroed by
    the caller; float64 so it feeds the weighted statistics directly)."""
    for b in range(idx.shape[0]):
        for j in range(idx.shape[1]):
            out[b, idx[b, j]] += 1.0
