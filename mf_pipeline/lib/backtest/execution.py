"""Execution-realism eligibility of each bar (backtest_ops.md §7.1-§7.6).

A bar is execution-eligible when, at its close, the stock is tradable by four optional rules:
price floor, rolling dollar-volume floor, volatility cap and a warm-up of history bars. A
signal on an eligible bar fills at the next open, so every quantity here uses bar t and the
bars before it only (rolling windows end at t; the history count is a running count). The
volatility unit heuristic and the threshold normalisation reproduce the old tool exactly.
Two choices are made once per frame, not per bar: the volatility source (``atr_pct_14`` if it
has any finite value) and, in ``auto`` mode, the unit (median/p90 of all rows). Both read the
whole frame, so a history cut where the series' unit looks different could change them; a
configured ``vol_input_unit_mode`` removes the unit guess.

Everything is relative to the rows passed in: rolling windows and history counts restart at a
ticker's first row in the frame. Compute this on the full history and sample or date-filter
the RESULT (the old calibration sampled first, which shortened windows: fault 28).

Where we differ from the old tool, on purpose:
- a non-finite ``close * volume`` (NaN/inf) is treated as missing, like a null volume (the old
  tool let a NaN through the liquidity filter because ``NaN < x`` is false); a missing or
  non-finite ``close`` fails an enabled price filter. With the adapter's finite prices neither
  case occurs in a backtest.
- an empty frame goes through the same path as any other (same summary keys, zero counts).
- :func:`execution_block` adds ``exec_candidate_eligibility_rate`` (candidates after / before)
  beside the row-level ``exec_eligibility_rate``, which counts every row and not signals
  (fault 19); ``realism_profile_status`` still uses the row-level rate, as the old tool did.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.kernels.offsets import bar_index, kernel_array, ticker_offsets
from mf_pipeline.lib.kernels.recursive import rolling_mean
from mf_pipeline.lib.kernels.rolling_median import rolling_median

LOGGER = logging.getLogger(__name__)

THRESHOLD_KEYS = ("min_price", "min_dollar_vol_20", "max_vol_pct", "min_history_bars_for_execution")
REPORT_KEYS = ("min_trades_required", "max_zero_trade_share_warn", "max_ret_cv_warn")
SETTINGS_KEYS = ("dollar_vol_window", "dollar_vol_rolling_method", "vol_input_unit_mode",
                 *REPORT_KEYS)
ROLLING_METHODS = ("median", "mean")
VOL_UNIT_MODES = ("auto", "decimal", "percent_points")
TRADABLE_DIRECTIONS = ("LONG_BIAS", "SHORT_BIAS")

# (filter name in the column exec_filter_<name>_fail, reason label), in precedence order.
FILTERS = (("price", "price_floor"), ("liquidity", "liquidity_floor"), ("vol", "vol_cap"),
           ("warmup", "warmup"))
REASONS = tuple(sorted([label for _, label in FILTERS] + ["multiple_reasons"]))
# Absolute tolerance for "all zero" (numpy isclose's default atol, as the old tool used).
_ZERO_ATOL = 1e-8

PROFILES: Mapping[str, Mapping[str, float | int | None]] = MappingProxyType({
    "none": MappingProxyType(dict.fromkeys(THRESHOLD_KEYS)),
    "lite": MappingProxyType({"min_price": 2.0, "min_dollar_vol_20": 1_000_000.0,
                              "max_vol_pct": 0.12, "min_history_bars_for_execution": 50}),
    "strict": MappingProxyType({"min_price": 5.0, "min_dollar_vol_20": 5_000_000.0,
                                "max_vol_pct": 0.08, "min_history_bars_for_execution": 100}),
})


@dataclass(frozen=True)
class ExecutionParams:
    """Resolved thresholds (None = that filter off) and settings of one run.

    ``max_vol_pct`` is the threshold as the user typed it; its unit is decided by
    ``vol_input_unit_mode`` (see :func:`vol_threshold`). The three report thresholds are only
    carried into summaries.
    """

    profile_name: str = "none"
    min_price: float | None = None
    min_dollar_vol_20: float | None = None
    max_vol_pct: float | None = None
    min_history_bars_for_execution: int | None = None
    dollar_vol_window: int = 20
    dollar_vol_rolling_method: str = "median"
    vol_input_unit_mode: str = "auto"
    min_trades_required: int = 30
    max_zero_trade_share_warn: float = 0.5
    max_ret_cv_warn: float = 20.0

    def __post_init__(self) -> None:
        if self.dollar_vol_rolling_method not in ROLLING_METHODS:
            raise ValueError(f"dollar_vol_rolling_method must be one of {ROLLING_METHODS}")
        if self.vol_input_unit_mode not in VOL_UNIT_MODES:
            raise ValueError(f"vol_input_unit_mode must be one of {VOL_UNIT_MODES}")
        if self.dollar_vol_window < 1:
            raise ValueError("dollar_vol_window must be >= 1")

    @property
    def filters_enabled(self) -> bool:
        """True when any threshold is set (a threshold of 0 still counts as set)."""
        return any(getattr(self, k) is not None for k in THRESHOLD_KEYS)

    def params_used(self) -> dict[str, Any]:
        """The ``params_used`` record of the summaries."""
        keep = (*THRESHOLD_KEYS, "dollar_vol_window", "dollar_vol_rolling_method",
                "vol_input_unit_mode")
        return {k: v for k, v in asdict(self).items() if k in keep}


@dataclass(frozen=True)
class ExecutionResult:
    """The frame with the execution columns, ``execution_filter_summary.json`` and its tables."""

    frame: pl.DataFrame
    summary: dict[str, Any]
    by_reason: pl.DataFrame

    @cached_property
    def by_year(self) -> pl.DataFrame:
        """``execution_filter_by_year.csv`` (computed when asked: only written with filters)."""
        return _by_year(self.frame)


def resolve(
    profile: str,
    overrides: Mapping[str, float | int | None] | None = None,
    profiles: Mapping[str, Mapping[str, float | int | None]] = PROFILES,
    **settings_values: Any,
) -> ExecutionParams:
    """Profile thresholds, then settings values, then every override that is not None (§7.1).

    ``overrides`` holds the CLI flags (the four thresholds and the three report thresholds);
    ``settings_values`` the window, rolling method, unit mode and report defaults.
    """
    if profile not in profiles:
        raise ValueError(
            f"unknown execution profile {profile!r}; known profiles: {sorted(profiles)}"
        )
    overrides = dict(overrides or {})
    bad = sorted(set(overrides) - {*THRESHOLD_KEYS, *REPORT_KEYS})
    if bad:
        raise ValueError(f"unknown execution overrides {bad}")
    bad = sorted(set(settings_values) - set(SETTINGS_KEYS))
    if bad:
        raise ValueError(f"unknown execution settings {bad}")
    values: dict[str, Any] = {k: profiles[profile].get(k) for k in THRESHOLD_KEYS}
    values.update(settings_values)
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("min_price", "min_dollar_vol_20", "max_vol_pct", *REPORT_KEYS[1:]):
        if values.get(key) is not None:
            values[key] = float(values[key])
    for key in ("min_history_bars_for_execution", "dollar_vol_window", "min_trades_required"):
        if values.get(key) is not None:
            values[key] = int(values[key])
    return ExecutionParams(profile_name=profile, **values)


def vol_threshold(
    threshold: float | None, mode: str
) -> tuple[float | None, float | None, str | None]:
    """(effective decimal, effective percent, interpretation) of a typed volatility cap.

    The CONFIGURED mode decides, not the unit detected on the data: ``auto`` reads a value
    above 1 as percent points (8 -> 8 %) and any other as a decimal (0.12 -> 12 %).
    """
    if threshold is None:
        return None, None, None
    if mode == "percent_points":
        dec, how = threshold / 100.0, "percent_points"
    elif mode == "decimal":
        dec, how = threshold, "decimal"
    elif threshold > 1.0:
        dec, how = threshold / 100.0, "percent_points_auto"
    else:
        dec, how = threshold, "decimal_auto"
    return dec, dec * 100.0, how


def _vol_source(frame: pl.DataFrame, needed: bool) -> tuple[pl.Expr, str]:
    """``atr_pct_14`` when it has a finite value, else the bar's range over its close."""
    if "atr_pct_14" in frame.columns:
        atr = pl.col("atr_pct_14").cast(pl.Float64, strict=False)
        if frame.select(atr.is_finite().any()).item():
            return atr, "atr_pct_14"
    if not {"high", "low"} <= set(frame.columns):
        if needed:
            raise ValueError("the volatility filter needs atr_pct_14 or high and low")
        return pl.lit(None, dtype=pl.Float64), "range_pct_fallback"
    high, low = pl.col("high").cast(pl.Float64), pl.col("low").cast(pl.Float64)
    close = pl.col("close")
    return (high - low) / pl.when(close > 0).then(close), "range_pct_fallback"


