"""Tradability score and ALLOW / WATCH / BLOCK policy per state (research.md §9.1–9.7).

The score components, penalties, hard-fail order, reasons, direction hint, state-table
columns, ranks and sort order are the old tool's, with these changes:

* #12 — sign consistency is direction-aware (share of windows with the state's dominant sign,
  see scorecards.py), so a steadily bearish state with a significant edge can be ALLOWed; its
  ``allow_direction_hint`` is ``SHORT_BIAS``.
* #14 — ``ret_mean_cv`` never blocks: ``HARD_HIGH_RET_CV`` is gone. The cv still lowers the
  score (component ``ret_cv``) and, through the QA labels, adds the ``WINDOW_DRIFT_HIGH`` or
  ``MEAN_NEAR_ZERO_CV_INFLATION`` penalty.
* #15 — ``HARD_WIDE_CI_WITHOUT_SIGN_CONF`` and the ``ci_width`` score component use the
  absolute ``ci_width_hard_max``; the old relative quantile is reported only.
* #16 — QA labels are an explicit argument covering every state (missing states are an error).
* ALLOW also needs ``edge_significant`` (Holm-adjusted bootstrap p of the ``fwd_ret_10`` mean
  below ``alpha``); otherwise the state is at best WATCH with ``WATCH_EDGE_NOT_SIGNIFICANT``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from mf_pipeline.lib.validation.qa import (
    thresholds_from_settings,
    transition_counts,
    window_stats,
)

DEFAULT_PENALTIES: dict[str, float] = {
    "LOW_N": 20.0,
    "LOW_OCCUPANCY": 20.0,
    "MEAN_NEAR_ZERO_CV_INFLATION": 15.0,
    "WIDE_CI": 15.0,
    "SIGN_FLIP_ACROSS_WINDOWS": 20.0,
    "WINDOW_DRIFT_HIGH": 15.0,
    "LIKELY_OUTLIER_WINDOW": 10.0,
    "TRANSITIONS_TOO_SPARSE": 10.0,
}
DEFAULT_WEIGHTS: dict[str, float] = {
    "sample_size": 0.15,
    "occupancy": 0.15,
    "sign_confidence": 0.20,
    "ci_width": 0.15,
    "sign_consistency": 0.15,
    "ret_cv": 0.10,
    "confidence_score": 0.10,
}
SEVERE_QA_COMBINATION = ("SIGN_FLIP_ACROSS_WINDOWS", "WIDE_CI", "LIKELY_OUTLIER_WINDOW")
ALLOW_BLOCKING_QA = ("WIDE_CI", "SIGN_FLIP_ACROSS_WINDOWS")
CLASSES = ("ALLOW", "WATCH", "BLOCK")

STATE_TABLE_COLUMNS: tuple[str, ...] = (
    "state_id", "n_rows", "fwd_ret_10_mean", "fwd_ret_10_ci_lo", "fwd_ret_10_ci_hi",
    "ci_width", "hit_rate", "sign_confidence_flag", "stability_sign_consistency", "ret_mean_cv",
    "state_share_mean", "state_share_cv", "confidence_score", "pairwise_diff_significant_share",
    "window_count", "sign_flip_count", "worst_window_fwd_ret_10", "best_window_fwd_ret_10",
    "drift_span", "transition_event_count", "directional_edge_sign", "allow_direction_hint",
    "risk_penalty", "tradability_score_raw", "tradability_score", "class_label", "qa_labels",
    "reasons", "score_component_sample_size", "score_component_occupancy",
    "score_component_sign_confidence", "score_component_ci_width",
    "score_component_sign_consistency", "score_component_ret_cv",
    "score_component_confidence_score", "ci_relative_rank", "occupancy_rank", "stability_rank",
    "edge_p_adjusted", "edge_excess", "edge_significant",
)  # fmt: skip


@dataclass(frozen=True)
class PolicyThresholds:
    """Settings group ``cluster_hardening``. ``ret_cv_hard`` only scales the ``ret_cv`` score
    component (#14); ``ci_width_hard_max`` is absolute (#15); ``alpha`` gates ALLOW."""

    min_n_rows_hard: int = 200
    min_state_share_hard: float = 0.03
    ret_cv_hard: float = 6.0
    sign_consistency_hard: float = 0.55
    ci_width_hard_quantile: float = 0.8
    score_min_allow: float = 70.0
    score_min_watch: float = 45.0
    eps: float = 1e-12
    ci_width_hard_max: float = 0.06
    alpha: float = 0.05
    penalties: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PENALTIES))
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    @classmethod
    def from_settings(cls, group: Any) -> PolicyThresholds:
        return thresholds_from_settings(cls, group)


