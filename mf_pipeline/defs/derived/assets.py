"""Per-ticker derived layers: silver, indicators, events, features (one subsettable step).

Materializing several of them together computes the chain in memory, batch by batch, without
re-reading intermediate layers; materializing one alone reads its inputs from the lake. Each
layer has a blocking sanity check computed on the rows the run just wrote.
"""

import dagster as dg
import polars as pl

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
from mf_pipeline.lib.layers.sanity import sanity_failures
from mf_pipeline.lib.registry import DERIVED, LAYERS
from mf_pipeline.lib.steps import shards
from mf_pipeline.lib.steps.derived_step import DEFAULT_BATCH_TICKERS, run_derived, stale_tickers
from mf_pipeline.orchestration.accounting import LAKE_FIGURES, counted, part


class DerivedConfig(dg.Config):
    batch_tickers: int = DEFAULT_BATCH_TICKERS
    """Tickers computed together in memory (bounds memory on large universes)."""


@dg.multi_asset(
    specs=[
        dg.AssetSpec(layer, deps=list(LAYERS[layer].inputs), partitions_def=ticker_shards,
                     group_name="derive", description=LAYERS[layer].description,
                     kinds={"polars", "numba", "parquet"}, skippable=True, tags=PER_TICKER_TAG)
        for layer in DERIVED
    ],
    check_specs=[dg.AssetCheckSpec(
        "sanity", asset=layer, blocking=True,
        description=f"The rows this run wrote to `{layer}` pass its sanity rules: required "
                    "columns, no null keys, one row per ticker and date, dates in order, bounded "
                    "columns in range, no NaN/inf. Blocking: a failure stops downstream assets "
                    "and keeps no carry for those tickers, so they are rebuilt next run.")
        for layer in DERIVED],
    can_subset=True,
    partitions_def=ticker_shards,
    backfill_policy=shard_backfill_policy(),
)
@counted("asset body: silver, indicators, events, features (one step)")
def ticker_layers(context: dg.AssetExecutionContext, config: DerivedConfig,
                  settings: PipelineSettings, ticker_work: TickerWork):
    """The selected layers for the shards' tickers whose inputs changed (or the configured
    tickers), computed as one chain in memory, batch by batch."""
    cfg = settings.get()
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    layers = [layer for layer in DERIVED if layer in selected]
    run_shards = context.partition_keys
    tickers = ticker_work.select(cfg, run_shards, lambda: stale_tickers(cfg, layers))
    if not tickers:
        held = {layer: shards.layer_snapshot(cfg, layer, run_shards) for layer in layers}
        layers = [layer for layer in layers
                  if not keeps_last_materialization(context, layer, len(held[layer].tickers()))]
        if not layers:
            return
    context.log.info(f"{len(tickers)} tickers to update in {', '.join(layers)}")
    run_ids = {layer: layer_run_id(context.run_id, layer) for layer in layers}
    problems: dict[str, list[str]] = {layer: [] for layer in layers}
    checked_rows: dict[str, int] = dict.fromkeys(layers, 0)

    def inspect(layer: str, frame: pl.DataFrame) -> bool:
        with part("check body: derived layers' sanity"):
            found = sanity_failures(layer, frame)
        problems[layer].extend(found)
        checked_rows[layer] += frame.height
        return not found

    outcome = run_derived(cfg, tickers, layers, run_ids, config.batch_tickers,
                          inspect=inspect, log=context.log.info)
    checked = {key.asset_key.to_user_string() for key in context.selected_asset_check_keys}
    processed, appended = shards.by_shard(tickers), shards.by_shard(outcome.appended)
    for layer in layers:
        stats = outcome.layers[layer]
        context.log.info(f"{layer}: {stats.rows} rows, {len(stats.rows_written)} tickers, "
                         f"{stats.seconds:.2f}s")
        with part(LAKE_FIGURES):
            stored = shards.layer_snapshot(cfg, layer, run_shards)
            states = shards.shard_states(stored, run_shards)
        written, removed = shards.by_shard(stats.rows_written), shards.by_shard(stats.removed)
        record_shards(context, layer, {shard: {
            **lake_figures(states[shard]),
            "changed": shard in processed,
            "tickers_processed": ticker_list(processed.get(shard, [])),
            "tickers_written": len(written.get(shard, [])),
            "tickers_appended": len(appended.get(shard, [])),
            "tickers_removed": len(removed.get(shard, [])),
            "rows_written": sum(stats.rows_written[t] for t in written.get(shard, [])),
        } for shard in run_shards})
        sample = next(iter(stored.files()), None)
        yield dg.MaterializeResult(
            asset_key=layer,
            metadata=run_figures(run_ids[layer], LAYERS[layer].root(cfg), sample,
                                 {"seconds": stats.seconds}),
        )
        if layer in checked:
            yield dg.AssetCheckResult(
                asset_key=layer, check_name="sanity", passed=not problems[layer],
                metadata={"problems": problems[layer][:20], "rows_checked": checked_rows[layer]},
            )
