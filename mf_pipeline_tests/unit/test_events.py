"""Gold Event Grammar v1 (spec/etl.md §7): hand-computed cases, a plain-Python reference,
multi-ticker independence and causality."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mf_pipeline.lib.kernels.counters import bars_since, run_length
from mf_pipeline.lib.kernels.events_kernels import (
    event_in_lookback,
    rolling_sum_float,
    rolling_sum_int,
    true_run_length,
)
from mf_pipeline.lib.layers.events import (
    BARS_SINCE_SOURCES,
    EVENT_COLUMNS,
    STATE_LABELS,
    EventParams,
    build_events,
    event_output_columns,
)

F, T = False, True
START = dt.date(2020, 1, 1)

# --------------------------------------------------------------------------------------------
# test inputs: §6.4 indicator columns computed independently of the library (with over())


def indicator_frame(
    tmf: dict[str, list[float | None]],
    tti: dict[str, list[float | None]] | None = None,
    exchange: str = "NYSE",
) -> pl.DataFrame:
    """A long indicator frame with the §6.4 columns events/features consume."""
    tti = tti if tti is not None else tmf
    parts = []
    for ticker, m in tmf.items():
        n = len(m)
        parts.append(
            pl.DataFrame(
                {
                    "ticker": [ticker] * n,
                    "exchange": [exchange] * n,
                    "trade_date": [START + dt.timedelta(days=i) for i in range(n)],
                    "tmf_21": m,
                    "tti_proxy_v1_21": tti[ticker],
                },
                schema=_empty_indicators().schema,
            )
        )
    df = pl.concat([_empty_indicators(), *parts])
    m, q = pl.col("tmf_21"), pl.col("tti_proxy_v1_21")
    mp, qp = m.shift(1).over("ticker"), q.shift(1).over("ticker")

    def sign(x: pl.Expr) -> pl.Expr:
        return pl.when(x > 0).then(1).when(x < 0).then(-1).otherwise(0).cast(pl.Int8)

    return df.with_columns(
        m.is_not_null().alias("tmf_ready_21"),
        ((m > 0) & (mp <= 0)).fill_null(False).alias("tmf_zero_cross_up"),
        ((m < 0) & (mp >= 0)).fill_null(False).alias("tmf_zero_cross_down"),
        sign(m).alias("tmf_sign"),
        (m - mp).alias("tmf_slope_1"),
        (m - m.shift(5).over("ticker")).alias("tmf_slope_5"),
        m.abs().alias("tmf_abs"),
        q.is_not_null().alias("tti_proxy_ready_21"),
        ((q > 0) & (qp <= 0)).fill_null(False).alias("tti_proxy_zero_cross_up"),
        ((q < 0) & (qp >= 0)).fill_null(False).alias("tti_proxy_zero_cross_down"),
        sign(q).alias("tti_proxy_sign"),
    )


def _empty_indicators() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "ticker": pl.String,
            "exchange": pl.String,
            "trade_date": pl.Date,
            "tmf_21": pl.Float64,
            "tti_proxy_v1_21": pl.Float64,
        }
    )


def col(df: pl.DataFrame, name: str) -> list:
    return df.get_column(name).to_list()


def events_of(m: list[float | None], q: list[float | None] | None = None, **kw) -> pl.DataFrame:
    tti = {"A.US": q} if q is not None else None
    return build_events(indicator_frame({"A.US": m}, tti), EventParams(**kw))


# --------------------------------------------------------------------------------------------
# plain-Python reference of §7, one ticker at a time (deliberately loop-based and literal)


def _all(*xs: object) -> bool:
    """A conjunction of comparisons where a null operand makes the whole thing False."""
    return all(x is not None and x is not False for x in xs) and all(xs)


def _gt(a: float | None, b: float | None) -> bool | None:
    return None if a is None or b is None else a > b


def _lt(a: float | None, b: float | None) -> bool | None:
    return None if a is None or b is None else a < b


def ref_events(m: list, q: list, p: EventParams) -> dict[str, list]:
    n = len(m)
    at = lambda x, t: x[t] if t >= 0 else None  # noqa: E731
    a = max(p.tmf_burst_abs_threshold, p.eps)
    s = p.tmf_burst_slope_threshold
    L, H = p.respect_fail_lookback_bars, p.hold_consecutive_bars
    e: dict[str, list] = {c: [False] * n for c in EVENT_COLUMNS}
    for t in range(n):
        m0, m1, m2 = m[t], at(m, t - 1), at(m, t - 2)
        q0, q1 = q[t], at(q, t - 1)
        slope = None if m0 is None or m1 is None else m0 - m1
        qslope = None if q0 is None or q1 is None else q0 - q1
        e["ev_tmf_zero_up"][t] = _all(_gt(m0, 0), m1 is not None and m1 <= 0)
        e["ev_tmf_zero_down"][t] = _all(_lt(m0, 0), m1 is not None and m1 >= 0)
        e["ev_tti_zero_up"][t] = _all(_gt(q0, 0), q1 is not None and q1 <= 0)
        e["ev_tti_zero_down"][t] = _all(_lt(q0, 0), q1 is not None and q1 >= 0)
        e["ev_tmf_pivot_low"][t] = _all(_gt(m2, m1), _lt(m1, m0))
        e["ev_tmf_pivot_high"][t] = _all(_lt(m2, m1), _gt(m1, m0))
        e["ev_tmf_respect_zero_up"][t] = _all(
            e["ev_tmf_pivot_low"][t], _gt(m1, 0), _gt(m0, 0), _gt(slope, 0)
        )
        e["ev_tmf_respect_zero_down"][t] = _all(
            e["ev_tmf_pivot_high"][t], _lt(m1, 0), _lt(m0, 0), _lt(slope, 0)
        )
        e["ev_tmf_burst_up"][t] = _all(_gt(m0, 0), _gt(slope, s), m0 is not None and abs(m0) > a)
        e["ev_tmf_burst_down"][t] = _all(_lt(m0, 0), _lt(slope, -s), m0 is not None and abs(m0) > a)
        e["ev_tti_burst_up"][t] = _all(_gt(q0, 0), _gt(qslope, s), q0 is not None and abs(q0) > a)
        e["ev_tti_burst_down"][t] = _all(
            _lt(q0, 0), _lt(qslope, -s), q0 is not None and abs(q0) > a
        )
        window = range(t - H + 1, t + 1)
        full = t - H + 1 >= 0
        e["ev_tmf_hold_pos"][t] = full and all(_gt(m[j], 0) for j in window)
        e["ev_tmf_hold_neg"][t] = full and all(_lt(m[j], 0) for j in window)
        e["ev_tti_hold_pos"][t] = full and all(_gt(q[j], 0) for j in window)
        e["ev_tti_hold_neg"][t] = full and all(_lt(q[j], 0) for j in window)
    for t in range(n):
        back = range(max(0, t - L), t)
        e["ev_tmf_respect_fail_up"][t] = e["ev_tmf_zero_down"][t] and any(
            e["ev_tmf_respect_zero_up"][j] for j in back
        )
        e["ev_tmf_respect_fail_down"][t] = e["ev_tmf_zero_up"][t] and any(
            e["ev_tmf_respect_zero_down"][j] for j in back
        )
    for bs, src in BARS_SINCE_SOURCES.items():
        last, out = None, []
        for t in range(n):
            if e[src][t]:
                last = t
            out.append(None if last is None else t - last)
        e[bs] = out
    long_base = [
        int(e["ev_tmf_zero_up"][t]) + e["ev_tmf_respect_zero_up"][t] + e["ev_tmf_burst_up"][t]
        for t in range(n)
    ]
    short_base = [
        int(e["ev_tmf_zero_down"][t]) + e["ev_tmf_respect_zero_down"][t] + e["ev_tmf_burst_down"][t]
        for t in range(n)
    ]
    tti_base = [
        int(e["ev_tti_zero_up"][t])
        + e["ev_tti_zero_down"][t]
        + e["ev_tti_burst_up"][t]
        + e["ev_tti_burst_down"][t]
        for t in range(n)
    ]

    def roll(x: list, w: int) -> list:
        return [sum(x[max(0, t - w + 1) : t + 1]) for t in range(n)]

    for w in p.activity_windows:
        e[f"tmf_long_events_{w}"] = roll(long_base, w)
        e[f"tmf_short_events_{w}"] = roll(short_base, w)
    if 5 in p.activity_windows:
        e["tmf_event_asym_5"] = [
            a_ - b_ for a_, b_ in zip(roll(long_base, 5), roll(short_base, 5), strict=True)
        ]
    long20, short20 = roll(long_base, 20), roll(short_base, 20)
    if 20 in p.activity_windows:
        e["tmf_event_asym_20"] = [a_ - b_ for a_, b_ in zip(long20, short20, strict=True)]
        e["tmf_event_activity_20"] = [a_ + b_ for a_, b_ in zip(long20, short20, strict=True)]
        e["tti_events_20"] = roll(tti_base, 20)
    codes = []
    for t in range(n):
        ready = m[t] is not None
        sign = 0 if m[t] is None else (1 if m[t] > 0 else (-1 if m[t] < 0 else 0))
        bu, bd = e["bs_tmf_zero_up"][t], e["bs_tmf_zero_down"][t]
        pd_ = ready and sign > 0 and (e["ev_tmf_hold_pos"][t] or long20[t] > short20[t] + 1)
        ps_ = ready and sign < 0 and (e["ev_tmf_hold_neg"][t] or short20[t] > long20[t] + 1)
        ed_ = (
            ready
            and sign > 0
            and not pd_
            and (
                e["ev_tmf_zero_up"][t]
                or e["ev_tmf_burst_up"][t]
                or e["ev_tmf_respect_zero_up"][t]
                or (bu is not None and bu <= 3)
            )
        )
        es_ = (
            ready
            and sign < 0
            and not ps_
            and (
                e["ev_tmf_zero_down"][t]
                or e["ev_tmf_burst_down"][t]
                or e["ev_tmf_respect_zero_down"][t]
                or (bd is not None and bd <= 3)
            )
        )
        codes.append(2 if pd_ else 4 if ps_ else 1 if ed_ else 3 if es_ else 0)
    e["flow_state_code"] = codes
    e["flow_state_label"] = [STATE_LABELS[c] for c in codes]
    return e


# --------------------------------------------------------------------------------------------
# kernels


def test_kernels_on_two_tickers() -> None:
    offsets = np.array([0, 5, 8], dtype=np.int64)
    flags = np.array([F, T, F, F, T, F, F, T])
    out = np.empty(8, dtype=np.int32)
    bars_since(flags, offsets, out)
    assert out.tolist() == [-1, 0, 1, 2, 0, -1, -1, 0]  # the 2nd ticker restarts
    true_run_length(np.array([T, T, F, T, T, T, T, T]), offsets, out)
    assert out.tolist() == [1, 2, 0, 1, 2, 1, 2, 3]
    run_length(np.array([0, 0, 1, 1, 1, 1, 2, 2], dtype=np.int8), offsets, out)
    assert out.tolist() == [1, 2, 1, 2, 3, 1, 1, 2]
    rolling_sum_int(np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=np.int32), offsets, 2, out)
    assert out.tolist() == [1, 3, 5, 7, 9, 6, 13, 15]
    look = np.empty(8, dtype=np.bool_)
    # t itself is excluded; window t-2..t-1; shorter at a ticker start
    event_in_lookback(np.array([T, F, F, F, T, T, F, F]), offsets, 2, look)
    assert look.tolist() == [F, T, T, F, F, F, T, T]


def test_rolling_sum_float_matches_naive_over_long_series() -> None:
    rng = np.random.default_rng(1)
    x = rng.choice([0.0, 0.1, 1.5, 2.0, 0.3], size=500)
    offsets = np.array([0, 1, 240, 500], dtype=np.int64)
    out = np.empty(500)
    rolling_sum_float(x, offsets, 7, out)
    want = [
        x[max(offsets[g], t - 6) : t + 1].sum()
        for g in range(3)
        for t in range(offsets[g], offsets[g + 1])
    ]
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# hand-computed event cases


def test_zero_crosses_and_bars_since() -> None:
    ev = events_of([None, -0.1, 0.0, 0.2, -0.1, 0.0, 0.1])
    assert col(ev, "ev_tmf_zero_up") == [F, F, F, T, F, F, T]
    assert col(ev, "ev_tmf_zero_down") == [F, F, F, F, T, F, F]
    assert col(ev, "ev_tti_zero_up") == [F, F, F, T, F, F, T]
    assert col(ev, "ev_tti_zero_down") == [F, F, F, F, T, F, F]
    assert col(ev, "bs_tmf_zero_up") == [None, None, None, 0, 1, 2, 0]
    assert col(ev, "bs_tmf_zero_down") == [None, None, None, None, 0, 1, 2]
    assert col(ev, "bs_tti_zero_up") == [None, None, None, 0, 1, 2, 0]
    assert ev.schema["bs_tmf_zero_up"] == pl.Int32


def test_pivots_flag_the_confirming_bar_and_respects() -> None:
    ev = events_of([0.1, 0.3, 0.2, 0.25, 0.25, 0.1, 0.15])
    # peak at row 1 is flagged on row 2, trough at row 2 on row 3; equal values are no pivot
    assert col(ev, "ev_tmf_pivot_high") == [F, F, T, F, F, F, F]
    assert col(ev, "ev_tmf_pivot_low") == [F, F, F, T, F, F, T]
    assert col(ev, "ev_tmf_respect_zero_up") == [F, F, F, T, F, F, T]
    assert col(ev, "bs_tmf_respect_zero_up") == [None, None, None, 0, 1, 2, 0]
    # never earlier: the series cut right at the trough has no pivot yet
    cut = events_of([0.1, 0.3, 0.2])
    assert col(cut, "ev_tmf_pivot_low") == [F, F, F]

    down = events_of([-0.1, -0.3, -0.2, -0.25])
    assert col(down, "ev_tmf_pivot_low") == [F, F, T, F]
    assert col(down, "ev_tmf_pivot_high") == [F, F, F, T]
    assert col(down, "ev_tmf_respect_zero_down") == [F, F, F, T]
    assert col(down, "ev_tmf_respect_zero_up") == [F, F, F, F]  # trough below zero
    assert col(down, "bs_tmf_respect_zero_down") == [None, None, None, 0]


def test_respect_fail_looks_back_within_window() -> None:
    # respect up on row 2, cross below zero on row 4: 2 bars back
    ev = events_of([0.3, 0.1, 0.2, 0.15, -0.1], respect_fail_lookback_bars=3)
    assert col(ev, "ev_tmf_respect_zero_up") == [F, F, T, F, F]
    assert col(ev, "ev_tmf_respect_fail_up") == [F, F, F, F, T]  # flagged on the failure bar
    # cross 4 bars after the respect: outside a 3-bar window, inside a 4-bar one
    m = [0.3, 0.1, 0.2, 0.15, 0.14, 0.13, -0.1]
    assert col(events_of(m, respect_fail_lookback_bars=3), "ev_tmf_respect_fail_up") == [F] * 7
    assert col(events_of(m, respect_fail_lookback_bars=4), "ev_tmf_respect_fail_up") == [
        F,
        F,
        F,
        F,
        F,
        F,
        T,
    ]
    down = events_of([-0.3, -0.1, -0.2, -0.15, 0.1])
    assert col(down, "ev_tmf_respect_zero_down") == [F, F, T, F, F]
    assert col(down, "ev_tmf_respect_fail_down") == [F, F, F, F, T]
    assert col(down, "ev_tmf_respect_fail_up") == [F] * 5


BURST_M = [0.25, 0.3125, 0.375, 0.40625, 0.46875, -0.125, -0.25, -0.1875, -0.3125]


def test_bursts_by_abs_and_slope_thresholds() -> None:
    ev = events_of(BURST_M)  # A = 0.15, S = 0.05
    assert col(ev, "ev_tmf_burst_up") == [F, T, T, F, T, F, F, F, F]
    assert col(ev, "ev_tmf_burst_down") == [F, F, F, F, F, F, T, F, T]
    assert col(ev, "bs_tmf_burst_up") == [None, 0, 0, 1, 0, 1, 2, 3, 4]
    assert col(ev, "bs_tmf_burst_down") == [None] * 6 + [0, 1, 0]
    # TTI bursts reuse the TMF thresholds with the on-the-fly TTI slope
    assert col(ev, "ev_tti_burst_up") == col(ev, "ev_tmf_burst_up")
    assert col(ev, "ev_tti_burst_down") == col(ev, "ev_tmf_burst_down")
    # strict |m| > A
    abs_edge = events_of(BURST_M, tmf_burst_abs_threshold=0.3125)
    assert col(abs_edge, "ev_tmf_burst_up") == [F, F, T, F, T, F, F, F, F]
    assert col(abs_edge, "ev_tmf_burst_down") == [F] * 9
    # strict slope > S
    slope_edge = events_of(BURST_M, tmf_burst_slope_threshold=0.0625)
    assert col(slope_edge, "ev_tmf_burst_up") == [F] * 9
    assert col(slope_edge, "ev_tmf_burst_down") == [F, F, F, F, F, F, T, F, T]
    # TTI burst on its own series
    q = [0.0, 0.25, 0.2, -0.25, -0.3]
    tti = events_of([0.1] * 5, q)
    assert col(tti, "ev_tti_burst_up") == [F, T, F, F, F]
    assert col(tti, "ev_tti_burst_down") == [F, F, F, T, F]


def test_holds_after_n_consecutive_bars() -> None:
    m = [0.1, 0.2, 0.3, 0.1, -0.1, -0.2, -0.3, -0.4, 0.1]
    ev = events_of(m, q=[-x for x in m], hold_consecutive_bars=3)
    assert col(ev, "ev_tmf_hold_pos") == [F, F, T, T, F, F, F, F, F]
    assert col(ev, "ev_tmf_hold_neg") == [F, F, F, F, F, F, T, T, F]
    assert col(ev, "ev_tti_hold_neg") == [F, F, T, T, F, F, F, F, F]
    assert col(ev, "ev_tti_hold_pos") == [F, F, F, F, F, F, T, T, F]
    # not-ready bars break the run; a full window of H real rows is needed
    warm = events_of([None, 0.1, 0.2, 0.3], hold_consecutive_bars=3)
    assert col(warm, "ev_tmf_hold_pos") == [F, F, F, T]


def test_activity_windows_and_states() -> None:
    ev = events_of([-0.1, 0.1, -0.1, 0.1, 0.2])
    assert col(ev, "ev_tmf_pivot_high") == [F, F, T, F, F]
    assert col(ev, "ev_tmf_respect_zero_down") == [F] * 5
    assert col(ev, "tmf_long_events_5") == [0, 1, 1, 2, 3]
    assert col(ev, "tmf_short_events_5") == [0, 0, 1, 1, 1]
    assert col(ev, "tmf_event_asym_5") == [0, 1, 0, 1, 2]
    assert col(ev, "tmf_long_events_20") == [0, 1, 1, 2, 3]
    assert col(ev, "tmf_event_asym_20") == [0, 1, 0, 1, 2]
    assert col(ev, "tmf_event_activity_20") == [0, 1, 2, 3, 4]
    assert col(ev, "tti_events_20") == [0, 1, 2, 3, 4]
    # row 4: burst up (an ED trigger) but 3 > 1 + 1 long events: PD wins
    assert col(ev, "flow_state_code") == [0, 1, 3, 1, 2]
    assert col(ev, "flow_state_label") == [
        "S0_QUIET",
        "S1_EARLY_DEMAND",
        "S3_EARLY_SUPPLY",
        "S1_EARLY_DEMAND",
        "S2_PERSISTENT_DEMAND",
    ]
    two = events_of([-0.1, 0.1, -0.1, 0.1, 0.2], activity_windows=[2])
    assert col(two, "tmf_long_events_2") == [0, 1, 1, 1, 2]
    assert col(two, "tmf_short_events_2") == [0, 0, 1, 1, 0]
    # weakness 16 fixed: no 20 window configured, states still use 20-bar counts
    assert col(two, "flow_state_code") == [0, 1, 3, 1, 2]
    for absent in ("tmf_long_events_20", "tti_events_20", "tmf_event_asym_5"):
        assert absent not in two.columns


def test_state_precedence_and_recent_cross() -> None:
    # H=1: the zero-up bar also holds, so PD (2) beats ED (1); mirrored for supply
    up = events_of([-0.1, 0.1, 0.12], hold_consecutive_bars=1)
    assert col(up, "ev_tmf_zero_up") == [F, T, F]
    assert col(up, "ev_tmf_hold_pos") == [F, T, T]
    assert col(up, "flow_state_code") == [4, 2, 2]
    down = events_of([0.1, -0.1, -0.12], hold_consecutive_bars=1)
    assert col(down, "flow_state_code") == [2, 4, 4]
    # recent_up: a zero-up cross within t-3..t keeps ED, then quiet
    rec = events_of([-0.1, 0.1, 0.11, 0.12, 0.13, 0.14], hold_consecutive_bars=10)
    assert col(rec, "bs_tmf_zero_up") == [None, 0, 1, 2, 3, 4]
    assert col(rec, "flow_state_code") == [0, 1, 1, 1, 1, 0]
    rec_down = events_of([0.1, -0.1, -0.11, -0.12, -0.13, -0.14], hold_consecutive_bars=10)
    assert col(rec_down, "flow_state_code") == [0, 3, 3, 3, 3, 0]
    # not ready or exactly zero TMF is always S0
    quiet = events_of([None, 0.0, 0.0], hold_consecutive_bars=1)
    assert col(quiet, "flow_state_code") == [0, 0, 0]


def test_output_schema_and_order() -> None:
    ev = events_of([None, 0.1, 0.2])
    assert ev.columns == event_output_columns(EventParams())
    assert ev.columns[:3] == ["ticker", "exchange", "trade_date"]
    assert "tmf_21" not in ev.columns
    assert all(ev.schema[c] == pl.Boolean for c in EVENT_COLUMNS)
    assert ev.schema["flow_state_code"] == pl.Int8
    assert ev.schema["tmf_long_events_20"] == pl.Int32
    assert col(ev, "event_calc_version") == ["event_grammar_v1"] * 3
    extra = build_events(indicator_frame({"A.US": [0.1]}), EventParams(activity_windows=[3, 20]))
    assert extra.columns[-2:] == ["tmf_long_events_3", "tmf_short_events_3"]


def test_minimal_input_derives_indicator_columns() -> None:
    full = indicator_frame({"A.US": [None, -0.2, 0.1, 0.3, 0.2, -0.25, -0.1], "B.US": [0.1] * 3})
    minimal = full.select("ticker", "exchange", "trade_date", "tmf_21", "tti_proxy_v1_21")
    assert build_events(minimal).equals(build_events(full))


def test_unsorted_input_sorted_output_and_bad_inputs() -> None:
    df = indicator_frame({"B.US": [0.1, -0.1, 0.2], "A.US": [-0.2, 0.3, 0.1, -0.1]})
    want = build_events(df.sort("ticker", "trade_date"))
    assert build_events(df.sample(fraction=1.0, shuffle=True, seed=3)).equals(want)
    assert col(want, "ticker") == ["A.US"] * 4 + ["B.US"] * 3
    with pytest.raises(ValueError, match="duplicate"):
        build_events(pl.concat([df, df.head(1)]))
    with pytest.raises(ValueError, match="missing input columns"):
        build_events(df.drop("tti_proxy_v1_21"))
    empty = build_events(indicator_frame({}))
    assert empty.height == 0 and empty.columns == event_output_columns(EventParams())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pivot_mode": "5bar"},
        {"respect_fail_lookback_bars": 0},
        {"hold_consecutive_bars": 0},
        {"hold_consecutive_bars": 2.5},
        {"tmf_burst_abs_threshold": -0.1},
        {"tmf_burst_slope_threshold": float("nan")},
        {"eps": 0.0},
        {"activity_windows": []},
        {"activity_windows": [5, 0]},
    ],
)
def test_bad_params_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        EventParams(**kwargs)


def test_params_from_settings_accepts_old_name() -> None:
    p = EventParams.from_settings(
        {"respect_fail_lookahead_bars": 7, "activity_windows": [20, 5, 5], "unknown": 1}
    )
    assert p.respect_fail_lookback_bars == 7
    assert p.activity_windows == (5, 20)
    assert EventParams(hold_consecutive_bars=np.int64(3)).hold_consecutive_bars == 3


# --------------------------------------------------------------------------------------------
# properties: reference agreement, ticker independence, causality

GRID = [round(x * 0.05, 2) for x in range(-8, 9)]  # ties, exact zeros, threshold crossings


@st.composite
def series_of_len(draw: st.DrawFn, n: int) -> list[float | None]:
    """``n`` values on a coarse grid after 0..22 leading nulls (the indicator warm-up)."""
    warm = draw(st.integers(0, min(n, 22)))
    values = draw(st.lists(st.sampled_from(GRID), min_size=n - warm, max_size=n - warm))
    return [None] * warm + values


@st.composite
def panel_and_params(draw: st.DrawFn) -> tuple[pl.DataFrame, EventParams]:
    names = draw(st.lists(st.sampled_from(["AA.US", "B.US", "C.US", "ZZ.US"]), unique=True))
    lengths = {t: draw(st.integers(0, 45)) for t in names}
    tmf = {t: draw(series_of_len(n)) for t, n in lengths.items()}
    tti = {t: draw(series_of_len(n)) for t, n in lengths.items()}
    params = EventParams(
        respect_fail_lookback_bars=draw(st.integers(1, 12)),
        hold_consecutive_bars=draw(st.integers(1, 6)),
        tmf_burst_abs_threshold=draw(st.sampled_from([0.0, 0.1, 0.15, 0.3])),
        tmf_burst_slope_threshold=draw(st.sampled_from([0.0, 0.05, 0.1])),
        activity_windows=tuple(draw(st.sets(st.integers(1, 25), min_size=1, max_size=3))),
    )
    return indicator_frame(tmf, tti), params


PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(panel_and_params())
def test_matches_plain_python_reference(case: tuple[pl.DataFrame, EventParams]) -> None:
    df, p = case
    out = build_events(df, p)
    for ticker in out.get_column("ticker").unique().to_list():
        got = out.filter(pl.col("ticker") == ticker)
        src = df.filter(pl.col("ticker") == ticker).sort("trade_date")
        want = ref_events(col(src, "tmf_21"), col(src, "tti_proxy_v1_21"), p)
        for name, values in want.items():
            assert col(got, name) == values, (ticker, name)


@PROPS
@given(panel_and_params())
def test_ticker_outputs_do_not_depend_on_other_tickers(
    case: tuple[pl.DataFrame, EventParams],
) -> None:
    df, p = case
    together = build_events(df.reverse(), p)
    for ticker in df.get_column("ticker").unique().to_list():
        alone = build_events(df.filter(pl.col("ticker") == ticker), p)
        assert together.filter(pl.col("ticker") == ticker).equals(alone)


@PROPS
@given(panel_and_params(), st.integers(0, 45))
def test_causality_truncation(case: tuple[pl.DataFrame, EventParams], k: int) -> None:
    df, p = case
    cutoff = START + dt.timedelta(days=k)
    full = build_events(df, p).filter(pl.col("trade_date") <= cutoff)
    truncated = build_events(df.filter(pl.col("trade_date") <= cutoff), p)
    assert truncated.equals(full)
