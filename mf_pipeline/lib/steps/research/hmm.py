"""Gaussian-HMM regimes (research.md §5): one run (fit, Viterbi + forward-filtered decode,
diagnostics, artifacts), the component sweep, seed stability, the read-only sanity
report and the ``--cluster-labels-file`` reader.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.research import hmm as hm
from mf_pipeline.lib.research.hmm_diagnostics import hmm_diagnostics, robustness_summary
from mf_pipeline.lib.research.null import flat, separation_null
from mf_pipeline.lib.research.profiles import (
    FILTERED_SOURCE,
    VITERBI_SOURCE,
    hmm_state_profiles,
    labelled_profiles,
)
from mf_pipeline.lib.research.train_scorecard import train_state_scorecard
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.research import artifacts
from mf_pipeline.lib.steps.research.artifacts import write_preprocess, write_table
from mf_pipeline.lib.steps.research.prepare import Prepared

DECODED_SAMPLE_ROWS = 5_000
TRAIN_SCORECARD = "train_state_scorecard"
"""Per filtered state, fwd_ret_10 on the fit rows: the backtest's direction source."""


@dataclass
class HmmOutcome:
    run_id: str
    output_dir: Path
    summary: dict[str, Any]
    decoded: pl.DataFrame
    fit: hm.HmmFit = field(repr=False)


def _keep_columns(prep: Prepared) -> list[str]:
    return [c for c in prep.predict.frame.columns if c not in ("ticker", "trade_date")]


def hmm_fit_decode(prep: Prepared, config: hm.HmmConfig, min_len: int
                   ) -> tuple[hm.HmmFit, hm.Sequences, hm.Sequences, hm.Decoded,
                              float | None]:  # fmt: skip
    """Fit on the fit sequences; decode the predict sequences; test log-likelihood if any.
    Returns ``(fit, fit sequences, decoded sequences, decoded, test loglik)``."""
    keep = _keep_columns(prep)
    fit_seqs = hm.build_sequences(prep.fit.frame, prep.fit.X, min_len, keep)
    fit = hm.fit_hmm(fit_seqs.X, fit_seqs.offsets, config)
    seqs = fit_seqs
    if prep.predict is not prep.fit:
        seqs = hm.build_sequences(prep.predict.frame, prep.predict.X, min_len, keep)
    dec = hm.decode(fit.params, seqs)
    return fit, fit_seqs, seqs, dec, (dec.loglik if _decodes_test(prep) else None)


def _decodes_test(prep: Prepared) -> bool:
    """True when the decoded rows are exactly the test rows and the fit never saw them
    (otherwise ``test_loglik`` is null and the figure is ``eval_loglik_in_sample``)."""
    return not prep.in_sample


