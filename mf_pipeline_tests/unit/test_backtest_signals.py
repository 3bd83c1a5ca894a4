"""Signal generation (spec §1.4): hand-computed entries per mode, gates and every diagnostic.

Ticker A (8 bars) and B (3 bars); L/S/U = LONG_BIAS/SHORT_BIAS/UNCONFIRMED, e = signal_eligible:

    A  bar   0  1  2  3  4  5  6  7        B  bar  0  1  2
       state 1  1  2  3  3  3  3  0           state 2  2  4
       hint  L  L  L  S  S  S  S  U           hint  L  L  S
       e     T  T  T  T  F  T  T  F           e     T  T  T
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.backtest.engine import BacktestConfig, run_trades
from mf_pipeline.lib.backtest.signals import SIGNAL_COLS, generate_signals

L, S, U = "LONG_BIAS", "SHORT_BIAS", "UNCONFIRMED"


def frame() -> pl.DataFrame:
    a_states, b_states = [1, 1, 2, 3, 3, 3, 3, 0], [2, 2, 4]
    n = len(a_states) + len(b_states)
    day = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(8)]
    rising = np.arange(n, dtype=float) % 8 + 10.0
    return pl.DataFrame(
        {
            "ticker": ["A"] * 8 + ["B"] * 3,
            "trade_date": day + day[:3],
            "open": rising,
            "high": rising + 1.0,
            "low": rising - 1.0,
            "close": rising + 0.5,
            "state_id": pl.Series(a_states + b_states, dtype=pl.Int32),
            "state_direction_hint": [L, L, L, S, S, S, S, U, L, L, S],
            "signal_eligible": [True, True, True, True, False, True, True, False, True, True,
                                True],
            "fwd_ret_10": [0.1] * n,
        }
    )  # fmt: skip


def rows(out: pl.DataFrame, col: str) -> list[str]:
    """Rows where a boolean column is true, as 'A0', 'B2', ..."""
    hit = out.with_row_index().filter(pl.col(col))
    starts = {"A": 0, "B": 8}
    return [f"{t}{i - starts[t]}" for t, i in hit.select("ticker", "index").rows()]


@pytest.mark.parametrize(
    ("mode", "entries"),
    [
        ("state_entry", ["A0", "A1", "A2", "A3", "A5", "A6", "B0", "B1", "B2"]),
        ("state_transition_entry", ["A0", "A2", "A3", "B0", "B2"]),
        # streaks A: 1 2 3 1 0 1 2 0, B: 1 2 1 -> every bar from the 2nd same-side bar on
        ("state_persistence_confirm", ["A1", "A2", "A6", "B1"]),
    ],
)
def test_entries_per_mode_without_gates(mode: str, entries: list[str]) -> None:
    out, diag = generate_signals(frame(), mode)
    assert rows(out, "entry_signal") == entries
    assert diag["entry_signals"] == len(entries)
    assert diag["signal_mode"] == mode
    assert out["entry_side"].to_list() == [
        "LONG", "LONG", "LONG", "SHORT", "SHORT", "SHORT", "SHORT", None, "LONG", "LONG", "SHORT",
    ]  # fmt: skip
    assert out["direction"].to_list() == [1, 1, 1, -1, -1, -1, -1, 0, 1, 1, -1]
    assert out.schema["direction"] == pl.Int8
    assert rows(out, "state_changed") == ["A2", "A3", "A7", "B2"]
    assert rows(out, "primary_eligible") == ["A0", "A1", "A2", "A3", "A5", "A6", "B0", "B1", "B2"]
    assert rows(out, "eligible") == rows(out, "primary_eligible")
    assert out["overlay_gate_pass"].all() and out["execution_gate_pass"].all()
    assert not out["overlay_direction_conflict"].any()
    assert out["execution_filter_reason"].to_list() == ["none"] * 11
    assert diag["overlay_mode"] == "none" and diag["overlay_enabled"] is False
    assert diag["overlay_vetoed_signal_share"] == 0.0
    assert diag["execution_suppressed_signal_share"] == 0.0
    assert set(SIGNAL_COLS) <= set(out.columns)


def gated() -> pl.DataFrame:
    """Overlay vetoes A1 (BLOCK) and B2 (class unknown); execution fails A2, A5, B1 and B2."""
    return frame().with_columns(
        overlay_allow_signal=pl.Series(
            [True, False, True, True, True, True, True, None, True, True, False]
        ),
        overlay_policy_class=pl.Series(
            ["ALLOW", "BLOCK", "ALLOW", "WATCH", "BLOCK", "ALLOW", "ALLOW", None, "ALLOW",
             "ALLOW", None]
        ),
        overlay_direction_hint=pl.Series([S, None, None, S, L, None, None, None, L, None, None]),
        overlay_enabled=pl.lit(True),
        overlay_mode=pl.Series([None, "block_veto"] + ["block_veto"] * 9),
        execution_eligible=pl.Series(
            [True, True, False, True, True, False, True, True, True, False, False]
        ),
        execution_filter_reason=pl.Series(
            ["none", "none", "liquidity", "none", "none", "price", "none", "none", "none",
             "liquidity", "vol"]
        ),
        execution_filters_enabled=pl.lit(True),
    )  # fmt: skip


def test_gates_per_row_columns_and_every_diagnostic() -> None:
    out, diag = generate_signals(gated(), "state_transition_entry")
    primary = ["A0", "A1", "A2", "A3", "A5", "A6", "B0", "B1", "B2"]
    assert rows(out, "primary_eligible") == primary
    assert rows(out, "overlay_candidate_before") == primary
    assert rows(out, "overlay_vetoed_signal") == ["A1", "B2"]
    assert rows(out, "overlay_candidate_after") == ["A0", "A2", "A3", "A5", "A6", "B0", "B1"]
    assert rows(out, "execution_candidate_before") == rows(out, "overlay_candidate_after")
    assert rows(out, "execution_suppressed_signal") == ["A2", "A5", "B1"]
    assert rows(out, "execution_candidate_after") == ["A0", "A3", "A6", "B0"]
    assert rows(out, "eligible") == ["A0", "A3", "A6", "B0"]
    # A7's null overlay flag fails the gate (it is not a candidate anyway)
    assert rows(out, "overlay_gate_pass") == [
        "A0", "A2", "A3", "A4", "A5", "A6", "B0", "B1",
    ]  # fmt: skip
    assert rows(out, "execution_gate_pass") == ["A0", "A1", "A3", "A4", "A6", "A7", "B0"]
    # per row the conflict ignores eligibility (A4); the count keeps primary rows only (A0)
    assert rows(out, "overlay_direction_conflict") == ["A0", "A4"]
    # transition entries: A0 and B0 (first bars), A3 (new state); A6 keeps A5's state
    assert rows(out, "entry_signal") == ["A0", "A3", "B0"]
    assert diag == {
        "signal_mode": "state_transition_entry",
        "rows": 11,
        "eligible_rows": 4,
        "entry_signals": 3,
        "overlay_enabled": True,
        "overlay_mode": "block_veto",
        "candidate_signals_before_overlay": 9,
        "candidate_signals_after_overlay": 7,
        "overlay_vetoed_signal_count": 2,
        "overlay_vetoed_signal_share": 2 / 9,
        "overlay_passed_signal_count": 7,
        "overlay_vetoed_by_policy_class": {"BLOCK": 1, "UNKNOWN": 1},
        "overlay_direction_conflict_count": 1,
        "overlay_direction_conflict_share": 1 / 9,
        "execution_filters_enabled": True,
        "candidate_signals_before_execution": 7,
        "candidate_signals_after_execution": 4,
        "execution_suppressed_signal_count": 3,
        "execution_suppressed_signal_share": 3 / 7,
        "execution_suppressed_by_reason_count": {"liquidity": 2, "price": 1},
        "execution_suppressed_by_reason_share": {"liquidity": 2 / 3, "price": 1 / 3},
        "execution_suppressed_by_reason": {"liquidity": 2 / 3, "price": 1 / 3},
    }


def test_persistence_streak_restarts_after_a_gated_bar() -> None:
    out, _ = generate_signals(gated(), "state_persistence_confirm")
    # eligible A0, A3, A6, B0 are isolated: no two consecutive same-side eligible bars
    assert rows(out, "entry_signal") == []
    opened = gated().with_columns(execution_eligible=pl.lit(True))
    out, diag = generate_signals(opened, "state_persistence_confirm")
    # eligible now A0 A2 A3 A5 A6 B0 B1: A1 vetoed breaks A0-A2; A5 -> A6 confirms
    assert rows(out, "entry_signal") == ["A6", "B1"]
    assert diag["execution_suppressed_signal_share"] == 0.0
    assert diag["execution_suppressed_by_reason"] == {}


def test_empty_frame_share_rules() -> None:
    out, diag = generate_signals(frame().clear(), "state_entry")
    assert out.height == 0
    assert diag["overlay_vetoed_signal_share"] is None
    assert diag["overlay_direction_conflict_share"] is None
    assert diag["execution_suppressed_signal_share"] == 0.0
    assert diag["overlay_mode"] == "none"
    assert diag["entry_signals"] == 0 and diag["rows"] == 0


def test_unsorted_input_is_sorted_and_forward_returns_are_not_read() -> None:
    base, _ = generate_signals(frame(), "state_transition_entry")
    shuffled = frame().sample(fraction=1.0, shuffle=True, seed=3)
    again, _ = generate_signals(shuffled.with_columns(fwd_ret_10=-pl.col("fwd_ret_10")),
                                "state_transition_entry")  # fmt: skip
    assert again.drop("fwd_ret_10").equals(base.drop("fwd_ret_10"))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="signal_mode"):
        generate_signals(frame(), "breakout")
    with pytest.raises(ValueError, match="signal_eligible"):
        generate_signals(frame().drop("signal_eligible"), "state_entry")
    with pytest.raises(ValueError, match="state_id"):
        generate_signals(frame().with_columns(state_id=pl.lit(None, dtype=pl.Int32)),
                         "state_entry")  # fmt: skip


@pytest.mark.parametrize("mode", ["state_entry", "state_transition_entry",
                                  "state_persistence_confirm"])  # fmt: skip
def test_engine_trades_match_its_own_entries(mode: str) -> None:
    out, diag = generate_signals(gated().with_columns(execution_eligible=pl.lit(True)), mode)
    cfg = BacktestConfig(signal_mode=mode, exit_mode="horizon_or_state", hold_bars=2)
    out = out.with_columns(gate=pl.col("overlay_gate_pass") & pl.col("execution_gate_pass"))
    own = run_trades(out, cfg, eligible_col="signal_eligible", gate_col="gate")
    given = run_trades(out, cfg, eligible_col="signal_eligible", entry_col="entry_signal")
    assert own.trades.height > 0
    assert given.trades.equals(own.trades)
    assert given.diagnostics == own.diagnostics
    assert given.diagnostics["entry_signals"] == diag["entry_signals"]
