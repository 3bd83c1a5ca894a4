"""The Celery app the project's workers run (docs/DEPLOY.md)::

    celery -A mf_pipeline.orchestration.celery_app worker -Q dagster --concurrency 1

It is dagster-celery's step task on an app configured from the project's settings
(``execution.celery``: broker, result backend, queue), the same arguments the runs send with,
so a worker and a run cannot disagree. A worker needs what every run needs: the project's
environment (this package installed), the lake path (a shared filesystem), the same
``MF_PIPELINE_*`` settings and a ``DAGSTER_HOME`` naming the shared PostgreSQL instance.
"""

import os
from typing import Any

from celery.signals import worker_process_init
from dagster_celery.config import dict_wrapper
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from mf_pipeline.lib.settings import load_settings
from mf_pipeline.orchestration.executors import celery_app_args

_celery = load_settings().execution.celery
_args = celery_app_args(_celery.broker, _celery.backend, _celery.queue)
app = make_app({**_args, "config_source": dict_wrapper(_args["config_source"])})
execute_plan = create_task(app)


@worker_process_init.connect
def _load_definitions(**_: Any) -> None:
    """Import the code location once per worker process, before its first task: the first
    step a fresh worker ran waited ~2 s for these imports (later steps reuse them). Runs that
    a step launches from here execute in this process (``runner.IN_WORKER_ENV``)."""
    from mf_pipeline.definitions import defs
    from mf_pipeline.orchestration.runner import IN_WORKER_ENV

    os.environ[IN_WORKER_ENV] = "1"
    defs()
