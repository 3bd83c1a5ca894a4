"""Raw files -> data rows plus per-file line accounting (Bronze's only file reads).

``read_rows`` is what Bronze uses. Files that are provably plain (ASCII, no whitespace other
than ``\\n``, no quotes, no BOM, ``,`` delimiter, exactly 9 commas on every line, so no blank
lines) skip the line table and go through polars' multi-threaded CSV reader in one call; every
other file goes through the line table (``lines``). Both give the same rows (a property test
checks it), so the fast path is only an optimisation: about a third less CPU for Bronze on
clean dumps. The only Python loop reads each file's bytes.

Reading is bounded (hostile input): a file is read in chunks of ``READ_CHUNK`` bytes and a line
longer than ``max_line_bytes`` is never kept: its bytes are dropped as they are read and the
line is replaced by a short placeholder line (``LONG_LINE_PLACEHOLDER``, one field, so it is a
rejected line wherever it is), which keeps the line numbering and the line kinds of the rest
of the file. ``RawRows.long_lines`` records each such line (number, length, first bytes) so
the rejects give it the reason ``line_too_long:<bytes>``. Files failed on the tree alone
(``manifest.NOT_READ_REASONS``: symlinks not followed, ...) are never opened, and no file is
opened through a symlink (``O_NOFOLLOW``).

``read_appended`` reads only the bytes appended to files that grew (plus the start of each file,
for its delimiter) and gives the line table those lines have inside the whole file; Bronze's
append fast path (``append``) is built on it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import polars as pl

from mf_pipeline.lib.layers.bronze.lines import (
    DELIMITERS,
    KIND_BLANK,
    KIND_HEADER,
    N_FIELDS,
    RAW_FIELDS,
    detect_delimiters,
    is_header,
    line_stats,
    rows_from_lines,
    split_continuations,
    split_lines,
    texts_frame,
)
from mf_pipeline.lib.layers.manifest import NOT_READ_REASONS, open_no_follow

FILE_LINES_SCHEMA: dict[str, pl.DataType] = {
    "file_id": pl.UInt32(),
    "read_error": pl.String(),
    "lines_total": pl.Int64(),
    "lines_header": pl.Int64(),
    "lines_blank": pl.Int64(),
    "has_bom": pl.Boolean(),
    "has_cr": pl.Boolean(),
}

LONG_LINES_SCHEMA: dict[str, pl.DataType] = {
    "file_id": pl.UInt32(),
    "line_no": pl.Int64(),
    "line_bytes": pl.Int64(),
    "raw_line": pl.String(),
}

_HEADER_COMMAS = N_FIELDS - 1

MAX_LINE_BYTES = 4096
"""Default ``ingest.max_line_bytes``: a Stooq line has fewer than 100 bytes."""
READ_CHUNK = 4 << 20
"""Bytes read at a time: what one line may cost at most while it is being read."""
LONG_LINE_PREFIX = 200
"""Bytes of an over-long line kept as its ``raw_line`` in the rejects."""
LONG_LINE_PLACEHOLDER = b"line_too_long"
_BOM = b"\xef\xbb\xbf"


@dataclass
class RawRows:
    """The data lines of many files, plus per-file line accounting.

    ``rows`` (``ROWS_SCHEMA``): one row per data line (not blank, not header), any field
    count, grouped by file and in line order within a file. ``raw_line`` is the trimmed line,
    or null for rows read by the fast CSV path (rebuild it with ``line_text``).
    ``files`` (``FILE_LINES_SCHEMA``): one row per input file, in input order.
    ``long_lines`` (``LONG_LINES_SCHEMA``): the lines over ``max_line_bytes``, which are in
    ``rows`` as placeholders (one field): their length and first bytes.
    """

    rows: pl.DataFrame
    files: pl.DataFrame
    long_lines: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=LONG_LINES_SCHEMA))


LongLine = tuple[int, int, bytes]
"""(line number from 1 at the read start, bytes of the line without ``\\n``, first bytes)."""


def _has_long_line(data: bytes, max_line: int) -> bool:
    """Whether a line of ``data`` (``\\n`` excluded) is longer than ``max_line`` bytes.

    Jumps from a line start to the last ``\\n`` within the next ``max_line + 1`` bytes: a
    few searches per file (``bytes.rfind``), not one per line.
    """
    pos, size = 0, len(data)
    while size - pos > max_line:
        nxt = data.rfind(b"\n", pos, pos + max_line + 1)
        if nxt < 0:
            return True
        pos = nxt + 1
    return False


def read_bounded(handle: BinaryIO, max_line: int) -> tuple[bytes | bytearray, list[LongLine]]:
    """The rest of ``handle`` with every line over ``max_line`` bytes replaced by a
    placeholder, and those lines' ``LongLine`` records. Reads ``READ_CHUNK`` bytes at a time:
    memory is the kept bytes plus one chunk, however long a line is.

    The placeholder keeps what the line rules need of the line: a UTF-8 BOM starting the
    first line and a final ``\\r``.
    """
    first = handle.read(READ_CHUNK)
    if len(first) < READ_CHUNK and not _has_long_line(first, max_line):
        return first, []  # the whole file in one read, no line too long: no copy
    out = bytearray()
    longs: list[LongLine] = []
    line_no, cur_start, cur_len = 1, 0, 0
    skipping, prefix, last = False, b"", b""
    chunk = first
    while chunk:
        a = np.frombuffer(chunk, dtype=np.uint8)
        nl = np.flatnonzero(a == 10)
        tail = len(chunk) - (int(nl[-1]) + 1 if nl.size else 0)
        if not skipping:
            bounds = np.concatenate(([-1], nl, [len(chunk)]))
            lengths = np.diff(bounds) - 1
            lengths[0] += cur_len
            if int(lengths.max()) <= max_line:  # the usual case: keep the chunk whole
                out += chunk
                if nl.size:
                    line_no += int(nl.size)
                    cur_len = tail
                    cur_start = len(out) - tail
                else:
                    cur_len += len(chunk)
                chunk = handle.read(READ_CHUNK)
                continue
        view = memoryview(chunk)
        start = 0
        for end in [*nl.tolist(), None]:
            seg = view[start:] if end is None else view[start:end]
            if not skipping and cur_len + len(seg) > max_line:
                prefix = (bytes(out[cur_start:]) + bytes(seg[:LONG_LINE_PREFIX]))[
                    :LONG_LINE_PREFIX]
                del out[cur_start:]
                skipping = True
            elif not skipping:
                out += seg
            cur_len += len(seg)
            if skipping and len(seg):
                last = bytes(seg[-1:])
            if end is None:
                break
            if skipping:
                longs.append((line_no, cur_len, prefix))
                out += _placeholder(line_no, prefix, last)
                skipping = False
            out += b"\n"
            line_no += 1
            cur_len, cur_start, start = 0, len(out), end + 1
        chunk = handle.read(READ_CHUNK)
    if skipping:
        longs.append((line_no, cur_len, prefix))
        out += _placeholder(line_no, prefix, last)
    return out, longs


def _placeholder(line_no: int, prefix: bytes, last: bytes) -> bytes:
    bom = _BOM if line_no == 1 and prefix.startswith(_BOM) else b""
    return bom + LONG_LINE_PLACEHOLDER + (b"\r" if last == b"\r" else b"")


def _long_lines_frame(longs: list[list[LongLine]], first_line_no: np.ndarray | None = None
                      ) -> pl.DataFrame:
    """``LONG_LINES_SCHEMA`` rows of per-file ``LongLine`` lists (indexed by file_id);
    ``first_line_no`` numbers a read that starts inside a file."""
    ids, numbers, sizes, prefixes = [], [], [], []
    for file_id, records in enumerate(longs):
        offset = 0 if first_line_no is None else int(first_line_no[file_id]) - 1
        for line_no, size, prefix in records:
            ids.append(file_id)
            numbers.append(line_no + offset)
            sizes.append(size)
            prefixes.append(prefix.removeprefix(_BOM).decode("utf-8", errors="replace")
                            .strip() + "…")
    return pl.DataFrame({"file_id": ids, "line_no": numbers, "line_bytes": sizes,
                         "raw_line": prefixes}, schema=LONG_LINES_SCHEMA)


def _not_read(files: pl.DataFrame) -> list[bool]:
    """Files failed on the tree alone (never opened)."""
    if "fail_reason" not in files.columns:
        return [False] * files.height
    return files.get_column("fail_reason").is_in(list(NOT_READ_REASONS)).fill_null(False).to_list()


def _read_bytes(files: pl.DataFrame, max_line_bytes: int = MAX_LINE_BYTES
                ) -> tuple[list[bytes | bytearray | None], list[str | None], list[list[LongLine]]]:
    """Bytes of every file (None when unreadable or not to be read), the error messages and
    each file's over-long lines (see ``read_bounded``)."""
    data: list[bytes | bytearray | None] = []
    errors: list[str | None] = []
    longs: list[list[LongLine]] = []
    for path, skip in zip(files.get_column("path").to_list(), _not_read(files), strict=True):
        content: bytes | bytearray | None = None
        error = None
        records: list[LongLine] = []
        try:
            if skip:
                pass
            elif path is None:
                raise OSError("no path given")
            else:
                with open_no_follow(path) as handle:
                    content, records = read_bounded(handle, max_line_bytes)
        except OSError as exc:
            content, error, records = None, f"{type(exc).__name__}: {exc}", []
        data.append(content)
        errors.append(error)
        longs.append(records)
    return data, errors, longs


