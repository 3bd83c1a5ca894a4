"""Numba trade simulation for the backtest engine (backtest_ops.md §1.4-§1.5).

One call simulates every ticker of a run: flat per-row arrays over a frame sorted by
(ticker, trade_date), ``offsets`` from :func:`~mf_pipeline.lib.kernels.offsets.ticker_offsets`,
outputs preallocated by the caller. A ticker's state (open position, pending entry, pending
exit) is reset at its first row, so no trade can cross tickers.

Rules follow the spec except for its fault 7: an exit that cannot be filled at a next bar's
open (trigger on the ticker's last row, or a position still open at the end of data) fills
at that bar's CLOSE, the price at which the decision was taken, instead of its open; the
trade carries ``exit_fill_fallback``. Positions never overlap: a signal while a position is
open is counted in ``skipped_due_overlap`` (the old ``allow_overlap=true`` only hid that
count, fault 8, so it is not offered).
"""

from __future__ import annotations

import numpy as np

from mf_pipeline.lib.kernels.jit import njit, prange
from mf_pipeline.lib.kernels.recursive import check_offsets

# exit reason code -> label; codes 0-2 are the exit modes, +3 their last-bar fallbacks
EXIT_REASONS = (
    "HORIZON",
    "STATE_EXIT",
    "HORIZON_OR_STATE",
    "HORIZON_LAST_BAR_FALLBACK",
    "STATE_EXIT_LAST_BAR_FALLBACK",
    "HORIZON_OR_STATE_LAST_BAR_FALLBACK",
    "END_OF_DATA",
)
END_OF_DATA = 6
CONFIRM_BARS = 2  # state_persistence_confirm: same-side eligible streak that confirms
# diagnostics slots
DIAG_ENTRY_SIGNALS = 0
DIAG_SKIPPED_NO_NEXT_BAR = 1
DIAG_SKIPPED_OVERLAP = 2
DIAG_FORCED_EXIT_LAST_BAR = 3
DIAG_INVALID_TRADES = 4
N_DIAG = 5
# columns of the int64 trade table
T_ENTRY_SIGNAL_ROW = 0
T_ENTRY_ROW = 1
T_EXIT_SIGNAL_ROW = 2
T_EXIT_ROW = 3
T_SIDE = 4
T_REASON = 5
T_FALLBACK = 6
N_TRADE_INT = 7
# columns of the float64 trade table
F_ENTRY_PRICE = 0
F_EXIT_PRICE = 1
F_MFE = 2
F_MAE = 3
F_GROSS = 4
F_NET = 5
N_TRADE_FLOAT = 6


@njit(cache=True)
def _usable(price: float) -> bool:
    return np.isfinite(price) and price > 0.0


@njit(cache=True)
def entry_signals(
    state: np.ndarray,
    side: np.ndarray,
    signal_eligible: np.ndarray,
    gate_pass: np.ndarray,
    offsets: np.ndarray,
    signal_mode: int,
    out: np.ndarray,
) -> None:
    """Mark entry rows (§1.4) in the bool array ``out``.

    A row is eligible when ``signal_eligible`` (state mapping), ``side`` is +1/-1 and
    ``gate_pass`` (overlay and execution gates). ``state_entry``: every eligible row;
    ``state_transition_entry``: eligible rows that are the ticker's first row or whose state
    differs from the previous row's (whatever that row's eligibility); ``state_persistence_
    confirm``: eligible rows ending a run of at least two consecutive eligible same-side rows
    (every such row, not only the second).
    """
    n = state.shape[0]
    check_offsets(offsets, n)
    for t in range(offsets.shape[0] - 1):
        streak = 0
        prev_side = 0
        for i in range(offsets[t], offsets[t + 1]):
            eligible = signal_eligible[i] and side[i] != 0 and gate_pass[i]
            if signal_mode == 0:
                out[i] = eligible
            elif signal_mode == 1:
                out[i] = eligible and (i == offsets[t] or state[i] != state[i - 1])
            else:
                if eligible and side[i] == prev_side:
                    streak += 1
                elif eligible:
                    streak = 1
                else:
                    streak = 0
                prev_side = side[i] if eligible else 0
                out[i] = streak >= CONFIRM_BARS


@njit(cache=True)
def _close_trade(
    k: int,
    i: int,
    price: float,
    signal_row: int,
    reason: int,
    fallback: bool,
    cost: float,
    trade_int: np.ndarray,
    trade_float: np.ndarray,
    diag: np.ndarray,
) -> None:
    """Write exit fields and returns of trade ``k`` (already holding its entry)."""
    trade_int[k, T_EXIT_SIGNAL_ROW] = signal_row
    trade_int[k, T_EXIT_ROW] = i
    trade_int[k, T_REASON] = reason
    trade_int[k, T_FALLBACK] = 1 if fallback else 0
    trade_float[k, F_EXIT_PRICE] = price
    entry = trade_float[k, F_ENTRY_PRICE]
    gross = np.nan
    if _usable(price) and _usable(entry):
        gross = price / entry - 1.0 if trade_int[k, T_SIDE] > 0 else entry / price - 1.0
    trade_float[k, F_GROSS] = gross
    trade_float[k, F_NET] = gross - cost if np.isfinite(gross) else np.nan
    if not np.isfinite(gross):
        diag[DIAG_INVALID_TRADES] += 1


