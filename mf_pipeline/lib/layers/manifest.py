"""Raw-file manifest: discovery, content fingerprints and incremental classification.

A file is identified by its path relative to the raw root. Its fingerprint is the size plus a
fast xxh3 hash of the whole content, so touching a file changes nothing and a same-size edit is
seen. A changed file whose previous content is an exact prefix of the new one (ending on a line
boundary) is ``APPENDED``: new bars at the end, which later layers can process cheaply.

The *stable* manifest records, per file, the fingerprint last ingested successfully. Files that
failed are never promoted, so they come back as NEW/CHANGED until they succeed.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import xxhash

from mf_pipeline.lib.lake import is_valid_ticker, ticker_from_file_name

NEW, CHANGED, APPENDED, UNCHANGED, DELETED = "NEW", "CHANGED", "APPENDED", "UNCHANGED", "DELETED"
STATUSES = (NEW, CHANGED, APPENDED, UNCHANGED, DELETED)
TO_PROCESS = (NEW, CHANGED, APPENDED)
INVALID_FILE_TICKER = "invalid_file_ticker"
DUPLICATE_SOURCE_TICKER = "duplicate_source_ticker"
_HASH_CHUNK = 1 << 22

MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "path": pl.String(),
    "source_file_name": pl.String(),
    "source_dir": pl.String(),
    "exchange": pl.String(),
    "ticker": pl.String(),
    "file_size_bytes": pl.Int64(),
    "file_mtime": pl.Datetime("us", "UTC"),
    "content_hash": pl.String(),
    "fingerprint": pl.String(),
    "file_ext": pl.String(),
    "discovered_ts": pl.Datetime("us", "UTC"),
    "fail_reason": pl.String(),
}


def infer_exchange(path: str) -> str:
    """Exchange from folder names, in the old tool's order; anything else is UNKNOWN."""
    lowered = path.lower()
    if "nasdaq stocks" in lowered:
        return "NASDAQ"
    if "nyse stocks" in lowered:
        return "NYSE"
    return "UNKNOWN"


def list_raw_files(raw_root: Path) -> list[Path]:
    """Every regular ``*.txt`` file under ``raw_root`` (any case), sorted by path."""
    if not raw_root.is_dir():
        return []
    found = []
    for folder, _dirs, names in os.walk(raw_root):
        for name in names:
            if name.lower().endswith(".txt"):
                path = Path(folder) / name
                if path.is_file():
                    found.append(path)
    return sorted(found)


def content_hash(path: Path, limit: int | None = None) -> str:
    """xxh3-64 hex digest of the file (or of its first ``limit`` bytes)."""
    digest = xxhash.xxh3_64()
    remaining = limit
    with open(path, "rb") as handle:
        while remaining is None or remaining > 0:
            size = _HASH_CHUNK if remaining is None else min(_HASH_CHUNK, remaining)
            chunk = handle.read(size)
            if not chunk:
                break
            digest.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return digest.hexdigest()


def hash_with_prefix(path: Path, prefix: int | None) -> tuple[str, str | None]:
    """(hash of the whole file, hash of its first ``prefix`` bytes) in one read.

    The prefix hash (None without ``prefix`` or when the file is shorter) is what decides
    ``APPENDED`` without reading the old part of the file a second time.
    """
    digest = xxhash.xxh3_64()
    prefix_hex = None
    done = 0
    with open(path, "rb") as handle:
        while True:
            size = _HASH_CHUNK
            if prefix is not None and prefix_hex is None:
                if done == prefix:
                    prefix_hex = digest.hexdigest()
                else:
                    size = min(size, prefix - done)
            chunk = handle.read(size)
            if not chunk:
                break
            digest.update(chunk)
            done += len(chunk)
    return digest.hexdigest(), prefix_hex


HashKey = tuple[str, int, int, int | None]
_HASHES: dict[HashKey, tuple[str, str | None]] = {}
"""The last discovery's hashes by (path, size, mtime_ns, prefix): the CLI classifies the raw
tree to plan a run, then the manifest asset classifies it again inside that run (same process)."""


