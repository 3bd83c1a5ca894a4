"""Candidate drift (backtest_ops.md §10.2, §10.3) on hand-computed values: deltas with eps and
nulls, every flag at its threshold (strict: the boundary does not fire), status rules, coverage
drift and its merge, and the observed robustness of fault 21 by hand on a small grid table."""

import math

import polars as pl
import pytest

from mf_pipeline.lib.candidates import drift
from mf_pipeline.lib.candidates.drift import CoverageThresholds
from mf_pipeline.lib.settings import CandidateDriftSettings, load_settings

T = CandidateDriftSettings()
EPS = 1e-12
# every compared metric, chosen so that each threshold is reached EXACTLY in binary floating
# point (e.g. (7 - 10) / 10 == -0.3, (0.5 - 0.625) / 0.625 == -0.2)
BASE = {"expectancy": 10.0, "profit_factor": 2.0, "robustness_v2": 60.0, "ret_cv": 2.0,
        "trade_count": 10, "zero_trade_share": 0.0, "ret_p10": -0.02, "downside_std": 0.01,
        "exec_eligibility_rate": 0.625, "overlay_match_rate": 0.9}


def _flags(**observed):
    obs = {**BASE, **observed}
    return drift.drift_flags(drift.drift_deltas(BASE, obs, EPS), obs, T)


def test_settings_group_has_the_yaml_defaults() -> None:
    c = load_settings().candidate_rerun
    assert c.drift == T and c.eps == 1e-12 and c.wf_run_enable_default is False
    assert (c.drift.expectancy_drop_pct_flag, c.drift.pf_drop_pct_flag,
            c.drift.robustness_drop_points_flag, c.drift.ret_cv_increase_pct_flag,
            c.drift.trade_count_drop_pct_flag, c.drift.exec_eligibility_drop_pct_flag,
            c.drift.overlay_match_rate_min) == (0.30, 0.25, 10.0, 0.50, 0.40, 0.20, 0.80)
    assert (c.drift.coverage_drift_warn_drop_abs, c.drift.coverage_drift_fail_match_rate,
            c.drift.coverage_unknown_increase_warn_abs,
            c.drift.coverage_unknown_rate_fail) == (0.10, 0.60, 0.15, 0.50)
    assert c.micro_grid.model_dump() == {"enabled_default": False, "max_combos": 9,
                                         "hold_bars_offsets": [-5, 0, 10],
                                         "fee_bps_offsets": [0.0, 10.0]}


def test_pct_and_abs_with_eps_and_nulls() -> None:
    assert drift.delta_pct(0.02, 0.01, EPS) == pytest.approx(-0.5)
    assert drift.delta_pct(-0.01, -0.02, EPS) == pytest.approx(-1.0)  # |e| in the denominator
    assert drift.delta_pct(0.0, 1e-12, EPS) == pytest.approx(1.0)  # max(|e|, eps)
    assert drift.delta_pct(0.0, 0.0, EPS) == 0.0
    assert drift.delta_pct(-1e308, 1e308, EPS) is None  # o - e overflows: not finite
    assert drift.delta_pct(None, 1.0, EPS) is None and drift.delta_pct(1.0, None, EPS) is None
    assert drift.delta_pct(math.inf, 2.0, EPS) is None  # a +inf PF gives no delta
    assert drift.delta_pct(2.0, math.nan, EPS) is None
    assert drift.delta_abs(0.3, 0.1) == pytest.approx(-0.2)
    assert drift.delta_abs(None, 0.1) is None and drift.delta_abs(True, 1.0) is None
    d = drift.drift_deltas({"expectancy": 0.02, "trade_count": 40},
                           {"expectancy": 0.015, "trade_count": 30, "ret_p10": -0.1}, EPS)
    assert d["delta_expectancy_abs"] == pytest.approx(-0.005)
    assert d["delta_expectancy_pct"] == pytest.approx(-0.25)
    assert d["delta_trade_count_pct"] == pytest.approx(-0.25)
    assert d["delta_ret_p10_abs"] is None and d["delta_robustness_v2_pct"] is None
    assert set(d) == {f"delta_{m}_abs" for m in drift.COMPARED} | \
        {f"delta_{m}_pct" for m in drift.PCT_COMPARED}  # fmt: skip
    assert "delta_zero_trade_share_pct" not in d and "delta_overlay_match_rate_pct" not in d


