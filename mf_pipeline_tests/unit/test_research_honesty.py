"""Issue #17 items 3-5: figures say what they measure (hand-computed values on tiny frames)."""

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.research.hmm import HmmParams
from mf_pipeline.lib.research.hmm_diagnostics import (
    dwell_stats,
    hmm_diagnostics,
    robustness_summary,
)


def _params(k: int) -> HmmParams:
    return HmmParams(np.full(k, 1 / k), np.full((k, k), 1 / k), np.zeros((k, 1)),
                     np.ones((k, 1, 1)))  # fmt: skip


def _diag(states: list[int], k: int = 3) -> dict[str, pl.DataFrame]:
    frame = pl.DataFrame({"hmm_state": pl.Series(states, dtype=pl.Int16)})
    return hmm_diagnostics(frame, np.array([0, len(states)]), _params(k))


# ------------------------------------------------------------------ item 3a: dwell statistics


def test_dwell_reports_complete_runs_and_the_old_all_runs_figures():
    # one sequence 0 0 | 1 1 1 | 0: runs 0×2 (cut by the start), 1×3 (complete), 0×1 (cut by
    # the end); state 2 never occurs
    d = dwell_stats(np.array([0, 0, 1, 1, 1, 0]), np.array([0, 6]), _params(3))
    assert d["dwell_count"].to_list() == [0, 1, 0]
    assert d["dwell_mean"].to_list() == [None, 3.0, None]
    assert d["censored_run_count"].to_list() == [2, 0, 0]
    # the old tool's definition: every run as-is
    assert d["dwell_count_all_runs"].to_list() == [2, 1, 0]
    assert d["dwell_mean_all_runs"].to_list() == [1.5, 3.0, None]
    assert d["dwell_median_all_runs"].to_list() == [1.5, 3.0, None]
    assert d["max_dwell_all_runs"].to_list() == [2, 3, None]
    # linear quantiles of [1, 2]: 1.1 and 1.9
    assert d["dwell_p10_all_runs"][0] == pytest.approx(1.1)
    assert d["dwell_p90_all_runs"][0] == pytest.approx(1.9)


def test_robustness_reports_both_dwell_means_and_says_which_is_which():
    r = robustness_summary(_diag([0, 0, 1, 1, 1, 0]), None, None, 0)
    assert r["avg_dwell_mean"] == 3.0  # complete runs: state 1 only
    assert r["avg_dwell_mean_all_runs"] == pytest.approx((1.5 + 3.0) / 2)
    assert "complete runs" in r["dwell_definition"]


# ------------------------------------------------- item 3b: average self-transition probability


def test_avg_self_transition_ignores_a_state_that_never_occurs():
    # pairs 0→0, 0→1, 1→1, 1→1, 1→0: a_00 = 1/2, a_11 = 2/3; state 2 never occurs (K = 3)
    d = _diag([0, 0, 1, 1, 1, 0])
    tm = d["transition_matrix"].filter(pl.col("hmm_state_prev") == pl.col("hmm_state"))
    assert tm["transition_probability"].to_list() == [0.5, pytest.approx(2 / 3), None]
    r = robustness_summary(d, None, None, 0)
    assert r["avg_self_transition_prob"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # 0.5833
    assert r["avg_self_transition_prob_observed_pairs"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r["notes"][2] == "state_persistence_ok"


def test_a_state_that_occurs_but_never_stays_counts_zero_and_the_old_figure_is_reported():
    # pairs 0→0, 0→1, 1→1, 1→2, 2→0: a_00 = 1/2, a_11 = 1/2, a_22 = 0 (state 2 occurs once)
    r = robustness_summary(_diag([0, 0, 1, 1, 2, 0]), None, None, 0)
    assert r["avg_self_transition_prob"] == pytest.approx(1 / 3)  # (1/2 + 1/2 + 0) / 3
    assert r["notes"][2] == "low_state_persistence"  # 0.333 < 0.35
    # the old tool listed observed pairs only: the (2, 2) pair never occurs, so 0.5
    assert r["avg_self_transition_prob_observed_pairs"] == pytest.approx(0.5)
