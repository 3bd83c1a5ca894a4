"""Layer sanity summaries and blocking checks (spec §5.5, §6.5, §7.8, §8.8, weakness 25)."""

import datetime as dt
import math

import polars as pl
import pytest

from mf_pipeline.lib.layers.sanity import (
    REQUIRED_COLUMNS,
    events_sanity,
    features_sanity,
    indicators_sanity,
    sanity_failures,
    silver_sanity,
)

TS = dt.datetime(2024, 1, 2, 3, 4, 5)
TS_ISO = "2024-01-02T03:04:05+00:00"
D = dt.date


def _panel(dates: dict[str, list[dt.date]], **columns: pl.Series | list) -> pl.DataFrame:
    """Long panel: tickers in dict order, exchange NYSE, plus the given per-row columns."""
    tickers = [t for t, ds in dates.items() for _ in ds]
    base = pl.DataFrame(
        {
            "ticker": tickers,
            "exchange": ["NYSE"] * len(tickers),
            "trade_date": pl.Series([d for ds in dates.values() for d in ds], dtype=pl.Date),
        }
    )
    return base.with_columns(
        c.alias(name) if isinstance(c, pl.Series) else pl.Series(name, c)
        for name, c in columns.items()
    )


# A: 3 rows, B: 2 rows, C: 1 row
DATES = {
    "A": [D(2020, 1, 2), D(2020, 1, 3), D(2020, 1, 6)],
    "B": [D(2019, 12, 31), D(2020, 1, 2)],
    "C": [D(2020, 1, 7)],
}
HEADLINE = {"total_rows": 6, "global_min_trade_date": "2019-12-31"}


def _f(values: list, dtype: pl.DataType = pl.Float64) -> pl.Series:
    return pl.Series(values, dtype=dtype)


# --------------------------------------------------------------------------------------------
# summaries


def test_silver_sanity_keys_and_values():
    panel = _panel(
        DATES,
        ret_1d=_f([None, 0.01, 0.02, None, -0.01, None]),
        atr_14=_f([None] * 6, pl.Float32),  # all-null column
        vol_ratio_20=_f([1.0] * 6),
    )  # close_sma_50 missing: counts as all null (§5.5)
    out = silver_sanity(panel, TS)
    assert out == {
        "generated_ts": TS_ISO,
        "ticker_count": 3,
        "total_rows": 6,
        "global_min_trade_date": "2019-12-31",
        "global_max_trade_date": "2020-01-07",
        "feature_columns_present": [
            "atr_14", "exchange", "ret_1d", "ticker", "trade_date", "vol_ratio_20",
        ],
        "key_feature_null_rates": {
            "ret_1d": 0.5, "atr_14": 1.0, "vol_ratio_20": 0.0, "close_sma_50": 1.0,
        },
    }  # fmt: skip


def test_generated_ts_is_utc_iso():
    ny = dt.timezone(dt.timedelta(hours=-5))
    out = silver_sanity(_panel(DATES), dt.datetime(2024, 1, 1, 22, 0, tzinfo=ny))
    assert out["generated_ts"] == "2024-01-02T03:00:00+00:00"


def test_empty_panels_give_null_aggregates():
    empty = _panel({})
    silver = silver_sanity(empty, TS)
    assert silver["ticker_count"] == 0 and silver["total_rows"] == 0
    assert silver["global_min_trade_date"] is None and silver["global_max_trade_date"] is None
    assert set(silver["key_feature_null_rates"].values()) == {None}
    ind = indicators_sanity(empty, TS)
    assert ind["tmf_21_null_rate"] is None and ind["tmf_zero_cross_up_count"] is None
    assert ind["top_20_symbols_by_max_abs_tmf_21"] == []
    ev = events_sanity(empty, TS)
    assert set(ev["state_distribution"].values()) == {0}
    assert ev["top_20_symbols_by_tmf_respect_fail_count"] == []
    feat = features_sanity(empty, TS)
    assert set(feat["null_rates"].values()) == {None}
    no_columns = silver_sanity(pl.DataFrame(), TS)  # what read_layer gives for no files
    assert no_columns["total_rows"] == 0 and no_columns["feature_columns_present"] == []
    assert features_sanity(pl.DataFrame(), TS)["top_20_symbols_by_avg_flow_activity_20"] == []


