"""Pay the one-time costs of a fresh install before the user's first real run.

A fresh clone has no Numba kernel cache (compiling every kernel costs 15–30 s on this
machine, on the first `mf run` only), no byte-compiled modules, and no Dagster instance
template (creating SQLite storage costs ~1.5 s on every fresh ``DAGSTER_HOME``). ``make setup``
runs this module once: it materializes the pipeline on a tiny generated universe in a
throw-away folder (cold, then after one appended bar, so the append-path kernels compile too)
through the real ``mf`` command, so everything it caches is exactly what later runs load.
Nothing outside the temp folder is touched except those caches.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mf_pipeline.lib.sample import generate_universe
from mf_pipeline.lib.sample_append import append_one_bar

WARM_TICKERS = 4
WARM_YEARS = 1.0


def _mf_command() -> list[str]:
    """The ``mf`` console script of this interpreter, or the module behind it."""
    script = Path(sys.executable).parent / "mf"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from mf_pipeline.cli import run; run()"]


def warm_up(log: Callable[[str], None] = print) -> float:
    """Run ``mf run --until ml_dataset`` twice on a tiny universe in a temp folder; seconds."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mf-warm-up-") as tmp:
        work = Path(tmp)
        raw = work / "raw"
        generate_universe(raw, n_tickers=WARM_TICKERS, years=WARM_YEARS, seed=1)
        env = {
            **os.environ,
            "MF_PIPELINE_PATHS__RAW_ROOT": str(raw),
            "MF_PIPELINE_PATHS__DATA_ROOT": str(work / "data"),
            "MF_PIPELINE_PATHS__ARTIFACTS_ROOT": str(work / "artifacts"),
            "MF_PIPELINE_PATHS__LOGS_ROOT": str(work / "logs"),
            "DAGSTER_HOME": str(work / "dagster_home"),
        }
        env.pop("MF_PIPELINE_SETTINGS_FILE", None)
        command = [*_mf_command(), "run", "--until", "ml_dataset"]
        for label in ("cold run", "append run"):
            if label == "append run":
                append_one_bar(raw)
            tick = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"warm-up {label} failed:\n{done.stderr[-4000:]}")
            log(f"warm-up {label}: {time.perf_counter() - tick:.1f}s")
    return time.perf_counter() - started


def main() -> None:
    seconds = warm_up()
    print(f"warm-up done in {seconds:.1f}s (Numba kernels and modules cached)")


if __name__ == "__main__":
    main()
