"""Daily equity curves of one backtest run (backtest_ops.md §1.6, §2.3; fault 34).

``equity_mode``:
- ``event_returns_only`` (default): no curve; the run's ``equity_metrics`` are null.
- ``daily_equity_curve``: the old exit-date curve (:func:`exit_date_curve`): one point per
  date on which trades exit, the mean net return of those trades. Open positions are never
  marked, so its drawdown and Sharpe are those of a series of exit events, not of days.
- ``daily_mark_to_market`` (new, fault 34; :func:`mark_to_market_curve`): one point per
  trading day of the run's calendar from the first entry to the last exit; every open
  position is marked at that day's close and the day's return is the equal-weight mean of
  the open positions' returns (0 with none open). It is a diagnostic of the trade set as an
  equally weighted book, not a capital-constrained portfolio.

Both return ``(curve, metrics)`` with the same metric keys (the mark-to-market one adds
``days_in_market_share``); Sharpe is annualised with sqrt(252) in both, which only the
mark-to-market curve (one point per trading day) justifies.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.backtest.metrics import valid_trades

EQUITY_MODES = ("event_returns_only", "daily_equity_curve", "daily_mark_to_market")
TRADING_DAYS_PER_YEAR = 252
_CURVE_SCHEMA = {"trade_date": pl.Date, "daily_return": pl.Float64}


def _check_capital(capital_base: float) -> None:
    if not capital_base > 0:
        raise ValueError("capital_base must be > 0")


def _longest_true_run(mask: np.ndarray) -> int:
    """Length of the longest run of consecutive True values."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((ends - starts).max()) if starts.size else 0


def _equity(daily: pl.DataFrame, capital_base: float,
            capital_is_peak: bool) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Add equity and drawdown to ``daily`` (trade_date, daily_return, sorted by date) and
    compute the §2.3 metrics. A non-finite daily return counts as 0. The drawdown's running
    peak starts at the first point, or at ``capital_base`` when ``capital_is_peak``."""
    r = pl.when(pl.col("daily_return").is_finite()).then(pl.col("daily_return")).otherwise(0.0)
    peak = pl.col("equity").cum_max()
    if capital_is_peak:
        peak = pl.max_horizontal(peak, pl.lit(capital_base))
    curve = daily.with_columns(equity=capital_base * (1.0 + r).cum_prod()).with_columns(
        drawdown=pl.col("equity") / peak - 1.0
    )
    if curve.height == 0:
        return curve, {"capital_base": capital_base, "cumulative_return": 0.0,
                       "max_drawdown": 0.0, "max_drawdown_days": 0, "daily_vol": None,
                       "sharpe_proxy": None, "cagr_proxy": None}
    returns = curve.select(r).to_series().to_numpy()
    last = float(curve["equity"][-1])
    points = curve.height
    daily_vol = float(np.std(returns))
    sharpe = None
    if points >= 2 and daily_vol > 0:
        sharpe = float(returns.mean() / daily_vol * math.sqrt(TRADING_DAYS_PER_YEAR))
    cagr = None
    if points >= 2 and last > 0:
        days = (curve["trade_date"][-1] - curve["trade_date"][0]).days
        cagr = (last / capital_base) ** (1.0 / (max(1, days) / 365.25)) - 1.0
    return curve, {
        "capital_base": capital_base,
        "cumulative_return": last / capital_base - 1.0,
        "max_drawdown": float(curve["drawdown"].min()),
        "max_drawdown_days": _longest_true_run(curve["drawdown"].to_numpy() < 0),
        "daily_vol": daily_vol,
        "sharpe_proxy": sharpe,
        "cagr_proxy": cagr,
    }


def exit_date_curve(trades: pl.DataFrame,
                    capital_base: float = 1.0) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The old ``daily_equity_curve`` (§2.3): one row per exit date with valid trades.

    daily_return = mean net return of the valid trades exiting that date (equal weight per
    trade); equity = capital_base * cumulative product of (1 + daily_return); drawdown =
    equity / running max - 1. ``max_drawdown_days`` counts curve rows (exit dates), not
    calendar days; ``daily_vol`` is the population std of the daily returns; ``sharpe_proxy``
    needs >= 2 points and a positive vol; ``cagr_proxy`` uses years = max(1, days from first to
    last point) / 365.25 and needs >= 2 points and a positive final equity. No valid trade:
    empty curve, cumulative_return 0, max_drawdown 0, max_drawdown_days 0, the rest null.
    """
    _check_capital(capital_base)
    daily = (
        valid_trades(trades)
        .filter(pl.col("exit_date").is_not_null())
        .group_by("exit_date")
        .agg(daily_return=pl.col("net_return").mean())
        .rename({"exit_date": "trade_date"})
        .sort("trade_date")
    )
    return _equity(daily.cast(_CURVE_SCHEMA), capital_base, capital_is_peak=False)


