"""Equity curves (spec §2.3; fault 34): the old exit-date curve and the daily mark-to-market
curve, on hand-written trades and bars."""

from __future__ import annotations

import math
from datetime import date

import polars as pl
import pytest

from mf_pipeline.lib.backtest.equity import exit_date_curve, mark_to_market_curve

SQRT252 = math.sqrt(252)
METRIC_KEYS = ["capital_base", "cumulative_return", "max_drawdown", "max_drawdown_days",
               "daily_vol", "sharpe_proxy", "cagr_proxy"]


def d(month_day: str) -> date:
    """'12-29' -> 2023-12-29, '01-05' -> 2024-01-05."""
    month, day = (int(x) for x in month_day.split("-"))
    return date(2023 if month == 12 else 2024, month, day)


def trades(rows: list[tuple], cost: float = 0.0) -> pl.DataFrame:
    """rows: (ticker, side, entry day, entry price, exit day, exit price); gross as the engine
    computes it (long exit/entry - 1, short entry/exit - 1), net = gross - cost. A null exit
    price makes an invalid trade."""
    records = []
    for ticker, side, entry_day, entry, exit_day, exit_ in rows:
        gross = None
        if exit_ is not None:
            gross = exit_ / entry - 1.0 if side == "LONG" else entry / exit_ - 1.0
        records.append({
            "ticker": ticker, "side": side, "entry_date": d(entry_day), "entry_price": entry,
            "exit_date": d(exit_day), "exit_price": exit_, "gross_return": gross,
            "net_return": None if gross is None else gross - cost,
            "fees": cost * 2 / 3, "slippage": cost / 3, "is_valid_trade": gross is not None,
        })
    return pl.DataFrame(records, schema_overrides={"exit_price": pl.Float64,
                                                   "gross_return": pl.Float64,
                                                   "net_return": pl.Float64})


def exits(pairs: list[tuple[str, float | None]]) -> pl.DataFrame:
    """Trades that only matter by exit day and net return (for the exit-date curve)."""
    frame = pl.DataFrame({"exit_date": [d(day) for day, _ in pairs],
                          "net_return": [r for _, r in pairs]},
                         schema_overrides={"net_return": pl.Float64})
    return frame.with_columns(is_valid_trade=pl.col("net_return").is_not_null())


# the run's bars (unsorted on purpose): AAA has an extra early day, BBB an extra late day
BARS = pl.DataFrame(
    [("BBB", d(k), c) for k, c in [("01-01", 20.0), ("01-02", 19.0), ("01-03", 18.0),
                                   ("01-04", 20.0), ("01-05", 22.0), ("01-08", 23.0)]]
    + [("AAA", d(k), c) for k, c in [("12-29", 9.9), ("01-01", 10.0), ("01-02", 11.0),
                                     ("01-03", 12.0), ("01-04", 9.0), ("01-05", 10.0)]],
    schema=["ticker", "trade_date", "close"], orient="row",
)


def test_exit_date_curve_hand_computed() -> None:
    # exits: 01-02 {+0.10, -0.02} -> 0.04; 01-03 invalid (no point); 01-04 -0.10; 01-05 +0.05
    t = exits([("01-02", 0.10), ("01-02", -0.02), ("01-03", None), ("01-04", -0.10),
               ("01-05", 0.05)])
    curve, m = exit_date_curve(t, capital_base=100.0)
    assert curve.columns == ["trade_date", "daily_return", "equity", "drawdown"]
    assert curve["trade_date"].to_list() == [d("01-02"), d("01-04"), d("01-05")]
    assert curve["daily_return"].to_list() == pytest.approx([0.04, -0.10, 0.05])
    # 100 * 1.04 = 104; * 0.90 = 93.6; * 1.05 = 98.28
    assert curve["equity"].to_list() == pytest.approx([104.0, 93.6, 98.28])
    assert curve["drawdown"].to_list() == pytest.approx([0.0, 93.6 / 104 - 1, 98.28 / 104 - 1])
    assert list(m) == METRIC_KEYS
    assert m["capital_base"] == 100.0
    assert m["cumulative_return"] == pytest.approx(-0.0172)
    assert m["max_drawdown"] == pytest.approx(-0.1)
    assert m["max_drawdown_days"] == 2
    # returns in hundredths 4, -10, 5: mean -1/3, deviations 13/3, -29/3, 16/3 -> var 1266/27
    vol = math.sqrt(1266 / 27) / 100
    assert m["daily_vol"] == pytest.approx(vol)
    assert m["sharpe_proxy"] == pytest.approx((-1 / 300) / vol * SQRT252)
    # 01-02 -> 01-05 = 3 days
    assert m["cagr_proxy"] == pytest.approx(0.9828 ** (365.25 / 3) - 1)


