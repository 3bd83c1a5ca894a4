"""Validation commands (old names): validation runs, walk-forward validation, cluster QA,
hardening (tradable-state policies), their sanity reports and compares.

Every command that computes runs as a Dagster run: a split's validation is the
``state_validation_<source>`` asset on that split partition; a file or folder is the one-op
job of the same name (``defs/validation/jobs.py``). Sanity commands only read.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from mf_pipeline.cli.app import AsJson, app, emit, fail, say, settings_of

Opt = typer.Option
SOURCES = ("flow", "hmm", "cluster")


def _validation_config(**values: Any) -> dict[str, Any]:
    """The run config of a validation (None: the settings default)."""
    if values.get("bootstrap_mode") is not None:
        values["bootstrap_mode"] = values["bootstrap_mode"].strip().lower()
        if values["bootstrap_mode"] not in ("block", "circular", "iid"):
            fail("--bootstrap-mode must be block, circular or iid")
    return {k: v for k, v in values.items() if v is not None}


def _checked_options(ctx: typer.Context, config: dict[str, Any]) -> None:
    from mf_pipeline.defs.validation.config import ValidationConfig

    names = set(ValidationConfig.model_fields)
    try:
        ValidationConfig(**{k: v for k, v in config.items() if k in names}).options(
            settings_of(ctx))
    except ValueError as error:
        fail(str(error))


BOOT_N = Annotated[int | None, Opt("--bootstrap-n", min=10, help="Bootstrap replicates "
                                   "(default settings, 1000).")]
BOOT_CI = Annotated[float | None, Opt("--bootstrap-ci", min=0.0, max=1.0,
                                      help="CI level in (0, 1) (default 0.95).")]
BOOT_MODE = Annotated[str | None, Opt("--bootstrap-mode", help="block (dates in stationary "
                                      "blocks, default) | circular | iid (the old rows-iid, "
                                      "too narrow).")]
BLOCK = Annotated[int | None, Opt("--block-length", min=1, help="Dates per block (default: "
                                  "Politis-White, at least the longest horizon).")]
PRE = Annotated[int | None, Opt("--event-window-pre", min=0, help="Bars before a transition.")]
POST = Annotated[int | None, Opt("--event-window-post", min=1, help="Bars after.")]
MIN_EVENTS = Annotated[int | None, Opt("--min-events-per-transition", min=1)]


@app.command("validation-run")
def validation_run(
    ctx: typer.Context,
    input_file: Annotated[Path | None, Opt(help="Any state-labelled Parquet/CSV (ticker, "
                                               "trade_date, a state column). Without it: "
                                               "--split/--source.")] = None,
    input_type: Annotated[str, Opt(help="auto | hmm | cluster | flow | generic.")] = "auto",
    state_col: Annotated[str | None, Opt(help="State column (needed for generic).")] = None,
    split: Annotated[str | None, Opt(help="Without --input-file: split key, full (in-sample, "
                                          "default) or wfYYYY-MM-DD.")] = None,
    source: Annotated[str, Opt(help="Without --input-file: flow | hmm (filtered states) | "
                                    "cluster.")] = "hmm",
    bootstrap_n: BOOT_N = None,
    bootstrap_ci: BOOT_CI = None,
    bootstrap_mode: BOOT_MODE = None,
    block_length: BLOCK = None,
    alpha: Annotated[float | None, Opt(help="Holm family-wise level (default 0.05).")] = None,
    event_window_pre: PRE = None,
    event_window_post: POST = None,
    min_events_per_transition: MIN_EVENTS = None,
    max_gap_days: Annotated[int | None, Opt(min=1, help="No event across a longer gap.")] = None,
    window_months: Annotated[int | None, Opt(min=1)] = None,
    step_months: Annotated[int | None, Opt(min=1)] = None,
    write_large_artifacts: Annotated[bool, Opt(help="Also write transition_events.parquet "
                                                    "and a random adapted-row sample.")] = False,
    sample_frac: Annotated[float | None, Opt(help="Share of tickers kept (whole histories).")
                           ] = None,
    date_from: Annotated[str | None, Opt(help="YYYY-MM-DD, inclusive.")] = None,
    date_to: Annotated[str | None, Opt(help="YYYY-MM-DD, inclusive.")] = None,
    as_json: AsJson = False,
) -> None:
    """Validate states: bootstrap CIs, Holm-corrected edges, event study, stability, scorecards."""
    from mf_pipeline.lib.steps.validation.run import read_run
    from mf_pipeline.orchestration import runner

    config = _validation_config(
        bootstrap_n=bootstrap_n, bootstrap_ci=bootstrap_ci, bootstrap_mode=bootstrap_mode,
        block_length=block_length, alpha=alpha, event_window_pre=event_window_pre,
        event_window_post=event_window_post,
        min_events_per_transition=min_events_per_transition, max_gap_days=max_gap_days,
        window_months=window_months, step_months=step_months,
        write_large_artifacts=write_large_artifacts or None)
    _checked_options(ctx, config)
    settings = settings_of(ctx)
    if input_file is not None:
        kind = input_type.strip().lower()
        if kind not in ("auto", "hmm", "cluster", "flow", "generic"):
            fail("--input-type must be auto, hmm, cluster, flow or generic")
        if kind == "generic" and not state_col:
            fail("--input-type generic needs --state-col")
        if not input_file.is_file():
            fail(f"--input-file {input_file} does not exist")
        if sample_frac is not None and not 0 < sample_frac <= 1:
            fail(f"--sample-frac must be in (0, 1], got {sample_frac}")
        config |= {"input_file": str(input_file.resolve()), "input_type": kind}
        config |= {k: v for k, v in (("state_col", state_col), ("sample_frac", sample_frac),
                                      ("date_from", date_from), ("date_to", date_to)) if v}
        out = runner.run_job(settings, "validation_file_run", config, log=say)
        folder = out.metadata["validation_file_run"]["output_dir"]
    else:
        if any((state_col, sample_frac, date_from, date_to)):
            fail("--state-col/--sample-frac/--date-from/--date-to need --input-file")
        from mf_pipeline.lib.steps.research.options import split_key

        if source not in SOURCES:
            fail(f"--source must be one of {', '.join(SOURCES)}")
        asset = f"state_validation_{source}"
        try:
            key = split_key(split)
        except ValueError as error:
            fail(f"bad --split: {error}")
            raise
        out = runner.run_assets(settings, [asset], key, {"ops": {asset: {"config": config}}},
                                log=say)
        folder = out.metadata[asset]["output_dir"]
    run = read_run(Path(folder))
    emit({k: run.get(k) for k in ("run_id", "input_file", "input_type", "state_label_type",
                                  "state_column", "in_sample", "rows", "state_count",
                                  "ticker_count", "validation_grade", "duration_sec")}
         | {"block_length": run["bootstrap"].get("block_length"), "output_dir": folder},
         as_json)


def _report(report: dict[str, Any], as_json: bool) -> None:
    emit(report, as_json)
    if not report.get("passed", True):
        raise typer.Exit(1)


def _read(reader: Any, folder: Path) -> dict[str, Any]:
    try:
        return reader(folder)
    except FileNotFoundError as error:
        fail(str(error))
        raise


@app.command("validation-sanity")
def validation_sanity(
    run_dir: Annotated[Path, Opt(help="A validation_runs/<run> folder.")],
    as_json: AsJson = False,
) -> None:
    """Summarise a validation run (read-only); exit 1 when it fails the sanity rules."""
    from mf_pipeline.lib.steps.validation.sanity import validation_sanity as report

    _report(_read(report, run_dir), as_json)


@app.command("validation-compare")
def validation_compare(
    ctx: typer.Context,
    run_dir_a: Annotated[Path, Opt(help="Validation run A.")],
    run_dir_b: Annotated[Path, Opt(help="Validation run B.")],
    as_json: AsJson = False,
) -> None:
    """Compare two validation runs, states matched by their outcome profiles."""
    from mf_pipeline.orchestration import runner

    for folder in (run_dir_a, run_dir_b):
        if not folder.is_dir():
            fail(f"{folder} does not exist")
    out = runner.run_job(settings_of(ctx), "validation_compare",
                         {"run_dir_a": str(run_dir_a.resolve()),
                          "run_dir_b": str(run_dir_b.resolve())}, log=say)
    emit(out.metadata["validation_compare"], as_json)


def _one_of(a: Path | None, b: Path | None, names: str) -> None:
    if (a is None) == (b is None):
        fail(f"give exactly one of {names}")
    for folder in (a, b):
        if folder is not None and not folder.is_dir():
            fail(f"{folder} does not exist")


QA_OPTIONS = ("ret_cv_threshold", "min_n_rows", "min_state_share",
              "ci_width_quantile_threshold", "sign_consistency_threshold", "ci_width_max")


@app.command("cluster-qa-run")
def cluster_qa_run(
    ctx: typer.Context,
    validation_run_dir: Annotated[Path | None, Opt(help="One validation run folder.")] = None,
    wf_run_dir: Annotated[Path | None, Opt(help="A validation_walkforward/<id> folder.")] = None,
    ret_cv_threshold: Annotated[float | None, Opt()] = None,
    min_n_rows: Annotated[int | None, Opt()] = None,
    min_state_share: Annotated[float | None, Opt()] = None,
    ci_width_quantile_threshold: Annotated[float | None, Opt()] = None,
    sign_consistency_threshold: Annotated[float | None, Opt()] = None,
    ci_width_max: Annotated[float | None, Opt(help="WIDE_CI absolute width (default 0.04).")
                            ] = None,
    as_json: AsJson = False,
) -> None:
    """Flag fragile states of a validation run (or of every walk-forward split)."""
    from mf_pipeline.orchestration import runner

    _one_of(validation_run_dir, wf_run_dir, "--validation-run-dir / --wf-run-dir")
    local = locals()
    config = {k: local[k] for k in QA_OPTIONS if local[k] is not None}
    config |= {k: str(v.resolve()) for k, v in (("validation_run_dir", validation_run_dir),
                                                ("wf_run_dir", wf_run_dir)) if v}
    out = runner.run_job(settings_of(ctx), "cluster_qa_run", config, log=say)
    emit(out.metadata["cluster_qa_run"], as_json)


POLICY_OPTIONS = ("min_n_rows_hard", "min_state_share_hard", "ret_cv_hard",
                  "sign_consistency_hard", "ci_width_hard_quantile", "ci_width_hard_max",
                  "score_min_allow", "score_min_watch", "alpha")


@app.command("cluster-hardening-run")
def cluster_hardening_run(
    ctx: typer.Context,
    validation_run_dir: Annotated[Path | None, Opt(help="One validation run folder.")] = None,
    wf_run_dir: Annotated[Path | None, Opt(help="A validation_walkforward/<id> folder.")] = None,
    clustered_rows_file: Annotated[Path | None, Opt(help="Rows to export with their policy "
                                                         "(default: the run's input).")] = None,
    export_filtered: Annotated[bool, Opt("--export-filtered/--no-export-filtered")] = True,
    min_n_rows_hard: Annotated[int | None, Opt()] = None,
    min_state_share_hard: Annotated[float | None, Opt()] = None,
    ret_cv_hard: Annotated[float | None, Opt()] = None,
    sign_consistency_hard: Annotated[float | None, Opt()] = None,
    ci_width_hard_quantile: Annotated[float | None, Opt()] = None,
    ci_width_hard_max: Annotated[float | None, Opt(help="HARD_WIDE_CI absolute width.")] = None,
    score_min_allow: Annotated[float | None, Opt()] = None,
    score_min_watch: Annotated[float | None, Opt()] = None,
    alpha: Annotated[float | None, Opt(help="ALLOW needs a Holm-significant edge.")] = None,
    force: Annotated[bool, Opt(help="Recompute even when current.")] = False,
    as_json: AsJson = False,
) -> None:
    """Classify states ALLOW / WATCH / BLOCK with reasons and a tradability score."""
    from mf_pipeline.orchestration import runner

    _one_of(validation_run_dir, wf_run_dir, "--validation-run-dir / --wf-run-dir")
    if clustered_rows_file is not None and not clustered_rows_file.is_file():
        fail(f"--clustered-rows-file {clustered_rows_file} does not exist")
    local = locals()
    config: dict[str, Any] = {k: local[k] for k in POLICY_OPTIONS if local[k] is not None}
    config |= {k: str(v.resolve()) for k, v in (("validation_run_dir", validation_run_dir),
                                                ("wf_run_dir", wf_run_dir),
                                                ("clustered_rows_file", clustered_rows_file))
               if v}
    config |= {"export_filtered": export_filtered, "force": force}
    out = runner.run_job(settings_of(ctx), "cluster_hardening_run", config, log=say)
    emit(out.metadata["cluster_hardening_run"], as_json)


@app.command("cluster-hardening-sanity")
def cluster_hardening_sanity(
    hardening_dir: Annotated[Path, Opt(help="A cluster_hardening folder (single or wf).")],
    as_json: AsJson = False,
) -> None:
    """Summarise a policy folder (read-only); exit 1 when inconsistent."""
    from mf_pipeline.lib.steps.validation.sanity import hardening_sanity

    _report(_read(hardening_sanity, hardening_dir), as_json)


@app.command("cluster-hardening-compare")
def cluster_hardening_compare(
    ctx: typer.Context,
    hardening_dir_a: Annotated[Path, Opt(help="Policy folder A.")],
    hardening_dir_b: Annotated[Path, Opt(help="Policy folder B.")],
    as_json: AsJson = False,
) -> None:
    """Compare two policies, states matched by their outcome profiles."""
    from mf_pipeline.orchestration import runner

    for folder in (hardening_dir_a, hardening_dir_b):
        if not (folder / "cluster_hardening_policy.json").is_file():
            fail(f"{folder} has no cluster_hardening_policy.json")
    out = runner.run_job(settings_of(ctx), "cluster_hardening_compare",
                         {"hardening_dir_a": str(hardening_dir_a.resolve()),
                          "hardening_dir_b": str(hardening_dir_b.resolve())}, log=say)
    emit(out.metadata["cluster_hardening_compare"], as_json)


@app.command("validation-wf-sanity")
def validation_wf_sanity(
    wf_run_dir: Annotated[Path, Opt(help="A validation_walkforward/<id> folder.")],
    as_json: AsJson = False,
) -> None:
    """Summarise a walk-forward validation (read-only); exit 1 when a split failed."""
    from mf_pipeline.lib.steps.validation.sanity import wf_sanity

    _report(_read(wf_sanity, wf_run_dir), as_json)


SPLIT_SELECTION = ("hmm_model", "hmm_states", "cluster_model", "cluster_labels",
                   *(f"{kind}_{source}" for source in SOURCES
                     for kind in ("state_validation", "cluster_qa", "state_policy")))
"""One split of a walk-forward validation: both models, then each source's validation, QA and
policy — one Dagster run on the split partition."""


def _wf_split(settings: Any, key: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run one split; its manifest record (SUCCESS with the folders, or FAILED)."""
    from mf_pipeline.lib.steps.research.artifacts import now
    from mf_pipeline.lib.steps.validation.run import read_run
    from mf_pipeline.orchestration import runner

    started = now()
    record: dict[str, Any] = {"train_end": key.removeprefix("wf"), "split_id": key,
                              "started_ts": started, "skipped_existing": False}
    try:
        out = runner.run_assets(settings, SPLIT_SELECTION, key, config, log=say)
    except runner.RunFailed as error:
        return record | {"status": "FAILED", "error": str(error), "finished_ts": now()}
    meta = out.metadata
    record |= {"status": "SUCCESS", "error": None, "finished_ts": now(),
               "hmm_run_dir": meta["hmm_model"]["output_dir"],
               "cluster_run_dir": meta["cluster_model"]["output_dir"],
               **{f"val_{s}_dir": meta[f"state_validation_{s}"]["output_dir"] for s in SOURCES},
               "common_rows": meta["state_validation_hmm"].get("common_rows"),
               "dagster_run_id": out.run_ids[0]}  # fmt: skip
    bounds = read_run(record["val_hmm_dir"]).get("bounds") or {}
    record |= {"test_start": bounds.get("min_trade_date"),
               "test_end": meta["state_validation_hmm"].get("test_end")
               or bounds.get("max_trade_date")}
    return record


