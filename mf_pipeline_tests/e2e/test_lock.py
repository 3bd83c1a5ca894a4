"""The lake lock and the temp-file sweep through real ``mf run`` processes (issue #16 items 2, 9).

* Two ``mf run`` started together on one lake: one does the work, the other waits for the lake
  lock, says so, and then finds nothing to do; every file of the lake is the first run's.
* A run killed while writing leaves temp files; the next ``mf run`` removes them, and leaves a
  live writer's temp file alone.
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.lib import lake, lake_lock
from mf_pipeline_tests.unit.test_temp_cleanup import kill, start_writer, temps

MF = str(Path(sys.executable).parent / "mf")
LAYERS = ("bronze", "silver", "indicators", "events", "features")


def metadata_of(output: str) -> dict:
    return json.loads(output[output.rindex("\n{\n") + 1:])


def wait_for(predicate, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_two_concurrent_runs_do_the_work_once(isolated, messy_universe, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    settings = isolated(raw)
    # A third process holds the lock first, so both runs reach it and wait (no timing luck).
    holder = start_writer(settings.data_root, lock=True)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    runs = []
    try:
        for log in logs:
            with open(log, "w") as out:
                runs.append(subprocess.Popen([MF, "run", "--until", "features", "--json"],
                                             stdout=out, stderr=subprocess.STDOUT, text=True))
        waiting = f"waiting for the lake lock held by pid {holder.pid} since "
        wait_for(lambda: all(waiting in log.read_text() for log in logs))
    finally:
        kill(holder)
    for proc in runs:
        assert proc.wait(300) == 0, [log.read_text() for log in logs]
    outputs = [log.read_text() for log in logs]
    meta = [metadata_of(text) for text in outputs]
    winner = 0 if meta[0].get("bronze", {}).get("tickers_written") else 1
    loser = 1 - winner
    assert meta[winner]["bronze"]["tickers_written"] > 0
    assert meta[winner]["features"]["tickers_written"] > 0
    # The second run waited for the first (planning included), then found nothing to do: it
    # materialized no per-ticker layer at all.
    assert f"waiting for the lake lock held by pid {runs[winner].pid} since " in outputs[loser]
    assert "0 tickers to process" in outputs[loser]
    assert not set(LAYERS) & set(meta[loser])
    # Every file of the lake is the first run's: the work was done once.
    for layer in LAYERS:
        frame = lake.read_layer(settings, layer)
        assert frame.height and frame["run_id"].n_unique() == 1, layer
        assert frame["run_id"][0] == meta[winner][layer]["run_id"], layer
    dagster_run = meta[winner]["bronze"]["run_id"].rsplit("-", 1)[1]
    run_ids = set(pl.read_parquet(settings.bronze_root / "file_ledger.parquet")["run_id"])
    assert {run_id.rsplit("-", 1)[1] for run_id in run_ids} == {dagster_run}
    assert lake_lock.holder(settings.data_root) is None  # released cleanly
    assert temps(tmp_path) == []


def test_mf_run_removes_temp_files_of_killed_runs(isolated, messy_universe, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    settings = isolated(raw)
    cli = CliRunner()
    assert cli.invoke(app, ["run", "--until", "features"]).exit_code == 0
    silver = lake.snapshot(lake.LAYERS["silver"].root(settings)).files()[0]
    features = lake.snapshot(lake.LAYERS["features"].root(settings)).files()[-1]
    carry = next((settings.gold_root / "_carry").glob("*.parquet"))
    artifact = settings.artifacts_root / "run_summaries" / "x_bronze_run_summary.json"
    # Four writers killed in the middle of their writes; the last held the lake lock, as every
    # run does (a killed holder that took the lock after another would have swept its files).
    for number in range(4):
        kill(start_writer(settings.data_root, silver, features, carry, artifact,
                          lock=number == 3))
    # A writer that is alive (outside the lock) keeps its temp file.
    live = start_writer(settings.data_root, silver.with_name("part-being-written.parquet"))
    try:
        left = temps(tmp_path)
        assert len(left) == 17
        result = cli.invoke(app, ["run", "--until", "features"])
        assert result.exit_code == 0, result.output
        assert "removed 16 temp file(s) of dead writers" in result.output
        assert [p.name for p in temps(tmp_path)] == [
            p.name for p in left if f".w{live.pid}-" in p.name]
    finally:
        kill(live)
    assert silver.exists() and carry.exists()
