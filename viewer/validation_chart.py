"""Drawing of the validation and the policy: the policy-class strips under the chart's state
bands, and the Validation tab's figures (per-state mean with its CI, transition event paths).

Colours are the policy classes' (``registry.POLICY_CLASS_COLORS``) everywhere, so a state's
dot in the CI plot has the colour its strip has in the chart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import polars as pl

from viewer import registry
from viewer.registry import Band
from viewer.validation_data import OUTCOME, SOURCES, STATE_COLUMNS, ValidationRun, policy_codes

BAND_SOURCES: dict[str, str] = {
    "flow_state_code": "flow", "hmm_display": "hmm", "cluster_label": "cluster",
}  # fmt: skip
"""The chart's state band columns and the validated source each one shows."""
MARGIN = {"l": 60, "r": 20, "t": 40, "b": 40}


def policy_strip_title(run: ValidationRun) -> str:
    suffix = ", in-sample" if run.in_sample else ""
    judged = " (filtered state)" if run.source == "hmm" else ""
    return f"{SOURCES[run.source]} policy{judged}{suffix}"


def with_policy_strips(frame: pl.DataFrame, bands: Sequence[Band],
                       runs: Mapping[str, ValidationRun]) -> tuple[pl.DataFrame, list[Band]]:
    """``bands`` with a policy-class strip right under each state band whose source has a
    policy, and ``frame`` with the strips' class-code columns (``policy_class_<source>``).

    The strip paints the class of the state the validation judged (HMM: the filtered state,
    whatever the HMM band's display mode), its legend names the classes it paints.
    """
    out: list[Band] = []
    for band in bands:
        out.append(band)
        source = BAND_SOURCES.get(band.column)
        run = runs.get(source) if source else None
        if run is None or run.policy is None or STATE_COLUMNS[run.source] not in frame.columns:
            continue
        column = f"policy_class_{run.source}"
        frame = frame.with_columns(
            policy_codes(frame[STATE_COLUMNS[run.source]], run.policy).alias(column))
        out.append(Band(policy_strip_title(run), column, colors=registry.POLICY_CLASS_COLORS,
                        labels=registry.POLICY_CLASS_LABELS))
    return frame, out


def _pct(values: pl.Series) -> list[float | None]:
    return (values.cast(pl.Float64) * 100).to_list()


def ci_figure(card: pl.DataFrame) -> go.Figure:
    """Each state's mean ``fwd_ret_10`` (%) with its bootstrap CI as error bars, one trace
    per policy class (its colour and legend entry), states in id order, a zero line."""
    card = card.with_columns(pl.col("class_code").fill_null(registry.CLASS_NONE))
    mean = pl.col(f"{OUTCOME}_mean")
    traces = []
    for (code,), rows in card.sort("class_code").group_by("class_code", maintain_order=True):
        plus = rows.select(pl.col(f"{OUTCOME}_ci_hi") - mean).to_series()
        minus = rows.select(mean - pl.col(f"{OUTCOME}_ci_lo")).to_series()
        traces.append(go.Scatter(
            x=rows["state"].to_list(), y=_pct(rows[f"{OUTCOME}_mean"]), mode="markers",
            name=registry.POLICY_CLASS_LABELS[int(code)],
            marker={"size": 11, "color": registry.POLICY_CLASS_COLORS[int(code)]},
            error_y={"type": "data", "symmetric": False, "array": _pct(plus),
                     "arrayminus": _pct(minus), "thickness": 2, "width": 8},
            customdata=rows.select("n_rows", "edge_p_adjusted").rows(),
            hovertemplate="state %{x}: mean %{y:.3f}% (n=%{customdata[0]}, "
                          "edge p=%{customdata[1]:.3f})<extra>%{fullData.name}</extra>",
        ))
    return go.Figure(data=traces, layout={
        "template": "plotly_white", "height": 380, "margin": MARGIN,
        "xaxis": {"title": {"text": "state"}, "type": "category",
                  "categoryorder": "array", "categoryarray": card.sort("state_id")["state"]},
        "yaxis": {"title": {"text": f"{OUTCOME} mean (%), bootstrap CI"}, "zeroline": False},
        "shapes": [{"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y",
                    "y0": 0, "y1": 0, "line": {"color": "#607d8b", "dash": "dot"}}],
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
    })


def path_figure(paths: pl.DataFrame) -> go.Figure:
    """Mean cumulative return (%) from the event bar by bar offset, one line per transition
    (named with its event count), the event bar and zero marked."""
    traces = [
        go.Scatter(x=rows["rel_bar"].to_list(), y=_pct(rows["cumulative_ret_from_event_mean"]),
                   mode="lines+markers", marker={"size": 4},
                   name=f"{code} ({rows['count_events'][0]:,} events)")
        for (code,), rows in paths.group_by("transition_code", maintain_order=True)
    ]
    return go.Figure(data=traces, layout={
        "template": "plotly_white", "height": 380, "margin": MARGIN,
        "xaxis": {"title": {"text": "bars from the transition (0 = first bar in the new state)"},
                  "zeroline": False},
        "yaxis": {"title": {"text": "mean cumulative return from the event (%)"},
                  "zeroline": False},
        "shapes": [{"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y",
                    "y0": 0, "y1": 0, "line": {"color": "#607d8b", "dash": "dot"}},
                   {"type": "line", "xref": "x", "x0": 0, "x1": 0, "yref": "y domain",
                    "y0": 0, "y1": 1, "line": {"color": "#607d8b", "dash": "dash"}}],
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
    })
