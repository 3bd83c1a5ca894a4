"""Research runs (research.md §1–5): clustering and Gaussian-HMM regimes per split.

Dagster-free: the research assets and the ``mf research-*`` commands call these functions.
Each run loads the ML dataset, cuts one split (labels per segment, embargo between train and
test), fits the scaler on the fit rows, fits the model, and writes the old artifacts under
``<artifacts_root>/research_runs/`` or ``<artifacts_root>/hmm_runs/``. On the generated sample
universe (``<raw_root>/_truth/regimes.parquet`` exists) every run also reports the adjusted
Rand index of its labels against the true regimes (``regime_recovery``).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.research import clustering as cl
from mf_pipeline.lib.research import hmm as hm
from mf_pipeline.lib.research.features import (
    DEFAULT_FEATURES,
    Preprocessed,
    ScalerModel,
    fit_scaler,
    transform,
)
from mf_pipeline.lib.research.hmm_diagnostics import hmm_diagnostics, robustness_summary
from mf_pipeline.lib.research.labels import DEFAULT_VOL_HORIZON, SplitFrames, labelled_split
from mf_pipeline.lib.research.null import flat, separation_note, separation_null
from mf_pipeline.lib.research.profiles import (
    FILTERED_SOURCE,
    VITERBI_SOURCE,
    cluster_profiles,
    hmm_state_profiles,
    label_concentration,
    labelled_profiles,
)
from mf_pipeline.lib.research.recovery import recovery_report
from mf_pipeline.lib.research.splits import (
    DEFAULT_EMBARGO_BARS,
    DEFAULT_TRAIN_ENDS,
    FULL_SPLIT_ID,
    Split,
    split_from_id,
)
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.dataset_step import latest_export

WF_PREFIX = "wf"
SAMPLE_ROWS = 100_000
DECODED_SAMPLE_ROWS = 5_000
TRUTH_FILE = Path("_truth") / "regimes.parquet"
HMM_SYMBOL_COLUMNS = ("ticker", "exchange", "trade_date", "hmm_state", "hmm_state_filtered",
                      "hmm_prob_filtered_max")  # fmt: skip
CLUSTER_SYMBOL_COLUMNS = ("ticker", "exchange", "trade_date", "cluster_label")


# --------------------------------------------------------------------------- splits and options


def split_keys(settings: Settings) -> list[str]:
    """The default split keys: ``wf<train_end>`` per configured train end, then ``full``."""
    ends = list(settings.validation_walkforward.train_end_list_default) or list(DEFAULT_TRAIN_ENDS)
    isos = sorted({str(end)[:10] for end in ends})
    return [f"{WF_PREFIX}{d}" for d in isos] + [FULL_SPLIT_ID]


def split_of(key: str, embargo_bars: int = DEFAULT_EMBARGO_BARS) -> Split:
    """Split for a partition key (``wf2016-12-31``), a bare ISO train end, or ``full``."""
    key = key.strip()
    if key == FULL_SPLIT_ID:
        return split_from_id(FULL_SPLIT_ID)
    return split_from_id(key.removeprefix(WF_PREFIX), embargo_bars)


def split_key(split_or_train_end: str | None) -> str:
    """Normalise ``--split``/``--train-end`` input to a partition key."""
    if not split_or_train_end:
        return FULL_SPLIT_ID
    value = split_or_train_end.strip()
    if value == FULL_SPLIT_ID or value.startswith(WF_PREFIX):
        return value
    return f"{WF_PREFIX}{dt.date.fromisoformat(value).isoformat()}"


@dataclass(frozen=True)
class PrepOptions:
    """Preprocessing knobs shared by clustering and HMM (defaults: settings)."""

    scaler: str = "standard"
    scaling_scope: str = "global"
    clip_zscore: float | None = 8.0
    unseen_policy: str = "drop"
    features: tuple[str, ...] = DEFAULT_FEATURES
    forward_windows: tuple[int, ...] = (5, 10, 20)
    embargo_bars: int = DEFAULT_EMBARGO_BARS
    date_from: str | None = None
    date_to: str | None = None
    test_start: str | None = None
    """Time split: first test date wanted; the embargo may push the effective start later."""
    test_end: str | None = None
    """Time split: last test date; bounds the test rows and the prices their labels read."""
    fit_on: str | None = None
    """train | all (default train; forced to all for the in-sample split)."""
    predict_on: str | None = None
    """test | all (clustering) or train | test | all (HMM); default test (all in-sample)."""
    sample_frac: float | None = None
    """Seeded uniform row sample of the loaded dataset, in (0, 1]."""
    sample_seed: int = 42
    kind: str = "cluster"

    def filters(self) -> dict[str, Any]:
        """The row filters and split options as given (recorded in run summaries)."""
        return {"date_from": self.date_from, "date_to": self.date_to,
                "sample_frac": self.sample_frac,
                "sample_seed": self.sample_seed if self.sample_frac is not None else None,
                "test_start": self.test_start, "test_end": self.test_end,
                "fit_on": self.fit_on, "predict_on": self.predict_on,
                "embargo_bars": self.embargo_bars}  # fmt: skip


FIT_ON_CHOICES = ("train", "all")
PREDICT_ON_CHOICES = {"cluster": ("test", "all"), "hmm": ("train", "test", "all")}


def _iso(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{option} must be a YYYY-MM-DD date, got {value!r}") from None


def check_options(options: PrepOptions, in_sample: bool) -> tuple[str, str]:
    """Validate the split/sample options; return the effective ``(fit_on, predict_on)``."""
    if options.sample_frac is not None and not 0 < options.sample_frac <= 1:
        raise ValueError(f"--sample-frac must be in (0, 1], got {options.sample_frac}")
    fit_on = (options.fit_on or "train").strip().lower()
    predict_on = (options.predict_on or "test").strip().lower()
    if fit_on not in FIT_ON_CHOICES:
        raise ValueError(f"--fit-on must be one of {'/'.join(FIT_ON_CHOICES)}, got {fit_on!r}")
    allowed = PREDICT_ON_CHOICES.get(options.kind, PREDICT_ON_CHOICES["cluster"])
    if predict_on not in allowed:
        raise ValueError(f"--predict-on must be one of {'/'.join(allowed)}, got {predict_on!r}")
    start = _iso(options.test_start, "--test-start")
    end = _iso(options.test_end, "--test-end")
    for name, value in (("--date-from", options.date_from), ("--date-to", options.date_to)):
        _iso(value, name)
    if start and end and end < start:
        raise ValueError(f"--test-end {end} is before --test-start {start}")
    if in_sample:
        if start or end:
            raise ValueError("--test-start/--test-end need a time split (--split-mode time "
                             "--train-end ...)")
        return "all", "all"
    return fit_on, predict_on


def prep_options(settings: Settings, kind: str = "cluster", **overrides: Any) -> PrepOptions:
    """Settings defaults (``research_clustering`` / ``research_hmm``) with non-None overrides.

    Clipping and forward windows come from ``research_clustering`` for both kinds; the scaler
    and scaling scope from the kind's own group; HMM features from
    ``research_hmm.default_feature_list`` when set, else the clustering features.
    """
    rc, rh = settings.research_clustering, settings.research_hmm
    own = rh if kind == "hmm" else rc
    features = tuple(rc.feature_list or DEFAULT_FEATURES)
    if kind == "hmm" and rh.default_feature_list:
        features = tuple(rh.default_feature_list)
    opts = PrepOptions(
        scaler=own.scaler,
        scaling_scope=own.scaling_scope_default,
        clip_zscore=rc.clip_zscore,
        features=features,
        forward_windows=tuple(rc.forward_windows),
        kind=kind,
    )
    return replace(opts, **{k: v for k, v in overrides.items() if v is not None})


def cluster_config(settings: Settings, **overrides: Any) -> cl.ClusterConfig:
    """``ClusterConfig`` from ``research_clustering`` with non-None overrides."""
    rc = settings.research_clustering
    base = cl.ClusterConfig(
        random_state=rc.random_state,
        silhouette_sample_max=rc.silhouette_sample_max,
        kmeans_n_init=rc.kmeans.n_init,
        kmeans_max_iter=rc.kmeans.max_iter,
        gmm_covariance_type=rc.gmm.covariance_type,
        gmm_reg_covar=rc.gmm.reg_covar,
        gmm_max_iter=rc.gmm.max_iter,
    )
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def hmm_config(settings: Settings, **overrides: Any) -> hm.HmmConfig:
    """``HmmConfig`` from ``research_hmm.hmm`` with non-None overrides (``hmm.tol`` unread)."""
    h = settings.research_hmm.hmm
    base = hm.HmmConfig(
        n_components=h.n_components_default,
        covariance_type=h.covariance_type,
        n_iter=h.n_iter,
        random_state=h.random_state,
    )
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def min_sequence_length(settings: Settings) -> int:
    return settings.research_hmm.min_sequence_length


# --------------------------------------------------------------------------- loading


def resolve_dataset(settings: Settings, dataset: str | Path | None = None) -> Path:
    """The given dataset path, or the newest ML dataset export (by recorded timestamp)."""
    path = Path(dataset) if dataset else latest_export(settings)
    if path is None:
        raise FileNotFoundError("no ML dataset export found; run `mf export-ml-dataset` first")
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    return path


def dataset_tag(path: Path) -> str:
    return path.parent.name.replace(" ", "_")


def new_run_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def truth_regimes(settings: Settings) -> pl.DataFrame | None:
    """``ticker, trade_date, regime`` of the generated sample, or None for real data."""
    path = settings.raw_root / TRUTH_FILE
    if not path.exists():
        return None
    return pl.read_parquet(path, columns=["ticker", "trade_date", "regime"]).with_columns(
        pl.col("ticker").str.to_uppercase(), pl.col("trade_date").cast(pl.Date)
    )


@dataclass
class Prepared:
    """One split of one dataset, labelled, scaled on its fit rows."""

    dataset_path: Path
    metadata_path: Path | None
    rows_loaded: int
    split: Split
    frames: SplitFrames
    scaler: ScalerModel
    fit: Preprocessed
    predict: Preprocessed
    options: PrepOptions
    split_summary: dict[str, Any]
    truth: pl.DataFrame | None = None
    train: Preprocessed | None = None
    test: Preprocessed | None = None

    @property
    def tag(self) -> str:
        return dataset_tag(self.dataset_path)

    @property
    def split_key(self) -> str:
        """The partition key form of the split (``wf2016-12-31`` or ``full``)."""
        return split_key(self.split.split_id)

    @property
    def fit_on(self) -> str:
        return str(self.split_summary.get("fit_on") or
                   ("all" if self.split.in_sample else "train"))

    @property
    def predict_on(self) -> str:
        return str(self.split_summary.get("predict_on") or
                   ("all" if self.split.in_sample else "test"))

    @property
    def in_sample(self) -> bool:
        """True when the fit rows (scaler and model) include any evaluated row: the ``full``
        split, ``fit_on=all`` (the test rows were fitted) or ``predict_on=train|all`` (the train
        rows are evaluated). Only ``fit_on=train, predict_on=test`` on a time split is out of
        sample."""
        return self.split.in_sample or (self.fit_on, self.predict_on) != ("train", "test")

    def recorded(self) -> dict[str, Any]:
        """Options and split boundaries every run summary records."""
        keys = ("train_end", "test_start", "test_end", "embargo_bars", "test_start_requested")
        return {"filters": self.options.filters(),
                "split": {k: self.split_summary.get(k) for k in keys},
                "split_summary": self.split_summary}

    def common(self) -> dict[str, Any]:
        """Fields every summary repeats."""
        return {
            "dataset_path": str(self.dataset_path),
            "split_id": self.split_key,
            "split_kind": self.split.kind,
            "in_sample": self.in_sample,
            "split_mode": "none" if self.split.in_sample else "time",
            "fit_on": self.fit_on,
            "predict_on": self.predict_on,
            "scaler": self.options.scaler,
            "scaling_scope": self.options.scaling_scope,
        }


def _stats(df: pl.DataFrame | None) -> dict[str, Any] | None:
    if df is None:
        return None
    lo = df["trade_date"].min() if df.height else None
    hi = df["trade_date"].max() if df.height else None
    return {"rows": df.height, "tickers": df["ticker"].n_unique() if df.height else 0,
            "min_trade_date": str(lo) if lo else None,
            "max_trade_date": str(hi) if hi else None}  # fmt: skip


def _concat(*frames: pl.DataFrame | None) -> pl.DataFrame:
    parts = [f for f in frames if f is not None]
    return pl.concat(parts, how="diagonal_relaxed").sort("ticker", "trade_date")


def prepare(
    settings: Settings,
    dataset: str | Path | None,
    split: str,
    options: PrepOptions,
) -> Prepared:
    """Load → (sample) → labels per split segment (embargo) → scaler fit on the fit source →
    transform train, test and the fit/predict sources."""
    spl = split_of(split, options.embargo_bars)
    fit_on, predict_on = check_options(options, spl.in_sample)
    test_end = _iso(options.test_end, "--test-end")
    if test_end is not None:
        spl = replace(spl, test_end=test_end)
    path = resolve_dataset(settings, dataset)
    meta = path.parent / "metadata.json"
    frame = pl.read_parquet(path)
    if "close" not in frame.columns:
        raise ValueError("Dataset must include close to compute forward outcomes")
    frame = frame.with_columns(pl.col("trade_date").cast(pl.Date, strict=False))
    if options.date_from:
        frame = frame.filter(pl.col("trade_date") >= dt.date.fromisoformat(options.date_from))
    if options.date_to:
        frame = frame.filter(pl.col("trade_date") <= dt.date.fromisoformat(options.date_to))
    if options.sample_frac is not None and options.sample_frac < 1 and frame.height:
        frame = frame.sample(fraction=options.sample_frac, seed=options.sample_seed,
                             shuffle=True).sort("ticker", "trade_date")  # fmt: skip
    frames = labelled_split(frame, spl, options.forward_windows, DEFAULT_VOL_HORIZON)
    split_extra: dict[str, Any] = {}
    test_start = _iso(options.test_start, "--test-start")
    if test_start is not None and frames.test is not None:
        embargo_start = frames.resolved.test_start
        effective = max(test_start, embargo_start) if embargo_start else test_start
        # labels only read forward, so dropping the test rows before ``effective`` leaves the
        # labels of the kept rows unchanged (still bounded by test_end)
        test = frames.test.filter(pl.col("trade_date") >= effective)
        if test.height == 0:
            raise ValueError(f"--test-start {test_start}: empty test segment")
        first = test["trade_date"].min()
        frames = replace(frames, test=test, summary={
            **frames.summary, "test_start": str(first),
            "raw_stats": {**frames.summary["raw_stats"], "test": _stats(test)}})  # fmt: skip
        split_extra = {"test_start_requested": test_start.isoformat(),
                       "test_start_after_embargo": str(embargo_start) if embargo_start else None,
                       "test_start_clamped_to_embargo": bool(embargo_start
                                                             and test_start < embargo_start)}
    all_raw = frames.train if frames.test is None else _concat(frames.train, frames.test)
    raw = {"train": frames.train, "test": frames.test, "all": all_raw}
    fit_raw = raw[fit_on]
    predict_raw = raw[predict_on]
    scaler = fit_scaler(fit_raw, options.features, options.scaler, options.scaling_scope)

    def tf(df: pl.DataFrame | None) -> Preprocessed | None:
        if df is None:
            return None
        return transform(df, scaler, options.clip_zscore, options.unseen_policy)

    train = tf(frames.train)
    assert train is not None
    test_p = tf(frames.test)
    done: dict[str, Preprocessed | None] = {"train": train, "test": test_p}
    done["all"] = train if frames.test is None else tf(all_raw)
    fit = done[fit_on]
    predict = done[predict_on]
    assert fit is not None and predict is not None
    summary = {
        **frames.summary,
        **split_extra,
        "fit_on": fit_on,
        "predict_on": predict_on,
        "all_rows": "the train and test segments (embargo rows excluded; labels per segment)",
        "filters": options.filters(),
        "raw_stats": {**frames.summary["raw_stats"], "fit_source": _stats(fit_raw),
                      "predict_source": _stats(predict_raw)},  # fmt: skip
        "processed_stats": {
            "fit_source": _stats(fit.frame),
            "predict_source": _stats(predict.frame),
            "train": _stats(train.frame),
            "test": None if test_p is None else _stats(test_p.frame),
        },
        "preprocess_scaler": options.scaler,
        "preprocess_scaling_scope": options.scaling_scope,
        "predict_unseen_ticker_count": predict.summary["unseen_ticker_count"],
        "predict_unseen_tickers": predict.summary["unseen_tickers"],
        "predict_unseen_policy": predict.summary["unseen_policy"],
        "note": "IN-SAMPLE: fit and predict rows coincide" if spl.in_sample else
        "walk-forward: labels computed per segment; embargo between train and test"
        + ("" if (fit_on, predict_on) == ("train", "test") else
           f"; fit_on={fit_on}, predict_on={predict_on}: metrics are (partly) in-sample"),
    }
    return Prepared(path, meta if meta.exists() else None, frame.height, spl, frames, scaler,
                    fit, predict, options, summary, truth_regimes(settings), train,
                    test_p)  # fmt: skip


def _regime_recovery(prep: Prepared, frame: pl.DataFrame, cols: tuple[str, ...]) -> dict | None:
    """ARI/NMI of ``cols`` vs the sample's true regime on the predict rows (None on real data)."""
    if prep.truth is None:
        return None
    joined = frame.select("ticker", "trade_date", *[c for c in cols if c in frame.columns]).join(
        prep.truth, on=["ticker", "trade_date"], how="inner"
    )
    return {
        "truth_file": str(TRUTH_FILE),
        "evaluated_on": prep.predict_on,
        "in_sample": prep.in_sample,
        "rows_with_truth": joined.height,
        "results": recovery_report(joined, "regime", cols),
    }


