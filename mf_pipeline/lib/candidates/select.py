"""Which combo of a grid becomes a production candidate (backtest_ops.md §9.2).

The pool is a grid's SUCCESS rows of one source that traded (a zero-trade combo is never a
candidate); combos below ``min_trades`` trades are left out, and when that leaves nothing the
threshold is relaxed once to 10 trades with a warning. The first row of the label's ordering
wins. Orderings follow the grids' ranking rule (:func:`metrics.sort_best_first`): a +inf
profit factor (no losing trade) is the BEST profit factor (the old tool sanitized it to null
and ranked it last, fault 10), nulls and NaN rank last in every direction (fault 15), and the
last key, ``combo_id`` ascending (a missing id sorts as ``~``), makes the winner independent of
row order (fault 13).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from mf_pipeline.lib.backtest.metrics import sort_best_first

ALPHA = "CANDIDATE_ALPHA"
EXEC = "CANDIDATE_EXEC"
EXEC_2 = "CANDIDATE_EXEC_2"
ALPHA_RANKING = ("robustness_score_v2 desc", "expectancy desc", "profit_factor desc",
                 "trade_count desc", "combo_id asc")  # fmt: skip
EXEC_RANKING = ("profit_factor desc", "robustness_score_v2 desc", "ret_cv asc",
                "trade_count desc", "combo_id asc")  # fmt: skip
RANKINGS = {ALPHA: ALPHA_RANKING, EXEC: EXEC_RANKING, EXEC_2: EXEC_RANKING}
PROFILES = {ALPHA: "alpha", EXEC: "exec", EXEC_2: "exec"}
"""The ``<profile>`` word of the spec's warnings and errors per label."""
RELAXED_MIN_TRADES = 10
MISSING_ID = "~"


@dataclass(frozen=True)
class Selection:
    """The winning metrics row, the trade threshold it passed and the warnings raised."""

    row: dict[str, Any]
    threshold: int
    warnings: tuple[str, ...] = ()


def candidate_pool(metrics: pl.DataFrame, source_type: str = "hmm") -> pl.DataFrame:
    """SUCCESS rows of ``source_type`` with at least one trade and no zero-trade flag
    (a null flag counts as not zero-trade, a null trade count as 0)."""
    frame = metrics
    if "status" in frame.columns:
        frame = frame.filter(pl.col("status") == "SUCCESS")
    if "source_type" in frame.columns:
        frame = frame.filter(pl.col("source_type") == source_type)
    return frame.filter(~pl.col("is_zero_trade_combo").fill_null(False),
                        pl.col("trade_count").fill_null(0) > 0)  # fmt: skip


def best_first(frame: pl.DataFrame, ranking: Sequence[str]) -> pl.DataFrame:
    """``frame`` ordered by ``ranking`` (``"<column> asc|desc"``, most significant first).

    Stable sorts from the least significant key up give the lexicographic order with each
    key's own nulls-last rule; numeric keys go through :func:`sort_best_first`.
    """
    out = frame
    for spec in reversed(ranking):
        column, direction = spec.split()
        if out.schema[column] == pl.String:
            key = pl.col(column).fill_null(MISSING_ID)
            out = out.sort(key, descending=direction == "desc", maintain_order=True)
        else:
            out = sort_best_first(out, column, lower_is_better=direction == "asc")
    return out


def select(metrics: pl.DataFrame, label: str, min_trades: int,
           source_type: str = "hmm") -> Selection:  # fmt: skip
    """The ``label`` candidate of a grid's metrics table (§9.2); ValueError when no combo
    qualifies."""
    if min_trades < 1:
        raise ValueError(f"min_trades must be >= 1, got {min_trades}")
    profile = PROFILES[label]
    pool = candidate_pool(metrics, source_type)
    if pool.is_empty():
        raise ValueError(f"No non-zero successful combos available for {profile}")
    threshold, warnings = min_trades, []
    kept = pool.filter(pl.col("trade_count") >= threshold)
    if kept.is_empty() and min_trades > RELAXED_MIN_TRADES:
        threshold = RELAXED_MIN_TRADES
        warnings.append(f"{profile}: no combos with trade_count >= {min_trades}; "
                        f"relaxed to trade_count >= {RELAXED_MIN_TRADES}.")
        kept = pool.filter(pl.col("trade_count") >= threshold)
    if kept.is_empty():
        raise ValueError(f"{profile}: no combos with trade_count >= {threshold} "
                         f"(most trades of a combo: {pool['trade_count'].max()})")
    row = best_first(kept, RANKINGS[label]).row(0, named=True)
    return Selection(row, threshold, tuple(warnings))
