"""The combos of a sensitivity grid on rows loaded and prepared once (issue #21, "Fast by
design"): combos that share the signal-defining options (signal mode, WATCH, state subset)
share one :func:`steps.backtest.run.prepare` and one extraction of the kernel arrays; their
exit modes, holds and costs are then simulated many per Numba call
(:func:`backtest.engine.run_trades_batch`), followed by each combo's metrics. A Python loop
over combos, never over rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from mf_pipeline.lib.backtest import execution, metrics
from mf_pipeline.lib.backtest.engine import (
    BacktestConfig,
    BacktestResult,
    KernelInputs,
    kernel_inputs,
    run_trades_batch,
)
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.options import BacktestOptions
from mf_pipeline.lib.steps.backtest.run import (
    CARRY,
    BacktestInputs,
    Prepared,
    equity_of,
    overlay_block,
    prepare,
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


@dataclass
class _Prepared:
    prep: Prepared
    entry_rows: pl.DataFrame
    """The entry-signal rows (a trade's context is read from its signal row)."""
    kernel: KernelInputs | None = None


def signal_key(options: BacktestOptions) -> tuple[Any, ...]:
    return tuple(getattr(options, k) for k in SIGNAL_KEYS)


class Preparations:
    """Prepared rows of one source, one per distinct signal key (built on first use)."""

    def __init__(self, settings: Settings, inputs: BacktestInputs) -> None:
        self.settings, self.inputs = settings, inputs
        self._prepared: dict[tuple[Any, ...], _Prepared] = {}

    def get(self, options: BacktestOptions) -> _Prepared:
        key = signal_key(options)
        if key not in self._prepared:
            prep = prepare(self.settings, self.inputs, options)
            self._prepared[key] = _Prepared(prep, prep.signals.filter(pl.col("entry_signal")))
        return self._prepared[key]

    def kernel(self, options: BacktestOptions) -> KernelInputs:
        """The kernel arrays of ``options``' preparation, extracted once."""
        got = self.get(options)
        if got.kernel is None:
            got.kernel = kernel_inputs(got.prep.signals, options.signal_mode,
                                       eligible_col="signal_eligible",
                                       entry_col="entry_signal", carry=CARRY)
        return got.kernel

    @property
    def count(self) -> int:
        return len(self._prepared)


def combo_result(preparations: Preparations, options: BacktestOptions,
                 result: BacktestResult) -> ComboResult:  # fmt: skip
    """A combo's metrics and summary blocks from its simulated trades."""
    got = preparations.get(options)
    prep, trades = got.prep, result.trades
    curve = equity_of(trades, prep.signals, options)
    trade_ctx = execution.trade_context(trades, got.entry_rows)
    return ComboResult(
        options, trades, metrics.trade_summary(trades, result.diagnostics),
        metrics.edge_metrics(trades, prep.adapter_summary["rows_in"],
                             prep.mapping_summary["eligible_rows"]),
        result.diagnostics, curve[1] if curve else None,
        overlay_block(prep.over, prep.generator_diag, options),
        execution.execution_block(prep.params, prep.exe, prep.generator_diag, trade_ctx))


def simulate_batch(preparations: Preparations, options: Sequence[BacktestOptions]
                   ) -> list[BacktestResult]:  # fmt: skip
    """The trades of combos sharing one signal key, many per kernel call; each equals the
    trades of a single run with those options (``steps.backtest.run.simulate``).

    Costs never change an entry or an exit (the kernel's net = gross - 2 x cost per side), so
    each (exit mode, hold) is simulated once without costs and its cost variants are derived
    from those trades with the kernel's own arithmetic: bit-identical, and most of a grid's
    combos (its fee and slippage values) cost no simulation.
    """
    if not options:
        return []
    if len({signal_key(o) for o in options}) > 1:
        raise ValueError("simulate_batch needs combos with one signal key")
    paths = list(dict.fromkeys((o.exit_mode, o.hold_bars) for o in options))
    base = run_trades_batch(preparations.kernel(options[0]),
                            [BacktestConfig(options[0].signal_mode, exit_mode, hold)
                             for exit_mode, hold in paths])  # fmt: skip
    by_path = dict(zip(paths, base, strict=True))
    return [with_costs(by_path[(o.exit_mode, o.hold_bars)], o.fee_bps_per_side,
                       o.slippage_bps_per_side) for o in options]  # fmt: skip


def with_costs(result: BacktestResult, fee_bps_per_side: float,
               slippage_bps_per_side: float) -> BacktestResult:  # fmt: skip
    """``result`` (simulated without costs) with these per-side costs applied."""
    if fee_bps_per_side == 0.0 and slippage_bps_per_side == 0.0:
        return result
    cost = 2.0 * (fee_bps_per_side + slippage_bps_per_side) / 10_000.0
    trades = result.trades.with_columns(
        net_return=pl.col("gross_return") - cost,
        fees=pl.lit(2.0 * fee_bps_per_side / 10_000.0, dtype=pl.Float64),
        slippage=pl.lit(2.0 * slippage_bps_per_side / 10_000.0, dtype=pl.Float64))
    return BacktestResult(trades=trades, diagnostics=result.diagnostics)


def by_signal_key(options: Sequence[BacktestOptions]) -> list[list[int]]:
    """Indices of ``options`` grouped by signal key, groups in order of first appearance."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, o in enumerate(options):
        groups.setdefault(signal_key(o), []).append(i)
    return list(groups.values())


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
    options = [combo_options(base, c) for c in combos]
    out: dict[int, ComboResult] = {}
    for group in by_signal_key(options):
        batch = simulate_batch(preparations, [options[i] for i in group])
        out |= {i: combo_result(preparations, options[i], r)
                for i, r in zip(group, batch, strict=True)}
    return [out[i] for i in range(len(options))]
