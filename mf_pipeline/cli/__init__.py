"""The ``mf`` command line: the old tool's commands, executed through the Dagster assets."""

import gc
import logging
import os
import sys

from mf_pipeline.cli import (  # noqa: F401  (importing registers the commands)
    backtest_commands,
    bench_commands,
    bronze_commands,
    candidate_commands,
    dagster_commands,
    derived_commands,
    grid_commands,
    ops_commands,
    qa_commands,
    report_commands,
    research_commands,
    validation_commands,
    viewer_commands,
)
from mf_pipeline.cli.app import app
from mf_pipeline.orchestration import accounting

__all__ = ["app", "run"]


# Young-generation threshold for a CLI process (CPython's default is 700 allocations).
GC_THRESHOLDS = (100_000, 50, 1_000)


def tune_garbage_collector() -> None:
    """Collect cycles rarely: a run builds hundreds of thousands of long-lived objects
    (Dagster's definitions and events, imported modules) and the default thresholds make
    CPython traverse them over and over: ~0.5 s of a 7.5 s cold ``mf run`` on 300 tickers.
    Our data lives in Polars/NumPy buffers freed by reference counting, so memory is unchanged.
    """
    gc.set_threshold(*GC_THRESHOLDS)


def run() -> None:
    """The ``mf`` console script: the Typer app, then an exit without interpreter teardown.

    Finalizing the modules and thread pools of Dagster, Numba and Polars costs ~0.9 s per
    command on this machine, longer than a no-change ``mf run`` itself. Every file the
    pipeline writes is closed (renamed into place) before a command returns, so only the
    standard streams and log handlers need flushing. An exception still unwinds normally.
    """
    code: int = 0
    tune_garbage_collector()
    accounting.commands_start()
    try:
        app()
    except SystemExit as done:
        if isinstance(done.code, int):
            code = done.code
        elif done.code is not None:
            print(done.code, file=sys.stderr)
            code = 1
    accounting.write()  # where this command's seconds went, when it ran a Dagster run
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
