"""The walk-forward grid's folder (backtest_ops.md §5.8):
``<artifacts_root>/backtest_sensitivity_walkforward/wfgrid-<12hex>/`` with one grid per split
under ``splits/<train_end>/``, a plan written as the splits finish (so a killed run shows how
far it got and a rerun converges to the same folder), and the aggregates of
:mod:`lib.grids.wf_aggregates` with their HTML page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mf_pipeline.lib import lake
from mf_pipeline.lib.grids.wf_aggregates import write_wf_aggregates
from mf_pipeline.lib.reports.pages import wf_grid_html
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.run import finite_json
from mf_pipeline.lib.steps.research.artifacts import now
from mf_pipeline.lib.steps.validation.options import digest

WF_GRIDS_DIR = "backtest_sensitivity_walkforward"
PLAN = "wf_grid_plan.json"
SUCCESS, FAILED, FAILED_UPSTREAM = "SUCCESS", "FAILED", "FAILED_UPSTREAM"


def wf_grid_folder(settings: Settings, signature: dict[str, Any]) -> Path:
    """The folder of a walk-forward grid: a digest of its inputs and options."""
    return settings.artifacts_root / WF_GRIDS_DIR / f"wfgrid-{digest(signature)}"


def split_dir(folder: Path, train_end: str) -> Path:
    return folder / "splits" / train_end


def split_row(train_end: str, status: str, grid_dir: Path | None = None,
              error: str | None = None, summary: dict[str, Any] | None = None
              ) -> dict[str, Any]:  # fmt: skip
    """A by-split row: a split grid with no successful combo counts as FAILED (§5.8)."""
    if status == SUCCESS and summary is not None and not summary.get("successful_combos"):
        failures = summary.get("overlay_coverage_failures") or 0
        status = FAILED
        error = (f"overlay_coverage_strict_fail_all_combos:overlay_coverage_failures={failures}"
                 if failures else "no successful combo")
    return {"train_end": train_end, "status": status,
            "grid_run_dir": str(grid_dir) if grid_dir else None, "error": error}


def save_plan(folder: Path, extra: dict[str, Any], by_split: list[dict[str, Any]]) -> None:
    """Record the run's options and the splits done so far (atomic per write)."""
    folder.mkdir(parents=True, exist_ok=True)
    lake.write_json(finite_json({**extra, "wf_grid_id": folder.name, "splits": by_split}),
                    folder / PLAN)


def aggregate_folder(folder: Path) -> dict[str, Any]:
    """Write every §5.8 file and the HTML report from the folder's plan; the summary."""
    path = folder / PLAN
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a walk-forward grid folder (no {PLAN}): "
                                "run mf backtest-grid-wf-run")
    plan = json.loads(path.read_text())
    by_split = plan.pop("splits")
    dirs = {r["train_end"]: Path(r["grid_run_dir"]) for r in by_split
            if r["status"] == SUCCESS and r.get("grid_run_dir")}
    summary = write_wf_aggregates(folder, by_split, dirs, {**plan, "finished_ts": now()})
    wf_grid_html(folder)
    return summary
