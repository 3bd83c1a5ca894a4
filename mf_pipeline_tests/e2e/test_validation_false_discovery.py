"""False-discovery check of the validation harness (issue #19), through the real ``mf`` commands
on scratch lakes: on planted regimes the policy must ALLOW the strong bullish state long and the
strong bearish one short, with no ALLOW of the wrong sign; on a pure random walk it must ALLOW
nothing, whether the states are random labels or what the HMM and the clustering found.

Tolerance on the null: zero ALLOW in each of the four policies (HMM, cluster and flow states
of ``mf demo``, two random states). ALLOW needs a Holm-significant edge at alpha 0.05 across the
states of one run, so a calibrated harness has a false ALLOW in at most ~5 % of runs; measured
by ``bench/validation_null_calibration.py`` (docs/VALIDATION.md, "False-discovery check"): one
ALLOW in 5 of 50 null universes with five random states, never two (row-iid resampling: 16 of
20). The seeds are fixed, so the test is deterministic. Two random states rather than five on
purpose: more rows per state give the check power against the convexity of simple returns (a
driftless log walk has mean ``fwd_ret_10`` exp(10 sigma^2 / 2) - 1, about +0.2 % here), which
the old "mean = 0" edge test took for an edge of every state: on f231e34 this null lake had both
random states, cluster 0 and flow state 2 ALLOW LONG_BIAS (HMM: none).
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from typer.testing import CliRunner

from bench.validation_null_calibration import sticky_states
from mf_pipeline.cli import app
from mf_pipeline.lib.sample import DRIFT_SIGMA_MULT, REGIME_NAMES
from mf_pipeline.lib.settings import Settings, load_settings

TICKERS, YEARS = "50", "8"  # 73k rows: about 20 s per universe for the pipeline
SOURCES = ("hmm", "cluster", "flow")


def mf(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def dataset_rows(settings: Settings) -> pl.DataFrame:
    """ticker, trade_date, close of the ML dataset (the adapter computes the forward returns)."""
    [path] = (settings.gold_root / "datasets").rglob("dataset.parquet")
    return pl.read_parquet(path, columns=["ticker", "trade_date", "close"])


def policy_of(rows: pl.DataFrame, path: Path) -> dict[int, dict[str, Any]]:
    """Validate the state-labelled ``rows`` (column ``regime``) and harden the run: the
    policy record of every state."""
    rows.write_parquet(path)
    run = json.loads(mf("validation-run", "--input-file", str(path), "--input-type", "generic",
                        "--state-col", "regime", "--json"))
    assert run["rows"] == rows.height and run["state_label_type"] == "generic"
    out = json.loads(mf("cluster-hardening-run", "--validation-run-dir", run["output_dir"],
                        "--json"))
    policy = json.loads((Path(out["output_dir"]) / "cluster_hardening_policy.json").read_text())
    return {r["state_id"]: r for r in policy["per_state"]}


def test_planted_regimes_are_allowed_with_their_sign(isolated, tmp_path):
    raw = tmp_path / "raw"
    mf("sample-data", "--out", str(raw), "--tickers", TICKERS, "--years", YEARS, "--seed", "3")
    settings = isolated(raw)
    mf("run", "--until", "ml_dataset")
    rows = dataset_rows(settings)
    truth = pl.read_parquet(raw / "_truth" / "regimes.parquet")
    labelled = rows.join(truth, on=["ticker", "trade_date"], how="inner")
    assert labelled.height == rows.height  # every clean bar has its true regime
    assert sorted(labelled["regime"].unique()) == [0, 1, 2, 3]

    policy = policy_of(labelled, tmp_path / "truth_states.parquet")
    markup, markdown = REGIME_NAMES.index("markup"), REGIME_NAMES.index("markdown")
    assert (policy[markup]["class_label"], policy[markup]["allow_direction_hint"]) == (
        "ALLOW", "LONG_BIAS")
    # the bearish state is tradable short, not blocked for being negative
    assert (policy[markdown]["class_label"], policy[markdown]["allow_direction_hint"]) == (
        "ALLOW", "SHORT_BIAS")
    for state, record in policy.items():  # nothing contradicts the truth
        truth_sign = np.sign(DRIFT_SIGMA_MULT[state])
        mean = record["metrics"]["fwd_ret_10_mean"]
        if record["class_label"] == "ALLOW":
            assert record["allow_direction_hint"] == (
                "LONG_BIAS" if truth_sign > 0 else "SHORT_BIAS"), (state, record)
            assert np.sign(mean) == truth_sign, (state, record)
    assert policy[markup]["metrics"]["fwd_ret_10_mean"] > 0.01  # +0.10 sigma/day over 10 days
    assert policy[markdown]["metrics"]["fwd_ret_10_mean"] < -0.01  # -0.12 sigma/day


def test_a_pure_random_walk_is_allowed_nothing(isolated, tmp_path, monkeypatch):
    isolated  # noqa: B018 - fixture sets the roots; no raw root: the embedded sample is used
    monkeypatch.delenv("MF_PIPELINE_PATHS__RAW_ROOT", raising=False)
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__NULL", "true")
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__TICKERS", TICKERS)
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__YEARS", YEARS)
    mf("demo")
    settings = load_settings()
    universe = json.loads((settings.sample_raw_root / "_truth" / "universe.json").read_text())
    assert universe["null"] is True

    # The states the demo found and validated on `full`: HMM (filtered), clusters, flow codes.
    for source in SOURCES:
        record = json.loads((settings.data_root / "_io" / f"state_policy_{source}" / "full.json")
                            .read_text())
        assert record["source"] == source
        assert record["allow_count"] == 0 and record["allow_state_ids"] == [], (source, record)
        assert record["watch_count"] + record["block_count"] >= 2, (source, record)

    # Random states on the same null rows.
    rows = dataset_rows(settings).sort("ticker", "trade_date")
    labelled = rows.with_columns(regime=pl.Series(sticky_states(rows.height, 2, seed=5)))
    policy = policy_of(labelled, tmp_path / "random_states.parquet")
    assert sorted(policy) == [0, 1]
    for state, record in policy.items():
        assert record["class_label"] != "ALLOW", (state, record)
        # Both states earn the same positive simple return (the convexity bias): the edge test
        # against the all-states mean, not a loose threshold, is what keeps them out.
        assert record["metrics"]["fwd_ret_10_mean"] > 0, (state, record)
        assert not record["metrics"]["edge_significant"], (state, record)
        assert "WATCH_EDGE_NOT_SIGNIFICANT" in record["reasons"], (state, record)