@dataclass
class PolicyResult:
    state_table: pl.DataFrame
    policy: dict[str, Any]  # cluster_hardening_policy.json without the caller's run folder
    summary: dict[str, Any]


def _components(t: PolicyThresholds, max_n: float, max_share: float) -> dict[str, pl.Expr]:
    n = pl.col("n_rows").fill_null(0).cast(pl.Float64)
    share = pl.col("state_share_mean").fill_null(0.0)
    cv, ci = pl.col("ret_mean_cv"), pl.col("ci_width")
    ci_ref = max(t.ci_width_hard_max, t.eps)
    sample = (n.log1p() / pl.lit(max_n).log1p()).clip(upper_bound=1.0) if max_n > 0 else None
    occupancy = (share / max_share).clip(upper_bound=1.0) if max_share > 0 else None
    return {
        "sample_size": pl.when(n > 0).then(sample).otherwise(0.0) if sample is not None
        else pl.lit(0.0),
        "occupancy": pl.when(share > 0).then(occupancy).otherwise(0.0) if occupancy is not None
        else pl.lit(0.0),
        "sign_confidence": pl.col("sign_confidence_flag").fill_null(False).cast(pl.Float64),
        "ci_width": pl.when(ci.is_not_null())
        .then((1 - ci / ci_ref).clip(lower_bound=0.0)).otherwise(0.0),
        "sign_consistency": pl.col("stability_sign_consistency").fill_null(0.0).clip(0.0, 1.0),
        "ret_cv": pl.when(cv.is_not_null())
        .then((1 - cv / max(t.ret_cv_hard, t.eps)).clip(lower_bound=0.0)).otherwise(0.0),
        "confidence_score": (pl.col("confidence_score").fill_null(0.0) / 100).clip(0.0, 1.0),
    }  # fmt: skip


def _tradability(t: PolicyThresholds, max_n: float, max_share: float) -> list[pl.Expr]:
    parts = _components(t, max_n, max_share)
    w = {k: max(0.0, float({**DEFAULT_WEIGHTS, **t.weights}[k])) for k in parts}
    total = sum(w.values())
    base = 100 * sum(w[k] * e for k, e in parts.items()) / total if total > 0 else pl.lit(0.0)
    penalty = (
        pl.col("qa_label_list")
        .list.eval(
            pl.element().replace_strict(dict(t.penalties), default=0.0, return_dtype=pl.Float64)
        )
        .list.sum()
        .alias("risk_penalty")
    )
    return [
        *[e.alias(f"score_component_{k}") for k, e in parts.items()],
        base.alias("_base"),
        penalty,
    ]


def _hard_fails(t: PolicyThresholds) -> pl.Expr:
    labels = pl.col("qa_label_list")
    severe = pl.all_horizontal([labels.list.contains(x) for x in SEVERE_QA_COMBINATION])
    rules = [
        ("HARD_LOW_N", pl.col("n_rows").fill_null(0) < t.min_n_rows_hard),
        ("HARD_LOW_OCCUPANCY", pl.col("state_share_mean") < t.min_state_share_hard),
        ("HARD_LOW_SIGN_CONSISTENCY",
         pl.col("stability_sign_consistency") < t.sign_consistency_hard),
        ("HARD_WIDE_CI_WITHOUT_SIGN_CONF",
         (pl.col("ci_width") > t.ci_width_hard_max) & ~pl.col("sign_confidence_flag")),
        ("HARD_SEVERE_QA_COMBINATION", severe),
    ]  # fmt: skip
    return pl.concat_list(
        [pl.when(rule.fill_null(False)).then(pl.lit(code)) for code, rule in rules]
    ).list.drop_nulls()


