"""Lake v2: one per-ticker layer as a few large files per shard, named by one snapshot.

One layer folder holds::

    _lake.json                         the snapshot pointer (format, generation, index, retired)
    _index/g<gen>-<token>.parquet      one row per (ticker, data file): the live rows
    shard=<SS>/part-<writer>-<token>.parquet
                                       immutable data files, sorted by (ticker, trade_date)

**Commits.** A write puts new data files in place under fresh names (nobody reads them yet),
then, under the layer's commit lock (``fcntl.flock`` on ``.commit.lock``), reads the current
index, applies its change (replace some tickers' rows, append rows, drop tickers), writes the
new index and atomically replaces ``_lake.json``. A reader takes the pointer once and reads only
the files that generation names, which are never modified: it sees the whole commit or none of
it, whatever runs beside it (nightly appends, compactions, another worker's shard). Files a
commit no longer names are *retired* and deleted only ``KEEP_GENERATIONS`` commits later, so a
reader that took the previous snapshot still finds its files; the read helpers retry on a fresh
snapshot in the rare case one disappeared anyway.

**Per-ticker versions.** Each ticker carries a ``version``: the token of the commit that last
replaced its rows. Appends keep it; compactions keep it (they move rows, not change them). A
ticker's *listing* ``version:rows:last date`` therefore changes exactly when its rows change,
which is what the carries compare (``steps/carry_store.py``).

**Compaction.** Appends add one file per (commit, shard). When a shard would hold more than
``MAX_FILES_PER_SHARD`` files, its smallest files are merged into one so that
``MAX_FILES_PER_SHARD - 1`` remain (a nightly delta is merged with other deltas, the large base
only when the merged deltas rival it: log-structured, each row rewritten O(log nights) times);
a file more than half of whose rows were superseded (replaced or deleted tickers) is always
merged. The number of files per layer is therefore at most ``shards × MAX_FILES_PER_SHARD``,
whatever the number of tickers or nights.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.partitions import shard_of

FORMAT = "mf-lake/2"
POINTER = "_lake.json"
INDEX_DIR = "_index"
LOCK_NAME = ".commit.lock"
MAX_FILES_PER_SHARD = 4
KEEP_GENERATIONS = 1
ROW_GROUP_ROWS = 32_768
"""Rows per Parquet row group: a one-ticker read decodes one or two groups (statistics on the
sorted ``ticker`` column prune the rest). Measured on 1,500 tickers x 25 y: 16 K-row groups cost
~16 % more encoding CPU for no faster viewer read (27-31 ms either way)."""
READ_RETRIES = 5
WRITE_THREADS = 4

INDEX_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(), "exchange": pl.String(), "shard": pl.String(), "file": pl.String(),
    "rows": pl.Int64(), "low": pl.Date(), "high": pl.Date(), "version": pl.String(),
    "file_rows": pl.Int64(), "file_gen": pl.Int64(), "file_bytes": pl.Int64(),
}
"""One row per (ticker, data file): the ticker's live rows in that file and their dates, the
ticker's version, the file's total rows (more than the live ones once tickers in it were
replaced), the generation that committed the file (read order) and its size when written (a
file of another size now was damaged: see :meth:`Snapshot.damaged_files`)."""

_DATA_RE = re.compile(
    r"^part-w(?P<pid>\d+)-(?P<start>\d+)-(?P<host>[0-9a-f]{6})-[0-9a-f]+\.parquet$")
T = TypeVar("T")


class LakeFormatError(RuntimeError):
    """A layer folder that is not a lake-v2 table (e.g. the v1 one-folder-per-ticker layout)."""


def is_table(root: Path) -> bool:
    """True when ``root`` is a committed lake-v2 table."""
    return (root / POINTER).is_file()


def is_v1(root: Path) -> bool:
    """True when ``root`` holds the old layout (``exchange=…/prefix=…/ticker=…`` folders)
    without a v2 pointer: it must be migrated, never read as v2."""
    if (root / POINTER).exists() or not root.is_dir():
        return False
    with os.scandir(root) as entries:
        return any(e.name.startswith("exchange=") and e.is_dir() for e in entries)


def _v1_error(root: Path) -> LakeFormatError:
    return LakeFormatError(
        f"{root} holds the v1 lake layout (one folder per ticker). This version stores each "
        "layer as a few large files per shard: run `mf doctor --repair` once to convert the "
        "lake (or delete the data folder and `mf run` to rebuild it from the raw files).")


@dataclass(frozen=True)
class Snapshot:
    """One committed generation of a layer: its index (live rows per ticker and file)."""

    root: Path
    generation: int
    index: pl.DataFrame

    @property
    def is_empty(self) -> bool:
        return self.index.is_empty()

    def of(self, tickers: Iterable[str] | None) -> Snapshot:
        """The same generation restricted to ``tickers`` (all when None)."""
        if tickers is None:
            return self
        wanted = list(set(tickers))
        return Snapshot(self.root, self.generation,
                        self.index.filter(pl.col("ticker").is_in(wanted)))

    def in_shards(self, shards: Collection[str]) -> Snapshot:
        return Snapshot(self.root, self.generation,
                        self.index.filter(pl.col("shard").is_in(list(shards))))

    def tickers(self) -> list[str]:
        return sorted(self.index["ticker"].unique().to_list())

    def per_ticker(self) -> pl.DataFrame:
        """``ticker, exchange, shard, version, rows, low, high`` per ticker, sorted."""
        return (self.index.group_by("ticker")
                .agg(pl.col("exchange").first(), pl.col("shard").first(),
                     pl.col("version").first(), pl.col("rows").sum(), pl.col("low").min(),
                     pl.col("high").max())
                .sort("ticker"))

    def damaged_files(self) -> list[str]:
        """Named files that are missing or no longer of the size they were written with (a
        truncated or overwritten file): one ``stat`` per live file, at most 64 per layer."""
        sizes = self.index.group_by("file").agg(pl.col("file_bytes").first())
        damaged = []
        for name, size in sizes.filter(pl.col("file_bytes").is_not_null()).iter_rows():
            try:
                if os.stat(self.root / name).st_size != size:
                    damaged.append(name)
            except FileNotFoundError:
                damaged.append(name)
        return sorted(damaged)

    def listings(self) -> dict[str, str]:
        """``{ticker: "version:rows:last date"}``: equal exactly when the rows are equal. A
        ticker with rows in a damaged file has no listing (it reads as stale and is rebuilt,
        which retires the file)."""
        damaged = self.damaged_files()
        table = self.per_ticker()
        if damaged:
            lost = self.index.filter(pl.col("file").is_in(damaged))["ticker"].unique()
            table = table.filter(~pl.col("ticker").is_in(lost.to_list()))
        return {t: f"{v}:{r}:{h}" for t, v, r, h in
                table.select("ticker", "version", "rows", "high").iter_rows()}

    def files(self) -> list[Path]:
        """The data files holding live rows, in commit order."""
        names = (self.index.group_by("file").agg(pl.col("file_gen").first())
                 .sort("file_gen", "file")["file"])
        return [self.root / name for name in names]

    def scan(self) -> pl.LazyFrame | None:
        """The live rows of this snapshot (of its tickers), lazily; None when it has none.

        Files whose every row is live are scanned together; the others are filtered to their
        live tickers (rows of replaced or deleted tickers stay in a file until it is merged).
        """
        if self.is_empty:
            return None
        per_file = (self.index.group_by("file")
                    .agg(pl.col("rows").sum().alias("live"), pl.col("file_rows").first(),
                         pl.col("file_gen").first(), pl.col("ticker"))
                    .sort("file_gen", "file"))
        whole = per_file.filter(pl.col("live") == pl.col("file_rows"))
        frames: list[pl.LazyFrame] = []
        if whole.height:
            frames.append(pl.scan_parquet([str(self.root / f) for f in whole["file"]],
                                          glob=False, hive_partitioning=False,
                                          missing_columns="insert", extra_columns="ignore"))
        for name, tickers in per_file.filter(pl.col("live") != pl.col("file_rows")).select(
                "file", "ticker").iter_rows():
            frames.append(pl.scan_parquet(str(self.root / name), glob=False,
                                          hive_partitioning=False)
                          .filter(pl.col("ticker").is_in(tickers)))
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _empty_index() -> pl.DataFrame:
    return pl.DataFrame(schema=INDEX_SCHEMA)


def read_snapshot(root: Path) -> Snapshot:
    """The layer's current snapshot (empty when nothing was ever committed).

    Raises :class:`LakeFormatError` for a v1 layer or a pointer of another format.
    """
    for _ in range(READ_RETRIES):
        pointer = _read_pointer(root)
        if pointer is None:
            if is_v1(root):
                raise _v1_error(root)
            return Snapshot(root, 0, _empty_index())
        try:
            stat = os.stat(root / pointer["index"])
        except FileNotFoundError:
            stat = None
        key = (str(root), pointer["index"], stat.st_size if stat else -1,
               stat.st_mtime_ns if stat else -1)
        with _CACHE_LOCK:
            cached = _SNAPSHOTS.get(key)
        if cached is not None:
            return cached
        try:
            index = pl.read_parquet(root / pointer["index"])
        except FileNotFoundError:  # replaced and collected between the two reads: again
            if _read_pointer(root) == pointer:
                raise LakeFormatError(f"{root / POINTER} names a missing index "
                                      f"{pointer['index']}: run `mf doctor --repair`") from None
            continue
        missing = [pl.lit(None, dtype).alias(name) for name, dtype in INDEX_SCHEMA.items()
                   if name not in index.columns]  # an index written before a column existed
        found = Snapshot(root, int(pointer["generation"]),
                         index.with_columns(missing).select(list(INDEX_SCHEMA))
                         .cast(INDEX_SCHEMA))
        with _CACHE_LOCK:
            _SNAPSHOTS[key] = found
            while len(_SNAPSHOTS) > CACHED_SNAPSHOTS:
                _SNAPSHOTS.pop(next(iter(_SNAPSHOTS)))
        return found
    raise RuntimeError(f"{root}: the snapshot kept changing while being read")


CACHED_SNAPSHOTS = 32
_SNAPSHOTS: dict[tuple[str, str, int, int], Snapshot] = {}
"""Parsed indexes by (table, index file, its size and mtime): an index file is never modified
(each commit writes a new one under a fresh name), so a pointer naming the same untouched file
means the same snapshot; a reader then pays a small JSON read and a ``stat`` per snapshot
instead of a Parquet decode (a file damaged in place has another size or mtime)."""
_CACHE_LOCK = threading.Lock()


def _read_pointer(root: Path) -> dict | None:
    try:
        pointer = json.loads((root / POINTER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if pointer.get("format") != FORMAT:
        raise LakeFormatError(f"{root / POINTER}: unknown lake format {pointer.get('format')!r}"
                              f" (this version reads {FORMAT})")
    return pointer


def read_retrying(root: Path, read: Callable[[Snapshot], T]) -> T:
    """``read(snapshot)``, on a fresh snapshot again if a file it named was collected meanwhile
    (a reader slower than ``KEEP_GENERATIONS`` commits)."""
    for attempt in range(READ_RETRIES):
        try:
            return read(read_snapshot(root))
        except FileNotFoundError:
            if attempt == READ_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def shard_expr(ticker: pl.Expr) -> pl.Expr:
    """:func:`partitions.shard_of` as a Polars expression (one hash per distinct ticker)."""
    return ticker.map_batches(shard_series, return_dtype=pl.String())


def shard_series(tickers: pl.Series) -> pl.Series:
    """The shard of each ticker of ``tickers`` (one hash per distinct ticker)."""
    mapping = {t: shard_of(t) for t in tickers.unique().drop_nulls().to_list()}
    return tickers.replace_strict(mapping, default=None, return_dtype=pl.String()).alias("shard")


# ------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class Written:
    """What one commit did: its generation, the listings of the tickers it wrote, the tickers
    it removed and the data files it added (after any merge)."""

    generation: int
    listings: dict[str, str]
    removed: list[str]
    files: list[Path]


@contextmanager
def commit_lock(root: Path) -> Iterator[None]:
    """The layer's exclusive commit lock (short: held while the index is rewritten)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _new_name(shard: str) -> str:
    """A fresh data file name carrying its writer (pid, start, host: see ``lib/lake.py``)."""
    return f"shard={shard}/part-{lake.writer_tag()}-{uuid.uuid4().hex[:10]}.parquet"


