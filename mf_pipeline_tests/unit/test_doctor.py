"""The lake doctor's pure logic (``lib/doctor.py``) on a hand-made lake: what it reports and
what ``repair`` does (the end-to-end test, ``e2e/test_doctor.py``, rebuilds a damaged lake)."""

import datetime as dt
import json
import os
from pathlib import Path

import polars as pl

from mf_pipeline.lib import doctor, lake, lake_table
from mf_pipeline.lib.layers.bronze.ledger import LEDGER_SCHEMA


def bars(ticker: str, extra: bool = False) -> pl.DataFrame:
    frame = pl.DataFrame({"ticker": [ticker] * 3, "exchange": ["NYSE"] * 3,
                          "trade_date": [dt.date(2024, 1, d) for d in (2, 3, 4)],
                          "close": [1.0, 2.0, 3.0]})
    return frame.with_columns(pl.lit(1).alias("surprise")) if extra else frame


def ledger(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    data = {name: [None] * len(rows) for name in LEDGER_SCHEMA}
    data["source_file"] = [r[0] for r in rows]
    data["ticker"] = [r[1] for r in rows]
    data["lines_total"] = [r[2] for r in rows]
    for name in ("lines_header", "lines_blank", "rows_rejected", "rows_invalid"):
        data[name] = [0] * len(rows)
    data["lines_header"] = [1] * len(rows)
    data["rows_valid"] = [3] * len(rows)
    return pl.DataFrame(data).cast(LEDGER_SCHEMA)


def test_doctor_reports_and_repairs_a_hand_made_lake(isolated, tmp_path):
    (tmp_path / "raw").mkdir()
    settings = isolated(tmp_path / "raw")
    bronze_root = lake.LAYERS["bronze"].root(settings)
    # One commit: a file per shard; BB.US and EB.US share shard 07, hence one file.
    lake.write_symbol_files(pl.concat([bars(t) for t in ("AA.US", "BB.US", "CC.US", "EB.US")]),
                            bronze_root)
    lake.write_symbol_files(bars("DD.US", extra=True), bronze_root)  # another schema
    snapshot = lake.snapshot(bronze_root)
    files = {t: snapshot.of([t]).files() for t in ("AA.US", "BB.US", "CC.US", "DD.US", "EB.US")}
    assert all(len(f) == 1 for f in files.values()) and files["BB.US"] == files["EB.US"]
    files = {t: f[0] for t, f in files.items()}
    assert len(set(files.values())) == 4
    kept_rows = lake.read_tickers(bronze_root, ["AA.US", "CC.US"])
    files["BB.US"].write_bytes(b"not parquet")
    lake.write_parquet(ledger([("a.txt", "AA.US", 4), ("b.txt", "BB.US", 4),
                               ("c.txt", "CC.US", 9)]), settings.bronze_root / doctor.LEDGER)
    manifest = pl.DataFrame({"source_file": ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"],
                             "ticker": ["AA.US", "BB.US", "CC.US", "DD.US", "EB.US"]})
    lake.write_parquet(manifest, settings.bronze_root / doctor.STABLE_MANIFEST)
    dead_temp = files["AA.US"].with_name(
        f".{files['AA.US'].name}.w999999999-1-{lake._host_tag()}-00000000.tmp")
    dead_temp.write_bytes(b"x")
    live_temp = lake._temp_path(files["AA.US"])  # this process: alive
    live_temp.write_bytes(b"x")
    (settings.silver_root / "_calc").mkdir(parents=True)
    (settings.silver_root / "_calc" / "silver.json").write_text("[1, 2]")

    report = doctor.diagnose(settings)
    found = {(p.kind, os.path.basename(p.path)): p.what for p in report.problems}
    bb, dd = files["BB.US"].name, files["DD.US"].name
    assert set(found) == {("per_ticker", bb), ("per_ticker", dd),
                          ("ledger", "file_ledger.parquet"), ("temp", dead_temp.name),
                          ("calc", "silver.json")}
    assert "unreadable Parquet footer" in found["per_ticker", bb]
    assert "unexpected columns ['surprise']" in found["per_ticker", dd]
    assert "c.txt" in found["ledger", "file_ledger.parquet"]
    assert report.checked["bronze"] == 4 and len(report.remaining) == 5
    assert report.next_steps[0].startswith("mf doctor --repair")
    assert files["BB.US"].exists()  # a report changes nothing

    repaired = doctor.diagnose(settings, repair=True)
    assert not repaired.remaining
    repairs = {os.path.basename(p.path): p.repair for p in repaired.problems}
    assert "its 3 tickers dropped from bronze" in repairs[bb]  # BB.US, EB.US and DD.US
    # The damaged files' tickers left the layer in one commit; the others kept their rows.
    after_repair = lake.snapshot(bronze_root)
    assert after_repair.generation == snapshot.generation + 1
    assert after_repair.tickers() == ["AA.US", "CC.US"]
    assert lake.read_tickers(bronze_root).equals(kept_rows)
    assert not files["BB.US"].exists() and not files["DD.US"].exists()
    assert files["AA.US"].exists() and files["CC.US"].exists()
    into = Path(repaired.quarantine)
    assert into.parent == tmp_path / "data" / doctor.QUARANTINE
    quarantined = sorted(p.relative_to(into) for p in into.rglob("*.parquet"))
    assert quarantined == sorted(path.relative_to(tmp_path / "data")
                                 for path in (files["BB.US"], files["DD.US"]))
    assert (into / files["DD.US"].relative_to(tmp_path / "data")).read_bytes()[:4] == b"PAR1"
    # Broken Bronze tickers and the unreconciled file are ingested again by the next run.
    kept = pl.read_parquet(settings.bronze_root / doctor.STABLE_MANIFEST)["source_file"]
    assert kept.to_list() == ["a.txt"]
    assert not dead_temp.exists() and live_temp.exists()
    assert '"mixed"' in (settings.silver_root / "_calc" / "silver.json").read_text()
    assert any(step.startswith("mf run") for step in repaired.next_steps)

    after = doctor.diagnose(settings)  # the quarantine is not checked again
    assert [p.kind for p in after.problems] == ["ledger"]  # until the next run re-ingests c.txt
    assert after.checked["bronze"] == 2


def test_an_unreadable_snapshot_quarantines_the_layer(isolated, tmp_path):
    (tmp_path / "raw").mkdir()
    settings = isolated(tmp_path / "raw")
    bronze_root = lake.LAYERS["bronze"].root(settings)
    lake.write_symbol_files(pl.concat([bars("AA.US"), bars("BB.US")]), bronze_root)
    manifest = pl.DataFrame({"source_file": ["a.txt", "b.txt"], "ticker": ["AA.US", "BB.US"]})
    lake.write_parquet(manifest, settings.bronze_root / doctor.STABLE_MANIFEST)
    index = bronze_root / json.loads((bronze_root / lake_table.POINTER).read_text())["index"]
    index.write_bytes(b"not parquet")

    report = doctor.diagnose(settings)
    assert [(p.kind, p.path) for p in report.problems] == [
        ("per_ticker", str(bronze_root / lake_table.POINTER))]
    assert report.problems[0].what.startswith("unreadable snapshot")
    assert report.checked["bronze"] == 0

    repaired = doctor.diagnose(settings, repair=True)
    assert not repaired.remaining and not bronze_root.exists()
    moved = Path(repaired.quarantine) / bronze_root.relative_to(tmp_path / "data")
    assert (moved / lake_table.POINTER).is_file() and (moved / index.relative_to(bronze_root)
                                                       ).read_bytes() == b"not parquet"
    # Every raw file counts as new: the next run rebuilds Bronze into an empty layer.
    assert pl.read_parquet(settings.bronze_root / doctor.STABLE_MANIFEST).height == 0
    assert lake.snapshot(bronze_root).generation == 0
    assert not doctor.diagnose(settings).problems


def test_a_data_file_missing_from_its_snapshot_is_repaired(isolated, tmp_path):
    """A file the snapshot names but nobody can read because it is gone: its tickers are
    dropped like those of a damaged file; there is nothing to quarantine."""
    (tmp_path / "raw").mkdir()
    settings = isolated(tmp_path / "raw")
    bronze_root = lake.LAYERS["bronze"].root(settings)
    lake.write_symbol_files(pl.concat([bars("AA.US"), bars("BB.US")]), bronze_root)  # 09, 07
    [gone] = lake.snapshot(bronze_root).of(["AA.US"]).files()
    gone.unlink()

    report = doctor.diagnose(settings)
    assert [(p.kind, p.path) for p in report.problems] == [("per_ticker", str(gone))]
    assert "FileNotFoundError" in report.problems[0].what

    repaired = doctor.diagnose(settings, repair=True)
    assert not repaired.remaining
    assert lake.symbol_tickers(bronze_root) == ["BB.US"]
    assert not doctor.diagnose(settings).problems


def _v1_file(root: Path, ticker: str, name: str, frame: pl.DataFrame) -> None:
    folder = root / "exchange=NYSE" / f"prefix={ticker[0]}" / f"ticker={ticker}"
    folder.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(folder / name)


def test_a_v1_lake_is_reported_and_converted_by_repair(isolated, tmp_path):
    """A lake written by the one-folder-per-ticker layout (base + a nightly delta) is never
    read as v2: the doctor names it, and ``--repair`` converts it with the same rows."""
    (tmp_path / "raw").mkdir()
    settings = isolated(tmp_path / "raw")
    silver = lake.LAYERS["silver"].root(settings)
    _v1_file(silver, "AA.US", "part-000.parquet", bars("AA.US"))
    late = bars("AA.US").with_columns(pl.col("trade_date") + dt.timedelta(days=7))
    _v1_file(silver, "AA.US", "part-d20240109.parquet", late)
    _v1_file(silver, "BB.US", "part-000.parquet", bars("BB.US"))
    report = doctor.diagnose(settings)
    assert [(p.kind, p.path) for p in report.problems] == [("layout", str(silver))]
    assert report.next_steps and "--repair" in report.next_steps[0]
    repaired = doctor.diagnose(settings, repair=True)
    assert repaired.problems[0].repair.startswith("converted to lake v2 (2 tickers)")
    assert lake_table.is_table(silver) and not list(silver.glob("exchange=*"))
    assert not silver.with_name(silver.name + ".v1-old").exists()
    expected = pl.concat([bars("AA.US"), late, bars("BB.US")]).sort("ticker", "trade_date")
    assert lake.read_tickers(silver).equals(expected)
    assert "layout" not in {p.kind for p in doctor.diagnose(settings).problems}


def test_sql_names_a_v1_layer_instead_of_reading_it(isolated, tmp_path):
    from mf_pipeline.lib import sql

    (tmp_path / "raw").mkdir()
    settings = isolated(tmp_path / "raw")
    _v1_file(lake.LAYERS["bronze"].root(settings), "AA.US", "part-000.parquet", bars("AA.US"))
    _connection, missing = sql.connect(settings)
    assert missing["bronze"] == "v1 lake layout: run `mf doctor --repair` once to convert it"
