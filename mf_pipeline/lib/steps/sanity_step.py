"""Whole-lake sanity summaries of the derived layers (old ``*-sanity`` commands)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from mf_pipeline.lib import lake
from mf_pipeline.lib.layers import sanity
from mf_pipeline.lib.settings import Settings

SUMMARIES = {
    "silver": (sanity.silver_sanity, "silver_qa", "silver_sanity_summary.json"),
    "indicators": (sanity.indicators_sanity, "indicator_qa", "indicator_sanity_summary.json"),
    "events": (sanity.events_sanity, "gold_event_qa", "events_sanity_summary.json"),
    "features": (sanity.features_sanity, "gold_feature_qa", "features_sanity_summary.json"),
}


def layer_sanity(settings: Settings, layer: str) -> tuple[dict, Path]:
    """Summarise ``layer`` over every ticker in the lake and write its JSON artifact."""
    summarise, folder, name = SUMMARIES[layer]
    # The features summary reports tmf_21, which lives in the indicators layer.
    layers = ("features", "indicators") if layer == "features" else (layer,)
    panel = lake.read_panel(settings, layers)
    summary = summarise(panel, dt.datetime.now(dt.UTC))
    summary["file_count"] = len(lake.symbol_tickers(lake.LAYERS[layer].root(settings)))
    path = lake.write_json(summary, settings.artifacts_root / folder / name)
    return summary, path
