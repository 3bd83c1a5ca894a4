"""Materialize the way the Dagster UI does: one partition key per run, no planned ticker list.

A run launched from the UI (or a backfill of single partitions) gives the per-ticker assets
one shard key and leaves the ``ticker_work`` resource empty, so each asset finds its own work
(``TickerWork.select``): Bronze the tickers the current manifest says changed, the derived
layers the tickers whose inputs are newer. Inside the shard only; other shards' work waits
for their own runs.
"""

from __future__ import annotations

import shutil

import dagster as dg
import polars as pl
import pytest

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.partitions import shard_of
from mf_pipeline.lib.steps import bronze_step
from mf_pipeline.orchestration.runner import definitions, instance

pytestmark = pytest.mark.e2e


def materialize(settings, asset: str, partition_key: str | None = None):
    """One run of the implicit asset job for ``asset``, as the UI's Materialize button does:
    the project's resources as defined (no run config), one partition key, no range tags."""
    job = definitions().resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance(settings), asset_selection=[dg.AssetKey(asset)],
        partition_key=partition_key, raise_on_error=True,
    )
    assert result.success
    if partition_key is not None:
        assert result.dagster_run.tags.get("dagster/partition") == partition_key
    return result


def tickers_in(settings, layer: str) -> set[str]:
    return set(lake.symbol_tickers(registry.spec(layer).root(settings)))


def raw_tickers(raw) -> set[str]:
    return {lake.ticker_from_file_name(p.name) for p in raw.rglob("*.txt")
            if not p.relative_to(raw).as_posix().startswith("_")}


@pytest.fixture
def project(isolated, messy_universe, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    return isolated(raw), raw


def test_one_shard_at_a_time_without_a_ticker_list(project):
    settings, raw = project
    valid = sorted(t for t in raw_tickers(raw) if lake.is_valid_ticker(t))
    by_shard = {key: {t for t in valid if shard_of(t) == key} for key in {*map(shard_of, valid)}}
    first = max(sorted(by_shard), key=lambda key: len(by_shard[key]))
    second = min(key for key in by_shard if key != first)
    in_first, in_second = by_shard[first], by_shard[second]
    assert len(in_first) >= 2 and in_second, by_shard

    materialize(settings, "manifest")
    assert not tickers_in(settings, "bronze")

    materialize(settings, "bronze", first)
    assert tickers_in(settings, "bronze") == in_first
    ledger = pl.read_parquet(bronze_step.paths(settings).ledger)
    assert set(ledger["ticker"].drop_nulls()) == in_first, f"Bronze read files outside {first}"
    assert bronze_step.reconciliation_failures(settings).is_empty()

    materialize(settings, "silver", first)
    assert tickers_in(settings, "silver") == in_first
    assert not tickers_in(settings, "indicators")

    # The other shards' changes are still pending: the second shard's run finds its own
    # tickers and leaves the first shard's rows and files alone.
    bronze_root = registry.spec("bronze").root(settings)
    held = lake.snapshot(bronze_root).index
    materialize(settings, "bronze", second)
    assert tickers_in(settings, "bronze") == in_first | in_second
    after = lake.snapshot(bronze_root)
    assert after.in_shards([first]).index.sort("ticker").equals(held.sort("ticker"))
    assert set(after.index["shard"]) == {first, second}
    assert tickers_in(settings, "silver") == in_first
