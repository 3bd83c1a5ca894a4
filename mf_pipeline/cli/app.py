"""The Typer application, shared options and the output conventions of every command.

Command modules import only Typer and this module at the top, and each command imports what it
runs (pydantic-settings, Dagster, Polars, Numba): ``mf --help`` then imports in ~0.15 s, not ~2 s.

Output: progress and messages go to stderr (:func:`say`, the run's progress display); the
result goes to stdout, as a short human summary, or as JSON alone with ``--json`` (pipe it to
``jq``). Bad input fails before any run with one ``error: ...`` line (exit 2); a run that fails
prints one line naming the asset, its message, the run id and where the traceback is (exit 1).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from click import Context

    from mf_pipeline.lib.settings import Settings
    from mf_pipeline.orchestration.runner import RunOutcome

UI_URL = "http://127.0.0.1:3000"
"""Where ``make ui`` serves the Dagster UI."""


class _Group(TyperGroup):
    """Turns a failed Dagster run, an unreadable lake layout or an unusable instance setting
    into its one-line error (a failed run's traceback with ``--verbose``)."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            table = sys.modules.get("mf_pipeline.lib.lake_table")
            if table is not None and isinstance(error, table.LakeFormatError):
                fail(str(error), code=1)  # e.g. a v1 lake: what to run, not a traceback
            instance = sys.modules.get("mf_pipeline.orchestration.instance")
            if instance is not None and isinstance(error, instance.InstanceConfigError):
                fail(str(error), code=1)  # e.g. a PostgreSQL URL without its driver
            runner = sys.modules.get("mf_pipeline.orchestration.runner")
            if runner is None or not isinstance(error, runner.RunFailed):
                raise
            if (ctx.obj or {}).get("verbose") or os.environ.get("MF_DEBUG") == "1":
                typer.echo(error.traceback, err=True)
            fail(str(error), code=1)

    def format_commands(self, ctx: Context, formatter: Any) -> None:
        """The command list with each command's whole first sentence, wrapped: click cuts it
        to the terminal width with "..." (at 80 columns most of ``mf --help`` was cut)."""
        rows = [(name, command.get_short_help_str(limit=10_000))
                for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=_Group,
    name="mf",
    help="mf_pipeline: daily US stock research platform (Dagster assets, lake under data/).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help wraps long option names; rich's tables cut them
)

ConfigFile = Annotated[
    Path | None,
    typer.Option("--config-file", help="Settings YAML (default: configs/settings.yaml)."),
]
Verbose = Annotated[bool, typer.Option(
    "--verbose", help="Also print the traceback of a failed run (or set MF_DEBUG=1).")]
AsJson = Annotated[bool, typer.Option(
    "--json", help="Print the result as JSON, and nothing else on stdout.")]


@app.callback()
def main(ctx: typer.Context, config_file: ConfigFile = None, verbose: Verbose = False) -> None:
    from mf_pipeline.orchestration import progress

    ctx.obj = {"config_file": config_file, "verbose": verbose}
    progress.show_bars(sys.stderr.isatty())


def settings_of(ctx: typer.Context) -> Settings:
    """Load the effective settings, turning a bad value into a clean one-line error."""
    from mf_pipeline.lib.settings import SettingsError, load_settings
    from mf_pipeline.orchestration.accounting import part

    config_file = (ctx.obj or {}).get("config_file")
    try:
        with part("CLI: settings"):
            return load_settings(config_file)
    except SettingsError as error:
        fail(str(error))
        raise  # unreachable; keeps type checkers happy


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def say(message: str) -> None:
    """A progress message, time-stamped, on stderr (stdout carries only the result)."""
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    typer.echo(f"[{stamp}] {message}", err=True)


def show(payload: Any) -> None:
    """``payload`` as JSON on stdout (a command whose result is only JSON)."""
    emit(payload, as_json=True)


def emit(payload: Any, as_json: bool, text: str | None = None) -> None:
    """Print a command's result: ``payload`` as JSON with ``--json``, else ``text`` (by
    default ``payload`` as indented ``key: value`` lines)."""
    if as_json:
        typer.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))
    else:
        typer.echo(plain(payload) if text is None else text)


