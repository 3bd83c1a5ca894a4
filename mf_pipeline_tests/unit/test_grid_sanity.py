"""Grid sanity (§5.6 + ours) on REAL grid folders written by ``run_grid``: a multi-source grid
(flow + cluster, overlay ``block_veto``, execution profile ``lite``) passes; each corrupt copy
fires exactly the check it breaks."""

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from unittest import mock

import polars as pl
import pytest

from mf_pipeline.lib.grids.combos import GridDimensions
from mf_pipeline.lib.grids.run import GridOptions, GridSource, run_grid
from mf_pipeline.lib.grids.sanity import grid_sanity, non_finite_cells
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.lib.steps.backtest.options import backtest_options
from mf_pipeline.lib.steps.backtest.run import BacktestInputs
from mf_pipeline_tests.unit.test_grid_engine import _inputs

POLICY = {"policy_version": "v1", "per_state": [
    {"state_id": s, "class_label": c, "allow_direction_hint": "LONG_BIAS"}
    for s, c in ((0, "ALLOW"), (1, "ALLOW"), (2, "ALLOW"), (3, "WATCH"), (4, "BLOCK"))]}
DIMS = GridDimensions(hold_bars=(3, 10), fee_bps_per_side=(0.0, 10.0), include_watch=(False, True))


def _with_overlay(inputs: BacktestInputs, state: str) -> BacktestInputs:
    """The same bars' states read as a cluster overlay (every row matches)."""
    return replace(inputs, overlay_rows=inputs.rows.select(
        "ticker", "trade_date", cluster_id=pl.col(state)), overlay_policy=POLICY)


def _sources() -> list[GridSource]:
    flow = _inputs()
    cluster = replace(flow, rows=flow.rows.rename({"flow_state_code": "cluster_id"}),
                      input_type="cluster", cluster_policy=POLICY, identity={"case": "cluster"},
                      extra={"cluster_hardening_dir": "hardening"})  # fmt: skip
    return [GridSource(_with_overlay(flow, "flow_state_code")),
            GridSource(_with_overlay(cluster, "cluster_id"))]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = load_settings()
    base = backtest_options(settings, overlay_mode="block_veto", exec_profile="lite")
    return run_grid(settings, _sources(), DIMS, GridOptions(tag="sanity", base=base),
                    folder=tmp_path_factory.mktemp("grids") / "good").output_dir


@pytest.fixture
def copy(good: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(good, tmp_path / "copy"))


