"""Survivors of the mutation samples of the candidate drift, candidate selection, nightly
ledger and ops report modules (docs/CANDIDATES.md, "Mutation testing"), killed on values
worked out by hand."""

import datetime as dt
import json
from pathlib import Path

import polars as pl

from mf_pipeline.lib.candidates import drift, select
from mf_pipeline.lib.ops import ledger, report
from mf_pipeline.lib.settings import CandidateDriftSettings
from mf_pipeline_tests.unit.test_ops_ledger import fake_crp

T = CandidateDriftSettings()
EPS = 1e-12
BASE = {"expectancy": 10.0, "profit_factor": 2.0, "robustness_v2": 60.0, "ret_cv": 2.0,
        "trade_count": 10, "zero_trade_share": 0.0, "ret_p10": -0.02, "downside_std": 0.01,
        "exec_eligibility_rate": 0.625, "overlay_match_rate": 0.9}


def _record(**observed) -> dict:
    cov = drift.coverage_drift(None, None, None, None, drift.coverage_thresholds(T))
    return drift.drift_record(BASE, {**BASE, **observed}, cov, T, EPS)


def test_one_observed_trade_is_a_trade_count_drop_not_a_zero_trade_run() -> None:
    # (1 - 10) / 10 = -0.9 < -0.4: one flag, WARN; zero_trade_observed needs <= 0 trades
    rec = _record(trade_count=1)
    assert rec["drift_flags"] == ["trade_count_drop"]
    assert rec["drift_status"] == "DRIFT_WARN"
    assert rec["delta_trade_count_pct"] == -0.9


def _metrics(rows: list[dict]) -> pl.DataFrame:
    """A grid metrics table: hmm SUCCESS rows with the ranking columns."""
    base = {"source_type": "hmm", "status": "SUCCESS", "is_zero_trade_combo": False,
            "robustness_score_v2": 50.0, "expectancy": 0.01, "profit_factor": 1.5,
            "ret_cv": 2.0}  # fmt: skip
    return pl.DataFrame([base | r for r in rows], infer_schema_length=None)


def test_a_combo_with_one_trade_is_in_the_pool_and_wins_at_min_trades_one() -> None:
    table = _metrics([{"combo_id": "one", "trade_count": 1},
                      {"combo_id": "none", "trade_count": 0, "robustness_score_v2": 99.0}])
    assert select.candidate_pool(table)["combo_id"].to_list() == ["one"]
    picked = select.select(table, select.ALPHA, 1)
    assert (picked.row["combo_id"], picked.threshold, picked.warnings) == ("one", 1, ())


def test_relaxed_threshold_keeps_a_combo_with_exactly_ten_trades() -> None:
    table = _metrics([{"combo_id": "ten", "trade_count": 10},
                      {"combo_id": "nine", "trade_count": 9, "robustness_score_v2": 99.0}])
    picked = select.select(table, select.EXEC, 25)
    assert (picked.row["combo_id"], picked.threshold) == ("ten", 10)
    assert picked.warnings == ("exec: no combos with trade_count >= 25; relaxed to "
                               "trade_count >= 10.",)  # fmt: skip


def test_select_reads_the_rows_of_the_source_it_is_given() -> None:
    table = _metrics([{"combo_id": "h", "trade_count": 30, "robustness_score_v2": 90.0},
                      {"combo_id": "k", "trade_count": 30, "source_type": "cluster"}])
    assert select.select(table, select.ALPHA, 25, source_type="cluster").row["combo_id"] == "k"
    assert select.select(table, select.ALPHA, 25).row["combo_id"] == "h"


def test_best_first_reads_each_keys_own_direction() -> None:
    # best_first takes any "<column> asc|desc" ranking, not only the two of the spec
    frame = _metrics([{"combo_id": "a", "trade_count": 5, "expectancy": 0.3},
                      {"combo_id": "b", "trade_count": 5, "expectancy": 0.1},
                      {"combo_id": "c", "trade_count": 5, "expectancy": 0.1},
                      {"combo_id": "d", "trade_count": 5, "expectancy": None}])
    order = select.best_first(frame, ("expectancy asc", "combo_id desc"))
    assert order["combo_id"].to_list() == ["c", "b", "a", "d"]  # lowest first, null last


