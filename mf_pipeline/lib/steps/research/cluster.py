"""Clustering (research.md §4): one run with its artifacts, the method × k sweep, seed
stability and the read-only sanity report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.research import clustering as cl
from mf_pipeline.lib.research.features import Preprocessed
from mf_pipeline.lib.research.null import flat, separation_note, separation_null
from mf_pipeline.lib.research.profiles import cluster_profiles, label_concentration
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.research import artifacts
from mf_pipeline.lib.steps.research.artifacts import write_preprocess, write_table
from mf_pipeline.lib.steps.research.prepare import Prepared

SAMPLE_ROWS = 100_000
TRAIN_ROWS = "clustered_train_rows"
"""The train rows of a walk-forward split with their cluster: a backtest judges the clusters on
them, so the policy it trades the test rows with is known at the train end."""
TRAIN_ROW_COLUMNS = ("ticker", "trade_date", "cluster_id", "close")
CLUSTER_MODEL = "cluster_model.json"
"""The fitted model's parameters (:class:`clustering.ClusterModel`), the feature list and the
scaler files: what labels new rows without a refit (a locked candidate's cluster decode)."""
FITTED_ROWS = "cluster_model_fitted_rows.parquet"
"""HDBSCAN only: the fitted (scaled) rows and their labels, for the nearest-row rule."""


def _notes(sil: float | None, largest: float | None, sep_note: str,
           ari_mean: float | None = None) -> list[str]:  # fmt: skip
    """``sep_note`` comes from the permutation null (``null.separation_note``), never from a
    fixed threshold on the score."""
    notes = [
        "silhouette_unavailable" if sil is None
        else ("weak_cluster_geometry" if sil < 0.10 else "cluster_geometry_ok"),
        "cluster_concentration_unknown" if largest is None
        else ("high_cluster_concentration" if largest > 0.70 else "cluster_concentration_ok"),
        sep_note,
    ]  # fmt: skip
    if ari_mean is not None:
        notes.append("low_seed_stability" if ari_mean < 0.50 else "seed_stability_ok")
    return notes


@dataclass
class ClusterOutcome:
    run_id: str
    output_dir: Path
    summary: dict[str, Any]
    clustered: pl.DataFrame
    result: cl.ClusterResult = field(repr=False)


def write_cluster_model(model: cl.ClusterModel, features: tuple[str, ...], folder: Path,
                        settings: Settings) -> str:  # fmt: skip
    """``cluster_model.json`` (+ the HDBSCAN fitted rows); floats round-trip exactly in JSON."""
    payload: dict[str, Any] = {"method": model.method, "covariance_type": model.covariance_type,
                               "feature_list": list(features),
                               "scaler_params_file": "scaler_params.json",
                               "scaler_params_table_file": "scaler_params_per_ticker.parquet"}
    if model.method == "hdbscan":
        rows = pl.DataFrame(model.arrays["rows"], schema=list(features), orient="row")
        lake.write_parquet(rows.with_columns(pl.Series("cluster_id", model.arrays["labels"],
                                                       dtype=pl.Int32)),
                           folder / FITTED_ROWS, settings.parquet)  # fmt: skip
        payload["fitted_rows_file"] = FITTED_ROWS
    else:
        payload["arrays"] = {k: np.asarray(v).tolist() for k, v in model.arrays.items()}
    return str(lake.write_json(payload, folder / CLUSTER_MODEL))


def read_cluster_model(folder: Path) -> tuple[cl.ClusterModel, dict[str, Any]]:
    """The model :func:`write_cluster_model` wrote, and its JSON (feature list, scaler files)."""
    path = folder / CLUSTER_MODEL
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the clustering run predates saved models; "
                                "rerun it")
    payload = artifacts.read_json(path) or {}
    if payload["method"] == "hdbscan":
        rows = pl.read_parquet(folder / payload["fitted_rows_file"])
        arrays = {"rows": rows.select(payload["feature_list"]).to_numpy().astype(np.float64),
                  "labels": rows["cluster_id"].to_numpy()}
    else:
        arrays = {k: np.array(v, dtype=np.float64) for k, v in payload["arrays"].items()}
    return cl.ClusterModel(payload["method"], arrays, payload.get("covariance_type")), payload


def _clustered(
    prep: Prepared, result: cl.ClusterResult, name: str, base: Preprocessed
) -> pl.DataFrame:
    cols = [pl.Series("cluster_id", result.labels[name], dtype=pl.Int32)]
    if name in result.prob_max:
        cols += [pl.Series("cluster_prob_max", result.prob_max[name]),
                 pl.Series("cluster_entropy", result.entropy[name])]  # fmt: skip
    return base.frame.with_columns(cols)