@pytest.mark.parametrize(("metric", "at", "beyond", "flag"), [
    ("expectancy", 7.0, 6.99, "expectancy_drop"),
    ("profit_factor", 1.5, 1.49, "profit_factor_drop"),
    ("robustness_v2", 50.0, 49.9, "robustness_v2_drop"),
    ("ret_cv", 3.0, 3.01, "ret_cv_increase"),
    ("trade_count", 6, 5, "trade_count_drop"),
    ("exec_eligibility_rate", 0.5, 0.49, "exec_eligibility_drop"),
    ("overlay_match_rate", 0.8, 0.79, "overlay_match_rate_low"),
])  # fmt: skip
def test_each_flag_fires_only_beyond_its_threshold(metric, at, beyond, flag) -> None:
    assert _flags() == []
    assert _flags(**{metric: at}) == []
    assert _flags(**{metric: beyond}) == [flag]
    obs = {**BASE, metric: beyond}
    record = drift.drift_record(BASE, obs, _cov_ok(), T, EPS)
    assert record["drift_status"] == "DRIFT_WARN" and record["drift_flags"] == [flag]


def test_improvements_and_null_observed_values_fire_nothing() -> None:
    assert _flags(expectancy=20.0, profit_factor=5.0, ret_cv=0.5, trade_count=40) == []
    assert _flags(expectancy=None, profit_factor=None, robustness_v2=None, ret_cv=None,
                  exec_eligibility_rate=None, overlay_match_rate=None) == []
    assert _flags(profit_factor=math.inf) == []  # no losing trade: no PF delta


def test_thresholds_come_from_settings() -> None:
    loose = T.model_copy(update={"pf_drop_pct_flag": 0.5})
    obs = {**BASE, "profit_factor": 1.49}
    assert drift.drift_flags(drift.drift_deltas(BASE, obs, EPS), obs, loose) == []


def test_zero_trade_observed_is_fail_alone_and_two_flags_fail() -> None:
    for observed in ({"trade_count": 0}, {"trade_count": None}, {"zero_trade_share": 1.0}):
        flags = _flags(**observed)
        assert "zero_trade_observed" in flags
        assert drift.drift_status(["zero_trade_observed"]) == "DRIFT_FAIL"
    assert _flags(trade_count=0) == ["zero_trade_observed", "trade_count_drop"]
    assert drift.drift_status([]) == "OK"
    assert drift.drift_status(["ret_cv_increase"]) == "DRIFT_WARN"
    assert drift.drift_status(["ret_cv_increase", "expectancy_drop"]) == "DRIFT_FAIL"
    both = _flags(expectancy=6.0, profit_factor=1.0)
    assert both == ["expectancy_drop", "profit_factor_drop"]
    assert drift.worst_status(["OK", "DRIFT_WARN"]) == "DRIFT_WARN"
    assert drift.worst_status(["DRIFT_FAIL", "ERROR", "OK"]) == "ERROR"
    assert drift.worst_status([]) == "OK"


def _cov_ok() -> dict:
    return drift.coverage_drift(None, None, None, None, CoverageThresholds(0.1, 0.6, 0.15, 0.5))


# exact binary boundaries: drop 0.875 - 0.75 = 0.125, increase 0.5 - 0.25 = 0.25
TC = CoverageThresholds(warn_drop_abs=0.125, fail_match_rate=0.5, unknown_increase_warn_abs=0.25,
                        unknown_rate_fail=0.75)


@pytest.mark.parametrize(("obs_match", "obs_unknown", "flags", "status"), [
    (0.875, 0.25, [], "OK"),
    (0.75, 0.25, [], "OK"),  # drop exactly 0.125
    (0.74, 0.25, ["coverage_match_rate_drop_warn"], "DRIFT_WARN"),
    (0.5, 0.25, ["coverage_match_rate_drop_warn"], "DRIFT_WARN"),  # exactly the fail rate
    (0.49, 0.25, ["coverage_match_rate_drop_warn", "coverage_match_rate_below_fail"],
     "DRIFT_FAIL"),
    (0.875, 0.5, [], "OK"),  # increase exactly 0.25
    (0.875, 0.51, ["coverage_unknown_rate_increase_warn"], "DRIFT_WARN"),
    (0.875, 0.75, ["coverage_unknown_rate_increase_warn"], "DRIFT_WARN"),
    (0.875, 0.76, ["coverage_unknown_rate_increase_warn", "coverage_unknown_rate_above_fail"],
     "DRIFT_FAIL"),
])  # fmt: skip
def test_coverage_drift_flags_at_their_boundaries(obs_match, obs_unknown, flags, status) -> None:
    rec = drift.coverage_drift(0.875, 0.25, obs_match, obs_unknown, TC)
    assert rec["flags"] == flags and rec["coverage_drift_status"] == status
    assert rec["match_rate_drop_abs"] == pytest.approx(0.875 - obs_match)
    assert rec["unknown_rate_increase_abs"] == pytest.approx(obs_unknown - 0.25)
    assert rec["thresholds"] == {"warn_drop_abs": 0.125, "fail_match_rate": 0.5,
                                 "unknown_increase_warn_abs": 0.25, "unknown_rate_fail": 0.75}


