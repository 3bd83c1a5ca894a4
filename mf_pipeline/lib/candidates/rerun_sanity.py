"""Read-only sanity check of a candidate re-run folder (backtest_ops.md §10.5).

``status`` is FAIL when any error fires; warnings never fail. Error names are the spec's;
per-candidate errors read ``<label>: <problem>``. Ours besides the spec: every ``drift_status``
is one of OK / DRIFT_WARN / DRIFT_FAIL / ERROR, and the summary's ``overall_status`` is the worst
of them. A candidate whose re-run failed (``ERROR``) has no backtest by design: it is a warning
here (its status already says it), not a missing-file error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.candidates.drift import STATUSES, worst_status
from mf_pipeline.lib.candidates.rerun import ERROR, MANIFEST, REPORT, RERUN_SUMMARY, TABLE

REQUIRED = (MANIFEST, TABLE, RERUN_SUMMARY, REPORT)
COVERAGE_RATES = ("observed_match_rate", "observed_unknown_rate")
COVERAGE_NUMBERS = ("baseline_match_rate", "observed_match_rate", "baseline_unknown_rate",
                    "observed_unknown_rate", "match_rate_drop_abs",
                    "unknown_rate_increase_abs")  # fmt: skip


def _non_finite_cells(table: pl.DataFrame) -> int:
    """Float cells that are NaN or ±inf (nulls are fine)."""
    return sum(int((table[c].is_nan() | table[c].is_infinite()).fill_null(False).sum())
               for c, t in table.schema.items() if t.is_float())  # fmt: skip


def _candidate_errors(entry: dict[str, Any]) -> list[str]:
    label = entry.get("candidate_label")
    errors = []
    summary = entry.get("backtest_summary_path")
    if not summary or not Path(summary).is_file():
        errors.append(f"{label}: missing backtest summary")
    run_dir = entry.get("backtest_run_dir")
    if not run_dir or not Path(run_dir).is_dir():
        errors.append(f"{label}: missing backtest run dir")
    path = entry.get("coverage_drift_metrics_path")
    if not path or not Path(path).is_file():
        return [*errors, f"{label}: missing coverage drift file"]
    coverage = json.loads(Path(path).read_text())
    for key in COVERAGE_NUMBERS:
        value = coverage.get(key)
        if value is not None and not (isinstance(value, int | float)
                                      and math.isfinite(value)):  # fmt: skip
            errors.append(f"{label}: non-finite coverage metric {key}")
    for key in COVERAGE_RATES:
        value = coverage.get(key)
        if isinstance(value, int | float) and not 0.0 <= value <= 1.0:
            errors.append(f"{label}: {key} outside [0,1]: {value}")
    return errors


def rerun_sanity(rerun_dir: str | Path) -> dict[str, Any]:
    """Check the CRP folder ``rerun_dir``; ``{"status", "errors", "warnings", ...}``."""
    folder = Path(rerun_dir)
    out: dict[str, Any] = {"rerun_dir": str(folder), "errors": [], "warnings": [],
                           "candidate_count": 0, "overall_status": None}  # fmt: skip
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        out["errors"] = [f"missing {name}" for name in missing]
        out["status"] = "FAIL"
        return out
    errors, warnings = out["errors"], out["warnings"]
    manifest = json.loads((folder / MANIFEST).read_text())
    summary = json.loads((folder / RERUN_SUMMARY).read_text())
    table = pl.read_csv(folder / TABLE, infer_schema_length=None)
    out["candidate_count"] = table.height
    out["overall_status"] = summary.get("overall_status")
    if table.is_empty():
        errors.append("empty_rerun_candidates_table")
    elif table["candidate_label"].n_unique() != table.height:
        errors.append("duplicate_candidate_rows_in_table")
    cells = _non_finite_cells(table)
    if cells:
        errors.append(f"non_finite_cells_detected={cells}")
    entries = manifest.get("candidates") or []
    if len(entries) != table.height:
        warnings.append(f"manifest_table_count_mismatch: manifest={len(entries)} "
                        f"table={table.height}")
    for entry in entries:
        if entry.get("drift_status") == ERROR:
            warnings.append(f"{entry.get('candidate_label')}: ERROR "
                            f"{entry.get('error_message')}")
            continue
        errors += _candidate_errors(entry)
    statuses = table["drift_status"].to_list() if "drift_status" in table.columns else []
    bad = sorted({str(s) for s in statuses if s not in STATUSES})
    if bad:
        errors.append(f"unknown_drift_status={','.join(bad)}")
    elif statuses and summary.get("overall_status") != worst_status(statuses):
        errors.append(f"overall_status_mismatch: summary={summary.get('overall_status')} "
                      f"worst={worst_status(statuses)}")
    out["status"] = "FAIL" if errors else "PASS"
    return out