def _detect_unit(raw: pl.Series, mode: str) -> tuple[str, float | None, float | None]:
    """(detected unit, median, linear p90) over the finite raw values."""
    finite = raw.filter(raw.is_finite())
    if finite.is_empty():
        return ("decimal" if mode == "auto" else mode), None, None
    median = float(finite.median())
    p90 = float(finite.quantile(0.9, interpolation="linear"))
    if mode != "auto":
        return mode, median, p90
    return ("percent_points" if median > 1.0 or p90 > 1.0 else "decimal"), median, p90


def _unit_warnings(
    eff_dec: float | None, eff_pct: float | None, detected: str, vol_pct: pl.Series
) -> list[str]:
    """The §7.2 warnings, in the old tool's order."""
    out: list[str] = []
    if eff_dec is not None and eff_pct is not None:
        checks = (
            ("vol_threshold_non_positive", eff_dec <= 0),
            ("vol_threshold_above_100pct_decimal", eff_dec > 1.0),
            ("vol_threshold_too_low_for_decimal_series", detected == "decimal" and eff_dec < 0.001),
            ("vol_threshold_too_low_for_percent_points_series",
             detected == "percent_points" and eff_pct < 0.1),
        )
        out += [name for name, hit in checks if hit]
    finite = vol_pct.drop_nulls()
    if not finite.is_empty():
        if finite.max() == finite.min():
            out.append("vol_series_constant")
        if bool((finite.abs() <= _ZERO_ATOL).all()):
            out.append("vol_series_all_zero")
    return out


