"""Read-only sanity check of a sensitivity-grid folder (backtest_ops.md §5.6).

``status`` is FAIL when any error fires; warnings never fail. Error and warning names are the
spec's where it names them; the checks it describes without a name are named like the
single-run sanity (``lib/backtest/sanity.py``). ``details`` holds the count (or the ids) behind
each error, so the codes stay exactly the spec's. Per-row overlay and execution checks read the
manifest columns, so they need no per-combo folder; a linked backtest run folder
(``backtest_run_dir``, only written with ``write_combo_runs``) is checked when it is set.

Differences from the old tool, on purpose:
- a +inf ``profit_factor`` whose ``profit_factor_inf`` flag is set is a value (no losing trade),
  not a non-finite cell (fault 10);
- the cluster allow_only check reads the trades of the grid's ``grid_trades`` dataset;
- the top-10 lists leave out null values and break ties by ``combo_index`` then ``combo_id``
  (faults 13, 15);
- the old "candidate verdict with zero trades" check is not carried over: no grid column holds
  a candidate verdict, so it could never fire;
- ours: the trades dataset holds ``trade_count`` rows per SUCCESS combo, every combo of
  ``grid_period_returns`` is a SUCCESS combo of the manifest, and the summary's
  ``overfitting`` block is present with DSR and PBO in [0, 1] (or null).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.backtest.metrics import LOWER_IS_BETTER, sort_best_first
from mf_pipeline.lib.backtest.report import EXEC_REASONS

MANIFEST = "grid_manifest.parquet"
METRICS = "grid_metrics_table.parquet"
ROBUSTNESS = "grid_robustness_v2_table.parquet"
SUMMARY = "grid_summary.json"
TRADES = "grid_trades"
PERIOD_RETURNS = "grid_period_returns.parquet"
CLUSTER_TRADE_MIX = "cluster_policy_trade_mix.csv"
REQUIRED: tuple[str, ...] = (MANIFEST, METRICS, SUMMARY, ROBUSTNESS)
TOP_N = 10
KEY = ("source_type", "combo_id")
OVERLAY_RATES: tuple[str, ...] = ("overlay_match_rate", "overlay_unknown_rate",
                                  "overlay_vetoed_signal_share")  # fmt: skip
OVERLAY_COLUMNS: tuple[str, ...] = (
    *OVERLAY_RATES, "overlay_coverage_mode", "overlay_coverage_status",
    "overlay_vetoed_signal_count", "overlay_passed_signal_count",
)  # fmt: skip
OVERLAY_RUN_FILES: tuple[str, ...] = ("overlay_coverage_verdict.json", "overlay_join_summary.json")
EXEC_SHARES: tuple[str, ...] = (
    "exec_eligibility_rate", "exec_suppressed_signal_share",
    *(f"exec_suppressed_by_{r}_share" for r in EXEC_REASONS),
)  # fmt: skip
EXEC_SIGNAL_COUNTS: tuple[str, ...] = (
    "exec_candidate_signals_before_filters", "exec_candidate_signals_after_filters",
    "exec_suppressed_signal_count",
)  # fmt: skip
EXEC_REASON_COUNTS: tuple[str, ...] = tuple(f"exec_suppressed_by_{r}_count" for r in EXEC_REASONS)
EXEC_COLUMNS: tuple[str, ...] = (*EXEC_SHARES, *EXEC_SIGNAL_COUNTS, *EXEC_REASON_COUNTS)
FLUKE_LABELS: frozenset[str] = frozenset({"HIGH", "MODERATE", "LOW", "UNKNOWN"})


def _unit(column: str) -> pl.Expr:
    """Non-null, finite and in [0, 1]."""
    x = pl.col(column).cast(pl.Float64)
    return (x.is_finite() & (x >= 0.0) & (x <= 1.0)).fill_null(False)


def _count(column: str) -> pl.Expr:
    """A non-null, non-negative whole number (integral floats count)."""
    x = pl.col(column).cast(pl.Float64)
    return (x.is_finite() & (x >= 0.0) & (x == x.round(0))).fill_null(False)


def _flag(frame: pl.DataFrame, column: str) -> pl.Expr:
    """A boolean column with null as false; all false when the column is absent."""
    if column not in frame.columns:
        return pl.lit(False)
    return pl.col(column).cast(pl.Boolean).fill_null(False)


def non_finite_cells(table: pl.DataFrame) -> int:
    """NaN and ±inf cells among the float columns, not counting a +inf ``profit_factor`` whose
    ``profit_factor_inf`` flag is true (a profit factor without a losing trade)."""
    counts = []
    for name, dtype in table.schema.items():
        if not dtype.is_float():
            continue
        bad = pl.col(name).is_not_null() & ~pl.col(name).is_finite()
        if name == "profit_factor":
            bad = bad & ~((pl.col(name) == math.inf) & _flag(table, "profit_factor_inf"))
        counts.append(bad.sum())
    if not counts or table.is_empty():
        return 0
    return int(table.select(pl.sum_horizontal(counts)).item())


def _manifest_errors(manifest: pl.DataFrame, metrics: pl.DataFrame, summary: dict[str, Any],
                     details: dict[str, Any]) -> list[str]:  # fmt: skip
    """Empty manifest, duplicate ids, and the summary's status counts against the manifest's."""
    if manifest.is_empty():
        return ["empty_manifest"]
    errors = []
    unique = manifest["combo_id"].n_unique()
    if unique != manifest.height:
        errors.append("duplicate_combo_id")
        details["duplicate_combo_id"] = manifest.height - unique
    status = manifest["status"]
    expected = {"total_combos": manifest.height,
                "successful_combos": int((status == "SUCCESS").sum()),
                "failed_combos": int((status == "FAILED").sum()),
                "skipped_combos": int((status == "SKIPPED").sum())}  # fmt: skip
    wrong = {k: {"summary": summary.get(k), "manifest": v} for k, v in expected.items()
             if summary.get(k) != v}  # fmt: skip
    if metrics.height != expected["successful_combos"]:
        wrong["metrics_table_rows"] = {"metrics_table": metrics.height,
                                       "manifest": expected["successful_combos"]}  # fmt: skip
    if wrong:
        errors.append("status_count_mismatch")
        details["status_count_mismatch"] = wrong
    return errors


def _linked_run_errors(success: pl.DataFrame, details: dict[str, Any]) -> list[str]:
    """Linked run folders (set only with ``write_combo_runs``): each must hold a finished run,
    and an overlay run its coverage verdict and join summary with rates in [0, 1]."""
    if "backtest_run_dir" not in success.columns:
        return []
    linked = success.filter(pl.col("backtest_run_dir").is_not_null())
    missing, overlay_missing, overlay_bad = [], 0, 0
    for run_dir, overlay_on in linked.select(
            "backtest_run_dir", _flag(linked, "overlay_enabled").alias("on")).rows():
        folder = Path(run_dir)
        if not (folder / "backtest_summary.json").is_file():
            missing.append(run_dir)
            continue
        if not overlay_on:
            continue
        if not all((folder / name).is_file() for name in OVERLAY_RUN_FILES):
            overlay_missing += 1
            continue
        join = json.loads((folder / "overlay_join_summary.json").read_text())
        rates = [join.get(k) for k in ("match_rate", "unknown_rate")]
        if not all(isinstance(v, int | float) and 0.0 <= v <= 1.0 for v in rates):
            overlay_bad += 1
    errors = []
    for code, value in (("missing_linked_backtest_runs", missing),
                        ("overlay_run_artifacts_missing", overlay_missing),
                        ("overlay_run_rates_out_of_range", overlay_bad)):  # fmt: skip
        if value:
            errors.append(code)
            details[code] = value
    return errors


def _robustness_errors(metrics: pl.DataFrame, details: dict[str, Any]) -> list[str]:
    """A combo that traded must have a finite ``robustness_score_v2`` in [0, 100]."""
    if "robustness_score_v2" not in metrics.columns:
        return ["missing_metrics_columns:robustness_score_v2"]
    v2 = pl.col("robustness_score_v2").cast(pl.Float64)
    valid = (v2.is_finite() & (v2 >= 0.0) & (v2 <= 100.0)).fill_null(False)
    traded = ~_flag(metrics, "is_zero_trade_combo")
    bad = int(metrics.select((traded & ~valid).sum()).item())
    if not bad:
        return []
    details["invalid_robustness_v2_for_non_zero_trades"] = bad
    return ["invalid_robustness_v2_for_non_zero_trades"]


def _missing(frame: pl.DataFrame, columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if c not in frame.columns]


def _bad_rows(frame: pl.DataFrame, checks: dict[str, pl.Expr], details: dict[str, Any]
              ) -> list[str]:  # fmt: skip
    """The codes whose check expression is false on some row (count of rows in ``details``)."""
    if frame.is_empty() or not checks:
        return []
    counts = frame.select((~expr).sum().alias(code) for code, expr in checks.items()
                          ).row(0, named=True)  # fmt: skip
    details.update({code: int(n) for code, n in counts.items() if n})
    return [code for code, n in counts.items() if n]


def _overlay_errors(success: pl.DataFrame, details: dict[str, Any]) -> list[str]:
    """§5.6 overlay checks on the overlay-enabled SUCCESS rows of the manifest."""
    rows = success.filter(_flag(success, "overlay_enabled"))
    if rows.is_empty():
        return []
    missing = _missing(rows, OVERLAY_COLUMNS)
    if missing:
        return [f"overlay_missing_columns:{','.join(missing)}"]
    # a vetoed share is undefined (null) when no candidate signal reached the overlay
    no_candidate = (pl.col("overlay_vetoed_signal_count").fill_null(0)
                    + pl.col("overlay_passed_signal_count").fill_null(0)) == 0  # fmt: skip
    checks = {f"{c}_missing_or_out_of_range": _unit(c) for c in OVERLAY_RATES}
    share = "overlay_vetoed_signal_share"
    checks[f"{share}_missing_or_out_of_range"] = _unit(share) | (
        pl.col(share).is_null() & no_candidate)
    errors = _bad_rows(rows, checks, details)
    bypass = _flag(rows, "overlay_coverage_bypass")
    strict_fail = rows.select(
        ((pl.col("overlay_coverage_mode") == "strict_fail")
         & pl.col("overlay_coverage_status").cast(pl.Utf8).str.starts_with("FAIL")
         & ~bypass).fill_null(False).sum()).item()  # fmt: skip
    if strict_fail:
        errors.append(f"overlay_strict_fail_verdict_present:{strict_fail}")
    return errors


def _execution_errors(success: pl.DataFrame, details: dict[str, Any]) -> list[str]:
    """§5.6 execution checks on the SUCCESS rows whose filters are on or whose profile is not
    ``none``: shares in [0, 1], valid counts, after <= before, suppressed = before - after and
    the four single-reason counts summing to at most the suppressed count."""
    profile = (pl.col("execution_profile").cast(pl.Utf8).fill_null("none") != "none") \
        if "execution_profile" in success.columns else pl.lit(False)  # fmt: skip
    rows = success.filter(_flag(success, "execution_filters_enabled") | profile)
    if rows.is_empty():
        return []
    missing = _missing(rows, EXEC_COLUMNS)
    if missing:
        return [f"execution_missing_columns:{','.join(missing)}"]
    checks = {f"{c}_missing_or_out_of_range": _unit(c) for c in EXEC_SHARES}
    if "rows_input" in rows.columns:  # no row at all: the eligibility rate is undefined
        checks["exec_eligibility_rate_missing_or_out_of_range"] = _unit(
            "exec_eligibility_rate") | ((pl.col("rows_input") == 0)
                                        & pl.col("exec_eligibility_rate").is_null())  # fmt: skip
    checks["exec_signal_counts_missing_or_invalid"] = pl.all_horizontal(
        _count(c) for c in EXEC_SIGNAL_COUNTS)
    checks |= {f"{c}_invalid": _count(c) for c in EXEC_REASON_COUNTS}
    before, after, suppressed = (pl.col(c) for c in EXEC_SIGNAL_COUNTS)
    # relations are judged where the counts exist (missing counts are reported above)
    checks["exec_candidates_after_exceed_before"] = (after <= before).fill_null(True)
    checks["exec_suppressed_count_mismatch"] = (suppressed == before - after).fill_null(True)
    checks["exec_by_reason_count_sum_exceeds_suppressed"] = (
        pl.sum_horizontal(pl.col(c) for c in EXEC_REASON_COUNTS) <= suppressed).fill_null(True)
    return _bad_rows(rows, checks, details)


def _trade_checks(folder: Path, success: pl.DataFrame, details: dict[str, Any]
                  ) -> tuple[list[str], list[str]]:  # fmt: skip
    """Trades per combo against the manifest's ``trade_count`` (ours) and the cluster allow_only
    violations (warning): trades of a cluster combo with include_watch false and policy filter
    ``allow_only`` whose ``entry_state_class`` is not ALLOW."""
    root = folder / TRADES
    written = root.is_dir() and any(root.rglob("*.parquet"))
    trades = pl.scan_parquet(root, hive_partitioning=True) if written else None
    names = trades.collect_schema().names() if trades is not None else []
    counts = (trades.group_by(KEY).agg(trades=pl.len()).collect() if trades is not None
              else pl.DataFrame(schema={"source_type": pl.Utf8, "combo_id": pl.Utf8,
                                        "trades": pl.UInt32}))  # fmt: skip
    count = pl.col("trade_count") if "trade_count" in success.columns else pl.lit(None)
    expected = success.select(*KEY, count.fill_null(0).alias("expected"))
    joined = expected.join(counts, on=list(KEY), how="full", coalesce=True)
    mismatch = joined.filter(pl.col("trades").fill_null(0) != pl.col("expected").fill_null(-1))
    errors, warnings = [], []
    if mismatch.height:
        errors.append("grid_trades_count_mismatch")
        details["grid_trades_count_mismatch"] = mismatch.sort(KEY).to_dicts()
    if trades is None or "entry_state_class" not in names:
        return errors, warnings
    mode = pl.col("policy_filter_mode").fill_null("allow_only") \
        if "policy_filter_mode" in success.columns else pl.lit("allow_only")  # fmt: skip
    allow_only = success.filter((pl.col("source_type") == "cluster") & (mode == "allow_only")
                                & ~_flag(success, "include_watch")).select(KEY)  # fmt: skip
    if allow_only.height:
        violations = (trades.select(*KEY, "entry_state_class")
                      .join(allow_only.lazy(), on=list(KEY), how="semi")
                      .filter(pl.col("entry_state_class").ne_missing("ALLOW"))
                      .select(pl.len()).collect().item())  # fmt: skip
        if violations:
            warnings.append(f"cluster_allow_only_violations:{violations}")
    return errors, warnings


def _period_return_errors(folder: Path, success: pl.DataFrame, details: dict[str, Any]
                          ) -> list[str]:  # fmt: skip
    """Every combo of ``grid_period_returns`` is a SUCCESS combo of the manifest (ours)."""
    path = folder / PERIOD_RETURNS
    if not path.is_file():
        return [f"missing_artifact:{PERIOD_RETURNS}"]
    combos = pl.scan_parquet(path).select(KEY).unique()
    unknown = combos.join(success.select(KEY).lazy(), on=list(KEY), how="anti").collect()
    if unknown.is_empty():
        return []
    details["period_returns_unknown_combos"] = unknown.sort(KEY).to_dicts()
    return ["period_returns_unknown_combos"]


def _overfitting_errors(summary: dict[str, Any], success: pl.DataFrame) -> list[str]:
    """The summary's ``overfitting`` block (ours): one entry per source with a SUCCESS combo,
    DSR and PBO in [0, 1] or null, a known fluke-risk label."""
    block = summary.get("overfitting")
    if not isinstance(block, dict):
        return ["missing_overfitting_summary"]
    errors = [f"overfitting_missing_source:{s}"
              for s in sorted(set(success["source_type"].to_list()) - set(block))]  # fmt: skip
    for source, entry in sorted(block.items()):
        entry = entry if isinstance(entry, dict) else {}
        for key in ("dsr", "pbo", "dsr_max_sharpe"):
            value = entry.get(key)
            if value is not None and not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                errors.append(f"overfitting_out_of_range:{source}.{key}")
        if entry.get("fluke_risk") not in FLUKE_LABELS:
            errors.append(f"overfitting_invalid_fluke_risk:{source}")
    return errors


def _warnings(manifest: pl.DataFrame, metrics: pl.DataFrame, summary: dict[str, Any]
              ) -> list[str]:  # fmt: skip
    warnings = []
    if str(summary.get("scope") or "").startswith("multi"):
        successes = manifest.group_by("source_type").agg(
            n=(pl.col("status") == "SUCCESS").sum()).sort("source_type")
        warnings += [f"source_no_success:{s}" for s, n in successes.rows() if n == 0]
    zero = int(metrics.select(_flag(metrics, "is_zero_trade_combo").sum()).item()) \
        if metrics.height else 0  # fmt: skip
    if summary.get("zero_trade_combos") != zero:
        warnings.append("zero_trade_combo_count_mismatch")
    if summary.get("realism_profile_broken_for_universe"):
        warnings.append("realism_profile_broken_for_universe")
    return warnings


def top_combos(metrics: pl.DataFrame, column: str, n: int = TOP_N) -> list[dict[str, Any]]:
    """The ``n`` best non-null values of ``column`` (:func:`sort_best_first`: +inf profit
    factor first), ties by ``combo_index`` then ``combo_id``, as ``{combo_id, source_type,
    value}``."""
    if column not in metrics.columns:
        return []
    rows = metrics.select("combo_id", "source_type", "combo_index",
                          pl.col(column).cast(pl.Float64).fill_nan(None).alias("value"))
    best = sort_best_first(rows.drop_nulls("value"), "value", ("combo_index", "combo_id"),
                           lower_is_better=column in LOWER_IS_BETTER)  # fmt: skip
    return best.head(n).select("combo_id", "source_type", "value").to_dicts()


def grid_sanity(folder: Path) -> dict[str, Any]:
    """§5.6 report of a grid folder: ``status`` PASS/FAIL, ``errors``, ``warnings``,
    ``details`` (counts or ids behind the errors) and the top 10 combos by expectancy and by
    profit factor. Reads only; the four required files missing is a FAIL with nothing else."""
    folder = Path(folder)
    errors = [f"missing_artifact:{name}" for name in REQUIRED if not (folder / name).is_file()]
    details: dict[str, Any] = {}
    result: dict[str, Any] = {"grid_dir": str(folder), "grid_run_id": None}
    if errors:
        return {**result, "status": "FAIL", "errors": errors, "warnings": [], "details": details,
                "manifest_rows": None, "successful_combos": None, "top10_expectancy": [],
                "top10_profit_factor": []}  # fmt: skip
    manifest = pl.read_parquet(folder / MANIFEST)
    metrics = pl.read_parquet(folder / METRICS)
    robustness = pl.read_parquet(folder / ROBUSTNESS)
    summary = json.loads((folder / SUMMARY).read_text())
    success = manifest.filter(pl.col("status") == "SUCCESS")
    errors += _manifest_errors(manifest, metrics, summary, details)
    errors += _linked_run_errors(success, details)
    non_finite = non_finite_cells(metrics) + non_finite_cells(robustness)
    if non_finite:
        errors.append("non_finite_metrics_cells")
        details["non_finite_metrics_cells"] = non_finite
    errors += _robustness_errors(metrics, details)
    errors += _overlay_errors(success, details)
    errors += _execution_errors(success, details)
    hardened = success.filter((pl.col("source_type") == "cluster")
                              & pl.col("cluster_hardening_dir").is_not_null()).height \
        if "cluster_hardening_dir" in success.columns else 0  # fmt: skip
    if hardened and not (folder / CLUSTER_TRADE_MIX).is_file():
        errors.append("missing_cluster_policy_trade_mix")
    trade_errors, warnings = _trade_checks(folder, success, details)
    errors += trade_errors
    errors += _period_return_errors(folder, success, details)
    errors += _overfitting_errors(summary, success)
    warnings = _warnings(manifest, metrics, summary) + warnings
    return {
        **result,
        "grid_run_id": summary.get("grid_run_id"),
        "status": "FAIL" if errors else "PASS",
        "errors": errors,
        "warnings": warnings,
        "details": details,
        "manifest_rows": manifest.height,
        "successful_combos": success.height,
        "top10_expectancy": top_combos(metrics, "expectancy"),
        "top10_profit_factor": top_combos(metrics, "profit_factor"),
    }
