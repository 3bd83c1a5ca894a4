"""Run the Dagster assets in process against the persistent instance (``DAGSTER_HOME``).

This is how the CLI executes work: the same assets the UI and the sensor run, recorded in the
same instance, so every CLI run shows up in the Dagster UI. Progress goes to the display of
``orchestration/progress.py``; a failed run raises :class:`RunFailed` with the step's own
message, its traceback kept in the run's event log (the UI) and a file under ``logs/runs/``.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")

import dagster as dg  # noqa: E402

from mf_pipeline.defs.partitions import RANGE_END, RANGE_START  # noqa: E402
from mf_pipeline.defs.shard_metadata import run_totals  # noqa: E402
from mf_pipeline.lib import lake_lock  # noqa: E402
from mf_pipeline.lib.partitions import (  # noqa: E402
    SHARD_KEYS,
    in_shards,
    shard_groups,
    shard_span,
)
from mf_pipeline.lib.settings import Settings  # noqa: E402
from mf_pipeline.orchestration import accounting, progress, worker_progress  # noqa: E402
from mf_pipeline.orchestration.instance import get_instance  # noqa: E402

Log = Callable[[str], None]


def instance(settings: Settings) -> dg.DagsterInstance:
    with accounting.part("Dagster instance: open"):
        return get_instance(settings.project_root)


@functools.cache
def definitions() -> dg.Definitions:
    with accounting.part("Dagster definitions: load (defs modules and their imports)"):
        from mf_pipeline.definitions import defs

        return defs() if callable(defs) else defs


@dataclass
class RunOutcome:
    run_ids: list[str] = field(default_factory=list)
    shards: tuple[str, str] | None = None
    seconds: float = 0.0
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)


class RunFailed(Exception):
    """A run that failed in a step: the step's message in one line, the traceback elsewhere."""

    def __init__(self, what: str, message: str, run_id: str, log_path: Path,
                 traceback: str) -> None:
        super().__init__(f"{what} failed: {message} (Dagster run {run_id}; full traceback: "
                         f"the run's page in the UI, or {log_path})")
        self.run_id = run_id
        self.traceback = traceback
        self._fields = (what, message, run_id, log_path, traceback)

    def __reduce__(self) -> tuple[Any, ...]:  # crosses from a shard run's child process
        return RunFailed, self._fields


@contextmanager
def holding_lake_lock(settings: Settings, log: Log = print,
                      timeout: float | None = None) -> Iterator[None]:
    """Hold the lake lock of ``settings`` (``lib/lake_lock.py``): one writer per lake at a time.

    Re-entrant in this thread: every run below takes it again (and the run's ``settings``
    resource once more). A caller that plans work before its run (reads the lake to choose
    tickers) may wrap planning and run in it, so the plan cannot go stale while it waits.
    """
    with ExitStack() as held:
        with accounting.part("lake lock: wait and take"):
            held.enter_context(lake_lock.hold(settings, log=log, timeout=timeout))
        yield


def step_labels(selection: Sequence[str]) -> dict[str, str]:
    """Each step of a run of ``selection``, named by its selected assets (the derived layers
    are one step, ``ticker_layers``)."""
    labels: dict[str, list[str]] = {}
    for name in selection:
        step = definitions().resolve_assets_def(name).node_def.name
        labels.setdefault(step, []).append(name)
    return {step: ", ".join(names) for step, names in labels.items()}


def _failure(result: dg.ExecuteInProcessResult, selection: Sequence[str],
             settings: Settings) -> RunFailed:
    """The first failed step of ``result`` as :class:`RunFailed`; its traceback is written to
    ``<logs_root>/runs/<run_id>.log``. Dagster wraps an asset's exception in a step execution
    error: the message shown is the asset's own."""
    labels = step_labels(selection)
    what, error = "the run", None
    for event in result.all_events:
        if event.is_step_failure:
            step = event.step_key or ""
            what, error = labels.get(step, step), event.step_failure_data.error
            break
        error = getattr(event.event_specific_data, "error", None) or error
    own = error.cause if error is not None and error.cause is not None and \
        error.cls_name.startswith("Dagster") else error
    lines = own.message.splitlines() if own is not None else ["no error recorded"]
    message = "; ".join(line.strip() for line in lines if line.strip())
    qualified, _, rest = message.partition(": ")  # module.path.Error: text -> Error: text
    if own is not None and rest and qualified.endswith("." + own.cls_name):
        message = f"{own.cls_name}: {rest}"
    text = error.to_string() if error is not None else message
    path = settings.logs_root / "runs" / f"{result.run_id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{what} failed in Dagster run {result.run_id}\n\n{text}\n")
    return RunFailed(str(what), message, result.run_id, path, text)


