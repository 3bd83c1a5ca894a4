"""THE list of the lake's layers: one record each, everything else derives from it.

A newcomer reads the pipeline's shape here: which layers exist, where each is stored, what it
reads, which settings its numbers depend on, whether it continues from a stored carry on the
nightly append path, and which whole-lake sanity summary it has. The lake paths
(``lib/lake.py``), the Dagster assets' dependencies and descriptions (``defs/``), the CLI's
``--until`` choices and ticker planning (``orchestration/planning.py``), the settings records
(``steps/calc_settings.py``), the derived step's compute order and the carries all read this.

Importing it is cheap (no polars, no Numba): the CLI plans with it before any heavy import.
Compute functions are reached through :func:`compute`, which imports a layer's module on use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import polars as pl

    from mf_pipeline.lib.layers.carry import Carry
    from mf_pipeline.lib.settings import Settings

Tier = Literal["bronze", "silver", "gold"]


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the lake."""

    name: str
    tier: Tier
    """Which data root holds it (``paths.<tier>_root``)."""
    dataset: str
    """Folder under the tier root."""
    inputs: tuple[str, ...]
    """Layers whose stored rows it reads (the Dagster dependencies)."""
    description: str
    title: str = ""
    """A few words for command help texts."""
    per_ticker: bool = True
    """Stored per ticker (shard-partitioned asset, incremental per ticker)."""
    settings_keys: tuple[str, ...] = ()
    """Dotted settings keys its stored values depend on (``group.*`` = every key of the
    group); a change rebuilds the layer (``_calc/<layer>.json``)."""
    storage_float: tuple[str, ...] = ()
    """Settings keys naming its float storage precision, first non-empty wins."""
    carry: bool = False
    """Continues a ticker from a stored carry on the append path (``_carry/``)."""
    sanity: tuple[str, str] | None = None
    """Whole-lake sanity summary: (artifacts folder, JSON file name)."""

    def root(self, settings: Settings) -> Path:
        """The layer's folder in the lake."""
        return getattr(settings, f"{self.tier}_root") / self.dataset


LAYERS: dict[str, LayerSpec] = {spec.name: spec for spec in (
    LayerSpec(
        "bronze", "bronze", "ohlcv_by_symbol", (),
        "Validated daily bars, one row per raw line that parsed (valid or invalid with reasons).",
        title="Bronze bars",
        settings_keys=("validation.suspicious_range_pct_threshold",
                       "validation.suspicious_return_pct_threshold",
                       "validation.gap_days_warn_threshold", "ingest.max_line_bytes"),
    ),
    LayerSpec(
        "silver", "silver", "base_series_by_symbol", ("bronze",),
        "Research-ready base series: returns, ranges, ATR-14, volume and SMA context.",
        title="Silver base series",
        settings_keys=("indicators.eps",), storage_float=("precision.silver_float",),
        carry=True, sanity=("silver_qa", "silver_sanity_summary.json"),
    ),
    LayerSpec(
        "indicators", "silver", "indicators_by_symbol", ("silver",),
        "Twiggs Money Flow (TMF v1) and the TTI proxy v1 with crosses and slopes.",
        title="TMF and TTI-proxy indicators",
        settings_keys=("indicators.tmf_period", "indicators.proxy_period", "indicators.eps"),
        storage_float=("indicators.float_dtype_override", "precision.silver_float"),
        carry=True, sanity=("indicator_qa", "indicator_sanity_summary.json"),
    ),
    LayerSpec(
        "events", "gold", "events_by_symbol", ("indicators",),
        "Event grammar v1 (crosses, pivots, respects, bursts, holds) and flow states S0–S4.",
        title="event grammar and flow states",
        settings_keys=("event_grammar.*",), storage_float=("precision.gold_float",),
        carry=True, sanity=("gold_event_qa", "events_sanity_summary.json"),
    ),
    LayerSpec(
        "features", "gold", "features_by_symbol", ("indicators", "events"),
        "Gold features v1: flow scores, bursts, persistence, recency, state transitions.",
        title="Gold features",
        settings_keys=("gold_features.*",),
        storage_float=("gold_features.float_dtype_override", "precision.gold_float"),
        carry=True, sanity=("gold_feature_qa", "features_sanity_summary.json"),
    ),
    LayerSpec(
        "ml_dataset", "gold", "datasets/ml_dataset_v1", ("features", "events", "indicators",
                                                         "silver"),
        "One Parquet of the joined per-ticker layers for model work (old "
        "export-ml-dataset).",
        title="the ML dataset", per_ticker=False,
    ),
)}

