"""Value tests behind the mutation testing of ``lib/validation/`` (docs/VALIDATION.md,
"Mutation testing").

Each test pins figures that a surviving mutant changed and no other test noticed: a null
input, a value exactly at a threshold, a configurable threshold away from its default, a
column or record key nobody read. Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from mf_pipeline.lib.validation.compare import (
    hardening_compare,
    match_states,
    outcome_profile,
    validation_compare,
)
from mf_pipeline.lib.validation.policy import (
    PolicyThresholds,
    export_rows,
    export_summary,
    harden,
    recommend_thresholds,
)
from mf_pipeline.lib.validation.qa import QaThresholds, cluster_qa
from mf_pipeline_tests.unit.test_validation_compare import PERM, SUMMARY_A, SUMMARY_B, _table
from mf_pipeline_tests.unit.test_validation_policy import (
    NO_TRANSITIONS,
    STEADY,
    card,
    rolling,
    transitions,
)


def _utc_seconds(stamp: str) -> dt.datetime:
    """A ``generated_ts``: ISO 8601 in UTC to the second."""
    when = dt.datetime.fromisoformat(stamp)
    assert when.utcoffset() == dt.timedelta(0) and when.microsecond == 0
    return when

# --------------------------------------------------------------------------- qa


def test_qa_flags_on_null_inputs_and_at_the_near_zero_boundary() -> None:
    sc = card(
        {"state_id": 0, "ret_mean_cv": None},  # no cv: neither drift nor cv inflation
        {"state_id": 1, "fwd_ret_10_mean": None, "ret_mean_cv": 6.0},  # no mean: drift
        # |mean| exactly at near_zero_mean_threshold = max(0.001, 1000 * 1e-12): inflation
        {"state_id": 2, "fwd_ret_10_mean": -0.001, "ret_mean_cv": 6.0},
        {"state_id": 3, "n_rows": None},  # unknown size counts as 0 rows: 0 < 1
    )
    trans = transitions((0, 1, 100), (2, 3, 100))  # every state 100 >= max(10, 1 // 5)
    qa = cluster_qa(sc, rolling(dict.fromkeys(range(4), STEADY)), trans, QaThresholds(min_n_rows=1))
    assert qa.labels == {
        0: [],
        1: ["WINDOW_DRIFT_HIGH"],
        2: ["MEAN_NEAR_ZERO_CV_INFLATION"],
        3: ["LOW_N"],
    }


# --------------------------------------------------------------------------- compare


def test_validation_compare_summary_record() -> None:
    card_a = {"n_states": 4, "validation_grade": "B", "input_type": "cluster"}
    card_b = {"n_states": 4, "validation_grade": "C", "input_type": "hmm"}
    states = pl.DataFrame({"state_id": [0, 1, 2, 3], "n_rows": [1, 2, 3, 4]})
    states = states.with_columns(
        *(pl.lit(1.0).alias(c) for c in ("fwd_ret_10_mean", "hit_rate", "ci_width",
                                          "confidence_score")),
        pl.lit(True).alias("edge_significant"),
    )  # fmt: skip
    out = validation_compare(card_a, card_b, states, states, outcome_profile(SUMMARY_A),
                             outcome_profile(SUMMARY_B))  # fmt: skip
    s = out.summary
    assert list(s) == [
        "generated_ts", "run_a_validation_grade", "run_b_validation_grade", "run_a_input_type",
        "run_b_input_type", "metric_diffs", "state_matching", "matching", "matched_pairs",
        "match_total_cost", "id_aligned_total_cost", "matching_is_identity",
    ]  # fmt: skip
    _utc_seconds(s["generated_ts"])
    assert (s["run_a_input_type"], s["run_b_input_type"]) == ("cluster", "hmm")
    assert s["metric_diffs"][0] == {"metric": "n_states", "run_a": 4.0, "run_b": 4.0,
                                    "delta_b_minus_a": 0.0}  # fmt: skip
    assert [(m["state_id_a"], m["state_id_b"]) for m in s["matching"]] == sorted(PERM.items())


def test_hardening_compare_lists_unmatched_states_of_b_by_id() -> None:
    """A has two states, B four: B's two unpaired states close the table, ids ascending."""
    keep = [s for s, b in PERM.items() if b in (0, 1)]  # A's regimes that B calls 0 and 1
    summary_a = SUMMARY_A.filter(pl.col("state_id").is_in(keep))
    table_a = _table(dict.fromkeys(keep, "WATCH"), dict.fromkeys(keep, 50.0))
    table_b = _table(dict.fromkeys(range(4), "WATCH"), dict.fromkeys(range(4), 50.0))
    profile_a, profile_b = outcome_profile(summary_a), outcome_profile(SUMMARY_B)
    # match_states: pairs by state_id_a, B's lone states after them (nulls last)
    assert match_states(profile_a, profile_b).select("state_id_a", "state_id_b").rows() == [
        *sorted((a, PERM[a]) for a in keep), (None, 2), (None, 3)]  # fmt: skip
    out = hardening_compare(table_a, table_b, profile_a, profile_b)
    rows = out.tables["matched"].select("state_id_a", "state_id_b", "class_changed").rows()
    # changed first (only the two lone B states, a side missing), then the unchanged pairs
    assert rows == [(None, 2, True), (None, 3, True),
                    *sorted((a, PERM[a], False) for a in keep)]  # fmt: skip
    assert out.summary["class_changed_states"] == 2