def _execute(
    selection: Sequence[str],
    settings: Settings,
    run_config: dict[str, Any] | None,
    log_level: str | None,
    log: Log = print,
    job_name: str | None = None,
    **kwargs: Any,
) -> tuple[dg.ExecuteInProcessResult, dict[str, dict[str, Any]]]:
    """One in-process run of the implicit asset job on ``selection`` (or of the asset job
    ``job_name``, whole), holding the lake lock for the whole run; returns the result and asset
    metadata, or raises :class:`RunFailed`.

    Progress goes to ``log`` (and bars, see ``progress.py``) through the ``mf_progress``
    logger; Dagster's own console logger is on only when asked (``MF_LOG_LEVEL``).
    """
    config = _with_loggers(run_config, log_level)
    if on_workers(settings):
        with holding_lake_lock(settings, log), progress.showing(log, step_labels(selection)), \
                worker_progress.reporting(lambda: instance(settings), log) as launch:
            kwargs["tags"] = {**kwargs.get("tags", {}), **launch}
            result, parts = _on_workers(selection, settings, config, job_name, **kwargs)
        return result, _totals(parts)
    if job_name is None:
        job = definitions().resolve_implicit_global_asset_job_def()
        kwargs["asset_selection"] = [dg.AssetKey(name) for name in selection]
    else:
        job = definitions().resolve_job_def(job_name)
    with holding_lake_lock(settings, log), progress.showing(log, step_labels(selection)):
        where = instance(settings)
        with accounting.part(accounting.RUN_START):
            result = job.execute_in_process(
                run_config=config, instance=where, raise_on_error=False, **kwargs)
    result, parts = _finished(result, selection, settings)
    return result, _totals(parts)


IN_WORKER_ENV = "MF_CELERY_WORKER"
"""Set in Celery worker processes (``celery_app.py``): a run launched from inside a step there
(the nightly job's lake update and candidate re-run) executes in that process, as on one
machine, instead of queueing steps for workers while it holds one (a one-worker cluster would
wait forever)."""


def on_workers(settings: Settings) -> bool:
    """Whether this process sends its runs' steps to Celery workers."""
    return settings.execution.executor == "celery" and not os.environ.get(IN_WORKER_ENV)


def _with_loggers(run_config: dict[str, Any] | None, log_level: str | None) -> dict[str, Any]:
    config = dict(run_config or {})
    config["loggers"] = {"mf_progress": {}}
    level = log_level or os.environ.get("MF_LOG_LEVEL")
    if level:
        config["loggers"]["console"] = {"config": {"log_level": level.upper()}}
    return config


Parts = dict[str, list[dict[str, Any]]]
"""Each asset's materialization metadata in a run (one entry per shard of a per-ticker asset)."""


def _finished(result: Any, selection: Sequence[str], settings: Settings
              ) -> tuple[Any, Parts]:
    """The run's seconds record, then its failure raised or its materializations' metadata
    returned."""
    _account(settings, result.run_id)
    if not result.success:
        raise _failure(result, selection, settings)
    with accounting.part("CLI: the run's metadata for the summary"):
        per_shard: Parts = {}
        for event in result.get_asset_materialization_events():
            mat = getattr(event.event_specific_data, "materialization", None)
            if mat is not None:
                per_shard.setdefault(mat.asset_key.to_user_string(), []).append(
                    {k: v.value for k, v in mat.metadata.items()})
        return result, per_shard


def _totals(parts: Parts) -> dict[str, dict[str, Any]]:
    with accounting.part("CLI: the run's metadata for the summary"):
        return {asset: run_totals(entries) for asset, entries in parts.items()}


