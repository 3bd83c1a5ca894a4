"""A reader running while nightly appends and compactions commit sees whole commits only.

Real ``mf run`` processes append a bar to every raw file night after night (enough nights that
every shard's files are merged at least once); meanwhile this process reads Bronze and the
features over and over, the way the viewer, ``mf sql`` or a second run would. Every read must be one
snapshot exactly: per ticker, the rows read equal the rows that snapshot's index promises, with
no date twice — a new file beside an old one, or a merged file beside the files it replaced,
would show extra or missing rows.
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl

from mf_pipeline.lib import lake, lake_table
from mf_pipeline.lib.sample import generate_universe
from mf_pipeline.lib.sample_append import append_one_bar

NIGHTS = 6


def _env(root: Path, raw: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MF_PIPELINE_")}
    return env | {"MF_PIPELINE_PATHS__RAW_ROOT": str(raw),
                  "MF_PIPELINE_PATHS__DATA_ROOT": str(root / "data"),
                  "MF_PIPELINE_PATHS__ARTIFACTS_ROOT": str(root / "artifacts"),
                  "MF_PIPELINE_PATHS__LOGS_ROOT": str(root / "logs"),
                  "DAGSTER_HOME": str(root / "dagster_home")}


def _mf_run(root: Path, raw: Path) -> None:
    code = "from mf_pipeline.cli import run\nrun()"
    done = subprocess.run([sys.executable, "-c", code, "run", "--until", "features"],
                          env=_env(root, raw), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _check_one_read(table: Path) -> int:
    """Read the whole table from one snapshot; returns its generation."""
    snapshot = lake.snapshot(table)
    scan = snapshot.scan()
    if scan is None:
        return snapshot.generation
    try:
        rows = scan.select("ticker", "trade_date").collect()
    except FileNotFoundError:  # collected under a very slow read: the helpers retry
        return snapshot.generation
    counts = dict(rows.group_by("ticker").len().iter_rows())
    promised = dict(snapshot.per_ticker().select("ticker", "rows").iter_rows())
    assert counts == promised, f"generation {snapshot.generation}: a read mixed two commits"
    assert rows.n_unique() == rows.height, f"generation {snapshot.generation}: a date twice"
    return snapshot.generation


def test_a_reader_sees_whole_commits_during_nightly_appends_and_compactions(tmp_path):
    raw, root = tmp_path / "raw", tmp_path / "lake"
    (root / "dagster_home").mkdir(parents=True)
    generate_universe(raw, n_tickers=24, years=2.0, seed=11)
    _mf_run(root, raw)
    tables = [root / "data" / "bronze" / "ohlcv_by_symbol",
              root / "data" / "gold" / "features_by_symbol"]
    stop, seen, failures = threading.Event(), {t: set() for t in tables}, []

    def reader() -> None:
        try:
            while not stop.is_set():
                for table in tables:
                    seen[table].add(_check_one_read(table))
        except AssertionError as error:
            failures.append(error)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(NIGHTS):
            assert append_one_bar(raw) > 0
            _mf_run(root, raw)
    finally:
        stop.set()
        thread.join()
    assert not failures, failures[0]
    for table in tables:
        assert len(seen[table]) > NIGHTS // 2  # the reader saw many generations go by
        index = lake.snapshot(table).index
        merged = index.filter(pl.col("file_rows") > pl.col("rows").sum().over("file"))
        assert merged.is_empty()  # no live file carries superseded rows
        # compactions happened: some live file was written by a merge, not by a run
        assert any("compacted_generation" in (pl.read_parquet_metadata(path) or {})
                   for path in lake.snapshot(table).files())
        files_per_shard = index.group_by("shard").agg(pl.col("file").n_unique())["file"]
        assert files_per_shard.max() <= lake_table.MAX_FILES_PER_SHARD
