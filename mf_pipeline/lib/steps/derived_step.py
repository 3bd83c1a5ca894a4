"""Bronze → Silver → indicators → events → features for a set of tickers. Dagster-free.

All selected layers are computed in one pass per batch of tickers, in memory, and each is
written per ticker. Layers that are not selected but needed (e.g. indicators when only events
are rebuilt) are read from the lake. Downstream layers always consume the values *as stored*
(cast to the storage precision), so rebuilding one layer alone gives exactly what a full chain
run gives.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from mf_pipeline.lib import lake, recent_writes, registry
from mf_pipeline.lib.layers.carry import Carry
from mf_pipeline.lib.ordered_runs import sort_by_runs
from mf_pipeline.lib.partitions import shard_of
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps import calc_settings, carry_store

Log = Callable[[str], None]
# Columns of Bronze that Silver reads (Bronze also holds raw strings and flags Silver ignores).
BRONZE_INPUT = ("ticker", "exchange", "trade_date", "trade_dt", "open", "high", "low", "close",
                "volume", "openint", "source_line_no", "quality_warn_count")
DEFAULT_BATCH_TICKERS = 500


@dataclass
class LayerStats:
    """What one run wrote in a layer, per ticker (the assets report it per shard)."""

    rows_written: dict[str, int] = field(default_factory=dict)  # {ticker: rows written}
    removed: set[str] = field(default_factory=set)  # tickers whose rows were removed
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.rows_written.values())


@dataclass
class DerivedOutcome:
    layers: dict[str, LayerStats] = field(default_factory=dict)
    seconds: float = 0.0
    appended: list[str] = field(default_factory=list)  # extended from their carries (new bars)


def storage_dtype(settings: Settings, layer: str) -> pl.DataType:
    """Float storage precision of a layer (arithmetic is always float64)."""
    name = registry.storage_float(settings, layer)
    return pl.Float32() if name == "float32" else pl.Float64()


def to_storage(frame: pl.DataFrame, dtype: pl.DataType) -> pl.DataFrame:
    """Cast every Float64 column to the storage dtype."""
    if dtype == pl.Float64:
        return frame
    return frame.with_columns(pl.col(pl.Float64).cast(dtype))


def widen(frame: pl.DataFrame) -> pl.DataFrame:
    """Stored float32 values back to float64 for the next layer's arithmetic."""
    return frame.with_columns(pl.col(pl.Float32).cast(pl.Float64))


PIPELINE_BATCHES = 4
"""A run of few tickers is still split into this many batches (of at least
``MIN_BATCH_TICKERS``), so one batch's files are written while the next computes instead of
all files being written after the last computation."""
MIN_BATCH_TICKERS = 25


def _batches(tickers: Sequence[str], cap: int) -> Iterator[list[str]]:
    """Batches in shard order, so a batch writes whole shards and a shard few files."""
    ordered = sorted(tickers, key=lambda t: (shard_of(t), t))
    size = max(1, min(cap, max(MIN_BATCH_TICKERS, math.ceil(len(ordered) / PIPELINE_BATCHES))))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def stale_tickers(settings: Settings, layers: Sequence[str]) -> list[str]:
    """Tickers that need any of ``layers`` rebuilt: their stored state in the layer does not
    describe the lake any more — the ticker's rows in the layer or an input differ from when it
    was built (new or rewritten inputs, a deleted source, a run killed between its layer commit
    and its carry commit, a damaged or missing carry) — or the layer's settings changed since
    it was built (then every ticker of the layer and of its inputs). Decided by equality of
    recorded listings, never by comparing times."""
    chosen = [layer for layer in registry.DERIVED if layer in layers]
    names = {name for layer in chosen for name in (layer, *registry.LAYERS[layer].inputs)}
    current = {name: carry_store.listings(settings, name) for name in names}
    stale: set[str] = set()
    for layer in chosen:
        present = set(current[layer]).union(
            *(current[name] for name in registry.LAYERS[layer].inputs))
        if calc_settings.changes(settings, layer) is not None:
            stale |= present
            continue
        records = carry_store.recorded(settings, layer)
        stale |= present - carry_store.described(settings, layer, records, current)
    return sorted(stale)


