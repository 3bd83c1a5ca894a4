"""Value tests that kill the mutmut survivors of ``lib/research`` (docs/RESEARCH.md,
"Mutation testing"): each pins a reported figure or record key by hand or by an independent
formula written here, where the older tests only checked a shape, a relation or a ranking."""

import dataclasses
import datetime as dt
import math
from typing import Any

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.research.clustering import ClusterConfig, cluster_metrics, run_clustering
from mf_pipeline.lib.research.features import ScalerModel, fit_scaler, transform
from mf_pipeline.lib.research.hmm import (
    HmmConfig,
    HmmFit,
    HmmParams,
    _gather_sequences,
    _init_params,
    fit_hmm,
    state_change_columns,
)
from mf_pipeline.lib.research.hmm_diagnostics import (
    fitted_matrix,
    hmm_diagnostics,
    robustness_summary,
    runs,
    state_confidence_stats,
    state_frequency,
    transition_tables,
)
from mf_pipeline.lib.research.labels import _stats, add_forward_labels, labelled_split
from mf_pipeline.lib.research.null import circular_shift_index, flat, separation_null
from mf_pipeline.lib.research.profiles import (
    forward_separation,
    group_profile,
    label_concentration,
    labelled_profiles,
)
from mf_pipeline.lib.research.recovery import adjusted_rand
from mf_pipeline.lib.research.splits import (
    full_split,
    infeasible_reason,
    resolve_split,
    split_from_id,
    walkforward_splits,
)

# --------------------------------------------------------------------------- recovery


def _ari_nmi(truth: list[int], labels: list[int]) -> tuple[float, float]:
    """ARI from the pair-counting formula and arithmetic NMI from entropies (natural log)."""
    t_ids, l_ids = sorted(set(truth)), sorted(set(labels))
    table = np.array([[sum(1 for a, b in zip(truth, labels, strict=True) if a == t and b == c)
                       for c in l_ids] for t in t_ids])  # fmt: skip
    n = len(truth)
    pairs = sum(math.comb(int(v), 2) for v in table.ravel())
    rows = sum(math.comb(int(v), 2) for v in table.sum(axis=1))
    cols = sum(math.comb(int(v), 2) for v in table.sum(axis=0))
    expected = rows * cols / math.comb(n, 2)
    ari = (pairs - expected) / ((rows + cols) / 2 - expected)
    p = table / n
    pt, pl_ = p.sum(axis=1), p.sum(axis=0)
    mi = sum(p[i, j] * math.log(p[i, j] / (pt[i] * pl_[j]))
             for i in range(len(t_ids)) for j in range(len(l_ids)) if p[i, j] > 0)  # fmt: skip
    h_t = -sum(x * math.log(x) for x in pt)
    h_l = -sum(x * math.log(x) for x in pl_)
    return ari, mi / ((h_t + h_l) / 2)


def test_adjusted_rand_record_by_formula_and_its_empty_record():
    truth = [0, 0, 0, 1, 1, 1, 2, 2, None]
    labels = [5, 5, 7, 7, 7, 7, 9, 9, 9]
    frame = pl.DataFrame({"lab": labels, "truth": truth})
    ari, nmi = _ari_nmi([0, 0, 0, 1, 1, 1, 2, 2], [5, 5, 7, 7, 7, 7, 9, 9])
    got = adjusted_rand(frame, "lab", "truth")
    assert got == {"label_col": "lab", "truth_col": "truth", "rows_compared": 8,
                   "ari": pytest.approx(ari), "nmi": pytest.approx(nmi)}  # fmt: skip
    assert 0.0 < got["ari"] < got["nmi"] < 1.0  # the example is not a degenerate 0 or 1
    empty = adjusted_rand(frame.with_columns(pl.lit(None).alias("truth")), "lab", "truth")
    assert empty == {"label_col": "lab", "truth_col": "truth", "rows_compared": 0,
                     "ari": None, "nmi": None}  # fmt: skip
    with pytest.raises(ValueError, match="column 'nope' not in frame"):
        adjusted_rand(frame, "nope", "truth")


# --------------------------------------------------------------------------- null


def _two_bar_frame(c_values: list[float]) -> pl.DataFrame:
    """Tickers of two bars: every circular shift is the swap (the only shift in [1, L-1]),
    so each replicate of the null is the same, hand-computable statistic."""
    return pl.DataFrame({
        "ticker": ["A", "A", "C", "C"],
        "trade_date": [1, 2, 1, 2],
        "s": [0, 1, 0, 0],
        "fwd_ret_10": [0.4, 0.0, *c_values],
    })  # fmt: skip


def test_null_figures_when_every_replicate_is_the_swap():
    # observed: state 0 = (0.4 + 0.5 + 0.5)/3, state 1 = 0.0 → 1.4/3;
    # swapped A: state 0 = (0.0 + 0.5 + 0.5)/3, state 1 = 0.4 → 0.4 − 1/3 in every replicate
    got = separation_null(_two_bar_frame([0.5, 0.5]), "s", replicates=9, seed=3)
    null = 0.4 - 1.0 / 3.0
    assert got["observed"] == pytest.approx(1.4 / 3.0)
    for key in ("null_mean", "null_p50", "null_p95", "null_max"):
        assert got[key] == pytest.approx(null), key
    assert got["null_quantile_of_observed"] == 1.0
    assert got["p_value"] == pytest.approx(1 / 10)
    assert got["ok"] is True
    assert (got["replicates"], got["seed"], got["min_shift"], got["level"]) == (9, 3, 10, 0.95)
    assert got["state_source"] == "s"


def test_null_ties_count_against_the_observed():
    # A (0, 1) and C (1, 0), each 0.3 in its state-0 bar and 0.0 in its state-1 bar: the swap
    # only relabels, so every replicate equals the observed 0.3 exactly; a tie is not
    # "strictly below", counts in the p-value and is not ok
    frame = pl.DataFrame({"ticker": ["A", "A", "C", "C"], "trade_date": [1, 2, 1, 2],
                          "s": [0, 1, 1, 0], "fwd_ret_10": [0.3, 0.0, 0.0, 0.3]})  # fmt: skip
    got = separation_null(frame, "s", replicates=4)
    assert got["observed"] == got["null_p95"] == got["null_max"] == pytest.approx(0.3)
    assert got["null_quantile_of_observed"] == 0.0
    assert got["p_value"] == 1.0
    assert got["ok"] is False


