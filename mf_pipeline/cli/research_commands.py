"""Research commands (old names): clustering and HMM runs, sweeps, stability and sanity.

Every command that fits something is one Dagster run of the split-partitioned research
assets (``defs/research/``), with its options as the assets' typed run config, so it shows in
the UI like any other run. The split is the partition: ``full`` (in-sample) or
``wf<train_end>`` for any train end (a new one is registered as a partition first). The
preparation options (dataset, split, scaling, date filters, test window, fit/predict rows,
sampling) and the fitting procedure (``--fit-procedure fast|spec``) are declared once below and
shared by the six fitting commands.
"""

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from mf_pipeline.cli.app import AsJson, app, emit, fail, say, settings_of

Opt = typer.Option
PREP_OPTIONS: dict[str, tuple[Any, Any]] = {
    "dataset": (Annotated[Path | None, Opt(help="ML dataset parquet (default: newest export).")],
                None),
    "split": (Annotated[str | None, Opt(help="Split key: full (in-sample) or wfYYYY-MM-DD.")],
              None),
    "train_end": (Annotated[str | None, Opt(help="Walk-forward train end YYYY-MM-DD.")], None),
    "split_mode": (Annotated[str | None, Opt(help="none (= --split full) or time (needs "
                                                  "--train-end).")], None),
    "scaling_scope": (Annotated[str | None, Opt(help="global | per_ticker (default: "
                                                     "settings).")], None),
    "scaler": (Annotated[str | None, Opt(help="standard | robust (default: settings).")], None),
    "unseen_policy": (Annotated[str | None, Opt(help="Per-ticker scope, tickers the fit never "
                                                     "saw: drop | global.")], None),
    "clip_zscore": (Annotated[float | None, Opt(help="Clip |z| (default settings, 8).")], None),
    "embargo_bars": (Annotated[int | None, Opt(help="Bars between train and test (>= 20).")],
                     None),
    "date_from": (Annotated[str | None, Opt(help="YYYY-MM-DD, inclusive.")], None),
    "date_to": (Annotated[str | None, Opt(help="YYYY-MM-DD, inclusive.")], None),
    "test_start": (Annotated[str | None, Opt(
        help="Time split: first test date YYYY-MM-DD (default: first date after the embargo; "
             "an earlier date is moved to it).")], None),
    "test_end": (Annotated[str | None, Opt(
        help="Time split: last test date YYYY-MM-DD; bounds the test rows and the prices their "
             "labels read (default: end of data).")], None),
    "fit_on": (Annotated[str | None, Opt(help="train | all (default train; all when "
                                              "--split-mode none).")], None),
    "predict_on": (Annotated[str | None, Opt(help="test | all, or train for HMM (default test; "
                                                  "all when --split-mode none).")], None),
    "sample_frac": (Annotated[float | None, Opt(help="Seeded row sample of the loaded dataset, "
                                                     "in (0, 1]; seed = random state.")], None),
    "features_preset": (Annotated[str, Opt(help="Only 'default' (the settings' feature list).")],
                        "default"),
    "fit_procedure": (Annotated[str | None, Opt(
        help="fast | spec: spec fits as the old tool did, on every fit row (KMeans restarts, "
             "HDBSCAN, hmmlearn's own HMM start; slower). Default: settings, fast.")], None),
}
SPLIT_OPTIONS = ("split", "train_end", "split_mode", "features_preset", "dataset")
"""Options that choose the partition or are checked here; the rest is run config as named."""
LOWERED = ("scaler", "scaling_scope", "unseen_policy", "fit_on", "predict_on", "method",
           "covariance_type", "fit_procedure")
"""Choices accepted in any case on the command line (``--predict-on TRAIN``)."""


def prep_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the shared preparation options to ``command``, which receives them as ``prep``."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.name != "prep"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                default=default)
              for name, (annotation, default) in PREP_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        prep = {name: kwargs.pop(name) for name in PREP_OPTIONS}
        command(*args, prep=prep, **kwargs)

    wrapper.__signature__ = inspect.Signature([*own, *shared])  # type: ignore[attr-defined]
    return wrapper