# --------------------------------------------------------------------------- policy


def test_export_carries_the_score_and_counts_source_rows() -> None:
    sc = card({"state_id": 0}, {"state_id": 1, "n_rows": 50})
    table = harden(sc, rolling({0: STEADY, 1: STEADY}), NO_TRANSITIONS, {0: [], 1: []},
                   PolicyThresholds()).state_table  # fmt: skip
    score = dict(table.select("state_id", "tradability_score").rows())
    rows = pl.DataFrame({"cluster_id": [1, 0, 9], "x": [1, 2, 3]})
    out = export_rows(rows, table, "cluster_id")
    assert out["with_policy"]["tradable_state_score"].to_list() == [score[1], score[0], None]
    assert 0 < score[1] < score[0] <= 100  # state 1: fewer rows, LOW_N
    summary = export_summary(7, out)  # 7 source rows of which 3 reached the export
    assert summary == {
        "source_rows": 7, "joined_rows": 3, "tradable_rows": 1, "watch_rows": 0,
        "class_counts": [{"tradable_state_class": c, "row_count": 1}
                         for c in ("ALLOW", "BLOCK", "UNMAPPED")],
    }  # fmt: skip


def test_recommend_thresholds_records() -> None:
    t = PolicyThresholds()
    assert recommend_thresholds(pl.DataFrame(), t) == {
        "method": "fallback_config_only", "source_rows": 0,
        "recommendations": {"min_n_rows_hard": 200, "min_state_share_hard": 0.03,
                            "ret_cv_hard": 6.0, "sign_consistency_hard": 0.55,
                            "ci_width_hard_quantile": 0.8},
    }  # fmt: skip
    # one WATCH row with no CI width: the configured absolute limit is recommended
    table = pl.DataFrame({"class_label": ["WATCH"], "n_rows": [300], "state_share_mean": [0.2],
                          "ret_mean_cv": [1.0], "stability_sign_consistency": [0.7],
                          "ci_width": [None]}, schema_overrides={"ci_width": pl.Float64})
    rec = recommend_thresholds(table, t)
    assert rec["method"] == "allow_watch_quantile_heuristic"
    assert rec["reference_class"] == "WATCH" and rec["reference_rows"] == 1
    assert rec["recommendations"] == {
        "min_n_rows_hard": 300, "min_state_share_hard": 0.2, "ret_cv_hard": 1.0,
        "sign_consistency_hard": 0.7, "ci_width_hard_quantile": 0.8,
        "ci_width_hard_value_recommended": 0.06,
    }  # fmt: skip
