"""The lake on disk: dataset paths, safe ticker path parts, atomic writes and readers.

Per-ticker layers live hive-style, as in the old tool:
``<layer_root>/<dataset>/exchange=<EX>/prefix=<P>/ticker=<TICKER>/part-000.parquet``.
Every write goes to a hidden temp file in the target folder and is renamed over the target, so a
killed run never leaves a half-written file and a rerun simply replaces what it finds. The temp
file's name carries its writer (``.<name>.w<pid>-<start>-<host>-<random>.tmp``): a killed
writer's leftovers are recognised as such and removed by :func:`sweep_temp_files` (the lake lock
runs it after a run was killed, ``lib/lake_lock.py``), never a live writer's.

A ticker folder holds its base file ``part-000.parquet`` and, after nightly appends, delta files
``part-d<YYYYMMDD>.parquet`` named after the first trade date they hold: they sort after the base
and in date order, and re-running the same append rewrites the same file (idempotent). Readers
take every ``part-*.parquet`` of the folder; a full rewrite removes the deltas, and an append
that would exceed ``max_parts`` files compacts the folder back into one base file.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import hashlib
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import registry
from mf_pipeline.lib.partitions import shard_of
from mf_pipeline.lib.settings import ParquetSettings, Settings

PART_FILE = "part-000.parquet"
PART_GLOB = "part-*.parquet"
DELTA_FILE_RE = r"part-d\d{8}\.parquet$"
DEFAULT_MAX_PARTS = 8
_TICKER_RE = re.compile(r"^[A-Z0-9^](?:[A-Z0-9_\-^=]|\.(?!\.))*$")
_MAX_TICKER_LEN = 32


LAYERS: dict[str, registry.LayerSpec] = {name: registry.LAYERS[name]
                                         for name in registry.PER_TICKER}
"""The per-ticker layers (see ``lib/registry.py``), each with ``root(settings)``."""


def is_valid_ticker(ticker: str | None) -> bool:
    """True when ``ticker`` can be a partition key and a single path part.

    Upper-case letters, digits and ``. _ - ^ =`` only; no separators, no ``..``, no ``,`` or
    ``|`` (Dagster partition keys reserve them), at most 32 characters.
    """
    return (
        ticker is not None
        and 0 < len(ticker) <= _MAX_TICKER_LEN
        and ticker.isascii()
        and _TICKER_RE.fullmatch(ticker) is not None
    )


def ticker_from_file_name(name: str) -> str:
    """The ticker hint of a raw file name: ``aapl.us.txt`` -> ``AAPL.US`` (old-tool rule).

    Only an ASCII name is upper-cased: Unicode case mapping and whitespace turn look-alikes
    (``ſpy``, ``ıbm``, ``ﬁx``, a no-break space) into real tickers (``SPY``, ``IBM``, ``FIX``),
    so any other name is returned as it is, which ``is_valid_ticker`` refuses.
    """
    if not name.isascii():
        return name
    stem = name.strip()
    if stem.lower().endswith(".txt"):
        stem = stem[:-4]
    return stem.strip().upper()


_EXCHANGE_RE = re.compile(r"[A-Z0-9_]+")


def symbol_dir(layer_root: Path, exchange: str, ticker: str) -> Path:
    """The hive folder of one ticker; refuses any ticker that could escape the lake.

    Both parts are validated character by character (no separator, no ``..``), so the path
    cannot leave ``layer_root``; no filesystem call is needed (this runs once per file write).
    """
    if not is_valid_ticker(ticker):
        raise ValueError(f"unsafe ticker for a lake path: {ticker!r}")
    exchange = (exchange or "UNKNOWN").strip().upper() or "UNKNOWN"
    if not _EXCHANGE_RE.fullmatch(exchange):
        raise ValueError(f"unsafe exchange for a lake path: {exchange!r}")
    return layer_root / f"exchange={exchange}" / f"prefix={ticker[0]}" / f"ticker={ticker}"


def symbol_file(layer_root: Path, exchange: str, ticker: str) -> Path:
    return symbol_dir(layer_root, exchange, ticker) / PART_FILE


_TEMP_RE = re.compile(
    r"^\.(?P<name>.+)\.w(?P<pid>\d+)-(?P<start>\d+)-(?P<host>[0-9a-f]{6})-[0-9a-f]{8}\.tmp$")
_LEGACY_TEMP_RE = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")
LEGACY_TEMP_AGE_SECONDS = 3600.0
"""Temp files named before writers were recorded (``.<name>.<uuid>.tmp``) cannot be traced to a
process: they are removed once this old (no write takes an hour)."""


def _process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), None when
    there is no such process (or it is a zombie), 0 when ``/proc`` is not available."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except FileNotFoundError:
        if not os.path.isdir("/proc/self"):
            return 0
        return None
    except OSError:
        return 0
    fields = stat[stat.rindex(b")") + 2:].split()  # after "(comm)", which may hold spaces
    if fields[0] in (b"Z", b"X"):  # a zombie or dead process: its writes are over
        return None
    return int(fields[19])


@functools.cache
def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


_WRITER = ""


def writer_tag() -> str:
    """``w<pid>-<start>-<host>`` of this process (recomputed after a fork)."""
    global _WRITER
    pid = os.getpid()
    if not _WRITER.startswith(f"w{pid}-"):
        _WRITER = f"w{pid}-{_process_start(pid) or 0}-{_host_tag()}"
    return _WRITER


def _temp_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.{writer_tag()}-{uuid.uuid4().hex[:8]}.tmp")


def writer_alive(pid: int, start: int, host: str) -> bool:
    """Whether the process that named a temp file may still be writing it.

    True for another host's writer (its processes cannot be checked from here) and for a process
    with that pid and start time; False when the pid is gone, a zombie, or was reused by a later
    process (its start time differs).
    """
    if host != _host_tag():
        return True
    now = _process_start(pid)
    if now is None:
        return False
    if now == 0 or start == 0:  # no /proc: fall back to "does the pid exist"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return now == start


def is_stale_temp(name: str, mtime: float | None = None, now: float | None = None) -> bool:
    """True when ``name`` is an atomic-write temp file whose writer is gone."""
    match = _TEMP_RE.match(name)
    if match is not None:
        return not writer_alive(int(match["pid"]), int(match["start"]), match["host"])
    if _LEGACY_TEMP_RE.match(name) and mtime is not None:
        return (now if now is not None else time.time()) - mtime > LEGACY_TEMP_AGE_SECONDS
    return False


def temp_files(roots: Iterable[Path]) -> Iterator[os.DirEntry[str]]:
    """Every atomic-write temp file (``.*.tmp``) under ``roots``, in one ``os.scandir`` walk
    (symlinked folders are not followed; a root inside another is walked once)."""
    tops = sorted({Path(root).absolute() for root in roots})
    tops = [top for top in tops if not any(other in top.parents for other in tops)]
    stack = [str(top) for top in tops]
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError:  # missing, or removed under us
            continue
        with entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") and name.endswith(".tmp"):
                    yield entry
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)


@dataclass
class SweepOutcome:
    removed: list[Path]
    kept: list[Path]
    """Temp files of writers that may still be running (left alone)."""
    seconds: float


def sweep_temp_files(roots: Iterable[Path]) -> SweepOutcome:
    """Remove the temp files of dead writers under ``roots``; keep live writers' files."""
    started = time.perf_counter()
    removed: list[Path] = []
    kept: list[Path] = []
    now = time.time()
    for entry in temp_files(roots):
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if is_stale_temp(entry.name, mtime, now):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(Path(entry.path))
        else:
            kept.append(Path(entry.path))
    return SweepOutcome(removed, kept, time.perf_counter() - started)


