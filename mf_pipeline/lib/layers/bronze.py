"""Bronze: raw rows -> typed, validated rows, a rejects table and a per-file ledger.

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

Ledger (one row per input file): ``status`` is FAILED (``fail_reason`` given or unreadable),
else EMPTY (no data line: empty, blank-only or header-only), else OK. ``rows_warned`` counts
valid rows with a warning; ``reasons`` lists the distinct reject reasons (``too_few_columns:3``
as written), error codes of invalid rows, warning codes of valid rows and file notes, sorted.
Every file satisfies ``lines_total = lines_header + lines_blank + rows_rejected + rows_valid
+ rows_invalid`` (``reconcile``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from mf_pipeline.lib.layers.ingest import (
    N_FIELDS,
    RAW_FIELDS,
    line_text,
    read_rows,
    rows_from_lines,
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
# Helper columns carried after the spec columns by normalize() (and through validate()):
# the row's file (position in ``files``), that file's ticker and the trimmed raw line.
HELPER_COLUMNS: tuple[str, ...] = ("file_id", "file_ticker", "raw_line")
_INTERNAL_COLUMNS: tuple[str, ...] = (*HELPER_COLUMNS, "_row")
_PRICE_VOLUME: tuple[str, ...] = ("open", "high", "low", "close", "volume")

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


def _clean(s: pl.Series) -> pl.Series:
    """Trim, drop one pair of surrounding double quotes (trim inside), empty -> null."""
    c = pl.col
    return (
        s.to_frame("s")
        .lazy()
        .select(c("s").str.strip_chars())
        .with_columns(c("s").str.len_chars().alias("n"))
        .select(
            pl.when(c("s").str.starts_with('"') & c("s").str.ends_with('"') & (c("n") >= 2))
            .then(c("s").str.slice(1, c("n") - 2).str.strip_chars())
            .otherwise(c("s"))
            .alias("s")
        )
        .select(pl.when(c("s") != "").then(c("s")).alias(s.name))
        .collect()
        .to_series()
    )


def _by_file(values: pl.Series, name: str) -> pl.Expr:
    """Per-row value of a per-file Series (indexed by ``file_id``)."""
    return pl.lit(values).gather(pl.col("file_id")).alias(name)


def file_meta(files: pl.DataFrame) -> pl.DataFrame:
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


def _date_days(values: pl.Series, col: str) -> pl.Series:
    """Days since 1970-01-01 of exactly 8 ASCII digits ``YYYYMMDD`` forming a real date.

    Staged ``with_columns`` keep the expression trees small (one nested expression costs
    tens of milliseconds to optimise, even on one row).
    """
    c = pl.col
    s = c(col)
    staged = (
        values.to_frame(col)
        .lazy()
        .with_columns(
            s.cast(pl.Int64, strict=False).alias("_v"),
            ((s.str.len_bytes() == 8) & ~s.str.starts_with("+") & ~s.str.starts_with("-"))
            .fill_null(False)
            .alias("_digits"),
        )
        .with_columns(
            (c("_v") // 10_000).alias("_y"), (c("_v") // 100 % 100).alias("_m"),
            (c("_v") % 100).alias("_d"),
        )
        .with_columns(
            (((c("_y") % 4 == 0) & (c("_y") % 100 != 0)) | (c("_y") % 400 == 0))
            .cast(pl.Int64)
            .alias("_leap"),
            # Proleptic Gregorian days from a civil date (March-based year, 400-year eras).
            (c("_y") - (c("_m") <= 2).cast(pl.Int64)).alias("_y2"),
        )
        .with_columns(
            pl.when(c("_m") == 2)
            .then(28 + c("_leap"))
            .when(c("_m").is_in([4, 6, 9, 11]))
            .then(30)
            .otherwise(31)
            .alias("_month_days"),
            (c("_y2") // 400).alias("_era"),
        )
        .with_columns((c("_y2") - c("_era") * 400).alias("_yoe"))
        .select(
            pl.when(
                (c("_digits") & c("_m").is_between(1, 12) & c("_d").is_between(1, c("_month_days")))
                .fill_null(False)
            )
            .then(
                c("_era") * 146_097
                + c("_yoe") * 365 + c("_yoe") // 4 - c("_yoe") // 100
                + (153 * ((c("_m") + 9) % 12) + 2) // 5 + c("_d") - 1
                - 719_468
            )
            .alias("days")
        )
    )
    return staged.collect().to_series()


def _time_us(values: pl.Series, col: str) -> pl.Series:
    """Microseconds since midnight of exactly 6 ASCII digits ``HHMMSS`` (no leap second)."""
    c = pl.col
    s = c(col)
    return (
        values.to_frame(col)
        .lazy()
        .with_columns(
            s.cast(pl.Int64, strict=False).alias("_v"),
            ((s.str.len_bytes() == 6) & ~s.str.starts_with("+") & ~s.str.starts_with("-"))
            .fill_null(False)
            .alias("_digits"),
        )
        .with_columns(
            (c("_v") // 10_000).alias("_h"), (c("_v") // 100 % 100).alias("_mi"),
            (c("_v") % 100).alias("_s"),
        )
        .select(
            pl.when(
                (c("_digits") & (c("_h") < 24) & (c("_mi") < 60) & (c("_s") < 60)).fill_null(False)
            )
            .then((c("_h") * 3600 + c("_mi") * 60 + c("_s")) * 1_000_000)
            .alias("us")
        )
        .collect()
        .to_series()
    )


def _timeframe(per: pl.Expr) -> pl.Expr:
    """``D`` -> ``D1``, null -> ``UNKNOWN``, anything else kept (spec §4.1)."""
    return (
        pl.when(per == "D").then(pl.lit("D1")).when(per.is_null()).then(pl.lit("UNKNOWN"))
        .otherwise(per)
    )


def _per_value(
    s: pl.Series, uniq: pl.Series, out: pl.Series, name: str
) -> pl.Series | pl.Expr:
    """Map each value of ``s`` (no nulls) to ``out[i]`` where ``uniq[i]`` is that value.

    Ticker, period, date and time repeat a few thousand values over millions of rows, so
    their cleaning and parsing run on the distinct values only. Mapping back goes through an
    Enum of the distinct values (its physical codes index ``out``) and is skipped when the
    result equals the input; a constant result is returned as a literal, which polars keeps
    as a cheap scalar column.
    """
    if out.n_unique() == 1:
        return pl.lit(out[0], dtype=out.dtype).alias(name)
    if s.dtype == out.dtype and out.equals(uniq, check_names=False):
        return s.alias(name)
    return out.gather(s.cast(pl.Enum(uniq)).to_physical()).alias(name)


def _fix_number(raw: pl.Series, out: pl.Series) -> pl.Series:
    """Finish a ``strict=False`` cast of a raw field: retry after cleaning, drop non-finite.

    A successful cast proves the field had no surrounding whitespace or quotes (polars casts
    reject both), so retrying only when some value failed gives exactly the clean-then-cast
    result. Non-finite floats (nan, inf) become null: they are treated as missing.
    """
    if out.null_count() > raw.null_count() and bool(
        (out.is_null() & (raw != "")).fill_null(False).any()
    ):
        out = _clean(raw).cast(out.dtype, strict=False).alias(out.name)
    if out.dtype.is_float() and not bool(out.is_finite().fill_null(True).all()):
        out = out.to_frame("v").select(pl.when(pl.col("v").is_finite()).then(pl.col("v")))
        out = out.to_series().alias(raw.name)
    return out


def _parsable(rows: pl.DataFrame, meta: pl.DataFrame) -> pl.Series:
    """Rows that become Bronze rows: exactly 10 fields, in a file without ``fail_reason``."""
    ok_file = meta.get_column("fail_reason").is_null().to_numpy()
    file_ok = ok_file[rows.get_column("file_id").to_numpy()] if rows.height else ok_file[:0]
    return (rows.get_column("n_fields") == N_FIELDS).fill_null(False) & pl.Series(file_ok)


def _typed(data: pl.DataFrame, meta: pl.DataFrame) -> pl.DataFrame:
    """Typed values of 10-field rows (spec §4.1, our parse rules), in input order.

    Columns: ``file_id``, ``source_line_no``, ``_row`` (position in ``data``), ``file_ticker``
    and the typed/raw value columns; per-file and constant columns are attached later, on
    the rows that need them, to keep memory small.
    """
    fid = data.get_column("file_id")

    def column(name: str) -> tuple[pl.Series, pl.Series, pl.Series]:
        """The column, its distinct values, and those values cleaned.

        A missing field (null on the fast path) is read as ``""``, like on the line table.
        """
        col = data.get_column(name)
        if col.null_count():
            col = col.fill_null("")
        # Period and time are usually one value: an equality scan is far cheaper than unique().
        constant = col.len() > 0 and bool((col == col[0]).all())
        uniq = col[:1] if constant else col.unique()
        return col, uniq, _clean(uniq)

    s, u, cu = column("raw_ticker")
    values = [_per_value(s, u, cu, "raw_ticker"), _per_value(s, u, cu.str.to_uppercase(), "ticker")]
    s, u, cu = column("raw_per")
    cu = cu.str.to_uppercase()
    timeframe = cu.to_frame("p").select(_timeframe(pl.col("p"))).to_series()
    values += [_per_value(s, u, cu, "raw_per"), _per_value(s, u, timeframe, "timeframe")]
    s, u, cu = column("raw_date")
    values += [_per_value(s, u, cu, "raw_date"), _per_value(s, u, _date_days(cu, "d"), "_days")]
    s, u, cu = column("raw_time")
    cu = cu.str.pad_start(6, "0")
    values += [_per_value(s, u, cu, "raw_time"), _per_value(s, u, _time_us(cu, "t"), "_tus")]

    names = (*_PRICE_VOLUME, "openint")
    casts = data.select(  # one select: polars runs the casts in parallel
        *(pl.col(f"raw_{n}").cast(pl.Float64, strict=False).alias(n) for n in _PRICE_VOLUME),
        pl.col("raw_openint").cast(pl.Int64, strict=False).alias("openint"),
    )
    numbers = [_fix_number(data.get_column(f"raw_{n}"), casts.get_column(n)) for n in names]

    series = [v for v in values if isinstance(v, pl.Series)]
    scalars = [v for v in values if isinstance(v, pl.Expr)]
    days = pl.col("_days")
    return (
        pl.DataFrame(
            [
                fid,
                data.get_column("line_no").alias("source_line_no"),
                pl.Series("_row", np.arange(data.height, dtype=np.uint32)),
                meta.get_column("file_ticker").gather(fid).alias("file_ticker"),
                *(x.alias(n) for x, n in zip(numbers, names, strict=True)),
                *series,
            ]
        )
        .with_columns(*scalars)
        .select(
            "file_id",
            "source_line_no",
            "_row",
            "file_ticker",
            "ticker",
            "timeframe",
            days.cast(pl.Int32).cast(pl.Date).alias("trade_date"),
            (days * _US_PER_DAY + pl.col("_tus")).cast(pl.Datetime("us")).alias("trade_dt"),
            *names,
            "raw_ticker",
            "raw_per",
            "raw_date",
            "raw_time",
        )
    )


def _attach_file_columns(
    df: pl.DataFrame, meta: pl.DataFrame, run_id: str, ingest_ts: datetime
) -> pl.DataFrame:
    """Add the per-file and constant Bronze columns (exchange, source file, run, ts)."""
    return df.with_columns(
        _by_file(meta.get_column("exchange"), "exchange"),
        _by_file(meta.get_column("source_file"), "source_file"),
        _by_file(meta.get_column("source_file_name"), "source_file_name"),
        pl.lit(_utc(ingest_ts), dtype=pl.Datetime("us", "UTC")).alias("ingest_ts"),
        pl.lit(run_id, dtype=pl.String).alias("run_id"),
    )


def _later_in_file_not_increasing(file_id: pl.Series, values: pl.Series) -> pl.Series:
    """File ids where non-null ``values`` (file order) are not strictly increasing."""
    keys = pl.DataFrame({"file_id": file_id, "v": values}).filter(pl.col("v").is_not_null())
    bad = keys.filter(
        (pl.col("file_id") == pl.col("file_id").shift(1)) & (pl.col("v") <= pl.col("v").shift(1))
    )
    return bad.get_column("file_id").unique()


def _scatter_true(n: int, rows: pl.Series) -> pl.Series:
    """Boolean Series of length ``n``, True at the given row positions."""
    out = np.zeros(n, dtype=bool)
    out[rows.to_numpy()] = True
    return pl.Series(out)


def _duplicate_line_mask(typed: pl.DataFrame, data: pl.DataFrame) -> pl.Series:
    """True for a data line identical to an earlier line of the same file (first copy kept).

    Exact but cheap: identical lines share a date, so only files whose non-null dates are not
    strictly increasing, plus rows with no date, can hold duplicates; only those rows are
    compared (by their fields, which within a file determine the trimmed line).
    """
    n = typed.height
    bad_files = _later_in_file_not_increasing(
        typed.get_column("file_id"), typed.get_column("trade_date")
    )
    cand = typed.select("_row", "file_id", "trade_date").filter(
        pl.col("file_id").is_in(bad_files.implode()) | pl.col("trade_date").is_null()
    )
    if cand.height == 0:
        return pl.Series(np.zeros(n, dtype=bool))
    fields = data.select(RAW_FIELDS)[cand.get_column("_row")]
    key = pl.concat([cand.select("_row", "file_id"), fields], how="horizontal")
    dup = key.filter(~pl.struct("file_id", *RAW_FIELDS).is_first_distinct())
    return _scatter_true(n, dup.get_column("_row"))


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


def _gap_flags(
    df: pl.DataFrame, is_valid: pl.Series, gap_days: int, prev_valid: pl.Series | None
) -> pl.Series:
    """Gap warning among valid rows: days since the previous valid row of the file > gap.

    ``prev_valid`` (by ``file_id``) is the last valid date of a file before these rows, for
    rows appended to a file; the first row of a file has no predecessor otherwise.
    """
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
    before = pl.when(pl.col("file_id") == pl.col("file_id").shift(1)).then(
        pl.col("trade_date").shift(1)
    )
    if prev_valid is not None:
        before = before.otherwise(pl.lit(prev_valid).gather(pl.col("file_id")))
    gap = keys.filter((pl.col("trade_date") - before).dt.total_days() > gap_days)
    return _scatter_true(n, gap.get_column("row"))


# --------------------------------------------------------------------------- stages


def normalize(
    rows: pl.DataFrame, files: pl.DataFrame, run_id: str, ingest_ts: datetime
) -> pl.DataFrame:
    """Typed rows (spec §4.1) from the 10-field data rows of files without ``fail_reason``.

    ``rows`` is ``read_rows(files).rows`` or a line table from ``read_lines(files)``.
    Columns: ``NORMALIZED_COLUMNS`` then ``HELPER_COLUMNS``; input order. This is the
    display/CLI form; ``build_bronze`` runs the same steps on fewer columns.
    """
    if "kind" in rows.columns:
        rows = rows_from_lines(rows)
    meta = file_meta(files)
    data = rows.filter(_parsable(rows, meta))
    typed = _typed(data, meta).with_columns(data.select(line_text()).to_series().alias("raw_line"))
    return _attach_file_columns(typed, meta, run_id, ingest_ts).select(
        *NORMALIZED_COLUMNS, *HELPER_COLUMNS
    )


def validate(
    normalized: pl.DataFrame,
    thresholds: ValidationThresholds,
    prev_valid: pl.Series | None = None,
) -> pl.DataFrame:
    """Add the quality flags (spec §4.2 plus our rules) to normalised rows, file order kept.

    Expects ``normalize`` output (needs the typed columns, ``raw_*``, ``source_line_no``,
    ``file_id`` and ``file_ticker``), duplicate lines already removed as ``build_bronze``
    does. Output: the value columns, ``QUALITY_COLUMNS``, then the helper columns. Warnings
    never invalidate; the gap warning is computed among valid rows only (False elsewhere),
    ``prev_valid`` giving each file's last valid date before these rows (see ``_gap_flags``).
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
        _gap_flags(df, is_valid, thresholds.gap_days_warn, prev_valid).alias("q_gap_in_calendar")
    )
    warns = pl.sum_horizontal(*(c(f).cast(pl.Int64) for f in WARNING_FLAGS))
    values = [x for x in normalized.columns if x not in _INTERNAL_COLUMNS]
    helpers = [x for x in normalized.columns if x in _INTERNAL_COLUMNS]
    return df.select(
        *values,
        *FLAG_COLUMNS,
        "quality_error_count",
        warns.alias("quality_warn_count"),
        (c("quality_error_count") == 0).alias("is_valid_row"),
        *helpers,
    )


