"""Research assets per walk-forward split: clustering and Gaussian-HMM regimes.

Thin wrappers over ``mf_pipeline.lib.steps.research``. ``cluster_model``/``hmm_model`` fit
one split with the options of their run config and write a run folder of the old artifacts;
their output (the run's record) goes through our IO manager to ``cluster_labels``/
``hmm_states``, which publish that run's labels per split under ``<gold_root>/research/`` and,
for the in-sample ``full`` split only, as per-ticker files the viewer reads. Sweeps and seed
stability are config-driven assets too (group ``research_experiments``), so every research
command is a Dagster run in the UI.
"""

from pathlib import Path
from typing import Any

import dagster as dg

from mf_pipeline.defs.research.config import (
    ClusterModelConfig,
    ClusterStabilityConfig,
    ClusterSweepConfig,
    HmmModelConfig,
    HmmStabilityConfig,
    HmmSweepConfig,
    plain,
)
from mf_pipeline.defs.research.partitions import REGIME_TAGS, research_splits
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.steps.research import cluster, hmm, options, publish
from mf_pipeline.orchestration.freshness import OPTIONS, SETTINGS_DIGEST, research_settings_digest

FIT_POOL = "research_fit"
"""Concurrency pool of the CPU-heavy fits (dagster.yaml: one run holding it at a time)."""
MODEL = {"partitions_def": research_splits, "tags": REGIME_TAGS, "group_name": "research",
         "io_manager_key": "lake_io", "deps": ["ml_dataset"], "pool": FIT_POOL}
PUBLISH = {"partitions_def": research_splits, "tags": REGIME_TAGS, "group_name": "research",
           "kinds": {"parquet"}}
EXPERIMENT = {"partitions_def": research_splits, "group_name": "research_experiments",
              "deps": ["ml_dataset"], "pool": FIT_POOL}


def _recovery(summary: dict[str, Any]) -> dict[str, Any]:
    rec = summary.get("regime_recovery") or {}
    return {f"ari_{r['label_col']}": r["ari"] for r in rec.get("results", [])}


def _record(out: Any, summary_keys: tuple[str, ...]) -> dict[str, Any]:
    """What a model asset hands on: the run folder and its headline figures."""
    return {"run_id": out.run_id, "output_dir": str(out.output_dir),
            **{key: out.summary.get(key) for key in summary_keys}}


@dg.asset(kinds={"sklearn"}, **MODEL)
def cluster_model(context: dg.AssetExecutionContext, config: ClusterModelConfig,
                  settings: PipelineSettings) -> dg.Output[dict]:
    """Scaler + KMeans/GMM/HDBSCAN fit on the split's train rows (all rows for `full`,
    in-sample); metrics and profiles on the test rows; artifacts in research_runs/."""
    s = settings.get()
    prep = config.prepare(s, "cluster", context.partition_key, config.seed(s, "cluster"))
    cfg = config.cluster_config(s)
    out = cluster.cluster_run(s, prep, plain(config.method), cfg, run_id=config.run_id,
                              write_full=True)
    metrics = out.summary["metrics"]
    record = _record(out, ("split_id", "split_kind", "in_sample", "method", "rows_fit",
                           "rows_used"))
    return dg.Output(record, metadata={
        **record, "output_dir": dg.MetadataValue.path(str(out.output_dir)),
        "n_clusters": cfg.n_clusters, OPTIONS: config.given(),
        SETTINGS_DIGEST: research_settings_digest(s),
        "silhouette": metrics.get("silhouette"), "davies_bouldin": metrics.get("davies_bouldin"),
        **_recovery(out.summary),
    })


@dg.asset(**PUBLISH)
def cluster_labels(context: dg.AssetExecutionContext, settings: PipelineSettings,
                   cluster_model: dict) -> dg.MaterializeResult:
    """Cluster ids of the split's predict rows from the fitted `cluster_model` run; `full`
    also writes the per-ticker files the viewer's cluster band reads."""
    out = publish.publish_cluster_labels(settings.get(), context.partition_key,
                                         cluster_model["output_dir"])
    return dg.MaterializeResult(metadata=_published(out))


