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
