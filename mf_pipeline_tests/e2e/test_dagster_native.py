"""Dagster's own tools on the project: its CLI from the project root uses the project's instance,
research splits the data cannot fill do not exist, wrong partition keys name the right ones."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.lib import lake
from mf_pipeline.lib.partitions import shard_of
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.orchestration.instance import ensure_dagster_home, ensure_dotenv

PROJECT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_dagster_cli_from_the_project_root_uses_the_project_instance(tmp_path, messy_universe):
    """`dagster asset materialize` with no DAGSTER_HOME: `.env` (written by `make setup`) names
    the project's home, so the run is recorded there, not in a throw-away instance."""
    project = tmp_path / "project"
    (project / "configs").mkdir(parents=True)
    (project / "configs" / "settings.yaml").write_text(
        (PROJECT / "configs" / "settings.yaml").read_text())
    env = {k: v for k, v in os.environ.items()
           if k != "DAGSTER_HOME" and not k.startswith("MF_PIPELINE_")}
    home = project / "dagster_home"
    os.environ["DAGSTER_HOME"] = str(home)  # what `make setup` does in its own process
    try:
        ensure_dotenv(project, ensure_dagster_home(project))
    finally:
        os.environ.pop("DAGSTER_HOME")
    assert (project / ".env").read_text() == f"DAGSTER_HOME={home.resolve()}\n"
    env["MF_PIPELINE_PATHS__RAW_ROOT"] = str(messy_universe)
    done = subprocess.run([str(DAGSTER), "asset", "materialize", "-m", "mf_pipeline.definitions",
                           "--select", "manifest"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(project.glob(".tmp_dagster_home_*"))
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            assert len(runs) == 1 and runs[0].is_success
            assert instance.get_latest_materialization_event(dg.AssetKey("manifest"))
    finally:
        os.environ.pop("DAGSTER_HOME")


def test_dotenv_keeps_the_users_lines(tmp_path):
    (tmp_path / ".env").write_text("OTHER=1")
    ensure_dotenv(tmp_path, tmp_path / "home")
    assert (tmp_path / ".env").read_text() == f"OTHER=1\nDAGSTER_HOME={tmp_path / 'home'}\n"
    (tmp_path / ".env").write_text("DAGSTER_HOME=/elsewhere\n")
    ensure_dotenv(tmp_path, tmp_path / "home")
    assert (tmp_path / ".env").read_text() == "DAGSTER_HOME=/elsewhere\n"


def test_splits_the_data_cannot_fill_are_not_partitions(isolated, monkeypatch):
    """The 1.5-year sample ends 2025-12-31: default train ends 2012…2020 have no train rows, so
    only `full` and a train end inside the data are partitions; a stale key is removed."""
    isolated  # noqa: B018
    monkeypatch.delenv("MF_PIPELINE_PATHS__RAW_ROOT", raising=False)
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__TICKERS", "4")
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__YEARS", "1.5")
    monkeypatch.setenv("MF_PIPELINE_VALIDATION_WALKFORWARD__TRAIN_END_LIST_DEFAULT",
                       '["2012-12-31", "2025-03-31"]')
    code, output = invoke("run", "--until", "ml_dataset")
    assert code == 0, output
    instance = dg.DagsterInstance.get()
    assert sorted(instance.get_dynamic_partitions("research_splits")) == ["full", "wf2025-03-31"]
    instance.add_dynamic_partitions("research_splits", ["wf2013-06-30"])
    code, output = invoke("materialize", "--select", "ml_dataset")
    assert code == 0, output
    assert "wf2013-06-30" not in instance.get_dynamic_partitions("research_splits")

    code, output = invoke("partitions", "hmm_model")
    assert code == 0 and output.split() == ["wf2025-03-31", "full"], output
    keys = " ".join(f"{n:02d}" for n in range(16))
    for wrong in ("QQ", "A", "16"):  # "A": a first-letter shard of the older layout
        code, output = invoke("materialize", "--select", "silver", "--partition", wrong)
        assert code == 2
        assert f"'{wrong}' is not a partition of silver; its keys are {keys}\n" in output
    code, output = invoke("partitions", "silver")
    shards = dict(line.split("\t") for line in output.splitlines() if "\t" in line)
    bronze = lake.symbol_tickers(lake.LAYERS["bronze"].root(load_settings()))
    assert len(bronze) >= 4 and " ".join(shards) == keys
    assert shards == {key: f"{sum(shard_of(t) == key for t in bronze)} tickers"
                      for key in shards}
