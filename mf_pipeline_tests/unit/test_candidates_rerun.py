"""Candidate re-run pack (§10) on a real grid: the locked inputs come through one seam
(``locked.locked_inputs``) that returns the very rows the grid traded, so an unchanged candidate
must come back OK with zero deltas and its own robustness score; flipped state directions must
FAIL with the drop flags; a failing candidate is an ERROR row that never aborts the pack; the
micro-grid, the walk-forward check, convergence and the §10.5 sanity are checked on the folder.
Last, a pack built by ``build_pack`` with the real lock of the locked-model tests' split runs
re-runs with zero drift on the lock rows, then after a nightly append."""

import json
import shutil
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from unittest import mock

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.candidates import locked, rerun
from mf_pipeline.lib.candidates.pack import fingerprints
from mf_pipeline.lib.candidates.rerun_sanity import rerun_sanity
from mf_pipeline.lib.grids.combos import GridDimensions
from mf_pipeline.lib.grids.run import GridOptions, GridSource, run_grid
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.lib.steps.backtest.options import backtest_options
from mf_pipeline.lib.steps.backtest.run import BacktestInputs, finite_json
from mf_pipeline_tests.unit import test_candidates_locked as real
from mf_pipeline_tests.unit.test_grid_sanity import _sources

AS_OF = date(2016, 12, 31)
ALPHA, EXEC = "CANDIDATE_ALPHA", "CANDIDATE_EXEC"
PICKS = {ALPHA: (10, 5.0), EXEC: (5, 0.0)}  # label -> (hold_bars, fee_bps_per_side)
lake, lake_env = real.lake, real.lake_env  # the locked-model tests' lake, runs and lock
MU = np.array([0.0, 0.004, 0.002, -0.004, -0.002])  # daily drift per HMM state


def _scorecard(sign: float = 1.0) -> pl.DataFrame:
    mean = sign * np.array([1e-4, 0.02, 0.01, -0.02, -0.01])
    return pl.DataFrame({"state_id": range(5), "fwd_ret_10_mean": mean,
                         "fwd_ret_10_ci_lo": mean - 0.001, "fwd_ret_10_ci_hi": mean + 0.001})


