"""Quality commands: symbol master, sanity checks, problem tickers, the lake doctor."""

from __future__ import annotations

from typing import Annotated

import typer

from mf_pipeline.cli.app import AsJson, app, emit, fail, say, settings_of


def _materialize(ctx: typer.Context, *assets: str) -> dict:
    from mf_pipeline.orchestration import runner

    settings = settings_of(ctx)
    outcome = runner.run_partitioned(settings, assets, (), (), [], log=say)
    return outcome.metadata


@app.command("build-symbol-master")
def build_symbol_master(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Materialize the symbol master (one row per Bronze ticker) through Dagster."""
    emit(_materialize(ctx, "symbol_master").get("symbol_master", {}), as_json)


@app.command("sanity-checks")
def sanity_checks(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Materialize the symbol master and the Bronze sanity artifacts (artifacts/bronze_qa)."""
    metadata = _materialize(ctx, "symbol_master", "bronze_sanity")
    emit(metadata.get("bronze_sanity", {}), as_json)


@app.command("list-problem-tickers")
def list_problem_tickers(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="How many tickers to list.")] = 50,
    only_invalid: Annotated[bool, typer.Option(help="Only tickers with invalid rows.")] = False,
    as_json: AsJson = False,
) -> None:
    """Tickers with invalid, warned or rejected rows, or failed files (reads the symbol master)."""
    import polars as pl

    from mf_pipeline.lib.layers.bronze.qa import problem_tickers
    from mf_pipeline.lib.steps.qa_step import load_symbol_master

    try:
        master = load_symbol_master(settings_of(ctx))
    except FileNotFoundError as error:
        fail(str(error))
    table = problem_tickers(master, limit=limit, only_invalid=only_invalid)
    if as_json:
        emit(table.to_dicts(), as_json)
        return
    if table.is_empty():
        typer.echo("No problem tickers found.")
        return
    with pl.Config(tbl_rows=limit, tbl_cols=-1, tbl_width_chars=160):
        typer.echo(table)


@app.command()
def doctor(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option(help="Quarantine broken derived files and state so "
                                         "that the next `mf run` rebuilds them.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")]
    = False,
) -> None:
    """Check every lake file (footers, schemas, carries, settings records, ledger); exit 1 when
    problems remain. Materializes the `lake_doctor` asset through Dagster."""
    import json
    from pathlib import Path

    from mf_pipeline.orchestration import runner

    outcome = runner.run_assets(settings_of(ctx), ["lake_doctor"],
                                run_config={"ops": {"lake_doctor": {"config": {"repair": repair}}}},
                                log=say)
    report = json.loads(Path(outcome.metadata["lake_doctor"]["path"]).read_text())
    emit(report, as_json, _doctor_text(report))
    if report["remaining_count"]:
        raise typer.Exit(1)


def _doctor_text(report: dict) -> str:
    checked = sum(report["files_checked"].values())
    found = f"{report['problem_count']} problem(s)" if report["problem_count"] else "no problems"
    lines = [f"lake doctor: {checked} files checked under {report['data_root']} in "
             f"{report['seconds']:.2f}s: {found}"]
    for problem in report["problems"]:
        lines.append(f"  [{problem['kind']}] {problem['path']}")
        lines.append(f"      {problem['what']}")
        if problem["repair"]:
            lines.append(f"      repaired: {problem['repair']}")
    if report["repair"] and report["problem_count"]:
        lines.append(f"repaired {report['repaired_count']}, remaining {report['remaining_count']}")
    lines.extend(f"next: {step}" for step in report["next_steps"])
    return "\n".join(lines)