PER_TICKER: tuple[str, ...] = tuple(name for name, spec in LAYERS.items() if spec.per_ticker)
"""bronze … features, in dependency order."""
DERIVED: tuple[str, ...] = tuple(name for name in PER_TICKER if LAYERS[name].inputs)
"""The per-ticker layers computed from another layer (silver … features)."""
CARRIED: tuple[str, ...] = tuple(name for name in PER_TICKER if LAYERS[name].carry)
"""The layers the nightly append path continues from stored carries."""
UNTIL_CHOICES: tuple[str, ...] = tuple(LAYERS)
"""What ``mf run --until`` accepts."""
EXCLUDED_SETTINGS = {"gold_features.*": ("export",)}
"""Keys of a ``group.*`` that do not change the layer's stored values."""

STATE_BANDS: dict[str, str] = {"hmm": "hmm_by_symbol", "cluster": "cluster_by_symbol"}
"""Per-ticker research outputs of the in-sample ``full`` split (under the gold root): written
by the ``hmm_states``/``cluster_labels`` assets, read by the viewer's state bands."""


def spec(name: str) -> LayerSpec:
    """The record of ``name``; a clear error naming the layers that exist."""
    try:
        return LAYERS[name]
    except KeyError:
        raise ValueError(f"unknown layer {name!r}; choose one of {', '.join(LAYERS)}") from None


def chain_until(name: str) -> tuple[str, ...]:
    """The per-ticker layers ``mf run --until name`` materializes, in order."""
    spec(name)
    if name in PER_TICKER:
        return PER_TICKER[: PER_TICKER.index(name) + 1]
    return PER_TICKER


def state_band_root(settings: Settings, source: str) -> Path:
    """Folder of the per-ticker ``hmm``/``cluster`` state files the viewer reads."""
    return settings.gold_root / STATE_BANDS[source]


def _setting(settings: Settings, key: str) -> Any:
    group, _, name = key.partition(".")
    return getattr(getattr(settings, group), name)


def storage_float(settings: Settings, name: str) -> str:
    """Float storage precision (``float32``/``float64``) of a derived layer."""
    keys = spec(name).storage_float
    if not keys:
        raise ValueError(f"layer {name!r} has no float storage setting")
    return next((value for key in keys if (value := _setting(settings, key))), "float64")


def layer_settings(settings: Settings, name: str) -> dict[str, Any]:
    """The settings ``name``'s stored values depend on (its inputs' settings excluded)."""
    record = spec(name)
    out: dict[str, Any] = {}
    if record.storage_float:
        out[f"storage_float.{name}"] = storage_float(settings, name)
    for key in record.settings_keys:
        group, _, field = key.partition(".")
        if field != "*":
            out[key] = _setting(settings, key)
            continue
        values = getattr(settings, group).model_dump(
            mode="json", exclude=set(EXCLUDED_SETTINGS.get(key, ())))
        out |= {f"{group}.{sub}": value for sub, value in values.items()}
    return out


def compute(name: str, settings: Settings, inputs: dict[str, pl.DataFrame],
            carry: Carry | None) -> tuple[pl.DataFrame, Carry]:
    """One derived layer's rows for ``inputs`` (continuing from ``carry``) and its carry after
    them. The layer modules are imported here, on use."""
    if name == "silver":
        from mf_pipeline.lib.layers.silver import silver_step

        return silver_step(inputs["bronze"], settings.indicators.eps, carry)
    if name == "indicators":
        from mf_pipeline.lib.layers.indicators import indicators_step

        cfg = settings.indicators
        return indicators_step(inputs["silver"], cfg.tmf_period, cfg.proxy_period, cfg.eps, carry)
    if name == "events":
        from mf_pipeline.lib.layers import events

        params = events.EventParams.from_settings(settings.event_grammar.model_dump())
        return events.events_step(inputs["indicators"], params, carry)
    if name == "features":
        from mf_pipeline.lib.layers import features

        params = features.FeatureParams.from_settings(settings.gold_features.model_dump())
        return features.features_step(inputs["indicators"], inputs["events"], params, carry)
    raise ValueError(f"layer {name!r} is not computed by the derived step")
