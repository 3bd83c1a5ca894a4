"""Walk-forward sensitivity grid aggregates (backtest_ops.md §5.8) and their Markdown report.

Each selected split of a walk-forward grid is one ordinary grid folder (``splits/<train_end>``).
This module stacks their metrics tables (with a ``train_end`` column) and answers "does the
same configuration stay good from split to split, and which source wins each split?".
Pure apart from :func:`write_wf_aggregates`, which reads the split folders and writes the files.

Differences from the old tool (§13), on purpose:
- winners (fault 14, 15): ``best_max_drawdown`` is the SMALLEST loss of a split/source (the
  drawdown closest to 0), and a split's winner source is the best value with nulls LAST and
  ties broken by source name; the old sort took the deepest drawdown and let null win.
- profit factor (fault 10): +inf (no losing trade) is a value, so it can be a split's best
  profit factor; means are over the finite values and ``profit_factor_inf_count`` counts the
  +inf rows beside them (a single +inf would make every mean +inf).
- every "best first" ordering sorts nulls last with the config key as a stable tie-break.
- ours: each split's Deflated Sharpe Ratio and Probability of Backtest Overfitting (from the
  split grid's ``grid_summary.json`` ``overfitting`` block) in the by-split table, the summary
  and the report.

Config consistency ranks with the old DENSE rank within (train_end, source): equal scores
share a rank, so the ranks never depend on row order.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.backtest.report import fmt, frame_table, key_values
from mf_pipeline.lib.grids.aggregates import cost_fragility
from mf_pipeline.lib.steps.backtest.run import finite_json
from mf_pipeline.lib.steps.research.artifacts import now

F64 = pl.Float64
CONFIG_KEY = ("source_type", "hold_bars", "signal_mode", "exit_mode", "fee_bps_per_side",
              "slippage_bps_per_side", "allow_overlap", "equity_mode", "include_watch",
              "policy_filter_mode", "state_subset_key")
"""A configuration across splits (§5.8); ``combo_id`` omits ``policy_filter_mode``."""
INPUT_SCHEMA: dict[str, Any] = {
    "train_end": pl.Utf8, "source_type": pl.Utf8, "combo_id": pl.Utf8, "combo_index": pl.Int64,
    "hold_bars": pl.Int64, "signal_mode": pl.Utf8, "exit_mode": pl.Utf8,
    "fee_bps_per_side": F64, "slippage_bps_per_side": F64, "allow_overlap": pl.Boolean,
    "equity_mode": pl.Utf8, "include_watch": pl.Boolean, "policy_filter_mode": pl.Utf8,
    "state_subset_key": pl.Utf8, "trade_count": F64, "win_rate": F64, "expectancy": F64,
    "profit_factor": F64, "ret_cv": F64, "ret_p10": F64, "ret_p90": F64, "downside_std": F64,
    "worst_trade_return": F64, "max_drawdown": F64, "robustness_score_v2": F64,
    "is_zero_trade_combo": pl.Boolean, "nan_warning_total": pl.Int64,
    "exec_eligibility_rate": F64, "exec_suppressed_signal_share": F64,
    "overlay_enabled": pl.Boolean, "overlay_mode": pl.Utf8, "overlay_coverage_mode": pl.Utf8,
    "overlay_coverage_status": pl.Utf8, "overlay_match_rate": F64, "overlay_unknown_rate": F64,
    "overlay_vetoed_signal_share": F64, "overlay_direction_conflict_share": F64,
    "execution_profile": pl.Utf8,
}  # fmt: skip
"""The stacked-table columns the aggregates read; a missing one counts as all null."""
WINNER_METRICS: dict[str, tuple[str, str]] = {
    "expectancy": ("best_expectancy", "max"), "profit_factor": ("best_profit_factor", "max"),
    "ret_cv": ("best_ret_cv", "min"), "max_drawdown": ("best_max_drawdown", "smallest_loss"),
    "robustness_v2": ("best_robustness_v2", "max"),
}  # fmt: skip
"""Winner-stability metric → (per split/source best column, how "best" is chosen)."""
_WINNER_SOURCE = {"expectancy": "expectancy", "profit_factor": "profit_factor",
                  "ret_cv": "ret_cv", "max_drawdown": "max_drawdown",
                  "robustness_v2": "robustness_score_v2"}  # fmt: skip
SLOPES = ("expectancy_slope_per_10bps", "profit_factor_slope_per_10bps",
          "ret_cv_slope_per_10bps", "trade_count_slope_per_10bps",
          "zero_trade_rate_delta_0_to_max_cost")  # fmt: skip
TAIL_COLUMNS = ("ret_p10", "ret_p90", "downside_std", "worst_trade_return")
OVERLAY_RATES = ("overlay_match_rate", "overlay_unknown_rate", "overlay_vetoed_signal_share",
                 "overlay_direction_conflict_share")  # fmt: skip
BY_SPLIT_SCHEMA: dict[str, Any] = {
    "train_end": pl.Utf8, "status": pl.Utf8, "grid_run_dir": pl.Utf8,
    "successful_combos": pl.Int64, "failed_combos": pl.Int64, "comparability_label": pl.Utf8,
    "zero_trade_combo_share": F64, "robustness_score_v2_mean": F64,
    "exec_eligibility_rate_mean": F64, "exec_suppressed_signal_share_mean": F64,
    "error": pl.Utf8, "best_source_type": pl.Utf8, "best_combo_id": pl.Utf8, "dsr": F64,
    "pbo": F64, "fluke_risk": pl.Utf8,
}  # fmt: skip
"""§5.8 by-split columns, then ours (the split grid's winner and its DSR/PBO)."""
OVERFIT_SCHEMA: dict[str, Any] = {"train_end": pl.Utf8, "source_type": pl.Utf8, "dsr": F64,
                                  "pbo": F64, "fluke_risk": pl.Utf8, "best_combo_id": pl.Utf8}
SUCCESS = "SUCCESS"
_INF = math.inf


# ---------------------------------------------------------------------------- stacking


def stack_split_tables(split_tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The splits' metrics tables under one another, ``train_end`` first, splits in date order.

    Diagonal: a column missing in one split is null there, and dtypes are widened (a column
    that is all null in one split, e.g. ``policy_filter_mode``, joins its typed twin)."""
    frames = [table.with_columns(pl.lit(train_end, pl.Utf8).alias("train_end"))
              .select("train_end", pl.exclude("train_end"))
              for train_end, table in sorted(split_tables.items())]  # fmt: skip
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _conform(stacked: pl.DataFrame) -> pl.DataFrame:
    """``stacked`` with every :data:`INPUT_SCHEMA` column present and typed; NaN and ±inf of
    the metrics become null except a +inf ``profit_factor`` (a value, fault 10)."""
    if stacked.width == 0:
        return pl.DataFrame(schema=INPUT_SCHEMA)
    out = stacked.with_columns(
        (pl.col(c).cast(t, strict=False) if c in stacked.columns else pl.lit(None, t)).alias(c)
        for c, t in INPUT_SCHEMA.items())  # fmt: skip
    kept = {c: pl.col(c).is_finite() for c, t in INPUT_SCHEMA.items() if t == F64}
    kept["profit_factor"] = kept["profit_factor"] | (pl.col("profit_factor") == _INF)
    return out.with_columns(pl.when(ok).then(pl.col(c)).alias(c) for c, ok in kept.items())


def _mean(column: str) -> pl.Expr:
    """Mean over the finite values (a +inf profit factor is counted apart, not averaged)."""
    x = pl.col(column)
    return x.filter(x.is_finite()).mean().alias(f"{column}_mean")


def _median(column: str) -> pl.Expr:
    x = pl.col(column)
    return x.filter(x.is_finite()).median().alias(f"{column}_median")


def _zero_trade() -> pl.Expr:
    """Zero-trade flag, null counted as zero-trade (as in the grid's v2 penalty)."""
    return pl.col("is_zero_trade_combo").fill_null(True)


def _pf_inf_count() -> pl.Expr:
    return (pl.col("profit_factor") == _INF).fill_null(False).sum().cast(pl.Int64) \
        .alias("profit_factor_inf_count")  # fmt: skip


def _best_first(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """Sorted by source asc, ``column`` desc (nulls last), then the rest of the config key."""
    keys = list(CONFIG_KEY[1:])
    return frame.sort(["source_type", column, *keys],
                      descending=[False, True] + [False] * len(keys), nulls_last=True)


# ---------------------------------------------------------------------------- aggregates


def config_aggregate(stacked: pl.DataFrame) -> pl.DataFrame:
    """``wf_grid_config_aggregate``: per config key, its rows over all splits (§5.8) plus
    ``profit_factor_inf_count``; sorted by source, robustness_v2_mean desc (nulls last)."""
    table = _conform(stacked)
    out = table.group_by(CONFIG_KEY).agg(
        pl.len().cast(pl.Int64).alias("obs_count"),
        _mean("expectancy"), _median("expectancy"), _mean("profit_factor"), _pf_inf_count(),
        _median("ret_cv"), _mean("downside_std"),
        _mean("robustness_score_v2").alias("robustness_v2_mean"), _mean("win_rate"),
        _mean("trade_count"), _zero_trade().mean().alias("zero_trade_combo_share"),
        _mean("exec_eligibility_rate"), _mean("exec_suppressed_signal_share"),
        pl.col("train_end").n_unique().cast(pl.Int64).alias("split_count"),
    )
    return _best_first(out, "robustness_v2_mean")


def _source_metrics(table: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """The per-source means shared by the source and source/hold summaries."""
    return table.group_by(by).agg(
        pl.len().cast(pl.Int64).alias("obs_count"),
        pl.col("train_end").n_unique().cast(pl.Int64).alias("splits_covered"),
        _mean("expectancy"), _median("expectancy"), _mean("profit_factor"), _pf_inf_count(),
        _median("ret_cv"), _mean("downside_std"),
        _mean("robustness_score_v2").alias("robustness_v2_mean"),
        _zero_trade().mean().alias("zero_trade_combo_share"),
        pl.col("nan_warning_total").sum().cast(pl.Int64).alias("nan_warning_total_sum"),
        _mean("exec_eligibility_rate"), _mean("exec_suppressed_signal_share"),
    ).sort(by, nulls_last=True)


def winner_counts(winners: pl.DataFrame) -> pl.DataFrame:
    """Per source, ``winner_count_by_metric_<metric>`` for every winner metric (0 if none)."""
    return winners.filter(pl.col("winner_source_type").is_not_null()).group_by(
        pl.col("winner_source_type").alias("source_type")).agg(
        (pl.col("metric") == m).sum().cast(pl.Int64).alias(f"winner_count_by_metric_{m}")
        for m in WINNER_METRICS)  # fmt: skip


def source_summary(stacked: pl.DataFrame, winners: pl.DataFrame, splits_total: int,
                   ) -> pl.DataFrame:  # fmt: skip
    """``wf_grid_source_summary``: per source over all its split rows (§5.8), the winner counts
    of :func:`winner_stability` and ``coverage_ratio`` = splits_covered / ``splits_total``
    (the selected splits, null when there are none)."""
    base = _source_metrics(_conform(stacked), ["source_type"])
    counts = [f"winner_count_by_metric_{m}" for m in WINNER_METRICS]
    out = base.join(winner_counts(winners), on="source_type", how="left") \
        .with_columns(pl.col(counts).fill_null(0))  # fmt: skip
    ratio = pl.col("splits_covered") / splits_total if splits_total > 0 else pl.lit(None, F64)
    return out.with_columns(ratio.alias("coverage_ratio"))


def source_dimension_summary(stacked: pl.DataFrame) -> pl.DataFrame:
    """``wf_grid_source_dimension_summary``: per (source, hold_bars), ``dimension`` =
    ``hold_bars``."""
    by = ["source_type", "hold_bars"]
    return _source_metrics(_conform(stacked), by).select(
        *by, "obs_count", "expectancy_mean", "profit_factor_mean", "profit_factor_inf_count",
        "ret_cv_median", "robustness_v2_mean", "zero_trade_combo_share",
        "exec_eligibility_rate_mean", "exec_suppressed_signal_share_mean",
    ).with_columns(pl.lit("hold_bars").alias("dimension"))


def split_ranks(stacked: pl.DataFrame) -> pl.DataFrame:
    """Each row with ``rank_in_split`` (dense rank of robustness_score_v2, 1 = best, within
    its train_end and source; null score → null rank) and ``is_top_quartile`` (rank ≤
    ceil(0.25 · rows of that split/source))."""
    table = _conform(stacked)
    window = ("train_end", "source_type")
    rank = pl.col("robustness_score_v2").rank("dense", descending=True).over(window)
    cut = (pl.len().over(window) * 0.25).ceil()
    return table.with_columns(rank.cast(pl.Int64).alias("rank_in_split")).with_columns(
        (pl.col("rank_in_split") <= cut).fill_null(False).alias("is_top_quartile"))


def config_consistency(stacked: pl.DataFrame) -> pl.DataFrame:
    """``wf_grid_config_consistency``: per config key, how it ranked from split to split
    (``median_rank``, ``rank_std`` ddof 1, ``top_quartile_hits``); sorted by source,
    robustness_v2_mean desc (nulls last)."""
    out = split_ranks(stacked).group_by(CONFIG_KEY).agg(
        pl.col("train_end").n_unique().cast(pl.Int64).alias("split_count"),
        pl.col("is_top_quartile").sum().cast(pl.Int64).alias("top_quartile_hits"),
        pl.col("rank_in_split").median().alias("median_rank"),
        pl.col("rank_in_split").cast(F64).std(ddof=1).alias("rank_std"),
        _zero_trade().sum().cast(pl.Int64).alias("zero_trade_splits"),
        _mean("expectancy"), _mean("robustness_score_v2").alias("robustness_v2_mean"),
    )
    return _best_first(out, "robustness_v2_mean")


def _best(column: str, how: str) -> pl.Expr:
    x = pl.col(column)
    if how == "max":
        return x.max()
    if how == "min":
        return x.min()
    return x.drop_nulls().sort_by(x.drop_nulls().abs()).first()  # smallest loss (fault 14)


def split_bests(stacked: pl.DataFrame) -> pl.DataFrame:
    """Per (train_end, source) the best value of each winner metric (§5.8 names);
    ``best_max_drawdown`` = the drawdown closest to 0 (smallest loss, fault 14)."""
    table = _conform(stacked)
    return table.group_by("train_end", "source_type").agg(
        _best(_WINNER_SOURCE[m], how).alias(best) for m, (best, how) in WINNER_METRICS.items()
    ).sort("train_end", "source_type")


def winner_stability(stacked: pl.DataFrame) -> pl.DataFrame:
    """``wf_grid_winner_stability``: per train_end and metric, the source with the best
    :func:`split_bests` value (higher wins, lower for ret_cv, smallest |loss| for drawdown),
    nulls last, ties by source name; a split where no source has the metric gets a null
    winner. Rows: train_end, metric, winner_source_type, winner_value."""
    bests = split_bests(stacked)
    parts = []
    for metric, (best, how) in WINNER_METRICS.items():
        value = pl.col(best)
        order = value.abs() if how == "smallest_loss" else value
        ranked = bests.with_columns(order.alias("_order")).sort(
            "train_end", "_order", "source_type", descending=[False, how == "max", False],
            nulls_last=True)  # fmt: skip
        parts.append(ranked.group_by("train_end", maintain_order=True).agg(
            pl.lit(metric).alias("metric"),
            pl.when(value.first().is_not_null()).then(pl.col("source_type").first())
            .alias("winner_source_type"),
            value.first().cast(F64).alias("winner_value")))  # fmt: skip
    schema = {"train_end": pl.Utf8, "metric": pl.Utf8, "winner_source_type": pl.Utf8,
              "winner_value": F64}  # fmt: skip
    order = {m: i for i, m in enumerate(WINNER_METRICS)}
    out = pl.concat([p.cast(schema) for p in parts])
    return out.sort("train_end", pl.col("metric").replace_strict(order, return_dtype=pl.Int64))


def cost_fragility_summary(stacked: pl.DataFrame) -> pl.DataFrame:
    """``wf_grid_cost_fragility_summary``: the §5.5 cost fragility of the stacked table (a
    family pools its splits), then per source ``family_count`` and the means ``<slope>_mean``
    of the four slopes per 10 bps and of ``zero_trade_rate_delta_0_to_max_cost``."""
    schema = {"source_type": pl.Utf8, "family_count": pl.Int64,
              **{f"{c}_mean": F64 for c in SLOPES}}  # fmt: skip
    table = _conform(stacked)
    if table.is_empty():
        return pl.DataFrame(schema=schema)
    families = cost_fragility(table)
    return families.group_by("source_type").agg(
        pl.len().cast(pl.Int64).alias("family_count"),
        *(pl.col(c).cast(F64).filter(pl.col(c).cast(F64).is_finite()).mean().alias(f"{c}_mean")
          for c in SLOPES),
    ).sort("source_type").cast(schema)


def tail_risk_summary(stacked: pl.DataFrame) -> pl.DataFrame:
    """``wf_grid_tail_risk_summary``: per source, ``obs_count`` and the means of ret_p10,
    ret_p90, downside_std and worst_trade_return."""
    return _conform(stacked).group_by("source_type").agg(
        pl.len().cast(pl.Int64).alias("obs_count"), *(_mean(c) for c in TAIL_COLUMNS),
    ).sort("source_type")


def _first_non_null(column: str) -> pl.Expr:
    return pl.col(column).drop_nulls().first().alias(column)


def overlay_split_summary(stacked: pl.DataFrame) -> pl.DataFrame:
    """``wf_overlay_split_summary``: per (train_end, source), ``overlay_enabled_share``, the
    first non-null overlay mode / coverage mode / coverage status and ``<rate>_mean``."""
    return _conform(stacked).group_by("train_end", "source_type").agg(
        pl.col("overlay_enabled").fill_null(False).mean().alias("overlay_enabled_share"),
        _first_non_null("overlay_mode"), _first_non_null("overlay_coverage_mode"),
        _first_non_null("overlay_coverage_status"), *(_mean(c) for c in OVERLAY_RATES),
    ).sort("train_end", "source_type")


def overlay_source_summary(overlay_split: pl.DataFrame) -> pl.DataFrame:
    """``wf_overlay_source_summary``: per source, ``split_rows`` and the plain means of the
    split means of :func:`overlay_split_summary` (each split weighs the same)."""
    rates = [f"{c}_mean" for c in ("overlay_enabled_share", *OVERLAY_RATES)]
    renamed = overlay_split.rename({"overlay_enabled_share": "overlay_enabled_share_mean"})
    return renamed.group_by("source_type").agg(
        pl.len().cast(pl.Int64).alias("split_rows"),
        *(pl.col(c).filter(pl.col(c).is_finite()).mean() for c in rates),
    ).sort("source_type")


def overlay_effectiveness_summary(stacked: pl.DataFrame) -> pl.DataFrame:
    """``wf_overlay_effectiveness_summary``: per source, the edge next to the overlay's veto
    share, to see whether vetoing signals paid."""
    return _conform(stacked).group_by("source_type").agg(
        _mean("expectancy"), _mean("profit_factor"), _median("ret_cv"),
        _mean("robustness_score_v2").alias("robustness_v2_mean"),
        _mean("exec_eligibility_rate"), _mean("exec_suppressed_signal_share"),
        _mean("overlay_vetoed_signal_share"),
    ).sort("source_type")


# ---------------------------------------------------------------------------- overfitting


def overfitting_by_split(split_summaries: Mapping[str, Mapping[str, Any]]) -> pl.DataFrame:
    """One row per (train_end, source_type) of each split grid summary's ``overfitting``
    block: dsr, pbo, fluke_risk, best_combo_id (splits in date order, sources by name)."""
    rows = [{"train_end": train_end, "source_type": source,
             **{k: (block or {}).get(k) for k in ("dsr", "pbo", "fluke_risk", "best_combo_id")}}
            for train_end, summary in sorted(split_summaries.items())
            for source, block in sorted((summary.get("overfitting") or {}).items())]  # fmt: skip
    return pl.DataFrame(rows, schema=OVERFIT_SCHEMA)


def overfitting_medians(overfit: pl.DataFrame) -> dict[str, Any]:
    """``dsr_median`` and ``pbo_median`` over every (split, source) row with a value (no
    selection of the best source, which would be one more trial), and the same per source."""
    def medians(frame: pl.DataFrame) -> dict[str, float | None]:
        return {f"{c}_median": frame[c].drop_nulls().median() for c in ("dsr", "pbo")}

    by_source = {s: medians(overfit.filter(pl.col("source_type") == s))
                 for s in sorted(overfit["source_type"].unique().to_list())}  # fmt: skip
    return {**medians(overfit), "overfitting_medians_by_source": by_source}


# ---------------------------------------------------------------------------- split schedule


def _iso(value: str | dt.date, name: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise ValueError(f"{name}: {value!r} is not an ISO date (YYYY-MM-DD)") from exc


def _on(year: int, like: dt.date) -> dt.date:
    """``like``'s month/day in ``year``; 29 February becomes the 28th in a common year."""
    day = like.day
    while True:
        try:
            return dt.date(year, like.month, day)
        except ValueError:
            day -= 1


def select_train_ends(train_ends: str | None, train_start: str | dt.date | None,
                      train_end_final: str | dt.date | None, step_years: int | None,
                      ) -> list[str] | None:  # fmt: skip
    """The walk-forward splits to run (§5.8), as sorted unique ISO strings; None = all splits.

    ``train_ends``: a comma list of ISO dates. Schedule mode (all three options together):
    the start's month/day in start year, start year + step, … while the year is before the
    final year; then the start's month/day in the final year when stepping lands on it
    exactly, else (the step overshoots) the final date itself. Example: 2014-12-31 →
    2019-06-30 by 2 years gives 2014-12-31, 2016-12-31, 2018-12-31, 2019-06-30.
    """
    schedule = {"train_start": train_start, "train_end_final": train_end_final,
                "step_years": step_years}  # fmt: skip
    given = [k for k, v in schedule.items() if v not in (None, "")]
    if train_ends not in (None, "") and given:
        raise ValueError(f"give either train_ends or the schedule ({', '.join(schedule)}), "
                         f"not both (got train_ends and {', '.join(given)})")
    if train_ends not in (None, ""):
        items = [s.strip() for s in str(train_ends).split(",") if s.strip()]
        if not items:
            raise ValueError("train_ends: no date in the list")
        return sorted({_iso(s, "train_ends").isoformat() for s in items})
    if not given:
        return None
    if len(given) < len(schedule):
        missing = [k for k in schedule if k not in given]
        raise ValueError(f"the split schedule needs {', '.join(schedule)} together; "
                         f"missing {', '.join(missing)}")
    start = _iso(train_start, "train_start")  # type: ignore[arg-type]
    final = _iso(train_end_final, "train_end_final")  # type: ignore[arg-type]
    step = int(step_years)  # type: ignore[arg-type]
    if step < 1:
        raise ValueError(f"step_years must be >= 1, got {step_years}")
    if start > final:
        raise ValueError(f"train_start {start} is after train_end_final {final}")
    out, year = [], start.year
    while year < final.year:
        out.append(_on(year, start))
        year += step
    out.append(_on(year, start) if year == final.year else final)
    return sorted({d.isoformat() for d in out})


# ---------------------------------------------------------------------------- by split


def split_winner(table: pl.DataFrame) -> tuple[str | None, str | None]:
    """(source_type, combo_id) of a split grid's best robustness_score_v2 row: nulls last,
    ties by source name then combo_index."""
    ranked = _conform(table).filter(pl.col("robustness_score_v2").is_not_null())
    if ranked.is_empty():
        return None, None
    best = ranked.sort(["robustness_score_v2", "source_type", "combo_index", "combo_id"],
                       descending=[True, False, False, False], nulls_last=True).row(0, named=True)
    return best["source_type"], best["combo_id"]


def _comparability(summary: Mapping[str, Any]) -> Any:
    value = summary.get("comparability")
    return value.get("label") if isinstance(value, Mapping) else value


def by_split_frame(by_split: Sequence[Mapping[str, Any]], tables: Mapping[str, pl.DataFrame],
                   summaries: Mapping[str, Mapping[str, Any]]) -> pl.DataFrame:  # fmt: skip
    """``wf_grid_by_split``: the runner's rows (train_end, status, grid_run_dir, error, …)
    with the combo counts and comparability of each split grid summary in ``summaries`` (a
    failed split's grid too), and for each split in ``tables`` the §5.8 means of its metrics
    table and ours: best_source_type (the split's best robustness_score_v2 row), its
    ``best_combo_id``, ``dsr``, ``pbo`` and ``fluke_risk`` from the grid summary's
    ``overfitting`` block of that source. Sorted by train_end."""
    rows = []
    for given in by_split:
        row: dict[str, Any] = dict.fromkeys(BY_SPLIT_SCHEMA) | dict(given)
        train_end = str(row["train_end"])
        row["train_end"] = train_end
        summary = summaries.get(train_end)
        if summary is not None:
            row |= {"successful_combos": summary.get("successful_combos"),
                    "failed_combos": summary.get("failed_combos"),
                    "comparability_label": _comparability(summary)}  # fmt: skip
        if train_end in tables:
            table = _conform(tables[train_end])
            means = table.select(
                _zero_trade().cast(F64).mean().alias("zero_trade_combo_share"),
                _mean("robustness_score_v2"), _mean("exec_eligibility_rate"),
                _mean("exec_suppressed_signal_share")).row(0, named=True)  # fmt: skip
            source, _ = split_winner(table)
            overfit = ((summary or {}).get("overfitting") or {}).get(source) or {}
            row |= means | {"best_source_type": source, **{
                k: overfit.get(k) for k in ("best_combo_id", "dsr", "pbo", "fluke_risk")}}
        rows.append(row)
    if not rows:
        return pl.DataFrame(schema=BY_SPLIT_SCHEMA)
    frame = pl.DataFrame(rows, schema_overrides=BY_SPLIT_SCHEMA, strict=False)
    extra = [c for c in frame.columns if c not in BY_SPLIT_SCHEMA]
    return frame.select(*BY_SPLIT_SCHEMA, *extra).sort("train_end")


# ---------------------------------------------------------------------------- report

READING = (
    "How to read DSR and PBO: a grid tries many configurations, so its best one looks good "
    "partly by luck. The Deflated Sharpe Ratio (DSR) is the probability that the best "
    "configuration's true per-period Sharpe ratio exceeds the highest one that many "
    "skill-less trials would be expected to show: 0.95 or more is evidence of skill, below "
    "0.5 the winner is more likely than not a lucky draw. The Probability of Backtest "
    "Overfitting (PBO) is the share of in-sample/out-of-sample splits of the periods in "
    "which the in-sample winner ranks below the median out of sample: near 0 the selection "
    "carries over, 0.5 or more means picking the best in-sample configuration is no better "
    "than picking one at random. fluke_risk combines them (HIGH if PBO >= 0.5 or DSR < 0.5, "
    "LOW if DSR >= 0.95 and PBO < 0.2).")
_SUMMARY_KEYS = ("wf_grid_id", "wf_run_dir", "sources", "selected_train_ends", "splits_total",
                 "splits_successful", "splits_failed", "min_successful_splits", "tag",
                 "policy_filter_mode", "overlay_mode", "execution_profile", "dsr_median",
                 "pbo_median", "started_ts", "finished_ts")  # fmt: skip
_CONSISTENCY_COLUMNS = ("source_type", "hold_bars", "signal_mode", "exit_mode",
                        "fee_bps_per_side", "slippage_bps_per_side", "policy_filter_mode",
                        "state_subset_key", "split_count", "top_quartile_hits", "median_rank",
                        "rank_std", "zero_trade_splits", "expectancy_mean",
                        "robustness_v2_mean")  # fmt: skip


def most_consistent(consistency: pl.DataFrame) -> pl.DataFrame:
    """Configs ordered by top-quartile hits (desc), then median rank, then robustness_v2_mean
    (desc), nulls last, then the config key: the report's "most consistent" list."""
    keys = [c for c in CONFIG_KEY if c in consistency.columns]
    return consistency.sort(["top_quartile_hits", "median_rank", "robustness_v2_mean", *keys],
                            descending=[True, False, True] + [False] * len(keys),
                            nulls_last=True)  # fmt: skip


def wf_report_md(summary: Mapping[str, Any], tables: Mapping[str, pl.DataFrame]) -> str:
    """``wf_grid_report.md`` from the summary and the frames written by
    :func:`write_wf_aggregates` (keys = file stems without ``wf_grid_``)."""
    by_split, overfit = tables["by_split"], tables["overfitting_by_split"]
    lines = [f"# Walk-forward sensitivity grid `{summary.get('wf_grid_id')}`", "",
             *key_values(summary, _SUMMARY_KEYS), "", READING, "",
             "## Splits", "",
             *frame_table(by_split, ("train_end", "status", "successful_combos",
                                     "failed_combos", "comparability_label",
                                     "robustness_score_v2_mean", "zero_trade_combo_share",
                                     "best_source_type", "best_combo_id", "dsr", "pbo",
                                     "fluke_risk", "error")), "",
             "## Overfitting per split and source", "",
             *frame_table(overfit, tuple(OVERFIT_SCHEMA)), "",
             "## Config consistency (top 10)", "",
             "Rank 1 = best robustness_score_v2 of its split and source (dense ranks); "
             "a top-quartile hit = rank <= ceil(0.25 x configs of that split and source). "
             "Ordered by hits, then median rank.", "",
             *frame_table(most_consistent(tables["config_consistency"]), _CONSISTENCY_COLUMNS,
                          limit=10), "",
             "## Winner stability", "",
             "Per split, the source with the best value of each metric (max_drawdown: the "
             "smallest loss; null values never win; ties go to the first source by name).", "",
             *frame_table(tables["winner_stability"],
                          ("train_end", "metric", "winner_source_type", "winner_value")), "",
             "## Source summary", "",
             *frame_table(tables["source_summary"], tables["source_summary"].columns), "",
             "## Cost fragility (per source, mean slope per 10 bps of round-trip cost)", "",
             *frame_table(tables["cost_fragility_summary"],
                          tables["cost_fragility_summary"].columns), "",
             "## Tail risk", "",
             *frame_table(tables["tail_risk_summary"], tables["tail_risk_summary"].columns), ""]
    overlay = tables["overlay_source_summary"]
    if "overlay_enabled_share_mean" in overlay.columns and \
            (overlay["overlay_enabled_share_mean"].fill_null(0.0) > 0).any():  # fmt: skip
        lines += ["## Overlay", "", *frame_table(overlay, overlay.columns), ""]
    lines += ["## Notes", "",
              "- Means skip non-finite values; `profit_factor_inf_count` counts rows with no "
              "losing trade (+inf profit factor), left out of `profit_factor_mean`.",
              "- Cost fragility families pool the splits (§5.5 over the stacked table).",
              f"- Failures: {fmt(summary.get('failure_count'))} (see wf_grid_failures.json).",
              ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- files

_CSV_ONLY = ("source_dimension_summary", "config_consistency", "winner_stability",
             "cost_fragility_summary", "tail_risk_summary")
_OVERLAY = ("overlay_split_summary", "overlay_source_summary", "overlay_effectiveness_summary")


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


def _failures(by_split: pl.DataFrame, combo_failures: Mapping[str, list[dict[str, Any]]],
              ) -> list[dict[str, Any]]:  # fmt: skip
    """Failed splits, then every failed combo of the successful splits, with its train_end."""
    out = [{"train_end": r["train_end"], "level": "split", "status": r["status"],
            "error_message": r["error"]}
           for r in by_split.filter(pl.col("status") != SUCCESS).iter_rows(named=True)]
    for train_end, failures in sorted(combo_failures.items()):
        out += [{"train_end": train_end, "level": "combo", "status": "FAILED",
                 **{k: f.get(k) for k in ("source_type", "combo_id", "combo_index",
                                          "error_message")}}
                for f in failures]  # fmt: skip
    return out


def _run_defaults(stacked: pl.DataFrame) -> dict[str, Any]:
    """Run-level keys read off the data, for when the caller does not pass them."""
    table = _conform(stacked)

    def first(column: str) -> Any:
        values = table[column].drop_nulls()
        return values[0] if values.len() else None

    return {"overlay_enabled": bool(table["overlay_enabled"].fill_null(False).any()),
            "overlay_mode": first("overlay_mode"),
            "overlay_coverage_mode": first("overlay_coverage_mode"),
            "execution_profile": first("execution_profile"),
            "sources": sorted(table["source_type"].drop_nulls().unique().to_list())}


def write_wf_aggregates(folder: Path, by_split: list[dict[str, Any]],
                        split_dirs: Mapping[str, Path], summary_extra: Mapping[str, Any],
                        ) -> dict[str, Any]:  # fmt: skip
    """Every §5.8 file of a walk-forward grid folder, from the split grids' folders.

    ``by_split``: the runner's row per selected split (train_end, status SUCCESS | FAILED |
    FAILED_UPSTREAM, grid_run_dir, error); ``split_dirs``: train_end → grid folder of the
    successful splits, whose ``grid_metrics_table.parquet`` are stacked. The
    ``grid_summary.json`` and ``grid_failures.json`` of those folders, and of a failed split's
    ``grid_run_dir`` when its grid got written, fill the counts and the failures list.
    ``summary_extra``: run-level summary keys (wf_grid_id,
    wf_run_dir, sources, selected_train_ends, tag, min_successful_splits, options, overlay and
    execution settings, started_ts). Returns ``wf_grid_summary.json``'s content; raising on
    too few successful splits is the caller's job (after this wrote everything).
    """
    ok = {str(r["train_end"]) for r in by_split if r.get("status") == SUCCESS}
    grids = {str(r["train_end"]): Path(r["grid_run_dir"]) for r in by_split
             if r.get("status") != SUCCESS and r.get("grid_run_dir")}  # fmt: skip
    grids |= {str(t): Path(d) for t, d in split_dirs.items() if str(t) in ok}
    summaries = {t: s for t, d in grids.items()
                 if (s := _read_json(d / "grid_summary.json", None)) is not None}
    missing = sorted(ok & set(grids) - set(summaries))
    if missing:
        raise FileNotFoundError(f"successful split(s) {missing} have no grid_summary.json in "
                                f"{[str(grids[t]) for t in missing]}")
    combo_failures = {t: _read_json(grids[t] / "grid_failures.json", []) for t in summaries}
    tables = {t: pl.read_parquet(grids[t] / "grid_metrics_table.parquet")
              for t in sorted(summaries) if t in ok}  # fmt: skip
    stacked = stack_split_tables(tables)
    split_frame = by_split_frame(by_split, tables, summaries)
    winners = winner_stability(stacked)
    overlay_split = overlay_split_summary(stacked)
    overfit = overfitting_by_split({t: summaries[t] for t in tables})
    frames = {
        "by_split": split_frame, "config_aggregate": config_aggregate(stacked),
        "source_summary": source_summary(stacked, winners, split_frame.height),
        "source_dimension_summary": source_dimension_summary(stacked),
        "config_consistency": config_consistency(stacked), "winner_stability": winners,
        "cost_fragility_summary": cost_fragility_summary(stacked),
        "tail_risk_summary": tail_risk_summary(stacked),
        "overlay_split_summary": overlay_split,
        "overlay_source_summary": overlay_source_summary(overlay_split),
        "overlay_effectiveness_summary": overlay_effectiveness_summary(stacked),
    }
    outputs: dict[str, str] = {}
    for name, frame in frames.items():
        stem = f"wf_{name}" if name in _OVERLAY else f"wf_grid_{name}"
        outputs[f"{stem}_csv"] = str(lake.write_csv(frame, folder / f"{stem}.csv"))
        if name not in _CSV_ONLY and name not in _OVERLAY:
            outputs[f"{stem}_parquet"] = str(lake.write_parquet(frame, folder / f"{stem}.parquet"))
    failures = _failures(split_frame, combo_failures)
    split_rows = split_frame.to_dicts()
    summary: dict[str, Any] = {
        "overlay_coverage_bypass": None, "overlay_coverage_thresholds": None,
        "policy_filter_mode": None, "exec_overrides": {}, "wf_grid_id": folder.name,
        "wf_run_dir": None, "tag": None, "min_successful_splits": 1,
        "selected_train_ends": sorted(r["train_end"] for r in split_rows),
        **_run_defaults(stacked), **summary_extra,
        "splits_total": split_frame.height, "splits_successful": len(ok),
        "splits_failed": split_frame.height - len(ok),
        "overfitting_by_split": overfit.select("train_end", "source_type", "dsr", "pbo",
                                               "fluke_risk").to_dicts(),
        **overfitting_medians(overfit), "failure_count": len(failures),
        "finished_ts": now(), "output_dir": str(folder),
    }
    for name, payload in (("wf_grid_failures", failures),
                          ("wf_grid_manifest", {"wf_grid_id": summary["wf_grid_id"],
                                                "source_wf_run_dir": summary["wf_run_dir"],
                                                "splits": split_rows})):
        outputs[name] = str(lake.write_json(finite_json(payload), folder / f"{name}.json"))
    frames["overfitting_by_split"] = overfit
    outputs["wf_grid_report_md"] = str(folder / "wf_grid_report.md")
    outputs["wf_grid_summary"] = str(folder / "wf_grid_summary.json")
    summary["outputs"] = outputs
    summary = finite_json(summary)
    lake.write_text(wf_report_md(summary, frames), folder / "wf_grid_report.md")
    lake.write_json(summary, folder / "wf_grid_summary.json")
    return summary
