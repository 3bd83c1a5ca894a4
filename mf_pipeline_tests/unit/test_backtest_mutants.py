"""Value tests behind the mutation testing of ``lib/backtest/`` (docs/BACKTESTS.md, "Mutation
testing").

Each test pins a figure that a surviving mutant changed and no other test noticed: a value
exactly at a threshold, a zero denominator, a null key, a default nobody passed. Expected
values are worked out by hand in the comments.
"""

from __future__ import annotations

import datetime as dt
import re

import polars as pl
import pytest

from mf_pipeline.lib.backtest import overlay as ov
from mf_pipeline.lib.backtest.adapter import normalize, read_input
from mf_pipeline.lib.backtest.engine import BacktestConfig, run_trades
from mf_pipeline.lib.backtest.equity import exit_date_curve, mark_to_market_curve
from mf_pipeline.lib.backtest.execution import ExecutionParams, apply_execution
from mf_pipeline.lib.backtest.mapping import directions_from_scorecard, map_states
from mf_pipeline.lib.backtest.metrics import by_state, by_symbol, edge_metrics
from mf_pipeline.lib.backtest.signals import generate_signals
from mf_pipeline_tests.unit.test_backtest_adapter import flow_frame
from mf_pipeline_tests.unit.test_backtest_equity import BARS, exits
from mf_pipeline_tests.unit.test_backtest_equity import trades as equity_trades
from mf_pipeline_tests.unit.test_backtest_execution import MIXED_PARAMS, mixed
from mf_pipeline_tests.unit.test_backtest_execution import bars as exec_bars
from mf_pipeline_tests.unit.test_backtest_kernel import frame as kernel_frame
from mf_pipeline_tests.unit.test_backtest_kernel import key as trade_key
from mf_pipeline_tests.unit.test_backtest_mapping import bars as mapping_bars
from mf_pipeline_tests.unit.test_backtest_metrics import ROWS
from mf_pipeline_tests.unit.test_backtest_metrics import trades as metric_trades
from mf_pipeline_tests.unit.test_backtest_overlay import POLICY as OVERLAY_POLICY
from mf_pipeline_tests.unit.test_backtest_overlay import overlay_rows
from mf_pipeline_tests.unit.test_backtest_overlay import primary as overlay_primary
from mf_pipeline_tests.unit.test_backtest_signals import frame as signal_frame
from mf_pipeline_tests.unit.test_backtest_signals import gated, rows

# --------------------------------------------------------------------------- metrics


def test_by_symbol_total_exactly_at_the_near_zero_limit_divides_by_one() -> None:
    # one valid trade of +1e-12: |total| = 1e-12 is not > 1e-12, so the denominator is 1
    # and the contribution is the net itself (dividing by the total would give 1.0)
    out = by_symbol(metric_trades([("AAA", "LONG", 1, 1e-12, 1, "HORIZON", 0.5)]))
    assert out["contribution"].to_list() == [pytest.approx(1e-12, rel=1e-9)]


def test_edge_metrics_zero_rows_input_and_zero_hold() -> None:
    # rows_input 0: trades_per_1000_rows is null (no division by zero); two valid trades that
    # exit on their entry bar: mean hold 0 -> turnover_proxy null, the other seven metrics set
    rows = [ROWS[0][:3] + (0.02, 0, "END_OF_DATA", 0.5), ROWS[1][:3] + (-0.01, 0, "HORIZON", 0.2)]
    e = edge_metrics(metric_trades(rows), rows_input=0, rows_eligible=4)
    assert e["trades_per_1000_rows"] is None and e["turnover_proxy"] is None
    assert e["row_usage_rate"] == pytest.approx(0.5)  # 2 / 4
    assert e["downside_std"] == 0.0  # population std of the one loss
    assert e["null_metric_count"] == 2



def test_by_state_expectancy_with_wins_and_non_zero_losses() -> None:
    # state 1: +0.06, -0.02, -0.01 -> win_rate 1/3, avg_win 0.06, avg_loss -0.015;
    # expectancy = 1/3 * 0.06 + 2/3 * (-0.015) = 0.02 - 0.01 = 0.01 (= the mean 0.03 / 3)
    rows = [ROWS[0][:3] + (net, 1, "HORIZON", 0.5) for net in (0.06, -0.02, -0.01)]
    s1 = by_state(metric_trades(rows)).row(0, named=True)
    assert s1["win_rate"] == pytest.approx(1 / 3)
    assert s1["avg_loss"] == pytest.approx(-0.015)
    assert s1["expectancy"] == pytest.approx(0.01)
    assert s1["profit_factor_proxy"] == pytest.approx(4.0)  # 0.06 / 0.015


