"""The Streamlit page under ``AppTest`` over a lake written by ``mf demo`` (conftest):
controls, missing layers, compute, speed; ``mf viewer``."""

import datetime as dt
import json
import shutil
import time
import tomllib
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from mf_pipeline.cli import viewer_commands
from mf_pipeline.cli.app import app as cli_app
from mf_pipeline.lib import lake, registry
from mf_pipeline_tests.viewer.test_core import bronze_shard
from viewer import compute, core, data
from viewer import registry as registry_viewer

APP = str(viewer_commands.app_file())


def drop_layers(settings, ticker: str, layers) -> None:
    """Remove ``ticker``'s files of ``layers`` the demo wrote: as if never materialized."""
    for layer in layers:
        assert lake.remove_symbol_files(registry.LAYERS[layer].root(settings), [ticker]), layer


@pytest.fixture
def unbuilt(demo_lake, demo_settings):
    """The demo's lake with one ticker's derived layers removed: Bronze only."""
    ticker = demo_lake.plain
    derived = [layer for layer in data.READ_LAYERS if layer != "bronze"]
    drop_layers(demo_settings, ticker, derived)
    return demo_settings, ticker


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


def legends(at: AppTest) -> dict[str, list[str]]:
    """``{band title: the state names of its legend}``, from the figure's band legends."""
    fig = figure(at)
    titles = {name: spec["title"]["text"].removeprefix("<b>").removesuffix("</b>")
              for name, spec in fig["layout"].items() if name.startswith("legend")
              and name != "legend"}
    out: dict[str, list[str]] = {title: [] for title in titles.values()}
    for trace in fig["data"]:
        if trace.get("legend") in titles:
            out[titles[trace["legend"]]].append(trace["name"])
    return out


def test_the_demo_ticker_shows_every_band_the_assets_wrote(demo_lake, demo_settings):
    """The research assets' HMM and cluster files reach the chart (the bug: they did not)."""
    ticker = demo_lake.banded
    at = run_app(ticker=ticker)
    assert at.title[0].value == "mf_pipeline overlay viewer"
    assert not at.error and not at.warning
    fig = figure(at)
    types = [trace["type"] for trace in fig["data"]]
    assert "candlestick" in types and "bar" in types
    assert {"Flow state", "HMM state", "Cluster", "TMF", "TTI proxy"} <= trace_names(at)
    assert "HMM Display: RAW" in {a["text"] for a in fig["layout"]["annotations"]}
    # a legend per band naming the states of the window, in the strip's colours
    window = data.load_ticker(demo_settings, ticker).frame.filter(
        pl.col("trade_date") >= at.sidebar.date_input(key=f"from_{ticker}").value)
    named = legends(at)
    assert named["Flow state"] == [registry_viewer.FLOW_LABELS[code] for code in
                                   window["flow_state_code"].drop_nulls().unique().sort()]
    for title, column in (("HMM state", "hmm_state_filtered"), ("Cluster", "cluster_label")):
        states = window[column].drop_nulls().unique().sort().cast(pl.Int64).cast(pl.String)
        assert named[title] == states.to_list() and len(states) >= 2, title
    # the strips sit under the panels
    heatmap_axes = {t["yaxis"] for t in fig["data"] if t["type"] == "heatmap"}
    lowest_panel = min(fig["layout"][a]["domain"][0] for a in ("yaxis", "yaxis2", "yaxis3"))
    for axis in heatmap_axes:
        assert fig["layout"][axis.replace("y", "yaxis")]["domain"][1] < lowest_panel
    assert fig["layout"]["yaxis3"]["title"]["text"] == "TMF / TTI"
    assert [m.label for m in at.metric] == [
        "Rows", "Signals", "Overlay match rate", "Exec eligibility", "Events"]
    assert at.metric[1].value == "n/a"
    state = toggles(at)
    assert state["Show HMM state band"] == state["Show Cluster labels"] == (True, False)
    assert state["Show Overlay class ALLOW/WATCH/BLOCK"] == (False, True)  # no producer yet
    layers = diagnostics(at)["layers"]
    for name in ("hmm", "cluster"):
        assert layers[name]["available"], layers[name]
        root = registry.state_band_root(demo_settings, name)
        assert Path(layers[name]["file"]["path"]).is_relative_to(root)
    # the default window is the last year of the data
    start = at.sidebar.date_input(key=f"from_{ticker}").value
    end = at.sidebar.date_input(key=f"to_{ticker}").value
    assert end - start == dt.timedelta(days=365)
    assert int(at.metric[0].value.replace(",", "")) < demo_lake.bars[ticker]


