"""Entry signals and the signal generator's diagnostics (spec §1.4).

Per-row flags are polars expressions over the whole frame; ``entry_signal`` comes from the
Numba kernel :func:`mf_pipeline.lib.kernels.backtest.entry_signals` (one call for all
tickers), the same function :func:`mf_pipeline.lib.backtest.engine.run_trades` uses when it
derives entries itself, so the diagnostics count exactly the entries the engine trades.

Gates: ``overlay_allow_signal`` and ``execution_eligible`` pass when the column is absent
(no overlay, no execution filter) and fail on a null value, as a missing ``True`` did in the
old tool. Nothing here reads ``fwd_ret_10``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.backtest import modes
from mf_pipeline.lib.backtest.mapping import LONG, SHORT, UNCONFIRMED
from mf_pipeline.lib.kernels import backtest as kb
from mf_pipeline.lib.kernels.offsets import ticker_offsets

REQUIRED_COLS: tuple[str, ...] = (
    "ticker", "trade_date", "state_id", "state_direction_hint", "signal_eligible",
)  # fmt: skip
SIGNAL_COLS: tuple[str, ...] = (
    "entry_side", "direction", "primary_eligible", "eligible", "state_changed", "entry_signal",
    "overlay_candidate_before", "overlay_candidate_after", "overlay_vetoed_signal",
    "overlay_gate_pass", "overlay_direction_conflict", "execution_gate_pass",
    "execution_candidate_before", "execution_candidate_after", "execution_suppressed_signal",
    "execution_filter_reason",
)  # fmt: skip


def _gate(frame: pl.DataFrame, col: str) -> pl.Expr:
    """A gate column as a non-null Boolean: absent passes, null fails."""
    if col not in frame.columns:
        return pl.lit(True)
    return pl.col(col).cast(pl.Boolean).fill_null(False)


def _label(frame: pl.DataFrame, col: str, default: str) -> pl.Expr:
    """A text column with null or empty values (or the whole column absent) as ``default``."""
    if col not in frame.columns:
        return pl.lit(default)
    text = pl.col(col).cast(pl.Utf8)
    return pl.when(text.is_null() | (text == "")).then(pl.lit(default)).otherwise(text)


def _any_true(frame: pl.DataFrame, col: str) -> bool:
    return col in frame.columns and bool(frame[col].cast(pl.Boolean).fill_null(False).any())


def _sorted_by_ticker_date(frame: pl.DataFrame) -> pl.DataFrame:
    t, d = pl.col("ticker"), pl.col("trade_date")
    in_order = ((t > t.shift(1)) | ((t == t.shift(1)) & (d >= d.shift(1)))).fill_null(True)
    if frame.select(in_order.all()).item():
        return frame
    return frame.sort("ticker", "trade_date", maintain_order=True)


def _entry_signals(frame: pl.DataFrame, signal_mode: str) -> pl.Series:
    """The kernel's entry flags (arrays typed as the engine passes them: one compilation)."""
    n = frame.height
    state = np.array(frame["state_id"].cast(pl.Int64).to_numpy(), dtype=np.int64)
    side = np.array(frame["direction"].to_numpy(), dtype=np.int8)
    signal_eligible = np.array(frame["_signal_eligible"].to_numpy(), dtype=np.bool_)
    gate_pass = np.array(frame["_gate_pass"].to_numpy(), dtype=np.bool_)
    out = np.zeros(n, dtype=np.bool_)
    kb.entry_signals(state, side, signal_eligible, gate_pass, ticker_offsets(frame["ticker"]),
                     modes.SIGNAL_MODES.index(signal_mode), out)  # fmt: skip
    return pl.Series("entry_signal", out, dtype=pl.Boolean)


def _share(count: int, total: int, empty: float | None) -> float | None:
    return count / total if total > 0 else empty


def _count_by(frame: pl.DataFrame, mask: str, key: str) -> dict[str, int]:
    rows = frame.filter(pl.col(mask)).group_by(key).len().sort(key)
    return dict(zip(rows[key].to_list(), rows["len"].to_list(), strict=True))


