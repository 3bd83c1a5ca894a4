"""Partition definitions shared by the per-ticker assets."""

import dagster as dg

TICKERS = "tickers"

tickers_partitions = dg.DynamicPartitionsDefinition(name=TICKERS)


def bronze_run_id(dagster_run_id: str, layer: str) -> str:
    """The layer run id stored in data files: ``<layer>-run-<12 hex of the Dagster run id>``."""
    return f"{layer}-run-{dagster_run_id.replace('-', '')[:12]}"
