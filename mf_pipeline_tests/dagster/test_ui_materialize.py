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
    in_a = {t for t in raw_tickers(raw) if lake.is_valid_ticker(t) and shard_of(t) == "A"}
    assert len(in_a) >= 2, in_a
    assert {shard_of(t) for t in raw_tickers(raw)} - {"A"}, "the sample needs other shards"

    materialize(settings, "manifest")
    assert not tickers_in(settings, "bronze")

    materialize(settings, "bronze", "A")
    assert tickers_in(settings, "bronze") == in_a
    ledger = pl.read_parquet(bronze_step.paths(settings).ledger)
    assert set(ledger["ticker"].drop_nulls()) == in_a, "Bronze read files outside shard A"
    assert bronze_step.reconciliation_failures(settings).is_empty()

    materialize(settings, "silver", "A")
    assert tickers_in(settings, "silver") == in_a
    assert not tickers_in(settings, "indicators")

    # The other shards' changes are still pending: shard B's run finds its own tickers and
    # leaves A's files alone.
    a_files = {p: p.stat().st_mtime_ns
               for p in lake.symbol_files(registry.spec("bronze").root(settings))}
    in_b = {t for t in raw_tickers(raw) if lake.is_valid_ticker(t) and shard_of(t) == "B"}
    assert in_b, "the sample needs tickers in shard B"
    materialize(settings, "bronze", "B")
    assert tickers_in(settings, "bronze") == in_a | in_b
    assert {p: p.stat().st_mtime_ns for p in a_files} == a_files
    assert tickers_in(settings, "silver") == in_a
