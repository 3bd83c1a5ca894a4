"""The production candidate pack (backtest_ops.md §9) on REAL grid folders made by the grid
runner over split-like HMM inputs (their identity names an HMM run, as a research split's
does), real walk-forward grids and a real execution realism report. The locked-model writer
(helper L's ``locked.lock``) is replaced through the pack's seam by a stand-in that writes two
files, so these tests check the pack around it: selection, strategy, thresholds, WF support,
files, ids, discovery, atomicity and sanity."""

import json
import math
import os
import shutil
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.backtest import metrics
from mf_pipeline.lib.candidates import locked, pack, pack_sanity, select
from mf_pipeline.lib.grids.combos import GridDimensions
from mf_pipeline.lib.grids.inputs import split_sources
from mf_pipeline.lib.grids.run import GridOptions, GridSource, run_grid
from mf_pipeline.lib.reports.realism import execution_realism_report
from mf_pipeline.lib.settings import Settings, load_settings
from mf_pipeline.lib.steps import calc_settings
from mf_pipeline.lib.steps.backtest.options import BacktestOptions, backtest_options
from mf_pipeline.lib.steps.backtest.run import BacktestInputs, prepare, simulate
from mf_pipeline.orchestration.freshness import research_settings_digest
from mf_pipeline_tests.unit import test_candidates_locked as real
from mf_pipeline_tests.unit.test_grid_engine import _inputs as flow_inputs
from mf_pipeline_tests.unit.test_report_discover import DIMS, hmm_inputs, make_wf

lake, lake_env = real.lake, real.lake_env  # the locked-model tests' split runs (real lock)
TEST_END = "2015-10-01"
EXEC2_MIN_PRICE = 20.0
"""exec2's grid overrides the lite profile's min price (2.0) with one that cuts rows."""


def split_inputs(root: Path, seed: int = 5, split: bool = True) -> BacktestInputs:
    """``hmm_inputs`` with a split's identity; its HMM run folder holds the decoded rows."""
    inputs = hmm_inputs(seed)
    if not split:
        inputs.identity = {"case": "file", "seed": seed}
        return inputs
    hmm_dir, cluster_dir = root / "research" / "hmm_run", root / "research" / "cluster_run"
    if not hmm_dir.is_dir():
        hmm_dir.mkdir(parents=True)
        cluster_dir.mkdir(parents=True)
        inputs.rows.select("ticker", "trade_date", "hmm_state_filtered") \
            .write_parquet(hmm_dir / "decoded_rows.parquet")  # fmt: skip
    inputs.identity = {"split_id": "wf_2015", "hmm_run_dir": str(hmm_dir),
                       "cluster_run_dir": str(cluster_dir), "test_end": TEST_END,
                       "direction_file": str(hmm_dir / "train_state_scorecard.csv"),
                       "policy_file": str(cluster_dir / "cluster_hardening_policy.json"),
                       "source": "hmm", "seed": seed}  # fmt: skip
    return inputs


def make_grid(settings: Settings, mode: str, profile: str, tag: str, split: bool = True,
              **overrides) -> Path:  # fmt: skip
    inputs = split_inputs(settings.artifacts_root.parent, split=split)
    base = backtest_options(settings, overlay_mode=mode, exec_profile=profile, **overrides)
    return run_grid(settings, [GridSource(inputs)], DIMS,
                    GridOptions(base=base, tag=tag)).output_dir


