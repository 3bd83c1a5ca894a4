"""The validation commands end to end on a real `mf demo` lake: every number checked here was
produced by the assets and jobs themselves (no hand-made fixture between our components).

The demo runs the validation, QA and policy assets of every state source on the in-sample
``full`` split; the tests then run each old command name against what it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from mf_pipeline_tests.e2e.demo_cli import asset_record, demo_lake, mf_runner

pytestmark = pytest.mark.e2e

SPEC_FILES = (  # research.md §6.6 step 4
    "adapter_summary.json", "bootstrap_state_summary.csv", "bootstrap_state_summary.parquet",
    "bootstrap_pairwise_diff.csv", "bootstrap_pairwise_diff.parquet", "bootstrap_meta.json",
    "transition_event_summary.csv", "transition_event_path_summary.csv",
    "transition_top_codes.json", "rolling_state_metrics.csv", "state_stability_summary.csv",
    "transition_matrix_stability.csv", "state_scorecard.csv", "validation_scorecard.json",
    "run_summary.json",
)  # fmt: skip
SAMPLE_END_YEARS = ("2021-12-31", "2023-12-31")
"""Two train ends inside the demo sample (8 years to 2025-12-31)."""


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Iterator[Path]:
    yield from demo_lake(tmp_path_factory.mktemp("validation_lake"))


@pytest.fixture
def mf(lake: Path, monkeypatch):
    return mf_runner(lake, monkeypatch)


@pytest.mark.parametrize("source", ["flow", "hmm", "cluster"])
def test_demo_validates_and_classifies_every_source_in_sample(lake: Path, source: str) -> None:
    record = asset_record(lake, f"state_validation_{source}")
    folder = Path(record["output_dir"])
    assert all((folder / name).is_file() for name in SPEC_FILES)
    run = json.loads((folder / "run_summary.json").read_text())
    assert run["in_sample"] is True and record["in_sample"] is True
    expected = {"flow": "flow_state_code", "hmm": "hmm_state_filtered", "cluster": "cluster_id"}
    assert run["state_column"] == expected[source]  # HMM outcomes judged on causal states
    scorecard = pl.read_parquet(folder / "state_scorecard.parquet")
    assert scorecard.height == run["state_count"] == record["state_count"]
    policy = asset_record(lake, f"state_policy_{source}")
    table = pl.read_csv(Path(policy["output_dir"]) / "cluster_hardening_state_table.csv")
    counts = table["class_label"].value_counts()
    assert dict(counts.rows()) == {k: v for k, v in (
        ("ALLOW", policy["allow_count"]), ("WATCH", policy["watch_count"]),
        ("BLOCK", policy["block_count"])) if v}
    allowed = table.filter(pl.col("class_label") == "ALLOW")
    assert allowed["edge_significant"].all()  # ALLOW only with a Holm-significant edge
    hint = allowed.select(pl.when(pl.col("fwd_ret_10_mean") > 0).then(pl.lit("LONG_BIAS"))
                          .otherwise(pl.lit("SHORT_BIAS")))  # fmt: skip
    assert allowed["allow_direction_hint"].to_list() == hint.to_series().to_list()


def test_the_three_sources_are_judged_on_the_same_rows(lake: Path) -> None:
    runs = [json.loads((Path(asset_record(lake, f"state_validation_{s}")["output_dir"])
                        / "run_summary.json").read_text()) for s in ("flow", "hmm", "cluster")]
    assert len({r["rows"] for r in runs}) == 1
    assert len({r["identity"]["common_rows"] for r in runs}) == 1


def test_observed_means_are_the_plain_means_of_the_input_rows(lake: Path) -> None:
    """The bootstrap's ``mean_obs`` against polars on the rows the HMM run decoded."""
    record = asset_record(lake, "state_validation_hmm")
    run = json.loads((Path(record["output_dir"]) / "run_summary.json").read_text())
    decoded = pl.read_parquet(Path(run["identity"]["hmm_run_dir"]) / "decoded_rows.parquet")
    clustered = pl.read_parquet(
        Path(run["identity"]["cluster_run_dir"]) / "clustered_dataset_full.parquet",
        columns=["ticker", "trade_date"])
    rows = decoded.join(clustered, on=["ticker", "trade_date"])
    direct = (rows.filter(pl.col("fwd_ret_10").is_finite())
              .group_by(pl.col("hmm_state_filtered").cast(pl.Int32).alias("state_id"))
              .agg(pl.col("fwd_ret_10").mean().alias("direct"), pl.len().alias("n_direct")))
    summary = pl.read_parquet(Path(record["output_dir"]) / "bootstrap_state_summary.parquet")
    joined = summary.filter(pl.col("outcome_name") == "fwd_ret_10").join(direct, on="state_id")
    assert joined.height == direct.height
    assert (joined["n"] == joined["n_direct"]).all()
    assert (joined["mean_obs"] - joined["direct"]).abs().max() < 1e-12