def _edit(folder: Path, name: str, change: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
    path = folder / name
    pl.read_parquet(path).pipe(change).write_parquet(path)


def _edit_summary(folder: Path, change: Callable[[dict], None]) -> None:
    path = folder / "grid_summary.json"
    summary = json.loads(path.read_text())
    change(summary)
    path.write_text(json.dumps(summary))


def _set(column: str, value, where: pl.Expr | None = None) -> Callable:
    """Set ``column`` to ``value`` on the rows of ``where`` (the first row by default)."""
    where = pl.int_range(pl.len()) == 0 if where is None else where

    def change(frame: pl.DataFrame) -> pl.DataFrame:
        dtype = frame.schema[column]
        return frame.with_columns(pl.when(where).then(pl.lit(value, dtype=dtype))
                                  .otherwise(pl.col(column)).alias(column))  # fmt: skip
    return change


def test_real_multi_source_grid_passes(good: Path) -> None:
    report = grid_sanity(good)
    assert (report["status"], report["errors"], report["warnings"]) == ("PASS", [], [])
    manifest = pl.read_parquet(good / "grid_manifest.parquet")
    # the checks had something to check: overlay and execution on every row, both sources,
    # WATCH trades (legitimate: include_watch true) in the cluster trades
    assert manifest["overlay_enabled"].all() and (manifest["execution_profile"] == "lite").all()
    assert sorted(manifest["source_type"].unique()) == ["cluster", "flow"]
    trades = pl.read_parquet(good / "grid_trades", hive_partitioning=True)
    assert (trades["entry_state_class"] == "WATCH").any()
    assert report["successful_combos"] == manifest.height == 16


def test_top10_lists_are_the_best_values(good: Path) -> None:
    report = grid_sanity(good)
    metrics = pl.read_parquet(good / "grid_metrics_table.parquet").to_dicts()
    for key, column in (("top10_expectancy", "expectancy"), ("top10_profit_factor",
                                                            "profit_factor")):
        expected = sorted((r for r in metrics if r[column] is not None),
                          key=lambda r: (-r[column], r["combo_index"], r["combo_id"]))[:10]
        assert report[key] == [{"combo_id": r["combo_id"], "source_type": r["source_type"],
                                "value": r[column]} for r in expected]  # fmt: skip


def test_flagged_inf_profit_factor_is_a_value_and_ranks_first(copy: Path) -> None:
    last = pl.int_range(pl.len()) == pl.len() - 1
    for name in ("grid_metrics_table.parquet", "grid_robustness_v2_table.parquet"):
        _edit(copy, name, lambda f: f.pipe(_set("profit_factor", math.inf, last))
              .pipe(_set("profit_factor_inf", True, last)))  # fmt: skip
    report = grid_sanity(copy)
    assert report["status"] == "PASS", report["errors"]
    last_id = pl.read_parquet(copy / "grid_metrics_table.parquet")["combo_id"][-1]
    assert report["top10_profit_factor"][0] == {
        "combo_id": last_id, "source_type": "flow", "value": math.inf}
    # the same +inf without its flag is a non-finite cell (one per table)
    for name in ("grid_metrics_table.parquet", "grid_robustness_v2_table.parquet"):
        _edit(copy, name, _set("profit_factor_inf", False, last))
    report = grid_sanity(copy)
    assert report["errors"] == ["non_finite_metrics_cells"]
    assert report["details"]["non_finite_metrics_cells"] == 2


def test_non_finite_cells_counts_nan_and_inf_but_not_null() -> None:
    table = pl.DataFrame({"a": [1.0, float("nan"), None, -math.inf],
                          "profit_factor": [math.inf, math.inf, None, 1.0],
                          "profit_factor_inf": [True, False, None, False],
                          "n": [1, 2, 3, 4]})  # fmt: skip
    assert non_finite_cells(table) == 3  # NaN, -inf, the unflagged +inf


def test_missing_required_file(copy: Path) -> None:
    (copy / "grid_robustness_v2_table.parquet").unlink()
    report = grid_sanity(copy)
    assert (report["status"], report["errors"]) == (
        "FAIL", ["missing_artifact:grid_robustness_v2_table.parquet"])


def test_empty_manifest(copy: Path) -> None:
    _edit(copy, "grid_manifest.parquet", lambda f: f.clear())
    assert "empty_manifest" in grid_sanity(copy)["errors"]


def test_duplicate_combo_id(copy: Path) -> None:
    _edit(copy, "grid_manifest.parquet", lambda f: pl.concat([f, f.head(1)]))
    report = grid_sanity(copy)
    assert report["errors"] == ["duplicate_combo_id", "status_count_mismatch"]
    assert report["details"]["duplicate_combo_id"] == 1
    assert report["details"]["status_count_mismatch"]["total_combos"] == {
        "summary": 16, "manifest": 17}


def test_status_count_mismatch(copy: Path) -> None:
    _edit_summary(copy, lambda s: s.update(successful_combos=15, failed_combos=1))
    report = grid_sanity(copy)
    assert report["errors"] == ["status_count_mismatch"]
    assert set(report["details"]["status_count_mismatch"]) == {"successful_combos",
                                                               "failed_combos"}


def test_non_finite_metric_cell(copy: Path) -> None:
    _edit(copy, "grid_metrics_table.parquet", _set("ret_cv", float("nan")))
    report = grid_sanity(copy)
    assert report["errors"] == ["non_finite_metrics_cells"]
    assert report["details"]["non_finite_metrics_cells"] == 1


def test_invalid_robustness_only_for_combos_that_traded(copy: Path) -> None:
    _edit(copy, "grid_metrics_table.parquet", _set("robustness_score_v2", None))
    report = grid_sanity(copy)
    assert report["errors"] == ["invalid_robustness_v2_for_non_zero_trades"]
    # the same null on a zero-trade combo is fine (only the zero-trade count then differs)
    _edit(copy, "grid_metrics_table.parquet", _set("is_zero_trade_combo", True))
    report = grid_sanity(copy)
    assert (report["errors"], report["warnings"]) == ([], ["zero_trade_combo_count_mismatch"])


def test_overlay_rows(copy: Path) -> None:
    flow = pl.col("source_type") == "flow"
    first_two = pl.int_range(pl.len()) < 2
    _edit(copy, "grid_manifest.parquet", lambda f: f
          .pipe(_set("overlay_match_rate", 1.2))
          .pipe(_set("overlay_unknown_rate", None, flow))
          .pipe(_set("overlay_coverage_mode", "strict_fail", first_two))
          .pipe(_set("overlay_coverage_status", "FAIL_LOW_MATCH", first_two)))  # fmt: skip
    report = grid_sanity(copy)
    assert report["errors"] == ["overlay_match_rate_missing_or_out_of_range",
                                "overlay_unknown_rate_missing_or_out_of_range",
                                "overlay_strict_fail_verdict_present:2"]
    assert report["details"]["overlay_unknown_rate_missing_or_out_of_range"] == 8


def test_overlay_veto_share_may_be_null_only_without_candidates(copy: Path) -> None:
    zero = pl.int_range(pl.len()) == 0
    _edit(copy, "grid_manifest.parquet", lambda f: f
          .pipe(_set("overlay_vetoed_signal_share", None))
          .pipe(_set("overlay_vetoed_signal_count", 0, zero))
          .pipe(_set("overlay_passed_signal_count", 0, zero)))  # fmt: skip
    assert grid_sanity(copy)["errors"] == []
    _edit(copy, "grid_manifest.parquet", _set("overlay_passed_signal_count", 3))
    assert grid_sanity(copy)["errors"] == ["overlay_vetoed_signal_share_missing_or_out_of_range"]


def test_execution_rows(copy: Path) -> None:
    row = pl.int_range(pl.len())
    _edit(copy, "grid_manifest.parquet", lambda f: f
          .with_columns(pl.when(row == 0).then(pl.col("exec_suppressed_signal_count") + 1)
                        .otherwise(pl.col("exec_suppressed_signal_count")))
          .with_columns(pl.when(row == 1).then(pl.col("exec_candidate_signals_before_filters")
                                               + 1)
                        .otherwise(pl.col("exec_candidate_signals_after_filters"))
                        .alias("exec_candidate_signals_after_filters"))
          .with_columns(pl.when(row == 2).then(pl.col("exec_suppressed_signal_count") + 1)
                        .otherwise(pl.col("exec_suppressed_by_price_count"))
                        .alias("exec_suppressed_by_price_count"))
          .pipe(_set("exec_suppressed_by_vol_share", 1.5, row == 3))
          .pipe(_set("exec_suppressed_by_warmup_count", -1, row == 4)))  # fmt: skip
    report = grid_sanity(copy)
    assert report["errors"] == [
        "exec_suppressed_by_vol_share_missing_or_out_of_range",
        "exec_suppressed_by_warmup_count_invalid",
        "exec_candidates_after_exceed_before",
        "exec_suppressed_count_mismatch",
        "exec_by_reason_count_sum_exceeds_suppressed",
    ]
    assert report["details"]["exec_suppressed_count_mismatch"] == 2  # rows 0 and 1


def test_execution_columns_missing(copy: Path) -> None:
    _edit(copy, "grid_manifest.parquet", lambda f: f.drop("exec_suppressed_by_vol_count"))
    assert grid_sanity(copy)["errors"] == [
        "execution_missing_columns:exec_suppressed_by_vol_count"]


def test_missing_cluster_policy_trade_mix(copy: Path) -> None:
    (copy / "cluster_policy_trade_mix.csv").unlink()
    assert grid_sanity(copy)["errors"] == ["missing_cluster_policy_trade_mix"]


def _cluster_trades(folder: Path) -> Path:
    return folder / "grid_trades" / "source_type=cluster" / "trades.parquet"


def test_cluster_allow_only_violations_warn(copy: Path) -> None:
    manifest = pl.read_parquet(copy / "grid_manifest.parquet")
    no_watch = manifest.filter(pl.col("source_type") == "cluster", ~pl.col("include_watch"))
    combo = no_watch["combo_id"][0]
    path = _cluster_trades(copy)
    trades = pl.read_parquet(path)
    three = (pl.col("combo_id") == combo) & (pl.int_range(pl.len()).over("combo_id") < 3)
    trades.pipe(_set("entry_state_class", "WATCH", three)).write_parquet(path)
    report = grid_sanity(copy)
    assert (report["status"], report["warnings"]) == ("PASS", ["cluster_allow_only_violations:3"])


def test_trades_dataset_count_per_combo(copy: Path) -> None:
    path = copy / "grid_trades" / "source_type=flow" / "trades.parquet"
    trades = pl.read_parquet(path)
    combo = trades["combo_id"][0]
    trades.slice(1).write_parquet(path)
    report = grid_sanity(copy)
    assert report["errors"] == ["grid_trades_count_mismatch"]
    [row] = report["details"]["grid_trades_count_mismatch"]
    assert (row["combo_id"], row["trades"]) == (combo, row["expected"] - 1)


def test_period_returns_of_unknown_combo(copy: Path) -> None:
    _edit(copy, "grid_period_returns.parquet",
          lambda f: pl.concat([f, f.head(1).with_columns(combo_id=pl.lit("feedfacefeedface"))]))
    report = grid_sanity(copy)
    assert report["errors"] == ["period_returns_unknown_combos"]
    assert report["details"]["period_returns_unknown_combos"] == [
        {"source_type": "cluster", "combo_id": "feedfacefeedface"}]


def test_overfitting_block(copy: Path) -> None:
    _edit_summary(copy, lambda s: s["overfitting"]["flow"].update(dsr=1.5, fluke_risk="MAYBE"))
    assert grid_sanity(copy)["errors"] == ["overfitting_out_of_range:flow.dsr",
                                           "overfitting_invalid_fluke_risk:flow"]
    _edit_summary(copy, lambda s: s["overfitting"].pop("cluster"))
    assert "overfitting_missing_source:cluster" in grid_sanity(copy)["errors"]
    _edit_summary(copy, lambda s: s.pop("overfitting"))
    assert grid_sanity(copy)["errors"] == ["missing_overfitting_summary"]


def test_summary_warnings(copy: Path) -> None:
    _edit_summary(copy, lambda s: s.update(realism_profile_broken_for_universe=True,
                                           zero_trade_combos=5))
    cluster = pl.col("source_type") == "cluster"
    _edit(copy, "grid_manifest.parquet", _set("status", "SKIPPED", cluster))
    report = grid_sanity(copy)
    assert report["warnings"] == ["source_no_success:cluster", "zero_trade_combo_count_mismatch",
                                  "realism_profile_broken_for_universe"]


def test_linked_backtest_runs(tmp_path: Path, isolated) -> None:
    """With ``write_combo_runs`` each combo links a run folder: a missing one is an error, and
    an overlay run must keep its coverage verdict and join summary."""
    settings = isolated(tmp_path / "raw")
    base = backtest_options(settings, overlay_mode="block_veto")
    folder = run_grid(settings, _sources()[:1], GridDimensions(hold_bars=(3, 10)),
                      GridOptions(base=base, write_combo_runs=True),
                      folder=tmp_path / "linked").output_dir  # fmt: skip
    assert grid_sanity(folder)["errors"] == []
    runs = pl.read_parquet(folder / "grid_manifest.parquet")["backtest_run_dir"].to_list()
    assert all(Path(r).is_dir() for r in runs) and len(runs) == 6  # default fees 0, 5, 10
    (Path(runs[1]) / "overlay_join_summary.json").unlink()
    assert grid_sanity(folder)["errors"] == ["overlay_run_artifacts_missing"]
    shutil.rmtree(runs[0])
    report = grid_sanity(folder)
    assert report["errors"] == ["missing_linked_backtest_runs", "overlay_run_artifacts_missing"]
    assert report["details"]["missing_linked_backtest_runs"] == [runs[0]]


def test_grid_whose_combos_all_failed(tmp_path: Path) -> None:
    """No SUCCESS row, no trades dataset, a manifest without metric columns: consistent, so
    it passes (the multi-scope warning is the place for sources without a success)."""

    def boom(*_args, **_kwargs):
        raise RuntimeError("boom")

    with mock.patch("mf_pipeline.lib.grids.run.simulate_batch", boom):
        folder = run_grid(load_settings(), _sources()[:1], GridDimensions(hold_bars=(3,)),
                          GridOptions(), folder=tmp_path / "failed").output_dir
    assert not (folder / "grid_trades").exists()
    report = grid_sanity(folder)
    assert (report["status"], report["errors"], report["top10_expectancy"]) == ("PASS", [], [])
    assert (report["manifest_rows"], report["successful_combos"]) == (3, 0)
