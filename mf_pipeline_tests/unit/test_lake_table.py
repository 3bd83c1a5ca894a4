"""Lake v2 tables (``lib/lake_table.py``): commits, listings, compaction, whole-commit reads."""

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mf_pipeline.lib import lake, lake_table
from mf_pipeline.lib.partitions import SHARD_COUNT, shard_of

START = dt.date(2020, 1, 1)


def bars(tickers, first: dt.date, days: int, value: float = 0.0) -> pl.DataFrame:
    """Bars with a ``high`` column, like Bronze's (the table's own columns must not clash)."""
    rows = [(t, "NYSE", first + dt.timedelta(days=i), value + i, value + i + 1)
            for t in tickers for i in range(days)]
    return pl.DataFrame(rows, orient="row", schema={
        "ticker": pl.String, "exchange": pl.String, "trade_date": pl.Date, "close": pl.Float64,
        "high": pl.Float64})


TICKERS = [f"T{i:02d}.US" for i in range(40)]


def test_roundtrip_sorted_with_listings(tmp_path):
    frame = bars(["B.US", "A.US"], START, 3)
    written = lake.write_symbol_files(frame, tmp_path)
    assert written.generation == 1
    assert lake.read_tickers(tmp_path).equals(frame.sort("ticker", "trade_date"))
    assert lake.read_tickers(tmp_path, ["B.US"], ["trade_date", "close"]).rows() == [
        (START, 0.0), (START + dt.timedelta(days=1), 1.0), (START + dt.timedelta(days=2), 2.0)]
    assert lake.symbol_tickers(tmp_path) == ["A.US", "B.US"]
    version = written.listings["A.US"].split(":")[0]
    assert written.listings == {"A.US": f"{version}:3:2020-01-03",
                                "B.US": f"{version}:3:2020-01-03"}
    assert lake.listings(tmp_path) == written.listings


def test_files_are_shard_files_sorted_by_ticker_and_date(tmp_path):
    lake.write_symbol_files(bars(list(reversed(TICKERS)), START, 2), tmp_path)
    snapshot = lake.snapshot(tmp_path)
    assert len(snapshot.files()) == len({shard_of(t) for t in TICKERS})
    for path in snapshot.files():
        shard = path.parent.name.removeprefix("shard=")
        rows = pl.read_parquet(path)
        assert {shard_of(t) for t in rows["ticker"]} == {shard}
        assert rows.equals(rows.sort("ticker", "trade_date"))


def test_append_keeps_the_version_and_grows_the_rows(tmp_path):
    first = lake.write_symbol_files(bars(["A.US", "B.US"], START, 3), tmp_path)
    appended = lake.write_symbol_files(bars(["A.US"], START + dt.timedelta(days=3), 1, 3.0),
                                       tmp_path, append=True)
    old_version = first.listings["A.US"].split(":")[0]
    assert appended.listings == {"A.US": f"{old_version}:4:2020-01-04"}
    assert lake.read_tickers(tmp_path, ["A.US"])["close"].to_list() == [0.0, 1.0, 2.0, 3.0]
    assert lake.listings(tmp_path)["B.US"] == first.listings["B.US"]


def test_replace_gives_a_new_version_and_hides_the_old_rows(tmp_path):
    first = lake.write_symbol_files(bars(["A.US", "B.US"], START, 3), tmp_path)
    second = lake.write_symbol_files(bars(["A.US"], START, 2, 100.0), tmp_path)
    assert second.listings["A.US"].split(":")[0] != first.listings["A.US"].split(":")[0]
    assert lake.read_tickers(tmp_path, ["A.US"])["close"].to_list() == [100.0, 101.0]
    assert lake.read_tickers(tmp_path).height == 5
    assert lake.listings(tmp_path)["B.US"] == first.listings["B.US"]


def test_remove_drops_every_row_and_names_only_stored_tickers(tmp_path):
    lake.write_symbol_files(bars(["A.US", "B.US"], START, 3), tmp_path)
    assert lake.remove_symbol_files(tmp_path, ["A.US", "NOPE.US"]) == ["A.US"]
    assert lake.symbol_tickers(tmp_path) == ["B.US"]
    assert lake.read_tickers(tmp_path, ["A.US"]).is_empty()
    generation = lake.snapshot(tmp_path).generation
    assert lake.remove_symbol_files(tmp_path, ["NOPE.US"]) == []
    assert lake.snapshot(tmp_path).generation == generation  # nothing to do: no commit


