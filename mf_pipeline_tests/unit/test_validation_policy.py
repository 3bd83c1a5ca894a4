"""Issue #19 (H3): QA flags, tradability score and ALLOW / WATCH / BLOCK classification.

Scorecard rows, rolling windows and transition counts are written by hand so that every flag,
score component and reason can be checked against research.md §8–9 and the fixes #12, #14,
#15, #16 and the edge-significance gate. Tests named ``*_old_*`` or with "old" in their
docstring show the input on which the old rules decided differently.
"""

import datetime as dt
import inspect
import math
from types import SimpleNamespace

import polars as pl
import pytest

from mf_pipeline.lib.settings import ClusterHardeningSettings, ClusterQaSettings
from mf_pipeline.lib.validation.policy import (
    STATE_TABLE_COLUMNS,
    PolicyThresholds,
    export_rows,
    export_summary,
    harden,
    recommend_thresholds,
)
from mf_pipeline.lib.validation.qa import QaThresholds, cluster_qa, window_stats
from mf_pipeline.lib.validation.scorecards import SCORECARD_COLUMNS, build_scorecards

SCHEMA = {
    "state_id": pl.Int32, "n_rows": pl.Int64, "fwd_ret_10_mean": pl.Float64,
    "fwd_ret_10_ci_lo": pl.Float64, "fwd_ret_10_ci_hi": pl.Float64, "ci_width": pl.Float64,
    "hit_rate": pl.Float64, "sign_confidence_flag": pl.Boolean,
    "stability_sign_consistency": pl.Float64, "ret_mean_cv": pl.Float64,
    "state_share_mean": pl.Float64, "state_share_cv": pl.Float64,
    "pairwise_diff_significant_share": pl.Float64, "confidence_score": pl.Float64,
    "notes": pl.Utf8, "pairwise_diff_sign_consistent_share": pl.Float64,
    "edge_p_value": pl.Float64, "edge_p_adjusted": pl.Float64, "edge_excess": pl.Float64,
    "edge_significant": pl.Boolean, "edge_direction": pl.Int8,
}  # fmt: skip
GOOD = {
    "state_id": 0, "n_rows": 5000, "fwd_ret_10_mean": 0.01, "fwd_ret_10_ci_lo": 0.004,
    "fwd_ret_10_ci_hi": 0.016, "ci_width": 0.012, "hit_rate": 0.56,
    "sign_confidence_flag": True, "stability_sign_consistency": 0.9, "ret_mean_cv": 0.6,
    "state_share_mean": 0.3, "state_share_cv": 0.2, "pairwise_diff_significant_share": 1.0,
    "confidence_score": 80.0, "notes": "ok", "pairwise_diff_sign_consistent_share": 1.0,
    "edge_p_value": 0.001, "edge_p_adjusted": 0.002, "edge_excess": 0.006,
    "edge_significant": True, "edge_direction": 1,
}  # fmt: skip
NO_TRANSITIONS = pl.DataFrame(
    schema={"prev_state_id": pl.Int32, "next_state_id": pl.Int32, "count_events": pl.Int64}
)


def card(*rows: dict) -> pl.DataFrame:
    assert list(SCHEMA) == list(SCORECARD_COLUMNS)
    return pl.DataFrame([{**GOOD, **r} for r in rows], schema=SCHEMA)


def rolling(means: dict[int, list], shares: dict[int, list] | None = None) -> pl.DataFrame:
    rows = []
    for s, values in means.items():
        for k, v in enumerate(values):
            share = shares[s][k] if shares and s in shares else 0.3
            start = dt.date(2010 + k, 1, 1)
            rows.append({"state_id": s, "window_seq": k, "window_start": start,
                         "window_end": dt.date(2010 + k, 12, 31), "fwd_ret_10_mean": v,
                         "fwd_ret_10_hit_rate": 0.5, "state_share": share, "row_count": 100})
    return pl.DataFrame(rows, schema_overrides={"fwd_ret_10_mean": pl.Float64,
                                                "state_id": pl.Int32})  # fmt: skip


def transitions(*edges: tuple[int, int, int]) -> pl.DataFrame:
    return pl.DataFrame(edges, schema=NO_TRANSITIONS.schema, orient="row")


STEADY = [0.01, 0.012, 0.009, 0.011]


def clean_labels(scorecard: pl.DataFrame) -> dict[int, list[str]]:
    return {s: [] for s in scorecard["state_id"].to_list()}


