"""Frames kept after a commit are handed back only while the layer still holds exactly those
rows (the ticker's listing in the current snapshot equals the one the commit returned)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.partitions import shard_of
from mf_pipeline.lib.recent_writes import RecentWrites


def _rows(ticker: str, n: int, exchange: str = "NYSE", start: float = 1.0) -> pl.DataFrame:
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(n)]
    return pl.DataFrame({
        "ticker": [ticker] * n, "exchange": [exchange] * n, "trade_date": days,
        "close": [start + i for i in range(n)],
        "volume": pl.Series([10 * i for i in range(n)], dtype=pl.Int64),
    })


def _write(root: Path, frame: pl.DataFrame, kept: RecentWrites) -> dict[str, str]:
    """Commit ``frame`` and keep it, as the Bronze step does; returns the commit's listings."""
    listings = lake.write_symbol_files(frame, root).listings
    kept.remember(root, listings, frame)
    return listings


@pytest.fixture
def lake_with_two(tmp_path: Path) -> tuple[Path, RecentWrites, pl.DataFrame]:
    root = tmp_path / "bronze"
    kept = RecentWrites()
    frame = pl.concat([_rows("AAA.US", 5), _rows("BBB.US", 3, "NASDAQ", 50.0)])
    _write(root, frame, kept)
    return root, kept, frame


def test_recall_equals_reading_the_lake(lake_with_two) -> None:
    root, kept, frame = lake_with_two
    recalled = kept.recall(root, ["AAA.US", "BBB.US"])
    on_disk = lake.read_tickers(root, ["AAA.US", "BBB.US"])
    assert recalled is not None
    assert recalled.equals(on_disk)
    assert recalled.schema == on_disk.schema
    assert recalled.equals(frame)
    # In the order asked for.
    assert kept.recall(root, ["BBB.US", "AAA.US"])["ticker"].to_list() == (
        ["BBB.US"] * 3 + ["AAA.US"] * 5)


def test_a_ticker_without_any_rows_adds_no_rows(lake_with_two) -> None:
    root, kept, _ = lake_with_two
    recalled = kept.recall(root, ["AAA.US", "NONE.US"])
    assert recalled is not None and recalled["ticker"].unique().to_list() == ["AAA.US"]
    assert kept.recall(root, ["NONE.US"]) is None  # nothing kept at all: read the lake


def test_unknown_ticker_with_rows_means_read_the_lake(lake_with_two, tmp_path) -> None:
    root, kept, _ = lake_with_two
    lake.write_symbol_files(_rows("CCC.US", 2), root)  # committed without keeping
    assert kept.recall(root, ["AAA.US", "CCC.US"]) is None
    assert kept.recall(tmp_path / "elsewhere", ["AAA.US"]) is None


def test_only_the_committed_tickers_are_kept(tmp_path: Path) -> None:
    root, kept = tmp_path / "bronze", RecentWrites()
    frame = pl.concat([_rows("AAA.US", 2), _rows("BBB.US", 2)])
    listings = lake.write_symbol_files(frame, root).listings
    kept.remember(root, {"AAA.US": listings["AAA.US"]}, frame)
    assert kept.recall(root, ["AAA.US"]).equals(_rows("AAA.US", 2))
    assert kept.recall(root, ["AAA.US", "BBB.US"]) is None  # BBB.US has rows, none kept


def test_replaced_rows_are_not_recalled(lake_with_two) -> None:
    root, kept, _ = lake_with_two
    lake.write_symbol_files(_rows("AAA.US", 5, start=9.0), root)  # another writer, same size
    assert kept.recall(root, ["AAA.US"]) is None
    assert kept.recall(root, ["BBB.US"]).equals(_rows("BBB.US", 3, "NASDAQ", 50.0))


def test_the_same_rows_committed_again_are_not_recalled(lake_with_two) -> None:
    """A new commit is a new version, even with equal rows: the kept frame's listing is old."""
    root, kept, _ = lake_with_two
    lake.write_symbol_files(_rows("AAA.US", 5), root)
    assert kept.recall(root, ["AAA.US"]) is None


def test_appended_or_removed_rows_are_not_recalled(lake_with_two) -> None:
    root, kept, _ = lake_with_two
    later = _rows("AAA.US", 6).tail(1)  # one more bar after the kept ones
    lake.write_symbol_files(later, root, append=True)
    assert kept.recall(root, ["AAA.US"]) is None
    assert lake.remove_symbol_files(root, ["BBB.US"]) == ["BBB.US"]
    assert kept.recall(root, ["BBB.US"]) is None


