"""Which assets a CLI command materializes, and for which tickers.

Dagster, Polars and the steps are imported where used, so that parsing a command does not
load them (see ``app``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mf_pipeline.lib.partitions import SHARD_KEYS

if TYPE_CHECKING:
    import dagster as dg
    import polars as pl

    from mf_pipeline.lib.settings import Settings

PER_TICKER_LAYERS = ("bronze", "silver", "indicators", "events", "features")
UNTIL_CHOICES = (*PER_TICKER_LAYERS, "ml_dataset")


@dataclass(frozen=True)
class Selection:
    head: tuple[str, ...]
    per_ticker: tuple[str, ...]
    tail: tuple[str, ...]


def _asset_names(defs: dg.Definitions) -> tuple[list[str], list[str]]:
    """(shard-partitioned per-ticker, unpartitioned) asset names defined in the code location."""
    import dagster as dg

    partitioned, plain = [], []
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        pdef = spec.partitions_def
        if isinstance(pdef, dg.StaticPartitionsDefinition) and \
                pdef.get_partition_keys() == list(SHARD_KEYS):
            partitioned.append(name)
        elif pdef is None:
            plain.append(name)
    return partitioned, plain


def split_assets(defs: dg.Definitions) -> tuple[str, ...]:
    """Research assets partitioned by split (static keys including ``full``)."""
    import dagster as dg

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


def tickers_needing_work(
    settings: Settings,
    classified: pl.DataFrame,
    layers: Sequence[str],
    full: bool = False,
    only_status: Sequence[str] | None = None,
) -> list[str]:
    """Tickers with changed raw files, plus tickers whose derived layers are stale."""
    from mf_pipeline.lib.layers import manifest as mf
    from mf_pipeline.lib.steps import calc_settings
    from mf_pipeline.lib.steps.derived_step import DERIVED_LAYERS, stale_tickers

    if "bronze" in layers and not only_status:
        full = full or calc_settings.changes(settings, "bronze") is not None
    chosen = set(mf.tickers_to_process(classified, full=full, only_status=only_status))
    if full or only_status:
        return sorted(chosen)
    chosen.update(stale_tickers(settings, [layer for layer in layers if layer in DERIVED_LAYERS]))
    return sorted(chosen)


def export_is_current(settings: Settings) -> bool:
    """True when the newest ML dataset export is younger than every feature file."""
    from mf_pipeline.lib.steps.dataset_step import latest_export
    from mf_pipeline.lib.steps.derived_step import file_mtimes

    latest = latest_export(settings)
    features = file_mtimes(settings, "features")
    if latest is None or not latest.exists() or not features:
        return False
    return latest.stat().st_mtime > max(features.values())
