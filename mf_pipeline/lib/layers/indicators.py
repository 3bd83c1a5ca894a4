"""Indicator layer (spec etl.md §6): TMF v1, TTI proxy v1 and their derived columns.

The two recursive indicators come from one fused Numba pass over all tickers
(:func:`~mf_pipeline.lib.kernels.recursive.tmf_tti`); the derived columns are whole-column
Polars expressions whose lags are masked by the per-ticker bar index, so no ``over()`` is
needed. Output = keys + indicator columns; the intermediates (``trh``, ``ad_raw``, the
``*_wilder`` series…) stay inside the kernel and ``built_ts`` is added by the caller.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from mf_pipeline.lib.kernels.offsets import kernel_array
from mf_pipeline.lib.kernels.recursive import (
    ewm_adjust_false_resume,
    tmf_tti_resume,
    true_range,
)
from mf_pipeline.lib.layers.carry import (
    EWM_STATE,
    NEW,
    TMF_TTI_STATE,
    Carry,
    Segments,
    open_segments,
)
from mf_pipeline.lib.layers.silver import (
    COLLECT_ENGINE,
    KEY_COLUMNS,
    check_eps,
    lag,
    normalize_key,
    sort_by_ticker_date,
)

TTI_FORMULA_STATUS = "PROXY_UNDISCLOSED_ORIGINAL"
TTI_PROXY_VERSION = "v1"
INDICATOR_SCHEMA_VERSION = "v1"
INDICATOR_CALC_VERSION = "twiggs_indicators_v1"
TMF_EMA_ALPHA = 2.0 / (5 + 1)  # span 5
TMF_EMA_MIN_SAMPLES = 5
TMF_LAGS: tuple[int, ...] = (1, 2, 5)  # slopes and respect candidates read tmf_21 this far back
# Outputs that later rows lag on: a carry keeps them on its context rows, next to the inputs.
LAGGED_OUTPUTS: tuple[str, ...] = ("tmf_21", "tti_proxy_v1_21")
# Context rows a resumed ticker needs: the longest tmf lag (the previous close is one row).
INDICATOR_CONTEXT = max(TMF_LAGS)

REQUIRED_SILVER_COLUMNS: tuple[str, ...] = (
    "ticker",
    "exchange",
    "trade_date",
    "high",
    "low",
    "close",
    "volume",
)
# Float columns the caller casts to the indicator float type when storing (§6.4 "Float cast").
INDICATOR_FLOAT_COLUMNS: tuple[str, ...] = (
    "tmf_21",
    "tmf_slope_1",
    "tmf_slope_5",
    "tmf_ema_5",
    "tmf_abs",
    "tti_proxy_v1_21",
)
# §6.4 column order restricted to the columns this layer owns (built_ts added by the caller).
INDICATOR_COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS,
    "tmf_21",
    "tmf_ready_21",
    "tmf_zero_cross_up",
    "tmf_zero_cross_down",
    "tmf_sign",
    "tmf_slope_1",
    "tmf_slope_5",
    "tmf_ema_5",
    "tmf_abs",
    "tmf_above_zero",
    "tmf_below_zero",
    "tmf_pos",
    "tmf_neg",
    "tmf_respect_zero_up_candidate",
    "tmf_respect_zero_down_candidate",
    "tti_proxy_v1_21",
    "tti_proxy_ready_21",
    "tti_proxy_zero_cross_up",
    "tti_proxy_zero_cross_down",
    "tti_proxy_sign",
    "tti_formula_status",
    "tti_proxy_version",
    "indicator_schema_version",
    "indicator_calc_version",
    "tmf_period",
)


def _check_period(name: str, value: int) -> None:
    """Periods are bar counts: an integer >= 1 (a bool or float is a caller bug)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def _sign(col: str) -> pl.Expr:
    """1 / -1 / 0 as Int8, with 0 also for null (§6.4)."""
    x = pl.col(col)
    return pl.when(x > 0).then(1).when(x < 0).then(-1).otherwise(0).cast(pl.Int8)


def _cross_up(col: str, prev: str) -> pl.Expr:
    """``x_t > 0 and x_{t-1} <= 0``; null (no previous value yet) is False."""
    return ((pl.col(col) > 0) & (pl.col(prev) <= 0)).fill_null(False)


