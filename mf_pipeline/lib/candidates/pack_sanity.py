"""Sanity of a production candidate pack folder (backtest_ops.md §9.4, plus the locked models).

Errors: a missing pack file (then nothing else is checked), an empty packet, and per candidate
a non-positive trade count, a missing combo id or source grid folder, a missing overlay or
execution-realism block or mode, and ours: a missing ``locked_dir`` or a file the packet lists
for it that is absent or whose SHA-256 differs (the locked model is what a re-run decodes with,
so a changed file is as bad as a missing one). Warnings: table rows ≠ candidates, and the
summary's warnings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.candidates.pack import FILES, PACKET, SUMMARY, TABLE, file_hashes


def _locked_errors(pack_dir: Path, label: str, cand: dict[str, Any]) -> list[str]:
    relative = cand.get("locked_dir")
    if not relative:
        return [f"{label}: locked_dir missing"]
    locked = pack_dir / relative
    if not locked.is_dir():
        return [f"{label}: locked_dir missing -> {locked}"]
    files = cand.get("locked_files") or {}
    if not files:
        return [f"{label}: no locked files listed in the packet"]
    actual = file_hashes(locked)
    errors = []
    for name, sha in sorted(files.items()):
        if name not in actual:
            errors.append(f"{label}: locked file missing -> {locked / name}")
        elif actual[name] != sha:
            errors.append(f"{label}: locked file changed since the pack was built -> "
                          f"{locked / name}")
    return errors


def _candidate_errors(pack_dir: Path, label: str, cand: dict[str, Any]) -> list[str]:
    errors = []
    snapshot = cand.get("expected_behavior_snapshot") or {}
    if not (snapshot.get("trade_count") or 0) > 0:
        errors.append(f"{label}: trade_count must be > 0")
    if not cand.get("combo_id"):
        errors.append(f"{label}: combo_id missing")
    grid = cand.get("selected_from_grid_dir")
    if not grid or not Path(grid).is_dir():
        errors.append(f"{label}: selected_from_grid_dir missing -> {grid}")
    overlay = cand.get("overlay")
    if not isinstance(overlay, dict):
        errors.append(f"{label}: overlay block missing")
    elif overlay.get("enabled") and not overlay.get("mode"):
        errors.append(f"{label}: overlay enabled but mode missing")
    realism = cand.get("execution_realism")
    if not isinstance(realism, dict):
        errors.append(f"{label}: execution_realism block missing")
    elif not realism.get("profile"):
        errors.append(f"{label}: execution profile missing")
    return errors + _locked_errors(pack_dir, label, cand)


def pack_sanity(pack_dir: Path) -> dict[str, Any]:
    """``{pack_dir, status (OK|WARN|FAIL), errors, warnings, candidate_count}``."""
    pack_dir = Path(pack_dir)
    errors = [f"missing file: {pack_dir / name}" for name in FILES
              if not (pack_dir / name).is_file()]  # fmt: skip
    warnings: list[str] = []
    count = 0
    if not errors:
        packet = json.loads((pack_dir / PACKET).read_text())
        candidates = packet.get("candidates") or {}
        count = len(candidates)
        if not candidates:
            errors.append("no_candidates_in_policy_packet")
        for label in sorted(candidates):
            errors += _candidate_errors(pack_dir, label, candidates[label])
        rows = pl.read_csv(pack_dir / TABLE, infer_schema_length=None).height
        if rows != count:
            warnings.append(f"table_row_count_mismatch: table={rows} packet={count}")
        warnings += json.loads((pack_dir / SUMMARY).read_text()).get("warnings") or []
    status = "FAIL" if errors else "WARN" if warnings else "OK"
    return {"pack_dir": str(pack_dir), "status": status, "errors": errors,
            "warnings": warnings, "candidate_count": count}  # fmt: skip
