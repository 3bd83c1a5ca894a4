"""Real PostgreSQL and Redis servers for the scale-out tests: Debian's packages (``.ci/run``
installs them), bound to 127.0.0.1 on free ports, data in a temp folder, stopped at the end.

PostgreSQL refuses to run as root, so under root (CI) the cluster belongs to Debian's
``postgres`` user and is started with ``runuser``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
SKIP_NO_SERVERS = ("PostgreSQL or Redis is not installed (Debian packages postgresql and "
                   "redis-server; .ci/run installs them)")


def pg_bin(name: str) -> str | None:
    for folder in PG_BIN_DIRS:
        if (folder / name).is_file():
            return str(folder / name)
    return shutil.which(name)


def servers_available() -> bool:
    return bool(pg_bin("initdb") and pg_bin("postgres") and shutil.which("redis-server"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}): {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}: {log.read_text()[-2000:]}")


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def libpq(url: str) -> str:
    """A SQLAlchemy URL as psycopg2 takes it (no ``+driver``)."""
    return "postgresql://" + url.split("://", 1)[1]


def create_database(server_url: str, name: str) -> str:
    """A new database on the server of ``server_url`` (one Dagster instance each); its
    SQLAlchemy URL."""
    connection = psycopg2.connect(libpq(server_url))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
    finally:
        connection.close()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL cluster in a temp folder; yields its SQLAlchemy URL (database ``mf``,
    user ``mf``, no password: trust on 127.0.0.1)."""
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    folder = Path(tempfile.mkdtemp(prefix="mf-postgres-"))  # /tmp: the postgres user reaches it
    data, log = folder / "pgdata", folder / "postgres.log"
    if as_root:
        shutil.chown(folder, "postgres")
    done = subprocess.run([*run_as, pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U",
                           "mf", "--no-sync"], capture_output=True, text=True)
    if done.returncode:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stdout[-1000:]}{done.stderr[-1000:]}")
    port = free_port()
    with open(log, "w") as out:
        if as_root:
            shutil.chown(log, "postgres")
        process = subprocess.Popen(
            [*run_as, pg_bin("postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
             "-k", str(folder), "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, process, "postgres", log)
        subprocess.run([*run_as, pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "mf", "mf"], check=True, capture_output=True)
        yield f"postgresql+psycopg2://mf@127.0.0.1:{port}/mf"
    finally:
        stop_process(process)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A Redis server with no persistence in ``folder``; yields its base URL (no db number)."""
    folder.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), folder / "redis.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
             "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(folder)],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, process, "redis-server", log)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop_process(process)
