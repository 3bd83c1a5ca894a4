"""Sizing figures for docs/DEPLOY.md: what a cluster's PostgreSQL, lake and workers hold.

Starts a throw-away PostgreSQL (and, for ``--celery-tickers``, Redis and one Celery worker)
with ``mf_pipeline_tests/servers.py``, generates small universes and runs the real
``mf run --until features`` through them, cold, then after one bar appended to every file,
then with nothing changed. After each run it records:

- the new runs' rows and bytes in ``event_logs`` (``length(event)``: the serialized event), by
  event type, and every table's size (``pg_total_relation_size``) and the database's;
- the connections the command opened (``pg_stat_database.sessions``) and held at once
  (``pg_stat_activity``, sampled every 20 ms);
- the peak memory of the command's largest process (``VmHWM``, sampled every 50 ms), and at the
  end that of the Celery worker;
- the lake's files and bytes per layer, and each layer's in-memory bytes per row (Polars'
  ``estimated_size``).

It also tiles 12,000 realistic symbols into shard groups (``lib/partitions.shard_groups``) for
1…16 concurrent runs and reports how even they are. Runs under ``nice -n 10``; wall times are
reported but are not the point (the machine is shared)::

    python -m bench.cluster_sizing --tickers 60 300 --years 10 --celery-tickers 60

The figures go to ``--out`` (JSON, default in the temp folder); docs/DEPLOY.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np
import polars as pl
import psutil
import psycopg2

from mf_pipeline.lib.partitions import SHARD_KEYS, shard_groups, shard_of
from mf_pipeline.lib.registry import LAYERS, PER_TICKER
from mf_pipeline.lib.sample import _ticker_pool, generate_universe
from mf_pipeline.lib.sample_append import append_one_bar
from mf_pipeline_tests.servers import (
    create_database,
    libpq,
    postgres_server,
    redis_server,
    stop_process,
)

PROJECT = Path(__file__).resolve().parents[1]
RUNS = ("cold", "append", "no change")


def mf_env(root: Path, raw: Path, postgres_url: str) -> dict[str, str]:
    """The environment of an ``mf`` command on a temp lake with the instance in ``postgres_url``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MF_PIPELINE_", "MF_DAGSTER_"))}
    return env | {
        "MF_PIPELINE_PATHS__RAW_ROOT": str(raw),
        "MF_PIPELINE_PATHS__DATA_ROOT": str(root / "data"),
        "MF_PIPELINE_PATHS__ARTIFACTS_ROOT": str(root / "artifacts"),
        "MF_PIPELINE_PATHS__LOGS_ROOT": str(root / "logs"),
        "DAGSTER_HOME": str(root / "dagster_home"),
        "MF_DAGSTER_POSTGRES_URL": "postgresql+psycopg2://" + postgres_url.split("://", 1)[1],
    }


@contextmanager
def connections(url: str) -> Iterator[dict[str, int]]:
    """The connections to ``url``'s database while the block runs (other than this one): the
    peak of ``pg_stat_activity`` sampled every 20 ms, and the sessions opened and closed
    (``pg_stat_database.sessions``, counted when a session ends; read 1.5 s after the block)."""
    seen = {"peak": 0}
    stop = threading.Event()
    conn = psycopg2.connect(libpq(url))
    conn.autocommit = True
    active = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
              "AND pid <> pg_backend_pid()")

    def sessions() -> int:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            return cur.fetchone()[0]

    def sample() -> None:
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(active)
                seen["peak"] = max(seen["peak"], cur.fetchone()[0])
                time.sleep(0.02)

    before = sessions()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()
        time.sleep(1.5)
        seen["sessions"] = sessions() - before
        conn.close()


