"""Cross-check of the backtest engine against an independent engine, vectorbt (issue #20 item 7).

Data: 3 tickers x 300 bars of a seeded random walk with positive OHLC and persistent random
states 0-4; the flow mapping trades states 1, 2 long and 3, 4 short, state 0 is not eligible.

vectorbt's side: entry signals are derived here from the states (pandas, not our kernel),
shifted one bar so that they sit on the fill bar, and filled at that bar's OPEN
(``Portfolio.from_signals(price=open)``). Exits come from vectorbt's own exit generator
(``generate_exits`` with ``skip_until_exit``: one position at a time, signals while a position is
open are dropped) with a choice function stating the rule in fill-bar terms: horizon = the fill
bar ``entry + hold + 1``; state exit = the first fill bar after entry whose previous bar is not
eligible or is on the other side. Long and short run in one portfolio (``short_entries``);
``upon_opposite_entry="ignore"``: an opposite signal while a position is open is dropped, as
ours does. Each ticker is one vectorbt column.

Compared, trade by trade in (ticker, entry date) order: side, entry date, entry price, exit
date, exit price; LONG gross returns equal vectorbt's trade return (no fees); SHORT returns differ
by definition (ours ``entry/exit - 1``, vectorbt's ``(entry - exit)/entry``), so ours is checked
against ``1/(1 - r_vbt) - 1``; with fees, vectorbt's fee per side (its fee / the fill's value)
summed over both sides of a closed trade equals our ``gross - net``. Tolerance 1e-12.

What differs on purpose and how it is compared: a position still open at the end of data
(ours: ``END_OF_DATA``) and an exit triggered on the last bar (ours: ``*_LAST_BAR_FALLBACK``)
fill in ours at the last bar's CLOSE; vectorbt leaves such a position open and values it at the
last close, so those trades are compared against vectorbt's open trades (same date and price,
``exit_fill_fallback`` true exactly on them). Not compared: exit signal dates, MFE/MAE, fee
semantics beyond the per-side rate (ours subtracts the round trip once, vectorbt charges each fill
on its value).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import polars as pl
import pytest
import vectorbt as vbt
from numba import njit

from mf_pipeline.lib.backtest.engine import BacktestConfig, run_trades

TICKERS = ("AAA", "BBB", "CCC")
BARS = 300
SIDE_OF_STATE = np.array([0, 1, 1, -1, -1], dtype=np.int8)
FEE_BPS = 5.0


def _bars(seed: int = 20) -> dict[str, pd.DataFrame]:
    """Per ticker: OHLC random walk (all prices > 0) and states that persist ~6 bars."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(date(2020, 1, 1), periods=BARS)
    out = {}
    for ticker in TICKERS:
        close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, BARS)))
        open_ = np.r_[50.0, close[:-1]] * np.exp(rng.normal(0.0, 0.005, BARS))
        high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.01, BARS))
        low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.01, BARS))
        change = rng.uniform(size=BARS) < 0.18
        state = np.where(change, rng.integers(0, 5, BARS), -1)
        state[0] = rng.integers(0, 5)
        state = pd.Series(state).replace(-1, np.nan).ffill().to_numpy(dtype=np.int64)
        out[ticker] = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                               "state": state}, index=days)
    return out


def _ours(bars: dict[str, pd.DataFrame], cfg: BacktestConfig) -> pl.DataFrame:
    frame = pl.concat(
        pl.DataFrame({
            "ticker": t, "trade_date": df.index.date.tolist(), "open": df["open"].to_numpy(),
            "high": df["high"].to_numpy(), "low": df["low"].to_numpy(),
            "close": df["close"].to_numpy(), "state_id": df["state"].to_numpy(),
            "direction": SIDE_OF_STATE[df["state"].to_numpy()],
        })
        for t, df in bars.items()
    )
    return run_trades(frame, cfg).trades


@njit
def _exit_choice(from_i, to_i, col, side, hit_long, hit_short, hold, mode):  # noqa: ANN001, ANN202
    """First fill bar in [from_i, to_i) at which the position entered at from_i - 1 exits."""
    entry = from_i - 1
    hit = hit_long if side[entry, col] > 0 else hit_short
    for j in range(from_i, to_i):
        if (mode != 1 and j >= entry + hold + 1) or (mode != 0 and hit[j, col]):
            return np.array([j])
    return np.empty(0, dtype=np.int64)


MODES = {"horizon": 0, "state_exit": 1, "horizon_or_state": 2}


