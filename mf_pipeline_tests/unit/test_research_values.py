"""Issue #17 item 6: the research figures have the right VALUES (not only the right shape).

Each test checks numbers computed by hand on a tiny input, or by an independent reference
written here (plain numpy forward–backward and brute-force Viterbi, scipy densities, an
eigenvector), so a wrong constant, quantile or posterior in the production code fails it.
"""

import datetime as dt
import itertools
import math

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.research.hmm import (
    HmmParams,
    Sequences,
    decode,
    information_criteria,
    state_change_columns,
)
from mf_pipeline.lib.research.hmm_diagnostics import (
    dwell_stats,
    hmm_diagnostics,
    robustness_summary,
    state_frequency,
    stationary_distribution,
)
from mf_pipeline.lib.research.profiles import forward_validation, label_concentration

# --------------------------------------------------------------------------- HMM decoding

START = np.array([0.6, 0.4])
TRANS = np.array([[0.8, 0.2], [0.3, 0.7]])
MEANS = np.array([0.0, 2.0])
VARS = np.array([1.0, 0.5])
SEQS = [np.array([0.1, 1.9, 2.2, 0.5, 1.0]), np.array([1.5, -0.3, 0.9])]


def _params() -> HmmParams:
    return HmmParams(START, TRANS, MEANS[:, None], VARS[:, None, None], "diag")


def _density(x: float) -> np.ndarray:
    return np.exp(-0.5 * (x - MEANS) ** 2 / VARS) / np.sqrt(2 * np.pi * VARS)


