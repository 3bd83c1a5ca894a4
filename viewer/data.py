"""Lake reads of the viewer: one ticker's layers joined on ``trade_date``, and the universe.

Every read goes through a ``Reader`` whose arguments (path, stamp, size, columns, ticker)
identify the data's materialization, so the page can wrap it in ``st.cache_data``: a file
rewritten by a new materialization has a new mtime, a lake layer a new commit generation, and
is read again; anything else comes from the cache. This module itself does not import
Streamlit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from mf_pipeline.lib import lake, lake_table
from mf_pipeline.lib import registry as lake_registry
from mf_pipeline.lib.layers.bronze.qa import symbol_master_paths
from mf_pipeline.lib.partitions import shard_of
from mf_pipeline.lib.settings import Settings
from viewer.registry import LAKE_COLUMNS, OPTIONAL_LAYERS, OptionalLayer
from viewer.sources import optional_layer_paths

Reader = Callable[[str, int, int, tuple[str, ...], str | None], pl.DataFrame]
STATE_STATS = "hmm_state_stats"
READ_LAYERS: tuple[str, ...] = tuple(
    name for name in lake_registry.PER_TICKER if name in LAKE_COLUMNS)
"""The per-ticker layers the page reads, in the registry's dependency order (Bronze first);
the ones "Compute this ticker" fills when missing."""


@dataclass(frozen=True)
class FileRef:
    """A file and its materialization stamp (the cache key of its reads)."""

    path: str
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: Path) -> FileRef:
        stat = path.stat()
        return cls(str(path), stat.st_mtime_ns, stat.st_size)

    @classmethod
    def of_lake(cls, root: Path, ticker: str) -> FileRef | None:
        """A ticker's rows in a lake table (``lib/lake_table.py``): the table's folder, keyed
        by its commit generation and the ticker's row count; None when it has no rows."""
        snapshot = lake.snapshot(root).of([ticker])
        if snapshot.is_empty:
            return None
        return cls(str(root), snapshot.generation, int(snapshot.index["rows"].sum()))


def read_parquet_columns(
    path: str, mtime_ns: int, size: int, columns: tuple[str, ...], ticker: str | None = None
) -> pl.DataFrame:
    """The ``columns`` of a Parquet file or lake table that exist (rows of ``ticker`` when it
    has a ticker column). ``mtime_ns`` and ``size`` are unused here: they key the page's
    cache."""
    del mtime_ns, size
    if ticker is not None and lake_table.is_table(Path(path)):
        return lake.read_tickers(Path(path), [ticker], columns)
    scan = pl.scan_parquet(path)
    schema = scan.collect_schema()
    if ticker is not None and "ticker" in schema:
        scan = scan.filter(pl.col("ticker") == ticker)
    return scan.select([c for c in dict.fromkeys(columns) if c in schema]).collect()


def read(reader: Reader, ref: FileRef, columns: tuple[str, ...], ticker: str | None = None
         ) -> pl.DataFrame:
    return reader(ref.path, ref.mtime_ns, ref.size, columns, ticker)


def load_universe(settings: Settings, reader: Reader = read_parquet_columns) -> list[str]:
    """Sorted upper-case tickers of the symbol master; the Bronze folders when it is absent."""
    master, _csv = symbol_master_paths(settings.bronze_root)
    if master.exists():
        frame = read(reader, FileRef.of(master), ("ticker",))
        if "ticker" in frame.columns:
            return frame["ticker"].drop_nulls().str.to_uppercase().unique().sort().to_list()
    bronze = lake_registry.LAYERS["bronze"].root(settings)
    return [t.upper() for t in lake.symbol_tickers(bronze)]


def ticker_place(root: Path, ticker: str) -> str:
    """Where a lake table ``root`` would hold ``ticker`` (what the page names when it has no
    rows there)."""
    shard = shard_of(ticker) if ticker else "?"
    return str(root / f"shard={shard}")


def lake_file(settings: Settings, layer: str, ticker: str) -> FileRef | None:
    """The ticker's rows of a lake layer, or None when it has none."""
    if not lake.is_valid_ticker(ticker):
        return None
    return FileRef.of_lake(lake_registry.LAYERS[layer].root(settings), ticker)


def optional_file(path: Path, ticker: str) -> FileRef | None:
    """A ticker's data in an optional layer: the long file holding it, or a lake table."""
    if path.is_file():
        return FileRef.of(path)
    if not lake.is_valid_ticker(ticker) or not lake_table.is_table(path):
        return None
    return FileRef.of_lake(path, ticker)


