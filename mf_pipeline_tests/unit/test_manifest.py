import polars as pl
import pytest

from mf_pipeline.lib.layers import manifest as mf

HEADER = "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>\n"


def line(ticker: str, day: int) -> str:
    return f"{ticker},D,202401{day:02d},000000,10,11,9,10.5,1000,0\n"


def make_tree(root):
    (root / "data" / "nasdaq stocks" / "1").mkdir(parents=True)
    (root / "data" / "nyse stocks" / "2").mkdir(parents=True)
    (root / "data" / "nasdaq etfs").mkdir(parents=True)
    (root / "data" / "nasdaq stocks" / "1" / "aaa.us.txt").write_text(HEADER + line("AAA.US", 2))
    (root / "data" / "nyse stocks" / "2" / "bbb.us.txt").write_text(HEADER + line("BBB.US", 2))
    (root / "data" / "nasdaq etfs" / "ccc.us.TXT").write_text(HEADER + line("CCC.US", 2))
    (root / "data" / "nasdaq etfs" / "notes.csv").write_text("ignored")


def test_discover_exchanges_tickers_and_fingerprints(tmp_path):
    make_tree(tmp_path)
    current = mf.discover(tmp_path)
    assert current["source_file"].to_list() == [
        "data/nasdaq etfs/ccc.us.TXT",
        "data/nasdaq stocks/1/aaa.us.txt",
        "data/nyse stocks/2/bbb.us.txt",
    ]
    assert current["exchange"].to_list() == ["UNKNOWN", "NASDAQ", "NYSE"]
    assert current["ticker"].to_list() == ["CCC.US", "AAA.US", "BBB.US"]
    assert current["fail_reason"].null_count() == 3
    assert all(len(h) == 16 for h in current["content_hash"])


def test_invalid_names_and_duplicate_sources_are_marked(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "data" / "nyse stocks" / "2" / "aaa.us.txt").write_text(HEADER)
    (tmp_path / "data" / "nyse stocks" / "2" / "bad name!.txt").write_text(HEADER)
    current = mf.discover(tmp_path)
    reasons = dict(zip(current["source_file"], current["fail_reason"], strict=True))
    assert reasons["data/nyse stocks/2/bad name!.txt"] == mf.INVALID_FILE_TICKER
    assert reasons["data/nyse stocks/2/aaa.us.txt"] == mf.DUPLICATE_SOURCE_TICKER
    assert reasons["data/nasdaq stocks/1/aaa.us.txt"] == mf.DUPLICATE_SOURCE_TICKER


def test_classification_new_unchanged_changed_appended_deleted(tmp_path):
    make_tree(tmp_path)
    first = mf.classify(mf.discover(tmp_path), mf.empty_manifest())
    assert set(first["manifest_status"]) == {mf.NEW}
    stable = first.drop("manifest_status", "prev_size")
    base = tmp_path / "data"
    aaa = base / "nasdaq stocks" / "1" / "aaa.us.txt"
    bbb = base / "nyse stocks" / "2" / "bbb.us.txt"
    ccc = base / "nasdaq etfs" / "ccc.us.TXT"
    with open(aaa, "a") as handle:  # new bar at the end
        handle.write(line("AAA.US", 3))
    bbb.write_text(HEADER + line("BBB.US", 9))  # same size, different content
    ccc.unlink()
    (base / "nyse stocks" / "2" / "ddd.us.txt").write_text(HEADER)
    second = mf.classify(mf.discover(tmp_path), stable)
    status = dict(zip(second["source_file"], second["manifest_status"], strict=True))
    assert status == {
        "data/nasdaq stocks/1/aaa.us.txt": mf.APPENDED,
        "data/nyse stocks/2/bbb.us.txt": mf.CHANGED,
        "data/nasdaq etfs/ccc.us.TXT": mf.DELETED,
        "data/nyse stocks/2/ddd.us.txt": mf.NEW,
    }
    assert mf.tickers_to_process(second) == ["AAA.US", "BBB.US", "CCC.US", "DDD.US"]
    assert mf.status_counts(second)[mf.UNCHANGED] == 0


def test_touch_is_unchanged_and_rewrite_of_prefix_is_changed(tmp_path):
    make_tree(tmp_path)
    stable = mf.classify(mf.discover(tmp_path), mf.empty_manifest()).drop(
        "manifest_status", "prev_size")
    aaa = tmp_path / "data" / "nasdaq stocks" / "1" / "aaa.us.txt"
    aaa.touch()
    assert set(mf.classify(mf.discover(tmp_path), stable)["manifest_status"]) == {mf.UNCHANGED}
    aaa.write_text(HEADER + line("AAA.US", 5) + line("AAA.US", 6))  # grew, but not by appending
    status = mf.classify(mf.discover(tmp_path), stable).filter(pl.col("ticker") == "AAA.US")
    assert status["manifest_status"].to_list() == [mf.CHANGED]


def test_promote_keeps_failed_files_out(tmp_path):
    make_tree(tmp_path)
    classified = mf.classify(mf.discover(tmp_path), mf.empty_manifest())
    promoted = mf.promote(mf.empty_manifest(), classified, ["data/nyse stocks/2/bbb.us.txt"], [])
    assert promoted["source_file"].to_list() == ["data/nyse stocks/2/bbb.us.txt"]
    again = mf.classify(mf.discover(tmp_path), promoted)
    status = dict(zip(again["ticker"], again["manifest_status"], strict=True))
    assert status == {"AAA.US": mf.NEW, "BBB.US": mf.UNCHANGED, "CCC.US": mf.NEW}


