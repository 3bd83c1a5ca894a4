"""The kernels' warm-up loads exactly the overloads a run calls: a run after it adds no new
Numba signature (otherwise the warm-up thread would only add work)."""

import numpy as np
import polars as pl

from mf_pipeline.lib.backtest import engine, execution
from mf_pipeline.lib.backtest.engine import BacktestConfig, run_trades
from mf_pipeline.lib.kernels import backtest as kb
from mf_pipeline.lib.kernels.recursive import rolling_mean
from mf_pipeline.lib.kernels.rolling_median import rolling_median

KERNELS = (kb.entry_signals, kb.simulate_trades, rolling_median, rolling_mean)


def test_a_run_after_the_warm_up_compiles_nothing_new() -> None:
    engine.warm_up()
    execution.warm_up()
    before = [len(k.signatures) for k in KERNELS]
    rng = np.random.default_rng(1)
    n = 40
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    frame = pl.DataFrame({
        "ticker": ["A"] * 20 + ["B"] * 20,
        "trade_date": pl.concat([pl.date_range(pl.date(2020, 1, 1), pl.date(2020, 1, 20),
                                               eager=True)] * 2),
        "open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
        "state_id": rng.integers(0, 3, n), "direction": pl.Series(rng.integers(-1, 2, n),
                                                                   dtype=pl.Int8),
        "volume": rng.uniform(1e5, 1e6, n), "signal_eligible": True,
        "state_direction_hint": "LONG_BIAS",
    })  # fmt: skip
    trades = run_trades(frame, BacktestConfig(hold_bars=3)).trades
    for method in ("median", "mean"):
        params = execution.ExecutionParams(min_dollar_vol_20=1.0, dollar_vol_window=5,
                                           dollar_vol_rolling_method=method)
        out = execution.apply_execution(frame, params)
        assert out.frame["exec_dollar_vol_20"].null_count() == 2 * 4  # first 4 bars per ticker
    assert trades.height > 0
    assert [len(k.signatures) for k in KERNELS] == before
