"""Clustering engine, metrics (sampled silhouette), profiles and the ARI helper."""

from datetime import date

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.research.clustering import (
    ClusterConfig,
    cluster_metrics,
    run_clustering,
    silhouette,
)
from mf_pipeline.lib.research.profiles import (
    cluster_profiles,
    forward_separation,
    label_concentration,
)
from mf_pipeline.lib.research.recovery import adjusted_rand, match_states, recovery_report


def _blobs(n: int = 600, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    centers = rng.normal(0, 6, (k, 4))
    return centers[truth] + rng.normal(0, 1, (n, 4)), truth


def test_fast_silhouette_equals_sklearn():
    from sklearn.metrics import silhouette_score

    X, truth = _blobs(500)
    truth = truth.copy()
    truth[7] = 9  # a singleton cluster scores 0 in both
    assert silhouette(X, truth, chunk_cells=10_000) == pytest.approx(
        silhouette_score(X, truth), abs=1e-10
    )


def test_metrics_on_a_sample_are_flagged_as_sampled():
    X, truth = _blobs(900)
    full = cluster_metrics(X, truth, silhouette_sample_max=5000)
    assert not full["silhouette_sampled"] and full["silhouette_sample_rows"] == 900
    part = cluster_metrics(X, truth, silhouette_sample_max=300, random_state=1)
    assert part["silhouette_sampled"] and part["silhouette_sample_rows"] == 300
    assert part["silhouette"] == pytest.approx(full["silhouette"], abs=0.05)
    assert part["davies_bouldin"] == full["davies_bouldin"]  # always on all rows
    one = cluster_metrics(X, np.zeros(900, dtype=int))
    assert one["silhouette"] is None and one["davies_bouldin"] is None


@pytest.mark.parametrize("method", ["kmeans", "gmm", "hdbscan"])
def test_methods_recover_blobs_and_are_deterministic(method):
    X, truth = _blobs(600)
    cfg = ClusterConfig(n_clusters=3, kmeans_n_init=3, kmeans_init_sample_max=200,
                        hdbscan_fit_sample_max=400, silhouette_sample_max=250)  # fmt: skip
    test_X = X[:100] + 0.01
    a = run_clustering(X, method, cfg, predict_sets={"predict": X, "test": test_X})
    b = run_clustering(X, method, cfg, predict_sets={"predict": X, "test": test_X})
    assert np.array_equal(a.labels["predict"], b.labels["predict"])
    assert a.metrics == b.metrics and a.metrics["silhouette_sampled"]
    labels = a.labels["predict"]
    ok = labels >= 0
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth[ok], labels[ok]) > 0.9
    assert a.labels["test"].shape == (100,)
    if method == "gmm":
        assert {"bic", "aic"} <= set(a.metrics) and a.prob_max["test"].dtype == np.float32
    if method == "kmeans":
        assert a.model_meta["init_sample_rows"] == 200 and "inertia" in a.metrics
    if method == "hdbscan":
        assert a.model_meta["fit_sampled"]


def test_unknown_method_rejected():
    with pytest.raises(ValueError, match="method must be one of"):
        run_clustering(np.zeros((5, 2)), "dbscan")


def test_cluster_profiles_forward_validation_columns():
    n = 8
    df = pl.DataFrame(
        {
            "ticker": ["A", "A", "B", "B", "A", "B", "A", "B"],
            "trade_date": [date(2020, 1, i + 1) for i in range(n)],
            "cluster_id": [0, 0, 0, 1, 1, 1, 1, 0],
            "tmf_21": np.arange(n, dtype=float),
            "fwd_ret_10": [0.1, -0.2, np.nan, 0.3, np.inf, 0.0, None, 0.05],
            "flow_state_code": [0, 1, 1, 2, 2, 2, 0, 0],
        }
    )
    out = cluster_profiles(df)
    prof = out["profile"]
    assert prof["row_count"].to_list() == [4, 4]
    assert prof["fwd_ret_10_n"].to_list() == [3, 2]  # NaN/inf/null sanitised away
    assert prof["fwd_ret_10_hit_rate"].to_list() == pytest.approx([2 / 3, 0.5])
    assert prof["tmf_21_std"][0] == pytest.approx(np.std([0, 1, 2, 7]))
    assert forward_separation(prof) == pytest.approx(abs(np.mean([0.1, -0.2, 0.05]) - 0.15))
    ct = out["crosstab"]
    assert ct.columns == ["cluster_id", "flow_state_label", "count", "share_in_cluster"]
    conc = label_concentration(np.array([0, 0, 1, -1]))
    assert conc["largest_share"] == 0.5 and conc["noise_share"] == 0.25 and conc["detected"] == 2


def test_adjusted_rand_helper_is_permutation_invariant_and_skips_nulls():
    truth = [0, 0, 1, 1, 2, 2, None]
    df = pl.DataFrame({"regime": truth, "hmm_state": [5, 5, 3, 3, 1, 1, 1]})
    r = adjusted_rand(df, "hmm_state", "regime")
    assert r["ari"] == pytest.approx(1.0) and r["rows_compared"] == 6
    assert recovery_report(df)[0]["label_col"] == "hmm_state"
    assert match_states(np.array([5, 5, 3, 3, 1]), np.array([0, 0, 1, 1, 2])) == {1: 2, 3: 1, 5: 0}
    empty = adjusted_rand(df.with_columns(pl.lit(None).alias("regime")), "hmm_state", "regime")
    assert empty["ari"] is None and empty["rows_compared"] == 0