def _on_workers(selection: Sequence[str], settings: Settings, config: dict[str, Any],
                job_name: str | None = None, tags: dict[str, str] | None = None,
                partition_key: str | None = None) -> tuple[Any, Parts]:
    """One run whose steps execute on Celery workers (``execution.executor: celery``).

    The caller holds the lake lock; the run carries its token (``lake_lock.RUN_TAG``), so the
    steps proceed under it on the workers. The run's own orchestration (submitting steps,
    collecting their events) happens in the calling process: the ``mf`` command, or for a
    shard group the child process it started for that run.
    """
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from mf_pipeline.orchestration.executors import run_config_for

    run_tags = dict(tags or {})
    run_tags.setdefault(lake_lock.RUN_TAG, lake_lock.token_of(settings.data_root) or "")
    if partition_key is not None:
        run_tags["dagster/partition"] = partition_key
    repository = ReconstructableRepository.for_module("mf_pipeline.definitions", "defs")
    job = repository.get_reconstructable_job(
        job_name or definitions().resolve_implicit_global_asset_job_def().name)
    selected = None if job_name else [dg.AssetKey(name) for name in selection]
    with accounting.part(accounting.RUN_START), dg.execute_job(
            job, instance(settings), run_config={**config, **run_config_for(settings)},
            tags=run_tags, raise_on_error=False, asset_selection=selected) as result:
        return _finished(result, selection, settings)


def _account(settings: Settings, run_id: str) -> None:
    """The command's seconds record goes beside the run's logs, named by its first run."""
    accounting.record_to(settings.logs_root / "runs" / f"{run_id}.seconds.json",
                         run_ids=[run_id])


def run_partitioned(
    settings: Settings,
    head: Sequence[str],
    per_ticker: Sequence[str],
    tail: Sequence[str],
    tickers: Sequence[str],
    run_config: dict[str, Any] | None = None,
    log: Log = print,
    log_level: str | None = None,
    explicit: bool = True,
    all_shards: bool = False,
) -> RunOutcome:
    """Materialize ``head`` (unpartitioned, e.g. the manifest), the per-ticker assets for
    ``tickers`` and ``tail`` (unpartitioned, e.g. the ML dataset) in one Dagster run.

    The per-ticker assets run over the contiguous range of shards that holds ``tickers``. With
    ``explicit`` they process exactly those tickers (the ``ticker_work`` resource); without,
    ``tickers`` only chooses the shards and each asset finds its own work, which gives the same
    list for a plain incremental run and spares Dagster validating thousands of config values
    (~1.4 s for 8,000 tickers). No tickers, no shards. ``all_shards`` runs every shard (a
    whole-universe run: shards without tickers are materialized too, as empty).
    """
    started = time.perf_counter()
    span = shard_span(tickers) if per_ticker else None
    if span is not None and all_shards:
        span = SHARD_KEYS[0], SHARD_KEYS[-1]
    selection = [*head, *(per_ticker if span else ()), *tail]
    outcome = RunOutcome(shards=span)
    if not selection:
        return outcome
    groups = shard_groups(tickers, span, settings.execution.shard_runs) \
        if span is not None and settings.execution.shard_runs > 1 and on_workers(settings) \
        else []
    if len(groups) > 1:
        return _in_shard_runs(settings, head, per_ticker, tail, tickers, groups, run_config,
                              explicit, log, log_level)
    config = dict(run_config or {})
    tags = {}
    if span is not None:
        if explicit:
            config["resources"] = {"ticker_work": {"config": {"tickers": sorted(set(tickers))}}}
        tags = {RANGE_START: span[0], RANGE_END: span[1]}
        log(f"run: {', '.join(selection)} for {len(set(tickers))} tickers "
            f"in shards {span[0]}…{span[1]}")
    else:
        log(f"run: {', '.join(selection)}")
    result, outcome.metadata = _execute(selection, settings, config, log_level, log, tags=tags)
    outcome.run_ids.append(result.run_id)
    outcome.seconds = time.perf_counter() - started
    log(f"done in {outcome.seconds:.2f}s (Dagster run {result.run_id})")
    return outcome


