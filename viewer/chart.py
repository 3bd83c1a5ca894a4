"""The plotly figure (spec §12.8): candles, volume, the TMF + TTI panel, and under them one
thin strip per state band, each with its own colour legend, all on one date axis.

The bands are rows of their own below the panels rather than translucent lanes over the
price: the candles stay readable, and a strip's colours are opaque, so a legend swatch is
exactly the colour on the strip. A strip is one one-row heatmap over its run segments rather
than one rectangle shape per run: a shape per run costs ~0.6 ms in plotly's Python layer and
a DOM node in the browser, so a 10,000-bar HMM band (thousands of runs) would take seconds;
a heatmap of the segments is one trace whatever the number of runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import polars as pl

from viewer.core import segment_runs
from viewer.registry import Band, Markers

ROW_HEIGHTS: dict[str, float] = {"price": 0.62, "volume": 0.18, "tmf": 0.20}
PANEL_GAP_PX = 22
BAND_PX = 18  # height of a band strip
BAND_LEGEND_PX = 26  # above each strip: the band's title and colour legend
MARGIN: dict[str, int] = {"l": 60, "r": 60, "t": 60, "b": 40}
TTI_LEVEL_SIGNAL = 0.20  # display levels of spec §12.6 (x scale)
TTI_LEVEL_ENTRY = 0.30
TMF_COLOR, TTI_COLOR = "#1565c0", "#ef6c00"
AXES = {"price": "y", "volume": "y2", "tmf": "y3", "volume_overlay": "y4"}
X_OF = {"price": "x", "volume": "x2", "tmf": "x3"}
FIRST_BAND_AXIS = 5  # band i sits on xaxis/yaxis number 5 + i, its legend is legend 2 + i


@dataclass(frozen=True)
class ChartOptions:
    show_volume: bool = True
    volume_mode: str = "separate"  # or "overlay" (secondary axis of the price panel)
    show_tmf: bool = True
    scale_pct: bool = False
    height: int = 850  # of the panels; each band strip adds BAND_PX + BAND_LEGEND_PX
    annotation: str | None = None
    revision: str = ""  # plotly uirevision: keeps the zoom while the same ticker re-renders


@dataclass(frozen=True)
class Grid:
    """Where the rows go: the figure's height (px) and each row's vertical paper domain."""

    height: int
    domains: dict[str, tuple[float, float]]


def band_row(i: int) -> str:
    return f"band{i}"


def grid(rows: Sequence[str], bands: int, height: int) -> Grid:
    """Panels ``rows`` (top to bottom, §12.8 relative heights) in ``height`` px, then ``bands``
    strips of fixed pixel height under them, each below room for its legend.

    The panels keep their size whatever the number of bands: the figure grows instead.
    """
    panels_px = height - MARGIN["t"] - MARGIN["b"]
    bands_px = bands * (BAND_LEGEND_PX + BAND_PX)
    plot_px = panels_px + bands_px
    usable = panels_px - PANEL_GAP_PX * (len(rows) - 1)
    total = sum(ROW_HEIGHTS[r] for r in rows)
    spans: dict[str, tuple[float, float]] = {}
    top = float(plot_px)
    for row in rows:
        size = usable * ROW_HEIGHTS[row] / total
        spans[row] = (top - size, top)
        top -= size + PANEL_GAP_PX
    top += PANEL_GAP_PX
    for i in range(bands):
        top -= BAND_LEGEND_PX
        spans[band_row(i)] = (top - BAND_PX, top)
        top -= BAND_PX
    domains = {row: (round(max(0.0, lo / plot_px), 6), round(hi / plot_px, 6))
               for row, (lo, hi) in spans.items()}
    return Grid(height + bands_px, domains)


def band_colors(values: pl.Series, band: Band) -> pl.Series:
    """The colour of every value (null when the band has none for it)."""
    if band.colors:
        keys = list(band.colors)
        if isinstance(keys[0], str):
            values = values.cast(pl.String).str.to_uppercase()
        return values.replace_strict(band.colors, default=None, return_dtype=pl.String)
    if not band.palette:
        return pl.Series(values.name, [None] * values.len(), dtype=pl.String)
    palette = pl.Series(list(band.palette), dtype=pl.String)
    if values.dtype.is_integer():
        index = values.cast(pl.Int64) % len(band.palette)
    else:
        index = (values.cast(pl.String).rank("dense") - 1).cast(pl.Int64) % len(band.palette)
    return palette.gather(index)


def band_labels(values: pl.Series, band: Band) -> pl.Series:
    """The name of every value: ``band.labels[value]``, else the value itself, ``NA`` for null."""
    text = values.cast(pl.String)
    if band.labels:
        named = values.replace_strict(band.labels, default=None, return_dtype=pl.String)
        text = named.fill_null(text)
    return text.fill_null("NA")


def band_segments(frame: pl.DataFrame, band: Band) -> pl.DataFrame:
    """The band's runs in ``frame``: ``start, end, last, value, bars, color, label``."""
    segs = segment_runs(frame["trade_date"], frame[band.column])
    return segs.with_columns(
        band_colors(segs["value"], band).alias("color"),
        band_labels(segs["value"], band).alias("label"),
    )


