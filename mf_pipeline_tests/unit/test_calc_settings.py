"""Which settings each layer depends on, and the record of what its files were built with."""

import datetime as dt

import polars as pl
import pytest

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.lib.steps import calc_settings as calc

LAYERS = registry.PER_TICKER


@pytest.fixture
def lake_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MF_PIPELINE_PATHS__DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("MF_PIPELINE_SETTINGS_FILE", raising=False)

    def settings(**env: str):
        for key, value in env.items():
            monkeypatch.setenv(f"MF_PIPELINE_{key}", value)
        return load_settings()

    return settings


def prints(settings) -> dict[str, str]:
    return {layer: calc.fingerprint(settings, layer) for layer in LAYERS}


def changed_by(lake_env, **env: str) -> set[str]:
    before = prints(lake_env())
    after = prints(lake_env(**env))
    return {layer for layer in LAYERS if before[layer] != after[layer]}


@pytest.mark.parametrize(("env", "layers"), [
    ({"VALIDATION__GAP_DAYS_WARN_THRESHOLD": "3"}, {"bronze"}),
    ({"INDICATORS__EPS": "1e-9"}, {"silver", "indicators"}),
    ({"INDICATORS__TMF_PERIOD": "34"}, {"indicators"}),
    ({"PRECISION__SILVER_FLOAT": "float64"}, {"silver", "indicators"}),
    ({"PRECISION__GOLD_FLOAT": "float64"}, {"events", "features"}),
    ({"EVENT_GRAMMAR__HOLD_CONSECUTIVE_BARS": "3"}, {"events"}),
    ({"GOLD_FEATURES__RECENCY_CLIP_BARS": "10"}, {"features"}),
    ({"GOLD_FEATURES__EXPORT__DEFAULT_DROP_NULL_KEY_FEATURES": "false"}, set()),
    ({"RESEARCH_HMM__MIN_SEQUENCE_LENGTH": "50"}, set()),
    ({"PARQUET__COMPRESSION_LEVEL": "1"}, set()),
])
def test_a_setting_changes_exactly_the_layers_computed_with_it(lake_env, env, layers):
    assert changed_by(lake_env, **env) == layers


def write_tickers(settings, layer: str, tickers: list[str]) -> None:
    frame = pl.DataFrame({"ticker": tickers, "exchange": ["NYSE"] * len(tickers),
                          "trade_date": [dt.date(2024, 1, 2)] * len(tickers)})
    lake.write_symbol_files(frame, lake.LAYERS[layer].root(settings))


def test_record_names_the_settings_every_ticker_was_built_with(lake_env):
    settings = lake_env()
    write_tickers(settings, "indicators", ["AAA.US", "BBB.US"])
    assert calc.changes(settings, "indicators") is None  # nothing recorded: trusted

    calc.record(settings, "indicators", ["BBB.US"])  # partial, nothing recorded before
    assert calc.stored(settings, "indicators") is None

    calc.record(settings, "indicators", ["AAA.US", "BBB.US"])
    assert calc.stored(settings, "indicators")["fingerprint"] == calc.fingerprint(
        settings, "indicators")
    assert calc.changes(settings, "indicators") is None

    longer = lake_env(INDICATORS__TMF_PERIOD="34")
    assert calc.changes(longer, "indicators") == ["indicators.tmf_period: 21 → 34"]
    assert calc.changed_layers(longer, LAYERS) == {
        "indicators": ["indicators.tmf_period: 21 → 34"]}
    calc.record(longer, "indicators", [])  # a run that built nothing changes nothing
    assert calc.changes(longer, "indicators") is not None

    calc.record(longer, "indicators", ["AAA.US"])  # one ticker rebuilt with the new settings
    assert calc.stored(longer, "indicators")["fingerprint"] == calc.MIXED
    original = lake_env(INDICATORS__TMF_PERIOD="21")
    assert calc.changes(original, "indicators") == [
        "some tickers were last built with other settings than the rest"]

    calc.record(original, "indicators", ["AAA.US", "BBB.US"])  # all rebuilt: consistent again
    assert calc.changes(original, "indicators") is None
    assert calc.record_path(original, "indicators").parent.name == "_calc"


def test_derived_layers_of_changed_settings_are_stale_everywhere(lake_env):
    from mf_pipeline.lib.layers.carry import Carry
    from mf_pipeline.lib.steps import carry_store
    from mf_pipeline.lib.steps.derived_step import stale_tickers

    settings = lake_env()
    tickers = ["AAA.US", "BBB.US"]
    for layer in LAYERS:
        write_tickers(settings, layer, tickers)
        calc.record(settings, layer, tickers)
    for layer in registry.CARRIED:  # each ticker's stored state describes the files above
        context = pl.DataFrame({"ticker": tickers, "trade_date": [dt.date(2024, 1, 2)] * 2})
        carry_store.save(settings, layer, [Carry(context, pl.DataFrame({"ticker": tickers}))],
                         replaced=[])
    assert stale_tickers(settings, ["silver", "indicators", "events", "features"]) == []
    changed = lake_env(EVENT_GRAMMAR__HOLD_CONSECUTIVE_BARS="3")
    assert stale_tickers(changed, ["silver", "indicators"]) == []
    assert stale_tickers(changed, ["events"]) == ["AAA.US", "BBB.US"]