def _write_table(frame: pl.DataFrame, folder: Path, name: str, kinds: tuple[str, ...],
                 settings: Settings) -> dict[str, str]:  # fmt: skip
    out: dict[str, str] = {}
    if "parquet" in kinds:
        out[f"{name}_parquet"] = str(lake.write_parquet(frame, folder / f"{name}.parquet",
                                                        settings.parquet))  # fmt: skip
    if "csv" in kinds:
        out[f"{name}_csv"] = str(lake.write_csv(frame, folder / f"{name}.csv"))
    return out


def _write_preprocess(prep: Prepared, folder: Path, settings: Settings) -> dict[str, Any]:
    out = {
        "preprocess_summary_path": str(lake.write_json(prep.predict.summary,
                                                       folder / "preprocess_summary.json")),
        "split_summary_path": str(lake.write_json(prep.split_summary,
                                                  folder / "split_summary.json")),
        "feature_list_path": str(lake.write_json({"feature_list": list(prep.scaler.features)},
                                                 folder / "feature_list.json")),
        "scaler_params_path": str(lake.write_json(
            {**prep.scaler.payload(), "clip_zscore": prep.options.clip_zscore},
            folder / "scaler_params.json")),
        "scaler_params_table_path": None,
    }  # fmt: skip
    if prep.scaler.per_ticker is not None:
        out["scaler_params_table_path"] = str(lake.write_parquet(
            prep.scaler.per_ticker, folder / "scaler_params_per_ticker.parquet", settings.parquet))
    return out


