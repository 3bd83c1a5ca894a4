"""Side-by-side table of sensitivity grids (backtest_ops.md §5.7): the best combo of each grid
by a primary metric, per-grid means, deltas against the strongest grid with the overlay and
realism verdicts, and the overlap of the grids' top-10 configurations.

Differences from the old tool (§13), on purpose:
- a grid's best row never has a null (or NaN) primary metric while another row has one (fault
  15): nulls sort last, ties go to the smaller ``combo_index`` then ``combo_id`` (fault 13);
- for ``max_drawdown`` (<= 0) the best is the smallest loss, |drawdown| ascending (fault 14);
  other "lower is better" metrics sort ascending;
- a +inf profit factor (no losing trade) is the best profit factor; ``profit_factor_mean`` is
  the mean of the finite profit factors (an infinite mean would say nothing);
- the baseline is the row with the highest ``best_robustness_score_v2``, nulls last;
- the folder id digests the sorted grid folders and the metrics, and the grids are read in that
  sorted order, so the same question always lands in the same folder with the same content;
- ours: ``best_sharpe_period`` (the best combo's per-period Sharpe) and ``best_dsr``,
  ``best_pbo``, ``best_fluke_risk`` from the grid summary's ``overfitting`` entry of the best
  combo's source, to say how likely the grid's winner is a fluke; ``best_primary_value`` and
  ``best_profit_factor_inf`` so the primary metric and a +inf profit factor survive the JSON.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.backtest.metrics import LOWER_IS_BETTER, sort_best_first
from mf_pipeline.lib.backtest.report import fmt, frame_table, md_table
from mf_pipeline.lib.reports import pages
from mf_pipeline.lib.steps.backtest.run import finite_json, swap_in
from mf_pipeline.lib.steps.research.artifacts import now
from mf_pipeline.lib.steps.validation.options import digest

ALLOWED_METRICS: tuple[str, ...] = (
    "expectancy", "profit_factor", "max_drawdown", "sharpe_proxy", "robustness_score",
    "robustness_score_v1", "robustness_score_v2", "ret_cv", "downside_std", "avg_return",
    "win_rate",
)  # fmt: skip
SIGNATURE: tuple[str, ...] = (
    "source_type", "hold_bars", "signal_mode", "exit_mode", "fee_bps_per_side",
    "slippage_bps_per_side", "allow_overlap", "equity_mode", "include_watch", "state_subset_key",
)  # fmt: skip
TOP_N = 10
COMPARE_PREFIX = "backtest-grid-compare-"
# best-row columns: table column -> metrics-table column
BEST_COLUMNS: dict[str, str] = {
    "best_expectancy": "expectancy", "best_profit_factor": "profit_factor",
    "best_profit_factor_inf": "profit_factor_inf", "best_ret_cv": "ret_cv",
    "best_downside_std": "downside_std", "best_max_drawdown": "max_drawdown",
    "best_robustness_score_v1": "robustness_score_v1",
    "best_robustness_score_v2": "robustness_score_v2", "best_zero_trade": "is_zero_trade_combo",
    "best_trade_count": "trade_count", "best_sharpe_period": "sharpe_period",
}  # fmt: skip
MEANS: dict[str, pl.Expr] = {
    "expectancy_mean": pl.col("expectancy").mean(),
    "profit_factor_mean": pl.col("profit_factor").filter(pl.col("profit_factor").is_finite())
    .mean(),
    "robustness_v2_mean": pl.col("robustness_score_v2").mean(),
    "ret_cv_median": pl.col("ret_cv").median(),
    "downside_std_mean": pl.col("downside_std").mean(),
    "overlay_enabled_share": pl.col("overlay_enabled").cast(pl.Float64).mean(),
    "overlay_match_rate_mean": pl.col("overlay_match_rate").mean(),
    "overlay_vetoed_signal_share_mean": pl.col("overlay_vetoed_signal_share").mean(),
    "overlay_direction_conflict_share_mean": pl.col("overlay_direction_conflict_share").mean(),
    "execution_filters_enabled_share": pl.col("execution_filters_enabled").cast(pl.Float64)
    .mean(),
    "exec_eligibility_rate_mean": pl.col("exec_eligibility_rate").mean(),
    "exec_suppressed_signal_share_mean": pl.col("exec_suppressed_signal_share").mean(),
    "exec_trade_avg_dollar_vol_20_mean": pl.col("exec_trade_avg_dollar_vol_20").mean(),
}  # fmt: skip
F64, STR, I64, BOOL = pl.Float64, pl.Utf8, pl.Int64, pl.Boolean
ROW_SCHEMA: dict[str, pl.DataType] = {
    "grid_run_dir": STR, "grid_run_id": STR, "scope": STR, "comparability": STR,
    "successful_combos": I64, "failed_combos": I64, "best_combo_id": STR,
    "best_source_type": STR, "best_expectancy": F64, "best_profit_factor": F64,
    "best_ret_cv": F64, "best_downside_std": F64, "best_max_drawdown": F64,
    "best_robustness_score_v1": F64, "best_robustness_score_v2": F64, "best_zero_trade": BOOL,
    "best_trade_count": I64, "expectancy_mean": F64, "profit_factor_mean": F64,
    "robustness_v2_mean": F64, "ret_cv_median": F64, "downside_std_mean": F64,
    "zero_trade_combo_share": F64, "overlay_enabled_share": F64, "overlay_mode_set": STR,
    "overlay_match_rate_mean": F64, "overlay_vetoed_signal_share_mean": F64,
    "overlay_direction_conflict_share_mean": F64, "execution_profile_set": STR,
    "execution_filters_enabled_share": F64, "exec_eligibility_rate_mean": F64,
    "exec_suppressed_signal_share_mean": F64, "exec_trade_avg_dollar_vol_20_mean": F64,
    "cost_fragility_expect_slope_mean": F64, "cost_fragility_pf_slope_mean": F64,
    "source_summary_rows": I64,
    "best_sharpe_period": F64, "best_dsr": F64, "best_pbo": F64, "best_fluke_risk": STR,
    "primary_metric": STR, "best_primary_value": F64, "best_profit_factor_inf": BOOL,
}  # fmt: skip
"""One grid's row (§5.7 columns, then ours)."""
DELTAS: dict[str, str] = {
    "delta_expectancy_vs_top": "expectancy_mean", "delta_pf_vs_top": "profit_factor_mean",
    "delta_ret_cv_vs_top": "ret_cv_median", "delta_robustness_v2_vs_top": "robustness_v2_mean",
    "delta_exec_eligibility_rate_vs_top": "exec_eligibility_rate_mean",
    "delta_exec_suppressed_signal_share_vs_top": "exec_suppressed_signal_share_mean",
}  # fmt: skip
VERDICT_RULES: tuple[str, ...] = (
    "overlay_verdict: HELPFUL if Δexpectancy > 0, ΔPF > 0, Δrobustness_v2 >= 0 and "
    "Δret_cv <= 0; else NEUTRAL if Δexpectancy >= 0 and ΔPF >= 0; else HARMFUL "
    "(the baseline is NEUTRAL).",
    "realism_verdict: NOT_TRADABLE if the best combo has no trade; else EDGE_RETAINED if "
    "Δexpectancy >= -0.001, ΔPF >= -0.05, Δrobustness_v2 >= -2 and Δsuppressed share <= 0.10; "
    "else EDGE_COMPROMISED_BUT_CLEANER if Δexpectancy < 0, Δret_cv < 0 and Δsuppressed share "
    "<= 0.35; else TOO_FRAGILE_UNDER_REALISM.",
    "Deltas are against the baseline's means (expectancy and PF means, ret_cv median, "
    "robustness_v2 mean, execution shares); a null delta fails its comparison.",
)


