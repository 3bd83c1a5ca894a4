"""The candidate layers in a real browser, over folders the REAL producers wrote.

On a copy of the session's ``mf demo`` lake: the demo's own split grid (``full``) is the alpha
grid, a second split grid (HMM, overlay none, execution profile lite) the exec2 grid; the pack
builder (``lib/candidates/pack.build_pack``) selects and locks the candidates, the nightly
re-run (``lib/candidates/rerun.candidate_rerun``) re-runs them as of the lake's last date.
The viewer is then opened in headless Chromium on the ticker the candidates traded most in
its default window: the candidate entry/exit markers sit at the re-run's fill prices, the
state-policy strip paints the policy's classes, the drift badges say what the re-run
recorded. Nothing at the interface is hand-made.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from mf_pipeline.cli.viewer_commands import streamlit_command
from mf_pipeline.lib import lake
from mf_pipeline.lib.settings import Settings, load_settings
from mf_pipeline_tests.browser import browser_page
from mf_pipeline_tests.viewer.conftest import UNSET, roots_env
from mf_pipeline_tests.viewer.test_browser import (
    FIGURE,
    HEATMAP_NAMES,
    pick_ticker,
    save_for_docs,
    served,
)
from viewer import candidates_chart, candidates_data, core, data

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class CandidateLake:
    root: Path
    pack_dir: Path
    rerun_dir: Path
    ticker: str
    """The ticker with the most re-run trades in its default window."""
    window: tuple[dt.date, dt.date]
    trades: pl.DataFrame
    """Every candidate's re-run trades of ``ticker`` (with ``label``)."""
    statuses: dict[str, str]
    """Drift status per candidate, as the re-run recorded it."""


def _env(root: Path, patch: pytest.MonkeyPatch) -> Settings:
    for name, value in roots_env(root).items():
        patch.setenv(name, value)
    for name in UNSET:
        patch.delenv(name, raising=False)
    return load_settings()


def _exec2_grid(settings: Settings, alpha: Path) -> Path:
    """A split grid of the demo's HMM source with the lite execution profile (the exec2
    grid), on the same research runs as the demo's grid."""
    from mf_pipeline.lib.grids.inputs import split_sources
    from mf_pipeline.lib.grids.run import default_dimensions, grid_options, run_grid
    from mf_pipeline.lib.steps.backtest.options import backtest_options

    summary = json.loads((alpha / "grid_summary.json").read_text())
    hmm = next(s["identity"] for s in summary["sources"] if s["source_type"] == "hmm")
    sources = split_sources(settings, "full", ["hmm"], hmm["hmm_run_dir"],
                            hmm["cluster_run_dir"], None, policy_filter_mode="allow_only",
                            non_overlapping=hmm.get("non_overlapping_test", True))
    options = grid_options(settings, base=backtest_options(settings, exec_profile="lite"),
                           tag="exec2")
    return run_grid(settings, sources, default_dimensions(settings), options).output_dir


@pytest.fixture(scope="module")
def candidate_lake(demo_lake, tmp_path_factory) -> CandidateLake:
    from mf_pipeline.lib.candidates import pack, rerun

    root = tmp_path_factory.mktemp("viewer_candidates")
    shutil.copytree(demo_lake.root / "data", root / "data", symlinks=True)
    with pytest.MonkeyPatch.context() as patch:
        settings = _env(root, patch)
        record = json.loads((settings.data_root / "_io" / "backtest_grid" / "full.json")
                            .read_text())
        alpha = Path(record["output_dir"])
        exec2 = _exec2_grid(settings, alpha)
        built = pack.build_pack(settings, {"alpha": alpha, "exec2": exec2}, min_trades=10)
        pack_dir = Path(built["output_dir"])
        last = lake.read_layer(settings, "bronze")["trade_date"].cast(pl.Date).max()
        done = rerun.candidate_rerun(settings, pack_dir, last)
        found = candidates_data.load_candidates(settings)
    assert found.pack_dir == pack_dir and found.rerun_dir == Path(done["output_dir"])
    frames = []
    for label, c in found.candidates.items():
        path = c.run_dir / "trades.parquet" if c.run_dir else None
        if path is not None and path.is_file():
            frames.append(pl.read_parquet(path).filter(pl.col("is_valid_trade"))
                          .with_columns(pl.lit(label).alias("label")))
    trades = pl.concat(frames, how="diagonal_relaxed")
    ends = (lake.read_layer(settings, "bronze").group_by("ticker")
            .agg(pl.col("trade_date").cast(pl.Date).min().alias("first"),
                 pl.col("trade_date").cast(pl.Date).max().alias("last")))
    windows = {t: core.default_window(f, e) for t, f, e in ends.iter_rows()}
    shown = trades.filter(pl.col("ticker").is_in(demo_lake.universe)).with_columns(
        pl.col("entry_date").cast(pl.Date), pl.col("exit_date").cast(pl.Date))
    counts = {t: rows.filter(pl.col("entry_date") >= windows[t][0]).height
              for (t,), rows in shown.group_by("ticker")}
    ticker = max(sorted(counts), key=lambda t: counts[t])
    assert counts[ticker] > 0, counts
    manifest = json.loads((found.rerun_dir / "rerun_manifest.json").read_text())
    statuses = {c["candidate_label"]: c["drift_status"] for c in manifest["candidates"]}
    return CandidateLake(root, pack_dir, found.rerun_dir, ticker, windows[ticker],
                         shown.filter(pl.col("ticker") == ticker), statuses)


def _trace(page, name: str) -> dict | None:
    return page.evaluate(
        f"n => {{ const t = ({FIGURE})()._fullData.find(t => t.name === n);"
        " return t ? {x: Array.from(t.x, String), y: Array.from(t.y),"
        " text: t.text ? Array.from(t.text) : null} : null; }", name)


def test_candidate_markers_policy_band_and_drift_badges_in_chromium(chromium, candidate_lake,
                                                                    monkeypatch, tmp_path):
    cl = candidate_lake
    settings = _env(cl.root, monkeypatch)
    start, end = cl.window
    visible = cl.trades.filter(pl.col("entry_date").is_between(start, end))
    exits = cl.trades.filter(pl.col("exit_date").is_between(start, end))

    def command(port: int) -> list[str]:
        return streamlit_command(port, "127.0.0.1")

    with served(command, tmp_path, tmp_path / "streamlit.log") as port, \
            browser_page(chromium, height=1700) as page:
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
        page.wait_for_selector(".js-plotly-plot .boxlayer .trace path", timeout=90_000)
        pick_ticker(page, cl.ticker)
        page.wait_for_function(  # this ticker's chart: its number of exit markers
            f"() => ({HEATMAP_NAMES})().includes('Candidate state policy') && "
            f"({FIGURE})()._fullData.some(t => t.name === 'candidate exit' && "
            f"t.x.length === {exits['exit_date'].n_unique()})", timeout=90_000)
        page.wait_for_timeout(500)
        heatmaps = page.evaluate(HEATMAP_NAMES)
        traces = {side: _trace(page, f"candidate {side} entry") for side in ("long", "short")}
        passed = _trace(page, "candidate exec pass")
        exit_trace = _trace(page, "candidate exit")
        policy = page.evaluate(
            f"() => ({FIGURE})()._fullData.find(t => t.name === 'Candidate state policy')"
            ".text[0]")
        text = page.inner_text('[data-testid="stMain"]')
        shot = tmp_path / "candidates.png"
        page.screenshot(path=str(shot), full_page=True)
    if target := os.environ.get("MF_PIPELINE_VIEWER_CANDIDATES_SCREENSHOT"):
        save_for_docs(shot, target)

    assert "Candidate state policy" in heatmaps, heatmaps
    for side in ("long", "short"):
        rows = visible.filter(pl.col("side") == side.upper())
        trace = traces[side]
        if rows.is_empty():
            assert trace is None, (side, trace)
            continue
        # one marker per entry date, at the fill price the re-run recorded
        first = rows.sort("label").group_by("entry_date", maintain_order=True).agg(
            pl.col("entry_price").first()).sort("entry_date")
        marked = sorted(zip(trace["x"], trace["y"], strict=True))
        assert [x[:10] for x, _ in marked] == [str(d) for d in first["entry_date"]]
        assert [y for _, y in marked] == pytest.approx(first["entry_price"].to_list())
        assert all(label in " ".join(trace["text"]) for label in rows["label"].unique())
    assert len(exit_trace["x"]) == exits["exit_date"].n_unique()
    assert sorted(exit_trace["y"]) == pytest.approx(sorted(
        exits.sort("label").group_by("exit_date").agg(pl.col("exit_price").first())
        ["exit_price"].to_list()))
    # the strip paints the policy's classes only (its legend names them)
    assert set(policy) <= {"ALLOW", "WATCH", "BLOCK", "UNKNOWN", "NA"}, policy
    assert set(policy) & {"ALLOW", "WATCH", "BLOCK"}, policy
    # a drift badge per candidate, as the re-run recorded it
    assert cl.rerun_dir.name in text and cl.pack_dir.name in text
    flat = " ".join(text.split())
    for label, status in cl.statuses.items():
        assert f"{label} {status}" in flat, (label, status, flat[:2000])
    # the execution gates of the exec candidate (lite profile), rebuilt for this ticker from
    # its locked models as of the re-run's date: a circle under each kept signal's bar
    found = candidates_data.load_candidates(settings)
    chosen = candidates_data.exec_candidate(found)
    gates = candidates_data.locked_rows(settings, found, chosen, cl.ticker)
    bars = data.load_ticker(settings, cl.ticker).frame.select("trade_date", "low", "high")
    kept = (gates.filter(pl.col("execution_candidate_after")).join(bars, on="trade_date")
            .filter(pl.col("trade_date").is_between(start, end)).sort("trade_date"))
    if kept.is_empty():
        assert passed is None
    else:
        assert [x[:10] for x in passed["x"]] == [str(d) for d in kept["trade_date"]]
        assert passed["y"] == pytest.approx((kept["low"] * 0.992).to_list())

def _copy_outputs(cl: CandidateLake, root: Path) -> None:
    """The pack and re-run folders under another artifacts root (the folders they name
    stay where the producers wrote them), the same lake (read only)."""
    (root / "data").symlink_to(cl.root / "data")
    for name in ("production_candidates", "candidate_reruns"):
        shutil.copytree(cl.root / "artifacts" / name, root / "artifacts" / name)


def _restamp(folder: Path, finished: str, **extra: str) -> None:
    for name in ("rerun_summary.json", "rerun_manifest.json"):
        path = folder / name
        path.write_text(json.dumps({**json.loads(path.read_text()), "finished_ts": finished,
                                    **extra}))


def test_the_latest_rerun_is_the_shown_packs_newest_by_recorded_finish(candidate_lake,
                                                                       monkeypatch, tmp_path):
    """A re-run copied under a greater name with a newer mtime but an older recorded finish
    is not the latest; a newer re-run of ANOTHER pack is not shown with this pack."""
    cl = candidate_lake
    _copy_outputs(cl, tmp_path)
    reruns = tmp_path / "artifacts" / "candidate_reruns"
    older = reruns / f"crp-ffffffffffff_{cl.rerun_dir.name.split('_', 1)[1]}"
    shutil.copytree(reruns / cl.rerun_dir.name, older)
    _restamp(older, "2000-01-01T00:00:00+00:00")
    other = reruns / f"crp-eeeeeeeeeeee_{cl.rerun_dir.name.split('_', 1)[1]}"
    shutil.copytree(reruns / cl.rerun_dir.name, other)
    _restamp(other, "2999-01-01T00:00:00+00:00", pcp_pack_dir=str(tmp_path / "another_pack"))
    settings = _env(tmp_path, monkeypatch)
    found = candidates_data.load_candidates(settings)
    assert found.pack_dir == tmp_path / "artifacts" / "production_candidates" / cl.pack_dir.name
    assert found.rerun_dir == reruns / cl.rerun_dir.name
    assert {k: c.drift_status for k, c in found.candidates.items()} == cl.statuses
    assert candidates_data.latest_rerun(settings, None)[0] == other  # any pack: the newest


def test_without_a_rerun_the_trades_are_the_lock_time_ones(candidate_lake, monkeypatch,
                                                           tmp_path):
    """No re-run yet: no badge status, the lock-time backtest named by the packet (the demo's
    grid wrote none per combo, so the trades switch says there is no trades file), the policy
    strip still painted."""
    cl = candidate_lake
    _copy_outputs(cl, tmp_path)
    shutil.rmtree(tmp_path / "artifacts" / "candidate_reruns")
    settings = _env(tmp_path, monkeypatch)
    found = candidates_data.load_candidates(settings)
    packet = json.loads((cl.pack_dir / "production_policy_packet_v1.json").read_text())
    assert set(found.candidates) == set(packet["candidates"])
    for label, c in found.candidates.items():
        assert c.drift_status is None and c.origin == "lock-time backtest"
        assert c.run_dir == (Path(packet["candidates"][label]["backtest_run_dir"])
                             if packet["candidates"][label]["backtest_run_dir"] else None)
    frame, why = candidates_data.trades_layer(settings, cl.ticker,
                                              candidates_data.read_parquet_columns)
    if all(c.run_dir is None for c in found.candidates.values()):
        assert frame is None and "no candidate backtest has a trades file" in why
    policy, why = candidates_data.policy_layer(settings, cl.ticker,
                                               candidates_data.read_parquet_columns)
    assert why is None and policy["candidate_policy_class"].drop_nulls().len() > 0
    line = candidates_chart.status_line(settings)
    assert "not re-run yet" in line and ":gray-badge[not re-run]" in line


