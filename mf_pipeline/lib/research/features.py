"""Research preprocessing: feature list, missing values, scalers, scaling scope, clipping.

spec/research.md §2 with the project's decisions: NaN and ±inf count as missing exactly like
null (the old tool let them through and broke KMeans/GMM/HMM), global and per-ticker scaling
compute their statistics on the same missing-free rows (the old paths disagreed), and tickers
unseen by a per-ticker fit are counted and listed in full instead of a capped sample.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

DEFAULT_FEATURES: tuple[str, ...] = (
    "tmf_21",
    "tmf_abs",
    "tmf_slope_1",
    "tmf_slope_5",
    "tmf_slope_10",
    "tmf_curvature_1",
    "tti_proxy_v1_21",
    "tti_proxy_slope_1",
    "tti_proxy_slope_5",
    "long_flow_score_20",
    "short_flow_score_20",
    "delta_flow_20",
    "flow_activity_20",
    "flow_bias_20",
    "long_burst_20",
    "short_burst_20",
    "persistence_pos_20",
    "persistence_neg_20",
    "oscillation_index_20",
    "respect_fail_balance_20",
    "rec_tmf_zero_up_20",
    "rec_tmf_zero_down_20",
    "rec_tmf_burst_up_20",
    "rec_tmf_burst_down_20",
    "state_run_length",
)
"""The 25 default features of research.md §2.1, clustering's default. HMM runs default to
the continuous subset ``research_hmm.default_feature_list`` (docs/RESEARCH.md, "Regime
recovery")."""

IDENTITY_COLUMNS: tuple[str, ...] = (
    "ticker",
    "exchange",
    "trade_date",
    "trade_dt",
    "flow_state_code",
    "flow_state_label",
    "close",
    "volume",
    "quality_warn_count",
    "fwd_ret_5",
    "fwd_ret_10",
    "fwd_ret_20",
    "fwd_abs_ret_10",
    "fwd_vol_proxy_10",
)
"""Columns carried next to the features when present (research.md §2.2), in this order."""

SCALERS = ("standard", "robust")
SCOPES = ("global", "per_ticker")
UNSEEN_POLICIES = ("drop", "global")
"""What to do with rows of tickers a per-ticker fit never saw: drop them (the old row set) or
scale them with the pooled statistics of all fit rows. Both are reported in full."""

_UNSEEN_SAMPLE = 10


def _choice(value: str, allowed: Sequence[str], name: str) -> str:
    norm = str(value).strip().lower()
    if norm not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return norm


def available_features(
    columns: Sequence[str], requested: Sequence[str] = DEFAULT_FEATURES
) -> tuple[list[str], list[str]]:
    """Split the requested features into (present, missing), order preserved.

    Missing features are recorded rather than fatal (research.md §1.2); only an empty
    intersection is an error, since then there is nothing to model.
    """
    present = set(columns)
    have = [f for f in requested if f in present]
    missing = [f for f in requested if f not in present]
    if not have:
        raise ValueError(f"none of the requested features exist: {list(requested)}")
    return have, missing


def missing_as_null(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """Cast ``columns`` to Float64 with NaN and ±inf replaced by null.

    One definition of "missing" for every later step (fit, transform, labels, profiles), so a
    NaN can never reach a model nor be averaged differently by two code paths.
    """
    return frame.with_columns(
        pl.when(pl.col(c).cast(pl.Float64).is_finite()).then(pl.col(c).cast(pl.Float64)).alias(c)
        for c in columns
    )


def _missing_counts(frame: pl.DataFrame, features: Sequence[str]) -> tuple[dict, dict]:
    """(missing incl. NaN/inf, NaN/inf only) counts per feature of the raw frame."""
    if frame.height == 0:
        zero = {f: 0 for f in features}
        return zero, dict(zero)
    row = frame.select(
        *[
            (~pl.col(f).cast(pl.Float64).is_finite()).fill_null(True).sum().alias(f)
            for f in features
        ],
        *[
            (pl.col(f).is_not_null() & ~pl.col(f).cast(pl.Float64).is_finite())
            .sum()
            .alias(f"__nf__{f}")
            for f in features
        ],
    ).row(0, named=True)
    return {f: int(row[f]) for f in features}, {f: int(row[f"__nf__{f}"]) for f in features}


def _stat_exprs(features: Sequence[str], scaler: str) -> list[pl.Expr]:
    """center__f / spread__f expressions; sanitised so a constant or tiny group scales by 1."""
    exprs: list[pl.Expr] = []
    for f in features:
        col = pl.col(f)
        if scaler == "standard":
            center, spread = col.mean(), col.std(ddof=0)
        else:
            center = col.median()
            spread = col.quantile(0.75, interpolation="linear") - col.quantile(
                0.25, interpolation="linear"
            )
        exprs.append(pl.when(center.is_finite()).then(center).otherwise(0.0).alias(f"center__{f}"))
        exprs.append(
            pl.when(spread.is_finite() & (spread != 0.0))
            .then(spread)
            .otherwise(1.0)
            .alias(f"spread__{f}")
        )
    return exprs


@dataclass(frozen=True)
class ScalerModel:
    """A fitted scaler: pooled statistics always, per-ticker table in per-ticker scope."""

    features: tuple[str, ...]
    missing_requested_features: tuple[str, ...]
    scaler: str
    scaling_scope: str
    center: np.ndarray
    spread: np.ndarray
    per_ticker: pl.DataFrame | None
    fit_rows_before: int
    fit_rows_after_null_filter: int
    fit_ticker_count: int
    fit_null_counts_per_feature: dict[str, int]

    def payload(self) -> dict[str, Any]:
        """The ``scaler_params.json`` content (per-ticker values live in the table)."""
        out: dict[str, Any] = {
            "scaler": self.scaler,
            "scaling_scope": self.scaling_scope,
            "feature_list": list(self.features),
            "missing_requested_features": list(self.missing_requested_features),
            "fit_rows_before": self.fit_rows_before,
            "fit_rows_after_null_filter": self.fit_rows_after_null_filter,
            "fit_ticker_count": self.fit_ticker_count,
            "fit_null_counts_per_feature": dict(self.fit_null_counts_per_feature),
            "center": self.center.tolist(),
            "spread": self.spread.tolist(),
        }
        if self.per_ticker is not None:
            out["per_ticker_params_table"] = True
            out["per_ticker_params_ticker_count"] = self.per_ticker.height
        return out

    @classmethod
    def from_payload(cls, payload: dict[str, Any], per_ticker: pl.DataFrame | None = None
                     ) -> "ScalerModel":  # fmt: skip
        """The scaler :meth:`payload` (``scaler_params.json``) and the per-ticker table
        described; a locked model scales new bars with it instead of refitting."""
        if payload["scaling_scope"] == "per_ticker" and per_ticker is None:
            raise ValueError("per_ticker scaling needs its table (scaler_params_per_ticker)")
        return cls(
            features=tuple(payload["feature_list"]),
            missing_requested_features=tuple(payload.get("missing_requested_features", ())),
            scaler=payload["scaler"],
            scaling_scope=payload["scaling_scope"],
            center=np.array(payload["center"], dtype=np.float64),
            spread=np.array(payload["spread"], dtype=np.float64),
            per_ticker=per_ticker if payload["scaling_scope"] == "per_ticker" else None,
            fit_rows_before=int(payload.get("fit_rows_before", 0)),
            fit_rows_after_null_filter=int(payload.get("fit_rows_after_null_filter", 0)),
            fit_ticker_count=int(payload.get("fit_ticker_count", 0)),
            fit_null_counts_per_feature=dict(payload.get("fit_null_counts_per_feature", {})),
        )


def fit_scaler(
    frame: pl.DataFrame,
    features: Sequence[str] = DEFAULT_FEATURES,
    scaler: str = "standard",
    scaling_scope: str = "global",
) -> ScalerModel:
    """Fit centre/spread on the rows of ``frame`` that have every feature finite.

    ``standard`` = mean and population std, ``robust`` = median and IQR (linear quantiles).
    Non-finite centres become 0 and non-finite or zero spreads 1, per cell. The pooled
    statistics are kept in per-ticker scope too, as the optional fallback for unseen tickers.
    """
    scaler = _choice(scaler, SCALERS, "scaler")
    scaling_scope = _choice(scaling_scope, SCOPES, "scaling_scope")
    feats, missing = available_features(frame.columns, features)
    if scaling_scope == "per_ticker" and "ticker" not in frame.columns:
        raise ValueError("per_ticker scaling needs a 'ticker' column")
    null_counts, _ = _missing_counts(frame, feats)
    keep = ["ticker"] if "ticker" in frame.columns else []
    clean = missing_as_null(frame.select(*keep, *feats), feats).drop_nulls(feats)
    if clean.height == 0:
        raise ValueError("no fit rows left after dropping rows with a missing feature")
    pooled = clean.select(_stat_exprs(feats, scaler)).row(0, named=True)
    center = np.array([pooled[f"center__{f}"] for f in feats], dtype=np.float64)
    spread = np.array([pooled[f"spread__{f}"] for f in feats], dtype=np.float64)
    table = None
    if scaling_scope == "per_ticker":
        table = clean.group_by("ticker").agg(_stat_exprs(feats, scaler)).sort("ticker")
    tickers = clean["ticker"].n_unique() if "ticker" in clean.columns else 0
    return ScalerModel(
        features=tuple(feats),
        missing_requested_features=tuple(missing),
        scaler=scaler,
        scaling_scope=scaling_scope,
        center=center,
        spread=spread,
        per_ticker=table,
        fit_rows_before=frame.height,
        fit_rows_after_null_filter=clean.height,
        fit_ticker_count=int(tickers),
        fit_null_counts_per_feature=null_counts,
    )


@dataclass(frozen=True)
class Preprocessed:
    """Kept rows (identity + raw features), their scaled matrix and the transform summary."""

    frame: pl.DataFrame
    X: np.ndarray
    summary: dict[str, Any]


def transform(
    frame: pl.DataFrame,
    model: ScalerModel,
    clip_zscore: float | None = 8.0,
    unseen_policy: str = "drop",
    extra_columns: Sequence[str] = (),
) -> Preprocessed:
    """Scale ``frame`` with ``model``; rows with a missing feature are dropped and counted.

    Row order is preserved. ``X`` is float64, C-contiguous, aligned with ``frame``.
    ``extra_columns`` (e.g. a truth regime or cluster id) are carried after the identity
    columns. In per-ticker scope, unseen tickers are either dropped (``drop``) or scaled with
    the pooled statistics (``global``); both are reported with the full ticker list.
    """
    unseen_policy = _choice(unseen_policy, UNSEEN_POLICIES, "unseen_policy")
    feats = list(model.features)
    absent = [f for f in feats if f not in frame.columns]
    if absent:
        raise ValueError(f"frame lacks model features: {absent}")
    carry = [c for c in IDENTITY_COLUMNS if c in frame.columns]
    carry += [c for c in extra_columns if c in frame.columns and c not in carry and c not in feats]
    null_counts, nonfinite_counts = _missing_counts(frame, feats)
    sel = missing_as_null(frame.select(*carry, *feats), feats).drop_nulls(feats)
    rows_after_null = sel.height
    if rows_after_null == 0:
        raise ValueError("no rows left after dropping rows with a missing feature")

    unseen: list[str] = []
    rows_unseen = 0
    if model.per_ticker is None:
        X = sel.select(feats).to_numpy().astype(np.float64, order="C", copy=True)
        X -= model.center
        X /= model.spread
    else:
        if "ticker" not in sel.columns:
            raise ValueError("per_ticker scaling needs a 'ticker' column")
        table = model.per_ticker
        n_fit = table.height
        lookup = table.select("ticker").with_row_index("__pidx")
        joined = sel.join(lookup, on="ticker", how="left", maintain_order="left")
        is_unseen = joined["__pidx"].is_null()
        rows_unseen = int(is_unseen.sum())
        if rows_unseen:
            unseen = sorted(joined.filter(is_unseen)["ticker"].unique().to_list())
            if unseen_policy == "drop":
                joined = joined.filter(~is_unseen)
                if joined.height == 0:
                    raise ValueError("every row belongs to a ticker unseen by the per-ticker fit")
        pidx = joined["__pidx"].fill_null(n_fit).cast(pl.Int64).to_numpy()
        centers = np.vstack(
            [table.select(f"center__{f}" for f in feats).to_numpy(), model.center[None, :]]
        )
        spreads = np.vstack(
            [table.select(f"spread__{f}" for f in feats).to_numpy(), model.spread[None, :]]
        )
        sel = joined.drop("__pidx")
        X = sel.select(feats).to_numpy().astype(np.float64, order="C", copy=True)
        X -= centers[pidx]
        X /= spreads[pidx]

    clipping = clip_zscore is not None and clip_zscore > 0
    if clipping:
        np.clip(X, -float(clip_zscore), float(clip_zscore), out=X)
    per_ticker = model.per_ticker is not None
    summary: dict[str, Any] = {
        "rows_before": frame.height,
        "rows_after_null_filter": rows_after_null,
        "rows_after": sel.height,
        "rows_dropped_null_features": frame.height - rows_after_null,
        "selected_feature_count": len(feats),
        "selected_features": feats,
        "missing_requested_features": list(model.missing_requested_features),
        "null_counts_per_feature": null_counts,
        "nonfinite_counts_per_feature": nonfinite_counts,
        "scaler": model.scaler,
        "scaling_scope": model.scaling_scope,
        "clip_zscore": clip_zscore,
        "clipping_applied": bool(clipping),
        "fit_rows_before": model.fit_rows_before,
        "fit_rows_after_null_filter": model.fit_rows_after_null_filter,
        "fit_ticker_count": model.fit_ticker_count,
        "fit_null_counts_per_feature": dict(model.fit_null_counts_per_feature),
        "unseen_policy": unseen_policy if per_ticker else None,
        "rows_unseen_tickers": rows_unseen,
        "rows_dropped_unseen_tickers": rows_unseen if unseen_policy == "drop" else 0,
        "rows_scaled_with_pooled_fallback": rows_unseen if unseen_policy == "global" else 0,
        "unseen_ticker_count": len(unseen),
        "unseen_tickers_sample": unseen[:_UNSEEN_SAMPLE],
        "unseen_tickers": unseen,
    }
    return Preprocessed(frame=sel, X=X, summary=summary)
