"""Report inputs are found by their RECORDED settings and the newest recorded ``finished_ts``,
never by folder mtime or a hard-coded path (faults 16, 35). The folders are real grids and
walk-forward grids made by the grid runner and the WF aggregates (no hand-made fixture at that
interface); the ``lake`` fixture is shared with the realism and hybrid-eval tests."""

import json
import os
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.grids import wf_aggregates
from mf_pipeline.lib.grids.combos import GridDimensions
from mf_pipeline.lib.grids.run import GridOptions, GridSource, run_grid
from mf_pipeline.lib.reports import discover
from mf_pipeline.lib.settings import Settings, load_settings
from mf_pipeline.lib.steps.backtest.options import backtest_options
from mf_pipeline.lib.steps.backtest.run import BacktestInputs
from mf_pipeline_tests.unit.test_grid_engine import _inputs as flow_inputs

POLICY = {"per_state": [{"state_id": 1, "class_label": "ALLOW"},
                        {"state_id": 2, "class_label": "WATCH"},
                        {"state_id": 3, "class_label": "BLOCK"}]}  # fmt: skip
STATE_MAP = {"mapping": {"0": "LONG_BIAS", "1": "SHORT_BIAS", "2": "LONG_BIAS",
                         "3": "UNCONFIRMED"}}  # fmt: skip
DIMS = GridDimensions(hold_bars=(3, 10), fee_bps_per_side=(0.0, 10.0),
                      include_state_sets=((), (9,)))
"""8 combos; the 4 trading only state 9 (never seen) are zero-trade combos."""
SPLITS = {"2016-12-31": 21, "2017-12-31": 22}
"""WF split train_end -> the seed of its rows (baseline and hybrid trade the same rows)."""


def hmm_inputs(seed: int = 5, n: int = 300, tickers: int = 3) -> BacktestInputs:
    """Synthetic HMM rows with a state map and cluster overlay rows (ALLOW/WATCH/BLOCK)."""
    rng = np.random.default_rng(seed)
    frames, overlay = [], []
    for t in range(tickers):
        close = 20 * np.exp(np.cumsum(rng.normal(0, 0.015, n)))
        state = np.repeat(rng.integers(0, 4, n // 5 + 1), 5)[:n]
        days = [date(2015, 1, 1) + timedelta(days=i) for i in range(n)]
        frames.append(pl.DataFrame({
            "ticker": f"T{t}", "trade_date": days,
            "open": close * np.exp(rng.normal(0, 0.004, n)), "high": close * 1.02,
            "low": close * 0.98, "close": close, "volume": rng.uniform(1e5, 1e6, n),
            "hmm_state_filtered": state.astype(np.int64)}))  # fmt: skip
        overlay.append(pl.DataFrame({"ticker": f"T{t}", "trade_date": days,
                                     "cluster_id": rng.integers(1, 4, n)}))
    return BacktestInputs(rows=pl.concat(frames), input_type="hmm", tag="r",
                          identity={"case": "report", "seed": seed}, state_map=STATE_MAP,
                          overlay_rows=pl.concat(overlay), overlay_policy=POLICY)


def make_grid(settings: Settings, inputs: BacktestInputs, mode: str, profile: str, tag: str,
              folder: Path | None = None) -> Path:  # fmt: skip
    base = backtest_options(settings, overlay_mode=mode, exec_profile=profile)
    return run_grid(settings, [GridSource(inputs)], DIMS, GridOptions(base=base, tag=tag),
                    folder=folder).output_dir


def make_wf(settings: Settings, mode: str, profile: str, name: str,
            splits: dict[str, int] = SPLITS) -> Path:  # fmt: skip
    """A walk-forward grid folder: one real grid per split, then the §5.8 files."""
    folder = settings.artifacts_root / discover.WF_GRIDS_DIR / name
    dirs = {te: make_grid(settings, hmm_inputs(seed), mode, profile, f"split-{te}",
                          folder / "splits" / te) for te, seed in splits.items()}  # fmt: skip
    by_split = [{"train_end": te, "status": "SUCCESS", "grid_run_dir": str(d), "error": None}
                for te, d in dirs.items()]
    wf_aggregates.write_wf_aggregates(folder, by_split, dirs, {
        "wf_grid_id": name, "sources": ["hmm"], "selected_train_ends": list(splits),
        "tag": "t", "min_successful_splits": 1, "started_ts": "2026-01-01T00:00:00+00:00"})
    return folder


def build_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, Path]]:
    """An artifacts root with an OLD hmm lite grid (then touched to a newer mtime), hmm grids
    none/none, none/lite, none/strict, allow_only/lite, block_veto/lite, a flow allow_only/lite
    grid and a baseline/hybrid pair of walk-forward grids; built in this order."""
    root = tmp_path_factory.mktemp("lake")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MF_PIPELINE_PATHS__ARTIFACTS_ROOT", str(root / "artifacts"))
        settings = load_settings()
    grids = {"old_lite": make_grid(settings, hmm_inputs(4), "none", "lite", "old")}
    for key, mode, profile in (("hmm_strict", "none", "strict"), ("hmm_none", "none", "none"),
                               ("hmm_lite", "none", "lite"),
                               ("hmm_overlay_allow_lite", "allow_only", "lite"),
                               ("hmm_overlay_block_lite", "block_veto", "lite")):
        grids[key] = make_grid(settings, hmm_inputs(), mode, profile, key.replace("_", "-"))
    flow = flow_inputs()
    flow.overlay_rows = hmm_inputs().overlay_rows
    flow.overlay_policy = POLICY
    grids["flow_allow_lite"] = make_grid(settings, flow, "allow_only", "lite", "flow")
    grids["wf_baseline"] = make_wf(settings, "none", "lite", "wfgrid-baseline")
    grids["wf_hybrid"] = make_wf(settings, "allow_only", "lite", "wfgrid-hybrid")
    future = time.time() + 3600
    os.utime(grids["old_lite"], (future, future))
    os.utime(grids["old_lite"] / discover.GRID_SUMMARY, (future, future))
    return settings, grids


