"""Bronze parsing: the 10-field data rows of the line table -> typed rows (spec §4.1).

Pure polars, run over all files of a run at once (no Python loop over rows). Our parse rules,
stricter than the old tool's:

* Dates are exactly 8 ASCII digits ``YYYYMMDD`` forming a real Gregorian date; times are up to
  6 digits, left-padded with ``0``, ``HHMMSS`` with HH < 24, MM < 60, SS < 60. Anything else
  is a parse error (the old tool used a lenient strptime).
* Non-finite numbers (``nan``, ``inf``) are treated as missing: they become null and the row
  gets ``q_parse_error``.
* Fields are trimmed, then one pair of surrounding double quotes is removed (and the inside
  trimmed); empty becomes null. Doubled quotes and delimiters inside quotes are not supported
  (Stooq never quotes).
* Rows keep file order; sorting happens once, on the valid output (``build``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from mf_pipeline.lib.layers.bronze.lines import N_FIELDS, line_text, rows_from_lines

NORMALIZED_COLUMNS: tuple[str, ...] = (
    "ticker", "exchange", "timeframe", "trade_date", "trade_dt",
    "open", "high", "low", "close", "volume", "openint",
    "raw_ticker", "raw_per", "raw_date", "raw_time",
    "source_file", "source_file_name", "ingest_ts", "run_id", "source_line_no",
)
# Helper columns carried after the spec columns by normalize() (and through validate()):
# the row's file (position in ``files``), that file's ticker and the trimmed raw line.
HELPER_COLUMNS: tuple[str, ...] = ("file_id", "file_ticker", "raw_line")
_PRICE_VOLUME: tuple[str, ...] = ("open", "high", "low", "close", "volume")

_US_PER_DAY = 86_400_000_000


def as_utc(ts: datetime) -> datetime:
    """A naive timestamp is taken as UTC, an aware one converted: outputs carry ``+00:00``."""
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


def by_file(values: pl.Series, name: str) -> pl.Expr:
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


def _digit_groups(
    values: pl.Series, col: str, width: int, names: tuple[str, str, str]
) -> pl.LazyFrame:
    """``values`` as ``_digits`` (exactly ``width`` ASCII digits, no sign) and three groups.

    The groups ``names`` are the integer value's leading digits and its last two pairs
    (``YYYY|MM|DD``, ``HH|MM|SS``). Staged ``with_columns`` keep the expression trees small
    (one nested expression costs tens of milliseconds to optimise, even on one row).
    """
    c = pl.col
    s = c(col)
    return (
        values.to_frame(col)
        .lazy()
        .with_columns(
            s.cast(pl.Int64, strict=False).alias("_v"),
            ((s.str.len_bytes() == width) & ~s.str.starts_with("+") & ~s.str.starts_with("-"))
            .fill_null(False)
            .alias("_digits"),
        )
        .with_columns(
            (c("_v") // 10_000).alias(names[0]), (c("_v") // 100 % 100).alias(names[1]),
            (c("_v") % 100).alias(names[2]),
        )
    )


def _date_days(values: pl.Series, col: str) -> pl.Series:
    """Days since 1970-01-01 of exactly 8 ASCII digits ``YYYYMMDD`` forming a real date."""
    c = pl.col
    staged = (
        _digit_groups(values, col, 8, ("_y", "_m", "_d"))
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
    return (
        _digit_groups(values, col, 6, ("_h", "_mi", "_s"))
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


def parsable(rows: pl.DataFrame, meta: pl.DataFrame) -> pl.Series:
    """Rows that become Bronze rows: exactly 10 fields, in a file without ``fail_reason``."""
    ok_file = meta.get_column("fail_reason").is_null().to_numpy()
    file_ok = ok_file[rows.get_column("file_id").to_numpy()] if rows.height else ok_file[:0]
    return (rows.get_column("n_fields") == N_FIELDS).fill_null(False) & pl.Series(file_ok)


def typed_rows(data: pl.DataFrame, meta: pl.DataFrame) -> pl.DataFrame:
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


def attach_file_columns(
    df: pl.DataFrame, meta: pl.DataFrame, run_id: str, ingest_ts: datetime
) -> pl.DataFrame:
    """Add the per-file and constant Bronze columns (exchange, source file, run, ts)."""
    return df.with_columns(
        by_file(meta.get_column("exchange"), "exchange"),
        by_file(meta.get_column("source_file"), "source_file"),
        by_file(meta.get_column("source_file_name"), "source_file_name"),
        pl.lit(as_utc(ingest_ts), dtype=pl.Datetime("us", "UTC")).alias("ingest_ts"),
        pl.lit(run_id, dtype=pl.String).alias("run_id"),
    )


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
    data = rows.filter(parsable(rows, meta))
    raw_line = data.select(line_text()).to_series().alias("raw_line")
    typed = typed_rows(data, meta).with_columns(raw_line)
    return attach_file_columns(typed, meta, run_id, ingest_ts).select(
        *NORMALIZED_COLUMNS, *HELPER_COLUMNS
    )