def _read(settings: Settings, layer: str, tickers: Sequence[str]) -> pl.DataFrame:
    if layer == "bronze":  # written by this process moments ago (one `mf run`)?
        kept = recent_writes.BRONZE.recall(lake.LAYERS[layer].root(settings), sorted(tickers))
        if kept is not None:
            return _in_key_order(widen(kept.select(BRONZE_INPUT)))
    scan = lake.scan_layer(settings, layer, tickers)
    if scan is None:
        return pl.DataFrame()
    if layer == "bronze":
        scan = scan.select(BRONZE_INPUT)
    try:
        frame = scan.collect()
    except Exception as error:
        raise LayerReadError(settings, layer, tickers, error) from error
    return _in_key_order(widen(frame))


def _in_key_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows sorted by (ticker, trade_date): the lake's files hold each ticker's rows as one
    sorted run, so usually only the runs move (one contiguous copy for the kernels)."""
    return sort_by_runs(frame, "ticker", ("trade_date",), rechunk=True)


class LayerReadError(RuntimeError):
    """A layer's files could not be read: names the damaged files and what to do."""

    def __init__(self, settings: Settings, layer: str, tickers: Sequence[str],
                 error: Exception) -> None:
        damaged = []
        for path in lake.snapshot(lake.LAYERS[layer].root(settings)).of(tickers).files():
            try:
                pl.read_parquet_schema(path)
            except Exception:  # noqa: BLE001 - collecting every damaged file to name it
                damaged.append(str(path))
        named = ", ".join(damaged[:5]) + (f" (+{len(damaged) - 5} more)" if len(damaged) > 5
                                          else "")
        super().__init__(f"cannot read the {layer} layer: {named or error}. Run `mf doctor "
                         f"--repair` (or `mf run --full`) to rebuild damaged files "
                         f"from their sources.")


def run_derived(
    settings: Settings,
    tickers: Sequence[str],
    layers: Sequence[str],
    run_ids: dict[str, str],
    batch_tickers: int = DEFAULT_BATCH_TICKERS,
    inspect: Callable[[str, pl.DataFrame], bool] | None = None,
    log: Log = print,
) -> DerivedOutcome:
    """Rebuild ``layers`` (a subset of :data:`registry.DERIVED`) for ``tickers``.

    When the whole chain is rebuilt, tickers whose only change is new Bronze bars after what
    every layer already processed take the append path: only the new rows are computed, from
    the stored carries, and written as delta files (bit-identical to a full rebuild). Every
    other ticker is rebuilt in full, in batches of at most ``batch_tickers``. A ticker without
    input rows (no valid Bronze bars, or a deleted source) gets its files in the rebuilt layers
    removed, so no layer keeps a stale copy. ``inspect(layer, frame)`` sees each written batch
    (for checks) without the run holding every batch in memory, and says whether it passed; a
    layer that failed keeps no stored state for the run's tickers, so they stay stale.
    """
    started = time.perf_counter()
    chosen = [layer for layer in registry.DERIVED if layer in layers]
    run = _Run(settings, chosen, run_ids, inspect,
               DerivedOutcome(layers={layer: LayerStats() for layer in chosen}))
    new, full = pl.DataFrame(), sorted(tickers)
    changed = calc_settings.changed_layers(settings, chosen)
    for layer, lines in changed.items():
        log(f"{layer}: settings changed since its files were built ({'; '.join(lines)}): "
            "rebuilt in full")
    if chosen == list(registry.CARRIED) and tickers and not changed:
        appendable, full = carry_store.split_appendable(settings, tickers)
        if appendable.height:
            new = carry_store.new_bronze_rows(settings, appendable, BRONZE_INPUT)
        # Stale without new bars (e.g. one layer rebuilt alone): rebuilt in full, once.
        extended = set(new["ticker"].unique()) if new.height else set()
        full = sorted({*full, *(set(appendable["ticker"]) - extended)})
    batches = list(_batches(full, batch_tickers))
    # Files of one batch are written by a background thread while the next batch computes
    # (Numba kernels and the Parquet encoder both release the GIL); at most two batches live.
    with ThreadPoolExecutor(max_workers=1) as writer:
        run.writer = writer
        if new.height:
            run.batch(sorted(new["ticker"].unique()), {"bronze": widen(new)}, append=True)
            run.outcome.appended = sorted(new["ticker"].unique())
            log(f"append path: {len(run.outcome.appended)} tickers extended by "
                f"{new.height} new bars")
        for number, batch in enumerate(batches, start=1):
            run.batch(batch, {}, append=False)
            if len(batches) > 1:
                log(f"batch {number}/{len(batches)}: {len(batch)} tickers computed")
        run.drain()
    for layer in chosen:
        failed = layer in run.failed  # a failed check: no stored state, rebuilt and re-checked
        carry_store.save(settings, layer, run.carries[layer], full,
                         forget=tickers if failed else ())
        if failed:
            log(f"{layer}: the sanity check failed; its {len(tickers)} tickers stay stale and "
                "are rebuilt and checked again on the next run")
        calc_settings.record(settings, layer, tickers)
    run.outcome.seconds = time.perf_counter() - started
    return run.outcome


