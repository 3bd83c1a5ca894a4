"""The project's executor: steps in the run's own process (default) or on Celery workers.

One executor with a choice in run config keeps a single job definition for both ways of
running (the UI's launchpad, ``mf run``, the daemon): ``execution: config: in_process: {}`` or
``execution: config: celery: {broker: …, backend: …}``. The Celery branch is dagster-celery's
executor with one addition: a run notices when the worker running one of its steps dies
(``kill -9``, a lost host). Stock dagster-celery waits forever for a task whose worker is gone;
here the step fails after two unanswered pings, naming the worker, and the run fails with it —
a rerun then converges, because every lake write is atomic and idempotent (docs/DEPLOY.md).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    ExecutorRequirement,
    multiple_process_executor_requirements,
)
from dagster._core.execution.retries import RetryMode

WORKER_CONFIG = {"task_track_started": True, "worker_disable_prefetch": True}
"""Workers record which of them runs a task (its hostname), so a run can ask that worker; and a
worker takes a step only when it is free (with prefetch, a busy worker could hold a second
step, which would wait unseen for an hour if that worker died: Redis redelivers unacknowledged
messages only after its visibility timeout)."""
MISSED_PINGS = 2
POLL_SECONDS = 0.1
"""How often a run asks the result backend whether its running steps are done."""


class WorkerLost(RuntimeError):
    """The Celery worker running a step stopped answering: the step is lost, not running."""


def celery_app_args(broker: str, backend: str, queue: str,
                    config_source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Celery app's arguments, the same for the run (sender) and the workers."""
    from dagster_celery.config import DEFAULT_CONFIG

    source = {**DEFAULT_CONFIG, **WORKER_CONFIG, "task_default_queue": queue,
              **(config_source or {})}
    return {"broker": broker, "backend": backend, "include": [],
            "config_source": source}


class WatchedResult:
    """A step's Celery result that also reports *ready* when the worker running it is gone;
    ``get`` then raises :class:`WorkerLost` (the execution loop records it as the step's
    error and fails the run)."""

    def __init__(self, inner: Any, app: Any, step_key: str, every: float) -> None:
        self._inner, self._app, self._step, self._every = inner, app, step_key, every
        self._next_check = time.monotonic() + every
        self._misses = 0
        self._worker: str | None = None

    def ready(self) -> bool:
        if self._inner.ready():
            return True
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self._every
        if self._inner.state != "STARTED" or not isinstance(self._inner.info, dict):
            return False  # queued: any live worker may still take it
        self._worker = self._inner.info.get("hostname")
        if not self._worker:
            return False
        answered = self._app.control.ping(destination=[self._worker],
                                          timeout=min(2.0, self._every))
        self._misses = 0 if answered else self._misses + 1
        return self._misses >= MISSED_PINGS

    def get(self) -> Any:
        if self._misses < MISSED_PINGS:
            return self._inner.get()
        raise WorkerLost(
            f"Celery worker {self._worker} stopped answering while it ran step {self._step} "
            f"({MISSED_PINGS} pings {self._every:g}s apart): the worker died or its host was "
            "lost. Nothing it half-wrote is visible; run the same command again to redo the "
            "step (docs/DEPLOY.md).")

    def revoke(self) -> None:
        self._inner.revoke()


def _watched_celery_executor(config: Mapping[str, Any]) -> dg.Executor:
    from dagster_celery import core_execution_loop
    from dagster_celery.executor import CeleryExecutor, _submit_task

    every = float(config["worker_check_seconds"])

    def submit(app: Any, plan_context: Any, step: Any, *rest: Any) -> WatchedResult:
        with warnings.catch_warnings():  # dagster-celery registers its task again per step
            warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already")
            inner = _submit_task(app, plan_context, step, *rest)
        return WatchedResult(inner, app, step.key, every)

    class WatchedCeleryExecutor(CeleryExecutor):
        def execute(self, plan_context: Any, execution_plan: Any) -> Any:
            # The loop sleeps a module-level tick between polls (1 s): each step then waited
            # 0.5 s on average to be seen done and its successor submitted (measured:
            # 0.6-0.8 s between a step's success and the next submission).
            core_execution_loop.TICK_SECONDS = POLL_SECONDS
            return core_execution_loop.core_celery_execution_loop(
                plan_context, execution_plan, step_execution_fn=submit)

    args = celery_app_args(config["broker"], config["backend"], config["queue"],
                           config.get("config_source"))
    return WatchedCeleryExecutor(
        retries=RetryMode.from_config(config["retries"]), broker=args["broker"],
        backend=args["backend"], include=args["include"], config_source=args["config_source"])


CELERY_CONFIG = dg.Field({
    "broker": dg.Field(str, description="Celery broker URL (e.g. redis://host:6379/0)."),
    "backend": dg.Field(str, description="Celery result backend URL (e.g. redis://host:6379/1)."),
    "queue": dg.Field(str, default_value="dagster", description="Queue the steps go to."),
    "worker_check_seconds": dg.Field(
        float, default_value=5.0,
        description="How often the run pings the worker running a step; two unanswered pings "
                    "fail the step (the worker died)."),
    "config_source": dg.Field(dg.Permissive(), is_required=False,
                              description="Extra Celery app settings (lowercase names)."),
    "retries": IN_PROC_CONFIG.config_type.fields["retries"],
}, description="Execute each step as a Celery task on the project's workers (docs/DEPLOY.md).")


def _requirements(executor_config: Mapping[str, Any]) -> Sequence[ExecutorRequirement]:
    return multiple_process_executor_requirements() if "celery" in executor_config else []


def run_config_for(settings: Any) -> dict[str, Any]:
    """The ``execution`` run config of ``settings.execution`` (``mf`` runs)."""
    execution = settings.execution
    if execution.executor != "celery":
        return {"execution": {"config": {"in_process": {}}}}
    celery = execution.celery
    return {"execution": {"config": {"celery": {
        "broker": celery.broker, "backend": celery.backend, "queue": celery.queue,
        "worker_check_seconds": float(celery.worker_check_seconds)}}}}


def _default_choice() -> dict[str, Any]:
    """The launchpad's default: what the settings choose (``execution.executor``), so a run
    launched from the UI, the sensor or the schedule of a cluster goes to its workers too."""
    from mf_pipeline.lib.settings import SettingsError, load_settings

    try:
        return run_config_for(load_settings())["execution"]["config"]
    except SettingsError:
        return {"in_process": {}}  # the CLI reports bad settings; the UI still loads


@dg.executor(
    name="mf_executor",
    config_schema=dg.Field(dg.Selector({"in_process": IN_PROC_CONFIG, "celery": CELERY_CONFIG}),
                           default_value=_default_choice()),
    requirements=_requirements,
)
def mf_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Steps in this process (``in_process``, the default) or on Celery workers (``celery``)."""
    ((kind, config),) = init_context.executor_config.items()
    if kind == "celery":
        return _watched_celery_executor(config)
    return dg.in_process_executor.executor_creation_fn(init_context._replace(
        executor_def=dg.in_process_executor, executor_config=config))
