"""The null sample universe (`generate_universe(null=True)`, `mf sample-data --null`): no regimes.

Returns are standardised by each ticker's sigma (truth `tickers.parquet`) so tickers pool; the
"would-be" regimes are the planted universe's truth for the same seed, whose regime paths the
null universe draws but does not use.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from mf_pipeline.lib.sample import SampleReport, generate_universe, generated_null_flag

SEED = 7
TICKERS = 80
YEARS = 6.0


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> SampleReport:
    out = tmp_path_factory.mktemp("planted")
    return generate_universe(out, n_tickers=TICKERS, years=YEARS, seed=SEED)


@pytest.fixture(scope="module")
def null(tmp_path_factory: pytest.TempPathFactory) -> SampleReport:
    out = tmp_path_factory.mktemp("null")
    return generate_universe(out, n_tickers=TICKERS, years=YEARS, seed=SEED, null=True)


def _bars(report: SampleReport) -> pl.DataFrame:
    """Every clean bar with its standardised daily log return `z` and close location `clv`."""
    files = sorted((report.out_dir / "data").rglob("*.txt"))
    frame = pl.concat([pl.read_csv(f, schema_overrides={"<VOL>": pl.Float64})
                       .rename(lambda c: c.strip("<>").lower()) for f in files])
    sigma = pl.read_parquet(report.truth_dir / "tickers.parquet").select("ticker", "sigma")
    return (
        frame.with_columns(trade_date=pl.col("date").cast(pl.String).str.to_date("%Y%m%d"))
        .sort("ticker", "trade_date")
        .join(sigma, on="ticker")
        .with_columns(
            z=pl.col("close").log().diff().over("ticker") / pl.col("sigma"),
            clv=(pl.col("close") - pl.col("low")) / (pl.col("high") - pl.col("low")),
        )
    )


def _by_would_be_regime(report: SampleReport, planted: SampleReport) -> pl.DataFrame:
    """Per planted regime: rows, mean, std and t-statistic of `z`, mean close location."""
    truth = pl.read_parquet(planted.truth_dir / "regimes.parquet")
    return (
        _bars(report)
        .join(truth, on=["ticker", "trade_date"])
        .drop_nulls("z")
        .group_by("regime")
        .agg(n=pl.len(), mean=pl.col("z").mean(), std=pl.col("z").std(), clv=pl.col("clv").mean())
        .with_columns(t=pl.col("mean") / (pl.col("std") / pl.col("n").sqrt()))
        .sort("regime")
    )


def test_null_truth_is_one_regime_and_recorded(null: SampleReport, planted: SampleReport) -> None:
    truth = pl.read_parquet(null.truth_dir / "regimes.parquet")
    assert truth["regime"].unique().to_list() == [0]
    same_rows = pl.read_parquet(planted.truth_dir / "regimes.parquet").drop("regime")
    assert truth.drop("regime").equals(same_rows)  # same tickers, same histories
    universe = json.loads((null.truth_dir / "universe.json").read_text())
    assert universe["null"] is True and universe["transitions"] is None
    assert [(r["id"], r["drift_sigma_mult"], r["clv_mean"]) for r in universe["regimes"]] == [
        (0, 0.0, 0.5)
    ]
    assert generated_null_flag(null.out_dir) is True
    assert generated_null_flag(planted.out_dir) is False
    assert "null" not in json.loads((planted.truth_dir / "universe.json").read_text())


def test_null_returns_have_no_drift_and_one_volatility(
    null: SampleReport, planted: SampleReport
) -> None:
    stats = _by_would_be_regime(null, planted)
    assert stats.height == 4 and stats["n"].min() > 3000
    # Zero drift, overall and within every would-be regime: |t| within 4 standard errors.
    z = _bars(null)["z"].drop_nulls()
    assert abs(z.mean() / (z.std() / np.sqrt(z.len()))) < 4
    assert stats["t"].abs().max() < 4
    # One volatility level: unit-variance shocks at the ticker's sigma (clipping trims a bit).
    assert stats["std"].max() / stats["std"].min() < 1.05
    assert 0.93 < stats["std"].mean() < 1.03
    # Symmetric close location in every would-be regime.
    assert stats["clv"].min() > 0.47 and stats["clv"].max() < 0.53


def test_planted_universe_differs_where_null_does_not(planted: SampleReport) -> None:
    """The same statistics on the planted universe: what the null removes is really there."""
    stats = _by_would_be_regime(planted, planted)
    assert stats["t"][1] > 8 and stats["t"][3] < -8  # markup up, markdown down
    assert stats["std"].max() / stats["std"].min() > 1.4
    assert stats["clv"][1] - stats["clv"][3] > 0.3


def test_default_output_unchanged(tmp_path: Path) -> None:
    """`null=False` writes exactly the text files it wrote before the option existed (digest
    taken with the generator of commit e695c84; parquet bytes are polars' and not pinned)."""
    report = generate_universe(tmp_path, n_tickers=3, years=0.5, seed=11, messy=True)
    digest = hashlib.sha256()
    for path in sorted(p for p in report.out_dir.rglob("*") if p.suffix in (".txt", ".json")):
        digest.update(path.relative_to(report.out_dir).as_posix().encode())
        digest.update(path.read_bytes())
    assert digest.hexdigest() == DEFAULT_DIGEST


DEFAULT_DIGEST = "3cfd0c693e0d839aad48cf0c5834713be22218c8ecc16c62099e1c43bc78041a"


def test_cli_null_flag(tmp_path: Path) -> None:
    from mf_pipeline.cli.app import app

    result = CliRunner().invoke(
        app, ["sample-data", "--out", str(tmp_path), "--tickers", "2", "--years", "0.3", "--null"]
    )
    assert result.exit_code == 0, result.output
    assert generated_null_flag(tmp_path) is True
    regimes = pl.read_parquet(tmp_path / "_truth" / "regimes.parquet")["regime"]
    assert regimes.len() > 0 and regimes.unique().to_list() == [0]


def test_settings_null_regenerates_embedded_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`MF_PIPELINE_SAMPLE__NULL=true` builds a null embedded sample, also over a planted one."""
    from mf_pipeline.lib.settings import load_settings
    from mf_pipeline.lib.steps.bronze_step import ensure_raw_root

    monkeypatch.delenv("MF_PIPELINE_PATHS__RAW_ROOT", raising=False)
    monkeypatch.delenv("MF_PIPELINE_SETTINGS_FILE", raising=False)
    for key, value in {"PATHS__DATA_ROOT": str(tmp_path / "data"), "SAMPLE__TICKERS": "2",
                       "SAMPLE__YEARS": "0.3", "SAMPLE__MESSY": "false"}.items():
        monkeypatch.setenv(f"MF_PIPELINE_{key}", value)
    settings = load_settings()
    assert settings.uses_sample and settings.sample.null is False
    root = ensure_raw_root(settings, log=lambda _: None)
    assert generated_null_flag(root) is False
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__NULL", "true")
    assert ensure_raw_root(load_settings(), log=lambda _: None) == root
    assert generated_null_flag(root) is True
    truth = pl.read_parquet(root / "_truth" / "regimes.parquet")
    assert truth["regime"].unique().to_list() == [0]


def test_null_messy_plants_the_same_defects(tmp_path: Path) -> None:
    """A messy null universe plants every defect kind in the same files (their bars are null
    too, so the random stream and thus the defect line numbers may differ)."""
    kwargs = {"n_tickers": 3, "years": 0.5, "seed": 11, "messy": True}
    planted = generate_universe(tmp_path / "p", **kwargs)
    null = generate_universe(tmp_path / "n", null=True, **kwargs)
    defects = [json.loads((r.truth_dir / "defects.json").read_text()) for r in (planted, null)]
    def kinds(entries: list[dict]) -> list[tuple]:
        return [(e["kind"], e["source_file"], e["expected_reason"]) for e in entries]

    assert kinds(defects[0]) == kinds(defects[1]) and len(defects[0]) >= 19
    messy_file = planted.out_dir / defects[0][0]["source_file"]
    null_file = null.out_dir / defects[0][0]["source_file"]
    assert messy_file.read_bytes() != null_file.read_bytes()
