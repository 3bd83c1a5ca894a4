"""Nightly ops ledger, ops folder, sanity and systemd units (backtest_ops.md §11), on hand-made
rows and a hand-made candidate re-run folder (the §10.4 files)."""

import datetime as dt
import json
import os
from pathlib import Path

import polars as pl
import pytest

from mf_pipeline.lib.ops import ledger, previous_weekday, report, sanity, systemd
from mf_pipeline.lib.settings import load_settings


def row(as_of: str, ops_id: str, built: str, **extra):
    return {"as_of_tag": as_of, "ops_run_id": ops_id, "built_ts": built, "status": "SUCCESS",
            "ops_status": "OK", **extra}


def test_upsert_replaces_the_row_of_its_as_of_and_never_duplicates(tmp_path):
    path = tmp_path / "ops_ledger" / "ops_ledger.csv"
    ledger.upsert(path, row("2024-01-03", "ops-b", "2024-01-04T07:31", alpha_expectancy=0.5))
    ledger.upsert(path, row("2024-01-02", "ops-a", "2024-01-03T07:31", alpha_pf=float("inf")))
    frame = ledger.upsert(path, row("2024-01-03", "ops-c", "2024-01-04T09:00",
                                    alpha_expectancy=-0.25, alpha_trades=7))
    assert frame["as_of_tag"].to_list() == ["2024-01-02", "2024-01-03"]
    back = ledger.read(path)
    assert back["ops_run_id"].to_list() == ["ops-a", "ops-c"]
    assert back["alpha_expectancy"].to_list() == [None, -0.25]  # the old 0.5 is gone
    assert back["alpha_trades"].to_list() == [None, 7]
    assert back["alpha_pf"][0] == float("inf")
    assert back.schema == pl.Schema(ledger.SCHEMA)
    # the same night again: still two rows, the same content
    ledger.upsert(path, row("2024-01-03", "ops-c", "2024-01-04T09:00",
                            alpha_expectancy=-0.25, alpha_trades=7))
    assert ledger.read(path).equals(back)
    assert not [p for p in path.parent.iterdir() if p.name.startswith((".", "ops_ledger.csv."))
                and not p.name.endswith(".lock")]  # no temp file left behind


def test_failed_row_replaces_and_parquet_ledger(tmp_path):
    path = tmp_path / "ledger.parquet"
    ledger.upsert(path, row("2024-01-03", "ops-b", "t1"))
    ledger.upsert(path, {"as_of_tag": "2024-01-03", "status": "FAILED", "built_ts": "t2",
                         "failed_step": "ops_ledger.ops_update_lake", "error": "boom, twice"})
    back = ledger.read(path)
    assert back.height == 1
    assert back.row(0, named=True) | {} == {**{k: None for k in ledger.SCHEMA},
                                            "as_of_tag": "2024-01-03", "status": "FAILED",
                                            "built_ts": "t2", "error": "boom, twice",
                                            "failed_step": "ops_ledger.ops_update_lake"}


def test_upsert_refuses_unknown_columns_and_missing_as_of(tmp_path):
    with pytest.raises(ValueError, match="alpha_expectncy"):
        ledger.upsert(tmp_path / "l.csv", row("2024-01-02", "x", "t", alpha_expectncy=1.0))
    with pytest.raises(ValueError, match="as_of_tag"):
        ledger.upsert(tmp_path / "l.csv", {"ops_run_id": "x"})


def test_view_newest_first_and_per_candidate(tmp_path):
    path = tmp_path / "l.csv"
    ledger.upsert(path, row("2024-01-02", "a", "2024-01-03T07:30", alpha_expectancy=1.0,
                            exec_expectancy=2.0, exec_overlay_match_rate=0.9))
    ledger.upsert(path, row("2024-01-03", "b", "2024-01-04T07:30", alpha_expectancy=3.0,
                            exec_pf=1.5, exec_trades=4, exec_drift_status="DRIFT_WARN"))
    ledger.upsert(path, row("2024-01-04", "c", "2024-01-05T07:30"))
    frame = ledger.read(path)
    top = ledger.view(frame, last=2)
    assert top["ops_run_id"].to_list() == ["c", "b"]
    assert top.columns == ["ops_run_id", "as_of", "status", "run", "alpha_exp", "exec_exp",
                           "exec_match", "wf_success", "failed_step"]
    assert top["alpha_exp"].to_list() == [None, 3.0]
    one = ledger.view(frame, last=10, candidate="CANDIDATE_EXEC")
    assert one.columns == ["ops_run_id", "as_of", "status", "run", "exec_exp", "exec_pf",
                           "exec_ret_cv", "exec_trades", "exec_drift"]
    assert one.row(1) == ("b", "2024-01-03", "OK", "SUCCESS", None, 1.5, None, 4, "DRIFT_WARN")
    assert one["exec_exp"].to_list()[2] == 2.0
    with pytest.raises(ValueError, match="CANDIDATE_ALPHA"):
        ledger.view(frame, candidate="alpha")


