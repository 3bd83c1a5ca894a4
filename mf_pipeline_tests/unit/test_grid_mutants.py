"""Values that the mutation run of the grid and report modules found unchecked (docs/GRIDS.md,
"Mutation testing"). Each test pins one reported number or label, worked out by hand, that a
surviving mutant changed; the mutant it kills is named in the test's docstring.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from mf_pipeline.lib.backtest import calibration as cal
from mf_pipeline.lib.backtest.execution import apply_execution
from mf_pipeline.lib.grids.aggregates import (
    best_configs,
    cluster_policy_trade_mix,
    dimension_sensitivity,
    holdbars_profile,
    holdbars_shape,
    source_summary,
)
from mf_pipeline.lib.grids.combos import GridDimensions
from mf_pipeline.lib.grids.compare import (
    compare_report_md,
    compare_table,
    grid_row,
    overlap_table,
    top_signatures,
)
from mf_pipeline.lib.grids.overfitting import (
    dsr_of_returns,
    pbo_cscv,
    probabilistic_sharpe_ratio,
)
from mf_pipeline.lib.grids.robustness import robustness_scores
from mf_pipeline.lib.grids.run import GridOptions, GridSource, run_grid
from mf_pipeline.lib.reports import realism
from mf_pipeline.lib.reports.hybrid_eval import (
    TABLE_SCHEMA,
    final_ranking,
    recommendation_labels,
    score_runs,
    with_combo_scores,
)
from mf_pipeline.lib.reports.scoring import best_row, delta, sort_best, split_comparison
from mf_pipeline.lib.settings import load_settings
from mf_pipeline_tests.unit.test_backtest_execution import MIXED_PARAMS, mixed
from mf_pipeline_tests.unit.test_grid_engine import _inputs

INF, NAN = math.inf, math.nan


def test_null_trade_count_is_a_zero_trade_combo_with_no_volume_hygiene() -> None:
    """robustness_scores 49 (a null trade_count read as 1 trade). Without an
    ``is_zero_trade_combo`` column the flag comes from trade_count, null -> 0: hygiene
    0.7 * min(1, 0 / 100) + 0.3 = 0.3 and the combo is zero-trade (v2 loses 20)."""
    table = pl.DataFrame({"source_type": ["flow", "flow"], "combo_index": [1, 2],
                          "expectancy": [0.01, 0.02], "trade_count": [None, 100],
                          "fee_bps_per_side": [0.0, 0.0], "slippage_bps_per_side": [0.0, 0.0]},
                         schema_overrides={"trade_count": pl.Int64})
    out = robustness_scores(table).sort("combo_index")
    assert out["hygiene_score"].to_list() == pytest.approx([0.3, 1.0])
    assert out["is_zero_trade_combo"].to_list() == [True, False]


def _scored(**columns: list) -> dict[int, dict]:
    """robustness_scores of one source (``flow``, no costs) by combo_index."""
    n = len(next(iter(columns.values())))
    table = pl.DataFrame({"source_type": ["flow"] * n, "combo_index": list(range(1, n + 1)),
                          "fee_bps_per_side": [0.0] * n, "slippage_bps_per_side": [0.0] * n,
                          **columns})
    return {r["combo_index"]: r for r in robustness_scores(table).iter_rows(named=True)}


def test_the_edge_metric_zero_trade_flag_wins_over_trade_count() -> None:
    """robustness_scores 169 (the flag column ignored, always trade_count <= 0). Combo 1 has
    no headline trade but the flag says it traded; combo 2 the other way round."""
    got = _scored(trade_count=[0, 50], is_zero_trade_combo=[False, True])
    assert (got[1]["is_zero_trade_combo"], got[2]["is_zero_trade_combo"]) == (False, True)
    # no metric but trades and costs: every rank 0.5 (nothing ranked) except cost (tie, 0.5);
    # v1 without drawdown = 125 * (.3 .5 + .2 .5 + .15 .5 + .1 .5 + .05 h)
    h1, h2 = 0.3, 0.7 * 0.5 + 0.3
    v1 = [125 * (0.375 + 0.05 * h) for h in (h1, h2)]
    assert got[1]["robustness_score_v1"] == pytest.approx(v1[0])
    # v2 = 0.7 v1 + 15 .5 + 10 .5 + 5 .5 - 20 zero
    assert got[1]["robustness_score_v2"] == pytest.approx(0.7 * v1[0] + 15.0)
    assert got[2]["robustness_score_v2"] == pytest.approx(0.7 * v1[1] + 15.0 - 20.0)


def test_a_non_finite_drawdown_is_not_ranked_among_the_finite_ones() -> None:
    """robustness_scores 181 (drawdown ranked over the whole source: |-inf| = +inf would rank
    last and push the others up). Drawdowns -0.10, -0.05, -inf: the first two rank alone,
    0 and 1; the third is unscored (null, v1 rescaled)."""
    got = _scored(max_drawdown=[-0.10, -0.05, -INF], trade_count=[100, 100, 100])
    assert [got[i]["drawdown_score"] for i in (1, 2, 3)] == [0.0, 1.0, None]
    assert [got[i]["drawdown_scored"] for i in (1, 2, 3)] == [True, True, False]


def test_all_weight_on_drawdown_leaves_rows_without_one_unscored() -> None:
    """robustness_scores 221 (``>=`` for ``>``: 1 / 0). With every weight but the drawdown's
    at 0, a row without a drawdown has no v1 (nothing to rescale) and no v2; the row with a
    drawdown gets 100 * 1.0."""
    weights = {"expectancy_rank": 0.0, "profit_factor_rank": 0.0, "consistency": 0.0,
               "cost_robustness": 0.0, "hygiene": 0.0, "drawdown_score": 1.0}
    table = pl.DataFrame({"source_type": ["flow", "flow"], "combo_index": [1, 2],
                          "max_drawdown": [-0.1, None], "trade_count": [10, 10],
                          "fee_bps_per_side": [0.0, 0.0], "slippage_bps_per_side": [0.0, 0.0]},
                         schema_overrides={"max_drawdown": pl.Float64})
    out = robustness_scores(table, weights).sort("combo_index")
    assert out["robustness_score_v1"].to_list() == [100.0, None]
    assert out["robustness_score_v2"].to_list()[1] is None


def test_scores_are_capped_at_100_when_the_weights_sum_above_1() -> None:
    """robustness_scores 261, 265 and 269 (v1 and v2 not clipped at 100). Weights overridden
    to sum 1.95 (hygiene 1.0); a single combo with a drawdown and 100 clean trades has every
    component 1.0: v1 raw 195 and v2 raw 0.7 * 195 + 30, both reported as 100."""
    table = pl.DataFrame({"source_type": ["flow"], "combo_index": [1], "max_drawdown": [-0.1],
                          "trade_count": [100], "fee_bps_per_side": [0.0],
                          "slippage_bps_per_side": [0.0]})
    row = robustness_scores(table, {"hygiene": 1.0}).row(0, named=True)
    assert row["hygiene_score"] == 1.0 and row["drawdown_score"] == 1.0
    assert (row["robustness_score_v1"], row["robustness_score_v2"]) == (100.0, 100.0)


def test_sort_best_puts_nan_and_minus_inf_last_with_the_nulls() -> None:
    """scoring.sort_best 4 (numeric keys compared raw: NaN would sort as the largest)."""
    frame = pl.DataFrame({"label": list("abcdef"), "x": [1.0, NAN, INF, None, -INF, 2.0]})
    assert sort_best(frame, (("x", True), ("label", False)))["label"].to_list() == \
        ["c", "f", "a", "b", "d", "e"]
    assert sort_best(frame, (("x", False), ("label", False)))["label"].to_list() == \
        ["a", "f", "c", "b", "d", "e"]


def test_source_summary_dispersion_and_switch_shares() -> None:
    """aggregates.source_summary 13, 19, 37, 85, 91, 139, 145 (columns dropped, nulled or read
    from no column). Three flow combos: downside_std 0.01, 0.03, null -> mean 0.02; ret_cv 1,
    2, 10 -> median 2 (the mean would be 4.33); overlay on for 2 of 3, execution filters for
    1 of 2 known (null is unknown, not off); the other means over the non-null values."""
    table = pl.DataFrame({"source_type": ["flow"] * 3, "combo_index": [1, 2, 3],
                          "downside_std": [0.01, 0.03, None], "ret_cv": [1.0, 2.0, 10.0],
                          "overlay_enabled": [True, False, True],
                          "execution_filters_enabled": [None, False, True],
                          "exec_eligibility_rate": [0.5, 0.7, 0.9],
                          "overlay_unknown_rate": [0.1, 0.2, 0.6],
                          "overlay_match_rate": [0.9, 0.8, 0.4],
                          "overlay_vetoed_signal_share": [0.0, 0.3, None],
                          "overlay_direction_conflict_share": [0.2, 0.2, 0.5],
                          "exec_suppressed_signal_share": [0.5, 0.3, 0.1],
                          "exec_trade_avg_dollar_vol_20": [1e6, 2e6, 6e6]},
                         schema_overrides={"execution_filters_enabled": pl.Boolean})
    row = source_summary(table, None, None).row(0, named=True)
    assert row["downside_std_mean"] == pytest.approx(0.02)
    means = {"exec_eligibility_rate": 0.7, "overlay_unknown_rate": 0.3,
             "overlay_match_rate": 0.7, "overlay_vetoed_signal_share": 0.15,
             "overlay_direction_conflict_share": 0.3, "exec_suppressed_signal_share": 0.3,
             "exec_trade_avg_dollar_vol_20": 3e6}
    for name, mean in means.items():
        assert row[f"{name}_mean"] == pytest.approx(mean), name
    assert row["ret_cv_median"] == 2.0
    assert row["overlay_enabled_share"] == pytest.approx(2 / 3)
    assert row["execution_filters_enabled_share"] == 0.5


def test_source_summary_status_counts_are_zero_for_a_source_the_manifest_lacks() -> None:
    """aggregates.source_summary 175 (status counts left null after the full join)."""
    table = pl.DataFrame({"source_type": ["flow", "hmm"], "combo_index": [1, 1]})
    manifest = pl.DataFrame({"source_type": ["flow", "flow"], "status": ["SUCCESS", "FAILED"]})
    out = source_summary(table, manifest, None)
    assert out.select("source_type", "SUCCESS", "FAILED", "success_count").rows() == [
        ("flow", 1, 1, 1), ("hmm", 0, 0, 1)]


def test_holdbars_profile_ret_cv_median() -> None:
    """aggregates.holdbars_profile 19 (ret_cv_median dropped): hold 5 has ret_cv 1, 2, 10."""
    table = pl.DataFrame({"source_type": ["flow"] * 3, "hold_bars": [5, 5, 5],
                          "ret_cv": [1.0, 2.0, 10.0]})
    assert holdbars_profile(table)["ret_cv_median"].to_list() == [2.0]


def test_dimension_values_sort_numbers_then_text_then_null() -> None:
    """aggregates._value_sort 13 (null dimension values first): hold 5 before 10 (numeric),
    policy mode allow_only before a null mode."""
    table = pl.DataFrame({"source_type": ["flow"] * 3, "hold_bars": [10, 5, 5],
                          "policy_filter_mode": [None, "allow_only", None],
                          "robustness_score_v2": [1.0, 2.0, 3.0]},
                         schema_overrides={"policy_filter_mode": pl.Utf8})
    out = dimension_sensitivity(table, None)
    hold = out.filter(pl.col("dimension") == "hold_bars")
    assert hold.select("dimension_value", "combo_count").rows() == [("5", 2), ("10", 1)]
    mode = out.filter(pl.col("dimension") == "policy_filter_mode")
    assert mode.select("dimension_value", "combo_count").rows() == [("allow_only", 1), (None, 2)]


def test_dimension_sensitivity_ret_cv_median_and_failure_columns_without_manifest() -> None:
    """aggregates.dimension_sensitivity 97 (ret_cv_median dropped), 205 and 211 (without a
    manifest the failure columns are null but present and typed)."""
    table = pl.DataFrame({"source_type": ["flow"] * 3, "hold_bars": [5, 5, 5],
                          "ret_cv": [1.0, 2.0, 10.0]})
    out = dimension_sensitivity(table, None)
    assert out["ret_cv_median"].to_list() == [2.0]
    assert out.select("combo_total", "failed_count", "failure_rate").rows() == [
        (None, None, None)]
    assert (out.schema["combo_total"], out.schema["failed_count"]) == (pl.UInt32, pl.Int64)


def test_dimension_sensitivity_without_any_dimension_column() -> None:
    """aggregates.dimension_sensitivity 73 (the empty frame's schema built from None)."""
    out = dimension_sensitivity(pl.DataFrame({"source_type": ["flow"], "expectancy": [0.1]}),
                                None)
    assert out.is_empty()
    assert out.columns == ["source_type", "dimension", "dimension_value"]


def _shape(values: list[float]) -> str:
    holds = [5 * (i + 1) for i in range(len(values))]
    profile = pl.DataFrame({"source_type": ["flow"] * len(values), "hold_bars": holds,
                            "expectancy_mean": values})
    return holdbars_shape(profile)["hold_shape"].item()


def test_hold_shape_at_the_tolerance_and_a_first_step_down() -> None:
    """aggregates.holdbars_shape 61 (``>`` for ``>=`` -tol) and 79 (the rise check skips the
    first step). Values 0, -1e-8, 1.5e-7 have std0 ~ 7e-8, so tol = max(1e-8, 0.05 std0) =
    1e-8 and the first step is exactly -tol: still MONOTONIC_UP. Values 1, 0, 2, 1.5 peak at
    the interior hold 15 but fall before rising: not a hump."""
    assert _shape([0.0, -1e-8, 1.5e-7]) == "MONOTONIC_UP"
    assert _shape([1.0, 0.0, 2.0, 1.5]) == "FLAT_OR_NOISY"
    assert _shape([1.0, 1.5, 2.0, 1.5]) == "HUMP_SHAPED"


def test_dsr_of_a_flat_best_column_uses_normal_moments() -> None:
    """overfitting.dsr_of_returns 96 (kurtosis of a flat column: NaN, so the DSR is NaN) and 61
    (one trial: the variance across trials is 0, not NaN). A flat best column has Sharpe 0,
    skew 0 and kurtosis 3: DSR = Phi((0 - SR0) sqrt(T - 1))."""
    other = np.array([0.01, -0.01, 0.02, 0.0])
    matrix = np.column_stack([np.zeros(4), other])
    got = dsr_of_returns(matrix, best=0)
    sharpe_other = other.mean() / other.std(ddof=1)
    variance = np.var([0.0, sharpe_other], ddof=1)
    g = 0.5772156649015329
    sr0 = np.sqrt(variance) * ((1 - g) * stats.norm.ppf(1 - 1 / 2)
                               + g * stats.norm.ppf(1 - 1 / (2 * np.e)))
    assert (got["best_sharpe"], got["skew"], got["kurtosis"]) == (0.0, 0.0, 3.0)
    assert got["sr0"] == pytest.approx(sr0)
    assert got["dsr"] == pytest.approx(stats.norm.cdf(-sr0 * np.sqrt(3)))
    single = dsr_of_returns(other[:, None])
    assert (single["sharpe_variance_across_trials"], single["sr0"]) == (0.0, 0.0)
    assert single["dsr"] == pytest.approx(stats.norm.cdf(
        sharpe_other * np.sqrt(3) / np.sqrt(
            1 - stats.skew(other) * sharpe_other
            + (stats.kurtosis(other, fisher=False) - 1) / 4 * sharpe_other**2)))


def test_dsr_without_any_tradeable_combo_says_so() -> None:
    """overfitting.dsr_of_returns 6 (the message)."""
    with pytest.raises(ValueError, match="^no combo has two finite returns$"):
        dsr_of_returns(np.array([[np.nan, 1.0], [np.nan, np.nan]]))


def test_psr_with_two_observations_and_sharpe_from_two_returns() -> None:
    """overfitting.probabilistic_sharpe_ratio 16 (``<=`` 2 observations: NaN),
    _sharpe_from_sums 41 (a combo with exactly two returns ranked -inf) and _valid_matrix 21
    (such a combo dropped). PSR(0.5, 0, T=2,
    skew 0, kurtosis 3) = Phi(0.5 sqrt(1) / sqrt(1 + 2/4 * 0.25)); two returns 0.01 and 0.03
    have Sharpe 0.02 / 0.01414 = sqrt(2), the flat column 0."""
    assert probabilistic_sharpe_ratio(0.5, 0.0, 2, 0.0, 3.0) == pytest.approx(
        stats.norm.cdf(0.5 / math.sqrt(1.125)))
    got = dsr_of_returns(np.array([[0.01, 0.02], [0.03, 0.02]]))
    assert got["best"] == 0 and got["best_sharpe"] == pytest.approx(math.sqrt(2))
    assert got["sharpe_variance_across_trials"] == pytest.approx(1.0)  # var(sqrt 2, 0), ddof 1


def test_pbo_default_blocks_and_messages() -> None:
    """overfitting.pbo_cscv 1 (default 17 blocks), 206 and 231 (keys renamed), 31 and 146 (the
    messages)."""
    rng = np.random.default_rng(3)
    got = pbo_cscv(rng.normal(size=(32, 3)))
    assert got["n_combinations"] == math.comb(16, 8) and got["metric"] == "sharpe"
    slope, intercept = np.polyfit(got["is_best"], got["oos_best"], 1)
    assert (got["degradation_slope"], got["degradation_intercept"]) == pytest.approx(
        (slope, intercept))
    with pytest.raises(ValueError, match="^3 usable periods cannot form 4 blocks$"):
        pbo_cscv(rng.normal(size=(3, 2)), n_splits=4)
    # block 2 (rows 3-4) holds one finite return per combo: no Sharpe to choose a winner by
    matrix = np.array([[0.1, 0.2], [0.3, 0.1], [1.0, np.nan], [np.nan, 1.0]])
    with pytest.raises(ValueError, match="^a training half has no combo with two finite"):
        pbo_cscv(matrix, n_splits=2)


def test_best_configs_break_ties_by_combo_index_before_combo_id() -> None:
    """aggregates.best_configs 7 (ties by combo_id alone). Equal expectancy: index 1 (id "z")
    comes before index 2 (id "a")."""
    table = pl.DataFrame({"source_type": ["flow", "flow"], "combo_id": ["a", "z"],
                          "combo_index": [2, 1], "expectancy": [0.01, 0.01]})
    top = best_configs(table, top_n=2)["flow"]["expectancy"]
    assert [r["combo_id"] for r in top] == ["z", "a"]


def test_cluster_trade_mix_sorted_by_policy_mode_before_combo_index() -> None:
    """aggregates.cluster_policy_trade_mix 25 (sorted by combo_index alone)."""
    table = pl.DataFrame({"source_type": ["cluster"] * 3, "combo_id": ["a", "b", "c"],
                          "combo_index": [1, 2, 3],
                          "policy_filter_mode": ["block_veto", "allow_only", None],
                          "policy_trade_class_mix": ["x", "y", "z"], "trade_count": [1, 2, 3]})
    assert cluster_policy_trade_mix(table)["combo_id"].to_list() == ["b", "a", "c"]


def test_best_row_of_no_frame_and_of_an_empty_frame() -> None:
    """scoring.best_row 1 (``and`` for ``or``: None and an empty frame crash)."""
    assert best_row(None, (("x", True),)) is None
    assert best_row(pl.DataFrame(schema={"x": pl.Float64}), (("x", True),)) is None


def test_delta_with_one_side_missing_and_of_two_infinite_profit_factors() -> None:
    """scoring.delta 1 (one missing side subtracted) and 4 (``!=`` for ``==``: inf - inf)."""
    assert delta(None, 1.0) is None and delta(1.0, None) is None
    assert delta(INF, INF) == 0.0
    assert delta(1.5, INF) == -INF and delta(INF, 1.5) == INF
    assert delta(1.5, 1.0) == 0.5


def test_top_signatures_of_a_table_without_the_optional_columns() -> None:
    """compare._with_columns 1 (missing signature columns not added: the compare of a grid
    without them fails). Absent fields are empty in the signature; best expectancy first."""
    metrics = pl.DataFrame({"source_type": ["flow", "flow"], "hold_bars": [5, 10],
                            "combo_index": [1, 2], "combo_id": ["a", "b"],
                            "expectancy": [0.01, 0.02]})
    assert top_signatures(metrics, "expectancy", n=1) == {"flow|10||||||||"}


def test_final_ranking_of_a_single_run() -> None:
    """hybrid_eval.final_ranking 91 (a second candidate read from one row: IndexError). One
    baseline row with a WF score of 30: adjustment (50 - 30) * 0.25 = 5."""
    table = pl.DataFrame({"run_label": ["HMM baseline"], "overlay_mode": ["none"],
                          "overlay_enabled": [False], "single_candidate_score": [60.0],
                          "status": ["OK"]})
    ranked, verdicts = final_ranking(table, 30.0)
    assert ranked["final_rank_score"].to_list() == [65.0]
    assert (verdicts["PRIMARY_CANDIDATE"], verdicts["SECONDARY_CANDIDATE"],
            verdicts["NEXT_EXPERIMENT"]) == ("HMM baseline", None, None)


def test_final_ranking_labels_a_third_run_without_overlay_research_only() -> None:
    """hybrid_eval.final_ranking 121 (the label's spelling). Scores 70, 60, 50: the third run
    has no overlay, so RESEARCH_ONLY, and it is also the next experiment (no overlay left)."""
    table = pl.DataFrame({"run_label": ["a", "b", "c"], "overlay_mode": ["none"] * 3,
                          "overlay_enabled": [False] * 3, "status": ["OK"] * 3,
                          "single_candidate_score": [70.0, 60.0, 50.0]})
    _, verdicts = final_ranking(table, None)
    assert verdicts["run_recommendations"] == {"a": "PROMOTE", "b": "KEEP_AS_BENCH",
                                               "c": "RESEARCH_ONLY"}
    assert verdicts["NEXT_EXPERIMENT"] == "c"


def test_combo_score_penalises_a_missing_zero_trade_flag() -> None:
    """hybrid_eval.with_combo_scores 9 (a null flag read as traded) and 13 (no flag column:
    null scores). Two combos, combo 1 best on every metric (1.0 each, 100 in all) and combo 2
    worst (0): 100 - 20 and 0 - 20 -> 0 when the flag is missing."""
    metrics = pl.DataFrame({"combo_id": ["a", "b"], "expectancy": [0.02, 0.01],
                            "profit_factor": [2.0, 1.0], "robustness_score_v2": [60.0, 40.0],
                            "ret_cv": [1.0, 2.0], "downside_std": [0.01, 0.02],
                            "trade_count": [100, 50]})
    flagged = metrics.with_columns(is_zero_trade_combo=pl.Series([None, False],
                                                                 dtype=pl.Boolean))
    assert with_combo_scores(flagged)["combo_candidate_score"].to_list() == \
        pytest.approx([80.0, 0.0])
    assert with_combo_scores(metrics)["combo_candidate_score"].to_list() == \
        pytest.approx([80.0, 0.0])


def test_labels_without_a_baseline_row_skip_the_trade_ratio_rule() -> None:
    """hybrid_eval.recommendation_labels 13 (the baseline's trades read from no row)."""
    row = dict.fromkeys(TABLE_SCHEMA) | {
        "run_label": "HMM + overlay allow_only", "overlay_enabled": True, "status": "OK",
        "best_trade_count": 1, "overlay_vetoed_signal_share": 0.1}
    table = pl.DataFrame([row], schema=TABLE_SCHEMA).with_columns(
        single_candidate_score=pl.lit(60.0))
    assert recommendation_labels(table, 20.0)["recommendation_label"].to_list() == [
        "RESEARCH_ONLY"]


def test_score_runs_of_no_run() -> None:
    """hybrid_eval.score_runs 5 (rows read without the table schema): no run -> an empty
    table with the report's columns, not a missing-column error."""
    out = score_runs([], 20.0)
    assert out.is_empty()
    assert out.columns == [*TABLE_SCHEMA, "single_candidate_score", "recommendation_label"]


def test_a_best_combo_with_one_trade_is_tradable() -> None:
    """compare.compare_table 101 (``<= 1`` trade read as no trade). The second grid equals
    the baseline (every delta 0, so EDGE_RETAINED) and its best combo has exactly one trade;
    a best combo with 0 trades is NOT_TRADABLE."""
    base = {"grid_run_dir": "a", "best_robustness_score_v2": 60.0, "expectancy_mean": 0.01,
            "profit_factor_mean": 1.2, "ret_cv_median": 2.0, "robustness_v2_mean": 50.0,
            "exec_eligibility_rate_mean": 0.9, "exec_suppressed_signal_share_mean": 0.1,
            "best_trade_count": 40, "best_zero_trade": False}
    rows = [base, {**base, "grid_run_dir": "b", "best_trade_count": 1},
            {**base, "grid_run_dir": "c", "best_trade_count": 0}]
    table = compare_table(rows, "robustness_score_v2")
    assert table["realism_verdict"].to_list() == ["EDGE_RETAINED", "EDGE_RETAINED",
                                                  "NOT_TRADABLE"]


def _realism_table(*rows: tuple[str, float]) -> pl.DataFrame:
    """Report rows (label, candidate_score), all OK and TRADABLE, in the given order."""
    return pl.DataFrame([dict.fromkeys(realism.TABLE_SCHEMA) | {
        "run_label": label, "candidate_score": score, "status": "OK",
        "realism_aware_verdict": "TRADABLE"} for label, score in rows],
        schema=realism.TABLE_SCHEMA)


def test_realism_candidates_by_score_then_label_whatever_the_row_order() -> None:
    """realism.final_verdicts 21 (candidates by label alone) and 25 (ties kept in row order)."""
    got = realism.final_verdicts(_realism_table(("HMM baseline (lite)", 40.0),
                                                ("HMM baseline (none)", 70.0)))
    assert (got["PRIMARY_CANDIDATE"], got["SECONDARY_CANDIDATE"]) == (
        "HMM baseline (none)", "HMM baseline (lite)")
    tie = realism.final_verdicts(_realism_table(("b", 50.0), ("a", 50.0)))
    assert (tie["PRIMARY_CANDIDATE"], tie["SECONDARY_CANDIDATE"]) == ("a", "b")


def test_realism_score_rows_of_no_run() -> None:
    """realism.score_rows 5 (rows read without the table schema): no row -> an empty table
    with the report's columns."""
    out = realism.score_rows([], 30, 0.5)
    assert out.is_empty() and out.columns == list(realism.TABLE_SCHEMA)


def test_realism_table_order_breaks_ties_by_expectancy_then_label() -> None:
    """realism.score_rows 89 (no expectancy key) and 93 (no label key). Three runs without a
    trade score 0 and share robustness 50: expectancy 0.02 (c) first, then the two at 0.01 by
    label."""
    rows = [dict.fromkeys(realism.TABLE_SCHEMA) | {
        "run_label": label, "status": "OK", "best_trade_count": 0, "best_expectancy": exp,
        "best_robustness_v2": 50.0} for label, exp in (("b", 0.01), ("c", 0.02), ("a", 0.01))]
    out = realism.score_rows(rows, 30, 0.5)
    assert out["candidate_score"].to_list() == [0.0, 0.0, 0.0]
    assert out["run_label"].to_list() == ["c", "a", "b"]


def test_split_comparison_by_hand() -> None:
    """scoring.split_comparison (sampled mutants had only the real-grid tests). Common splits
    2021 and 2022. Wins (hybrid strictly better): expectancy 1 (2021), PF 1 (+inf > 1.2),
    robustness 2, ret_cv 1 (lower; 2022's baseline is missing: no win). Mean deltas over the
    finite ones: expectancy (0.01 - 0.02) / 2, PF -0.5 (inf - 1.2 skipped), robustness 5,
    ret_cv -1, zero-trade share (0.1 + 0) / 2."""
    cols = ("train_end", "expectancy", "profit_factor", "robustness_v2", "ret_cv",
            "zero_trade_share")
    base = pl.DataFrame([("2020", 0.05, 9.0, 90.0, 0.1, 0.0),
                         ("2021", 0.01, 1.2, 50.0, 2.0, 0.1),
                         ("2022", 0.03, 1.5, 40.0, None, 0.0)], schema=cols, orient="row")
    hybrid = pl.DataFrame([("2022", 0.01, 1.0, 45.0, 3.0, 0.0),
                           ("2021", 0.02, INF, 55.0, 1.0, 0.2),
                           ("2023", 0.09, 9.0, 99.0, 0.1, 0.0)], schema=cols, orient="row")
    got = split_comparison(base, hybrid)
    assert (got["split_count"], got["train_ends"]) == (2, ["2021", "2022"])
    assert {k: got[k] for k in got if k.startswith("hybrid_wins")} == {
        "hybrid_wins_expectancy": 1, "hybrid_wins_pf": 1, "hybrid_wins_robustness_v2": 2,
        "hybrid_wins_ret_cv": 1}
    assert all(type(got[k]) is int for k in got if k.startswith("hybrid_wins"))
    assert got["avg_delta_expectancy"] == pytest.approx(-0.005)
    assert got["avg_delta_pf"] == pytest.approx(-0.5)
    assert got["avg_delta_robustness_v2"] == pytest.approx(5.0)
    assert got["avg_delta_ret_cv"] == pytest.approx(-1.0)
    assert got["avg_delta_zero_trade_share"] == pytest.approx(0.05)
    assert "hybrid_wins_zero_trade_share" not in got


def test_calibration_summary_units_years_and_source_type_message() -> None:
    """calibration.filter_summary 91 (the effective decimal threshold not copied),
    distributions 61 (``year`` written as a float, 2023.0) and detect_source_type 31 (the
    message names the columns as they are spelt)."""
    run = apply_execution(mixed(), MIXED_PARAMS)
    got = cal.filter_summary(run.frame, run.summary)
    for key in ("vol_threshold_input", "vol_threshold_effective_decimal",
                "vol_threshold_effective_pct", "vol_metric_source", "vol_unit_detected"):
        assert got[key] == run.summary[key], key
    assert got["vol_threshold_effective_decimal"] == pytest.approx(0.10)
    assert cal.distributions(run.frame, by_year=True).schema["year"] == pl.Int32
    with pytest.raises(ValueError, match="none of hmm_state, hmm_state_filtered, "
                       "flow_state_code, cluster_id or 'absent'; pass"):
        cal.detect_source_type(["ticker"], "absent")


def test_calibration_report_shows_the_run_facts_rates_and_top_combos() -> None:
    """calibration.report_markdown 31, 61, 91, 121, 151, 181, 211, 271 (a fact, the
    eligibility rate, the sweep median and the recommendation score read from no key, the
    share column renamed, the top-10 ties ordered by combo_id descending)."""
    summary = {"run_id": "exec-calib-x", "signal_mode": "state_entry", "execution_profile": "lite",
               "execution_summary": {"rows_total": 8, "eligibility_rate": 0.25},
               "waterfall": {"suppressed_by_price_share": 0.5},
               "sweep_summary": {"eligibility_rate_p50": 0.375}}
    recs = {"lite": {"status": "OK", "recommended": {"combo_id": "c0002", "score": 0.8125}}}
    grid = pl.DataFrame({"combo_id": ["c0001", "c0002", "c0003"],
                         "eligibility_rate": [0.5, 0.75, 0.5]})
    text = cal.report_markdown(summary, recs, grid)
    assert "- signal_mode: state_entry\n" in text
    assert "No PnL is simulated: this measures which candidate signals the execution filter " \
        "keeps.\n" in text
    assert "- rows: 8, row-level eligibility_rate 0.25\n" in text
    assert "| filter | suppressed_rows_failing | share_of_suppressed |" in text
    assert "| price | — | 0.5 |" in text
    assert "median 0.375, max" in text
    assert "\n\n## Recommended thresholds\n\n" in text
    assert "bars, as in the old tool), not to the share of candidate signals kept; the " \
        "candidate-level rate is shown beside it.\n\n| profile |" in text
    assert "| candidate_signals_after | score |" in text and "| 0.8125 |" in text
    top = text.split("## Top 10 combos by eligibility_rate")[1]
    assert [line.split(" | ")[0] for line in top.splitlines() if line.startswith("| c0")] == [
        "| c0002", "| c0001", "| c0003"]


def test_compare_row_reads_the_grid_cost_fragility_and_source_summary(tmp_path: Path) -> None:
    """compare._read_csv 1 (the grid's CSV aggregates never read: slopes null, 0 summary
    rows). A real grid with two fee levels; the row's slope means equal the plain mean of the
    file's slope column, and the source summary has one row (one source)."""
    folder = run_grid(load_settings(), [GridSource(_inputs())],
                      GridDimensions(hold_bars=(3, 5), fee_bps_per_side=(0.0, 10.0)),
                      GridOptions(tag="t"), folder=tmp_path / "grid").output_dir
    with (folder / "grid_cost_fragility.csv").open() as f:
        slopes = [float(r["expectancy_slope_per_10bps"]) for r in csv.DictReader(f)]
    row = grid_row(folder, "expectancy")
    assert len(slopes) == 2  # one family per hold
    assert row["cost_fragility_expect_slope_mean"] == pytest.approx(sum(slopes) / 2)
    assert row["source_summary_rows"] == 1


def test_compare_report_states_each_grids_fluke_risk_dsr_and_pbo() -> None:
    """compare._fluke_lines 17, 19, 33, 35 (the risk or the PBO of a grid printed as null), 41
    (non-HIGH grids counted), 49, 51, 53 (the closing sentence)."""
    rows = [{"grid_run_dir": "/g/a", "grid_run_id": "grid-a", "best_robustness_score_v2": 60.0,
             "best_fluke_risk": "HIGH", "best_dsr": 0.25, "best_pbo": 0.625},
            {"grid_run_dir": "/g/b", "grid_run_id": "grid-b", "best_robustness_score_v2": 50.0,
             "best_fluke_risk": "LOW", "best_dsr": 0.975, "best_pbo": 0.125}]
    text = compare_report_md(compare_table(rows, "expectancy"), overlap_table([]),
                             {"primary_metric": "expectancy", "compare_id": "c"})
    assert "- grid-a: fluke risk HIGH (DSR 0.25, PBO 0.625)\n" in text
    assert "- grid-b: fluke risk LOW (DSR 0.975, PBO 0.125)\n" in text
    assert "1 of 2 grids have a HIGH fluke risk: their best configuration is more likely " \
        "selection luck than an edge.\n" in text
    third = {**rows[1], "grid_run_dir": "/g/c", "grid_run_id": "grid-c",
             "best_fluke_risk": "MODERATE"}
    text = compare_report_md(compare_table([*rows, third], "expectancy"), overlap_table([]),
                             {"primary_metric": "expectancy", "compare_id": "c"})
    assert "1 of 3 grids have a HIGH fluke risk" in text
    calm = compare_report_md(compare_table(rows[1:], "expectancy"), overlap_table([]),
                             {"primary_metric": "expectancy", "compare_id": "c"})
    assert "\nNo grid has a HIGH fluke risk.\n" in calm
