"""Issue #19 (H3): the state scorecard and run grade have the right VALUES.

The bootstrap, pairwise and stability tables are written by hand (three states), so each
figure of the scorecard can be recomputed here with the formulas of research.md §6.5 and the
fixes #11 (corrected pairwise share), #12 (direction-aware consistency input) and #20.
"""

import datetime as dt
import math
from types import SimpleNamespace

import polars as pl
import pytest

from mf_pipeline.lib.validation.scorecards import SCORECARD_COLUMNS, build_scorecards

FRAME = pl.DataFrame(
    {"trade_date": [dt.date(2020, 1, 2), dt.date(2021, 6, 30), dt.date(2020, 5, 5)]}
)


def _boot(pairwise: pl.DataFrame | None = None, extra: list[dict] | None = None):
    rows = [
        # state, outcome, n, mean, lo, hi, hit, p, p_adj, excess over the all-states mean
        (0, "fwd_ret_10", 1000, 0.01, 0.004, 0.016, 0.55, 0.001, 0.003, 0.0093),
        (1, "fwd_ret_10", 100, -0.008, -0.02, -0.001, 0.45, 0.01, 0.02, -0.0087),
        (2, "fwd_ret_10", 400, 0.0005, -0.03, 0.031, 0.50, 0.9, 0.9, -0.0002),
        # another outcome: must be ignored by the scorecard
        (0, "fwd_ret_5", 1000, 0.5, 0.4, 0.6, 0.9, 0.0, 0.0, 0.1),
    ]
    cols = ["state_id", "outcome_name", "n", "mean_obs", "mean_ci_lo", "mean_ci_hi",
            "hit_rate_obs", "mean_p_value", "mean_p_adjusted", "mean_excess_obs"]  # fmt: skip
    summary = pl.DataFrame(rows, schema=cols, orient="row")
    if extra:
        summary = pl.concat([summary, pl.DataFrame(extra, schema=summary.schema)])
    if pairwise is None:
        pairwise = pl.DataFrame(
            {
                "state_a": [0, 0, 1],
                "state_b": [1, 2, 2],
                "diff_sign_consistent": [True, True, False],  # raw CI excludes 0
                "significant": [True, False, False],  # after Holm
            }
        )
    return SimpleNamespace(state_summary=summary.with_columns(pl.col("state_id").cast(pl.Int32)),
                           pairwise=pairwise)  # fmt: skip


STABILITY = SimpleNamespace(
    state_summary=pl.DataFrame(
        {
            "state_id": [0, 1, 2],
            "fwd_ret_10_sign_stability": [0.8, 0.9, 0.5],  # dominant-sign share (H2, #12)
            "dominant_sign": [1, -1, 1],
            "fwd_ret_10_positive_window_share": [0.8, 0.1, 0.5],
            "ret_mean_cv": [0.5, 1.0, 20.0],
            "state_share_mean": [0.5, 0.1, 0.4],
            "share_cv": [0.1, 0.3, 0.2],
        }
    )
)


def _card():
    return build_scorecards(FRAME, "cluster", _boot(), STABILITY, weights={})


# n_ref = floor(P90 of n = [100, 400, 1000]) = floor(400 + 0.8 * 600) = 880
LN_REF = math.log(881)
EXPECTED_SCORE = {
    # 100 * (0.2 sample + 0.25 ci + 0.2 sign + 0.25 stability + 0.1 separation)
    0: 100 * (0.2 * 1.0 + 0.25 * (1 - 0.012 / 0.2) + 0.2 * 1
              + 0.25 * (0.5 * 0.8 + 0.5 * (1 - 0.5 / 3)) + 0.1 * 0.5),
    1: 100 * (0.2 * math.log(101) / LN_REF + 0.25 * (1 - 0.019 / 0.2) + 0.2 * 1
              + 0.25 * (0.5 * 0.9 + 0.5 * (1 - 1.0 / 3)) + 0.1 * 0.5),
    2: 100 * (0.2 * math.log(401) / LN_REF + 0.25 * (1 - 0.061 / 0.2) + 0.2 * 0
              + 0.25 * (0.5 * 0.5 + 0.5 * 0.0) + 0.1 * 0.0),
}  # fmt: skip


def test_three_state_scorecard_by_hand():
    card, _ = _card()
    assert card.columns == list(SCORECARD_COLUMNS)
    assert card["state_id"].to_list() == [0, 1, 2]  # by confidence_score descending
    rows = {r["state_id"]: r for r in card.to_dicts()}
    for s, score in EXPECTED_SCORE.items():
        assert rows[s]["confidence_score"] == pytest.approx(round(score, 3), abs=1e-9)
    assert rows[0]["confidence_score"] == pytest.approx(88.917)
    assert [rows[s]["ci_width"] for s in (0, 1, 2)] == pytest.approx([0.012, 0.019, 0.061])
    assert [rows[s]["sign_confidence_flag"] for s in (0, 1, 2)] == [True, True, False]
    assert [rows[s]["n_rows"] for s in (0, 1, 2)] == [1000, 100, 400]
    assert [rows[s]["hit_rate"] for s in (0, 1, 2)] == [0.55, 0.45, 0.50]
    assert [rows[s]["stability_sign_consistency"] for s in (0, 1, 2)] == [0.8, 0.9, 0.5]
    assert [rows[s]["state_share_cv"] for s in (0, 1, 2)] == [0.1, 0.3, 0.2]
    assert rows[0]["notes"] == "ok"
    assert rows[1]["notes"] == "low_sample"
    assert rows[2]["notes"] == "low_sample,wide_ci,sign_uncertain,unstable_returns"


