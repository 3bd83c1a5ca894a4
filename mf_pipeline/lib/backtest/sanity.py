"""Read-only sanity check of a finished backtest run folder (backtest_ops.md §1.9).

``status`` is FAIL when any error fires; NaN cells only warn. Error names follow the spec;
the checks the spec describes without naming get the names of ``_named`` below.
The old tool's check "a ``verdict_label`` of PRIMARY/SECONDARY_CANDIDATE with zero trades" is
not carried over: no step ever writes ``verdict_label`` into a backtest summary, so it could not
fire.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.backtest.report import (
    EXEC_REASONS,
    execution_active,
    overlay_active,
    profit_factor_of,
)

SUMMARY = "backtest_summary.json"
TRADES = "trades.parquet"
BY_STATE = "summary_by_state.csv"
BY_SYMBOL = "summary_by_symbol.csv"
OVERLAY_ARTIFACTS: tuple[str, ...] = (
    "overlay_join_summary.json", "overlay_coverage_verdict.json",
    "overlay_policy_mix_on_primary.csv", "overlay_signal_effect_summary.json",
)  # fmt: skip
EXECUTION_ARTIFACTS: tuple[str, ...] = (
    "execution_filter_summary.json", "execution_filter_by_reason.csv",
    "execution_filter_by_year.csv", "execution_trade_context_summary.json",
)  # fmt: skip
TRADE_COLUMNS: tuple[str, ...] = (
    "position_id", "entry_date", "exit_date", "entry_price", "exit_price",
    "hold_bars_realized", "is_valid_trade",
)  # fmt: skip
TOP_N = 15


def _unit_share(value: Any) -> bool:
    """A finite number in [0, 1] (null is not)."""
    return isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0


def _count(value: Any) -> bool:
    """A non-negative integer (an integral float read back from JSON counts)."""
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0 \
        and float(value).is_integer()  # fmt: skip


def nan_counts(frame: pl.DataFrame) -> dict[str, int]:
    """NaN cells per float column, only the columns that have any (null is not NaN)."""
    floats = [c for c, t in frame.schema.items() if t.is_float()]
    if not floats or frame.is_empty():
        return {}
    counts = frame.select(pl.col(floats).is_nan().sum()).row(0, named=True)
    return {c: int(n) for c, n in counts.items() if n}


def trade_errors(trades: pl.DataFrame, headline: dict[str, Any] | None) -> list[str]:
    """The five trade-table errors of §1.9 (one error instead when columns are missing)."""
    missing = [c for c in TRADE_COLUMNS if c not in trades.columns]
    if missing:
        return [f"missing_trade_columns:{','.join(missing)}"]
    errors = []
    if (trades["hold_bars_realized"] < 0).any():
        errors.append("negative_hold_bars")
    if (trades["entry_date"] > trades["exit_date"]).any():
        errors.append("entry_date_after_exit_date")
    if trades["position_id"].is_duplicated().any():
        errors.append("duplicate_position_id")
    good_price = pl.all_horizontal(
        (pl.col(c).is_finite() & (pl.col(c) > 0)).fill_null(False)
        for c in ("entry_price", "exit_price")
    )
    valid = trades.filter(pl.col("is_valid_trade").fill_null(False))
    if valid.height and not valid.select(good_price.all()).item():
        errors.append("non_finite_or_nonpositive_prices_in_valid_trades")
    if headline is not None and headline.get("trade_count") != trades.height:
        errors.append("trade_count_mismatch")
    return errors


def overlay_errors(run_dir: Path, block: dict[str, Any]) -> list[str]:
    """§1.9 overlay checks: artifacts, rate ranges, a strict-mode FAIL that was not bypassed."""
    errors = [f"missing_overlay_artifact:{name}" for name in OVERLAY_ARTIFACTS
              if not (run_dir / name).is_file()]  # fmt: skip
    for key in ("overlay_match_rate", "overlay_unknown_rate"):
        if not _unit_share(block.get(key)):
            errors.append(f"{key}_missing_or_out_of_range")
    verdict_file = run_dir / "overlay_coverage_verdict.json"
    verdict = json.loads(verdict_file.read_text()) if verdict_file.is_file() else {}
    mode = verdict.get("coverage_mode", block.get("overlay_coverage_mode"))
    status = str(verdict.get("status", block.get("overlay_coverage_status")) or "")
    if mode == "strict_fail" and not block.get("overlay_coverage_bypass") \
            and status.startswith("FAIL"):  # fmt: skip
        errors.append("overlay_strict_fail_verdict_present")
    share = block.get("overlay_vetoed_signal_share")
    if share is not None and not _unit_share(share):  # null when there was no candidate
        errors.append("overlay_vetoed_signal_share_out_of_range")
    return errors


def execution_errors(run_dir: Path, block: dict[str, Any]) -> list[str]:
    """§1.9 execution checks: artifacts, shares in [0, 1], counts consistent."""
    errors = [f"missing_execution_artifact:{name}" for name in EXECUTION_ARTIFACTS
              if not (run_dir / name).is_file()]  # fmt: skip
    shares = ["exec_eligibility_rate", "exec_suppressed_signal_share",
              *(f"exec_suppressed_by_{r}_share" for r in EXEC_REASONS)]  # fmt: skip
    if block.get("rows_total") == 0 and block.get("exec_eligibility_rate") is None:
        shares.remove("exec_eligibility_rate")  # no row at all: the rate is undefined
    errors += [f"{k}_missing_or_out_of_range" for k in shares if not _unit_share(block.get(k))]
    errors += [f"exec_suppressed_by_{r}_count_invalid" for r in EXEC_REASONS
               if not _count(block.get(f"exec_suppressed_by_{r}_count"))]  # fmt: skip
    before = block.get("candidate_signals_before_filters")
    after = block.get("candidate_signals_after_filters")
    suppressed = block.get("exec_suppressed_signal_count")
    if not all(_count(v) for v in (before, after, suppressed)):
        errors.append("exec_signal_counts_missing_or_invalid")
        return errors
    if after > before:
        errors.append("exec_candidates_after_exceed_before")
    if suppressed != before - after:
        errors.append("exec_suppressed_count_mismatch")
    by_reason_file = run_dir / "execution_filter_by_reason.csv"
    if by_reason_file.is_file():
        by_reason = pl.read_csv(by_reason_file)
        cols = ("suppressed_signal_count", "suppressed_signal_share", "row_share_total")
        if any(c not in by_reason.columns for c in cols):
            return [*errors, "exec_by_reason_columns_missing"]
        if by_reason["suppressed_signal_count"].cast(pl.Float64).sum() > suppressed:
            errors.append("exec_by_reason_count_sum_exceeds_suppressed")
        for col in ("suppressed_signal_share", "row_share_total"):
            if not all(_unit_share(v) for v in by_reason[col].cast(pl.Float64).to_list()):
                errors.append(f"exec_by_reason_{col}_out_of_range")
    return errors


def _read(run_dir: Path, name: str) -> Any:
    path = run_dir / name
    if not path.is_file():
        return None
    if name.endswith(".json"):
        return json.loads(path.read_text())
    return pl.read_parquet(path) if name.endswith(".parquet") else pl.read_csv(path)


def _top(frame: pl.DataFrame | None, key: str, tie: str) -> list[dict[str, Any]]:
    if frame is None or key not in frame.columns:
        return []
    keys = [key, *([tie] if tie in frame.columns else [])]
    ordered = frame.sort(keys, descending=[True, False][: len(keys)], nulls_last=True)
    return ordered.head(TOP_N).to_dicts()


def _policy_counts(run_dir: Path, trades: pl.DataFrame | None) -> dict[str, Any]:
    """Class counts of the cluster policy (policy_snapshot.json, cluster runs) and of the
    trades' entry classes."""
    snapshot = _read(run_dir, "policy_snapshot.json") or {}
    summary = snapshot.get("summary") if isinstance(snapshot, dict) else None
    policy = {c: summary.get(f"{c}_count") for c in ("allow", "watch", "block")} \
        if isinstance(summary, dict) else None  # fmt: skip
    by_trade = {}
    if trades is not None and "entry_state_class" in trades.columns:
        counts = trades["entry_state_class"].value_counts(sort=True, name="n")
        by_trade = {str(c): int(n) for c, n in counts.rows()}
    return {"policy": policy, "trades_by_entry_state_class": by_trade}