def cluster_fit(prep: Prepared, method: str, config: cl.ClusterConfig,
                with_train: bool = True) -> cl.ClusterResult:  # fmt: skip
    """Fit on the fit rows; label predict (and train for a walk-forward split)."""
    sets = {"predict": prep.predict.X}
    if with_train and not prep.split.in_sample:
        sets["train"] = (prep.train or prep.fit).X
        if prep.test is not None:
            sets["test"] = prep.test.X
    return cl.run_clustering(prep.fit.X, method, config, sets, "predict")


def cluster_run(
    settings: Settings,
    prep: Prepared,
    method: str,
    config: cl.ClusterConfig,
    run_id: str | None = None,
    write_full: bool = True,
) -> ClusterOutcome:
    """research.md §4.3: one clustering run and its artifacts in a new run folder."""
    started, t0 = artifacts.now(), time.perf_counter()
    run_id = run_id or artifacts.new_run_id("research")
    result = cluster_fit(prep, method, config)
    clustered = _clustered(prep, result, "predict", prep.predict)
    folder = settings.artifacts_root / "research_runs" / f"{run_id}_{result.method}_{prep.tag}"
    prof = cluster_profiles(clustered)
    outputs: dict[str, Any] = write_preprocess(prep, folder, settings)
    outputs["cluster_model_path"] = None
    if result.fitted is not None:
        outputs["cluster_model_path"] = write_cluster_model(result.fitted, prep.scaler.features,
                                                            folder, settings)  # fmt: skip
    outputs |= write_table(prof["profile"], folder, "cluster_profile", ("parquet", "csv"),
                           settings)  # fmt: skip
    outputs |= write_table(prof["crosstab"], folder, "cluster_state_distribution", ("parquet",),
                           settings)  # fmt: skip
    outputs |= write_table(prof["forward_validation"], folder, "cluster_forward_validation",
                           ("parquet",), settings)  # fmt: skip
    outputs["clustered_dataset_sample_parquet"] = str(lake.write_parquet(
        clustered.head(SAMPLE_ROWS), folder / "clustered_dataset_sample.parquet", settings.parquet))
    outputs["clustered_dataset_full_path"] = None
    if write_full:
        outputs["clustered_dataset_full_path"] = str(lake.write_parquet(
            clustered, folder / "clustered_dataset_full.parquet", settings.parquet))
    for seg in ("train", "test"):
        outputs[f"cluster_profile_{seg}_parquet"] = outputs[f"cluster_profile_{seg}_csv"] = None
    if not prep.split.in_sample:
        train = _clustered(prep, result, "train", prep.train or prep.fit)
        test = clustered if prep.test is None else _clustered(prep, result, "test", prep.test)
        keep = [c for c in train.columns if c in TRAIN_ROW_COLUMNS or c.startswith("fwd_")]
        outputs["clustered_train_rows_path"] = str(lake.write_parquet(
            train.select(keep), folder / f"{TRAIN_ROWS}.parquet", settings.parquet))
        for seg, frame in (("train", train), ("test", test)):
            p = cluster_profiles(frame)["profile"]
            got = write_table(p, folder, f"cluster_profile_{seg}", ("parquet", "csv"), settings)
            outputs |= {f"cluster_profile_{seg}_{k.rsplit('_', 1)[1]}": v for k, v in got.items()}
    conc = label_concentration(result.labels["predict"])
    sep_null = separation_null(clustered, "cluster_id")
    sep = sep_null["observed"]
    m = result.metrics
    common = prep.common()
    robust = {
        "method": result.method, "n_clusters_requested": config.n_clusters,
        "largest_cluster_share": conc["largest_share"],
        "effective_cluster_count": conc["effective_count"],
        "cluster_count_detected": conc["detected"], "noise_share": conc["noise_share"],
        "forward_separation_score": sep, "forward_separation_null": sep_null,
        "forward_separation_above_old_threshold": None if sep is None else abs(sep) >= 0.002,
        "silhouette": m.get("silhouette"),
        "silhouette_sampled": m.get("silhouette_sampled"),
        "davies_bouldin": m.get("davies_bouldin"), "calinski_harabasz": m.get("calinski_harabasz"),
        "robustness_notes": _notes(m.get("silhouette"), conc["largest_share"],
                                   separation_note(sep_null)),
        "in_sample": prep.in_sample,
    }  # fmt: skip
    outputs["robustness_summary_path"] = str(lake.write_json(robust,
                                                             folder / "robustness_summary.json"))
    metrics = {**common, "method": result.method, "n_clusters_requested": config.n_clusters,
               "metrics": m, "model_meta": result.model_meta,
               "metrics_evaluated_on": prep.predict_on}  # fmt: skip
    outputs["clustering_metrics_path"] = str(lake.write_json(metrics,
                                                             folder / "clustering_metrics.json"))
    outputs["run_summary_path"] = str(folder / "run_summary.json")
    summary = {
        **common,
        "run_id": run_id,
        "dataset_metadata_path": str(prep.metadata_path) if prep.metadata_path else None,
        "started_ts": started,
        "finished_ts": artifacts.now(),
        "duration_sec": round(time.perf_counter() - t0, 3),
        "rows_loaded": prep.rows_loaded,
        "rows_fit": prep.fit.frame.height,
        "rows_used": clustered.height,
        "features_count": len(prep.scaler.features),
        "method": result.method,
        "n_clusters_requested": config.n_clusters,
        "random_state": config.random_state,
        "fit_procedure": config.fit_procedure,
        "config": cl.config_payload(config),
        "metrics": m,
        "regime_recovery": artifacts.regime_recovery(prep, clustered, ("cluster_id",)),
        "write_full_clustered": write_full,
        **prep.recorded(),
        "output_dir": str(folder),
        "outputs": outputs,
    }
    lake.write_json(summary, folder / "run_summary.json")
    return ClusterOutcome(run_id, folder, summary, clustered, result)