@dataclass
class TickerData:
    """One ticker's rows (Bronze bars + every available layer's columns, by date)."""

    ticker: str
    frame: pl.DataFrame
    files: dict[str, FileRef | None] = field(default_factory=dict)
    available: dict[str, bool] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # layer -> why it is unavailable
    state_scores: pl.DataFrame | None = None  # the HMM model's own per-state statistics

    @property
    def has_bars(self) -> bool:
        return self.frame.height > 0


def _on_dates(part: pl.DataFrame) -> pl.DataFrame:
    """``trade_date`` as Date, one row per date (a layer never holds two rows of a date)."""
    part = part.with_columns(pl.col("trade_date").cast(pl.Date))
    return part.unique(subset="trade_date", keep="last", maintain_order=True)


def _join(base: pl.DataFrame, part: pl.DataFrame) -> pl.DataFrame:
    extra = [c for c in part.columns if c != "trade_date" and c not in base.columns]
    if not extra:
        return base
    return base.join(_on_dates(part.select("trade_date", *extra)), on="trade_date", how="left")


def _optional_layer(
    reader: Reader, layer: OptionalLayer, path: Path, ticker: str
) -> tuple[pl.DataFrame | None, FileRef | None, str | None]:
    ref = optional_file(path, ticker)
    if ref is None:
        if not path.exists():
            return None, None, f"nothing at `{path}`"
        return None, None, f"no rows in `{ticker_place(path, ticker)}`"
    columns = ("trade_date", *layer.columns)
    if layer.loader is not None:
        part = layer.loader(Path(ref.path), ticker, columns)
    else:
        part = read(reader, ref, columns, ticker)
    if part is None or part.is_empty() or "trade_date" not in part.columns:
        return None, ref, f"no rows for {ticker} in `{ref.path}`"
    if not any(c in part.columns for c in layer.required):
        return None, ref, f"none of the columns {list(layer.required)} in `{ref.path}`"
    return part, ref, None


def load_state_scores(
    settings: Settings, ticker: str, reader: Reader = read_parquet_columns
) -> pl.DataFrame | None:
    """The HMM model's own per-state statistics (``state, score``), when an HMM run wrote them
    (optional layer ``hmm_state_stats``; a ``ticker`` column, if any, selects the ticker)."""
    ref = optional_file(optional_layer_paths(settings)[STATE_STATS], ticker)
    if ref is None:
        return None
    stats = read(reader, ref, ("state", "score"), ticker)
    if not {"state", "score"} <= set(stats.columns) or stats.is_empty():
        return None
    return stats.select(pl.col("state").cast(pl.Int64), pl.col("score").cast(pl.Float64))


def load_ticker(settings: Settings, ticker: str, reader: Reader = read_parquet_columns
                ) -> TickerData:
    """Read a ticker's Bronze bars and left-join every available layer onto them."""
    data = TickerData(ticker, pl.DataFrame())
    paths = optional_layer_paths(settings)
    for layer in READ_LAYERS:
        columns = LAKE_COLUMNS[layer]
        ref = lake_file(settings, layer, ticker)
        data.files[layer] = ref
        if ref is None:
            data.available[layer] = False
            where = ticker_place(lake_registry.LAYERS[layer].root(settings), ticker)
            data.notes[layer] = f"`{layer}` is not materialized for {ticker}: no rows in `{where}`"
            continue
        part = read(reader, ref, ("trade_date", *columns), ticker)
        if layer == "bronze":
            data.frame = _on_dates(part).sort("trade_date")
            data.available[layer] = data.frame.height > 0
        elif data.frame.height:
            missing = [c for c in columns if c not in part.columns]
            data.frame = _join(data.frame, part)
            data.available[layer] = len(missing) < len(columns)
            if missing:
                data.notes[layer] = f"`{layer}` lacks columns {missing} in `{ref.path}`"
    for layer in OPTIONAL_LAYERS:
        if layer.frame_loader is not None:  # not a per-ticker file (candidates)
            ref = None
            part, why = layer.frame_loader(settings, ticker, reader)
        else:
            part, ref, why = _optional_layer(reader, layer, paths[layer.name], ticker)
        data.files[layer.name] = ref
        data.available[layer.name] = part is not None and data.frame.height > 0
        if part is None:
            data.notes[layer.name] = f"{layer.label}: {why}"
        elif data.frame.height:
            data.frame = _join(data.frame, part)
    data.state_scores = load_state_scores(settings, ticker, reader)
    return data