def _classify(t: PolicyThresholds) -> list[pl.Expr]:
    score, hard = pl.col("tradability_score"), pl.col("_hard")
    has_hard = hard.list.len() > 0
    qa = pl.col("qa_label_list")
    allow_checks = (
        (score >= t.score_min_allow)
        & pl.col("sign_confidence_flag").fill_null(False)
        & ~pl.any_horizontal([qa.list.contains(x) for x in ALLOW_BLOCKING_QA])
    )
    lo, hi = pl.col("fwd_ret_10_ci_lo"), pl.col("fwd_ret_10_ci_hi")
    ci_sign = pl.when((lo > 0) & (hi > 0)).then(1).when((lo < 0) & (hi < 0)).then(-1).otherwise(0)
    # the edge (excess over the state's own tickers) must point the way the trade would go: a
    # positive state that is significantly BELOW the average is no long edge
    agrees = (pl.col("edge_excess").sign() == ci_sign).fill_null(False)
    edge = pl.col("edge_significant") & agrees
    block = has_hard | (score < t.score_min_watch)
    label = (
        pl.when(block).then(pl.lit("BLOCK"))
        .when(allow_checks & edge).then(pl.lit("ALLOW"))
        .otherwise(pl.lit("WATCH"))
    )  # fmt: skip
    class_reasons = pl.concat_list(
        pl.when(block & ~has_hard).then(pl.lit("BLOCK_LOW_SCORE")),
        pl.when(~block & allow_checks & edge).then(pl.lit("ALLOW_SCORE_AND_STABILITY_OK")),
        pl.when(~block & ~allow_checks).then(pl.lit("WATCH_MIXED_SIGNALS")),
        pl.when(~block & ~pl.col("edge_significant")).then(pl.lit("WATCH_EDGE_NOT_SIGNIFICANT")),
        pl.when(~block & pl.col("edge_significant") & ~agrees)
        .then(pl.lit("WATCH_EDGE_DIRECTION_MIXED")),
    ).list.drop_nulls()
    qa_reasons = qa.list.eval(pl.lit("QA_") + pl.element())
    reasons = pl.concat_list(hard, class_reasons, qa_reasons)
    return [label.alias("class_label"), reasons.list.join(",").alias("reasons")]


def _direction() -> list[pl.Expr]:
    lo, hi = pl.col("fwd_ret_10_ci_lo"), pl.col("fwd_ret_10_ci_hi")
    sign = (
        pl.when((lo > 0) & (hi > 0)).then(1)
        .when((lo < 0) & (hi < 0)).then(-1)
        .otherwise(0).cast(pl.Int8)
    )  # fmt: skip
    hint = (
        pl.when(sign == 1).then(pl.lit("LONG_BIAS"))
        .when(sign == -1).then(pl.lit("SHORT_BIAS"))
        .otherwise(pl.lit("UNCONFIRMED"))
    )  # fmt: skip
    return [sign.alias("directional_edge_sign"), hint.alias("allow_direction_hint")]


def _labels_frame(scorecard: pl.DataFrame, qa_labels: Mapping[int, list[str]]) -> pl.DataFrame:
    states = [int(s) for s in scorecard["state_id"].to_list()]
    missing = sorted(s for s in states if s not in qa_labels)
    if missing:
        raise ValueError(
            f"qa_labels has no entry for states {missing}: pass the QA result of this run "
            "(an empty list for a clean state); penalties must not depend on a file being there"
        )
    return pl.DataFrame(
        {"state_id": states, "qa_label_list": [sorted(set(qa_labels[s])) for s in states]},
        schema={"state_id": pl.Int32, "qa_label_list": pl.List(pl.Utf8)},
    )


