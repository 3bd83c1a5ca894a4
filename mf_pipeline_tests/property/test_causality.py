"""Causality of the whole per-ticker chain: no value at bar t may depend on bars after t.

Every layer (silver, indicators, events, features) is recomputed on Bronze truncated at a date;
every column of every row up to that date must be identical to the full computation. The same
chain must also give each ticker identical results whether computed alone or with others.
"""

import datetime as dt

import polars as pl
import pytest

from mf_pipeline.lib.layers import manifest as mf
from mf_pipeline.lib.layers.bronze.build import build_bronze
from mf_pipeline.lib.layers.bronze.validate import ValidationThresholds
from mf_pipeline.lib.layers.events import EventParams, build_events
from mf_pipeline.lib.layers.features import FeatureParams, build_features
from mf_pipeline.lib.layers.indicators import build_indicators
from mf_pipeline.lib.layers.silver import build_silver
from mf_pipeline.lib.sample import generate_universe


def chain(bronze: pl.DataFrame) -> dict[str, pl.DataFrame]:
    silver = build_silver(bronze)
    indicators = build_indicators(silver)
    events = build_events(indicators, EventParams())
    features = build_features(indicators, events, FeatureParams())
    return {"silver": silver, "indicators": indicators, "events": events, "features": features}


@pytest.fixture(scope="module")
def bronze(tmp_path_factory) -> pl.DataFrame:
    root = tmp_path_factory.mktemp("causal")
    generate_universe(root, n_tickers=5, years=2, seed=5)
    files = mf.discover(root).select("source_file", "path", "ticker", "exchange", "fail_reason")
    result = build_bronze(files, ValidationThresholds(), "test", dt.datetime.now(dt.UTC))
    return result.valid


@pytest.mark.parametrize("cut_fraction", [0.2, 0.55, 0.9])
def test_every_layer_is_causal(bronze, cut_fraction):
    dates = bronze["trade_date"].unique().sort()
    cut = dates[int(len(dates) * cut_fraction)]
    full = chain(bronze)
    truncated = chain(bronze.filter(pl.col("trade_date") <= cut))
    for layer, frame in full.items():
        expected = frame.filter(pl.col("trade_date") <= cut).sort("ticker", "trade_date")
        got = truncated[layer].sort("ticker", "trade_date")
        assert got.height == expected.height > 0, layer
        for column in frame.columns:
            assert got[column].equals(expected[column], check_names=True), (layer, column)


def test_each_ticker_is_independent_of_the_others(bronze):
    together = chain(bronze)
    ticker = bronze["ticker"].unique().sort()[2]
    alone = chain(bronze.filter(pl.col("ticker") == ticker))
    for layer, frame in together.items():
        expected = frame.filter(pl.col("ticker") == ticker)
        assert alone[layer].equals(expected), layer
