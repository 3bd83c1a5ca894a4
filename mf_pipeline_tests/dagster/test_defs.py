"""The project's Dagster definitions: a committed snapshot plus invariants that always hold.

The snapshot (``defs_snapshot.json`` beside this file) records what the UI shows of the code
location: every asset with its group, partitions, kinds and dependencies; the asset checks;
the jobs, schedules and sensors. Any change to them shows up as a diff in review. After an
intended change, regenerate it::

    UPDATE_DEFS_SNAPSHOT=1 .venv/bin/pytest -q mf_pipeline_tests/dagster/test_defs.py

The invariants below do not depend on the snapshot: they hold for any version of the graph.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mf_pipeline.defs.partitions import ticker_shards
from mf_pipeline.lib import registry
from mf_pipeline.orchestration.runner import definitions

SNAPSHOT = Path(__file__).with_name("defs_snapshot.json")
UPDATE_ENV = "UPDATE_DEFS_SNAPSHOT"
TEST_PATH = Path(__file__).relative_to(Path(__file__).parents[2]).as_posix()
IMPLICIT_JOB_PREFIX = "__ASSET_JOB"
"""Dagster's implicit asset job(s): not declared by the project, not in the snapshot."""
BRONZE_CHECK = "ledger_reconciles"
"""Bronze's blocking check: every raw line accounted for (the derived layers have ``sanity``)."""
DERIVED_CHECK = "sanity"

# --- the snapshot ----------------------------------------------------------------------------


def describe_partitions(partitions: dg.PartitionsDefinition | None) -> dict[str, Any] | None:
    """A JSON-able description of a partitions definition: its type and what defines it."""
    if partitions is None:
        return None
    if isinstance(partitions, dg.DynamicPartitionsDefinition):
        return {"type": "dynamic", "name": partitions.name}
    if isinstance(partitions, dg.StaticPartitionsDefinition):
        # Definition order, not sorted: it is the order of partition ranges (A…Z, 0).
        return {"type": "static", "keys": list(partitions.get_partition_keys())}
    if isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        return {"type": "time_window", "cron_schedule": partitions.cron_schedule,
                "start": partitions.start.isoformat(), "timezone": partitions.timezone,
                "fmt": partitions.fmt}
    if isinstance(partitions, dg.MultiPartitionsDefinition):
        return {"type": "multi",
                "dimensions": {dim.name: describe_partitions(dim.partitions_def)
                               for dim in partitions.partitions_defs}}
    return {"type": type(partitions).__name__}


def _status(status: Any) -> str | None:
    return None if status is None else getattr(status, "value", str(status))


def snapshot(defs: dg.Definitions) -> dict[str, Any]:
    """What the snapshot records of ``defs``; sorted everywhere, so equal graphs give equal
    JSON whatever the order of loading."""
    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    assets = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue  # an external stub, e.g. created for a dependency nobody defines
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": describe_partitions(node.partitions_def),
            "kinds": sorted(node.kinds),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
        }
    checks = sorted(
        ({"asset": ck.asset_key.to_user_string(), "name": ck.name,
          "blocking": graph.get(ck).blocking} for ck in graph.asset_check_keys),
        key=lambda c: (c["asset"], c["name"]),
    )
    jobs = sorted(
        ({"name": job.name,
          "assets": sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys),
          "partitions": describe_partitions(job.partitions_def)}
         for job in repo.get_all_jobs() if not job.name.startswith(IMPLICIT_JOB_PREFIX)),
        key=lambda j: j["name"],
    )
    schedules = sorted(
        ({"name": s.name, "cron_schedule": s.cron_schedule, "job": s.job_name,
          "timezone": s.execution_timezone, "default_status": _status(s.default_status)}
         for s in repo.schedule_defs),
        key=lambda s: s["name"],
    )
    sensors = sorted(
        ({"name": s.name, "default_status": _status(s.default_status)}
         for s in repo.sensor_defs),
        key=lambda s: s["name"],
    )
    return {"assets": dict(sorted(assets.items())), "asset_checks": checks, "jobs": jobs,
            "schedules": schedules, "sensors": sensors}


