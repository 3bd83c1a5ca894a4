"""The Bronze asset: validated daily bars per ticker, with every raw line accounted for."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from mf_pipeline.defs.manifest.assets import manifest
from mf_pipeline.defs.partitions import (
    PER_TICKER_TAG,
    layer_run_id,
    shard_backfill_policy,
    ticker_shards,
)
from mf_pipeline.defs.resources import PipelineSettings, TickerWork
from mf_pipeline.defs.shard_metadata import (
    keeps_last_materialization,
    lake_figures,
    record_shards,
    run_figures,
    ticker_list,
)
from mf_pipeline.lib.steps import bronze_step, shards
from mf_pipeline.orchestration.accounting import LAKE_FIGURES, counted, part

LEDGER_COUNTS = ("files_processed", "files_failed", "files_empty", "rows_valid", "rows_invalid",
                 "rows_rejected")
"""Per-shard sums over the ledger rows of the files this run processed."""


class BronzeConfig(dg.Config):
    promote_manifest: bool = True
    """Record successfully ingested files in the stable manifest (off for partial CLI runs)."""


@dg.asset(
    partitions_def=ticker_shards,
    backfill_policy=shard_backfill_policy(),
    deps=[manifest],
    group_name="ingest",
    kinds={"polars", "parquet"},
    tags=PER_TICKER_TAG,
    output_required=False,
)
@counted("asset body: bronze")
def bronze(
    context: dg.AssetExecutionContext, config: BronzeConfig, settings: PipelineSettings,
    ticker_work: TickerWork,
) -> Iterator[dg.MaterializeResult]:
    """Parse, normalise and validate the raw files of the shards' changed tickers (vectorised,
    in batches of bounded size); write valid rows per ticker, and the ledger and rejects for
    every file. Tickers whose files did not change are not touched."""
    cfg = settings.get()
    run_shards = context.partition_keys
    tickers = ticker_work.select(cfg, run_shards, lambda: bronze_step.pending_tickers(cfg))
    if not tickers and keeps_last_materialization(
            context, "bronze", len(shards.layer_snapshot(cfg, "bronze", run_shards).tickers())):
        return
    outcome = bronze_step.run_bronze(
        cfg, tickers, layer_run_id(context.run_id, "bronze"), config.promote_manifest,
        context.log.info,
    )
    context.log.info(
        f"bronze: {outcome.files_processed} files, {outcome.rows_valid} valid rows, "
        f"compute {outcome.compute_seconds:.2f}s, write {outcome.write_seconds:.2f}s"
    )
    with part(LAKE_FIGURES):
        stored = shards.layer_snapshot(cfg, "bronze", run_shards)
        states = shards.shard_states(stored, run_shards)
    ledger = shards.shard_sums(outcome.ledger.with_columns(
        files_processed=pl.lit(1), files_failed=pl.col("status") == "FAILED",
        files_empty=pl.col("status") == "EMPTY"), LEDGER_COUNTS)
    processed, written, retired = (shards.by_shard(names) for names in (
        tickers, outcome.tickers_written, outcome.tickers_retired))
    appended = shards.by_shard(outcome.appended_rows)
    figures = {}
    for shard in run_shards:
        counts = ledger.get(shard, {})
        figures[shard] = {
            **lake_figures(states[shard]),
            "changed": shard in processed,
            "tickers_processed": ticker_list(processed.get(shard, [])),
            "tickers_written": len(written.get(shard, [])),
            "tickers_appended": len(appended.get(shard, [])),
            "tickers_retired": retired.get(shard, []),
            **{name: counts.get(name, 0) for name in LEDGER_COUNTS},
            "rows_appended": sum(outcome.appended_rows[t] for t in appended.get(shard, [])),
        }
    record_shards(context, "bronze", figures)
    paths = bronze_step.paths(cfg)
    yield dg.MaterializeResult(metadata={
        **run_figures(outcome.run_id, paths.data, next(iter(stored.files()), None),
                      {"compute_seconds": outcome.compute_seconds,
                       "write_seconds": outcome.write_seconds}),
        "ledger": dg.MetadataValue.path(str(paths.ledger)),
        "rejects": dg.MetadataValue.path(str(paths.rejects)),
    })
