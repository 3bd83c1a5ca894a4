"""Grid aggregates (backtest_ops.md §5.5) on hand-made metrics tables, values by hand.

Each table names only the columns the tested function reads; ``_table`` fills the rest of
the parameters with one constant value (so they form no extra groups).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import mean, pstdev
from typing import Any

import polars as pl
import pytest

from mf_pipeline.lib.backtest.metrics import edge_by_state
from mf_pipeline.lib.grids.aggregates import (
    BEST_FIELDS,
    FILES,
    best_configs,
    cluster_policy_trade_mix,
    cluster_state_edge_profile,
    comparability,
    cost_fragility,
    dimension_sensitivity,
    holdbars_profile,
    holdbars_shape,
    source_summary,
    write_aggregates,
)

INF, NAN = math.inf, math.nan
DEFAULTS: dict[str, Any] = {
    "source_type": "flow", "hold_bars": 5, "signal_mode": "state_transition_entry",
    "exit_mode": "horizon_or_state", "fee_bps_per_side": 0.0, "slippage_bps_per_side": 0.0,
    "allow_overlap": False, "equity_mode": "event_returns_only", "include_watch": False,
    "policy_filter_mode": None, "state_subset_key": None, "overlay_mode": "none",
    "overlay_enabled": False, "overlay_match_rate": 1.0, "overlay_vetoed_signal_share": 0.0,
    "execution_profile": "none", "execution_filters_enabled": False,
    "trade_count": 10, "expectancy": 0.0, "profit_factor": 1.0, "profit_factor_inf": False,
    "ret_cv": 1.0, "downside_std": 0.01, "max_drawdown": None, "robustness_score_v1": 50.0,
    "robustness_score_v2": 50.0, "is_zero_trade_combo": False, "rows_input": 1000,
    "null_metric_count": 0, "nan_warning_total": 0, "status": "SUCCESS",
}
SCHEMA_OVERRIDES = {"max_drawdown": pl.Float64, "policy_filter_mode": pl.Utf8,
                    "state_subset_key": pl.Utf8, "is_zero_trade_combo": pl.Boolean,
                    "expectancy": pl.Float64, "profit_factor": pl.Float64,
                    "ret_cv": pl.Float64, "robustness_score_v2": pl.Float64}


def _table(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows over :data:`DEFAULTS`; ``combo_index`` counts per source unless given."""
    full = []
    seen: dict[str, int] = {}
    for row in rows:
        r = {**DEFAULTS, **row}
        seen[r["source_type"]] = seen.get(r["source_type"], 0) + 1
        r.setdefault("combo_index", seen[r["source_type"]])
        r.setdefault("combo_id", f"{r['source_type']}-{r['combo_index']:02d}")
        full.append(r)
    return pl.DataFrame(full, schema_overrides=SCHEMA_OVERRIDES, infer_schema_length=None)


def _rows(frame: pl.DataFrame, **match: Any) -> dict[str, Any]:
    hits = frame.filter(*[pl.col(k) == v for k, v in match.items()])
    assert hits.height == 1, hits
    return hits.row(0, named=True)


# ----------------------------------------------------------------------------- best configs


def _best_table() -> pl.DataFrame:
    """flow: idx 4 and 3 tie on expectancy and v2 (listed 4 first); idx 3 has no losing
    trade (PF +inf); idx 2 never traded (null metrics); idx 5 has a NaN expectancy, idx 6 a
    -inf profit factor (missing, like NaN)."""
    return _table([
        {"combo_index": 4, "expectancy": 0.03, "profit_factor": 2.0, "robustness_score_v2": 70.0},
        {"combo_index": 2, "expectancy": None, "profit_factor": None, "ret_cv": None,
         "robustness_score_v2": None, "trade_count": 0, "is_zero_trade_combo": True},
        {"combo_index": 3, "expectancy": 0.03, "profit_factor": INF, "profit_factor_inf": True,
         "robustness_score_v2": 70.0},
        {"combo_index": 1, "expectancy": 0.01, "profit_factor": 1.2, "robustness_score_v2": 50.0},
        {"combo_index": 5, "expectancy": NAN, "profit_factor": 0.5, "robustness_score_v2": 20.0},
        {"combo_index": 6, "expectancy": -0.05, "profit_factor": -INF,
         "robustness_score_v2": 0.0},
        {"source_type": "hmm", "combo_index": 1, "expectancy": 0.5},
    ])