def _cross_down(col: str, prev: str) -> pl.Expr:
    """``x_t < 0 and x_{t-1} >= 0``; null is False."""
    return ((pl.col(col) < 0) & (pl.col(prev) >= 0)).fill_null(False)


def _prepare(silver: pl.DataFrame) -> pl.DataFrame:
    """Select and cast what the indicators read, derive ``tr`` if absent (§6.1), sort."""
    missing = [c for c in REQUIRED_SILVER_COLUMNS if c not in silver.columns]
    if missing:
        raise ValueError(f"silver frame lacks required columns: {missing}")
    floats = ["high", "low", "close", "volume"] + (["tr"] if "tr" in silver.columns else [])
    # Lazy: an eager select over many-chunk columns (one chunk per ticker file) is ~10x slower.
    df = (
        silver.lazy()
        .select(
            pl.col("ticker").cast(pl.String),
            pl.col("exchange").cast(pl.String),
            pl.col("trade_date").cast(pl.Date),
            *[pl.col(c).cast(pl.Float64).fill_nan(None) for c in floats],
        )
        .collect(engine=COLLECT_ENGINE)
    )
    df = normalize_key(normalize_key(df, "ticker"), "exchange")
    return sort_by_ticker_date(df)


def build_indicators(
    silver: pl.DataFrame,
    tmf_period: int = 21,
    proxy_period: int = 21,
    eps: float = 1e-12,
) -> pl.DataFrame:
    """Compute TMF v1, TTI proxy v1 and the §6.4 derived columns for every ticker.

    ``silver`` is a long frame with at least ``ticker, exchange, trade_date, high, low, close,
    volume`` (``tr`` is derived as in §5.3 when missing). Returns one row per input row,
    sorted by (ticker, trade_date), with :data:`INDICATOR_COLUMNS` in that order, floats
    Float64. Column names keep ``_21`` whatever the periods are (the old tool's contract).
    """
    return indicators_step(silver, tmf_period, proxy_period, eps, None)[0]


def indicators_step(
    silver: pl.DataFrame,
    tmf_period: int,
    proxy_period: int,
    eps: float,
    carry: Carry | None,
) -> tuple[pl.DataFrame, Carry]:
    """:func:`build_indicators` of new bars continuing from ``carry`` (None: first bars ever).

    Returns the rows of exactly the input's bars, identical to a full rebuild's, and the carry
    after them: the last :data:`INDICATOR_CONTEXT` prepared input rows of each ticker with
    their :data:`LAGGED_OUTPUTS`, and the states of the TMF/TTI and TMF-EMA recursions.
    """
    _check_period("tmf_period", tmf_period)
    _check_period("proxy_period", proxy_period)
    check_eps(eps)
    prepared = _prepare(silver)
    seg = open_segments(prepared, carry)
    df = seg.frame
    offsets = seg.offsets
    n = df.height
    df = df.with_columns(pl.Series("_i", seg.local_index()))
    if "tr" not in prepared.columns:
        tr = np.empty(n, dtype=np.float64)
        true_range(
            kernel_array(df.get_column("high")),
            kernel_array(df.get_column("low")),
            kernel_array(df.get_column("close")),
            offsets,
            tr,
        )
        df = df.with_columns(pl.Series("tr", tr, dtype=pl.Float64, nan_to_null=True))

    tmf = np.empty(n, dtype=np.float64)
    tti = np.empty(n, dtype=np.float64)
    tmf_tti_final = seg.final(TMF_TTI_STATE)
    tmf_tti_resume(
        kernel_array(df.get_column("high")),
        kernel_array(df.get_column("low")),
        kernel_array(df.get_column("close")),
        kernel_array(df.get_column("volume")),
        kernel_array(df.get_column("tr")),
        int(tmf_period),
        int(proxy_period),
        float(eps),
        offsets,
        seg.start,
        seg.init("tmf_tti", TMF_TTI_STATE),
        tmf_tti_final,
        tmf,
        tti,
    )
    ema = np.empty(n, dtype=np.float64)
    ema_final = seg.final(EWM_STATE)
    ema_init = seg.init("tmf_ema_5", EWM_STATE)
    ewm_adjust_false_resume(
        kernel_array(tmf), TMF_EMA_ALPHA, TMF_EMA_MIN_SAMPLES, offsets, seg.start,
        ema_init, ema_final, ema,
    )  # fmt: skip
    _restore_context_outputs(seg, df, {"tmf_21": tmf, "tti_proxy_v1_21": tti})
    df = df.with_columns(
        pl.Series("tmf_21", tmf, dtype=pl.Float64, nan_to_null=True),
        pl.Series("tti_proxy_v1_21", tti, dtype=pl.Float64, nan_to_null=True),
    )
    carry_out = seg.carry(
        df,
        [*prepared.columns, *LAGGED_OUTPUTS],
        INDICATOR_CONTEXT,
        [("tmf_tti", TMF_TTI_STATE, tmf_tti_final), ("tmf_ema_5", EWM_STATE, ema_final)],
    )
    df = df.select(
        *KEY_COLUMNS,
        "_i",
        NEW,
        "tmf_21",
        "tti_proxy_v1_21",
        pl.Series("tmf_ema_5", ema, dtype=pl.Float64, nan_to_null=True),
    )
    return _derived(seg, df, tmf_period), carry_out


