"""Run the Dagster assets in process against the persistent instance (``DAGSTER_HOME``).

This is how the CLI executes work: the same assets the UI and the sensor run, recorded in the
same instance, so every CLI run shows up in the Dagster UI.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")

import dagster as dg  # noqa: E402

from mf_pipeline.defs.partitions import RANGE_END, RANGE_START  # noqa: E402
from mf_pipeline.lib import lake_lock  # noqa: E402
from mf_pipeline.lib.partitions import shard_span  # noqa: E402
from mf_pipeline.lib.settings import Settings  # noqa: E402
from mf_pipeline.orchestration.instance import get_instance  # noqa: E402

Log = Callable[[str], None]


def instance(settings: Settings) -> dg.DagsterInstance:
    return get_instance(settings.project_root)


@functools.cache
def definitions() -> dg.Definitions:
    from mf_pipeline.definitions import defs

    return defs() if callable(defs) else defs


@dataclass
class RunOutcome:
    run_ids: list[str] = field(default_factory=list)
    shards: tuple[str, str] | None = None
    seconds: float = 0.0
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)


@contextmanager
def holding_lake_lock(settings: Settings, log: Log = print,
                      timeout: float | None = None) -> Iterator[None]:
    """Hold the lake lock of ``settings`` (``lib/lake_lock.py``): one writer per lake at a time.

    Re-entrant in this thread: every run below takes it again (and the run's ``settings``
    resource once more). A caller that plans work before its run (reads the lake to choose
    tickers) may wrap planning and run in it, so the plan cannot go stale while it waits.
    """
    with lake_lock.hold(settings, log=log, timeout=timeout):
        yield


def _execute(
    selection: Sequence[str],
    settings: Settings,
    run_config: dict[str, Any] | None,
    log_level: str | None,
    log: Log = print,
    **kwargs: Any,
) -> tuple[dg.ExecuteInProcessResult, dict[str, dict[str, Any]]]:
    """One in-process run of the implicit asset job, holding the lake lock for the whole run;
    returns the result and asset metadata."""
    config = dict(run_config or {})
    level = log_level or os.environ.get("MF_LOG_LEVEL", "WARNING").upper()
    config["loggers"] = {"console": {"config": {"log_level": level}}}
    job = definitions().resolve_implicit_global_asset_job_def()
    with holding_lake_lock(settings, log):
        result = job.execute_in_process(
            run_config=config,
            instance=instance(settings),
            asset_selection=[dg.AssetKey(name) for name in selection],
            raise_on_error=True,
            **kwargs,
        )
    metadata: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        mat = getattr(event.event_specific_data, "materialization", None)
        if mat is not None:
            metadata[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return result, metadata


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
) -> RunOutcome:
    """Materialize ``head`` (unpartitioned, e.g. the manifest), the per-ticker assets for
    ``tickers`` and ``tail`` (unpartitioned, e.g. the ML dataset) in one Dagster run.

    The per-ticker assets run over the contiguous range of shards that holds ``tickers``. With
    ``explicit`` they process exactly those tickers (the ``ticker_work`` resource); without,
    ``tickers`` only chooses the shards and each asset finds its own work, which gives the same
    list for a plain incremental run and spares Dagster validating thousands of config values
    (~1.4 s for 8,000 tickers). No tickers, no shards.
    """
    started = time.perf_counter()
    span = shard_span(tickers) if per_ticker else None
    selection = [*head, *(per_ticker if span else ()), *tail]
    outcome = RunOutcome(shards=span)
    if not selection:
        return outcome
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
    log(f"  done in {outcome.seconds:.2f}s (Dagster run {result.run_id})")
    return outcome


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
    log(f"  done in {outcome.seconds:.2f}s (Dagster run {result.run_id})")
    return outcome


def _register_dynamic_key(settings: Settings, selection: Sequence[str], key: str) -> None:
    """Add ``key`` to the dynamic partitions of the selected assets (e.g. a research split
    for a train end outside the defaults), so the run is a run on that partition."""
    names = {dg.AssetKey(name) for name in selection}
    for spec in definitions().resolve_all_asset_specs():
        pdef = spec.partitions_def
        if spec.key in names and isinstance(pdef, dg.DynamicPartitionsDefinition) and pdef.name:
            instance(settings).add_dynamic_partitions(pdef.name, [key])
