"""Nightly operations (backtest_ops.md §11): ``ops-nightly-run`` launches the ``ops_nightly``
job (one Dagster run: lake update → candidate re-run → ops report and ledger row), the other
commands read its folders and ledger or write the systemd units that run it every weekday."""

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from mf_pipeline.cli.app import AsJson, app, emit, fail, say, settings_of
from mf_pipeline.cli.backtest_commands import OV_BYPASS, OV_COV, RATE

Opt = typer.Option
LEDGER = Annotated[Path | None, Opt(help="Ledger file (default ops_nightly.default_ledger_path, "
                                         "relative to the artifacts root).")]


@app.command("ops-nightly-run")
def ops_nightly_run(
    ctx: typer.Context,
    pcp_pack_dir: Annotated[Path | None, Opt(help="Candidate pack (default: the newest).")] = None,
    wf_run_dir: Annotated[Path | None, Opt(help="Walk-forward grid folder for the WF check.")
                          ] = None,
    as_of_tag: Annotated[str | None, Opt(help="Re-run at this date YYYY-MM-DD (default: the "
                                              "lake's last trade date after the update).")] = None,
    run_wf_check: Annotated[bool | None, Opt("--run-wf-check/--no-run-wf-check", help="Default: "
                                             "on when --wf-run-dir is given.")] = None,
    wf_strict_coverage: Annotated[bool, Opt(help="strict_fail coverage when no mode is given.")
                                  ] = False,
    update_lake: Annotated[bool, Opt("--update-lake/--no-update-lake", help="Bring the lake up "
                                     "to date first (the append path).")] = True,
    run_micro_grid: Annotated[bool | None, Opt("--run-micro-grid/--no-run-micro-grid")] = None,
    ledger_path: LEDGER = None,
    keep_last_n: Annotated[int | None, Opt(min=1, help="Ops folders kept (default "
                                                       "ops_nightly.keep_last_n).")] = None,
    dry_run: Annotated[bool, Opt(help="Print the plan; write nothing.")] = False,
    overlay_coverage_mode: OV_COV = None,
    overlay_coverage_bypass: OV_BYPASS = False,
    overlay_min_match_rate_warn: RATE = None,
    overlay_min_match_rate_fail: RATE = None,
    overlay_min_year_match_rate_warn: RATE = None,
    overlay_min_year_match_rate_fail: RATE = None,
    overlay_unknown_rate_warn: RATE = None,
    overlay_unknown_rate_fail: RATE = None,
    coverage_drift_warn_drop: RATE = None,
    coverage_drift_fail_match: RATE = None,
    as_json: AsJson = False,
) -> None:
    """Run one night as a Dagster run of the ops_nightly job (shown in the UI)."""
    import datetime as dt

    from mf_pipeline.defs.ops import nightly

    settings = settings_of(ctx)
    if as_of_tag is not None:
        try:
            dt.date.fromisoformat(as_of_tag)
        except ValueError:
            fail(f"--as-of-tag must be YYYY-MM-DD, got {as_of_tag!r}")
    thresholds = {"min_match_rate_warn": overlay_min_match_rate_warn,
                  "min_match_rate_fail": overlay_min_match_rate_fail,
                  "min_year_match_rate_warn": overlay_min_year_match_rate_warn,
                  "min_year_match_rate_fail": overlay_min_year_match_rate_fail,
                  "unknown_rate_warn": overlay_unknown_rate_warn,
                  "unknown_rate_fail": overlay_unknown_rate_fail}
    mode = overlay_coverage_mode or ("strict_fail" if wf_strict_coverage else None)
    config = nightly.NightlyConfig(
        as_of_tag=as_of_tag, update_lake=update_lake,
        pcp_pack_dir=str(pcp_pack_dir) if pcp_pack_dir else None,
        wf_run_dir=str(wf_run_dir) if wf_run_dir else None, run_wf_check=run_wf_check,
        run_micro_grid=run_micro_grid, overlay_coverage_mode=mode,
        overlay_coverage_bypass=overlay_coverage_bypass,
        coverage={k: v for k, v in thresholds.items() if v is not None},
        coverage_drift_warn_drop=coverage_drift_warn_drop,
        coverage_drift_fail_match=coverage_drift_fail_match,
        ledger_path=str(ledger_path) if ledger_path else None, keep_last_n=keep_last_n)
    if dry_run:
        emit(_plan(settings, config), as_json)
        return
    _run_night(settings, config, as_json)


def _plan(settings: Any, config: Any) -> dict[str, Any]:
    """What a night would do, from reads only (no Dagster instance is opened)."""
    from mf_pipeline.lib import ops
    from mf_pipeline.lib.ops import ledger

    pack_dir = config.pcp_pack_dir
    if pack_dir is None:
        try:
            from mf_pipeline.lib.candidates.pack import latest_pack

            pack_dir = str(latest_pack(settings.artifacts_root))
        except (ImportError, FileNotFoundError) as error:
            pack_dir = f"none ({error})"
    wf_enabled = bool(config.wf_run_dir) and (settings.ops_nightly.default_wf_enabled
                                              if config.run_wf_check is None
                                              else config.run_wf_check)
    last = ops.lake_last_date(settings)
    return {
        "dry_run": True, "pcp_pack_dir": pack_dir, "wf_run_dir": config.wf_run_dir,
        "wf_enabled": wf_enabled,
        "as_of_tag": config.as_of_tag or f"the lake's last trade date after the update "
                                         f"(now {last})",
        "update_lake": config.update_lake,
        "overlay_coverage_mode": config.overlay_coverage_mode
        or settings.ops_nightly.default_coverage_mode,
        "ledger_path": str(ledger.ledger_path(settings, config.ledger_path)),
        "keep_last_n": config.keep_last_n or settings.ops_nightly.keep_last_n,
        "steps": ["ops_update_lake", "ops_candidate_rerun", "ops_write_report"],
        "action": "no artifacts written",
    }