def read_texts(files: pl.DataFrame) -> pl.DataFrame:
    """Read and decode every file of ``files`` (column ``path``), one row per file.

    ``file_id`` is the row position in ``files``. An unreadable file (any OSError, or a null
    path) gets a null ``text`` and the error message in ``read_error``; it is not raised, so
    one bad file never stops a run.
    """
    data, errors, _longs = _read_bytes(files)
    return texts_frame(data, errors)


def read_lines(files: pl.DataFrame) -> pl.DataFrame:
    """Read every file of ``files`` into one line table (see ``split_lines``)."""
    return split_lines(read_texts(files))


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
    if not (detect_delimiters(first_lines) == 0).all():
        return None
    header = is_header(first_lines, pl.Series([","] * len(data), dtype=pl.String))
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


def read_rows(files: pl.DataFrame, fast: bool = True,
              max_line_bytes: int = MAX_LINE_BYTES) -> RawRows:
    """Read every file of ``files`` into data rows plus per-file line accounting.

    Plain files take the fast CSV path, the others the line table; the result is the same
    up to ``raw_line`` (null on fast rows) and empty fields (null on fast rows, ``""`` on
    line-table rows), which normalisation treats alike. ``fast=False`` forces the line table.
    Lines over ``max_line_bytes`` are placeholders (see ``read_bounded``).
    """
    data, errors, longs = _read_bytes(files, max_line_bytes)
    n_files = len(data)
    shapes = [(0, False) if d is None or not d or not fast or long else _plain_shape(d)
              for d, long in zip(data, longs, strict=True)]
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

    return _raw_rows(parts_rows, parts_stats, errors, _long_lines_frame(longs))


