"""Bootstrap confidence intervals of each state's forward outcomes (research.md §6.2).

Forward returns of one state are not independent observations: ``fwd_ret_10`` of consecutive
days share nine of their ten daily returns, and on one date every ticker carries the same
market move. The old tool resampled rows one by one (fault #9), and its "block" mode cut
blocks out of a state's rows concatenated across tickers after a reshuffling subsample (fault
#10), so its intervals were far too narrow. Here the resampling unit is the DATE:

* ``block`` (default): the stationary bootstrap of ``arch`` draws dates in blocks of random
  length (mean ``block_length``; by default the Politis-White estimate on the daily
  cross-sectional mean of ``pairwise_outcome``, at least the longest outcome horizon). A
  replicate weights every row by the number of times its date was drawn, so overlapping
  horizons and same-day cross-sectional moves stay together. Means and hit rates are
  ``(w @ per-date sums) / (w @ per-date counts)``, medians weighted medians (Numba).
* ``circular``: the same with ``arch``'s circular block bootstrap (fixed block length).
* ``iid``: the old row-iid resampling, states drawn independently; kept only to show how
  narrow it is.

All states and outcomes of one replicate share the same date draw, so a pairwise difference
keeps the dependence between the two states. The pairwise table reports the OBSERVED
difference of means (the old tool reported the mean of the bootstrap differences, fault #11),
a centred bootstrap p-value, and Holm and Benjamini-Hochberg adjustments across all pairs
(``statsmodels``); ``significant`` uses Holm. Every return outcome also gets a per-state edge
test, Holm-adjusted across the states of that outcome: do the state's rows beat their own
tickers' mean? The outcome minus its ticker's mean (over the rows with a state) is averaged over
the state and compared with the all-states average of the same draw. Not "mean = 0": a simple
return of a driftless log random walk has mean exp(h sigma^2 / 2) - 1 > 0 (0.1-0.2 % at h = 10
on the sample), and a market drift lifts every state alike; on 300 tickers x 20 years of the
null sample "mean = 0" was rejected for all five random states. Not the raw all-states mean
either: that convexity grows with a ticker's sigma, so a state that gathers volatile tickers
(the null sample's HMM state 4: mean sigma 0.022 against 0.014 in state 0) earned +0.10 % more
than the average with Holm p 0.04 and was ALLOWed; picking tickers is no regime edge. Above
``max_points_per_state`` a (state, outcome) cell is a seeded random subset of its rows, each
keeping its date (fault #31: never a head slice); ``n`` still reports the full count.

A replicate that draws none of a rare state's dates has no statistic for it and is left out
of that state's interval and p-value. The date weights are one (n_boot x n_dates) float64
matrix (29 MB at 1000 x 3650). Cost on 1.09M rows, 5 states, 5 outcomes, n_boot 1000: about
0.5 s in the block modes; the iid mode draws 1.25e9 row indices and takes about 12 s.
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.kernels.bootstrap import draw_counts, weighted_medians
from mf_pipeline.lib.research.labels import FORWARD_COLUMNS, FORWARD_RETURN_COLUMNS

MODES: tuple[str, ...] = ("block", "circular", "iid")
IID_BATCH = 128  # resamples per random matrix in the iid mode, as in the old tool
EDGE = "_edge_"  # prefix of a return outcome minus its ticker's mean, the edge test's values

STATE_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "state_id": pl.Int32,
    "outcome_name": pl.Utf8,
    "n": pl.Int64,
    "mean_obs": pl.Float64,
    "mean_ci_lo": pl.Float64,
    "mean_ci_hi": pl.Float64,
    "median_obs": pl.Float64,
    "median_ci_lo": pl.Float64,
    "median_ci_hi": pl.Float64,
    "hit_rate_obs": pl.Float64,
    "hit_rate_ci_lo": pl.Float64,
    "hit_rate_ci_hi": pl.Float64,
    "bootstrap_method": pl.Utf8,
    "bootstrap_mode": pl.Utf8,
    "bootstrap_sample_n": pl.Int64,
    "mean_p_value": pl.Float64,
    "mean_p_adjusted": pl.Float64,
    "mean_excess_obs": pl.Float64,
    "block_length": pl.Int32,
}
PAIRWISE_SCHEMA: dict[str, pl.DataType] = {
    "state_a": pl.Int32,
    "state_b": pl.Int32,
    "n_a": pl.Int64,
    "n_b": pl.Int64,
    "outcome_name": pl.Utf8,
    "diff_mean_obs": pl.Float64,
    "diff_ci_lo": pl.Float64,
    "diff_ci_hi": pl.Float64,
    "diff_sign_consistent": pl.Boolean,
    "diff_boot_mean": pl.Float64,
    "p_value": pl.Float64,
    "p_adjusted_holm": pl.Float64,
    "p_adjusted_bh": pl.Float64,
    "significant": pl.Boolean,
}


@dataclass
class BootstrapResult:
    """``bootstrap_state_summary``, ``bootstrap_pairwise_diff`` and ``bootstrap_meta.json``."""

    state_summary: pl.DataFrame
    pairwise: pl.DataFrame
    meta: dict[str, Any]


@dataclass
class _Replicates:
    """Replicate statistics of one (state, outcome) cell; NaN where a replicate drew none of
    the cell's dates."""

    mean: np.ndarray
    median: np.ndarray
    hit: np.ndarray
    total: np.ndarray  # rows drawn (with multiplicity)


