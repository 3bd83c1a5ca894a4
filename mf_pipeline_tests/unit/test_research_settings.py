"""Typed ``research_clustering`` / ``research_hmm`` settings and the run configs built from them.

The expected configs below are what the builders returned while the groups were untyped
mappings read with ``dict.get(key, default)``: typing them changed no default and no value.
The one later change is the HMM's own continuous feature list (``HMM_FEATURES``, issue #17).
"""

from pathlib import Path

import pytest

from mf_pipeline.defs.research import config as run_config
from mf_pipeline.lib.research.clustering import ClusterConfig
from mf_pipeline.lib.research.features import DEFAULT_FEATURES, IDENTITY_COLUMNS
from mf_pipeline.lib.research.hmm import HmmConfig
from mf_pipeline.lib.settings import SettingsError, load_settings
from mf_pipeline.lib.steps.research.options import (
    PrepOptions,
    cluster_config,
    hmm_config,
    min_sequence_length,
    prep_options,
)

REPO_SETTINGS = Path(__file__).resolve().parents[2] / "configs" / "settings.yaml"
HMM_FEATURES = ("tmf_21", "tti_proxy_v1_21", "tmf_abs", "atr_pct_14", "tmf_slope_10",
                "tti_proxy_slope_5")
"""The HMM's own default (issue #17): the one default changed on purpose since typing."""
COUNT_FEATURES = {"long_flow_score_20", "short_flow_score_20", "delta_flow_20",
                  "flow_activity_20", "flow_bias_20", "long_burst_20", "short_burst_20",
                  "persistence_pos_20", "persistence_neg_20", "oscillation_index_20",
                  "respect_fail_balance_20", "rec_tmf_zero_up_20", "rec_tmf_zero_down_20",
                  "rec_tmf_burst_up_20", "rec_tmf_burst_down_20", "state_run_length"}
"""Features of DEFAULT_FEATURES built from counts of events in a window (or a run length)."""

OVERRIDE_YAML = """\
research_clustering:
  feature_list: [tmf_21, tmf_abs, delta_flow_20]
  scaler: robust
  scaling_scope_default: per_ticker
  stability: {seeds: 4}
  clip_zscore: null
  silhouette_sample_max: 5000
  random_state: 11
  kmeans: {n_init: 5}
  gmm: {covariance_type: tied, reg_covar: 1.0e-4}
  forward_windows: [5, 10]
research_hmm:
  default_feature_list: [tmf_21, tmf_abs]
  scaling_scope_default: per_ticker
  min_sequence_length: 50
  hmm: {n_components_default: 7, covariance_type: full, n_iter: 50, random_state: 3}
  sweep: {components: [2, 3]}
  stability: {seed_start: 9}
"""




def _built(settings):
    return {
        "prep_cluster": prep_options(settings, "cluster"),
        "prep_hmm": prep_options(settings, "hmm"),
        "prep_hmm_given": prep_options(settings, "hmm", scaler="robust", clip_zscore=3.0,
                                       scaling_scope=None),
        "cluster": cluster_config(settings),
        "cluster_given": cluster_config(settings, n_clusters=7, random_state=None),
        "hmm": hmm_config(settings),
        "hmm_given": hmm_config(settings, n_components=3, covariance_type="full"),
        "min_sequence_length": min_sequence_length(settings),
        "cluster_seeds": run_config.ClusterStabilityConfig().seed_range(settings, "cluster"),
        "hmm_seeds": run_config.HmmStabilityConfig().seed_range(settings, "hmm"),
        "hmm_seeds_given": run_config.HmmStabilityConfig(seeds=2, seed_start=0)
        .seed_range(settings, "hmm"),
        "components": run_config.HmmSweepConfig().component_list(settings),
        "components_given": run_config.HmmSweepConfig(components=[3]).component_list(settings),
    }