def band_legend(segments: pl.DataFrame) -> list[tuple[str, str]]:
    """``(label, colour)`` of every state painted on the strip, in state order: the same
    colours as the strip's, because both come from the same segments."""
    painted = segments.filter(pl.col("color").is_not_null() & pl.col("value").is_not_null())
    rows = painted.unique("value", keep="first").sort("value")
    return list(zip(rows["label"].to_list(), rows["color"].to_list(), strict=True))


def band_trace(segments: pl.DataFrame, band: Band, axis: int) -> go.Heatmap | None:
    """One heatmap row spanning the band's segments on axes ``x<axis>``/``y<axis>`` (None when
    nothing has a colour); runs without a colour stay blank."""
    used = segments["color"].drop_nulls().unique().sort()
    if used.is_empty():
        return None
    code = used.to_frame("color").with_row_index("code")
    segs = segments.join(code, on="color", how="left", maintain_order="left")
    m = used.len()
    scale = [[stop, color] for i, color in enumerate(used.to_list())
             for stop in (i / m, (i + 1) / m)]
    edges = pl.concat([segs["start"], segs["end"].tail(1)])
    return go.Heatmap(
        x=edges.to_numpy(),
        y=[0, 1],
        z=[segs["code"].cast(pl.Float64).to_numpy()],
        text=[segs["label"].to_list()],
        zmin=-0.5,
        zmax=m - 0.5,
        colorscale=scale,
        showscale=False,
        name=band.title,
        hovertemplate=f"{band.title}: %{{text}}<extra></extra>",
        xaxis=f"x{axis}",
        yaxis=f"y{axis}",
    )


def legend_traces(legend: list[tuple[str, str]], axis: int, name: str) -> list[go.Scatter]:
    """A square swatch per state in the plotly legend ``name`` (no data: legend entries only)."""
    return [
        go.Scatter(x=[None], y=[None], mode="markers", name=label, legend=name,
                   showlegend=True, hoverinfo="skip",
                   marker={"symbol": "square", "size": 12, "color": color},
                   xaxis=f"x{axis}", yaxis=f"y{axis}")
        for label, color in legend
    ]


def _axis(panel: str) -> dict[str, str]:
    return {"xaxis": X_OF[panel], "yaxis": AXES["price" if panel == "price" else "tmf"]}


def marker_trace(frame: pl.DataFrame, markers: Markers, scale: float) -> go.Scatter | None:
    """Points where ``markers.when`` holds (None when a needed column is missing or none)."""
    needed = {*markers.when.meta.root_names(), markers.anchor}
    if markers.text:
        needed.add(markers.text)
    if not needed <= set(frame.columns):
        return None
    rows = frame.filter(markers.when.fill_null(False))
    if rows.is_empty():
        return None
    factor = markers.factor * (scale if markers.panel == "tmf" else 1.0)
    extra: dict[str, Any] = {}
    if markers.text:
        extra = {"text": rows[markers.text].cast(pl.String).fill_null("").to_list(),
                 "hovertemplate": f"{markers.name}: %{{text}}<extra></extra>"}
    return go.Scatter(
        x=rows["trade_date"].to_numpy(),
        y=(rows[markers.anchor].cast(pl.Float64) * factor).to_numpy(),
        mode="markers",
        name=markers.name,
        marker={"symbol": markers.symbol, "color": markers.color, "size": markers.size},
        **extra,
        **_axis(markers.panel),
    )


def _band_layout(band: Band, axis: int, legend: str, domain: tuple[float, float],
                 bottom: bool) -> dict[str, Any]:
    """The axes of a band strip (dates shared with the panels) and its legend above it."""
    return {
        f"xaxis{axis}": {"matches": "x", "anchor": f"y{axis}", "showticklabels": bottom,
                         "showgrid": False},
        f"yaxis{axis}": {"domain": list(domain), "anchor": f"x{axis}", "range": [0, 1],
                         "visible": False, "fixedrange": True},
        legend: {"title": {"text": f"<b>{band.title}</b>", "side": "left"},
                 "orientation": "h", "x": 0, "xanchor": "left", "y": domain[1],
                 "yanchor": "bottom", "yref": "paper", "font": {"size": 11},
                 "bgcolor": "rgba(0,0,0,0)", "itemclick": False, "itemdoubleclick": False},
    }