def _split(prep: dict[str, Any]) -> str:
    from mf_pipeline.lib.steps.research.options import split_key

    split, train_end, mode = prep["split"], prep["train_end"], prep["split_mode"]
    if mode not in (None, "none", "time"):
        fail("--split-mode must be none or time")
    if mode == "time" and not (train_end or split):
        fail("--split-mode time needs --train-end")
    try:
        return split_key(train_end or split or ("full" if mode != "time" else None))
    except ValueError as error:
        fail(f"bad split: {error}")
        raise


def _checked(ctx: typer.Context, asset: str, split: str, config: dict[str, Any]) -> None:
    """Refuse bad options before a run is launched, naming the option."""
    import pydantic

    from mf_pipeline.defs.research import config as research_config
    from mf_pipeline.lib.steps.research import options

    kind = "hmm" if asset.startswith("hmm") else "cluster"
    names = set(research_config.PrepConfig.model_fields) - {"dataset_path"}
    prep = {key: value for key, value in config.items() if key in names}
    try:
        options.check_options(options.prep_options(settings_of(ctx), kind, **prep), split == "full")
        research_config.CONFIGS[asset](**config)
    except ValueError as error:
        if isinstance(error, pydantic.ValidationError):
            first = error.errors()[0]
            option = "--" + "-".join(str(part) for part in first["loc"][:1]).replace("_", "-")
            fail(f"{option}: {first['msg']}")
        fail(str(error))


def _run(ctx: typer.Context, assets: tuple[str, ...], prep: dict[str, Any],
         options: dict[str, Any]) -> dict[str, Any]:
    """One Dagster run of ``assets`` on the split partition; the first asset takes the config.
    Returns the first asset's materialization metadata."""
    from mf_pipeline.orchestration import runner

    if prep["features_preset"] != "default":
        fail("--features-preset only accepts 'default'")
    split = _split(prep)
    config = {name: value for name, value in prep.items() if name not in SPLIT_OPTIONS}
    if prep["dataset"]:
        config["dataset_path"] = str(prep["dataset"])
    config = {k: _lower(v) if k in LOWERED else v
              for k, v in {**config, **options}.items() if v is not None}
    _checked(ctx, assets[0], split, config)
    _readable(ctx, config)
    outcome = runner.run_assets(settings_of(ctx), assets, split,
                                {"ops": {assets[0]: {"config": config}}}, log=say)
    return outcome.metadata[assets[0]]


def _readable(ctx: typer.Context, config: dict[str, Any]) -> None:
    """Refuse a dataset (given, or the newest export) or labels file that is missing or not
    a readable table, before a run is launched."""
    import polars as pl

    from mf_pipeline.lib.steps.research.prepare import resolve_dataset

    try:
        files = {"--dataset": resolve_dataset(settings_of(ctx), config.get("dataset_path"))}
    except FileNotFoundError as error:
        fail(str(error))
        raise
    if config.get("cluster_labels_file"):
        files["--cluster-labels-file"] = Path(config["cluster_labels_file"])
    for option, path in files.items():
        try:
            if path.suffix.lower() == ".csv":
                pl.read_csv(path, n_rows=1)
            else:
                pl.read_parquet_schema(path)
        except (OSError, pl.exceptions.PolarsError) as error:
            fail(f"{option} {path}: not a readable {path.suffix.lstrip('.') or 'Parquet'} "
                 f"file ({error})")


def _brief(summary: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: summary.get(k) for k in keys if k in summary}


def _ints(text: str | None, name: str) -> list[int] | None:
    if text is None:
        return None
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"{name} must be comma-separated integers")
        raise
    if not out:
        fail(f"{name} is empty")
    return out


def _lower(text: Any) -> Any:
    return text.strip().lower() if isinstance(text, str) else text


