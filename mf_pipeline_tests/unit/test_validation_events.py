"""Transition event study (research.md §6.3): events, cut windows and path means by hand.

The hand frame has two tickers. A (8 consecutive days) has states 0,0,1,1,1,0,0,0: events at
rows 2 (0->1) and 5 (1->0). B (3 days, a 12-day gap, 3 days) has states 1,1,1 | 0,0,1: the
1->0 change sits on the gap and is no event; row 5 (0->1) is one, and its pre window starts
after the gap. With window_pre = window_post = 3 the old tool would reach across the next
transition (A row 5 at rel_bar +3) and across the gap (B rows 0-2).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mf_pipeline.lib.kernels.offsets import kernel_array, ticker_offsets
from mf_pipeline.lib.kernels.validation_windows import state_runs
from mf_pipeline.lib.research.labels import add_forward_labels
from mf_pipeline.lib.validation.events import transition_event_study

D = dt.date


def hand_frame() -> pl.DataFrame:
    a_dates = [D(2024, 1, d) for d in range(1, 9)]
    b_dates = [D(2024, 1, d) for d in (1, 2, 3, 15, 16, 17)]
    return pl.DataFrame(
        {
            "ticker": ["A"] * 8 + ["B"] * 6,
            "trade_date": a_dates + b_dates,
            "state_id": pl.Series([0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1], dtype=pl.Int32),
            "close": [10.0, 11, 12, 12, 15, 15, 12, 18, 20, 21, 22, 30, 33, 30],
            "fwd_ret_10": [None, None, 0.05, None, None, -0.03, None, None]
            + [None, None, None, 0.4, None, -0.01],
            "tmf_21": [0.0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3],
        }
    )


def study(frame: pl.DataFrame, **kw):
    opts = {"window_pre": 3, "window_post": 3, "min_events_per_transition": 1} | kw
    return transition_event_study(frame, **opts)


def test_event_list_codes_and_index_by_hand():
    ev = study(hand_frame()).events
    assert ev.columns == [
        "ticker",
        "event_trade_date",
        "prev_state_id",
        "next_state_id",
        "state_id",
        "transition_code",
        "event_index_in_ticker",
        "tmf_21",
        "fwd_ret_10",
    ]
    assert ev.schema["transition_code"] == pl.String
    assert ev.rows() == [
        ("A", D(2024, 1, 3), 0, 1, 1, "0->1", 0, 1.0, 0.05),
        ("A", D(2024, 1, 6), 1, 0, 0, "1->0", 1, 2.0, -0.03),
        ("B", D(2024, 1, 17), 0, 1, 1, "0->1", 0, 3.0, -0.01),
    ]


def test_no_event_across_a_date_gap():
    """#22: B's 1->0 change on 2024-01-15 follows a 12-day gap; only a wide max_gap sees it."""
    frame = hand_frame()
    assert study(frame).events.filter(pl.col("ticker") == "B").height == 1
    wide = study(frame, max_gap_days=30).events.filter(pl.col("ticker") == "B")
    assert wide["event_trade_date"].to_list() == [D(2024, 1, 15), D(2024, 1, 17)]


def test_path_means_with_windows_cut_at_transitions_and_gaps():
    """#22: 0->1 paths (A row 2, B row 5) by hand; no rel_bar -3 or +3 survives the cuts."""
    path = study(hand_frame()).path_summary.filter(pl.col("transition_code") == "0->1")
    # rel -2: A row 0 (first row, no daily return), B row 3 (after the gap: none either);
    #         cumulative: 10/12 - 1 and 30/30 - 1.
    # rel -1: A row 1 (11/10 - 1), B row 4 (33/30 - 1); cumulative 11/12 - 1 and 33/30 - 1.
    # rel  0: A row 2 (12/11 - 1), B row 5 (30/33 - 1).
    # rel +1, +2: A rows 3, 4 only (B's ticker ends); A row 5 is the next transition.
    expected = [
        (-2, 2, None, None, (10 / 12 - 1 + 0.0) / 2),
        (-1, 2, 0.1, 0.1, (11 / 12 - 1 + 0.1) / 2),
        (0, 2, 0.0, 1 / 11, 0.0),
        (1, 1, 0.0, 0.0, 0.0),
        (2, 1, 0.25, 0.25, 0.25),
    ]
    assert path["rel_bar"].to_list() == [r[0] for r in expected]
    assert path["count_points"].to_list() == [r[1] for r in expected]
    for k, col in enumerate(
        ("daily_ret_1_mean", "abs_daily_ret_mean", "cumulative_ret_from_event_mean"), start=2
    ):
        got = path[col].to_list()
        for g, row in zip(got, expected, strict=True):
            assert (g is None) if row[k] is None else g == pytest.approx(row[k], abs=1e-15)