def _current(record: dict[str, Any] | None) -> bool:
    return bool(record and record.get("status") == "SUCCESS" and all(
        record.get(f"val_{s}_dir") and (Path(record[f"val_{s}_dir"]) / "run_summary.json")
        .is_file() for s in SOURCES))


@app.command("validation-wf-run")
def validation_wf_run(
    ctx: typer.Context,
    dataset: Annotated[Path | None, Opt(help="ML dataset parquet (default: newest export).")
                       ] = None,
    train_end_list: Annotated[str | None, Opt(help="Comma-separated train ends (default "
                                                   "settings).")] = None,
    hmm_components: Annotated[int | None, Opt(min=2)] = None,
    cluster_method: Annotated[str | None, Opt(help="gmm | kmeans (default gmm).")] = None,
    cluster_k: Annotated[int | None, Opt(min=2)] = None,
    scaling_scope: Annotated[str | None, Opt(help="global | per_ticker (default per_ticker).")
                             ] = None,
    bootstrap_n: BOOT_N = None,
    bootstrap_mode: BOOT_MODE = None,
    block_length: BLOCK = None,
    event_window_pre: PRE = None,
    event_window_post: POST = None,
    min_events_per_transition: MIN_EVENTS = None,
    non_overlapping_test: Annotated[bool | None, Opt(
        "--non-overlapping-test/--overlapping-test",
        help="Judge each split up to the next train end (default) or to the end of data "
             "(the old nested design).")] = None,
    force: Annotated[bool, Opt(help="Rerun every split.")] = False,
    force_split: Annotated[list[str] | None, Opt(help="Rerun these train ends (repeatable, "
                                                      "comma lists allowed).")] = None,
    stop_on_error: Annotated[bool, Opt(help="Stop at the first failed split.")] = False,
    max_splits: Annotated[int | None, Opt(min=1)] = None,
    as_json: AsJson = False,
) -> None:
    """Walk-forward validation: per split fit HMM + clusters, validate flow/HMM/cluster
    states on the same rows, QA and policy; then the aggregate report."""
    import datetime as dt

    from mf_pipeline.lib.research.splits import parse_train_ends
    from mf_pipeline.lib.steps.research.prepare import resolve_dataset
    from mf_pipeline.lib.steps.validation import walkforward as wf_step
    from mf_pipeline.lib.validation.walkforward import test_windows
    from mf_pipeline.orchestration import runner

    settings = settings_of(ctx)
    w = settings.validation_walkforward
    try:
        ends = [d.isoformat() for d in parse_train_ends(
            train_end_list or [str(d) for d in w.train_end_list_default])]
        data = str(resolve_dataset(settings, dataset))
    except (ValueError, FileNotFoundError) as error:
        fail(str(error))
        raise
    ends = ends[:max_splits] if max_splits else ends
    method = (cluster_method or w.cluster_method).strip().lower()
    scope = (scaling_scope or w.scaling_scope).strip().lower()
    if method not in ("gmm", "kmeans"):
        fail("--cluster-method must be gmm or kmeans")
    if scope not in ("global", "per_ticker"):
        fail("--scaling-scope must be global or per_ticker")
    validation = _validation_config(
        bootstrap_n=bootstrap_n, bootstrap_mode=bootstrap_mode, block_length=block_length,
        event_window_pre=event_window_pre, event_window_post=event_window_post,
        min_events_per_transition=min_events_per_transition)
    _checked_options(ctx, validation)
    validation["non_overlapping_test"] = w.non_overlapping_test \
        if non_overlapping_test is None else non_overlapping_test  # fmt: skip
    models = {"hmm_model": {"n_components": hmm_components or w.hmm_components,
                            "scaling_scope": scope, "dataset_path": data},
              "cluster_model": {"method": method, "n_clusters": cluster_k or w.cluster_k,
                                "scaling_scope": scope, "dataset_path": data}}  # fmt: skip
    windows = dict(test_windows([dt.date.fromisoformat(e) for e in ends], None,
                                validation["non_overlapping_test"]))

    def ops(end: str) -> dict[str, Any]:
        """The split's run config: models, then validations up to the next train end."""
        last = windows[dt.date.fromisoformat(end)]
        judged = validation | ({"test_end": last.isoformat()} if last else {})
        return {**{k: {"config": v} for k, v in models.items()},
                **{f"state_validation_{s}": {"config": judged} for s in SOURCES},
                # as the old walk-forward: policies without the row exports (research.md §9.7)
                **{f"state_policy_{s}": {"config": {"export_filtered": False}}
                   for s in SOURCES}}

    sig = wf_step.signature(settings, data, ends, {"models": models, "validation": validation})
    folder = wf_step.wf_folder(settings, sig)
    old = {s["train_end"]: s for s in (wf_step.load_manifest(folder) or {}).get("splits", [])}
    forced = {d.strip() for item in force_split or [] for d in item.split(",") if d.strip()}
    k, states = models["cluster_model"]["n_clusters"], models["hmm_model"]["n_components"]
    say(f"walk-forward {folder.name}: {len(ends)} splits, {method} k={k}, HMM {states} states")
    records = []
    for end in ends:
        previous = old.get(end)
        if not force and end not in forced and _current(previous):
            say(f"split {end}: current, skipped (--force-split {end} reruns it)")
            records.append({**previous, "skipped_existing": True})
            continue
        record = _wf_split(settings, f"wf{end}", {"ops": ops(end)})
        records.append(record)
        wf_step.save_manifest(folder, sig, records + [s for e, s in old.items()
                                                      if e not in ends])
        if record["status"] != "SUCCESS":
            say(f"split {end} FAILED: {record['error']}")
            if stop_on_error or not w.continue_on_error:
                fail(f"split {end} failed; stopped (no aggregate written)")
    wf_step.save_manifest(folder, sig, records)
    out = runner.run_assets(settings, ["wf_validation"], None, {"ops": {"wf_validation": {
        "config": {"wf_run_dir": str(folder)}}}}, log=say)
    meta = out.metadata["wf_validation"]
    emit({"wf_run_id": folder.name, "wf_run_dir": str(folder),
          **{k: meta.get(k) for k in ("splits_total", "splits_successful", "splits_failed",
                                      "wins_by_metric")},
          "report": str(folder / "wf_full_report.md")}, as_json)
