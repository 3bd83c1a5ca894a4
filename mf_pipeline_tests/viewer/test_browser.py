"""End to end in a real browser: ``streamlit run`` over a small materialized lake, opened in
headless Chromium (the system's, never a downloaded one), chart checked in the DOM."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mf_pipeline.lib import lake
from mf_pipeline.lib.sample import generate_universe
from mf_pipeline.orchestration import runner
from mf_pipeline.orchestration.planning import everything
from mf_pipeline.viewer.compute import per_ticker_assets
from mf_pipeline_tests import viewer_lake

APP = Path(__file__).resolve().parents[1] / "mf_pipeline" / "viewer" / "app.py"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]  # fmt: skip
SKIP_NO_BROWSER = (
    "no Chromium executable found (looked at $MF_PIPELINE_CHROMIUM, `chromium`, "
    "`chromium-browser`, /usr/bin/chromium). Install Debian's browser with "
    "`apt-get install -y chromium`; this test never downloads one."
)


def find_chromium() -> str | None:
    candidates = [os.environ.get("MF_PIPELINE_CHROMIUM"), shutil.which("chromium"),
                  shutil.which("chromium-browser"), "/usr/bin/chromium"]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def chromium() -> str:
    """The system Chromium; the test is skipped (loudly) only when there is none."""
    path = find_chromium()
    if path is None:
        pytest.skip(SKIP_NO_BROWSER)
    return path


@pytest.fixture
def materialized(isolated, tmp_path):
    """A 3-ticker sample run through Dagster (manifest → every per-ticker asset → tail).

    Layers no Dagster asset produces yet are written by the layer code itself, plus a
    stand-in HMM output, so the page has every band to draw.
    """
    raw = tmp_path / "raw"
    generate_universe(raw, n_tickers=3, years=2.0, seed=5, messy=False)
    settings = isolated(raw)
    tickers = sorted(p.stem.upper() for p in raw.rglob("*.txt"))
    selection = everything(runner.definitions())
    runner.run_partitioned(settings, selection.head, per_ticker_assets(), selection.tail,
                           tickers, log=lambda _: None)
    bronze = lake.read_layer(settings, "bronze")
    assert bronze.height > 0
    missing = [layer for layer in viewer_lake.LAYER_ORDER[1:]
               if not lake.symbol_files(lake.LAYERS[layer].root(settings))]
    if missing:
        viewer_lake.write_layers(settings, bronze, missing)
    viewer_lake.write_hmm(settings, bronze)
    return settings, tickers


def wait_healthy(port: int, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited early ({proc.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"streamlit not healthy after {timeout}s:\n{log.read_text()}")


def test_chart_renders_in_headless_chromium(chromium, materialized, tmp_path):
    from playwright.sync_api import sync_playwright  # a dev dependency: fail if missing

    port = free_port()
    log = tmp_path / "streamlit.log"
    command = [sys.executable, "-m", "streamlit", "run", str(APP),
               "--server.address", "127.0.0.1", "--server.port", str(port),
               "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, proc, log)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1300})
                page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
                page.wait_for_selector(".js-plotly-plot .boxlayer .trace path", timeout=90_000)
                page.wait_for_function(
                    "() => document.querySelectorAll('.js-plotly-plot .g-y3title').length > 0",
                    timeout=30_000)
                types = page.evaluate(
                    "() => document.querySelector('.js-plotly-plot')._fullData.map(t => t.type)")
                titles = page.evaluate(
                    "() => Array.from(document.querySelectorAll("
                    "'.js-plotly-plot .g-y3title, .js-plotly-plot .g-y4title'))"
                    ".map(e => e.textContent)")
                lines = page.locator(".js-plotly-plot .scatterlayer .trace path.js-line").count()
                bands = page.locator(".js-plotly-plot .heatmaplayer image").count()
                shot = tmp_path / "viewer.png"
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "candlestick" in types, types
    assert "TMF / TTI" in titles and "Price" in titles, titles
    assert lines >= 2  # the TMF and TTI proxy lines are drawn
    assert bands >= 2  # flow-state and HMM bands are painted
    assert shot.stat().st_size > 10_000