def settings_at(root: Path) -> Settings:
    """Settings whose every root (artifacts, data, logs, raw) is under ``root``."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("ARTIFACTS_ROOT", "DATA_ROOT", "LOGS_ROOT", "RAW_ROOT"):
            mp.setenv(f"MF_PIPELINE_PATHS__{name}", str(root / name.lower()))
        mp.delenv("MF_PIPELINE_SETTINGS_FILE", raising=False)
        return load_settings()


@pytest.fixture(scope="module")
def grid_lake(tmp_path_factory) -> tuple[Settings, dict[str, Path]]:
    """Split grids alpha (none/none), exec (allow_only/lite), exec2 (none/lite, min price
    override), then a NEWER file grid none/none (never a lockable candidate), a WF
    baseline/hybrid pair and an execution realism report over them."""
    settings = settings_at(tmp_path_factory.mktemp("pcp"))
    grids = {"alpha": make_grid(settings, "none", "none", "alpha"),
             "exec": make_grid(settings, "allow_only", "lite", "exec"),
             "exec2": make_grid(settings, "none", "lite", "exec2",
                                exec_min_price=EXEC2_MIN_PRICE),
             "file_alpha": make_grid(settings, "none", "none", "file", split=False),
             "wf_baseline": make_wf(settings, "none", "lite", "wfgrid-baseline"),
             "wf_hybrid": make_wf(settings, "allow_only", "lite", "wfgrid-hybrid")}
    grids["realism"] = Path(execution_realism_report(
        settings, {}, settings.artifacts_root / "execution_realism_reports")["output_dir"])
    return settings, grids


class FakeLock:
    """Stands in for ``locked.lock``: records its calls, writes two files."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple] = []
        self.fail = fail

    def __call__(self, settings, locked_dir: Path, grid_dir: Path, source_type: str,
                 overlay: bool) -> dict:  # fmt: skip
        self.calls.append((locked_dir, grid_dir, source_type, overlay))
        if self.fail:
            raise RuntimeError("lock failed")
        locked_dir.mkdir(parents=True)
        (locked_dir / "hmm_model_meta.json").write_text(json.dumps({"grid": str(grid_dir)}))
        (locked_dir / "scaler").mkdir()
        (locked_dir / "scaler" / "scaler_params.json").write_text(json.dumps({"o": overlay}))
        return {"files": ["hmm_model_meta.json", "scaler/scaler_params.json"]}


@pytest.fixture
def fake_lock(monkeypatch) -> FakeLock:
    lock = FakeLock()
    monkeypatch.setattr(pack, "lock_candidate", lock)
    return lock


@pytest.fixture(scope="module")
def built(grid_lake, tmp_path_factory) -> tuple[dict, Path, FakeLock]:
    """One pack built by discovery alone (no folder given)."""
    settings, _ = grid_lake
    lock = FakeLock()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pack, "lock_candidate", lock)
        summary = pack.build_pack(settings, {})
    return summary, Path(summary["output_dir"]), lock


def reference_winner(grid: Path, ranking: tuple[str, ...], min_trades: int) -> dict:
    """§9.2 in plain Python over the grid's metrics rows (an independent reading)."""
    rows = [r for r in pl.read_parquet(grid / "grid_metrics_table.parquet").to_dicts()
            if r["status"] == "SUCCESS" and r["source_type"] == "hmm"
            and not r["is_zero_trade_combo"] and (r["trade_count"] or 0) > 0]
    kept = [r for r in rows if r["trade_count"] >= min_trades]
    if not kept and min_trades > 10:
        kept = [r for r in rows if r["trade_count"] >= 10]

    def key(r: dict) -> tuple:
        out: list = []
        for spec in ranking:
            col, way = spec.split()
            v = r[col]
            if col == "combo_id":
                out.append(v or "~")
                continue
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            out.append((missing, 0.0 if missing else (-v if way == "desc" else v)))
        return tuple(out)

    return min(kept, key=key)


def options_of(strategy: dict) -> BacktestOptions:
    return BacktestOptions(**{f.name: tuple(strategy[f.name])
                              if isinstance(strategy[f.name], list) else strategy[f.name]
                              for f in fields(BacktestOptions)})  # fmt: skip


