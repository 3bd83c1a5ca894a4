"""A shared PostgreSQL instance opened by several processes or threads at once on a fresh
database (a deployment's webserver, daemon and workers starting together; ``mf``'s run and its
progress reader): one creates the tables, the others wait and find them (CI once failed with
``type "jobs" already exists``)."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from mf_pipeline.orchestration import instance as instance_module
from mf_pipeline_tests.servers import (
    SKIP_NO_SERVERS,
    create_database,
    postgres_server,
    servers_available,
)

pytestmark = pytest.mark.skipif(not servers_available() and not os.environ.get("CI"),
                                reason=SKIP_NO_SERVERS)


def test_first_opening_waits_for_the_schema_lock(tmp_path, monkeypatch):
    with postgres_server() as postgres:
        url = create_database(postgres, "locked")
        monkeypatch.setenv("MF_DAGSTER_POSTGRES_URL", url)
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        opened = threading.Event()

        def open_it() -> None:
            instance_module.get_instance(tmp_path).dispose()
            opened.set()

        with engine.connect() as holder:
            holder.execute(sa.text("SELECT pg_advisory_lock(:k)"),
                           {"k": instance_module.SCHEMA_LOCK_KEY})
            opener = threading.Thread(target=open_it)
            opener.start()
            assert not opened.wait(1.5), "opened the instance while another held the lock"
            holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"),
                           {"k": instance_module.SCHEMA_LOCK_KEY})
            assert opened.wait(60)
            opener.join()
        engine.dispose()


def test_processes_starting_together_on_a_fresh_database_all_open_it(tmp_path):
    """What every service of ``deploy/docker-compose.yml`` runs first, six at once, on three
    fresh databases; each must exit 0 having found or created the tables."""
    with postgres_server() as postgres:
        for attempt in range(3):
            env = dict(os.environ, DAGSTER_HOME=str(tmp_path / f"home{attempt}"),
                       MF_DAGSTER_POSTGRES_URL=create_database(postgres, f"fresh{attempt}"))
            started = [subprocess.Popen(
                [sys.executable, "-m", "mf_pipeline.orchestration.instance"], env=env,
                cwd=Path.cwd(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for _ in range(6)]
            deadline = time.monotonic() + 240
            for process in started:
                output, _ = process.communicate(timeout=max(1, deadline - time.monotonic()))
                assert process.returncode == 0, output[-3000:]
                assert "tables ready" in output, output[-3000:]
