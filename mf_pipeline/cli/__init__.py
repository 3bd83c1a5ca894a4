"""The ``mf`` command line: the old tool's commands, executed through the Dagster assets."""

from mf_pipeline.cli import (  # noqa: F401  (importing registers the commands)
    bench_commands,
    bronze_commands,
    derived_commands,
    qa_commands,
    research_commands,
    viewer_commands,
)
from mf_pipeline.cli.app import app

__all__ = ["app"]
