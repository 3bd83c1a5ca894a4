"""Issue #17 items 3-5: figures say what they measure (hand-computed values on tiny frames)."""

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.research.hmm import HmmParams
from mf_pipeline.lib.research.hmm_diagnostics import (
    dwell_stats,
    hmm_diagnostics,
    robustness_summary,
)


def _params(k: int) -> HmmParams:
    return HmmParams(np.full(k, 1 / k), np.full((k, k), 1 / k), np.zeros((k, 1)),
                     np.ones((k, 1, 1)))  # fmt: skip


def _diag(states: list[int], k: int = 3) -> dict[str, pl.DataFrame]:
    frame = pl.DataFrame({"hmm_state": pl.Series(states, dtype=pl.Int16)})
    return hmm_diagnostics(frame, np.array([0, len(states)]), _params(k))


# ------------------------------------------------------------------ item 3a: dwell statistics


def test_dwell_reports_complete_runs_and_the_old_all_runs_figures():
    # one sequence 0 0 | 1 1 1 | 0: runs 0×2 (cut by the start), 1×3 (complete), 0×1 (cut by
    # the end); state 2 never occurs
    d = dwell_stats(np.array([0, 0, 1, 1, 1, 0]), np.array([0, 6]), _params(3))
    assert d["dwell_count"].to_list() == [0, 1, 0]
    assert d["dwell_mean"].to_list() == [None, 3.0, None]
    assert d["censored_run_count"].to_list() == [2, 0, 0]
    # the old tool's definition: every run as-is
    assert d["dwell_count_all_runs"].to_list() == [2, 1, 0]
    assert d["dwell_mean_all_runs"].to_list() == [1.5, 3.0, None]
    assert d["dwell_median_all_runs"].to_list() == [1.5, 3.0, None]
    assert d["max_dwell_all_runs"].to_list() == [2, 3, None]
    # linear quantiles of [1, 2]: 1.1 and 1.9
    assert d["dwell_p10_all_runs"][0] == pytest.approx(1.1)
    assert d["dwell_p90_all_runs"][0] == pytest.approx(1.9)


def test_robustness_reports_both_dwell_means_and_says_which_is_which():
    r = robustness_summary(_diag([0, 0, 1, 1, 1, 0]), None, None, 0)
    assert r["avg_dwell_mean"] == 3.0  # complete runs: state 1 only
    assert r["avg_dwell_mean_all_runs"] == pytest.approx((1.5 + 3.0) / 2)
    assert "complete runs" in r["dwell_definition"]


# ------------------------------------------------- item 3b: average self-transition probability


