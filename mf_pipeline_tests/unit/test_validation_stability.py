"""Rolling-window stability (research.md §6.4) by hand on a frame with known month boundaries.

Two tickers, eight rows in January-April 2024, 2-month windows stepping 1 month:
w0 = Jan 1 - Feb 29, w1 = Feb 1 - Mar 31, w2 = Mar 1 - Apr 30, w3 = Apr 1 - May 31.

    A: Jan 31 s0 -0.02 | Feb 1  s0 -0.04 | Mar 15 s1 +0.01 | Apr 30 s0 -0.01
    B: Jan 10 s1 +0.03 | Feb 29 s0 -0.01 | Mar 1  s1 +0.02 | Apr 1  s2 +0.05

State 0 is bearish in every window (-0.07/3, -0.025, -0.01, -0.01); state 1 is absent from w3,
state 2 from w0 and w1.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mf_pipeline.lib.validation.stability import rolling_stability
from mf_pipeline_tests.unit.test_validation_events import synthetic_panel

D = dt.date
RET = [-0.02, -0.04, 0.01, -0.01, 0.03, -0.01, 0.02, 0.05]


def hand_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ticker": ["A"] * 4 + ["B"] * 4,
            "trade_date": [D(2024, 1, 31), D(2024, 2, 1), D(2024, 3, 15), D(2024, 4, 30)]
            + [D(2024, 1, 10), D(2024, 2, 29), D(2024, 3, 1), D(2024, 4, 1)],
            "state_id": pl.Series([0, 0, 1, 0, 1, 0, 1, 2], dtype=pl.Int32),
            "fwd_ret_10": RET,
            "fwd_abs_ret_10": [abs(r) for r in RET],
            "fwd_vol_proxy_10": [0.1] * 8,
        }
    )


def hand(**kw):
    return rolling_stability(hand_frame(), window_months=2, step_months=1, **kw)


def summary_row(res, state: int) -> dict:
    return res.state_summary.filter(pl.col("state_id") == state).row(0, named=True)


def test_rolling_windows_by_hand():
    roll = hand().rolling
    assert roll.select("window_seq", "window_start", "window_end").unique(
        maintain_order=True
    ).rows() == [
        (0, D(2024, 1, 1), D(2024, 2, 29)),
        (1, D(2024, 2, 1), D(2024, 3, 31)),
        (2, D(2024, 3, 1), D(2024, 4, 30)),
        (3, D(2024, 4, 1), D(2024, 5, 31)),
    ]
    assert roll.select("window_seq", "state_id", "row_count", "state_share").rows() == [
        (0, 0, 3, 0.75),
        (0, 1, 1, 0.25),
        (1, 0, 2, 0.5),
        (1, 1, 2, 0.5),
        (2, 0, 1, 0.25),
        (2, 1, 2, 0.5),
        (2, 2, 1, 0.25),
        (3, 0, 1, 0.5),
        (3, 2, 1, 0.5),
    ]
    expected_means = [-0.07 / 3, 0.03, -0.025, 0.015, -0.01, 0.015, 0.05, -0.01, 0.05]
    np.testing.assert_allclose(roll["fwd_ret_10_mean"].to_numpy(), expected_means, atol=1e-15)
    assert roll["fwd_ret_10_hit_rate"].to_list() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    np.testing.assert_allclose(
        roll["fwd_abs_ret_10_mean"].to_numpy(), np.abs(expected_means), atol=1e-15
    )


def test_default_twelve_month_windows_and_empty_windows_keep_their_index():
    """12-month windows stepping 3 months from the 1st of the first month; rows on Apr 30 and
    May 1 2024 fall either side of window 0's end; windows without rows emit nothing."""
    frame = hand_frame().with_columns(
        pl.Series(
            "trade_date",
            [D(2023, 5, 17), D(2024, 4, 30), D(2024, 5, 1), D(2026, 8, 2)]
            + [D(2023, 5, 31), D(2024, 8, 1), D(2026, 7, 31), D(2026, 8, 1)],
        )
    )
    roll = rolling_stability(frame).rolling
    windows = roll.group_by("window_seq", "window_start", "window_end").agg(
        pl.col("row_count").sum()
    )
    assert windows.sort("window_seq").rows() == [
        (0, D(2023, 5, 1), D(2024, 4, 30), 3),  # May 17, May 31, Apr 30
        (1, D(2023, 8, 1), D(2024, 7, 31), 2),  # Apr 30, May 1
        (2, D(2023, 11, 1), D(2024, 10, 31), 3),
        (3, D(2024, 2, 1), D(2025, 1, 31), 3),
        (4, D(2024, 5, 1), D(2025, 4, 30), 2),  # May 1, Aug 1
        (5, D(2024, 8, 1), D(2025, 7, 31), 1),
        # 6 (Nov 2024 - Oct 2025), 7 (Feb 2025 - Jan 2026), 8 (May 2025 - Apr 2026) are empty
        (9, D(2025, 8, 1), D(2026, 7, 31), 1),
        (10, D(2025, 11, 1), D(2026, 10, 31), 3),
        (11, D(2026, 2, 1), D(2027, 1, 31), 3),
        (12, D(2026, 5, 1), D(2027, 4, 30), 3),
        (13, D(2026, 8, 1), D(2027, 7, 31), 2),
    ]


