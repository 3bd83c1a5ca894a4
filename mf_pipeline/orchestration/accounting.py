"""Where the wall seconds of one ``mf`` command go: measured parts that add up to its wall.

A part is a named stretch of the main thread, timed with ``with part("name"):``. Parts nest and
each keeps only its *exclusive* seconds (a part's time minus the parts inside it), so the parts
of a command never overlap: they add up to at most the process's wall time, and what no part
covers is the unexplained remainder. Dagster's event-log writes are a part inside whatever
emitted the event (an asset logging a message, a materialization after a step), the assets'
bodies are parts inside the Dagster run, and the run's own machinery is what the run's part
keeps. Work on other threads (the derived layers' file writer) overlaps the main thread and is
not a part: the main thread's wait for it is.

The CLI writes the parts to ``<logs_root>/runs/<run_id>.seconds.json`` when it exits
(:func:`write`); ``make bench`` prints them as a table. Timing costs two ``perf_counter``
calls per part: a few hundred parts per run. No Dagster import here.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

PROCESS_START = "process start: interpreter and the CLI's imports"
"""From the process's start to :func:`commands_start` (the command begins)."""

RUN_START = "Dagster run: start (run record, plan, resources)"
RUN_STEPS = "Dagster run: around the steps (inputs, outputs, events)"
RUN_END = "Dagster run: end (run record, resources closed)"
"""The phases of a run's own machinery, the part that holds ``execute_in_process``; the
progress logger switches them at the first step's start and at the run's end event."""
LAKE_FIGURES = "asset metadata: the lake's files listed and read back"
"""What a per-ticker asset reads of the lake after writing it, for its shards' metadata."""
PHASE_AFTER = {"STEP_START": RUN_STEPS, "PIPELINE_SUCCESS": RUN_END, "PIPELINE_FAILURE": RUN_END}
"""Dagster's event type values (a run's end still spelled ``PIPELINE_*``) that start a phase."""


@dataclass
class _Open:
    name: str
    start: float
    inner: float = 0.0  # seconds of the parts nested inside, not this part's own


@dataclass
class _Book:
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    stack: list[_Open] = field(default_factory=list)
    destination: Path | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    started: float | None = None  # the process's age when the command started


_BOOK = _Book()
_MAIN = threading.main_thread().ident


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``, 10 ms resolution), else None."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time, in ticks
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _add(name: str, seconds: float, calls: int = 1) -> None:
    _BOOK.seconds[name] = _BOOK.seconds.get(name, 0.0) + seconds
    _BOOK.counts[name] = _BOOK.counts.get(name, 0) + calls


@contextmanager
def part(name: str, calls: int = 1) -> Iterator[None]:
    """Time the block as part ``name`` (exclusive of the parts inside it), counted as
    ``calls`` calls (a batch of event writes); main thread only."""
    if threading.get_ident() != _MAIN:
        yield
        return
    _BOOK.stack.append(_Open(name, time.perf_counter()))
    try:
        yield
    finally:
        _close(_BOOK.stack.pop(), calls)


def _close(opened: _Open, calls: int = 1) -> float:
    """Credit ``opened`` with its exclusive seconds until now; its parent sees them as nested."""
    now = time.perf_counter()
    _add(opened.name, now - opened.start - opened.inner, calls)
    if _BOOK.stack:
        _BOOK.stack[-1].inner += now - opened.start
    return now


def run_event(kind: str) -> None:
    """A Dagster event of type ``kind`` seen in the run: move the run's part to its next phase
    (only while the run's own part is the innermost one, not inside an asset)."""
    name = PHASE_AFTER.get(kind)
    if name is not None and _BOOK.stack and _BOOK.stack[-1].name in (RUN_START, RUN_STEPS):
        rename(name)


def rename(name: str) -> None:
    """Credit the innermost open part's seconds so far to its name and go on as ``name``."""
    if threading.get_ident() != _MAIN or not _BOOK.stack or _BOOK.stack[-1].name == name:
        return
    _BOOK.stack.append(_Open(name, _close(_BOOK.stack.pop())))


def counted(name: str) -> Callable[[F], F]:
    """Decorate an asset or check body: its calls are part ``name``. For a generator only
    the generator's own steps count, not what the consumer (Dagster) does between them.
    ``functools.wraps`` keeps the signature Dagster reads its parameters from."""

    def decorate(fn: F) -> F:
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def stepped(*args: Any, **kwargs: Any) -> Iterator[Any]:
                with part(name):
                    inner = fn(*args, **kwargs)
                while True:
                    with part(name):
                        try:
                            item = next(inner)
                        except StopIteration:
                            return
                    yield item

            return stepped  # type: ignore[return-value]

        @functools.wraps(fn)
        def called(*args: Any, **kwargs: Any) -> Any:
            with part(name):
                return fn(*args, **kwargs)

        return called  # type: ignore[return-value]

    return decorate


def record_to(path: Path, **facts: Any) -> None:
    """Where :func:`write` puts this command's record (the first run's id names it), and
    facts to keep in it (run ids)."""
    if _BOOK.destination is None:
        _BOOK.destination = path
    for key, value in facts.items():
        if isinstance(value, list):
            _BOOK.facts.setdefault(key, []).extend(value)
        else:
            _BOOK.facts[key] = value


def snapshot(wall: float | None = None) -> dict[str, Any]:
    """The parts so far: seconds and calls per part, their sum, and the wall they explain
    (``wall``, default the process's age) with the remainder no part covers."""
    wall = process_age() if wall is None else wall
    seconds = dict(_BOOK.seconds)
    if _BOOK.started is not None:
        seconds[PROCESS_START] = _BOOK.started
    total = sum(seconds.values())
    return {
        "argv": sys.argv[1:],
        "wall_s": wall,
        "parts_s": {name: round(value, 6) for name, value in
                    sorted(seconds.items(), key=lambda item: -item[1])},
        "calls": dict(_BOOK.counts),
        "sum_parts_s": total,
        "remainder_s": None if wall is None else wall - total,
        **_BOOK.facts,
    }


def write() -> Path | None:
    """Write the record where :func:`record_to` said (nothing when no run registered one)."""
    path = _BOOK.destination
    if path is None:
        return None
    record = snapshot()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
    except OSError:  # a record is diagnostics only: never fail the command for it
        return None
    return path


def commands_start() -> None:
    """Mark the end of the CLI's imports (the command starts): the seconds from the process's
    start to here are :data:`PROCESS_START`."""
    _BOOK.started = process_age()
