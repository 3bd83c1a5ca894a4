"""Walk-forward aggregation (research.md §7.3–7.5, §8.4, §9.7; fixes #18, #19, #20), checked by
hand on three fake split records: two successful (the second without Cluster) and one failed.

Hand values (rows weight the weighted means):

=========  ============  ======  =====  ======  =====  =====  =====
split      model         rows    sep    share   ci     sign   cv
=========  ============  ======  =====  ======  =====  =====  =====
2014-12-31 HMM (A)       1000    0.02   0.5     0.01   0.70   1.0
2014-12-31 Flow (B)       990    0.03   0.4     0.01   0.60   2.0
2014-12-31 Cluster (C)   1000    0.03   None    0.02   NaN    3.0
2016-12-31 HMM (B)        500    0.04   0.6     0.03   0.80   4.0
2016-12-31 Flow (None)    500    0.04   0.2     0.02   None   5.0
2018-12-31 FAILED
=========  ============  ======  =====  ======  =====  =====  =====
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from mf_pipeline.lib.validation import walkforward as wf

D = dt.date


def _model(rows: int, states: int, grade: str | None, sep: float, share: float | None,
           ci: float, sign: float | None, cv: float, nan: int = 0) -> dict[str, Any]:
    card = pl.DataFrame({"state_id": list(range(states)), "fwd_ret_10_mean": [0.01] * states})
    return {
        "validation_run_dir": f"/runs/{grade}-{rows}",
        "run_summary": {"rows": rows, "state_count": states},
        "validation_scorecard": {
            "validation_grade": grade, "forward_separation_score": sep,
            "pairwise_diff_significant_share": share, "avg_ci_width_fwd_ret_10": ci,
            "avg_state_sign_consistency": sign, "avg_state_ret_cv": cv,
            "date_min": "2015-02-02", "date_max": "2016-12-30",
        },
        "state_scorecard": card,
        "nan_warning_total": nan,
        "transition_summary_rows": states + 1,
        "bootstrap_pairwise_rows": states * (states - 1) // 2,
    }  # fmt: skip


def _records() -> list[dict[str, Any]]:
    split1 = {
        "train_end": "2014-12-31", "split_id": "wf2014-12-31", "status": "SUCCESS",
        "error": None, "test_start": "2015-01-30", "test_end": "2016-12-31",
        "common_rows": 1000,
        "models": {
            # deliberately not in the stable order
            "Cluster": _model(1000, 5, "C", 0.03, None, 0.02, float("nan"), 3.0, nan=2),
            "HMM": _model(1000, 4, "A", 0.02, 0.5, 0.01, 0.70, 1.0),
            "Flow": _model(990, 3, "B", 0.03, 0.4, 0.01, 0.60, 2.0, nan=1),
        },
        "comparisons": {"HMM_vs_Flow": {"comparison_dir": "/cmp/a"},
                        "HMM_vs_Cluster": {"comparison_dir": "/cmp/b"}},
    }  # fmt: skip
    split2 = {
        "train_end": "2016-12-31", "split_id": "wf2016-12-31", "status": "SUCCESS",
        "error": None, "test_start": "2017-01-31", "test_end": None, "common_rows": 500,
        "models": {
            "HMM": _model(500, 4, "B", 0.04, 0.6, 0.03, 0.80, 4.0),
            "Flow": _model(500, 3, None, 0.04, 0.2, 0.02, None, 5.0),
        },
        "comparisons": {"HMM_vs_Flow": {"comparison_dir": "/cmp/c"}},
    }  # fmt: skip
    split3 = {"train_end": "2018-12-31", "split_id": "wf2018-12-31", "status": "FAILED",
              "error": "boom | bad", "test_start": None, "test_end": None}  # fmt: skip
    return [split2, split3, split1]  # unsorted on purpose


# --------------------------------------------------------------------------- test windows (#18)


def test_test_windows_non_overlapping_end_at_the_next_train_end() -> None:
    ends = [D(2016, 12, 31), D(2014, 12, 31), D(2014, 12, 31), D(2018, 12, 31)]
    assert wf.test_windows(ends, D(2020, 6, 30)) == [
        (D(2014, 12, 31), D(2016, 12, 31)),
        (D(2016, 12, 31), D(2018, 12, 31)),
        (D(2018, 12, 31), D(2020, 6, 30)),
    ]
    assert wf.test_windows(ends, None)[-1] == (D(2018, 12, 31), None)


def test_test_windows_expanding_all_run_to_the_end() -> None:
    got = wf.test_windows([D(2014, 12, 31), D(2016, 12, 31)], D(2020, 6, 30),
                          non_overlapping=False)  # fmt: skip
    assert got == [(D(2014, 12, 31), D(2020, 6, 30)), (D(2016, 12, 31), D(2020, 6, 30))]
    assert wf.test_windows([], D(2020, 6, 30)) == []


def test_test_windows_reject_a_train_end_without_test_dates() -> None:
    with pytest.raises(ValueError, match=r"\['2020-06-30'\] leave no test date"):
        wf.test_windows([D(2014, 12, 31), D(2020, 6, 30)], D(2020, 6, 30))


def test_windows_overlap_detection() -> None:
    runs = wf.split_runs(_records())
    assert wf.windows_overlap(runs) is False  # 2016-12-31 < 2017-01-31; the failed split has none
    expanding = [dict(r, test_end=None) for r in _records()]
    assert wf.windows_overlap(wf.split_runs(expanding)) is True


# --------------------------------------------------------------------------- §7.3 tables


def test_long_rows_order_values_and_common_rows() -> None:
    long = wf.model_summary_long(_records())
    assert long.select("train_end", "model").rows() == [
        (D(2014, 12, 31), "HMM"), (D(2014, 12, 31), "Flow"), (D(2014, 12, 31), "Cluster"),
        (D(2016, 12, 31), "HMM"), (D(2016, 12, 31), "Flow"),
    ]  # fmt: skip
    cluster = long.row(2, named=True)
    assert cluster["avg_state_sign_consistency"] is None  # NaN -> null
    assert cluster["pairwise_diff_significant_share"] is None
    assert (cluster["rows"], cluster["n_states"], cluster["common_rows"]) == (1000, 5, 1000)
    assert (cluster["state_scorecard_rows"], cluster["transition_summary_rows"]) == (5, 6)
    assert (cluster["bootstrap_pairwise_rows"], cluster["nan_warning_total"]) == (10, 2)
    assert long["common_rows"].to_list() == [1000, 1000, 1000, 500, 500]
    assert long["rows"].to_list() == [1000, 990, 1000, 500, 500]


def test_wide_table_with_a_missing_model() -> None:
    wide = wf.model_summary_wide(wf.model_summary_long(_records()))
    assert wide["train_end"].to_list() == [D(2014, 12, 31), D(2016, 12, 31)]
    assert wide["common_rows"].to_list() == [1000, 500]
    assert wide["hmm_validation_grade"].to_list() == ["A", "B"]
    assert wide["flow_rows"].to_list() == [990, 500]
    assert wide["cluster_rows"].to_list() == [1000, None]
    assert wide["cluster_forward_separation_score"].to_list() == [0.03, None]
    expected = {f"{m}_{c}" for m in ("hmm", "flow", "cluster") for c in wf.WIDE_COLUMNS}
    assert set(wide.columns) == {"train_end", "common_rows"} | expected


def test_comparison_rows_are_b_minus_a() -> None:
    cmp = wf.comparison_summary(_records())
    assert cmp.select("train_end", "comparison").rows() == [
        (D(2014, 12, 31), "HMM_vs_Cluster"), (D(2014, 12, 31), "HMM_vs_Flow"),
        (D(2016, 12, 31), "HMM_vs_Flow"),
    ]  # fmt: skip
    flow1 = cmp.row(1, named=True)
    assert flow1["comparison_dir"] == "/cmp/a"
    assert (flow1["run_a_validation_grade"], flow1["run_b_validation_grade"]) == ("A", "B")
    assert flow1["delta_forward_separation_score"] == pytest.approx(0.01)
    assert flow1["delta_avg_ci_width_fwd_ret_10"] == pytest.approx(0.0)
    assert flow1["delta_avg_state_sign_consistency"] == pytest.approx(-0.1)
    assert flow1["delta_avg_state_ret_cv"] == pytest.approx(1.0)
    assert flow1["delta_pairwise_diff_significant_share"] == pytest.approx(-0.1)
    cluster1 = cmp.row(0, named=True)
    assert cluster1["delta_pairwise_diff_significant_share"] is None  # b is null
    assert cluster1["delta_avg_state_sign_consistency"] is None  # b is NaN
    assert cluster1["delta_avg_state_ret_cv"] == pytest.approx(2.0)
    assert cmp.row(2, named=True)["run_b_validation_grade"] is None


def test_state_metrics_and_split_runs() -> None:
    states = wf.state_metrics_long(_records())
    assert states.columns[:3] == ["train_end", "model", "validation_run_dir"]
    assert states.height == 4 + 3 + 5 + 4 + 3  # failed split contributes nothing
    assert states.filter(pl.col("model") == "Cluster")["validation_run_dir"].unique().to_list() \
        == ["/runs/C-1000"]
    runs = wf.split_runs(_records())
    assert runs["train_end"].to_list() == [D(2014, 12, 31), D(2016, 12, 31), D(2018, 12, 31)]
    assert runs["status"].to_list() == ["SUCCESS", "SUCCESS", "FAILED"]
    assert runs["common_rows"].to_list() == [1000, 500, None]
    assert runs["test_end"].to_list() == [D(2016, 12, 31), None, None]
    assert runs["cluster_validation_run_dir"].to_list() == ["/runs/C-1000", None, None]


# --------------------------------------------------------------------------- §7.4 aggregates


def test_aggregates_by_model_by_hand() -> None:
    summary = wf.aggregate_summary(_records())
    assert (summary["splits_total"], summary["splits_successful"], summary["splits_failed"]) \
        == (3, 2, 1)
    assert summary["failed_splits"] == [
        {"train_end": "2018-12-31", "status": "FAILED", "error": "boom | bad"}]
    assert summary["common_rows_by_split"] == {"2016-12-31": 500, "2014-12-31": 1000}
    hmm = summary["aggregate_by_model"]["HMM"]
    assert (hmm["splits_completed"], hmm["total_rows_sum"], hmm["rows_median"]) == (2, 1500, 750)
    assert hmm["forward_separation_score_mean"] == pytest.approx(0.03)
    assert hmm["forward_separation_score_median"] == pytest.approx(0.03)
    assert hmm["forward_separation_score_std"] == pytest.approx(0.01)  # population
    assert hmm["avg_ci_width_fwd_ret_10_mean"] == pytest.approx(0.02)
    assert hmm["avg_state_sign_consistency_median"] == pytest.approx(0.75)
    assert hmm["avg_state_ret_cv_p90"] == pytest.approx(1.0 + 0.9 * 3.0)  # linear quantile
    assert hmm["pairwise_diff_significant_share_mean"] == pytest.approx(0.55)
    assert hmm["transition_summary_rows_mean"] == pytest.approx(5.0)
    assert hmm["validation_grade_counts"] == {"A": 1, "B": 1}
    assert hmm["validation_grade_score_mean_heuristic"] == pytest.approx(2.5)
    assert hmm["weighted_mean_forward_separation"] == pytest.approx(40 / 1500)
    assert hmm["weighted_mean_avg_ci_width"] == pytest.approx(25 / 1500)
    assert hmm["weighted_mean_sign_consistency"] == pytest.approx(1100 / 1500)

    flow = summary["aggregate_by_model"]["Flow"]
    assert flow["validation_grade_counts"] == {"B": 1, "NULL": 1}
    assert flow["validation_grade_score_mean_heuristic"] == pytest.approx(2.0)  # graded only
    assert flow["weighted_mean_sign_consistency"] == pytest.approx(0.6)  # split 2 is null
    assert flow["weighted_mean_avg_ci_width"] == pytest.approx((0.01 * 990 + 0.02 * 500) / 1490)
    assert flow["nan_warning_total_sum"] == 1

    cluster = summary["aggregate_by_model"]["Cluster"]
    assert (cluster["splits_completed"], cluster["total_rows_sum"]) == (1, 1000)
    assert cluster["avg_state_sign_consistency_mean"] is None
    assert cluster["weighted_mean_sign_consistency"] is None
    assert cluster["forward_separation_score_std"] == pytest.approx(0.0)
    assert list(summary["aggregate_by_model"]) == ["HMM", "Flow", "Cluster"]


def test_model_without_rows_reports_zero() -> None:
    only_hmm = [dict(r, models={"HMM": r["models"]["HMM"]}) for r in _records()
                if r["status"] == "SUCCESS"]  # fmt: skip
    agg = wf.aggregate_summary(only_hmm)["aggregate_by_model"]
    assert agg["Flow"] == {"splits_completed": 0, "total_rows_sum": 0}
    assert agg["Cluster"] == {"splits_completed": 0, "total_rows_sum": 0}


def test_wins_ties_go_by_model_order_and_nulls_are_ignored() -> None:
    summary = wf.aggregate_summary(_records())
    # separation: split 1 Flow = Cluster = 0.03 -> Flow (before Cluster); split 2 HMM = Flow
    # = 0.04 -> HMM (alphabetical order would have given Cluster and Flow).
    assert summary["wins_by_metric"]["highest_separation"] == {"HMM": 1, "Flow": 1, "Cluster": 0}
    # CI: split 1 HMM = Flow = 0.01 -> HMM; split 2 Flow 0.02 < HMM 0.03 -> Flow.
    assert summary["wins_by_metric"]["lowest_ci_width"] == {"HMM": 1, "Flow": 1, "Cluster": 0}
    # sign: split 1 HMM 0.70 > Flow 0.60 (Cluster NaN ignored); split 2 only HMM has a value:
    # no contest, no win.
    assert summary["wins_by_metric"]["best_sign_consistency"] == {"HMM": 1, "Flow": 0,
                                                                  "Cluster": 0}  # fmt: skip
    assert summary["wins_ties_by_metric"] == {"highest_separation": 2, "lowest_ci_width": 1,
                                              "best_sign_consistency": 0}  # fmt: skip
    assert "HMM, Flow, Cluster" in summary["wins_tie_rule"]


def test_failed_only_gives_empty_tables_and_zero_wins() -> None:
    failed = [r for r in _records() if r["status"] == "FAILED"]
    long = wf.model_summary_long(failed)
    assert long.is_empty() and long.columns[:3] == ["train_end", "split_id", "model"]
    assert wf.model_summary_wide(long).is_empty()
    assert wf.comparison_summary(failed).is_empty()
    assert wf.state_metrics_long(failed).is_empty()
    summary = wf.aggregate_summary(failed)
    assert summary["splits_successful"] == 0 and summary["splits_failed"] == 1
    assert all(set(v.values()) == {0} for v in summary["wins_by_metric"].values())


# --------------------------------------------------------------------------- §8.4 / §9.7


def _with_qa_and_policy() -> list[dict[str, Any]]:
    recs = {r["train_end"]: r for r in _records()}
    s1, s2 = recs["2014-12-31"]["models"], recs["2016-12-31"]["models"]
    s1["HMM"]["qa_flagged"] = pl.DataFrame({"state_id": [0, 1],
                                            "issues": ["LOW_N,WIDE_CI", "WIDE_CI"]})
    s1["Cluster"]["qa_flagged"] = pl.DataFrame({"state_id": [3], "issues": ["LOW_N"]})
    s1["Flow"]["qa_flagged"] = pl.DataFrame(schema={"state_id": pl.Int32, "issues": pl.String})
    s2["HMM"]["qa_flagged"] = pl.DataFrame({"state_id": [2], "issues": ["WIDE_CI"]})
    s1["HMM"]["policy_state_table"] = pl.DataFrame({
        "state_id": [0, 1, 2, 3], "class_label": ["ALLOW", "BLOCK", "WATCH", "BLOCK"],
        "qa_labels": [[], ["LOW_N"], ["WIDE_CI"], ["LOW_N", "WIDE_CI"]]})
    s1["HMM"]["policy_dir"] = "/pol/1"
    s1["Flow"]["policy_state_table"] = pl.DataFrame({
        "state_id": [0], "class_label": ["ALLOW"], "qa_labels": [[]]},
        schema_overrides={"qa_labels": pl.List(pl.String)})
    s2["HMM"]["policy_state_table"] = pl.DataFrame({
        "state_id": [0, 1], "class_label": ["ALLOW", "ALLOW"], "qa_labels": [["WIDE_CI"], []]})
    return list(recs.values())  # fmt: skip


def test_qa_issue_frequency_over_splits() -> None:
    qa = wf.qa_walkforward(_with_qa_and_policy(), {"min_n_rows": 200})
    assert qa.issue_frequency.rows() == [
        ("HMM", "WIDE_CI", 2, 3), ("Cluster", "LOW_N", 1, 1), ("HMM", "LOW_N", 1, 1)]
    assert qa.flagged.height == 4
    assert qa.flagged.columns[:3] == ["train_end", "model", "validation_run_dir"]
    assert qa.summary["splits_analyzed"] == 2 and qa.summary["total_flagged_states"] == 4
    assert qa.summary["by_model"] == {
        "HMM": {"splits_analyzed": 2, "splits_flagged": 2, "total_flagged_states": 3},
        "Flow": {"splits_analyzed": 1, "splits_flagged": 0, "total_flagged_states": 0},
        "Cluster": {"splits_analyzed": 1, "splits_flagged": 1, "total_flagged_states": 1},
    }
    assert qa.summary["thresholds"] == {"min_n_rows": 200}


def test_hardening_counts_state_stats_issues_and_summary() -> None:
    rec = {"method": "allow_watch_quantile_heuristic", "source_rows": 4}
    hard = wf.hardening_walkforward(_with_qa_and_policy(), {"score_min_allow": 70.0}, rec)
    assert hard.split_counts.rows() == [
        (D(2014, 12, 31), "HMM", "SUCCESS", 1, 1, 2, "/pol/1", None),
        (D(2014, 12, 31), "Flow", "SUCCESS", 1, 0, 0, None, None),
        (D(2014, 12, 31), "Cluster", "NO_POLICY", None, None, None, None, None),
        (D(2016, 12, 31), "HMM", "SUCCESS", 3 - 1, 0, 0, None, None),
        (D(2016, 12, 31), "Flow", "NO_POLICY", None, None, None, None, None),
        (D(2018, 12, 31), None, "FAILED", None, None, None, None, "boom | bad"),
    ]
    assert hard.state_stats.height == 4 + 1 + 2
    assert hard.issue_frequency.rows() == [("HMM", "WIDE_CI", 2, 3), ("HMM", "LOW_N", 1, 2)]
    s = hard.summary
    assert (s["splits_total"], s["splits_successful"], s["splits_failed"]) == (3, 2, 1)
    assert (s["allow_count_total"], s["watch_count_total"], s["block_count_total"]) == (4, 1, 2)
    assert s["by_model"]["HMM"] == {"allow_count_total": 3, "watch_count_total": 1,
                                    "block_count_total": 2, "splits_with_policy": 2}
    assert s["models_without_policy"] == [{"train_end": "2014-12-31", "model": "Cluster"},
                                          {"train_end": "2016-12-31", "model": "Flow"}]
    assert s["failed_splits"] == [{"train_end": "2018-12-31", "status": "FAILED",
                                   "error": "boom | bad"}]
    assert s["threshold_recommendation"] == rec and s["thresholds_used"]["score_min_allow"] == 70


def test_issue_frequency_reads_comma_strings_like_lists() -> None:
    frame = pl.DataFrame({"model": ["HMM"] * 3, "train_end": [D(2014, 1, 1)] * 2 + [D(2016, 1, 1)],
                          "qa_labels": ["LOW_N, WIDE_CI", "", "WIDE_CI"]})  # fmt: skip
    as_list = frame.with_columns(pl.col("qa_labels").str.split(",").list.eval(
        pl.element().str.strip_chars()))  # fmt: skip
    expected = [("HMM", "WIDE_CI", 2, 2), ("HMM", "LOW_N", 1, 1)]
    assert wf.issue_frequency(frame, "qa_labels").rows() == expected
    assert wf.issue_frequency(as_list, "qa_labels").rows() == expected


# --------------------------------------------------------------------------- §7.5 report


def test_report_states_windows_common_rows_and_tie_rule() -> None:
    records = _records()
    long = wf.model_summary_long(records)
    summary = wf.aggregate_summary(records, long)
    text = wf.full_report(records, summary, long, {"dataset": "ml.parquet",
                                                   "non_overlapping_test": True}, "wf-abc")
    assert text.startswith("# Walk-forward validation report: wf-abc")
    assert "- dataset: ml.parquet" in text
    assert "Test windows do not overlap" in text
    assert "| 2016-12-31 | wf2016-12-31 | SUCCESS | 2017-01-31 | end of data | 500 |" in text
    assert "same rows of each split" in text
    assert "| 2014-12-31 | 1000 | 1000 | 990 | 1000 |" in text
    assert "| 2016-12-31 | 500 | 500 | 500 | — |" in text
    assert "| 2018-12-31 | FAILED | boom / bad |" in text
    assert f"Tie rule: {wf.TIE_RULE}." in text
    assert "| highest_separation | 1 | 1 | 0 | 2 |" in text
    assert "| 2018-12-31 | wf2018-12-31 | FAILED | — | — | — |" in text
    assert "| weighted_mean_avg_ci_width | 0.01667 | 0.01336 | 0.02 |" in text
    expanding = [dict(r, test_end=None) for r in records]
    assert "NOT independent" in wf.full_report(expanding, summary, long, {})
