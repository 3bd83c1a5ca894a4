"""The page's Backtest tab, and the chart's switch for one backtest's trade markers.

The tab shows one recorded backtest (source × split): its headline, an IN-SAMPLE banner when
its directions or policy were judged on the traded rows, where the directions came from, the
daily mark-to-market equity curve with its drawdown, the per-state table, the exit-reason mix
and the trades (filterable by ticker). Without any recorded backtest it says how to make one.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from mf_pipeline.lib.backtest.report import in_sample_line
from mf_pipeline.lib.settings import Settings
from viewer.backtest_chart import equity_figure, with_trade_markers
from viewer.backtest_data import (
    TRADES,
    BacktestRun,
    EquityView,
    by_state,
    equity_view,
    exit_mix,
    profit_factor_text,
    trades,
)
from viewer.data import FileRef, Reader
from viewer.registry import Markers
from viewer.validation_data import SOURCES

IN_SAMPLE_NOTE = (
    ":red-badge[IN-SAMPLE] The directions or the policy of these trades were judged on the "
    "same rows they trade (split `{split}`): the results describe how well the states fit "
    "their own sample, not what a live run would earn. Judge tradability on the walk-forward "
    "splits (`mf backtest-wf-run`)."
)
MAPPING_SOURCES = {
    "flow_default": "the fixed flow mapping (S1, S2 long; S3, S4 short)",
    "train_scorecard": "each HMM state's forward return on the split's TRAIN rows",
    "validation_scorecard": "a validation run's state scorecard",
    "state_map": "a state map file",
    "cluster_hardening_policy": "the split's cluster state policy (ALLOW states)",
}  # fmt: skip
COLUMN_FORMATS: dict[str, Any] = {
    c: st.column_config.NumberColumn(c, format="percent") for c in (
        "trade_share", "win_rate", "avg_return", "median_return", "net_pnl",
        "contribution_share", "share", "gross_return", "net_return",
        "max_favorable_excursion", "max_adverse_excursion")
} | {c: st.column_config.NumberColumn(c, format="%.2f") for c in (
    "avg_hold_bars", "profit_factor_proxy", "entry_price", "exit_price")
} | {c: st.column_config.DateColumn(c, format="YYYY-MM-DD") for c in (
    "entry_signal_date", "entry_date", "exit_date")}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _headline(run: BacktestRun) -> None:
    head = run.headline
    cols = st.columns(6)
    cols[0].metric("Trades", f"{head.get('trade_count', 0):,}",
                   help=f"{head.get('long_trade_count', 0)} long, "
                        f"{head.get('short_trade_count', 0)} short")
    cols[1].metric("Win rate", _pct(head.get("win_rate")))
    cols[2].metric("Avg return", _pct(head.get("avg_return")), help="net, per trade")
    cols[3].metric("Median return", _pct(head.get("median_return")))
    cols[4].metric("Profit factor", profit_factor_text(head))
    hold = head.get("avg_hold_bars")
    cols[5].metric("Avg hold", "n/a" if hold is None else f"{hold:.1f} bars")
    st.caption(f"Expectancy {_pct(head.get('expectancy'))} = the average return by "
               "construction (zero-return trades count as losses); kept only for "
               "compatibility with the old tool's reports.")


def _header(run: BacktestRun) -> None:
    if run.in_sample:
        st.markdown(IN_SAMPLE_NOTE.format(split=run.split))
    s = run.summary
    mapping = s.get("mapping_source") or "none"
    adapter = s.get("adapter_summary") or {}
    st.caption(
        f"{run.label}: {adapter.get('rows_out', 0):,} rows of {adapter.get('ticker_count', 0)} "
        f"tickers from {adapter.get('min_date')} to {adapter.get('max_date')}; "
        f"{s.get('signal_mode')} / {s.get('exit_mode')} / {s.get('hold_bars')} bars, "
        f"fees {s.get('fee_bps_per_side')} + slippage {s.get('slippage_bps_per_side')} bps "
        f"per side. Directions: `{mapping}` ({MAPPING_SOURCES.get(mapping, 'see the run')})."
        + ("" if run.in_sample else " " + in_sample_line(s).replace("**", "")))


@st.cache_data(max_entries=16, show_spinner="Marking the positions to market…")
def _cached_equity(trades_file: FileRef, finished: str | None, _settings: Settings,
                   _run: BacktestRun, _traded: pl.DataFrame, _reader: Reader) -> EquityView:
    """The run's curve, computed once per trades file (~0.5 s for a synthetic 27,000 trades
    of 300 tickers) and kept until the run is re-materialized (new file stamp)."""
    del trades_file, finished
    return equity_view(_settings, _run, _traded, _reader)


def _equity(settings: Settings, run: BacktestRun, traded: pl.DataFrame, reader: Reader) -> None:
    st.markdown("**Equity (daily, mark-to-market)**: an equally weighted book of the open "
                "positions, each marked at every close from its entry to its exit")
    if traded.filter(pl.col("is_valid_trade")).is_empty():
        st.info("No valid trade: no equity curve.")
        return
    try:
        view = _cached_equity(FileRef.of(run.folder / TRADES), run.summary.get("finished_ts"),
                              settings, run, traded, reader)
    except (FileNotFoundError, ValueError) as error:
        st.warning(f"No equity curve: {error}")
        return
    m = view.metrics
    cols = st.columns(4)
    cols[0].metric("Cumulative return", _pct(m.get("cumulative_return")))
    cols[1].metric("Max drawdown", _pct(m.get("max_drawdown")),
                   help=f"{m.get('max_drawdown_days', 0)} trading days under water at most")
    sharpe = m.get("sharpe_proxy")
    cols[2].metric("Sharpe (daily, √252)", "n/a" if sharpe is None else f"{sharpe:.2f}")
    cols[3].metric("Days in market", _pct(m.get("days_in_market_share")))
    st.plotly_chart(equity_figure(view.curve, float(m.get("capital_base") or 1.0)),
                    theme=None, key="backtest_equity", config={"displaylogo": False})
    st.caption(f"Curve: {view.origin}. Half of each trade's round-trip cost is charged on its "
               "entry bar and half on its exit bar.")


def _trades_table(traded: pl.DataFrame) -> None:
    tickers = traded["ticker"].unique().sort().to_list()
    chosen = st.multiselect("Tickers", tickers, key="backtest_tickers",
                            placeholder="all tickers")
    shown = traded.filter(pl.col("ticker").is_in(chosen)) if chosen else traded
    st.caption(f"{shown.height:,} of {traded.height:,} trades")
    st.dataframe(shown.drop("is_valid_trade"), hide_index=True, column_config=COLUMN_FORMATS,
                 key="backtest_trades")


def section(settings: Settings, runs: dict[str, BacktestRun], missing: dict[str, str],
            reader: Reader) -> None:
    """The tab for the backtest the user picks among ``runs`` (``missing``: why not others)."""
    st.subheader("Backtest")
    if not runs:
        st.info("No backtest recorded yet. Run `mf demo` (or materialize `backtest_flow`, "
                "`backtest_hmm`, `backtest_cluster` for a split). Looked for: "
                + "; ".join(missing.values()))
        return
    sources = list(dict.fromkeys(run.source for run in runs.values()))
    c1, c2 = st.columns(2)
    source = c1.selectbox("Source", sources, key="backtest_source", format_func=SOURCES.get,
                          index=sources.index("hmm") if "hmm" in sources else 0)
    splits = [run.split for run in runs.values() if run.source == source]
    split = c2.selectbox("Split", splits, key="backtest_split")
    run = next(r for r in runs.values() if r.source == source and r.split == split)
    _header(run)
    _headline(run)
    traded = trades(run, reader)
    _equity(settings, run, traded, reader)
    st.markdown("**By entry state** (valid trades)")
    st.dataframe(by_state(run, reader), hide_index=True, column_config=COLUMN_FORMATS,
                 key="backtest_by_state")
    st.markdown("**Exit reasons** (all trades)")
    st.dataframe(exit_mix(run), hide_index=True, column_config=COLUMN_FORMATS,
                 key="backtest_exits")
    st.markdown("**Trades**")
    _trades_table(traded)
    st.caption(f"Backtest folder: `{run.folder}` (report: `backtest_report.md`)")
    if missing:
        st.caption("Not recorded: " + "; ".join(f"{k}: {why}" for k, why in missing.items()))


def chart_choice(runs: dict[str, BacktestRun]) -> BacktestRun | None:
    """The sidebar's "Show backtest trades" switch (off by default) and, when on, the
    backtest whose trades the chart marks."""
    shown = st.toggle("Show backtest trades", False, disabled=not runs,
                      key="show_backtest_trades" if runs else "show_backtest_trades__none",
                      help=None if runs else "No recorded backtest (run `mf demo`).")
    if not (shown and runs):
        return None
    labels = list(runs)
    default = next((i for i, label in enumerate(labels) if runs[label].source == "hmm"), 0)
    return runs[st.selectbox("Backtest", labels, index=default, key="backtest_markers_run")]


def mark_trades(frame: pl.DataFrame, run: BacktestRun, ticker: str, reader: Reader
                ) -> tuple[pl.DataFrame, list[Markers]]:
    """``frame`` with ``run``'s trades of ``ticker`` to mark (``with_trade_markers``), and a
    line saying how many there are (or which tickers the run traded instead)."""
    mine = trades(run, reader, ticker)
    if mine.is_empty():
        traded = trades(run, reader)["ticker"].unique().sort().to_list()
        st.caption(f"{run.label}: no trade of {ticker}. Traded: "
                   f"{', '.join(traded[:10]) or 'nothing'}{' …' if len(traded) > 10 else ''}.")
    else:
        long = int((mine["side"] == "LONG").sum())
        st.caption(f"{run.label}: {mine.height} trades of {ticker} ({long} long, "
                   f"{mine.height - long} short), marked at their fill prices; hover an ✕ "
                   "for the exit reason.")
    return with_trade_markers(frame, mine)