def check_metrics(metrics: Sequence[str]) -> None:
    """Refuse a metric the compare cannot rank by, naming the allowed ones."""
    bad = [m for m in metrics if m not in ALLOWED_METRICS]
    if bad:
        raise ValueError(f"unknown compare metric(s) {bad}; allowed: {', '.join(ALLOWED_METRICS)}")


def ranked(table: pl.DataFrame, metric: str) -> pl.DataFrame:
    """``table`` from best to worst by ``metric`` (:func:`sort_best_first`: +inf
    profit factor first, drawdown closest to 0 first, null and NaN last), ties by
    ``combo_index`` then ``combo_id``."""
    return sort_best_first(table, metric, ("combo_index", "combo_id"))


def _with_columns(table: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """``table`` with every missing column of ``columns`` added as nulls (a grid without an
    overlay or execution column still gets a row)."""
    return table.with_columns(pl.lit(None, dtype=pl.Float64).alias(c)
                              for c in columns if c not in table.columns)  # fmt: skip


def _read_csv(path: Path) -> pl.DataFrame | None:
    return pl.read_csv(path, infer_schema_length=None) if path.is_file() else None


def _set_of(table: pl.DataFrame, column: str) -> str | None:
    values = sorted({str(v) for v in table[column].drop_nulls().to_list()})
    return ",".join(values) or None


def grid_row(folder: Path, primary: str) -> dict[str, Any]:
    """The §5.7 row of one grid folder (plus ours) with its best combo by ``primary``."""
    folder = Path(folder)
    summary_path, metrics_path = folder / "grid_summary.json", folder / "grid_metrics_table.parquet"
    if not (summary_path.is_file() and metrics_path.is_file()):
        raise FileNotFoundError(f"{folder} is not a finished grid (needs {summary_path.name} and "
                                f"{metrics_path.name})")  # fmt: skip
    summary = json.loads(summary_path.read_text())
    needed = {*BEST_COLUMNS.values(), "combo_id", "source_type", "combo_index", primary,
              "overlay_mode", "execution_profile", "is_zero_trade_combo",
              *(c for e in MEANS.values() for c in e.meta.root_names())}  # fmt: skip
    table = _with_columns(pl.read_parquet(metrics_path), sorted(needed))
    best = ranked(table, primary).head(1).to_dicts()
    best_row = best[0] if best else {}
    means = table.select(**MEANS).row(0, named=True)
    fragility = _read_csv(folder / "grid_cost_fragility.csv")
    slopes = {out: (fragility[col].cast(pl.Float64).mean()
                    if fragility is not None and col in fragility.columns else None)
              for out, col in (("cost_fragility_expect_slope_mean", "expectancy_slope_per_10bps"),
                               ("cost_fragility_pf_slope_mean", "profit_factor_slope_per_10bps"))
              }  # fmt: skip
    source_summary = _read_csv(folder / "grid_source_summary.csv")
    zero_share = summary.get("zero_trade_combo_share")
    if zero_share is None and table.height:
        zero_share = table["is_zero_trade_combo"].cast(pl.Float64).mean()
    overfit = (summary.get("overfitting") or {}).get(best_row.get("source_type")) or {}
    return {
        "grid_run_dir": str(folder), "grid_run_id": summary.get("grid_run_id"),
        "scope": summary.get("scope"), "comparability": summary.get("comparability"),
        "successful_combos": summary.get("successful_combos"),
        "failed_combos": summary.get("failed_combos"),
        "best_combo_id": best_row.get("combo_id"), "best_source_type": best_row.get("source_type"),
        **{out: best_row.get(col) for out, col in BEST_COLUMNS.items()},
        **means, "zero_trade_combo_share": zero_share,
        "overlay_mode_set": _set_of(table, "overlay_mode"),
        "execution_profile_set": _set_of(table, "execution_profile"),
        **slopes,
        "source_summary_rows": 0 if source_summary is None else source_summary.height,
        "best_dsr": overfit.get("dsr"), "best_pbo": overfit.get("pbo"),
        "best_fluke_risk": overfit.get("fluke_risk"),
        "primary_metric": primary, "best_primary_value": best_row.get(primary),
    }  # fmt: skip


def top_signatures(metrics: pl.DataFrame, primary: str, n: int = TOP_N) -> set[str]:
    """``source|hold|signal|exit|fee|slippage|overlap|equity|include_watch|state_subset_key``
    of the ``n`` best rows by ``primary`` (the order of :func:`ranked`)."""
    top = ranked(_with_columns(metrics, [*SIGNATURE, primary]), primary).head(n)
    text = top.select(pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("") for c in SIGNATURE],
                                    separator="|"))  # fmt: skip
    return set(text.to_series().to_list())


