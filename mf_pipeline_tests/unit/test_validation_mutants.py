"""Value tests behind the mutation testing of ``lib/validation/`` (docs/VALIDATION.md,
"Mutation testing").

Each test pins figures that a surviving mutant changed and no other test noticed: a null
input, a value exactly at a threshold, a configurable threshold away from its default, a
column or record key nobody read. Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import datetime as dt
import math
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.research.labels import FORWARD_COLUMNS
from mf_pipeline.lib.validation import bootstrap as bmod
from mf_pipeline.lib.validation import walkforward as wf
from mf_pipeline.lib.validation.adapter import adapt
from mf_pipeline.lib.validation.compare import (
    hardening_compare,
    match_states,
    outcome_profile,
    validation_compare,
)
from mf_pipeline.lib.validation.events import transition_event_study
from mf_pipeline.lib.validation.policy import (
    PolicyThresholds,
    export_rows,
    export_summary,
    harden,
    recommend_thresholds,
)
from mf_pipeline.lib.validation.qa import (
    QaThresholds,
    cluster_qa,
    transition_counts,
    window_stats,
)
from mf_pipeline.lib.validation.scorecards import (
    build_scorecards,
    overall_scorecard,
    pairwise_shares,
    state_scorecard,
)
from mf_pipeline.lib.validation.stability import rolling_stability
from mf_pipeline_tests.unit.test_validation_adapter import _panel
from mf_pipeline_tests.unit.test_validation_bootstrap import _frame as boot_frame
from mf_pipeline_tests.unit.test_validation_compare import PERM, SUMMARY_A, SUMMARY_B, _table
from mf_pipeline_tests.unit.test_validation_events import hand_frame as events_hand_frame
from mf_pipeline_tests.unit.test_validation_events import study
from mf_pipeline_tests.unit.test_validation_policy import (
    NO_TRANSITIONS,
    STEADY,
    card,
    rolling,
    transitions,
)
from mf_pipeline_tests.unit.test_validation_scorecards import FRAME, STABILITY, _boot
from mf_pipeline_tests.unit.test_validation_walkforward import _records as wf_records


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
    # a state with a single label is flagged too
    assert qa.flagged["state_id"].to_list() == [1, 2, 3]
    assert qa.summary["states_flagged"] == 3



def test_transition_summary_without_counts_gives_no_counts() -> None:
    out = transition_counts(pl.DataFrame({"prev_state_id": [0], "next_state_id": [1]}))
    assert out.is_empty()
    assert out.schema == pl.Schema({"state_id": pl.Int32, "transition_event_count": pl.Int64})


def test_qa_summary_thresholds_record() -> None:
    t = QaThresholds(ci_width_max=0.05, min_n_rows=300)
    sc = card({"state_id": 0, "ci_width": 0.01}, {"state_id": 1, "ci_width": 0.03})
    summary = cluster_qa(sc, rolling({0: STEADY, 1: STEADY}), NO_TRANSITIONS, t).summary
    _utc_seconds(summary["generated_ts"])
    assert summary["thresholds"] == {
        "ret_cv_threshold": 5.0, "min_n_rows": 300, "min_state_share": 0.03,
        "sign_consistency_threshold": 0.55, "ci_width_max": 0.05,
        "ci_width_threshold_value": 0.05, "ci_width_quantile_threshold": 0.8,
        "ci_width_quantile_value": pytest.approx(0.01 + 0.8 * 0.02),  # linear q0.8 of 2 widths
        "transitions_sparse_threshold": 60, "near_zero_mean_threshold": 0.001, "eps": 1e-12,
    }  # fmt: skip


def test_windows_without_rows_are_not_windows_of_the_state() -> None:
    """Rolling rows with ``row_count`` 0 (a producer listing absent states) are dropped, and
    an Int64 ``state_id`` is read as the Int32 id of the scorecard."""
    roll = rolling({0: [0.01, 0.02, -0.01]}).with_columns(
        pl.Series("row_count", [100, 0, 100]), pl.col("state_id").cast(pl.Int64))
    stats = window_stats(roll)
    assert stats.schema["state_id"] == pl.Int32
    # windows 0 and 2: means 0.01, -0.01 -> one sign flip, span 0.02
    assert stats.select("state_id", "window_count", "sign_flip_count").rows() == [(0, 2, 1)]
    assert stats["drift_span"].item() == pytest.approx(0.02)
    qa = cluster_qa(card({"state_id": 0}), roll, transitions((0, 0, 50)), QaThresholds())
    assert qa.windows.filter(pl.col("window_kind") == "best")["window_seq"].to_list() == [0, 2]


# --------------------------------------------------------------------------- scorecards


def test_state_scorecard_default_alpha_is_five_percent() -> None:
    boot = _boot()  # Holm p of the fwd_ret_10 edge: 0.003, 0.02, 0.9 for states 0, 1, 2
    card_ = state_scorecard(boot.state_summary, boot.pairwise, STABILITY.state_summary,
                            weights={})  # fmt: skip
    flags = dict(card_.select("state_id", "edge_significant").rows())
    assert flags == {0: True, 1: True, 2: False}


def test_missing_pairwise_column_message() -> None:
    pairwise = pl.DataFrame({"state_a": [0], "state_b": [1], "diff_sign_consistent": [True]})
    with pytest.raises(ValueError, match=r"^pairwise lacks columns \['significant'\]$"):
        pairwise_shares(pairwise)


def test_old_stability_summary_message() -> None:
    old = SimpleNamespace(state_summary=STABILITY.state_summary.drop("dominant_sign"))
    with pytest.raises(ValueError, match=r"\['dominant_sign'\] \(without dominant_sign, "
                       r"fwd_ret_10_sign_stability is the old positive-window share, which "
                       r"marks steadily bearish states as unstable; issue #12\)$"):
        build_scorecards(FRAME, "cluster", _boot(), old, weights={})


def test_state_without_pairwise_rows_has_zero_shares() -> None:
    pairwise = pl.DataFrame({"state_a": [0], "state_b": [1], "diff_sign_consistent": [True],
                             "significant": [True]})  # fmt: skip
    card_, _ = build_scorecards(FRAME, "cluster", _boot(pairwise), STABILITY, weights={})
    shares = card_.select("state_id", "pairwise_diff_significant_share",
                          "pairwise_diff_sign_consistent_share").sort("state_id").rows()
    assert shares == [(0, 1.0, 1.0), (1, 1.0, 1.0), (2, 0.0, 0.0)]


def test_grade_is_c_without_a_sign_consistency() -> None:
    """Every pair significant (share 1, enough for A) and narrow CIs: only the missing sign
    consistency keeps the run from a grade, so it is C."""
    pairwise = pl.DataFrame({"state_a": [0, 0, 1], "state_b": [1, 2, 2],
                             "diff_sign_consistent": [True] * 3, "significant": [True] * 3})
    stability = STABILITY.state_summary.with_columns(
        pl.lit(None, pl.Float64).alias("fwd_ret_10_sign_stability"))
    _, overall = build_scorecards(FRAME, "cluster", _boot(pairwise),
                                  SimpleNamespace(state_summary=stability), weights={})
    assert overall["pairwise_diff_significant_share"] == 1.0
    assert overall["avg_state_sign_consistency"] is None
    assert overall["validation_grade"] == "C"
    ci_only = build_scorecards(FRAME, "cluster", _boot(pairwise), STABILITY, weights={})[1]
    assert ci_only["avg_state_sign_consistency"] == pytest.approx(2.2 / 3)
    assert ci_only["validation_grade"] == "B"  # (0.012 + 0.019 + 0.061) / 3 > 0.02: not A


def test_one_row_state_sample_component_and_grade_a_at_the_ci_limit() -> None:
    boot = _boot()
    boot.state_summary = boot.state_summary.with_columns(
        pl.when(pl.col("state_id") == 2).then(1).otherwise(pl.col("n")).alias("n"))
    card_, _ = build_scorecards(FRAME, "cluster", boot, STABILITY, weights={})
    # n = 1, 100, 1000: n_ref = floor(100 + 0.8 * 900) = 820; state 2 (CI width 0.061,
    # consistency 0.5, cv 20 -> 0, no sign confidence, no significant pair)
    expected = 100 * (0.2 * math.log(2) / math.log(821) + 0.25 * (1 - 0.061 / 0.2)
                      + 0.25 * 0.5 * 0.5)  # fmt: skip
    score = card_.filter(pl.col("state_id") == 2)["confidence_score"].item()
    assert score == pytest.approx(round(expected, 3))
    # average CI width exactly at grade A's 0.02 (inclusive), every pair significant
    two = pl.DataFrame({"state_id": [0, 1], "fwd_ret_10_mean": [0.01, -0.01],
                        "ci_width": [0.02, 0.02], "stability_sign_consistency": [0.7, 0.7],
                        "ret_mean_cv": [1.0, 1.0], "edge_significant": [True, True]})
    pairwise = pl.DataFrame({"significant": [True], "diff_sign_consistent": [True]})
    overall = overall_scorecard(two, pairwise, FRAME, "cluster", eps=1e-12, alpha=0.05)
    assert overall["avg_ci_width_fwd_ret_10"] == 0.02
    assert overall["validation_grade"] == "A"


# --------------------------------------------------------------------------- adapter


def test_blank_text_labels_are_null_states() -> None:
    frame = _panel(1, 4, cluster_label=["bull", "  ", "bear", ""])
    out = adapt(frame)
    assert out.frame["state_id"].to_list() == [1, 0]  # bear 0, bull 1; both blanks dropped
    assert out.summary["rows_dropped_null_state"] == 2
    assert out.summary["state_labels"] == {"0": "bear", "1": "bull"}


def test_a_small_sample_fraction_keeps_one_ticker() -> None:
    out = adapt(_panel(3, 30), sample_frac=0.1)  # round(0.1 * 3) = 0 -> at least one ticker
    assert out.summary["tickers_sampled"] == 1 == out.frame["ticker"].n_unique()


def test_missing_state_column_message() -> None:
    with pytest.raises(ValueError, match=r"^input_type 'hmm' needs one of the columns "
                       r"\('hmm_state_filtered', 'hmm_state'\) or state_col$"):
        adapt(_panel(1, 3), input_type="hmm")


def test_adapter_summary_record_and_close_column() -> None:
    d0 = dt.date(2022, 3, 1)
    days = [d0, d0 + dt.timedelta(days=1), None, d0, d0 + dt.timedelta(days=1),
            d0 + dt.timedelta(days=2)]  # fmt: skip
    frame = pl.DataFrame({
        "ticker": ["a", "a", "a", "b", "b", "b"], "trade_date": days,
        "close": [10.0, float("inf"), 11.0, 20.0, 21.0, 22.0],
        "flow_state_code": [0, 1, 0, 1, 1, 0],
        "flow_state_label": ["calm", "hot", "calm", "hot", "hot", "calm"],
    })  # fmt: skip
    out = adapt(frame)
    assert out.frame["close"].to_list() == [10.0, None, 20.0, 21.0, 22.0]  # inf is no price
    assert out.summary == {
        "input_file": None, "metadata": None, "input_type_requested": "auto",
        "input_type_resolved": "flow", "state_label_type": "flow",
        "state_column": "flow_state_code", "causal_states": True,
        "state_labels_from_text": False, "state_labels": {"0": "calm", "1": "hot"},
        "rows_input": 6, "rows_dropped_null_date": 1, "rows_dropped_date_range": 0,
        "rows_dropped_null_state": 0, "rows": 5, "ticker_count": 2, "state_count": 2,
        "min_trade_date": "2022-03-01", "max_trade_date": "2022-03-03", "sample_frac": None,
        "sample_unit": "ticker", "sample_seed": None, "tickers_sampled": None,
        "date_from": None, "date_to": None, "forward_columns_present": list(FORWARD_COLUMNS),
        "forward_recomputed": True,
    }  # fmt: skip


# --------------------------------------------------------------------------- stability


def test_transition_stability_without_any_pair() -> None:
    """Two tickers of one row each: windows with rows but no transition pair anywhere."""
    frame = pl.DataFrame({
        "ticker": ["A", "B"], "trade_date": [dt.date(2024, 1, 5), dt.date(2024, 2, 5)],
        "state_id": pl.Series([0, 1], dtype=pl.Int32), "fwd_ret_10": [0.01, -0.01],
        "fwd_abs_ret_10": [0.01, 0.01], "fwd_vol_proxy_10": [0.1, 0.1],
    })  # fmt: skip
    tm = rolling_stability(frame, window_months=1, step_months=1,
                           transition_stability=True).transition_matrix  # fmt: skip
    assert tm.select("window_seq", "transition_count", "frobenius_distance").rows() == [
        (0, 0, None), (1, 0, None)]  # fmt: skip



def test_stability_window_message() -> None:
    with pytest.raises(ValueError, match=r"^window_months and step_months must be >= 1$"):
        rolling_stability(pl.DataFrame(), step_months=0)


# --------------------------------------------------------------------------- events


def test_event_hit_rate_counts_only_positive_returns() -> None:
    frame = events_hand_frame().with_columns(  # A's 0->1 event now returns exactly 0
        pl.when(pl.int_range(pl.len()) == 2).then(0.0).otherwise(pl.col("fwd_ret_10"))
        .alias("fwd_ret_10"))  # fmt: skip
    summary = study(frame).summary.filter(pl.col("transition_code") == "0->1")
    assert summary.select("count_events", "fwd_ret_10_hit_rate").rows() == [(2, 0.0)]  # 0, -0.01


def test_default_pre_window_is_ten_bars() -> None:
    frame = pl.DataFrame({
        "ticker": ["X"] * 13, "trade_date": [dt.date(2024, 3, d) for d in range(1, 14)],
        "state_id": pl.Series([0] * 12 + [1], dtype=pl.Int32), "close": [float(d) for d in
                                                                         range(1, 14)],
    })  # fmt: skip
    path = transition_event_study(frame, min_events_per_transition=1).path_summary
    assert path["rel_bar"].to_list() == list(range(-10, 1))  # 12 bars of state 0, 10 kept


def test_codes_of_large_state_ids_stay_apart() -> None:
    """Ids near 1e8: a float64 (prev, next) key would merge 1e8->5 with 1e8->6."""
    big = 100_000_000
    frame = pl.DataFrame({
        "ticker": ["X"] * 4, "trade_date": [dt.date(2024, 2, d) for d in range(1, 5)],
        "state_id": pl.Series([big, 5, big, 6], dtype=pl.Int32), "close": [1.0, 2, 3, 4],
    })  # fmt: skip
    path = study(frame, window_pre=1, window_post=1).path_summary
    counts = path.group_by("transition_code").agg(pl.col("count_points").sum()).sort(
        "transition_code").rows()  # fmt: skip
    # each event: its entry bar (rel 0) and the one bar of the state left (rel -1)
    assert counts == [("100000000->5", 2), ("100000000->6", 2), ("5->100000000", 2)]


def test_event_window_message() -> None:
    with pytest.raises(ValueError, match=r"^window_pre and window_post must be >= 0$"):
        transition_event_study(events_hand_frame(), window_post=-1)


# --------------------------------------------------------------------------- bootstrap


def test_a_pair_never_drawn_together_has_no_bootstrap_figures(monkeypatch) -> None:
    """Both replicates draw date 0 twice: state 1 (date 1 only) is never drawn, so the pair
    keeps its observed difference 0.01 - (-0.02) and nothing else."""
    monkeypatch.setattr(bmod, "_date_weights", lambda *a: np.array([[2.0, 0.0], [2.0, 0.0]]))
    frame = boot_frame(np.array([[0.01, -0.02]]), np.array([[0, 1]]), "fwd_ret_10")
    res = bmod.run_bootstrap(frame, n_boot=2, block_length=1)
    pair = res.pairwise.row(0, named=True)
    assert (pair["state_a"], pair["state_b"], pair["n_a"], pair["n_b"]) == (0, 1, 1, 1)
    assert pair["diff_mean_obs"] == pytest.approx(0.03)
    assert [pair[k] for k in ("diff_ci_lo", "diff_ci_hi", "diff_boot_mean", "p_value")] == [
        None] * 4  # fmt: skip
    assert pair["diff_sign_consistent"] is False and pair["significant"] is False
    assert res.state_summary["bootstrap_method"].to_list() == ["percentile"] * 2


def test_bootstrap_defaults_one_replicate_and_no_outcome() -> None:
    frame = boot_frame(np.array([[0.01, -0.02, 0.03]]), 0, "fwd_ret_10")
    res = bmod.run_bootstrap(frame)
    assert res.state_summary.schema == pl.Schema(bmod.STATE_SUMMARY_SCHEMA)
    meta = {k: v for k, v in res.meta.items() if k != "generated_ts"}
    assert meta == {
        "outcomes": ["fwd_ret_10"], "n_boot": 1000, "ci": 0.95, "bootstrap_mode": "block",
        # Politis-White needs >= 10 dates; the horizon 10 is capped at the 3 dates
        "block_length": 3, "block_length_method": "politis_white_min_horizon",
        "block_length_politis_white": None, "random_state": 42, "pairwise_outcome": "fwd_ret_10",
        "state_count": 1, "alpha": 0.05, "correction": "holm", "resample_unit": "date_block",
        "n_dates": 3, "max_points_per_state": 50_000,
    }  # fmt: skip
    one = bmod.run_bootstrap(frame, n_boot=1, block_length=1)  # one replicate is allowed
    assert one.meta["n_boot"] == 1 and one.state_summary["mean_ci_lo"].item() is not None
    with pytest.raises(ValueError, match=r"^no outcome column to bootstrap$"):
        bmod.run_bootstrap(frame.drop("fwd_ret_10"))


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


def test_one_row_state_and_an_outsized_confidence_score() -> None:
    """A state of one row gets log(2) / log(1 + max n) of the sample component, not 0; a
    confidence score above 100 (custom scorecard weights summing above 1) caps at 1."""
    sc = card({"state_id": 0, "n_rows": 99},
              {"state_id": 1, "n_rows": 1, "confidence_score": 150.0})
    table = harden(sc, rolling({0: STEADY, 1: STEADY}), NO_TRANSITIONS, {0: [], 1: []},
                   PolicyThresholds()).state_table  # fmt: skip
    row = table.filter(pl.col("state_id") == 1).to_dicts()[0]
    assert row["score_component_sample_size"] == pytest.approx(math.log(2) / math.log(100))
    assert row["score_component_confidence_score"] == 1.0


def test_policy_payload_thresholds_record() -> None:
    t = PolicyThresholds(min_state_share_hard=0.05, penalties={"LOW_N": 7.0})
    sc = card({"state_id": 0, "ci_width": 0.01}, {"state_id": 1, "ci_width": 0.02})
    policy = harden(sc, rolling({0: STEADY, 1: STEADY}), NO_TRANSITIONS, {0: [], 1: []},
                    t).policy  # fmt: skip
    assert list(policy) == ["generated_ts", "thresholds", "summary", "per_state"]
    _utc_seconds(policy["generated_ts"])
    assert policy["thresholds"] == {
        "min_n_rows_hard": 200, "min_state_share_hard": 0.05, "ret_cv_hard": 6.0,
        "ret_cv_is_hard_limit": False, "sign_consistency_hard": 0.55,
        "ci_width_hard_max": 0.06, "ci_width_hard_value": 0.06, "ci_width_hard_quantile": 0.8,
        "ci_width_hard_quantile_value": pytest.approx(0.018),  # linear q0.8 of 0.01, 0.02
        "score_min_allow": 70.0, "score_min_watch": 45.0, "alpha": 0.05,
        "weights": dict(t.weights), "penalties": {"LOW_N": 7.0}, "eps": 1e-12,
    }  # fmt: skip


def test_a_ci_touching_zero_confirms_no_direction() -> None:
    """CI [0, 0.02]: not above zero, so neither the direction hint nor the edge check sees a
    long side; the significant positive excess then points nowhere the CI confirms."""
    sc = card({"state_id": 0, "fwd_ret_10_ci_lo": 0.0, "fwd_ret_10_ci_hi": 0.02,
               "sign_confidence_flag": False})  # fmt: skip
    row = harden(sc, rolling({0: STEADY}), NO_TRANSITIONS, {0: []},
                 PolicyThresholds()).state_table.to_dicts()[0]  # fmt: skip
    assert (row["class_label"], row["directional_edge_sign"]) == ("WATCH", 0)
    assert row["allow_direction_hint"] == "UNCONFIRMED"
    assert row["reasons"] == "WATCH_MIXED_SIGNALS,WATCH_EDGE_DIRECTION_MIXED"


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


# --------------------------------------------------------------------------- walkforward


def test_walkforward_empty_tables_keep_their_columns() -> None:
    assert wf.issue_frequency(pl.DataFrame(), "issues").schema == pl.Schema({
        "model": pl.String, "issue": pl.String, "split_count": pl.UInt32,
        "state_count": pl.UInt32})  # fmt: skip
    qa = wf.qa_walkforward(wf_records())  # no model carries qa_flagged
    assert qa.flagged.columns == ["train_end", "model", "validation_run_dir"]
    assert qa.summary["total_flagged_states"] == 0 and qa.summary["by_model"] == {}


def test_walkforward_report_tables() -> None:
    records = wf_records()
    long = wf.model_summary_long(records)
    summary = wf.aggregate_summary(records, long)
    lines = wf.full_report(records, summary, long, {}).splitlines()
    assert "## Wins by metric" in lines
    assert ("| train_end | model | rows | n_states | validation_grade | forward_separation_score"
            " | pairwise_diff_significant_share | avg_ci_width_fwd_ret_10"
            " | avg_state_sign_consistency | avg_state_ret_cv | nan_warning_total |") in lines
    # rows 1000 + 500, 990 + 500, 1000; grades A, B -> 2.5; B, null -> 2; C -> 1
    assert "| total_rows_sum | 1500 | 1490 | 1000 |" in lines
    assert "| validation_grade_score_mean_heuristic | 2.5 | 2 | 1 |" in lines
    # a table with rows gets no placeholder row of dashes
    assert not [line for line in lines if line.startswith("| —") and set(line) <= set("|— ")]
    expanding = wf.full_report([dict(r, test_end=None) for r in records], summary, long, {})
    assert ("Test windows overlap (expanding design: each split runs to the end of data), so "
            "later splits' test rows are contained in earlier ones and the splits are NOT "
            "independent.") in expanding.splitlines()
