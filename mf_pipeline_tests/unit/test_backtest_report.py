"""backtest_report_md (backtest_ops.md §1.7): sections, orderings, +inf profit factor, the
in-sample line; inputs built by hand."""

from __future__ import annotations

import math

import polars as pl
import pytest

from mf_pipeline.lib.backtest.report import (
    backtest_report_md,
    execution_active,
    fmt,
    md_table,
    profit_factor_of,
)


def _summary(**extra):
    return {
        "run_id": "bt-abc", "input_type": "flow", "signal_mode": "state_transition_entry",
        "exit_mode": "horizon_or_state", "hold_bars": 10, "equity_mode": "event_returns_only",
        "headline": {"trade_count": 3, "win_rate": 1.0, "avg_return": 0.02,
                     "profit_factor": None, "profit_factor_inf": True, "expectancy": 0.02},
        "equity_metrics": None,
        "overlay": {"overlay_enabled": False},
        "execution": {"execution_profile": "none", "filters_enabled_or_profile_non_none": False},
        **extra,
    }  # fmt: skip


def _states(n: int) -> pl.DataFrame:
    # trade counts 1..n in scrambled order; labels S<id>
    ids = [(7 * i) % n for i in range(n)]
    return pl.DataFrame({"entry_state_id": ids, "entry_state_label": [f"S{i}" for i in ids],
                         "trade_count": [i + 1 for i in ids],
                         "avg_return": [0.001 * i for i in ids]})  # fmt: skip


def _symbols() -> pl.DataFrame:
    return pl.DataFrame({"ticker": ["AAA", "BBB", "CCC", "DDD"], "trade_count": [1, 2, 3, 4],
                         "net_pnl": [0.05, None, 0.30, -0.10],
                         "contribution": [0.2, None, 1.2, -0.4]})  # fmt: skip


def _section(text: str, title: str) -> list[str]:
    """The table rows (after header and rule) of the section whose heading contains title."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## ") and title in line)
    body = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("| "):
            body.append(line)
    return body[1:]  # drop the header; the rule line starts with "|-"


def test_in_sample_line_is_visible_for_each_value() -> None:
    by_state, by_symbol = _states(3), _symbols()
    yes = backtest_report_md(_summary(in_sample=True), by_state, by_symbol, None)
    no = backtest_report_md(_summary(in_sample=False), by_state, by_symbol, None)
    unknown = backtest_report_md(_summary(input_type="hmm"), by_state, by_symbol, None)
    flow = backtest_report_md(_summary(), by_state, by_symbol, None)
    assert "**In-sample: YES**" in yes.splitlines()[2]
    assert "**In-sample: no**" in no.splitlines()[2]
    assert "**In-sample: unknown**" in unknown.splitlines()[2]
    assert "**In-sample: no**: FLOW directions are fixed rules" in flow.splitlines()[2]


def test_profit_factor_inf_from_flag_and_headline_values() -> None:
    text = backtest_report_md(_summary(), _states(3), _symbols(), None)
    assert "- profit_factor: inf" in text
    assert "- profit_factor_inf: true (no losing trade)" in text
    assert "- win_rate: 1" in text and "- avg_return: 0.02" in text
    assert "- hold_bars: 10" in text


def test_top_20_states_by_trade_count() -> None:
    text = backtest_report_md(_summary(), _states(25), _symbols(), None)
    rows = _section(text, "states by trade count")
    assert len(rows) == 20
    counts = [int(r.split("|")[3]) for r in rows]  # columns: id, label, trade_count, ...
    assert counts == list(range(25, 5, -1))
    assert rows[0].startswith("| 24 | S24 | 25 |")


def test_top_symbols_by_net_pnl_nulls_last() -> None:
    text = backtest_report_md(_summary(), _states(2), _symbols(), None)
    tickers = [r.split("|")[1].strip() for r in _section(text, "symbols by net contribution")]
    assert tickers == ["CCC", "AAA", "DDD", "BBB"]


def test_cluster_overlay_execution_blocks_only_when_active() -> None:
    plain = backtest_report_md(_summary(), _states(2), _symbols(), None)
    assert "## Cluster policy counts" not in plain
    assert "## Policy overlay" not in plain and "## Execution realism" not in plain
    summary = _summary(
        overlay={"overlay_enabled": True, "overlay_mode": "allow_only", "overlay_match_rate": 0.9,
                 "overlay_coverage_status": "OK"},
        execution={"execution_profile": "lite", "filters_enabled_or_profile_non_none": True,
                   "exec_eligibility_rate": 0.75, "realism_profile_status": "OK"},
    )  # fmt: skip
    text = backtest_report_md(summary, _states(2), _symbols(),
                              {"allow_count": 2, "watch_count": 1, "block_count": 4})
    assert _section(text, "Cluster policy counts") == ["| 2 | 1 | 4 |"]
    assert "- overlay_mode: allow_only" in text and "- overlay_match_rate: 0.9" in text
    assert "- execution_profile: lite" in text and "- exec_eligibility_rate: 0.75" in text


def test_assumptions_describe_our_engine() -> None:
    text = backtest_report_md(_summary(), _states(2), _symbols(), None).split("## Assumptions")[1]
    assert "D1" in text and "open of bar t+1" in text
    assert "last bar" in text and "that bar's close" in text
    assert "never overlap" in text and "No position sizing" in text
    assert "per side" in text.lower()


def test_empty_tables_still_render() -> None:
    empty_state = pl.DataFrame(schema={"entry_state_id": pl.Int32, "trade_count": pl.Int64})
    empty_symbol = pl.DataFrame(schema={"ticker": pl.Utf8, "net_pnl": pl.Float64})
    text = backtest_report_md(_summary(), empty_state, empty_symbol, None)
    assert _section(text, "states by trade count") == ["| — | — |"]


def test_helpers() -> None:
    assert fmt(None) == "—" and fmt(math.inf) == "inf" and fmt(True) == "true"
    assert fmt(0.123456789) == "0.123457" and fmt("a|b") == "a/b"
    assert md_table(["a"], [(1,)]) == ["| a |", "|---|", "| 1 |"]
    assert profit_factor_of({"profit_factor": 2, "profit_factor_inf": False}) == 2.0
    assert profit_factor_of({"profit_factor": None}) is None
    assert execution_active({"execution_profile": "strict"})
    assert not execution_active({"execution_profile": "none", "execution_filters_enabled": False})
    assert execution_active({"execution_profile": "none", "execution_filters_enabled": True})


@pytest.mark.parametrize("flag", [True, False])
def test_inf_flag_overrides_stored_value(flag: bool) -> None:
    pf = profit_factor_of({"profit_factor": 1.5, "profit_factor_inf": flag})
    assert pf == (math.inf if flag else 1.5)
