"""Raw Stooq text files -> data rows and line accounting for Bronze (no Dagster).

Why a line table instead of a CSV reader: the ledger must account for every physical line
(header, blank, rejected, parsed) with its line number, which CSV engines do not expose (they
skip blank lines and stop or pad on ragged rows). All files of a run go into one frame so the
work is vectorised over files; the only Python loop reads each file's bytes.

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
  (not trimmed): cleaning and typing belong to Bronze normalisation. Stooq never quotes, so no
  CSV quoting is applied here: a delimiter inside double quotes splits the field.

``read_rows`` is what Bronze uses. Files that are provably plain (ASCII, no whitespace other
than ``\\n``, no quotes, no BOM, ``,`` delimiter, exactly 9 commas on every line, so no blank
lines) skip the line table and go through polars' multi-threaded CSV reader in one call; every
other file goes through the line table. Both give the same rows (a property test checks it),
so the fast path is only an optimisation: about a third less CPU for Bronze on clean dumps.

``read_appended`` reads only the bytes appended to files that grew (plus the start of each file,
for its delimiter) and gives the line table those lines have inside the whole file; Bronze's
append fast path (``bronze_append``) is built on it.
"""

from __future__ import annotations

from dataclasses import dataclass

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

FILE_LINES_SCHEMA: dict[str, pl.DataType] = {
    "file_id": pl.UInt32(),
    "read_error": pl.String(),
    "lines_total": pl.Int64(),
    "lines_header": pl.Int64(),
    "lines_blank": pl.Int64(),
    "has_bom": pl.Boolean(),
    "has_cr": pl.Boolean(),
}

_HEADER_COMMAS = N_FIELDS - 1


@dataclass
class RawRows:
    """The data lines of many files, plus per-file line accounting.

    ``rows`` (``ROWS_SCHEMA``): one row per data line (not blank, not header), any field
    count, grouped by file and in line order within a file. ``raw_line`` is the trimmed line,
    or null for rows read by the fast CSV path (rebuild it with ``line_text``).
    ``files`` (``FILE_LINES_SCHEMA``): one row per input file, in input order.
    """

    rows: pl.DataFrame
    files: pl.DataFrame


def _read_bytes(files: pl.DataFrame) -> tuple[list[bytes | None], list[str | None]]:
    """Bytes of every file (None when unreadable) and the error messages."""
    data: list[bytes | None] = []
    errors: list[str | None] = []
    for path in files.get_column("path").to_list():
        try:
            if path is None:
                raise OSError("no path given")
            with open(path, "rb") as handle:
                data.append(handle.read())
            errors.append(None)
        except OSError as exc:
            data.append(None)
            errors.append(f"{type(exc).__name__}: {exc}")
    return data, errors


def texts_frame(data: list[bytes | None], errors: list[str | None]) -> pl.DataFrame:
    """``TEXTS_SCHEMA`` frame of byte strings (None: no text), decoded as the files are."""
    texts = [None if d is None else d.decode("utf-8", errors="replace") for d in data]
    return pl.DataFrame(
        {"file_id": np.arange(len(texts), dtype=np.uint32), "text": texts, "read_error": errors},
        schema=TEXTS_SCHEMA,
    )


def read_texts(files: pl.DataFrame) -> pl.DataFrame:
    """Read and decode every file of ``files`` (column ``path``), one row per file.

    ``file_id`` is the row position in ``files``. An unreadable file (any OSError, or a null
    path) gets a null ``text`` and the error message in ``read_error``; it is not raised, so
    one bad file never stops a run.
    """
    return texts_frame(*_read_bytes(files))


def _detect_delimiters(first_lines: pl.Series) -> np.ndarray:
    """Index into DELIMITERS per line: most frequent, ties in DELIMITERS order, else ``,``."""
    if first_lines.len() == 0:
        return np.zeros(0, dtype=np.int64)
    counts = pl.DataFrame({"line": first_lines}).select(
        pl.col("line").str.count_matches(d, literal=True).alias(str(i))
        for i, d in enumerate(DELIMITERS)
    )
    # argmax returns the first maximum, which is the tie rule; all-zero rows give index 0 (",").
    return counts.to_numpy().argmax(axis=1)


def _is_header(first_lines: pl.Series, delimiters: pl.Series) -> np.ndarray:
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

    delim_idx = _detect_delimiters(first_lines)
    first_delims = pl.Series(list(DELIMITERS)).gather(delim_idx)
    header_rows = first_rows[_is_header(first_lines, first_delims)]

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


def read_lines(files: pl.DataFrame) -> pl.DataFrame:
    """Read every file of ``files`` into one line table (see ``split_lines``)."""
    return split_lines(read_texts(files))


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