WriteFile = Callable[[pl.DataFrame, Path, dict[str, str] | None], None]
"""Writes one data file atomically (``lib/lake.write_parquet`` with the lake's settings)."""


def _write_shards(root: Path, frame: pl.DataFrame, write_file: WriteFile,
                  metadata: dict[str, str] | None) -> pl.DataFrame:
    """Write ``frame``'s rows as one file per shard; returns their index rows (no version,
    no generation yet). The files are encoded on a few threads (the Parquet encoder releases
    the GIL)."""
    if frame.is_empty():
        return _empty_index()
    jobs = _shard_parts(frame)

    def write_one(job: tuple[str, pl.DataFrame, pl.DataFrame]) -> pl.DataFrame:
        shard, rows, runs = job
        name = _new_name(shard)
        write_file(rows, root / name, metadata)
        return _segments(runs, name, shard, (root / name).stat().st_size)

    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        return pl.concat(list(pool.map(write_one, jobs)))


def _runs(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per contiguous run of a ticker: ``ticker, start, rows, exchange, low, high``
    (first and last date of the run: the rows are sorted by date within a run)."""
    runs = frame.select(pl.col("ticker").rle()).unnest("ticker").rename(
        {"value": "ticker", "len": "rows"})
    start = (runs["rows"].cum_sum() - runs["rows"]).alias("start")
    ends = frame.select(pl.col("exchange").cast(pl.String).gather(start),
                        pl.col("trade_date").gather(start).alias("low"),
                        pl.col("trade_date").gather(start + runs["rows"] - 1).alias("high"))
    return pl.concat([runs.with_columns(start), ends], how="horizontal")


def _shard_parts(frame: pl.DataFrame) -> list[tuple[str, pl.DataFrame, pl.DataFrame]]:
    """``(shard, rows sorted by ticker and date, their runs)`` per shard of ``frame``.

    The layers hand over rows already sorted by (ticker, trade_date): then each ticker is one
    contiguous run, and a shard's rows are its tickers' runs put side by side without copying
    (a full sort of a wide frame costs ~0.5 CPU s per million rows). Any other order is
    sorted first."""
    ordered = frame.select(
        ((pl.col("ticker") != pl.col("ticker").shift()).fill_null(True)
         | (pl.col("trade_date").diff() > 0)).all()).item()
    runs = _runs(frame)
    if not ordered or runs["ticker"].n_unique() != runs.height:
        frame = frame.sort("ticker", "trade_date")
        runs = _runs(frame)
    runs = runs.with_columns(shard=shard_series(runs["ticker"])).sort("shard", "ticker")
    parts = []
    for (shard,), group in runs.partition_by("shard", as_dict=True,
                                             maintain_order=True).items():
        pieces = [frame.slice(start, length) for start, length
                  in group.select("start", "rows").iter_rows()]
        parts.append((str(shard), pl.concat(pieces, rechunk=False), group))
    return parts


def _segments(runs: pl.DataFrame, name: str, shard: str, size: int) -> pl.DataFrame:
    """The index rows of one new data file from its tickers' runs (:func:`_runs`)."""
    return (runs.select("ticker", "exchange", "rows", "low", "high")
            .with_columns(shard=pl.lit(shard), file=pl.lit(name), version=pl.lit(None, pl.String),
                          file_rows=pl.lit(int(runs["rows"].sum()), pl.Int64),
                          file_gen=pl.lit(0, pl.Int64), file_bytes=pl.lit(size, pl.Int64))
            .select(list(INDEX_SCHEMA)).cast(INDEX_SCHEMA))


def commit(root: Path, frame: pl.DataFrame, write_file: WriteFile, *, append: bool = False,
           remove: Iterable[str] = (), metadata: dict[str, str] | None = None) -> Written:
    """Commit ``frame`` (rows with ``ticker``, ``exchange``, ``trade_date``) to the layer.

    Without ``append`` the rows replace every stored row of their tickers; with it they are new
    bars after the stored ones (rows not after a ticker's stored last date are already there:
    dropped). Tickers in ``remove`` lose all their rows. One atomic commit.
    """
    if is_v1(root):
        raise _v1_error(root)
    if append and not frame.is_empty():
        frame = _after_stored(read_snapshot(root), frame)
    new = _write_shards(root, frame, write_file, metadata)
    drop = set(remove) - set(new["ticker"].to_list())
    with commit_lock(root):
        pointer = _read_pointer(root) or {"format": FORMAT, "generation": 0, "retired": []}
        old = read_snapshot(root).index
        if new.is_empty() and not drop & set(old["ticker"].to_list()):
            return Written(int(pointer["generation"]), {}, [], [])  # nothing changes: no commit
        generation = int(pointer["generation"]) + 1
        token = f"g{generation}-{uuid.uuid4().hex[:6]}"
        written = set(new["ticker"].to_list())
        if append:
            versions = old.group_by("ticker").agg(pl.col("version").first())
            new = (new.drop("version").join(versions, on="ticker", how="left")
                   .with_columns(pl.col("version").fill_null(token)).select(list(INDEX_SCHEMA)))
            kept = old.filter(~pl.col("ticker").is_in(list(drop)))
        else:
            new = new.with_columns(version=pl.lit(token))
            kept = old.filter(~pl.col("ticker").is_in(list(written | drop)))
        index = pl.concat([kept, new.with_columns(file_gen=pl.lit(generation, pl.Int64))])
        touched = set(new["shard"].to_list()) | set(
            old.filter(pl.col("ticker").is_in(list(drop)))["shard"].to_list())
        for shard in sorted(touched):
            index = _compact(root, index, shard, generation, write_file)
        _publish(root, pointer, old, index, generation, token)
    for name in set(new["file"].to_list()) - set(index["file"].to_list()):
        (root / name).unlink(missing_ok=True)  # merged before any snapshot named it
    removed = sorted(drop & set(old["ticker"].to_list()))
    added = sorted(set(index.filter(pl.col("file_gen") == generation)["file"].to_list()))
    return Written(generation, Snapshot(root, generation, index).of(written).listings(), removed,
                   [root / name for name in added])


def _after_stored(snapshot: Snapshot, frame: pl.DataFrame) -> pl.DataFrame:
    """The appended rows dated after their ticker's stored last date: re-running an append
    that was committed before its run was killed commits nothing twice (appends are
    idempotent; an earlier-dated bar is never an append, callers rebuild such a ticker)."""
    last = (snapshot.of(frame["ticker"].unique().to_list()).per_ticker()
            .select("ticker", pl.col("high").alias("_stored_last")))  # bars have a "high" too
    if last.is_empty():
        return frame
    return (frame.join(last, on="ticker", how="left")
            .filter(pl.col("_stored_last").is_null()
                    | (pl.col("trade_date") > pl.col("_stored_last")))
            .drop("_stored_last"))


def _compact(root: Path, index: pl.DataFrame, shard: str, generation: int,
             write_file: WriteFile) -> pl.DataFrame:
    """Merge files of ``shard`` by the rule in the module docstring; returns the new index."""
    files = (index.filter(pl.col("shard") == shard).group_by("file")
             .agg(pl.col("rows").sum().alias("live"), pl.col("file_rows").first())
             .sort("live", "file"))
    merge = set(files.filter(pl.col("live") * 2 < pl.col("file_rows"))["file"].to_list())
    if files.height > MAX_FILES_PER_SHARD:
        for name in files["file"]:  # smallest first, until MAX - 1 files remain
            if files.height - len(merge) + 1 <= MAX_FILES_PER_SHARD - 1 and len(merge) >= 2:
                break
            merge.add(name)
    if not merge:
        return index
    moving = index.filter(pl.col("file").is_in(list(merge)))
    rows = Snapshot(root, generation, moving).scan()
    assert rows is not None
    merged = rows.collect().sort("ticker", "trade_date")
    name = _new_name(shard)
    if merged.height:
        write_file(merged, root / name, {"compacted_generation": str(generation)})
    versions = moving.group_by("ticker").agg(pl.col("version").first())
    size = (root / name).stat().st_size if merged.height else 0
    segments = (_segments(_runs(merged), name, shard, size).drop("version")
                .join(versions, on="ticker")
                .with_columns(file_gen=pl.lit(generation, pl.Int64)).select(list(INDEX_SCHEMA)))
    return pl.concat([index.filter(~pl.col("file").is_in(list(merge))), segments])


def _publish(root: Path, pointer: dict, old: pl.DataFrame, index: pl.DataFrame,
             generation: int, token: str) -> None:
    """Write the index, swap the pointer, retire what it no longer names, collect old files."""
    name = f"{INDEX_DIR}/{token}.parquet"
    lake.write_parquet(index.sort("shard", "ticker", "file_gen"), root / name)
    live = set(index["file"].to_list())
    retired = [*pointer.get("retired", []),
               *({"generation": generation, "file": f}
                 for f in sorted(set(old["file"].to_list()) - live))]
    if pointer.get("index"):
        retired.append({"generation": generation, "file": pointer["index"]})
    due = [r for r in retired if r["generation"] <= generation - KEEP_GENERATIONS]
    waiting = [r for r in retired if r["generation"] > generation - KEEP_GENERATIONS]
    lake.write_json({"format": FORMAT, "generation": generation, "index": name,
                "retired": waiting}, root / POINTER)
    for entry in due:
        (root / entry["file"]).unlink(missing_ok=True)
    _sweep_orphans(root, live | {r["file"] for r in waiting})


def _sweep_orphans(root: Path, known: set[str]) -> None:
    """Delete data files no snapshot names whose writer is gone (a killed writer's files)."""
    for folder in root.glob("shard=*"):
        with os.scandir(folder) as entries:
            for entry in entries:
                match = _DATA_RE.match(entry.name)
                name = f"{folder.name}/{entry.name}"
                if match is None or name in known:
                    continue
                if not lake.writer_alive(int(match["pid"]), int(match["start"]), match["host"]):
                    os.unlink(entry.path)


def committed_at(root: Path) -> float | None:
    """When the layer's last commit happened (the pointer's mtime), None before the first."""
    try:
        return (root / POINTER).stat().st_mtime
    except FileNotFoundError:
        return None


def data_file_count(root: Path) -> int:
    """Parquet files under a layer folder (data and index), for the lake's file budget."""
    return sum(1 for _ in root.rglob("*.parquet")) if root.is_dir() else 0
