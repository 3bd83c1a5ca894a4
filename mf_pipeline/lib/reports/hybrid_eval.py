"""Hybrid overlay evaluation report (backtest_ops.md §8): is gating the HMM signals by the
cluster policy overlay (allow_only or block_veto) better than the plain HMM baseline, on the
single grids and split by split in walk-forward grids?

Analysis only: it reads finished grid, walk-forward grid and (optionally) grid-compare
folders. Formulas and names are the old tool's except:

- fault 25: a walk-forward consistency score of exactly 0 is a real 0 (the hybrid lost every
  comparison) and moves the final ranking; the old tool replaced 0 by 50. When the two
  walk-forward grids share no split (or one is missing) the score is null and the ranking
  gets NO walk-forward adjustment.
- fault 15: every "best" ordering puts missing values last.
- fault 16: no hard-coded run folders: each required input is given or discovered by its
  recorded settings (baseline: single-hmm grid without overlay; allow_only / block_veto: same
  execution profile as the baseline), newest by ``finished_ts``.
- ours: DSR, PBO and fluke risk of each run's best source, and ``best_is_zero_trade_combo``
  next to the grid-level ``best_zero_trade_share`` (kept as the old tool defined it).
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
from mf_pipeline.lib.reports.discover import Grid, Loaded
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

REPORTS_DIR = "hybrid_eval_reports"
LABELS = {"hmm_baseline": "HMM baseline", "hmm_allow_only": "HMM + overlay allow_only",
          "hmm_block_veto": "HMM + overlay block_veto",
          "flow_allow_only": "Flow + overlay allow_only"}  # fmt: skip
"""Grid input key -> run label (flow_allow_only is optional and never discovered)."""
INPUT_KEYS = (*LABELS, "wf_hmm_baseline", "wf_hmm_hybrid", "compare_run")
OPTIONAL = ("flow_allow_only", "compare_run")
"""Inputs used only when given (never discovered, never reported missing)."""
COMBO_WEIGHTS = {"expectancy": (0.32, True), "profit_factor": (0.20, True),
                 "robustness_score_v2": (0.24, True), "ret_cv": (0.13, False),
                 "downside_std": (0.06, False), "trade_count": (0.05, True)}  # fmt: skip
"""§8.1 combo_candidate_score: column -> (weight, higher is better), min-max within a grid."""
ZERO_TRADE_PENALTY = 20.0
TOP_COMBO_ORDER = (("combo_candidate_score", True), ("expectancy", True),
                   ("profit_factor", True), ("combo_id", False), ("source_type", False))
SINGLE_WEIGHTS = {"best_expectancy": (0.30, True), "best_pf": (0.20, True),
                  "best_robustness_v2": (0.25, True), "best_ret_cv": (0.15, False),
                  "best_downside_std": (0.07, False),
                  "best_zero_trade_share": (0.03, False)}  # fmt: skip
"""§8.2 single_candidate_score: min-max across the run rows."""
HIGH_VETO_SHARE, HIGH_VETO_PENALTY = 0.80, 5.0
PROMOTE_SCORE, PROMOTE_MAX_ZERO_SHARE = 72.0, 0.25
BENCH_SCORE = 56.0
NICHE_VETO_SHARE, NICHE_TRADE_RATIO = 0.50, 0.60
WF_WIN_WEIGHTS = {"expectancy": 0.30, "pf": 0.20, "robustness_v2": 0.30, "ret_cv": 0.20}
ALLOW_WF_FACTOR, BASELINE_WF_FACTOR, BLOCK_VETO_ADJUSTMENT = 0.40, 0.25, -2.5
TABLE_SCHEMA: dict[str, Any] = {
    "run_label": pl.String, "run_dir": pl.String, "overlay_mode": pl.String,
    "overlay_enabled": pl.Boolean, "execution_profile": pl.String, "best_combo_id": pl.String,
    "best_source_type": pl.String, "best_expectancy": pl.Float64, "best_pf": pl.Float64,
    "best_pf_inf": pl.Boolean, "best_robustness_v2": pl.Float64, "best_ret_cv": pl.Float64,
    "best_zero_trade_share": pl.Float64, "best_is_zero_trade_combo": pl.Boolean,
    "best_trade_count": pl.Int64, "best_downside_std": pl.Float64,
    "overlay_match_rate": pl.Float64, "overlay_vetoed_signal_share": pl.Float64,
    "overlay_unknown_rate": pl.Float64, "grid_run_id": pl.String,
    "successful_combos": pl.Int64, "failed_combos": pl.Int64, "status": pl.String,
    "combo_candidate_score": pl.Float64, "dsr": pl.Float64, "pbo": pl.Float64,
    "fluke_risk": pl.String,
}  # fmt: skip
_DELTAS = {"expectancy": "best_expectancy", "pf": "best_pf",
           "robustness_v2": "best_robustness_v2", "ret_cv": "best_ret_cv",
           "zero_trade_share": "best_zero_trade_share", "trade_count": "best_trade_count"}


def with_combo_scores(metrics: pl.DataFrame) -> pl.DataFrame:
    """``metrics`` + ``combo_candidate_score`` (§8.1): 100 x the weighted min-max scores within
    the grid, minus 20 for a zero-trade combo (a missing flag counts as zero-trade), in
    [0, 100]."""
    zero = pl.col("is_zero_trade_combo").cast(pl.Boolean).fill_null(True) \
        if "is_zero_trade_combo" in metrics.columns else pl.lit(True)  # fmt: skip
    score = 100.0 * weighted_minmax(metrics, COMBO_WEIGHTS) - ZERO_TRADE_PENALTY * zero.cast(
        pl.Float64)
    return metrics.with_columns(combo_candidate_score=score.clip(0.0, 100.0))


def top_combo(grid: Grid) -> dict[str, Any] | None:
    """The grid's top combo by combo_candidate_score, then expectancy, PF (missing last),
    combo_id."""
    if grid.metrics is None or grid.metrics.is_empty():
        return None
    return best_row(with_combo_scores(grid.metrics), TOP_COMBO_ORDER)


def _run_row(label: str, folder: Path | None, loaded: Loaded) -> dict[str, Any]:
    row: dict[str, Any] = {"run_label": label, "run_dir": None if folder is None else str(folder)}
    if folder is None or not folder.is_dir():
        return {**row, "status": "MISSING"}
    grid = discover.read_grid(folder, loaded)
    summary = grid.summary or {}
    row.update(overlay_mode=discover.overlay_mode_of(summary),
               execution_profile=discover.execution_profile_of(summary, folder),
               grid_run_id=summary.get("grid_run_id"),
               successful_combos=summary.get("successful_combos"),
               failed_combos=summary.get("failed_combos"))
    row["overlay_enabled"] = row["overlay_mode"] != "none"
    if grid.metrics is None:
        return {**row, "status": "MISSING_METRICS"}
    best = top_combo(grid)
    if best is None:
        return {**row, "status": "NO_SUCCESS_ROWS"}
    return {**row, "status": "OK", "best_combo_id": best["combo_id"],
            "best_source_type": best.get("source_type"),
            "best_expectancy": best.get("expectancy"), "best_pf": best.get("profit_factor"),
            "best_pf_inf": best.get("profit_factor") == INF,
            "best_robustness_v2": best.get("robustness_score_v2"),
            "best_ret_cv": best.get("ret_cv"), "best_zero_trade_share": discover.grid_share(grid),
            "best_is_zero_trade_combo": best.get("is_zero_trade_combo"),
            "best_trade_count": best.get("trade_count"),
            "best_downside_std": best.get("downside_std"),
            "overlay_match_rate": best.get("overlay_match_rate"),
            "overlay_vetoed_signal_share": best.get("overlay_vetoed_signal_share"),
            "overlay_unknown_rate": best.get("overlay_unknown_rate"),
            "combo_candidate_score": best["combo_candidate_score"],
            **discover.overfit_of(summary, best.get("source_type"))}  # fmt: skip


def score_runs(rows: list[dict[str, Any]], max_ret_cv: float) -> pl.DataFrame:
    """Run rows + ``single_candidate_score`` (§8.2) and ``recommendation_label`` (§8.3)."""
    table = pl.DataFrame(rows, schema=TABLE_SCHEMA)
    veto = pl.col("overlay_vetoed_signal_share")
    single = (100.0 * weighted_minmax(table, SINGLE_WEIGHTS)
              - HIGH_VETO_PENALTY * (veto > HIGH_VETO_SHARE).fill_null(False).cast(pl.Float64))
    return recommendation_labels(table.with_columns(single_candidate_score=single.clip(0.0, 100.0)),
                                 max_ret_cv)


def recommendation_labels(table: pl.DataFrame, max_ret_cv: float) -> pl.DataFrame:
    """``table`` + ``recommendation_label`` (§8.3), first matching rule: PROMOTE (score >= 72,
    grid zero-trade share <= 0.25, ret_cv missing or <= ``max_ret_cv``), KEEP_AS_BENCH (no
    overlay, score >= 56), NICHE_FILTER (overlay, veto share >= 0.50 or fewer than 0.60 x the
    HMM baseline's trades), else RESEARCH_ONLY; each but the last needs status OK."""
    baseline = table.filter(pl.col("run_label") == LABELS["hmm_baseline"])["best_trade_count"]
    base_trades = baseline[0] if len(baseline) else None
    ok = pl.col("status") == "OK"
    enabled = pl.col("overlay_enabled").fill_null(False)
    score = pl.col("single_candidate_score")
    few_trades = pl.lit(False) if base_trades is None else \
        (pl.col("best_trade_count") < NICHE_TRADE_RATIO * base_trades).fill_null(False)  # fmt: skip
    label = (
        pl.when((score >= PROMOTE_SCORE)
                & (pl.col("best_zero_trade_share").fill_null(0.0) <= PROMOTE_MAX_ZERO_SHARE)
                & (pl.col("best_ret_cv").is_null() | (pl.col("best_ret_cv") <= max_ret_cv))
                & ok).then(pl.lit("PROMOTE"))
        .when(~enabled & (score >= BENCH_SCORE) & ok).then(pl.lit("KEEP_AS_BENCH"))
        .when(enabled & ok & ((pl.col("overlay_vetoed_signal_share").fill_null(0.0)
                               >= NICHE_VETO_SHARE) | few_trades))
        .then(pl.lit("NICHE_FILTER"))
        .otherwise(pl.lit("RESEARCH_ONLY")))  # fmt: skip
    return table.with_columns(recommendation_label=label)


def _wf_tops(wf: discover.WfGrid) -> pl.DataFrame:
    """Per SUCCESS split: the top combo (§8.1, all sources) and the split grid's zero-trade
    combo share (= the mean flag over its SUCCESS rows)."""
    rows = []
    for train_end, _, grid in wf.splits:
        best = top_combo(grid) or {}
        rows.append({"train_end": train_end, "expectancy": best.get("expectancy"),
                     "profit_factor": best.get("profit_factor"),
                     "robustness_v2": best.get("robustness_score_v2"),
                     "ret_cv": best.get("ret_cv"), "zero_trade_share": discover.grid_share(grid)})
    return pl.DataFrame(rows, schema={"train_end": pl.String, **dict.fromkeys(
        ("expectancy", "profit_factor", "robustness_v2", "ret_cv", "zero_trade_share"),
        pl.Float64)})  # fmt: skip


def _overlay_means(wf: discover.WfGrid, side: str) -> dict[str, Any]:
    """``<side>_overlay_*`` from the WF folder's overlay source summary, hmm row, ``*_mean``."""
    names = ("overlay_match_rate", "overlay_unknown_rate", "overlay_vetoed_signal_share")
    table = wf.overlay_sources
    row = {}
    if table is not None and "source_type" in table.columns:
        hmm = table.filter(pl.col("source_type") == "hmm")
        row = hmm.row(0, named=True) if hmm.height else {}
    return {f"{side}_{n}": row.get(f"{n}_mean") for n in names}


def wf_consistency_score(stats: Mapping[str, Any]) -> float | None:
    """§8.4: 100 x weighted hybrid win rates over the common splits, in [0, 100]; None when
    there is no common split (fault 25: nothing to judge, not a neutral 50)."""
    if not stats.get("split_count"):
        return None
    wins = sum(w * stats[f"hybrid_wins_{k}"] for k, w in WF_WIN_WEIGHTS.items())
    return min(100.0, max(0.0, 100.0 * wins / stats["split_count"]))


def wf_consistency(baseline: Path | None, hybrid: Path | None, loaded: Loaded
                   ) -> dict[str, Any]:  # fmt: skip
    """The WF consistency row (§8.4) with a ``status`` saying why the score may be null."""
    row: dict[str, Any] = {"source": "hmm", "comparison": "baseline_vs_hybrid", "split_count": 0,
                           "wf_consistency_score": None}
    if baseline is None or hybrid is None or not (baseline.is_dir() and hybrid.is_dir()):
        return {**row, "status": "MISSING_WF_INPUTS"}
    base_wf, hyb_wf = discover.read_wf_grid(baseline, loaded), discover.read_wf_grid(hybrid,
                                                                                     loaded)
    row |= _overlay_means(base_wf, "baseline") | _overlay_means(hyb_wf, "hybrid")
    base, hyb = _wf_tops(base_wf), _wf_tops(hyb_wf)
    if base.is_empty() or hyb.is_empty():
        return {**row, "status": "NO_WF_SPLITS"}
    stats = split_comparison(base, hyb)
    stats.pop("train_ends")
    status = "OK" if stats["split_count"] else "NO_SHARED_SPLITS"
    return {**row, **stats, "wf_consistency_score": wf_consistency_score(stats), "status": status}


def final_ranking(table: pl.DataFrame, wfc: float | None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """§8.5: ``wf_adjustment`` and ``final_rank_score`` per run, sorted best first, and the
    final verdicts. With a null ``wfc`` the allow_only and baseline rows get no adjustment."""
    label, mode = pl.col("run_label"), pl.col("overlay_mode")
    if wfc is None:
        wf_adj = pl.lit(0.0)
    else:
        wf_adj = (pl.when(label == LABELS["hmm_allow_only"]).then((wfc - 50.0) * ALLOW_WF_FACTOR)
                  .when(label == LABELS["hmm_baseline"]).then((50.0 - wfc) * BASELINE_WF_FACTOR)
                  .otherwise(0.0))  # fmt: skip
    adj = (pl.when(label.is_in([LABELS["hmm_allow_only"], LABELS["hmm_baseline"]])).then(wf_adj)
           .when(mode == "block_veto").then(BLOCK_VETO_ADJUSTMENT).otherwise(0.0))  # fmt: skip
    ranked = sort_best(
        table.with_columns(wf_adjustment=adj, _ok=pl.col("status") == "OK")
        .with_columns(final_rank_score=pl.col("single_candidate_score") + pl.col("wf_adjustment")),
        (("_ok", True), ("final_rank_score", True), ("single_candidate_score", True),
         ("run_label", False)))
    # ours: a run whose grid is missing or empty is ranked after every real one and never
    # named a candidate (the old ranking could name a MISSING run SECONDARY)
    ok = dict(zip(ranked["run_label"], ranked["_ok"].fill_null(False), strict=True))
    ranked = ranked.drop("_ok")
    labels = ranked["run_label"].to_list()
    enabled = dict(zip(labels, ranked["overlay_enabled"].fill_null(False).to_list(), strict=True))
    real = [x for x in labels if ok[x]]
    primary = real[0] if real else None
    secondary = real[1] if len(real) > 1 else None
    rest = real[2:]
    nxt = next((x for x in rest if enabled[x]), rest[0] if rest else None)
    recs = {x: "PROMOTE" if x == primary else "KEEP_AS_BENCH" if x == secondary
            else "NICHE_FILTER" if enabled[x] and ok[x] else "RESEARCH_ONLY" for x in labels}
    return ranked, {"PRIMARY_CANDIDATE": primary, "SECONDARY_CANDIDATE": secondary,
                    "NEXT_EXPERIMENT": nxt, "run_recommendations": recs}


def _decision_logic(max_ret_cv: float) -> dict[str, Any]:
    return {
        "combo_candidate_score": {"weights": {k: w for k, (w, _) in COMBO_WEIGHTS.items()},
                                  "zero_trade_penalty": ZERO_TRADE_PENALTY},
        "single_candidate_score": {"weights": {k: w for k, (w, _) in SINGLE_WEIGHTS.items()},
                                   "veto_share_above": HIGH_VETO_SHARE,
                                   "veto_penalty": HIGH_VETO_PENALTY},
        "recommendation_label": {"PROMOTE": {"score_min": PROMOTE_SCORE,
                                             "zero_trade_share_max": PROMOTE_MAX_ZERO_SHARE,
                                             "ret_cv_max": max_ret_cv},
                                 "KEEP_AS_BENCH": {"score_min": BENCH_SCORE},
                                 "NICHE_FILTER": {"veto_share_min": NICHE_VETO_SHARE,
                                                  "trade_count_ratio_below": NICHE_TRADE_RATIO}},
        "wf_consistency_score": {"win_weights": WF_WIN_WEIGHTS,
                                 "null_when": "no common walk-forward split"},
        "final_rank_score": {"allow_only": f"+(wfc - 50) x {ALLOW_WF_FACTOR}",
                             "baseline": f"+(50 - wfc) x {BASELINE_WF_FACTOR}",
                             "block_veto": BLOCK_VETO_ADJUSTMENT,
                             "wfc_null": "no walk-forward adjustment"},
        "labels": ["PROMOTE", "KEEP_AS_BENCH", "NICHE_FILTER", "RESEARCH_ONLY"],
    }  # fmt: skip


def report_md(summary: Mapping[str, Any], table: pl.DataFrame, wf: Mapping[str, Any]) -> str:
    v = summary["final_verdicts"]
    wfc = wf.get("wf_consistency_score")
    by_single = sort_best(table, (("single_candidate_score", True), ("run_label", False)))
    lines = [
        f"# Hybrid overlay evaluation `{summary['run_id']}`", "",
        f"Generated {summary['generated_ts']}. Does gating the HMM signals by the cluster "
        "policy overlay beat the plain HMM baseline? Each row is a grid's top combo by "
        "combo_candidate_score.", "",
        "## Verdict", "",
        f"- PRIMARY_CANDIDATE: **{v['PRIMARY_CANDIDATE']}**",
        f"- SECONDARY_CANDIDATE: {v['SECONDARY_CANDIDATE']}",
        f"- NEXT_EXPERIMENT: {v['NEXT_EXPERIMENT']}", "",
        "## Runs (by single_candidate_score)", "",
        md_table(by_single, ["run_label", "status", "recommendation_label",
                             "single_candidate_score", "final_rank_score", "best_expectancy",
                             "best_pf", "best_robustness_v2", "best_ret_cv", "best_trade_count",
                             "best_zero_trade_share", "overlay_vetoed_signal_share", "dsr",
                             "pbo", "fluke_risk"]), "",
        "`recommendation_label` applies fixed thresholds to each row; the verdicts above rank "
        "the rows by final_rank_score, so the two can differ. `best_zero_trade_share` is the "
        "share of the grid's combos that never traded. `dsr` is the Deflated Sharpe Ratio of "
        "the grid's winner given all its combos and `pbo` the Probability of Backtest "
        "Overfitting: a high PBO means the grid's winner is likely a fluke.", "",
        "## Walk-forward consistency (baseline vs allow_only)", "",
        f"Status {wf['status']}, {wf['split_count']} common split(s), score "
        f"{'null' if wfc is None else f'{wfc:.1f}'}."
        + (" With no common split there is nothing to judge: the score is null and the "
           "ranking has no walk-forward adjustment." if wfc is None else ""),
    ]  # fmt: skip
    if wf["status"] == "OK":
        lines.append(", ".join(f"{k}={md_value(wf[k])}" for k in wf
                               if k.startswith(("hybrid_wins", "avg_delta"))) + ".")
    lines += ["", "## Key deltas (run - baseline)", ""]
    for name, deltas in summary["key_deltas"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k}={md_value(x) or 'null'}"
                                               for k, x in deltas.items()))
    lines += ["", "## Inputs", ""]
    lines += [f"- {k}: {i['dir']} ({i['how']})" for k, i in summary["inputs"].items()]
    return "\n".join(lines) + "\n"