# --------------------------------------------------------------------------- clustering


def _notes(sil: float | None, largest: float | None, sep_note: str,
           ari_mean: float | None = None) -> list[str]:  # fmt: skip
    """``sep_note`` comes from the permutation null (``null.separation_note``), never from a
    fixed threshold on the score."""
    notes = [
        "silhouette_unavailable" if sil is None
        else ("weak_cluster_geometry" if sil < 0.10 else "cluster_geometry_ok"),
        "cluster_concentration_unknown" if largest is None
        else ("high_cluster_concentration" if largest > 0.70 else "cluster_concentration_ok"),
        sep_note,
    ]  # fmt: skip
    if ari_mean is not None:
        notes.append("low_seed_stability" if ari_mean < 0.50 else "seed_stability_ok")
    return notes


@dataclass
class ClusterOutcome:
    run_id: str
    output_dir: Path
    summary: dict[str, Any]
    clustered: pl.DataFrame
    result: cl.ClusterResult = field(repr=False)


def _clustered(
    prep: Prepared, result: cl.ClusterResult, name: str, base: Preprocessed
) -> pl.DataFrame:
    cols = [pl.Series("cluster_id", result.labels[name], dtype=pl.Int32)]
    if name in result.prob_max:
        cols += [pl.Series("cluster_prob_max", result.prob_max[name]),
                 pl.Series("cluster_entropy", result.entropy[name])]  # fmt: skip
    return base.frame.with_columns(cols)


def cluster_fit(prep: Prepared, method: str, config: cl.ClusterConfig,
                with_train: bool = True) -> cl.ClusterResult:  # fmt: skip
    """Fit on the fit rows; label predict (and train for a walk-forward split)."""
    sets = {"predict": prep.predict.X}
    if with_train and not prep.split.in_sample:
        sets["train"] = (prep.train or prep.fit).X
        if prep.test is not None:
            sets["test"] = prep.test.X
    return cl.run_clustering(prep.fit.X, method, config, sets, "predict")