def test_avg_self_transition_ignores_a_state_that_never_occurs():
    # pairs 0→0, 0→1, 1→1, 1→1, 1→0: a_00 = 1/2, a_11 = 2/3; state 2 never occurs (K = 3)
    d = _diag([0, 0, 1, 1, 1, 0])
    tm = d["transition_matrix"].filter(pl.col("hmm_state_prev") == pl.col("hmm_state"))
    assert tm["transition_probability"].to_list() == [0.5, pytest.approx(2 / 3), None]
    r = robustness_summary(d, None, None, 0)
    assert r["avg_self_transition_prob"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # 0.5833
    assert r["avg_self_transition_prob_observed_pairs"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r["notes"][2] == "state_persistence_ok"


def test_a_state_that_occurs_but_never_stays_counts_zero_and_the_old_figure_is_reported():
    # pairs 0→0, 0→1, 1→1, 1→2, 2→0: a_00 = 1/2, a_11 = 1/2, a_22 = 0 (state 2 occurs once)
    r = robustness_summary(_diag([0, 0, 1, 1, 2, 0]), None, None, 0)
    assert r["avg_self_transition_prob"] == pytest.approx(1 / 3)  # (1/2 + 1/2 + 0) / 3
    assert r["notes"][2] == "low_state_persistence"  # 0.333 < 0.35
    # the old tool listed observed pairs only: the (2, 2) pair never occurs, so 0.5
    assert r["avg_self_transition_prob_observed_pairs"] == pytest.approx(0.5)


# ------------------------------------------------------------------------- item 5: small defects


def test_hit_rate_is_null_not_nan_for_a_state_without_finite_forward_values():
    from mf_pipeline.lib.research.profiles import forward_validation

    frame = pl.DataFrame({
        "hmm_state": [0, 0, 0, 1, 1],
        "fwd_ret_10": [0.02, -0.01, 0.03, None, float("nan")],
    })  # fmt: skip
    out = forward_validation(frame, "hmm_state", ("fwd_ret_10",))
    assert out["fwd_ret_10_n"].to_list() == [3, 0]
    assert out["fwd_ret_10_hit_rate"][0] == pytest.approx(2 / 3)
    assert out["fwd_ret_10_hit_rate"][1] is None  # 0/0: no value, not NaN
    assert out["fwd_ret_10_hit_rate"].null_count() == 1


def test_flow_crosstabs_are_by_flow_state_label_derived_from_the_code():
    from mf_pipeline.lib.research.profiles import cluster_profiles, hmm_state_profiles

    frame = pl.DataFrame({
        "cluster_id": pl.Series([0, 0, 0, 1], dtype=pl.Int32),
        "hmm_state": pl.Series([0, 0, 0, 1], dtype=pl.Int16),
        "flow_state_code": [0, 2, 2, 4],  # the export has the code only
        "fwd_ret_10": [0.01, 0.02, -0.01, 0.0],
    })  # fmt: skip
    xt = cluster_profiles(frame)["crosstab"]
    assert xt.columns == ["cluster_id", "flow_state_label", "count", "share_in_cluster"]
    assert xt.rows() == [(0, "S0_QUIET", 1, pytest.approx(1 / 3)),
                         (0, "S2_PERSISTENT_DEMAND", 2, pytest.approx(2 / 3)),
                         (1, "S4_PERSISTENT_SUPPLY", 1, 1.0)]  # fmt: skip
    assert hmm_state_profiles(frame)["crosstab"]["flow_state_label"].to_list() == [
        "S0_QUIET", "S2_PERSISTENT_DEMAND", "S4_PERSISTENT_SUPPLY"]  # fmt: skip
    d = hmm_diagnostics(frame, np.array([0, 4]), _params(2))["hmm_vs_flow_state_crosstab"]
    assert d.columns == ["hmm_state", "flow_state_label", "count", "share_in_hmm_state"]
    assert d["count"].to_list() == [1, 2, 1]
    # no flow column at all: empty, with the spec's schema
    empty = cluster_profiles(frame.drop("flow_state_code"))["crosstab"]
    assert empty.height == 0 and empty.schema["flow_state_label"] == pl.String


# --------------------------------------------------------------- research step on a tiny dataset

FEATURES = ("f1", "f2")


def _dataset(path, short_train_rows: int = 5):
    """A: 2020-01-01 .. 150 business days; B: the same end, but only ``short_train_rows``
    rows up to 2020-03-31 (the train end of ``wf2020-03-31``)."""
    import datetime as dt

    days = [d for d in (dt.date(2020, 1, 1) + dt.timedelta(i) for i in range(220))
            if d.weekday() < 5][:150]  # fmt: skip
    train_days = [d for d in days if d <= dt.date(2020, 3, 31)]
    rng = np.random.default_rng(0)
    parts = []
    late = [d for d in days if d > train_days[-short_train_rows - 1]]
    for ticker, ds in (("A", days), ("B", late)):
        n = len(ds)
        state = (np.arange(n) // 15) % 2
        parts.append(pl.DataFrame({
            "ticker": ticker, "trade_date": ds,
            "flow_state_code": pl.Series(state * 2, dtype=pl.Int32),
            "f1": rng.normal(state * 3.0, 0.5), "f2": rng.normal(-state * 3.0, 0.5),
            "close": 10 * np.exp(np.cumsum(rng.normal(0, 0.01, n))),
        }))  # fmt: skip
    pl.concat(parts).write_parquet(path)
    return path


def _prep(isolated, tmp_path, **options):
    from mf_pipeline.lib.steps.research.options import PrepOptions
    from mf_pipeline.lib.steps.research.prepare import prepare

    settings = isolated(tmp_path / "raw")
    data = _dataset(tmp_path / "dataset.parquet")
    opts = PrepOptions(features=FEATURES, **{"kind": "hmm", **options})
    return settings, prepare(settings, data, "wf2020-03-31", opts)


HMM = dict(n_components=2, n_iter=20, fit_max_rows=None, init_sample_rows=1000)


def test_dropped_short_tickers_fit_counts_the_fit_set(isolated, tmp_path):
    from mf_pipeline.lib.research.hmm import HmmConfig
    from mf_pipeline.lib.steps.research.hmm import hmm_run

    settings, prep = _prep(isolated, tmp_path)
    # B has 5 train rows (< 10: dropped from the fit) but ~60 test rows (decoded)
    assert prep.fit.frame.filter(pl.col("ticker") == "B").height == 5
    out = hmm_run(settings, prep, HmmConfig(**HMM), min_len=10)
    import json

    meta = json.loads((out.output_dir / "hmm_model_meta.json").read_text())
    assert meta["dropped_short_tickers_fit"] == 1
    assert meta["dropped_short_tickers_decoded"] == 0
    assert out.summary["sequences_fit"] == 1 and out.summary["sequences_decoded"] == 2


# ------------------------------------------------------------- item 4: in-sample results labelled


@pytest.mark.parametrize(("fit_on", "predict_on", "in_sample"), [
    ("train", "test", False), ("all", "test", True), ("train", "all", True),
    ("train", "train", True), ("all", "all", True),
])  # fmt: skip
def test_in_sample_whenever_the_fit_rows_include_an_evaluated_row(
    isolated, tmp_path, fit_on, predict_on, in_sample
):
    _, prep = _prep(isolated, tmp_path, fit_on=fit_on, predict_on=predict_on)
    assert not prep.split.in_sample  # a time split in every case
    assert prep.in_sample is in_sample
    assert prep.common()["in_sample"] is in_sample
    truth = prep.predict.frame.select("ticker", "trade_date", pl.lit(0).alias("regime"))
    from dataclasses import replace

    from mf_pipeline.lib.steps.research.artifacts import regime_recovery

    rec = regime_recovery(replace(prep, truth=truth), prep.predict.frame, ())
    assert rec["in_sample"] is in_sample


def test_fit_on_all_hmm_run_has_no_test_loglik_only_an_in_sample_one(isolated, tmp_path):
    import json

    from mf_pipeline.lib.research import hmm as hm
    from mf_pipeline.lib.research.hmm import HmmConfig
    from mf_pipeline.lib.steps.research.hmm import hmm_run

    settings, prep = _prep(isolated, tmp_path, fit_on="all")
    out = hmm_run(settings, prep, HmmConfig(**HMM), min_len=10)
    sm = out.summary
    assert sm["in_sample"] is True and sm["robustness_summary"]["in_sample"] is True
    assert sm["test_loglik"] is None  # the "test" rows were fitted: not a test figure
    # the decoded (test) rows' log-likelihood, under its honest name
    p = out.fit.params
    seqs = hm.build_sequences(prep.predict.frame, prep.predict.X, 10)
    expected = hm.total_loglik(p, seqs.X, seqs.offsets)
    assert sm["eval_loglik_in_sample"] == pytest.approx(expected)
    rob = json.loads((out.output_dir / "robustness_summary.json").read_text())
    assert rob["test_loglik_per_obs"] is None and rob["in_sample"] is True
    assert rob["eval_loglik_in_sample_per_obs"] == pytest.approx(expected / seqs.n_rows)
    meta = json.loads((out.output_dir / "hmm_model_meta.json").read_text())
    assert meta["test_loglik"] is None and meta["test_rows"] == 0
    assert meta["eval_loglik_in_sample"] == pytest.approx(expected)

    # the honest walk-forward run keeps its test figure
    (tmp_path / "wf").mkdir()
    settings, prep = _prep(isolated, tmp_path / "wf")
    sm = hmm_run(settings, prep, HmmConfig(**HMM), min_len=10).summary
    assert sm["in_sample"] is False and sm["test_loglik"] is not None
    assert sm["eval_loglik_in_sample"] is None


def test_fit_on_all_cluster_run_is_labelled_in_sample(isolated, tmp_path):
    import json

    from mf_pipeline.lib.research import clustering as cl
    from mf_pipeline.lib.steps.research.cluster import cluster_run

    settings, prep = _prep(isolated, tmp_path, fit_on="all", kind="cluster")
    out = cluster_run(settings, prep, "kmeans", cl.ClusterConfig(n_clusters=2,
                                                                  kmeans_n_init=2))
    assert out.summary["in_sample"] is True
    rob = json.loads((out.output_dir / "robustness_summary.json").read_text())
    assert rob["in_sample"] is True
