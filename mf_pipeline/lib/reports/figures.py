"""Plotly pictures of the grid, walk-forward grid, compare, calibration and decision reports.

Pure builders: polars frames (or the dicts read from a report folder) in, a plotly Figure out.
No file access here, so every picture can be checked on a small hand-made table; the page
functions in :mod:`mf_pipeline.lib.reports.pages` read the folders and call these.
"""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

import plotly.graph_objects as go
import polars as pl
from plotly.colors import qualitative
from plotly.subplots import make_subplots

SCORE = "robustness_score_v2"
HEATMAP_DIMS = ("hold_bars", "fee_bps_per_side", "slippage_bps_per_side", "signal_mode",
                "exit_mode", "state_subset_key", "include_watch")
"""Grid dimensions a robustness heatmap may be drawn over, in the order the default picks."""
WINNER_METRICS = ("expectancy", "profit_factor", "ret_cv", "max_drawdown", "robustness_v2")
_TEMPLATE = "plotly_white"
_CURVE_KEYS = ["source_type", "combo_id"]


def _finite(value: Any) -> float | None:
    """A float for plotting, or None for null/NaN/inf (plotly cannot draw inf)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _value_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return "+inf" if value == math.inf else f"{value:.4g}"
    return str(value)


def dim_label(dim: str, value: Any) -> str:
    """Axis text of a dimension value; a null state subset means "all states"."""
    if value is None:
        return "all" if dim == "state_subset_key" else "null"
    if isinstance(value, float):  # 1000000.0 -> "1,000,000", 2.5 -> "2.5"
        return f"{value:,.0f}" if value.is_integer() else f"{value:g}"
    return str(value)


# --- grid: equity and drawdown -------------------------------------------------------------


def curve_combos(metrics: pl.DataFrame, top_n: int = 5) -> pl.DataFrame:
    """The ``top_n`` combos by robustness_score_v2 and, for contrast, the worst scored one.

    Nulls rank last among the best and are never the worst; ties go to the lower
    combo_index (then source, combo_id), so the choice does not depend on row order. Adds
    ``role`` ("top 1".. or "worst"). The worst is left out when it is already in the top.
    """
    keys = ["combo_index", "source_type", "combo_id"]
    top = (metrics.sort([SCORE, *keys], descending=[True, False, False, False], nulls_last=True)
           .head(top_n).with_columns(role=pl.format("top {}", pl.int_range(1, pl.len() + 1))))
    worst = (metrics.filter(pl.col(SCORE).is_not_null()).sort([SCORE, *keys]).head(1)
             .join(top.select(_CURVE_KEYS), on=_CURVE_KEYS, how="anti")
             .with_columns(role=pl.lit("worst")))
    return pl.concat([top, worst])


def equity_curves(period_returns: pl.DataFrame) -> pl.DataFrame:
    """Exit-date equity and drawdown per combo from ``grid_period_returns``.

    equity = cumulative sum of period_return in trade_date order (a missing or NaN return
    counts as 0); drawdown = equity − running peak, where the peak starts at the level 0
    before the first period, so a loss on the first exit day is already a drawdown (≤ 0).
    """
    ret = pl.col("period_return").fill_nan(0.0).fill_null(0.0)
    return (
        period_returns.sort([*_CURVE_KEYS, "trade_date"])
        .with_columns(equity=ret.cum_sum().over(_CURVE_KEYS))
        .with_columns(drawdown=pl.col("equity") - pl.max_horizontal(
            pl.col("equity").cum_max().over(_CURVE_KEYS), pl.lit(0.0)))
    )


def _combo_name(row: dict[str, Any]) -> str:
    score = _finite(row.get(SCORE))
    score_text = "n/a" if score is None else f"{score:.1f}"
    return (f"{row['role']}: {row['source_type']} #{row['combo_index']} hold "
            f"{row.get('hold_bars')}, cost {dim_label('', row.get('total_cost_bps'))} bps "
            f"(v2 {score_text})")


def equity_drawdown_figure(curves: pl.DataFrame, combos: pl.DataFrame) -> go.Figure:
    """Equity (top) and drawdown (bottom) lines of ``combos`` (from :func:`curve_combos`),
    drawn from :func:`equity_curves`; the worst combo is dashed grey."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35],
                        vertical_spacing=0.06,
                        subplot_titles=("Equity: cumulative sum of per-period returns "
                                        "(exit dates)", "Drawdown: equity − running peak"))
    by_combo = curves.partition_by(_CURVE_KEYS, as_dict=True)
    palette = qualitative.Plotly
    for i, row in enumerate(combos.iter_rows(named=True)):
        curve = by_combo.get((row["source_type"], row["combo_id"]))
        if curve is None:
            continue
        name = _combo_name(row)
        line = ({"dash": "dash", "color": "grey"} if row["role"] == "worst"
                else {"color": palette[i % len(palette)]})  # same colour in both panels
        x = curve["trade_date"].to_list()
        for r, col in ((1, "equity"), (2, "drawdown")):
            fig.add_trace(go.Scatter(x=x, y=curve[col].to_list(), name=name, mode="lines",
                                     line=line, legendgroup=row["combo_id"],
                                     showlegend=r == 1,
                                     hovertemplate=f"{row['combo_id']}<br>%{{x}}: %{{y:.4f}}"),
                          row=r, col=1)
    fig.update_layout(template=_TEMPLATE, height=620, legend={"orientation": "h", "y": -0.12})
    return fig


