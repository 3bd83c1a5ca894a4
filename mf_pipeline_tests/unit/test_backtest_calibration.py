"""Execution-realism calibration (backtest_ops.md §7.7): hand-computed values on tiny frames,
the vectorised threshold sweep against one ``apply_execution`` per combination, and the step's
fixes of fault 28 (``--no-by-year``, rolling windows before the sample) and 19.

The hand-computed cases use the ``mixed`` frame of the execution tests (its table is in that
module's docstring) with min_price 5, min_dollar_vol 1000, max_vol 0.10, history 2, window 1:

    row  close  hist  fails            candidate   suppressed
    A0   10     1     warmup           yes         yes
    A1   4      2     price            yes         yes
    A4   4      5     price, liq, vol  yes         yes
    A5   10     6     -                yes         no
    B1   20     2     -                yes         no
"""

from __future__ import annotations

import json
import math
import os
from datetime import date, timedelta
from itertools import product

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.backtest import calibration as cal
from mf_pipeline.lib.backtest.execution import ExecutionParams, apply_execution
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.lib.steps.backtest import calibrate as step
from mf_pipeline.lib.steps.backtest.options import backtest_options
from mf_pipeline.lib.steps.backtest.run import BacktestInputs
from mf_pipeline_tests.unit.test_backtest_execution import MIXED_PARAMS, mixed
from mf_pipeline_tests.unit.test_grid_engine import _inputs


@pytest.fixture(scope="module")
def exe() -> pl.DataFrame:
    return apply_execution(mixed(), MIXED_PARAMS).frame


# --------------------------------------------------------------------------- source type


@pytest.mark.parametrize(("columns", "state_col", "expected"), [
    (["hmm_state", "flow_state_code", "cluster_id"], None, "hmm"),
    (["hmm_state_filtered"], None, "hmm"),
    (["flow_state_code", "cluster_id"], None, "flow"),
    (["cluster_id", "my_state"], "my_state", "cluster"),
    (["my_state"], "my_state", "hmm"),
])  # fmt: skip
def test_detect_source_type_takes_the_first_state_column_present(columns, state_col,
                                                                  expected) -> None:
    assert cal.detect_source_type(columns, state_col) == expected


def test_detect_source_type_without_state_column_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match="--source-type"):
        cal.detect_source_type(["ticker", "close"], "absent")


# --------------------------------------------------------------------------- current profile


def test_waterfall_counts_by_hand(exe) -> None:
    wf = cal.waterfall(exe)
    assert (wf["candidate_signals_total"], wf["eligible_signals_total"],
            wf["suppressed_signals_total"]) == (5, 2, 3)
    assert wf["eligible_rate"] == pytest.approx(0.4)
    assert wf["suppressed_rate"] == pytest.approx(0.6)
    # non-exclusive: A4 counts under price, liquidity and vol
    counts = {n: wf[f"suppressed_by_{n}_count"] for n in ("price", "liquidity", "vol", "warmup")}
    assert counts == {"price": 2, "liquidity": 1, "vol": 1, "warmup": 1}
    assert wf["suppressed_by_price_share"] == pytest.approx(2 / 3)
    assert wf["suppressed_by_warmup_share"] == pytest.approx(1 / 3)
    assert wf["first_fail_precedence"] == ["price_floor", "liquidity_floor", "vol_cap", "warmup"]


def test_waterfall_without_candidates_has_zero_shares(exe) -> None:
    none = exe.with_columns(pl.lit(False).alias(c) for c in (
        "exec_candidate_before", "exec_candidate_after", "exec_suppressed_signal"))
    wf = cal.waterfall(none)
    assert wf["candidate_signals_total"] == 0
    assert wf["eligible_rate"] == wf["suppressed_rate"] == wf["suppressed_by_vol_share"] == 0.0


def test_reason_overlap_groups_suppressed_rows_by_their_four_flags(exe) -> None:
    got = cal.reason_overlap(exe)
    assert got.columns == ["price_fail", "liquidity_fail", "vol_fail", "warmup_fail", "count",
                           "share_suppressed"]
    assert got.rows() == [(True, True, True, False, 1, 1 / 3),   # A4
                          (True, False, False, False, 1, 1 / 3),  # A1
                          (False, False, False, True, 1, 1 / 3)]  # A0


