"""The nightly ops job in Dagster (#22 item 3): the schedule's run request, the failure sensor's
ledger row, and a whole night on a small real lake with a real candidate pack."""

import datetime as dt
import json
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.defs.ops import nightly
from mf_pipeline.lib.ops import ledger
from mf_pipeline.orchestration import runner


def test_schedule_requests_one_night_of_the_job():
    schedule = runner.definitions().resolve_schedule_def("ops_nightly_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 7 * * 1-5",
                                                                      "America/New_York")
    assert schedule.job_name == "ops_nightly"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    tick = dt.datetime(2026, 12, 8, 7, 30, tzinfo=ZoneInfo("America/New_York"))
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        request = nightly.ops_nightly_schedule(context)
    assert request.run_key == "ops_nightly-2026-12-08"
    assert request.tags == {"mf/ops_night": "2026-12-08", "mf/ops_trigger": "schedule"}
    assert request.run_config == {"ops": {"ops_ledger": {"ops": {"ops_update_lake": {
        "config": {}}}}}}
    # late evening in New York is already the next day in UTC: the night is New York's day
    late = dt.datetime(2026, 12, 8, 23, 30, tzinfo=ZoneInfo("America/New_York"))
    with dg.build_schedule_context(scheduled_execution_time=late) as context:
        assert nightly.ops_nightly_schedule(context).tags["mf/ops_night"] == "2026-12-08"
    # the request's config is valid for the job: the night's steps are the graph's three ops
    job = runner.definitions().resolve_job_def("ops_nightly")
    assert dg.validate_run_config(job, request.run_config)
    assert {"ops_update_lake", "ops_candidate_rerun", "ops_write_report"} <= {
        node.name for node in job.all_node_defs}


def test_run_config_carries_only_given_options():
    config = nightly.NightlyConfig(as_of_tag="2024-01-05", keep_last_n=3,
                                   coverage={"min_match_rate_fail": 0.5})
    assert nightly.run_config(config)["ops"]["ops_ledger"]["ops"]["ops_update_lake"] == {
        "config": {"as_of_tag": "2024-01-05", "keep_last_n": 3,
                   "coverage": {"min_match_rate_fail": 0.5}}}


def test_failed_night_is_recorded_by_the_failure_sensor(isolated, tmp_path):
    """A night on a lake without an ML dataset fails in its first step; the sensor (evaluated
    as the daemon would) writes a FAILED row naming that step, once per as-of date."""
    settings = isolated(tmp_path / "raw")
    path = tmp_path / "my_ledger.csv"
    config = nightly.NightlyConfig(update_lake=False, ledger_path=str(path))
    with pytest.raises(runner.RunFailed, match="no ML dataset export") as failed:
        runner.run_asset_job(settings, "ops_nightly", nightly.run_config(config),
                             tags={nightly.TRIGGER_TAG: "test"}, log=lambda _: None)
    instance = runner.instance(settings)
    run = instance.get_run_by_id(failed.value.run_id)
    assert run.job_name == "ops_nightly"
    [failure] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    for _ in range(2):  # a second evaluation (or the CLI's own record) replaces the row
        context = dg.build_run_status_sensor_context(
            sensor_name="ops_nightly_failure_sensor", dagster_instance=instance,
            dagster_run=run, dagster_event=failure.dagster_event).for_run_failure()
        nightly.ops_nightly_failure_sensor(context)
    rows = ledger.read(path)
    created = instance.get_run_record_by_id(run.run_id).create_timestamp
    day = created.astimezone(ZoneInfo("America/New_York")).date()
    expected = day - dt.timedelta(days={0: 3, 6: 2}.get(day.weekday(), 1))
    assert rows.select("as_of_tag", "status", "failed_step", "error", "dagster_run_id").rows() \
        == [(expected.isoformat(), "FAILED", "ops_ledger.ops_update_lake",
             "the lake has no ML dataset export yet: build it first (mf demo, or mf run "
             "--until ml_dataset)", run.run_id)]


