import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mf_pipeline.lib import lake


@pytest.mark.parametrize("ticker", ["AAPL.US", "BRK-B.US", "^SPX", "A", "X_1=2.US"])
def test_valid_tickers(ticker):
    assert lake.is_valid_ticker(ticker)


@pytest.mark.parametrize(
    "ticker", ["", "..", "A..B", "../ETC", "A/B", "A\\B", "A,B", "A|B", "A B", "aapl", ".US",
               "X" * 33, None]
)
def test_invalid_tickers(ticker):
    assert not lake.is_valid_ticker(ticker)


def test_ticker_hint_from_file_name():
    assert lake.ticker_from_file_name(" aapl.us.TXT ") == "AAPL.US"
    assert lake.ticker_from_file_name("brk-b.us.txt") == "BRK-B.US"


@given(st.text(min_size=1, max_size=40))
def test_no_ticker_writes_outside_the_lake(tmp_path_factory, name):
    root = tmp_path_factory.mktemp("lake")
    ticker = lake.ticker_from_file_name(name)
    try:
        path = lake.symbol_file(root, "NYSE", ticker)
    except ValueError:
        return
    assert root.resolve() in path.resolve().parents


def test_symbol_path_refuses_traversal(tmp_path):
    with pytest.raises(ValueError):
        lake.symbol_file(tmp_path, "NYSE", "../../etc")
    with pytest.raises(ValueError):
        lake.symbol_file(tmp_path, "../X", "AAPL.US")
    assert lake.symbol_file(tmp_path, "nyse", "AAPL.US") == (
        tmp_path / "exchange=NYSE" / "prefix=A" / "ticker=AAPL.US" / "part-000.parquet"
    )


def test_atomic_write_leaves_no_temp_on_failure(tmp_path):
    target = tmp_path / "x" / "t.parquet"
    with pytest.raises(RuntimeError), lake.atomic_target(target) as temp:
        temp.write_text("half")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list((tmp_path / "x").iterdir()) == []


def test_upsert_replaces_only_given_keys(tmp_path):
    target = tmp_path / "ledger.parquet"
    lake.upsert_parquet(target, pl.DataFrame({"k": ["a", "b"], "v": [1, 2]}), "k")
    lake.upsert_parquet(target, pl.DataFrame({"k": ["b"], "v": [20]}), "k", sort_by=["k"])
    assert pl.read_parquet(target).rows() == [("a", 1), ("b", 20)]
    lake.upsert_parquet(target, pl.DataFrame({"k": [], "v": []}, schema={"k": pl.String,
                        "v": pl.Int64}), "k", replace_keys=["a"])
    assert pl.read_parquet(target).rows() == [("b", 20)]


def test_symbol_files_roundtrip(tmp_path):
    frame = pl.DataFrame({"ticker": ["A.US", "A.US", "B.US"],
                          "exchange": ["NYSE", "NYSE", "NASDAQ"], "x": [1, 2, 3]})
    written = lake.write_symbol_files(frame, tmp_path)
    assert set(written) == {"A.US", "B.US"}
    assert pl.read_parquet(written["A.US"])["x"].to_list() == [1, 2]
    assert lake.symbol_files(tmp_path, ["B.US"]) == [written["B.US"]]
    assert lake.remove_symbol_files(tmp_path, ["B.US"]) == [written["B.US"]]
    assert lake.symbol_files(tmp_path) == [written["A.US"]]


def _bars(ticker: str, days: list[int], value: float = 1.0) -> pl.DataFrame:
    import datetime as dt

    return pl.DataFrame({
        "ticker": [ticker] * len(days), "exchange": ["NYSE"] * len(days),
        "trade_date": [dt.date(2024, 1, 1) + dt.timedelta(days=d) for d in days],
        "x": [value] * len(days),
    })


def test_append_writes_dated_deltas_read_in_order(tmp_path):
    lake.write_symbol_files(_bars("A.US", [0, 1]), tmp_path)
    lake.write_symbol_files(_bars("A.US", [2]), tmp_path, append=True)
    lake.write_symbol_files(_bars("A.US", [3, 4]), tmp_path, append=True)
    files = lake.symbol_files(tmp_path, ["A.US"])
    assert [p.name for p in files] == ["part-000.parquet", "part-d20240103.parquet",
                                       "part-d20240104.parquet"]
    assert pl.read_parquet(files)["trade_date"].dt.day().to_list() == [1, 2, 3, 4, 5]
    assert lake.symbol_tickers(tmp_path) == ["A.US"]
    assert lake.inconsistent_tickers(tmp_path) == []


def test_rerun_of_an_append_rewrites_the_same_delta(tmp_path):
    lake.write_symbol_files(_bars("A.US", [0, 1]), tmp_path)
    lake.write_symbol_files(_bars("A.US", [2], 1.0), tmp_path, append=True)
    lake.write_symbol_files(_bars("A.US", [2], 2.0), tmp_path, append=True)
    frame = pl.read_parquet(lake.symbol_files(tmp_path, ["A.US"]))
    assert frame["x"].to_list() == [1.0, 1.0, 2.0]


def test_append_compacts_beyond_max_parts(tmp_path):
    lake.write_symbol_files(_bars("A.US", [0]), tmp_path)
    for day in range(1, 6):
        lake.write_symbol_files(_bars("A.US", [day]), tmp_path, append=True, max_parts=3)
    files = lake.symbol_files(tmp_path, ["A.US"])
    assert len(files) <= 3
    assert pl.read_parquet(files)["trade_date"].dt.day().to_list() == [1, 2, 3, 4, 5, 6]


def test_full_rewrite_removes_deltas_and_killed_rewrite_is_detected(tmp_path):
    import os

    lake.write_symbol_files(_bars("A.US", [0]), tmp_path)
    lake.write_symbol_files(_bars("A.US", [1]), tmp_path, append=True)
    lake.write_symbol_files(_bars("A.US", [0, 1, 2]), tmp_path)
    assert [p.name for p in lake.symbol_files(tmp_path)] == ["part-000.parquet"]
    # A rewrite killed after the base was replaced but before its deltas were removed:
    lake.write_symbol_files(_bars("A.US", [3]), tmp_path, append=True)
    base, delta = lake.symbol_files(tmp_path)
    os.utime(delta, (base.stat().st_mtime - 10, base.stat().st_mtime - 10))
    assert lake.inconsistent_tickers(tmp_path) == ["A.US"]
    assert lake.file_mtimes(tmp_path)["A.US"] == base.stat().st_mtime