def test_first_fail_follows_the_precedence(exe) -> None:
    # A4 fails price, liquidity and vol: its first failure is the price floor
    assert cal.first_fail(exe).rows() == [("price_floor", 2, 2 / 3), ("warmup", 1, 1 / 3)]
    later = pl.col("exec_filter_liquidity_fail") | pl.col("exec_filter_warmup_fail")
    no_price = exe.with_columns(pl.lit(False).alias("exec_filter_price_fail"),
                                (pl.col("exec_candidate_before") & later)
                                .alias("exec_suppressed_signal"))
    # A1 is no longer suppressed; A4's first failure is now liquidity; ties by precedence
    assert cal.first_fail(no_price).rows() == [("liquidity_floor", 1, 0.5), ("warmup", 1, 0.5)]


def test_distributions_by_hand(exe) -> None:
    got = cal.distributions(exe)
    assert got.columns == list(cal.DISTRIBUTION_COLUMNS)
    assert got.height == len(cal.SUBSETS) * len(cal.METRICS)
    assert got["year"].null_count() == got.height
    row = got.filter(subset="candidate_all", metric="close").row(0, named=True)
    # closes 4, 4, 10, 10, 20; linear quantiles at position q * 4
    assert (row["count"], row["finite_count"], row["null_count"]) == (5, 5, 0)
    assert (row["min"], row["p10"], row["p25"], row["p50"], row["p75"], row["max"]) == (
        4.0, 4.0, 4.0, 10.0, 10.0, 20.0)
    assert row["p90"] == pytest.approx(16.0)  # 10 + 0.6 * (20 - 10)
    assert row["p99"] == pytest.approx(19.6)
    assert row["mean"] == pytest.approx(9.6)
    assert row["std"] == pytest.approx(math.sqrt(171.2 / 4))
    hist = got.filter(subset="candidate_eligible", metric="history_bars").row(0, named=True)
    assert (hist["mean"], hist["std"]) == (4.0, pytest.approx(math.sqrt(8.0)))  # 6 and 2
    single = got.filter(subset="suppressed_vol", metric="vol_metric").row(0, named=True)
    assert (single["count"], single["p50"], single["std"]) == (1, 0.2, 0.0)  # A4 alone


def test_distributions_of_an_empty_subset_keep_the_row(exe) -> None:
    none = apply_execution(mixed(), ExecutionParams(dollar_vol_window=1)).frame
    row = cal.distributions(none).filter(subset="suppressed_price", metric="close").row(
        0, named=True)
    assert (row["count"], row["finite_count"], row["mean"], row["p50"]) == (0, 0, None, None)
    by_year = cal.distributions(none, by_year=True)
    assert by_year.filter(subset="suppressed_price").is_empty()
    assert by_year.filter(subset="candidate_all")["year"].unique().sort().to_list() == [2023, 2024]


def test_distributions_by_year(exe) -> None:
    got = cal.distributions(exe, by_year=True).filter(subset="candidate_all", metric="close")
    assert got.select("year", "count", "mean").rows() == [(2023, 2, 7.0), (2024, 3, 34 / 3)]


def test_filter_summary_recounts_the_rows_and_adds_the_candidate_rate(exe) -> None:
    base = apply_execution(mixed(), MIXED_PARAMS).summary
    got = cal.filter_summary(exe, base)
    for key in ("rows_total", "rows_eligible", "eligibility_rate",
                "candidate_signals_before_filters", "candidate_signals_after_filters",
                "suppressed_by_reason_count", "exec_suppressed_by_price_share"):
        assert got[key] == base[key], key
    assert got["candidate_eligibility_rate"] == pytest.approx(2 / 5)
    assert got["eligibility_rate"] == pytest.approx(2 / 8)  # row-level: A5, B1 of 8 rows
    half = cal.filter_summary(exe.filter(pl.col("ticker") == "B"), base)
    assert (half["rows_total"], half["candidate_signals_before_filters"]) == (2, 1)


