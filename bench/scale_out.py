"""Wall time of a cold ``mf run --until features`` in process and through Celery workers, and
what each extra shard run costs in bookkeeping (issue #24; docs/DEPLOY.md).

``python -m bench.scale_out --raw RAW [--json OUT]`` starts real PostgreSQL and Redis servers
(``mf_pipeline_tests/servers.py``), then for each configuration builds a fresh lake from
``RAW`` in a temp project with its own database and its own workers, and reports the command's
wall time, the Dagster runs it made and the event-log rows and bytes they wrote:

* ``in_process``: the single-machine default (SQLite instance, no server);
* ``celery 1w × 1``: one worker, the per-ticker layers as one run;
* ``celery 2w × 2``: two workers, two concurrent shard-group runs;
* ``celery 1w × K``: one worker, K shard-group runs (K = 2, 4, 8): the same work, so the
  difference to ``1w × 1`` is the bookkeeping of K - 1 more runs.

On one host every worker shares its cores: the 2-worker figure shows what parallel shards
buy on this 2-core machine, not on N hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg2

from mf_pipeline_tests.servers import create_database, libpq, postgres_server, redis_server

MF = (sys.executable, "-c", "from mf_pipeline.cli import run\nrun()")
RUN = ("run", "--until", "features")
CONFIGS = (("in_process", 0, 1), ("celery 1w × 1", 1, 1), ("celery 2w × 2", 2, 2),
           ("celery 1w × 2", 1, 2), ("celery 1w × 4", 1, 4), ("celery 1w × 8", 1, 8))


def _env(root: Path, raw: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MF_PIPELINE_", "MF_DAGSTER_"))}
    return env | {"MF_PIPELINE_PATHS__RAW_ROOT": str(raw),
                  "MF_PIPELINE_PATHS__DATA_ROOT": str(root / "data"),
                  "MF_PIPELINE_PATHS__ARTIFACTS_ROOT": str(root / "artifacts"),
                  "MF_PIPELINE_PATHS__LOGS_ROOT": str(root / "logs"),
                  "DAGSTER_HOME": str(root / "dagster_home")}


def _event_log(url: str) -> tuple[int, int, int]:
    """Runs, event-log rows and event bytes in the instance's database."""
    connection = psycopg2.connect(libpq(url))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        runs = cursor.fetchone()[0]
        cursor.execute("SELECT count(*), coalesce(sum(length(event)), 0) FROM event_logs")
        rows, size = cursor.fetchone()
    connection.close()
    return int(runs), int(rows), int(size)


def _start_workers(env: dict[str, str], count: int, logs: Path) -> list[subprocess.Popen]:
    workers = []
    for n in range(count):
        log = logs / f"worker{n}.log"
        with open(log, "w") as out:
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "mf_pipeline.orchestration.celery_app",
                 "worker", "-Q", "dagster", "--concurrency", "1", "-n", f"w{n}@%h",
                 "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 120
    while not all("ready." in (logs / f"worker{n}.log").read_text() for n in range(count)):
        if time.monotonic() > deadline:
            raise RuntimeError("Celery workers did not start")
        time.sleep(0.2)
    return workers


def measure(raw: Path, configs: tuple[tuple[str, int, int], ...] = CONFIGS) -> list[dict]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mf-scale-out-") as tmp, postgres_server() as pg, \
            redis_server(Path(tmp) / "redis") as redis:
        for index, (name, worker_count, shard_runs) in enumerate(configs):
            root = Path(tmp) / f"p{index}"
            root.mkdir()
            env = _env(root, raw)
            url = None
            if worker_count:
                url = create_database(pg, f"bench{index}")
                env |= {"MF_DAGSTER_POSTGRES_URL": url,
                        "MF_PIPELINE_EXECUTION__EXECUTOR": "celery",
                        "MF_PIPELINE_EXECUTION__SHARD_RUNS": str(shard_runs),
                        "MF_PIPELINE_EXECUTION__CELERY__BROKER": f"{redis}/{2 * index}",
                        "MF_PIPELINE_EXECUTION__CELERY__BACKEND": f"{redis}/{2 * index + 1}"}
            workers = _start_workers(env, worker_count, root) if worker_count else []
            try:
                started = time.perf_counter()
                done = subprocess.run([*MF, *RUN], env=env, capture_output=True, text=True)
                wall = time.perf_counter() - started
            finally:
                for worker in workers:
                    os.killpg(worker.pid, 9)
                    worker.wait()
            if done.returncode:
                raise RuntimeError(f"{name}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
            runs, events, size = _event_log(url) if url else (1, None, None)
            rows.append({"config": name, "workers": worker_count, "shard_runs": shard_runs,
                         "wall_s": round(wall, 2), "dagster_runs": runs,
                         "event_rows": events, "event_bytes": size})
            print(json.dumps(rows[-1]), flush=True)
    base = next((r for r in rows if r["config"] == "celery 1w × 1"), None)
    if base is not None:
        for row in rows:
            if row["workers"] == 1 and row["shard_runs"] > 1:
                extra = row["shard_runs"] - 1
                row["bookkeeping_s_per_extra_run"] = round(
                    (row["wall_s"] - base["wall_s"]) / extra, 2)
                row["event_rows_per_extra_run"] = round(
                    (row["event_rows"] - base["event_rows"]) / extra, 1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--configs", default=",".join(str(i) for i in range(len(CONFIGS))),
                        help="Which configurations, by position (default: all): " + "; ".join(
                            f"{i} = {name}" for i, (name, _, _) in enumerate(CONFIGS)))
    args = parser.parse_args()
    rows = measure(args.raw, tuple(CONFIGS[int(i)] for i in args.configs.split(",")))
    print(f"{'config':<16} {'wall s':>7} {'runs':>5} {'events':>7} {'per extra run':>14}")
    for row in rows:
        extra = row.get("bookkeeping_s_per_extra_run")
        print(f"{row['config']:<16} {row['wall_s']:>7.2f} {row['dagster_runs']:>5} "
              f"{row['event_rows'] if row['event_rows'] is not None else '-':>7} "
              f"{'' if extra is None else f'{extra:+.2f} s':>14}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
