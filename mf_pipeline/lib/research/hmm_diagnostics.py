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
from mf_pipeline.lib.research.null import separation_note
from mf_pipeline.lib.research.profiles import crosstab, with_flow_label


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
    """Per state: complete-run dwell count/mean/median/p10/p90/max (``dwell_*``, runs cut by
    a sequence edge excluded), censored-run count and max, the same statistics over every run
    (``*_all_runs``: the old tool's definition, censored runs included as-is) and the fitted
    expected dwell 1/(1 − a_ii)."""
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
    # the old tool's figures (research.md §5.5): every run, censored ones included as-is
    every = r.group_by("hmm_state").agg(
        pl.len().alias("dwell_count_all_runs"),
        x.mean().alias("dwell_mean_all_runs"),
        x.median().alias("dwell_median_all_runs"),
        x.quantile(0.10, interpolation="linear").alias("dwell_p10_all_runs"),
        x.quantile(0.90, interpolation="linear").alias("dwell_p90_all_runs"),
        pl.col("length").max().alias("max_dwell_all_runs"),
    )
    stay = np.diag(params.transmat)
    with np.errstate(divide="ignore"):
        expected = np.where(stay < 1.0, 1.0 / (1.0 - stay), np.inf)
    k = params.n_components
    out = (
        _states_frame(k)
        .join(done, on="hmm_state", how="left")
        .join(cens, on="hmm_state", how="left")
        .join(every, on="hmm_state", how="left")
        .with_columns(
            pl.col("dwell_count").fill_null(0),
            pl.col("censored_run_count").fill_null(0),
            pl.col("dwell_count_all_runs").fill_null(0),
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
    flow_col: str = "flow_state_label",
) -> dict[str, pl.DataFrame]:
    """All diagnostic tables for one decoded path (Viterbi by default; pass
    ``hmm_state_filtered`` to describe the causal series). Rows must be in sequence order."""
    states = decoded[state_col].to_numpy()
    counts, matrix = transition_tables(states, offsets, params)
    frame = with_flow_label(decoded.with_columns(pl.col(state_col).alias("hmm_state")))
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
    separation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """research.md §5.7 figures; where a definition differs from the old tool's, its figure is
    reported too (``*_observed_pairs``, ``*_all_runs``; docs/RESEARCH.md "Where we differ").

    ``separation`` is a :func:`~mf_pipeline.lib.research.null.separation_null` result: its
    observed statistic is ``forward_separation_score`` and the note says ok only when it
    exceeds the null's 95th percentile (the old fixed 0.002 threshold is reported as
    ``forward_separation_above_old_threshold``). Without it the score comes from ``profile``
    and the note is ``forward_separation_unavailable`` (never judged without a null).
    Pass the diagnostics and profile of the path whose figures you want (``hmm_run`` passes
    the causal ``hmm_state_filtered`` ones)."""
    freq = diagnostics["state_frequency"]["share_of_rows"].to_numpy()
    freq = freq[freq > 0]
    largest = float(freq.max()) if freq.size else None
    eff = float(1.0 / np.square(freq).sum()) if freq.size else None
    m = diagnostics["transition_matrix"]
    on_diag = m.filter(pl.col("hmm_state_prev") == pl.col("hmm_state"))
    # states that occur in the path with a successor (null probability = never left from, i.e.
    # absent or only at sequence ends); a state that occurs but never stays counts as 0
    diag = on_diag["transition_probability"].drop_nulls()
    avg_self = float(diag.mean()) if diag.len() else None
    # the old tool's figure: only diagonal pairs observed at least once (its matrix listed
    # observed pairs only), so a state that never stays is left out
    seen = on_diag.filter(pl.col("transition_count") > 0)["transition_probability"]
    avg_self_seen = float(seen.mean()) if seen.len() else None
    dwell = diagnostics["dwell_stats"]
    dm = dwell["dwell_mean"].drop_nulls()
    dm_all = (dwell["dwell_mean_all_runs"].drop_nulls()
              if "dwell_mean_all_runs" in dwell.columns else pl.Series([], dtype=pl.Float64))
    sep = None
    if separation is not None:
        sep = separation.get("observed")
    elif profile is not None and "fwd_ret_10_mean" in profile.columns:
        v = profile["fwd_ret_10_mean"].drop_nulls().drop_nans()
        sep = float(v.max() - v.min()) if v.len() else None
    notes = [
        "state_concentration_unknown"
        if largest is None
        else ("high_state_concentration" if largest > 0.70 else "state_concentration_ok"),
        separation_note(separation),
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
        "forward_separation_null": separation,
        "forward_separation_above_old_threshold": None if sep is None else abs(sep) >= 0.002,
        "avg_self_transition_prob": avg_self,
        "avg_self_transition_prob_observed_pairs": avg_self_seen,
        "avg_self_transition_prob_fitted": float(np.diag(fitted_matrix(m)).mean()),
        "avg_self_transition_definition": (
            "avg_self_transition_prob: mean empirical a_ii over states that occur in the "
            "decoded path with a successor (0 for a state that never stays); "
            "_observed_pairs: the old tool's mean over self-pairs seen at least once"
        ),
        "avg_dwell_mean": float(dm.mean()) if dm.len() else None,
        "avg_dwell_mean_all_runs": float(dm_all.mean()) if dm_all.len() else None,
        "dwell_definition": (
            "dwell_*: complete runs only (runs cut by a sequence start/end excluded, counted "
            "in censored_run_count); *_all_runs: every run, the old tool's definition"
        ),
        "notes": notes,
    }


def fitted_matrix(matrix: pl.DataFrame) -> np.ndarray:
    """The fitted K×K matrix back from the long ``transition_matrix`` table."""
    k = int(np.sqrt(matrix.height))
    return matrix.sort("hmm_state_prev", "hmm_state")["fitted_probability"].to_numpy().reshape(k, k)