def test_discovery_picks_the_split_grids_and_selects_by_the_spec(grid_lake, built) -> None:
    settings, grids = grid_lake
    summary, folder, _ = built
    packet = pack.read_packet(folder)
    cands = packet["candidates"]
    assert sorted(cands) == summary["selected_labels"] == [select.ALPHA, select.EXEC,
                                                           select.EXEC_2]  # fmt: skip
    assert summary["candidate_count"] == 3
    expected = {select.ALPHA: "alpha", select.EXEC: "exec", select.EXEC_2: "exec2"}
    for label, key in expected.items():
        # the newer file grid (none/none) is not lockable, so alpha is the split grid
        assert cands[label]["selected_from_grid_dir"] == str(grids[key]), label
        ref = reference_winner(grids[key], select.RANKINGS[label], 25)
        assert cands[label]["combo_id"] == ref["combo_id"], label
        assert cands[label]["selection_trade_threshold_used"] == \
            (25 if ref["trade_count"] >= 25 else 10)  # fmt: skip
    assert packet["source_artifacts"] == {
        "a1_grid_dir": str(grids["alpha"]), "a2_grid_dir": str(grids["exec2"]),
        "a3_grid_dir": None, "b_grid_dir": str(grids["exec"]), "c_grid_dir": None,
        "wf_baseline_dir": str(grids["wf_baseline"]), "wf_hybrid_dir": str(grids["wf_hybrid"]),
        "execution_realism_report_dir": str(grids["realism"])}
    assert {k: v["how"] for k, v in summary["inputs"].items()} == dict.fromkeys(
        pack.INPUT_KEYS, "discovered")
    assert packet["pcp_version"] == "production_candidate_pack_v1"
    assert packet["selection_policy"]["exec_ranking"] == list(select.EXEC_RANKING)
    assert packet["selection_policy"]["min_trades_requested"] == 25


def test_strategy_payload_reproduces_the_combo(grid_lake, built) -> None:
    """Re-running each candidate's ``strategy`` on the grid's rows gives the grid row's
    numbers; exec2's min-price override is in it and matters."""
    settings, grids = grid_lake
    _, folder, _ = built
    cands = pack.read_packet(folder)["candidates"]
    for label, key in ((select.ALPHA, "alpha"), (select.EXEC, "exec"),
                       (select.EXEC_2, "exec2")):
        c = cands[label]
        options = options_of(c["strategy"])
        result = simulate(prepare(settings, split_inputs(settings.artifacts_root.parent),
                                  options), options)  # fmt: skip
        head = metrics.trade_summary(result.trades, result.diagnostics)
        row = pl.read_parquet(grids[key] / "grid_metrics_table.parquet") \
            .filter(pl.col("combo_id") == c["combo_id"]).row(0, named=True)  # fmt: skip
        assert head["trade_count"] == row["trade_count"], label
        assert head["expectancy"] == pytest.approx(row["expectancy"], rel=1e-12), label
        assert (options.hold_bars, options.fee_bps_per_side) == (row["hold_bars"],
                                                                 row["fee_bps_per_side"])
    modes = {label: (c["strategy"]["overlay_mode"], c["strategy"]["exec_profile"],
                     c["strategy"]["exec_min_price"]) for label, c in cands.items()}
    assert modes == {select.ALPHA: ("none", "none", None),
                     select.EXEC: ("allow_only", "lite", None),
                     select.EXEC_2: ("none", "lite", EXEC2_MIN_PRICE)}
    # without the override the same combo trades differently: the override is not decoration
    plain = options_of({**cands[select.EXEC_2]["strategy"], "exec_min_price": None})
    head = metrics.trade_summary(*(lambda r: (r.trades, r.diagnostics))(simulate(
        prepare(settings, split_inputs(settings.artifacts_root.parent), plain), plain)))
    assert head["trade_count"] != cands[select.EXEC_2]["expected_behavior_snapshot"][
        "trade_count"]


def test_thresholds_used_are_resolved_from_profile_and_overrides(grid_lake, built) -> None:
    """Fault 23: a profile alone gives its thresholds, not nulls; overrides replace them."""
    settings, _ = grid_lake
    cands = pack.read_packet(built[1])["candidates"]
    lite = settings.backtest_execution_realism.profiles["lite"]
    used = {label: c["execution_realism"]["thresholds_used"] for label, c in cands.items()}
    assert used[select.EXEC] == {"min_price": lite.min_price,
                                 "min_dollar_vol20": lite.min_dollar_vol_20,
                                 "max_vol_pct": lite.max_vol_pct,
                                 "min_history_bars": lite.min_history_bars_for_execution}
    assert used[select.EXEC] == {"min_price": 2.0, "min_dollar_vol20": 1_000_000.0,
                                 "max_vol_pct": 0.12, "min_history_bars": 50}
    assert used[select.EXEC_2] == {**used[select.EXEC], "min_price": EXEC2_MIN_PRICE}
    assert used[select.ALPHA] == dict.fromkeys(used[select.EXEC])
    assert cands[select.EXEC]["execution_realism"]["profile"] == "lite"
    assert cands[select.EXEC]["overlay"]["enabled"] is True
    assert cands[select.EXEC]["overlay"]["mode"] == "allow_only"
    assert cands[select.ALPHA]["overlay"]["enabled"] is False


