"""A grid combo's trades and metrics equal a single backtest run with the same parameters,
while the rows are prepared once per signal key (issue #21 acceptance)."""

import json
import math
from datetime import date, timedelta
from unittest import mock

import numpy as np
import polars as pl

from mf_pipeline.lib.grids import engine
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.lib.steps.backtest import run as run_step
from mf_pipeline.lib.steps.backtest.options import backtest_options
from mf_pipeline.lib.steps.backtest.run import BacktestInputs, backtest_run

COMBOS = [
    {"hold_bars": h, "fee_bps_per_side": fee, "signal_mode": mode}
    for mode in ("state_transition_entry", "state_entry") for h in (3, 10) for fee in (0.0, 10.0)
] + [{"exit_mode": "horizon", "hold_bars": 5, "include_state_ids": [1, 3]}]


def _inputs() -> BacktestInputs:
    rng = np.random.default_rng(11)
    frames = []
    for t in range(3):
        n = 250
        close = 20 * np.exp(np.cumsum(rng.normal(0, 0.015, n)))
        state = np.repeat(rng.integers(0, 5, n // 5 + 1), 5)[:n]
        frames.append(pl.DataFrame({
            "ticker": f"T{t}", "trade_date": [date(2015, 1, 1) + timedelta(days=i)
                                              for i in range(n)],
            "open": close * np.exp(rng.normal(0, 0.004, n)), "high": close * 1.02,
            "low": close * 0.98, "close": close, "volume": rng.uniform(1e5, 1e6, n),
            "flow_state_code": state.astype(np.int8)}))  # fmt: skip
    return BacktestInputs(rows=pl.concat(frames), input_type="flow", tag="grid",
                          identity={"case": "grid"})


def test_every_combo_equals_its_single_run_and_signals_are_prepared_once(isolated) -> None:
    """``isolated``: single runs write to a temporary artifacts root."""
    settings = load_settings()
    inputs, base = _inputs(), backtest_options(settings)
    with mock.patch.object(engine, "prepare", wraps=run_step.prepare) as spy:
        results = engine.run_combos(settings, inputs, base, COMBOS)
    assert spy.call_count == 3  # two signal modes + one state subset
    assert len(results) == len(COMBOS)
    for combo, got in zip(COMBOS, results, strict=True):
        single = backtest_run(settings, inputs, backtest_options(settings, **combo))
        assert got.trades.equals(single.trades), combo
        summary = json.loads((single.output_dir / "backtest_summary.json").read_text())
        for key, value in summary["headline"].items():  # JSON holds non-finite as null
            mine = got.headline[key]
            assert mine == value or (value is None and not math.isfinite(mine)), (combo, key)
        assert got.edge["trades_per_1000_rows"] == summary["edge_metrics"]["trades_per_1000_rows"]
    fees = {(r.options.signal_mode, r.options.hold_bars, r.options.fee_bps_per_side):
            r.headline["avg_return"] for r in results[:8]}
    # 10 bps per side = 20 bps off every trade's net return
    assert abs(fees[("state_entry", 10, 0.0)] - fees[("state_entry", 10, 10.0)] - 0.002) < 1e-12