def test_validation_run_on_a_file_is_reproducible_and_records_its_input(lake: Path, mf) -> None:
    decoded = next((lake / "artifacts" / "hmm_runs").glob("*/decoded_rows.parquet"))
    first = mf("validation-run", "--input-file", str(decoded), "--bootstrap-n", "100", "--json")
    again = mf("validation-run", "--input-file", str(decoded), "--bootstrap-n", "100", "--json")
    assert first["run_id"] == again["run_id"]  # same input and options, same folder
    assert first["input_file"] == str(decoded.resolve())
    assert first["state_column"] == "hmm_state_filtered"
    a = pl.read_csv(Path(first["output_dir"]) / "state_scorecard.csv")
    b = pl.read_csv(Path(again["output_dir"]) / "state_scorecard.csv")
    assert a.equals(b)
    iid = mf("validation-run", "--input-file", str(decoded), "--bootstrap-n", "100",
             "--bootstrap-mode", "iid", "--json")
    assert iid["run_id"] != first["run_id"]
    sanity = mf("validation-sanity", "--run-dir", first["output_dir"], "--json")
    assert sanity["passed"] and sanity["nan_warning_total"] == 0


def test_bad_input_gets_a_clear_error(lake: Path, mf, tmp_path: Path) -> None:
    out = mf("validation-run", "--input-file", str(tmp_path / "nope.parquet"), code=2)
    assert "does not exist" in out
    out = mf("validation-run", "--input-file", str(tmp_path), "--input-type", "generic", code=2)
    assert "--state-col" in out
    bad = tmp_path / "labels.csv"
    bad.write_text("ticker,trade_date,state\nAAA.US,2020-01-02,1\nAAA.US,not-a-date,2\n")
    out = mf("validation-run", "--input-file", str(bad), "--input-type", "generic",
             "--state-col", "state", code=1)
    assert "not-a-date" in out
    out = mf("cluster-qa-run", code=2)
    assert "exactly one" in out
    out = mf("validation-sanity", "--run-dir", str(tmp_path), code=2)
    assert "run_summary.json" in out


def test_folder_commands_qa_hardening_and_compares(lake: Path, mf) -> None:
    hmm_dir = asset_record(lake, "state_validation_hmm")["output_dir"]
    cluster_dir = asset_record(lake, "state_validation_cluster")["output_dir"]
    qa = mf("cluster-qa-run", "--validation-run-dir", cluster_dir, "--json")
    assert Path(qa["output_dir"], "cluster_qa_flagged_states.csv").is_file()
    policy = mf("cluster-hardening-run", "--validation-run-dir", cluster_dir, "--force", "--json")
    export = policy["export_summary"]
    table = pl.read_csv(Path(policy["output_dir"]) / "cluster_hardening_state_table.csv")
    with_policy = pl.read_parquet(export["outputs"]["with_policy"])
    allowed = set(table.filter(pl.col("class_label") == "ALLOW")["state_id"].to_list())
    assert export["tradable_rows"] == with_policy.filter(
        pl.col("cluster_id").is_in(allowed)).height
    assert export["source_rows"] == with_policy.height
    sanity = mf("cluster-hardening-sanity", "--hardening-dir", policy["output_dir"], "--json")
    assert sanity["passed"] and sanity["mode"] == "single"
    compare = mf("validation-compare", "--run-dir-a", hmm_dir, "--run-dir-b", cluster_dir,
                 "--json")
    table = pl.read_csv(Path(compare["output_dir"]) / "validation_compare_states_matched.csv")
    assert table.height == min(asset_record(lake, "state_validation_hmm")["state_count"],
                               asset_record(lake, "state_validation_cluster")["state_count"])
    same = mf("cluster-hardening-compare", "--hardening-dir-a", policy["output_dir"],
              "--hardening-dir-b", policy["output_dir"], "--json")
    assert same["class_changed_states"] == 0 and same["match_total_cost"] == pytest.approx(0)