def _files_per_shard(root: Path) -> dict[str, int]:
    index = lake.snapshot(root).index
    return dict(index.group_by("shard").agg(pl.col("file").n_unique()).iter_rows())


def test_nightly_appends_keep_a_bounded_number_of_files(tmp_path):
    lake.write_symbol_files(bars(TICKERS, START, 20), tmp_path)
    for night in range(30):
        lake.write_symbol_files(bars(TICKERS, START + dt.timedelta(days=20 + night), 1,
                                     20.0 + night), tmp_path, append=True)
        assert max(_files_per_shard(tmp_path).values()) <= lake_table.MAX_FILES_PER_SHARD
        parquet = lake_table.data_file_count(tmp_path)
        # live files, the files the last commit retired, and one index
        assert parquet <= 2 * SHARD_COUNT * lake_table.MAX_FILES_PER_SHARD + 1
    assert lake.read_tickers(tmp_path).equals(bars(TICKERS, START, 50).sort("ticker",
                                                                            "trade_date"))
    versions = {listing.split(":")[0] for listing in lake.listings(tmp_path).values()}
    assert len(versions) == 1  # compactions moved rows; no ticker was rewritten


def test_a_mostly_superseded_file_is_merged_away(tmp_path):
    lake.write_symbol_files(bars(TICKERS, START, 5), tmp_path)
    before = set(lake.snapshot(tmp_path).files())
    lake.write_symbol_files(bars(TICKERS[:30], START, 5, 50.0), tmp_path)
    index = lake.snapshot(tmp_path).index
    live = index.group_by("file").agg(pl.col("rows").sum(), pl.col("file_rows").first())
    assert (live["rows"] * 2 >= live["file_rows"]).all()  # no file is mostly dead rows
    assert before - set(lake.snapshot(tmp_path).files())  # some old files were retired
    expected = pl.concat([bars(TICKERS[:30], START, 5, 50.0), bars(TICKERS[30:], START, 5)])
    assert lake.read_tickers(tmp_path).equals(expected.sort("ticker", "trade_date"))


def test_retired_files_are_deleted_one_commit_later(tmp_path):
    lake.write_symbol_files(bars(["A.US"], START, 3), tmp_path)
    old = lake.snapshot(tmp_path).files()
    lake.write_symbol_files(bars(["A.US"], START, 3, 9.0), tmp_path)
    assert all(path.exists() for path in old)  # a reader of the previous snapshot finds them
    lake.write_symbol_files(bars(["B.US"], START, 1), tmp_path)
    assert not any(path.exists() for path in old)


def test_a_v1_lake_is_refused_with_a_clear_message(tmp_path):
    (tmp_path / "exchange=NYSE" / "prefix=A" / "ticker=A.US").mkdir(parents=True)
    with pytest.raises(lake_table.LakeFormatError, match="mf doctor --repair"):
        lake.read_tickers(tmp_path)
    with pytest.raises(lake_table.LakeFormatError, match="v1 lake layout"):
        lake.write_symbol_files(bars(["A.US"], START, 1), tmp_path)


def test_an_unknown_format_is_refused(tmp_path):
    (tmp_path / lake_table.POINTER).write_text(json.dumps({"format": "mf-lake/9"}))
    with pytest.raises(lake_table.LakeFormatError, match="mf-lake/9"):
        lake.snapshot(tmp_path)


def test_files_of_a_killed_writer_are_invisible_and_swept(tmp_path):
    lake.write_symbol_files(bars(["A.US"], START, 3), tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    tag = lake.writer_tag().split("-", 1)[1]  # this host's start/host fields
    orphan = tmp_path / "shard=00" / f"part-w{dead}-{tag}-deadbeef00.parquet"
    orphan.parent.mkdir(exist_ok=True)
    bars(["ZZ.US"], START, 2).write_parquet(orphan)
    assert lake.symbol_tickers(tmp_path) == ["A.US"]  # never committed: nobody sees it
    lake.write_symbol_files(bars(["B.US"], START, 1), tmp_path)
    assert not orphan.exists()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5, unique=True))
def test_any_ticker_text_stays_inside_the_table(tmp_path_factory, names):
    root = tmp_path_factory.mktemp("lake")
    lake.write_symbol_files(bars(names, START, 1), root)
    for path in root.rglob("*"):
        assert root.resolve() in path.resolve().parents
    assert lake.symbol_tickers(root) == sorted(names)


