"""Silver base layer: every §5.3 column by hand, null rules, warm-up counts, independence,
causality, and agreement with a straightforward per-ticker ``over()`` reading of the spec."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from mf_pipeline.lib.layers.silver import (
    SILVER_COLUMNS,
    SILVER_FLOAT_COLUMNS,
    WARMUP_COLUMNS,
    build_silver,
)

EPS = 1e-12
D0 = dt.date(2020, 1, 1)


def bronze_frame(
    close, open_=None, high=None, low=None, volume=None, ticker="AAA.US", exchange="NYSE"
) -> pl.DataFrame:
    """One ticker's Bronze-like frame from explicit bar values (defaults: a flat bar)."""
    close = [float(x) for x in close]
    n = len(close)
    open_ = close if open_ is None else open_
    high = [max(o, c) for o, c in zip(open_, close, strict=True)] if high is None else high
    low = [min(o, c) for o, c in zip(open_, close, strict=True)] if low is None else low
    volume = [1000.0] * n if volume is None else volume
    dates = [D0 + dt.timedelta(days=i) for i in range(n)]
    return pl.DataFrame(
        {
            "ticker": [ticker] * n,
            "exchange": [exchange] * n,
            "trade_date": dates,
            "trade_dt": [dt.datetime.combine(d, dt.time()) for d in dates],
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "openint": [0] * n,
            "source_line_no": list(range(2, n + 2)),
            "quality_warn_count": [0] * n,
        },
        schema_overrides={c: pl.Float64 for c in ("open", "high", "low", "close", "volume")},
    )