@dataclass
class _Run:
    """The state of one :func:`run_derived` call shared by its batches."""

    settings: Settings
    chosen: list[str]
    run_ids: dict[str, str]
    inspect: Callable[[str, pl.DataFrame], bool] | None
    outcome: DerivedOutcome
    built_ts: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    writer: ThreadPoolExecutor | None = None
    pending: list[Future[None]] = field(default_factory=list)
    carries: dict[str, list[Carry]] = field(default_factory=lambda: defaultdict(list))
    failed: set[str] = field(default_factory=set)

    def batch(self, tickers: list[str], stored: dict[str, pl.DataFrame], append: bool) -> None:
        """Compute the chosen layers for ``tickers``: from ``stored`` inputs (the new rows on
        the append path) or, for inputs not given, from the lake (full rebuild)."""
        assert self.writer is not None
        current: list[Future[None]] = []
        last_use = {name: position for position, layer in enumerate(self.chosen)
                    for name in registry.LAYERS[layer].inputs}
        for position, layer in enumerate(self.chosen):
            for needed in registry.LAYERS[layer].inputs:
                if needed not in stored:
                    stored[needed] = (pl.DataFrame() if append
                                      else _read(self.settings, needed, tickers))
            stats = self.outcome.layers[layer]
            tick = time.perf_counter()
            inputs = {name: stored[name] for name in registry.LAYERS[layer].inputs}
            result = pl.DataFrame()
            if not any(frame.is_empty() for frame in inputs.values()):
                carry_in = carry_store.load(self.settings, layer, tickers) if append else None
                result, carry = registry.compute(layer, self.settings, inputs, carry_in)
                self.carries[layer].append(carry)
            frame = _storage_frame(self.settings, layer, result, self.run_ids[layer],
                                   self.built_ts, stats)
            del inputs, result  # the float64 rows: freed before the next layer computes
            current.append(self.writer.submit(_write, self.settings, layer, frame,
                                              [] if append else tickers, stats, append))
            # an input no later layer reads is dropped, an output only kept for a later reader
            for name in [name for name in stored if last_use.get(name, -1) <= position]:
                del stored[name]
            if last_use.get(layer, -1) > position:
                stored[layer] = widen(frame) if not frame.is_empty() else frame
            if self.inspect is not None and not frame.is_empty() \
                    and not self.inspect(layer, frame):
                self.failed.add(layer)
            stats.seconds += time.perf_counter() - tick
        self.drain()
        self.pending = current

    def drain(self) -> None:
        for future in self.pending:
            future.result()
        self.pending = []


def _storage_frame(settings: Settings, layer: str, result: pl.DataFrame, run_id: str,
                   built_ts: dt.datetime, stats: LayerStats) -> pl.DataFrame:
    """The rows as stored (storage precision, run id, build time); counted in ``stats``."""
    if result.is_empty():
        return result
    frame = to_storage(result, storage_dtype(settings, layer)).with_columns(
        run_id=pl.lit(run_id),
        built_ts=pl.lit(built_ts, dtype=pl.Datetime("us", "UTC")),
    )
    stats.rows_written.update(frame.group_by("ticker").len().iter_rows())
    return frame


def _write(settings: Settings, layer: str, frame: pl.DataFrame, batch: Sequence[str],
           stats: LayerStats, append: bool) -> None:
    """Commit the rows of ``frame`` (appended bars when ``append``) and drop the rows of
    ``batch`` tickers without new rows, in one commit. Runs on the writer thread, the only one
    that touches ``stats.removed``."""
    written = set(frame["ticker"].unique().to_list()) if not frame.is_empty() else set()
    missing = sorted(set(batch) - written)
    if frame.is_empty() and not missing:
        return
    run_id = {"run_id": str(frame["run_id"][0])} if not frame.is_empty() else None
    done = lake.write_symbol_files(frame, lake.LAYERS[layer].root(settings), settings.parquet,
                                   run_id, append=append, remove=missing)
    stats.removed.update(done.removed)