lake_fixture = pytest.fixture(scope="module", name="lake")(build_lake)
"""Other report tests bind the same builder as their own module fixture."""


def _finished(folder: Path, name: str) -> str:
    return json.loads((folder / name).read_text())["finished_ts"]


def test_newest_by_finished_ts_even_when_an_older_folder_has_a_newer_mtime(lake) -> None:
    settings, grids = lake
    old, new = grids["old_lite"], grids["hmm_lite"]
    assert old.stat().st_mtime > new.stat().st_mtime
    assert _finished(old, discover.GRID_SUMMARY) < _finished(new, discover.GRID_SUMMARY)
    found = discover.find_grid(settings.artifacts_root, scope_prefix="single-hmm",
                               overlay_mode="none", execution_profile="lite")
    assert found == new


def test_each_target_finds_its_own_grid_by_recorded_overlay_and_profile(lake) -> None:
    settings, grids = lake
    root = settings.artifacts_root
    for key, mode, profile in (("hmm_strict", "none", "strict"), ("hmm_none", "none", "none"),
                               ("hmm_overlay_allow_lite", "allow_only", "lite"),
                               ("hmm_overlay_block_lite", "block_veto", "lite")):
        assert discover.find_grid(root, scope_prefix="single-hmm", overlay_mode=mode,
                                  execution_profile=profile) == grids[key], key
    # the flow grid is never an hmm grid, and a combination nobody ran is None
    assert discover.find_grid(root, scope_prefix="single-flow", overlay_mode="allow_only",
                              execution_profile="lite") == grids["flow_allow_lite"]
    assert discover.find_grid(root, scope_prefix="single-hmm", overlay_mode="allow_only",
                              execution_profile="strict") is None
    # any profile: the newest overlay-none hmm grid (built last among them: lite)
    assert discover.find_grid(root, scope_prefix="single-hmm", overlay_mode="none",
                              execution_profile=None) == grids["hmm_lite"]
    assert discover.find_grid(root / "nowhere", scope_prefix="single-hmm",
                              overlay_mode="none", execution_profile=None) is None


