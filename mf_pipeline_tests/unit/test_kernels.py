"""Numba kernels: hand-computed values, null rules and equality with Polars' own operators."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mf_pipeline.lib.kernels.counters import (
    NULL_SENTINEL,
    bars_since,
    run_length,
    sentinel_to_null,
)
from mf_pipeline.lib.kernels.offsets import bar_index, kernel_array, ticker_offsets
from mf_pipeline.lib.kernels.recursive import (
    ewm_adjust_false,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_std,
    tmf_tti,
    true_range,
    wilder,
)

NAN = np.nan
EPS = 1e-12


def off(*lengths: int) -> np.ndarray:
    """Offsets for consecutive tickers of the given lengths."""
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def arr(*values: float) -> np.ndarray:
    """Read-only float64 input, the one array type the layers pass (one compile per kernel)."""
    return kernel_array(np.array(values, dtype=np.float64))


def run1(kernel, x: np.ndarray, *params, offsets: np.ndarray | None = None) -> np.ndarray:
    """Call a single-input kernel on one ticker (or given offsets) and return its output."""
    out = np.full(x.shape[0], -999.0)
    kernel(kernel_array(x), *params, off(x.shape[0]) if offsets is None else offsets, out)
    return out


# --------------------------------------------------------------------------- offsets


def test_ticker_offsets_and_bar_index():
    s = pl.Series("ticker", ["A", "A", "B", "C", "C", "C"])
    o = ticker_offsets(s)
    assert o.dtype == np.int64
    assert o.tolist() == [0, 2, 3, 6]
    assert bar_index(o).tolist() == [0, 1, 0, 0, 1, 2]
    assert ticker_offsets(pl.Series("ticker", [], dtype=pl.String)).tolist() == [0]
    assert bar_index(np.array([0], dtype=np.int64)).tolist() == []


def test_kernel_array_is_one_readonly_float64_type():
    # with and without nulls Polars hands out different array kinds; kernels must see one
    for s in (pl.Series([1.0, 2.0]), pl.Series([1.0, None]), pl.Series([1, 2])):
        a = kernel_array(s)
        assert a.dtype == np.float64 and not a.flags.writeable and a.flags.c_contiguous
    assert np.isnan(kernel_array(pl.Series([1.0, None]))[1])


def test_ticker_offsets_rejects_split_ticker():
    with pytest.raises(ValueError, match="not grouped"):
        ticker_offsets(pl.Series("ticker", ["A", "B", "A"]))


def test_kernels_reject_bad_offsets_and_params():
    x = arr(1, 2, 3)
    with pytest.raises(ValueError, match="offsets"):
        run1(ewm_adjust_false, x, 0.5, 1, offsets=np.array([0, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="non-decreasing"):
        run1(ewm_adjust_false, x, 0.5, 1, offsets=np.array([0, 2, 1, 3], dtype=np.int64))
    with pytest.raises(ValueError, match="alpha"):
        run1(ewm_adjust_false, x, 0.0, 1)
    with pytest.raises(ValueError, match="alpha"):
        run1(ewm_adjust_false, x, 1.5, 1)
    with pytest.raises(ValueError, match="n must be"):
        run1(wilder, x, 0)
    with pytest.raises(ValueError, match="window"):
        run1(rolling_mean, x, 0, 1)


# --------------------------------------------------------------------------- EWM / Wilder


def test_ewm_seed_and_recursion():
    # alpha 0.5: s0 = 2; s1 = 0.5*2 + 0.5*4 = 3; s2 = 0.5*3 + 0.5*8 = 5.5
    np.testing.assert_allclose(run1(ewm_adjust_false, arr(2, 4, 8), 0.5, 1), [2, 3, 5.5])


def test_ewm_leading_nulls_and_min_samples():
    # seeded at the first non-null (index 1); min_samples=2 -> first output at index 2
    out = run1(ewm_adjust_false, arr(NAN, 2, 4, 8), 0.5, 2)
    np.testing.assert_allclose(out, [NAN, NAN, 3, 5.5])
    # min_samples 0 behaves like 1 (Polars)
    np.testing.assert_allclose(run1(ewm_adjust_false, arr(NAN, 2, 4), 0.5, 0), [NAN, 2, 3])


def test_ewm_null_in_the_middle_uses_absolute_position_weights():
    # Polars ignore_nulls=False: after s=2, one null decays the old weight to (1-a)^2 = 0.25
    # against a = 0.5 for the new value: (0.25*2 + 0.5*6) / (0.25 + 0.5) = 3.5 / 0.75
    out = run1(ewm_adjust_false, arr(2, NAN, 6), 0.5, 1)
    np.testing.assert_allclose(out, [2, NAN, 3.5 / 0.75])
    ref = pl.Series([2.0, None, 6.0]).ewm_mean(alpha=0.5, adjust=False, min_samples=1)
    np.testing.assert_array_equal(out, ref.to_numpy())


def test_wilder_period_3():
    # alpha 1/3, min 3: s = 3, 3 + (6-3)/3 = 4, 4 + (9-4)/3 = 17/3, 17/3 + (12-17/3)/3 = 70/9
    out = run1(wilder, arr(3, 6, 9, 12), 3)
    np.testing.assert_allclose(out, [NAN, NAN, 17 / 3, 70 / 9], rtol=1e-15)
    # not seeded with an SMA (which would give 6 at index 2)
    assert out[2] != 6.0


def test_ewm_resets_per_ticker():
    x = arr(2, 4, 8, 100, 200)
    out = run1(ewm_adjust_false, x, 0.5, 2, offsets=off(3, 2))
    np.testing.assert_allclose(out, [NAN, 3, 5.5, NAN, 150])


@st.composite
def panel_with_nulls(draw, max_tickers: int = 4, max_len: int = 40):
    """Random multi-ticker float data with nulls (None), and matching offsets."""
    lengths = draw(st.lists(st.integers(0, max_len), min_size=1, max_size=max_tickers))
    n = sum(lengths)
    values = draw(
        st.lists(
            st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)),
            min_size=n,
            max_size=n,
        )
    )
    tickers = np.repeat(np.arange(len(lengths)), lengths)
    df = pl.DataFrame({"t": tickers, "x": values}, schema={"t": pl.Int64, "x": pl.Float64})
    return df, off(*lengths)


@settings(max_examples=60, deadline=None)
@given(
    data=panel_with_nulls(),
    alpha=st.floats(0.01, 1.0),
    min_samples=st.integers(0, 6),
)
def test_ewm_equals_polars_with_nulls(data, alpha, min_samples):
    df, offsets = data
    out = run1(ewm_adjust_false, df["x"].to_numpy(), alpha, min_samples, offsets=offsets)
    ref = df.select(
        pl.col("x").ewm_mean(alpha=alpha, adjust=False, min_samples=min_samples).over("t")
    )["x"].to_numpy()
    np.testing.assert_array_equal(out, ref)  # bit-identical, NaN == null


@settings(max_examples=40, deadline=None)
@given(data=panel_with_nulls(), window=st.integers(1, 8), min_samples=st.integers(0, 8))
def test_rolling_kernels_equal_polars(data, window, min_samples):
    df, offsets = data
    x = df["x"].to_numpy()
    m = max(min(min_samples, window), 1)  # Polars requires 1 <= min_samples <= window

    def ref(expr: pl.Expr) -> np.ndarray:
        return df.select(expr.over("t"))["x"].to_numpy()

    x_ = pl.col("x")
    np.testing.assert_array_equal(
        run1(rolling_max, x, window, m, offsets=offsets), ref(x_.rolling_max(window, min_samples=m))
    )
    np.testing.assert_array_equal(
        run1(rolling_min, x, window, m, offsets=offsets), ref(x_.rolling_min(window, min_samples=m))
    )
    np.testing.assert_allclose(
        run1(rolling_mean, x, window, m, offsets=offsets),
        ref(x_.rolling_mean(window, min_samples=m)),
        rtol=1e-9,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        run1(rolling_std, x, window, m, 0, offsets=offsets),
        ref(x_.rolling_std(window, min_samples=m, ddof=0)),
        rtol=1e-7,
        atol=1e-4,
    )


def test_rolling_hand_values():
    x = arr(1, 2, 3, 4, 10)
    # window 3, min 3: means (1+2+3)/3, (2+3+4)/3, (3+4+10)/3
    np.testing.assert_allclose(run1(rolling_mean, x, 3, 3), [NAN, NAN, 2, 3, 17 / 3])
    # population std of (2, 3, 4) = sqrt(2/3); of (3, 4, 10): mean 17/3
    sd = np.sqrt(((3 - 17 / 3) ** 2 + (4 - 17 / 3) ** 2 + (10 - 17 / 3) ** 2) / 3)
    np.testing.assert_allclose(
        run1(rolling_std, x, 3, 3, 0), [NAN, NAN, np.sqrt(2 / 3), np.sqrt(2 / 3), sd]
    )
    np.testing.assert_array_equal(run1(rolling_max, x, 3, 3), [NAN, NAN, 3, 4, 10])
    np.testing.assert_array_equal(run1(rolling_min, arr(5, 1, 3, 4, 2), 3, 1), [5, 1, 1, 1, 2])
    # a constant window has exactly zero spread (volume_z_20's guard relies on it)
    assert run1(rolling_std, arr(1e6 + 0.1, 1e6 + 0.1, 1e6 + 0.1), 3, 3, 0)[2] == 0.0


# --------------------------------------------------------------------------- true range / TMF


# Five bars: plain, inside the previous close, gap up, zero true range, gap down.
H = arr(10, 11, 13, 13, 12)
L = arr(8, 10, 12, 13, 11)
C = arr(9.5, 10.5, 13, 13, 11)
V = arr(100, 200, 300, 50, 100)


def test_true_range_hand():
    # bar0 h-l = 2; bar1 max(1, |11-9.5|, |10-9.5|) = 1.5; bar2 max(1, |13-10.5|, |12-10.5|) = 2.5
    # bar3 max(0, 0, 0) = 0; bar4 max(1, |12-13|, |11-13|) = 2
    out = np.empty(5)
    true_range(H, L, C, off(5), out)
    np.testing.assert_array_equal(out, [2, 1.5, 2.5, 0, 2])
    # second ticker's first bar ignores the previous ticker's close
    out2 = np.empty(5)
    true_range(H, L, C, off(2, 3), out2)
    assert out2[2] == 13 - 12


def _tmf(period_tmf: int, period_proxy: int, offsets=None):
    tr = np.empty(5)
    offsets = off(5) if offsets is None else offsets
    true_range(H, L, C, offsets, tr)
    m = np.empty(5)
    q = np.empty(5)
    tmf_tti(H, L, C, V, kernel_array(tr), period_tmf, period_proxy, EPS, offsets, m, q)
    return m, q


def test_tmf_pos_with_period_1():
    # period 1: Wilder is the identity, so tmf = ad/v = pos and tti = pos*tr/tr = pos (tr > 0)
    # pos0 (no prev close) = (2*9.5 - 10 - 8)/2 = 0.5
    # pos1: trh = max(11, 9.5) = 11, trl = min(10, 9.5) = 9.5 -> (21 - 20.5)/1.5 = 1/3
    # pos2: trh = 13, trl = min(12, 10.5) = 10.5 -> (26 - 23.5)/2.5 = 1
    # pos3: trh = trl = 13 -> range eps, pos = 0/eps = 0; tti: den 0 -> gdiv null
    # pos4: trh = max(12, 13) = 13, trl = 11 -> (22 - 24)/2 = -1
    m, q = _tmf(1, 1)
    np.testing.assert_allclose(m, [0.5, 1 / 3, 1, 0, -1], rtol=1e-15)
    np.testing.assert_allclose(q, [0.5, 1 / 3, 1, NAN, -1], rtol=1e-15)


def test_tmf_tti_period_2():
    pos = np.array([0.5, 1 / 3, 1, 0, -1])
    ad = pos * V  # 50, 66.67, 300, 0, -100
    # Wilder(2): alpha 1/2, min 2, seeded with the first value
    ad_w = [50.0]
    vo_w = [100.0]
    for a, v in zip(ad[1:], V[1:], strict=True):
        ad_w.append(ad_w[-1] + (a - ad_w[-1]) / 2)
        vo_w.append(vo_w[-1] + (v - vo_w[-1]) / 2)
    # ad_w = 50, 58.33, 179.17, 89.58, -5.21; vo_w = 100, 150, 225, 137.5, 118.75
    assert vo_w == [100, 150, 225, 137.5, 118.75]
    exp_tmf = [NAN] + [a / v for a, v in zip(ad_w[1:], vo_w[1:], strict=True)]
    # proxy_raw = pos * tr = 1, 0.5, 2.5, 0, -2 ; den = tr = 2, 1.5, 2.5, 0, 2
    pw = [1.0, 0.75, 1.625, 0.8125, -0.59375]
    dw = [2.0, 1.75, 2.125, 1.0625, 1.53125]
    exp_tti = [NAN] + [a / b for a, b in zip(pw[1:], dw[1:], strict=True)]
    m, q = _tmf(2, 2)
    np.testing.assert_allclose(m, exp_tmf, rtol=1e-14)
    np.testing.assert_allclose(q, exp_tti, rtol=1e-14)
    np.testing.assert_allclose(m[1:], [0.3888888888888889, 0.7962962962962963, 89.58333 / 137.5,
                                       -0.043859649], rtol=1e-6)  # fmt: skip


def test_tmf_first_bar_of_second_ticker_has_no_prev_close():
    # ticker B = bars 2..4 alone: its first bar (13, 12, 13) uses h/l: pos = (26 - 25)/1 = 1
    m, _ = _tmf(1, 1, offsets=off(2, 3))
    assert m[2] == 1.0
    m_alone = np.empty(3)
    q_alone = np.empty(3)
    tr = np.empty(3)
    true_range(H[2:], L[2:], C[2:], off(3), tr)
    tmf_tti(H[2:], L[2:], C[2:], V[2:], kernel_array(tr), 1, 1, EPS, off(3), m_alone, q_alone)
    np.testing.assert_array_equal(m[2:], m_alone)


def test_tmf_zero_volume_is_null():
    m = np.empty(3)
    q = np.empty(3)
    z = arr(0, 0, 0)
    tmf_tti(arr(2, 2, 2), arr(1, 1, 1), arr(2, 2, 2), z, arr(1, 1, 1), 1, 1, EPS, off(3), m, q)
    assert np.isnan(m).all()  # volume Wilder 0 -> gdiv null
    np.testing.assert_array_equal(q, [1, 1, 1])


# --------------------------------------------------------------------------- counters


def test_bars_since():
    flag = np.array([False, True, False, False, True, False, False, True], dtype=np.bool_)
    out = np.empty(8, dtype=np.int32)
    bars_since(flag, off(6, 2), out)
    # ticker 1: null before the first event, 0 on it, counting up, reset on the next event
    # ticker 2 starts fresh: no event yet -> null, then 0
    assert out.tolist() == [-1, 0, 1, 2, 0, 1, NULL_SENTINEL, 0]
    s = sentinel_to_null("bs", out)
    assert s.dtype == pl.Int32
    assert s.to_list() == [None, 0, 1, 2, 0, 1, None, 0]


def test_run_length():
    values = np.array([1, 1, 2, 2, 2, 1, 1, 1], dtype=np.int64)
    out = np.empty(8, dtype=np.int32)
    run_length(values, off(6, 2), out)
    assert out.tolist() == [1, 2, 1, 2, 3, 1, 1, 2]  # reset at the ticker boundary (index 6)
