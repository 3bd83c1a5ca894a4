"""The raw-file manifest asset: classifies the raw tree and registers ticker partitions."""

import dagster as dg

from mf_pipeline.defs.partitions import TICKERS, bronze_run_id
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.steps import bronze_step


@dg.asset(group_name="ingest", kinds={"polars", "parquet"})
def manifest(context: dg.AssetExecutionContext, settings: PipelineSettings) -> dg.MaterializeResult:
    """Every raw file with its content fingerprint and status NEW/CHANGED/APPENDED/UNCHANGED/
    DELETED against the last successful ingest; registers new tickers as partitions."""
    cfg = settings.get()
    outcome = bronze_step.run_manifest(cfg, bronze_run_id(context.run_id, "manifest"),
                                       context.log.info)
    known = set(context.instance.get_dynamic_partitions(TICKERS))
    new_keys = [t for t in outcome.tickers if t not in known]
    if new_keys:
        context.instance.add_dynamic_partitions(TICKERS, new_keys)
    context.log.info(f"manifest: {outcome.status_counts}; {len(new_keys)} new partitions")
    return dg.MaterializeResult(
        metadata={
            "files": outcome.classified.height,
            "status_counts": outcome.status_counts,
            "exchange_counts": outcome.exchange_counts,
            "tickers_to_process": len(outcome.to_process),
            "new_partitions": len(new_keys),
            "deleted_tickers": outcome.deleted_tickers[:200],
            "files_without_partition": outcome.failed_files[:200],
            "raw_root": str(cfg.raw_root),
            "seconds": round(outcome.seconds, 3),
        }
    )