@app.command("research-cluster-run")
@prep_options
def research_cluster_run(
    ctx: typer.Context,
    prep: dict[str, Any],
    method: Annotated[str, Opt(help="kmeans | gmm | hdbscan.")] = "kmeans",
    n_clusters: Annotated[int | None, Opt(min=2, help="Clusters (default 5).")] = None,
    random_state: Annotated[int | None, Opt(help="Seed (default settings).")] = None,
    write_full_clustered: Annotated[bool, Opt(
        help="Kept for compatibility: clustered_dataset_full.parquet is always written "
             "(cluster_labels publishes it).")] = False,
    as_json: AsJson = False,
) -> None:
    """Cluster one split (fit on train, evaluate on test; full = in-sample) → research_runs/."""
    from mf_pipeline.lib.steps.research.artifacts import read_run_summary

    meta = _run(ctx, ("cluster_model", "cluster_labels"), prep,
                {"method": method, "n_clusters": n_clusters,
                 "random_state": random_state})
    emit(_brief(read_run_summary(meta["output_dir"]), (
        "run_id", "split_id", "split_kind", "in_sample", "fit_on", "predict_on", "method",
        "n_clusters_requested", "rows_fit", "rows_used", "metrics", "regime_recovery",
        "output_dir")), as_json)


@app.command("research-hmm-run")
@prep_options
def research_hmm_run(
    ctx: typer.Context,
    prep: dict[str, Any],
    n_components: Annotated[int | None, Opt(min=2, help="States (default 5).")] = None,
    covariance_type: Annotated[str | None, Opt(help="diag | full | tied | spherical.")] = None,
    n_iter: Annotated[int | None, Opt(min=1, help="EM iterations cap.")] = None,
    tol: Annotated[float | None, Opt(
        help="Absolute EM tolerance on the total log-likelihood gain, in either procedure "
             "(default: spec research_hmm.hmm.tol; fast tol_per_row x EM rows).")] = None,
    random_state: Annotated[int | None, Opt(help="Seed (default settings).")] = None,
    min_sequence_length: Annotated[int | None, Opt(min=1)] = None,
    fit_max_rows: Annotated[int | None, Opt(min=1, help="EM row sample bound.")] = None,
    cluster_labels_file: Annotated[Path | None, Opt(help="Parquet/CSV with ticker, trade_date, "
                                                         "cluster_label.")] = None,
    write_full_decoded_csv: Annotated[bool, Opt(help="Also write decoded_rows.csv.")] = False,
    as_json: AsJson = False,
) -> None:
    """Gaussian HMM on one split (Viterbi + causal filtered states) → hmm_runs/."""
    from mf_pipeline.lib.steps.research.artifacts import read_run_summary

    meta = _run(ctx, ("hmm_model", "hmm_states"), prep, {
        "n_components": n_components, "covariance_type": covariance_type,
        "n_iter": n_iter, "tol": tol, "random_state": random_state,
        "min_sequence_length": min_sequence_length, "fit_max_rows": fit_max_rows,
        "cluster_labels_file": str(cluster_labels_file) if cluster_labels_file else None,
        "write_full_decoded_csv": write_full_decoded_csv})
    emit(_brief(read_run_summary(meta["output_dir"]), (
        "run_id", "split_id", "split_kind", "in_sample", "fit_on", "predict_on", "n_components",
        "rows_fit", "rows_decoded", "train_loglik", "test_loglik", "eval_loglik_in_sample", "aic",
        "bic",
        "regime_recovery", "output_dir")), as_json)


@app.command("research-cluster-sweep")
@prep_options
def research_cluster_sweep(
    ctx: typer.Context,
    prep: dict[str, Any],
    methods: Annotated[str, Opt(help="Comma-separated methods.")] = "kmeans,gmm",
    n_clusters_list: Annotated[str, Opt(help="Comma-separated k values.")] = "4,5,6,8",
    random_state: Annotated[int, Opt(help="Seed.")] = 42,
    as_json: AsJson = False,
) -> None:
    """Method × k grid on one split → research_runs/<id>_cluster_sweep_*."""
    chosen = [m.strip().lower() for m in methods.split(",") if m.strip()]
    emit(_run(ctx, ("cluster_sweep",), prep, {
        "methods": chosen, "n_clusters_list": _ints(n_clusters_list, "--n-clusters-list"),
        "random_state": random_state}), as_json)


