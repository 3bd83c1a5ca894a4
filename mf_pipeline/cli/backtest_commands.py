"""Backtest commands (old names): one run, its sanity report, a comparison of runs and the
walk-forward backtest.

``backtest-run`` on a file is the ``backtest_file_run`` job; on a split (no ``--input-file``)
it is the ``backtest_<input-type>`` asset of that split partition; ``backtest-wf-run`` runs the
three assets per split, then ``wf_backtest``. Every option travels as the run's typed config
(``defs/backtest/config.py``). ``backtest-sanity`` only reads.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from mf_pipeline.cli.app import AsJson, app, emit, fail, say, settings_of

Opt = typer.Option
INPUT_TYPES = ("flow", "hmm", "cluster")
HEADLINE = ("trade_count", "win_rate", "avg_return", "median_return", "profit_factor",
            "profit_factor_inf", "expectancy", "avg_hold_bars")

SIGNAL = Annotated[str | None, Opt(help="state_entry | state_transition_entry (default) | "
                                   "state_persistence_confirm.")]
EXIT = Annotated[str | None, Opt(help="horizon | state_exit | horizon_or_state (default).")]
HOLD = Annotated[int | None, Opt(min=1, help="Bars held before a horizon exit (default 10).")]
UNCONFIRMED = Annotated[bool | None, Opt("--allow-unconfirmed/--no-allow-unconfirmed",
                                         help="UNCONFIRMED rows stay eligible (never trade).")]
WATCH = Annotated[bool | None, Opt("--include-watch/--no-include-watch",
                                   help="Cluster sources: trade WATCH states too.")]
STATE_IDS = Annotated[str | None, Opt(help='Trade only these states, e.g. "1,2,4".')]
FEE = Annotated[float | None, Opt(min=0.0, help="Fee in bps per side (default 0).")]
SLIP = Annotated[float | None, Opt(min=0.0, help="Slippage in bps per side (default 0).")]
EQUITY = Annotated[str | None, Opt(help="event_returns_only (default) | daily_equity_curve "
                                   "(old exit-date curve) | daily_mark_to_market.")]
OV_FILE = Annotated[Path | None, Opt(help="Overlay: clustered rows (cluster_id per ticker, "
                                     "date).")]
OV_DIR = Annotated[Path | None, Opt(help="Overlay: folder with cluster_hardening_policy.json.")]
OV_MODE = Annotated[str | None, Opt(help="none | allow_only | allow_watch | allow_or_unknown "
                                    "| block_veto.")]
OV_KEYS = Annotated[str | None, Opt(help="Join keys, comma list (default ticker,trade_date).")]
OV_COV = Annotated[str | None, Opt(help="warn_only (default) | strict_fail.")]
OV_BYPASS = Annotated[bool, Opt(help="Run even when strict coverage fails (verdict kept).")]
OV_UNKNOWN = Annotated[str | None, Opt(help="treat_unknown_as_pass | treat_unknown_as_block.")]
RATE = Annotated[float | None, Opt(min=0.0, max=1.0)]
PROFILE = Annotated[str | None, Opt(help="Execution realism: none (default) | lite | strict.")]


def _ids(text: str | None) -> list[int] | None:
    if text is None or not text.strip():
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f'--include-state-ids must be integers like "1,2,4", got {text!r}')
        raise


def _choice(value: str | None) -> str | None:
    return None if value is None else value.strip().lower()


def strategy_config(ctx: typer.Context, **values: Any) -> dict[str, Any]:
    """Run config of the strategy options (None: settings default), checked up front."""
    from mf_pipeline.defs.backtest.config import StrategyConfig

    values = {k: _choice(v) if isinstance(v, str) else v for k, v in values.items()}
    if values.get("overlay_join_keys"):
        values["overlay_join_keys"] = [k.strip() for k in values["overlay_join_keys"].split(",")
                                       if k.strip()] or None  # fmt: skip
    config = {k: v for k, v in values.items() if v is not None}
    try:
        StrategyConfig(**config).options(settings_of(ctx))
    except ValueError as error:
        fail(str(error))
    return config


def _summary(folder: str) -> dict[str, Any]:
    from mf_pipeline.lib.steps.backtest.run import read_summary

    s = read_summary(folder)
    over, exe = s.get("overlay") or {}, s.get("execution") or {}
    return {"run_id": s["run_id"], "input_type": s["input_type"], "in_sample": s.get("in_sample"),
            "mapping_source": s.get("mapping_source"),
            **{k: s["headline"].get(k) for k in HEADLINE},
            "overlay_mode": over.get("overlay_mode") if over.get("overlay_enabled") else None,
            "overlay_match_rate": over.get("overlay_match_rate"),
            "overlay_coverage_status": over.get("overlay_coverage_status"),
            "execution_profile": exe.get("execution_profile"),
            "exec_eligibility_rate": exe.get("exec_eligibility_rate"),
            "duration_sec": s.get("duration_sec"), "output_dir": folder}  # fmt: skip


@app.command("backtest-run")
def backtest_run(
    ctx: typer.Context,
    input_type: Annotated[str, Opt(help="flow | hmm | cluster.")],
    input_file: Annotated[Path | None, Opt(help="State-labelled Parquet/CSV. Without it: the "
                                               "split's rows (--split).")] = None,
    split: Annotated[str | None, Opt(help="Without --input-file: full (in-sample, default) or "
                                          "wfYYYY-MM-DD.")] = None,
    validation_run_dir: Annotated[Path | None, Opt(help="HMM: directions from its "
                                                        "state_scorecard.csv.")] = None,
    cluster_hardening_dir: Annotated[Path | None, Opt(help="Cluster: folder with "
                                                           "cluster_hardening_policy.json.")
                                     ] = None,
    state_map_file: Annotated[Path | None, Opt(help='HMM: JSON {"<state>": "LONG_BIAS" | '
                                                    '"SHORT_BIAS" | "UNCONFIRMED"}.')] = None,
    hmm_state_col: Annotated[str, Opt(help="HMM state column: hmm_state_filtered (causal, "
                                           "default) | hmm_state (Viterbi, looks ahead).")
                             ] = "hmm_state_filtered",
    signal_mode: SIGNAL = None,
    exit_mode: EXIT = None,
    hold_bars: HOLD = None,
    allow_overlap: Annotated[bool, Opt("--allow-overlap/--no-allow-overlap", help="Not "
                                       "supported: positions never overlap.")] = False,
    allow_unconfirmed: UNCONFIRMED = None,
    include_watch: WATCH = None,
    include_state_ids: STATE_IDS = None,
    fee_bps_per_side: FEE = None,
    slippage_bps_per_side: SLIP = None,
    equity_mode: EQUITY = None,
    overlay_cluster_file: OV_FILE = None,
    overlay_cluster_hardening_dir: OV_DIR = None,
    overlay_mode: OV_MODE = None,
    overlay_join_keys: OV_KEYS = None,
    overlay_coverage_mode: OV_COV = None,
    overlay_coverage_bypass: OV_BYPASS = False,
    overlay_unknown_handling: OV_UNKNOWN = None,
    overlay_min_match_rate_warn: RATE = None,
    overlay_min_match_rate_fail: RATE = None,
    overlay_min_year_match_rate_warn: RATE = None,
    overlay_min_year_match_rate_fail: RATE = None,
    overlay_unknown_rate_warn: RATE = None,
    overlay_unknown_rate_fail: RATE = None,
    exec_profile: PROFILE = None,
    exec_min_price: Annotated[float | None, Opt(help="Override: minimum close.")] = None,
    exec_min_dollar_vol20: Annotated[float | None, Opt(
        "--exec-min-dollar-vol20", help="Override: minimum 20-bar rolling dollar volume.")
                                     ] = None,
    exec_max_vol_pct: Annotated[float | None, Opt(help="Override: maximum ATR% (0.12 or 12 "
                                                       "both mean 12 %).")] = None,
    exec_min_history_bars: Annotated[int | None, Opt(help="Override: minimum bars of "
                                                          "history.")] = None,
    report_min_trades: Annotated[int | None, Opt(min=0)] = None,
    report_max_zero_trade_share: RATE = None,
    report_max_ret_cv: Annotated[float | None, Opt(min=0.0)] = None,
    export_joined_rows: Annotated[bool, Opt(help="Also write the per-row signal frame.")
                                  ] = False,
    tag: Annotated[str | None, Opt(help="Folder tag (default: the input's folder name).")
                   ] = None,
    force: Annotated[bool, Opt(help="Accepted for compatibility: run ids are derived from "
                                    "inputs and options, so a rerun always rewrites the same "
                                    "folder.")] = False,
    as_json: AsJson = False,
) -> None:
    """Backtest states: signals at the close, fills at the next open, trades and metrics."""
    from mf_pipeline.orchestration import runner

    kind = input_type.strip().lower()
    if kind not in INPUT_TYPES:
        fail(f"--input-type must be one of {', '.join(INPUT_TYPES)}")
    if allow_overlap:
        fail("--allow-overlap is not supported: positions never overlap (the old option only "
             "hid the skipped_due_overlap count); see docs/BACKTESTS.md")
    config = strategy_config(
        ctx, signal_mode=signal_mode, exit_mode=exit_mode, hold_bars=hold_bars,
        allow_unconfirmed=allow_unconfirmed, include_watch=include_watch,
        include_state_ids=_ids(include_state_ids), fee_bps_per_side=fee_bps_per_side,
        slippage_bps_per_side=slippage_bps_per_side, equity_mode=equity_mode,
        overlay_mode=overlay_mode, overlay_join_keys=overlay_join_keys,
        overlay_coverage_mode=overlay_coverage_mode,
        overlay_coverage_bypass=overlay_coverage_bypass or None,
        overlay_unknown_handling=overlay_unknown_handling,
        overlay_min_match_rate_warn=overlay_min_match_rate_warn,
        overlay_min_match_rate_fail=overlay_min_match_rate_fail,
        overlay_min_year_match_rate_warn=overlay_min_year_match_rate_warn,
        overlay_min_year_match_rate_fail=overlay_min_year_match_rate_fail,
        overlay_unknown_rate_warn=overlay_unknown_rate_warn,
        overlay_unknown_rate_fail=overlay_unknown_rate_fail, exec_profile=exec_profile,
        exec_min_price=exec_min_price, exec_min_dollar_vol20=exec_min_dollar_vol20,
        exec_max_vol_pct=exec_max_vol_pct, exec_min_history_bars=exec_min_history_bars,
        report_min_trades=report_min_trades,
        report_max_zero_trade_share=report_max_zero_trade_share,
        report_max_ret_cv=report_max_ret_cv, export_joined_rows=export_joined_rows or None)
    if (overlay_cluster_file is None) != (overlay_cluster_hardening_dir is None):
        fail("the overlay needs both --overlay-cluster-file and --overlay-cluster-hardening-dir")
    if config.get("overlay_mode", "none") != "none" and overlay_cluster_file is None:
        fail(f"--overlay-mode {config['overlay_mode']} needs --overlay-cluster-file and "
             "--overlay-cluster-hardening-dir")
    settings = settings_of(ctx)
    if input_file is not None:
        paths = {"input_file": input_file, "validation_run_dir": validation_run_dir,
                 "cluster_hardening_dir": cluster_hardening_dir,
                 "state_map_file": state_map_file, "overlay_cluster_file": overlay_cluster_file,
                 "overlay_cluster_hardening_dir": overlay_cluster_hardening_dir}
        for name, path in paths.items():
            if path is not None and not path.exists():
                fail(f"--{name.replace('_', '-')} {path} does not exist")
        if kind == "hmm" and state_map_file is None and validation_run_dir is None \
                and not config.get("allow_unconfirmed"):  # fmt: skip
            fail("--input-type hmm needs --validation-run-dir or --state-map-file (or "
                 "--allow-unconfirmed, which trades nothing)")
        if kind == "cluster" and cluster_hardening_dir is None:
            fail("--input-type cluster needs --cluster-hardening-dir: run mf "
                 "cluster-hardening-run first")
        config |= {k: str(v.resolve()) for k, v in paths.items() if v is not None}
        config |= {"input_type": kind, "hmm_state_col": hmm_state_col}
        if tag:
            config["tag"] = tag
        out = runner.run_job(settings, "backtest_file_run", config, log=say)
        folder = out.metadata["backtest_file_run"]["output_dir"]
    else:
        if any((validation_run_dir, cluster_hardening_dir, state_map_file, overlay_cluster_file,
                tag)):
            fail("--validation-run-dir/--cluster-hardening-dir/--state-map-file/overlay files/"
                 "--tag need --input-file (a split's backtest reads its own model runs)")
        from mf_pipeline.lib.steps.research.options import split_key

        try:
            key = split_key(split)
        except ValueError as error:
            fail(f"bad --split: {error}")
            raise
        asset = f"backtest_{kind}"
        out = runner.run_assets(settings, [asset], key, {"ops": {asset: {"config": config}}},
                                log=say)
        folder = out.metadata[asset]["output_dir"]
    emit(_summary(folder), as_json)


@app.command("backtest-sanity")
def backtest_sanity(
    run_dir: Annotated[Path, Opt(help="A backtest run folder.")],
    as_json: AsJson = False,
) -> None:
    """Check a backtest run folder: trades vs headline, dates, prices, overlay and execution."""
    from mf_pipeline.lib.backtest.sanity import backtest_sanity as check

    if not run_dir.is_dir():
        fail(f"--run-dir {run_dir} is not a folder")
    report = check(run_dir)
    emit(report, as_json)
    if report["status"] != "PASS":
        raise typer.Exit(1)


@app.command("backtest-compare")
def backtest_compare(
    ctx: typer.Context,
    run_dir: Annotated[list[Path], Opt(help="A backtest run folder (repeat, at least two).")],
    as_json: AsJson = False,
) -> None:
    """Compare backtest runs side by side."""
    from mf_pipeline.orchestration import runner

    if len(run_dir) < 2:
        fail("backtest-compare needs at least two --run-dir")
    for d in run_dir:
        if not (d / "backtest_summary.json").is_file():
            fail(f"--run-dir {d} is not a finished backtest run (no backtest_summary.json)")
    out = runner.run_job(settings_of(ctx), "backtest_compare",
                         {"run_dirs": [str(d.resolve()) for d in run_dir]}, log=say)
    emit(out.metadata["backtest_compare"], as_json)


def _wf_split(settings: Any, split: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Backtest one split of a walk-forward validation: one Dagster run per model, so a
    failed model leaves the others (its error is recorded)."""
    from mf_pipeline.lib.steps.backtest.walkforward import MODELS, split_status
    from mf_pipeline.orchestration import runner

    end = split["train_end"]
    if split.get("status") != "SUCCESS":
        return {"train_end": end, "status": "FAILED_UPSTREAM", "error": split.get("error"),
                "runs": {}}
    runs: dict[str, dict[str, Any]] = {}
    judged = config | ({"test_end": split["test_end"]} if split.get("test_end") else {})
    for source in MODELS:
        asset = f"backtest_{source}"
        try:
            out = runner.run_assets(settings, [asset], f"wf{end}",
                                    {"ops": {asset: {"config": judged}}}, log=say)
        except runner.RunFailed as error:
            say(f"split {end} {source} FAILED: {error}")
            runs[source] = {"error": str(error)}
            continue
        meta = out.metadata[asset]
        runs[source] = {"run_dir": meta["output_dir"], "dagster_run_id": out.run_ids[0]}
    return {"train_end": end, "status": split_status(runs), "runs": runs,
            "error": None if any("run_dir" in r for r in runs.values()) else "all models failed"}