def test_units_from_the_filter_summary() -> None:
    summary = apply_execution(mixed(), ExecutionParams(max_vol_pct=8.0)).summary
    got = cal.units(summary, "auto")
    assert got == {"vol_metric_source": "atr_pct_14", "vol_unit_detected": "decimal",
                   "vol_input_unit_mode": "auto", "vol_threshold_input": 8.0,
                   "vol_threshold_effective_decimal": 0.08,
                   "vol_threshold_effective_pct": 8.0, "qa_warnings": []}


# --------------------------------------------------------------------------- sweep


def _universe(seed: int = 3) -> pl.DataFrame:
    """Three tickers across a year end: prices around the floors, some null volumes, ATR in
    percent points (the unit guess says percent_points), candidates and non-candidates."""
    rng = np.random.default_rng(seed)
    frames = []
    for t, n in (("A", 70), ("B", 55), ("C", 12)):
        volume = rng.uniform(1e3, 4e5, n)
        volume[rng.random(n) < 0.05] = np.nan
        atr = rng.uniform(1.0, 35.0, n)
        atr[rng.random(n) < 0.05] = np.nan
        frames.append(pl.DataFrame({
            "ticker": t, "trade_date": [date(2023, 11, 1) + timedelta(days=i) for i in range(n)],
            "close": rng.uniform(0.5, 9.0, n), "volume": volume, "atr_pct_14": atr,
            "signal_eligible": rng.random(n) < 0.7,
            "state_direction_hint": rng.choice(["LONG_BIAS", "SHORT_BIAS", "UNCONFIRMED"], n),
        }).with_columns(pl.col("volume", "atr_pct_14").fill_nan(None)))  # fmt: skip
    return pl.concat(frames).with_columns(high=pl.col("close") * 1.05, low=pl.col("close") * 0.95)


AXES = cal.SweepAxes(min_price=(None, 0.0, 2.0, 5.0, 2.0),
                     min_dollar_vol20=(None, 0.0, 1e5, 6e5),
                     max_vol_pct=(None, 8.0, 30.0, 0.12),
                     min_history_bars=(None, 20, 50))  # fmt: skip


def _reference(frame: pl.DataFrame, combo: tuple) -> dict:
    """One ``apply_execution`` with the combo's thresholds: the sweep row it must equal."""
    price, dv, vol, hist = combo
    res = apply_execution(frame, ExecutionParams("sweep", price, dv, vol, hist))
    s, f = res.summary, res.frame
    kept = f.filter("exec_candidate_after")
    years = (f.filter("exec_candidate_before")
             .group_by(pl.col("trade_date").dt.year())
             .agg((pl.col("exec_candidate_after").sum() / pl.len()).alias("r")))
    return {
        "candidate_signals_before": s["candidate_signals_before_filters"],
        "candidate_signals_after": s["candidate_signals_after_filters"],
        "suppressed_signal_count": s["suppressed_signal_count"],
        "eligibility_rate": s["eligibility_rate"],
        "candidate_eligibility_rate": s["candidate_signals_after_filters"]
        / s["candidate_signals_before_filters"],
        "suppressed_signal_share": s["suppressed_signal_share"],
        **{f"suppressed_by_{n}_share": s[f"exec_suppressed_by_{n}_share"]
           for n in ("price", "liquidity", "vol", "warmup")},
        "max_reason_share": max(s[f"exec_suppressed_by_{n}_share"]
                                for n in ("price", "liquidity", "vol", "warmup")),
        "eligible_avg_close": kept["close"].mean(),
        "eligible_avg_dollar_vol_20": kept["exec_dollar_vol_20"].mean(),
        "eligible_avg_vol_pct": kept["exec_vol_pct"].mean(),
        "year_eligibility_min": years["r"].min(), "year_eligibility_max": years["r"].max(),
    }  # fmt: skip


