"""Backtest metrics (spec §2.1, §2.2, §2.4; faults 9, 10, 14, 15) on a hand-written trade table.

Six trades; the net returns of the five valid ones form the valid return set R:
    t1 AAA LONG  state 1  +0.10  hold 3  HORIZON
    t2 AAA SHORT state 3  -0.05  hold 5  STATE_EXIT
    t3 BBB LONG  state 1   0.00  hold 2  HORIZON
    t4 BBB LONG  state 1  +0.04  hold 4  HORIZON
    t5 CCC SHORT state 3  -0.01  hold 1  END_OF_DATA
    t6 CCC LONG  state 1  invalid (net null)  hold 2  END_OF_DATA
State 1 = S1 / ALLOW / LONG_BIAS, state 3 = S3 / WATCH / SHORT_BIAS.
R sorted = [-0.05, -0.01, 0.00, 0.04, 0.10]; sum 0.08; mean 0.016.
Population variance of R: deviations 0.084, -0.066, -0.016, 0.024, -0.026; squares sum
0.01292; / 5 = 0.002584.
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from mf_pipeline.lib.backtest.metrics import (
    by_state,
    by_symbol,
    edge_by_state,
    edge_metrics,
    exit_reason_summary,
    policy_trade_class_mix,
    sort_best_first,
    trade_summary,
)

STATES = {1: ("S1", "ALLOW", "LONG_BIAS"), 3: ("S3", "WATCH", "SHORT_BIAS")}
# ticker, side, state, net, hold, reason, score
ROWS = [
    ("AAA", "LONG", 1, 0.10, 3, "HORIZON", 0.5),
    ("AAA", "SHORT", 3, -0.05, 5, "STATE_EXIT", 0.2),
    ("BBB", "LONG", 1, 0.00, 2, "HORIZON", 0.6),
    ("BBB", "LONG", 1, 0.04, 4, "HORIZON", 0.7),
    ("CCC", "SHORT", 3, -0.01, 1, "END_OF_DATA", 0.4),
    ("CCC", "LONG", 1, None, 2, "END_OF_DATA", 0.9),
]
DIAG = {"input_rows": 100, "entry_signals": 9, "skipped_no_next_bar_entry": 2,
        "skipped_due_overlap": 3, "forced_exit_last_bar": 2, "invalid_trade_count": 1}


def trades(rows: list[tuple] = ROWS) -> pl.DataFrame:
    records = [
        {"ticker": t, "side": side, "entry_state_id": s, "entry_state_label": STATES[s][0],
         "entry_state_class": STATES[s][1], "entry_state_direction_hint": STATES[s][2],
         "entry_state_score": score, "net_return": net, "hold_bars_realized": hold,
         "exit_reason": reason, "is_valid_trade": net is not None}
        for t, side, s, net, hold, reason, score in rows
    ]
    schema = {"ticker": pl.Utf8, "side": pl.Utf8, "entry_state_id": pl.Int32,
              "entry_state_label": pl.Utf8, "entry_state_class": pl.Utf8,
              "entry_state_direction_hint": pl.Utf8, "entry_state_score": pl.Float64,
              "net_return": pl.Float64, "hold_bars_realized": pl.Int64,
              "exit_reason": pl.Utf8, "is_valid_trade": pl.Boolean}
    return pl.DataFrame(records, schema=schema)


def test_trade_summary_hand_computed() -> None:
    s = trade_summary(trades(), DIAG)
    assert (s["trade_count"], s["long_trade_count"], s["short_trade_count"]) == (6, 4, 2)
    # wins {0.10, 0.04}; losses {-0.05, 0.00, -0.01} (zero is a loss)
    assert s["win_rate"] == pytest.approx(0.4)
    assert s["avg_return"] == pytest.approx(0.016)
    assert s["median_return"] == pytest.approx(0.0)
    assert s["avg_win"] == pytest.approx(0.07)
    assert s["avg_loss"] == pytest.approx(-0.02)
    # PF = (0.10 + 0.04) / |-0.05 - 0.01| (the zero is in neither sum)
    assert s["profit_factor"] == pytest.approx(0.14 / 0.06)
    assert s["profit_factor_inf"] is False
    # expectancy = 0.4 * 0.07 + 0.6 * (-0.02) = 0.016 = avg_return (fault 9)
    assert s["expectancy"] == pytest.approx(0.016)
    assert s["expectancy"] == pytest.approx(s["avg_return"], abs=1e-15)
    assert s["return_std"] == pytest.approx(math.sqrt(0.002584))
    # valid holds 3, 5, 2, 4, 1
    assert s["avg_hold_bars"] == pytest.approx(3.0)
    assert s["median_hold_bars"] == pytest.approx(3.0)
    assert s["skipped_signal_count"] == 5 and s["invalid_trade_count"] == 1
    assert list(s) == [
        "trade_count", "long_trade_count", "short_trade_count", "win_rate", "avg_return",
        "median_return", "avg_win", "avg_loss", "profit_factor", "profit_factor_inf",
        "expectancy", "return_std", "avg_hold_bars", "median_hold_bars",
        "skipped_signal_count", "invalid_trade_count"]


def test_profit_factor_without_losing_trade_is_inf_with_flag() -> None:
    # R = {+0.02, 0.00}: sum(r<0) = 0 and sum(r>0) > 0 -> +inf (the old tool: null)
    s = trade_summary(trades([ROWS[0][:3] + (0.02, 1, "HORIZON", 0.5),
                              ROWS[2][:3] + (0.0, 1, "HORIZON", 0.5)]), {})
    assert s["profit_factor"] == float("inf") and s["profit_factor_inf"] is True
    assert s["win_rate"] == pytest.approx(0.5) and s["avg_loss"] == pytest.approx(0.0)
    # only a zero return: no win, no loss sum -> null, flag false
    s = trade_summary(trades([ROWS[2][:3] + (0.0, 1, "HORIZON", 0.5)]), {})
    assert s["profit_factor"] is None and s["profit_factor_inf"] is False


@pytest.mark.parametrize("rows", [[], [ROWS[5]]], ids=["no_trades", "only_invalid"])
def test_trade_summary_without_valid_trade(rows: list[tuple]) -> None:
    s = trade_summary(trades(rows), {"invalid_trade_count": len(rows)})
    assert s["trade_count"] == len(rows) and s["invalid_trade_count"] == len(rows)
    for k in ("win_rate", "avg_return", "median_return", "avg_win", "avg_loss", "profit_factor",
              "expectancy", "return_std", "avg_hold_bars", "median_hold_bars"):
        assert s[k] is None, k
    assert s["profit_factor_inf"] is False and s["skipped_signal_count"] == 0


def test_by_state_hand_computed() -> None:
    out = by_state(trades())
    assert out["entry_state_id"].to_list() == [1, 3]  # trade_count 3, 2
    s1, s3 = out.rows(named=True)
    # state 1: R = 0.10, 0.00, 0.04 (t6 invalid); mean 0.14/3; deviations 16/3, -14/3, -2/3
    # hundredths -> variance 456/27 e-4
    assert s1["trade_count"] == 3 and s1["win_count"] == 2
    assert s1["avg_return"] == pytest.approx(0.14 / 3)
    assert s1["median_return"] == pytest.approx(0.04)
    assert s1["avg_hold_bars"] == pytest.approx(3.0)
    assert s1["return_std"] == pytest.approx(math.sqrt(456 / 27) / 100)
    assert s1["avg_win"] == pytest.approx(0.07) and s1["avg_loss"] == pytest.approx(0.0)
    assert s1["net_pnl"] == pytest.approx(0.14)
    assert s1["state_score"] == pytest.approx(0.6)  # mean(0.5, 0.6, 0.7)
    assert s1["win_rate"] == pytest.approx(2 / 3)
    assert s1["contribution_share"] == pytest.approx(0.14 / 0.08)
    assert s1["trade_share"] == pytest.approx(0.6)
    assert s1["profit_factor_proxy"] == float("inf")  # 0.07 / |0.0|
    assert s1["expectancy"] == pytest.approx(2 / 3 * 0.07)
    # state 3: R = -0.05, -0.01
    assert s3["trade_count"] == 2 and s3["win_count"] == 0
    assert s3["avg_return"] == pytest.approx(-0.03)
    assert s3["median_return"] == pytest.approx(-0.03)
    assert s3["return_std"] == pytest.approx(0.02)
    assert s3["avg_win"] is None and s3["avg_loss"] == pytest.approx(-0.03)
    assert s3["state_score"] == pytest.approx(0.3)
    assert s3["contribution_share"] == pytest.approx(-0.06 / 0.08)
    assert s3["trade_share"] == pytest.approx(0.4)
    assert s3["profit_factor_proxy"] is None and s3["expectancy"] is None
    assert out.columns[:4] == ["entry_state_id", "entry_state_label", "entry_state_class",
                               "entry_state_direction_hint"]


def test_by_state_ties_by_state_key_and_zero_total() -> None:
    # two states with one trade each, state 3 listed first; returns sum to 0 -> denominator 1
    rows = [ROWS[1][:3] + (-0.02, 1, "HORIZON", 0.1), ROWS[0][:3] + (0.02, 1, "HORIZON", 0.1)]
    out = by_state(trades(rows))
    assert out["entry_state_id"].to_list() == [1, 3]
    assert out["contribution_share"].to_list() == pytest.approx([0.02, -0.02])


def test_by_symbol_hand_computed() -> None:
    out = by_symbol(trades())
    assert out["ticker"].to_list() == ["AAA", "BBB", "CCC"]  # net 0.05, 0.04, -0.01
    assert out["trade_count"].to_list() == [2, 2, 1]
    assert out["avg_return"].to_list() == pytest.approx([0.025, 0.02, -0.01])
    assert out["median_return"].to_list() == pytest.approx([0.025, 0.02, -0.01])
    assert out["return_std"].to_list() == pytest.approx([0.075, 0.02, 0.0])
    assert out["win_count"].to_list() == [1, 1, 0]
    assert out["avg_hold_bars"].to_list() == pytest.approx([4.0, 3.0, 1.0])
    assert out["net_pnl"].to_list() == pytest.approx([0.05, 0.04, -0.01])
    assert out["win_rate"].to_list() == pytest.approx([0.5, 0.5, 0.0])
    # signed share of the total 0.08
    assert out["contribution"].to_list() == pytest.approx([0.625, 0.5, -0.125])


def test_by_symbol_near_zero_total_and_ties() -> None:
    # BBB and AAA both +0.01 net, CCC -0.02: total 0 -> contribution = net_pnl / 1
    rows = [("BBB", "LONG", 1, 0.01, 1, "HORIZON", 0.1),
            ("CCC", "LONG", 1, -0.02, 1, "HORIZON", 0.1),
            ("AAA", "LONG", 1, 0.01, 1, "HORIZON", 0.1)]
    out = by_symbol(trades(rows))
    assert out["ticker"].to_list() == ["AAA", "BBB", "CCC"]
    assert out["contribution"].to_list() == pytest.approx([0.01, 0.01, -0.02])


def test_exit_reason_summary_all_trades() -> None:
    out = exit_reason_summary(trades())
    assert out["exit_reason"].to_list() == ["HORIZON", "END_OF_DATA", "STATE_EXIT"]
    assert out["trade_count"].to_list() == [3, 2, 1]
    # END_OF_DATA: t5 -0.01 and t6 null (counted, ignored in the averages)
    assert out["avg_return"].to_list() == pytest.approx([0.14 / 3, -0.01, -0.05])
    assert out["median_return"].to_list() == pytest.approx([0.04, -0.01, -0.05])
    tied = exit_reason_summary(trades([ROWS[1], ROWS[4]]))
    assert tied["exit_reason"].to_list() == ["END_OF_DATA", "STATE_EXIT"]


def test_edge_metrics_hand_computed() -> None:
    e = edge_metrics(trades(), rows_input=2000, rows_eligible=500)
    assert e["ret_cv"] == pytest.approx(math.sqrt(0.002584) / 0.016)
    # linear quantiles on [-0.05, -0.01, 0, 0.04, 0.10]: p10 at position 0.4, p90 at 3.6
    assert e["ret_p10"] == pytest.approx(-0.05 + 0.4 * 0.04)
    assert e["ret_p90"] == pytest.approx(0.04 + 0.6 * 0.06)
    assert e["downside_std"] == pytest.approx(0.02)  # std0 of {-0.05, -0.01}
    assert e["worst_trade_return"] == pytest.approx(-0.05)
    assert e["best_trade_return"] == pytest.approx(0.10)
    assert e["trades_per_1000_rows"] == pytest.approx(2.5)  # 5 / 2000 * 1000
    assert e["row_usage_rate"] == pytest.approx(0.01)  # 5 / 500
    assert e["turnover_proxy"] == pytest.approx(5 / 3)  # 5 / mean hold 3
    assert e["is_zero_trade_combo"] is False and e["null_metric_count"] == 0


def test_edge_metrics_special_cases() -> None:
    none = edge_metrics(None, 100, 10)
    assert none["is_zero_trade_combo"] is True and none["null_metric_count"] == 10
    assert all(none[k] is None for k in ("ret_cv", "trades_per_1000_rows", "row_usage_rate"))
    for frame in (trades([]), trades([ROWS[5]])):
        empty = edge_metrics(frame, rows_input=100, rows_eligible=0)
        assert empty["trades_per_1000_rows"] == 0.0 and empty["row_usage_rate"] is None
        assert empty["ret_cv"] is None and empty["turnover_proxy"] is None
        assert empty["is_zero_trade_combo"] is True and empty["null_metric_count"] == 7
    # one winning trade: ret_cv = 0 / 0.03, no negative return -> downside_std null
    one = edge_metrics(trades([ROWS[0][:3] + (0.03, 2, "HORIZON", 0.5)]), 10, 0)
    assert one["ret_cv"] == 0.0 and one["downside_std"] is None
    assert one["row_usage_rate"] is None and one["null_metric_count"] == 2
    # mean below 1e-12 -> ret_cv null
    flat = edge_metrics(trades([ROWS[0][:3] + (0.01, 2, "HORIZON", 0.5),
                                ROWS[0][:3] + (-0.01, 2, "HORIZON", 0.5)]), 10, 10)
    assert flat["ret_cv"] is None and flat["null_metric_count"] == 1


def test_policy_trade_class_mix() -> None:
    assert policy_trade_class_mix(trades()) == "ALLOW=3;WATCH=2"  # t6 invalid
    assert policy_trade_class_mix(trades([ROWS[5]])) is None
    unknown = trades(ROWS[:2]).with_columns(
        pl.when(pl.col("side") == "LONG").then(None).otherwise(pl.col("entry_state_class"))
        .alias("entry_state_class"))
    assert policy_trade_class_mix(unknown) == "WATCH=1;UNKNOWN=1"


def test_edge_by_state_hand_computed() -> None:
    out = edge_by_state(trades())
    assert out["entry_state_id"].to_list() == [1, 3]
    s1, s3 = out.rows(named=True)
    # state 1 sorted [0, 0.04, 0.10]: p10 at position 0.2, p90 at 1.8
    assert s1["trade_count"] == 3
    assert s1["avg_return"] == pytest.approx(0.14 / 3)
    assert s1["median_return"] == pytest.approx(0.04)
    assert s1["ret_cv"] == pytest.approx((math.sqrt(456 / 27) / 100) / (0.14 / 3))
    assert s1["ret_p10"] == pytest.approx(0.2 * 0.04)
    assert s1["ret_p90"] == pytest.approx(0.04 + 0.8 * 0.06)
    assert s1["downside_std"] is None
    assert (s1["worst_trade_return"], s1["best_trade_return"]) == pytest.approx((0.0, 0.10))
    # state 3 sorted [-0.05, -0.01]
    assert s3["ret_cv"] == pytest.approx(0.02 / 0.03)
    assert s3["ret_p10"] == pytest.approx(-0.05 + 0.1 * 0.04)
    assert s3["ret_p90"] == pytest.approx(-0.05 + 0.9 * 0.04)
    assert s3["downside_std"] == pytest.approx(0.02)
    assert (s3["worst_trade_return"], s3["best_trade_return"]) == pytest.approx((-0.05, -0.01))


def test_sort_best_first() -> None:
    inf, nan = float("inf"), float("nan")
    grid = pl.DataFrame({
        "combo_id": ["a", "b", "c", "d", "e", "f"],
        "profit_factor": [1.5, None, inf, nan, 2.0, 1.5],
        "max_drawdown": [-0.30, -0.05, None, 0.0, -0.10, -0.05],
        "ret_cv": [2.0, 0.5, None, inf, nan, 0.5],
    })

    def order(metric: str, frame: pl.DataFrame = grid) -> list[str]:
        return sort_best_first(frame, metric, ["combo_id"])["combo_id"].to_list()

    # +inf first (fault 10), ties by combo_id, null and NaN last (fault 15)
    assert order("profit_factor") == ["c", "e", "a", "f", "b", "d"]
    # drawdown: closest to 0 is best (fault 14)
    assert order("max_drawdown") == ["d", "b", "f", "e", "a", "c"]
    # lower is better; +inf is the worst finite-or-not value, nulls still last
    assert order("ret_cv") == ["b", "f", "a", "d", "c", "e"]
    assert sort_best_first(grid, "max_drawdown", ["combo_id"], lower_is_better=True)[
        "combo_id"].to_list() == ["a", "e", "b", "f", "d", "c"]
    # without a tie-break key, ties keep input order
    reversed_grid = grid.reverse()
    assert sort_best_first(reversed_grid, "profit_factor")["combo_id"].to_list()[:4] == [
        "c", "e", "f", "a"]
    assert sort_best_first(grid, "ret_cv").columns == grid.columns