# --------------------------------------------------------------------------- QA flags


def _qa_case():
    sc = card(
        {"state_id": 0},
        # LOW_N, LOW_OCCUPANCY, and a high cv on a clearly non-zero mean: drift
        {"state_id": 1, "n_rows": 150, "state_share_mean": 0.02, "ret_mean_cv": 6.0},
        # high cv on a near-zero mean: cv inflation, NOT drift (#14); wide absolute CI
        {"state_id": 2, "fwd_ret_10_mean": 0.0005, "ret_mean_cv": 8.0, "ci_width": 0.05},
        # sign flips, sparse transitions, one outlying window
        {"state_id": 3, "stability_sign_consistency": 0.5},
        # every value exactly at its threshold: no flag
        {"state_id": 4, "n_rows": 200, "state_share_mean": 0.03, "ret_mean_cv": 5.0,
         "ci_width": 0.0399, "stability_sign_consistency": 0.55},
    )  # fmt: skip
    roll = rolling({0: STEADY, 1: STEADY, 2: STEADY, 3: [0.01] * 9 + [0.1], 4: [0, 0, 0, 1]})
    trans = transitions((0, 1, 100), (1, 0, 50), (2, 4, 40), (3, 0, 30))
    return sc, roll, trans


def test_qa_flags_on_crafted_rows():
    sc, roll, trans = _qa_case()
    qa = cluster_qa(sc, roll, trans, QaThresholds())
    assert qa.labels == {
        0: [],
        1: ["LOW_N", "LOW_OCCUPANCY", "WINDOW_DRIFT_HIGH"],
        2: ["MEAN_NEAR_ZERO_CV_INFLATION", "WIDE_CI"],
        3: ["LIKELY_OUTLIER_WINDOW", "SIGN_FLIP_ACROSS_WINDOWS", "TRANSITIONS_TOO_SPARSE"],
        4: [],
    }
    assert qa.flagged["state_id"].to_list() == [1, 2, 3]
    assert qa.flagged["issues"].to_list() == [
        "LOW_N,LOW_OCCUPANCY,WINDOW_DRIFT_HIGH",
        "MEAN_NEAR_ZERO_CV_INFLATION,WIDE_CI",
        "LIKELY_OUTLIER_WINDOW,SIGN_FLIP_ACROSS_WINDOWS,TRANSITIONS_TOO_SPARSE",
    ]
    assert qa.flagged.columns == [*SCORECARD_COLUMNS, "transition_event_count", "issues"]
    # Σ count_events as prev plus as next: 1: 100 + 50, 2: 40, 3: 30
    assert qa.flagged["transition_event_count"].to_list() == [150, 40, 30]
    assert qa.summary["states_total"] == 5 and qa.summary["states_flagged"] == 3
    assert list(qa.summary["issue_counts"].items()) == [
        (k, 1) for k in sorted(["LOW_N", "LOW_OCCUPANCY", "WINDOW_DRIFT_HIGH",
                                "MEAN_NEAR_ZERO_CV_INFLATION", "WIDE_CI",
                                "LIKELY_OUTLIER_WINDOW", "SIGN_FLIP_ACROSS_WINDOWS",
                                "TRANSITIONS_TOO_SPARSE"])
    ]  # fmt: skip
    th = qa.summary["thresholds"]
    assert th["transitions_sparse_threshold"] == 40
    assert th["near_zero_mean_threshold"] == 0.001
    assert th["ci_width_threshold_value"] == 0.04


def test_near_zero_mean_is_not_flagged_as_drift():
    """#14: the old rule raised WINDOW_DRIFT_HIGH for any cv above the threshold, so a state
    with a near-zero mean (cv exploding through its denominator) was called drifting too."""
    sc, roll, trans = _qa_case()
    labels = cluster_qa(sc, roll, trans, QaThresholds()).labels
    assert "WINDOW_DRIFT_HIGH" not in labels[2]
    assert "MEAN_NEAR_ZERO_CV_INFLATION" in labels[2]
    assert "WINDOW_DRIFT_HIGH" in labels[1]  # same cv rule, mean 0.01: real drift


