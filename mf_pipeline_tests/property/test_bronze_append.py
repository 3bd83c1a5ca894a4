"""The Bronze append fast path gives exactly what a full rebuild gives, or falls back.

Invariant: a raw file F cut at a line boundary into old content P and appended lines S.
Full ``build_bronze`` on F == ``build_bronze`` on P + ``build_bronze_append`` on F (prev_size
= len(P), context/ledger from the P build): valid rows, rejects and ledger rows equal (run id
and ingest timestamp aside), unless the file's ticker is in ``fallback``, and then nothing of
it is returned.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from mf_pipeline.lib.layers.bronze.append import AppendResult, build_bronze_append
from mf_pipeline.lib.layers.bronze.build import (
    BRONZE_COLUMNS,
    REJECTS_SCHEMA,
    BronzeResult,
    build_bronze,
)
from mf_pipeline.lib.layers.bronze.ledger import LEDGER_SCHEMA
from mf_pipeline.lib.layers.bronze.lines import rows_from_lines, split_lines, texts_frame
from mf_pipeline.lib.layers.bronze.read import HEAD_BYTES, read_appended
from mf_pipeline.lib.layers.bronze.validate import ValidationThresholds
from mf_pipeline.lib.layers.manifest import discover

HEADER = "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>"
TS = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
LATER = datetime(2024, 5, 7, 7, 8, 9, tzinfo=UTC)
T = ValidationThresholds()
SOURCE = "data/nasdaq stocks/1/aapl.us.txt"
RUN_COLUMNS = ["run_id", "ingest_ts"]
# Reasons of a full build after which a random cut may rightly need a full rebuild.
LOOKS_BACK = {"unsorted", "duplicate_line", "duplicate_ticker_date", "missing_field",
              "parse_error"}


def bar(day: date, o: float = 10.0, h: float = 11.0, lo: float = 9.0, c: float = 10.5,
        v: str = "1000", ticker: str = "AAPL.US", sep: str = ",") -> str:
    return sep.join([ticker, "D", day.strftime("%Y%m%d"), "000000", str(o), str(h), str(lo),
                     str(c), v, "0"])


def days(n: int, start: date = date(2020, 1, 2)) -> list[date]:
    return [start + timedelta(days=i) for i in range(n)]


def text(*lines: str, end: str = "\n") -> bytes:
    return (end.join(lines) + end).encode()


def files_frame(paths: list[str], sources: list[str], tickers: list[str | None],
                exchanges: list[str], fail: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"source_file": sources, "path": paths, "ticker": tickers, "exchange": exchanges,
         "fail_reason": fail},
        schema={k: pl.String for k in ("source_file", "path", "ticker", "exchange",
                                       "fail_reason")},
    )


def check(full: BronzeResult, old: BronzeResult, app: AppendResult) -> None:
    """The invariant, file by file; nothing of a fallback ticker in the append outputs."""
    assert tuple(app.valid.columns) == BRONZE_COLUMNS
    assert app.valid.schema == full.valid.schema
    assert app.rejects.schema == pl.Schema(REJECTS_SCHEMA)
    assert app.ledger.schema == pl.Schema(LEDGER_SCHEMA)
    assert app.ledger.height == 0 or set(app.ledger["run_id"]) == {"append"}
    fell = pl.col("ticker").is_in(app.fallback) | pl.col("ticker").is_null()
    for frame in (app.valid, app.rejects, app.ledger):
        assert frame.filter(fell).height == 0
    expected_ledger = full.ledger.filter(~fell)
    assert_frame_equal(app.ledger.drop("run_id"), expected_ledger.drop("run_id"))
    for source in expected_ledger["source_file"]:
        mine = pl.col("source_file") == source
        assert_frame_equal(
            full.valid.filter(mine).drop(RUN_COLUMNS),
            pl.concat([old.valid.filter(mine), app.valid.filter(mine)]).drop(RUN_COLUMNS),
        )
        assert_frame_equal(
            full.rejects.filter(mine),
            pl.concat([old.rejects.filter(mine), app.rejects.filter(mine)]),
        )


def split_build(tmp_path: Path, content: bytes, cut: int, ticker: str | None = "AAPL.US",
                fail: str | None = None, thresholds: ValidationThresholds = T,
                context: pl.DataFrame | None = None,
                ) -> tuple[BronzeResult, BronzeResult, AppendResult]:
    """Full build of ``content``, build of ``content[:cut]``, append of the rest; checked."""
    paths = []
    for folder, data in (("full", content), ("old", content[:cut])):
        path = tmp_path / folder / "aapl.us.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(str(path))
    full_files, old_files = (
        files_frame([p], [SOURCE], [ticker], ["NASDAQ"], [fail]) for p in paths
    )
    full = build_bronze(full_files, thresholds, "full", LATER)
    old = build_bronze(old_files, thresholds, "old", TS)
    appended = full_files.with_columns(pl.lit(cut, dtype=pl.Int64).alias("prev_size"))
    app = build_bronze_append(appended, old.rejects if context is None else context,
                              old.ledger, thresholds, "append", LATER)
    check(full, old, app)
    return full, old, app


def appended(tmp_path: Path, old: list[str], new: list[str], end: str = "\n", **kw: object,
             ) -> AppendResult:
    """Old lines, then new lines appended; returns the checked append result."""
    prefix = text(*old, end=end)
    return split_build(tmp_path, prefix + text(*new, end=end), len(prefix), **kw)[2]


def fast(result: AppendResult) -> AppendResult:
    assert result.fallback == []
    assert result.ledger.height == 1
    return result


def fell_back(result: AppendResult) -> None:
    assert result.fallback == ["AAPL.US"]
    assert result.valid.height == result.rejects.height == result.ledger.height == 0


BASE = [HEADER, *(bar(d) for d in days(20))]
NEXT = date(2020, 1, 22)


# --------------------------------------------------------------------------- clean appends


def test_one_bar_append_takes_the_fast_path(tmp_path: Path) -> None:
    result = fast(appended(tmp_path, BASE, [bar(NEXT, c=10.7)]))
    assert result.valid["source_line_no"].to_list() == [22]
    assert result.valid["close"].to_list() == [10.7]
    row = result.ledger.row(0, named=True)
    assert (row["lines_total"], row["rows_valid"], row["reasons"]) == (22, 21, "")
    assert row["max_trade_date"] == NEXT and row["min_trade_date"] == date(2020, 1, 2)
    assert result.rejects.height == 0


def test_several_bars_and_blank_lines(tmp_path: Path) -> None:
    new = [bar(NEXT), "", bar(NEXT + timedelta(days=1)), "   ", bar(NEXT + timedelta(days=2))]
    result = fast(appended(tmp_path, BASE, new))
    assert result.valid["source_line_no"].to_list() == [22, 24, 26]
    assert result.ledger["reasons"].to_list() == ["blank_lines"]


def test_wrong_field_counts_are_rejected_at_their_line(tmp_path: Path) -> None:
    short = ",".join(bar(NEXT).split(",")[:7])
    long = bar(NEXT) + ",0,0"
    result = fast(appended(tmp_path, BASE, [short, long]))
    assert result.rejects.select("line_no", "kind", "reason").rows() == [
        (22, "rejected", "too_few_columns:7"), (23, "rejected", "too_many_columns:12")]
    assert result.valid.height == 0


def test_gap_is_measured_from_the_last_old_valid_bar(tmp_path: Path) -> None:
    result = fast(appended(tmp_path, BASE, [bar(NEXT + timedelta(days=T.gap_days_warn + 1))]))
    assert result.valid["q_gap_in_calendar"].to_list() == [True]
    assert result.ledger["reasons"].to_list() == ["gap_in_calendar"]
    within = fast(appended(tmp_path, BASE, [bar(NEXT + timedelta(days=T.gap_days_warn - 2))]))
    assert within.valid["q_gap_in_calendar"].to_list() == [False]


def test_gap_skips_an_old_invalid_last_row(tmp_path: Path) -> None:
    old = [*BASE[:-1], bar(date(2020, 1, 21), h=8.0)]  # last old row invalid (high < low)
    result = fast(appended(tmp_path, old, [bar(date(2020, 1, 27))]))
    # 2020-01-20 (last valid) -> 01-27 is 7 days: no gap, although 01-21 -> 01-27 is 6.
    assert result.valid["q_gap_in_calendar"].to_list() == [False]
    gap = fast(appended(tmp_path, old, [bar(date(2020, 1, 28))]))
    assert gap.valid["q_gap_in_calendar"].to_list() == [True]


def test_return_outlier_against_the_last_old_bar(tmp_path: Path) -> None:
    # A 10x jump from the last close: Bronze has no previous-close rule, nothing is flagged.
    jump = fast(appended(tmp_path, BASE, [bar(NEXT, o=100.0, h=110.0, lo=95.0, c=105.0)]))
    assert jump.valid["q_suspicious_bar"].to_list() == [False]
    spike = fast(appended(tmp_path, BASE, [bar(NEXT, o=10.0, h=15.0, lo=9.5, c=14.5)]))
    assert spike.valid["q_suspicious_bar"].to_list() == [True]


def test_new_invalid_rows_and_ticker_mismatch(tmp_path: Path) -> None:
    new = [bar(NEXT, lo=-1.0), bar(NEXT + timedelta(days=1), ticker="MSFT.US"),
           bar(NEXT + timedelta(days=2), v="0")]
    result = fast(appended(tmp_path, BASE, new))
    assert result.rejects.select("line_no", "reason").rows() == [
        (22, "nonpositive_price"), (23, "ticker_mismatch")]
    assert result.valid["q_zero_volume"].to_list() == [True]


def test_old_invalid_rows_come_from_the_stored_rejects(tmp_path: Path) -> None:
    old = [*BASE[:-1], bar(date(2020, 1, 21), h=8.0)]
    # Appended after the invalid row's date: fast; without the stored rejects: fallback.
    fast(appended(tmp_path, old, [bar(NEXT)]))
    fell_back(appended(tmp_path, old, [bar(NEXT)], context=pl.DataFrame(schema=REJECTS_SCHEMA)))


@pytest.mark.parametrize("end", ["\r\n", "\n"])
def test_crlf_files(tmp_path: Path, end: str) -> None:
    result = fast(appended(tmp_path, BASE, [bar(NEXT)], end=end))
    assert result.ledger["reasons"].to_list() == (["crlf"] if end == "\r\n" else [""])
    # A CRLF line appended to an LF file adds the note, as a full rebuild does.
    mixed = fast(appended(tmp_path, BASE, [bar(NEXT) + "\r"]))
    assert mixed.ledger["reasons"].to_list() == ["crlf"]


def test_bom_missing_header_and_tab_delimiter(tmp_path: Path) -> None:
    bom = fast(appended(tmp_path, ["\ufeff" + HEADER, *BASE[1:]], ["\ufeff" + bar(NEXT)]))
    # A later U+FEFF is data, not a BOM: it stays in the ticker.
    assert bom.ledger["reasons"].to_list() == ["bom,ticker_mismatch"]
    assert bom.valid.height == 0 and bom.rejects["reason"].to_list() == ["ticker_mismatch"]
    fast(appended(tmp_path, BASE[1:], [bar(NEXT)]))
    tabs = [bar(d, sep="\t") for d in days(20)]
    result = fast(appended(tmp_path, tabs, [bar(NEXT, sep="\t"), bar(NEXT, sep=",")]))
    assert result.valid.height == 1 and result.rejects["reason"].to_list() == [
        "too_few_columns:1"]


# --------------------------------------------------------------------------- fallbacks


@pytest.mark.parametrize(
    "new",
    [
        [BASE[-1]],  # identical duplicate of the last line
        [bar(date(2020, 1, 21), c=10.9)],  # same date, other values: both rows invalid
        [bar(date(2020, 1, 5))],  # older date
        [bar(NEXT), bar(NEXT - timedelta(days=5))],  # new rows out of order
        [bar(NEXT).replace("20200122", "2020-01-22")],  # no parsable date
        [HEADER],  # a header line further down is data without a date
    ],
)
def test_rows_not_dated_after_the_file_fall_back(tmp_path: Path, new: list[str]) -> None:
    fell_back(appended(tmp_path, BASE, new))


def test_a_new_row_dated_like_an_old_invalid_row_falls_back(tmp_path: Path) -> None:
    old = [*BASE[:-1], bar(date(2020, 1, 25), h=8.0)]
    fell_back(appended(tmp_path, old, [bar(date(2020, 1, 25))]))


def test_duplicates_among_new_lines_take_the_fast_path(tmp_path: Path) -> None:
    result = fast(appended(tmp_path, BASE, [bar(NEXT), bar(NEXT)]))
    assert result.rejects.select("line_no", "reason").rows() == [(23, "duplicate_line")]


def test_old_content_without_trailing_newline_falls_back(tmp_path: Path) -> None:
    prefix = text(*BASE)[:-1]
    fell_back(split_build(tmp_path, prefix + b"\n" + text(bar(NEXT)), len(prefix))[2])


@pytest.mark.parametrize("old", [[HEADER], ["", "  "]])
def test_old_content_without_data_falls_back(tmp_path: Path, old: list[str]) -> None:
    fell_back(appended(tmp_path, old, [bar(NEXT)]))


def test_failed_unknown_or_moved_files_fall_back(tmp_path: Path) -> None:
    fell_back(appended(tmp_path, BASE, [bar(NEXT)], fail="duplicate_source_ticker"))
    fell_back(split_build(tmp_path, text(*BASE, bar(NEXT)), 0)[2])  # no old content


def test_first_line_beyond_the_head_read_falls_back(tmp_path: Path) -> None:
    old = [""] * (HEAD_BYTES + 1) + BASE
    fell_back(appended(tmp_path, old, [bar(NEXT)]))
    fast(appended(tmp_path, [""] * (HEAD_BYTES - 200) + BASE, [bar(NEXT)]))


def test_missing_duplicated_or_foreign_ledger_rows_fall_back(tmp_path: Path) -> None:
    prefix = text(*BASE)
    full, old, _ = split_build(tmp_path, prefix + text(bar(NEXT)), len(prefix))
    files = files_frame([str(tmp_path / "full" / "aapl.us.txt")], [SOURCE], ["AAPL.US"],
                        ["NASDAQ"], [None]).with_columns(prev_size=pl.lit(len(prefix)))
    moved = old.ledger.with_columns(exchange=pl.lit("NYSE"))
    renamed = old.ledger.with_columns(ticker=pl.lit("AAPL.OLD"))
    headless = old.ledger.with_columns(lines_header=pl.lit(0, dtype=pl.Int64))  # another file
    tampered = (old.ledger.clear(), pl.concat([old.ledger, old.ledger]), moved, renamed, headless)
    for ledger in tampered:
        fell_back(build_bronze_append(files, old.rejects, ledger, T, "append", LATER))


def test_a_file_with_no_ticker_is_never_returned(tmp_path: Path) -> None:
    result = appended(tmp_path, BASE, [bar(NEXT)], ticker=None, fail="invalid_file_ticker")
    assert result.fallback == [] and result.ledger.height == 0


# --------------------------------------------------------------------------- properties


@dataclass(repr=False)
class Universe:
    """The messy sample's files, their full build and their bytes (short repr for hypothesis)."""

    files: pl.DataFrame
    full: BronzeResult
    contents: list[bytes]


