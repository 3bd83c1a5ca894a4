"""The ML dataset export (old ``export-ml-dataset``) from the joined feature panel.

The panel is read ``batch_rows`` rows' worth of tickers at a time (``panel_batches``) and the
batches stream through polars' Parquet sink into one file, so memory does not grow with the
universe; the next batch is read on a worker thread while the sink encodes the current one.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from polars.io.plugins import register_io_source

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.layers import dataset
from mf_pipeline.lib.settings import ParquetSettings, Settings
from mf_pipeline.lib.steps import panel_batches

PANEL_LAYERS = registry.LAYERS["ml_dataset"].inputs
# two batches are alive at once (one read, one encoded); small ones keep both cores busy from
# the first batch on and the peak low (~450 MB at 300 tickers, 820 MB with 1,000,000)
DEFAULT_BATCH_ROWS = 250_000


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
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> ExportOutcome:
    """Write ``<gold_root>/datasets/ml_dataset_v1/<run_id>/dataset.parquet`` + metadata.json.

    ``symbols_limit`` takes a seeded random sample of tickers (the old tool took the first N
    paths, i.e. NASDAQ first); ``sample_frac`` samples each ticker's rows with seed 42 (see
    ``dataset.sample_rows``). The rows do not depend on ``batch_rows``.
    """
    start, end = dataset.validate_date_range(start_date, end_date)
    tickers = lake.symbol_tickers(lake.LAYERS["features"].root(settings))
    if symbols_limit is not None:
        tickers = dataset.sample_tickers(tickers, symbols_limit)
    drop_null = settings.gold_features.export.default_drop_null_key_features
    parts = panel_batches.plan_panel(settings, PANEL_LAYERS, dataset.EXPORT_COLUMNS, tickers)
    if parts is None:  # no feature files: the old tool's empty frame of String columns
        empty = pl.DataFrame(schema={name: pl.String for name in dataset.EXPORT_COLUMNS})
        frames: Iterator[pl.DataFrame] = iter([empty])
    else:
        batches = dataset.plan_batches(panel_batches.estimated_rows(parts[0]), batch_rows)
        build = functools.partial(_export_batch, parts, start=start, end=end,
                                  drop_null=drop_null, sample_frac=sample_frac)
        frames = _prefetched(batches, build)
    folder = export_root(settings) / run_id
    dataset_path, stats = _write_batches(frames, folder / "dataset.parquet", settings.parquet)
    metadata = dataset.export_metadata(
        stats, run_id=run_id, dataset_path=str(dataset_path), start_date=start_date,
        end_date=end_date, symbols_limit=symbols_limit, sample_frac=sample_frac,
        drop_null_key_features=drop_null, read_errors=0, generated_ts=dt.datetime.now(dt.UTC),
    )
    metadata_path = lake.write_json(metadata, folder / "metadata.json")
    return ExportOutcome(run_id, dataset_path, metadata_path, metadata)


def _export_batch(
    parts: Sequence[panel_batches.LayerPart],
    tickers: Sequence[str],
    *,
    start: dt.date | None,
    end: dt.date | None,
    drop_null: bool,
    sample_frac: float | None,
) -> pl.DataFrame:
    """The exported rows of ``tickers``: columns, filters and sample as for the whole panel."""
    panel = panel_batches.read_batch(parts, tickers, start, end).lazy()
    frame = dataset.select_export(panel, start, end, drop_null).collect()
    # read_batch's rows are sorted already: only a sample needs sample_rows
    return frame if sample_frac is None else dataset.sample_rows(frame, sample_frac)


def _prefetched(
    batches: Sequence[Sequence[str]], build: Callable[[Sequence[str]], pl.DataFrame]
) -> Iterator[pl.DataFrame]:
    """``build(batch)`` for each batch in order; the next one is built on a worker thread
    while the caller consumes the current one (polars and pyarrow release the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(build, batches[0])
        for batch in batches[1:]:
            frame = pending.result()
            pending = pool.submit(build, batch)
            yield frame
            del frame  # free the written batch before the next one arrives
        yield pending.result()


def _sink_options(parquet: ParquetSettings) -> dict[str, Any]:
    """``lake.write_parquet``'s compression settings for ``sink_parquet``."""
    level = parquet.compression_level if parquet.compression in ("zstd", "gzip", "brotli") else None
    compression = "uncompressed" if parquet.compression == "none" else parquet.compression
    return {"compression": compression, "compression_level": level,
            "statistics": parquet.statistics}


def _write_batches(
    frames: Iterator[pl.DataFrame], target: Path, parquet: ParquetSettings
) -> tuple[Path, dataset.ExportStats]:
    """Stream ``frames`` (all of one schema, at least one) into one Parquet file, atomically;
    returns the path and the statistics of the rows written.

    polars' streaming sink encodes row groups on every core (pyarrow's ``ParquetWriter`` on
    one, after a ``to_arrow`` copy: ~2x the time here) and pulls the frames one at a time, so
    it holds a batch and a few row groups, not the file. ``register_io_source`` is marked
    unstable: polars is pinned.
    """
    first = next(frames)
    schema = first.schema
    stats = dataset.ExportStats(first.columns)
    batches = itertools.chain([first], frames)
    del first  # held only by the chain until written

    def source(*_pushdown: object) -> Iterator[pl.DataFrame]:
        # sunk whole: no projection, predicate or row limit is ever pushed into it
        for frame in batches:
            stats.add(frame)
            yield frame

    with lake.atomic_target(target) as temp:
        register_io_source(source, schema=schema, validate_schema=True).sink_parquet(
            temp, **_sink_options(parquet))
    return target, stats


def latest_export(settings: Settings) -> Path | None:
    """The newest export by its recorded ``generated_ts`` (not by folder mtime)."""
    best: tuple[str, Path] | None = None
    for meta in export_root(settings).glob("*/metadata.json"):
        stamp = json.loads(meta.read_text()).get("generated_ts", "")
        if best is None or stamp > best[0]:
            best = (stamp, meta.parent / "dataset.parquet")
    return None if best is None else best[1]
