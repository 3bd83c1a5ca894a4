"""Compare two validation or hardening runs (research.md §6.8, §9.8), fix #28.

State ids are arbitrary labels: two clusterings or HMM fits of the same data may number the
same regimes differently, so the old id-aligned join compared unrelated states. Here the
states of run A and run B are paired by their outcome profiles (means of ``fwd_ret_5/10/20``,
``fwd_ret_10`` hit rate, state share), each feature standardised over the states of both runs,
with a minimum-total-distance assignment (``scipy.optimize.linear_sum_assignment``). The
per-state tables are built on the matched pairs; the raw id-aligned table is kept next to it,
labelled as such, with the profile distance of each id pair so the two can be judged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.research.labels import FORWARD_RETURN_COLUMNS
from mf_pipeline.lib.validation.scorecards import SCORECARD_OUTCOME

PROFILE_COLUMNS: tuple[str, ...] = (
    *(f"{c}_mean" for c in FORWARD_RETURN_COLUMNS),
    "hit_rate",
    "state_share",
)
VALIDATION_METRICS: tuple[str, ...] = (
    "n_states",
    "total_rows",
    "forward_separation_score",
    "pairwise_diff_significant_share",
    "avg_ci_width_fwd_ret_10",
    "avg_state_sign_consistency",
    "avg_state_ret_cv",
)
MATCHED = "outcome_profile_assignment"
ID_ALIGNED = "state_id (raw: ids are arbitrary labels, for reference only)"
_MATCH_SCHEMA = {"state_id_a": pl.Int32, "state_id_b": pl.Int32, "match_cost": pl.Float64}


@dataclass
class CompareResult:
    tables: dict[str, pl.DataFrame]  # "metrics" (validation only), "matched", "id_aligned"
    summary: dict[str, Any]  # the caller adds compare id, run folders and outputs


def outcome_profile(state_summary: pl.DataFrame) -> pl.DataFrame:
    """Per state, from a bootstrap state summary: ``fwd_ret_5/10/20_mean`` (observed),
    ``hit_rate`` (of ``fwd_ret_10``) and ``state_share`` (its finite ``fwd_ret_10`` rows over
    all states')."""
    means = (
        state_summary.filter(pl.col("outcome_name").is_in(FORWARD_RETURN_COLUMNS))
        .with_columns(pl.col("state_id").cast(pl.Int32), pl.col("outcome_name") + "_mean")
        .pivot("outcome_name", index="state_id", values="mean_obs")
    )
    main = state_summary.filter(pl.col("outcome_name") == SCORECARD_OUTCOME).select(
        pl.col("state_id").cast(pl.Int32),
        pl.col("hit_rate_obs").alias("hit_rate"),
        (pl.col("n") / pl.col("n").sum()).alias("state_share"),
    )
    profile = means.join(main, on="state_id", how="full", coalesce=True)
    return profile.select("state_id", *[c for c in PROFILE_COLUMNS if c in profile.columns]).sort(
        "state_id"
    )


def _distances(profile_a: pl.DataFrame, profile_b: pl.DataFrame) -> tuple[list, list, np.ndarray]:
    """Euclidean distances between the standardised profiles of A's and B's states.

    Each feature present in both is z-scored over the pooled states of A and B (population
    std); constant features are dropped, a missing value sits at the pooled mean (z = 0).
    """
    cols = [c for c in PROFILE_COLUMNS if c in profile_a.columns and c in profile_b.columns]
    if not cols:
        raise ValueError(f"profiles share none of the columns {list(PROFILE_COLUMNS)}")
    a = profile_a.select(cols).cast(pl.Float64).to_numpy()
    b = profile_b.select(cols).cast(pl.Float64).to_numpy()
    pooled = np.vstack([a, b])
    mu = np.nanmean(pooled, axis=0)
    sd = np.nanstd(pooled, axis=0)
    keep = np.isfinite(sd) & (sd > 0)
    za = np.nan_to_num((a[:, keep] - mu[keep]) / sd[keep])
    zb = np.nan_to_num((b[:, keep] - mu[keep]) / sd[keep])
    dist = np.sqrt(((za[:, None, :] - zb[None, :, :]) ** 2).sum(axis=2))
    return profile_a["state_id"].to_list(), profile_b["state_id"].to_list(), dist


def match_states(profile_a: pl.DataFrame, profile_b: pl.DataFrame) -> pl.DataFrame:
    """Pair A's states with B's by minimum total profile distance (fix #28).

    Columns ``state_id_a, state_id_b, match_cost`` (the pair's distance); when the runs have
    different state counts, the unpaired states appear with a null partner and cost. Sorted by
    ``state_id_a`` (nulls last).
    """
    from scipy.optimize import linear_sum_assignment  # ~0.4 s: not at every `mf` run's load

    ids_a, ids_b, dist = _distances(profile_a, profile_b)
    rows, cols = linear_sum_assignment(dist)
    pairs = pl.DataFrame(
        {
            "state_id_a": [ids_a[i] for i in rows],
            "state_id_b": [ids_b[j] for j in cols],
            "match_cost": dist[rows, cols],
        },
        schema=_MATCH_SCHEMA,
    )
    lone_a = sorted(set(ids_a) - set(pairs["state_id_a"].to_list()))
    lone_b = sorted(set(ids_b) - set(pairs["state_id_b"].to_list()))
    lone = pl.DataFrame(
        {
            "state_id_a": lone_a + [None] * len(lone_b),
            "state_id_b": [None] * len(lone_a) + lone_b,
            "match_cost": [None] * (len(lone_a) + len(lone_b)),
        },
        schema=_MATCH_SCHEMA,
    )
    return pl.concat([pairs, lone]).sort("state_id_a", "state_id_b", nulls_last=True)


def id_alignment(profile_a: pl.DataFrame, profile_b: pl.DataFrame) -> pl.DataFrame:
    """The old pairing (same ``state_id`` in both runs), in :func:`match_states`' layout, with
    the profile distance of each id pair for comparison."""
    ids_a, ids_b, dist = _distances(profile_a, profile_b)
    pos_a = {s: i for i, s in enumerate(ids_a)}
    pos_b = {s: j for j, s in enumerate(ids_b)}
    ids = sorted(set(ids_a) | set(ids_b))
    cost = [float(dist[pos_a[s], pos_b[s]]) if s in pos_a and s in pos_b else None for s in ids]
    return pl.DataFrame(
        {
            "state_id_a": [s if s in pos_a else None for s in ids],
            "state_id_b": [s if s in pos_b else None for s in ids],
            "match_cost": cost,
        },
        schema=_MATCH_SCHEMA,
    )


def _matching_summary(matched: pl.DataFrame, aligned: pl.DataFrame) -> dict[str, Any]:
    pairs = matched.drop_nulls()
    return {
        "state_matching": MATCHED,
        "matching": pairs.select("state_id_a", "state_id_b", "match_cost").to_dicts(),
        "matched_pairs": pairs.height,
        "match_total_cost": float(pairs["match_cost"].sum()),
        "id_aligned_total_cost": float(aligned["match_cost"].drop_nulls().sum()),
        "matching_is_identity": bool((pairs["state_id_a"] == pairs["state_id_b"]).all()),
    }


def _paired(
    matching: pl.DataFrame, a: pl.DataFrame, b: pl.DataFrame, cols: list[str]
) -> pl.DataFrame:
    """The pairs of ``matching`` with ``<col>_a`` / ``<col>_b`` from the two state tables."""
    side = {
        s: t.select(
            pl.col("state_id").cast(pl.Int32).alias(f"state_id_{s}"),
            *[pl.col(c).alias(f"{c}_{s}") for c in cols],
        )
        for s, t in (("a", a), ("b", b))
    }
    return matching.join(side["a"], on="state_id_a", how="left").join(
        side["b"], on="state_id_b", how="left"
    )


def _with_alignment(
    matched: pl.DataFrame, aligned: pl.DataFrame, build: Any
) -> dict[str, pl.DataFrame]:
    return {
        "matched": build(matched).with_columns(pl.lit(MATCHED).alias("alignment")),
        "id_aligned": build(aligned).with_columns(pl.lit(ID_ALIGNED).alias("alignment")),
    }


def validation_compare(
    scorecard_a: dict[str, Any],
    scorecard_b: dict[str, Any],
    states_a: pl.DataFrame,
    states_b: pl.DataFrame,
    profile_a: pl.DataFrame,
    profile_b: pl.DataFrame,
) -> CompareResult:
    """Run-level metric table (research.md §6.8) plus per-state tables on matched pairs.

    ``scorecard_*``: the ``validation_scorecard.json`` payloads; ``states_*``: the state
    scorecards; ``profile_*``: :func:`outcome_profile` of each run's bootstrap summary.
    """
    def num(v: Any) -> float | None:
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    metric_rows = [
        {"metric": m, "run_a": num(scorecard_a.get(m)), "run_b": num(scorecard_b.get(m))}
        for m in VALIDATION_METRICS
    ]
    metrics = pl.DataFrame(
        metric_rows, schema={"metric": pl.Utf8, "run_a": pl.Float64, "run_b": pl.Float64}
    ).with_columns((pl.col("run_b") - pl.col("run_a")).alias("delta_b_minus_a"))
    cols = ["n_rows", "fwd_ret_10_mean", "hit_rate", "ci_width", "confidence_score",
            "edge_significant"]  # fmt: skip

    def build(matching: pl.DataFrame) -> pl.DataFrame:
        return _paired(matching, states_a, states_b, cols).with_columns(
            (pl.col(f"{c}_b") - pl.col(f"{c}_a")).alias(f"delta_{c}_b_minus_a")
            for c in ("fwd_ret_10_mean", "confidence_score")
        )

    matched, aligned = match_states(profile_a, profile_b), id_alignment(profile_a, profile_b)
    return CompareResult(
        {"metrics": metrics, **_with_alignment(matched, aligned, build)},
        {
            "generated_ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "run_a_validation_grade": scorecard_a.get("validation_grade"),
            "run_b_validation_grade": scorecard_b.get("validation_grade"),
            "run_a_input_type": scorecard_a.get("input_type"),
            "run_b_input_type": scorecard_b.get("input_type"),
            "metric_diffs": metrics.to_dicts(),
            **_matching_summary(matched, aligned),
        },
    )


def hardening_compare(
    table_a: pl.DataFrame,
    table_b: pl.DataFrame,
    profile_a: pl.DataFrame,
    profile_b: pl.DataFrame,
) -> CompareResult:
    """Class, score and direction of each state in two hardening runs (research.md §9.8), on
    matched pairs and, for reference, id-aligned. ``class_changed`` is true when the classes
    differ or a side is missing; sorted by ``class_changed`` desc then ``state_id_a``."""
    renames = {"class_label": "class", "tradability_score": "score",
               "allow_direction_hint": "direction", "reasons": "reasons"}  # fmt: skip

    def build(matching: pl.DataFrame) -> pl.DataFrame:
        paired = _paired(matching, table_a, table_b, list(renames))
        return (
            paired.rename(
                {f"{c}_{s}": f"{new}_{s}" for c, new in renames.items() for s in "ab"}
            )
            .with_columns(
                (pl.col("score_b") - pl.col("score_a")).alias("delta_score_b_minus_a"),
                (pl.col("class_a") != pl.col("class_b")).fill_null(True).alias("class_changed"),
            )
            .sort(["class_changed", "state_id_a", "state_id_b"],
                  descending=[True, False, False], nulls_last=True)
        )  # fmt: skip

    matched, aligned = match_states(profile_a, profile_b), id_alignment(profile_a, profile_b)
    tables = _with_alignment(matched, aligned, build)
    counts = {
        f"run_{s}_{c.lower()}_count": int((t["class_label"] == c).sum())
        for s, t in (("a", table_a), ("b", table_b))
        for c in ("ALLOW", "WATCH", "BLOCK")
    }
    return CompareResult(
        tables,
        {
            "generated_ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **counts,
            "class_changed_states": int(tables["matched"]["class_changed"].sum()),
            "class_changed_states_id_aligned": int(tables["id_aligned"]["class_changed"].sum()),
            **_matching_summary(matched, aligned),
        },
    )
