"""End to end in a real browser: ``mf demo`` (every Dagster asset, research included, on a
small sample: conftest), then ``streamlit run`` of the viewer over what those assets wrote,
opened in headless Chromium (the system's, never a downloaded one), chart checked in the DOM."""

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mf_pipeline.cli.viewer_commands import app_file, streamlit_command
from mf_pipeline_tests.browser import browser_page, free_port, stop, wait_healthy
from viewer import registry, validation_data

pytestmark = pytest.mark.e2e

def pick_ticker(page, ticker: str) -> None:
    """Type ``ticker`` into the sidebar's ticker box, as a user does."""
    box = page.locator(TICKER_BOX).first
    box.click()
    page.keyboard.type(ticker)
    page.keyboard.press("Enter")


@contextmanager
def served(command_on: Callable[[int], list[str]], cwd: Path, log: Path) -> Iterator[int]:
    """Run the Streamlit command ``command_on(port)`` on a free port in ``cwd``; yields the
    port once the server answers, stops the server on exit."""
    port = free_port()
    command = [*command_on(port), "--server.fileWatcherType", "none"]
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", proc, log, expect=b"ok")
        yield port
    finally:
        stop(proc)


def save_for_docs(shot: Path, target: str) -> None:
    """The screenshot as a small palette PNG (the chart has few colours) for the docs."""
    from PIL import Image

    with Image.open(shot) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(target, optimize=True)


TICKER_BOX = '[data-testid="stSidebar"] [data-testid="stSelectbox"]'
DEPLOY = '[data-testid="stAppDeployButton"]'
MENU = '[data-testid="stMainMenu"]'
FIGURE = "() => document.querySelector('.js-plotly-plot')"
HEATMAP_NAMES = (f"() => ({FIGURE})()?._fullData?.filter(t => t.type === 'heatmap')"
                 ".map(t => t.name) ?? []")
TEXTS = "s => Array.from(document.querySelectorAll(s)).map(e => e.textContent)"
# plotly classes a legend's texts by its id: legend2titletext, legend2text, ...
LEGEND_TITLES = '.js-plotly-plot text[class^="legend"][class$="titletext"]'
LEGEND_ITEMS = ('.js-plotly-plot text[class^="legend"][class$="text"]'
                ':not([class$="titletext"])')


def test_chart_renders_every_band_in_headless_chromium(chromium, demo_lake, demo_settings,
                                                       tmp_path):
    """The HMM and cluster bands the research assets wrote are on the page, each in a strip
    with its legend, and the toolbar has no Deploy button. Started with ``mf viewer``'s own
    command line, outside the project (so no ``.streamlit/config.toml`` helps); the ticker is
    reached by mistyping it and clicking the close ticker the page offers."""
    ticker = demo_lake.banded
    typo = ticker[0] + ticker[2:]  # a dropped letter
    flow_labels = set(registry.FLOW_LABELS.values())
    def command(port: int) -> list[str]:
        return streamlit_command(port, "127.0.0.1")

    with served(command, tmp_path, tmp_path / "streamlit.log") as port, \
            browser_page(chromium) as page:
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
        page.wait_for_selector(".js-plotly-plot .boxlayer .trace path", timeout=90_000)
        pick_ticker(page, typo)  # not in the lake: the page offers the close tickers
        page.get_by_role("button", name=ticker, exact=True).click()
        page.wait_for_function(
            f"() => {{ const names = ({HEATMAP_NAMES})();"
            " return names.includes('HMM state') && names.includes('Cluster'); }",
            timeout=60_000)
        page.wait_for_selector(".js-plotly-plot .boxlayer .trace path", timeout=30_000)
        page.wait_for_function(
            "() => document.querySelectorAll('.js-plotly-plot .g-y3title').length > 0",
            timeout=30_000)
        page.wait_for_selector(MENU, timeout=30_000)  # the toolbar is drawn
        page.wait_for_timeout(500)  # let the heatmap images paint for the screenshot
        types = page.evaluate(f"() => ({FIGURE})()._fullData.map(t => t.type)")
        heatmaps = page.evaluate(HEATMAP_NAMES)
        titles = page.evaluate(TEXTS, ".js-plotly-plot .g-y3title, .js-plotly-plot .g-ytitle")
        legend_titles = page.evaluate(TEXTS, LEGEND_TITLES)
        legend_items = page.evaluate(TEXTS, LEGEND_ITEMS)
        lines = page.locator(".js-plotly-plot .scatterlayer .trace path.js-line").count()
        bands = page.locator(".js-plotly-plot .heatmaplayer image").count()
        deploy = page.locator(DEPLOY).count()
        shown = page.evaluate(  # the ticker box's text and input values
            f"() => {{ const box = document.querySelector('{TICKER_BOX}');"
            " return [box.innerText, ...Array.from(box.querySelectorAll('input'),"
            " i => i.value)].join(' '); }")
        shot = tmp_path / "viewer.png"
        page.screenshot(path=str(shot))
    assert ticker in shown, shown
    assert "candlestick" in types, types
    assert "TMF / TTI" in titles and "Price" in titles, titles
    assert lines >= 2  # the TMF and TTI proxy lines are drawn
    assert {"Flow state", "HMM state", "Cluster"} <= set(heatmaps), heatmaps
    assert {"Flow state", "HMM state", "Cluster"} <= set(legend_titles), legend_titles
    assert flow_labels & set(legend_items), legend_items  # the flow states are named
    assert bands >= 3  # the flow-state, HMM and cluster bands are painted
    assert deploy == 0
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("MF_PIPELINE_VIEWER_SCREENSHOT"):
        save_for_docs(shot, target)


