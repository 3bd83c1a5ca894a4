"""Drawing of a recorded backtest: the Backtest tab's equity + drawdown figure, and the chart's
entry/exit markers of one ticker's trades (placed at the fill prices on the fill dates)."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from viewer.registry import GREEN, RED, Markers

LONG_COLOR, SHORT_COLOR = "#1565c0", "#8e24aa"  # not the candles' green/red
MARGIN = {"l": 60, "r": 20, "t": 40, "b": 40}


def _pct(expr: pl.Expr) -> pl.Expr:
    return pl.format("{}%", (expr * 100).round(2))


def with_trade_markers(frame: pl.DataFrame, trades: pl.DataFrame
                       ) -> tuple[pl.DataFrame, list[Markers]]:
    """``frame`` (one ticker's rows) with its trades' entries and exits joined on their
    dates (``bt_entry_*`` / ``bt_exit_*``), and the marker specs drawing them: an entry at
    its entry price (▲ long, ▼ short), an exit at its exit price (✕, its reason, return and
    hold in the hover). Positions of a ticker never overlap, so a date holds at most one
    entry and one exit."""
    entries = trades.select(
        pl.col("entry_date").alias("trade_date"), pl.col("side").alias("bt_entry_side"),
        pl.col("entry_price").alias("bt_entry_price"),
        pl.format("{} in {}, {}", "side", pl.col("entry_state_label").fill_null("?"),
                  "position_id").alias("bt_entry_text"))
    exits = trades.select(
        pl.col("exit_date").alias("trade_date"), pl.col("side").alias("bt_exit_side"),
        pl.col("exit_price").alias("bt_exit_price"),
        pl.format("{}, net {}, {} bars", "exit_reason", _pct(pl.col("net_return")),
                  "hold_bars_realized").alias("bt_exit_text"))
    dated = frame.with_columns(pl.col("trade_date").cast(pl.Date))
    for part in (entries, exits):
        dated = dated.join(part.with_columns(pl.col("trade_date").cast(pl.Date)),
                           on="trade_date", how="left", maintain_order="left")
    specs = []
    for side, color in (("LONG", LONG_COLOR), ("SHORT", SHORT_COLOR)):
        name = side.lower()
        specs += [
            Markers(f"{name} entry", pl.col("bt_entry_side") == side, "bt_entry_price",
                    "triangle-up" if side == "LONG" else "triangle-down", color, size=12,
                    text="bt_entry_text"),
            Markers(f"{name} exit", pl.col("bt_exit_side") == side, "bt_exit_price",
                    "x", color, size=11, text="bt_exit_text"),
        ]
    return dated, specs


def equity_figure(curve: pl.DataFrame, capital_base: float) -> go.Figure:
    """Equity (top, the capital base dotted) and drawdown in % (bottom, filled to 0) on one
    shared date axis."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32],
                        vertical_spacing=0.04)
    dates = curve["trade_date"].to_list()
    fig.add_trace(go.Scatter(
        x=dates, y=curve["equity"].to_list(), mode="lines", name="equity",
        line={"color": GREEN, "width": 1.6},
        customdata=(curve["daily_return"] * 100).to_list(),
        hovertemplate="%{x}: equity %{y:.4f} (day %{customdata:+.2f}%)<extra></extra>"),
        row=1, col=1)
    fig.add_trace(go.Scatter(
        x=dates, y=(curve["drawdown"] * 100).to_list(), mode="lines", name="drawdown",
        fill="tozeroy", line={"color": RED, "width": 1},
        hovertemplate="%{x}: drawdown %{y:.2f}%<extra></extra>"), row=2, col=1)
    fig.add_hline(y=capital_base, line={"color": "#607d8b", "dash": "dot"}, row=1, col=1)
    fig.update_layout(template="plotly_white", height=460, margin=MARGIN, showlegend=False,
                      hovermode="x unified")
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown (%)", row=2, col=1)
    return fig
