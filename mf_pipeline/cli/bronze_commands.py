"""Raw → manifest → Bronze commands, and the whole-pipeline ``demo`` and ``run``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mf_pipeline.cli.app import AsJson, app, emit, fail, plain, run_summary, say, settings_of
from mf_pipeline.lib.registry import UNTIL_CHOICES
from mf_pipeline.orchestration.planning import (
    Selection,
    everything,
    plan_and_run,
    split_assets,
)

if TYPE_CHECKING:
    from mf_pipeline.lib.settings import Settings
    from mf_pipeline.orchestration.runner import RunOutcome


def _execute(ctx: typer.Context, selection: Selection, full: bool = False, limit: int | None = None,
             only_status: list[str] | None = None, promote: bool = True) -> RunOutcome:
    """Plan the tickers, then materialize ``selection`` through Dagster.
    Planning and run hold the lake lock together, so a plan never goes stale while waiting."""
    from mf_pipeline.orchestration import runner

    settings = settings_of(ctx)
    with runner.holding_lake_lock(settings, log=say):
        return plan_and_run(settings, selection, full, limit, only_status, promote, log=say)


@app.command()
def demo(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Generate the sample universe if needed and materialize every asset; say where to look."""
    from mf_pipeline.orchestration import runner

    settings = settings_of(ctx)
    _convert_a_v1_lake(settings)
    outcome = _execute(ctx, everything(runner.definitions()))
    research = _stale_research(settings)
    if research:  # the in-sample `full` split: the viewer's regime overlays
        fits = runner.run_assets(settings, research, "full", log=say)
        outcome.metadata |= fits.metadata
        outcome.run_ids += fits.run_ids
        outcome.seconds += fits.seconds
        ari = {k: round(v, 3) for k, v in outcome.metadata.get("hmm_model", {}).items()
               if k.startswith("ari_") and v is not None}
        if ari:
            say(f"HMM regime recovery on the sample (ARI vs true regimes, in-sample): {ari}")
    candidates = _candidates(settings, refit=bool(research))
    outcome.metadata |= candidates.metadata
    outcome.run_ids += candidates.run_ids
    outcome.seconds += candidates.seconds
    backtest = (outcome.metadata.get("backtest_hmm") or {}).get("output_dir")
    grid = (outcome.metadata.get("backtest_grid") or {}).get("output_dir")
    pack = (outcome.metadata.get("production_candidates") or {}).get("pack_dir")
    rerun = (outcome.metadata.get("candidate_rerun") or {}).get("output_dir")
    emit(outcome.metadata, as_json, run_summary(outcome) + (
        "\n\nWhere to look next:\n"
        f"  lake:       {settings.data_root}\n"
        f"  artifacts:  {settings.artifacts_root}\n"
        f"  ledger:     {settings.bronze_root / 'file_ledger.parquet'}\n"
        "  UI:         make ui      (then open http://127.0.0.1:3000)\n"
        "  viewer:     make viewer  (then open http://127.0.0.1:8501: candles and state bands)\n"
        "  SQL:        mf sql \"SELECT ticker, count(*) FROM features GROUP BY 1\""
        + (f"\n  backtest:   {backtest}  (in-sample; docs/BACKTESTS.md)" if backtest else "")
        + (f"\n  grid:       {grid}/grid_report.html  (in-sample; docs/GRIDS.md)" if grid else "")
        + (f"\n  pack:       {pack}  (docs/CANDIDATES.md)" if pack else "")
        + (f"\n  re-run:     {rerun}  (nightly: mf ops-nightly-run; docs/OPS.md)" if rerun else "")
    ))


def _convert_a_v1_lake(settings: Settings) -> None:
    """The demo's lake from before lake v2 is converted first (``mf doctor --repair``, as a
    Dagster run), so ``make demo`` keeps working on an old checkout."""
    from mf_pipeline.lib import lake_migrate
    from mf_pipeline.orchestration import runner

    if lake_migrate.pending(settings):
        say("the lake holds the v1 layout (one folder per ticker): converting it to lake v2 "
            "first (mf doctor --repair)")
        runner.run_assets(settings, ["lake_doctor"], log=say,
                          run_config={"ops": {"lake_doctor": {"config": {"repair": True}}}})


