"""Grid and calibration assets per walk-forward split (group ``grids``).

``backtest_grid`` runs a sensitivity grid (backtest_ops.md §5) over a split's test rows — the
flow, HMM and cluster sources by default (a multi-source grid), one source for a single-source
grid — with a blocking ``backtest_grid_sanity`` check. ``wf_backtest_grid`` aggregates the
split grids of a walk-forward grid (§5.8). ``execution_calibration`` sweeps the execution
filters over a split's candidate signals (§7.7). Every asset only wires ``lib/grids`` and
``lib/steps/backtest`` to storage.
"""

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg

from mf_pipeline.defs.grids.config import CalibrationConfig, SplitGridConfig, WfGridConfig
from mf_pipeline.defs.research.partitions import REGIME_TAGS, research_splits
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.grids import walkforward
from mf_pipeline.lib.grids.inputs import split_sources
from mf_pipeline.lib.grids.run import run_grid
from mf_pipeline.lib.grids.sanity import grid_sanity
from mf_pipeline.lib.steps.backtest import calibrate, split_inputs
from mf_pipeline.orchestration.freshness import OPTIONS, SETTINGS_DIGEST, research_settings_digest
from mf_pipeline.orchestration.planning import ON_DEMAND_TAG

SPLIT = {"partitions_def": research_splits, "group_name": "grids", "io_manager_key": "lake_io",
         "tags": REGIME_TAGS}  # fmt: skip
INS = {"hmm_model": dg.AssetIn("hmm_model"), "cluster_model": dg.AssetIn("cluster_model"),
       "policy": dg.AssetIn("state_policy_cluster")}


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def grid_record(summary: dict[str, Any], split_id: str) -> dict[str, Any]:
    """What ``backtest_grid`` stores: the folder, counts and each source's fluke risk."""
    over = summary.get("overfitting") or {}
    return {"grid_run_id": summary["grid_run_id"], "output_dir": summary["output_dir"],
            "scope": summary["scope"], "split_id": split_id,
            "successful_combos": summary["successful_combos"],
            "failed_combos": summary["failed_combos"],
            "zero_trade_combo_share": summary.get("zero_trade_combo_share"),
            "in_sample": summary.get("in_sample"),
            **{f"{src}_{k}": block.get(k) for src, block in over.items()
               for k in ("dsr", "pbo", "fluke_risk", "best_combo_id")}}  # fmt: skip


def _meta(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items()
            if v is not None and k != "output_dir" and not isinstance(v, dict)}


@dg.asset(kinds={"numba", "polars"}, ins=INS, **SPLIT,
          description="Sensitivity grid over a split's test rows (backtest_ops.md §5): every "
          "combo of the dimensions on each source (flow, HMM, cluster by default), manifest, "
          "robustness scores, aggregates, the Deflated Sharpe Ratio and Probability of "
          "Backtest Overfitting of the winner, `grid_report.md` and `grid_report.html`.",
          check_specs=[dg.AssetCheckSpec("backtest_grid_sanity", asset="backtest_grid",
                                         blocking=True, description="Manifest, metrics, "
                                         "trades and summary consistent (§5.6).")])
def backtest_grid(context: dg.AssetExecutionContext, config: SplitGridConfig,
                  settings: PipelineSettings, **upstream: dict) -> Any:
    s = settings.get()
    non_overlapping = config.non_overlapping_test
    if non_overlapping is None:
        non_overlapping = s.validation_walkforward.non_overlapping_test
    sources = split_sources(
        s, context.partition_key, config.sources, upstream["hmm_model"]["output_dir"],
        upstream["cluster_model"]["output_dir"], upstream["policy"]["output_dir"],
        policy_filter_mode=config.policy_mode(s), non_overlapping=non_overlapping,
        test_end=_date(config.test_end),
        overlay=bool(config.overlay or config.overlay_mode not in (None, "none")))
    options = config.grid(s, context.partition_key, split_id=context.partition_key)
    out = run_grid(s, sources, config.dims(s), options,
                   folder=Path(config.out_dir) if config.out_dir else None,
                   grid_run_id=config.grid_run_id, log=context.log.info)
    record = grid_record(out.summary, context.partition_key)
    yield dg.Output(record, metadata={
        **_meta(record), "output_dir": dg.MetadataValue.path(str(out.output_dir)),
        "report": dg.MetadataValue.path(str(out.output_dir / "grid_report.html")),
        "duration_sec": out.summary["duration_sec"],
        OPTIONS: config.given(), SETTINGS_DIGEST: research_settings_digest(s)})
    report = grid_sanity(out.output_dir)
    yield dg.AssetCheckResult(
        check_name="backtest_grid_sanity", asset_key=dg.AssetKey("backtest_grid"),
        passed=report["status"] == "PASS",
        metadata={"errors": "; ".join(report["errors"]) or "none",
                  "warnings": "; ".join(str(w) for w in report["warnings"]) or "none"})


