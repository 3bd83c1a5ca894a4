"""Bronze quality steps: symbol master and sanity artifacts from the lake. Dagster-free."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.layers.bronze import qa as bronze_qa
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.bronze_step import paths


def _optional(path: Path) -> pl.DataFrame | None:
    return pl.read_parquet(path) if path.exists() else None


@dataclass
class SymbolMasterOutcome:
    master: pl.DataFrame
    bronze_files: int
    read_errors: list[Path]
    outputs: tuple[Path, Path]


def build_symbol_master(settings: Settings) -> SymbolMasterOutcome:
    bronze = paths(settings)
    stored = lake.snapshot(bronze.data)
    master, unreadable = bronze_qa.build_symbol_master_report(
        stored, _optional(bronze.ledger), _optional(bronze.rejects), dt.datetime.now(dt.UTC)
    )
    outputs = bronze_qa.write_symbol_master(master, settings.bronze_root)
    return SymbolMasterOutcome(master, len(stored.files()), unreadable, outputs)


def sanity_checks(settings: Settings) -> tuple[dict, list[Path]]:
    """The old ``sanity-checks``: builds the symbol master first when it is missing."""
    parquet_path, _csv = bronze_qa.symbol_master_paths(settings.bronze_root)
    master = (pl.read_parquet(parquet_path) if parquet_path.exists()
              else build_symbol_master(settings).master)
    stored = lake.snapshot(paths(settings).data)
    summary, by_exchange, by_year = bronze_qa.sanity_report(master, stored,
                                                            dt.datetime.now(dt.UTC))
    written = bronze_qa.write_sanity_artifacts(summary, by_exchange, by_year,
                                               settings.artifacts_root)
    return summary, written


def load_symbol_master(settings: Settings) -> pl.DataFrame:
    parquet_path, _csv = bronze_qa.symbol_master_paths(settings.bronze_root)
    if not parquet_path.exists():
        raise FileNotFoundError(
            f"no symbol master at {parquet_path}: run `mf build-symbol-master` first"
        )
    return pl.read_parquet(parquet_path)