@app.command("backtest-wf-run")
def backtest_wf_run(
    ctx: typer.Context,
    wf_run_dir: Annotated[Path, Opt(help="A validation walk-forward folder "
                                         "(mf validation-wf-run).")],
    flow_dataset_file: Annotated[Path | None, Opt(help="Accepted for compatibility: flow "
                                                       "trades the split's own rows.")] = None,
    signal_mode: SIGNAL = None,
    exit_mode: EXIT = None,
    hold_bars: HOLD = None,
    allow_unconfirmed: UNCONFIRMED = None,
    include_watch: WATCH = None,
    fee_bps_per_side: FEE = None,
    slippage_bps_per_side: SLIP = None,
    equity_mode: EQUITY = None,
    overlay_mode: Annotated[str | None, Opt(help="Gate every model with the split's own "
                                                 "cluster policy: none | allow_only | "
                                                 "allow_watch | allow_or_unknown | block_veto."
                                            )] = None,
    overlay_coverage_mode: OV_COV = None,
    overlay_coverage_bypass: OV_BYPASS = False,
    exec_profile: PROFILE = None,
    exec_min_price: Annotated[float | None, Opt()] = None,
    exec_min_dollar_vol20: Annotated[float | None, Opt("--exec-min-dollar-vol20")] = None,
    exec_max_vol_pct: Annotated[float | None, Opt()] = None,
    exec_min_history_bars: Annotated[int | None, Opt()] = None,
    as_json: AsJson = False,
) -> None:
    """Walk-forward backtest: per split of a validation walk-forward, HMM, flow and cluster
    backtests on the split's test rows, then the aggregate report."""
    from mf_pipeline.lib.steps.backtest import walkforward as wf
    from mf_pipeline.lib.steps.validation.walkforward import load_manifest
    from mf_pipeline.orchestration import runner

    manifest = load_manifest(wf_run_dir)
    if manifest is None:
        fail(f"--wf-run-dir {wf_run_dir} has no wf_manifest.json: run mf validation-wf-run")
        raise typer.Exit(2)
    if flow_dataset_file is not None:
        say("--flow-dataset-file ignored: flow trades the rows each split's models labelled")
    config = strategy_config(
        ctx, signal_mode=signal_mode, exit_mode=exit_mode, hold_bars=hold_bars,
        allow_unconfirmed=allow_unconfirmed, include_watch=include_watch,
        fee_bps_per_side=fee_bps_per_side, slippage_bps_per_side=slippage_bps_per_side,
        equity_mode=equity_mode, overlay_mode=overlay_mode,
        overlay_coverage_mode=overlay_coverage_mode,
        overlay_coverage_bypass=overlay_coverage_bypass or None, exec_profile=exec_profile,
        exec_min_price=exec_min_price, exec_min_dollar_vol20=exec_min_dollar_vol20,
        exec_max_vol_pct=exec_max_vol_pct, exec_min_history_bars=exec_min_history_bars)
    config["non_overlapping_test"] = bool(
        (manifest.get("config") or {}).get("config", {}).get("validation", {})
        .get("non_overlapping_test", True))  # fmt: skip
    settings = settings_of(ctx)
    signature = {"wf_run_dir": str(wf_run_dir.resolve()), "config": config}
    folder = wf.wf_bt_folder(settings, signature)
    splits = manifest.get("splits") or []
    say(f"walk-forward backtest {folder.name}: {len(splits)} splits of {wf_run_dir.name}")
    records: list[dict[str, Any]] = []
    for split in splits:
        records.append(_wf_split(settings, split, config))
        wf.save_manifest(folder, signature, records)
    out = runner.run_assets(settings, ["wf_backtest"], None, {"ops": {"wf_backtest": {
        "config": {"wf_bt_dir": str(folder)}}}}, log=say)
    meta = out.metadata["wf_backtest"]
    emit({"wf_bt_id": folder.name, "wf_bt_dir": str(folder),
          **{k: meta.get(k) for k in ("splits_total", "splits_successful", "splits_failed")},
          "report": str(folder / "wf_backtest_report.md")}, as_json)