def test_every_sweep_row_equals_one_filter_run_with_its_thresholds() -> None:
    frame = _universe()
    base = apply_execution(frame, ExecutionParams("lite", 2.0, 1e6, 0.12, 50))
    assert base.summary["vol_unit_detected"] == "percent_points"
    got = cal.sweep(cal.RowQuantities.of(base.frame), AXES, "auto")
    combos = list(product(AXES.min_price, AXES.min_dollar_vol20, AXES.max_vol_pct,
                          AXES.min_history_bars))
    assert got.height == len(combos) == 240
    assert got["combo_id"].to_list()[:2] == ["c0001", "c0002"]
    checked = 0
    for row, combo in zip(got.iter_rows(named=True), combos, strict=True):
        assert (row["min_price"], row["min_dollar_vol20"], row["max_vol_pct_input"],
                row["min_history_bars"]) == combo
        for key, value in _reference(frame, combo).items():
            if value is None:
                assert row[key] is None, (combo, key)
            else:
                assert row[key] == pytest.approx(value, rel=1e-12), (combo, key)
        checked += 1
    assert checked == 240
    # the axes were not degenerate: rates spread and every reason shows up somewhere
    assert got["eligibility_rate"].min() < 0.2 < 0.9 < got["eligibility_rate"].max()
    for n in ("price", "liquidity", "vol", "warmup"):
        assert got[f"suppressed_by_{n}_share"].max() > 0, n


def test_floor_levels_by_hand() -> None:
    x = np.array([1.0, 2.0, 2.5, np.nan, 7.0])
    level, rank, n = cal._floor_levels(x, [2.0, None, 5.0, 2.0])
    # loosest first: None, 2, 5 -> levels 0..3; a row passes t iff level > rank(t)
    assert level.tolist() == [1, 2, 2, 1, 3]
    assert rank.tolist() == [1, 0, 2, 1]
    assert n == 4
    passes = level[:, None] > rank[None, :]
    assert passes[:, 0].tolist() == [False, True, True, False, True]  # x >= 2, NaN fails
    assert passes[:, 1].all()  # None: filter off


def test_grid_table_sorts_by_thresholds_with_no_cap_first_and_adds_units() -> None:
    frame = _universe()
    base = apply_execution(frame, ExecutionParams("lite", 2.0, 1e6, 0.12, 50))
    axes = cal.SweepAxes((5.0, 0.0), (0.0,), (30.0, None, 0.12), (50, 20))
    grid = cal.grid_table(cal.sweep(cal.RowQuantities.of(base.frame), axes, "auto"),
                          base.summary)
    assert grid.select("min_price", "max_vol_pct_input", "min_history_bars").rows()[:6] == [
        (0.0, None, 20), (0.0, None, 50), (0.0, 0.12, 20), (0.0, 0.12, 50), (0.0, 30.0, 20),
        (0.0, 30.0, 50)]
    assert grid["combo_id"].to_list()[:2] == ["c0010", "c0009"]  # product order kept as ids
    caps = grid.filter(pl.col("min_price") == 0.0).select(
        "vol_threshold_input", "vol_threshold_effective_decimal", "vol_threshold_effective_pct"
    ).unique(maintain_order=True).rows()
    assert caps == [(None, None, None), (0.12, 0.12, 12.0), (30.0, 0.30, 30.0)]
    assert set(grid["vol_unit_detected"]) == {"percent_points"}
    summary = cal.grid_summary(grid)
    assert summary["combos_total"] == 12
    assert summary["eligibility_rate_p50"] == pytest.approx(grid["eligibility_rate"].median())


# --------------------------------------------------------------------------- recommendations

TARGETS = cal.Targets({"lite": (0.20, 0.60), "strict": (0.05, 0.30)}, min_eligible_signals=100,
                      max_single_reason_share=0.95, top_k=5)


def _grid(rows: list[tuple]) -> pl.DataFrame:
    """(combo_id, eligibility_rate, candidate_signals_after, max_reason_share)."""
    return pl.DataFrame(rows, schema={"combo_id": pl.String, "eligibility_rate": pl.Float64,
                                      "candidate_signals_after": pl.Int64,
                                      "max_reason_share": pl.Float64},
                        orient="row").with_columns(
        pl.lit(1.0).alias("min_price"), pl.lit(0.0).alias("min_dollar_vol20"),
        pl.lit(None, pl.Float64).alias("max_vol_pct_input"), pl.lit(20).alias("min_history_bars"),
        (pl.col("candidate_signals_after") / 1000).alias("candidate_eligibility_rate"),
        pl.lit(0.1).alias("suppressed_by_vol_share"))  # fmt: skip


