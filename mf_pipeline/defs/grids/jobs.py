"""One-op jobs for grids of files, comparisons, calibrations of files and the decision
reports: each ``mf`` command is a Dagster run in the UI with its options as typed config."""

from pathlib import Path
from typing import Any

import dagster as dg

from mf_pipeline.defs.grids.config import (
    CalibrationReportConfig,
    FileCalibrationConfig,
    FileGridConfig,
    GridCompareConfig,
    ReportInputsConfig,
)
from mf_pipeline.defs.one_op import one_op_job
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.grids.compare import compare_grids
from mf_pipeline.lib.grids.inputs import file_sources
from mf_pipeline.lib.grids.run import GRIDS_DIR, run_grid
from mf_pipeline.lib.reports import pages
from mf_pipeline.lib.reports.hybrid_eval import hybrid_eval_report
from mf_pipeline.lib.reports.realism import execution_realism_report
from mf_pipeline.lib.steps.backtest import calibrate
from mf_pipeline.lib.steps.backtest.file_inputs import calibration_file_inputs

REALISM_DIR = "execution_realism_reports"
HYBRID_DIR = "hybrid_eval_reports"


def _paths(values: dict[str, str]) -> dict[str, Path | None]:
    return {k: Path(v) if v else None for k, v in values.items()}


@dg.op
def backtest_grid_file_op(context: dg.OpExecutionContext, config: FileGridConfig,
                          settings: PipelineSettings) -> dict[str, Any]:
    """A sensitivity grid over state-labelled files (backtest_ops.md §5)."""
    s = settings.get()
    sources = file_sources(
        config.files(), policy_filter_mode=config.policy_mode(s),
        hmm_state_col=config.hmm_state_col, validation_run_dir=config.validation_run_dir,
        state_map_file=config.state_map_file, cluster_hardening_dir=config.cluster_hardening_dir,
        overlay_cluster_file=config.overlay_cluster_file,
        overlay_cluster_hardening_dir=config.overlay_cluster_hardening_dir, tag=config.tag)
    tag = config.tag or "default"
    out = run_grid(s, sources, config.dims(s), config.grid(s, tag), log=context.log.info)
    context.add_output_metadata({"output_dir": dg.MetadataValue.path(str(out.output_dir)),
                                 "successful_combos": out.summary["successful_combos"],
                                 "duration_sec": out.summary["duration_sec"]})
    return {"grid_run_id": out.grid_run_id, "output_dir": str(out.output_dir)}


@dg.op
def backtest_grid_compare_op(config: GridCompareConfig,
                             settings: PipelineSettings) -> dict[str, Any]:  # fmt: skip
    """Compare grids side by side (§5.7), with each grid's DSR and PBO."""
    s = settings.get()
    return compare_grids([Path(d) for d in config.grid_run_dirs], config.metrics,
                         s.backtest_sensitivity.ranking_metric_default,
                         s.artifacts_root / GRIDS_DIR)


@dg.op
def calibrate_file_op(config: FileCalibrationConfig, settings: PipelineSettings
                      ) -> dict[str, Any]:  # fmt: skip
    """Execution-realism calibration of a state-labelled file (§7.7)."""
    s = settings.get()
    inputs = calibration_file_inputs(
        config.source_file, config.source_type, state_col=config.state_col,
        validation_run_dir=config.validation_run_dir,
        cluster_hardening_dir=config.cluster_hardening_dir,
        state_map_file=config.state_map_file, overlay_cluster_file=config.overlay_cluster_file,
        overlay_cluster_hardening_dir=config.overlay_cluster_hardening_dir)
    summary = calibrate.calibrate(
        s, inputs, config.options(s), sample_frac=config.sample_frac,
        start_date=config.start_date, end_date=config.end_date, by_year=config.by_year,
        out_dir=Path(config.out_dir) if config.out_dir else None)
    return {"run_id": summary["run_id"], "output_dir": summary["output_dir"]}


@dg.op
def calibration_report_op(config: CalibrationReportConfig, settings: PipelineSettings
                          ) -> dict[str, Any]:  # fmt: skip
    """Re-render a calibration's report (default: the newest by its recorded finish time)."""
    folder = Path(config.calibration_dir) if config.calibration_dir else \
        calibrate.latest_calibration(settings.get().artifacts_root)  # fmt: skip
    report = calibrate.calibration_report(folder)
    html = pages.calibration_html(folder)
    return {"calibration_dir": str(folder), "report": str(report), "report_html": str(html)}


@dg.op
def realism_report_op(config: ReportInputsConfig, settings: PipelineSettings) -> dict[str, Any]:
    """Execution-realism decision report over HMM grids (§7.8)."""
    s = settings.get()
    return execution_realism_report(s, _paths(config.dirs), s.artifacts_root / REALISM_DIR)


@dg.op
def hybrid_eval_op(config: ReportInputsConfig, settings: PipelineSettings) -> dict[str, Any]:
    """Hybrid overlay evaluation report (§8)."""
    s = settings.get()
    return hybrid_eval_report(s, _paths(config.dirs), s.artifacts_root / HYBRID_DIR)


JOBS = [
    one_op_job("backtest_grid_file_run", backtest_grid_file_op, "mf backtest-grid-run "
               "--input-file / --multi-source"),
    one_op_job("backtest_grid_compare", backtest_grid_compare_op, "mf backtest-grid-compare"),
    one_op_job("execution_realism_calibrate", calibrate_file_op,
               "mf execution-realism-calibrate --source-file"),
    one_op_job("execution_realism_calibration_report", calibration_report_op,
               "mf execution-realism-calibration-report"),
    one_op_job("execution_realism_report", realism_report_op, "mf execution-realism-report"),
    one_op_job("hybrid_eval_report", hybrid_eval_op, "mf hybrid-eval-report"),
]