def test_share_mean_counts_absent_windows_as_zero():
    """#13: state 1 has shares .25, .5, .5 and is absent from w3; state 2 has .25, .5."""
    res = hand()
    s1, s2 = summary_row(res, 1), summary_row(res, 2)
    assert s1["state_share_mean"] == pytest.approx((0.25 + 0.5 + 0.5 + 0) / 4)
    assert s1["state_share_mean_present"] == pytest.approx((0.25 + 0.5 + 0.5) / 3)
    assert s2["state_share_mean"] == pytest.approx(0.75 / 4)
    assert s2["state_share_mean_present"] == pytest.approx(0.375)
    assert s2["state_share_std"] == pytest.approx(np.std([0, 0, 0.25, 0.5]))
    assert s2["share_cv"] == pytest.approx(np.std([0, 0, 0.25, 0.5]) / 0.1875)
    assert (s1["window_count"], s2["window_count"]) == (3, 2)
    # occupancy over all windows is a distribution over the states
    assert res.state_summary["state_share_mean"].sum() == pytest.approx(1.0)


def test_bearish_state_is_sign_stable():
    """#12: state 0's mean is negative in all four windows: stability 1, positive share 0."""
    s0 = summary_row(hand(), 0)
    assert s0["dominant_sign"] == -1
    assert s0["fwd_ret_10_sign_stability"] == 1.0
    assert s0["fwd_ret_10_positive_window_share"] == 0.0
    s1 = summary_row(hand(), 1)
    assert (s1["dominant_sign"], s1["fwd_ret_10_sign_stability"]) == (1, 1.0)


def test_sign_stability_is_symmetric_for_a_flipping_state():
    """A state positive in 2 of 3 windows and its mirror image both score 2/3."""
    dates = [D(2024, 1, 5), D(2024, 2, 5), D(2024, 3, 5)]
    base = pl.DataFrame(
        {
            "ticker": ["A"] * 3,
            "trade_date": dates,
            "state_id": pl.Series([0, 0, 0], dtype=pl.Int32),
            "fwd_ret_10": [0.02, -0.01, 0.01],
            "fwd_abs_ret_10": [0.0] * 3,
            "fwd_vol_proxy_10": [0.0] * 3,
        }
    )
    mirror = base.with_columns(-pl.col("fwd_ret_10"))
    up = rolling_stability(base, window_months=1, step_months=1).state_summary.row(0, named=True)
    down = rolling_stability(mirror, window_months=1, step_months=1).state_summary.row(
        0, named=True
    )
    assert (up["dominant_sign"], down["dominant_sign"]) == (1, -1)
    assert up["fwd_ret_10_sign_stability"] == down["fwd_ret_10_sign_stability"] == 2 / 3
    assert up["fwd_ret_10_positive_window_share"] == 2 / 3
    assert down["fwd_ret_10_positive_window_share"] == 1 / 3


