"""End to end through the CLI and Dagster: raw messy files → manifest → Bronze (+ QA)."""

import json
import shutil

import polars as pl
import pytest
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.lib import lake
from mf_pipeline.lib.steps import bronze_step

WARNINGS = {"suspicious_bar", "gap_in_calendar", "zero_volume"}


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def data_lines(path) -> int:
    text = path.read_bytes().decode("utf-8", "replace").lstrip("\ufeff")
    rows = [ln.strip() for ln in text.splitlines()]
    return sum(1 for ln in rows if ln and not ln.startswith("<TICKER>"))


@pytest.fixture
def ingested(isolated, messy_universe, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    settings = isolated(raw)
    invoke("bronze-run")
    return settings, raw


def test_every_file_reconciles_and_every_defect_is_visible(ingested):
    settings, raw = ingested
    bronze = bronze_step.paths(settings)
    ledger = pl.read_parquet(bronze.ledger)
    raw_files = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*.txt"))
    assert sorted(ledger["source_file"]) == raw_files
    assert bronze_step.reconciliation_failures(settings).is_empty()
    rejects = pl.read_parquet(bronze.rejects)
    panel = lake.read_layer(settings, "bronze")
    defects = json.loads((raw / "_truth" / "defects.json").read_text())
    assert len({d["kind"] for d in defects}) >= 19
    for defect in defects:
        row = ledger.filter(pl.col("source_file") == defect["source_file"]).to_dicts()[0]
        assert row["status"] == defect["expected_status"], defect
        reason = defect["expected_reason"]
        assert reason in row["reasons"].split(","), (defect, row["reasons"])
        if defect["line_no"] is None:
            continue
        if reason in WARNINGS:
            bar = panel.filter((pl.col("source_file") == defect["source_file"])
                               & (pl.col("source_line_no") == defect["line_no"]))
            assert bar.height == 1 and bar[f"q_{reason}"][0], defect
        else:
            hit = rejects.filter((pl.col("source_file") == defect["source_file"])
                                 & (pl.col("line_no") == defect["line_no"]))
            assert hit.height == 1 and reason in hit["reason"][0], defect


def test_valid_bars_match_the_raw_files(ingested):
    settings, raw = ingested
    ledger = pl.read_parquet(bronze_step.paths(settings).ledger)
    clean = ledger.filter((pl.col("reasons") == "") & (pl.col("status") == "OK"))
    assert clean.height >= 5
    panel = lake.read_layer(settings, "bronze")
    for row in clean.head(3).iter_rows(named=True):
        path = raw / row["source_file"]
        lines = [ln for ln in path.read_text().splitlines()[1:] if ln]
        expected = pl.DataFrame([ln.split(",") for ln in lines], orient="row").select(
            pl.col("column_2").str.to_date("%Y%m%d").alias("trade_date"),
            pl.col("column_7").cast(pl.Float64).alias("close"),
            pl.col("column_8").cast(pl.Float64).alias("volume"),
        )
        got = panel.filter(pl.col("ticker") == row["ticker"]).select(expected.columns)
        assert got.equals(expected)
        assert row["rows_valid"] == data_lines(path)


def test_rerun_is_a_noop_and_an_append_reprocesses_one_ticker(ingested):
    settings, raw = ingested
    output = invoke("bronze-run", "--json")
    assert "0 tickers to process" in output
    assert '"bronze": {}' in output
    ledger = pl.read_parquet(bronze_step.paths(settings).ledger)
    clean = ledger.filter((pl.col("reasons") == "") & (pl.col("status") == "OK"))
    target = clean.row(0, named=True)
    path = raw / target["source_file"]
    with open(path, "a") as handle:
        handle.write(f"{target['ticker']},D,20990101,000000,10,11,9,10.5,1000,0\n")
    output = invoke("bronze-run", "--json")
    assert "1 tickers to process" in output
    assert '"APPENDED": 1' in output
    bars = lake.read_layer(settings, "bronze", [target["ticker"]])
    assert bars["trade_date"].max().year == 2099
    assert bars.height == target["rows_valid"] + 1


def test_run_summary_artifacts(ingested):
    settings, _raw = ingested
    [summary_path] = (settings.artifacts_root / "run_summaries").glob("*_bronze_run_summary.json")
    summary = json.loads(summary_path.read_text())
    ledger = pl.read_parquet(bronze_step.paths(settings).ledger)
    processed = ledger.filter(pl.col("ticker").is_not_null())
    assert summary["files_selected_total"] == processed.height
    assert summary["rows_valid"] == processed["rows_valid"].sum()
    assert summary["files_processed_failed"] == processed.filter(
        pl.col("status") == "FAILED").height > 0
    run_id = summary["run_id"]
    results = pl.read_parquet(summary_path.with_name(f"{run_id}_ticker_results.parquet"))
    assert results.height == processed.height and results["success"].sum() < results.height


def test_dry_run_and_qa_commands(ingested):
    settings, _raw = ingested
    invoke("bronze-run", "--dry-run")
    out = invoke("build-symbol-master")
    assert "symbol_count" in out
    invoke("sanity-checks")
    assert (settings.artifacts_root / "bronze_qa" / "bronze_sanity_summary.json").exists()
    assert "invalid_row_count" in invoke("list-problem-tickers", "--only-invalid", "--limit", "5")
