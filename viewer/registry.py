"""What the viewer can draw: bands, markers and the registry of optional layers.

A layer declares its columns, how it is drawn (a band strip under the panels, markers on a
panel) and optionally its own loader; the page builds its toggles, availability notes, reads
and traces from this registry. Adding a later layer (cluster policy, execution realism,
candidate signals…) is one ``OptionalLayer`` entry plus, when its file is not at the default
place, one line in :mod:`viewer.sources`. The lake's own layers (names, folders, order) are
``mf_pipeline.lib.registry``'s, not repeated here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from mf_pipeline.lib.settings import Settings

# Colours of spec §12.8.
GREEN, RED, GREY, SLATE, AMBER = "#2e7d32", "#c62828", "#9e9e9e", "#78909c", "#ffb300"
STATE_PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
)  # fmt: skip
FLOW_COLORS: dict[int, str] = {0: GREY, 1: "#a5d6a7", 2: GREEN, 3: "#fb8c00", 4: "#e53935"}
FLOW_LABELS: dict[int, str] = {
    0: "S0_QUIET",
    1: "S1_EARLY_DEMAND",
    2: "S2_PERSISTENT_DEMAND",
    3: "S3_EARLY_SUPPLY",
    4: "S4_PERSISTENT_SUPPLY",
}
GROUP_COLORS: dict[int, str] = {-1: "#e53935", 0: SLATE, 1: "#43a047"}
POLICY_COLORS: dict[str, str] = {"ALLOW": GREEN, "WATCH": AMBER, "BLOCK": RED, "UNKNOWN": GREY}
# A state's policy class (state_policy_<source> assets) as painted on its strip and plots.
CLASS_ALLOW_LONG, CLASS_ALLOW_SHORT, CLASS_ALLOW, CLASS_WATCH, CLASS_BLOCK, CLASS_NONE = range(6)
POLICY_CLASS_LABELS: dict[int, str] = {
    CLASS_ALLOW_LONG: "ALLOW long", CLASS_ALLOW_SHORT: "ALLOW short",
    CLASS_ALLOW: "ALLOW (direction unconfirmed)", CLASS_WATCH: "WATCH", CLASS_BLOCK: "BLOCK",
    CLASS_NONE: "no policy",
}  # fmt: skip
POLICY_CLASS_COLORS: dict[int, str] = {
    CLASS_ALLOW_LONG: GREEN, CLASS_ALLOW_SHORT: "#6a1b9a", CLASS_ALLOW: "#9ccc65",
    CLASS_WATCH: AMBER, CLASS_BLOCK: RED, CLASS_NONE: GREY,
}  # fmt: skip

Panel = Literal["price", "tmf"]


@dataclass(frozen=True)
class Band:
    """Runs of equal values painted as a thin strip under the chart's panels, with a legend.

    Colour = ``colors[value]`` when given, else ``palette[value mod len]`` for integers (by
    sorted distinct value for strings). Values without a colour are not painted. The legend
    names a value ``labels[value]``, else the value itself.
    """

    title: str
    column: str
    colors: Mapping[Any, str] = field(default_factory=dict)
    palette: tuple[str, ...] = ()
    labels: Mapping[Any, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Markers:
    """Points on the rows where ``when`` holds, at ``anchor * factor`` of ``panel``."""

    name: str
    when: pl.Expr
    anchor: str
    symbol: str
    color: str
    panel: Panel = "price"
    factor: float = 1.0
    size: int = 9
    text: str | None = None  # column shown in the hover


def _flag(name: str) -> pl.Expr:
    return pl.col(name).fill_null(False).cast(pl.Boolean)


FLOW_BAND = Band("Flow state", "flow_state_code", colors=FLOW_COLORS, labels=FLOW_LABELS)
HMM_BAND = Band("HMM state", "hmm_display", palette=STATE_PALETTE)
HMM_GROUPED_BAND = Band(
    "HMM group", "hmm_display", colors=GROUP_COLORS, labels={-1: "SHORT", 0: "NEUTRAL", 1: "LONG"}
)

# Event Grammar markers, drawn on the TMF panel at the TMF value of the event bar.
EVENT_MARKERS: tuple[Markers, ...] = (
    Markers("TMF zero up", _flag("ev_tmf_zero_up"), "tmf_21", "triangle-up", GREEN, "tmf"),
    Markers("TMF zero down", _flag("ev_tmf_zero_down"), "tmf_21", "triangle-down", RED, "tmf"),
    Markers("TMF burst up", _flag("ev_tmf_burst_up"), "tmf_21", "star", GREEN, "tmf", size=11),
    Markers("TMF burst down", _flag("ev_tmf_burst_down"), "tmf_21", "star", RED, "tmf", size=11),
    Markers("TMF respect up", _flag("ev_tmf_respect_zero_up"), "tmf_21", "circle-open", GREEN,
            "tmf", size=11),
    Markers("TMF respect down", _flag("ev_tmf_respect_zero_down"), "tmf_21", "circle-open", RED,
            "tmf", size=11),
)
EVENT_COLUMNS: tuple[str, ...] = (
    "ev_tmf_zero_up",
    "ev_tmf_zero_down",
    "ev_tmf_burst_up",
    "ev_tmf_burst_down",
    "ev_tmf_respect_zero_up",
    "ev_tmf_respect_zero_down",
)

# The per-ticker lake layers the page reads (columns beyond the keys); the names are
# ``mf_pipeline.lib.registry`` layers (their folders come from there, see ``data``).
LAKE_COLUMNS: dict[str, tuple[str, ...]] = {
    "bronze": ("open", "high", "low", "close", "volume"),
    "silver": ("ret_1d",),
    "indicators": ("tmf_21", "tti_proxy_v1_21"),
    "events": (*EVENT_COLUMNS, "flow_state_code", "flow_state_label"),
}

Loader = Callable[[Path, str, tuple[str, ...]], pl.DataFrame | None]
FrameLoader = Callable[[Settings, str, Callable[..., pl.DataFrame]],
                       tuple[pl.DataFrame | None, str | None]]
"""A layer that is not a per-ticker file (settings, ticker, the page's cached reader) ->
(one row per date, or None and why)."""


@dataclass(frozen=True)
class OptionalLayer:
    """A per-ticker layer the page uses when its file exists (see ``sources``)."""

    name: str
    label: str
    columns: tuple[str, ...]
    required: tuple[str, ...]  # at least one of these must be present to use the layer
    bands: tuple[Band, ...] = ()
    markers: tuple[Markers, ...] = ()
    loader: Loader | None = None  # None: the generic per-ticker Parquet reader
    frame_loader: FrameLoader | None = None  # set: no file lookup, this builds the rows


def _candidates(name: str) -> FrameLoader:
    """``viewer.candidates_data.<name>``, imported on first use (it imports ``viewer.data``,
    which imports this module)."""
    def load(settings: Settings, ticker: str, reader: Callable[..., pl.DataFrame]
             ) -> tuple[pl.DataFrame | None, str | None]:  # fmt: skip
        from viewer import candidates_data

        return getattr(candidates_data, name)(settings, ticker, reader)

    return load


# The locked production candidates (issue #22): their trades, the state-policy band and the
# execution gates of the latest nightly re-run (viewer/candidates_data.py).
CANDIDATE_LONG, CANDIDATE_SHORT, CANDIDATE_EXIT = "#00838f", "#ad1457", "#37474f"
_entry = pl.col("cand_long_entry"), pl.col("cand_short_entry")
CANDIDATE_LAYERS: tuple[OptionalLayer, ...] = (
    OptionalLayer(
        "candidate_trades", "Candidate trades (locked candidates)",
        ("cand_long_entry", "cand_short_entry", "cand_exit", "cand_long_entry_text",
         "cand_short_entry_text", "cand_exit_text"),
        ("cand_long_entry", "cand_short_entry", "cand_exit"),
        markers=(
            Markers("candidate long entry", _entry[0].is_not_null(), "cand_long_entry",
                    "triangle-up", CANDIDATE_LONG, size=13, text="cand_long_entry_text"),
            Markers("candidate short entry", _entry[1].is_not_null(), "cand_short_entry",
                    "triangle-down", CANDIDATE_SHORT, size=13, text="cand_short_entry_text"),
            Markers("candidate exit", pl.col("cand_exit").is_not_null(), "cand_exit",
                    "x-thin-open", CANDIDATE_EXIT, size=12, text="cand_exit_text"),
        ),
        frame_loader=_candidates("trades_layer"),
    ),
    OptionalLayer(
        "candidate_policy", "Candidate state policy ALLOW/WATCH/BLOCK",
        ("candidate_policy_class",), ("candidate_policy_class",),
        bands=(Band("Candidate state policy", "candidate_policy_class", colors=POLICY_COLORS),),
        frame_loader=_candidates("policy_layer"),
    ),
    OptionalLayer(
        "candidate_execution", "Candidate execution pass/fail",
        ("cand_exec_pass", "cand_exec_blocked", "cand_exec_reason"),
        ("cand_exec_pass", "cand_exec_blocked"),
        markers=(
            Markers("candidate exec pass", _flag("cand_exec_pass"), "low", "circle", GREEN,
                    factor=0.992, size=5),
            Markers("candidate exec blocked", _flag("cand_exec_blocked"), "high", "x", RED,
                    factor=1.008, text="cand_exec_reason"),
        ),
        frame_loader=_candidates("execution_layer"),
    ),
)


_candidate = pl.col("candidate_marker_type")
OPTIONAL_LAYERS: tuple[OptionalLayer, ...] = (
    OptionalLayer(
        "hmm", "HMM states",
        ("hmm_state", "hmm_state_filtered", "hmm_prob_filtered_max"),
        ("hmm_state_filtered", "hmm_state"),
        bands=(HMM_BAND,),
    ),
    OptionalLayer(
        "cluster", "Cluster labels", ("cluster_label",), ("cluster_label",),
        bands=(Band("Cluster", "cluster_label", palette=STATE_PALETTE),),
    ),
    OptionalLayer(
        "policy", "Overlay class ALLOW/WATCH/BLOCK", ("overlay_policy_class",),
        ("overlay_policy_class",),
        bands=(Band("Overlay class", "overlay_policy_class", colors=POLICY_COLORS),),
    ),
    OptionalLayer(
        "execution", "Execution realism pass/fail",
        ("execution_candidate_after", "execution_suppressed_signal", "execution_filter_reason",
         "execution_eligible"),
        ("execution_candidate_after", "execution_suppressed_signal"),
        markers=(
            Markers("exec pass", _flag("execution_candidate_after"), "low", "circle", GREEN,
                    factor=0.992, size=5),
            Markers("exec blocked", _flag("execution_suppressed_signal"), "high", "x", RED,
                    factor=1.008, text="execution_filter_reason"),
        ),
    ),
    OptionalLayer(
        "signals", "Candidate / blocked signals",
        ("candidate_marker_type", "entry_side", "blocked_reason", "entry_signal"),
        ("candidate_marker_type",),
        markers=(
            Markers("long candidate",
                    (_candidate == "candidate_signal") & (pl.col("entry_side") == "LONG"),
                    "low", "triangle-up", GREEN, factor=0.995, size=11),
            Markers("short candidate",
                    (_candidate == "candidate_signal") & (pl.col("entry_side") == "SHORT"),
                    "high", "triangle-down", RED, factor=1.005, size=11),
            Markers("blocked signal",
                    _candidate.is_in(["blocked_overlay", "blocked_execution"]),
                    "close", "x", RED, text="blocked_reason"),
        ),
    ),
    *CANDIDATE_LAYERS,
)
OPTIONAL_BY_NAME: dict[str, OptionalLayer] = {layer.name: layer for layer in OPTIONAL_LAYERS}
