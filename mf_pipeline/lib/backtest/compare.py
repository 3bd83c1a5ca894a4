"""Side-by-side table of finished backtest runs (backtest_ops.md §1.8) and its report.

Differences from the old tool (§13), on purpose:
- profit factor is +inf for a run with no losing trade (fix 10; read from the summary's
  ``profit_factor_inf`` flag, since JSON stores null) and ranks first;
- "best" ignores nulls (a zero-trade run is never best) and, for ``max_drawdown`` (≤ 0), is the
  smallest loss, i.e. the value closest to 0 (fixes 14, 15). Ties go to the smaller run_id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.backtest.report import fmt, frame_table, md_table, profit_factor_of

F64 = pl.Float64
COMPARE_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.Utf8, "run_dir": pl.Utf8, "input_type": pl.Utf8, "trade_count": pl.Int64,
    "win_rate": F64, "avg_return": F64, "median_return": F64, "profit_factor": F64,
    "expectancy": F64, "max_drawdown": F64, "cumulative_return": F64,
    "overlay_enabled": pl.Boolean, "overlay_mode": pl.Utf8, "overlay_match_rate": F64,
    "overlay_vetoed_signal_share": F64, "overlay_direction_conflict_share": F64,
    "execution_profile": pl.Utf8, "exec_eligibility_rate": F64,
    "exec_suppressed_signal_share": F64, "exec_trade_avg_dollar_vol_20": F64,
}  # fmt: skip
HEADLINE_COLUMNS = ("trade_count", "win_rate", "avg_return", "median_return", "expectancy")
EQUITY_COLUMNS = ("max_drawdown", "cumulative_return")
OVERLAY_COLUMNS = ("overlay_mode", "overlay_match_rate", "overlay_vetoed_signal_share",
                   "overlay_direction_conflict_share")  # fmt: skip
EXECUTION_COLUMNS = ("execution_profile", "exec_eligibility_rate", "exec_suppressed_signal_share",
                     "exec_trade_avg_dollar_vol_20")  # fmt: skip
# metric -> the rule shown in the report (see best_runs)
BEST_RULES: dict[str, str] = {
    "expectancy": "highest (= avg_return)",
    "profit_factor": "highest; +inf (no losing trade) first",
    "win_rate": "highest",
    "max_drawdown": "smallest loss (closest to 0)",
}


def compare_row(summary: Mapping[str, Any], run_dir: Path | str) -> dict[str, Any]:
    """One §1.8 row from a run's ``backtest_summary.json`` content. ``max_drawdown`` and
    ``cumulative_return`` come from ``equity_metrics`` (null in ``event_returns_only``)."""
    headline = summary.get("headline") or {}
    equity = summary.get("equity_metrics") or {}
    overlay = summary.get("overlay") or {}
    execution = summary.get("execution") or {}
    return {
        "run_id": summary.get("run_id"), "run_dir": str(run_dir),
        "input_type": summary.get("input_type"),
        **{k: headline.get(k) for k in HEADLINE_COLUMNS},
        "profit_factor": profit_factor_of(headline),
        **{k: equity.get(k) for k in EQUITY_COLUMNS},
        "overlay_enabled": bool(overlay.get("overlay_enabled")),
        **{k: overlay.get(k) for k in OVERLAY_COLUMNS},
        **{k: execution.get(k) for k in EXECUTION_COLUMNS},
    }  # fmt: skip


def compare_rows(run_dirs: Sequence[Path]) -> pl.DataFrame:
    """The compare table (§1.8), one row per run folder, in the order given."""
    rows = []
    for run_dir in map(Path, run_dirs):
        path = run_dir / "backtest_summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir} is not a finished backtest run: no {path.name}")
        rows.append(compare_row(json.loads(path.read_text()), run_dir))
    return pl.DataFrame(rows, schema=COMPARE_SCHEMA)


def best_runs(table: pl.DataFrame) -> dict[str, dict[str, Any] | None]:
    """Per metric of :data:`BEST_RULES`, the best run's ``run_id`` and value; nulls (and NaN)
    never win, ties go to the smaller run_id; None when every value is null."""
    best: dict[str, dict[str, Any] | None] = {}
    for metric in BEST_RULES:
        values = table.select("run_id", pl.col(metric).fill_nan(None)).drop_nulls(metric)
        if values.is_empty():
            best[metric] = None
            continue
        if metric == "max_drawdown":
            order = values.sort(pl.col(metric).abs(), "run_id")
        else:
            order = values.sort(metric, "run_id", descending=[True, False])
        run_id, value = order.row(0)
        best[metric] = {"run_id": run_id, "value": value}
    return best


def compare_report_md(table: pl.DataFrame, summary: Mapping[str, Any]) -> str:
    """``backtest_compare_report.md``: the table in three blocks and the best run per metric.
    ``summary`` is the compare summary (``compare_id``, ``generated_ts``)."""
    out = [f"# Backtest compare: {summary.get('compare_id', '—')}", "",
           f"- generated_ts: {fmt(summary.get('generated_ts'))}", f"- runs: {table.height}", ""]
    out += ["## Performance", ""]
    out += frame_table(table, ["run_id", "input_type", *HEADLINE_COLUMNS, "profit_factor",
                               *EQUITY_COLUMNS])  # fmt: skip
    out += ["", "## Overlay", ""]
    out += frame_table(table, ["run_id", "overlay_enabled", *OVERLAY_COLUMNS])
    out += ["", "## Execution", ""]
    out += frame_table(table, ["run_id", *EXECUTION_COLUMNS])
    out += ["", "## Best run per metric", "",
            "Null values (e.g. a run without trades, or max_drawdown without an equity curve) "
            "are never best; ties go to the smaller run_id.", ""]  # fmt: skip
    best = best_runs(table)
    out += md_table(["metric", "rule", "run_id", "value"],
                    [(m, BEST_RULES[m], *((b["run_id"], b["value"]) if b else (None, None)))
                     for m, b in best.items()])  # fmt: skip
    out += ["", "## Run folders", "", *(f"- {r}: `{d}`" for r, d in table.select(
        "run_id", "run_dir").rows()), ""]  # fmt: skip
    return "\n".join(out)
