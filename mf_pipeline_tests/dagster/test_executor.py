"""The project's executor and instance options for scale-out (docs/DEPLOY.md): the executor
choice in run config, the run's watch on the worker running a step, the PostgreSQL dagster.yaml."""

from types import SimpleNamespace

import dagster as dg
import pytest
import yaml

from mf_pipeline.lib.settings import load_settings
from mf_pipeline.orchestration import instance
from mf_pipeline.orchestration.executors import WatchedResult, WorkerLost, run_config_for
from mf_pipeline.orchestration.runner import definitions


class FakeResult:
    """A Celery AsyncResult as the execution loop sees it."""

    def __init__(self, state: str = "STARTED", hostname: str = "w1@host") -> None:
        self.state, self.info, self.done = state, {"hostname": hostname, "pid": 7}, False

    def ready(self) -> bool:
        return self.done

    def get(self) -> list[str]:
        return ["events"]


class FakeApp:
    def __init__(self) -> None:
        self.alive, self.pings = True, []
        self.control = SimpleNamespace(ping=self.ping)

    def ping(self, destination: list[str], timeout: float) -> list[dict]:
        self.pings.append(destination)
        return [{destination[0]: {"ok": "pong"}}] if self.alive else []


def test_a_live_worker_keeps_the_step_waiting_and_its_result_comes_through():
    inner, app = FakeResult(), FakeApp()
    watched = WatchedResult(inner, app, "bronze", every=0.0)
    assert [watched.ready() for _ in range(5)] == [False] * 5
    assert app.pings == [["w1@host"]] * 5
    inner.done = True
    assert watched.ready() and watched.get() == ["events"]


def test_a_worker_that_stops_answering_fails_the_step_after_two_pings():
    inner, app = FakeResult(), FakeApp()
    watched = WatchedResult(inner, app, "ticker_layers", every=0.0)
    assert not watched.ready()
    app.alive = False
    assert not watched.ready()  # one miss: could be a slow reply
    assert watched.ready()  # two: lost
    with pytest.raises(WorkerLost, match=r"Celery worker w1@host stopped answering while it "
                                         r"ran step ticker_layers"):
        watched.get()


def test_a_queued_step_is_not_pinged_and_a_reply_resets_the_count():
    inner, app = FakeResult(state="PENDING"), FakeApp()
    watched = WatchedResult(inner, app, "manifest", every=0.0)
    app.alive = False
    assert not any(watched.ready() for _ in range(3)) and app.pings == []
    inner.state = "STARTED"
    assert not watched.ready()
    app.alive = True
    assert not watched.ready()
    app.alive = False
    assert not watched.ready()  # one miss again, not two
    assert watched.ready()


def test_pings_wait_for_the_check_interval():
    app = FakeApp()
    watched = WatchedResult(FakeResult(), app, "bronze", every=3600.0)
    assert not any(watched.ready() for _ in range(10)) and app.pings == []


def test_run_config_selects_the_executor_and_validates(monkeypatch, isolated, tmp_path):
    settings = isolated(tmp_path / "raw")
    job = definitions().resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "mf_executor"
    assert run_config_for(settings) == {"execution": {"config": {"in_process": {}}}}
    monkeypatch.setenv("MF_PIPELINE_EXECUTION__EXECUTOR", "celery")
    monkeypatch.setenv("MF_PIPELINE_EXECUTION__CELERY__BROKER", "redis://h:1/0")
    celery = run_config_for(load_settings())
    assert celery == {"execution": {"config": {"celery": {
        "broker": "redis://h:1/0", "backend": "redis://127.0.0.1:6379/1", "queue": "dagster",
        "worker_check_seconds": 5.0}}}}
    manifest = job.get_subset(asset_selection={dg.AssetKey("manifest")})
    for config in ({}, celery, run_config_for(settings)):
        assert dg.validate_run_config(manifest, config) is not None
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(manifest, {"execution": {"config": {"celery": {}}}})


def test_parallel_shard_runs_need_celery(monkeypatch, isolated, tmp_path):
    isolated(tmp_path / "raw")
    monkeypatch.setenv("MF_PIPELINE_EXECUTION__SHARD_RUNS", "2")
    with pytest.raises(ValueError, match="shard_runs > 1 needs execution.executor: celery"):
        load_settings()


