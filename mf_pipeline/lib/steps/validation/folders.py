"""QA and hardening of folders given by path (``mf cluster-qa-run``/``cluster-hardening-run``
with ``--validation-run-dir`` or ``--wf-run-dir``), as opposed to the split assets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mf_pipeline.lib.steps.validation import policy as policy_step
from mf_pipeline.lib.steps.validation import walkforward as wf_step
from mf_pipeline.lib.validation.policy import PolicyThresholds
from mf_pipeline.lib.validation.qa import QaThresholds

SOURCES = ("hmm", "flow", "cluster")


def qa_folder(validation_dir: str | Path, qa: QaThresholds) -> dict[str, Any]:
    out = policy_step.qa_run(validation_dir, qa)
    s = out["summary"]
    return {"output_dir": out["output_dir"], "states_total": s.get("states_total"),
            "states_flagged": s.get("states_flagged"), "issue_counts": s.get("issue_counts")}


def policy_folder(validation_dir: str | Path, qa: QaThresholds, thresholds: PolicyThresholds,
                  rows_file: str | None, export_filtered: bool, force: bool,
                  parquet: Any) -> dict[str, Any]:  # fmt: skip
    out = policy_step.policy_run(validation_dir, qa, thresholds, rows_file=rows_file,
                                 export_filtered=export_filtered, force=force, parquet=parquet)
    return {"output_dir": out["output_dir"], "reused": out["reused"], **out["summary"],
            "export_summary": out.get("export_summary")}


def _splits(wf_dir: str | Path) -> tuple[Path, list[dict[str, Any]]]:
    folder = Path(wf_dir)
    manifest = wf_step.load_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"{folder} has no {wf_step.MANIFEST}: not a walk-forward run")
    return folder, manifest["splits"]


def _validation_dirs(split: dict[str, Any]) -> list[str]:
    if split.get("status") != "SUCCESS":
        return []
    return [d for d in (split.get(f"val_{src}_dir") for src in SOURCES) if d]


def qa_wf_folder(wf_dir: str | Path, qa: QaThresholds) -> dict[str, Any]:
    """QA of every successful split's validations, then ``<wf>/cluster_qa/`` (§8.4)."""
    folder, splits = _splits(wf_dir)
    for split in splits:
        for validation_dir in _validation_dirs(split):
            policy_step.qa_run(validation_dir, qa)
    records = [wf_step.split_record_settingsless(split) for split in splits]
    summary = wf_step.write_qa_aggregate(folder, records)
    return {"output_dir": str(folder / policy_step.QA_DIR),
            **{k: v for k, v in summary.items() if not isinstance(v, list | dict)}}


def policy_wf_folder(wf_dir: str | Path, qa: QaThresholds, thresholds: PolicyThresholds,
                     force: bool) -> dict[str, Any]:  # fmt: skip
    """Policy of every successful split's validations (QA labels passed in), then
    ``<wf>/cluster_hardening/`` with the threshold recommendation (§9.7)."""
    folder, splits = _splits(wf_dir)
    for split in splits:
        for validation_dir in _validation_dirs(split):
            policy_step.policy_run(validation_dir, qa, thresholds, export_filtered=False,
                                   force=force)
    records = [wf_step.split_record_settingsless(split) for split in splits]
    summary = wf_step.write_policy_aggregate(folder, records, thresholds)
    return {"output_dir": str(folder / policy_step.POLICY_DIR),
            **{k: v for k, v in summary.items() if not isinstance(v, list | dict)}}
