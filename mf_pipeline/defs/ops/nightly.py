"""Nightly operations in Dagster (backtest_ops.md §11): one run per night, every step visible.

``ops_ledger`` is a graph-backed asset of three steps, and the ``ops_nightly`` job materializes
it (one run):

1. ``ops_update_lake`` — the append path of ``mf run --until ml_dataset``: classify the raw
   tree, then manifest → Bronze … features over the shards of the changed tickers → ML dataset.
   The per-ticker layers are shard-partitioned and the ledger is not, and one Dagster run cannot
   hold two partitionings, so this step launches that run itself (through the CLI's runner, the
   same run ``mf run`` makes, its id in the step's log). The as-of date is then the lake's last
   trade date (or the configured one), recorded as the run tag ``mf/ops_as_of``.
2. ``ops_candidate_rerun`` — re-run the locked candidates at that as-of date: a run of the
   ``candidate_rerun`` asset's daily partition (``defs/candidates``; pack = the configured one,
   else that asset's default, the latest ``production_candidates`` materialization), launched
   by this step like the lake run, so the partition and its ``candidate_drift`` check show in
   the UI as for ``mf candidate-rerun-run``.
3. ``ops_write_report`` — the ops folder (``ops_runs/ops-<id>_nightly_ops_v1``), the ledger row
   (replacing that as-of date's row), pruning of old ops folders.

A failed night is written to the ledger by ``ops_nightly_failure_sensor`` (status FAILED, the
failing step and its message). Two freshness checks on ``ops_ledger`` warn when the lake's last
trade date or the last candidate re-run is older than the previous weekday: they run after each
night and, to notice a night that never ran, on their own schedule.
"""

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
from pydantic import Field

from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib import ops
from mf_pipeline.lib.ops import ledger, report
from mf_pipeline.lib.settings import Settings, load_settings
from mf_pipeline.orchestration.planning import ON_DEMAND_TAG

JOB = "ops_nightly"
AS_OF_TAG = "mf/ops_as_of"
NIGHT_TAG = "mf/ops_night"
TRIGGER_TAG = "mf/ops_trigger"
RERUN_ASSET = "candidate_rerun"
_SETTINGS = load_settings().ops_nightly
"""The schedule's cron and timezone are fixed when the code location loads (``ops_nightly.*``)."""


class NightlyConfig(dg.Config):
    """Options of one night (``mf ops-nightly-run`` passes its flags here; the schedule none)."""

    as_of_tag: str | None = Field(None, description="Re-run the candidates at this date "
                                  "(YYYY-MM-DD) instead of the lake's last trade date.")
    update_lake: bool = Field(True, description="Bring the lake up to date first (manifest → "
                              "… → ML dataset for the changed tickers).")
    pcp_pack_dir: str | None = Field(None, description="Candidate pack folder; default: the "
                                     "newest by its recorded finished_ts.")
    wf_run_dir: str | None = Field(None, description="Walk-forward grid folder for the WF check.")
    run_wf_check: bool | None = Field(None, description="Default: ops_nightly.default_wf_enabled "
                                      "when wf_run_dir is given.")
    run_micro_grid: bool | None = None
    overlay_coverage_mode: str | None = Field(None, description="Default: "
                                              "ops_nightly.default_coverage_mode.")
    overlay_coverage_bypass: bool = False
    coverage: dict[str, float] = Field(default_factory=dict, description="Coverage thresholds "
                                       "by their overlay_coverage_policy names.")
    coverage_drift_warn_drop: float | None = None
    coverage_drift_fail_match: float | None = None
    ledger_path: str | None = Field(None, description="Default: ops_nightly.default_ledger_path "
                                    "(relative to the artifacts root).")
    keep_last_n: int | None = Field(None, description="Ops folders kept; default "
                                    "ops_nightly.keep_last_n.")


def run_config(config: NightlyConfig | None = None) -> dict[str, Any]:
    """The ``ops_nightly`` run config for ``config`` (the first step holds the night's options)."""
    values = (config or NightlyConfig()).model_dump(exclude_defaults=True)
    return {"ops": {"ops_ledger": {"ops": {"ops_update_lake": {"config": values}}}}}


