"""Where the viewer's OPTIONAL layers live: the one place to point at new asset outputs.

The HMM states and cluster labels are written by the research assets (``hmm_states``,
``cluster_labels``) to the folders :mod:`mf_pipeline.lib.registry` names
(``STATE_BANDS`` / ``state_band_root``): the viewer reads them from there and nowhere else,
so the producer and the viewer cannot disagree on a folder name. The later layers (HMM
per-state statistics, policy classes, execution realism, candidate signals) have no producing
asset yet; their default folders below are placeholders until those assets land (a settings
entry can point at any file meanwhile).
"""

from __future__ import annotations

from pathlib import Path

from mf_pipeline.lib import registry as lake_registry
from mf_pipeline.lib.settings import Settings

# name -> dataset folder under the Gold root of the layers NO asset writes yet (placeholders).
UNPRODUCED_GOLD_DATASETS: dict[str, str] = {
    "hmm_state_stats": "hmm_state_stats",
    "policy": "overlay_policy_by_symbol",
    "execution": "execution_realism_by_symbol",
    "signals": "candidate_signals_by_symbol",
}
OPTIONAL_SOURCES: tuple[str, ...] = (*lake_registry.STATE_BANDS, *UNPRODUCED_GOLD_DATASETS)


def default_path(settings: Settings, name: str) -> Path:
    """Where ``name`` is written by default: the registry's folder for the state bands."""
    if name in lake_registry.STATE_BANDS:
        return lake_registry.state_band_root(settings, name)
    return settings.gold_root / UNPRODUCED_GOLD_DATASETS[name]


def optional_layer_paths(settings: Settings) -> dict[str, Path]:
    """``{layer name: the file or folder the viewer reads it from}`` for every optional layer,
    whether or not it exists (the page names the path when it does not).

    Precedence: ``overlay_viewer.optional_layers.<name>`` in the settings (relative paths
    resolve against the project root), then :func:`default_path`.
    A path may be a lake table (``lib/lake_table.py``, e.g. the research state bands) or a
    single long Parquet file holding ``ticker``.
    """
    configured = (settings.overlay_viewer or {}).get("optional_layers") or {}
    out: dict[str, Path] = {}
    for name in OPTIONAL_SOURCES:
        raw = configured.get(name)
        if raw:
            path = Path(raw).expanduser()
            out[name] = path if path.is_absolute() else settings.project_root / path
        else:
            out[name] = default_path(settings, name)
    return out
