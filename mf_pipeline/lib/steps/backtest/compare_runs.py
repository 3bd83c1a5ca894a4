"""``mf backtest-compare`` (backtest_ops.md §1.8): one row per run into
``backtest_runs/backtest-compare-<digest of the run folders>/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mf_pipeline.lib import lake
from mf_pipeline.lib.backtest.compare import compare_report_md, compare_rows
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.run import RUNS_DIR, finite_json, read_summary
from mf_pipeline.lib.steps.research.artifacts import now
from mf_pipeline.lib.steps.validation.options import digest


def compare_backtests(settings: Settings, run_dirs: list[str]) -> dict[str, Any]:
    if len(run_dirs) < 2:
        raise ValueError("backtest-compare needs at least two --run-dir")
    dirs = [Path(d).resolve() for d in run_dirs]
    for d in dirs:
        read_summary(d)  # a clear error for an unfinished or wrong folder
    compare_id = "backtest-compare-" + digest(sorted(str(d) for d in dirs))
    folder = settings.artifacts_root / RUNS_DIR / compare_id
    table = compare_rows(dirs)
    summary = {"compare_id": compare_id, "run_dirs": [str(d) for d in dirs],
               "rows": table.to_dicts(), "generated_ts": now()}
    lake.write_csv(table, folder / "backtest_compare_table.csv")
    lake.write_text(compare_report_md(table, summary), folder / "backtest_compare_report.md")
    lake.write_json(finite_json(summary), folder / "backtest_compare_summary.json")
    return {"compare_id": compare_id, "output_dir": str(folder), "runs": len(dirs)}