def test_circular_shift_draws_are_the_documented_ones():
    # lengths 25 (> 2·10: shift in [10, 15]), 3 (short: [1, 2]) and 1 (shift 0); with
    # u ~ U[0, 1) from the seeded generator, r = lo + floor(u · (hi − lo + 1)) and row
    # start + p takes row start + (p + r) mod L
    offsets = np.array([0, 25, 28, 29])
    u = np.random.default_rng(8).random(3)
    r = [10 + int(u[0] * 6), 1 + int(u[1] * 2), 0]
    expected = np.concatenate([a + (np.arange(b - a) + s) % (b - a) for a, b, s in
                               zip(offsets[:-1], offsets[1:], r, strict=True)])  # fmt: skip
    got = circular_shift_index(offsets, np.random.default_rng(8), min_shift=10)
    assert np.array_equal(got, expected)
    # every allowed shift occurs, and only those
    rng = np.random.default_rng(0)
    seen = [set(), set()]
    for _ in range(300):
        idx = circular_shift_index(offsets, rng, min_shift=10)
        seen[0].add(int(idx[0]))
        seen[1].add(int(idx[25]) - 25)
    assert seen == [set(range(10, 16)), {1, 2}]


def test_null_sorts_each_ticker_by_trade_date():
    rng = np.random.default_rng(2)
    n = 40
    frame = pl.DataFrame({"ticker": ["A"] * n + ["B"] * n,
                          "trade_date": np.tile(np.arange(n), 2),
                          "s": rng.integers(0, 3, 2 * n),
                          "fwd_ret_10": rng.normal(0.0, 0.01, 2 * n)})  # fmt: skip
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=5)
    a = separation_null(frame, "s", replicates=19)
    b = separation_null(shuffled, "s", replicates=19)
    assert a["null_p95"] is not None and a == b
    # without a ticker column the frame is one sequence: the same as one ticker
    one = frame.filter(pl.col("ticker") == "A")
    assert separation_null(one.drop("ticker"), "s", replicates=19) == separation_null(
        one, "s", replicates=19)
    assert set(a) == {
        "state_source", "statistic", "null_method", "replicates", "seed", "min_shift", "level",
        "observed", "null_mean", "null_p50", "null_p95", "null_max",
        "null_quantile_of_observed", "p_value", "ok",
    }  # fmt: skip


def test_flat_names_the_headline_figures():
    result = {"observed": 0.3, "null_mean": 0.1, "null_p95": 0.2, "p_value": 0.01, "ok": True,
              "null_max": 9.0}  # fmt: skip
    assert flat(result) == {
        "forward_separation_score": 0.3,
        "forward_separation_null_mean": 0.1,
        "forward_separation_null_p95": 0.2,
        "forward_separation_p_value": 0.01,
        "forward_separation_ok": True,
    }
    assert flat({}, "x") == {"x_score": None, "x_null_mean": None, "x_null_p95": None,
                             "x_p_value": None, "x_ok": None}  # fmt: skip


# --------------------------------------------------------------------------- robustness


def _diagnostics(states: list[int], offsets: list[int], k: int = 2) -> dict[str, pl.DataFrame]:
    a = np.array([[0.9, 0.1], [0.2, 0.8]]) if k == 2 else np.full((k, k), 1 / k)
    params = HmmParams(np.full(k, 1 / k), a, np.zeros((k, 1)), np.ones((k, 1, 1)))
    frame = pl.DataFrame({"hmm_state": pl.Series(states, dtype=pl.Int16)})
    return hmm_diagnostics(frame, np.array(offsets), params)


def test_diagnostic_tables_and_initial_state_distribution_by_hand():
    # sequences 0 0 1 | 1 0 | 1: first states 0, 1, 1
    diag = _diagnostics([0, 0, 1, 1, 0, 1], [0, 3, 5, 6])
    assert set(diag) == {"transition_counts", "transition_matrix", "initial_state_distribution",
                         "dwell_stats", "state_frequency", "state_confidence_stats",
                         "hmm_vs_flow_state_crosstab"}  # fmt: skip
    expected = pl.DataFrame({
        "hmm_state": pl.Series([0, 1], dtype=pl.Int16),
        "start_count": pl.Series([1, 2], dtype=pl.Int64),
        "start_share": [1 / 3, 2 / 3],
        "startprob_fitted": [0.5, 0.5],
    })  # fmt: skip
    got = diag["initial_state_distribution"]
    assert got.schema == expected.schema and got.equals(expected)
    # pairs within sequences only: 0→0, 0→1, 1→0
    assert diag["transition_counts"]["transition_count"].to_list() == [1, 1, 1, 0]


def test_empty_sequences_in_offsets_change_nothing():
    params = HmmParams(np.full(2, 0.5), np.full((2, 2), 0.5), np.zeros((2, 1)),
                       np.ones((2, 1, 1)))  # fmt: skip
    states = np.array([0, 0, 1, 1, 0])
    plain = transition_tables(states, np.array([0, 3, 5]), params)[0]
    with_empty = transition_tables(states, np.array([0, 0, 3, 3, 5, 5]), params)[0]
    assert with_empty.equals(plain)
    assert plain["transition_count"].to_list() == [1, 1, 1, 0]  # 0→0, 0→1 | 1→0


def test_runs_and_frequency_of_a_single_row_and_of_no_row():
    one = runs(np.array([3]), np.array([0, 1]))
    assert one.to_dict(as_series=False) == {"hmm_state": [3], "length": [1], "censored": [True]}
    none = runs(np.array([], dtype=np.int64), np.array([0, 0]))
    assert none.height == 0
    schema = pl.Schema({"hmm_state": pl.Int16, "length": pl.Int64, "censored": pl.Boolean})
    assert none.schema == schema and one.schema == schema
    params = HmmParams(np.full(2, 0.5), np.full((2, 2), 0.5), np.zeros((2, 1)),
                       np.ones((2, 1, 1)))  # fmt: skip
    freq = state_frequency(np.array([1]), params)
    assert freq["row_count"].to_list() == [0, 1]
    assert freq["share_of_rows"].to_list() == [0.0, 1.0]


def test_state_confidence_stats_by_hand():
    decoded = pl.DataFrame({
        "hmm_state": [1, 0, 1, 1, 0],
        "hmm_state_prob_max": [0.9, 0.6, 0.7, 0.8, 1.0],
        "hmm_state_entropy": [0.1, 0.5, 0.3, 0.2, 0.0],
        "hmm_prob_filtered_max": [0.5, 0.4, 1.0, 0.6, 0.8],
    })  # fmt: skip
    got = state_confidence_stats(decoded)
    assert got.columns == ["hmm_state", "prob_max_mean", "prob_max_max", "entropy_mean",
                           "entropy_median", "prob_filtered_max_mean"]  # fmt: skip
    assert got["hmm_state"].to_list() == [0, 1]
    assert got["prob_max_mean"].to_list() == pytest.approx([0.8, 0.8])
    assert got["prob_max_max"].to_list() == pytest.approx([1.0, 0.9])
    assert got["entropy_mean"].to_list() == pytest.approx([0.25, 0.2])
    assert got["entropy_median"].to_list() == pytest.approx([0.25, 0.2])
    assert got["prob_filtered_max_mean"].to_list() == pytest.approx([0.6, 0.7])
    bare = state_confidence_stats(decoded.select("hmm_state"))
    assert bare.to_dict(as_series=False) == {"hmm_state": [0, 1], "row_count": [2, 3]}


