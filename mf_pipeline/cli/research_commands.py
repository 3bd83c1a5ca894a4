"""Research commands (old names): clustering and HMM runs, sweeps, stability and sanity.

``research-cluster-run`` and ``research-hmm-run`` materialize the split-partitioned assets
through Dagster when the split is a partition (``wf<train_end>`` of
``validation_walkforward.train_end_list_default``, or ``full``); another train end runs the
same step outside Dagster. The options that change which rows a split fits or evaluates
(``--test-start``, ``--test-end``, ``--fit-on``, ``--predict-on``, ``--sample-frac``) and the
extra outputs (``--write-full-clustered``, ``--write-full-decoded-csv``) also run the step
outside Dagster, so the published per-split labels always come from the standard split.
Sweeps and stability runs are pure steps (outside Dagster).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mf_pipeline.cli.app import app, fail, say, settings_of, show

Dataset = Annotated[Path | None, typer.Option(help="ML dataset parquet (default: newest export).")]
Split = Annotated[str | None, typer.Option(help="Split key: full (in-sample) or wfYYYY-MM-DD.")]
TrainEnd = Annotated[str | None, typer.Option(help="Walk-forward train end YYYY-MM-DD.")]
SplitMode = Annotated[str | None, typer.Option(help="none (= --split full) or time "
                                               "(needs --train-end).")]
Scope = Annotated[str | None, typer.Option(help="global | per_ticker (default: settings).")]
Scaler = Annotated[str | None, typer.Option(help="standard | robust (default: settings).")]
Unseen = Annotated[str | None, typer.Option(help="Per-ticker scope, tickers the fit never saw: "
                                            "drop | global.")]
Embargo = Annotated[int | None, typer.Option(help="Bars between train and test (>= 20).")]
Clip = Annotated[float | None, typer.Option(help="Clip |z| (default settings, 8).")]
DateFrom = Annotated[str | None, typer.Option(help="YYYY-MM-DD, inclusive.")]
DateTo = Annotated[str | None, typer.Option(help="YYYY-MM-DD, inclusive.")]
Preset = Annotated[str, typer.Option(help="Only 'default' (the 25 features).")]
TestStart = Annotated[str | None, typer.Option(
    help="Time split: first test date YYYY-MM-DD (default: first date after the embargo; "
         "an earlier date is moved to it).")]
TestEnd = Annotated[str | None, typer.Option(
    help="Time split: last test date YYYY-MM-DD; bounds the test rows and the prices their "
         "labels read (default: end of data).")]
FitOn = Annotated[str | None, typer.Option(help="train | all (default train; all when "
                                           "--split-mode none).")]
PredictOnCluster = Annotated[str | None, typer.Option(help="test | all (default test; all when "
                                                      "--split-mode none).")]
PredictOnHmm = Annotated[str | None, typer.Option(help="train | test | all (default test; all "
                                                  "when --split-mode none).")]
SampleFrac = Annotated[float | None, typer.Option(help="Seeded row sample of the loaded "
                                                  "dataset, in (0, 1]; seed = random state.")]

DIRECT_KEYS = ("test_start", "test_end", "fit_on", "predict_on", "sample_frac", "sample_seed")
"""Prep options the Dagster assets do not take: set → the step runs outside Dagster."""


def _split(split: str | None, train_end: str | None, split_mode: str | None) -> str:
    from mf_pipeline.lib.steps.research_step import split_key

    if split_mode not in (None, "none", "time"):
        fail("--split-mode must be none or time")
    if split_mode == "time" and not (train_end or split):
        fail("--split-mode time needs --train-end")
    try:
        return split_key(train_end or split or ("full" if split_mode != "time" else None))
    except ValueError as error:
        fail(f"bad split: {error}")
        raise


def _prep(ctx: typer.Context, kind: str, dataset: Path | None, split: str, preset: str,
          **kw: Any) -> Any:  # fmt: skip
    from mf_pipeline.lib.steps import research_step as rs

    if preset != "default":
        fail("--features-preset only accepts 'default'")
    settings = settings_of(ctx)
    try:
        return settings, rs.prepare(settings, dataset, split, rs.prep_options(settings, kind, **kw))
    except (ValueError, FileNotFoundError) as error:
        fail(str(error))
        raise


def _dagster_or_direct(ctx: typer.Context, kind: str, split: str, config: dict[str, Any]) -> Path:
    """Run ``<kind>_model`` + labels/states for ``split``; return the run folder."""
    from mf_pipeline.defs.research.partitions import splits_partitions
    from mf_pipeline.lib.steps import research_step as rs
    from mf_pipeline.orchestration import runner

    settings = settings_of(ctx)
    config = {k: v for k, v in config.items() if v is not None and v is not False}
    direct = [k for k in (*DIRECT_KEYS, "write_full_clustered", "write_full_decoded_csv")
              if k in config and k != "sample_seed"]
    model, publish = (("cluster_model", "cluster_labels") if kind == "cluster"
                      else ("hmm_model", "hmm_states"))  # fmt: skip
    if split in splits_partitions.get_partition_keys() and not direct:
        try:
            outcome = runner.run_assets(settings, (model, publish), split,
                                        {"ops": {model: {"config": config}}}, log=say)
        except Exception as error:  # noqa: BLE001 - show the step's message, not a traceback
            fail(f"{model} [{split}] failed: {error}")
            raise
        return Path(outcome.metadata[model]["output_dir"])
    if direct:
        say(f"{', '.join('--' + k.replace('_', '-') for k in direct)} given: running the step "
            f"outside Dagster (split {split}; nothing published)")
    else:
        say(f"split {split} is not a partition: running the step outside Dagster")
    prep_keys = ("scaler", "scaling_scope", "clip_zscore", "unseen_policy", "embargo_bars",
                 "date_from", "date_to", *DIRECT_KEYS)  # fmt: skip
    prep_kw = {k: config.pop(k) for k in prep_keys if k in config}
    try:
        prep = rs.prepare(settings, config.pop("dataset_path", None), split,
                          rs.prep_options(settings, kind, **prep_kw))  # fmt: skip
        if kind == "cluster":
            method = config.pop("method")
            full = bool(config.pop("write_full_clustered", False))
            out = rs.cluster_run(settings, prep, method, rs.cluster_config(settings, **config),
                                 write_full=full)  # fmt: skip
        else:
            min_len = config.pop("min_sequence_length", None) or rs.min_sequence_length(settings)
            labels_file = config.pop("cluster_labels_file", None)
            labels = rs.read_cluster_labels(Path(labels_file)) if labels_file else None
            full_csv = bool(config.pop("write_full_decoded_csv", False))
            out = rs.hmm_run(settings, prep, rs.hmm_config(settings, **config), min_len,
                             cluster_labels=labels, write_full_csv=full_csv)  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        fail(str(error))
        raise
    return out.output_dir


def _seed(ctx: typer.Context, kind: str, random_state: int | None) -> int:
    """The sample seed: the run's random state (default: settings)."""
    from mf_pipeline.lib.steps import research_step as rs

    if random_state is not None:
        return random_state
    settings = settings_of(ctx)
    cfg = rs.cluster_config(settings) if kind == "cluster" else rs.hmm_config(settings)
    return int(cfg.random_state)


