"""Backtest kernel and engine wrapper: hand-computed trades on a two-ticker frame (spec §1.4-1.5).

AAA (12 bars) rises: open = 10 + j, close = open + 0.5, high = open + 1, low = open - 0.5.
BBB (8 bars) falls: open = 20 - j, close = open - 0.5, high = open + 0.5, low = open - 1.
States map to directions 1 -> +1 (long), 3 -> -1 (short), 0 -> none (not eligible).
Row numbers below are bar indices within the ticker.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from mf_pipeline.lib.backtest.engine import BacktestConfig, run_trades

AAA_STATES = [0, 1, 1, 1, 0, 0, 3, 3, 1, 1, 1, 1]
BBB_STATES = [0, 3, 3, 3, 3, 0, 3, 0]
DIRECTION = {0: 0, 1: 1, 3: -1}


def day(j: int) -> date:
    return date(2024, 1, 1 + j)


def frame(aaa: list[int] = AAA_STATES, bbb: list[int] = BBB_STATES) -> pl.DataFrame:
    rows = []
    for j, s in enumerate(aaa):
        o = 10.0 + j
        rows.append(("AAA", day(j), o, o + 1.0, o - 0.5, o + 0.5, s))
    for j, s in enumerate(bbb):
        o = 20.0 - j
        rows.append(("BBB", day(j), o, o + 0.5, o - 1.0, o - 0.5, s))
    df = pl.DataFrame(
        rows,
        schema=["ticker", "trade_date", "open", "high", "low", "close", "state_id"],
        orient="row",
    )
    return df.with_columns(
        direction=pl.col("state_id").replace_strict(DIRECTION, return_dtype=pl.Int8),
        state_label=pl.format("S{}", pl.col("state_id")),
    )


def key(trades: pl.DataFrame) -> list[tuple]:
    """(position_id, entry_signal bar, entry bar, exit_signal bar, exit bar, side, reason)."""
    return [
        (r["position_id"], r["entry_signal_date"].day - 1, r["entry_date"].day - 1,
         r["exit_signal_date"].day - 1, r["exit_date"].day - 1, r["side"], r["exit_reason"])
        for r in trades.iter_rows(named=True)
    ]


def test_state_entry_state_exit_trades_excursions_and_fallbacks() -> None:
    res = run_trades(frame(), BacktestConfig("state_entry", "state_exit"), carry=["state_label"])
    t = res.trades
    assert key(t) == [
        ("AAA-1", 1, 2, 4, 5, "LONG", "STATE_EXIT"),
        ("AAA-2", 6, 7, 8, 9, "SHORT", "STATE_EXIT"),  # opposite side (state 1) exits
        ("AAA-3", 9, 10, 11, 11, "LONG", "END_OF_DATA"),  # re-entry the bar the exit fills
        ("BBB-1", 1, 2, 5, 6, "SHORT", "STATE_EXIT"),
        ("BBB-2", 6, 7, 7, 7, "SHORT", "STATE_EXIT_LAST_BAR_FALLBACK"),
    ]
    assert t["entry_price"].to_list() == [12.0, 17.0, 20.0, 18.0, 13.0]
    # end-of-data and last-bar exits fill at that bar's CLOSE (fault 7 fixed), flagged
    assert t["exit_price"].to_list() == [15.0, 19.0, 21.5, 14.0, 12.5]
    assert t["exit_fill_fallback"].to_list() == [False, False, True, False, True]
    assert t["hold_bars_realized"].to_list() == [3, 2, 1, 4, 0]
    assert t["gross_return"].to_list() == pytest.approx(
        [15 / 12 - 1, 17 / 19 - 1, 21.5 / 20 - 1, 18 / 14 - 1, 13 / 12.5 - 1]
    )
    assert t["net_return"].to_list() == pytest.approx(t["gross_return"].to_list())
    # LONG AAA-1 held through the closes of bars 2-4: best high 15, worst low 11.5;
    # SHORT AAA-2 through bars 7-8: best low 16.5 (bar 7), worst high 19 (bar 8);
    # AAA-3 through 10-11; BBB-1 through 2-5 (low 14 at bar 5, high 18.5 at bar 2);
    # BBB-2 only bar 7 (low 12, high 13.5).
    assert t["max_favorable_excursion"].to_list() == pytest.approx(
        [15 / 12 - 1, 17 / 16.5 - 1, 22 / 20 - 1, 18 / 14 - 1, 13 / 12 - 1]
    )
    assert t["max_adverse_excursion"].to_list() == pytest.approx(
        [11.5 / 12 - 1, 17 / 19 - 1, 19.5 / 20 - 1, 18 / 18.5 - 1, 13 / 13.5 - 1]
    )
    assert t["entry_state_id"].to_list() == [1, 3, 1, 3, 3]
    assert t["entry_state_label"].to_list() == ["S1", "S3", "S1", "S3", "S3"]
    assert t["is_valid_trade"].all()
    assert res.diagnostics == {
        "input_rows": 20,
        "entry_signals": 14,  # AAA 1-3, 6-11; BBB 1-4, 6
        "skipped_no_next_bar_entry": 0,
        "skipped_due_overlap": 9,  # AAA 2, 3, 7, 8, 10, 11; BBB 2, 3, 4
        "forced_exit_last_bar": 2,
        "invalid_trade_count": 0,
    }


def test_persistence_confirm_with_horizon_exit() -> None:
    # streaks: AAA long 1-3 (entries at 2, 3), short 6-7 (entry 7), long 8-11 (9, 10, 11);
    # BBB short 1-4 (entries 2, 3, 4). hold_bars=2: trigger at entry + 2, fill one bar later.
    res = run_trades(frame(), BacktestConfig("state_persistence_confirm", "horizon", hold_bars=2))
    t = res.trades
    assert key(t) == [
        ("AAA-1", 2, 3, 5, 6, "LONG", "HORIZON"),
        ("AAA-2", 7, 8, 10, 11, "SHORT", "HORIZON"),  # horizon ignores the long states 8-10
        ("BBB-1", 2, 3, 5, 6, "SHORT", "HORIZON"),
    ]
    assert t["hold_bars_realized"].to_list() == [3, 3, 3]
    assert t["gross_return"].to_list() == pytest.approx([16 / 13 - 1, 18 / 21 - 1, 17 / 14 - 1])
    assert res.diagnostics["entry_signals"] == 9
    assert res.diagnostics["skipped_due_overlap"] == 5  # AAA 3, 9, 10; BBB 3, 4
    # AAA bar 11 signals with no next bar; it must not fill on BBB's first row
    assert res.diagnostics["skipped_no_next_bar_entry"] == 1
    assert res.diagnostics["forced_exit_last_bar"] == 0


def test_transition_entry_horizon_or_state_with_costs() -> None:
    cfg = BacktestConfig(
        "state_transition_entry", "horizon_or_state", hold_bars=1,
        fee_bps_per_side=5.0, slippage_bps_per_side=2.5,
    )
    res = run_trades(frame(), cfg)
    t = res.trades
    assert key(t) == [
        ("AAA-1", 1, 2, 3, 4, "LONG", "HORIZON_OR_STATE"),
        ("AAA-2", 6, 7, 8, 9, "SHORT", "HORIZON_OR_STATE"),
        ("BBB-1", 1, 2, 3, 4, "SHORT", "HORIZON_OR_STATE"),
        ("BBB-2", 6, 7, 7, 7, "SHORT", "HORIZON_OR_STATE_LAST_BAR_FALLBACK"),
    ]
    gross = [14 / 12 - 1, 17 / 19 - 1, 18 / 16 - 1, 13 / 12.5 - 1]
    assert t["gross_return"].to_list() == pytest.approx(gross)
    # round trip: 2 x (5 + 2.5) bps = 15 bps, subtracted once
    assert t["net_return"].to_list() == pytest.approx([g - 0.0015 for g in gross])
    assert t["fees"].to_list() == pytest.approx([0.001] * 4)
    assert t["slippage"].to_list() == pytest.approx([0.0005] * 4)
    assert res.diagnostics["entry_signals"] == 5  # AAA 1, 6, 8; BBB 1, 6
    assert res.diagnostics["skipped_due_overlap"] == 1  # AAA 8


def test_transition_counts_first_row_of_each_ticker() -> None:
    # one state throughout: the only transition is each ticker's first row, even though
    # AAA's last state equals BBB's first; horizon 3 -> exits at bar 5, then no new entry
    df = frame([1] * 12, [1] * 8)
    t = run_trades(df, BacktestConfig("state_transition_entry", "horizon", hold_bars=3)).trades
    assert key(t) == [
        ("AAA-1", 0, 1, 4, 5, "LONG", "HORIZON"),
        ("BBB-1", 0, 1, 4, 5, "LONG", "HORIZON"),
    ]


def test_state_exit_ignores_gate_and_eligibility_column() -> None:
    # the gate blocks only entries: AAA's signal at bar 1 is gated, so bar 2's signal enters;
    # signal_eligible=False on BBB bar 3 triggers the state exit although its side is short
    df = frame().with_columns(
        gate=~((pl.col("ticker") == "AAA") & (pl.col("trade_date") == day(1))),
        elig=(pl.col("direction") != 0)
        & ~((pl.col("ticker") == "BBB") & (pl.col("trade_date") == day(3))),
    )
    t = run_trades(
        df, BacktestConfig("state_entry", "state_exit"), eligible_col="elig", gate_col="gate"
    ).trades
    assert key(t)[0] == ("AAA-1", 2, 3, 4, 5, "LONG", "STATE_EXIT")
    assert ("BBB-1", 1, 2, 3, 4, "SHORT", "STATE_EXIT") in key(t)


def test_missing_open_falls_back_to_close() -> None:
    df = frame().with_columns(
        open=pl.when((pl.col("ticker") == "AAA") & (pl.col("trade_date").dt.day().is_in([3, 6])))
        .then(None)
        .otherwise(pl.col("open"))
    )
    t = run_trades(df, BacktestConfig("state_transition_entry", "state_exit")).trades
    first = t.row(0, named=True)
    # entry fill row 2 and exit fill row 5 have no open: both use that row's close
    assert (first["entry_price"], first["exit_price"]) == (12.5, 15.5)
    assert first["exit_fill_fallback"] is True


def test_rejects_unsorted_dates() -> None:
    df = frame().reverse()
    with pytest.raises(ValueError, match="sorted"):
        run_trades(df.sort("ticker", maintain_order=True), BacktestConfig())


def test_rejects_ticker_in_two_blocks() -> None:
    df = frame()
    with pytest.raises(ValueError, match="contiguous"):
        run_trades(pl.concat([df.head(3), df.tail(8), df.slice(3, 9)]), BacktestConfig())


def test_no_eligible_row_gives_empty_trade_table() -> None:
    res = run_trades(frame([0] * 12, [0] * 8), BacktestConfig("state_entry", "horizon"))
    assert res.trades.height == 0
    assert res.trades.columns[:3] == ["position_id", "ticker", "side"]
    assert res.diagnostics["entry_signals"] == 0


def test_unfillable_entry_is_skipped_and_zero_exit_price_is_invalid() -> None:
    zero = ((pl.col("ticker") == "BBB") & (pl.col("trade_date") == day(2))) | (
        (pl.col("ticker") == "AAA") & (pl.col("trade_date") == day(5))
    )
    df = frame().with_columns(
        [pl.when(zero).then(0.0).otherwise(pl.col(c)).alias(c) for c in ("open", "close")]
    )
    res = run_trades(df, BacktestConfig("state_transition_entry", "state_exit"))
    t = res.trades
    # BBB's entry at bar 2 has no positive price: dropped, the next BBB trade is from bar 6
    assert [k[:5] for k in key(t)] == [
        ("AAA-1", 1, 2, 4, 5), ("AAA-2", 6, 7, 8, 9), ("BBB-1", 6, 7, 7, 7)
    ]
    assert t["is_valid_trade"].to_list() == [False, True, True]
    assert t["net_return"].to_list()[0] is None
    assert res.diagnostics["skipped_no_next_bar_entry"] == 1
    assert res.diagnostics["invalid_trade_count"] == 1
