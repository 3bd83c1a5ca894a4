"""Bronze → Silver → indicators → events → features for a set of tickers. Dagster-free.

All selected layers are computed in one pass per batch of tickers, in memory, and each is
written per ticker. Layers that are not selected but needed (e.g. indicators when only events
are rebuilt) are read from the lake. Downstream layers always consume the values *as stored*
(cast to the storage precision), so rebuilding one layer alone gives exactly what a full chain
run gives.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.layers import events as events_layer
from mf_pipeline.lib.layers import features as features_layer
from mf_pipeline.lib.layers.indicators import build_indicators
from mf_pipeline.lib.layers.silver import build_silver
from mf_pipeline.lib.settings import Settings

Log = Callable[[str], None]
DERIVED_LAYERS = ("silver", "indicators", "events", "features")
UPSTREAM = {"silver": "bronze", "indicators": "silver", "events": "indicators",
            "features": "events"}
# Columns of Bronze that Silver reads (Bronze also holds raw strings and flags Silver ignores).
BRONZE_INPUT = ("ticker", "exchange", "trade_date", "trade_dt", "open", "high", "low", "close",
                "volume", "openint", "source_line_no", "quality_warn_count")
DEFAULT_BATCH_TICKERS = 500


@dataclass
class LayerStats:
    rows: int = 0
    tickers_written: int = 0
    tickers_removed: int = 0
    seconds: float = 0.0
    min_date: dt.date | None = None
    max_date: dt.date | None = None


@dataclass
class DerivedOutcome:
    layers: dict[str, LayerStats] = field(default_factory=dict)
    seconds: float = 0.0


def storage_dtype(settings: Settings, layer: str) -> pl.DataType:
    """Float storage precision of a layer (arithmetic is always float64)."""
    p = settings.precision
    name = {
        "silver": p.silver_float,
        "indicators": settings.indicators.float_dtype_override or p.silver_float,
        "events": p.gold_float,
        "features": settings.gold_features.float_dtype_override or p.gold_float,
    }[layer]
    return pl.Float32() if name == "float32" else pl.Float64()


def to_storage(frame: pl.DataFrame, dtype: pl.DataType) -> pl.DataFrame:
    """Cast every Float64 column to the storage dtype."""
    if dtype == pl.Float64:
        return frame
    return frame.with_columns(pl.col(pl.Float64).cast(dtype))


def widen(frame: pl.DataFrame) -> pl.DataFrame:
    """Stored float32 values back to float64 for the next layer's arithmetic."""
    return frame.with_columns(pl.col(pl.Float32).cast(pl.Float64))


