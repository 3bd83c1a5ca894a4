"""Tests of the raw-file reader: physical lines, header, delimiter, BOM/CRLF, read errors."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from mf_pipeline.lib.layers.bronze.lines import (
    LINE_SCHEMA,
    RAW_FIELDS,
    ROWS_SCHEMA,
    line_text,
    rows_from_lines,
    split_lines,
)
from mf_pipeline.lib.layers.bronze.parse import normalize
from mf_pipeline.lib.layers.bronze.read import (
    FILE_LINES_SCHEMA,
    read_lines,
    read_rows,
    read_texts,
)

HEADER = "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>"
ROW = "AAPL.US,D,20200102,000000,10,11,9,10.5,1000,0"


def _files(tmp_path: Path, contents: list[bytes | str]) -> pl.DataFrame:
    paths = []
    for i, content in enumerate(contents):
        path = tmp_path / f"f{i}.us.txt"
        data = content.encode("utf-8") if isinstance(content, str) else content
        path.write_bytes(data)
        paths.append(str(path))
    return pl.DataFrame({"path": paths})


def _lines(tmp_path: Path, content: bytes | str) -> pl.DataFrame:
    return read_lines(_files(tmp_path, [content]))


def test_schema_and_empty_inputs(tmp_path: Path) -> None:
    assert read_lines(_files(tmp_path, [])).schema == pl.Schema(LINE_SCHEMA)
    assert read_lines(_files(tmp_path, [b""])).height == 0
    assert _lines(tmp_path, ROW).schema == pl.Schema(LINE_SCHEMA)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", 0),
        ("\n", 1),
        (ROW, 1),
        (ROW + "\n", 1),
        (ROW + "\n\n", 2),
        (ROW + "\r\n" + ROW + "\r\n", 2),
        ("\n\n" + ROW, 3),
        ("   \n\t\n", 2),
    ],
)
def test_physical_line_count(tmp_path: Path, content: str, expected: int) -> None:
    lines = _lines(tmp_path, content)
    assert lines.height == expected
    assert lines["line_no"].to_list() == list(range(1, expected + 1))


def test_blank_and_crlf_lines(tmp_path: Path) -> None:
    lines = _lines(tmp_path, HEADER + "\r\n\r\n" + ROW + "\r\n  \r\n" + ROW)
    assert lines["kind"].to_list() == ["header", "blank", "data", "blank", "data"]
    assert lines["cr"].to_list() == [True, True, True, True, False]
    assert lines["line"][2] == ROW  # trimmed, no \r
    assert lines["raw_openint"][2] == "0"


@pytest.mark.parametrize(
    "header",
    [
        HEADER,
        "TICKER,PER,DATE,TIME,OPEN,HIGH,LOW,CLOSE,VOL,OPENINT",
        "<ticker>,<per>,<date>,<time>,<open>,<high>,<low>,<close>,<vol>,<openint>",
        " <TICKER> , PER ,Date,TIME,OPEN,HIGH,LOW,CLOSE,VOL,OPENINT ",
        HEADER + ",EXTRA",  # only the first 10 fields are compared (as the old tool)
    ],
)
def test_header_variants(tmp_path: Path, header: str) -> None:
    lines = _lines(tmp_path, header + "\n" + ROW + "\n")
    assert lines["kind"].to_list() == ["header", "data"]


def test_header_with_bom(tmp_path: Path) -> None:
    lines = _lines(tmp_path, "\ufeff" + HEADER + "\n" + ROW)
    assert lines["kind"].to_list() == ["header", "data"]
    assert lines["bom"].to_list() == [True, False]
    assert not lines["line"][0].startswith("\ufeff")


def test_bom_stripped_on_headerless_file(tmp_path: Path) -> None:
    lines = _lines(tmp_path, b"\xef\xbb\xbf" + ROW.encode() + b"\n")
    assert lines["kind"].to_list() == ["data"]
    assert lines["raw_ticker"][0] == "AAPL.US"
    assert lines["bom"][0]


def test_header_is_first_non_empty_line_only(tmp_path: Path) -> None:
    lines = _lines(tmp_path, "\n  \n" + HEADER + "\n" + ROW + "\n" + HEADER + "\n")
    assert lines["kind"].to_list() == ["blank", "blank", "header", "data", "data"]
    assert lines["line_no"].to_list() == [1, 2, 3, 4, 5]


def test_not_a_header(tmp_path: Path) -> None:
    lines = _lines(tmp_path, "<TICKER>,<PER>,<DATE>\n" + ROW)
    assert lines["kind"].to_list() == ["data", "data"]
    assert lines["n_fields"].to_list() == [3, 10]


@pytest.mark.parametrize(
    ("first_line", "delimiter"),
    [
        (ROW, ","),
        (ROW.replace(",", "\t"), "\t"),
        (ROW.replace(",", "|"), "|"),
        (ROW.replace(",", ";"), ";"),
        ("a|b;c", "|"),  # tie: earlier in , \t | ; wins
        ("a;b;c;d,e|f", ";"),  # most frequent wins
        ("a;b;c,d,e", ","),  # tie between , and ;
        ("a\tb,c", ","),
        ("no delimiter here", ","),
    ],
)
def test_delimiter_detection(tmp_path: Path, first_line: str, delimiter: str) -> None:
    lines = _lines(tmp_path, "\n" + first_line + "\n" + ROW.replace(",", delimiter))
    assert set(lines["delimiter"].to_list()) == {delimiter}
    assert lines["n_fields"][2] == 10


def test_mixed_delimiters_across_files(tmp_path: Path) -> None:
    lines = read_lines(
        _files(tmp_path, [ROW, ROW.replace(",", ";"), HEADER.replace(",", "\t") + "\n" + ROW])
    )
    assert lines["delimiter"].to_list() == [",", ";", "\t", "\t"]
    assert lines["n_fields"].to_list() == [10, 10, None, 1]


def test_fields_as_split(tmp_path: Path) -> None:
    lines = _lines(tmp_path, "A, b ,C\n" + ROW + ",x\n")
    first = lines.row(0, named=True)
    assert first["n_fields"] == 3
    assert [first[f] for f in RAW_FIELDS[:4]] == ["A", " b ", "C", None]
    assert lines["n_fields"][1] == 11
    assert lines["raw_openint"][1] == "0"


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    lines = _lines(tmp_path, b"AAPL.US\xff,D\n")
    assert lines["raw_ticker"][0] == "AAPL.US\ufffd"


def test_read_error_is_recorded_not_raised(tmp_path: Path) -> None:
    files = pl.DataFrame({"path": [str(tmp_path / "missing.txt"), str(tmp_path), None]})
    texts = read_texts(files)
    assert texts["text"].null_count() == 3
    assert texts["read_error"].null_count() == 0
    assert split_lines(texts).height == 0


def test_file_ids_follow_input_rows(tmp_path: Path) -> None:
    files = _files(tmp_path, [ROW, "", ROW + "\n" + ROW])
    lines = read_lines(files)
    assert lines["file_id"].to_list() == [0, 2, 2]
    assert lines["line_no"].to_list() == [1, 1, 2]


# --------------------------------------------------------------------------- read_rows


def _rows_equal_modulo_path(fast: pl.DataFrame, slow: pl.DataFrame) -> None:
    """Fast rows equal line-table rows once raw_line is rebuilt and "" is read as null."""
    blank_to_null = [pl.when(pl.col(f) != "").then(pl.col(f)).alias(f) for f in RAW_FIELDS]
    a = fast.with_columns(line_text().alias("raw_line")).with_columns(blank_to_null)
    b = slow.with_columns(blank_to_null)
    key = ["file_id", "line_no"]
    assert_frame_equal(a.sort(key), b.sort(key))


def test_read_rows_fast_path(tmp_path: Path) -> None:
    plain = HEADER + "\n" + ROW + "\n" + ROW.replace("10.5", "") + "\n"
    files = _files(tmp_path, [plain, ROW, ROW + "\r\n", "", HEADER])
    raw = read_rows(files)
    assert raw.rows.schema == pl.Schema(ROWS_SCHEMA)
    assert raw.files.schema == pl.Schema(FILE_LINES_SCHEMA)
    assert raw.rows.select("file_id", "line_no").rows() == [(0, 2), (0, 3), (1, 1), (2, 1)]
    assert raw.rows["raw_line"].to_list() == [None, None, None, ROW]  # fast rows: no line
    assert raw.files.select("lines_total", "lines_header", "lines_blank").rows() == [
        (3, 1, 0), (1, 0, 0), (1, 0, 0), (0, 0, 0), (1, 1, 0),
    ]
    assert raw.files["has_cr"].to_list() == [False, False, True, False, False]
    _rows_equal_modulo_path(raw.rows, read_rows(files, fast=False).rows)
    _rows_equal_modulo_path(raw.rows, rows_from_lines(read_lines(files)))


def test_read_rows_ragged_plain_files_fall_back(tmp_path: Path) -> None:
    # 9 commas per line on average, but one line has 11 fields and another 9.
    ragged = ROW + ",x\n" + ROW.rsplit(",", 1)[0] + "\n"
    files = _files(tmp_path, [ROW, ragged])
    raw = read_rows(files)
    assert raw.rows["n_fields"].to_list() == [10, 11, 9]
    _rows_equal_modulo_path(raw.rows, read_rows(files, fast=False).rows)


def test_read_rows_unreadable(tmp_path: Path) -> None:
    files = pl.DataFrame({"path": [str(tmp_path / "missing.txt")]})
    raw = read_rows(files)
    assert raw.rows.height == 0
    assert raw.files["read_error"][0].startswith("FileNotFoundError")
    assert raw.files["lines_total"][0] == 0


_plain_field = st.text(alphabet="0123456789.eE+-DXUS", max_size=8)
_ten_fields = st.lists(_plain_field, min_size=10, max_size=10).map(",".join)
_plain_line = st.one_of(_ten_fields, _ten_fields, st.just(ROW))
_any_line = st.one_of(
    _plain_line,
    st.lists(_plain_field, min_size=8, max_size=12).map(",".join),
    st.just(HEADER),
    st.sampled_from(["", " ", ROW.replace(",", ";"), '"A",' + ROW[2:], "\t" + ROW]),
)
# Half the files are plain (fast path), half mixed (line table or fallback).
_file_lines = st.one_of(
    st.tuples(st.booleans(), st.lists(_plain_line, max_size=6)).map(
        lambda t: [HEADER, *t[1]] if t[0] else t[1]
    ),
    st.lists(_any_line, max_size=6),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(_file_lines, st.booleans()), min_size=1, max_size=4
    )
)
def test_fuzz_fast_path_equals_line_table(spec: list[tuple[list[str], bool]]) -> None:
    contents = ["\n".join(lines) + ("\n" if trailing and lines else "") for lines, trailing in spec]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, content in enumerate(contents):
            path = os.path.join(tmp, f"f{i}.txt")
            Path(path).write_text(content)
            paths.append(path)
        files = pl.DataFrame(
            {"source_file": [f"f{i}.txt" for i in range(len(paths))], "path": paths,
             "ticker": ["AAPL.US"] * len(paths), "exchange": ["NYSE"] * len(paths),
             "fail_reason": [None] * len(paths)},
            schema_overrides={"fail_reason": pl.String},
        )
        fast, slow = read_rows(files), read_rows(files, fast=False)
    assert_frame_equal(fast.files, slow.files)
    _rows_equal_modulo_path(fast.rows, slow.rows)
    ts = datetime(2024, 1, 1, tzinfo=UTC)
    assert_frame_equal(
        normalize(fast.rows, files, "r", ts).sort("file_id", "source_line_no"),
        normalize(slow.rows, files, "r", ts).sort("file_id", "source_line_no"),
    )
