"""A tiny lake for the viewer tests, built with the layers' own builders (no formula here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.layers.bronze.qa import write_symbol_master
from mf_pipeline.lib.layers.events import build_events
from mf_pipeline.lib.layers.indicators import build_indicators
from mf_pipeline.lib.layers.silver import build_silver
from mf_pipeline.lib.settings import Settings
from mf_pipeline.viewer.sources import DEFAULT_GOLD_DATASETS


def synthetic_bronze(
    ticker: str, bars: int, seed: int = 1, exchange: str = "NASDAQ",
    end: dt.date = dt.date(2025, 12, 31),
) -> pl.DataFrame:
    """``bars`` business days of a random-walk OHLCV series ending at ``end``."""
    days = pl.date_range(end - dt.timedelta(days=int(bars * 1.5) + 10), end, eager=True)
    days = days.filter(days.dt.weekday() <= 5).tail(bars)
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, days.len())))
    open_ = close * (1 + rng.normal(0, 0.005, close.size))
    spread = np.abs(rng.normal(0, 0.01, close.size)) * close
    return pl.DataFrame({
        "ticker": ticker,
        "exchange": exchange,
        "trade_date": days,
        "open": open_,
        "high": np.maximum(open_, close) + spread,
        "low": np.minimum(open_, close) - spread,
        "close": close,
        "volume": rng.integers(100_000, 2_000_000, close.size).astype(np.float64),
    }).with_columns(pl.col("trade_date").cast(pl.Datetime("us")).alias("trade_dt"))


LAYER_ORDER = ("bronze", "silver", "indicators", "events")


def write_layers(
    settings: Settings, bronze: pl.DataFrame, layers: Sequence[str] = LAYER_ORDER
) -> None:
    """Write the chosen lake layers of ``bronze``'s tickers (computed by the layer code)."""
    silver = build_silver(bronze)
    indicators = build_indicators(silver)
    frames = {"bronze": bronze, "silver": silver, "indicators": indicators,
              "events": build_events(indicators)}
    for layer in layers:
        lake.write_symbol_files(frames[layer], lake.LAYERS[layer].root(settings))


def write_master(settings: Settings, bronze: pl.DataFrame) -> None:
    master = bronze.group_by("ticker", "exchange").agg(
        pl.col("trade_date").min().alias("first_date"),
        pl.col("trade_date").max().alias("last_date"),
        pl.len().cast(pl.Int64).alias("row_count"),
    ).sort("ticker")
    write_symbol_master(master, settings.bronze_root)


def write_hmm(settings: Settings, bronze: pl.DataFrame, states: int = 4) -> None:
    """A stand-in HMM output (runs of states) in the default optional-layer folder."""
    rows = bronze.select("ticker", "exchange", "trade_date").with_row_index("_i")
    frame = rows.select(
        "ticker", "exchange", "trade_date",
        ((pl.col("_i") // 17) % states).cast(pl.Int64).alias("hmm_state"),
        ((pl.col("_i") // 13) % states).cast(pl.Int64).alias("hmm_state_filtered"),
        pl.lit(0.8).alias("hmm_prob_filtered_max"),
    )
    lake.write_symbol_files(frame, settings.gold_root / DEFAULT_GOLD_DATASETS["hmm"])