DEFAULTS = {
    "prep_cluster": PrepOptions(scaler="standard", scaling_scope="global", clip_zscore=8.0,
                                features=DEFAULT_FEATURES, forward_windows=(5, 10, 20),
                                kind="cluster"),
    "prep_hmm": PrepOptions(scaler="standard", scaling_scope="global", clip_zscore=8.0,
                            features=HMM_FEATURES, forward_windows=(5, 10, 20),
                            kind="hmm"),
    "prep_hmm_given": PrepOptions(scaler="robust", scaling_scope="global", clip_zscore=3.0,
                                  features=HMM_FEATURES, forward_windows=(5, 10, 20),
                                  kind="hmm"),
    "cluster": ClusterConfig(n_clusters=5, random_state=42, silhouette_sample_max=20_000,
                             kmeans_n_init=20, kmeans_max_iter=300, gmm_covariance_type="diag",
                             gmm_reg_covar=1e-6, gmm_max_iter=200),
    "cluster_given": ClusterConfig(n_clusters=7, random_state=42, silhouette_sample_max=20_000,
                                   kmeans_n_init=20, kmeans_max_iter=300,
                                   gmm_covariance_type="diag", gmm_reg_covar=1e-6,
                                   gmm_max_iter=200),
    "hmm": HmmConfig(n_components=5, covariance_type="diag", n_iter=200, random_state=42),
    "hmm_given": HmmConfig(n_components=3, covariance_type="full", n_iter=200, random_state=42),
    "min_sequence_length": 100,
    "cluster_seeds": (10, 42),
    "hmm_seeds": (5, 42),
    "hmm_seeds_given": (2, 0),
    "components": [4, 5, 6, 8],
    "components_given": [3],
}

OVERRIDDEN = {
    "prep_cluster": PrepOptions(scaler="robust", scaling_scope="per_ticker", clip_zscore=None,
                                features=("tmf_21", "tmf_abs", "delta_flow_20"),
                                forward_windows=(5, 10), kind="cluster"),
    # HMM: its own scaler (default) and scope; clipping and windows of research_clustering.
    "prep_hmm": PrepOptions(scaler="standard", scaling_scope="per_ticker", clip_zscore=None,
                            features=("tmf_21", "tmf_abs"), forward_windows=(5, 10),
                            kind="hmm"),
    "prep_hmm_given": PrepOptions(scaler="robust", scaling_scope="per_ticker",
                                  clip_zscore=3.0, features=("tmf_21", "tmf_abs"),
                                  forward_windows=(5, 10), kind="hmm"),
    "cluster": ClusterConfig(n_clusters=5, random_state=11, silhouette_sample_max=5000,
                             kmeans_n_init=5, kmeans_max_iter=300, gmm_covariance_type="tied",
                             gmm_reg_covar=1e-4, gmm_max_iter=200),
    "cluster_given": ClusterConfig(n_clusters=7, random_state=11, silhouette_sample_max=5000,
                                   kmeans_n_init=5, kmeans_max_iter=300,
                                   gmm_covariance_type="tied", gmm_reg_covar=1e-4,
                                   gmm_max_iter=200),
    "hmm": HmmConfig(n_components=7, covariance_type="full", n_iter=50, random_state=3),
    "hmm_given": HmmConfig(n_components=3, covariance_type="full", n_iter=50, random_state=3),
    "min_sequence_length": 50,
    "cluster_seeds": (4, 42),
    "hmm_seeds": (5, 9),
    "hmm_seeds_given": (2, 0),
    "components": [2, 3],
    "components_given": [3],
}


def test_default_hmm_features_are_continuous_and_causal(clean_env):
    """No forward label, no identity column and none of the count features whose spiky
    Gaussian emissions made the filtered posteriors degenerate (docs/RESEARCH.md)."""
    feats = load_settings().research_hmm.default_feature_list
    assert tuple(feats) == HMM_FEATURES
    assert COUNT_FEATURES.issubset(DEFAULT_FEATURES)
    assert not [f for f in feats if f.startswith("fwd_") or f in IDENTITY_COLUMNS]
    assert not set(feats) & COUNT_FEATURES


def test_builders_from_built_in_defaults(clean_env):
    assert _built(load_settings()) == DEFAULTS


def test_builders_from_the_repo_settings_file(clean_env):
    assert _built(load_settings(REPO_SETTINGS)) == DEFAULTS


def test_builders_from_an_override_file(clean_env):
    custom = clean_env / "override.yaml"
    custom.write_text(OVERRIDE_YAML)
    assert _built(load_settings(custom)) == OVERRIDDEN


def test_env_overrides_nested_keys_typed_and_keeps_the_rest(clean_env, monkeypatch):
    monkeypatch.setenv("MF_PIPELINE_RESEARCH_HMM__HMM__N_COMPONENTS_DEFAULT", "7")
    monkeypatch.setenv("MF_PIPELINE_RESEARCH_CLUSTERING__FORWARD_WINDOWS", "[5,10]")
    monkeypatch.setenv("MF_PIPELINE_RESEARCH_CLUSTERING__CLIP_ZSCORE", "4.5")
    settings = load_settings(REPO_SETTINGS)
    assert hmm_config(settings) == HmmConfig(n_components=7)  # the YAML's other hmm keys
    assert settings.research_hmm.hmm.tol == 1e-3
    options = prep_options(settings)
    assert options.forward_windows == (5, 10) and options.clip_zscore == 4.5


