"""Gold Features v1: level/slope, flow scores, recency, persistence and state transitions.

Pure polars + Numba, no Dagster (spec/etl.md §8). Inputs are the indicator frame and the
event frame of the same rows (many tickers); output is the keys plus the columns this layer
computes, sorted by (ticker, trade_date), one row per indicator row. Every feature at bar t
reads bars <= t of the same ticker only.

Input signature decision: §8 computes nothing from Silver (``close, volume, atr_14,
atr_pct_14, dollar_volume`` and ``quality_warn_count`` are only carried through in the old
tool), so this function takes no Silver frame. The layer file stores keys + feature columns;
the lake's joined reader (silver + indicators + events + features) supplies the carried
columns to the ML export. Likewise the indicator/event columns the old tool re-wrote
(``tmf_21, tmf_abs, tmf_slope_1, tmf_slope_5, tmf_sign, tmf_above_zero, tmf_below_zero,
tti_proxy_v1_21, tti_proxy_sign``, ``ev_*``, ``bs_*``, ``flow_state_*``) are identical to
their upstream values and are not copied again.

Floats are Float64 here; the writer casts to the storage precision (``precision.gold_float``).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.kernels.counters import run_length_resume
from mf_pipeline.lib.kernels.events_kernels import rolling_sum_float_resume
from mf_pipeline.lib.kernels.offsets import readonly
from mf_pipeline.lib.layers.carry import (
    ABS_INDEX,
    COUNTER_STATE,
    SUM_STATE,
    Carry,
    Segments,
    open_segments,
)
from mf_pipeline.lib.layers.events import (
    EVENT_COLUMNS,
    KEYS,
    KernelState,
    bars_since_series,
    bool_array,
    is_positive_int,
    lag,
    normalize_windows,
    prepare_panel,
    rolling_count_series,
)

FEATURE_SCHEMA_VERSION = "v1"
FEATURE_CALC_VERSION = "gold_features_v1"
FIXED_WINDOWS: tuple[int, int] = (5, 20)  # always computed, whatever activity_windows says
LONG_WINDOW = 20  # persistence, oscillation, respect-fail balance, flow bias/activity
LEVEL_LOOKBACK = 10  # tmf_slope_10 reads bar t-10, the longest lag of §8.2

# the 16 event flags §8.1 reads (all but the pivots); absent ones count as False
FEATURE_EVENT_FLAGS: tuple[str, ...] = tuple(c for c in EVENT_COLUMNS if "pivot" not in c)

# recency output -> bars-since counter (absent counters count as null)
RECENCY_SOURCES: dict[str, str] = {
    "rec_tmf_zero_up_20": "bs_tmf_zero_up",
    "rec_tmf_zero_down_20": "bs_tmf_zero_down",
    "rec_tmf_burst_up_20": "bs_tmf_burst_up",
    "rec_tmf_burst_down_20": "bs_tmf_burst_down",
    "rec_tmf_respect_up_20": "bs_tmf_respect_zero_up",
    "rec_tmf_respect_down_20": "bs_tmf_respect_zero_down",
}

INDICATOR_REQUIRED: tuple[str, ...] = (*KEYS, "tmf_21", "tti_proxy_v1_21")
INDICATOR_OPTIONAL: tuple[str, ...] = ("tmf_slope_1", "tmf_sign", "tti_proxy_sign")
EVENTS_REQUIRED: tuple[str, ...] = ("ticker", "trade_date", "flow_state_code")


@dataclass(frozen=True)
class ScoreWeights:
    """``gold_features.score_weights``: weight of each event kind in the flow scores."""

    zero: float = 1.0
    respect: float = 2.0
    burst: float = 2.0
    hold: float = 1.5

    def __post_init__(self) -> None:
        for name in ("zero", "respect", "burst", "hold"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"score weight {name!r} must be finite")


@dataclass(frozen=True)
class FeatureParams:
    """``gold_features.*`` settings (spec §1.2); validated on construction.

    ``activity_windows`` is normalised to a sorted tuple that always contains 5 and 20.
    """

    eps: float = 1e-12
    activity_windows: tuple[int, ...] = (5, 20)
    score_weights: ScoreWeights = field(default_factory=ScoreWeights)
    recency_clip_bars: int = 20

    def __post_init__(self) -> None:
        if not np.isfinite(self.eps) or self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps!r}")
        k = self.recency_clip_bars
        if not is_positive_int(k):
            raise ValueError(f"recency_clip_bars must be an integer >= 1, got {k!r}")
        object.__setattr__(self, "recency_clip_bars", int(k))
        windows = normalize_windows((*FIXED_WINDOWS, *self.activity_windows))
        object.__setattr__(self, "activity_windows", windows)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "FeatureParams":
        """Build from a ``gold_features`` settings mapping (unknown keys are ignored)."""
        values = {k: v for k, v in settings.items() if k in cls.__dataclass_fields__}
        if isinstance(values.get("score_weights"), Mapping):
            values["score_weights"] = ScoreWeights(**values["score_weights"])
        if "activity_windows" in values:
            values["activity_windows"] = tuple(values["activity_windows"])
        return cls(**values)


def build_features(
    indicators: pl.DataFrame, events: pl.DataFrame, params: FeatureParams | None = None
) -> pl.DataFrame:
    """Compute Gold Features v1 for a long frame of many tickers.

    ``indicators`` needs ``ticker, exchange, trade_date, tmf_21, tti_proxy_v1_21``
    (``tmf_slope_1, tmf_sign, tti_proxy_sign`` are used when present, else derived as §6.4).
    ``events`` needs ``ticker, trade_date, flow_state_code`` and normally carries the ``ev_*``
    flags and ``bs_tmf_*`` counters of ``build_events`` (absent flags count as False, absent
    counters as null, as the old tool did). The two frames are matched on (ticker,
    trade_date): when they hold the same rows in the same order they are stacked side by side
    (the cheap, usual case), otherwise events are left-joined onto the indicator rows.

    Returns the keys, the §8 feature columns (see ``feature_output_columns``) and the two
    version constants, sorted by (ticker, trade_date).
    """
    return features_step(indicators, events, params or FeatureParams(), None)[0]


def feature_context(params: FeatureParams) -> int:
    """Context rows a resumed ticker needs: the longest lag or window (a flow score's running
    sum also reads the value leaving its window, ``window`` rows back)."""
    return max(LEVEL_LOOKBACK, LONG_WINDOW, *params.activity_windows)


def features_step(
    indicators: pl.DataFrame, events: pl.DataFrame, params: FeatureParams, carry: Carry | None
) -> tuple[pl.DataFrame, Carry]:
    """:func:`build_features` of new bars continuing from ``carry`` (None: first bars ever).

    Returns the rows of exactly the input's bars, identical to a full rebuild's, and the carry
    after them: the last :func:`feature_context` merged input rows of each ticker, the flow
    scores' running sums and the state run-length and bars-since counters.
    """
    merged, _ = _merge_inputs(indicators, events)
    seg = open_segments(merged, carry)
    df = seg.frame.with_columns(
        pl.Series("_i", seg.local_index().astype(np.int32)),
        pl.Series(ABS_INDEX, seg.absolute_index()),
    )
    df = _level_features(df)
    df, window_states = _window_features(df, seg, params)
    df, state_states = _state_features(df, seg)
    carry_out = seg.carry(
        seg.frame, merged.columns, feature_context(params), [*window_states, *state_states]
    )
    return seg.new_rows(df).select(feature_output_columns(params)), carry_out


def _merge_inputs(
    indicators: pl.DataFrame, events: pl.DataFrame
) -> tuple[pl.DataFrame, np.ndarray]:
    for frame, needed, what in (
        (indicators, INDICATOR_REQUIRED, "indicators"),
        (events, EVENTS_REQUIRED, "events"),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"build_features: {what} frame misses columns {missing}")
    ind_cols = [*INDICATOR_REQUIRED, *(c for c in INDICATOR_OPTIONAL if c in indicators.columns)]
    ev_cols = [
        *EVENTS_REQUIRED,
        *(c for c in (*FEATURE_EVENT_FLAGS, *RECENCY_SOURCES.values()) if c in events.columns),
    ]
    ind, offsets = prepare_panel(indicators.select(ind_cols))
    ev, _ = prepare_panel(events.select(ev_cols))
    aligned = (
        ev.height == ind.height
        and ev.get_column("ticker").equals(ind.get_column("ticker"))
        and ev.get_column("trade_date").equals(ind.get_column("trade_date"))
    )
    if aligned:
        df = ind.hstack(ev.drop("ticker", "trade_date").get_columns())
    else:
        df = ind.join(
            ev, on=["ticker", "trade_date"], how="left", validate="1:1", maintain_order="left"
        )
    defaults: list[pl.Expr] = []
    for c in FEATURE_EVENT_FLAGS:
        expr = pl.col(c).cast(pl.Boolean) if c in df.columns else pl.lit(False)
        defaults.append(expr.fill_null(False).alias(c))
    for c in RECENCY_SOURCES.values():
        expr = pl.col(c) if c in df.columns else pl.lit(None)
        defaults.append(expr.cast(pl.Int32).alias(c))
    m = pl.col("tmf_21").cast(pl.Float64).fill_nan(None)
    q = pl.col("tti_proxy_v1_21").cast(pl.Float64).fill_nan(None)
    defaults += [m.alias("_m"), q.alias("_q"), pl.col("flow_state_code").cast(pl.Int8)]
    return df.with_columns(defaults), offsets


def _sign(x: pl.Expr) -> pl.Expr:
    return pl.when(x > 0).then(1).when(x < 0).then(-1).otherwise(0).cast(pl.Int8)


def _level_features(df: pl.DataFrame) -> pl.DataFrame:
    """§8.2: slopes, curvature and TMF/TTI sign agreement."""
    m, q = pl.col("_m"), pl.col("_q")
    slope1 = (
        pl.col("tmf_slope_1").cast(pl.Float64).fill_nan(None)
        if "tmf_slope_1" in df.columns
        else m - lag(m, 1)
    )
    s = pl.col("tmf_sign").cast(pl.Int8).fill_null(0) if "tmf_sign" in df.columns else _sign(m)
    u = (
        pl.col("tti_proxy_sign").cast(pl.Int8).fill_null(0)
        if "tti_proxy_sign" in df.columns
        else _sign(q)
    )
    df = df.with_columns(slope1.alias("_slope1"), s.alias("_s"), u.alias("_u"))
    s, u = pl.col("_s"), pl.col("_u")
    return df.with_columns(
        (m - lag(m, 10)).alias("tmf_slope_10"),
        (pl.col("_slope1") - lag(pl.col("_slope1"), 1)).alias("tmf_curvature_1"),
        (q - lag(q, 1)).alias("tti_proxy_slope_1"),
        (q - lag(q, 5)).alias("tti_proxy_slope_5"),
        ((s == u) & (s != 0) & (u != 0)).fill_null(False).alias("tmf_tti_sign_agree"),
        ((s.cast(pl.Int16) * u) < 0).fill_null(False).alias("tmf_tti_divergence"),
    )


def _window_features(
    df: pl.DataFrame, seg: Segments, p: FeatureParams
) -> tuple[pl.DataFrame, list[KernelState]]:
    """§8.3-8.5: flow scores, recency, burst counts, persistence, oscillation, balance; and
    the flow scores' final running sums."""
    n = df.height
    offsets = seg.offsets
    states: list[KernelState] = []
    f = {c: bool_array(df, c) for c in FEATURE_EVENT_FLAGS}
    w = p.score_weights
    long_base = (
        w.zero * f["ev_tmf_zero_up"]
        + w.respect * f["ev_tmf_respect_zero_up"]
        + w.burst * f["ev_tmf_burst_up"]
        + w.hold * f["ev_tmf_hold_pos"]
    )
    short_base = (
        w.zero * f["ev_tmf_zero_down"]
        + w.respect * f["ev_tmf_respect_zero_down"]
        + w.burst * f["ev_tmf_burst_down"]
        + w.hold * f["ev_tmf_hold_neg"]
    )
    new: list[pl.Series] = []
    for win in p.activity_windows:
        for side, base in (("long", long_base), ("short", short_base)):
            name = f"{side}_flow_score_{win}"
            out = np.empty(n, dtype=np.float64)
            final = seg.final(SUM_STATE)
            init = seg.init(name, SUM_STATE)
            rolling_sum_float_resume(base, offsets, win, seg.start, init, final, out)
            new.append(pl.Series(name, out))
            states.append((name, SUM_STATE, final))
    for win in FIXED_WINDOWS:
        new.append(rolling_count_series(f"long_burst_{win}", f["ev_tmf_burst_up"], offsets, win))
        new.append(rolling_count_series(f"short_burst_{win}", f["ev_tmf_burst_down"], offsets, win))
    lw = LONG_WINDOW
    new += [
        rolling_count_series("_hold_pos_n", f["ev_tmf_hold_pos"], offsets, lw),
        rolling_count_series("_hold_neg_n", f["ev_tmf_hold_neg"], offsets, lw),
        rolling_count_series(
            "_zero_cross_n",
            f["ev_tmf_zero_up"].astype(np.int8) + f["ev_tmf_zero_down"],
            offsets,
            lw,
        ),
        rolling_count_series(
            "_fail_balance",
            f["ev_tmf_respect_fail_down"].astype(np.int8) - f["ev_tmf_respect_fail_up"],
            offsets,
            lw,
        ),
    ]
    df = df.with_columns(new)

    k = float(p.recency_clip_bars)
    rows_in_window = pl.min_horizontal(pl.col(ABS_INDEX) + 1, pl.lit(lw)).cast(pl.Float64)
    delta20 = pl.col("long_flow_score_20") - pl.col("short_flow_score_20")
    activity20 = pl.col("long_flow_score_20") + pl.col("short_flow_score_20")
    return df.with_columns(
        (pl.col("long_flow_score_5") - pl.col("short_flow_score_5")).alias("delta_flow_5"),
        delta20.alias("delta_flow_20"),
        activity20.alias("flow_activity_20"),
        pl.when(activity20.abs() > p.eps).then(delta20 / activity20).alias("flow_bias_20"),
        *(
            (pl.col(bs).cast(pl.Float64).clip(upper_bound=k) / k).alias(rec)  # null stays null
            for rec, bs in RECENCY_SOURCES.items()
        ),
        (pl.col("_hold_pos_n") / rows_in_window).alias("persistence_pos_20"),
        (pl.col("_hold_neg_n") / rows_in_window).alias("persistence_neg_20"),
        pl.col("_zero_cross_n").cast(pl.Float64).alias("oscillation_index_20"),
        pl.col("_fail_balance").cast(pl.Float64).alias("respect_fail_balance_20"),
    ), states