def test_outlier_window_rule_by_hand():
    # 9 x 0.01 and 0.1: mean 0.019, population std 0.027, |0.1 - 0.019| = 0.081 > 0.054
    # [0, 0, 0, 1]: mean 0.25, std 0.433, max deviation 0.75 < 0.866 -> no outlier
    # 3 windows are too few whatever their values; constant windows have std 0
    stats = window_stats(rolling({0: [0.01] * 9 + [0.1], 1: [0, 0, 0, 1], 2: [0, 0, 9],
                                  3: [0.02] * 5}))  # fmt: skip
    assert stats.sort("state_id")["likely_outlier_window"].to_list() == [True, False, False, False]


def test_window_diagnostics_by_hand():
    means = {5: [0.01, -0.02, 0.0, -0.01, 0.03, None], 6: [0.02, 0.01]}
    shares = {5: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 6: [0.3, 0.3]}
    roll = rolling(means, shares)
    stats = {r["state_id"]: r for r in window_stats(roll).to_dicts()}
    # non-zero signs in window order: + - - + -> 2 flips (the zero window is skipped)
    assert stats[5]["sign_flip_count"] == 2
    assert stats[5]["share_variance"] == pytest.approx(35 / 12 * 0.01)  # var0 of 0.1..0.6
    assert stats[5]["window_count"] == 6
    assert (stats[5]["best_window_fwd_ret_10"], stats[5]["worst_window_fwd_ret_10"]) == (
        0.03, -0.02)  # fmt: skip
    assert stats[5]["drift_span"] == pytest.approx(0.05)
    assert stats[6]["sign_flip_count"] == 0 and stats[6]["share_variance"] == 0.0

    sc = card({"state_id": 5}, {"state_id": 6})
    windows = cluster_qa(sc, roll, NO_TRANSITIONS, QaThresholds()).windows
    w5 = windows.filter(pl.col("state_id") == 5)
    assert w5.filter(pl.col("window_kind") == "worst")["window_seq"].to_list() == [1, 3, 2]
    assert w5.filter(pl.col("window_kind") == "best")["window_seq"].to_list() == [4, 0, 2]
    assert set(w5["sign_flip_count"].to_list()) == {2}
    w6 = windows.filter(pl.col("state_id") == 6)
    assert w6.filter(pl.col("window_kind") == "worst")["window_seq"].to_list() == [1, 0]
    assert w6.filter(pl.col("window_kind") == "best")["window_seq"].to_list() == [0, 1]


def test_wide_ci_is_absolute():
    """#15: the old WIDE_CI flagged every state at or above the run's 80% quantile of CI
    width, so with widths 0.010..0.014 (all narrow) the widest state was "wide"."""
    widths = [0.010, 0.011, 0.012, 0.013, 0.014]
    sc = card(*[{"state_id": s, "ci_width": w} for s, w in enumerate(widths)])
    roll = rolling({s: STEADY for s in range(5)})
    trans = transitions(*[(s, (s + 1) % 5, 100) for s in range(5)])
    qa = cluster_qa(sc, roll, trans, QaThresholds())
    assert qa.flagged.is_empty()
    # the old relative value is still reported: linear q0.8 = 0.013 + 0.2 * 0.001
    assert qa.summary["thresholds"]["ci_width_quantile_value"] == pytest.approx(0.0132)
    old_wide = [s for s, w in enumerate(widths) if w >= 0.0132]
    assert old_wide == [4]
    # all wide in absolute terms: all flagged (the old rule would flag only the widest)
    wide = card(*[{"state_id": s, "ci_width": w * 5} for s, w in enumerate(widths)])
    labels = cluster_qa(wide, roll, trans, QaThresholds()).labels
    assert all(labels[s] == ["WIDE_CI"] for s in range(5))


def test_thresholds_from_settings():
    assert QaThresholds.from_settings(ClusterQaSettings()) == QaThresholds()
    assert PolicyThresholds.from_settings(ClusterHardeningSettings()) == PolicyThresholds()
    assert PolicyThresholds.from_settings({"alpha": 0.01}).alpha == 0.01


# --------------------------------------------------------------------------- policy


