"""The combos of a sensitivity grid on rows loaded and prepared once (issue #21, "Fast by
design"): combos that share the signal-defining options (signal mode, WATCH, state subset)
share one :func:`steps.backtest.run.prepare`; each combo is then only a Numba simulation with
its exit mode, hold and costs, and its metrics. A Python loop over combos, never over rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from mf_pipeline.lib.backtest import metrics
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.options import BacktestOptions
from mf_pipeline.lib.steps.backtest.run import BacktestInputs, prepare, simulate

SIGNAL_KEYS = ("signal_mode", "include_watch", "include_state_ids")
"""Options that change the signals: combos differing only elsewhere share a preparation."""
SIMULATION_KEYS = ("exit_mode", "hold_bars", "fee_bps_per_side", "slippage_bps_per_side")


@dataclass
class ComboResult:
    """One combo: its options, trades, headline (§2.1) and edge metrics (§2.4)."""

    options: BacktestOptions
    trades: pl.DataFrame
    headline: dict[str, Any]
    edge: dict[str, Any]
    diagnostics: dict[str, int]


def run_combos(settings: Settings, inputs: BacktestInputs, base: BacktestOptions,
               combos: Sequence[dict[str, Any]]) -> list[ComboResult]:  # fmt: skip
    """Every combo (a dict of :data:`SIGNAL_KEYS` / :data:`SIMULATION_KEYS` overrides of
    ``base``), in the given order; one preparation per distinct signal key."""
    unknown = {k for c in combos for k in c} - {*SIGNAL_KEYS, *SIMULATION_KEYS}
    if unknown:
        raise ValueError(f"grid combos may only vary {SIGNAL_KEYS + SIMULATION_KEYS}; "
                         f"got {sorted(unknown)}")
    prepared: dict[tuple[Any, ...], Any] = {}
    out = []
    for combo in combos:
        options = replace(base, **{k: tuple(v) if k == "include_state_ids" else v
                                   for k, v in combo.items()})
        options.check()
        key = tuple(getattr(options, k) for k in SIGNAL_KEYS)
        if key not in prepared:
            prepared[key] = prepare(settings, inputs, options)
        prep = prepared[key]
        result = simulate(prep, options)
        out.append(ComboResult(
            options, result.trades, metrics.trade_summary(result.trades, result.diagnostics),
            metrics.edge_metrics(result.trades, prep.adapter_summary["rows_in"],
                                 prep.mapping_summary["eligible_rows"]),
            result.diagnostics))  # fmt: skip
    return out
