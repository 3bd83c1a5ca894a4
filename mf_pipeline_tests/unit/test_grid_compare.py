"""Grid compare (§5.7 with fixes 13-15): verdict rules and their boundaries on hand-made rows,
the nulls-last best row and baseline, drawdown closest to 0, top-10 overlap counts, and the
compare of real grid folders checked against their own tables."""

import json
from pathlib import Path

import polars as pl
import pytest

from mf_pipeline.lib.grids.combos import GridDimensions
from mf_pipeline.lib.grids.compare import (
    check_metrics,
    compare_grids,
    compare_table,
    overlap_table,
    ranked,
    top_signatures,
)
from mf_pipeline.lib.grids.run import GridOptions, GridSource, run_grid
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.lib.steps.backtest.options import backtest_options
from mf_pipeline_tests.unit.test_grid_engine import _inputs

BASE = {"expectancy_mean": 0.0, "profit_factor_mean": 0.0, "robustness_v2_mean": 0.0,
        "ret_cv_median": 0.0, "exec_eligibility_rate_mean": 0.0,
        "exec_suppressed_signal_share_mean": 0.0, "best_trade_count": 10}  # fmt: skip


def _rows(*others: dict) -> list[dict]:
    """A baseline with every mean 0 (so a row's delta is exactly its own value) and rows of
    lower best robustness, listed BEFORE the baseline to show the table is re-sorted."""
    rows = [{**BASE, **o, "grid_run_dir": f"/g/{i}", "grid_run_id": f"g{i}",
             "best_robustness_score_v2": o.get("best_robustness_score_v2", 10.0)}
            for i, o in enumerate(others, start=1)]  # fmt: skip
    return [*rows, {**BASE, "grid_run_dir": "/g/0", "grid_run_id": "g0",
                    "best_robustness_score_v2": 90.0}]  # fmt: skip


def _verdicts(*others: dict) -> dict[str, tuple[str, str]]:
    table = compare_table(_rows(*others), "expectancy")
    return {r: (o, v) for r, o, v in table.select("grid_run_id", "overlay_verdict",
                                                  "realism_verdict").rows()}  # fmt: skip


def test_table_is_sorted_by_best_robustness_and_deltas_are_against_the_first_row() -> None:
    rows = _rows({"expectancy_mean": 0.25, "best_robustness_score_v2": 40.0},
                 {"expectancy_mean": -0.5, "best_robustness_score_v2": None},
                 {"expectancy_mean": 1.0, "best_robustness_score_v2": 40.0})
    # the baseline's mean is 2 here: deltas must be taken against it, not against 0
    rows[-1]["expectancy_mean"] = 2.0
    table = compare_table(rows, "expectancy")
    # nulls last (fault 15); equal robustness ordered by grid_run_dir (/g/1 before /g/3)
    assert table["grid_run_id"].to_list() == ["g0", "g1", "g3", "g2"]
    assert table["delta_expectancy_vs_top"].to_list() == [0.0, -1.75, -1.0, -2.5]
    assert table["primary_metric"].unique().to_list() == ["expectancy"]


def test_overlay_verdicts() -> None:
    got = _verdicts(
        {"expectancy_mean": 0.01, "profit_factor_mean": 0.1},                     # g1
        {"expectancy_mean": 0.01, "profit_factor_mean": 0.1, "ret_cv_median": 0.5},  # g2
        {"expectancy_mean": 0.01, "profit_factor_mean": 0.1,
         "robustness_v2_mean": -0.5},                                             # g3
        {"expectancy_mean": 0.0, "profit_factor_mean": 0.0},                      # g4
        {"expectancy_mean": -0.01, "profit_factor_mean": 0.1},                    # g5
        {"expectancy_mean": 0.01, "profit_factor_mean": None},                    # g6
    )
    assert {k: o for k, (o, _) in got.items()} == {
        "g0": "NEUTRAL",   # the baseline itself
        "g1": "HELPFUL",   # better expectancy and PF, robustness and ret_cv not worse
        "g2": "NEUTRAL",   # ret_cv got worse: not HELPFUL, but exp and PF did not fall
        "g3": "NEUTRAL",   # robustness fell
        "g4": "NEUTRAL",   # equal is not better
        "g5": "HARMFUL",   # expectancy fell
        "g6": "HARMFUL",   # a null delta fails its comparison
    }