def test_tradability_score_by_hand():
    sc = card(
        {"state_id": 0},
        {"state_id": 1, "n_rows": 1000, "state_share_mean": 0.1, "sign_confidence_flag": False,
         "fwd_ret_10_ci_lo": -0.005, "fwd_ret_10_ci_hi": 0.025, "ci_width": 0.03,
         "stability_sign_consistency": 0.6, "ret_mean_cv": 3.0, "confidence_score": 50.0},
    )  # fmt: skip
    qa = {0: [], 1: ["LIKELY_OUTLIER_WINDOW", "NOT_A_PENALTY"]}
    table = harden(sc, rolling({0: STEADY, 1: STEADY}), NO_TRANSITIONS, qa, PolicyThresholds())
    rows = {r["state_id"]: r for r in table.state_table.to_dicts()}
    # weights 0.15 sample, 0.15 occupancy, 0.20 sign, 0.15 ci, 0.15 consistency, 0.10 cv,
    # 0.10 confidence (sum 1); ci reference = ci_width_hard_max 0.06; cv reference 6
    a = {"sample_size": 1.0, "occupancy": 1.0, "sign_confidence": 1.0,
         "ci_width": 1 - 0.012 / 0.06, "sign_consistency": 0.9, "ret_cv": 1 - 0.6 / 6,
         "confidence_score": 0.8}  # fmt: skip
    b = {"sample_size": math.log(1001) / math.log(5001), "occupancy": 0.1 / 0.3,
         "sign_confidence": 0.0, "ci_width": 1 - 0.03 / 0.06, "sign_consistency": 0.6,
         "ret_cv": 1 - 3.0 / 6, "confidence_score": 0.5}  # fmt: skip
    w = PolicyThresholds().weights
    for s, comps in ((0, a), (1, b)):
        for k, v in comps.items():
            assert rows[s][f"score_component_{k}"] == pytest.approx(v)
    base_a = 100 * sum(w[k] * v for k, v in a.items())
    base_b = 100 * sum(w[k] * v for k, v in b.items())
    assert base_a == pytest.approx(92.5)
    assert rows[0]["risk_penalty"] == 0.0 and rows[1]["risk_penalty"] == 10.0  # unknown: 0
    assert rows[0]["tradability_score"] == pytest.approx(base_a)
    assert rows[1]["tradability_score"] == pytest.approx(base_b - 10)
    assert rows[1]["tradability_score_raw"] == rows[1]["tradability_score"]
    assert rows[1]["qa_labels"] == "LIKELY_OUTLIER_WINDOW,NOT_A_PENALTY"


def test_score_is_clipped_at_zero():
    sc = card({"state_id": 0, "sign_confidence_flag": False, "confidence_score": 0.0})
    labels = {0: ["LOW_N", "LOW_OCCUPANCY", "SIGN_FLIP_ACROSS_WINDOWS", "WIDE_CI",
                  "WINDOW_DRIFT_HIGH"]}  # fmt: skip
    out = harden(sc, rolling({0: STEADY}), NO_TRANSITIONS, labels, PolicyThresholds())
    assert out.state_table["tradability_score"].item() == 0.0  # 66.5 base - 90 penalty


def test_classification_order_and_reasons():
    sc = card(
        {"state_id": 0},  # ALLOW
        {"state_id": 1, "edge_p_adjusted": 0.2},  # good but edge not significant: WATCH
        {"state_id": 2},  # good, but QA says WIDE_CI: WATCH, mixed signals
        {"state_id": 3, "n_rows": 100},  # hard fail: BLOCK without BLOCK_LOW_SCORE
        {"state_id": 4, "sign_confidence_flag": False, "fwd_ret_10_ci_lo": -0.001,
         "confidence_score": 0.0, "stability_sign_consistency": 0.56, "ret_mean_cv": 6.0,
         "edge_p_adjusted": 0.5},  # no hard fail but score < 45: BLOCK_LOW_SCORE
    )  # fmt: skip
    labels = {0: [], 1: [], 2: ["WIDE_CI"], 3: ["LOW_N"], 4: ["TRANSITIONS_TOO_SPARSE"]}
    out = harden(sc, rolling({s: STEADY for s in range(5)}), NO_TRANSITIONS, labels,
                 PolicyThresholds())  # fmt: skip
    t = out.state_table
    rows = {r["state_id"]: r for r in t.to_dicts()}
    assert {s: r["class_label"] for s, r in rows.items()} == {
        0: "ALLOW", 1: "WATCH", 2: "WATCH", 3: "BLOCK", 4: "BLOCK"}  # fmt: skip
    assert rows[0]["reasons"] == "ALLOW_SCORE_AND_STABILITY_OK"
    assert rows[1]["reasons"] == "WATCH_EDGE_NOT_SIGNIFICANT"
    assert rows[2]["reasons"] == "WATCH_MIXED_SIGNALS,QA_WIDE_CI"
    assert rows[3]["reasons"] == "HARD_LOW_N,QA_LOW_N"
    assert rows[4]["reasons"] == (
        "BLOCK_LOW_SCORE,QA_TRANSITIONS_TOO_SPARSE")  # fmt: skip
    assert rows[4]["tradability_score"] < 45
    # sorted by class (ALLOW, BLOCK, WATCH) then score descending
    assert t["class_label"].to_list() == ["ALLOW", "BLOCK", "BLOCK", "WATCH", "WATCH"]
    blocks = t.filter(pl.col("class_label") == "BLOCK")["tradability_score"].to_list()
    assert blocks == sorted(blocks, reverse=True)
    assert out.summary == {
        "total_states": 5, "allow_count": 1, "watch_count": 2, "block_count": 2,
        "allow_state_ids": [0], "watch_state_ids": [1, 2], "block_state_ids": [3, 4]}  # fmt: skip


