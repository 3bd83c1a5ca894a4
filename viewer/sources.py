"""Where the viewer's OPTIONAL layers live: the one place to point at new asset outputs.

The research and backtest layers (HMM states, cluster labels, policy classes, execution
realism, candidate signals) arrive after the viewer. Each is looked up here and nowhere else,
so wiring a new asset output is a one-line change (or a settings entry, no code at all).
"""

from __future__ import annotations

from pathlib import Path

from mf_pipeline.lib.settings import Settings

# name -> dataset folder under the Gold root (per-ticker hive files, as the lake's layers).
# A guess at the future asset outputs; the lead re-points these when the assets land.
DEFAULT_GOLD_DATASETS: dict[str, str] = {
    "hmm": "hmm_states_by_symbol",
    "hmm_state_stats": "hmm_state_stats",
    "cluster": "cluster_labels_by_symbol",
    "policy": "overlay_policy_by_symbol",
    "execution": "execution_realism_by_symbol",
    "signals": "candidate_signals_by_symbol",
}


def optional_layer_paths(settings: Settings) -> dict[str, Path | None]:
    """``{layer name: existing file or folder, or None}`` for every optional layer.

    Precedence: ``overlay_viewer.optional_layers.<name>`` in the settings (relative paths
    resolve against the project root), then ``<gold_root>/<DEFAULT_GOLD_DATASETS[name]>``.
    A path may be a per-ticker hive folder (``exchange=*/prefix=*/ticker=*/part-000.parquet``),
    a folder of Parquet files or a single long Parquet file holding ``ticker``.
    """
    configured = (settings.overlay_viewer or {}).get("optional_layers") or {}
    out: dict[str, Path | None] = {}
    for name, dataset in DEFAULT_GOLD_DATASETS.items():
        raw = configured.get(name)
        if raw:
            path = Path(raw).expanduser()
            path = path if path.is_absolute() else settings.project_root / path
        else:
            path = settings.gold_root / dataset
        out[name] = path if path.exists() else None
    return out