def _for_steps(config: dict[str, Any], selection: Sequence[str]) -> dict[str, Any]:
    """``config`` without the op config of steps outside ``selection`` (Dagster refuses it)."""
    steps = set(step_labels(selection))
    ops = {name: value for name, value in (config.get("ops") or {}).items() if name in steps}
    return {key: value for key, value in config.items() if key != "ops"} | (
        {"ops": ops} if ops else {})


def _in_shard_runs(settings: Settings, head: Sequence[str], per_ticker: Sequence[str],
                   tail: Sequence[str], tickers: Sequence[str], groups: list[tuple[str, str]],
                   run_config: dict[str, Any] | None, explicit: bool, log: Log,
                   log_level: str | None) -> RunOutcome:
    """``head``, then the per-ticker assets as one run per shard group, all at once on the
    Celery workers, then ``tail``: what ``execution.shard_runs`` > 1 asks for.

    The runs are ordinary range runs (the UI shows one per group, tagged with its shards); this
    process holds the lake lock for all of them and their steps proceed under it. A failed
    group fails the command after the others finish; ``tail`` then does not run.
    """
    started = time.perf_counter()
    outcome = RunOutcome(shards=(groups[0][0], groups[-1][1]))
    base = _with_loggers(run_config, log_level)
    parts: Parts = {}
    with holding_lake_lock(settings, log), progress.showing(
            log, step_labels([*head, *per_ticker, *tail])), \
            worker_progress.reporting(lambda: instance(settings), log) as launch:
        if head:
            log(f"run: {', '.join(head)}")
            result, got = _on_workers(head, settings, _for_steps(base, head), tags=launch)
            outcome.run_ids.append(result.run_id)
            parts |= got
        log(f"run: {', '.join(per_ticker)} for {len(set(tickers))} tickers as {len(groups)} "
            f"concurrent runs: shards {', '.join(f'{a}…{b}' for a, b in groups)}")
        token = lake_lock.token_of(settings.data_root) or ""
        with accounting.part(f"Dagster runs on Celery workers: {len(groups)} shard groups"):
            results = _concurrently(_group_run, [(
                settings, per_ticker, _group_config(base, per_ticker, tickers, group, explicit),
                {RANGE_START: group[0], RANGE_END: group[1], lake_lock.RUN_TAG: token, **launch})
                for group in groups])
        for run_id, got in results:
            outcome.run_ids.append(run_id)
            for asset, entries in got.items():
                parts.setdefault(asset, []).extend(entries)
        if tail:
            log(f"run: {', '.join(tail)}")
            result, got = _on_workers(tail, settings, _for_steps(base, tail), tags=launch)
            outcome.run_ids.append(result.run_id)
            parts |= got
    outcome.metadata = _totals(parts)
    outcome.seconds = time.perf_counter() - started
    log(f"done in {outcome.seconds:.2f}s ({len(outcome.run_ids)} Dagster runs)")
    return outcome


def _group_config(base: dict[str, Any], per_ticker: Sequence[str], tickers: Sequence[str],
                  group: tuple[str, str], explicit: bool) -> dict[str, Any]:
    config = _for_steps(base, per_ticker)
    if explicit:
        shards = set(SHARD_KEYS[SHARD_KEYS.index(group[0]):SHARD_KEYS.index(group[1]) + 1])
        config["resources"] = {"ticker_work": {"config": {
            "tickers": in_shards(tickers, shards)}}}
    return config


def _group_run(settings: Settings, selection: Sequence[str], config: dict[str, Any],
               tags: dict[str, str]) -> tuple[str, Parts] | RunFailed:
    """One shard group's run (in a child process): its id and parts, or its failure."""
    try:
        result, parts = _on_workers(selection, settings, config, tags=tags)
    except RunFailed as failed:
        return failed
    return result.run_id, parts


