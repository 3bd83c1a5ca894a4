"""The walk-forward validation folder (research.md §7): identity, manifest, per-split
records read from the split's validation, QA and policy folders, and the aggregate files.

The folder is ``<artifacts_root>/validation_walkforward/<wf_run_id>/`` where the id is a digest
of EVERYTHING the result depends on (dataset, train ends, model and validation options,
settings groups), not only the eleven values the old signature held, so a changed feature
list or CI level never reuses an old folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.research.artifacts import now
from mf_pipeline.lib.steps.validation import compare_runs
from mf_pipeline.lib.steps.validation.inputs import MODEL_NAMES
from mf_pipeline.lib.steps.validation.options import digest
from mf_pipeline.lib.steps.validation.policy import POLICY_DIR, QA_DIR, read_table
from mf_pipeline.lib.steps.validation.run import read_run
from mf_pipeline.lib.steps.validation.sanity import NAN_TABLES, nan_count
from mf_pipeline.lib.validation import walkforward as wf
from mf_pipeline.lib.validation.policy import PolicyThresholds, recommend_thresholds

MANIFEST = "wf_manifest.json"
SETTINGS_GROUPS = ("research_clustering", "research_hmm", "validation", "cluster_qa",
                   "cluster_hardening", "validation_walkforward")  # fmt: skip


def signature(settings: Settings, dataset: str | None, train_ends: list[str],
              config: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    groups = {g: getattr(settings, g).model_dump(mode="json") for g in SETTINGS_GROUPS}
    return {"dataset_path": dataset, "train_end_list": train_ends, "config": config,
            "settings_digest": digest(groups, 16)}  # fmt: skip


def wf_folder(settings: Settings, sig: dict[str, Any]) -> Path:
    return settings.artifacts_root / "validation_walkforward" / f"wf-{digest(sig)}"


def load_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def save_manifest(folder: Path, sig: dict[str, Any], splits: list[dict[str, Any]],
                  started: str | None = None) -> dict[str, Any]:  # fmt: skip
    old = load_manifest(folder) or {}
    manifest = {"wf_run_id": folder.name, "dataset_path": sig.get("dataset_path"),
                "config": sig, "train_end_list": sig["train_end_list"],
                "started_ts": old.get("started_ts") or started or now(), "updated_ts": now(),
                "splits": splits}  # fmt: skip
    lake.write_json(manifest, folder / MANIFEST)
    return manifest


def _model(validation_dir: str | None) -> dict[str, Any] | None:
    if not validation_dir:
        return None
    folder = Path(validation_dir)
    run = read_run(folder)
    tables = {name: read_table(folder, name) for name in NAN_TABLES.values()}
    out: dict[str, Any] = {
        "validation_run_dir": str(folder), "run_summary": run,
        "validation_scorecard": json.loads((folder / "validation_scorecard.json").read_text()),
        "state_scorecard": tables["state_scorecard"],
        "nan_warning_total": sum(nan_count(t) for t in tables.values()),
        "transition_summary_rows": tables["transition_event_summary"].height,
        "bootstrap_pairwise_rows": tables["bootstrap_pairwise_diff"].height,
    }  # fmt: skip
    flagged = folder / QA_DIR / "cluster_qa_flagged_states.csv"
    if flagged.is_file():
        out["qa_flagged"] = pl.read_csv(flagged, infer_schema_length=None)
    table = folder / POLICY_DIR / "cluster_hardening_state_table.csv"
    if table.is_file():
        out["policy_state_table"] = pl.read_csv(table, infer_schema_length=None)
        out["policy_dir"] = str(folder / POLICY_DIR)
    return out


def split_record_settingsless(split: dict[str, Any]) -> dict[str, Any]:
    """:func:`split_record` without the compares (no settings needed)."""
    return split_record(None, split, compare=False)


def split_record(settings: Settings | None, split: dict[str, Any], compare: bool = True
                 ) -> dict[str, Any]:  # fmt: skip
    """The aggregation record of one manifest split: its three validations, their QA and
    policies, and (``compare``) the HMM-vs-Flow / HMM-vs-Cluster compares (written as
    compare folders)."""
    record = {k: split.get(k) for k in ("train_end", "split_id", "status", "error",
                                        "test_start", "test_end", "common_rows")}
    if split.get("status") != wf.SUCCESS:
        return record
    models = {MODEL_NAMES[src]: _model(split.get(f"val_{src}_dir")) for src in MODEL_NAMES}
    record["models"] = {k: v for k, v in models.items() if v is not None}
    comparisons: dict[str, Any] = {}
    for name, (a, b) in wf.COMPARISONS.items() if compare and settings else ():
        dir_a = split.get(f"val_{a.lower()}_dir")
        dir_b = split.get(f"val_{b.lower()}_dir")
        if dir_a and dir_b:
            out = compare_runs.compare_validations(settings, dir_a, dir_b)
            comparisons[name] = {**out, "comparison_dir": out["output_dir"]}
    record["comparisons"] = comparisons
    return record


def write_aggregate(settings: Settings, folder: Path, manifest: dict[str, Any],
                    thresholds: PolicyThresholds) -> dict[str, Any]:  # fmt: skip
    """Every aggregate file of §7.3–7.5, §8.4 and §9.7 from the manifest's splits."""
    records = [split_record(settings, split) for split in manifest["splits"]]
    long = wf.model_summary_long(records)
    tables = {"wf_model_summary_long.csv": long,
              "wf_model_summary_wide.csv": wf.model_summary_wide(long),
              "wf_comparison_summary.csv": wf.comparison_summary(records),
              "wf_state_metrics_long.csv": wf.state_metrics_long(records),
              "wf_split_runs.csv": wf.split_runs(records)}  # fmt: skip
    for name, table in tables.items():
        lake.write_csv(table, folder / name)
    summary = wf.aggregate_summary(records, long)
    lake.write_json(summary, folder / "wf_aggregate_summary.json")
    lake.write_text(wf.full_report(records, summary, long, _report_config(manifest), folder.name),
                    folder / "wf_full_report.md")
    write_qa_aggregate(folder, records)
    write_policy_aggregate(folder, records, thresholds)
    return summary