def overlap_table(signatures: Sequence[tuple[str, set[str]]]) -> pl.DataFrame:
    """``run_a``, ``run_b``, ``top10_overlap_count`` for every pair of (grid_run_id, top-10
    signatures), pairs in the given order."""
    rows = [(a, b, len(sa & sb)) for (a, sa), (b, sb) in combinations(signatures, 2)]
    return pl.DataFrame(rows, schema={"run_a": STR, "run_b": STR, "top10_overlap_count": I64},
                        orient="row")  # fmt: skip


def _lt(column: str, bound: float) -> pl.Expr:
    return (pl.col(column) < bound).fill_null(False)


def _le(column: str, bound: float) -> pl.Expr:
    return (pl.col(column) <= bound).fill_null(False)


def _gt(column: str, bound: float) -> pl.Expr:
    return (pl.col(column) > bound).fill_null(False)


def _ge(column: str, bound: float) -> pl.Expr:
    return (pl.col(column) >= bound).fill_null(False)


def compare_table(per_grid: list[dict[str, Any]], primary: str) -> pl.DataFrame:
    """The compare table of grid rows (:func:`grid_row` dicts; missing keys are null): sorted
    by ``best_robustness_score_v2`` descending, nulls last, ties by grid_run_dir; the first row
    is the baseline; deltas of every row against it, then the overlay and realism verdicts of
    §5.7 (a comparison with a null delta is false)."""
    rows = [{**{k: r.get(k) for k in ROW_SCHEMA}, "primary_metric": primary} for r in per_grid]
    table = pl.DataFrame(rows, schema=ROW_SCHEMA).sort(
        ["best_robustness_score_v2", "grid_run_dir"], descending=[True, False], nulls_last=True)
    table = table.with_columns((pl.col(col) - pl.col(col).first()).alias(delta)
                               for delta, col in DELTAS.items())  # fmt: skip
    baseline = pl.int_range(pl.len()) == 0
    d_exp, d_pf, d_cv, d_rob, _, d_supp = DELTAS
    overlay = (pl.when(baseline).then(pl.lit("NEUTRAL"))
               .when(_gt(d_exp, 0) & _gt(d_pf, 0) & _ge(d_rob, 0) & _le(d_cv, 0))
               .then(pl.lit("HELPFUL"))
               .when(_ge(d_exp, 0) & _ge(d_pf, 0)).then(pl.lit("NEUTRAL"))
               .otherwise(pl.lit("HARMFUL")))  # fmt: skip
    no_trade = pl.col("best_zero_trade").fill_null(False) \
        | (pl.col("best_trade_count").fill_null(0) <= 0)  # fmt: skip
    realism = (pl.when(no_trade).then(pl.lit("NOT_TRADABLE"))
               .when(_ge(d_exp, -0.001) & _ge(d_pf, -0.05) & _ge(d_rob, -2.0)
                     & _le(d_supp, 0.10)).then(pl.lit("EDGE_RETAINED"))
               .when(_lt(d_exp, 0) & _lt(d_cv, 0) & _le(d_supp, 0.35))
               .then(pl.lit("EDGE_COMPROMISED_BUT_CLEANER"))
               .otherwise(pl.lit("TOO_FRAGILE_UNDER_REALISM")))  # fmt: skip
    return table.with_columns(overlay_verdict=overlay, realism_verdict=realism)