def test_walk_forward_runs_splits_on_non_overlapping_tests_and_resumes(lake: Path, mf) -> None:
    args = ("validation-wf-run", "--train-end-list", ",".join(SAMPLE_END_YEARS),
            "--bootstrap-n", "100", "--cluster-method", "kmeans", "--json")
    out = mf(*args)
    assert out["splits_successful"] == 2 and out["splits_failed"] == 0
    folder = Path(out["wf_run_dir"])
    manifest = json.loads((folder / "wf_manifest.json").read_text())
    first, second = manifest["splits"]
    bounds = json.loads((Path(first["val_hmm_dir"]) / "run_summary.json").read_text())["bounds"]
    assert bounds["max_trade_date"] <= SAMPLE_END_YEARS[1] < second["test_start"]
    assert first["test_end"] == SAMPLE_END_YEARS[1]
    long = pl.read_csv(folder / "wf_model_summary_long.csv")
    per_split = long.group_by("train_end").agg(pl.col("rows").n_unique())
    assert (per_split["rows"] == 1).all()  # HMM, Flow, Cluster on the same rows
    for name in ("wf_full_report.md", "wf_aggregate_summary.json", "wf_model_summary_wide.csv",
                 "cluster_qa/cluster_qa_wf_summary.json",
                 "cluster_hardening/cluster_hardening_wf_summary.json",
                 "cluster_hardening/cluster_hardening_threshold_recommendation.json"):
        assert (folder / name).is_file(), name
    again = mf(*args)
    assert again["wf_run_dir"] == out["wf_run_dir"]
    resumed = json.loads((folder / "wf_manifest.json").read_text())["splits"]
    assert all(split["skipped_existing"] for split in resumed)
    sanity = mf("validation-wf-sanity", "--wf-run-dir", str(folder), "--json")
    assert sanity["passed"] and sanity["splits_successful"] == 2
    hardening = mf("cluster-hardening-run", "--wf-run-dir", str(folder), "--json")
    assert hardening["splits_successful"] >= 2


def test_a_policy_is_rebuilt_when_its_validation_was_rerun(lake: Path, mf) -> None:
    """A policy is reused only for the validation contents it was built from."""
    folder = asset_record(lake, "state_validation_flow")["output_dir"]
    first = mf("cluster-hardening-run", "--validation-run-dir", folder, "--json")
    again = mf("cluster-hardening-run", "--validation-run-dir", folder, "--json")
    assert again["reused"] is True
    summary = Path(folder) / "run_summary.json"
    run = json.loads(summary.read_text())
    summary.write_text(json.dumps({**run, "finished_ts": "2030-01-01T00:00:00+00:00"}))
    rebuilt = mf("cluster-hardening-run", "--validation-run-dir", folder, "--json")
    assert rebuilt["reused"] is False and first["output_dir"] == rebuilt["output_dir"]


def test_threshold_options_reach_the_qa_and_the_policy(lake: Path, mf) -> None:
    folder = asset_record(lake, "state_validation_hmm")["output_dir"]
    states = asset_record(lake, "state_validation_hmm")["state_count"]
    qa = mf("cluster-qa-run", "--validation-run-dir", folder, "--min-n-rows", "10000000",
            "--json")
    assert qa["states_flagged"] == states and qa["issue_counts"]["LOW_N"] == states
    policy = mf("cluster-hardening-run", "--validation-run-dir", folder, "--min-n-rows-hard",
                "10000000", "--no-export-filtered", "--json")
    assert policy["block_count"] == states
    table = pl.read_csv(Path(policy["output_dir"]) / "cluster_hardening_state_table.csv")
    assert table["reasons"].str.contains("HARD_LOW_N").all()
    default = mf("cluster-hardening-run", "--validation-run-dir", folder, "--json")
    assert default["reused"] is False and default["block_count"] < states
