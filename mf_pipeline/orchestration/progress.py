"""Run progress for the CLI, fed by a Dagster logger from the steps' own events and messages.

The assets report through ``context.log`` (the lib steps' ``log`` callbacks, e.g. ``batch 3/8:
300 tickers computed``). The ``mf_progress`` Dagster logger (``definitions.py``, selected by the
runner's run config) hands every record to the display the runner opened for the run: on a
terminal one progress bar per step, advanced by the ``batch i/n`` messages, with the messages
printed above the bars; elsewhere (pipes, CI, tests) the messages and one line per finished
step. The same records reach the Dagster UI through the run's event log. With no display open (a
run launched from the UI, or by the sensor) the logger does nothing. No Dagster import here:
the CLI sets :func:`show_bars` before it knows whether it will run anything.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mf_pipeline.orchestration import accounting

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

Log = Callable[[str], None]

BATCH = re.compile(r"\bbatch (\d+)/(\d+)\b")
"""How a step reports a finished batch: ``batch <done>/<total>`` anywhere in its message."""

_BARS = False
_CURRENT: Display | None = None


def show_bars(on: bool) -> None:
    """Draw progress bars (the CLI on a terminal) instead of plain lines for later runs."""
    global _BARS
    _BARS = on


class Display:
    """One run's progress: plain lines through ``log``, plus rich bars when asked.

    ``labels`` names each step by its assets (the derived layers share one step). On a
    terminal rich redirects stderr above the live bars, so ``log`` prints there in both modes.
    """

    def __init__(self, log: Log, labels: Mapping[str, str], bars: bool) -> None:
        self.log = log
        self.labels = dict(labels)
        self.started: dict[str, float] = {}
        self.tasks: dict[str, TaskID] = {}
        self.bars: Progress | None = None
        if bars:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bars = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=Console(stderr=True))

    def label(self, step: str) -> str:
        return self.labels.get(step, step)

    def step_started(self, step: str) -> None:
        self.started[step] = time.perf_counter()
        if self.bars is not None:
            self.tasks[step] = self.bars.add_task(self.label(step), total=None)

    def message(self, step: str | None, text: str) -> None:
        found = BATCH.search(text)
        if found and self.bars is not None and step in self.tasks:
            self.bars.update(self.tasks[step], completed=int(found[1]), total=int(found[2]))
        self.log(text)

    def step_finished(self, step: str, ok: bool) -> None:
        seconds = time.perf_counter() - self.started.get(step, time.perf_counter())
        verdict = f"done in {seconds:.1f}s" if ok else f"FAILED after {seconds:.1f}s"
        if self.bars is not None and step in self.tasks:
            task = self.tasks[step]
            total = self.bars.tasks[task].total or 1
            self.bars.update(task, total=total, completed=total if ok else None,
                             description=f"{self.label(step)}: {verdict}")
        else:
            self.log(f"{self.label(step)}: {verdict}")


@contextmanager
def showing(log: Log, labels: Mapping[str, str]) -> Iterator[Display]:
    """Open the display the ``mf_progress`` logger reports to while the block runs."""
    global _CURRENT
    display = Display(log, labels, _BARS)
    previous, _CURRENT = _CURRENT, display
    if display.bars is not None:
        display.bars.start()
    try:
        yield display
    finally:
        if display.bars is not None:
            display.bars.stop()
        _CURRENT = previous


STEP_EVENTS = {"STEP_START": None, "STEP_SUCCESS": True, "STEP_FAILURE": False}


class _ToDisplay(logging.Handler):
    """Route Dagster's records to the open display: step events, and the steps' messages."""

    def emit(self, record: logging.LogRecord) -> None:
        display = _CURRENT
        meta: dict[str, Any] = getattr(record, "dagster_meta", None) or {}
        step = meta.get("step_key")
        event = meta.get("dagster_event")
        if display is None:
            return
        if event is not None:
            accounting.run_event(event.event_type_value)
        if step is None:
            return
        if event is None:  # a message; errors are the failed step's, reported by the runner
            if logging.INFO <= record.levelno < logging.ERROR:
                display.message(step, meta.get("orig_message", record.getMessage()))
            return
        kind = event.event_type_value
        if kind not in STEP_EVENTS:
            return
        if STEP_EVENTS[kind] is None:
            display.step_started(step)
        else:
            display.step_finished(step, bool(STEP_EVENTS[kind]))


def logger() -> logging.Logger:
    """The Python logger behind the ``mf_progress`` Dagster logger."""
    out = logging.Logger("mf_progress", level=logging.DEBUG)
    out.addHandler(_ToDisplay())
    return out
