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

from mf_pipeline.lib.backtest import execution, metrics
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.options import BacktestOptions
from mf_pipeline.lib.steps.backtest.run import (
    BacktestInputs,
    Prepared,
    equity_of,
    overlay_block,
    prepare,
    simulate,
)

SIGNAL_KEYS = ("signal_mode", "include_watch", "include_state_ids")
"""Options that change the signals: combos differing only elsewhere share a preparation."""
SIMULATION_KEYS = ("exit_mode", "hold_bars", "fee_bps_per_side", "slippage_bps_per_side",
                   "equity_mode")


@dataclass
class ComboResult:
    """One combo: its options, trades, headline (§2.1), edge (§2.4) and equity metrics, and
    the run's ``overlay`` and ``execution`` summary blocks."""

    options: BacktestOptions
    trades: pl.DataFrame
    headline: dict[str, Any]
    edge: dict[str, Any]
    diagnostics: dict[str, int]
    equity: dict[str, Any] | None
    overlay: dict[str, Any]
    execution: dict[str, Any]


class Preparations:
    """Prepared rows of one source, one per distinct signal key (built on first use)."""

    def __init__(self, settings: Settings, inputs: BacktestInputs) -> None:
        self.settings, self.inputs = settings, inputs
        self._prepared: dict[tuple[Any, ...], tuple[Prepared, pl.DataFrame]] = {}

    def get(self, options: BacktestOptions) -> tuple[Prepared, pl.DataFrame]:
        """The preparation for ``options`` and its entry-signal rows (for trade context)."""
        key = tuple(getattr(options, k) for k in SIGNAL_KEYS)
        if key not in self._prepared:
            prep = prepare(self.settings, self.inputs, options)
            self._prepared[key] = (prep, prep.signals.filter(pl.col("entry_signal")))
        return self._prepared[key]

    @property
    def count(self) -> int:
        return len(self._prepared)


def simulate_combo(preparations: Preparations, options: BacktestOptions) -> ComboResult:
    """Trades and metrics of one combo, exactly as a single run with ``options`` computes them."""
    prep, entry_rows = preparations.get(options)
    result = simulate(prep, options)
    trades = result.trades
    curve = equity_of(trades, prep.signals, options)
    trade_ctx = execution.trade_context(trades, entry_rows)
    return ComboResult(
        options, trades, metrics.trade_summary(trades, result.diagnostics),
        metrics.edge_metrics(trades, prep.adapter_summary["rows_in"],
                             prep.mapping_summary["eligible_rows"]),
        result.diagnostics, curve[1] if curve else None,
        overlay_block(prep.over, prep.generator_diag, options),
        execution.execution_block(prep.params, prep.exe, prep.generator_diag, trade_ctx))


def combo_options(base: BacktestOptions, combo: dict[str, Any]) -> BacktestOptions:
    """``base`` with a combo's :data:`SIGNAL_KEYS` / :data:`SIMULATION_KEYS` values, checked."""
    unknown = set(combo) - {*SIGNAL_KEYS, *SIMULATION_KEYS}
    if unknown:
        raise ValueError(f"grid combos may only vary {SIGNAL_KEYS + SIMULATION_KEYS}; "
                         f"got {sorted(unknown)}")
    options = replace(base, **{k: tuple(v) if k == "include_state_ids" else v
                               for k, v in combo.items()})
    options.check()
    return options


def run_combos(settings: Settings, inputs: BacktestInputs, base: BacktestOptions,
               combos: Sequence[dict[str, Any]]) -> list[ComboResult]:  # fmt: skip
    """Every combo (a dict of option overrides of ``base``), in the given order; one
    preparation per distinct signal key."""
    preparations = Preparations(settings, inputs)
    return [simulate_combo(preparations, combo_options(base, c)) for c in combos]
