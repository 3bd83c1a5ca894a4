"""The plotly figure (spec §12.8): price with bands behind it, volume, the TMF + TTI panel.

Bands are drawn as one-row heatmaps over run segments rather than one rectangle shape per
run: a shape per run costs ~0.6 ms in plotly's Python layer and a DOM node in the browser,
so a 10,000-bar HMM band (thousands of runs) would take seconds; a heatmap of the segments
is one trace whatever the number of runs. Each band gets its own horizontal lane of the
price panel so several bands never blend into each other.
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
ROW_GAP = 0.03
TTI_LEVEL_SIGNAL = 0.20  # display levels of spec §12.6 (x scale)
TTI_LEVEL_ENTRY = 0.30
TMF_COLOR, TTI_COLOR = "#1565c0", "#ef6c00"
BAND_OPACITY = 0.30
# axis ids: the price row's base axis "y" carries the bands (hidden, 0..1), the prices sit on
# the overlaying "y4" so they are drawn above the bands; "y5" is the overlaid volume.
AXES = {"bands": "y", "price": "y4", "volume": "y2", "tmf": "y3", "volume_overlay": "y5"}
X_OF = {"price": "x", "volume": "x2", "tmf": "x3"}


@dataclass(frozen=True)
class ChartOptions:
    show_volume: bool = True
    volume_mode: str = "separate"  # or "overlay" (secondary axis of the price panel)
    show_tmf: bool = True
    scale_pct: bool = False
    height: int = 850
    annotation: str | None = None
    revision: str = ""  # plotly uirevision: keeps the zoom while the same ticker re-renders


def row_domains(rows: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Vertical domains, top to bottom, with the §12.8 relative heights of the rows shown."""
    total = sum(ROW_HEIGHTS[r] for r in rows)
    usable = 1.0 - ROW_GAP * (len(rows) - 1)
    out, top = {}, 1.0
    for row in rows:
        height = usable * ROW_HEIGHTS[row] / total
        out[row] = (max(0.0, top - height), top)
        top -= height + ROW_GAP
    return out


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


def band_trace(frame: pl.DataFrame, band: Band, lane: tuple[float, float]) -> go.Heatmap | None:
    """One heatmap row spanning the band's segments (None when nothing has a colour)."""
    if band.column not in frame.columns or frame.is_empty():
        return None
    segs = segment_runs(frame["trade_date"], frame[band.column])
    segs = segs.with_columns(band_colors(segs["value"], band).alias("color"))
    used = segs["color"].drop_nulls().unique().sort()
    if used.is_empty():
        return None
    code = pl.Series(used.to_list()).to_frame("color").with_row_index("code")
    segs = segs.join(code, on="color", how="left", maintain_order="left")
    labels = band.labels or {}
    text = segs["value"].cast(pl.String).fill_null("NA")
    if labels:
        text = segs["value"].replace_strict(labels, default=None, return_dtype=pl.String)
        text = text.fill_null(segs["value"].cast(pl.String)).fill_null("NA")
    m = used.len()
    scale = [[stop, color] for i, color in enumerate(used.to_list())
             for stop in (i / m, (i + 1) / m)]
    edges = pl.concat([segs["start"], segs["end"].tail(1)])
    return go.Heatmap(
        x=edges.to_numpy(),
        y=list(lane),
        z=[segs["code"].cast(pl.Float64).to_numpy()],
        text=[text.to_list()],
        zmin=-0.5,
        zmax=m - 0.5,
        colorscale=scale,
        showscale=False,
        opacity=BAND_OPACITY,
        name=band.title,
        hovertemplate=f"{band.title}: %{{text}}<extra></extra>",
        xaxis="x",
        yaxis=AXES["bands"],
    )


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
    domains = row_domains(rows)
    scale = 100.0 if options.scale_pct else 1.0
    traces: list[Any] = []

    active = [b for b in bands if b.column in frame.columns]
    lane = 1.0 / max(1, len(active))
    annotations: list[dict[str, Any]] = []
    for i, band in enumerate(active):
        top = 1.0 - i * lane
        trace = band_trace(frame, band, (top - lane, top))
        if trace is not None:
            traces.append(trace)
            annotations.append({"text": band.title, "xref": "paper", "x": 0.002, "xanchor": "left",
                                "yref": AXES["bands"], "y": top - 0.01, "yanchor": "top",
                                "showarrow": False, "font": {"size": 10, "color": "#455a64"}})

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

    if options.annotation:
        annotations.append({"text": options.annotation, "xref": "paper", "yref": "paper",
                            "x": 1.0, "y": 1.0, "xanchor": "right", "yanchor": "bottom",
                            "showarrow": False, "font": {"size": 12}})
    bottom = rows[-1]
    layout: dict[str, Any] = {
        "template": "plotly_white",
        "height": options.height,
        "hovermode": "x unified",
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        "margin": {"l": 60, "r": 60, "t": 60, "b": 40},
        "uirevision": options.revision,
        "shapes": shapes,
        "annotations": annotations,
        "xaxis": {"domain": [0, 1], "anchor": "y", "rangeslider": {"visible": False},
                  "showticklabels": bottom == "price"},
        "yaxis": {"domain": list(domains["price"]), "range": [0, 1], "visible": False,
                  "fixedrange": True, "anchor": "x"},
        "yaxis4": {"domain": list(domains["price"]), "overlaying": "y", "anchor": "x",
                   "side": "left", "title": {"text": "Price"}},
    }
    if options.show_volume and has_volume and options.volume_mode != "separate":
        top_volume = float(bars["volume"].max() or 1.0)
        layout["yaxis5"] = {"overlaying": "y", "anchor": "x", "side": "right",
                            "showgrid": False, "range": [0, top_volume * 4],
                            "title": {"text": "Volume"}}
    if "volume" in rows:
        layout["xaxis2"] = {"matches": "x", "anchor": "y2", "showticklabels": bottom == "volume"}
        layout["yaxis2"] = {"domain": list(domains["volume"]), "anchor": "x2",
                            "title": {"text": "Volume"}}
    if "tmf" in rows:
        layout["xaxis3"] = {"matches": "x", "anchor": "y3", "showticklabels": True}
        layout["yaxis3"] = {"domain": list(domains["tmf"]), "anchor": "x3",
                            "title": {"text": "TMF / TTI" + (" (%)" if options.scale_pct else "")},
                            "zeroline": False}
    return go.Figure(data=traces, layout=layout)