def _split_kw(ctx: typer.Context, kind: str, random_state: int | None, **kw: Any
              ) -> dict[str, Any]:  # fmt: skip
    """Split/sample options (non-None) plus the sample seed when sampling."""
    out = {k: v for k, v in kw.items() if v is not None}
    if "sample_frac" in out:
        out["sample_seed"] = _seed(ctx, kind, random_state)
    return out


def _prepare_options(ctx: typer.Context, kind: str, dataset: Path | None, preset: str,
                     random_state: int | None, options: dict[str, Any]) -> Any:
    """The shared split, filter and sample options of the sweep and stability commands."""
    key = _split(options["split"], options["train_end"], options["split_mode"])
    sample = {name: options[name] for name in SPLIT_SAMPLE_OPTIONS}
    return _prep(ctx, kind, dataset, key, preset, scaler=options["scaler"],
                 scaling_scope=options["scaling_scope"], date_from=options["date_from"],
                 date_to=options["date_to"], **_split_kw(ctx, kind, random_state, **sample))


SPLIT_SAMPLE_OPTIONS = ("test_start", "test_end", "fit_on", "predict_on", "sample_frac")


def _brief(summary: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: summary.get(k) for k in keys if k in summary}


@app.command("research-cluster-run")
def research_cluster_run(
    ctx: typer.Context,
    dataset: Dataset = None,
    method: Annotated[str, typer.Option(help="kmeans | gmm | hdbscan.")] = "kmeans",
    n_clusters: Annotated[int | None, typer.Option(min=2, help="Clusters (default 5).")] = None,
    split: Split = None,
    train_end: TrainEnd = None,
    split_mode: SplitMode = None,
    scaling_scope: Scope = None,
    scaler: Scaler = None,
    unseen_policy: Unseen = None,
    random_state: Annotated[int | None, typer.Option(help="Seed (default settings).")] = None,
    clip_zscore: Clip = None,
    embargo_bars: Embargo = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    test_start: TestStart = None,
    test_end: TestEnd = None,
    fit_on: FitOn = None,
    predict_on: PredictOnCluster = None,
    sample_frac: SampleFrac = None,
    write_full_clustered: Annotated[bool, typer.Option(
        help="Also write clustered_dataset_full.parquet (outside Dagster).")] = False,
    features_preset: Preset = "default",
) -> None:
    """Cluster one split (fit on train, evaluate on test; full = in-sample) → research_runs/."""
    from mf_pipeline.lib.steps.research_step import read_run_summary

    if features_preset != "default":
        fail("--features-preset only accepts 'default'")
    key = _split(split, train_end, split_mode)
    run_dir = _dagster_or_direct(ctx, "cluster", key, {
        "dataset_path": str(dataset) if dataset else None, "method": method.strip().lower(),
        "n_clusters": n_clusters, "random_state": random_state, "scaler": scaler,
        "scaling_scope": scaling_scope, "unseen_policy": unseen_policy,
        "clip_zscore": clip_zscore, "embargo_bars": embargo_bars, "date_from": date_from,
        "date_to": date_to, "write_full_clustered": write_full_clustered,
        **_split_kw(ctx, "cluster", random_state, test_start=test_start, test_end=test_end,
                    fit_on=fit_on, predict_on=predict_on, sample_frac=sample_frac)})  # fmt: skip
    summary = read_run_summary(run_dir)
    show(_brief(summary, ("run_id", "split_id", "split_kind", "fit_on", "predict_on",
                          "method", "n_clusters_requested", "rows_fit", "rows_used", "metrics",
                          "regime_recovery", "output_dir")))  # fmt: skip


