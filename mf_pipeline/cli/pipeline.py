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


def tickers_needing_work(
    settings: Settings,
    classified: pl.DataFrame,
    layers: Sequence[str],
    full: bool = False,
    only_status: Sequence[str] | None = None,
) -> list[str]:
    """Changed tickers, plus tickers with Bronze but a missing output in a later layer."""
    chosen = set(mf.tickers_to_process(classified, full=full, only_status=only_status))
    if full or only_status:
        return sorted(chosen)
    with_bronze = {p.parent.name.removeprefix("ticker=")
                   for p in lake.symbol_files(lake.LAYERS["bronze"].root(settings))}
    for layer in layers:
        if layer == "bronze":
            continue
        have = {p.parent.name.removeprefix("ticker=")
                for p in lake.symbol_files(lake.LAYERS[layer].root(settings))}
        chosen |= with_bronze - have
    return sorted(chosen)
