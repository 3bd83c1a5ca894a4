"""Loading one split of one ML dataset: dataset resolution, the sample's true regimes,
labels per segment, the scaler fitted on the fit rows (``prepare`` → ``Prepared``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.research.features import Preprocessed, ScalerModel, fit_scaler, transform
from mf_pipeline.lib.research.labels import DEFAULT_VOL_HORIZON, SplitFrames, labelled_split
from mf_pipeline.lib.research.splits import Split
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.dataset_step import latest_export
from mf_pipeline.lib.steps.research.options import (
    PrepOptions,
    check_options,
    iso_date,
    split_key,
    split_of,
)

TRUTH_FILE = Path("_truth") / "regimes.parquet"


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
    test_end = iso_date(options.test_end, "--test-end")
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
    test_start = iso_date(options.test_start, "--test-start")
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
