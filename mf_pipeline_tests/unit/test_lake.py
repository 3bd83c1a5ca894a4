import polars as pl
import pytest

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