def outcome_horizon(name: str) -> int:
    """Bars an outcome looks ahead: the trailing number of its name (``fwd_ret_20`` -> 20)."""
    m = re.search(r"_(\d+)$", name)
    return int(m.group(1)) if m else 1


def _block_length(
    daily: np.ndarray, horizon: int, given: int | None, mode: str, n_dates: int
) -> tuple[int, str, float | None]:
    """(block length, how it was chosen, Politis-White estimate or None)."""
    if given is not None:
        if given < 1:
            raise ValueError(f"block_length must be >= 1, got {given}")
        return min(int(given), max(n_dates, 1)), "given", None
    pw = None
    if daily.size >= 10 and np.std(daily) > 0:
        from arch.bootstrap import optimal_block_length  # ~1.3 s: imported where used only

        column = "stationary" if mode == "block" else "circular"
        pw = float(optimal_block_length(daily)[column].iloc[0])
    length = max(math.ceil(pw) if pw is not None and np.isfinite(pw) else 1, horizon)
    return min(length, max(n_dates, 1)), "politis_white_min_horizon", pw


def _date_weights(
    n_dates: int, n_boot: int, mode: str, block_length: int, rng: np.random.Generator
) -> np.ndarray:
    """(n_boot x n_dates) float64 matrix: how often each date was drawn in each replicate."""
    from arch.bootstrap import CircularBlockBootstrap, StationaryBootstrap

    cls = StationaryBootstrap if mode == "block" else CircularBlockBootstrap
    bs = cls(block_length, np.arange(n_dates), seed=rng)
    flat = np.empty(n_boot * n_dates, dtype=np.int64)
    for b, _ in enumerate(bs.bootstrap(n_boot)):
        flat[b * n_dates : (b + 1) * n_dates] = bs.index + b * n_dates
    counts = np.bincount(flat, minlength=n_boot * n_dates)
    return counts.reshape(n_boot, n_dates).astype(np.float64)


def _weighted_replicates(
    cells: Sequence[tuple[np.ndarray, np.ndarray, bool]], weights: np.ndarray
) -> list[_Replicates]:
    """Replicate mean, median and hit rate of every cell ``(values, units, is_return)`` when
    unit ``u`` carries ``weights[b, u]`` copies in replicate ``b``.

    Per cell, four per-unit vectors (sum, count, positives, count below the observed median)
    go into one (units x 4k) matrix, so a single product with ``weights`` gives every
    replicate's sums of every cell.
    """
    n_units = weights.shape[1]
    per_unit = np.empty((n_units, 4 * len(cells)))
    ordered = []
    for k, (values, units, _) in enumerate(cells):
        order = np.argsort(values)
        sorted_units = np.ascontiguousarray(units[order])
        start = values.size // 2
        per_unit[:, 4 * k] = np.bincount(units, weights=values, minlength=n_units)
        per_unit[:, 4 * k + 1] = np.bincount(units, minlength=n_units)
        per_unit[:, 4 * k + 2] = np.bincount(units[values > 0], minlength=n_units)
        per_unit[:, 4 * k + 3] = np.bincount(sorted_units[:start], minlength=n_units)
        ordered.append((np.ascontiguousarray(values[order]), sorted_units, start))
    agg = weights @ per_unit
    out = []
    for k, ((sorted_vals, sorted_units, start), (_, _, is_return)) in enumerate(
        zip(ordered, cells, strict=True)
    ):
        sums, total, positives, below = (np.ascontiguousarray(agg[:, 4 * k + j]) for j in range(4))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / total
            hit = positives / total if is_return else np.full(mean.size, np.nan)
        median = np.empty(weights.shape[0])
        weighted_medians(sorted_vals, sorted_units, weights, start, below, total, median)
        out.append(_Replicates(mean=mean, median=median, hit=hit, total=total))
    return out


