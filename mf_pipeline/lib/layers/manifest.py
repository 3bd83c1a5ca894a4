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
import stat as stat_mode
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
import xxhash

from mf_pipeline.lib.lake import is_valid_ticker, ticker_from_file_name

NEW, CHANGED, APPENDED, UNCHANGED, DELETED = "NEW", "CHANGED", "APPENDED", "UNCHANGED", "DELETED"
STATUSES = (NEW, CHANGED, APPENDED, UNCHANGED, DELETED)
TO_PROCESS = (NEW, CHANGED, APPENDED)
INVALID_FILE_TICKER = "invalid_file_ticker"
DUPLICATE_SOURCE_TICKER = "duplicate_source_ticker"
SYMLINK_NOT_FOLLOWED = "symlink_not_followed"
SYMLINK_OUTSIDE_ROOT = "symlink_outside_root"
NON_UTF8_PATH = "non_utf8_path"
FILE_TOO_LARGE = "file_too_large"
NOT_READ_REASONS: tuple[str, ...] = (
    SYMLINK_NOT_FOLLOWED, SYMLINK_OUTSIDE_ROOT, NON_UTF8_PATH, FILE_TOO_LARGE,
)
"""Failures seen from the tree alone: such a file is never opened (not hashed, not parsed),
has no ticker and no ``path``; its ledger row is FAILED with no lines."""
_HASH_CHUNK = 1 << 22
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

FollowSymlinks = Literal["none", "inside_root"]

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


def safe_text(text: str) -> str:
    """``text`` when it is valid UTF-8, else its bytes with the undecodable ones as ``\\xNN``.

    ``os`` gives undecodable file-name bytes as surrogate escapes, which no UTF-8 writer (polars,
    Parquet, JSON) accepts: ``\\xff\\xfe.us.txt`` is how such a file is named in the tables.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


@dataclass(frozen=True)
class RawFile:
    """One ``*.txt`` entry of the raw tree, as discovery sees it (nothing read yet)."""

    source_file: str
    """Path relative to the raw root, UTF-8 safe (``safe_text``)."""
    read_path: Path | None
    """What may be opened: the file, the target of a followed symlink; None: never read."""
    stat: os.stat_result
    """Of ``read_path``; of the entry itself (not followed) when there is none."""
    fail: str | None
    """One of ``NOT_READ_REASONS``, or None."""
    name: str
    """The entry's own name (not UTF-8 safe: ``source_file`` is)."""
    link: str | None = None
    """The target of a symlink that is not followed (fingerprinted instead of content)."""


def _symlink(path: Path, raw_root: Path, follow: FollowSymlinks
             ) -> tuple[Path | None, os.stat_result | None, str | None]:
    """(target to read, its stat, fail reason) of a file symlink; only metadata is looked at.

    A link resolving outside ``raw_root`` is never followed; one resolving inside is followed
    only with ``follow == "inside_root"`` and only to a regular file. Dangling links and loops
    are not followed.
    """
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None, None, SYMLINK_NOT_FOLLOWED
    if not target.is_relative_to(raw_root):
        return None, None, SYMLINK_OUTSIDE_ROOT
    if follow != "inside_root":
        return None, None, SYMLINK_NOT_FOLLOWED
    try:
        st = os.stat(target, follow_symlinks=False)
    except OSError:
        return None, None, SYMLINK_NOT_FOLLOWED
    if not stat_mode.S_ISREG(st.st_mode):
        return None, None, SYMLINK_NOT_FOLLOWED
    return target, st, None


