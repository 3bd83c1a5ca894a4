"""Shared by the end-to-end command tests: a real ``mf demo`` lake and a runner of ``mf``
commands against it (no hand-made fixture between our components)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mf_pipeline.cli import app

UNSET = ("MF_PIPELINE_PATHS__RAW_ROOT", "MF_PIPELINE_SETTINGS_FILE")


def lake_env(root: Path) -> dict[str, str]:
    return {"MF_PIPELINE_PATHS__DATA_ROOT": str(root / "data"),
            "MF_PIPELINE_PATHS__ARTIFACTS_ROOT": str(root / "artifacts"),
            "MF_PIPELINE_PATHS__LOGS_ROOT": str(root / "logs"),
            "DAGSTER_HOME": str(root / "dagster_home")}  # fmt: skip


def point_at(root: Path, patch: pytest.MonkeyPatch) -> None:
    """Every root and the Dagster instance at ``root``; the sample universe as raw input."""
    for name, value in lake_env(root).items():
        patch.setenv(name, value)
    for name in UNSET:
        patch.delenv(name, raising=False)


def demo_lake(root: Path, small: bool = False) -> Iterator[Path]:
    """Run ``mf demo`` into ``root`` (a module fixture's body). ``small``: on a generated
    universe of 16 tickers x 5 years instead of the bundled sample (the same steps, ~5x
    faster), for tests that need a real lake but not the sample's breadth."""
    with pytest.MonkeyPatch.context() as patch:
        point_at(root, patch)
        if small:
            from mf_pipeline.lib.sample import generate_universe

            raw = root / "data" / "sample_raw"
            generate_universe(raw, n_tickers=16, years=5, seed=7)
            patch.setenv("MF_PIPELINE_PATHS__RAW_ROOT", str(raw))
        result = CliRunner().invoke(app, ["demo"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        yield root


def mf_runner(root: Path, patch: pytest.MonkeyPatch) -> Callable[..., dict | str]:
    """``run(*args, code=0)``: one ``mf`` command on the lake; its JSON (with ``--json``) or
    its output, after checking the exit code."""
    point_at(root, patch)

    def run(*args: str, code: int = 0) -> dict | str:
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return json.loads(result.stdout) if "--json" in args and code == 0 else result.output

    return run


def asset_record(root: Path, asset: str, partition: str = "full") -> dict:
    """The record an asset stored through the IO manager."""
    return json.loads((root / "data" / "_io" / asset / f"{partition}.json").read_text())
