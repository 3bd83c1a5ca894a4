"""Execution realism report (backtest_ops.md §7.8): does the HMM edge survive realistic
execution filters (none / lite / strict) and the policy overlay?

Five single-source HMM grids (one row each) and one walk-forward pair (baseline lite vs
overlay allow_only lite) are compared. Differences from the old tool, on purpose:

- fault 26: the trade-count and zero-trade penalties use
  ``backtest_execution_realism.report_min_trades_default`` and
  ``report_max_zero_trade_share_default`` (the old 30 and 0.5 were literals), and
  ``best_zero_trade_share`` is the CHOSEN combo's zero-trade flag (1.0 or 0.0), since the
  verdict is about that combo; the grid's share of zero-trade combos is kept next to it as
  ``grid_zero_trade_combo_share``.
- fault 15: every "best" ordering puts missing values last.
- fault 16/35: inputs are given or discovered by recorded settings, newest by ``finished_ts``.
- ours: each row carries the grid's Deflated Sharpe Ratio, PBO and fluke risk of its best
  combo's source (from ``grid_summary.json`` ``overfitting``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.reports import (
    discover,
    md_table,
    md_value,
    non_finite_cells,
    pages,
    publish,
    report_folder,
)
from mf_pipeline.lib.reports.discover import Loaded
from mf_pipeline.lib.reports.scoring import (
    INF,
    best_row,
    row_deltas,
    sort_best,
    split_comparison,
    weighted_minmax,
)
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.run import finite_json
from mf_pipeline.lib.steps.research.artifacts import now

REPORTS_DIR = "execution_realism_reports"
GRID_TARGETS: dict[str, tuple[str, str, str]] = {
    "hmm_none": ("HMM baseline (none)", "none", "none"),
    "hmm_lite": ("HMM baseline (lite)", "none", "lite"),
    "hmm_strict": ("HMM baseline (strict)", "none", "strict"),
    "hmm_overlay_allow_lite": ("HMM overlay allow_only (lite)", "allow_only", "lite"),
    "hmm_overlay_block_lite": ("HMM overlay block_veto (lite)", "block_veto", "lite"),
}
"""Input key -> (run label, overlay mode, execution profile) of the five grids."""
WF_TARGETS: dict[str, tuple[str, str]] = {
    "wf_hmm_baseline_lite": ("none", "lite"),
    "wf_hmm_hybrid_lite": ("allow_only", "lite"),
}
"""Input key -> (overlay mode, execution profile) of the walk-forward pair."""
INPUT_KEYS = (*GRID_TARGETS, *WF_TARGETS)
BEST_COMBO_ORDER = (("robustness_score_v2", True), ("expectancy", True),
                    ("profit_factor", True), ("combo_id", False), ("source_type", False))
SCORE_WEIGHTS = {"best_expectancy": (0.30, True), "best_pf": (0.20, True),
                 "best_robustness_v2": (0.25, True), "best_ret_cv": (0.15, False),
                 "best_zero_trade_share": (0.10, False)}  # fmt: skip
"""Column -> (weight, higher is better) of ``candidate_score`` (x 100)."""
PENALTY = 10.0
TABLE_SCHEMA: dict[str, Any] = {
    "run_label": pl.String, "run_dir": pl.String, "execution_profile": pl.String,
    "overlay_mode": pl.String, "overlay_enabled": pl.Boolean, "best_expectancy": pl.Float64,
    "best_pf": pl.Float64, "best_pf_inf": pl.Boolean, "best_robustness_v2": pl.Float64,
    "best_ret_cv": pl.Float64, "best_zero_trade_share": pl.Float64,
    "grid_zero_trade_combo_share": pl.Float64, "best_trade_count": pl.Int64,
    "best_combo_id": pl.String, "best_source_type": pl.String,
    "overlay_match_rate": pl.Float64, "overlay_vetoed_signal_share": pl.Float64,
    "overlay_unknown_rate": pl.Float64, "exec_eligibility_rate": pl.Float64,
    "exec_suppressed_signal_share": pl.Float64, "exec_trade_avg_dollar_vol_20": pl.Float64,
    "status": pl.String, "realism_aware_verdict": pl.String, "candidate_score": pl.Float64,
    "dsr": pl.Float64, "pbo": pl.Float64, "fluke_risk": pl.String, "grid_run_id": pl.String,
}  # fmt: skip
_COPIED = ("overlay_match_rate", "overlay_vetoed_signal_share", "overlay_unknown_rate",
           "exec_eligibility_rate", "exec_suppressed_signal_share",
           "exec_trade_avg_dollar_vol_20")  # fmt: skip
_DELTA_COLUMNS = {"expectancy": "best_expectancy", "pf": "best_pf",
                  "robustness_v2": "best_robustness_v2", "ret_cv": "best_ret_cv"}
_EXEC_DELTAS = {"exec_eligibility_rate": "exec_eligibility_rate",
                "exec_suppressed_signal_share": "exec_suppressed_signal_share"}
NO_TRADABLE = "NO_TRADABLE_CANDIDATE"
RETAINED_EXP_DROP, RETAINED_PF_DROP = 0.001, 0.05
"""Lite may lose at most this much expectancy and profit factor vs none to retain the edge."""


def _grid_row(label: str, folder: Path | None, loaded: Loaded) -> dict[str, Any]:
    row: dict[str, Any] = {"run_label": label, "run_dir": None if folder is None else str(folder)}
    if folder is None or not folder.is_dir():
        return {**row, "status": "MISSING", "realism_aware_verdict": "NOT_TRADABLE"}
    grid = discover.read_grid(folder, loaded)
    summary = grid.summary or {}
    row.update(execution_profile=discover.execution_profile_of(summary, folder),
               overlay_mode=discover.overlay_mode_of(summary),
               grid_run_id=summary.get("grid_run_id"))
    row["overlay_enabled"] = row["overlay_mode"] != "none"
    if grid.summary is None or grid.metrics is None:
        return {**row, "status": "MISSING_ARTIFACTS", "realism_aware_verdict": "NOT_TRADABLE"}
    row["grid_zero_trade_combo_share"] = discover.grid_share(grid)
    best = best_row(grid.metrics, BEST_COMBO_ORDER)
    if best is None:
        return {**row, "status": "NO_SUCCESS_ROWS", "realism_aware_verdict": "NOT_TRADABLE"}
    zero = best.get("is_zero_trade_combo")
    trades = best.get("trade_count")
    row.update(
        best_expectancy=best.get("expectancy"), best_pf=best.get("profit_factor"),
        best_pf_inf=best.get("profit_factor") == INF,
        best_robustness_v2=best.get("robustness_score_v2"), best_ret_cv=best.get("ret_cv"),
        best_zero_trade_share=1.0 if zero is None or zero else 0.0,
        best_trade_count=trades, best_combo_id=best.get("combo_id"),
        best_source_type=best.get("source_type"), status="OK",
        realism_aware_verdict="NOT_TRADABLE" if (trades or 0) <= 0 or zero is not False
        else "TRADABLE",
        **{c: best.get(c) for c in _COPIED},
        **discover.overfit_of(summary, best.get("source_type")),
    )  # fmt: skip
    return row


def score_rows(rows: list[dict[str, Any]], min_trades: int, max_zero_share: float
               ) -> pl.DataFrame:  # fmt: skip
    """The report table: ``candidate_score`` over the rows and the NOT_TRADABLE guard, sorted
    by candidate_score, best_robustness_v2, best_expectancy (desc, nulls last), run_label."""
    table = pl.DataFrame(rows, schema=TABLE_SCHEMA)
    trades = pl.col("best_trade_count").fill_null(0)
    zero = pl.col("best_zero_trade_share")
    raw = (100.0 * weighted_minmax(table, SCORE_WEIGHTS)
           - PENALTY * (trades < min_trades).cast(pl.Float64)
           - PENALTY * (zero > max_zero_share).fill_null(False).cast(pl.Float64))  # fmt: skip
    guard = ((pl.col("status") != "OK") | (pl.col("realism_aware_verdict") == "NOT_TRADABLE")
             | (trades <= 0) | (zero >= 1.0).fill_null(False))  # fmt: skip
    table = table.with_columns(
        candidate_score=pl.when(guard).then(0.0).otherwise(raw.clip(0.0, 100.0)),
        realism_aware_verdict=pl.when(guard).then(pl.lit("NOT_TRADABLE"))
        .otherwise(pl.lit("TRADABLE")),
    )  # fmt: skip
    return sort_best(table, (("candidate_score", True), ("best_robustness_v2", True),
                             ("best_expectancy", True), ("run_label", False)))


def _num(x: float | None) -> str:
    return "null" if x is None else f"{x:.6f}"


def final_verdicts(table: pl.DataFrame) -> dict[str, str | None]:
    """PRIMARY / SECONDARY candidates and the realism sensitivity note (§7.8)."""
    ok = table.filter(pl.col("status") == "OK")
    tradable = sort_best(ok.filter(pl.col("realism_aware_verdict") != "NOT_TRADABLE"),
                         (("candidate_score", True), ("run_label", False)))["run_label"]
    primary = tradable[0] if len(tradable) else (NO_TRADABLE if ok.height else None)
    rows = {r["run_label"]: r for r in ok.iter_rows(named=True)}
    none, lite, strict = (rows.get(GRID_TARGETS[k][0])
                          for k in ("hmm_none", "hmm_lite", "hmm_strict"))  # fmt: skip
    if ok.height and not len(tradable):
        note = f"{NO_TRADABLE} (likely over-restrictive execution filters)"
    elif none is None or lite is None:
        note = "baseline/lite pair not available"
    elif None in (none["best_expectancy"], none["best_pf"], lite["best_expectancy"],
                  lite["best_pf"]):
        note = "insufficient baseline metrics"
    else:
        d = row_deltas(lite, none, _DELTA_COLUMNS)
        dexp, dpf, dcv = d["delta_expectancy"], d["delta_pf"], d["delta_ret_cv"]
        if dexp >= -RETAINED_EXP_DROP and dpf >= -RETAINED_PF_DROP:
            verdict = "EDGE_RETAINED_UNDER_LITE"
        elif dexp < 0 and dcv is not None and dcv < 0:
            verdict = "EDGE_COMPROMISED_BUT_CLEANER_UNDER_LITE"
        else:
            verdict = "TOO_FRAGILE_UNDER_REALISM"
        note = (f"{verdict} (delta_exp={_num(dexp)}, delta_pf={_num(dpf)}, "
                f"delta_ret_cv={_num(dcv)}).")  # fmt: skip
        if strict is not None and None not in (strict["best_expectancy"], strict["best_pf"]):
            s = row_deltas(strict, none, _DELTA_COLUMNS)
            note += (f" strict_delta_exp={_num(s['delta_expectancy'])} "
                     f"strict_delta_pf={_num(s['delta_pf'])}.")  # fmt: skip
    return {"PRIMARY_CANDIDATE": primary,
            "SECONDARY_CANDIDATE": tradable[1] if len(tradable) > 1 else None,
            "REALISM_SENSITIVITY_NOTE": note}  # fmt: skip


def _wf_best(folder: Path, loaded: Loaded) -> pl.DataFrame:
    """Per SUCCESS split: the best combo (§7.8 order) among the split grid's ``hmm`` rows
    (all rows if none is hmm); zero share = the by-split ``zero_trade_combo_share``."""
    rows = []
    for train_end, split, grid in discover.read_wf_grid(folder, loaded).splits:
        metrics = grid.metrics
        if metrics is not None and (metrics["source_type"] == "hmm").any():
            metrics = metrics.filter(pl.col("source_type") == "hmm")
        best = best_row(metrics, BEST_COMBO_ORDER) or {}
        rows.append({
            "train_end": train_end, "expectancy": best.get("expectancy"),
            "profit_factor": best.get("profit_factor"),
            "robustness_v2": best.get("robustness_score_v2"), "ret_cv": best.get("ret_cv"),
            "zero_trade_share": split.get("zero_trade_combo_share"),
            "exec_eligibility_rate": best.get("exec_eligibility_rate"),
            "overlay_match_rate": best.get("overlay_match_rate"),
            "overlay_vetoed_signal_share": best.get("overlay_vetoed_signal_share")})
    return pl.DataFrame(rows, schema={"train_end": pl.String, **dict.fromkeys(
        ("expectancy", "profit_factor", "robustness_v2", "ret_cv", "zero_trade_share",
         "exec_eligibility_rate", "overlay_match_rate", "overlay_vetoed_signal_share"),
        pl.Float64)})  # fmt: skip


def wf_comparison(baseline: Path | None, hybrid: Path | None, loaded: Loaded
                  ) -> dict[str, Any]:  # fmt: skip
    """The WF row (§7.8): split wins and mean deltas over the common SUCCESS splits, and the
    means over those splits of the best combos' eligibility, match rate and veto share."""
    row: dict[str, Any] = {"source": "hmm", "comparison": "baseline_vs_hybrid",
                           "split_count": 0}
    if baseline is None or hybrid is None or not (baseline.is_dir() and hybrid.is_dir()):
        return {**row, "status": "MISSING_WF_INPUTS"}
    base, hyb = _wf_best(baseline, loaded), _wf_best(hybrid, loaded)
    if base.is_empty() or hyb.is_empty():
        return {**row, "status": "NO_WF_SPLITS"}
    stats = split_comparison(base, hyb)
    if not stats["split_count"]:
        return {**row, "status": "NO_SHARED_SPLITS"}
    common = pl.col("train_end").is_in(stats.pop("train_ends"))
    b, h = base.filter(common), hyb.filter(common)
    return {**row, **stats,
            "baseline_exec_eligibility_rate": b["exec_eligibility_rate"].mean(),
            "hybrid_exec_eligibility_rate": h["exec_eligibility_rate"].mean(),
            "hybrid_overlay_match_rate": h["overlay_match_rate"].mean(),
            "hybrid_overlay_vetoed_signal_share": h["overlay_vetoed_signal_share"].mean(),
            "status": "OK"}  # fmt: skip


