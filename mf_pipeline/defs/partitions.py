"""The shard partitions shared by the per-ticker assets (see ``lib/partitions.py`` for why)."""

import os
from collections.abc import Collection, Mapping

import dagster as dg

from mf_pipeline.defs.research.partitions import SPLIT_SCOPED_ASSETS
from mf_pipeline.lib.partitions import SHARD_KEYS
from mf_pipeline.lib.registry import PER_TICKER
from mf_pipeline.orchestration import planning

ticker_shards = dg.StaticPartitionsDefinition(list(SHARD_KEYS))
PER_TICKER_TAG = {planning.PER_TICKER_TAG: "true"}
"""Tag of the per-ticker layer assets (``lib/registry.py`` ``PER_TICKER``), shard-partitioned;
the CLI's planning selects assets by it."""
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
"""Run tags of a run over a contiguous range of shards (the CLI, the sensor)."""
PARTITION_TAG = "dagster/partition"
SHARDS_PER_RUN_ENV = "MF_SHARDS_PER_RUN"


def shard_backfill_policy() -> dg.BackfillPolicy:
    """One run per backfill of the per-ticker assets (the single-machine default); with
    ``$MF_SHARDS_PER_RUN=k`` (a cluster, docs/DEPLOY.md) one run per k shards, which the run
    queue starts side by side up to its limit, each on the Celery workers."""
    per_run = os.environ.get(SHARDS_PER_RUN_ENV, "").strip()
    if per_run:
        if not per_run.isdigit() or not 1 <= int(per_run) <= len(SHARD_KEYS):
            raise ValueError(f"{SHARDS_PER_RUN_ENV}={per_run!r}: a number of shards, 1 to "
                             f"{len(SHARD_KEYS)}")
        return dg.BackfillPolicy.multi_run(max_partitions_per_run=int(per_run))
    return dg.BackfillPolicy.single_run()


def run_lock_scope(tags: Mapping[str, str], selection: Collection[dg.AssetKey] | None
                   ) -> list[str] | None:
    """What of the lake a run writes, when that is less than all of it, as lock names
    (``lib/lake_lock.shard_lock``): the shards of a run of per-ticker assets only, or
    ``split=<key>`` for a run of split-scoped research assets on one split; None for any other
    run (the whole lake's lock)."""
    names = {key.to_user_string() for key in selection or ()}
    if not names:
        return None
    if names <= set(PER_TICKER):
        if tags.get(RANGE_START) in SHARD_KEYS and tags.get(RANGE_END) in SHARD_KEYS:
            first = SHARD_KEYS.index(tags[RANGE_START])
            last = SHARD_KEYS.index(tags[RANGE_END])
            return list(SHARD_KEYS[first:last + 1]) or None
        if tags.get(PARTITION_TAG) in SHARD_KEYS:
            return [tags[PARTITION_TAG]]
    if names <= SPLIT_SCOPED_ASSETS and tags.get(PARTITION_TAG):
        return [f"split={tags[PARTITION_TAG]}"]
    return None


def layer_run_id(dagster_run_id: str, layer: str) -> str:
    """The layer run id stored in data files: ``<layer>-run-<12 hex of the Dagster run id>``."""
    return f"{layer}-run-{dagster_run_id.replace('-', '')[:12]}"
