"""Runs of per-ticker assets on disjoint shards run side by side (the runs of a multi-run
backfill, docs/DEPLOY.md); a whole-lake writer waits for them; a killed one converges.

Run A (Bronze on shards 00…07, launched with Dagster's own CLI as the UI or the daemon would)
is stopped in the middle of a commit by ``pause_hook``; while it holds its shards, run B (Bronze
on shards 08…15) must finish without waiting, and an ``mf run`` (the whole lake) must wait.
Then A is killed with ``kill -9`` and ``mf run`` completes Bronze: the lake and the ledger
equal those of a single in-process run.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mf_pipeline.lib.sample import generate_universe
from mf_pipeline_tests.e2e.test_crash import env_for, snapshot

HERE = Path(__file__).parent
MF = (sys.executable, "-c", "from mf_pipeline.cli import run\nrun()")
DAGSTER = (sys.executable, "-c", "import pause_hook\nfrom dagster._cli import main\nmain()")
BRONZE = ("asset", "materialize", "-m", "mf_pipeline.definitions", "--select", "bronze")


def bronze_part(snap: dict) -> dict:
    return {name: snap[name] for name in ("bronze", "ledger", "rejects")}


def test_disjoint_shard_runs_proceed_side_by_side_and_the_lake_converges(tmp_path):
    raw = tmp_path / "raw"
    generate_universe(raw, n_tickers=24, years=2.0, seed=23, messy=True)
    reference = env_for(tmp_path / "reference", raw)
    done = subprocess.run([*MF, "run", "--until", "bronze"], env=reference, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    root = tmp_path / "shards"
    env = env_for(root, raw) | {"MF_LAKE_LOCK_TIMEOUT": "30"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    done = subprocess.run([*MF, "bronze-run", "--dry-run"], env=env, capture_output=True,
                          text=True, timeout=300)  # the manifest: Bronze has work to do
    assert done.returncode == 0, done.stderr[-3000:]

    marker = tmp_path / "paused.pid"
    paused = subprocess.Popen([*DAGSTER, *BRONZE, "--partition-range", "00...07"],
                              env=env | {"MF_PAUSE_MARKER": str(marker)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline and paused.poll() is None, paused.stdout.read()
            time.sleep(0.1)
        other = subprocess.run([*DAGSTER, *BRONZE, "--partition-range", "08...15"], env=env,
                               capture_output=True, text=True, timeout=240)
        assert other.returncode == 0, other.stdout[-3000:] + other.stderr[-3000:]
        assert "waiting for the lake lock" not in other.stdout + other.stderr
        whole = subprocess.run([*MF, "run", "--until", "bronze"],
                               env=env | {"MF_LAKE_LOCK_TIMEOUT": "1"}, capture_output=True,
                               text=True, timeout=240)
        assert whole.returncode != 0
        assert "waiting for the lake lock" in whole.stdout + whole.stderr
    finally:
        os.killpg(paused.pid, signal.SIGKILL)
        paused.wait()
    done = subprocess.run([*MF, "run", "--until", "bronze"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got, want = bronze_part(snapshot(root, raw)), bronze_part(snapshot(tmp_path / "reference",
                                                                       raw))
    for name, frame in want.items():
        assert got[name].equals(frame, null_equal=True), name
