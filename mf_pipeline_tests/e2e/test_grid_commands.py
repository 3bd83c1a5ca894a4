"""Grids, calibration and the decision reports end to end on a real `mf demo` lake (issue #21
acceptance): the demo's assets write every input; each command runs against what they wrote
and must leave the artifacts the spec names, plus the HTML reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from mf_pipeline_tests.e2e.demo_cli import asset_record, demo_lake, mf_runner

pytestmark = pytest.mark.e2e

GRID_FILES = (
    "grid_manifest.parquet", "grid_manifest.csv", "grid_metrics_table.parquet",
    "grid_metrics_table.csv", "grid_robustness_v2_table.parquet", "grid_robustness_v2_table.csv",
    "grid_period_returns.parquet", "grid_failures.json", "grid_summary.json",
    "grid_run_config.json", "grid_best_configs.json", "grid_dimension_sensitivity.parquet",
    "grid_dimension_sensitivity.csv", "grid_cost_fragility.csv", "grid_holdbars_profile.csv",
    "grid_holdbars_shape.csv", "grid_source_summary.csv", "grid_report.md", "grid_report.html")
CLUSTER_FILES = ("cluster_policy_trade_mix.csv", "cluster_state_edge_profile.csv")
WF_FILES = (
    "wf_grid_by_split.parquet", "wf_grid_by_split.csv", "wf_grid_manifest.json",
    "wf_grid_failures.json", "wf_grid_summary.json", "wf_grid_config_aggregate.csv",
    "wf_grid_source_summary.csv", "wf_grid_source_dimension_summary.csv",
    "wf_grid_config_consistency.csv", "wf_grid_winner_stability.csv",
    "wf_grid_cost_fragility_summary.csv", "wf_grid_tail_risk_summary.csv",
    "wf_overlay_split_summary.csv", "wf_overlay_source_summary.csv",
    "wf_overlay_effectiveness_summary.csv", "wf_grid_report.md", "wf_grid_report.html")
CALIBRATION_FILES = (
    "execution_calibration_distribution.csv", "execution_calibration_distribution_by_year.csv",
    "execution_calibration_waterfall.json", "execution_calibration_reason_overlap.csv",
    "execution_calibration_first_fail.csv", "execution_calibration_units.json",
    "execution_calibration_grid.csv", "execution_calibration_grid_summary.json",
    "execution_calibration_recommendations.json", "execution_calibration_summary.json",
    "execution_calibration_report.md", "execution_calibration_report.html")
SAMPLE_END_YEARS = ("2021-12-31", "2023-12-31")


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Iterator[Path]:
    yield from demo_lake(tmp_path_factory.mktemp("grid_lake"))


@pytest.fixture
def mf(lake: Path, monkeypatch):
    return mf_runner(lake, monkeypatch)


def _files(lake: Path) -> dict[str, str]:
    hmm = Path(asset_record(lake, "hmm_model")["output_dir"])
    cluster = Path(asset_record(lake, "cluster_model")["output_dir"])
    return {"decoded": str(hmm / "decoded_rows.parquet"),
            "clustered": str(cluster / "clustered_dataset_full.parquet"),
            "val_hmm": asset_record(lake, "state_validation_hmm")["output_dir"],
            "policy": asset_record(lake, "state_policy_cluster")["output_dir"]}


def _has(folder: str | Path, names: tuple[str, ...]) -> None:
    missing = [n for n in names if not (Path(folder) / n).is_file()]
    assert not missing, missing


def _summary(folder: str | Path, name: str = "grid_summary.json") -> dict:
    return json.loads((Path(folder) / name).read_text())


def _self_contained(html: Path) -> None:
    text = html.read_text()
    assert "<script src=" not in text and text.count("Plotly.newPlot") >= 1


def test_demo_multi_source_grid_and_calibration_on_full(lake: Path, mf) -> None:
    record = asset_record(lake, "backtest_grid")
    folder = Path(record["output_dir"])
    _has(folder, GRID_FILES + CLUSTER_FILES)
    summary = _summary(folder)
    assert summary["scope"] == "multi-cluster-flow-hmm" and summary["in_sample"] is True
    assert summary["successful_combos"] == summary["total_combos"] == 36  # 12 per source
    for source in ("flow", "hmm", "cluster"):
        block = summary["overfitting"][source]
        assert block["n_trials"] == 12 and 0.0 <= block["dsr"] <= 1.0
        assert record[f"{source}_fluke_risk"] == block["fluke_risk"]
    trades = pl.read_parquet(folder / "grid_trades", hive_partitioning=True)
    assert set(trades["source_type"]) == {"flow", "hmm", "cluster"}
    metrics = pl.read_parquet(folder / "grid_metrics_table.parquet")
    assert trades.height == metrics["trade_count"].sum()
    _self_contained(folder / "grid_report.html")
    sanity = mf("backtest-grid-sanity", "--grid-run-dir", str(folder), "--json")
    assert sanity["status"] == "PASS", sanity["errors"]
    calib = Path(asset_record(lake, "execution_calibration")["output_dir"])
    _has(calib, CALIBRATION_FILES)


def test_single_source_file_grid_combo_equals_its_backtest_run(lake: Path, mf) -> None:
    f = _files(lake)
    out = mf("backtest-grid-run", "--input-type", "hmm", "--input-file", f["decoded"],
             "--validation-run-dir", f["val_hmm"], "--hold-bars-grid", "5,10",
             "--fee-bps-grid", "0,10", "--json")
    assert out["scope"] == "single-hmm" and out["successful_combos"] == 4
    _has(out["output_dir"], GRID_FILES)
    row = pl.read_parquet(Path(out["output_dir"]) / "grid_metrics_table.parquet") \
        .filter(hold_bars=10, fee_bps_per_side=10.0).row(0, named=True)  # fmt: skip
    single = mf("backtest-run", "--input-type", "hmm", "--input-file", f["decoded"],
                "--validation-run-dir", f["val_hmm"], "--hold-bars", "10",
                "--fee-bps-per-side", "10", "--json")
    for key in ("trade_count", "win_rate", "avg_return", "expectancy"):
        assert row[key] == pytest.approx(single[key], rel=1e-12), key


def test_multi_source_file_grid_compare_and_sanity(lake: Path, mf) -> None:
    f = _files(lake)
    multi = mf("backtest-grid-run", "--multi-source", "--flow-input-file", f["decoded"],
               "--cluster-input-file", f["clustered"], "--cluster-hardening-dir", f["policy"],
               "--hold-bars-grid", "5,10", "--json")
    assert multi["scope"] == "multi-cluster-flow"
    _has(multi["output_dir"], GRID_FILES + CLUSTER_FILES)
    assert mf("backtest-grid-sanity", "--grid-run-dir", multi["output_dir"],
              "--json")["status"] == "PASS"
    demo_grid = asset_record(lake, "backtest_grid")["output_dir"]
    out = mf("backtest-grid-compare", "--grid-run-dir", demo_grid, "--grid-run-dir",
             multi["output_dir"], "--metric", "robustness_score_v2", "--json")
    folder = Path(out["output_dir"])
    _has(folder, ("grid_compare_table.csv", "grid_compare_overlap.csv",
                  "grid_compare_summary.json", "grid_compare_report.md",
                  "grid_compare_report.html"))
    table = pl.read_csv(folder / "grid_compare_table.csv")
    assert table.height == 2 and {"best_dsr", "best_pbo", "overlay_verdict"} <= set(table.columns)
    # a rerun of the same comparison converges to the same folder
    again = mf("backtest-grid-compare", "--grid-run-dir", multi["output_dir"],
               "--grid-run-dir", demo_grid, "--metric", "robustness_score_v2", "--json")
    assert again["output_dir"] == out["output_dir"]


def test_walk_forward_grid_over_the_splits(lake: Path, mf) -> None:
    wf = mf("validation-wf-run", "--train-end-list", ",".join(SAMPLE_END_YEARS),
            "--bootstrap-n", "100", "--cluster-method", "kmeans", "--json")
    out = mf("backtest-grid-wf-run", "--wf-run-dir", wf["wf_run_dir"], "--hold-bars-grid",
             "5,10,20", "--json")
    assert out["splits_successful"] == 2 and out["splits_failed"] == 0
    folder = Path(out["wf_grid_dir"])
    _has(folder, WF_FILES)
    by_split = pl.read_csv(folder / "wf_grid_by_split.csv")
    assert by_split["status"].to_list() == ["SUCCESS", "SUCCESS"]
    assert by_split["dsr"].is_not_null().all()
    for end in SAMPLE_END_YEARS:
        split = folder / "splits" / end
        _has(split, GRID_FILES)
        assert _summary(split)["in_sample"] is False  # traded after the train end
    _self_contained(folder / "wf_grid_report.html")


def test_calibration_of_a_file_and_its_report(lake: Path, mf) -> None:
    f = _files(lake)
    out = mf("execution-realism-calibrate", "--source-file", f["decoded"],
             "--validation-run-dir", f["val_hmm"], "--exec-profile", "lite", "--no-by-year",
             "--json")
    folder = Path(out["output_dir"])
    _has(folder, tuple(n for n in CALIBRATION_FILES if "by_year" not in n))
    assert not (folder / "execution_calibration_distribution_by_year.csv").exists()  # fault 28
    recs = json.loads((folder / "execution_calibration_recommendations.json").read_text())
    assert {"lite", "strict"} <= set(recs)
    report = mf("execution-realism-calibration-report", "--json")
    assert report["calibration_dir"] == str(folder)  # newest by recorded finish time


def test_realism_and_hybrid_reports_discover_their_grids(lake: Path, mf) -> None:
    for extra in ((), ("--exec-profile", "lite"), ("--exec-profile", "strict"),
                  ("--exec-profile", "lite", "--overlay-mode", "allow_only"),
                  ("--exec-profile", "lite", "--overlay-mode", "block_veto"),
                  ("--overlay-mode", "allow_only"), ("--overlay-mode", "block_veto")):
        mf("backtest-grid-run", "--sources", "hmm", "--hold-bars-grid", "5,10", *extra,
           "--json")
    realism = mf("execution-realism-report", "--json")
    folder = Path(realism["output_dir"])
    _has(folder, ("execution_realism_summary.json", "execution_realism_table.csv",
                  "execution_realism_wf_table.csv", "execution_realism_report.md",
                  "execution_realism_report.html"))
    found = {k for k, how in realism["inputs"].items() if how == "discovered"}
    assert {"hmm_none", "hmm_lite", "hmm_strict", "hmm_overlay_allow_lite",
            "hmm_overlay_block_lite"} <= found
    hybrid = mf("hybrid-eval-report", "--json")
    folder = Path(hybrid["output_dir"])
    _has(folder, ("hybrid_eval_summary.json", "hybrid_eval_table.csv", "hybrid_eval_wf_table.csv",
                  "hybrid_eval_report.md", "hybrid_eval_report.html"))
    table = pl.read_csv(folder / "hybrid_eval_table.csv")
    assert {"dsr", "pbo", "recommendation_label"} <= set(table.columns)
