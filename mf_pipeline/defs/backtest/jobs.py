"""One-op jobs for backtests of files and folders rather than assets: ``mf backtest-run
--input-file`` and ``mf backtest-compare`` run these, so each is a Dagster run in the UI with
its options as typed config."""

from typing import Any

import dagster as dg

from mf_pipeline.defs.backtest.config import CompareConfig, FileBacktestConfig
from mf_pipeline.defs.one_op import one_op_job
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.steps.backtest.compare_runs import compare_backtests
from mf_pipeline.lib.steps.backtest.file_inputs import file_inputs
from mf_pipeline.lib.steps.backtest.run import backtest_run


@dg.op
def backtest_file_op(context: dg.OpExecutionContext, config: FileBacktestConfig,
                     settings: PipelineSettings) -> dict[str, Any]:
    """Backtest a state-labelled Parquet/CSV file (backtest_ops.md §1)."""
    s = settings.get()
    inputs = file_inputs(
        config.input_type, config.input_file, hmm_state_col=config.hmm_state_col,
        validation_run_dir=config.validation_run_dir,
        cluster_hardening_dir=config.cluster_hardening_dir,
        state_map_file=config.state_map_file, overlay_cluster_file=config.overlay_cluster_file,
        overlay_cluster_hardening_dir=config.overlay_cluster_hardening_dir, tag=config.tag)
    out = backtest_run(s, inputs, config.options(s))
    head = out.summary["headline"]
    context.add_output_metadata({"output_dir": dg.MetadataValue.path(str(out.output_dir)),
                                 "trade_count": head["trade_count"],
                                 "duration_sec": out.summary["duration_sec"]})
    return {"run_id": out.run_id, "output_dir": str(out.output_dir)}


@dg.op
def backtest_compare_op(config: CompareConfig, settings: PipelineSettings) -> dict[str, Any]:
    """Compare backtest runs side by side (§1.8)."""
    return compare_backtests(settings.get(), config.run_dirs)


JOBS = [
    one_op_job("backtest_file_run", backtest_file_op, "mf backtest-run --input-file"),
    one_op_job("backtest_compare", backtest_compare_op, "mf backtest-compare"),
]