def test_the_instance_is_sqlite_by_default_and_postgres_when_asked(monkeypatch):
    monkeypatch.delenv(instance.POSTGRES_ENV, raising=False)
    monkeypatch.delenv(instance.MAX_RUNS_ENV, raising=False)
    assert instance.instance_yaml() == instance.DAGSTER_YAML
    monkeypatch.setenv(instance.POSTGRES_ENV, "postgresql+psycopg2://u:secret@db:5432/dagster")
    monkeypatch.setenv(instance.MAX_RUNS_ENV, "4")
    text = instance.instance_yaml()
    config = yaml.safe_load(text)
    assert text.splitlines()[0] == instance.GENERATED_MARKER and "secret" not in text
    assert config["storage"] == {"postgres": {"postgres_url": {"env": instance.POSTGRES_ENV}}}
    assert "event_log_storage" not in config
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 4
    assert config["concurrency"]["pools"] == {"granularity": "run", "default_limit": 4}
    assert not instance._templatable(text)


@pytest.mark.parametrize(("name", "value", "message"), [
    (instance.POSTGRES_ENV, "postgresql://u@db/dagster", "must start with postgresql\\+psycopg2"),
    (instance.MAX_RUNS_ENV, "0", "not a positive number"),
    (instance.MAX_RUNS_ENV, "two", "not a positive number"),
])
def test_unusable_instance_settings_say_why(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(instance.InstanceConfigError, match=message):
        instance.instance_yaml()


def test_switching_storage_rewrites_a_generated_dagster_yaml(monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv(instance.POSTGRES_ENV, raising=False)
    monkeypatch.delenv(instance.MAX_RUNS_ENV, raising=False)
    instance.ensure_dagster_home(tmp_path)
    assert (home / "dagster.yaml").read_text() == instance.DAGSTER_YAML
    monkeypatch.setenv(instance.POSTGRES_ENV, "postgresql+psycopg2://u@db/dagster")
    instance.ensure_dagster_home(tmp_path)
    assert "postgres" in yaml.safe_load((home / "dagster.yaml").read_text())["storage"]
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # the user's own
    instance.ensure_dagster_home(tmp_path)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_a_run_of_per_ticker_assets_locks_only_its_shards():
    from mf_pipeline.defs.partitions import RANGE_END, RANGE_START, run_lock_scope

    per_ticker = {dg.AssetKey("bronze"), dg.AssetKey("features")}
    span = {RANGE_START: "02", RANGE_END: "05"}
    assert run_lock_scope(span, per_ticker) == ["02", "03", "04", "05"]
    assert run_lock_scope({"dagster/partition": "11"}, per_ticker) == ["11"]
    assert run_lock_scope(span, per_ticker | {dg.AssetKey("manifest")}) is None
    assert run_lock_scope({}, per_ticker) is None
    assert run_lock_scope(span, None) is None


def test_a_run_of_research_models_on_one_split_locks_only_that_split():
    from mf_pipeline.defs.partitions import run_lock_scope

    models = {dg.AssetKey("hmm_model"), dg.AssetKey("hmm_states")}
    split = {"dagster/partition": "wf2016-12-31"}
    assert run_lock_scope(split, models) == ["split=wf2016-12-31"]
    assert run_lock_scope({}, models) is None
    assert run_lock_scope(split, models | {dg.AssetKey("ml_dataset")}) is None
    assert run_lock_scope(split, {dg.AssetKey("backtest_hmm")}) is None


def test_the_split_scoped_assets_are_the_research_models_labels_and_experiments():
    from mf_pipeline.defs.research.partitions import SPLIT_SCOPED_ASSETS, research_splits

    research = {spec.key.to_user_string() for spec in definitions().resolve_all_asset_specs()
                if spec.partitions_def == research_splits
                and spec.group_name in ("research", "research_experiments")}
    assert research == SPLIT_SCOPED_ASSETS


def test_shards_per_run_makes_backfills_multi_run(monkeypatch):
    from mf_pipeline.defs.partitions import shard_backfill_policy

    monkeypatch.delenv("MF_SHARDS_PER_RUN", raising=False)
    assert shard_backfill_policy().max_partitions_per_run is None
    monkeypatch.setenv("MF_SHARDS_PER_RUN", "4")
    assert shard_backfill_policy().max_partitions_per_run == 4
    monkeypatch.setenv("MF_SHARDS_PER_RUN", "17")
    with pytest.raises(ValueError, match="1 to 16"):
        shard_backfill_policy()
