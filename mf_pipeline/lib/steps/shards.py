"""What each ticker shard holds in a layer, and which tickers a run may be asked for. Dagster-free.

The per-ticker assets report figures per shard (``lib/partitions.py``), and those figures are
the lake's state after the run, not only what the run wrote: a shard a partial run did not touch
still shows its true size, and an empty shard says it is empty. One folder walk (names, sizes,
mtimes) finds each shard's tickers and files. Reading every file would cost ~0.2 ms per file
(tens of seconds on 8,000 tickers with their delta files), so each file's rows and date range
are kept in a small cache keyed by path, size and mtime: a run reads only the files written
since the last one.

A ticker list given to a run (the CLI's planned list, or the launchpad's ``ticker_work``
config) is checked here against the tickers the lake knows, so a typo fails the run with the
close matches instead of silently doing nothing.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import string
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.partitions import OTHER_SHARD, SHARD_KEYS, shard_of
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.bronze_step import paths


def shard_expr(ticker: pl.Expr) -> pl.Expr:
    """:func:`partitions.shard_of` as a Polars expression (vectorised)."""
    first = ticker.str.slice(0, 1).str.to_uppercase()
    return (pl.when(first.is_in(list(string.ascii_uppercase))).then(first)
            .otherwise(pl.lit(OTHER_SHARD)))


@dataclass(frozen=True)
class ShardState:
    """One shard of a layer as stored: its tickers, rows and trade-date range."""

    tickers: tuple[str, ...] = ()
    rows: int = 0
    min_date: dt.date | None = None
    max_date: dt.date | None = None
    unreadable: tuple[str, ...] = ()
    """Files that could not be read (their rows are not counted)."""


FIGURES_SCHEMA = {"file": pl.String, "size": pl.Int64, "mtime_ns": pl.Int64,
                  "rows": pl.Int64, "low": pl.Date, "high": pl.Date}
"""The figures cache: per data file (path under the layer folder, size, mtime in ns) its rows
and trade-date range, so no file is read twice for them."""


def figures_path(settings: Settings, layer: str) -> Path:
    """The figures cache of a layer: ``<tier root>/_figures/<layer>.parquet``."""
    return lake.LAYERS[layer].root(settings).parent / "_figures" / f"{layer}.parquet"


@dataclass
class LakeFiles:
    """The data files of a layer's tickers in some shards (one folder walk, no file opened)."""

    root: Path
    shards: frozenset[str]
    files: pl.DataFrame
    """One row per data file: ``file`` (path under ``root``), ``shard``, ``ticker``, ``size``,
    ``mtime_ns``."""

    def count(self) -> int:
        return self.files["ticker"].n_unique()

    def any_file(self) -> Path | None:
        return self.root / self.files["file"][0] if self.files.height else None


def lake_files(settings: Settings, layer: str, shards: Iterable[str]) -> LakeFiles:
    """Every data file of ``layer`` whose ticker lies in ``shards``, with its size and mtime."""
    wanted = frozenset(shards)
    root = lake.LAYERS[layer].root(settings)
    skip = len(str(root)) + 1
    rows: list[tuple[str, str, str, int, int]] = []
    for folder in lake.ticker_folders(root, wanted):
        ticker = folder.name.removeprefix("ticker=")
        shard = shard_of(ticker)
        with os.scandir(folder.path) as entries:
            for entry in entries:
                if entry.name.startswith("part-") and entry.name.endswith(".parquet"):
                    stat = entry.stat()
                    rows.append((entry.path[skip:], shard, ticker, stat.st_size,
                                 stat.st_mtime_ns))
    files = pl.DataFrame(rows, orient="row", schema={
        "file": pl.String, "shard": pl.String, "ticker": pl.String, "size": pl.Int64,
        "mtime_ns": pl.Int64}).sort("file")
    return LakeFiles(root, wanted, files)


def shard_states(settings: Settings, layer: str, found: LakeFiles,
                 written: Mapping[str, lake.FileFigures] | None = None
                 ) -> dict[str, ShardState]:
    """``{shard: ShardState}`` for every shard walked (empty ones included).

    Figures of the files this run wrote come from ``written`` (``{path: figures}``, known when
    writing), those of files unchanged since a previous run (same size and mtime) from the
    figures cache; only the others are read (rows from the footers, ``trade_date`` for the
    dates). The cache is then updated, so a nightly append reads no file back.
    """
    cache = figures_path(settings, layer)
    known = _read_cache(cache)
    files = found.files.join(known, on=["file", "size", "mtime_ns"], how="left")
    cached = files["rows"].is_not_null().sum()
    if written:
        skip = len(str(found.root)) + 1
        files = files.update(pl.DataFrame(
            [(path[skip:], *figures) for path, figures in written.items()], orient="row",
            schema={k: FIGURES_SCHEMA[k] for k in ("file", "rows", "low", "high")}), on="file")
    unknown = files.filter(pl.col("rows").is_null())
    fresh, damaged = _read_figures(found.root, unknown["file"].to_list())
    files = files.update(fresh, on="file")
    walked = shard_expr(pl.col("file").str.extract(r"prefix=([^/]+)")).is_in(list(found.shards))
    if cached != files.height or known.filter(walked).height != cached:  # the cache is stale
        figured = files.filter(pl.col("rows").is_not_null()).select(list(FIGURES_SCHEMA))
        lake.write_parquet(pl.concat([known.filter(~walked), figured]).sort("file"), cache)
    per_shard = files.group_by("shard").agg(
        pl.col("ticker").unique().sort(), pl.col("rows").sum(), pl.col("low").min(),
        pl.col("high").max(), pl.col("file").filter(pl.col("file").is_in(damaged)))
    states = {shard: ShardState() for shard in SHARD_KEYS if shard in found.shards}
    for row in per_shard.iter_rows(named=True):
        states[row["shard"]] = ShardState(
            tuple(row["ticker"]), int(row["rows"]), row["low"], row["high"],
            tuple(str(found.root / f) for f in row["file"]))
    return states