def _reference(
    x: np.ndarray, start: np.ndarray = START, trans: np.ndarray = TRANS
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """(filtered, smoothed, loglik, Viterbi path) of one sequence, unscaled textbook
    recursions (fine for a handful of rows) and Viterbi by enumerating every path."""
    n = x.size
    b = np.array([_density(v) for v in x])
    alpha = np.empty((n, 2))
    alpha[0] = start * b[0]
    for t in range(1, n):
        alpha[t] = (alpha[t - 1] @ trans) * b[t]
    beta = np.ones((n, 2))
    for t in range(n - 2, -1, -1):
        beta[t] = trans @ (b[t + 1] * beta[t + 1])
    like = alpha[-1].sum()
    filtered = alpha / alpha.sum(axis=1, keepdims=True)
    smoothed = alpha * beta / like

    def path_prob(z: tuple[int, ...]) -> float:
        p = start[z[0]] * b[0, z[0]]
        for t in range(1, n):
            p *= trans[z[t - 1], z[t]] * b[t, z[t]]
        return p

    best = max(itertools.product((0, 1), repeat=n), key=path_prob)
    return filtered, smoothed, math.log(like), np.array(best)


@pytest.fixture(scope="module")
def decoded():
    X = np.concatenate(SEQS)[:, None]
    offsets = np.array([0, 5, 8])
    frame = pl.DataFrame({
        "ticker": ["A"] * 5 + ["B"] * 3,
        "trade_date": [dt.date(2020, 1, 1) + dt.timedelta(days=i)
                       for i in (0, 1, 2, 3, 4, 0, 1, 2)],
    })  # fmt: skip
    seqs = Sequences(frame=frame, X=X, offsets=offsets, tickers=["A", "B"], dropped_tickers=[])
    refs = [_reference(x) for x in SEQS]
    return decode(_params(), seqs), refs


def test_smoothed_prob_max_and_entropy_match_forward_backward(decoded):
    dec, refs = decoded
    smoothed = np.vstack([r[1] for r in refs])
    filtered = np.vstack([r[0] for r in refs])
    # smoothed and filtered differ by far more than the float32 tolerance on these rows
    assert np.abs(smoothed.max(axis=1) - filtered.max(axis=1))[[0, 1, 3, 5, 6]].min() > 1e-3
    got = dec.frame["hmm_state_prob_max"].to_numpy()
    np.testing.assert_allclose(got, smoothed.max(axis=1), rtol=0, atol=2e-6)
    entropy = -(smoothed * np.log(smoothed)).sum(axis=1)
    np.testing.assert_allclose(dec.frame["hmm_state_entropy"].to_numpy(), entropy, atol=2e-6)


def test_filtered_state_prob_and_loglik_match_the_forward_recursion(decoded):
    dec, refs = decoded
    filtered = np.vstack([r[0] for r in refs])
    np.testing.assert_allclose(dec.filtered_prob, filtered, rtol=1e-12)
    np.testing.assert_allclose(dec.frame["hmm_prob_filtered_max"].to_numpy(),
                               filtered.max(axis=1), rtol=1e-12)  # fmt: skip
    assert dec.frame["hmm_state_filtered"].to_list() == filtered.argmax(axis=1).tolist()
    assert dec.loglik == pytest.approx(sum(r[2] for r in refs), rel=1e-12)


def test_viterbi_path_is_the_most_probable_path(decoded):
    dec, refs = decoded
    want = np.concatenate([r[3] for r in refs])
    assert dec.frame["hmm_state"].to_list() == want.tolist()


def test_exact_zero_probabilities_give_finite_values():
    """Start in state 1 surely, state 1 absorbing: state 0 is impossible on every row, so the
    kernels' log-sum-exp sees all-(−inf) vectors (the mutmut survivors of kernels/hmm.py)."""
    start, trans = np.array([0.0, 1.0]), np.array([[0.9, 0.1], [0.0, 1.0]])
    params = HmmParams(start, trans, MEANS[:, None], VARS[:, None, None], "diag")
    x = SEQS[0]
    frame = pl.DataFrame({"ticker": ["A"] * x.size,
                          "trade_date": [dt.date(2020, 1, 1 + i) for i in range(x.size)]})
    seqs = Sequences(frame=frame, X=x[:, None], offsets=np.array([0, x.size]), tickers=["A"],
                     dropped_tickers=[])  # fmt: skip
    dec = decode(params, seqs)
    filtered, smoothed, ll, path = _reference(x, start, trans)
    np.testing.assert_allclose(dec.filtered_prob, filtered, atol=1e-12)
    np.testing.assert_allclose(dec.frame["hmm_state_prob_max"].to_numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(dec.frame["hmm_state_entropy"].to_numpy(), 0.0, atol=1e-6)
    assert dec.loglik == pytest.approx(ll, rel=1e-12)
    assert dec.frame["hmm_state"].to_list() == path.tolist() == [1] * x.size


def test_transition_code_is_prev_times_100_plus_current():
    # two sequences: 0 1 1 12 | 12 3
    cols = state_change_columns(np.array([0, 1, 1, 12, 12, 3]), np.array([0, 4, 6]))
    assert cols["hmm_transition_code"].to_list() == [None, 1, 101, 112, None, 1203]
    assert cols["hmm_state_prev"].to_list() == [None, 0, 1, 1, None, 12]
    assert cols["hmm_state_changed"].to_list() == [False, True, False, True, False, True]
    assert cols["hmm_state_run_length"].to_list() == [1, 1, 2, 1, 1, 1]
    assert cols["bs_hmm_state_change"].to_list() == [0, 0, 1, 0, 0, 0]


def test_decoded_transition_code_matches_the_viterbi_states(decoded):
    dec, _ = decoded
    s = dec.frame["hmm_state"].to_list()
    want = [None, *[100 * a + b for a, b in zip(s[:4], s[1:5], strict=True)],
            None, *[100 * a + b for a, b in zip(s[5:7], s[6:8], strict=True)]]  # fmt: skip
    assert dec.frame["hmm_transition_code"].to_list() == want


# --------------------------------------------------------------------------- AIC / BIC


@pytest.mark.parametrize(
    "cov, n_params",
    # K=2, D=3: start 1 + transitions 2 + means 6 + covariances (diag 6, full 12, tied 6,
    # spherical 2)
    [("diag", 15), ("full", 21), ("tied", 15), ("spherical", 11)],
)
def test_information_criteria_exact_values(cov, n_params):
    params = HmmParams(np.full(2, 0.5), np.full((2, 2), 0.5), np.zeros((2, 3)),
                       np.tile(np.eye(3), (2, 1, 1)), cov)  # fmt: skip
    ic = information_criteria(-100.0, 50, params)
    assert ic["n_parameters"] == n_params and ic["ic_rows"] == 50
    assert ic["aic"] == pytest.approx(2 * n_params + 200.0, rel=1e-15)
    assert ic["bic"] == pytest.approx(n_params * 3.912023005428146 + 200.0, rel=1e-15)
    # diag by hand: AIC 230, BIC 15·ln 50 + 200 = 258.680345...
    if cov == "diag":
        assert ic["aic"] == 230.0 and ic["bic"] == pytest.approx(258.68034508142219, abs=1e-9)


# --------------------------------------------------------------------------- stationary π


def test_stationary_distribution_two_states_by_hand():
    # π0·0.1 = π1·0.2 → π = (2/3, 1/3)
    np.testing.assert_allclose(stationary_distribution(np.array([[0.9, 0.1], [0.2, 0.8]])),
                               [2 / 3, 1 / 3], atol=1e-12)  # fmt: skip


def test_stationary_distribution_matches_the_left_eigenvector():
    a = np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5]])
    w, v = np.linalg.eig(a.T)
    pi = np.real(v[:, np.argmin(np.abs(w - 1))])
    pi /= pi.sum()
    got = stationary_distribution(a)
    np.testing.assert_allclose(got, pi, atol=1e-12)
    np.testing.assert_allclose(got @ a, got, atol=1e-12)
    params = HmmParams(np.full(3, 1 / 3), a, np.zeros((3, 1)), np.ones((3, 1, 1)))
    freq = state_frequency(np.array([0, 0, 1, 2]), params)
    np.testing.assert_allclose(freq["stationary_share_fitted"].to_numpy(), pi, atol=1e-12)
    assert freq["share_of_rows"].to_list() == [0.5, 0.25, 0.25]