def test_snapshot_and_edge_match_the_row_and_the_trades(grid_lake, built) -> None:
    """The snapshot is the grid row; ret_cv / ret_p10 / downside_std equal a numpy
    recomputation over the combo's valid trades (std0, linear quantile; fault 21)."""
    _, grids = grid_lake
    cands = pack.read_packet(built[1])["candidates"]
    for label, key in ((select.ALPHA, "alpha"), (select.EXEC, "exec")):
        c = cands[label]
        snap = c["expected_behavior_snapshot"]
        row = pl.read_parquet(grids[key] / "grid_metrics_table.parquet") \
            .filter(pl.col("combo_id") == c["combo_id"]).row(0, named=True)  # fmt: skip
        pf = None if row["profit_factor"] in (None, math.inf) else row["profit_factor"]
        assert snap == {"best_expectancy": row["expectancy"], "PF": pf,
                        "PF_inf": row["profit_factor_inf"],
                        "robustness_v2": row["robustness_score_v2"], "ret_cv": row["ret_cv"],
                        "trade_count": row["trade_count"], "zero_trade_share": 0.0,
                        "ret_p10": row["ret_p10"], "downside_std": row["downside_std"],
                        "edge": {"ret_cv": row["ret_cv"], "ret_p10": row["ret_p10"],
                                 "downside_std": row["downside_std"],
                                 "definition": pack.EDGE_DEFINITION}}
        trades = pl.scan_parquet(grids[key] / "grid_trades", hive_partitioning=True) \
            .filter(pl.col("combo_id") == c["combo_id"], pl.col("is_valid_trade")) \
            .collect()["net_return"].to_numpy()  # fmt: skip
        r = trades[np.isfinite(trades)]
        assert snap["edge"]["ret_cv"] == pytest.approx(np.std(r) / abs(np.mean(r)), rel=1e-9)
        assert snap["edge"]["ret_p10"] == pytest.approx(np.quantile(r, 0.1), rel=1e-9)
        assert snap["edge"]["downside_std"] == pytest.approx(np.std(r[r < 0]), rel=1e-9)


def test_wf_consistency_from_the_realism_report_on_exec_only(grid_lake, built) -> None:
    _, grids = grid_lake
    summary, folder, _ = built
    cands = pack.read_packet(folder)["candidates"]
    row = pl.read_csv(grids["realism"] / "execution_realism_wf_table.csv") \
        .filter(pl.col("source") == "hmm").row(0, named=True)  # fmt: skip
    assert row["status"] == "OK"
    assert cands[select.EXEC]["wf_consistency"] == {"from": "execution_realism_report", **row}
    assert summary["wf_consistency"] == cands[select.EXEC]["wf_consistency"]
    assert cands[select.ALPHA]["wf_consistency"] == cands[select.EXEC_2]["wf_consistency"] == {}


