"""The production candidate pack and its nightly re-run (group ``candidates``).

``production_candidates`` selects CANDIDATE_ALPHA / _EXEC / _EXEC_2 from the HMM grids
(backtest_ops.md §9) and locks what re-decodes new bars (scaler, model, directions, policy,
strategy); its ``production_candidates_sanity`` check is §9.4. ``candidate_rerun`` is
partitioned by the as-of date: each partition decodes the lake with the locked models (forward
filter, no refit), re-runs the locked strategies and measures drift (§10); the
``candidate_drift`` check of that partition fails when a candidate is ``DRIFT_FAIL`` or could
not be re-run (``ERROR``), so a behaviour change shows in the UI without failing the run.
Both assets only wire ``lib/candidates`` to storage.
"""

import datetime as dt
import json
import warnings
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from mf_pipeline.defs.candidates.config import PackConfig, RerunConfig
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.candidates.pack import REPORT as PACK_REPORT
from mf_pipeline.lib.candidates.pack import build_pack, latest_pack
from mf_pipeline.lib.candidates.pack_sanity import pack_sanity
from mf_pipeline.lib.candidates.rerun import MANIFEST, TABLE
from mf_pipeline.lib.candidates.rerun import REPORT as RERUN_REPORT
from mf_pipeline.lib.candidates.rerun import candidate_rerun as run_candidates
from mf_pipeline.orchestration.freshness import latest_materialization
from mf_pipeline.orchestration.planning import ON_DEMAND_TAG

AS_OF_START = "2000-01-01"
AS_OF_DATES = dg.DailyPartitionsDefinition(start_date=AS_OF_START, end_offset=1)
"""One ``candidate_rerun`` partition per as-of date (YYYY-MM-DD), from 2000-01-01 to today
(``end_offset=1`` includes the current day, so a night can re-run the bar of that day)."""

FAILING = ("DRIFT_FAIL", "ERROR")
"""Candidate statuses that fail ``candidate_drift``."""
PACK_KEY = dg.AssetKey("production_candidates")

with warnings.catch_warnings():
    # A check per partition is a Dagster preview feature; without it the UI would show only
    # the latest night's drift, not each as-of date's.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    DRIFT_CHECK = dg.AssetCheckSpec(
        "candidate_drift", asset="candidate_rerun", blocking=False, partitions_def=AS_OF_DATES,
        description="Every locked candidate behaves as when it was locked: fails when one is "
        "DRIFT_FAIL (zero trades, or two drift flags, or failed overlay coverage; §10.2-10.3) "
        "or ERROR (could not be re-run); per-candidate statuses and flags in the metadata.")


@dg.asset(group_name="candidates", io_manager_key="lake_io", kinds={"polars"},
          deps=["backtest_grid", "wf_backtest_grid"], tags={ON_DEMAND_TAG: "true"},
          description="Production candidate pack (backtest_ops.md §9): CANDIDATE_ALPHA from "
          "the plain HMM grid, CANDIDATE_EXEC from the overlay + lite grid, CANDIDATE_EXEC_2 "
          "from the lite grid, with the policy packet, table, summary and report, and under "
          "`locked/` everything needed to re-decode new bars (scaler, model, directions, "
          "policy, strategy, settings fingerprints). Grid folders not given are discovered "
          "by their recorded settings, newest first.",
          check_specs=[dg.AssetCheckSpec("production_candidates_sanity",
                                         asset="production_candidates",
                                         description="Packet, table, summary and report "
                                         "present and consistent (§9.4).")])
def production_candidates(context: dg.AssetExecutionContext, config: PackConfig,
                          settings: PipelineSettings) -> Any:
    summary = build_pack(settings.get(), config.dirs(), min_trades=config.min_trades,
                         include_exec2=config.include_exec2,
                         out_dir=Path(config.out_dir) if config.out_dir else None)
    folder = Path(summary["output_dir"])
    record = {"pack_id": summary["run_id"], "pack_dir": str(folder),
              "selected_labels": summary["selected_labels"], "warnings": summary["warnings"]}
    labels = ", ".join(record["selected_labels"]) or "none"
    context.log.info(f"pack {folder.name}: {labels}")
    yield dg.Output(record, metadata={
        "pack_id": record["pack_id"], "pack_dir": dg.MetadataValue.path(str(folder)),
        "candidates": labels, "candidate_count": len(record["selected_labels"]),
        "warnings": "; ".join(record["warnings"]) or "none",
        "report": dg.MetadataValue.path(str(folder / PACK_REPORT))})
    report = pack_sanity(folder)
    yield dg.AssetCheckResult(
        check_name="production_candidates_sanity", asset_key=PACK_KEY,
        passed=not report["errors"],
        metadata={"errors": "; ".join(report["errors"]) or "none",
                  "warnings": "; ".join(str(w) for w in report["warnings"]) or "none"})