@pytest.fixture(scope="module")
def universe(messy_universe: Path) -> Universe:
    files = discover(messy_universe).select(
        "source_file", "path", "ticker", "exchange", "fail_reason")
    contents = [Path(p).read_bytes() for p in files["path"]]
    return Universe(files, build_bronze(files, T, "full", LATER), contents)


def _line_cut(data: bytes, fraction: float) -> int:
    """The line boundary nearest ``fraction`` of the file (0 when there is none)."""
    ends = [i + 1 for i, b in enumerate(data[:-1]) if b == 0x0A]
    return ends[min(int(fraction * len(ends)), len(ends) - 1)] if ends else 0


@pytest.mark.e2e  # exhaustive: the whole chain over many cuts
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fractions=st.lists(st.floats(0.02, 1), min_size=64, max_size=64))
def test_messy_universe_cut_anywhere(
    universe: Universe, tmp_path_factory: pytest.TempPathFactory, fractions: list[float]
) -> None:
    files, full, contents = universe.files, universe.full, universe.contents
    root = tmp_path_factory.mktemp("old")
    cuts = [_line_cut(d, f) for d, f in zip(contents, fractions, strict=False)]
    old_paths = []
    for i, (data, cut) in enumerate(zip(contents, cuts, strict=True)):
        path = root / f"{i}.txt"
        path.write_bytes(data[:cut])
        old_paths.append(str(path))
    old = build_bronze(files.with_columns(path=pl.Series(old_paths)), T, "old", TS)
    app = build_bronze_append(files.with_columns(prev_size=pl.Series(cuts, dtype=pl.Int64)),
                              old.rejects, old.ledger, T, "append", LATER)
    check(full, old, app)
    # Files whose rows are dated in order without gaps in parsing never need a rebuild.
    must = full.ledger.with_columns(old_status=old.ledger["status"]).filter(
        (pl.col("status") == "OK") & (pl.col("old_status") == "OK")
        & ~pl.col("reasons").str.split(",").list.eval(pl.element().is_in(LOOKS_BACK)).list.any()
    )
    assert must.height >= 10
    assert not set(must["ticker"]) & set(app.fallback)
    shutil.rmtree(root)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kinds=st.lists(st.sampled_from(["bar", "blank", "short", "gap", "bad", "crlf", "dup"]),
                   min_size=2, max_size=12),
    cut_at=st.integers(1, 11),
)
@pytest.mark.e2e  # exhaustive: the whole chain over many cuts
def test_hand_made_lines_cut_anywhere(tmp_path: Path, kinds: list[str], cut_at: int) -> None:
    day = date(2020, 1, 2)
    lines = [HEADER]
    for kind in kinds:
        day += timedelta(days=10 if kind == "gap" else 1)
        line = {"blank": "", "short": "AAPL.US,D,1", "bad": bar(day, h=1.0),
                "crlf": bar(day) + "\r", "dup": lines[-1]}.get(kind, bar(day))
        lines.append(line)
    content = text(*lines)
    ends = [i + 1 for i, b in enumerate(content[:-1]) if b == 0x0A]
    cut = ends[min(cut_at, len(ends)) - 1]
    _, old, app = split_build(tmp_path, content, cut)
    if "dup" not in kinds and old.ledger["status"][0] == "OK":
        assert app.fallback == []


