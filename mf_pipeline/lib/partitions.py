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


def shard_groups(tickers: Iterable[str], span: tuple[str, str], count: int
                 ) -> list[tuple[str, str]]:
    """``span`` tiled by at most ``count`` contiguous shard ranges holding about equal numbers
    of ``tickers`` (each range one run when shards run in parallel on several workers).

    A range closes at the shard boundary nearest its share of the tickers still to place, and
    only once it holds some, so every range holds tickers (a run with nothing to do still
    costs its bookkeeping); together the ranges cover every shard of ``span``, empty ones
    included (a whole-universe run materializes them).
    """
    first, last = SHARD_KEYS.index(span[0]), SHARD_KEYS.index(span[1])
    keys = SHARD_KEYS[first:last + 1]
    per_shard = dict.fromkeys(keys, 0)
    for ticker in tickers:
        if (shard := shard_of(ticker)) in per_shard:
            per_shard[shard] += 1
    left, groups_left = sum(per_shard.values()), max(1, count)
    groups: list[tuple[str, str]] = []
    start, held = 0, 0
    for index, key in enumerate(keys):
        held += per_shard[key]
        share = left / groups_left
        following = per_shard[keys[index + 1]] if index + 1 < len(keys) else 0
        overshoot = held + following - share
        if groups_left > 1 and held and (held >= share or overshoot > share - held):
            groups.append((keys[start], key))
            left, held, start, groups_left = left - held, 0, index + 1, groups_left - 1
    if start < len(keys):
        if held or not groups:
            groups.append((keys[start], keys[-1]))
        else:  # only empty shards after the last range: they join it
            groups[-1] = (groups[-1][0], keys[-1])
    return groups
