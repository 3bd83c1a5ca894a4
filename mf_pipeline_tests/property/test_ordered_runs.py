"""Sorting by moving runs (``lib/ordered_runs.py``) and Bronze's valid-row sort built on it:
whatever shortcut they take (already in order; runs moved; a full sort), the rows come out
exactly as a plain sort puts them."""

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from mf_pipeline.lib.layers.bronze.build import _sort_valid
from mf_pipeline.lib.ordered_runs import run_blocks, sort_by_runs

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


def test_runs_move_without_a_sort_only_when_that_is_enough():
    keys = pl.DataFrame({"_rank": [2, 2, 1, 1, 1, 3],
                         "trade_date": [DAY, DAY + dt.timedelta(1), DAY, DAY, DAY, DAY],
                         "source_line_no": [2, 3, 2, 3, 4, 2],
                         "file_id": [0, 0, 1, 1, 1, 2]})
    order = ("trade_date", "source_line_no", "file_id")
    assert run_blocks(keys, "_rank", order) == [(2, 3), (0, 2), (5, 1)]
    tickers = pl.Series(["B.US", "A.US", "C.US"])
    assert _sort_valid(keys.drop("_rank"), tickers)["file_id"].to_list() == [1, 1, 1, 0, 0, 2]
    split = keys.with_columns(_rank=pl.Series([2, 2, 1, 1, 2, 3]))  # rank 2 in two runs
    assert run_blocks(split, "_rank", order) is None
    falling = keys.with_columns(source_line_no=pl.Series([2, 3, 4, 3, 2, 2]))  # file 1
    assert run_blocks(falling, "_rank", order) is None
    tied = keys.with_columns(file_id=pl.Series([0, 0, 1, 1, 1, 2]),
                             source_line_no=pl.Series([2, 3, 2, 2, 4, 2]))
    assert run_blocks(tied, "_rank", order) is None  # equal keys: only a sort decides
    nulls = keys.with_columns(trade_date=pl.Series([DAY, None, DAY, DAY, DAY, DAY]))
    assert run_blocks(nulls, "_rank", order) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCDE"), st.integers(0, 9)), max_size=40),
       st.booleans())
def test_sort_by_runs_equals_a_plain_sort(pairs, chunked_in_runs):
    """Rows of tickers and days, as runs of sorted rows when ``chunked_in_runs``."""
    frame = pl.DataFrame(pairs, schema={"ticker": pl.String, "day": pl.Int64}, orient="row")
    frame = frame.unique(maintain_order=True)
    if chunked_in_runs and frame.height:
        frame = pl.concat([part.sort("day") for part in frame.partition_by("ticker")])
    frame = frame.with_columns(payload=pl.int_range(pl.len()))
    assert sort_by_runs(frame, "ticker", ("day",)).equals(frame.sort("ticker", "day"))