def test_best_configs_nulls_last_ties_by_index_inf_first() -> None:
    best = best_configs(_best_table(), top_n=10)
    order = {m: [r["combo_index"] for r in rows] for m, rows in best["flow"].items()}
    assert order == {
        "expectancy": [3, 4, 1, 6, 2, 5],  # null (2) and NaN (5) last, by combo_index
        "profit_factor": [3, 4, 1, 5, 2, 6],  # +inf first; null and -inf last
        "robustness_score_v2": [3, 4, 1, 5, 6, 2],
    }
    assert [r["combo_index"] for r in best["hmm"]["expectancy"]] == [1]
    assert list(best) == ["flow", "hmm"]
    assert set(best["flow"]["expectancy"][0]) == set(BEST_FIELDS)


def test_best_configs_top_n_and_json_keeps_inf_flag(tmp_path: Path) -> None:
    best = best_configs(_best_table(), top_n=2)
    assert [r["combo_index"] for r in best["flow"]["profit_factor"]] == [3, 4]
    assert best["flow"]["profit_factor"][0]["profit_factor"] == INF
    # NaN is missing, not a value
    last = best_configs(_best_table(), top_n=10)["flow"]["expectancy"][-1]
    assert (last["combo_index"], last["expectancy"]) == (5, None)
    write_aggregates(tmp_path, _best_table(), _best_table(), None, top_n=2)
    written = json.loads((tmp_path / FILES["grid_best_configs"]).read_text())
    top = written["flow"]["profit_factor"][0]
    assert (top["combo_index"], top["profit_factor"], top["profit_factor_inf"]) == (3, None, True)


# ---------------------------------------------------------------------- dimension sensitivity


def _sensitivity_tables() -> tuple[pl.DataFrame, pl.DataFrame]:
    """flow v2 = 10, 40, 20, 30: polars' nearest 0.75-quantile is 30 (linear would be 32.5),
    so idx 2 and 4 are top quartile. hmm: one row, always top. Manifest adds a FAILED flow
    combo (hold 20, fee 0) and a FAILED hmm combo."""
    table = _table([
        {"hold_bars": 5, "fee_bps_per_side": 0.0, "robustness_score_v2": 10.0,
         "expectancy": 0.01, "profit_factor": 1.5},
        {"hold_bars": 5, "fee_bps_per_side": 5.0, "robustness_score_v2": 40.0,
         "expectancy": 0.03, "profit_factor": INF, "profit_factor_inf": True},
        {"hold_bars": 10, "fee_bps_per_side": 0.0, "robustness_score_v2": 20.0,
         "expectancy": None, "profit_factor": None, "is_zero_trade_combo": None},
        {"hold_bars": 10, "fee_bps_per_side": 5.0, "robustness_score_v2": 30.0,
         "expectancy": -0.01, "profit_factor": 0.5, "is_zero_trade_combo": True},
        {"source_type": "hmm", "hold_bars": 5, "robustness_score_v2": 5.0},
    ])
    manifest = pl.concat([
        table.select("source_type", "combo_index", "status", "hold_bars", "fee_bps_per_side",
                     "policy_filter_mode"),
        pl.DataFrame({"source_type": ["flow", "hmm"], "combo_index": [5, 2],
                      "status": ["FAILED", "FAILED"], "hold_bars": [20, 10],
                      "fee_bps_per_side": [0.0, 0.0], "policy_filter_mode": [None, None]},
                     schema_overrides={"policy_filter_mode": pl.Utf8}),
    ])
    return table, manifest