def _fail_exprs(params: ExecutionParams, vol_cap: float | None) -> dict[str, pl.Expr]:
    """Boolean (never null) fail column per filter; a disabled filter never fails."""
    off = pl.lit(False)
    close, dv20, vol = pl.col("close"), pl.col("exec_dollar_vol_20"), pl.col("exec_vol_pct")
    price = off if params.min_price is None else (
        (close < params.min_price) | ~close.is_finite()).fill_null(True)
    liquidity = off if params.min_dollar_vol_20 is None else (
        (dv20 < params.min_dollar_vol_20).fill_null(True))
    vol_fail = off if vol_cap is None else (vol > vol_cap).fill_null(True)
    warmup = off if params.min_history_bars_for_execution is None else (
        pl.col("exec_history_bars") < params.min_history_bars_for_execution)
    return {"price": price, "liquidity": liquidity, "vol": vol_fail, "warmup": warmup}


def _reason_expr() -> pl.Expr:
    """``multiple_reasons`` when two or more filters fail, else the one failing, else none."""
    flags = [pl.col(f"exec_filter_{name}_fail") for name, _ in FILTERS]
    expr = pl.when(pl.sum_horizontal([f.cast(pl.Int8) for f in flags]) > 1).then(
        pl.lit("multiple_reasons"))
    for flag, (_, label) in zip(flags, FILTERS, strict=True):
        expr = expr.when(flag).then(pl.lit(label))
    return expr.otherwise(pl.lit("none"))


