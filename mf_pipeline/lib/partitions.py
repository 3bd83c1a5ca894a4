"""Ticker shards: the Dagster partitions of the per-ticker layers and the lake's file groups
(pure; no Dagster import).

Dagster records every (asset, partition) materialization at a few milliseconds and kilobytes
of SQLite, which at 8,000 tickers x 5 layers costs more than all of our computing
(docs/BENCHMARKS.md); one Parquet file per ticker costs more than that again. So tickers are
grouped in a fixed number of *shards* whatever the universe size: each shard is one Dagster
partition and a few large files per layer in the lake (``lib/lake_table.py``). A ticker's shard
is a stable hash of its name (CRC-32 modulo ``SHARD_COUNT``): shards come out the same size
within a few percent, where first letters differ by an order of magnitude ("S" holds ~10x
"X" in the US universe), which matters once shards run in parallel on several workers.
Inside a shard, work stays per ticker and incremental.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from functools import lru_cache

SHARD_COUNT = 16
SHARD_KEYS: tuple[str, ...] = tuple(f"{n:02d}" for n in range(SHARD_COUNT))


@lru_cache(maxsize=65536)
def shard_of(ticker: str) -> str:
    """The shard key of a ticker: ``"00"`` … ``"15"`` (CRC-32 of its UTF-8 name)."""
    return SHARD_KEYS[zlib.crc32(ticker.encode("utf-8")) % SHARD_COUNT]


def in_shards(tickers: Iterable[str], shards: Iterable[str]) -> list[str]:
    """The tickers that belong to ``shards``, sorted."""
    wanted = set(shards)
    return sorted({t for t in tickers if shard_of(t) in wanted})


def shard_span(tickers: Iterable[str]) -> tuple[str, str] | None:
    """The smallest contiguous range of shard keys covering ``tickers``; None when empty.

    One Dagster run covers one contiguous range; shards in the middle with nothing to do cost a
    few milliseconds of bookkeeping and no work, which is cheaper than a second run.
    """
    positions = sorted({SHARD_KEYS.index(shard_of(t)) for t in tickers})
    if not positions:
        return None
    return SHARD_KEYS[positions[0]], SHARD_KEYS[positions[-1]]