def test_coverage_null_baseline_takes_the_observed_value_and_no_overlay_is_ok() -> None:
    rec = drift.coverage_drift(None, None, 0.7, 0.2, TC)
    assert (rec["baseline_match_rate"], rec["baseline_unknown_rate"]) == (0.7, 0.2)
    assert rec["match_rate_drop_abs"] == 0.0 and rec["unknown_rate_increase_abs"] == 0.0
    assert rec["coverage_drift_status"] == "OK"
    # a low observed rate still fails even when the baseline was unknown
    assert drift.coverage_drift(None, None, 0.4, 0.2, TC)["flags"] == [
        "coverage_match_rate_below_fail"]
    none = _cov_ok()
    assert none["flags"] == [] and none["match_rate_drop_abs"] is None
    assert none["observed_match_rate"] is None and none["coverage_drift_status"] == "OK"


def test_coverage_thresholds_precedence() -> None:
    assert drift.coverage_thresholds(T) == CoverageThresholds(0.10, 0.60, 0.15, 0.50)
    assert drift.coverage_thresholds(T, overlay_min_match_rate_fail=0.7).fail_match_rate == 0.7
    t = drift.coverage_thresholds(T, warn_drop=0.2, fail_match=0.3,
                                  overlay_min_match_rate_fail=0.7)
    assert (t.warn_drop_abs, t.fail_match_rate) == (0.2, 0.3)


def test_merge_rules() -> None:
    warn = drift.coverage_drift(0.875, 0.25, 0.74, 0.25, TC)
    fail = drift.coverage_drift(0.875, 0.25, 0.49, 0.25, TC)
    ok = drift.coverage_drift(0.875, 0.25, 0.875, 0.25, TC)
    assert drift.merge_coverage("OK", [], ok) == ("OK", [])
    assert drift.merge_coverage("OK", [], warn) == ("DRIFT_WARN",
                                                    ["coverage_match_rate_drop_warn"])
    # already WARN or FAIL: a coverage WARN adds nothing
    assert drift.merge_coverage("DRIFT_WARN", ["ret_cv_increase"], warn) == (
        "DRIFT_WARN", ["ret_cv_increase"])
    assert drift.merge_coverage("DRIFT_FAIL", ["a", "b"], warn) == ("DRIFT_FAIL", ["a", "b"])
    # a coverage FAIL fails the candidate and appends its flags once
    assert drift.merge_coverage("DRIFT_WARN", ["ret_cv_increase",
                                               "coverage_match_rate_drop_warn"], fail) == (
        "DRIFT_FAIL", ["ret_cv_increase", "coverage_match_rate_drop_warn",
                       "coverage_match_rate_below_fail"])  # fmt: skip


def test_drift_record_keeps_metric_and_merged_status() -> None:
    cov = drift.coverage_drift(0.875, 0.25, 0.49, 0.25, TC)
    rec = drift.drift_record(BASE, {**BASE, "ret_cv": 4.0, "overlay_match_rate": 0.49}, cov,
                             T, EPS)
    assert rec["metric_flags"] == ["ret_cv_increase", "overlay_match_rate_low"]
    assert rec["metric_drift_status"] == "DRIFT_FAIL"
    assert rec["drift_flags"] == ["ret_cv_increase", "overlay_match_rate_low",
                                  "coverage_match_rate_drop_warn",
                                  "coverage_match_rate_below_fail"]
    assert rec["coverage_drift_status"] == "DRIFT_FAIL" and rec["drift_status"] == "DRIFT_FAIL"
    assert rec["delta_ret_cv_pct"] == 1.0 and rec["delta_overlay_match_rate_abs"] == \
        pytest.approx(-0.41)  # fmt: skip
    assert rec["expected"]["ret_cv"] == 2.0 and rec["observed"]["ret_cv"] == 4.0
    assert rec["thresholds"]["eps"] == EPS and rec["thresholds"]["pf_drop_pct_flag"] == 0.25


