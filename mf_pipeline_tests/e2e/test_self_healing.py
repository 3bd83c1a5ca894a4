"""Derived state that is stale, restored, damaged or failed never leaves a wrong lake behind.

Each case damages one piece of our own state, then runs ``mf run`` the way a user would (a no-op
night, a changed raw line, a new day) and compares the lake with one built from scratch from
the same raw files.
"""

import json
import logging
import os
import shutil
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.lib import lake
from mf_pipeline.lib.sample_append import append_one_bar
from mf_pipeline.lib.steps import calc_settings, carry_store
from mf_pipeline_tests.e2e.test_append import LAYERS, layer_rows, run, use_lake


def build(isolated, raw: Path, root: Path, monkeypatch):
    use_lake(monkeypatch, root)
    settings = isolated(raw)
    run("run", "--until", "features")
    return settings


def assert_equals_fresh(isolated, raw: Path, tmp_path: Path, monkeypatch, settings) -> None:
    got = {layer: layer_rows(settings, layer) for layer in LAYERS}
    fresh = build(isolated, raw, tmp_path / f"fresh{len(list(tmp_path.glob('fresh*')))}",
                  monkeypatch)
    for layer in LAYERS:
        assert got[layer].equals(layer_rows(fresh, layer), null_equal=True), layer