def test_robustness_without_rows_or_successors_reports_none_not_zero():
    # no decoded row: no share, no transition, no dwell; the fitted figure still exists
    r = robustness_summary(_diagnostics([], [0, 0]), None, None, 0)
    assert r["largest_state_share"] is None and r["effective_state_count"] is None
    assert r["avg_self_transition_prob"] is None
    assert r["avg_self_transition_prob_observed_pairs"] is None
    assert r["avg_dwell_mean"] is None and r["avg_dwell_mean_all_runs"] is None
    assert r["avg_self_transition_prob_fitted"] == pytest.approx(0.85)
    assert r["notes"] == ["state_concentration_unknown", "forward_separation_unavailable",
                          "transition_persistence_unknown"]  # fmt: skip
    # one-row sequences: shares exist, but no state has a successor
    r = robustness_summary(_diagnostics([0, 1, 1], [0, 1, 2, 3]), None, None, 0)
    assert r["largest_state_share"] == pytest.approx(2 / 3)
    assert r["avg_self_transition_prob"] is None
    assert r["notes"][2] == "transition_persistence_unknown"


def test_observed_pairs_average_is_none_when_no_state_ever_stays():
    # 0 1 0 1: a_00 = a_11 = 0 empirically; the old tool's figure has no self-pair to average
    r = robustness_summary(_diagnostics([0, 1, 0, 1], [0, 4]), None, None, 0)
    assert r["avg_self_transition_prob"] == 0.0
    assert r["avg_self_transition_prob_observed_pairs"] is None
    assert r["notes"][2] == "low_state_persistence"


def test_robustness_record_keys():
    r = robustness_summary(_diagnostics([0, 0, 1, 1, 1, 0], [0, 6]), None, -3.0, 6)
    assert set(r) == {
        "largest_state_share", "effective_state_count", "train_loglik_per_obs",
        "test_loglik_per_obs", "forward_separation_score", "forward_separation_null",
        "forward_separation_above_old_threshold", "avg_self_transition_prob",
        "avg_self_transition_prob_observed_pairs", "avg_self_transition_prob_fitted",
        "avg_self_transition_definition", "avg_dwell_mean", "avg_dwell_mean_all_runs",
        "dwell_definition", "notes",
    }  # fmt: skip
    assert r["train_loglik_per_obs"] == -0.5 and r["test_loglik_per_obs"] is None


def test_fitted_matrix_reads_any_row_order():
    a = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.0, 0.5, 0.5]])
    prev, cur = np.divmod(np.arange(9), 3)
    table = pl.DataFrame({"hmm_state_prev": prev, "hmm_state": cur,
                          "fitted_probability": a.ravel()})  # fmt: skip
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=4)
    assert not shuffled["hmm_state"].equals(table["hmm_state"])
    assert np.array_equal(fitted_matrix(shuffled), a)


def test_dwell_table_without_the_all_runs_column_reports_none():
    diag = _diagnostics([0, 0, 1, 1, 1, 0], [0, 6])
    diag["dwell_stats"] = diag["dwell_stats"].drop("dwell_mean_all_runs")
    r = robustness_summary(diag, None, None, 0)
    assert r["avg_dwell_mean_all_runs"] is None
    assert r["avg_dwell_mean"] == pytest.approx(3.0)  # the one complete run: 1 1 1


# --------------------------------------------------------------------------- profiles


def test_empty_concentration_and_separation_records():
    assert label_concentration(np.array([], dtype=np.int64)) == {
        "largest_share": None, "effective_count": None, "detected": 0, "noise_share": 0}
    nulls = pl.DataFrame({"s": [0, 1], "fwd_ret_10_mean": [None, float("nan")]},
                         schema={"s": pl.Int64, "fwd_ret_10_mean": pl.Float64})  # fmt: skip
    assert forward_separation(nulls) is None  # no state with a finite mean: no figure
    assert forward_separation(nulls, "fwd_ret_5_mean") is None  # column absent


def test_labelled_profiles_tag_every_table_but_the_crosstab():
    t = pl.DataFrame({"s": [0, 1]})
    got = labelled_profiles({"profile": t, "forward_validation": t, "crosstab": t}, "src")
    assert got["profile"]["state_source"].to_list() == ["src", "src"]
    assert got["forward_validation"]["state_source"].to_list() == ["src", "src"]
    assert got["crosstab"].columns == ["s"]


def test_group_profile_by_hand():
    d = [dt.date(2024, 1, m) for m in (2, 3, 4, 5, 8)]
    frame = pl.DataFrame({"s": [1, 0, 1, 1, 0], "ticker": ["A", "A", "B", "A", "B"],
                          "trade_date": d, "x": [1, 2, 3, 5, 6]})  # fmt: skip
    got = group_profile(frame, "s", ["x", "not_there"])
    assert got.to_dict(as_series=False) == {
        "s": [0, 1], "row_count": [2, 3], "ticker_count": [2, 2],
        "date_min": [d[1], d[0]], "date_max": [d[4], d[3]],
        "x_mean": [4.0, 3.0],
        # population std: state 0 → |6 − 2|/2 = 2; state 1 → sqrt((4 + 0 + 4)/3)
        "x_std": [2.0, pytest.approx(math.sqrt(8 / 3))],
        "share_of_dataset": pytest.approx([0.4, 0.6]),
    }  # fmt: skip


def test_group_profile_refuses_an_empty_frame_or_a_missing_column():
    frame = pl.DataFrame({"s": [0, 1], "x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="non-empty frame with column 's'"):
        group_profile(frame.clear(), "s", ["x"])
    with pytest.raises(ValueError, match="column 'z'"):
        group_profile(frame, "z", ["x"])


# --------------------------------------------------------------------------- hmm, clustering


def test_gather_sequences_takes_the_chosen_whole_sequences():
    X = np.arange(10.0)[:, None]
    offsets = np.array([0, 3, 4, 8, 10])
    xs, off = _gather_sequences(X, offsets, np.array([0, 2]))
    assert xs[:, 0].tolist() == [0.0, 1.0, 2.0, 4.0, 5.0, 6.0, 7.0]
    assert off.tolist() == [0, 3, 7]
    xs, off = _gather_sequences(X, offsets, np.array([1, 3]))
    assert xs[:, 0].tolist() == [3.0, 8.0, 9.0] and off.tolist() == [0, 1, 3]


def test_kmeans_on_all_rows_uses_the_requested_k():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.1, (20, 2)) for c in (0.0, 5.0, 10.0)])
    r = run_clustering(X, "kmeans", ClusterConfig(n_clusters=3, kmeans_init_sample_max=None))
    assert np.unique(r.labels["predict"]).size == 3
    assert r.model_meta["n_clusters"] == 3 and r.model_meta["init_sample_rows"] == 60
    assert r.model_meta["predict_rows"] == 60