def _candidates(settings: Settings, refit: bool) -> RunOutcome:
    """Lock the candidates of the demo's grids (a new pack when the models were refitted or
    none exists) and re-run them at the lake's last date, as a night would."""
    from mf_pipeline.lib.candidates.pack import latest_pack
    from mf_pipeline.lib.ops import lake_last_date
    from mf_pipeline.orchestration import runner

    outcome = runner.RunOutcome()
    try:
        latest_pack(settings.artifacts_root)
        exists = True
    except FileNotFoundError:
        exists = False
    if refit or not exists:
        outcome = runner.run_assets(settings, ["production_candidates"], None, log=say)
    as_of = lake_last_date(settings)
    if as_of is not None:
        rerun = runner.run_assets(settings, ["candidate_rerun"], as_of.isoformat(), log=say)
        outcome.metadata |= rerun.metadata
        outcome.run_ids += rerun.run_ids
        outcome.seconds += rerun.seconds
    return outcome


def _stale_research(settings: Settings) -> list[str]:
    """The `full`-split research assets that need a fit: not materialized since the last ML
    dataset export, or with other options or research settings; none on an unchanged rerun."""
    from mf_pipeline.orchestration import runner
    from mf_pipeline.orchestration.freshness import stale_split_assets

    defs = runner.definitions()
    research = split_assets(defs)
    stale = stale_split_assets(runner.instance(settings), defs, settings, research, "full")
    if research and not stale:
        say("research models on `full` are current (fitted after the last ML dataset export, "
            "same settings): not refitted")
    return stale


@app.command()
def run(
    ctx: typer.Context,
    until: Annotated[str, typer.Option(help=f"Last layer: {', '.join(UNTIL_CHOICES)}.")] = "bronze",
    full: Annotated[bool, typer.Option(help="Rebuild every ticker, not just changed.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N tickers.")] = None,
    as_json: AsJson = False,
) -> None:
    """Materialize raw → manifest → … → LAYER for the tickers that need it, through Dagster."""
    from mf_pipeline.orchestration import planning as pipeline
    from mf_pipeline.orchestration.accounting import part

    with part("CLI: imports of the runner (Dagster)"):
        from mf_pipeline.orchestration import runner
    try:
        selection = pipeline.until(runner.definitions(), until)
    except ValueError as error:
        fail(str(error))
    outcome = _execute(ctx, selection, full=full, limit=limit, promote=limit is None)
    with part("CLI: summary and output"):
        emit(outcome.metadata, as_json, run_summary(outcome))


@app.command("bronze-run")
def bronze_run(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option(help="Classify and write the manifest only.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N tickers.")] = None,
    full: Annotated[bool, typer.Option(help="Also reprocess UNCHANGED files.")] = False,
    only_status: Annotated[
        str | None, typer.Option(help="Only files of this status (NEW, CHANGED, APPENDED, ...).")
    ] = None,
    progress_every: Annotated[int, typer.Option(min=1, help="Kept for compatibility.")] = 100,
    as_json: AsJson = False,
) -> None:
    """Incremental Bronze build (old semantics: NEW/CHANGED/APPENDED files, or all with --full).

    The stable manifest is promoted only without --limit and --only-status, as before.
    """
    from mf_pipeline.orchestration import runner

    del progress_every  # one vectorised pass: there is no per-file loop to report on
    statuses = [only_status.upper()] if only_status else None
    if dry_run:
        outcome = _execute(ctx, Selection(("manifest",), (), ()))
        emit(outcome.metadata.get("manifest", {}), as_json, run_summary(outcome))
        return
    selection = Selection(("manifest",), ("bronze",), ())
    runner.definitions()  # fail early on a broken code location
    outcome = _execute(ctx, selection, full=full, limit=limit, only_status=statuses,
                       promote=limit is None and statuses is None)
    emit({"manifest": outcome.metadata.get("manifest", {}),
          "bronze": outcome.metadata.get("bronze", {})}, as_json, run_summary(outcome))