@dg.asset(group_name="grids", kinds={"polars"}, tags={ON_DEMAND_TAG: "true"},
          deps=["backtest_grid"],
          description="Walk-forward grid aggregate (backtest_ops.md §5.8): config consistency, "
          "winner stability, cost fragility, tail risk, overlay summaries and the DSR/PBO of "
          "each split's winner; `wf_grid_report.md` and `.html`.",
          check_specs=[dg.AssetCheckSpec("wf_backtest_grid_sanity", asset="wf_backtest_grid",
                                         description="Enough splits succeeded "
                                         "(min_successful_splits); the command then exits "
                                         "non-zero, artifacts kept.")])
def wf_backtest_grid(config: WfGridConfig, settings: PipelineSettings) -> Any:
    folder = Path(config.wf_grid_dir)
    summary = walkforward.aggregate_folder(folder)
    yield dg.MaterializeResult(metadata={
        "wf_grid_dir": dg.MetadataValue.path(str(folder)), "wf_grid_id": folder.name,
        **{k: summary.get(k) for k in ("splits_total", "splits_successful", "splits_failed",
                                       "dsr_median", "pbo_median") if summary.get(k) is not None},
        "report": dg.MetadataValue.path(str(folder / "wf_grid_report.html"))})
    enough = summary.get("splits_successful", 0) >= summary.get("min_successful_splits", 1)
    yield dg.AssetCheckResult(check_name="wf_backtest_grid_sanity",
                              asset_key=dg.AssetKey("wf_backtest_grid"), passed=enough,
                              metadata={"splits_successful": summary.get("splits_successful"),
                                        "min_successful_splits":
                                        summary.get("min_successful_splits")})


@dg.asset(kinds={"polars"}, ins=INS, **SPLIT,
          description="Execution-realism calibration on a split's candidate signals "
          "(backtest_ops.md §7.7): filter distributions, waterfall, reason overlap, first fail, "
          "threshold sweep and lite/strict recommendations; no trades are simulated.")
def execution_calibration(context: dg.AssetExecutionContext, config: CalibrationConfig,
                          settings: PipelineSettings, **upstream: dict) -> Any:
    s = settings.get()
    inputs = split_inputs.split_inputs(
        s, context.partition_key, config.source, upstream["hmm_model"]["output_dir"],
        upstream["cluster_model"]["output_dir"], upstream["policy"]["output_dir"],
        non_overlapping=s.validation_walkforward.non_overlapping_test,
        overlay=config.overlay_mode not in (None, "none"))
    summary = calibrate.calibrate(
        s, inputs, config.options(s), sample_frac=config.sample_frac,
        start_date=_date(config.start_date), end_date=_date(config.end_date),
        by_year=config.by_year, out_dir=Path(config.out_dir) if config.out_dir else None)
    record = {"run_id": summary["run_id"], "output_dir": summary["output_dir"],
              "split_id": context.partition_key, "source": config.source}
    yield dg.Output(record, metadata={
        **_meta(record), "output_dir": dg.MetadataValue.path(summary["output_dir"]),
        "report": dg.MetadataValue.path(str(Path(summary["output_dir"])
                                            / "execution_calibration_report.html")),
        OPTIONS: config.given(), SETTINGS_DIGEST: research_settings_digest(s)})