def event_log_figures(url: str, run_ids: list[str]) -> dict:
    """The runs' event-log rows and bytes (by event type) and every table's size."""
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(dagster_event_type, 'log message'), count(*), "
                    "sum(length(event)) FROM event_logs WHERE run_id = ANY(%s) GROUP BY 1 "
                    "ORDER BY 3 DESC", (run_ids,))
        by_type = {kind: {"rows": rows, "bytes": int(size)} for kind, rows, size in cur}
        cur.execute("SELECT tablename, pg_total_relation_size(quote_ident(tablename)) "
                    "FROM pg_tables WHERE schemaname = 'public'")
        tables = {name: size for name, size in cur if size}
        cur.execute("SELECT count(*) FROM event_logs")
        total_rows = cur.fetchone()[0]
        cur.execute("SELECT pg_database_size(current_database())")
        database = cur.fetchone()[0]
    return {"rows": sum(v["rows"] for v in by_type.values()),
            "bytes": sum(v["bytes"] for v in by_type.values()),
            "by_type": by_type, "table_bytes": tables, "event_logs_rows_total": total_rows,
            "database_bytes": database}


def run_ids_of(url: str) -> set[str]:
    """The instance's run ids (none before the first command creates its tables)."""
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('runs') IS NOT NULL")
        if not cur.fetchone()[0]:
            return set()
        cur.execute("SELECT run_id FROM runs")
        return {row[0] for row in cur}


def lake_figures(data_root: Path) -> dict:
    """Files, bytes and in-memory bytes per row of each per-ticker layer."""
    out = {}
    for layer in PER_TICKER:
        folder = data_root / LAYERS[layer].tier / LAYERS[layer].dataset  # the default roots
        if not folder.is_dir():
            continue
        files = list(folder.rglob("*.parquet"))
        data = [f for f in files if "_index" not in f.parts]
        frame = pl.read_parquet(data)
        out[layer] = {"files": len(files), "data_files": len(data),
                      "bytes": sum(f.stat().st_size for f in files),
                      "rows_in_files": frame.height,
                      "memory_bytes_per_row": frame.estimated_size() / max(frame.height, 1)}
    every = [p for p in data_root.rglob("*") if p.is_file()]
    out["whole data root"] = {"files": len(every), "bytes": sum(p.stat().st_size for p in every)}
    return out