def _rerun_config(cfg: Settings, config: NightlyConfig) -> dict[str, Any]:
    """The ``candidate_rerun`` asset's config (``defs/candidates/config.RerunConfig``) for the
    night's options; what is not given is left to that asset's defaults, except the coverage
    mode (``ops_nightly.default_coverage_mode``) and the WF check (on when a WF folder is given
    and ``--run-wf-check`` or ``ops_nightly.default_wf_enabled`` says so)."""
    wf = cfg.ops_nightly.default_wf_enabled if config.run_wf_check is None \
        else config.run_wf_check
    values = {"pcp_pack_dir": config.pcp_pack_dir, "run_micro_grid": config.run_micro_grid,
              "overlay_coverage_mode": config.overlay_coverage_mode
              or cfg.ops_nightly.default_coverage_mode,
              "overlay_coverage_bypass": config.overlay_coverage_bypass,
              "coverage": dict(config.coverage),
              "coverage_drift_warn_drop": config.coverage_drift_warn_drop,
              "coverage_drift_fail_match": config.coverage_drift_fail_match,
              "wf_grid_dir": config.wf_run_dir if wf else None}
    return {k: v for k, v in values.items() if v is not None}


@dg.op(description="Bring the lake up to date (manifest → … → ML dataset, changed tickers "
                   "only) and fix the night's as-of date: the lake's last trade date.")
def ops_update_lake(context: dg.OpExecutionContext, config: NightlyConfig,
                    settings: PipelineSettings) -> dict[str, Any]:
    from mf_pipeline.orchestration import planning, runner

    cfg = settings.get()
    night: dict[str, Any] = {"started_ts": report.now_ts(), "config": config.model_dump(),
                             "lake_run_ids": [], "warnings": []}
    if config.update_lake:
        selection = planning.until(runner.definitions(), "ml_dataset")
        outcome = planning.plan_and_run(cfg, selection, log=context.log.info)
        night["lake_run_ids"] = outcome.run_ids
    last = ops.lake_last_date(cfg)
    if last is None:
        raise dg.Failure("the lake has no ML dataset export yet: build it first (mf demo, or "
                         "mf run --until ml_dataset)", allow_retries=False)
    as_of = dt.date.fromisoformat(config.as_of_tag) if config.as_of_tag else last
    if as_of > last:
        raise dg.Failure(f"as-of {as_of} is after the lake's last trade date {last}",
                         allow_retries=False)
    expected = ops.previous_weekday(ops.local_today(cfg))
    if last < expected:
        night["warnings"].append(f"the lake's last trade date {last} is older than the previous "
                                 f"weekday {expected}: no new bars arrived for it")
    night |= {"as_of": as_of.isoformat(), "lake_last_date": last.isoformat()}
    context.instance.add_run_tags(context.run_id, {AS_OF_TAG: night["as_of"]})
    context.log.info(f"as-of {night['as_of']} (lake last trade date {last})")
    return night


@dg.op(description="Re-run the locked candidates of the candidate pack at the as-of date: "
                   "a run of the candidate_rerun asset's partition (decode with the locked "
                   "models, backtest, drift; its candidate_drift check).")
def ops_candidate_rerun(context: dg.OpExecutionContext, night: dict[str, Any],
                        settings: PipelineSettings) -> dict[str, Any]:
    from mf_pipeline.orchestration import runner

    cfg = settings.get()
    config = NightlyConfig(**night["config"])
    outcome = runner.run_assets(cfg, [RERUN_ASSET], night["as_of"], run_config={
        "ops": {RERUN_ASSET: {"config": _rerun_config(cfg, config)}}}, log=context.log.info)
    meta = outcome.metadata[RERUN_ASSET]
    context.log.info(f"candidate re-run: {meta['output_dir']} ({meta.get('overall_status')})")
    return night | {"pcp_pack_dir": str(meta["pack_dir"]), "crp_dir": str(meta["output_dir"]),
                    "rerun_run_ids": outcome.run_ids}