def _batches(tickers: Sequence[str], size: int) -> Iterator[list[str]]:
    ordered = sorted(tickers)
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def _compute(layer: str, settings: Settings, inputs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    if layer == "silver":
        return build_silver(inputs["bronze"], eps=settings.indicators.eps)
    if layer == "indicators":
        cfg = settings.indicators
        return build_indicators(inputs["silver"], cfg.tmf_period, cfg.proxy_period, cfg.eps)
    if layer == "events":
        params = events_layer.EventParams.from_settings(settings.event_grammar.model_dump())
        return events_layer.build_events(inputs["indicators"], params)
    params = features_layer.FeatureParams.from_settings(settings.gold_features.model_dump())
    return features_layer.build_features(inputs["indicators"], inputs["events"], params)


def _needed_inputs(layer: str) -> tuple[str, ...]:
    return ("indicators", "events") if layer == "features" else (UPSTREAM[layer],)


def file_mtimes(settings: Settings, layer: str) -> dict[str, float]:
    """``{ticker: newest mtime of its files}`` of a per-ticker layer."""
    return lake.file_mtimes(lake.LAYERS[layer].root(settings))


def stale_tickers(settings: Settings, layers: Sequence[str]) -> list[str]:
    """Tickers that need any of ``layers`` rebuilt: the layer file is missing or older than an
    input file, or it exists while an input is gone (a deleted source)."""
    stale: set[str] = set()
    mtimes: dict[str, dict[str, float]] = {}

    def of(layer: str) -> dict[str, float]:
        if layer not in mtimes:
            mtimes[layer] = file_mtimes(settings, layer)
        return mtimes[layer]

    for layer in layers:
        own = of(layer)
        for upstream in _needed_inputs(layer):
            inputs = of(upstream)
            stale.update(t for t, mtime in inputs.items() if own.get(t, -1.0) < mtime)
            stale.update(own.keys() - inputs.keys())
    return sorted(stale)


def _read(settings: Settings, layer: str, tickers: Sequence[str]) -> pl.DataFrame:
    scan = lake.scan_layer(settings, layer, tickers)
    if scan is None:
        return pl.DataFrame()
    if layer == "bronze":
        scan = scan.select(BRONZE_INPUT)
    return widen(scan.collect()).sort(["ticker", "trade_date"])


def run_derived(
    settings: Settings,
    tickers: Sequence[str],
    layers: Sequence[str],
    run_ids: dict[str, str],
    batch_tickers: int = DEFAULT_BATCH_TICKERS,
    inspect: Callable[[str, pl.DataFrame], None] | None = None,
    log: Log = print,
) -> DerivedOutcome:
    """Rebuild ``layers`` (a subset of :data:`DERIVED_LAYERS`) for ``tickers``.

    A ticker without input rows (no valid Bronze bars, or a deleted source) gets its files in
    the rebuilt layers removed, so no layer keeps a stale copy. ``inspect(layer, frame)`` sees
    each written batch (for checks) without the run holding every batch in memory.
    """
    started = time.perf_counter()
    chosen = [layer for layer in DERIVED_LAYERS if layer in layers]
    outcome = DerivedOutcome(layers={layer: LayerStats() for layer in chosen})
    built_ts = dt.datetime.now(dt.UTC)
    batches = list(_batches(tickers, batch_tickers))
    # Files of one batch are written by a background thread while the next batch computes
    # (Numba kernels and the Parquet encoder both release the GIL); at most two batches live.
    with ThreadPoolExecutor(max_workers=1) as writer:
        previous: list[Future[None]] = []
        for number, batch in enumerate(batches, start=1):
            stored: dict[str, pl.DataFrame] = {}
            current: list[Future[None]] = []
            for layer in chosen:
                for needed in _needed_inputs(layer):
                    if needed not in stored:
                        stored[needed] = _read(settings, needed, batch)
                stats = outcome.layers[layer]
                tick = time.perf_counter()
                inputs = {name: stored[name] for name in _needed_inputs(layer)}
                if any(frame.is_empty() for frame in inputs.values()):
                    result = pl.DataFrame()
                else:
                    result = _compute(layer, settings, inputs)
                frame = _storage_frame(settings, layer, result, run_ids[layer], built_ts, stats)
                current.append(writer.submit(_write, settings, layer, frame, batch, stats))
                stored[layer] = widen(frame) if not frame.is_empty() else frame
                if inspect is not None and not frame.is_empty():
                    inspect(layer, frame)
                stats.seconds += time.perf_counter() - tick
            for future in previous:
                future.result()
            previous = current
            if len(batches) > 1:
                log(f"batch {number}/{len(batches)}: {len(batch)} tickers computed")
        for future in previous:
            future.result()
    outcome.seconds = time.perf_counter() - started
    return outcome


def _storage_frame(settings: Settings, layer: str, result: pl.DataFrame, run_id: str,
                   built_ts: dt.datetime, stats: LayerStats) -> pl.DataFrame:
    """The rows as stored (storage precision, run id, build time); counted in ``stats``."""
    if result.is_empty():
        return result
    frame = to_storage(result, storage_dtype(settings, layer)).with_columns(
        run_id=pl.lit(run_id),
        built_ts=pl.lit(built_ts, dtype=pl.Datetime("us", "UTC")),
    )
    stats.rows += frame.height
    low, high = frame["trade_date"].min(), frame["trade_date"].max()
    stats.min_date = low if stats.min_date is None else min(stats.min_date, low)
    stats.max_date = high if stats.max_date is None else max(stats.max_date, high)
    return frame


def _write(settings: Settings, layer: str, frame: pl.DataFrame, batch: Sequence[str],
           stats: LayerStats) -> None:
    """Write one file per ticker of ``frame`` and remove the files of batch tickers without
    rows. Runs on the writer thread, the only one that touches these two counters."""
    root = lake.LAYERS[layer].root(settings)
    written = {}
    if not frame.is_empty():
        written = lake.write_symbol_files(frame, root, settings.parquet,
                                          {"run_id": str(frame["run_id"][0])})
    missing = sorted(set(batch) - set(written))
    stats.tickers_removed += len(lake.remove_symbol_files(root, missing))
    stats.tickers_written += len(written)
