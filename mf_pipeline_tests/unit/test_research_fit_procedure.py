"""The declared fitting procedure (``fast`` | ``spec``) and the HMM's absolute ``tol``.

``spec`` must be the old tool's call exactly, so each spec fit is compared with scikit-learn /
hmmlearn called directly with the spec's arguments (an independent reference). The CLI tests
capture the run config ``mf research-*`` hands to Dagster.
"""


import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

import mf_pipeline.cli.research_commands  # noqa: F401  (registers the commands)
from mf_pipeline.cli import app
from mf_pipeline.defs.research import config as run_config
from mf_pipeline.lib.research.clustering import ClusterConfig, run_clustering
from mf_pipeline.lib.research.hmm import HmmConfig, fit_hmm
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.lib.steps.research.options import cluster_config, hmm_config
from mf_pipeline.orchestration import runner


@pytest.fixture(scope="module")
def chain():
    """Three sequences (300, 250, 200 rows) from a sticky 2-state Gaussian chain."""
    rng = np.random.default_rng(5)
    lengths = np.array([300, 250, 200])
    states = [0]
    for _ in range(lengths.sum() - 1):
        states.append(states[-1] if rng.random() < 0.95 else 1 - states[-1])
    z = np.array(states)
    means = np.array([[0.0, 1.0], [2.5, -1.5]])
    X = means[z] + rng.normal(size=(z.size, 2))
    return X, np.concatenate([[0], np.cumsum(lengths)]), lengths


def test_spec_hmm_is_hmmlearn_with_the_spec_arguments(chain):
    from hmmlearn.hmm import GaussianHMM

    X, offsets, lengths = chain
    fit = fit_hmm(X, offsets, HmmConfig(n_components=2, fit_procedure="spec", n_iter=100))
    ref = GaussianHMM(n_components=2, covariance_type="diag", n_iter=100, tol=1e-3,
                      random_state=42).fit(X, lengths)
    np.testing.assert_allclose(fit.params.means, ref.means_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fit.params.transmat, ref.transmat_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fit.params.startprob, ref.startprob_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.diagonal(fit.params.covars, axis1=1, axis2=2),
                               ref.covars_.diagonal(axis1=1, axis2=2), rtol=0, atol=1e-12)
    assert fit.n_iter_used == ref.monitor_.iter
    assert fit.loglik == pytest.approx(ref.score(X, lengths), rel=1e-10)
    meta = fit.meta(HmmConfig(n_components=2, fit_procedure="spec"))
    assert (meta["fit_procedure"], meta["tol"], meta["tol_per_row"]) == ("spec", 1e-3, None)
    assert meta["em_rows"] == meta["train_rows"] == 750 and meta["em_sampled"] is False


def test_fast_hmm_is_not_the_spec_fit(chain):
    """The two procedures really differ (own KMeans start), so the test above has teeth."""
    X, offsets, _ = chain
    fast = fit_hmm(X, offsets, HmmConfig(n_components=2, n_iter=100))
    spec = fit_hmm(X, offsets, HmmConfig(n_components=2, n_iter=100, fit_procedure="spec"))
    assert not np.allclose(fast.params.means, spec.params.means, rtol=0, atol=1e-12)


def test_tol_reaches_the_model(chain):
    X, offsets, _ = chain
    for procedure in ("fast", "spec"):
        fit = fit_hmm(X, offsets, HmmConfig(n_components=2, fit_procedure=procedure, tol=0.5))
        assert fit.model.monitor_.tol == 0.5 and fit.tol == 0.5
        assert fit.meta(HmmConfig(fit_procedure=procedure, tol=0.5))["tol"] == 0.5
    fast = fit_hmm(X, offsets, HmmConfig(n_components=2, tol_per_row=1e-4))
    assert fast.model.monitor_.tol == pytest.approx(1e-4 * 750)  # per row x EM rows
    spec = fit_hmm(X, offsets, HmmConfig(n_components=2, fit_procedure="spec"))
    assert spec.model.monitor_.tol == 1e-3


def test_bad_procedure_or_tol_names_the_field(chain):
    X, offsets, _ = chain
    with pytest.raises(ValueError, match="fit_procedure must be one of fast, spec"):
        fit_hmm(X, offsets, HmmConfig(fit_procedure="exact"))
    with pytest.raises(ValueError, match="tol must be > 0"):
        fit_hmm(X, offsets, HmmConfig(tol=0.0))
    with pytest.raises(ValueError, match="fit_procedure must be one of fast, spec"):
        run_clustering(X, "kmeans", ClusterConfig(fit_procedure="exact"))