def truncate_keeping_mtime(path: Path) -> None:
    """Cut a file in half and put its old times back (damage no timestamp reveals)."""
    stat = path.stat()
    path.write_bytes(path.read_bytes()[: stat.st_size // 2])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def assert_doctor_names(*damaged: Path) -> None:
    """``mf doctor`` reports exactly the ``damaged`` files, each as an unreadable footer."""
    result = CliRunner().invoke(app, ["doctor", "--json"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    report = json.loads(result.output[result.output.index("\n{\n") + 1:])
    problems = {p["path"]: p["what"] for p in report["problems"]}
    assert set(problems) == {str(path) for path in damaged}, problems
    assert all("unreadable Parquet footer" in what for what in problems.values()), problems


def edit_a_middle_line(raw: Path) -> None:
    """Change the close of one bar in the middle of one file (a corrected history)."""
    path = sorted(p for p in raw.rglob("*.txt") if "_truth" not in p.parts)[0]
    lines = path.read_text().splitlines(keepends=True)
    middle = len(lines) // 2
    fields = lines[middle].rstrip("\r\n").split(",")
    fields[7] = f"{float(fields[7]) * 1.001:.4f}"
    lines[middle] = ",".join(fields) + "\n"
    path.write_text("".join(lines))


def test_a_restored_older_carry_is_never_trusted(isolated, messy_universe, tmp_path,
                                                 monkeypatch):
    """Issue #16's reproduction without a kill: after a nightly append, put back the previous
    features carry; a no-op run, a corrected raw line and a new day must all give the lake a
    fresh build gives (before, the newest features row of most tickers was wrong)."""
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    settings = build(isolated, raw, tmp_path / "nightly", monkeypatch)
    carry = carry_store.carry_path(settings, "features")
    previous = carry.read_bytes()
    append_one_bar(raw)
    run("run", "--until", "features")
    carry.write_bytes(previous)
    run("run", "--until", "features")
    edit_a_middle_line(raw)
    run("run", "--until", "features")
    append_one_bar(raw)
    run("run", "--until", "features")
    assert_equals_fresh(isolated, raw, tmp_path, monkeypatch, settings)


def test_damaged_derived_state_is_rebuilt_with_a_warning(isolated, messy_universe, tmp_path,
                                                         monkeypatch, caplog):
    """A truncated carry, garbage in a settings record and a truncated Silver data file whose
    mtime was kept: the next runs succeed, say what they rebuilt, and converge."""
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    settings = build(isolated, raw, tmp_path / "nightly", monkeypatch)
    carry = carry_store.carry_path(settings, "indicators")
    carry.write_bytes(carry.read_bytes()[:200])
    calc_settings.record_path(settings, "events").write_text("{ not json")
    silver = lake.snapshot(lake.LAYERS["silver"].root(settings)).files()[0]
    truncate_keeping_mtime(silver)
    append_one_bar(raw)
    with caplog.at_level(logging.WARNING):
        run("run", "--until", "features")
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert f"{carry} is unreadable" in warned
    assert f"{calc_settings.record_path(settings, 'events')} is unreadable" in warned
    assert calc_settings.stored(settings, "events")["fingerprint"] == \
        calc_settings.fingerprint(settings, "events")
    # rebuilt: the damaged file is no longer in Silver's snapshot, and every file it names reads
    assert silver not in lake.snapshot(lake.LAYERS["silver"].root(settings)).files()
    assert lake.read_layer(settings, "silver").height > 0
    run("run", "--until", "features", "--full")
    assert_equals_fresh(isolated, raw, tmp_path, monkeypatch, settings)


def test_a_damaged_silver_file_alone_is_rebuilt_by_the_next_night(isolated, messy_universe,
                                                                  tmp_path, monkeypatch):
    """Only a truncated Silver data file (mtime kept), then a new day: the run must not leave
    the layer unreadable (the lake after it equals a fresh build)."""
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    settings = build(isolated, raw, tmp_path / "nightly", monkeypatch)
    silver = lake.snapshot(lake.LAYERS["silver"].root(settings)).files()[0]
    truncate_keeping_mtime(silver)
    append_one_bar(raw)
    run("run", "--until", "features")
    assert silver not in lake.snapshot(lake.LAYERS["silver"].root(settings)).files()
    assert_equals_fresh(isolated, raw, tmp_path, monkeypatch, settings)


def test_a_failed_check_keeps_its_tickers_stale_until_they_pass(isolated, messy_universe,
                                                                tmp_path, monkeypatch):
    """A blocking check that fails leaves no stored state for the run's tickers: the next run
    rebuilds and checks them again, instead of reporting nothing to do."""
    from mf_pipeline.defs.derived import assets as derived_assets
    from mf_pipeline.lib.steps.derived_step import stale_tickers

    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    use_lake(monkeypatch, tmp_path / "lake")
    settings = isolated(raw)
    real = derived_assets.sanity_failures
    monkeypatch.setattr(derived_assets, "sanity_failures", lambda layer, frame: (
        ["planted problem"] if layer == "events" else real(layer, frame)))
    CliRunner().invoke(app, ["run", "--until", "features"])
    assert set(stale_tickers(settings, ["events"])) == set(
        lake.symbol_tickers(lake.LAYERS["events"].root(settings)))
    monkeypatch.setattr(derived_assets, "sanity_failures", real)
    outcome = run("run", "--until", "features")
    assert outcome["events"]["tickers_written"] > 0
    assert stale_tickers(settings, ["events", "features"]) == []


def test_a_source_lost_with_the_stable_manifest_is_retired(isolated, messy_universe, tmp_path,
                                                           monkeypatch):
    """Deleting the stable manifest together with a raw file used to leave that ticker in
    every layer, even after --full: no file was classified DELETED any more."""
    from mf_pipeline.lib.steps import bronze_step

    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    settings = build(isolated, raw, tmp_path / "nightly", monkeypatch)
    bronze_step.paths(settings).stable_manifest.unlink()
    victim = lake.symbol_tickers(lake.LAYERS["features"].root(settings))[0]
    [source] = [p for p in raw.rglob("*.txt") if p.name.upper() == f"{victim}.TXT"]
    source.unlink()
    run("run", "--until", "features")
    for layer in LAYERS:
        assert victim not in lake.symbol_tickers(lake.LAYERS[layer].root(settings)), layer
    assert_equals_fresh(isolated, raw, tmp_path, monkeypatch, settings)


def test_a_damaged_bronze_file_is_named_and_repaired(isolated, messy_universe, tmp_path,
                                                     monkeypatch):
    """A truncated Bronze data file (mtime kept) used to fail incremental runs with a polars
    error naming no file. Now a run that reads it (here: a changed Silver setting rebuilds
    Silver from the stored Bronze rows) names it and the remedy; `mf doctor --repair` drops
    its tickers and their raw files are ingested again."""
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    settings = build(isolated, raw, tmp_path / "nightly", monkeypatch)
    bronze = lake.snapshot(lake.LAYERS["bronze"].root(settings)).files()[0]
    truncate_keeping_mtime(bronze)
    root = lake.LAYERS["bronze"].root(settings)
    lost = set(lake.snapshot(root).index.filter(
        pl.col("file") == str(bronze.relative_to(root)))["ticker"].to_list())
    assert lost
    monkeypatch.setenv("MF_PIPELINE_PRECISION__SILVER_FLOAT",
                       "float32" if settings.precision.silver_float == "float64" else "float64")
    result = CliRunner().invoke(app, ["run", "--until", "features"])
    assert result.exit_code != 0
    assert f"cannot read the bronze layer: {bronze}." in result.output
    assert "mf doctor --repair" in result.output
    assert_doctor_names(bronze)
    CliRunner().invoke(app, ["doctor", "--repair"])
    assert lost.isdisjoint(lake.symbol_tickers(root))
    run("run", "--until", "features")
    assert lost <= set(lake.symbol_tickers(root))  # ingested again from their raw files
    assert_equals_fresh(isolated, raw, tmp_path, monkeypatch, settings)
