"""Lake reads of the viewer: one ticker's layers joined on ``trade_date``, and the universe.

Every read goes through a ``Reader`` whose arguments (path, mtime, size, columns, ticker)
identify the file's materialization, so the page can wrap it in ``st.cache_data``: a file
rewritten by a new materialization has a new mtime and is read again, anything else comes
from the cache. This module itself does not import Streamlit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib import registry as lake_registry
from mf_pipeline.lib.layers.bronze.qa import symbol_master_paths
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
    def of_parts(cls, parts: list[Path]) -> FileRef:
        """One ticker's lake files (a base and its appended deltas) read as one: a glob path,
        keyed by the newest mtime and the total size."""
        if len(parts) == 1:
            return cls.of(parts[0])
        stats = [part.stat() for part in parts]
        return cls(str(parts[0].parent / lake.PART_GLOB), max(s.st_mtime_ns for s in stats),
                   sum(s.st_size for s in stats))


def read_parquet_columns(
    path: str, mtime_ns: int, size: int, columns: tuple[str, ...], ticker: str | None = None
) -> pl.DataFrame:
    """The ``columns`` of a Parquet file that exist (rows of ``ticker`` when it has a ticker
    column). ``mtime_ns`` and ``size`` are unused here: they key the page's cache."""
    del mtime_ns, size
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


def ticker_glob(root: Path, ticker: str) -> str:
    """The files a per-ticker folder ``root`` holds for ``ticker`` (what the page names when
    there are none)."""
    prefix = ticker[:1] or "*"
    return str(root / "exchange=*" / f"prefix={prefix}" / f"ticker={ticker}" / lake.PART_GLOB)


def lake_file(settings: Settings, layer: str, ticker: str) -> FileRef | None:
    """The ticker's file of a lake layer, or None when that partition is not materialized."""
    if not lake.is_valid_ticker(ticker):
        return None
    files = lake.symbol_files(lake_registry.LAYERS[layer].root(settings), [ticker])
    return FileRef.of_parts(files) if files else None


def optional_file(path: Path, ticker: str) -> FileRef | None:
    """A ticker's file in an optional layer: its hive file, or the long file holding it."""
    if path.is_file():
        return FileRef.of(path)
    if not lake.is_valid_ticker(ticker):
        return None
    files = lake.symbol_files(path, [ticker])
    return FileRef.of_parts(files) if files else None


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
        return None, None, f"no `{ticker_glob(path, ticker)}`"
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
            where = ticker_glob(lake_registry.LAYERS[layer].root(settings), ticker)
            data.notes[layer] = f"`{layer}` is not materialized for {ticker}: no `{where}`"
            continue
        part = read(reader, ref, ("trade_date", *columns))
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
