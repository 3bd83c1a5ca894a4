"""Robustness scores of a sensitivity grid (backtest_ops.md §5.4), per source_type.

Each component is a rank score in [0, 1] over the SUCCESS rows of one source (1 = best),
combined into ``robustness_score_v1`` (weighted, 0..100) and ``robustness_score_v2``
(0.70 * v1 plus ret_cv, tail and cost terms, minus 20 for a zero-trade combo).
``robustness_score`` is a copy of v2. Names and formulas are the old tool's except:

- fault 13: ties get the AVERAGE rank, so equal values get equal scores and no score depends
  on the row order (or a grid shuffle). The old rank was ordinal (ties split by row order).
- fault 10: a +inf profit factor (no losing trade) is a value and ranks first; the old tool
  had turned it into null, scored 0.0. NaN and -inf count as missing.
- fault 11: ``nan_warning_total`` is the number of non-finite headline/equity metrics of the
  row counted on the RAW values (:func:`nan_warning_total`); the old one was counted after
  sanitising, hence always 0. A +inf profit factor is a defined value, not a warning.
- fault 12: a row without a finite ``max_drawdown`` (every row under ``event_returns_only``)
  gets ``drawdown_score`` null and ``drawdown_scored`` false, and its v1 is the weighted mean
  of the other five components rescaled to the full weight total (with the default weights
  100 * (0.30 e + 0.20 pf + 0.15 c + 0.10 cost + 0.05 h) / 0.80). The old constant 0.5
  carried no information yet took 20 % of v1. Drawdowns rank by |max_drawdown|, smallest loss
  best (fault 14).
- fault 27: ``is_zero_trade_combo`` comes from the trades: the edge-metric flag when present,
  else headline ``trade_count`` <= 0 (null -> 0). The old flag was null, hence "zero-trade",
  for every combo when both ret_cv and tail metrics were switched off.

No ``legacy`` switch: the old ordinal ranks, 0.5 drawdown and null zero-trade rule are the
faults above. Sanitising the table (non-finite -> null) is left to the writer, so a +inf
profit factor survives in Parquet next to its ``profit_factor_inf`` flag.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

DEFAULT_WEIGHTS: dict[str, float] = {
    "expectancy_rank": 0.30, "profit_factor_rank": 0.20, "drawdown_score": 0.20,
    "consistency": 0.15, "cost_robustness": 0.10, "hygiene": 0.05,
}
"""``backtest_sensitivity.robustness_score_weights`` defaults."""
NAN_WARNING_COLUMNS = ("trade_count", "win_rate", "avg_return", "median_return",
                       "profit_factor", "expectancy", "return_std", "avg_hold_bars",
                       "max_drawdown", "sharpe_proxy")
"""Headline and equity metrics whose non-finite values count as hygiene warnings."""
# v1 component column -> weight key, in the old order
_V1_COMPONENTS = {"rank_expectancy": "expectancy_rank", "rank_profit_factor": "profit_factor_rank",
                  "drawdown_score": "drawdown_score", "consistency_score": "consistency",
                  "cost_robustness_score": "cost_robustness", "hygiene_score": "hygiene"}
_INF = float("inf")


def _rank01(x: pl.Expr, higher_is_better: bool) -> pl.Expr:
    """Rank score of ``x`` over the rows of its frame (or window): see :func:`rank_score`."""
    x = x.cast(pl.Float64)
    ranked = pl.when(x.is_finite() | (x == _INF)).then(x)
    n_ranked = ranked.count()
    rank = ranked.rank("average", descending=higher_is_better)
    score = 1.0 - (rank - 1.0) / pl.max_horizontal(n_ranked - 1, 1)
    return (pl.when(pl.len() == 1).then(1.0)
            .when(n_ranked == 0).then(0.5)
            .otherwise(score.fill_null(0.0)))


def rank_score(values: pl.Series, higher_is_better: bool) -> pl.Series:
    """Rank score in [0, 1] of each value among ``values`` (the old ``rank01``, fault 13 fixed).

    Ranked values are the finite ones and +inf (profit factor without a loss: the largest).
    Rank r = 1 for the best; ties share the average of their ranks; score = 1 - (r - 1) /
    max(n - 1, 1) over the n ranked values. Null, NaN and -inf score 0.0; if nothing is ranked
    every row scores 0.5; a single row scores 1.0 whatever its value.
    """
    frame = pl.DataFrame({"x": values})
    return frame.select(_rank01(pl.col("x"), higher_is_better).alias(values.name)).to_series()


def _non_finite(column: str) -> pl.Expr:
    value = pl.col(column).cast(pl.Float64)
    legit_inf = value == _INF if column == "profit_factor" else pl.lit(False)
    return (value.is_not_null() & ~value.is_finite() & ~legit_inf).cast(pl.Int64)


def nan_warning_total(raw: pl.DataFrame, columns: tuple[str, ...] = NAN_WARNING_COLUMNS,
                      ) -> pl.Series:
    """Per row, the count of NaN/±inf among ``columns`` (those present) of the RAW metrics,
    i.e. before any sanitising (fault 11). Null is missing, not a warning; a +inf
    ``profit_factor`` is a defined value (fault 10) and not counted."""
    present = [c for c in columns if c in raw.columns]
    if not present:
        return pl.Series("nan_warning_total", [0] * raw.height, dtype=pl.Int64)
    return raw.select(pl.sum_horizontal([_non_finite(c) for c in present])
                      .alias("nan_warning_total")).to_series()


def _col(table: pl.DataFrame, name: str) -> pl.Expr:
    """A column, or an all-null float when a metric group was not computed."""
    return pl.col(name) if name in table.columns else pl.lit(None, dtype=pl.Float64)


def robustness_scores(table: pl.DataFrame, weights: Mapping[str, float] | None = None,
                      ) -> pl.DataFrame:
    """The SUCCESS rows of ``table`` (all rows without a ``status`` column) with the §5.4
    columns added, each rank computed within its ``source_type``; row order is kept.

    ``weights`` override :data:`DEFAULT_WEIGHTS` by key. ``nan_warning_total`` is kept when
    the table has it (computed on raw values by the caller), else counted from the table's
    own metric columns, which must then be the raw ones. See the module docstring for the
    deliberate differences from the old tool.
    """
    unknown = set(weights or {}) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown robustness weight(s) {sorted(unknown)}; "
                         f"known {sorted(DEFAULT_WEIGHTS)}")
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    out = table
    if "status" in out.columns:
        out = out.filter(pl.col("status") == "SUCCESS")
    if "nan_warning_total" not in out.columns:
        out = out.with_columns(nan_warning_total(out))
    by = "source_type"
    drawdown = _col(out, "max_drawdown").cast(pl.Float64).abs()
    trade_count = _col(out, "trade_count").cast(pl.Float64).fill_null(0.0)
    out = out.with_columns(
        rank_expectancy=_rank01(_col(out, "expectancy"), True).over(by),
        rank_profit_factor=_rank01(_col(out, "profit_factor"), True).over(by),
        drawdown_scored=drawdown.is_finite().fill_null(False),
        consistency_score=_rank01(_col(out, "return_std"), False).over(by),
        ret_cv_score=_rank01(_col(out, "ret_cv"), False).over(by),
        tail_stability_score=_rank01(_col(out, "downside_std"), False).over(by),
        total_cost_bps=(pl.col("fee_bps_per_side") + pl.col("slippage_bps_per_side"))
        .cast(pl.Float64),
        hygiene_score=0.7 * pl.min_horizontal(1.0, trade_count / 100.0)
        + 0.3 * (pl.col("nan_warning_total").fill_null(0) <= 0).cast(pl.Float64),
        is_zero_trade_combo=_col(out, "is_zero_trade_combo").cast(pl.Boolean)
        .fill_null(trade_count <= 0),
    ).with_columns(
        # among the rows with a drawdown only, so rows without one neither rank nor dilute
        drawdown_score=pl.when(pl.col("drawdown_scored"))
        .then(_rank01(drawdown, False).over(by, "drawdown_scored")),
        cost_robustness_score=_rank01(pl.col("total_cost_bps"), False).over(by),
    )
    total_weight = sum(w.values())
    rest_weight = total_weight - w["drawdown_score"]
    weighted = pl.sum_horizontal([w[key] * pl.col(name).fill_null(0.0)
                                  for name, key in _V1_COMPONENTS.items()])
    rescale = pl.when(pl.col("drawdown_scored")).then(1.0).otherwise(
        total_weight / rest_weight if rest_weight > 0 else None)
    v1_raw = 100.0 * weighted * rescale
    v2_raw = (0.70 * v1_raw + 15.0 * pl.col("ret_cv_score") + 10.0 * pl.col("tail_stability_score")
              + 5.0 * pl.col("cost_robustness_score")
              - 20.0 * pl.col("is_zero_trade_combo").cast(pl.Float64))
    return out.with_columns(
        robustness_score_v1=v1_raw.clip(0.0, 100.0),
        robustness_score_v2=v2_raw.clip(0.0, 100.0),
    ).with_columns(robustness_score=pl.col("robustness_score_v2"))
