"""Scale-out (docs/DEPLOY.md): `mf run` through real PostgreSQL, Redis and two Celery workers
gives the lake, ledger and Dagster materializations of the default in-process run; a worker
killed with ``kill -9`` in the middle of a step fails the run (it does not hang), and running
the command again converges to the same lake.

The servers are Debian's packages, started on 127.0.0.1 with temp data folders and stopped at
the end (``mf_pipeline_tests/servers.py``); CI installs them (``.ci/run``). Without them the
test skips, except under CI, where it fails.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from mf_pipeline.lib.partitions import SHARD_KEYS
from mf_pipeline.lib.registry import PER_TICKER
from mf_pipeline.lib.sample import generate_universe
from mf_pipeline_tests.e2e.test_crash import RUN, assert_same, env_for, snapshot
from mf_pipeline_tests.servers import (
    SKIP_NO_SERVERS,
    create_database,
    postgres_server,
    redis_server,
    servers_available,
)

HERE = Path(__file__).parent
STABLE_METADATA = ("dagster/row_count", "ticker_count", "tickers", "min_trade_date",
                   "max_trade_date")
"""Per-shard metadata that describes the lake (not the run): equal for equal lakes."""

pytestmark = pytest.mark.skipif(not servers_available() and not os.environ.get("CI"),
                                reason=SKIP_NO_SERVERS)


def cluster_env(root: Path, raw: Path, postgres: str, redis: str) -> dict[str, str]:
    return env_for(root, raw) | {
        "MF_DAGSTER_POSTGRES_URL": postgres,
        "MF_PIPELINE_EXECUTION__EXECUTOR": "celery",
        "MF_PIPELINE_EXECUTION__SHARD_RUNS": "2",
        "MF_PIPELINE_EXECUTION__CELERY__BROKER": f"{redis}/0",
        "MF_PIPELINE_EXECUTION__CELERY__BACKEND": f"{redis}/1",
        "MF_PIPELINE_EXECUTION__CELERY__WORKER_CHECK_SECONDS": "1",
    }


@contextmanager
def workers(env: dict[str, str], names: tuple[str, ...], logs: Path) -> Iterator[dict]:
    """Celery workers (one process group each) running the project's app; killed at the end."""
    code = ("import sys, pause_hook\nfrom celery.__main__ import main\n"
            "sys.argv = ['celery'] + sys.argv[1:]\nmain()")
    started = {}
    for name in names:
        with open(logs / f"{name}.log", "w") as log:
            started[name] = subprocess.Popen(
                [sys.executable, "-c", code, "-A", "mf_pipeline.orchestration.celery_app",
                 "worker", "-Q", "dagster", "--concurrency", "1", "-n", f"{name}@%h",
                 "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not all("ready." in (logs / f"{n}.log").read_text() for n in names):
            assert time.monotonic() < deadline, "Celery workers did not start"
            assert all(p.poll() is None for p in started.values()), "a worker exited"
            time.sleep(0.2)
        yield started
    finally:
        for process in started.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


MF = (sys.executable, "-c", "from mf_pipeline.cli import run\nrun()")


def mf(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*MF, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@contextmanager
def instance_of(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items()
                       if k in ("DAGSTER_HOME", "MF_DAGSTER_POSTGRES_URL")})
    if "MF_DAGSTER_POSTGRES_URL" not in env:
        os.environ.pop("MF_DAGSTER_POSTGRES_URL", None)
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            yield instance
    finally:
        os.environ.clear()
        os.environ.update(saved)


def materialized(instance: dg.DagsterInstance) -> dict[tuple[str, str | None], dict]:
    """The latest materialization of every (asset, partition): its lake-describing metadata."""
    out: dict[tuple[str, str | None], dict] = {}
    for key in instance.get_asset_keys():
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=10_000, ascending=True).records
        for record in records:
            mat = record.asset_materialization
            out[(key.to_user_string(), mat.partition)] = {
                name: value.value for name, value in mat.metadata.items()
                if name in STABLE_METADATA}
    return out


def worker_of_steps(instance: dg.DagsterInstance, run_ids: list[str]) -> set[str]:
    """The Celery workers that executed steps of ``run_ids`` (their engine events say)."""
    hosts = set()
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            data = entry.dagster_event.engine_event_data
            worker = data.metadata.get("Celery worker") if data else None
            if worker is not None:
                hosts.add(worker.value)
    return hosts


@pytest.fixture(scope="module")
def universe(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    generate_universe(raw, n_tickers=24, years=3.0, seed=17, messy=True)
    return raw


def test_celery_workers_give_the_in_process_lake_and_a_killed_worker_converges(
        tmp_path, universe):
    reference = env_for(tmp_path / "in_process", universe)
    ok(mf(reference, *RUN))
    want = snapshot(tmp_path / "in_process", universe)
    with instance_of(reference) as instance:
        want_materialized = materialized(instance)
    assert {asset for asset, _ in want_materialized} >= {"manifest", *PER_TICKER}

    with postgres_server() as postgres, redis_server(tmp_path / "redis") as redis:
        # Two workers, shards in two concurrent runs: the same lake and materializations.
        env = cluster_env(tmp_path / "cluster", universe,
                          create_database(postgres, "cluster"), redis)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        with workers(env, ("w1", "w2"), tmp_path):
            result = mf(env, *RUN)
        ok(result)
        output = result.stdout + result.stderr
        assert "as 2 concurrent runs" in output
        assert "manifest: on worker w" in output and "manifest: done in" in output
        done = [line for line in output.splitlines() if "ticker_layers: done in" in line]
        assert len(done) == 2, output  # one line per shard group as its step finished
        assert any("[shards 00…" in line for line in done)
        assert any("…15] ticker_layers" in line for line in done)
        assert_same(snapshot(tmp_path / "cluster", universe), want, "two Celery workers")
        with instance_of(env) as instance:
            assert materialized(instance) == want_materialized
            runs = instance.get_runs()
            assert len(runs) == 3 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            ranges = sorted((r.tags.get("dagster/asset_partition_range_start"),
                             r.tags.get("dagster/asset_partition_range_end")) for r in runs
                            if "dagster/asset_partition_range_start" in r.tags)
            assert len(ranges) == 2 and ranges[0][0] == SHARD_KEYS[0] \
                and ranges[1][1] == SHARD_KEYS[-1]
            assert len(worker_of_steps(instance, [r.run_id for r in runs])) == 2

        # A worker killed with kill -9 in the middle of committing a shard: the run fails
        # (no hang) naming the worker; the same command again converges to the same lake.
        env = cluster_env(tmp_path / "killed", universe,
                          create_database(postgres, "killed"), redis)
        marker = tmp_path / "paused.pid"
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        with workers(env | {"MF_PAUSE_MARKER": str(marker)}, ("w3", "w4"), tmp_path) as pool:
            run = subprocess.Popen([*MF, *RUN], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            deadline = time.monotonic() + 300
            while not marker.exists() or not marker.read_text():
                assert time.monotonic() < deadline and run.poll() is None, run.stdout.read()
                time.sleep(0.1)
            paused = int(marker.read_text())
            victim = next(name for name, p in pool.items() if os.getpgid(paused) == p.pid)
            os.killpg(pool[victim].pid, signal.SIGKILL)
            output, _ = run.communicate(timeout=300)
            assert run.returncode != 0, output
            assert f"Celery worker {victim}@" in output and "stopped answering" in output, output
            ok(mf(env, *RUN))
        assert_same(snapshot(tmp_path / "killed", universe), want, "after a killed worker")


def test_a_ui_backfill_runs_shard_groups_side_by_side_on_the_workers(tmp_path, universe):
    """A backfill of the per-ticker assets, as the UI would ask for it, with
    ``MF_SHARDS_PER_RUN=8``: the daemon's backfill and run queue start two runs (one per 8
    shards), up to two at once, their steps on the workers under shard locks; the lake equals
    an in-process build."""
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    from mf_pipeline.orchestration.runner import definitions

    reference = env_for(tmp_path / "in_process", universe)
    ok(mf(reference, *RUN))
    want = snapshot(tmp_path / "in_process", universe)
    workspace = tmp_path / "workspace.yaml"  # outside the checkout: its .env names another home
    workspace.write_text("load_from:\n  - python_module:\n      module_name: "
                         "mf_pipeline.definitions\n      location_name: mf_pipeline\n")
    with postgres_server() as postgres, redis_server(tmp_path / "redis") as redis:
        env = cluster_env(tmp_path / "ui", universe, create_database(postgres, "ui"), redis)
        env |= {"MF_SHARDS_PER_RUN": "8", "MF_DAGSTER_MAX_CONCURRENT_RUNS": "2",
                "MF_PIPELINE_SETTINGS_FILE": str(Path.cwd() / "configs" / "settings.yaml"),
                "PYTHONPATH": os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])}
        with workers(env, ("w5", "w6"), tmp_path):
            ok(mf(env, "bronze-run", "--dry-run"))  # the manifest (and the instance's yaml)
            with open(tmp_path / "daemon.log", "w") as log:
                daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"),
                                           "run", "-w", str(workspace)],
                                          cwd=tmp_path, env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
            try:
                with instance_of(env) as instance:
                    backfill = PartitionBackfill.from_asset_partitions(
                        backfill_id=make_new_backfill_id(),
                        asset_graph=definitions().resolve_asset_graph(),
                        partition_names=None, asset_selection=[
                            dg.AssetKey(name) for name in PER_TICKER],
                        backfill_timestamp=time.time(), tags={}, dynamic_partitions_store=instance,
                        all_partitions=True, title=None, description=None, run_config=None)
                    instance.add_backfill(backfill)
                    deadline = time.monotonic() + 420
                    while instance.get_backfill(backfill.backfill_id).status in (
                            BulkActionStatus.REQUESTED,):
                        assert time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()
                        time.sleep(1)
                    status = instance.get_backfill(backfill.backfill_id).status
                    records = instance.get_run_records(filters=dg.RunsFilter(
                        tags={"dagster/backfill": backfill.backfill_id}))
                    runs = [record.dagster_run for record in records]
                    hosts = worker_of_steps(instance, [run.run_id for run in runs])
            finally:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
    assert status == BulkActionStatus.COMPLETED_SUCCESS, [r.status for r in runs]
    ranges = {(r.tags["dagster/asset_partition_range_start"],
               r.tags["dagster/asset_partition_range_end"]) for r in runs}
    assert ranges == {("00", "07"), ("08", "15")}
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert hosts and all(host.startswith(("w5@", "w6@")) for host in hosts)  # on the workers
    side_by_side = [(a, b) for a in records for b in records
                    if a.dagster_run.tags != b.dagster_run.tags and a.start_time < b.end_time
                    and b.start_time < a.end_time]
    assert side_by_side, [(r.dagster_run.tags, r.start_time, r.end_time) for r in records]
    assert_same(snapshot(tmp_path / "ui", universe), want, "a backfill from the UI")