@dg.op(description="Write the ops folder and the night's ledger row (replacing the row of "
                   "its as-of date); prune old ops folders.")
def ops_write_report(context: dg.OpExecutionContext, night: dict[str, Any],
                     settings: PipelineSettings) -> dict[str, Any]:
    cfg = settings.get()
    config = NightlyConfig(**night["config"])
    summary = report.write_ops_run(
        cfg, Path(night["crp_dir"]), night["as_of"], started_ts=night["started_ts"],
        dagster_run_id=context.run_id, warnings=night["warnings"],
        lake_update={k: night.get(k) for k in ("lake_last_date", "lake_run_ids",
                                               "rerun_run_ids")})
    path = ledger.ledger_path(cfg, config.ledger_path)
    row = report.ledger_row(summary)
    ledger.upsert(path, row)
    removed = report.prune(cfg, config.keep_last_n or cfg.ops_nightly.keep_last_n,
                           keep=Path(summary["ops_run_dir"]))
    for warning in summary["warnings"]:
        context.log.warning(warning)
    context.add_output_metadata({
        "as_of": night["as_of"], "ops_status": summary["ops_status"],
        "ops_run_dir": summary["ops_run_dir"], "ledger_path": str(path),
        "crp_rerun_dir": night["crp_dir"], "pcp_pack_dir": night["pcp_pack_dir"],
        "candidates": {k: v for k, v in row.items() if k.endswith("_drift_status") and v},
        "warnings": len(summary["warnings"]), "pruned_ops_folders": len(removed),
    })
    return row


@dg.graph_asset(
    name="ops_ledger", group_name="ops", tags={ON_DEMAND_TAG: "true"},  # never in mf demo/run
    description="The nightly ops ledger (backtest_ops.md §11): one row per as-of date, written "
                "by the ops_nightly job after updating the lake and re-running the locked "
                "candidates. A night run again replaces its row.",
)
def ops_ledger() -> dict[str, Any]:
    return ops_write_report(ops_candidate_rerun(ops_update_lake()))


ops_nightly_job = dg.define_asset_job(
    JOB, selection=[ops_ledger],
    description="One night: lake update → candidate re-run → ops report and ledger row.")


@dg.schedule(
    name="ops_nightly_schedule", job=ops_nightly_job, cron_schedule=_SETTINGS.cron,
    execution_timezone=_SETTINGS.timezone, default_status=dg.DefaultScheduleStatus.STOPPED,
    description="The nightly ops run on weekdays (ops_nightly.cron in ops_nightly.timezone). "
                "Stopped by default: start it under Automation, with the daemon running "
                "(make ui, or dagster-daemon run).",
)
def ops_nightly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    # the tick's time is in the schedule's timezone: its date is the night's (local) day
    when = context.scheduled_execution_time or dt.datetime.now(ZoneInfo(_SETTINGS.timezone))
    night = when.date().isoformat()
    return dg.RunRequest(run_key=f"{JOB}-{night}", run_config=run_config(),
                         tags={NIGHT_TAG: night, TRIGGER_TAG: "schedule"})


