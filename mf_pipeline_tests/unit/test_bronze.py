"""Tests of Bronze: normalisation, every validation rule, rejects, ledger and reconciliation."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mf_pipeline.lib.layers.bronze.build import (
    BRONZE_COLUMNS,
    REJECTS_SCHEMA,
    BronzeResult,
    build_bronze,
)
from mf_pipeline.lib.layers.bronze.ledger import LEDGER_SCHEMA, reconcile
from mf_pipeline.lib.layers.bronze.parse import HELPER_COLUMNS, NORMALIZED_COLUMNS, normalize
from mf_pipeline.lib.layers.bronze.read import read_lines, read_rows
from mf_pipeline.lib.layers.bronze.validate import (
    QUALITY_COLUMNS,
    ValidationThresholds,
    validate,
)

HEADER = "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>"
TS = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
RUN = "bronze-run-0123456789ab"


def row(
    ticker: str = "AAPL.US",
    per: str = "D",
    day: str = "20200102",
    tm: str = "000000",
    o: str = "10",
    h: str = "11",
    lo: str = "9",
    c: str = "10.5",
    v: str = "1000",
    oi: str = "0",
) -> str:
    return ",".join([ticker, per, day, tm, o, h, lo, c, v, oi])


def build(
    tmp_path: Path,
    contents: dict[str, str | bytes],
    thresholds: ValidationThresholds | None = None,
    fail_reasons: dict[str, str] | None = None,
    missing: tuple[str, ...] = (),
) -> BronzeResult:
    """Write files named ``<ticker lower>.txt`` and run build_bronze over them."""
    sources, paths, tickers = [], [], []
    for name, content in contents.items():
        path = tmp_path / "nasdaq stocks" / "1" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name not in missing:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        sources.append(f"data/nasdaq stocks/1/{name}")
        paths.append(str(path))
        tickers.append(name.removesuffix(".txt").upper())
    fail = fail_reasons or {}
    files = pl.DataFrame(
        {
            "source_file": sources,
            "path": paths,
            "ticker": tickers,
            "exchange": ["NASDAQ"] * len(sources),
            "fail_reason": [fail.get(name) for name in contents],
        },
        schema={
            "source_file": pl.String,
            "path": pl.String,
            "ticker": pl.String,
            "exchange": pl.String,
            "fail_reason": pl.String,
        },
    )
    result = build_bronze(files, thresholds or ValidationThresholds(), RUN, TS)
    assert reconcile(result.ledger).height == 0
    return result


def one(tmp_path: Path, *lines: str, **kwargs: object) -> BronzeResult:
    return build(tmp_path, {"aapl.us.txt": HEADER + "\n" + "\n".join(lines) + "\n"}, **kwargs)


def flags_of(tmp_path: Path, line: str, **kwargs: object) -> dict[str, object]:
    """All columns of the single row parsed from ``line`` (valid or invalid)."""
    result = one(tmp_path, line, **kwargs)
    if result.valid.height:
        return result.valid.row(0, named=True)
    reject = result.rejects.row(0, named=True)
    assert reject["kind"] == "invalid"
    return {f"q_{code}": True for code in reject["reason"].split(",")} | {"valid": False}


def errors_of(tmp_path: Path, line: str, **kwargs: object) -> set[str]:
    """Error codes of the row parsed from ``line`` (empty set when it is valid)."""
    result = one(tmp_path, line, **kwargs)
    if result.valid.height:
        return set()
    reject = result.rejects.row(0, named=True)
    assert reject["kind"] == "invalid"
    return set(reject["reason"].split(","))


# --------------------------------------------------------------------------- schemas


def test_output_schemas_and_normalisation(tmp_path: Path) -> None:
    result = one(tmp_path, row(tm="153000", oi="7"), row(day="20200103", tm="0", oi="0.0"))
    valid = result.valid
    assert tuple(valid.columns) == BRONZE_COLUMNS
    assert result.rejects.schema == pl.Schema(REJECTS_SCHEMA)
    assert result.ledger.schema == pl.Schema(LEDGER_SCHEMA)
    assert valid.schema["ingest_ts"] == pl.Datetime("us", "UTC")
    assert valid.schema["trade_dt"] == pl.Datetime("us")
    first, second = valid.row(0, named=True), valid.row(1, named=True)
    assert first["ticker"] == "AAPL.US"
    assert first["exchange"] == "NASDAQ"
    assert first["timeframe"] == "D1"
    assert first["trade_date"] == date(2020, 1, 2)
    assert first["trade_dt"] == datetime(2020, 1, 2, 15, 30)
    assert (first["open"], first["high"], first["low"], first["close"]) == (10, 11, 9, 10.5)
    assert first["volume"] == 1000.0
    assert first["openint"] == 7
    assert second["openint"] is None  # "0.0" is not an integer
    assert second["raw_time"] == "000000"  # left-padded
    assert second["trade_dt"] == datetime(2020, 1, 3)
    assert first["source_file"] == "data/nasdaq stocks/1/aapl.us.txt"
    assert first["source_file_name"] == "aapl.us.txt"
    assert first["ingest_ts"] == TS
    assert first["run_id"] == RUN
    assert first["source_line_no"] == 2
    assert first["schema_version"] == "v1"
    assert valid["is_valid_row"].all()
    assert valid["quality_error_count"].to_list() == [0, 0]


def test_field_cleaning_quotes_case_and_scientific(tmp_path: Path) -> None:
    line = ' "aapl.us" , d ,"20200102", 0 ,"1e1", 11 ,9,10.5 ,1.5E3,0'
    got = one(tmp_path, line).valid.row(0, named=True)
    assert got["ticker"] == "AAPL.US"
    assert got["raw_ticker"] == "aapl.us"
    assert got["raw_per"] == "D"
    assert got["timeframe"] == "D1"
    assert got["raw_date"] == "20200102"
    assert got["raw_time"] == "000000"
    assert got["open"] == 10.0
    assert got["volume"] == 1500.0


def test_naive_ingest_ts_is_utc(tmp_path: Path) -> None:
    files = pl.DataFrame(
        {"source_file": ["a.txt"], "path": [str(tmp_path / "a.txt")], "ticker": ["AAPL.US"],
         "exchange": ["nyse"], "fail_reason": [None]},
        schema_overrides={"fail_reason": pl.String},
    )
    (tmp_path / "a.txt").write_text(row())
    result = build_bronze(files, ValidationThresholds(), RUN, datetime(2024, 1, 1))
    assert result.valid["ingest_ts"][0] == datetime(2024, 1, 1, tzinfo=UTC)
    assert result.valid["exchange"][0] == "NYSE"


# --------------------------------------------------------------------------- error rules


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (row(), set()),
        (row(ticker=""), {"missing_field"}),
        (row(per=""), {"missing_field", "bad_timeframe"}),
        (row(tm=""), {"missing_field", "parse_error"}),
        (row(day=""), {"missing_field", "parse_error"}),
        (row(o=""), {"missing_field", "parse_error"}),
        (row(v=" "), {"missing_field", "parse_error"}),
        (row(oi=""), set()),  # openint is never validated
        (row(oi="x"), set()),
    ],
)
def test_missing_field(tmp_path: Path, line: str, expected: set[str]) -> None:
    assert errors_of(tmp_path, line) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (row(o="abc"), {"missing_field", "parse_error"}),
        (row(c="1.05e1"), set()),
        (row(day="20201301"), {"missing_field", "parse_error"}),
        (row(day="20200230"), {"missing_field", "parse_error"}),
        (row(day="20200229"), set()),  # leap day
        (row(day="19000229"), {"missing_field", "parse_error"}),  # 1900 is not leap
        (row(day="2020010"), {"missing_field", "parse_error"}),
        (row(day="+2020010"), {"missing_field", "parse_error"}),
        (row(tm="250000"), {"parse_error"}),  # date fine, trade_dt null
        (row(tm="1234567"), {"parse_error"}),
        (row(tm="-1"), {"parse_error"}),
        (row(h="nan"), {"missing_field", "parse_error"}),  # non-finite is missing
        (row(v="inf"), {"missing_field", "parse_error"}),
    ],
)
def test_parse_error(tmp_path: Path, line: str, expected: set[str]) -> None:
    assert errors_of(tmp_path, line) == expected


@pytest.mark.parametrize(
    ("per", "expected"),
    [("D", set()), ("d", set()), (" D ", set()), ("W", {"bad_timeframe"}),
     ("D1", set())],  # anything but D is kept as is, so a literal D1 passes (old tool)
)
def test_bad_timeframe(tmp_path: Path, per: str, expected: set[str]) -> None:
    assert errors_of(tmp_path, row(per=per)) == expected


def test_bad_timeframe_keeps_value(tmp_path: Path) -> None:
    result = one(tmp_path, row(per="w"), row(per="", day="20200103"))
    assert result.rejects["reason"].to_list() == [
        "bad_timeframe", "bad_timeframe,missing_field",
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (row(o="0", lo="0"), {"nonpositive_price"}),
        (row(o="-1", h="abc"),
         {"nonpositive_price", "missing_field", "parse_error", "ohlc_outside_hl"}),
        (row(c="-5", lo="-6"), {"nonpositive_price"}),
        (row(o="0.0001", lo="0.0001", c="0.0001", h="0.0001"), set()),
    ],
)
def test_nonpositive_price(tmp_path: Path, line: str, expected: set[str]) -> None:
    assert errors_of(tmp_path, line) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (row(h="8", o="8.5", c="8.5"), {"high_lt_low", "ohlc_outside_hl"}),
        (row(h="9", lo="9", o="9", c="9"), set()),  # high == low is fine
        (row(h="x"), {"missing_field", "parse_error"}),  # null high: comparisons are False
    ],
)
def test_high_lt_low(tmp_path: Path, line: str, expected: set[str]) -> None:
    assert errors_of(tmp_path, line) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (row(o="12"), {"ohlc_outside_hl"}),
        (row(o="8"), {"ohlc_outside_hl"}),
        (row(c="11.5"), {"ohlc_outside_hl"}),
        (row(c="8.5"), {"ohlc_outside_hl"}),
        (row(o="11", c="9"), set()),  # on the bounds
        (row(o="x", c="12"), {"ohlc_outside_hl", "missing_field", "parse_error"}),
    ],
)
def test_ohlc_outside_hl(tmp_path: Path, line: str, expected: set[str]) -> None:
    assert errors_of(tmp_path, line) == expected


@pytest.mark.parametrize(
    ("volume", "expected"), [("-1", {"negative_volume"}), ("0", set()), ("0.5", set())]
)
def test_negative_volume(tmp_path: Path, volume: str, expected: set[str]) -> None:
    assert errors_of(tmp_path, row(v=volume)) == expected


@pytest.mark.parametrize(
    ("ticker", "expected"),
    [
        ("AAPL.US", set()),
        ("aapl.us", set()),
        ("MSFT.US", {"ticker_mismatch"}),
        ("", {"missing_field"}),  # blank is missing, not a mismatch
    ],
)
def test_ticker_mismatch(tmp_path: Path, ticker: str, expected: set[str]) -> None:
    assert errors_of(tmp_path, row(ticker=ticker)) == expected


def test_ticker_mismatch_row_keeps_content_ticker(tmp_path: Path) -> None:
    result = one(tmp_path, row(), row(ticker="MSFT.US", day="20200103"))
    assert result.valid["ticker"].to_list() == ["AAPL.US"]
    reject = result.rejects.row(0, named=True)
    assert (reject["ticker"], reject["line_no"], reject["reason"]) == (
        "AAPL.US", 3, "ticker_mismatch",
    )


def test_multiple_errors_reason_is_sorted(tmp_path: Path) -> None:
    result = one(tmp_path, row(ticker="X.US", per="W", h="8", v="-3"))
    assert result.rejects["reason"].to_list() == [
        "bad_timeframe,high_lt_low,negative_volume,ohlc_outside_hl,ticker_mismatch"
    ]
    assert result.ledger["rows_invalid"].to_list() == [1]


# --------------------------------------------------------------------------- duplicates


def test_identical_duplicate_lines_keep_first(tmp_path: Path) -> None:
    result = one(tmp_path, row(), row(day="20200103"), row(), " " + row() + " ")
    assert result.valid["source_line_no"].to_list() == [2, 3]
    rejects = result.rejects
    assert rejects["line_no"].to_list() == [4, 5]
    assert set(rejects["reason"].to_list()) == {"duplicate_line"}
    assert set(rejects["kind"].to_list()) == {"rejected"}
    ledger = result.ledger.row(0, named=True)
    assert (ledger["rows_rejected"], ledger["rows_valid"], ledger["rows_invalid"]) == (2, 2, 0)
    assert "duplicate_line" in ledger["reasons"].split(",")


def test_conflicting_duplicates_all_invalid(tmp_path: Path) -> None:
    result = one(tmp_path, row(), row(c="10.6"), row(day="20200103"))
    assert result.valid["source_line_no"].to_list() == [4]
    assert result.rejects["line_no"].to_list() == [2, 3]
    assert set(result.rejects["reason"].to_list()) == {"duplicate_ticker_date"}
    assert set(result.rejects["kind"].to_list()) == {"invalid"}


def test_duplicate_lines_with_null_dates(tmp_path: Path) -> None:
    bad = row(day="bad")
    result = one(tmp_path, bad, row(), bad)
    assert result.rejects.select("line_no", "reason").rows() == [
        (2, "missing_field,parse_error"), (4, "duplicate_line"),
    ]


def test_duplicate_detection_is_per_file(tmp_path: Path) -> None:
    result = build(
        tmp_path,
        {"aapl.us.txt": row(), "msft.us.txt": row(ticker="MSFT.US")},
    )
    assert result.valid.height == 2
    assert result.rejects.height == 0


# --------------------------------------------------------------------------- warnings


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (row(h="11", lo="5", o="10", c="10"), True),  # range 0.6 > 0.5
        (row(h="15", lo="10", o="10", c="10"), False),  # range exactly 0.5: strict >
        (row(o="10", c="13.5", h="13.5", lo="10"), True),  # return 0.35 > 0.3
        (row(o="10", c="12.9", h="12.9", lo="10"), False),  # return 0.29
        (row(o="0.0", lo="0", c="1", h="1"), None),  # nonpositive -> invalid anyway
    ],
)
def test_suspicious_bar(tmp_path: Path, line: str, expected: bool | None) -> None:
    got = flags_of(tmp_path, line)
    if expected is None:
        assert got["valid"] is False
        return
    assert got["q_suspicious_bar"] is expected
    assert got["is_valid_row"] is True
    assert got["quality_warn_count"] == int(expected)


def test_suspicious_thresholds_configurable(tmp_path: Path) -> None:
    line = row(h="11", lo="9", o="10", c="10")  # range 0.2
    assert flags_of(tmp_path, line)["q_suspicious_bar"] is False
    tight = ValidationThresholds(suspicious_range_pct=0.1)
    assert flags_of(tmp_path, line, thresholds=tight)["q_suspicious_bar"] is True


def test_zero_volume_is_a_warning(tmp_path: Path) -> None:
    got = flags_of(tmp_path, row(v="0"))
    assert got["q_zero_volume"] is True
    assert got["is_valid_row"] is True
    assert got["quality_warn_count"] == 1
    assert flags_of(tmp_path, row(v="0.001"))["q_zero_volume"] is False


def test_gap_in_calendar(tmp_path: Path) -> None:
    result = one(
        tmp_path,
        row(day="20200101"),
        row(day="20200108"),  # 7 days: not a gap
        row(day="20200116"),  # 8 days: gap
    )
    assert result.valid["q_gap_in_calendar"].to_list() == [False, False, True]
    strict = ValidationThresholds(gap_days_warn=6)
    result = one(tmp_path, row(day="20200101"), row(day="20200108"), thresholds=strict)
    assert result.valid["q_gap_in_calendar"].to_list() == [False, True]


def test_gap_computed_among_valid_rows_only(tmp_path: Path) -> None:
    result = one(
        tmp_path,
        row(day="20200101"),
        row(day="20200105", h="1"),  # invalid row inside the gap
        row(day="20200110"),
    )
    assert result.valid["trade_date"].to_list() == [date(2020, 1, 1), date(2020, 1, 10)]
    assert result.valid["q_gap_in_calendar"].to_list() == [False, True]
    assert result.ledger["rows_warned"].to_list() == [1]


def test_gap_uses_date_order_not_file_order(tmp_path: Path) -> None:
    result = one(tmp_path, row(day="20200120"), row(day="20200101"), row(day="20200105"))
    assert result.valid["q_gap_in_calendar"].to_list() == [False, False, True]


# --------------------------------------------------------------------------- structure


def test_wrong_field_counts_are_rejected_with_line_number(tmp_path: Path) -> None:
    result = one(tmp_path, row(), "AAPL.US,D,20200103", row(day="20200104") + ",1", row(
        day="20200105"))
    assert result.valid["source_line_no"].to_list() == [2, 5]
    assert result.rejects.select("line_no", "kind", "reason").rows() == [
        (3, "rejected", "too_few_columns:3"),
        (4, "rejected", "too_many_columns:11"),
    ]
    assert result.rejects["raw_line"][1] == row(day="20200104") + ",1"


def test_header_like_line_later_is_rejected(tmp_path: Path) -> None:
    result = one(tmp_path, row(), HEADER)
    assert result.rejects.select("line_no", "kind", "reason").rows() == [
        (3, "invalid", "bad_timeframe,missing_field,parse_error,ticker_mismatch")
    ]


def test_unsorted_input_is_sorted_and_counted(tmp_path: Path) -> None:
    result = one(
        tmp_path, row(day="20200103"), row(day="20200101"), row(day="20200102"),
        row(day="20200104"),
    )
    assert result.valid["trade_date"].to_list() == [
        date(2020, 1, d) for d in (1, 2, 3, 4)
    ]
    assert result.valid["source_line_no"].to_list() == [3, 4, 2, 5]
    ledger = result.ledger.row(0, named=True)
    assert ledger["rows_unsorted"] == 1
    assert "unsorted" in ledger["reasons"].split(",")


def test_output_sorted_by_ticker_across_files(tmp_path: Path) -> None:
    result = build(
        tmp_path,
        {
            "msft.us.txt": row(ticker="MSFT.US"),
            "aapl.us.txt": row(day="20200103") + "\n" + row(),
        },
    )
    assert result.valid.select("ticker", "trade_date").rows() == [
        ("AAPL.US", date(2020, 1, 2)), ("AAPL.US", date(2020, 1, 3)),
        ("MSFT.US", date(2020, 1, 2)),
    ]
    assert result.ledger["source_file"].to_list() == [
        "data/nasdaq stocks/1/msft.us.txt", "data/nasdaq stocks/1/aapl.us.txt",
    ]


def test_blank_lines_crlf_and_bom(tmp_path: Path) -> None:
    content = "\ufeff" + HEADER + "\r\n\r\n" + row() + "\r\n   \r\n" + row(day="20200103") + "\r\n"
    result = build(tmp_path, {"aapl.us.txt": content})
    ledger = result.ledger.row(0, named=True)
    assert (ledger["lines_total"], ledger["lines_header"], ledger["lines_blank"]) == (5, 1, 2)
    assert ledger["rows_valid"] == 2
    assert ledger["reasons"] == "blank_lines,bom,crlf"
    assert ledger["status"] == "OK"


def test_missing_header_note(tmp_path: Path) -> None:
    result = build(tmp_path, {"aapl.us.txt": "\ufeff" + row()})
    ledger = result.ledger.row(0, named=True)
    assert ledger["reasons"] == "bom,missing_header"
    assert result.valid["raw_ticker"].to_list() == ["AAPL.US"]


@pytest.mark.parametrize(
    ("content", "lines", "reasons"),
    [
        ("", 0, "empty_file"),
        ("\n \n\t", 3, "blank_lines,empty_file"),
        (HEADER, 1, "header_only"),
        (HEADER + "\n\n", 2, "blank_lines,header_only"),
    ],
)
def test_empty_and_header_only_files(
    tmp_path: Path, content: str, lines: int, reasons: str
) -> None:
    result = build(tmp_path, {"aapl.us.txt": content})
    ledger = result.ledger.row(0, named=True)
    assert ledger["status"] == "EMPTY"
    assert ledger["lines_total"] == lines
    assert ledger["reasons"] == reasons
    assert ledger["min_trade_date"] is None
    assert result.valid.height == 0
    assert result.rejects.height == 0


def test_file_with_only_rejected_lines_is_ok_status(tmp_path: Path) -> None:
    result = one(tmp_path, "junk")
    ledger = result.ledger.row(0, named=True)
    assert ledger["status"] == "OK"
    assert ledger["reasons"] == "too_few_columns:1"


@pytest.mark.parametrize("reason", ["invalid_file_ticker", "duplicate_source_ticker"])
def test_fail_reason_rejects_every_data_line(tmp_path: Path, reason: str) -> None:
    content = HEADER + "\n\n" + row() + "\nshort\n"
    result = build(
        tmp_path,
        {"aapl.us.txt": content, "msft.us.txt": row(ticker="MSFT.US")},
        fail_reasons={"aapl.us.txt": reason},
    )
    ledger = result.ledger.row(0, named=True)
    assert ledger["status"] == "FAILED"
    assert (ledger["lines_header"], ledger["lines_blank"], ledger["rows_rejected"]) == (1, 1, 2)
    assert ledger["rows_valid"] == ledger["rows_invalid"] == 0
    assert ledger["reasons"] == f"blank_lines,{reason}"
    assert result.rejects.select("line_no", "reason").rows() == [(3, reason), (4, reason)]
    assert result.rejects["raw_line"].to_list() == [row(), "short"]
    assert result.valid["ticker"].to_list() == ["MSFT.US"]
    assert result.ledger["status"][1] == "OK"


def test_fail_reason_on_plain_file(tmp_path: Path) -> None:
    """A clean file (fast CSV path) with a fail_reason is rejected line by line too."""
    content = HEADER + "\n" + row() + "\n" + row(day="20200103")
    result = build(tmp_path, {"aapl.us.txt": content}, fail_reasons={"aapl.us.txt": "bad"})
    assert result.valid.height == 0
    assert result.rejects.select("line_no", "raw_line", "reason").rows() == [
        (2, row(), "bad"), (3, row(day="20200103"), "bad"),
    ]
    assert result.ledger.select("status", "rows_rejected", "reasons").row(0) == (
        "FAILED", 2, "bad",
    )


def test_plain_file_with_ragged_lines(tmp_path: Path) -> None:
    """9 commas per line on average but ragged: the line table takes over, exact counts."""
    content = row() + ",x\n" + row(day="20200103").rsplit(",", 1)[0] + "\n" + row(
        day="20200104") + "\n"
    result = build(tmp_path, {"aapl.us.txt": content})
    assert result.rejects.select("line_no", "reason").rows() == [
        (1, "too_many_columns:11"), (2, "too_few_columns:9"),
    ]
    assert result.valid["source_line_no"].to_list() == [3]


def test_invalid_rows_of_plain_file_keep_raw_line(tmp_path: Path) -> None:
    bad = row(day="20200103", h="8", o="", c="8.5")
    result = build(tmp_path, {"aapl.us.txt": HEADER + "\n" + row() + "\n" + bad + "\n"})
    assert result.rejects.select("line_no", "raw_line").rows() == [(3, bad)]


def test_fail_reason_on_file_without_data(tmp_path: Path) -> None:
    result = build(tmp_path, {"aapl.us.txt": ""}, fail_reasons={"aapl.us.txt": "x_reason"})
    assert result.ledger.select("status", "reasons").row(0) == ("FAILED", "empty_file,x_reason")


def test_unreadable_file_is_failed(tmp_path: Path) -> None:
    result = build(
        tmp_path, {"gone.us.txt": "", "aapl.us.txt": row()}, missing=("gone.us.txt",)
    )
    ledger = result.ledger.row(0, named=True)
    assert (ledger["status"], ledger["reasons"], ledger["lines_total"]) == (
        "FAILED", "read_error", 0,
    )
    assert result.ledger["status"][1] == "OK"
    assert result.valid.height == 1


def test_ledger_counts_and_dates(tmp_path: Path) -> None:
    result = one(
        tmp_path,
        row(day="20200105"),
        row(day="20200102", v="0"),
        row(day="20200103", h="1"),
        "bad,line",
        row(day="20200105"),
    )
    ledger = result.ledger.row(0, named=True)
    assert ledger == {
        "source_file": "data/nasdaq stocks/1/aapl.us.txt",
        "ticker": "AAPL.US",
        "exchange": "NASDAQ",
        "status": "OK",
        "lines_total": 6,
        "lines_header": 1,
        "lines_blank": 0,
        "rows_rejected": 2,
        "rows_valid": 2,
        "rows_invalid": 1,
        "rows_warned": 1,
        "rows_unsorted": 1,
        "reasons": "duplicate_line,high_lt_low,ohlc_outside_hl,too_few_columns:2,"
        "unsorted,zero_volume",
        "min_trade_date": date(2020, 1, 2),
        "max_trade_date": date(2020, 1, 5),
        "run_id": RUN,
    }


def test_reconcile_reports_broken_rows(tmp_path: Path) -> None:
    result = one(tmp_path, row())
    assert reconcile(result.ledger).height == 0
    broken = result.ledger.with_columns(pl.col("lines_total") + 1)
    assert reconcile(broken)["source_file"].to_list() == result.ledger["source_file"].to_list()


def test_no_files(tmp_path: Path) -> None:
    result = build(tmp_path, {})
    assert result.valid.height == result.rejects.height == result.ledger.height == 0
    assert tuple(result.valid.columns) == BRONZE_COLUMNS


def test_single_file_stages_for_cli(tmp_path: Path) -> None:
    """normalize/validate expose the stages (parse-sample, validate-sample)."""
    path = tmp_path / "aapl.us.txt"
    path.write_text(HEADER + "\n" + row() + "\n" + row(day="20200103", h="1") + "\nshort\n")
    files = pl.DataFrame(
        {"source_file": ["aapl.us.txt"], "path": [str(path)], "ticker": ["AAPL.US"],
         "exchange": ["NASDAQ"], "fail_reason": [None]},
        schema_overrides={"fail_reason": pl.String},
    )
    from_lines = normalize(read_lines(files), files, RUN, TS)
    from_rows = normalize(read_rows(files).rows, files, RUN, TS)
    assert tuple(from_lines.columns) == (*NORMALIZED_COLUMNS, *HELPER_COLUMNS)
    assert from_lines.equals(from_rows)
    assert from_lines["raw_line"].to_list() == [row(), row(day="20200103", h="1")]
    checked = validate(from_lines, ValidationThresholds())
    assert tuple(checked.columns) == (*NORMALIZED_COLUMNS, *QUALITY_COLUMNS, *HELPER_COLUMNS)
    assert checked["is_valid_row"].to_list() == [True, False]
    full = build_bronze(files, ValidationThresholds(), RUN, TS)
    assert full.valid.drop("schema_version").equals(
        checked.filter("is_valid_row").select(BRONZE_COLUMNS[:-1])
    )


# --------------------------------------------------------------------------- fuzzing


def _physical_lines(data: bytes) -> int:
    text = data.decode("utf-8", errors="replace")
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


_valid_lines = st.builds(
    lambda d, o, span, tk: row(
        ticker=tk, day=f"2020{1 + d // 28:02d}{1 + d % 28:02d}", o=f"{o:.4f}",
        h=f"{o + span:.4f}", lo=f"{max(o - span, 0.01):.4f}", c=f"{o:.4f}",
    ),
    st.integers(0, 40),
    st.floats(0.5, 500),
    st.floats(0, 5),
    st.sampled_from(["F0.US", "f0.us", "OTHER.US"]),
)
_junk = st.text(
    alphabet=st.sampled_from(list(",;|\t \r\"<>0123456789.eE+-Dxé€\ufeff\u00a0\u2028")),
    max_size=40,
)
_line = st.one_of(
    _valid_lines,
    _valid_lines.map(lambda s: s.replace(",", ";")),
    _valid_lines.map(lambda s: " " + s + "\r"),
    _junk,
    st.text(max_size=30).map(lambda s: s.replace("\n", "")),
    st.just(""),
    st.just(HEADER),
    st.sampled_from([",,,,,,,,,", "   ", "\t", "\r", '"a,b"']),
)
_file_text = st.tuples(
    st.booleans(), st.lists(_line, max_size=12), st.sampled_from(["\n", "\r\n"]), st.booleans()
).map(
    lambda t: ("\ufeff" if t[0] else "") + t[2].join(t[1]) + (t[2] if t[3] else "")
)
_file_bytes = st.one_of(_file_text.map(lambda s: s.encode()), st.binary(max_size=120))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_file_bytes, min_size=1, max_size=3))
def test_fuzz_every_line_accounted_once(contents: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        names = [f"f{i}.us.txt" for i in range(len(contents))]
        paths = [os.path.join(tmp, name) for name in names]
        for path, data in zip(paths, contents, strict=True):
            Path(path).write_bytes(data)
        files = pl.DataFrame(
            {"source_file": names, "path": paths, "ticker": ["F0.US"] * len(names),
             "exchange": ["NYSE"] * len(names), "fail_reason": [None] * len(names)},
            schema_overrides={"fail_reason": pl.String},
        )
        result = build_bronze(files, ValidationThresholds(), RUN, TS)
        lines = read_lines(files)

    ledger = result.ledger
    assert reconcile(ledger).height == 0
    assert ledger["lines_total"].to_list() == [_physical_lines(d) for d in contents]
    assert ledger["status"].is_in(["OK", "EMPTY"]).all()
    assert result.valid["is_valid_row"].all()

    for i, name in enumerate(names):
        skipped = lines.filter(
            (pl.col("file_id") == i) & pl.col("kind").is_in(["header", "blank"])
        )["line_no"].to_list()
        rejected = result.rejects.filter(pl.col("source_file") == name)["line_no"].to_list()
        valid = result.valid.filter(pl.col("source_file") == name)["source_line_no"].to_list()
        seen = skipped + rejected + valid
        assert sorted(seen) == list(range(1, _physical_lines(contents[i]) + 1))