def default_pack(instance: dg.DagsterInstance, artifacts_root: Path) -> Path:
    """The pack of the latest ``production_candidates`` materialization, else the newest pack
    folder by its recorded finish time (FileNotFoundError when there is none)."""
    record = latest_materialization(instance, PACK_KEY, None)
    if record is not None:
        value = record.asset_materialization.metadata.get("pack_dir")
        if value is not None and Path(value.value).is_dir():
            return Path(value.value)
    return latest_pack(artifacts_root)


def drift_by_candidate(rerun_dir: Path) -> dict[str, dict[str, Any]]:
    """Per candidate of a re-run folder: drift status, flags, observed expectancy and the
    error of a candidate that could not be re-run (from its manifest and table)."""
    manifest = json.loads((rerun_dir / MANIFEST).read_text())
    table = pl.read_csv(rerun_dir / TABLE, infer_schema_length=None,
                        columns=["candidate_label", "observed_expectancy"])
    observed = dict(zip(table["candidate_label"], table["observed_expectancy"], strict=True))
    return {c["candidate_label"]: {"drift_status": c["drift_status"],
                                   "drift_flags": list(c.get("drift_flags") or []),
                                   "observed_expectancy": observed.get(c["candidate_label"]),
                                   "error": c.get("error_message")}
            for c in sorted(manifest["candidates"], key=lambda c: c["candidate_label"])}


@dg.asset(group_name="candidates", io_manager_key="lake_io", kinds={"numba", "polars"},
          partitions_def=AS_OF_DATES, deps=["production_candidates"],
          description="Nightly re-run of the locked candidates for one as-of date (backtest_ops"
          ".md §10): the lake's rows up to that date decoded by the locked models (forward "
          "filter, no refit), each locked backtest re-run, drift and coverage drift against "
          "the pack's expected behaviour, optional micro-grid; the `crp-…` folder.",
          check_specs=[DRIFT_CHECK])
def candidate_rerun(context: dg.AssetExecutionContext, config: RerunConfig,
                    settings: PipelineSettings) -> Any:
    s = settings.get()
    as_of = dt.date.fromisoformat(context.partition_key)
    pack = Path(config.pcp_pack_dir) if config.pcp_pack_dir else \
        default_pack(context.instance, s.artifacts_root)  # fmt: skip
    summary = run_candidates(s, pack, as_of, options=config.options(), log=context.log.info)
    candidates = drift_by_candidate(Path(summary["output_dir"]))
    record = {"rerun_id": summary["rerun_id"], "output_dir": summary["output_dir"],
              "as_of": as_of.isoformat(), "pack_dir": str(pack),
              "overall_status": summary["overall_status"], "candidates": candidates}
    statuses = ", ".join(f"{label} {c['drift_status']}" for label, c in candidates.items())
    context.log.info(f"as of {as_of}: {record['overall_status']} ({statuses})")
    yield dg.Output(record, metadata={
        "rerun_id": record["rerun_id"],
        "output_dir": dg.MetadataValue.path(record["output_dir"]),
        "pack_dir": dg.MetadataValue.path(str(pack)), "as_of": record["as_of"],
        "overall_status": record["overall_status"],
        **{f"{label}_status": c["drift_status"] for label, c in candidates.items()},
        **{f"{label}_observed_expectancy": c["observed_expectancy"]
           for label, c in candidates.items() if c["observed_expectancy"] is not None},
        "report": dg.MetadataValue.path(str(Path(record["output_dir"]) / RERUN_REPORT))})
    failing = [label for label, c in candidates.items() if c["drift_status"] in FAILING]
    yield dg.AssetCheckResult(
        check_name="candidate_drift", asset_key=dg.AssetKey("candidate_rerun"),
        passed=not failing,
        description=f"failing: {', '.join(failing)}" if failing else "every candidate OK/WARN",
        metadata={label: f"{c['drift_status']}: "
                         f"{', '.join(c['drift_flags']) or c['error'] or 'no flags'}"
                  for label, c in candidates.items()})
