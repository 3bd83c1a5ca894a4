"""Start-up cost guards: what importing the CLI and the code location pulls in.

Each check runs in a fresh interpreter, since this test process has imported everything.
"""

import subprocess
import sys


def _imported(code: str, modules: tuple[str, ...]) -> set[str]:
    """The ``modules`` that are in ``sys.modules`` after running ``code`` in a new Python."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    return set(done.stdout.split())


def test_cli_import_is_light() -> None:
    """``mf --help`` (and every command's parsing) needs only Typer: no Dagster, no Numba."""
    heavy = ("dagster", "polars", "numba", "numpy", "pyarrow", "pydantic_settings", "duckdb")
    assert _imported("import mf_pipeline.cli", heavy) == set()


def test_code_location_leaves_optional_libraries_unloaded() -> None:
    """Loading every asset (what ``mf run`` and Dagster do) imports no research/SQL/UI stack."""
    code = "from mf_pipeline.orchestration import runner\nrunner.definitions()"
    lazy = ("duckdb", "sklearn", "hmmlearn", "streamlit", "plotly",
            "scipy.stats", "scipy.optimize")  # ~1 s together: the grid and validation code's
    assert _imported(code, lazy) == set()


def test_numba_loads_on_the_first_kernel_call_only() -> None:
    """Numba (~0.3 s) is not imported to load the assets, only when a kernel first runs; then
    every loaded kernel module holds Numba dispatchers, so kernels calling kernels compile."""
    assert _imported("from mf_pipeline.orchestration import runner\nrunner.definitions()",
                     ("numba",)) == set()
    code = (
        "import numpy as np\n"
        "from mf_pipeline.lib.kernels import recursive, events_kernels\n"
        "from mf_pipeline.lib.layers import silver\n"
        "assert 'numba' not in sys.modules\n"
        "out = np.empty(3)\n"
        "recursive.true_range(np.array([3., 4, 9]), np.array([1., 3, 8]), np.array([2., 3.5, 8.5]),"
        " np.array([0, 3], dtype=np.int64), out)\n"
        "assert list(out) == [2.0, 2.0, 5.5], out\n"
        "from numba.core.registry import CPUDispatcher\n"
        "assert isinstance(recursive.true_range, CPUDispatcher)\n"
        "assert isinstance(events_kernels.true_run_length, CPUDispatcher)\n"
    )
    assert _imported(f"import sys\n{code}", ("numba", "scipy.linalg")) == {"numba"}


def test_first_kernel_load_skips_the_blas_probe_but_keeps_blas() -> None:
    """Numba probes for BLAS by importing ``scipy.linalg`` (0.1-0.2 s) when the first kernel
    loads; ours skips that probe, and a kernel using BLAS still finds it when it compiles."""
    code = (
        "import numpy as np, numba\n"
        "from mf_pipeline.lib.kernels import recursive\n"
        "out = np.empty(1)\n"
        "recursive.true_range(np.ones(1), np.ones(1), np.ones(1), np.array([0, 1]), out)\n"
        "assert 'scipy.linalg' not in sys.modules\n"
        "assert numba.njit(lambda a: np.dot(a, a))(np.ones(4)) == 4.0\n"
    )
    assert _imported(f"import sys\n{code}", ("scipy.linalg",)) == {"scipy.linalg"}
