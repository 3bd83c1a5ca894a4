"""Sensor on the raw root: new, changed or deleted files trigger Bronze for those tickers only.

Stopped by default (start it in the UI, Automation tab). Each tick stats the raw tree (no file is
read), registers new tickers as partitions, and requests one run per contiguous range of changed
tickers — usually one run. Run keys are derived from the files' size and mtime, so a tick that
sees the same change again requests nothing new.
"""

import dagster as dg
import polars as pl
import xxhash

from mf_pipeline.defs.partitions import TICKERS, tickers_partitions
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.lake import is_valid_ticker
from mf_pipeline.lib.layers import manifest as mf
from mf_pipeline.lib.partitions import plan_ranges
from mf_pipeline.lib.steps import bronze_step

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def requests_for_changes(
    changes: pl.DataFrame, ordered_keys: list[str]
) -> tuple[list[str], list[dg.RunRequest]]:
    """(new partition keys, run requests) for a frame of raw-file changes."""
    valid = changes.filter(
        pl.col("ticker").map_elements(is_valid_ticker, return_dtype=pl.Boolean)  # few rows
    )
    tickers = sorted(set(valid["ticker"].to_list()))
    known = set(ordered_keys)
    new_keys = [t for t in tickers if t not in known]
    ordered = [*ordered_keys, *new_keys]
    requests = []
    for key_range in plan_ranges(tickers, ordered):
        members = valid.filter(pl.col("ticker").is_in(list(key_range.keys)))
        rows = members.select("source_file", "change", "signature").iter_rows()
        digest = xxhash.xxh3_64_hexdigest("\n".join("|".join(row) for row in rows).encode())
        requests.append(
            dg.RunRequest(
                run_key=f"raw-{key_range.start}-{key_range.end}-{digest}",
                asset_selection=[dg.AssetKey("manifest"), dg.AssetKey("bronze")],
                tags={RANGE_START: key_range.start, RANGE_END: key_range.end},
            )
        )
    return new_keys, requests


@dg.sensor(
    name="raw_files_sensor",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    asset_selection=["manifest", "bronze"],
)
def raw_files_sensor(context: dg.SensorEvaluationContext, settings: PipelineSettings):
    """Request Bronze for tickers whose raw files changed since their last successful ingest."""
    cfg = settings.get()
    stable_path = bronze_step.paths(cfg).stable_manifest
    stable = pl.read_parquet(stable_path) if stable_path.exists() else mf.empty_manifest()
    changes = mf.stat_changes(cfg.raw_root, stable)
    if changes.is_empty():
        return dg.SkipReason("no raw file changed since the last ingest")
    ordered = list(context.instance.get_dynamic_partitions(TICKERS))
    new_keys, requests = requests_for_changes(changes, ordered)
    if not requests:
        return dg.SkipReason(f"{changes.height} changed files, none names a valid ticker")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[tickers_partitions.build_add_request(new_keys)]
        if new_keys
        else [],
    )
