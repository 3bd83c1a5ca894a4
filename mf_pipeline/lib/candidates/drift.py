"""Drift of a re-run candidate against what it did when it was locked (backtest_ops.md §10.2,
§10.3): deltas, flags and a status per candidate, plus the overlay coverage drift merged in.

Both sides are plain mappings with the keys of :data:`COMPARED` (``expected`` from the policy
packet, ``observed`` from the re-run); a missing or non-finite value is null and never fires a
flag. ``pct(e, o) = (o - e) / max(|e|, eps)``, null when either side is null or the result is not
finite, so a +inf profit factor (no losing trade) on either side gives null profit-factor
deltas; ``abs = o - e``. Flags compare strictly (a delta exactly at its threshold does not fire).

Differences from the old tool, on purpose (§13 fault 21):
- the observed ``robustness_v2`` is a real score, :func:`observed_robustness`: the candidate's
  row of its source grid's metrics table is replaced by the re-run's metrics and the source's
  robustness is recomputed, so ``robustness_v2_drop`` can fire (the old one was always null);
- ``ret_cv``, ``ret_p10`` and ``downside_std`` are read from the same edge metrics on both sides
  (``lib/backtest/metrics.edge_metrics``: valid trades, ddof 0), not a second definition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from mf_pipeline.lib.grids.robustness import (
    NAN_WARNING_COLUMNS,
    nan_warning_total,
    robustness_scores,
)
from mf_pipeline.lib.settings import CandidateDriftSettings

COMPARED = ("expectancy", "profit_factor", "robustness_v2", "ret_cv", "trade_count",
            "zero_trade_share", "ret_p10", "downside_std", "exec_eligibility_rate",
            "overlay_match_rate")  # fmt: skip
"""Metrics with an ``delta_<name>_abs`` column."""
PCT_COMPARED = ("expectancy", "profit_factor", "robustness_v2", "ret_cv", "trade_count",
                "exec_eligibility_rate")  # fmt: skip
"""Metrics that also get ``delta_<name>_pct``."""
STATUSES = ("OK", "DRIFT_WARN", "DRIFT_FAIL", "ERROR")
"""Best to worst; ERROR (the re-run itself failed) is worse than any measured drift."""
ZERO_TRADE = "zero_trade_observed"
ROBUSTNESS_INPUTS = ("expectancy", "profit_factor", "profit_factor_inf", "max_drawdown",
                     "return_std", "ret_cv", "downside_std", "trade_count",
                     "is_zero_trade_combo", "nan_warning_total")  # fmt: skip
"""Metrics-table columns the §5.4 scores read that a re-run changes (costs stay locked)."""


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None (bools are not numbers)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def delta_abs(expected: Any, observed: Any) -> float | None:
    e, o = finite(expected), finite(observed)
    return None if e is None or o is None else finite(o - e)


def delta_pct(expected: Any, observed: Any, eps: float) -> float | None:
    """Relative change ``(o - e) / max(|e|, eps)``; null if a side is null or it is not finite."""
    e, o = finite(expected), finite(observed)
    return None if e is None or o is None else finite((o - e) / max(abs(e), eps))


def drift_deltas(expected: Mapping[str, Any], observed: Mapping[str, Any],
                 eps: float) -> dict[str, float | None]:  # fmt: skip
    """Every ``delta_<m>_abs`` of :data:`COMPARED` and ``delta_<m>_pct`` of :data:`PCT_COMPARED`."""
    out: dict[str, float | None] = {}
    for name in COMPARED:
        out[f"delta_{name}_abs"] = delta_abs(expected.get(name), observed.get(name))
        if name in PCT_COMPARED:
            out[f"delta_{name}_pct"] = delta_pct(expected.get(name), observed.get(name), eps)
    return out


def _below(value: float | None, bound: float) -> bool:
    return value is not None and value < bound


def drift_flags(deltas: Mapping[str, float | None], observed: Mapping[str, Any],
                thresholds: CandidateDriftSettings) -> list[str]:  # fmt: skip
    """The §10.2 flags that fire, in the spec's order. ``zero_trade_observed``: observed
    trade_count <= 0 (null counts as 0) or no valid trade (zero_trade_share 1)."""
    t = thresholds
    trades = finite(observed.get("trade_count")) or 0.0
    zero_share = finite(observed.get("zero_trade_share"))
    ret_cv_up = deltas.get("delta_ret_cv_pct")
    checks = {
        ZERO_TRADE: trades <= 0 or (zero_share is not None and zero_share >= 1.0),
        "expectancy_drop": _below(deltas.get("delta_expectancy_pct"),
                                  -t.expectancy_drop_pct_flag),
        "profit_factor_drop": _below(deltas.get("delta_profit_factor_pct"),
                                     -t.pf_drop_pct_flag),
        "robustness_v2_drop": _below(deltas.get("delta_robustness_v2_abs"),
                                     -t.robustness_drop_points_flag),
        "ret_cv_increase": ret_cv_up is not None and ret_cv_up > t.ret_cv_increase_pct_flag,
        "trade_count_drop": _below(deltas.get("delta_trade_count_pct"),
                                   -t.trade_count_drop_pct_flag),
        "exec_eligibility_drop": _below(deltas.get("delta_exec_eligibility_rate_pct"),
                                        -t.exec_eligibility_drop_pct_flag),
        "overlay_match_rate_low": _below(finite(observed.get("overlay_match_rate")),
                                         t.overlay_match_rate_min),
    }  # fmt: skip
    return [name for name, fired in checks.items() if fired]


def drift_status(flags: Sequence[str]) -> str:
    """``DRIFT_FAIL`` with a zero-trade re-run or >= 2 flags, ``DRIFT_WARN`` with one, else OK."""
    if ZERO_TRADE in flags or len(flags) >= 2:
        return "DRIFT_FAIL"
    return "DRIFT_WARN" if flags else "OK"


def worst_status(statuses: Sequence[str]) -> str:
    """The worst of ``statuses`` in :data:`STATUSES` order (OK for none)."""
    return max(statuses, key=STATUSES.index, default="OK")


@dataclass(frozen=True)
class CoverageThresholds:
    """§10.3 thresholds: match-rate drop that warns, match rate below which it fails, unknown-rate
    increase that warns, unknown rate above which it fails."""

    warn_drop_abs: float
    fail_match_rate: float
    unknown_increase_warn_abs: float
    unknown_rate_fail: float


def coverage_thresholds(drift: CandidateDriftSettings, *, warn_drop: float | None = None,
                        fail_match: float | None = None,
                        overlay_min_match_rate_fail: float | None = None,
                        ) -> CoverageThresholds:  # fmt: skip
    """Given options first: ``fail_match`` is ``fail_match``, else an explicit overlay
    ``min_match_rate_fail``, else the settings' ``coverage_drift_fail_match_rate``."""
    if fail_match is None:
        fail_match = overlay_min_match_rate_fail
    return CoverageThresholds(
        warn_drop_abs=drift.coverage_drift_warn_drop_abs if warn_drop is None else warn_drop,
        fail_match_rate=drift.coverage_drift_fail_match_rate if fail_match is None
        else fail_match,
        unknown_increase_warn_abs=drift.coverage_unknown_increase_warn_abs,
        unknown_rate_fail=drift.coverage_unknown_rate_fail,
    )  # fmt: skip