def scan_raw_files(raw_root: Path, follow_symlinks: FollowSymlinks = "none",
                   max_file_bytes: int | None = None) -> list[RawFile]:
    """Every ``*.txt`` regular file or file symlink under ``raw_root`` (any case), by path.

    Folder symlinks are not entered; a file symlink is read only when ``follow_symlinks`` is
    ``inside_root`` and it resolves to a regular file inside the root. Other entries (FIFOs,
    devices) are skipped. Nothing is opened here.
    """
    raw_root = raw_root.resolve()
    if not raw_root.is_dir():
        return []
    found: list[RawFile] = []
    for folder, _dirs, names in os.walk(raw_root):
        for name in names:
            if not name.lower().endswith(".txt"):
                continue
            path = Path(folder) / name
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue  # vanished since the listing
            read: Path | None = path
            fail = None
            link = None
            if stat_mode.S_ISLNK(st.st_mode):
                read, target_st, fail = _symlink(path, raw_root, follow_symlinks)
                st = target_st or st
                if fail is not None:
                    try:
                        link = safe_text(os.readlink(path))
                    except OSError:
                        link = ""
            elif not stat_mode.S_ISREG(st.st_mode):
                continue
            source_file = path.relative_to(raw_root).as_posix()
            safe = safe_text(source_file)
            if safe != source_file:
                fail = NON_UTF8_PATH
            elif fail is None and max_file_bytes is not None and st.st_size > max_file_bytes:
                fail = FILE_TOO_LARGE
            found.append(RawFile(safe, None if fail else read, st, fail, name, link))
    return sorted(found, key=lambda f: f.source_file)


def open_no_follow(path: str | Path):
    """``open(path, "rb")`` that refuses a symlink as the last path part (``O_NOFOLLOW``).

    Discovery decided what may be read; a file swapped for a symlink since then is not
    followed (``OSError``, reported as a read error and retried on the next run).
    """
    return os.fdopen(os.open(path, os.O_RDONLY | _NOFOLLOW), "rb")


def content_hash(path: Path, limit: int | None = None) -> str:
    """xxh3-64 hex digest of the file (or of its first ``limit`` bytes)."""
    digest = xxhash.xxh3_64()
    remaining = limit
    with open_no_follow(path) as handle:
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
    with open_no_follow(path) as handle:
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


def _hash_or_error(key: HashKey) -> tuple[str, str | None]:
    """``hash_with_prefix``; a file that cannot be read now gets an error marker as hash
    (Bronze reports the read error and the file is retried next run)."""
    try:
        return hash_with_prefix(Path(key[0]), key[3])
    except OSError as exc:
        return f"unreadable:{type(exc).__name__}", None