def backtest_sanity(run_dir: Path) -> dict[str, Any]:
    """§1.9 report of a run folder: ``status`` PASS/FAIL, ``errors``, ``warnings`` and the
    facts a reader wants next to them (NaN counts, policy counts, top 15 states/symbols)."""
    run_dir = Path(run_dir)
    loaded = {name: _read(run_dir, name) for name in (SUMMARY, TRADES, BY_STATE, BY_SYMBOL)}
    errors = [f"missing_artifact:{name}" for name, v in loaded.items() if v is None]
    summary, trades = loaded[SUMMARY], loaded[TRADES]
    by_state, by_symbol = loaded[BY_STATE], loaded[BY_SYMBOL]
    headline = (summary or {}).get("headline")
    if trades is not None:
        errors += trade_errors(trades, headline if summary is not None else None)
    overlay = (summary or {}).get("overlay")
    if overlay_active(overlay):
        errors += overlay_errors(run_dir, overlay)
    execution = (summary or {}).get("execution")
    if execution_active(execution):
        errors += execution_errors(run_dir, execution)
    nans = {name: nan_counts(frame)
            for name, frame in (("trades", trades), ("by_state", by_state),
                                ("by_symbol", by_symbol)) if frame is not None}  # fmt: skip
    warnings = [f"nan_values:{table}.{col}={n}" for table, cols in nans.items()
                for col, n in cols.items()]  # fmt: skip
    return {
        "run_dir": str(run_dir),
        "run_id": (summary or {}).get("run_id"),
        "status": "FAIL" if errors else "PASS",
        "errors": errors,
        "warnings": warnings,
        "trade_count": None if trades is None else trades.height,
        "headline": headline,
        "profit_factor": None if headline is None else profit_factor_of(headline),
        "profit_factor_inf": bool((headline or {}).get("profit_factor_inf")),
        "overlay_enabled": overlay_active(overlay),
        "execution_active": execution_active(execution),
        "nan_counts": nans,
        "policy_counts": _policy_counts(run_dir, trades),
        "top_states": _top(by_state, "trade_count", "entry_state_id"),
        "top_symbols": _top(by_symbol, "net_pnl", "ticker"),
    }