def test_baseline_is_neutral_even_with_null_means() -> None:
    rows = _rows({"expectancy_mean": 0.01, "profit_factor_mean": 0.1})
    rows[-1]["expectancy_mean"] = None
    table = compare_table(rows, "expectancy")
    assert table["overlay_verdict"].to_list() == ["NEUTRAL", "HARMFUL"]


@pytest.mark.parametrize(("change", "verdict"), [
    ({}, "EDGE_RETAINED"),
    ({"expectancy_mean": -0.001}, "EDGE_RETAINED"),
    ({"expectancy_mean": -0.0011}, "TOO_FRAGILE_UNDER_REALISM"),
    ({"profit_factor_mean": -0.05}, "EDGE_RETAINED"),
    ({"profit_factor_mean": -0.0501}, "TOO_FRAGILE_UNDER_REALISM"),
    ({"robustness_v2_mean": -2.0}, "EDGE_RETAINED"),
    ({"robustness_v2_mean": -2.001}, "TOO_FRAGILE_UNDER_REALISM"),
    ({"exec_suppressed_signal_share_mean": 0.10}, "EDGE_RETAINED"),
    ({"exec_suppressed_signal_share_mean": 0.1001}, "TOO_FRAGILE_UNDER_REALISM"),
    ({"exec_suppressed_signal_share_mean": None}, "TOO_FRAGILE_UNDER_REALISM"),
    # lost edge but a steadier return: cleaner, up to 0.35 more suppressed signals
    ({"expectancy_mean": -0.01, "ret_cv_median": -0.5,
      "exec_suppressed_signal_share_mean": 0.35}, "EDGE_COMPROMISED_BUT_CLEANER"),
    ({"expectancy_mean": -0.01, "ret_cv_median": -0.5,
      "exec_suppressed_signal_share_mean": 0.3501}, "TOO_FRAGILE_UNDER_REALISM"),
    ({"expectancy_mean": -0.01, "ret_cv_median": 0.0}, "TOO_FRAGILE_UNDER_REALISM"),
    ({"expectancy_mean": -0.01, "ret_cv_median": None}, "TOO_FRAGILE_UNDER_REALISM"),
    ({"best_trade_count": 0}, "NOT_TRADABLE"),
    ({"best_trade_count": None}, "NOT_TRADABLE"),
    ({"best_zero_trade": True}, "NOT_TRADABLE"),
])  # fmt: skip
def test_realism_verdict_boundaries(change: dict, verdict: str) -> None:
    got = _verdicts(change)
    assert got["g1"][1] == verdict
    assert got["g0"][1] == "EDGE_RETAINED"


def _combos(values: list[float | None], metric: str = "expectancy", **extra) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame({"combo_id": [f"c{i}" for i in range(n)],
                         "combo_index": list(range(n, 0, -1)), metric: values,
                         **extra}, schema_overrides={metric: pl.Float64})  # fmt: skip


def test_best_row_nulls_and_nan_last_ties_by_combo_index() -> None:
    table = _combos([None, float("nan"), 0.5, 0.9, 0.9])
    # combo_index runs 5..1: the two 0.9 rows tie and the smaller combo_index (c4) wins;
    # null and NaN go last, also ordered by combo_index
    assert ranked(table, "expectancy")["combo_id"].to_list() == ["c4", "c3", "c2", "c1", "c0"]


def test_best_drawdown_is_the_smallest_loss_and_inf_profit_factor_ranks_first() -> None:
    dd = _combos([None, -0.30, -0.02, -0.10], "max_drawdown")
    assert ranked(dd, "max_drawdown")["combo_id"].to_list() == ["c2", "c3", "c1", "c0"]
    pf = _combos([1.2, float("inf"), None, 3.0], "profit_factor")
    assert ranked(pf, "profit_factor")["combo_id"].to_list() == ["c1", "c3", "c0", "c2"]
    cv = _combos([2.0, None, 0.5], "ret_cv")  # lower is better
    assert ranked(cv, "ret_cv")["combo_id"].to_list() == ["c2", "c0", "c1"]