def _cluster_row(prep: Prepared, method: str, k: int, result: cl.ClusterResult | None,
                 error: str | None) -> dict[str, Any]:  # fmt: skip
    base = {"method": method, "n_clusters": k, "rows_fit": prep.fit.frame.height,
            "rows_used": prep.predict.frame.height, "features_count": len(prep.scaler.features),
            "split_mode": prep.common()["split_mode"], "fit_on": prep.fit_on,
            "predict_on": prep.predict_on, "scaler": prep.options.scaler,
            "scaling_scope": prep.options.scaling_scope}  # fmt: skip
    keys = ("silhouette", "davies_bouldin", "calinski_harabasz", "bic", "aic",
            "n_clusters_detected", "forward_return_separation_score", "largest_cluster_share",
            "effective_cluster_count")  # fmt: skip
    null_keys = tuple(flat({}, "forward_return_separation"))
    if result is None:
        return {**base, **dict.fromkeys(keys), **dict.fromkeys(null_keys), "status": "failed",
                "error": error}  # fmt: skip
    clustered = _clustered(prep, result, "predict", prep.predict)
    conc = label_concentration(result.labels["predict"])
    m = result.metrics
    return {**base, **{k2: m.get(k2) for k2 in keys[:6]},
            **flat(separation_null(clustered, "cluster_id"), "forward_return_separation"),
            "largest_cluster_share": conc["largest_share"],
            "effective_cluster_count": conc["effective_count"], "status": "ok", "error": None}


def cluster_sweep(settings: Settings, prep: Prepared, methods: list[str], ks: list[int],
                  config: cl.ClusterConfig) -> dict[str, Any]:  # fmt: skip
    """research.md §4.4: a method × k grid, failures recorded per row; flat output files."""
    run_id = artifacts.new_run_id("research-sweep")
    rows = []
    for method in methods:
        grid = [max(2, k) for k in ks] if method in ("kmeans", "gmm") else [max(2, ks[0])]
        for k in grid:
            try:
                res = cluster_fit(prep, method, replace(config, n_clusters=k), with_train=False)
                rows.append(_cluster_row(prep, method, k, res, None))
            except Exception as error:  # noqa: BLE001 - a failed grid point is a result row
                rows.append(_cluster_row(prep, method, k, None, str(error)))
    folder = settings.artifacts_root / "research_runs"
    payload = {**prep.common(), "run_id": run_id, "rows_loaded": prep.rows_loaded,
               "rows_fit": prep.fit.frame.height, "rows_used": prep.predict.frame.height,
               "features_count": len(prep.scaler.features), "split_summary": prep.split_summary,
               "filters": prep.options.filters(), "fit_procedure": config.fit_procedure,
               "results": rows}  # fmt: skip
    json_path = lake.write_json(payload, folder / f"{run_id}_cluster_sweep_summary.json")
    csv_path = lake.write_csv(pl.DataFrame(rows, infer_schema_length=None),
                              folder / f"{run_id}_cluster_sweep_summary.csv")
    return {"run_id": run_id, "summary_json": str(json_path), "summary_csv": str(csv_path),
            "rows": len(rows), "failed": sum(r["status"] == "failed" for r in rows)}


