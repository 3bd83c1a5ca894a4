"""Research assets per walk-forward split: clustering and Gaussian-HMM regimes.

Thin wrappers over ``mf_pipeline.lib.steps.research_step``. ``cluster_model``/``hmm_model`` fit
and write a run folder of artifacts; ``cluster_labels``/``hmm_states`` publish that run's
labels per split under ``<gold_root>/research/`` and, for the in-sample ``full`` split only,
as per-ticker files the viewer reads (``cluster_by_symbol``, ``hmm_by_symbol``).
"""

from typing import Any

import dagster as dg

from mf_pipeline.defs.research.partitions import splits_partitions
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.steps import research_step as rs


class PrepConfig(dg.Config):
    dataset_path: str | None = None
    """ML dataset parquet; default the newest export."""
    scaler: str | None = None
    scaling_scope: str | None = None
    clip_zscore: float | None = None
    unseen_policy: str | None = None
    embargo_bars: int | None = None
    date_from: str | None = None
    date_to: str | None = None
    run_id: str | None = None


class ClusterModelConfig(PrepConfig):
    method: str = "kmeans"
    n_clusters: int | None = None
    random_state: int | None = None
    silhouette_sample_max: int | None = None
    kmeans_n_init: int | None = None


class HmmModelConfig(PrepConfig):
    n_components: int | None = None
    covariance_type: str | None = None
    n_iter: int | None = None
    tol_per_row: float | None = None
    random_state: int | None = None
    fit_max_rows: int | None = None
    min_sequence_length: int | None = None
    cluster_labels_file: str | None = None


def _prep_kwargs(config: PrepConfig) -> dict[str, Any]:
    return {k: getattr(config, k) for k in ("scaler", "scaling_scope", "clip_zscore",
                                            "unseen_policy", "embargo_bars", "date_from",
                                            "date_to")}  # fmt: skip


def _recovery(summary: dict[str, Any]) -> dict[str, Any]:
    rec = summary.get("regime_recovery") or {}
    return {f"ari_{r['label_col']}": r["ari"] for r in rec.get("results", [])}


_COMMON = {"partitions_def": splits_partitions, "group_name": "research"}


@dg.asset(deps=["ml_dataset"], kinds={"sklearn"}, **_COMMON)
def cluster_model(context: dg.AssetExecutionContext, config: ClusterModelConfig,
                  settings: PipelineSettings) -> dg.MaterializeResult:
    """Scaler + KMeans/GMM/HDBSCAN fit on the split's train rows (all rows for ``full``,
    in-sample); metrics and profiles on the test rows; artifacts in research_runs/."""
    s = settings.get()
    split = context.partition_key
    prep = rs.prepare(s, config.dataset_path, split, rs.prep_options(s, **_prep_kwargs(config)))
    cfg = rs.cluster_config(s, n_clusters=config.n_clusters, random_state=config.random_state,
                            silhouette_sample_max=config.silhouette_sample_max,
                            kmeans_n_init=config.kmeans_n_init)  # fmt: skip
    out = rs.cluster_run(s, prep, config.method, cfg, run_id=config.run_id)
    rs.record_latest(s, "cluster", split, out.output_dir)
    m = out.summary["metrics"]
    return dg.MaterializeResult(metadata={
        "run_id": out.run_id, "output_dir": str(out.output_dir), "split_kind": prep.split.kind,
        "method": out.summary["method"], "n_clusters": cfg.n_clusters,
        "rows_fit": out.summary["rows_fit"], "rows_used": out.summary["rows_used"],
        "silhouette": m.get("silhouette"), "davies_bouldin": m.get("davies_bouldin"),
        **_recovery(out.summary),
    })  # fmt: skip


@dg.asset(deps=[cluster_model], kinds={"parquet"}, **_COMMON)
def cluster_labels(context: dg.AssetExecutionContext,
                   settings: PipelineSettings) -> dg.MaterializeResult:
    """Cluster ids of the split's predict rows; ``full`` also writes gold/cluster_by_symbol."""
    out = rs.publish_cluster_labels(settings.get(), context.partition_key)
    return dg.MaterializeResult(metadata={k: v for k, v in out.items() if k != "symbol_files"}
                                | {"symbol_tickers": (out.get("symbol_files") or {})
                                   .get("tickers", 0)})  # fmt: skip


@dg.asset(deps=["ml_dataset"], kinds={"hmmlearn"}, **_COMMON)
def hmm_model(context: dg.AssetExecutionContext, config: HmmModelConfig,
              settings: PipelineSettings) -> dg.MaterializeResult:
    """GaussianHMM on the scaled features of the split's train sequences (one per ticker);
    decoded test rows (Viterbi + causal filtered), diagnostics and AIC/BIC in hmm_runs/."""
    s = settings.get()
    split = context.partition_key
    prep = rs.prepare(s, config.dataset_path, split,
                      rs.prep_options(s, "hmm", **_prep_kwargs(config)))  # fmt: skip
    cfg = rs.hmm_config(s, n_components=config.n_components,
                        covariance_type=config.covariance_type, n_iter=config.n_iter,
                        tol_per_row=config.tol_per_row, random_state=config.random_state,
                        fit_max_rows=config.fit_max_rows)  # fmt: skip
    labels = None
    if config.cluster_labels_file:
        from pathlib import Path

        labels = rs.read_cluster_labels(Path(config.cluster_labels_file))
    min_len = config.min_sequence_length or rs.min_sequence_length(s)
    out = rs.hmm_run(s, prep, cfg, min_len, run_id=config.run_id, cluster_labels=labels)
    rs.record_latest(s, "hmm", split, out.output_dir)
    sm = out.summary
    return dg.MaterializeResult(metadata={
        "run_id": out.run_id, "output_dir": str(out.output_dir), "split_kind": prep.split.kind,
        "n_components": cfg.n_components, "rows_fit": sm["rows_fit"],
        "rows_decoded": sm["rows_decoded"], "train_loglik": sm["train_loglik"],
        "test_loglik": sm["test_loglik"], "aic": sm["aic"], "bic": sm["bic"],
        **_recovery(sm),
    })  # fmt: skip


@dg.asset(deps=[hmm_model], kinds={"parquet"}, **_COMMON)
def hmm_states(context: dg.AssetExecutionContext,
               settings: PipelineSettings) -> dg.MaterializeResult:
    """HMM states of the split's predict rows (``hmm_state`` Viterbi, ``hmm_state_filtered``
    causal); ``full`` also writes gold/hmm_by_symbol for the viewer."""
    out = rs.publish_hmm_states(settings.get(), context.partition_key)
    return dg.MaterializeResult(metadata={k: v for k, v in out.items() if k != "symbol_files"}
                                | {"symbol_tickers": (out.get("symbol_files") or {})
                                   .get("tickers", 0)})  # fmt: skip
