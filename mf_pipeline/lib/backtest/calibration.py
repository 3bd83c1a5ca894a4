"""Execution-realism calibration (backtest_ops.md §7.7): how the realism filter treats a set of
candidate signals, and which thresholds keep a target share of them. No PnL is simulated.

Input is an execution frame (the output of :func:`execution.apply_execution`: the per-row
quantities ``close``, ``exec_dollar_vol_20``, ``exec_vol_pct``, ``exec_history_bars``, the
current profile's ``exec_filter_*_fail`` flags and the candidate columns). Everything here is a
pure function of that frame and the settings.

The threshold sweep does not rerun the filter per combination. Each filter's pass sets are
nested in its threshold (a row that passes a price floor of 5 passes every lower floor), so a
row is summarised per filter by a *level*: how many of the swept values, ordered from loosest
to strictest, it passes. One histogram of rows over the four levels (all rows, candidate rows,
candidate rows per year, and candidate sums of close, dollar volume and volatility), turned
into suffix sums, answers every combination at once: "passes all four" is the cell block with
each level above the combination's rank. The whole sweep costs one pass over the rows.

Eligibility rates, fault 19: the spec's ``eligibility_rate`` is ROW-level (eligible bars over all
bars, whether or not the bar carries a signal). It is kept, and the recommendation bands still
use it as the old tool did; ``candidate_eligibility_rate`` (candidate signals kept over candidate
signals) is reported beside it everywhere because that is the share a researcher expects.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.backtest.execution import FILTERS, REASONS, vol_threshold

SUBSETS = ("candidate_all", "candidate_eligible", "candidate_suppressed", "suppressed_price",
           "suppressed_liquidity", "suppressed_vol", "suppressed_warmup")
METRICS = {"close": "close", "dollar_vol_20": "exec_dollar_vol_20",
           "vol_metric": "exec_vol_pct", "history_bars": "exec_history_bars"}
QUANTILES = (("p01", 0.01), ("p05", 0.05), ("p10", 0.10), ("p25", 0.25), ("p50", 0.50),
             ("p75", 0.75), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99))
DISTRIBUTION_COLUMNS = ("year", "subset", "metric", "count", "finite_count", "null_count", "min",
                        *[name for name, _ in QUANTILES], "max", "mean", "std")
FLAG_COLUMNS = tuple(f"{name}_fail" for name, _ in FILTERS)
"""The reason-overlap columns: price_fail, liquidity_fail, vol_fail, warmup_fail."""
PRECEDENCE = [label for _, label in FILTERS]
COLUMNS = ("ticker", "trade_date", *METRICS.values(), "exec_candidate_before",
           "exec_candidate_after", "exec_suppressed_signal", "execution_eligible",
           "execution_filter_reason", *[f"exec_filter_{name}_fail" for name, _ in FILTERS])
"""The execution-frame columns every function here reads (select them once: a backtest frame
carries dozens more that filtering would copy)."""
PROFILE_BANDS = ("lite", "strict")
SCORE_FLOOR = -1e9
"""Sort value of a null score (the spec's ``null → −1e9``)."""
SWEEP_KEYS = ("min_price", "min_dollar_vol20", "max_vol_pct_input", "min_history_bars")


def detect_source_type(columns: Sequence[str], state_col: str | None = None) -> str:
    """``--source-type auto`` (§7.7 step 1): the first state column present decides.

    ``hmm_state`` or the causal ``hmm_state_filtered`` → hmm, else ``flow_state_code`` → flow,
    else ``cluster_id`` → cluster, else a given ``state_col`` present in the file → hmm.
    """
    cols = set(columns)
    if cols & {"hmm_state", "hmm_state_filtered"}:
        return "hmm"
    if "flow_state_code" in cols:
        return "flow"
    if "cluster_id" in cols:
        return "cluster"
    if state_col is not None and state_col in cols:
        return "hmm"
    raise ValueError("cannot detect the source type: the file has none of hmm_state, "
                     "hmm_state_filtered, flow_state_code, cluster_id"
                     + (f" or {state_col!r}" if state_col else "")
                     + "; pass --source-type (and --state-col)")


def inferred_hmm_directions(frame: pl.DataFrame) -> dict[int, str]:
    """Direction per HMM state from the rows' own ``fwd_ret_10`` mean (finite values): > 0
    LONG_BIAS, < 0 SHORT_BIAS, else UNCONFIRMED (§3 calibration fallback; look-ahead by
    construction, so only for calibration without a map or a validation run)."""
    if "fwd_ret_10" not in frame.columns:
        raise ValueError("HMM directions cannot be inferred: no fwd_ret_10 column; pass "
                         "--state-map-file or --validation-run-dir")
    ret = pl.col("fwd_ret_10").cast(pl.Float64)
    means = (frame.group_by("state_id")
             .agg(ret.filter(ret.is_finite()).mean().alias("m"))
             .sort("state_id"))  # fmt: skip
    out = {int(s): ("LONG_BIAS" if m is not None and m > 0 else
                    "SHORT_BIAS" if m is not None and m < 0 else "UNCONFIRMED")
           for s, m in means.iter_rows()}  # fmt: skip
    if not any(d != "UNCONFIRMED" for d in out.values()):
        raise ValueError("HMM directions cannot be inferred: no state has a finite non-zero "
                         "fwd_ret_10 mean; pass --state-map-file or --validation-run-dir")
    return out


# ---------------------------------------------------------------------------------------------
# distributions, waterfall, overlap, first fail (current profile)


def _subset_masks() -> dict[str, pl.Expr]:
    suppressed = pl.col("exec_suppressed_signal")
    masks = {"candidate_all": pl.col("exec_candidate_before"),
             "candidate_eligible": pl.col("exec_candidate_after"),
             "candidate_suppressed": suppressed}
    for name, _ in FILTERS:
        masks[f"suppressed_{name}"] = suppressed & pl.col(f"exec_filter_{name}_fail")
    return masks


def _describe(values: np.ndarray) -> dict[str, Any]:
    """The §7.7 statistics of one group (NaN = missing): quantiles linear, std ddof 1 with 0.0
    for a single value, min..std over the finite values (null when there is none)."""
    finite = values[np.isfinite(values)]
    out: dict[str, Any] = {"count": values.size, "finite_count": finite.size,
                           "null_count": values.size - finite.size}
    if not finite.size:
        return out | dict.fromkeys(DISTRIBUTION_COLUMNS[6:])
    qs = np.quantile(finite, [q for _, q in QUANTILES])  # one partition for all nine
    return out | {"min": finite.min(), **dict(zip([n for n, _ in QUANTILES], qs, strict=True)),
                  "max": finite.max(), "mean": finite.mean(),
                  "std": finite.std(ddof=1) if finite.size > 1 else 0.0}


def distributions(frame: pl.DataFrame, by_year: bool = False) -> pl.DataFrame:
    """``execution_calibration_distribution.csv`` (``year`` null) or, with ``by_year``, the
    same rows per calendar year (``…_by_year.csv``; only years where the subset has rows).

    Every subset × metric row is present overall, also for an empty subset (count 0).
    ``null_count`` counts the missing and the non-finite values (count − finite_count)."""
    values = {m: frame[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
              for m, c in METRICS.items()}
    year = frame["trade_date"].dt.year().to_numpy()
    masks = frame.select(**_subset_masks())
    records = []
    for subset in SUBSETS:
        rows = np.flatnonzero(masks[subset].to_numpy())
        groups: list[tuple[int | None, np.ndarray]] = [(None, rows)]
        if by_year:
            rows = rows[np.argsort(year[rows], kind="stable")]
            years, starts = np.unique(year[rows], return_index=True)
            parts = np.split(rows, starts[1:]) if rows.size else []
            groups = [(int(y), part) for y, part in zip(years, parts, strict=True)]
        records += [{"year": y, "subset": subset, "metric": m, **_describe(v[part])}
                    for y, part in groups for m, v in values.items()]
    order = {s: i for i, s in enumerate(SUBSETS)} | {m: i for i, m in enumerate(METRICS)}
    schema = {c: pl.Int32 if c == "year" else pl.String if c in ("subset", "metric")
              else pl.Int64 if c.endswith("count") else pl.Float64
              for c in DISTRIBUTION_COLUMNS}  # fmt: skip
    out = pl.DataFrame(records, schema=schema)
    return (
        out.with_columns(pl.col("subset").replace_strict(order, return_dtype=pl.Int32)
                         .alias("_s"),
                         pl.col("metric").replace_strict(order, return_dtype=pl.Int32)
                         .alias("_m"))
        .sort("year", "_s", "_m", nulls_last=False)
        .select(DISTRIBUTION_COLUMNS)
    )  # fmt: skip


def _share(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def waterfall(frame: pl.DataFrame) -> dict[str, Any]:
    """``execution_calibration_waterfall.json``: candidates → eligible / suppressed, and
    suppressed rows failing each filter (non-exclusive: a row can count under several)."""
    suppressed = pl.col("exec_suppressed_signal")
    row = frame.select(
        pl.col("exec_candidate_before").sum().cast(pl.Int64).alias("candidates"),
        pl.col("exec_candidate_after").sum().cast(pl.Int64).alias("eligible"),
        *[(suppressed & pl.col(f"exec_filter_{name}_fail")).sum().cast(pl.Int64).alias(name)
          for name, _ in FILTERS],
    ).row(0, named=True)
    total, eligible = int(row["candidates"] or 0), int(row["eligible"] or 0)
    supp = total - eligible
    out: dict[str, Any] = {
        "candidate_signals_total": total, "eligible_signals_total": eligible,
        "suppressed_signals_total": supp, "eligible_rate": _share(eligible, total),
        "suppressed_rate": _share(supp, total),
    }
    for name, _ in FILTERS:
        out[f"suppressed_by_{name}_count"] = int(row[name] or 0)
        out[f"suppressed_by_{name}_share"] = _share(int(row[name] or 0), supp)
    out["first_fail_precedence"] = list(PRECEDENCE)
    return out


def _suppressed_flags(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("exec_suppressed_signal")).select(
        pl.col(f"exec_filter_{name}_fail").alias(f"{name}_fail") for name, _ in FILTERS)


def reason_overlap(frame: pl.DataFrame) -> pl.DataFrame:
    """``execution_calibration_reason_overlap.csv``: suppressed rows per combination of the four
    fail flags; count desc, ties by the flags (price first) so the order is stable."""
    flags = _suppressed_flags(frame)
    return (flags.group_by(FLAG_COLUMNS).agg(pl.len().cast(pl.Int64).alias("count"))
            .with_columns((pl.col("count") / max(flags.height, 1)).alias("share_suppressed"))
            .sort(["count", *FLAG_COLUMNS], descending=[True] + [True] * len(FLAG_COLUMNS)))


def first_fail(frame: pl.DataFrame) -> pl.DataFrame:
    """``execution_calibration_first_fail.csv``: each suppressed row's first failing filter in
    the precedence price → liquidity → volatility → warm-up; count desc, ties by precedence."""
    flags = _suppressed_flags(frame)
    expr = pl.when(pl.col(FLAG_COLUMNS[0])).then(pl.lit(PRECEDENCE[0]))
    for flag, label in zip(FLAG_COLUMNS[1:], PRECEDENCE[1:], strict=True):
        expr = expr.when(pl.col(flag)).then(pl.lit(label))
    rank = {label: i for i, label in enumerate(PRECEDENCE)}
    return (flags.select(expr.alias("first_fail_reason"))
            .group_by("first_fail_reason").agg(pl.len().cast(pl.Int64).alias("count"))
            .with_columns((pl.col("count") / max(flags.height, 1)).alias("share_suppressed"),
                          pl.col("first_fail_reason").replace_strict(rank, default=len(rank))
                          .alias("_p"))
            .sort(["count", "_p"], descending=[True, False]).drop("_p"))  # fmt: skip


def filter_summary(frame: pl.DataFrame, base: Mapping[str, Any]) -> dict[str, Any]:
    """The current profile's filter summary (§7.4 keys) recounted on the calibrated rows.

    ``base`` is :func:`execution.apply_execution`'s summary of the full history: parameters,
    volatility source, unit and warnings are taken from it; every count is of ``frame``.
    ``candidate_eligibility_rate`` (kept / candidate signals) is ours (fault 19).
    """
    supp = pl.col("exec_suppressed_signal")
    row = frame.select(
        pl.col("execution_eligible").sum().cast(pl.Int64).alias("eligible"),
        pl.col("exec_candidate_before").sum().cast(pl.Int64).alias("before"),
        pl.col("exec_candidate_after").sum().cast(pl.Int64).alias("after"),
        *[(supp & (pl.col("execution_filter_reason") == r)).sum().cast(pl.Int64).alias(r)
          for r in REASONS],
    ).row(0, named=True)
    total, eligible = frame.height, int(row["eligible"] or 0)
    before, after = int(row["before"] or 0), int(row["after"] or 0)
    suppressed = before - after
    counts = {r: int(row[r] or 0) for r in REASONS}
    shares = {r: _share(c, suppressed) for r, c in counts.items()}
    keep = ("profile_name", "params_used", "vol_metric_source", "vol_unit_detected",
            "vol_raw_median", "vol_raw_p90", "vol_threshold_input",
            "vol_threshold_effective_decimal", "vol_threshold_effective_pct",
            "vol_threshold_input_interpretation", "vol_unit_warnings", "filters_enabled")
    out: dict[str, Any] = {
        **{k: base.get(k) for k in keep},
        "rows_total": total, "rows_eligible": eligible, "rows_ineligible": total - eligible,
        "eligibility_rate": eligible / total if total else None,
        "candidate_eligibility_rate": after / before if before else None,
        "candidate_signals_before_filters": before, "candidate_signals_after_filters": after,
        "suppressed_signal_count": suppressed,
        "suppressed_signal_share": _share(suppressed, before),
        "suppressed_by_reason": shares, "suppressed_by_reason_count": counts,
    }
    for name, label in FILTERS:
        out[f"exec_suppressed_by_{name}_count"] = counts[label]
        out[f"exec_suppressed_by_{name}_share"] = shares[label]
    return out


def units(execution_summary: Mapping[str, Any], vol_input_unit_mode: str) -> dict[str, Any]:
    """``execution_calibration_units.json`` from the filter summary of the current profile."""
    keys = ("vol_metric_source", "vol_unit_detected", "vol_threshold_input",
            "vol_threshold_effective_decimal", "vol_threshold_effective_pct")
    return {**{k: execution_summary.get(k) for k in keys},
            "vol_input_unit_mode": vol_input_unit_mode,
            "qa_warnings": list(execution_summary.get("vol_unit_warnings") or [])}


# ---------------------------------------------------------------------------------------------
# threshold sweep


@dataclass(frozen=True)
class SweepAxes:
    """The four swept threshold lists (None = that filter off), in the user's order."""

    min_price: tuple[float | None, ...]
    min_dollar_vol20: tuple[float | None, ...]
    max_vol_pct: tuple[float | None, ...]
    min_history_bars: tuple[int | None, ...]

    @classmethod
    def of(cls, values: Mapping[str, Sequence[Any]]) -> SweepAxes:
        return cls(*(tuple(values[k]) for k in ("min_price", "min_dollar_vol20", "max_vol_pct",
                                                "min_history_bars")))

    def combos(self) -> list[tuple[Any, ...]]:
        """The Cartesian product in list order, the last list varying fastest (§7.7)."""
        return list(itertools.product(self.min_price, self.min_dollar_vol20, self.max_vol_pct,
                                      self.min_history_bars))


def _floor_levels(x: np.ndarray, thresholds: Sequence[float | None]
                  ) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    """(level per row, rank per threshold, number of levels) of a "pass if x >= t" filter.

    Thresholds ordered loosest first (None = off, passed by every row, then ascending t): the
    row's level counts the leading thresholds it passes, a threshold's rank counts the ones
    strictly looser, so row passes t ⟺ level > rank(t). Non-finite x passes only None.
    """
    off = int(any(t is None for t in thresholds))
    values = np.unique(np.array([t for t in thresholds if t is not None], dtype=np.float64))
    finite = np.isfinite(x)
    level = np.full(x.shape, off, dtype=np.int64)
    level[finite] += np.searchsorted(values, x[finite], side="right")
    rank = np.array([0 if t is None else off + int(np.searchsorted(values, t, side="left"))
                     for t in thresholds], dtype=np.int64)  # fmt: skip
    return level, rank, off + values.size + 1


@dataclass(frozen=True)
class RowQuantities:
    """The per-row inputs of the sweep, as numpy arrays (computed once per calibration)."""

    close: np.ndarray
    dollar_vol_20: np.ndarray
    vol_pct: np.ndarray
    history_bars: np.ndarray
    candidate: np.ndarray
    year: np.ndarray

    @classmethod
    def of(cls, frame: pl.DataFrame) -> RowQuantities:
        def num(col: str) -> np.ndarray:
            return frame[col].cast(pl.Float64).fill_null(np.nan).to_numpy()

        return cls(num("close"), num("exec_dollar_vol_20"), num("exec_vol_pct"),
                   num("exec_history_bars"), frame["exec_candidate_before"].to_numpy(),
                   frame["trade_date"].dt.year().to_numpy())  # fmt: skip


def sweep(rows: RowQuantities, axes: SweepAxes, vol_input_unit_mode: str) -> pl.DataFrame:
    """Per combination the counts and shares of one filter run with those four thresholds
    (module docstring; equal to :func:`execution.apply_execution` on the same rows). Columns of
    ``execution_calibration_grid.csv`` but the two unit-detection ones, in product order."""
    combos = axes.combos()
    units = {c: vol_threshold(c, vol_input_unit_mode) for c in axes.max_vol_pct}
    caps = [units[c][0] for c in axes.max_vol_pct]
    # volatility passes when vol <= cap: a floor on -vol with thresholds -cap
    dims = [_floor_levels(rows.close, axes.min_price),
            _floor_levels(rows.dollar_vol_20, axes.min_dollar_vol20),
            _floor_levels(-rows.vol_pct, [None if c is None else -c for c in caps]),
            _floor_levels(rows.history_bars, axes.min_history_bars)]
    shape = tuple(n for _, _, n in dims)
    cell = np.ravel_multi_index(tuple(level for level, _, _ in dims), shape)
    cells = int(np.prod(shape))
    cand = rows.candidate.astype(bool)
    years, year_idx = np.unique(rows.year[cand], return_inverse=True)

    def suffix(counts: np.ndarray, lead: tuple[int, ...] = ()) -> np.ndarray:
        out = counts.reshape(lead + shape)
        for axis in range(len(lead), out.ndim):
            out = np.flip(np.cumsum(np.flip(out, axis), axis=axis), axis)
        return out

    c_cell = cell[cand]
    sums = {"all": np.bincount(cell, minlength=cells),
            "cand": np.bincount(c_cell, minlength=cells)}
    for name, x in (("close", rows.close[cand]), ("dv", rows.dollar_vol_20[cand]),
                    ("vol", rows.vol_pct[cand])):
        ok = np.isfinite(x)
        sums[name] = np.bincount(c_cell[ok], weights=x[ok], minlength=cells)
        sums[f"{name}_n"] = np.bincount(c_cell[ok], minlength=cells)
    suf = {k: suffix(v.astype(np.float64)) for k, v in sums.items()}
    by_year = suffix(np.bincount(year_idx * cells + c_cell, minlength=years.size * cells)
                     .astype(np.float64), (years.size,))  # fmt: skip
    before_year = np.bincount(year_idx, minlength=years.size).astype(np.float64)

    idx = [np.array([r[i] for r in itertools.product(*(d[1] for d in dims))]) + 1
           for i in range(4)]
    zero = np.zeros_like(idx[0])
    after = suf["cand"][tuple(idx)]
    before, n_rows = float(cand.sum()), float(rows.candidate.size)
    supp = before - after
    only = [suf["cand"][tuple(zero if j == i else idx[j] for j in range(4))] - after
            for i in range(4)]

    def ratio(num: np.ndarray, den: np.ndarray | float) -> np.ndarray:
        den = np.broadcast_to(np.asarray(den, dtype=np.float64), num.shape)
        out = np.full(num.shape, np.nan)
        np.divide(num, den, out=out, where=den > 0)
        return out

    supp_shares = [np.nan_to_num(ratio(o, supp), nan=0.0) for o in only]
    year_rate = ratio(by_year[(slice(None), *idx)], before_year[:, None])
    has_year, none = years.size > 0, np.full(len(combos), np.nan)
    frame = pl.DataFrame({
        "combo_id": [f"c{i + 1:04d}" for i in range(len(combos))],
        "min_price": [c[0] for c in combos], "min_dollar_vol20": [c[1] for c in combos],
        "max_vol_pct_input": [c[2] for c in combos], "min_history_bars": [c[3] for c in combos],
        "candidate_signals_before": np.full(len(combos), int(before), dtype=np.int64),
        "candidate_signals_after": after.astype(np.int64),
        "suppressed_signal_count": supp.astype(np.int64),
        "eligibility_rate": ratio(suf["all"][tuple(idx)], n_rows),
        "candidate_eligibility_rate": ratio(after, before),
        "suppressed_signal_share": np.nan_to_num(ratio(supp, before), nan=0.0),
        **{f"suppressed_by_{name}_share": s for (name, _), s in zip(FILTERS, supp_shares,
                                                                   strict=True)},
        "max_reason_share": np.max(supp_shares, axis=0),
        "eligible_avg_close": ratio(suf["close"][tuple(idx)], suf["close_n"][tuple(idx)]),
        "eligible_avg_dollar_vol_20": ratio(suf["dv"][tuple(idx)], suf["dv_n"][tuple(idx)]),
        "eligible_avg_vol_pct": ratio(suf["vol"][tuple(idx)], suf["vol_n"][tuple(idx)]),
        "year_eligibility_min": np.nanmin(year_rate, axis=0) if has_year else none,
        "year_eligibility_max": np.nanmax(year_rate, axis=0) if has_year else none,
        "vol_threshold_input": [c[2] for c in combos],
        "vol_threshold_effective_decimal": [units[c[2]][0] for c in combos],
        "vol_threshold_effective_pct": [units[c[2]][1] for c in combos],
    }, schema_overrides={"min_price": pl.Float64, "min_dollar_vol20": pl.Float64,
                         "max_vol_pct_input": pl.Float64, "min_history_bars": pl.Int64,
                         "vol_threshold_input": pl.Float64,
                         "vol_threshold_effective_decimal": pl.Float64,
                         "vol_threshold_effective_pct": pl.Float64})
    return frame.with_columns(pl.col(pl.Float64).fill_nan(None))


def grid_table(sweep_rows: pl.DataFrame, execution_summary: Mapping[str, Any]) -> pl.DataFrame:
    """``execution_calibration_grid.csv``: the sweep with the volatility source and detected
    unit, sorted by the four thresholds (a null volatility cap = no cap, first)."""
    unit_cols = ("vol_threshold_input", "vol_threshold_effective_decimal",
                 "vol_threshold_effective_pct")
    return sweep_rows.with_columns(
        pl.lit(execution_summary.get("vol_metric_source")).alias("vol_metric_source"),
        pl.lit(execution_summary.get("vol_unit_detected")).alias("vol_unit_detected"),
    ).select(pl.exclude(unit_cols), *unit_cols).sort(
        list(SWEEP_KEYS), nulls_last=False, maintain_order=True)


def grid_summary(grid: pl.DataFrame) -> dict[str, Any]:
    """``execution_calibration_grid_summary.json`` (+ ours: the candidate-level rate)."""
    out: dict[str, Any] = {"combos_total": grid.height}
    for key, col in (("eligibility_rate", "eligibility_rate"),
                     ("candidate_after", "candidate_signals_after"),
                     ("candidate_eligibility_rate", "candidate_eligibility_rate")):
        s = grid[col].drop_nulls()
        out |= {f"{key}_min": s.min(), f"{key}_p50": s.median(), f"{key}_max": s.max()} \
            if s.len() else dict.fromkeys((f"{key}_min", f"{key}_p50", f"{key}_max"))  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# recommendations


@dataclass(frozen=True)
class Targets:
    """Recommendation settings (``backtest_execution_calibration``)."""

    bands: Mapping[str, tuple[float, float]]
    min_eligible_signals: int = 100
    max_single_reason_share: float = 0.95
    top_k: int = 5

    @classmethod
    def of(cls, c: Any) -> Targets:
        """From the typed ``CalibrationSettings``."""
        return cls({"lite": (c.target_lite_eligibility_min, c.target_lite_eligibility_max),
                    "strict": (c.target_strict_eligibility_min,
                               c.target_strict_eligibility_max)},
                   c.min_eligible_signals, c.max_single_reason_share,
                   c.top_k_recommendations)  # fmt: skip


def scored(grid: pl.DataFrame, lo: float, hi: float, targets: Targets) -> pl.DataFrame:
    """The grid with distance, coverage, dominance and score of one band (§7.7):
    score = 1 − |eligibility_rate − mid| + 0.25·coverage − 0.5·dominance."""
    after = pl.col("candidate_signals_after")
    coverage = pl.when(after > 0).then(
        (after / max(1, 5 * targets.min_eligible_signals)).clip(0.0, 1.0)).otherwise(0.0)
    distance = (pl.col("eligibility_rate") - (lo + hi) / 2).abs()
    dominance = (pl.col("max_reason_share") - targets.max_single_reason_share).clip(lower_bound=0)
    return grid.with_columns(distance.alias("distance"), coverage.alias("coverage"),
                             dominance.alias("dominance")) \
        .with_columns((1 - pl.col("distance") + 0.25 * pl.col("coverage")
                       - 0.5 * pl.col("dominance")).alias("score"))  # fmt: skip


def _rationale(row: Mapping[str, Any], lo: float, hi: float, pool: str) -> str:
    def pct(v: float | None, spec: str = ".1%") -> str:
        return "n/a" if v is None else format(v, spec)

    return (f"row-level eligibility {pct(row['eligibility_rate'])} against the band "
            f"[{lo:.0%}, {hi:.0%}] (distance to the middle {pct(row['distance'], '.3f')}); keeps "
            f"{row['candidate_signals_after']} candidate signals "
            f"({pct(row['candidate_eligibility_rate'])} of candidates); largest single "
            f"suppression reason {pct(row['max_reason_share'])}; chosen from pool {pool}")


def recommendations(grid: pl.DataFrame, targets: Targets) -> dict[str, Any]:
    """``execution_calibration_recommendations.json``: per profile band the top-k combos.

    Pool: combos in the band with ≥ ``min_eligible_signals`` kept candidates and no reason
    above ``max_single_reason_share``; else combos with enough kept candidates; else all.
    Ranked by score desc (null last), kept candidates desc, distance asc, then combo_id.
    """
    out: dict[str, Any] = {}
    keep = ("combo_id", *SWEEP_KEYS, "eligibility_rate", "candidate_eligibility_rate",
            "candidate_signals_after", "max_reason_share", "suppressed_by_vol_share", "score")
    for profile in PROFILE_BANDS:
        lo, hi = targets.bands[profile]
        table = scored(grid, lo, hi, targets)
        enough = pl.col("candidate_signals_after") >= targets.min_eligible_signals
        pools = (("in_band", pl.col("eligibility_rate").is_between(lo, hi) & enough
                  & (pl.col("max_reason_share") <= targets.max_single_reason_share)),
                 ("min_eligible_signals", enough), ("all_rows", pl.lit(True)))
        pool, chosen = "all_rows", table
        for name, cond in pools:
            chosen = table.filter(cond.fill_null(False))
            if chosen.height:
                pool = name
                break
        top = chosen.with_columns(pl.col("score").fill_null(SCORE_FLOOR).alias("_s")).sort(
            ["_s", "candidate_signals_after", "distance", "combo_id"],
            descending=[True, True, False, False], nulls_last=True).head(targets.top_k)
        entries = [{**{k: r[k] for k in keep}, "rationale": _rationale(r, lo, hi, pool)}
                   for r in top.iter_rows(named=True)]
        out[profile] = {
            "profile_label": profile, "target_eligibility_band": [lo, hi],
            "target_eligibility_basis": "row-level eligibility_rate",
            "pool": pool, "top_candidates": entries,
            "recommended": entries[0] if entries else None,
            "status": "ok" if entries else "no_candidate",
        }
    return out


# ---------------------------------------------------------------------------------------------
# report


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def _table(rows: Sequence[Mapping[str, Any]], cols: Sequence[str]) -> list[str]:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return lines


def report_markdown(summary: Mapping[str, Any], recs: Mapping[str, Any],
                    grid: pl.DataFrame) -> str:  # fmt: skip
    """``execution_calibration_report.md``: run facts, the current profile's waterfall, the
    sweep's range, the recommended thresholds per profile and the top 10 combos by
    eligibility (rendered again from the files by ``execution-realism-calibration-report``)."""
    wf, sw, ex = summary.get("waterfall", {}), summary.get("sweep_summary", {}), \
        summary.get("execution_summary", {})  # fmt: skip
    facts = ("run_id", "source_file", "source_type", "state_col", "overlay_mode", "signal_mode",
             "execution_profile", "sample_frac", "start_date", "end_date", "by_year",
             "rows_post_preparation", "sampling_after_rolling", "finished_ts")
    lines = [f"# Execution realism calibration {summary.get('run_id', '')}", "",
             "No PnL is simulated: this measures which candidate signals the execution "
             "filter keeps.", "", "## Run", ""]
    lines += [f"- {k}: {_fmt(summary.get(k))}" for k in facts]
    lines += ["", "Rolling dollar volume and history counts were computed on the full history "
              "before the date filter and the sample, so sampling does not shorten them.", "",
              f"## Current profile ({summary.get('execution_profile')})", "",
              f"- rows: {_fmt(ex.get('rows_total'))}, row-level eligibility_rate "
              f"{_fmt(ex.get('eligibility_rate'))}",
              f"- candidate signals: {_fmt(wf.get('candidate_signals_total'))} → eligible "
              f"{_fmt(wf.get('eligible_signals_total'))}, suppressed "
              f"{_fmt(wf.get('suppressed_signals_total'))} (candidate-level eligibility "
              f"{_fmt(wf.get('eligible_rate'))})", ""]
    lines += _table([{"filter": name,
                      "suppressed_rows_failing": wf.get(f"suppressed_by_{name}_count"),
                      "share_of_suppressed": wf.get(f"suppressed_by_{name}_share")}
                     for name, _ in FILTERS],
                    ("filter", "suppressed_rows_failing", "share_of_suppressed"))
    lines += ["", "A suppressed row can fail several filters, so the shares can sum above 1.",
              "", "## Threshold sweep", "",
              f"- combos: {_fmt(sw.get('combos_total'))}",
              f"- row-level eligibility_rate: min {_fmt(sw.get('eligibility_rate_min'))}, "
              f"median {_fmt(sw.get('eligibility_rate_p50'))}, max "
              f"{_fmt(sw.get('eligibility_rate_max'))}",
              f"- candidate-level eligibility: min "
              f"{_fmt(sw.get('candidate_eligibility_rate_min'))}, median "
              f"{_fmt(sw.get('candidate_eligibility_rate_p50'))}, max "
              f"{_fmt(sw.get('candidate_eligibility_rate_max'))}",
              f"- kept candidate signals: min {_fmt(sw.get('candidate_after_min'))}, median "
              f"{_fmt(sw.get('candidate_after_p50'))}, max {_fmt(sw.get('candidate_after_max'))}",
              "", "## Recommended thresholds", "",
              "The target bands apply to the ROW-level eligibility_rate (eligible bars over all "
              "bars, as in the old tool), not to the share of candidate signals kept; the "
              "candidate-level rate is shown beside it.", ""]
    rec_cols = ("profile", "status", "pool", "band", "combo_id", *SWEEP_KEYS, "eligibility_rate",
                "candidate_eligibility_rate", "candidate_signals_after", "score")
    rec_rows = []
    for profile, rec in recs.items():
        best = rec.get("recommended") or {}
        band = rec.get("target_eligibility_band") or [None, None]
        rec_rows.append({"profile": profile, "status": rec.get("status"),
                         "pool": rec.get("pool"), "band": f"{band[0]}–{band[1]}", **best})
    lines += _table(rec_rows, rec_cols)
    top_cols = ("combo_id", *SWEEP_KEYS, "eligibility_rate", "candidate_eligibility_rate",
                "candidate_signals_after", "max_reason_share")
    top = grid.sort(["eligibility_rate", "combo_id"], descending=[True, False],
                    nulls_last=True).head(10)
    lines += ["", "## Top 10 combos by eligibility_rate", ""]
    lines += _table(top.to_dicts(), top_cols)
    return "\n".join(lines) + "\n"
