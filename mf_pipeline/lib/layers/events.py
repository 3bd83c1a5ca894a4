"""Gold Event Grammar v1: TMF/TTI events, bars-since counters, activity and S0-S4 flow states.

Pure polars + Numba, no Dagster. Input is the long indicator frame of many tickers; output is
the keys plus the columns this layer computes (spec/etl.md §7), one row per input row, sorted
by (ticker, trade_date).

Causality (spec §7.3): every column at bar t reads bars <= t of the same ticker. Pivots are
flagged on the confirming bar t (the extreme is at t-1), and the respect-fail window looks
*back* from the failure bar. Per-ticker lags are whole-column shifts masked with the row
position inside the ticker; counters and windows run in Numba kernels over ticker offsets.

Deliberate differences from the old tool (documented for docs/):
* ``respect_fail_lookback_bars`` is the old ``respect_fail_lookahead_bars`` (renamed: it is a
  look-back window; ``EventParams.from_settings`` accepts both names).
* Weakness 16 fixed: the state rules always use 20-bar long/short event counts, computed
  internally, so ``activity_windows`` need not contain 20 (the 20-bar output columns are still
  written only when 20 is configured).
* Output holds keys + event columns only; indicator columns are not copied again, and
  ``run_id``/``built_ts`` are added by the writer, not here.
* NaN in ``tmf_21``/``tti_proxy_v1_21`` is treated as null.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.kernels.counters import bars_since_resume
from mf_pipeline.lib.kernels.events_kernels import (
    event_in_lookback,
    rolling_sum_int,
    true_run_length_resume,
)
from mf_pipeline.lib.kernels.offsets import ticker_offsets
from mf_pipeline.lib.layers.carry import COUNTER_STATE, Carry, Segments, StateSpec, open_segments

# (state column prefix, spec, final state array) of one resumable kernel call
KernelState = tuple[str, StateSpec, np.ndarray]

KEYS: tuple[str, str, str] = ("ticker", "exchange", "trade_date")
EVENT_SCHEMA_VERSION = "v1"
EVENT_CALC_VERSION = "event_grammar_v1"
STATE_WINDOW = 20  # the flow-state rules compare 20-bar long/short event counts (spec §7.6)
RECENT_CROSS_BARS = 3  # "recent" zero cross for early states: within t-3 .. t
POINT_LOOKBACK = 2  # point events (pivots) read bars t-2 .. t

STATE_LABELS: dict[int, str] = {
    0: "S0_QUIET",
    1: "S1_EARLY_DEMAND",
    2: "S2_PERSISTENT_DEMAND",
    3: "S3_EARLY_SUPPLY",
    4: "S4_PERSISTENT_SUPPLY",
}

EVENT_COLUMNS: tuple[str, ...] = (
    "ev_tmf_zero_up",
    "ev_tmf_zero_down",
    "ev_tmf_pivot_low",
    "ev_tmf_pivot_high",
    "ev_tmf_respect_zero_up",
    "ev_tmf_respect_zero_down",
    "ev_tmf_respect_fail_up",
    "ev_tmf_respect_fail_down",
    "ev_tmf_burst_up",
    "ev_tmf_burst_down",
    "ev_tmf_hold_pos",
    "ev_tmf_hold_neg",
    "ev_tti_zero_up",
    "ev_tti_zero_down",
    "ev_tti_burst_up",
    "ev_tti_burst_down",
    "ev_tti_hold_pos",
    "ev_tti_hold_neg",
)

# bars-since column -> source event (spec §7.4)
BARS_SINCE_SOURCES: dict[str, str] = {
    "bs_tmf_zero_up": "ev_tmf_zero_up",
    "bs_tmf_zero_down": "ev_tmf_zero_down",
    "bs_tmf_respect_zero_up": "ev_tmf_respect_zero_up",
    "bs_tmf_respect_zero_down": "ev_tmf_respect_zero_down",
    "bs_tmf_burst_up": "ev_tmf_burst_up",
    "bs_tmf_burst_down": "ev_tmf_burst_down",
    "bs_tti_zero_up": "ev_tti_zero_up",
    "bs_tti_zero_down": "ev_tti_zero_down",
}

REQUIRED_INPUT_COLUMNS: tuple[str, ...] = (*KEYS, "tmf_21", "tti_proxy_v1_21")
# §6.4 indicator columns used when present, derived with the §6.4 formulas when absent.
OPTIONAL_INPUT_COLUMNS: tuple[str, ...] = (
    "tmf_ready_21",
    "tmf_zero_cross_up",
    "tmf_zero_cross_down",
    "tmf_sign",
    "tmf_slope_1",
    "tti_proxy_ready_21",
    "tti_proxy_zero_cross_up",
    "tti_proxy_zero_cross_down",
)


@dataclass(frozen=True)
class EventParams:
    """``event_grammar.*`` settings (spec §1.2); validated on construction.

    ``respect_fail_lookback_bars`` is the old ``respect_fail_lookahead_bars``: the failure bar
    looks back this many bars for a respect event. ``activity_windows`` is normalised to a
    sorted tuple of distinct positive ints.
    """

    pivot_mode: str = "3bar"
    respect_fail_lookback_bars: int = 10
    hold_consecutive_bars: int = 5
    tmf_burst_abs_threshold: float = 0.15
    tmf_burst_slope_threshold: float = 0.05
    activity_windows: tuple[int, ...] = (5, 20)
    eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.pivot_mode != "3bar":
            raise ValueError(f"pivot_mode must be '3bar', got {self.pivot_mode!r}")
        for name in ("respect_fail_lookback_bars", "hold_consecutive_bars"):
            value = getattr(self, name)
            if not is_positive_int(value):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("tmf_burst_abs_threshold", "tmf_burst_slope_threshold"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not np.isfinite(self.eps) or self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps!r}")
        object.__setattr__(self, "activity_windows", normalize_windows(self.activity_windows))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "EventParams":
        """Build from an ``event_grammar`` settings mapping; accepts the old look-ahead name."""
        values = {k: v for k, v in settings.items() if k in cls.__dataclass_fields__}
        old = settings.get("respect_fail_lookahead_bars")
        if old is not None and "respect_fail_lookback_bars" not in values:
            values["respect_fail_lookback_bars"] = old
        if "activity_windows" in values:
            values["activity_windows"] = tuple(values["activity_windows"])
        return cls(**values)


def is_positive_int(value: object) -> bool:
    """True for integers >= 1 (NumPy integers included, bools excluded)."""
    return isinstance(value, Integral) and not isinstance(value, bool) and int(value) >= 1


def normalize_windows(windows: Sequence[int]) -> tuple[int, ...]:
    """Sorted distinct positive window lengths; raises on an empty list or a bad entry."""
    out: set[int] = set()
    for w in windows:
        if not is_positive_int(w):
            raise ValueError(f"activity windows must be positive integers, got {w!r}")
        out.add(int(w))
    if not out:
        raise ValueError("activity_windows must not be empty")
    return tuple(sorted(out))


# --------------------------------------------------------------------------------------------
# panel helpers shared with the feature layer


def prepare_panel(df: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """Return ``df`` sorted by (ticker, trade_date) and its int64 ticker offsets (len n+1).

    Sorting is skipped when the frame is already in order (the usual case), which is cheaper
    than sorting. Duplicate (ticker, trade_date) rows are an error: every per-ticker layer
    has one row per key.
    """
    if df.height == 0:
        return df, np.zeros(1, dtype=np.int64)
    if df.schema["ticker"] != pl.String:
        df = df.with_columns(pl.col("ticker").cast(pl.String))
    if not df.get_column("ticker").is_sorted():
        df = df.sort("ticker", "trade_date", maintain_order=True)
    offsets = ticker_offsets(df.get_column("ticker"))
    if not _dates_strictly_increasing(df, offsets):
        df = df.sort("ticker", "trade_date", maintain_order=True)
        if not _dates_strictly_increasing(df, offsets):
            raise ValueError("duplicate (ticker, trade_date) rows in the input")
    return df, offsets


def _dates_strictly_increasing(df: pl.DataFrame, offsets: np.ndarray) -> bool:
    dates = df.get_column("trade_date")
    if dates.null_count():
        raise ValueError("trade_date contains nulls")
    phys = dates.to_physical().to_numpy()
    bad = np.diff(phys) <= 0
    bad[offsets[1:-1] - 1] = False  # a new ticker may restart at any date
    return not bool(bad.any())


def lag(expr: pl.Expr, k: int, pos: str = "_i") -> pl.Expr:
    """``expr`` at row t-k of the same ticker, null when t-k is in another ticker.

    A whole-column shift masked by the row position is much cheaper than ``.over("ticker")``.
    """
    return pl.when(pl.col(pos) >= k).then(expr.shift(k))


def bool_array(df: pl.DataFrame, name: str) -> np.ndarray:
    """A null-free Boolean column as a NumPy bool array for the kernels (nulls -> False)."""
    s = df.get_column(name)
    if s.null_count():
        s = s.fill_null(False)
    return s.to_numpy()


def bars_since_series(name: str, flags: np.ndarray, seg: Segments) -> tuple[pl.Series, KernelState]:
    """Int32 bars-since counter with nulls before the first event, and its final state."""
    out = np.empty(flags.size, dtype=np.int32)
    final = seg.final(COUNTER_STATE)
    init = seg.init(name, COUNTER_STATE)
    bars_since_resume(flags, seg.offsets, seg.start, init, final, out)
    s = pl.Series(name, out)
    return (s.set(s < 0, None) if (out < 0).any() else s), (name, COUNTER_STATE, final)


def rolling_count_series(name: str, x: np.ndarray, offsets: np.ndarray, window: int) -> pl.Series:
    """Int32 trailing window sum (min samples 1) of a bool/int column."""
    out = np.empty(x.size, dtype=np.int32)
    rolling_sum_int(x, offsets, window, out)
    return pl.Series(name, out)


# --------------------------------------------------------------------------------------------
# the layer


def build_events(indicators: pl.DataFrame, params: EventParams | None = None) -> pl.DataFrame:
    """Compute the Gold Event Grammar v1 for a long frame of many tickers.

    Required input columns: ``ticker, exchange, trade_date, tmf_21, tti_proxy_v1_21``.
    Used when present, otherwise derived with the §6.4 formulas: ``tmf_ready_21,
    tmf_zero_cross_up, tmf_zero_cross_down, tmf_sign, tmf_slope_1, tti_proxy_ready_21,
    tti_proxy_zero_cross_up, tti_proxy_zero_cross_down``. The input may be unsorted.

    Returns ``ticker, exchange, trade_date``, the 18 ``ev_*`` flags, the 8 ``bs_*`` counters,
    the activity columns for the configured windows, ``flow_state_code``,
    ``flow_state_label``, ``event_schema_version`` and ``event_calc_version``, sorted by
    (ticker, trade_date), one row per input row.
    """
    return events_step(indicators, params or EventParams(), None)[0]


def event_context(params: EventParams) -> int:
    """Context rows a resumed ticker needs: every window (activity counts, respect-fail
    look-back) must cover rows whose point events are exact, i.e. have their own look-back."""
    longest = max(*params.activity_windows, STATE_WINDOW) - 1
    return max(longest, params.respect_fail_lookback_bars) + POINT_LOOKBACK


def events_step(
    indicators: pl.DataFrame, params: EventParams, carry: Carry | None
) -> tuple[pl.DataFrame, Carry]:
    """:func:`build_events` of new bars continuing from ``carry`` (None: first bars ever).

    Returns the rows of exactly the input's bars, identical to a full rebuild's, and the carry
    after them: the last :func:`event_context` input rows of each ticker and the hold-run and
    bars-since counters.
    """
    missing = [c for c in REQUIRED_INPUT_COLUMNS if c not in indicators.columns]
    if missing:
        raise ValueError(f"build_events: missing input columns {missing}")
    present = [c for c in OPTIONAL_INPUT_COLUMNS if c in indicators.columns]
    prepared, _ = prepare_panel(indicators.select(*REQUIRED_INPUT_COLUMNS, *present))
    seg = open_segments(prepared, carry)
    df = seg.frame.with_columns(pl.Series("_i", seg.local_index().astype(np.int32)))
    df = _indicator_inputs(df)
    df = _point_events(df, params)
    df, states = _windowed_events(df, seg, params)
    df = _flow_state(seg.new_rows(df))
    carry_out = seg.carry(seg.frame, prepared.columns, event_context(params), states)
    return _order_output(df, params), carry_out


def _indicator_inputs(df: pl.DataFrame) -> pl.DataFrame:
    """Float64 ``_m``/``_q`` with NaN as null, plus the §6.4 columns derived when absent."""
    df = df.with_columns(
        pl.col("tmf_21").cast(pl.Float64).fill_nan(None).alias("_m"),
        pl.col("tti_proxy_v1_21").cast(pl.Float64).fill_nan(None).alias("_q"),
    )
    m, q = pl.col("_m"), pl.col("_q")
    m1, q1 = lag(m, 1), lag(q, 1)
    derived = {
        "tmf_ready_21": m.is_not_null(),
        "tmf_zero_cross_up": (m > 0) & (m1 <= 0),
        "tmf_zero_cross_down": (m < 0) & (m1 >= 0),
        "tmf_sign": pl.when(m > 0).then(1).when(m < 0).then(-1).otherwise(0),
        "tmf_slope_1": m - m1,
        "tti_proxy_ready_21": q.is_not_null(),
        "tti_proxy_zero_cross_up": (q > 0) & (q1 <= 0),
        "tti_proxy_zero_cross_down": (q < 0) & (q1 >= 0),
    }
    return df.with_columns(
        (pl.col(name) if name in df.columns else expr).alias(f"_{name}")
        for name, expr in derived.items()
    ).with_columns(
        pl.col(
            "_tmf_ready_21",
            "_tmf_zero_cross_up",
            "_tmf_zero_cross_down",
            "_tti_proxy_ready_21",
            "_tti_proxy_zero_cross_up",
            "_tti_proxy_zero_cross_down",
        )
        .cast(pl.Boolean)
        .fill_null(False),
        pl.col("_tmf_slope_1").cast(pl.Float64).fill_nan(None),
        pl.col("_tmf_sign").cast(pl.Int8).fill_null(0),
    )


def _point_events(df: pl.DataFrame, p: EventParams) -> pl.DataFrame:
    """Events that read at most bars t-2..t: crosses, pivots, respects, bursts, hold inputs."""
    m, q = pl.col("_m"), pl.col("_q")
    m1, m2 = lag(m, 1), lag(m, 2)
    slope = pl.col("_tmf_slope_1")
    q_slope = q - lag(q, 1)
    ready, q_ready = pl.col("_tmf_ready_21"), pl.col("_tti_proxy_ready_21")
    a = max(p.tmf_burst_abs_threshold, p.eps)
    s = p.tmf_burst_slope_threshold
    df = df.with_columns(
        pl.col("_tmf_zero_cross_up").alias("ev_tmf_zero_up"),
        pl.col("_tmf_zero_cross_down").alias("ev_tmf_zero_down"),
        pl.col("_tti_proxy_zero_cross_up").alias("ev_tti_zero_up"),
        pl.col("_tti_proxy_zero_cross_down").alias("ev_tti_zero_down"),
        # pivot at t-1, flagged on the confirming bar t (never moved back: no look-ahead)
        ((m2 > m1) & (m1 < m)).fill_null(False).alias("ev_tmf_pivot_low"),
        ((m2 < m1) & (m1 > m)).fill_null(False).alias("ev_tmf_pivot_high"),
        (ready & (m > 0) & (slope > s) & (m.abs() > a)).fill_null(False).alias("ev_tmf_burst_up"),
        (ready & (m < 0) & (slope < -s) & (m.abs() > a))
        .fill_null(False)
        .alias("ev_tmf_burst_down"),
        (q_ready & (q > 0) & (q_slope > s) & (q.abs() > a))
        .fill_null(False)
        .alias("ev_tti_burst_up"),
        (q_ready & (q < 0) & (q_slope < -s) & (q.abs() > a))
        .fill_null(False)
        .alias("ev_tti_burst_down"),
        (ready & (m > 0)).fill_null(False).alias("_tmf_pos"),
        (ready & (m < 0)).fill_null(False).alias("_tmf_neg"),
        (q_ready & (q > 0)).fill_null(False).alias("_tti_pos"),
        (q_ready & (q < 0)).fill_null(False).alias("_tti_neg"),
    )
    return df.with_columns(
        (pl.col("ev_tmf_pivot_low") & (m1 > 0) & (m > 0) & (slope > 0))
        .fill_null(False)
        .alias("ev_tmf_respect_zero_up"),
        (pl.col("ev_tmf_pivot_high") & (m1 < 0) & (m < 0) & (slope < 0))
        .fill_null(False)
        .alias("ev_tmf_respect_zero_down"),
    )


def _windowed_events(
    df: pl.DataFrame, seg: Segments, p: EventParams
) -> tuple[pl.DataFrame, list[KernelState]]:
    """Holds, respect fails, bars-since counters and activity counts (Numba kernels), and the
    counters' final states."""
    n = df.height
    offsets = seg.offsets
    states: list[KernelState] = []
    point = (*BARS_SINCE_SOURCES.values(), "ev_tti_burst_up", "ev_tti_burst_down")
    flags = {c: bool_array(df, c) for c in point}
    new: list[pl.Series] = []

    for src, name in (
        ("_tmf_pos", "ev_tmf_hold_pos"),
        ("_tmf_neg", "ev_tmf_hold_neg"),
        ("_tti_pos", "ev_tti_hold_pos"),
        ("_tti_neg", "ev_tti_hold_neg"),
    ):
        run = np.empty(n, dtype=np.int32)
        final = seg.final(COUNTER_STATE)
        init = seg.init(name, COUNTER_STATE)
        true_run_length_resume(bool_array(df, src), offsets, seg.start, init, final, run)
        states.append((name, COUNTER_STATE, final))
        flags[name] = run >= p.hold_consecutive_bars
        new.append(pl.Series(name, flags[name]))

    # failure bar t: zero cross against the respect direction, respect within t-L .. t-1
    for respect, cross, name in (
        ("ev_tmf_respect_zero_up", "ev_tmf_zero_down", "ev_tmf_respect_fail_up"),
        ("ev_tmf_respect_zero_down", "ev_tmf_zero_up", "ev_tmf_respect_fail_down"),
    ):
        recent = np.empty(n, dtype=np.bool_)
        event_in_lookback(flags[respect], offsets, p.respect_fail_lookback_bars, recent)
        new.append(pl.Series(name, recent & flags[cross]))

    for name, src in BARS_SINCE_SOURCES.items():
        series, state = bars_since_series(name, flags[src], seg)
        new.append(series)
        states.append(state)

    long_base = (
        flags["ev_tmf_zero_up"].astype(np.int8)
        + flags["ev_tmf_respect_zero_up"]
        + flags["ev_tmf_burst_up"]
    )
    short_base = (
        flags["ev_tmf_zero_down"].astype(np.int8)
        + flags["ev_tmf_respect_zero_down"]
        + flags["ev_tmf_burst_down"]
    )
    for w in sorted({*p.activity_windows, STATE_WINDOW}):
        prefix = "tmf" if w in p.activity_windows else "_tmf"  # _: internal, for the state
        new.append(rolling_count_series(f"{prefix}_long_events_{w}", long_base, offsets, w))
        new.append(rolling_count_series(f"{prefix}_short_events_{w}", short_base, offsets, w))
    if STATE_WINDOW in p.activity_windows:
        tti_base = (
            flags["ev_tti_zero_up"].astype(np.int8)
            + flags["ev_tti_zero_down"]
            + flags["ev_tti_burst_up"]
            + flags["ev_tti_burst_down"]
        )
        new.append(rolling_count_series("tti_events_20", tti_base, offsets, 20))
    df = df.with_columns(new)

    derived: list[pl.Expr] = []
    for w in (5, 20):
        if w in p.activity_windows:
            derived.append(
                (pl.col(f"tmf_long_events_{w}") - pl.col(f"tmf_short_events_{w}")).alias(
                    f"tmf_event_asym_{w}"
                )
            )
    if 20 in p.activity_windows:
        derived.append(
            (pl.col("tmf_long_events_20") + pl.col("tmf_short_events_20")).alias(
                "tmf_event_activity_20"
            )
        )
    return (df.with_columns(derived) if derived else df), states


