"""The candidate layers' pure transforms (hand values): markers from the candidates' trades,
classes of cluster ids under a policy and their band segments, execution gates, the drift
badges; and the registry entries drawing them."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from viewer import candidates_chart, chart, registry
from viewer.candidates_data import (
    Candidate,
    CandidateSet,
    exec_candidate,
    exec_marks,
    policy_classes,
    policy_table,
    trade_marks,
)


def d(day: int) -> dt.date:
    return dt.date(2024, 1, day)


def trades(rows: list[tuple]) -> pl.DataFrame:
    cols = ("side", "entry_date", "entry_price", "exit_date", "exit_price", "exit_reason",
            "net_return", "hold_bars_realized", "entry_state_id", "is_valid_trade")
    return pl.DataFrame(rows, schema=cols, orient="row")


ALPHA = trades([
    ("LONG", d(2), 10.0, d(5), 11.0, "horizon", 0.10, 3, 2, True),
    ("SHORT", d(8), 12.0, d(9), 11.5, "state_change", 0.04, 1, 4, True),
    ("LONG", d(10), 13.0, d(11), None, "no_fill", None, 1, 2, False),
])  # fmt: skip
EXEC = trades([("LONG", d(2), 10.0, d(4), 10.5, "horizon", 0.05, 2, 2, True)])


def test_trade_marks_put_every_candidate_entry_and_exit_on_its_date():
    marks = trade_marks({"CANDIDATE_EXEC": EXEC, "CANDIDATE_ALPHA": ALPHA})
    rows = {r["trade_date"]: r for r in marks.to_dicts()}
    assert sorted(rows) == [d(2), d(4), d(5), d(8), d(9)]  # the invalid trade is not marked
    assert rows[d(2)]["cand_long_entry"] == 10.0
    assert rows[d(2)]["cand_long_entry_text"] == ("CANDIDATE_ALPHA LONG (state 2); "
                                                  "CANDIDATE_EXEC LONG (state 2)")
    assert rows[d(2)]["cand_short_entry"] is None and rows[d(2)]["cand_exit"] is None
    assert (rows[d(4)]["cand_exit"], rows[d(4)]["cand_exit_text"]) == (
        10.5, "CANDIDATE_EXEC LONG: horizon, net 5.0%, 2 bars")
    assert (rows[d(5)]["cand_exit"], rows[d(5)]["cand_exit_text"]) == (
        11.0, "CANDIDATE_ALPHA LONG: horizon, net 10.0%, 3 bars")
    assert (rows[d(8)]["cand_short_entry"], rows[d(8)]["cand_short_entry_text"]) == (
        12.0, "CANDIDATE_ALPHA SHORT (state 4)")
    assert rows[d(8)]["cand_long_entry"] is None
    assert rows[d(9)]["cand_exit_text"] == "CANDIDATE_ALPHA SHORT: state_change, net 4.0%, 1 bars"


def test_trade_marks_of_no_trade_are_empty():
    assert trade_marks({}).is_empty()
    assert trade_marks({"CANDIDATE_ALPHA": ALPHA.clear()}).is_empty()


def test_candidate_markers_sit_at_the_fill_prices():
    frame = pl.DataFrame({"trade_date": [d(i) for i in range(1, 11)],
                          "low": [9.0] * 10, "high": [14.0] * 10})
    frame = frame.join(trade_marks({"CANDIDATE_ALPHA": ALPHA}), on="trade_date", how="left")
    traces = {spec.name: chart.marker_trace(frame, spec, 1.0)
              for spec in registry.OPTIONAL_BY_NAME["candidate_trades"].markers}
    assert list(traces["candidate long entry"].y) == [10.0]
    assert list(traces["candidate short entry"].y) == [12.0]
    assert list(traces["candidate exit"].y) == [11.0, 11.5]
    assert list(traces["candidate exit"].text) == [
        "CANDIDATE_ALPHA LONG: horizon, net 10.0%, 3 bars",
        "CANDIDATE_ALPHA SHORT: state_change, net 4.0%, 1 bars"]
    assert traces["candidate short entry"].marker.symbol == "triangle-down"


def test_policy_table_reads_the_classes_of_a_policy_file():
    payload = {"per_state": [{"state_id": 0, "class_label": "allow"},
                             {"state_id": "1", "class_label": "WATCH"},
                             {"state_id": None}, {"state_id": 2}]}
    assert policy_table(payload) == {0: "ALLOW", 1: "WATCH", 2: "BLOCK"}
    assert policy_table({}) == {}


def test_policy_classes_of_cluster_ids():
    classes = {0: "ALLOW", 1: "WATCH", 2: "BLOCK"}
    ids = pl.Series([0, 1, 2, None, 7])
    assert policy_classes(ids, classes).to_list() == ["ALLOW", "WATCH", "BLOCK", None, "UNKNOWN"]
    floats = pl.Series([0.0, float("nan"), 2.0])
    assert policy_classes(floats, classes).to_list() == ["ALLOW", None, "BLOCK"]


def test_policy_band_segments_merge_runs_in_the_spec_colours():
    band = registry.OPTIONAL_BY_NAME["candidate_policy"].bands[0]
    frame = pl.DataFrame({
        "trade_date": [d(i) for i in range(1, 8)],
        "candidate_policy_class": policy_classes(pl.Series([0, 0, 1, None, 2, 2, 9]),
                                                 {0: "ALLOW", 1: "WATCH", 2: "BLOCK"}),
    })
    segs = chart.band_segments(frame, band)
    assert segs.select("start", "last", "value", "bars", "color").rows() == [
        (d(1), d(2), "ALLOW", 2, registry.GREEN),
        (d(3), d(3), "WATCH", 1, registry.AMBER),
        (d(4), d(4), None, 1, None),  # no cluster id: not painted
        (d(5), d(6), "BLOCK", 2, registry.RED),
        (d(7), d(7), "UNKNOWN", 1, registry.GREY),
    ]
    assert chart.band_legend(segs) == [("ALLOW", registry.GREEN), ("BLOCK", registry.RED),
                                       ("UNKNOWN", registry.GREY), ("WATCH", registry.AMBER)]


def test_exec_marks_and_their_markers_follow_spec_12_8():
    rows = pl.DataFrame({
        "trade_date": [d(1), d(2), d(3), d(4)],
        "execution_candidate_after": [True, False, None, False],
        "execution_suppressed_signal": [False, True, None, False],
        "execution_filter_reason": ["none", "liquidity", "price", "warmup"],
    })
    marks = exec_marks(rows)
    assert marks.rows() == [(d(1), True, False, None), (d(2), False, True, "liquidity"),
                            (d(3), False, False, None), (d(4), False, False, None)]
    frame = marks.with_columns(low=pl.lit(100.0), high=pl.lit(110.0))
    passed, blocked = registry.OPTIONAL_BY_NAME["candidate_execution"].markers
    pass_trace = chart.marker_trace(frame, passed, 1.0)
    block_trace = chart.marker_trace(frame, blocked, 1.0)
    assert list(pass_trace.x) == [d(1)] and list(pass_trace.y) == [pytest.approx(99.2)]
    assert pass_trace.marker.color == registry.GREEN and pass_trace.marker.symbol == "circle"
    assert list(block_trace.y) == [pytest.approx(110.88)] and list(block_trace.text) == [
        "liquidity"]
    assert block_trace.marker.color == registry.RED and block_trace.marker.symbol == "x"


def cand(label: str, profile: str = "none", status: str | None = None,
         flags: tuple[str, ...] = ()) -> Candidate:
    return Candidate(label, {"strategy": {"exec_profile": profile}}, None, "test", status,
                     flags)


def test_the_execution_candidate_is_the_first_label_with_a_profile():
    found = CandidateSet(candidates={
        c.label: c for c in (cand("CANDIDATE_EXEC_2", "lite"), cand("CANDIDATE_ALPHA"),
                             cand("CANDIDATE_EXEC", "lite"))})
    assert exec_candidate(found).label == "CANDIDATE_EXEC"
    assert exec_candidate(CandidateSet(candidates={"A": cand("A")})) is None


def test_drift_badges_per_candidate():
    assert [candidates_chart.badge(s) for s in ("OK", "DRIFT_WARN", "DRIFT_FAIL", "ERROR")] == [
        ":green-badge[OK]", ":orange-badge[DRIFT_WARN]", ":red-badge[DRIFT_FAIL]",
        ":violet-badge[ERROR]"]
    assert candidates_chart.badge(None) == ":gray-badge[not re-run]"
    found = CandidateSet(candidates={
        "CANDIDATE_ALPHA": cand("CANDIDATE_ALPHA", status="OK"),
        "CANDIDATE_EXEC": cand("CANDIDATE_EXEC", "lite", "DRIFT_FAIL",
                               ("expectancy_drop", "trade_count_drop"))})
    line = candidates_chart.status_markdown(found, "a policy")
    assert "CANDIDATE_ALPHA :green-badge[OK] · CANDIDATE_EXEC :red-badge[DRIFT_FAIL] " \
        "(expectancy_drop, trade_count_drop)" in line
    assert "not re-run yet" in line and "CANDIDATE_EXEC (profile `lite`)" in line
    assert candidates_chart.status_markdown(CandidateSet(), "x") is None
