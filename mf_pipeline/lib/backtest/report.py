"""Markdown report of one backtest run (backtest_ops.md §1.7) and the formatting shared by the
compare and walk-forward reports.

Pure: the caller passes the run's summary dict and its by-state / by-symbol tables and writes
the returned text. Profit factor is +inf when the run has no losing trade (fix 10); after a JSON
round trip the value is null and the flag ``profit_factor_inf`` is what survives, so every
reader goes through :func:`profit_factor_of`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

TOP_N = 20
METADATA_KEYS: tuple[str, ...] = (
    "run_id", "input_type", "input_file", "signal_mode", "exit_mode", "hold_bars",
    "allow_unconfirmed", "include_watch", "policy_filter_mode", "include_state_ids",
    "fee_bps_per_side", "slippage_bps_per_side", "equity_mode", "started_ts", "finished_ts",
    "duration_sec",
)  # fmt: skip
HEADLINE_KEYS: tuple[str, ...] = (
    "trade_count", "long_trade_count", "short_trade_count", "win_rate", "avg_return",
    "median_return", "avg_win", "avg_loss", "profit_factor", "expectancy", "return_std",
    "avg_hold_bars", "median_hold_bars", "skipped_signal_count", "invalid_trade_count",
)  # fmt: skip
OVERLAY_KEYS: tuple[str, ...] = (
    "overlay_mode", "overlay_coverage_mode", "overlay_coverage_bypass", "overlay_match_rate",
    "overlay_unknown_rate", "overlay_unknown_handling", "overlay_year_min_match_rate",
    "overlay_year_p10_match_rate", "overlay_year_fail_years", "overlay_coverage_status",
    "overlay_coverage_reasons", "overlay_allow_rate", "overlay_watch_rate", "overlay_block_rate",
    "overlay_vetoed_signal_count", "overlay_vetoed_signal_share", "overlay_passed_signal_count",
    "overlay_direction_conflict_count", "overlay_direction_conflict_share",
)  # fmt: skip
EXEC_REASONS: tuple[str, ...] = ("price", "liquidity", "vol", "warmup")
EXECUTION_KEYS: tuple[str, ...] = (
    "execution_profile", "execution_filters_enabled", "params_used", "vol_metric_source",
    "vol_unit_detected", "vol_threshold_effective_pct", "vol_unit_warnings", "rows_total",
    "rows_eligible", "exec_eligibility_rate", "exec_candidate_eligibility_rate",
    "candidate_signals_before_filters",
    "candidate_signals_after_filters", "exec_suppressed_signal_count",
    "exec_suppressed_signal_share",
    *(f"exec_suppressed_by_{r}_{k}" for r in EXEC_REASONS for k in ("count", "share")),
    "exec_trade_avg_dollar_vol_20", "exec_trade_p10_dollar_vol_20", "exec_trade_avg_vol_pct",
    "realism_profile_status",
)  # fmt: skip
STATE_COLUMNS: tuple[str, ...] = (
    "entry_state_id", "entry_state_label", "entry_state_class", "entry_state_direction_hint",
    "trade_count", "win_rate", "avg_return", "median_return", "net_pnl", "contribution_share",
    "profit_factor_proxy", "expectancy",
)  # fmt: skip
SYMBOL_COLUMNS: tuple[str, ...] = (
    "ticker", "trade_count", "win_rate", "avg_return", "median_return", "net_pnl", "contribution",
)  # fmt: skip
MVP_ASSUMPTIONS: tuple[str, ...] = (
    "Daily (D1) bars, one row per ticker and date.",
    "A signal is read at the close of bar t and fills at the open of bar t+1 (the close of "
    "t+1 when that open is missing or not positive); normal exits fill the same way.",
    "An exit triggered on a ticker's last bar, and a position still open at the end of the "
    "data, close at that bar's close (`exit_fill_fallback` = true), never at a price from "
    "before the decision.",
    "At most one open position per ticker: an entry signal while a position is open is "
    "skipped and counted (`skipped_due_overlap`); positions never overlap.",
    "No position sizing, capital constraint or cross-ticker portfolio: each trade is one "
    "unit return. No intraday fills, no short borrow cost.",
    "Costs per side: `fee_bps_per_side` + `slippage_bps_per_side` are charged on entry and on "
    "exit, net = gross − 2 × per-side cost (additive); both default to 0.",
    "`expectancy` equals `avg_return` (a zero return counts as a loss); it is kept for "
    "compatibility. Profit factor is +inf when no trade lost (`profit_factor_inf`).",
)


def profit_factor_of(metrics: Mapping[str, Any]) -> float | None:
    """The profit factor of a headline-like dict: +inf when its ``profit_factor_inf`` flag is
    set (the JSON value is then null), else the stored value."""
    if metrics.get("profit_factor_inf"):
        return math.inf
    value = metrics.get("profit_factor")
    return None if value is None else float(value)


def overlay_active(block: Mapping[str, Any] | None) -> bool:
    """The run joined an overlay (§6.1)."""
    return bool(block and block.get("overlay_enabled"))


def execution_active(block: Mapping[str, Any] | None) -> bool:
    """Execution filters are on or a profile other than ``none`` was chosen (§7.6)."""
    if not block:
        return False
    if "filters_enabled_or_profile_non_none" in block:
        return bool(block["filters_enabled_or_profile_non_none"])
    profile = block.get("execution_profile")
    return bool(block.get("execution_filters_enabled")) or profile not in (None, "none")


def fmt(value: Any) -> str:
    """A markdown cell: 6 significant digits, ``inf`` kept (profit factor), null as ``—``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value) or "—"
    return str(value).replace("|", "/").replace("\n", " ")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Markdown table lines; an empty table gets one row of dashes so it still renders."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    body = rows or [[None] * len(headers)]
    return lines + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in body]