def _flow_state(df: pl.DataFrame) -> pl.DataFrame:
    """S0..S4 with precedence PD(2) > PS(4) > ED(1) > ES(3) > quiet(0) (spec §7.6)."""
    src = "tmf" if "tmf_long_events_20" in df.columns else "_tmf"
    long20 = pl.col(f"{src}_long_events_{STATE_WINDOW}")
    short20 = pl.col(f"{src}_short_events_{STATE_WINDOW}")
    ready, sign = pl.col("_tmf_ready_21"), pl.col("_tmf_sign")
    recent_up = pl.col("bs_tmf_zero_up") <= RECENT_CROSS_BARS  # null (no cross yet) -> False
    recent_down = pl.col("bs_tmf_zero_down") <= RECENT_CROSS_BARS
    pd_ = (ready & (sign > 0) & (pl.col("ev_tmf_hold_pos") | (long20 > short20 + 1))).fill_null(
        False
    )
    ps_ = (ready & (sign < 0) & (pl.col("ev_tmf_hold_neg") | (short20 > long20 + 1))).fill_null(
        False
    )
    ed_trigger = (
        pl.col("ev_tmf_zero_up")
        | pl.col("ev_tmf_burst_up")
        | pl.col("ev_tmf_respect_zero_up")
        | recent_up.fill_null(False)
    )
    es_trigger = (
        pl.col("ev_tmf_zero_down")
        | pl.col("ev_tmf_burst_down")
        | pl.col("ev_tmf_respect_zero_down")
        | recent_down.fill_null(False)
    )
    ed_ = (ready & (sign > 0) & ~pd_ & ed_trigger).fill_null(False)
    es_ = (ready & (sign < 0) & ~ps_ & es_trigger).fill_null(False)
    code = (
        pl.when(pd_)
        .then(2)
        .when(ps_)
        .then(4)
        .when(ed_)
        .then(1)
        .when(es_)
        .then(3)
        .otherwise(0)
        .cast(pl.Int8)
    )
    df = df.with_columns(code.alias("flow_state_code"))
    # codes are always 0..4 here, so a gather from the 5 labels is exact (and ~10x cheaper
    # than a replace); the old tool mapped "anything else" to S4, which cannot occur.
    labels = pl.Series([STATE_LABELS[k] for k in range(5)], dtype=pl.String)
    return df.with_columns(
        pl.lit(labels).gather(pl.col("flow_state_code")).alias("flow_state_label"),
        pl.lit(EVENT_SCHEMA_VERSION).alias("event_schema_version"),
        pl.lit(EVENT_CALC_VERSION).alias("event_calc_version"),
    )


def event_output_columns(params: EventParams) -> list[str]:
    """Output column order: keys, §7.7 order, then extra activity windows (old tool's tail)."""
    windows = params.activity_windows
    activity: list[str] = []
    if 5 in windows:
        activity += ["tmf_long_events_5", "tmf_short_events_5", "tmf_event_asym_5"]
    if 20 in windows:
        activity += [
            "tmf_long_events_20",
            "tmf_short_events_20",
            "tmf_event_asym_20",
            "tmf_event_activity_20",
            "tti_events_20",
        ]
    extra: list[str] = []
    for w in windows:
        if w not in (5, 20):
            extra += [f"tmf_long_events_{w}", f"tmf_short_events_{w}"]
    return [
        *KEYS,
        *EVENT_COLUMNS,
        *BARS_SINCE_SOURCES,
        *activity,
        "flow_state_code",
        "flow_state_label",
        "event_schema_version",
        "event_calc_version",
        *extra,
    ]


def _order_output(df: pl.DataFrame, p: EventParams) -> pl.DataFrame:
    return df.select(event_output_columns(p))
