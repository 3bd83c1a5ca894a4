from hypothesis import given
from hypothesis import strategies as st

from mf_pipeline.lib.partitions import SHARD_KEYS, in_shards, shard_of, shard_span


def test_shard_is_the_lake_prefix_letter():
    assert shard_of("AAPL.US") == "A"
    assert shard_of("ZZZZ.US") == "Z"
    assert shard_of("3M.US") == "0"
    assert shard_of("^SPX") == "0"
    assert len(SHARD_KEYS) == 27 and len(set(SHARD_KEYS)) == 27


def test_span_covers_first_to_last_shard():
    assert shard_span(["MSFT.US", "AAPL.US", "IBM.US"]) == ("A", "M")
    assert shard_span(["KO.US"]) == ("K", "K")
    assert shard_span(["1AB.US", "ZZ.US"]) == ("Z", "0")
    assert shard_span([]) is None


def test_in_shards_filters_and_sorts():
    tickers = ["MSFT.US", "AAPL.US", "AMZN.US", "9X.US"]
    assert in_shards(tickers, ["A", "0"]) == ["9X.US", "AAPL.US", "AMZN.US"]
    assert in_shards(tickers, []) == []


@given(st.lists(st.from_regex(r"[A-Z0-9^][A-Z0-9.]{0,6}", fullmatch=True), min_size=1))
def test_every_ticker_falls_inside_its_span(tickers):
    start, end = shard_span(tickers)
    lo, hi = SHARD_KEYS.index(start), SHARD_KEYS.index(end)
    covered = SHARD_KEYS[lo : hi + 1]
    assert all(shard_of(t) in covered for t in tickers)
    assert in_shards(tickers, covered) == sorted(set(tickers))
