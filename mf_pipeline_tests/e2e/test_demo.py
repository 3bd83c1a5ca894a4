"""`mf demo` on a tiny generated sample materializes every asset, and the checks pass."""

import json

import dagster as dg
import polars as pl
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.defs.partitions import ticker_shards
from mf_pipeline.lib import lake
from mf_pipeline.lib.partitions import SHARD_KEYS
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.orchestration.planning import ON_DEMAND_TAG
from mf_pipeline.orchestration.runner import definitions


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_materializes_every_asset_and_checks_pass(isolated, monkeypatch):
    isolated  # noqa: B018 - fixture sets the roots; no raw root: the sample is generated
    monkeypatch.delenv("MF_PIPELINE_PATHS__RAW_ROOT", raising=False)
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__TICKERS", "6")
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__YEARS", "1.5")
    output = invoke("demo")
    assert "Where to look next" in output
    settings = load_settings()
    instance = dg.DagsterInstance.get()
    defs = definitions()
    on_demand = set()
    for spec in defs.resolve_all_asset_specs():
        # sweeps, stability and the walk-forward aggregate run on request only
        if spec.group_name == "research_experiments" or spec.tags.get(ON_DEMAND_TAG) == "true":
            on_demand.add(spec.key)
            continue
        assert instance.get_latest_materialization_event(spec.key) is not None, spec.key
        if spec.partitions_def == ticker_shards:  # the empty shards too: no shard left missing
            assert instance.get_materialized_partitions(spec.key) == set(SHARD_KEYS), spec.key
    check_keys = defs.resolve_asset_graph().asset_check_keys
    assert len(check_keys) >= 5
    for check_key in (k for k in check_keys if k.asset_key not in on_demand):
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [check_key])[check_key]
        assert record.event.dagster_event.event_specific_data.passed, check_key
    features = lake.read_panel(settings, ["features", "indicators", "silver"])
    assert features.height > 0 and features["tmf_21"].drop_nulls().len() > 0
    [meta_path] = (settings.gold_root / "datasets" / "ml_dataset_v1").glob("*/metadata.json")
    meta = json.loads(meta_path.read_text())
    assert meta["row_count"] > 0 and meta["symbol_count"] == features["ticker"].n_unique() > 6
    assert meta["row_count"] == pl.read_parquet(meta_path.parent / "dataset.parquet").height

    # `mf demo` again: nothing changed, so no research model is refitted.
    fitted = {key: instance.get_latest_materialization_event(dg.AssetKey(key)).run_id
              for key in ("hmm_model", "cluster_model", "hmm_states", "cluster_labels")}
    again = invoke("demo")
    assert "not refitted" in again and "make viewer" in again
    assert fitted == {key: instance.get_latest_materialization_event(dg.AssetKey(key)).run_id
                      for key in fitted}
    # A changed research setting makes the models stale again.
    monkeypatch.setenv("MF_PIPELINE_RESEARCH_HMM__MIN_SEQUENCE_LENGTH", "90")
    assert "not refitted" not in invoke("demo")
    assert instance.get_latest_materialization_event(dg.AssetKey("hmm_model")).run_id \
        != fitted["hmm_model"]
    monkeypatch.delenv("MF_PIPELINE_RESEARCH_HMM__MIN_SEQUENCE_LENGTH")

    # Nothing changed: the layer commands have nothing to do; one ticker can be rebuilt.
    assert "0 tickers need silver" in invoke("silver-run")
    assert "not exported again" in invoke("run", "--until", "ml_dataset")
    ticker = features["ticker"][0]
    assert "rows written" in invoke("features-one", "--ticker", ticker.lower())
    assert "tmf_21" in invoke("sql", "SELECT ticker, avg(tmf_21) AS tmf_21 FROM indicators "
                              "GROUP BY 1 ORDER BY 1")
    out = invoke("export-ml-dataset", "--symbols-limit", "2", "--start-date", "2025-01-01",
                 "--json")
    assert '"symbol_count": 2' in out
    assert "events" in invoke("events-sanity")
