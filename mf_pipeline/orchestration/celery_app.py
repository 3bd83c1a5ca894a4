"""The Celery app the project's workers run (docs/DEPLOY.md)::

    celery -A mf_pipeline.orchestration.celery_app worker -Q dagster --concurrency 1

It is dagster-celery's step task on an app configured from the project's settings
(``execution.celery``: broker, result backend, queue), the same arguments the runs send with,
so a worker and a run cannot disagree. A worker needs what every run needs: the project's
environment (this package installed), the lake path (a shared filesystem), the same
``MF_PIPELINE_*`` settings and a ``DAGSTER_HOME`` naming the shared PostgreSQL instance.
"""

from dagster_celery.config import dict_wrapper
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from mf_pipeline.lib.settings import load_settings
from mf_pipeline.orchestration.executors import celery_app_args

_celery = load_settings().execution.celery
_args = celery_app_args(_celery.broker, _celery.backend, _celery.queue)
app = make_app({**_args, "config_source": dict_wrapper(_args["config_source"])})
execute_plan = create_task(app)