def _report_config(manifest: dict[str, Any]) -> dict[str, Any]:
    """The report's Configuration block: dataset, train ends, model and validation options."""
    sig = manifest.get("config") or {}
    config = sig.get("config") or {}
    models = config.get("models") or {}
    return {"dataset": sig.get("dataset_path"), "train_end_list": sig.get("train_end_list"),
            **{f"hmm_{k}": v for k, v in (models.get("hmm_model") or {}).items()
               if k != "dataset_path"},
            **{f"cluster_{k}": v for k, v in (models.get("cluster_model") or {}).items()
               if k != "dataset_path"},
            **(config.get("validation") or {}), "settings_digest": sig.get("settings_digest")}


def write_qa_aggregate(folder: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """§8.4: ``<wf>/cluster_qa/`` from the QA folders of the splits' validations."""
    qa = wf.qa_walkforward(records)
    lake.write_csv(qa.flagged, folder / QA_DIR / "cluster_qa_wf_flagged_states.csv")
    lake.write_csv(qa.issue_frequency, folder / QA_DIR / "cluster_qa_issue_frequency.csv")
    summary = {**qa.summary, "wf_run_dir": str(folder), "wf_run_id": folder.name}
    lake.write_json(summary, folder / QA_DIR / "cluster_qa_wf_summary.json")
    return summary


def write_policy_aggregate(folder: Path, records: list[dict[str, Any]],
                           thresholds: PolicyThresholds) -> dict[str, Any]:  # fmt: skip
    """§9.7: ``<wf>/cluster_hardening/`` from the policy folders of the splits' validations,
    with the threshold recommendation."""
    recommendation = recommend_thresholds(wf.hardening_walkforward(records).state_stats,
                                          thresholds)
    hard = wf.hardening_walkforward(records, recommendation=recommendation)
    target = folder / POLICY_DIR
    lake.write_csv(hard.split_counts, target / "cluster_hardening_wf_split_counts.csv")
    lake.write_csv(hard.state_stats.with_columns(pl.col(pl.List(pl.String)).list.join(",")),
                   target / "cluster_hardening_wf_state_stats.csv")
    lake.write_csv(hard.issue_frequency, target / "cluster_hardening_wf_issue_frequency.csv")
    lake.write_json(recommendation, target / "cluster_hardening_threshold_recommendation.json")
    summary = {**hard.summary, "wf_run_dir": str(folder), "wf_run_id": folder.name}
    lake.write_json(summary, target / "cluster_hardening_wf_summary.json")
    return summary
