"""Bronze and the derived layers are computed in batches; the batching never changes a row."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from mf_pipeline.lib import lake, recent_writes, registry
from mf_pipeline.lib.partitions import shard_of
from mf_pipeline.lib.steps import bronze_step, derived_step


def test_small_runs_are_split_for_pipelining_and_large_ones_capped() -> None:
    def sizes(n: int, cap: int) -> list[int]:
        return [len(b) for b in derived_step._batches([f"T{i:05d}" for i in range(n)], cap)]

    assert sizes(300, 500) == [75, 75, 75, 75]
    assert sizes(10, 500) == [10]  # never below MIN_BATCH_TICKERS
    assert sizes(5000, 500) == [500] * 10
    assert sizes(7, 3) == [3, 3, 1]
    # in shard order (B is in shard 01, C in 07, A in 11), so a batch writes whole shards
    assert [shard_of(t) for t in "ABC"] == ["11", "01", "07"]
    batches = list(derived_step._batches(["B", "A", "C"], 2))
    assert batches == [["B", "C"], ["A"]]


def _lake(settings, tickers: list[str], batch_bytes: int, batch_tickers: int
          ) -> dict[str, pl.DataFrame]:
    recent_writes.BRONZE.clear()
    bronze_step.run_bronze(settings, tickers, "b", log=lambda _: None, batch_bytes=batch_bytes)
    layers = list(registry.DERIVED)
    derived_step.run_derived(settings, tickers, layers, dict.fromkeys(layers, "r"),
                             batch_tickers=batch_tickers, log=lambda _: None)
    paths = bronze_step.paths(settings)
    tables = {"ledger": pl.read_parquet(paths.ledger).drop("ingest_ts", strict=False),
              "rejects": pl.read_parquet(paths.rejects)}
    for layer in ("bronze", *layers):
        frame = lake.read_layer(settings, layer)
        tables[layer] = frame.drop([c for c in ("built_ts", "ingest_ts") if c in frame.columns])
    return tables


@pytest.mark.parametrize(("batch_bytes", "batch_tickers"), [(1, 1), (40_000, 3)])
def test_batches_give_the_same_lake_as_one_batch(isolated, messy_universe: Path,
                                                 batch_bytes: int, batch_tickers: int) -> None:
    settings = isolated(messy_universe)
    tickers = bronze_step.run_manifest(settings, "m", log=lambda _: None).to_process
    one = _lake(settings, tickers, 1 << 40, 10_000)
    many = _lake(settings, tickers, batch_bytes, batch_tickers)
    for name, table in one.items():
        assert table.height > 0, name
        assert table.equals(many[name]), name