def test_default_ticker_is_the_first_of_the_symbol_master(demo_lake, demo_settings):
    at = run_app()
    first = demo_lake.universe[0]
    assert "AAPL.US" not in demo_lake.universe  # else the default would be AAPL.US
    assert at.sidebar.selectbox(key="ticker").value == first
    assert "candlestick" in [t["type"] for t in figure(at)["data"]]


def test_a_ticker_without_research_files_has_its_state_bands_disabled(demo_lake, demo_settings):
    ticker = demo_lake.plain
    at = run_app(ticker=ticker)
    state = toggles(at)
    assert state["Show HMM state band"] == state["Show Cluster labels"] == (False, True)
    # the disabled switch's tooltip names the files it looked for
    shard = bronze_shard(demo_settings, ticker)  # the shard folder its rows would be in
    helps = {t.label: t.help for t in at.sidebar.toggle}
    for label, source in (("Show HMM state band", "hmm"), ("Show Cluster labels", "cluster")):
        root = registry.state_band_root(demo_settings, source)
        assert helps[label].endswith(f"no rows in `{root}/shard={shard}`"), helps[label]
    assert {"HMM state", "Cluster"}.isdisjoint(trace_names(at))
    assert "Flow state" in trace_names(at)


def test_typed_ticker_is_normalized(demo_lake, demo_settings):
    stem = demo_lake.banded.removesuffix(".US")
    at = run_app(ticker=stem.lower())
    assert f"Ticker normalized: {stem} -> {demo_lake.banded}" in [i.value for i in at.info]
    assert "candlestick" in [t["type"] for t in figure(at)["data"]]


def test_missing_layers_are_announced_disabled_and_offered_for_compute(unbuilt):
    _settings, ticker = unbuilt
    at = run_app(ticker=ticker)
    assert "silver, indicators, events not materialized" in at.warning[0].value
    state = toggles(at)
    for label in ("Show TMF + TTI panel", "Show event markers", "Show Flow state band",
                  "Show HMM state band"):
        assert state[label] == (False, True), label
    assert state["Show volume"] == (True, False)
    assert {"TMF", "Flow state", "HMM state"}.isdisjoint(trace_names(at))
    assert "candlestick" in [t["type"] for t in figure(at)["data"]]
    assert at.button(key="compute_main").label == "Compute this ticker"


@pytest.mark.e2e
def test_compute_button_materializes_through_dagster_then_the_layers_appear(unbuilt):
    """The real "Compute this ticker": a Dagster run of the ticker's per-ticker assets."""
    settings, ticker = unbuilt
    at = run_app(ticker=ticker)
    at.button(key="compute_main").click().run(timeout=240)
    assert not at.exception, [e.value for e in at.exception]
    assert f"Computed {ticker}" in at.success[0].value
    assert not at.warning
    assert {"TMF", "Flow state"} <= trace_names(at)
    for layer in data.READ_LAYERS:
        assert data.lake_file(settings, layer, ticker) is not None, layer


def test_compute_failure_is_reported_not_raised(unbuilt, monkeypatch):
    def broken(settings, ticker, log):
        raise RuntimeError(f"no raw file for {ticker}")

    _settings, ticker = unbuilt
    monkeypatch.setattr(compute, "compute_ticker", broken)
    at = run_app(ticker=ticker)
    at.button(key="compute_main").click().run()
    assert not at.exception
    assert f"no raw file for {ticker}" in at.error[0].value


def test_a_ticker_not_in_the_lake_names_the_closest_ones(demo_lake, demo_settings):
    ticker = demo_lake.banded
    typo = ticker[0] + ticker[2:]  # a dropped letter
    at = run_app(ticker=typo)
    expected = core.closest_tickers(typo, demo_lake.universe)
    assert ticker in expected
    assert at.error[0].value == f"{typo!r} is not in the lake. Closest: {', '.join(expected)}."
    assert not at.get("plotly_chart")
    # one button per close ticker (the browser test clicks one), and no compute offer
    assert [(b.key, b.label) for b in at.button] == [(f"closest_{t}", t) for t in expected]


def test_a_ticker_close_to_nothing_says_so(demo_lake, demo_settings):
    at = run_app(ticker="zzzzzzzz")
    assert at.error[0].value == (f"'ZZZZZZZZ' is not in the lake. None of its "
                                 f"{len(demo_lake.universe):,} tickers is close to it.")
    assert not at.get("plotly_chart") and not at.button
    at = run_app(ticker="../x")
    assert at.error[0].value.startswith("'../X' is not a valid ticker.")


def test_empty_lake_says_how_to_fill_it(viewer_env):
    at = run_app()
    assert "mf demo" in at.warning[0].value
    assert not at.get("plotly_chart")


