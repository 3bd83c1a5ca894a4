"""Streamlit page of the overlay viewer (``mf viewer``): a ticker's chart with its layers.

It reads the lake (Bronze bars, Silver returns, TMF/TTI indicators, Event Grammar flags and
flow states) plus the optional layers of ``registry.OPTIONAL_LAYERS`` and draws them; it
computes no layer. A missing layer is announced and its controls disabled; "Compute this
ticker" materializes the ticker's partitions through Dagster. Reads are cached per file
materialization (path + mtime + size), so re-rendering a 10,000-bar ticker takes well
under a second.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

import polars as pl
import streamlit as st

from mf_pipeline.lib import lake
from mf_pipeline.lib.settings import Settings, SettingsError, load_settings
from viewer import (
    backtest,
    backtest_data,
    candidates_chart,
    compute,
    core,
    data,
    registry,
    validation,
    validation_data,
)
from viewer.chart import ChartOptions, build_figure
from viewer.validation_chart import with_policy_strips

TITLE = "mf_pipeline overlay viewer"
PREVIEW_ROWS = 300
PREVIEW_COLUMNS = (
    "trade_date", "open", "high", "low", "close", "volume", "tmf_21", "tti_proxy_v1_21",
    "flow_state_code", "flow_state_label", "hmm_state", "hmm_state_filtered",
    "hmm_prob_filtered_max", "hmm_state_smoothed", "hmm_group_code", "hmm_group_label",
    "cluster_label", "overlay_policy_class", "execution_eligible", "execution_filter_reason",
    "entry_signal", "entry_side", "candidate_marker_type", "blocked_reason",
    *registry.EVENT_COLUMNS,
)  # fmt: skip
HELP = """
- **Bands**: one strip per state under the panels, its legend above it: flow state S0–S4
  (grey quiet, greens demand, orange/red supply), HMM states (one colour per state, or green
  LONG / slate NEUTRAL / red SHORT when grouped), cluster labels and policy classes when
  those layers exist. Hover a strip for the state of a date.