def test_ret_cv_at_a_mean_exactly_at_the_near_zero_limit() -> None:
    # one trade of +1e-12: |mean| = 1e-12 >= 1e-12, so ret_cv = std 0 / 1e-12 = 0.0 (not
    # null); downside_std is null (no negative return) and is the one null metric
    e = edge_metrics(metric_trades([("AAA", "LONG", 1, 1e-12, 1, "HORIZON", 0.5)]), 10, 10)
    assert e["ret_cv"] == 0.0
    assert e["downside_std"] is None and e["null_metric_count"] == 1


# --------------------------------------------------------------------------- equity


def test_exit_date_curve_default_capital_is_one() -> None:
    # exits 01-02 +0.04 and 01-03 -0.05 on the default capital 1: equity 1.04, 0.988
    curve, m = exit_date_curve(exits([("01-02", 0.04), ("01-03", -0.05)]))
    assert m["capital_base"] == 1.0
    assert curve["equity"].to_list() == pytest.approx([1.04, 0.988])
    assert m["cumulative_return"] == pytest.approx(-0.012)
    # a final equity below 1 but above 0 still has a CAGR: 0.988 over 1 day
    assert m["cagr_proxy"] == pytest.approx(0.988 ** 365.25 - 1)


def test_mark_to_market_second_bar_of_the_first_ticker_and_default_capital() -> None:
    # AAA is the first ticker of the sorted bars: 12-29 is its bar 0, 01-01 its bar 1.
    # LONG from 12-29 at 9.9 to 01-02 at 11.0, closes 9.9, 10.0, 11.0: day returns
    # 9.9/9.9 - 1 = 0, 10.0/9.9 - 1 = 1/99 (01-01 against the 12-29 close), 11.0/10.0 - 1 = 0.1
    curve, m = mark_to_market_curve(equity_trades([("AAA", "LONG", "12-29", 9.9, "01-02", 11.0)]),
                                    BARS)
    assert curve["daily_return"].to_list() == pytest.approx([0.0, 1 / 99, 0.1])
    assert m["capital_base"] == 1.0
    assert curve["equity"].to_list() == pytest.approx([1.0, 10.0 / 9.9, 11.0 / 9.9])
    assert m["cumulative_return"] == pytest.approx(11.0 / 9.9 - 1)


# --------------------------------------------------------------------------- signals


def test_empty_labels_count_as_their_defaults() -> None:
    # gated() with A5's execution reason ("price") and B2's overlay class (null) written as
    # "": an empty reason reads as the default "none", the empty class of the vetoed B2 as
    # "UNKNOWN"
    frame = gated().with_columns(
        execution_filter_reason=pl.Series(
            ["none", "none", "liquidity", "none", "none", "", "none", "none", "none",
             "liquidity", "vol"]),
        overlay_policy_class=pl.Series(
            ["ALLOW", "BLOCK", "ALLOW", "WATCH", "BLOCK", "ALLOW", "ALLOW", None, "ALLOW",
             "ALLOW", ""]),
    )  # fmt: skip
    out, diag = generate_signals(frame, "state_transition_entry")
    assert out["execution_filter_reason"][5] == "none"
    # suppressed A2 (liquidity), A5 (now "none"), B1 (liquidity)
    assert diag["execution_suppressed_by_reason_count"] == {"liquidity": 2, "none": 1}
    assert diag["overlay_vetoed_by_policy_class"] == {"BLOCK": 1, "UNKNOWN": 1}


def test_null_enabled_flags_read_as_false() -> None:
    frame = gated().with_columns(overlay_enabled=pl.lit(None, dtype=pl.Boolean),
                                 execution_filters_enabled=pl.lit(None, dtype=pl.Boolean))
    _, diag = generate_signals(frame, "state_transition_entry")
    assert diag["overlay_enabled"] is False and diag["execution_filters_enabled"] is False