def test_stat_changes(tmp_path):
    make_tree(tmp_path)
    stable = mf.classify(mf.discover(tmp_path), mf.empty_manifest()).drop(
        "manifest_status", "prev_size")
    assert mf.stat_changes(tmp_path, stable).is_empty()
    with open(tmp_path / "data" / "nyse stocks" / "2" / "bbb.us.txt", "a") as handle:
        handle.write(line("BBB.US", 3))
    (tmp_path / "data" / "nasdaq etfs" / "ccc.us.TXT").unlink()
    changes = mf.stat_changes(tmp_path, stable)
    assert dict(zip(changes["ticker"], changes["change"], strict=True)) == {
        "CCC.US": "deleted", "BBB.US": "modified"}


def test_second_discovery_in_a_process_reuses_hashes_of_unchanged_files(tmp_path, monkeypatch):
    make_tree(tmp_path)
    first = mf.discover(tmp_path)
    hashed = []
    real = mf.hash_with_prefix
    monkeypatch.setattr(mf, "hash_with_prefix", lambda path, prefix: hashed.append(path.name)
                        or real(path, prefix))
    assert mf.discover(tmp_path)["content_hash"].to_list() == first["content_hash"].to_list()
    assert hashed == []
    aaa = tmp_path / "data" / "nasdaq stocks" / "1" / "aaa.us.txt"
    aaa.write_text(HEADER + line("AAA.US", 3))  # same size, new content and mtime
    again = mf.discover(tmp_path)
    assert hashed == ["aaa.us.txt"]
    assert again["content_hash"].to_list() != first["content_hash"].to_list()


def test_appended_is_decided_from_the_prefix_hash_of_the_same_read(tmp_path, monkeypatch):
    make_tree(tmp_path)
    stable = mf.classify(mf.discover(tmp_path), mf.empty_manifest()).drop(
        "manifest_status", "prev_size")
    aaa = tmp_path / "data" / "nasdaq stocks" / "1" / "aaa.us.txt"
    old_size = aaa.stat().st_size
    with open(aaa, "a") as handle:
        handle.write(line("AAA.US", 3))
    sizes = dict(zip(stable["path"], stable["file_size_bytes"], strict=True))
    current = mf.discover(tmp_path, prefixes=sizes)
    row = current.filter(pl.col("ticker") == "AAA.US").row(0, named=True)
    assert row["prefix_hash"] == mf.content_hash(aaa, limit=old_size) != row["content_hash"]
    monkeypatch.setattr(mf, "content_hash", lambda *a, **k: pytest.fail("read twice"))
    status = mf.classify(current, stable).filter(pl.col("ticker") == "AAA.US")
    assert status["manifest_status"].to_list() == [mf.APPENDED]


def test_growth_of_a_file_without_final_newline_is_a_change_not_an_append(tmp_path):
    make_tree(tmp_path)
    aaa = tmp_path / "data" / "nasdaq stocks" / "1" / "aaa.us.txt"
    aaa.write_text(HEADER + line("AAA.US", 2).rstrip("\n"))
    stable = mf.classify(mf.discover(tmp_path), mf.empty_manifest()).drop(
        "manifest_status", "prev_size")
    with open(aaa, "a") as handle:
        handle.write("\n" + line("AAA.US", 3))
    status = mf.classify(mf.discover(tmp_path), stable).filter(pl.col("ticker") == "AAA.US")
    assert status["manifest_status"].to_list() == [mf.CHANGED]


def test_a_file_unchanged_since_its_last_ingest_is_not_read_again(tmp_path, monkeypatch):
    """A new process (a nightly run) trusts the stable manifest's hash of a file whose size
    and mtime are unchanged, unless that mtime was too close to its discovery (racy)."""
    import datetime as dt
    import os

    make_tree(tmp_path)
    first = mf.discover(tmp_path)
    stable = mf.promote(first.head(0), mf.classify(first, first.head(0)),
                        first["source_file"].to_list(), [])
    # discovered long after the files were last written: all three are trusted
    stable = stable.with_columns(discovered_ts=pl.col("file_mtime") + dt.timedelta(hours=1))
    mf._HASHES.clear()  # another process: nothing remembered in memory
    hashed = []
    real = mf.hash_with_prefix
    monkeypatch.setattr(mf, "hash_with_prefix", lambda path, prefix: hashed.append(path.name)
                        or real(path, prefix))
    trusted = mf.trusted_hashes(stable)
    again = mf.discover(tmp_path, known=trusted)
    assert hashed == []
    assert again["content_hash"].to_list() == first["content_hash"].to_list()
    assert set(mf.classify(again, stable)["manifest_status"]) == {mf.UNCHANGED}
    aaa = tmp_path / "data" / "nasdaq stocks" / "1" / "aaa.us.txt"
    aaa.write_text(HEADER + line("AAA.US", 3))  # same size, new content, new mtime
    mf._HASHES.clear()
    edited = mf.discover(tmp_path, known=trusted)
    assert hashed == ["aaa.us.txt"]
    assert mf.classify(edited, stable).filter(pl.col("source_file").str.contains("aaa"))[
        "manifest_status"].to_list() == [mf.CHANGED]
    # a stable entry discovered within RACY_SECONDS of its mtime is never trusted
    racy = stable.with_columns(discovered_ts=pl.col("file_mtime") + dt.timedelta(seconds=1))
    assert mf.trusted_hashes(racy) == {}
    os.utime(aaa, ns=(0, 0))
    assert mf.discover(tmp_path, known=mf.trusted_hashes(stable)).filter(
        pl.col("source_file").str.contains("aaa"))["content_hash"].to_list() != [
        first.filter(pl.col("source_file").str.contains("aaa"))["content_hash"][0]]
