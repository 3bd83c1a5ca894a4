"""Combinations of a sensitivity grid and their stable ids (backtest_ops.md §5.1).

The nine dimensions are multiplied out in the order of :class:`GridDimensions` with the LAST
dimension varying fastest, optionally shuffled with Python's ``random.Random(seed).shuffle``
(the old tool's permutation for the same seed and length), then truncated to ``max_combos``.
``combo_id`` hashes the parameters that define a combo, so the same id recurs across grids
that differ only in overlay mode or execution profile, and across runs.

Difference from the old tool: our engine never holds overlapping positions, and the old
``allow_overlap = true`` only hid a counter (fault 8). The dimension is kept so ids and
tables keep their shape, but only ``(False,)`` is accepted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from mf_pipeline.lib.backtest.modes import EXIT_MODES, SIGNAL_MODES
from mf_pipeline.lib.steps.backtest.options import EQUITY_MODES

_CHOICES = {"signal_mode": SIGNAL_MODES, "exit_mode": EXIT_MODES, "equity_mode": EQUITY_MODES}
ID_KEYS = ("source_type", "hold_bars", "signal_mode", "exit_mode", "fee_bps_per_side",
           "slippage_bps_per_side", "allow_overlap", "equity_mode", "include_watch",
           "state_subset_key")
"""The fields hashed into ``combo_id`` (overlay mode and execution profile are not)."""


@dataclass(frozen=True)
class GridDimensions:
    """Values of each grid dimension; defaults are the old ``default_grid`` (12 combos).

    Values are normalised on construction: choices trimmed and lower-cased, costs as floats,
    each state subset de-duplicated and sorted (an empty subset means all states).
    """

    hold_bars: tuple[int, ...] = (5, 10, 15, 20)
    signal_mode: tuple[str, ...] = ("state_transition_entry",)
    exit_mode: tuple[str, ...] = ("horizon_or_state",)
    fee_bps_per_side: tuple[float, ...] = (0.0, 5.0, 10.0)
    slippage_bps_per_side: tuple[float, ...] = (0.0,)
    allow_overlap: tuple[bool, ...] = (False,)
    equity_mode: tuple[str, ...] = ("event_returns_only",)
    include_watch: tuple[bool, ...] = (False,)
    include_state_sets: tuple[tuple[int, ...], ...] = ((),)

    def __post_init__(self) -> None:
        norm: dict[str, tuple[Any, ...]] = {
            "hold_bars": tuple(int(h) for h in self.hold_bars),
            "fee_bps_per_side": tuple(float(v) for v in self.fee_bps_per_side),
            "slippage_bps_per_side": tuple(float(v) for v in self.slippage_bps_per_side),
            "allow_overlap": tuple(bool(v) for v in self.allow_overlap),
            "include_watch": tuple(bool(v) for v in self.include_watch),
            "include_state_sets": tuple(tuple(sorted({int(s) for s in subset}))
                                        for subset in self.include_state_sets),
        }
        for name, allowed in _CHOICES.items():
            values = tuple(str(v).strip().lower() for v in getattr(self, name))
            bad = sorted(set(values) - set(allowed))
            if bad:
                raise ValueError(f"{name} grid: unknown value(s) {bad}; allowed {list(allowed)}")
            norm[name] = values
        if any(h < 1 for h in norm["hold_bars"]):
            raise ValueError("hold_bars grid: every value must be >= 1")
        if any(norm["allow_overlap"]):
            raise ValueError("allow_overlap grid: only false is supported; positions never "
                             "overlap in this engine (the old true only hid the "
                             "skipped_due_overlap counter, backtest_ops.md §13 fault 8)")
        for name, values in norm.items():
            object.__setattr__(self, name, values)

    def axes(self) -> list[tuple[Any, ...]]:
        """The dimensions in product order (last one varies fastest)."""
        return [getattr(self, f.name) for f in fields(self)]


def state_subset_key(subset: Iterable[int]) -> str | None:
    """``|``-join of the sorted subset; None for the empty subset (all states)."""
    ids = sorted({int(s) for s in subset})
    return "|".join(str(s) for s in ids) if ids else None


def combo_id(combo: dict[str, Any]) -> str:
    """First 16 hex chars of SHA-1 over the compact, key-sorted JSON of :data:`ID_KEYS`.

    Costs are rendered as Python floats (``5.0``), booleans ``true``/``false``, a missing
    subset key ``null``: byte-identical to the old tool's text, hence the same ids.
    """
    payload = {k: combo.get(k) for k in ID_KEYS}
    payload["hold_bars"] = int(payload["hold_bars"])
    for key in ("fee_bps_per_side", "slippage_bps_per_side"):
        payload[key] = float(payload[key])
    for key in ("allow_overlap", "include_watch"):
        payload[key] = bool(payload[key])
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def combos(dims: GridDimensions, source_type: str, shuffle: bool = False, seed: int = 42,
           max_combos: int = 500) -> list[dict[str, Any]]:
    """The grid's combos for one source, in final order with a 1-based ``combo_index``.

    Each dict holds the nine parameters (the state subset as ``include_state_ids``, a
    sorted tuple), ``state_subset_key``, ``source_type``, ``combo_index`` and ``combo_id``.
    Every source gets the same order for the same dimensions, seed and limit.
    """
    product = list(itertools.product(*dims.axes()))
    if shuffle:
        random.Random(seed).shuffle(product)
    product = product[:max(max_combos, 0)]
    if not product:
        raise ValueError("the grid has no combination (an empty dimension or max_combos < 1)")
    names = [f.name for f in fields(dims)]
    out = []
    for index, values in enumerate(product, start=1):
        combo: dict[str, Any] = dict(zip(names, values, strict=True))
        subset = combo.pop("include_state_sets")
        combo.update(include_state_ids=subset, state_subset_key=state_subset_key(subset),
                     source_type=source_type, combo_index=index)
        combo["combo_id"] = combo_id(combo)
        out.append(combo)
    return out
