"""End to end in a real browser: ``mf demo`` (every Dagster asset, research included, on a
small sample: conftest), then ``streamlit run`` of the viewer over what those assets wrote,
opened in headless Chromium (the system's, never a downloaded one), chart checked in the DOM."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mf_pipeline.cli.viewer_commands import app_file

pytestmark = pytest.mark.e2e

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


def pick_ticker(page, ticker: str) -> None:
    """Type ``ticker`` into the sidebar's ticker box, as a user does."""
    box = page.locator(TICKER_BOX).first
    box.click()
    page.keyboard.type(ticker)
    page.keyboard.press("Enter")


TICKER_BOX = '[data-testid="stSidebar"] [data-testid="stSelectbox"]'
FIGURE = "() => document.querySelector('.js-plotly-plot')"
HEATMAP_NAMES = (f"() => ({FIGURE})()?._fullData?.filter(t => t.type === 'heatmap')"
                 ".map(t => t.name) ?? []")


def test_chart_renders_every_band_in_headless_chromium(chromium, demo_lake, demo_settings,
                                                       tmp_path):
    """The HMM and cluster bands the research assets wrote are on the page (they were not:
    the viewer looked in folders no asset writes)."""
    from playwright.sync_api import sync_playwright  # a dev dependency: fail if missing

    ticker = demo_lake.banded
    port = free_port()
    log = tmp_path / "streamlit.log"
    command = [sys.executable, "-m", "streamlit", "run", str(app_file()),
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
                pick_ticker(page, ticker)
                page.wait_for_function(
                    f"() => {{ const names = ({HEATMAP_NAMES})();"
                    " return names.includes('HMM state') && names.includes('Cluster'); }",
                    timeout=60_000)
                page.wait_for_selector(".js-plotly-plot .boxlayer .trace path", timeout=30_000)
                page.wait_for_function(
                    "() => document.querySelectorAll('.js-plotly-plot .g-y3title').length > 0",
                    timeout=30_000)
                page.wait_for_timeout(500)  # let the heatmap images paint for the screenshot
                types = page.evaluate(f"() => ({FIGURE})()._fullData.map(t => t.type)")
                heatmaps = page.evaluate(HEATMAP_NAMES)
                titles = page.evaluate(
                    "() => Array.from(document.querySelectorAll("
                    "'.js-plotly-plot .g-y3title, .js-plotly-plot .g-y4title'))"
                    ".map(e => e.textContent)")
                labels = page.evaluate(
                    "() => Array.from(document.querySelectorAll("
                    "'.js-plotly-plot .annotation-text')).map(e => e.textContent)")
                lines = page.locator(".js-plotly-plot .scatterlayer .trace path.js-line").count()
                bands = page.locator(".js-plotly-plot .heatmaplayer image").count()
                shown = page.evaluate(  # the ticker box's text and input values
                    f"() => {{ const box = document.querySelector('{TICKER_BOX}');"
                    " return [box.innerText, ...Array.from(box.querySelectorAll('input'),"
                    " i => i.value)].join(' '); }")
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
    assert ticker in shown, shown
    assert "candlestick" in types, types
    assert "TMF / TTI" in titles and "Price" in titles, titles
    assert lines >= 2  # the TMF and TTI proxy lines are drawn
    assert {"Flow state", "HMM state", "Cluster"} <= set(heatmaps), heatmaps
    assert {"Flow state", "HMM state", "Cluster"} <= set(labels), labels  # band titles, visible
    assert bands >= 3  # the flow-state, HMM and cluster bands are painted
    assert shot.stat().st_size > 10_000
