"""Value tests that kill the mutmut survivors of ``lib/research`` (docs/RESEARCH.md,
"Mutation testing"): each pins a reported figure or record key by hand or by an independent
formula written here, where the older tests only checked a shape, a relation or a ranking."""

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.research.clustering import ClusterConfig, cluster_metrics, run_clustering
from mf_pipeline.lib.research.hmm import HmmParams, _gather_sequences
from mf_pipeline.lib.research.hmm_diagnostics import (
    fitted_matrix,
    hmm_diagnostics,
    robustness_summary,
    runs,
    state_confidence_stats,
    state_frequency,
    transition_tables,
)
from mf_pipeline.lib.research.null import circular_shift_index, flat, separation_null
from mf_pipeline.lib.research.profiles import (
    forward_separation,
    group_profile,
    label_concentration,
    labelled_profiles,
)
from mf_pipeline.lib.research.recovery import adjusted_rand

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
