"""A fresh DAGSTER_HOME is seeded from the empty-instance template, works, and shares nothing."""

import logging
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import dagster as dg
import pytest

from mf_pipeline.lib.settings import load_settings
from mf_pipeline.orchestration import runner
from mf_pipeline.orchestration.instance import (
    DAGSTER_YAML,
    TEMPLATE_DIR_ENV,
    build_template,
    ensure_dagster_home,
    seed_home,
    template_key,
)


@dg.asset
def trivial() -> int:
    return 1


@pytest.fixture(scope="module")
def template_root(tmp_path_factory) -> Path:
    """One template for the module: building it is the slow step being avoided."""
    root = tmp_path_factory.mktemp("templates")
    build_template(DAGSTER_YAML, root)
    return root


def fresh_home(path: Path) -> Path:
    path.mkdir()
    (path / "dagster.yaml").write_text(DAGSTER_YAML)
    return path


def rows(database: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(database)) as conn:
        return conn.execute(sql).fetchall()


def test_template_is_sealed_and_anonymous(template_root):
    template = template_root / template_key(DAGSTER_YAML)
    files = {p.relative_to(template).as_posix() for p in template.rglob("*") if p.is_file()}
    assert files == {"history/runs.db", "history/runs/index.db", "schedules/schedules.db"}
    assert rows(template / "history/runs.db", "SELECT * FROM instance_info") == []


def test_seeded_homes_work_end_to_end_and_share_nothing(template_root, tmp_path, monkeypatch):
    run_ids, storage_ids = [], []
    for name in ("a", "b"):
        home = fresh_home(tmp_path / name)
        assert seed_home(home, template_root)
        template_db = template_root / template_key(DAGSTER_YAML) / "history/runs.db"
        indexes = "SELECT * FROM secondary_indexes"
        assert rows(home / "history/runs.db", indexes) == rows(template_db, indexes)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        instance = dg.DagsterInstance.get()
        try:
            result = dg.materialize([trivial], instance=instance)
            assert result.success
            assert [run.run_id for run in instance.get_runs()] == [result.run_id]
            assert instance.get_latest_materialization_event(dg.AssetKey("trivial")) is not None
            assert instance.all_logs(result.run_id)
            run_ids.append(result.run_id)
            storage_ids.append(instance.run_storage.get_run_storage_id())
        finally:
            instance.dispose()
    assert len(set(run_ids)) == 2 and len(set(storage_ids)) == 2
    # The template itself was not written to by either instance.
    assert rows(template_root / template_key(DAGSTER_YAML) / "history/runs.db",
                "SELECT count(*) FROM runs") == [(0,)]


def test_runner_seeds_a_fresh_home(template_root, tmp_path, monkeypatch):
    monkeypatch.setenv(TEMPLATE_DIR_ENV, str(template_root))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = ensure_dagster_home(load_settings().project_root)
    assert (home / "history/runs.db").is_file() and (home / "schedules/schedules.db").is_file()
    instance = runner.instance(load_settings())  # second call: home has storage, left alone
    try:
        assert list(instance.get_runs()) == []
    finally:
        instance.dispose()


def test_home_with_storage_is_never_seeded(template_root, tmp_path, monkeypatch):
    home = fresh_home(tmp_path / "home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    run_id = dg.materialize([trivial], instance=instance).run_id
    instance.dispose()
    before = {p: p.read_bytes() for p in home.rglob("*.db")}
    assert not seed_home(home, template_root)
    assert {p: p.read_bytes() for p in home.rglob("*.db")} == before
    (home / "schedules/schedules.db").unlink()  # a partial store still counts as storage
    assert not seed_home(home, template_root)
    instance = dg.DagsterInstance.get()
    try:
        assert [run.run_id for run in instance.get_runs()] == [run_id]
    finally:
        instance.dispose()


@pytest.mark.parametrize("damage", ["corrupt", "unbuildable"])
def test_bad_template_falls_back_to_normal_creation(damage, template_root, tmp_path,
                                                    monkeypatch, caplog):
    root = tmp_path / "templates"
    if damage == "corrupt":
        shutil.copytree(template_root, root)
        (root / template_key(DAGSTER_YAML) / "history/runs.db").write_bytes(b"not sqlite" * 100)
    else:
        root.write_text("a file where the template folder should be")
    home = fresh_home(tmp_path / "home")
    with caplog.at_level(logging.WARNING, logger="mf_pipeline.orchestration.instance"):
        assert not seed_home(home, root)
    assert "template not used" in caplog.text
    # Untouched: exactly the fresh home Dagster creates storage in by itself.
    assert [p.name for p in home.iterdir()] == ["dagster.yaml"]
    if damage == "unbuildable":
        return
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    try:
        assert dg.materialize([trivial], instance=instance).success
    finally:
        instance.dispose()


def test_dagster_yaml_change_gives_another_template(template_root):
    changed = DAGSTER_YAML.replace("purge_after_days: 30", "purge_after_days: 31")
    assert template_key(changed) != template_key(DAGSTER_YAML)
    assert template_key(DAGSTER_YAML) == template_key(str(DAGSTER_YAML))
    assert dg.__version__ in template_key(DAGSTER_YAML)
    with pytest.raises(ValueError):  # storage configured elsewhere is not ours to pre-create
        build_template(DAGSTER_YAML + "storage:\n  sqlite:\n    base_dir: /elsewhere\n")
