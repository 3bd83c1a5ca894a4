"""Research commands end to end on the tiny demo sample: artifacts, causal columns, recovery."""

import json
from pathlib import Path

import dagster as dg
import polars as pl
from typer.testing import CliRunner

import mf_pipeline.cli.research_commands  # noqa: F401  (registers the commands)
from mf_pipeline.cli import app
from mf_pipeline.lib import lake
from mf_pipeline.lib.settings import load_settings


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def newest(folder: Path, pattern: str) -> Path:
    return max(folder.glob(pattern), key=lambda p: p.stat().st_mtime)


def test_research_commands_on_the_demo_sample(isolated, monkeypatch):
    isolated  # noqa: B018
    monkeypatch.delenv("MF_PIPELINE_PATHS__RAW_ROOT", raising=False)
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__TICKERS", "6")
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__YEARS", "1.5")
    monkeypatch.setenv("MF_PIPELINE_RESEARCH_CLUSTERING__KMEANS__N_INIT", "4")
    invoke("demo")  # also materializes the research assets for the `full` split
    settings = load_settings()
    art = settings.artifacts_root

    # the demo's in-sample split feeds the viewer's per-ticker files
    files = lake.snapshot(settings.gold_root / "hmm_by_symbol").files()
    assert files
    cols = pl.read_parquet(files[0]).columns
    assert {"ticker", "trade_date", "hmm_state", "hmm_state_filtered",
            "hmm_prob_filtered_max"} <= set(cols)  # fmt: skip
    assert lake.snapshot(settings.gold_root / "cluster_by_symbol").files()

    invoke("research-cluster-run", "--split", "full", "--n-clusters", "4", "--method", "gmm")
    run = newest(art / "research_runs", "research-*_gmm_*")
    for name in ("run_summary.json", "preprocess_summary.json", "clustering_metrics.json",
                 "cluster_profile.parquet", "cluster_profile.csv", "split_summary.json",
                 "robustness_summary.json", "clustered_dataset_sample.parquet"):
        assert (run / name).exists(), name
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["split_kind"] == "full_in_sample" and summary["in_sample"] is True
    rec = summary["regime_recovery"]["results"]
    assert [r["label_col"] for r in rec] == ["cluster_id"] and rec[0]["rows_compared"] > 0
    assert "silhouette" in json.loads((run / "clustering_metrics.json").read_text())["metrics"]
    assert "fwd_ret_10_mean" in pl.read_parquet(run / "cluster_profile.parquet").columns
    assert "top_fwd_ret_10" in invoke("research-cluster-sanity", "--run-dir", str(run))

    invoke("research-hmm-run", "--split", "full", "--n-components", "3")
    hrun = newest(art / "hmm_runs", "hmm-*_hmm_ml-*")
    for name in ("run_summary.json", "split_summary.json", "hmm_model_meta.json",
                 "decoded_rows.parquet", "hmm_state_profile.parquet", "transition_matrix.csv",
                 "transition_matrix_fitted.csv", "transition_counts.csv", "dwell_stats.csv",
                 "state_frequency.csv", "hmm_vs_flow_state_crosstab.csv",
                 "robustness_summary.json"):
        assert (hrun / name).exists(), name
    decoded = pl.read_parquet(hrun / "decoded_rows.parquet")
    for col in ("hmm_state", "hmm_state_filtered", "hmm_prob_filtered_max"):
        assert decoded[col].null_count() == 0, col
    hs = json.loads((hrun / "run_summary.json").read_text())
    labels = {r["label_col"] for r in hs["regime_recovery"]["results"]}
    assert labels == {"hmm_state_filtered", "hmm_state"}
    meta = json.loads((hrun / "hmm_model_meta.json").read_text())
    assert meta["aic"] is not None and meta["bic"] is not None
    assert "dominant_flow_state" in invoke("research-hmm-sanity", "--run-dir", str(hrun))

    # a train end outside the defaults becomes a split partition of its own; test after embargo
    dates = decoded["trade_date"].unique().sort()
    mid = dates[dates.len() // 2]
    out = invoke("research-hmm-run", "--train-end", mid.isoformat(), "--n-components", "3",
                 "--min-sequence-length", "40")
    assert f"hmm_model, hmm_states [wf{mid.isoformat()}]" in out and "Dagster run" in out
    instance = dg.DagsterInstance.get()
    assert f"wf{mid.isoformat()}" in instance.get_dynamic_partitions("research_splits")
    wrun = newest(art / "hmm_runs", "hmm-*_hmm_ml-*")
    split = json.loads((wrun / "split_summary.json").read_text())
    assert split["split_kind"] == "walk_forward" and split["embargo_bars"] >= 20
    assert split["test_start"] > split["embargo_last_date"] > mid.isoformat()
    wdec = pl.read_parquet(wrun / "decoded_rows.parquet")
    assert wdec["trade_date"].min().isoformat() >= split["test_start"]

    assert '"failed": 0' in invoke("research-cluster-sweep", "--methods", "kmeans",
                                   "--n-clusters-list", "3,4", "--split", "full", "--json")
    assert "ari_mean" in invoke("research-cluster-stability", "--seeds", "2", "--n-clusters",
                                "3", "--split", "full")
    assert '"failed": 0' in invoke("research-hmm-sweep", "--components", "2,3", "--json")
    # every research command was a Dagster run of the research assets (none outside Dagster)
    ran = {key.to_user_string() for record in instance.get_run_records()
           for key in (record.dagster_run.asset_selection or ())}
    assert {"cluster_model", "cluster_labels", "hmm_model", "hmm_states", "cluster_sweep",
            "cluster_stability", "hmm_sweep"} <= ran
    assert "ari_mean" in invoke("research-hmm-stability", "--seeds", "2", "--n-components", "2")
    assert list(art.glob("research_runs/*_cluster_sweep_summary.csv"))
    assert list(art.glob("hmm_runs/*_hmm_stability_*/hmm_pairwise_ari.csv"))


def invoke_fails(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code != 0, result.output
    try:
        return result.output + (result.stderr or "")
    except ValueError:  # older click: stderr mixed into output
        return result.output


def test_research_split_and_sample_options(isolated, monkeypatch):
    """--test-start/--test-end/--fit-on/--predict-on/--sample-frac and the full-output flags."""
    from mf_pipeline.lib.steps.research.prepare import resolve_dataset

    isolated  # noqa: B018
    monkeypatch.delenv("MF_PIPELINE_PATHS__RAW_ROOT", raising=False)
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__TICKERS", "6")
    monkeypatch.setenv("MF_PIPELINE_SAMPLE__YEARS", "1.5")
    monkeypatch.setenv("MF_PIPELINE_RESEARCH_CLUSTERING__KMEANS__N_INIT", "4")
    invoke("demo")
    settings = load_settings()
    art = settings.artifacts_root
    dates = pl.read_parquet(resolve_dataset(settings), columns=["trade_date"])[
        "trade_date"].cast(pl.Date).unique().sort()  # fmt: skip
    n = dates.len()
    mid, late, test_end = dates[n // 2], dates[n // 2 + 40], dates[n * 4 // 5]
    time_split = ("--split-mode", "time", "--train-end", mid.isoformat())

    # HMM: decode the train rows only, with the full decoded CSV
    out = invoke("research-hmm-run", *time_split, "--n-components", "2",
                 "--min-sequence-length", "40", "--predict-on", "TRAIN",
                 "--write-full-decoded-csv")  # fmt: skip
    assert "Dagster run" in out
    hrun = newest(art / "hmm_runs", "hmm-*_hmm_ml-*")
    assert (hrun / "decoded_rows.csv").exists()
    dec = pl.read_parquet(hrun / "decoded_rows.parquet")
    assert dec.height and dec["trade_date"].max() <= mid
    assert pl.read_csv(hrun / "decoded_rows.csv").height == dec.height
    hs = json.loads((hrun / "run_summary.json").read_text())
    assert hs["predict_on"] == "train" and hs["fit_on"] == "train"
    assert hs["write_full_decoded_csv"] is True and hs["test_loglik"] is None
    assert hs["filters"]["predict_on"] == "train" and hs["split_summary"]["predict_on"] == "train"

    # clustering: test_start/test_end bound the test rows; fit on all rows; seeded sample
    invoke("research-cluster-run", *time_split, "--n-clusters", "3",
           "--test-start", late.isoformat(), "--test-end", test_end.isoformat(),
           "--fit-on", "all", "--sample-frac", "0.8", "--random-state", "7",
           "--write-full-clustered")  # fmt: skip
    run = newest(art / "research_runs", "research-*_kmeans_*")
    full = pl.read_parquet(run / "clustered_dataset_full.parquet")
    assert full.height and late <= full["trade_date"].min()
    assert full["trade_date"].max() <= test_end
    cs = json.loads((run / "run_summary.json").read_text())
    assert cs["filters"] == {"date_from": None, "date_to": None, "sample_frac": 0.8,
                             "sample_seed": 7, "test_start": late.isoformat(),
                             "test_end": test_end.isoformat(), "fit_on": "all",
                             "predict_on": None, "embargo_bars": 20}  # fmt: skip
    sp = cs["split_summary"]
    assert (sp["fit_on"], sp["predict_on"]) == ("all", "test")
    assert sp["test_end"] == test_end.isoformat() and sp["test_start"] >= late.isoformat()
    assert sp["raw_stats"]["test"]["max_trade_date"] <= test_end.isoformat()
    assert sp["raw_stats"]["fit_source"]["rows"] > sp["raw_stats"]["train"]["rows"]
    assert cs["rows_loaded"] < pl.read_parquet(resolve_dataset(settings)).height
    assert cs["write_full_clustered"] is True

    # the full clustered rows are always written: cluster_labels publishes them
    invoke("research-cluster-run", *time_split, "--n-clusters", "3", "--predict-on", "all")
    run2 = newest(art / "research_runs", "research-*_kmeans_*")
    assert run2 != run and (run2 / "clustered_dataset_sample.parquet").exists()
    assert (run2 / "clustered_dataset_full.parquet").exists()
    assert json.loads((run2 / "run_summary.json").read_text())["predict_on"] == "all"

    # sweeps and stability take the same options
    assert '"failed": 0' in invoke("research-cluster-sweep", "--methods", "kmeans",
                                   "--n-clusters-list", "3", *time_split,
                                   "--test-end", test_end.isoformat(), "--json")  # fmt: skip
    sweep = newest(art / "research_runs", "*_cluster_sweep_summary.json")
    assert json.loads(sweep.read_text())["filters"]["test_end"] == test_end.isoformat()

    # bad values: clean errors naming the option
    bad = [
        (("research-cluster-run", *time_split, "--predict-on", "train"), "--predict-on"),
        (("research-hmm-run", *time_split, "--fit-on", "test"), "--fit-on"),
        (("research-cluster-run", "--sample-frac", "0"), "--sample-frac"),
        (("research-hmm-run", "--sample-frac", "1.5"), "--sample-frac"),
        (("research-cluster-run", *time_split, "--test-start", test_end.isoformat(),
          "--test-end", late.isoformat()), "--test-end"),
        (("research-cluster-run", "--split", "full", "--test-end", test_end.isoformat()),
         "--test-end"),
        (("research-hmm-run", *time_split, "--test-start", "2020-13-01"), "--test-start"),
        (("research-hmm-sweep", *time_split, "--predict-on", "nope"), "--predict-on"),
    ]  # fmt: skip
    for args, option in bad:
        message = invoke_fails(*args)
        assert option in message and "Traceback" not in message, (args, message)