def test_recommendation_scores_and_band_edges_by_hand() -> None:
    grid = _grid([
        ("c1", 0.40, 250, 0.50),   # mid: 1 - 0 + 0.25 * 250/500 = 1.125
        ("c2", 0.20, 600, 0.97),   # reason above 0.95: out of the band pool
        ("c3", 0.60, 500, 0.95),   # upper edge and reason edge in: 1 - 0.2 + 0.25 = 1.05
        ("c4", 0.61, 1000, 0.10),  # just above the band
        ("c5", 0.30, 99, 0.10),    # too few kept signals
        ("c6", 0.20, 100, 0.20),   # lower edges in: 1 - 0.2 + 0.25 * 0.2 = 0.85
    ])
    lite = cal.recommendations(grid, TARGETS)["lite"]
    assert lite["pool"] == "in_band" and lite["status"] == "ok"
    assert [c["combo_id"] for c in lite["top_candidates"]] == ["c1", "c3", "c6"]
    assert [c["score"] for c in lite["top_candidates"]] == pytest.approx([1.125, 1.05, 0.85])
    assert lite["recommended"]["combo_id"] == "c1"
    assert lite["target_eligibility_band"] == [0.20, 0.60]
    assert "row-level" in lite["target_eligibility_basis"]
    strict = cal.recommendations(grid, TARGETS)["strict"]
    assert [c["combo_id"] for c in strict["top_candidates"]] == ["c6"]  # c2: reason, c5: count
    # strict: mid 0.175, c6 distance 0.025 -> 1 - 0.025 + 0.05
    assert strict["recommended"]["score"] == pytest.approx(1.025)
    scored = cal.scored(grid, 0.05, 0.30, TARGETS).filter(combo_id="c2").row(0, named=True)
    # c2: 1 - 0.025 + 0.25 * 1 - 0.5 * (0.97 - 0.95)
    assert scored["score"] == pytest.approx(1.215)


def test_recommendation_pools_fall_back_and_ties_are_stable() -> None:
    enough = _grid([("c3", 0.9, 300, 0.5), ("c1", 0.9, 300, 0.5), ("c2", 0.95, 400, 0.99),
                    ("c4", 0.1, 50, 0.1)])
    lite = cal.recommendations(enough, TARGETS)["lite"]
    assert lite["pool"] == "min_eligible_signals"
    # c1/c3 tie on score, kept signals and distance: combo_id decides; c4 is not in the pool
    # c2: 1 - 0.55 + 0.2 - 0.5 * 0.04 = 0.63 < c1: 1 - 0.5 + 0.15 = 0.65
    assert [c["combo_id"] for c in lite["top_candidates"]] == ["c1", "c3", "c2"]
    few = _grid([("c1", None, 10, 0.0), ("c2", 0.9, 0, 0.0), ("c3", 0.5, 20, 1.0)])
    lite = cal.recommendations(few, TARGETS)["lite"]
    assert lite["pool"] == "all_rows"
    # c3: 1 - 0.1 + 0.25 * 20/500 - 0.5 * 0.05 = 0.885; c2: 1 - 0.5 + 0 = 0.5; c1 null last
    assert [c["combo_id"] for c in lite["top_candidates"]] == ["c3", "c2", "c1"]
    assert lite["top_candidates"][2]["score"] is None
    top2 = cal.recommendations(few, cal.Targets(TARGETS.bands, top_k=2))["lite"]
    assert len(top2["top_candidates"]) == 2
    empty = cal.recommendations(few.clear(), TARGETS)["strict"]
    assert (empty["status"], empty["recommended"]) == ("no_candidate", None)


def test_targets_from_settings() -> None:
    t = cal.Targets.of(load_settings().backtest_execution_calibration)
    assert (t.bands["lite"], t.bands["strict"], t.min_eligible_signals,
            t.max_single_reason_share, t.top_k) == ((0.2, 0.6), (0.05, 0.3), 100, 0.95, 5)


# --------------------------------------------------------------------------- HMM inference


def test_inferred_hmm_directions_from_the_forward_return_mean() -> None:
    frame = pl.DataFrame({"state_id": [0, 0, 1, 1, 2, 2, 3],
                          "fwd_ret_10": [0.02, -0.01, -0.03, float("nan"), 0.01, -0.01, None]})
    assert cal.inferred_hmm_directions(frame) == {0: "LONG_BIAS", 1: "SHORT_BIAS",
                                                  2: "UNCONFIRMED", 3: "UNCONFIRMED"}
    with pytest.raises(ValueError, match="fwd_ret_10"):
        cal.inferred_hmm_directions(frame.drop("fwd_ret_10"))
    with pytest.raises(ValueError, match="no state"):
        cal.inferred_hmm_directions(frame.filter(pl.col("state_id") >= 2))


