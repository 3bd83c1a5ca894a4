"""What the UI shows of the per-ticker assets: each shard's own figures, no-op runs, tickers.

One ``mf run --until features`` builds the lake of a small messy universe (a first build:
every shard of the graph is materialized, the empty ones too); each test works on its own copy
of that lake and Dagster home. The reference figures are computed here from the lake's rows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.defs.shard_metadata import EMPTY_SHARD
from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.partitions import SHARD_KEYS, shard_of
from mf_pipeline.lib.sample_append import append_one_bar
from mf_pipeline.lib.settings import Settings, load_settings
from mf_pipeline.lib.steps import bronze_step
from mf_pipeline.orchestration import runner
from mf_pipeline.orchestration.runner import definitions, instance

pytestmark = pytest.mark.e2e
PER_TICKER = registry.PER_TICKER


def roots(root: Path) -> dict[str, str]:
    return {
        "MF_PIPELINE_PATHS__RAW_ROOT": str(root / "raw"),
        "MF_PIPELINE_PATHS__DATA_ROOT": str(root / "data"),
        "MF_PIPELINE_PATHS__ARTIFACTS_ROOT": str(root / "artifacts"),
        "MF_PIPELINE_PATHS__LOGS_ROOT": str(root / "logs"),
        "DAGSTER_HOME": str(root / "dagster_home"),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory, messy_universe) -> Path:
    root = tmp_path_factory.mktemp("shards")
    shutil.copytree(messy_universe, root / "raw")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in roots(root).items():
            patch.setenv(name, value)
        patch.delenv("MF_PIPELINE_SETTINGS_FILE", raising=False)
        result = CliRunner().invoke(app, ["run", "--until", "features", "--json"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
    (root / "run.json").write_text(result.output[result.output.rindex("\n{\n") + 1:])
    return root


@pytest.fixture
def project(built, tmp_path, monkeypatch) -> Settings:
    """This test's own copy of the built lake and its Dagster home."""
    root = tmp_path / "copy"
    shutil.copytree(built, root, symlinks=True)
    for name, value in roots(root).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MF_PIPELINE_SETTINGS_FILE", raising=False)
    return load_settings()


def latest(settings: Settings, asset: str) -> dict[str, tuple[int, dict]]:
    """``{shard: (storage id, metadata values)}`` of each shard's latest materialization."""
    records = instance(settings).fetch_materializations(dg.AssetKey(asset), limit=10_000).records
    out: dict[str, tuple[int, dict]] = {}
    for record in sorted(records, key=lambda r: r.storage_id):
        mat = record.asset_materialization
        out[mat.partition] = (record.storage_id, {k: v.value for k, v in mat.metadata.items()})
    return out


def reference(settings: Settings, layer: str) -> pl.DataFrame:
    """Per shard from the layer's rows: rows, sorted tickers, first and last trade date."""
    rows = lake.read_layer(settings, layer).select("ticker", "trade_date")
    shards = {t: shard_of(t) for t in rows["ticker"].unique()}
    return (rows.with_columns(shard=pl.col("ticker").replace_strict(shards))
            .group_by("shard").agg(pl.len().alias("rows"), pl.col("ticker").unique().sort(),
                                   pl.col("trade_date").min().alias("low"),
                                   pl.col("trade_date").max().alias("high")))


def run(settings: Settings, assets: list[str], partition: str | None = None,
        tickers: list[str] | None = None, shard_range: tuple[str, str] | None = None,
        backfill: str | None = None):
    """One run the way the UI launches it: a shard (or a range), optional launchpad config,
    optionally as part of a backfill."""
    config = ({"resources": {"ticker_work": {"config": {"tickers": tickers}}}}
              if tickers is not None else None)
    tags = ({"dagster/asset_partition_range_start": shard_range[0],
             "dagster/asset_partition_range_end": shard_range[1]} if shard_range else {})
    if backfill:
        tags["dagster/backfill"] = backfill
    return definitions().resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance(settings), asset_selection=[dg.AssetKey(a) for a in assets],
        partition_key=partition, run_config=config, tags=tags or None, raise_on_error=False)


