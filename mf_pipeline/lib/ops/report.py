"""The nightly ops run folder (backtest_ops.md §11.1): what one night's candidate re-run said.

Built from the candidate re-run folder's own files (§10.4: ``rerun_summary.json``,
``rerun_manifest.json``, ``rerun_candidates_table.csv``), so it reads the same whoever ran the
re-run. The folder ``<artifacts_root>/ops_runs/ops-<12hex>_nightly_ops_v1/`` is named by a digest
of the re-run folder and the as-of date: running a night again rewrites the same folder.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake, reports
from mf_pipeline.lib.ops.ledger import CANDIDATE_PREFIXES, SUCCESS
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.run import finite_json

VERSION = "nightly_ops_v1"
STATUS_ORDER = ("OK", "DRIFT_WARN", "DRIFT_FAIL", "ERROR")
"""Candidate statuses from best to worst; a night's ``ops_status`` is the worst of its
candidates' (an ERROR candidate is worse than a drifting one: nothing is known about it)."""
REPORT_COLUMNS = ["candidate_label", "drift_status", "expectancy", "profit_factor", "ret_cv",
                  "trade_count", "coverage_status", "coverage_drift_status"]  # fmt: skip
ARTIFACTS = {"manifest": "ops_manifest.json", "summary": "ops_summary.json",
             "report": "ops_report.md", "report_csv": "ops_report.csv",
             "warnings": "ops_warnings.json"}  # fmt: skip


def now_ts() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def worst_status(statuses: Iterable[str | None]) -> str:
    """The worst of ``statuses`` in :data:`STATUS_ORDER`; an unknown or missing one is ERROR,
    and no candidate at all is ERROR too (a night that checked nothing is not OK)."""
    ranks = [STATUS_ORDER.index(s) if s in STATUS_ORDER else len(STATUS_ORDER) - 1
             for s in statuses]
    return STATUS_ORDER[max(ranks)] if ranks else "ERROR"


def ops_root(settings: Settings) -> Path:
    return settings.artifacts_root / "ops_runs"


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _coverage_status(summary_path: str | None) -> str | None:
    """The re-run backtest's overlay coverage verdict (null when the overlay was off)."""
    summary = _json(Path(summary_path)) if summary_path else {}
    return (summary.get("overlay") or {}).get("overlay_coverage_status")


def candidate_table(crp_dir: Path) -> pl.DataFrame:
    """One row per candidate of the re-run (sorted by label): the columns of ``ops_report.csv``
    plus the observed overlay match rate the ledger keeps for the exec candidate."""
    table = pl.read_csv(crp_dir / "rerun_candidates_table.csv", infer_schema_length=None)
    manifest = _json(crp_dir / "rerun_manifest.json")
    coverage = {c.get("candidate_label"): _coverage_status(c.get("backtest_summary_path"))
                for c in manifest.get("candidates", [])}

    def column(name: str, dtype: pl.DataType) -> pl.Expr:
        return (pl.col(name) if name in table.columns else pl.lit(None)).cast(dtype)

    return table.select(
        pl.col("candidate_label").cast(pl.String),
        column("drift_status", pl.String),
        column("observed_expectancy", pl.Float64).alias("expectancy"),
        column("observed_profit_factor", pl.Float64).alias("profit_factor"),
        column("observed_ret_cv", pl.Float64).alias("ret_cv"),
        column("observed_trade_count", pl.Float64).cast(pl.Int64).alias("trade_count"),
        pl.col("candidate_label").replace_strict(coverage, default=None, return_dtype=pl.String)
        .alias("coverage_status"),
        column("coverage_drift_status", pl.String),
        column("observed_overlay_match_rate", pl.Float64).alias("overlay_match_rate"),
    ).sort("candidate_label")


def _wf_block(crp_dir: Path, crp_summary: Mapping[str, Any]) -> dict[str, Any]:
    """The walk-forward check of the re-run: enabled, candidates with a WF grid, and the splits
    that succeeded (the sum of ``splits_covered`` over the WF single-combo rows)."""
    wf = dict(crp_summary.get("wf") or {})
    csv = wf.get("wf_single_combo_summary_csv") or crp_dir / "wf_single_combo_summary.csv"
    success = None
    if wf.get("enabled") and Path(csv).is_file():
        rows = pl.read_csv(csv)
        if "splits_covered" in rows.columns:
            success = int(rows["splits_covered"].fill_null(0).sum())
    return {"enabled": bool(wf.get("enabled")), "candidates_with_wf": wf.get("candidates_with_wf"),
            "split_count_success": success}


def _markdown(summary: Mapping[str, Any], table: pl.DataFrame) -> str:
    lines = [f"# Nightly ops {summary['ops_run_id']}", "",
             f"- as of: {summary['as_of_tag']}", f"- ops status: **{summary['ops_status']}**",
             f"- candidate pack: {summary['pcp_pack_dir']}",
             f"- candidate re-run: {summary['crp_rerun_dir']}",
             f"- lake last trade date: {summary.get('lake_last_date')}",
             f"- Dagster run: {summary.get('dagster_run_id')}", "", "## Candidates", "",
             reports.md_table(table, REPORT_COLUMNS), ""]
    wf = summary["wf"]
    if wf["enabled"]:
        lines += ["## Walk-forward check", "",
                  f"candidates with WF: {wf['candidates_with_wf']}; successful splits: "
                  f"{wf['split_count_success']}", ""]
    lines += ["## Warnings", "", *(f"- {w}" for w in summary["warnings"] or ["none"]), ""]
    return "\n".join(lines)