def test_indicators_sanity_keys_and_values():
    dates = {**DATES, "D": [D(2020, 1, 3)]}
    panel = _panel(
        dates,
        tmf_21=_f([None, 0.5, -0.8, 0.3, None, None, 0.8]),  # C all null; D ties A at 0.8
        tti_proxy_v1_21=_f([None, 0.1, 0.2, None, None, None, None]),
        tmf_zero_cross_up=[False, True, False, True, False, False, False],
        tmf_zero_cross_down=[False, False, True, False, False, False, False],
        tti_proxy_zero_cross_up=[False] * 7,
        tti_proxy_zero_cross_down=_f([None] * 7, pl.Boolean),  # all null: count is null
    )
    assert indicators_sanity(panel, TS) == {
        "generated_ts": TS_ISO,
        "symbol_count": 4,
        "total_rows": 7,
        "global_min_trade_date": "2019-12-31",
        "global_max_trade_date": "2020-01-07",
        "tmf_21_null_rate": 3 / 7,
        "tti_proxy_v1_21_null_rate": 5 / 7,
        "tmf_zero_cross_up_count": 2,
        "tmf_zero_cross_down_count": 1,
        "tti_proxy_zero_cross_up_count": 0,
        "tti_proxy_zero_cross_down_count": None,
        "top_20_symbols_by_max_abs_tmf_21": [
            {"ticker": "A", "max_abs_tmf_21": 0.8},
            {"ticker": "D", "max_abs_tmf_21": 0.8},
            {"ticker": "B", "max_abs_tmf_21": 0.3},
        ],
    }


def test_indicators_sanity_float32_and_missing_columns():
    panel = _panel({"A": [D(2020, 1, 2)]}, tmf_21=_f([0.25], pl.Float32))
    out = indicators_sanity(panel, TS)
    assert out["tti_proxy_v1_21_null_rate"] == 1.0
    assert out["tmf_zero_cross_up_count"] is None
    assert out["top_20_symbols_by_max_abs_tmf_21"] == [{"ticker": "A", "max_abs_tmf_21": 0.25}]


def test_events_sanity_keys_and_values():
    panel = _panel(
        DATES,
        ev_tmf_zero_up=[False, True, False, True, False, False],
        ev_tmf_zero_down=[False, False, True, False, False, False],
        ev_tmf_respect_zero_up=[False] * 6,
        ev_tmf_burst_up=[False, False, True, False, True, False],
        ev_tmf_burst_down=_f([None] * 6, pl.Boolean),
        ev_tmf_respect_fail_up=[False, True, False, False, False, False],
        ev_tmf_respect_fail_down=[False, False, True, True, False, False],
        tmf_event_activity_20=_f([0, 1, 2, 1, 1, None], pl.Int32),
        flow_state_code=_f([0, 1, 3, 0, 2, 0], pl.Int8),
        flow_state_label=[
            "S0_QUIET", "S1_EARLY_DEMAND", "S3_EARLY_SUPPLY",
            "S0_QUIET", "S2_PERSISTENT_DEMAND", "S0_QUIET",
        ],
    )  # fmt: skip
    assert events_sanity(panel, TS) == {
        "generated_ts": TS_ISO,
        "symbol_count": 3,
        "total_rows": 6,
        "global_min_trade_date": "2019-12-31",
        "global_max_trade_date": "2020-01-07",
        "key_event_counts": {
            "ev_tmf_zero_up": 2,
            "ev_tmf_zero_down": 1,
            "ev_tmf_respect_zero_up": 0,
            "ev_tmf_respect_zero_down": None,  # missing column
            "ev_tmf_burst_up": 2,
            "ev_tmf_burst_down": None,  # all-null column
        },
        "state_distribution": {
            "S0_QUIET": 3,
            "S1_EARLY_DEMAND": 1,
            "S2_PERSISTENT_DEMAND": 1,
            "S3_EARLY_SUPPLY": 1,
            "S4_PERSISTENT_SUPPLY": 0,
        },
        "top_20_symbols_by_max_tmf_event_activity_20": [  # C's only value is null: excluded
            {"ticker": "A", "max_tmf_event_activity_20": 2},
            {"ticker": "B", "max_tmf_event_activity_20": 1},
        ],
        "top_20_symbols_by_tmf_respect_fail_count": [  # zeros included
            {"ticker": "A", "tmf_respect_fail_count": 2},
            {"ticker": "B", "tmf_respect_fail_count": 1},
            {"ticker": "C", "tmf_respect_fail_count": 0},
        ],
    }


def test_events_sanity_unexpected_label_is_listed():
    panel = _panel({"A": [D(2020, 1, 2), D(2020, 1, 3)]}, flow_state_label=["S9_ODD", None])
    dist = events_sanity(panel, TS)["state_distribution"]
    assert dist["S9_ODD"] == 1 and dist["S0_QUIET"] == 0 and len(dist) == 6