def hmm_run(
    settings: Settings,
    prep: Prepared,
    config: hm.HmmConfig,
    min_len: int,
    run_id: str | None = None,
    cluster_labels: pl.DataFrame | None = None,
    write_full_csv: bool = False,
) -> HmmOutcome:
    """research.md §5.8: fit, decode (Viterbi + forward-filtered), diagnostics, artifacts."""
    started, t0 = artifacts.now(), time.perf_counter()
    run_id = run_id or artifacts.new_run_id("hmm")
    fit, fit_seqs, seqs, dec, test_ll = hmm_fit_decode(prep, config, min_len)
    frame = dec.frame.with_columns(
        pl.lit("v1").alias("hmm_schema_version"),
        pl.lit("hmm_baseline_v1").alias("hmm_calc_version"),
        pl.lit(run_id).alias("run_id"), pl.lit(artifacts.now()).alias("built_ts"),
        pl.lit(prep.split_key).alias("split_id"),
    )  # fmt: skip
    folder = settings.artifacts_root / "hmm_runs" / f"{run_id}_hmm_{prep.tag}"
    out: dict[str, Any] = write_preprocess(prep, folder, settings)
    out["decoded_rows"] = str(lake.write_parquet(frame, folder / "decoded_rows.parquet",
                                                 settings.parquet))  # fmt: skip
    out["decoded_rows_sample"] = str(lake.write_csv(
        frame.head(DECODED_SAMPLE_ROWS).drop("trade_dt", strict=False),
        folder / "decoded_rows_sample.csv"))
    if write_full_csv:
        out["decoded_rows_csv"] = str(lake.write_csv(frame.drop("trade_dt", strict=False),
                                                     folder / "decoded_rows.csv"))
    # Viterbi (``hmm_state``) tables describe the fit in-sample; everything that judges a
    # state's forward outcome comes from the causal ``hmm_state_filtered``
    prof = labelled_profiles(hmm_state_profiles(frame), VITERBI_SOURCE)
    prof_f = labelled_profiles(hmm_state_profiles(frame, "hmm_state_filtered"), FILTERED_SOURCE)
    diag = hmm_diagnostics(frame, dec.offsets, fit.params)
    diag_f = hmm_diagnostics(frame, dec.offsets, fit.params, state_col="hmm_state_filtered")
    out |= write_table(prof["profile"], folder, "hmm_state_profile", ("parquet", "csv"), settings)
    out |= write_table(prof_f["profile"], folder, "hmm_state_filtered_profile",
                       ("parquet", "csv"), settings)  # fmt: skip
    out |= write_table(prof["forward_validation"], folder, "hmm_forward_validation",
                       ("parquet",), settings)  # fmt: skip
    out |= write_table(prof_f["forward_validation"], folder, "hmm_forward_validation_filtered",
                       ("parquet",), settings)  # fmt: skip
    for name, table in diag.items():
        kinds = ("csv",) if name in ("initial_state_distribution", "state_confidence_stats") \
            else ("parquet", "csv")  # fmt: skip
        out |= write_table(table, folder, name, kinds, settings)
    for name in ("transition_matrix", "dwell_stats", "state_frequency"):
        out |= write_table(diag_f[name], folder, f"{name}_filtered", ("csv",), settings)
    k = fit.params.n_components
    fitted = pl.DataFrame(fit.params.transmat, schema=[f"to_{j}" for j in range(k)]
                          ).insert_column(0, pl.Series("hmm_state_prev", np.arange(k)))
    out |= write_table(fitted, folder, "transition_matrix_fitted", ("csv",), settings)
    # the backtest's state directions: known at the train end, never from the traded rows
    train_frame = hm.decode(fit.params, fit_seqs).frame if _decodes_test(prep) else frame
    out |= write_table(train_state_scorecard(train_frame, settings.validation.bootstrap),
                       folder, TRAIN_SCORECARD, ("csv",), settings)
    test_rows = seqs.n_rows if _decodes_test(prep) else 0
    robust = _hmm_robustness(frame, diag, diag_f, fit, test_ll, test_rows)
    # decoded rows the fit also saw: their log-likelihood is reported, but never as a test figure
    eval_ll = None if _decodes_test(prep) else dec.loglik
    robust["in_sample"] = prep.in_sample
    robust["eval_loglik_in_sample_per_obs"] = (None if eval_ll is None
                                               else eval_ll / max(1, seqs.n_rows))
    out["robustness_summary_path"] = str(lake.write_json(robust,
                                                         folder / "robustness_summary.json"))
    meta = {**fit.meta(config), "test_loglik": test_ll, "test_rows": test_rows,
            "eval_loglik_in_sample": eval_ll, "in_sample": prep.in_sample,
            "test_sequences": int(seqs.lengths.size) if _decodes_test(prep) else 0,
            "dropped_short_tickers_fit": len(fit_seqs.dropped_tickers),
            "dropped_short_tickers_decoded": len(seqs.dropped_tickers),
            "params": fit.params.payload(), "split_id": prep.split_key}  # fmt: skip
    out["hmm_model_meta"] = str(lake.write_json(meta, folder / "hmm_model_meta.json"))
    out["hmm_vs_cluster_crosstab_csv"] = out["hmm_vs_cluster_metrics_json"] = None
    rec_cols: tuple[str, ...] = ("hmm_state_filtered", "hmm_state")
    if cluster_labels is not None:
        frame_c, xt, cm = _cluster_compare(frame, cluster_labels)
        out["hmm_vs_cluster_crosstab_csv"] = str(lake.write_csv(
            xt, folder / "hmm_vs_cluster_crosstab.csv"))
        out["hmm_vs_cluster_metrics_json"] = str(lake.write_json(
            cm, folder / "hmm_vs_cluster_metrics.json"))
        frame, rec_cols = frame_c, (*rec_cols, "cluster_label")
    out["run_summary"] = str(folder / "run_summary.json")
    summary = {
        **prep.common(),
        "run_id": run_id, "started_ts": started, "finished_ts": artifacts.now(),
        "duration_sec": round(time.perf_counter() - t0, 3), "method": "gaussian_hmm",
        "n_components": config.n_components, "fit_procedure": config.fit_procedure,
        "min_sequence_length": min_len,
        "rows_loaded": prep.rows_loaded, "rows_fit": fit.fit_rows, "rows_decoded": seqs.n_rows,
        "sequences_fit": fit.fit_sequences, "sequences_decoded": int(seqs.lengths.size),
        "train_loglik": fit.loglik, "test_loglik": test_ll, "eval_loglik_in_sample": eval_ll,
        "aic": meta.get("aic"), "bic": meta.get("bic"), "config": hm.config_payload(config),
        "robustness_summary": robust,
        "regime_recovery": artifacts.regime_recovery(prep, frame, rec_cols),
        "write_full_decoded_csv": write_full_csv, **prep.recorded(),
        "output_dir": str(folder), "outputs": out,
    }  # fmt: skip
    lake.write_json(summary, folder / "run_summary.json")
    return HmmOutcome(run_id, folder, summary, frame, fit)