def _raw_rows(
    parts_rows: list[pl.DataFrame], parts_stats: list[pl.DataFrame], errors: list[str | None],
    long_lines: pl.DataFrame,
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
    return RawRows(rows=pl.concat(parts_rows, how="vertical", rechunk=False), files=stats,
                   long_lines=long_lines)


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
    paths: list[str | None], offsets: list[int | None], max_line: int
) -> tuple[list[bytes], list[bytes | bytearray], list[str | None], list[list[LongLine]]]:
    """Per file: up to HEAD_BYTES of the old content, the bytes appended after it (bounded as
    ``read_bounded`` reads them, numbered from 1), error, over-long appended lines. An empty
    tail means the old content does not end with ``\\n`` or nothing follows it."""
    heads: list[bytes] = []
    tails: list[bytes | bytearray] = []
    errors: list[str | None] = []
    longs: list[list[LongLine]] = []
    for path, offset in zip(paths, offsets, strict=True):
        head: bytes = b""
        tail: bytes | bytearray = b""
        error = None
        records: list[LongLine] = []
        try:
            if path is None or offset is None or offset <= 0:
                raise OSError("no path or no previous content")
            with open_no_follow(path) as handle:
                head = handle.read(min(offset, HEAD_BYTES))
                handle.seek(offset - 1)
                if handle.read(1) == b"\n":
                    tail, records = read_bounded(handle, max_line)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        heads.append(head)
        tails.append(tail)
        errors.append(error)
        longs.append(records)
    return heads, tails, errors, longs


def _first_lines(heads: list[bytes], max_line: int) -> tuple[pl.Series, pl.Series]:
    """Delimiter and header flag of each file's first non-empty line, from complete lines
    (an over-long one is a placeholder, as in the whole file)."""
    complete = [read_bounded(io.BytesIO(h[: h.rfind(b"\n") + 1]), max_line)[0] for h in heads]
    lines = split_lines(texts_frame(list(complete), [None] * len(heads)))
    first = lines.filter(pl.col("kind") != KIND_BLANK).unique(
        "file_id", keep="first", maintain_order=True
    )
    per_file = pl.DataFrame(
        {"file_id": np.arange(len(heads), dtype=np.uint32)}, schema={"file_id": pl.UInt32()}
    ).join(first, on="file_id", how="left")
    return per_file.get_column("delimiter"), per_file.get_column("kind") == KIND_HEADER


def read_appended(files: pl.DataFrame, first_line_no: np.ndarray,
                  max_line_bytes: int = MAX_LINE_BYTES) -> AppendedRows:
    """Read only what was appended to each file of ``files`` (``path``, ``prev_size``).

    ``first_line_no`` (per file) is the number of the first appended line: the old content's
    line count + 1. Seeks to ``prev_size - 1`` (the old content's last byte must be
    ``\\n``, so the appended bytes start a line) plus a small read of the file's start.
    Lines over ``max_line_bytes`` are placeholders, as in ``read_rows``.
    """
    heads, tails, errors, longs = _read_head_tail(
        files.get_column("path").to_list(), files.get_column("prev_size").to_list(),
        max_line_bytes,
    )
    delimiter, header = _first_lines(heads, max_line_bytes)
    known = delimiter.is_not_null().to_list()
    ok = [k and len(t) > 0 for k, t in zip(known, tails, strict=True)]
    texts = texts_frame([t if o else None for t, o in zip(tails, ok, strict=True)], errors)
    lines = split_continuations(texts, delimiter.fill_null(DELIMITERS[0]), first_line_no)
    long_lines = _long_lines_frame([r if o else [] for r, o in zip(longs, ok, strict=True)],
                                   first_line_no)
    return AppendedRows(
        rows=_raw_rows([rows_from_lines(lines)], [line_stats(lines)], errors, long_lines),
        delimiter=delimiter,
        header=header,
        ok=pl.Series("ok", ok, dtype=pl.Boolean),
    )
