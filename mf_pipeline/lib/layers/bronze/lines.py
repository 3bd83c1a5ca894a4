"""Raw Stooq text -> the line table: every physical line with its kind and split fields.

Why a line table instead of a CSV reader: the ledger must account for every physical line
(header, blank, rejected, parsed) with its line number, which CSV engines do not expose (they
skip blank lines and stop or pad on ragged rows). All files of a run go into one frame so the
work is vectorised over files.

Line rules (documented decisions, see docs):
* A physical line ends at ``\\n``; a final trailing newline does not start an extra line, and a
  0-byte file has no lines. A lone ``\\r`` is not a line break (it is trimmed at line ends).
* Bytes are decoded as UTF-8 with undecodable bytes replaced by U+FFFD. A leading U+FEFF (BOM)
  is stripped from line 1 before anything else, also on header-less files.
* Each line is trimmed (Unicode whitespace, including the ``\\r`` of CRLF). Empty -> ``blank``.
* The delimiter of a file comes from its first non-empty line: the most frequent of
  ``,`` ``\\t`` ``|`` ``;`` (ties in that order, ``,`` when none occurs).
* Only the first non-empty line can be a header: its first 10 fields, each stripped of U+FEFF,
  trimmed, stripped of ``<``/``>`` and upper-cased, equal the Stooq column names.
* Every other non-empty line is ``data`` and is split on the delimiter. Fields are kept as split
  (not trimmed): cleaning and typing belong to ``parse``. Stooq never quotes, so no CSV quoting
  is applied here: a delimiter inside double quotes splits the field.
"""

from __future__ import annotations

import numpy as np
import polars as pl

DELIMITERS: tuple[str, ...] = (",", "\t", "|", ";")
HEADER_FIELDS: tuple[str, ...] = (
    "TICKER", "PER", "DATE", "TIME", "OPEN", "HIGH", "LOW", "CLOSE", "VOL", "OPENINT",
)
RAW_FIELDS: tuple[str, ...] = (
    "raw_ticker", "raw_per", "raw_date", "raw_time", "raw_open",
    "raw_high", "raw_low", "raw_close", "raw_volume", "raw_openint",
)
N_FIELDS = len(RAW_FIELDS)
BOM = "\ufeff"

KIND_BLANK = "blank"
KIND_HEADER = "header"
KIND_DATA = "data"

TEXTS_SCHEMA: dict[str, pl.DataType] = {
    "file_id": pl.UInt32(),
    "text": pl.String(),
    "read_error": pl.String(),
}

LINE_SCHEMA: dict[str, pl.DataType] = {
    "file_id": pl.UInt32(),
    "line_no": pl.Int64(),
    "line": pl.String(),
    "kind": pl.String(),
    "delimiter": pl.String(),
    "n_fields": pl.Int64(),
    "bom": pl.Boolean(),
    "cr": pl.Boolean(),
    **{name: pl.String() for name in RAW_FIELDS},
}


ROWS_SCHEMA: dict[str, pl.DataType] = {
    "file_id": pl.UInt32(),
    "line_no": pl.Int64(),
    "raw_line": pl.String(),
    "n_fields": pl.Int64(),
    **{name: pl.String() for name in RAW_FIELDS},
}


def texts_frame(data: list[bytes | None], errors: list[str | None]) -> pl.DataFrame:
    """``TEXTS_SCHEMA`` frame of byte strings (None: no text), decoded as the files are."""
    texts = [None if d is None else d.decode("utf-8", errors="replace") for d in data]
    return pl.DataFrame(
        {"file_id": np.arange(len(texts), dtype=np.uint32), "text": texts, "read_error": errors},
        schema=TEXTS_SCHEMA,
    )


def detect_delimiters(first_lines: pl.Series) -> np.ndarray:
    """Index into DELIMITERS per line: most frequent, ties in DELIMITERS order, else ``,``."""
    if first_lines.len() == 0:
        return np.zeros(0, dtype=np.int64)
    counts = pl.DataFrame({"line": first_lines}).select(
        pl.col("line").str.count_matches(d, literal=True).alias(str(i))
        for i, d in enumerate(DELIMITERS)
    )
    # argmax returns the first maximum, which is the tie rule; all-zero rows give index 0 (",").
    return counts.to_numpy().argmax(axis=1)


