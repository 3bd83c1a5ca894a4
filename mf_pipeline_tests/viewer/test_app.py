"""The Streamlit page under ``AppTest``: controls, missing layers, compute, speed; ``mf viewer``."""

import datetime as dt
import json
import shutil
import time
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from mf_pipeline.cli import viewer_commands
from mf_pipeline.cli.app import app as cli_app
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.viewer import compute, core
from mf_pipeline.viewer.sources import DEFAULT_GOLD_DATASETS
from mf_pipeline_tests import viewer_lake

APP = str(Path(__file__).resolve().parents[1] / "mf_pipeline" / "viewer" / "app.py")


@pytest.fixture
def lake_env(tmp_path, monkeypatch):
    """Isolated roots; returns a settings loader (the page loads its own from the env)."""
    monkeypatch.setenv("MF_PIPELINE_PATHS__DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("MF_PIPELINE_PATHS__ARTIFACTS_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("MF_PIPELINE_SETTINGS_FILE", raising=False)
    monkeypatch.delenv("MF_PIPELINE_OVERLAY_VIEWER", raising=False)
    return load_settings


@pytest.fixture
def tiny_lake(lake_env):
    """AAPL.US with every lake layer and an HMM output; MSFT.US with Bronze only."""
    settings = lake_env()
    aapl = viewer_lake.synthetic_bronze("AAPL.US", 600, seed=1)
    msft = viewer_lake.synthetic_bronze("MSFT.US", 300, seed=2)
    viewer_lake.write_layers(settings, aapl)
    viewer_lake.write_layers(settings, msft, ("bronze",))
    viewer_lake.write_master(settings, pl.concat([aapl, msft]))
    viewer_lake.write_hmm(settings, aapl)
    return settings


def run_app(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def figure(at: AppTest) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def trace_names(at: AppTest) -> set[str]:
    return {trace.get("name") for trace in figure(at)["data"]}


def toggles(at: AppTest) -> dict[str, tuple[bool, bool]]:
    return {t.label: (t.value, t.disabled) for t in at.sidebar.toggle}


def diagnostics(at: AppTest) -> dict:
    return json.loads(at.get("json")[0].proto.body)


def test_default_page_draws_the_chart_with_every_available_layer(tiny_lake):
    at = run_app()
    assert at.title[0].value == "mf_pipeline overlay viewer"
    assert at.sidebar.selectbox(key="ticker").value == "AAPL.US"
    assert not at.error and not at.warning
    fig = figure(at)
    types = [trace["type"] for trace in fig["data"]]
    assert "candlestick" in types and "bar" in types
    assert {"Flow state", "HMM state", "TMF", "TTI proxy"} <= trace_names(at)
    assert fig["layout"]["yaxis3"]["title"]["text"] == "TMF / TTI"
    assert "HMM Display: RAW" in {a["text"] for a in fig["layout"]["annotations"]}
    assert [m.label for m in at.metric] == [
        "Rows", "Signals", "Overlay match rate", "Exec eligibility", "Events"]
    assert at.metric[1].value == "n/a"
    # the default window is the last year of the data
    start, end = at.sidebar.date_input(key="from_AAPL.US").value, \
        at.sidebar.date_input(key="to_AAPL.US").value
    assert end - start == dt.timedelta(days=365)
    assert int(at.metric[0].value.replace(",", "")) < 600
    assert toggles(at)["Show Cluster labels"] == (False, True)  # no cluster output: disabled


def test_typed_ticker_is_normalized(tiny_lake):
    at = run_app(ticker="aapl")
    assert "Ticker normalized: AAPL -> AAPL.US" in [i.value for i in at.info]
    assert "candlestick" in [t["type"] for t in figure(at)["data"]]


def test_missing_layers_are_announced_disabled_and_offered_for_compute(tiny_lake):
    at = run_app(ticker="MSFT.US")
    assert "silver, indicators, events not materialized" in at.warning[0].value
    state = toggles(at)
    for label in ("Show TMF + TTI panel", "Show event markers", "Show Flow state band",
                  "Show HMM state band"):
        assert state[label] == (False, True), label
    assert state["Show volume"] == (True, False)
    assert {"TMF", "Flow state", "HMM state"}.isdisjoint(trace_names(at))
    assert "candlestick" in [t["type"] for t in figure(at)["data"]]
    assert at.button(key="compute_main").label == "Compute this ticker"


def test_compute_button_materializes_then_the_layers_appear(tiny_lake, monkeypatch):
    calls = []

    def fake_compute(settings, ticker, log):
        calls.append(ticker)
        log("run 1/1: manifest, bronze, silver, indicators, events")
        bronze = viewer_lake.synthetic_bronze("MSFT.US", 300, seed=2)
        viewer_lake.write_layers(settings, bronze, ("silver", "indicators", "events"))
        return ["run-123"]

    monkeypatch.setattr(compute, "compute_ticker", fake_compute)
    at = run_app(ticker="MSFT.US")
    at.button(key="compute_main").click().run()
    assert not at.exception
    assert calls == ["MSFT.US"]
    assert "Computed MSFT.US" in at.success[0].value and "run-123" in at.success[0].value
    assert not at.warning
    assert {"TMF", "Flow state"} <= trace_names(at)


def test_compute_failure_is_reported_not_raised(tiny_lake, monkeypatch):
    def broken(settings, ticker, log):
        raise RuntimeError("no raw file for MSFT.US")

    monkeypatch.setattr(compute, "compute_ticker", broken)
    at = run_app(ticker="MSFT.US")
    at.button(key="compute_main").click().run()
    assert not at.exception
    assert "no raw file for MSFT.US" in at.error[0].value


def test_unknown_ticker_has_no_bars_and_no_chart(tiny_lake):
    at = run_app(ticker="zzz")
    assert "No Bronze bars for ZZZ" in at.error[0].value
    assert not at.get("plotly_chart")
    assert at.button(key="compute_main")


def test_empty_lake_says_how_to_fill_it(lake_env):
    at = run_app()
    assert "mf demo" in at.warning[0].value
    assert not at.get("plotly_chart")


def test_without_any_hmm_output_the_hmm_band_is_disabled(tiny_lake):
    shutil.rmtree(tiny_lake.gold_root / DEFAULT_GOLD_DATASETS["hmm"])
    at = run_app()
    assert toggles(at)["Show HMM state band"] == (False, True)
    assert "HMM state" not in trace_names(at) and "Flow state" in trace_names(at)
    assert "HMM states" in at.caption[1].value


@pytest.mark.parametrize("mode", core.HMM_MODES)
@pytest.mark.parametrize("method", core.SMOOTHING_METHODS)
def test_hmm_display_modes(tiny_lake, mode, method):
    at = run_app(hmm_mode=mode, hmm_method=method, hmm_window=7)
    hmm = diagnostics(at)["hmm_display"]
    assert hmm["mode"] == mode
    annotations = {a["text"] for a in figure(at)["layout"]["annotations"]}
    if "SMOOTHED" in mode:
        assert f"HMM Display: {mode} (w=7)" in annotations
        assert hmm["method"] == method
    if "GROUPED" in mode:
        # ranked on Silver returns BEFORE the window: never on returns of the visible rows
        assert hmm["grouping_source"] == "mean_silver_ret_1d_before_window"
        assert hmm["band_col"] == "hmm_group_code" and "HMM group" in trace_names(at)
        assert len(hmm["long_states"]) == 1 and len(hmm["short_states"]) == 1
    else:
        assert "HMM state" in trace_names(at)


def test_grouping_with_no_history_before_the_window_warns(tiny_lake):
    first = viewer_lake.synthetic_bronze("AAPL.US", 600, seed=1)["trade_date"].min()
    at = run_app(hmm_mode="GROUPED", **{"from_AAPL.US": first})
    assert any("Grouped HMM display unavailable" in w.value for w in at.warning)
    assert "HMM state" in trace_names(at)


def test_display_controls_reshape_the_figure(tiny_lake):
    at = run_app(volume_mode="overlay", scale_pct=True, show_events=False)
    layout = figure(at)["layout"]
    assert layout["yaxis5"]["overlaying"] == "y" and "yaxis2" not in layout
    assert layout["yaxis3"]["title"]["text"] == "TMF / TTI (%)"
    assert not any(name.startswith("TMF zero") for name in trace_names(at))
    at = run_app(show_volume=False, show_tmf=False, show_flow=False, show_hmm=False)
    assert [t["type"] for t in figure(at)["data"]] == ["candlestick"]


def test_from_after_to_is_an_error(tiny_lake):
    at = run_app(**{"from_AAPL.US": dt.date(2025, 6, 1), "to_AAPL.US": dt.date(2025, 1, 1)})
    assert "From is after To" in at.error[0].value
    assert not at.get("plotly_chart")


def test_a_10000_bar_ticker_rerenders_in_under_a_second(lake_env):
    settings = lake_env()
    big = viewer_lake.synthetic_bronze("BIG.US", 10_000, seed=4)
    viewer_lake.write_layers(settings, big)
    viewer_lake.write_hmm(settings, big)
    at = run_app(**{"from_BIG.US": big["trade_date"].min()})
    assert "Downsampled: 10,000 bars drawn as" in " ".join(c.value for c in at.caption)
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        at.run()
        seconds.append(time.perf_counter() - started)
    assert not at.exception
    assert min(seconds) < 1.0, seconds
    assert diagnostics(at)["window"]["rows"] == 10_000


def test_cli_viewer_runs_streamlit_on_localhost(monkeypatch):
    seen = {}

    def fake_exec(path, cmd, env):
        seen["path"], seen["cmd"], seen["env"] = path, cmd, env

    monkeypatch.setattr(viewer_commands.os, "execve", fake_exec)
    result = CliRunner().invoke(cli_app, ["viewer", "--port", "8600"])
    assert result.exit_code == 0, result.output
    cmd = seen["cmd"]
    assert seen["path"] == cmd[0] == viewer_commands.sys.executable
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == viewer_commands.APP_FILE.as_posix()
    assert Path(cmd[4]).is_file()
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert flags == {"--server.address": "127.0.0.1", "--server.port": "8600",
                     "--browser.gatherUsageStats": "false", "--server.headless": "true"}
    assert seen["env"]["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"
