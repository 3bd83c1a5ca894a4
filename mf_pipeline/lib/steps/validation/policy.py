"""Cluster QA and state hardening of one validation run folder (research.md §8.3, §9.6).

QA labels reach the policy explicitly (the old hardening silently used them only when
``cluster-qa-run`` had happened to run first): :func:`policy_run` always computes the QA of
the same folder with the thresholds given. Outputs are reused only when their recorded
``config_digest`` matches the thresholds and inputs of this call.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.research.artifacts import now
from mf_pipeline.lib.steps.validation.options import digest
from mf_pipeline.lib.steps.validation.run import read_run
from mf_pipeline.lib.validation.policy import (
    PolicyThresholds,
    export_rows,
    export_summary,
    harden,
)
from mf_pipeline.lib.validation.qa import QaThresholds, cluster_qa

QA_DIR, POLICY_DIR = "cluster_qa", "cluster_hardening"
POLICY_FILE = "cluster_hardening_policy.json"


def _with(base: Any, overrides: dict[str, Any]) -> Any:
    """``base`` (a thresholds dataclass) with the non-None ``overrides`` it has fields for."""
    names = {f.name for f in fields(base)}
    return replace(base, **{k: v for k, v in overrides.items() if v is not None and k in names})


def qa_thresholds(settings: Settings, **overrides: Any) -> QaThresholds:
    return _with(QaThresholds.from_settings(settings.cluster_qa), overrides)


def policy_thresholds(settings: Settings, **overrides: Any) -> PolicyThresholds:
    return _with(PolicyThresholds.from_settings(settings.cluster_hardening), overrides)


def read_table(folder: Path, name: str) -> pl.DataFrame:
    """A table of a validation run folder (Parquet, else CSV)."""
    path = folder / f"{name}.parquet"
    if path.is_file():
        return pl.read_parquet(path)
    csv = folder / f"{name}.csv"
    if csv.is_file():
        return pl.read_csv(csv, try_parse_dates=True)
    raise FileNotFoundError(f"{folder} has no {name}.parquet/.csv: not a validation run folder")


def run_tables(folder: Path) -> dict[str, pl.DataFrame]:
    read_run(folder)  # a finished run, or a clear error
    return {name: read_table(folder, name) for name in
            ("state_scorecard", "rolling_state_metrics", "transition_event_summary")}


def qa_run(validation_dir: str | Path, thresholds: QaThresholds,
           out_dir: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """QA flags of one validation folder → ``<folder>/cluster_qa/`` (spec §8.3)."""
    folder = Path(validation_dir)
    t = run_tables(folder)
    result = cluster_qa(t["state_scorecard"], t["rolling_state_metrics"],
                        t["transition_event_summary"], thresholds)
    out_dir = out_dir or folder / QA_DIR
    scorecard = json.loads((folder / "validation_scorecard.json").read_text())
    summary = {"generated_ts": now(), "validation_run_dir": str(folder), **result.summary,
               "validation_scorecard": scorecard, "config_digest": digest(asdict(thresholds))}
    paths = {
        "summary": lake.write_json(summary, out_dir / "cluster_qa_summary.json"),
        "flagged": lake.write_csv(result.flagged, out_dir / "cluster_qa_flagged_states.csv"),
        "windows": lake.write_csv(result.windows, out_dir / "cluster_qa_state_windows.csv"),
        "report": lake.write_text(qa_report(summary, result.flagged),
                                  out_dir / "cluster_qa_report.md"),
    }  # fmt: skip
    return {"output_dir": str(out_dir), "summary": summary, "flagged": result.flagged,
            "labels": {int(k): list(v) for k, v in result.labels.items()},
            **{f"{k}_path": str(v) for k, v in paths.items()}}


def policy_run(validation_dir: str | Path, qa: QaThresholds, thresholds: PolicyThresholds, *,
               qa_labels: dict[int, list[str]] | None = None,
               extra_labels: dict[int, list[str]] | None = None,
               rows_file: str | Path | None = None, export_filtered: bool = True,
               force: bool = False, out_dir: Path | None = None,
               parquet: Any = None) -> dict[str, Any]:  # fmt: skip
    """Hardening of one validation folder → ``<folder>/cluster_hardening/`` (spec §9.6), with
    the optional exports of the state-labelled rows joined to their policy. ``qa_labels``: the
    QA flags of the same folder (the ``cluster_qa_*`` asset's); None computes them here."""
    folder = Path(validation_dir)
    out_dir = out_dir or folder / POLICY_DIR
    run = read_run(folder)
    state_col = run.get("state_column") or "state_id"
    rows_path = Path(rows_file) if rows_file else _rows_file(run)
    # the run's finish time too: a validation rerun into the same folder (same id, e.g. after
    # a code change) must not be answered with the policy of its previous contents
    key = digest({"qa": asdict(qa), "policy": asdict(thresholds), "run": run["run_id"],
                  "finished": run.get("finished_ts"),
                  "labels": extra_labels or {}, "given": qa_labels,
                  "export": bool(export_filtered and rows_path),
                  "rows": str(rows_path)})  # fmt: skip
    existing = out_dir / POLICY_FILE
    if not force and existing.is_file():
        old = json.loads(existing.read_text())
        if old.get("config_digest") == key:
            return {"output_dir": str(out_dir), "reused": True, "policy": old,
                    "summary": old.get("summary", {})}
    if qa_labels is None:
        qa_labels = qa_run(folder, qa)["labels"]
    extra = extra_labels or {}
    labels = {s: sorted(set(qa_labels.get(s, [])) | set(extra.get(s, [])))
              for s in set(qa_labels) | set(extra)}
    t = run_tables(folder)
    result = harden(t["state_scorecard"], t["rolling_state_metrics"],
                    t["transition_event_summary"], labels, thresholds)
    policy = {"generated_ts": now(), "validation_run_dir": str(folder), **result.policy,
              "config_digest": key, "in_sample": run.get("in_sample"),
              "state_column": state_col}  # fmt: skip
    out: dict[str, Any] = {"output_dir": str(out_dir), "reused": False, "policy": policy,
                           "summary": result.summary, "state_table": result.state_table}
    lake.write_csv(result.state_table, out_dir / "cluster_hardening_state_table.csv")
    lake.write_json(result.summary, out_dir / "cluster_hardening_summary.json")
    export = None
    if export_filtered and rows_path is not None and rows_path.is_file():
        export = _export(rows_path, result.state_table, state_col, out_dir, parquet)
        out["export_summary"] = export
    lake.write_text(policy_report(policy, result.state_table, export),
                    out_dir / "cluster_hardening_report.md")
    lake.write_json(policy, existing)  # last: the folder is complete
    return out


def _rows_file(run: dict[str, Any]) -> Path | None:
    name = run.get("rows_file") or run.get("input_file")
    return Path(name) if name and Path(name).is_file() else None


def _export(rows_path: Path, state_table: pl.DataFrame, state_col: str, out_dir: Path,
            parquet: Any) -> dict[str, Any]:  # fmt: skip
    """``exports/``: every row with its state's policy, the ALLOW and WATCH rows, counts."""
    rows = pl.read_parquet(rows_path) if rows_path.suffix == ".parquet" else \
        pl.read_csv(rows_path, try_parse_dates=True)  # fmt: skip
    frames = export_rows(rows, state_table, state_col)
    target = out_dir / "exports"
    outputs = {name: str(lake.write_parquet(frames[name], target / f"clustered_rows_{name}.parquet",
                                            parquet))
               for name in ("with_policy", "tradable", "watch")}  # fmt: skip
    outputs["by_state"] = str(lake.write_csv(frames["by_state"],
                                             target / "cluster_hardening_export_by_state.csv"))
    summary = {"clustered_rows_file": str(rows_path), **export_summary(rows.height, frames),
               "outputs": outputs}  # fmt: skip
    lake.write_json(summary, target / "cluster_hardening_export_summary.json")
    return summary


def _md_table(frame: pl.DataFrame, columns: list[str], limit: int = 50) -> str:
    cols = [c for c in columns if c in frame.columns]
    if not cols or frame.is_empty():
        return "_none_\n"
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.select(cols).head(limit).iter_rows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "/") if value is not None else ""


