"""Execution-realism calibration and the decision reports (old names, backtest_ops.md §7.7,
§7.8, §8). Inputs are assets (a split) or explicit folders; a report input not given is
found by the grids' recorded metadata, newest first — never a hard-coded folder (fault 16)."""

from pathlib import Path
from typing import Annotated, Any

import typer

from mf_pipeline.cli.app import AsJson, app, emit, fail, say, settings_of
from mf_pipeline.cli.backtest_commands import OV_DIR, OV_FILE, OV_MODE, PROFILE, strategy_config

Opt = typer.Option
DIR = Annotated[Path | None, Opt()]


def _report_dirs(values: dict[str, Path | None]) -> dict[str, str]:
    for name, path in values.items():
        if path is not None and not path.is_dir():
            fail(f"--{name.replace('_', '-')}-dir {path} is not a folder")
    return {k: str(v.resolve()) for k, v in values.items() if v is not None}


def _report(summary: dict[str, Any], html: str) -> dict[str, Any]:
    keep = ("run_id", "final_verdicts", "output_dir")
    out = {k: summary.get(k) for k in keep if k in summary}
    out["inputs"] = {k: (v or {}).get("how") for k, v in (summary.get("inputs") or {}).items()}
    return out | {"report": str(Path(summary["output_dir"]) / html)}


@app.command("execution-realism-calibrate")
def execution_realism_calibrate(
    ctx: typer.Context,
    source_file: Annotated[Path | None, Opt(help="State-labelled file. Without it: the "
                                                 "split's rows (--split, --source).")] = None,
    source_type: Annotated[str, Opt(help="auto | hmm | flow | cluster.")] = "auto",
    split: Annotated[str | None, Opt(help="Without --source-file: full (default) or "
                                          "wfYYYY-MM-DD.")] = None,
    source: Annotated[str, Opt(help="On a split: hmm | flow | cluster.")] = "hmm",
    state_col: Annotated[str | None, Opt(help="State column of the file.")] = None,
    validation_run_dir: Annotated[Path | None, Opt()] = None,
    cluster_hardening_dir: Annotated[Path | None, Opt()] = None,
    state_map_file: Annotated[Path | None, Opt()] = None,
    overlay_cluster_file: OV_FILE = None,
    overlay_cluster_hardening_dir: OV_DIR = None,
    cluster_policy_file: Annotated[Path | None, Opt(help="A cluster_hardening_policy.json: "
                                                         "its folder is the overlay policy.")
                                   ] = None,
    overlay_mode: OV_MODE = None,
    signal_mode: Annotated[str | None, Opt(help="Recorded only (no signals are generated).")
                           ] = None,
    exec_profile: PROFILE = None,
    exec_min_price: Annotated[float | None, Opt()] = None,
    exec_min_dollar_vol20: Annotated[float | None, Opt("--exec-min-dollar-vol20")] = None,
    exec_max_vol_pct: Annotated[float | None, Opt()] = None,
    exec_min_history_bars: Annotated[int | None, Opt()] = None,
    sample_frac: Annotated[float | None, Opt(min=0.0, max=1.0, help="Calibrate a random "
                                             "sample of rows (after the rolling windows).")
                           ] = None,
    start_date: Annotated[str | None, Opt()] = None,
    end_date: Annotated[str | None, Opt()] = None,
    by_year: Annotated[bool | None, Opt("--by-year/--no-by-year")] = None,
    out_dir: Annotated[Path | None, Opt()] = None,
    as_json: AsJson = False,
) -> None:
    """Calibrate the execution filters: distributions, waterfall, threshold sweep and
    lite/strict recommendations (no trades are simulated)."""
    from mf_pipeline.orchestration import runner

    if cluster_policy_file is not None:
        if cluster_policy_file.name != "cluster_hardening_policy.json":
            fail("--cluster-policy-file must be a cluster_hardening_policy.json")
        overlay_cluster_hardening_dir = cluster_policy_file.parent
    config = strategy_config(
        ctx, overlay_mode=overlay_mode, exec_profile=exec_profile, exec_min_price=exec_min_price,
        exec_min_dollar_vol20=exec_min_dollar_vol20, exec_max_vol_pct=exec_max_vol_pct,
        exec_min_history_bars=exec_min_history_bars)
    config |= {k: v for k, v in {"signal_mode": signal_mode, "sample_frac": sample_frac,
                                 "start_date": start_date, "end_date": end_date,
                                 "by_year": by_year,
                                 "out_dir": str(out_dir.resolve()) if out_dir else None
                                 }.items() if v is not None}  # fmt: skip
    settings = settings_of(ctx)
    if source_file is not None:
        paths = {"source_file": source_file, "validation_run_dir": validation_run_dir,
                 "cluster_hardening_dir": cluster_hardening_dir,
                 "state_map_file": state_map_file, "overlay_cluster_file": overlay_cluster_file,
                 "overlay_cluster_hardening_dir": overlay_cluster_hardening_dir}
        for name, path in paths.items():
            if path is not None and not path.exists():
                fail(f"--{name.replace('_', '-')} {path} does not exist")
        config |= {k: str(v.resolve()) for k, v in paths.items() if v is not None}
        config |= {"source_type": source_type.strip().lower()}
        if state_col:
            config["state_col"] = state_col
        out = runner.run_job(settings, "execution_realism_calibrate", config, log=say)
        result = out.metadata["execution_realism_calibrate"]
    else:
        from mf_pipeline.lib.steps.research.options import split_key

        try:
            key = split_key(split)
        except ValueError as error:
            fail(f"bad --split: {error}")
            raise
        config["source"] = source.strip().lower()
        out = runner.run_assets(settings, ["execution_calibration"], key,
                                {"ops": {"execution_calibration": {"config": config}}}, log=say)
        result = out.metadata["execution_calibration"]
    folder = Path(result["output_dir"])
    emit({"run_id": result.get("run_id"), "output_dir": str(folder),
          "report": str(folder / "execution_calibration_report.html")}, as_json)


