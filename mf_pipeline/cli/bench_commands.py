"""``mf bench``: run the benchmark harness (``bench/`` in the project checkout)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from mf_pipeline.cli.app import app, fail

SIZES = ("tiny", "small", "medium", "large")


def _project_root() -> Path:
    """The checkout holding ``bench/run.py`` (the harness is not part of the installed package)."""
    from mf_pipeline.lib.settings import find_project_root

    for start in (Path.cwd(), Path(__file__).resolve()):
        root = find_project_root(start if start.is_dir() else start.parent)
        if (root / "bench" / "run.py").is_file():
            return root
    fail("bench/run.py not found: run `mf bench` from the mf_pipeline checkout")
    raise AssertionError  # unreachable


@app.command()
def bench(
    size: Annotated[str, typer.Option(help=f"Universe size: {', '.join(SIZES)}.")] = "small",
    repeat: Annotated[int | None, typer.Option(min=1, help="Runs per measurement (median); "
                                               "default 3, large 1.")] = None,
    only: Annotated[str | None, typer.Option(help="Sections: layers,mf_run,startup,dagster,"
                                             "kernels.")] = None,
    out: Annotated[Path | None, typer.Option(help="Results JSON (default bench/results.json)."
                                             )] = None,
) -> None:
    """Benchmark the pipeline; writes bench/results.json and docs/BENCHMARKS.md."""
    if size not in SIZES:
        fail(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    cmd = [sys.executable, "-m", "bench.run", "--size", size]
    if repeat is not None:
        cmd += ["--repeat", str(repeat)]
    if only:
        cmd += ["--only", only]
    if out is not None:
        cmd += ["--out", str(out.resolve())]
    code = subprocess.call(cmd, cwd=_project_root())
    if code:
        raise typer.Exit(code)