def test_dates_out_of_order_within_one_ticker_are_sorted() -> None:
    # tickers in order (A before B) but A's bars 2 and 3 swapped: the frame is sorted, so the
    # transition entries are those of the sorted frame (A0, A2, A3, B0, B2)
    base = signal_frame()
    swapped = pl.concat([base[:2], base[3:4], base[2:3], base[4:]])
    out, diag = generate_signals(swapped, "state_transition_entry")
    assert out["trade_date"].to_list() == base["trade_date"].to_list()
    assert rows(out, "entry_signal") == ["A0", "A2", "A3", "B0", "B2"]
    assert diag["entry_signals"] == 5


def test_direction_conflict_column_is_false_not_null_without_an_overlay_hint() -> None:
    # hints A: L L L S S S S U, B: L L S; overlay hints S - - S L - - - | L - -:
    # conflicts A0 (L vs S) and A4 (S vs L); a missing overlay hint is no conflict (false)
    out, _ = generate_signals(gated(), "state_transition_entry")
    expected = [True, False, False, False, True, False, False, False, False, False, False]
    assert out["overlay_direction_conflict"].to_list() == expected
    # no overlay column at all: false on every row
    out, _ = generate_signals(signal_frame(), "state_transition_entry")
    assert out["overlay_direction_conflict"].to_list() == [False] * 11


# --------------------------------------------------------------------------- mapping


def test_scorecard_text_values_that_are_not_numbers_become_null() -> None:
    # a scorecard read as text: state "x" is dropped; state 1's mean "n/a" is no number and
    # its CI is missing -> UNCONFIRMED; state 0's CI (0.01, 0.02) above zero -> LONG_BIAS;
    # state 2: CI straddles zero, mean -0.004 -> SHORT_BIAS
    card = pl.DataFrame({
        "state_id": ["0", "1", "2", "x"],
        "fwd_ret_10_mean": ["0.005", "n/a", "-0.004", "0.1"],
        "fwd_ret_10_ci_lo": ["0.01", "", "-0.01", "0.1"],
        "fwd_ret_10_ci_hi": ["0.02", None, "0.01", "0.1"],
    })
    assert directions_from_scorecard(card) == {0: "LONG_BIAS", 1: "UNCONFIRMED",
                                               2: "SHORT_BIAS"}


def test_map_states_messages_tell_the_user_what_to_run() -> None:
    messages = [
        ("state mapping needs a state_id column (run adapter.normalize first)",
         mapping_bars([0]).drop("state_id"), "flow"),
        ("HMM state directions are unknown: give a validation run's state scorecard "
         "(--validation-run-dir) or a state map (--state-map-file), or allow unconfirmed "
         "states (no trades)", mapping_bars([0], "HMM"), "hmm"),
        ("CLUSTER input needs a cluster hardening policy (cluster_hardening_policy.json): run "
         "cluster-hardening-run first (`mf cluster-hardening-run`, or materialise the "
         "state_policy_cluster asset)", mapping_bars([0], "CLUSTER"), "cluster"),
    ]  # fmt: skip
    for message, frame, input_type in messages:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            map_states(frame, input_type)


def test_a_null_state_is_never_eligible() -> None:
    # flow code 0 -> UNCONFIRMED, eligible with allow_unconfirmed and listed in
    # include_state_ids; the row without a state (unknown -> UNCONFIRMED) is not in the list:
    # its membership test is null, which counts as not eligible
    frame = mapping_bars([0, 0]).with_columns(state_id=pl.Series([None, 0], dtype=pl.Int32))
    out, summary, _ = map_states(frame, "flow", allow_unconfirmed=True, include_state_ids=[0])
    assert out["signal_eligible"].to_list() == [False, True]
    assert summary["eligible_rows"] == 1


# --------------------------------------------------------------------------- overlay


def test_empty_primary_summary_has_the_run_keys_and_mode() -> None:
    full = ov.apply_overlay(overlay_primary(), overlay_rows(), OVERLAY_POLICY, "allow_only")
    empty = ov.apply_overlay(overlay_primary().head(0), overlay_rows(), OVERLAY_POLICY,
                             "allow_only")
    assert set(empty.join_summary) == set(full.join_summary)  # the same keys (order aside)
    assert empty.join_summary["primary_rows_matched"] == 0
    assert empty.join_summary["overlay_mode"] == "allow_only"
    assert empty.verdict["summary"] == {
        "match_rate": None, "unknown_rate": None, "year_min_match_rate": None,
        "year_p10_match_rate": None, "year_fail_years": [], "duplicate_key_count_primary": 0,
        "duplicate_key_count_overlay": 0,
    }  # fmt: skip