def _iid_replicates(
    values: Sequence[np.ndarray], n_boot: int, is_return: bool, rng: np.random.Generator
) -> list[_Replicates]:
    """The old tool's row-iid resampling: batches of ``IID_BATCH`` index matrices drawn from
    ``rng`` in its order; each replicate turned into row counts for the weighted statistics.
    ``values``: equally long row vectors that share the draws (an outcome, its edge values)."""
    m = values[0].size
    parts = []
    for first in range(0, n_boot, IID_BATCH):
        size = min(IID_BATCH, n_boot - first)
        idx = rng.integers(0, m, size=(size, m))
        counts = np.zeros((size, m))
        draw_counts(idx, counts)
        parts.append(_weighted_replicates([(v, np.arange(m), is_return) for v in values], counts))
    fields = ("mean", "median", "hit", "total")
    return [_Replicates(*(np.concatenate([getattr(p[k], f) for p in parts]) for f in fields))
            for k in range(len(values))]  # fmt: skip


def _ci(reps: np.ndarray, ci: float) -> tuple[float | None, float | None]:
    """Percentile interval over the finite replicates (numpy linear quantile)."""
    finite = reps[np.isfinite(reps)]
    if finite.size == 0:
        return None, None
    lo, hi = np.quantile(finite, [(1.0 - ci) / 2.0, 1.0 - (1.0 - ci) / 2.0])
    return float(lo), float(hi)


def centred_p_value(reps: np.ndarray, observed: float) -> float | None:
    """Two-sided bootstrap p of "true value = 0": the replicates centred on the observed
    value play the null distribution, p = (1 + #|r - obs| >= |obs|) / (B + 1)."""
    finite = reps[np.isfinite(reps)]
    if finite.size == 0 or not np.isfinite(observed):
        return None
    extreme = np.count_nonzero(np.abs(finite - observed) >= abs(observed))
    return float((1 + extreme) / (finite.size + 1))


def _adjust(p: list[float | None], method: str) -> list[float | None]:
    """``multipletests`` adjusted p-values over the non-null entries, nulls kept."""
    from statsmodels.stats.multitest import multipletests

    idx = [i for i, v in enumerate(p) if v is not None]
    out: list[float | None] = [None] * len(p)
    if idx:
        # statsmodels' Holm branch runs gc.collect() on every call (~0.1 s in a large
        # process); with the current heap frozen that collection has nothing to walk.
        gc.freeze()
        try:
            adj = multipletests([p[i] for i in idx], method=method)[1]
        finally:
            gc.unfreeze()
        for i, v in zip(idx, adj, strict=True):
            out[i] = float(v)
    return out


def _outcomes(frame: pl.DataFrame, outcomes: Sequence[str] | None) -> list[str]:
    if outcomes is None:
        chosen = [c for c in FORWARD_COLUMNS if c in frame.columns]
    else:
        chosen = list(dict.fromkeys(outcomes))
        missing = [c for c in chosen if c not in frame.columns]
        if missing:
            raise ValueError(f"outcome columns not in the frame: {missing}")
    if not chosen:
        raise ValueError("no outcome column to bootstrap")
    return chosen


def _check_args(n_boot: int, ci: float, mode: str, alpha: float, max_points: int) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if mode not in MODES:
        raise ValueError(f"bootstrap mode must be one of {MODES}, got {mode!r}")
    if max_points < 1:
        raise ValueError(f"max_points_per_state must be >= 1, got {max_points}")


