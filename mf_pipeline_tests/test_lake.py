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
