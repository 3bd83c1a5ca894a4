"""Is a split-partitioned research asset up to date? Answered from Dagster's own records.

The per-ticker layers decide staleness from the lake (file listings, settings records). The
research models are whole-dataset fits of a few seconds to minutes, recorded by Dagster: one
is current for a split when its last materialization is newer than each parent's (the ML
dataset export for a model, the model for its labels), it ran with default options, and the
research settings it recorded are today's. ``mf demo`` uses this to skip refitting on a rerun.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dagster as dg

    from mf_pipeline.lib.settings import Settings

RESEARCH_SETTINGS = ("research_clustering", "research_hmm", "validation", "cluster_qa",
                     "cluster_hardening", "validation_walkforward")
"""The settings groups a research fit reads (besides its run config)."""
SETTINGS_DIGEST = "settings_digest"
OPTIONS = "options"
"""Metadata keys of a model materialization: the digest of ``RESEARCH_SETTINGS`` and the run
config options given (empty: the defaults)."""


def research_settings_digest(settings: Settings) -> str:
    groups = {name: getattr(settings, name).model_dump(mode="json") for name in RESEARCH_SETTINGS}
    return hashlib.sha256(json.dumps(groups, sort_keys=True).encode()).hexdigest()[:16]


def latest_materialization(instance: dg.DagsterInstance, key: dg.AssetKey,
                           partition: str | None) -> Any:
    """The newest materialization record of ``key`` (``partition``), by Dagster's records."""
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
        limit=1, ascending=False).records
    return records[0] if records else None


def _is_current(record: Any, parents: list[Any], digest: str) -> bool:
    if record is None or any(p is None or p.timestamp >= record.timestamp for p in parents):
        return False
    metadata = record.asset_materialization.metadata
    options = metadata.get(OPTIONS)
    if options is not None and options.value:
        return False
    recorded = metadata.get(SETTINGS_DIGEST)
    return recorded is None or recorded.value == digest


def stale_split_assets(instance: dg.DagsterInstance, defs: dg.Definitions, settings: Settings,
                       assets: Sequence[str], partition: str) -> list[str]:
    """The ``assets`` (split-partitioned) not current for ``partition``, plus everything
    downstream of them among ``assets``; in the given order."""
    import dagster as dg

    graph = defs.resolve_asset_graph()
    digest = research_settings_digest(settings)
    parents = {name: list(graph.get(dg.AssetKey(name)).parent_keys) for name in assets}
    stale = {name for name in assets if not _is_current(
        latest_materialization(instance, dg.AssetKey(name), partition),
        [latest_materialization(instance, parent,
                                partition if graph.get(parent).is_partitioned else None)
         for parent in parents[name]],
        digest)}
    grew = True
    while grew:  # downstream of a stale asset is stale
        more = {name for name in assets
                if any(parent.to_user_string() in stale for parent in parents[name])}
        grew = not more <= stale
        stale |= more
    return [name for name in assets if name in stale]