def high_water_mb(pid: int) -> int:
    """Peak resident memory (VmHWM, MB) of process ``pid`` so far; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) // 1024


def tree_high_water_mb(pid: int) -> int:
    """The largest VmHWM of ``pid`` and its descendants (each process's own peak)."""
    try:
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    return max((high_water_mb(p.pid) for p in tree), default=0)


def mf_run(env: dict[str, str], log: Path) -> tuple[float, int]:
    """``mf run --until features``: its wall seconds and the peak RSS (MB) of its largest
    process, sampled every 50 ms (VmHWM is a high-water mark, so only the last 50 ms before
    a process exits can be missed). Not ``wait4``'s ``ru_maxrss``: a child started by vfork
    inherits the parent's high-water mark at exec."""
    mf = Path(sys.executable).parent / "mf"
    started = time.perf_counter()
    peak = 0
    with open(log, "w") as out:
        process = subprocess.Popen(["nice", "-n", "10", str(mf), "run", "--until", "features"],
                                   cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT)
    while process.poll() is None:
        peak = max(peak, tree_high_water_mb(process.pid))
        time.sleep(0.05)
    if process.returncode:
        raise RuntimeError(f"mf run failed:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - started, peak


def measure(root: Path, url: str, env: dict[str, str], tickers: int, years: float) -> dict:
    """Cold, append and no-change runs of one universe; figures after each."""
    root.mkdir(parents=True, exist_ok=True)
    raw = root / "raw"
    report = generate_universe(raw, n_tickers=tickers, years=years, seed=7)
    out: dict = {"tickers": tickers, "years": years, "bars": report.bars_written,
                 "raw_bytes": report.bytes_written, "runs": {}}
    for label in RUNS:
        if label == "append":
            append_one_bar(raw)
        before = run_ids_of(url)
        with connections(url) as seen:
            seconds, peak_mb = mf_run(env, root / f"{label}.log")
        new = sorted(run_ids_of(url) - before)
        out["runs"][label] = {"wall_s": round(seconds, 2), "dagster_runs": len(new),
                              "peak_connections": seen["peak"], "sessions": seen["sessions"],
                              "mf_peak_rss_mb": peak_mb, **event_log_figures(url, new)}
        print(f"{tickers} tickers, {label}: {len(new)} runs, "
              f"{out['runs'][label]['rows']} event rows, {out['runs'][label]['bytes']} bytes, "
              f"peak {seen['peak']} connections, {seen['sessions']} sessions, "
              f"{seconds:.1f}s, {peak_mb} MB", flush=True)
    out["lake"] = lake_figures(root / "data")
    return out


@contextmanager
def celery_worker(env: dict[str, str], log: Path) -> Iterator[dict[str, int]]:
    """One worker (``--concurrency 1``) of the project's app, started and stopped here."""
    command = ["nice", "-n", "10", str(Path(sys.executable).parent / "celery"), "-A",
               "mf_pipeline.orchestration.celery_app", "worker", "-Q", "dagster",
               "--concurrency", "1", "-n", "sizing@%h", "--loglevel", "INFO"]
    with open(log, "w") as out:
        worker = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    peak: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 120
        while "ready." not in log.read_text():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield peak
        peak["worker_peak_rss_mb"] = tree_high_water_mb(worker.pid)
    finally:
        stop_process(worker, timeout=60)


def shard_balance(tickers: int, seed: int = 7) -> dict:
    """How evenly 16 shards and their groups split ``tickers`` realistic symbols."""
    names = _ticker_pool(np.random.default_rng([seed, 2]), tickers)
    counts = np.array([sum(1 for t in names if shard_of(t) == key) for key in SHARD_KEYS])
    groups = {}
    for runs in range(1, len(SHARD_KEYS) + 1):
        tiles = shard_groups(names, (SHARD_KEYS[0], SHARD_KEYS[-1]), runs)
        sizes = [int(counts[SHARD_KEYS.index(a):SHARD_KEYS.index(b) + 1].sum())
                 for a, b in tiles]
        groups[runs] = {"groups": len(tiles), "largest": max(sizes),
                        "largest_over_mean": round(max(sizes) / (tickers / len(tiles)), 3)}
    return {"tickers": tickers, "per_shard_min": int(counts.min()),
            "per_shard_max": int(counts.max()),
            "max_over_mean": round(float(counts.max() / counts.mean()), 3), "groups": groups}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickers", type=int, nargs="*", default=[60, 300])
    parser.add_argument("--years", type=float, default=10.0)
    parser.add_argument("--celery-tickers", type=int, default=0,
                        help="also run this universe on one Celery worker (shard_runs 2)")
    parser.add_argument("--out", type=Path,
                        default=Path(tempfile.gettempdir()) / "mf_cluster_sizing.json")
    args = parser.parse_args()
    results: dict = {"shards": shard_balance(12_000), "in_process": [], "celery": None}
    with tempfile.TemporaryDirectory(prefix="mf-sizing-") as tmp, \
            postgres_server() as base_url:
        for tickers in args.tickers:
            url = libpq(create_database(base_url, f"mf_{tickers}"))
            root = Path(tmp) / f"n{tickers}"
            results["in_process"].append(
                measure(root, url, mf_env(root, root / "raw", url), tickers, args.years))
        if args.celery_tickers:
            url = libpq(create_database(base_url, "mf_celery"))
            root = Path(tmp) / "celery"
            root.mkdir()
            with redis_server(root / "redis") as redis:
                env = mf_env(root, root / "raw", url) | {
                    "MF_PIPELINE_EXECUTION__EXECUTOR": "celery",
                    "MF_PIPELINE_EXECUTION__SHARD_RUNS": "2",
                    "MF_PIPELINE_EXECUTION__CELERY__BROKER": f"{redis}/0",
                    "MF_PIPELINE_EXECUTION__CELERY__BACKEND": f"{redis}/1"}
                with celery_worker(env, root / "worker.log") as worker:
                    results["celery"] = measure(root, url, env, args.celery_tickers, args.years)
                results["celery"] |= worker
    args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