def write_ops_run(settings: Settings, crp_dir: Path, as_of: str, *, started_ts: str,
                  dagster_run_id: str | None = None, lake_update: Mapping[str, Any] | None = None,
                  warnings: Sequence[str] = ()) -> dict[str, Any]:
    """Write the ops folder of one night from the re-run folder ``crp_dir``; returns its
    summary (with ``ops_run_dir``). ``lake_update`` is what the lake step did (run ids, last
    trade date), recorded in the manifest."""
    crp_summary = _json(crp_dir / "rerun_summary.json")
    crp_manifest = _json(crp_dir / "rerun_manifest.json")
    table = candidate_table(crp_dir)
    pack_dir = crp_manifest.get("pcp_pack_dir")
    ops_id, folder = reports.report_folder(ops_root(settings), "ops", VERSION,
                                           {"crp_rerun_dir": crp_dir, "as_of": Path(as_of)})
    all_warnings = [*warnings, *(crp_summary.get("warnings") or [])]
    summary: dict[str, Any] = {
        "ops_run_id": ops_id, "ops_version": VERSION, "as_of_tag": as_of,
        "ops_status": worst_status(table["drift_status"]),
        "candidate_count": table.height,
        "status_counts": dict(table["drift_status"].fill_null("ERROR").value_counts().rows()),
        "pcp_pack_dir": pack_dir, "pcp_pack_id": Path(pack_dir).name.split("_")[0]
        if pack_dir else None,
        "crp_rerun_id": crp_summary.get("rerun_id") or crp_manifest.get("rerun_id"),
        "crp_rerun_dir": str(crp_dir), "wf": _wf_block(crp_dir, crp_summary),
        "lake_last_date": (lake_update or {}).get("lake_last_date"),
        "dagster_run_id": dagster_run_id, "warnings": all_warnings,
        "started_ts": started_ts, "ops_run_dir": str(folder),
    }
    manifest = {**{k: summary[k] for k in ("ops_run_id", "ops_version", "as_of_tag",
                                           "pcp_pack_dir", "crp_rerun_dir", "dagster_run_id",
                                           "started_ts")},
                "lake_update": dict(lake_update or {}), "artifacts": ARTIFACTS}

    def write(temp: Path) -> None:
        summary["finished_ts"] = manifest["finished_ts"] = now_ts()
        lake.write_json(finite_json(manifest), temp / ARTIFACTS["manifest"])
        lake.write_json(finite_json(summary), temp / ARTIFACTS["summary"])
        lake.write_json(all_warnings, temp / ARTIFACTS["warnings"])
        lake.write_csv(table.select(REPORT_COLUMNS), temp / ARTIFACTS["report_csv"])
        lake.write_text(_markdown(summary, table), temp / ARTIFACTS["report"])
        lake.write_text(f"{crp_dir}\n", temp / "crp_rerun_dir.txt")
        if summary["wf"]["enabled"]:
            lake.write_text(f"{crp_dir}\n", temp / "wf_check_dir.txt")

    reports.publish(folder, write)
    return summary


def ledger_row(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The night's ledger row from its ops summary and ``ops_report.csv``."""
    folder = Path(summary["ops_run_dir"])
    table = candidate_table(Path(summary["crp_rerun_dir"]))
    row: dict[str, Any] = {
        "as_of_tag": summary["as_of_tag"], "ops_run_id": summary["ops_run_id"],
        "ops_status": summary["ops_status"], "built_ts": summary.get("finished_ts") or now_ts(),
        "wf_split_success_count": summary["wf"]["split_count_success"],
        "status": SUCCESS, "dagster_run_id": summary.get("dagster_run_id"),
        "ops_run_dir": str(folder),
    }
    for rec in table.iter_rows(named=True):  # one row per candidate: at most three
        prefix = CANDIDATE_PREFIXES.get(rec["candidate_label"])
        if prefix is None:
            continue
        row |= {f"{prefix}_expectancy": rec["expectancy"], f"{prefix}_pf": rec["profit_factor"],
                f"{prefix}_ret_cv": rec["ret_cv"], f"{prefix}_trades": rec["trade_count"],
                f"{prefix}_drift_status": rec["drift_status"]}
        if prefix == "exec":
            row["exec_overlay_match_rate"] = rec["overlay_match_rate"]
    return row


def prune(settings: Settings, keep_last_n: int, keep: Path | None = None) -> list[Path]:
    """Remove ops folders beyond the ``keep_last_n`` newest by recorded ``finished_ts`` (never
    ``keep``, the folder just written); returns the removed folders."""
    found = [(f, _json(f / ARTIFACTS["summary"]))
             for f in sorted(ops_root(settings).glob(f"ops-*_{VERSION}")) if f.is_dir()]
    # newest first, by the rule of every "latest" folder (lib/reports/discover.newest)
    ordered = [f for f, s in sorted(found, key=lambda c: (str(c[1].get("finished_ts") or ""),
                                                          c[0].name), reverse=True)]
    removed = [f for f in ordered[keep_last_n:] if keep is None or f.resolve() != keep.resolve()]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed
