"""Scoring shared by the decision reports (backtest_ops.md §7.8 and §8).

One min-max normalisation, one "best row" ordering and one walk-forward pair comparison, used
by both the execution realism report and the hybrid overlay evaluation report.

Missing values: null, NaN and -inf are missing. A ``+inf`` (a profit factor without a losing
trade, flagged ``profit_factor_inf``) is a value and the largest one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

INF = float("inf")

WF_METRICS = ("expectancy", "profit_factor", "robustness_v2", "ret_cv", "zero_trade_share")
"""Per-split best-combo metrics compared between a baseline and a hybrid walk-forward grid."""
_WIN_RULES = {"expectancy": "higher", "profit_factor": "higher", "robustness_v2": "higher",
              "ret_cv": "lower"}  # fmt: skip
_WIN_NAMES = {"expectancy": "expectancy", "profit_factor": "pf",
              "robustness_v2": "robustness_v2", "ret_cv": "ret_cv",
              "zero_trade_share": "zero_trade_share"}  # fmt: skip


def valued(x: pl.Expr) -> pl.Expr:
    """``x`` as Float64 with NaN and -inf turned into null (+inf kept: it is the maximum)."""
    x = x.cast(pl.Float64)
    return pl.when(x.is_finite() | (x == INF)).then(x)


def minmax(x: pl.Expr, higher_is_better: bool) -> pl.Expr:
    """Min-max score in [0, 1] of ``x`` over the rows of its frame (1 = best).

    The old tool's rules (§7.8): a missing value scores 0; when no row has a value every row
    scores 0.5; when all values are equal they score 0.5. Ours for +inf: it scores 1.0 as the
    maximum ("lower is better": 0.0) and the range is taken over the finite values only, so a
    finite value at the finite maximum also scores 1.0; if the finite values are all equal
    next to a +inf they score 0.5.
    """
    v = valued(x)
    finite = pl.when(v.is_finite()).then(v)
    lo, hi = finite.min(), finite.max()
    scaled = (pl.when(v.min() == v.max()).then(0.5)
              .when(v == INF).then(1.0)
              .when(hi == lo).then(0.5)
              .otherwise((v - lo) / (hi - lo)))  # fmt: skip
    directed = scaled if higher_is_better else 1.0 - scaled
    return (pl.when(v.count() == 0).then(0.5)
            .when(v.is_null()).then(0.0)
            .otherwise(directed))  # fmt: skip


def minmax_series(values: pl.Series, higher_is_better: bool) -> pl.Series:
    """:func:`minmax` of a Series (same name, Float64)."""
    return (pl.DataFrame({"x": values})
            .select(minmax(pl.col("x"), higher_is_better).alias(values.name)).to_series())


def weighted_minmax(frame: pl.DataFrame, weights: Mapping[str, tuple[float, bool]]) -> pl.Expr:
    """Sum of ``weight * minmax(column, higher_is_better)`` over ``weights`` (column ->
    (weight, higher_is_better)); a column absent from ``frame`` counts as all missing."""
    return pl.sum_horizontal([
        w * minmax(pl.col(c) if c in frame.columns else pl.lit(None, dtype=pl.Float64), up)
        for c, (w, up) in weights.items()])  # fmt: skip


def sort_best(frame: pl.DataFrame, order: Sequence[tuple[str, bool]]) -> pl.DataFrame:
    """``frame`` sorted best first by ``order`` ((column, descending) pairs), nulls LAST in every
    key (fault 15); numeric keys compare with NaN/-inf as missing and +inf as the largest;
    keys absent from ``frame`` are skipped. The last keys should make the order total
    (combo_id, label) so it never depends on the incoming row order (fault 13)."""
    order = [(c, d) for c, d in order if c in frame.columns]
    keys = [valued(pl.col(c)) if frame.schema[c].is_numeric() else pl.col(c)
            for c, _ in order]  # fmt: skip
    return frame.sort(keys, descending=[d for _, d in order], nulls_last=True,
                      maintain_order=True)


def best_row(frame: pl.DataFrame | None, order: Sequence[tuple[str, bool]]
             ) -> dict[str, Any] | None:  # fmt: skip
    """First row of :func:`sort_best` as a dict, None for a missing or empty frame."""
    if frame is None or frame.is_empty():
        return None
    return sort_best(frame, order).row(0, named=True)


def delta(new: float | None, old: float | None) -> float | None:
    """``new - old``; None when either is missing; 0.0 for two +inf profit factors."""
    if new is None or old is None:
        return None
    if new == old == INF:
        return 0.0
    return float(new) - float(old)


def row_deltas(new: Mapping[str, Any] | None, old: Mapping[str, Any] | None,
               columns: Mapping[str, str]) -> dict[str, float | None]:
    """``delta_<name>`` = new[column] - old[column] for each name -> column (see :func:`delta`);
    all None when either row is missing."""
    return {f"delta_{name}": delta((new or {}).get(col), (old or {}).get(col))
            for name, col in columns.items()}


def split_comparison(baseline: pl.DataFrame, hybrid: pl.DataFrame) -> dict[str, Any]:
    """Hybrid vs baseline walk-forward grids, split by split (§7.8 and §8.4 WF comparison).

    Both frames hold one row per split: ``train_end`` and the split's best-combo
    :data:`WF_METRICS`. Splits are inner-joined on ``train_end``. A "win" is a strictly better
    hybrid value (higher expectancy, PF and robustness v2; lower ret_cv); a pair with a missing
    side is no win. ``avg_delta_*`` = mean of hybrid - baseline over the pairs whose difference
    is finite (missing sides and +inf profit factors are skipped; null when none).
    """
    cols = ["train_end", *WF_METRICS]
    joined = baseline.select(cols).join(hybrid.select(cols), on="train_end", how="inner",
                                        suffix="_h")
    out: dict[str, Any] = {"split_count": joined.height,
                           "train_ends": sorted(str(t) for t in joined["train_end"])}
    exprs = []
    for m in WF_METRICS:
        base, hyb = valued(pl.col(m)), valued(pl.col(f"{m}_h"))
        name = _WIN_NAMES[m]
        if m in _WIN_RULES:
            win = hyb > base if _WIN_RULES[m] == "higher" else hyb < base
            exprs.append(win.fill_null(False).sum().alias(f"hybrid_wins_{name}"))
        d = hyb - base
        exprs.append(pl.when(d.is_finite()).then(d).mean().alias(f"avg_delta_{name}"))
    stats = joined.select(exprs).row(0, named=True)
    out.update({k: (int(v) if k.startswith("hybrid_wins") else v) for k, v in stats.items()})
    return out
