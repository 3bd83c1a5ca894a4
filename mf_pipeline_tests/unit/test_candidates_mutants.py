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
    assert summary["lake_last_date"] == "2024-01-03"
    folder = Path(summary["ops_run_dir"])
    written = json.loads((folder / "ops_manifest.json").read_text())
    assert written["finished_ts"] == summary["finished_ts"]
    assert written["lake_update"] == {"lake_last_date": "2024-01-03"}
    text = (folder / "ops_report.md").read_text()
    for line in ("- lake last trade date: 2024-01-03", "- Dagster run: run7", "## Warnings",
                 "- w1"):
        assert f"\n{line}\n" in text
    entry = report.ledger_row(summary)
    assert (entry["built_ts"], entry["dagster_run_id"], entry["ops_run_dir"]) == (
        summary["finished_ts"], "run7", str(folder))