def coverage_drift(baseline_match: Any, baseline_unknown: Any, observed_match: Any,
                   observed_unknown: Any, thresholds: CoverageThresholds) -> dict[str, Any]:
    """The ``coverage_drift_metrics.json`` record (§10.3).

    A null baseline with an observed value takes the observed value (no drop). Flags:
    ``coverage_match_rate_drop_warn`` (drop > warn_drop), ``coverage_match_rate_below_fail``
    (observed < fail_match), ``coverage_unknown_rate_increase_warn`` (increase > warn),
    ``coverage_unknown_rate_above_fail`` (observed > fail); status DRIFT_FAIL with a *_fail flag,
    DRIFT_WARN with any other, else OK. Null values fire nothing.
    """
    obs_m, obs_u = finite(observed_match), finite(observed_unknown)
    base_m = finite(baseline_match)
    base_u = finite(baseline_unknown)
    base_m = obs_m if base_m is None else base_m
    base_u = obs_u if base_u is None else base_u
    drop = delta_abs(obs_m, base_m)
    increase = delta_abs(base_u, obs_u)
    t = thresholds
    checks = {
        "coverage_match_rate_drop_warn": drop is not None and drop > t.warn_drop_abs,
        "coverage_match_rate_below_fail": _below(obs_m, t.fail_match_rate),
        "coverage_unknown_rate_increase_warn": increase is not None
        and increase > t.unknown_increase_warn_abs,
        "coverage_unknown_rate_above_fail": obs_u is not None and obs_u > t.unknown_rate_fail,
    }  # fmt: skip
    flags = [name for name, fired in checks.items() if fired]
    status = ("DRIFT_FAIL" if any(f.endswith("_fail") for f in flags)
              else "DRIFT_WARN" if flags else "OK")  # fmt: skip
    return {
        "baseline_match_rate": base_m, "observed_match_rate": obs_m,
        "baseline_unknown_rate": base_u, "observed_unknown_rate": obs_u,
        "match_rate_drop_abs": drop, "unknown_rate_increase_abs": increase,
        "thresholds": asdict(t), "flags": flags, "coverage_drift_status": status,
    }  # fmt: skip