@app.command("research-cluster-stability")
@prep_options
def research_cluster_stability(
    ctx: typer.Context,
    prep: dict[str, Any],
    method: Annotated[str, Opt(help="kmeans | gmm.")] = "kmeans",
    n_clusters: Annotated[int, Opt(min=2)] = 5,
    seeds: Annotated[int | None, Opt(min=1, help="Seeds (default settings, 10).")] = None,
    seed_start: Annotated[int | None, Opt(help="First seed (default 42).")] = None,
    as_json: AsJson = False,
) -> None:
    """Refit per seed, pairwise ARI → research_runs/<id>_<method>_<tag>/."""
    emit(_run(ctx, ("cluster_stability",), prep, {
        "method": method, "n_clusters": n_clusters, "seeds": seeds,
        "seed_start": seed_start}), as_json)


@app.command("research-hmm-sweep")
@prep_options
def research_hmm_sweep(
    ctx: typer.Context,
    prep: dict[str, Any],
    components: Annotated[str | None, Opt(help="Comma-separated state counts (default settings "
                                               "4,5,6,8).")] = None,
    as_json: AsJson = False,
) -> None:
    """Fit each state count on one split → hmm_runs/<id>_hmm_sweep_<tag>/."""
    emit(_run(ctx, ("hmm_sweep",), prep, {"components": _ints(components, "--components")}),
         as_json)


@app.command("research-hmm-stability")
@prep_options
def research_hmm_stability(
    ctx: typer.Context,
    prep: dict[str, Any],
    n_components: Annotated[int | None, Opt(min=2)] = None,
    seeds: Annotated[int | None, Opt(min=1, help="Seeds (default settings, 5).")] = None,
    seed_start: Annotated[int | None, Opt(help="First seed (default 42).")] = None,
    as_json: AsJson = False,
) -> None:
    """Refit per seed, pairwise ARI of Viterbi paths → hmm_runs/."""
    emit(_run(ctx, ("hmm_stability",), prep, {
        "n_components": n_components, "seeds": seeds, "seed_start": seed_start}), as_json)


@app.command("research-cluster-sanity")
def research_cluster_sanity(
    run_dir: Annotated[Path, Opt(help="A research_runs/<run> folder.")],
    as_json: AsJson = False,
) -> None:
    """Summarise a clustering run folder (read-only)."""
    from mf_pipeline.lib.steps.research.cluster import cluster_sanity

    try:
        out = cluster_sanity(run_dir)
    except FileNotFoundError as error:
        fail(str(error))
        raise
    run = out["run_summary"] or {}
    pre = out["preprocess_summary"] or {}
    rob = out["robustness_summary"] or {}
    emit({"run_id": run.get("run_id"), "method": run.get("method"),
          "split_id": run.get("split_id"), "split_kind": run.get("split_kind"),
          "rows_used": run.get("rows_used"), "metrics": (out["metrics"] or {}).get("metrics"),
          "rows_dropped_null_features": pre.get("rows_dropped_null_features"),
          "largest_cluster_share": rob.get("largest_cluster_share"),
          "forward_separation_score": rob.get("forward_separation_score"),
          "total_nan_count": out["total_nan_count"], "top_fwd_ret_10": out["top_fwd_ret_10"],
          "top_flow_activity": out["top_flow_activity"]}, as_json)


@app.command("research-hmm-sanity")
def research_hmm_sanity(
    run_dir: Annotated[Path, Opt(help="An hmm_runs/<run> folder.")],
    as_json: AsJson = False,
) -> None:
    """Summarise an HMM run folder (read-only)."""
    from mf_pipeline.lib.steps.research.hmm import hmm_sanity

    try:
        out = hmm_sanity(run_dir)
    except FileNotFoundError as error:
        fail(str(error))
        raise
    summary = out.pop("run_summary") or {}
    out["run"] = _brief(summary, ("run_id", "split_id", "split_kind", "n_components",
                                  "rows_decoded", "regime_recovery"))
    emit(out, as_json)
