"""Forward-return profile of the causal HMM states on the rows the model was fitted on.

A walk-forward backtest trades a split's test rows. The direction of each state must be known
when the test starts, so it comes from the train rows: their forward labels are computed per
split and an embargo keeps them from reading test prices (research.md, "Where we differ"). The
table has the columns the old ``state_scorecard.csv`` reader needs (backtest_ops.md §3), with a
block-bootstrap interval (dates resampled in blocks, as the validation layer does).
"""

from __future__ import annotations

import polars as pl

from mf_pipeline.lib.settings import BootstrapSettings
from mf_pipeline.lib.validation.bootstrap import run_bootstrap

OUTCOME = "fwd_ret_10"
STATE_COL = "hmm_state_filtered"
SCHEMA: dict[str, pl.DataType] = {
    "state_id": pl.Int32,
    "n_rows": pl.Int64,
    "fwd_ret_10_mean": pl.Float64,
    "fwd_ret_10_ci_lo": pl.Float64,
    "fwd_ret_10_ci_hi": pl.Float64,
    "state_source": pl.Utf8,
}


def train_state_scorecard(frame: pl.DataFrame, boot: BootstrapSettings) -> pl.DataFrame:
    """Per ``hmm_state_filtered`` state of the fit rows: rows, mean ``fwd_ret_10`` and its
    block-bootstrap interval (``boot`` mode, length and seed). Rows without a label are left
    out; a state without any labelled row is absent."""
    rows = frame.select(
        pl.col(STATE_COL).cast(pl.Int32).alias("state_id"), "ticker", "trade_date",
        pl.col(OUTCOME).cast(pl.Float64).fill_nan(None),
    ).drop_nulls()  # fmt: skip
    if rows.is_empty():
        return pl.DataFrame(schema=SCHEMA)
    result = run_bootstrap(
        rows.sort("ticker", "trade_date"), outcomes=[OUTCOME], n_boot=boot.n_boot, ci=boot.ci,
        mode=boot.mode, block_length=boot.block_length, random_state=boot.random_state,
        pairwise_outcome=OUTCOME, max_points_per_state=boot.max_points_per_state,
        alpha=boot.alpha,
    )  # fmt: skip
    return (
        result.state_summary.filter(pl.col("outcome_name") == OUTCOME)
        .select(
            pl.col("state_id").cast(pl.Int32), pl.col("n").alias("n_rows"),
            pl.col("mean_obs").alias("fwd_ret_10_mean"),
            pl.col("mean_ci_lo").alias("fwd_ret_10_ci_lo"),
            pl.col("mean_ci_hi").alias("fwd_ret_10_ci_hi"),
            pl.lit(STATE_COL).alias("state_source"),
        )  # fmt: skip
        .sort("state_id")
    )
