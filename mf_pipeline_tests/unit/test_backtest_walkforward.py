"""Walk-forward backtest aggregation (backtest_ops.md §4, fix 29): rows, per-model means
(plain and trade-weighted) computed by hand, overlay means, split counts, report."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from mf_pipeline.lib.backtest.walkforward import (
    FAILED,
    FAILED_UPSTREAM,
    SPLIT_SCHEMA,
    SUCCESS,
    aggregate_summary,
    by_split_frame,
    model_summary,
    overlay_source_summary,
    overlay_split_frame,
    overlay_split_row,
    split_row,
    wf_report_md,
)


def _summary(trades: int, win: float | None, avg: float | None, pf: float | None,
             pf_inf: bool = False, elig: float | None = 0.8,
             match: float | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "headline": {"trade_count": trades, "win_rate": win, "avg_return": avg,
                     "profit_factor": pf, "profit_factor_inf": pf_inf, "expectancy": avg},
        "execution": {"execution_profile": "lite", "exec_eligibility_rate": elig,
                      "exec_suppressed_signal_share": 0.1,
                      "exec_trade_avg_dollar_vol_20": 1e6},
        "overlay": {"overlay_enabled": match is not None, "overlay_mode": "allow_only",
                    "overlay_coverage_mode": "warn_only", "overlay_match_rate": match,
                    "overlay_unknown_rate": None if match is None else 1 - match,
                    "overlay_coverage_status": "OK", "overlay_vetoed_signal_share": 0.2,
                    "overlay_direction_conflict_share": 0.0},
    }  # fmt: skip


S1, S2, S3 = "2018-12-31", "2019-12-31", "2020-12-31"


def _rows() -> list[dict[str, Any]]:
    ok = SUCCESS
    return [
        split_row(dt.date(2018, 12, 31), "HMM", "/w/s1/hmm", _summary(10, 0.6, 0.01, 1.5), ok,
                  None),
        split_row(S1, "FLOW", "/w/s1/flow", _summary(0, None, None, None, elig=0.5), ok, None),
        split_row(S1, "CLUSTER", "/w/s1/cluster", None, FAILED, "no policy"),
        split_row(S2, "HMM", "/w/s2/hmm", _summary(30, 0.4, -0.002, None, pf_inf=True), ok,
                  None),
        split_row(S2, "FLOW", "/w/s2/flow", _summary(4, 0.75, 0.02, 3.0, elig=0.7), ok, None),
        split_row(S2, "CLUSTER", "/w/s2/cluster", None, FAILED, "boom"),
        split_row(S3, "HMM", "/w/s3/hmm", None, FAILED, "e1"),
        split_row(S3, "FLOW", "/w/s3/flow", None, FAILED, "e2"),
        split_row(S3, "CLUSTER", "/w/s3/cluster", None, FAILED, "e3"),
    ]  # fmt: skip


def test_split_row_values() -> None:
    rows = _rows()
    assert list(rows[0]) == list(SPLIT_SCHEMA)
    assert rows[0]["train_end"] == S1 and rows[0]["run_dir"] == "/w/s1/hmm"
    assert rows[0]["trade_count"] == 10 and rows[0]["profit_factor"] == 1.5
    assert rows[0]["exec_eligibility_rate"] == 0.8 and rows[0]["execution_profile"] == "lite"
    assert rows[3]["profit_factor"] == math.inf  # flag, value stored as null
    failed = rows[2]
    assert failed["status"] == FAILED and failed["error"] == "no policy"
    assert all(failed[k] is None for k in ("trade_count", "win_rate", "profit_factor",
                                           "execution_profile"))  # fmt: skip
    with pytest.raises(ValueError, match="status"):
        split_row(S1, "HMM", None, None, "DONE", None)
    with pytest.raises(ValueError, match="summary"):
        split_row(S1, "HMM", None, None, SUCCESS, None)


def test_model_summary_hand_computed() -> None:
    out = model_summary(by_split_frame(_rows()))
    assert out["model"].to_list() == ["HMM", "FLOW", "CLUSTER"]
    hmm, flow, cluster = out.rows(named=True)
    assert (hmm["splits"], hmm["splits_failed"], hmm["trade_count_sum"]) == (2, 1, 40)
    assert hmm["win_rate_mean"] == pytest.approx(0.5)
    assert hmm["avg_return_mean"] == pytest.approx((0.01 - 0.002) / 2)
    # (10 * 0.01 + 30 * -0.002) / 40
    assert hmm["avg_return_trade_weighted"] == pytest.approx(0.001)
    assert hmm["profit_factor_mean"] == pytest.approx(1.5)  # the inf split is counted apart
    assert hmm["profit_factor_inf_splits"] == 1
    assert hmm["exec_eligibility_rate_mean"] == pytest.approx(0.8)
    # FLOW: the zero-trade split counts as a split but has no return
    assert (flow["splits"], flow["splits_failed"], flow["trade_count_sum"]) == (2, 1, 4)
    assert flow["avg_return_mean"] == pytest.approx(0.02)
    assert flow["avg_return_trade_weighted"] == pytest.approx(0.02)
    assert flow["win_rate_mean"] == pytest.approx(0.75)
    assert flow["exec_eligibility_rate_mean"] == pytest.approx(0.6)  # (0.5 + 0.7) / 2
    assert flow["profit_factor_inf_splits"] == 0
    assert (cluster["splits"], cluster["splits_failed"], cluster["trade_count_sum"]) == (0, 3, 0)
    assert cluster["avg_return_mean"] is None and cluster["avg_return_trade_weighted"] is None


def test_overlay_rows_and_source_summary() -> None:
    rows = [overlay_split_row(S1, "HMM", _summary(1, 1.0, 0.1, None, match=0.9)),
            overlay_split_row(S2, "HMM", _summary(1, 1.0, 0.1, None, match=0.7)),
            overlay_split_row(S1, "FLOW", _summary(1, 1.0, 0.1, None, match=0.8))]
    frame = overlay_split_frame(rows)
    assert frame.row(0, named=True) == {
        "train_end": S1, "model": "HMM", "overlay_enabled": True, "overlay_mode": "allow_only",
        "overlay_coverage_mode": "warn_only", "overlay_match_rate": 0.9,
        "overlay_unknown_rate": pytest.approx(0.1), "overlay_coverage_status": "OK",
        "overlay_vetoed_signal_share": 0.2, "overlay_direction_conflict_share": 0.0,
    }  # fmt: skip
    out = overlay_source_summary(frame)
    assert out["model"].to_list() == ["HMM", "FLOW"]
    assert out["rows"].to_list() == [2, 1]
    assert out["overlay_match_rate_mean"].to_list() == pytest.approx([0.8, 0.8])
    assert out["overlay_unknown_rate_mean"].to_list() == pytest.approx([0.2, 0.2])
    assert overlay_split_row(S3, "CLUSTER", None)["overlay_match_rate"] is None


def _manifest(upstream_failed: bool = True) -> dict[str, Any]:
    splits = [{"train_end": e, "status": "DONE"} for e in (S1, S2)]
    splits.append({"train_end": S3, "status": "FAILED"})
    if upstream_failed:
        splits.append({"train_end": "2021-12-31", "status": FAILED_UPSTREAM})
    config = {"overlay_coverage_bypass": None, "exec_profile": "lite", "exec_min_price": 3.0,
              "exec_max_vol_pct": None}  # fmt: skip
    return {"wf_bt_id": "wfbt-1", "source_wf_run_dir": "/w", "splits": splits,
            "signature": {"wf_run_dir": "/w", "config": config}}  # fmt: skip


def test_aggregate_counts_a_split_only_when_a_model_succeeded() -> None:
    agg = aggregate_summary(_manifest(), by_split_frame(_rows()), generated_ts="2026-01-01")
    # 4 manifest splits: one failed upstream (no rows), S3 had every model fail
    assert (agg["splits_total"], agg["splits_successful"], agg["splits_failed"]) == (4, 2, 2)
    assert agg["splits_failed_upstream"] == 1
    assert agg["splits_all_models_failed"] == [S3]
    assert agg["model_failure_counts"] == {"HMM": 1, "FLOW": 1, "CLUSTER": 3}
    assert [(f["train_end"], f["model"], f["error"]) for f in agg["model_failures"]] == [
        (S1, "CLUSTER", "no policy"), (S2, "CLUSTER", "boom"),
        (S3, "HMM", "e1"), (S3, "FLOW", "e2"), (S3, "CLUSTER", "e3"),
    ]  # fmt: skip
    assert (agg["wf_bt_id"], agg["wf_run_dir"], agg["generated_ts"]) == ("wfbt-1", "/w",
                                                                         "2026-01-01")
    assert agg["execution_profile"] == "lite"
    assert agg["exec_overrides"] == {"exec_min_price": 3.0}
    assert agg["overlay_coverage_bypass"] is False and agg["overlay_enabled"] is False
    assert agg["overlay_mode"] is None


def test_aggregate_overlay_settings_from_the_runs() -> None:
    overlay = overlay_split_frame([overlay_split_row(S1, "HMM", _summary(1, 1.0, 0.1, None,
                                                                         match=0.9))])
    agg = aggregate_summary(_manifest(), by_split_frame(_rows()), overlay)
    assert agg["overlay_enabled"] is True
    assert (agg["overlay_mode"], agg["overlay_coverage_mode"]) == ("allow_only", "warn_only")
    assert agg["generated_ts"]  # now, when not given


def test_report_sections() -> None:
    by_split = by_split_frame(_rows())
    overlay = overlay_split_frame([overlay_split_row(S1, "HMM", _summary(1, 1.0, 0.1, None,
                                                                         match=0.9))])
    agg = aggregate_summary(_manifest(upstream_failed=False), by_split, overlay, "t")
    text = wf_report_md(agg, by_split, model_summary(by_split), overlay_source_summary(overlay),
                        overlay)  # fmt: skip
    assert text.startswith("# Walk-forward backtest report: wfbt-1")
    assert "- splits_successful: 2" in text and "- splits_failed: 1" in text
    assert f"- {S3} CLUSTER: e3" in text
    assert "| HMM | 2 | 1 | 40 | 0.5 | 0.004 | 0.001 | 0.004 | 1.5 | 1 | 0.8 |" in text
    assert "## Overlay by model" in text and "| HMM | 1 | 0.9 |" in text
    assert "## Overlay by split" in text
    empty = by_split_frame([])
    text = wf_report_md(aggregate_summary({"splits": []}, empty), empty, model_summary(empty))
    assert "## Failed model runs\n\nnone" in text and "## Overlay" not in text


def test_nan_metric_is_ignored_like_null() -> None:
    rows = [split_row(S1, "HMM", None, _summary(5, 0.2, 0.01, 2.0), SUCCESS, None),
            split_row(S2, "HMM", None, _summary(5, float("nan"), 0.03, 4.0), SUCCESS, None)]
    out = model_summary(by_split_frame(rows)).row(0, named=True)
    assert out["win_rate_mean"] == pytest.approx(0.2)
    assert out["profit_factor_mean"] == pytest.approx(3.0)
    assert out["avg_return_trade_weighted"] == pytest.approx(0.02)
    assert out["splits"] == 2 and out["profit_factor_inf_splits"] == 0