def test_dimension_sensitivity_values_by_hand() -> None:
    table, manifest = _sensitivity_tables()
    out = dimension_sensitivity(table, manifest)
    h5 = _rows(out, source_type="flow", dimension="hold_bars", dimension_value="5")
    assert h5["combo_count"] == 2
    assert h5["expectancy_mean"] == pytest.approx(0.02)
    assert h5["expectancy_median"] == pytest.approx(0.02)
    assert h5["expectancy_std"] == pytest.approx(0.02 / math.sqrt(2))  # ddof 1
    assert h5["profit_factor_mean"] == 1.5  # finite values only; the +inf counted apart
    assert h5["profit_factor_inf_count"] == 1
    assert h5["zero_trade_rate"] == 0.0
    assert h5["top_quartile_hit_rate"] == 0.5  # 40 yes, 10 no
    assert h5["robustness_v2_mean"] == 25.0
    assert (h5["combo_total"], h5["failed_count"], h5["failure_rate"]) == (2, 0, 0.0)
    h10 = _rows(out, source_type="flow", dimension="hold_bars", dimension_value="10")
    assert h10["expectancy_mean"] == -0.01 and h10["expectancy_std"] is None
    assert h10["zero_trade_rate"] == 1.0  # True and null (counted as zero-trade)
    assert h10["top_quartile_hit_rate"] == 0.5  # 30 >= r75 = 30
    fee0 = _rows(out, source_type="flow", dimension="fee_bps_per_side", dimension_value="0.0")
    fee5 = _rows(out, source_type="flow", dimension="fee_bps_per_side", dimension_value="5.0")
    assert (fee0["top_quartile_hit_rate"], fee5["top_quartile_hit_rate"]) == (0.0, 1.0)
    assert (fee0["combo_total"], fee0["failed_count"]) == (3, 1)
    assert fee0["failure_rate"] == pytest.approx(1 / 3)
    # null policy mode (non-cluster) still gets its failure stats
    pol = _rows(out, source_type="flow", dimension="policy_filter_mode")
    assert pol["dimension_value"] is None
    assert (pol["combo_count"], pol["combo_total"], pol["failed_count"]) == (4, 5, 1)
    hmm = _rows(out, source_type="hmm", dimension="hold_bars", dimension_value="5")
    assert (hmm["top_quartile_hit_rate"], hmm["combo_total"], hmm["failure_rate"]) == (1.0, 1, 0.0)
    # hold 20 only failed: no metrics row; dimensions that the table lacks are absent
    assert out.filter(pl.col("dimension_value") == "20").height == 0
    assert set(out["dimension"]) == {
        "hold_bars", "signal_mode", "exit_mode", "fee_bps_per_side", "slippage_bps_per_side",
        "allow_overlap", "equity_mode", "include_watch", "policy_filter_mode",
        "state_subset_key", "overlay_mode", "overlay_enabled", "execution_profile",
        "execution_filters_enabled"}


def test_dimension_sensitivity_sorted_numerically_then_text() -> None:
    table, manifest = _sensitivity_tables()
    out = dimension_sensitivity(table, manifest)
    flow = out.filter(pl.col("source_type") == "flow")
    assert flow.filter(pl.col("dimension") == "hold_bars")["dimension_value"].to_list() == [
        "5", "10"]
    assert flow["dimension"].to_list() == sorted(flow["dimension"].to_list())
    assert out["source_type"].to_list() == ["flow"] * flow.height + ["hmm"] * (out.height
                                                                               - flow.height)
    bools = _table([{"allow_overlap": False}])
    assert dimension_sensitivity(bools, None).filter(
        pl.col("dimension") == "allow_overlap")["dimension_value"].to_list() == ["false"]


# ----------------------------------------------------------------------------- cost fragility


def _fragility_table() -> pl.DataFrame:
    """Family hold 5: total costs 0, 5 (two combos: 5+0 and 0+5), 10, 20 bps.
        cost  exp     pf    ret_cv  trades  zero
        0     0.010   2.0   1.0     100     F
        5     0.006   inf   1.5     80      F     } means: exp 0.005, pf inf, ret_cv 2.0,
        5     0.004   1.0   2.5     60      F     }        trades 70
        10   -0.002   0.8   null    40      F
        20    null    null  null    0       T
    Family hold 10: one cost. Family hold 20: costs 0 and 10, expectancy finite at 0 only."""
    rows = [
        (5, 0.0, 0.0, 0.010, 2.0, 1.0, 100, False), (5, 5.0, 0.0, 0.006, INF, 1.5, 80, False),
        (5, 0.0, 5.0, 0.004, 1.0, 2.5, 60, False), (5, 10.0, 0.0, -0.002, 0.8, None, 40, False),
        (5, 10.0, 10.0, None, None, None, 0, True),
        (10, 0.0, 0.0, 0.02, 1.1, 1.0, 50, False),
        (20, 0.0, 0.0, 0.01, 1.3, 2.0, 50, False), (20, 10.0, 0.0, None, None, None, 0, True),
    ]
    keys = ("hold_bars", "fee_bps_per_side", "slippage_bps_per_side", "expectancy",
            "profit_factor", "ret_cv", "trade_count", "is_zero_trade_combo")
    table = _table([dict(zip(keys, r, strict=True)) for r in rows])
    return table.with_columns(
        total_cost_bps=pl.col("fee_bps_per_side") + pl.col("slippage_bps_per_side"))


