"""Sensor on the raw root: new, changed or deleted files trigger the layer chain for those
tickers only."""

import dagster as dg
import polars as pl
import xxhash

from mf_pipeline.defs.partitions import RANGE_END, RANGE_START
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.lake import is_valid_ticker
from mf_pipeline.lib.layers import manifest as mf
from mf_pipeline.lib.partitions import shard_span
from mf_pipeline.lib.registry import PER_TICKER
from mf_pipeline.lib.steps import bronze_step

SENSOR_ASSETS = ("manifest", *PER_TICKER)
"""What ``mf run --until features`` materializes: the manifest and every per-ticker layer."""
DESCRIPTION = """Watches the raw root for new, changed or deleted files.

Stopped by default (start it under Automation). Each tick only stats the raw tree (no file is
read) and requests one run of the manifest, Bronze, Silver, indicators, events and features
(the same assets as `mf run --until features`) over the shards that hold the changed tickers.
Inside those shards only the changed tickers are rebuilt. The run key comes from the files'
size and mtime, so a tick that sees the same change again requests nothing new."""


def request_for_changes(changes: pl.DataFrame) -> dg.RunRequest | None:
    """One run request for a frame of raw-file changes; None when no change names a ticker."""
    valid = changes.filter(
        pl.col("ticker").map_elements(is_valid_ticker, return_dtype=pl.Boolean)  # few rows
    )
    span = shard_span(valid["ticker"].to_list())
    if span is None:
        return None
    rows = valid.sort("source_file").select("source_file", "change", "signature").iter_rows()
    digest = xxhash.xxh3_64_hexdigest("\n".join("|".join(row) for row in rows).encode())
    return dg.RunRequest(
        run_key=f"raw-{span[0]}-{span[1]}-{digest}",
        asset_selection=[dg.AssetKey(name) for name in SENSOR_ASSETS],
        tags={RANGE_START: span[0], RANGE_END: span[1]},
    )


@dg.sensor(
    name="raw_files_sensor",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    asset_selection=list(SENSOR_ASSETS),
    description=DESCRIPTION,
)
def raw_files_sensor(context: dg.SensorEvaluationContext, settings: PipelineSettings):
    """Request the layer chain for tickers whose raw files changed since their last ingest."""
    cfg = settings.get()
    stable_path = bronze_step.paths(cfg).stable_manifest
    stable = pl.read_parquet(stable_path) if stable_path.exists() else mf.empty_manifest()
    changes = mf.stat_changes(cfg.raw_root, stable, cfg.ingest.follow_symlinks)
    if changes.is_empty():
        return dg.SkipReason("no raw file changed since the last ingest")
    request = request_for_changes(changes)
    if request is None:
        return dg.SkipReason(f"{changes.height} changed files, none names a valid ticker")
    context.log.info(f"{changes.height} changed files; shards {request.tags[RANGE_START]}…"
                     f"{request.tags[RANGE_END]}")
    return dg.SensorResult(run_requests=[request])
