"""Rolling-window stability of each state's occupancy and forward returns (research.md §6.4).

Windows are calendar-month blocks: the first starts on the 1st of the month of the earliest
date, each spans ``window_months`` months (ending the day before the same day
``window_months`` later) and the next starts ``step_months`` months on; ``window_seq`` numbers
them from 0, windows without rows keep their number but emit nothing. Because every window is
a union of whole months, rows are first aggregated per (month, state) in one vectorised pass
and the windows are sums of at most ``window_months`` of those cells.

Faults of the old tool fixed here:

* #12 ``fwd_ret_10_sign_stability`` is the share of the state's windows whose mean has the
  state's dominant sign (the sign of its mean over all its rows), so a consistently bearish
  state scores 1, not 0; the old "positive-window share" stays as its own column.
* #13 ``state_share_mean`` / ``state_share_std`` average over every non-empty window of the
  run, with 0 where the state is absent; the old figure (present windows only) is
  ``state_share_mean_present``.
* #14 ``ret_mean_tstat`` (mean of window means over its standard error) sits next to
  ``ret_mean_cv``, which explodes when the mean is near zero. Windows overlap when
  ``step_months < window_months``, so the t-statistic is a scale-free stability figure, not a
  test with ``window_count - 1`` degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from mf_pipeline.lib.kernels.offsets import bar_index
from mf_pipeline.lib.validation.events import ordered_panel

MEAN_COLUMNS: tuple[str, ...] = ("fwd_ret_10", "fwd_abs_ret_10", "fwd_vol_proxy_10")
STABILITY_CONTEXT_COLUMNS: tuple[str, ...] = ("tmf_21", "flow_bias_20", "oscillation_index_20")
RET = "fwd_ret_10"


@dataclass
class Stability:
    """rolling_state_metrics, state_stability_summary, transition_matrix_stability."""

    rolling: pl.DataFrame
    state_summary: pl.DataFrame
    transition_matrix: pl.DataFrame


TRANSITION_SCHEMA = {
    "window_seq": pl.Int64,
    "window_start": pl.Date,
    "window_end": pl.Date,
    "transition_count": pl.Int64,
    "frobenius_distance": pl.Float64,
}


def _month_index(col: str = "trade_date") -> pl.Expr:
    return pl.col(col).dt.year().cast(pl.Int64) * 12 + pl.col(col).dt.month().cast(pl.Int64) - 1


def _windows(base: int, last: int, window_months: int, step_months: int) -> pl.DataFrame:
    """Every window (seq, start, end, first and last month offset from ``base``)."""
    seq = np.arange(last // step_months + 1, dtype=np.int64)
    lo = seq * step_months
    return (
        pl.DataFrame({"window_seq": seq, "m_lo": lo, "m_hi": lo + window_months - 1})
        .with_columns(
            (pl.col("m_lo") + base).alias("_s"),
            (pl.col("m_hi") + base + 1).alias("_e"),
        )
        .with_columns(
            pl.date(pl.col("_s") // 12, pl.col("_s") % 12 + 1, 1).alias("window_start"),
            (pl.date(pl.col("_e") // 12, pl.col("_e") % 12 + 1, 1) - pl.duration(days=1)).alias(
                "window_end"
            ),
        )
        .drop("_s", "_e")
    )


def _cover(windows: pl.DataFrame, last: int) -> pl.DataFrame:
    """(window_seq, m) for every month offset ``m <= last`` inside each window."""
    return (
        windows.select("window_seq", pl.int_ranges("m_lo", pl.col("m_hi") + 1).alias("m"))
        .explode("m")
        .filter(pl.col("m") <= last)
    )


def _finite(col: str) -> pl.Expr:
    return pl.when(pl.col(col).is_finite()).then(pl.col(col)).otherwise(None).alias(col)


def _rolling(
    df: pl.DataFrame, cover: pl.DataFrame, windows: pl.DataFrame, ctx: list[str]
) -> pl.DataFrame:
    """rolling_state_metrics: one row per (window, state present in it)."""
    valued = [*MEAN_COLUMNS, *ctx]
    cells = df.group_by("m", "state_id").agg(
        pl.len().cast(pl.Int64).alias("row_count"),
        (pl.col(RET) > 0).sum().cast(pl.Int64).alias("_pos"),
        *[pl.col(c).sum().alias(f"_s_{c}") for c in valued],
        *[pl.col(c).count().cast(pl.Int64).alias(f"_n_{c}") for c in valued],
    )
    sums = cover.join(cells, on="m").group_by("window_seq", "state_id").agg(pl.exclude("m").sum())

    def mean(c: str) -> pl.Expr:
        return pl.when(pl.col(f"_n_{c}") > 0).then(pl.col(f"_s_{c}") / pl.col(f"_n_{c}"))

    return (
        sums.join(windows.select("window_seq", "window_start", "window_end"), on="window_seq")
        .with_columns(
            (pl.col("row_count") / pl.col("row_count").sum().over("window_seq")).alias(
                "state_share"
            ),
            mean(RET).alias(f"{RET}_mean"),
            pl.when(pl.col(f"_n_{RET}") > 0)
            .then(pl.col("_pos") / pl.col(f"_n_{RET}"))
            .alias(f"{RET}_hit_rate"),
            *[mean(c).alias(f"{c}_mean") for c in (*MEAN_COLUMNS[1:], *ctx)],
        )
        .select(
            "window_seq",
            "window_start",
            "window_end",
            "state_id",
            "row_count",
            "state_share",
            f"{RET}_mean",
            f"{RET}_hit_rate",
            *[f"{c}_mean" for c in (*MEAN_COLUMNS[1:], *ctx)],
        )
        .sort("window_seq", "state_id")
    )


def _nonfinite_to_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.is_finite()).then(expr)


def _state_summary(
    df: pl.DataFrame, rolling: pl.DataFrame, ctx: list[str], eps: float
) -> pl.DataFrame:
    """state_stability_summary: per state, over its windows (spec step 4 + #12/#13/#14)."""
    seqs = rolling.select("window_seq").unique()
    states = rolling.select("state_id").unique()
    shares = (
        seqs.join(states, how="cross")
        .join(
            rolling.select("window_seq", "state_id", "state_share"),
            on=["window_seq", "state_id"],
            how="left",
        )
        .group_by("state_id")
        .agg(
            pl.col("state_share").fill_null(0.0).mean().alias("state_share_mean"),
            pl.col("state_share").fill_null(0.0).std(ddof=0).alias("state_share_std"),
            pl.col("state_share").mean().alias("state_share_mean_present"),
        )
    )
    dominant = df.group_by("state_id").agg(
        pl.col(RET).mean().sign().fill_null(0).cast(pl.Int8).alias("dominant_sign")
    )

    m = pl.col(f"{RET}_mean")
    present = m.is_not_null()
    x = pl.col("window_seq").filter(present).cast(pl.Float64)
    y = m.filter(present)
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    n_means = m.count()
    stats = (
        rolling.join(dominant, on="state_id")
        .group_by("state_id")
        .agg(
            pl.len().cast(pl.Int64).alias("window_count"),
            *[
                e
                for c in (
                    f"{RET}_mean",
                    f"{RET}_hit_rate",
                    *[f"{c}_mean" for c in MEAN_COLUMNS[1:]],
                )
                for e in (
                    pl.col(c).mean().alias(f"{c}_mean"),
                    pl.col(c).std(ddof=0).alias(f"{c}_std"),
                )
            ],
            pl.col("dominant_sign").first(),
            pl.when((n_means > 0) & (pl.col("dominant_sign").first() != 0))
            .then((m.sign() == pl.col("dominant_sign").first()).sum() / n_means)
            .alias(f"{RET}_sign_stability"),
            pl.when(n_means > 0)
            .then((m > 0).sum() / n_means)
            .alias(f"{RET}_positive_window_share"),
            n_means.alias("_n_means"),
            *[pl.col(f"{c}_mean").mean().alias(f"{c}_mean_mean") for c in ctx],
            pl.when(n_means >= 2).then(slope).alias(f"{RET}_mean_trend_slope"),
        )
    )
    mm, ms = pl.col(f"{RET}_mean_mean"), pl.col(f"{RET}_mean_std")
    return (
        stats.join(shares, on="state_id")
        .with_columns(
            _nonfinite_to_null(ms / (mm.abs() + eps)).alias("ret_mean_cv"),
            pl.when(pl.col("_n_means") >= 2)
            .then(_nonfinite_to_null(mm / (ms / pl.col("_n_means").sqrt())))
            .alias("ret_mean_tstat"),
            _nonfinite_to_null(
                pl.col("state_share_std") / (pl.col("state_share_mean").abs() + eps)
            ).alias("share_cv"),
            _nonfinite_to_null(pl.col(f"{RET}_mean_trend_slope")).alias(f"{RET}_mean_trend_slope"),
        )
        .select(
            "state_id",
            "window_count",
            "state_share_mean",
            "state_share_std",
            "state_share_mean_present",
            *[
                f"{c}_{s}"
                for c in (
                    f"{RET}_mean",
                    f"{RET}_hit_rate",
                    *[f"{c}_mean" for c in MEAN_COLUMNS[1:]],
                )
                for s in ("mean", "std")
            ],
            "dominant_sign",
            f"{RET}_sign_stability",
            f"{RET}_positive_window_share",
            "ret_mean_cv",
            "ret_mean_tstat",
            "share_cv",
            *[f"{c}_mean_mean" for c in ctx],
            f"{RET}_mean_trend_slope",
        )
        .sort("state_id")
    )


def _transition_matrix(
    frame: pl.DataFrame,
    base: int,
    cover: pl.DataFrame,
    windows: pl.DataFrame,
    rolling: pl.DataFrame,
) -> pl.DataFrame:
    """Frobenius distance of each non-empty window's empirical transition matrix to the global one.

    A pair (row i-1, row i) of one ticker belongs to a window when both dates are inside it;
    with whole-month windows that is "month of i-1 >= window start month and month of i <=
    window end month". The distance runs over every pair seen globally (a superset of each
    window's pairs), missing probabilities counting as 0.
    """
    df, offsets = ordered_panel(frame, ["ticker", "trade_date", "state_id"])
    has_prev = np.flatnonzero(bar_index(offsets) > 0)
    state = df["state_id"].cast(pl.Int32).to_numpy()
    month = df.select(_month_index() - base).to_series().to_numpy()
    pairs = (
        pl.DataFrame(
            {
                "m_prev": month[has_prev - 1],
                "m_cur": month[has_prev],
                "a": state[has_prev - 1],
                "b": state[has_prev],
            }
        )
        .group_by("m_prev", "m_cur", "a", "b")
        .agg(pl.len().cast(pl.Int64).alias("n"))
    )

    def probs(counts: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        return counts.with_columns((pl.col("n") / pl.col("n").sum().over(keys)).alias("p"))

    glob = probs(pairs.group_by("a", "b").agg(pl.col("n").sum()), ["a"])
    in_window = (
        cover.join(pairs, left_on="m", right_on="m_prev")
        .join(windows.select("window_seq", "m_hi"), on="window_seq")
        .filter(pl.col("m_cur") <= pl.col("m_hi"))
        .group_by("window_seq", "a", "b")
        .agg(pl.col("n").sum())
    )
    win = probs(in_window, ["window_seq", "a"])
    nonempty = rolling.select("window_seq").unique()
    dist = (
        nonempty.join(glob.select("a", "b", pl.col("p").alias("pg")), how="cross")
        .join(win.select("window_seq", "a", "b", "n", "p"), on=["window_seq", "a", "b"], how="left")
        .group_by("window_seq")
        .agg(
            pl.col("n").sum().cast(pl.Int64).alias("transition_count"),
            ((pl.col("pg") - pl.col("p").fill_null(0.0)) ** 2)
            .sum()
            .sqrt()
            .alias("frobenius_distance"),
        )
    )
    return (
        nonempty.join(windows, on="window_seq")
        .join(dist, on="window_seq", how="left")
        .with_columns(pl.col("transition_count").fill_null(0))
        .select(list(TRANSITION_SCHEMA))
        .cast(TRANSITION_SCHEMA)
        .sort("window_seq")
    )


def rolling_stability(
    frame: pl.DataFrame,
    *,
    window_months: int = 12,
    step_months: int = 3,
    eps: float = 1e-12,
    transition_stability: bool = False,
) -> Stability:
    """rolling_state_metrics, state_stability_summary and (when asked) transition stability.

    Needs ``ticker, trade_date, state_id, fwd_ret_10, fwd_abs_ret_10, fwd_vol_proxy_10``;
    ``tmf_21, flow_bias_20, oscillation_index_20`` add context means when present. Ask for
    ``transition_stability`` for HMM labels, whose transitions are the model's own.
    """
    if window_months < 1 or step_months < 1:
        raise ValueError("window_months and step_months must be >= 1")
    required = ["ticker", "trade_date", "state_id", *MEAN_COLUMNS]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"rolling stability needs columns {missing}")
    ctx = [c for c in STABILITY_CONTEXT_COLUMNS if c in frame.columns]
    df = (
        frame.select("trade_date", "state_id", *MEAN_COLUMNS, *ctx)
        .drop_nulls(["trade_date", "state_id"])
        .with_columns(pl.col([*MEAN_COLUMNS, *ctx]).cast(pl.Float64))
        .with_columns(*[_finite(c) for c in (*MEAN_COLUMNS, *ctx)], _month_index().alias("m"))
    )
    base = int(df["m"].min()) if df.height else 0
    df = df.with_columns(pl.col("m") - base)
    last = int(df["m"].max()) if df.height else -1
    windows = _windows(base, last, window_months, step_months)
    cover = _cover(windows, last)
    rolling = _rolling(df, cover, windows, ctx)
    summary = _state_summary(df, rolling, ctx, eps)
    if transition_stability and df.height:
        tm = _transition_matrix(frame, base, cover, windows, rolling)
    else:
        tm = pl.DataFrame(schema=TRANSITION_SCHEMA)
    return Stability(rolling=rolling, state_summary=summary, transition_matrix=tm)