def generate_signals(frame: pl.DataFrame, signal_mode: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Add the §1.4 per-row signal columns and return the generator diagnostics.

    ``frame`` is the mapped bar frame (overlay and execution columns optional), one row per
    (ticker, trade_date); it is sorted by (ticker, trade_date) if it is not already.
    ``direction`` (Int8 +1/-1/0) is what the engine reads as the side.
    """
    if signal_mode not in modes.SIGNAL_MODES:
        raise ValueError(f"signal_mode must be one of {modes.SIGNAL_MODES}, got {signal_mode!r}")
    missing = [c for c in REQUIRED_COLS if c not in frame.columns]
    if missing:
        raise ValueError(f"signal generation needs the columns {missing}")
    if frame["state_id"].null_count():
        raise ValueError("state_id must not be null")
    frame = _sorted_by_ticker_date(frame)

    hint = pl.col("state_direction_hint").fill_null(UNCONFIRMED)
    overlay_hint = _label(frame, "overlay_direction_hint", UNCONFIRMED)
    side = pl.when(hint == LONG).then(pl.lit("LONG")).when(hint == SHORT).then(pl.lit("SHORT"))
    primary, overlay, execution = pl.col("primary_eligible"), pl.col("_overlay"), pl.col("_exec")
    ticker, state = pl.col("ticker"), pl.col("state_id")
    directional = [LONG, SHORT]
    out = frame.with_columns(
        side.alias("entry_side"),
        pl.when(hint == LONG).then(1).when(hint == SHORT).then(-1).otherwise(0)
        .cast(pl.Int8).alias("direction"),
        (pl.col("signal_eligible").cast(pl.Boolean).fill_null(False)).alias("_signal_eligible"),
        _gate(frame, "overlay_allow_signal").alias("_overlay"),
        _gate(frame, "execution_eligible").alias("_exec"),
        ((ticker == ticker.shift(1)) & (state != state.shift(1))).fill_null(False)
        .alias("state_changed"),
        (hint.is_in(directional) & overlay_hint.is_in(directional) & (hint != overlay_hint))
        .alias("overlay_direction_conflict"),
        _label(frame, "execution_filter_reason", "none").alias("execution_filter_reason"),
        _label(frame, "overlay_policy_class", "UNKNOWN").alias("_overlay_class"),
    ).with_columns(
        (pl.col("_signal_eligible") & pl.col("entry_side").is_not_null()).alias("primary_eligible"),
        (overlay & execution).alias("_gate_pass"),
    ).with_columns(
        (primary & overlay & execution).alias("eligible"),
        primary.alias("overlay_candidate_before"),
        (primary & overlay).alias("overlay_candidate_after"),
        (primary & ~overlay).alias("overlay_vetoed_signal"),
        overlay.alias("overlay_gate_pass"),
        execution.alias("execution_gate_pass"),
        (primary & overlay).alias("execution_candidate_before"),
        (primary & overlay & execution).alias("execution_candidate_after"),
        (primary & overlay & ~execution).alias("execution_suppressed_signal"),
    )  # fmt: skip
    out = out.with_columns(_entry_signals(out, signal_mode))

    sums = out.select(
        pl.col("eligible").sum(),
        pl.col("entry_signal").sum(),
        pl.col("overlay_candidate_before").sum(),
        pl.col("overlay_candidate_after").sum(),
        pl.col("overlay_vetoed_signal").sum(),
        (primary & pl.col("overlay_direction_conflict")).sum().alias("conflicts"),
        pl.col("execution_candidate_before").sum(),
        pl.col("execution_candidate_after").sum(),
        pl.col("execution_suppressed_signal").sum(),
    ).row(0, named=True)
    before = int(sums["overlay_candidate_before"])
    vetoed = int(sums["overlay_vetoed_signal"])
    conflicts = int(sums["conflicts"])
    before_exec = int(sums["execution_candidate_before"])
    suppressed = int(sums["execution_suppressed_signal"])
    by_reason = _count_by(out, "execution_suppressed_signal", "execution_filter_reason")
    reason_share = {k: _share(v, suppressed, 0.0) for k, v in by_reason.items()}
    overlay_modes = (
        out["overlay_mode"].drop_nulls() if "overlay_mode" in out.columns else pl.Series([])
    )
    diagnostics: dict[str, Any] = {
        "signal_mode": signal_mode,
        "rows": out.height,
        "eligible_rows": int(sums["eligible"]),
        "entry_signals": int(sums["entry_signal"]),
        "overlay_enabled": _any_true(out, "overlay_enabled"),
        "overlay_mode": str(overlay_modes[0]) if overlay_modes.len() else "none",
        "candidate_signals_before_overlay": before,
        "candidate_signals_after_overlay": int(sums["overlay_candidate_after"]),
        "overlay_vetoed_signal_count": vetoed,
        "overlay_vetoed_signal_share": _share(vetoed, before, None),
        "overlay_passed_signal_count": int(sums["overlay_candidate_after"]),
        "overlay_vetoed_by_policy_class": _count_by(out, "overlay_vetoed_signal", "_overlay_class"),
        "overlay_direction_conflict_count": conflicts,
        "overlay_direction_conflict_share": _share(conflicts, before, None),
        "execution_filters_enabled": _any_true(out, "execution_filters_enabled"),
        "candidate_signals_before_execution": before_exec,
        "candidate_signals_after_execution": int(sums["execution_candidate_after"]),
        "execution_suppressed_signal_count": suppressed,
        "execution_suppressed_signal_share": _share(suppressed, before_exec, 0.0),
        "execution_suppressed_by_reason_count": by_reason,
        "execution_suppressed_by_reason_share": reason_share,
        "execution_suppressed_by_reason": dict(reason_share),
    }
    helpers = ["_signal_eligible", "_overlay", "_exec", "_gate_pass", "_overlay_class"]
    out = out.drop(helpers).select(list(dict.fromkeys([*frame.columns, *SIGNAL_COLS])))
    return out, diagnostics