def _held_rows(trades: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """One row per (valid trade, bar it is held through), entry bar to exit bar inclusive,
    with the position's return on that bar (rules in :func:`mark_to_market_curve`)."""
    sorted_bars = bars.select("ticker", "trade_date", "close").sort("ticker", "trade_date")
    index = sorted_bars.with_row_index("bar").with_columns(pl.col("bar").cast(pl.Int64))
    positions = valid_trades(trades).select(
        "ticker", "side", "entry_date", "exit_date", "entry_price", "exit_price",
        cost=pl.col("fees") + pl.col("slippage"),
    )
    for end in ("entry", "exit"):
        positions = positions.join(
            index.select("ticker", pl.col("trade_date").alias(f"{end}_date"),
                         pl.col("bar").alias(f"{end}_bar")),
            on=["ticker", f"{end}_date"], how="left",
        )
    if positions["entry_bar"].null_count() or positions["exit_bar"].null_count():
        raise ValueError("every valid trade's entry and exit date must be a bar of its ticker")
    held = positions.with_columns(bar=pl.int_ranges("entry_bar", pl.col("exit_bar") + 1))
    held = held.explode("bar")
    closes = sorted_bars["close"]
    held = held.with_columns(
        trade_date=sorted_bars["trade_date"].gather(held["bar"]),
        close=closes.gather(held["bar"]),
        prev_close=closes.gather((held["bar"] - 1).clip(lower_bound=0)),
    )
    is_entry, is_exit = pl.col("bar") == pl.col("entry_bar"), pl.col("bar") == pl.col("exit_bar")
    num = pl.when(is_exit).then(pl.col("exit_price")).otherwise(pl.col("close"))
    den = pl.when(is_entry).then(pl.col("entry_price")).otherwise(pl.col("prev_close"))
    ratio = pl.when(pl.col("side") == "SHORT").then(den / num).otherwise(num / den)
    half_cost = pl.col("cost") / 2.0
    charged = (ratio - 1.0 - pl.when(is_entry).then(half_cost).otherwise(0.0)
               - pl.when(is_exit).then(half_cost).otherwise(0.0))
    finite = pl.when(charged.is_finite()).then(charged).otherwise(0.0)
    return held.select("trade_date", position_return=finite)


def mark_to_market_curve(trades: pl.DataFrame, bars: pl.DataFrame,
                         capital_base: float = 1.0) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Daily mark-to-market curve (fault 34): one row per trading day of the run's calendar
    (the distinct ``trade_date`` values of ``bars``) from the first entry to the last exit.

    ``bars`` = the run's rows (ticker, trade_date, close). Each valid trade is held from its
    entry bar to its exit bar inclusive and marked at every close in between:
    - LONG bar return = num/den - 1, SHORT = den/num - 1, with num = the exit price on the
      exit bar and the close otherwise, den = the entry price on the entry bar and the
      previous close otherwise. The product of a trade's (1 + bar return) is therefore
      exactly 1 + its gross return (SHORT in the engine's entry/exit - 1 form: the short leg
      behaves like a long position in 1/price).
    - half of the round-trip cost (``fees + slippage``) is charged on the entry bar, half on
      the exit bar; compounded this way the costs differ slightly from the engine's additive
      net return.
    - the day's return is the equal-weight mean over the positions with a bar that day, 0
      when none is open; a position whose ticker has no bar on a calendar day contributes
      nothing that day (its move is booked on its next bar). Non-finite bar returns (a
      non-positive close) count as 0.
    Columns: trade_date, daily_return, equity, drawdown, open_positions. Metrics: those of
    :func:`exit_date_curve` over these trading days (Sharpe with sqrt(252), drawdown days in
    trading days), except that the drawdown is measured from ``capital_base`` (a loss on the
    first day is a drawdown; the old curve's running peak starts at its first point), plus
    ``days_in_market_share`` = share of curve days with an open position (null without a
    curve).
    """
    _check_capital(capital_base)
    held = _held_rows(trades, bars)
    per_day = held.group_by("trade_date").agg(
        daily_return=pl.col("position_return").mean(),
        open_positions=pl.len().cast(pl.Int64),
    )
    if held.height:
        first, last = held["trade_date"].min(), held["trade_date"].max()
        calendar = bars.select(pl.col("trade_date").unique()).filter(
            pl.col("trade_date").is_between(first, last)
        )
    else:
        calendar = pl.DataFrame(schema={"trade_date": pl.Date})
    daily = (
        calendar.join(per_day, on="trade_date", how="left")
        .with_columns(pl.col("daily_return").fill_null(0.0),
                      pl.col("open_positions").fill_null(0))
        .sort("trade_date")
        .select("trade_date", "daily_return", "open_positions")
    )
    curve, metrics = _equity(daily, capital_base, capital_is_peak=True)
    share = float((curve["open_positions"] > 0).mean()) if curve.height else None
    curve = curve.select("trade_date", "daily_return", "equity", "drawdown", "open_positions")
    return curve, {**metrics, "days_in_market_share": share}
