"""Bronze fast path for files that only grew: parse and validate the appended lines alone.

Every night each raw file gets one more bar at its end (manifest status ``APPENDED``). A full
``build_bronze`` re-reads and re-validates every line; ``build_bronze_append`` reads only the
bytes after ``prev_size`` (and the file's first line, for its delimiter) and returns exactly
what a full rebuild gives for the new lines, plus the updated ledger row of each file.

Why this is exact: when every new row with a date is dated strictly after every earlier dated
row of the file (valid or invalid) and no new row lacks a date, a new line cannot repeat an
old line (identical lines share a date), no (ticker, date) pair gains a second copy, no row
becomes unsorted and no old row changes flags. The only rule left that looks back is the gap
warning, whose predecessor is then the file's last valid date (the ledger's
``max_trade_date``). Header, BOM and delimiter belong to the file's first non-empty line, which
lies in the old content. Anything else falls back to a full rebuild of the ticker.

Inputs beyond the appended files: the previous ledger rows of those files and, as
``context``, their stored reject rows (``REJECTS_SCHEMA``, the ``quality/rejects.parquet``
rows of those ``source_file``s; only ``kind == "invalid"`` rows are used). The invalid rows'
dates count as earlier dates, and only the rejects keep them; a file whose invalid-row count
differs from its ledger's ``rows_invalid`` falls back. No extra table has to be maintained: the
caller stores this run's rejects and ledger rows as after a full build (the returned rejects
are the new lines' only, so append them to the file's stored ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from mf_pipeline.lib.layers.bronze.build import (
    ParsedRows,
    parse_rows,
    rejects_table,
    valid_table,
)
from mf_pipeline.lib.layers.bronze.ledger import (
    LEDGER_SCHEMA,
    STATUS_OK,
    file_stats,
    ledger_rows,
)
from mf_pipeline.lib.layers.bronze.lines import (
    DELIMITERS,
    rows_from_lines,
    split_continuations,
    texts_frame,
)
from mf_pipeline.lib.layers.bronze.parse import file_meta, normalize
from mf_pipeline.lib.layers.bronze.read import MAX_LINE_BYTES, AppendedRows, read_appended
from mf_pipeline.lib.layers.bronze.validate import ValidationThresholds

_SUMMED = (
    "lines_total", "lines_blank", "rows_rejected", "rows_valid", "rows_invalid",
    "rows_warned", "rows_unsorted",
)


@dataclass
class AppendResult:
    """Outputs of ``build_bronze_append``; nothing of a ``fallback`` ticker is in the frames."""

    valid: pl.DataFrame  # BRONZE_COLUMNS rows of the new lines
    rejects: pl.DataFrame  # REJECTS_SCHEMA rows of the new lines
    ledger: pl.DataFrame  # LEDGER_SCHEMA: the updated whole-file row of each appended file
    fallback: list[str]  # tickers to rebuild in full with build_bronze


def _previous(meta: pl.DataFrame, ledger: pl.DataFrame) -> pl.DataFrame:
    """Per file (``file_id`` order): its one previous ledger row, ``_n`` rows found."""
    prior = ledger.group_by("source_file").agg(
        *(pl.col(c).first().name.prefix("old_") for c in LEDGER_SCHEMA if c != "source_file"),
        pl.len().alias("_n"),
    )
    return (
        meta.join(prior, on="source_file", how="left")
        .sort("file_id")
        .with_columns(pl.col("_n").fill_null(0))
    )


def _eligible(old: pl.DataFrame) -> pl.Series:
    """Files whose old content can be extended: one OK ledger row of the same identity."""
    c = pl.col
    return old.select(
        (
            c("fail_reason").is_null()
            & (c("_n") == 1)
            & (c("old_status") == STATUS_OK)
            & (c("old_ticker") == c("file_ticker"))
            & (c("old_exchange") == c("exchange"))
        ).fill_null(False)
    ).to_series()


def _invalid_dates(
    context: pl.DataFrame, files: pl.DataFrame, old: pl.DataFrame, delimiter: pl.Series,
    ingest_ts: datetime,
) -> pl.DataFrame:
    """Per file: stored invalid rows (count, latest date), re-parsed as the full path does."""
    invalid = context.filter(pl.col("kind") == "invalid").join(
        old.select("file_id", "source_file"), on="source_file"
    )
    by_file = invalid.group_by("file_id").agg(
        pl.len().alias("_n_invalid"),
        pl.col("raw_line").str.join("\n").cast(pl.Binary).alias("text"),
    )
    texts = old.select("file_id").join(by_file, on="file_id", how="left").sort("file_id")
    frame = texts_frame(texts.get_column("text").to_list(), [None] * texts.height)
    lines = split_continuations(
        frame, delimiter.fill_null(DELIMITERS[0]), np.ones(texts.height, dtype=np.int64)
    )
    dates = (
        normalize(rows_from_lines(lines), files, "", ingest_ts)
        .group_by("file_id")
        .agg(pl.col("trade_date").max().alias("_max_invalid"))
    )
    return texts.select("file_id", pl.col("_n_invalid").fill_null(0)).join(
        dates, on="file_id", how="left"
    )


def _not_after(validated: pl.DataFrame, latest: pl.Series) -> pl.Series:
    """File ids with a new row undated or not dated after every earlier date of its file."""
    c = pl.col
    before = pl.when(c("file_id") == c("file_id").shift(1)).then(c("trade_date").shift(1))
    before = before.otherwise(pl.lit(latest).gather(c("file_id")))
    return (
        validated.select("file_id", "trade_date")
        .filter(c("trade_date").is_null() | (c("trade_date") <= before))
        .get_column("file_id")
        .unique()
    )


def _merged_ledger(stats: pl.DataFrame, old: pl.DataFrame, run_id: str) -> pl.DataFrame:
    """Whole-file ledger rows: old counts plus the new lines', reasons joined, dates widened."""
    c = pl.col
    prior = old.select(
        "file_id",
        *(c(f"old_{n}").alias(f"_old_{n}") for n in _SUMMED),
        c("old_lines_header").alias("lines_header"),
        pl.when(c("old_reasons") != "").then(c("old_reasons").str.split(",")).alias(
            "prior_reasons"
        ),
        c("old_min_trade_date"),
        c("old_max_trade_date"),
    )
    merged = stats.drop("lines_header").join(prior, on="file_id", how="left")
    return ledger_rows(
        merged.with_columns(
            *((c(n) + c(f"_old_{n}")).alias(n) for n in _SUMMED),
            pl.min_horizontal("min_trade_date", "old_min_trade_date").alias("min_trade_date"),
            pl.max_horizontal("max_trade_date", "old_max_trade_date").alias("max_trade_date"),
        ),
        run_id,
    )


