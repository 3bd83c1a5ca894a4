"""Bronze quality commands: symbol master, sanity checks, problem tickers."""

from __future__ import annotations

from typing import Annotated

import typer

from mf_pipeline.cli.app import app, fail, say, settings_of, show


def _materialize(ctx: typer.Context, *assets: str) -> dict:
    from mf_pipeline.orchestration import runner

    settings = settings_of(ctx)
    outcome = runner.run_partitioned(settings, assets, (), (), [], log=say)
    return outcome.metadata


@app.command("build-symbol-master")
def build_symbol_master(ctx: typer.Context) -> None:
    """Materialize the symbol master (one row per Bronze ticker) through Dagster."""
    show(_materialize(ctx, "symbol_master").get("symbol_master", {}))


@app.command("sanity-checks")
def sanity_checks(ctx: typer.Context) -> None:
    """Materialize the symbol master and the Bronze sanity artifacts (artifacts/bronze_qa)."""
    metadata = _materialize(ctx, "symbol_master", "bronze_sanity")
    show(metadata.get("bronze_sanity", {}))


@app.command("list-problem-tickers")
def list_problem_tickers(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="How many tickers to list.")] = 50,
    only_invalid: Annotated[bool, typer.Option(help="Only tickers with invalid rows.")] = False,
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
    if table.is_empty():
        typer.echo("No problem tickers found.")
        return
    with pl.Config(tbl_rows=limit, tbl_cols=-1, tbl_width_chars=160):
        typer.echo(table)