def plain(payload: Any, indent: str = "") -> str:
    """``payload`` for reading: one ``key: value`` line per entry, nested mappings indented,
    short lists inline."""
    if not isinstance(payload, dict):
        return f"{indent}{_value(payload)}"
    lines = []
    for key, value in payload.items():
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:")
            lines.append(plain(value, indent + "  "))
        else:
            lines.append(f"{indent}{key}: {_value(value)}")
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return str(value)


HEADLINE: tuple[tuple[str, str], ...] = (
    ("files", "files"), ("files_processed", "files"), ("file_count", "files"),
    ("tickers_to_process", "tickers to process"), ("tickers_written", "tickers written"),
    ("rows_written", "rows written"), ("rows_valid", "valid rows"),
    ("rows_invalid", "invalid rows"), ("total_invalid_rows", "invalid rows"),
    ("rows_rejected", "rejected lines"), ("symbol_count", "tickers"), ("row_count", "rows"),
    ("rows", "rows"), ("ticker_count", "tickers in the lake"),
    ("dagster/row_count", "rows in the lake"), ("total_rows", "rows in the lake"),
    ("problem_count", "problems"), ("rows_fit", "rows fitted"), ("silhouette", "silhouette"),
    ("ari_hmm_state_filtered", "ARI of the filtered states vs the true regimes"),
    ("ari_cluster_id", "ARI vs the true regimes"), ("state_count", "states"),
    ("states_flagged", "states flagged"), ("allow_count", "ALLOW"), ("watch_count", "WATCH"),
    ("block_count", "BLOCK"), ("trade_count", "trades"), ("win_rate", "win rate"),
    ("avg_return", "avg net return"), ("profit_factor", "profit factor"), ("seconds", "s"),
)
"""The metadata a run summary shows per asset, in this order (the rest: ``--json``)."""


def run_summary(outcome: RunOutcome) -> str:
    """A few lines for a finished run: per asset its headline numbers, then time and run ids."""
    if not outcome.run_ids:
        return "nothing to run: the lake is up to date"
    lines = []
    width = max((len(asset) for asset in outcome.metadata), default=0)
    for asset, meta in outcome.metadata.items():
        parts = [f"{meta[key]:.1f}{label}" if label == "s" else f"{_value(meta[key])} {label}"
                 for key, label in HEADLINE if isinstance(meta.get(key), int | float)]
        lines.append(f"  {asset:<{width}}  {', '.join(parts) or 'done'}")
    runs = ("Dagster run " if len(outcome.run_ids) == 1 else "Dagster runs ") + \
        ", ".join(outcome.run_ids)
    lines.append(f"{len(outcome.metadata)} asset(s) in {outcome.seconds:.1f}s, {runs}")
    lines.append(f"details: --json, or `make ui` then {UI_URL}/runs/{outcome.run_ids[-1]}")
    return "\n".join(lines)


@app.command("show-config")
def show_config(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Print the effective settings (YAML + environment), with resolved paths."""
    import yaml

    effective = settings_of(ctx).effective()
    emit(effective, as_json, yaml.safe_dump(effective, sort_keys=False))


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
    typer.echo(f"placeholders ready under {s.data_root}")


@app.command("sample-data")
def sample_data(
    out: Annotated[Path, typer.Option(help="Folder to write the universe into.")],
    tickers: Annotated[int, typer.Option(min=1, help="Number of tickers.")] = 300,
    years: Annotated[float, typer.Option(min=0.1, help="Years of history.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 7,
    messy: Annotated[bool, typer.Option(help="Plant every known raw-data defect.")] = False,
    null: Annotated[bool, typer.Option(
        "--null", help="No regimes: driftless random walks, truth regime 0 everywhere.")] = False,
) -> None:
    """Write a deterministic synthetic universe in Stooq's layout (truth in <out>/_truth)."""
    from mf_pipeline.lib.sample import generate_universe

    with typer.progressbar(length=tickers, label="generating") as bar:
        last = [0]

        def progress(done: int, total: int) -> None:
            bar.update(done - last[0])
            last[0] = done

        report = generate_universe(out, n_tickers=tickers, years=years, seed=seed, messy=messy,
                                   progress=progress, null=null)
    typer.echo(
        f"wrote {report.files_written} files, {report.bars_written:,} bars, "
        f"{report.bytes_written / 1e6:.1f} MB to {report.out_dir} (truth: {report.truth_dir})"
    )