def test_hard_fail_order():
    sc = card({"state_id": 0, "n_rows": 10, "state_share_mean": 0.01,
               "stability_sign_consistency": 0.2, "ci_width": 0.07,
               "fwd_ret_10_ci_lo": -0.03, "fwd_ret_10_ci_hi": 0.04,
               "sign_confidence_flag": False, "ret_mean_cv": 50.0})  # fmt: skip
    labels = {0: ["WIDE_CI", "SIGN_FLIP_ACROSS_WINDOWS", "LIKELY_OUTLIER_WINDOW"]}
    row = harden(sc, rolling({0: STEADY}), NO_TRANSITIONS, labels, PolicyThresholds())
    assert row.state_table["reasons"].item() == (
        "HARD_LOW_N,HARD_LOW_OCCUPANCY,HARD_LOW_SIGN_CONSISTENCY,"
        "HARD_WIDE_CI_WITHOUT_SIGN_CONF,HARD_SEVERE_QA_COMBINATION,"
        "QA_LIKELY_OUTLIER_WINDOW,QA_SIGN_FLIP_ACROSS_WINDOWS,QA_WIDE_CI"
    )
    assert row.state_table["allow_direction_hint"].item() == "UNCONFIRMED"


def _bearish_inputs(consistency_column: str):
    """Two states from hand-made bootstrap / stability tables; state 1 is steadily bearish:
    all its windows negative (positive-window share 0.1 when one window is slightly up)."""
    boot = pl.DataFrame(
        {"state_id": [0, 1], "outcome_name": ["fwd_ret_10"] * 2, "n": [6000, 5000],
         "mean_obs": [0.008, -0.012], "mean_ci_lo": [0.003, -0.018],
         "mean_ci_hi": [0.013, -0.006], "hit_rate_obs": [0.55, 0.42],
         "mean_p_value": [0.002, 0.001], "mean_p_adjusted": [0.002, 0.002],
         "mean_excess_obs": [0.0095, -0.0105]}
    ).with_columns(pl.col("state_id").cast(pl.Int32))  # fmt: skip
    pairwise = pl.DataFrame({"state_a": [0], "state_b": [1], "diff_sign_consistent": [True],
                             "significant": [True]})  # fmt: skip
    stab = pl.DataFrame(
        {"state_id": [0, 1], "fwd_ret_10_sign_stability": [0.9, 0.9], "dominant_sign": [1, -1],
         "fwd_ret_10_positive_window_share": [0.9, 0.1], "ret_mean_cv": [0.5, 0.4],
         "state_share_mean": [0.45, 0.4], "share_cv": [0.1, 0.1]}
    ).with_columns(pl.col(consistency_column).alias("fwd_ret_10_sign_stability"))  # fmt: skip
    frame = pl.DataFrame({"trade_date": [dt.date(2015, 1, 2)]})
    sc, _ = build_scorecards(frame, "cluster",
                             SimpleNamespace(state_summary=boot, pairwise=pairwise),
                             SimpleNamespace(state_summary=stab), weights={})  # fmt: skip
    roll = rolling({0: [0.015, 0.002, 0.012, -0.002, 0.014, 0.004, 0.01, 0.003, 0.013, 0.009],
                    1: [-0.02, -0.004, -0.015, 0.002, -0.018, -0.006, -0.012, -0.003, -0.016,
                        -0.009]})  # fmt: skip
    trans = transitions((0, 1, 300), (1, 0, 300))
    return sc, roll, trans