def test_ret_mean_tstat_and_cv_by_hand():
    """#14: t = mean of window means / (population std / sqrt(windows))."""
    means = np.array([-0.07 / 3, -0.025, -0.01, -0.01])
    s0 = summary_row(hand(), 0)
    assert s0["fwd_ret_10_mean_mean"] == pytest.approx(means.mean())
    assert s0["fwd_ret_10_mean_std"] == pytest.approx(means.std())
    assert s0["ret_mean_tstat"] == pytest.approx(means.mean() / (means.std() / 2))
    assert s0["ret_mean_cv"] == pytest.approx(means.std() / abs(means.mean()))
    # state 2: one window mean repeated (std 0) -> t undefined, cv 0
    s2 = summary_row(hand(), 2)
    assert s2["ret_mean_tstat"] is None and s2["ret_mean_cv"] == 0.0


def test_near_zero_mean_explodes_cv_but_not_tstat():
    """Window means +0.001 and -0.001: cv = 0.001 / 1e-12 = 1e9, t = 0."""
    frame = pl.DataFrame(
        {
            "ticker": ["A", "A"],
            "trade_date": [D(2024, 1, 5), D(2024, 2, 5)],
            "state_id": pl.Series([3, 3], dtype=pl.Int32),
            "fwd_ret_10": [0.001, -0.001],
            "fwd_abs_ret_10": [0.001, 0.001],
            "fwd_vol_proxy_10": [0.0, 0.0],
        }
    )
    row = rolling_stability(frame, window_months=1, step_months=1).state_summary.row(0, named=True)
    assert row["ret_mean_cv"] == pytest.approx(1e9)
    assert row["ret_mean_tstat"] == 0.0
    assert row["dominant_sign"] == 0 and row["fwd_ret_10_sign_stability"] is None


def test_trend_slope_against_window_seq():
    """Least-squares slope of window means on window_seq (x = 0..3, x-bar 1.5, Sxx = 5)."""
    res = hand()
    # state 0: sum (x - 1.5)(y - y-bar) = 0.0275 -> 0.0055; state 1 (x = 0, 1, 2): -0.0075
    assert summary_row(res, 0)["fwd_ret_10_mean_trend_slope"] == pytest.approx(0.0055)
    assert summary_row(res, 1)["fwd_ret_10_mean_trend_slope"] == pytest.approx(-0.0075)
    assert summary_row(res, 2)["fwd_ret_10_mean_trend_slope"] == pytest.approx(0.0)
    one = hand_frame().filter(pl.col("trade_date") == D(2024, 1, 10))
    lone = rolling_stability(one, window_months=2, step_months=1).state_summary
    assert lone["fwd_ret_10_mean_trend_slope"].to_list() == [None]


def test_transition_matrix_frobenius_by_hand():
    """Global P: 0->0 1/3, 0->1 2/3, 1->0 2/3, 1->2 1/3 (pairs A 00,01,10; B 10,01,12).

    w0 pairs: 0->0, 1->0 -> sqrt(4/9 + 4/9 + 1/9 + 1/9); w1: 0->1 twice -> sqrt(7/9);
    w2: 1->0, 1->2 -> sqrt(1/9 + 4/9 + 1/36 + 1/36); w3 has rows but no pair -> sqrt(10/9).
    """
    tm = hand(transition_stability=True).transition_matrix
    assert tm["transition_count"].to_list() == [2, 2, 2, 0]
    np.testing.assert_allclose(
        tm["frobenius_distance"].to_numpy(),
        [math.sqrt(10 / 9), math.sqrt(7 / 9), math.sqrt(11 / 18), math.sqrt(10 / 9)],
    )
    assert tm["window_end"].to_list()[0] == D(2024, 2, 29)
    assert hand().transition_matrix.height == 0