_PIECES = ["a", "1", ",", "\t", ";", "|", " ", "\r", '"', "\ufeff", "<TICKER>", "é"]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.lists(st.sampled_from(_PIECES), max_size=14).map("".join), min_size=1,
                   max_size=8),
    junk=st.booleans(),
    split=st.integers(1, 7),
    header=st.booleans(),
)
def test_appended_lines_parse_as_inside_the_whole_file(
    tmp_path: Path, lines: list[str], junk: bool, split: int, header: bool
) -> None:
    """The line reader on the appended bytes alone agrees with it on the whole file."""
    lines = ([HEADER] if header else []) + lines
    split = min(split, len(lines) - 1) if len(lines) > 1 else 1
    old = text(*lines[:split]) + (b"\xff\xfe" if junk else b"")
    whole = old + b"\n" + text(*lines[split:])
    path = tmp_path / "f.txt"
    path.write_bytes(whole)
    files = pl.DataFrame({"path": [str(path)], "prev_size": [len(old) + 1]})
    n_old = old.count(b"\n") + 1
    got = read_appended(files, np.array([n_old + 1]))
    expected = split_lines(texts_frame([whole], [None]))
    first = expected.filter(pl.col("kind") != "blank").head(1)
    appended_any = len(whole) > len(old) + 1
    assert got.ok[0] == (first.height == 1 and first["line_no"][0] <= n_old and appended_any)
    if not got.ok[0]:
        return
    assert got.delimiter[0] == first["delimiter"][0]
    assert got.header[0] == (first["kind"][0] == "header")
    tail = expected.filter(pl.col("line_no") > n_old)
    assert_frame_equal(got.rows.rows, rows_from_lines(tail))
    stats = got.rows.files.row(0, named=True)
    assert stats["lines_total"] == tail.height
    assert stats["lines_blank"] == tail.filter(pl.col("kind") == "blank").height
    assert stats["has_cr"] == tail["cr"].any()