def test_cluster_metrics_noise_flag_and_record_keys():
    X = np.array([[0.0], [0.1], [5.0], [5.1], [9.0]])
    m = cluster_metrics(X, np.array([0, 0, 1, 1, -1]))
    assert m["has_noise_cluster"] is True and m["noise_share"] == pytest.approx(0.2)
    assert m["calinski_harabasz"] is not None and m["davies_bouldin"] is not None
    few = cluster_metrics(X[:1], np.array([0]))
    assert set(few) == set(m) and few["silhouette_sampled"] is False


# ------------------------------------------------------------------ hmm start values, fits


def _regime_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three sequences (lengths 10, 12, 8) switching between two far-apart 2-D blobs."""
    rng = np.random.default_rng(3)
    regime = np.array([0] * 4 + [1] * 6 + [1] * 5 + [0] * 7 + [0] * 3 + [1] * 5)
    X = np.where(regime[:, None] == 1, 8.0, 0.0) + rng.normal(0.0, 1.0, (regime.size, 2))
    X[:, 1] *= 0.5  # unequal variances, so diag/spherical/full differ
    return X, np.array([0, 10, 22, 30]), regime


@pytest.mark.parametrize("kind", ["diag", "spherical", "tied", "full"])
def test_init_params_are_the_kmeans_path_counts_and_moments(kind):
    from sklearn.cluster import KMeans

    X, off, _ = _regime_data()
    cfg = HmmConfig(n_components=2, covariance_type=kind, min_covar=0.5, random_state=1,
                    init_sample_rows=1000, init_kmeans_n_init=2)  # fmt: skip
    got = _init_params(X, off, cfg)
    lab = KMeans(2, n_init=2, random_state=1).fit(X).labels_
    trans = np.ones((2, 2))  # add-one smoothing
    start = np.ones(2)
    for lo, hi in zip(off[:-1], off[1:], strict=True):
        start[lab[lo]] += 1
        for t in range(lo + 1, hi):
            trans[lab[t - 1], lab[t]] += 1
    np.testing.assert_allclose(got["startprob"], start / start.sum())
    np.testing.assert_allclose(got["transmat"], trans / trans.sum(axis=1, keepdims=True))
    means = np.array([X[lab == c].mean(axis=0) for c in range(2)])
    var = np.array([X[lab == c].var(axis=0) for c in range(2)]) + 0.5
    np.testing.assert_allclose(got["means"], means)
    centred = X - X.mean(axis=0)
    expected = {
        "diag": var,
        "spherical": var.mean(axis=1),
        "tied": centred.T @ centred / X.shape[0] + 0.5 * np.eye(2),
        "full": np.stack([np.cov(X[lab == c].T, ddof=0) + 0.5 * np.eye(2) for c in range(2)]),
    }[kind]
    np.testing.assert_allclose(got["covars"], expected, rtol=1e-12)


def test_init_params_with_unseen_transitions_and_an_empty_sequence():
    X = np.array([[0.0], [0.1], [0.2], [0.3], [10.0]])
    cfg = HmmConfig(n_components=2, min_covar=0.5, random_state=0, init_sample_rows=100,
                    init_kmeans_n_init=1)  # fmt: skip
    # sequences [0.0 .. 0.3], an empty one, [10.0]: state 1 is never left nor entered
    got = _init_params(X, np.array([0, 4, 4, 5]), cfg)
    np.testing.assert_allclose(got["means"], [[0.15], [10.0]])
    np.testing.assert_allclose(got["startprob"], [0.5, 0.5])
    np.testing.assert_allclose(got["transmat"], [[4 / 5, 1 / 5], [1 / 2, 1 / 2]])
    np.testing.assert_allclose(got["covars"], [[0.0125 + 0.5], [0.5]])


def _hmmlearn_from(start: dict[str, np.ndarray], kind: str, n_iter: int, tol: float) -> Any:
    from hmmlearn.hmm import GaussianHMM

    model = GaussianHMM(n_components=2, covariance_type=kind, min_covar=1e-3, n_iter=n_iter,
                        tol=tol, random_state=0, init_params="", params="stmc")  # fmt: skip
    model.n_features = 2
    for name, value in start.items():
        setattr(model, f"{name}_", value)
    return model


def test_fast_full_covariance_fit_equals_hmmlearn_from_the_same_start():
    X, off, _ = _regime_data()
    cfg = HmmConfig(n_components=2, covariance_type="full", n_iter=4, random_state=0,
                    fit_max_rows=None)  # fmt: skip
    fit = fit_hmm(X, off, cfg)
    ref = _hmmlearn_from(_init_params(X, off, cfg), "full", 4, 1e-5 * 30)
    ref.fit(X, np.diff(off))
    assert fit.params.covariance_type == "full" and fit.tol == pytest.approx(3e-4)
    np.testing.assert_allclose(fit.params.covars, ref.covars_, rtol=1e-9)
    np.testing.assert_allclose(fit.params.means, ref.means_, rtol=1e-9)
    np.testing.assert_allclose(fit.params.transmat, ref.transmat_, rtol=1e-9)
    assert fit.loglik == pytest.approx(ref.score(X, np.diff(off)), rel=1e-9)
    assert fit.n_iter_used == ref.monitor_.iter and fit.converged is True
    meta = fit.meta(cfg)
    # free parameters, full: start 1 + transitions 2 + means 4 + covariances 2 * 3 = 13
    assert meta["covariance_type"] == "full" and meta["n_parameters"] == 13


def _polish_reference(sampled: HmmFit, X: np.ndarray, off: np.ndarray, n_iter: int,
                      tol: float) -> Any:  # fmt: skip
    """A fresh hmmlearn EM on all rows started from the sample fit's parameters."""
    kind = sampled.params.covariance_type
    names = ("startprob", "transmat", "means")
    start = {name: getattr(sampled.model, f"{name}_") for name in names}
    start["covars"] = sampled.model._covars_
    ref = _hmmlearn_from(start, kind, n_iter, tol)
    return ref.fit(X, np.diff(off))