def key_deltas(table: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """lite/strict minus none and each overlay (lite) minus baseline lite (rows not OK give
    nulls)."""
    ok = {r["run_label"]: r for r in table.iter_rows(named=True) if r["status"] == "OK"}
    none, lite, strict, allow, block = (ok.get(GRID_TARGETS[k][0]) for k in GRID_TARGETS)
    out = {"lite_minus_none": row_deltas(lite, none, {**_DELTA_COLUMNS, **_EXEC_DELTAS}),
           "strict_minus_none": row_deltas(strict, none, _DELTA_COLUMNS)}
    for name, run in (("allow_only_lite_minus_baseline_lite", allow),
                      ("block_veto_lite_minus_baseline_lite", block)):  # fmt: skip
        out[name] = {**row_deltas(run, lite, _DELTA_COLUMNS),
                     "overlay_vetoed_signal_share": (run or {}).get("overlay_vetoed_signal_share")}
    return out


def report_md(summary: Mapping[str, Any], table: pl.DataFrame, wf: Mapping[str, Any]) -> str:
    v = summary["final_verdicts"]
    t = summary["thresholds"]
    lines = [
        f"# Execution realism report `{summary['run_id']}`", "",
        f"Generated {summary['generated_ts']}. Does the HMM edge survive execution filters "
        "(none / lite / strict) and the policy overlay? Each row is one grid's best combo "
        "(robustness v2, then expectancy, then profit factor; missing values last).", "",
        "## Verdict", "",
        f"- PRIMARY_CANDIDATE: **{v['PRIMARY_CANDIDATE']}**",
        f"- SECONDARY_CANDIDATE: {v['SECONDARY_CANDIDATE']}",
        f"- REALISM_SENSITIVITY_NOTE: {v['REALISM_SENSITIVITY_NOTE']}", "",
        "## Runs", "",
        md_table(table, ["run_label", "status", "realism_aware_verdict", "candidate_score",
                         "best_expectancy", "best_pf", "best_robustness_v2", "best_ret_cv",
                         "best_trade_count", "best_zero_trade_share",
                         "grid_zero_trade_combo_share", "exec_eligibility_rate",
                         "overlay_vetoed_signal_share", "dsr", "pbo", "fluke_risk"]), "",
        f"candidate_score = 100 x (0.30 expectancy + 0.20 PF + 0.25 robustness v2 + 0.15 "
        f"(1 - ret_cv) + 0.10 (1 - zero-trade)), each min-max scaled over the rows (missing 0, "
        f"all equal 0.5); -10 when the combo has fewer than {t['min_trades']} trades, -10 when "
        f"its zero-trade share exceeds {t['max_zero_trade_share']}; 0 and NOT_TRADABLE for a "
        "missing grid or a combo without trades. `best_zero_trade_share` is the chosen combo's "
        "own zero-trade flag; `grid_zero_trade_combo_share` is the share of the grid's combos "
        "that never traded.", "",
        "`dsr` is the Deflated Sharpe Ratio of the grid's winner given all its combos and "
        "`pbo` the Probability of Backtest Overfitting: a high PBO means the grid's winner is "
        "likely a fluke.", "",
        "## Key deltas", "",
    ]  # fmt: skip
    for name, deltas in summary["key_deltas"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k}={md_value(x) or 'null'}"
                                               for k, x in deltas.items()))
    lines += ["", "## Walk-forward: baseline lite vs overlay allow_only lite", "",
              f"Status {wf['status']}, {wf['split_count']} common split(s)."]
    if wf["status"] == "OK":
        lines.append(", ".join(f"{k}={md_value(wf[k])}" for k in wf
                               if k.startswith(("hybrid_wins", "avg_delta"))) + ".")
    lines += ["", "## Inputs", ""]
    lines += [f"- {k}: {i['dir']} ({i['how']})" for k, i in summary["inputs"].items()]
    return "\n".join(lines) + "\n"