def _read_cache(path: Path) -> pl.DataFrame:
    """The figures cache, or an empty one when missing or unreadable (it is rebuilt)."""
    try:
        return pl.read_parquet(path).select(list(FIGURES_SCHEMA)).cast(FIGURES_SCHEMA)
    except Exception:  # noqa: BLE001 - a cache: missing or damaged means read the files
        return pl.DataFrame(schema=FIGURES_SCHEMA)


def _scan(root: Path, files: Sequence[str]) -> pl.DataFrame:
    return (pl.scan_parquet([str(root / f) for f in files], glob=False,
                            hive_partitioning=False, include_file_paths="path")
            .group_by("path").agg(rows=pl.len().cast(pl.Int64),
                                  low=pl.col("trade_date").min(),
                                  high=pl.col("trade_date").max())
            .select(pl.col("path").str.strip_prefix(f"{root}/").alias("file"),
                    "rows", "low", "high")
            .collect())


def _read_figures(root: Path, files: Sequence[str]) -> tuple[pl.DataFrame, list[str]]:
    """``(file, rows, low, high)`` of ``files``, and the files that could not be read: a
    damaged file is named (``mf doctor`` repairs it), it does not fail the run reporting it."""
    empty = pl.DataFrame(schema={k: FIGURES_SCHEMA[k] for k in ("file", "rows", "low", "high")})
    if not files:
        return empty, []
    try:
        return _scan(root, files), []
    except Exception:  # noqa: BLE001 - find the damaged files, file by file
        frames, damaged = [empty], []
        for file in files:
            try:
                frames.append(_scan(root, [file]))
            except Exception:  # noqa: BLE001 - any unreadable file is reported, not raised
                damaged.append(file)
        return pl.concat(frames), damaged


def shard_sums(frame: pl.DataFrame, columns: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{shard: {column: sum}}`` of a frame with a ``ticker`` column (e.g. ledger rows)."""
    if frame.is_empty():
        return {}
    sums = (frame.filter(pl.col("ticker").is_not_null())
            .group_by(shard=shard_expr(pl.col("ticker")))
            .agg(pl.col(c).sum() for c in columns))
    return {row.pop("shard"): {k: int(v) for k, v in row.items()} for row in sums.to_dicts()}


def by_shard(tickers: Iterable[str]) -> dict[str, list[str]]:
    """``{shard: sorted tickers}`` of ``tickers``."""
    out: dict[str, list[str]] = defaultdict(list)
    for ticker in sorted(set(tickers)):
        out[shard_of(ticker)].append(ticker)
    return dict(out)


# ------------------------------------------------------------------- requested ticker lists


class TickerListError(ValueError):
    """A ticker list a run cannot honour: unknown tickers, or tickers outside its shards."""


def known_tickers(settings: Settings, candidates: Iterable[str] = ()) -> set[str]:
    """Tickers the lake knows: named by a file of the current manifest (deleted ones too) or
    holding files in a per-ticker layer. The layers are walked only when ``candidates`` holds
    a ticker the manifest does not name (a cheap answer for the common case)."""
    current = paths(settings).current_manifest
    known: set[str] = set()
    if current.exists():
        known = set(pl.read_parquet(current, columns=["ticker"])["ticker"].drop_nulls())
    if set(candidates) - known:
        for layer in registry.PER_TICKER:
            known.update(folder.name.removeprefix("ticker=")
                         for folder in lake.ticker_folders(lake.LAYERS[layer].root(settings)))
    return known


def checked_tickers(settings: Settings, requested: Iterable[str], shards: Sequence[str]
                    ) -> list[str]:
    """``requested`` (trimmed, upper-cased, sorted) when every ticker is known to the lake and
    lies in one of ``shards``; otherwise a :class:`TickerListError` naming the unknown tickers
    with their close matches, or the shard each outside ticker belongs to."""
    tickers = sorted({t.strip().upper() for t in requested if t.strip()})
    known = known_tickers(settings, tickers)
    unknown = [t for t in tickers if t not in known]
    if unknown:
        ranked = sorted(known)
        hints = []
        for ticker in unknown[:10]:
            close = difflib.get_close_matches(ticker, ranked, n=3, cutoff=0.6)
            hints.append(f"{ticker} (did you mean {', '.join(close)}?)" if close else ticker)
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise TickerListError(
            f"unknown ticker(s): {'; '.join(hints)}{more}. Tickers are the raw file names "
            f"upper-cased without .txt (e.g. AAPL.US); the symbol master lists them all.")
    outside = [t for t in tickers if shard_of(t) not in set(shards)]
    if outside:
        where = "; ".join(f"{t} is in shard {shard_of(t)}" for t in outside[:10])
        ran = ", ".join(s for s in SHARD_KEYS if s in set(shards))
        raise TickerListError(
            f"ticker(s) outside this run's shards ({ran}): {where}. Launch the run on the "
            f"shard of each ticker (the first letter of the ticker, 0 for digits and ^).")
    return tickers