def test_cost_fragility_slopes_by_hand() -> None:
    out = cost_fragility(_fragility_table())
    fam = _rows(out, hold_bars=5)
    assert (fam["cost_points"], fam["min_cost_bps"], fam["max_cost_bps"]) == (4, 0.0, 20.0)
    # expectancy at x = 0, 0.5, 1 (cost 20 null): xbar 0.5, Sxx 0.5, Sxy = -0.5 * 0.0056667
    # + 0.5 * -0.0063333 = -0.006 -> -0.012 per 10 bps
    assert fam["expectancy_slope_per_10bps"] == pytest.approx(-0.012)
    # profit factor: the +inf mean at 5 bps is not a finite point -> (0, 2.0), (1, 0.8)
    assert fam["profit_factor_slope_per_10bps"] == pytest.approx(-1.2)
    # ret_cv: (0, 1.0), (0.5, 2.0)
    assert fam["ret_cv_slope_per_10bps"] == pytest.approx(2.0)
    # trades (0, 100), (0.5, 70), (1, 40), (2, 0): Sxx 2.1875, Sxy -108.75
    assert fam["trade_count_slope_per_10bps"] == pytest.approx(-108.75 / 2.1875)
    assert fam["zero_trade_rate_delta_0_to_max_cost"] == 1.0
    single = _rows(out, hold_bars=10)
    assert single["cost_points"] == 1
    assert all(single[f"{m}_slope_per_10bps"] is None
               for m in ("expectancy", "profit_factor", "ret_cv", "trade_count"))
    assert single["zero_trade_rate_delta_0_to_max_cost"] is None
    two = _rows(out, hold_bars=20)
    assert two["expectancy_slope_per_10bps"] is None  # one finite point
    assert two["trade_count_slope_per_10bps"] == pytest.approx(-50.0)
    assert two["zero_trade_rate_delta_0_to_max_cost"] == 1.0
    assert out["hold_bars"].to_list() == [5, 10, 20]


def test_cost_fragility_without_total_cost_column_uses_fee_plus_slippage() -> None:
    table = _fragility_table()
    assert cost_fragility(table.drop("total_cost_bps")).equals(cost_fragility(table))


# ------------------------------------------------------------------- hold profile and shape


def test_holdbars_profile_values() -> None:
    table, _ = _sensitivity_tables()
    out = holdbars_profile(table.with_columns(trade_count=pl.Series([10, 30, 0, 5, 7])))
    assert out.select("source_type", "hold_bars").rows() == [("flow", 5), ("flow", 10),
                                                             ("hmm", 5)]
    h5 = _rows(out, source_type="flow", hold_bars=5)
    assert (h5["combo_count"], h5["profit_factor_mean"], h5["trade_count_mean"]) == (2, 1.5, 20.0)
    assert h5["profit_factor_inf_count"] == 1
    h10 = _rows(out, source_type="flow", hold_bars=10)
    assert (h10["zero_trade_rate"], h10["robustness_v2_mean"], h10["expectancy_median"]) == (
        1.0, 25.0, -0.01)


def _shape_of(values: list[float | None], holds: tuple[int, ...] = (5, 10, 20, 40),
              ) -> tuple[str, int | None]:
    profile = pl.DataFrame({"source_type": "s", "hold_bars": list(holds[:len(values)]),
                            "expectancy_mean": values},
                           schema_overrides={"expectancy_mean": pl.Float64})
    row = holdbars_shape(profile).row(0, named=True)
    assert row["metric_col"] == "expectancy_mean"
    return row["hold_shape"], row["best_hold_bars"]