def _restore_context_outputs(
    seg: Segments, df: pl.DataFrame, outputs: dict[str, np.ndarray]
) -> None:
    """Put the carried output values back on the context rows (the kernels emit new rows only),
    so lags of the outputs read them."""
    if not seg.resumed:
        return
    context_rows = ~df.get_column(NEW).to_numpy()
    for name, values in outputs.items():
        carried = df.get_column(name).cast(pl.Float64).to_numpy()
        values[context_rows] = carried[context_rows]


def _derived(seg: Segments, df: pl.DataFrame, tmf_period: int) -> pl.DataFrame:
    """The §6.4 columns derived from tmf_21 / tti (lags read the context rows), new rows only."""
    lf = df.lazy().with_columns(
        lag("tmf_21", 1).alias("_m1"),
        lag("tmf_21", 2).alias("_m2"),
        lag("tmf_21", 5).alias("_m5"),
        lag("tti_proxy_v1_21", 1).alias("_q1"),
    )
    lf = seg.new_rows(lf)
    m = pl.col("tmf_21")
    slope_1 = m - pl.col("_m1")
    above = (m > 0).fill_null(False)
    below = (m < 0).fill_null(False)
    lf = lf.with_columns(
        m.is_not_null().alias("tmf_ready_21"),
        _cross_up("tmf_21", "_m1").alias("tmf_zero_cross_up"),
        _cross_down("tmf_21", "_m1").alias("tmf_zero_cross_down"),
        _sign("tmf_21").alias("tmf_sign"),
        slope_1.alias("tmf_slope_1"),
        (m - pl.col("_m5")).alias("tmf_slope_5"),
        m.abs().alias("tmf_abs"),
        above.alias("tmf_above_zero"),
        below.alias("tmf_below_zero"),
        above.alias("tmf_pos"),
        below.alias("tmf_neg"),
        (above & (slope_1 > 0) & (pl.col("_m1") < pl.col("_m2")))
        .fill_null(False)
        .alias("tmf_respect_zero_up_candidate"),
        (below & (slope_1 < 0) & (pl.col("_m1") > pl.col("_m2")))
        .fill_null(False)
        .alias("tmf_respect_zero_down_candidate"),
        pl.col("tti_proxy_v1_21").is_not_null().alias("tti_proxy_ready_21"),
        _cross_up("tti_proxy_v1_21", "_q1").alias("tti_proxy_zero_cross_up"),
        _cross_down("tti_proxy_v1_21", "_q1").alias("tti_proxy_zero_cross_down"),
        _sign("tti_proxy_v1_21").alias("tti_proxy_sign"),
        pl.lit(TTI_FORMULA_STATUS, dtype=pl.String).alias("tti_formula_status"),
        pl.lit(TTI_PROXY_VERSION, dtype=pl.String).alias("tti_proxy_version"),
        pl.lit(INDICATOR_SCHEMA_VERSION, dtype=pl.String).alias("indicator_schema_version"),
        pl.lit(INDICATOR_CALC_VERSION, dtype=pl.String).alias("indicator_calc_version"),
        pl.lit(int(tmf_period), dtype=pl.Int32).alias("tmf_period"),
    )
    return lf.select(INDICATOR_COLUMNS).collect(engine=COLLECT_ENGINE)
