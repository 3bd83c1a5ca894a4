"""Frames kept after writing are handed back only while the files are exactly what was written."""

from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path

import polars as pl
import pytest

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.recent_writes import RecentWrites


def _rows(ticker: str, n: int, exchange: str = "NYSE", start: float = 1.0) -> pl.DataFrame:
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(n)]
    return pl.DataFrame({
        "ticker": [ticker] * n, "exchange": [exchange] * n, "trade_date": days,
        "close": [start + i for i in range(n)],
        "volume": pl.Series([10 * i for i in range(n)], dtype=pl.Int64),
    })


def _write(root: Path, frame: pl.DataFrame, kept: RecentWrites) -> dict[str, Path]:
    return lake.write_symbol_files(frame, root, keep=functools.partial(kept.remember, root))


@pytest.fixture
def lake_with_two(tmp_path: Path) -> tuple[Path, RecentWrites, pl.DataFrame]:
    root = tmp_path / "bronze"
    kept = RecentWrites()
    frame = pl.concat([_rows("AAA.US", 5), _rows("BBB.US", 3, "NASDAQ", 50.0)])
    _write(root, frame, kept)
    return root, kept, frame


def test_recall_equals_reading_the_files(lake_with_two) -> None:
    root, kept, frame = lake_with_two
    recalled = kept.recall(root, ["AAA.US", "BBB.US"])
    on_disk = pl.read_parquet(lake.symbol_files(root)).sort("ticker", "trade_date")
    assert recalled is not None
    assert recalled.equals(on_disk)
    assert recalled.schema == on_disk.schema
    assert recalled.equals(frame)


def test_a_ticker_without_any_folder_adds_no_rows(lake_with_two) -> None:
    root, kept, _ = lake_with_two
    recalled = kept.recall(root, ["AAA.US", "NONE.US"])
    assert recalled is not None and recalled["ticker"].unique().to_list() == ["AAA.US"]


def test_unknown_ticker_with_a_file_means_read_the_files(lake_with_two, tmp_path) -> None:
    root, kept, _ = lake_with_two
    lake.write_symbol_files(_rows("CCC.US", 2), root)  # written without keeping
    assert kept.recall(root, ["AAA.US", "CCC.US"]) is None
    assert kept.recall(tmp_path / "elsewhere", ["AAA.US"]) is None


def test_rewritten_file_is_not_recalled(lake_with_two) -> None:
    root, kept, _ = lake_with_two
    lake.write_symbol_files(_rows("AAA.US", 6, start=9.0), root)  # another writer
    assert kept.recall(root, ["AAA.US"]) is None
    assert kept.recall(root, ["BBB.US"]) is not None


def test_touched_file_is_not_recalled(lake_with_two) -> None:
    root, kept, _ = lake_with_two
    path = lake.symbol_files(root, ["AAA.US"])[0]
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert kept.recall(root, ["AAA.US"]) is None


def test_a_delta_file_or_a_second_exchange_folder_means_read_the_files(lake_with_two) -> None:
    root, kept, _ = lake_with_two
    lake.write_symbol_files(_rows("AAA.US", 1, "NASDAQ"), root)  # same ticker, other exchange
    assert kept.recall(root, ["AAA.US"]) is None
    folder = lake.symbol_dir(root, "NASDAQ", "BBB.US")
    (folder / "part-d20250101.parquet").write_bytes(b"")
    assert kept.recall(root, ["BBB.US"]) is None


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
        def remember(self, layer_root, ticker, path, frame) -> None:
            remembered.append(ticker)
            super().remember(layer_root, ticker, path, frame)

    monkeypatch.setattr(recent_writes, "BRONZE", Spy(budget_bytes=1))
    bronze_step.run_bronze(settings, tickers, "b", log=lambda _: None)
    assert remembered == []
    assert lake.symbol_files(root)  # Bronze itself was written

    monkeypatch.setattr(recent_writes, "BRONZE", Spy())
    bronze_step.run_bronze(settings, tickers, "b2", log=lambda _: None)
    assert remembered
    assert recent_writes.BRONZE.recall(root, sorted(remembered)) is not None


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
