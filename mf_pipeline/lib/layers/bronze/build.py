"""Bronze's full build: raw files -> valid rows, rejects and ledger, every line re-read.

Composes the jobs of this package: ``read`` (bytes -> raw rows), ``parse`` (typed rows),
``validate`` (flags and reasons) and ``ledger`` (per-file accounting), and shapes the two
row outputs: the valid Bronze rows, sorted by (ticker, trade_date, source_line_no), and the
rejects table (rejected lines and invalid rows, by file and line). Nothing raises per file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from mf_pipeline.lib.layers.bronze.ledger import file_stats, ledger_rows
from mf_pipeline.lib.layers.bronze.lines import N_FIELDS, line_text
from mf_pipeline.lib.layers.bronze.parse import (
    NORMALIZED_COLUMNS,
    attach_file_columns,
    by_file,
    file_meta,
    parsable,
    typed_rows,
)
from mf_pipeline.lib.layers.bronze.read import (
    LONG_LINES_SCHEMA,
    MAX_LINE_BYTES,
    read_rows,
)
from mf_pipeline.lib.layers.bronze.validate import (
    QUALITY_COLUMNS,
    REASON_DUPLICATE_LINE,
    UNSTORED_FLAGS,
    ValidationThresholds,
    duplicate_line_mask,
    invalid_reason,
    validate,
)
from mf_pipeline.lib.ordered_runs import run_blocks, take_blocks

SCHEMA_VERSION = "v1"
VALID_ORDER = ("trade_date", "source_line_no", "file_id")
"""Order of a ticker's valid rows (after the ticker's rank)."""
REASON_LINE_TOO_LONG = "line_too_long"

BRONZE_COLUMNS: tuple[str, ...] = (
    *NORMALIZED_COLUMNS, *(c for c in QUALITY_COLUMNS if c not in UNSTORED_FLAGS),
    "schema_version",
)
"""The stored Bronze columns (valid rows only, so flags added after v1 that only ever make a
row invalid are not stored: the schema of existing lakes stays the same)."""

REJECTS_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "ticker": pl.String(),
    "line_no": pl.Int64(),
    "raw_line": pl.String(),
    "kind": pl.String(),
    "reason": pl.String(),
}


@dataclass
class BronzeResult:
    """Outputs of one Bronze build over many files."""

    valid: pl.DataFrame
    rejects: pl.DataFrame
    ledger: pl.DataFrame


def _sort_valid(valid: pl.DataFrame, file_tickers: pl.Series) -> pl.DataFrame:
    """Sort valid rows by (ticker, trade_date, source_line_no); no copy if already sorted.

    Valid rows carry their file's ticker, so the rank of the file's ticker replaces a
    string sort (the file id breaks ties between two files of one ticker). The reader gives
    each file's rows as one run in line order (plain files first, then the others), so
    usually only the runs move (``ordered_runs``).
    """
    rank = file_tickers.rank("dense").cast(pl.Int64).fill_null(0)
    keys = valid.select(by_file(rank, "_rank"), *VALID_ORDER)
    blocks = run_blocks(keys, "_rank", VALID_ORDER)
    if blocks is not None:
        return take_blocks(valid, blocks)
    order = keys.with_row_index("_i").sort("_rank", *VALID_ORDER).get_column("_i")
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
    long_lines: pl.DataFrame | None = None,
) -> ParsedRows:
    """Type and validate ``RawRows.rows`` of the files in ``meta`` (``file_meta``).

    ``prev_valid``: see ``validate``. ``long_lines`` (``RawRows.long_lines``): the lines
    read as placeholders, rejected as ``line_too_long:<bytes>`` with their first bytes.
    """
    ok = parsable(rows, meta)
    data = rows if bool(ok.all()) else rows.filter(ok)
    typed = typed_rows(data, meta)

    dup_mask = duplicate_line_mask(typed, data)
    any_dup = bool(dup_mask.any())
    validated = validate(typed.filter(~dup_mask) if any_dup else typed, thresholds, prev_valid)

    # Rejected lines: wrong field count or failed file, then duplicate lines.
    n = pl.col("n_fields")
    fail = meta.get_column("fail_reason")
    # rechunk(): polars 2.1 panics in pl.format on a column with an empty chunk.
    bad = rows.filter(~ok).rechunk()
    if long_lines is None or long_lines.height == 0:
        long_lines = pl.DataFrame(schema=LONG_LINES_SCHEMA)
    else:
        bad = bad.join(long_lines.rename({"raw_line": "_long_line"}), on=["file_id", "line_no"],
                       how="left", maintain_order="left")
    if "_long_line" not in bad.columns:
        bad = bad.with_columns(pl.lit(None, dtype=pl.String).alias("_long_line"),
                               pl.lit(None, dtype=pl.Int64).alias("line_bytes"))
    rejected_parts = [
        bad.select(
            "file_id",
            "line_no",
            pl.coalesce("_long_line", line_text()).alias("raw_line"),
            pl.coalesce(
                by_file(fail, "fail_reason"),
                pl.format(f"{REASON_LINE_TOO_LONG}:{{}}", "line_bytes"),
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
        invalid_reason().alias("reason"),
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
            by_file(meta.get_column("source_file"), "source_file"),
            by_file(meta.get_column("file_ticker"), "ticker"),
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
        attach_file_columns(valid, meta, run_id, ingest_ts)
        .with_columns(pl.lit(SCHEMA_VERSION).alias("schema_version"))
        .select(BRONZE_COLUMNS)
    )


def build_bronze(
    files: pl.DataFrame, thresholds: ValidationThresholds, run_id: str, ingest_ts: datetime,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> BronzeResult:
    """Read, normalise and validate every file of ``files``; return valid rows, rejects, ledger.

    ``files`` columns: ``source_file``, ``path``, ``ticker``, ``exchange``, ``fail_reason``.
    Nothing raises per file: unreadable files are FAILED (``read_error``), files with a
    ``fail_reason`` are FAILED with every data line rejected for that reason, except files
    failed on the tree alone (``manifest.NOT_READ_REASONS``), which are never read. A line
    over ``max_line_bytes`` is rejected (``line_too_long:<bytes>``) without being kept.
    """
    meta = file_meta(files)
    raw = read_rows(files, max_line_bytes=max_line_bytes)
    parsed = parse_rows(raw.rows, meta, thresholds, long_lines=raw.long_lines)
    stats = file_stats(meta, raw.files, parsed.rejected, parsed.validated)
    return BronzeResult(
        valid=valid_table(parsed, meta, run_id, ingest_ts),
        rejects=rejects_table(parsed, meta),
        ledger=ledger_rows(stats, run_id),
    )
