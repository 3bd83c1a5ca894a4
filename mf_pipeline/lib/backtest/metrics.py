"""Trade metrics of one backtest run (backtest_ops.md §2.1, §2.2, §2.4).

Every statistic is computed on the *valid return set*: net returns of trades with
``is_valid_trade`` and a finite ``net_return``. Standard deviations are population (ddof 0),
quantiles in the edge metrics are linear, medians are the middle value (mean of the two middle
values for an even count).

Differences from the old tool (§13), on purpose:
- fault 10: a profit factor with no losing trade and at least one winner is ``float("inf")``
  with ``profit_factor_inf = True`` beside it (the old tool turned it into null, which then
  ranked last). JSON writers turn the inf into null; the flag is what survives there.
- faults 14/15: :func:`sort_best_first` is the one ranking rule for metric tables: +inf ranks
  first when higher is better, ``max_drawdown`` (<= 0) is best when closest to 0, nulls and NaN
  last, ties broken by explicit key columns.
- sorts of the summary tables put nulls last and break ties by their group keys (the old
  ones left ties in hash order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

EPS = 1e-12
STATE_KEYS = ("entry_state_id", "entry_state_label", "entry_state_class",
              "entry_state_direction_hint")
# metrics where a smaller value is better; every other metric ranks larger-first, including
# max_drawdown (a loss <= 0: the one closest to 0 is the best, fault 14)
LOWER_IS_BETTER = frozenset({"return_std", "ret_cv", "downside_std", "total_cost_bps"})
EDGE_METRICS = ("ret_cv", "ret_p10", "ret_p90", "downside_std", "worst_trade_return",
                "best_trade_return", "trades_per_1000_rows", "row_usage_rate", "turnover_proxy")

_R = pl.col("net_return")
_HOLD = pl.col("hold_bars_realized")


def valid_trades(trades: pl.DataFrame) -> pl.DataFrame:
    """Trades in the valid return set (``is_valid_trade`` and finite ``net_return``)."""
    keep = pl.col("is_valid_trade").fill_null(False) & _R.is_finite().fill_null(False)
    return trades.filter(keep)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def trade_summary(trades: pl.DataFrame, engine_diag: dict[str, int]) -> dict[str, Any]:
    """Headline metrics (§2.1) plus the ``profit_factor_inf`` flag (fault 10).

    Wins are r > 0, losses r <= 0 (a zero return counts as a loss, as in the old tool).
    ``expectancy`` = win_rate * avg_win + (1 - win_rate) * avg_loss with a missing average
    taken as 0; because zeros are losses this equals ``avg_return`` up to rounding (fault 9).
    It is kept, computed by the old formula, only for compatibility with the old outputs and
    rankings: it carries no information beyond ``avg_return``.
    ``profit_factor`` = sum(r > 0) / |sum(r < 0)|: +inf (flag true) with no r < 0 and some
    r > 0, null with neither. Without a valid trade every ratio is null. Missing counters in
    ``engine_diag`` count as 0.
    """
    valid = valid_trades(trades)
    stats = valid.select(
        win_rate=(_R > 0).mean(),
        avg_return=_R.mean(),
        median_return=_R.median(),
        avg_win=_R.filter(_R > 0).mean(),
        avg_loss=_R.filter(_R <= 0).mean(),
        gross_win=_R.filter(_R > 0).sum(),
        gross_loss=_R.filter(_R < 0).sum(),
        return_std=_R.std(ddof=0),
        avg_hold_bars=_HOLD.mean(),
        median_hold_bars=_HOLD.median(),
    ).row(0, named=True)
    n = valid.height
    gross_win, gross_loss = float(stats.pop("gross_win")), float(stats.pop("gross_loss"))
    profit_factor: float | None = None
    if gross_loss < 0:
        profit_factor = gross_win / abs(gross_loss)
    elif gross_win > 0:
        profit_factor = float("inf")
    expectancy = None
    if n:
        win_rate = stats["win_rate"]
        expectancy = (win_rate * (stats["avg_win"] or 0.0)
                      + (1.0 - win_rate) * (stats["avg_loss"] or 0.0))
    side = trades["side"]
    return {
        "trade_count": trades.height,
        "long_trade_count": int((side == "LONG").sum()),
        "short_trade_count": int((side == "SHORT").sum()),
        "win_rate": _float(stats["win_rate"]),
        "avg_return": _float(stats["avg_return"]),
        "median_return": _float(stats["median_return"]),
        "avg_win": _float(stats["avg_win"]),
        "avg_loss": _float(stats["avg_loss"]),
        "profit_factor": profit_factor,
        "profit_factor_inf": profit_factor == float("inf"),
        "expectancy": expectancy,
        "return_std": _float(stats["return_std"]),
        "avg_hold_bars": _float(stats["avg_hold_bars"]),
        "median_hold_bars": _float(stats["median_hold_bars"]),
        "skipped_signal_count": int(engine_diag.get("skipped_no_next_bar_entry", 0)
                                    + engine_diag.get("skipped_due_overlap", 0)),
        "invalid_trade_count": int(engine_diag.get("invalid_trade_count", 0)),
    }


def _total_abs_or_one(total: float) -> float:
    return abs(total) if total != 0 else 1.0


def by_state(trades: pl.DataFrame) -> pl.DataFrame:
    """Per entry state (§2.2), valid trades only, sorted by trade_count descending.

    ``contribution_share`` = net_pnl / |sum of all valid returns| (1 if that sum is 0);
    ``profit_factor_proxy`` = avg_win / |avg_loss| (+inf if every loss is exactly 0);
    ``expectancy`` is null when either average is null (no zero substitution here).
    """
    valid = valid_trades(trades)
    total = float(valid["net_return"].sum())
    out = valid.group_by(STATE_KEYS).agg(
        trade_count=pl.len(),
        avg_return=_R.mean(),
        median_return=_R.median(),
        avg_hold_bars=_HOLD.mean(),
        return_std=_R.std(ddof=0),
        avg_win=_R.filter(_R > 0).mean(),
        avg_loss=_R.filter(_R <= 0).mean(),
        win_count=(_R > 0).sum(),
        net_pnl=_R.sum(),
        state_score=pl.col("entry_state_score").mean(),
    )
    win_rate = pl.col("win_count") / pl.col("trade_count")
    out = out.with_columns(win_rate=win_rate).with_columns(
        contribution_share=pl.col("net_pnl") / _total_abs_or_one(total),
        trade_share=pl.col("trade_count") / max(valid.height, 1),
        profit_factor_proxy=pl.col("avg_win") / pl.col("avg_loss").abs(),
        expectancy=pl.col("win_rate") * pl.col("avg_win")
        + (1.0 - pl.col("win_rate")) * pl.col("avg_loss"),
    )
    return out.sort(["trade_count", *STATE_KEYS], descending=[True, *[False] * len(STATE_KEYS)],
                    nulls_last=True)


def by_symbol(trades: pl.DataFrame) -> pl.DataFrame:
    """Per ticker (§2.2), valid trades only, sorted by net_pnl descending (ticker on ties).

    ``contribution`` = net_pnl / sum of all valid returns, signed (1 if |sum| <= 1e-12).
    """
    valid = valid_trades(trades)
    total = float(valid["net_return"].sum())
    denominator = total if abs(total) > EPS else 1.0
    out = valid.group_by("ticker").agg(
        trade_count=pl.len(),
        avg_return=_R.mean(),
        median_return=_R.median(),
        return_std=_R.std(ddof=0),
        win_count=(_R > 0).sum(),
        avg_hold_bars=_HOLD.mean(),
        net_pnl=_R.sum(),
    )
    out = out.with_columns(
        win_rate=pl.col("win_count") / pl.col("trade_count"),
        contribution=pl.col("net_pnl") / denominator,
    )
    return out.sort(["net_pnl", "ticker"], descending=[True, False], nulls_last=True)


def exit_reason_summary(trades: pl.DataFrame) -> pl.DataFrame:
    """Per exit_reason over ALL trades (§2.2): count, mean and median net return (nulls
    ignored); sorted by trade_count descending, reason on ties."""
    out = trades.group_by("exit_reason").agg(
        trade_count=pl.len(), avg_return=_R.mean(), median_return=_R.median()
    )
    return out.sort(["trade_count", "exit_reason"], descending=[True, False], nulls_last=True)


def _distribution_exprs() -> list[pl.Expr]:
    """§2.4 distribution statistics of ``net_return`` (one definition for a run and a state)."""
    mean, std = _R.mean(), _R.std(ddof=0)
    return [
        pl.len().alias("trade_count"),
        mean.alias("avg_return"),
        _R.median().alias("median_return"),
        pl.when(mean.abs() >= EPS).then(std / mean.abs()).alias("ret_cv"),
        _R.quantile(0.10, interpolation="linear").alias("ret_p10"),
        _R.quantile(0.90, interpolation="linear").alias("ret_p90"),
        _R.filter(_R < 0).std(ddof=0).alias("downside_std"),
        _R.min().alias("worst_trade_return"),
        _R.max().alias("best_trade_return"),
    ]


def edge_metrics(trades: pl.DataFrame | None, rows_input: int,
                 rows_eligible: int) -> dict[str, Any]:
    """Trade-distribution metrics used by grids (§2.4).

    ``trades=None`` stands for a run without a trades table (every metric null,
    ``null_metric_count`` 10 as in the old tool, which counted one more than the nine metrics).
    With no valid trade the count is 7 and ``trades_per_1000_rows``/``row_usage_rate`` are 0.0
    (null when their denominator is not positive). Otherwise ``null_metric_count`` is the
    number of null metrics among the nine. ``rows_input`` is the adapter's raw ``rows_in``;
    ``rows_eligible`` the mapping's ``eligible_rows`` (before overlay and execution gates).
    """
    out: dict[str, Any] = dict.fromkeys(EDGE_METRICS)
    if trades is None:
        return {**out, "is_zero_trade_combo": True, "null_metric_count": 10}
    valid = valid_trades(trades)
    m = valid.height
    out["trades_per_1000_rows"] = m / rows_input * 1000.0 if rows_input > 0 else None
    out["row_usage_rate"] = m / rows_eligible if rows_eligible > 0 else None
    if m == 0:
        return {**out, "is_zero_trade_combo": True, "null_metric_count": 7}
    stats = valid.select(_distribution_exprs()).row(0, named=True)
    out.update({k: _float(stats[k]) for k in EDGE_METRICS[:6]})
    avg_hold = valid["hold_bars_realized"].mean()
    out["turnover_proxy"] = m / avg_hold if avg_hold is not None and avg_hold > 0 else None
    null_count = sum(out[k] is None for k in EDGE_METRICS)
    return {**out, "is_zero_trade_combo": False, "null_metric_count": null_count}


def policy_trade_class_mix(trades: pl.DataFrame) -> str | None:
    """``"CLASS=count;..."`` of valid trades by entry_state_class, classes in ascending order
    (a null class is written ``UNKNOWN`` and listed last); None without a valid trade."""
    counts = (
        valid_trades(trades)
        .group_by("entry_state_class")
        .agg(pl.len().alias("n"))
        .sort("entry_state_class", nulls_last=True)
    )
    if counts.height == 0:
        return None
    text = pl.col("entry_state_class").cast(pl.Utf8).fill_null("UNKNOWN")
    return ";".join(counts.select(text + "=" + pl.col("n").cast(pl.Utf8)).to_series())


def edge_by_state(trades: pl.DataFrame) -> pl.DataFrame:
    """§2.4 distribution metrics per entry state (cluster sources), valid trades only; sorted
    by trade_count descending, then the state keys."""
    out = valid_trades(trades).group_by(STATE_KEYS).agg(_distribution_exprs())
    return out.sort(["trade_count", *STATE_KEYS], descending=[True, *[False] * len(STATE_KEYS)],
                    nulls_last=True)


def sort_best_first(frame: pl.DataFrame, metric: str, tie_break: Sequence[str] = (),
                    *, lower_is_better: bool | None = None) -> pl.DataFrame:
    """Rows of ``frame`` ordered best ``metric`` first: the ranking rule for grids.

    Direction: ascending for :data:`LOWER_IS_BETTER` metrics, descending otherwise (override
    with ``lower_is_better``). So +inf profit factor ranks first (fault 10) and the drawdown
    closest to 0 ranks first (fault 14). Null and NaN rank last either way (fault 15). Ties
    are ordered by ``tie_break`` columns ascending (nulls last), then by input order.
    """
    lower = metric in LOWER_IS_BETTER if lower_is_better is None else lower_is_better
    key = "__sort_key"
    keyed = frame.with_columns(pl.col(metric).cast(pl.Float64).fill_nan(None).alias(key))
    return keyed.sort(
        [key, *tie_break],
        descending=[not lower, *[False] * len(tie_break)],
        nulls_last=True,
        maintain_order=True,
    ).drop(key)
