"""The grid runner (§5.2–5.5): manifest rows equal single backtest runs, every trade lands in
the partitioned dataset, per-period returns are the exit-day means, failures are rows, reruns
converge, and a grid on random walks is not called skill."""

import json
import math
from datetime import date, timedelta
from unittest import mock

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.grids import engine
from mf_pipeline.lib.grids.combos import GridDimensions
from mf_pipeline.lib.grids.run import GridOptions, GridSource, run_grid
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.lib.steps.backtest.options import backtest_options
from mf_pipeline.lib.steps.backtest.run import BacktestInputs, backtest_run
from mf_pipeline_tests.unit.test_grid_engine import _inputs

DIMS = GridDimensions(hold_bars=(3, 10), fee_bps_per_side=(0.0, 10.0),
                      exit_mode=("horizon", "horizon_or_state"))


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory):
    settings = load_settings()
    folder = tmp_path_factory.mktemp("grid") / "grid-test"
    return settings, run_grid(settings, [GridSource(_inputs())], DIMS, GridOptions(tag="t"),
                              folder=folder)


def test_each_combo_row_equals_its_single_backtest_run(grid, isolated) -> None:
    settings, out = grid
    assert out.manifest.height == 8 and (out.manifest["status"] == "SUCCESS").all()
    for row in out.metrics.iter_rows(named=True):
        options = backtest_options(settings, hold_bars=row["hold_bars"],
                                   exit_mode=row["exit_mode"],
                                   fee_bps_per_side=row["fee_bps_per_side"])
        single = backtest_run(settings, _inputs(), options)
        summary = json.loads((single.output_dir / "backtest_summary.json").read_text())
        for key in ("trade_count", "win_rate", "avg_return", "expectancy", "return_std"):
            assert row[key] == pytest.approx(summary["headline"][key], abs=1e-15), key
        assert row["ret_cv"] == pytest.approx(summary["edge_metrics"]["ret_cv"])
        assert row["rows_input"] == summary["adapter_summary"]["rows_in"]


def test_trades_dataset_and_period_returns(grid) -> None:
    _, out = grid
    trades = pl.read_parquet(out.output_dir / "grid_trades", hive_partitioning=True)
    counts = dict(trades.group_by("combo_id").len().iter_rows())
    assert counts == dict(out.metrics.select("combo_id", "trade_count").iter_rows())
    assert set(trades["source_type"]) == {"flow"}
    returns = pl.read_parquet(out.output_dir / "grid_period_returns.parquet")
    days = returns.group_by("combo_id").len()["len"]
    assert days.n_unique() == 1  # dense: every combo on the union of exit days
    combo = out.metrics["combo_id"][0]
    mine = trades.filter(pl.col("combo_id") == combo, pl.col("is_valid_trade"))
    by_day = mine.group_by("exit_date").agg(pl.col("net_return").mean()).sort("exit_date")
    series = returns.filter(pl.col("combo_id") == combo)
    joined = series.join(by_day, left_on="trade_date", right_on="exit_date", how="left")
    expected = joined["net_return"].fill_null(0.0).to_numpy()
    assert np.allclose(joined["period_return"].to_numpy(), expected)
    sharpe = expected.mean() / expected.std(ddof=1)
    got = out.metrics.filter(pl.col("combo_id") == combo)["sharpe_period"][0]
    assert got == pytest.approx(sharpe)


def test_summary_counts_and_overfitting_block(grid) -> None:
    _, out = grid
    s = json.loads((out.output_dir / "grid_summary.json").read_text())
    assert s["scope"] == "single-flow" and s["total_combos"] == 8
    assert s["successful_combos"] == 8 and s["failed_combos"] == 0
    assert s["drawdown_ranked"] is False  # event returns only: no drawdown (fault 12)
    block = s["overfitting"]["flow"]
    assert block["n_trials"] == 8 and 0.0 <= block["dsr"] <= 1.0
    top = out.metrics.sort("robustness_score_v2", "combo_index", descending=[True, False])
    assert block["best_combo_id"] == top["combo_id"][0]
    assert block["fluke_risk"] in ("LOW", "MODERATE", "HIGH")


def test_failed_combo_is_a_row_and_rerun_lands_in_the_same_folder(tmp_path) -> None:
    settings = load_settings()
    real = engine.combo_result

    def flaky(preparations, options, simulated):
        if options.hold_bars == 10 and options.fee_bps_per_side == 10.0:
            raise RuntimeError("boom")
        return real(preparations, options, simulated)

    dims = GridDimensions(hold_bars=(3, 10), fee_bps_per_side=(0.0, 10.0))
    with mock.patch("mf_pipeline.lib.grids.run.combo_result", flaky):
        out = run_grid(settings, [GridSource(_inputs())], dims, GridOptions(),
                       folder=tmp_path / "g")
    failed = out.manifest.filter(pl.col("status") == "FAILED")
    assert failed.height == 1 and failed["error_message"][0] == "boom"
    assert out.summary["failed_combos"] == 1 and out.metrics.height == 3
    failures = json.loads((out.output_dir / "grid_failures.json").read_text())
    assert failures[0]["combo_index"] == 4 and "RuntimeError" in failures[0]["traceback"]
    with mock.patch("mf_pipeline.lib.grids.run.combo_result", flaky), \
            pytest.raises(RuntimeError):  # fmt: skip
        run_grid(settings, [GridSource(_inputs())], dims, GridOptions(stop_on_error=True),
                 folder=tmp_path / "g2")
    assert not (tmp_path / "g2").exists()  # nothing half-written


def test_random_walk_grid_is_not_significant(tmp_path) -> None:
    """Prices with no edge and states with no information: the winner must not look like
    skill once deflated for the number of combos tried."""
    rng = np.random.default_rng(7)
    frames = []
    for t in range(12):
        n = 600
        close = 30 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        frames.append(pl.DataFrame({
            "ticker": f"R{t:02d}", "trade_date": [date(2010, 1, 1) + timedelta(days=i)
                                                  for i in range(n)],
            "open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
            "volume": 1e6, "flow_state_code": rng.integers(0, 5, n).astype(np.int8)}))
    inputs = BacktestInputs(pl.concat(frames), "flow", "rw", {"case": "random walk"})
    dims = GridDimensions(hold_bars=(2, 3, 5, 8, 13, 21), fee_bps_per_side=(0.0, 5.0),
                          signal_mode=("state_entry", "state_transition_entry"))
    out = run_grid(load_settings(), [GridSource(inputs)], dims, GridOptions(),
                   folder=tmp_path / "rw")
    block = out.summary["overfitting"]["flow"]
    assert block["n_trials"] == 24
    assert block["dsr"] < 0.95 and block["dsr_max_sharpe"] < 0.95
    assert block["fluke_risk"] != "LOW"
    assert not math.isnan(block["pbo"])