@dg.asset(kinds={"hmmlearn"}, **MODEL)
def hmm_model(context: dg.AssetExecutionContext, config: HmmModelConfig,
              settings: PipelineSettings) -> dg.Output[dict]:
    """GaussianHMM on the scaled features of the split's train sequences (one per ticker);
    decoded test rows (Viterbi + causal filtered), diagnostics and AIC/BIC in hmm_runs/."""
    s = settings.get()
    prep = config.prepare(s, "hmm", context.partition_key, config.seed(s, "hmm"))
    cfg = config.hmm_config(s)
    labels = hmm.read_cluster_labels(Path(config.cluster_labels_file)) \
        if config.cluster_labels_file else None
    out = hmm.hmm_run(s, prep, cfg, config.min_sequence_length or options.min_sequence_length(s),
                      run_id=config.run_id, cluster_labels=labels,
                      write_full_csv=config.write_full_decoded_csv)
    sm = out.summary
    record = _record(out, ("split_id", "split_kind", "in_sample", "n_components", "rows_fit",
                           "rows_decoded"))
    return dg.Output(record, metadata={
        **record, "output_dir": dg.MetadataValue.path(str(out.output_dir)),
        OPTIONS: config.given(), SETTINGS_DIGEST: research_settings_digest(s),
        "train_loglik": sm["train_loglik"],
        "test_loglik": sm["test_loglik"], "aic": sm["aic"], "bic": sm["bic"],
        **_recovery(sm),
    })


@dg.asset(**PUBLISH)
def hmm_states(context: dg.AssetExecutionContext, settings: PipelineSettings,
               hmm_model: dict) -> dg.MaterializeResult:
    """HMM states of the split's predict rows (`hmm_state` Viterbi, `hmm_state_filtered`
    causal) from the fitted `hmm_model` run; `full` also writes the viewer's files."""
    out = publish.publish_hmm_states(settings.get(), context.partition_key, hmm_model["output_dir"])
    return dg.MaterializeResult(metadata=_published(out))


def _published(out: dict[str, Any]) -> dict[str, Any]:
    symbol_files = out.get("symbol_files") or {}
    return {**{k: v for k, v in out.items() if k != "symbol_files"},
            "path": dg.MetadataValue.path(out["path"]),
            "symbol_tickers": symbol_files.get("tickers", 0)}


def _experiment(out: dict[str, Any], config: Any) -> dg.MaterializeResult:
    """Headline figures and the run folder of a sweep or stability run."""
    folder = out.get("output_dir") or str(Path(out["summary_json"]).parent)
    return dg.MaterializeResult(metadata={
        **{k: v for k, v in out.items() if isinstance(v, str | int | float | bool | dict)
           and k not in ("outputs", "split_summary", "filters")},
        "output_dir": dg.MetadataValue.path(folder), "options": config.given(),
    })


@dg.asset(kinds={"sklearn"}, **EXPERIMENT)
def cluster_sweep(context: dg.AssetExecutionContext, config: ClusterSweepConfig,
                  settings: PipelineSettings) -> dg.MaterializeResult:
    """Method × k grid on one split → research_runs/<id>_cluster_sweep_*/ (research.md §4.4)."""
    s = settings.get()
    prep = config.prepare(s, "cluster", context.partition_key, config.random_state)
    out = cluster.cluster_sweep(s, prep, plain(config.methods), list(config.n_clusters_list),
                                config.cluster_config(s, random_state=config.random_state))
    return _experiment(out, config)


@dg.asset(kinds={"sklearn"}, **EXPERIMENT)
def cluster_stability(context: dg.AssetExecutionContext, config: ClusterStabilityConfig,
                      settings: PipelineSettings) -> dg.MaterializeResult:
    """Refit per seed on one split, pairwise ARI of the labels (research.md §4.5)."""
    s = settings.get()
    prep = config.prepare(s, "cluster", context.partition_key, config.seed(s, "cluster"))
    seeds, seed_start = config.seed_range(s, "cluster")
    out = cluster.cluster_stability(s, prep, plain(config.method),
                                    config.cluster_config(s, n_clusters=config.n_clusters),
                                    seeds, seed_start)
    return _experiment(out, config)


@dg.asset(kinds={"hmmlearn"}, **EXPERIMENT)
def hmm_sweep(context: dg.AssetExecutionContext, config: HmmSweepConfig,
              settings: PipelineSettings) -> dg.MaterializeResult:
    """Fit each state count on one split → hmm_runs/<id>_hmm_sweep_*/ (research.md §5.9)."""
    s = settings.get()
    prep = config.prepare(s, "hmm", context.partition_key, config.seed(s, "hmm"))
    out = hmm.hmm_sweep(s, prep, config.component_list(s), config.hmm_config(s),
                        options.min_sequence_length(s))
    return _experiment(out, config)


@dg.asset(kinds={"hmmlearn"}, **EXPERIMENT)
def hmm_stability(context: dg.AssetExecutionContext, config: HmmStabilityConfig,
                  settings: PipelineSettings) -> dg.MaterializeResult:
    """Refit per seed on one split, pairwise ARI of the Viterbi paths (research.md §5.10)."""
    s = settings.get()
    prep = config.prepare(s, "hmm", context.partition_key, config.seed(s, "hmm"))
    seeds, seed_start = config.seed_range(s, "hmm")
    out = hmm.hmm_stability(s, prep, config.hmm_config(s, n_components=config.n_components),
                            options.min_sequence_length(s), seeds, seed_start)
    return _experiment(out, config)