def make_bronze(lengths: list[int], seed: int = 0) -> pl.DataFrame:
    """A random but valid multi-ticker Bronze panel (random-walk closes, OHLC consistent)."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, n in enumerate(lengths):
        if n == 0:
            continue
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        open_ = close * (1 + rng.normal(0, 0.005, n))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.01, n)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.01, n)))
        volume = np.round(rng.lognormal(10, 0.8, n))
        volume[rng.random(n) < 0.05] = 0.0
        frames.append(
            bronze_frame(
                close.tolist(), open_.tolist(), high.tolist(), low.tolist(), volume.tolist(),
                ticker=f"T{k:02d}.US", exchange="NASDAQ" if k % 2 else "NYSE",
            )
        )  # fmt: skip
    return pl.concat(frames)


# --------------------------------------------------------------------------- hand values


def hand_series() -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """25 bars: close 10+t, open close-0.5, high close+1+(t%2), low close-1.5, volume 100+10t."""
    t = np.arange(25)
    c = 10.0 + t
    o = c - 0.5
    h = c + 1 + t % 2
    lo = c - 1.5
    v = 100.0 + 10 * t
    return bronze_frame(c, o, h, lo, v), {"t": t, "c": c, "o": o, "h": h, "l": lo, "v": v}


def test_output_schema_and_constants():
    out = build_silver(hand_series()[0])
    assert tuple(out.columns) == SILVER_COLUMNS
    for col in SILVER_FLOAT_COLUMNS:
        assert out.schema[col] == pl.Float64, col
    for col in WARMUP_COLUMNS:
        assert out.schema[col] == pl.Boolean
    assert out.schema["openint"] == pl.Int64
    assert out.schema["quality_warn_count"] == pl.Int64
    assert out["schema_version"].unique().to_list() == ["v1"]
    assert out["silver_calc_version"].unique().to_list() == ["base_v1"]
    # Bronze raw/flag columns are not repeated (keys + own columns only)
    assert "source_line_no" not in out.columns
    assert "is_valid_row" not in out.columns


def test_bar_shape_columns_by_hand():
    out = build_silver(hand_series()[0])
    r = out.row(4, named=True)  # c = 14, o = 13.5, h = 15 (t even), l = 12.5
    assert r["hl_range"] == 15 - 12.5
    assert r["body"] == 14 - 13.5
    assert r["body_abs"] == 0.5
    assert r["range_safe"] == 2.5
    assert r["body_to_range"] == pytest.approx(0.5 / 2.5)
    assert r["close_pos_in_range"] == pytest.approx((14 - 12.5) / 2.5)
    assert r["open_pos_in_range"] == pytest.approx((13.5 - 12.5) / 2.5)
    assert r["hlc3"] == pytest.approx((15 + 12.5 + 14) / 3)
    assert r["ohlc4"] == pytest.approx((13.5 + 15 + 12.5 + 14) / 4)
    assert r["dollar_volume"] == 14 * 140
    assert r["range_pct_close"] == pytest.approx(2.5 / 14)
    r = out.row(5, named=True)  # t odd: h = 15 + 1 + 1 = 17, hl_range = 3.5
    assert r["hl_range"] == 3.5


def test_lags_returns_and_first_row_rules():
    out = build_silver(hand_series()[0])
    first = out.row(0, named=True)
    assert first["prev_close"] is None
    assert first["ret_1d"] is None
    assert first["gap_from_prev_close"] is None
    assert first["tr"] == first["hl_range"] == 2.5
    r = out.row(1, named=True)  # c = 11, prev 10, open 10.5
    assert r["prev_close"] == 10
    assert r["ret_1d"] == pytest.approx(11 / 10 - 1)
    assert r["gap_from_prev_close"] == pytest.approx(10.5 / 10 - 1)
    assert out["ret_5d"][:5].is_null().all()
    assert out["ret_5d"][5] == pytest.approx(15 / 10 - 1)
    assert out["ret_20d"][:20].is_null().all()
    assert out["ret_20d"][20] == pytest.approx(30 / 10 - 1)
    assert out["ret_20d"][24] == pytest.approx(34 / 14 - 1)


def test_true_range_uses_previous_close():
    # bar1 gaps up: h=20, l=19, prev close 10 -> max(1, |20-10|, |19-10|) = 10
    # bar2 gaps down: h=6, l=5, prev close 19.5 -> max(1, 13.5, 14.5) = 14.5
    df = bronze_frame([10, 19.5, 5.5], [10, 19.5, 5.5], [11, 20, 6], [9, 19, 5])
    assert build_silver(df)["tr"].to_list() == [2, 10, 14.5]


def test_atr_14_is_simple_mean_with_null_warmup():
    out = build_silver(hand_series()[0])
    # tr = hl_range = 2.5 + t%2 (|h - pc| = 2 + t%2 and |l - pc| = 0.5 are smaller)
    assert out["tr"].to_list() == [2.5 + t % 2 for t in range(25)]
    assert out["atr_14"][:13].is_null().all()
    # bars 0..13: seven 2.5s and seven 3.5s -> 42 / 14 = 3.0 (Wilder seeded at 2.5 would not be)
    assert out["atr_14"][13] == pytest.approx((7 * 2.5 + 7 * 3.5) / 14)
    assert out["atr_14"][13] == pytest.approx(3.0)
    assert out["atr_pct_14"][13] == pytest.approx(3.0 / 23)
    assert out["atr_pct_14"][12] is None


def test_20_bar_windows_by_hand():
    df, s = hand_series()
    out = build_silver(df)
    for col in ("vol_sma_20", "dollar_vol_sma_20", "volume_z_20", "high_20", "low_20",
                "close_sma_20", "close_vs_sma20", "vol_ratio_20"):  # fmt: skip
        assert out[col][:19].is_null().all(), col
    r = out.row(19, named=True)
    # volume 100..290 step 10: mean 195, population sd = 10 * sqrt((20^2 - 1) / 12)
    assert r["vol_sma_20"] == pytest.approx(195)
    sd = 10 * np.sqrt((20**2 - 1) / 12)
    assert r["volume_z_20"] == pytest.approx((290 - 195) / sd)
    assert r["vol_ratio_20"] == pytest.approx(290 / 195)
    assert r["dollar_vol_sma_20"] == pytest.approx(np.mean(s["c"][:20] * s["v"][:20]))
    # high_20 = max over bars 0..19 of c + 1 + t%2 = 29 + 2; low_20 = min of c - 1.5 = 8.5
    assert r["high_20"] == 31
    assert r["low_20"] == 8.5
    assert r["close_sma_20"] == pytest.approx(19.5)  # mean(10..29)
    assert r["close_vs_sma20"] == pytest.approx(29 / 19.5 - 1)
    r = out.row(24, named=True)  # window bars 5..24
    assert r["high_20"] == 34 + 1 + 0
    assert r["low_20"] == 15 - 1.5
    assert r["close_sma_20"] == pytest.approx(24.5)
    assert out["close_sma_50"].is_null().all()
    assert out["close_vs_sma50"].is_null().all()


def test_warmup_flags_are_real_counts_and_long_smas():
    n = 205
    out = build_silver(bronze_frame([10.0 + (i % 7) for i in range(n)]))
    bar_number = np.arange(1, n + 1)
    for w, col in ((14, "warmup_14_complete"), (20, "warmup_20_complete"),
                   (50, "warmup_50_complete"), (200, "warmup_200_complete")):  # fmt: skip
        assert out[col].to_list() == (bar_number >= w).tolist(), col
    assert out["silver_ready_base"].to_list() == (bar_number >= 50).tolist()
    close = np.array([10.0 + (i % 7) for i in range(n)])
    assert out["close_sma_50"][48] is None
    assert out["close_sma_50"][49] == pytest.approx(close[:50].mean())
    assert out["close_sma_200"][198] is None
    assert out["close_sma_200"][199] == pytest.approx(close[:200].mean())
    assert out["close_vs_sma200"][204] == pytest.approx(close[204] / close[5:205].mean() - 1)


def test_gdiv_null_cases():
    # flat bars: hl_range 0 -> range_safe = eps -> the three position ratios are null
    # constant volume -> sd 0 -> volume_z null, ratio exactly 1
    out = build_silver(bronze_frame([5.0] * 20))
    assert out["range_safe"].to_list() == [EPS] * 20
    for col in ("body_to_range", "close_pos_in_range", "open_pos_in_range"):
        assert out[col].is_null().all(), col
    assert out["range_pct_close"].to_list() == [0.0] * 20
    assert out["volume_z_20"][19] is None
    assert out["vol_ratio_20"][19] == 1.0
    # zero volume -> vol_sma_20 = 0 -> ratio null; dollar volume 0
    out = build_silver(bronze_frame([5.0] * 20, volume=[0.0] * 20))
    assert out["vol_ratio_20"][19] is None
    assert out["volume_z_20"][19] is None
    assert out["dollar_volume"].to_list() == [0.0] * 20
    # a previous close <= eps gives null returns/gap; a close <= eps null atr/range pct
    tiny = 1e-13
    out = build_silver(bronze_frame([tiny, 2.0, 3.0], [tiny, 2.0, 3.0], [1.0, 2.0, 3.0]))
    assert out["ret_1d"].to_list() == [None, None, pytest.approx(0.5)]
    assert out["gap_from_prev_close"][1] is None
    assert out["range_pct_close"][0] is None


def test_nan_is_treated_as_null():
    df = bronze_frame([10.0 + i for i in range(21)], volume=[100.0] * 10 + [np.nan] + [100.0] * 10)
    out = build_silver(df)
    assert out["volume"][10] is None
    assert out["dollar_volume"][10] is None
    assert out["vol_sma_20"].is_null().all()  # no 20-row window has 20 non-null volumes
    assert not out.select(pl.col(SILVER_FLOAT_COLUMNS).is_nan().any()).row(0)[0]


def test_sorting_normalisation_and_defaults():
    a = bronze_frame([1.0, 2.0, 3.0], ticker=" aaa.us ", exchange="nyse ")
    b = bronze_frame([7.0, 8.0], ticker="BBB.US")
    # same (ticker, date) twice: source_line_no decides the order
    dup = a.slice(1, 1).with_columns(
        pl.lit(9.0).alias("close"), pl.lit(1, dtype=pl.Int64).alias("source_line_no")
    )
    df = pl.concat([b, a.reverse(), dup])
    out = build_silver(df)
    assert out["ticker"].to_list() == ["AAA.US"] * 4 + ["BBB.US"] * 2
    assert out["exchange"].to_list()[:4] == ["NYSE"] * 4
    assert out["close"].to_list() == [1.0, 9.0, 2.0, 3.0, 7.0, 8.0]
    assert out["prev_close"].to_list() == [None, 1.0, 9.0, 2.0, None, 7.0]
    # optional columns missing: openint null, quality_warn_count 0
    out = build_silver(b.drop("openint", "quality_warn_count", "source_line_no"))
    assert out["openint"].to_list() == [None, None]
    assert out["quality_warn_count"].to_list() == [0, 0]


def test_validation_and_empty_input():
    df = hand_series()[0]
    with pytest.raises(ValueError, match="required columns"):
        build_silver(df.drop("close"))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eps"):
            build_silver(df, eps=bad)
    empty = build_silver(df.clear())
    assert empty.height == 0
    assert tuple(empty.columns) == SILVER_COLUMNS


# --------------------------------------------------------------------------- reference


def silver_reference(bronze: pl.DataFrame, eps: float = EPS) -> pl.DataFrame:
    """The §5.3 formulas read literally, with ``over("ticker")`` windows (slow but obvious)."""

    def g(a: pl.Expr, b: pl.Expr) -> pl.Expr:
        return pl.when(b.abs() > eps).then(a / b)

    c, o, h, lo, v = (pl.col(x) for x in ("close", "open", "high", "low", "volume"))
    per = {"partition_by": "ticker"}
    pc = c.shift(1).over(**per)
    rs = pl.max_horizontal(h - lo, pl.lit(eps))
    df = bronze.sort("ticker", "trade_date", "source_line_no").with_columns(
        (h - lo).alias("hl_range"),
        rs.alias("range_safe"),
        g(c - o, rs).alias("body_to_range"),
        g(c - lo, rs).alias("close_pos_in_range"),
        g(o - lo, rs).alias("open_pos_in_range"),
        pc.alias("prev_close"),
        (g(c, pc) - 1).alias("ret_1d"),
        (g(c, c.shift(5).over(**per)) - 1).alias("ret_5d"),
        (g(c, c.shift(20).over(**per)) - 1).alias("ret_20d"),
        (g(o, pc) - 1).alias("gap_from_prev_close"),
        pl.max_horizontal(h - lo, (h - pc).abs(), (lo - pc).abs()).alias("tr"),
        (c * v).alias("dollar_volume"),
        v.rolling_mean(20, min_samples=20).over(**per).alias("vol_sma_20"),
        (c * v).rolling_mean(20, min_samples=20).over(**per).alias("dollar_vol_sma_20"),
        v.rolling_std(20, min_samples=20, ddof=0).over(**per).alias("_sd"),
        h.rolling_max(20, min_samples=20).over(**per).alias("high_20"),
        lo.rolling_min(20, min_samples=20).over(**per).alias("low_20"),
        *[c.rolling_mean(w, min_samples=w).over(**per).alias(f"close_sma_{w}")
          for w in (20, 50, 200)],
    )  # fmt: skip
    return df.with_columns(
        pl.col("tr").rolling_mean(14, min_samples=14).over(**per).alias("atr_14"),
        g(v - pl.col("vol_sma_20"), pl.col("_sd")).alias("volume_z_20"),
        g(v, pl.col("vol_sma_20")).alias("vol_ratio_20"),
        *[(g(c, pl.col(f"close_sma_{w}")) - 1).alias(f"close_vs_sma{w}") for w in (20, 50, 200)],
    ).with_columns(g(pl.col("atr_14"), c).alias("atr_pct_14"))


def test_matches_literal_over_reference():
    bronze = make_bronze([260, 1, 30, 0, 205], seed=3)
    out = build_silver(bronze)
    ref = silver_reference(bronze)
    checked = [c for c in SILVER_FLOAT_COLUMNS if c in ref.columns]
    assert len(checked) >= 25
    for col in checked:
        a = out[col].to_numpy()
        b = ref[col].to_numpy()
        assert (np.isnan(a) == np.isnan(b)).all(), col
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=col)


# --------------------------------------------------------------------------- properties


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 230), min_size=2, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_ticker_independent_of_others(lengths, seed):
    bronze = make_bronze(lengths, seed=seed)
    together = build_silver(bronze)
    for ticker in together["ticker"].unique().to_list():
        alone = build_silver(bronze.filter(pl.col("ticker") == ticker))
        assert_frame_equal(together.filter(pl.col("ticker") == ticker), alone, check_exact=True)


@settings(max_examples=15, deadline=None)
@given(k=st.integers(0, 239), seed=st.integers(0, 2**16))
def test_causal_truncation(k, seed):
    bronze = make_bronze([240, 30], seed=seed)
    keep = (pl.col("ticker") != "T00.US") | (pl.int_range(pl.len()) <= k)
    full = build_silver(bronze)
    cut = build_silver(bronze.filter(keep))
    assert_frame_equal(full.filter(keep), cut, check_exact=True)