@njit(cache=True)
def simulate_trades(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    side: np.ndarray,
    signal_eligible: np.ndarray,
    entry_signal: np.ndarray,
    offsets: np.ndarray,
    exit_mode: int,
    hold_bars: int,
    cost_bps_per_side: float,
    trade_int: np.ndarray,
    trade_float: np.ndarray,
    diag: np.ndarray,
) -> int:
    """Simulate one position at a time per ticker (§1.5); return the number of trades.

    Signal at the close of row t, fill at the open of row t+1 (the close if the open is not
    a positive finite price). ``hold_bars_realized`` = exit row - entry row; a horizon exit
    triggers at the close of ``entry + max(1, hold_bars)`` and fills one bar later. The state
    exit fires on a row that is not ``signal_eligible`` or whose side opposes the position
    (also on the entry bar). MFE/MAE use high/low of the rows the position is held through
    the close (entry row included, exit-fill row excluded). ``net = gross - 2 * cost``.
    ``trade_int`` (m x 7) and ``trade_float`` (m x 6) need m >= the number of entry signals
    (each trade has its own trigger row); ``diag`` (5) is zeroed here.
    """
    n = close.shape[0]
    check_offsets(offsets, n)
    capacity = 0
    for i in range(n):
        capacity += 1 if entry_signal[i] else 0
    if trade_int.shape[0] < capacity or trade_float.shape[0] < capacity:
        raise ValueError("trade tables need one row per entry signal")
    diag[:] = 0
    cost = 2.0 * cost_bps_per_side / 10_000.0
    horizon = max(1, hold_bars)
    k = 0  # trades written so far; trade k-1 is open while in_pos
    for t in range(offsets.shape[0] - 1):
        first = offsets[t]
        last = offsets[t + 1] - 1
        in_pos = False
        pending_entry = -1  # trigger row of an entry to fill at the next row
        pending_exit = -1  # trigger row of an exit to fill at the next row
        for i in range(first, last + 1):
            if in_pos and pending_exit >= 0:
                fill = open_[i]
                fallback = not _usable(fill)
                if fallback:
                    fill = close[i]
                _close_trade(k - 1, i, fill, pending_exit, exit_mode, fallback, cost,
                             trade_int, trade_float, diag)
                in_pos = False
                pending_exit = -1
            if not in_pos and pending_entry >= 0:
                fill = open_[i]
                if not _usable(fill):
                    fill = close[i]
                if _usable(fill):
                    trade_int[k, T_ENTRY_SIGNAL_ROW] = pending_entry
                    trade_int[k, T_ENTRY_ROW] = i
                    trade_int[k, T_SIDE] = side[pending_entry]
                    trade_float[k, F_ENTRY_PRICE] = fill
                    trade_float[k, F_MFE] = 0.0
                    trade_float[k, F_MAE] = 0.0
                    k += 1
                    in_pos = True
                else:
                    diag[DIAG_SKIPPED_NO_NEXT_BAR] += 1
                pending_entry = -1
            if in_pos and _usable(high[i]) and _usable(low[i]):
                entry = trade_float[k - 1, F_ENTRY_PRICE]
                if trade_int[k - 1, T_SIDE] > 0:
                    favorable = high[i] / entry - 1.0
                    adverse = low[i] / entry - 1.0
                else:
                    favorable = entry / low[i] - 1.0
                    adverse = entry / high[i] - 1.0
                trade_float[k - 1, F_MFE] = max(trade_float[k - 1, F_MFE], favorable)
                trade_float[k - 1, F_MAE] = min(trade_float[k - 1, F_MAE], adverse)
            if entry_signal[i]:
                diag[DIAG_ENTRY_SIGNALS] += 1
                if in_pos:
                    diag[DIAG_SKIPPED_OVERLAP] += 1
                elif pending_entry < 0 and side[i] != 0:
                    if i < last:
                        pending_entry = i
                    else:
                        diag[DIAG_SKIPPED_NO_NEXT_BAR] += 1
            if in_pos and pending_exit < 0:
                pos_side = trade_int[k - 1, T_SIDE]
                horizon_hit = i - trade_int[k - 1, T_ENTRY_ROW] >= horizon
                state_hit = (not signal_eligible[i]) or (side[i] != 0 and side[i] != pos_side)
                if exit_mode == 0:
                    hit = horizon_hit
                elif exit_mode == 1:
                    hit = state_hit
                else:
                    hit = horizon_hit or state_hit
                if hit:
                    if i < last:
                        pending_exit = i
                    else:
                        _close_trade(k - 1, i, close[i], i, exit_mode + 3, True, cost,
                                     trade_int, trade_float, diag)
                        diag[DIAG_FORCED_EXIT_LAST_BAR] += 1
                        in_pos = False
        if in_pos:
            _close_trade(k - 1, last, close[last], last, END_OF_DATA, True, cost,
                         trade_int, trade_float, diag)
            diag[DIAG_FORCED_EXIT_LAST_BAR] += 1
    return k


@njit(cache=True, parallel=True)
def simulate_batch(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    side: np.ndarray,
    signal_eligible: np.ndarray,
    entry_signal: np.ndarray,
    offsets: np.ndarray,
    exit_modes: np.ndarray,
    hold_bars: np.ndarray,
    cost_bps_per_side: np.ndarray,
    trade_int: np.ndarray,
    trade_float: np.ndarray,
    diag: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Many strategies on the same signals in one call (a grid's combos that differ only in
    exit mode, hold and costs): strategy ``c`` is :func:`simulate_trades` with
    ``exit_modes[c]``, ``hold_bars[c]``, ``cost_bps_per_side[c]`` into ``trade_int[c]``,
    ``trade_float[c]``, ``diag[c]``, its trade count in ``counts[c]``; strategies run in
    parallel threads."""
    for c in prange(exit_modes.size):
        counts[c] = simulate_trades(open_, high, low, close, side, signal_eligible, entry_signal,
                                    offsets, exit_modes[c], hold_bars[c], cost_bps_per_side[c],
                                    trade_int[c], trade_float[c], diag[c])