# --------------------------------------------------------------------------- forward validation


def test_forward_validation_median_p10_p90_by_hand():
    # state 0: -2 -1 0 1 7 → mean 1, median 0, pop std √10, p10 -1.6, p90 4.6, hit 2/5
    # state 1: 1 inf null 3 → finite 1, 3 → n 2, mean = median 2, p10 1.2, p90 2.8, hit 1
    frame = pl.DataFrame({
        "s": [0, 0, 0, 0, 0, 1, 1, 1, 1],
        "fwd_ret_10": [-2.0, -1.0, 0.0, 1.0, 7.0, 1.0, float("inf"), None, 3.0],
    })  # fmt: skip
    out = forward_validation(frame, "s", ("fwd_ret_10",))
    row0, row1 = out.row(0, named=True), out.row(1, named=True)
    assert row0["fwd_ret_10_n"] == 5 and row1["fwd_ret_10_n"] == 2
    assert row0["fwd_ret_10_mean"] == pytest.approx(1.0)
    assert row0["fwd_ret_10_median"] == pytest.approx(0.0)
    assert row0["fwd_ret_10_std"] == pytest.approx(math.sqrt(10.0))
    assert row0["fwd_ret_10_p10"] == pytest.approx(-1.6)
    assert row0["fwd_ret_10_p90"] == pytest.approx(4.6)
    assert row0["fwd_ret_10_hit_rate"] == pytest.approx(0.4)
    assert row1["fwd_ret_10_mean"] == pytest.approx(2.0)
    assert row1["fwd_ret_10_median"] == pytest.approx(2.0)
    assert row1["fwd_ret_10_p10"] == pytest.approx(1.2)
    assert row1["fwd_ret_10_p90"] == pytest.approx(2.8)
    assert row1["fwd_ret_10_hit_rate"] == pytest.approx(1.0)
    # the same figures as numpy's linear quantiles
    v = np.array([-2.0, -1.0, 0.0, 1.0, 7.0])
    assert row0["fwd_ret_10_p10"] == pytest.approx(np.quantile(v, 0.1))
    assert row0["fwd_ret_10_p90"] == pytest.approx(np.quantile(v, 0.9))


