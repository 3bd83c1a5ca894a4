"""The Typer application, shared options and small output helpers.

Command modules import only Typer and this module at the top, and each command imports what it
runs (pydantic-settings, Dagster, Polars, Numba): ``mf --help`` then imports in ~0.15 s, not ~2 s.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from mf_pipeline.lib.settings import Settings

app = typer.Typer(
    name="mf",
    help="mf_pipeline: daily US stock research platform (Dagster assets, lake under data/).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigFile = Annotated[
    Path | None,
    typer.Option("--config-file", help="Settings YAML (default: configs/settings.yaml)."),
]


@app.callback()
def main(ctx: typer.Context, config_file: ConfigFile = None) -> None:
    ctx.obj = {"config_file": config_file}


def settings_of(ctx: typer.Context) -> Settings:
    """Load the effective settings, turning a bad value into a clean one-line error."""
    from mf_pipeline.lib.settings import SettingsError, load_settings

    config_file = (ctx.obj or {}).get("config_file")
    try:
        return load_settings(config_file)
    except SettingsError as error:
        fail(str(error))
        raise  # unreachable; keeps type checkers happy


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def say(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    typer.echo(f"[{stamp}] {message}")
    sys.stdout.flush()


def show(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))


@app.command("show-config")
def show_config(ctx: typer.Context) -> None:
    """Print the effective settings (YAML + environment), with resolved paths."""
    import yaml

    typer.echo(yaml.safe_dump(settings_of(ctx).effective(), sort_keys=False))


@app.command("init-placeholders")
def init_placeholders(ctx: typer.Context) -> None:
    """Create the data, layer, artifact and log folders (with the old README placeholders)."""
    from mf_pipeline.lib import lake

    s = settings_of(ctx)
    for folder in (s.data_root, s.bronze_root, s.silver_root, s.gold_root, s.artifacts_root,
                   s.logs_root):
        folder.mkdir(parents=True, exist_ok=True)
    lake.write_text(
        "# Silver Layer Placeholder\n\nThis directory is reserved for cleaned and "
        "feature-ready datasets.\n",
        s.silver_root / "README.md",
    )
    lake.write_text(
        "# Gold Layer Placeholder\n\nThis directory is reserved for curated analytics-ready "
        "datasets and marts.\n",
        s.gold_root / "README.md",
    )
    say(f"placeholders ready under {s.data_root}")


@app.command("sample-data")
def sample_data(
    out: Annotated[Path, typer.Option(help="Folder to write the universe into.")],
    tickers: Annotated[int, typer.Option(min=1, help="Number of tickers.")] = 300,
    years: Annotated[float, typer.Option(min=0.1, help="Years of history.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 7,
    messy: Annotated[bool, typer.Option(help="Plant every known raw-data defect.")] = False,
) -> None:
    """Write a deterministic synthetic universe in Stooq's layout (truth in <out>/_truth)."""
    from mf_pipeline.lib.sample import generate_universe

    with typer.progressbar(length=tickers, label="generating") as bar:
        last = [0]

        def progress(done: int, total: int) -> None:
            bar.update(done - last[0])
            last[0] = done

        report = generate_universe(out, n_tickers=tickers, years=years, seed=seed, messy=messy,
                                   progress=progress)
    say(
        f"wrote {report.files_written} files, {report.bars_written:,} bars, "
        f"{report.bytes_written / 1e6:.1f} MB to {report.out_dir} (truth: {report.truth_dir})"
    )