def _hmm_inputs(tag: str = "grid", sign: float = 1.0) -> BacktestInputs:
    """Three tickers whose prices drift with their (blocky) state: long states 1, 2 rise."""
    rng = np.random.default_rng(5)
    frames = []
    for t in range(3):
        n = 300
        state = np.repeat(rng.integers(0, 5, n // 10 + 1), 10)[:n]
        close = 20 * np.exp(np.cumsum(MU[state] + rng.normal(0, 0.01, n)))
        frames.append(pl.DataFrame({
            "ticker": f"H{t}", "trade_date": [date(2015, 1, 1) + timedelta(days=i)
                                              for i in range(n)],
            "open": close * np.exp(rng.normal(0, 0.002, n)), "high": close * 1.01,
            "low": close * 0.99, "close": close, "volume": 1e6,
            "hmm_state_filtered": state.astype(np.int64),
            "hmm_prob_filtered_max": 0.9}))  # fmt: skip
    return BacktestInputs(rows=pl.concat(frames), input_type="hmm", tag=tag,
                          identity={"case": "crp", "sign": sign}, state_col="hmm_state_filtered",
                          scorecard=_scorecard(sign), scorecard_source="train_scorecard")


def _pack(settings, root):
    """A pack folder whose two candidates are combos of a real grid on :func:`_hmm_inputs`."""
    grid = run_grid(settings, [GridSource(_hmm_inputs())],
                    GridDimensions(hold_bars=(5, 10), fee_bps_per_side=(0.0, 5.0)),
                    GridOptions(tag="crp"))
    pack = root / "pcp-0123456789ab_production_candidate_pack_v1"
    candidates = {}
    for label, (hold, fee) in PICKS.items():
        row = grid.metrics.filter(pl.col("hold_bars") == hold,
                                  pl.col("fee_bps_per_side") == fee).row(0, named=True)
        strategy = backtest_options(settings, hold_bars=hold, fee_bps_per_side=fee).payload()
        (pack / "locked" / label).mkdir(parents=True)
        candidates[label] = {
            "label": label, "source_type": "hmm", "input_type": "hmm",
            "combo_id": row["combo_id"], "locked_dir": f"locked/{label}",
            "source_grid_dir": str(grid.output_dir), "strategy": strategy,
            "fingerprints": fingerprints(settings),
            "overlay": {"enabled": False, "mode": "none", "match_rate": None,
                        "unknown_rate": None},
            "execution_realism": {"profile": "none",
                                  "eligibility_rate": row["exec_eligibility_rate"]},
            "expected_behavior_snapshot": {
                "best_expectancy": row["expectancy"], "PF": row["profit_factor"],
                "robustness_v2": row["robustness_score_v2"], "ret_cv": row["ret_cv"],
                "trade_count": row["trade_count"],
                "zero_trade_share": 1.0 if row["is_zero_trade_combo"] else 0.0,
                "ret_p10": row["ret_p10"], "downside_std": row["downside_std"]},
        }  # fmt: skip
    packet = {"pcp_version": "production_candidate_pack_v1", "candidates": candidates}
    (pack / rerun.PACKET).write_text(json.dumps(finite_json(packet)))
    (pack / rerun.PACK_SUMMARY).write_text(json.dumps({"run_id": "pcp-0123456789ab"}))
    return pack, grid


def _seam(flip: set[str] = frozenset(), fail: set[str] = frozenset()):
    calls = []

    def fake(settings, locked_dir, source_type, as_of, overlay, tag):
        calls.append((locked_dir, source_type, as_of, overlay, tag))
        label = locked_dir.name
        if label in fail:
            raise RuntimeError(f"locked model of {label} unreadable")
        inputs = _hmm_inputs(tag, -1.0 if label in flip else 1.0)
        inputs.rows = inputs.rows.filter(pl.col("trade_date") <= as_of)
        return inputs

    return fake, calls


@pytest.fixture
def pack(isolated, tmp_path):
    settings = isolated(tmp_path / "raw")
    return (settings, *_pack(settings, tmp_path))


def _table(summary) -> pl.DataFrame:
    return pl.read_csv(f"{summary['output_dir']}/{rerun.TABLE}", infer_schema_length=None)


def test_unchanged_candidates_are_ok_with_zero_drift_and_reruns_converge(pack) -> None:
    settings, pack_dir, grid = pack
    fake, calls = _seam()
    with mock.patch.object(locked, "locked_inputs", fake):
        summary = rerun.candidate_rerun(settings, pack_dir, AS_OF)
    assert summary["overall_status"] == "OK" and summary["candidate_count"] == 2
    assert summary["warnings"] == []
    assert summary["status_counts"] == [{"drift_status": "OK", "count": 2}]
    assert [c[1:] for c in calls] == [("hmm", AS_OF, False, "2016-12-31-candidate_alpha"),
                                      ("hmm", AS_OF, False, "2016-12-31-candidate_exec")]
    assert calls[0][0] == pack_dir / "locked" / ALPHA
    table = _table(summary)
    assert table["candidate_label"].to_list() == [ALPHA, EXEC]
    for row in table.iter_rows(named=True):
        g = grid.metrics.filter(pl.col("combo_id") == row["combo_id"]).row(0, named=True)
        for name, col in (("expectancy", "expectancy"), ("profit_factor", "profit_factor"),
                          ("ret_cv", "ret_cv"), ("trade_count", "trade_count"),
                          ("robustness_v2", "robustness_score_v2")):
            assert row[f"observed_{name}"] == pytest.approx(g[col], rel=1e-12), name
            assert row[f"expected_{name}"] == pytest.approx(g[col], rel=1e-12), name
            assert abs(row[f"delta_{name}_abs"]) < 1e-9, name
        assert row["drift_status"] == "OK" and row["coverage_drift_status"] == "OK"
        assert row["drift_reasons"] is None and row["error_message"] is None
        run_summary = json.loads((Path(row["backtest_run_dir"]) /
                                  "backtest_summary.json").read_text())
        assert row["observed_expectancy"] == run_summary["headline"]["expectancy"]
    out = summary["output_dir"]
    for name in ("backtest_run_dir.txt", "backtest_summary_path.txt", "backtest_summary.json",
                 "drift_metrics.json", "coverage_drift_metrics.json"):
        assert (Path(out) / "candidates" / ALPHA / name).is_file(), name
    manifest = json.loads((Path(out) / rerun.MANIFEST).read_text())
    assert manifest["crp_version"] == "candidate_rerun_pack_v1"
    assert manifest["as_of_tag"] == "2016-12-31" and manifest["micro_grid_enabled"] is False
    assert [c["drift_status"] for c in manifest["candidates"]] == ["OK", "OK"]
    assert out.endswith(f"{summary['rerun_id']}_candidate_rerun_pack_v1")
    assert "/candidate_reruns/crp-" in out and summary["finished_ts"]
    assert rerun_sanity(out)["status"] == "PASS"
    with mock.patch.object(locked, "locked_inputs", _seam()[0]):
        again = rerun.candidate_rerun(settings, pack_dir, AS_OF)
        later = rerun.candidate_rerun(settings, pack_dir, AS_OF + timedelta(days=1))
    assert again["rerun_id"] == summary["rerun_id"] and again["output_dir"] == out
    assert later["rerun_id"] != summary["rerun_id"]


def test_flipped_directions_fail_with_the_drop_flags(pack) -> None:
    settings, pack_dir, _ = pack
    with mock.patch.object(locked, "locked_inputs", _seam(flip={ALPHA})[0]):
        summary = rerun.candidate_rerun(settings, pack_dir, AS_OF)
    assert summary["overall_status"] == "DRIFT_FAIL"
    table = _table(summary)
    alpha = table.filter(pl.col("candidate_label") == ALPHA).row(0, named=True)
    assert alpha["drift_status"] == "DRIFT_FAIL"
    flags = alpha["drift_reasons"].split(",")
    assert {"expectancy_drop", "profit_factor_drop", "robustness_v2_drop"} <= set(flags)
    assert alpha["expected_expectancy"] > 0 > alpha["observed_expectancy"]
    e, o = alpha["expected_expectancy"], alpha["observed_expectancy"]
    assert alpha["delta_expectancy_pct"] == pytest.approx((o - e) / abs(e))
    e, o = alpha["expected_robustness_v2"], alpha["observed_robustness_v2"]
    assert alpha["delta_robustness_v2_abs"] == pytest.approx(o - e) and o - e < -10.0
    record = json.loads((Path(summary["output_dir"]) / "candidates" / ALPHA /
                         "drift_metrics.json").read_text())
    assert record["drift_flags"] == flags and record["metric_drift_status"] == "DRIFT_FAIL"
    exec_row = table.filter(pl.col("candidate_label") == EXEC).row(0, named=True)
    assert exec_row["drift_status"] == "OK"  # the other candidate is untouched


def test_a_failing_candidate_is_an_error_row_and_never_aborts_the_pack(pack) -> None:
    settings, pack_dir, _ = pack
    packet = json.loads((pack_dir / rerun.PACKET).read_text())
    packet["candidates"][EXEC]["fingerprints"]["research_settings_digest"] = "old"
    (pack_dir / rerun.PACKET).write_text(json.dumps(packet))
    with mock.patch.object(locked, "locked_inputs", _seam(fail={EXEC})[0]):
        summary = rerun.candidate_rerun(settings, pack_dir, AS_OF)
    assert summary["overall_status"] == "ERROR"
    assert summary["status_counts"] == [{"drift_status": "OK", "count": 1},
                                        {"drift_status": "ERROR", "count": 1}]
    table = _table(summary)
    bad = table.filter(pl.col("candidate_label") == EXEC).row(0, named=True)
    assert bad["drift_status"] == "ERROR" and bad["backtest_run_dir"] is None
    assert bad["error_message"] == f"RuntimeError: locked model of {EXEC} unreadable"
    assert summary["warnings"][0].startswith(f"{EXEC}: research settings changed since the lock")
    assert summary["warnings"][1] == f"{EXEC}: ERROR {bad['error_message']}"
    record = json.loads((Path(summary["output_dir"]) / "candidates" / EXEC /
                         "drift_metrics.json").read_text())
    assert record["drift_status"] == "ERROR" and "unreadable" in record["error"]
    report = rerun_sanity(summary["output_dir"])
    assert report["status"] == "PASS" and report["overall_status"] == "ERROR"
    assert any(w.startswith(f"{EXEC}: ERROR") for w in report["warnings"])


def test_micro_grid_around_the_locked_hold_and_fee(pack) -> None:
    settings, pack_dir, _ = pack
    with mock.patch.object(locked, "locked_inputs", _seam()[0]):
        summary = rerun.candidate_rerun(settings, pack_dir, AS_OF, run_micro_grid=True)
    assert summary["micro_grid_enabled"] is True and summary["overall_status"] == "OK"
    table = _table(summary)
    alpha = table.filter(pl.col("candidate_label") == ALPHA).row(0, named=True)
    micro = json.loads((Path(alpha["micro_grid_dir"]) /
                        "grid_summary.json").read_text())
    # hold 10, fee 5 -> holds {5, 10, 20} x fees {0, 5, 15} (§10.1 step 7's example)
    assert micro["dimensions"]["hold_bars"] == [5, 10, 20]
    assert micro["dimensions"]["fee_bps_per_side"] == [0.0, 5.0, 15.0]
    assert micro["total_combos"] == 9 and micro["tag"] == "2016-12-31-candidate_alpha-micro"
    assert (Path(summary["output_dir"]) / "candidates" / ALPHA /
            "micro_grid_dir.txt").read_text().strip() == alpha["micro_grid_dir"]


def test_fingerprint_warnings_name_what_changed() -> None:
    locked = {"research_settings_digest": "aaa", "lake_settings": {"silver": "s1", "gold": "g1"}}
    same = rerun.fingerprint_warnings("X", locked, locked)
    assert same == []
    now = {"research_settings_digest": "bbb", "lake_settings": {"silver": "s1", "gold": "g2",
                                                                "bronze": "b1"}}
    assert rerun.fingerprint_warnings("X", locked, now) == [
        "X: research settings changed since the lock (aaa -> bbb)",
        "X: lake layer bronze settings changed since the lock (None -> b1)",
        "X: lake layer gold settings changed since the lock (g1 -> g2)"]
    assert rerun.fingerprint_warnings("X", None, now) == [
        "X: the packet records no settings fingerprints"]


def test_micro_dimensions() -> None:
    from mf_pipeline.lib.steps.backtest.options import BacktestOptions

    dims = rerun.micro_dimensions(BacktestOptions(hold_bars=3, fee_bps_per_side=0.0),
                                  [-5, 0, 10], [0.0, 10.0])
    assert dims.hold_bars == (1, 3, 13) and dims.fee_bps_per_side == (0.0, 10.0)
    dims = rerun.micro_dimensions(BacktestOptions(hold_bars=10, fee_bps_per_side=5.0,
                                                  slippage_bps_per_side=2.0,
                                                  include_state_ids=(1, 3)), [-5, 0, 10],
                                  [-10.0, 10.0])  # fmt: skip
    assert dims.hold_bars == (5, 10, 20) and dims.fee_bps_per_side == (0.0, 5.0, 15.0)
    assert dims.slippage_bps_per_side == (2.0,) and dims.include_state_sets == ((1, 3),)


def test_walk_forward_check_reads_the_locked_combo_in_every_split(pack, tmp_path) -> None:
    settings, pack_dir, grid = pack
    wf = tmp_path / "wfgrid-test"
    wf.mkdir()
    splits = [{"train_end": "2012-12-31", "status": "SUCCESS",
               "grid_run_dir": str(grid.output_dir)},
              {"train_end": "2014-12-31", "status": "FAILED", "grid_run_dir": None},
              {"train_end": "2016-12-31", "status": "SUCCESS",
               "grid_run_dir": str(grid.output_dir)}]
    (wf / "wf_grid_plan.json").write_text(json.dumps({"splits": splits}))
    with mock.patch.object(locked, "locked_inputs", _seam()[0]):
        summary = rerun.candidate_rerun(settings, pack_dir, AS_OF, wf_grid_dir=wf)
    assert summary["wf"]["enabled"] is True and summary["wf"]["candidates_with_wf"] == 2
    rows = pl.read_csv(summary["wf"]["wf_single_combo_summary_csv"])
    alpha = rows.filter(pl.col("candidate_label") == ALPHA).row(0, named=True)
    g = grid.metrics.filter(pl.col("hold_bars") == 10, pl.col("fee_bps_per_side") == 5.0)
    assert (alpha["splits_total"], alpha["splits_covered"], alpha["splits_failed"]) == (3, 2, 1)
    assert alpha["expectancy_mean"] == pytest.approx(g["expectancy"][0])
    assert alpha["robustness_v2_mean"] == pytest.approx(g["robustness_score_v2"][0])
    assert (Path(summary["output_dir"]) / rerun.WF_MD).is_file()
    with mock.patch.object(locked, "locked_inputs", _seam()[0]):
        broken = rerun.candidate_rerun(settings, pack_dir, AS_OF, wf_grid_dir=tmp_path / "none")
    assert broken["overall_status"] == "OK" and broken["wf"]["candidates_with_wf"] == 0
    assert sum("walk-forward check failed" in w for w in broken["warnings"]) == 2


def test_options_and_packet_errors(pack, tmp_path) -> None:
    settings, pack_dir, _ = pack
    with pytest.raises(FileNotFoundError, match="no production_policy_packet_v1.json"):
        rerun.candidate_rerun(settings, tmp_path / "nothing", AS_OF)
    with pytest.raises(ValueError, match="unknown coverage threshold"):
        rerun.candidate_rerun(settings, pack_dir, AS_OF, coverage={"match": 0.5})
    opts = rerun.rerun_options(settings, json.loads((pack_dir / rerun.PACKET).read_text())
                               ["candidates"][ALPHA],
                               rerun.RerunOptions(overlay_coverage_mode="strict_fail",
                                                  coverage={"min_match_rate_fail": 0.7}))
    assert (opts.hold_bars, opts.fee_bps_per_side) == (10, 5.0)
    assert opts.overlay_coverage_mode == "strict_fail"
    assert opts.overlay_min_match_rate_fail == 0.7 and opts.overlay_unknown_rate_fail == 0.5


def test_sanity_catches_broken_folders(pack, tmp_path) -> None:
    settings, pack_dir, _ = pack
    with mock.patch.object(locked, "locked_inputs", _seam()[0]):
        good = rerun.candidate_rerun(settings, pack_dir, AS_OF)["output_dir"]

    def broken(name, change):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        change(folder)
        return rerun_sanity(folder)

    def dup(folder):
        table = pl.read_csv(folder / rerun.TABLE)
        pl.concat([table, table.head(1)]).write_csv(folder / rerun.TABLE)

    def inf_cell(folder):
        table = pl.read_csv(folder / rerun.TABLE, infer_schema_length=None)
        table.with_columns(observed_ret_cv=pl.lit(float("inf"))).write_csv(folder / rerun.TABLE)

    def no_coverage(folder):
        manifest = json.loads((folder / rerun.MANIFEST).read_text())
        manifest["candidates"][0]["coverage_drift_metrics_path"] = str(folder / "gone.json")
        (folder / rerun.MANIFEST).write_text(json.dumps(manifest))

    def bad_rate(folder):
        manifest = json.loads((folder / rerun.MANIFEST).read_text())
        path = folder / "cov.json"
        path.write_text(json.dumps({"observed_match_rate": 1.5}))
        manifest["candidates"][1]["coverage_drift_metrics_path"] = str(path)
        (folder / rerun.MANIFEST).write_text(json.dumps(manifest))

    def wrong_overall(folder):
        summary = json.loads((folder / rerun.RERUN_SUMMARY).read_text())
        summary["overall_status"] = "DRIFT_WARN"
        (folder / rerun.RERUN_SUMMARY).write_text(json.dumps(summary))

    assert broken("a", lambda f: (f / rerun.REPORT).unlink())["errors"] == [
        "missing rerun_report.md"]
    duplicated = broken("b", dup)
    assert duplicated["errors"] == ["duplicate_candidate_rows_in_table"]
    assert duplicated["warnings"] == ["manifest_table_count_mismatch: manifest=2 table=3"]
    assert broken("c", inf_cell)["errors"] == ["non_finite_cells_detected=2"]
    assert broken("d", no_coverage)["errors"] == [f"{ALPHA}: missing coverage drift file"]
    assert broken("e", bad_rate)["errors"] == [
        f"{EXEC}: observed_match_rate outside [0,1]: 1.5"]
    assert broken("f", wrong_overall)["errors"] == [
        "overall_status_mismatch: summary=DRIFT_WARN worst=OK"]


def _cluster_inputs(tag: str = "grid", overlay_days: int | None = None) -> BacktestInputs:
    """Cluster rows with their own states as the overlay; ``overlay_days``: only each ticker's
    first days keep an overlay row (the rest are unmatched, hence UNKNOWN)."""
    (source,) = [s for s in _sources() if s.source_type == "cluster"]
    inputs = replace(source.inputs, tag=tag)
    if overlay_days is not None:
        first = pl.col("trade_date") < date(2015, 1, 1) + timedelta(days=overlay_days)
        inputs = replace(inputs, overlay_rows=inputs.overlay_rows.filter(first))
    return inputs


@pytest.fixture
def cluster_pack(isolated, tmp_path):
    """A pack with one cluster candidate, overlay block_veto, execution profile lite."""
    settings = isolated(tmp_path / "raw")
    base = backtest_options(settings, overlay_mode="block_veto", exec_profile="lite")
    grid = run_grid(settings, [GridSource(_cluster_inputs())],
                    GridDimensions(hold_bars=(3, 10), fee_bps_per_side=(0.0, 10.0)),
                    GridOptions(tag="crp-cluster", base=base))
    row = grid.metrics.filter(pl.col("hold_bars") == 10, pl.col("fee_bps_per_side") == 0.0) \
        .row(0, named=True)  # fmt: skip
    folder = tmp_path / "pcp-cluster_production_candidate_pack_v1"
    (folder / "locked" / EXEC).mkdir(parents=True)
    strategy = replace(base, hold_bars=10).payload()
    packet = {"candidates": {EXEC: {
        "label": EXEC, "source_type": "cluster", "combo_id": row["combo_id"],
        "locked_dir": f"locked/{EXEC}", "source_grid_dir": str(grid.output_dir),
        "strategy": strategy, "fingerprints": fingerprints(settings),
        "overlay": {"enabled": True, "mode": "block_veto",
                    "match_rate": row["overlay_match_rate"],
                    "unknown_rate": row["overlay_unknown_rate"]},
        "execution_realism": {"profile": "lite", "eligibility_rate": row["exec_eligibility_rate"]},
        "expected_behavior_snapshot": {
            "best_expectancy": row["expectancy"], "PF": row["profit_factor"],
            "robustness_v2": row["robustness_score_v2"], "ret_cv": row["ret_cv"],
            "trade_count": row["trade_count"], "zero_trade_share": 0.0,
            "ret_p10": row["ret_p10"], "downside_std": row["downside_std"]}}}}  # fmt: skip
    (folder / rerun.PACKET).write_text(json.dumps(finite_json(packet)))
    return settings, folder, row


def _cluster_seam(overlay_days: int | None = None):
    def fake(settings, locked_dir, source_type, as_of, overlay, tag):
        assert (source_type, overlay) == ("cluster", True)
        return _cluster_inputs(tag, overlay_days)

    return fake


def test_cluster_candidate_with_overlay_and_realism_reruns_ok(cluster_pack) -> None:
    """Fault 22: a cluster candidate re-runs (its policy, overlay and execution profile)."""
    settings, folder, row = cluster_pack
    with mock.patch.object(locked, "locked_inputs", _cluster_seam()):
        summary = rerun.candidate_rerun(settings, folder, AS_OF)
    got = _table(summary).row(0, named=True)
    assert got["drift_status"] == "OK" and got["source_type"] == "cluster"
    assert got["observed_overlay_match_rate"] == 1.0 == got["expected_overlay_match_rate"]
    assert got["observed_exec_eligibility_rate"] == pytest.approx(row["exec_eligibility_rate"])
    assert got["observed_expectancy"] == pytest.approx(row["expectancy"], rel=1e-12)
    assert got["observed_robustness_v2"] == pytest.approx(row["robustness_score_v2"])
    run = json.loads((Path(got["backtest_run_dir"]) / "backtest_summary.json").read_text())
    assert run["execution"]["execution_profile"] == "lite"
    assert run["overlay"]["overlay_mode"] == "block_veto"
    record = json.loads((Path(summary["output_dir"]) / "candidates" / EXEC /
                         "drift_metrics.json").read_text())
    assert record["execution_params_used"]["min_price"] == 2.0  # the resolved lite profile


def test_overlay_coverage_loss_fails_and_strict_mode_is_an_error(cluster_pack) -> None:
    settings, folder, _ = cluster_pack
    with mock.patch.object(locked, "locked_inputs", _cluster_seam(overlay_days=100)):
        summary = rerun.candidate_rerun(settings, folder, AS_OF)
    got = _table(summary).row(0, named=True)
    # 100 of each ticker's 250 days keep their overlay row: match 0.4, unknown 0.6
    assert got["observed_overlay_match_rate"] == pytest.approx(0.4)
    assert got["observed_overlay_unknown_rate"] == pytest.approx(0.6)
    assert got["coverage_match_rate_drop_abs"] == pytest.approx(0.6)
    assert got["coverage_unknown_rate_increase_abs"] == pytest.approx(0.6)
    assert got["coverage_drift_status"] == "DRIFT_FAIL" and got["drift_status"] == "DRIFT_FAIL"
    flags = got["drift_reasons"].split(",")
    assert "overlay_match_rate_low" in flags
    assert flags[-4:] == ["coverage_match_rate_drop_warn", "coverage_match_rate_below_fail",
                          "coverage_unknown_rate_increase_warn",
                          "coverage_unknown_rate_above_fail"]
    coverage = json.loads((Path(summary["output_dir"]) / "candidates" / EXEC /
                           "coverage_drift_metrics.json").read_text())
    assert coverage["baseline_match_rate"] == 1.0 and coverage["thresholds"] == {
        "warn_drop_abs": 0.1, "fail_match_rate": 0.6, "unknown_increase_warn_abs": 0.15,
        "unknown_rate_fail": 0.5}
    with mock.patch.object(locked, "locked_inputs", _cluster_seam(overlay_days=100)):
        strict = rerun.candidate_rerun(settings, folder, AS_OF,
                                       overlay_coverage_mode="strict_fail")
    got = _table(strict).row(0, named=True)
    assert got["drift_status"] == "ERROR" and strict["overall_status"] == "ERROR"
    assert "overlay_coverage_strict_fail:FAIL_LOW_MATCH" in got["error_message"]
    assert strict["rerun_id"] != summary["rerun_id"]  # the coverage mode is in the id


@pytest.fixture
def real_pack(lake_env, tmp_path):
    """A pack built by ``build_pack`` (real lock of the locked-model tests' split runs) from an
    HMM grid on that split (overlay none, profile none: the alpha grid)."""
    from mf_pipeline.lib.candidates.pack import build_pack
    from mf_pipeline.lib.grids.inputs import split_sources

    settings = load_settings()
    real._drop_appended(lake_env)
    sources = split_sources(settings, real.SPLIT, ["hmm"], str(lake_env.hmm_dir),
                            str(lake_env.cluster_dir), None, policy_filter_mode="allow_only")
    grid = run_grid(settings, sources, GridDimensions(hold_bars=(3, 5), fee_bps_per_side=(0.0,),
                                                      exit_mode=("horizon",)),
                    GridOptions(tag="crp-real"), folder=tmp_path / "grid")
    built = build_pack(settings, {"alpha": grid.output_dir}, min_trades=1, include_exec2=False,
                       out_dir=tmp_path / "pcp-real_production_candidate_pack_v1")
    end = sources[0].inputs.identity["test_end"]
    return settings, Path(built["output_dir"]), grid, date.fromisoformat(end) if end else None


def test_rerun_of_a_real_pack_is_ok_on_the_lock_rows_and_runs_after_an_append(real_pack,
                                                                             lake_env) -> None:
    settings, pack_dir, grid, test_end = real_pack
    as_of = test_end or max(real._days(real.LOCK_DAYS))
    summary = rerun.candidate_rerun(settings, pack_dir, as_of)
    assert summary["candidate_count"] == 1 and summary["overall_status"] == "OK"
    assert summary["warnings"] == []
    got = _table(summary).row(0, named=True)
    row = grid.metrics.filter(pl.col("combo_id") == got["combo_id"]).row(0, named=True)
    assert got["candidate_label"] == ALPHA and got["observed_trade_count"] == row["trade_count"]
    assert got["observed_expectancy"] == pytest.approx(row["expectancy"], rel=1e-12)
    assert got["observed_robustness_v2"] == pytest.approx(row["robustness_score_v2"])
    assert rerun_sanity(summary["output_dir"])["status"] == "PASS"
    real._appended(lake_env)  # the nightly append: 25 more days in a newer export
    try:
        last = max(real._days(real.LOCK_DAYS + real.APPENDED_DAYS))
        later = rerun.candidate_rerun(settings, pack_dir, last)
    finally:
        real._drop_appended(lake_env)
    assert later["output_dir"] != summary["output_dir"]
    new = _table(later).row(0, named=True)
    # same behaviour on the appended bars (same generating process): more trades, still OK
    assert later["overall_status"] == "OK" and new["drift_reasons"] is None
    assert new["observed_trade_count"] > got["observed_trade_count"]
    assert new["backtest_run_dir"].endswith(f"_hmm_{last.isoformat()}-candidate_alpha")
    assert rerun_sanity(later["output_dir"])["status"] == "PASS"
