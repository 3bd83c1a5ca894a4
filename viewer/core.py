"""Pure display transforms of the viewer (no Streamlit, no plotly, no I/O).

Everything here reshapes values READ from the lake for display: ticker normalisation, the date
window, candle downsampling, the HMM display modes and the run segmentation of bands. Nothing
recomputes a layer's formula. All transforms are whole-column polars expressions.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

DEFAULT_TICKER = "AAPL.US"
DEFAULT_WINDOW_DAYS = 365
DEFAULT_MAX_CANDLES = 1500  # about one candle per pixel of a wide chart; beyond, bars bucket

HMM_MODES: tuple[str, ...] = ("RAW", "SMOOTHED", "GROUPED", "SMOOTHED+GROUPED")
SMOOTHING_METHODS: tuple[str, ...] = ("mode", "median")
GROUPING_SCHEMES: tuple[str, ...] = ("LONG_NEUTRAL_SHORT", "LONG_OTHER")
MIN_SMOOTHING_WINDOW = 3


# --------------------------------------------------------------------------------------------
# ticker and window


def normalize_ticker(raw: str | None, universe: Collection[str]) -> tuple[str, str | None]:
    """Resolve a typed ticker against the universe (spec §12.1); returns (ticker, note).

    Trimmed upper-case token; kept when known, else ``<T>.US`` when known, else the stem of a
    known ``<T>.US``, else the single universe symbol starting with ``<T>.``; otherwise the
    token unchanged. The note says what changed (None when nothing did), so the page can
    tell the user it answered a different ticker than the one typed.
    """
    token = (raw or "").strip().upper()
    if not token or token in universe:
        return token, None
    resolved: str | None = None
    if f"{token}.US" in universe:
        resolved = f"{token}.US"
    elif token.endswith(".US") and token[:-3] in universe:
        resolved = token[:-3]
    else:
        prefixed = [symbol for symbol in universe if symbol.startswith(f"{token}.")]
        if len(prefixed) == 1:
            resolved = prefixed[0]
    if resolved is None:
        return token, None
    return resolved, f"Ticker normalized: {token} -> {resolved}"


def closest_tickers(
    typed: str, universe: Collection[str], n: int = 5, cutoff: float = 0.6
) -> list[str]:
    """The ``n`` universe tickers most like ``typed`` (a typo, a missing suffix), best first.

    Similarity is difflib's ratio, taken as the better of the whole symbols and of their stems
    (the part before the first dot), so ``APPL`` finds ``AAPL.US``; ties go alphabetically.
    Only matches scoring at least ``cutoff`` are returned. Runs on the error path only.
    """
    token = (typed or "").strip().upper()
    if not token:
        return []
    stem = token.split(".", 1)[0]
    whole, part = difflib.SequenceMatcher(), difflib.SequenceMatcher()
    whole.set_seq2(token)
    part.set_seq2(stem)
    scored: list[tuple[float, str]] = []
    for symbol in universe:
        whole.set_seq1(symbol)
        part.set_seq1(symbol.split(".", 1)[0])
        score = max(whole.ratio(), part.ratio())
        if score >= cutoff:
            scored.append((-score, symbol))
    return [symbol for _score, symbol in sorted(scored)[:n]]


def default_window(
    first: dt.date, last: dt.date, days: int = DEFAULT_WINDOW_DAYS
) -> tuple[dt.date, dt.date]:
    """The last ``days`` of the data (or all of it when shorter): what a chart opens on."""
    return max(first, last - dt.timedelta(days=days)), last


def clip_window(frame: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Rows with ``start <= trade_date <= end``."""
    return frame.filter(pl.col("trade_date").is_between(start, end))


