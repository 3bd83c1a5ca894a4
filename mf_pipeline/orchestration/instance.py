"""The project's Dagster instance: ``DAGSTER_HOME``, its one ``dagster.yaml`` text, and a fresh
home seeded from an empty-instance template instead of creating its storage.

``dagster.yaml`` beside this module is the only copy of the instance configuration: a home
without one gets it (``make setup``, ``make ui`` and every ``mf`` run ensure the project's home).

Creating the SQLite run, event-log and schedule storage of a new instance (schema, indexes,
alembic stamps, one fsynced commit each) takes ~1.7 s; opening existing files takes ~0.1 s.
A user's first ``mf run`` paid that. So the empty databases are built once per (Dagster version,
dagster.yaml) in a throw-away home, kept under ``<project>/.cache/dagster_instance/<key>/``
(``MF_DAGSTER_TEMPLATE_DIR`` overrides the parent folder) and copied into each fresh home.

The template holds no identity: Dagster's only stored id (``instance_info.run_storage_id``) is
created lazily on first use and is cleared from the template anyway; the telemetry id lives
outside the databases and is not copied. Any failure falls back to Dagster's own creation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import dagster as dg
import yaml

from mf_pipeline.lib import lake

log = logging.getLogger(__name__)
DAGSTER_YAML = (Path(__file__).with_name("dagster.yaml")).read_text()
GENERATED_MARKER = DAGSTER_YAML.splitlines()[0]
"""First line of every dagster.yaml we generate: a home whose file has it gets the current text."""
TEMPLATE_DIR_ENV = "MF_DAGSTER_TEMPLATE_DIR"
POSTGRES_ENV = "MF_DAGSTER_POSTGRES_URL"
POSTGRES_SCHEME = "postgresql+psycopg2://"
"""Set (``postgresql+psycopg2://user:password@host:5432/db``), the instance keeps runs, events and
schedules in that PostgreSQL database instead of SQLite files in the home: what several hosts
(webserver, daemon, Celery workers) must share (docs/DEPLOY.md). The URL stays in the
environment; the generated dagster.yaml only names the variable."""
MAX_RUNS_ENV = "MF_DAGSTER_MAX_CONCURRENT_RUNS"
"""Runs the queue starts at once, and runs holding one pool (the research fits) at once
(default 1: one machine); a cluster sets it to its number of workers."""
POSTGRES_STORAGE = f"""# Shared instance: runs, events, schedules in PostgreSQL (${POSTGRES_ENV}).
storage:
  postgres:
    postgres_url:
      env: {POSTGRES_ENV}
"""
STORAGE_DIRS = ("history", "schedules", "storage")
# Keys that could point storage outside DAGSTER_HOME (or at a server): never templated.
UNSAFE_KEYS = ("storage", "run_storage", "schedule_storage")


def template_root(project_root: Path | None = None) -> Path:
    """Parent folder of the templates: ``$MF_DAGSTER_TEMPLATE_DIR`` or ``<project>/.cache/…``."""
    if env := os.environ.get(TEMPLATE_DIR_ENV):
        return Path(env)
    if project_root is None:
        from mf_pipeline.lib.settings import find_project_root

        project_root = find_project_root()
    return project_root / ".cache" / "dagster_instance"


def template_key(dagster_yaml_text: str) -> str:
    """Dagster version + hash of dagster.yaml: either change means another schema or layout."""
    digest = hashlib.sha256(dagster_yaml_text.encode()).hexdigest()[:16]
    return f"dagster-{dg.__version__}-{digest}"


def _templatable(dagster_yaml_text: str) -> bool:
    """Only all-SQLite-inside-the-home configs: anything else is not ours to pre-create."""
    config = yaml.safe_load(dagster_yaml_text) or {}
    event_log = config.get("event_log_storage") or {}
    return not any(key in config for key in UNSAFE_KEYS) and "config" not in event_log


def _databases(folder: Path) -> list[Path]:
    return sorted(path.relative_to(folder) for path in folder.rglob("*.db"))


@contextmanager
def _dagster_home(home: Path) -> Iterator[None]:
    """Point DAGSTER_HOME at ``home`` for a while (custom storages read it from the env)."""
    before = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = before


def _seal(database: Path) -> None:
    """Fold the WAL into the file and drop any stored id, so the file alone is the template."""
    with closing(sqlite3.connect(database)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "instance_info" in tables:
            conn.execute("DELETE FROM instance_info")
            conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _check(database: Path) -> None:
    """Raise unless ``database`` is an intact, alembic-stamped SQLite file."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro&immutable=1", uri=True)) as conn:
        if conn.execute("PRAGMA quick_check").fetchone() != ("ok",):
            raise sqlite3.DatabaseError(f"{database} fails quick_check")
        if not conn.execute("SELECT version_num FROM alembic_version").fetchone():
            raise sqlite3.DatabaseError(f"{database} has no alembic stamp")


