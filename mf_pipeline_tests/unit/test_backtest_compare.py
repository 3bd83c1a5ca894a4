"""compare_rows / best_runs / compare_report_md (backtest_ops.md §1.8, fixes 10, 14, 15) on run
folders holding only a backtest_summary.json written here."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mf_pipeline.lib.backtest.compare import (
    COMPARE_SCHEMA,
    best_runs,
    compare_report_md,
    compare_rows,
)


def _run(root: Path, run_id: str, headline: dict[str, Any], equity: dict | None = None,
         overlay: dict | None = None, execution: dict | None = None) -> Path:  # fmt: skip
    run_dir = root / f"{run_id}_flow_t"
    run_dir.mkdir(parents=True)
    summary = {"run_id": run_id, "input_type": "flow", "headline": headline,
               "equity_metrics": equity, "overlay": overlay or {"overlay_enabled": False},
               "execution": execution or {"execution_profile": "none"}}  # fmt: skip
    # JSON as the writers leave it: +inf stored as null next to its flag
    (run_dir / "backtest_summary.json").write_text(json.dumps(summary))
    return run_dir


def _headline(expectancy: float | None, pf: float | None, pf_inf: bool = False,
              win_rate: float | None = 0.5, trades: int = 10) -> dict[str, Any]:  # fmt: skip
    return {"trade_count": trades, "win_rate": win_rate, "avg_return": expectancy,
            "median_return": 0.001, "profit_factor": pf, "profit_factor_inf": pf_inf,
            "expectancy": expectancy}  # fmt: skip


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    return [
        _run(tmp_path, "bt-a", _headline(0.004, 1.4),
             equity={"max_drawdown": -0.20, "cumulative_return": 0.15},
             overlay={"overlay_enabled": True, "overlay_mode": "block_veto",
                      "overlay_match_rate": 0.93, "overlay_vetoed_signal_share": 0.25,
                      "overlay_direction_conflict_share": 0.1},
             execution={"execution_profile": "lite", "exec_eligibility_rate": 0.6,
                        "exec_suppressed_signal_share": 0.3,
                        "exec_trade_avg_dollar_vol_20": 2.5e6}),
        _run(tmp_path, "bt-b", _headline(None, None, win_rate=None, trades=0),
             equity={"max_drawdown": None, "cumulative_return": 0.0}),
        _run(tmp_path, "bt-c", _headline(0.002, None, pf_inf=True, win_rate=1.0),
             equity={"max_drawdown": -0.05, "cumulative_return": 0.08}),
    ]  # fmt: skip


def test_rows_carry_the_summary_values(runs: list[Path]) -> None:
    table = compare_rows(runs)
    assert table.columns == list(COMPARE_SCHEMA)
    assert table["run_id"].to_list() == ["bt-a", "bt-b", "bt-c"]
    assert table["run_dir"].to_list() == [str(r) for r in runs]
    a = table.row(0, named=True)
    assert a["trade_count"] == 10 and a["expectancy"] == 0.004 and a["profit_factor"] == 1.4
    assert a["max_drawdown"] == -0.20 and a["cumulative_return"] == 0.15
    assert a["overlay_enabled"] is True and a["overlay_mode"] == "block_veto"
    assert a["overlay_match_rate"] == 0.93 and a["overlay_vetoed_signal_share"] == 0.25
    assert a["execution_profile"] == "lite" and a["exec_trade_avg_dollar_vol_20"] == 2.5e6
    assert table["profit_factor"].to_list()[1:] == [None, math.inf]  # flag -> +inf
    assert table["overlay_enabled"].to_list() == [True, False, False]


def test_best_runs_nulls_last_inf_first_smallest_drawdown(runs: list[Path]) -> None:
    best = best_runs(compare_rows(runs))
    assert best["expectancy"] == {"run_id": "bt-a", "value": 0.004}
    assert best["profit_factor"] == {"run_id": "bt-c", "value": math.inf}
    assert best["win_rate"] == {"run_id": "bt-c", "value": 1.0}
    assert best["max_drawdown"] == {"run_id": "bt-c", "value": -0.05}


def test_best_runs_ignore_nan_break_ties_by_run_id_and_all_null_is_none() -> None:
    table = pl.DataFrame(
        {"run_id": ["bt-z", "bt-y", "bt-x"], "expectancy": [0.01, float("nan"), 0.01],
         "profit_factor": [None, None, None], "win_rate": [0.5, 0.5, 0.4],
         "max_drawdown": [-0.1, 0.0, -0.1]},
        schema_overrides={"profit_factor": pl.Float64},
    )  # fmt: skip
    best = best_runs(table)
    assert best["expectancy"] == {"run_id": "bt-x", "value": 0.01}
    assert best["profit_factor"] is None
    assert best["win_rate"]["run_id"] == "bt-y"
    assert best["max_drawdown"] == {"run_id": "bt-y", "value": 0.0}


def test_report_lists_best_runs_and_values(runs: list[Path]) -> None:
    text = compare_report_md(compare_rows(runs), {"compare_id": "backtest-compare-1",
                                                  "generated_ts": "2026-01-01T00:00:00"})
    assert text.startswith("# Backtest compare: backtest-compare-1")
    assert "- runs: 3" in text
    assert "| expectancy | highest (= avg_return) | bt-a | 0.004 |" in text
    assert "| profit_factor | highest; +inf (no losing trade) first | bt-c | inf |" in text
    assert "| max_drawdown | smallest loss (closest to 0) | bt-c | -0.05 |" in text
    assert "| bt-b | flow | 0 | — | — | 0.001 | — | — | — | 0 |" in text  # zero-trade run


def test_missing_summary_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="backtest_summary.json"):
        compare_rows([tmp_path])