def test_polish_is_more_em_iterations_on_all_rows_with_their_own_cap_and_tol():
    X, off, _ = _regime_data()
    base = dict(n_components=2, n_iter=3, random_state=0, fit_max_rows=12)
    sampled = fit_hmm(X, off, HmmConfig(**base))
    assert sampled.em_rows == 18 and sampled.fit_rows == 30  # sequences of 10 and 8 rows
    ref = _polish_reference(sampled, X, off, 1, 1e-5 * 30)
    cfg = HmmConfig(**base, polish_iter=1)
    polished = fit_hmm(X, off, cfg)
    np.testing.assert_allclose(polished.params.means, ref.means_, rtol=1e-9)
    np.testing.assert_allclose(polished.params.covars[:, [0, 1], [0, 1]], ref._covars_, rtol=1e-9)
    assert polished.loglik == pytest.approx(ref.score(X, np.diff(off)), rel=1e-9)
    assert polished.loglik != pytest.approx(sampled.loglik, rel=1e-9)
    assert polished.n_iter_used == sampled.n_iter_used + 1
    # hmmlearn calls an EM that stops at its iteration cap "converged"
    assert polished.converged is True and polished.meta(cfg)["converged"] is True
    assert polished.tol == sampled.tol  # the reported tol is the sample EM's
    # many polish iterations stop by the all-rows tolerance (tol_per_row x 30 rows): the third
    # EM gain here is 7.6e-8, under 9.9e-8 (all rows) but not under 5.9e-8 (the 18-row sample)
    loose = dict(base, n_iter=10, tol_per_row=3.3e-9)
    sampled = fit_hmm(X, off, HmmConfig(**loose))
    ref = _polish_reference(sampled, X, off, 40, 3.3e-9 * 30)
    assert ref.monitor_.iter == 3
    polished = fit_hmm(X, off, HmmConfig(**loose, polish_iter=40))
    assert polished.n_iter_used == sampled.n_iter_used + 3
    assert polished.loglik == pytest.approx(ref.score(X, np.diff(off)), rel=1e-9)
    # without a sample there is nothing to polish: same fit as polish_iter=0
    full = dict(base, fit_max_rows=None)
    a, b = fit_hmm(X, off, HmmConfig(**full)), fit_hmm(X, off, HmmConfig(**full, polish_iter=1))
    assert a.n_iter_used == b.n_iter_used and a.loglik == b.loglik


def test_hmm_payload_and_meta_records():
    params = HmmParams(
        startprob=np.array([0.25, 0.75]),
        transmat=np.array([[0.9, 0.1], [0.2, 0.8]]),
        means=np.array([[1.0, 2.0], [3.0, 4.0]]),
        covars=np.array([np.diag([0.5, 1.5]), np.diag([2.0, 3.0])]),
    )
    assert params.payload() == {
        "covariance_type": "diag",
        "startprob": [0.25, 0.75],
        "transmat": [[0.9, 0.1], [0.2, 0.8]],
        "means": [[1.0, 2.0], [3.0, 4.0]],
        "variances": [[0.5, 1.5], [2.0, 3.0]],
    }
    seconds = {"init": 0.1, "em": 0.2, "polish": 0.0, "loglik": 0.05, "total": 0.35}
    fit = HmmFit(params=params, model=None, converged=False, n_iter_used=7, fit_rows=100,
                 fit_sequences=4, em_rows=60, em_sequences=2, loglik=-250.0, tol=6e-4,
                 seconds=seconds)  # fmt: skip
    cfg = HmmConfig(n_components=2, n_iter=9, polish_iter=2, random_state=5)
    p = 1 + 2 + 4 + 4  # start, transitions, means, diagonal variances
    assert fit.meta(cfg) == {
        "model_type": "GaussianHMM",
        "n_components": 2,
        "covariance_type": "diag",
        "n_iter_requested": 9,
        "fit_procedure": "fast",
        "tol": 6e-4,
        "tol_per_row": 1e-5,
        "random_state": 5,
        "converged": False,
        "n_iter_used": 7,
        "train_loglik": -250.0,
        "train_loglik_per_obs": -2.5,
        "train_rows": 100,
        "train_sequences": 4,
        "em_rows": 60,
        "em_sequences": 2,
        "em_sampled": True,
        "polish_iter": 2,
        "seconds": seconds,
        "n_parameters": p,
        "aic": 2 * p + 500.0,
        "bic": pytest.approx(p * math.log(100) + 500.0),
        "ic_rows": 100,
    }
    assert fit.meta(HmmConfig(tol=1e-3))["tol_per_row"] is None
    assert dataclasses.replace(fit, em_rows=100).meta(cfg)["em_sampled"] is False


def _noise_data() -> tuple[np.ndarray, np.ndarray]:
    """Three sequences of structureless 2-D noise: EM moves slowly, every start value counts."""
    return np.random.default_rng(8).normal(size=(30, 2)), np.array([0, 10, 22, 30])


def test_spec_procedure_is_hmmlearns_own_fit_on_every_row():
    from hmmlearn.hmm import GaussianHMM

    X, off = _noise_data()
    cfg = HmmConfig(n_components=2, fit_procedure="spec", n_iter=3, min_covar=0.5,
                    random_state=0, fit_max_rows=12)  # fmt: skip
    fit = fit_hmm(X, off, cfg)
    ref = GaussianHMM(n_components=2, min_covar=0.5, n_iter=3, tol=1e-3, random_state=0)
    ref.fit(X, np.diff(off))
    assert fit.em_rows == 30 and fit.em_sequences == 3 and fit.tol == 1e-3
    np.testing.assert_allclose(fit.params.means, ref.means_, rtol=1e-9)
    assert fit.loglik == pytest.approx(ref.score(X, np.diff(off)), rel=1e-9)
    assert fit.n_iter_used == ref.monitor_.iter


def test_fast_fit_stops_by_the_given_tol():
    X, off = _noise_data()
    cfg = HmmConfig(n_components=2, n_iter=40, tol=1e-4, random_state=0, fit_max_rows=None)
    fit = fit_hmm(X, off, cfg)
    ref = _hmmlearn_from(_init_params(X, off, cfg), "diag", 40, 1e-4).fit(X, np.diff(off))
    assert fit.n_iter_used == ref.monitor_.iter
    assert fit.loglik == pytest.approx(ref.score(X, np.diff(off)), rel=1e-9)


def test_fit_seconds_record_every_phase():
    X, off, _ = _regime_data()
    fit = fit_hmm(X, off, HmmConfig(n_components=2, n_iter=2, fit_max_rows=12, polish_iter=1))
    s = fit.seconds
    assert set(s) == {"init", "em", "polish", "loglik", "total"}
    assert min(s.values()) > 0
    assert s["total"] == pytest.approx(s["init"] + s["em"] + s["polish"] + s["loglik"])


