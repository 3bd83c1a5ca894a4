"""Dagster's own vocabulary from ``mf``: which partitions an asset has, and materializing an
asset selection for one partition with a clear error when the key does not exist.

``dagster asset materialize -m mf_pipeline.definitions --select … --partition …`` works from
the project root too (``.env`` names the instance), but Dagster answers a wrong key with a
traceback that does not list the keys; ``mf materialize`` checks the key first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mf_pipeline.cli.app import AsJson, app, emit, fail, run_summary, say, settings_of

if TYPE_CHECKING:
    from mf_pipeline.lib.settings import Settings


def _partition_keys(settings: Settings, asset: str) -> tuple[str, list[str]] | None:
    """(kind, keys) of ``asset``'s partitions in the project's instance; None if unpartitioned."""
    import dagster as dg

    from mf_pipeline.orchestration import runner

    specs = {spec.key.to_user_string(): spec
             for spec in runner.definitions().resolve_all_asset_specs()}
    if asset not in specs:
        fail(f"no asset {asset!r}; assets: {', '.join(sorted(specs))}")
    pdef = specs[asset].partitions_def
    if pdef is None:
        return None
    if isinstance(pdef, dg.DynamicPartitionsDefinition) and pdef.name:
        return "dynamic", list(runner.instance(settings).get_dynamic_partitions(pdef.name))
    return "static", list(pdef.get_partition_keys())


@app.command("partitions")
def partitions(
    ctx: typer.Context,
    asset: Annotated[str, typer.Argument(help="Asset name, e.g. bronze, silver, hmm_model.")],
    as_json: AsJson = False,
) -> None:
    """List an asset's partition keys (ticker shards with their ticker counts, or splits)."""
    settings = settings_of(ctx)
    found = _partition_keys(settings, asset)
    if found is None:
        fail(f"{asset} is not partitioned: materialize it without --partition")
        return
    kind, keys = found
    counts = _shard_ticker_counts(settings) if kind == "static" else {}
    if as_json:
        emit({"asset": asset, "kind": kind,
              "partitions": [{"key": k, "tickers": counts.get(k)} for k in keys]}, True)
        return
    for key in keys:
        typer.echo(f"{key}\t{counts[key]} tickers" if key in counts else key)
    if kind == "static":
        typer.echo("(a ticker's shard is a fixed hash of its name: shards hold similar numbers "
                   "of tickers)")


def _shard_ticker_counts(settings: Settings) -> dict[str, int]:
    """Tickers per shard in the Bronze layer (0 for an empty shard)."""
    from mf_pipeline.lib import lake
    from mf_pipeline.lib.partitions import SHARD_KEYS, shard_of

    root = lake.LAYERS["bronze"].root(settings)
    counts = dict.fromkeys(SHARD_KEYS, 0)
    for ticker in lake.symbol_tickers(root):
        counts[shard_of(ticker)] += 1
    return counts


@app.command("materialize")
def materialize(
    ctx: typer.Context,
    select: Annotated[str, typer.Option(help="Comma-separated asset names, e.g. silver,events.")],
    partition: Annotated[str | None, typer.Option(help="One partition key (see `mf partitions "
                                                  "ASSET`).")] = None,
    as_json: AsJson = False,
) -> None:
    """Materialize assets for one partition as one Dagster run (keys checked before launch)."""
    from mf_pipeline.lib.steps.research.options import split_key
    from mf_pipeline.orchestration import runner

    names = [name.strip() for name in select.split(",") if name.strip()]
    if not names:
        fail("--select names no asset")
    settings = settings_of(ctx)
    kinds = {name: _partition_keys(settings, name) for name in names}
    partitioned = {name for name, found in kinds.items() if found is not None}
    if partition is None and partitioned:
        fail(f"{', '.join(sorted(partitioned))} partitioned: give --partition "
             f"(`mf partitions {sorted(partitioned)[0]}` lists the keys)")
    if partition is not None and len(partitioned) != len(names):
        fail(f"{', '.join(sorted(set(names) - partitioned))} not partitioned: "
             "materialize it in a run of its own, without --partition")
    if partition is not None:
        for name in sorted(partitioned):
            kind, keys = kinds[name] or ("", [])
            if kind == "dynamic":
                try:  # any train end is a split: the runner registers a new one
                    partition = split_key(partition)
                except ValueError:
                    fail(f"{partition!r} is not a split of {name}: use `full` or wfYYYY-MM-DD "
                         f"(known: {', '.join(keys) or 'none yet'})")
            elif partition not in keys:
                fail(f"{partition!r} is not a partition of {name}; its keys are "
                     f"{' '.join(keys)}")
    outcome = runner.run_assets(settings, names, partition, log=say)
    emit(outcome.metadata, as_json, run_summary(outcome))