def _invalid_reason() -> pl.Expr:
    """Comma-joined error codes of a row, sorted alphabetically."""
    ordered = sorted(ERROR_FLAGS, key=flag_code)
    return pl.concat_str(
        [pl.when(pl.col(f)).then(pl.lit(flag_code(f))) for f in ordered],
        separator=",",
        ignore_nulls=True,
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


def file_stats(
    meta: pl.DataFrame,
    line_stats: pl.DataFrame,
    rejected: pl.DataFrame,
    validated: pl.DataFrame,
) -> pl.DataFrame:
    """Per-file counts, reject reasons and flags seen, before they become ledger rows.

    Sums over lines, so the stats of appended lines add to those of the old content.
    """
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
    counts = ("rows_rejected", "rows_valid", "rows_invalid", "rows_warned", "rows_unsorted")
    c = pl.col
    return (
        meta.join(line_stats, on="file_id", how="left")
        .join(reject_stats, on="file_id", how="left")
        .join(row_stats, on="file_id", how="left")
        .join(_unsorted_counts(validated), on="file_id", how="left")
        .sort("file_id")
        .with_columns(
            *(c(name).fill_null(0) for name in counts),
            *(c(f).fill_null(False) for f in FLAG_COLUMNS),
        )
    )


def ledger_rows(df: pl.DataFrame, run_id: str) -> pl.DataFrame:
    """Ledger rows (``LEDGER_SCHEMA``) from ``file_stats``.

    An optional list column ``prior_reasons`` joins the reasons (e.g. of a file's old content).
    """
    c = pl.col
    lines_data = c("lines_total") - c("lines_header") - c("lines_blank")
    df = df.with_columns(lines_data.alias("lines_data"))
    failed = c("fail_reason").is_not_null() | c("read_error").is_not_null()
    notes = {
        NOTE_MISSING_HEADER: (c("lines_data") > 0) & (c("lines_header") == 0),
        NOTE_BLANK_LINES: c("lines_blank") > 0,
        NOTE_UNSORTED: c("rows_unsorted") > 0,
        NOTE_BOM: c("has_bom"),
        NOTE_CRLF: c("has_cr"),
        NOTE_EMPTY_FILE: c("read_error").is_null() & (c("lines_total") == c("lines_blank")),
        NOTE_HEADER_ONLY: (c("lines_header") > 0) & (c("lines_data") == 0),
    }
    codes = [
        *(pl.when(c(f)).then(pl.lit(flag_code(f))) for f in FLAG_COLUMNS),
        *(pl.when(cond).then(pl.lit(code)) for code, cond in notes.items()),
        c("fail_reason"),
        pl.when(c("read_error").is_not_null()).then(pl.lit(REASON_READ_ERROR)),
    ]
    empty = pl.lit([], dtype=pl.List(pl.String))
    prior = [c("prior_reasons").fill_null(empty)] if "prior_reasons" in df.columns else []
    reasons = (
        pl.concat_list(*prior, c("reject_reasons").fill_null(empty), pl.concat_list(*codes))
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


def _sort_valid(valid: pl.DataFrame, file_tickers: pl.Series) -> pl.DataFrame:
    """Sort valid rows by (ticker, trade_date, source_line_no); no copy if already sorted.

    Valid rows carry their file's ticker, so the rank of the file's ticker replaces a
    string sort (the file id breaks ties between two files of one ticker).
    """
    rank = file_tickers.rank("dense").cast(pl.Int64).fill_null(0)
    keys = valid.select(
        _by_file(rank, "_rank"), "trade_date", "source_line_no", "file_id"
    ).with_row_index("_i")
    order = keys.sort("_rank", "trade_date", "source_line_no", "file_id").get_column("_i")
    if bool((order.diff().fill_null(1) == 1).all()):
        return valid
    return valid[order]


@dataclass
class ParsedRows:
    """Data rows of many files after the row rules, before the output tables.

    ``data``: the 10-field rows; ``validated``: ``validate`` output (duplicate lines removed,
    ``_row`` indexes ``data``); ``rejected`` and ``invalid``: ``file_id, line_no, raw_line,
    reason`` of rejected lines and invalid rows.
    """

    data: pl.DataFrame
    validated: pl.DataFrame
    rejected: pl.DataFrame
    invalid: pl.DataFrame


def parse_rows(
    rows: pl.DataFrame,
    meta: pl.DataFrame,
    thresholds: ValidationThresholds,
    prev_valid: pl.Series | None = None,
) -> ParsedRows:
    """Type and validate ``RawRows.rows`` of the files in ``meta`` (``file_meta``).

    ``prev_valid``: see ``validate``.
    """
    ok = _parsable(rows, meta)
    data = rows if bool(ok.all()) else rows.filter(ok)
    typed = _typed(data, meta)

    dup_mask = _duplicate_line_mask(typed, data)
    any_dup = bool(dup_mask.any())
    validated = validate(typed.filter(~dup_mask) if any_dup else typed, thresholds, prev_valid)

    # Rejected lines: wrong field count or failed file, then duplicate lines.
    n = pl.col("n_fields")
    fail = meta.get_column("fail_reason")
    # rechunk(): polars 2.1 panics in pl.format on a column with an empty chunk.
    rejected_parts = [
        rows.filter(~ok).rechunk().select(
            "file_id",
            "line_no",
            line_text().alias("raw_line"),
            pl.coalesce(
                _by_file(fail, "fail_reason"),
                pl.when(n < N_FIELDS)
                .then(pl.format("too_few_columns:{}", n))
                .otherwise(pl.format("too_many_columns:{}", n)),
            ).alias("reason"),
        )
    ]
    if any_dup:
        dup_rows = typed.filter(dup_mask).get_column("_row")
        rejected_parts.append(
            data[dup_rows].rechunk().select(
                "file_id",
                "line_no",
                line_text().alias("raw_line"),
                pl.lit(REASON_DUPLICATE_LINE).alias("reason"),
            )
        )

    invalid = validated.filter(~pl.col("is_valid_row")).select(
        "file_id",
        "_row",
        pl.col("source_line_no").alias("line_no"),
        _invalid_reason().alias("reason"),
    )
    invalid = invalid.with_columns(
        data[invalid.get_column("_row")].rechunk().select(line_text()).to_series().alias("raw_line")
    )
    return ParsedRows(
        data=data,
        validated=validated,
        rejected=pl.concat(rejected_parts, how="vertical"),
        invalid=invalid.select("file_id", "line_no", "raw_line", "reason"),
    )


def rejects_table(parsed: ParsedRows, meta: pl.DataFrame) -> pl.DataFrame:
    """``REJECTS_SCHEMA`` rows of the rejected lines and invalid rows, by file and line."""
    return (
        pl.concat(
            [
                parsed.rejected.with_columns(pl.lit("rejected").alias("kind")),
                parsed.invalid.with_columns(pl.lit("invalid").alias("kind")),
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


def valid_table(
    parsed: ParsedRows, meta: pl.DataFrame, run_id: str, ingest_ts: datetime
) -> pl.DataFrame:
    """The Bronze rows (``BRONZE_COLUMNS``): valid rows, sorted, with per-file columns."""
    validated = parsed.validated
    valid = validated.select(c for c in validated.columns if c not in ("file_ticker", "_row"))
    if parsed.invalid.height:
        valid = valid.filter(pl.col("is_valid_row"))
    valid = _sort_valid(valid, meta.get_column("file_ticker"))
    # Per-file and constant columns are added after the sort (less to move).
    return (
        _attach_file_columns(valid, meta, run_id, ingest_ts)
        .with_columns(pl.lit(SCHEMA_VERSION).alias("schema_version"))
        .select(BRONZE_COLUMNS)
    )


def build_bronze(
    files: pl.DataFrame, thresholds: ValidationThresholds, run_id: str, ingest_ts: datetime
) -> BronzeResult:
    """Read, normalise and validate every file of ``files``; return valid rows, rejects, ledger.

    ``files`` columns: ``source_file``, ``path``, ``ticker``, ``exchange``, ``fail_reason``.
    Nothing raises per file: unreadable files are FAILED (``read_error``), files with a
    ``fail_reason`` are FAILED with every data line rejected for that reason.
    """
    meta = file_meta(files)
    raw = read_rows(files)
    parsed = parse_rows(raw.rows, meta, thresholds)
    stats = file_stats(meta, raw.files, parsed.rejected, parsed.validated)
    return BronzeResult(
        valid=valid_table(parsed, meta, run_id, ingest_ts),
        rejects=rejects_table(parsed, meta),
        ledger=ledger_rows(stats, run_id),
    )