def _hashes(paths: Sequence[Path], stats: Sequence[os.stat_result],
            prefixes: dict[str, int]) -> list[tuple[str, str | None]]:
    keys: list[HashKey] = [(str(p), st.st_size, st.st_mtime_ns, prefixes.get(str(p)))
                           for p, st in zip(paths, stats, strict=True)]
    todo = [key for key in keys if key not in _HASHES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        computed = pool.map(lambda key: hash_with_prefix(Path(key[0]), key[3]), todo)
        fresh = dict(zip(todo, computed, strict=True))
    known = {key: _HASHES.get(key) or fresh[key] for key in keys}
    _HASHES.clear()
    _HASHES.update(known)
    return [known[key] for key in keys]


def discover(raw_root: Path, discovered_ts: dt.datetime | None = None,
             prefixes: dict[str, int] | None = None) -> pl.DataFrame:
    """The current manifest of ``raw_root`` (no classification yet).

    ``prefixes`` (``{path: size at the last ingest}``, from the stable manifest) adds a
    ``prefix_hash`` column: the hash of each file's first ``size`` bytes, read in the same pass.

    ``fail_reason`` marks files that cannot become a ticker partition: a name that is not a
    valid ticker, or two files naming the same ticker (both are reported, neither is trusted).
    """
    raw_root = raw_root.resolve()
    discovered_ts = discovered_ts or dt.datetime.now(dt.UTC)
    paths = list_raw_files(raw_root)
    stats = [path.stat() for path in paths]
    hashes = _hashes(paths, stats, prefixes or {})
    tickers = [ticker_from_file_name(path.name) for path in paths]
    frame = pl.DataFrame(
        {
            "source_file": [path.relative_to(raw_root).as_posix() for path in paths],
            "path": [str(path) for path in paths],
            "source_file_name": [path.name for path in paths],
            "source_dir": [path.parent.relative_to(raw_root).as_posix() for path in paths],
            "exchange": [infer_exchange(str(path.relative_to(raw_root))) for path in paths],
            "ticker": [t if is_valid_ticker(t) else None for t in tickers],
            "file_size_bytes": [st.st_size for st in stats],
            "file_mtime": [dt.datetime.fromtimestamp(st.st_mtime, dt.UTC) for st in stats],
            "content_hash": [full for full, _ in hashes],
            "prefix_hash": [prefix for _, prefix in hashes],
            "file_ext": [path.suffix.lower() for path in paths],
        },
        schema_overrides={"file_mtime": pl.Datetime("us", "UTC"), "prefix_hash": pl.String()},
    )
    duplicated = pl.col("ticker").is_not_null() & (pl.len().over("ticker") > 1)
    return frame.with_columns(
        fingerprint=pl.format("{}|{}", "file_size_bytes", "content_hash"),
        discovered_ts=pl.lit(discovered_ts, dtype=pl.Datetime("us", "UTC")),
        fail_reason=pl.when(pl.col("ticker").is_null())
        .then(pl.lit(INVALID_FILE_TICKER))
        .when(duplicated)
        .then(pl.lit(DUPLICATE_SOURCE_TICKER))
        .otherwise(pl.lit(None, dtype=pl.String)),
    ).select(*MANIFEST_SCHEMA, "prefix_hash")


def empty_manifest() -> pl.DataFrame:
    return pl.DataFrame(schema=MANIFEST_SCHEMA)


def _is_append(path: str, old_size: int, old_hash: str, new_size: int,
               prefix_hash: str | None = None) -> bool:
    """The old content is an exact prefix of the new one and ends on a line boundary.

    ``prefix_hash`` is the hash of the first ``old_size`` bytes when discovery computed it.
    """
    if new_size <= old_size or old_size == 0:
        return False
    try:
        with open(path, "rb") as handle:
            handle.seek(old_size - 1)
            last_old_byte = handle.read(1)
        if last_old_byte != b"\n":
            return False
        if prefix_hash is None:
            prefix_hash = content_hash(Path(path), limit=old_size)
        return prefix_hash == old_hash
    except OSError:
        return False


def classify(current: pl.DataFrame, stable: pl.DataFrame) -> pl.DataFrame:
    """Add ``manifest_status`` to the current manifest and append DELETED rows.

    DELETED rows are the stable entries whose file is gone; they keep their last known columns
    so the ticker whose outputs must be retired is known.
    """
    previous = stable.select(
        "source_file",
        prev_size=pl.col("file_size_bytes"),
        prev_hash=pl.col("content_hash"),
        prev_fingerprint=pl.col("fingerprint"),
    ).unique("source_file", keep="last")
    if "prefix_hash" not in current.columns:
        current = current.with_columns(prefix_hash=pl.lit(None, dtype=pl.String))
    joined = current.join(previous, on="source_file", how="left")
    changed = joined.filter(
        pl.col("prev_fingerprint").is_not_null()
        & (pl.col("prev_fingerprint") != pl.col("fingerprint"))
    )
    appended = {
        row["source_file"]
        for row in changed.iter_rows(named=True)
        if _is_append(row["path"], row["prev_size"], row["prev_hash"], row["file_size_bytes"],
                      row["prefix_hash"])
    }
    status = (
        pl.when(pl.col("prev_fingerprint").is_null())
        .then(pl.lit(NEW))
        .when(pl.col("prev_fingerprint") == pl.col("fingerprint"))
        .then(pl.lit(UNCHANGED))
        .when(pl.col("source_file").is_in(list(appended)))
        .then(pl.lit(APPENDED))
        .otherwise(pl.lit(CHANGED))
    )
    classified = joined.with_columns(manifest_status=status).select(
        *MANIFEST_SCHEMA, "manifest_status", "prev_size"
    )
    deleted = (
        stable.join(current.select("source_file"), on="source_file", how="anti")
        .select(list(MANIFEST_SCHEMA))
        .with_columns(manifest_status=pl.lit(DELETED), prev_size=pl.col("file_size_bytes"))
    )
    return pl.concat([classified, deleted], how="vertical_relaxed").sort("source_file")


def status_counts(classified: pl.DataFrame) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for status, count in classified.group_by("manifest_status").len().iter_rows():
        counts[status] = count
    return counts


def exchange_counts(classified: pl.DataFrame) -> dict[str, int]:
    present = classified.filter(pl.col("manifest_status") != DELETED)
    return dict(sorted(present.group_by("exchange").len().iter_rows()))


def tickers_to_process(classified: pl.DataFrame, full: bool = False,
                       only_status: Sequence[str] | None = None) -> list[str]:
    """Tickers whose Bronze must be (re)built: changed files, deleted files, or all (``full``)."""
    rows = classified.filter(pl.col("ticker").is_not_null())
    if only_status:
        rows = rows.filter(pl.col("manifest_status").is_in([s.upper() for s in only_status]))
    elif not full:
        rows = rows.filter(pl.col("manifest_status").is_in([*TO_PROCESS, DELETED]))
    return sorted(set(rows["ticker"].to_list()))


def promote(stable: pl.DataFrame, classified: pl.DataFrame, succeeded: Sequence[str],
            retired: Sequence[str]) -> pl.DataFrame:
    """New stable manifest: ``succeeded`` files take their current entry, ``retired`` (deleted)
    files are dropped, every other entry is kept as it was (so failures are retried)."""
    fresh = classified.filter(pl.col("source_file").is_in(list(succeeded))).select(
        list(MANIFEST_SCHEMA)
    )
    touched = [*succeeded, *retired]
    kept = stable.filter(~pl.col("source_file").is_in(touched)).select(list(MANIFEST_SCHEMA))
    return pl.concat([kept, fresh], how="vertical_relaxed").sort("source_file")


def stat_changes(raw_root: Path, stable: pl.DataFrame) -> pl.DataFrame:
    """Files whose size or mtime differ from the stable manifest, new files and vanished ones.

    A cheap pre-check for the sensor (no file is read); the manifest asset then confirms with
    content hashes. Columns: ``source_file, ticker, change`` (``new``/``modified``/``deleted``),
    ``signature`` (size and mtime, to build idempotent run keys).
    """
    raw_root = raw_root.resolve()
    paths = list_raw_files(raw_root)
    stats = [path.stat() for path in paths]
    now = pl.DataFrame(
        {
            "source_file": [path.relative_to(raw_root).as_posix() for path in paths],
            "ticker": [ticker_from_file_name(path.name) for path in paths],
            "size": [st.st_size for st in stats],
            "mtime": [dt.datetime.fromtimestamp(st.st_mtime, dt.UTC) for st in stats],
        },
        schema_overrides={"mtime": pl.Datetime("us", "UTC"), "size": pl.Int64},
    )
    before = stable.select(
        "source_file", old_size="file_size_bytes", old_mtime="file_mtime", old_ticker="ticker"
    )
    joined = now.join(before, on="source_file", how="full", coalesce=True)
    change = (
        pl.when(pl.col("size").is_null())
        .then(pl.lit("deleted"))
        .when(pl.col("old_size").is_null())
        .then(pl.lit("new"))
        .when((pl.col("size") != pl.col("old_size")) | (pl.col("mtime") != pl.col("old_mtime")))
        .then(pl.lit("modified"))
    )
    return (
        joined.with_columns(change=change, ticker=pl.coalesce("ticker", "old_ticker"))
        .filter(pl.col("change").is_not_null())
        .select(
            "source_file",
            "ticker",
            "change",
            signature=pl.format("{}|{}", "size", pl.col("mtime").dt.epoch("us")),
        )
        .sort("source_file")
    )