def test_a_folder_being_written_is_not_a_candidate(lake, tmp_path) -> None:
    settings, grids = lake
    root = tmp_path / "artifacts"
    grids_dir = root / discover.GRIDS_DIR
    grids_dir.mkdir(parents=True)
    shutil.copytree(grids["hmm_none"], grids_dir / grids["hmm_none"].name)
    hidden = grids_dir / f".{grids['hmm_none'].name}x.tmp-1"  # a newer run still writing
    shutil.copytree(grids["hmm_none"], hidden)
    summary = json.loads((hidden / discover.GRID_SUMMARY).read_text())
    (hidden / discover.GRID_SUMMARY).write_text(json.dumps({**summary,
                                                            "finished_ts": "2999-01-01"}))
    assert discover.find_grid(root, scope_prefix="single-hmm", overlay_mode="none",
                              execution_profile="none") == grids_dir / grids["hmm_none"].name


def test_walk_forward_grids_by_recorded_overlay_and_profile(lake) -> None:
    settings, grids = lake
    root = settings.artifacts_root
    summary = json.loads((grids["wf_hybrid"] / discover.WF_SUMMARY).read_text())
    assert (summary["overlay_mode"], summary["execution_profile"]) == ("allow_only", "lite")
    assert discover.find_wf_grid(root, source="hmm", overlay_mode="none",
                                 execution_profile="lite") == grids["wf_baseline"]
    assert discover.find_wf_grid(root, source="hmm", overlay_mode="allow_only",
                                 execution_profile="lite") == grids["wf_hybrid"]
    assert discover.find_wf_grid(root, source="flow", overlay_mode="none",
                                 execution_profile="lite") is None
    assert discover.find_wf_grid(root, source="hmm", overlay_mode="none",
                                 execution_profile="strict") is None


def test_newest_ties_by_folder_name_and_missing_timestamp_is_oldest() -> None:
    a, b, c = Path("grid-a"), Path("grid-b"), Path("grid-c")
    ts = "2026-01-01T00:00:00+00:00"
    assert discover.newest([(b, {"finished_ts": ts}), (a, {"finished_ts": ts})]) == b
    assert discover.newest([(c, {}), (a, {"finished_ts": ts})]) == a
    assert discover.newest([]) is None


def test_overlay_mode_and_profile_fallbacks(tmp_path) -> None:
    assert discover.overlay_mode_of({"sources": [{"overlay_mode": "block_veto"}],
                                     "overlay_mode": "none"}) == "block_veto"
    assert discover.overlay_mode_of({"sources": [{}], "overlay_mode": "allow_only"}) \
        == "allow_only"
    assert discover.overlay_mode_of({}) == "none"
    assert discover.execution_profile_of({"execution_profile": "strict"}, tmp_path) == "strict"
    assert discover.execution_profile_of({}, tmp_path) == "none"
    # no profile in the summary: the metrics table's most frequent value, ties lexical
    pl.DataFrame({"execution_profile": ["strict", "lite", None, "strict", "lite"]}) \
        .write_csv(tmp_path / "grid_metrics_table.csv")
    assert discover.execution_profile_of({}, tmp_path) == "lite"


def test_resolve_inputs_given_discovered_missing(tmp_path) -> None:
    found = tmp_path / "found"
    seen = []

    def finder(resolved):
        seen.append(dict(resolved))
        return found

    resolved, inputs = discover.resolve_inputs(
        {"a": tmp_path / "given", "c": None}, ("a", "b", "c"),
        {"b": finder, "c": lambda r: None})
    assert resolved == {"a": (tmp_path / "given").resolve(), "b": found.resolve(), "c": None}
    assert inputs == {"a": {"dir": str((tmp_path / "given").resolve()), "how": "given"},
                      "b": {"dir": str(found.resolve()), "how": "discovered"},
                      "c": {"dir": None, "how": "missing"}}
    assert seen[0]["a"] == (tmp_path / "given").resolve()  # later finders see earlier inputs
    with pytest.raises(ValueError, match="unknown report input"):
        discover.resolve_inputs({"typo": None}, ("a",), {})