# --- grid: robustness heatmap and cost fragility -------------------------------------------


def default_heatmap_dims(metrics: pl.DataFrame) -> tuple[str, str] | None:
    """The first two of :data:`HEATMAP_DIMS` with more than one distinct value (null counts
    as a value), or None when fewer than two dimensions vary."""
    varying = [d for d in HEATMAP_DIMS if d in metrics.columns and metrics[d].n_unique() > 1]
    return (varying[0], varying[1]) if len(varying) >= 2 else None


def heatmap_matrix(frame: pl.DataFrame, x_dim: str, y_dim: str,
                   value: str = SCORE) -> tuple[list[Any], list[Any], list[list[float | None]]]:
    """Mean of ``value`` per (y, x) cell, averaging over every other column.

    Returns the sorted distinct x values, the sorted distinct y values (nulls first) and
    z[i][j] = mean at (ys[i], xs[j]); None where the cell has no row or only nulls.
    """
    xs = frame[x_dim].unique().sort().to_list()
    ys = frame[y_dim].unique().sort().to_list()
    means = frame.group_by([y_dim, x_dim]).agg(pl.col(value).mean())
    cell = {(r[y_dim], r[x_dim]): r[value] for r in means.iter_rows(named=True)}
    return xs, ys, [[_finite(cell.get((y, x))) for x in xs] for y in ys]


def heatmap_figure(frame: pl.DataFrame, x_dim: str, y_dim: str, title: str,
                   value: str = SCORE, zrange: tuple[float, float] = (0.0, 100.0)) -> go.Figure:
    """A categorical heatmap of :func:`heatmap_matrix` with the cell means written in."""
    xs, ys, z = heatmap_matrix(frame, x_dim, y_dim, value)
    fig = go.Figure(go.Heatmap(
        z=z, x=[dim_label(x_dim, v) for v in xs], y=[dim_label(y_dim, v) for v in ys],
        zmin=zrange[0], zmax=zrange[1], colorscale="Viridis", texttemplate="%{z:.3g}",
        colorbar={"title": {"text": value}},
        hovertemplate=f"{x_dim}=%{{x}}<br>{y_dim}=%{{y}}<br>mean {value}=%{{z:.4g}}"
                      "<extra></extra>"))
    fig.update_layout(template=_TEMPLATE, title=title, height=420,
                      xaxis={"title": {"text": x_dim}, "type": "category"},
                      yaxis={"title": {"text": y_dim}, "type": "category"})
    return fig


def robustness_heatmaps(metrics: pl.DataFrame,
                        dims: tuple[str, str] | None = None) -> list[go.Figure]:
    """One heatmap of mean robustness_score_v2 over ``dims`` (x, y) per source; ``dims`` None
    picks :func:`default_heatmap_dims`. Empty list when no two dimensions vary."""
    dims = dims or default_heatmap_dims(metrics)
    if dims is None or metrics.height == 0:
        return []
    missing = [d for d in dims if d not in metrics.columns]
    if missing:
        raise ValueError(f"heatmap dimension(s) {missing} not in the metrics table; "
                         f"choose from {list(HEATMAP_DIMS)}")
    x_dim, y_dim = dims
    return [heatmap_figure(part, x_dim, y_dim,
                           f"{source}: mean robustness_score_v2 by {y_dim} × {x_dim} "
                           "(averaged over the other dimensions)")
            for (source,), part in sorted(metrics.partition_by("source_type", as_dict=True)
                                          .items())]


def cost_means(metrics: pl.DataFrame) -> pl.DataFrame:
    """Mean expectancy per (source_type, hold_bars, total_cost_bps), sorted by those keys."""
    keys = ["source_type", "hold_bars", "total_cost_bps"]
    return (metrics.group_by(keys).agg(expectancy_mean=pl.col("expectancy").mean())
            .sort(keys))