def test_ledger_row_values_are_cast_to_the_schema(tmp_path) -> None:
    # an int where the ledger keeps a float (and the reverse) is stored, not refused
    path = tmp_path / "ledger.csv"
    frame = ledger.upsert(path, {"as_of_tag": "2024-01-02", "alpha_pf": 2, "alpha_trades": 7.0,
                                 "exec_overlay_match_rate": 1})
    assert frame.row(0, named=True) | {} == {**dict.fromkeys(ledger.SCHEMA),
                                             "as_of_tag": "2024-01-02", "alpha_pf": 2.0,
                                             "alpha_trades": 7, "exec_overlay_match_rate": 1.0}
    assert frame.schema == pl.Schema(ledger.SCHEMA)


def test_an_older_ledger_file_reads_with_the_full_schema(tmp_path) -> None:
    path = tmp_path / "ops_ledger.csv"
    path.write_text("as_of_tag,ops_status,alpha_trades\n2024-01-02,DRIFT_WARN,12\n")
    back = ledger.read(path)
    assert back.schema == pl.Schema(ledger.SCHEMA)
    assert back.row(0, named=True) | {} == {**dict.fromkeys(ledger.SCHEMA),
                                            "as_of_tag": "2024-01-02",
                                            "ops_status": "DRIFT_WARN", "alpha_trades": 12}


def test_ledger_view_shows_ten_nights_by_default() -> None:
    rows = [{"as_of_tag": f"2024-01-{d:02d}", "built_ts": f"2024-02-{d:02d}"} for d in range(1, 12)]
    frame = pl.DataFrame(rows).with_columns(
        pl.lit(None, dtype).alias(name) for name, dtype in ledger.SCHEMA.items()
        if name not in ("as_of_tag", "built_ts"))
    shown = ledger.view(frame)
    assert shown["as_of"].to_list() == [f"2024-01-{d:02d}" for d in range(11, 1, -1)]


def test_ops_timestamps_are_utc_with_their_offset() -> None:
    # finished_ts / built_ts order the nights as text: all must carry the same +00:00 offset
    stamp = report.now_ts()
    assert stamp.endswith("+00:00") and dt.datetime.fromisoformat(stamp).utcoffset() == \
        dt.timedelta(0)  # fmt: skip


HEADER = ("| candidate_label | drift_status | expectancy | profit_factor | ret_cv | trade_count "
          "| coverage_status | coverage_drift_status |\n|---|---|---|---|---|---|---|---|\n")


def test_ops_folder_and_ledger_row_record_the_run_they_come_from(isolated, tmp_path) -> None:
    settings = isolated(tmp_path / "raw")
    crp = fake_crp(settings.artifacts_root, {"CANDIDATE_ALPHA": "OK"})
    manifest = json.loads((crp / "rerun_manifest.json").read_text())
    del manifest["rerun_id"]  # the id is taken from the summary when the manifest lacks it
    (crp / "rerun_manifest.json").write_text(json.dumps(manifest))
    summary = report.write_ops_run(settings, crp, "2024-01-03", started_ts="s",
                                   dagster_run_id="run7",
                                   lake_update={"lake_last_date": "2024-01-03"})
    assert summary["crp_rerun_id"] == "crp-0123456789ab"
    assert summary["lake_last_date"] == "2024-01-03" and summary["candidate_count"] == 1
    assert summary["wf"] == {"enabled": False, "candidates_with_wf": 0,
                             "split_count_success": None}
    folder = Path(summary["ops_run_dir"])
    written = json.loads((folder / "ops_manifest.json").read_text())
    assert written["finished_ts"] == summary["finished_ts"]
    assert written["lake_update"] == {"lake_last_date": "2024-01-03"}
    assert written["artifacts"] == report.ARTIFACTS
    root = settings.artifacts_root
    assert (folder / "ops_report.md").read_text() == (
        f"# Nightly ops {summary['ops_run_id']}\n\n- as of: 2024-01-03\n"
        f"- ops status: **OK**\n- candidate pack: {root}/pcp-aaaabbbbcccc_pack\n"
        f"- candidate re-run: {crp}\n- lake last trade date: 2024-01-03\n"
        f"- Dagster run: run7\n\n## Candidates\n\n{HEADER}"
        "| CANDIDATE_ALPHA | OK | 0.0100 | inf | 2.0000 | 10 |  | OK |\n\n"
        "## Warnings\n\n- w1\n")  # no walk-forward section when it was off
    entry = report.ledger_row(summary)
    assert (entry["built_ts"], entry["dagster_run_id"], entry["ops_run_dir"]) == (
        summary["finished_ts"], "run7", str(folder))
    assert entry["wf_split_success_count"] is None


