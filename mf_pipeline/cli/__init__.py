"""The ``mf`` command line: the old tool's commands, executed through the Dagster assets."""

import logging
import os
import sys

from mf_pipeline.cli import (  # noqa: F401  (importing registers the commands)
    bench_commands,
    bronze_commands,
    derived_commands,
    qa_commands,
    research_commands,
    viewer_commands,
)
from mf_pipeline.cli.app import app

__all__ = ["app", "run"]


def run() -> None:
    """The ``mf`` console script: the Typer app, then an exit without interpreter teardown.

    Finalizing the modules and thread pools of Dagster, Numba and Polars costs ~0.9 s per
    command on this machine, longer than a no-change ``mf run`` itself. Every file the
    pipeline writes is closed (renamed into place) before a command returns, so only the
    standard streams and log handlers need flushing. An exception still unwinds normally.
    """
    code: int = 0
    try:
        app()
    except SystemExit as done:
        if isinstance(done.code, int):
            code = done.code
        elif done.code is not None:
            print(done.code, file=sys.stderr)
            code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