def _plain_shape(data: bytes) -> tuple[int, bool]:
    """(number of physical lines, whether the file qualifies for the fast CSV path)."""
    a = np.frombuffer(data, dtype=np.uint8)
    newlines = int(np.count_nonzero(a == 10))
    n_lines = newlines + (0 if data.endswith(b"\n") else 1)
    plain = (
        data.isascii()
        and b'"' not in data
        # No control or space byte other than \n: no \r, tabs, blanks or BOM to trim.
        and int(np.count_nonzero(a < 33)) == newlines
        # 9 commas per line on average; with the reader's ragged-line error (raised on any
        # line with more fields) this means exactly 10 fields on every line, so no blank line.
        and int(np.count_nonzero(a == 44)) == _HEADER_COMMAS * n_lines
    )
    return n_lines, plain


def _read_fast(
    data: list[bytes], file_ids: np.ndarray, n_lines: np.ndarray
) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """Rows and line stats of plain files via one CSV read; None when they are not plain."""
    first = [d[: d.find(b"\n")] if b"\n" in d else d for d in data]
    first_lines = pl.Series([f.decode("ascii") for f in first], dtype=pl.String)
    if not (_detect_delimiters(first_lines) == 0).all():
        return None
    header = _is_header(first_lines, pl.Series([","] * len(data), dtype=pl.String))
    parts: list[bytes | memoryview] = []
    for d, f, has_header in zip(data, first, header, strict=True):
        part = memoryview(d)[len(f) + 1 :] if has_header else memoryview(d)
        parts.append(part)
        if len(part) and not d.endswith(b"\n"):
            parts.append(b"\n")
    n_data = n_lines - header.astype(np.int64)
    try:
        fields = pl.read_csv(
            b"".join(parts),
            has_header=False,
            separator=",",
            quote_char=None,
            schema=dict.fromkeys(RAW_FIELDS, pl.String()),
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError:
        return None  # a line with more than 10 fields: let the line table handle it
    if fields.height != int(n_data.sum()):
        return None
    starts = np.cumsum(n_data) - n_data
    line_no = (
        np.arange(fields.height, dtype=np.int64)
        - np.repeat(starts, n_data)
        + np.repeat(1 + header.astype(np.int64), n_data)
    )
    rows = fields.select(
        pl.Series("file_id", np.repeat(file_ids, n_data), dtype=pl.UInt32),
        pl.Series("line_no", line_no, dtype=pl.Int64),
        pl.lit(None, dtype=pl.String).alias("raw_line"),
        pl.lit(N_FIELDS, dtype=pl.Int64).alias("n_fields"),
        *RAW_FIELDS,
    )
    stats = pl.DataFrame(
        {
            "file_id": file_ids,
            "lines_total": n_lines,
            "lines_header": header.astype(np.int64),
            "lines_blank": np.zeros(len(data), dtype=np.int64),
            "has_bom": np.zeros(len(data), dtype=bool),
            "has_cr": np.zeros(len(data), dtype=bool),
        },
        schema={k: v for k, v in FILE_LINES_SCHEMA.items() if k != "read_error"},
    )
    return rows, stats


def read_rows(files: pl.DataFrame, fast: bool = True) -> RawRows:
    """Read every file of ``files`` into data rows plus per-file line accounting.

    Plain files take the fast CSV path, the others the line table; the result is the same
    up to ``raw_line`` (null on fast rows) and empty fields (null on fast rows, ``""`` on
    line-table rows), which normalisation treats alike. ``fast=False`` forces the line table.
    """
    data, errors = _read_bytes(files)
    n_files = len(data)
    shapes = [(0, False) if d is None or not d or not fast else _plain_shape(d) for d in data]
    plain = np.array([p for _, p in shapes], dtype=bool)
    n_lines = np.array([n for n, _ in shapes], dtype=np.int64)

    parts_rows: list[pl.DataFrame] = []
    parts_stats: list[pl.DataFrame] = []
    if plain.any():
        fast_ids = np.flatnonzero(plain)
        result = _read_fast(
            [data[i] for i in fast_ids], fast_ids.astype(np.uint32), n_lines[fast_ids]
        )
        if result is None:
            plain[:] = False
        else:
            parts_rows.append(result[0])
            parts_stats.append(result[1])

    slow_data = [None if p else d for d, p in zip(data, plain, strict=True)]
    lines = split_lines(texts_frame(slow_data, [None] * n_files))
    parts_rows.append(rows_from_lines(lines))
    parts_stats.append(line_stats(lines))

    return _raw_rows(parts_rows, parts_stats, errors)


def _raw_rows(
    parts_rows: list[pl.DataFrame], parts_stats: list[pl.DataFrame], errors: list[str | None]
) -> RawRows:
    """``RawRows`` from row and line-stat parts; files without lines get zero counts."""
    counts = ("lines_total", "lines_header", "lines_blank")
    stats = (
        pl.DataFrame(
            {"file_id": np.arange(len(errors), dtype=np.uint32), "read_error": errors},
            schema={"file_id": pl.UInt32(), "read_error": pl.String()},
        )
        .join(pl.concat(parts_stats, how="vertical"), on="file_id", how="left")
        .sort("file_id")
        .with_columns(
            *(pl.col(c).fill_null(0) for c in counts),
            pl.col("has_bom").fill_null(False),
            pl.col("has_cr").fill_null(False),
        )
        .select(*FILE_LINES_SCHEMA)
        .cast(FILE_LINES_SCHEMA)  # type: ignore[arg-type]
    )
    # Empty parts are dropped: polars 2.1 panics in some string kernels (pl.format) on
    # columns holding an empty chunk next to a non-empty one.
    parts_rows = [part for part in parts_rows if part.height] or parts_rows[:1]
    return RawRows(rows=pl.concat(parts_rows, how="vertical", rechunk=False), files=stats)


# --------------------------------------------------------------------------- appended bytes

HEAD_BYTES = 4096
"""Bytes read at the start of an appended file to find its first non-empty line."""


@dataclass
class AppendedRows:
    """The lines appended to files, parsed as they are parsed inside the whole file.

    ``rows``: ``RawRows`` of the appended lines only (line numbers continue the file's).
    ``delimiter`` / ``header`` (per file): delimiter of the file's first non-empty line and
    whether that line is a header, null when it is not within ``HEAD_BYTES``. ``ok`` (per
    file): readable, the old content ends with ``\\n``, something follows it and the first
    non-empty line was found; ``rows`` holds lines of ``ok`` files only.
    """

    rows: RawRows
    delimiter: pl.Series
    header: pl.Series
    ok: pl.Series


def _read_head_tail(
    paths: list[str | None], offsets: list[int | None]
) -> tuple[list[bytes], list[bytes], list[str | None]]:
    """Per file: up to HEAD_BYTES of the old content, the bytes from its last one on, error."""
    heads: list[bytes] = []
    tails: list[bytes] = []
    errors: list[str | None] = []
    for path, offset in zip(paths, offsets, strict=True):
        head = tail = b""
        error = None
        try:
            if path is None or offset is None or offset <= 0:
                raise OSError("no path or no previous content")
            with open(path, "rb") as handle:
                head = handle.read(min(offset, HEAD_BYTES))
                handle.seek(offset - 1)
                tail = handle.read()
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        heads.append(head)
        tails.append(tail)
        errors.append(error)
    return heads, tails, errors


def _first_lines(heads: list[bytes]) -> tuple[pl.Series, pl.Series]:
    """Delimiter and header flag of each file's first non-empty line, from complete lines."""
    complete = [h[: h.rfind(b"\n") + 1] for h in heads]
    lines = split_lines(texts_frame(list(complete), [None] * len(heads)))
    first = lines.filter(pl.col("kind") != KIND_BLANK).unique(
        "file_id", keep="first", maintain_order=True
    )
    per_file = pl.DataFrame(
        {"file_id": np.arange(len(heads), dtype=np.uint32)}, schema={"file_id": pl.UInt32()}
    ).join(first, on="file_id", how="left")
    return per_file.get_column("delimiter"), per_file.get_column("kind") == KIND_HEADER


def read_appended(files: pl.DataFrame, first_line_no: np.ndarray) -> AppendedRows:
    """Read only what was appended to each file of ``files`` (``path``, ``prev_size``).

    ``first_line_no`` (per file) is the number of the first appended line: the old content's
    line count + 1. Seeks to ``prev_size - 1`` (the old content's last byte must be
    ``\\n``, so the appended bytes start a line) plus a small read of the file's start.
    """
    heads, tails, errors = _read_head_tail(
        files.get_column("path").to_list(), files.get_column("prev_size").to_list()
    )
    delimiter, header = _first_lines(heads)
    known = delimiter.is_not_null().to_list()
    ok = [
        k and len(t) > 1 and t[:1] == b"\n" for k, t in zip(known, tails, strict=True)
    ]
    texts = texts_frame([t[1:] if o else None for t, o in zip(tails, ok, strict=True)], errors)
    lines = split_continuations(texts, delimiter.fill_null(DELIMITERS[0]), first_line_no)
    return AppendedRows(
        rows=_raw_rows([rows_from_lines(lines)], [line_stats(lines)], errors),
        delimiter=delimiter,
        header=header,
        ok=pl.Series("ok", ok, dtype=pl.Boolean),
    )
