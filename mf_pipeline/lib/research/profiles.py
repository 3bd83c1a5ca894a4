"""Per-state profiles and forward-return validation (research.md §4.6, §5.6, §5.7).

One implementation serves cluster ids and HMM states (Viterbi or filtered): pass the state
column. Profiles that judge a state's forward outcome must use the causal
``hmm_state_filtered``; Viterbi profiles read bars after t and are labelled as a description
(``state_source``, see :func:`labelled_profiles`). Separation is judged against a permutation
null in ``research/null.py``. Forward columns are sanitised to finite-or-null; statistics are
population std and linear quantiles, as in the old tool.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.layers.events import STATE_LABELS
from mf_pipeline.lib.research.labels import FORWARD_COLUMNS, FORWARD_RETURN_COLUMNS

CLUSTER_PROFILE_FEATURES: tuple[str, ...] = (
    "tmf_21",
    "delta_flow_20",
    "flow_activity_20",
    "flow_bias_20",
    "oscillation_index_20",
    "state_run_length",
    "long_flow_score_20",
    "short_flow_score_20",
    "persistence_pos_20",
    "persistence_neg_20",
)
VITERBI_SOURCE = "viterbi (reads future bars; description only)"
FILTERED_SOURCE = "hmm_state_filtered (causal: bars <= t)"

HMM_PROFILE_FEATURES: tuple[str, ...] = (
    "tmf_21",
    "delta_flow_20",
    "flow_activity_20",
    "flow_bias_20",
    "oscillation_index_20",
    "state_run_length",
    "hmm_state_run_length",
)


def group_profile(frame: pl.DataFrame, by: str, features: Sequence[str]) -> pl.DataFrame:
    """Per state: row/ticker counts, date range, ``<f>_mean``/``<f>_std`` and dataset share."""
    if by not in frame.columns or frame.height == 0:
        raise ValueError(f"profile needs a non-empty frame with column {by!r}")
    feats = [f for f in features if f in frame.columns]
    aggs: list[pl.Expr] = [pl.len().alias("row_count")]
    if "ticker" in frame.columns:
        aggs.append(pl.col("ticker").n_unique().alias("ticker_count"))
    if "trade_date" in frame.columns:
        aggs += [
            pl.col("trade_date").min().alias("date_min"),
            pl.col("trade_date").max().alias("date_max"),
        ]
    for f in feats:
        x = pl.col(f).cast(pl.Float64)
        aggs += [x.mean().alias(f"{f}_mean"), x.std(ddof=0).alias(f"{f}_std")]
    out = frame.group_by(by).agg(aggs).sort(by)
    return out.with_columns((pl.col("row_count") / frame.height).alias("share_of_dataset"))


def forward_validation(
    frame: pl.DataFrame, by: str, columns: Sequence[str] = FORWARD_COLUMNS
) -> pl.DataFrame:
    """Per state and forward column: n, mean, median, std, p10, p90 (+ hit rate for returns).

    Raises if a mean/median is missing where values exist or present where none exist
    (the old consistency guard), naming the offending states.
    """
    cols = [c for c in columns if c in frame.columns]
    clean = frame.select(
        by,
        *[
            pl.when(pl.col(c).cast(pl.Float64).is_finite())
            .then(pl.col(c).cast(pl.Float64))
            .alias(c)
            for c in cols
        ],
    )
    aggs: list[pl.Expr] = []
    for c in cols:
        x = pl.col(c)
        aggs += [
            x.count().alias(f"{c}_n"),
            x.mean().alias(f"{c}_mean"),
            x.median().alias(f"{c}_median"),
            x.std(ddof=0).alias(f"{c}_std"),
            x.quantile(0.10, interpolation="linear").alias(f"{c}_p10"),
            x.quantile(0.90, interpolation="linear").alias(f"{c}_p90"),
        ]
        if c in FORWARD_RETURN_COLUMNS:
            # share > 0 among non-null; null (not NaN 0/0) for a state with no finite value
            aggs.append(
                pl.when(x.count() > 0)
                .then((x > 0).sum().truediv(x.count()))
                .alias(f"{c}_hit_rate")
            )
    out = clean.group_by(by).agg(aggs).sort(by)
    _guard(out, by, cols)
    return out


def _guard(out: pl.DataFrame, by: str, cols: Sequence[str]) -> None:
    for c in cols:
        for stat in ("mean", "median"):
            v = pl.col(f"{c}_{stat}")
            bad_missing = (pl.col(f"{c}_n") > 0) & (v.is_null() | ~v.is_finite())
            bad_present = (pl.col(f"{c}_n") == 0) & v.is_not_null()
            bad = out.filter(bad_missing | bad_present)[by].to_list()
            if bad:
                raise ValueError(f"inconsistent {c}_{stat} for states {bad}")


def with_flow_label(frame: pl.DataFrame) -> pl.DataFrame:
    """``flow_state_label`` (S0_QUIET … S4_PERSISTENT_SUPPLY) filled from ``flow_state_code``
    where missing: the ML dataset export carries the code only, which left the old tool's
    label crosstabs always empty (research.md known issue 34)."""
    if "flow_state_code" not in frame.columns:
        return frame
    from_code = (
        pl.col("flow_state_code")
        .cast(pl.Int64, strict=False)
        .replace_strict(STATE_LABELS, default=None, return_dtype=pl.String)
    )
    if "flow_state_label" in frame.columns:
        from_code = pl.coalesce(pl.col("flow_state_label").cast(pl.String), from_code)
    return frame.with_columns(from_code.alias("flow_state_label"))


def crosstab(frame: pl.DataFrame, by: str, other: str, share_name: str) -> pl.DataFrame:
    """Counts per (state, other) and the share within the state; empty if ``other`` is absent."""
    if other not in frame.columns:
        return pl.DataFrame(
            schema={
                by: frame.schema.get(by, pl.Int32),
                other: pl.String if other == "flow_state_label" else pl.Int32,
                "count": pl.UInt32,
                share_name: pl.Float64,
            }  # fmt: skip
        )
    sub = frame.filter(pl.col(other).is_not_null())
    out = sub.group_by(by, other).agg(pl.len().alias("count")).sort(by, other)
    return out.with_columns((pl.col("count") / pl.col("count").sum().over(by)).alias(share_name))


def build_profiles(
    frame: pl.DataFrame,
    by: str,
    features: Sequence[str],
    crosstab_col: str = "flow_state_label",
) -> dict[str, pl.DataFrame]:
    """``profile`` (joined with forward validation), ``forward_validation`` and ``crosstab``
    (per state × ``flow_state_label``, as research.md §4.6/§5.6; label derived from the code
    when the dataset lacks it)."""
    if crosstab_col == "flow_state_label":
        frame = with_flow_label(frame)
    prof = group_profile(frame, by, features)
    fwd = forward_validation(frame, by)
    share = "share_in_cluster" if by == "cluster_id" else f"share_in_{by}"
    return {
        "profile": prof.join(fwd, on=by, how="left", maintain_order="left"),
        "forward_validation": fwd,
        "crosstab": crosstab(frame, by, crosstab_col, share),
    }


def cluster_profiles(frame: pl.DataFrame, by: str = "cluster_id") -> dict[str, pl.DataFrame]:
    return build_profiles(frame, by, CLUSTER_PROFILE_FEATURES)


def hmm_state_profiles(frame: pl.DataFrame, by: str = "hmm_state") -> dict[str, pl.DataFrame]:
    return build_profiles(frame, by, HMM_PROFILE_FEATURES)


def labelled_profiles(tables: dict[str, pl.DataFrame], source: str) -> dict[str, pl.DataFrame]:
    """The same tables with a ``state_source`` column saying which path they come from."""
    return {name: t.with_columns(pl.lit(source).alias("state_source")) if name != "crosstab"
            else t for name, t in tables.items()}  # fmt: skip


def label_concentration(labels: np.ndarray) -> dict[str, Any]:
    """Largest share and effective count (1/Σshare²) over all rows, noise (<0) included as in
    the old tool; ``noise_share`` reported separately so HDBSCAN noise is visible."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return {"largest_share": None, "effective_count": None, "detected": 0, "noise_share": 0}
    _, counts = np.unique(labels, return_counts=True)
    share = counts / labels.size
    return {
        "largest_share": float(share.max()),
        "effective_count": float(1.0 / np.square(share).sum()),
        "detected": int(np.unique(labels[labels >= 0]).size),
        "noise_share": float((labels < 0).mean()),
    }


def forward_separation(profile: pl.DataFrame, column: str = "fwd_ret_10_mean") -> float | None:
    """max − min of the non-null per-state means (None if none). A raw figure: judge it with
    ``null.separation_null`` (same statistic, permutation null), never a fixed threshold."""
    if column not in profile.columns:
        return None
    v = profile[column].drop_nulls().drop_nans()
    return None if v.len() == 0 else float(v.max() - v.min())
