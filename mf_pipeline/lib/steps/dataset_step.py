"""The ML dataset export (old ``export-ml-dataset``) from the joined feature panel."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.layers import dataset
from mf_pipeline.lib.settings import Settings

PANEL_LAYERS = ("features", "events", "indicators", "silver")


@dataclass
class ExportOutcome:
    run_id: str
    dataset_path: Path
    metadata_path: Path
    metadata: dict[str, Any]


def export_root(settings: Settings) -> Path:
    return settings.gold_root / "datasets" / "ml_dataset_v1"


def export_ml_dataset(
    settings: Settings,
    run_id: str,
    symbols_limit: int | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    sample_frac: float | None = None,
) -> ExportOutcome:
    """Write ``<gold_root>/datasets/ml_dataset_v1/<run_id>/dataset.parquet`` + metadata.json.

    ``symbols_limit`` takes a seeded random sample of tickers (the old tool took the first N
    paths, i.e. NASDAQ first); ``sample_frac`` samples rows with seed 42.
    """
    files = lake.symbol_files(lake.LAYERS["features"].root(settings))
    tickers = sorted({path.parent.name.removeprefix("ticker=") for path in files})
    if symbols_limit is not None:
        tickers = dataset.sample_tickers(tickers, symbols_limit)
    drop_null = settings.gold_features.export.default_drop_null_key_features
    panel = lake.scan_panel(settings, PANEL_LAYERS, dataset.EXPORT_COLUMNS, tickers)
    if panel is None:
        frame = pl.DataFrame(schema={name: pl.String for name in dataset.EXPORT_COLUMNS})
    else:
        frame = dataset.select_export(panel, start_date, end_date, drop_null).collect()
        frame = dataset.sample_rows(frame, sample_frac).sort(list(lake.KEYS))
    folder = export_root(settings) / run_id
    dataset_path = lake.write_parquet(frame, folder / "dataset.parquet", settings.parquet)
    metadata = dataset.export_metadata(
        frame, run_id=run_id, dataset_path=str(dataset_path), start_date=start_date,
        end_date=end_date, symbols_limit=symbols_limit, sample_frac=sample_frac,
        drop_null_key_features=drop_null, read_errors=0, generated_ts=dt.datetime.now(dt.UTC),
    )
    metadata_path = lake.write_json(metadata, folder / "metadata.json")
    return ExportOutcome(run_id, dataset_path, metadata_path, metadata)


def latest_export(settings: Settings) -> Path | None:
    """The newest export by its recorded ``generated_ts`` (not by folder mtime)."""
    best: tuple[str, Path] | None = None
    for meta in export_root(settings).glob("*/metadata.json"):
        import json

        stamp = json.loads(meta.read_text()).get("generated_ts", "")
        if best is None or stamp > best[0]:
            best = (stamp, meta.parent / "dataset.parquet")
    return None if best is None else best[1]
