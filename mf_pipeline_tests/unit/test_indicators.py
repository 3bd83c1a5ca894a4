"""Indicator layer: TMF/TTI by hand, derived columns, warm-up positions, parameters,
independence, causality, and agreement with a literal ``over()`` reading of §6.2/§6.3."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from mf_pipeline.lib.layers.indicators import INDICATOR_COLUMNS, build_indicators
from mf_pipeline.lib.layers.silver import build_silver
from mf_pipeline_tests.unit.test_silver import bronze_frame, make_bronze

EPS = 1e-12


def indicators(bronze: pl.DataFrame, **kw) -> pl.DataFrame:
    return build_indicators(build_silver(bronze), **kw)


def pos_bars(p: list[float]) -> pl.DataFrame:
    """Bars whose TMF position is exactly ``p``: h = 20, l = 0 enclose every close, so
    trh = 20, trl = 0 and pos = (2c - 20) / 20 = p for c = 10 + 10p; volume 1, tr = 20."""
    close = [10 + 10 * x for x in p]
    n = len(p)
    return bronze_frame(close, close, [20.0] * n, [0.0] * n, [1.0] * n)


# --------------------------------------------------------------------------- hand values


def test_tmf_tti_by_hand_period_2():
    # bars: plain, inside prev close, gap up, zero true range, gap down
    bronze = bronze_frame(
        [9.5, 10.5, 13, 13, 11], [9.5, 10.5, 13, 13, 11], [10, 11, 13, 13, 12], [8, 10, 12, 13, 11],
        [100, 200, 300, 50, 100],
    )  # fmt: skip
    out = indicators(bronze, tmf_period=2, proxy_period=2)
    # pos: (19-18)/2 = .5 (first bar: h/l); (21-11-9.5)/1.5 = 1/3; (26-13-10.5)/2.5 = 1;
    #      0/eps = 0 (trh = trl = 13); (22-13-11)/2 = -1
    # ad = pos*v = 50, 200/3, 300, 0, -100; Wilder(2) = halfway steps from the first value
    ad_w = [50, 50 + (200 / 3 - 50) / 2]
    ad_w += [ad_w[-1] + (300 - ad_w[-1]) / 2]
    ad_w += [ad_w[-1] / 2, (ad_w[-1] / 2 - 100) / 2]
    vo_w = [100, 150, 225, 137.5, 118.75]
    exp_tmf = [None] + [a / b for a, b in zip(ad_w[1:], vo_w[1:], strict=True)]
    # tr = 2, 1.5, 2.5, 0, 2 -> proxy_raw = pos*tr = 1, .5, 2.5, 0, -2
    pw = [1, 0.75, 1.625, 0.8125, -0.59375]
    dw = [2, 1.75, 2.125, 1.0625, 1.53125]
    exp_tti = [None] + [a / b for a, b in zip(pw[1:], dw[1:], strict=True)]
    assert out["tmf_21"][0] is None and out["tti_proxy_v1_21"][0] is None
    assert out["tmf_21"].to_list()[1:] == pytest.approx(exp_tmf[1:], rel=1e-14)
    assert out["tti_proxy_v1_21"].to_list()[1:] == pytest.approx(exp_tti[1:], rel=1e-14)
    assert out["tmf_21"][2] == pytest.approx(179.16666666666666 / 225)


P = [0.5, 0.25, 0.5, -0.5, -0.25, -0.5, 0.0, 0.25, 0.5]


def test_derived_columns_by_hand():
    out = indicators(pos_bars(P), tmf_period=1, proxy_period=1)
    assert out["tmf_21"].to_list() == P  # period 1: Wilder is the identity, tmf = pos
    assert out["tti_proxy_v1_21"].to_list() == P
    assert out["tmf_ready_21"].all()
    F, T = False, True
    # cross up needs m_{t-1} <= 0: only t=7 (0.25 after 0.0); never on the first ready bar t=0
    assert out["tmf_zero_cross_up"].to_list() == [F, F, F, F, F, F, F, T, F]
    assert out["tmf_zero_cross_down"].to_list() == [F, F, F, T, F, F, F, F, F]
    assert out["tmf_sign"].to_list() == [1, 1, 1, -1, -1, -1, 0, 1, 1]
    assert out["tmf_slope_1"].to_list() == [None, -0.25, 0.25, -1, 0.25, -0.25, 0.5, 0.25, 0.25]
    # m_t - m_{t-5}: t5 -.5-.5, t6 0-.25, t7 .25-.5, t8 .5-(-.5)
    assert out["tmf_slope_5"].to_list() == [None] * 5 + [-1.0, -0.25, -0.25, 1.0]
    assert out["tmf_abs"].to_list() == [abs(x) for x in P]
    above = [T, T, T, F, F, F, F, T, T]
    below = [F, F, F, T, T, T, F, F, F]
    assert out["tmf_above_zero"].to_list() == above == out["tmf_pos"].to_list()
    assert out["tmf_below_zero"].to_list() == below == out["tmf_neg"].to_list()
    # up: above, rising, and m_{t-1} < m_{t-2}: t2 (.5 after .25 after .5)
    assert out["tmf_respect_zero_up_candidate"].to_list() == [F, F, T, F, F, F, F, F, F]
    # down: below, falling, m_{t-1} > m_{t-2}: t3 (.5 > .25) and t5 (-.25 > -.5)
    assert out["tmf_respect_zero_down_candidate"].to_list() == [F, F, F, T, F, T, F, F, F]
    assert out["tti_proxy_ready_21"].all()
    assert out["tti_proxy_zero_cross_up"].to_list() == out["tmf_zero_cross_up"].to_list()
    assert out["tti_proxy_zero_cross_down"].to_list() == out["tmf_zero_cross_down"].to_list()
    assert out["tti_proxy_sign"].to_list() == out["tmf_sign"].to_list()
    # EMA span 5 (alpha 1/3) seeded at m_0, output from the 5th non-null value (t=4)
    e = [P[0]]
    for x in P[1:]:
        e.append(e[-1] + (x - e[-1]) / 3)
    assert out["tmf_ema_5"].to_list()[:4] == [None] * 4
    assert out["tmf_ema_5"].to_list()[4:] == pytest.approx(e[4:], rel=1e-14)


def test_warmup_positions_with_default_periods():
    out = indicators(make_bronze([40], seed=5))
    m = out["tmf_21"]
    assert m[:20].is_null().all() and m[20:].is_not_null().all()
    assert out["tti_proxy_v1_21"][:20].is_null().all()
    assert out["tti_proxy_v1_21"][20:].is_not_null().all()
    assert out["tmf_ready_21"].to_list() == [False] * 20 + [True] * 20
    assert out["tmf_slope_1"][:21].is_null().all() and out["tmf_slope_1"][21] is not None
    assert out["tmf_slope_5"][:25].is_null().all() and out["tmf_slope_5"][25] is not None
    # tmf_ema_5: seeded at bar 20, 5 non-null values -> first output on bar index 24
    ema = out["tmf_ema_5"]
    assert ema[:24].is_null().all() and ema[24:].is_not_null().all()
    e = m[20]
    for t in range(21, 40):
        e = e + (m[t] - e) * (1 / 3)
        if t >= 24:
            assert ema[t] == pytest.approx(e, rel=1e-13)
    ref = m.ewm_mean(span=5, adjust=False, min_samples=5)
    assert_frame_equal(ema.to_frame(), ref.to_frame().rename({"tmf_21": "tmf_ema_5"}))
    # null sign is 0, null flags are False, no cross on the first ready bar
    assert out["tmf_sign"][:20].to_list() == [0] * 20
    assert not out["tmf_zero_cross_up"][20] and not out["tmf_zero_cross_down"][20]
    assert not out["tti_proxy_zero_cross_up"][20] and not out["tti_proxy_zero_cross_down"][20]


def test_zero_volume_gives_null_tmf_but_tti():
    out = indicators(pos_bars([0.5, 0.5]).with_columns(pl.lit(0.0).alias("volume")),
                     tmf_period=1, proxy_period=1)  # fmt: skip
    assert out["tmf_21"].to_list() == [None, None]
    assert out["tmf_ready_21"].to_list() == [False, False]
    assert out["tti_proxy_v1_21"].to_list() == [0.5, 0.5]


def test_schema_names_fixed_and_constants():
    out = indicators(make_bronze([30], seed=1), tmf_period=3, proxy_period=4)
    assert tuple(out.columns) == INDICATOR_COLUMNS
    assert out["tmf_21"][:2].is_null().all() and out["tmf_21"][2] is not None
    assert out["tti_proxy_v1_21"][:3].is_null().all() and out["tti_proxy_v1_21"][3] is not None
    assert out.schema["tmf_period"] == pl.Int32
    assert out["tmf_period"].unique().to_list() == [3]
    assert out.schema["tmf_sign"] == pl.Int8 and out.schema["tti_proxy_sign"] == pl.Int8
    for col in ("tmf_21", "tmf_slope_1", "tmf_slope_5", "tmf_ema_5", "tmf_abs",
                "tti_proxy_v1_21"):  # fmt: skip
        assert out.schema[col] == pl.Float64
    consts = out.select(
        "tti_formula_status", "tti_proxy_version", "indicator_schema_version",
        "indicator_calc_version",
    ).unique()  # fmt: skip
    assert consts.rows() == [("PROXY_UNDISCLOSED_ORIGINAL", "v1", "v1", "twiggs_indicators_v1")]
    for col in ("trh", "ad_raw", "ad_wilder", "close", "built_ts"):
        assert col not in out.columns


def test_parameter_validation():
    silver = build_silver(make_bronze([5]))
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="tmf_period"):
            build_indicators(silver, tmf_period=bad)
        with pytest.raises(ValueError, match="proxy_period"):
            build_indicators(silver, proxy_period=bad)
    for bad in (0.0, -1e-12, float("nan")):
        with pytest.raises(ValueError, match="eps"):
            build_indicators(silver, eps=bad)
    with pytest.raises(ValueError, match="required columns"):
        build_indicators(silver.drop("volume"))


def test_tr_derived_when_missing_and_unsorted_input():
    silver = build_silver(make_bronze([50, 30], seed=9))
    full = build_indicators(silver)
    shuffled = silver.drop("tr", "prev_close").sample(fraction=1.0, shuffle=True, seed=1)
    assert_frame_equal(build_indicators(shuffled), full, check_exact=True)


# --------------------------------------------------------------------------- reference


def indicators_reference(silver: pl.DataFrame, period: int = 21, eps: float = EPS) -> pl.DataFrame:
    """§6.2/§6.3 read literally with Polars ``over("ticker")`` (the old tool's shape)."""
    per = {"partition_by": "ticker"}
    h, lo, c, v = (pl.col(x) for x in ("high", "low", "close", "volume"))
    pc = c.shift(1).over(**per)
    trh = pl.when(pc.is_null()).then(h).otherwise(pl.max_horizontal(h, pc))
    trl = pl.when(pc.is_null()).then(lo).otherwise(pl.min_horizontal(lo, pc))
    df = silver.with_columns(trh.alias("trh"), trl.alias("trl")).with_columns(
        ((2 * c - pl.col("trh") - pl.col("trl"))
         / pl.max_horizontal(pl.col("trh") - pl.col("trl"), pl.lit(eps))).alias("pos")
    )  # fmt: skip

    def wilder(e: pl.Expr) -> pl.Expr:
        return e.ewm_mean(alpha=1 / period, adjust=False, min_samples=period).over(**per)

    def g(a: pl.Expr, b: pl.Expr) -> pl.Expr:
        return pl.when(b.abs() > eps).then(a / b)

    return df.select(
        g(wilder(pl.col("pos") * v), wilder(v)).alias("tmf_21"),
        g(wilder(pl.col("pos") * pl.col("tr").abs()), wilder(pl.col("tr").abs())).alias("tti"),
    )


def test_matches_literal_over_reference():
    silver = build_silver(make_bronze([300, 1, 25, 120], seed=4))
    out = build_indicators(silver)
    ref = indicators_reference(silver)
    for a, b in ((out["tmf_21"], ref["tmf_21"]), (out["tti_proxy_v1_21"], ref["tti"])):
        assert (a.is_null() == b.is_null()).all()
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- properties


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 60), min_size=2, max_size=4),
    seed=st.integers(0, 2**16),
    period=st.integers(1, 6),
)
def test_ticker_independent_of_others(lengths, seed, period):
    silver = build_silver(make_bronze(lengths, seed=seed))
    together = build_indicators(silver, tmf_period=period, proxy_period=period + 1)
    for ticker in together["ticker"].unique().to_list():
        alone = build_indicators(
            silver.filter(pl.col("ticker") == ticker), tmf_period=period, proxy_period=period + 1
        )
        assert_frame_equal(together.filter(pl.col("ticker") == ticker), alone, check_exact=True)


@settings(max_examples=15, deadline=None)
@given(k=st.integers(0, 79), seed=st.integers(0, 2**16))
def test_causal_truncation(k, seed):
    bronze = make_bronze([80, 30], seed=seed)
    keep = (pl.col("ticker") != "T00.US") | (pl.int_range(pl.len()) <= k)
    full = indicators(bronze)
    cut = indicators(bronze.filter(keep))
    assert_frame_equal(full.filter(keep), cut, check_exact=True)