def test_a_night_with_a_failed_candidate_is_error_and_still_written(isolated, tmp_path) -> None:
    """A candidate whose re-run failed has no backtest summary and, here, no status at all."""
    settings = isolated(tmp_path / "raw")
    crp = fake_crp(settings.artifacts_root, {"CANDIDATE_ALPHA": "OK", "CANDIDATE_EXEC": "OK"},
                   wf=True)
    table = pl.read_csv(crp / "rerun_candidates_table.csv")
    table.with_columns(pl.when(pl.col("candidate_label") == "CANDIDATE_EXEC")
                       .then(None).otherwise(pl.col("drift_status")).alias("drift_status")
                       ).write_csv(crp / "rerun_candidates_table.csv")
    manifest = json.loads((crp / "rerun_manifest.json").read_text())
    manifest["candidates"][1]["backtest_summary_path"] = None
    (crp / "rerun_manifest.json").write_text(json.dumps(manifest))
    crp_summary = json.loads((crp / "rerun_summary.json").read_text())
    del crp_summary["rerun_id"]  # taken from the manifest
    crp_summary["warnings"] = []
    (crp / "rerun_summary.json").write_text(json.dumps(crp_summary))
    # two WF rows covered 3 and 2 splits; a null count is no split
    pl.DataFrame({"splits_covered": [3, None, 2]}, schema={"splits_covered": pl.Int64}
                 ).write_csv(crp / "wf_single_combo_summary.csv")

    got = report.candidate_table(crp)
    assert got["coverage_status"].to_list() == [None, None]
    assert got.schema["coverage_status"] == pl.String
    summary = report.write_ops_run(settings, crp, "2024-01-04", started_ts="s")
    assert summary["ops_status"] == "ERROR"
    assert summary["status_counts"] == {"OK": 1, "ERROR": 1}
    assert summary["crp_rerun_id"] == "crp-0123456789ab"
    assert summary["wf"]["split_count_success"] == 5
    text = (Path(summary["ops_run_dir"]) / "ops_report.md").read_text()
    assert text.endswith("| CANDIDATE_EXEC |  | 0.0200 | 1.5000 | 2.0000 | 20 |  | OK |\n\n"
                         "## Walk-forward check\n\ncandidates with WF: 1; successful splits: 5"
                         "\n\n## Warnings\n\n- none\n")
    assert report.ledger_row(summary)["wf_split_success_count"] == 5


def test_prune_counts_an_ops_folder_without_a_finish_time_as_the_oldest(isolated, tmp_path):
    settings = isolated(tmp_path / "raw")
    root = report.ops_root(settings)
    folders = [root / f"ops-00000000000{i}_nightly_ops_v1" for i in range(3)]
    for folder, stamp in zip(folders, ["2020-01-02", "2020-01-01", None], strict=True):
        folder.mkdir(parents=True)
        if stamp:  # the third never finished: no summary
            (folder / "ops_summary.json").write_text(json.dumps({"finished_ts": stamp}))
    assert report.prune(settings, 2) == [folders[2]]
    assert report.prune(settings, 1) == [folders[1]]
