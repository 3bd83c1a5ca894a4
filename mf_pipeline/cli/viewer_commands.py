"""``mf viewer``: serve the Streamlit overlay viewer (bound to 127.0.0.1 unless asked)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from mf_pipeline.cli.app import app


def app_file() -> Path:
    """The Streamlit script of the top-level ``viewer`` package (found, not imported)."""
    found = importlib.util.find_spec("viewer")
    if found is None or not found.submodule_search_locations:
        raise RuntimeError("the `viewer` package is not installed: pip install -e . in the repo")
    return Path(next(iter(found.submodule_search_locations))) / "app.py"


def streamlit_command(port: int, address: str) -> list[str]:
    """The ``streamlit run`` command line: headless, usage statistics off, no Deploy button
    (toolbar in "viewer" mode, as in the project's ``.streamlit/config.toml``)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(app_file()),
        "--server.address", address,
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--server.headless", "true",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip


@app.command("viewer")
def viewer(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8501,
    address: Annotated[
        str, typer.Option(help="Address to bind; the default keeps it on this machine.")
    ] = "127.0.0.1",
) -> None:
    """Open the overlay viewer: a ticker's chart with its layers, read from the lake."""
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    config_file = (ctx.obj or {}).get("config_file")
    if config_file:  # the page loads its settings itself: hand it the same file
        env["MF_PIPELINE_SETTINGS_FILE"] = str(Path(config_file).resolve())
    typer.echo(f"overlay viewer on http://{address}:{port} (Ctrl+C to stop)")
    sys.stdout.flush()
    # Replace this process by Streamlit, so Ctrl+C and SIGTERM reach the server directly and
    # no orphaned server survives a killed `mf viewer`.
    command = streamlit_command(port, address)
    os.execve(command[0], command, env)
