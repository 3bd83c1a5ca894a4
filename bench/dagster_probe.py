"""Dagster's own bookkeeping cost, isolated with trivial no-IO partitioned assets.

A throwaway code location (``bench_noop_*`` assets over a dynamic partition set) run in
process against a fresh ``DAGSTER_HOME``: the assets do no work and write nothing, so every
second is Dagster's (planning, events, SQLite). ``python -m bench.dagster_probe --partitions N
--runs K --json OUT`` measures, in one process:

* a 1-partition run (fixed cost of a run; a first run absorbs one-time costs),
* one single-run range over ``N`` partitions (``BackfillPolicy.single_run()``, range tags as
  ``mf run`` uses), giving ms per asset-partition (total and marginal over the 1-partition run),
* ``K`` runs of one partition each (seconds per run),
* ``DAGSTER_HOME`` size per materialization,
* the same chain over the 16 ticker *shards* the pipeline uses (one range run over all shards),
  expressed per (asset, ticker) for ``N`` tickers: what ``mf run`` pays per ticker today.

Set or unset ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS`` in the environment of the
process; the value it saw is recorded. ``--instance stock`` uses Dagster's own SQLite storage
(``dagster.yaml`` with telemetry off only); ``--instance project`` uses the ``dagster.yaml`` the
``mf`` CLI writes (``orchestration/dagster.yaml``, e.g. its tuned event-log storage).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

EMIT_SUBSET = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
PARTITION_SET = "bench_keys"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
STOCK_YAML = "telemetry:\n  enabled: false\n"
INSTANCES = ("stock", "project")
# Console logging at WARNING, as ``mf run`` does: formatting DEBUG lines is not bookkeeping.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def build_assets(n_assets: int, parts: Any = None, prefix: str = "bench_noop") -> list[Any]:
    """A chain of ``n_assets`` no-IO assets sharing one partition set (default: dynamic)."""
    import dagster as dg

    parts = parts or dg.DynamicPartitionsDefinition(name=PARTITION_SET)
    assets = []
    previous: list[str] = []
    for index in range(n_assets):
        name = f"{prefix}_{index}"

        @dg.asset(name=name, deps=previous, partitions_def=parts,
                  backfill_policy=dg.BackfillPolicy.single_run())
        def noop(context):  # type: ignore[no-untyped-def]  # Dagster resolves real hints only
            return dg.MaterializeResult(metadata={"keys": len(context.partition_keys)})

        assets.append(noop)
        previous = [name]
    return assets


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def project_yaml() -> str:
    """The ``dagster.yaml`` the CLI writes, without letting the import change the env var."""
    before = os.environ.get(EMIT_SUBSET)
    from mf_pipeline.orchestration.instance import DAGSTER_YAML

    if before is None:
        os.environ.pop(EMIT_SUBSET, None)
    else:
        os.environ[EMIT_SUBSET] = before
    return DAGSTER_YAML


def probe(home: Path, partitions: int, runs: int, n_assets: int,
          instance_kind: str = "stock") -> dict[str, Any]:
    """Run the measurements against a fresh instance in ``home``; return the record."""
    tick = time.perf_counter()
    import dagster as dg

    import_s = time.perf_counter() - tick
    home.mkdir(parents=True, exist_ok=True)
    yaml_text = STOCK_YAML if instance_kind == "stock" else project_yaml()
    (home / "dagster.yaml").write_text(yaml_text)
    os.environ["DAGSTER_HOME"] = str(home)
    instance = dg.DagsterInstance.get()
    assets = build_assets(n_assets)
    keys = [f"K{i:06d}" for i in range(partitions + runs + 2)]
    tick = time.perf_counter()
    instance.add_dynamic_partitions(PARTITION_SET, keys)
    register_s = time.perf_counter() - tick

    def one_run(**kwargs: Any) -> float:
        start = time.perf_counter()
        result = dg.materialize(assets, instance=instance, raise_on_error=True,
                                run_config=QUIET, **kwargs)
        assert result.success
        return time.perf_counter() - start

    first_run_s = one_run(partition_key=keys[0])
    single_s = one_run(partition_key=keys[1])
    before = _dir_bytes(home)
    rng = keys[2 : 2 + partitions]
    range_s = one_run(tags={RANGE_START: rng[0], RANGE_END: rng[-1]})
    range_bytes = _dir_bytes(home) - before
    done = instance.get_materialized_partitions(dg.AssetKey(f"bench_noop_{n_assets - 1}"))
    per_run = [one_run(partition_key=key) for key in keys[2 + partitions :]]
    mats = partitions * n_assets
    shard_s = _shard_run(instance, n_assets)
    return {
        "instance": instance_kind,
        "emit_partition_subset": os.environ.get(EMIT_SUBSET) == "1",
        "assets": n_assets,
        "partitions": partitions,
        "import_dagster_s": import_s,
        "register_partitions_s": register_s,
        "first_run_s": first_run_s,
        "one_partition_run_s": single_s,
        "range_run_s": range_s,
        "range_ms_per_asset_partition": 1000 * range_s / mats,
        "range_marginal_ms_per_asset_partition":
            1000 * (range_s - single_s) / max(mats - n_assets, 1),
        "range_partitions_materialized": sum(1 for key in rng if key in done),
        "range_kb_per_materialization": range_bytes / 1024 / mats,
        "per_partition_runs": len(per_run),
        "per_partition_run_s": statistics.median(per_run) if per_run else None,
        "per_partition_ms_per_asset_partition":
            1000 * statistics.median(per_run) / n_assets if per_run else None,
        "shard_range_run_s": shard_s,
        "shard_ms_per_asset_ticker": 1000 * shard_s / mats,
        "dagster_home_mb": _dir_bytes(home) / 1e6,
    }


def _shard_run(instance: Any, n_assets: int) -> float:
    """Seconds of one range run of the no-IO chain over every ticker shard."""
    import dagster as dg

    from mf_pipeline.lib.partitions import SHARD_KEYS

    shards = build_assets(n_assets, dg.StaticPartitionsDefinition(list(SHARD_KEYS)),
                          "bench_shard")
    start = time.perf_counter()
    result = dg.materialize(shards, instance=instance, raise_on_error=True, run_config=QUIET,
                            tags={RANGE_START: SHARD_KEYS[0], RANGE_END: SHARD_KEYS[-1]})
    assert result.success
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    from bench.common import write_json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True, help="Fresh DAGSTER_HOME folder.")
    parser.add_argument("--partitions", type=int, default=500)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--assets", type=int, default=1)
    parser.add_argument("--instance", choices=INSTANCES, default="stock")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    write_json(probe(args.home, args.partitions, args.runs, args.assets, args.instance),
               args.json)


if __name__ == "__main__":
    main()
