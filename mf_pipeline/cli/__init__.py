"""The ``mf`` command line: the old tool's commands, executed through the Dagster assets."""

from mf_pipeline.cli import bronze_commands, qa_commands  # noqa: F401  (registers commands)
from mf_pipeline.cli.app import app

__all__ = ["app"]