def test_wf_consistency_fallback_and_no_arithmetic_on_nulls(grid_lake, tmp_path) -> None:
    """Without a realism report: hybrid − baseline from the WF source summaries; a null side
    gives a null delta, never a TypeError or a silent 0 (fault 24)."""
    _, grids = grid_lake
    name = "wf_grid_source_summary.csv"
    base = pl.read_csv(grids["wf_baseline"] / name).filter(pl.col("source_type") == "hmm") \
        .row(0, named=True)  # fmt: skip
    hyb = pl.read_csv(grids["wf_hybrid"] / name).filter(pl.col("source_type") == "hmm") \
        .row(0, named=True)  # fmt: skip
    got = pack.wf_consistency(None, grids["wf_baseline"], grids["wf_hybrid"])
    assert got == {"from": "wf_grid_source_summary", "source": "hmm",
                   "split_count": hyb["splits_covered"],
                   "avg_delta_expectancy": hyb["expectancy_mean"] - base["expectancy_mean"],
                   "avg_delta_pf": hyb["profit_factor_mean"] - base["profit_factor_mean"],
                   "avg_delta_robustness_v2": hyb["robustness_v2_mean"]
                   - base["robustness_v2_mean"],
                   "avg_delta_ret_cv": hyb["ret_cv_median"] - base["ret_cv_median"]}
    assert got["split_count"] == 2
    hybrid = tmp_path / "hybrid"
    shutil.copytree(grids["wf_hybrid"], hybrid)
    table = pl.read_csv(hybrid / name).with_columns(expectancy_mean=pl.lit(None, pl.Float64))
    table.write_csv(hybrid / name)
    nulled = pack.wf_consistency(None, grids["wf_baseline"], hybrid)
    assert nulled["avg_delta_expectancy"] is None
    assert nulled["avg_delta_pf"] == got["avg_delta_pf"]
    assert pack.wf_consistency(None, None, grids["wf_hybrid"]) == {}
    assert pack.wf_consistency(tmp_path / "no_report", None, None) == {}


def test_files_table_summary_report_and_locked_dirs(grid_lake, built) -> None:
    settings, grids = grid_lake
    summary, folder, lock = built
    assert folder.parent == settings.artifacts_root / "production_candidates"
    assert folder.name == f"{summary['run_id']}_production_candidate_pack_v1"
    assert summary["run_id"].startswith("pcp-") and len(summary["run_id"]) == 16
    assert sorted(p.name for p in folder.iterdir()) == sorted([*pack.FILES, "locked"])
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    on_disk = json.loads((folder / pack.SUMMARY).read_text())
    assert on_disk == summary and on_disk["finished_ts"] >= pack.read_packet(folder)["as_of"]
    packet = pack.read_packet(folder)
    cands = packet["candidates"]
    # the lock seam got each candidate's grid, source hmm and the overlay flag
    called = {Path(d).name: (g, s, o) for d, g, s, o in lock.calls}
    assert called == {select.ALPHA: (grids["alpha"], "hmm", False),
                      select.EXEC: (grids["exec"], "hmm", True),
                      select.EXEC_2: (grids["exec2"], "hmm", False)}
    for label, c in cands.items():
        assert c["locked_dir"] == f"locked/{label}"
        assert c["locked"] == {"files": ["hmm_model_meta.json", "scaler/scaler_params.json"]}
        assert sorted(c["locked_files"]) == ["hmm_model_meta.json", "scaler/scaler_params.json"]
        assert (folder / c["locked_dir"] / "scaler" / "scaler_params.json").is_file()
        assert c["source_grid_dir"] == c["selected_from_grid_dir"]
        assert c["source_type"] == c["input_type"] == "hmm"
        assert c["split"]["split_id"] == "wf_2015"
        assert c["lake_last_date"] == TEST_END  # decoded rows run to 2015-10-27
        assert c["fingerprints"] == {"research_settings_digest":
                                     research_settings_digest(settings), "lake_settings": {}}
    table = pl.read_csv(folder / pack.TABLE)
    assert table.columns == list(pack.TABLE_COLUMNS)
    assert table["label"].to_list() == sorted(cands)
    for row in table.iter_rows(named=True):
        c = cands[row["label"]]
        assert (row["combo_id"], row["trade_count"], row["hold_bars"]) == (
            c["combo_id"], c["expected_behavior_snapshot"]["trade_count"],
            c["strategy_params"]["hold_bars"])
        assert row["execution_profile"] == c["execution_realism"]["profile"]
        assert row["locked_dir"] == c["locked_dir"]
    report = (folder / pack.REPORT).read_text()
    assert f"mf candidate-rerun-run --pcp-pack-dir {folder}" in report
    assert "## Walk-forward support" in report and select.EXEC_2 in report
    assert pack_sanity.pack_sanity(folder) == {"pack_dir": str(folder), "status": "OK",
                                               "errors": [], "warnings": [],
                                               "candidate_count": 3}  # fmt: skip


