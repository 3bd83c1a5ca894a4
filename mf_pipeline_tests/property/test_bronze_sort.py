"""Bronze's valid-row sort (``build._sort_valid``): whatever shortcut it takes (already in
order; file blocks reordered; a full sort), the rows come out exactly as a plain sort by
(ticker rank, trade_date, source_line_no, file_id) puts them."""

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from mf_pipeline.lib.layers.bronze.build import _blocks_in_order, _sort_valid

DAY = dt.date(2020, 1, 1)


@st.composite
def files_and_rows(draw) -> tuple[pl.Series, pl.DataFrame]:
    """Files (some sharing a ticker, some tickerless) whose rows come as one block per file
    in line order, blocks in any order; dates mostly rising, sometimes not, sometimes null."""
    n_files = draw(st.integers(1, 6))
    tickers = pl.Series([draw(st.sampled_from(["A.US", "B.US", "C.US", "D.US", None]))
                         for _ in range(n_files)], dtype=pl.String)
    blocks = []
    for file_id in draw(st.permutations(range(n_files))):
        days = draw(st.lists(st.one_of(st.integers(0, 30), st.none()), max_size=6))
        if draw(st.booleans()):
            days = sorted(d for d in days if d is not None)
        blocks += [(file_id, None if d is None else DAY + dt.timedelta(days=d), line + 2)
                   for line, d in enumerate(days)]
    rows = pl.DataFrame(blocks, schema={"file_id": pl.UInt32, "trade_date": pl.Date,
                                        "source_line_no": pl.Int64}, orient="row")
    return tickers, rows.with_columns(payload=pl.int_range(pl.len()))


@settings(max_examples=300, deadline=None)
@given(files_and_rows())
def test_sort_valid_equals_a_plain_sort(case):
    tickers, rows = case
    rank = tickers.rank("dense").cast(pl.Int64).fill_null(0)
    want = (rows.with_columns(_rank=rank.gather(rows["file_id"]))
            .sort("_rank", "trade_date", "source_line_no", "file_id").drop("_rank"))
    assert _sort_valid(rows, tickers).equals(want)


def test_blocks_are_reordered_without_a_sort_only_when_that_is_enough():
    tickers = pl.Series(["B.US", "A.US", "C.US"])
    keys = pl.DataFrame({"_rank": [2, 2, 1, 1, 1, 3],
                         "trade_date": [DAY, DAY + dt.timedelta(1), DAY, DAY, DAY, DAY],
                         "source_line_no": [2, 3, 2, 3, 4, 2],
                         "file_id": [0, 0, 1, 1, 1, 2]})
    assert _blocks_in_order(keys) == [(2, 3), (0, 2), (5, 1)]
    assert _sort_valid(keys.drop("_rank"), tickers)["file_id"].to_list() == [1, 1, 1, 0, 0, 2]
    split = keys.with_columns(file_id=pl.Series([0, 0, 1, 1, 0, 2]))  # file 0 in two blocks
    assert _blocks_in_order(split) is None
    same_ticker = keys.with_columns(_rank=pl.Series([1, 1, 1, 1, 1, 3]))
    assert _blocks_in_order(same_ticker) is None  # two files of one ticker interleave by date
    unsorted = keys.with_columns(source_line_no=pl.Series([2, 3, 4, 3, 2, 2]))  # file 1
    assert _blocks_in_order(unsorted) is None
