"""``mf doctor`` on a damaged lake (issue #16 item 7): every damage is reported with its file;
``--repair`` then ``mf run`` gives a lake equal to one built from scratch."""

import json
import shutil
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.lib import lake
from mf_pipeline_tests.e2e.test_append import assert_same_lake, use_lake


def mf(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def report(*args: str, code: int) -> dict:
    output = mf("doctor", "--json", *args, code=code)
    return json.loads(output[output.index("\n{\n") + 1:])


def drop_footer(path) -> None:
    """Cut the Parquet footer (metadata, its length and the magic bytes) off a file."""
    data = path.read_bytes()
    footer = int.from_bytes(data[-8:-4], "little")
    path.write_bytes(data[: -(footer + 8)])


def tickers_in(root: Path, path: Path) -> set[str]:
    """The tickers the layer's snapshot says have rows in data file ``path``."""
    index = lake.snapshot(root).index
    return set(index.filter(pl.col("file") == str(path.relative_to(root)))["ticker"].to_list())


def test_doctor_reports_damage_and_repair_rebuilds_it(isolated, messy_universe, tmp_path,
                                                      monkeypatch):
    raw = tmp_path / "raw"
    shutil.copytree(messy_universe, raw)
    use_lake(monkeypatch, tmp_path / "damaged")
    settings = isolated(raw)
    mf("run", "--until", "ml_dataset")
    assert report(code=0)["ok"]

    silver_root, features_root = (lake.LAYERS[n].root(settings) for n in ("silver", "features"))
    silver = lake.snapshot(silver_root).files()[0]
    features = lake.snapshot(features_root).files()[-1]
    lost = {"silver": tickers_in(silver_root, silver),
            "features": tickers_in(features_root, features)}
    all_silver, all_features = lake.symbol_tickers(silver_root), lake.symbol_tickers(features_root)
    assert set() < lost["silver"] < set(all_silver)  # one shard's file: some tickers, not all
    assert set() < lost["features"] < set(all_features)
    silver.write_bytes(silver.read_bytes()[: silver.stat().st_size // 2])  # truncated
    drop_footer(features)
    carry = sorted((settings.gold_root / "_carry").glob("*.parquet"))[0]
    carry.write_bytes(b"PAR1 not really a table")
    calc = settings.gold_root / "_calc" / "events.json"
    calc.write_text('{"layer": "events", "fingerpr')

    found = report(code=1)
    assert found["remaining_count"] == 4
    problems = {p["path"]: p for p in found["problems"]}
    assert set(problems) == {str(silver), str(features), str(carry), str(calc)}
    assert "unreadable Parquet footer" in problems[str(silver)]["what"]
    assert "unreadable Parquet footer" in problems[str(features)]["what"]
    assert "unreadable Parquet footer" in problems[str(carry)]["what"]
    assert "unreadable JSON" in problems[str(calc)]["what"]
    text = mf("doctor", code=1)
    assert all(path in text for path in problems) and "mf doctor --repair" in text

    repaired = report("--repair", code=0)
    assert repaired["repaired_count"] == 4 and repaired["remaining_count"] == 0
    assert not silver.exists() and not features.exists() and not carry.exists()
    quarantined = Path(repaired["quarantine"])
    for path in (silver, features):  # moved, not deleted: same path under the quarantine
        assert (quarantined / path.absolute().relative_to(settings.data_root.absolute())).is_file()
    # the damaged files' tickers left their layers (stale: the next run rebuilds them)
    assert lake.symbol_tickers(silver_root) == sorted(set(all_silver) - lost["silver"])
    assert lake.symbol_tickers(features_root) == sorted(set(all_features) - lost["features"])
    assert "mf run" in " ".join(repaired["next_steps"])
    mf("run", "--until", "ml_dataset")
    assert report(code=0)["ok"]
    assert lake.symbol_tickers(silver_root) == all_silver
    assert lake.symbol_tickers(features_root) == all_features
    damaged = settings

    use_lake(monkeypatch, tmp_path / "fresh")
    fresh = isolated(raw)
    mf("run", "--until", "ml_dataset")
    assert_same_lake(damaged, fresh)
    for layer in ("silver", "indicators", "events", "features"):
        root = lake.LAYERS[layer].root
        got = json.loads((root(damaged).parent / "_calc" / f"{layer}.json").read_text())
        want = json.loads((root(fresh).parent / "_calc" / f"{layer}.json").read_text())
        assert got == want, layer