def is_header(first_lines: pl.Series, delimiters: pl.Series) -> np.ndarray:
    """True where a first non-empty line is a Stooq header (first 10 normalised fields)."""
    if first_lines.len() == 0:
        return np.zeros(0, dtype=bool)
    target = pl.Series([list(HEADER_FIELDS)])
    out = pl.DataFrame({"line": first_lines, "delim": delimiters}).select(
        pl.col("line")
        .str.split(pl.col("delim"))
        .list.head(N_FIELDS)
        .list.eval(
            pl.element()
            .str.replace_all(BOM, "", literal=True)
            .str.strip_chars()
            .str.strip_chars("<>")
            .str.to_uppercase()
        )
        .eq(pl.lit(target))
        .fill_null(False)
    )
    return out.to_series().to_numpy().astype(bool)


def _physical_lines(texts: pl.DataFrame, first_line_no: np.ndarray | None) -> pl.DataFrame:
    """Trimmed physical lines (file_id, line_no, line, bom, cr) of the non-empty texts.

    ``first_line_no`` (indexed by ``file_id``) numbers a text that continues a file; such a
    text has no BOM. None: whole files, numbered from 1, a leading U+FEFF is a BOM.
    """
    present = texts.filter(pl.col("text").is_not_null() & (pl.col("text") != ""))
    text = pl.col("text")
    whole = first_line_no is None
    per_file = present.select(
        "file_id",
        (text.str.starts_with(BOM) if whole else pl.lit(False)).alias("bom"),
        (text.str.strip_prefix(BOM) if whole else text)
        .str.strip_suffix("\n")
        .str.split("\n")
        .alias("line"),
    ).with_columns(pl.col("line").list.len().alias("n_lines"))

    n_lines = per_file.get_column("n_lines").to_numpy().astype(np.int64)
    starts = np.cumsum(n_lines) - n_lines
    total = int(n_lines.sum())
    first = 1 if whole else first_line_no[per_file.get_column("file_id").to_numpy()]
    line_no = np.arange(total, dtype=np.int64) - np.repeat(starts - first, n_lines)

    return (
        per_file.select("file_id", "bom", "line")
        .explode("line")
        .with_columns(pl.Series("line_no", line_no, dtype=pl.Int64))
        .select(
            "file_id",
            "line_no",
            pl.col("line").str.strip_chars().alias("line"),
            (pl.col("bom") & (pl.col("line_no") == 1)).alias("bom"),
            pl.col("line").str.ends_with("\r").alias("cr"),
        )
    )


def _split_fields(lines: pl.DataFrame, kind_code: np.ndarray, file_delim: np.ndarray,
                  used: np.ndarray) -> pl.DataFrame:
    """The line table (``LINE_SCHEMA``) from physical lines and their kinds.

    ``kind_code``: 0 blank, 1 header, 2 data per line; ``file_delim``: index into DELIMITERS
    per file_id; ``used``: the distinct delimiters of the files with lines (one -> a literal).
    """
    lines = lines.with_columns(pl.Series("kind_code", kind_code))
    if used.size <= 1:
        only = DELIMITERS[int(used[0])] if used.size else DELIMITERS[0]
        delimiter: str | pl.Expr = only
        delim_col = pl.lit(only).alias("delimiter")
    else:
        file_ids = lines.get_column("file_id").to_numpy()
        per_line = pl.Series("delimiter", list(DELIMITERS)).gather(file_delim[file_ids])
        lines = lines.with_columns(per_line)
        delimiter = pl.col("delimiter")
        delim_col = pl.col("delimiter")

    is_data = pl.col("kind_code") == 2
    fields = pl.when(is_data).then(pl.col("line")).str.split(delimiter)
    return (
        lines.lazy()
        .with_columns(fields.alias("_fields"))
        .select(
            "file_id",
            "line_no",
            "line",
            pl.when(pl.col("kind_code") == 0)
            .then(pl.lit(KIND_BLANK))
            .when(pl.col("kind_code") == 1)
            .then(pl.lit(KIND_HEADER))
            .otherwise(pl.lit(KIND_DATA))
            .alias("kind"),
            delim_col,
            pl.col("_fields").list.len().cast(pl.Int64).alias("n_fields"),
            "bom",
            "cr",
            *[
                pl.col("_fields").list.get(i, null_on_oob=True).alias(name)
                for i, name in enumerate(RAW_FIELDS)
            ],
        )
        .collect()
        .cast(LINE_SCHEMA)  # type: ignore[arg-type]
    )