@app.command("research-hmm-run")
def research_hmm_run(
    ctx: typer.Context,
    dataset: Dataset = None,
    n_components: Annotated[int | None, typer.Option(min=2, help="States (default 5).")] = None,
    split: Split = None,
    train_end: TrainEnd = None,
    split_mode: SplitMode = None,
    scaling_scope: Scope = None,
    scaler: Scaler = None,
    unseen_policy: Unseen = None,
    covariance_type: Annotated[str | None, typer.Option(help="diag|full|tied|spherical.")] = None,
    n_iter: Annotated[int | None, typer.Option(min=1, help="EM iterations cap.")] = None,
    random_state: Annotated[int | None, typer.Option(help="Seed (default settings).")] = None,
    min_sequence_length: Annotated[int | None, typer.Option(min=1)] = None,
    fit_max_rows: Annotated[int | None, typer.Option(min=1, help="EM row sample bound.")] = None,
    cluster_labels_file: Annotated[Path | None, typer.Option(help="Parquet/CSV with ticker, "
                                                             "trade_date, cluster_label.")] = None,
    clip_zscore: Clip = None,
    embargo_bars: Embargo = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    test_start: TestStart = None,
    test_end: TestEnd = None,
    fit_on: FitOn = None,
    predict_on: PredictOnHmm = None,
    sample_frac: SampleFrac = None,
    write_full_decoded_csv: Annotated[bool, typer.Option(
        help="Also write decoded_rows.csv (outside Dagster).")] = False,
    features_preset: Preset = "default",
) -> None:
    """Gaussian HMM on one split (Viterbi + causal filtered states) → hmm_runs/."""
    from mf_pipeline.lib.steps.research_step import read_run_summary

    if features_preset != "default":
        fail("--features-preset only accepts 'default'")
    key = _split(split, train_end, split_mode)
    run_dir = _dagster_or_direct(ctx, "hmm", key, {
        "dataset_path": str(dataset) if dataset else None, "n_components": n_components,
        "covariance_type": covariance_type, "n_iter": n_iter, "random_state": random_state,
        "min_sequence_length": min_sequence_length, "fit_max_rows": fit_max_rows,
        "cluster_labels_file": str(cluster_labels_file) if cluster_labels_file else None,
        "scaler": scaler, "scaling_scope": scaling_scope, "unseen_policy": unseen_policy,
        "clip_zscore": clip_zscore, "embargo_bars": embargo_bars, "date_from": date_from,
        "date_to": date_to, "write_full_decoded_csv": write_full_decoded_csv,
        **_split_kw(ctx, "hmm", random_state, test_start=test_start, test_end=test_end,
                    fit_on=fit_on, predict_on=predict_on, sample_frac=sample_frac)})  # fmt: skip
    summary = read_run_summary(run_dir)
    show(_brief(summary, ("run_id", "split_id", "split_kind", "fit_on", "predict_on",
                          "n_components", "rows_fit",
                          "rows_decoded", "train_loglik", "test_loglik", "aic", "bic",
                          "regime_recovery", "output_dir")))  # fmt: skip


