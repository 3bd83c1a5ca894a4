"""Bronze: line table -> typed, validated rows, a rejects table and a per-file ledger.

Pure polars (no Dagster). Everything runs over all files of a run at once; there is no
Python loop over lines or rows. The rules are the old tool's (spec/etl.md §4.1-4.2) except for
the decisions listed in spec/README.md and these ones of ours:

* Rows with the wrong number of fields are rejected (``too_few_columns:<n>`` /
  ``too_many_columns:<n>``), never padded or truncated into data.
* A data line identical (after trimming) to an earlier line of the same file is rejected as
  ``duplicate_line``; rows that still share (ticker, trade_date) are all invalid.
* ``q_ticker_mismatch`` (error): the content ticker is not blank and differs from the file's
  ticker. ``q_zero_volume`` (warning): volume == 0.
* The gap warning compares valid rows with the previous valid row only.
* Dates are exactly 8 ASCII digits ``YYYYMMDD`` forming a real Gregorian date; times are up to
  6 digits, left-padded with ``0``, ``HHMMSS`` with HH < 24, MM < 60, SS < 60. Anything else
  is a parse error (the old tool used a lenient strptime).
* Non-finite numbers (``nan``, ``inf``) are treated as missing: they become null and the row
  gets ``q_parse_error``.
* Fields are trimmed, then one pair of surrounding double quotes is removed (and the inside
  trimmed); empty becomes null. Doubled quotes and delimiters inside quotes are not supported
  (Stooq never quotes).
* Rows keep file order through validation; unsorted input is counted per file and the valid
  output is sorted by (ticker, trade_date, source_line_no).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from mf_pipeline.lib.layers.ingest import (
    KIND_BLANK,
    KIND_DATA,
    KIND_HEADER,
    N_FIELDS,
    RAW_FIELDS,
    read_texts,
    split_lines,
)

SCHEMA_VERSION = "v1"

STATUS_OK = "OK"
STATUS_EMPTY = "EMPTY"
STATUS_FAILED = "FAILED"

REASON_DUPLICATE_LINE = "duplicate_line"
REASON_READ_ERROR = "read_error"

NORMALIZED_COLUMNS: tuple[str, ...] = (
    "ticker", "exchange", "timeframe", "trade_date", "trade_dt",
    "open", "high", "low", "close", "volume", "openint",
    "raw_ticker", "raw_per", "raw_date", "raw_time",
    "source_file", "source_file_name", "ingest_ts", "run_id", "source_line_no",
)
# Helper columns carried by normalize()/validate() output after the spec columns.
HELPER_COLUMNS: tuple[str, ...] = ("file_id", "file_ticker", "raw_line")

ERROR_FLAGS: tuple[str, ...] = (
    "q_missing_field", "q_parse_error", "q_bad_timeframe", "q_nonpositive_price",
    "q_high_lt_low", "q_ohlc_outside_hl", "q_negative_volume", "q_duplicate_ticker_date",
    "q_ticker_mismatch",
)
WARNING_FLAGS: tuple[str, ...] = ("q_suspicious_bar", "q_gap_in_calendar", "q_zero_volume")
FLAG_COLUMNS: tuple[str, ...] = ERROR_FLAGS + WARNING_FLAGS
QUALITY_COLUMNS: tuple[str, ...] = (
    *FLAG_COLUMNS, "quality_error_count", "quality_warn_count", "is_valid_row",
)
BRONZE_COLUMNS: tuple[str, ...] = (*NORMALIZED_COLUMNS, *QUALITY_COLUMNS, "schema_version")

# File-level notes (ledger ``reasons``).
NOTE_MISSING_HEADER = "missing_header"
NOTE_BLANK_LINES = "blank_lines"
NOTE_UNSORTED = "unsorted"
NOTE_BOM = "bom"
NOTE_CRLF = "crlf"
NOTE_EMPTY_FILE = "empty_file"
NOTE_HEADER_ONLY = "header_only"

REJECTS_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "ticker": pl.String(),
    "line_no": pl.Int64(),
    "raw_line": pl.String(),
    "kind": pl.String(),
    "reason": pl.String(),
}

LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "ticker": pl.String(),
    "exchange": pl.String(),
    "status": pl.String(),
    "lines_total": pl.Int64(),
    "lines_header": pl.Int64(),
    "lines_blank": pl.Int64(),
    "rows_rejected": pl.Int64(),
    "rows_valid": pl.Int64(),
    "rows_invalid": pl.Int64(),
    "rows_warned": pl.Int64(),
    "rows_unsorted": pl.Int64(),
    "reasons": pl.String(),
    "min_trade_date": pl.Date(),
    "max_trade_date": pl.Date(),
    "run_id": pl.String(),
}

_US_PER_DAY = 86_400_000_000


def flag_code(flag: str) -> str:
    """Reason code of a quality flag (the flag name without ``q_``)."""
    return flag.removeprefix("q_")


@dataclass(frozen=True)
class ValidationThresholds:
    """Thresholds of the warning rules (settings group ``validation``)."""

    suspicious_range_pct: float = 0.5
    suspicious_return_pct: float = 0.3
    gap_days_warn: int = 7


@dataclass
class BronzeResult:
    """Outputs of one Bronze build over many files."""

    valid: pl.DataFrame
    rejects: pl.DataFrame
    ledger: pl.DataFrame


# --------------------------------------------------------------------------- helpers


def _utc(ts: datetime) -> datetime:
    """A naive timestamp is taken as UTC; an aware one is converted."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _clean_expr(expr: pl.Expr) -> pl.Expr:
    """Trim, drop one pair of surrounding double quotes (trim inside), empty -> null."""
    s = expr.str.strip_chars()
    n = s.str.len_chars()
    quoted = s.str.starts_with('"') & s.str.ends_with('"') & (n >= 2)
    s = pl.when(quoted).then(s.str.slice(1, n - 2).str.strip_chars()).otherwise(s)
    return pl.when(s != "").then(s)