def test_exit_date_curve_drawdown_runs() -> None:
    # equity 1.1, 0.99, 1.188, 1.1286, 1.07217: drawdown 0, -0.1, 0, -0.05, -0.0975
    t = exits([("01-01", 0.1), ("01-02", -0.1), ("01-03", 0.2), ("01-04", -0.05),
               ("01-05", -0.05)])
    curve, m = exit_date_curve(t)
    assert curve["drawdown"].to_list() == pytest.approx([0.0, -0.1, 0.0, -0.05, -0.0975])
    assert m["max_drawdown"] == pytest.approx(-0.1)
    assert m["max_drawdown_days"] == 2  # the last two rows; the first run has one
    assert m["cumulative_return"] == pytest.approx(1.1 * 0.9 * 1.2 * 0.95 * 0.95 - 1)


def test_exit_date_curve_one_point_and_empty() -> None:
    _, one = exit_date_curve(exits([("01-03", -0.02)]))
    # one point: the old curve's running peak is the point itself -> no drawdown
    assert one["cumulative_return"] == pytest.approx(-0.02) and one["max_drawdown"] == 0.0
    assert one["daily_vol"] == 0.0 and one["sharpe_proxy"] is None and one["cagr_proxy"] is None
    curve, none = exit_date_curve(exits([("01-03", None)]), capital_base=5.0)
    assert curve.height == 0
    assert curve.columns == ["trade_date", "daily_return", "equity", "drawdown"]
    assert none == {"capital_base": 5.0, "cumulative_return": 0.0, "max_drawdown": 0.0,
                    "max_drawdown_days": 0, "daily_vol": None, "sharpe_proxy": None,
                    "cagr_proxy": None}
    with pytest.raises(ValueError, match="capital_base"):
        exit_date_curve(exits([]), capital_base=0.0)


@pytest.mark.parametrize(
    ("row", "days", "bar_returns"),
    [
        # long AAA: in 10.5 on 01-02, closes 11, 12, out 9.5 on 01-04
        (("AAA", "LONG", "01-02", 10.5, "01-04", 9.5), ["01-02", "01-03", "01-04"],
         [11 / 10.5 - 1, 12 / 11 - 1, 9.5 / 12 - 1]),
        # short BBB: in 19.5 on 01-02, closes 19, 18, 20, out 21 on 01-05; bar = prev / mark - 1
        (("BBB", "SHORT", "01-02", 19.5, "01-05", 21.0), ["01-02", "01-03", "01-04", "01-05"],
         [19.5 / 19 - 1, 19 / 18 - 1, 18 / 20 - 1, 20 / 21 - 1]),
        # entry and exit on the same bar
        (("AAA", "LONG", "01-03", 11.5, "01-03", 12.5), ["01-03"], [12.5 / 11.5 - 1]),
    ],
    ids=["long", "short", "same_bar"],
)
def test_mark_to_market_lone_trade_compounds_to_gross(row: tuple, days: list[str],
                                                      bar_returns: list[float]) -> None:
    t = trades([row])
    gross = t["gross_return"][0]
    curve, m = mark_to_market_curve(t, BARS)
    assert curve["trade_date"].to_list() == [d(k) for k in days]
    assert curve["daily_return"].to_list() == pytest.approx(bar_returns)
    assert math.prod(1 + r for r in curve["daily_return"]) == pytest.approx(1 + gross, rel=1e-12)
    assert m["cumulative_return"] == pytest.approx(gross, rel=1e-12)
    assert m["days_in_market_share"] == 1.0