def cluster_run(
    settings: Settings,
    prep: Prepared,
    method: str,
    config: cl.ClusterConfig,
    run_id: str | None = None,
    write_full: bool = True,
) -> ClusterOutcome:
    """research.md §4.3: one clustering run and its artifacts in a new run folder."""
    started, t0 = _now(), time.perf_counter()
    run_id = run_id or new_run_id("research")
    result = cluster_fit(prep, method, config)
    clustered = _clustered(prep, result, "predict", prep.predict)
    folder = settings.artifacts_root / "research_runs" / f"{run_id}_{result.method}_{prep.tag}"
    prof = cluster_profiles(clustered)
    outputs: dict[str, Any] = _write_preprocess(prep, folder, settings)
    outputs |= _write_table(prof["profile"], folder, "cluster_profile", ("parquet", "csv"),
                            settings)  # fmt: skip
    outputs |= _write_table(prof["crosstab"], folder, "cluster_state_distribution", ("parquet",),
                            settings)  # fmt: skip
    outputs |= _write_table(prof["forward_validation"], folder, "cluster_forward_validation",
                            ("parquet",), settings)  # fmt: skip
    outputs["clustered_dataset_sample_parquet"] = str(lake.write_parquet(
        clustered.head(SAMPLE_ROWS), folder / "clustered_dataset_sample.parquet", settings.parquet))
    outputs["clustered_dataset_full_path"] = None
    if write_full:
        outputs["clustered_dataset_full_path"] = str(lake.write_parquet(
            clustered, folder / "clustered_dataset_full.parquet", settings.parquet))
    for seg in ("train", "test"):
        outputs[f"cluster_profile_{seg}_parquet"] = outputs[f"cluster_profile_{seg}_csv"] = None
    if not prep.split.in_sample:
        train = _clustered(prep, result, "train", prep.train or prep.fit)
        test = clustered if prep.test is None else _clustered(prep, result, "test", prep.test)
        for seg, frame in (("train", train), ("test", test)):
            p = cluster_profiles(frame)["profile"]
            got = _write_table(p, folder, f"cluster_profile_{seg}", ("parquet", "csv"), settings)
            outputs |= {f"cluster_profile_{seg}_{k.rsplit('_', 1)[1]}": v for k, v in got.items()}
    conc = label_concentration(result.labels["predict"])
    sep_null = separation_null(clustered, "cluster_id")
    sep = sep_null["observed"]
    m = result.metrics
    common = prep.common()
    robust = {
        "method": result.method, "n_clusters_requested": config.n_clusters,
        "largest_cluster_share": conc["largest_share"],
        "effective_cluster_count": conc["effective_count"],
        "cluster_count_detected": conc["detected"], "noise_share": conc["noise_share"],
        "forward_separation_score": sep, "forward_separation_null": sep_null,
        "forward_separation_above_old_threshold": None if sep is None else abs(sep) >= 0.002,
        "silhouette": m.get("silhouette"),
        "silhouette_sampled": m.get("silhouette_sampled"),
        "davies_bouldin": m.get("davies_bouldin"), "calinski_harabasz": m.get("calinski_harabasz"),
        "robustness_notes": _notes(m.get("silhouette"), conc["largest_share"],
                                   separation_note(sep_null)),
        "in_sample": prep.in_sample,
    }  # fmt: skip
    outputs["robustness_summary_path"] = str(lake.write_json(robust,
                                                             folder / "robustness_summary.json"))
    metrics = {**common, "method": result.method, "n_clusters_requested": config.n_clusters,
               "metrics": m, "model_meta": result.model_meta,
               "metrics_evaluated_on": prep.predict_on}  # fmt: skip
    outputs["clustering_metrics_path"] = str(lake.write_json(metrics,
                                                             folder / "clustering_metrics.json"))
    outputs["run_summary_path"] = str(folder / "run_summary.json")
    summary = {
        **common,
        "run_id": run_id,
        "dataset_metadata_path": str(prep.metadata_path) if prep.metadata_path else None,
        "started_ts": started,
        "finished_ts": _now(),
        "duration_sec": round(time.perf_counter() - t0, 3),
        "rows_loaded": prep.rows_loaded,
        "rows_fit": prep.fit.frame.height,
        "rows_used": clustered.height,
        "features_count": len(prep.scaler.features),
        "method": result.method,
        "n_clusters_requested": config.n_clusters,
        "random_state": config.random_state,
        "config": cl.config_payload(config),
        "metrics": m,
        "regime_recovery": _regime_recovery(prep, clustered, ("cluster_id",)),
        "write_full_clustered": write_full,
        **prep.recorded(),
        "output_dir": str(folder),
        "outputs": outputs,
    }
    lake.write_json(summary, folder / "run_summary.json")
    return ClusterOutcome(run_id, folder, summary, clustered, result)


def _ari(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b))