@pytest.mark.parametrize(("values", "expected"), [
    ([1.0, 2.0, 3.0], ("MONOTONIC_UP", 20)),
    ([3.0, 2.0, 1.0], ("MONOTONIC_DOWN", 5)),
    ([1.0, 3.0, 2.0], ("HUMP_SHAPED", 10)),
    ([1.0, 3.0, 1.0, 3.0], ("FLAT_OR_NOISY", 10)),  # first argmax interior, rises again after
    ([2.0, 2.0, 2.0], ("FLAT_OR_NOISY", 5)),  # tol floor 1e-8: no step counts
    ([1.0, None, 3.0], ("MONOTONIC_UP", 20)),  # null point skipped
    ([1.0, NAN], ("FLAT_OR_NOISY", None)),  # fewer than 2 finite points
    # std0 of (0, 1, 0.99) = 0.4691 -> tol 0.02345: the -0.01 dip is within tol
    ([0.0, 1.0, 0.99], ("MONOTONIC_UP", 10)),
    # std0 of (0, 1, 0.975) = 0.4656 -> tol 0.02328 < 0.025 (std1 would give 0.0285)
    ([0.0, 1.0, 0.975], ("HUMP_SHAPED", 10)),
    # interior max, then -0.05 and +0.01 (within tol 0.0189 = 0.05 * std0): a hump
    ([0.0, 0.9, 0.85, 0.86], ("HUMP_SHAPED", 10)),
    # ... but +0.03 after the max exceeds tol 0.0190: not a hump, not monotonic
    ([0.0, 0.9, 0.85, 0.88], ("FLAT_OR_NOISY", 10)),
])
def test_holdbars_shape_rules(values: list[float | None], expected: tuple[str, int | None],
                              ) -> None:
    assert _shape_of(values) == expected


def test_holdbars_shape_per_source_and_all_null_source() -> None:
    profile = pl.DataFrame({"source_type": ["b", "b", "a", "a", "c"],
                            "hold_bars": [10, 5, 5, 10, 5],
                            "expectancy_mean": [1.0, 2.0, 1.0, 2.0, None]})
    out = holdbars_shape(profile)
    assert out.select("source_type", "hold_shape", "best_hold_bars").rows() == [
        ("a", "MONOTONIC_UP", 10), ("b", "MONOTONIC_DOWN", 5), ("c", "FLAT_OR_NOISY", None)]


# ------------------------------------------------------------------- source summary, alignment


def test_source_summary_counts_stats_and_shape() -> None:
    table, manifest = _sensitivity_tables()
    table = table.with_columns(rows_input=pl.Series([100, 100, 400, 100, 50]))
    manifest = pl.concat([manifest, pl.DataFrame(
        {"source_type": ["cluster"] * 2, "combo_index": [1, 2], "status": ["FAILED"] * 2,
         "hold_bars": [5, 5], "fee_bps_per_side": [0.0, 0.0], "policy_filter_mode": ["a"] * 2})])
    shape = holdbars_shape(holdbars_profile(table))
    out = source_summary(table, manifest, shape)
    assert out["source_type"].to_list() == ["cluster", "flow", "hmm"]
    flow = _rows(out, source_type="flow")
    assert (flow["SUCCESS"], flow["FAILED"], flow["success_count"]) == (4, 1, 4)
    assert flow["robustness_v2_median"] == 25.0 and flow["robustness_v2_mean"] == 25.0
    assert flow["expectancy_mean"] == pytest.approx(0.01)
    assert flow["profit_factor_mean"] == pytest.approx(1.0)  # (1.5 + 0.5) / 2; +inf apart
    assert flow["profit_factor_inf_count"] == 1
    assert flow["zero_trade_combo_share"] == 0.5
    assert flow["rows_input_median"] == 100.0  # the mean would be 175
    assert flow["hold_shape"] == "MONOTONIC_DOWN" and flow["best_hold_bars"] == 5
    cluster = _rows(out, source_type="cluster")
    assert (cluster["SUCCESS"], cluster["FAILED"], cluster["success_count"]) == (0, 2, None)
    assert _rows(out, source_type="hmm")["FAILED"] == 1


