"""Trades from a (ticker, trade_date)-sorted bar frame with states and directions (spec §1.4-§1.5).

The frame carries ``open``/``high``/``low``/``close``, a state column and a per-row direction
(+1 long, -1 short, 0 none). This wrapper only validates, hands flat arrays to the Numba kernel
and gathers the kernel's row indices back into a polars trade table; it has no row loop.

Differences from the old tool (backtest_ops.md §13), on purpose:
- last-bar and end-of-data exits fill at that bar's close (the old tool used its open, a price
  from before the decision); ``exit_fill_fallback`` is true on them. For ``END_OF_DATA`` the
  ``exit_signal_date`` is the last bar's date.
- positions never overlap and there is no ``allow_overlap`` option (the old one changed only
  a counter).
- cost columns share one unit: ``fees`` and ``slippage`` are round-trip decimal fractions (the
  old ``slippage_bps`` was in basis points next to a decimal ``fees``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from mf_pipeline.lib.backtest import modes
from mf_pipeline.lib.kernels import backtest as kb
from mf_pipeline.lib.kernels.offsets import bar_index, kernel_array, ticker_offsets

PRICE_COLS = ("open", "high", "low", "close")


@dataclass(frozen=True)
class BacktestConfig:
    """Strategy parameters of one run (defaults = the spec's settings defaults)."""

    signal_mode: str = "state_transition_entry"
    exit_mode: str = "horizon_or_state"
    hold_bars: int = 10
    fee_bps_per_side: float = 0.0
    slippage_bps_per_side: float = 0.0

    def __post_init__(self) -> None:
        if self.signal_mode not in modes.SIGNAL_MODES:
            raise ValueError(f"signal_mode must be one of {modes.SIGNAL_MODES}")
        if self.exit_mode not in modes.EXIT_MODES:
            raise ValueError(f"exit_mode must be one of {modes.EXIT_MODES}")
        if self.hold_bars < 1:
            raise ValueError("hold_bars must be >= 1")


@dataclass(frozen=True)
class BacktestResult:
    """Trades (one row per closed position) and the engine diagnostics of §1.5."""

    trades: pl.DataFrame
    diagnostics: dict[str, int]


def _bool_array(frame: pl.DataFrame, col: str | None, default: np.ndarray) -> np.ndarray:
    if col is None:
        return default
    return np.array(frame[col].fill_null(False).to_numpy(), dtype=np.bool_)


def _check_input(frame: pl.DataFrame, offsets: np.ndarray) -> None:
    """Reject null keys, unsorted dates and directions outside {-1, 0, +1}."""
    if frame["state_key"].null_count() or frame["trade_date"].null_count():
        raise ValueError("state and trade_date must not be null")
    dates = frame["trade_date"]
    later = (dates > dates.shift(1)).fill_null(True).to_numpy()
    if not np.all(later | (bar_index(offsets) == 0)):
        raise ValueError("rows must be sorted by trade_date (unique) within each ticker")
    bad = frame["direction_key"].drop_nulls().is_in([-1, 0, 1]).not_().any()
    if bad:
        raise ValueError("direction must be +1, -1, 0 or null")


@dataclass(frozen=True)
class KernelInputs:
    """The flat arrays of a frame the kernels read, extracted once (a grid simulates many
    strategies on them)."""

    frame: pl.DataFrame
    prices: tuple[np.ndarray, ...]
    side: np.ndarray
    signal_eligible: np.ndarray
    entry_signal: np.ndarray
    offsets: np.ndarray
    carry: tuple[str, ...]


def kernel_inputs(
    frame: pl.DataFrame,
    signal_mode: str,
    *,
    state_col: str = "state_id",
    direction_col: str = "direction",
    eligible_col: str | None = None,
    gate_col: str | None = None,
    entry_col: str | None = None,
    carry: Sequence[str] = (),
) -> KernelInputs:
    """Check ``frame`` and extract the kernel arrays; see :func:`run_trades` for the columns."""
    required = ["ticker", "trade_date", *PRICE_COLS, state_col, direction_col, *carry]
    required += [c for c in (eligible_col, gate_col, entry_col) if c is not None]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"backtest input lacks columns {missing}")
    offsets = ticker_offsets(frame["ticker"])
    keyed = frame.with_columns(
        pl.col(state_col).alias("state_key"), pl.col(direction_col).alias("direction_key")
    )
    _check_input(keyed, offsets)
    n = frame.height
    side = np.array(keyed["direction_key"].fill_null(0).to_numpy(), dtype=np.int8)
    signal_eligible = _bool_array(frame, eligible_col, side != 0)
    gate_pass = _bool_array(frame, gate_col, np.ones(n, dtype=np.bool_))

    if entry_col is None:
        state = np.array(keyed["state_key"].rank("dense").to_numpy(), dtype=np.int64)
        entry_signal = np.zeros(n, dtype=np.bool_)
        kb.entry_signals(
            state, side, signal_eligible, gate_pass, offsets,
            modes.SIGNAL_MODES.index(signal_mode), entry_signal,
        )
    else:
        entry_signal = _bool_array(frame, entry_col, side != 0)
    return KernelInputs(frame, tuple(kernel_array(frame[c]) for c in PRICE_COLS), side,
                        signal_eligible, entry_signal, offsets, (state_col, *carry))