def _first_step_failure(instance: dg.DagsterInstance, run_id: str) -> tuple[str, str]:
    """(step key, the step's own error message) of the run's first failed step."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        error = event.step_failure_data.error if event is not None else None
        while error is not None and error.cls_name.startswith("Dagster") and error.cause:
            error = error.cause
        if error is None:
            return (event.step_key if event else None) or "run", "no error recorded"
        first = error.message.strip().splitlines()[0] if error.message.strip() else ""
        qualified, _, rest = first.partition(": ")  # module.path.Error: text -> Error: text
        if rest and qualified.endswith(error.cls_name):
            first = rest if error.cls_name == "Failure" else f"{error.cls_name}: {rest}"
        return event.step_key or "run", first
    return "run", "the run failed outside any step (launch, resources or config)"


def record_failure(instance: dg.DagsterInstance, settings: Settings, run: dg.DagsterRun
                   ) -> dict[str, Any]:  # fmt: skip
    """Write the FAILED ledger row of a failed ``ops_nightly`` run; returns it. The as-of date
    is the run's ``mf/ops_as_of`` tag (set once the lake step fixed it, or given), else the
    weekday before the run's day in the schedule's timezone (the night it was meant to cover)."""
    step, message = _first_step_failure(instance, run.run_id)
    record = instance.get_run_record_by_id(run.run_id)
    started = record.create_timestamp if record is not None else dt.datetime.now(dt.UTC)
    started = started if started.tzinfo else started.replace(tzinfo=dt.UTC)
    as_of = run.tags.get(AS_OF_TAG) or \
        ops.previous_weekday(ops.local_today(settings, started)).isoformat()
    config = (((run.run_config or {}).get("ops") or {}).get("ops_ledger") or {})
    options = ((config.get("ops") or {}).get("ops_update_lake") or {}).get("config") or {}
    row = {"as_of_tag": as_of, "status": ledger.FAILED, "failed_step": step,
           "error": message, "built_ts": report.now_ts(),
           "dagster_run_id": run.run_id}
    ledger.upsert(ledger.ledger_path(settings, options.get("ledger_path")), row)
    return row


@dg.run_failure_sensor(
    name="ops_nightly_failure_sensor", monitored_jobs=[ops_nightly_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Writes a FAILED row (failing step, message) to the ops ledger when an "
                "ops_nightly run fails.",
)
def ops_nightly_failure_sensor(context: dg.RunFailureSensorContext) -> None:
    row = record_failure(context.instance, load_settings(), context.dagster_run)
    context.log.info(f"ledger: {row['as_of_tag']} FAILED in {row['failed_step']}")


def _fresh(last: dt.date | None, expected: dt.date, what: str) -> dg.AssetCheckResult:
    """Passes when ``last`` is at least ``expected``; a WARN otherwise (nothing blocks)."""
    passed = last is not None and last >= expected
    if last is None:
        text = f"{what}: none yet"
    else:
        text = f"{what} {last} is {'not older than' if passed else 'older than'} the previous " \
               f"weekday {expected}"
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN,
                               description=text, metadata={"last": str(last),
                                                           "expected_at_least": str(expected)})


@dg.asset_check(asset=ops_ledger, name="lake_fresh", description="Warns when the lake's last "
                "trade date is older than the previous weekday (a night without new bars).")
def lake_fresh(settings: PipelineSettings) -> dg.AssetCheckResult:
    cfg = settings.get()
    return _fresh(ops.lake_last_date(cfg), ops.previous_weekday(ops.local_today(cfg)),
                  "the lake's last trade date")


@dg.asset_check(asset=ops_ledger, name="candidate_rerun_fresh", description="Warns when the "
                "last candidate re-run (candidate_rerun partition or successful ledger night) "
                "is older than the previous weekday (a missed night).")
def candidate_rerun_fresh(context: dg.AssetCheckExecutionContext,
                          settings: PipelineSettings) -> dg.AssetCheckResult:
    cfg = settings.get()
    done = set(context.instance.get_materialized_partitions(dg.AssetKey(RERUN_ASSET)))
    rows = ledger.read(ledger.ledger_path(cfg))
    done |= set(rows.filter(pl.col("status") == ledger.SUCCESS)["as_of_tag"].drop_nulls())
    last = max((dt.date.fromisoformat(key) for key in done), default=None)
    return _fresh(last, ops.previous_weekday(ops.local_today(cfg)), "the last candidate re-run")


ops_freshness_job = dg.define_asset_job(
    "ops_freshness", selection=dg.AssetSelection.checks(lake_fresh, candidate_rerun_fresh),
    description="The two freshness checks alone (no run of the night).")


@dg.schedule(
    name="ops_freshness_schedule", job=ops_freshness_job, cron_schedule="0 12 * * 1-5",
    execution_timezone=_SETTINGS.timezone, default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekdays at noon: the freshness checks, so a night that never ran is flagged.",
)
def ops_freshness_schedule(_context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest()