def _ints(text: str, name: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"{name} must be comma-separated integers")
        raise
    if not out:
        fail(f"{name} is empty")
    return out


@app.command("research-cluster-sweep")
def research_cluster_sweep(
    ctx: typer.Context,
    dataset: Dataset = None,
    methods: Annotated[str, typer.Option(help="Comma-separated methods.")] = "kmeans,gmm",
    n_clusters_list: Annotated[str, typer.Option(help="Comma-separated k values.")] = "4,5,6,8",
    split: Split = None,
    train_end: TrainEnd = None,
    split_mode: SplitMode = None,
    scaling_scope: Scope = None,
    scaler: Scaler = None,
    random_state: Annotated[int, typer.Option(help="Seed.")] = 42,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    test_start: TestStart = None,
    test_end: TestEnd = None,
    fit_on: FitOn = None,
    predict_on: PredictOnCluster = None,
    sample_frac: SampleFrac = None,
    features_preset: Preset = "default",
) -> None:
    """Method × k grid on one split (outside Dagster) → research_runs/<id>_cluster_sweep_*."""
    from mf_pipeline.lib.steps import research_step as rs

    settings, prep = _prepare_options(ctx, "cluster", dataset, features_preset, random_state,
                                      locals())
    ms = [m.strip().lower() for m in methods.split(",") if m.strip()]
    show(rs.cluster_sweep(settings, prep, ms, _ints(n_clusters_list, "--n-clusters-list"),
                          rs.cluster_config(settings, random_state=random_state)))


@app.command("research-cluster-stability")
def research_cluster_stability(
    ctx: typer.Context,
    dataset: Dataset = None,
    method: Annotated[str, typer.Option(help="kmeans | gmm.")] = "kmeans",
    n_clusters: Annotated[int, typer.Option(min=2)] = 5,
    seeds: Annotated[int | None, typer.Option(min=1, help="Seeds (default settings, 10).")]
    = None,
    seed_start: Annotated[int | None, typer.Option(help="First seed (default 42).")] = None,
    split: Split = None,
    train_end: TrainEnd = None,
    split_mode: SplitMode = None,
    scaling_scope: Scope = None,
    scaler: Scaler = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    test_start: TestStart = None,
    test_end: TestEnd = None,
    fit_on: FitOn = None,
    predict_on: PredictOnCluster = None,
    sample_frac: SampleFrac = None,
    features_preset: Preset = "default",
) -> None:
    """Refit per seed, pairwise ARI (outside Dagster) → research_runs/<id>_<method>_<tag>/."""
    from mf_pipeline.lib.steps import research_step as rs

    settings, prep = _prepare_options(ctx, "cluster", dataset, features_preset, None,
                                      locals())
    st = dict((settings.research_clustering or {}).get("stability") or {})
    try:
        out = rs.cluster_stability(
            settings, prep, method.strip().lower(),
            rs.cluster_config(settings, n_clusters=n_clusters),
            seeds or int(st.get("seeds", 10)),
            seed_start if seed_start is not None else int(st.get("seed_start", 42)),
        )  # fmt: skip
    except ValueError as error:
        fail(str(error))
        raise
    show(_brief(out, ("run_id", "method", "n_clusters", "seeds", "ari_summary", "output_dir")))