def _keep(parsed: ParsedRows, drop: pl.Series) -> ParsedRows:
    """``parsed`` without the rows of the files in ``drop``."""
    kept = [
        frame.filter(~pl.col("file_id").is_in(drop.implode()))
        for frame in (parsed.validated, parsed.rejected, parsed.invalid)
    ]
    return ParsedRows(parsed.data, *kept)


def _checks(
    old: pl.DataFrame, eligible: pl.Series, appended: AppendedRows, invalid: pl.DataFrame
) -> pl.DataFrame:
    """Per file: ``ok`` (the fast path may apply) and ``latest``, its latest earlier date.

    The header seen at the file's start and the stored invalid rows must match the ledger,
    else the ledger does not describe this file's old content.
    """
    c = pl.col
    return old.with_columns(
        eligible.alias("_eligible"),
        appended.ok.alias("_ok"),
        appended.header.alias("_header"),
        invalid.get_column("_n_invalid"),
        invalid.get_column("_max_invalid"),
    ).select(
        "file_id",
        "file_ticker",
        (
            c("_eligible") & c("_ok") & (c("_header") == (c("old_lines_header") > 0))
            & (c("_n_invalid") == c("old_rows_invalid"))
        ).fill_null(False).alias("ok"),
        pl.max_horizontal("old_max_trade_date", "_max_invalid").alias("latest"),
    )


def _fallback(checks: pl.DataFrame, late: pl.Series) -> tuple[list[str], pl.Series]:
    """Tickers to rebuild, and the ids of every file not answered here.

    Files without a ticker are never answered (they cannot be partitions; the caller
    accounts for them with ``build_bronze``).
    """
    c = pl.col
    bad = checks.filter(~c("ok") | c("file_id").is_in(late.implode()))
    fallback = sorted(set(bad.get_column("file_ticker").drop_nulls().to_list()))
    drop = checks.filter(
        c("file_id").is_in(bad.get_column("file_id").implode())
        | c("file_ticker").is_in(fallback)
        | c("file_ticker").is_null()
    ).get_column("file_id")
    return fallback, drop


def build_bronze_append(
    files: pl.DataFrame,
    context: pl.DataFrame,
    ledger: pl.DataFrame,
    thresholds: ValidationThresholds,
    run_id: str,
    ingest_ts: datetime,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> AppendResult:
    """Bronze rows, rejects and updated ledger rows of the lines appended to ``files``.

    ``files``: ``source_file, path, ticker, exchange, fail_reason, prev_size`` of APPENDED
    files (``prev_size``: bytes of the old content, trusted to be an exact prefix).
    ``context``: their stored reject rows; ``ledger``: their previous ledger rows (see the
    module docstring). Tickers that need a full rebuild are listed in ``fallback``.
    ``max_line_bytes``: as in ``build_bronze`` (a new line over it is rejected, unread).
    """
    meta = file_meta(files)
    old = _previous(meta, ledger)
    eligible = _eligible(old)
    readable = files.with_columns(  # ineligible files are not read
        pl.when(pl.Series(eligible)).then(pl.col("path")).alias("path"),
        pl.col("prev_size").cast(pl.Int64),
    )
    first_line_no = (old.get_column("old_lines_total").fill_null(0) + 1).to_numpy()
    appended = read_appended(readable, first_line_no, max_line_bytes)
    invalid = _invalid_dates(context, files, old, appended.delimiter, ingest_ts)
    checks = _checks(old, eligible, appended, invalid)

    last_valid = old.get_column("old_max_trade_date")
    parsed = parse_rows(appended.rows.rows, meta, thresholds, last_valid,
                        appended.rows.long_lines)
    fallback, drop = _fallback(checks, _not_after(parsed.validated, checks.get_column("latest")))
    kept = _keep(parsed, drop)
    stats = file_stats(meta, appended.rows.files, kept.rejected, kept.validated)
    kept_files = ~checks.get_column("file_id").is_in(drop.implode())
    return AppendResult(
        valid=valid_table(kept, meta, run_id, ingest_ts),
        rejects=rejects_table(kept, meta),
        ledger=_merged_ledger(stats, old, run_id).filter(kept_files),
        fallback=fallback,
    )