def to_json(snap: dict[str, Any]) -> str:
    return json.dumps(snap, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return definitions()


@pytest.fixture(scope="module")
def graph(defs) -> Any:
    return defs.resolve_asset_graph()


def test_definitions_match_the_snapshot(defs):
    current = to_json(snapshot(defs))
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.write_text(current)
        return
    how = (f"If the change is intended, regenerate the snapshot and commit it:\n"
           f"    {UPDATE_ENV}=1 .venv/bin/pytest -q {TEST_PATH}")
    if not SNAPSHOT.exists():
        pytest.fail(f"no snapshot at {SNAPSHOT}.\n{how}", pytrace=False)
    committed = SNAPSHOT.read_text()
    if committed != current:
        diff = "".join(difflib.unified_diff(
            committed.splitlines(keepends=True), current.splitlines(keepends=True),
            fromfile=f"{SNAPSHOT.name} (committed)", tofile="definitions() (current code)"))
        pytest.fail(f"the Dagster definitions differ from {SNAPSHOT.name}:\n{diff}\n{how}",
                    pytrace=False)


def test_snapshot_describes_every_kind_of_definition():
    """The snapshot mechanism on a small graph with what the project may grow: dynamic and
    time partitions, a job, a schedule, a sensor."""
    runs = dg.DynamicPartitionsDefinition(name="research_runs")
    daily = dg.DailyPartitionsDefinition(start_date="2024-01-01")

    @dg.asset(partitions_def=runs, group_name="g", kinds={"python"})
    def fit(): ...

    @dg.asset(partitions_def=daily, deps=[fit], group_name="g")
    def day(): ...

    @dg.asset_check(asset=fit, blocking=True)
    def ok():
        return dg.AssetCheckResult(passed=True)

    job = dg.define_asset_job("fit_job", selection=[fit])

    @dg.sensor(job=job, default_status=dg.DefaultSensorStatus.RUNNING)
    def watch():
        return None

    snap = snapshot(dg.Definitions(
        assets=[fit, day], asset_checks=[ok], jobs=[job], sensors=[watch],
        schedules=[dg.ScheduleDefinition(name="nightly", job=job, cron_schedule="0 2 * * *")],
    ))
    assert snap["assets"]["fit"] == {"group": "g", "kinds": ["python"], "deps": [],
                                     "partitions": {"type": "dynamic", "name": "research_runs"}}
    assert snap["assets"]["day"]["partitions"]["type"] == "time_window"
    assert snap["assets"]["day"]["deps"] == ["fit"]
    assert snap["asset_checks"] == [{"asset": "fit", "name": "ok", "blocking": True}]
    assert snap["jobs"] == [{"name": "fit_job", "assets": ["fit"],
                             "partitions": {"type": "dynamic", "name": "research_runs"}}]
    assert snap["schedules"] == [{"name": "nightly", "cron_schedule": "0 2 * * *",
                                  "job": "fit_job", "timezone": None,
                                  "default_status": "STOPPED"}]
    assert snap["sensors"] == [{"name": "watch", "default_status": "RUNNING"}]
    assert to_json(snap) == to_json(json.loads(to_json(snap)))


# --- invariants ------------------------------------------------------------------------------


def _assets(graph) -> dict[str, Any]:
    return {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()
            if graph.get(key).is_materializable}


def test_every_asset_has_a_group_and_a_description(graph):
    assets = _assets(graph)
    no_group = sorted(name for name, node in assets.items()
                      if not node.group_name or node.group_name == "default")
    no_description = sorted(name for name, node in assets.items()
                            if not (node.description or "").strip())
    assert not no_group, f"assets without a group: {no_group}"
    assert not no_description, f"assets without a description: {no_description}"


def test_every_dependency_is_a_defined_asset(graph):
    assets = _assets(graph)
    dangling = sorted(
        (name, parent.to_user_string())
        for name, node in assets.items() for parent in node.parent_keys
        if parent.to_user_string() not in assets
    )
    assert not dangling, f"(asset, dependency) pairs naming no defined asset: {dangling}"


def test_checks_target_defined_assets(graph):
    assets = _assets(graph)
    orphans = sorted(str(ck) for ck in graph.asset_check_keys
                     if ck.asset_key.to_user_string() not in assets)
    assert not orphans, f"checks on undefined assets: {orphans}"


@pytest.mark.parametrize("layer", registry.PER_TICKER)
def test_per_ticker_layers_are_shard_partitioned_and_checked(graph, layer):
    assets = _assets(graph)
    assert layer in assets, f"registry layer {layer!r} is not an asset"
    node = assets[layer]
    assert node.partitions_def is not None, f"{layer} is not partitioned"
    assert list(node.partitions_def.get_partition_keys()) == list(
        ticker_shards.get_partition_keys()), f"{layer} is not partitioned by ticker shards"
    assert isinstance(node.partitions_def, dg.StaticPartitionsDefinition)
    blocking = {ck.name for ck in graph.asset_check_keys
                if ck.asset_key == node.key and graph.get(ck).blocking}
    expected = BRONZE_CHECK if layer == "bronze" else DERIVED_CHECK
    assert expected in blocking, f"{layer} has blocking checks {sorted(blocking)}, not {expected}"


def test_registry_dependencies_are_the_asset_dependencies(graph):
    """Each per-ticker layer reads exactly what the registry says it reads."""
    assets = _assets(graph)
    for layer in registry.PER_TICKER:
        deps = {parent.to_user_string() for parent in assets[layer].parent_keys}
        inputs = set(registry.LAYERS[layer].inputs)
        assert inputs <= deps, f"{layer}: registry inputs {sorted(inputs)}, deps {sorted(deps)}"


RST_MARKUP = ("``", ":func:", ":class:", ":meth:", ":mod:")
"""reStructuredText the UI shows raw: its catalog renders Markdown (single backticks)."""


def test_catalog_texts_are_markdown_not_rst(graph):
    defs = definitions()
    texts = {f"asset {name}": node.description for name, node in _assets(graph).items()}
    texts |= {f"check {key.to_user_string()}": graph.get(key).description
              for key in graph.asset_check_keys}
    texts |= {f"sensor {sensor.name}": sensor.description for sensor in defs.sensors or []}
    missing = sorted(name for name, text in texts.items() if not (text or "").strip())
    raw_rst = sorted(name for name, text in texts.items()
                     if any(mark in (text or "") for mark in RST_MARKUP))
    assert not missing, f"no description: {missing}"
    assert not raw_rst, f"reStructuredText shown raw in the UI: {raw_rst}"
