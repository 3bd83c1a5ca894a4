"""Bronze validation: the row rules, their quality flags and the reasons they give.

The rules are the old tool's (spec/etl.md §4.2) except for the decisions listed in
spec/README.md and these ones of ours:

* A data line identical (after trimming) to an earlier line of the same file is rejected as
  ``duplicate_line``; rows that still share (ticker, trade_date) are all invalid.
* ``q_ticker_mismatch`` (error): the content ticker is not blank and differs from the file's
  ticker. ``q_zero_volume`` (warning): volume == 0.
* The gap warning compares valid rows with the previous valid row only.
* ``q_value_out_of_range`` (error): a price or the volume that float32 cannot hold: beyond
  ``FLOAT32_MAX`` in magnitude (it would become infinite in Silver) or non-zero below
  ``FLOAT32_TINY`` (it would lose its precision or become 0). float32 is the narrowest storage
  any layer can be configured with (``precision.*``), so the rule does not depend on settings.

Errors make a row invalid; warnings never do. Everything is vectorised over all files at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from mf_pipeline.lib.layers.bronze.lines import RAW_FIELDS
from mf_pipeline.lib.layers.bronze.parse import HELPER_COLUMNS

REASON_DUPLICATE_LINE = "duplicate_line"

FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)

ERROR_FLAGS: tuple[str, ...] = (
    "q_missing_field", "q_parse_error", "q_bad_timeframe", "q_nonpositive_price",
    "q_high_lt_low", "q_ohlc_outside_hl", "q_negative_volume", "q_duplicate_ticker_date",
    "q_ticker_mismatch", "q_value_out_of_range",
)
UNSTORED_FLAGS: tuple[str, ...] = ("q_value_out_of_range",)
"""Error flags added after Bronze schema v1: reasons of invalid rows, not stored columns."""
WARNING_FLAGS: tuple[str, ...] = ("q_suspicious_bar", "q_gap_in_calendar", "q_zero_volume")
FLAG_COLUMNS: tuple[str, ...] = ERROR_FLAGS + WARNING_FLAGS
QUALITY_COLUMNS: tuple[str, ...] = (
    *FLAG_COLUMNS, "quality_error_count", "quality_warn_count", "is_valid_row",
)
# Columns carried after the quality columns: normalize()'s helpers and the row index.
_INTERNAL_COLUMNS: tuple[str, ...] = (*HELPER_COLUMNS, "_row")


def flag_code(flag: str) -> str:
    """Reason code of a quality flag (the flag name without ``q_``)."""
    return flag.removeprefix("q_")


@dataclass(frozen=True)
class ValidationThresholds:
    """Thresholds of the warning rules (settings group ``validation``)."""

    suspicious_range_pct: float = 0.5
    suspicious_return_pct: float = 0.3
    gap_days_warn: int = 7


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


def duplicate_line_mask(typed: pl.DataFrame, data: pl.DataFrame) -> pl.Series:
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
        pl.any_horizontal(
            *((x.abs() > FLOAT32_MAX) | ((x != 0) & (x.abs() < FLOAT32_TINY)) for x in (*prices, v))
        ).fill_null(False).alias("q_value_out_of_range"),
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


def invalid_reason() -> pl.Expr:
    """Comma-joined error codes of a row, sorted alphabetically."""
    ordered = sorted(ERROR_FLAGS, key=flag_code)
    return pl.concat_str(
        [pl.when(pl.col(f)).then(pl.lit(flag_code(f))) for f in ordered],
        separator=",",
        ignore_nulls=True,
    )