def test_rerun_config_is_the_candidate_rerun_assets_config(isolated, tmp_path):
    from mf_pipeline.defs.candidates.config import RerunConfig

    settings = isolated(tmp_path / "raw")
    base = nightly._rerun_config(settings, nightly.NightlyConfig())
    assert base == {"overlay_coverage_mode": "warn_only", "overlay_coverage_bypass": False,
                    "coverage": {}}
    given = nightly._rerun_config(settings, nightly.NightlyConfig(
        pcp_pack_dir="/p", wf_run_dir="/wf", overlay_coverage_mode="strict_fail",
        coverage={"unknown_rate_fail": 0.4}, coverage_drift_warn_drop=0.2, run_micro_grid=True))
    assert given == {"pcp_pack_dir": "/p", "wf_grid_dir": "/wf", "run_micro_grid": True,
                     "overlay_coverage_mode": "strict_fail", "overlay_coverage_bypass": False,
                     "coverage": {"unknown_rate_fail": 0.4}, "coverage_drift_warn_drop": 0.2}
    assert "wf_grid_dir" not in nightly._rerun_config(settings, nightly.NightlyConfig(
        wf_run_dir="/wf", run_wf_check=False))
    RerunConfig(**given)  # every key is a field of the asset's config


@pytest.mark.e2e
def test_nightly_run_on_a_real_lake_writes_and_replaces_its_ledger_row(isolated, tmp_path):
    """A small demo lake with a candidate pack; one appended bar; the night runs as a Dagster
    run of ops_nightly (lake update, re-run at the new last date, report, ledger row), the
    same night again replaces its row; the freshness checks ran in the night."""
    pack_mod = pytest.importorskip("mf_pipeline.lib.candidates.pack")
    pytest.importorskip("mf_pipeline.lib.candidates.rerun")
    from mf_pipeline.lib import ops
    from mf_pipeline.lib.sample import generate_universe
    from mf_pipeline.lib.sample_append import append_one_bar

    raw = tmp_path / "raw"
    generate_universe(raw, n_tickers=12, years=4, seed=5)
    settings = isolated(raw)
    result = CliRunner().invoke(app, ["demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    pack = pack_mod.build_pack(settings, {})
    pack_dir = Path(pack["output_dir"])
    before = ops.lake_last_date(settings)
    assert append_one_bar(raw) > 0

    # the schedule's request for the next weekday, run in process as the daemon would launch it
    # (its default config: the newest pack, the lake's last trade date)
    tick = dt.datetime.combine(dt.date.today() + dt.timedelta(days=1), dt.time(7, 30),
                               ZoneInfo("America/New_York"))
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        request = nightly.ops_nightly_schedule(context)
    outcome = runner.run_asset_job(settings, "ops_nightly", request.run_config,
                                   tags=request.tags, log=lambda _: None)
    after = ops.lake_last_date(settings)
    assert after > before
    meta = outcome.metadata["ops_ledger"]
    assert meta["as_of"] == after.isoformat()
    rows = ledger.read(ledger.ledger_path(settings))
    assert rows["as_of_tag"].to_list() == [after.isoformat()]
    row = rows.row(0, named=True)
    assert row["status"] == "SUCCESS" and row["ops_status"] == meta["ops_status"]
    assert row["dagster_run_id"] == outcome.run_ids[0]
    report_csv = pl.read_csv(Path(meta["ops_run_dir"]) / "ops_report.csv")
    alpha = report_csv.filter(pl.col("candidate_label") == "CANDIDATE_ALPHA").row(0, named=True)
    assert row["alpha_drift_status"] == alpha["drift_status"]
    assert row["alpha_trades"] == alpha["trade_count"]
    instance = runner.instance(settings)
    run = instance.get_run_by_id(outcome.run_ids[0])
    assert run.job_name == "ops_nightly" and run.tags[nightly.AS_OF_TAG] == after.isoformat()
    assert run.tags["mf/ops_trigger"] == "schedule"
    assert Path(meta["pcp_pack_dir"]) == pack_dir
    checks = {e.dagster_event.event_specific_data.check_name
              for e in instance.all_logs(run.run_id,
                                         of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)}
    assert checks == {"lake_fresh", "candidate_rerun_fresh"}

    cli = CliRunner()

    def mf(*args: str) -> dict:
        done = cli.invoke(app, [*args, "--json"], catch_exceptions=False)
        assert done.exit_code == 0, done.output
        return json.loads(done.stdout)

    sanity = mf("ops-nightly-sanity", "--ops-run-dir", meta["ops_run_dir"])
    assert sanity["errors"] == [] and sanity["candidate_count"] == report_csv.height
    assert mf("ops-ledger-view")["rows"][0]["as_of"] == after.isoformat()
    files = sorted(p for p in settings.artifacts_root.rglob("*"))
    plan = mf("ops-nightly-run", "--dry-run", "--keep-last-n", "2")
    assert plan["dry_run"] is True and plan["pcp_pack_dir"] == str(pack_dir)
    assert sorted(p for p in settings.artifacts_root.rglob("*")) == files  # wrote nothing

    # the same night again, from the command line: its row is replaced, never duplicated
    shutil.rmtree(Path(meta["ops_run_dir"]))
    again = mf("ops-nightly-run", "--pcp-pack-dir", str(pack_dir))
    assert again["OPS_STATUS"] == meta["ops_status"] and again["as_of"] == after.isoformat()
    rows = ledger.read(ledger.ledger_path(settings))
    assert rows["as_of_tag"].to_list() == [after.isoformat()]
    assert rows["dagster_run_id"].to_list() == [again["dagster_run_id"]]
    assert again["output_dir"] == meta["ops_run_dir"]  # same inputs, same folder, rewritten

    # a second night (issue #22 acceptance): one more bar, a second ledger row, behaviour
    # unchanged so every candidate is still OK on both nights
    assert append_one_bar(raw) > 0
    second = mf("ops-nightly-run", "--pcp-pack-dir", str(pack_dir))
    rows = ledger.read(ledger.ledger_path(settings)).sort("as_of_tag")
    assert rows["as_of_tag"].to_list() == [after.isoformat(), second["as_of"]]
    assert second["as_of"] > after.isoformat()
    assert set(rows["alpha_drift_status"]) == {"OK"} and set(rows["status"]) == {"SUCCESS"}

    # a planted behaviour change: the market inverts (every price p becomes k / p, so every
    # return changes sign); the locked model reads the new lake, its trades go the wrong way
    _invert_prices(raw)
    assert append_one_bar(raw) > 0
    planted = mf("ops-nightly-run", "--pcp-pack-dir", str(pack_dir))
    assert planted["OPS_STATUS"] == "DRIFT_FAIL"
    report = pl.read_csv(Path(planted["output_dir"]) / "ops_report.csv")
    alpha = report.filter(pl.col("candidate_label") == "CANDIDATE_ALPHA").row(0, named=True)
    assert alpha["drift_status"] == "DRIFT_FAIL"
    drift = _latest_drift_check(instance, planted["as_of"])
    assert drift is not None and not drift.passed
    reasons = str(drift.metadata["CANDIDATE_ALPHA"].value)
    assert "expectancy_drop" in reasons
    rows = ledger.read(ledger.ledger_path(settings))
    assert rows.height == 3
    assert rows.filter(pl.col("as_of_tag") == planted["as_of"])["alpha_drift_status"].item() \
        == "DRIFT_FAIL"  # fmt: skip


def _invert_prices(raw: Path) -> None:
    """Rewrite every sample file with k / price (k = its first close squared): same dates,
    volumes and ranges, every return of the opposite sign."""
    for path in raw.rglob("*.txt"):
        if "_truth" in path.parts:
            continue
        lines = path.read_text().splitlines()
        head, rows = lines[0], [line.split(",") for line in lines[1:] if line]
        k = float(rows[0][7]) ** 2
        out = [head]
        for r in rows:
            o, h, lo, c = (float(x) for x in r[4:8])
            out.append(",".join([*r[:4], f"{k / o:.6f}", f"{k / lo:.6f}", f"{k / h:.6f}",
                                 f"{k / c:.6f}", *r[8:]]))
        path.write_text("\n".join(out) + "\n")


def _latest_drift_check(instance: dg.DagsterInstance, partition: str
                        ) -> dg.AssetCheckEvaluation | None:  # fmt: skip
    """The newest ``candidate_drift`` evaluation of ``partition`` (its run is the night's
    re-run child run)."""
    key = dg.AssetCheckKey(dg.AssetKey("candidate_rerun"), "candidate_drift")
    found = None
    for record in instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION),
            ascending=True):
        data = record.event_log_entry.dagster_event.event_specific_data
        if data.asset_check_key == key and data.partition == partition:
            found = data
    return found
