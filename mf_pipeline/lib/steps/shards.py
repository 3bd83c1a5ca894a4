"""What each ticker shard holds in a layer, and which tickers a run may be asked for. Dagster-free.

The per-ticker assets report figures per shard (``lib/partitions.py``), and those figures are
the lake's state after the run, not only what the run wrote: a shard a partial run did not touch
still shows its true size, and an empty shard says it is empty. They come from the layer's
snapshot index (rows and date range per ticker), so no data file is opened for them.

A ticker list given to a run (the CLI's planned list, or the launchpad's ``ticker_work``
config) is checked here against the tickers the lake knows, so a typo fails the run with the
close matches instead of silently doing nothing.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from mf_pipeline.lib import lake, lake_table, registry
from mf_pipeline.lib.partitions import SHARD_KEYS, shard_of
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.bronze_step import paths


@dataclass(frozen=True)
class ShardState:
    """One shard of a layer as stored: its tickers, rows and trade-date range."""

    tickers: tuple[str, ...] = ()
    rows: int = 0
    min_date: dt.date | None = None
    max_date: dt.date | None = None


def layer_snapshot(settings: Settings, layer: str, shards: Iterable[str]
                   ) -> lake_table.Snapshot:
    """The layer's current snapshot, restricted to ``shards``."""
    return lake.snapshot(lake.LAYERS[layer].root(settings)).in_shards(set(shards))


def shard_states(snapshot: lake_table.Snapshot, shards: Iterable[str]) -> dict[str, ShardState]:
    """``{shard: ShardState}`` for every shard in ``shards`` (empty ones included)."""
    per_shard = snapshot.per_ticker().group_by("shard").agg(
        pl.col("ticker").sort(), pl.col("rows").sum(), pl.col("low").min(),
        pl.col("high").max())
    states = {shard: ShardState() for shard in SHARD_KEYS if shard in set(shards)}
    for row in per_shard.iter_rows(named=True):
        if row["shard"] in states:
            states[row["shard"]] = ShardState(tuple(row["ticker"]), int(row["rows"]),
                                              row["low"], row["high"])
    return states


def shard_sums(frame: pl.DataFrame, columns: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{shard: {column: sum}}`` of a frame with a ``ticker`` column (e.g. ledger rows)."""
    if frame.is_empty():
        return {}
    sums = (frame.filter(pl.col("ticker").is_not_null())
            .group_by(shard=lake_table.shard_expr(pl.col("ticker")))
            .agg(pl.col(c).sum() for c in columns))
    return {row.pop("shard"): {k: int(v) for k, v in row.items()} for row in sums.to_dicts()}


def by_shard(tickers: Iterable[str]) -> dict[str, list[str]]:
    """``{shard: sorted tickers}`` of ``tickers``."""
    out: dict[str, list[str]] = defaultdict(list)
    for ticker in sorted(set(tickers)):
        out[shard_of(ticker)].append(ticker)
    return dict(out)


# ------------------------------------------------------------------- requested ticker lists


class TickerListError(ValueError):
    """A ticker list a run cannot honour: unknown tickers, or tickers outside its shards."""


def known_tickers(settings: Settings, candidates: Iterable[str] = ()) -> set[str]:
    """Tickers the lake knows: named by a file of the current manifest (deleted ones too) or
    holding files in a per-ticker layer. The layers are walked only when ``candidates`` holds
    a ticker the manifest does not name (a cheap answer for the common case)."""
    current = paths(settings).current_manifest
    known: set[str] = set()
    if current.exists():
        known = set(pl.read_parquet(current, columns=["ticker"])["ticker"].drop_nulls())
    if set(candidates) - known:
        for layer in registry.PER_TICKER:
            known.update(lake.symbol_tickers(lake.LAYERS[layer].root(settings)))
    return known


def checked_tickers(settings: Settings, requested: Iterable[str], shards: Sequence[str]
                    ) -> list[str]:
    """``requested`` (trimmed, upper-cased, sorted) when every ticker is known to the lake and
    lies in one of ``shards``; otherwise a :class:`TickerListError` naming the unknown tickers
    with their close matches, or the shard each outside ticker belongs to."""
    tickers = sorted({t.strip().upper() for t in requested if t.strip()})
    known = known_tickers(settings, tickers)
    unknown = [t for t in tickers if t not in known]
    if unknown:
        ranked = sorted(known)
        hints = []
        for ticker in unknown[:10]:
            close = difflib.get_close_matches(ticker, ranked, n=3, cutoff=0.6)
            hints.append(f"{ticker} (did you mean {', '.join(close)}?)" if close else ticker)
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise TickerListError(
            f"unknown ticker(s): {'; '.join(hints)}{more}. Tickers are the raw file names "
            f"upper-cased without .txt (e.g. AAPL.US); the symbol master lists them all.")
    outside = [t for t in tickers if shard_of(t) not in set(shards)]
    if outside:
        where = "; ".join(f"{t} is in shard {shard_of(t)}" for t in outside[:10])
        ran = ", ".join(s for s in SHARD_KEYS if s in set(shards))
        raise TickerListError(
            f"ticker(s) outside this run's shards ({ran}): {where}. Launch the run on the "
            f"shard of each ticker (a fixed hash of its name, `mf partitions bronze`).")
    return tickers