def test_without_any_hmm_output_the_hmm_band_is_disabled(demo_lake, demo_settings):
    shutil.rmtree(registry.state_band_root(demo_settings, "hmm"))
    at = run_app(ticker=demo_lake.banded)
    assert toggles(at)["Show HMM state band"] == (False, True)
    assert "HMM state" not in trace_names(at)
    assert {"Flow state", "Cluster"} <= trace_names(at)
    assert "HMM states" in at.caption[1].value


@pytest.mark.parametrize("mode", core.HMM_MODES)
@pytest.mark.parametrize("method", core.SMOOTHING_METHODS)
def test_hmm_display_modes(demo_lake, demo_settings, mode, method):
    at = run_app(ticker=demo_lake.banded, hmm_mode=mode, hmm_method=method, hmm_window=7)
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
        assert set(legends(at)["HMM group"]) <= {"SHORT", "NEUTRAL", "LONG"}
    else:
        assert "HMM state" in trace_names(at)


def test_grouping_with_no_history_before_the_window_warns(demo_lake, demo_settings):
    ticker = demo_lake.banded
    first = data.load_ticker(demo_settings, ticker).frame["trade_date"].min()
    at = run_app(ticker=ticker, hmm_mode="GROUPED", **{f"from_{ticker}": first})
    assert any("Grouped HMM display unavailable" in w.value for w in at.warning)
    assert "HMM state" in trace_names(at)


def test_display_controls_reshape_the_figure(demo_lake, demo_settings):
    ticker = demo_lake.banded
    at = run_app(ticker=ticker, volume_mode="overlay", scale_pct=True, show_events=False)
    layout = figure(at)["layout"]
    assert layout["yaxis4"]["overlaying"] == "y" and "yaxis2" not in layout
    assert layout["yaxis3"]["title"]["text"] == "TMF / TTI (%)"
    assert not any(name.startswith("TMF zero") for name in trace_names(at))
    at = run_app(ticker=ticker, show_volume=False, show_tmf=False, show_flow=False,
                 show_hmm=False, show_cluster=False, show_candidate_policy=False)
    assert [t["type"] for t in figure(at)["data"]] == ["candlestick"]


def test_from_after_to_is_an_error(demo_lake, demo_settings):
    ticker = demo_lake.banded
    last = data.load_ticker(demo_settings, ticker).frame["trade_date"].max()
    at = run_app(ticker=ticker, **{f"from_{ticker}": last,
                                   f"to_{ticker}": last - dt.timedelta(days=30)})
    assert "From is after To" in at.error[0].value
    assert not at.get("plotly_chart")


@pytest.mark.e2e
def test_a_long_ticker_rerenders_in_under_a_second(demo_lake, demo_settings):
    ticker = demo_lake.banded
    bars = demo_lake.bars[ticker]
    assert bars > 2 * core.DEFAULT_MAX_CANDLES, bars  # the sample's long tickers
    first = data.load_ticker(demo_settings, ticker).frame["trade_date"].min()
    at = run_app(ticker=ticker, **{f"from_{ticker}": first})
    assert f"Downsampled: {bars:,} bars drawn as" in " ".join(c.value for c in at.caption)
    assert {"HMM state", "Cluster", "Flow state"} <= trace_names(at)
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        at.run()
        seconds.append(time.perf_counter() - started)
    assert not at.exception
    assert min(seconds) < 1.0, seconds
    assert diagnostics(at)["window"]["rows"] == bars


def test_cli_viewer_runs_streamlit_on_localhost(monkeypatch):
    seen = {}

    def fake_exec(path, cmd, env):
        seen["path"], seen["cmd"], seen["env"] = path, cmd, env

    monkeypatch.setattr(viewer_commands.os, "execve", fake_exec)
    result = CliRunner().invoke(cli_app, ["viewer", "--port", "8600"])
    assert result.exit_code == 0, result.output
    cmd = seen["cmd"]
    assert seen["path"] == cmd[0] == viewer_commands.sys.executable
    assert cmd[1:4] == ["-m", "streamlit", "run"]
    # the top-level viewer package's page, not a copy inside mf_pipeline
    assert Path(cmd[4]) == Path(data.__file__).with_name("app.py") and Path(cmd[4]).is_file()
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert flags == {"--server.address": "127.0.0.1", "--server.port": "8600",
                     "--browser.gatherUsageStats": "false", "--server.headless": "true",
                     "--client.toolbarMode": "viewer"}
    assert seen["env"]["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"


def test_streamlit_run_from_the_project_root_hides_deploy_too():
    """``streamlit run viewer/app.py`` in the project root reads ``.streamlit/config.toml``:
    the same toolbar mode as ``mf viewer`` (the browser test checks the page has no Deploy)."""
    config = Path(viewer_commands.app_file()).parents[1] / ".streamlit" / "config.toml"
    settings = tomllib.loads(config.read_text())
    assert settings["client"]["toolbarMode"] == "viewer"
    assert settings["browser"]["gatherUsageStats"] is False
