"""Markdown report of a sensitivity grid (``grid_report.md``, backtest_ops.md §5.5).

Rendered from the grid FOLDER alone (``grid_summary.json``, the aggregate files of
:data:`lib.grids.aggregates.FILES`, ``grid_failures.json``), so any grid can be re-rendered
without rerunning it. Beyond the old report: the overfitting block (Deflated Sharpe Ratio,
Probability of Backtest Overfitting and the fluke-risk verdict) per source, a warning when the
drawdown did not enter the v1 score (fault 12), and one when any source's directions or policy
were judged on the rows it traded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.backtest.report import fmt, frame_table, key_values, md_table, profit_factor_of
from mf_pipeline.lib.grids.aggregates import BEST_METRICS, FILES

TOP_ROWS = 5
MAX_TABLE_ROWS = 40
RUN_KEYS = ("grid_run_id", "scope", "tag", "comparability", "total_combos", "successful_combos",
            "failed_combos", "skipped_combos", "zero_trade_combos", "zero_trade_combo_share",
            "overlay_coverage_failures", "realism_profile_broken_for_universe",
            "non_finite_cells", "null_metric_cells", "execution_profile", "include_ret_cv",
            "include_tail_metrics", "report_top_n", "drawdown_ranked", "started_ts",
            "finished_ts", "duration_sec", "output_dir")
OVERFIT_COLUMNS = ("n_trials", "periods", "best_combo_id", "best_sharpe", "sr0", "dsr",
                   "max_sharpe_combo_id", "max_sharpe", "dsr_max_sharpe", "pbo", "pbo_n_splits",
                   "pbo_n_combinations", "pbo_degradation_slope", "pbo_prob_oos_loss",
                   "fluke_risk", "note")
SOURCE_COLUMNS = ("source_type", "SUCCESS", "FAILED", "robustness_v1_mean", "robustness_v2_mean",
                  "robustness_v2_median", "expectancy_mean", "profit_factor_mean",
                  "ret_cv_median", "downside_std_mean", "zero_trade_combo_share",
                  "trade_count_mean", "rows_input_median", "nan_warning_total_sum",
                  "overlay_match_rate_mean", "exec_eligibility_rate_mean", "hold_shape",
                  "best_hold_bars")
BEST_COLUMNS = ("combo_index", "combo_id", "hold_bars", "signal_mode", "exit_mode",
                "fee_bps_per_side", "slippage_bps_per_side", "policy_filter_mode",
                "state_subset_key", "trade_count", "expectancy", "profit_factor", "ret_cv",
                "downside_std", "max_drawdown", "robustness_score_v2")
PROFILE_COLUMNS = ("source_type", "hold_bars", "combo_count", "expectancy_mean",
                   "expectancy_median", "profit_factor_mean", "ret_cv_median",
                   "zero_trade_rate", "robustness_v2_mean", "trade_count_mean")
SENSITIVITY_COLUMNS = ("source_type", "dimension", "dimension_value", "combo_count",
                       "expectancy_mean", "profit_factor_mean", "ret_cv_median",
                       "zero_trade_rate", "top_quartile_hit_rate", "robustness_v2_mean",
                       "failure_rate")
FRAGILITY_COLUMNS = ("source_type", "hold_bars", "signal_mode", "exit_mode",
                     "policy_filter_mode", "state_subset_key", "cost_points", "min_cost_bps",
                     "max_cost_bps", "expectancy_slope_per_10bps",
                     "profit_factor_slope_per_10bps", "ret_cv_slope_per_10bps",
                     "trade_count_slope_per_10bps", "zero_trade_rate_delta_0_to_max_cost")
MEANING = (
    "- **DSR** (Deflated Sharpe Ratio) = probability the winner's Sharpe beats the best of "
    "N skill-less trials (`sr0` = the Sharpe the luckiest of `n_trials` no-skill combos would "
    "reach on `periods` exit days), corrected for sample length, skew and fat tails. 0.95 or "
    "more is the usual bar; near 0.5 means the winner looks like the luckiest draw.",
    "- **PBO** (Probability of Backtest Overfitting, CSCV) = share of the train/test splits "
    "of the period returns in which the combo best on the train half ranks in the bottom half "
    "on the test half. 0.5 or more: picking the in-sample winner is no better than chance.",
    "- **fluke_risk**: HIGH if pbo >= 0.5 or dsr < 0.5; LOW if dsr >= 0.95 and pbo < 0.2 (or "
    "pbo unknown); MODERATE otherwise; UNKNOWN without a DSR.",
)
NOTES = (
    "Robustness scores are rank heuristics for ordering configurations, not a significance "
    "test; the overfitting block above is the significance view.",
    "Best configurations: nulls rank last, a profit factor of inf (no losing trade) ranks "
    "first, ties go to the lower combo_index.",
    "`expectancy` equals `avg_return` (a zero return counts as a loss).",
    "Cost fragility slopes are least-squares changes of each metric per 10 bps of total "
    "per-side cost within a family (same parameters except costs); a cost level whose mean "
    "profit factor is inf is left out of the profit-factor fit.",
    "Dimension sensitivity lists only dimensions with more than one value in a source; the "
    "full table is in `grid_dimension_sensitivity.csv`.",
)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _read_table(folder: Path, name: str) -> pl.DataFrame | None:
    path = folder / FILES[name]
    if not path.exists():
        return None
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return pl.read_csv(path, infer_schema_length=None)


def _table_or_note(frame: pl.DataFrame | None, columns: Sequence[str],
                   limit: int = MAX_TABLE_ROWS) -> list[str]:
    if frame is None:
        return ["_not written_"]
    lines = frame_table(frame, columns, limit)
    if frame.height > limit:
        lines.append(f"\n_first {limit} of {frame.height} rows_")
    return lines


def _warnings(summary: Mapping[str, Any]) -> list[str]:
    out = []
    in_sample = [s.get("source_type") for s in summary.get("sources") or []
                 if s.get("in_sample")]
    if not in_sample and summary.get("in_sample"):
        in_sample = ["a source"]
    if in_sample:
        out.append(f"> **In-sample: YES** for {', '.join(map(str, in_sample))}: directions or "
                   "policy were estimated on rows that overlap the traded rows, so these "
                   "results overstate what a live run would see.")
    if summary.get("drawdown_ranked") is False:
        out.append("> **Drawdown not ranked**: no combo had a measured max_drawdown (e.g. "
                   "`event_returns_only`), so robustness v1 was rescaled over the other five "
                   "components and drawdown carries no weight in the ranking.")
    return [line for w in out for line in (w, "")]


def _overfitting(summary: Mapping[str, Any]) -> list[str]:
    block = summary.get("overfitting") or {}
    if not block:
        return ["_not computed_"]
    rows = [[source, *(stats.get(k) for k in OVERFIT_COLUMNS)]
            for source, stats in sorted(block.items())]
    return [*md_table(["source_type", *OVERFIT_COLUMNS], rows), "", *MEANING]


def _best(best: Mapping[str, Any] | None) -> list[str]:
    if best is None:
        return ["_not written_", ""]
    out: list[str] = []
    for source in sorted(best):
        for metric in BEST_METRICS:
            rows = (best[source] or {}).get(metric) or []
            if not rows:
                continue
            cols = [c for c in BEST_COLUMNS if any(c in r for r in rows)]
            body = [[profit_factor_of(r) if c == "profit_factor" else r.get(c) for c in cols]
                    for r in rows[:TOP_ROWS]]
            out += [f"### {source}: top {len(body)} by {metric}", "", *md_table(cols, body), ""]
    return out or ["_no successful combo_", ""]


def _shapes(shape: pl.DataFrame | None) -> list[str]:
    if shape is None:
        return []
    return [f"- {r['source_type']}: **{r['hold_shape']}** on {r['metric_col']}, best hold "
            f"{fmt(r['best_hold_bars'])}" for r in shape.iter_rows(named=True)]


def _varied(sensitivity: pl.DataFrame | None) -> pl.DataFrame | None:
    """Rows of the dimensions taking more than one value in their source (keeps file order)."""
    if sensitivity is None or sensitivity.is_empty():
        return sensitivity
    many = pl.len().over("source_type", "dimension") > 1
    return sensitivity.filter(many)


def _failures(failures: Sequence[Mapping[str, Any]] | None) -> list[str]:
    if not failures:
        return ["- no failed combo"]
    rows = [[f.get("source_type"), f.get("combo_index"), f.get("combo_id"), f.get("error_message")]
            for f in failures[:MAX_TABLE_ROWS]]
    return md_table(["source_type", "combo_index", "combo_id", "error_message"], rows)


def grid_report_md(folder: Path) -> str:
    """``grid_report.md`` of the grid in ``folder``: run facts, warnings, overfitting per
    source, source summary, top 5 per ranking metric, hold-bars profile and shape, dimension
    sensitivity, cost fragility, failures and notes. Missing files show as "not written"."""
    summary = _read_json(folder / "grid_summary.json") or {}

    def table(name: str, columns: Sequence[str]) -> list[str]:
        frame = _read_table(folder, name)
        return _table_or_note(_varied(frame) if name.startswith("grid_dimension") else frame,
                              columns)

    out = [f"# Sensitivity grid report: {summary.get('grid_run_id', folder.name)}", ""]
    out += _warnings(summary)
    out += ["## Run", "", *key_values(summary, RUN_KEYS)]
    dims = summary.get("dimensions")
    if isinstance(dims, Mapping) and dims:
        out += ["- dimensions:", *(f"  - {k}: {fmt(v)}" for k, v in dims.items())]
    out += ["", "## How likely is the winner a fluke?", "", *_overfitting(summary), ""]
    out += ["## Sources", "", *table("grid_source_summary", SOURCE_COLUMNS), ""]
    out += ["## Best configurations", "",
            *_best(_read_json(folder / FILES["grid_best_configs"]))]
    out += ["## Hold-bars profile", "", *table("grid_holdbars_profile", PROFILE_COLUMNS), "",
            *_shapes(_read_table(folder, "grid_holdbars_shape")), ""]
    out += ["## Dimension sensitivity", "",
            *table("grid_dimension_sensitivity_parquet", SENSITIVITY_COLUMNS), ""]
    out += ["## Cost fragility", "", *table("grid_cost_fragility", FRAGILITY_COLUMNS), ""]
    out += ["## Failures", "", *_failures(_read_json(folder / "grid_failures.json")), ""]
    out += ["## Notes", "", *(f"- {n}" for n in NOTES), ""]
    return "\n".join(out)