def _run_night(settings: Any, config: Any, as_json: bool) -> None:
    import polars as pl

    from mf_pipeline.defs.ops import nightly
    from mf_pipeline.orchestration import runner

    tags = {nightly.TRIGGER_TAG: "cli"} | (
        {nightly.AS_OF_TAG: config.as_of_tag} if config.as_of_tag else {})
    try:
        outcome = runner.run_asset_job(settings, nightly.JOB, nightly.run_config(config),
                                       tags=tags, log=say)
    except runner.RunFailed as error:
        instance = runner.instance(settings)
        row = nightly.record_failure(instance, settings, instance.get_run_by_id(error.run_id))
        say(f"ledger: {row['as_of_tag']} recorded as FAILED in {row['failed_step']}")
        fail(str(error), code=1)
    meta = outcome.metadata.get("ops_ledger", {})
    folder = Path(meta["ops_run_dir"])
    summary = json.loads((folder / "ops_summary.json").read_text())
    table = pl.read_csv(folder / "ops_report.csv", infer_schema_length=None)
    payload = {"ops_run_id": summary["ops_run_id"], "output_dir": str(folder),
               "OPS_STATUS": summary["ops_status"], "as_of": summary["as_of_tag"],
               **{k: summary.get(k) for k in ("pcp_pack_id", "pcp_pack_dir", "crp_rerun_id",
                                              "crp_rerun_dir", "wf", "warnings")},
               "candidates": table.to_dicts(), "ledger_path": meta.get("ledger_path"),
               "dagster_run_id": outcome.run_ids[0]}
    emit(payload, as_json)


@app.command("ops-nightly-sanity")
def ops_nightly_sanity(
    ctx: typer.Context,
    ops_run_dir: Annotated[Path, Opt(help="An ops run folder (ops_runs/ops-<id>).")],
    ledger_path: LEDGER = None,
    as_json: AsJson = False,
) -> None:
    """Check one night's ops folder, its linked candidate re-run and its ledger row."""
    from mf_pipeline.lib.ops import ledger
    from mf_pipeline.lib.ops.sanity import summarize_ops_run

    if not ops_run_dir.is_dir():
        fail(f"--ops-run-dir {ops_run_dir} is not a folder")
    out = summarize_ops_run(ops_run_dir, ledger.ledger_path(settings_of(ctx), ledger_path))
    emit(out, as_json)
    if out["errors"]:
        raise typer.Exit(1)


@app.command("ops-ledger-view")
def ops_ledger_view(
    ctx: typer.Context,
    last: Annotated[int, Opt(min=1, help="Newest N nights (by built_ts).")] = 10,
    candidate: Annotated[str | None, Opt(help="CANDIDATE_ALPHA | CANDIDATE_EXEC | "
                                              "CANDIDATE_EXEC_2: that candidate's figures.")
                         ] = None,
    ledger_path: LEDGER = None,
    as_json: AsJson = False,
) -> None:
    """Print the newest nights of the ops ledger."""
    import polars as pl

    from mf_pipeline.lib.ops import ledger

    path = ledger.ledger_path(settings_of(ctx), ledger_path)
    if not path.is_file():
        fail(f"no ledger at {path}: run mf ops-nightly-run first")
    frame = ledger.read(path)
    try:
        rows = ledger.view(frame, last, candidate)
    except ValueError as error:
        fail(str(error))
    payload = {"ledger_path": str(path), "rows_total": frame.height,
               "rows_printed": rows.height, "rows": rows.to_dicts()}
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        emit(payload, as_json, f"{rows}\nledger_path: {path}\nrows_total: {frame.height}\n"
                               f"rows_printed: {rows.height}")


@app.command("ops-nightly-install-timer")
def ops_nightly_install_timer(
    ctx: typer.Context,
    mode: Annotated[str, Opt(help="timer: a systemd timer calling mf ops-nightly-run; daemon: "
                                  "a dagster-daemon service that fires the schedule.")] = "timer",
    wf_run_dir: Annotated[Path | None, Opt(help="Passed to ops-nightly-run (timer mode).")
                          ] = None,
    on_calendar: Annotated[str | None, Opt(help="systemd OnCalendar (default "
                                                "ops_nightly.default_timer_on_calendar).")
                           ] = None,
    out_dir: Annotated[Path | None, Opt(help="Default <project>/configs/systemd.")] = None,
    as_json: AsJson = False,
) -> None:
    """Write systemd user units that run the nights from the project's own venv."""
    from mf_pipeline.lib import lake
    from mf_pipeline.lib.ops import systemd

    settings = settings_of(ctx)
    project = settings.project_root.resolve()
    home = Path(os.environ.get("DAGSTER_HOME") or project / "dagster_home").resolve()
    calendar = systemd.on_calendar(on_calendar or settings.ops_nightly.default_timer_on_calendar,
                                   settings.ops_nightly.timezone)
    extra = ("--wf-run-dir", str(wf_run_dir.resolve())) if wf_run_dir else ()
    try:
        texts = systemd.units(mode, project, home, calendar, extra)
    except ValueError as error:
        fail(str(error))
    folder = out_dir or project / "configs" / "systemd"
    paths = [lake.write_text(text, folder / name) for name, text in texts.items()]
    emit({"units": [str(p) for p in paths], "on_calendar": calendar if mode == "timer" else None,
          "dagster_home": str(home), "install": systemd.install_hints(paths)}, as_json)
