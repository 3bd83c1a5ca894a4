"""Grid, calibration and decision-report commands (old names, backtest_ops.md §5, §7.7, §7.8,
§8).

``backtest-grid-run`` on files is the ``backtest_grid_file_run`` job; on a split (no input
file) it is the ``backtest_grid`` asset of that split partition. ``backtest-grid-wf-run`` runs
``backtest_grid`` per split of a validation walk-forward, then ``wf_backtest_grid``.
``execution-realism-calibrate`` is the ``execution_calibration`` asset on a split or the
``execution_realism_calibrate`` job on a file; the reports and the comparison are jobs. Every
option travels as the run's typed config (``defs/grids/config.py``); ``backtest-grid-sanity``
only reads.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from mf_pipeline.cli.app import AsJson, app, emit, fail, say, settings_of
from mf_pipeline.cli.backtest_commands import (
    OV_BYPASS,
    OV_COV,
    OV_DIR,
    OV_FILE,
    OV_MODE,
    OV_UNKNOWN,
    PROFILE,
    strategy_config,
)

Opt = typer.Option
LIST = Annotated[str | None, Opt(help="Comma list (default: backtest_sensitivity.default_grid).")]
SPLIT = Annotated[str | None, Opt(help="Without input files: full (in-sample, default) or "
                                       "wfYYYY-MM-DD.")]
FLOAT_OPT = Annotated[float | None, Opt()]
INT_OPT = Annotated[int | None, Opt()]


def _items(text: str | None, option: str, kind: type = str) -> list[Any] | None:
    if text is None or not text.strip():
        return None
    out: list[Any] = []
    for raw in (v.strip() for v in text.split(",") if v.strip()):
        try:
            if kind is bool:
                if raw.lower() not in ("true", "false"):
                    raise ValueError(raw)
                out.append(raw.lower() == "true")
            else:
                out.append(kind(raw.lower() if kind is str else raw))
        except ValueError:
            fail(f"{option}: {raw!r} is not a valid {kind.__name__}")
    return out


def _state_sets(text: str | None) -> list[list[int]] | None:
    """``"1|2|4;2|3|4"`` → [[1, 2, 4], [2, 3, 4]]; an empty subset means all states."""
    if text is None or not text.strip():
        return None
    try:
        return [sorted({int(v) for v in part.split("|") if v.strip()}) for part in text.split(";")]
    except ValueError:
        fail(f'--include-state-ids-grid must look like "1|2|4;2|3|4", got {text!r}')
        raise


GATE_OPTIONS = ("overlay_mode", "overlay_coverage_mode", "overlay_coverage_bypass",
                "overlay_unknown_handling", "exec_profile", "exec_min_price",
                "exec_min_dollar_vol20", "exec_max_vol_pct", "exec_min_history_bars")
"""Command options shared by every combo of a grid (the backtest's overlay and execution)."""


def grid_config(ctx: typer.Context, given: dict[str, Any], **rest: Any) -> dict[str, Any]:
    """Run config of a grid from a command's options (``given``: its arguments by name):
    dimensions parsed, shared options checked, None dropped."""
    from mf_pipeline.defs.grids.config import GridConfig

    gate = {k: given.get(k) for k in GATE_OPTIONS}
    gate["overlay_coverage_bypass"] = gate["overlay_coverage_bypass"] or None
    config = strategy_config(ctx, **gate)
    config |= {
        "hold_bars_grid": _items(given["hold_bars_grid"], "--hold-bars-grid", int),
        "signal_mode_grid": _items(given["signal_mode_grid"], "--signal-mode-grid"),
        "exit_mode_grid": _items(given["exit_mode_grid"], "--exit-mode-grid"),
        "fee_bps_grid": _items(given["fee_bps_grid"], "--fee-bps-grid", float),
        "slippage_bps_grid": _items(given["slippage_bps_grid"], "--slippage-bps-grid", float),
        "allow_overlap_grid": _items(given["allow_overlap_grid"], "--allow-overlap-grid", bool),
        "equity_mode_grid": _items(given["equity_mode_grid"], "--equity-mode-grid"),
        "include_watch_grid": _items(given["include_watch_grid"], "--include-watch-grid", bool),
        "include_state_ids_grid": _state_sets(given["include_state_ids_grid"]),
    }
    config |= rest
    config = {k: v for k, v in config.items() if v is not None}
    try:
        GridConfig(**config).dims(settings_of(ctx))
    except ValueError as error:
        fail(str(error))
    return config


def _grid_summary(folder: str) -> dict[str, Any]:
    from mf_pipeline.lib.grids.run import read_grid_summary

    s = read_grid_summary(folder)
    out = {k: s.get(k) for k in ("grid_run_id", "scope", "comparability", "total_combos",
                                 "successful_combos", "failed_combos", "zero_trade_combo_share",
                                 "in_sample", "duration_sec")}  # fmt: skip
    for source, block in (s.get("overfitting") or {}).items():
        out[f"{source}_best_combo"] = block.get("best_combo_id")
        out[f"{source}_dsr"] = block.get("dsr")
        out[f"{source}_pbo"] = block.get("pbo")
        out[f"{source}_fluke_risk"] = block.get("fluke_risk")
    out |= {"output_dir": folder, "report": str(Path(folder) / "grid_report.html")}
    return out


@app.command("backtest-grid-run")
def backtest_grid_run(
    ctx: typer.Context,
    input_type: Annotated[str | None, Opt(help="Single source on a file: flow | hmm | cluster."
                                          )] = None,
    input_file: Annotated[Path | None, Opt(help="Single source: a state-labelled file.")] = None,
    multi_source: Annotated[bool, Opt(help="Several files: two or more of --flow/--hmm/"
                                           "--cluster-input-file.")] = False,
    flow_input_file: Annotated[Path | None, Opt()] = None,
    hmm_input_file: Annotated[Path | None, Opt()] = None,
    cluster_input_file: Annotated[Path | None, Opt()] = None,
    split: SPLIT = None,
    sources: Annotated[str | None, Opt(help="On a split: comma list of flow, hmm, cluster "
                                            "(default all three = multi-source).")] = None,
    validation_run_dir: Annotated[Path | None, Opt(help="HMM file: directions from its "
                                                        "state_scorecard.csv.")] = None,
    state_map_file: Annotated[Path | None, Opt(help="HMM file: state → direction JSON.")
                              ] = None,
    cluster_hardening_dir: Annotated[Path | None, Opt(help="Cluster file: folder with "
                                                           "cluster_hardening_policy.json.")
                                     ] = None,
    hmm_state_col: Annotated[str, Opt(help="HMM state column (hmm_state_filtered: causal).")
                             ] = "hmm_state_filtered",
    policy_filter_mode: Annotated[str | None, Opt(help="Cluster: allow_only (default) | "
                                                       "allow_watch | all_states.")] = None,
    hold_bars_grid: LIST = None,
    signal_mode_grid: LIST = None,
    exit_mode_grid: LIST = None,
    fee_bps_grid: LIST = None,
    slippage_bps_grid: LIST = None,
    allow_overlap_grid: Annotated[str | None, Opt(help="Only false is supported.")] = None,
    equity_mode_grid: LIST = None,
    include_watch_grid: LIST = None,
    include_state_ids_grid: Annotated[str | None, Opt(help='Subsets, e.g. "1|2|4;2|3|4".')
                                      ] = None,
    overlay_cluster_file: OV_FILE = None,
    overlay_cluster_hardening_dir: OV_DIR = None,
    overlay_mode: OV_MODE = None,
    overlay_coverage_mode: OV_COV = None,
    overlay_coverage_bypass: OV_BYPASS = False,
    overlay_unknown_handling: OV_UNKNOWN = None,
    exec_profile: PROFILE = None,
    exec_min_price: FLOAT_OPT = None,
    exec_min_dollar_vol20: Annotated[float | None, Opt("--exec-min-dollar-vol20")] = None,
    exec_max_vol_pct: FLOAT_OPT = None,
    exec_min_history_bars: INT_OPT = None,
    include_ret_cv: Annotated[bool | None, Opt("--include-ret-cv/--no-include-ret-cv")] = None,
    include_tail_metrics: Annotated[bool | None, Opt(
        "--include-tail-metrics/--no-include-tail-metrics")] = None,
    report_top_n: Annotated[int | None, Opt(min=1)] = None,
    max_combos: Annotated[int | None, Opt(min=1)] = None,
    shuffle_grid: Annotated[bool, Opt(help="Shuffle the combos (seeded) before --max-combos.")
                            ] = False,
    seed: int = 42,
    progress_every: Annotated[int | None, Opt(min=1)] = None,
    stop_on_error: Annotated[bool | None, Opt("--stop-on-error/--no-stop-on-error")] = None,
    write_run_manifest: Annotated[bool, Opt("--write-run-manifest/--no-write-run-manifest")
                                  ] = True,
    write_combo_runs: Annotated[bool, Opt(help="Also write a full backtest folder per combo "
                                               "(slow).")] = False,
    heatmap_dims: Annotated[str | None, Opt(help="Two dimensions for the report heatmap, "
                                                 "e.g. hold_bars,fee_bps_per_side.")] = None,
    tag: Annotated[str | None, Opt(help="Folder tag (default: default, or the split).")
                   ] = None,
    force: Annotated[bool, Opt(help="Accepted for compatibility: grid ids come from inputs "
                                    "and options, so a rerun rewrites the same folder.")
                     ] = False,
    as_json: AsJson = False,
) -> None:
    """Sensitivity grid: every combo of the dimensions, robustness scores, aggregates and how
    likely the winner is a fluke (Deflated Sharpe Ratio, PBO)."""
    from mf_pipeline.orchestration import runner

    heat = _items(heatmap_dims, "--heatmap-dims")
    config = grid_config(
        ctx, locals(), policy_filter_mode=policy_filter_mode, include_ret_cv=include_ret_cv,
        include_tail_metrics=include_tail_metrics, report_top_n=report_top_n,
        max_combos=max_combos, shuffle_grid=shuffle_grid or None, seed=seed,
        progress_every=progress_every, stop_on_error=stop_on_error,
        write_run_manifest=write_run_manifest, write_combo_runs=write_combo_runs or None,
        heatmap_dims=heat, tag=tag)
    settings = settings_of(ctx)
    files = {"flow": flow_input_file, "hmm": hmm_input_file, "cluster": cluster_input_file}
    if input_file is not None:
        if multi_source:
            fail("--input-file is single-source; with --multi-source use --flow/--hmm/"
                 "--cluster-input-file")
        if input_type is None or input_type.strip().lower() not in files:
            fail("--input-file needs --input-type flow | hmm | cluster")
        files = {str(input_type).strip().lower(): input_file}
    given = {k: v for k, v in files.items() if v is not None}
    if multi_source and len(given) < 2:
        fail("--multi-source needs at least two of --flow/--hmm/--cluster-input-file")
    if given and not multi_source and input_file is None:
        fail("per-source input files need --multi-source (or use --input-type/--input-file)")
    if (overlay_cluster_file is None) != (overlay_cluster_hardening_dir is None):
        fail("the overlay needs both --overlay-cluster-file and --overlay-cluster-hardening-dir")
    if given:
        paths = {**{f"{k}_input_file": v for k, v in given.items()},
                 "validation_run_dir": validation_run_dir, "state_map_file": state_map_file,
                 "cluster_hardening_dir": cluster_hardening_dir,
                 "overlay_cluster_file": overlay_cluster_file,
                 "overlay_cluster_hardening_dir": overlay_cluster_hardening_dir}
        for name, path in paths.items():
            if path is not None and not path.exists():
                fail(f"--{name.replace('_', '-')} {path} does not exist")
        if "cluster" in given and cluster_hardening_dir is None:
            fail("a cluster source needs --cluster-hardening-dir: run mf cluster-hardening-run")
        config |= {k: str(v.resolve()) for k, v in paths.items() if v is not None}
        config["hmm_state_col"] = hmm_state_col
        out = runner.run_job(settings, "backtest_grid_file_run", config, log=say)
        folder = out.metadata["backtest_grid_file_run"]["output_dir"]
    else:
        if any((validation_run_dir, state_map_file, cluster_hardening_dir,
                overlay_cluster_file)):
            fail("--validation-run-dir/--state-map-file/--cluster-hardening-dir/overlay files "
                 "need input files (a split's grid reads its own model runs)")
        from mf_pipeline.lib.steps.research.options import split_key

        try:
            key = split_key(split)
        except ValueError as error:
            fail(f"bad --split: {error}")
            raise
        if sources:
            config["sources"] = _items(sources, "--sources")
        out = runner.run_assets(settings, ["backtest_grid"], key,
                                {"ops": {"backtest_grid": {"config": config}}}, log=say)
        folder = out.metadata["backtest_grid"]["output_dir"]
    emit(_grid_summary(folder), as_json)


@app.command("backtest-grid-sanity")
def backtest_grid_sanity(
    grid_run_dir: Annotated[Path, Opt(help="A grid folder.")],
    as_json: AsJson = False,
) -> None:
    """Check a grid folder: manifest, metrics, trades, robustness, overlay, execution."""
    from mf_pipeline.lib.grids.sanity import grid_sanity

    if not grid_run_dir.is_dir():
        fail(f"--grid-run-dir {grid_run_dir} is not a folder")
    report = grid_sanity(grid_run_dir)
    emit(report, as_json)
    if report["status"] != "PASS":
        raise typer.Exit(1)


@app.command("backtest-grid-compare")
def backtest_grid_compare(
    ctx: typer.Context,
    grid_run_dir: Annotated[list[Path], Opt(help="A grid folder (repeat, at least two).")],
    metric: Annotated[list[str] | None, Opt(help="Ranking metric (repeat; first = primary).")
                      ] = None,
    as_json: AsJson = False,
) -> None:
    """Compare grids: best configs, means, verdicts, top-10 overlap, DSR and PBO."""
    from mf_pipeline.lib.grids.compare import check_metrics
    from mf_pipeline.orchestration import runner

    if len(grid_run_dir) < 2:
        fail("backtest-grid-compare needs at least two --grid-run-dir")
    for d in grid_run_dir:
        if not (d / "grid_summary.json").is_file():
            fail(f"--grid-run-dir {d} is not a finished grid (no grid_summary.json)")
    metrics = [m.strip().lower() for m in metric] if metric else None
    if metrics:
        try:
            check_metrics(metrics)
        except ValueError as error:
            fail(str(error))
    out = runner.run_job(settings_of(ctx), "backtest_grid_compare",
                         {"grid_run_dirs": [str(d.resolve()) for d in grid_run_dir],
                          "metrics": metrics}, log=say)
    result = out.metadata["backtest_grid_compare"]
    emit({k: result.get(k) for k in ("compare_id", "primary_metric", "output_dir")}
         | {"report": str(Path(result["output_dir"]) / "grid_compare_report.html")}, as_json)


def _wf_grid_split(settings: Any, folder: Path, split: dict[str, Any], config: dict[str, Any]
                   ) -> dict[str, Any]:  # fmt: skip
    """One split's grid as its own Dagster run, so a failed split leaves the others."""
    from mf_pipeline.lib.grids import walkforward as wf
    from mf_pipeline.orchestration import runner

    end = split["train_end"]
    if split.get("status") != "SUCCESS":
        return wf.split_row(end, wf.FAILED_UPSTREAM, error=split.get("error"))
    target = wf.split_dir(folder, end)
    judged = config | {"out_dir": str(target), "grid_run_id": f"{folder.name}-{end}",
                       "tag": config.get("tag") or f"split-{end}", "write_run_manifest": True,
                       "include_ret_cv": True, "include_tail_metrics": True}
    if split.get("test_end"):
        judged["test_end"] = split["test_end"]
    try:
        runner.run_assets(settings, ["backtest_grid"], f"wf{end}",
                          {"ops": {"backtest_grid": {"config": judged}}}, log=say)
    except runner.RunFailed as error:
        say(f"split {end} FAILED: {error}")
        return wf.split_row(end, wf.FAILED, error=str(error))
    from mf_pipeline.lib.grids.run import read_grid_summary

    return wf.split_row(end, wf.SUCCESS, target, summary=read_grid_summary(target))


@app.command("backtest-grid-wf-run")
def backtest_grid_wf_run(
    ctx: typer.Context,
    wf_run_dir: Annotated[Path, Opt(help="A validation walk-forward folder "
                                         "(mf validation-wf-run).")],
    flow_dataset_file: Annotated[Path | None, Opt(help="Accepted for compatibility: flow "
                                                       "trades the split's own rows.")] = None,
    train_ends: Annotated[str | None, Opt(help="Only these splits: comma list of train ends.")
                          ] = None,
    train_start: Annotated[str | None, Opt(help="Schedule mode: first train end.")] = None,
    train_end_final: Annotated[str | None, Opt(help="Schedule mode: last train end.")] = None,
    step_years: Annotated[int | None, Opt(min=1, help="Schedule mode: years between splits.")
                          ] = None,
    sources: Annotated[str, Opt(help="Comma list of hmm, flow, cluster.")] = "hmm,flow,cluster",
    policy_filter_mode: Annotated[str | None, Opt()] = None,
    min_successful_splits: Annotated[int | None, Opt(min=0)] = None,
    hold_bars_grid: LIST = None,
    signal_mode_grid: LIST = None,
    exit_mode_grid: LIST = None,
    fee_bps_grid: LIST = None,
    slippage_bps_grid: LIST = None,
    allow_overlap_grid: LIST = None,
    equity_mode_grid: LIST = None,
    include_watch_grid: LIST = None,
    include_state_ids_grid: Annotated[str | None, Opt()] = None,
    overlay_mode: Annotated[str | None, Opt(help="Gate every source with the split's own "
                                                 "cluster policy.")] = None,
    overlay_coverage_mode: OV_COV = None,
    overlay_coverage_bypass: OV_BYPASS = False,
    exec_profile: PROFILE = None,
    exec_min_price: FLOAT_OPT = None,
    exec_min_dollar_vol20: Annotated[float | None, Opt("--exec-min-dollar-vol20")] = None,
    exec_max_vol_pct: FLOAT_OPT = None,
    exec_min_history_bars: INT_OPT = None,
    report_top_n: Annotated[int | None, Opt(min=1)] = None,
    max_combos: Annotated[int | None, Opt(min=1)] = None,
    shuffle_grid: bool = False,
    seed: int = 42,
    progress_every: Annotated[int | None, Opt(min=1)] = None,
    stop_on_error: Annotated[bool | None, Opt("--stop-on-error/--no-stop-on-error")] = None,
    tag: Annotated[str | None, Opt()] = None,
    force: Annotated[bool, Opt(help="Accepted for compatibility (reruns converge).")] = False,
    as_json: AsJson = False,
) -> None:
    """Walk-forward grid: the grid on every split of a validation walk-forward, then config
    consistency, winner stability, cost fragility, tail risk and each split's DSR/PBO."""
    from mf_pipeline.lib.grids import walkforward as wf
    from mf_pipeline.lib.grids.inputs import check_sources
    from mf_pipeline.lib.grids.wf_aggregates import select_train_ends
    from mf_pipeline.lib.steps.research.artifacts import now
    from mf_pipeline.lib.steps.validation.walkforward import load_manifest
    from mf_pipeline.orchestration import runner

    manifest = load_manifest(wf_run_dir)
    if manifest is None:
        fail(f"--wf-run-dir {wf_run_dir} has no wf_manifest.json: run mf validation-wf-run")
        raise typer.Exit(2)
    if flow_dataset_file is not None:
        say("--flow-dataset-file ignored: flow trades the rows each split's models labelled")
    try:
        names = check_sources(sources.split(","))
        selected = select_train_ends(train_ends, train_start, train_end_final, step_years)
    except ValueError as error:
        fail(str(error))
        raise
    config = grid_config(ctx, locals(), policy_filter_mode=policy_filter_mode,
                         report_top_n=report_top_n, max_combos=max_combos,
                         shuffle_grid=shuffle_grid or None, seed=seed,
                         progress_every=progress_every, stop_on_error=stop_on_error, tag=tag)
    config["sources"] = names
    config["non_overlapping_test"] = bool(
        (manifest.get("config") or {}).get("config", {}).get("validation", {})
        .get("non_overlapping_test", True))  # fmt: skip
    settings = settings_of(ctx)
    splits = [s for s in manifest.get("splits") or []
              if selected is None or str(s["train_end"]) in selected]
    if not splits:
        fail(f"no split of {wf_run_dir.name} matches the selected train ends {selected}")
    signature = {"wf_run_dir": str(wf_run_dir.resolve()), "config": config,
                 "train_ends": [str(s["train_end"]) for s in splits]}
    folder = wf.wf_grid_folder(settings, signature)
    minimum = settings.backtest_sensitivity.min_successful_splits_default \
        if min_successful_splits is None else min_successful_splits  # fmt: skip
    extra = {"wf_run_dir": str(wf_run_dir.resolve()), "sources": names,
             "policy_filter_mode": config.get("policy_filter_mode")
             or settings.backtest_sensitivity.policy_filter_mode_default,
             "selected_train_ends": signature["train_ends"], "tag": tag,
             "min_successful_splits": minimum, "options": config, "started_ts": now(),
             "overlay_mode": config.get("overlay_mode", "none"),
             "execution_profile": config.get("exec_profile", "none")}  # fmt: skip
    say(f"walk-forward grid {folder.name}: {len(splits)} splits of {wf_run_dir.name}")
    records: list[dict[str, Any]] = []
    for split in splits:
        records.append(_wf_grid_split(settings, folder, split, config))
        wf.save_plan(folder, extra, records)
    out = runner.run_assets(settings, ["wf_backtest_grid"], None, {"ops": {"wf_backtest_grid": {
        "config": {"wf_grid_dir": str(folder)}}}}, log=say)
    meta = out.metadata["wf_backtest_grid"]
    emit({"wf_grid_id": folder.name, "wf_grid_dir": str(folder),
          **{k: meta.get(k) for k in ("splits_total", "splits_successful", "splits_failed",
                                      "dsr_median", "pbo_median")},
          "report": str(folder / "wf_grid_report.html")}, as_json)
    if (meta.get("splits_successful") or 0) < minimum:
        fail(f"only {meta.get('splits_successful')} split(s) succeeded; "
             f"--min-successful-splits is {minimum} (artifacts kept in {folder})", code=1)