def test_dwell_median_p10_p90_by_hand():
    # one sequence; complete runs of state 1 have lengths 1 2 3 4 10 → mean 4, median 3,
    # p10 1.4, p90 7.6, max 10; state 0: four complete runs of 1, two censored runs of 1
    states = [0]
    for n in (1, 2, 3, 4, 10):
        states += [1] * n + [0]
    k = 2
    params = HmmParams(np.full(k, 0.5), np.array([[0.5, 0.5], [0.2, 0.8]]), np.zeros((k, 1)),
                       np.ones((k, 1, 1)))  # fmt: skip
    out = dwell_stats(np.array(states), np.array([0, len(states)]), params)
    one = out.row(1, named=True)
    assert one["dwell_count"] == 5
    assert one["dwell_mean"] == pytest.approx(4.0)
    assert one["dwell_median"] == pytest.approx(3.0)
    assert one["dwell_p10"] == pytest.approx(1.4)
    assert one["dwell_p90"] == pytest.approx(7.6)
    assert one["max_dwell"] == 10
    assert one["dwell_median_all_runs"] == pytest.approx(3.0)
    assert one["dwell_p10_all_runs"] == pytest.approx(1.4)
    assert one["dwell_p90_all_runs"] == pytest.approx(7.6)
    assert one["expected_dwell_fitted"] == pytest.approx(5.0)  # 1 / (1 − 0.8)
    zero = out.row(0, named=True)
    assert (zero["dwell_count"], zero["censored_run_count"]) == (4, 2)
    assert zero["expected_dwell_fitted"] == pytest.approx(2.0)


# --------------------------------------------------------------------------- robustness


def _params_k(k: int, transmat: np.ndarray | None = None) -> HmmParams:
    a = np.full((k, k), 1 / k) if transmat is None else transmat
    return HmmParams(np.full(k, 1 / k), a, np.zeros((k, 1)), np.ones((k, 1, 1)))


def _summary(states: list[int], k: int = 2, transmat=None, profile=None, **kw):
    frame = pl.DataFrame({"hmm_state": pl.Series(states, dtype=pl.Int16)})
    diag = hmm_diagnostics(frame, np.array([0, len(states)]), _params_k(k, transmat))
    return robustness_summary(diag, profile, kw.get("train_loglik", -50.0), 100,
                              kw.get("test_loglik"), kw.get("test_rows", 0))  # fmt: skip


def test_robustness_figures_by_hand():
    # 0 0 1 1 0: shares 3/5, 2/5 → effective 1/(0.36 + 0.16) = 1/0.52; a_00 = a_11 = 1/2
    a = np.array([[0.9, 0.1], [0.4, 0.6]])
    profile = pl.DataFrame({"hmm_state": [0, 1], "fwd_ret_10_mean": [0.01, -0.003]})
    r = _summary([0, 0, 1, 1, 0], transmat=a, profile=profile, test_loglik=-30.0, test_rows=60)
    assert r["largest_state_share"] == pytest.approx(0.6)
    assert r["effective_state_count"] == pytest.approx(1 / 0.52)
    assert r["avg_self_transition_prob"] == pytest.approx(0.5)
    assert r["avg_self_transition_prob_fitted"] == pytest.approx(0.75)
    assert r["train_loglik_per_obs"] == pytest.approx(-0.5)
    assert r["test_loglik_per_obs"] == pytest.approx(-0.5)
    assert r["forward_separation_score"] == pytest.approx(0.013)
    assert "state_persistence_ok" in r["notes"] and "state_concentration_ok" in r["notes"]


def test_effective_state_count_is_inverse_sum_of_squared_shares():
    # 0×4, 1×2, 2×2 (state 3 never occurs): 1/(1/4 + 1/16 + 1/16) = 8/3
    r = _summary([0, 0, 0, 0, 1, 1, 2, 2], k=4)
    assert r["effective_state_count"] == pytest.approx(8 / 3)
    assert r["largest_state_share"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "states, avg, note",
    [
        ([0, 0, 1, 1, 0], 0.5, "state_persistence_ok"),
        # a_00 = 2/5, a_11 = 1/3 → 11/30 = 0.3667, just above 0.35
        ([0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1], None, "state_persistence_ok"),
        # a_00 = 1/3, a_11 = 0 → 1/6
        ([0, 1, 0, 1, 0, 0], 1 / 6, "low_state_persistence"),
    ],
)
def test_persistence_note_threshold_is_0_35(states, avg, note):
    r = _summary(states)
    if avg is not None:
        assert r["avg_self_transition_prob"] == pytest.approx(avg)
    assert 0.0 < r["avg_self_transition_prob"] < 0.95
    assert note in r["notes"]
    assert ("low_state_persistence" in r["notes"]) == (r["avg_self_transition_prob"] < 0.35)


