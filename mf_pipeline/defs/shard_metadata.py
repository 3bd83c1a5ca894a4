"""Per-shard materialization metadata of the per-ticker assets, and when a run records none.

In a run over several shards Dagster copies the metadata of the asset's ``MaterializeResult``
to every shard's materialization. So the run-level metadata holds only what is true of every
shard (the layer run id, the layer's folder, its column schema), and each shard's figures are
added for that partition alone (``add_asset_metadata(..., partition_key=)``): the tickers it
holds and its rows and dates *in the lake after the run*, and what this run changed in it.

A run that had nothing to do for an asset records no materialization, so the asset page keeps
the last real figures, unless Dagster needs one: a shard that was never materialized (an empty
shard turns green), an asset downstream in the same run (Dagster skips the steps after an
output that was not yielded), or a backfill ("Materialize all" in the UI marks a partition
its run did not materialize as failed, and everything downstream with it). The figures
recorded then are still true: the lake's, with `changed: false`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from mf_pipeline.lib.steps.shards import ShardState

TICKERS_SHOWN = 500
"""Tickers listed by name in a shard's metadata (a few hundred per shard on 8,000 tickers)."""
EMPTY_SHARD = "empty shard: no tickers"
BACKFILL_TAG = "dagster/backfill"


def ticker_list(tickers: Sequence[str], none: str = "none") -> dg.MetadataValue:
    """Tickers as one line of text (the UI shows it inline), at most :data:`TICKERS_SHOWN`."""
    if not tickers:
        return dg.MetadataValue.text(none)
    shown = " ".join(tickers[:TICKERS_SHOWN])
    more = len(tickers) - TICKERS_SHOWN
    return dg.MetadataValue.text(
        shown + (f" … (+{more} more: see the symbol master)" if more > 0 else ""))


def lake_figures(state: ShardState) -> dict[str, Any]:
    """What a shard holds in the lake after the run."""
    return {
        "dagster/row_count": dg.MetadataValue.int(state.rows),
        "ticker_count": len(state.tickers),
        "tickers": ticker_list(state.tickers, EMPTY_SHARD),
        "min_trade_date": str(state.min_date) if state.min_date else None,
        "max_trade_date": str(state.max_date) if state.max_date else None,
    }


def run_figures(run_id: str, layer_root: Path, sample: Path | None,
                seconds: Mapping[str, float]) -> dict[str, Any]:
    """Metadata true of every shard of the run: the run id stored in the files, the run's
    ``seconds`` (as ``run_<name>``: the whole run's, not the shard's), the layer's folder, and
    its column schema (read from one of its files)."""
    out: dict[str, Any] = {"run_id": run_id, "path": dg.MetadataValue.path(str(layer_root)),
                           **{f"run_{name}": round(value, 3) for name, value in seconds.items()}}
    try:
        schema = pl.read_parquet_schema(sample) if sample is not None else {}
    except Exception:  # noqa: BLE001 - a damaged file: no schema this time, the run goes on
        schema = {}
    if schema:
        out["dagster/column_schema"] = dg.TableSchema(
            columns=[dg.TableColumn(name, str(dtype)) for name, dtype in schema.items()])
    return out


def record_shards(context: dg.AssetExecutionContext, asset_key: str,
                  figures: Mapping[str, Mapping[str, Any]]) -> None:
    """Attach each shard's ``figures`` to that shard's materialization only."""
    for shard, metadata in figures.items():
        context.add_asset_metadata(dict(metadata), asset_key=asset_key, partition_key=shard)


def keeps_last_materialization(context: dg.AssetExecutionContext, asset_key: str,
                               tickers_held: int) -> bool:
    """For a run with nothing to do for ``asset_key``: True when it should record nothing
    (logged), False when it must materialize anyway (see the module docstring)."""
    key = dg.AssetKey(asset_key)
    if context.run.tags.get(BACKFILL_TAG):
        context.log.info(f"{asset_key}: nothing to do; recorded with its lake figures because "
                         "a backfill counts a shard without a materialization as failed")
        return False
    never = sorted(set(context.partition_keys)
                   - context.instance.get_materialized_partitions(key))
    if never:
        context.log.info(f"{asset_key}: nothing to do; shards never materialized before "
                         f"({', '.join(never)}) are recorded with their lake figures")
        return False
    selection = context.run.asset_selection
    downstream = context.job_def.asset_layer.get(key).child_keys - set(context.assets_def.keys)
    waiting = downstream if selection is None else downstream & selection
    if waiting:
        names = ", ".join(sorted(k.to_user_string() for k in waiting))
        context.log.info(f"{asset_key}: nothing to do; recorded unchanged because {names} "
                         "run after it")
        return False
    first, last = context.partition_key_range.start, context.partition_key_range.end
    where = f"shard {first}" if first == last else f"shards {first}…{last}"
    context.log.info(f"{asset_key}: nothing to do: all {tickers_held} tickers of {where} up "
                     "to date; the last materialization stands")
    return True


_DIFFERS = object()


def _merged(key: str, seen: Any, value: Any) -> Any:
    if seen is _DIFFERS or key.startswith("run_"):  # a figure of the whole run, on every shard
        return seen
    if isinstance(value, bool):
        return bool(seen) or value
    if isinstance(value, (int, float)) and isinstance(seen, (int, float)):
        return seen + value
    if isinstance(value, list) and isinstance(seen, list):
        return seen + value
    if key.startswith(("min_", "max_")):
        dates = [d for d in (seen, value) if d]
        return (min if key.startswith("min_") else max)(dates, default=None)
    return seen if value == seen else _DIFFERS


def run_totals(per_shard: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One asset's figures over the materializations of a run (for the CLI's summary): counts
    summed, date ranges widened, lists joined, flags or-ed, ``run_*`` taken once, other values
    kept when every shard has the same (path); the column schema left out. One materialization (an
    unpartitioned asset, a one-shard run) comes back as it is, schema aside."""
    totals: dict[str, Any] = {}
    for metadata in per_shard:
        for key, value in metadata.items():
            if key != "dagster/column_schema":
                totals[key] = _merged(key, totals[key], value) if key in totals else value
    return {key: value for key, value in totals.items() if value is not _DIFFERS}
