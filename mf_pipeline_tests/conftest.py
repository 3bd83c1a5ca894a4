"""Shared fixtures: an isolated project (raw root, lake, artifacts, Dagster home) per test.

The folders mirror the package: ``unit/`` (formulas and modules, hand-computed values),
``property/`` (hypothesis invariants), ``dagster/`` (definitions, instance, sensor),
``e2e/`` (real asset runs through the CLI) and ``viewer/``. Everything under ``e2e/`` carries
the ``e2e`` marker, as do the few exhaustive tests elsewhere, so ``pytest -m "not e2e"`` is the
fast loop.
"""

import os
from pathlib import Path

import pytest

from mf_pipeline.lib.sample import generate_universe
from mf_pipeline.lib.settings import load_settings
from mf_pipeline_tests.browser import SKIP_NO_BROWSER, find_chromium

E2E_FIXTURES = {"demo_lake"}
"""Fixtures that run the real pipeline (``mf demo``): a test using one is end to end."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e" in item.path.parts or E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def messy_universe(tmp_path_factory) -> Path:
    """A small messy universe with every planted defect (generated once per session)."""
    root = tmp_path_factory.mktemp("raw")
    generate_universe(root, n_tickers=8, years=1.5, seed=11, messy=True)
    return root


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Point every root and DAGSTER_HOME at fresh folders; returns a settings loader."""
    monkeypatch.setenv("MF_PIPELINE_PATHS__DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("MF_PIPELINE_PATHS__ARTIFACTS_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("MF_PIPELINE_PATHS__LOGS_ROOT", str(tmp_path / "logs"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("MF_PIPELINE_SETTINGS_FILE", raising=False)

    def use_raw(raw_root: Path):
        monkeypatch.setenv("MF_PIPELINE_PATHS__RAW_ROOT", str(raw_root))
        return load_settings()

    return use_raw


@pytest.fixture
def chromium() -> str:
    """The system Chromium for the browser tests; skipped (loudly) only when there is none."""
    path = find_chromium()
    if path is None:
        pytest.skip(SKIP_NO_BROWSER)
    return path


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No ``MF_PIPELINE_*`` variable, and a working directory without ``.env`` or settings
    file: the settings' own defaults."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("MF_PIPELINE_"):
            monkeypatch.delenv(name)
    return tmp_path