@pytest.mark.parametrize(("other", "expected"), [
    (10000, "ALIGNED"), (10001, "ALIGNED"), (10002, "NEAR_ALIGNED"), (10500, "NEAR_ALIGNED"),
    (10501, "DIFFERENT_UNIVERSE"), (9999, "NEAR_ALIGNED"), (0, "DIFFERENT_UNIVERSE"),
])
def test_comparability_thresholds(other: int, expected: str) -> None:
    # flow median 10000 (its mean would be 13333); rel = (max - min) / min
    table = _table([{"rows_input": 10000}, {"rows_input": 10000}, {"rows_input": 20000},
                    {"source_type": "hmm", "rows_input": other}])
    assert comparability(table) == expected


def test_comparability_single_source_and_empty() -> None:
    one = _table([{"rows_input": 10}, {"rows_input": 99999}])
    assert comparability(one) == "ALIGNED"
    assert comparability(one.clear()) == "DIFFERENT_UNIVERSE"
    assert comparability(one.clear(), n_sources=1) == "ALIGNED"
    assert comparability(one.clear(), n_sources=2) == "DIFFERENT_UNIVERSE"


# ------------------------------------------------------------------------------- cluster files


def _trades(returns: list[float], classes: list[str], states: list[int]) -> pl.DataFrame:
    return pl.DataFrame({
        "net_return": returns, "is_valid_trade": [True] * len(returns),
        "entry_state_id": states, "entry_state_label": [f"S{s}" for s in states],
        "entry_state_class": classes, "entry_state_direction_hint": ["LONG_BIAS"] * len(states),
    })


def test_cluster_state_edge_profile_over_combos() -> None:
    a = _trades([0.02, -0.01, 0.04, 0.01], ["ALLOW"] * 3 + ["WATCH"], [1, 1, 1, 2])
    b = _trades([0.03, 0.05, -0.02], ["ALLOW"] * 3, [1, 1, 1])
    c = _trades([0.10], ["ALLOW"], [1])
    d = _trades([0.12], ["ALLOW"], [1])
    edges = pl.concat([
        edge_by_state(t).with_columns(combo_id=pl.lit(cid), combo_index=pl.lit(idx),
                                      policy_filter_mode=pl.lit(mode))
        for t, cid, idx, mode in ((a, "a", 1, "allow_watch"), (b, "b", 2, "allow_watch"),
                                  (c, "c", 3, "allow_only"), (d, "d", 4, "allow_watch"))])
    out = cluster_state_edge_profile(edges)
    assert out.select("policy_filter_mode", "entry_state_id", "trade_count").rows() == [
        ("allow_only", 1, 1), ("allow_watch", 1, 7), ("allow_watch", 2, 1)]
    s1 = _rows(out, policy_filter_mode="allow_watch", entry_state_id=1)
    # state 1 per combo: a (0.02, -0.01, 0.04), b (0.03, 0.05, -0.02), d (0.12)
    ra, rb = [0.02, -0.01, 0.04], [0.03, 0.05, -0.02]
    assert s1["combo_count"] == 3
    assert s1["avg_return"] == pytest.approx((mean(ra) + mean(rb) + 0.12) / 3)
    assert s1["median_return"] == pytest.approx(0.03)  # median of 0.02, 0.03, 0.12
    assert s1["ret_cv"] == pytest.approx(pstdev(ra) / mean(ra))  # median of 1.23, 1.47, 0
    assert (s1["worst_trade_return"], s1["best_trade_return"]) == (-0.02, 0.12)
    assert s1["downside_std"] == pytest.approx(0.0)  # one loss in a and b (std0 0), none in d


def test_cluster_policy_trade_mix_rows() -> None:
    table = _table([
        {"source_type": "cluster", "combo_index": 2, "policy_filter_mode": "allow_only",
         "policy_trade_class_mix": "ALLOW=3", "trade_count": 3},
        {"source_type": "cluster", "combo_index": 1, "policy_filter_mode": "allow_only",
         "policy_trade_class_mix": "ALLOW=2;WATCH=1", "trade_count": 3},
        {"source_type": "flow", "policy_trade_class_mix": None},
    ])
    out = cluster_policy_trade_mix(table)
    assert out.columns == ["combo_id", "combo_index", "policy_filter_mode",
                           "policy_trade_class_mix", "trade_count"]
    assert out.select("combo_index", "policy_trade_class_mix").rows() == [
        (1, "ALLOW=2;WATCH=1"), (2, "ALLOW=3")]