def _concurrently(call: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]) -> list[Any]:
    """``call(*args)`` for each ``args`` at once, each in its own child process (Dagster's run
    setup is not thread-safe: two runs in threads of one process deadlock in ``logging``);
    results in order. The first failure is raised once every run has finished, so no run is
    left orchestrated by nobody."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(arguments), mp_context=context) as pool:
        futures = [pool.submit(call, *args) for args in arguments]
        wait(futures)
    results = [future.result() for future in futures]
    for result in results:
        if isinstance(result, RunFailed):
            raise result
    return results


def run_assets(
    settings: Settings,
    selection: Sequence[str],
    partition_key: str | None = None,
    run_config: dict[str, Any] | None = None,
    log: Log = print,
    log_level: str | None = None,
) -> RunOutcome:
    """Materialize ``selection`` in one Dagster run, for one partition of a static partitions
    definition (e.g. a research split) or unpartitioned."""
    started = time.perf_counter()
    if partition_key is not None:
        _register_dynamic_key(settings, selection, partition_key)
    where = f" [{partition_key}]" if partition_key else ""
    log(f"run: {', '.join(selection)}{where}")
    result, metadata = _execute(selection, settings, run_config, log_level, log,
                                partition_key=partition_key)
    outcome = RunOutcome(run_ids=[result.run_id], metadata=metadata)
    outcome.seconds = time.perf_counter() - started
    log(f"done in {outcome.seconds:.2f}s (Dagster run {result.run_id})")
    return outcome


def run_asset_job(settings: Settings, job_name: str, run_config: dict[str, Any] | None = None,
                  tags: dict[str, str] | None = None, log: Log = print,
                  log_level: str | None = None) -> RunOutcome:
    """Run the asset job ``job_name`` of ``defs`` whole (e.g. ``ops_nightly``), as the schedule
    would: the run carries the job's name, so its sensors and the UI's job page see it."""
    started = time.perf_counter()
    selection = [key.to_user_string() for key in
                 definitions().resolve_job_def(job_name).asset_layer.executable_asset_keys]
    log(f"run: {job_name} ({', '.join(selection)})")
    result, metadata = _execute(selection, settings, run_config, log_level, log,
                                job_name=job_name, tags=tags or {})
    outcome = RunOutcome(run_ids=[result.run_id], metadata=metadata)
    outcome.seconds = time.perf_counter() - started
    log(f"done in {outcome.seconds:.2f}s (Dagster run {result.run_id})")
    return outcome


def run_job(settings: Settings, job_name: str, op_config: dict[str, Any],
            log: Log = print, log_level: str | None = None) -> RunOutcome:
    """Run a one-op job of ``defs`` (work on folders rather than assets, e.g. a QA of any
    validation folder) with ``op_config`` as its op's config; its output is the op's
    ``mf_result`` metadata in ``RunOutcome.metadata[job_name]``."""
    started = time.perf_counter()
    job = definitions().get_job_def(job_name)
    op_name = job.graph.node_defs[0].name
    config: dict[str, Any] = {"ops": {op_name: {"config": op_config}},
                              "loggers": {"mf_progress": {}}}
    level = log_level or os.environ.get("MF_LOG_LEVEL")
    if level:
        config["loggers"]["console"] = {"config": {"log_level": level.upper()}}
    log(f"run: {job_name}")
    with holding_lake_lock(settings, log), progress.showing(log, {op_name: job_name}):
        where = instance(settings)
        with accounting.part(accounting.RUN_START):
            result = job.execute_in_process(run_config=config, instance=where,
                                            raise_on_error=False)
    _account(settings, result.run_id)
    if not result.success:
        raise _failure(result, [], settings)
    outcome = RunOutcome(run_ids=[result.run_id])
    outcome.metadata[job_name] = result.output_for_node(op_name)
    outcome.seconds = time.perf_counter() - started
    log(f"done in {outcome.seconds:.2f}s (Dagster run {result.run_id})")
    return outcome


def _register_dynamic_key(settings: Settings, selection: Sequence[str], key: str) -> None:
    """Add ``key`` to the dynamic partitions of the selected assets (e.g. a research split
    for a train end outside the defaults), so the run is a run on that partition. Each
    partitions definition is asked once, and only when the key is new."""
    names = {dg.AssetKey(name) for name in selection}
    dynamic = dg.DynamicPartitionsDefinition
    pdefs = {spec.partitions_def.name for spec in definitions().resolve_all_asset_specs()
             if spec.key in names and isinstance(spec.partitions_def, dynamic)
             and spec.partitions_def.name}
    if not pdefs:
        return
    inst = instance(settings)
    for name in sorted(pdefs):
        if not inst.has_dynamic_partition(name, key):
            inst.add_dynamic_partitions(name, [key])