def test_bearish_consistent_state_is_allow_short_bias():
    """#12: a steadily bearish state with a significant edge is tradable short."""
    sc, roll, trans = _bearish_inputs("fwd_ret_10_sign_stability")
    qa = cluster_qa(sc, roll, trans, QaThresholds())
    assert qa.labels == {0: [], 1: []}
    out = harden(sc, roll, trans, qa.labels, PolicyThresholds())
    bear = out.state_table.filter(pl.col("state_id") == 1).to_dicts()[0]
    assert bear["class_label"] == "ALLOW"
    assert bear["allow_direction_hint"] == "SHORT_BIAS"
    assert bear["directional_edge_sign"] == -1
    assert bear["reasons"] == "ALLOW_SCORE_AND_STABILITY_OK"
    assert out.summary["allow_state_ids"] == [0, 1]


def test_bearish_state_with_old_positive_window_share_was_blocked():
    """The old tool fed the positive-window share (0.1) in as sign consistency: the same state
    got SIGN_FLIP_ACROSS_WINDOWS, HARD_LOW_SIGN_CONSISTENCY and BLOCK."""
    sc, roll, trans = _bearish_inputs("fwd_ret_10_positive_window_share")
    qa = cluster_qa(sc, roll, trans, QaThresholds())
    assert qa.labels[1] == ["SIGN_FLIP_ACROSS_WINDOWS"]
    bear = harden(sc, roll, trans, qa.labels, PolicyThresholds()).state_table.filter(
        pl.col("state_id") == 1
    )
    assert bear["class_label"].item() == "BLOCK"
    assert bear["reasons"].item().startswith("HARD_LOW_SIGN_CONSISTENCY")


def test_high_ret_cv_is_never_a_hard_block():
    """#14: the old HARD_HIGH_RET_CV (cv > 6) blocked both states below."""
    sc = card(
        # real drift: mean 0.01, cv 8 -> WINDOW_DRIFT_HIGH (penalty 15), cv component 0
        {"state_id": 0, "ret_mean_cv": 8.0},
        # near-zero mean, cv 1e4: no edge, no sign confidence
        {"state_id": 1, "fwd_ret_10_mean": 0.0002, "ret_mean_cv": 1e4,
         "fwd_ret_10_ci_lo": -0.005, "fwd_ret_10_ci_hi": 0.0054, "ci_width": 0.0104,
         "sign_confidence_flag": False, "edge_p_adjusted": 0.9},
    )  # fmt: skip
    roll = rolling({0: STEADY, 1: STEADY})
    trans = transitions((0, 1, 100))
    qa = cluster_qa(sc, roll, trans, QaThresholds())
    assert qa.labels == {0: ["WINDOW_DRIFT_HIGH"], 1: ["MEAN_NEAR_ZERO_CV_INFLATION"]}
    rows = {r["state_id"]: r for r in
            harden(sc, roll, trans, qa.labels, PolicyThresholds()).state_table.to_dicts()}
    # 0: 100 * (0.15 + 0.15 + 0.2 + 0.15 * 0.8 + 0.15 * 0.9 + 0 + 0.1 * 0.8) - 15
    assert rows[0]["tradability_score"] == pytest.approx(68.5)
    assert rows[0]["class_label"] == "WATCH"
    assert rows[0]["reasons"] == "WATCH_MIXED_SIGNALS,QA_WINDOW_DRIFT_HIGH"
    # 1: 100 * (0.15 + 0.15 + 0 + 0.15 * (1 - 0.0104 / 0.06) + 0.15 * 0.9 + 0 + 0.08) - 15
    assert rows[1]["tradability_score"] == pytest.approx(
        100 * (0.15 + 0.15 + 0.15 * (1 - 0.0104 / 0.06) + 0.135 + 0.08) - 15)
    assert rows[1]["class_label"] == "WATCH"
    assert rows[1]["reasons"] == (
        "WATCH_MIXED_SIGNALS,WATCH_EDGE_NOT_SIGNIFICANT,QA_MEAN_NEAR_ZERO_CV_INFLATION")
    assert not any("RET_CV" in r["reasons"] for r in rows.values())


