"""Bronze's per-file ledger: how every physical line of every raw file was accounted for.

One row per input file: ``status`` is FAILED (``fail_reason`` given or unreadable; a file failed
on the tree alone, ``manifest.NOT_READ_REASONS``, is not read and has no lines), else EMPTY
(no data line: empty, blank-only or header-only), else OK. ``rows_warned`` counts valid rows
with a warning; ``reasons`` lists the distinct reject reasons (``too_few_columns:3`` as
written), error codes of invalid rows, warning codes of valid rows and file notes, sorted.
Every file satisfies ``lines_total = lines_header + lines_blank + rows_rejected + rows_valid
+ rows_invalid`` (``reconcile``). Stats are sums over lines, so the append path can add the
new lines' stats to a file's old row.
"""

from __future__ import annotations

import polars as pl

from mf_pipeline.lib.layers.bronze.validate import (
    ERROR_FLAGS,
    FLAG_COLUMNS,
    WARNING_FLAGS,
    flag_code,
)
from mf_pipeline.lib.layers.manifest import NOT_READ_REASONS

STATUS_OK = "OK"
STATUS_EMPTY = "EMPTY"
STATUS_FAILED = "FAILED"

REASON_READ_ERROR = "read_error"

# File-level notes (ledger ``reasons``).
NOTE_MISSING_HEADER = "missing_header"
NOTE_BLANK_LINES = "blank_lines"
NOTE_UNSORTED = "unsorted"
NOTE_BOM = "bom"
NOTE_CRLF = "crlf"
NOTE_EMPTY_FILE = "empty_file"
NOTE_HEADER_ONLY = "header_only"

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
        NOTE_EMPTY_FILE: c("read_error").is_null() & (c("lines_total") == c("lines_blank"))
        & ~c("fail_reason").is_in(list(NOT_READ_REASONS)).fill_null(False),
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