def _finders(root: Path) -> dict[str, Any]:
    """Discovery of the required inputs, each seeing the folders resolved before it."""
    def grid(mode: str):
        return lambda r: discover.find_grid(
            root, scope_prefix="single-hmm", overlay_mode=mode,
            execution_profile=discover.grid_profile(r["hmm_baseline"]))

    def wf(mode: str):
        return lambda r: discover.find_wf_grid(
            root, source="hmm", overlay_mode=mode,
            execution_profile=discover.grid_profile(r["hmm_baseline"]))

    return {"hmm_baseline": grid("none"), "hmm_allow_only": grid("allow_only"),
            "hmm_block_veto": grid("block_veto"), "wf_hmm_baseline": wf("none"),
            "wf_hmm_hybrid": wf("allow_only")}


def hybrid_eval_report(settings: Settings, dirs: Mapping[str, Path | None], out_root: Path
                       ) -> dict[str, Any]:  # fmt: skip
    """Write ``<out_root>/hybrid-eval-<12hex>_hybrid_eval_v1/`` and return its summary.

    ``dirs`` maps input keys (:data:`INPUT_KEYS`) to folders. Missing required ones are
    discovered under ``settings.artifacts_root``; ``flow_allow_only`` and ``compare_run`` are
    used only when given.
    """
    resolved, inputs = discover.resolve_inputs(dirs, INPUT_KEYS, _finders(settings.artifacts_root))
    run_id, folder = report_folder(out_root, "hybrid-eval", "hybrid_eval_v1", resolved)
    max_ret_cv = settings.backtest_execution_realism.report_max_ret_cv_default
    loaded = Loaded()
    loaded.check_inputs(resolved, [k for k in INPUT_KEYS if k not in OPTIONAL or resolved[k]])
    keys = [k for k in LABELS if k not in OPTIONAL or resolved[k] is not None]
    table = score_runs([_run_row(LABELS[k], resolved[k], loaded) for k in keys], max_ret_cv)
    wf = wf_consistency(resolved["wf_hmm_baseline"], resolved["wf_hmm_hybrid"], loaded)
    ranked, verdicts = final_ranking(table, wf["wf_consistency_score"])
    rows = {r["run_label"]: r for r in ranked.iter_rows(named=True)}
    base = rows.get(LABELS["hmm_baseline"])
    compare = None
    if resolved["compare_run"] is not None:
        compare = loaded.json(resolved["compare_run"] / discover.COMPARE_SUMMARY)
    bad_cells = non_finite_cells(ranked)
    summary: dict[str, Any] = {
        "run_id": run_id, "generated_ts": now(), "inputs": inputs,
        "compared_runs": [{k: r[k] for k in ("run_label", "run_dir", "status")}
                          for r in ranked.iter_rows(named=True)],
        "top_combo_per_run": ranked.to_dicts(),
        "key_deltas": {
            "baseline_vs_allow_only": row_deltas(rows.get(LABELS["hmm_allow_only"]), base,
                                                 _DELTAS),
            "baseline_vs_block_veto": row_deltas(rows.get(LABELS["hmm_block_veto"]), base,
                                                 _DELTAS)},
        "wf_consistency": wf,
        "single_candidate_scores": {r["run_label"]: r["single_candidate_score"]
                                    for r in ranked.iter_rows(named=True)},
        "final_verdicts": verdicts, "decision_logic": _decision_logic(max_ret_cv),
        "compare_run_summary": compare,
        "sanity": {"files_loaded": loaded.files_loaded, "missing_files": loaded.missing_files,
                   "non_finite_cells_detected": bad_cells,
                   "status": "ok" if not loaded.missing_files else "partial"},
    }  # fmt: skip
    names = ("hybrid_eval_summary.json", "hybrid_eval_table.csv", "hybrid_eval_wf_table.csv",
             "hybrid_eval_report.md", "hybrid_eval_report.html")
    summary["output_dir"] = str(folder)
    summary["outputs"] = {n.replace(".", "_"): str(folder / n) for n in names}

    def write(temp: Path) -> None:
        lake.write_csv(ranked, temp / names[1])
        lake.write_csv(pl.DataFrame([finite_json(wf)]), temp / names[2])
        lake.write_text(report_md(summary, ranked, wf), temp / names[3])
        summary["finished_ts"] = now()
        lake.write_json(finite_json(summary), temp / names[0])
        pages.hybrid_eval_html(temp)

    publish(folder, write)
    return finite_json(summary)