def test_mark_to_market_hand_computed_with_costs() -> None:
    # round-trip cost 0.003: 0.0015 on the entry bar and 0.0015 on the exit bar
    t = trades([
        ("AAA", "LONG", "01-01", 9.8, "01-02", 10.8),     # 01-01: 10/9.8-1, 01-02: 10.8/10-1
        ("BBB", "LONG", "01-01", 20.5, "01-02", 18.5),    # 01-01: 20/20.5-1, 01-02: 18.5/20-1
        ("BBB", "SHORT", "01-04", 19.5, "01-05", 21.0),   # 01-04: 19.5/20-1, 01-05: 20/21-1
        ("AAA", "LONG", "01-05", 10.0, "01-08", None),    # invalid: ignored (no AAA 01-08 bar)
    ], cost=0.003)
    curve, m = mark_to_market_curve(t, BARS, capital_base=2.0)
    # calendar of the run from the first entry (01-01) to the last exit (01-05); 12-29 and
    # 01-08 are outside; 01-03 has no open position
    assert curve["trade_date"].to_list() == [d(k) for k in
                                             ["01-01", "01-02", "01-03", "01-04", "01-05"]]
    assert curve["open_positions"].to_list() == [2, 2, 0, 1, 1]
    daily = [
        ((10 / 9.8 - 1 - 0.0015) + (20 / 20.5 - 1 - 0.0015)) / 2,   # -0.0034910...
        ((0.08 - 0.0015) + (-0.075 - 0.0015)) / 2,                   # 0.001
        0.0,
        19.5 / 20 - 1 - 0.0015,                                      # -0.0265
        20 / 21 - 1 - 0.0015,                                        # -0.0491190...
    ]
    assert curve["daily_return"].to_list() == pytest.approx(daily)
    equity, peak, drawdown = [], 2.0, []
    for r in daily:  # independent reference: compounding from the capital base
        equity.append((equity[-1] if equity else 2.0) * (1 + r))
        peak = max(peak, equity[-1])
        drawdown.append(equity[-1] / peak - 1)
    assert curve["equity"].to_list() == pytest.approx(equity)
    assert curve["drawdown"].to_list() == pytest.approx(drawdown)
    assert list(m) == [*METRIC_KEYS, "days_in_market_share"]
    # the first day already loses: measured from the capital base, every day is in drawdown
    assert m["max_drawdown"] == pytest.approx(equity[-1] / 2.0 - 1)
    assert m["max_drawdown_days"] == 5
    assert m["cumulative_return"] == pytest.approx(equity[-1] / 2.0 - 1)
    mean = sum(daily) / 5
    vol = math.sqrt(sum((r - mean) ** 2 for r in daily) / 5)
    assert m["daily_vol"] == pytest.approx(vol)
    assert m["sharpe_proxy"] == pytest.approx(mean / vol * SQRT252)
    assert m["cagr_proxy"] == pytest.approx((equity[-1] / 2.0) ** (365.25 / 4) - 1)
    assert m["days_in_market_share"] == pytest.approx(0.8)


def test_mark_to_market_empty_and_unknown_dates() -> None:
    curve, m = mark_to_market_curve(trades([("AAA", "LONG", "01-02", 10.0, "01-03", None)]),
                                    BARS, capital_base=3.0)
    assert curve.height == 0
    assert curve.columns == ["trade_date", "daily_return", "equity", "drawdown",
                             "open_positions"]
    assert m["cumulative_return"] == 0.0 and m["max_drawdown"] == 0.0
    assert m["sharpe_proxy"] is None and m["days_in_market_share"] is None
    with pytest.raises(ValueError, match="bar of its ticker"):
        mark_to_market_curve(trades([("AAA", "LONG", "01-02", 10.0, "01-08", 11.0)]), BARS)
