"""Ticker shards: a stable CRC-32 hash of the name into 16 shards of about equal size."""

import itertools
import string
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from mf_pipeline.lib.partitions import (
    SHARD_COUNT,
    SHARD_KEYS,
    in_shards,
    shard_groups,
    shard_of,
    shard_span,
)

TICKERS = st.from_regex(r"[A-Z0-9^][A-Z0-9.^_=-]{0,10}", fullmatch=True)


def crc32_bitwise(data: bytes) -> int:
    """CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) one bit at a time: an independent
    reference for the shard hash, so a change of hash function is caught."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_shard_keys_are_00_to_15():
    assert SHARD_COUNT == 16
    assert SHARD_KEYS == ("00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10",
                          "11", "12", "13", "14", "15")


def test_shards_are_stable_crc32_values():
    # CRC-32 of "123456789" is the standard check value 0xCBF43926; 0x26 % 16 = 6.
    assert crc32_bitwise(b"123456789") == 0xCBF43926
    assert shard_of("123456789") == "06"
    # The shard is the last hex digit of the CRC-32, in decimal (values from crc32_bitwise).
    expected = {"AAPL.US": (0x55B89281, "01"), "MSFT.US": (0xA60B4637, "07"),
                "IBM.US": (0xD5A5B37B, "11"), "ZZ.US": (0x174C0D04, "04"),
                "^SPX": (0xBB67B3F6, "06"), "3M.US": (0x4EA0771E, "14")}
    for ticker, (crc, shard) in expected.items():
        assert crc32_bitwise(ticker.encode()) == crc, ticker
        assert shard_of(ticker) == shard, ticker


@given(TICKERS)
def test_shard_is_crc32_modulo_16(ticker):
    assert shard_of(ticker) == f"{crc32_bitwise(ticker.encode('utf-8')) % 16:02d}"


def test_shards_are_balanced():
    # The first 2,000 three-letter names (AAA.US … CYX.US) share only 3 first letters, yet
    # every hash shard gets 125 ± 20 (here 116 to 138).
    tickers = [f"{''.join(letters)}.US"
               for letters in itertools.product(string.ascii_uppercase, repeat=3)][:2000]
    sizes = Counter(shard_of(t) for t in tickers)
    assert set(sizes) == set(SHARD_KEYS)
    assert max(sizes.values()) / min(sizes.values()) < 1.5
    assert all(105 <= size <= 145 for size in sizes.values()), sizes


def test_span_covers_first_to_last_shard():
    # AAPL.US 01, MSFT.US 07, IBM.US 11 (see above)
    assert shard_span(["MSFT.US", "AAPL.US", "IBM.US"]) == ("01", "11")
    assert shard_span(["3M.US"]) == ("14", "14")
    assert shard_span(["^SPX", "ZZ.US", "MSFT.US"]) == ("04", "07")
    assert shard_span([]) is None


def test_in_shards_filters_and_sorts():
    tickers = ["MSFT.US", "AAPL.US", "IBM.US", "^SPX", "123456789"]
    assert in_shards(tickers, ["06", "01"]) == ["123456789", "AAPL.US", "^SPX"]
    assert in_shards(tickers, ["11"]) == ["IBM.US"]
    assert in_shards(tickers, []) == []


@given(st.lists(TICKERS, min_size=1))
def test_every_ticker_falls_inside_its_span(tickers):
    start, end = shard_span(tickers)
    lo, hi = SHARD_KEYS.index(start), SHARD_KEYS.index(end)
    covered = SHARD_KEYS[lo : hi + 1]
    assert shard_of(min(tickers, key=lambda t: SHARD_KEYS.index(shard_of(t)))) == start
    assert shard_of(max(tickers, key=lambda t: SHARD_KEYS.index(shard_of(t)))) == end
    assert in_shards(tickers, covered) == sorted(set(tickers))


def tickers_per_shard(counts: dict[str, int]) -> list[str]:
    """Made-up ticker names, ``counts[shard]`` of them in each shard."""
    out: list[str] = []
    for shard, count in counts.items():
        names = (f"X{n}.US" for n in itertools.count())
        out += list(itertools.islice((t for t in names if shard_of(t) == shard), count))
    return out


def test_shard_groups_cut_at_the_boundary_nearest_each_share():
    # 12 tickers in shards 00..05 as 4, 1, 0, 3, 2, 2. Two groups: share 6; through 02 the
    # group holds 5 and adding shard 03 (3) overshoots by 2 > undershoot 1, so it closes at 02
    # (an empty shard stays with the group before it).
    tickers = tickers_per_shard({"00": 4, "01": 1, "03": 3, "04": 2, "05": 2})
    assert shard_groups(tickers, ("00", "05"), 2) == [("00", "02"), ("03", "05")]
    # Three groups: share 4 → 00 (4); then share 8/2 = 4: 01-03 holds 4; the rest 04-05.
    assert shard_groups(tickers, ("00", "05"), 3) == [("00", "00"), ("01", "03"), ("04", "05")]
    # More groups than shards with tickers: one per such shard; empty shards join a neighbour.
    assert shard_groups(tickers, ("00", "05"), 9) == [("00", "00"), ("01", "01"), ("02", "03"),
                                                     ("04", "04"), ("05", "05")]
    assert shard_groups(tickers, ("00", "05"), 1) == [("00", "05")]
    assert shard_groups([], ("00", "15"), 4) == [("00", "15")]


@given(st.lists(TICKERS, min_size=1, max_size=200, unique=True), st.integers(1, 20))
def test_shard_groups_tile_the_span_and_each_holds_tickers(tickers, count):
    span = shard_span(tickers)
    groups = shard_groups(tickers, span, count)
    assert 1 <= len(groups) <= count
    assert groups[0][0] == span[0] and groups[-1][1] == span[1]
    for (_, end), (start, _) in itertools.pairwise(groups):
        assert SHARD_KEYS.index(start) == SHARD_KEYS.index(end) + 1
    held = [len(in_shards(tickers, SHARD_KEYS[SHARD_KEYS.index(a):SHARD_KEYS.index(b) + 1]))
            for a, b in groups]
    assert sum(held) == len(tickers) and min(held) >= 1