def read_cluster_labels(path: Path) -> pl.DataFrame:
    """``--cluster-labels-file`` (parquet/csv): ticker, trade_date, cluster_label|cluster_id."""
    raw = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    col = "cluster_label" if "cluster_label" in raw.columns else "cluster_id"
    if col not in raw.columns or not {"ticker", "trade_date"} <= set(raw.columns):
        raise ValueError("cluster labels need ticker, trade_date and cluster_label or cluster_id")
    return (
        raw.select(pl.col("ticker").str.to_uppercase(),
                   pl.col("trade_date").cast(pl.Date, strict=False),
                   pl.col(col).alias("cluster_label"))  # fmt: skip
        .drop_nulls("trade_date")
        .unique(["ticker", "trade_date"], keep="first", maintain_order=True)
    )


def _cluster_compare(frame: pl.DataFrame, labels: pl.DataFrame
                     ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:  # fmt: skip
    from mf_pipeline.lib.research.recovery import adjusted_rand

    joined = frame.join(labels, on=["ticker", "trade_date"], how="left", maintain_order="left")
    sub = joined.filter(pl.col("cluster_label").is_not_null())
    xt = sub.group_by("hmm_state", "cluster_label").agg(pl.len().alias("count")).sort(
        "hmm_state", "cluster_label")
    m = adjusted_rand(joined, "hmm_state", "cluster_label")
    return joined, xt, {k: m[k] for k in ("rows_compared", "ari", "nmi")}


def _hmm_row(prep: Prepared, k: int, config: hm.HmmConfig, min_len: int) -> dict[str, Any]:
    fit, _, seqs, dec, test_ll = hmm_fit_decode(prep, replace(config, n_components=k),
                                                min_len)  # fmt: skip
    diag_f = hmm_diagnostics(dec.frame, dec.offsets, fit.params, state_col="hmm_state_filtered")
    test_rows = seqs.n_rows if _decodes_test(prep) else 0
    r = _hmm_robustness(dec.frame, None, diag_f, fit, test_ll, test_rows)
    return {"state_source": "hmm_state_filtered", "n_components": k, "rows_fit": fit.fit_rows,
            "rows_decoded": seqs.n_rows,
            "sequences_fit": fit.fit_sequences, "sequences_decoded": int(seqs.lengths.size),
            "train_loglik": fit.loglik, "test_loglik": test_ll,
            "eval_loglik_in_sample": None if _decodes_test(prep) else dec.loglik,
            "train_loglik_per_obs": r["train_loglik_per_obs"],
            "test_loglik_per_obs": r["test_loglik_per_obs"],
            "largest_state_share": r["largest_state_share"],
            "effective_state_count": r["effective_state_count"],
            **flat(r["forward_separation_null"]),
            "forward_separation_score_viterbi_lookahead":
                r["viterbi_description"]["forward_separation_score"],
            "avg_dwell_mean": r["avg_dwell_mean"],
            **information_criteria_of(fit),
            "states": dec.frame["hmm_state_filtered"].to_numpy()}  # fmt: skip


def _hmm_robustness(frame: pl.DataFrame, diag: dict[str, pl.DataFrame] | None,
                    diag_f: dict[str, pl.DataFrame], fit: hm.HmmFit, test_ll: float | None,
                    test_rows: int) -> dict[str, Any]:  # fmt: skip
    """Robustness summary of the causal path (``hmm_state_filtered``): concentration,
    persistence, dwell and the forward separation judged against its permutation null. The
    Viterbi figures are kept under ``viterbi_description`` (they read bars after t)."""
    sep_f = separation_null(frame, "hmm_state_filtered")
    robust = robustness_summary(diag_f, None, fit.loglik, fit.fit_rows, test_ll, test_rows,
                                separation=sep_f)  # fmt: skip
    viterbi: dict[str, Any] = {
        "state_source": VITERBI_SOURCE,
        "forward_separation_score": separation_null(frame, "hmm_state", replicates=0)["observed"],
    }
    if diag is not None:
        rv = robustness_summary(diag, None, None, 0)
        viterbi |= {k: rv[k] for k in ("largest_state_share", "effective_state_count",
                                       "avg_self_transition_prob", "avg_dwell_mean")}
    return {"state_source": FILTERED_SOURCE, **robust, "viterbi_description": viterbi}


def information_criteria_of(fit: hm.HmmFit) -> dict[str, Any]:
    ic = hm.information_criteria(fit.loglik, fit.fit_rows, fit.params)
    return {"aic": ic.get("aic"), "bic": ic.get("bic")}


def hmm_sweep(settings: Settings, prep: Prepared, components: list[int], config: hm.HmmConfig,
              min_len: int) -> dict[str, Any]:  # fmt: skip
    """research.md §5.9 (+ AIC/BIC per row)."""
    run_id = artifacts.new_run_id("hmm-sweep")
    rows = []
    for k in sorted(set(components)):
        try:
            row = _hmm_row(prep, k, config, min_len)
            row.pop("states")
            rows.append({**row, "status": "ok", "error": None})
        except Exception as error:  # noqa: BLE001 - a failed component count is a result row
            rows.append({"n_components": k, "rows_decoded": 0, "status": "failed",
                         "error": str(error)})  # fmt: skip
    folder = settings.artifacts_root / "hmm_runs" / f"{run_id}_hmm_sweep_{prep.tag}"
    payload = {**prep.common(), "filters": prep.options.filters(),
               "run_id": run_id, "components": sorted(set(components)),
               "fit_procedure": config.fit_procedure, "rows": rows}  # fmt: skip
    lake.write_json(payload, folder / "hmm_sweep_summary.json")
    lake.write_csv(pl.DataFrame(rows, infer_schema_length=None), folder / "hmm_sweep_summary.csv")
    return {"run_id": run_id, "output_dir": str(folder), "rows": len(rows),
            "failed": sum(r["status"] == "failed" for r in rows)}  # fmt: skip


def hmm_stability(settings: Settings, prep: Prepared, config: hm.HmmConfig, min_len: int,
                  seeds: int, seed_start: int) -> dict[str, Any]:  # fmt: skip
    """research.md §5.10: refit per seed; pairwise ARI of the filtered (causal) paths; per-seed
    rows carry the filtered separation and its permutation null."""
    if seeds < 1:
        raise ValueError("seeds must be >= 1")
    run_id = artifacts.new_run_id("hmm-stability")
    folder = settings.artifacts_root / "hmm_runs" / f"{run_id}_hmm_stability_{prep.tag}"
    rows, labels = [], {}
    for seed in range(seed_start, seed_start + seeds):
        row = _hmm_row(prep, config.n_components, replace(config, random_state=seed), min_len)
        labels[seed] = row.pop("states")
        rows.append({"seed": seed, **{k: row[k] for k in (
            "n_components", "train_loglik", "test_loglik", "train_loglik_per_obs",
            "test_loglik_per_obs", "largest_state_share", "effective_state_count",
            "forward_separation_score", "forward_separation_null_p95",
            "forward_separation_p_value", "forward_separation_ok",
            "forward_separation_score_viterbi_lookahead")}})  # fmt: skip
        last = row
    ari, ari_summary = artifacts.ari_table(labels)
    out = write_table(pl.DataFrame(rows, infer_schema_length=None), folder,
                      "hmm_stability_by_seed", ("csv", "parquet"), settings)  # fmt: skip
    out |= write_table(ari, folder, "hmm_pairwise_ari", ("csv", "parquet"), settings)
    summary = {**prep.common(), "filters": prep.options.filters(),
               "run_id": run_id, "n_components": config.n_components,
               "fit_procedure": config.fit_procedure, "seeds": seeds, "seed_start": seed_start,
               "rows_fit": last["rows_fit"],
               "rows_decoded": last["rows_decoded"], "ari_summary": ari_summary,
               "state_source": "hmm_state_filtered (causal; ARI and rows)",
               "output_dir": str(folder), "outputs": out}  # fmt: skip
    lake.write_json(summary, folder / "hmm_stability_summary.json")
    return summary


def hmm_sanity(run_dir: Path) -> dict[str, Any]:
    """research.md §5.11 (read-only)."""
    need = ("run_summary.json", "hmm_state_profile.parquet", "transition_matrix.csv",
            "dwell_stats.csv")  # fmt: skip
    for name in need:
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"missing {run_dir / name}")
    profile = pl.read_parquet(run_dir / "hmm_state_profile.parquet")
    filtered_path = run_dir / "hmm_state_filtered_profile.parquet"
    filtered = pl.read_parquet(filtered_path) if filtered_path.exists() else None
    tm = pl.read_csv(run_dir / "transition_matrix.csv")
    dwell = pl.read_csv(run_dir / "dwell_stats.csv")
    diag = (tm.filter(pl.col("hmm_state_prev") == pl.col("hmm_state"))
            .select(pl.col("hmm_state").alias("state"), "transition_probability")
            if "transition_probability" in tm.columns else pl.DataFrame())  # fmt: skip
    xt_path = run_dir / "hmm_vs_flow_state_crosstab.csv"
    top_flow: list[dict[str, Any]] = []
    if xt_path.exists():
        xt = pl.read_csv(xt_path)
        if xt.height and "share_in_hmm_state" in xt.columns:
            top_flow = (xt.sort("share_in_hmm_state", descending=True)
                        .group_by("hmm_state", maintain_order=True).head(1)
                        .sort("hmm_state").to_dicts())  # fmt: skip
    counts = artifacts.nan_null_counts(profile)
    return {
        "run_summary": artifacts.read_json(run_dir / "run_summary.json"),
        "state_count": profile.height,
        "state_frequency_total_rows": int(profile["row_count"].sum()),
        "top_fwd_ret_10": artifacts.top_rows(profile, "fwd_ret_10_mean",
                                             ["hmm_state", "row_count", "fwd_ret_10_mean"], 10),
        "top_fwd_ret_10_source": VITERBI_SOURCE,
        "top_fwd_ret_10_filtered": None if filtered is None else artifacts.top_rows(
            filtered, "fwd_ret_10_mean", ["hmm_state_filtered", "row_count", "fwd_ret_10_mean"],
            10),
        "top_self_transition": artifacts.top_rows(diag, "transition_probability",
                                                  ["state", "transition_probability"], 10),
        "top_dwell": artifacts.top_rows(dwell, "dwell_mean", dwell.columns, 10),
        "dominant_flow_state": top_flow,
        "nan_null_counts": counts,
    }  # fmt: skip