def run_trades(
    frame: pl.DataFrame,
    config: BacktestConfig,
    *,
    state_col: str = "state_id",
    direction_col: str = "direction",
    eligible_col: str | None = None,
    gate_col: str | None = None,
    entry_col: str | None = None,
    carry: Sequence[str] = (),
) -> BacktestResult:
    """Simulate ``config`` on ``frame`` and return its trades and diagnostics.

    ``eligible_col`` is the mapping-level ``signal_eligible`` (default: direction != 0); it
    drives both entries and the state exit. ``gate_col`` (overlay and execution gates,
    default all true) restricts entries only. ``entry_col`` takes entry signals already
    computed (by ``signals.generate_signals``) instead of deriving them here. Each column
    ``c`` in ``carry`` (plus the state column) is copied from the entry's trigger row as
    ``entry_<c>``. A null direction means none; null prices become NaN and are handled by
    the kernel's fallbacks.
    """
    inputs = kernel_inputs(frame, config.signal_mode, state_col=state_col,
                           direction_col=direction_col, eligible_col=eligible_col,
                           gate_col=gate_col, entry_col=entry_col, carry=carry)
    capacity = int(inputs.entry_signal.sum())
    trade_int = np.zeros((capacity, kb.N_TRADE_INT), dtype=np.int64)
    trade_float = np.full((capacity, kb.N_TRADE_FLOAT), np.nan)
    diag = np.zeros(kb.N_DIAG, dtype=np.int64)
    n_trades = kb.simulate_trades(
        *inputs.prices, inputs.side, inputs.signal_eligible, inputs.entry_signal,
        inputs.offsets, modes.EXIT_MODES.index(config.exit_mode), config.hold_bars,
        config.fee_bps_per_side + config.slippage_bps_per_side,
        trade_int, trade_float, diag,
    )
    return _result(inputs, config, trade_int[:n_trades], trade_float[:n_trades], diag)


BATCH_BYTES = 256 * 2**20
"""Upper bound of the preallocated trade tables of one :func:`run_trades_batch` kernel call."""


