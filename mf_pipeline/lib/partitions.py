"""Ticker shards: the Dagster partitions of the per-ticker layers (pure; no Dagster import).

Dagster records every (asset, partition) materialization at a few milliseconds and kilobytes
of SQLite, which at 8,000 tickers x 5 layers costs more than all of our computing
(docs/BENCHMARKS.md). So the per-ticker layers are partitioned by *shard*, the first character
of the ticker (the lake's own ``prefix=`` folder): 27 keys whatever the universe size. Inside a
shard, work stays per ticker and incremental: only tickers whose raw files or inputs changed
are recomputed, and every ticker keeps its own files in the lake.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

OTHER_SHARD = "0"
"""Tickers that do not start with a letter (digits, ``^`` indices)."""
SHARD_KEYS: tuple[str, ...] = (*string.ascii_uppercase, OTHER_SHARD)


def shard_of(ticker: str) -> str:
    """The shard key of a ticker: its first letter, or ``0`` for anything else."""
    first = ticker[:1].upper()
    return first if len(first) == 1 and first in string.ascii_uppercase else OTHER_SHARD


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