def test_one_tickers_locked_rows_are_the_whole_reruns(candidate_lake, monkeypatch):
    """The viewer rebuilds one ticker's rows (the locked decode of that ticker alone, then
    the re-run's preparation): they equal that ticker's rows of the whole-lake re-run, and
    every trade the re-run made on it entered on a bar whose signal the execution filter
    kept."""
    from mf_pipeline.lib.candidates import locked, rerun
    from mf_pipeline.lib.steps.backtest.run import prepare

    cl = candidate_lake
    settings = _env(cl.root, monkeypatch)
    found = candidates_data.load_candidates(settings)
    chosen = candidates_data.exec_candidate(found)
    traded = pl.read_parquet(chosen.run_dir / "trades.parquet").filter(pl.col("is_valid_trade"))
    ticker = traded["ticker"].mode().sort()[0]
    mine = candidates_data.locked_rows(settings, found, chosen, ticker)
    as_of = dt.date.fromisoformat(found.as_of)
    whole = locked.locked_inputs(settings, chosen.locked_dir, chosen.source_type, as_of,
                                 False, "whole")
    options = rerun.rerun_options(settings, chosen.packet, rerun.RerunOptions(
        overlay_coverage_mode="warn_only", overlay_coverage_bypass=True))
    reference = prepare(settings, whole, options).signals.filter(pl.col("ticker") == ticker)
    assert mine.height == reference.height > 0
    gates = [c for c in mine.columns if c != "cluster_id"]
    assert mine.select(gates).equals(reference.select(gates))
    ids = whole.rows.filter(pl.col("ticker") == ticker).select(
        pl.col("trade_date").cast(pl.Date), "cluster_id")
    assert mine.select("trade_date", "cluster_id").equals(ids)  # the locked clustering's ids
    entries = traded.filter(pl.col("ticker") == ticker)["entry_signal_date"].cast(pl.Date)
    kept = mine.filter(pl.col("execution_candidate_after"))["trade_date"]
    assert entries.len() > 0 and set(entries) <= set(kept)
    assert candidates_data.exec_marks(mine)["cand_exec_pass"].sum() == kept.len()


def test_the_policy_strip_is_the_locked_policy_on_the_locked_decode(candidate_lake,
                                                                    monkeypatch):
    """With a candidate that locked a cluster policy, the strip is that policy's class of the
    cluster id the LOCKED clustering gives each bar up to the re-run's date (new bars
    included), looked up here by hand from the policy file."""
    from mf_pipeline.lib.candidates import locked

    cl = candidate_lake
    settings = _env(cl.root, monkeypatch)
    found = candidates_data.load_candidates(settings)
    _, what, _, owner = candidates_data.policy_source(settings, found)
    band, why = candidates_data.policy_layer(settings, cl.ticker,
                                             candidates_data.read_parquet_columns)
    assert why is None
    if owner is None:  # no candidate locked a policy: the split's, as the line says
        assert "state_policy_cluster" in what
        return
    lock = json.loads((owner.locked_dir / "lock.json").read_text())
    policy = json.loads((owner.locked_dir / lock["policy_file"]).read_text())
    by_hand = {int(s["state_id"]): s["class_label"].upper() for s in policy["per_state"]}
    decoded = locked.decode_locked(settings, owner.locked_dir,
                                   dt.date.fromisoformat(found.as_of)
                                   ).filter(pl.col("ticker") == cl.ticker).sort("trade_date")
    expected = [by_hand.get(int(i), "UNKNOWN") for i in decoded["cluster_id"]]
    got = dict(zip(band["trade_date"], band["candidate_policy_class"], strict=True))
    assert [got[d] for d in decoded["trade_date"].cast(pl.Date)] == expected
    assert band["trade_date"].max() == decoded["trade_date"].cast(pl.Date).max()