@app.command("research-cluster-sanity")
def research_cluster_sanity(
    run_dir: Annotated[Path, typer.Option(help="A research_runs/<run> folder.")],
) -> None:
    """Summarise a clustering run folder (read-only)."""
    from mf_pipeline.lib.steps.research_step import cluster_sanity

    try:
        out = cluster_sanity(run_dir)
    except FileNotFoundError as error:
        fail(str(error))
        raise
    rs_ = out["run_summary"] or {}
    ps = out["preprocess_summary"] or {}
    rb = out["robustness_summary"] or {}
    show({"run_id": rs_.get("run_id"), "method": rs_.get("method"),
          "split_id": rs_.get("split_id"), "split_kind": rs_.get("split_kind"),
          "rows_used": rs_.get("rows_used"), "metrics": (out["metrics"] or {}).get("metrics"),
          "rows_dropped_null_features": ps.get("rows_dropped_null_features"),
          "largest_cluster_share": rb.get("largest_cluster_share"),
          "forward_separation_score": rb.get("forward_separation_score"),
          "total_nan_count": out["total_nan_count"], "top_fwd_ret_10": out["top_fwd_ret_10"],
          "top_flow_activity": out["top_flow_activity"]})  # fmt: skip


@app.command("research-hmm-sweep")
def research_hmm_sweep(
    ctx: typer.Context,
    dataset: Dataset = None,
    components: Annotated[str | None, typer.Option(help="Comma-separated state counts "
                                                   "(default settings 4,5,6,8).")] = None,
    split: Split = None,
    train_end: TrainEnd = None,
    split_mode: SplitMode = None,
    scaling_scope: Scope = None,
    scaler: Scaler = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    test_start: TestStart = None,
    test_end: TestEnd = None,
    fit_on: FitOn = None,
    predict_on: PredictOnHmm = None,
    sample_frac: SampleFrac = None,
    features_preset: Preset = "default",
) -> None:
    """Fit each state count on one split (outside Dagster) → hmm_runs/<id>_hmm_sweep_<tag>/."""
    from mf_pipeline.lib.steps import research_step as rs

    settings, prep = _prepare_options(ctx, "hmm", dataset, features_preset, None,
                                      locals())
    default = ((settings.research_hmm or {}).get("sweep") or {}).get("components", [4, 5, 6, 8])
    ks = _ints(components, "--components") if components else [int(k) for k in default]
    show(rs.hmm_sweep(settings, prep, ks, rs.hmm_config(settings),
                      rs.min_sequence_length(settings)))


@app.command("research-hmm-stability")
def research_hmm_stability(
    ctx: typer.Context,
    dataset: Dataset = None,
    n_components: Annotated[int | None, typer.Option(min=2)] = None,
    seeds: Annotated[int | None, typer.Option(min=1, help="Seeds (default settings, 5).")] = None,
    seed_start: Annotated[int | None, typer.Option(help="First seed (default 42).")] = None,
    split: Split = None,
    train_end: TrainEnd = None,
    split_mode: SplitMode = None,
    scaling_scope: Scope = None,
    scaler: Scaler = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    test_start: TestStart = None,
    test_end: TestEnd = None,
    fit_on: FitOn = None,
    predict_on: PredictOnHmm = None,
    sample_frac: SampleFrac = None,
    features_preset: Preset = "default",
) -> None:
    """Refit per seed, pairwise ARI of Viterbi paths (outside Dagster) → hmm_runs/."""
    from mf_pipeline.lib.steps import research_step as rs

    settings, prep = _prepare_options(ctx, "hmm", dataset, features_preset, None,
                                      locals())
    st = dict((settings.research_hmm or {}).get("stability") or {})
    out = rs.hmm_stability(
        settings, prep, rs.hmm_config(settings, n_components=n_components),
        rs.min_sequence_length(settings), seeds or int(st.get("seeds", 5)),
        seed_start if seed_start is not None else int(st.get("seed_start", 42)),
    )  # fmt: skip
    show(_brief(out, ("run_id", "n_components", "seeds", "ari_summary", "output_dir")))


@app.command("research-hmm-sanity")
def research_hmm_sanity(
    run_dir: Annotated[Path, typer.Option(help="An hmm_runs/<run> folder.")],
) -> None:
    """Summarise an HMM run folder (read-only)."""
    from mf_pipeline.lib.steps.research_step import hmm_sanity

    try:
        out = hmm_sanity(run_dir)
    except FileNotFoundError as error:
        fail(str(error))
        raise
    summary = out.pop("run_summary") or {}
    out["run"] = _brief(summary, ("run_id", "split_id", "split_kind", "n_components",
                                  "rows_decoded", "regime_recovery"))  # fmt: skip
    show(out)
