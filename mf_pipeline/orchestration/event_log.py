"""SQLite event-log storage tuned for many partition materializations on one machine.

Dagster's default SQLite event log opens a new SQLAlchemy engine for every event and closes it
again; in WAL mode the last close of a database checkpoints it, and every commit is fsynced.
With one event per (asset, ticker) that costs tens of milliseconds per partition here. This
subclass keeps one pooled engine per database file and commits with ``synchronous=NORMAL``
(safe in WAL mode against a crashed process; an OS crash can lose the last transactions, never
corrupt the file). Everything else — schema, queries, the UI — is Dagster's own.

Enabled in the project's ``dagster.yaml`` (``orchestration/dagster.yaml``, ``event_log_storage``);
see docs/DAGSTER.md.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as db
from dagster import DagsterEventType, EventLogEntry, Field, StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData
from dagster.version import __version__ as dagster_version
from sqlalchemy.pool import NullPool, QueuePool

from mf_pipeline.orchestration.accounting import part

EVENT_WRITES = {kind: f"Dagster event log: writes, {what}" for kind, what in (
    ("materialization", "asset materializations"), ("message", "log messages"),
    ("other", "other events"))}
MATERIALIZATION = DagsterEventType.ASSET_MATERIALIZATION
RUN_SHARD_TEMPLATE = f".run-shard-template-dagster-{dagster_version}"
"""An empty run database beside the run shards, per Dagster version (its schema); not
``*.db``, so Dagster never takes it for a run's."""
BUSY_TIMEOUT_SECONDS = 30
MAX_OPEN_SHARDS = 8


def _build_template(storage: SqliteEventLogStorage, template: Path) -> None:
    """An empty run database initialized by Dagster (schema, WAL mode, alembic stamp), its
    WAL folded in, renamed into place atomically."""
    work = template.with_name(f"{template.name}.{os.getpid()}.{threading.get_ident()}.db")
    engine = db.create_engine(f"sqlite:///{work}", poolclass=NullPool)
    try:
        storage._initdb(engine)
    finally:
        engine.dispose()
    with closing(sqlite3.connect(work)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if any(work.with_name(work.name + suffix).exists() for suffix in ("-wal", "-shm")):
        for suffix in ("", "-wal", "-shm"):
            work.with_name(work.name + suffix).unlink(missing_ok=True)
        raise RuntimeError("run-shard template left WAL files")
    os.replace(work, template)


def _tune(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage with cached engines and WAL ``synchronous=NORMAL``."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, db.engine.Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._tables_seen: set[str] = set()
        super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value: Mapping[str, Any]) -> PooledSqliteEventLogStorage:
        base_dir = config_value.get("base_dir") or os.path.join(
            os.environ.get("DAGSTER_HOME", "."), "history", "runs"
        )
        return cls(base_dir, inst_data=inst_data)

    def _engine(self, shard: str) -> db.engine.Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = db.create_engine(
                self.conn_string_for_shard(shard),
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=4,
                connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            db.event.listen(engine, "connect", _tune)
            self._engines[shard] = engine
            while len(self._engines) > MAX_OPEN_SHARDS:
                _old, stale = self._engines.popitem(last=False)
                stale.dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[db.engine.Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                if shard == INDEX_SHARD_NAME or not self._seed_run_shard(shard):
                    self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _seed_run_shard(self, shard: str) -> bool:
        """A new run's database as a copy of an empty one kept beside the shards
        (:data:`RUN_SHARD_TEMPLATE`, made by Dagster's own initialization on the home's first
        run): ~1 ms instead of ~60-100 ms of schema creation and alembic stamping per run.
        False (initialize normally) when the shard exists or anything fails."""
        target = Path(self.path_for_shard(shard))
        if target.exists():
            return False
        template = target.with_name(RUN_SHARD_TEMPLATE)
        staging = target.with_name(f".{shard}.seeding")
        try:
            if not template.exists():
                _build_template(self, template)
            shutil.copyfile(template, staging)
            os.link(staging, target)  # never overwrites a shard another process created
            return True
        except Exception:  # noqa: BLE001 - an optimisation only: Dagster initializes instead
            return False
        finally:
            staging.unlink(missing_ok=True)

    def store_event(self, event: EventLogEntry) -> None:
        """Dagster's write, timed as a part of the command (``accounting.py``), materializations
        (one per asset and shard) apart from the other events and the assets' log messages."""
        kind = event.dagster_event_type
        name = EVENT_WRITES["message" if kind is None else
                            "materialization" if kind == MATERIALIZATION else "other"]
        with part(name):
            super().store_event(event)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """The materializations of one step's shards in one transaction per database instead
        of two per event. Dagster hands them over as a batch when ``DAGSTER_EVENT_BATCH_SIZE``
        is set (``definitions.py`` sets it); each is stored as ``store_event``
        stores one (the run's shard, then the index shard: the event, its tags, the asset's
        last materialization). Any other batch goes event by event."""
        if len(events) < 2 or len({event.run_id for event in events}) > 1 or any(
                event.dagster_event_type != MATERIALIZATION for event in events):
            super().store_event_batch(events)
            return
        with part(EVENT_WRITES["materialization"], calls=len(events)):
            inserts = [self.prepare_insert_event(event) for event in events]
            with self.run_connection(events[0].run_id) as conn:
                for insert in inserts:
                    conn.execute(insert)
            with self.index_transaction() as conn:
                ids = [conn.execute(insert).inserted_primary_key[0] for insert in inserts]
                self._store_asset_event_tags(conn, events, ids)
                # An asset's index row holds only its last materialization: in one transaction
                # the batch's last event of each asset leaves it as every event in turn would.
                last = {event.dagster_event.asset_key: (event, event_id)  # type: ignore[union-attr]
                        for event, event_id in zip(events, ids, strict=True)}
                for event, event_id in last.values():
                    self._store_asset_event(conn, event, event_id)

    def has_table(self, table_name: str) -> bool:
        """Cached: Dagster asks for every asset event; tables are never dropped while running."""
        if table_name in self._tables_seen:
            return True
        # Not through _connect: Dagster calls this while holding the (non-reentrant) db lock.
        engine = self._engine(INDEX_SHARD_NAME)
        with engine.connect() as conn:
            present = bool(engine.dialect.has_table(conn, table_name))
        if present:
            self._tables_seen.add(table_name)
        return present

    def dispose(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
        super().dispose()
