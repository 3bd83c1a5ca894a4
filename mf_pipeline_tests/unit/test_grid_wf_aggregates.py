"""Walk-forward grid aggregates (backtest_ops.md §5.8; faults 13, 14, 15) on a hand-made stacked
table, the split schedule, and the files written from real split grid folders.

Stacked table (rest of the config key constant; ``-`` = null; dd = max_drawdown):
    split       source hold fee  v2    exp     pf    ret_cv  dd     zero
    2019-12-31  flow   5    0    80    0.010   1.5   2.0    -0.20   F
    2019-12-31  flow   5    10   80    0.005   +inf  3.0    -0.05   F
    2019-12-31  flow   10   0    60    -       -     -      -       T
    2019-12-31  flow   10   10   40    -0.010  0.5   5.0    -0.30   F
    2019-12-31  flow   20   0    -     -       -     -      -       -
    2019-12-31  hmm    5    0    50    0.020   2.0   1.0    -0.10   F
    2019-12-31  hmm    5    10   30    0.015   1.2   -      -0.02   F
    2020-12-31  flow   5    0    70    0.002   1.1   4.0    -0.25   F
    2020-12-31  flow   5    10   90    0.003   1.3   3.5    -0.15   F
    2020-12-31  flow   10   0    70    0.001   1.05  6.0    -       F
    2020-12-31  flow   10   10   20    -       -     -      -       T
    2020-12-31  hmm    5    0    55    -       -     NaN    -0.15   T
Dense ranks of v2 within (split, source), top quartile = rank <= ceil(n/4):
    2019 flow (n 5, cut 2): 80, 80 -> 1; 60 -> 2 (dense, not 3); 40 -> 3; null -> none
    2019 hmm  (n 2, cut 1): 50 -> 1; 30 -> 2      2020 flow (n 4, cut 1): 90 -> 1; 70, 70 -> 2;
    20 -> 3                                        2020 hmm (n 1, cut 1): 55 -> 1
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import replace
from datetime import date

import polars as pl
import pytest

from mf_pipeline.lib.grids import wf_aggregates as wfa
from mf_pipeline.lib.grids.combos import GridDimensions
from mf_pipeline.lib.grids.run import GridOptions, GridSource, run_grid
from mf_pipeline.lib.settings import load_settings
from mf_pipeline_tests.unit.test_grid_engine import _inputs

INF, NAN = math.inf, math.nan
A, B = "2019-12-31", "2020-12-31"
ROWS = [  # source, hold, fee, v2, exp, pf, ret_cv, dd, zero
    (A, "flow", 5, 0.0, 80.0, 0.010, 1.5, 2.0, -0.20, False),
    (A, "flow", 5, 10.0, 80.0, 0.005, INF, 3.0, -0.05, False),
    (A, "flow", 10, 0.0, 60.0, None, None, None, None, True),
    (A, "flow", 10, 10.0, 40.0, -0.010, 0.5, 5.0, -0.30, False),
    (A, "flow", 20, 0.0, None, None, None, None, None, None),
    (A, "hmm", 5, 0.0, 50.0, 0.020, 2.0, 1.0, -0.10, False),
    (A, "hmm", 5, 10.0, 30.0, 0.015, 1.2, None, -0.02, False),
    (B, "flow", 5, 0.0, 70.0, 0.002, 1.1, 4.0, -0.25, False),
    (B, "flow", 5, 10.0, 90.0, 0.003, 1.3, 3.5, -0.15, False),
    (B, "flow", 10, 0.0, 70.0, 0.001, 1.05, 6.0, None, False),
    (B, "flow", 10, 10.0, 20.0, None, None, None, None, True),
    (B, "hmm", 5, 0.0, 55.0, None, None, NAN, -0.15, True),
]


def _split_tables() -> dict[str, pl.DataFrame]:
    """The rows above as two split metrics tables (no train_end column, as written)."""
    cols = ("train_end", "source_type", "hold_bars", "fee_bps_per_side", "robustness_score_v2",
            "expectancy", "profit_factor", "ret_cv", "max_drawdown", "is_zero_trade_combo")
    frame = pl.DataFrame([dict(zip(cols, r, strict=True)) for r in ROWS],
                         schema_overrides={c: pl.Float64 for c in cols[3:9]})
    frame = frame.with_columns(
        signal_mode=pl.lit("state_transition_entry"), exit_mode=pl.lit("horizon"),
        slippage_bps_per_side=pl.lit(0.0), allow_overlap=pl.lit(False),
        equity_mode=pl.lit("event_returns_only"), include_watch=pl.lit(False),
        policy_filter_mode=pl.lit(None, pl.Utf8), state_subset_key=pl.lit(None, pl.Utf8),
        total_cost_bps=pl.col("fee_bps_per_side"),
        combo_index=pl.int_range(pl.len()).over("train_end", "source_type") + 1,
        combo_id=pl.format("{}-h{}-f{}", "source_type", "hold_bars", "fee_bps_per_side"),
        nan_warning_total=pl.when(pl.col("hold_bars") == 20).then(2).otherwise(0),
        ret_p10=pl.when(pl.col("hold_bars") == 5).then(-0.04).otherwise(-0.08),
        overlay_enabled=pl.col("source_type") == "hmm",
        overlay_mode=pl.when(pl.col("source_type") == "hmm").then(pl.lit("allow_or_unknown")),
        overlay_match_rate=pl.when(pl.col("source_type") == "hmm")
        .then(pl.when(pl.col("train_end") == A).then(0.9 - pl.col("fee_bps_per_side") / 100)
              .otherwise(0.7)),
    )
    return {t: frame.filter(pl.col("train_end") == t).drop("train_end") for t in (A, B)}


@pytest.fixture
def stacked() -> pl.DataFrame:
    return wfa.stack_split_tables(_split_tables())


def _row(frame: pl.DataFrame, **key: object) -> dict[str, object]:
    hit = frame.filter(*(pl.col(k) == v for k, v in key.items()))
    assert hit.height == 1, key
    return hit.row(0, named=True)


def test_stack_adds_train_end_first_in_date_order_and_widens_dtypes() -> None:
    tables = _split_tables()
    # a split whose optional column is all null (Null dtype) or missing stacks with the other
    tables[B] = tables[B].with_columns(pl.lit(None).alias("policy_filter_mode")).drop("ret_p10")
    stacked = wfa.stack_split_tables({B: tables[B], A: tables[A]})
    assert stacked.columns[0] == "train_end" and stacked.height == len(ROWS)
    assert stacked["train_end"].to_list() == [A] * 7 + [B] * 5
    assert stacked.schema["policy_filter_mode"] == pl.Utf8
    assert stacked.filter(pl.col("train_end") == B)["ret_p10"].null_count() == 5
    assert wfa.stack_split_tables({}).is_empty()


def test_config_consistency_dense_ranks_top_quartile_and_spread(stacked) -> None:
    ranks = wfa.split_ranks(stacked)
    got = {(r["train_end"], r["source_type"], r["hold_bars"], r["fee_bps_per_side"]):
           (r["rank_in_split"], r["is_top_quartile"]) for r in ranks.iter_rows(named=True)}
    assert got == {
        (A, "flow", 5, 0.0): (1, True), (A, "flow", 5, 10.0): (1, True),
        (A, "flow", 10, 0.0): (2, True), (A, "flow", 10, 10.0): (3, False),
        (A, "flow", 20, 0.0): (None, False), (A, "hmm", 5, 0.0): (1, True),
        (A, "hmm", 5, 10.0): (2, False), (B, "flow", 5, 0.0): (2, False),
        (B, "flow", 5, 10.0): (1, True), (B, "flow", 10, 0.0): (2, False),
        (B, "flow", 10, 10.0): (3, False), (B, "hmm", 5, 0.0): (1, True)}
    table = wfa.config_consistency(stacked)
    expected = {  # (source, hold, fee): split_count, hits, median_rank, rank_std, zero_splits, v2
        ("flow", 5, 10.0): (2, 2, 1.0, 0.0, 0, 85.0),
        ("flow", 5, 0.0): (2, 1, 1.5, math.sqrt(0.5), 0, 75.0),
        ("flow", 10, 0.0): (2, 1, 2.0, 0.0, 1, 65.0),
        ("flow", 10, 10.0): (2, 0, 3.0, 0.0, 1, 30.0),
        ("flow", 20, 0.0): (1, 0, None, None, 1, None),
        ("hmm", 5, 0.0): (2, 2, 1.0, 0.0, 1, 52.5),
        ("hmm", 5, 10.0): (1, 0, 2.0, None, 0, 30.0)}
    rows = [(r["source_type"], r["hold_bars"], r["fee_bps_per_side"]) for r in
            table.iter_rows(named=True)]
    assert rows == list(expected)  # source asc, robustness_v2_mean desc, null last
    for (source, hold, fee), values in expected.items():
        r = _row(table, source_type=source, hold_bars=hold, fee_bps_per_side=fee)
        got_values = tuple(r[c] for c in ("split_count", "top_quartile_hits", "median_rank",
                                          "rank_std", "zero_trade_splits",
                                          "robustness_v2_mean"))
        assert got_values == pytest.approx(values), (source, hold, fee)
    assert _row(table, source_type="flow", hold_bars=5, fee_bps_per_side=0.0)[
        "expectancy_mean"] == pytest.approx(0.006)
    best = wfa.most_consistent(table)
    assert [(r["source_type"], r["hold_bars"], r["fee_bps_per_side"])
            for r in best.head(3).iter_rows(named=True)] == [
        ("flow", 5, 10.0), ("hmm", 5, 0.0), ("flow", 5, 0.0)]  # hits, median rank, v2


def test_winners_take_smallest_drawdown_nulls_last_and_ties_by_source(stacked) -> None:
    bests = wfa.split_bests(stacked)
    flow_a = _row(bests, train_end=A, source_type="flow")
    assert flow_a["best_max_drawdown"] == -0.05  # smallest loss, not the deepest -0.30
    assert flow_a["best_profit_factor"] == INF and flow_a["best_ret_cv"] == 2.0
    assert _row(bests, train_end=B, source_type="hmm")["best_expectancy"] is None
    winners = wfa.winner_stability(stacked)
    got = [(r["train_end"], r["metric"], r["winner_source_type"], r["winner_value"])
           for r in winners.iter_rows(named=True)]
    assert got == [
        (A, "expectancy", "hmm", 0.02), (A, "profit_factor", "flow", INF),
        (A, "ret_cv", "hmm", 1.0), (A, "max_drawdown", "hmm", -0.02),
        (A, "robustness_v2", "flow", 80.0),
        (B, "expectancy", "flow", 0.003),  # hmm's null does not win (fault 15)
        (B, "profit_factor", "flow", 1.3), (B, "ret_cv", "flow", 3.5),
        (B, "max_drawdown", "flow", -0.15),  # tie with hmm -0.15: first source by name
        (B, "robustness_v2", "flow", 90.0)]


def test_winner_is_null_when_no_source_has_the_metric() -> None:
    tables = {A: pl.DataFrame({"source_type": ["hmm", "flow"], "ret_cv": [None, None],
                               "expectancy": [0.1, 0.1]})}
    winners = wfa.winner_stability(wfa.stack_split_tables(tables))
    by_metric = {r["metric"]: (r["winner_source_type"], r["winner_value"])
                 for r in winners.iter_rows(named=True)}
    assert by_metric["ret_cv"] == (None, None)
    assert by_metric["expectancy"] == ("flow", 0.1)  # tie: by name, whatever the row order
    counts = wfa.winner_counts(winners)
    assert counts.columns == ["source_type", *(f"winner_count_by_metric_{m}"
                                               for m in wfa.WINNER_METRICS)]


def test_source_summary_means_winner_counts_and_coverage(stacked) -> None:
    table = wfa.source_summary(stacked, wfa.winner_stability(stacked), splits_total=3)
    assert table["source_type"].to_list() == ["flow", "hmm"]
    flow, hmm = table.row(0, named=True), table.row(1, named=True)
    assert (flow["obs_count"], flow["splits_covered"], hmm["obs_count"]) == (9, 2, 3)
    assert flow["coverage_ratio"] == pytest.approx(2 / 3)
    assert flow["expectancy_mean"] == pytest.approx(0.011 / 6)
    assert flow["profit_factor_mean"] == pytest.approx(5.45 / 5)  # finite values only
    assert flow["profit_factor_inf_count"] == 1
    assert flow["zero_trade_combo_share"] == pytest.approx(3 / 9)  # null flag = zero-trade
    assert flow["nan_warning_total_sum"] == 2
    assert hmm["ret_cv_median"] == 1.0  # NaN is missing, not a value
    assert {m: (flow[f"winner_count_by_metric_{m}"], hmm[f"winner_count_by_metric_{m}"])
            for m in wfa.WINNER_METRICS} == {
        "expectancy": (1, 1), "profit_factor": (2, 0), "ret_cv": (1, 1),
        "max_drawdown": (1, 1), "robustness_v2": (2, 0)}
    assert wfa.source_summary(stacked, wfa.winner_stability(stacked), 0)["coverage_ratio"] \
        .null_count() == 2


def test_config_aggregate_and_hold_bars_summary(stacked) -> None:
    agg = wfa.config_aggregate(stacked)
    assert agg.height == 7
    r = _row(agg, source_type="flow", hold_bars=5, fee_bps_per_side=10.0)
    assert (r["obs_count"], r["split_count"], r["profit_factor_inf_count"]) == (2, 2, 1)
    assert r["profit_factor_mean"] == 1.3 and r["robustness_v2_mean"] == 85.0
    assert r["expectancy_median"] == pytest.approx(0.004)
    assert agg["robustness_v2_mean"].to_list()[:5] == [85.0, 75.0, 65.0, 30.0, None]
    dims = wfa.source_dimension_summary(stacked)
    assert dims["dimension"].unique().to_list() == ["hold_bars"]
    assert [(r["source_type"], r["hold_bars"], r["obs_count"]) for r in dims.iter_rows(
        named=True)] == [("flow", 5, 4), ("flow", 10, 4), ("flow", 20, 1), ("hmm", 5, 3)]
    assert _row(dims, source_type="flow", hold_bars=10)["expectancy_mean"] == \
        pytest.approx(-0.0045)


def test_tail_and_overlay_summaries(stacked) -> None:
    tail = wfa.tail_risk_summary(stacked)
    assert _row(tail, source_type="flow")["ret_p10_mean"] == pytest.approx(
        (4 * -0.04 + 5 * -0.08) / 9)
    split = wfa.overlay_split_summary(stacked)
    hmm_a = _row(split, train_end=A, source_type="hmm")
    assert hmm_a["overlay_enabled_share"] == 1.0 and hmm_a["overlay_mode"] == "allow_or_unknown"
    assert hmm_a["overlay_match_rate_mean"] == pytest.approx(0.85)
    assert _row(split, train_end=A, source_type="flow")["overlay_enabled_share"] == 0.0
    source = wfa.overlay_source_summary(split)
    hmm = _row(source, source_type="hmm")
    # mean of the split means (0.85, 0.70), not of the rows (0.8)
    assert hmm["split_rows"] == 2 and hmm["overlay_match_rate_mean"] == pytest.approx(0.775)
    eff = wfa.overlay_effectiveness_summary(stacked)
    assert eff.columns == ["source_type", "expectancy_mean", "profit_factor_mean",
                           "ret_cv_median", "robustness_v2_mean", "exec_eligibility_rate_mean",
                           "exec_suppressed_signal_share_mean",
                           "overlay_vetoed_signal_share_mean"]


def test_cost_fragility_summary_means_family_slopes(stacked) -> None:
    """Families pool the splits: flow hold 5 mean expectancy 0.006 at 0 bps and 0.004 at 10 bps
    (slope -0.002 per 10 bps); hold 10: 0.001 and -0.010 (-0.011); hold 20 one cost (null)."""
    table = wfa.cost_fragility_summary(stacked)
    flow = _row(table, source_type="flow")
    assert flow["family_count"] == 3
    assert flow["expectancy_slope_per_10bps_mean"] == pytest.approx((-0.002 - 0.011) / 2)


def test_overfitting_rows_and_medians() -> None:
    summaries = {
        B: {"overfitting": {"flow": {"dsr": 0.4, "pbo": 0.6, "fluke_risk": "HIGH",
                                     "best_combo_id": "b1"}}},
        A: {"overfitting": {"hmm": {"dsr": None, "pbo": None, "fluke_risk": "UNKNOWN",
                                    "best_combo_id": None},
                            "flow": {"dsr": 0.96, "pbo": 0.1, "fluke_risk": "LOW",
                                     "best_combo_id": "a1"}}},
        "2021-12-31": {"overfitting": {"flow": {"dsr": 0.7, "pbo": 0.3,
                                                "fluke_risk": "MODERATE"}}},
    }
    rows = wfa.overfitting_by_split(summaries)
    assert [(r["train_end"], r["source_type"]) for r in rows.iter_rows(named=True)] == [
        (A, "flow"), (A, "hmm"), (B, "flow"), ("2021-12-31", "flow")]
    assert rows["best_combo_id"].to_list() == ["a1", None, "b1", None]
    medians = wfa.overfitting_medians(rows)
    assert medians["dsr_median"] == pytest.approx(0.7) and medians["pbo_median"] == 0.3
    assert medians["overfitting_medians_by_source"]["hmm"] == {"dsr_median": None,
                                                               "pbo_median": None}
    assert wfa.overfitting_medians(wfa.overfitting_by_split({}))["dsr_median"] is None


def test_by_split_takes_dsr_of_the_split_winner_source() -> None:
    """The by-split row's DSR/PBO are those of the source holding the split's best
    robustness_score_v2 row (nulls last, ties by source name), not of the first source."""
    table = pl.DataFrame({"source_type": ["flow", "hmm", "hmm", "cluster"],
                          "combo_index": [1, 1, 2, 1], "combo_id": ["f1", "h1", "h2", "c1"],
                          "robustness_score_v2": [70.0, None, 80.0, 10.0],
                          "is_zero_trade_combo": [False, True, False, False]})
    over = {s: {"dsr": d, "pbo": 0.1, "fluke_risk": "LOW", "best_combo_id": f"{s[0]}-best"}
            for s, d in (("cluster", 0.1), ("flow", 0.2), ("hmm", 0.3))}
    summaries = {A: {"overfitting": over, "successful_combos": 4, "failed_combos": 1,
                     "comparability": "NEAR_ALIGNED"}}
    rows = [{"train_end": B, "status": "FAILED", "error": "boom", "note": "x"},
            {"train_end": A, "status": "SUCCESS", "grid_run_dir": "/g", "error": None}]
    frame = wfa.by_split_frame(rows, {A: table}, summaries)
    assert frame["train_end"].to_list() == [A, B] and frame.columns[-1] == "note"
    a = frame.row(0, named=True)
    assert (a["best_source_type"], a["best_combo_id"], a["dsr"]) == ("hmm", "h-best", 0.3)
    assert (a["successful_combos"], a["failed_combos"], a["comparability_label"]) == (
        4, 1, "NEAR_ALIGNED")
    assert a["zero_trade_combo_share"] == 0.25
    assert a["robustness_score_v2_mean"] == pytest.approx(160 / 3)
    assert frame.row(1, named=True)["dsr"] is None
    tie = table.with_columns(robustness_score_v2=pl.Series([80.0, None, 80.0, 10.0]))
    assert wfa.split_winner(tie) == ("flow", "f1")


def test_write_with_no_successful_split_still_writes_every_file(tmp_path) -> None:
    summary = wfa.write_wf_aggregates(tmp_path, [{"train_end": A, "status": "FAILED_UPSTREAM",
                                                  "error": "no rows"}], {}, {"tag": "t"})
    assert (summary["splits_total"], summary["splits_successful"]) == (1, 0)
    assert summary["dsr_median"] is None and summary["wf_grid_id"] == tmp_path.name
    assert len(list(tmp_path.glob("wf_*"))) == 18
    assert pl.read_csv(tmp_path / "wf_grid_config_consistency.csv").height == 0


@pytest.mark.parametrize(("args", "expected"), [
    (("2020-12-31, 2019-12-31,2020-12-31", None, None, None), [A, B]),
    ((None, None, None, None), None),
    # overshoot: 2014, 2016, 2018 keep 12-31; 2020 > 2019, so the final date is appended
    ((None, "2014-12-31", "2019-06-30", 2), ["2014-12-31", "2016-12-31", "2018-12-31",
                                             "2019-06-30"]),
    # reached exactly: the final year gets the START's month/day, the final date is not added
    ((None, "2015-06-30", "2018-12-31", 1), ["2015-06-30", "2016-06-30", "2017-06-30",
                                             "2018-06-30"]),
    ((None, "2015-06-30", "2021-03-31", 3), ["2015-06-30", "2018-06-30", "2021-06-30"]),
    ((None, "2016-02-29", "2018-12-31", 1), ["2016-02-29", "2017-02-28", "2018-02-28"]),
    ((None, date(2019, 12, 31), date(2019, 12, 31), 5), [A]),
])
def test_select_train_ends(args, expected) -> None:
    assert wfa.select_train_ends(*args) == expected


@pytest.mark.parametrize(("args", "message"), [
    ((None, "2015-06-30", None, 1), "missing train_end_final"),
    ((None, None, "2020-12-31", None), "together"),
    (("2020-12-31", "2015-06-30", None, None), "not both"),
    (("2020-13-01", None, None, None), "not an ISO date"),
    ((None, "2015-06-30", "2020-12-31", 0), "step_years"),
    ((None, "2021-06-30", "2020-12-31", 1), "after"),
])
def test_select_train_ends_errors(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        wfa.select_train_ends(*args)


# ---------------------------------------------------------------------------- real folders


@pytest.fixture(scope="module")
def wf_folder(tmp_path_factory: pytest.TempPathFactory):
    """Two real split grids (the first 150 and all 250 days of the synthetic flow rows), a
    split whose real grid had no successful combo (its rows lack the state column: FAILED) and
    one that failed upstream, aggregated into a walk-forward grid folder."""
    settings, base = load_settings(), _inputs()
    root = tmp_path_factory.mktemp("wfgrid") / "wfgrid-test"
    dims = GridDimensions(hold_bars=(3, 10), fee_bps_per_side=(0.0, 10.0))
    cut = {A: date(2015, 5, 31), B: date(2015, 12, 31)}
    dirs, outcomes = {}, {}
    for train_end, last in cut.items():
        inputs = replace(base, rows=base.rows.filter(pl.col("trade_date") <= last),
                         identity={"case": "wf", "train_end": train_end})
        outcomes[train_end] = run_grid(settings, [GridSource(inputs)], dims,
                                       GridOptions(tag=f"split-{train_end}"),
                                       folder=root / "splits" / train_end)
        dirs[train_end] = outcomes[train_end].output_dir
    by_split = [{"train_end": t, "status": "SUCCESS", "grid_run_dir": str(d), "error": None}
                for t, d in dirs.items()]
    broken = replace(base, rows=base.rows.drop("flow_state_code"), identity={"case": "bad"})
    failed = run_grid(settings, [GridSource(broken)], dims, GridOptions(tag="bad"),
                      folder=root / "splits" / "2021-06-30").output_dir
    by_split.append({"train_end": "2021-06-30", "status": "FAILED",
                     "grid_run_dir": str(failed), "error": "no successful combo"})
    by_split.append({"train_end": "2021-12-31", "status": "FAILED_UPSTREAM",
                     "grid_run_dir": None, "error": "upstream split failed"})
    summary = wfa.write_wf_aggregates(root, by_split, dirs, {
        "wf_grid_id": "wfgrid-test", "wf_run_dir": "/wf/run", "sources": ["flow"],
        "selected_train_ends": [A, B, "2021-06-30", "2021-12-31"], "tag": "t",
        "min_successful_splits": 1, "started_ts": "2026-01-01T00:00:00+00:00"})
    return root, summary, outcomes


def test_write_wf_aggregates_files_and_summary(wf_folder) -> None:
    root, summary, outcomes = wf_folder
    for name in ("wf_grid_by_split.parquet", "wf_grid_by_split.csv", "wf_grid_manifest.json",
                 "wf_grid_failures.json", "wf_grid_summary.json",
                 "wf_grid_config_aggregate.parquet", "wf_grid_config_aggregate.csv",
                 "wf_grid_source_summary.parquet", "wf_grid_source_summary.csv",
                 "wf_grid_source_dimension_summary.csv", "wf_grid_config_consistency.csv",
                 "wf_grid_winner_stability.csv", "wf_grid_cost_fragility_summary.csv",
                 "wf_grid_tail_risk_summary.csv", "wf_overlay_split_summary.csv",
                 "wf_overlay_source_summary.csv", "wf_overlay_effectiveness_summary.csv",
                 "wf_grid_report.md"):
        assert (root / name).is_file(), name
    assert json.loads((root / "wf_grid_summary.json").read_text()) == summary
    assert (summary["splits_total"], summary["splits_successful"], summary["splits_failed"]) \
        == (4, 2, 2)
    assert summary["wf_grid_id"] == "wfgrid-test" and summary["tag"] == "t"
    assert summary["started_ts"] == "2026-01-01T00:00:00+00:00" and summary["finished_ts"]
    dsr = {t: o.summary["overfitting"]["flow"]["dsr"] for t, o in outcomes.items()}
    assert summary["overfitting_by_split"] == [
        {"train_end": t, "source_type": "flow", "dsr": dsr[t],
         "pbo": outcomes[t].summary["overfitting"]["flow"]["pbo"],
         "fluke_risk": outcomes[t].summary["overfitting"]["flow"]["fluke_risk"]}
        for t in (A, B)]
    assert summary["dsr_median"] == pytest.approx(statistics.median(dsr.values()))
    manifest = json.loads((root / "wf_grid_manifest.json").read_text())
    assert manifest["source_wf_run_dir"] == "/wf/run" and len(manifest["splits"]) == 4
    failures = json.loads((root / "wf_grid_failures.json").read_text())
    assert [(f["train_end"], f["level"], f["status"]) for f in failures] == [
        ("2021-06-30", "split", "FAILED"), ("2021-12-31", "split", "FAILED_UPSTREAM")] + [
        ("2021-06-30", "combo", "FAILED")] * 4
    assert "flow_state_code" in failures[-1]["error_message"]
    assert failures[1]["error_message"] == "upstream split failed"


def test_by_split_rows_come_from_each_split_grid(wf_folder) -> None:
    root, _, outcomes = wf_folder
    by_split = pl.read_parquet(root / "wf_grid_by_split.parquet")
    assert by_split.columns[:len(wfa.BY_SPLIT_SCHEMA)] == list(wfa.BY_SPLIT_SCHEMA)
    for train_end, out in outcomes.items():
        row = _row(by_split, train_end=train_end)
        block = out.summary["overfitting"]["flow"]
        assert row["best_source_type"] == "flow" and row["best_combo_id"] == \
            block["best_combo_id"]
        assert (row["dsr"], row["pbo"], row["fluke_risk"]) == (
            block["dsr"], block["pbo"], block["fluke_risk"])
        assert row["successful_combos"] == 4 and row["failed_combos"] == 0
        assert row["robustness_score_v2_mean"] == pytest.approx(
            out.metrics["robustness_score_v2"].mean())
    failed = _row(by_split, train_end="2021-06-30")  # counts from its grid, nothing stacked
    assert (failed["successful_combos"], failed["failed_combos"]) == (0, 4)
    assert failed["robustness_score_v2_mean"] is None and failed["dsr"] is None
    upstream = _row(by_split, train_end="2021-12-31")
    assert upstream["status"] == "FAILED_UPSTREAM" and upstream["successful_combos"] is None


def test_aggregates_of_real_folders_match_an_independent_count(wf_folder) -> None:
    root, _, outcomes = wf_folder
    consistency = pl.read_csv(root / "wf_grid_config_consistency.csv")
    ranks: dict[int, list[int]] = {}
    for out in outcomes.values():  # dense rank by hand: position among distinct scores
        scores = sorted(set(out.metrics["robustness_score_v2"].to_list()), reverse=True)
        for r in out.metrics.iter_rows(named=True):
            ranks.setdefault((r["hold_bars"], r["fee_bps_per_side"]), []).append(
                scores.index(r["robustness_score_v2"]) + 1)
    assert consistency.height == 4
    for r in consistency.iter_rows(named=True):
        mine = ranks[(r["hold_bars"], r["fee_bps_per_side"])]
        assert r["split_count"] == 2 and r["median_rank"] == statistics.median(mine)
        assert r["rank_std"] == pytest.approx(statistics.stdev(mine))
        assert r["top_quartile_hits"] == sum(k <= 1 for k in mine)  # ceil(4 / 4) = 1
    winners = pl.read_csv(root / "wf_grid_winner_stability.csv")
    for train_end, out in outcomes.items():
        exp = _row(winners, train_end=train_end, metric="expectancy")
        assert exp["winner_source_type"] == "flow"
        assert exp["winner_value"] == pytest.approx(out.metrics["expectancy"].max())
    source = pl.read_csv(root / "wf_grid_source_summary.csv").row(0, named=True)
    assert source["coverage_ratio"] == pytest.approx(2 / 4)
    assert source["winner_count_by_metric_robustness_v2"] == 2
    report = (root / "wf_grid_report.md").read_text()
    assert "Deflated Sharpe Ratio" in report and "Probability of Backtest Overfitting" in report
    assert "## Config consistency (top 10)" in report and "FAILED_UPSTREAM" in report