@pytest.mark.parametrize(
    ("env", "value", "key"),
    [
        ("RESEARCH_HMM__HMM__COVARIANCE_TYPE", "bogus", r"research_hmm\.hmm\.covariance_type"),
        ("RESEARCH_CLUSTERING__GMM__COVARIANCE_TYPE", "bogus",
         r"research_clustering\.gmm\.covariance_type"),
        ("RESEARCH_CLUSTERING__SCALER", "minmax", r"research_clustering\.scaler"),
        ("RESEARCH_HMM__SCALING_SCOPE_DEFAULT", "per_sector",
         r"research_hmm\.scaling_scope_default"),
        ("RESEARCH_HMM__STABILITY__SEEDS", "0", r"research_hmm\.stability\.seeds"),
        ("RESEARCH_HMM__SWEEP__COMPONENTS", "[4,0]", r"research_hmm\.sweep\.components"),
        ("RESEARCH_CLUSTERING__FORWARD_WINDOWS", "[]", r"research_clustering\.forward_windows"),
        ("RESEARCH_CLUSTERING__KMEANS__N_INIT", "many", r"research_clustering\.kmeans\.n_init"),
        ("RESEARCH_HMM__HMM__FIT_PROCEDURE", "exact", r"research_hmm\.hmm\.fit_procedure`"),
        ("RESEARCH_CLUSTERING__FIT_PROCEDURE", "exact", r"research_clustering\.fit_procedure`"),
        ("RESEARCH_HMM__HMM__TOL", "0", r"research_hmm\.hmm\.tol`"),
        ("RESEARCH_HMM__HMM__TOL_PER_ROW", "-1e-5", r"research_hmm\.hmm\.tol_per_row`"),
    ],
)
def test_bad_research_value_names_its_key(clean_env, monkeypatch, env, value, key):
    monkeypatch.setenv(f"MF_PIPELINE_{env}", value)
    with pytest.raises(SettingsError, match=key) as raised:
        load_settings(REPO_SETTINGS)
    assert f"MF_PIPELINE_{env}" in str(raised.value)  # and the variable to set


@pytest.mark.parametrize(
    ("yaml", "key"),
    [
        ("research_hmm:\n  hmm: {n_component_default: 5}\n", "n_component_default"),
        ("research_clustering:\n  scaling_scope: global\n", "scaling_scope"),
        ("research_clustering:\n  stability: {seed: 3}\n", "seed"),
    ],
)
def test_unknown_research_key_is_an_error(clean_env, yaml, key):
    custom = clean_env / "bad.yaml"
    custom.write_text(yaml)
    with pytest.raises(SettingsError, match=rf"\.{key}`.*[Ee]xtra"):
        load_settings(custom)


GROUPS = ("research_clustering", "research_hmm", "cluster_qa", "cluster_hardening")


def test_every_key_of_the_repo_file_is_modelled_and_is_the_default(clean_env):
    """The typed groups hold exactly the YAML's keys and values; the built-in defaults are the
    same (an empty ``feature_list`` stands for ``DEFAULT_FEATURES``, the YAML's list)."""
    import yaml

    raw = yaml.safe_load(REPO_SETTINGS.read_text())
    loaded = load_settings(REPO_SETTINGS).model_dump(mode="json")
    built_in = load_settings().model_dump(mode="json")
    assert raw["research_clustering"]["feature_list"] == list(DEFAULT_FEATURES)
    built_in["research_clustering"]["feature_list"] = list(DEFAULT_FEATURES)
    for group in GROUPS:
        assert loaded[group] == raw[group], group
        assert built_in[group] == raw[group], group


@pytest.mark.parametrize(
    ("env", "value", "key"),
    [
        ("CLUSTER_QA__MIN_STATE_SHARE", "1.5", r"cluster_qa\.min_state_share"),
        ("CLUSTER_HARDENING__WEIGHTS__RET_CV", "-1", r"cluster_hardening\.weights\.ret_cv"),
        ("CLUSTER_HARDENING__PENALTIES", '{"LOW_N": "x"}', r"cluster_hardening\.penalties"),
    ],
)
def test_bad_qa_value_names_its_key(clean_env, monkeypatch, env, value, key):
    monkeypatch.setenv(f"MF_PIPELINE_{env}", value)
    with pytest.raises(SettingsError, match=key):
        load_settings(REPO_SETTINGS)