def test_fingerprints_name_each_recorded_lake_layer(tmp_path) -> None:
    settings = settings_at(tmp_path)
    path = calc_settings.record_path(settings, "features")
    assert path.is_relative_to(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"layer": "features", "fingerprint": "f" * 16, "settings": {}}))
    assert pack.fingerprints(settings) == {
        "research_settings_digest": research_settings_digest(settings),
        "lake_settings": {"features": "f" * 16}}


def test_lake_last_date_is_the_decoded_rows_up_to_test_end(grid_lake) -> None:
    settings, _ = grid_lake
    identity = split_inputs(settings.artifacts_root.parent).identity
    assert pack.lake_last_date(identity) == TEST_END
    assert pack.lake_last_date({**identity, "test_end": None}) == "2015-10-27"
    assert pack.lake_last_date({**identity, "hmm_run_dir": "/nowhere"}) == TEST_END


def test_rerun_converges_and_latest_pack_is_by_recorded_finish(grid_lake, built, fake_lock) -> None:
    settings, _ = grid_lake
    summary, folder, _ = built
    again = pack.build_pack(settings, {})
    assert again["run_id"] == summary["run_id"] and Path(again["output_dir"]) == folder
    assert again["finished_ts"] > summary["finished_ts"]
    other = pack.build_pack(settings, {}, include_exec2=False)
    other_dir = Path(other["output_dir"])
    assert other_dir != folder and other["selected_labels"] == [select.ALPHA, select.EXEC]
    assert other["inputs"]["exec2"]["how"] == "missing"
    future = time.time() + 3600  # an older pack with a newer mtime is not the latest
    os.utime(folder, (future, future))
    assert pack.latest_pack(settings.artifacts_root) == other_dir
    with pytest.raises(FileNotFoundError, match="no production candidate pack"):
        pack.latest_pack(settings.artifacts_root / "nowhere")


