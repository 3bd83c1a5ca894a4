"""The raw-file manifest asset: classifies the raw tree against the last successful ingest."""

import dagster as dg

from mf_pipeline.defs.partitions import layer_run_id
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.steps import bronze_step
from mf_pipeline.orchestration.accounting import counted


@dg.asset(group_name="ingest", kinds={"polars", "parquet"})
@counted("asset body: manifest")
def manifest(context: dg.AssetExecutionContext, settings: PipelineSettings) -> dg.MaterializeResult:
    """Every raw file with its content fingerprint and status NEW/CHANGED/APPENDED/UNCHANGED/
    DELETED against the last successful ingest; Bronze then processes the changed tickers."""
    cfg = settings.get()
    outcome = bronze_step.run_manifest(cfg, layer_run_id(context.run_id, "manifest"),
                                       context.log.info)
    context.log.info(f"manifest: {outcome.status_counts}; "
                     f"{len(outcome.to_process)} tickers to process")
    return dg.MaterializeResult(
        metadata={
            "files": outcome.classified.height,
            "tickers": len(outcome.tickers),
            "status_counts": outcome.status_counts,
            "exchange_counts": outcome.exchange_counts,
            "tickers_to_process": len(outcome.to_process),
            "deleted_tickers": outcome.deleted_tickers[:200],
            "files_without_ticker": outcome.failed_files[:200],
            "raw_root": str(cfg.raw_root),
            "seconds": round(outcome.seconds, 3),
        }
    )
