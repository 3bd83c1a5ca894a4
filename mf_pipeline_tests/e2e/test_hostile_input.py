"""Hostile raw input end to end (issue #16): `mf run --until features` on the messy universe
plus a file symlink to a file outside the raw root, a file whose name is not UTF-8, Unicode
look-alikes of a real ticker, values beyond float32 and a 20 MB single-line file. The run
succeeds, every raw file has a ledger row that reconciles, nothing outside the root is read,
and the real tickers reach every layer without an infinite value."""

import json
import os
import shutil

import polars as pl
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.lib import lake
from mf_pipeline.lib.layers import manifest as mf
from mf_pipeline.lib.steps import bronze_step

LAYERS = ("bronze", "silver", "indicators", "events", "features")
HEADER = "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>\n"
CANARY = "secret-canary-16"


def run(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_hostile_universe_runs_through_every_layer(isolated, messy_universe, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_text(f"root:x:0:0:{CANARY}:/root:/bin/bash\n")
    settings = isolated(raw)
    run("bronze-run")  # the clean messy universe first: pick a real, clean ticker
    ledger = pl.read_parquet(bronze_step.paths(settings).ledger)
    clean = ledger.filter((pl.col("status") == "OK") & (pl.col("reasons") == "")).row(
        0, named=True)
    real = raw / clean["source_file"]
    folder = real.parent
    name = real.name.lower()
    twin = "ſ" + name[1:] if name[0] == "s" else "ı" + name[1:] if name[0] == "i" else None
    look_alikes = [twin] if twin else []
    look_alikes.append(name.replace(name[0], "\u00a0" + name[0], 1))
    for alike in look_alikes:
        (folder / alike).write_text(HEADER)  # header only: would knock the real one out
    (folder / "evil.us.txt").symlink_to(secret)
    fd = os.open(os.fsencode(folder) + b"/\xff\xfe.us.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, HEADER.encode())
    os.close(fd)
    (folder / "zzinf.us.txt").write_text(
        HEADER + "ZZINF.US,D,20240102,000000,1e308,1e308,1e308,1e308,1000,0\n"
        + "ZZINF.US,D,20240103,000000,10,11,9,10.5,1e39,0\n"
        + "".join(f"ZZINF.US,D,202401{d:02d},000000,10,11,9,10.5,1000,0\n"
                  for d in range(4, 31)))
    with open(folder / "zzhuge.us.txt", "wb") as handle:
        handle.write(HEADER.encode() + b"7" * (20 << 20) + b"\n")
        for day in range(2, 31):
            handle.write(f"ZZHUGE.US,D,202401{day:02d},000000,10,11,9,10.5,1000,0\n".encode())

    run("run", "--until", "features")

    bronze = bronze_step.paths(settings)
    ledger = pl.read_parquet(bronze.ledger)
    assert bronze_step.reconciliation_failures(settings).is_empty()
    expected = sorted(mf.safe_text(os.fsdecode(p)) for p in
                      (os.path.relpath(os.path.join(d, f), os.fsencode(raw))
                       for d, _, fs in os.walk(os.fsencode(raw)) for f in fs)
                      if p.lower().endswith(b".txt"))
    assert sorted(ledger["source_file"]) == expected
    reasons = dict(zip(ledger["source_file"], ledger["reasons"], strict=True))
    rel = folder.relative_to(raw).as_posix()
    assert reasons[f"{rel}/evil.us.txt"] == mf.SYMLINK_OUTSIDE_ROOT
    assert reasons[f"{rel}/\\xff\\xfe.us.txt"] == mf.NON_UTF8_PATH
    for alike in look_alikes:
        assert mf.INVALID_FILE_TICKER in reasons[f"{rel}/{alike}"]
    assert reasons[clean["source_file"]] == ""
    assert "value_out_of_range" in reasons[f"{rel}/zzinf.us.txt"]
    assert reasons[f"{rel}/zzhuge.us.txt"] == f"line_too_long:{20 << 20}"
    rejects = pl.read_parquet(bronze.rejects)
    assert not rejects["raw_line"].str.contains(CANARY).any()
    assert rejects["raw_line"].str.len_bytes().max() < 10_000

    for layer in LAYERS:
        for ticker in (clean["ticker"], "ZZINF.US", "ZZHUGE.US"):
            rows = lake.read_layer(settings, layer, [ticker])
            assert rows.height > 0, (layer, ticker)
            floats = rows.select(pl.selectors.float())
            if floats.width:
                assert not floats.select(pl.any_horizontal(pl.all().is_infinite()).any()).item()
    assert lake.read_layer(settings, "bronze", ["ZZINF.US"]).height == 27
