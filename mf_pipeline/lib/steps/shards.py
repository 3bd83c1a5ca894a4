"""What each ticker shard holds in a layer, and which tickers a run may be asked for. Dagster-free.

The per-ticker assets report figures per shard (``lib/partitions.py``), and those figures are
the lake's state after the run, not only what the run wrote: a shard a partial run did not touch
still shows its true size, and an empty shard says it is empty. One folder walk (names only)
finds each shard's tickers and files; one Parquet scan per shard of the ``trade_date`` column
gives its rows and date range (Parquet answers the count from its footers).

A ticker list given to a run (the CLI's planned list, or the launchpad's ``ticker_work``
config) is checked here against the tickers the lake knows, so a typo fails the run with the
close matches instead of silently doing nothing.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import string
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.partitions import OTHER_SHARD, SHARD_KEYS, shard_of
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.bronze_step import paths


def shard_expr(ticker: pl.Expr) -> pl.Expr:
    """:func:`partitions.shard_of` as a Polars expression (vectorised)."""
    first = ticker.str.slice(0, 1).str.to_uppercase()
    return (pl.when(first.is_in(list(string.ascii_uppercase))).then(first)
            .otherwise(pl.lit(OTHER_SHARD)))


@dataclass(frozen=True)
class ShardState:
    """One shard of a layer as stored: its tickers, rows and trade-date range."""

    tickers: tuple[str, ...] = ()
    rows: int = 0
    min_date: dt.date | None = None
    max_date: dt.date | None = None
    unreadable: tuple[str, ...] = ()
    """Files that could not be read (their rows are not counted)."""


@dataclass
class LakeFiles:
    """The files of a layer's tickers in some shards (one folder walk, no file opened)."""

    by_shard: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """``{shard: {ticker: [data files]}}``, only shards that hold a ticker."""

    def count(self) -> int:
        return sum(len(tickers) for tickers in self.by_shard.values())

    def any_file(self) -> Path | None:
        for tickers in self.by_shard.values():
            for files in tickers.values():
                return Path(files[-1])
        return None


def lake_files(settings: Settings, layer: str, shards: Iterable[str]) -> LakeFiles:
    """Every data file of ``layer`` whose ticker lies in ``shards``, grouped by shard."""
    wanted = set(shards)
    found = LakeFiles()
    for folder in lake.ticker_folders(lake.LAYERS[layer].root(settings), wanted):
        with os.scandir(folder.path) as entries:
            files = sorted(e.path for e in entries
                           if e.name.startswith("part-") and e.name.endswith(".parquet"))
        if files:
            ticker = folder.name.removeprefix("ticker=")
            found.by_shard.setdefault(shard_of(ticker), {})[ticker] = files
    return found


def shard_states(files: LakeFiles, shards: Sequence[str]) -> dict[str, ShardState]:
    """``{shard: ShardState}`` for every shard of ``shards`` (empty ones included), from one
    scan of ``trade_date`` per shard (one after the other: each reads its files in parallel,
    and all at once would open thousands of files together)."""
    states = {shard: ShardState() for shard in shards}
    for shard in shards:
        held = files.by_shard.get(shard)
        if held:
            paths = [path for ticker_paths in held.values() for path in ticker_paths]
            states[shard] = ShardState(tuple(sorted(held)), *_figures(paths))
    return states


def _scan(paths: Sequence[str]) -> tuple[int, dt.date | None, dt.date | None]:
    rows, low, high = (pl.scan_parquet(list(paths))
                       .select(pl.len(), pl.col("trade_date").min(),
                               pl.col("trade_date").max().alias("high"))
                       .collect().row(0))
    return int(rows), low, high


def _figures(paths: Sequence[str]
             ) -> tuple[int, dt.date | None, dt.date | None, tuple[str, ...]]:
    """Rows and date range of ``paths``, and the files that could not be read: a damaged
    file is named (``mf doctor`` repairs it), it does not fail the run that reports it."""
    try:
        return (*_scan(paths), ())
    except Exception:  # noqa: BLE001 - find the damaged files, file by file
        rows, dates, damaged = 0, [], []
        for path in paths:
            try:
                count, low, high = _scan([path])
            except Exception:  # noqa: BLE001 - any unreadable file is reported, not raised
                damaged.append(path)
                continue
            rows += count
            dates += [d for d in (low, high) if d is not None]
        return rows, min(dates, default=None), max(dates, default=None), tuple(damaged)


def shard_sums(frame: pl.DataFrame, columns: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{shard: {column: sum}}`` of a frame with a ``ticker`` column (e.g. ledger rows)."""
    if frame.is_empty():
        return {}
    sums = (frame.filter(pl.col("ticker").is_not_null())
            .group_by(shard=shard_expr(pl.col("ticker")))
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
            known.update(folder.name.removeprefix("ticker=")
                         for folder in lake.ticker_folders(lake.LAYERS[layer].root(settings)))
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
            f"shard of each ticker (the first letter of the ticker, 0 for digits and ^).")
    return tickers