def test_validation_tab_in_headless_chromium(chromium, demo_lake, demo_settings, tmp_path):
    """The Validation tab, opened by a click: the IN-SAMPLE label of the demo's ``full``
    split, the HMM scorecard with its classes, the CI and transition plots; back on the
    chart, the policy strips are under the state strips. ``MF_PIPELINE_VIEWER_VALIDATION_
    SCREENSHOT`` saves the tab's picture for the docs."""
    runs, missing = validation_data.load_runs(demo_settings)
    assert not missing, missing
    classes = set(runs["hmm"].policy["class_label"])

    def command(port: int) -> list[str]:
        return streamlit_command(port, "127.0.0.1")

    with served(command, tmp_path, tmp_path / "streamlit.log") as port, \
            browser_page(chromium, height=1700) as page:
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
        page.wait_for_selector(".js-plotly-plot .boxlayer .trace path", timeout=90_000)
        pick_ticker(page, demo_lake.banded)
        page.wait_for_function(
            f"() => ({HEATMAP_NAMES})().some(n => n.startsWith('HMM policy'))", timeout=60_000)
        heatmaps = page.evaluate(HEATMAP_NAMES)
        page.get_by_role("tab", name="Validation").click()
        page.wait_for_function(
            "() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=60_000)
        page.wait_for_selector('[data-testid="stDataFrame"]:visible', timeout=30_000)
        page.wait_for_timeout(1000)  # let the data grid and plots paint for the screenshot
        text = page.inner_text('[data-testid="stMain"]')
        points = page.evaluate(
            "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".map(p => p._fullData.map(t => t.name))")
        shot = tmp_path / "validation.png"
        page.screenshot(path=str(shot), full_page=True)
    assert heatmaps.index("HMM policy (filtered state), in-sample") == \
        heatmaps.index("HMM state") + 1, heatmaps
    assert "IN-SAMPLE" in text and "Validation and policy" in text
    assert classes <= {name for names in points for name in names}, points  # CI plot legend
    assert any(name.endswith("events)") for names in points for name in names), points
    if target := os.environ.get("MF_PIPELINE_VIEWER_VALIDATION_SCREENSHOT"):
        save_for_docs(shot, target)


def test_streamlit_run_in_the_project_root_has_no_deploy_button(chromium, demo_settings,
                                                                 tmp_path):
    """Plain ``streamlit run viewer/app.py`` in the project root: ``.streamlit/config.toml``
    hides Deploy (Streamlit shows it by default to a browser on localhost)."""
    app = app_file()

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "streamlit", "run", str(app.relative_to(app.parents[1])),
                "--server.address", "127.0.0.1", "--server.port", str(port),
                "--server.headless", "true"]

    with served(command, app.parents[1], tmp_path / "streamlit.log") as port, \
            browser_page(chromium) as page:
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
        page.wait_for_selector(".js-plotly-plot", timeout=90_000)
        page.wait_for_selector(MENU, timeout=30_000)
        page.wait_for_timeout(500)
        assert page.locator(DEPLOY).count() == 0