def test_features_sanity_keys_and_values():
    panel = _panel(
        DATES,
        long_flow_score_20=_f([1.0, 2.0, 3.0, 4.0, 0.0, 0.0], pl.Float32),
        delta_flow_20=_f([-5.0, 1.0, 2.0, 3.0, -1.0, None], pl.Float32),
        flow_activity_20=_f([1.0, 2.0, 3.0, 4.0, None, None], pl.Float32),
        flow_bias_20=_f([None] * 6, pl.Float32),
        oscillation_index_20=_f([0.0, 0.0, 1.0, 1.0, 1.0, None], pl.Float32),
        state_run_length=_f([1, 2, 1, 1, 2, 1], pl.Int32),
    )  # tmf_21 not in the feature file: missing counts as all null
    out = features_sanity(panel, TS)
    assert out.pop("top_20_symbols_by_avg_oscillation_index_20") == [
        {"ticker": "B", "avg_oscillation_index_20": 1.0},
        {"ticker": "A", "avg_oscillation_index_20": pytest.approx(1 / 3)},
    ]
    assert out == {
        "generated_ts": TS_ISO,
        "symbol_count": 3,
        "total_rows": 6,
        "global_min_trade_date": "2019-12-31",
        "global_max_trade_date": "2020-01-07",
        "null_rates": {
            "tmf_21": 1.0,
            "long_flow_score_20": 0.0,
            "delta_flow_20": 1 / 6,
            "flow_bias_20": 1.0,
            "oscillation_index_20": 1 / 6,
            "state_run_length": 0.0,
        },
        "top_20_symbols_by_avg_flow_activity_20": [
            {"ticker": "B", "avg_flow_activity_20": 4.0},
            {"ticker": "A", "avg_flow_activity_20": 2.0},
        ],
        "top_20_symbols_by_max_abs_delta_flow_20": [
            {"ticker": "A", "max_abs_delta_flow_20": 5.0},
            {"ticker": "B", "max_abs_delta_flow_20": 3.0},
        ],
    }


def test_features_sanity_all_null_columns_do_not_crash():
    """Weakness 25: the old tool called float() on a null aggregate."""
    panel = _panel(
        DATES,
        delta_flow_20=pl.Series([None] * 6),  # dtype Null
        flow_activity_20=_f([None] * 6, pl.Float32),
        oscillation_index_20=_f([None] * 6),
    )
    out = features_sanity(panel, TS)
    assert out["null_rates"]["delta_flow_20"] == 1.0
    assert out["top_20_symbols_by_avg_flow_activity_20"] == []
    assert out["top_20_symbols_by_max_abs_delta_flow_20"] == []
    assert out["top_20_symbols_by_avg_oscillation_index_20"] == []


def test_non_finite_values_are_ignored_by_aggregates():
    panel = _panel(
        DATES,
        flow_activity_20=_f([1.0, 3.0, math.inf, 4.0, math.nan, -math.inf]),
    )
    top = features_sanity(panel, TS)["top_20_symbols_by_avg_flow_activity_20"]
    assert top == [
        {"ticker": "B", "avg_flow_activity_20": 4.0},
        {"ticker": "A", "avg_flow_activity_20": 2.0},
    ]


