"""Silver, indicators, events, features, the ML dataset export and SQL over the lake."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mf_pipeline.cli.app import AsJson, app, emit, fail, run_summary, say, settings_of
from mf_pipeline.lib import registry

if TYPE_CHECKING:
    import duckdb

    from mf_pipeline.orchestration.runner import RunOutcome


def _layer_tickers(ctx: typer.Context, layer: str, full: bool, limit: int | None) -> list[str]:
    from mf_pipeline.lib import lake
    from mf_pipeline.lib.steps.derived_step import stale_tickers

    settings = settings_of(ctx)
    if full:
        tickers = lake.symbol_tickers(
            lake.LAYERS[registry.LAYERS[layer].inputs[0]].root(settings))
    else:
        tickers = stale_tickers(settings, [layer])
    return tickers[:limit] if limit else tickers


def _materialize(ctx: typer.Context, assets: tuple[str, ...], tickers: list[str],
                 tail: tuple[str, ...] = (), run_config: dict | None = None) -> RunOutcome:
    from mf_pipeline.orchestration import runner

    return runner.run_partitioned(settings_of(ctx), (), assets, tail, tickers,
                                  run_config=run_config, log=say)


def _register(layer: str) -> None:
    label = registry.LAYERS[layer].title

    def layer_run(
        ctx: typer.Context,
        limit: Annotated[int | None, typer.Option(min=1, help="At most N tickers.")] = None,
        full: Annotated[bool, typer.Option(help="Rebuild every ticker, not only stale.")] = False,
        as_json: AsJson = False,
    ) -> None:
        tickers = _layer_tickers(ctx, layer, full, limit)
        say(f"{len(tickers)} tickers need {layer}")
        outcome = _materialize(ctx, (layer,), tickers)
        emit(outcome.metadata.get(layer, {}), as_json, run_summary(outcome))

    def layer_one(
        ctx: typer.Context,
        ticker: Annotated[str, typer.Option(help="Ticker, e.g. AAPL.US.")],
        as_json: AsJson = False,
    ) -> None:
        from mf_pipeline.lib import lake

        symbol = ticker.strip().upper()
        if not lake.is_valid_ticker(symbol):
            fail(f"not a valid ticker: {ticker!r}")
        source = registry.LAYERS[layer].inputs[0]
        if not lake.symbol_tickers(lake.LAYERS[source].root(settings_of(ctx)), [symbol]):
            fail(f"{symbol} has no {source} rows: build it first (`mf run --until {source}`)")
        outcome = _materialize(ctx, (layer,), [symbol])
        emit(outcome.metadata.get(layer, {}), as_json, run_summary(outcome))

    def layer_sanity(ctx: typer.Context, as_json: AsJson = False) -> None:
        asset = f"{layer}_sanity"
        emit(_materialize(ctx, (), [], tail=(asset,)).metadata.get(asset, {}), as_json)

    layer_run.__doc__ = f"Rebuild {label} for stale tickers (or all with --full), via Dagster."
    layer_one.__doc__ = f"Rebuild {label} for one ticker (a Dagster run on its shard)."
    layer_sanity.__doc__ = f"Sanity summary of {label} over the whole lake (artifacts)."
    app.command(f"{layer}-run")(layer_run)
    app.command(f"{layer}-one")(layer_one)
    app.command(f"{layer}-sanity")(layer_sanity)


for _layer in registry.DERIVED:
    _register(_layer)


@app.command("export-ml-dataset")
def export_ml_dataset(
    ctx: typer.Context,
    symbols_limit: Annotated[int | None, typer.Option(min=1, help="Random sample of N tickers "
                                                      "(seeded), not the first N.")] = None,
    start_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD, inclusive.")] = None,
    end_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD, inclusive.")] = None,
    sample_frac: Annotated[float | None, typer.Option(help="Per-ticker row sample in (0, 1].")]
    = None,
    as_json: AsJson = False,
) -> None:
    """Materialize the ML dataset (gold/datasets/ml_dataset_v1/<run_id>/)."""
    from mf_pipeline.lib.layers import dataset

    try:
        dataset.validate_date_range(start_date, end_date)
        dataset.validate_symbols_limit(symbols_limit)
        dataset.validate_sample_frac(sample_frac)
    except ValueError as error:
        fail(str(error))
    config = {k: v for k, v in {"symbols_limit": symbols_limit, "start_date": start_date,
                                "end_date": end_date, "sample_frac": sample_frac}.items()
              if v is not None}
    run_config = {"ops": {"ml_dataset": {"config": config}}}
    outcome = _materialize(ctx, (), [], tail=("ml_dataset",), run_config=run_config)
    emit(outcome.metadata.get("ml_dataset", {}), as_json, run_summary(outcome))


SQL_HELP = """Run DuckDB SQL over the lake: a read-only view of every layer, the ML dataset, the
Bronze ledger, rejects, manifest and symbol master, and the research outputs (`mf sql --list`).

