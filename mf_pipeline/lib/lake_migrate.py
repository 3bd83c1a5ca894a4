"""Convert a v1 lake (one folder per ticker, ``exchange=/prefix=/ticker=/part-*.parquet``) to lake
v2 tables (``lib/lake_table.py``), in place, once (``mf doctor --repair``).

Each v1 layer is read a batch of tickers at a time, in shard order, and committed to a new table
beside it (``<layer>.v2-migrating``); the folders are then swapped (the old one renamed to
``<layer>.v1-old`` and deleted). A conversion killed before the swap leaves the v1 layer as it was
(the half-built table is started over); one killed between the two renames is finished by the
next call. The rows are the same, but the carries recorded v1 folder listings, so the next
``mf run`` rebuilds the derived layers of every ticker in full, once (Bronze is kept).
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import polars as pl

from mf_pipeline.lib import lake, lake_table, registry
from mf_pipeline.lib.partitions import shard_of
from mf_pipeline.lib.settings import Settings

BATCH_TICKERS = 500
MIGRATING = ".v2-migrating"
OLD = ".v1-old"


def table_roots(settings: Settings) -> list[Path]:
    """Every per-ticker table of the lake: the layers and the research state bands."""
    return [*(registry.LAYERS[name].root(settings) for name in registry.PER_TICKER),
            *(registry.state_band_root(settings, source) for source in registry.STATE_BANDS)]


def pending(settings: Settings) -> list[Path]:
    """Tables still in the v1 layout (or left between the two renames of a swap)."""
    return [root for root in table_roots(settings)
            if lake_table.is_v1(root) or _sibling(root, MIGRATING).is_dir()]


def _sibling(root: Path, suffix: str) -> Path:
    return root.with_name(root.name + suffix)


def migrate(root: Path, settings: Settings, log: Callable[[str], None] = print) -> int:
    """Convert one v1 table; returns how many tickers it holds."""
    staged, old = _sibling(root, MIGRATING), _sibling(root, OLD)
    if not root.exists() and lake_table.is_table(staged):  # killed between the two renames
        staged.rename(root)
        shutil.rmtree(old, ignore_errors=True)
        return len(lake.symbol_tickers(root))
    shutil.rmtree(staged, ignore_errors=True)
    by_ticker: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(root.glob("exchange=*/prefix=*/ticker=*/part-*.parquet")):
        by_ticker[path.parent.name.removeprefix("ticker=")].append(path)
    tickers = sorted(by_ticker, key=lambda t: (shard_of(t), t))
    for start in range(0, len(tickers), BATCH_TICKERS):
        batch = tickers[start:start + BATCH_TICKERS]
        files = [path for ticker in batch for path in by_ticker[ticker]]
        frame = pl.scan_parquet(files, hive_partitioning=False, missing_columns="insert").collect()
        lake.write_symbol_files(frame.sort("ticker", "trade_date"), staged, settings.parquet)
    staged.mkdir(parents=True, exist_ok=True)
    root.rename(old)
    staged.rename(root)
    shutil.rmtree(old)
    log(f"{root}: {len(tickers)} tickers converted to lake v2")
    return len(tickers)