def test_spec_kmeans_is_sklearn_on_all_rows():
    from sklearn.cluster import KMeans

    X = np.random.default_rng(1).normal(size=(900, 3)) + np.repeat(np.eye(3) * 4, 300, axis=0)
    cfg = ClusterConfig(n_clusters=3, kmeans_n_init=4, kmeans_init_sample_max=200)
    spec = run_clustering(X, "kmeans", ClusterConfig(**{**cfg.__dict__, "fit_procedure": "spec"}))
    ref = KMeans(3, n_init=4, max_iter=300, random_state=42).fit(X)
    np.testing.assert_array_equal(spec.labels["predict"], ref.labels_)
    assert spec.metrics["inertia"] == pytest.approx(ref.inertia_, rel=1e-12)
    assert spec.model_meta["init_sample_rows"] == 900
    assert spec.model_meta["fit_procedure"] == "spec"
    fast = run_clustering(X, "kmeans", cfg)
    assert fast.model_meta["init_sample_rows"] == 200  # the bound spec ignores


def test_spec_hdbscan_is_sklearn_on_all_rows(caplog):
    from sklearn.cluster import HDBSCAN

    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(c, 0.3, size=(200, 2)) for c in (0.0, 3.0, 6.0)])
    cfg = ClusterConfig(n_clusters=3, hdbscan_fit_sample_max=150, fit_procedure="spec")
    spec = run_clustering(X, "hdbscan", cfg)
    ref = HDBSCAN(min_cluster_size=5, min_samples=None).fit(X)
    np.testing.assert_array_equal(spec.labels["predict"], ref.labels_)
    assert (spec.model_meta["fit_sample_rows"], spec.model_meta["assignment"]) == (600, "exact")
    assert "HDBSCAN fit on all 600 rows" in caplog.text  # the quadratic cost is announced


def test_settings_choose_the_procedure_and_tol(clean_env, monkeypatch):
    monkeypatch.setenv("MF_PIPELINE_RESEARCH_HMM__HMM__TOL", "0.02")
    monkeypatch.setenv("MF_PIPELINE_RESEARCH_HMM__HMM__TOL_PER_ROW", "3e-6")
    monkeypatch.setenv("MF_PIPELINE_RESEARCH_CLUSTERING__FIT_PROCEDURE", "spec")
    settings = load_settings()
    assert cluster_config(settings).fit_procedure == "spec"
    fast = hmm_config(settings)
    assert (fast.fit_procedure, fast.tol, fast.tol_per_row) == ("fast", None, 3e-6)
    assert hmm_config(settings, fit_procedure="spec").tol == 0.02  # research_hmm.hmm.tol
    assert hmm_config(settings, tol=0.3).tol == 0.3  # given: absolute in either procedure
    given = run_config.HmmModelConfig(fit_procedure="spec", tol=0.25).hmm_config(settings)
    assert (given.fit_procedure, given.tol) == ("spec", 0.25)
    sweep = run_config.HmmSweepConfig(fit_procedure="spec").hmm_config(settings)
    assert (sweep.fit_procedure, sweep.tol) == ("spec", 0.02)
    stable = run_config.ClusterStabilityConfig(fit_procedure="fast")
    assert stable.cluster_config(settings, n_clusters=4).fit_procedure == "fast"


@pytest.fixture
def captured(clean_env, monkeypatch):
    """The run config each command hands to Dagster (the run itself is not started)."""
    pl.DataFrame({"ticker": ["A"]}).write_parquet(clean_env / "dataset.parquet")
    seen: list[dict] = []

    def fake_run(settings, assets, split, config, log=None):
        seen.append(config["ops"][assets[0]]["config"])
        raise RuntimeError("not run in this test")

    monkeypatch.setattr(runner, "run_assets", fake_run)
    return seen


FULL = ("--split", "full", "--dataset", "dataset.parquet")


@pytest.mark.parametrize("command", [
    "research-hmm-run", "research-hmm-sweep", "research-hmm-stability",
    "research-cluster-run", "research-cluster-sweep", "research-cluster-stability",
])  # fmt: skip
def test_cli_fit_procedure_reaches_the_run_config(captured, command):
    CliRunner().invoke(app, [command, *FULL, "--fit-procedure", "SPEC"])
    assert captured[-1]["fit_procedure"] == "spec"


def test_cli_tol_reaches_the_run_config(captured):
    CliRunner().invoke(app, ["research-hmm-run", *FULL, "--tol", "0.05"])
    assert captured[-1]["tol"] == 0.05 and "fit_procedure" not in captured[-1]


@pytest.mark.parametrize(("args", "option"), [
    (("research-hmm-run", "--tol", "0"), "--tol"),
    (("research-hmm-run", "--fit-procedure", "exact"), "--fit-procedure"),
    (("research-cluster-sweep", "--fit-procedure", "exact"), "--fit-procedure"),
])  # fmt: skip
def test_cli_bad_fit_option_names_it(captured, args, option):
    result = CliRunner().invoke(app, [*args, *FULL])
    assert result.exit_code != 0 and not captured
    assert option in result.output + (result.stderr or "")