# --------------------------------------------------------------------------- the step


def test_rolling_quantities_are_computed_before_the_sample(isolated) -> None:
    settings = load_settings()
    options = backtest_options(settings, exec_profile="lite")
    inputs = _inputs()
    _, full = step.calibration_rows(settings, inputs, options, None, None, None)
    prep, part = step.calibration_rows(settings, inputs, options, date(2015, 2, 1), None, 0.3)
    assert part.height == int(full.filter(pl.col("trade_date") >= date(2015, 2, 1)).height
                              * 0.3)
    keys, cols = ["ticker", "trade_date"], ["exec_dollar_vol_20", "exec_history_bars"]
    joined = part.select(*keys, *cols).join(full.select(*keys, *cols), on=keys, suffix="_full")
    assert joined.height == part.height
    for col in cols:
        assert joined[col].to_list() == joined[f"{col}_full"].to_list(), col
    assert joined["exec_history_bars"].min() > 30  # not restarted at the date filter
    # the old order (sample, then roll) would have changed them
    sampled_bars = prep.exe.frame.join(part.select(keys), on=keys).select(mixed().columns)
    resampled = apply_execution(sampled_bars, ExecutionParams("lite", 2.0, 1e6, 0.12, 50)).frame
    assert resampled["exec_history_bars"].max() < joined["exec_history_bars"].max()
    assert resampled["exec_dollar_vol_20"].null_count() > part["exec_dollar_vol_20"].null_count()