def test_hard_wide_ci_is_absolute():
    """#15: the old HARD_WIDE_CI used the run's 80% quantile of CI width (here 0.0428), so the
    0.05-wide state without sign confidence was hard-blocked; the limit is now 0.06."""
    widths = [0.010, 0.011, 0.012, 0.013, 0.014, 0.05, 0.07]
    sc = card(*[{"state_id": s, "ci_width": w, "fwd_ret_10_ci_lo": 0.01 - w / 2,
                 "fwd_ret_10_ci_hi": 0.01 + w / 2, "sign_confidence_flag": w < 0.02}
                for s, w in enumerate(widths)])  # fmt: skip
    roll = rolling({s: STEADY for s in range(7)})
    out = harden(sc, roll, NO_TRANSITIONS, clean_labels(sc), PolicyThresholds())
    rows = {r["state_id"]: r for r in out.state_table.to_dicts()}
    assert "HARD_WIDE_CI" not in rows[5]["reasons"]
    assert rows[6]["reasons"].startswith("HARD_WIDE_CI_WITHOUT_SIGN_CONF")
    assert rows[5]["score_component_ci_width"] == pytest.approx(1 - 0.05 / 0.06)
    assert rows[6]["score_component_ci_width"] == 0.0
    th = out.policy["thresholds"]
    assert th["ci_width_hard_value"] == 0.06
    old_value = 0.014 + 0.8 * (0.05 - 0.014)  # linear q0.8 of the 7 widths
    assert th["ci_width_hard_quantile_value"] == pytest.approx(old_value)
    assert [s for s, w in enumerate(widths) if w > old_value] == [5, 6]  # old hard fails


def test_qa_labels_must_be_passed_for_every_state():
    """#16: the old hardening read QA labels from a file if one existed and otherwise silently
    applied no penalties. Labels are a required argument, with an entry for every state."""
    assert inspect.signature(harden).parameters["qa_labels"].default is inspect.Parameter.empty
    sc = card({"state_id": 0}, {"state_id": 7})
    roll = rolling({0: STEADY, 7: STEADY})
    with pytest.raises(ValueError, match=r"\[0, 7\]"):
        harden(sc, roll, NO_TRANSITIONS, {}, PolicyThresholds())
    with pytest.raises(ValueError, match=r"\[7\]"):
        harden(sc, roll, NO_TRANSITIONS, {0: []}, PolicyThresholds())


def test_edge_gate_uses_policy_alpha():
    sc = card({"state_id": 0, "edge_p_adjusted": 0.08})
    roll = rolling({0: STEADY})
    strict = harden(sc, roll, NO_TRANSITIONS, {0: []}, PolicyThresholds())
    loose = harden(sc, roll, NO_TRANSITIONS, {0: []}, PolicyThresholds(alpha=0.1))
    assert strict.state_table["class_label"].item() == "WATCH"
    assert strict.state_table["edge_significant"].item() is False
    assert loose.state_table["class_label"].item() == "ALLOW"


def test_state_table_columns_and_ranks():
    sc = card(
        {"state_id": 0, "ci_width": 0.02, "state_share_mean": 0.3},
        {"state_id": 1, "ci_width": 0.01, "state_share_mean": 0.3,
         "stability_sign_consistency": None},
        {"state_id": 2, "ci_width": 0.02, "state_share_mean": 0.1,
         "stability_sign_consistency": 0.7},
    )  # fmt: skip
    roll = rolling({0: STEADY, 1: STEADY})  # state 2 has no windows
    out = harden(sc, roll, transitions((0, 1, 7)), clean_labels(sc), PolicyThresholds())
    assert out.state_table.columns == list(STATE_TABLE_COLUMNS)
    rows = {r["state_id"]: r for r in out.state_table.to_dicts()}
    assert [rows[s]["ci_relative_rank"] for s in (0, 1, 2)] == [2, 1, 2]
    assert [rows[s]["occupancy_rank"] for s in (0, 1, 2)] == [1, 1, 2]
    assert [rows[s]["stability_rank"] for s in (0, 1, 2)] == [1, None, 2]
    assert [rows[s]["window_count"] for s in (0, 1, 2)] == [4, 4, 0]
    assert [rows[s]["transition_event_count"] for s in (0, 1, 2)] == [7, 7, 0]
    assert rows[2]["worst_window_fwd_ret_10"] is None


def test_policy_payload():
    sc = card({"state_id": 0}, {"state_id": 1, "n_rows": 50})
    out = harden(sc, rolling({0: STEADY, 1: STEADY}), NO_TRANSITIONS, {0: [], 1: ["LOW_N"]},
                 PolicyThresholds())  # fmt: skip
    p = out.policy
    assert p["summary"] == out.summary
    assert p["thresholds"]["ret_cv_is_hard_limit"] is False
    assert p["thresholds"]["alpha"] == 0.05
    per = {r["state_id"]: r for r in p["per_state"]}
    assert per[1]["reasons"] == ["HARD_LOW_N", "QA_LOW_N"]
    assert per[1]["qa_labels"] == ["LOW_N"]
    assert per[0]["metrics"]["edge_significant"] is True
    assert per[0]["allow_direction_hint"] == "LONG_BIAS"