# ------------------------------------------------------------------------------------ writer


def test_write_aggregates_files_and_return(tmp_path: Path) -> None:
    table, manifest = _sensitivity_tables()
    table = table.with_columns(ret_cv=pl.Series([1.0, NAN, None, 2.0, 1.0]))
    result = write_aggregates(tmp_path, table, manifest, None, top_n=3)
    names = {k for k in FILES if not k.startswith("cluster")}
    assert set(result["outputs"]) == names
    assert {Path(p).name for p in result["outputs"].values()} == {FILES[k] for k in names}
    assert all(Path(p).exists() for p in result["outputs"].values())
    assert not (tmp_path / FILES["cluster_policy_trade_mix"]).exists()
    assert result["comparability"] == "ALIGNED"
    assert result["hold_shapes"] == {
        "flow": {"hold_shape": "MONOTONIC_DOWN", "best_hold_bars": 5,
                 "metric_col": "expectancy_mean"},
        "hmm": {"hold_shape": "FLAT_OR_NOISY", "best_hold_bars": None,
                "metric_col": "expectancy_mean"}}
    sens = pl.read_parquet(tmp_path / FILES["grid_dimension_sensitivity_parquet"])
    assert sens.equals(pl.read_csv(tmp_path / FILES["grid_dimension_sensitivity_csv"],
                                   schema=sens.schema))
    h5 = _rows(sens, source_type="flow", dimension="hold_bars", dimension_value="5")
    assert h5["profit_factor_mean"] == 1.5 and h5["ret_cv_mean"] == 1.0  # NaN -> missing
    profile = pl.read_csv(tmp_path / FILES["grid_holdbars_profile"])
    assert profile["profit_factor_mean"].to_list()[0] == 1.5


def test_write_aggregates_cluster_files(tmp_path: Path) -> None:
    table = _table([
        {"source_type": "cluster", "policy_filter_mode": "allow_only", "rows_input": 1000,
         "policy_trade_class_mix": "ALLOW=1"},
        {"source_type": "flow", "rows_input": 1100, "policy_trade_class_mix": None},
    ])
    edges = edge_by_state(_trades([0.01], ["ALLOW"], [3])).with_columns(
        combo_id=pl.lit("cluster-01"), combo_index=pl.lit(1),
        policy_filter_mode=pl.lit("allow_only"))
    result = write_aggregates(tmp_path, table, table, edges, top_n=10)
    assert result["comparability"] == "DIFFERENT_UNIVERSE"  # rel 0.1
    mix = pl.read_csv(tmp_path / FILES["cluster_policy_trade_mix"])
    assert mix["policy_trade_class_mix"].to_list() == ["ALLOW=1"]
    prof = pl.read_csv(tmp_path / FILES["cluster_state_edge_profile"])
    assert prof.select("entry_state_id", "trade_count", "combo_count").rows() == [(3, 1, 1)]


def test_write_aggregates_when_every_combo_failed(tmp_path: Path) -> None:
    manifest = _table([{"status": "FAILED", "hold_bars": 5},
                       {"status": "FAILED", "source_type": "hmm", "hold_bars": 5}])
    table = manifest.clear().drop("status")
    result = write_aggregates(tmp_path, table, manifest, None, top_n=10)
    assert result["comparability"] == "DIFFERENT_UNIVERSE" and result["hold_shapes"] == {}
    assert json.loads((tmp_path / FILES["grid_best_configs"]).read_text()) == {}
    summary = pl.read_csv(tmp_path / FILES["grid_source_summary"])
    assert summary.select("source_type", "SUCCESS", "FAILED").rows() == [("flow", 0, 1),
                                                                         ("hmm", 0, 1)]
    sens = pl.read_parquet(tmp_path / FILES["grid_dimension_sensitivity_parquet"])
    assert sens.height == 0 and "failure_rate" in sens.columns