def _ari_table(labels: dict[int, np.ndarray]) -> tuple[pl.DataFrame, dict[str, Any]]:
    seeds = sorted(labels)
    rows = [(a, b, _ari(labels[a], labels[b])) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
    table = pl.DataFrame(rows, schema={"seed_a": pl.Int64, "seed_b": pl.Int64, "ari": pl.Float64},
                         orient="row")  # fmt: skip
    v = table["ari"]
    summary = {"ari_mean": None, "ari_median": None, "ari_min": None, "ari_max": None}
    if v.len():
        summary = {"ari_mean": v.mean(), "ari_median": v.median(), "ari_min": v.min(),
                   "ari_max": v.max()}  # fmt: skip
    return table, summary


def _cluster_row(prep: Prepared, method: str, k: int, result: cl.ClusterResult | None,
                 error: str | None) -> dict[str, Any]:  # fmt: skip
    base = {"method": method, "n_clusters": k, "rows_fit": prep.fit.frame.height,
            "rows_used": prep.predict.frame.height, "features_count": len(prep.scaler.features),
            "split_mode": prep.common()["split_mode"], "fit_on": prep.fit_on,
            "predict_on": prep.predict_on, "scaler": prep.options.scaler,
            "scaling_scope": prep.options.scaling_scope}  # fmt: skip
    keys = ("silhouette", "davies_bouldin", "calinski_harabasz", "bic", "aic",
            "n_clusters_detected", "forward_return_separation_score", "largest_cluster_share",
            "effective_cluster_count")  # fmt: skip
    null_keys = tuple(flat({}, "forward_return_separation"))
    if result is None:
        return {**base, **dict.fromkeys(keys), **dict.fromkeys(null_keys), "status": "failed",
                "error": error}  # fmt: skip
    clustered = _clustered(prep, result, "predict", prep.predict)
    conc = label_concentration(result.labels["predict"])
    m = result.metrics
    return {**base, **{k2: m.get(k2) for k2 in keys[:6]},
            **flat(separation_null(clustered, "cluster_id"), "forward_return_separation"),
            "largest_cluster_share": conc["largest_share"],
            "effective_cluster_count": conc["effective_count"], "status": "ok", "error": None}


def cluster_sweep(settings: Settings, prep: Prepared, methods: list[str], ks: list[int],
                  config: cl.ClusterConfig) -> dict[str, Any]:  # fmt: skip
    """research.md §4.4: a method × k grid, failures recorded per row; flat output files."""
    run_id = new_run_id("research-sweep")
    rows = []
    for method in methods:
        grid = [max(2, k) for k in ks] if method in ("kmeans", "gmm") else [max(2, ks[0])]
        for k in grid:
            try:
                res = cluster_fit(prep, method, replace(config, n_clusters=k), with_train=False)
                rows.append(_cluster_row(prep, method, k, res, None))
            except Exception as error:  # noqa: BLE001 - a failed grid point is a result row
                rows.append(_cluster_row(prep, method, k, None, str(error)))
    folder = settings.artifacts_root / "research_runs"
    payload = {**prep.common(), "run_id": run_id, "rows_loaded": prep.rows_loaded,
               "rows_fit": prep.fit.frame.height, "rows_used": prep.predict.frame.height,
               "features_count": len(prep.scaler.features), "split_summary": prep.split_summary,
               "filters": prep.options.filters(),
               "results": rows}  # fmt: skip
    json_path = lake.write_json(payload, folder / f"{run_id}_cluster_sweep_summary.json")
    csv_path = lake.write_csv(pl.DataFrame(rows, infer_schema_length=None),
                              folder / f"{run_id}_cluster_sweep_summary.csv")
    return {"run_id": run_id, "summary_json": str(json_path), "summary_csv": str(csv_path),
            "rows": len(rows), "failed": sum(r["status"] == "failed" for r in rows)}


def cluster_stability(settings: Settings, prep: Prepared, method: str, config: cl.ClusterConfig,
                      seeds: int, seed_start: int) -> dict[str, Any]:  # fmt: skip
    """research.md §4.5: refit per seed; pairwise ARI of the predict labels."""
    if method not in ("kmeans", "gmm"):
        raise ValueError("stability supports kmeans or gmm only")
    if seeds < 1:
        raise ValueError("seeds must be >= 1")
    started, t0 = _now(), time.perf_counter()
    run_id = new_run_id("research-stability")
    folder = settings.artifacts_root / "research_runs" / f"{run_id}_{method}_{prep.tag}"
    rows, labels, sizes = [], {}, []
    for seed in range(seed_start, seed_start + seeds):
        res = cluster_fit(prep, method, replace(config, random_state=seed), with_train=False)
        labels[seed] = res.labels["predict"]
        row = _cluster_row(prep, method, config.n_clusters, res, None)
        rows.append({"seed": seed, **{k: v for k, v in row.items()
                                      if k not in ("status", "error", "features_count",
                                                   "n_clusters_detected")}})  # fmt: skip
        ids, counts = np.unique(labels[seed], return_counts=True)
        sizes.append(pl.DataFrame({"seed": seed, "cluster_id": ids.astype(np.int32),
                                   "row_count": counts, "share": counts / counts.sum()}))
    by_seed = pl.DataFrame(rows, infer_schema_length=None).sort("seed")
    ari, ari_summary = _ari_table(labels)
    out = _write_table(by_seed, folder, "stability_by_seed", ("parquet", "csv"), settings)
    out |= _write_table(ari, folder, "stability_pairwise_ari", ("parquet", "csv"), settings)
    out |= _write_table(pl.concat(sizes), folder, "stability_cluster_sizes_by_seed", ("csv",),
                        settings)  # fmt: skip
    out["split_summary_path"] = str(lake.write_json(prep.split_summary,
                                                    folder / "split_summary.json"))

    def mean(col: str) -> float | None:
        v = by_seed[col].cast(pl.Float64).drop_nulls()
        return float(v.mean()) if v.len() else None

    robust = {"method": method, "n_clusters": config.n_clusters,
              "seeds": list(labels), "ari_summary": ari_summary,
              "largest_cluster_share_mean": mean("largest_cluster_share"),
              "forward_separation_score_mean": mean("forward_return_separation_score"),
              "forward_separation_null_p95_mean": mean("forward_return_separation_null_p95"),
              "forward_separation_ok_share": mean("forward_return_separation_ok"),
              "silhouette_mean": mean("silhouette")}  # fmt: skip
    # judged per seed against its own null; ok only when every seed beats its null's p95
    ok_share = robust["forward_separation_ok_share"]
    robust["robustness_notes"] = _notes(
        robust["silhouette_mean"], robust["largest_cluster_share_mean"],
        separation_note(None if ok_share is None else {"ok": ok_share == 1.0}),
        ari_summary["ari_mean"])  # fmt: skip
    out["robustness_summary_path"] = str(lake.write_json(robust,
                                                         folder / "robustness_summary.json"))
    summary = {**prep.common(), "filters": prep.options.filters(),
               "run_id": run_id, "started_ts": started, "finished_ts": _now(),
               "duration_sec": round(time.perf_counter() - t0, 3), "method": method,
               "n_clusters": config.n_clusters, "seed_start": seed_start, "seeds": seeds,
               "rows_fit": prep.fit.frame.height, "rows_used": prep.predict.frame.height,
               "ari_summary": ari_summary, "output_dir": str(folder), "outputs": out}  # fmt: skip
    lake.write_json(summary, folder / "stability_summary.json")
    return summary


def _top(frame: pl.DataFrame, by: str, cols: list[str], n: int) -> list[dict[str, Any]]:
    if by not in frame.columns:
        return []
    keep = [c for c in cols if c in frame.columns]
    return frame.sort(by, descending=True, nulls_last=True).head(n).select(keep).to_dicts()


def _nan_null_counts(profile: pl.DataFrame) -> dict[str, dict[str, int]]:
    cols = [c for c in profile.columns
            if c.startswith("fwd_") and c.endswith(("_mean", "_median"))]  # fmt: skip
    return {c: {"nan": int(profile[c].is_nan().sum()), "null": int(profile[c].null_count())}
            for c in cols}  # fmt: skip


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def cluster_sanity(run_dir: Path) -> dict[str, Any]:
    """research.md §4.7 (read-only)."""
    for name in ("run_summary.json", "clustering_metrics.json", "cluster_profile.parquet"):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"missing {run_dir / name}")
    profile = pl.read_parquet(run_dir / "cluster_profile.parquet")
    counts = _nan_null_counts(profile)
    return {
        "run_summary": _read_json(run_dir / "run_summary.json"),
        "metrics": _read_json(run_dir / "clustering_metrics.json"),
        "preprocess_summary": _read_json(run_dir / "preprocess_summary.json"),
        "split_summary": _read_json(run_dir / "split_summary.json"),
        "robustness_summary": _read_json(run_dir / "robustness_summary.json"),
        "top_fwd_ret_10": _top(profile, "fwd_ret_10_mean",
                               ["cluster_id", "row_count", "fwd_ret_10_mean"], 5),
        "top_flow_activity": _top(profile, "flow_activity_20_mean",
                                  ["cluster_id", "row_count", "flow_activity_20_mean"], 5),
        "nan_null_counts": counts,
        "total_nan_count": sum(v["nan"] for v in counts.values()),
    }  # fmt: skip


# --------------------------------------------------------------------------- HMM


@dataclass
class HmmOutcome:
    run_id: str
    output_dir: Path
    summary: dict[str, Any]
    decoded: pl.DataFrame
    fit: hm.HmmFit = field(repr=False)


