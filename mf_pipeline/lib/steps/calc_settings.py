"""The settings each per-ticker layer's numbers depend on, recorded next to the layer.

A layer's files are right only for the settings that computed them. Incremental runs rebuild
tickers whose inputs changed and extend others from their stored state (the append path), so
without a record a settings change (``indicators.tmf_period``, an event threshold, a storage
precision, a validation threshold) would leave old numbers in place, or continue them with the
new settings: a lake that silently mixes two definitions.

Each step therefore writes ``<tier>/_calc/<layer>.json`` after a run: the fingerprint of the
layer's own settings when every ticker of the layer was built with them, or ``mixed`` when only
some were. A run whose settings differ from the record rebuilds every ticker of that layer in
full (never the append path); layers downstream follow because their inputs are newer. A lake
without a record (built before records existed) is trusted until a run covers all its tickers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.settings import Settings

MIXED = "mixed"
UNREADABLE: dict[str, Any] = {"fingerprint": "unreadable"}
log = logging.getLogger(__name__)


def fingerprint(settings: Settings, layer: str) -> str:
    text = json.dumps(registry.layer_settings(settings, layer), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_path(settings: Settings, layer: str) -> Path:
    return lake.LAYERS[layer].root(settings).parent / "_calc" / f"{layer}.json"


def stored(settings: Settings, layer: str) -> dict[str, Any] | None:
    """The layer's record; ``UNREADABLE`` when the file exists but is not a valid record
    (derived state: the layer is then rebuilt in full and the record written anew)."""
    path = record_path(settings, layer)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("fingerprint"), str):
            raise ValueError("no fingerprint")
    except (OSError, ValueError, UnicodeDecodeError) as error:
        log.warning("settings record %s is unreadable (%s); %s is rebuilt in full", path,
                    error, layer)
        return UNREADABLE
    return record


def changes(settings: Settings, layer: str) -> list[str] | None:
    """What differs from the settings the layer's files were built with: ``None`` when nothing
    does (or nothing was recorded), else one ``key: old → new`` line per key (or a line saying
    the files were built with several settings)."""
    record = stored(settings, layer)
    if record is None or record["fingerprint"] == fingerprint(settings, layer):
        return None
    if record is UNREADABLE:
        return [f"the settings record {record_path(settings, layer)} is unreadable"]
    if record["fingerprint"] == MIXED:
        return ["some tickers were last built with other settings than the rest"]
    old, new = record.get("settings") or {}, registry.layer_settings(settings, layer)
    return [f"{key}: {old.get(key)!r} → {new.get(key)!r}"
            for key in sorted({*old, *new}) if old.get(key) != new.get(key)]


def changed_layers(settings: Settings, layers: Iterable[str]) -> dict[str, list[str]]:
    """``{layer: changes}`` for the layers of ``layers`` whose settings changed."""
    found = {layer: changes(settings, layer) for layer in layers}
    return {layer: lines for layer, lines in found.items() if lines is not None}


def record(settings: Settings, layer: str, built: Sequence[str]) -> None:
    """Record the settings ``layer`` was just built with for the tickers ``built``.

    The record names the current settings when every ticker the layer has was built in this
    run (or the record already names them), ``mixed`` when only some were; a missing record
    stays missing after a partial run (the other tickers' settings are unknown).
    """
    current = fingerprint(settings, layer)
    before = stored(settings, layer)
    if not built or (before is not None and before["fingerprint"] == current):
        return
    covered = set(lake.symbol_tickers(lake.LAYERS[layer].root(settings))) <= set(built)
    if covered:
        payload = {"layer": layer, "fingerprint": current,
                   "settings": registry.layer_settings(settings, layer)}
    elif before is not None:
        payload = {"layer": layer, "fingerprint": MIXED, "settings": None}
    else:
        return
    lake.write_json(payload, record_path(settings, layer))