def test_edge_columns():
    card, overall = _card()
    rows = {r["state_id"]: r for r in card.to_dicts()}
    assert [rows[s]["edge_p_value"] for s in (0, 1, 2)] == [0.001, 0.01, 0.9]
    assert [rows[s]["edge_p_adjusted"] for s in (0, 1, 2)] == [0.003, 0.02, 0.9]
    assert [rows[s]["edge_significant"] for s in (0, 1, 2)] == [True, True, False]
    assert [rows[s]["edge_direction"] for s in (0, 1, 2)] == [1, -1, 0]
    assert overall["edge_significant_state_ids"] == [0, 1]
    # alpha is honoured: at 1% state 1 (p_adj 0.02) is no longer significant
    strict, _ = build_scorecards(FRAME, "cluster", _boot(), STABILITY, weights={}, alpha=0.01)
    assert strict.filter(pl.col("state_id") == 1)["edge_direction"].item() == 0


def test_pairwise_share_uses_corrected_significance():
    """#11: the old share counted rows whose raw CI excluded 0 (state 0: 2/2 = 1.0)."""
    card, overall = _card()
    rows = {r["state_id"]: r for r in card.to_dicts()}
    assert [rows[s]["pairwise_diff_significant_share"] for s in (0, 1, 2)] == [0.5, 0.5, 0.0]
    assert [rows[s]["pairwise_diff_sign_consistent_share"] for s in (0, 1, 2)] == [1.0, 0.5, 0.5]
    assert overall["pairwise_diff_significant_share"] == pytest.approx(1 / 3)
    assert overall["pairwise_diff_sign_consistent_share"] == pytest.approx(2 / 3)


def test_grade_uses_corrected_share():
    """#11: with the raw share 2/3 (>= 0.4), sign 0.733 (>= 0.55) and width 0.0307 (<= 0.04)
    the old grade was B; with the Holm share 1/3 it is C."""
    _, overall = _card()
    assert overall["avg_ci_width_fwd_ret_10"] == pytest.approx((0.012 + 0.019 + 0.061) / 3)
    assert overall["avg_state_sign_consistency"] == pytest.approx((0.8 + 0.9 + 0.5) / 3)
    assert overall["validation_grade"] == "C"
    all_sig = pl.DataFrame({"state_a": [0, 0, 1], "state_b": [1, 2, 2],
                            "diff_sign_consistent": [True, True, False],
                            "significant": [True, True, False]})  # fmt: skip
    _, b = build_scorecards(FRAME, "cluster", _boot(all_sig), STABILITY, weights={})
    assert b["validation_grade"] == "B"  # 2/3 significant


def test_overall_keys_and_top_worst():
    _, overall = _card()
    assert overall["input_type"] == "cluster"
    assert overall["n_states"] == 3
    assert overall["total_rows"] == 3
    assert (overall["date_min"], overall["date_max"]) == ("2020-01-02", "2021-06-30")
    assert overall["forward_separation_score"] == pytest.approx(0.018)
    assert overall["avg_state_ret_cv"] == pytest.approx(21.5 / 3)
    assert (overall["top_state_id"], overall["worst_state_id"]) == (0, 1)
    assert overall["notes"] == ["finite_only_forward_aggregation", "scorecard_eps=1e-12"]


def test_worst_state_is_never_a_null_mean_state():
    """#20: the old sort put a state with no finite outcome (null mean) last, i.e. "worst"."""
    empty = [{"state_id": 3, "outcome_name": "fwd_ret_10", "n": 0, "mean_obs": None,
              "mean_ci_lo": None, "mean_ci_hi": None, "hit_rate_obs": None,
              "mean_p_value": None, "mean_p_adjusted": None,
              "mean_excess_obs": None}]  # fmt: skip
    card, overall = build_scorecards(FRAME, "hmm", _boot(extra=empty), STABILITY, weights={})
    assert card.height == 4
    assert overall["worst_state_id"] == 1
    assert overall["top_state_id"] == 0
    row = card.filter(pl.col("state_id") == 3).to_dicts()[0]
    assert row["edge_significant"] is False and row["edge_direction"] == 0
    assert row["confidence_score"] == 0.0  # n 0, no CI, no sign, no stability row, no pairs


def test_weights_override_and_fallback():
    """A given weight replaces the default; missing names keep the defaults."""
    card, _ = build_scorecards(FRAME, "cluster", _boot(), STABILITY, weights={"separation": 0.0})
    row = card.filter(pl.col("state_id") == 0).to_dicts()[0]
    assert row["confidence_score"] == pytest.approx(round(EXPECTED_SCORE[0] - 100 * 0.1 * 0.5, 3))


def test_stability_summary_with_old_positive_share_is_refused():
    """#12: without ``dominant_sign`` the sign stability is the old positive-window share, which
    scores a steadily bearish state near 0; the scorecard refuses such input."""
    old = SimpleNamespace(state_summary=STABILITY.state_summary.drop("dominant_sign"))
    with pytest.raises(ValueError, match="dominant_sign"):
        build_scorecards(FRAME, "cluster", _boot(), old, weights={})


def test_no_fwd_ret_10_rows_is_an_error():
    boot = _boot()
    boot.state_summary = boot.state_summary.filter(pl.col("outcome_name") != "fwd_ret_10")
    with pytest.raises(ValueError, match="fwd_ret_10"):
        build_scorecards(FRAME, "cluster", boot, STABILITY, weights={})
