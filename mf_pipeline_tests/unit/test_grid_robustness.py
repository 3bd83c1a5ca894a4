"""Robustness scores (backtest_ops.md §5.4; faults 10, 11, 12, 13, 14, 27) on a hand-made table.

Source ``flow`` (4 SUCCESS rows + 1 FAILED row that must be dropped), no drawdowns at all:
    idx  exp    pf    std   ret_cv  down  fee  trades  zero-flag  sharpe
    1    0.02   1.5   0.05  2.0     0.03  0    50      False      null
    2    0.02   +inf  0.04  null    0.03  5    200     False      null
    3    null   null  null  null    null  10   0       null       null
    4   -0.01   0.5   0.05  3.0     0.05  0    100     False      NaN
Source ``hmm`` (2 rows, with drawdowns): A = idx 1, B = idx 2
    A    0.01   2.0   0.02  1.0     0.01  fee 0 slip 2  trades 100  dd -0.10
    B    0.01   1.0   0.03  1.0     null  fee 0 slip 0  trades 300  dd -0.05
Source ``cluster``: a single row (every rank 1.0), null drawdown, 10 trades.
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from mf_pipeline.lib.grids.robustness import nan_warning_total, rank_score, robustness_scores

INF, NAN = math.inf, math.nan
SCORES = ("rank_expectancy", "rank_profit_factor", "drawdown_score", "consistency_score",
          "ret_cv_score", "tail_stability_score", "total_cost_bps", "cost_robustness_score",
          "hygiene_score", "robustness_score_v1", "robustness_score_v2", "robustness_score")


def _table() -> pl.DataFrame:
    rows = [  # source, idx, status, exp, pf, std, ret_cv, down, fee, slip, trades, dd, zero, sharpe
        ("flow", 1, "SUCCESS", 0.02, 1.5, 0.05, 2.0, 0.03, 0.0, 0.0, 50, None, False, None),
        ("hmm", 1, "SUCCESS", 0.01, 2.0, 0.02, 1.0, 0.01, 0.0, 2.0, 100, -0.10, False, 1.0),
        ("flow", 2, "SUCCESS", 0.02, INF, 0.04, None, 0.03, 5.0, 0.0, 200, None, False, None),
        ("flow", 5, "FAILED", None, None, None, None, None, 0.0, 0.0, None, None, None, None),
        ("flow", 3, "SUCCESS", None, None, None, None, None, 10.0, 0.0, 0, None, None, None),
        ("cluster", 1, "SUCCESS", None, None, 0.01, None, None, 0.0, 0.0, 10, None, False, None),
        ("hmm", 2, "SUCCESS", 0.01, 1.0, 0.03, 1.0, None, 0.0, 0.0, 300, -0.05, False, 0.5),
        ("flow", 4, "SUCCESS", -0.01, 0.5, 0.05, 3.0, 0.05, 0.0, 0.0, 100, None, False, NAN),
    ]
    names = ["source_type", "combo_index", "status", "expectancy", "profit_factor",
             "return_std", "ret_cv", "downside_std", "fee_bps_per_side",
             "slippage_bps_per_side", "trade_count", "max_drawdown", "is_zero_trade_combo",
             "sharpe_proxy"]
    return pl.DataFrame(rows, schema=names, orient="row")


def _by_key(frame: pl.DataFrame) -> dict[tuple[str, int], dict]:
    return {(r["source_type"], r["combo_index"]): r for r in frame.iter_rows(named=True)}


def test_rank_score_average_ties_inf_first_nulls_zero() -> None:
    values = pl.Series("x", [3.0, 1.0, 3.0, None, NAN, INF, -INF])
    # ranked: inf r1, 3 and 3 share r 2.5, 1 r4 over n = 4 -> 1, 1 - 1.5/3, 1 - 3/3
    assert rank_score(values, True).to_list() == [0.5, 0.0, 0.5, 0.0, 0.0, 1.0, 0.0]
    # lower is better: 1 r1, 3 and 3 r 2.5, inf r4
    assert rank_score(values, False).to_list() == [0.5, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0]


def test_rank_score_single_row_empty_set_and_one_ranked_value() -> None:
    assert rank_score(pl.Series("x", [None], dtype=pl.Float64), True).to_list() == [1.0]
    assert rank_score(pl.Series("x", [None, NAN]), True).to_list() == [0.5, 0.5]
    assert rank_score(pl.Series("x", [None, 2.0]), False).to_list() == [0.0, 1.0]
    # all tied: average rank 2 of 3 -> 1 - 1/2 for everyone (the old ordinal rank gave 1, .5, 0)
    assert rank_score(pl.Series("x", [7, 7, 7]), True).to_list() == [0.5, 0.5, 0.5]


def test_nan_warning_total_counts_raw_non_finite_values_but_not_inf_profit_factor() -> None:
    raw = pl.DataFrame({"win_rate": [NAN, 0.5, None], "expectancy": [-INF, 0.1, None],
                        "profit_factor": [INF, NAN, None], "trade_count": [3, 4, 0],
                        "other": [NAN, NAN, NAN]})
    assert nan_warning_total(raw).to_list() == [2, 1, 0]
    assert nan_warning_total(raw.select("other")).to_list() == [0, 0, 0]


def test_scores_by_hand() -> None:
    out = robustness_scores(_table(), {})
    assert out.height == 7  # the FAILED row is not scored
    got = _by_key(out)
    expected = {
        # flow, k = 4: exp {0.02, 0.02, -0.01} -> .75 .75 0; pf {1.5, inf, 0.5} -> .5 1 0;
        # std {0.05, 0.04, 0.05} -> .25 1 .25; ret_cv {2, 3} -> 1 0; down {.03, .03, .05} ->
        # .75 .75 0; cost {0, 5, 10, 0} -> ranks 1.5 3 4 1.5 over 4 -> 5/6 1/3 0 5/6;
        # nan warnings 0 0 0 1 (sharpe NaN) -> hygiene .7*.5+.3, .7+.3, 0+.3, .7+0.
        # No drawdown: v1 = 100 * (.3 e + .2 pf + .15 c + .1 cost + .05 h) / .8
        ("flow", 1): (0.75, 0.5, None, 0.25, 1.0, 0.75, 0.0, 5 / 6, 0.65,
                      125 * (0.225 + 0.1 + 0.0375 + 0.1 * 5 / 6 + 0.0325)),
        ("flow", 2): (0.75, 1.0, None, 1.0, 0.0, 0.75, 5.0, 1 / 3, 1.0,
                      125 * (0.225 + 0.2 + 0.15 + 0.1 / 3 + 0.05)),
        ("flow", 3): (0.0, 0.0, None, 0.0, 0.0, 0.0, 10.0, 0.0, 0.3, 125 * 0.015),
        ("flow", 4): (0.0, 0.0, None, 0.25, 0.0, 0.0, 0.0, 5 / 6, 0.7,
                      125 * (0.0375 + 0.1 * 5 / 6 + 0.035)),
        # hmm, k = 2: exp tie -> .5 .5; pf 1 0; |dd| .10 vs .05 -> smallest loss best: 0 1;
        # std 1 0; ret_cv tie .5 .5; down {0.01} -> 1, null -> 0; cost 2 vs 0 -> 0 1;
        # hygiene 1 1. v1 A = 100 (.15 + .2 + 0 + .15 + 0 + .05), B = 100 (.15 + 0 + .2 + 0
        # + .1 + .05)
        ("hmm", 1): (0.5, 1.0, 0.0, 1.0, 0.5, 1.0, 2.0, 0.0, 1.0, 55.0),
        ("hmm", 2): (0.5, 0.0, 1.0, 0.0, 0.5, 0.0, 0.0, 1.0, 1.0, 50.0),
        # cluster, k = 1: every rank 1.0, but no drawdown -> null and v1 over the rest:
        # hygiene .7 * .1 + .3 = .37; v1 = 125 * (.3 + .2 + .15 + .1 + .05 * .37)
        ("cluster", 1): (1.0, 1.0, None, 1.0, 1.0, 1.0, 0.0, 1.0, 0.37, 125 * 0.7685),
    }
    names = ("rank_expectancy", "rank_profit_factor", "drawdown_score", "consistency_score",
             "ret_cv_score", "tail_stability_score", "total_cost_bps", "cost_robustness_score",
             "hygiene_score", "robustness_score_v1")
    for key, values in expected.items():
        for name, value in zip(names, values, strict=True):
            if value is None:
                assert got[key][name] is None, (key, name)
            else:
                assert got[key][name] == pytest.approx(value), (key, name)
    # v2 = clip(0.7 v1 + 15 ret_cv + 10 tail + 5 cost - 20 zero)
    v2 = {("flow", 1): 0.7 * got[("flow", 1)]["robustness_score_v1"] + 15 + 7.5 + 25 / 6,
          ("flow", 2): 0.7 * got[("flow", 2)]["robustness_score_v1"] + 7.5 + 5 / 3,
          ("flow", 3): 0.0,  # 0.7 * 1.875 - 20 < 0, flag from trade_count 0
          ("flow", 4): 0.7 * got[("flow", 4)]["robustness_score_v1"] + 25 / 6,
          ("hmm", 1): 38.5 + 7.5 + 10, ("hmm", 2): 35 + 7.5 + 5,
          ("cluster", 1): 0.7 * 125 * 0.7685 + 30}
    for key, value in v2.items():
        assert got[key]["robustness_score_v2"] == pytest.approx(value), key
        assert got[key]["robustness_score"] == got[key]["robustness_score_v2"]
    assert got[("flow", 1)]["robustness_score_v1"] == pytest.approx(59.7916666667)
    assert got[("flow", 2)]["robustness_score_v2"] == pytest.approx(66.7708333333)
    assert [got[k]["nan_warning_total"] for k in sorted(got)] == [0, 0, 0, 0, 1, 0, 0]
    assert [got[k]["is_zero_trade_combo"] for k in sorted(got)] == [False, False, False,
                                                                    True, False, False, False]
    assert [got[k]["drawdown_scored"] for k in sorted(got)] == [False] * 5 + [True, True]


def test_shuffling_rows_changes_no_score() -> None:
    table = _table()
    reference = robustness_scores(table, {}).sort("source_type", "combo_index")
    for seed in range(5):
        shuffled = table.sample(fraction=1.0, shuffle=True, seed=seed)
        out = robustness_scores(shuffled, {}).sort("source_type", "combo_index")
        assert out.select(SCORES).equals(reference.select(SCORES)), seed


def test_sources_are_scored_separately() -> None:
    table = _table()
    alone = robustness_scores(table.filter(pl.col("source_type") == "hmm"), {})
    together = robustness_scores(table, {}).filter(pl.col("source_type") == "hmm")
    assert alone.select(SCORES).equals(together.select(SCORES))


def test_zero_trade_comes_from_trade_count_without_edge_metrics() -> None:
    # edge metrics switched off: no ret_cv, downside_std nor zero-trade flag columns (fault 27)
    table = _table().filter(pl.col("source_type") == "hmm").drop(
        "ret_cv", "downside_std", "is_zero_trade_combo")
    got = _by_key(robustness_scores(table, {}))
    # ret_cv and tail scores 0.5 (nothing ranked); no -20: A = 0.7 * 55 + 7.5 + 5 + 0
    assert got[("hmm", 1)]["is_zero_trade_combo"] is False
    assert got[("hmm", 1)]["robustness_score_v2"] == pytest.approx(38.5 + 7.5 + 5.0)
    assert got[("hmm", 2)]["robustness_score_v2"] == pytest.approx(35.0 + 7.5 + 5.0 + 5.0)


def test_given_nan_warning_total_is_kept_and_weights_override() -> None:
    table = _table().filter(pl.col("source_type") == "hmm").with_columns(
        nan_warning_total=pl.Series([3, 0]))
    got = _by_key(robustness_scores(table, {"drawdown_score": 0.0, "hygiene": 0.25}))
    # A: hygiene .7 + 0 = .7; v1 = 100 (.15 + .2 + .15 + .25 * .7); B: 100 (.15 + .1 + .25)
    assert got[("hmm", 1)]["hygiene_score"] == pytest.approx(0.7)
    assert got[("hmm", 1)]["robustness_score_v1"] == pytest.approx(67.5)
    assert got[("hmm", 2)]["robustness_score_v1"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="unknown robustness weight"):
        robustness_scores(table, {"sharpe": 1.0})