def cost_fragility_figures(metrics: pl.DataFrame) -> list[go.Figure]:
    """Per source: mean expectancy against total cost (fee + slippage per side, bps), one
    line per hold_bars — a steep fall means the edge does not survive costs."""
    figs = []
    for (source,), part in sorted(cost_means(metrics).partition_by("source_type",
                                                                  as_dict=True).items()):
        fig = go.Figure()
        for (hold,), line in sorted(part.partition_by("hold_bars", as_dict=True).items()):
            fig.add_trace(go.Scatter(x=line["total_cost_bps"].to_list(),
                                     y=line["expectancy_mean"].to_list(),
                                     mode="lines+markers", name=f"hold {hold}"))
        fig.update_layout(template=_TEMPLATE, height=380,
                          title=f"{source}: mean expectancy vs total cost per side",
                          xaxis={"title": {"text": "total_cost_bps (fee + slippage)"}},
                          yaxis={"title": {"text": "mean expectancy"}})
        figs.append(fig)
    return figs


# --- walk-forward grid ---------------------------------------------------------------------


def winner_map(winners: pl.DataFrame) -> go.Figure:
    """Which source won each metric in each split (``wf_grid_winner_stability.csv``): one
    marker per (train_end, metric), one colour per winning source."""
    frame = winners.with_columns(pl.col("train_end").cast(pl.String),
                                 pl.col("winner_source_type").fill_null("none"))
    fig = go.Figure()
    for (source,), part in sorted(frame.partition_by("winner_source_type",
                                                     as_dict=True).items()):
        fig.add_trace(go.Scatter(
            x=part["train_end"].to_list(), y=part["metric"].to_list(), mode="markers+text",
            name=source, text=[_value_text(v) for v in part["winner_value"].to_list()],
            textposition="middle right", marker={"size": 16, "symbol": "square"},
            hovertemplate=f"{source}<br>%{{x}} %{{y}}: %{{text}}<extra></extra>"))
    metrics = [m for m in WINNER_METRICS if m in set(frame["metric"].to_list())]
    metrics += sorted(set(frame["metric"].to_list()) - set(metrics))
    fig.update_layout(template=_TEMPLATE, height=380, title="Winner source per split and metric",
                      xaxis={"title": {"text": "train_end"}, "type": "category",
                             "categoryorder": "category ascending"},
                      yaxis={"type": "category", "categoryorder": "array",
                             "categoryarray": metrics})
    return fig


def split_lines(by_split: pl.DataFrame, winners: pl.DataFrame | None = None) -> go.Figure:
    """Per split: mean robustness_score_v2 (and the best one, from the winner table) on top;
    DSR and PBO of the split's best configuration below, with the 0.95 and 0.5 marks."""
    frame = by_split.with_columns(pl.col("train_end").cast(pl.String)).sort("train_end")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Robustness score v2 per split",
                                        "Overfitting of the split's best configuration"))
    x = frame["train_end"].to_list()
    if "robustness_score_v2_mean" in frame.columns:
        fig.add_trace(go.Scatter(x=x, y=[_finite(v) for v in frame["robustness_score_v2_mean"]],
                                 mode="lines+markers", name="mean robustness v2"), row=1, col=1)
    if winners is not None and winners.height:
        best = (winners.filter(pl.col("metric") == "robustness_v2")
                .with_columns(pl.col("train_end").cast(pl.String)).sort("train_end"))
        fig.add_trace(go.Scatter(x=best["train_end"].to_list(),
                                 y=[_finite(v) for v in best["winner_value"]],
                                 mode="lines+markers", name="best robustness v2"), row=1, col=1)
    for col, mark in (("dsr", 0.95), ("pbo", 0.5)):
        if col in frame.columns:
            fig.add_trace(go.Scatter(x=x, y=[_finite(v) for v in frame[col]],
                                     mode="lines+markers", name=col.upper()), row=2, col=1)
            fig.add_hline(y=mark, line={"dash": "dot", "color": "grey"}, row=2, col=1,
                          annotation_text=f"{col.upper()} {mark}")
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 1.05], row=2, col=1)
    fig.update_layout(template=_TEMPLATE, height=560)
    return fig


# --- compare, calibration, decision reports ------------------------------------------------


COMPARE_METRICS = (("best_expectancy", "best expectancy"),
                   ("best_profit_factor", "best profit factor"),
                   ("best_robustness_score_v2", "best robustness v2"),
                   ("best_dsr", "DSR of the best"))


