"""Which assets a CLI command materializes, and for which tickers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
import polars as pl

from mf_pipeline.defs.partitions import TICKERS
from mf_pipeline.lib import lake
from mf_pipeline.lib.layers import manifest as mf
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.derived_step import UPSTREAM

PER_TICKER_LAYERS = ("bronze", "silver", "indicators", "events", "features")
UNTIL_CHOICES = (*PER_TICKER_LAYERS, "ml_dataset")


@dataclass(frozen=True)
class Selection:
    head: tuple[str, ...]
    per_ticker: tuple[str, ...]
    tail: tuple[str, ...]


def _asset_names(defs: dg.Definitions) -> tuple[list[str], list[str]]:
    """(ticker-partitioned, unpartitioned) asset names defined in the code location."""
    partitioned, plain = [], []
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        pdef = spec.partitions_def
        if isinstance(pdef, dg.DynamicPartitionsDefinition) and pdef.name == TICKERS:
            partitioned.append(name)
        elif pdef is None:
            plain.append(name)
    return partitioned, plain


def split_assets(defs: dg.Definitions) -> tuple[str, ...]:
    """Research assets partitioned by split (static keys including ``full``)."""
    names = []
    for spec in defs.resolve_all_asset_specs():
        pdef = spec.partitions_def
        if isinstance(pdef, dg.StaticPartitionsDefinition) and "full" in pdef.get_partition_keys():
            names.append(spec.key.to_user_string())
    return tuple(names)


def until(defs: dg.Definitions, layer: str) -> Selection:
    """manifest → per-ticker layers up to ``layer`` (→ ml_dataset), those that exist."""
    partitioned, plain = _asset_names(defs)
    if layer not in UNTIL_CHOICES:
        raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(UNTIL_CHOICES)}")
    stop = PER_TICKER_LAYERS.index(layer) + 1 if layer in PER_TICKER_LAYERS else None
    wanted = PER_TICKER_LAYERS[:stop]
    per_ticker = tuple(name for name in wanted if name in partitioned)
    tail = ("ml_dataset",) if layer == "ml_dataset" and "ml_dataset" in plain else ()
    return Selection(("manifest",), per_ticker, tail)


def everything(defs: dg.Definitions) -> Selection:
    partitioned, plain = _asset_names(defs)
    return Selection(("manifest",), tuple(partitioned),
                     tuple(name for name in plain if name != "manifest"))


def _mtimes(settings: Settings, layer: str) -> dict[str, float]:
    files = lake.symbol_files(lake.LAYERS[layer].root(settings))
    return {path.parent.name.removeprefix("ticker="): path.stat().st_mtime for path in files}


def stale_tickers(settings: Settings, layer: str) -> set[str]:
    """Tickers whose ``layer`` file is missing or older than any of its input files."""
    inputs = ("indicators", "events") if layer == "features" else (UPSTREAM[layer],)
    own = _mtimes(settings, layer)
    stale: set[str] = set()
    for upstream in inputs:
        for ticker, mtime in _mtimes(settings, upstream).items():
            if own.get(ticker, -1.0) < mtime:
                stale.add(ticker)
    return stale


def tickers_needing_work(
    settings: Settings,
    classified: pl.DataFrame,
    layers: Sequence[str],
    full: bool = False,
    only_status: Sequence[str] | None = None,
) -> list[str]:
    """Tickers with changed raw files, plus tickers whose derived layers are stale."""
    chosen = set(mf.tickers_to_process(classified, full=full, only_status=only_status))
    if full or only_status:
        return sorted(chosen)
    for layer in layers:
        if layer in UPSTREAM:
            chosen |= stale_tickers(settings, layer)
    return sorted(chosen)


def export_is_current(settings: Settings) -> bool:
    """True when the newest ML dataset export is younger than every feature file."""
    from mf_pipeline.lib.steps.dataset_step import latest_export

    latest = latest_export(settings)
    features = _mtimes(settings, "features")
    if latest is None or not latest.exists() or not features:
        return False
    return latest.stat().st_mtime > max(features.values())
