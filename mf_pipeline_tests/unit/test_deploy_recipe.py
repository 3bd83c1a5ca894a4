"""The deployment recipe (deploy/, docs/DEPLOY.md) stays in step with the code: its files parse,
the environment it gives every process is settings the pipeline accepts (with the values it
means), and the modules its commands start exist. Docker and Kubernetes are not run here."""

import importlib
import re
from pathlib import Path

import pytest
import yaml

from mf_pipeline.lib.settings import load_settings
from mf_pipeline.orchestration import instance

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def worker_manifests() -> list[dict]:
    return list(yaml.safe_load_all((DEPLOY / "helm" / "mf-workers.yaml").read_text()))


def resolved(value: str) -> str:
    """A compose value with its ``${NAME:-default}`` references replaced by their defaults."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def environments() -> dict[str, dict[str, str]]:
    env = {k: resolved(str(v)) for k, v in compose()["x-mf-environment"].items()}
    config_map = next(m for m in worker_manifests() if m["kind"] == "ConfigMap")
    return {"compose": env, "helm": {k: str(v) for k, v in config_map["data"].items()}}


@pytest.mark.parametrize("where", ["compose", "helm"])
def test_the_recipes_environment_is_settings_the_pipeline_accepts(monkeypatch, tmp_path, where):
    env = environments()[where]
    for name in list(env):
        if name.startswith(("MF_PIPELINE_", "MF_DAGSTER_", "MF_SHARDS")):
            monkeypatch.setenv(name, env[name])
    settings = load_settings()
    assert settings.execution.executor == "celery"
    assert settings.execution.celery.broker.startswith("redis://")
    assert settings.data_root.is_absolute() and str(settings.data_root).startswith("/lake")
    if "MF_DAGSTER_POSTGRES_URL" in env:
        monkeypatch.setenv("MF_DAGSTER_POSTGRES_URL", "postgresql+psycopg2://mf:pw@postgres/db")
        assert env["MF_DAGSTER_POSTGRES_URL"].startswith(instance.POSTGRES_SCHEME)
        assert "postgres" in yaml.safe_load(instance.instance_yaml())["storage"]


def test_the_recipes_commands_start_modules_that_exist():
    services = compose()["services"]
    commands = " ".join(" ".join(map(str, s.get("command") or [])) for s in services.values())
    deployment = next(m for m in worker_manifests() if m["kind"] == "Deployment"
                      and m["metadata"]["name"] == "mf-workers")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    commands += " " + " ".join(container["args"])
    modules = set(re.findall(r"-(?:A|m) ([a-z_.]+)", commands))
    assert "mf_pipeline.orchestration.celery_app" in modules
    assert "mf_pipeline.orchestration.instance" in modules
    for module in modules:
        importlib.import_module(module)
    assert {"webserver", "daemon", "worker", "postgres", "redis"} <= set(services)