def _share(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def _by_reason(work: pl.DataFrame, suppressed: int) -> pl.DataFrame:
    counts = (
        work.filter(pl.col("exec_suppressed_signal"))
        .group_by("execution_filter_reason")
        .agg(pl.len().cast(pl.Int64).alias("suppressed_signal_count"))
    )
    return (
        pl.DataFrame({"reason": list(REASONS)})
        .join(counts, left_on="reason", right_on="execution_filter_reason", how="left")
        .with_columns(pl.col("suppressed_signal_count").fill_null(0))
        .with_columns(
            (pl.col("suppressed_signal_count") / suppressed if suppressed else pl.lit(0.0))
            .alias("suppressed_signal_share"),
            (pl.col("suppressed_signal_count") / work.height if work.height else pl.lit(0.0))
            .alias("row_share_total"),
        )
        .sort("reason")
    )


def _by_year(work: pl.DataFrame) -> pl.DataFrame:
    count = [("rows_eligible", pl.col("execution_eligible")),
             ("candidate_signals_before", pl.col("exec_candidate_before")),
             ("candidate_signals_after", pl.col("exec_candidate_after")),
             ("suppressed_signal_count", pl.col("exec_suppressed_signal"))]
    return (
        work.group_by(pl.col("trade_date").dt.year().alias("year"))
        .agg(
            pl.len().cast(pl.Int64).alias("rows_total"),
            *[flag.cast(pl.Int64).sum().alias(name) for name, flag in count],
            pl.col("exec_dollar_vol_20").mean().alias("avg_dollar_vol_20"),
            pl.col("close").median().alias("median_close"),
            pl.col("exec_vol_pct").mean().alias("avg_vol_pct"),
        )
        .with_columns(
            (pl.col("rows_eligible") / pl.col("rows_total")).alias("eligibility_rate"),
            pl.when(pl.col("candidate_signals_before") > 0)
            .then(pl.col("suppressed_signal_count") / pl.col("candidate_signals_before"))
            .otherwise(0.0)
            .alias("suppressed_signal_share"),
        )
        .sort("year")
    )


def _prepare(frame: pl.DataFrame, params: ExecutionParams) -> pl.DataFrame:
    """Sorted frame with the §7.2 input defaults applied."""
    required = ["ticker", "trade_date", "close", "signal_eligible", "state_direction_hint"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"execution filter input lacks columns {missing}")
    if params.min_dollar_vol_20 is not None and "volume" not in frame.columns:
        raise ValueError(
            "the liquidity filter (min_dollar_vol_20) needs a volume column; provide volume "
            "or disable the filter"
        )
    allow = (pl.col("overlay_allow_signal").cast(pl.Boolean).fill_null(True)
             if "overlay_allow_signal" in frame.columns else pl.lit(True))
    volume = (pl.col("volume").cast(pl.Float64, strict=False)
              if "volume" in frame.columns else pl.lit(None, dtype=pl.Float64))
    ticker, day = pl.col("ticker"), pl.col("trade_date")
    ordered = frame.select(((ticker > ticker.shift(1)) | ((ticker == ticker.shift(1))
                            & (day > day.shift(1)))).fill_null(True).all()).item()
    return (frame if ordered else frame.sort("ticker", "trade_date")).with_columns(
        pl.col("close").cast(pl.Float64, strict=False),
        pl.col("signal_eligible").cast(pl.Boolean).fill_null(False),
        allow.alias("overlay_allow_signal"),
        pl.col("state_direction_hint").cast(pl.String).fill_null("UNCONFIRMED"),
        volume.alias("volume"),
    )


def _rolling_dollar_volume(dollar: pl.Series, offsets: np.ndarray, params: ExecutionParams
                           ) -> pl.Series:  # fmt: skip
    """Per-ticker rolling median (or mean) over ``dollar_vol_window`` rows, all of them
    present (Numba kernels: one pass over every ticker, no grouped window)."""
    window = params.dollar_vol_window
    out = np.empty(dollar.len())
    kernel = rolling_mean if params.dollar_vol_rolling_method == "mean" else rolling_median
    kernel(kernel_array(dollar), window, window, offsets, out)
    return pl.Series("exec_dollar_vol_20", out).fill_nan(None)


def warm_up() -> None:
    """Load the rolling kernels from Numba's cache with the types the filter uses (see
    :func:`engine.warm_up`)."""
    for method in ("median", "mean"):
        _rolling_dollar_volume(pl.Series([1.0, 2.0]), np.array([0, 2]),
                               ExecutionParams(dollar_vol_window=2,
                                               dollar_vol_rolling_method=method))


def apply_execution(frame: pl.DataFrame, params: ExecutionParams) -> ExecutionResult:
    """Add the execution columns to ``frame`` and build the filter summary and tables (§7.2-7.4).

    ``frame`` needs ticker, trade_date, close, signal_eligible, state_direction_hint, and
    volume / high, low / atr_pct_14 as the filters require. With every threshold None all rows
    are eligible with reason ``none``. Candidates (``exec_candidate_before``) are rows with
    signal_eligible, overlay_allow_signal and a LONG_BIAS/SHORT_BIAS direction, row by row.
    """
    work = _prepare(frame, params)
    raw_expr, vol_source = _vol_source(work, params.max_vol_pct is not None)
    dollar = pl.col("close") * pl.col("volume")
    offsets = ticker_offsets(work["ticker"])
    work = work.with_columns(
        pl.when(dollar.is_finite()).then(dollar).alias("exec_dollar_vol"),
        raw_expr.alias("exec_vol_raw_pct"),
        pl.Series("exec_history_bars", bar_index(offsets) + 1, dtype=pl.Int64),
    )
    work = work.with_columns(_rolling_dollar_volume(work["exec_dollar_vol"], offsets, params))

    detected, raw_median, raw_p90 = _detect_unit(work["exec_vol_raw_pct"],
                                                 params.vol_input_unit_mode)
    divisor = 100.0 if detected == "percent_points" else 1.0
    raw = pl.col("exec_vol_raw_pct")
    work = work.with_columns(pl.when(raw.is_finite()).then(raw / divisor).alias("exec_vol_pct"))
    eff_dec, eff_pct, interpretation = vol_threshold(params.max_vol_pct,
                                                     params.vol_input_unit_mode)
    warnings = _unit_warnings(eff_dec, eff_pct, detected, work["exec_vol_pct"])

    fails = _fail_exprs(params, eff_dec)
    candidate = (pl.col("signal_eligible") & pl.col("overlay_allow_signal")
                 & pl.col("state_direction_hint").is_in(TRADABLE_DIRECTIONS))
    work = (
        work.with_columns(fails[name].alias(f"exec_filter_{name}_fail") for name, _ in FILTERS)
        .with_columns(
            pl.any_horizontal(f"exec_filter_{name}_fail" for name, _ in FILTERS)
            .alias("exec_filter_any_fail"),
            _reason_expr().alias("execution_filter_reason"),
        )
        .with_columns(
            (~pl.col("exec_filter_any_fail")).alias("execution_eligible"),
            pl.lit(params.profile_name).alias("execution_profile"),
            pl.lit(params.filters_enabled).alias("execution_filters_enabled"),
            candidate.alias("exec_candidate_before"),
        )
        .with_columns(
            (pl.col("exec_candidate_before") & pl.col("execution_eligible"))
            .alias("exec_candidate_after"),
        )
        .with_columns(
            (pl.col("exec_candidate_before") & ~pl.col("exec_candidate_after"))
            .alias("exec_suppressed_signal"),
        )
    )

    totals = work.select(
        pl.col("execution_eligible").sum().alias("eligible"),
        pl.col("exec_candidate_before").sum().alias("before"),
        pl.col("exec_candidate_after").sum().alias("after"),
    ).row(0, named=True)
    rows_total, rows_eligible = work.height, int(totals["eligible"] or 0)
    before, after = int(totals["before"] or 0), int(totals["after"] or 0)
    suppressed = before - after
    by_reason = _by_reason(work, suppressed)
    reason_count = dict(zip(by_reason["reason"], by_reason["suppressed_signal_count"], strict=True))
    reason_share = dict(zip(by_reason["reason"], by_reason["suppressed_signal_share"], strict=True))

    summary: dict[str, Any] = {
        "profile_name": params.profile_name,
        "params_used": params.params_used(),
        "vol_metric_source": vol_source,
        "vol_unit_detected": detected,
        "vol_raw_median": raw_median,
        "vol_raw_p90": raw_p90,
        "vol_threshold_input": params.max_vol_pct,
        "vol_threshold_effective_decimal": eff_dec,
        "vol_threshold_effective_pct": eff_pct,
        "vol_threshold_input_interpretation": interpretation,
        "vol_unit_warnings": warnings,
        "rows_total": rows_total,
        "rows_eligible": rows_eligible,
        "rows_ineligible": rows_total - rows_eligible,
        "eligibility_rate": rows_eligible / rows_total if rows_total else None,
        "candidate_signals_before_filters": before,
        "candidate_signals_after_filters": after,
        "suppressed_signal_count": suppressed,
        "suppressed_signal_share": _share(suppressed, before),
        "suppressed_by_reason": reason_share,
        "suppressed_by_reason_count": reason_count,
        "filters_enabled": params.filters_enabled,
    }
    for name, label in FILTERS:
        summary[f"exec_suppressed_by_{name}_count"] = reason_count[label]
        summary[f"exec_suppressed_by_{name}_share"] = reason_share[label]
    LOGGER.info("execution filter profile=%s enabled=%s rows=%d eligible=%d suppressed=%d",
                params.profile_name, params.filters_enabled, rows_total, rows_eligible, suppressed)
    return ExecutionResult(frame=work, summary=summary, by_reason=by_reason)


def _finite(value: Any) -> float | None:
    """float(value) when finite, else None (the spec's ``safe``)."""
    if value is None:
        return None
    out = float(value)
    return out if out == out and abs(out) != float("inf") else None


TRADE_CONTEXT_KEYS = (
    "trade_count", "avg_close", "median_close", "avg_dollar_vol_20", "p10_dollar_vol_20",
    "p50_dollar_vol_20", "p90_dollar_vol_20", "avg_vol_pct",
    "pct_trades_near_liquidity_threshold", "pct_trades_near_price_threshold",
    "pct_trades_near_vol_threshold",
)


def trade_context(trades: pl.DataFrame, frame: pl.DataFrame) -> dict[str, Any]:
    """``execution_trade_context_summary.json``: the signal rows of the trades (§7.4).

    Each trade is joined to its signal row (ticker, entry_signal_date = trade_date) of the
    execution frame. Quantiles use polars' ``nearest`` interpolation (the old default). The
    ``pct_trades_near_*`` keys keep the old names but are the share of trades whose signal row
    FAILED that filter.
    """
    if trades.is_empty():
        return dict.fromkeys(TRADE_CONTEXT_KEYS) | {"trade_count": 0}
    if "entry_signal" in frame.columns:  # a signal frame: only entry rows can be joined
        frame = frame.filter(pl.col("entry_signal"))
    signal_rows = frame.select(
        pl.col("ticker").cast(pl.String),
        pl.col("trade_date").cast(pl.Date).alias("entry_signal_date"),
        pl.col("close").cast(pl.Float64).alias("_close"),
        pl.col("exec_dollar_vol_20").alias("_dv20"),
        pl.col("exec_vol_pct").alias("_vol"),
        *[pl.col(f"exec_filter_{n}_fail").cast(pl.Float64).alias(f"_fail_{n}")
          for n in ("liquidity", "price", "vol")],
    )
    joined = trades.select(
        pl.col("ticker").cast(pl.String), pl.col("entry_signal_date").cast(pl.Date)
    ).join(signal_rows, on=["ticker", "entry_signal_date"], how="left")
    dv20 = pl.col("_dv20")
    stats = joined.select(
        pl.col("_close").mean().alias("avg_close"),
        pl.col("_close").median().alias("median_close"),
        dv20.mean().alias("avg_dollar_vol_20"),
        dv20.quantile(0.10, interpolation="nearest").alias("p10_dollar_vol_20"),
        dv20.quantile(0.50, interpolation="nearest").alias("p50_dollar_vol_20"),
        dv20.quantile(0.90, interpolation="nearest").alias("p90_dollar_vol_20"),
        pl.col("_vol").mean().alias("avg_vol_pct"),
        *[pl.col(f"_fail_{n}").mean().alias(f"pct_trades_near_{n}_threshold")
          for n in ("liquidity", "price", "vol")],
    ).row(0, named=True)
    return {"trade_count": joined.height} | {k: _finite(v) for k, v in stats.items()}


def realism_status(params: ExecutionParams, eligibility_rate: float | None) -> str:
    """NOT_APPLIED for profile none (even with overrides), ZERO_ELIGIBILITY, else OK."""
    if params.profile_name == "none":
        return "NOT_APPLIED"
    return "ZERO_ELIGIBILITY" if eligibility_rate == 0.0 else "OK"


def execution_block(
    params: ExecutionParams,
    result: ExecutionResult,
    generator_diag: Mapping[str, Any],
    trade_ctx: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``execution`` block of ``backtest_summary.json`` (§7.5).

    Candidate and suppression counts come from the signal generator's diagnostics
    (primary-eligible and overlay-passed rows), row counts from the filter summary, trade
    figures from :func:`trade_context`. ``exec_candidate_eligibility_rate`` (candidates after /
    before, None without candidates) is ours: the row-level ``exec_eligibility_rate`` counts
    every bar, not signals (fault 19).
    """
    summary = result.summary
    status = realism_status(params, summary["eligibility_rate"])
    if status == "ZERO_ELIGIBILITY":
        LOGGER.warning("execution profile %s leaves no eligible row (rows_total=%d)",
                       params.profile_name, summary["rows_total"])
    before = int(generator_diag.get("candidate_signals_before_execution", 0) or 0)
    after = int(generator_diag.get("candidate_signals_after_execution", 0) or 0)
    counts = generator_diag.get("execution_suppressed_by_reason_count") or {}
    shares = generator_diag.get("execution_suppressed_by_reason_share") or {}
    block: dict[str, Any] = {
        "execution_profile": params.profile_name,
        "execution_filters_enabled": params.filters_enabled,
        "params_used": summary["params_used"],
        **{k: summary[k] for k in (
            "vol_metric_source", "vol_unit_detected", "vol_threshold_input",
            "vol_threshold_effective_decimal", "vol_threshold_effective_pct",
            "vol_threshold_input_interpretation", "vol_unit_warnings",
            "rows_total", "rows_eligible", "rows_ineligible")},
        "exec_eligibility_rate": _finite(summary["eligibility_rate"]),
        "exec_candidate_eligibility_rate": after / before if before else None,
        "candidate_signals_before_filters": before,
        "candidate_signals_after_filters": after,
        "exec_suppressed_signal_count": int(
            generator_diag.get("execution_suppressed_signal_count", 0) or 0),
        "exec_suppressed_signal_share": _finite(
            generator_diag.get("execution_suppressed_signal_share")),
        "exec_trade_avg_dollar_vol_20": _finite(trade_ctx.get("avg_dollar_vol_20")),
        "exec_trade_p10_dollar_vol_20": _finite(trade_ctx.get("p10_dollar_vol_20")),
        "exec_trade_avg_vol_pct": _finite(trade_ctx.get("avg_vol_pct")),
        "report_thresholds": {k: getattr(params, k) for k in REPORT_KEYS},
        "realism_profile_status": status,
        "filters_enabled_or_profile_non_none": params.filters_enabled
        or params.profile_name != "none",
    }
    for name, label in FILTERS:
        block[f"exec_suppressed_by_{name}_count"] = int(counts.get(label, 0) or 0)
        block[f"exec_suppressed_by_{name}_share"] = _finite(shares.get(label)) or 0.0
    return block


__all__ = [
    "PROFILES", "ExecutionParams", "ExecutionResult", "apply_execution", "execution_block",
    "realism_status", "resolve", "trade_context", "vol_threshold",
]