def test_given_folders_missing_exec_grids_and_out_dir(grid_lake, tmp_path, fake_lock) -> None:
    """In an empty artifacts root: only alpha given -> EXEC and EXEC_2 skipped with warnings;
    nothing given -> error; a file grid given as alpha -> refused, naming it."""
    _, grids = grid_lake
    settings = settings_at(tmp_path)
    out = tmp_path / "my_pack"
    summary = pack.build_pack(settings, {"alpha": grids["alpha"]}, min_trades=5,
                              out_dir=out)  # fmt: skip
    assert summary["selected_labels"] == [select.ALPHA]
    assert summary["warnings"] == [
        "CANDIDATE_EXEC: skipped, no exec grid given or discovered",
        "CANDIDATE_EXEC_2: skipped, no exec2 grid given or discovered"]
    assert summary["wf_consistency"] == {} and summary["output_dir"] == str(out)
    assert summary["inputs"]["alpha"]["how"] == "given"
    assert pack_sanity.pack_sanity(out)["status"] == "WARN"  # the summary's warnings
    swapped = pack.build_pack(settings, {"alpha": grids["exec"], "exec": grids["alpha"]},
                              include_exec2=False)  # fmt: skip
    assert swapped["warnings"] == [
        f"CANDIDATE_ALPHA: the alpha grid {grids['exec']} records overlay allow_only / "
        "profile lite, not none / none",
        f"CANDIDATE_EXEC: the exec grid {grids['alpha']} records overlay none / profile none, "
        "not allow_only / lite"]
    again = pack.build_pack(settings, {"alpha": grids["alpha"]}, min_trades=5, out_dir=out)
    assert again["run_id"] == summary["run_id"]  # an earlier pack's folder is replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="is not a candidate pack"):
        pack.build_pack(settings, {"alpha": grids["alpha"]}, out_dir=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    with pytest.raises(FileNotFoundError, match="no alpha grid"):
        pack.build_pack(settings, {})
    with pytest.raises(ValueError, match=f"{grids['file_alpha']} cannot be locked"):
        pack.build_pack(settings, {"alpha": grids["file_alpha"]})
    with pytest.raises(FileNotFoundError, match="grid_summary.json is missing"):
        pack.build_pack(settings, {"alpha": tmp_path})
    with pytest.raises(ValueError, match="unknown report input"):
        pack.build_pack(settings, {"alpah": grids["alpha"]})


def test_a_multi_source_grid_is_discovered_and_only_its_hmm_rows_compete(tmp_path,
                                                                          fake_lock) -> None:
    """The demo's grids are multi-source: one with an hmm split source is an alpha grid, and
    the candidate is the best HMM combo even when a flow combo scores higher."""
    settings = settings_at(tmp_path)
    flow = flow_inputs()
    flow.identity = {**split_inputs(tmp_path).identity, "source": "flow"}
    outcome = run_grid(settings, [GridSource(split_inputs(tmp_path)), GridSource(flow)], DIMS,
                       GridOptions(base=backtest_options(settings), tag="multi"))
    table = outcome.metrics
    assert outcome.summary["scope"] == "multi-flow-hmm"
    best_any = select.best_first(table.filter(~pl.col("is_zero_trade_combo")),
                                 select.ALPHA_RANKING).row(0, named=True)  # fmt: skip
    assert best_any["source_type"] == "flow"  # so restricting to hmm rows matters here
    summary = pack.build_pack(settings, {}, include_exec2=False)
    assert summary["inputs"]["alpha"] == {"dir": str(outcome.output_dir), "how": "discovered"}
    c = pack.read_packet(Path(summary["output_dir"]))["candidates"][select.ALPHA]
    assert c["combo_id"] == reference_winner(outcome.output_dir, select.ALPHA_RANKING,
                                             25)["combo_id"]  # fmt: skip
    row = table.filter(pl.col("combo_id") == c["combo_id"], pl.col("source_type") == "hmm")
    assert c["expected_behavior_snapshot"]["trade_count"] == row["trade_count"][0]


def test_relaxed_threshold_reaches_packet_and_warnings(grid_lake, tmp_path, fake_lock) -> None:
    _, grids = grid_lake
    counts = pl.read_parquet(grids["alpha"] / "grid_metrics_table.parquet") \
        .filter(~pl.col("is_zero_trade_combo"))["trade_count"]  # fmt: skip
    too_many = int(counts.max()) + 1
    summary = pack.build_pack(settings_at(tmp_path), {"alpha": grids["alpha"]},
                              min_trades=too_many, include_exec2=False)  # fmt: skip
    warning = (f"alpha: no combos with trade_count >= {too_many}; relaxed to "
               "trade_count >= 10.")
    assert warning in summary["warnings"]
    c = pack.read_packet(Path(summary["output_dir"]))["candidates"][select.ALPHA]
    assert c["selection_trade_threshold_used"] == 10 and warning in c["notes"]
    assert c["combo_id"] == reference_winner(grids["alpha"], select.ALPHA_RANKING,
                                             too_many)["combo_id"]


def test_a_failed_lock_leaves_no_pack(grid_lake, tmp_path, monkeypatch) -> None:
    _, grids = grid_lake
    settings = settings_at(tmp_path)
    monkeypatch.setattr(pack, "lock_candidate", FakeLock(fail=True))
    with pytest.raises(RuntimeError, match="lock failed"):
        pack.build_pack(settings, {"alpha": grids["alpha"]})
    packs = settings.artifacts_root / "production_candidates"
    assert not packs.exists() or not list(packs.iterdir())


def test_sanity_names_each_broken_part(built, tmp_path) -> None:
    _, folder, _ = built
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    packet = pack.read_packet(copy)
    cands = packet["candidates"]
    (copy / "locked" / select.ALPHA / "hmm_model_meta.json").unlink()
    (copy / "locked" / select.EXEC / "scaler" / "scaler_params.json").write_text("{}")
    shutil.rmtree(copy / "locked" / select.EXEC_2)
    cands[select.EXEC]["expected_behavior_snapshot"]["trade_count"] = 0
    cands[select.EXEC]["combo_id"] = None
    cands[select.EXEC_2]["overlay"] = {"enabled": True, "mode": None}
    cands[select.EXEC_2]["execution_realism"] = None
    cands[select.ALPHA]["selected_from_grid_dir"] = str(tmp_path / "gone")
    (copy / pack.PACKET).write_text(json.dumps(packet))
    table = pl.read_csv(copy / pack.TABLE)
    table.head(2).write_csv(copy / pack.TABLE)
    got = pack_sanity.pack_sanity(copy)
    a, e, e2 = (copy / "locked" / x for x in (select.ALPHA, select.EXEC, select.EXEC_2))
    assert got["status"] == "FAIL"
    assert got["errors"] == [
        f"CANDIDATE_ALPHA: selected_from_grid_dir missing -> {tmp_path / 'gone'}",
        f"CANDIDATE_ALPHA: locked file missing -> {a / 'hmm_model_meta.json'}",
        "CANDIDATE_EXEC: trade_count must be > 0", "CANDIDATE_EXEC: combo_id missing",
        "CANDIDATE_EXEC: locked file changed since the pack was built -> "
        f"{e / 'scaler' / 'scaler_params.json'}",
        "CANDIDATE_EXEC_2: overlay enabled but mode missing",
        "CANDIDATE_EXEC_2: execution_realism block missing",
        f"CANDIDATE_EXEC_2: locked_dir missing -> {e2}"]
    assert got["warnings"] == ["table_row_count_mismatch: table=2 packet=3"]
    (copy / pack.PACKET).write_text(json.dumps({**packet, "candidates": {}}))
    assert pack_sanity.pack_sanity(copy)["errors"] == ["no_candidates_in_policy_packet"]
    (copy / pack.REPORT).unlink()
    assert pack_sanity.pack_sanity(copy)["errors"] == [f"missing file: {copy / pack.REPORT}"]


def test_a_pack_locked_for_real_from_split_grids_passes_sanity(lake_env, tmp_path) -> None:
    """build_pack with helper L's real ``locked.lock`` on grids over a research split (alpha:
    none/none, exec2: none/lite; that split's cluster policy blocks every row, so an overlay
    grid has no trade): each locked folder holds exactly the lock's files (+ its lock.json)
    with the packet's hashes, and ``lake_last_date`` is the last row the grids traded."""
    settings = load_settings()
    real._drop_appended(lake_env)
    dims = GridDimensions(hold_bars=(3, 5), fee_bps_per_side=(0.0,), exit_mode=("horizon",))
    sources = split_sources(settings, real.SPLIT, ["hmm"], str(lake_env.hmm_dir),
                            str(lake_env.cluster_dir), None, policy_filter_mode="allow_only")
    alpha = run_grid(settings, sources, dims, GridOptions(tag="a"), folder=tmp_path / "alpha")
    lite = backtest_options(settings, exec_profile="lite")
    exec2 = run_grid(settings, sources, dims, GridOptions(base=lite, tag="e2"),
                     folder=tmp_path / "exec2")  # fmt: skip
    summary = pack.build_pack(settings, {"alpha": alpha.output_dir,
                                         "exec2": exec2.output_dir},
                              min_trades=1, out_dir=tmp_path / "pack")  # fmt: skip
    folder = Path(summary["output_dir"])
    assert summary["selected_labels"] == [select.ALPHA, select.EXEC_2]
    assert summary["warnings"] == ["CANDIDATE_EXEC: skipped, no exec grid given or discovered"]
    assert pack_sanity.pack_sanity(folder)["errors"] == []
    cands = pack.read_packet(folder)["candidates"]
    last_row = sources[0].inputs.rows["trade_date"].max().isoformat()
    for label, grid in ((select.ALPHA, alpha), (select.EXEC_2, exec2)):
        c = cands[label]
        lock = locked.read_lock(folder / c["locked_dir"])
        assert lock["overlay"] is False and lock["source_grid_dir"] == str(grid.output_dir)
        assert {k: v for k, v in c["locked_files"].items() if k != locked.LOCK_FILE} \
            == lock["files"] == c["locked"]["files"]  # fmt: skip
        assert set(c["locked_files"]) - set(lock["files"]) == {locked.LOCK_FILE}
        assert c["lake_last_date"] == last_row
        assert c["split"]["split_id"] == real.SPLIT
    assert cands[select.EXEC_2]["execution_realism"]["thresholds_used"]["min_price"] == 2.0
