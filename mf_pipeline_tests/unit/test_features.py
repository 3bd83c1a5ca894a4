"""Gold Features v1 (spec/etl.md §8): hand-computed cases, a plain-Python reference,
multi-ticker independence and causality."""

import datetime as dt
import math

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mf_pipeline.lib.layers.events import EventParams, build_events
from mf_pipeline.lib.layers.features import (
    FEATURE_EVENT_FLAGS,
    RECENCY_SOURCES,
    FeatureParams,
    ScoreWeights,
    build_features,
    feature_output_columns,
)
from mf_pipeline_tests.unit.test_events import (
    PROPS,
    START,
    F,
    T,
    col,
    indicator_frame,
    panel_and_params,
)


def crafted(
    n: int,
    m: list[float | None] | None = None,
    q: list[float | None] | None = None,
    codes: list[int] | None = None,
    **columns: list,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One ticker: an indicator frame and a hand-written event frame for the same rows."""
    m = m if m is not None else [0.1] * n
    ind = indicator_frame({"A.US": m}, {"A.US": q if q is not None else m})
    ev = ind.select("ticker", "exchange", "trade_date").with_columns(
        pl.Series("flow_state_code", codes or [0] * n, dtype=pl.Int8),
        *(pl.Series(c, columns.get(c, [F] * n), dtype=pl.Boolean) for c in FEATURE_EVENT_FLAGS),
        *(
            pl.Series(bs, columns[bs], dtype=pl.Int32)
            for bs in RECENCY_SOURCES.values()
            if bs in columns
        ),
    )
    return ind, ev


def approx(values: list) -> list:
    return [None if v is None else pytest.approx(v, abs=1e-12) for v in values]


# --------------------------------------------------------------------------------------------
# hand-computed cases

FLOW_EVENTS = {
    "ev_tmf_zero_up": [T, F, F, F, F, F, F, F],
    "ev_tmf_respect_zero_up": [F, T, F, F, F, F, F, F],
    "ev_tmf_burst_up": [F, F, T, F, F, F, F, F],
    "ev_tmf_hold_pos": [F, F, F, T, T, F, F, F],
    "ev_tmf_zero_down": [F, F, F, F, F, T, F, F],
    "ev_tmf_burst_down": [F, F, F, F, F, F, T, F],
    "ev_tmf_hold_neg": [F, F, F, F, F, F, F, T],
    "ev_tmf_respect_zero_down": [F, F, F, F, F, F, F, T],
    "ev_tmf_respect_fail_down": [F, T, F, F, F, F, F, F],
    "ev_tmf_respect_fail_up": [F, F, F, T, T, F, F, F],
}


def test_flow_scores_with_default_weights() -> None:
    ind, ev = crafted(8, **FLOW_EVENTS)
    out = build_features(ind, ev)
    # long_base = [1, 2, 2, 1.5, 1.5, 0, 0, 0]; short_base = [0, 0, 0, 0, 0, 1, 2, 3.5]
    assert col(out, "long_flow_score_5") == [1, 3, 5, 6.5, 8, 7, 5, 3]
    assert col(out, "short_flow_score_5") == [0, 0, 0, 0, 0, 1, 3, 6.5]
    assert col(out, "long_flow_score_20") == [1, 3, 5, 6.5, 8, 8, 8, 8]
    assert col(out, "short_flow_score_20") == [0, 0, 0, 0, 0, 1, 3, 6.5]
    assert col(out, "delta_flow_5") == [1, 3, 5, 6.5, 8, 6, 2, -3.5]
    assert col(out, "delta_flow_20") == [1, 3, 5, 6.5, 8, 7, 5, 1.5]
    assert col(out, "flow_activity_20") == [1, 3, 5, 6.5, 8, 9, 11, 14.5]
    assert col(out, "flow_bias_20") == approx([1, 1, 1, 1, 1, 7 / 9, 5 / 11, 1.5 / 14.5])
    assert col(out, "long_burst_5") == [0, 0, 1, 1, 1, 1, 1, 0]
    assert col(out, "short_burst_20") == [0, 0, 0, 0, 0, 0, 1, 1]
    assert col(out, "persistence_pos_20") == approx([0, 0, 0, 1 / 4, 2 / 5, 2 / 6, 2 / 7, 2 / 8])
    assert col(out, "persistence_neg_20") == approx([0] * 7 + [1 / 8])
    assert col(out, "oscillation_index_20") == [1, 1, 1, 1, 1, 2, 2, 2]
    assert col(out, "respect_fail_balance_20") == [0, 1, 1, 0, -1, -1, -1, -1]


def test_flow_scores_with_custom_weights_and_windows() -> None:
    ind, ev = crafted(8, **FLOW_EVENTS)
    weights = ScoreWeights(zero=0.5, respect=3.0, burst=1.0, hold=0.25)
    out = build_features(ind, ev, FeatureParams(score_weights=weights, activity_windows=(2,)))
    # long_base = [0.5, 3, 1, 0.25, 0.25, 0, 0, 0]; short_base = [0, 0, 0, 0, 0, 0.5, 1, 3.25]
    assert col(out, "long_flow_score_2") == [0.5, 3.5, 4, 1.25, 0.5, 0.25, 0, 0]
    assert col(out, "short_flow_score_2") == [0, 0, 0, 0, 0, 0.5, 1.5, 4.25]
    assert col(out, "long_flow_score_5") == [0.5, 3.5, 4.5, 4.75, 5, 4.5, 1.5, 0.5]
    assert out.columns[-2:] == ["long_flow_score_2", "short_flow_score_2"]


def test_flow_bias_null_without_activity() -> None:
    ind, ev = crafted(3)
    out = build_features(ind, ev)
    assert col(out, "flow_activity_20") == [0, 0, 0]
    assert col(out, "flow_bias_20") == [None, None, None]


def test_recency_transform_with_clip() -> None:
    bs = [None, 0, 1, 5, 20, 25]
    ind, ev = crafted(6, bs_tmf_zero_up=bs, bs_tmf_burst_down=bs)
    out = build_features(ind, ev)
    assert col(out, "rec_tmf_zero_up_20") == [None, 0, 0.05, 0.25, 1.0, 1.0]
    assert col(out, "rec_tmf_burst_down_20") == [None, 0, 0.05, 0.25, 1.0, 1.0]
    # counters absent from the events frame count as null
    assert col(out, "rec_tmf_respect_up_20") == [None] * 6
    clipped = build_features(ind, ev, FeatureParams(recency_clip_bars=4))
    assert col(clipped, "rec_tmf_zero_up_20") == [None, 0, 0.25, 1.0, 1.0, 1.0]


def test_state_transition_features() -> None:
    ind, ev = crafted(8, codes=[0, 0, 1, 2, 2, 2, 4, 0])
    out = build_features(ind, ev)
    assert col(out, "state_prev") == [None, 0, 0, 1, 2, 2, 2, 4]
    assert col(out, "state_changed") == [F, F, T, T, F, F, T, T]
    assert col(out, "state_run_length") == [1, 2, 1, 1, 2, 3, 1, 1]
    assert col(out, "state_transition_code") == [None, 0, 1, 12, 22, 22, 24, 40]
    assert col(out, "bs_state_change") == [None, None, 0, 0, 1, 2, 0, 0]
    assert out.schema["state_prev"] == pl.Int8
    assert out.schema["state_transition_code"] == pl.Int16
    assert out.schema["state_run_length"] == pl.Int32


def test_level_and_slope_features() -> None:
    m = [t * t / 64 for t in range(12)]
    q = [0.5, 0.25, -0.25, 0.0, -0.5, 0.75, 0.5, 0.25, 0.0, -0.25, -0.5, -0.75]
    ind, ev = crafted(12, m=m, q=q)
    out = build_features(ind, ev)
    assert col(out, "tmf_slope_10") == [None] * 10 + [100 / 64, 120 / 64]
    assert col(out, "tmf_curvature_1") == [None, None] + [2 / 64] * 10
    assert col(out, "tti_proxy_slope_1") == [None] + [q[t] - q[t - 1] for t in range(1, 12)]
    assert col(out, "tti_proxy_slope_5") == [None] * 5 + [q[t] - q[t - 5] for t in range(5, 12)]
    signs_q = [1, 1, -1, 0, -1, 1, 1, 1, 0, -1, -1, -1]  # TMF sign: 0 on row 0, then +1
    assert col(out, "tmf_tti_sign_agree") == [F] + [s == 1 for s in signs_q[1:]]
    assert col(out, "tmf_tti_divergence") == [F] + [s == -1 for s in signs_q[1:]]


def test_output_schema_order_and_no_upstream_copies() -> None:
    ind, ev = crafted(3)
    out = build_features(ind, ev)
    assert out.columns == feature_output_columns(FeatureParams())
    for upstream in ("tmf_21", "flow_state_code", "ev_tmf_zero_up", "bs_tmf_zero_up", "close"):
        assert upstream not in out.columns
    assert col(out, "feature_calc_version") == ["gold_features_v1"] * 3
    assert out.schema["long_burst_5"] == pl.Int32
    assert out.schema["oscillation_index_20"] == pl.Float64


def test_misaligned_events_are_joined_and_missing_flags_default() -> None:
    ind = indicator_frame({"A.US": [-0.1, 0.1, 0.2, -0.3], "B.US": [0.1, -0.1, 0.3]})
    ev = build_events(ind)
    aligned = build_features(ind, ev)
    shuffled = build_features(ind, ev.sample(fraction=1.0, shuffle=True, seed=7).drop("exchange"))
    assert shuffled.equals(aligned)
    bare = build_features(ind, ev.select("ticker", "trade_date", "flow_state_code"))
    assert col(bare, "long_flow_score_20") == [0.0] * 7
    assert col(bare, "rec_tmf_zero_up_20") == [None] * 7
    with pytest.raises(ValueError, match="misses columns"):
        build_features(ind, ev.drop("flow_state_code"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recency_clip_bars": 0},
        {"eps": -1.0},
        {"activity_windows": (0,)},
    ],
)
def test_bad_params_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FeatureParams(**kwargs)
    with pytest.raises(ValueError, match="finite"):
        ScoreWeights(hold=math.inf)


def test_params_always_include_5_and_20_and_from_settings() -> None:
    assert FeatureParams(activity_windows=(10,)).activity_windows == (5, 10, 20)
    p = FeatureParams.from_settings(
        {"score_weights": {"zero": 2.0, "respect": 1.0, "burst": 1.0, "hold": 1.0}, "eps": 1e-9}
    )
    assert p.score_weights.zero == 2.0 and p.eps == 1e-9


# --------------------------------------------------------------------------------------------
# plain-Python reference of §8 and properties


def ref_features(m: list, q: list, ev: pl.DataFrame, p: FeatureParams) -> dict[str, list]:
    n = len(m)
    e = {c: col(ev, c) for c in ev.columns}
    w = p.score_weights
    k = p.recency_clip_bars

    def roll(x: list, win: int) -> list:
        return [sum(x[max(0, t - win + 1) : t + 1]) for t in range(n)]

    def diff(x: list, lagk: int) -> list:
        return [
            None if t < lagk or x[t] is None or x[t - lagk] is None else x[t] - x[t - lagk]
            for t in range(n)
        ]

    def sign(v: float | None) -> int:
        return 0 if v is None else (v > 0) - (v < 0)

    slope1 = diff(m, 1)
    out: dict[str, list] = {
        "tmf_slope_10": diff(m, 10),
        "tmf_curvature_1": diff(slope1, 1),
        "tti_proxy_slope_1": diff(q, 1),
        "tti_proxy_slope_5": diff(q, 5),
        "tmf_tti_sign_agree": [sign(a) == sign(b) != 0 for a, b in zip(m, q, strict=True)],
        "tmf_tti_divergence": [sign(a) * sign(b) < 0 for a, b in zip(m, q, strict=True)],
    }
    long_base = [
        w.zero * e["ev_tmf_zero_up"][t]
        + w.respect * e["ev_tmf_respect_zero_up"][t]
        + w.burst * e["ev_tmf_burst_up"][t]
        + w.hold * e["ev_tmf_hold_pos"][t]
        for t in range(n)
    ]
    short_base = [
        w.zero * e["ev_tmf_zero_down"][t]
        + w.respect * e["ev_tmf_respect_zero_down"][t]
        + w.burst * e["ev_tmf_burst_down"][t]
        + w.hold * e["ev_tmf_hold_neg"][t]
        for t in range(n)
    ]
    for win in p.activity_windows:
        out[f"long_flow_score_{win}"] = roll(long_base, win)
        out[f"short_flow_score_{win}"] = roll(short_base, win)
    l20, s20 = out["long_flow_score_20"], out["short_flow_score_20"]
    out["delta_flow_5"] = [
        a - b for a, b in zip(out["long_flow_score_5"], out["short_flow_score_5"], strict=True)
    ]
    out["delta_flow_20"] = [a - b for a, b in zip(l20, s20, strict=True)]
    out["flow_activity_20"] = [a + b for a, b in zip(l20, s20, strict=True)]
    out["flow_bias_20"] = [
        (a - b) / (a + b) if abs(a + b) > p.eps else None for a, b in zip(l20, s20, strict=True)
    ]
    for rec, bs in RECENCY_SOURCES.items():
        out[rec] = [None if v is None else min(v, k) / k for v in e[bs]]
    for win in (5, 20):
        out[f"long_burst_{win}"] = roll([int(v) for v in e["ev_tmf_burst_up"]], win)
        out[f"short_burst_{win}"] = roll([int(v) for v in e["ev_tmf_burst_down"]], win)
    for side, src in (("pos", "ev_tmf_hold_pos"), ("neg", "ev_tmf_hold_neg")):
        sums = roll([int(v) for v in e[src]], 20)
        out[f"persistence_{side}_20"] = [s / min(t + 1, 20) for t, s in enumerate(sums)]
    out["oscillation_index_20"] = roll(
        [int(a) + int(b) for a, b in zip(e["ev_tmf_zero_up"], e["ev_tmf_zero_down"], strict=True)],
        20,
    )
    out["respect_fail_balance_20"] = [
        a - b
        for a, b in zip(
            roll([int(v) for v in e["ev_tmf_respect_fail_down"]], 20),
            roll([int(v) for v in e["ev_tmf_respect_fail_up"]], 20),
            strict=True,
        )
    ]
    codes = e["flow_state_code"]
    prev = [None] + codes[:-1]
    changed = [p_ is not None and c != p_ for c, p_ in zip(codes, prev, strict=True)]
    run, last, runs, since = 0, None, [], []
    for t in range(n):
        run = 1 if t == 0 or changed[t] else run + 1
        runs.append(run)
        last = t if changed[t] else last
        since.append(None if last is None else t - last)
    out["state_prev"] = prev
    out["state_changed"] = changed
    out["state_run_length"] = runs
    out["state_transition_code"] = [
        None if b is None else 10 * b + c for c, b in zip(codes, prev, strict=True)
    ]
    out["bs_state_change"] = since
    return out


FEATURE_PARAMS = st.builds(
    FeatureParams,
    activity_windows=st.sets(st.integers(1, 25), max_size=2).map(tuple),
    score_weights=st.builds(
        ScoreWeights,
        zero=st.sampled_from([1.0, 0.5, 0.1]),
        respect=st.sampled_from([2.0, 3.0]),
        burst=st.sampled_from([2.0, 0.3]),
        hold=st.sampled_from([1.5, 0.7]),
    ),
    recency_clip_bars=st.integers(1, 25),
)


@PROPS
@given(panel_and_params(), FEATURE_PARAMS)
def test_matches_plain_python_reference(
    case: tuple[pl.DataFrame, EventParams], fp: FeatureParams
) -> None:
    df, ep = case
    ev = build_events(df, ep)
    out = build_features(df, ev, fp)
    for ticker in out.get_column("ticker").unique().to_list():
        got = out.filter(pl.col("ticker") == ticker)
        src = df.filter(pl.col("ticker") == ticker).sort("trade_date")
        want = ref_features(
            col(src, "tmf_21"),
            col(src, "tti_proxy_v1_21"),
            ev.filter(pl.col("ticker") == ticker),
            fp,
        )
        for name, values in want.items():
            assert col(got, name) == approx(values), (ticker, name)


@PROPS
@given(panel_and_params(), st.integers(0, 45))
def test_independence_and_causality(case: tuple[pl.DataFrame, EventParams], k: int) -> None:
    df, ep = case
    full = build_features(df, build_events(df, ep))
    for ticker in df.get_column("ticker").unique().to_list():
        one = df.filter(pl.col("ticker") == ticker)
        alone = build_features(one, build_events(one, ep))
        assert full.filter(pl.col("ticker") == ticker).equals(alone)
    cutoff = START + dt.timedelta(days=k)
    cut = df.filter(pl.col("trade_date") <= cutoff)
    truncated = build_features(cut, build_events(cut, ep))
    assert truncated.equals(full.filter(pl.col("trade_date") <= cutoff))