def test_state_change_columns_types_and_values():
    cols = state_change_columns(np.array([1, 1, 2, 2, 2, 0]), np.array([0, 4, 6]))
    assert cols["hmm_state_run_length"].dtype == pl.Int32
    assert cols["hmm_state_run_length"].to_list() == [1, 2, 1, 2, 1, 1]
    assert cols["bs_hmm_state_change"].dtype == pl.Int32
    assert cols["hmm_state_prev"].dtype == pl.Int16
    assert cols["hmm_state_prev"].to_list() == [None, 1, 1, 2, None, 2]
    assert cols["hmm_transition_code"].dtype == pl.Int32
    assert cols["hmm_transition_code"].to_list() == [None, 101, 102, 202, None, 200]
    assert cols["hmm_state_changed"].to_list() == [False, False, True, False, False, True]


# --------------------------------------------------------------------------- clustering edges


def test_cluster_metrics_on_three_rows_by_hand():
    X = np.array([[0.0], [1.0], [4.0]])
    m = cluster_metrics(X, np.array([0, 0, 1]))
    # silhouette: (4-1)/4, (3-1)/3 and 0 for the singleton
    assert m["silhouette"] == pytest.approx((0.75 + 2 / 3 + 0.0) / 3)
    # Davies-Bouldin: scatter 0.5 and 0, centroid distance 3.5
    assert m["davies_bouldin"] == pytest.approx(0.5 / 3.5)
    # Calinski-Harabasz: between 2*(0.5-5/3)^2 + (4-5/3)^2 over 1, within 0.5 over 1
    assert m["calinski_harabasz"] == pytest.approx((2 * (7 / 6) ** 2 + (7 / 3) ** 2) / 0.5)
    assert m["silhouette_sample_rows"] == 3 and m["silhouette_sampled"] is False


def test_cluster_metrics_of_one_cluster_and_noise_reports_none():
    X = np.array([[0.0], [0.2], [0.4], [9.0], [9.5]])
    m = cluster_metrics(X, np.array([0, 0, 0, -1, -1]))
    assert m == {
        "n_clusters_detected": 1,
        "has_noise_cluster": True,
        "noise_share": 0.4,
        "metrics_rows": 5,
        "silhouette": None,
        "silhouette_sampled": False,
        "silhouette_sample_rows": 0,
        "silhouette_sample_max": 20_000,
        "davies_bouldin": None,
        "calinski_harabasz": None,
    }


def test_cluster_metrics_with_one_row_per_cluster_reports_none():
    X = np.array([[0.0], [1.0], [4.0]])
    m = cluster_metrics(X, np.array([0, 1, 2]))
    assert m["n_clusters_detected"] == 3 and m["silhouette_sample_rows"] == 3
    assert m["silhouette"] is None and m["davies_bouldin"] is None
    assert m["calinski_harabasz"] is None


def test_hdbscan_on_all_rows_is_sklearns_and_other_sets_take_the_nearest_label():
    from sklearn.cluster import HDBSCAN

    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(0, 0.3, (15, 2)), rng.normal(5, 0.3, (15, 2)),
                        [[20.0, -20.0]]])  # fmt: skip
    other = np.array([[0.2, 0.1], [5.1, 4.8], [19.0, -18.0]])
    cfg = ClusterConfig(n_clusters=6, hdbscan_fit_sample_max=None)
    r = run_clustering(X, "hdbscan", cfg, predict_sets={"predict": X, "other": other})
    ref = HDBSCAN(min_cluster_size=6).fit(X).labels_
    assert r.labels["predict"].tolist() == ref.tolist() and ref[-1] == -1
    nearest = ((other[:, None, :] - X[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    assert r.labels["other"].tolist() == ref[nearest].tolist()
    assert r.model_meta == {
        "method": "hdbscan",
        "min_cluster_size": 6,
        "n_clusters_requested_hint": 6,
        "fit_sample_rows": 31,
        "fit_sampled": False,
        "assignment": "exact",
        "fit_rows": 31,
        "fit_procedure": "fast",
        "predict_rows": 31,
    }
    sampled = run_clustering(X, "hdbscan", ClusterConfig(hdbscan_fit_sample_max=20))
    assert sampled.model_meta["assignment"] == "nearest_fitted_neighbour"
    assert sampled.model_meta["min_cluster_size"] == 5  # max(5, n_clusters)


def test_gmm_meta_record():
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(0, 1, (20, 2)), rng.normal(6, 1, (20, 2))])
    r = run_clustering(X, "gmm", ClusterConfig(n_clusters=2, gmm_max_iter=50))
    meta = r.model_meta
    assert meta["method"] == "gmm" and meta["n_components"] == 2
    assert meta["covariance_type"] == "diag" and meta["reg_covar"] == 1e-6
    assert meta["max_iter"] == 50 and meta["converged"] is True
    assert set(meta) == {"method", "n_components", "covariance_type", "reg_covar", "max_iter",
                         "converged", "n_iter_used", "fit_rows", "fit_procedure",
                         "predict_rows"}  # fmt: skip


@pytest.mark.parametrize(
    "bad", [np.zeros(4), np.zeros((4, 3)), np.zeros((0, 2))], ids=["1d", "cols", "empty"]
)
def test_predict_sets_of_the_wrong_shape_are_refused(bad):
    X = np.arange(8.0).reshape(4, 2)
    with pytest.raises(ValueError, match="predict set 'bad' must be non-empty 2-D with 2 cols"):
        run_clustering(X, "kmeans", ClusterConfig(n_clusters=2), predict_sets={"bad": bad})


def _three_blobs() -> np.ndarray:
    rng = np.random.default_rng(6)
    return np.concatenate([rng.normal(c, 0.5, (14, 2)) for c in (0.0, 4.0, 8.0)])


def test_sampled_kmeans_is_sklearns_restarts_then_one_lloyd_run_with_the_iteration_cap():
    from sklearn.cluster import KMeans

    X = np.random.default_rng(6).normal(size=(42, 2))  # no structure: iterations matter
    cfg = ClusterConfig(n_clusters=3, kmeans_n_init=1, kmeans_max_iter=1, kmeans_init_sample_max=30)
    r = run_clustering(X, "kmeans", cfg)
    idx = np.sort(np.random.default_rng(42).choice(42, size=30, replace=False))
    seed = KMeans(3, n_init=1, max_iter=1, random_state=42).fit(X[idx])
    ref = KMeans(3, init=seed.cluster_centers_, n_init=1, max_iter=1, random_state=42).fit(X)
    assert r.labels["predict"].dtype == np.int32
    assert r.labels["predict"].tolist() == ref.predict(X).tolist()
    assert r.metrics["inertia"] == pytest.approx(ref.inertia_, rel=1e-12)
    assert r.model_meta == {"method": "kmeans", "n_clusters": 3, "n_init": 1, "max_iter": 1,
                            "init_sample_rows": 30, "n_iter_final": 1, "fit_rows": 42,
                            "fit_procedure": "fast", "predict_rows": 42}  # fmt: skip


def test_spec_procedure_fits_on_every_row_and_warns_for_hdbscan(caplog):
    X = _three_blobs()
    spec = dict(fit_procedure="spec", kmeans_init_sample_max=10, hdbscan_fit_sample_max=10)
    km = run_clustering(X, "kmeans", ClusterConfig(n_clusters=3, **spec))
    assert km.model_meta["init_sample_rows"] == 42
    with caplog.at_level("WARNING", logger="mf_pipeline.lib.research.clustering"):
        hd = run_clustering(X, "hdbscan", ClusterConfig(**spec))
    assert hd.model_meta["fit_sampled"] is False and hd.model_meta["fit_sample_rows"] == 42
    assert caplog.messages == [
        "HDBSCAN fit on all 42 rows (fit_procedure spec): time and memory grow with the square "
        "of the rows (about 7 min at 60,000 rows on 2 cores)"
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="mf_pipeline.lib.research.clustering"):
        run_clustering(X, "hdbscan", ClusterConfig(hdbscan_fit_sample_max=None))
    assert caplog.messages == []  # no bound given: nothing to warn about


def test_run_clustering_passes_the_silhouette_bound_and_names_a_missing_primary_set():
    X = _three_blobs()
    r = run_clustering(X, "kmeans", ClusterConfig(n_clusters=3, silhouette_sample_max=10))
    assert r.metrics["silhouette_sampled"] is True and r.metrics["silhouette_sample_rows"] == 10
    assert r.metrics["silhouette_sample_max"] == 10
    with pytest.raises(ValueError, match="primary set 'test' not among predict sets"):
        run_clustering(X, "kmeans", ClusterConfig(n_clusters=3), primary_set="test")


# ------------------------------------------------------------------ splits, labels, features


def _calendar(n: int) -> list[dt.date]:
    return [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)]