def _keep_columns(prep: Prepared) -> list[str]:
    return [c for c in prep.predict.frame.columns if c not in ("ticker", "trade_date")]


def hmm_fit_decode(prep: Prepared, config: hm.HmmConfig, min_len: int
                   ) -> tuple[hm.HmmFit, hm.Sequences, hm.Sequences, hm.Decoded,
                              float | None]:  # fmt: skip
    """Fit on the fit sequences; decode the predict sequences; test log-likelihood if any.
    Returns ``(fit, fit sequences, decoded sequences, decoded, test loglik)``."""
    keep = _keep_columns(prep)
    fit_seqs = hm.build_sequences(prep.fit.frame, prep.fit.X, min_len, keep)
    fit = hm.fit_hmm(fit_seqs.X, fit_seqs.offsets, config)
    seqs = fit_seqs
    if prep.predict is not prep.fit:
        seqs = hm.build_sequences(prep.predict.frame, prep.predict.X, min_len, keep)
    dec = hm.decode(fit.params, seqs)
    return fit, fit_seqs, seqs, dec, (dec.loglik if _decodes_test(prep) else None)


def _decodes_test(prep: Prepared) -> bool:
    """True when the decoded rows are exactly the test rows and the fit never saw them
    (otherwise ``test_loglik`` is null and the figure is ``eval_loglik_in_sample``)."""
    return not prep.in_sample


def hmm_run(
    settings: Settings,
    prep: Prepared,
    config: hm.HmmConfig,
    min_len: int,
    run_id: str | None = None,
    cluster_labels: pl.DataFrame | None = None,
    write_full_csv: bool = False,
) -> HmmOutcome:
    """research.md §5.8: fit, decode (Viterbi + forward-filtered), diagnostics, artifacts."""
    started, t0 = _now(), time.perf_counter()
    run_id = run_id or new_run_id("hmm")
    fit, fit_seqs, seqs, dec, test_ll = hmm_fit_decode(prep, config, min_len)
    frame = dec.frame.with_columns(
        pl.lit("v1").alias("hmm_schema_version"),
        pl.lit("hmm_baseline_v1").alias("hmm_calc_version"),
        pl.lit(run_id).alias("run_id"), pl.lit(_now()).alias("built_ts"),
        pl.lit(prep.split_key).alias("split_id"),
    )  # fmt: skip
    folder = settings.artifacts_root / "hmm_runs" / f"{run_id}_hmm_{prep.tag}"
    out: dict[str, Any] = _write_preprocess(prep, folder, settings)
    out["decoded_rows"] = str(lake.write_parquet(frame, folder / "decoded_rows.parquet",
                                                 settings.parquet))  # fmt: skip
    out["decoded_rows_sample"] = str(lake.write_csv(
        frame.head(DECODED_SAMPLE_ROWS).drop("trade_dt", strict=False),
        folder / "decoded_rows_sample.csv"))
    if write_full_csv:
        out["decoded_rows_csv"] = str(lake.write_csv(frame.drop("trade_dt", strict=False),
                                                     folder / "decoded_rows.csv"))
    # Viterbi (``hmm_state``) tables describe the fit in-sample; everything that judges a
    # state's forward outcome comes from the causal ``hmm_state_filtered``
    prof = labelled_profiles(hmm_state_profiles(frame), VITERBI_SOURCE)
    prof_f = labelled_profiles(hmm_state_profiles(frame, "hmm_state_filtered"), FILTERED_SOURCE)
    diag = hmm_diagnostics(frame, dec.offsets, fit.params)
    diag_f = hmm_diagnostics(frame, dec.offsets, fit.params, state_col="hmm_state_filtered")
    out |= _write_table(prof["profile"], folder, "hmm_state_profile", ("parquet", "csv"), settings)
    out |= _write_table(prof_f["profile"], folder, "hmm_state_filtered_profile",
                        ("parquet", "csv"), settings)  # fmt: skip
    out |= _write_table(prof["forward_validation"], folder, "hmm_forward_validation",
                        ("parquet",), settings)  # fmt: skip
    out |= _write_table(prof_f["forward_validation"], folder, "hmm_forward_validation_filtered",
                        ("parquet",), settings)  # fmt: skip
    for name, table in diag.items():
        kinds = ("csv",) if name in ("initial_state_distribution", "state_confidence_stats") \
            else ("parquet", "csv")  # fmt: skip
        out |= _write_table(table, folder, name, kinds, settings)
    for name in ("transition_matrix", "dwell_stats", "state_frequency"):
        out |= _write_table(diag_f[name], folder, f"{name}_filtered", ("csv",), settings)
    k = fit.params.n_components
    fitted = pl.DataFrame(fit.params.transmat, schema=[f"to_{j}" for j in range(k)]
                          ).insert_column(0, pl.Series("hmm_state_prev", np.arange(k)))
    out |= _write_table(fitted, folder, "transition_matrix_fitted", ("csv",), settings)
    test_rows = seqs.n_rows if _decodes_test(prep) else 0
    robust = _hmm_robustness(frame, diag, diag_f, fit, test_ll, test_rows)
    # decoded rows the fit also saw: their log-likelihood is reported, but never as a test figure
    eval_ll = None if _decodes_test(prep) else dec.loglik
    robust["in_sample"] = prep.in_sample
    robust["eval_loglik_in_sample_per_obs"] = (None if eval_ll is None
                                               else eval_ll / max(1, seqs.n_rows))
    out["robustness_summary_path"] = str(lake.write_json(robust,
                                                         folder / "robustness_summary.json"))
    meta = {**fit.meta(config), "test_loglik": test_ll, "test_rows": test_rows,
            "eval_loglik_in_sample": eval_ll, "in_sample": prep.in_sample,
            "test_sequences": int(seqs.lengths.size) if _decodes_test(prep) else 0,
            "dropped_short_tickers_fit": len(fit_seqs.dropped_tickers),
            "dropped_short_tickers_decoded": len(seqs.dropped_tickers),
            "params": fit.params.payload(), "split_id": prep.split_key}  # fmt: skip
    out["hmm_model_meta"] = str(lake.write_json(meta, folder / "hmm_model_meta.json"))
    out["hmm_vs_cluster_crosstab_csv"] = out["hmm_vs_cluster_metrics_json"] = None
    rec_cols: tuple[str, ...] = ("hmm_state_filtered", "hmm_state")
    if cluster_labels is not None:
        frame_c, xt, cm = _cluster_compare(frame, cluster_labels)
        out["hmm_vs_cluster_crosstab_csv"] = str(lake.write_csv(
            xt, folder / "hmm_vs_cluster_crosstab.csv"))
        out["hmm_vs_cluster_metrics_json"] = str(lake.write_json(
            cm, folder / "hmm_vs_cluster_metrics.json"))
        frame, rec_cols = frame_c, (*rec_cols, "cluster_label")
    out["run_summary"] = str(folder / "run_summary.json")
    summary = {
        **prep.common(),
        "run_id": run_id, "started_ts": started, "finished_ts": _now(),
        "duration_sec": round(time.perf_counter() - t0, 3), "method": "gaussian_hmm",
        "n_components": config.n_components, "min_sequence_length": min_len,
        "rows_loaded": prep.rows_loaded, "rows_fit": fit.fit_rows, "rows_decoded": seqs.n_rows,
        "sequences_fit": fit.fit_sequences, "sequences_decoded": int(seqs.lengths.size),
        "train_loglik": fit.loglik, "test_loglik": test_ll, "eval_loglik_in_sample": eval_ll,
        "aic": meta.get("aic"), "bic": meta.get("bic"), "config": hm.config_payload(config),
        "robustness_summary": robust,
        "regime_recovery": _regime_recovery(prep, frame, rec_cols),
        "write_full_decoded_csv": write_full_csv, **prep.recorded(),
        "output_dir": str(folder), "outputs": out,
    }  # fmt: skip
    lake.write_json(summary, folder / "run_summary.json")
    return HmmOutcome(run_id, folder, summary, frame, fit)


