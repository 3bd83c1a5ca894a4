"""Policy overlay (backtest_ops.md §6): gate a primary engine's rows with a cluster policy class.

A cluster-assignment file (one ``cluster_id`` per ticker/date) is looked up against the
cluster-hardening policy (``ALLOW``/``WATCH``/``BLOCK`` per cluster state) and joined onto the
primary rows. Each row then passes or fails the gate of the chosen mode (§6.3); only the pass
flag is used downstream, the overlay never weights a signal and never causes an exit. The join
is audited (match/unknown rates overall and per year, duplicate keys) and the audit becomes a
coverage verdict (§6.5) that ``strict_fail`` turns into an abort before any signal is made.

Pure polars, no row loop, no file writing: the caller reads the overlay file and the policy
JSON and writes the artifacts from :class:`OverlayResult`.

Differences from the old tool, on purpose:
- the overlay dedupe keeps, for each key, the FIRST row in the overlay's input order (the old
  sort did not define which of several tied rows survived, so a run could change with the
  file's row order). The ``FAIL_DUPLICATES`` rule is unchanged: any duplicated key, on either
  side and counted before the dedupe, still fails the verdict, because two cluster ids for one
  (ticker, date) mean the overlay file itself is suspect.
- a ``trade_date`` key held as a datetime is reduced to its date (the old text parse turned it
  into null, so nothing matched); a time-zone-aware ``trade_dt`` is compared in UTC.
- ``overlay_performance_breakdown`` reports a profit factor of ``+inf`` with
  ``profit_factor_inf = true`` when a class has wins and no loss (the old file had null).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

log = logging.getLogger(__name__)

OVERLAY_MODES = ("none", "allow_only", "allow_watch", "allow_or_unknown", "block_veto")
JOIN_KEYS_ALLOWED = ("ticker", "trade_date", "trade_dt", "timeframe")
DEFAULT_JOIN_KEYS = ("ticker", "trade_date")
COVERAGE_MODES = ("warn_only", "strict_fail")
UNKNOWN_HANDLINGS = ("treat_unknown_as_pass", "treat_unknown_as_block")
POLICY_CLASSES = ("ALLOW", "WATCH", "BLOCK")

# Columns the overlay adds to the primary frame, in output order, with their types.
OVERLAY_SCHEMA: dict[str, pl.DataType] = {
    "overlay_cluster_state": pl.Int64(),
    "overlay_policy_class": pl.String(),
    "overlay_direction_hint": pl.String(),
    "overlay_tradability_score": pl.Float64(),
    "overlay_join_status": pl.String(),
    "overlay_mode": pl.String(),
    "overlay_allow_signal": pl.Boolean(),
    "overlay_enabled": pl.Boolean(),
}
_POLICY_COLS = (
    "overlay_cluster_state",
    "overlay_policy_class",
    "overlay_direction_hint",
    "overlay_tradability_score",
)
_BY_YEAR_SCHEMA = {
    "year": pl.Int32(),
    "primary_rows": pl.Int64(),
    "matched_rows": pl.Int64(),
    "unmatched_rows": pl.Int64(),
    "unknown_rows": pl.Int64(),
    "match_rate": pl.Float64(),
    "unknown_rate": pl.Float64(),
}
_THRESHOLD_NAMES = (
    "min_match_rate_warn",
    "min_match_rate_fail",
    "min_year_match_rate_warn",
    "min_year_match_rate_fail",
    "unknown_rate_warn",
    "unknown_rate_fail",
)
_MIX_SCHEMA = {"overlay_policy_class": pl.String(), "rows": pl.Int64(), "row_share": pl.Float64()}


class OverlayCoveragePolicyError(ValueError):
    """The coverage verdict is a FAIL and the coverage mode is ``strict_fail`` (no bypass)."""


@dataclass(frozen=True)
class CoverageThresholds:
    """Coverage verdict thresholds and the unknown-class handling (spec §0 defaults)."""

    min_match_rate_warn: float = 0.80
    min_match_rate_fail: float = 0.60
    min_year_match_rate_warn: float = 0.70
    min_year_match_rate_fail: float = 0.50
    unknown_rate_warn: float = 0.25
    unknown_rate_fail: float = 0.50
    coverage_mode: str = "warn_only"
    unknown_handling: str = "treat_unknown_as_pass"

    def __post_init__(self) -> None:
        if self.coverage_mode not in COVERAGE_MODES:
            raise ValueError(f"coverage_mode must be one of {COVERAGE_MODES}")
        if self.unknown_handling not in UNKNOWN_HANDLINGS:
            raise ValueError(f"unknown_handling must be one of {UNKNOWN_HANDLINGS}")
        for name, value in self.rates().items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")

    def rates(self) -> dict[str, float]:
        """The six numeric thresholds, as written in the join summary and the verdict."""
        return {name: getattr(self, name) for name in _THRESHOLD_NAMES}


@dataclass(frozen=True)
class OverlayResult:
    """Primary rows with the overlay columns, and the join/coverage diagnostics of §6.4-§6.6.

    ``join_summary`` and ``verdict`` carry exactly the keys of ``overlay_join_summary.json``
    and ``overlay_coverage_verdict.json``; ``duplicate_keys`` is None when no key repeats.
    """

    frame: pl.DataFrame
    join_summary: dict[str, Any]
    verdict: dict[str, Any]
    coverage_by_year: pl.DataFrame
    duplicate_keys: pl.DataFrame | None
    policy_mix: pl.DataFrame


def parse_join_keys(keys: str | Sequence[str] | None) -> tuple[str, ...]:
    """Join keys from a comma list or a sequence: trimmed, repeats dropped, empty = default."""
    items = keys.split(",") if isinstance(keys, str) else list(keys or ())
    out = tuple(dict.fromkeys(k.strip() for k in items if k.strip()))
    if not out:
        return DEFAULT_JOIN_KEYS
    bad = [k for k in out if k not in JOIN_KEYS_ALLOWED]
    if bad:
        raise ValueError(f"overlay join keys {bad} not allowed; allowed: {JOIN_KEYS_ALLOWED}")
    return out


def _safe_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _upper(value: Any, default: str) -> str:
    return default if value is None or value == "" else str(value).upper()


def policy_table(policy: Mapping[str, Any]) -> pl.DataFrame:
    """Cluster state → policy class, direction hint and score, from a parsed policy JSON.

    Entries without an integer ``state_id`` are skipped; when a state appears twice the first
    entry wins. The class is upper-cased (missing → ``UNKNOWN``), the hint too (missing →
    ``UNCONFIRMED``; its values are not checked because it never gates), the score is a finite
    float or null.
    """
    entries = policy.get("per_state") if isinstance(policy, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("cluster hardening policy: 'per_state' is missing or not a list")
    usable = [
        e for e in entries
        if isinstance(e, Mapping) and isinstance(e.get("state_id"), int)
        and not isinstance(e.get("state_id"), bool)
    ]  # fmt: skip
    if not usable:
        raise ValueError("cluster hardening policy: no per_state entry has an integer state_id")
    table = pl.DataFrame(
        {
            "overlay_cluster_state": [e["state_id"] for e in usable],
            "overlay_policy_class": [_upper(e.get("class_label"), "UNKNOWN") for e in usable],
            "overlay_direction_hint": [
                _upper(e.get("allow_direction_hint"), "UNCONFIRMED") for e in usable
            ],
            "overlay_tradability_score": [_safe_float(e.get("tradability_score")) for e in usable],
        },
        schema={c: OVERLAY_SCHEMA[c] for c in _POLICY_COLS},
    )
    if not table["overlay_policy_class"].is_in(POLICY_CLASSES).any():
        raise ValueError(
            "cluster hardening policy: no per_state entry has class ALLOW, WATCH or BLOCK"
        )
    return table.unique("overlay_cluster_state", keep="first", maintain_order=True)


def read_overlay_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """The overlay rows with ``overlay_cluster_state`` (Int64) taken from ``cluster_id``."""
    if "cluster_id" not in frame.columns:
        raise ValueError("overlay cluster file has no 'cluster_id' column")
    try:
        state = frame["cluster_id"].cast(pl.Int64)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"overlay cluster file: cluster_id is not integer ({exc})") from exc
    return frame.with_columns(state.alias("overlay_cluster_state"))


def overlay_gate(mode: str, unknown_handling: str) -> pl.Expr:
    """``overlay_allow_signal`` of a mode (§6.3) from ``overlay_policy_class`` (never null)."""
    if mode not in OVERLAY_MODES:
        raise ValueError(f"overlay mode must be one of {OVERLAY_MODES}, got {mode!r}")
    if unknown_handling not in UNKNOWN_HANDLINGS:
        raise ValueError(f"unknown_handling must be one of {UNKNOWN_HANDLINGS}")
    c = pl.col("overlay_policy_class")
    unknown_passes = unknown_handling == "treat_unknown_as_pass"
    if mode == "none":
        return pl.lit(True)
    if mode == "allow_only":
        return c == "ALLOW"
    if mode == "allow_watch":
        return c.is_in(["ALLOW", "WATCH"])
    if mode == "allow_or_unknown":
        return c.is_in(["ALLOW", "UNKNOWN"] if unknown_passes else ["ALLOW"])
    return c.is_in(["BLOCK"] if unknown_passes else ["BLOCK", "UNKNOWN"]).not_()


def _normalize_key(s: pl.Series, key: str) -> pl.Series:
    """One join key in a comparable form (§6.2.1); unparseable values become null."""
    dtype = s.dtype
    if key in ("ticker", "timeframe"):
        return s.cast(pl.String).str.strip_chars().str.to_uppercase()
    if key == "trade_date":
        if dtype == pl.Date:
            return s
        if isinstance(dtype, pl.Datetime):
            return s.dt.date()
        return s.cast(pl.String).str.to_date("%Y-%m-%d", strict=False)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            s = s.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return s.dt.cast_time_unit("us")
    if dtype == pl.Date:
        return s.cast(pl.Datetime("us"))
    return s.cast(pl.String).str.to_datetime(time_unit="us", strict=False)


def _key_frame(frame: pl.DataFrame, keys: Sequence[str], side: str) -> pl.DataFrame:
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise ValueError(f"overlay join: {side} rows have no key column(s) {missing}")
    return pl.DataFrame([_normalize_key(frame[k], k).alias(k) for k in keys])


def _duplicates(keys_frame: pl.DataFrame, keys: Sequence[str], dataset: str) -> pl.DataFrame:
    """Keys held by more than one row, with the number of rows holding each."""
    return (
        keys_frame.group_by(list(keys))
        .agg(duplicate_count=pl.len().cast(pl.Int64))
        .filter(pl.col("duplicate_count") > 1)
        .select(pl.lit(dataset).alias("dataset"), *keys, "duplicate_count")
    )


def _reason(test: str, kind: str, threshold: float, value: float) -> str:
    return f"{test}_{kind} threshold={threshold:.4f} value={value:.4f}"


def coverage_status(
    *,
    match_rate: float | None,
    year_min_match_rate: float | None,
    unknown_rate: float | None,
    duplicate_key_count_primary: int,
    duplicate_key_count_overlay: int,
    thresholds: CoverageThresholds,
) -> tuple[str, list[str]]:
    """Verdict status and reasons (§6.5): the first rule with a breached test wins.

    Null metrics never breach. The duplicate rule counts overlay keys before the dedupe, so a
    repeated overlay key fails even though the join itself would use only its first row.
    """
    dup_p, dup_o = duplicate_key_count_primary, duplicate_key_count_overlay
    if dup_p > 0 or dup_o > 0:
        return "FAIL_DUPLICATES", [f"duplicate_keys primary={dup_p} overlay={dup_o}"]
    t = thresholds
    rules = (
        ("FAIL_LOW_MATCH", "below_fail", [("match_rate", match_rate, t.min_match_rate_fail),
         ("year_min_match_rate", year_min_match_rate, t.min_year_match_rate_fail)]),
        ("FAIL_HIGH_UNKNOWN", "above_fail", [("unknown_rate", unknown_rate, t.unknown_rate_fail)]),
        ("WARN_LOW_MATCH", "below_warn", [("match_rate", match_rate, t.min_match_rate_warn),
         ("year_min_match_rate", year_min_match_rate, t.min_year_match_rate_warn)]),
        ("WARN_HIGH_UNKNOWN", "above_warn", [("unknown_rate", unknown_rate, t.unknown_rate_warn)]),
    )  # fmt: skip
    for status, kind, tests in rules:
        below = kind.startswith("below")
        reasons = [
            _reason(name, kind, threshold, value)
            for name, value, threshold in tests
            if value is not None and (value < threshold if below else value > threshold)
        ]
        if reasons:
            return status, reasons
    return "OK", []


def check_strict(verdict: Mapping[str, Any], coverage_mode: str, bypass: bool) -> None:
    """Abort the run on a FAIL verdict under ``strict_fail`` unless bypassed (§6.5)."""
    if coverage_mode not in COVERAGE_MODES:
        raise ValueError(f"coverage_mode must be one of {COVERAGE_MODES}")
    status = str(verdict.get("status") or "")
    if coverage_mode == "strict_fail" and not bypass and status.startswith("FAIL"):
        reasons = ";".join(verdict.get("reasons") or [])
        raise OverlayCoveragePolicyError(f"overlay_coverage_strict_fail:{status} reasons={reasons}")


def _with_overlay_columns(frame: pl.DataFrame, **values: pl.Expr) -> pl.DataFrame:
    """``frame`` + the eight overlay columns (typed, last, replacing any earlier ones).

    Missing values are null; the expressions see ``frame`` as it is, so they may read the
    columns they replace.
    """
    exprs = [
        values.get(name, pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in OVERLAY_SCHEMA.items()
    ]
    out = frame.with_columns(exprs)
    return out.select([c for c in out.columns if c not in OVERLAY_SCHEMA] + list(OVERLAY_SCHEMA))


def no_overlay(primary: pl.DataFrame) -> pl.DataFrame:
    """The overlay columns for a run without overlay: every row passes, the rest is null."""
    return _with_overlay_columns(
        primary, overlay_allow_signal=pl.lit(True), overlay_enabled=pl.lit(False)
    )


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole > 0 else None


def _verdict(
    thresholds: CoverageThresholds, metrics: dict[str, Any], status: str, reasons: list[str]
) -> dict[str, Any]:
    summary_keys = (
        "match_rate",
        "unknown_rate",
        "year_min_match_rate",
        "year_p10_match_rate",
        "year_fail_years",
        "duplicate_key_count_primary",
        "duplicate_key_count_overlay",
    )
    return {
        "coverage_mode": thresholds.coverage_mode,
        "unknown_handling": thresholds.unknown_handling,
        "thresholds": thresholds.rates(),
        "summary": {k: metrics[k] for k in summary_keys},
        "status": status,
        "reasons": reasons,
        "strict_fail_triggered": thresholds.coverage_mode == "strict_fail"
        and status.startswith("FAIL"),
    }


def _result(
    frame: pl.DataFrame,
    mode: str,
    keys: Sequence[str],
    thresholds: CoverageThresholds,
    metrics: dict[str, Any],
    tables: tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame],
) -> OverlayResult:
    status, reasons = coverage_status(
        match_rate=metrics["match_rate"],
        year_min_match_rate=metrics["year_min_match_rate"],
        unknown_rate=metrics["unknown_rate"],
        duplicate_key_count_primary=metrics["duplicate_key_count_primary"],
        duplicate_key_count_overlay=metrics["duplicate_key_count_overlay"],
        thresholds=thresholds,
    )
    if status.startswith("WARN"):
        log.warning("overlay coverage %s: %s", status, "; ".join(reasons))
    summary = {
        "overlay_enabled": True,
        "overlay_mode": mode,
        "join_keys": list(keys),
        **metrics,
        "overlay_unknown_rate": metrics["unknown_rate"],
        "unknown_handling": thresholds.unknown_handling,
        "coverage_status": status,
        "coverage_reasons": reasons,
        "coverage_mode": thresholds.coverage_mode,
        **thresholds.rates(),
    }
    by_year, duplicates, mix = tables
    verdict = _verdict(thresholds, metrics, status, reasons)
    return OverlayResult(frame, summary, verdict, by_year, duplicates, mix)


def _empty_result(
    primary: pl.DataFrame,
    mode: str,
    keys: Sequence[str],
    thresholds: CoverageThresholds,
    gate: pl.Expr,
) -> OverlayResult:
    """§6.2: an empty primary frame gives null/0 diagnostics and an OK verdict."""
    frame = _with_overlay_columns(
        primary,
        overlay_policy_class=pl.lit("UNKNOWN"),
        overlay_direction_hint=pl.lit("UNCONFIRMED"),
        overlay_join_status=pl.lit("UNMATCHED_PRIMARY"),
        overlay_mode=pl.lit(mode),
        overlay_enabled=pl.lit(True),
    ).with_columns(overlay_allow_signal=gate)
    counts = ("primary_rows_total", "primary_rows_matched", "primary_rows_unmatched",
              "overlay_rows_total", "overlay_rows_used", "duplicate_key_count_primary",
              "duplicate_key_count_overlay")  # fmt: skip
    rates = ("match_rate", "overlay_allow_rate", "overlay_watch_rate", "overlay_block_rate",
             "unknown_rate", "year_min_match_rate", "year_p10_match_rate")  # fmt: skip
    metrics = {**dict.fromkeys(counts, 0), **dict.fromkeys(rates), "year_fail_years": []}
    tables = (pl.DataFrame(schema=_BY_YEAR_SCHEMA), None, pl.DataFrame(schema=_MIX_SCHEMA))
    return _result(frame, mode, keys, thresholds, metrics, tables)


def apply_overlay(
    primary: pl.DataFrame,
    overlay_rows: pl.DataFrame,
    policy: Mapping[str, Any] | pl.DataFrame,
    mode: str = "none",
    join_keys: str | Sequence[str] | None = DEFAULT_JOIN_KEYS,
    thresholds: CoverageThresholds | None = None,
) -> OverlayResult:
    """Join the overlay onto the primary rows, gate them, and audit the join (§6.2-§6.5).

    ``overlay_rows`` is the overlay file's frame (with ``cluster_id``); ``policy`` is the
    parsed ``cluster_hardening_policy.json`` or :func:`policy_table`'s output. The primary's
    row order and columns are kept; the keys are normalized only for matching. Raises
    ``ValueError`` when a mode other than ``none`` would gate on a join that matched nothing.
    The strict-fail abort is left to :func:`check_strict` so the caller decides on a bypass.
    """
    thresholds = thresholds or CoverageThresholds()
    keys = parse_join_keys(join_keys)
    gate = overlay_gate(mode, thresholds.unknown_handling)
    table = policy if isinstance(policy, pl.DataFrame) else policy_table(policy)
    overlay = read_overlay_rows(overlay_rows)
    if primary.height == 0:
        return _empty_result(primary, mode, keys, thresholds, gate)
    if "trade_date" not in primary.columns:
        raise ValueError("overlay join: primary rows have no trade_date column")

    p_keys = _key_frame(primary, keys, "primary")
    o_keys = _key_frame(overlay, keys, "overlay")
    dup_tables = [_duplicates(p_keys, keys, "primary"), _duplicates(o_keys, keys, "overlay")]
    duplicates = pl.concat(dup_tables).sort(["dataset", *keys])

    tmp = {k: f"__overlay_key_{k}" for k in keys}
    # Policy lookup per overlay row, then one row per key: the first in the file's order.
    looked_up = (
        o_keys.with_columns(overlay["overlay_cluster_state"])
        .join(table, on="overlay_cluster_state", how="left", maintain_order="left")
        .unique(subset=list(keys), keep="first", maintain_order=True)
        .rename(tmp)
    )
    joined = (
        primary.drop([c for c in OVERLAY_SCHEMA if c in primary.columns])
        .hstack(p_keys.rename(tmp))
        .join(looked_up, on=list(tmp.values()), how="left", maintain_order="left")
    )
    matched = pl.col("overlay_cluster_state").is_not_null()
    frame = _with_overlay_columns(
        joined,
        overlay_cluster_state=pl.col("overlay_cluster_state"),
        overlay_policy_class=pl.col("overlay_policy_class").fill_null("UNKNOWN"),
        overlay_direction_hint=pl.col("overlay_direction_hint").fill_null("UNCONFIRMED"),
        overlay_tradability_score=pl.col("overlay_tradability_score"),
        overlay_join_status=pl.when(matched).then(pl.lit("MATCHED"))
        .otherwise(pl.lit("UNMATCHED_PRIMARY")),
        overlay_mode=pl.lit(mode),
        overlay_enabled=pl.lit(True),
    ).with_columns(overlay_allow_signal=gate)

    n = frame.height
    cls = pl.col("overlay_policy_class")
    is_matched = pl.col("overlay_join_status") == "MATCHED"
    counts = frame.select(
        matched=is_matched.sum(),
        unknown=(cls == "UNKNOWN").sum(),
        allow=(cls == "ALLOW").sum(),
        watch=(cls == "WATCH").sum(),
        block=(cls == "BLOCK").sum(),
    ).row(0, named=True)
    match_rate = _rate(counts["matched"], n)
    if mode != "none" and not match_rate:
        raise ValueError(
            f"overlay mode {mode!r} requires non-zero join coverage (match_rate={match_rate}); "
            f"check the join keys {list(keys)} and the overlay file"
        )
    rows_used = frame.filter(is_matched).select(list(tmp.values())).unique().height
    frame = frame.drop(list(tmp.values()))

    by_year = (
        frame.select(
            _normalize_key(primary["trade_date"], "trade_date").dt.year().alias("year"),
            is_matched.alias("m"),
            (cls == "UNKNOWN").alias("u"),
        )
        .group_by("year")
        .agg(primary_rows=pl.len(), matched_rows=pl.col("m").sum(), unknown_rows=pl.col("u").sum())
        .with_columns(unmatched_rows=pl.col("primary_rows") - pl.col("matched_rows"))
        .with_columns(
            match_rate=pl.col("matched_rows") / pl.col("primary_rows"),
            unknown_rate=pl.col("unknown_rows") / pl.col("primary_rows"),
        )
        .sort("year")
        .select([pl.col(c).cast(t) for c, t in _BY_YEAR_SCHEMA.items()])
    )
    year_rates = by_year["match_rate"]
    mix = (
        frame.group_by("overlay_policy_class")
        .agg(rows=pl.len().cast(pl.Int64))
        .with_columns(row_share=pl.col("rows") / max(1, n))
        .sort(["rows", "overlay_policy_class"], descending=[True, False])
    )
    metrics = {
        "primary_rows_total": n,
        "primary_rows_matched": counts["matched"],
        "primary_rows_unmatched": n - counts["matched"],
        "match_rate": match_rate,
        "overlay_rows_total": looked_up.height,
        "overlay_rows_used": rows_used,
        "duplicate_key_count_primary": int(dup_tables[0]["duplicate_count"].sum()),
        "duplicate_key_count_overlay": int(dup_tables[1]["duplicate_count"].sum()),
        "overlay_allow_rate": _rate(counts["allow"], n),
        "overlay_watch_rate": _rate(counts["watch"], n),
        "overlay_block_rate": _rate(counts["block"], n),
        "unknown_rate": _rate(counts["unknown"], n),
        "year_min_match_rate": year_rates.min(),
        "year_p10_match_rate": year_rates.quantile(0.10, "nearest"),
        "year_fail_years": by_year.filter(
            pl.col("match_rate") < thresholds.min_year_match_rate_fail
        )["year"].to_list(),
    }
    tables = (by_year, duplicates if duplicates.height else None, mix)
    return _result(frame, mode, keys, thresholds, metrics, tables)


def signal_effect_summary(
    signals: pl.DataFrame, generator_diag: Mapping[str, Any]
) -> dict[str, Any]:
    """``overlay_signal_effect_summary.json`` (§6.6): the generator's overlay counts + by year.

    The totals are the signal generator's diagnostics renamed; ``by_year`` counts the per-row
    flags ``primary_eligible``, ``overlay_candidate_after`` and ``overlay_vetoed_signal`` per
    calendar year of ``trade_date`` (every year with rows, even without candidates).
    """
    flag = {
        "candidate_before": "primary_eligible",
        "candidate_after": "overlay_candidate_after",
        "vetoed": "overlay_vetoed_signal",
    }
    by_year = (
        signals.group_by(pl.col("trade_date").dt.year().alias("year"))
        .agg([pl.col(c).fill_null(False).sum().cast(pl.Int64).alias(k) for k, c in flag.items()])
        .sort("year")
        .with_columns(
            vetoed_share=pl.when(pl.col("candidate_before") > 0)
            .then(pl.col("vetoed") / pl.col("candidate_before"))
            .otherwise(None)
        )
    )
    d = generator_diag
    return {
        "overlay_enabled": d.get("overlay_enabled"),
        "overlay_mode": d.get("overlay_mode"),
        "candidate_signals_before_overlay": d.get("candidate_signals_before_overlay"),
        "candidate_signals_after_overlay": d.get("candidate_signals_after_overlay"),
        "vetoed_count": d.get("overlay_vetoed_signal_count"),
        "vetoed_share": d.get("overlay_vetoed_signal_share"),
        "overlay_passed_signal_count": d.get("overlay_passed_signal_count"),
        "overlay_vetoed_by_policy_class": d.get("overlay_vetoed_by_policy_class"),
        "overlay_direction_conflict_count": d.get("overlay_direction_conflict_count"),
        "overlay_direction_conflict_share": d.get("overlay_direction_conflict_share"),
        "by_year": by_year.to_dicts(),
    }


def performance_breakdown(trades: pl.DataFrame) -> pl.DataFrame:
    """``overlay_performance_breakdown.csv`` (§6.6): valid trades' net returns per entry class.

    Quantiles use polars' default (``nearest``) interpolation, ``return_std`` is ddof 0. A
    class with wins and no loss has ``profit_factor = +inf`` and ``profit_factor_inf = true``;
    with neither wins nor losses it is null. Sorted by trade_count descending, then class.
    """
    r = pl.col("net_return")
    usable = pl.col("is_valid_trade").fill_null(False) & r.is_finite().fill_null(False)
    valid = trades.filter(usable)
    win, loss = pl.col("gross_win"), pl.col("gross_loss")
    avg_abs = pl.col("avg_return").abs()
    return (
        valid.group_by("entry_overlay_policy_class")
        .agg(
            trade_count=pl.len().cast(pl.Int64),
            avg_return=r.mean(),
            median_return=r.median(),
            return_std=r.std(ddof=0),
            ret_p10=r.quantile(0.10, "nearest"),
            ret_p90=r.quantile(0.90, "nearest"),
            worst_trade_return=r.min(),
            best_trade_return=r.max(),
            win_count=(r > 0).sum().cast(pl.Int64),
            gross_win=r.filter(r > 0).sum(),
            gross_loss=r.filter(r < 0).sum(),
        )
        .with_columns(
            win_rate=pl.col("win_count") / pl.col("trade_count"),
            profit_factor=pl.when(loss < 0)
            .then(win / loss.abs())
            .when(win > 0)
            .then(float("inf"))
            .otherwise(None),
            profit_factor_inf=(loss == 0) & (win > 0),
            ret_cv=pl.when(avg_abs >= 1e-12).then(pl.col("return_std") / avg_abs).otherwise(None),
        )
        .sort(
            ["trade_count", "entry_overlay_policy_class"],
            descending=[True, False],
            nulls_last=True,
        )
    )


__all__ = [
    "COVERAGE_MODES",
    "DEFAULT_JOIN_KEYS",
    "JOIN_KEYS_ALLOWED",
    "OVERLAY_MODES",
    "OVERLAY_SCHEMA",
    "UNKNOWN_HANDLINGS",
    "CoverageThresholds",
    "OverlayCoveragePolicyError",
    "OverlayResult",
    "apply_overlay",
    "check_strict",
    "coverage_status",
    "no_overlay",
    "overlay_gate",
    "parse_join_keys",
    "performance_breakdown",
    "policy_table",
    "read_overlay_rows",
    "signal_effect_summary",
]
