"""Many strategies per kernel call (issue #21, "the simulation runs many combos per kernel
call"): each strategy's trades equal a single run's, also when the batch is cut into several
calls to bound memory."""

from unittest import mock

import numpy as np
import polars as pl

from mf_pipeline.lib.backtest import engine
from mf_pipeline.lib.backtest.engine import BacktestConfig, kernel_inputs, run_trades

CONFIGS = [BacktestConfig("state_entry", exit_mode, hold, fee, slip)
           for exit_mode in ("horizon", "state_exit", "horizon_or_state")
           for hold in (1, 4, 9) for fee, slip in ((0.0, 0.0), (7.5, 2.5))]


def _frame() -> pl.DataFrame:
    rng = np.random.default_rng(5)
    n = 120
    close = 30 * np.exp(np.cumsum(rng.normal(0, 0.02, 3 * n)))
    return pl.DataFrame({
        "ticker": np.repeat(["A", "B", "C"], n),
        "trade_date": pl.concat([pl.date_range(pl.date(2020, 1, 1), pl.date(2020, 4, 29),
                                               eager=True)] * 3),
        "open": close * np.exp(rng.normal(0, 0.005, 3 * n)), "high": close * 1.02,
        "low": close * 0.98, "close": close,
        "state_id": np.repeat(rng.integers(0, 4, 3 * n // 6), 6),
        "direction": pl.Series(np.repeat(rng.integers(-1, 2, 3 * n // 6), 6), dtype=pl.Int8),
    })  # fmt: skip


def test_batch_equals_single_runs_even_when_cut_into_calls() -> None:
    frame = _frame()
    singles = [run_trades(frame, c) for c in CONFIGS]
    assert sum(s.trades.height for s in singles) > 100
    inputs = kernel_inputs(frame, "state_entry")
    per_config = int(inputs.entry_signal.sum()) * 13 * 8
    for budget in (engine.BATCH_BYTES, 5 * per_config):  # one call; then calls of 5 configs
        with mock.patch.object(engine, "BATCH_BYTES", budget):
            batch = engine.run_trades_batch(inputs, CONFIGS)
        for config, single, got in zip(CONFIGS, singles, batch, strict=True):
            assert got.trades.equals(single.trades), config
            assert got.diagnostics == single.diagnostics, config
    fees = {(c.exit_mode, c.hold_bars, c.fee_bps_per_side): b.trades["net_return"].sum()
            for c, b in zip(CONFIGS, batch, strict=True)}
    # 10 bps per side in total = 20 bps off each trade's net return
    n = batch[0].trades["net_return"].count()
    assert abs(fees[("horizon", 1, 0.0)] - fees[("horizon", 1, 7.5)] - 0.002 * n) < 1e-9