def merge_coverage(status: str, flags: Sequence[str], coverage: Mapping[str, Any],
                   ) -> tuple[str, list[str]]:  # fmt: skip
    """Overall status and flags after the coverage drift (§10.3 merge): a coverage FAIL makes
    the candidate FAIL and appends its flags; a coverage WARN turns OK into WARN with its flags;
    on a candidate already WARN or FAIL coverage WARN flags are not appended."""
    merged = list(flags)
    cov_status = coverage["coverage_drift_status"]
    if cov_status == "DRIFT_FAIL" or (cov_status == "DRIFT_WARN" and status == "OK"):
        merged += [f for f in coverage["flags"] if f not in merged]
        status = cov_status
    return status, merged


def drift_record(expected: Mapping[str, Any], observed: Mapping[str, Any],
                 coverage: Mapping[str, Any], thresholds: CandidateDriftSettings,
                 eps: float) -> dict[str, Any]:  # fmt: skip
    """The ``drift_metrics.json`` record: both sides, the deltas, the §10.2 flags and status,
    then the status and flags after merging ``coverage`` (a :func:`coverage_drift` record)."""
    deltas = drift_deltas(expected, observed, eps)
    core = drift_flags(deltas, observed, thresholds)
    status, flags = merge_coverage(drift_status(core), core, coverage)
    return {
        "expected": {k: finite(expected.get(k)) for k in COMPARED},
        "observed": {k: finite(observed.get(k)) for k in COMPARED},
        **deltas,
        "metric_flags": core, "metric_drift_status": drift_status(core),
        "coverage_drift_status": coverage["coverage_drift_status"],
        "drift_flags": flags, "drift_status": status,
        "thresholds": {**thresholds.model_dump(), "eps": eps},
    }  # fmt: skip


def observed_robustness(table: pl.DataFrame, combo_id: str, source_type: str,
                        observed: Mapping[str, Any],
                        weights: Mapping[str, float] | None = None) -> float | None:
    """``robustness_score_v2`` the candidate would get in its source grid with its row's metrics
    replaced by the re-run's (fault 21); None when the combo is not in ``table``.

    ``table`` is the grid's metrics table; only its ``source_type`` rows are scored (scores are
    per source). ``observed`` holds raw metrics under the table's column names (a +inf profit
    factor stays +inf); a column it lacks keeps the locked value, except ``nan_warning_total``,
    recounted from the raw observed metrics.
    """
    rows = table.filter(pl.col("source_type") == source_type)
    mine = pl.col("combo_id") == combo_id
    if not rows.select(mine.any()).item():
        return None
    raw = {k: observed[k] for k in ROBUSTNESS_INPUTS if k in observed and k in rows.columns}
    if "nan_warning_total" in rows.columns:
        counted = {k: observed[k] for k in NAN_WARNING_COLUMNS if k in observed}
        raw["nan_warning_total"] = int(nan_warning_total(
            pl.DataFrame([counted], schema=dict.fromkeys(counted, pl.Float64)))[0])
    rows = rows.with_columns(
        pl.when(mine).then(pl.lit(value).cast(rows.schema[name])).otherwise(pl.col(name))
        .alias(name) for name, value in raw.items())  # fmt: skip
    scored = robustness_scores(rows, weights)
    return finite(scored.filter(mine)["robustness_score_v2"][0])