def _state_features(df: pl.DataFrame, seg: Segments) -> tuple[pl.DataFrame, list[KernelState]]:
    """§8.6: previous state, change flag, run length, transition code, bars since change; and
    the two counters' final states."""
    code = pl.col("flow_state_code")
    prev = lag(code, 1).alias("state_prev")
    df = df.with_columns(
        prev,
        (code != prev).fill_null(False).alias("state_changed"),
        (prev.cast(pl.Int16) * 10 + code.cast(pl.Int16)).alias("state_transition_code"),
    )
    codes = readonly(df.get_column("flow_state_code").fill_null(-1).to_numpy())
    run = np.empty(df.height, dtype=np.int32)
    run_final = seg.final(COUNTER_STATE)
    run_init = seg.init("state_run_length", COUNTER_STATE)
    run_length_resume(codes, seg.offsets, seg.start, run_init, run_final, run)
    since, since_state = bars_since_series("bs_state_change", bool_array(df, "state_changed"), seg)
    df = df.with_columns(
        pl.Series("state_run_length", run),
        since,
        pl.lit(FEATURE_SCHEMA_VERSION).alias("feature_schema_version"),
        pl.lit(FEATURE_CALC_VERSION).alias("feature_calc_version"),
    )
    return df, [("state_run_length", COUNTER_STATE, run_final), since_state]


def feature_output_columns(params: FeatureParams) -> list[str]:
    """Output column order: keys, the §8.7 order of computed columns, then extra windows."""
    extra: list[str] = []
    for w in params.activity_windows:
        if w not in FIXED_WINDOWS:
            extra += [f"long_flow_score_{w}", f"short_flow_score_{w}"]
    return [
        *KEYS,
        "tmf_slope_10",
        "tmf_curvature_1",
        "tti_proxy_slope_1",
        "tti_proxy_slope_5",
        "tmf_tti_sign_agree",
        "tmf_tti_divergence",
        "long_flow_score_5",
        "short_flow_score_5",
        "long_flow_score_20",
        "short_flow_score_20",
        "delta_flow_5",
        "delta_flow_20",
        "flow_activity_20",
        "flow_bias_20",
        *RECENCY_SOURCES,
        "long_burst_5",
        "short_burst_5",
        "long_burst_20",
        "short_burst_20",
        "persistence_pos_20",
        "persistence_neg_20",
        "oscillation_index_20",
        "respect_fail_balance_20",
        "state_prev",
        "state_changed",
        "state_run_length",
        "state_transition_code",
        "bs_state_change",
        "feature_schema_version",
        "feature_calc_version",
        *extra,
    ]
