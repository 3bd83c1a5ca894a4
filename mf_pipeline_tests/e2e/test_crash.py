"""Crash consistency: a nightly run killed before ANY of its commits converges on the next runs.

``crash_hook`` (imported first by a child ``mf`` process) kills the process with ``os._exit``
right before its K-th atomic rename — every point where a crash can leave the lake between two
commits, deterministically, as ``kill -9`` at that instant would. For every K of the nightly
append run: crash, run again, append another day and run again; after each run the lake must
equal a lake built from scratch from the same raw files (every layer, the ledger, the rejects).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from mf_pipeline.lib import lake
from mf_pipeline.lib.registry import PER_TICKER
from mf_pipeline.lib.sample import generate_universe
from mf_pipeline.lib.sample_append import append_one_bar
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.lib.steps import bronze_step

HERE = Path(__file__).parent
RUN = ("run", "--until", "features")
RUN_COLUMNS = ("run_id", "built_ts", "ingest_ts", "ingested_at")
CRASH_EXIT = 137


def env_for(root: Path, raw: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MF_PIPELINE_")}
    env |= {"MF_PIPELINE_PATHS__RAW_ROOT": str(raw),
            "MF_PIPELINE_PATHS__DATA_ROOT": str(root / "data"),
            "MF_PIPELINE_PATHS__ARTIFACTS_ROOT": str(root / "artifacts"),
            "MF_PIPELINE_PATHS__LOGS_ROOT": str(root / "logs"),
            "DAGSTER_HOME": str(root / "dagster_home"),
            "PYTHONPATH": os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])}
    return env


def mf(root: Path, raw: Path, *args: str, crash_at: int = 0,
       count_file: Path | None = None) -> subprocess.CompletedProcess:
    env = env_for(root, raw) | {"MF_CRASH_AT": str(crash_at)}
    if count_file is not None:
        env["MF_CRASH_COUNT_FILE"] = str(count_file)
    code = "import crash_hook\nfrom mf_pipeline.cli import run\nrun()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=300)


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def snapshot(root: Path, raw: Path) -> dict[str, pl.DataFrame]:
    """Every layer's rows (run ids and build times dropped), the ledger and the rejects."""
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env_for(root, raw).items() if k.startswith("MF_")})
    try:
        settings = load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out = {}
    for layer in PER_TICKER:
        frame = lake.read_layer(settings, layer)
        out[layer] = frame.drop([c for c in RUN_COLUMNS if c in frame.columns])
    paths = bronze_step.paths(settings)
    out["ledger"] = pl.read_parquet(paths.ledger).drop("run_id").sort("source_file")
    out["rejects"] = pl.read_parquet(paths.rejects).sort("source_file", "line_no")
    return out


def assert_same(got: dict[str, pl.DataFrame], want: dict[str, pl.DataFrame], what: str) -> None:
    for name, frame in want.items():
        assert got[name].columns == frame.columns, (what, name)
        assert got[name].equals(frame, null_equal=True), (what, name)


def fresh(tmp: Path, raw: Path, name: str) -> dict[str, pl.DataFrame]:
    root = tmp / name
    ok(mf(root, raw, *RUN))
    return snapshot(root, raw)


@pytest.fixture(scope="module")
def nightly(tmp_path_factory):
    """A built lake, the raw files one day later, the lakes those days should give, and how
    many commits the nightly run makes."""
    tmp = tmp_path_factory.mktemp("crash")
    raw0 = tmp / "raw0"
    generate_universe(raw0, n_tickers=5, years=1.0, seed=5, messy=True)
    ok(mf(tmp / "base", raw0, *RUN))
    raw1, raw2 = tmp / "raw1", tmp / "raw2"
    shutil.copytree(raw0, raw1)
    append_one_bar(raw1)
    shutil.copytree(raw1, raw2)
    append_one_bar(raw2)
    for name in ("warm", "counted"):  # the first append run may write Numba cache files
        shutil.copytree(tmp / "base", tmp / name)
        ok(mf(tmp / name, raw1, *RUN, count_file=tmp / "count"))
    commits = int((tmp / "count").read_text())
    return {"tmp": tmp, "raw1": raw1, "raw2": raw2, "commits": commits,
            "day1": fresh(tmp, raw1, "fresh1"), "day2": fresh(tmp, raw2, "fresh2")}


def test_the_nightly_run_has_commits_to_crash_at(nightly):
    print(f"the nightly run makes {nightly['commits']} commits")
    assert nightly["commits"] >= 10


SAMPLED_POINTS = 12
"""Crash points a default test run tries, spread evenly over the run (first and last
included); ``MF_CRASH_EVERY_POINT=1`` tries every one (docs/RELIABILITY.md)."""
PARTS = 4


def crash_points(commits: int, part: int) -> list[int]:
    """The crash points of one of the ``PARTS`` test parts (they spread over the workers)."""
    if os.environ.get("MF_CRASH_EVERY_POINT") == "1":
        points = list(range(1, commits + 1))
    else:
        step = (commits - 1) / (SAMPLED_POINTS - 1)
        points = sorted({1 + round(i * step) for i in range(SAMPLED_POINTS)})
    return points[part::PARTS]


@pytest.mark.parametrize("part", range(PARTS))
def test_a_crash_before_any_commit_converges(nightly, part, tmp_path):
    tmp = nightly["tmp"]
    for crash_at in crash_points(nightly["commits"], part):
        root, raw = tmp_path / f"k{crash_at}", tmp_path / f"raw{crash_at}"
        shutil.copytree(tmp / "base", root)
        shutil.copytree(nightly["raw1"], raw)
        crashed = mf(root, raw, *RUN, crash_at=crash_at)
        assert crashed.returncode == CRASH_EXIT, (crash_at, crashed.stderr[-2000:])
        ok(mf(root, raw, *RUN))
        assert_same(snapshot(root, raw), nightly["day1"], f"rerun after crash {crash_at}")
        append_one_bar(raw)
        ok(mf(root, raw, *RUN))
        assert_same(snapshot(root, raw), nightly["day2"], f"next night after crash {crash_at}")
        shutil.rmtree(root)
        shutil.rmtree(raw)
