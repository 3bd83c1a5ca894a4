"""The pooled SQLite event log stores and serves partition materializations like the stock one."""

import dagster as dg

from mf_pipeline.orchestration.event_log import PooledSqliteEventLogStorage
from mf_pipeline.orchestration.instance import DAGSTER_YAML

PARTS = dg.DynamicPartitionsDefinition(name="probe")


@dg.asset(partitions_def=PARTS, backfill_policy=dg.BackfillPolicy.single_run())
def probe(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"n": len(context.partition_keys)})


def test_instance_uses_pooled_storage_and_records_every_partition(tmp_path, monkeypatch):
    (tmp_path / "dagster.yaml").write_text(DAGSTER_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = dg.DagsterInstance.get()
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    keys = [f"K{i:03d}" for i in range(40)]
    instance.add_dynamic_partitions("probe", keys)
    job = dg.Definitions(assets=[probe]).resolve_implicit_global_asset_job_def()
    job.execute_in_process(instance=instance, tags={
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1]})
    materialized = instance.get_materialized_partitions(dg.AssetKey("probe"))
    assert materialized == set(keys)
    storage = instance.event_log_storage
    assert storage.has_table("asset_event_tags") and "asset_event_tags" in storage._tables_seen
    # A second instance (another process, e.g. the UI) reads the same history.
    other = dg.DagsterInstance.from_config(str(tmp_path))
    assert other.get_materialized_partitions(dg.AssetKey("probe")) == set(keys)