- **Policy strips**: under a Flow, HMM or cluster strip, the ALLOW long / ALLOW short / WATCH /
  BLOCK class the state policy gave each state (the HMM's by its filtered state); the
  Validation tab shows why. Marked in-sample when the policy comes from the `full` split.
- **Disabled switches**: hover the ⓘ to see the file or folder the viewer looked at.
- **TMF + TTI proxy** panel: dotted zero and ±0.20 signal levels, dashed ±0.30 entry levels;
  markers = Event Grammar zero crosses (triangles), bursts (stars), respects (circles).
- **Grouping** ranks the HMM states by the model's own state statistics, else by the mean
  Silver return of each state BEFORE the window: never by returns after the bars shown.
"""


@st.cache_data(max_entries=512, show_spinner=False)
def cached_read(
    path: str, mtime_ns: int, size: int, columns: tuple[str, ...], ticker: str | None
) -> pl.DataFrame:
    """A file's columns, cached until the file is re-materialized (new mtime or size)."""
    return data.read_parquet_columns(path, mtime_ns, size, columns, ticker)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        st.error(f"Settings are invalid: {error}")
        st.stop()
        raise


def _compute(settings: Settings, ticker: str) -> None:
    """Run the ticker's partitions through Dagster with a progress bar, then re-render."""
    progress = st.progress(0.05, text=f"Materializing {ticker} through Dagster…")
    lines: list[str] = []

    def log(message: str) -> None:
        lines.append(message)
        progress.progress(min(0.9, 0.1 + 0.3 * len(lines)), text=message)

    started = time.perf_counter()
    try:
        run_ids = compute.compute_ticker(settings, ticker, log)
    except Exception as error:  # shown to the user; the page stays usable
        progress.empty()
        st.error(f"Computing {ticker} failed: {type(error).__name__}: {error}")
        return
    progress.progress(1.0, text="done")
    st.session_state["computed"] = {
        "ticker": ticker, "run_ids": list(run_ids), "log": lines,
        "seconds": round(time.perf_counter() - started, 2),
    }
    st.rerun()


def _compute_offer(settings: Settings, ticker: str, missing: list[str]) -> None:
    if not lake.is_valid_ticker(ticker):
        return
    st.warning(
        f"{ticker}: {', '.join(missing)} not materialized. The matching layers are disabled; "
        "compute them through Dagster (the same assets as everywhere)."
    )
    if st.button("Compute this ticker", key="compute_main", type="primary"):
        _compute(settings, ticker)


def _choose_ticker(ticker: str) -> None:
    st.session_state["ticker"] = ticker


def _not_in_lake(ticker: str, universe: list[str], why: str) -> None:
    """Stop the page, naming the lake's tickers closest to ``ticker`` (one click each)."""
    close = core.closest_tickers(ticker, universe)
    hint = (f"Closest: {', '.join(close)}." if close
            else f"None of its {len(universe):,} tickers is close to it.")
    st.error(f"{ticker!r} {why}. {hint}")
    for column, candidate in zip(st.columns(max(len(close), 1)), close, strict=False):
        column.button(candidate, key=f"closest_{candidate}", on_click=_choose_ticker,
                      args=(candidate,))
    st.stop()


def _pick_ticker(universe: list[str]) -> tuple[str, str | None]:
    default = core.DEFAULT_TICKER if core.DEFAULT_TICKER in universe else None
    if default is None and universe:
        default = universe[0]
    choice = st.selectbox(
        "Ticker",
        universe,
        index=universe.index(default) if default else None,
        accept_new_options=True,
        placeholder="type a ticker, e.g. aapl",
        help="Search the symbol master; a typed ticker is normalized (aapl → AAPL.US).",
        key="ticker",
    )
    return core.normalize_ticker(choice, frozenset(universe))


def _toggle(label: str, available: bool, why: str | None, key: str, value: bool = True) -> bool:
    """A layer switch, disabled (and off) with the reason when the layer is unavailable.

    The disabled switch has its own key, so once the layer appears (computed, or another
    ticker) the switch starts on again instead of keeping the forced "off".
    """
    shown = st.toggle(label, value=value and available, disabled=not available,
                      help=None if available else why,
                      key=key if available else f"{key}__unavailable")
    return shown and available


def _hmm_controls(frame: pl.DataFrame) -> core.HmmDisplay:
    states = [c for c in ("hmm_state_filtered", "hmm_state") if c in frame.columns]
    mode = st.selectbox("HMM Display Mode", core.HMM_MODES, key="hmm_mode")
    state_col = st.selectbox(
        "HMM state column", states, key="hmm_state_col",
        help="hmm_state_filtered decodes from past bars only (forward filter); hmm_state is "
        "the Viterbi path, which also reads later bars. Both come from a model fitted on the "
        "whole sample (the full split), later bars included: neither is out of sample.",
    )
    method, window, scheme, top_k, bottom_k = "mode", 5, "LONG_NEUTRAL_SHORT", 1, 1
    if "SMOOTHED" in mode:
        method = st.selectbox("smoothing_method", core.SMOOTHING_METHODS, key="hmm_method")
        window = st.slider("smoothing_window", 3, 21, 5, step=2, key="hmm_window")
    if "GROUPED" in mode:
        scheme = st.selectbox("grouping_scheme", core.GROUPING_SCHEMES, key="hmm_scheme")
        top_k = st.number_input("long_states_top_k", 1, 8, 1, key="hmm_top_k")
        if scheme == "LONG_NEUTRAL_SHORT":
            bottom_k = st.number_input("short_states_bottom_k", 1, 8, 1, key="hmm_bottom_k")
    return core.HmmDisplay(mode, state_col or "hmm_state", method, int(window), scheme,
                           int(top_k), int(bottom_k))


def _rate(frame: pl.DataFrame, expr: pl.Expr, needs: str) -> str:
    if needs not in frame.columns or frame.is_empty():
        return "n/a"
    return f"{frame.select(expr.cast(pl.Float64).mean()).item() or 0.0:.1%}"


def _metrics(window: pl.DataFrame) -> None:
    cols = st.columns(5)
    cols[0].metric("Rows", f"{window.height:,}")
    signals = (str(int(window["entry_signal"].cast(pl.Int64).sum()))
               if "entry_signal" in window.columns else "n/a")
    cols[1].metric("Signals", signals)
    matched = pl.col("overlay_policy_class").is_not_null() & (
        pl.col("overlay_policy_class").cast(pl.String).str.to_uppercase() != "UNKNOWN")
    cols[2].metric("Overlay match rate", _rate(window, matched, "overlay_policy_class"))
    cols[3].metric("Exec eligibility",
                   _rate(window, pl.col("execution_eligible"), "execution_eligible"))
    events = [c for c in registry.EVENT_COLUMNS if c in window.columns]
    count = (window.select(pl.sum_horizontal(pl.col(events).fill_null(False).cast(pl.Int64)).sum())
             .item() if events else None)
    cols[4].metric("Events", "n/a" if count is None else f"{count:,}")


def _file_info(ref: data.FileRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    stamp = dt.datetime.fromtimestamp(ref.mtime_ns / 1e9, tz=dt.UTC).isoformat(timespec="seconds")
    return {"path": ref.path, "modified": stamp, "bytes": ref.size}


def main() -> None:
    started = time.perf_counter()
    st.set_page_config(page_title=TITLE, layout="wide")
    st.title(TITLE)
    st.caption("Visualization only: reads the lake, computes no layer, places no orders.")
    settings = _settings()
    runs, not_validated = validation_data.load_runs(settings)
    backtests, no_backtest = backtest_data.load_runs(settings)
    chart_tab, validation_tab, backtest_tab = st.tabs(["Chart", "Validation", "Backtest"],
                                                      key="view", on_change="rerun")
    if validation_tab.open:  # the chart tab always renders: it holds the sidebar's controls
        with validation_tab:
            validation.section(runs, not_validated, cached_read)
    if backtest_tab.open:
        with backtest_tab:
            backtest.section(settings, backtests, no_backtest, cached_read)
    no_policy = "; ".join([*not_validated.values(), *(n for r in runs.values() for n in r.notes)])
    with chart_tab:
        _chart_page(settings, runs, no_policy, backtests, started)


def _chart_page(settings: Settings, runs: dict[str, validation_data.ValidationRun],
                no_policy: str, backtests: dict[str, backtest_data.BacktestRun],
                started: float) -> None:
    """The ticker's chart and the sidebar; stops the script early when there is no chart.

    ``runs``: the recorded validations whose policies can be painted (``no_policy``: why
    some cannot); ``backtests``: the recorded backtests whose trades can be marked."""
    universe = data.load_universe(settings, cached_read)

    with st.sidebar:
        st.header("Ticker")
        ticker, note = _pick_ticker(universe)
    if note:
        st.info(note)
    if not ticker:
        st.warning("No ticker to show: the lake has no symbol master and no Bronze files yet. "
                   "Run `mf demo` (or `make demo`), or type a ticker in the sidebar.")
        st.stop()
    if not lake.is_valid_ticker(ticker):
        _not_in_lake(ticker, universe, "is not a valid ticker")

    done = st.session_state.pop("computed", None)
    if done:
        st.success(f"Computed {done['ticker']} in {done['seconds']} s through Dagster "
                   f"(runs {', '.join(done['run_ids']) or 'none'}).")
    td = data.load_ticker(settings, ticker, cached_read)
    missing = [layer for layer in data.READ_LAYERS if not td.available.get(layer)]
    if not td.has_bars:
        if ticker not in universe:
            _not_in_lake(ticker, universe, "is not in the lake")
        st.error(f"No Bronze bars for {ticker}.")
        _compute_offer(settings, ticker, missing)
        st.stop()
    if missing:
        _compute_offer(settings, ticker, missing)
    absent = [layer.label for layer in registry.OPTIONAL_LAYERS if not td.available[layer.name]]
    if absent:
        st.caption("Not available for this ticker (disabled): " + "; ".join(absent) + ".")
    if candidates := candidates_chart.status_line(settings):
        st.markdown(candidates)

    frame = td.frame
    first, last = frame["trade_date"].min(), frame["trade_date"].max()
    start_default, end_default = core.default_window(first, last)
    ok = td.available
    with st.sidebar:
        st.header("Window")
        c1, c2 = st.columns(2)
        start = c1.date_input("From", start_default, first, last, key=f"from_{ticker}")
        end = c2.date_input("To", end_default, first, last, key=f"to_{ticker}")
        st.header("Display")
        show_volume = st.toggle("Show volume", True, key="show_volume")
        volume_mode = st.radio("Volume mode", ("separate", "overlay"), horizontal=True,
                               key="volume_mode")
        show_tmf = _toggle("Show TMF + TTI panel", ok["indicators"], td.notes.get("indicators"),
                           "show_tmf")
        show_events = _toggle("Show event markers", ok["events"] and show_tmf,
                              td.notes.get("events", "needs the TMF + TTI panel"), "show_events")
        show_flow = _toggle("Show Flow state band", ok["events"], td.notes.get("events"),
                            "show_flow")
        show_hmm = _toggle("Show HMM state band", ok["hmm"], td.notes.get("hmm"), "show_hmm")
        hmm_opts = _hmm_controls(frame) if show_hmm else None
        shown_optional = {
            layer.name: _toggle(f"Show {layer.label}", ok[layer.name], td.notes.get(layer.name),
                                f"show_{layer.name}")
            for layer in registry.OPTIONAL_LAYERS if layer.name != "hmm"
        }
        show_policy = _toggle("Show policy class strips",
                              any(r.policy is not None for r in runs.values()),
                              f"No recorded state policy of the `full` split: {no_policy}",
                              "show_policy_strips")
        trades_of = backtest.chart_choice(backtests)
        with st.expander("TMF / TTI settings"):
            scale_pct = st.toggle("Scale TMF/TTI to %", False, key="scale_pct")
            max_candles = st.number_input(
                "Max candles before downsampling", 200, 50_000, core.DEFAULT_MAX_CANDLES,
                step=100, key="max_candles",
                help="Beyond this, consecutive bars are bucketed into one candle.")
        if not missing:
            with st.expander("Recompute"):
                if st.button("Compute this ticker", key="compute_side"):
                    _compute(settings, ticker)
        with st.expander("Legend / help"):
            st.markdown(HELP)
    if start > end:
        st.error("From is after To: pick a window where From ≤ To.")
        st.stop()

    warnings: list[str] = []
    hmm_summary: dict[str, Any] | None = None
    bands: list[registry.Band] = [registry.FLOW_BAND] if show_flow else []
    annotation = None
    if hmm_opts is not None:
        scores, source = td.state_scores, "model_state_statistics"
        if scores is None and "GROUPED" in hmm_opts.mode:
            scores = core.past_state_scores(frame, hmm_opts.state_col, "ret_1d", start)
            source = "mean_silver_ret_1d_before_window"
        result = core.apply_hmm_display(frame, hmm_opts, scores, source)
        frame, hmm_summary = result.frame, result.summary
        warnings += result.warnings
        if result.band_col is not None:
            bands.append(dataclasses.replace(registry.HMM_GROUPED_BAND,
                                             labels=core.GROUP_LABELS[hmm_opts.scheme])
                         if result.grouped else registry.HMM_BAND)
        annotation = f"HMM Display: {hmm_opts.mode}"
        if "SMOOTHED" in hmm_opts.mode:
            annotation += f" (w={max(core.MIN_SMOOTHING_WINDOW, hmm_opts.window)})"
    markers: list[registry.Markers] = list(registry.EVENT_MARKERS) if show_events else []
    for layer in registry.OPTIONAL_LAYERS:
        if shown_optional.get(layer.name):
            bands += layer.bands
            markers += layer.markers

    if show_policy:
        frame, bands = with_policy_strips(frame, bands, runs)
    if trades_of is not None:
        frame, trade_markers = backtest.mark_trades(frame, trades_of, ticker, cached_read)
        markers += trade_markers
    window = core.clip_window(frame, start, end)
    ohlcv = [c for c in ("trade_date", "open", "high", "low", "close", "volume")
             if c in window.columns]
    bars, factor = core.downsample_ohlc(window.select(ohlcv), int(max_candles))
    for message in warnings:
        st.warning(message)
    if factor > 1:
        st.caption(f"Downsampled: {window.height:,} bars drawn as {bars.height:,} candles of "
                   f"{factor} bars each (more bars than the chart can show). TMF/TTI, bands and "
                   "markers keep every bar; narrow the window to see single bars.")
    options = ChartOptions(show_volume=show_volume, volume_mode=volume_mode, show_tmf=show_tmf,
                           scale_pct=scale_pct, annotation=annotation, revision=ticker)
    figure = build_figure(window, bars, bands, markers, options)
    st.plotly_chart(figure, theme=None, key="chart", config={"displaylogo": False})

    _metrics(window)
    flow = (window["flow_state_label"].drop_nulls().tail(1).to_list()
            if "flow_state_label" in window.columns else [])
    st.caption(f"Flow State Source: events layer (Event Grammar v1); last: "
               f"{flow[0] if flow else 'n/a'}")
    if hmm_summary is not None:
        st.caption(f"HMM Display: {hmm_summary['mode']} (band={hmm_summary['band_col']})")
    with st.expander("Diagnostics"):
        st.json({
            "ticker": ticker,
            "window": {"from": str(start), "to": str(end), "rows": window.height,
                       "history_rows": td.frame.height},
            "downsampling": {"factor": factor, "candles": bars.height,
                             "max_candles": int(max_candles)},
            "layers": {name: {"available": td.available.get(name, False),
                              "note": td.notes.get(name), "file": _file_info(ref)}
                       for name, ref in td.files.items()},
            "hmm_display": hmm_summary,
            "validation_runs": {source: {"folder": str(run.folder), "in_sample": run.in_sample,
                                         "policy": str(run.policy_dir) if run.policy_dir
                                         else None} for source, run in runs.items()},
            "render_seconds": round(time.perf_counter() - started, 3),
        }, expanded=False)
    with st.expander("Data preview"):
        preview = [c for c in PREVIEW_COLUMNS if c in window.columns]
        st.dataframe(window.select(preview).tail(PREVIEW_ROWS), hide_index=True)


main()
