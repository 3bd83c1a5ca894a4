"""The shard partitions shared by the per-ticker assets (see ``lib/partitions.py`` for why)."""

import dagster as dg

from mf_pipeline.lib.partitions import SHARD_KEYS

ticker_shards = dg.StaticPartitionsDefinition(list(SHARD_KEYS))
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
"""Run tags of a run over a contiguous range of shards (the CLI, the sensor)."""


def layer_run_id(dagster_run_id: str, layer: str) -> str:
    """The layer run id stored in data files: ``<layer>-run-<12 hex of the Dagster run id>``."""
    return f"{layer}-run-{dagster_run_id.replace('-', '')[:12]}"