def test_trade_dt_key_naive_aware_and_unparsable() -> None:
    # primary trade_dt naive (UTC clock times); overlay: row 0 the same instant written in
    # New York time (aware, 10:00 EST = 15:00 UTC), row 1 a naive datetime string, row 2
    # text that is no datetime (null: no match, no error)
    p = pl.DataFrame({
        "ticker": ["AAA", "AAA", "AAA"],
        "trade_date": [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)],
        "trade_dt": [dt.datetime(2024, 1, 2, 15), dt.datetime(2024, 1, 3, 15),
                     dt.datetime(2024, 1, 4, 15)],
    })  # fmt: skip
    aware = pl.Series([dt.datetime(2024, 1, 2, 10)]).dt.replace_time_zone("America/New_York")
    o_aware = pl.DataFrame({"ticker": ["AAA"], "trade_dt": aware, "cluster_id": [1]})
    res = ov.apply_overlay(p, o_aware, OVERLAY_POLICY, "none", "ticker,trade_dt")
    assert res.frame["overlay_policy_class"].to_list() == ["ALLOW", "UNKNOWN", "UNKNOWN"]
    o_text = pl.DataFrame({"ticker": ["AAA", "AAA"],
                           "trade_dt": ["2024-01-03 15:00:00", "not a time"],
                           "cluster_id": [2, 3]})  # fmt: skip
    res = ov.apply_overlay(p, o_text, OVERLAY_POLICY, "none", "ticker,trade_dt")
    assert res.frame["overlay_policy_class"].to_list() == ["UNKNOWN", "WATCH", "UNKNOWN"]
    assert res.join_summary["match_rate"] == pytest.approx(1 / 3)


def test_overlay_input_messages() -> None:
    with pytest.raises(ValueError, match="^overlay cluster file: cluster_id is not integer"):
        ov.read_overlay_rows(pl.DataFrame({"cluster_id": ["1", "one"]}))
    message = "cluster hardening policy: no per_state entry has class ALLOW, WATCH or BLOCK"
    with pytest.raises(ValueError, match=f"^{message}$"):
        ov.policy_table({"per_state": [{"state_id": 1, "class_label": "maybe"}]})


def test_empty_policy_text_reads_as_unknown_and_gates_so() -> None:
    # class_label "" -> UNKNOWN, allow_direction_hint "" -> UNCONFIRMED; under
    # allow_or_unknown with unknowns passing, the AAA 2023-12-29 row (cluster 1) passes
    policy = {"per_state": [{"state_id": 1, "class_label": "", "allow_direction_hint": ""},
                            {"state_id": 2, "class_label": "BLOCK"}]}
    table = ov.policy_table(policy)
    assert table["overlay_policy_class"].to_list() == ["UNKNOWN", "BLOCK"]
    assert table["overlay_direction_hint"].to_list() == ["UNCONFIRMED", "UNCONFIRMED"]
    res = ov.apply_overlay(overlay_primary(), overlay_rows(), policy, "allow_or_unknown")
    assert res.frame["overlay_allow_signal"][0] is True


def test_a_single_duplicated_overlay_key_count_fails() -> None:
    status, reasons = ov.coverage_status(
        match_rate=1.0, year_min_match_rate=1.0, unknown_rate=0.0,
        duplicate_key_count_primary=0, duplicate_key_count_overlay=1,
        thresholds=ov.CoverageThresholds())
    assert (status, reasons) == ("FAIL_DUPLICATES", ["duplicate_keys primary=0 overlay=1"])


def test_performance_breakdown_drops_a_null_validity_flag() -> None:
    # the second ALLOW trade has is_valid_trade null: not valid, so ALLOW holds one trade
    trades = pl.DataFrame({"entry_overlay_policy_class": ["ALLOW", "ALLOW"],
                           "net_return": [0.02, -0.04], "is_valid_trade": [True, None]})
    b = ov.performance_breakdown(trades).row(0, named=True)
    assert b["trade_count"] == 1 and b["avg_return"] == pytest.approx(0.02)
    assert b["profit_factor"] == float("inf") and b["profit_factor_inf"] is True