def test_pre_window_stops_at_the_previous_transition():
    """A's 1->0 event at row 5: its pre window is rows 2-4 (state 1), starting at row 2."""
    path = study(hand_frame(), window_pre=5).path_summary
    one_zero = path.filter(pl.col("transition_code") == "1->0")
    assert one_zero["rel_bar"].to_list() == [-3, -2, -1, 0, 1, 2]
    # rel -3 is row 2: daily 12/11 - 1, cumulative 12/15 - 1
    first = one_zero.row(0, named=True)
    assert first["daily_ret_1_mean"] == pytest.approx(1 / 11)
    assert first["cumulative_ret_from_event_mean"] == pytest.approx(12 / 15 - 1)


def test_summary_and_path_summary_are_filtered_by_min_events():
    """#22: with min_events 2 only 0->1 (two events) is left, in both tables."""
    res = study(hand_frame(), min_events_per_transition=2)
    assert res.summary["transition_code"].to_list() == ["0->1"]
    assert res.path_summary["transition_code"].unique().to_list() == ["0->1"]
    row = res.summary.row(0, named=True)
    assert row["count_events"] == 2
    assert row["fwd_ret_10_mean"] == pytest.approx(0.02)
    assert row["fwd_ret_10_median"] == pytest.approx(0.02)
    assert row["fwd_ret_10_hit_rate"] == 0.5
    assert row["tmf_21_mean"] == 2.0
    assert res.top_codes["min_events_per_transition"] == 2
    assert [r["transition_code"] for r in res.top_codes["top_transitions"]] == ["0->1"]


def test_summary_sorted_by_count_then_ids():
    res = study(hand_frame())
    assert res.summary.select("transition_code", "count_events").rows() == [
        ("0->1", 2),
        ("1->0", 1),
    ]


def test_codes_are_unambiguous_strings_with_negative_and_large_ids():
    """#21: prev*1000+next maps both 1->1000 and 2->0 to 2000, and -1->1 to -999."""
    frame = pl.DataFrame(
        {
            "ticker": ["X"] * 6,
            "trade_date": [D(2024, 2, d) for d in range(1, 7)],
            "state_id": pl.Series([1, 1000, 2, 0, -1, 1], dtype=pl.Int32),
            "close": [1.0, 2, 3, 4, 5, 6],
        }
    )
    res = study(frame, window_pre=1, window_post=1)
    assert res.events["transition_code"].to_list() == [
        "1->1000",
        "1000->2",
        "2->0",
        "0->-1",
        "-1->1",
    ]
    # path summary in numeric (prev, next) order, not string order
    assert res.path_summary["transition_code"].unique(maintain_order=True).to_list() == [
        "-1->1",
        "0->-1",
        "1->1000",
        "2->0",
        "1000->2",
    ]
    assert res.events.select("prev_state_id", "next_state_id").rows()[4] == (-1, 1)


def test_unsorted_input_is_sorted_and_duplicates_rejected():
    frame = hand_frame()
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    assert study(shuffled).events.equals(study(frame).events)
    with pytest.raises(ValueError, match="duplicate"):
        study(pl.concat([frame, frame.head(1)]))


def test_close_is_required():
    with pytest.raises(ValueError, match="close"):
        study(hand_frame().drop("close"))


def test_no_events_gives_empty_tables_with_full_schema():
    frame = hand_frame().with_columns(pl.lit(4, dtype=pl.Int32).alias("state_id"))
    res = study(frame)
    assert res.events.height == 0 and res.summary.height == 0 and res.path_summary.height == 0
    assert "fwd_ret_10_hit_rate" in res.summary.columns
    assert res.top_codes["top_transitions"] == []


# --- an independent row-by-row reference on random panels -----------------------------------


def reference(frame: pl.DataFrame, pre: int, post: int, gap: int):
    """Events and path sums walking each ticker's rows in plain Python."""
    events, path = [], {}
    for (ticker,), g in frame.sort("ticker", "trade_date").group_by("ticker", maintain_order=True):
        s = g["state_id"].to_list()
        d = [x.toordinal() for x in g["trade_date"].to_list()]
        c = [np.nan if v is None else v for v in g["close"].to_list()]

        def ret(j, d=d, c=c):
            if j == 0 or d[j] - d[j - 1] > gap or not np.isfinite(c[j - 1] * c[j]):
                return np.nan
            return c[j] / c[j - 1] - 1 if c[j - 1] != 0 else np.nan

        for i in range(1, len(s)):
            if s[i] == s[i - 1] or d[i] - d[i - 1] > gap:
                continue
            events.append((ticker, s[i - 1], s[i]))
            lo = i
            while lo > 0 and i - lo < pre and s[lo - 1] == s[i - 1] and d[lo] - d[lo - 1] <= gap:
                lo -= 1
            hi = i
            while (
                hi + 1 < len(s) and hi - i < post and s[hi + 1] == s[i] and d[hi + 1] - d[hi] <= gap
            ):
                hi += 1
            for j in range(lo, hi + 1):
                cell = path.setdefault((f"{s[i - 1]}->{s[i]}", j - i), [0, [], [], []])
                cell[0] += 1
                r = ret(j)
                if np.isfinite(r):
                    cell[1].append(r)
                    cell[2].append(abs(r))
                cum = c[j] / c[i] - 1 if np.isfinite(c[i]) and c[i] != 0 else np.nan
                if np.isfinite(cum):
                    cell[3].append(cum)
    return events, path