def harden(
    scorecard: pl.DataFrame,
    rolling: pl.DataFrame,
    transition_summary: pl.DataFrame,
    qa_labels: Mapping[int, list[str]],
    thresholds: PolicyThresholds,
) -> PolicyResult:
    """Score and classify every state of one run's ``state_scorecard`` (research.md §9.3–9.6).

    ``qa_labels``: state → QA labels (``QaResult.labels``), required for every state.
    """
    t = thresholds
    card = scorecard.with_columns(pl.col("state_id").cast(pl.Int32))
    max_n = card["n_rows"].max() or 0
    max_share = card["state_share_mean"].max() or 0.0
    stats = window_stats(rolling).drop("share_variance", "likely_outlier_window")
    table = (
        card.join(stats, on="state_id", how="left")
        .join(transition_counts(transition_summary), on="state_id", how="left")
        .join(_labels_frame(card, qa_labels), on="state_id", how="left")
        .with_columns(
            pl.col("window_count", "sign_flip_count", "transition_event_count").fill_null(0),
            (pl.col("edge_p_adjusted") < t.alpha).fill_null(False).alias("edge_significant"),
        )
        .with_columns(_tradability(t, float(max_n), float(max_share)))
        .with_columns(
            (pl.col("_base") - pl.col("risk_penalty")).clip(0.0, 100.0).alias("tradability_score"),
            _hard_fails(t).alias("_hard"),
        )
        .with_columns(
            pl.col("tradability_score").alias("tradability_score_raw"),
            *_classify(t),
            *_direction(),
            pl.col("qa_label_list").list.join(",").alias("qa_labels"),
            pl.col("ci_width").rank("dense").alias("ci_relative_rank"),
            pl.col("state_share_mean").rank("dense", descending=True).alias("occupancy_rank"),
            pl.col("stability_sign_consistency")
            .rank("dense", descending=True)
            .alias("stability_rank"),
        )
        .sort(["class_label", "tradability_score", "state_id"], descending=[False, True, False])
    )
    state_table = table.select(STATE_TABLE_COLUMNS)
    summary = _class_summary(state_table)
    return PolicyResult(state_table, _policy_payload(table, t, card, summary), summary)


def _class_summary(state_table: pl.DataFrame) -> dict[str, Any]:
    ids = {
        c: sorted(state_table.filter(pl.col("class_label") == c)["state_id"].to_list())
        for c in CLASSES
    }
    return {
        "total_states": state_table.height,
        **{f"{c.lower()}_count": len(ids[c]) for c in CLASSES},
        **{f"{c.lower()}_state_ids": ids[c] for c in CLASSES},
    }


def _policy_payload(
    table: pl.DataFrame, t: PolicyThresholds, card: pl.DataFrame, summary: dict[str, Any]
) -> dict[str, Any]:
    metric_cols = ["n_rows", "state_share_mean", "fwd_ret_10_mean", "ci_width",
                   "stability_sign_consistency", "ret_mean_cv", "confidence_score",
                   "edge_p_adjusted", "edge_significant"]  # fmt: skip
    rows = table.select(
        "state_id", "class_label", "tradability_score", "allow_direction_hint",
        pl.col("reasons").str.split(",").list.eval(pl.element().filter(pl.element() != "")),
        pl.col("qa_label_list").alias("qa_labels"),
        pl.struct(metric_cols).alias("metrics"),
    ).to_dicts()  # fmt: skip
    quantile = card["ci_width"].drop_nulls().quantile(t.ci_width_hard_quantile, "linear")
    return {
        "generated_ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "thresholds": {
            "min_n_rows_hard": t.min_n_rows_hard,
            "min_state_share_hard": t.min_state_share_hard,
            "ret_cv_hard": t.ret_cv_hard,
            "ret_cv_is_hard_limit": False,
            "sign_consistency_hard": t.sign_consistency_hard,
            "ci_width_hard_max": t.ci_width_hard_max,
            "ci_width_hard_value": t.ci_width_hard_max,
            "ci_width_hard_quantile": t.ci_width_hard_quantile,
            "ci_width_hard_quantile_value": None if quantile is None else float(quantile),
            "score_min_allow": t.score_min_allow,
            "score_min_watch": t.score_min_watch,
            "alpha": t.alpha,
            "weights": {**DEFAULT_WEIGHTS, **t.weights},
            "penalties": dict(t.penalties),
            "eps": t.eps,
        },
        "summary": summary,
        "per_state": rows,
    }


