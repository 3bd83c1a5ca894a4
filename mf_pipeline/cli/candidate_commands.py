"""Candidate pack and nightly re-run commands (old names, backtest_ops.md §9, §10).

``production-candidates-build`` materializes the ``production_candidates`` asset;
``candidate-rerun-run`` materializes the ``candidate_rerun`` partition of one as-of date, whose
``candidate_drift`` check fails (in the UI) when a candidate drifted. Every option travels as
the run's typed config (``defs/candidates/config.py``); the two sanity commands only read.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mf_pipeline.cli.app import AsJson, app, emit, fail, say, settings_of
from mf_pipeline.cli.backtest_commands import OV_BYPASS, OV_COV, RATE

if TYPE_CHECKING:
    from mf_pipeline.lib.settings import Settings

Opt = typer.Option
UNUSED = "Accepted and unused, as in the old tool (its grid was loaded, never selected from)."


def _folders(given: dict[str, tuple[str, Path | None]]) -> dict[str, str]:
    """``{option: (config key, folder)}`` -> config of the given folders, resolved; a folder
    that does not exist is a clean error naming its option."""
    out: dict[str, str] = {}
    for option, (key, path) in given.items():
        if path is not None:
            if not path.is_dir():
                fail(f"{option} {path} is not a folder")
            out[key] = str(path.resolve())
    return out


def _sanity(report: dict[str, Any], as_json: bool) -> None:
    emit(report, as_json)
    if report["errors"]:
        raise typer.Exit(1)


@app.command("production-candidates-build")
def production_candidates_build(
    ctx: typer.Context,
    a1_grid_dir: Annotated[Path | None, Opt(help="CANDIDATE_ALPHA's grid: HMM, no overlay, "
                                                 "no execution profile (default: the newest "
                                                 "such grid).")] = None,
    a2_grid_dir: Annotated[Path | None, Opt(help="CANDIDATE_EXEC_2's grid: HMM, no overlay, "
                                                 "profile lite (default: discovered; none: "
                                                 "skipped with a warning).")] = None,
    a3_grid_dir: Annotated[Path | None, Opt(help=UNUSED)] = None,
    b_grid_dir: Annotated[Path | None, Opt(help="CANDIDATE_EXEC's grid: HMM, overlay "
                                                "allow_only, profile lite (default: "
                                                "discovered; none: skipped with a warning).")
                          ] = None,
    c_grid_dir: Annotated[Path | None, Opt(help=UNUSED)] = None,
    wf_baseline_dir: Annotated[Path | None, Opt(help="Walk-forward grid without overlay "
                                                     "(WF support of CANDIDATE_EXEC).")] = None,
    wf_hybrid_dir: Annotated[Path | None, Opt(help="Walk-forward grid with the overlay.")
                             ] = None,
    execution_realism_report_dir: Annotated[Path | None, Opt(help="An execution-realism "
                                                                  "report folder.")] = None,
    out_dir: Annotated[Path | None, Opt(help="Write the pack here (default: "
                                             "production_candidates/pcp-<id>).")] = None,
    min_trades: Annotated[int, Opt(min=1, help="Fewest trades of a selected combo (relaxed "
                                               "to 10 with a warning when none has).")] = 25,
    include_exec2: Annotated[bool, Opt("--include-exec2/--no-include-exec2")] = True,
    as_json: AsJson = False,
) -> None:
    """Production candidate pack: select CANDIDATE_ALPHA, _EXEC and _EXEC_2 from the HMM grids
    and lock what re-runs them on new bars (model, scaler, directions, policy, strategy)."""
    from mf_pipeline.lib.candidates.pack import REPORT
    from mf_pipeline.lib.candidates.pack_sanity import pack_sanity
    from mf_pipeline.orchestration import runner

    ignored = [name for name, path in (("--a3-grid-dir", a3_grid_dir),
                                       ("--c-grid-dir", c_grid_dir)) if path is not None]
    if ignored:
        say(f"{' and '.join(ignored)} accepted and unused (as in the old tool)")
    config: dict[str, Any] = _folders({
        "--a1-grid-dir": ("alpha_grid_dir", a1_grid_dir),
        "--b-grid-dir": ("exec_grid_dir", b_grid_dir),
        "--a2-grid-dir": ("exec2_grid_dir", a2_grid_dir),
        "--wf-baseline-dir": ("wf_baseline_dir", wf_baseline_dir),
        "--wf-hybrid-dir": ("wf_hybrid_dir", wf_hybrid_dir),
        "--execution-realism-report-dir": ("execution_realism_report_dir",
                                           execution_realism_report_dir)})
    config |= {"min_trades": min_trades, "include_exec2": include_exec2}
    if out_dir is not None:
        config["out_dir"] = str(out_dir.resolve())
    out = runner.run_assets(settings_of(ctx), ["production_candidates"], None,
                            {"ops": {"production_candidates": {"config": config}}}, log=say)
    record = _stored(out.metadata["production_candidates"])
    sanity = pack_sanity(Path(record["pack_dir"]))
    emit(record | {"sanity": sanity["status"], "sanity_errors": sanity["errors"],
                   "report": str(Path(record["pack_dir"]) / REPORT)}, as_json)


def _stored(metadata: dict[str, Any]) -> dict[str, Any]:
    """The record an asset stored through the lake IO manager (its ``io_path``)."""
    import json

    return json.loads(Path(metadata["io_path"]).read_text())


@app.command("production-candidates-sanity")
def production_candidates_sanity(
    pcp_pack_dir: Annotated[Path, Opt(help="A candidate pack folder.")],
    as_json: AsJson = False,
) -> None:
    """Check a candidate pack: packet, table, summary and report (exit 1 on errors)."""
    from mf_pipeline.lib.candidates.pack_sanity import pack_sanity

    if not pcp_pack_dir.is_dir():
        fail(f"--pcp-pack-dir {pcp_pack_dir} is not a folder")
    _sanity(pack_sanity(pcp_pack_dir), as_json)


def as_of_key(text: str | None, settings: Settings) -> str:
    """The ``candidate_rerun`` partition of ``--as-of-tag`` (default: the lake's last trade
    date); a clean error for a tag that is not a date of the partitions."""
    from mf_pipeline.defs.candidates.assets import AS_OF_DATES, AS_OF_START
    from mf_pipeline.lib.ops import lake_last_date

    last = lake_last_date(settings)
    if text is None:
        if last is None:
            fail("the lake has no ML dataset: run mf run (or give --as-of-tag)")
        text = str(last)
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        fail(f"--as-of-tag must be a date YYYY-MM-DD (the candidate_rerun partition), "
             f"got {text!r}")
        raise
    if not AS_OF_DATES.has_partition_key(day.isoformat()):
        fail(f"--as-of-tag {day} is outside the candidate_rerun partitions ({AS_OF_START} to "
             f"{AS_OF_DATES.get_last_partition_key()})")
    if last is not None and day > last:
        say(f"note: the lake's last trade date is {last}; the re-run as of {day} sees the "
            "same rows")
    return day.isoformat()


@app.command("candidate-rerun-run")
def candidate_rerun_run(
    ctx: typer.Context,
    pcp_pack_dir: Annotated[Path | None, Opt(help="A candidate pack (default: the latest "
                                                  "production_candidates materialization).")
                            ] = None,
    as_of_tag: Annotated[str | None, Opt(help="As-of date YYYY-MM-DD: the lake's rows up to "
                                              "it are re-run (default: the lake's last trade "
                                              "date).")] = None,
    override_input_file: Annotated[Path | None, Opt(help="Not supported: the locked models "
                                                         "re-decode the lake.")] = None,
    wf_run_dir: Annotated[Path | None, Opt(help="A walk-forward grid folder (mf "
                                                "backtest-grid-wf-run): each candidate's "
                                                "locked combo summarised over its splits.")
                          ] = None,
    run_micro_grid: Annotated[bool | None, Opt("--run-micro-grid/--no-run-micro-grid",
                                               help="A small grid around each locked strategy "
                                               "(default: candidate_rerun.micro_grid."
                                               "enabled_default).")] = None,
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
    """Re-run the locked candidates on the lake up to an as-of date and measure drift against
    the behaviour they were locked with (OK / DRIFT_WARN / DRIFT_FAIL per candidate)."""
    from mf_pipeline.orchestration import runner

    if override_input_file is not None:
        fail("--override-input-file is not supported: the locked models re-decode the lake's "
             "own rows (append the bars to the lake, then re-run)")
    settings = settings_of(ctx)
    key = as_of_key(as_of_tag, settings)
    if pcp_pack_dir is not None and not (pcp_pack_dir / "production_policy_packet_v1.json"
                                         ).is_file():
        fail(f"--pcp-pack-dir {pcp_pack_dir} has no production_policy_packet_v1.json")
    if wf_run_dir is not None and not wf_run_dir.is_dir():
        fail(f"--wf-run-dir {wf_run_dir} is not a folder")
    coverage = {"min_match_rate_warn": overlay_min_match_rate_warn,
                "min_match_rate_fail": overlay_min_match_rate_fail,
                "min_year_match_rate_warn": overlay_min_year_match_rate_warn,
                "min_year_match_rate_fail": overlay_min_year_match_rate_fail,
                "unknown_rate_warn": overlay_unknown_rate_warn,
                "unknown_rate_fail": overlay_unknown_rate_fail}
    config = {"pcp_pack_dir": str(pcp_pack_dir.resolve()) if pcp_pack_dir else None,
              "wf_grid_dir": str(wf_run_dir.resolve()) if wf_run_dir else None,
              "run_micro_grid": run_micro_grid,
              "overlay_coverage_mode": overlay_coverage_mode.strip().lower()
              if overlay_coverage_mode else None,
              "overlay_coverage_bypass": overlay_coverage_bypass or None,
              "coverage": {k: v for k, v in coverage.items() if v is not None} or None,
              "coverage_drift_warn_drop": coverage_drift_warn_drop,
              "coverage_drift_fail_match": coverage_drift_fail_match}
    config = {k: v for k, v in config.items() if v is not None}
    out = runner.run_assets(settings, ["candidate_rerun"], key,
                            {"ops": {"candidate_rerun": {"config": config}}}, log=say)
    emit(rerun_result(_stored(out.metadata["candidate_rerun"])), as_json)


def rerun_result(record: dict[str, Any]) -> dict[str, Any]:
    """What a ``candidate_rerun`` partition stored, with its ``candidate_drift`` verdict."""
    from mf_pipeline.defs.candidates.assets import FAILING
    from mf_pipeline.lib.candidates.rerun import REPORT

    failing = [k for k, c in record["candidates"].items() if c["drift_status"] in FAILING]
    return record | {"candidate_drift": f"FAILED ({', '.join(failing)})" if failing
                     else "PASSED", "report": str(Path(record["output_dir"]) / REPORT)}


@app.command("candidate-rerun-sanity")
def candidate_rerun_sanity(
    rerun_dir: Annotated[Path, Opt(help="A candidate re-run folder (crp-<id>).")],
    as_json: AsJson = False,
) -> None:
    """Check a candidate re-run folder: manifest, table, summary, report and each candidate's
    files (exit 1 on errors)."""
    from mf_pipeline.lib.candidates.rerun_sanity import rerun_sanity

    if not rerun_dir.is_dir():
        fail(f"--rerun-dir {rerun_dir} is not a folder")
    _sanity(rerun_sanity(rerun_dir), as_json)
