"""backtest_sanity (backtest_ops.md §1.9) on tiny run folders written here: a clean folder
passes, and every error fires on its own crafted violation."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mf_pipeline.lib.backtest.sanity import (
    EXECUTION_ARTIFACTS,
    OVERLAY_ARTIFACTS,
    backtest_sanity,
)

D = dt.date

OVERLAY_BLOCK = {
    "overlay_enabled": True, "overlay_mode": "allow_only", "overlay_match_rate": 0.9,
    "overlay_unknown_rate": 0.1, "overlay_coverage_mode": "strict_fail",
    "overlay_coverage_bypass": False, "overlay_coverage_status": "OK",
    "overlay_vetoed_signal_share": 0.2,
}  # fmt: skip
EXECUTION_BLOCK = {
    "execution_profile": "lite", "execution_filters_enabled": True,
    "filters_enabled_or_profile_non_none": True, "exec_eligibility_rate": 0.7,
    "candidate_signals_before_filters": 8, "candidate_signals_after_filters": 6,
    "exec_suppressed_signal_count": 2, "exec_suppressed_signal_share": 0.25,
    "exec_suppressed_by_price_count": 0, "exec_suppressed_by_price_share": 0.0,
    "exec_suppressed_by_liquidity_count": 1, "exec_suppressed_by_liquidity_share": 0.5,
    "exec_suppressed_by_vol_count": 0, "exec_suppressed_by_vol_share": 0.0,
    "exec_suppressed_by_warmup_count": 0, "exec_suppressed_by_warmup_share": 0.0,
}  # fmt: skip
BY_REASON = {
    "reason": ["liquidity_floor", "multiple_reasons", "price_floor", "vol_cap", "warmup"],
    "suppressed_signal_count": [1, 1, 0, 0, 0],
    "suppressed_signal_share": [0.5, 0.5, 0.0, 0.0, 0.0],
    "row_share_total": [0.1, 0.05, 0.0, 0.0, 0.0],
}


def _trades() -> dict[str, list[Any]]:
    return {
        "position_id": ["AAA-1", "AAA-2", "BBB-1"],
        "ticker": ["AAA", "AAA", "BBB"],
        "entry_date": [D(2024, 1, 2), D(2024, 2, 1), D(2024, 1, 3)],
        "exit_date": [D(2024, 1, 5), D(2024, 2, 6), D(2024, 1, 8)],
        "entry_price": [10.0, 10.0, 20.0],
        "exit_price": [11.0, 9.0, 19.0],
        "hold_bars_realized": [3, 3, 3],
        "entry_state_class": ["ALLOW", "ALLOW", "WATCH"],
        "net_return": [0.1, -0.1, 0.05],
        "slippage": [0.0, 0.0, 0.0],
        "is_valid_trade": [True, True, True],
    }


def _summary() -> dict[str, Any]:
    return {
        "run_id": "bt-1", "input_type": "cluster",
        "headline": {"trade_count": 3, "profit_factor": 1.5, "profit_factor_inf": False},
        "overlay": {"overlay_enabled": False},
        "execution": {"execution_profile": "none", "execution_filters_enabled": False,
                      "filters_enabled_or_profile_non_none": False},
    }  # fmt: skip


def _write(run_dir: Path, summary: dict[str, Any], trades: dict[str, list[Any]],
           by_reason: dict[str, list[Any]] | None = None) -> Path:  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "backtest_summary.json").write_text(json.dumps(summary))
    pl.DataFrame(trades).write_parquet(run_dir / "trades.parquet")
    pl.DataFrame({"entry_state_id": [1, 2], "trade_count": [2, 1],
                  "net_pnl": [0.0, 0.05]}).write_csv(run_dir / "summary_by_state.csv")
    pl.DataFrame({"ticker": ["AAA", "BBB"], "trade_count": [2, 1],
                  "net_pnl": [0.0, 0.05]}).write_csv(run_dir / "summary_by_symbol.csv")
    if summary["overlay"].get("overlay_enabled"):
        for name in OVERLAY_ARTIFACTS:
            (run_dir / name).write_text("{}" if name.endswith(".json") else "class,rows\n")
        verdict = {"coverage_mode": summary["overlay"]["overlay_coverage_mode"],
                   "status": summary["overlay"]["overlay_coverage_status"]}  # fmt: skip
        (run_dir / "overlay_coverage_verdict.json").write_text(json.dumps(verdict))
    if summary["execution"].get("filters_enabled_or_profile_non_none"):
        for name in EXECUTION_ARTIFACTS:
            (run_dir / name).write_text("{}" if name.endswith(".json") else "year\n")
        pl.DataFrame(by_reason or BY_REASON).write_csv(run_dir / "execution_filter_by_reason.csv")
    return run_dir


def _full_summary() -> dict[str, Any]:
    summary = _summary()
    summary["overlay"] = dict(OVERLAY_BLOCK)
    summary["execution"] = dict(EXECUTION_BLOCK)
    return summary


def test_clean_folder_passes(tmp_path: Path) -> None:
    for name, summary in (("plain", _summary()), ("full", _full_summary())):
        report = backtest_sanity(_write(tmp_path / name, summary, _trades()))
        assert report["status"] == "PASS", report["errors"]
        assert report["errors"] == [] and report["warnings"] == []
        assert report["trade_count"] == 3


def _set(column: str, index: int, value: Any) -> Callable[[dict], None]:
    def change(trades: dict) -> None:
        trades[column][index] = value
    return change


@pytest.mark.parametrize(("change", "error"), [
    (_set("hold_bars_realized", 1, -1), "negative_hold_bars"),
    (_set("entry_date", 2, D(2024, 1, 9)), "entry_date_after_exit_date"),
    (_set("position_id", 1, "AAA-1"), "duplicate_position_id"),
    (_set("entry_price", 0, 0.0), "non_finite_or_nonpositive_prices_in_valid_trades"),
    (_set("exit_price", 2, float("nan")), "non_finite_or_nonpositive_prices_in_valid_trades"),
    (_set("exit_price", 2, float("inf")), "non_finite_or_nonpositive_prices_in_valid_trades"),
    (_set("exit_price", 2, None), "non_finite_or_nonpositive_prices_in_valid_trades"),
])  # fmt: skip
def test_trade_errors(tmp_path: Path, change: Callable[[dict], None], error: str) -> None:
    trades = _trades()
    change(trades)
    report = backtest_sanity(_write(tmp_path, _summary(), trades))
    assert report["status"] == "FAIL"
    assert report["errors"] == [error]


def test_bad_price_in_an_invalid_trade_is_not_an_error(tmp_path: Path) -> None:
    trades = _trades()
    trades["exit_price"][2], trades["is_valid_trade"][2] = 0.0, False
    assert backtest_sanity(_write(tmp_path, _summary(), trades))["status"] == "PASS"


def test_trade_count_mismatch(tmp_path: Path) -> None:
    summary = _summary()
    summary["headline"]["trade_count"] = 4
    report = backtest_sanity(_write(tmp_path, summary, _trades()))
    assert report["errors"] == ["trade_count_mismatch"]


@pytest.mark.parametrize("name", ["backtest_summary.json", "trades.parquet",
                                  "summary_by_state.csv", "summary_by_symbol.csv"])
def test_missing_required_artifact(tmp_path: Path, name: str) -> None:
    run_dir = _write(tmp_path, _summary(), _trades())
    (run_dir / name).unlink()
    report = backtest_sanity(run_dir)
    assert report["status"] == "FAIL"
    assert report["errors"] == [f"missing_artifact:{name}"]


@pytest.mark.parametrize("name", OVERLAY_ARTIFACTS)
def test_missing_overlay_artifact(tmp_path: Path, name: str) -> None:
    run_dir = _write(tmp_path, _full_summary(), _trades())
    (run_dir / name).unlink()
    assert backtest_sanity(run_dir)["errors"] == [f"missing_overlay_artifact:{name}"]


@pytest.mark.parametrize("name", EXECUTION_ARTIFACTS)
def test_missing_execution_artifact(tmp_path: Path, name: str) -> None:
    run_dir = _write(tmp_path, _full_summary(), _trades())
    (run_dir / name).unlink()
    assert backtest_sanity(run_dir)["errors"] == [f"missing_execution_artifact:{name}"]


@pytest.mark.parametrize(("block", "changes", "errors"), [
    ("overlay", {"overlay_match_rate": 1.5}, ["overlay_match_rate_missing_or_out_of_range"]),
    ("overlay", {"overlay_match_rate": None}, ["overlay_match_rate_missing_or_out_of_range"]),
    ("overlay", {"overlay_unknown_rate": -0.1}, ["overlay_unknown_rate_missing_or_out_of_range"]),
    ("overlay", {"overlay_coverage_status": "FAIL_LOW_MATCH"},
     ["overlay_strict_fail_verdict_present"]),
    ("overlay", {"overlay_coverage_status": "FAIL_LOW_MATCH", "overlay_coverage_bypass": True},
     []),
    ("overlay", {"overlay_coverage_status": "FAIL_LOW_MATCH",
                 "overlay_coverage_mode": "warn_only"}, []),
    ("overlay", {"overlay_vetoed_signal_share": 1.2},
     ["overlay_vetoed_signal_share_out_of_range"]),
    ("overlay", {"overlay_vetoed_signal_share": None}, []),
    ("execution", {"exec_eligibility_rate": 1.1},
     ["exec_eligibility_rate_missing_or_out_of_range"]),
    ("execution", {"exec_eligibility_rate": None, "rows_total": 5},
     ["exec_eligibility_rate_missing_or_out_of_range"]),
    ("execution", {"exec_eligibility_rate": None, "rows_total": 0}, []),
    ("execution", {"exec_suppressed_signal_share": None},
     ["exec_suppressed_signal_share_missing_or_out_of_range"]),
    ("execution", {"exec_suppressed_by_price_share": 2.0},
     ["exec_suppressed_by_price_share_missing_or_out_of_range"]),
    ("execution", {"exec_suppressed_by_vol_count": -1}, ["exec_suppressed_by_vol_count_invalid"]),
    ("execution", {"exec_suppressed_by_warmup_count": 1.5},
     ["exec_suppressed_by_warmup_count_invalid"]),
    ("execution", {"candidate_signals_after_filters": 9, "exec_suppressed_signal_count": 0},
     ["exec_candidates_after_exceed_before", "exec_suppressed_count_mismatch",
      "exec_by_reason_count_sum_exceeds_suppressed"]),
    ("execution", {"exec_suppressed_signal_count": 3},
     ["exec_suppressed_count_mismatch"]),
    ("execution", {"candidate_signals_before_filters": None},
     ["exec_signal_counts_missing_or_invalid"]),
])  # fmt: skip
def test_overlay_and_execution_errors(tmp_path: Path, block: str, changes: dict,
                                      errors: list[str]) -> None:  # fmt: skip
    summary = _full_summary()
    summary[block].update(changes)
    report = backtest_sanity(_write(tmp_path, summary, _trades()))
    assert report["errors"] == errors
    assert report["status"] == ("FAIL" if errors else "PASS")


@pytest.mark.parametrize(("column", "values", "error"), [
    ("suppressed_signal_count", [2, 1, 0, 0, 0], "exec_by_reason_count_sum_exceeds_suppressed"),
    ("suppressed_signal_share", [1.5, 0.5, 0.0, 0.0, 0.0],
     "exec_by_reason_suppressed_signal_share_out_of_range"),
    ("row_share_total", [0.1, float("nan"), 0.0, 0.0, 0.0],
     "exec_by_reason_row_share_total_out_of_range"),
])  # fmt: skip
def test_by_reason_table_errors(tmp_path: Path, column: str, values: list, error: str) -> None:
    by_reason = copy.deepcopy(BY_REASON)
    by_reason[column] = values
    report = backtest_sanity(_write(tmp_path, _full_summary(), _trades(), by_reason))
    assert report["errors"] == [error]


def test_gates_off_skip_their_checks(tmp_path: Path) -> None:
    # blocks with bad values but not enabled: nothing checked, no artifacts needed
    summary = _summary()
    summary["overlay"] = {**OVERLAY_BLOCK, "overlay_enabled": False, "overlay_match_rate": 7.0}
    summary["execution"] = {**EXECUTION_BLOCK, "filters_enabled_or_profile_non_none": False,
                            "exec_eligibility_rate": 7.0}  # fmt: skip
    assert backtest_sanity(_write(tmp_path, summary, _trades()))["status"] == "PASS"


def test_nan_cells_warn_and_facts_reported(tmp_path: Path) -> None:
    trades = _trades()
    trades["net_return"][1] = float("nan")
    summary = _summary()
    summary["headline"].update(profit_factor=None, profit_factor_inf=True)
    run_dir = _write(tmp_path, summary, trades)
    (run_dir / "policy_snapshot.json").write_text(json.dumps(
        {"summary": {"allow_count": 2, "watch_count": 1, "block_count": 5}}))
    report = backtest_sanity(run_dir)
    assert report["status"] == "PASS"
    assert report["warnings"] == ["nan_values:trades.net_return=1"]
    assert report["nan_counts"] == {"trades": {"net_return": 1}, "by_state": {},
                                    "by_symbol": {}}  # fmt: skip
    assert report["profit_factor_inf"] is True and report["profit_factor"] == float("inf")
    assert report["policy_counts"] == {
        "policy": {"allow": 2, "watch": 1, "block": 5},
        "trades_by_entry_state_class": {"ALLOW": 2, "WATCH": 1},
    }
    assert [r["ticker"] for r in report["top_symbols"]] == ["BBB", "AAA"]
    assert [r["entry_state_id"] for r in report["top_states"]] == [1, 2]


def test_top_15(tmp_path: Path) -> None:
    run_dir = _write(tmp_path, _summary(), _trades())
    pl.DataFrame({"entry_state_id": list(range(20)), "trade_count": list(range(20)),
                  "net_pnl": [0.0] * 20}).write_csv(run_dir / "summary_by_state.csv")
    top = backtest_sanity(run_dir)["top_states"]
    assert [r["trade_count"] for r in top] == list(range(19, 4, -1))