def _hashes(paths: Sequence[Path], stats: Sequence[os.stat_result],
            prefixes: dict[str, int], trusted: dict[str, str]) -> list[tuple[str, str | None]]:
    keys: list[HashKey] = [(str(p), st.st_size, st.st_mtime_ns, prefixes.get(str(p)))
                           for p, st in zip(paths, stats, strict=True)]
    for key in keys:
        if key[0] in trusted:  # unchanged since its last ingest: no prefix check needed
            _HASHES[key] = (trusted[key[0]], None)
    todo = [key for key in keys if key not in _HASHES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        computed = pool.map(_hash_or_error, todo)
        fresh = dict(zip(todo, computed, strict=True))
    known = {key: _HASHES.get(key) or fresh[key] for key in keys}
    _HASHES.clear()
    _HASHES.update(known)
    return [known[key] for key in keys]


RACY_SECONDS = 2.0
"""A file modified this close to its discovery may have changed again within the same mtime
tick after it was hashed (file system timestamps are coarser than writes): never trusted."""


def trusted_hashes(stable: pl.DataFrame) -> dict[str, tuple[int, dt.datetime, str]]:
    """``{path: (size, mtime, content hash)}`` of the stable manifest's files that were last
    modified well before they were discovered: a file of the same size and mtime now is taken
    as unchanged without reading it (as ``git`` trusts its index). Only an edit that keeps the
    size and forges the old mtime back goes unseen; ``mf run --full`` re-reads everything."""
    needed = {"path", "file_size_bytes", "file_mtime", "content_hash", "discovered_ts"}
    if stable.is_empty() or not needed <= set(stable.columns):
        return {}
    safe = stable.filter(pl.col("path").is_not_null() & (
        pl.col("file_mtime") < pl.col("discovered_ts") - dt.timedelta(seconds=RACY_SECONDS)))
    return {path: (size, mtime, digest) for path, size, mtime, digest in safe.select(
        "path", "file_size_bytes", "file_mtime", "content_hash").iter_rows()}


def _unread_hash(entry: RawFile) -> str:
    """Content hash stand-in of a file that is never read: what the tree shows of it."""
    st = entry.stat
    what = f"{entry.fail}|{entry.link}|{st.st_size}|{st.st_mtime_ns}"
    return "unread:" + xxhash.xxh3_64_hexdigest(what.encode("utf-8", "backslashreplace"))


def _file_ticker(entry: RawFile) -> str | None:
    """The valid ticker a file names, None for files that fail on the tree or bad names."""
    if entry.fail is not None:
        return None
    ticker = ticker_from_file_name(entry.name)
    return ticker if is_valid_ticker(ticker) else None


def discover(raw_root: Path, discovered_ts: dt.datetime | None = None,
             prefixes: dict[str, int] | None = None, follow_symlinks: FollowSymlinks = "none",
             max_file_bytes: int | None = None,
             known: dict[str, tuple[int, dt.datetime, str]] | None = None) -> pl.DataFrame:
    """The current manifest of ``raw_root`` (no classification yet).

    ``prefixes`` (``{path: size at the last ingest}``, from the stable manifest) adds a
    ``prefix_hash`` column: the hash of each file's first ``size`` bytes, read in the same pass.
    ``known`` (``{path: (size, mtime, content hash)}``, from the stable manifest: see
    :func:`trusted_hashes`) spares reading a file whose size and mtime are what they were.

    ``fail_reason`` marks files that cannot become a ticker partition: one that is not read
    (``NOT_READ_REASONS``: a symlink not followed, a path that is not UTF-8, a file over
    ``max_file_bytes``), a name that is not a valid ticker, or two files naming the same
    ticker (both are reported, neither is trusted).
    """
    raw_root = raw_root.resolve()
    discovered_ts = discovered_ts or dt.datetime.now(dt.UTC)
    entries = scan_raw_files(raw_root, follow_symlinks, max_file_bytes)
    readable = [e for e in entries if e.read_path is not None]
    trusted = {}
    for e in readable:
        seen = (known or {}).get(str(e.read_path))
        if seen is not None and seen[0] == e.stat.st_size \
                and seen[1] == dt.datetime.fromtimestamp(e.stat.st_mtime, dt.UTC):
            trusted[str(e.read_path)] = seen[2]
    hashed = iter(_hashes([e.read_path for e in readable if e.read_path is not None],
                          [e.stat for e in readable], prefixes or {}, trusted))
    hashes = [next(hashed) if e.read_path is not None else (_unread_hash(e), None)
              for e in entries]
    relative = [e.source_file for e in entries]
    frame = pl.DataFrame(
        {
            "source_file": relative,
            "path": [None if e.read_path is None else str(e.read_path) for e in entries],
            "source_file_name": [r.rsplit("/", 1)[-1] for r in relative],
            "source_dir": [r.rsplit("/", 1)[0] if "/" in r else "." for r in relative],
            "exchange": [infer_exchange(r) for r in relative],
            "ticker": [_file_ticker(e) for e in entries],
            "file_size_bytes": [e.stat.st_size for e in entries],
            "file_mtime": [dt.datetime.fromtimestamp(e.stat.st_mtime, dt.UTC) for e in entries],
            "content_hash": [full for full, _ in hashes],
            "prefix_hash": [prefix for _, prefix in hashes],
            "file_ext": [os.path.splitext(r)[1].lower() for r in relative],
            "_fail": [e.fail for e in entries],
        },
        schema_overrides={"file_mtime": pl.Datetime("us", "UTC"), "prefix_hash": pl.String(),
                          "path": pl.String(), "ticker": pl.String(), "_fail": pl.String()},
    )
    duplicated = pl.col("ticker").is_not_null() & (pl.len().over("ticker") > 1)
    return frame.with_columns(
        fingerprint=pl.format("{}|{}", "file_size_bytes", "content_hash"),
        discovered_ts=pl.lit(discovered_ts, dtype=pl.Datetime("us", "UTC")),
        fail_reason=pl.when(pl.col("_fail").is_not_null())
        .then(pl.col("_fail"))
        .when(pl.col("ticker").is_null())
        .then(pl.lit(INVALID_FILE_TICKER))
        .when(duplicated)
        .then(pl.lit(DUPLICATE_SOURCE_TICKER))
        .otherwise(pl.lit(None, dtype=pl.String)),
    ).select(*MANIFEST_SCHEMA, "prefix_hash")


def empty_manifest() -> pl.DataFrame:
    return pl.DataFrame(schema=MANIFEST_SCHEMA)


def _is_append(path: str | None, old_size: int, old_hash: str, new_size: int,
               prefix_hash: str | None = None) -> bool:
    """The old content is an exact prefix of the new one and ends on a line boundary.

    ``prefix_hash`` is the hash of the first ``old_size`` bytes when discovery computed it.
    """
    if path is None or new_size <= old_size or old_size == 0:
        return False
    try:
        with open_no_follow(path) as handle:
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
    so the ticker whose outputs must be retired is known. ``prev_ticker`` is the ticker the
    stable manifest has for the file: a changed file that no longer names it (e.g. replaced by
    a symlink that is not followed) leaves that ticker to be rebuilt (``tickers_to_process``).
    """
    previous = stable.select(
        "source_file",
        prev_ticker=pl.col("ticker"),
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
        *MANIFEST_SCHEMA, "manifest_status", "prev_size", "prev_ticker"
    )
    deleted = (
        stable.join(current.select("source_file"), on="source_file", how="anti")
        .select(list(MANIFEST_SCHEMA))
        .with_columns(manifest_status=pl.lit(DELETED), prev_size=pl.col("file_size_bytes"),
                      prev_ticker=pl.col("ticker"))
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
    """Tickers whose Bronze must be (re)built: changed files, deleted files, or all (``full``);
    also the former ticker of a changed file that names another one or none now."""
    rows = classified.filter(pl.col("ticker").is_not_null())
    if only_status:
        rows = rows.filter(pl.col("manifest_status").is_in([s.upper() for s in only_status]))
        return sorted(set(rows["ticker"].to_list()))
    if not full:
        rows = rows.filter(pl.col("manifest_status").is_in([*TO_PROCESS, DELETED]))
    former: list[str] = []
    if "prev_ticker" in classified.columns:
        former = classified.filter(
            pl.col("manifest_status").is_in(TO_PROCESS)
            & pl.col("prev_ticker").is_not_null()
            & pl.col("ticker").ne_missing(pl.col("prev_ticker"))
        )["prev_ticker"].to_list()
    return sorted(set(rows["ticker"].to_list()) | set(former))


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


def stat_changes(raw_root: Path, stable: pl.DataFrame,
                 follow_symlinks: FollowSymlinks = "none") -> pl.DataFrame:
    """Files whose size or mtime differ from the stable manifest, new files and vanished ones.

    A cheap pre-check for the sensor (no file is read, no symlink followed unless discovery
    would follow it); the manifest asset then confirms with content hashes. Columns:
    ``source_file, ticker, change`` (``new``/``modified``/``deleted``), ``signature`` (size
    and mtime, to build idempotent run keys). Files discovery would fail on the tree alone
    (a symlink not followed, a path that is not UTF-8) have no ticker.
    """
    raw_root = raw_root.resolve()
    entries = scan_raw_files(raw_root, follow_symlinks)
    now = pl.DataFrame(
        {
            "source_file": [e.source_file for e in entries],
            "ticker": [None if e.fail else ticker_from_file_name(e.name) for e in entries],
            "size": [e.stat.st_size for e in entries],
            "mtime": [dt.datetime.fromtimestamp(e.stat.st_mtime, dt.UTC) for e in entries],
        },
        schema_overrides={"mtime": pl.Datetime("us", "UTC"), "size": pl.Int64,
                          "ticker": pl.String},
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