def qa_report(summary: dict[str, Any], flagged: pl.DataFrame) -> str:
    return (f"# Cluster QA\n\nValidation run: `{summary['validation_run_dir']}`\n\n"
            f"- states: {summary.get('states_total')}, flagged: {summary.get('states_flagged')}\n"
            f"- issue counts: {summary.get('issue_counts')}\n\n## Flagged states\n\n"
            + _md_table(flagged, ["state_id", "n_rows", "state_share_mean", "ret_mean_cv",
                                  "ci_width", "stability_sign_consistency", "issues"])
            + "\n- A flag is a reason to look, not a verdict; the policy weighs them.\n"
            "- Thresholds are absolute where the old tool's were relative (docs/VALIDATION.md).\n")


def policy_report(policy: dict[str, Any], table: pl.DataFrame,
                  export: dict[str, Any] | None) -> str:  # fmt: skip
    s = policy.get("summary", {})
    text = (f"# State policy (hardening)\n\nValidation run: `{policy['validation_run_dir']}`"
            f"{' (IN-SAMPLE)' if policy.get('in_sample') else ''}\n\n"
            f"- ALLOW {s.get('allow_count')}, WATCH {s.get('watch_count')}, "
            f"BLOCK {s.get('block_count')}\n\n## States\n\n"
            + _md_table(table, ["state_id", "class_label", "allow_direction_hint",
                                "tradability_score", "fwd_ret_10_mean", "edge_p_adjusted",
                                "n_rows", "reasons"]))
    if export:
        text += f"\n## Export\n\n- rows: {export.get('source_rows')}, tradable: " \
                f"{export.get('tradable_rows')}, watch: {export.get('watch_rows')}\n"
    return text + ("\n- Use ALLOW states (long or short as hinted); their edge survived the "
                   "Holm correction.\n- WATCH states are for research only.\n"
                   "- Exclude BLOCK states.\n")
