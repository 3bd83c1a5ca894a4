"""Per-state scorecard and the run's overall grade (research.md §6.5, with fixes #11, #12, #20).

The formulas are the old tool's (confidence-score components and weights, notes, ``n_ref``,
grade cut-offs) except where they misled:

* #11 — a pair of states counts as separated only when its Holm-corrected bootstrap test is
  significant (``significant`` of the pairwise table), not when its uncorrected CI excludes
  zero; the per-state share, the separation component and the grade use the corrected share.
  The uncorrected share is kept as ``pairwise_diff_sign_consistent_share``.
* #12 — ``stability_sign_consistency`` is the share of rolling windows whose mean has the
  state's dominant sign (a steadily bearish state scores high). A stability summary without
  ``dominant_sign`` still carries the old positive-window share and is refused.
* #20 — ``top_state_id`` / ``worst_state_id`` only consider states with a mean.

Added per state: the bootstrap edge test of the ``fwd_ret_10`` mean (``edge_p_value``, Holm
``edge_p_adjusted``, ``edge_significant`` at ``alpha``, ``edge_excess`` = the state's mean of
the outcome minus its ticker's mean, ``edge_direction`` = sign of that excess when significant,
else 0; bootstrap.py). Not the difference from zero: a market drift or the convexity of simple
returns lifts every state alike, and a state that merely gathers volatile tickers is no regime
edge.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import polars as pl

SCORECARD_OUTCOME = "fwd_ret_10"
DEFAULT_CONFIDENCE_WEIGHTS: dict[str, float] = {
    "sample_size": 0.2,
    "ci_width": 0.25,
    "sign_confidence": 0.2,
    "stability": 0.25,
    "separation": 0.1,
}
CI_WIDTH_CAP = 0.2  # ci component reaches 0 at this width of the fwd_ret_10 mean's CI
RET_CV_CAP = 3.0  # stability component's cv half reaches 0 here
NOTE_LOW_SAMPLE = 500
NOTE_WIDE_CI = 0.04
NOTE_UNSTABLE_CV = 1.5
# grade: (pairwise significant share >=, avg sign consistency >=, avg ci width <=)
GRADE_A = (0.6, 0.65, 0.02)
GRADE_B = (0.4, 0.55, 0.04)

SCORECARD_COLUMNS: tuple[str, ...] = (
    "state_id",
    "n_rows",
    "fwd_ret_10_mean",
    "fwd_ret_10_ci_lo",
    "fwd_ret_10_ci_hi",
    "ci_width",
    "hit_rate",
    "sign_confidence_flag",
    "stability_sign_consistency",
    "ret_mean_cv",
    "state_share_mean",
    "state_share_cv",
    "pairwise_diff_significant_share",
    "confidence_score",
    "notes",
    "pairwise_diff_sign_consistent_share",
    "edge_p_value",
    "edge_p_adjusted",
    "edge_excess",
    "edge_significant",
    "edge_direction",
)
_BOOT_COLUMNS = (
    "state_id",
    "outcome_name",
    "n",
    "mean_obs",
    "mean_ci_lo",
    "mean_ci_hi",
    "hit_rate_obs",
    "mean_p_value",
    "mean_p_adjusted",
    "mean_excess_obs",
)
_STABILITY_COLUMNS = (
    "state_id",
    "fwd_ret_10_sign_stability",
    "dominant_sign",
    "ret_mean_cv",
    "state_share_mean",
    "share_cv",
)


class BootstrapLike(Protocol):
    state_summary: pl.DataFrame
    pairwise: pl.DataFrame


class StabilityLike(Protocol):
    state_summary: pl.DataFrame


def _require(frame: pl.DataFrame, columns: tuple[str, ...], what: str, why: str = "") -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}{why}")


def _finite(col: str) -> pl.Expr:
    """True where the column is a finite number (false for null)."""
    return pl.col(col).is_finite().fill_null(False)


def pairwise_shares(pairwise: pl.DataFrame) -> pl.DataFrame:
    """Per state: share of its pairwise rows that are significant after the multiple-comparison
    correction, and (uncorrected, for reference) whose CI excludes zero. Each pair row counts
    once for each of its two states."""
    _require(pairwise, ("state_a", "state_b", "significant", "diff_sign_consistent"), "pairwise")
    flags = [
        pl.col("significant").fill_null(False).cast(pl.Float64),
        pl.col("diff_sign_consistent").fill_null(False).cast(pl.Float64),
    ]
    long = pl.concat(
        [
            pairwise.select(pl.col(side).cast(pl.Int32).alias("state_id"), *flags)
            for side in ("state_a", "state_b")
        ]
    )
    return long.group_by("state_id").agg(
        pl.col("significant").mean().alias("pairwise_diff_significant_share"),
        pl.col("diff_sign_consistent").mean().alias("pairwise_diff_sign_consistent_share"),
    )


def _confidence_components(n_ref: int) -> dict[str, pl.Expr]:
    n = pl.col("n_rows").cast(pl.Float64)
    cv = pl.col("ret_mean_cv")
    return {
        "sample_size": pl.when(n > 0)
        .then(pl.min_horizontal(pl.lit(1.0), n.log1p() / math.log1p(n_ref)))
        .otherwise(0.0),
        "ci_width": pl.when(_finite("ci_width"))
        .then((1 - pl.min_horizontal(pl.col("ci_width"), pl.lit(CI_WIDTH_CAP)) / CI_WIDTH_CAP)
              .clip(lower_bound=0.0))
        .otherwise(0.0),
        "sign_confidence": pl.col("sign_confidence_flag").cast(pl.Float64),
        "stability": 0.5
        * pl.when(_finite("stability_sign_consistency"))
        .then(pl.col("stability_sign_consistency").clip(0.0, 1.0))
        .otherwise(0.0)
        + 0.5
        * pl.when(_finite("ret_mean_cv"))
        .then((1 - pl.min_horizontal(cv, pl.lit(RET_CV_CAP)) / RET_CV_CAP).clip(lower_bound=0.0))
        .otherwise(0.0),
        "separation": pl.col("pairwise_diff_significant_share").fill_null(0.0).clip(0.0, 1.0),
    }  # fmt: skip


def _notes() -> pl.Expr:
    cv = pl.col("ret_mean_cv")
    labels = pl.concat_list(
        pl.when(pl.col("n_rows") < NOTE_LOW_SAMPLE).then(pl.lit("low_sample")),
        pl.when(pl.col("ci_width") > NOTE_WIDE_CI).then(pl.lit("wide_ci")),
        pl.when(~pl.col("sign_confidence_flag")).then(pl.lit("sign_uncertain")),
        pl.when(_finite("ret_mean_cv") & (cv > NOTE_UNSTABLE_CV)).then(pl.lit("unstable_returns")),
    ).list.drop_nulls()
    return pl.when(labels.list.len() == 0).then(pl.lit("ok")).otherwise(labels.list.join(","))


def _n_ref(n: pl.Series) -> int:
    """max(1, floor(P90 of the states' n)), numpy's linear percentile as in the old tool."""
    values = n.drop_nulls().to_numpy().astype(float)
    return max(1, int(np.percentile(values, 90))) if values.size else 1


def state_scorecard(
    state_summary: pl.DataFrame,
    pairwise: pl.DataFrame,
    stability_summary: pl.DataFrame,
    *,
    weights: Mapping[str, float],
    alpha: float = 0.05,
) -> pl.DataFrame:
    """One row per state with a ``fwd_ret_10`` bootstrap row; columns :data:`SCORECARD_COLUMNS`,
    sorted by ``confidence_score`` descending then ``state_id``."""
    _require(state_summary, _BOOT_COLUMNS, "bootstrap state summary")
    _require(
        stability_summary,
        _STABILITY_COLUMNS,
        "state stability summary",
        " (without dominant_sign, fwd_ret_10_sign_stability is the old positive-window share,"
        " which marks steadily bearish states as unstable; issue #12)",
    )
    boot = state_summary.filter(pl.col("outcome_name") == SCORECARD_OUTCOME)
    if boot.is_empty():
        raise ValueError(f"bootstrap state summary has no {SCORECARD_OUTCOME} rows")
    w = {**DEFAULT_CONFIDENCE_WEIGHTS, **weights}
    stab = stability_summary.select(
        pl.col("state_id").cast(pl.Int32),
        pl.col("fwd_ret_10_sign_stability").alias("stability_sign_consistency"),
        "ret_mean_cv",
        "state_share_mean",
        pl.col("share_cv").alias("state_share_cv"),
    )
    lo, hi = pl.col("fwd_ret_10_ci_lo"), pl.col("fwd_ret_10_ci_hi")
    card = (
        boot.select(
            pl.col("state_id").cast(pl.Int32),
            pl.col("n").alias("n_rows"),
            pl.col("mean_obs").alias("fwd_ret_10_mean"),
            pl.col("mean_ci_lo").alias("fwd_ret_10_ci_lo"),
            pl.col("mean_ci_hi").alias("fwd_ret_10_ci_hi"),
            pl.col("hit_rate_obs").alias("hit_rate"),
            pl.col("mean_p_value").alias("edge_p_value"),
            pl.col("mean_p_adjusted").alias("edge_p_adjusted"),
            pl.col("mean_excess_obs").alias("edge_excess"),
        )
        .with_columns(
            (hi - lo).alias("ci_width"),
            ((lo > 0) | (hi < 0)).fill_null(False).alias("sign_confidence_flag"),
            (pl.col("edge_p_adjusted") < alpha).fill_null(False).alias("edge_significant"),
        )
        .with_columns(
            pl.when(pl.col("edge_significant"))
            .then(pl.col("edge_excess").sign())
            .otherwise(0)
            .cast(pl.Int8)
            .alias("edge_direction"),
        )
        .join(stab, on="state_id", how="left")
        .join(pairwise_shares(pairwise), on="state_id", how="left")
        .with_columns(
            pl.col("pairwise_diff_significant_share", "pairwise_diff_sign_consistent_share")
            .fill_null(0.0)
        )
    )
    parts = _confidence_components(_n_ref(card["n_rows"]))
    score = sum(w[name] * expr for name, expr in parts.items())
    return (
        card.with_columns((100 * score).round(3).alias("confidence_score"), _notes().alias("notes"))
        .select(SCORECARD_COLUMNS)
        .sort(["confidence_score", "state_id"], descending=[True, False])
    )


def _grade(share: float | None, sign: float | None, ci: float | None) -> str:
    if share is None or sign is None or ci is None:
        return "C"
    for grade, (s_min, c_min, w_max) in (("A", GRADE_A), ("B", GRADE_B)):
        if share >= s_min and sign >= c_min and ci <= w_max:
            return grade
    return "C"


def overall_scorecard(
    card: pl.DataFrame,
    pairwise: pl.DataFrame,
    frame: pl.DataFrame,
    label_type: str,
    *,
    eps: float,
    alpha: float,
) -> dict[str, Any]:
    """The ``validation_scorecard.json`` payload for one run (research.md §6.5 "Overall")."""
    has_pairs = pairwise.height > 0
    share = pairwise["significant"].fill_null(False).mean() if has_pairs else None
    raw_share = pairwise["diff_sign_consistent"].fill_null(False).mean() if has_pairs else None
    ranked = card.filter(pl.col("fwd_ret_10_mean").is_not_null()).sort(
        ["fwd_ret_10_mean", "state_id"], descending=[True, False]
    )
    means = ranked["fwd_ret_10_mean"]
    avg_ci = card["ci_width"].mean()
    avg_sign = card["stability_sign_consistency"].mean()
    dates = frame["trade_date"] if "trade_date" in frame.columns else pl.Series([], dtype=pl.Date)
    return {
        "generated_ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "input_type": label_type,
        "n_states": card.height,
        "total_rows": frame.height,
        "date_min": None if dates.is_empty() else str(dates.min()),
        "date_max": None if dates.is_empty() else str(dates.max()),
        "forward_separation_score": None if means.is_empty() else means.max() - means.min(),
        "pairwise_diff_significant_share": share,
        "pairwise_diff_sign_consistent_share": raw_share,
        "avg_ci_width_fwd_ret_10": avg_ci,
        "avg_state_sign_consistency": avg_sign,
        "avg_state_ret_cv": card["ret_mean_cv"].mean(),
        "top_state_id": None if ranked.is_empty() else int(ranked["state_id"][0]),
        "worst_state_id": None if ranked.is_empty() else int(ranked["state_id"][-1]),
        "edge_significant_state_ids": sorted(
            card.filter(pl.col("edge_significant"))["state_id"].to_list()
        ),
        "alpha": alpha,
        "validation_grade": _grade(share, avg_sign, avg_ci),
        "notes": ["finite_only_forward_aggregation", f"scorecard_eps={eps}"],
    }


def build_scorecards(
    frame: pl.DataFrame,
    label_type: str,
    boot: BootstrapLike,
    stability: StabilityLike,
    *,
    weights: Mapping[str, float],
    eps: float = 1e-12,
    alpha: float = 0.05,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """(state scorecard, ``validation_scorecard.json`` payload) of one validation run.

    ``boot`` needs ``state_summary`` and ``pairwise`` (the bootstrap's, with ``mean_p_value``,
    ``mean_p_adjusted`` and ``significant``); ``stability`` needs ``state_summary`` (with
    ``dominant_sign``). Missing weight names fall back to :data:`DEFAULT_CONFIDENCE_WEIGHTS`.
    ``eps`` is recorded only: the cv it guards is computed by the stability step.
    """
    card = state_scorecard(
        boot.state_summary, boot.pairwise, stability.state_summary, weights=weights, alpha=alpha
    )
    return card, overall_scorecard(card, boot.pairwise, frame, label_type, eps=eps, alpha=alpha)
