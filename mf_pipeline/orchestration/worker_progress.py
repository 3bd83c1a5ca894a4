"""Progress lines for runs whose steps execute on Celery workers.

In process, the steps' own log records reach the CLI's display (``progress.py``). On workers
they go to the workers' loggers and the event log only, so an ``mf`` command would print
nothing between ``run:`` and ``done``. This reporter reads the event log of the command's runs
(tagged ``mf/launch``) once a second on a background thread and prints a line as each step is
taken by a worker, finishes or fails::

    [shards 00…07] bronze: on worker w1@host-a
    [shards 00…07] bronze: done in 41.2s

A reader thread is safe beside the runs: it only queries storage (it creates no Dagster log
manager, the part of a run's start that is not thread-safe).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg

from mf_pipeline.defs.partitions import RANGE_END, RANGE_START

LAUNCH_TAG = "mf/launch"
"""Run tag shared by the runs of one ``mf`` command (so its reporter finds them)."""
EVENTS = {dg.DagsterEventType.ENGINE_EVENT, dg.DagsterEventType.STEP_SUCCESS,
          dg.DagsterEventType.STEP_FAILURE}
POLL_SECONDS = 1.0

Log = Callable[[str], None]


def run_label(tags: dict[str, str]) -> str:
    """``shards 00…07`` for a range run, else the run's partition, else nothing."""
    if RANGE_START in tags:
        return f"shards {tags[RANGE_START]}…{tags.get(RANGE_END, tags[RANGE_START])}"
    return tags.get("dagster/partition", "")


def step_line(label: str, event: Any) -> str | None:
    """The progress line of one event record's Dagster event, if it is worth one."""
    step = event.step_key or "run"
    prefix = f"[{label}] " if label else ""
    if event.event_type == dg.DagsterEventType.STEP_SUCCESS:
        seconds = event.event_specific_data.duration_ms / 1000
        return f"{prefix}{step}: done in {seconds:.1f}s"
    if event.event_type == dg.DagsterEventType.STEP_FAILURE:
        return f"{prefix}{step}: failed on its worker (the error follows when the run ends)"
    data = event.engine_event_data
    worker = data.metadata.get("Celery worker") if data is not None else None
    return f"{prefix}{step}: on worker {worker.value}" if worker is not None else None


class Reporter:
    """Polls the event log of the runs tagged ``LAUNCH_TAG = launch`` and prints new lines."""

    def __init__(self, instance: dg.DagsterInstance, launch: str, log: Log) -> None:
        self.instance, self.launch, self.log = instance, launch, log
        self.cursors: dict[str, str | None] = {}

    def poll(self) -> None:
        runs = self.instance.get_runs(filters=dg.RunsFilter(tags={LAUNCH_TAG: self.launch}))
        for run in sorted(runs, key=lambda r: run_label(r.tags)):
            found = self.instance.get_records_for_run(
                run.run_id, cursor=self.cursors.get(run.run_id), of_type=EVENTS)
            self.cursors[run.run_id] = found.cursor
            for record in found.records:
                event = record.event_log_entry.dagster_event
                line = step_line(run_label(run.tags), event) if event is not None else None
                if line:
                    self.log(line)


@contextmanager
def reporting(open_instance: Callable[[], dg.DagsterInstance], log: Log
              ) -> Iterator[dict[str, str]]:
    """Report the steps of the runs started inside the block; yields the tag they must carry."""
    launch = uuid.uuid4().hex
    stop = threading.Event()
    reporter: list[Reporter] = []

    def loop() -> None:
        reporter.append(Reporter(open_instance(), launch, log))
        while not stop.wait(POLL_SECONDS):
            reporter[0].poll()

    thread = threading.Thread(target=loop, name="mf-worker-progress", daemon=True)
    thread.start()
    try:
        yield {LAUNCH_TAG: launch}
    finally:
        stop.set()
        thread.join(timeout=10)
        if reporter and not thread.is_alive():
            reporter[0].poll()  # the last steps' lines