def failure(result) -> str:
    [event] = [e for e in result.all_events if e.is_step_failure]
    data = event.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def test_each_shard_shows_its_own_lake_figures(project):
    settings = project
    for layer in PER_TICKER:
        shown = latest(settings, layer)
        assert sorted(shown) == sorted(SHARD_KEYS), f"{layer}: a shard was left missing"
        want = {row["shard"]: row for row in reference(settings, layer).to_dicts()}
        assert len(want) >= 5 and len(want) < len(SHARD_KEYS), "the sample needs empty shards"
        for shard, (_, meta) in shown.items():
            row = want.get(shard)
            if row is None:
                assert (meta["dagster/row_count"], meta["ticker_count"], meta["tickers"]) == \
                    (0, 0, EMPTY_SHARD), (layer, shard)
                assert meta["min_trade_date"] is None and meta["tickers_written"] == 0
                continue
            assert meta["dagster/row_count"] == row["rows"], (layer, shard)
            assert meta["tickers"] == " ".join(row["ticker"]), (layer, shard)
            assert meta["ticker_count"] == len(row["ticker"])
            assert (meta["min_trade_date"], meta["max_trade_date"]) == \
                (str(row["low"]), str(row["high"]))
            assert meta["changed"] is True
        counts = [meta["dagster/row_count"] for _, meta in shown.values()]
        assert len(set(counts)) > 3, f"{layer}: shards show the same figures"
        assert sum(counts) == lake.read_layer(settings, layer).height
        meta = shown[max(want, key=lambda s: want[s]["rows"])][1]
        some_file = lake.snapshot(registry.spec(layer).root(settings)).files()[0]
        assert [c.name for c in meta["dagster/column_schema"].columns] == \
            pl.read_parquet(some_file).columns
        stored = registry.spec(layer).root(settings).relative_to(settings.data_root)
        assert meta["path"].endswith(f"/data/{stored}")  # the lake this copy was built in
    # The CLI's summary of the run adds the shards back up.
    totals = json.loads((settings.data_root.parent / "run.json").read_text())
    for layer in PER_TICKER:
        frame = lake.read_layer(settings, layer)
        assert totals[layer]["dagster/row_count"] == frame.height, layer
        assert totals[layer]["ticker_count"] == totals[layer]["tickers_written"] == \
            frame["ticker"].n_unique(), layer
        assert totals[layer]["min_trade_date"] == str(frame["trade_date"].min())
        assert "tickers" not in totals[layer] and totals[layer]["changed"] is True
    ledger = pl.read_parquet(bronze_step.paths(settings).ledger).filter(
        pl.col("ticker").is_not_null())
    valid = dict(ledger.group_by(pl.col("ticker").map_elements(shard_of, return_dtype=pl.String))
                 .agg(pl.col("rows_valid").sum()).rows())
    for shard, (_, meta) in latest(settings, "bronze").items():
        assert meta["rows_valid"] == valid.get(shard, 0), shard
        assert meta["files_processed"] == ledger.filter(
            pl.col("ticker").map_elements(shard_of, return_dtype=pl.String) == shard).height


def test_a_run_with_nothing_to_do_keeps_the_last_figures(project):
    settings = project
    before = {layer: latest(settings, layer) for layer in PER_TICKER}
    assert run(settings, ["manifest"]).success  # the raw tree is classified UNCHANGED
    result = run(settings, list(PER_TICKER), shard_range=(SHARD_KEYS[0], SHARD_KEYS[-1]))
    assert result.success
    for layer in registry.DERIVED:
        assert latest(settings, layer) == before[layer], f"{layer} recorded a no-op run"
    held = len(lake.symbol_tickers(registry.spec("silver").root(settings)))
    logged = [e.user_message for e in instance(settings).all_logs(result.run_id)]
    assert any(m.startswith(f"silver: nothing to do: all {held} tickers") for m in logged)
    # Bronze had nothing to do either, but the derived step runs after it in this run (Dagster
    # would skip it without Bronze's output): Bronze says so, with its unchanged lake figures.
    after = latest(settings, "bronze")
    for shard, (storage_id, meta) in after.items():
        old = before["bronze"][shard][1]
        assert storage_id > before["bronze"][shard][0] and meta["changed"] is False
        assert meta["dagster/row_count"] == old["dagster/row_count"]
        assert meta["files_processed"] == meta["tickers_written"] == 0
    # A derived layer alone: no materialization at all.
    held = shard_of(lake.symbol_tickers(registry.spec("silver").root(settings))[0])
    assert run(settings, ["silver"], partition=held).success
    assert latest(settings, "silver") == before["silver"]
    # Unless the run belongs to a backfill ("Materialize all" in the UI): a shard its run did
    # not materialize would be marked failed, and every asset downstream with it.
    assert run(settings, ["silver"], shard_range=(SHARD_KEYS[0], SHARD_KEYS[2]),
               backfill="ui").success
    after = latest(settings, "silver")
    for shard in SHARD_KEYS[:3]:
        assert after[shard][0] > before["silver"][shard][0]
        assert after[shard][1]["changed"] is False
        assert after[shard][1]["dagster/row_count"] == \
            before["silver"][shard][1]["dagster/row_count"]