def _consistent_reads(root: Path, stop: threading.Event, seen: list[int]) -> None:
    """Read the whole table over and over: every commit appends one bar to EVERY ticker, so a
    whole commit shows the same row count for all tickers; a mix of two would not."""
    while not stop.is_set():
        counts = lake.read_tickers(root).group_by("ticker").len()["len"].unique().to_list()
        assert len(counts) == 1, f"a read mixed two commits: row counts {counts}"
        seen.append(counts[0])


def test_a_reader_during_appends_and_compactions_sees_whole_commits(tmp_path):
    lake.write_symbol_files(bars(TICKERS, START, 10), tmp_path)
    stop, seen, failures = threading.Event(), [], []

    def reader() -> None:
        try:
            _consistent_reads(tmp_path, stop, seen)
        except AssertionError as error:
            failures.append(error)

    thread = threading.Thread(target=reader)
    thread.start()
    for night in range(25):
        lake.write_symbol_files(bars(TICKERS, START + dt.timedelta(days=10 + night), 1),
                                tmp_path, append=True)
    stop.set()
    thread.join()
    assert not failures, failures[0]
    assert len(set(seen)) > 1  # the reader did see several generations


def test_two_processes_committing_different_shards_lose_nothing(tmp_path):
    """Two writers at once (e.g. two workers on different shards): the commit lock serialises
    the index updates, so both sets of tickers are there afterwards."""
    script = (
        "import sys, datetime as dt, polars as pl\n"
        "from pathlib import Path\n"
        "from mf_pipeline.lib import lake\n"
        "root, prefix = Path(sys.argv[1]), sys.argv[2]\n"
        "for n in range(15):\n"
        "    t = [f'{prefix}{n}.US']\n"
        "    f = pl.DataFrame({'ticker': t, 'exchange': ['NYSE'], "
        "'trade_date': [dt.date(2020, 1, 1)], 'close': [1.0]})\n"
        "    lake.write_symbol_files(f, root)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), prefix], env=env)
             for prefix in ("P", "Q")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert len(lake.symbol_tickers(tmp_path)) == 30
    assert lake.snapshot(tmp_path).generation == 30


def test_re_running_an_append_commits_nothing_twice(tmp_path):
    """A run killed after its append commit but before the manifest was promoted appends the
    same bars again on its rerun: they are already there."""
    lake.write_symbol_files(bars(["A.US", "B.US"], START, 3), tmp_path)
    night = pl.concat([bars(["A.US"], START + dt.timedelta(days=3), 1, 3.0),
                       bars(["C.US"], START, 1, 7.0)])
    first = lake.write_symbol_files(night, tmp_path, append=True)
    again = lake.write_symbol_files(night, tmp_path, append=True)
    assert again.listings == {} and again.generation == first.generation  # no commit at all
    assert lake.read_tickers(tmp_path, ["A.US"])["close"].to_list() == [0.0, 1.0, 2.0, 3.0]
    assert lake.read_tickers(tmp_path, ["C.US"])["close"].to_list() == [7.0]


def test_a_damaged_file_takes_its_tickers_listings_away(tmp_path):
    """A named file of another size than written (truncated, overwritten) or missing: its
    tickers read as stale, so the next run rebuilds them (which retires the file)."""
    lake.write_symbol_files(bars(TICKERS, START, 3), tmp_path)
    snapshot = lake.snapshot(tmp_path)
    victim = snapshot.files()[0]
    held = set(snapshot.index.filter(pl.col("file") == str(victim.relative_to(tmp_path)))
               ["ticker"].to_list())
    assert snapshot.damaged_files() == []
    victim.write_bytes(victim.read_bytes()[:-10])
    assert lake.snapshot(tmp_path).damaged_files() == [str(victim.relative_to(tmp_path))]
    assert set(lake.listings(tmp_path)) == set(TICKERS) - held
    lake.write_symbol_files(bars(sorted(held), START, 3, 5.0), tmp_path)  # the rebuild
    assert lake.snapshot(tmp_path).damaged_files() == []
    assert set(lake.listings(tmp_path)) == set(TICKERS)
    victim_two = lake.snapshot(tmp_path).files()[-1]
    victim_two.unlink()
    assert lake.snapshot(tmp_path).damaged_files() == [str(victim_two.relative_to(tmp_path))]