def _fluke_lines(table: pl.DataFrame) -> list[str]:
    """One sentence on how likely each grid's winner is a fluke."""
    lines = ["DSR (Deflated Sharpe Ratio) and PBO (Probability of Backtest Overfitting) are "
             "those of the best combo's source in each grid (the grid summary's `overfitting`, "
             "judged on its robustness-v2 winner over every combo tried): fluke risk is HIGH when "
             "PBO >= 0.5 or DSR < 0.5, LOW when DSR >= 0.95 and PBO < 0.2, UNKNOWN without a "
             "DSR.", ""]  # fmt: skip
    for run_id, risk, dsr, pbo in table.select(
            "grid_run_id", "best_fluke_risk", "best_dsr", "best_pbo").rows():
        lines.append(f"- {run_id}: fluke risk {fmt(risk)} (DSR {fmt(dsr)}, PBO {fmt(pbo)})")
    high = table.filter(pl.col("best_fluke_risk") == "HIGH").height
    lines += ["", f"{high} of {table.height} grids have a HIGH fluke risk: their best "
              "configuration is more likely selection luck than an edge." if high else
              "No grid has a HIGH fluke risk."]  # fmt: skip
    return lines


def compare_report_md(table: pl.DataFrame, overlap: pl.DataFrame, summary: dict[str, Any]
                      ) -> str:  # fmt: skip
    """``grid_compare_report.md``: grids, deltas and verdicts, fluke risk, top-10 overlap."""
    primary = summary["primary_metric"]
    rule = ("smallest loss (|drawdown| ascending)" if primary == "max_drawdown" else
            "lowest" if primary in LOWER_IS_BETTER else "highest")  # fmt: skip
    out = [f"# Grid compare: {summary['compare_id']}", "",
           f"- finished_ts: {fmt(summary.get('finished_ts'))}",
           f"- primary metric: {primary} (best = {rule}; nulls never best; ties by combo_index)",
           f"- grids: {table.height}",
           f"- baseline: {fmt(summary.get('baseline_grid_run_id'))} (highest "
           "best_robustness_score_v2)", "", "## Grids", ""]  # fmt: skip
    out += frame_table(table, ["grid_run_id", "scope", "comparability", "successful_combos",
                               "failed_combos", "best_combo_id", "best_source_type",
                               "best_primary_value", "best_expectancy", "best_profit_factor",
                               "best_robustness_score_v2", "best_trade_count",
                               "best_sharpe_period", "best_dsr", "best_pbo", "best_fluke_risk"])
    out += ["", "## Means per grid", ""]
    out += frame_table(table, ["grid_run_id", "expectancy_mean", "profit_factor_mean",
                               "robustness_v2_mean", "ret_cv_median", "zero_trade_combo_share",
                               "overlay_mode_set", "execution_profile_set",
                               "exec_suppressed_signal_share_mean",
                               "cost_fragility_expect_slope_mean"])  # fmt: skip
    out += ["", "## Deltas vs the baseline and verdicts", ""]
    out += frame_table(table, ["grid_run_id", *DELTAS, "overlay_verdict", "realism_verdict"])
    out += ["", *(f"- {line}" for line in VERDICT_RULES), "", "## Is the winner a fluke?", ""]
    out += _fluke_lines(table)
    out += ["", f"## Top-{TOP_N} overlap", "",
            f"Configurations shared by the top {TOP_N} of two grids by {primary}.", ""]
    out += md_table(overlap.columns, overlap.rows())
    out += ["", "## Grid folders", "",
            *(f"- {r}: `{d}`" for r, d in table.select("grid_run_id", "grid_run_dir").rows()),
            ""]  # fmt: skip
    return "\n".join(out)


