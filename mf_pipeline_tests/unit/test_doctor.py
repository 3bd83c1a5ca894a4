"""The lake doctor's pure logic (``lib/doctor.py``) on a hand-made lake: what it reports and
what ``repair`` does (the end-to-end test, ``e2e/test_doctor.py``, rebuilds a damaged lake)."""

import datetime as dt
import os

import polars as pl

from mf_pipeline.lib import doctor, lake
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
    files = {t: lake.write_symbol_files(bars(t, extra=t == "DD.US"), bronze_root)[t]
             for t in ("AA.US", "BB.US", "CC.US", "DD.US")}  # DD.US: another schema
    files["BB.US"].write_bytes(b"not parquet")
    lake.write_parquet(ledger([("a.txt", "AA.US", 4), ("b.txt", "BB.US", 4),
                               ("c.txt", "CC.US", 9)]), settings.bronze_root / doctor.LEDGER)
    manifest = pl.DataFrame({"source_file": ["a.txt", "b.txt", "c.txt", "d.txt"],
                             "ticker": ["AA.US", "BB.US", "CC.US", "DD.US"]})
    lake.write_parquet(manifest, settings.bronze_root / doctor.STABLE_MANIFEST)
    dead_temp = files["AA.US"].with_name(
        f".part-000.parquet.w999999999-1-{lake._host_tag()}-00000000.tmp")
    dead_temp.write_bytes(b"x")
    live_temp = lake._temp_path(files["AA.US"])  # this process: alive
    live_temp.write_bytes(b"x")
    (settings.silver_root / "_calc").mkdir(parents=True)
    (settings.silver_root / "_calc" / "silver.json").write_text("[1, 2]")

    report = doctor.diagnose(settings)
    found = {(p.kind, os.path.basename(os.path.dirname(p.path)) if p.kind == "per_ticker"
              else os.path.basename(p.path)): p.what for p in report.problems}
    assert set(found) == {("per_ticker", "ticker=BB.US"), ("per_ticker", "ticker=DD.US"),
                          ("ledger", "file_ledger.parquet"), ("temp", dead_temp.name),
                          ("calc", "silver.json")}
    assert "unreadable Parquet footer" in found["per_ticker", "ticker=BB.US"]
    assert "unexpected columns ['surprise']" in found["per_ticker", "ticker=DD.US"]
    assert "c.txt" in found["ledger", "file_ledger.parquet"]
    assert report.checked["bronze"] == 4 and len(report.remaining) == 5
    assert report.next_steps[0].startswith("mf doctor --repair")

    repaired = doctor.diagnose(settings, repair=True)
    assert not repaired.remaining
    assert not files["BB.US"].parent.exists() and not files["DD.US"].parent.exists()
    assert files["AA.US"].exists() and files["CC.US"].exists()
    quarantined = sorted(p.name for p in (tmp_path / "data" / doctor.QUARANTINE).rglob("*")
                         if p.name.startswith("ticker="))
    assert quarantined == ["ticker=BB.US", "ticker=DD.US"]
    # Broken Bronze tickers and the unreconciled file are ingested again by the next run.
    kept = pl.read_parquet(settings.bronze_root / doctor.STABLE_MANIFEST)["source_file"]
    assert kept.to_list() == ["a.txt"]
    assert not dead_temp.exists() and live_temp.exists()
    assert '"mixed"' in (settings.silver_root / "_calc" / "silver.json").read_text()
    assert any(step.startswith("mf run") for step in repaired.next_steps)

    after = doctor.diagnose(settings)  # the quarantine is not checked again
    assert [p.kind for p in after.problems] == ["ledger"]  # until the next run re-ingests c.txt