def test_context_means_and_missing_outcomes():
    frame = hand_frame().with_columns(pl.Series("tmf_21", [1.0, 3.0] + [0.0] * 6))
    roll = rolling_stability(frame, window_months=2, step_months=1).rolling
    cell = roll.filter((pl.col("window_seq") == 0) & (pl.col("state_id") == 0))
    assert cell["tmf_21_mean"].item() == pytest.approx((1 + 3 + 0) / 3)
    with pytest.raises(ValueError, match="fwd_vol_proxy_10"):
        rolling_stability(hand_frame().drop("fwd_vol_proxy_10"))


def test_empty_frame_gives_empty_tables():
    res = rolling_stability(hand_frame().head(0), transition_stability=True)
    assert res.rolling.height == res.state_summary.height == res.transition_matrix.height == 0
    assert "ret_mean_tstat" in res.state_summary.columns


@st.composite
def monthly_panels(draw):
    n = draw(st.integers(1, 40))
    days = draw(st.lists(st.integers(0, 900), min_size=n, max_size=n))
    return pl.DataFrame(
        {
            "ticker": draw(st.lists(st.sampled_from(["A", "B"]), min_size=n, max_size=n)),
            "trade_date": [D(2022, 1, 1) + dt.timedelta(days=d) for d in days],
            "state_id": pl.Series(
                draw(st.lists(st.integers(-1, 3), min_size=n, max_size=n)), dtype=pl.Int32
            ),
            "fwd_ret_10": draw(st.lists(st.floats(-1, 1), min_size=n, max_size=n)),
            "fwd_abs_ret_10": [0.0] * n,
            "fwd_vol_proxy_10": [0.0] * n,
        }
    ).unique(["ticker", "trade_date"])


def months(day: dt.date) -> int:
    return day.year * 12 + day.month


@settings(max_examples=60, deadline=None)
@given(monthly_panels(), st.integers(1, 13), st.integers(1, 6))
def test_windows_match_a_date_filter(frame, window_months, step_months):
    res = rolling_stability(frame, window_months=window_months, step_months=step_months)
    roll = res.rolling
    shares = roll.group_by("window_seq").agg(pl.col("state_share").sum())["state_share"]
    np.testing.assert_allclose(shares.to_numpy(), 1.0)
    for (seq, start, end), g in roll.group_by(
        "window_seq", "window_start", "window_end", maintain_order=True
    ):
        assert start.day == 1 and (end + dt.timedelta(days=1)).day == 1
        assert months(start) - months(frame["trade_date"].min()) == seq * step_months
        assert months(end + dt.timedelta(days=1)) - months(start) == window_months
        inside = frame.filter(pl.col("trade_date").is_between(start, end))
        expect = inside.group_by("state_id").agg(
            pl.len().alias("n"), pl.col("fwd_ret_10").mean().alias("m")
        )
        got = g.select("state_id", "row_count", "fwd_ret_10_mean").sort("state_id")
        assert got["state_id"].to_list() == expect.sort("state_id")["state_id"].to_list()
        assert got["row_count"].to_list() == expect.sort("state_id")["n"].to_list()
        np.testing.assert_allclose(got["fwd_ret_10_mean"], expect.sort("state_id")["m"], atol=1e-12)
    assert res.state_summary["state_share_mean"].sum() == pytest.approx(1.0)
    for row in res.state_summary.iter_rows(named=True):
        stab, pos = row["fwd_ret_10_sign_stability"], row["fwd_ret_10_positive_window_share"]
        if row["dominant_sign"] == 1:
            assert stab == pos
        elif row["dominant_sign"] == -1:
            assert stab <= 1 - pos + 1e-12


def test_synthetic_panel_shares_and_transition_counts():
    frame = synthetic_panel(n_tickers=4, n_days=600)
    res = rolling_stability(frame, transition_stability=True)
    assert res.state_summary["state_share_mean"].sum() == pytest.approx(1.0)
    # each window of 12 months holds about 260 business days per ticker, minus 1 pair each
    tm = res.transition_matrix
    assert tm.height == res.rolling["window_seq"].n_unique()
    first = res.rolling.filter(pl.col("window_seq") == 0)["row_count"].sum()
    assert tm["transition_count"][0] == first - 4