def test_calibrate_writes_every_file_and_counts_like_the_filter(isolated) -> None:
    settings = load_settings()
    options = backtest_options(settings, exec_profile="lite")
    summary = step.calibrate(settings, _inputs(), options, sample_frac=None, start_date=None,
                             end_date=None, by_year=None, out_dir=None)
    folder = settings.artifacts_root / "execution_realism_calibration" / summary["run_id"]
    assert summary["output_dir"] == str(folder) and summary["run_id"].startswith("exec-calib-")
    assert sorted(p.name for p in folder.iterdir()) == sorted([
        "execution_calibration_distribution.csv", "execution_calibration_distribution_by_year.csv",
        "execution_calibration_waterfall.json", "execution_calibration_reason_overlap.csv",
        "execution_calibration_first_fail.csv", "execution_calibration_units.json",
        "execution_calibration_grid.csv", "execution_calibration_grid_summary.json",
        "execution_calibration_recommendations.json", "execution_calibration_summary.json",
        "execution_calibration_report.md", "execution_calibration_report.html"])
    assert summary["by_year"] is True and summary["sampling_after_rolling"] is True
    assert summary["started_ts"] <= summary["finished_ts"]
    # the current profile's counts equal the backtest filter on the same (unsampled) rows
    prep, _ = step.calibration_rows(settings, _inputs(), options, None, None, None)
    ref = apply_execution(prep.exe.frame.select(mixed().columns), ExecutionParams(
        "lite", 2.0, 1e6, 0.12, 50)).summary
    ex = summary["execution_summary"]
    for key in ("rows_total", "rows_eligible", "eligibility_rate",
                "candidate_signals_before_filters", "candidate_signals_after_filters"):
        assert ex[key] == ref[key], key
    assert summary["candidate_eligibility_rate"] == pytest.approx(
        ref["candidate_signals_after_filters"] / ref["candidate_signals_before_filters"])
    grid = pl.read_csv(folder / "execution_calibration_grid.csv")
    assert grid.height == 280 and "candidate_eligibility_rate" in grid.columns
    saved = json.loads((folder / "execution_calibration_summary.json").read_text())
    assert saved["sweep_summary"]["combos_total"] == 280
    # the same inputs and options land in the same folder
    again = step.calibrate(settings, _inputs(), options)
    assert again["run_id"] == summary["run_id"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(("default", "flag", "written"), [
    (True, None, True), (True, False, False), (False, None, False), (False, True, True),
])  # fmt: skip
def test_by_year_flag_wins_over_the_setting(isolated, monkeypatch, tmp_path, default, flag,
                                            written) -> None:
    monkeypatch.setenv("MF_PIPELINE_BACKTEST_EXECUTION_CALIBRATION__BY_YEAR_DEFAULT",
                       str(default).lower())
    settings = load_settings()
    assert settings.backtest_execution_calibration.by_year_default is default
    out = tmp_path / "calib"
    summary = step.calibrate(settings, _inputs(), backtest_options(settings), by_year=flag,
                             out_dir=out)
    assert summary["by_year"] is written
    assert (out / "execution_calibration_distribution_by_year.csv").exists() is written


def test_calibrate_refuses_bad_windows(isolated) -> None:
    settings = load_settings()
    options = backtest_options(settings)
    with pytest.raises(ValueError, match="sample-frac"):
        step.calibrate(settings, _inputs(), options, sample_frac=0.0)
    with pytest.raises(ValueError, match="after --end-date"):
        step.calibrate(settings, _inputs(), options, start_date="2015-06-01",
                       end_date="2015-01-01")


def test_calibrate_a_window_without_rows_writes_empty_but_valid_files(isolated) -> None:
    settings = load_settings()
    summary = step.calibrate(settings, _inputs(), backtest_options(settings, exec_profile="lite"),
                             start_date=date(2030, 1, 1))
    assert summary["rows_post_preparation"] == 0
    assert summary["waterfall"]["candidate_signals_total"] == 0
    assert summary["eligibility_rate"] is None
    folder = settings.artifacts_root / "execution_realism_calibration" / summary["run_id"]
    grid = pl.read_csv(folder / "execution_calibration_grid.csv")
    assert grid.height == 280 and grid["eligibility_rate"].null_count() == 280
    recs = json.loads((folder / "execution_calibration_recommendations.json").read_text())
    assert recs["lite"]["pool"] == "all_rows"


def test_hmm_without_direction_source_infers_from_forward_returns(isolated) -> None:
    settings = load_settings()
    base = _inputs().rows.rename({"flow_state_code": "hmm_state_filtered"})
    fwd = (pl.col("close").shift(-10).over("ticker") / pl.col("close") - 1)
    inputs = BacktestInputs(rows=base.with_columns(fwd.alias("fwd_ret_10")), input_type="hmm",
                            tag="t", identity={"case": "hmm"})
    summary = step.calibrate(settings, inputs, backtest_options(settings, exec_profile="lite"))
    assert summary["mapping_summary"]["mapping_source"] == step.INFERRED_SOURCE
    assert summary["in_sample"] is True
    assert summary["waterfall"]["candidate_signals_total"] > 0


def test_latest_is_the_newest_finished_ts_not_the_newest_folder(isolated) -> None:
    settings = load_settings()
    with pytest.raises(FileNotFoundError, match="no finished calibration"):
        step.latest_calibration(settings.artifacts_root)
    options = backtest_options(settings)
    first = step.calibrate(settings, _inputs(), options, sample_frac=0.5)
    second = step.calibrate(settings, _inputs(), options, sample_frac=0.8)
    old = settings.artifacts_root / "execution_realism_calibration" / first["run_id"]
    future = os.path.getmtime(old) + 3600
    os.utime(old, (future, future))  # the older run now has the newest folder mtime
    assert step.latest_calibration(settings.artifacts_root).name == second["run_id"]


def test_report_is_rerendered_from_the_files(isolated) -> None:
    settings = load_settings()
    summary = step.calibrate(settings, _inputs(), backtest_options(settings, exec_profile="lite"))
    folder = settings.artifacts_root / "execution_realism_calibration" / summary["run_id"]
    report = folder / "execution_calibration_report.md"
    original = report.read_text()
    report.unlink()
    assert step.calibration_report(folder) == report
    text = report.read_text()
    assert text == original
    recs = json.loads((folder / "execution_calibration_recommendations.json").read_text())
    assert recs["lite"]["recommended"]["combo_id"] in text
    assert "ROW-level eligibility_rate" in text and "## Top 10 combos" in text
    (folder / "execution_calibration_grid.csv").unlink()
    with pytest.raises(FileNotFoundError, match="not a finished calibration"):
        step.calibration_report(folder)