def _nonblank(lines: pl.DataFrame) -> np.ndarray:
    return (lines.get_column("line").str.len_bytes() > 0).to_numpy()


def split_lines(texts: pl.DataFrame) -> pl.DataFrame:
    """Turn ``read_texts`` output into the line table (schema ``LINE_SCHEMA``).

    One row per physical line, ordered by (file_id, line_no). Files without text (empty or
    unreadable) contribute no rows. ``n_fields`` and the ``raw_*`` fields are set on data lines
    only; ``raw_*`` beyond ``n_fields`` are null. ``bom`` is true on line 1 of a file that
    started with U+FEFF; ``cr`` marks lines that ended with ``\\r`` (CRLF files).
    """
    lines = _physical_lines(texts, None)
    if lines.height == 0:
        return pl.DataFrame(schema=LINE_SCHEMA)

    # First non-empty line of each file (rows are grouped by file, in line order).
    nonblank = _nonblank(lines)
    file_ids = lines.get_column("file_id").to_numpy()
    nz = np.flatnonzero(nonblank)
    nz_files = file_ids[nz]
    first_rows = nz[np.r_[True, nz_files[1:] != nz_files[:-1]]] if nz.size else nz
    first_lines = lines.get_column("line").gather(first_rows)

    delim_idx = detect_delimiters(first_lines)
    first_delims = pl.Series(list(DELIMITERS)).gather(delim_idx)
    header_rows = first_rows[is_header(first_lines, first_delims)]

    # Per-file delimiter, "," for files with no non-empty line (they have no data anyway).
    file_delim = np.zeros(int(texts.height), dtype=np.int64)
    file_delim[file_ids[first_rows]] = delim_idx

    kind_code = np.where(nonblank, 2, 0).astype(np.int8)
    kind_code[header_rows] = 1
    return _split_fields(lines, kind_code, file_delim, np.unique(delim_idx))


def split_continuations(
    texts: pl.DataFrame, delimiters: pl.Series, first_line_no: np.ndarray
) -> pl.DataFrame:
    """Line table of texts that continue files whose first non-empty line came earlier.

    For bytes appended to a file: no BOM, no header and no delimiter detection apply (they
    belong to the file's first non-empty line), so every non-empty line is data, split on the
    file's ``delimiters`` (indexed by ``file_id``) and numbered from ``first_line_no``.
    Same line table as ``split_lines`` gives for those lines of the whole file.
    """
    lines = _physical_lines(texts, first_line_no)
    if lines.height == 0:
        return pl.DataFrame(schema=LINE_SCHEMA)
    file_delim = np.array([DELIMITERS.index(d) for d in delimiters.to_list()], dtype=np.int64)
    present = texts.filter(pl.col("text").is_not_null() & (pl.col("text") != ""))
    used = np.unique(file_delim[present.get_column("file_id").to_numpy()])
    kind_code = np.where(_nonblank(lines), 2, 0).astype(np.int8)
    return _split_fields(lines, kind_code, file_delim, used)


def rows_from_lines(lines: pl.DataFrame) -> pl.DataFrame:
    """The data lines of a line table, as ``RawRows.rows``."""
    return (
        lines.filter(pl.col("kind") == KIND_DATA)
        .select("file_id", "line_no", pl.col("line").alias("raw_line"), "n_fields", *RAW_FIELDS)
        .cast(ROWS_SCHEMA)  # type: ignore[arg-type]
    )


def line_stats(lines: pl.DataFrame) -> pl.DataFrame:
    """Per-file line counts of a line table (files without lines are absent)."""
    kind = pl.col("kind")
    return lines.group_by("file_id").agg(
        pl.len().cast(pl.Int64).alias("lines_total"),
        (kind == KIND_HEADER).sum().cast(pl.Int64).alias("lines_header"),
        (kind == KIND_BLANK).sum().cast(pl.Int64).alias("lines_blank"),
        pl.col("bom").any().alias("has_bom"),
        pl.col("cr").any().alias("has_cr"),
    )


def line_text() -> pl.Expr:
    """The trimmed line of a ``RawRows.rows`` row: ``raw_line``, or the fields joined.

    Fast-path lines hold no whitespace or quotes and exactly 10 ``,``-separated fields, so
    joining the fields reproduces the line exactly. Meant for small subsets (rejects).
    """
    joined = pl.concat_str([pl.col(f).fill_null("") for f in RAW_FIELDS], separator=",")
    return pl.coalesce(pl.col("raw_line"), joined)