@contextmanager
def atomic_target(target: Path) -> Iterator[Path]:
    """Yield a temp path next to ``target``; rename it over ``target`` only on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path(target)
    try:
        yield temp
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def write_parquet(
    frame: pl.DataFrame,
    target: Path,
    parquet: ParquetSettings | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Atomically write ``frame`` with the configured compression and key-value metadata."""
    parquet = parquet or ParquetSettings()
    level = parquet.compression_level if parquet.compression in ("zstd", "gzip", "brotli") else None
    compression = "uncompressed" if parquet.compression == "none" else parquet.compression
    with atomic_target(target) as temp:
        frame.write_parquet(
            temp,
            compression=compression,
            compression_level=level,
            statistics=parquet.statistics,
            metadata=metadata,
        )
    return target


def write_text(text: str, target: Path) -> Path:
    with atomic_target(target) as temp:
        temp.write_text(text, encoding="utf-8")
    return target


def write_json(payload: Any, target: Path) -> Path:
    """JSON artifact in the old tool's style: indent 2, sorted keys, ``str()`` for the rest."""
    return write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", target)


def write_csv(frame: pl.DataFrame, target: Path) -> Path:
    with atomic_target(target) as temp:
        frame.write_csv(temp)
    return target


@contextmanager
def file_lock(target: Path) -> Iterator[None]:
    """An exclusive advisory lock for read-modify-write of a shared table (ledger, rejects)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upsert_parquet(
    target: Path,
    new_rows: pl.DataFrame,
    key: str,
    replace_keys: Iterable[str] | None = None,
    parquet: ParquetSettings | None = None,
    sort_by: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Replace the rows of ``target`` whose ``key`` is in ``replace_keys`` (default: the keys of
    ``new_rows``) by ``new_rows``; keep every other row. Locked, atomic, idempotent."""
    replace = set(replace_keys) if replace_keys is not None else set(new_rows[key].to_list())
    with file_lock(target):
        if target.exists():
            old = pl.read_parquet(target)
            kept = old.filter(~pl.col(key).is_in(list(replace)))
            merged = pl.concat([kept, new_rows], how="diagonal_relaxed")
        else:
            merged = new_rows
        if sort_by:
            merged = merged.sort(sort_by)
        write_parquet(merged, target, parquet)
    return merged


