"""The backtest commands end to end on a real `mf demo` lake: the demo's own assets write
every input (model runs, validations, policies, the split backtests); the tests run each old
command against what they wrote, with every input type, overlay mode and execution profile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from mf_pipeline_tests.e2e.demo_cli import asset_record, demo_lake, mf_runner

pytestmark = pytest.mark.e2e

RUN_FILES = ("backtest_run_config.json", "backtest_summary.json", "trades.parquet", "trades.csv",
             "summary_by_state.parquet", "summary_by_state.csv", "summary_by_symbol.parquet",
             "summary_by_symbol.csv", "signal_diagnostics.json",
             "state_policy_join_summary.json", "backtest_report.md")  # fmt: skip
OVERLAY_FILES = ("overlay_join_summary.json", "overlay_coverage_verdict.json",
                 "overlay_join_coverage_by_year.csv", "overlay_policy_mix_on_primary.csv",
                 "overlay_signal_effect_summary.json", "overlay_performance_breakdown.csv")
EXEC_FILES = ("execution_filter_summary.json", "execution_filter_by_reason.csv",
              "execution_filter_by_year.csv", "execution_trade_context_summary.json")
SAMPLE_END_YEARS = ("2021-12-31", "2023-12-31")


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Iterator[Path]:
    yield from demo_lake(tmp_path_factory.mktemp("backtest_lake"))


@pytest.fixture
def mf(lake: Path, monkeypatch):
    return mf_runner(lake, monkeypatch)


def _inputs(lake: Path) -> dict[str, str]:
    """The files the demo's model and policy assets wrote (the backtest-run inputs)."""
    hmm = Path(asset_record(lake, "hmm_model")["output_dir"])
    cluster = Path(asset_record(lake, "cluster_model")["output_dir"])
    return {"decoded": str(hmm / "decoded_rows.parquet"),
            "clustered": str(cluster / "clustered_dataset_full.parquet"),
            "val_hmm": asset_record(lake, "state_validation_hmm")["output_dir"],
            "policy": asset_record(lake, "state_policy_cluster")["output_dir"]}


def _summary(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "backtest_summary.json").read_text())


@pytest.mark.parametrize("source", ["flow", "hmm", "cluster"])
def test_demo_backtests_every_source_on_its_split(lake: Path, mf, source: str) -> None:
    record = asset_record(lake, f"backtest_{source}")
    folder = Path(record["output_dir"])
    assert all((folder / name).is_file() for name in RUN_FILES)
    summary = _summary(folder)
    trades = pl.read_parquet(folder / "trades.parquet")
    assert summary["headline"]["trade_count"] == trades.height == record["trade_count"] > 0
    assert summary["in_sample"] is True  # `full`: the models were fitted on these rows
    expected = {"flow": "flow_default", "hmm": "train_scorecard",
                "cluster": "cluster_hardening_policy"}
    assert summary["mapping_source"] == expected[source]
    assert summary["split"]["price_source"] == "silver"
    # fills at the next bar's open: every entry is one bar after its signal
    assert (trades["entry_date"] > trades["entry_signal_date"]).all()
    if source == "cluster":  # allow_only: every trade entered in an ALLOW state
        assert set(trades["entry_state_class"].unique()) == {"ALLOW"}
    sanity = mf("backtest-sanity", "--run-dir", str(folder), "--json")
    assert sanity["status"] == "PASS" and sanity["errors"] == []


def test_backtest_run_on_files_of_every_input_type(lake: Path, mf) -> None:
    i = _inputs(lake)
    flow = mf("backtest-run", "--input-type", "flow", "--input-file", i["decoded"], "--json")
    hmm = mf("backtest-run", "--input-type", "hmm", "--input-file", i["decoded"],
             "--validation-run-dir", i["val_hmm"], "--json")
    cluster = mf("backtest-run", "--input-type", "cluster", "--input-file", i["clustered"],
                 "--cluster-hardening-dir", i["policy"], "--json")
    assert hmm["mapping_source"] == "validation_scorecard"
    for out in (flow, hmm, cluster):
        assert out["trade_count"] > 0
        assert all((Path(out["output_dir"]) / n).is_file() for n in RUN_FILES)
    again = mf("backtest-run", "--input-type", "flow", "--input-file", i["decoded"], "--json")
    assert again["run_id"] == flow["run_id"]  # the id is derived from inputs and options
    smap = Path(flow["output_dir"]).parent / "state_map.json"
    smap.write_text(json.dumps({"mapping": {"0": "LONG_BIAS"}}))
    mapped = mf("backtest-run", "--input-type", "hmm", "--input-file", i["decoded"],
                "--state-map-file", str(smap), "--hmm-state-col", "hmm_state", "--json")
    trades = pl.read_parquet(Path(mapped["output_dir"]) / "trades.parquet")
    assert mapped["mapping_source"] == "state_map" and mapped["in_sample"] is True
    assert set(trades["entry_state_id"].unique()) == {0} and set(trades["side"]) == {"LONG"}
    compare = mf("backtest-compare", "--run-dir", flow["output_dir"], "--run-dir",
                 hmm["output_dir"], "--json")
    table = pl.read_csv(Path(compare["output_dir"]) / "backtest_compare_table.csv")
    assert table["trade_count"].to_list() == [flow["trade_count"], hmm["trade_count"]]