def cluster_stability(settings: Settings, prep: Prepared, method: str, config: cl.ClusterConfig,
                      seeds: int, seed_start: int) -> dict[str, Any]:  # fmt: skip
    """research.md §4.5: refit per seed; pairwise ARI of the predict labels."""
    if method not in ("kmeans", "gmm"):
        raise ValueError("stability supports kmeans or gmm only")
    if seeds < 1:
        raise ValueError("seeds must be >= 1")
    started, t0 = artifacts.now(), time.perf_counter()
    run_id = artifacts.new_run_id("research-stability")
    folder = settings.artifacts_root / "research_runs" / f"{run_id}_{method}_{prep.tag}"
    rows, labels, sizes = [], {}, []
    for seed in range(seed_start, seed_start + seeds):
        res = cluster_fit(prep, method, replace(config, random_state=seed), with_train=False)
        labels[seed] = res.labels["predict"]
        row = _cluster_row(prep, method, config.n_clusters, res, None)
        rows.append({"seed": seed, **{k: v for k, v in row.items()
                                      if k not in ("status", "error", "features_count",
                                                   "n_clusters_detected")}})  # fmt: skip
        ids, counts = np.unique(labels[seed], return_counts=True)
        sizes.append(pl.DataFrame({"seed": seed, "cluster_id": ids.astype(np.int32),
                                   "row_count": counts, "share": counts / counts.sum()}))
    by_seed = pl.DataFrame(rows, infer_schema_length=None).sort("seed")
    ari, ari_summary = artifacts.ari_table(labels)
    out = write_table(by_seed, folder, "stability_by_seed", ("parquet", "csv"), settings)
    out |= write_table(ari, folder, "stability_pairwise_ari", ("parquet", "csv"), settings)
    out |= write_table(pl.concat(sizes), folder, "stability_cluster_sizes_by_seed", ("csv",),
                       settings)  # fmt: skip
    out["split_summary_path"] = str(lake.write_json(prep.split_summary,
                                                    folder / "split_summary.json"))

    def mean(col: str) -> float | None:
        v = by_seed[col].cast(pl.Float64).drop_nulls()
        return float(v.mean()) if v.len() else None

    robust = {"method": method, "n_clusters": config.n_clusters,
              "seeds": list(labels), "ari_summary": ari_summary,
              "largest_cluster_share_mean": mean("largest_cluster_share"),
              "forward_separation_score_mean": mean("forward_return_separation_score"),
              "forward_separation_null_p95_mean": mean("forward_return_separation_null_p95"),
              "forward_separation_ok_share": mean("forward_return_separation_ok"),
              "silhouette_mean": mean("silhouette")}  # fmt: skip
    # judged per seed against its own null; ok only when every seed beats its null's p95
    ok_share = robust["forward_separation_ok_share"]
    robust["robustness_notes"] = _notes(
        robust["silhouette_mean"], robust["largest_cluster_share_mean"],
        separation_note(None if ok_share is None else {"ok": ok_share == 1.0}),
        ari_summary["ari_mean"])  # fmt: skip
    out["robustness_summary_path"] = str(lake.write_json(robust,
                                                         folder / "robustness_summary.json"))
    summary = {**prep.common(), "filters": prep.options.filters(),
               "run_id": run_id, "started_ts": started, "finished_ts": artifacts.now(),
               "duration_sec": round(time.perf_counter() - t0, 3), "method": method,
               "n_clusters": config.n_clusters, "fit_procedure": config.fit_procedure,
               "seed_start": seed_start, "seeds": seeds, "rows_fit": prep.fit.frame.height,
               "rows_used": prep.predict.frame.height,
               "ari_summary": ari_summary, "output_dir": str(folder), "outputs": out}  # fmt: skip
    lake.write_json(summary, folder / "stability_summary.json")
    return summary


def cluster_sanity(run_dir: Path) -> dict[str, Any]:
    """research.md §4.7 (read-only)."""
    for name in ("run_summary.json", "clustering_metrics.json", "cluster_profile.parquet"):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"missing {run_dir / name}")
    profile = pl.read_parquet(run_dir / "cluster_profile.parquet")
    counts = artifacts.nan_null_counts(profile)
    return {
        "run_summary": artifacts.read_json(run_dir / "run_summary.json"),
        "metrics": artifacts.read_json(run_dir / "clustering_metrics.json"),
        "preprocess_summary": artifacts.read_json(run_dir / "preprocess_summary.json"),
        "split_summary": artifacts.read_json(run_dir / "split_summary.json"),
        "robustness_summary": artifacts.read_json(run_dir / "robustness_summary.json"),
        "top_fwd_ret_10": artifacts.top_rows(profile, "fwd_ret_10_mean",
                                             ["cluster_id", "row_count", "fwd_ret_10_mean"], 5),
        "top_flow_activity": artifacts.top_rows(profile, "flow_activity_20_mean",
                                                ["cluster_id", "row_count",
                                                 "flow_activity_20_mean"], 5),
        "nan_null_counts": counts,
        "total_nan_count": sum(v["nan"] for v in counts.values()),
    }  # fmt: skip