def test_top_lists_keep_twenty_descending_ties_by_ticker():
    tickers = [f"T{i:02d}" for i in range(25)]
    panel = _panel(
        {t: [D(2020, 1, 2)] for t in tickers},
        flow_activity_20=_f([float(i // 2) for i in range(25)]),  # pairs tie
    )
    top = features_sanity(panel, TS)["top_20_symbols_by_avg_flow_activity_20"]
    assert len(top) == 20
    assert top[0] == {"ticker": "T24", "avg_flow_activity_20": 12.0}
    assert top[1:3] == [
        {"ticker": "T22", "avg_flow_activity_20": 11.0},
        {"ticker": "T23", "avg_flow_activity_20": 11.0},
    ]
    values = [row["avg_flow_activity_20"] for row in top]
    assert values == sorted(values, reverse=True)


# --------------------------------------------------------------------------------------------
# blocking checks


def _healthy(layer: str, dates: dict[str, list[dt.date]] = DATES) -> pl.DataFrame:
    """A panel with every required column of ``layer`` holding harmless values."""
    n = sum(len(ds) for ds in dates.values())
    extra: dict[str, pl.Series] = {}
    for c in REQUIRED_COLUMNS[layer][3:]:
        if c.startswith("ev_") or "zero_cross" in c:
            extra[c] = pl.Series([False] * n)
        elif c == "flow_state_code":
            extra[c] = _f([k % 5 for k in range(n)], pl.Int8)
        elif c == "flow_state_label":
            extra[c] = pl.Series(["S0_QUIET"] * n)
        elif c in ("state_run_length", "tmf_event_activity_20"):
            extra[c] = _f([1] * n, pl.Int32)
        else:
            extra[c] = _f([None] + [0.5] * (n - 1), pl.Float32)
    return _panel(dates, **extra)


@pytest.mark.parametrize("layer", ["silver", "indicators", "events", "features"])
def test_healthy_panels_pass(layer):
    assert sanity_failures(layer, _healthy(layer)) == []
    assert sanity_failures(layer, _healthy(layer).head(0)) == []
    assert sanity_failures(layer, pl.DataFrame()) == []  # what read_layer gives for no files


def test_interleaved_tickers_with_increasing_dates_pass():
    panel = _healthy("silver")
    order = [3, 0, 4, 1, 5, 2]  # B, A, B, A, C, A: each ticker still in date order
    assert sanity_failures("silver", panel[order]) == []


def test_unknown_layer_raises():
    with pytest.raises(ValueError, match="unknown layer"):
        sanity_failures("gold", _healthy("silver"))


def test_missing_required_column_fires():
    out = sanity_failures("indicators", _healthy("indicators").drop("tmf_21", "exchange"))
    assert out == ["indicators: required columns missing: exchange, tmf_21"]


def test_missing_key_stops_row_rules():
    out = sanity_failures("silver", _healthy("silver").drop("trade_date"))
    assert out == ["silver: required columns missing: trade_date"]


def test_null_keys_fire():
    panel = _healthy("silver").with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise(pl.col("trade_date"))
        .alias("trade_date"),
        pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("ticker"))
        .alias("ticker"),
    )  # fmt: skip
    out = sanity_failures("silver", panel)
    assert out == [
        "silver: null key values (ticker, exchange, trade_date): 2 row(s) in 2 ticker(s): <null>, A"
    ]


def test_duplicate_rows_fire_and_not_the_order_rule():
    dates = {**DATES, "B": [D(2019, 12, 31), D(2019, 12, 31)]}
    out = sanity_failures("silver", _healthy("silver", dates))
    assert out == ["silver: duplicate (ticker, trade_date) rows: 2 row(s) in 1 ticker(s): B"]


def test_decreasing_dates_fire():
    dates = {**DATES, "A": [D(2020, 1, 3), D(2020, 1, 2), D(2020, 1, 6)]}
    out = sanity_failures("silver", _healthy("silver", dates))
    assert out == [
        "silver: trade_date decreasing within a ticker (rows out of order): "
        "1 row(s) in 1 ticker(s): A"
    ]


def test_bounded_columns_tolerance():
    panel = _healthy("indicators").with_columns(
        _f([None, 1.0 + 5e-10, -1.0, 1.0, -1.0 - 5e-10, 0.0]).alias("tmf_21")
    )
    assert sanity_failures("indicators", panel) == []
    panel = panel.with_columns(
        _f([None, 1.0 + 1e-6, -1.0, 0.0, 0.0, -1.5]).alias("tti_proxy_v1_21")
    )
    assert sanity_failures("indicators", panel) == [
        "indicators: tti_proxy_v1_21 outside [-1, 1]: 2 row(s) in 2 ticker(s): A, C"
    ]


def test_flow_bias_out_of_range_fires():
    panel = _healthy("features").with_columns(_f([None, 0, 0, 0, 0, 1.5]).alias("flow_bias_20"))
    assert sanity_failures("features", panel) == [
        "features: flow_bias_20 outside [-1, 1]: 1 row(s) in 1 ticker(s): C"
    ]


def test_flow_state_code_out_of_range_or_null_fires():
    panel = _healthy("events")
    assert sanity_failures("events", panel) == []  # codes 0..4 and 0
    panel = panel.with_columns(_f([0, 5, 4, None, -1, 2], pl.Int8).alias("flow_state_code"))
    assert sanity_failures("events", panel) == [
        "events: flow_state_code null or outside 0..4: 3 row(s) in 2 ticker(s): A, B"
    ]


def test_non_finite_floats_fire_nulls_do_not():
    panel = _healthy("silver").with_columns(
        _f([None, math.inf, 0.0, 0.0, 0.0, 0.0]).alias("ret_1d"),
        _f([0.0, 0.0, 0.0, math.nan, 0.0, -math.inf], pl.Float32).alias("extra_float"),
    )
    assert sanity_failures("silver", panel) == [
        "silver: non-finite values (NaN/inf) in ret_1d: 1 row(s) in 1 ticker(s): A",
        "silver: non-finite values (NaN/inf) in extra_float: 2 row(s) in 2 ticker(s): B, C",
    ]


def test_message_lists_at_most_ten_tickers():
    tickers = [f"T{i:02d}" for i in range(12)]
    dates = {t: [D(2020, 1, 2), D(2020, 1, 2)] for t in tickers}
    (msg,) = sanity_failures("silver", _healthy("silver", dates))
    assert msg.endswith(": 24 row(s) in 12 ticker(s): " + ", ".join(tickers[:10]) + " (+2 more)")