def execution_realism_report(settings: Settings, dirs: Mapping[str, Path | None],
                             out_root: Path) -> dict[str, Any]:  # fmt: skip
    """Write ``<out_root>/exec-realism-<12hex>_execution_realism_v1/`` and return its summary.

    ``dirs`` maps input keys (:data:`INPUT_KEYS`) to folders; a missing or None entry is
    discovered under ``settings.artifacts_root`` by its recorded overlay mode and execution
    profile (newest ``finished_ts``), and stays missing (status ``MISSING``) if none matches.
    """
    root = settings.artifacts_root
    finders = {
        **{k: (lambda _, o=o, p=p: discover.find_grid(root, scope_prefix="single-hmm",
                                                      overlay_mode=o, execution_profile=p))
           for k, (_, o, p) in GRID_TARGETS.items()},
        **{k: (lambda _, o=o, p=p: discover.find_wf_grid(root, source="hmm", overlay_mode=o,
                                                         execution_profile=p))
           for k, (o, p) in WF_TARGETS.items()},
    }  # fmt: skip
    resolved, inputs = discover.resolve_inputs(dirs, INPUT_KEYS, finders)
    run_id, folder = report_folder(out_root, "exec-realism", "execution_realism_v1", resolved)
    realism = settings.backtest_execution_realism
    thresholds = {"min_trades": realism.report_min_trades_default,
                  "max_zero_trade_share": realism.report_max_zero_trade_share_default}
    loaded = Loaded()
    loaded.check_inputs(resolved, INPUT_KEYS)
    rows = [_grid_row(label, resolved[k], loaded) for k, (label, _, _) in GRID_TARGETS.items()]
    table = score_rows(rows, thresholds["min_trades"], thresholds["max_zero_trade_share"])
    wf = wf_comparison(resolved["wf_hmm_baseline_lite"], resolved["wf_hmm_hybrid_lite"], loaded)
    verdicts = final_verdicts(table)
    bad_cells = non_finite_cells(table)
    real_primary = verdicts["PRIMARY_CANDIDATE"] not in (None, NO_TRADABLE)
    summary: dict[str, Any] = {
        "run_id": run_id, "generated_ts": now(), "inputs": inputs, "thresholds": thresholds,
        "compared_runs": table.to_dicts(),
        "top_combo_per_run": {r["run_label"]: {
            "combo_id": r["best_combo_id"], "expectancy": r["best_expectancy"],
            "profit_factor": r["best_pf"], "robustness_v2": r["best_robustness_v2"],
            "ret_cv": r["best_ret_cv"], "candidate_score": r["candidate_score"],
            "dsr": r["dsr"], "pbo": r["pbo"], "fluke_risk": r["fluke_risk"]}
            for r in table.iter_rows(named=True)},
        "key_deltas": key_deltas(table),
        "wf_consistency_stats": {k: wf.get(k) for k in (
            "status", "split_count", "hybrid_wins_expectancy", "hybrid_wins_pf",
            "hybrid_wins_robustness_v2", "hybrid_wins_ret_cv")},
        "final_verdicts": verdicts,
        "notes": ["best_zero_trade_share is the chosen combo's own zero-trade flag (1.0/0.0); "
                  "the grid's share is grid_zero_trade_combo_share (fault 26)."],
        "sanity": {"files_loaded": loaded.files_loaded, "missing_files": loaded.missing_files,
                   "non_finite_cells_detected": bad_cells,
                   "status": "OK" if real_primary and bad_cells == 0 else "WARN"},
    }  # fmt: skip
    names = ("execution_realism_summary.json", "execution_realism_table.csv",
             "execution_realism_wf_table.csv", "execution_realism_report.md",
             "execution_realism_report.html")
    summary["output_dir"] = str(folder)
    summary["outputs"] = {n.replace(".", "_"): str(folder / n) for n in names}

    def write(temp: Path) -> None:
        lake.write_csv(table, temp / names[1])
        lake.write_csv(pl.DataFrame([finite_json(wf)]), temp / names[2])
        lake.write_text(report_md(summary, table, wf), temp / names[3])
        summary["finished_ts"] = now()
        lake.write_json(finite_json(summary), temp / names[0])
        pages.realism_html(temp)

    publish(folder, write)
    return finite_json(summary)
