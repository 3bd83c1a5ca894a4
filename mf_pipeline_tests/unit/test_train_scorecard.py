"""The HMM run's train-row scorecard: the backtest's direction source (backtest_ops.md §3)."""

import datetime as dt

import numpy as np
import polars as pl

from mf_pipeline.lib.research.train_scorecard import train_state_scorecard
from mf_pipeline.lib.settings import BootstrapSettings


def _frame() -> pl.DataFrame:
    rng = np.random.default_rng(3)
    n = 400
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)]
    state = np.tile([0, 1], n // 2)
    ret = np.where(state == 0, 0.02, -0.01) + rng.normal(0, 1e-4, n)
    label = pl.Series(ret).scatter([0, 1], [None, float("nan")])  # unlabelled rows left out
    return pl.DataFrame({"ticker": ["A"] * n, "trade_date": days,
                         "hmm_state_filtered": pl.Series(state, dtype=pl.Int16),
                         "hmm_state": pl.Series(1 - state, dtype=pl.Int16),  # never read
                         "fwd_ret_10": label})


def test_means_counts_and_intervals_per_filtered_state() -> None:
    frame = _frame()
    card = train_state_scorecard(frame, BootstrapSettings(n_boot=50))
    assert card["state_id"].to_list() == [0, 1]
    assert card["n_rows"].to_list() == [199, 199]
    expected = (frame.slice(2).group_by("hmm_state_filtered").agg(pl.col("fwd_ret_10").mean())
                .sort("hmm_state_filtered")["fwd_ret_10"].to_list())
    assert np.allclose(card["fwd_ret_10_mean"].to_numpy(), expected, rtol=0, atol=1e-15)
    assert (card["fwd_ret_10_ci_lo"] <= card["fwd_ret_10_mean"]).all()
    assert (card["fwd_ret_10_ci_hi"] >= card["fwd_ret_10_mean"]).all()
    assert card["fwd_ret_10_ci_lo"][0] > 0 > card["fwd_ret_10_ci_hi"][1]


def test_no_labelled_rows_gives_an_empty_table() -> None:
    frame = _frame().with_columns(pl.lit(None, dtype=pl.Float64).alias("fwd_ret_10"))
    card = train_state_scorecard(frame, BootstrapSettings(n_boot=50))
    assert card.is_empty() and "fwd_ret_10_ci_hi" in card.columns