def build_figure(
    frame: pl.DataFrame,
    bars: pl.DataFrame,
    bands: Sequence[Band],
    markers: Sequence[Markers],
    options: ChartOptions,
) -> go.Figure:
    """The chart of the visible window.

    ``frame``: the window's rows at full resolution (bands, markers, TMF/TTI lines);
    ``bars``: the same window's OHLCV, possibly bucketed (candles and volume bars).
    """
    has_volume = "volume" in bars.columns and bars["volume"].drop_nulls().len() > 0
    has_tmf = options.show_tmf and "tmf_21" in frame.columns
    rows = ["price"]
    if options.show_volume and has_volume and options.volume_mode == "separate":
        rows.append("volume")
    if has_tmf:
        rows.append("tmf")
    scale = 100.0 if options.scale_pct else 1.0
    traces: list[Any] = []

    strips: list[tuple[Band, pl.DataFrame]] = []
    if not frame.is_empty():
        for band in bands:
            if band.column in frame.columns:
                segments = band_segments(frame, band)
                if segments["color"].drop_nulls().len():
                    strips.append((band, segments))
    layout_grid = grid(rows, len(strips), options.height)
    bottom = band_row(len(strips) - 1) if strips else rows[-1]

    dates = bars["trade_date"].to_numpy()
    traces.append(go.Candlestick(
        x=dates, open=bars["open"].to_numpy(), high=bars["high"].to_numpy(),
        low=bars["low"].to_numpy(), close=bars["close"].to_numpy(), name="Price",
        increasing={"line": {"color": "#2e7d32"}}, decreasing={"line": {"color": "#c62828"}},
        xaxis="x", yaxis=AXES["price"],
    ))
    if options.show_volume and has_volume:
        overlay = options.volume_mode != "separate"
        traces.append(go.Bar(
            x=dates, y=bars["volume"].to_numpy(), name="Volume", marker_color="#90a4ae",
            opacity=0.5 if overlay else 0.9, xaxis="x" if overlay else "x2",
            yaxis=AXES["volume_overlay"] if overlay else AXES["volume"],
        ))
    shapes: list[dict[str, Any]] = []
    if has_tmf:
        tdates = frame["trade_date"].to_numpy()
        for column, label, color in (("tmf_21", "TMF", TMF_COLOR),
                                     ("tti_proxy_v1_21", "TTI proxy", TTI_COLOR)):
            if column in frame.columns:
                traces.append(go.Scatter(
                    x=tdates, y=(frame[column].cast(pl.Float64) * scale).to_numpy(),
                    mode="lines", name=label, line={"color": color, "width": 1.4},
                    xaxis="x3", yaxis=AXES["tmf"],
                ))
        for level, dash in ((0.0, "dot"), (TTI_LEVEL_SIGNAL, "dot"), (-TTI_LEVEL_SIGNAL, "dot"),
                            (TTI_LEVEL_ENTRY, "dash"), (-TTI_LEVEL_ENTRY, "dash")):
            shapes.append({"type": "line", "xref": "x3 domain", "x0": 0, "x1": 1,
                           "yref": AXES["tmf"], "y0": level * scale, "y1": level * scale,
                           "line": {"color": "#607d8b" if level == 0 else "#b0bec5",
                                    "dash": dash, "width": 1}})
    for spec in markers:
        if spec.panel == "tmf" and not has_tmf:
            continue
        trace = marker_trace(frame, spec, scale)
        if trace is not None:
            traces.append(trace)

    annotations: list[dict[str, Any]] = []
    if options.annotation:
        annotations.append({"text": options.annotation, "xref": "paper", "yref": "paper",
                            "x": 1.0, "y": 1.0, "xanchor": "right", "yanchor": "bottom",
                            "showarrow": False, "font": {"size": 12}})
    domains = layout_grid.domains
    layout: dict[str, Any] = {
        "template": "plotly_white",
        "height": layout_grid.height,
        "hovermode": "x unified",
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        "margin": MARGIN,
        "uirevision": options.revision,
        "shapes": shapes,
        "annotations": annotations,
        "xaxis": {"domain": [0, 1], "anchor": "y", "rangeslider": {"visible": False},
                  "showticklabels": bottom == "price"},
        "yaxis": {"domain": list(domains["price"]), "anchor": "x", "title": {"text": "Price"}},
    }
    if options.show_volume and has_volume and options.volume_mode != "separate":
        top_volume = float(bars["volume"].max() or 1.0)
        layout["yaxis4"] = {"overlaying": "y", "anchor": "x", "side": "right",
                            "showgrid": False, "range": [0, top_volume * 4],
                            "title": {"text": "Volume"}}
    if "volume" in rows:
        layout["xaxis2"] = {"matches": "x", "anchor": "y2", "showticklabels": bottom == "volume"}
        layout["yaxis2"] = {"domain": list(domains["volume"]), "anchor": "x2",
                            "title": {"text": "Volume"}}
    if "tmf" in rows:
        layout["xaxis3"] = {"matches": "x", "anchor": "y3", "showticklabels": bottom == "tmf"}
        layout["yaxis3"] = {"domain": list(domains["tmf"]), "anchor": "x3",
                            "title": {"text": "TMF / TTI" + (" (%)" if options.scale_pct else "")},
                            "zeroline": False}
    for i, (band, segments) in enumerate(strips):
        axis, legend = FIRST_BAND_AXIS + i, f"legend{2 + i}"
        row = band_row(i)
        traces.append(band_trace(segments, band, axis))
        traces += legend_traces(band_legend(segments), axis, legend)
        layout.update(_band_layout(band, axis, legend, domains[row], row == bottom))
    return go.Figure(data=traces, layout=layout)
