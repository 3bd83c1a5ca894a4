"""A settings change between two nightly runs: the lake must equal one built with the new
settings from scratch, not old numbers continued (or kept) under new settings."""

import shutil

from mf_pipeline.lib.steps import calc_settings
from mf_pipeline_tests.e2e.test_append import (
    LAYERS,
    accounting,
    append_lines,
    layer_rows,
    run,
    use_lake,
)

NEW_SETTINGS = {
    "MF_PIPELINE_VALIDATION__SUSPICIOUS_RETURN_PCT_THRESHOLD": "0.05",  # Bronze flags
    "MF_PIPELINE_EVENT_GRAMMAR__HOLD_CONSECUTIVE_BARS": "3",  # events, then features
}


def test_changed_settings_rebuild_instead_of_appending(isolated, messy_universe, tmp_path,
                                                       monkeypatch):
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    use_lake(monkeypatch, tmp_path / "nightly")
    isolated(raw)
    run("run", "--until", "features")
    append_lines(raw)
    for key, value in NEW_SETTINGS.items():
        monkeypatch.setenv(key, value)
    nightly = isolated(raw)
    assert set(calc_settings.changed_layers(nightly, LAYERS)) == {"bronze", "events"}
    outcome = run("run", "--until", "features")
    assert outcome["bronze"]["tickers_appended"] == 0  # no append path under new settings
    assert outcome["events"]["tickers_appended"] == 0
    assert calc_settings.changed_layers(nightly, LAYERS) == {}

    use_lake(monkeypatch, tmp_path / "full")
    full = isolated(raw)
    run("run", "--until", "features")
    for layer in LAYERS:
        assert layer_rows(nightly, layer).equals(layer_rows(full, layer), null_equal=True), layer
    assert [a.equals(b, null_equal=True)
            for a, b in zip(accounting(nightly), accounting(full), strict=True)] == [True, True]

    use_lake(monkeypatch, tmp_path / "nightly")
    isolated(raw)
    assert "bronze" not in run("run", "--until", "features")  # recorded: nothing to redo
