"""The derived layers' kernels are loaded once per argument type, whatever the data.

Numba compiles (or loads from its cache, ~20-50 ms each) one overload per argument type, and a
read-only array is another type than a writable one; Polars hands out either, depending on
nulls and chunks. So a run on messy data, and its append path, must call exactly the
overloads a run on clean data called.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mf_pipeline.lib.sample import generate_universe

# Runs in a fresh interpreter: in this process other tests have loaded kernels already.
SCRIPT = """
import os
import sys
from pathlib import Path
from numba.core.registry import CPUDispatcher
from mf_pipeline.lib import registry
from mf_pipeline.lib.sample_append import append_one_bar
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.lib.steps import bronze_step, derived_step

def overloads():  # {(module, kernel): number of compiled or cache-loaded overloads}
    return {(module, name): len(value.signatures) for module, loaded in list(sys.modules.items())
            if module.startswith("mf_pipeline.lib.kernels.")
            for name, value in vars(loaded).items() if isinstance(value, CPUDispatcher)}

def build(raw, data, run):
    os.environ["MF_PIPELINE_PATHS__RAW_ROOT"] = raw
    os.environ["MF_PIPELINE_PATHS__DATA_ROOT"] = data
    settings = load_settings()
    tickers = bronze_step.run_manifest(settings, run, log=lambda _: None).to_process
    bronze_step.run_bronze(settings, tickers, run, log=lambda _: None)
    layers = list(registry.DERIVED)
    return derived_step.run_derived(settings, tickers, layers, dict.fromkeys(layers, run),
                                    log=lambda _: None)

clean, messy, work = sys.argv[1:]
build(clean, work + "/clean", "clean")
first = overloads()
assert sum(first.values()) >= 10, first

def new_overloads():
    return {key: n for key, n in overloads().items() if first.get(key) != n}

build(messy, work + "/messy", "full")
assert not new_overloads(), ("messy data", new_overloads())
append_one_bar(Path(messy))
assert build(messy, work + "/messy", "append").appended, "the second run took the append path"
assert not new_overloads(), ("append path", new_overloads())
print("ok")
"""


def test_messy_data_and_the_append_path_load_no_new_kernel_overload(
        isolated, messy_universe: Path, tmp_path: Path) -> None:
    isolated(messy_universe)  # fresh folders; the script sets the raw and data roots
    clean, messy = tmp_path / "clean", tmp_path / "messy"
    generate_universe(clean, n_tickers=4, years=1.0, seed=3, messy=False)
    generate_universe(messy, n_tickers=8, years=1.5, seed=11, messy=True)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(clean), str(messy), str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