def test_resolved_split_dates_and_payload_by_hand():
    cal = _calendar(8)  # 2020-01-01 .. 2020-01-08
    split = split_from_id("2020-01-03", embargo_bars=2, test_end=dt.date(2020, 1, 7))
    assert split.test_end == dt.date(2020, 1, 7)
    assert resolve_split(split, cal[::-1] + cal[:2]).payload() == {
        "split_id": "2020-01-03",
        "split_kind": "walk_forward",
        "in_sample": False,
        "split_mode": "time",
        "train_end": "2020-01-03",
        "embargo_bars": 2,
        "embargo_first_date": "2020-01-04",
        "embargo_last_date": "2020-01-05",
        "test_start": "2020-01-06",
        "test_end": "2020-01-07",
        "train_first_date": "2020-01-01",
        "train_last_date": "2020-01-03",
    }
    assert resolve_split(full_split(), cal).payload() == {
        "split_id": "full", "split_kind": "full_in_sample", "in_sample": True,
        "split_mode": "none", "train_end": None, "embargo_bars": 0,
        "embargo_first_date": None, "embargo_last_date": None, "test_start": None,
        "test_end": None, "train_first_date": "2020-01-01", "train_last_date": "2020-01-08",
    }  # fmt: skip
    three = resolve_split(split_from_id("2020-01-02", embargo_bars=3), cal)
    assert (three.embargo_first, three.embargo_last) == (cal[2], cal[4])
    # one train date is enough; the test needs at least one date after the embargo
    one = resolve_split(split_from_id("2020-01-01", embargo_bars=6), cal)
    assert (one.train_last, one.test_start, one.test_end) == (cal[0], cal[7], cal[7])
    assert infeasible_reason(split_from_id("2020-01-01", embargo_bars=7), cal) == (
        "split 2020-01-01: no trade date left after train_end + 7 embargo bars"
    )
    assert infeasible_reason(split_from_id("2020-01-01", embargo_bars=6), cal) is None
    with pytest.raises(ValueError, match="no trade dates"):
        resolve_split(full_split(), [])
    late = split_from_id("2020-01-03", embargo_bars=2, test_end=dt.date(2020, 1, 5))
    with pytest.raises(ValueError, match="test_end 2020-01-05 < test_start 2020-01-06"):
        resolve_split(late, cal)


def test_walkforward_splits_parse_blank_items_and_carry_test_end():
    end = dt.date(2021, 6, 30)
    splits = walkforward_splits("2014-12-31, ,2012-12-31,", embargo_bars=3, test_end=end)
    assert [(s.split_id, s.embargo_bars, s.test_end) for s in splits] == [
        ("2012-12-31", 3, end), ("2014-12-31", 3, end), ("full", 0, None)]  # fmt: skip
    with pytest.raises(ValueError, match="^embargo_bars must be >= 0$"):
        walkforward_splits(embargo_bars=-1)


def _label_frame() -> pl.DataFrame:
    dates = _calendar(6)
    return pl.DataFrame({
        "ticker": ["A"] * 6 + ["B"] * 3,
        "trade_date": [dt.datetime.combine(d, dt.time()) for d in dates + dates[:3]],
        "close": [10.0, 11.0, 12.0, 11.0, 13.0, 14.0, 5.0, 6.0, 5.0],
    })  # fmt: skip