# --------------------------------------------------------------------------- execution


def test_empty_frame_reason_table_shares_are_zero() -> None:
    res = apply_execution(mixed().head(0), MIXED_PARAMS)
    assert res.by_reason["reason"].to_list() == [
        "liquidity_floor", "multiple_reasons", "price_floor", "vol_cap", "warmup"]
    assert res.by_reason["suppressed_signal_share"].to_list() == [0.0] * 5
    assert res.by_reason["row_share_total"].to_list() == [0.0] * 5
    # no candidate: 0 before, 0 after, 0 suppressed
    assert [res.summary[k] for k in ("candidate_signals_before_filters",
                                     "candidate_signals_after_filters",
                                     "suppressed_signal_count")] == [0, 0, 0]


def test_every_candidate_suppressed_counts_zero_after() -> None:
    # mixed() with a 50-bar warm-up: every row fails, so all 5 candidates are suppressed
    # (A0, A1, A4, A5, B1: eligible, LONG/SHORT, and the overlay allows them; A4's null
    # overlay flag reads as allowed here)
    res = apply_execution(mixed(), ExecutionParams("lite", min_history_bars_for_execution=50))
    assert res.summary["candidate_signals_before_filters"] == 5
    assert res.summary["candidate_signals_after_filters"] == 0
    assert res.summary["suppressed_signal_count"] == 5
    assert res.summary["suppressed_signal_share"] == 1.0


def test_liquidity_without_volume_message() -> None:
    message = ("the liquidity filter (min_dollar_vol_20) needs a volume column; provide volume "
               "or disable the filter")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        apply_execution(mixed().drop("volume"), MIXED_PARAMS)


def test_prepare_sorts_by_ticker_fills_hints_and_reads_text_closes() -> None:
    # B's bar comes first although A < B (and A's date is later): the output is sorted by
    # ticker. A null hint reads as UNCONFIRMED (no candidate); a close "n/a" is missing and
    # fails the price floor 5, the close "12.5" passes it
    frame = pl.DataFrame({
        "ticker": ["B", "A"],
        "trade_date": [dt.date(2024, 1, 2), dt.date(2024, 1, 3)],
        "close": ["n/a", "12.5"],
        "signal_eligible": [True, True],
        "state_direction_hint": [None, "LONG_BIAS"],
    })
    res = apply_execution(frame, ExecutionParams("custom", min_price=5.0))
    out = res.frame
    assert out["ticker"].to_list() == ["A", "B"]
    assert out["close"].to_list() == [12.5, None]
    assert out["state_direction_hint"].to_list() == ["LONG_BIAS", "UNCONFIRMED"]
    assert out["exec_candidate_before"].to_list() == [True, False]
    assert out["exec_filter_price_fail"].to_list() == [False, True]
    assert res.summary["candidate_signals_before_filters"] == 1
    assert res.summary["rows_eligible"] == 1


def test_vol_unit_with_p90_exactly_one_is_decimal() -> None:
    # atr 0.5, 1.0, 1.0: median 1.0 and linear p90 1.0, neither above 1 -> decimal, so the
    # vol column is the raw value (percent points would divide it by 100)
    frame = exec_bars([10.0, 10.0, 10.0], [1e6] * 3, atr_pct_14=[0.5, 1.0, 1.0])
    res = apply_execution(frame, ExecutionParams("custom", max_vol_pct=0.9))
    assert res.summary["vol_unit_detected"] == "decimal"
    assert (res.summary["vol_raw_median"], res.summary["vol_raw_p90"]) == (1.0, 1.0)
    assert res.frame["exec_vol_pct"].to_list() == [0.5, 1.0, 1.0]
    assert res.frame["exec_filter_vol_fail"].to_list() == [False, True, True]


# --------------------------------------------------------------------------- engine


