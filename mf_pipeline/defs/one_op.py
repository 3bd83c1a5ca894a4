"""Jobs of one op: work on files and folders rather than assets (validating a user's labels
file, a backtest of any file, comparing run folders), each a Dagster run with typed config."""

import dagster as dg


def one_op_job(name: str, op: dg.OpDefinition, description: str) -> dg.JobDefinition:
    """A job named ``name`` that runs ``op`` alone (the ``mf`` command's name)."""

    @dg.job(name=name, description=description)
    def _graph() -> None:
        op()

    return _graph