def read_cluster_labels(path: Path) -> pl.DataFrame:
    """``--cluster-labels-file`` (parquet/csv): ticker, trade_date, cluster_label|cluster_id."""
    raw = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    col = "cluster_label" if "cluster_label" in raw.columns else "cluster_id"
    if col not in raw.columns or not {"ticker", "trade_date"} <= set(raw.columns):
        raise ValueError("cluster labels need ticker, trade_date and cluster_label or cluster_id")
    return (
        raw.select(pl.col("ticker").str.to_uppercase(),
                   pl.col("trade_date").cast(pl.Date, strict=False),
                   pl.col(col).alias("cluster_label"))  # fmt: skip
        .drop_nulls("trade_date")
        .unique(["ticker", "trade_date"], keep="first", maintain_order=True)
    )


def _cluster_compare(frame: pl.DataFrame, labels: pl.DataFrame
                     ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:  # fmt: skip
    from mf_pipeline.lib.research.recovery import adjusted_rand

    joined = frame.join(labels, on=["ticker", "trade_date"], how="left", maintain_order="left")
    sub = joined.filter(pl.col("cluster_label").is_not_null())
    xt = sub.group_by("hmm_state", "cluster_label").agg(pl.len().alias("count")).sort(
        "hmm_state", "cluster_label")
    m = adjusted_rand(joined, "hmm_state", "cluster_label")
    return joined, xt, {k: m[k] for k in ("rows_compared", "ari", "nmi")}


def _hmm_row(prep: Prepared, k: int, config: hm.HmmConfig, min_len: int) -> dict[str, Any]:
    fit, _, seqs, dec, test_ll = hmm_fit_decode(prep, replace(config, n_components=k),
                                                min_len)  # fmt: skip
    diag_f = hmm_diagnostics(dec.frame, dec.offsets, fit.params, state_col="hmm_state_filtered")
    test_rows = seqs.n_rows if _decodes_test(prep) else 0
    r = _hmm_robustness(dec.frame, None, diag_f, fit, test_ll, test_rows)
    return {"state_source": "hmm_state_filtered", "n_components": k, "rows_fit": fit.fit_rows,
            "rows_decoded": seqs.n_rows,
            "sequences_fit": fit.fit_sequences, "sequences_decoded": int(seqs.lengths.size),
            "train_loglik": fit.loglik, "test_loglik": test_ll,
            "eval_loglik_in_sample": None if _decodes_test(prep) else dec.loglik,
            "train_loglik_per_obs": r["train_loglik_per_obs"],
            "test_loglik_per_obs": r["test_loglik_per_obs"],
            "largest_state_share": r["largest_state_share"],
            "effective_state_count": r["effective_state_count"],
            **flat(r["forward_separation_null"]),
            "forward_separation_score_viterbi_lookahead":
                r["viterbi_description"]["forward_separation_score"],
            "avg_dwell_mean": r["avg_dwell_mean"],
            **information_criteria_of(fit),
            "states": dec.frame["hmm_state_filtered"].to_numpy()}  # fmt: skip


def _hmm_robustness(frame: pl.DataFrame, diag: dict[str, pl.DataFrame] | None,
                    diag_f: dict[str, pl.DataFrame], fit: hm.HmmFit, test_ll: float | None,
                    test_rows: int) -> dict[str, Any]:  # fmt: skip
    """Robustness summary of the causal path (``hmm_state_filtered``): concentration,
    persistence, dwell and the forward separation judged against its permutation null. The
    Viterbi figures are kept under ``viterbi_description`` (they read bars after t)."""
    sep_f = separation_null(frame, "hmm_state_filtered")
    robust = robustness_summary(diag_f, None, fit.loglik, fit.fit_rows, test_ll, test_rows,
                                separation=sep_f)  # fmt: skip
    viterbi: dict[str, Any] = {
        "state_source": VITERBI_SOURCE,
        "forward_separation_score": separation_null(frame, "hmm_state", replicates=0)["observed"],
    }
    if diag is not None:
        rv = robustness_summary(diag, None, None, 0)
        viterbi |= {k: rv[k] for k in ("largest_state_share", "effective_state_count",
                                       "avg_self_transition_prob", "avg_dwell_mean")}
    return {"state_source": FILTERED_SOURCE, **robust, "viterbi_description": viterbi}


def information_criteria_of(fit: hm.HmmFit) -> dict[str, Any]:
    ic = hm.information_criteria(fit.loglik, fit.fit_rows, fit.params)
    return {"aic": ic.get("aic"), "bic": ic.get("bic")}


def hmm_sweep(settings: Settings, prep: Prepared, components: list[int], config: hm.HmmConfig,
              min_len: int) -> dict[str, Any]:  # fmt: skip
    """research.md §5.9 (+ AIC/BIC per row)."""
    run_id = new_run_id("hmm-sweep")
    rows = []
    for k in sorted(set(components)):
        try:
            row = _hmm_row(prep, k, config, min_len)
            row.pop("states")
            rows.append({**row, "status": "ok", "error": None})
        except Exception as error:  # noqa: BLE001 - a failed component count is a result row
            rows.append({"n_components": k, "rows_decoded": 0, "status": "failed",
                         "error": str(error)})  # fmt: skip
    folder = settings.artifacts_root / "hmm_runs" / f"{run_id}_hmm_sweep_{prep.tag}"
    payload = {**prep.common(), "filters": prep.options.filters(),
               "run_id": run_id, "components": sorted(set(components)),
               "rows": rows}  # fmt: skip
    lake.write_json(payload, folder / "hmm_sweep_summary.json")
    lake.write_csv(pl.DataFrame(rows, infer_schema_length=None), folder / "hmm_sweep_summary.csv")
    return {"run_id": run_id, "output_dir": str(folder), "rows": len(rows),
            "failed": sum(r["status"] == "failed" for r in rows)}  # fmt: skip


def hmm_stability(settings: Settings, prep: Prepared, config: hm.HmmConfig, min_len: int,
                  seeds: int, seed_start: int) -> dict[str, Any]:  # fmt: skip
    """research.md §5.10: refit per seed; pairwise ARI of the filtered (causal) paths; per-seed
    rows carry the filtered separation and its permutation null."""
    if seeds < 1:
        raise ValueError("seeds must be >= 1")
    run_id = new_run_id("hmm-stability")
    folder = settings.artifacts_root / "hmm_runs" / f"{run_id}_hmm_stability_{prep.tag}"
    rows, labels = [], {}
    for seed in range(seed_start, seed_start + seeds):
        row = _hmm_row(prep, config.n_components, replace(config, random_state=seed), min_len)
        labels[seed] = row.pop("states")
        rows.append({"seed": seed, **{k: row[k] for k in (
            "n_components", "train_loglik", "test_loglik", "train_loglik_per_obs",
            "test_loglik_per_obs", "largest_state_share", "effective_state_count",
            "forward_separation_score", "forward_separation_null_p95",
            "forward_separation_p_value", "forward_separation_ok",
            "forward_separation_score_viterbi_lookahead")}})  # fmt: skip
        last = row
    ari, ari_summary = _ari_table(labels)
    out = _write_table(pl.DataFrame(rows, infer_schema_length=None), folder,
                       "hmm_stability_by_seed", ("csv", "parquet"), settings)  # fmt: skip
    out |= _write_table(ari, folder, "hmm_pairwise_ari", ("csv", "parquet"), settings)
    summary = {**prep.common(), "filters": prep.options.filters(),
               "run_id": run_id, "n_components": config.n_components,
               "seeds": seeds, "seed_start": seed_start, "rows_fit": last["rows_fit"],
               "rows_decoded": last["rows_decoded"], "ari_summary": ari_summary,
               "state_source": "hmm_state_filtered (causal; ARI and rows)",
               "output_dir": str(folder), "outputs": out}  # fmt: skip
    lake.write_json(summary, folder / "hmm_stability_summary.json")
    return summary


def hmm_sanity(run_dir: Path) -> dict[str, Any]:
    """research.md §5.11 (read-only)."""
    need = ("run_summary.json", "hmm_state_profile.parquet", "transition_matrix.csv",
            "dwell_stats.csv")  # fmt: skip
    for name in need:
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"missing {run_dir / name}")
    profile = pl.read_parquet(run_dir / "hmm_state_profile.parquet")
    filtered_path = run_dir / "hmm_state_filtered_profile.parquet"
    filtered = pl.read_parquet(filtered_path) if filtered_path.exists() else None
    tm = pl.read_csv(run_dir / "transition_matrix.csv")
    dwell = pl.read_csv(run_dir / "dwell_stats.csv")
    diag = (tm.filter(pl.col("hmm_state_prev") == pl.col("hmm_state"))
            .select(pl.col("hmm_state").alias("state"), "transition_probability")
            if "transition_probability" in tm.columns else pl.DataFrame())  # fmt: skip
    xt_path = run_dir / "hmm_vs_flow_state_crosstab.csv"
    top_flow: list[dict[str, Any]] = []
    if xt_path.exists():
        xt = pl.read_csv(xt_path)
        if xt.height and "share_in_hmm_state" in xt.columns:
            top_flow = (xt.sort("share_in_hmm_state", descending=True)
                        .group_by("hmm_state", maintain_order=True).head(1)
                        .sort("hmm_state").to_dicts())  # fmt: skip
    counts = _nan_null_counts(profile)
    return {
        "run_summary": _read_json(run_dir / "run_summary.json"),
        "state_count": profile.height,
        "state_frequency_total_rows": int(profile["row_count"].sum()),
        "top_fwd_ret_10": _top(profile, "fwd_ret_10_mean",
                               ["hmm_state", "row_count", "fwd_ret_10_mean"], 10),
        "top_fwd_ret_10_source": VITERBI_SOURCE,
        "top_fwd_ret_10_filtered": None if filtered is None else _top(
            filtered, "fwd_ret_10_mean", ["hmm_state_filtered", "row_count", "fwd_ret_10_mean"],
            10),
        "top_self_transition": _top(diag, "transition_probability",
                                    ["state", "transition_probability"], 10),
        "top_dwell": _top(dwell, "dwell_mean", dwell.columns, 10),
        "dominant_flow_state": top_flow,
        "nan_null_counts": counts,
    }  # fmt: skip


