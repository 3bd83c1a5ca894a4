"""The lake on disk: layer tables, safe ticker names, atomic writes and readers.

Per-ticker layers are lake-v2 tables (``lib/lake_table.py``): a few large Parquet files per
ticker shard, sorted by (ticker, trade_date), and one atomically replaced snapshot naming the
live files, so a reader always sees whole commits. Every other file (manifests, ledgers,
artifacts) is written to a hidden temp file next to its target and renamed over it, so a killed
run never leaves a half-written file and a rerun simply replaces what it finds. The temp file's
name carries its writer (``.<name>.w<pid>-<start>-<host>-<random>.tmp``): a killed writer's
leftovers are recognised as such and removed by :func:`sweep_temp_files` (the lake lock runs it
after a run was killed, ``lib/lake_lock.py``), never a live writer's.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake_table, registry
from mf_pipeline.lib.settings import ParquetSettings, Settings

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
    row_group_size: int | None = None,
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
            row_group_size=row_group_size,
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


def write_symbol_files(
    frame: pl.DataFrame,
    layer_root: Path,
    parquet: ParquetSettings | None = None,
    metadata: dict[str, str] | None = None,
    append: bool = False,
    remove: Iterable[str] = (),
) -> lake_table.Written:
    """Commit the rows of a long frame (with ``ticker``, ``exchange``, ``trade_date``) to a
    per-ticker layer in one atomic commit (``lib/lake_table.py``).

    By default the rows replace every stored row of their tickers; with ``append`` they are new
    bars after the stored ones. Tickers in ``remove`` lose all their rows.
    """
    def write_file(rows: pl.DataFrame, target: Path, meta: dict[str, str] | None) -> None:
        write_parquet(rows, target, parquet, meta, row_group_size=lake_table.ROW_GROUP_ROWS)

    return lake_table.commit(layer_root, frame, write_file, append=append, remove=remove,
                             metadata=metadata)


def remove_symbol_files(layer_root: Path, tickers: Iterable[str]) -> list[str]:
    """Drop every row of ``tickers`` (deleted sources); returns the tickers that had rows."""
    wanted = sorted(set(tickers))
    if not wanted or not symbol_tickers(layer_root, wanted):
        return []
    return write_symbol_files(pl.DataFrame(), layer_root, remove=wanted).removed


def snapshot(layer_root: Path) -> lake_table.Snapshot:
    """The layer's current committed generation (see ``lib/lake_table.py``)."""
    return lake_table.read_snapshot(layer_root)


def symbol_tickers(layer_root: Path, among: Iterable[str] | None = None) -> list[str]:
    """The tickers that have rows in a layer (optionally only those of ``among``), sorted."""
    return snapshot(layer_root).of(among).tickers()


def listings(layer_root: Path, tickers: Iterable[str] | None = None) -> dict[str, str]:
    """``{ticker: "version:rows:last date"}``: changes exactly when the ticker's rows change."""
    return snapshot(layer_root).of(tickers).listings()


def read_tickers(layer_root: Path, tickers: Iterable[str] | None = None,
                 columns: Sequence[str] | None = None) -> pl.DataFrame:
    """The rows of ``tickers`` (all when None) as one frame sorted by (ticker, trade_date),
    read from one committed snapshot; empty when there are none."""
    chosen = None if tickers is None else list(tickers)

    def read(snap: lake_table.Snapshot) -> pl.DataFrame:
        scan = snap.of(chosen).scan()
        if scan is None:
            return pl.DataFrame()
        if columns is None:
            return scan.collect().sort(list(KEYS))
        have = scan.collect_schema().names()
        wanted = [c for c in dict.fromkeys(columns) if c in have]
        return (scan.select(list(dict.fromkeys([*KEYS, *wanted]))).collect()
                .sort(list(KEYS)).select(wanted))

    return lake_table.read_retrying(layer_root, read)


def scan_layer(
    settings: Settings, layer: str, tickers: Iterable[str] | None = None
) -> pl.LazyFrame | None:
    """Lazy scan of a per-ticker layer (all tickers or some) as one committed snapshot; None
    when nothing is there."""
    return snapshot(LAYERS[layer].root(settings)).of(tickers).scan()


def read_layer(
    settings: Settings, layer: str, tickers: Iterable[str] | None = None
) -> pl.DataFrame:
    """One layer as a long frame sorted by (ticker, trade_date); empty when nothing is there."""
    return read_tickers(LAYERS[layer].root(settings), tickers)


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
