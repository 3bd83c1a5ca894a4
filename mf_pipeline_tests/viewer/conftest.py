"""The viewer's lake comes from the real producers: ONE ``mf demo`` per session.

``mf demo`` generates a small sample universe and materializes every Dagster asset on it,
the research assets of the in-sample ``full`` split included (HMM states, cluster labels).
Each test then reads its own copy of what those assets wrote. No viewer test writes lake
data of its own: a hand-made fixture in the viewer's folders is how the viewer came to look
for ``gold/hmm_states_by_symbol`` while the assets wrote ``gold/hmm_by_symbol``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.settings import Settings, load_settings
from viewer import data

SAMPLE = {"MF_PIPELINE_SAMPLE__TICKERS": "3", "MF_PIPELINE_SAMPLE__YEARS": "40",
          "MF_PIPELINE_RESEARCH_HMM__MIN_SEQUENCE_LENGTH": "250"}
"""A few long tickers (thousands of bars: the downsampling and speed checks need them) next to
the sample's short messy ones (~230–250 bars); the research fit stays a few seconds. The HMM's
minimum sequence length above the shortest ones leaves some tickers without any research file
(the HMM skips them, and their null-heavy clustering rows leave them unclustered): the tests of
a ticker without state bands need one."""
UNSET = ("MF_PIPELINE_PATHS__RAW_ROOT", "MF_PIPELINE_SETTINGS_FILE",
         "MF_PIPELINE_OVERLAY_VIEWER")  # fmt: skip


def roots_env(root: Path) -> dict[str, str]:
    """The environment that points every root and DAGSTER_HOME under ``root``."""
    return {
        "MF_PIPELINE_PATHS__DATA_ROOT": str(root / "data"),
        "MF_PIPELINE_PATHS__ARTIFACTS_ROOT": str(root / "artifacts"),
        "MF_PIPELINE_PATHS__LOGS_ROOT": str(root / "logs"),
        "DAGSTER_HOME": str(root / "dagster_home"),
        **SAMPLE,
    }


@dataclass(frozen=True)
class DemoLake:
    """What one ``mf demo`` wrote (under ``root``), and tickers picked from it."""

    root: Path
    universe: list[str]
    """The tickers the viewer offers (its symbol master read)."""
    banded: str
    """The longest ticker with both an HMM and a cluster state file."""
    plain: str
    """A ticker without research files (no HMM, no cluster band)."""
    bars: dict[str, int]
    """Bronze rows per ticker."""


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory) -> DemoLake:
    """Run ``mf demo`` once (in-process, as ``test_e2e_demo``) into a session folder."""
    from mf_pipeline.cli import app

    root = tmp_path_factory.mktemp("viewer_demo")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in roots_env(root).items():
            patch.setenv(name, value)
        for name in UNSET:
            patch.delenv(name, raising=False)
        result = CliRunner().invoke(app, ["demo"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        settings = load_settings()
        bars = dict(lake.read_layer(settings, "bronze").group_by("ticker").len().rows())
        hmm = set(lake.symbol_tickers(registry.state_band_root(settings, "hmm")))
        cluster = set(lake.symbol_tickers(registry.state_band_root(settings, "cluster")))
        universe = data.load_universe(settings)
    banded = sorted(hmm & cluster, key=lambda t: (-bars.get(t, 0), t))
    assert banded, f"the demo wrote no ticker with both state bands: hmm={hmm}, cluster={cluster}"
    plain = sorted(t for t in bars if t not in hmm | cluster)
    assert plain, "every demo ticker has research files: no ticker to test their absence"
    return DemoLake(root, universe, banded[0], plain[0], bars)


@pytest.fixture
def viewer_env(tmp_path, monkeypatch) -> Path:
    """Fresh roots and DAGSTER_HOME under ``tmp_path`` (nothing in them); returns the root."""
    for name, value in roots_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def demo_settings(demo_lake, viewer_env) -> Settings:
    """This test's own copy of the demo's lake (a test may remove files from it)."""
    shutil.copytree(demo_lake.root / "data", viewer_env / "data", symlinks=True)
    return load_settings()