def delta_name(first_date: Any) -> str:
    """File name of a delta holding rows from ``first_date`` on (sorts after the base)."""
    return f"part-d{first_date:%Y%m%d}.parquet"


def delta_date(name: str) -> dt.date:
    """The first date a delta file holds, from its name (``part-d20260102.parquet``)."""
    return dt.datetime.strptime(name[len("part-d"):len("part-d") + 8], "%Y%m%d").date()


def ticker_parts(folder: Path) -> list[Path]:
    """The data files of one ticker folder in read order (base first, then deltas by date)."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries
                     if e.name.startswith("part-") and e.name.endswith(".parquet")]
    except FileNotFoundError:
        return []
    return [folder / name for name in sorted(names)]


def _replace_ticker(part: pl.DataFrame, folder: Path, parquet: ParquetSettings | None,
                    metadata: dict[str, str] | None) -> Path:
    """Write ``part`` as the folder's base file, then remove its deltas.

    A kill in between leaves deltas older than the base: :func:`inconsistent_tickers` finds
    them and the next run rebuilds that ticker, so rows are never lost nor silently doubled.
    """
    target = write_parquet(part, folder / PART_FILE, parquet, metadata)
    for old in ticker_parts(folder):
        if old.name != PART_FILE:
            old.unlink()
    return target


def _append_ticker(part: pl.DataFrame, folder: Path, parquet: ParquetSettings | None,
                   metadata: dict[str, str] | None, max_parts: int) -> Path:
    """Add ``part`` as the delta file named after its first date (rewriting that same file
    when a killed append is re-run). A folder that would exceed ``max_parts`` files first
    has its old files compacted into the base."""
    target = folder / delta_name(part["trade_date"][0])
    older = [p for p in ticker_parts(folder) if p != target]
    if not older:
        return write_parquet(part, folder / PART_FILE, parquet, metadata)
    if len(older) + 1 > max_parts:
        _replace_ticker(pl.read_parquet(older), folder, parquet, metadata)
    return write_parquet(part, target, parquet, metadata)


def write_symbol_files(
    frame: pl.DataFrame,
    layer_root: Path,
    parquet: ParquetSettings | None = None,
    metadata: dict[str, str] | None = None,
    threads: int = 4,
    on_written: Callable[[int], None] | None = None,
    append: bool = False,
    max_parts: int = DEFAULT_MAX_PARTS,
    keep: Callable[[str, Path, pl.DataFrame], None] | None = None,
) -> dict[str, Path]:
    """Write the rows of each ticker of a long frame (must hold ``ticker`` and ``exchange``).

    By default each ticker's folder is replaced by one file. With ``append`` the rows are new
    bars after the stored ones and go to a delta file (see the module docstring). Tickers are
    written by a small thread pool: the Parquet encoder releases the GIL, so this overlaps
    compression with I/O. ``keep(ticker, path, rows)`` is called once each file is in place
    (e.g. :meth:`RecentWrites.remember`). Returns ``{ticker: path written}``.
    """
    if frame.is_empty():
        return {}
    parts = frame.partition_by(["ticker"], as_dict=True, maintain_order=True)

    def write_one(item: tuple[tuple[Any, ...], pl.DataFrame]) -> tuple[str, Path]:
        (ticker,), part = item
        folder = symbol_dir(layer_root, part["exchange"][0], ticker)
        if append:
            return ticker, _append_ticker(part, folder, parquet, metadata, max_parts)
        path = _replace_ticker(part, folder, parquet, metadata)
        if keep is not None:
            keep(ticker, path, part)
        return ticker, path

    written: dict[str, Path] = {}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for ticker, path in pool.map(write_one, parts.items()):
            written[ticker] = path
            if on_written is not None:
                on_written(len(written))
    return written


FileFigures = tuple[int, dt.date | None, dt.date | None]
"""Rows, first and last trade date of a data file."""


def file_figures(frame: pl.DataFrame, written: dict[str, Path]) -> dict[str, FileFigures]:
    """``{path: figures}`` of the files :func:`write_symbol_files` just wrote from ``frame``
    (each holds exactly its ticker's rows of ``frame``), so they need not be read back."""
    if frame.is_empty():
        return {}
    per_ticker = frame.group_by("ticker").agg(pl.len(), pl.col("trade_date").min().alias("low"),
                                              pl.col("trade_date").max().alias("high"))
    return {str(written[ticker]): (rows, low, high)
            for ticker, rows, low, high in per_ticker.iter_rows() if ticker in written}


def remove_symbol_files(layer_root: Path, tickers: Iterable[str]) -> list[Path]:
    """Delete every file of ``tickers`` in any exchange folder (used for deleted sources)."""
    removed = []
    for path in symbol_files(layer_root, tickers):
        path.unlink()
        removed.append(path)
    return removed


def _ticker_of(path: Path) -> str:
    return path.parent.name.removeprefix("ticker=")


def symbol_files(layer_root: Path, tickers: Iterable[str] | None = None) -> list[Path]:
    """Existing per-ticker data files of a layer (all parts), optionally only for ``tickers``,
    sorted by path (so each ticker's base comes before its deltas)."""
    if not layer_root.is_dir():
        return []
    if tickers is None:
        return sorted(layer_root.glob(f"exchange=*/prefix=*/ticker=*/{PART_GLOB}"))
    wanted = {t for t in tickers if is_valid_ticker(t)}
    if not wanted:
        return []
    prefixes = sorted({t[0] for t in wanted})
    files = [
        path
        for prefix in prefixes
        for path in layer_root.glob(f"exchange=*/prefix={prefix}/ticker=*/{PART_GLOB}")
        if _ticker_of(path) in wanted
    ]
    return sorted(files)


def symbol_tickers(layer_root: Path) -> list[str]:
    """The tickers that have files in a layer, sorted."""
    return sorted(folder_times(layer_root))


@dataclass(frozen=True)
class FolderTimes:
    """The mtimes of one ticker folder's files (what staleness and append checks need)."""

    newest: float
    base: float | None  # part-000.parquet, None when the folder has no base
    oldest_delta: float | None  # the oldest part-d*.parquet, None without deltas

    @property
    def consistent(self) -> bool:
        """False when a delta is older than the base (a killed full rewrite) or has no base."""
        if self.oldest_delta is None:
            return True
        return self.base is not None and self.oldest_delta >= self.base


def _scan_dirs(folder: str, prefix: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        yield from (e for e in entries if e.name.startswith(prefix) and e.is_dir())


def folder_times(layer_root: Path) -> dict[str, FolderTimes]:
    """``{ticker: FolderTimes}`` of every ticker folder of a layer, in one directory walk
    (``os.scandir``: ~10x faster than globbing and stat-ing paths, which matters at 8,000
    tickers x several parts x 5 layers every run)."""
    out: dict[str, FolderTimes] = {}
    if not layer_root.is_dir():
        return out
    for exchange in _scan_dirs(str(layer_root), "exchange="):
        for prefix in _scan_dirs(exchange.path, "prefix="):
            for folder in _scan_dirs(prefix.path, "ticker="):
                times = _times_of(folder.path)
                if times is not None:
                    out[folder.name.removeprefix("ticker=")] = times
    return out


def _times_of(folder: str) -> FolderTimes | None:
    base = None
    deltas = []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith("part-") and name.endswith(".parquet")):
                continue
            mtime = entry.stat().st_mtime
            if name == PART_FILE:
                base = mtime
            else:
                deltas.append(mtime)
    if base is None and not deltas:
        return None
    return FolderTimes(max([*deltas, base or 0.0]), base, min(deltas) if deltas else None)


def inconsistent_tickers(layer_root: Path) -> list[str]:
    """Tickers whose folder holds a delta older than its base: a full rewrite was killed
    between writing the base and removing the deltas. They must be rebuilt."""
    return sorted(t for t, times in folder_times(layer_root).items() if not times.consistent)


def file_mtimes(layer_root: Path) -> dict[str, float]:
    """``{ticker: newest mtime of its files}`` of a per-ticker layer."""
    return {t: times.newest for t, times in folder_times(layer_root).items()}


def scan_layer(
    settings: Settings, layer: str, tickers: Iterable[str] | None = None
) -> pl.LazyFrame | None:
    """Lazy scan of a per-ticker layer (all tickers or some); None when nothing is there."""
    files = symbol_files(LAYERS[layer].root(settings), tickers)
    if not files:
        return None
    return pl.scan_parquet(files, hive_partitioning=False, missing_columns="insert")


def read_layer(
    settings: Settings, layer: str, tickers: Iterable[str] | None = None
) -> pl.DataFrame:
    """One layer as a long frame sorted by (ticker, trade_date); empty when nothing is there."""
    scan = scan_layer(settings, layer, tickers)
    if scan is None:
        return pl.DataFrame()
    return scan.collect().sort(["ticker", "trade_date"])


KEYS = ("ticker", "trade_date")


def scan_panel(
    settings: Settings,
    layers: Sequence[str],
    columns: Sequence[str] | None = None,
    tickers: Iterable[str] | None = None,
) -> pl.LazyFrame | None:
    """Several per-ticker layers joined on (ticker, trade_date), lazily.

    Rows come from the first layer; each column is taken from the first listed layer that has
    it. ``columns`` (keys always included) limits what is read. None when the first layer is
    missing.
    """
    wanted = tickers if tickers is None else list(tickers)
    panel: pl.LazyFrame | None = None
    have: set[str] = set()
    for layer in layers:
        scan = scan_layer(settings, layer, wanted)
        if scan is None:
            if panel is None:
                return None
            continue
        names = scan.collect_schema().names()
        take = [c for c in names if c not in have and (columns is None or c in columns)]
        if panel is None:
            take = [*[k for k in KEYS if k not in take], *take]
            panel = scan.select(take)
        else:
            extra = [c for c in take if c not in KEYS]
            if not extra:
                continue
            panel = panel.join(scan.select(*KEYS, *extra), on=list(KEYS), how="left",
                               maintain_order="left")
        have.update(take)
    return panel


def read_panel(
    settings: Settings,
    layers: Sequence[str],
    columns: Sequence[str] | None = None,
    tickers: Iterable[str] | None = None,
) -> pl.DataFrame:
    """:func:`scan_panel`, collected and sorted by (ticker, trade_date)."""
    panel = scan_panel(settings, layers, columns, tickers)
    return pl.DataFrame() if panel is None else panel.collect().sort(list(KEYS))


def ticker_folders(layer_root: Path, shards: Collection[str] | None = None
                   ) -> Iterator[os.DirEntry[str]]:
    """Every ``exchange=/prefix=/ticker=`` folder of a layer, in one ``os.scandir`` walk;
    with ``shards``, only under the ``prefix=`` folders of those shards."""
    if not layer_root.is_dir():
        return
    for exchange in _scan_dirs(str(layer_root), "exchange="):
        for prefix in _scan_dirs(exchange.path, "prefix="):
            if shards is None or shard_of(prefix.name.removeprefix("prefix=")) in shards:
                yield from _scan_dirs(prefix.path, "ticker=")