def compare_grids(grid_dirs: list[Path], metrics: list[str] | None, ranking_default: str,
                  out_root: Path) -> dict[str, Any]:  # fmt: skip
    """Compare >= 2 grid folders into ``<out_root>/backtest-grid-compare-<12hex>/`` (the
    table, overlap, summary, Markdown and HTML reports, built under a temporary name and
    swapped in) and return its summary. The primary metric is the
    first of ``metrics``, else ``ranking_default``."""
    chosen = list(metrics or [ranking_default])
    check_metrics(chosen)
    dirs = sorted({Path(d).resolve() for d in grid_dirs})
    if len(dirs) < 2:
        raise ValueError("backtest-grid-compare needs at least two different --grid-run-dir")
    primary = chosen[0]
    started = now()
    compare_id = COMPARE_PREFIX + digest({"grid_run_dirs": [str(d) for d in dirs],
                                          "metrics": chosen})  # fmt: skip
    rows = [grid_row(d, primary) for d in dirs]
    signatures = [(r["grid_run_id"] or r["grid_run_dir"],
                   top_signatures(pl.read_parquet(d / "grid_metrics_table.parquet"), primary))
                  for r, d in zip(rows, dirs, strict=True)]  # fmt: skip
    table = compare_table(rows, primary)
    overlap = overlap_table(signatures)
    folder = Path(out_root) / compare_id
    names = {"grid_compare_table": "grid_compare_table.csv",
             "grid_compare_overlap": "grid_compare_overlap.csv",
             "grid_compare_summary": "grid_compare_summary.json",
             "grid_compare_report": "grid_compare_report.md",
             "grid_compare_report_html": "grid_compare_report.html"}  # fmt: skip
    summary = {"compare_id": compare_id, "grid_run_dirs": [str(d) for d in dirs],
               "primary_metric": primary, "metrics": chosen,
               "baseline_grid_run_id": table["grid_run_id"][0],
               "rows": table.to_dicts(), "overlap": overlap.to_dicts(),
               "started_ts": started, "finished_ts": now(), "output_dir": str(folder),
               "outputs": {k: str(folder / v) for k, v in names.items()}}  # fmt: skip
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = folder.parent / f".{folder.name}.tmp-{lake.writer_tag()}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    lake.write_csv(table, temp / names["grid_compare_table"])
    lake.write_csv(overlap, temp / names["grid_compare_overlap"])
    lake.write_text(compare_report_md(table, overlap, summary), temp / names["grid_compare_report"])
    lake.write_json(finite_json(summary), temp / names["grid_compare_summary"])
    pages.grid_compare_html(temp)
    swap_in(temp, folder)
    return summary