def _pooled(parts: list[tuple[np.ndarray, _Replicates]]) -> tuple[float, np.ndarray]:
    """All-states mean of one outcome's edge values and its replicates (sum of the states'
    drawn sums over their drawn counts), the reference of the edge test; one state is its own
    reference."""
    if len(parts) == 1:
        values, reps = parts[0]
        return float(values.mean()), reps.mean
    obs = sum(float(v.sum()) for v, _ in parts) / sum(v.size for v, _ in parts)
    sums = sum(np.nan_to_num(r.mean * r.total) for _, r in parts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return obs, sums / sum(r.total for _, r in parts)


def _state_row(
    state: int,
    outcome: str,
    n: int,
    values: np.ndarray,
    reps: _Replicates | None,
    ci: float,
    mode: str,
    block_length: int | None,
    edge: tuple[np.ndarray, _Replicates, tuple[float, np.ndarray]] | None,
) -> dict[str, Any]:
    """``edge``: the cell's edge values (outcome minus its ticker's mean), their replicates and
    the all-states reference (:func:`_pooled`)."""
    row: dict[str, Any] = {
        "state_id": state,
        "outcome_name": outcome,
        "n": n,
        "bootstrap_method": "percentile",
        "bootstrap_mode": mode,
        "bootstrap_sample_n": values.size,
        "block_length": block_length,
    }
    if reps is None:
        return row
    is_return = outcome in FORWARD_RETURN_COLUMNS
    row["mean_obs"] = float(values.mean())
    row["median_obs"] = float(np.median(values))
    row["mean_ci_lo"], row["mean_ci_hi"] = _ci(reps.mean, ci)
    row["median_ci_lo"], row["median_ci_hi"] = _ci(reps.median, ci)
    if is_return:
        row["hit_rate_obs"] = float(np.mean(values > 0))
        row["hit_rate_ci_lo"], row["hit_rate_ci_hi"] = _ci(reps.hit, ci)
        if edge is not None:
            edge_values, edge_reps, (ref_obs, ref_reps) = edge
            row["mean_excess_obs"] = float(edge_values.mean()) - ref_obs
            row["mean_p_value"] = centred_p_value(edge_reps.mean - ref_reps,
                                                  row["mean_excess_obs"])
    return row


def _pairwise(
    states: list[int],
    outcome: str,
    counts: dict[int, int],
    observed: dict[int, float],
    means: dict[int, np.ndarray],
    ci: float,
    alpha: float,
) -> pl.DataFrame:
    rows = []
    for i, a in enumerate(states):
        for b in states[i + 1 :]:
            if a not in means or b not in means:
                continue
            diff = means[a] - means[b]
            obs = observed[a] - observed[b]
            lo, hi = _ci(diff, ci)
            finite = diff[np.isfinite(diff)]
            rows.append(
                {
                    "state_a": a,
                    "state_b": b,
                    "n_a": counts[a],
                    "n_b": counts[b],
                    "outcome_name": outcome,
                    "diff_mean_obs": obs,
                    "diff_ci_lo": lo,
                    "diff_ci_hi": hi,
                    "diff_sign_consistent": lo is not None
                    and hi is not None
                    and (lo > 0 or hi < 0),
                    "diff_boot_mean": float(finite.mean()) if finite.size else None,
                    "p_value": centred_p_value(diff, obs),
                }
            )
    holm = _adjust([r["p_value"] for r in rows], "holm")
    bh = _adjust([r["p_value"] for r in rows], "fdr_bh")
    for r, h, q in zip(rows, holm, bh, strict=True):
        r["p_adjusted_holm"], r["p_adjusted_bh"] = h, q
        r["significant"] = h is not None and h < alpha
    return (
        pl.DataFrame(rows, schema=PAIRWISE_SCHEMA) if rows else pl.DataFrame(schema=PAIRWISE_SCHEMA)
    )


def run_bootstrap(
    frame: pl.DataFrame,
    *,
    outcomes: Sequence[str] | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    mode: str = "block",
    block_length: int | None = None,
    random_state: int = 42,
    pairwise_outcome: str = "fwd_ret_10",
    max_points_per_state: int = 50_000,
    alpha: float = 0.05,
) -> BootstrapResult:
    """Per-state percentile intervals, per-state mean tests and pairwise differences.

    ``frame`` is an adapted frame (``adapter.adapt``). One ``numpy`` generator seeded with
    ``random_state`` drives everything: first the date draw (block modes), then the subsets
    and, in the iid mode, the row draws in the old tool's order.
    """
    outs = _outcomes(frame, outcomes)
    _check_args(n_boot, ci, mode, alpha, max_points_per_state)
    daily_col = pairwise_outcome if pairwise_outcome in frame.columns else outs[0]
    edged = [o for o in outs if o in FORWARD_RETURN_COLUMNS]
    df = (
        frame.select(
            "state_id", "ticker",
            pl.col("trade_date").rank("dense").cast(pl.Int64).sub(1).alias("date_code"),
            *(pl.col(c).cast(pl.Float64).fill_nan(None) for c in dict.fromkeys([*outs, daily_col])),
        )
        .filter(pl.col("state_id").is_not_null())
        .with_columns((pl.col(o) - pl.col(o).mean().over("ticker")).alias(EDGE + o) for o in edged)
    )  # fmt: skip
    n_dates = int(df["date_code"].max()) + 1 if df.height else 0
    rng = np.random.default_rng(random_state)

    length = method = pw = None
    weights = None
    if mode != "iid" and df.height:
        daily = (
            df.group_by("date_code")
            .agg(pl.col(daily_col).mean())
            .sort("date_code")
            .drop_nulls()[daily_col]
            .to_numpy()
        )
        horizon = max(outcome_horizon(o) for o in outs)
        length, method, pw = _block_length(daily, horizon, block_length, mode, n_dates)
        weights = _date_weights(n_dates, n_boot, mode, length, rng)

    # Rows stay in frame order within a state (ticker, trade_date for an adapted frame), so
    # the seeded subsets and the iid draws are those of the old tool's (state, ticker, date).
    parts = df.partition_by("state_id", as_dict=True, maintain_order=True)
    states = sorted(int(k[0]) for k in parts)
    cells: list[tuple[int, str, int, np.ndarray, np.ndarray]] = []
    reps: list[_Replicates | None] = []
    edge_values: dict[int, np.ndarray] = {}  # cell index -> its rows' edge values
    edge_reps: dict[int, _Replicates] = {}
    for state in states:
        part = parts[(state,)]
        units = part["date_code"].to_numpy()
        for outcome in outs:
            vals = part[outcome].fill_null(np.nan).to_numpy()
            idx = np.flatnonzero(np.isfinite(vals))
            n_full = idx.size
            if idx.size > max_points_per_state:
                idx = rng.choice(idx, size=max_points_per_state, replace=False)
            if outcome in edged and idx.size:
                edge_values[len(cells)] = part[EDGE + outcome].to_numpy()[idx]
            cells.append((state, outcome, n_full, vals[idx], units[idx]))
            if weights is None and idx.size:
                is_return = outcome in FORWARD_RETURN_COLUMNS
                k = len(cells) - 1
                drawn = _iid_replicates([vals[idx], *([edge_values[k]] if k in edge_values
                                                      else [])], n_boot, is_return, rng)
                reps.append(drawn[0])
                if k in edge_values:
                    edge_reps[k] = drawn[1]
            else:
                reps.append(None)
    if weights is not None:
        todo = [k for k, c in enumerate(cells) if c[3].size]
        done = _weighted_replicates(
            [(cells[k][3], cells[k][4], cells[k][1] in FORWARD_RETURN_COLUMNS) for k in todo]
            + [(v, cells[k][4], True) for k, v in edge_values.items()],
            weights,
        )
        for k, r in zip(todo, done[: len(todo)], strict=True):
            reps[k] = r
        edge_reps = dict(zip(edge_values, done[len(todo) :], strict=True))

    rows: list[dict[str, Any]] = []
    pair_means: dict[int, np.ndarray] = {}
    pair_obs: dict[int, float] = {}
    full_n: dict[tuple[int, str], int] = {}
    references = {o: _pooled([(edge_values[k], edge_reps[k]) for k in edge_values
                              if cells[k][1] == o])
                  for o in {cells[k][1] for k in edge_values}}  # fmt: skip
    for k, ((state, outcome, n_full, values, _), rep) in enumerate(zip(cells, reps, strict=True)):
        full_n[(state, outcome)] = n_full
        edge = ((edge_values[k], edge_reps[k], references[outcome]) if k in edge_values
                else None)  # fmt: skip
        row = _state_row(state, outcome, n_full, values, rep, ci, mode, length, edge)
        rows.append(row)
        if outcome == pairwise_outcome and rep is not None:
            pair_means[state] = rep.mean
            pair_obs[state] = row["mean_obs"]

    for outcome in outs:
        cells = [r for r in rows if r["outcome_name"] == outcome]
        for r, adj in zip(
            cells, _adjust([r.get("mean_p_value") for r in cells], "holm"), strict=True
        ):
            r["mean_p_adjusted"] = adj
    summary = (
        pl.DataFrame(rows, schema=STATE_SUMMARY_SCHEMA)
        if rows
        else (pl.DataFrame(schema=STATE_SUMMARY_SCHEMA))
    )
    summary = summary.sort("state_id", "outcome_name")
    counts = {s: full_n.get((s, pairwise_outcome), 0) for s in states}
    pairwise = _pairwise(states, pairwise_outcome, counts, pair_obs, pair_means, ci, alpha)
    meta = {
        "generated_ts": datetime.now(UTC).isoformat(),
        "outcomes": outs,
        "n_boot": n_boot,
        "ci": ci,
        "bootstrap_mode": mode,
        "block_length": length,
        "block_length_method": method,
        "block_length_politis_white": pw,
        "random_state": random_state,
        "pairwise_outcome": pairwise_outcome,
        "state_count": len(states),
        "alpha": alpha,
        "correction": "holm",
        "resample_unit": "row" if mode == "iid" else "date_block",
        "n_dates": n_dates,
        "max_points_per_state": max_points_per_state,
    }
    return BootstrapResult(state_summary=summary, pairwise=pairwise, meta=meta)
