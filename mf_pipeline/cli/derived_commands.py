"""Silver, indicators, events, features, the ML dataset export and SQL over the lake."""

from __future__ import annotations

from typing import Annotated

import typer

from mf_pipeline.cli.app import app, fail, say, settings_of, show
from mf_pipeline.lib import registry


def _layer_tickers(ctx: typer.Context, layer: str, full: bool, limit: int | None) -> list[str]:
    from mf_pipeline.lib import lake
    from mf_pipeline.lib.steps.derived_step import stale_tickers

    settings = settings_of(ctx)
    if full:
        upstream = lake.symbol_files(lake.LAYERS[registry.LAYERS[layer].inputs[0]].root(settings))
        tickers = sorted({p.parent.name.removeprefix("ticker=") for p in upstream})
    else:
        tickers = stale_tickers(settings, [layer])
    return tickers[:limit] if limit else tickers


def _materialize(ctx: typer.Context, assets: tuple[str, ...], tickers: list[str],
                 tail: tuple[str, ...] = (), run_config: dict | None = None) -> dict:
    from mf_pipeline.orchestration import runner

    settings = settings_of(ctx)
    outcome = runner.run_partitioned(settings, (), assets, tail, tickers,
                                     run_config=run_config, log=say)
    return outcome.metadata


def _register(layer: str) -> None:
    label = registry.LAYERS[layer].title

    def layer_run(
        ctx: typer.Context,
        limit: Annotated[int | None, typer.Option(min=1, help="At most N tickers.")] = None,
        full: Annotated[bool, typer.Option(help="Rebuild every ticker, not only stale.")] = False,
    ) -> None:
        tickers = _layer_tickers(ctx, layer, full, limit)
        say(f"{len(tickers)} tickers need {layer}")
        show(_materialize(ctx, (layer,), tickers).get(layer, {}))

    def layer_one(
        ctx: typer.Context,
        ticker: Annotated[str, typer.Option(help="Ticker, e.g. AAPL.US.")],
    ) -> None:
        from mf_pipeline.lib.lake import is_valid_ticker

        symbol = ticker.strip().upper()
        if not is_valid_ticker(symbol):
            fail(f"not a valid ticker: {ticker!r}")
        show(_materialize(ctx, (layer,), [symbol]).get(layer, {}))

    def layer_sanity(ctx: typer.Context) -> None:
        show(_materialize(ctx, (), [], tail=(f"{layer}_sanity",)).get(f"{layer}_sanity", {}))

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
    show(_materialize(ctx, (), [], tail=("ml_dataset",), run_config=run_config)
         .get("ml_dataset", {}))


@app.command()
def sql(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="SQL over views bronze, silver, indicators, "
                                         "events, features.")],
    limit: Annotated[int, typer.Option(help="Rows to print.")] = 50,
) -> None:
    """Run DuckDB SQL over the lake (read-only views of every per-ticker layer)."""
    import polars as pl

    from mf_pipeline.lib.sql import connect

    try:
        frame = connect(settings_of(ctx)).sql(query).pl()
    except Exception as error:  # noqa: BLE001 - DuckDB raises many error types; show the text
        fail(str(error))
    with pl.Config(tbl_rows=limit, tbl_cols=-1, tbl_width_chars=200):
        typer.echo(frame.head(limit))
