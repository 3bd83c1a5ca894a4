"""The Dagster UI in headless Chromium, as a user drives it: `dagster dev` on a lake whose
Bronze the CLI built, "Materialize…" → "All" → "Launch backfill" on Silver, then each shard's
page shows that shard's own figures (rows and tickers in the lake), not the run's totals."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.lib import lake
from mf_pipeline.lib.partitions import shard_of
from mf_pipeline.lib.settings import load_settings
from mf_pipeline_tests.browser import browser_page, free_port, stop, wait_healthy

PROJECT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")
SCREENSHOT_ENV = "MF_PIPELINE_UI_SCREENSHOT"
"""Where to save the last shard page (docs/img/dagster_shard.png for the docs)."""


def wait_for_backfill(instance: dg.DagsterInstance, timeout: float = 300) -> dg.DagsterRun:
    """The run the UI's backfill launched (through the queue and the daemon), once finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in instance.get_runs() if r.tags.get("dagster/backfill")]
        if runs and all(r.is_finished for r in runs):
            return runs[0]
        time.sleep(1)
    raise AssertionError(f"no finished backfill run after {timeout}s: {instance.get_runs()}")


def dismiss_first_visit_dialog(page) -> None:
    """Close the UI's first-visit newsletter dialog, which may open a moment after the page
    loaded; its backdrop would swallow the next click."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=10_000)
    except PlaywrightTimeout:
        return
    skip.click()
    page.locator(".bp5-overlay-backdrop").first.wait_for(state="detached", timeout=10_000)


def test_materialize_all_silver_shards_from_the_ui(chromium, isolated, monkeypatch, tmp_path):
    isolated  # noqa: B018 - fresh roots; no raw root: the generated sample
    monkeypatch.delenv("MF_PIPELINE_PATHS__RAW_ROOT", raising=False)
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__TICKERS", "12")
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__YEARS", "1")
    result = CliRunner().invoke(app, ["run", "--until", "bronze"])
    assert result.exit_code == 0, result.output
    settings = load_settings()
    # `dagster dev` outside the project root (whose .env names the project's own home), with
    # this test's roots and the project's settings file.
    env = {**os.environ, "MF_PIPELINE_SETTINGS_FILE": str(PROJECT / "configs" / "settings.yaml")}
    port = free_port()
    log = tmp_path / "dagster_dev.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(DAGSTER), "dev", "-h", "127.0.0.1", "-p", str(port), "-m",
                                 "mf_pipeline.definitions"], cwd=tmp_path, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/server_info", proc, log, timeout=180)
        with browser_page(chromium, height=1000) as page:
            page.goto(f"http://127.0.0.1:{port}/assets/silver", wait_until="networkidle",
                      timeout=120_000)
            dismiss_first_visit_dialog(page)
            page.get_by_role("button", name="Materialize…").click()
            dialog = page.locator('[role="dialog"]').last
            dialog.get_by_role("button", name="All", exact=True).click()
            dialog.get_by_text("16 partitions", exact=True).wait_for(timeout=30_000)
            dialog.get_by_role("button", name="Launch backfill").click()
            run = wait_for_backfill(dg.DagsterInstance.get())
            assert run.is_success, log.read_text()[-3000:]

            silver = lake.read_layer(settings, "silver")
            rows = dict(silver.group_by(pl.col("ticker").map_elements(
                shard_of, return_dtype=pl.String)).len().rows())
            shards = sorted(rows, key=lambda s: -rows[s])[:2]
            assert rows[shards[0]] != rows[shards[1]], rows
            for shard in shards:
                page.goto(f"http://127.0.0.1:{port}/assets/silver?view=partitions"
                          f"&partition={shard}", wait_until="networkidle", timeout=60_000)
                table = page.get_by_text("dagster/row_count").first
                table.wait_for(timeout=60_000)
                text = page.inner_text("body")
                shown = re.search(r"dagster/row_count\s+([\d,]+)\s", text)
                assert shown, text[-3000:]
                assert int(shown.group(1).replace(",", "")) == rows[shard], (shard, text[-3000:])
                tickers = sorted(silver.filter(pl.col("ticker").map_elements(
                    shard_of, return_dtype=pl.String) == shard)["ticker"].unique())
                assert " ".join(tickers) in text, (shard, tickers)
            page.screenshot(path=os.environ.get(SCREENSHOT_ENV, str(tmp_path / "shard.png")))
    finally:
        stop(proc)
