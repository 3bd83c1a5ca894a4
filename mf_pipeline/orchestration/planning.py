"""Which assets a CLI command materializes, and for which tickers.

Dagster, Polars and the steps are imported where used, so that parsing a command does not
load them (see ``app``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mf_pipeline.lib import registry

if TYPE_CHECKING:
    import dagster as dg
    import polars as pl

    from mf_pipeline.lib.settings import Settings
    from mf_pipeline.orchestration.runner import RunOutcome

PER_TICKER_TAG = "mf/per_ticker"
SPLIT_TAG = "mf/per_split"
ON_DEMAND_TAG = "mf/on_demand"
"""Asset tags (set in ``defs/``) that mark the shard-partitioned per-ticker layers, the
split-partitioned research models with their labels, validations and policies, and the
assets only a command of their own runs (the walk-forward aggregate), never ``mf demo``."""


@dataclass(frozen=True)
class Selection:
    head: tuple[str, ...]
    per_ticker: tuple[str, ...]
    tail: tuple[str, ...]


def _tagged(defs: dg.Definitions, tag: str) -> list[str]:
    return [spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()
            if spec.tags.get(tag) == "true"]


def _unpartitioned(defs: dg.Definitions) -> list[str]:
    return [spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()
            if spec.partitions_def is None and spec.tags.get(ON_DEMAND_TAG) != "true"]


def per_ticker_assets(defs: dg.Definitions) -> tuple[str, ...]:
    """The per-ticker layer assets defined in the code location, in the registry's order."""
    present = set(_tagged(defs, PER_TICKER_TAG))
    return tuple(name for name in registry.PER_TICKER if name in present)


def split_assets(defs: dg.Definitions) -> tuple[str, ...]:
    """The research models, their labels, validations, QA and policies, partitioned by split
    (``mf demo`` runs them on ``full``)."""
    return tuple(_tagged(defs, SPLIT_TAG))


def until(defs: dg.Definitions, layer: str) -> Selection:
    """manifest → per-ticker layers up to ``layer`` (→ ml_dataset), those that exist."""
    wanted = registry.chain_until(layer)
    present = per_ticker_assets(defs)
    tail = (layer,) if layer not in registry.PER_TICKER and layer in _unpartitioned(defs) else ()
    return Selection(("manifest",), tuple(name for name in wanted if name in present), tail)


def everything(defs: dg.Definitions) -> Selection:
    return Selection(("manifest",), per_ticker_assets(defs),
                     tuple(name for name in _unpartitioned(defs) if name != "manifest"))


def tickers_needing_work(
    settings: Settings,
    classified: pl.DataFrame,
    layers: Sequence[str],
    full: bool = False,
    only_status: Sequence[str] | None = None,
) -> list[str]:
    """Tickers with changed raw files, plus tickers whose derived layers are stale."""
    from mf_pipeline.lib.layers import manifest as mf
    from mf_pipeline.lib.steps import bronze_step, calc_settings
    from mf_pipeline.lib.steps.derived_step import stale_tickers

    if "bronze" in layers and not only_status:
        full = full or calc_settings.changes(settings, "bronze") is not None
    chosen = set(mf.tickers_to_process(classified, full=full, only_status=only_status))
    if "bronze" in layers and not only_status:
        chosen.update(bronze_step.orphan_tickers(settings, classified))
    if full or only_status:
        return sorted(chosen)
    chosen.update(stale_tickers(settings, [layer for layer in layers if layer in registry.DERIVED]))
    return sorted(chosen)


def covers_universe(classified: pl.DataFrame, tickers: Sequence[str]) -> bool:
    """True when ``tickers`` holds every ticker the raw tree names (a first build, ``--full``,
    a settings change, a nightly append of every ticker): such a run covers every shard, so
    shards without any ticker are materialized too (as empty) and a healthy lake's graph has
    no shard left missing. Smaller runs cover only the shards that hold their tickers."""
    import polars as pl

    from mf_pipeline.lib.layers import manifest as mf

    present = classified.filter(pl.col("manifest_status") != mf.DELETED)["ticker"].drop_nulls()
    return bool(tickers) and set(present) <= set(tickers)


def export_is_current(settings: Settings) -> bool:
    """True when the newest ML dataset export is younger than the features layer's last
    commit."""
    from mf_pipeline.lib import lake, lake_table
    from mf_pipeline.lib.steps.dataset_step import latest_export

    latest = latest_export(settings)
    features = lake_table.committed_at(lake.LAYERS["features"].root(settings))
    if latest is None or not latest.exists() or features is None:
        return False
    return latest.stat().st_mtime > features


def plan_and_run(settings: Settings, selection: Selection, full: bool = False,
                 limit: int | None = None, only_status: list[str] | None = None,
                 promote: bool = True, log: Callable[[str], None] = print) -> RunOutcome:
    """Classify the raw tree, plan the tickers that need work, and materialize ``selection``
    for them in one Dagster run (``mf run``, ``mf demo``, the nightly lake update). The caller
    holds the lake lock around it, so the plan cannot go stale before the run starts."""
    from mf_pipeline.orchestration import runner
    from mf_pipeline.orchestration.accounting import part

    log(f"raw root: {settings.raw_root}")
    with part("CLI: raw tree classified (discover, fingerprint, classify)"):
        from mf_pipeline.lib.steps import bronze_step

        classified = bronze_step.classify_raw(settings, log, for_run=True)
    with part("CLI: planning (stale tickers, export current?)"):
        tickers = tickers_needing_work(settings, classified, selection.per_ticker, full,
                                       only_status)
        if limit is not None:
            tickers = tickers[:limit]
        counts = classified.group_by("manifest_status").len().sort("manifest_status").rows()
        log(f"{classified.height} files: {dict(counts)}; {len(tickers)} tickers to process")
        run_config = {"ops": {"bronze": {"config": {"promote_manifest": promote}}}} \
            if "bronze" in selection.per_ticker and tickers else None
        tail = selection.tail
        if not tickers and "ml_dataset" in tail and export_is_current(settings):
            log("ml_dataset is newer than every feature file: not exported again")
            tail = tuple(name for name in tail if name != "ml_dataset")
    return runner.run_partitioned(
        settings, selection.head, selection.per_ticker if tickers else (), tail,
        tickers, run_config=run_config, log=log,
        explicit=bool(full or limit is not None or only_status),
        all_shards=covers_universe(classified, tickers),
    )
