"""The shard partitions shared by the per-ticker assets (see ``lib/partitions.py`` for why)."""

import dagster as dg

from mf_pipeline.lib.partitions import SHARD_KEYS
from mf_pipeline.orchestration import planning

ticker_shards = dg.StaticPartitionsDefinition(list(SHARD_KEYS))
PER_TICKER_TAG = {planning.PER_TICKER_TAG: "true"}
"""Tag of the per-ticker layer assets (``lib/registry.py`` ``PER_TICKER``), shard-partitioned;
the CLI's planning selects assets by it."""
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
"""Run tags of a run over a contiguous range of shards (the CLI, the sensor)."""


def layer_run_id(dagster_run_id: str, layer: str) -> str:
    """The layer run id stored in data files: ``<layer>-run-<12 hex of the Dagster run id>``."""
    return f"{layer}-run-{dagster_run_id.replace('-', '')[:12]}"
