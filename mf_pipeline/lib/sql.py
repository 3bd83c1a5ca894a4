"""DuckDB over the lake: one read-only view per per-ticker layer, for ad-hoc SQL."""

from __future__ import annotations

import duckdb

from mf_pipeline.lib import lake
from mf_pipeline.lib.settings import Settings


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with views ``bronze``, ``silver``, ``indicators``, ``events``,
    ``features`` (only those with files) over the per-ticker Parquet files."""
    connection = duckdb.connect()
    for name, layer in lake.LAYERS.items():
        root = layer.root(settings)
        if not lake.symbol_files(root):
            continue
        pattern = str(root / "exchange=*" / "prefix=*" / "ticker=*" / lake.PART_GLOB)
        pattern = pattern.replace("'", "''")
        connection.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{pattern}', "
            "hive_partitioning = false, union_by_name = true)"
        )
    return connection
