"""Read-only reports of finished validation, walk-forward and hardening folders
(research.md §6.7, §7.5, §9.8) and the pass/fail rule of the blocking asset checks.

A validation run passes when it finished (``run_summary.json``), judged at least one state,
its scorecard has one row per state, and no numeric cell of its four main tables is NaN
(missing values are null, never NaN: the library turns non-finite values into nulls).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.steps.validation.policy import read_table
from mf_pipeline.lib.steps.validation.run import read_run

NAN_TABLES = {"state_scorecard_nan_count": "state_scorecard",
              "pairwise_nan_count": "bootstrap_pairwise_diff",
              "transition_summary_nan_count": "transition_event_summary",
              "stability_nan_count": "state_stability_summary"}  # fmt: skip


def nan_count(frame: pl.DataFrame) -> int:
    """NaN cells over the float columns (nulls are not NaN)."""
    floats = [c for c, t in frame.schema.items() if t.is_float()]
    if not floats or frame.is_empty():
        return 0
    return int(frame.select(pl.sum_horizontal(pl.col(floats).is_nan().sum())).item())


def _rows(frame: pl.DataFrame, columns: list[str], limit: int) -> list[dict[str, Any]]:
    cols = [c for c in columns if c in frame.columns]
    return frame.select(cols).head(limit).to_dicts()


def validation_sanity(folder: str | Path) -> dict[str, Any]:
    """spec §6.7, plus ``passed`` and ``problems``."""
    folder = Path(folder)
    run = read_run(folder)
    scorecard = json.loads((folder / "validation_scorecard.json").read_text())
    tables = {name: read_table(folder, name) for name in NAN_TABLES.values()}
    states = tables["state_scorecard"]
    nans = {key: nan_count(tables[name]) for key, name in NAN_TABLES.items()}
    stable = tables["state_stability_summary"]
    if "ret_mean_cv" in stable.columns:
        stable = stable.sort("ret_mean_cv", nulls_last=True)
    problems = []
    if run.get("state_count", 0) < 1:
        problems.append("no state was judged")
    if states.height != run.get("state_count"):
        problems.append(f"scorecard has {states.height} rows for {run.get('state_count')} states")
    if sum(nans.values()):
        problems.append(f"{sum(nans.values())} NaN cells")
    return {
        "run_dir": str(folder), "run_id": run["run_id"], "rows": run.get("rows"),
        "in_sample": run.get("in_sample"), "validation_grade": scorecard.get("validation_grade"),
        "top_states": _rows(states.sort("fwd_ret_10_mean", descending=True, nulls_last=True),
                            ["state_id", "n_rows", "fwd_ret_10_mean", "fwd_ret_10_ci_lo",
                             "fwd_ret_10_ci_hi", "confidence_score", "edge_p_adjusted"], 10),
        "pairwise_diff_significant_share": scorecard.get("pairwise_diff_significant_share"),
        "top_transitions": _rows(tables["transition_event_summary"],
                                 ["transition_code", "count_events", "fwd_ret_10_mean"], 10),
        "most_stable_states": _rows(stable, ["state_id", "fwd_ret_10_mean_mean",
                                             "fwd_ret_10_sign_stability", "ret_mean_cv",
                                             "share_cv"], 10),
        **nans, "nan_warning_total": sum(nans.values()),
        "passed": not problems, "problems": problems,
    }  # fmt: skip


def hardening_sanity(folder: str | Path) -> dict[str, Any]:
    """spec §9.8: single-run policy folder or walk-forward hardening folder."""
    folder = Path(folder)
    policy_file = folder / "cluster_hardening_policy.json"
    if policy_file.is_file():
        policy = json.loads(policy_file.read_text())
        table = pl.read_csv(folder / "cluster_hardening_state_table.csv")
        summary = policy.get("summary", {})
        counted = sum(summary.get(k, 0) for k in ("allow_count", "watch_count", "block_count"))
        export = folder / "exports" / "cluster_hardening_export_summary.json"
        problems = [] if counted == table.height else \
            [f"class counts {counted} != {table.height} states"]  # fmt: skip
        return {"mode": "single", "hardening_dir": str(folder),
                "thresholds": policy.get("thresholds"), "summary": summary,
                "rows": table.height,
                "top_states": _rows(table, ["state_id", "class_label", "tradability_score",
                                            "allow_direction_hint", "reasons"], 20),
                "export_summary": json.loads(export.read_text()) if export.is_file() else None,
                "passed": not problems, "problems": problems}  # fmt: skip
    wf_file = folder / "cluster_hardening_wf_summary.json"
    if wf_file.is_file():
        counts = folder / "cluster_hardening_wf_split_counts.csv"
        issues = folder / "cluster_hardening_wf_issue_frequency.csv"
        return {"mode": "walk_forward", "hardening_dir": str(folder),
                "summary": json.loads(wf_file.read_text()),
                "split_counts": pl.read_csv(counts).head(20).to_dicts() if counts.is_file()
                else [],
                "issue_frequency": pl.read_csv(issues).head(20).to_dicts()
                if issues.is_file() and issues.stat().st_size else [],
                "passed": True, "problems": []}  # fmt: skip
    raise FileNotFoundError(f"{folder} has neither cluster_hardening_policy.json nor "
                            "cluster_hardening_wf_summary.json: not a hardening folder")


def wf_sanity(folder: str | Path) -> dict[str, Any]:
    """spec §7.5: ids, split counts, failed splits, wins, per-model means, 30 long rows."""
    folder = Path(folder)
    needed = ("wf_manifest.json", "wf_aggregate_summary.json", "wf_model_summary_long.csv")
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a finished walk-forward run: missing "
                                f"{', '.join(missing)}")
    manifest = json.loads((folder / "wf_manifest.json").read_text())
    agg = json.loads((folder / "wf_aggregate_summary.json").read_text())
    long = pl.read_csv(folder / "wf_model_summary_long.csv")
    means = {model: {k: v for k, v in stats.items() if k.endswith("_mean")}
             for model, stats in (agg.get("aggregate_by_model") or {}).items()}
    problems = [f"split {f.get('train_end')} failed: {f.get('error')}"
                for f in agg.get("failed_splits", [])]
    return {"wf_run_dir": str(folder), "wf_run_id": manifest.get("wf_run_id"),
            "splits_total": agg.get("splits_total"),
            "splits_successful": agg.get("splits_successful"),
            "splits_failed": agg.get("splits_failed"), "failed_splits": agg.get("failed_splits"),
            "wins_by_metric": agg.get("wins_by_metric"), "model_means": means,
            "long_rows": long.head(30).to_dicts(), "passed": not problems,
            "problems": problems}  # fmt: skip
