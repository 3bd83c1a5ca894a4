"""The nightly append path, end to end through the CLI and Dagster, against a full rebuild.

A messy universe is built, then new lines are appended to its raw files (one clean bar
everywhere, several bars, a defective line, an older date that must fall back) and the same
``mf run`` runs again: only the new bars are computed. A second lake built in full from the
final raw files must hold exactly the same rows in every layer, ledger and rejects table.
"""

import datetime as dt
import json
import shutil

import polars as pl
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.lib import lake
from mf_pipeline.lib.steps import bronze_step

LAYERS = ("bronze", "silver", "indicators", "events", "features")
RUN_COLUMNS = ("run_id", "built_ts", "ingest_ts", "ingested_at")


def run(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def last_data_line(path) -> list[str] | None:
    for text in reversed(path.read_text(errors="replace").splitlines()):
        fields = text.strip().split(",")
        if len(fields) == 10 and fields[2].isdigit():
            return fields
    return None


def next_line(fields: list[str], days: int = 1, scale: float = 1.01) -> str:
    day = dt.datetime.strptime(fields[2], "%Y%m%d").date() + dt.timedelta(days=days)
    close = float(fields[7]) * scale
    prices = [f"{v:.4f}" for v in (close, close * 1.01, close * 0.99, close)]
    return ",".join([fields[0], fields[1], f"{day:%Y%m%d}", fields[3], *prices, "1000", "0"])


def append_lines(raw) -> dict[str, str]:
    """Append new lines to every data file; returns {file name: what was appended}."""
    done = {}
    files = sorted(p for p in raw.rglob("*.txt") if "_truth" not in p.parts)
    for number, path in enumerate(files):
        raw_bytes = path.read_bytes()
        fields = last_data_line(path)
        if fields is None or not raw_bytes.endswith(b"\n"):
            continue
        newline = "\r\n" if raw_bytes.endswith(b"\r\n") else "\n"
        kind = ("older_date", "two_bars", "bad_line", "one_bar")[min(number, 3)]
        if kind == "older_date":
            lines = [next_line(fields, days=-400)]
        elif kind == "two_bars":
            lines = [next_line(fields, 1), next_line(fields, 2, 1.5)]
        elif kind == "bad_line":
            lines = [next_line(fields) + ",extra"]
        else:
            lines = [next_line(fields)]
        with open(path, "a", newline="") as handle:
            handle.write("".join(line + newline for line in lines))
        done[path.name] = kind
    return done


def layer_rows(settings, layer: str) -> pl.DataFrame:
    frame = lake.read_layer(settings, layer)
    return frame.drop([c for c in RUN_COLUMNS if c in frame.columns])


def accounting(settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    bronze = bronze_step.paths(settings)
    ledger = pl.read_parquet(bronze.ledger).drop("run_id").sort("source_file")
    rejects = pl.read_parquet(bronze.rejects).sort("source_file", "line_no")
    return ledger, rejects


def assert_same_lake(got, want) -> None:
    """Every layer's rows (run ids and build times aside), the ledger and the rejects equal."""
    for layer in LAYERS:
        got_rows, want_rows = layer_rows(got, layer), layer_rows(want, layer)
        assert got_rows.columns == want_rows.columns, layer
        assert got_rows.equals(want_rows, null_equal=True), layer
    for got_table, want_table in zip(accounting(got), accounting(want), strict=True):
        assert got_table.equals(want_table, null_equal=True)


def use_lake(monkeypatch, root) -> None:
    monkeypatch.setenv("MF_PIPELINE_PATHS__DATA_ROOT", str(root / "data"))
    monkeypatch.setenv("MF_PIPELINE_PATHS__ARTIFACTS_ROOT", str(root / "artifacts"))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))


def test_append_path_equals_a_full_rebuild(isolated, messy_universe, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    use_lake(monkeypatch, tmp_path / "nightly")
    nightly = isolated(raw)
    run("run", "--until", "features")
    kinds = append_lines(raw)
    assert {"one_bar", "two_bars", "bad_line", "older_date"} <= set(kinds.values())
    outcome = run("run", "--until", "features")
    # The clean appends took the fast path; the older date fell back to a full rebuild.
    assert outcome["bronze"]["tickers_appended"] >= 1
    assert outcome["features"]["tickers_appended"] >= 1
    for layer in LAYERS:  # the new bars were appended: some shard got a second file
        files = lake.snapshot(lake.LAYERS[layer].root(nightly)).index
        assert files.group_by("shard").agg(pl.col("file").n_unique())["file"].max() >= 2, layer

    use_lake(monkeypatch, tmp_path / "full")
    full = isolated(raw)
    run("run", "--until", "features")
    assert_same_lake(nightly, full)

    use_lake(monkeypatch, tmp_path / "nightly")
    nightly = isolated(raw)
    assert bronze_step.reconciliation_failures(nightly).is_empty()
    before = {layer: layer_rows(nightly, layer) for layer in LAYERS}
    again = run("run", "--until", "features")
    assert "bronze" not in again
    for layer in LAYERS:
        assert layer_rows(nightly, layer).equals(before[layer], null_equal=True), layer


def test_a_layer_rebuilt_alone_is_caught_up_once(isolated, messy_universe, tmp_path, monkeypatch):
    """A one-layer rebuild leaves later layers older than it without new bars: the next run
    rebuilds them in full once, and then nothing is stale any more."""
    from mf_pipeline.lib.registry import DERIVED as DERIVED_LAYERS
    from mf_pipeline.lib.steps.derived_step import stale_tickers

    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    settings = isolated(raw)
    run("run", "--until", "features")
    ticker = lake.symbol_tickers(lake.LAYERS["silver"].root(settings))[0]
    CliRunner().invoke(app, ["silver-one", "--ticker", ticker], catch_exceptions=False)
    assert ticker in stale_tickers(settings, DERIVED_LAYERS)
    outcome = run("run", "--until", "features")
    assert outcome["features"]["tickers_written"] >= 1
    assert stale_tickers(settings, DERIVED_LAYERS) == []
