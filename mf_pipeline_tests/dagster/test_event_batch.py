"""A step's per-partition materializations written as one batch (``store_event_batch``) are
stored exactly as Dagster stores them one by one: same events, tags, asset index."""

import sqlite3
from pathlib import Path

import dagster as dg
import pytest

from mf_pipeline.orchestration.event_log import PooledSqliteEventLogStorage
from mf_pipeline.orchestration.instance import DAGSTER_YAML

PARTS = dg.DynamicPartitionsDefinition(name="probe")
KEYS = [f"K{i:02d}" for i in range(30)]
RUN_SPECIFIC = "dagster/code_version"  # the run's id when the asset sets none


@dg.asset(partitions_def=PARTS, backfill_policy=dg.BackfillPolicy.single_run())
def probe(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    for key in context.partition_keys:
        context.add_asset_metadata({"shard": key, "n": int(key[1:])}, partition_key=key)
    return dg.MaterializeResult(metadata={"run_wide": 7},
                                tags={"dagster/data_version": "v1"})


def _run(home: Path, batch: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dg.DagsterInstance,
                                                                            list[str]]:
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch)
    stored: list[str] = []
    single = PooledSqliteEventLogStorage.store_event

    def spy(self, event):
        stored.append(str(event.dagster_event_type))
        single(self, event)

    monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event", spy)
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("probe", KEYS)
    job = dg.Definitions(assets=[probe]).resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, tags={
        "dagster/asset_partition_range_start": KEYS[0],
        "dagster/asset_partition_range_end": KEYS[-1]}).success
    monkeypatch.undo()
    return instance, stored


def _index_rows(home: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(home / "history" / "runs" / "index.db") as conn:
        return sorted(conn.execute(sql).fetchall())


def test_a_batch_stores_what_single_writes_store(tmp_path, monkeypatch):
    batched, via_single_b = _run(tmp_path / "batch", "1000", monkeypatch)
    single, via_single_s = _run(tmp_path / "single", "0", monkeypatch)
    materialization = str(dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert via_single_s.count(materialization) == len(KEYS)
    assert via_single_b.count(materialization) == 0  # all 30 went through the batch
    for instance in (batched, single):
        assert instance.get_materialized_partitions(dg.AssetKey("probe")) == set(KEYS)
    views = []
    for instance in (batched, single):
        records = instance.fetch_materializations(dg.AssetKey("probe"), limit=100).records
        views.append(sorted((r.asset_materialization.partition,
                             {k: v.value for k, v in r.asset_materialization.metadata.items()},
                             {k: v for k, v in r.asset_materialization.tags.items()
                              if k != RUN_SPECIFIC}) for r in records))
    assert views[0] == views[1]
    assert views[0][3][1] == {"shard": "K03", "n": 3, "run_wide": 7}
    for sql in (f"SELECT asset_key, key, value FROM asset_event_tags WHERE key != '{RUN_SPECIFIC}'",
                "SELECT dagster_event_type, asset_key, partition FROM event_logs "
                "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"):
        assert _index_rows(tmp_path / "batch", sql) == _index_rows(tmp_path / "single", sql)
    tagged = _index_rows(tmp_path / "batch", "SELECT key, value FROM asset_event_tags")
    assert tagged.count(("dagster/data_version", "v1")) == len(KEYS)
    # The asset index points at the last stored materialization, as with single writes.
    for instance in (batched, single):
        [record] = instance.get_asset_records([dg.AssetKey("probe")])
        last = record.asset_entry.last_materialization_record
        newest = instance.fetch_materializations(dg.AssetKey("probe"), limit=1).records[0]
        assert last.storage_id == newest.storage_id


def _schema(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        tables = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        stamp = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchall()
    return [*tables, *stamp, *mode]


def test_run_databases_after_the_first_are_copies_of_dagsters_own(tmp_path, monkeypatch):
    from mf_pipeline.orchestration.event_log import RUN_SHARD_TEMPLATE

    instance, _ = _run(tmp_path / "home", "1000", monkeypatch)
    runs = tmp_path / "home" / "history" / "runs"
    assert (runs / RUN_SHARD_TEMPLATE).is_file()
    storage = instance.event_log_storage
    seeded = [run.run_id for run in instance.get_runs()]
    # A second run in the same home starts from the template: its events read back.
    job = dg.Definitions(assets=[probe]).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, partition_key=KEYS[4])
    assert result.success
    [mat] = [e for e in instance.all_logs(result.run_id)
             if e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
    assert mat.dagster_event.partition == KEYS[4]
    # A shard Dagster initializes itself (the stock path) has the same schema and stamp.
    storage._initdb(storage._engine("stock-made"))
    for run_id in [*seeded, result.run_id]:
        assert _schema(runs / f"{run_id}.db") == _schema(runs / "stock-made.db")
    assert sorted(storage.get_all_run_ids()) == sorted([*seeded, result.run_id, "stock-made"])