@app.command("discover-files")
def discover_files(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List raw files with fingerprints (unclassified manifest) without touching the lake state."""
    from mf_pipeline.lib.layers import manifest as mf
    from mf_pipeline.lib.steps import bronze_step

    settings = settings_of(ctx)
    current = mf.discover(bronze_step.ensure_raw_root(settings, say)).drop("prefix_hash")
    out = settings.bronze_root / "manifests" / "file_manifest_discovered.parquet"
    from mf_pipeline.lib import lake

    lake.write_parquet(current, out, settings.parquet)
    emit({"files": current.height, "exchange_counts":
          dict(sorted(current.group_by("exchange").len().rows())), "path": str(out)}, as_json)


def _single_file(ctx: typer.Context, file: Path, exchange: str | None):
    import polars as pl

    from mf_pipeline.lib.lake import is_valid_ticker, ticker_from_file_name
    from mf_pipeline.lib.layers.manifest import infer_exchange

    settings = settings_of(ctx)
    if not file.is_file():
        fail(f"no such file: {file}")
    path = file.resolve()
    ticker = ticker_from_file_name(path.name)
    files = pl.DataFrame({
        "source_file": [path.name], "path": [str(path)],
        "ticker": [ticker if is_valid_ticker(ticker) else None],
        "exchange": [(exchange or infer_exchange(str(path))).upper()],
        "fail_reason": [None if is_valid_ticker(ticker) else "invalid_file_ticker"],
    }, schema_overrides={"fail_reason": pl.String})
    return settings, files


@app.command("parse-sample")
def parse_sample(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option(help="One raw file.")],
    exchange: Annotated[str | None, typer.Option(help="Override the inferred exchange.")] = None,
    as_json: AsJson = False,
) -> None:
    """Parse one raw file and print its line accounting and first rows. Writes nothing."""
    from mf_pipeline.lib.layers.bronze.read import read_lines

    _settings, files = _single_file(ctx, file, exchange)
    lines = read_lines(files)
    emit({"lines": lines.height}, as_json, f"{lines.head(8)}\nlines: {lines.height:,}")


@app.command("validate-sample")
def validate_sample(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option(help="One raw file.")],
    exchange: Annotated[str | None, typer.Option(help="Override the inferred exchange.")] = None,
    as_json: AsJson = False,
) -> None:
    """Parse and validate one raw file; print counts, flag counts and its ledger row."""
    import datetime as dt

    from mf_pipeline.lib.layers.bronze.build import build_bronze
    from mf_pipeline.lib.steps.bronze_step import _thresholds

    settings, files = _single_file(ctx, file, exchange)
    result = build_bronze(files, _thresholds(settings), "validate-sample", dt.datetime.now(dt.UTC))
    flags = [c for c in result.valid.columns if c.startswith("q_")]
    payload = {
        "ledger": result.ledger.to_dicts()[0],
        "quality_flag_counts_valid_rows": {f: int(result.valid[f].sum()) for f in flags},
    }
    tables = [result.valid.head(5), *([result.rejects] if result.rejects.height else [])]
    emit(payload, as_json, "\n".join([*map(str, tables), plain(payload)]))


@app.command("bronze-one")
def bronze_one(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option(help="A raw file under the raw root.")],
    as_json: AsJson = False,
) -> None:
    """Rebuild Bronze for the ticker of one raw file (a Dagster run on its shard)."""
    from mf_pipeline.lib.lake import ticker_from_file_name
    from mf_pipeline.orchestration import runner

    settings = settings_of(ctx)
    path = file.resolve()
    if settings.raw_root.resolve() not in path.parents:
        fail(f"{path} is not under raw_root {settings.raw_root}; use validate-sample for "
             "files outside the raw tree")
    if not path.is_file():
        fail(f"no such file: {file}")
    ticker = ticker_from_file_name(path.name)
    outcome = runner.run_partitioned(settings, ("manifest",), ("bronze",), (), [ticker],
                                     log=say)
    emit(outcome.metadata.get("bronze", {}), as_json, run_summary(outcome))
