"""Whole-lake sanity summaries of the derived layers (old ``*-sanity`` commands)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.layers import sanity
from mf_pipeline.lib.settings import Settings


def layer_sanity(settings: Settings, layer: str) -> tuple[dict, Path]:
    """Summarise ``layer`` over every ticker in the lake and write its JSON artifact."""
    spec = registry.spec(layer)
    if spec.sanity is None:
        raise ValueError(f"layer {layer!r} has no whole-lake sanity summary")
    folder, name = spec.sanity
    summarise = getattr(sanity, f"{layer}_sanity")
    # The features summary reports tmf_21, which lives in the indicators layer.
    layers = ("features", "indicators") if layer == "features" else (layer,)
    panel = lake.read_panel(settings, layers)
    summary = summarise(panel, dt.datetime.now(dt.UTC))
    summary["file_count"] = len(lake.symbol_tickers(spec.root(settings)))
    path = lake.write_json(summary, settings.artifacts_root / folder / name)
    return summary, path
