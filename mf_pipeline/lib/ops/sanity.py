"""``ops-nightly-sanity`` (backtest_ops.md §11.2): is one night's ops folder whole and true?

The spec names what is printed but not the checks (the old tool never committed them); these
are ours: the five artifacts exist, the report has one row per candidate and no NaN/−inf cell
(a +inf profit factor is a real value: no losing trade), the night's status is the worst of its
candidates', the linked candidate re-run folder exists, and the ledger holds the night's row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.ops import ledger
from mf_pipeline.lib.ops.report import ARTIFACTS, worst_status

_INF = float("inf")


def non_finite_cells(table: pl.DataFrame) -> int:
    """NaN and ±inf cells of the float columns, +inf ``profit_factor`` excepted."""
    count = 0
    for name, dtype in table.schema.items():
        if dtype.is_float():
            bad = table[name].is_nan() | table[name].is_infinite()
            if name == "profit_factor":
                bad = bad & (table[name] != _INF)
            count += int(bad.fill_null(False).sum())
    return count


def summarize_ops_run(ops_run_dir: Path, ledger_path: Path) -> dict[str, Any]:
    """The sanity record of ``ops_run_dir``: errors (the command exits 1 on any), warnings,
    counts, and the artifact paths."""
    paths = {key: ops_run_dir / name for key, name in ARTIFACTS.items()}
    out: dict[str, Any] = {"ops_run_dir": str(ops_run_dir), "ops_status": None,
                           "candidate_count": 0, "non_finite_cells": 0, "warnings": [],
                           "errors": [], "artifacts": {**{k: str(v) for k, v in paths.items()},
                                                       "ledger": str(ledger_path)}}
    errors, warnings = out["errors"], out["warnings"]
    errors += [f"missing_{key}" for key, path in paths.items() if not path.is_file()]
    if errors:
        return out
    summary = json.loads(paths["summary"].read_text())
    table = pl.read_csv(paths["report_csv"], infer_schema_length=None)
    out["ops_status"] = summary.get("ops_status")
    out["candidate_count"] = table.height
    out["non_finite_cells"] = non_finite_cells(table)
    if table.is_empty():
        errors.append("empty_ops_report")
    if table["candidate_label"].is_duplicated().any():
        errors.append("duplicate_candidate_rows_in_report")
    if out["non_finite_cells"]:
        errors.append(f"non_finite_cells_detected={out['non_finite_cells']}")
    if table.height and summary.get("ops_status") != worst_status(table["drift_status"]):
        errors.append(f"ops_status_mismatch: summary {summary.get('ops_status')}, worst "
                      f"candidate {worst_status(table['drift_status'])}")
    if summary.get("candidate_count") != table.height:
        warnings.append(f"candidate_count_mismatch: summary {summary.get('candidate_count')}, "
                        f"report {table.height}")
    pointer = ops_run_dir / "crp_rerun_dir.txt"
    crp = Path(pointer.read_text().strip()) if pointer.is_file() else None
    if crp is None or not (crp / "rerun_summary.json").is_file():
        errors.append(f"missing_crp_rerun_dir: {crp}")
    wf_enabled = (summary.get("wf") or {}).get("enabled")
    if wf_enabled and not (ops_run_dir / "wf_check_dir.txt").is_file():
        errors.append("missing_wf_check_dir_pointer")
    rows = ledger.read(ledger_path).filter(pl.col("as_of_tag") == summary.get("as_of_tag"))
    if rows.is_empty():
        errors.append(f"ledger_row_missing: no row for as_of {summary.get('as_of_tag')} in "
                      f"{ledger_path}")
    elif rows["ops_run_id"][0] != summary.get("ops_run_id"):
        warnings.append(f"ledger_row_replaced: the row of {summary.get('as_of_tag')} is now "
                        f"{rows['ops_run_id'][0]} ({rows['status'][0]}), a later run")
    return out
