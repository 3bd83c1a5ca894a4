"""Hostile raw input (issue #16): symlinks, undecodable and look-alike names, values that
overflow the storage precision, and huge lines. Each must become a FAILED file or a rejected /
invalid row with a clear reason, never stop the run, never leak outside the raw root, and the
rest of the universe must ingest; the ledger still reconciles."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from mf_pipeline.lib import lake
from mf_pipeline.lib.layers import manifest as mf
from mf_pipeline.lib.layers.bronze.build import build_bronze
from mf_pipeline.lib.layers.bronze.ledger import reconcile
from mf_pipeline.lib.layers.bronze.read import read_rows
from mf_pipeline.lib.layers.bronze.validate import ValidationThresholds
from mf_pipeline.lib.steps import bronze_step

HEADER = "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>\n"
TS = datetime(2024, 5, 6, tzinfo=UTC)
SECRET = "root:x:0:0:secret-canary:/root:/bin/bash\n"


def bars(ticker: str, n: int = 3, first_day: int = 2) -> str:
    return "".join(f"{ticker},D,202401{first_day + i:02d},000000,10,11,9,10.5,1000,0\n"
                   for i in range(n))


def folder(raw: Path) -> Path:
    path = raw / "nasdaq stocks" / "1"
    path.mkdir(parents=True, exist_ok=True)
    return path


def universe(raw: Path) -> Path:
    """Two clean tickers."""
    d = folder(raw)
    (d / "spy.us.txt").write_text(HEADER + bars("SPY.US"))
    (d / "ibm.us.txt").write_text(HEADER + bars("IBM.US"))
    return d


def ingest(settings, run_id: str = "bronze-run-test") -> bronze_step.BronzeOutcome:
    outcome = bronze_step.run_manifest(settings, run_id, log=lambda _m: None)
    return bronze_step.run_bronze(settings, outcome.to_process, run_id, log=lambda _m: None)


def ledger(settings) -> pl.DataFrame:
    return pl.read_parquet(bronze_step.paths(settings).ledger)


def rejects(settings) -> pl.DataFrame:
    path = bronze_step.paths(settings).rejects
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(
        schema={"source_file": pl.String, "raw_line": pl.String})


def row_of(settings, source_file: str) -> dict:
    rows = ledger(settings).filter(pl.col("source_file") == source_file)
    assert rows.height == 1, ledger(settings)
    return rows.row(0, named=True)


def assert_rest_ingested(settings, tickers=("IBM.US", "SPY.US")) -> None:
    assert bronze_step.reconciliation_failures(settings).is_empty()
    panel = lake.read_layer(settings, "bronze", list(tickers))
    assert sorted(set(panel["ticker"])) == sorted(tickers)


# --------------------------------------------------------------------------- 3. symlinks


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "passwd"
    path.parent.mkdir()
    path.write_text(SECRET * 3)
    return path


def test_file_symlink_out_of_the_root_is_never_read(isolated, tmp_path, secret):
    raw = tmp_path / "raw"
    d = universe(raw)
    (d / "evil.us.txt").symlink_to(secret)
    settings = isolated(raw)
    ingest(settings)
    row = row_of(settings, "nasdaq stocks/1/evil.us.txt")
    assert row["status"] == "FAILED"
    assert row["reasons"] == mf.SYMLINK_OUTSIDE_ROOT
    assert row["lines_total"] == 0 and row["ticker"] is None
    assert not rejects(settings)["raw_line"].str.contains("secret-canary").any()
    manifest = pl.read_parquet(bronze_step.paths(settings).current_manifest)
    evil = manifest.filter(pl.col("source_file") == "nasdaq stocks/1/evil.us.txt")
    assert evil["path"].to_list() == [None]
    assert evil["file_size_bytes"][0] != secret.stat().st_size  # the link's own size
    assert_rest_ingested(settings)


def test_symlink_inside_the_root_is_not_followed_by_default(isolated, tmp_path):
    raw = tmp_path / "raw"
    d = universe(raw)
    (raw / "store").mkdir()
    (raw / "store" / "data.csv").write_text(HEADER + bars("QQQ.US"))
    (d / "qqq.us.txt").symlink_to(raw / "store" / "data.csv")
    settings = isolated(raw)
    ingest(settings)
    row = row_of(settings, "nasdaq stocks/1/qqq.us.txt")
    assert (row["status"], row["reasons"]) == ("FAILED", mf.SYMLINK_NOT_FOLLOWED)
    assert lake.read_layer(settings, "bronze", ["QQQ.US"]).is_empty()
    assert_rest_ingested(settings)


def test_inside_root_setting_follows_links_that_stay_inside(isolated, tmp_path, secret,
                                                            monkeypatch):
    raw = tmp_path / "raw"
    d = universe(raw)
    (raw / "store").mkdir()
    (raw / "store" / "data.csv").write_text(HEADER + bars("QQQ.US"))
    (d / "qqq.us.txt").symlink_to(Path("..") / ".." / "store" / "data.csv")  # relative
    (d / "evil.us.txt").symlink_to(secret)
    (d / "loop.us.txt").symlink_to(d / "loop.us.txt")
    (d / "gone.us.txt").symlink_to(raw / "store" / "missing.txt")
    monkeypatch.setenv("MF_PIPELINE_INGEST__FOLLOW_SYMLINKS", "inside_root")
    settings = isolated(raw)
    assert settings.ingest.follow_symlinks == "inside_root"
    ingest(settings)
    assert row_of(settings, "nasdaq stocks/1/qqq.us.txt")["status"] == "OK"
    assert lake.read_layer(settings, "bronze", ["QQQ.US"]).height == 3
    assert row_of(settings, "nasdaq stocks/1/evil.us.txt")["reasons"] == mf.SYMLINK_OUTSIDE_ROOT
    assert row_of(settings, "nasdaq stocks/1/loop.us.txt")["status"] == "FAILED"
    assert row_of(settings, "nasdaq stocks/1/gone.us.txt")["status"] == "FAILED"
    assert not rejects(settings)["raw_line"].str.contains("secret-canary").any()
    assert_rest_ingested(settings, ("IBM.US", "QQQ.US", "SPY.US"))


def test_sensor_precheck_does_not_follow_symlinks(tmp_path, secret):
    raw = tmp_path / "raw"
    d = universe(raw)
    (d / "evil.us.txt").symlink_to(secret)
    (d / "loop.us.txt").symlink_to(d / "loop.us.txt")
    changes = mf.stat_changes(raw, mf.empty_manifest())
    evil = changes.filter(pl.col("source_file") == "nasdaq stocks/1/evil.us.txt").row(0, named=True)
    link = os.lstat(d / "evil.us.txt")
    assert evil["signature"].split("|")[0] == str(link.st_size) != str(secret.stat().st_size)
    assert evil["ticker"] is None
    assert "nasdaq stocks/1/loop.us.txt" in changes["source_file"].to_list()
    assert set(changes["ticker"].drop_nulls()) == {"IBM.US", "SPY.US"}


def test_a_file_swapped_for_a_symlink_after_discovery_is_not_read(tmp_path, secret):
    d = folder(tmp_path / "raw")
    path = d / "aapl.us.txt"
    path.symlink_to(secret)  # what discovery saw was a regular file at this path
    files = pl.DataFrame({"source_file": ["nasdaq stocks/1/aapl.us.txt"], "path": [str(path)],
                          "ticker": ["AAPL.US"], "exchange": ["NASDAQ"], "fail_reason": [None]},
                         schema_overrides={"fail_reason": pl.String})
    result = build_bronze(files, ValidationThresholds(), "r", TS)
    assert result.ledger["status"].to_list() == ["FAILED"]
    assert "read_error" in result.ledger["reasons"][0]
    assert result.rejects.height == 0 and result.valid.height == 0


# --------------------------------------------------------------------------- 4. bad bytes


def test_a_non_utf8_file_name_fails_alone(isolated, tmp_path):
    raw = tmp_path / "raw"
    d = universe(raw)
    fd = os.open(os.fsencode(d) + b"/\xff\xfe.us.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, (HEADER + bars("SPY.US")).encode())
    os.close(fd)
    settings = isolated(raw)
    ingest(settings)
    name = "nasdaq stocks/1/\\xff\\xfe.us.txt"
    row = row_of(settings, name)
    assert row["status"] == "FAILED" and row["reasons"] == mf.NON_UTF8_PATH
    assert row["ticker"] is None
    assert_rest_ingested(settings)
    changes = mf.stat_changes(raw, mf.empty_manifest())  # the sensor's pre-check too
    assert name in changes["source_file"].to_list()
    assert ingest(settings).files_processed == 0  # promoted: a fact about the tree


# --------------------------------------------------------------------------- 5. look-alikes


@pytest.mark.parametrize("name", ["ſpy.us.txt", "ıbm.us.txt", "ﬁx.us.txt", "\u00a0spy.us.txt",
                                  "spy\u200b.us.txt"])
def test_non_ascii_names_are_invalid_not_collisions(name):
    ticker = lake.ticker_from_file_name(name)
    assert not lake.is_valid_ticker(ticker), ticker
    assert not lake.is_valid_ticker("ſPY.US")


def test_a_unicode_look_alike_cannot_knock_out_a_real_ticker(isolated, tmp_path):
    raw = tmp_path / "raw"
    d = universe(raw)
    (d / "ſpy.us.txt").write_text(HEADER)
    (d / "ıbm.us.txt").write_text(HEADER + bars("IBM.US"))
    (d / "ﬁx.us.txt").write_text(HEADER + bars("FIX.US"))
    settings = isolated(raw)
    ingest(settings)
    for name in ("ſpy.us.txt", "ıbm.us.txt", "ﬁx.us.txt"):
        row = row_of(settings, f"nasdaq stocks/1/{name}")
        assert row["status"] == "FAILED" and row["ticker"] is None
        assert row["reasons"].split(",")[-1] == mf.INVALID_FILE_TICKER, row
    assert row_of(settings, "nasdaq stocks/1/spy.us.txt")["status"] == "OK"
    assert row_of(settings, "nasdaq stocks/1/ibm.us.txt")["status"] == "OK"
    assert lake.read_layer(settings, "bronze", ["FIX.US"]).is_empty()
    assert_rest_ingested(settings)


# --------------------------------------------------------------------------- 6. overflow


def build_one(tmp_path: Path, text: str | bytes, **read) -> tuple:
    d = folder(tmp_path / "raw")
    path = d / "aapl.us.txt"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    files = pl.DataFrame({"source_file": ["nasdaq stocks/1/aapl.us.txt"], "path": [str(path)],
                          "ticker": ["AAPL.US"], "exchange": ["NASDAQ"], "fail_reason": [None]},
                         schema_overrides={"fail_reason": pl.String})
    result = build_bronze(files, ValidationThresholds(), "r", TS, **read)
    assert reconcile(result.ledger).is_empty()
    return result, files


@pytest.mark.parametrize("line", [
    "AAPL.US,D,20240102,000000,1e308,1e308,1e308,1e308,1000,0",
    "AAPL.US,D,20240102,000000,10,11,9,10.5,1e308,0",
    "AAPL.US,D,20240102,000000,10,4e38,9,10.5,1000,0",
    "AAPL.US,D,20240102,000000,10,11,9,10.5,-4e38,0",
    "AAPL.US,D,20240102,000000,1e-300,1e-300,1e-300,1e-300,1000,0",
])
def test_values_beyond_float32_are_invalid(tmp_path, line):
    result, _ = build_one(tmp_path, HEADER + line + "\n" + bars("AAPL.US", 1, 5))
    assert result.valid.height == 1
    [reject] = result.rejects.to_dicts()
    assert reject["kind"] == "invalid" and reject["line_no"] == 2
    assert "value_out_of_range" in reject["reason"].split(","), reject
    assert "value_out_of_range" in result.ledger["reasons"][0]
    assert "q_value_out_of_range" not in result.valid.columns  # stored schema unchanged


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "NaN", "Infinity"])
def test_non_finite_text_is_invalid(tmp_path, value):
    result, _ = build_one(tmp_path, HEADER + f"AAPL.US,D,20240102,000000,10,11,9,{value},1000,0\n")
    assert result.valid.height == 0
    assert "parse_error" in result.rejects["reason"][0]


def test_float32_limits_are_kept(tmp_path):
    result, _ = build_one(tmp_path, HEADER + "AAPL.US,D,20240102,000000,3e38,3e38,3e38,3e38,0,0\n")
    assert result.valid.height == 1


# --------------------------------------------------------------------------- 8. huge lines


def test_an_over_long_line_is_rejected_with_its_line_number(tmp_path):
    long = "AAPL.US,D,20240103,000000," + "9" * 5000 + ",11,9,10.5,1000,0"
    text = HEADER + bars("AAPL.US", 1) + long + "\n" + bars("AAPL.US", 2, 5)
    result, _ = build_one(tmp_path, text, max_line_bytes=4096)
    assert result.valid.height == 3
    [reject] = result.rejects.to_dicts()
    assert reject["line_no"] == 3 and reject["kind"] == "rejected"
    assert reject["reason"] == f"line_too_long:{len(long)}"
    assert len(reject["raw_line"]) < 300 and reject["raw_line"].startswith("AAPL.US,D,20240103")
    row = result.ledger.row(0, named=True)
    assert (row["lines_total"], row["rows_rejected"], row["rows_valid"]) == (5, 1, 3)


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_long_lines_across_read_chunks(tmp_path, chunk, monkeypatch):
    from mf_pipeline.lib.layers.bronze import read

    monkeypatch.setattr(read, "READ_CHUNK", chunk)
    long = "x" * 300
    lines = [HEADER.strip(), bars("AAPL.US", 1).strip(), long, "", long + "\r",
             bars("AAPL.US", 1, 4).strip(), long]
    for end in ("", "\n"):
        result, files = build_one(tmp_path, "\n".join(lines) + end, max_line_bytes=100)
        assert result.rejects["line_no"].to_list() == [3, 5, 7]
        assert result.rejects["reason"].to_list() == ["line_too_long:300", "line_too_long:301",
                                                      "line_too_long:300"]
        assert result.valid["source_line_no"].to_list() == [2, 6]
        stats = read_rows(files, max_line_bytes=100).files.row(0, named=True)
        assert (stats["lines_total"], stats["lines_blank"]) == (7, 1)


def test_a_huge_single_line_file_does_not_stop_the_universe(isolated, tmp_path):
    raw = tmp_path / "raw"
    d = universe(raw)
    with open(d / "huge.us.txt", "wb") as handle:
        handle.write(HEADER.encode())
        block = b"9" * (1 << 20)
        for _ in range(20):
            handle.write(block)
        handle.write(b"\n" + bars("HUGE.US", 1).encode())
    settings = isolated(raw)
    ingest(settings)
    row = row_of(settings, "nasdaq stocks/1/huge.us.txt")
    assert (row["status"], row["rows_rejected"], row["rows_valid"]) == ("OK", 1, 1)
    [reject] = rejects(settings).filter(pl.col("source_file") == "nasdaq stocks/1/huge.us.txt"
                                        ).to_dicts()
    assert reject["line_no"] == 2 and reject["reason"] == f"line_too_long:{20 << 20}"
    assert_rest_ingested(settings, ("HUGE.US", "IBM.US", "SPY.US"))


def test_a_file_larger_than_the_limit_is_failed_unread(isolated, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    d = universe(raw)
    (d / "big.us.txt").write_text(HEADER + bars("BIG.US", 29))
    monkeypatch.setenv("MF_PIPELINE_INGEST__MAX_FILE_BYTES", "1000")
    settings = isolated(raw)
    ingest(settings)
    row = row_of(settings, "nasdaq stocks/1/big.us.txt")
    assert (row["status"], row["reasons"], row["lines_total"]) == ("FAILED", mf.FILE_TOO_LARGE, 0)
    assert_rest_ingested(settings)


# --------------------------------------------------------------------------- append path


def test_the_append_path_applies_the_same_rules(isolated, tmp_path, monkeypatch):
    """Appended over-long and out-of-range lines: the nightly path rejects / invalidates them
    exactly as a full build of the whole file does."""
    monkeypatch.setenv("MF_PIPELINE_INGEST__MAX_LINE_BYTES", "200")
    raw = tmp_path / "raw"
    d = universe(raw)
    settings = isolated(raw)
    ingest(settings, "bronze-run-one")
    with open(d / "spy.us.txt", "a") as handle:
        handle.write("SPY.US,D,20240110,000000," + "1" * 300 + ",11,9,10.5,1000,0\n")
        handle.write("SPY.US,D,20240111,000000,10,11,9,10.5,1e308,0\n")
        handle.write(bars("SPY.US", 1, 12))
    outcome = ingest(settings, "bronze-run-two")
    assert len(outcome.appended_rows) == 1
    spy = "nasdaq stocks/1/spy.us.txt"
    got = rejects(settings).filter(pl.col("source_file") == spy).select(
        "line_no", "kind", "reason", "raw_line")
    assert got["reason"].to_list() == ["line_too_long:342", "value_out_of_range"]
    assert got["line_no"].to_list() == [5, 6]
    row = row_of(settings, spy)

    fresh = tmp_path / "fresh"
    monkeypatch.setenv("MF_PIPELINE_PATHS__DATA_ROOT", str(fresh / "data"))
    full_settings = isolated(raw)
    assert not ingest(full_settings, "bronze-run-full").appended_rows
    full = rejects(full_settings).filter(pl.col("source_file") == spy).select(got.columns)
    assert got.equals(full)
    skip = {"run_id"}
    assert {k: v for k, v in row.items() if k not in skip} == {
        k: v for k, v in row_of(full_settings, spy).items() if k not in skip}
    assert (row["rows_valid"], row["rows_rejected"], row["rows_invalid"]) == (4, 1, 1)
    assert bronze_step.reconciliation_failures(settings).is_empty()


def test_a_file_replaced_by_a_symlink_retires_its_ticker(isolated, tmp_path, secret):
    raw = tmp_path / "raw"
    d = universe(raw)
    (d / "aapl.us.txt").write_text(HEADER + bars("AAPL.US"))
    settings = isolated(raw)
    ingest(settings)
    assert lake.read_layer(settings, "bronze", ["AAPL.US"]).height == 3
    (d / "aapl.us.txt").unlink()
    (d / "aapl.us.txt").symlink_to(secret)
    outcome = bronze_step.run_manifest(settings, "r2", log=lambda _m: None)
    assert "AAPL.US" in outcome.to_process
    assert "AAPL.US" in bronze_step.pending_tickers(settings)
    bronze_step.run_bronze(settings, outcome.to_process, "r2", log=lambda _m: None)
    assert lake.read_layer(settings, "bronze", ["AAPL.US"]).is_empty()
    row = row_of(settings, "nasdaq stocks/1/aapl.us.txt")
    assert (row["status"], row["reasons"]) == ("FAILED", mf.SYMLINK_OUTSIDE_ROOT)
    assert_rest_ingested(settings)
    assert ingest(settings, "r3").files_processed == 0
