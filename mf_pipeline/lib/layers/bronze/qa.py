"""Bronze QA (spec etl.md §4.6–§4.8): symbol master, sanity report and problem tickers.

Dagster-free and vectorised: the Bronze layer is read in ONE Parquet scan of its snapshot, then
aggregated per ticker with ``group_by``. Where we deliberately differ from the old tool:

* The per-ticker enrichment comes from the file ledger (one row per raw file), which replaced the
  thousands of per-ticker quality-report JSON files. ``invalid_row_count`` is the ticker's REAL
  invalid-row count (ledger ``rows_invalid``), so ``--only-invalid`` works (weakness 5).
* Row-level counts the ledger cannot give (``duplicates_count``, ``suspicious_bars_count``,
  ``gap_rows_count``) come from the Bronze flags for valid rows plus the rejects table (codes
  in ``reason``) for invalid/rejected rows. See :data:`DUPLICATE_CODES`.
* A ticker with ledger rows but no Bronze file (all rows invalid, empty, or its files FAILED)
  still gets a row (``row_count`` 0, null ``bronze_path``), so it is not silently lost.
* Extra trailing columns: ``rejected_line_count``, ``failed_files`` and ``ledger_file_count``.
* Summary keys ``quality_reports_*`` become ``ledger_files_count``, ``ledger_missing_for_symbols``
  and ``ledger_extra_without_symbol``; ``total_rejected_lines`` and ``failed_files_count`` are
  added.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.lake_table import Snapshot, shard_expr
from mf_pipeline.lib.layers.bronze.parse import as_utc

SYMBOL_MASTER_DIR = "symbol_master"
SYMBOL_MASTER_NAME = "symbol_master"
BRONZE_QA_DIR = "bronze_qa"
SUMMARY_JSON = "bronze_sanity_summary.json"
BY_EXCHANGE_NAME = "bronze_sanity_by_exchange"
BY_YEAR_NAME = "bronze_rows_by_year"
TOP_N = 20

# Reason codes (``q_`` prefix and ``:detail`` suffix ignored) that mark a duplicated row: identical
# copies rejected as ``duplicate_line`` and conflicting copies invalid for
# ``duplicate_ticker_date``. File-level ``duplicate_source_ticker`` is NOT a row duplicate.
DUPLICATE_CODES: tuple[str, ...] = ("duplicate_line", "duplicate_ticker_date")
SUSPICIOUS_CODE = "suspicious_bar"
GAP_CODE = "gap_in_calendar"

# Bronze columns the symbol master reads; the explicit schema keeps one scan robust to files
# written before a column existed (missing -> null) or with extra columns (ignored).
_BRONZE_READ_SCHEMA: dict[str, pl.DataType] = {
    "trade_date": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "source_file": pl.String(),
    "source_line_no": pl.Int64(),
    "quality_warn_count": pl.Int64(),
    "q_suspicious_bar": pl.Boolean(),
    "q_gap_in_calendar": pl.Boolean(),
    "schema_version": pl.String(),
}

SYMBOL_MASTER_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "exchange": pl.String(),
    "prefix": pl.String(),
    "bronze_path": pl.String(),
    "first_date": pl.Date(),
    "last_date": pl.Date(),
    "row_count": pl.Int64(),
    "invalid_row_count": pl.Int64(),
    "warn_row_count": pl.Int64(),
    "min_price": pl.Float64(),
    "max_price": pl.Float64(),
    "avg_volume": pl.Float64(),
    "source_file_last": pl.String(),
    "schema_version": pl.String(),
    "built_ts": pl.Datetime("us", "UTC"),
    "duplicates_count": pl.Int64(),
    "suspicious_bars_count": pl.Int64(),
    "gap_rows_count": pl.Int64(),
    "rows_invalid_reported": pl.Int64(),
    "rows_total_reported": pl.Int64(),
    "rejected_line_count": pl.Int64(),
    "failed_files": pl.Int64(),
    "ledger_file_count": pl.Int64(),
}

BY_EXCHANGE_SCHEMA: dict[str, pl.DataType] = {
    "exchange": pl.String(),
    "ticker_count": pl.Int64(),
    "total_rows": pl.Int64(),
    "min_date": pl.Date(),
    "max_date": pl.Date(),
    "total_warn_rows": pl.Int64(),
}

BY_YEAR_SCHEMA: dict[str, pl.DataType] = {"year": pl.Int64(), "row_count": pl.Int64()}

PROBLEM_COLUMNS: tuple[str, ...] = (
    "ticker", "exchange", "row_count", "warn_row_count", "invalid_row_count", "first_date",
    "last_date", "rejected_line_count", "failed_files",
)  # fmt: skip

_LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "exchange": pl.String(),
    "status": pl.String(),
    "rows_valid": pl.Int64(),
    "rows_invalid": pl.Int64(),
    "rows_rejected": pl.Int64(),
}
_REJECTS_SCHEMA: dict[str, pl.DataType] = {"ticker": pl.String(), "reason": pl.String()}

# Enrichment columns that are counts: null (no ledger / no rejects) means 0.
_ENRICH_COUNTS: tuple[str, ...] = (
    "invalid_row_count", "duplicates_count", "suspicious_bars_count", "gap_rows_count",
    "rows_invalid_reported", "rows_total_reported", "rejected_line_count", "failed_files",
    "ledger_file_count",
)  # fmt: skip
_DATE_KEYS = frozenset({"global_min_trade_date", "global_max_trade_date"})


def _iso(value: Any) -> Any:
    """JSON-ready scalar: dates and datetimes as ISO strings, everything else unchanged."""
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else value


def _as_schema(frame: pl.DataFrame | None, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The ``schema`` columns of ``frame`` cast to their types; missing columns become null.

    Lets the caller pass ``None``, an empty ``pl.DataFrame()`` or an older table safely.
    """
    if frame is None or frame.width == 0:
        return pl.DataFrame(schema=schema)
    return frame.select(
        (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in schema.items()
    )


def _as_master(frame: pl.DataFrame | None) -> pl.DataFrame:
    """``frame`` as a symbol master (``SYMBOL_MASTER_SCHEMA``), null counts read as 0."""
    return _as_schema(frame, SYMBOL_MASTER_SCHEMA).with_columns(
        pl.col("row_count", "warn_row_count", *_ENRICH_COUNTS).fill_null(0)
    )


def unreadable_files(files: Sequence[Path]) -> list[Path]:
    """Files whose Parquet footer cannot be read (only called after a scan failed)."""
    bad: list[Path] = []
    for path in files:
        try:
            pl.read_parquet_schema(path)
        except Exception:  # any unreadable file is skipped and counted
            bad.append(path)
    return bad


def _scan_bronze(
    bronze: Snapshot, query: Callable[[pl.LazyFrame], pl.LazyFrame]
) -> tuple[pl.DataFrame | None, list[Path]]:
    """Run ``query`` over ONE scan of the Bronze snapshot; returns (result, unreadable files).

    If the scan fails, files with an unreadable footer are left out and the scan is retried once
    (the old tool skipped unreadable files and counted them). None when nothing is readable.
    """

    def run(snapshot: Snapshot) -> pl.DataFrame | None:
        scan = snapshot.scan()
        if scan is None:
            return None
        have = scan.collect_schema()
        scan = scan.with_columns(pl.lit(None, dtype).alias(name)
                                 for name, dtype in _BRONZE_READ_SCHEMA.items()
                                 if name not in have)
        return query(scan.with_columns(pl.col(name).cast(dtype) for name, dtype
                                       in _BRONZE_READ_SCHEMA.items())).collect()

    try:
        return run(bronze), []
    except Exception:
        bad = unreadable_files(bronze.files())
        if not bad:
            raise
    names = [str(path.relative_to(bronze.root)) for path in bad]
    good = Snapshot(bronze.root, bronze.generation,
                    bronze.index.filter(~pl.col("file").is_in(names)))
    return run(good), bad


def _bronze_stats(bronze: Snapshot) -> tuple[pl.DataFrame, list[Path]]:
    """Per-ticker statistics of the Bronze rows, with the ticker's shard folder as
    ``bronze_path``."""
    prices = ["open", "high", "low", "close"]

    def query(scan: pl.LazyFrame) -> pl.LazyFrame:
        return scan.group_by("ticker").agg(
            pl.col("exchange").drop_nulls().first().str.to_uppercase(),
            pl.col("trade_date").min().alias("first_date"),
            pl.col("trade_date").max().alias("last_date"),
            pl.len().cast(pl.Int64).alias("row_count"),
            (pl.col("quality_warn_count") > 0).sum().cast(pl.Int64).alias("warn_row_count"),
            pl.min_horizontal(prices).min().alias("min_price"),
            pl.max_horizontal(prices).max().alias("max_price"),
            pl.col("volume").mean().alias("avg_volume"),
            pl.col("source_file")
            .sort_by(["trade_date", "source_line_no"], nulls_last=False)
            .last()
            .alias("source_file_last"),
            pl.col("schema_version").drop_nulls().first().alias("schema_version"),
            pl.col("q_suspicious_bar").sum().cast(pl.Int64).alias("bronze_suspicious"),
            pl.col("q_gap_in_calendar").sum().cast(pl.Int64).alias("bronze_gaps"),
        )

    stats, bad = _scan_bronze(bronze, query)
    if stats is None:  # nothing readable: same columns, typed by the query itself
        empty = pl.LazyFrame(schema={**_BRONZE_READ_SCHEMA, "ticker": pl.String(),
                                     "exchange": pl.String()})
        stats = query(empty).collect()
    shard = pl.lit(f"{bronze.root}/shard=") + shard_expr(pl.col("ticker"))
    per_ticker = stats.with_columns(
        pl.col("ticker").str.to_uppercase(),
        pl.col("exchange").fill_null("UNKNOWN"),
        pl.col("ticker").str.slice(0, 1).alias("prefix"),
        shard.alias("bronze_path"),
    )
    return per_ticker, bad


def _ledger_by_ticker(ledger: pl.DataFrame | None) -> pl.DataFrame:
    """Ledger sums per ticker (files without a ticker cannot join a symbol and are left out)."""
    frame = _as_schema(ledger, _LEDGER_SCHEMA).with_columns(pl.col("ticker").str.to_uppercase())
    counts = ["rows_valid", "rows_invalid", "rows_rejected"]
    return (
        frame.filter(pl.col("ticker").is_not_null())
        .with_columns(pl.col(counts).fill_null(0))
        .group_by("ticker")
        .agg(
            pl.col("rows_invalid").sum().alias("invalid_row_count"),
            pl.col("rows_invalid").sum().alias("rows_invalid_reported"),
            pl.sum_horizontal(counts).sum().alias("rows_total_reported"),
            pl.col("rows_rejected").sum().alias("rejected_line_count"),
            (pl.col("status") == "FAILED").sum().cast(pl.Int64).alias("failed_files"),
            pl.len().cast(pl.Int64).alias("ledger_file_count"),
            # Identity for a ticker with no Bronze file: deterministic, UNKNOWN when absent.
            pl.col("exchange").str.to_uppercase().drop_nulls().min().alias("ledger_exchange"),
        )
    )


def _reason_has(codes: Sequence[str]) -> pl.Expr:
    """True when the comma-joined ``reason`` lists one of ``codes`` (``q_``/``:x`` ignored)."""
    normalised = pl.element().str.strip_chars().str.strip_prefix("q_").str.replace(r":.*$", "")
    return (
        pl.col("reason")
        .fill_null("")
        .str.split(",")
        .list.eval(normalised.is_in(list(codes)))
        .list.any()
    )


def _rejects_by_ticker(rejects: pl.DataFrame | None) -> pl.DataFrame:
    """Row-level reason counts per ticker over the invalid and rejected rows."""
    frame = _as_schema(rejects, _REJECTS_SCHEMA).with_columns(pl.col("ticker").str.to_uppercase())
    return (
        frame.filter(pl.col("ticker").is_not_null())
        .group_by("ticker")
        .agg(
            _reason_has(DUPLICATE_CODES).sum().cast(pl.Int64).alias("duplicates_count"),
            _reason_has([SUSPICIOUS_CODE]).sum().cast(pl.Int64).alias("rejects_suspicious"),
            _reason_has([GAP_CODE]).sum().cast(pl.Int64).alias("rejects_gaps"),
        )
    )


def build_symbol_master_report(
    bronze: Snapshot,
    ledger: pl.DataFrame | None,
    rejects: pl.DataFrame | None,
    built_ts: dt.datetime,
) -> tuple[pl.DataFrame, list[Path]]:
    """:func:`build_symbol_master` plus the Bronze files skipped as unreadable (for the CLI)."""
    per_file, bad = _bronze_stats(bronze)
    by_ledger = _ledger_by_ticker(ledger)
    by_rejects = _rejects_by_ticker(rejects)
    # Tickers known to the ledger but with no Bronze file (old tool: silently absent).
    ledger_only = by_ledger.join(
        per_file.select("ticker").unique(), on="ticker", how="anti"
    ).select(
        "ticker",
        pl.coalesce("ledger_exchange", pl.lit("UNKNOWN")).alias("exchange"),
        pl.col("ticker").str.slice(0, 1).alias("prefix"),
        pl.lit(0, pl.Int64).alias("row_count"),
    )
    base = pl.concat([per_file, ledger_only], how="diagonal_relaxed")
    master = (
        base.join(by_ledger.drop("ledger_exchange"), on="ticker", how="left")
        .join(by_rejects, on="ticker", how="left")
        .with_columns(
            (
                pl.col("bronze_suspicious").fill_null(0) + pl.col("rejects_suspicious").fill_null(0)
            ).alias("suspicious_bars_count"),
            (pl.col("bronze_gaps").fill_null(0) + pl.col("rejects_gaps").fill_null(0)).alias(
                "gap_rows_count"
            ),
            pl.lit(as_utc(built_ts)).alias("built_ts"),
        )
    )
    master = _as_master(master)
    return master.sort(["exchange", "ticker", "bronze_path"], nulls_last=True), bad


def build_symbol_master(
    bronze: Snapshot,
    ledger: pl.DataFrame | None,
    rejects: pl.DataFrame | None,
    built_ts: dt.datetime,
) -> pl.DataFrame:
    """One row per Bronze file plus one per ledger ticker without a Bronze file (§4.6 + fixes).

    Sorted by (exchange, ticker). Columns: :data:`SYMBOL_MASTER_SCHEMA`.
    """
    return build_symbol_master_report(bronze, ledger, rejects, built_ts)[0]


def _top(frame: pl.DataFrame, by: list[str], columns: list[str]) -> list[dict[str, Any]]:
    """First :data:`TOP_N` rows by ``by`` descending (nulls last, ties by exchange, ticker)."""
    ranked = frame.sort(
        [*by, "exchange", "ticker"],
        descending=[True] * len(by) + [False, False],
        nulls_last=True,
    ).head(TOP_N)
    return [
        {key: _iso(value) for key, value in row.items()}
        for row in ranked.select(columns).iter_rows(named=True)
    ]


def _rows_by_year(bronze: Snapshot) -> tuple[pl.DataFrame, int]:
    """Bronze rows per calendar year over ONE scan of the layer; plus the unreadable count."""

    def query(scan: pl.LazyFrame) -> pl.LazyFrame:
        return (
            scan.select(pl.col("trade_date").drop_nulls().dt.year().cast(pl.Int64).alias("year"))
            .group_by("year")
            .agg(pl.len().cast(pl.Int64).alias("row_count"))
        )

    counts, bad = _scan_bronze(bronze, query)
    return _as_schema(counts, BY_YEAR_SCHEMA).sort("year"), len(bad)


def sanity_report(
    symbol_master: pl.DataFrame, bronze: Snapshot, generated_ts: dt.datetime
) -> tuple[dict[str, Any], pl.DataFrame, pl.DataFrame]:
    """The §4.7 summary dict (JSON-ready), the by-exchange table and the rows-by-year table.

    Ledger keys replace the quality-report keys: ``ledger_files_count`` (ledger rows of the
    master's tickers), ``ledger_missing_for_symbols`` (tickers with a Bronze file but no ledger
    row) and ``ledger_extra_without_symbol`` (ledger tickers without a Bronze file, i.e. the set
    the old tool could not list as symbols). ``empty_bronze_files_count`` counts only rows
    that have a Bronze file.
    """
    master = _as_master(symbol_master)
    has_file = pl.col("bronze_path").is_not_null()
    exchange_counts = master.group_by("exchange").len().sort("exchange")
    headline = master.select(
        pl.col("row_count").sum().alias("total_rows"),
        pl.col("first_date").min().alias("global_min_trade_date"),
        pl.col("last_date").max().alias("global_max_trade_date"),
        (has_file & (pl.col("row_count") <= 0)).sum().alias("empty_bronze_files_count"),
        (pl.len().over("ticker") > 1).sum().alias("duplicate_ticker_entries_in_symbol_master"),
        pl.col("warn_row_count").sum().alias("total_warn_rows"),
        pl.col("invalid_row_count").sum().alias("total_invalid_rows"),
        pl.col("rejected_line_count").sum().alias("total_rejected_lines"),
        pl.col("failed_files").sum().alias("failed_files_count"),
        pl.col("ledger_file_count").sum().alias("ledger_files_count"),
        (has_file & (pl.col("ledger_file_count") == 0)).sum().alias("ledger_missing_for_symbols"),
        (~has_file).sum().alias("ledger_extra_without_symbol"),
    ).row(0, named=True)
    with_span = master.with_columns(
        (pl.col("last_date") - pl.col("first_date")).dt.total_days().alias("date_span_days")
    )
    by_year, year_errors = _rows_by_year(bronze)
    summary: dict[str, Any] = {
        "generated_ts": as_utc(generated_ts).isoformat(),
        "ticker_count": master.height,
        "exchange_counts": dict(exchange_counts.iter_rows()),
        "bronze_file_count": len(bronze.tickers()),
        **{
            key: _iso(value) if key in _DATE_KEYS else int(value or 0)
            for key, value in headline.items()
        },
        "top_tickers_by_warn_rows": _top(
            master,
            ["warn_row_count", "row_count"],
            ["ticker", "exchange", "warn_row_count", "row_count", "first_date", "last_date"],
        ),
        "top_tickers_by_row_count": _top(
            master, ["row_count"], ["ticker", "exchange", "row_count", "first_date", "last_date"]
        ),
        "top_tickers_by_date_span_days": _top(
            with_span,
            ["date_span_days", "row_count"],
            ["ticker", "exchange", "date_span_days", "first_date", "last_date", "row_count"],
        ),
        "rows_by_year_read_errors": year_errors,
    }
    by_exchange = _as_schema(
        master.group_by("exchange").agg(
            pl.len().alias("ticker_count"),
            pl.col("row_count").sum().alias("total_rows"),
            pl.col("first_date").min().alias("min_date"),
            pl.col("last_date").max().alias("max_date"),
            pl.col("warn_row_count").sum().alias("total_warn_rows"),
        ),
        BY_EXCHANGE_SCHEMA,
    ).sort("exchange")
    return summary, by_exchange, by_year


def problem_tickers(
    symbol_master: pl.DataFrame, limit: int = 50, only_invalid: bool = False
) -> pl.DataFrame:
    """Tickers with invalid rows, warnings, rejected lines or failed files (§4.8 + fixes).

    ``only_invalid`` keeps tickers with real invalid rows only. Sorted by invalid, warn and row
    counts descending (the old order), then rejected lines and failed files descending, then
    exchange and ticker, so the output is deterministic.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    master = _as_master(symbol_master)
    invalid = pl.col("invalid_row_count") > 0
    criterion = (
        invalid
        if only_invalid
        else (
            invalid
            | (pl.col("warn_row_count") > 0)
            | (pl.col("rejected_line_count") > 0)
            | (pl.col("failed_files") > 0)
        )
    )
    keys = [
        "invalid_row_count",
        "warn_row_count",
        "row_count",
        "rejected_line_count",
        "failed_files",
        "exchange",
        "ticker",
    ]
    return (
        master.filter(criterion)
        .sort(keys, descending=[True] * 5 + [False, False])
        .select(PROBLEM_COLUMNS)
        .head(limit)
    )


def symbol_master_paths(bronze_root: Path) -> tuple[Path, Path]:
    """The symbol master files: ``<bronze_root>/symbol_master/symbol_master.{parquet,csv}``."""
    folder = bronze_root / SYMBOL_MASTER_DIR
    return folder / f"{SYMBOL_MASTER_NAME}.parquet", folder / f"{SYMBOL_MASTER_NAME}.csv"


def write_symbol_master(master: pl.DataFrame, bronze_root: Path) -> tuple[Path, Path]:
    """Write the symbol master as Parquet and CSV, each atomically (default options, §4.6)."""
    parquet_path, csv_path = symbol_master_paths(bronze_root)
    lake.write_parquet(master, parquet_path)
    lake.write_csv(master, csv_path)
    return parquet_path, csv_path


def write_sanity_artifacts(
    summary: dict[str, Any],
    by_exchange: pl.DataFrame,
    by_year: pl.DataFrame,
    artifacts_root: Path,
) -> list[Path]:
    """Write the §4.7 artifacts into ``<artifacts_root>/bronze_qa/``; returns their paths."""
    folder = artifacts_root / BRONZE_QA_DIR
    written = [lake.write_json(summary, folder / SUMMARY_JSON)]
    for name, frame in ((BY_EXCHANGE_NAME, by_exchange), (BY_YEAR_NAME, by_year)):
        written.append(lake.write_parquet(frame, folder / f"{name}.parquet"))
        written.append(lake.write_csv(frame, folder / f"{name}.csv"))
    return written