def test_a_ticker_list_rebuilds_exactly_those_tickers(project):
    settings = project
    bronze = set(lake.symbol_tickers(registry.spec("bronze").root(settings)))
    shard, ticker = next((shard_of(t), t) for t in sorted(bronze)
                         if sum(shard_of(o) == shard_of(t) for o in bronze) >= 2)
    snapshots = {layer: lake.snapshot(registry.spec(layer).root(settings))
                 for layer in PER_TICKER}
    before = {layer: latest(settings, layer) for layer in PER_TICKER}

    # The launchpad's route: resources.ticker_work.config.tickers, on the ticker's shard.
    assert run(settings, list(PER_TICKER), partition=shard, tickers=[ticker.lower()]).success
    for layer, old in snapshots.items():
        new = lake.snapshot(old.root)
        # A new version of that ticker's rows only, with the same rows and dates ...
        listed, relisted = old.listings(), new.listings()
        assert {t for t in relisted if relisted[t] != listed.get(t)} == {ticker}, layer
        assert relisted[ticker].split(":")[1:] == listed[ticker].split(":")[1:], layer
        assert set(relisted) == set(listed), layer
        # ... in a file of its own shard; every other shard names the same files as before.
        assert set(new.of([ticker]).index["shard"]) == {shard}, layer
        others = [s for s in SHARD_KEYS if s != shard]
        assert new.in_shards(others).files() == old.in_shards(others).files(), layer
        assert set(new.in_shards([shard]).files()) - set(old.files()), layer
        meta = latest(settings, layer)[shard][1]
        assert (meta["tickers_processed"], meta["tickers_written"], meta["changed"]) == \
            (ticker, 1, True), layer
        assert meta["dagster/row_count"] == before[layer][shard][1]["dagster/row_count"]
        assert meta["tickers"] == before[layer][shard][1]["tickers"]

    # The CLI's route (`mf silver-one`): the same resource, filled with the planned list.
    outcome = runner.run_partitioned(settings, (), ("silver",), (), [ticker], log=lambda _: None)
    assert outcome.metadata["silver"]["tickers_processed"] == ticker
    assert outcome.metadata["silver"]["rows_written"] == \
        lake.read_layer(settings, "silver", [ticker]).height


def test_an_unknown_or_misplaced_ticker_fails_with_a_clear_error(project):
    settings = project
    bronze = lake.symbol_tickers(registry.spec("bronze").root(settings))
    ticker = bronze[0]
    other = next(t for t in bronze if shard_of(t) != shard_of(ticker))
    before = latest(settings, "silver")

    bare = ticker.removesuffix(".US")
    result = run(settings, ["silver"], partition=shard_of(ticker), tickers=[bare])
    assert not result.success
    assert f"unknown ticker(s): {bare} (did you mean {ticker}" in failure(result)

    result = run(settings, ["bronze"], partition=shard_of(ticker), tickers=[ticker, other])
    assert not result.success
    assert f"{other} is in shard {shard_of(other)}" in failure(result)
    assert latest(settings, "silver") == before


def test_after_a_nightly_append_the_figures_are_the_lakes(project):
    """The appended bars go to new files beside the shards' first ones; every shard's
    figures (read from the layer's index) still equal the lake's rows."""
    settings = project
    assert append_one_bar(settings.raw_root) > 10
    result = CliRunner().invoke(app, ["run", "--until", "features"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for layer in PER_TICKER:
        files = lake.snapshot(registry.spec(layer).root(settings)).index
        assert files.group_by("shard").agg(pl.col("file").n_unique())["file"].max() >= 2, layer
        want = {row["shard"]: row for row in reference(settings, layer).to_dicts()}
        for shard, (_, meta) in latest(settings, layer).items():
            row = want.get(shard, {"rows": 0, "high": None})
            assert meta["dagster/row_count"] == row["rows"], (layer, shard)
            assert meta["max_trade_date"] == (str(row["high"]) if row["high"] else None)