def frame_table(frame: pl.DataFrame, columns: Sequence[str], limit: int | None = None) -> list[str]:
    """:func:`md_table` of the columns of ``columns`` present in ``frame``."""
    cols = [c for c in columns if c in frame.columns]
    if not cols:
        return ["_no rows_"]
    shown = frame.select(cols) if limit is None else frame.select(cols).head(limit)
    return md_table(cols, shown.rows())


def key_values(block: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """``- key: value`` lines for the keys of ``keys`` present in ``block``."""
    return [f"- {k}: {fmt(block[k])}" for k in keys if k in block]


def in_sample_line(summary: Mapping[str, Any]) -> str:
    """One visible line saying whether directions/policy were fitted on the traded rows."""
    flag = summary.get("in_sample")
    if flag is None and str(summary.get("input_type", "")).lower() == "flow":
        return "**In-sample: no**: FLOW directions are fixed rules (long/short state lists)."
    if flag is None:
        return "**In-sample: unknown** (the run did not record where its directions came from)."
    if flag:
        return ("**In-sample: YES**: the directions/policy were estimated on rows that overlap "
                "the traded rows, so these results overstate what a live run would see.")
    return ("**In-sample: no**: the directions/policy were estimated on rows before the traded "
            "rows (or are fixed rules).")  # fmt: skip


def _sorted_states(by_state: pl.DataFrame) -> pl.DataFrame:
    keys = [c for c in ("trade_count", "entry_state_id") if c in by_state.columns]
    if not keys:
        return by_state
    return by_state.sort(keys, descending=[k == "trade_count" for k in keys], nulls_last=True)


def _sorted_symbols(by_symbol: pl.DataFrame) -> pl.DataFrame:
    keys = [c for c in ("net_pnl", "ticker") if c in by_symbol.columns]
    if not keys:
        return by_symbol
    return by_symbol.sort(keys, descending=[k == "net_pnl" for k in keys], nulls_last=True)


def backtest_report_md(
    summary: Mapping[str, Any],
    by_state: pl.DataFrame,
    by_symbol: pl.DataFrame,
    cluster_policy_counts: Mapping[str, Any] | None,
) -> str:
    """``backtest_report.md`` of one run (§1.7).

    ``cluster_policy_counts`` is the cluster policy's summary (``allow_count``,
    ``watch_count``, ``block_count``) for cluster runs, None otherwise. The overlay and
    execution sections appear only when those gates were active.
    """
    headline = dict(summary.get("headline") or {})
    headline["profit_factor"] = profit_factor_of(headline)
    out = [f"# Backtest report: {summary.get('run_id', '—')}", "", in_sample_line(summary), ""]
    out += ["## Run", "", *key_values(summary, METADATA_KEYS), ""]
    out += ["## Headline metrics", "", *key_values(headline, HEADLINE_KEYS)]
    if headline.get("profit_factor_inf"):
        out.append("- profit_factor_inf: true (no losing trade)")
    equity = summary.get("equity_metrics")
    if equity:
        out += ["", f"Equity ({summary.get('equity_mode', '—')}):", "",
                *key_values(equity, list(equity))]  # fmt: skip
    if cluster_policy_counts is not None:
        out += ["", "## Cluster policy counts", ""]
        out += md_table(["ALLOW", "WATCH", "BLOCK"],
                        [[cluster_policy_counts.get(f"{c}_count")
                          for c in ("allow", "watch", "block")]])  # fmt: skip
    overlay = summary.get("overlay")
    if overlay_active(overlay):
        out += ["", "## Policy overlay", "", *key_values(overlay, OVERLAY_KEYS)]
    execution = summary.get("execution")
    if execution_active(execution):
        out += ["", "## Execution realism", "", *key_values(execution, EXECUTION_KEYS), "",
                "`exec_eligibility_rate` is the share of ALL rows that pass the filters, not a "
                "share of signals; the suppressed counts are the signal-level effect."]
    out += ["", f"## Top {TOP_N} states by trade count", ""]
    out += frame_table(_sorted_states(by_state), STATE_COLUMNS, TOP_N)
    out += ["", f"## Top {TOP_N} symbols by net contribution (sum of net returns)", ""]
    out += frame_table(_sorted_symbols(by_symbol), SYMBOL_COLUMNS, TOP_N)
    out += ["", "## Assumptions", "", *(f"- {a}" for a in MVP_ASSUMPTIONS), ""]
    return "\n".join(out)