def _signature_table(configs: list[tuple[int, float]], values: list[float]) -> pl.DataFrame:
    return pl.DataFrame({
        "combo_id": [f"{h}-{f}" for h, f in configs],
        "combo_index": list(range(1, len(configs) + 1)),
        "source_type": "flow", "hold_bars": [h for h, _ in configs],
        "signal_mode": "state_entry", "exit_mode": "horizon",
        "fee_bps_per_side": [f for _, f in configs], "slippage_bps_per_side": 0.0,
        "allow_overlap": False, "equity_mode": "event_returns_only", "include_watch": False,
        "state_subset_key": None, "expectancy": values,
    }, schema_overrides={"state_subset_key": pl.Utf8})  # fmt: skip


def test_top10_overlap_counts() -> None:
    holds = [(h, 0.0) for h in range(1, 13)]  # 12 configs
    a = _signature_table(holds, [float(h) for h in range(1, 13)])         # top 10: holds 3..12
    b = _signature_table(holds, [float(-h) for h in range(1, 13)])        # top 10: holds 1..10
    c = _signature_table([(h, 5.0) for h in range(1, 13)], [1.0] * 12)   # other fee: none shared
    sigs = [("A", top_signatures(a, "expectancy")), ("B", top_signatures(b, "expectancy")),
            ("C", top_signatures(c, "expectancy"))]
    assert all(len(s) == 10 for _, s in sigs)
    assert "flow|12|state_entry|horizon|0.0|0.0|false|event_returns_only|false|" in sigs[0][1]
    overlap = overlap_table(sigs)
    assert overlap.rows() == [("A", "B", 8), ("A", "C", 0), ("B", "C", 0)]
    assert overlap.columns == ["run_a", "run_b", "top10_overlap_count"]


def test_unknown_metric_is_refused_with_the_allowed_list(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown compare metric.*return_std.*allowed: "
                                         "expectancy, profit_factor, max_drawdown"):
        check_metrics(["expectancy", "return_std"])
    with pytest.raises(ValueError, match="sharpe"):
        compare_grids([tmp_path / "a", tmp_path / "b"], ["sharpe"], "expectancy", tmp_path)
    with pytest.raises(ValueError, match="at least two different"):
        compare_grids([tmp_path / "a", tmp_path / "a"], None, "expectancy", tmp_path)


# ---------------------------------------------------------------- real grid folders


