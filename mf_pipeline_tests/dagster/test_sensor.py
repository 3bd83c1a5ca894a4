"""The raw-files sensor: a changed file requests its shards only; no change requests nothing;
the requested run rebuilds exactly the changed tickers."""

import shutil

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.defs.automation.sensors import raw_files_sensor
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib import lake
from mf_pipeline.lib.partitions import shard_of
from mf_pipeline.lib.steps import bronze_step
from mf_pipeline.orchestration import runner


def evaluate(instance):
    # `settings` holds the lake lock during runs (a context-manager resource): open it.
    with dg.build_sensor_context(instance=instance,
                                 resources={"settings": PipelineSettings()}) as context:
        return raw_files_sensor(context)


@pytest.mark.e2e  # runs the real chain up to features twice: not the fast loop
def test_sensor_requests_only_changed_tickers(isolated, messy_universe, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    settings = isolated(raw)
    result = CliRunner().invoke(app, ["run", "--until", "features"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    instance = dg.DagsterInstance.get()

    assert isinstance(evaluate(instance), dg.SkipReason)

    ledger = pl.read_parquet(bronze_step.paths(settings).ledger)
    target = ledger.filter(pl.col("status") == "OK").row(0, named=True)
    with open(raw / target["source_file"], "a") as handle:
        handle.write(f"{target['ticker']},D,20990101,000000,10,11,9,10.5,1000,0\n")
    new_file = raw / "data" / "daily" / "us" / "nyse stocks" / "1" / "zzzz.us.txt"
    new_file.write_text("<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,"
                        "<OPENINT>\nZZZZ.US,D,20240102,000000,10,11,9,10.5,1000,0\n")

    outcome = evaluate(instance)
    assert isinstance(outcome, dg.SensorResult)
    [request] = outcome.run_requests
    # the same chain as `mf run --until features`, not Bronze alone
    assert request.asset_selection == [dg.AssetKey(name) for name in (
        "manifest", "bronze", "silver", "indicators", "events", "features")]
    shards = (request.tags["dagster/asset_partition_range_start"],
              request.tags["dagster/asset_partition_range_end"])
    ends = sorted({shard_of(target["ticker"]), shard_of("ZZZZ.US")})
    assert shards == (ends[0], ends[-1])
    assert evaluate(instance).run_requests[0].run_key == request.run_key

    # The requested run, as the daemon would launch it: only the changed tickers are rebuilt,
    # in every layer up to features.
    def listed(layer: str) -> dict[str, str]:  # version:rows:last date of each ticker
        return lake.listings(lake.LAYERS[layer].root(settings))

    before = {layer: listed(layer) for layer in ("bronze", "features")}
    job = runner.definitions().resolve_implicit_global_asset_job_def()
    job.execute_in_process(instance=instance, tags=request.tags,
                           asset_selection=request.asset_selection)
    for layer in ("bronze", "features"):
        after = listed(layer)
        changed = {t for t, m in after.items() if before[layer].get(t) != m}
        assert changed == {target["ticker"], "ZZZZ.US"}, layer
    assert isinstance(evaluate(instance), dg.SkipReason)