def test_concentration_note_threshold_is_0_70():
    assert "high_state_concentration" in _summary([0] * 8 + [1] * 2)["notes"]  # 0.8
    assert "state_concentration_ok" in _summary([0] * 7 + [1] * 3)["notes"]  # 0.7


def test_label_concentration_by_hand():
    # labels 0 0 0 1 1 -1: shares 1/2, 1/3, 1/6 (noise included) → 1/(14/36) = 36/14
    c = label_concentration(np.array([0, 0, 0, 1, 1, -1]))
    assert c["effective_count"] == pytest.approx(36 / 14)
    assert c["largest_share"] == pytest.approx(0.5)
    assert c["noise_share"] == pytest.approx(1 / 6) and c["detected"] == 2


# --------------------------------------------------------------------------- GMM


def test_gmm_probabilities_entropy_and_ic_match_an_independent_computation():
    from scipy.special import logsumexp
    from scipy.stats import norm

    from mf_pipeline.lib.research.clustering import ClusterConfig, run_clustering

    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(0, 1, (60, 2)), rng.normal(2.5, 0.7, (60, 2))])
    new = rng.normal(1.2, 1.5, (25, 2))
    res = run_clustering(X, "gmm", ClusterConfig(n_clusters=2),
                         predict_sets={"predict": X, "test": new})  # fmt: skip
    m = res.model

    def log_joint(Z: np.ndarray) -> np.ndarray:
        sd = np.sqrt(m.covariances_)  # diag: (K, D) variances
        return np.stack([np.log(m.weights_[c]) + norm.logpdf(Z, m.means_[c], sd[c]).sum(axis=1)
                         for c in range(2)], axis=1)  # fmt: skip

    for name, Z in (("predict", X), ("test", new)):
        lj = log_joint(Z)
        prob = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
        assert prob.max(axis=1).min() < 0.9  # some rows uncertain: entropy is informative
        np.testing.assert_allclose(res.prob_max[name], prob.max(axis=1), atol=2e-6)
        ent = -(prob * np.log(np.maximum(prob, 1e-300))).sum(axis=1)
        np.testing.assert_allclose(res.entropy[name], ent, atol=2e-6)
        assert res.labels[name].tolist() == prob.argmax(axis=1).tolist()
    ll = logsumexp(log_joint(X), axis=1).sum()
    p = 2 * 2 + 2 * 2 + 1  # diag variances, means, weights
    assert res.metrics["aic"] == pytest.approx(2 * p - 2 * ll, rel=1e-9)
    assert res.metrics["bic"] == pytest.approx(p * np.log(120) - 2 * ll, rel=1e-9)


# --------------------------------------------------------------------------- prepare()


def test_prepare_fits_the_scaler_on_train_rows_only(isolated, tmp_path):
    from mf_pipeline_tests.unit.test_research_honesty import FEATURES, _prep

    _, prep = _prep(isolated, tmp_path)
    raw = pl.read_parquet(tmp_path / "dataset.parquet")
    train = raw.filter(pl.col("trade_date") <= dt.date(2020, 3, 31))
    want_c = np.array([train[f].mean() for f in FEATURES])
    want_s = np.array([train[f].std(ddof=0) for f in FEATURES])
    # a scaler fitted on every row would be far off: the two halves differ in level
    all_c = np.array([raw[f].mean() for f in FEATURES])
    assert np.abs(all_c - want_c).max() > 0.1
    np.testing.assert_allclose(prep.scaler.center, want_c, rtol=1e-12)
    np.testing.assert_allclose(prep.scaler.spread, want_s, rtol=1e-12)
    assert prep.scaler.fit_rows_before == train.height
    # the test rows are scaled with the train statistics
    assert prep.test is not None
    got = prep.test.frame.select(FEATURES).to_numpy()
    np.testing.assert_allclose(prep.test.X, np.clip((got - want_c) / want_s, -8, 8), rtol=1e-12)