def test_ledger_path_relative_to_artifacts(isolated, tmp_path):
    settings = isolated(tmp_path / "raw")
    assert ledger.ledger_path(settings) == settings.artifacts_root / "ops_ledger/ops_ledger.csv"
    assert ledger.ledger_path(settings, "x/l.parquet") == settings.artifacts_root / "x/l.parquet"
    assert ledger.ledger_path(settings, tmp_path / "a.csv") == tmp_path / "a.csv"


def test_worst_status_and_previous_weekday():
    assert report.worst_status(["OK", "DRIFT_WARN", "OK"]) == "DRIFT_WARN"
    assert report.worst_status(["DRIFT_FAIL", "ERROR", "OK"]) == "ERROR"
    assert report.worst_status(["OK", None]) == "ERROR"
    assert report.worst_status([]) == "ERROR"
    assert previous_weekday(dt.date(2026, 12, 7)) == dt.date(2026, 12, 4)   # Mon → Fri
    assert previous_weekday(dt.date(2026, 12, 8)) == dt.date(2026, 12, 7)   # Tue → Mon
    assert previous_weekday(dt.date(2026, 12, 13)) == dt.date(2026, 12, 11)  # Sun → Fri


def fake_crp(root: Path, statuses: dict[str, str], wf: bool = False) -> Path:
    """A candidate re-run folder with the §10.4 files a night reads."""
    crp = root / "candidate_reruns" / "crp-0123456789ab_candidate_rerun_pack_v1"
    crp.mkdir(parents=True)
    labels = sorted(statuses)
    summaries = {}
    for label in labels:
        path = crp / "candidates" / label / "backtest_summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"overlay": {"overlay_coverage_status": "PASS"}
                                    if label == "CANDIDATE_EXEC" else {}}))
        summaries[label] = str(path)
    pl.DataFrame({
        "candidate_label": labels, "combo_id": [f"c{i}" for i in range(len(labels))],
        "observed_expectancy": [0.01 * (i + 1) for i in range(len(labels))],
        "observed_profit_factor": [float("inf")] + [1.5] * (len(labels) - 1),
        "observed_ret_cv": [2.0] * len(labels), "observed_trade_count": [10, 20, 30][:len(labels)],
        "observed_overlay_match_rate": [None, 0.95, None][:len(labels)],
        "coverage_drift_status": ["OK"] * len(labels),
        "drift_status": [statuses[label] for label in labels],
    }).write_csv(crp / "rerun_candidates_table.csv")
    (crp / "rerun_manifest.json").write_text(json.dumps({
        "rerun_id": "crp-0123456789ab", "pcp_pack_dir": str(root / "pcp-aaaabbbbcccc_pack"),
        "candidates": [{"candidate_label": k, "backtest_summary_path": v}
                       for k, v in summaries.items()]}))
    (crp / "rerun_summary.json").write_text(json.dumps({
        "rerun_id": "crp-0123456789ab", "candidate_count": len(labels), "warnings": ["w1"],
        "wf": {"enabled": wf, "candidates_with_wf": 1 if wf else 0}}))
    if wf:
        pl.DataFrame({"candidate_label": ["CANDIDATE_ALPHA"], "splits_covered": [3]}).write_csv(
            crp / "wf_single_combo_summary.csv")
    return crp


