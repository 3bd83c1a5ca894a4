"""HMM diagnostics from both the fitted matrices and a decoded path (research.md §5.5).

The old tool reported only empirical tables from the Viterbi path, and its dwell statistics
mixed in runs cut by the start or end of a sequence (biased short). Here every table lists
all K states, carries the fitted counterpart next to the empirical one (transition
probability, expected dwell 1/(1−a_ii), stationary share, start probability), and dwell
statistics use complete runs only, with censored runs counted separately.
"""

from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.research.hmm import HmmParams
from mf_pipeline.lib.research.profiles import crosstab


def _states_frame(k: int, name: str = "hmm_state") -> pl.DataFrame:
    return pl.DataFrame({name: np.arange(k)}, schema={name: pl.Int16})


def stationary_distribution(transmat: np.ndarray) -> np.ndarray:
    """π with π·A = π, Σπ = 1 (least squares, so reducible chains still give an answer)."""
    k = transmat.shape[0]
    a = np.vstack([transmat.T - np.eye(k), np.ones((1, k))])
    rhs = np.zeros(k + 1)
    rhs[-1] = 1.0
    pi = np.linalg.lstsq(a, rhs, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def transition_tables(
    states: np.ndarray, offsets: np.ndarray, params: HmmParams
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(counts, matrix) over all K×K pairs; pairs only within a sequence; self-transitions kept.

    ``matrix`` has ``transition_probability`` (empirical, null for a state never left from)
    and ``fitted_probability`` (the model's ``transmat``).
    """
    k = params.n_components
    s = np.asarray(states, dtype=np.int64)
    has_prev = np.ones(s.shape[0], dtype=bool)
    has_prev[offsets[:-1][np.diff(offsets) > 0]] = False
    pair = s[:-1][has_prev[1:]] * k + s[1:][has_prev[1:]]
    counts = np.bincount(pair, minlength=k * k).reshape(k, k)
    out_tot = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        emp = np.where(out_tot > 0, counts / np.maximum(out_tot, 1), np.nan)
    prev, cur = np.divmod(np.arange(k * k), k)
    base = pl.DataFrame(
        {
            "hmm_state_prev": pl.Series(prev, dtype=pl.Int16),
            "hmm_state": pl.Series(cur, dtype=pl.Int16),
            "transition_count": pl.Series(counts.ravel(), dtype=pl.Int64),
        }
    )
    matrix = base.with_columns(
        pl.Series("transition_probability", emp.ravel(), nan_to_null=True),
        pl.Series("fitted_probability", params.transmat.ravel()),
    )
    return base, matrix


def runs(states: np.ndarray, offsets: np.ndarray) -> pl.DataFrame:
    """One row per run of equal states: state, length, and whether a sequence edge cuts it."""
    s = np.asarray(states, dtype=np.int64)
    n = s.shape[0]
    if n == 0:
        return pl.DataFrame(
            schema={"hmm_state": pl.Int16, "length": pl.Int64, "censored": pl.Boolean}
        )
    seq_start = np.zeros(n, dtype=bool)
    seq_start[offsets[:-1][np.diff(offsets) > 0]] = True
    start = seq_start.copy()
    start[1:] |= s[1:] != s[:-1]
    pos = np.flatnonzero(start)
    ends = np.append(pos[1:], n)
    seq_end = np.zeros(n + 1, dtype=bool)
    seq_end[offsets[1:]] = True  # a run ending at row e-1 touches the sequence end when e is
    censored = seq_start[pos] | seq_end[ends]
    return pl.DataFrame(
        {
            "hmm_state": pl.Series(s[pos], dtype=pl.Int16),
            "length": pl.Series(ends - pos, dtype=pl.Int64),
            "censored": censored,
        }
    )


def dwell_stats(states: np.ndarray, offsets: np.ndarray, params: HmmParams) -> pl.DataFrame:
    """Per state: complete-run dwell count/mean/median/p10/p90/max, censored-run count and
    max, and the fitted expected dwell 1/(1 − a_ii)."""
    r = runs(states, offsets)
    x = pl.col("length").cast(pl.Float64)
    done = (
        r.filter(~pl.col("censored"))
        .group_by("hmm_state")
        .agg(
            pl.len().alias("dwell_count"),
            x.mean().alias("dwell_mean"),
            x.median().alias("dwell_median"),
            x.quantile(0.10, interpolation="linear").alias("dwell_p10"),
            x.quantile(0.90, interpolation="linear").alias("dwell_p90"),
            pl.col("length").max().alias("max_dwell"),
        )
    )
    cens = (
        r.filter(pl.col("censored"))
        .group_by("hmm_state")
        .agg(
            pl.len().alias("censored_run_count"),
            pl.col("length").max().alias("censored_max_dwell"),
        )
    )
    stay = np.diag(params.transmat)
    with np.errstate(divide="ignore"):
        expected = np.where(stay < 1.0, 1.0 / (1.0 - stay), np.inf)
    k = params.n_components
    out = (
        _states_frame(k)
        .join(done, on="hmm_state", how="left")
        .join(cens, on="hmm_state", how="left")
        .with_columns(
            pl.col("dwell_count").fill_null(0),
            pl.col("censored_run_count").fill_null(0),
            pl.Series("expected_dwell_fitted", expected),
        )
    )
    return out.sort("hmm_state")


def state_frequency(states: np.ndarray, params: HmmParams) -> pl.DataFrame:
    """Row count and share per state, next to the fitted stationary share."""
    k = params.n_components
    counts = np.bincount(np.asarray(states, dtype=np.int64), minlength=k)[:k]
    total = max(int(counts.sum()), 1)
    return pl.DataFrame(
        {
            "hmm_state": pl.Series(np.arange(k), dtype=pl.Int16),
            "row_count": pl.Series(counts, dtype=pl.Int64),
            "share_of_rows": counts / total,
            "stationary_share_fitted": stationary_distribution(params.transmat),
        }
    )


def initial_state_distribution(
    states: np.ndarray, offsets: np.ndarray, params: HmmParams
) -> pl.DataFrame:
    """First state of each sequence (count, share) next to the fitted start probabilities."""
    k = params.n_components
    firsts = np.asarray(states, dtype=np.int64)[offsets[:-1][np.diff(offsets) > 0]]
    counts = np.bincount(firsts, minlength=k)[:k]
    return pl.DataFrame(
        {
            "hmm_state": pl.Series(np.arange(k), dtype=pl.Int16),
            "start_count": pl.Series(counts, dtype=pl.Int64),
            "start_share": counts / max(int(counts.sum()), 1),
            "startprob_fitted": params.startprob,
        }
    )


def state_confidence_stats(decoded: pl.DataFrame, by: str = "hmm_state") -> pl.DataFrame:
    """Smoothed and filtered confidence per state (columns present in ``decoded``)."""
    aggs = []
    if "hmm_state_prob_max" in decoded.columns:
        aggs += [
            pl.col("hmm_state_prob_max").mean().alias("prob_max_mean"),
            pl.col("hmm_state_prob_max").max().alias("prob_max_max"),
        ]
    if "hmm_state_entropy" in decoded.columns:
        aggs += [
            pl.col("hmm_state_entropy").mean().alias("entropy_mean"),
            pl.col("hmm_state_entropy").median().alias("entropy_median"),
        ]
    if "hmm_prob_filtered_max" in decoded.columns:
        aggs.append(pl.col("hmm_prob_filtered_max").mean().alias("prob_filtered_max_mean"))
    if not aggs:
        aggs = [pl.len().alias("row_count")]
    return decoded.group_by(by).agg(aggs).sort(by)


def hmm_diagnostics(
    decoded: pl.DataFrame,
    offsets: np.ndarray,
    params: HmmParams,
    state_col: str = "hmm_state",
    flow_col: str = "flow_state_code",
) -> dict[str, pl.DataFrame]:
    """All diagnostic tables for one decoded path (Viterbi by default; pass
    ``hmm_state_filtered`` to describe the causal series). Rows must be in sequence order."""
    states = decoded[state_col].to_numpy()
    counts, matrix = transition_tables(states, offsets, params)
    frame = decoded.with_columns(pl.col(state_col).alias("hmm_state"))
    return {
        "transition_counts": counts,
        "transition_matrix": matrix,
        "initial_state_distribution": initial_state_distribution(states, offsets, params),
        "dwell_stats": dwell_stats(states, offsets, params),
        "state_frequency": state_frequency(states, params),
        "state_confidence_stats": state_confidence_stats(frame),
        "hmm_vs_flow_state_crosstab": crosstab(frame, "hmm_state", flow_col, "share_in_hmm_state"),
    }


def robustness_summary(
    diagnostics: dict[str, pl.DataFrame],
    profile: pl.DataFrame | None,
    train_loglik: float | None,
    train_rows: int,
    test_loglik: float | None = None,
    test_rows: int = 0,
) -> dict[str, Any]:
    """research.md §5.7 figures (empirical matrix diagonal, complete-run dwell means)."""
    freq = diagnostics["state_frequency"]["share_of_rows"].to_numpy()
    freq = freq[freq > 0]
    largest = float(freq.max()) if freq.size else None
    eff = float(1.0 / np.square(freq).sum()) if freq.size else None
    m = diagnostics["transition_matrix"]
    diag = m.filter(pl.col("hmm_state_prev") == pl.col("hmm_state"))["transition_probability"]
    diag = diag.drop_nulls()
    avg_self = float(diag.mean()) if diag.len() else None
    dm = diagnostics["dwell_stats"]["dwell_mean"].drop_nulls()
    sep = None
    if profile is not None and "fwd_ret_10_mean" in profile.columns:
        v = profile["fwd_ret_10_mean"].drop_nulls().drop_nans()
        sep = float(v.max() - v.min()) if v.len() else None
    notes = [
        "state_concentration_unknown"
        if largest is None
        else ("high_state_concentration" if largest > 0.70 else "state_concentration_ok"),
        "forward_separation_unavailable"
        if sep is None
        else ("weak_forward_separation" if abs(sep) < 0.002 else "forward_separation_ok"),
        "transition_persistence_unknown"
        if avg_self is None
        else ("low_state_persistence" if avg_self < 0.35 else "state_persistence_ok"),
    ]
    return {
        "largest_state_share": largest,
        "effective_state_count": eff,
        "train_loglik_per_obs": None if train_loglik is None else train_loglik / max(1, train_rows),
        "test_loglik_per_obs": None if test_loglik is None else test_loglik / max(1, test_rows),
        "forward_separation_score": sep,
        "avg_self_transition_prob": avg_self,
        "avg_self_transition_prob_fitted": float(np.diag(fitted_matrix(m)).mean()),
        "avg_dwell_mean": float(dm.mean()) if dm.len() else None,
        "notes": notes,
    }


def fitted_matrix(matrix: pl.DataFrame) -> np.ndarray:
    """The fitted K×K matrix back from the long ``transition_matrix`` table."""
    k = int(np.sqrt(matrix.height))
    return matrix.sort("hmm_state_prev", "hmm_state")["fitted_probability"].to_numpy().reshape(k, k)