@app.command("execution-realism-calibration-report")
def execution_realism_calibration_report(
    ctx: typer.Context,
    calibration_dir: Annotated[Path | None, Opt(help="Default: the newest calibration by its "
                                                     "recorded finish time.")] = None,
    as_json: AsJson = False,
) -> None:
    """Re-render a calibration's Markdown and HTML report."""
    from mf_pipeline.orchestration import runner

    config = {"calibration_dir": str(calibration_dir.resolve())} if calibration_dir else {}
    out = runner.run_job(settings_of(ctx), "execution_realism_calibration_report", config,
                         log=say)
    emit(out.metadata["execution_realism_calibration_report"], as_json)


@app.command("execution-realism-report")
def execution_realism_report(
    ctx: typer.Context,
    hmm_none_grid_dir: DIR = None,
    hmm_lite_grid_dir: DIR = None,
    hmm_strict_grid_dir: DIR = None,
    hmm_overlay_allow_lite_grid_dir: DIR = None,
    hmm_overlay_block_lite_grid_dir: DIR = None,
    wf_hmm_baseline_lite_dir: DIR = None,
    wf_hmm_hybrid_lite_dir: DIR = None,
    as_json: AsJson = False,
) -> None:
    """Does the edge survive execution realism? HMM grids without, lite and strict filters,
    with the overlay, and a walk-forward pair; missing inputs are discovered, newest first."""
    from mf_pipeline.orchestration import runner

    dirs = _report_dirs({
        "hmm_none": hmm_none_grid_dir, "hmm_lite": hmm_lite_grid_dir,
        "hmm_strict": hmm_strict_grid_dir,
        "hmm_overlay_allow_lite": hmm_overlay_allow_lite_grid_dir,
        "hmm_overlay_block_lite": hmm_overlay_block_lite_grid_dir,
        "wf_hmm_baseline_lite": wf_hmm_baseline_lite_dir,
        "wf_hmm_hybrid_lite": wf_hmm_hybrid_lite_dir})  # fmt: skip
    out = runner.run_job(settings_of(ctx), "execution_realism_report", {"dirs": dirs}, log=say)
    emit(_report(out.metadata["execution_realism_report"], "execution_realism_report.html"),
         as_json)


@app.command("hybrid-eval-report")
def hybrid_eval_report(
    ctx: typer.Context,
    hmm_baseline_grid_dir: DIR = None,
    hmm_allow_only_grid_dir: DIR = None,
    hmm_block_veto_grid_dir: DIR = None,
    flow_allow_only_grid_dir: DIR = None,
    wf_hmm_baseline_dir: DIR = None,
    wf_hmm_hybrid_dir: DIR = None,
    compare_run_dir: DIR = None,
    as_json: AsJson = False,
) -> None:
    """Is the cluster overlay worth it? Baseline vs allow_only vs block_veto grids and the
    walk-forward pair, ranked; missing inputs are discovered by recorded metadata."""
    from mf_pipeline.orchestration import runner

    dirs = _report_dirs({
        "hmm_baseline": hmm_baseline_grid_dir, "hmm_allow_only": hmm_allow_only_grid_dir,
        "hmm_block_veto": hmm_block_veto_grid_dir, "flow_allow_only": flow_allow_only_grid_dir,
        "wf_hmm_baseline": wf_hmm_baseline_dir, "wf_hmm_hybrid": wf_hmm_hybrid_dir,
        "compare_run": compare_run_dir})  # fmt: skip
    out = runner.run_job(settings_of(ctx), "hybrid_eval_report", {"dirs": dirs}, log=say)
    emit(_report(out.metadata["hybrid_eval_report"], "hybrid_eval_report.html"), as_json)
