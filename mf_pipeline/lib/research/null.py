"""Forward-return separation judged against a within-ticker permutation null (issue #17).

The statistic is the old tool's ``forward_separation_score``: max − min over states of the
mean finite ``fwd_ret_10`` (the per-state mean of the profile). Its size depends on how many
states there are, how small the smallest is and how long states persist (overlapping 10-bar
labels inside one run are strongly correlated), so a fixed threshold (the old 0.002) says
little: pure random walks pass it. Instead the same statistic is computed with each ticker's
state sequence circularly shifted by a random offset (``replicates`` times, seeded): the
shift keeps every ticker's state counts and, except at the one wrap point, its run lengths,
but breaks the alignment of states with forward returns. ``ok`` is true only when the observed
statistic exceeds the null's 95th percentile.

Everything is vectorised over all rows and tickers (a gather and two ``bincount`` per
replicate); only the replicates are a Python loop.
"""

from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.kernels.offsets import ticker_offsets

NULL_REPLICATES = 99
NULL_SEED = 17
NULL_MIN_SHIFT = 10  # bars: a shift shorter than the label horizon would keep the overlap
NULL_LEVEL = 0.95
STATISTIC = "max - min over states of the mean finite fwd_ret_10"
NULL_METHOD = (
    "circular shift of each ticker's state sequence by a random offset in "
    "[min_shift, n - min_shift] (keeps state counts and run lengths, breaks the link to "
    "forward returns)"
)


def separation_statistic(codes: np.ndarray, values: np.ndarray, k: int) -> float | None:
    """max − min of the per-state means of ``values`` (finite entries only) over states
    0..k-1 with at least one finite value; None when there is none."""
    ok = np.isfinite(values)
    c, y = codes[ok], values[ok]
    n = np.bincount(c, minlength=k)
    if not (n > 0).any():
        return None
    means = np.bincount(c, weights=y, minlength=k)[n > 0] / n[n > 0]
    return float(means.max() - means.min())


def _shift_ranges(lengths: np.ndarray, min_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sequence, the inclusive range of circular shifts drawn from: ``[m, L − m]`` when the
    sequence is longer than 2m, else ``[1, L − 1]`` (0 for a single row)."""
    long = lengths > 2 * min_shift
    lo = np.where(long, min_shift, np.minimum(1, np.maximum(lengths - 1, 0)))
    hi = np.where(long, lengths - min_shift, np.maximum(lengths - 1, 0))
    return lo, hi


class _Rotation:
    """Per-row sequence id, sequence start and position, computed once per call."""

    def __init__(self, offsets: np.ndarray, min_shift: int) -> None:
        off = np.asarray(offsets, dtype=np.int64)
        lengths = np.diff(off)
        self.n_seq = lengths.shape[0]
        self.seq = np.repeat(np.arange(self.n_seq), lengths)
        self.start = off[:-1][self.seq]
        self.pos = np.arange(int(off[-1]), dtype=np.int64) - self.start
        self.length = np.maximum(lengths[self.seq], 1)
        self.lo, hi = _shift_ranges(lengths, min_shift)
        self.span = hi - self.lo + 1

    def index(self, rng: np.random.Generator) -> np.ndarray:
        r = self.lo + np.floor(rng.random(self.n_seq) * self.span).astype(np.int64)
        return self.start + (self.pos + r[self.seq]) % self.length


def circular_shift_index(
    offsets: np.ndarray, rng: np.random.Generator, min_shift: int = NULL_MIN_SHIFT
) -> np.ndarray:
    """Gather index that rotates each sequence ``offsets[s]:offsets[s+1]`` by its own random
    offset: row ``start + p`` takes the state of row ``start + (p + r_s) mod L_s``."""
    return _Rotation(offsets, min_shift).index(rng)


def _ordered(frame: pl.DataFrame, by: str, column: str) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray, np.ndarray]:
    """(state codes 0..k-1, the state value of each code, values, offsets) with rows sorted by
    ticker and date; one sequence when the frame has no ticker column."""
    keys = [c for c in ("ticker", "trade_date") if c in frame.columns]
    sub = frame.select(*keys, by, column).filter(pl.col(by).is_not_null())
    if keys:
        sub = sub.sort(keys, maintain_order=True)
    uniq, codes = np.unique(sub[by].to_numpy(), return_inverse=True)
    values = sub[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
    offsets = (ticker_offsets(sub["ticker"]) if "ticker" in keys
               else np.array([0, sub.height], dtype=np.int64))  # fmt: skip
    return codes.astype(np.int64), uniq, values, offsets


def separation_null(
    frame: pl.DataFrame,
    by: str,
    column: str = "fwd_ret_10",
    replicates: int = NULL_REPLICATES,
    seed: int = NULL_SEED,
    min_shift: int = NULL_MIN_SHIFT,
) -> dict[str, Any]:
    """Observed separation of ``by`` on ``column`` and its within-ticker circular-shift null.

    Returns ``observed``, ``null_mean``, ``null_p50``, ``null_p95``, ``null_max``,
    ``null_quantile_of_observed`` (share of replicates strictly below the observed),
    ``p_value`` ((1 + #{null ≥ observed}) / (1 + replicates)), and ``ok`` (observed > p95;
    None when the statistic is unavailable), with the settings used.
    """
    out: dict[str, Any] = {
        "state_source": by, "statistic": STATISTIC, "null_method": NULL_METHOD,
        "replicates": replicates, "seed": seed, "min_shift": min_shift, "level": NULL_LEVEL,
        "observed": None, "null_mean": None, "null_p50": None, "null_p95": None,
        "null_max": None, "null_quantile_of_observed": None, "p_value": None, "ok": None,
    }  # fmt: skip
    if by not in frame.columns or column not in frame.columns or frame.height == 0:
        return out
    codes, uniq, values, offsets = _ordered(frame, by, column)
    k = int(uniq.shape[0])
    obs = separation_statistic(codes, values, k)
    out["observed"] = obs
    if obs is None or replicates < 1:
        return out
    rng = np.random.default_rng(seed)
    rot = _Rotation(offsets, min_shift)
    null = np.empty(replicates)
    for i in range(replicates):
        stat = separation_statistic(codes[rot.index(rng)], values, k)
        null[i] = np.nan if stat is None else stat
    null = null[np.isfinite(null)]
    if null.size == 0:
        return out
    p95 = float(np.quantile(null, NULL_LEVEL))
    out |= {
        "null_mean": float(null.mean()), "null_p50": float(np.quantile(null, 0.5)),
        "null_p95": p95, "null_max": float(null.max()),
        "null_quantile_of_observed": float((null < obs).mean()),
        "p_value": float((1 + (null >= obs).sum()) / (1 + null.size)),
        "ok": bool(obs > p95),
    }  # fmt: skip
    return out


def separation_note(result: dict[str, Any] | None) -> str:
    """``forward_separation_unavailable`` / ``weak_forward_separation`` (not above the null's
    95th percentile) / ``forward_separation_ok``."""
    if not result or result.get("ok") is None:
        return "forward_separation_unavailable"
    return "forward_separation_ok" if result["ok"] else "weak_forward_separation"


def flat(result: dict[str, Any], prefix: str = "forward_separation") -> dict[str, Any]:
    """The null's headline figures as flat columns (sweep and stability rows)."""
    return {
        f"{prefix}_score": result.get("observed"),
        f"{prefix}_null_mean": result.get("null_mean"),
        f"{prefix}_null_p95": result.get("null_p95"),
        f"{prefix}_p_value": result.get("p_value"),
        f"{prefix}_ok": result.get("ok"),
    }