def build_template(dagster_yaml_text: str, root: Path | None = None) -> Path:
    """The template folder for this dagster.yaml, built first if missing (atomic rename)."""
    if not _templatable(dagster_yaml_text):
        raise ValueError("dagster.yaml configures its own storage; not templated")
    root = root or template_root()
    target = root / template_key(dagster_yaml_text)
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        home, files = work / "home", work / "files"
        home.mkdir()
        (home / "dagster.yaml").write_text(dagster_yaml_text)
        with _dagster_home(home):
            dg.DagsterInstance.from_config(str(home)).dispose()
        databases = _databases(home)
        if not databases:
            raise RuntimeError("instance created no SQLite files")
        for rel in databases:
            _seal(home / rel)
            (files / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(home / rel, files / rel)
            _check(files / rel)
        if any(files.rglob("*-wal")) or any(files.rglob("*-shm")):
            raise RuntimeError("WAL files left after sealing")
        try:
            files.rename(target)
        except OSError:
            if not target.is_dir():  # else another process built it first: use theirs
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def has_storage(home: Path) -> bool:
    """Whether ``home`` already holds (or starts to hold) instance storage: never seed it."""
    return any((home / name).exists() for name in STORAGE_DIRS) or any(home.rglob("*.db"))


def seed_home(home: Path, root: Path | None = None) -> bool:
    """Copy the empty-instance template into a fresh ``home``; True if it did.

    Never raises: a missing template is built, any failure is logged and leaves the home to
    Dagster's normal creation. Files are placed with ``os.link``, which never overwrites, so a
    concurrent process creating the same storage is not clobbered.
    """
    home = Path(home)
    config = home / "dagster.yaml"
    if not config.is_file() or has_storage(home) or not _templatable(config.read_text()):
        return False
    staging = home / ".seed-tmp"
    try:
        template = build_template(config.read_text(), root)
        databases = _databases(template)
        if not databases:
            raise RuntimeError(f"empty template {template}")
        for rel in databases:
            _check(template / rel)
        shutil.rmtree(staging, ignore_errors=True)
        for rel in databases:
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template / rel, staging / rel)
        for rel in databases:
            (home / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(staging / rel, home / rel)
        return True
    except Exception as error:  # noqa: BLE001 - the template is an optimisation only
        log.warning("Dagster instance template not used (%s: %s); creating storage normally",
                    type(error).__name__, error)
        return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_dagster_home(project_root: Path) -> Path:
    """``DAGSTER_HOME`` (default ``<project>/dagster_home``), created with the dagster.yaml and,
    when fresh, seeded with empty storage from a template (1.7 s less to open)."""
    home = Path(os.environ.get("DAGSTER_HOME") or project_root / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or _generated_and_outdated(config):
        lake.write_text(instance_yaml(), config)
    os.environ["DAGSTER_HOME"] = str(home)
    seed_home(home, template_root(project_root))
    return home


class InstanceConfigError(ValueError):
    """An environment variable that configures the instance has a value it cannot use."""


def instance_yaml() -> str:
    """The dagster.yaml this process wants: the project's text, with its SQLite event log
    replaced by PostgreSQL storage when ``$MF_DAGSTER_POSTGRES_URL`` is set."""
    text = DAGSTER_YAML
    if runs := os.environ.get(MAX_RUNS_ENV, "").strip():
        if not runs.isdigit() or int(runs) < 1:
            raise InstanceConfigError(f"{MAX_RUNS_ENV}={runs!r} is not a positive number "
                                      "of runs")
        text = text.replace("max_concurrent_runs: 1\n", f"max_concurrent_runs: {int(runs)}\n")
        text = text.replace("default_limit: 1\n", f"default_limit: {int(runs)}\n")
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        return text
    if not url.startswith(POSTGRES_SCHEME):
        raise InstanceConfigError(
            f"{POSTGRES_ENV} must start with {POSTGRES_SCHEME} (got {url.split(':', 1)[0]}:…): "
            "dagster-postgres speaks psycopg2, and SQLAlchemy 2.1 maps a plain postgresql:// "
            "URL to psycopg 3, which is not installed (docs/DEPLOY.md)")
    config_lines, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("event_log_storage:"):
            skipping = True
            continue
        if skipping and line.startswith(" "):
            continue
        skipping = False
        config_lines.append(line)
    return "".join(config_lines) + POSTGRES_STORAGE


def _generated_and_outdated(config: Path) -> bool:
    """A dagster.yaml we wrote (its marker line) that is not the one wanted now (an older
    template, or the other storage), never a user's own file."""
    text = config.read_text()
    return GENERATED_MARKER in text and text != instance_yaml()


def ensure_dotenv(project_root: Path, home: Path) -> Path:
    """``<project>/.env`` names the project's ``DAGSTER_HOME``, so Dagster's own CLI (``dagster
    dev``, ``dagster asset materialize``), which reads ``.env`` in the working directory, uses
    this instance from the project root instead of a throw-away one. A ``DAGSTER_HOME`` line
    already there is the user's choice and is kept; other lines are never touched."""
    dotenv = project_root / ".env"
    text = dotenv.read_text() if dotenv.exists() else ""
    if any(line.strip().startswith("DAGSTER_HOME=") for line in text.splitlines()):
        return dotenv
    prefix = text if not text or text.endswith("\n") else text + "\n"
    lake.write_text(f"{prefix}DAGSTER_HOME={home}\n", dotenv)
    return dotenv


SCHEMA_LOCK_KEY = 0x6D665F7363686D61
"""PostgreSQL advisory lock held while a process opens the shared instance for the first time."""


@contextmanager
def _schema_lock() -> Iterator[None]:
    """Serialise the first opening of a PostgreSQL instance across threads and processes.

    Opening an instance creates its tables when they are missing, and two openers of a fresh
    database race: Dagster retries some of its ``CREATE TABLE`` statements but not all
    (CI saw ``type "jobs" already exists``). On a fresh database the first holder creates
    the tables; later holders find them. SQLite homes need no lock (seeded from a template).
    """
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url or url in _schema_ready:
        yield
        return
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"),
                               {"key": SCHEMA_LOCK_KEY})
            try:
                yield
                _schema_ready.add(url)
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"),
                                   {"key": SCHEMA_LOCK_KEY})
    finally:
        engine.dispose()


_schema_ready: set[str] = set()
"""PostgreSQL URLs this process has opened an instance of (their tables exist)."""


def get_instance(project_root: Path) -> dg.DagsterInstance:
    """The project's instance (the one the UI shows), its home ensured first."""
    ensure_dagster_home(project_root)
    with _schema_lock():
        return dg.DagsterInstance.get()


def main() -> None:
    """Ensure the project's home and pre-build its template (``make setup``, ``make ui``)."""
    from mf_pipeline.lib.settings import find_project_root

    project = find_project_root()
    home = ensure_dagster_home(project)
    ensure_dotenv(project, home)
    text = (home / "dagster.yaml").read_text()
    if _templatable(text):
        print(build_template(text, template_root(project)))
    else:
        # Create a shared instance's tables here, one opener at a time: the webserver, daemon
        # and workers of a deployment run this before starting together on a fresh database.
        get_instance(project).dispose()
        print(f"{home}/dagster.yaml names its own storage (e.g. PostgreSQL): tables ready")


if __name__ == "__main__":
    sys.exit(main())