def export_rows(
    rows: pl.DataFrame, state_table: pl.DataFrame, state_col: str
) -> dict[str, pl.DataFrame]:
    """Attach the policy to labelled rows (research.md §9.6 export).

    Returns ``with_policy`` (all rows + ``tradable_state_class`` (``UNMAPPED`` when the state is
    not in the table), ``tradable_state_score``, ``tradable_direction_hint`` (``UNCONFIRMED``
    when unmapped), ``policy_reason_flags``), ``tradable`` (ALLOW rows), ``watch`` (WATCH rows),
    ``by_state`` (row counts per state, class and hint) and ``class_counts``.
    """
    if state_col not in rows.columns:
        raise ValueError(f"rows to export lack the state column {state_col!r}")
    policy = state_table.select(
        pl.col("state_id").cast(pl.Int64).alias("_state_key"),
        pl.col("class_label").alias("tradable_state_class"),
        pl.col("tradability_score").alias("tradable_state_score"),
        pl.col("allow_direction_hint").alias("tradable_direction_hint"),
        pl.col("reasons").alias("policy_reason_flags"),
    )
    joined = (
        rows.with_columns(pl.col(state_col).cast(pl.Int64, strict=False).alias("_state_key"))
        .join(policy, on="_state_key", how="left", maintain_order="left")
        .drop("_state_key")
        .with_columns(
            pl.col("tradable_state_class").fill_null("UNMAPPED"),
            pl.col("tradable_direction_hint").fill_null("UNCONFIRMED"),
        )
    )
    by_state = (
        joined.group_by(state_col, "tradable_state_class", "tradable_direction_hint")
        .len("row_count")
        .sort(["tradable_state_class", "row_count", state_col], descending=[False, True, False])
    )
    class_counts = (
        joined.group_by("tradable_state_class")
        .len("row_count")
        .sort(["row_count", "tradable_state_class"], descending=[True, False])
    )
    return {
        "with_policy": joined,
        "tradable": joined.filter(pl.col("tradable_state_class") == "ALLOW"),
        "watch": joined.filter(pl.col("tradable_state_class") == "WATCH"),
        "by_state": by_state,
        "class_counts": class_counts,
    }


def export_summary(source_rows: int, exports: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    """``cluster_hardening_export_summary.json`` figures (the caller adds file and outputs)."""
    return {
        "source_rows": source_rows,
        "joined_rows": exports["with_policy"].height,
        "tradable_rows": exports["tradable"].height,
        "watch_rows": exports["watch"].height,
        "class_counts": exports["class_counts"].to_dicts(),
    }


def recommend_thresholds(state_tables: pl.DataFrame, thresholds: PolicyThresholds) -> dict:
    """Quantile heuristic over the state tables of several splits (research.md §9.7).

    Reference rows: ALLOW, else WATCH, else all. The recommended CI width (q0.80 of
    ``ci_width``) is for the absolute ``ci_width_hard_max`` (#15).
    """
    t = thresholds
    configured = {
        "min_n_rows_hard": t.min_n_rows_hard,
        "min_state_share_hard": t.min_state_share_hard,
        "ret_cv_hard": t.ret_cv_hard,
        "sign_consistency_hard": t.sign_consistency_hard,
        "ci_width_hard_quantile": t.ci_width_hard_quantile,
    }
    if state_tables.is_empty():
        return {"method": "fallback_config_only", "source_rows": 0,
                "recommendations": configured}  # fmt: skip
    ref, reference_class = state_tables, "all"
    for c in ("ALLOW", "WATCH"):
        subset = state_tables.filter(pl.col("class_label") == c)
        if subset.height:
            ref, reference_class = subset, c
            break

    def q(col: str, level: float, fallback: float) -> float:
        value = ref[col].drop_nulls().quantile(level, "linear")
        return fallback if value is None else float(value)

    return {
        "method": "allow_watch_quantile_heuristic",
        "source_rows": state_tables.height,
        "reference_class": reference_class,
        "reference_rows": ref.height,
        "recommendations": {
            "min_n_rows_hard": int(q("n_rows", 0.10, t.min_n_rows_hard)),
            "min_state_share_hard": q("state_share_mean", 0.10, t.min_state_share_hard),
            "ret_cv_hard": q("ret_mean_cv", 0.90, t.ret_cv_hard),
            "sign_consistency_hard": q("stability_sign_consistency", 0.10,
                                       t.sign_consistency_hard),
            "ci_width_hard_quantile": t.ci_width_hard_quantile,
            "ci_width_hard_value_recommended": q("ci_width", 0.80, t.ci_width_hard_max),
        },
    }  # fmt: skip