# --------------------------------------------------------------------------- export, thresholds


def test_export_rows():
    sc = card({"state_id": 0}, {"state_id": 1, "n_rows": 50})
    table = harden(sc, rolling({0: STEADY, 1: STEADY}), NO_TRANSITIONS, {0: [], 1: []},
                   PolicyThresholds()).state_table  # fmt: skip
    rows = pl.DataFrame({"cluster_id": [0, 1, 7, 0, 0], "x": [1, 2, 3, 4, 5]})
    out = export_rows(rows, table, "cluster_id")
    wp = out["with_policy"]
    assert wp["x"].to_list() == [1, 2, 3, 4, 5]  # row order kept
    assert wp["tradable_state_class"].to_list() == ["ALLOW", "BLOCK", "UNMAPPED", "ALLOW",
                                                    "ALLOW"]  # fmt: skip
    assert wp["tradable_direction_hint"].to_list()[2] == "UNCONFIRMED"
    assert out["tradable"]["x"].to_list() == [1, 4, 5]
    assert out["watch"].is_empty()
    assert out["by_state"].rows() == [(0, "ALLOW", "LONG_BIAS", 3), (1, "BLOCK", "LONG_BIAS", 1),
                                      (7, "UNMAPPED", "UNCONFIRMED", 1)]  # fmt: skip
    summary = export_summary(rows.height, out)
    assert summary["tradable_rows"] == 3 and summary["watch_rows"] == 0
    assert summary["class_counts"][0] == {"tradable_state_class": "ALLOW", "row_count": 3}


def test_recommend_thresholds():
    t = PolicyThresholds()
    assert recommend_thresholds(pl.DataFrame(), t)["method"] == "fallback_config_only"
    tables = pl.DataFrame({
        "class_label": ["ALLOW"] * 5 + ["BLOCK"],
        "n_rows": [100, 200, 300, 400, 500, 1],
        "state_share_mean": [0.1, 0.2, 0.3, 0.4, 0.5, 0.0],
        "ret_mean_cv": [1.0, 2.0, 3.0, 4.0, 5.0, 99.0],
        "stability_sign_consistency": [0.6, 0.7, 0.8, 0.9, 1.0, 0.0],
        "ci_width": [0.01, 0.02, 0.03, 0.04, None, 0.5],
    })  # fmt: skip
    rec = recommend_thresholds(tables, t)
    assert rec["reference_class"] == "ALLOW" and rec["source_rows"] == 6
    r = rec["recommendations"]
    assert r["min_n_rows_hard"] == 140  # q0.10 of 100..500: 100 + 0.4 * 100
    assert r["min_state_share_hard"] == pytest.approx(0.14)
    assert r["ret_cv_hard"] == pytest.approx(4.6)
    assert r["sign_consistency_hard"] == pytest.approx(0.64)
    assert r["ci_width_hard_value_recommended"] == pytest.approx(0.034)  # q0.8 of 4 values
    assert r["ci_width_hard_quantile"] == 0.8
    # no ALLOW and no WATCH rows: all rows; nothing computable: configured value
    blocked = tables.with_columns(pl.lit("BLOCK").alias("class_label"),
                                  pl.lit(None, pl.Float64).alias("ret_mean_cv"))  # fmt: skip
    rec = recommend_thresholds(blocked, t)
    assert rec["reference_class"] == "all"
    assert rec["recommendations"]["ret_cv_hard"] == t.ret_cv_hard


def test_a_positive_state_below_the_average_is_no_long_edge():
    """The edge is the excess over the all-states mean: a state whose mean is positive (CI
    above 0) but significantly BELOW the average of all states is WATCH, not ALLOW long."""
    table = harden(card({"state_id": 0}, {"state_id": 1, "edge_excess": -0.004}),
                   rolling({0: [0.01] * 8, 1: [0.01] * 8}), NO_TRANSITIONS, {0: [], 1: []},
                   PolicyThresholds()).state_table.sort("state_id")
    assert table["class_label"].to_list() == ["ALLOW", "WATCH"]
    assert "WATCH_EDGE_DIRECTION_MIXED" in table["reasons"][1]
