"""Walk-forward backtest folders (backtest_ops.md §4): ``<artifacts_root>/backtest_walkforward/
wfbt-<digest>/`` with the manifest of the splits' backtest runs and the aggregates.

The folder id is a digest of the source walk-forward folder (or the split list) and the
strategy, so a rerun converges. Each split's three backtests are the ``backtest_<source>``
assets of that split partition (one Dagster run per split); this module only records their
folders and aggregates what they wrote. Fault 29: a split is successful only when at least one
of its models succeeded, and no file is written into the source walk-forward folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.backtest import walkforward as wf
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.run import finite_json, read_summary
from mf_pipeline.lib.steps.research.artifacts import now
from mf_pipeline.lib.steps.validation.options import digest

MANIFEST = "wf_backtest_manifest.json"
MODELS = {"hmm": "HMM", "flow": "FLOW", "cluster": "CLUSTER"}
"""Source → the old tool's model label, in its order."""


def wf_bt_folder(settings: Settings, signature: dict[str, Any]) -> Path:
    return settings.artifacts_root / "backtest_walkforward" / f"wfbt-{digest(signature)}"


def load_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def save_manifest(folder: Path, signature: dict[str, Any], splits: list[dict[str, Any]]
                  ) -> dict[str, Any]:  # fmt: skip
    """``splits``: per split ``train_end``, ``status`` (DONE | FAILED | FAILED_UPSTREAM),
    ``error`` and ``runs`` {source: {"run_dir" | "error"}}."""
    old = load_manifest(folder) or {}
    manifest = {"wf_bt_id": folder.name, "source_wf_run_dir": signature.get("wf_run_dir"),
                "signature": signature, "created_ts": old.get("created_ts") or now(),
                "updated_ts": now(), "splits": splits}  # fmt: skip
    lake.write_json(finite_json(manifest), folder / MANIFEST)
    return manifest


def split_status(runs: dict[str, dict[str, Any]]) -> str:
    """DONE when at least one model produced a run (fault 29), else FAILED_ALL_MODELS."""
    return "DONE" if any(r.get("run_dir") for r in runs.values()) else "FAILED_ALL_MODELS"


def _rows(manifest: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    by_split, overlay_rows = [], []
    for split in manifest["splits"]:
        for source, model in MODELS.items():
            run = (split.get("runs") or {}).get(source)
            if run is None:
                continue
            run_dir = run.get("run_dir")
            summary = read_summary(run_dir) if run_dir else None
            status = wf.SUCCESS if summary else wf.FAILED
            by_split.append(wf.split_row(split["train_end"], model, run_dir, summary, status,
                                         run.get("error")))
            if summary:
                overlay_rows.append(wf.overlay_split_row(split["train_end"], model, summary))
    return by_split, overlay_rows


def write_aggregate(folder: Path) -> dict[str, Any]:
    """The aggregate files of a walk-forward backtest folder from its manifest (§4)."""
    manifest = load_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"{folder} has no {MANIFEST}: run mf backtest-wf-run")
    by_split_rows, overlay_rows = _rows(manifest)
    by_split = wf.by_split_frame(by_split_rows)
    overlay_split = wf.overlay_split_frame(overlay_rows)
    model_summary = wf.model_summary(by_split)
    overlay_source = wf.overlay_source_summary(overlay_split)
    summary = wf.aggregate_summary(manifest, by_split, overlay_split, now())
    for name, frame in (("wf_backtest_by_split", by_split),
                        ("wf_backtest_model_summary", model_summary),
                        ("wf_overlay_split_summary", overlay_split),
                        ("wf_overlay_source_summary", overlay_source),
                        ("wf_overlay_effectiveness_summary", overlay_source)):
        lake.write_csv(frame, folder / f"{name}.csv")
    lake.write_json(finite_json(summary), folder / "wf_backtest_aggregate_summary.json")
    lake.write_text(wf.wf_report_md(summary, by_split, model_summary, overlay_source,
                                    overlay_split), folder / "wf_backtest_report.md")
    return summary


def wf_problems(folder: Path) -> list[str]:
    """What the ``wf_backtest_sanity`` check fails on."""
    problems = [f"missing {name}" for name in (
        MANIFEST, "wf_backtest_by_split.csv", "wf_backtest_model_summary.csv",
        "wf_backtest_aggregate_summary.json", "wf_backtest_report.md")
        if not (folder / name).is_file()]  # fmt: skip
    if problems:
        return problems
    manifest = load_manifest(folder) or {}
    problems += [f"split {s['train_end']}: {s['status']}" for s in manifest.get("splits", [])
                 if s.get("status") != "DONE"]
    by_split = pl.read_csv(folder / "wf_backtest_by_split.csv")
    if by_split.is_empty():
        problems.append("no backtest run in any split")
    return problems