def compare_bars(table: pl.DataFrame) -> go.Figure:
    """One panel per compared metric (those present in the table), one bar per grid in table
    order, named by its folder (grid-<id>_<scope>_<tag>); a +inf profit factor has no bar
    height and is written "+inf"."""
    present = [(c, t) for c, t in COMPARE_METRICS if c in table.columns]
    fig = make_subplots(rows=1, cols=max(len(present), 1),
                        subplot_titles=[t for _, t in present] or ["no metric"])
    labels = [PurePath(str(d)).name if d else str(g) for d, g in
              zip(table["grid_run_dir"], table["grid_run_id"], strict=True)]
    for i, (col, title) in enumerate(present, start=1):
        values = table[col].to_list()
        fig.add_trace(go.Bar(x=labels, y=[_finite(v) for v in values], name=title,
                             text=[_value_text(v) for v in values], showlegend=False),
                      row=1, col=i)
    fig.update_xaxes(type="category")
    fig.update_layout(template=_TEMPLATE, height=420)
    return fig


def eligibility_heatmap(grid: pl.DataFrame) -> go.Figure | None:
    """Calibration sweep: eligibility_rate over min_price × min_dollar_vol20, on the slice
    with the vol filter off (max_vol_pct_input null; the loosest cap if none is off) and the
    smallest min_history_bars. None for an empty sweep or one without any eligibility (a
    window without rows: the CSV's all-empty column reads back as text)."""
    if grid.height == 0 or not grid.schema.get("eligibility_rate", pl.Utf8).is_numeric():
        return None
    vol = grid["max_vol_pct_input"]
    vol_slice = pl.col("max_vol_pct_input").is_null() if vol.null_count() else (
        pl.col("max_vol_pct_input") == vol.max())
    history = grid["min_history_bars"].min()
    part = grid.filter(vol_slice, pl.col("min_history_bars") == history)
    vol_text = "off" if vol.null_count() else f"≤ {vol.max():g}"
    return heatmap_figure(part, "min_dollar_vol20", "min_price",
                          f"Eligibility rate (vol cap {vol_text}, min_history_bars {history})",
                          value="eligibility_rate", zrange=(0.0, 1.0))


_WATERFALL_BARS = (("candidates", "candidate_signals_total", None),
                   ("eligible", "eligible_signals_total", "eligible_rate"),
                   ("suppressed", "suppressed_signals_total", "suppressed_rate"),
                   ("fails price", "suppressed_by_price_count", "suppressed_by_price_share"),
                   ("fails liquidity", "suppressed_by_liquidity_count",
                    "suppressed_by_liquidity_share"),
                   ("fails vol", "suppressed_by_vol_count", "suppressed_by_vol_share"),
                   ("fails warmup", "suppressed_by_warmup_count", "suppressed_by_warmup_share"))


def waterfall_bars(waterfall: dict[str, Any]) -> go.Figure:
    """Candidate signals, how many pass the current profile, and why the others fail (the
    four reasons overlap: a signal can fail several filters)."""
    labels = [label for label, _, _ in _WATERFALL_BARS]
    values = [waterfall.get(key) for _, key, _ in _WATERFALL_BARS]
    shares = [None if share is None else waterfall.get(share) for _, _, share in _WATERFALL_BARS]
    text = [_value_text(v) + ("" if s is None else f" ({s:.1%})")
            for v, s in zip(values, shares, strict=True)]
    colors = ["#4c78a8", "#54a24b", "#e45756"] + ["#f58518"] * 4
    fig = go.Figure(go.Bar(x=labels, y=values, text=text, marker={"color": colors}))
    fig.update_layout(template=_TEMPLATE, height=400,
                      title="Signals under the current execution profile (reasons overlap)",
                      yaxis={"title": {"text": "signals"}})
    return fig


def score_bars(table: pl.DataFrame, score_col: str, verdict_col: str | None = None,
               label_col: str = "run_label", title: str = "") -> go.Figure:
    """Horizontal bars of ``score_col`` per run label in table order (first on top), one
    colour per ``verdict_col`` value."""
    order = [str(v) for v in table[label_col].to_list()]
    frame = table.with_columns(pl.col(label_col).cast(pl.String),
                               _verdict=pl.col(verdict_col).cast(pl.String).fill_null("n/a")
                               if verdict_col and verdict_col in table.columns
                               else pl.lit(score_col))
    fig = go.Figure()
    for (verdict,), part in sorted(frame.partition_by("_verdict", as_dict=True).items()):
        scores = part[score_col].to_list()
        fig.add_trace(go.Bar(y=part[label_col].to_list(), x=[_finite(v) for v in scores],
                             orientation="h", name=verdict,
                             text=[_value_text(v) for v in scores]))
    fig.update_layout(template=_TEMPLATE, title=title, height=140 + 45 * len(order),
                      showlegend=True, legend={"title": {"text": verdict_col or ""}},
                      xaxis={"title": {"text": score_col}, "range": [0, 100]},
                      yaxis={"type": "category", "categoryorder": "array",
                             "categoryarray": order[::-1]}, barmode="overlay")
    return fig