def test_a_null_direction_is_no_side() -> None:
    # state 0 (direction 0) written as a null direction: the same trades, none from a state 0
    # bar (AAA's first entry signal is its bar 1, BBB's its bar 1)
    cfg = BacktestConfig("state_entry", "state_exit")
    zero = run_trades(kernel_frame(), cfg)
    nulls = kernel_frame().with_columns(
        direction=pl.when(pl.col("state_id") == 0).then(None).otherwise(pl.col("direction")))
    got = run_trades(nulls, cfg)
    assert trade_key(got.trades) == trade_key(zero.trades)
    assert [k[1] for k in trade_key(got.trades) if k[0].endswith("-1")] == [1, 1]
    assert got.diagnostics == zero.diagnostics


def test_bad_input_messages() -> None:
    frame = kernel_frame().with_columns(direction=pl.lit(2, dtype=pl.Int8))
    with pytest.raises(ValueError, match=r"^direction must be \+1, -1, 0 or null$"):
        run_trades(frame, BacktestConfig())
    # a null state alone, or a null date alone, is refused
    first_null = pl.when(pl.int_range(pl.len()) == 0).then(None)
    for col in ("state_id", "trade_date"):
        frame = kernel_frame().with_columns(first_null.otherwise(pl.col(col)).alias(col))
        with pytest.raises(ValueError, match="^state and trade_date must not be null$"):
            run_trades(frame, BacktestConfig())


# --------------------------------------------------------------------------- adapter


def test_parquet_read_projects_the_known_columns(tmp_path) -> None:
    # a column no step reads is left out of a Parquet read unless asked for by ``extra``
    path = tmp_path / "x.parquet"
    flow_frame().with_columns(notes=pl.lit("x"), cluster_note=pl.lit(1)).write_parquet(path)
    assert read_input(path).columns == flow_frame().columns
    assert read_input(path, extra=("notes",)).columns == [*flow_frame().columns, "notes"]


def test_unparsable_confidence_and_trade_dt_values_become_null() -> None:
    # text probability "n/a" and text trade_dt "garbage" are null, not errors; a float
    # trade_dt (microseconds) with a NaN keeps its number and nulls the NaN
    df = pl.DataFrame({
        "ticker": ["A", "A"],
        "trade_date": [dt.date(2024, 1, 2), dt.date(2024, 1, 3)],
        "close": [1.0, 2.0],
        "hmm_state_filtered": [1, 2],
        "hmm_prob_filtered_max": ["0.6", "n/a"],
        "trade_dt": ["2024-01-02 21:00:00", "garbage"],
    })
    out, _ = normalize(df, "hmm")
    assert out["confidence"].to_list() == [0.6, None]
    assert out["trade_dt"].to_list() == [dt.datetime(2024, 1, 2, 21), None]
    floats = df.with_columns(trade_dt=pl.Series([1_704_229_200_000_000.0, float("nan")]))
    out, _ = normalize(floats, "hmm")
    assert out["trade_dt"].to_list() == [dt.datetime(2024, 1, 2, 21), None]


def test_adapter_output_schema_and_build_time() -> None:
    before = dt.datetime.now(dt.UTC)
    out, _ = normalize(flow_frame(), "flow")
    after = dt.datetime.now(dt.UTC)
    assert out.schema["state_score"] == pl.Float64
    assert out["built_ts"].null_count() == 0
    assert before - dt.timedelta(seconds=1) <= out["built_ts"][0] <= after


def test_adapter_sorts_and_dedupes_tickers_in_any_order() -> None:
    # AAA, BBB, AAA on one day: the second AAA row is a duplicate and must go; the output is
    # sorted by ticker
    df = pl.DataFrame({"ticker": ["AAA", "BBB", "AAA"], "trade_date": ["2024-01-02"] * 3,
                       "close": [10.0, 20.0, 11.0], "flow_state_code": [1, 2, 3]})
    out, summary = normalize(df, "flow")
    assert out.select("ticker", "close").rows() == [("AAA", 10.0), ("BBB", 20.0)]
    assert summary["rows_deduped_ticker_date"] == 1
    # a BBB block before an AAA block (each in date order) comes out AAA first
    df = pl.DataFrame({"ticker": ["BBB", "BBB", "AAA"],
                       "trade_date": ["2024-01-02", "2024-01-03", "2024-01-02"],
                       "close": [20.0, 21.0, 10.0], "flow_state_code": [1, 2, 3]})
    assert normalize(df, "flow")[0]["ticker"].to_list() == ["AAA", "BBB", "BBB"]
