"""Validation bootstrap: hand-computed replicate statistics, the date-block resampling that
keeps overlapping and cross-sectional dependence (faults #9, #10), the observed pairwise
difference with Holm/BH corrections (#11) and the random per-state subset (#31)."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from arch.bootstrap import CircularBlockBootstrap, StationaryBootstrap, optimal_block_length
from statsmodels.stats.multitest import multipletests

from mf_pipeline.lib.kernels.bootstrap import weighted_medians
from mf_pipeline.lib.validation import bootstrap as bmod
from mf_pipeline.lib.validation.bootstrap import run_bootstrap

D0 = date(2021, 1, 4)


def _frame(values: np.ndarray, states: np.ndarray | int = 0, col: str = "fwd_ret_5"):
    """(tickers x dates) matrix of one outcome as an adapted frame; ``states`` per cell."""
    n_t, n_d = values.shape
    st = np.broadcast_to(np.asarray(states), values.shape)
    return pl.DataFrame(
        {
            "ticker": np.repeat([f"T{i:03d}" for i in range(n_t)], n_d),
            "trade_date": [D0 + timedelta(days=j) for j in range(n_d)] * n_t,
            "state_id": pl.Series(st.ravel(), dtype=pl.Int32),
            col: values.ravel(),
        }
    )


def _overlapping(seed: int, n_tickers: int, n_dates: int, h: int = 10, mu: float = 0.001):
    """h-day forward sums of daily returns (common + own shock); true mean h * mu."""
    rng = np.random.default_rng(seed)
    daily = (
        mu + rng.normal(0, 0.01, (1, n_dates + h)) + rng.normal(0, 0.01, (n_tickers, n_dates + h))
    )
    c = np.concatenate([np.zeros((n_tickers, 1)), np.cumsum(daily, axis=1)], axis=1)
    fwd = c[:, h + 1 : h + 1 + n_dates] - c[:, 1 : 1 + n_dates]
    return _frame(fwd, col=f"fwd_ret_{h}"), h * mu


def test_weighted_median_kernel_equals_numpy_median_of_the_expanded_sample():
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=40), 1)  # ties on purpose
    units = rng.integers(0, 7, 40)
    weights = rng.integers(0, 4, (60, 7)).astype(np.float64)
    weights[0] = 0.0  # nothing drawn -> NaN
    order = np.argsort(values, kind="stable")
    sv, su = values[order], units[order]
    start = 20
    below = np.array([w[su[:start]].sum() for w in weights])
    total = np.array([w[su].sum() for w in weights])
    out = np.empty(60)
    weighted_medians(sv, su, weights, start, below, total, out)
    assert np.isnan(out[0])
    for b in range(1, 60):
        assert out[b] == pytest.approx(np.median(np.repeat(sv, weights[b][su].astype(int))))


def test_block_statistics_from_a_known_date_draw(monkeypatch):
    # dates 0,1,2; two tickers. Replicates: all dates once; date 0 three times; date 1 twice
    # plus date 2 once.
    vals = np.array([[0.01, -0.02, 0.04], [0.03, 0.00, 0.05]])
    w = np.array([[1.0, 1, 1], [3, 0, 0], [0, 2, 1]])
    monkeypatch.setattr(bmod, "_date_weights", lambda *a: w)
    res = run_bootstrap(_frame(vals), outcomes=["fwd_ret_5"], n_boot=3, ci=0.5, block_length=1)
    row = res.state_summary.row(0, named=True)
    # replicate means 0.11/6, 0.02, 0.05/6; medians 0.02, 0.02, 0; hit rates 4/6, 1, 2/6
    # (0.00 is a miss); ci=0.5 -> linear quantiles at positions 0.5 and 1.5 of 3 sorted values
    assert row["n"] == 6 and row["bootstrap_sample_n"] == 6
    assert row["mean_obs"] == pytest.approx(0.11 / 6)
    assert row["median_obs"] == pytest.approx(0.02)
    assert row["hit_rate_obs"] == pytest.approx(4 / 6)
    assert row["mean_ci_lo"] == pytest.approx((0.05 / 6 + 0.11 / 6) / 2)
    assert row["mean_ci_hi"] == pytest.approx((0.11 / 6 + 0.02) / 2)
    assert (row["median_ci_lo"], row["median_ci_hi"]) == pytest.approx((0.01, 0.02))
    assert (row["hit_rate_ci_lo"], row["hit_rate_ci_hi"]) == pytest.approx((0.5, 5 / 6))
    # one state is its own all-states reference: its edge is 0 in every replicate, p = 1
    assert row["mean_p_value"] == pytest.approx(1.0)
    assert row["block_length"] == 1 and row["bootstrap_mode"] == "block"


def test_edge_test_is_the_state_against_its_own_tickers(monkeypatch):
    # Ticker A earns more than B (means 0.06 and 0.0075). State 0 holds A on dates 0-2 and B on
    # date 3: its raw mean 0.045 beats the all-rows 0.03375 by 0.01125, only because it sits
    # on A. Its edge values (outcome minus ticker mean) are -0.02, 0, -0.01 (A) and 0.0225 (B):
    # edge -0.001875. Replicates (state - all rows of the edge values, same draw):
    # (1,1,1,1) -0.001875; (2,0,0,2) 0.00125 - 0.00625 = -0.005; (0,2,1,1) -0.000625;
    # (0,1,3,0) +0.000625; (1,2,1,0) -0.00125. |r - edge| >= 0.001875 for -0.005 and
    # +0.000625 only: p = (1 + 2) / 6. State 1 is the mirror image (equal counts).
    vals = np.array([[0.04, 0.06, 0.05, 0.09], [0.00, 0.01, -0.01, 0.03]])
    states = np.array([[0, 0, 0, 1], [1, 1, 1, 0]])
    w = np.array([[1.0, 1, 1, 1], [2, 0, 0, 2], [0, 2, 1, 1], [0, 1, 3, 0], [1, 2, 1, 0]])
    monkeypatch.setattr(bmod, "_date_weights", lambda *a: w)
    res = run_bootstrap(_frame(vals, states, "fwd_ret_10"), n_boot=5, block_length=1)
    rows = res.state_summary.sort("state_id")
    assert rows["mean_obs"].to_list() == pytest.approx([0.045, 0.0225])
    assert rows["mean_excess_obs"].to_list() == pytest.approx([-0.001875, 0.001875])
    assert rows["mean_p_value"].to_list() == pytest.approx([0.5, 0.5])
    assert rows["mean_p_adjusted"].to_list() == pytest.approx([1.0, 1.0])
    iid = run_bootstrap(_frame(vals, states, "fwd_ret_10"), n_boot=50, mode="iid")
    assert iid.state_summary["mean_excess_obs"].to_list() == pytest.approx([-0.001875, 0.001875])


@pytest.mark.parametrize(
    ("mode", "cls"), [("block", StationaryBootstrap), ("circular", CircularBlockBootstrap)]
)
def test_date_draw_is_the_arch_bootstrap_with_the_seed(mode, cls):
    w = bmod._date_weights(30, 5, mode, 4, np.random.default_rng(7))
    bs = cls(4, np.arange(30), seed=np.random.default_rng(7))
    for b, _ in enumerate(bs.bootstrap(5)):
        assert np.array_equal(w[b], np.bincount(bs.index, minlength=30))
    assert (w.sum(axis=1) == 30).all()


def test_iid_mode_reproduces_the_old_row_iid_draws():
    rng = np.random.default_rng(0)
    vals = rng.normal(size=(1, 50))
    res = run_bootstrap(_frame(vals), outcomes=["fwd_ret_5"], n_boot=20, mode="iid", ci=0.9)
    draw = np.random.default_rng(42).integers(0, 50, size=(20, 50))
    v = vals.ravel()
    means, medians = v[draw].mean(axis=1), np.median(v[draw], axis=1)
    row = res.state_summary.row(0, named=True)
    assert (row["mean_ci_lo"], row["mean_ci_hi"]) == pytest.approx(
        tuple(np.quantile(means, [0.05, 0.95]))
    )
    assert (row["median_ci_lo"], row["median_ci_hi"]) == pytest.approx(
        tuple(np.quantile(medians, [0.05, 0.95]))
    )
    assert res.meta["resample_unit"] == "row" and res.meta["block_length"] is None


def test_pairwise_reports_the_observed_difference_not_the_bootstrap_mean():
    rng = np.random.default_rng(5)
    vals = rng.lognormal(0, 1.0, (2, 60)) - 1.5  # skewed: bootstrap mean != observed
    states = np.array([[0], [1]])
    res = run_bootstrap(_frame(vals, states, "fwd_ret_10"), n_boot=40, block_length=3)
    pair = res.pairwise.row(0, named=True)
    observed = vals[0].mean() - vals[1].mean()
    assert pair["diff_mean_obs"] == pytest.approx(observed, abs=1e-15)
    assert abs(pair["diff_boot_mean"] - observed) > 1e-4  # the old definition differs
    assert (pair["n_a"], pair["n_b"]) == (60, 60)


def test_states_share_one_date_draw_so_a_constant_gap_has_no_spread():
    # State 1 is state 0 minus 0.01 on every date: with one shared date draw every replicate
    # difference is exactly 0.01; the iid mode resamples the states independently.
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.02, 200)
    vals = np.stack([x, x - 0.01])
    frame = _frame(vals, np.array([[0], [1]]), "fwd_ret_10")
    block = run_bootstrap(frame, n_boot=100, block_length=5).pairwise.row(0, named=True)
    assert block["diff_ci_lo"] == pytest.approx(0.01) and block["diff_ci_hi"] == pytest.approx(0.01)
    assert block["p_value"] == pytest.approx(1 / 101)
    assert block["diff_sign_consistent"] and block["significant"]
    iid = run_bootstrap(frame, n_boot=100, mode="iid").pairwise.row(0, named=True)
    assert iid["diff_ci_hi"] - iid["diff_ci_lo"] > 0.005


def test_holm_and_bh_equal_statsmodels_on_the_same_raw_p_values():
    rng = np.random.default_rng(11)
    means = np.array([0.0, 0.002, 0.004, -0.003, 0.0])
    states = np.repeat(np.arange(5), 8)[:, None]
    vals = means[states] + rng.normal(0, 0.02, (40, 150))
    res = run_bootstrap(_frame(vals, states, "fwd_ret_10"), n_boot=200, block_length=10)
    pw = res.pairwise
    assert pw.height == 10
    assert pw["p_adjusted_holm"].to_numpy() == pytest.approx(
        multipletests(pw["p_value"].to_numpy(), method="holm")[1]
    )
    assert pw["p_adjusted_bh"].to_numpy() == pytest.approx(
        multipletests(pw["p_value"].to_numpy(), method="fdr_bh")[1]
    )
    assert pw["significant"].to_list() == (pw["p_adjusted_holm"] < 0.05).to_list()
    assert pw["significant"].any() and not pw["significant"].all()
    for outcome, cells in res.state_summary.group_by("outcome_name"):
        assert cells["mean_p_adjusted"].to_numpy() == pytest.approx(
            multipletests(cells["mean_p_value"].to_numpy(), method="holm")[1]
        ), outcome


def test_block_ci_covers_the_true_mean_of_overlapping_returns_and_iid_does_not():
    def coverage(mode: str, sims: int) -> float:
        hits = 0
        for seed in range(sims):
            frame, truth = _overlapping(seed, n_tickers=2, n_dates=1000)
            row = run_bootstrap(frame, n_boot=200, mode=mode, random_state=seed).state_summary.row(
                0, named=True
            )
            hits += row["mean_ci_lo"] <= truth <= row["mean_ci_hi"]
        return hits / sims

    assert coverage("block", 200) >= 0.88
    assert coverage("iid", 60) <= 0.6  # fault #9: overlapping rows treated as independent


def test_date_blocks_keep_the_common_daily_shock_of_many_tickers():
    rng = np.random.default_rng(2)
    vals = rng.normal(0, 0.01, (1, 250)) + rng.normal(0, 0.01, (40, 250))
    frame = _frame(vals)
    width = {}
    for mode in ("block", "iid"):
        row = run_bootstrap(frame, n_boot=300, mode=mode, block_length=1).state_summary.row(
            0, named=True
        )
        width[mode] = row["mean_ci_hi"] - row["mean_ci_lo"]
    # variance of the mean: (s_f^2 + s_e^2 / 40) / 250 against iid's 2 s^2 / (40 * 250)
    assert width["block"] > 3 * width["iid"]


def test_default_block_length_is_politis_white_at_least_the_longest_horizon():
    rng = np.random.default_rng(4)
    ar = np.zeros(600)
    for t in range(1, 600):
        ar[t] = 0.97 * ar[t - 1] + rng.normal()
    frame = _frame(np.stack([ar, ar + rng.normal(0, 0.1, 600)]), col="fwd_ret_10")
    daily = frame.group_by("trade_date").agg(pl.col("fwd_ret_10").mean()).sort("trade_date")
    pw = optimal_block_length(daily["fwd_ret_10"].to_numpy())
    for mode, column in (("block", "stationary"), ("circular", "circular")):
        res = run_bootstrap(frame, n_boot=5, mode=mode)
        assert pw[column].iloc[0] > 10
        assert res.meta["block_length"] == int(np.ceil(pw[column].iloc[0]))
        assert res.state_summary["block_length"].unique().to_list() == [res.meta["block_length"]]
        assert res.meta["block_length_method"] == "politis_white_min_horizon"
    noise = _frame(rng.normal(size=(2, 300)), col="fwd_ret_20")
    assert run_bootstrap(noise, n_boot=5).meta["block_length"] == 20


def test_large_state_uses_a_random_subset_that_keeps_each_rows_date(monkeypatch):
    # value = 10 * date index + ticker index / 100, rows sorted so the head slice would be
    # the first ticker's first dates only
    n_t, n_d = 10, 100
    vals = 10.0 * np.arange(n_d)[None, :] + np.arange(n_t)[:, None] / 100
    seen = []
    real = bmod._weighted_replicates

    def spy(cells, weights):
        seen.extend((values.copy(), units.copy()) for values, units, _ in cells)
        return real(cells, weights)

    monkeypatch.setattr(bmod, "_weighted_replicates", spy)
    res = run_bootstrap(_frame(vals), outcomes=["fwd_ret_5"], n_boot=10, max_points_per_state=100)
    values, units = seen[0]
    assert values.size == 100
    assert np.array_equal(units, np.floor(values / 10).astype(int))  # each row kept its date
    assert len(np.unique(np.round(values % 1, 2))) > 5  # many tickers, not a head slice
    row = res.state_summary.row(0, named=True)
    assert row["n"] == 1000 and row["bootstrap_sample_n"] == 100
    assert row["mean_obs"] == pytest.approx(values.mean())
    assert abs(row["mean_obs"] - vals.mean()) < 150  # head slice mean would be ~50


def test_empty_cell_and_non_return_outcomes_have_null_statistics():
    frame = _frame(np.arange(12, dtype=float).reshape(2, 6) / 100, np.array([[0], [1]]))
    frame = frame.with_columns(
        pl.when(pl.col("state_id") == 1)
        .then(None)
        .otherwise(pl.col("fwd_ret_5"))
        .alias("fwd_ret_5"),
        (pl.col("fwd_ret_5").abs()).alias("fwd_abs_ret_10"),
    )
    s = run_bootstrap(frame, n_boot=10, block_length=2).state_summary
    empty = s.filter((pl.col("state_id") == 1) & (pl.col("outcome_name") == "fwd_ret_5"))
    assert empty["n"].item() == 0 and empty["bootstrap_sample_n"].item() == 0
    assert empty["mean_obs"].item() is None and empty["mean_ci_lo"].item() is None
    absrow = s.filter((pl.col("state_id") == 0) & (pl.col("outcome_name") == "fwd_abs_ret_10"))
    assert absrow["hit_rate_obs"].item() is None and absrow["mean_p_value"].item() is None
    assert absrow["mean_obs"].item() == pytest.approx(0.025)
    assert s["outcome_name"].to_list()[:2] == ["fwd_abs_ret_10", "fwd_ret_5"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_boot": 0}, "n_boot"),
        ({"ci": 1.0}, "ci"),
        ({"mode": "moving"}, "mode"),
        ({"outcomes": ["fwd_ret_99"]}, "fwd_ret_99"),
        ({"block_length": 0}, "block_length"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_bootstrap(_frame(np.ones((1, 5))), **kwargs)