def _clean(s: pl.Series) -> pl.Series:
    return s.to_frame("s").select(_clean_expr(pl.col("s"))).to_series().alias(s.name)


def _by_file(values: pl.Series, name: str) -> pl.Expr:
    """Per-row value of a per-file Series (indexed by ``file_id``)."""
    return pl.lit(values).gather(pl.col("file_id")).alias(name)


def _file_meta(files: pl.DataFrame) -> pl.DataFrame:
    """Per-file metadata indexed by ``file_id`` (the row position in ``files``)."""
    exchange = pl.col("exchange").cast(pl.String).str.strip_chars().str.to_uppercase()
    ticker = pl.col("ticker").cast(pl.String)
    return files.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("file_id"),
        pl.col("source_file").cast(pl.String),
        pl.col("source_file").cast(pl.String).str.split("/").list.last().alias("source_file_name"),
        ticker.alias("file_ticker"),
        pl.when(exchange.is_null() | (exchange == ""))
        .then(pl.lit("UNKNOWN"))
        .otherwise(exchange)
        .alias("exchange"),
        pl.col("fail_reason").cast(pl.String),
    )


def _date_days(s: pl.Expr) -> pl.Expr:
    """Days since 1970-01-01 of exactly 8 ASCII digits ``YYYYMMDD`` forming a real date."""
    v = s.cast(pl.Int64, strict=False)
    y, m, d = v // 10_000, v // 100 % 100, v % 100
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    month_days = (
        pl.when(m == 2)
        .then(28 + leap.cast(pl.Int64))
        .when(m.is_in([4, 6, 9, 11]))
        .then(30)
        .otherwise(31)
    )
    valid = (
        (s.str.len_bytes() == 8)
        & ~s.str.starts_with("+")
        & ~s.str.starts_with("-")
        & (m >= 1)
        & (m <= 12)
        & (d >= 1)
        & (d <= month_days)
    )
    # Proleptic Gregorian days from a civil date (March-based year, 400-year eras).
    y2 = y - (m <= 2).cast(pl.Int64)
    era = y2 // 400
    yoe = y2 - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return pl.when(valid.fill_null(False)).then(era * 146_097 + doe - 719_468)


def _time_us(s: pl.Expr) -> pl.Expr:
    """Microseconds since midnight of exactly 6 ASCII digits ``HHMMSS`` (no leap second)."""
    v = s.cast(pl.Int64, strict=False)
    hh, mm, ss = v // 10_000, v // 100 % 100, v % 100
    valid = (
        (s.str.len_bytes() == 6)
        & ~s.str.starts_with("+")
        & ~s.str.starts_with("-")
        & (hh < 24)
        & (mm < 60)
        & (ss < 60)
    )
    return pl.when(valid.fill_null(False)).then((hh * 3600 + mm * 60 + ss) * 1_000_000)


