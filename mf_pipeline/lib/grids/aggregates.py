"""Aggregates of a sensitivity grid (backtest_ops.md §5.5): best configs, dimension
sensitivity, cost fragility, hold-bars profile and shape, source summary, comparability and the
cluster-only mixes, computed from the metrics table (SUCCESS rows with the §5.4 scores) and the
manifest (every row, for status counts and failure rates).

Differences from the old tool, on purpose:

- best configs are ordered by :func:`lib.backtest.metrics.sort_best_first`: nulls last (fault
  15: a zero-trade combo with a null metric is never "best"), a +inf profit factor first (fault
  10), ties by ``combo_index`` then ``combo_id`` (fault 13); each row also carries
  ``profit_factor_inf`` because the JSON writes the +inf as null.
- a +inf profit factor is a value: the means of groups holding one are +inf (kept in the
  written files as ``inf``); every other non-finite value is treated as missing.
- dimension values sort numerically when they are numbers (hold 5 before 10), else as text.
- failure stats join on null dimension values too (``policy_filter_mode`` is null for
  non-cluster sources; the old join dropped those).

All functions are pure polars over at most a few thousand rows; the only Python loops run over
sources and metrics, never over rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.backtest.metrics import STATE_KEYS, sort_best_first
from mf_pipeline.lib.steps.backtest.run import finite_json

SOURCE = "source_type"
BEST_METRICS = ("expectancy", "profit_factor", "robustness_score_v2")
PARAMETERS = ("hold_bars", "signal_mode", "exit_mode", "fee_bps_per_side",
              "slippage_bps_per_side", "allow_overlap", "equity_mode", "include_watch")
BEST_FIELDS = ("combo_id", "combo_index", SOURCE, *PARAMETERS, "policy_filter_mode",
               "overlay_mode", "overlay_match_rate", "overlay_vetoed_signal_share",
               "state_subset_key", "trade_count", "expectancy", "profit_factor",
               "profit_factor_inf", "ret_cv", "downside_std", "max_drawdown",
               "robustness_score_v1", "robustness_score_v2")
"""Fields of a best-config row (§5.5, plus ``profit_factor_inf``: JSON loses the +inf)."""
DIMENSIONS = ("hold_bars", "signal_mode", "exit_mode", "fee_bps_per_side",
              "slippage_bps_per_side", "allow_overlap", "equity_mode", "include_watch",
              "policy_filter_mode", "state_subset_key", "overlay_mode", "overlay_enabled",
              "execution_profile", "execution_filters_enabled")
FAMILY_KEYS = (SOURCE, "hold_bars", "signal_mode", "exit_mode", "allow_overlap", "equity_mode",
               "include_watch", "policy_filter_mode", "state_subset_key", "overlay_mode",
               "overlay_enabled", "execution_profile", "execution_filters_enabled")
"""A cost-fragility family: every dimension except the two costs."""
SLOPE_METRICS = ("expectancy", "profit_factor", "ret_cv", "trade_count")
SHAPE_METRIC = "expectancy_mean"
ALIGNED, NEAR_ALIGNED, DIFFERENT_UNIVERSE = "ALIGNED", "NEAR_ALIGNED", "DIFFERENT_UNIVERSE"
ALIGNED_MAX_REL, NEAR_ALIGNED_MAX_REL = 0.0001, 0.05
_PF_COLUMNS = frozenset({"profit_factor", "profit_factor_mean"})
_INF = float("inf")

FILES = {
    "grid_best_configs": "grid_best_configs.json",
    "grid_dimension_sensitivity_parquet": "grid_dimension_sensitivity.parquet",
    "grid_dimension_sensitivity_csv": "grid_dimension_sensitivity.csv",
    "grid_cost_fragility": "grid_cost_fragility.csv",
    "grid_holdbars_profile": "grid_holdbars_profile.csv",
    "grid_holdbars_shape": "grid_holdbars_shape.csv",
    "grid_source_summary": "grid_source_summary.csv",
    "cluster_policy_trade_mix": "cluster_policy_trade_mix.csv",
    "cluster_state_edge_profile": "cluster_state_edge_profile.csv",
}
"""Output name (the grid summary's ``outputs`` key) -> file name in the grid folder."""


def finite_values(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with NaN and ±inf turned into null in every float column, except +inf in the
    profit-factor columns (a run with no losing trade; fault 10)."""
    exprs = []
    for name, dtype in frame.schema.items():
        if not dtype.is_float():
            continue
        keep = pl.col(name).is_finite()
        if name in _PF_COLUMNS:
            keep = keep | (pl.col(name) == _INF)
        exprs.append(pl.when(keep).then(pl.col(name)).alias(name))
    return frame.with_columns(exprs) if exprs else frame


def _num(frame: pl.DataFrame, name: str) -> pl.Expr:
    """A column as Float64, or all-null when the table lacks it (a metric group switched off)."""
    if name in frame.columns:
        return pl.col(name).cast(pl.Float64)
    return pl.lit(None, dtype=pl.Float64)


def _finite_mean(x: pl.Expr) -> pl.Expr:
    """Mean over the finite values: a +inf profit factor (no losing trade) is counted apart by
    :func:`_inf_count`, or one such combo would make every mean +inf."""
    return x.filter(x.is_finite()).mean()


def _inf_count(x: pl.Expr) -> pl.Expr:
    return (x == float("inf")).sum().cast(pl.Int64)


def _zero_trade(frame: pl.DataFrame) -> pl.Expr:
    """The zero-trade flag as 0/1 with a missing flag counted as zero-trade (§5.5)."""
    flag = (pl.col("is_zero_trade_combo").cast(pl.Boolean) if "is_zero_trade_combo" in frame.columns
            else pl.lit(None, dtype=pl.Boolean))
    return flag.fill_null(True).cast(pl.Float64)


def _share(frame: pl.DataFrame, name: str) -> pl.Expr:
    """Share of true among the non-null values of a boolean column."""
    return _num(frame, name).mean()


# ---------------------------------------------------------------------------- best configs


def best_configs(table: pl.DataFrame, top_n: int) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``grid_best_configs.json`` content: {source: {metric: top rows}} for the metrics of
    :data:`BEST_METRICS`, best first (+inf profit factor first, nulls last, ties by
    combo_index then combo_id); each row holds the :data:`BEST_FIELDS` the table has."""
    table = finite_values(table)
    fields = [c for c in BEST_FIELDS if c in table.columns]
    ties = [c for c in ("combo_index", "combo_id") if c in table.columns]
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for source in sorted(table[SOURCE].unique().drop_nulls().to_list()):
        rows = table.filter(pl.col(SOURCE) == source)
        out[source] = {
            metric: sort_best_first(rows, metric, ties).head(top_n).select(fields).to_dicts()
            for metric in BEST_METRICS if metric in rows.columns
        }
    return out


# ---------------------------------------------------------------------- dimension sensitivity


def _value_sort(frame: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Sort by ``keys`` then ``dimension_value``: numerically when it parses as a number, then
    as text; nulls last."""
    numeric = pl.col("dimension_value").cast(pl.Float64, strict=False)
    return frame.sort([*keys, numeric, "dimension_value"], nulls_last=True)


def _stack_dimensions(frame: pl.DataFrame, extra: Sequence[pl.Expr]) -> pl.DataFrame:
    """One row per (row of ``frame``, dimension present): source, dimension name, value as
    text, and ``extra`` columns — the long form every dimension is grouped on at once."""
    parts = [frame.select(pl.col(SOURCE), pl.lit(dim).alias("dimension"),
                          pl.col(dim).cast(pl.Utf8).alias("dimension_value"), *extra)
             for dim in DIMENSIONS if dim in frame.columns]
    return pl.concat(parts, how="vertical") if parts else pl.DataFrame()


def dimension_sensitivity(table: pl.DataFrame, manifest: pl.DataFrame | None) -> pl.DataFrame:
    """``grid_dimension_sensitivity``: per (source, dimension, value) the §5.5 statistics.

    r75 = polars' default (nearest) 0.75-quantile of ``robustness_score_v2`` per source and
    ``is_top_quartile`` = v2 >= r75. Failure stats (combo_total, failed_count, failure_rate)
    come from ``manifest`` for the dimensions it has, null values matching null values.
    """
    table = finite_values(table)
    v2 = _num(table, "robustness_score_v2")
    metrics = {name: _num(table, name) for name in (
        "expectancy", "profit_factor", "ret_cv", "downside_std", "overlay_match_rate",
        "overlay_unknown_rate", "overlay_vetoed_signal_share", "exec_eligibility_rate",
        "exec_suppressed_signal_share", "exec_trade_avg_dollar_vol_20")}
    scored = table.with_columns(
        **{f"_{k}": e for k, e in metrics.items()},
        _v2=v2, _zero=_zero_trade(table),
        _top=(v2 >= v2.quantile(0.75).over(SOURCE)).cast(pl.Float64),
    )
    long = _stack_dimensions(scored, [pl.col(f"_{k}") for k in metrics]
                             + [pl.col("_v2"), pl.col("_zero"), pl.col("_top")])
    keys = [SOURCE, "dimension", "dimension_value"]
    if long.width == 0:  # no dimension column at all
        return pl.DataFrame(schema=dict.fromkeys(keys, pl.Utf8))
    out = long.group_by(keys).agg(
        combo_count=pl.len(),
        expectancy_mean=pl.col("_expectancy").mean(),
        expectancy_median=pl.col("_expectancy").median(),
        expectancy_std=pl.col("_expectancy").std(ddof=1),
        profit_factor_mean=_finite_mean(pl.col("_profit_factor")),
        profit_factor_inf_count=_inf_count(pl.col("_profit_factor")),
        ret_cv_mean=pl.col("_ret_cv").mean(),
        ret_cv_median=pl.col("_ret_cv").median(),
        downside_std_mean=pl.col("_downside_std").mean(),
        zero_trade_rate=pl.col("_zero").mean(),
        top_quartile_hit_rate=pl.col("_top").mean(),
        robustness_v2_mean=pl.col("_v2").mean(),
        **{f"{k}_mean": pl.col(f"_{k}").mean() for k in (
            "overlay_match_rate", "overlay_unknown_rate", "overlay_vetoed_signal_share",
            "exec_eligibility_rate", "exec_suppressed_signal_share",
            "exec_trade_avg_dollar_vol_20")},
    )
    if manifest is not None and not manifest.is_empty():
        failed = (pl.col("status") == "FAILED").cast(pl.Int64)
        fails = (_stack_dimensions(manifest, [failed.alias("_failed")]).group_by(keys)
                 .agg(combo_total=pl.len(), failed_count=pl.col("_failed").sum())
                 .with_columns(failure_rate=pl.col("failed_count") / pl.col("combo_total")))
        out = out.join(fails, on=keys, how="left", nulls_equal=True)
    else:
        out = out.with_columns(combo_total=pl.lit(None, pl.UInt32),
                               failed_count=pl.lit(None, pl.Int64),
                               failure_rate=pl.lit(None, pl.Float64))
    return finite_values(_value_sort(out, [SOURCE, "dimension"]))


# ----------------------------------------------------------------------------- cost fragility


def _slope(y: str) -> pl.Expr:
    """Least-squares slope of ``y`` on ``_x`` over the points where both are finite; null
    without two distinct x among them."""
    ok = pl.col(y).is_finite() & pl.col("_x").is_finite()
    xs, ys = pl.col("_x").filter(ok), pl.col(y).filter(ok)
    dx = xs - xs.mean()
    sxx = (dx * dx).sum()
    return pl.when(sxx > 0).then((dx * (ys - ys.mean())).sum() / sxx)


def cost_fragility(table: pl.DataFrame) -> pl.DataFrame:
    """``grid_cost_fragility``: how each family's metrics move with total cost (§5.5).

    Per (family, total_cost_bps) the means of expectancy, profit_factor, ret_cv, trade_count
    and the zero-trade flag; per family cost_points, min/max cost, and the least-squares slope
    of each mean against x = total_cost_bps / 10 (change per 10 bps) over its finite points,
    null with fewer than 2 distinct costs. A cost level whose profit-factor mean is +inf (a
    combo without a losing trade) is not a finite point and is left out of the profit-factor
    fit. ``zero_trade_rate_delta_0_to_max_cost`` = zero-trade rate at the highest cost minus
    at the lowest (null with fewer than 2 costs).
    """
    table = finite_values(table)
    keys = [k for k in FAMILY_KEYS if k in table.columns]
    cost = (_num(table, "total_cost_bps") if "total_cost_bps" in table.columns
            else _num(table, "fee_bps_per_side") + _num(table, "slippage_bps_per_side"))
    points = (table.with_columns(_cost=cost, _zero=_zero_trade(table),
                                 **{f"_{m}": _num(table, m) for m in SLOPE_METRICS})
              .group_by([*keys, "_cost"])
              .agg(*[pl.col(f"_{m}").mean() for m in SLOPE_METRICS], pl.col("_zero").mean())
              .with_columns(_x=pl.col("_cost") / 10.0))
    n_costs = pl.col("_cost").n_unique()
    zero = pl.col("_zero").sort_by("_cost")
    out = points.group_by(keys).agg(
        cost_points=n_costs,
        min_cost_bps=pl.col("_cost").min(),
        max_cost_bps=pl.col("_cost").max(),
        **{f"{m}_slope_per_10bps": _slope(f"_{m}") for m in SLOPE_METRICS},
        zero_trade_rate_delta_0_to_max_cost=pl.when(n_costs >= 2)
        .then(zero.last() - zero.first()),
    )
    return finite_values(out.sort(keys, nulls_last=True))


# -------------------------------------------------------------------------- hold-bars profile


def holdbars_profile(table: pl.DataFrame) -> pl.DataFrame:
    """``grid_holdbars_profile``: per (source, hold_bars) the §5.5 means and medians."""
    table = finite_values(table)
    out = table.group_by([SOURCE, "hold_bars"]).agg(
        combo_count=pl.len(),
        expectancy_mean=_num(table, "expectancy").mean(),
        expectancy_median=_num(table, "expectancy").median(),
        profit_factor_mean=_finite_mean(_num(table, "profit_factor")),
        profit_factor_inf_count=_inf_count(_num(table, "profit_factor")),
        ret_cv_median=_num(table, "ret_cv").median(),
        downside_std_mean=_num(table, "downside_std").mean(),
        zero_trade_rate=_zero_trade(table).mean(),
        robustness_v2_mean=_num(table, "robustness_score_v2").mean(),
        trade_count_mean=_num(table, "trade_count").mean(),
    )
    return out.sort([SOURCE, "hold_bars"], nulls_last=True)


def holdbars_shape(profile: pl.DataFrame) -> pl.DataFrame:
    """``grid_holdbars_shape``: per source the shape of ``expectancy_mean`` over hold_bars.

    On the finite points in hold order, tol = max(1e-8, 0.05 * std0) and d = successive
    differences: MONOTONIC_UP if every d >= -tol and some d > tol; MONOTONIC_DOWN if every
    d <= tol and some d < -tol; HUMP_SHAPED if the (first) argmax is interior, the values rise
    to it and fall after it within tol; else FLAT_OR_NOISY. best_hold_bars = the hold at the
    argmax; with fewer than 2 finite points the shape is FLAT_OR_NOISY and best_hold_bars null.
    """
    v = pl.col(SHAPE_METRIC)
    points = (profile.filter(v.is_finite()).sort([SOURCE, "hold_bars"])
              .with_columns(_pos=pl.int_range(pl.len()).over(SOURCE),
                            _d=v.diff().over(SOURCE),
                            _tol=pl.max_horizontal(pl.lit(1e-8), 0.05 * v.std(ddof=0))
                            .over(SOURCE),
                            _am=v.arg_max().over(SOURCE)))
    d, tol, pos, am = pl.col("_d"), pl.col("_tol"), pl.col("_pos"), pl.col("_am")
    flags = points.group_by(SOURCE).agg(
        _n=pl.len(),
        _up=(d >= -tol).all() & (d > tol).any(),
        _down=(d <= tol).all() & (d < -tol).any(),
        _interior=(am.first() > 0) & (am.first() < pl.len() - 1),
        _rise=(d >= -tol).filter((pos >= 1) & (pos <= am)).all(),
        _fall=(d <= tol).filter(pos > am).all(),
        _best=pl.col("hold_bars").filter(pos == am).first(),
    )
    shape = (pl.when(pl.col("_n") < 2).then(pl.lit("FLAT_OR_NOISY"))
             .when(pl.col("_up")).then(pl.lit("MONOTONIC_UP"))
             .when(pl.col("_down")).then(pl.lit("MONOTONIC_DOWN"))
             .when(pl.col("_interior") & pl.col("_rise") & pl.col("_fall"))
             .then(pl.lit("HUMP_SHAPED"))
             .otherwise(pl.lit("FLAT_OR_NOISY")))
    sources = profile.select(pl.col(SOURCE).unique())
    return (sources.join(flags, on=SOURCE, how="left")
            .select(SOURCE,
                    shape.fill_null("FLAT_OR_NOISY").alias("hold_shape"),
                    pl.when(pl.col("_n") >= 2).then(pl.col("_best")).alias("best_hold_bars"),
                    pl.lit(SHAPE_METRIC).alias("metric_col"))
            .sort(SOURCE))


# ----------------------------------------------------------------- source summary, alignment


def source_summary(table: pl.DataFrame, manifest: pl.DataFrame | None,
                   shape: pl.DataFrame | None) -> pl.DataFrame:
    """``grid_source_summary``: manifest status counts per source (one column per status, at
    least SUCCESS and FAILED, 0 when absent) fully joined with per-source statistics of the
    metrics table, then the hold shape columns."""
    table = finite_values(table)
    stats = table.group_by(SOURCE).agg(
        success_count=pl.len(),
        robustness_v1_mean=_num(table, "robustness_score_v1").mean(),
        robustness_v2_mean=_num(table, "robustness_score_v2").mean(),
        robustness_v2_median=_num(table, "robustness_score_v2").median(),
        expectancy_mean=_num(table, "expectancy").mean(),
        expectancy_median=_num(table, "expectancy").median(),
        profit_factor_mean=_finite_mean(_num(table, "profit_factor")),
        profit_factor_inf_count=_inf_count(_num(table, "profit_factor")),
        ret_cv_median=_num(table, "ret_cv").median(),
        downside_std_mean=_num(table, "downside_std").mean(),
        zero_trade_combo_share=_zero_trade(table).mean(),
        trade_count_mean=_num(table, "trade_count").mean(),
        rows_input_median=_num(table, "rows_input").median(),
        nan_warning_total_sum=_num(table, "nan_warning_total").sum(),
        null_metric_cells_mean=_num(table, "null_metric_count").mean(),
        overlay_enabled_share=_share(table, "overlay_enabled"),
        execution_filters_enabled_share=_share(table, "execution_filters_enabled"),
        **{f"{k}_mean": _num(table, k).mean() for k in (
            "overlay_match_rate", "overlay_unknown_rate", "overlay_vetoed_signal_share",
            "overlay_direction_conflict_share", "exec_eligibility_rate",
            "exec_suppressed_signal_share", "exec_trade_avg_dollar_vol_20")},
    )
    out = stats
    if manifest is not None and "status" in manifest.columns:
        statuses = sorted(set(manifest["status"].drop_nulls().to_list()) | {"SUCCESS", "FAILED"})
        counts = manifest.group_by(SOURCE).agg(
            **{s: (pl.col("status") == s).sum().cast(pl.Int64) for s in statuses})
        out = counts.join(stats, on=SOURCE, how="full", coalesce=True).with_columns(
            pl.col(statuses).fill_null(0))
    if shape is not None:
        out = out.join(shape, on=SOURCE, how="left")
    return finite_values(out.sort(SOURCE, nulls_last=True))


def comparability(table: pl.DataFrame, n_sources: int | None = None) -> str:
    """Whether the sources ran on the same universe, from their median ``rows_input``.

    ``n_sources`` = the grid's number of sources (all of the manifest; default the sources
    of ``table``). Fewer than 2 -> ALIGNED; empty table -> DIFFERENT_UNIVERSE; a median <= 0
    (or none) -> DIFFERENT_UNIVERSE; else rel = (max - min) / min over the per-source medians:
    <= 0.0001 ALIGNED, <= 0.05 NEAR_ALIGNED, else DIFFERENT_UNIVERSE.
    """
    if n_sources is None and table.is_empty():
        return DIFFERENT_UNIVERSE
    if (n_sources if n_sources is not None else table[SOURCE].n_unique()) < 2:
        return ALIGNED
    if table.is_empty() or "rows_input" not in table.columns:
        return DIFFERENT_UNIVERSE
    medians = table.group_by(SOURCE).agg(_num(table, "rows_input").median())["rows_input"]
    medians = medians.drop_nulls()
    if medians.is_empty():
        return DIFFERENT_UNIVERSE
    low, high = float(medians.min()), float(medians.max())  # type: ignore[arg-type]
    if low <= 0:
        return DIFFERENT_UNIVERSE
    rel = (high - low) / low
    if rel <= ALIGNED_MAX_REL:
        return ALIGNED
    return NEAR_ALIGNED if rel <= NEAR_ALIGNED_MAX_REL else DIFFERENT_UNIVERSE


# ------------------------------------------------------------------------------ cluster only


def cluster_policy_trade_mix(table: pl.DataFrame) -> pl.DataFrame:
    """``cluster_policy_trade_mix``: the cluster rows' class mix of valid trades, by policy
    mode then combo_index."""
    cols = ["combo_id", "combo_index", "policy_filter_mode", "policy_trade_class_mix",
            "trade_count"]
    rows = table.filter(pl.col(SOURCE) == "cluster")
    present = [c for c in cols if c in rows.columns]
    return rows.select(present).sort(
        [c for c in ("policy_filter_mode", "combo_index") if c in present], nulls_last=True)


def cluster_state_edge_profile(state_edges: pl.DataFrame) -> pl.DataFrame:
    """``cluster_state_edge_profile``: per (policy_filter_mode, entry state) over the combos
    of ``state_edges`` (``metrics.edge_by_state`` of each cluster combo stacked, with
    combo_id, combo_index, policy_filter_mode): trade_count sum, avg_return mean,
    median_return median, ret_cv median, ret_p10 / ret_p90 / downside_std means, worst min,
    best max, combo_count; by policy mode, then trade_count descending, then the state keys."""
    edges = finite_values(state_edges)
    keys = ["policy_filter_mode", *STATE_KEYS]
    out = edges.group_by(keys).agg(
        pl.col("trade_count").sum(),
        pl.col("avg_return").mean(),
        pl.col("median_return").median(),
        pl.col("ret_cv").median(),
        pl.col("ret_p10").mean(),
        pl.col("ret_p90").mean(),
        pl.col("downside_std").mean(),
        pl.col("worst_trade_return").min(),
        pl.col("best_trade_return").max(),
        combo_count=pl.col("combo_id").n_unique(),
    )
    return out.sort(keys[:1] + ["trade_count", *STATE_KEYS],
                    descending=[False, True, *[False] * len(STATE_KEYS)], nulls_last=True)


# ------------------------------------------------------------------------------------ writer


def write_aggregates(folder: Path, table: pl.DataFrame, manifest: pl.DataFrame,
                     state_edges: pl.DataFrame | None, top_n: int) -> dict[str, Any]:
    """Write every §5.5 aggregate file of :data:`FILES` into ``folder``.

    The cluster files are written when the manifest or table has a ``cluster`` source (the
    state edge profile only when ``state_edges`` is given). Returns ``{"outputs": {name:
    path}, "comparability": label, "hold_shapes": {source: {hold_shape, best_hold_bars,
    metric_col}}}`` for the grid summary.
    """
    table = finite_values(table)
    paths: dict[str, Path] = {}

    def path(name: str) -> Path:
        paths[name] = folder / FILES[name]
        return paths[name]

    lake.write_json(finite_json(best_configs(table, top_n)), path("grid_best_configs"))
    sensitivity = dimension_sensitivity(table, manifest)
    lake.write_parquet(sensitivity, path("grid_dimension_sensitivity_parquet"))
    lake.write_csv(sensitivity, path("grid_dimension_sensitivity_csv"))
    lake.write_csv(cost_fragility(table), path("grid_cost_fragility"))
    profile = holdbars_profile(table)
    shape = holdbars_shape(profile)
    lake.write_csv(profile, path("grid_holdbars_profile"))
    lake.write_csv(shape, path("grid_holdbars_shape"))
    lake.write_csv(source_summary(table, manifest, shape), path("grid_source_summary"))
    sources = set(manifest[SOURCE].to_list()) | set(table[SOURCE].to_list())
    if "cluster" in sources:
        lake.write_csv(cluster_policy_trade_mix(table), path("cluster_policy_trade_mix"))
        if state_edges is not None:
            lake.write_csv(cluster_state_edge_profile(state_edges),
                           path("cluster_state_edge_profile"))
    return {
        "outputs": {name: str(p) for name, p in paths.items()},
        "comparability": comparability(table, len(sources - {None})),
        "hold_shapes": {row[SOURCE]: {k: v for k, v in row.items() if k != SOURCE}
                        for row in shape.to_dicts()},
    }
