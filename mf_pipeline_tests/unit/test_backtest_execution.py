"""Execution-realism filter (backtest_ops.md §7.1-7.5): hand-computed values on tiny frames.

The main frame (``mixed``), window 1 so that dollar volume is the bar's own close x volume;
thresholds min_price 5, min_dollar_vol 1000, max_vol_pct 0.10 (decimal), history 2 bars:

    row  date        close vol  dv    atr   hist fails             reason            candidate?
    A0   2023-12-28  10    200  2000  0.05  1    warmup            warmup            yes
    A1   2023-12-29  4     500  2000  0.05  2    price             price_floor       yes
    A2   2024-01-02  10    50   500   0.05  3    liquidity         liquidity_floor   no (overlay)
    A3   2024-01-03  10    200  2000  0.20  4    vol               vol_cap           no (UNCONF.)
    A4   2024-01-04  4     50   200   0.20  5    price, liq, vol   multiple_reasons  yes (ovl. None)
    A5   2024-01-05  10    200  2000  0.05  6    -                 none              yes
    B0   2024-01-02  20    100  2000  null  1    vol, warmup       multiple_reasons  no (elig=None)
    B1   2024-01-03  20    100  2000  0.10  2    - (0.10 = cap)    none              yes
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.backtest.execution import (
    PROFILES,
    ExecutionParams,
    apply_execution,
    execution_block,
    resolve,
    trade_context,
    vol_threshold,
)

EXEC_COLS = [
    "exec_dollar_vol", "exec_dollar_vol_20", "exec_vol_raw_pct", "exec_vol_pct",
    "exec_history_bars", "exec_filter_price_fail", "exec_filter_liquidity_fail",
    "exec_filter_vol_fail", "exec_filter_warmup_fail", "exec_filter_any_fail",
    "execution_eligible", "execution_filter_reason", "execution_profile",
    "execution_filters_enabled",
]
MIXED_PARAMS = ExecutionParams("custom", 5.0, 1000.0, 0.10, 2, dollar_vol_window=1)


def d(y: int, m: int, dd: int) -> date:
    return date(y, m, dd)


def mixed() -> pl.DataFrame:
    rows = [  # ticker, date, close, volume, atr, signal_eligible, overlay_allow, direction
        ("A", d(2023, 12, 28), 10.0, 200.0, 0.05, True, True, "LONG_BIAS"),
        ("A", d(2023, 12, 29), 4.0, 500.0, 0.05, True, True, "SHORT_BIAS"),
        ("A", d(2024, 1, 2), 10.0, 50.0, 0.05, True, False, "LONG_BIAS"),
        ("A", d(2024, 1, 3), 10.0, 200.0, 0.20, True, True, "UNCONFIRMED"),
        ("A", d(2024, 1, 4), 4.0, 50.0, 0.20, True, None, "LONG_BIAS"),
        ("A", d(2024, 1, 5), 10.0, 200.0, 0.05, True, True, "LONG_BIAS"),
        ("B", d(2024, 1, 2), 20.0, 100.0, None, None, True, "LONG_BIAS"),
        ("B", d(2024, 1, 3), 20.0, 100.0, 0.10, True, True, "SHORT_BIAS"),
    ]
    df = pl.DataFrame(
        rows,
        schema=["ticker", "trade_date", "close", "volume", "atr_pct_14", "signal_eligible",
                "overlay_allow_signal", "state_direction_hint"],
        orient="row",
    )
    df = df.with_columns(high=pl.col("close") * 1.1, low=pl.col("close") * 0.9)
    return df.reverse()  # unsorted on purpose: the filter sorts by (ticker, trade_date)


def bars(closes: list[float], volumes: list[float | None], ticker: str = "A",
         **extra: list) -> pl.DataFrame:
    """One ticker, consecutive days, every row a LONG candidate."""
    n = len(closes)
    return pl.DataFrame({
        "ticker": [ticker] * n,
        "trade_date": [date(2024, 1, 1) + timedelta(days=i) for i in range(n)],
        "close": closes, "high": [c * 1.02 for c in closes], "low": [c * 0.98 for c in closes],
        "volume": pl.Series(volumes, dtype=pl.Float64),
        "signal_eligible": [True] * n, "state_direction_hint": ["LONG_BIAS"] * n, **extra,
    })


# ---------------------------------------------------------------- parameters (§7.1)

def test_resolve_profiles_overrides_and_settings() -> None:
    lite = resolve("lite", {})
    assert (lite.min_price, lite.min_dollar_vol_20, lite.max_vol_pct,
            lite.min_history_bars_for_execution) == (2.0, 1_000_000.0, 0.12, 50)
    assert lite.filters_enabled and lite.dollar_vol_window == 20
    strict = resolve("strict", {"min_price": 7, "max_vol_pct": None},
                     dollar_vol_window=10, dollar_vol_rolling_method="mean",
                     vol_input_unit_mode="percent_points", min_trades_required=12)
    assert strict.min_price == 7.0 and strict.max_vol_pct == 0.08  # None = flag not given
    assert (strict.min_dollar_vol_20, strict.min_history_bars_for_execution) == (5e6, 100)
    assert (strict.dollar_vol_window, strict.dollar_vol_rolling_method,
            strict.vol_input_unit_mode, strict.min_trades_required) == (10, "mean",
                                                                          "percent_points", 12)
    none = resolve("none", {})
    assert not none.filters_enabled and none.params_used() == {
        "min_price": None, "min_dollar_vol_20": None, "max_vol_pct": None,
        "min_history_bars_for_execution": None, "dollar_vol_window": 20,
        "dollar_vol_rolling_method": "median", "vol_input_unit_mode": "auto"}
    # a threshold of 0 is still a filter
    zero = resolve("none", {"min_dollar_vol_20": 0})
    assert zero.filters_enabled and zero.profile_name == "none"
    assert set(PROFILES) == {"none", "lite", "strict"}


def test_resolve_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown execution profile 'medium'"):
        resolve("medium", {})
    with pytest.raises(ValueError, match="unknown execution overrides"):
        resolve("lite", {"min_volume": 3})
    with pytest.raises(ValueError, match="unknown execution settings"):
        resolve("lite", {}, window=3)
    with pytest.raises(ValueError, match="dollar_vol_rolling_method"):
        resolve("lite", {}, dollar_vol_rolling_method="max")
    with pytest.raises(ValueError, match="vol_input_unit_mode"):
        ExecutionParams(vol_input_unit_mode="bps")
    custom = {"tiny": {"min_price": 1.0}}
    assert resolve("tiny", {}, profiles=custom).min_price == 1.0


# ---------------------------------------------------------------- per-row quantities (§7.2)

def test_rolling_median_and_mean_dollar_volume_need_a_full_window_per_ticker() -> None:
    a = bars([2.0] * 7, [1, 3, 8, None, 4, 5, 9])  # dollar volume 2 6 16 null 8 10 18
    b = bars([3.0] * 3, [1, float("nan"), 1], ticker="B")  # 3 NaN 3 -> NaN is missing
    frame = pl.concat([a, b])
    med = apply_execution(frame, ExecutionParams("m", min_dollar_vol_20=7.0, dollar_vol_window=3))
    f = med.frame
    assert f["exec_dollar_vol"].to_list() == [2, 6, 16, None, 8, 10, 18, 3, None, 3]
    assert f["exec_dollar_vol_20"].to_list() == [None, None, 6, None, None, None, 10,
                                                 None, None, None]
    assert f["exec_filter_liquidity_fail"].to_list() == [True] * 6 + [False] + [True] * 3
    mean = apply_execution(frame, ExecutionParams("m", min_dollar_vol_20=7.0,
                                                  dollar_vol_window=3,
                                                  dollar_vol_rolling_method="mean")).frame
    assert mean["exec_dollar_vol_20"].to_list() == [None, None, 8, None, None, None, 12,
                                                    None, None, None]
    assert mean["exec_filter_liquidity_fail"].to_list() == [True, True, False] + [True] * 3 + [
        False] + [True] * 3
    # a floor of 0 still fails rows without a full window
    zero = apply_execution(frame, ExecutionParams("z", min_dollar_vol_20=0.0,
                                                  dollar_vol_window=3)).frame
    assert zero["exec_filter_liquidity_fail"].to_list() == [True, True, False, True, True, True,
                                                            False, True, True, True]
    assert f["exec_history_bars"].to_list() == [1, 2, 3, 4, 5, 6, 7, 1, 2, 3]


def test_liquidity_filter_needs_a_volume_column() -> None:
    frame = bars([2.0] * 3, [1, 1, 1]).drop("volume")
    with pytest.raises(ValueError, match="volume"):
        apply_execution(frame, ExecutionParams("x", min_dollar_vol_20=1.0))
    out = apply_execution(frame, ExecutionParams("x", min_price=1.0)).frame  # not needed here
    assert out["exec_dollar_vol"].null_count() == 3
    with pytest.raises(ValueError, match="lacks columns"):
        apply_execution(frame.drop("signal_eligible"), ExecutionParams())


def test_vol_source_atr_or_range_fallback() -> None:
    frame = bars([10.0, 20.0, 0.0], [1, 1, 1], atr_pct_14=[None, float("nan"), None])
    frame = frame.with_columns(high=pl.Series([11.0, 21.0, 1.0]), low=pl.Series([9.0, 18.0, 0.0]))
    res = apply_execution(frame, ExecutionParams())
    assert res.summary["vol_metric_source"] == "range_pct_fallback"  # atr has no finite value
    assert res.frame["exec_vol_raw_pct"].to_list() == pytest.approx([0.2, 0.15, None],
                                                                    nan_ok=True)
    assert res.frame["exec_vol_raw_pct"][2] is None  # close 0 -> no range ratio
    assert res.summary["vol_raw_median"] == pytest.approx(0.175)
    withatr = apply_execution(frame.with_columns(atr_pct_14=pl.Series([None, 0.3, 0.1])),
                              ExecutionParams())
    assert withatr.summary["vol_metric_source"] == "atr_pct_14"
    assert withatr.frame["exec_vol_pct"].to_list() == [None, 0.3, 0.1]
    with pytest.raises(ValueError, match="high and low"):
        apply_execution(frame.drop("high"), ExecutionParams(max_vol_pct=0.1))
    off = apply_execution(frame.drop("high"), ExecutionParams(min_price=1.0)).frame
    assert off["exec_vol_pct"].null_count() == 3 and not off["exec_filter_vol_fail"].any()


def test_unit_detection_median_or_p90_and_configured_modes() -> None:
    def run(atr: list[float | None], mode: str = "auto", cap: float | None = None):
        frame = bars([10.0] * len(atr), [1.0] * len(atr), atr_pct_14=atr)
        return apply_execution(frame, ExecutionParams(max_vol_pct=cap, vol_input_unit_mode=mode))

    pp = run([5.0, 10.0, 13.0, None])  # median 10 > 1
    assert pp.summary["vol_unit_detected"] == "percent_points"
    assert pp.frame["exec_vol_pct"].to_list() == pytest.approx([0.05, 0.10, 0.13, None])
    # median 0.1 <= 1 but the linear p90 (index 8.1 of 10 sorted values) is 5 > 1
    tail = run([0.1] * 8 + [5.0, 5.0])
    assert (tail.summary["vol_raw_median"], tail.summary["vol_raw_p90"]) == (0.1, 5.0)
    assert tail.summary["vol_unit_detected"] == "percent_points"
    dec = run([0.1] * 9 + [5.0])  # p90 = 0.1 + 0.1 * 4.9 = 0.59
    assert dec.summary["vol_raw_p90"] == pytest.approx(0.59)
    assert dec.summary["vol_unit_detected"] == "decimal"
    assert dec.frame["exec_vol_pct"][9] == 5.0
    # a configured mode is taken as the unit, whatever the data look like
    forced = run([5.0, 10.0], mode="decimal")
    assert forced.summary["vol_unit_detected"] == "decimal"
    assert forced.frame["exec_vol_pct"].to_list() == [5.0, 10.0]
    assert run([0.05], mode="percent_points").frame["exec_vol_pct"][0] == pytest.approx(0.0005)
    empty = run([None, None])  # no finite raw value (and no range either: high/low exist)
    assert empty.summary["vol_metric_source"] == "range_pct_fallback"


def test_threshold_interpretation_follows_the_configured_mode() -> None:
    assert vol_threshold(0.12, "auto") == (0.12, 12.0, "decimal_auto")
    assert vol_threshold(8, "auto") == (0.08, 8.0, "percent_points_auto")
    assert vol_threshold(1.0, "auto") == (1.0, 100.0, "decimal_auto")
    assert vol_threshold(8, "percent_points") == (0.08, 8.0, "percent_points")
    assert vol_threshold(0.12, "percent_points")[0] == pytest.approx(0.0012)
    assert vol_threshold(8, "decimal") == (8, 800.0, "decimal")
    assert vol_threshold(None, "auto") == (None, None, None)


@pytest.mark.parametrize("cap, fails", [
    (0.12, [False, False, True, True]),  # 12 %: 13 % and the missing value fail
    (8.0, [False, True, True, True]),  # 8 %
])
def test_vol_filter_on_a_percent_points_series(cap: float, fails: list[bool]) -> None:
    frame = bars([10.0] * 4, [1.0] * 4, atr_pct_14=[5.0, 10.0, 13.0, None])
    res = apply_execution(frame, ExecutionParams(max_vol_pct=cap))
    assert res.frame["exec_filter_vol_fail"].to_list() == fails
    assert res.frame["execution_filter_reason"].to_list() == [
        "vol_cap" if f else "none" for f in fails]


@pytest.mark.parametrize("atr, mode, cap, expected", [
    ([0.01, 0.02], "auto", 0.0, ["vol_threshold_non_positive",
                                 "vol_threshold_too_low_for_decimal_series"]),
    # -5 in auto mode is a decimal (not > 1): -500 %, below 0.1 % of a percent-points series
    ([1.0, 2.0], "auto", -5.0, ["vol_threshold_non_positive",
                                "vol_threshold_too_low_for_percent_points_series"]),
    ([0.01, 0.02], "decimal", 8.0, ["vol_threshold_above_100pct_decimal"]),
    ([0.01, 0.02], "auto", 0.0005, ["vol_threshold_too_low_for_decimal_series"]),
    ([1.0, 2.0], "percent_points", 0.05, ["vol_threshold_too_low_for_percent_points_series"]),
    ([3.0, 3.0], "auto", 8.0, ["vol_series_constant"]),
    ([0.0, 0.0], "auto", None, ["vol_series_constant", "vol_series_all_zero"]),
    ([0.0, 0.0], "auto", -1.0, ["vol_threshold_non_positive",
                                "vol_threshold_too_low_for_decimal_series",
                                "vol_series_constant", "vol_series_all_zero"]),
    ([0.01, 0.02], "auto", 0.12, []),
])
def test_vol_unit_warnings(atr: list[float], mode: str, cap: float | None,
                           expected: list[str]) -> None:
    frame = bars([10.0] * len(atr), [1.0] * len(atr), atr_pct_14=atr)
    res = apply_execution(frame, ExecutionParams(max_vol_pct=cap, vol_input_unit_mode=mode))
    assert res.summary["vol_unit_warnings"] == expected


# ---------------------------------------------------------------- filters (§7.3)

def test_each_filter_alone() -> None:
    frame = bars([1.0, 2.0, 3.0], [1000.0] * 3, atr_pct_14=[0.01] * 3)
    price = apply_execution(frame, ExecutionParams(min_price=2.0)).frame
    assert price["exec_filter_price_fail"].to_list() == [True, False, False]  # strict <
    assert price["execution_filter_reason"].to_list() == ["price_floor", "none", "none"]
    warm = apply_execution(frame, ExecutionParams(min_history_bars_for_execution=3)).frame
    assert warm["exec_filter_warmup_fail"].to_list() == [True, True, False]
    assert warm["execution_filter_reason"].to_list() == ["warmup", "warmup", "none"]
    nan_close = apply_execution(frame.with_columns(close=pl.Series([float("nan"), None, 3.0])),
                                ExecutionParams(min_price=2.0)).frame
    assert nan_close["exec_filter_price_fail"].to_list() == [True, True, False]
    for res in (price, warm):
        others = [c for c in EXEC_COLS if c.startswith("exec_filter_") and "any" not in c]
        assert sum(res[c].sum() for c in others) == res["exec_filter_any_fail"].sum()
        assert (res["execution_eligible"] == ~res["exec_filter_any_fail"]).all()


def test_combined_filters_reasons_and_candidates() -> None:
    res = apply_execution(mixed(), MIXED_PARAMS)
    f = res.frame
    assert f.select("ticker", "trade_date").equals(
        mixed().sort("ticker", "trade_date").select("ticker", "trade_date"))
    assert f["execution_filter_reason"].to_list() == [
        "warmup", "price_floor", "liquidity_floor", "vol_cap", "multiple_reasons", "none",
        "multiple_reasons", "none"]
    assert f["exec_filter_price_fail"].to_list() == [0, 1, 0, 0, 1, 0, 0, 0]
    assert f["exec_filter_liquidity_fail"].to_list() == [0, 0, 1, 0, 1, 0, 0, 0]
    assert f["exec_filter_vol_fail"].to_list() == [0, 0, 0, 1, 1, 0, 1, 0]
    assert f["exec_filter_warmup_fail"].to_list() == [1, 0, 0, 0, 0, 0, 1, 0]
    assert f["execution_eligible"].to_list() == [0, 0, 0, 0, 0, 1, 0, 1]
    assert f["exec_candidate_before"].to_list() == [1, 1, 0, 0, 1, 1, 0, 1]
    assert f["exec_candidate_after"].to_list() == [0, 0, 0, 0, 0, 1, 0, 1]
    assert f["exec_suppressed_signal"].to_list() == [1, 1, 0, 0, 1, 0, 0, 0]
    assert f["execution_profile"].unique().to_list() == ["custom"]
    assert f["execution_filters_enabled"].all()
    assert f["overlay_allow_signal"][4] is True and f["signal_eligible"][6] is False


def test_summary_keys_and_counts() -> None:
    s = apply_execution(mixed(), MIXED_PARAMS).summary
    assert set(s) == {
        "profile_name", "params_used", "vol_metric_source", "vol_unit_detected",
        "vol_raw_median", "vol_raw_p90", "vol_threshold_input",
        "vol_threshold_effective_decimal", "vol_threshold_effective_pct",
        "vol_threshold_input_interpretation", "vol_unit_warnings", "rows_total",
        "rows_eligible", "rows_ineligible", "eligibility_rate",
        "candidate_signals_before_filters", "candidate_signals_after_filters",
        "suppressed_signal_count", "suppressed_signal_share", "suppressed_by_reason",
        "suppressed_by_reason_count", "exec_suppressed_by_price_count",
        "exec_suppressed_by_liquidity_count", "exec_suppressed_by_vol_count",
        "exec_suppressed_by_warmup_count", "exec_suppressed_by_price_share",
        "exec_suppressed_by_liquidity_share", "exec_suppressed_by_vol_share",
        "exec_suppressed_by_warmup_share", "filters_enabled",
    }
    assert (s["rows_total"], s["rows_eligible"], s["rows_ineligible"]) == (8, 2, 6)
    assert s["eligibility_rate"] == 0.25  # row level: 2 of 8 rows, not of the 5 candidates
    assert (s["candidate_signals_before_filters"], s["candidate_signals_after_filters"],
            s["suppressed_signal_count"], s["suppressed_signal_share"]) == (5, 2, 3, 0.6)
    third = pytest.approx(1 / 3)
    assert s["suppressed_by_reason_count"] == {"liquidity_floor": 0, "multiple_reasons": 1,
                                               "price_floor": 1, "vol_cap": 0, "warmup": 1}
    assert s["suppressed_by_reason"] == {"liquidity_floor": 0.0, "multiple_reasons": third,
                                         "price_floor": third, "vol_cap": 0.0, "warmup": third}
    # multiple_reasons is in none of the four: the shares sum to 2/3
    assert (s["exec_suppressed_by_price_count"], s["exec_suppressed_by_liquidity_count"],
            s["exec_suppressed_by_vol_count"], s["exec_suppressed_by_warmup_count"]) == (
        1, 0, 0, 1)
    assert s["exec_suppressed_by_price_share"] == third
    assert s["exec_suppressed_by_warmup_share"] == third
    assert s["exec_suppressed_by_vol_share"] == 0.0
    assert (s["vol_metric_source"], s["vol_unit_detected"], s["vol_raw_median"]) == (
        "atr_pct_14", "decimal", 0.05)
    assert (s["vol_threshold_input"], s["vol_threshold_effective_decimal"],
            s["vol_threshold_effective_pct"], s["vol_threshold_input_interpretation"]) == (
        0.1, 0.1, 10.0, "decimal_auto")
    assert s["filters_enabled"] is True and s["profile_name"] == "custom"


def test_by_reason_and_by_year_tables() -> None:
    res = apply_execution(mixed(), MIXED_PARAMS)
    assert res.by_reason.to_dicts() == [
        {"reason": "liquidity_floor", "suppressed_signal_count": 0,
         "suppressed_signal_share": 0.0, "row_share_total": 0.0},
        {"reason": "multiple_reasons", "suppressed_signal_count": 1,
         "suppressed_signal_share": pytest.approx(1 / 3), "row_share_total": 0.125},
        {"reason": "price_floor", "suppressed_signal_count": 1,
         "suppressed_signal_share": pytest.approx(1 / 3), "row_share_total": 0.125},
        {"reason": "vol_cap", "suppressed_signal_count": 0,
         "suppressed_signal_share": 0.0, "row_share_total": 0.0},
        {"reason": "warmup", "suppressed_signal_count": 1,
         "suppressed_signal_share": pytest.approx(1 / 3), "row_share_total": 0.125},
    ]
    assert res.by_year.columns == [
        "year", "rows_total", "rows_eligible", "candidate_signals_before",
        "candidate_signals_after", "suppressed_signal_count", "avg_dollar_vol_20",
        "median_close", "avg_vol_pct", "eligibility_rate", "suppressed_signal_share"]
    y23, y24 = res.by_year.to_dicts()
    assert y23 == {"year": 2023, "rows_total": 2, "rows_eligible": 0,
                   "candidate_signals_before": 2, "candidate_signals_after": 0,
                   "suppressed_signal_count": 2, "avg_dollar_vol_20": 2000.0,
                   "median_close": 7.0, "avg_vol_pct": pytest.approx(0.05),
                   "eligibility_rate": 0.0, "suppressed_signal_share": 1.0}
    assert y24 == {"year": 2024, "rows_total": 6, "rows_eligible": 2,
                   "candidate_signals_before": 3, "candidate_signals_after": 2,
                   "suppressed_signal_count": 1, "avg_dollar_vol_20": 1450.0,
                   "median_close": 10.0, "avg_vol_pct": pytest.approx(0.12),
                   "eligibility_rate": pytest.approx(1 / 3),
                   "suppressed_signal_share": pytest.approx(1 / 3)}


def test_no_candidates_gives_zero_shares() -> None:
    frame = mixed().with_columns(signal_eligible=pl.lit(False))
    res = apply_execution(frame, MIXED_PARAMS)
    assert res.summary["suppressed_signal_share"] == 0.0
    assert res.by_year["suppressed_signal_share"].to_list() == [0.0, 0.0]
    assert res.by_reason["suppressed_signal_share"].to_list() == [0.0] * 5


def test_disabled_filters_pass_every_row() -> None:
    frame = mixed().with_columns(volume=pl.lit(None, dtype=pl.Float64))
    res = apply_execution(frame, resolve("none", {}))
    f = res.frame
    assert f["execution_eligible"].all() and not f["exec_filter_any_fail"].any()
    assert set(f["execution_filter_reason"]) == {"none"}
    assert not f["execution_filters_enabled"].any()
    s = res.summary
    assert (s["eligibility_rate"], s["candidate_signals_after_filters"],
            s["suppressed_signal_count"], s["filters_enabled"]) == (1.0, 5, 0, False)
    assert s["vol_threshold_effective_decimal"] is None and s["vol_unit_warnings"] == []


def test_empty_frame_gives_zero_counts() -> None:
    res = apply_execution(mixed().head(0), MIXED_PARAMS)
    assert (res.summary["rows_total"], res.summary["eligibility_rate"]) == (0, None)
    assert res.by_year.is_empty() and res.by_reason["suppressed_signal_count"].sum() == 0


# ---------------------------------------------------------------- causality

def random_frame(seed: int, n: int = 80) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for t in ("AAA", "BBB", "CCC"):
        close = 5.0 * np.exp(np.cumsum(rng.normal(0, 0.05, n)))
        vol = rng.integers(0, 400_000, n).astype(float)
        vol[rng.random(n) < 0.05] = np.nan
        part = bars(list(close), list(vol), ticker=t, atr_pct_14=list(rng.uniform(1, 15, n)))
        spread = pl.Series(rng.uniform(0, 0.2, n))
        parts.append(part.with_columns(high=pl.col("close") * (1 + spread)))
    return pl.concat(parts)


@pytest.mark.parametrize("mode", ["auto", "percent_points"])
def test_truncated_history_gives_identical_rows_up_to_the_cut(mode: str) -> None:
    params = ExecutionParams("lite", 4.0, 500_000.0, 8.0, 15, dollar_vol_window=10,
                             vol_input_unit_mode=mode)
    full = apply_execution(random_frame(1), params).frame
    assert 0 < full["execution_eligible"].sum() < full.height  # the filters bite
    for cut in (date(2024, 1, 12), date(2024, 2, 10), date(2024, 3, 1)):
        part = apply_execution(random_frame(1).filter(pl.col("trade_date") <= cut), params).frame
        head = full.filter(pl.col("trade_date") <= cut)
        assert part.select(EXEC_COLS).equals(head.select(EXEC_COLS))


def test_eligibility_of_a_bar_ignores_the_next_bar() -> None:
    params = ExecutionParams("lite", 4.0, 500_000.0, 0.12, 15, dollar_vol_window=10)
    base = random_frame(2)
    ref = apply_execution(base, params).frame
    changed_rows = []
    for t in (20, 40, 79):  # bar t of BBB; change bar t+1 (if any) and every later bar
        later = (pl.col("ticker") == "BBB") & (pl.int_range(pl.len()).over("ticker") > t)
        changed = base.with_columns(
            close=pl.when(later).then(pl.col("close") * 0.3).otherwise(pl.col("close")),
            volume=pl.when(later).then(pl.col("volume") * 50).otherwise(pl.col("volume")),
            high=pl.when(later).then(pl.col("high") * 2).otherwise(pl.col("high")),
            atr_pct_14=pl.when(later).then(pl.col("atr_pct_14") * 3)
            .otherwise(pl.col("atr_pct_14")),
        )
        out = apply_execution(changed, params).frame
        keep = ~((out["ticker"] == "BBB") & (out["exec_history_bars"] > t + 1))
        assert out.filter(keep).select(EXEC_COLS).equals(ref.filter(keep).select(EXEC_COLS))
        changed_rows.append((out["execution_eligible"] != ref["execution_eligible"]).sum())
    assert changed_rows[0] > 0 and changed_rows[2] == 0  # the change is visible after t


# ---------------------------------------------------------------- trade context, block (§7.4-7.5)

def trades() -> pl.DataFrame:
    return pl.DataFrame({
        "ticker": ["A", "A", "A", "A", "B", "B"],
        "entry_signal_date": [d(2023, 12, 28), d(2024, 1, 2), d(2024, 1, 3), d(2024, 1, 4),
                              d(2024, 1, 3), d(2024, 1, 9)],  # the last has no signal row
    })


def test_trade_context_joins_on_the_signal_row() -> None:
    ctx = trade_context(trades(), apply_execution(mixed(), MIXED_PARAMS).frame)
    # signal rows A0 A2 A3 A4 B1: close 10 10 10 4 20, dollar vol 2000 500 2000 200 2000
    assert ctx == {
        "trade_count": 6,
        "avg_close": pytest.approx(10.8), "median_close": 10.0,
        "avg_dollar_vol_20": 1340.0,
        "p10_dollar_vol_20": 200.0,  # nearest: index 0.4 -> 0 (linear would give 320)
        "p50_dollar_vol_20": 2000.0, "p90_dollar_vol_20": 2000.0,
        "avg_vol_pct": pytest.approx(0.12),
        "pct_trades_near_liquidity_threshold": 0.4,  # A2, A4 failed liquidity
        "pct_trades_near_price_threshold": 0.2,  # A4
        "pct_trades_near_vol_threshold": 0.4,  # A3, A4
    }
    empty = trade_context(trades().head(0), apply_execution(mixed(), MIXED_PARAMS).frame)
    assert empty["trade_count"] == 0 and all(v is None for k, v in empty.items()
                                             if k != "trade_count")


def generator_diag() -> dict:
    return {
        "candidate_signals_before_execution": 5, "candidate_signals_after_execution": 2,
        "execution_suppressed_signal_count": 3, "execution_suppressed_signal_share": 0.6,
        "execution_suppressed_by_reason_count": {"price_floor": 1, "warmup": 1,
                                                 "multiple_reasons": 1},
        "execution_suppressed_by_reason_share": {"price_floor": 1 / 3, "warmup": 1 / 3,
                                                 "multiple_reasons": 1 / 3},
    }


def test_execution_block_values_and_status() -> None:
    params = resolve("lite", {"min_price": 5.0, "min_dollar_vol_20": 1000.0,
                              "max_vol_pct": 0.10, "min_history_bars_for_execution": 2},
                     dollar_vol_window=1, max_ret_cv_warn=9.0)
    result = apply_execution(mixed(), params)
    ctx = trade_context(trades(), result.frame)
    block = execution_block(params, result, generator_diag(), ctx)
    assert block == {
        "execution_profile": "lite", "execution_filters_enabled": True,
        "params_used": result.summary["params_used"],
        "vol_metric_source": "atr_pct_14", "vol_unit_detected": "decimal",
        "vol_threshold_input": 0.1, "vol_threshold_effective_decimal": 0.1,
        "vol_threshold_effective_pct": 10.0, "vol_threshold_input_interpretation": "decimal_auto",
        "vol_unit_warnings": [], "rows_total": 8, "rows_eligible": 2, "rows_ineligible": 6,
        "exec_eligibility_rate": 0.25, "exec_candidate_eligibility_rate": 0.4,
        "candidate_signals_before_filters": 5, "candidate_signals_after_filters": 2,
        "exec_suppressed_signal_count": 3, "exec_suppressed_signal_share": 0.6,
        "exec_suppressed_by_price_count": 1, "exec_suppressed_by_price_share": 1 / 3,
        "exec_suppressed_by_liquidity_count": 0, "exec_suppressed_by_liquidity_share": 0.0,
        "exec_suppressed_by_vol_count": 0, "exec_suppressed_by_vol_share": 0.0,
        "exec_suppressed_by_warmup_count": 1, "exec_suppressed_by_warmup_share": 1 / 3,
        "exec_trade_avg_dollar_vol_20": 1340.0, "exec_trade_p10_dollar_vol_20": 200.0,
        "exec_trade_avg_vol_pct": pytest.approx(0.12),
        "report_thresholds": {"min_trades_required": 30, "max_zero_trade_share_warn": 0.5,
                              "max_ret_cv_warn": 9.0},
        "realism_profile_status": "OK", "filters_enabled_or_profile_non_none": True,
    }


@pytest.mark.parametrize("profile, overrides, status, shown", [
    ("none", {}, "NOT_APPLIED", False),
    ("none", {"min_price": 1e9}, "NOT_APPLIED", True),  # filters on, profile none
    ("lite", {}, "ZERO_ELIGIBILITY", True),  # 50-bar warm-up on 8 rows: nothing eligible
    ("lite", {"min_history_bars_for_execution": 1, "min_dollar_vol_20": 0.0}, "OK", True),
])
def test_realism_profile_status(profile: str, overrides: dict, status: str, shown: bool) -> None:
    params = resolve(profile, overrides, dollar_vol_window=1)
    result = apply_execution(mixed(), params)
    block = execution_block(params, result, {}, trade_context(trades().head(0), result.frame))
    assert block["realism_profile_status"] == status
    assert block["filters_enabled_or_profile_non_none"] is shown
    assert block["exec_candidate_eligibility_rate"] is None  # no generator counts given
    assert block["exec_suppressed_by_vol_share"] == 0.0 and block["exec_trade_avg_vol_pct"] is None
