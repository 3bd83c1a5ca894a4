"""The Bronze asset: validated daily bars per ticker, with every raw line accounted for."""

import dagster as dg

from mf_pipeline.defs.manifest.assets import manifest
from mf_pipeline.defs.partitions import PER_TICKER_TAG, layer_run_id, ticker_shards
from mf_pipeline.defs.resources import PipelineSettings, TickerWork
from mf_pipeline.lib.steps import bronze_step


class BronzeConfig(dg.Config):
    promote_manifest: bool = True
    """Record successfully ingested files in the stable manifest (off for partial CLI runs)."""


@dg.asset(
    partitions_def=ticker_shards,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[manifest],
    group_name="ingest",
    kinds={"polars", "parquet"},
    tags=PER_TICKER_TAG,
)
def bronze(
    context: dg.AssetExecutionContext, config: BronzeConfig, settings: PipelineSettings,
    ticker_work: TickerWork,
) -> dg.MaterializeResult:
    """Parse, normalise and validate the raw files of the shards' changed tickers (vectorised,
    in batches of bounded size); write valid rows per ticker, and the ledger and rejects for
    every file. Tickers whose files did not change are not touched."""
    cfg = settings.get()
    tickers = ticker_work.select(context.partition_keys,
                                 lambda: bronze_step.pending_tickers(cfg))
    outcome = bronze_step.run_bronze(
        cfg, tickers, layer_run_id(context.run_id, "bronze"), config.promote_manifest,
        context.log.info,
    )
    context.log.info(
        f"bronze: {outcome.files_processed} files, {outcome.rows_valid} valid rows, "
        f"compute {outcome.compute_seconds:.2f}s, write {outcome.write_seconds:.2f}s"
    )
    return dg.MaterializeResult(
        metadata={
            "run_id": outcome.run_id,
            "tickers": outcome.tickers_requested,
            "files_processed": outcome.files_processed,
            "files_failed": outcome.files_failed,
            "files_empty": outcome.files_empty,
            "rows_valid": outcome.rows_valid,
            "rows_invalid": outcome.rows_invalid,
            "rows_rejected": outcome.rows_rejected,
            "tickers_retired": outcome.tickers_retired[:200],
            "tickers_appended": outcome.tickers_appended,
            "rows_appended": outcome.rows_appended,
            "compute_seconds": round(outcome.compute_seconds, 3),
            "write_seconds": round(outcome.write_seconds, 3),
        }
    )