def _timeframe(per: pl.Expr) -> pl.Expr:
    """``D`` -> ``D1``, null -> ``UNKNOWN``, anything else kept (spec §4.1)."""
    return (
        pl.when(per == "D").then(pl.lit("D1")).when(per.is_null()).then(pl.lit("UNKNOWN"))
        .otherwise(per)
    )


def _per_value(
    s: pl.Series, uniq: pl.Series, fn: Callable[[pl.Expr], pl.Expr], dtype: pl.DataType
) -> pl.Series:
    """``fn`` applied to the distinct values ``uniq`` of ``s`` only, then mapped back.

    Ticker, period, date and time repeat a few thousand values over millions of rows, so the
    per-value work is nearly free. Mapping back goes through an Enum of the distinct values
    (its physical codes index the per-value results) and is skipped when the result is
    constant or equal to the input. Null inputs give null.
    """
    cats = uniq.drop_nulls()
    out = cats.to_frame("v").select(fn(pl.col("v")).cast(dtype)).to_series()
    if s.null_count() == 0 and out.n_unique() == 1:
        return out.new_from_index(0, s.len())
    if s.dtype == dtype and out.equals(cats, check_names=False):
        return s
    return out.gather(s.cast(pl.Enum(cats)).to_physical())


def _number(s: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Cast a raw field; only when some value fails, retry that column after cleaning.

    A successful cast proves the field had no surrounding whitespace or quotes (polars casts
    reject both), so the retry gives exactly the clean-then-cast result. Non-finite floats
    (nan, inf) become null: they are treated as missing.
    """
    out = s.cast(dtype, strict=False)
    if out.null_count() > s.null_count() and bool((out.is_null() & (s != "")).any()):
        out = _clean(s).cast(dtype, strict=False)
    if dtype.is_float() and not bool(out.is_finite().fill_null(True).all()):
        out = out.to_frame("v").select(pl.when(pl.col("v").is_finite()).then(pl.col("v")))
        out = out.to_series()
    return out


def _later_in_file_not_increasing(file_id: pl.Series, values: pl.Series) -> pl.Series:
    """File ids where non-null ``values`` (file order) are not strictly increasing."""
    keys = pl.DataFrame({"file_id": file_id, "v": values}).filter(pl.col("v").is_not_null())
    bad = keys.filter(
        (pl.col("file_id") == pl.col("file_id").shift(1)) & (pl.col("v") <= pl.col("v").shift(1))
    )
    return bad.get_column("file_id").unique()


def _scatter_true(n: int, rows: pl.Series) -> pl.Series:
    out = np.zeros(n, dtype=bool)
    out[rows.to_numpy()] = True
    return pl.Series(out)


def _duplicate_line_mask(normalized: pl.DataFrame) -> pl.Series:
    """True for a data line identical to an earlier line of the same file.

    Exact but cheap: identical lines share a date, so only files whose non-null dates are not
    strictly increasing, plus rows with no date, can hold duplicates; only those are compared.
    """
    n = normalized.height
    bad_files = _later_in_file_not_increasing(
        normalized.get_column("file_id"), normalized.get_column("trade_date")
    )
    cand = normalized.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), "file_id", "raw_line", "trade_date"
    ).filter(pl.col("file_id").is_in(bad_files.implode()) | pl.col("trade_date").is_null())
    if cand.height == 0:
        return pl.Series(np.zeros(n, dtype=bool))
    dup = cand.filter(~pl.struct("file_id", "raw_line").is_first_distinct())
    return _scatter_true(n, dup.get_column("row"))


def _duplicate_ticker_date(df: pl.DataFrame) -> pl.Series:
    """True for every row whose (ticker, trade_date) occurs more than once in its file."""
    n = df.height
    bad_files = _later_in_file_not_increasing(df.get_column("file_id"), df.get_column("trade_date"))
    if bad_files.len() == 0:
        return pl.Series(np.zeros(n, dtype=bool))
    cand = df.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), "file_id", "ticker", "trade_date"
    ).filter(
        pl.col("file_id").is_in(bad_files.implode())
        & pl.col("ticker").is_not_null()
        & pl.col("trade_date").is_not_null()
    )
    dup = cand.filter(pl.struct("file_id", "ticker", "trade_date").is_duplicated())
    return _scatter_true(n, dup.get_column("row"))


def _gap_flags(df: pl.DataFrame, is_valid: pl.Series, gap_days: int) -> pl.Series:
    """Gap warning among valid rows: days since the previous valid row of the file > gap."""
    n = df.height
    keys = (
        df.select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
            "file_id",
            "trade_date",
            "source_line_no",
        )
        .filter(is_valid)
        .sort("file_id", "trade_date", "source_line_no")
    )
    gap = keys.filter(
        (pl.col("file_id") == pl.col("file_id").shift(1))
        & ((pl.col("trade_date") - pl.col("trade_date").shift(1)).dt.total_days() > gap_days)
    )
    return _scatter_true(n, gap.get_column("row"))


# --------------------------------------------------------------------------- stages


def normalize(
    lines: pl.DataFrame, files: pl.DataFrame, run_id: str, ingest_ts: datetime
) -> pl.DataFrame:
    """Typed rows (spec §4.1) from the data lines with exactly 10 fields of non-failed files.

    Columns: ``NORMALIZED_COLUMNS`` then ``HELPER_COLUMNS``; file order. Cleaning (trim,
    unquote) is skipped for a column when a cheap check proves it would change nothing, which
    is the case for well-formed Stooq files.
    """
    meta = _file_meta(files)
    ok_file = meta.get_column("fail_reason").is_null().to_numpy()
    fid_all = lines.get_column("file_id").to_numpy()
    keep = (
        (lines.get_column("kind") == KIND_DATA)
        & (lines.get_column("n_fields") == N_FIELDS).fill_null(False)
        & pl.Series(ok_file[fid_all] if fid_all.size else np.zeros(0, dtype=bool))
    )
    data = lines.filter(keep).select("file_id", "line_no", "line", *RAW_FIELDS)
    fid = data.get_column("file_id")

    def column(name: str) -> tuple[pl.Series, pl.Series]:
        s = data.get_column(name)
        return s, s.unique()

    clean = _clean_expr
    s, u = column("raw_ticker")
    raw_ticker = _per_value(s, u, clean, pl.String())
    ticker = _per_value(s, u, lambda e: clean(e).str.to_uppercase(), pl.String())
    s, u = column("raw_per")
    raw_per = _per_value(s, u, lambda e: clean(e).str.to_uppercase(), pl.String())
    timeframe = _per_value(s, u, lambda e: _timeframe(clean(e).str.to_uppercase()), pl.String())
    s, u = column("raw_date")
    raw_date = _per_value(s, u, clean, pl.String())
    days = _per_value(s, u, lambda e: _date_days(clean(e)), pl.Int64())
    s, u = column("raw_time")
    raw_time = _per_value(s, u, lambda e: clean(e).str.pad_start(6, "0"), pl.String())
    tus = _per_value(s, u, lambda e: _time_us(clean(e).str.pad_start(6, "0")), pl.Int64())

    numbers = [
        _number(data.get_column(f"raw_{name}"), pl.Float64()).alias(name)
        for name in ("open", "high", "low", "close", "volume")
    ]
    openint = _number(data.get_column("raw_openint"), pl.Int64()).alias("openint")
    trade_dt = (days * _US_PER_DAY + tus).cast(pl.Datetime("us"))

    ts = _utc(ingest_ts)
    n = data.height
    return pl.DataFrame(
        [
            ticker.alias("ticker"),
            meta.get_column("exchange").gather(fid),
            timeframe.alias("timeframe"),
            days.cast(pl.Int32).cast(pl.Date).alias("trade_date"),
            trade_dt.alias("trade_dt"),
            *numbers,
            openint,
            raw_ticker.alias("raw_ticker"),
            raw_per.alias("raw_per"),
            raw_date.alias("raw_date"),
            raw_time.alias("raw_time"),
            meta.get_column("source_file").gather(fid),
            meta.get_column("source_file_name").gather(fid),
            pl.Series("ingest_ts", [ts], pl.Datetime("us", "UTC")).new_from_index(0, n),
            pl.Series("run_id", [run_id], pl.String).new_from_index(0, n),
            data.get_column("line_no").alias("source_line_no"),
            fid,
            meta.get_column("file_ticker").gather(fid).alias("file_ticker"),
            data.get_column("line").alias("raw_line"),
        ]
    )


def validate(normalized: pl.DataFrame, thresholds: ValidationThresholds) -> pl.DataFrame:
    """Add the quality flags (spec §4.2 plus our rules) to normalised rows, file order kept.

    Expects ``normalize`` output after duplicate lines were removed. Warnings never
    invalidate; the gap warning is computed among valid rows only (False on invalid rows).
    """
    c = pl.col
    o, h, lo, cl, v = c("open"), c("high"), c("low"), c("close"), c("volume")
    prices = (o, h, lo, cl)
    df = normalized.with_columns(
        pl.any_horizontal(
            *(c(name).is_null() for name in ("ticker", "raw_per", "raw_date", "raw_time")),
            *(x.is_null() for x in (*prices, v, c("trade_date"))),
        ).alias("q_missing_field"),
        pl.any_horizontal(
            *(x.is_null() for x in (c("trade_date"), c("trade_dt"), *prices, v))
        ).alias("q_parse_error"),
        (c("timeframe") != "D1").fill_null(True).alias("q_bad_timeframe"),
        pl.any_horizontal(*(x <= 0 for x in prices)).fill_null(False).alias("q_nonpositive_price"),
        (h < lo).fill_null(False).alias("q_high_lt_low"),
        ((o < lo) | (o > h) | (cl < lo) | (cl > h)).fill_null(False).alias("q_ohlc_outside_hl"),
        (v < 0).fill_null(False).alias("q_negative_volume"),
        (
            c("ticker").is_not_null()
            & (c("file_ticker").is_null() | (c("ticker") != c("file_ticker")))
        )
        .fill_null(False)
        .alias("q_ticker_mismatch"),
        (
            ((cl.abs() > 0) & ((h - lo) / cl.abs() > thresholds.suspicious_range_pct))
            | ((o.abs() > 0) & ((cl / o - 1).abs() > thresholds.suspicious_return_pct))
        )
        .fill_null(False)
        .alias("q_suspicious_bar"),
        (v == 0).fill_null(False).alias("q_zero_volume"),
    )
    df = df.with_columns(_duplicate_ticker_date(df).alias("q_duplicate_ticker_date"))
    errors = pl.sum_horizontal(*(c(f).cast(pl.Int64) for f in ERROR_FLAGS))
    df = df.with_columns(errors.alias("quality_error_count"))
    is_valid = df.get_column("quality_error_count") == 0
    df = df.with_columns(
        _gap_flags(df, is_valid, thresholds.gap_days_warn).alias("q_gap_in_calendar")
    )
    warns = pl.sum_horizontal(*(c(f).cast(pl.Int64) for f in WARNING_FLAGS))
    return df.select(
        *NORMALIZED_COLUMNS,
        *FLAG_COLUMNS,
        "quality_error_count",
        warns.alias("quality_warn_count"),
        (c("quality_error_count") == 0).alias("is_valid_row"),
        *HELPER_COLUMNS,
    )


def _invalid_reason() -> pl.Expr:
    """Comma-joined error codes of a row, sorted alphabetically."""
    ordered = sorted(ERROR_FLAGS, key=flag_code)
    return pl.concat_str(
        [pl.when(pl.col(f)).then(pl.lit(flag_code(f))) for f in ordered],
        separator=",",
        ignore_nulls=True,
    )


def _rejected_lines(lines: pl.DataFrame, meta: pl.DataFrame) -> pl.DataFrame:
    """Data lines rejected before parsing: failed files and wrong field counts."""
    data = lines.select("file_id", "line_no", "line", "kind", "n_fields").filter(
        pl.col("kind") == KIND_DATA
    )
    fail = meta.get_column("fail_reason").gather(data.get_column("file_id"))
    n = pl.col("n_fields")
    return (
        data.with_columns(fail.alias("fail_reason"))
        .filter(pl.col("fail_reason").is_not_null() | (n != N_FIELDS))
        .select(
            "file_id",
            "line_no",
            pl.col("line").alias("raw_line"),
            pl.coalesce(
                "fail_reason",
                pl.when(n < N_FIELDS)
                .then(pl.format("too_few_columns:{}", n))
                .otherwise(pl.format("too_many_columns:{}", n)),
            ).alias("reason"),
        )
    )


def _unsorted_counts(rows: pl.DataFrame) -> pl.DataFrame:
    """Per file: rows dated earlier than the previous dated row in file order."""
    keys = rows.select("file_id", "trade_date").filter(pl.col("trade_date").is_not_null())
    return (
        keys.filter(
            (pl.col("file_id") == pl.col("file_id").shift(1))
            & (pl.col("trade_date") < pl.col("trade_date").shift(1))
        )
        .group_by("file_id")
        .agg(pl.len().cast(pl.Int64).alias("rows_unsorted"))
    )


def _ledger(
    meta: pl.DataFrame,
    texts: pl.DataFrame,
    lines: pl.DataFrame,
    rejected: pl.DataFrame,
    validated: pl.DataFrame,
    run_id: str,
) -> pl.DataFrame:
    """One row per input file; see ``LEDGER_SCHEMA`` and ``reconcile``."""
    k = pl.col("kind")
    line_stats = lines.group_by("file_id").agg(
        pl.len().cast(pl.Int64).alias("lines_total"),
        (k == KIND_HEADER).sum().cast(pl.Int64).alias("lines_header"),
        (k == KIND_BLANK).sum().cast(pl.Int64).alias("lines_blank"),
        (k == KIND_DATA).sum().cast(pl.Int64).alias("lines_data"),
        pl.col("bom").any().alias("has_bom"),
        pl.col("cr").any().alias("has_cr"),
    )
    reject_stats = rejected.group_by("file_id").agg(
        pl.len().cast(pl.Int64).alias("rows_rejected"),
        pl.col("reason").unique().alias("reject_reasons"),
    )
    valid = pl.col("is_valid_row")
    row_stats = validated.group_by("file_id").agg(
        valid.sum().cast(pl.Int64).alias("rows_valid"),
        (~valid).sum().cast(pl.Int64).alias("rows_invalid"),
        (valid & (pl.col("quality_warn_count") > 0)).sum().cast(pl.Int64).alias("rows_warned"),
        pl.col("trade_date").filter(valid).min().alias("min_trade_date"),
        pl.col("trade_date").filter(valid).max().alias("max_trade_date"),
        *(pl.col(f).any().alias(f) for f in ERROR_FLAGS),
        *((pl.col(f) & valid).any().alias(f) for f in WARNING_FLAGS),
    )
    unsorted = _unsorted_counts(validated)

    counts = ("lines_total", "lines_header", "lines_blank", "lines_data", "rows_rejected",
              "rows_valid", "rows_invalid", "rows_warned", "rows_unsorted")
    df = (
        meta.join(texts.select("file_id", "read_error"), on="file_id", how="left")
        .join(line_stats, on="file_id", how="left")
        .join(reject_stats, on="file_id", how="left")
        .join(row_stats, on="file_id", how="left")
        .join(unsorted, on="file_id", how="left")
        .sort("file_id")
        .with_columns(
            *(pl.col(name).fill_null(0) for name in counts),
            *(pl.col(f).fill_null(False) for f in FLAG_COLUMNS),
            pl.col("has_bom").fill_null(False),
            pl.col("has_cr").fill_null(False),
        )
    )
    c = pl.col
    failed = c("fail_reason").is_not_null() | c("read_error").is_not_null()
    readable = c("read_error").is_null()
    notes = {
        NOTE_MISSING_HEADER: (c("lines_data") > 0) & (c("lines_header") == 0),
        NOTE_BLANK_LINES: c("lines_blank") > 0,
        NOTE_UNSORTED: c("rows_unsorted") > 0,
        NOTE_BOM: c("has_bom"),
        NOTE_CRLF: c("has_cr"),
        NOTE_EMPTY_FILE: readable & (c("lines_total") == c("lines_blank")),
        NOTE_HEADER_ONLY: (c("lines_header") > 0) & (c("lines_data") == 0),
    }
    codes = [
        *(pl.when(c(f)).then(pl.lit(flag_code(f))) for f in FLAG_COLUMNS),
        *(pl.when(cond).then(pl.lit(code)) for code, cond in notes.items()),
        c("fail_reason"),
        pl.when(c("read_error").is_not_null()).then(pl.lit(REASON_READ_ERROR)),
    ]
    reasons = (
        pl.concat_list(
            c("reject_reasons").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.concat_list(*codes),
        )
        .list.drop_nulls()
        .list.unique()
        .list.sort()
        .list.join(",")
    )
    status = (
        pl.when(failed)
        .then(pl.lit(STATUS_FAILED))
        .when(c("lines_data") == 0)
        .then(pl.lit(STATUS_EMPTY))
        .otherwise(pl.lit(STATUS_OK))
    )
    return df.select(
        "source_file",
        c("file_ticker").alias("ticker"),
        "exchange",
        status.alias("status"),
        "lines_total",
        "lines_header",
        "lines_blank",
        "rows_rejected",
        "rows_valid",
        "rows_invalid",
        "rows_warned",
        "rows_unsorted",
        reasons.alias("reasons"),
        "min_trade_date",
        "max_trade_date",
        pl.lit(run_id, dtype=pl.String).alias("run_id"),
    ).cast(LEDGER_SCHEMA)  # type: ignore[arg-type]


def reconcile(ledger: pl.DataFrame) -> pl.DataFrame:
    """Ledger rows breaking ``lines_total = header + blank + rejected + valid + invalid``."""
    c = pl.col
    accounted = (
        c("lines_header") + c("lines_blank") + c("rows_rejected") + c("rows_valid")
        + c("rows_invalid")
    )
    return ledger.filter(c("lines_total") != accounted)


def build_bronze(
    files: pl.DataFrame, thresholds: ValidationThresholds, run_id: str, ingest_ts: datetime
) -> BronzeResult:
    """Read, normalise and validate every file of ``files``; return valid rows, rejects, ledger.

    ``files`` columns: ``source_file``, ``path``, ``ticker``, ``exchange``, ``fail_reason``.
    Nothing raises per file: unreadable files are FAILED (``read_error``), files with a
    ``fail_reason`` are FAILED with every data line rejected for that reason.
    """
    meta = _file_meta(files)
    texts = read_texts(files)
    lines = split_lines(texts)
    normalized = normalize(lines, files, run_id, ingest_ts)

    dup_mask = _duplicate_line_mask(normalized)
    duplicates = normalized.filter(dup_mask).select(
        "file_id",
        pl.col("source_line_no").alias("line_no"),
        "raw_line",
        pl.lit(REASON_DUPLICATE_LINE).alias("reason"),
    )
    kept = normalized.filter(~dup_mask) if duplicates.height else normalized
    validated = validate(kept, thresholds)

    rejected = pl.concat([_rejected_lines(lines, meta), duplicates], how="vertical")
    invalid = validated.filter(~pl.col("is_valid_row")).select(
        "file_id",
        pl.col("source_line_no").alias("line_no"),
        "raw_line",
        _invalid_reason().alias("reason"),
    )
    rejects = (
        pl.concat(
            [
                rejected.with_columns(pl.lit("rejected").alias("kind")),
                invalid.with_columns(pl.lit("invalid").alias("kind")),
            ],
            how="vertical",
        )
        .sort("file_id", "line_no")
        .with_columns(
            _by_file(meta.get_column("source_file"), "source_file"),
            _by_file(meta.get_column("file_ticker"), "ticker"),
        )
        .select(*REJECTS_SCHEMA)
        .cast(REJECTS_SCHEMA)  # type: ignore[arg-type]
    )

    ledger = _ledger(meta, texts, lines, rejected, validated, run_id)

    # Valid rows carry their file's ticker, so a per-file ticker rank sorts them by ticker
    # without a string sort.
    rank = meta.get_column("file_ticker").rank("dense").cast(pl.Int64)
    valid = (
        validated.filter(pl.col("is_valid_row"))
        .with_columns(_by_file(rank, "_rank"))
        .sort("_rank", "trade_date", "source_line_no", "file_id")
        .with_columns(pl.lit(SCHEMA_VERSION).alias("schema_version"))
        .select(BRONZE_COLUMNS)
    )
    return BronzeResult(valid=valid, rejects=rejects, ledger=ledger)