# --------------------------------------------------------------------------- lake outputs


def write_state_files(settings: Settings, frame: pl.DataFrame, source: str) -> dict[str, Any]:
    """Per-ticker viewer files of the ``hmm``/``cluster`` band
    (``registry.state_band_root``, hive-style) for the in-sample ``full`` split; files of
    tickers no longer present are removed."""
    cols = HMM_SYMBOL_COLUMNS if source == "hmm" else CLUSTER_SYMBOL_COLUMNS
    if "cluster_label" in cols and "cluster_label" not in frame.columns:
        frame = frame.with_columns(pl.col("cluster_id").alias("cluster_label"))
    if "exchange" not in frame.columns:
        raise ValueError("per-ticker state files need an exchange column")
    root = registry.state_band_root(settings, source)
    out = frame.select(cols).sort("ticker", "trade_date")
    old = {p.parent.name.removeprefix("ticker=") for p in lake.symbol_files(root)}
    written = lake.write_symbol_files(out, root, settings.parquet)
    removed = lake.remove_symbol_files(root, sorted(old - set(written)))
    return {"root": str(root), "tickers": len(written), "rows": out.height,
            "removed_tickers": len(removed)}  # fmt: skip


def read_run_summary(output_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(output_dir) / "run_summary.json").read_text())


# --------------------------------------------------------------------------- split outputs

def publish_cluster_labels(settings: Settings, split_id: str, run_dir: str | Path
                           ) -> dict[str, Any]:  # fmt: skip
    """Split labels table ``<gold_root>/research/cluster_labels/split=<id>/`` from the
    ``cluster_model`` run in ``run_dir``; for ``full`` also the per-ticker viewer files."""
    run_dir = Path(run_dir)
    frame = pl.read_parquet(run_dir / "clustered_dataset_full.parquet")
    keep = [c for c in ("ticker", "exchange", "trade_date", "cluster_id", "cluster_prob_max",
                        "cluster_entropy") if c in frame.columns]  # fmt: skip
    target = settings.gold_root / "research" / "cluster_labels" / f"split={split_id}"
    path = lake.write_parquet(frame.select(keep), target / "cluster_labels.parquet",
                              settings.parquet)  # fmt: skip
    out: dict[str, Any] = {"path": str(path), "rows": frame.height, "run_dir": str(run_dir)}
    if split_id == FULL_SPLIT_ID:
        out["symbol_files"] = write_state_files(settings, frame, "cluster")
    return out


def publish_hmm_states(settings: Settings, split_id: str, run_dir: str | Path) -> dict[str, Any]:
    """Split states table ``<gold_root>/research/hmm_states/split=<id>/`` from the
    ``hmm_model`` run in ``run_dir``; for ``full`` also the per-ticker viewer files."""
    run_dir = Path(run_dir)
    frame = pl.read_parquet(run_dir / "decoded_rows.parquet")
    keep = [c for c in (*HMM_SYMBOL_COLUMNS, "hmm_state_prob_max", "split_id")
            if c in frame.columns]  # fmt: skip
    target = settings.gold_root / "research" / "hmm_states" / f"split={split_id}"
    path = lake.write_parquet(frame.select(keep), target / "hmm_states.parquet", settings.parquet)
    out: dict[str, Any] = {"path": str(path), "rows": frame.height, "run_dir": str(run_dir)}
    if split_id == FULL_SPLIT_ID:
        out["symbol_files"] = write_state_files(settings, frame, "hmm")
    return out