def test_ops_folder_ledger_row_sanity_and_prune(isolated, tmp_path):
    settings = isolated(tmp_path / "raw")
    crp = fake_crp(settings.artifacts_root, {"CANDIDATE_ALPHA": "OK",
                                             "CANDIDATE_EXEC": "DRIFT_WARN"}, wf=True)
    summary = report.write_ops_run(settings, crp, "2024-01-03", started_ts="s",
                                   dagster_run_id="run1", warnings=["lake stale"])
    folder = Path(summary["ops_run_dir"])
    assert folder.parent == settings.artifacts_root / "ops_runs"
    assert folder.name == f"{summary['ops_run_id']}_nightly_ops_v1"
    assert summary["ops_status"] == "DRIFT_WARN"
    assert summary["status_counts"] == {"OK": 1, "DRIFT_WARN": 1}
    assert summary["pcp_pack_id"] == "pcp-aaaabbbbcccc"
    assert summary["warnings"] == ["lake stale", "w1"]
    assert summary["wf"] == {"enabled": True, "candidates_with_wf": 1, "split_count_success": 3}
    csv = pl.read_csv(folder / "ops_report.csv")
    assert csv.columns == report.REPORT_COLUMNS
    assert csv["coverage_status"].to_list() == [None, "PASS"]
    assert csv["profit_factor"].to_list() == [float("inf"), 1.5]
    assert (folder / "crp_rerun_dir.txt").read_text().strip() == str(crp)
    assert (folder / "wf_check_dir.txt").is_file()

    path = ledger.ledger_path(settings)
    out = sanity.summarize_ops_run(folder, path)
    assert out["errors"] == [f"ledger_row_missing: no row for as_of 2024-01-03 in {path}"]
    entry = report.ledger_row(summary)
    assert entry["alpha_expectancy"] == 0.01 and entry["exec_expectancy"] == 0.02
    assert entry["alpha_pf"] == float("inf") and entry["exec_trades"] == 20
    assert entry["exec_overlay_match_rate"] == 0.95
    assert entry["exec_drift_status"] == "DRIFT_WARN" and entry["wf_split_success_count"] == 3
    assert "exec2_expectancy" not in entry
    ledger.upsert(path, entry)
    out = sanity.summarize_ops_run(folder, path)
    assert out["errors"] == [] and out["ops_status"] == "DRIFT_WARN"
    assert out["candidate_count"] == 2 and out["non_finite_cells"] == 0

    # a corrupt copy: the status no longer matches its candidates, one cell is NaN
    bad = tmp_path / "bad"
    import shutil
    shutil.copytree(folder, bad)
    js = json.loads((bad / "ops_summary.json").read_text())
    (bad / "ops_summary.json").write_text(json.dumps(js | {"ops_status": "OK"}))
    csv.with_columns(pl.lit(float("nan")).alias("ret_cv")).write_csv(bad / "ops_report.csv")
    errors = sanity.summarize_ops_run(bad, path)["errors"]
    assert errors == ["non_finite_cells_detected=2",
                      "ops_status_mismatch: summary OK, worst candidate DRIFT_WARN"]

    # prune keeps the newest by recorded finished_ts, not by name or mtime
    olds = []
    for i, stamp in enumerate(["2020-01-03", "2020-01-01", "2020-01-02"]):
        old = folder.parent / f"ops-00000000000{i}_nightly_ops_v1"
        old.mkdir()
        (old / "ops_summary.json").write_text(json.dumps({"finished_ts": stamp}))
        os.utime(old, (0, 0))
        olds.append(old)
    removed = report.prune(settings, 2, keep=folder)
    assert sorted(removed) == sorted([olds[1], olds[2]])
    assert folder.is_dir() and olds[0].is_dir()


def test_systemd_units_use_the_project_venv(tmp_path):
    project, home = tmp_path / "proj", tmp_path / "proj" / "dagster_home"
    cal = systemd.on_calendar("07:30", "America/New_York")
    assert cal == "Mon..Fri *-*-* 07:30:00 America/New_York"
    assert systemd.on_calendar("Tue *-*-* 06:00", "UTC") == "Tue *-*-* 06:00"
    timer_units = systemd.units("timer", project, home, cal, ("--keep-last-n", "5"))
    service = timer_units[systemd.SERVICE_TIMER]
    assert f"ExecStart={project}/.venv/bin/mf ops-nightly-run --keep-last-n 5\n" in service
    assert f"Environment=DAGSTER_HOME={home}\n" in service
    assert f"WorkingDirectory={project}\n" in service
    assert "/usr/bin/python" not in service
    assert f"OnCalendar={cal}\nPersistent=true" in timer_units[systemd.TIMER]
    daemon = systemd.units("daemon", project, home, cal)[systemd.SERVICE_DAEMON]
    assert f"ExecStart={project}/.venv/bin/dagster-daemon run -w {project}/workspace.yaml\n" \
        in daemon
    assert "/usr/bin/python" not in daemon and f"DAGSTER_HOME={home}" in daemon
    with pytest.raises(ValueError, match="mode"):
        systemd.units("cron", project, home, cal)


def test_settings_defaults():
    ops = load_settings().ops_nightly
    assert (ops.cron, ops.timezone, ops.keep_last_n) == ("30 7 * * 1-5", "America/New_York", 30)
