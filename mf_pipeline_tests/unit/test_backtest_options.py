"""Backtest options: settings defaults, overrides, refused values (fault 8: no overlap)."""

import pytest
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.lib.settings import BacktestSettings, Settings
from mf_pipeline.lib.steps.backtest.options import backtest_options


def test_defaults_come_from_the_settings_groups(clean_env) -> None:
    s = Settings()
    o = backtest_options(s)
    assert (o.signal_mode, o.exit_mode, o.hold_bars) == ("state_transition_entry",
                                                         "horizon_or_state", 10)
    assert o.overlay_mode == "none" and o.overlay_min_match_rate_fail == 0.60
    assert o.exec_profile == "none" and o.report_min_trades == 30
    custom = Settings(backtest={"hold_bars": 7, "fee_bps_per_side": 2.5},
                      overlay_coverage_policy={"coverage_mode": "strict_fail"})
    o = backtest_options(custom, hold_bars=None, include_state_ids=[1, 2])
    assert o.hold_bars == 7 and o.fee_bps_per_side == 2.5  # None keeps the settings value
    assert o.overlay_coverage_mode == "strict_fail" and o.include_state_ids == (1, 2)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("signal_mode", "always", "--signal-mode"), ("hold_bars", 0, "--hold-bars"),
    ("overlay_mode", "veto", "--overlay-mode"), ("equity_mode", "nav", "--equity-mode"),
    ("overlay_join_keys", ["ticker", "exchange"], "--overlay-join-keys"),
    ("no_such_option", 1, "unknown backtest options"),
])
def test_refused_values_name_the_option(clean_env, key, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        backtest_options(Settings(), **{key: value})


def test_overlapping_positions_are_refused_with_the_reason(clean_env) -> None:
    with pytest.raises(ValueError, match="positions never overlap"):
        BacktestSettings(allow_overlap=True)
    result = CliRunner().invoke(app, ["backtest-run", "--input-type", "flow", "--allow-overlap"])
    assert result.exit_code == 2 and "never overlap" in result.output
