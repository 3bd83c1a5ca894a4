"""The candidate pack and re-run assets (#22): the as-of date is the ``candidate_rerun``
partition, and a planted drift fails that partition's ``candidate_drift`` check without
failing the run. The end-to-end part runs on a real ``mf demo`` lake in a temp DAGSTER_HOME;
the option mapping and the refusals of the commands need no lake."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.defs.candidates.assets import AS_OF_DATES
from mf_pipeline.defs.candidates.config import PackConfig, RerunConfig
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.orchestration import runner
from mf_pipeline_tests.e2e.demo_cli import demo_lake, mf_runner

CHECK = dg.AssetCheckKey(dg.AssetKey("candidate_rerun"), "candidate_drift")


# --- config and command options (no lake) ---------------------------------------------------


def test_rerun_options_from_the_command_line(isolated, tmp_path, monkeypatch):
    """The six coverage options go by their policy names; the rest as given; nothing unset."""
    isolated(tmp_path / "raw")
    seen: dict = {}

    def capture(settings, selection, partition_key, run_config, log):
        seen.update(selection=selection, key=partition_key,
                    config=run_config["ops"]["candidate_rerun"]["config"])
        raise _Captured

    monkeypatch.setattr(runner, "run_assets", capture)
    result = CliRunner().invoke(app, [
        "candidate-rerun-run", "--as-of-tag", "2024-03-28", "--overlay-min-match-rate-fail",
        "0.7", "--overlay-unknown-rate-warn", "0.2", "--coverage-drift-warn-drop", "0.05",
        "--run-micro-grid", "--overlay-coverage-mode", " Strict_Fail", "--wf-run-dir",
        str(tmp_path)])
    assert isinstance(result.exception, _Captured), result.output
    assert seen["selection"] == ["candidate_rerun"] and seen["key"] == "2024-03-28"
    config = seen["config"]
    assert config == {"coverage": {"min_match_rate_fail": 0.7, "unknown_rate_warn": 0.2},
                      "coverage_drift_warn_drop": 0.05, "run_micro_grid": True,
                      "overlay_coverage_mode": "strict_fail", "wf_grid_dir": str(tmp_path)}
    options = RerunConfig(**config).options()
    assert options.coverage == config["coverage"] and options.wf_grid_dir == tmp_path
    assert options.coverage_drift_fail_match is None and options.overlay_coverage_bypass is False


def test_pack_config_roles():
    dirs = PackConfig(alpha_grid_dir="/a", exec2_grid_dir="/c").dirs()
    assert dirs == {"alpha": Path("/a"), "exec": None, "exec2": Path("/c"),
                    "wf_baseline": None, "wf_hybrid": None, "realism": None}


class _Captured(Exception):
    pass


def test_build_maps_the_old_grid_options_to_roles(isolated, tmp_path, monkeypatch):
    """a1 -> alpha, b -> exec, a2 -> exec2; a3 and c accepted and not passed on."""
    isolated(tmp_path / "raw")
    folders = {name: tmp_path / name for name in ("a1", "a2", "a3", "b", "c")}
    for folder in folders.values():
        folder.mkdir()
    seen: dict = {}

    def capture(settings, selection, partition_key, run_config, log):
        seen.update(selection=selection, key=partition_key,
                    config=run_config["ops"]["production_candidates"]["config"])
        raise _Captured

    monkeypatch.setattr(runner, "run_assets", capture)
    args = [f"--{n}-grid-dir={p}" for n, p in folders.items()]
    result = CliRunner().invoke(app, ["production-candidates-build", *args, "--min-trades", "7",
                                      "--no-include-exec2"])
    assert isinstance(result.exception, _Captured), result.output
    assert seen["selection"] == ["production_candidates"] and seen["key"] is None
    assert seen["config"] == {"alpha_grid_dir": str(folders["a1"]),
                              "exec_grid_dir": str(folders["b"]),
                              "exec2_grid_dir": str(folders["a2"]),
                              "min_trades": 7, "include_exec2": False}


def test_build_names_the_option_of_a_missing_folder(isolated, tmp_path):
    isolated(tmp_path / "raw")
    result = CliRunner().invoke(app, ["production-candidates-build", "--b-grid-dir",
                                      str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert f"--b-grid-dir {tmp_path / 'nowhere'} is not a folder" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--as-of-tag", "1999-12-31"], "outside the candidate_rerun partitions (2000-01-01 to"),
    (["--as-of-tag", "2999-01-01"], "outside the candidate_rerun partitions (2000-01-01 to"),
    (["--as-of-tag", "latest"], "must be a date YYYY-MM-DD"),
    (["--override-input-file", "rows.parquet"], "--override-input-file is not supported"),
])
def test_rerun_refuses_what_it_cannot_run(isolated, tmp_path, args, message):
    isolated(tmp_path / "raw")
    result = CliRunner().invoke(app, ["candidate-rerun-run", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_as_of_partitions_run_from_2000_to_today():
    keys = AS_OF_DATES.get_partition_keys()
    assert keys[0] == "2000-01-01"
    assert keys[-1] == dg.DailyPartitionsDefinition(start_date="2000-01-01", end_offset=1
                                                    ).get_last_partition_key()
    assert keys[-1] > dg.DailyPartitionsDefinition(start_date="2000-01-01"
                                                   ).get_last_partition_key()


# --- end to end on a demo lake ----------------------------------------------------------------


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Iterator[Path]:
    yield from demo_lake(tmp_path_factory.mktemp("candidate_lake"), small=True)


def _check_evaluation(run_id: str) -> dg.AssetCheckEvaluation:
    inst = runner.instance(load_settings())
    records = inst.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    found = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    found = [e for e in found if e.asset_check_key == CHECK]
    assert len(found) == 1
    return found[0]


def _materialization(partition: str) -> dg.EventLogRecord:
    """The newest ``candidate_rerun`` materialization of ``partition``."""
    inst = runner.instance(load_settings())
    return inst.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("candidate_rerun"),
                              asset_partitions=[partition]), limit=1).records[0]


@pytest.mark.e2e
def test_rerun_partition_is_the_as_of_date_and_planted_drift_fails_the_check(
        lake, monkeypatch, tmp_path):
    mf = mf_runner(lake, monkeypatch)
    pack = mf("production-candidates-build", "--json")
    assert pack["sanity"] != "FAIL" and "CANDIDATE_ALPHA" in pack["selected_labels"]

    # default as-of: the last trade date of the ML dataset the locked models decode
    dataset = next((lake / "data" / "gold" / "datasets").rglob("dataset.parquet"))
    last = str(pl.scan_parquet(dataset).select(pl.col("trade_date").max()).collect().item())
    first = mf("candidate-rerun-run", "--json")
    assert first["as_of"] == last and first["pack_dir"] == pack["pack_dir"]
    record = _materialization(last)
    assert record.partition_key == last
    evaluation = _check_evaluation(record.run_id)
    assert evaluation.partition == last
    statuses = {k: c["drift_status"] for k, c in first["candidates"].items()}
    assert statuses == {"CANDIDATE_ALPHA": "OK"}  # unchanged lake, unchanged behaviour
    assert evaluation.passed and first["candidate_drift"] == "PASSED"

    # plant: the pack expected ten times the trades and a far higher expectancy
    planted = tmp_path / "planted_pack"
    shutil.copytree(pack["pack_dir"], planted)
    packet_path = planted / "production_policy_packet_v1.json"
    packet = json.loads(packet_path.read_text())
    snapshot = packet["candidates"]["CANDIDATE_ALPHA"]["expected_behavior_snapshot"]
    observed = first["candidates"]["CANDIDATE_ALPHA"]["observed_expectancy"]
    snapshot["best_expectancy"] = 10 * abs(observed) + 0.01
    snapshot["trade_count"] = 10 * snapshot["trade_count"]
    packet_path.write_text(json.dumps(packet))
    drifted = mf("candidate-rerun-run", "--pcp-pack-dir", str(planted), "--as-of-tag", last,
                 "--json")  # the run itself succeeds: the check is not blocking
    alpha = drifted["candidates"]["CANDIDATE_ALPHA"]
    assert alpha["drift_status"] == "DRIFT_FAIL" and drifted["overall_status"] == "DRIFT_FAIL"
    assert {"expectancy_drop", "trade_count_drop"} <= set(alpha["drift_flags"])
    assert drifted["candidate_drift"] == "FAILED (CANDIDATE_ALPHA)"
    assert _materialization(last).run_id != record.run_id
    evaluation = _check_evaluation(_materialization(last).run_id)
    assert not evaluation.passed and evaluation.partition == last
    text = evaluation.metadata["CANDIDATE_ALPHA"].value
    assert text.startswith("DRIFT_FAIL: ") and "expectancy_drop" in text
    assert "trade_count_drop" in text

    sane = mf("candidate-rerun-sanity", "--rerun-dir", drifted["output_dir"], "--json")
    assert not sane["errors"]