def run_trades_batch(inputs: KernelInputs, configs: Sequence[BacktestConfig]
                     ) -> list[BacktestResult]:  # fmt: skip
    """Each config on the same signals, as :func:`run_trades` would simulate it, with many
    configs per kernel call (:func:`kernels.backtest.simulate_batch`, in parallel threads);
    calls are cut so their trade tables stay under :data:`BATCH_BYTES`. The configs' signal
    modes must be the one ``inputs`` was built with."""
    capacity = int(inputs.entry_signal.sum())
    per_config = max(capacity, 1) * (kb.N_TRADE_INT + kb.N_TRADE_FLOAT) * 8
    chunk = max(1, BATCH_BYTES // per_config)
    out: list[BacktestResult] = []
    for first in range(0, len(configs), chunk):
        part = configs[first:first + chunk]
        k = len(part)
        trade_int = np.zeros((k, capacity, kb.N_TRADE_INT), dtype=np.int64)
        trade_float = np.full((k, capacity, kb.N_TRADE_FLOAT), np.nan)
        diag = np.zeros((k, kb.N_DIAG), dtype=np.int64)
        counts = np.zeros(k, dtype=np.int64)
        kb.simulate_batch(
            *inputs.prices, inputs.side, inputs.signal_eligible, inputs.entry_signal,
            inputs.offsets, np.array([modes.EXIT_MODES.index(c.exit_mode) for c in part]),
            np.array([c.hold_bars for c in part], dtype=np.int64),
            np.array([c.fee_bps_per_side + c.slippage_bps_per_side for c in part]),
            trade_int, trade_float, diag, counts,
        )
        out += [_result(inputs, c, trade_int[i, :counts[i]], trade_float[i, :counts[i]],
                        diag[i]) for i, c in enumerate(part)]  # fmt: skip
    return out


def _result(inputs: KernelInputs, config: BacktestConfig, trade_int: np.ndarray,
            trade_float: np.ndarray, diag: np.ndarray) -> BacktestResult:  # fmt: skip
    trades = _trade_frame(inputs.frame, trade_int, trade_float, config, list(inputs.carry))
    diagnostics = {
        "input_rows": inputs.frame.height,
        "entry_signals": int(diag[kb.DIAG_ENTRY_SIGNALS]),
        "skipped_no_next_bar_entry": int(diag[kb.DIAG_SKIPPED_NO_NEXT_BAR]),
        "skipped_due_overlap": int(diag[kb.DIAG_SKIPPED_OVERLAP]),
        "forced_exit_last_bar": int(diag[kb.DIAG_FORCED_EXIT_LAST_BAR]),
        "invalid_trade_count": int(diag[kb.DIAG_INVALID_TRADES]),
    }
    return BacktestResult(trades=trades, diagnostics=diagnostics)


def warm_up() -> None:
    """Load both kernels from Numba's cache with the argument types :func:`run_trades` uses.

    The first Numba call of a process imports and registers numba's numpy support (~0.2 s);
    a run starts this in a thread while polars reads and normalizes its rows.
    """
    tiny = pl.DataFrame({"ticker": ["W"] * 3, "trade_date": pl.date_range(
        dt.date(2000, 1, 3), dt.date(2000, 1, 5), eager=True), "state_id": [1, 1, 2],
        "direction": pl.Series([1, 1, -1], dtype=pl.Int8),
        **{c: [1.0, 1.0, 1.0] for c in PRICE_COLS}})  # fmt: skip
    run_trades(tiny, BacktestConfig())


def _trade_frame(
    frame: pl.DataFrame,
    ti: np.ndarray,
    tf: np.ndarray,
    config: BacktestConfig,
    carry: Sequence[str],
) -> pl.DataFrame:
    """Gather the kernel's row indices into the §1.5 trade columns."""
    entry_sig = pl.Series(ti[:, kb.T_ENTRY_SIGNAL_ROW])
    entry_row = pl.Series(ti[:, kb.T_ENTRY_ROW])
    exit_sig = pl.Series(ti[:, kb.T_EXIT_SIGNAL_ROW])
    exit_row = pl.Series(ti[:, kb.T_EXIT_ROW])
    dates = frame["trade_date"]
    gross = tf[:, kb.F_GROSS]
    valid = np.isfinite(gross)
    reasons = pl.Series(np.array(kb.EXIT_REASONS, dtype=object)[ti[:, kb.T_REASON]],
                        dtype=pl.Utf8)
    out = pl.DataFrame(
        {
            "ticker": frame["ticker"].gather(entry_row),
            "side": pl.Series(np.where(ti[:, kb.T_SIDE] > 0, "LONG", "SHORT"), dtype=pl.Utf8),
            "entry_signal_date": dates.gather(entry_sig),
            "entry_date": dates.gather(entry_row),
            "entry_price": tf[:, kb.F_ENTRY_PRICE],
            "exit_signal_date": dates.gather(exit_sig),
            "exit_date": dates.gather(exit_row),
            "exit_price": tf[:, kb.F_EXIT_PRICE],
            "hold_bars_realized": ti[:, kb.T_EXIT_ROW] - ti[:, kb.T_ENTRY_ROW],
            **{f"entry_{c}": frame[c].gather(entry_sig) for c in dict.fromkeys(carry)},
            "exit_reason": reasons,
            "gross_return": pl.Series(gross).fill_nan(None),
            "net_return": pl.Series(tf[:, kb.F_NET]).fill_nan(None),
            "max_favorable_excursion": tf[:, kb.F_MFE],
            "max_adverse_excursion": tf[:, kb.F_MAE],
            "fees": np.full(ti.shape[0], 2.0 * config.fee_bps_per_side / 10_000.0),
            "slippage": np.full(ti.shape[0], 2.0 * config.slippage_bps_per_side / 10_000.0),
            "exit_fill_fallback": ti[:, kb.T_FALLBACK] == 1,
            "is_valid_trade": valid,
        }
    )
    position = (pl.int_range(pl.len()).over("ticker") + 1).cast(pl.Utf8)
    out = out.with_columns((pl.col("ticker").cast(pl.Utf8) + "-" + position).alias("position_id"))
    return out.select("position_id", pl.exclude("position_id")).sort(
        "ticker", "entry_date", maintain_order=True
    )