def _vectorbt(bars: dict[str, pd.DataFrame], cfg: BacktestConfig, fees: float) -> pd.DataFrame:
    """Trades of the same strategy in vectorbt, one row per position (sorted like ours)."""
    panel = {c: pd.DataFrame({t: df[c] for t, df in bars.items()})
             for c in ("open", "close", "state")}
    state = panel["state"]
    side = pd.DataFrame(SIDE_OF_STATE[state.to_numpy()], index=state.index, columns=state.columns)
    eligible = side != 0
    signal = eligible
    if cfg.signal_mode == "state_transition_entry":
        signal = eligible & state.ne(state.shift(1))
    # everything on the fill bar: the signal (and the exit test) of the bar before
    fill_side = side.where(signal, 0).shift(1, fill_value=0).astype(np.int8)
    hit_long = (~eligible | (side < 0)).shift(1, fill_value=False)
    hit_short = (~eligible | (side > 0)).shift(1, fill_value=False)
    entries = fill_side != 0
    exits = entries.vbt.signals.generate_exits(
        _exit_choice, fill_side.to_numpy(), hit_long.to_numpy(), hit_short.to_numpy(),
        cfg.hold_bars, MODES[cfg.exit_mode], wait=1, until_next=False, skip_until_exit=True,
        pick_first=True,
    )
    pf = vbt.Portfolio.from_signals(
        panel["close"], entries=fill_side > 0, exits=exits, short_entries=fill_side < 0,
        short_exits=exits, price=panel["open"], fees=fees, upon_opposite_entry="ignore",
        upon_long_conflict="exit", upon_short_conflict="exit", freq="1D",
    )
    r = pd.DataFrame(pf.positions.records)
    days = state.index.date
    out = pd.DataFrame({
        "ticker": np.asarray(TICKERS)[r["col"]],
        "side": np.where(r["direction"] == 0, "LONG", "SHORT"),
        "entry_date": days[r["entry_idx"]], "entry_price": r["entry_price"],
        "exit_date": days[r["exit_idx"]], "exit_price": r["exit_price"],
        "is_open": r["status"] == 0, "ret": r["return"],
        "fee_rate": r["entry_fees"] / (r["size"] * r["entry_price"])
        + r["exit_fees"] / (r["size"] * r["exit_price"]),
    })
    return out.sort_values(["ticker", "entry_date"]).reset_index(drop=True)


@pytest.mark.parametrize(
    ("signal_mode", "exit_mode", "hold"),
    [
        ("state_entry", "horizon", 10),
        ("state_transition_entry", "horizon", 4),
        ("state_transition_entry", "horizon_or_state", 10),
        ("state_entry", "horizon_or_state", 3),
        ("state_transition_entry", "state_exit", 10),
    ],
)
def test_trades_equal_vectorbt(signal_mode: str, exit_mode: str, hold: int) -> None:
    bars = _bars()
    cfg = BacktestConfig(signal_mode, exit_mode, hold_bars=hold, fee_bps_per_side=FEE_BPS)
    ours = _ours(bars, cfg)
    ref = _vectorbt(bars, cfg, fees=0.0)
    assert ours.height == len(ref) > 40
    assert set(ours["side"]) == {"LONG", "SHORT"}
    assert ours["ticker"].to_list() == ref["ticker"].tolist()
    assert ours["side"].to_list() == ref["side"].tolist()
    assert ours["entry_date"].to_list() == ref["entry_date"].tolist()
    assert ours["exit_date"].to_list() == ref["exit_date"].tolist()
    np.testing.assert_allclose(ours["entry_price"].to_numpy(), ref["entry_price"], rtol=1e-12)
    np.testing.assert_allclose(ours["exit_price"].to_numpy(), ref["exit_price"], rtol=1e-12)
    # ours fills what vectorbt leaves open at the last close, and flags exactly those
    assert ours["exit_fill_fallback"].to_list() == ref["is_open"].tolist()
    gross = ours["gross_return"].to_numpy()
    long_ = ref["side"].to_numpy() == "LONG"
    np.testing.assert_allclose(gross[long_], ref["ret"][long_], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gross[~long_], 1.0 / (1.0 - ref["ret"][~long_]) - 1.0,
                               rtol=1e-12, atol=1e-15)
    # per-side fees: vectorbt's fee rate on each fill of a closed trade, summed, is our
    # round-trip deduction; a trade it leaves open has paid the entry side only
    with_fees = _vectorbt(bars, cfg, fees=FEE_BPS / 10_000.0)
    assert with_fees["entry_date"].tolist() == ref["entry_date"].tolist()
    closed = ~with_fees["is_open"].to_numpy()
    cost = gross - ours["net_return"].to_numpy()
    np.testing.assert_allclose(cost[closed], with_fees["fee_rate"][closed], rtol=1e-12)
    np.testing.assert_allclose(cost[~closed], 2 * with_fees["fee_rate"][~closed], rtol=1e-12)