def downsample_ohlc(frame: pl.DataFrame, max_bars: int) -> tuple[pl.DataFrame, int]:
    """Bucket consecutive bars into candles when there are more than ``max_bars``.

    A browser cannot show more candles than it has pixels, and thousands of candle paths make
    the chart sluggish; so beyond ``max_bars`` every ``k = ceil(n / max_bars)`` consecutive
    bars become one candle (first open, max high, min low, last close, summed volume, dated
    at the bucket's first bar). Returns (frame, k); k = 1 means untouched.
    """
    n = frame.height
    if max_bars <= 0 or n <= max_bars:
        return frame, 1
    factor = math.ceil(n / max_bars)
    aggs = [pl.col("trade_date").first()]
    aggs += [pl.col(c).first() for c in ("open",) if c in frame.columns]
    aggs += [pl.col(c).max() for c in ("high",) if c in frame.columns]
    aggs += [pl.col(c).min() for c in ("low",) if c in frame.columns]
    aggs += [pl.col(c).last() for c in ("close",) if c in frame.columns]
    aggs += [pl.col(c).sum() for c in ("volume",) if c in frame.columns]
    out = (
        frame.with_row_index("_row")
        .group_by((pl.col("_row") // factor).alias("_bucket"), maintain_order=True)
        .agg(aggs)
        .drop("_bucket")
    )
    return out, factor


# --------------------------------------------------------------------------------------------
# HMM display modes (spec §12.7, with a look-ahead-free grouping)


def _state_series(states: pl.Series) -> pl.Series:
    """States as Int64 with NaN and null as null (so 'finite values only' is a null check)."""
    if states.dtype.is_float():
        states = states.fill_nan(None)
    return states.cast(pl.Int64)


def smooth_states(states: pl.Series, window: int, method: str = "mode") -> pl.Series:
    """Trailing-window smoothing of a state path: ``[i-w+1, i]``, so it reads no future bar.

    ``mode``: most frequent state in the window; a tie goes to the tied state seen most
    recently. ``median``: the window median rounded half-to-even. Null states are ignored;
    a window without any state gives null. ``window`` below 3 is raised to 3.
    """
    if method not in SMOOTHING_METHODS:
        raise ValueError(f"smoothing method must be one of {SMOOTHING_METHODS}, got {method!r}")
    w = max(MIN_SMOOTHING_WINDOW, int(window))
    s = _state_series(states)
    if method == "median":
        return (
            s.cast(pl.Float64)
            .rolling_median(w, min_samples=1)
            .round(0, mode="half_to_even")
            .cast(pl.Int64)
            .alias("hmm_state_smoothed")
        )
    distinct = s.drop_nulls().unique().sort()
    if distinct.is_empty():
        return pl.Series("hmm_state_smoothed", [None] * s.len(), dtype=pl.Int64)
    n = s.len()
    frame = pl.DataFrame({"s": s}).with_row_index("_i")
    # score = count in window * (n + 1) + last position seen: the max is the most frequent
    # state, ties broken by recency; -1 when the state is absent from the window.
    scores = []
    for k, state in enumerate(distinct.to_list()):  # a few distinct states, not rows
        hit = pl.col("s") == state
        count = hit.cast(pl.Int64).fill_null(0).rolling_sum(w, min_samples=1)
        last = pl.when(hit).then(pl.col("_i").cast(pl.Int64)).forward_fill()
        scores.append(
            pl.when(count > 0).then(count * (n + 1) + last).otherwise(-1).alias(f"_k{k}")
        )
    picked = frame.select(
        pl.concat_list(scores).list.arg_max().alias("_arg"),
        pl.max_horizontal(scores).alias("_best"),
    )
    smoothed = distinct.gather(picked["_arg"])
    return (
        pl.DataFrame({"v": smoothed, "best": picked["_best"]})
        .select(pl.when(pl.col("best") >= 0).then(pl.col("v")).alias("hmm_state_smoothed"))
        .to_series()
        .cast(pl.Int64)
    )


def past_state_scores(
    frame: pl.DataFrame, state_col: str, value_col: str, before: dt.date
) -> pl.DataFrame:
    """Mean of ``value_col`` per state over the rows strictly BEFORE ``before``.

    Used to tell long from short states without look-ahead: only history that precedes the
    visible window is read, and ``value_col`` is a same-bar value (e.g. Silver ``ret_1d``),
    never a forward return. Columns: ``state, score, rows``.
    """
    if state_col not in frame.columns or value_col not in frame.columns:
        return pl.DataFrame(schema={"state": pl.Int64, "score": pl.Float64, "rows": pl.UInt32})
    value = pl.col(value_col).cast(pl.Float64)
    return (
        frame.filter(
            (pl.col("trade_date") < before)
            & pl.col(state_col).is_not_null()
            & value.is_finite()
        )
        .group_by(pl.col(state_col).cast(pl.Int64).alias("state"))
        .agg(value.mean().alias("score"), pl.len().cast(pl.UInt32).alias("rows"))
        .sort("state")
    )


def rank_states(
    scores: pl.DataFrame, scheme: str, top_k: int, bottom_k: int
) -> tuple[list[int], list[int]]:
    """(long states, short states) from a ``state, score`` table: the ``top_k`` best scores are
    long; for LONG_NEUTRAL_SHORT the ``bottom_k`` worst of the rest are short."""
    if scheme not in GROUPING_SCHEMES:
        raise ValueError(f"grouping scheme must be one of {GROUPING_SCHEMES}, got {scheme!r}")
    valid = scores.filter(pl.col("score").is_finite() & pl.col("state").is_not_null())
    ranked = valid.sort(["score", "state"], descending=[True, False])
    long_states = ranked["state"].head(max(0, top_k)).cast(pl.Int64).to_list()
    if scheme != "LONG_NEUTRAL_SHORT":
        return long_states, []
    rest = valid.filter(~pl.col("state").is_in(long_states)).sort(["score", "state"])
    return long_states, rest["state"].head(max(0, bottom_k)).cast(pl.Int64).to_list()


GROUP_LABELS: dict[str, dict[int, str]] = {
    "LONG_NEUTRAL_SHORT": {1: "LONG", 0: "NEUTRAL", -1: "SHORT"},
    "LONG_OTHER": {1: "LONG", 0: "OTHER"},
}


def group_states(
    states: pl.Series, long_states: Sequence[int], short_states: Sequence[int], scheme: str
) -> tuple[pl.Series, pl.Series]:
    """(``hmm_group_code``, ``hmm_group_label``): 1 long / -1 short / 0 otherwise (LNS), or
    1 long / 0 other (LONG_OTHER); null state -> null code and label ``NA``."""
    if scheme not in GROUPING_SCHEMES:
        raise ValueError(f"grouping scheme must be one of {GROUPING_SCHEMES}, got {scheme!r}")
    s = pl.col("s")
    code = pl.when(s.is_null()).then(None).when(s.is_in(list(long_states))).then(1)
    if scheme == "LONG_NEUTRAL_SHORT":
        code = code.when(s.is_in(list(short_states))).then(-1)
    code = code.otherwise(0).cast(pl.Int8)
    labels = GROUP_LABELS[scheme]
    out = pl.DataFrame({"s": _state_series(states)}).select(
        code.alias("hmm_group_code"),
    )
    label = out.select(
        pl.col("hmm_group_code")
        .replace_strict(labels, default="NA", return_dtype=pl.String)
        .fill_null("NA")
        .alias("hmm_group_label")
    )
    return out.to_series(), label.to_series()


@dataclass(frozen=True)
class HmmDisplay:
    """The HMM display choice of the sidebar."""

    mode: str = "RAW"
    state_col: str = "hmm_state_filtered"
    method: str = "mode"
    window: int = 5
    scheme: str = "LONG_NEUTRAL_SHORT"
    top_k: int = 1
    bottom_k: int = 1


@dataclass
class HmmDisplayResult:
    frame: pl.DataFrame
    band_col: str | None
    grouped: bool
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def apply_hmm_display(
    frame: pl.DataFrame,
    opts: HmmDisplay,
    scores: pl.DataFrame | None = None,
    scores_source: str | None = None,
) -> HmmDisplayResult:
    """Add ``hmm_state_smoothed``, ``hmm_group_code/label`` and ``hmm_display`` (the band).

    ``frame`` is the ticker's FULL history (smoothing is trailing, so the first visible bars
    get real windows); clip it afterwards. ``scores`` (``state, score``) rank the states for
    grouping; the caller builds them from the model's own state statistics or from history
    before the window, never from forward returns of the visible rows. Without usable scores
    grouping is skipped with a warning and the band falls back to the ungrouped states.
    """
    warnings: list[str] = []
    summary: dict[str, Any] = {**asdict(opts), "grouping_source": None,
                               "long_states": [], "short_states": []}
    if opts.mode not in HMM_MODES:
        raise ValueError(f"HMM display mode must be one of {HMM_MODES}, got {opts.mode!r}")
    if opts.state_col not in frame.columns:
        warnings.append(f"HMM display skipped: no `{opts.state_col}` column")
        return HmmDisplayResult(frame, None, False, {**summary, "band_col": None}, warnings)
    band_col = opts.state_col
    out = frame.with_columns(_state_series(frame[opts.state_col]).alias(opts.state_col))
    if "SMOOTHED" in opts.mode:
        if opts.window < MIN_SMOOTHING_WINDOW:
            warnings.append(f"smoothing window {opts.window} raised to {MIN_SMOOTHING_WINDOW}")
        summary["window"] = max(MIN_SMOOTHING_WINDOW, opts.window)
        out = out.with_columns(smooth_states(out[opts.state_col], opts.window, opts.method))
        band_col = "hmm_state_smoothed"
    grouped = False
    if "GROUPED" in opts.mode:
        long_states: list[int] = []
        short_states: list[int] = []
        if scores is not None and not scores.is_empty():
            long_states, short_states = rank_states(scores, opts.scheme, opts.top_k, opts.bottom_k)
        if long_states:
            code, label = group_states(out[band_col], long_states, short_states, opts.scheme)
            out = out.with_columns(code, label)
            summary.update(grouping_source=scores_source, long_states=long_states,
                           short_states=short_states)
            band_col, grouped = "hmm_group_code", True
        else:
            warnings.append(
                "Grouped HMM display unavailable: no state statistics of the model and no "
                "history before the window to rank states (forward returns are never used)"
            )
    out = out.with_columns(pl.col(band_col).alias("hmm_display"))
    summary["band_col"] = band_col
    return HmmDisplayResult(out, band_col, grouped, summary, warnings)


# --------------------------------------------------------------------------------------------
# bands


def segment_runs(dates: pl.Series, values: pl.Series) -> pl.DataFrame:
    """Merge consecutive equal values into segments: ``start, end, last, value, bars``.

    ``start``/``last`` are the first/last dates of the run; ``end`` is the next run's start
    (the last run ends one day after its last date) so a one-bar run still has a width and
    neighbouring segments touch. Null runs are kept (as gaps); callers drop them if needed.
    """
    frame = pl.DataFrame({"trade_date": dates, "value": values})
    if frame.is_empty():
        return pl.DataFrame(
            schema={"start": dates.dtype, "end": dates.dtype, "last": dates.dtype,
                    "value": values.dtype, "bars": pl.UInt32}
        )
    runs = (
        frame.with_columns(pl.col("value").rle_id().alias("_run"))
        .group_by("_run", maintain_order=True)
        .agg(
            pl.col("trade_date").first().alias("start"),
            pl.col("trade_date").last().alias("last"),
            pl.col("value").first(),
            pl.len().alias("bars"),
        )
    )
    return runs.select(
        "start",
        pl.col("start").shift(-1).fill_null(pl.col("last") + pl.duration(days=1)).alias("end"),
        "last",
        "value",
        pl.col("bars").cast(pl.UInt32),
    )