@st.composite
def panels(draw):
    rows = []
    for t in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, 25))
        day, state = D(2023, 1, 2).toordinal(), draw(st.integers(-1, 2))
        for _ in range(n):
            day += draw(st.sampled_from([1, 1, 1, 2, 3, 9]))
            if draw(st.booleans()):
                state = draw(st.integers(-1, 2))
            close = draw(st.one_of(st.none(), st.just(0.0), st.floats(1, 100)))
            rows.append((f"T{t}", D.fromordinal(day), state, close))
    return pl.DataFrame(
        rows,
        schema={
            "ticker": pl.String,
            "trade_date": pl.Date,
            "state_id": pl.Int32,
            "close": pl.Float64,
        },
        orient="row",
    )


@settings(max_examples=80, deadline=None)
@given(panels(), st.integers(0, 4), st.integers(0, 5))
def test_matches_row_by_row_reference(frame, pre, post):
    res = transition_event_study(
        frame, window_pre=pre, window_post=post, min_events_per_transition=1, max_gap_days=7
    )
    events, path = reference(frame, pre, post, 7)
    assert res.events.select("ticker", "prev_state_id", "next_state_id").rows() == events
    assert (res.events["prev_state_id"] != res.events["next_state_id"]).all()
    got = {(r[0], r[1]): r[2:] for r in res.path_summary.rows()}
    assert set(got) == set(path)
    for key, (n, daily, absd, cum) in path.items():
        g = got[key]
        assert g[0] == n
        for value, vals in zip(g[1:], (daily, absd, cum), strict=True):
            assert (value is None) if not vals else value == pytest.approx(np.mean(vals))


@settings(max_examples=80, deadline=None)
@given(panels())
def test_no_window_crosses_a_transition_or_gap(frame):
    """Runs are maximal one-state gap-free blocks, so an event window [run_start of the row
    before, run_end of the event row] never contains another transition or a gap."""
    frame = frame.sort("ticker", "trade_date")
    n = frame.height
    offsets = ticker_offsets(frame["ticker"])
    state = np.array(frame["state_id"].to_numpy(), dtype=np.int32)
    day = np.array(frame["trade_date"].cast(pl.Int64).to_numpy(), dtype=np.int64)
    run_start, run_end = np.empty(n, np.int64), np.empty(n, np.int64)
    is_event, daily = np.empty(n, np.bool_), np.empty(n)
    state_runs(
        state, day, kernel_array(frame["close"]), offsets, 7, run_start, run_end, is_event, daily
    )
    tick = np.searchsorted(offsets, np.arange(n), side="right") - 1
    for i in np.flatnonzero(is_event):
        lo, hi = run_start[i - 1], run_end[i]
        assert tick[lo] == tick[hi] == tick[i]
        assert (state[lo:i] == state[i - 1]).all() and (state[i : hi + 1] == state[i]).all()
        assert state[i - 1] != state[i]
        assert (np.diff(day[lo : hi + 1]) <= 7).all()
        # maximal: the row before lo / after hi is another ticker, a gap or another state
        if lo > offsets[tick[i]]:
            assert state[lo - 1] != state[i - 1] or day[lo] - day[lo - 1] > 7
        if hi + 1 < offsets[tick[i] + 1]:
            assert state[hi + 1] != state[i] or day[hi + 1] - day[hi] > 7


# --- synthetic panel of the speed budget (used by the timing script in the report) -----------


def synthetic_panel(
    n_tickers: int = 300, n_days: int = 3650, n_states: int = 5, stay: float = 0.95, seed: int = 7
) -> pl.DataFrame:
    """Business-day panel with sticky random states and forward labels (1.09M rows by default)."""
    rng = np.random.default_rng(seed)
    n = n_tickers * n_days
    days = np.busday_offset("2000-01-03", np.arange(n_days), roll="forward")
    fresh = np.zeros(n, dtype=bool)
    fresh[::n_days] = True
    held = np.maximum.accumulate(np.where(fresh | (rng.random(n) > stay), np.arange(n), 0))
    frame = pl.DataFrame(
        {
            "ticker": np.repeat([f"T{i:04d}.US" for i in range(n_tickers)], n_days),
            "trade_date": np.tile(days, n_tickers),
            "state_id": rng.integers(0, n_states, n).astype(np.int32)[held],
            "close": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))),
        }
    )
    return add_forward_labels(frame).with_columns((pl.col("fwd_ret_5") * 0.1).alias("tmf_21"))


def test_synthetic_panel_events_are_the_state_changes():
    frame = synthetic_panel(n_tickers=3, n_days=400)
    res = transition_event_study(frame, min_events_per_transition=1)
    changes = frame.select(
        (
            (pl.col("state_id") != pl.col("state_id").shift(1))
            & (pl.col("ticker") == pl.col("ticker").shift(1))
        ).sum()
    ).item()
    assert res.events.height == changes > 0
    assert res.summary["count_events"].sum() == changes