Prints the first --limit rows and says how many more there are; --csv/--parquet write every
row."""


@app.command(help=SQL_HELP)
def sql(
    ctx: typer.Context,
    query: Annotated[str | None, typer.Argument(help="The SQL, e.g. \"SELECT ticker, count(*) "
                                                "FROM features GROUP BY 1\".")] = None,
    list_views: Annotated[bool, typer.Option("--list", help="List the views: name, files, "
                                             "what they hold.")] = False,
    limit: Annotated[int, typer.Option(min=0, help="Rows to print (0: all).")] = 100,
    csv: Annotated[str | None, typer.Option("--csv", metavar="PATH", help="Write every row "
                                            "as CSV to PATH ('-': stdout) instead.")] = None,
    parquet: Annotated[Path | None, typer.Option("--parquet", metavar="PATH", help="Write every "
                                                 "row to a Parquet file instead.")] = None,
) -> None:
    import duckdb
    import polars as pl

    from mf_pipeline.lib import sql as lake_sql

    settings = settings_of(ctx)
    connection, missing = lake_sql.connect(settings)
    if list_views:
        for view in lake_sql.VIEWS:
            where = missing.get(view.name) or view.pattern(settings)
            typer.echo(f"{view.name}\n    {view.description}\n    {where}")
        return
    if not query:
        fail("give a query, or --list for the views")
    try:
        relation = connection.sql(query)
        if relation is None:  # a statement without rows (SET, CREATE VIEW ...)
            return
        if csv is not None or parquet is not None:
            _write_all(connection, query, csv, parquet)
            return
        shown = relation.limit(limit + 1).pl() if limit else relation.pl()
        total = relation.aggregate("count(*)").fetchall()[0][0] if shown.height > limit > 0 \
            else shown.height
    except duckdb.Error as error:
        absent = [f"{name} ({why})" for name, why in missing.items() if name in str(error)]
        fail(str(error) + (f"; no view {', '.join(absent)}" if absent else ""))
        raise
    printed = shown.head(limit) if limit else shown
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=80,
                   tbl_hide_dataframe_shape=True):
        typer.echo(printed)
    cut = total - printed.height
    typer.echo(f"{total:,} row{'' if total == 1 else 's'}" if not cut else
               f"… {cut:,} more rows not shown ({total:,} in all; use --limit 0, or --csv PATH / "
               "--parquet PATH for every row)")


def _write_all(connection: duckdb.DuckDBPyConnection, query: str, csv: str | None,
               parquet: Path | None) -> None:
    """Every row of ``query`` to ``--csv`` (``-``: stdout) and/or ``--parquet``, written by
    DuckDB (nested values as text in CSV)."""
    import tempfile

    targets = [(target, kind) for target, kind in ((csv, "csv"), (parquet, "parquet")) if target]
    for target, kind in targets:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "out.csv" if str(target) == "-" else Path(target)
            header = ", HEADER" if kind == "csv" else ""
            rows = connection.execute(f"COPY ({query.strip().rstrip(';')}) TO "
                                      f"'{str(path).replace(chr(39), chr(39) * 2)}' "
                                      f"(FORMAT {kind}{header})").fetchall()[0][0]
            if str(target) == "-":
                typer.echo(path.read_text(), nl=False)
            else:
                say(f"wrote {rows:,} rows to {path}")