def test_labelled_split_summary_by_hand():
    split = split_from_id("2020-01-03", embargo_bars=2)
    out = labelled_split(_label_frame(), split, windows=(1, 2), vol_horizon=1)
    s = out.summary
    assert s["label_horizon_bars"] == 2 and s["forward_windows"] == [1, 2]
    assert s["labels_computed_per_segment"] is True
    assert s["rows_embargoed"] == 2 and s["test_start"] == "2020-01-06"
    assert s["raw_stats"] == {
        "all": {"rows": 9, "tickers": 2, "min_trade_date": "2020-01-01",
                "max_trade_date": "2020-01-06"},
        "train": {"rows": 6, "tickers": 2, "min_trade_date": "2020-01-01",
                  "max_trade_date": "2020-01-03"},
        "test": {"rows": 1, "tickers": 1, "min_trade_date": "2020-01-06",
                 "max_trade_date": "2020-01-06"},
    }  # fmt: skip
    # vol_horizon 1: the next bar's absolute return... as a population std of one value, 0
    assert out.train["fwd_vol_proxy_10"].to_list()[:2] == [0.0, 0.0]
    with pytest.raises(ValueError, match="embargo_bars=2 < longest forward horizon 3"):
        labelled_split(_label_frame(), split, windows=(1, 2), vol_horizon=3)
    with pytest.raises(ValueError, match=r"forward labels need columns \['close'\]"):
        labelled_split(_label_frame().drop("close"), split, windows=(1, 2), vol_horizon=1)
    with pytest.raises(ValueError, match="^vol_horizon must be >= 1$"):
        add_forward_labels(_label_frame(), vol_horizon=0)
    with pytest.raises(ValueError, match="^forward windows must contain at least one positive"):
        add_forward_labels(_label_frame(), windows=(0, -5))
    gap = _label_frame().with_columns(pl.col("trade_date").cast(pl.Date))
    gap = gap.with_columns(pl.when(pl.col("close") > 13).then(None).otherwise(pl.col("trade_date"))
                           .alias("trade_date"))  # fmt: skip
    with pytest.raises(ValueError, match="^1 rows have a null trade_date$"):
        labelled_split(gap, split, windows=(1, 2), vol_horizon=1)
    assert _stats(_label_frame().head(0)) == {
        "rows": 0, "tickers": 0, "min_trade_date": None, "max_trade_date": None}  # fmt: skip


def test_scaler_payload_record():
    model = ScalerModel(
        features=("a", "b"), missing_requested_features=("c",), scaler="robust",
        scaling_scope="per_ticker", center=np.array([1.0, 2.0]), spread=np.array([0.5, 4.0]),
        per_ticker=pl.DataFrame({"ticker": ["X", "Y", "Z"]}), fit_rows_before=10,
        fit_rows_after_null_filter=8, fit_ticker_count=3,
        fit_null_counts_per_feature={"a": 2, "b": 0},
    )  # fmt: skip
    expected = {
        "scaler": "robust", "scaling_scope": "per_ticker", "feature_list": ["a", "b"],
        "missing_requested_features": ["c"], "fit_rows_before": 10,
        "fit_rows_after_null_filter": 8, "fit_ticker_count": 3,
        "fit_null_counts_per_feature": {"a": 2, "b": 0}, "center": [1.0, 2.0],
        "spread": [0.5, 4.0], "per_ticker_params_table": True,
        "per_ticker_params_ticker_count": 3,
    }  # fmt: skip
    assert model.payload() == expected
    pooled = dataclasses.replace(model, per_ticker=None, scaling_scope="global")
    assert "per_ticker_params_table" not in pooled.payload()


def test_per_ticker_transform_record_and_values_by_hand():
    inf = float("inf")
    frame = pl.DataFrame({
        "ticker": ["A", "A", "A", "B", "B", "C"],
        "trade_date": _calendar(6),
        "truth": [0, 1, 0, 1, 0, 1],
        "a": [1.0, 3.0, None, 2.0, 4.0, 10.0],
        "b": [0.0, 2.0, 5.0, inf, 1.0, 7.0],
    })  # fmt: skip
    model = fit_scaler(frame.head(5), ["a", "b", "zz"], " Standard", "per_ticker")
    assert model.scaler == "standard" and model.fit_rows_after_null_filter == 3
    out = transform(frame, model, clip_zscore=0, unseen_policy="global", extra_columns=["truth"])
    assert out.frame.columns == ["ticker", "trade_date", "truth", "a", "b"]
    # fit rows (a, b): A (1, 0), (3, 2); B (4, 1). A: mean 2 and 1, std 1 and 1; B: a single
    # row, spread 0 -> 1. C is unseen: pooled mean/std of the three fit rows.
    pooled_a = (10 - 8 / 3) / np.std([1.0, 3.0, 4.0])
    pooled_b = (7 - 1) / np.std([0.0, 2.0, 1.0])
    np.testing.assert_allclose(out.X, [[-1, -1], [1, 1], [0, 0], [pooled_a, pooled_b]])
    assert out.X.flags.c_contiguous  # polars hands out column-major arrays
    assert out.summary == {
        "rows_before": 6, "rows_after_null_filter": 4, "rows_after": 4,
        "rows_dropped_null_features": 2, "selected_feature_count": 2,
        "selected_features": ["a", "b"], "missing_requested_features": ["zz"],
        "null_counts_per_feature": {"a": 1, "b": 1},
        "nonfinite_counts_per_feature": {"a": 0, "b": 1}, "scaler": "standard",
        "scaling_scope": "per_ticker", "clip_zscore": 0, "clipping_applied": False,
        "fit_rows_before": 5, "fit_rows_after_null_filter": 3, "fit_ticker_count": 2,
        "fit_null_counts_per_feature": {"a": 1, "b": 1}, "unseen_policy": "global",
        "rows_unseen_tickers": 1, "rows_dropped_unseen_tickers": 0,
        "rows_scaled_with_pooled_fallback": 1, "unseen_ticker_count": 1,
        "unseen_tickers_sample": ["C"], "unseen_tickers": ["C"],
    }  # fmt: skip
    with pytest.raises(ValueError, match="^every row belongs to a ticker unseen"):
        transform(frame.tail(1), model)
    with pytest.raises(ValueError, match=r"^frame lacks model features: \['b'\]$"):
        transform(frame.drop("b"), model)
    with pytest.raises(ValueError, match="^per_ticker scaling needs a 'ticker' column$"):
        fit_scaler(frame.drop("ticker"), ["a"], "standard", "per_ticker")
    with pytest.raises(ValueError, match="^scaling_scope must be one of global, per_ticker; got"):
        fit_scaler(frame, ["a"], "standard", "pooled")
    with pytest.raises(ValueError, match="^no fit rows left after dropping rows with a missing"):
        fit_scaler(frame.slice(2, 2), ["a", "b"])
    pooled = fit_scaler(frame.drop("ticker"), ["a"])  # global scope needs no ticker
    assert pooled.fit_ticker_count == 0 and pooled.center.tolist() == [4.0]
    assert transform(frame, pooled).X.flags.c_contiguous
    with pytest.raises(ValueError, match="^scaler must be one of standard, robust; got 'minmax'"):
        fit_scaler(frame, ["a"], "minmax")
    with pytest.raises(ValueError, match="^no fit rows left after dropping rows with a missing"):
        fit_scaler(frame.head(0), ["a"])
    with pytest.raises(ValueError, match="^no rows left after dropping rows with a missing"):
        transform(frame.slice(2, 1), model)
    with pytest.raises(ValueError, match="^per_ticker scaling needs a 'ticker' column$"):
        transform(frame.drop("ticker"), model)