@pytest.fixture(scope="module")
def grids(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two real grids on the same rows: no execution filter, and the ``lite`` profile; both
    with a daily equity curve so drawdowns exist."""
    settings = load_settings()
    root = tmp_path_factory.mktemp("grids")
    dims = GridDimensions(hold_bars=(3, 5, 10), fee_bps_per_side=(0.0, 10.0),
                          equity_mode=("daily_equity_curve",),
                          exit_mode=("horizon", "horizon_or_state"))
    out = []
    for name, profile in (("plain", "none"), ("lite", "lite")):
        base = backtest_options(settings, exec_profile=profile)
        out.append(run_grid(settings, [GridSource(_inputs())], dims,
                            GridOptions(tag=name, base=base), folder=root / name).output_dir)
    return out


def _best(metrics: pl.DataFrame, metric: str, closest_to_zero: bool = False) -> dict:
    """The best row by plain Python: highest value (or |value| smallest), then combo_index."""
    rows = [r for r in metrics.to_dicts() if r[metric] is not None]
    key = (lambda r: (abs(r[metric]), r["combo_index"])) if closest_to_zero else \
        (lambda r: (-r[metric], r["combo_index"]))  # fmt: skip
    return min(rows, key=key)


def test_compare_of_two_real_grids(grids: list[Path], tmp_path: Path) -> None:
    summary = compare_grids(grids, None, "expectancy", tmp_path)
    folder = Path(summary["output_dir"])
    assert folder.parent == tmp_path and folder.name.startswith("backtest-grid-compare-")
    assert sorted(p.name for p in folder.iterdir()) == [
        "grid_compare_overlap.csv", "grid_compare_report.html", "grid_compare_report.md",
        "grid_compare_summary.json", "grid_compare_table.csv"]
    table = pl.read_csv(folder / "grid_compare_table.csv")
    rows = {r["grid_run_dir"]: r for r in table.to_dicts()}
    signatures = []
    for grid in grids:
        metrics = pl.read_parquet(grid / "grid_metrics_table.parquet")
        grid_summary = json.loads((grid / "grid_summary.json").read_text())
        row, best = rows[str(grid)], _best(metrics, "expectancy")
        assert row["grid_run_id"] == grid_summary["grid_run_id"]
        assert row["best_combo_id"] == best["combo_id"]
        assert row["best_expectancy"] == pytest.approx(best["expectancy"], rel=1e-12)
        assert row["best_sharpe_period"] == pytest.approx(best["sharpe_period"], rel=1e-12)
        assert row["expectancy_mean"] == pytest.approx(
            sum(metrics["expectancy"]) / metrics.height, rel=1e-12)
        assert row["successful_combos"] == metrics.height == 12
        overfit = grid_summary["overfitting"]["flow"]
        assert (row["best_dsr"], row["best_pbo"], row["best_fluke_risk"]) == pytest.approx(
            (overfit["dsr"], overfit["pbo"], overfit["fluke_risk"]))
        top = sorted(metrics.to_dicts(), key=lambda r: (-r["expectancy"], r["combo_index"]))[:10]
        signatures.append({(r["hold_bars"], r["exit_mode"], r["fee_bps_per_side"]) for r in top})
    # baseline = higher best robustness; its deltas are 0 and the other's are the differences
    first, second = table.row(0, named=True), table.row(1, named=True)
    assert first["best_robustness_score_v2"] >= second["best_robustness_score_v2"]
    assert first["delta_expectancy_vs_top"] == 0.0 and first["overlay_verdict"] == "NEUTRAL"
    assert second["delta_expectancy_vs_top"] == pytest.approx(
        second["expectancy_mean"] - first["expectancy_mean"], rel=1e-12)
    assert rows[str(grids[0])]["execution_profile_set"] == "none"
    assert rows[str(grids[1])]["execution_profile_set"] == "lite"
    overlap = pl.read_csv(folder / "grid_compare_overlap.csv")
    assert overlap["top10_overlap_count"].to_list() == [len(signatures[0] & signatures[1])]
    written = json.loads((folder / "grid_compare_summary.json").read_text())
    assert written["primary_metric"] == "expectancy" and written["finished_ts"]
    assert written["baseline_grid_run_id"] == first["grid_run_id"]
    report = (folder / "grid_compare_report.md").read_text()
    assert "| best_dsr | best_pbo | best_fluke_risk |" in report
    assert "fluke risk" in report and first["grid_run_id"] in report


def test_compare_reruns_converge_whatever_the_order(grids: list[Path], tmp_path: Path) -> None:
    one = compare_grids(grids, ["expectancy"], "win_rate", tmp_path)
    two = compare_grids(list(reversed(grids)), None, "expectancy", tmp_path)
    assert one["compare_id"] == two["compare_id"]
    assert one["rows"] == two["rows"]
    assert [p.name for p in tmp_path.iterdir()] == [one["compare_id"]]  # no temp folder left
    other = compare_grids(grids, ["profit_factor"], "expectancy", tmp_path)
    assert other["compare_id"] != one["compare_id"]


def test_compare_by_drawdown_picks_the_smallest_loss(grids: list[Path], tmp_path: Path) -> None:
    summary = compare_grids(grids, ["max_drawdown"], "expectancy", tmp_path)
    for row in summary["rows"]:
        metrics = pl.read_parquet(Path(row["grid_run_dir"]) / "grid_metrics_table.parquet")
        assert metrics["max_drawdown"].null_count() == 0 and metrics["max_drawdown"].min() < 0
        best = _best(metrics, "max_drawdown", closest_to_zero=True)
        assert row["best_combo_id"] == best["combo_id"]
        assert row["best_max_drawdown"] == metrics["max_drawdown"].max()  # closest to 0