def test_overlay_modes_gate_signals_and_write_their_artifacts(lake: Path, mf) -> None:
    i = _inputs(lake)
    common = ("backtest-run", "--input-type", "flow", "--input-file", i["decoded"],
              "--overlay-cluster-file", i["clustered"], "--overlay-cluster-hardening-dir",
              i["policy"])
    counts = {}
    for mode in ("none", "allow_only", "allow_watch", "allow_or_unknown", "block_veto"):
        out = mf(*common, "--overlay-mode", mode, "--json")
        folder = Path(out["output_dir"])
        assert all((folder / n).is_file() for n in OVERLAY_FILES), mode
        effect = json.loads((folder / "overlay_signal_effect_summary.json").read_text())
        counts[mode] = effect["candidate_signals_after_overlay"]
        trades = pl.read_parquet(folder / "trades.parquet")
        if mode == "allow_only":
            assert set(trades["entry_overlay_policy_class"].unique()) <= {"ALLOW"}
    assert counts["allow_only"] <= counts["allow_watch"] <= counts["none"]
    assert counts["allow_only"] <= counts["allow_or_unknown"] <= counts["none"]
    assert counts["block_veto"] <= counts["none"]
    strict = mf(*common, "--overlay-mode", "allow_only", "--overlay-coverage-mode",
                "strict_fail", "--overlay-min-match-rate-fail", "0.999", code=1)
    assert "overlay_coverage_strict_fail" in strict


def test_execution_profiles_suppress_signals_from_data_known_at_the_signal(lake: Path,
                                                                          mf) -> None:
    i = _inputs(lake)
    rates = {}
    for profile in ("none", "lite", "strict"):
        out = mf("backtest-run", "--input-type", "flow", "--input-file", i["decoded"],
                 "--exec-profile", profile, "--json")
        folder = Path(out["output_dir"])
        block = _summary(folder)["execution"]
        rates[profile] = block["exec_eligibility_rate"]
        assert all((folder / n).is_file() for n in EXEC_FILES) == (profile != "none")
    assert rates["none"] == 1.0 and rates["strict"] <= rates["lite"] < 1.0


def test_walk_forward_backtest_trades_each_split_out_of_sample(lake: Path, mf) -> None:
    wf = mf("validation-wf-run", "--train-end-list", ",".join(SAMPLE_END_YEARS),
            "--bootstrap-n", "100", "--cluster-method", "kmeans", "--json")
    out = mf("backtest-wf-run", "--wf-run-dir", wf["wf_run_dir"], "--json")
    assert out["splits_successful"] == 2 and out["splits_failed"] == 0
    folder = Path(out["wf_bt_dir"])
    for name in ("wf_backtest_manifest.json", "wf_backtest_by_split.csv",
                 "wf_backtest_model_summary.csv", "wf_overlay_split_summary.csv",
                 "wf_backtest_aggregate_summary.json", "wf_backtest_report.md"):
        assert (folder / name).is_file(), name
    by_split = pl.read_csv(folder / "wf_backtest_by_split.csv")
    assert by_split.height == 6 and set(by_split["status"]) == {"SUCCESS"}
    first = json.loads((folder / "wf_backtest_manifest.json").read_text())["splits"][0]
    hmm = _summary(first["runs"]["hmm"]["run_dir"])
    trades = pl.read_parquet(Path(first["runs"]["hmm"]["run_dir"]) / "trades.parquet")
    assert hmm["in_sample"] is False and hmm["mapping_source"] == "train_scorecard"
    cluster = _summary(first["runs"]["cluster"]["run_dir"])  # policy judged on train rows
    assert cluster["in_sample"] is False and cluster["policy_judged_on"] == "train_rows"
    train_policy = Path(cluster["identity"]["policy_file"])
    validated = json.loads((train_policy.parents[1] / "run_summary.json").read_text())
    assert validated["bounds"]["max_trade_date"] <= SAMPLE_END_YEARS[0]
    # traded only after the train end and the embargo, up to the next train end
    assert trades["entry_signal_date"].min() > pl.Series([SAMPLE_END_YEARS[0]]).str.to_date()[0]
    assert trades["exit_date"].max() <= pl.Series([SAMPLE_END_YEARS[1]]).str.to_date()[0]
    gated = mf("backtest-wf-run", "--wf-run-dir", wf["wf_run_dir"], "--overlay-mode",
               "allow_only", "--json")
    assert gated["wf_bt_dir"] != out["wf_bt_dir"] and gated["splits_successful"] == 2
    gated_dir = Path(gated["wf_bt_dir"])
    overlay = pl.read_csv(gated_dir / "wf_overlay_split_summary.csv")
    assert overlay["overlay_enabled"].all() and set(overlay["overlay_mode"]) == {"allow_only"}
    split = json.loads((gated_dir / "wf_backtest_manifest.json").read_text())["splits"][0]
    gated_trades = pl.read_parquet(Path(split["runs"]["hmm"]["run_dir"]) / "trades.parquet")
    assert set(gated_trades["entry_overlay_policy_class"].unique()) <= {"ALLOW"}
    assert gated_trades.height <= trades.height