def test_rows_moved_by_a_compaction_are_still_recalled(tmp_path: Path) -> None:
    """A compaction moves a ticker's rows to another file without changing them: its listing,
    hence the kept frame, stays valid."""
    root, kept = tmp_path / "bronze", RecentWrites()
    assert shard_of("AAA.US") == shard_of("BBB.US")  # one file holds both
    aaa = _rows("AAA.US", 2)
    _write(root, pl.concat([aaa, _rows("BBB.US", 5)]), kept)
    before = lake.snapshot(root).of(["AAA.US"]).files()
    # Replacing BBB.US leaves 2 live rows of 7 in the old file: it is merged at once.
    lake.write_symbol_files(_rows("BBB.US", 5, start=7.0), root)
    after = lake.snapshot(root).of(["AAA.US"]).files()
    assert len(before) == len(after) == 1 and before != after
    assert kept.recall(root, ["AAA.US"]).equals(aaa)
    assert kept.recall(root, ["AAA.US", "BBB.US"]) is None


def test_exceeding_the_budget_drops_everything_until_cleared(tmp_path: Path) -> None:
    root = tmp_path / "bronze"
    first, second = _rows("AAA.US", 400), _rows("BBB.US", 400)
    kept = RecentWrites(budget_bytes=int(first.estimated_size() * 1.5))
    _write(root, first, kept)
    assert kept.recall(root, ["AAA.US"]) is not None
    assert not kept.fits(first.estimated_size())
    _write(root, second, kept)  # would exceed: a partial store is no use, so nothing is kept
    assert kept.recall(root, ["AAA.US"]) is None
    assert kept.recall(root, ["BBB.US"]) is None
    _write(root, _rows("CCC.US", 1), kept)  # stays off for the rest of the run
    assert kept.recall(root, ["CCC.US"]) is None
    kept.clear()
    assert kept.fits(first.estimated_size())
    _write(root, first, kept)
    assert kept.recall(root, ["AAA.US"]) is not None


def test_bronze_keeps_nothing_when_the_raw_text_exceeds_the_budget(
        isolated, messy_universe, monkeypatch) -> None:
    from mf_pipeline.lib import recent_writes
    from mf_pipeline.lib.steps import bronze_step

    settings = isolated(messy_universe)
    tickers = bronze_step.run_manifest(settings, "m", log=lambda _: None).to_process
    root = bronze_step.paths(settings).data
    remembered: list[str] = []

    class Spy(RecentWrites):
        def remember(self, layer_root, listings, frame) -> None:
            remembered.extend(listings)
            super().remember(layer_root, listings, frame)

    monkeypatch.setattr(recent_writes, "BRONZE", Spy(budget_bytes=1))
    bronze_step.run_bronze(settings, tickers, "b", log=lambda _: None)
    assert remembered == []
    assert lake.symbol_tickers(root)  # Bronze itself was written

    monkeypatch.setattr(recent_writes, "BRONZE", Spy())
    bronze_step.run_bronze(settings, tickers, "b2", log=lambda _: None)
    assert sorted(remembered) == lake.symbol_tickers(root)
    recalled = recent_writes.BRONZE.recall(root, sorted(remembered))
    assert recalled is not None
    assert recalled.sort("ticker", "trade_date").equals(lake.read_tickers(root, remembered))


def test_derived_step_takes_bronze_from_memory_with_the_same_result(
        isolated, messy_universe, monkeypatch) -> None:
    from mf_pipeline.lib import recent_writes
    from mf_pipeline.lib.steps import bronze_step, derived_step

    settings = isolated(messy_universe)
    recent_writes.BRONZE.clear()
    tickers = bronze_step.run_manifest(settings, "m", log=lambda _: None).to_process
    bronze_step.run_bronze(settings, tickers, "b", log=lambda _: None)
    layers = list(registry.DERIVED)
    run_ids = dict.fromkeys(layers, "r")
    scanned: list[str] = []
    real_scan = lake.scan_layer

    def spy(settings_, layer, tickers_=None):
        scanned.append(layer)
        return real_scan(settings_, layer, tickers_)

    monkeypatch.setattr(lake, "scan_layer", spy)

    def build() -> dict[str, pl.DataFrame]:
        derived_step.run_derived(settings, tickers, layers, run_ids, log=lambda _: None)
        return {layer: lake.read_layer(settings, layer).drop("built_ts") for layer in layers}

    from_memory = build()
    assert "bronze" not in scanned
    recent_writes.BRONZE.clear()
    from_files = build()
    assert "bronze" in scanned
    for layer in layers:
        assert from_memory[layer].height > 0
        assert from_memory[layer].equals(from_files[layer]), layer