def _grid_table() -> pl.DataFrame:
    """Three hmm combos (a best on every metric, c worst) and a flow row sharing id ``a``."""
    common = {"status": "SUCCESS", "fee_bps_per_side": 0.0, "slippage_bps_per_side": 0.0,
              "max_drawdown": None, "nan_warning_total": 0, "profit_factor_inf": False,
              "is_zero_trade_combo": False, "trade_count": 100}
    rows = [
        {"source_type": "hmm", "combo_id": "a", "combo_index": 0, "expectancy": 0.03,
         "profit_factor": 2.0, "return_std": 0.01, "ret_cv": 1.0, "downside_std": 0.005},
        {"source_type": "hmm", "combo_id": "b", "combo_index": 1, "expectancy": 0.02,
         "profit_factor": 1.5, "return_std": 0.02, "ret_cv": 2.0, "downside_std": 0.01},
        {"source_type": "hmm", "combo_id": "c", "combo_index": 2, "expectancy": 0.01,
         "profit_factor": 1.2, "return_std": 0.03, "ret_cv": 3.0, "downside_std": 0.02},
        {"source_type": "flow", "combo_id": "a", "combo_index": 0, "expectancy": -1.0,
         "profit_factor": 0.1, "return_std": 9.0, "ret_cv": 9.0, "downside_std": 9.0},
    ]
    table = pl.DataFrame([{**common, **r} for r in rows], infer_schema_length=None)
    return table.with_columns(pl.col("max_drawdown").cast(pl.Float64))


def test_observed_robustness_by_hand() -> None:
    table = _grid_table()
    same = {k: table.row(0, named=True)[k] for k in drift.ROBUSTNESS_INPUTS}
    # a ranks first everywhere; costs tie (average rank: 0.5); no drawdown -> v1 rescaled by
    # 1/0.8: v1 = 100 (0.3 + 0.2 + 0.15 + 0.1*0.5 + 0.05) / 0.8 = 93.75,
    # v2 = 0.7*93.75 + 15 + 10 + 5*0.5 = 93.125
    assert drift.observed_robustness(table, "a", "hmm", same) == pytest.approx(93.125)
    assert drift.observed_robustness(table, "a", "hmm", {**same, "profit_factor": math.inf}) \
        == pytest.approx(93.125)  # +inf PF still ranks first and is no hygiene warning
    worse = {"expectancy": 0.005, "profit_factor": 1.0, "profit_factor_inf": False,
             "return_std": 0.04, "ret_cv": 8.0, "downside_std": 0.03, "trade_count": 50,
             "is_zero_trade_combo": False, "max_drawdown": None}
    # last everywhere (0.0); hygiene 0.7*0.5 + 0.3 = 0.65:
    # v1 = 100 (0.1*0.5 + 0.05*0.65) / 0.8 = 10.3125; v2 = 0.7*10.3125 + 5*0.5 = 9.71875
    got = drift.observed_robustness(table, "a", "hmm", worse)
    assert got == pytest.approx(9.71875)
    rec = drift.drift_record({**BASE, "robustness_v2": 93.125},
                             {**BASE, "robustness_v2": got}, _cov_ok(), T, EPS)
    assert rec["delta_robustness_v2_abs"] == pytest.approx(-83.40625)
    assert rec["drift_flags"] == ["robustness_v2_drop"]  # fault 21: now it can fire
    # a NaN metric counts as a hygiene warning: hygiene 0.35, v1 = 100 (0.05 + 0.0175) / 0.8
    nan = drift.observed_robustness(table, "a", "hmm", {**worse, "return_std": math.nan})
    assert nan == pytest.approx(0.7 * 100 * 0.0675 / 0.8 + 2.5)
    zero = {"expectancy": None, "profit_factor": None, "return_std": None, "ret_cv": None,
            "downside_std": None, "trade_count": 0, "is_zero_trade_combo": True}
    # v1 = 100 (0.05 + 0.05*0.3) / 0.8 = 8.125; v2 = 5.6875 + 2.5 - 20 < 0 -> 0
    assert drift.observed_robustness(table, "a", "hmm", zero) == 0.0
    assert drift.observed_robustness(table, "zz", "hmm", same) is None
