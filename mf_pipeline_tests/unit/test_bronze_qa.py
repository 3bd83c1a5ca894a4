"""Bronze QA: symbol master, sanity report and problem tickers over tiny hand-checked lakes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from mf_pipeline.lib import lake
from mf_pipeline.lib.lake_table import Snapshot
from mf_pipeline.lib.layers.bronze import qa

BUILT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
D = dt.date

_BRONZE_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "exchange": pl.String(),
    "trade_date": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "source_file": pl.String(),
    "source_line_no": pl.Int64(),
    "q_suspicious_bar": pl.Boolean(),
    "q_gap_in_calendar": pl.Boolean(),
    "q_zero_volume": pl.Boolean(),
    "quality_warn_count": pl.Int64(),
    "is_valid_row": pl.Boolean(),
    "schema_version": pl.String(),
}


def _bronze(root: Path, exchange: str, ticker: str, rows: list[tuple],
            append: bool = False) -> None:
    """Commit one ticker's Bronze rows; a row is (date, o, h, l, c, v, source_file, line,
    suspicious, gap)."""
    cols = ["trade_date", "open", "high", "low", "close", "volume", "source_file",
            "source_line_no", "q_suspicious_bar", "q_gap_in_calendar"]  # fmt: skip
    frame = pl.DataFrame(rows, schema=cols, orient="row").with_columns(
        pl.lit(ticker).alias("ticker"),
        pl.lit(exchange).alias("exchange"),
        pl.lit(False).alias("q_zero_volume"),
        (
            pl.col("q_suspicious_bar").cast(pl.Int64) + pl.col("q_gap_in_calendar").cast(pl.Int64)
        ).alias("quality_warn_count"),
        pl.lit(True).alias("is_valid_row"),
        pl.lit("v1").alias("schema_version"),
    )
    frame = frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in _BRONZE_SCHEMA.items()
    )
    lake.write_symbol_files(frame, root, append=append)


@pytest.fixture
def lake_root(tmp_path: Path) -> Path:
    """4 tickers with data over 2 exchanges (one commit each, AAPL.US over two files), and
    ledger/rejects rows."""
    data = tmp_path / "bronze" / "ohlcv_by_symbol"
    # AAPL rows given out of order: source_file_last must sort by (date, line).
    _bronze(data, "NASDAQ", "AAPL.US", [
        (D(2021, 1, 4), 11.0, 20.0, 8.0, 12.0, 200.0, "n/aapl.us.txt", 3, True, False),
        (D(2020, 12, 30), 10.0, 12.0, 9.0, 11.0, 100.0, "n/aapl.us.txt", 2, False, False),
    ])  # fmt: skip
    _bronze(data, "NASDAQ", "AAPL.US", [  # a later night's bar: a second file
        (D(2021, 1, 5), 12.0, 13.0, 11.0, 12.5, 300.0, "n/aapl_b.us.txt", 2, False, False),
    ], append=True)  # fmt: skip
    _bronze(data, "NASDAQ", "MSFT.US", [
        (D(2021, 1, 4), 5.0, 6.0, 4.0, 5.0, 10.0, "n/msft.us.txt", 2, False, False),
        (D(2021, 3, 1), 5.0, 7.0, 5.0, 6.0, 30.0, "n/msft.us.txt", 3, False, True),
    ])  # fmt: skip
    _bronze(data, "NYSE", "IBM.US", [
        (D(2019, 6, 3), 100.0, 101.0, 99.0, 100.0, 1000.0, "y/ibm.us.txt", 1, False, False),
        (D(2022, 6, 1), 120.0, 125.0, 119.0, 121.0, 3000.0, "y/ibm.us.txt", 2, False, False),
    ])  # fmt: skip
    # In Bronze, unknown to the ledger.
    _bronze(data, "NYSE", "LONE.US", [
        (D(2020, 5, 4), 50.0, 51.0, 49.0, 50.5, 40.0, "y/lone.us.txt", 1, False, False),
    ])  # fmt: skip
    return tmp_path / "bronze"


def _ledger() -> pl.DataFrame:
    rows = [
        ("n/aapl.us.txt", "AAPL.US", "NASDAQ", "OK", 2, 2, 1),
        ("n/aapl_b.us.txt", "AAPL.US", "NASDAQ", "OK", 1, 0, 0),
        ("n/msft.us.txt", "MSFT.US", "NASDAQ", "OK", 2, 0, 0),
        ("y/ibm.us.txt", "IBM.US", "NYSE", "OK", 2, 0, 0),
        ("y/bad.us.txt", "BAD.US", "NYSE", "FAILED", 0, 0, 5),
        ("n/bad.us.txt", "BAD.US", "NASDAQ", "FAILED", 0, 0, 3),
        ("y/zero.us.txt", "ZERO.US", "NYSE", "OK", 0, 4, 0),
        ("y/bad name.txt", None, "NYSE", "OK", 0, 0, 2),
    ]
    cols = ["source_file", "ticker", "exchange", "status", "rows_valid", "rows_invalid",
            "rows_rejected"]  # fmt: skip
    return pl.DataFrame(rows, schema=cols, orient="row").with_columns(
        pl.lit("").alias("reasons"), pl.lit("bronze-run-x").alias("run_id")
    )


def _rejects() -> pl.DataFrame:
    rows = [
        ("AAPL.US", "invalid", "q_duplicate_ticker_date,q_suspicious_bar"),
        ("AAPL.US", "invalid", "q_duplicate_ticker_date"),
        ("AAPL.US", "rejected", "duplicate_line"),
        *[("BAD.US", "rejected", "duplicate_source_ticker")] * 8,
        *[("ZERO.US", "invalid", "q_high_lt_low")] * 3,
        ("ZERO.US", "invalid", "q_high_lt_low,q_gap_in_calendar"),
        *[(None, "rejected", "invalid_file_ticker")] * 2,
    ]
    frame = pl.DataFrame(rows, schema=["ticker", "kind", "reason"], orient="row")
    return frame.with_columns(
        pl.lit("f.txt").alias("source_file"),
        pl.int_range(pl.len()).cast(pl.Int64).alias("line_no"),
        pl.lit("raw").alias("raw_line"),
    )


def _files(root: Path) -> Snapshot:
    return lake.snapshot(root / "ohlcv_by_symbol")


def _empty(tmp_path: Path) -> Snapshot:
    """The snapshot of a layer nothing was ever committed to."""
    return lake.snapshot(tmp_path / "never_written")


def _master(root: Path) -> pl.DataFrame:
    return qa.build_symbol_master(_files(root), _ledger(), _rejects(), BUILT)


def _row(master: pl.DataFrame, ticker: str) -> dict:
    rows = master.filter(pl.col("ticker") == ticker).to_dicts()
    assert len(rows) == 1
    return rows[0]


def test_symbol_master_columns_order_and_keys(lake_root: Path) -> None:
    master = _master(lake_root)
    assert master.schema == pl.Schema(qa.SYMBOL_MASTER_SCHEMA)
    assert master.select("exchange", "ticker").rows() == [
        ("NASDAQ", "AAPL.US"), ("NASDAQ", "BAD.US"), ("NASDAQ", "MSFT.US"),
        ("NYSE", "IBM.US"), ("NYSE", "LONE.US"), ("NYSE", "ZERO.US"),
    ]  # fmt: skip
    assert master["built_ts"].unique().to_list() == [BUILT]


def test_symbol_master_hand_checked_values(lake_root: Path) -> None:
    master = _master(lake_root)
    aapl = _row(master, "AAPL.US")
    assert aapl["prefix"] == "A"
    # The ticker's shard folder (CRC-32 of "AAPL.US" is 0x55B89281: shard 01), which holds
    # both of its files.
    data = lake_root / "ohlcv_by_symbol"
    assert aapl["bronze_path"] == f"{data}/shard=01"
    aapl_files = _files(lake_root).of(["AAPL.US"]).files()
    assert len(aapl_files) == 2 and {f.parent.name for f in aapl_files} == {"shard=01"}
    assert (aapl["first_date"], aapl["last_date"]) == (D(2020, 12, 30), D(2021, 1, 5))
    assert (aapl["row_count"], aapl["warn_row_count"]) == (3, 1)
    assert (aapl["min_price"], aapl["max_price"], aapl["avg_volume"]) == (8.0, 20.0, 200.0)
    assert aapl["source_file_last"] == "n/aapl_b.us.txt"
    assert aapl["schema_version"] == "v1"
    # Real invalid count from the ledger (weakness 5), totals = valid + invalid + rejected.
    assert aapl["invalid_row_count"] == aapl["rows_invalid_reported"] == 2
    assert aapl["rows_total_reported"] == 6
    assert (aapl["rejected_line_count"], aapl["failed_files"], aapl["ledger_file_count"]) == (
        1, 0, 2,
    )  # fmt: skip
    # 2 conflicting (invalid) + 1 identical (rejected) copies; suspicious: 1 valid + 1 invalid.
    assert (aapl["duplicates_count"], aapl["suspicious_bars_count"], aapl["gap_rows_count"]) == (
        3, 2, 0,
    )  # fmt: skip

    msft = _row(master, "MSFT.US")
    assert (msft["min_price"], msft["max_price"], msft["avg_volume"]) == (4.0, 7.0, 20.0)
    assert (msft["warn_row_count"], msft["gap_rows_count"], msft["invalid_row_count"]) == (1, 1, 0)
    assert msft["source_file_last"] == "n/msft.us.txt"

    ibm = _row(master, "IBM.US")
    assert (ibm["exchange"], ibm["row_count"], ibm["avg_volume"]) == ("NYSE", 2, 2000.0)
    assert (ibm["min_price"], ibm["max_price"]) == (99.0, 125.0)
    assert ibm["rows_total_reported"] == 2
    assert ibm["bronze_path"] == f"{data}/shard=11"  # CRC-32 0xD5A5B37B


def test_tickers_without_bronze_file_are_kept(lake_root: Path) -> None:
    master = _master(lake_root)
    bad = _row(master, "BAD.US")  # two FAILED files, no Bronze file
    assert bad["bronze_path"] is None and bad["row_count"] == 0
    assert (bad["exchange"], bad["prefix"]) == ("NASDAQ", "B")  # smallest ledger exchange
    assert (bad["failed_files"], bad["rejected_line_count"], bad["rows_total_reported"]) == (
        2, 8, 8,
    )  # fmt: skip
    assert bad["duplicates_count"] == 0  # duplicate_source_ticker is a file-level reason
    zero = _row(master, "ZERO.US")  # every row invalid
    assert zero["bronze_path"] is None and zero["first_date"] is None
    assert (zero["invalid_row_count"], zero["gap_rows_count"], zero["warn_row_count"]) == (4, 1, 0)
    lone = _row(master, "LONE.US")  # in Bronze, unknown to the ledger
    assert lone["bronze_path"] is not None and lone["row_count"] == 1
    assert (lone["min_price"], lone["max_price"]) == (49.0, 51.0)
    assert lone["ledger_file_count"] == lone["invalid_row_count"] == 0
    # A ledger file without a ticker cannot become a symbol.
    assert master["ticker"].null_count() == 0


def test_without_ledger_counts_are_zero(lake_root: Path) -> None:
    master = qa.build_symbol_master(_files(lake_root), None, pl.DataFrame(), BUILT)
    assert master["ticker"].to_list() == ["AAPL.US", "MSFT.US", "IBM.US", "LONE.US"]
    ledger_counts = ["invalid_row_count", "duplicates_count", "rows_invalid_reported",
                     "rows_total_reported", "rejected_line_count", "failed_files",
                     "ledger_file_count"]  # fmt: skip
    assert master.select(ledger_counts).sum().row(0) == (0,) * len(ledger_counts)
    # Warning counts still come from the Bronze flags.
    assert master.select("suspicious_bars_count", "gap_rows_count").sum().row(0) == (1, 1)


def test_unreadable_bronze_file_is_skipped(lake_root: Path) -> None:
    _bronze(lake_root / "ohlcv_by_symbol", "NYSE", "BROKEN.US", [
        (D(2020, 1, 2), 1.0, 1.0, 1.0, 1.0, 1.0, "y/broken.us.txt", 1, False, False),
    ])  # fmt: skip
    [broken] = _files(lake_root).of(["BROKEN.US"]).files()  # its own commit: its own file
    broken.write_bytes(b"not parquet")
    master, bad = qa.build_symbol_master_report(_files(lake_root), None, None, BUILT)
    assert bad == [broken]
    assert master["ticker"].to_list() == ["AAPL.US", "MSFT.US", "IBM.US", "LONE.US"]
    assert master["row_count"].to_list() == [3, 2, 2, 1]
    summary, _, by_year = qa.sanity_report(master, _files(lake_root), BUILT)
    assert summary["rows_by_year_read_errors"] == 1
    assert summary["bronze_file_count"] == 5  # the snapshot's tickers, BROKEN.US included
    assert by_year.rows() == [(2019, 1), (2020, 2), (2021, 4), (2022, 1)]  # no 2020-01-02


def test_sanity_summary(lake_root: Path) -> None:
    summary, _, _ = qa.sanity_report(_master(lake_root), _files(lake_root), BUILT)
    json.dumps(summary)  # JSON-ready without a default=
    expected = {
        "generated_ts": "2026-03-01T12:00:00+00:00",
        "ticker_count": 6,
        "exchange_counts": {"NASDAQ": 3, "NYSE": 3},
        "total_rows": 8,
        "global_min_trade_date": "2019-06-03",
        "global_max_trade_date": "2022-06-01",
        "bronze_file_count": 4,  # tickers with Bronze rows (the key keeps the old name)
        "empty_bronze_files_count": 0,  # a committed ticker always has rows
        "duplicate_ticker_entries_in_symbol_master": 0,
        "total_warn_rows": 2,
        "total_invalid_rows": 6,
        "total_rejected_lines": 9,
        "failed_files_count": 2,
        "ledger_files_count": 7,
        "ledger_missing_for_symbols": 1,
        "ledger_extra_without_symbol": 2,
        "rows_by_year_read_errors": 0,
    }
    assert {key: summary[key] for key in expected} == expected
    assert not any(key.startswith("quality_reports") for key in summary)


def test_sanity_top_lists_order(lake_root: Path) -> None:
    summary, _, _ = qa.sanity_report(_master(lake_root), _files(lake_root), BUILT)
    warn = summary["top_tickers_by_warn_rows"]
    assert [r["ticker"] for r in warn] == [
        "AAPL.US", "MSFT.US", "IBM.US", "LONE.US", "BAD.US", "ZERO.US",
    ]  # fmt: skip
    assert warn[0] == {
        "ticker": "AAPL.US", "exchange": "NASDAQ", "warn_row_count": 1, "row_count": 3,
        "first_date": "2020-12-30", "last_date": "2021-01-05",
    }  # fmt: skip
    rows = summary["top_tickers_by_row_count"]
    assert [r["ticker"] for r in rows][:3] == ["AAPL.US", "MSFT.US", "IBM.US"]  # tie: exchange
    assert set(rows[0]) == {"ticker", "exchange", "row_count", "first_date", "last_date"}
    span = summary["top_tickers_by_date_span_days"]
    assert [(r["ticker"], r["date_span_days"]) for r in span][:5] == [
        ("IBM.US", 1094), ("MSFT.US", 56), ("AAPL.US", 6), ("LONE.US", 0), ("BAD.US", None),
    ]  # fmt: skip


def test_top_lists_are_capped_at_20(tmp_path: Path) -> None:
    master = pl.DataFrame(
        {"ticker": [f"T{i:02d}" for i in range(25)], "exchange": ["NYSE"] * 25,
         "row_count": list(range(25)), "bronze_path": ["x"] * 25}
    )  # fmt: skip
    summary, _, _ = qa.sanity_report(master, _empty(tmp_path), BUILT)
    assert len(summary["top_tickers_by_row_count"]) == 20
    assert summary["top_tickers_by_row_count"][0]["ticker"] == "T24"
    # Counted from the master alone: T00 claims a Bronze path with no rows.
    assert summary["empty_bronze_files_count"] == 1
    assert summary["ledger_missing_for_symbols"] == 25 and summary["total_rows"] == 300


def test_by_exchange_and_by_year(lake_root: Path) -> None:
    _, by_exchange, by_year = qa.sanity_report(_master(lake_root), _files(lake_root), BUILT)
    assert by_exchange.schema == pl.Schema(qa.BY_EXCHANGE_SCHEMA)
    assert by_exchange.rows() == [
        ("NASDAQ", 3, 5, D(2020, 12, 30), D(2021, 3, 1), 2),
        ("NYSE", 3, 3, D(2019, 6, 3), D(2022, 6, 1), 0),
    ]
    assert by_year.schema == pl.Schema(qa.BY_YEAR_SCHEMA)
    assert by_year.rows() == [(2019, 1), (2020, 2), (2021, 4), (2022, 1)]


def test_problem_tickers_criterion_and_sort(lake_root: Path) -> None:
    master = _master(lake_root)
    problems = qa.problem_tickers(master)
    assert problems.columns == list(qa.PROBLEM_COLUMNS)
    # ZERO (4 invalid), AAPL (2 invalid), MSFT (warning), BAD (rejected lines, failed files).
    assert problems["ticker"].to_list() == ["ZERO.US", "AAPL.US", "MSFT.US", "BAD.US"]
    assert qa.problem_tickers(master, limit=1)["ticker"].to_list() == ["ZERO.US"]
    assert qa.problem_tickers(master, limit=0).is_empty()
    with pytest.raises(ValueError):
        qa.problem_tickers(master, limit=-1)


def test_problem_tickers_only_invalid_finds_real_invalid_rows(lake_root: Path) -> None:
    only = qa.problem_tickers(_master(lake_root), only_invalid=True)
    assert only.select("ticker", "invalid_row_count").rows() == [("ZERO.US", 4), ("AAPL.US", 2)]


def test_problem_tickers_tolerates_an_old_master() -> None:
    old = pl.DataFrame(
        {"ticker": ["A.US"], "exchange": ["NYSE"], "row_count": [3], "warn_row_count": [1],
         "invalid_row_count": [0], "first_date": [D(2020, 1, 2)], "last_date": [D(2020, 1, 6)]}
    )  # fmt: skip
    result = qa.problem_tickers(old)
    assert result.select("rejected_line_count", "failed_files").row(0) == (0, 0)


def test_empty_inputs(tmp_path: Path) -> None:
    nothing = _empty(tmp_path)
    assert nothing.is_empty and nothing.generation == 0
    master = qa.build_symbol_master(nothing, None, None, BUILT)
    assert master.is_empty() and master.schema == pl.Schema(qa.SYMBOL_MASTER_SCHEMA)
    summary, by_exchange, by_year = qa.sanity_report(master, nothing, BUILT)
    assert summary["ticker_count"] == summary["total_rows"] == summary["bronze_file_count"] == 0
    assert summary["ledger_files_count"] == summary["rows_by_year_read_errors"] == 0
    assert summary["global_min_trade_date"] is None and summary["exchange_counts"] == {}
    assert summary["top_tickers_by_warn_rows"] == []
    assert by_exchange.is_empty() and by_exchange.schema == pl.Schema(qa.BY_EXCHANGE_SCHEMA)
    assert by_year.is_empty() and by_year.schema == pl.Schema(qa.BY_YEAR_SCHEMA)
    assert qa.problem_tickers(master).is_empty()
    assert qa.problem_tickers(pl.DataFrame()).columns == list(qa.PROBLEM_COLUMNS)
    paths = qa.write_sanity_artifacts(summary, by_exchange, by_year, tmp_path / "artifacts")
    assert all(path.exists() for path in paths)
    # A ledger alone (nothing written to Bronze yet) still lists its tickers.
    only_ledger = qa.build_symbol_master(nothing, _ledger(), None, BUILT)
    assert only_ledger["ticker"].to_list() == [
        "AAPL.US", "BAD.US", "MSFT.US", "IBM.US", "ZERO.US",
    ]  # fmt: skip


def test_write_artifacts(lake_root: Path, tmp_path: Path) -> None:
    master = _master(lake_root)
    parquet_path, csv_path = qa.write_symbol_master(master, lake_root)
    assert parquet_path == lake_root / "symbol_master" / "symbol_master.parquet"
    assert csv_path == lake_root / "symbol_master" / "symbol_master.csv"
    assert pl.read_parquet(parquet_path).equals(master)
    assert pl.read_csv(csv_path).columns == master.columns
    summary, by_exchange, by_year = qa.sanity_report(master, _files(lake_root), BUILT)
    paths = qa.write_sanity_artifacts(summary, by_exchange, by_year, tmp_path / "artifacts")
    folder = tmp_path / "artifacts" / "bronze_qa"
    assert sorted(p.name for p in paths) == sorted(
        ["bronze_sanity_summary.json", "bronze_sanity_by_exchange.parquet",
         "bronze_sanity_by_exchange.csv", "bronze_rows_by_year.parquet",
         "bronze_rows_by_year.csv"]
    )  # fmt: skip
    assert all(p.parent == folder for p in paths)
    text = (folder / "bronze_sanity_summary.json").read_text()
    assert text.endswith("}\n") and json.loads(text) == summary
    assert pl.read_parquet(folder / "bronze_rows_by_year.parquet").equals(by_year)
    assert not list(folder.glob(".*.tmp"))
