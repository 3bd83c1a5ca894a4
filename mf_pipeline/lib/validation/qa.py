"""Per-state QA flags and window diagnostics (research.md §8.1–8.2, with fixes #14, #15, #16).

Flags are the old tool's, with three changes:

* #14 — ``WINDOW_DRIFT_HIGH`` (cv of the window means above its threshold) is not raised for a
  state whose ``fwd_ret_10`` mean is near zero: there the cv explodes because its denominator
  vanishes, and the state gets ``MEAN_NEAR_ZERO_CV_INFLATION`` instead.
* #15 — ``WIDE_CI`` compares the CI width of the ``fwd_ret_10`` mean with an absolute limit
  (``ci_width_max``); the old relative quantile (which always flagged ~20% of states) is still
  computed and reported as ``ci_width_quantile_value``.
* #16 — :attr:`QaResult.labels` maps EVERY state to its labels (empty list when clean), which
  the policy requires explicitly instead of reading a QA file if one happens to exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

QA_LABELS: tuple[str, ...] = (
    "LOW_N",
    "LOW_OCCUPANCY",
    "WINDOW_DRIFT_HIGH",
    "MEAN_NEAR_ZERO_CV_INFLATION",
    "WIDE_CI",
    "SIGN_FLIP_ACROSS_WINDOWS",
    "TRANSITIONS_TOO_SPARSE",
    "LIKELY_OUTLIER_WINDOW",
)
OUTLIER_MIN_WINDOWS = 4
OUTLIER_STD_MULT = 2.0
OUTLIER_FAMILY_ALPHA = 0.05
"""LIKELY_OUTLIER_WINDOW fires when the most extreme window mean lies further from the mean
than the larger of 2 std and the two-sided Bonferroni z of ``OUTLIER_FAMILY_ALPHA`` over the
state's windows. The old fixed 2 std flags most states of pure noise once there are 20+
windows (the chance that the largest of n normal deviations exceeds 2 std grows with n);
calibrated this way, noise flags about 5 % of states whatever the number of windows."""
EXTREME_WINDOWS = 3  # best and worst windows listed per state


def thresholds_from_settings(cls: type, group: Any) -> Any:
    """Build a thresholds dataclass from a settings group (a pydantic model or a mapping);
    keys the group lacks keep the dataclass defaults."""
    values = group if isinstance(group, dict) else group.model_dump()
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class QaThresholds:
    """Settings group ``cluster_qa``; ``ci_width_max`` is absolute (#15)."""

    ret_cv_threshold: float = 5.0
    min_n_rows: int = 200
    min_state_share: float = 0.03
    sign_consistency_threshold: float = 0.55
    ci_width_quantile_threshold: float = 0.8
    eps: float = 1e-12
    ci_width_max: float = 0.04

    @classmethod
    def from_settings(cls, group: Any) -> QaThresholds:
        return thresholds_from_settings(cls, group)

    @property
    def transitions_sparse_threshold(self) -> int:
        return max(10, self.min_n_rows // 5)

    @property
    def near_zero_mean_threshold(self) -> float:
        return max(0.001, 1000 * self.eps)


@dataclass
class QaResult:
    flagged: pl.DataFrame  # scorecard columns + transition_event_count, issues; flagged states
    windows: pl.DataFrame  # 3 worst and 3 best rolling windows of every state
    summary: dict[str, Any]  # cluster_qa_summary.json without the caller's run folder/scorecard
    labels: dict[int, list[str]]  # every state -> sorted labels ([] when clean)


def _present_windows(rolling: pl.DataFrame) -> pl.DataFrame:
    """Rolling rows of windows where the state occurs (a producer may add zero-count rows)."""
    if "row_count" in rolling.columns:
        rolling = rolling.filter(pl.col("row_count") > 0)
    return rolling.with_columns(pl.col("state_id").cast(pl.Int32))


def window_stats(rolling: pl.DataFrame) -> pl.DataFrame:
    """Per state over its rolling windows (by ``window_seq``): ``window_count``,
    ``sign_flip_count`` (sign changes between consecutive non-zero finite window means),
    ``share_variance`` (population), ``best/worst_window_fwd_ret_10``, ``drift_span``,
    ``outlier_z`` (largest |mean − their mean| / population std) and ``likely_outlier_window``
    (≥ 4 finite means and ``outlier_z`` above :func:`outlier_threshold`)."""
    v = pl.col("fwd_ret_10_mean")
    fin = v.filter(v.is_finite())
    nonzero_sign = fin.sign().filter(fin.sign() != 0)
    share = pl.col("state_share").filter(pl.col("state_share").is_finite())
    sd = fin.std(ddof=0)
    return (
        _present_windows(rolling)
        .sort("state_id", "window_seq")
        .group_by("state_id", maintain_order=True)
        .agg(
            pl.len().alias("window_count"),
            (nonzero_sign.diff() != 0).sum().alias("sign_flip_count"),
            share.var(ddof=0).alias("share_variance"),
            fin.max().alias("best_window_fwd_ret_10"),
            fin.min().alias("worst_window_fwd_ret_10"),
            fin.len().alias("_finite_windows"),
            pl.when(sd > 0).then((fin - fin.mean()).abs().max() / sd).alias("outlier_z"),
        )
        .with_columns(
            ((pl.col("_finite_windows") >= OUTLIER_MIN_WINDOWS)
             & (pl.col("outlier_z") > outlier_threshold(pl.col("_finite_windows"))))
            .fill_null(False).alias("likely_outlier_window"),
        )
        .drop("_finite_windows")
        .with_columns(
            (pl.col("best_window_fwd_ret_10") - pl.col("worst_window_fwd_ret_10")).alias(
                "drift_span"
            ),
            pl.col("sign_flip_count").cast(pl.Int64),
        )
    )


def outlier_threshold(windows: pl.Expr) -> pl.Expr:
    """Deviation (in std) a window mean must exceed to be an outlier among ``windows`` means."""
    from scipy.stats import norm

    def z(n: pl.Series) -> pl.Series:
        counts = n.cast(pl.Float64).fill_null(1.0).clip(1.0).to_numpy()
        level = norm.ppf(1 - OUTLIER_FAMILY_ALPHA / (2 * counts))
        return pl.Series(np.maximum(OUTLIER_STD_MULT, level))

    return windows.map_batches(z, return_dtype=pl.Float64)


def transition_counts(transition_summary: pl.DataFrame) -> pl.DataFrame:
    """Per state: Σ ``count_events`` of the (already min-events-filtered) transition summary
    rows where it is the previous state plus those where it is the next state."""
    schema = {"state_id": pl.Int32, "transition_event_count": pl.Int64}
    if transition_summary.is_empty() or "count_events" not in transition_summary.columns:
        return pl.DataFrame(schema=schema)
    long = pl.concat(
        [
            transition_summary.select(
                pl.col(side).cast(pl.Int32).alias("state_id"),
                pl.col("count_events").cast(pl.Int64).alias("transition_event_count"),
            )
            for side in ("prev_state_id", "next_state_id")
        ]
    )
    return long.group_by("state_id").agg(pl.col("transition_event_count").sum())


def _issue_expr(t: QaThresholds) -> pl.Expr:
    cv, mean = pl.col("ret_mean_cv"), pl.col("fwd_ret_10_mean")
    high_cv = (cv > t.ret_cv_threshold).fill_null(False)
    near_zero = (mean.abs() <= t.near_zero_mean_threshold).fill_null(False)
    rules = {
        "LOW_N": pl.col("n_rows").fill_null(0) < t.min_n_rows,
        "LOW_OCCUPANCY": pl.col("state_share_mean") < t.min_state_share,
        "WINDOW_DRIFT_HIGH": high_cv & ~near_zero,
        "MEAN_NEAR_ZERO_CV_INFLATION": high_cv & near_zero,
        "WIDE_CI": pl.col("ci_width") >= t.ci_width_max,
        "SIGN_FLIP_ACROSS_WINDOWS": pl.col("stability_sign_consistency")
        < t.sign_consistency_threshold,
        "TRANSITIONS_TOO_SPARSE": pl.col("transition_event_count")
        < t.transitions_sparse_threshold,
        "LIKELY_OUTLIER_WINDOW": pl.col("likely_outlier_window"),
    }
    # labels are listed alphabetically (the old `issues` order)
    return pl.concat_list(
        [pl.when(rules[k].fill_null(False)).then(pl.lit(k)) for k in sorted(rules)]
    ).list.drop_nulls()


def _ci_quantile(scorecard: pl.DataFrame, q: float) -> float | None:
    value = scorecard["ci_width"].drop_nulls().quantile(q, interpolation="linear")
    return None if value is None else float(value)


def _extreme_windows(rolling: pl.DataFrame, stats: pl.DataFrame) -> pl.DataFrame:
    cols = ["state_id", "window_seq", "window_start", "window_end", "fwd_ret_10_mean",
            "fwd_ret_10_hit_rate", "state_share"]  # fmt: skip
    r = _present_windows(rolling).select(cols)
    parts = [
        r.sort(["state_id", "fwd_ret_10_mean", "window_seq"],
               descending=[False, desc, False], nulls_last=True)
        .group_by("state_id", maintain_order=True)
        .head(EXTREME_WINDOWS)
        .with_columns(pl.lit(kind).alias("window_kind"))
        for kind, desc in (("worst", False), ("best", True))
    ]  # fmt: skip
    return (
        pl.concat(parts)
        .join(stats.select("state_id", "sign_flip_count", "share_variance"), on="state_id")
        .select("state_id", "window_kind", *cols[1:], "sign_flip_count", "share_variance")
        .sort("state_id", "window_kind", maintain_order=True)
    )


def cluster_qa(
    scorecard: pl.DataFrame,
    rolling: pl.DataFrame,
    transition_summary: pl.DataFrame,
    thresholds: QaThresholds,
) -> QaResult:
    """Flags per state of one validation run's ``state_scorecard`` (research.md §8.2)."""
    t = thresholds
    card = scorecard.with_columns(pl.col("state_id").cast(pl.Int32))
    stats = window_stats(rolling)
    judged = (
        card.join(stats, on="state_id", how="left")
        .join(transition_counts(transition_summary), on="state_id", how="left")
        .with_columns(pl.col("transition_event_count").fill_null(0))
        .with_columns(_issue_expr(t).alias("issue_list"))
    )
    flagged = (
        judged.filter(pl.col("issue_list").list.len() > 0)
        .with_columns(pl.col("issue_list").list.join(",").alias("issues"))
        .select(*card.columns, "transition_event_count", "issues")
        .sort("state_id")
    )
    counts = (
        judged.select(pl.col("issue_list").explode().drop_nulls().alias("issue"))
        .group_by("issue")
        .len()
        .sort(["len", "issue"], descending=[True, False])
    )
    issue_counts = dict(zip(counts["issue"].to_list(), counts["len"].to_list(), strict=True))
    labels = dict(zip(judged["state_id"].to_list(), judged["issue_list"].to_list(), strict=True))
    summary = {
        "generated_ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "states_total": card.height,
        "states_flagged": flagged.height,
        "issue_counts": issue_counts,
        "thresholds": {
            "ret_cv_threshold": t.ret_cv_threshold,
            "min_n_rows": t.min_n_rows,
            "min_state_share": t.min_state_share,
            "sign_consistency_threshold": t.sign_consistency_threshold,
            "ci_width_max": t.ci_width_max,
            "ci_width_threshold_value": t.ci_width_max,
            "ci_width_quantile_threshold": t.ci_width_quantile_threshold,
            "ci_width_quantile_value": _ci_quantile(card, t.ci_width_quantile_threshold),
            "transitions_sparse_threshold": t.transitions_sparse_threshold,
            "near_zero_mean_threshold": t.near_zero_mean_threshold,
            "eps": t.eps,
        },
    }
    return QaResult(flagged, _extreme_windows(rolling, stats), summary, labels)
