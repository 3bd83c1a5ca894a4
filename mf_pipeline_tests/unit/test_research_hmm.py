"""HMM: kernels vs hmmlearn, causality of the filter, parameter recovery, determinism,
diagnostics and information criteria."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.research.hmm import (
    HmmConfig,
    HmmParams,
    build_sequences,
    decode,
    fit_hmm,
    forward_filter,
    information_criteria,
    log_emissions,
    viterbi,
)
from mf_pipeline.lib.research.hmm_diagnostics import dwell_stats, hmm_diagnostics, runs
from mf_pipeline.lib.research.recovery import match_states

TRUE_TRANS = np.array([[0.90, 0.07, 0.03], [0.05, 0.90, 0.05], [0.04, 0.06, 0.90]])


def _true_model(seed: int = 3):
    from hmmlearn.hmm import GaussianHMM

    m = GaussianHMM(3, "diag", init_params="", random_state=seed)
    m.startprob_ = np.array([0.5, 0.3, 0.2])
    m.transmat_ = TRUE_TRANS
    m.means_ = np.array([[0.0, 0.0, 0.0], [3.0, -3.0, 0.0], [-3.0, 0.0, 3.0]])
    m.covars_ = np.full((3, 3), 1.0)
    return m


@pytest.fixture(scope="module")
def sampled():
    """Ten sequences of 1,000 rows from the known 3-state model."""
    m = _true_model()
    xs, zs = [], []
    for i in range(10):
        x, z = m.sample(1000, random_state=100 + i)
        xs.append(x)
        zs.append(z)
    offsets = np.arange(0, 10_001, 1000)
    return m, np.vstack(xs), np.concatenate(zs), offsets


def test_emissions_filter_and_viterbi_match_hmmlearn(sampled):
    from hmmlearn import _hmmc

    m, X, _, offsets = sampled
    X, offsets = X[:3000], offsets[:4]
    lengths = np.diff(offsets)
    p = HmmParams.from_hmmlearn(m)
    lb = log_emissions(p, X)
    np.testing.assert_allclose(lb, m._compute_log_likelihood(X), atol=1e-10)
    filt, ll = forward_filter(p, X, offsets)
    assert ll.sum() == pytest.approx(m.score(X, lengths), rel=1e-12)
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        _, fwd = _hmmc.forward_log(m.startprob_, m.transmat_, lb[a:b])
        ref = np.exp(fwd - np.logaddexp.reduce(fwd, axis=1, keepdims=True))
        np.testing.assert_allclose(filt[a:b], ref, atol=1e-10)
    assert np.array_equal(viterbi(p, X, offsets), m.predict(X, lengths))


@pytest.mark.parametrize("cov", ["full", "tied", "spherical"])
def test_emissions_match_hmmlearn_for_every_covariance_type(cov):
    from hmmlearn.hmm import GaussianHMM

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    X[100:200] += 2
    m = GaussianHMM(2, cov, n_iter=3, random_state=0).fit(X)
    np.testing.assert_allclose(
        log_emissions(HmmParams.from_hmmlearn(m), X), m._compute_log_likelihood(X), atol=1e-9
    )
    want = sum(m._get_n_fit_scalars_per_param().values())
    assert HmmParams.from_hmmlearn(m).n_free_parameters() == want


def test_filtered_state_is_causal(sampled):
    m, X, _, offsets = sampled
    p = HmmParams.from_hmmlearn(m)
    full, _ = forward_filter(p, X[:2000], offsets[:3])
    # Cut both sequences at different points: rows kept must not change at all.
    cut = [(0, 400), (1000, 1730)]
    rows = np.concatenate([np.arange(a, b) for a, b in cut])
    short_off = np.array([0, 400, 1130])
    part, _ = forward_filter(p, X[rows], short_off)
    assert np.array_equal(part, full[rows])
    assert np.array_equal(part.argmax(axis=1), full[rows].argmax(axis=1))


def _panel_frame(X: np.ndarray, offsets: np.ndarray, truth: np.ndarray) -> pl.DataFrame:
    lengths = np.diff(offsets)
    tickers = np.repeat([f"T{i:02d}.US" for i in range(lengths.size)], lengths)
    pos = np.arange(X.shape[0]) - np.repeat(offsets[:-1], lengths)
    start = date(2000, 1, 3)
    return pl.DataFrame(
        {
            "ticker": tickers,
            "trade_date": [start + timedelta(days=int(d)) for d in pos],
            "flow_state_code": (truth + 1) % 3,
            "regime": truth,
        }
    )


def test_fit_recovers_the_transition_matrix_and_is_deterministic(sampled):
    _, X, truth, offsets = sampled
    cfg = HmmConfig(n_components=3, fit_max_rows=6000, init_sample_rows=3000, random_state=7)
    fit = fit_hmm(X, offsets, cfg)
    again = fit_hmm(X, offsets, cfg)
    assert np.array_equal(fit.params.transmat, again.params.transmat)
    assert fit.loglik == again.loglik and fit.em_rows < fit.fit_rows
    seqs = build_sequences(_panel_frame(X, offsets, truth), X, min_sequence_length=10)
    dec = decode(fit.params, seqs)
    mapping = match_states(dec.frame["hmm_state"].to_numpy(), truth)
    perm = np.array([k for k, _ in sorted(mapping.items(), key=lambda kv: kv[1])])
    recovered = fit.params.transmat[np.ix_(perm, perm)]
    assert np.abs(recovered - TRUE_TRANS).max() < 0.05
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, dec.frame["hmm_state_filtered"].to_numpy()) > 0.8
    meta = fit.meta(cfg)
    assert meta["em_sampled"]
    ic = information_criteria(fit.loglik, fit.fit_rows, fit.params)
    p = 2 + 6 + 9 + 9  # start, transitions, means, diagonal variances (K=3, D=3)
    assert ic["n_parameters"] == p
    # exact AIC/BIC from hmmlearn's own forward log-likelihood over ALL fit rows
    ll = fit.model.score(X, np.diff(offsets))
    assert fit.loglik == pytest.approx(ll, rel=1e-9)
    assert meta["aic"] == pytest.approx(2 * p - 2 * ll, rel=1e-9)
    assert meta["bic"] == pytest.approx(p * np.log(X.shape[0]) - 2 * ll, rel=1e-9)
    assert meta["ic_rows"] == X.shape[0] == fit.fit_rows


def test_decode_columns_and_diagnostics(sampled):
    m, X, truth, offsets = sampled
    X, truth, offsets = X[:3000], truth[:3000], offsets[:4]
    # Shuffle the frame and X together: build_sequences must sort them back.
    frame = _panel_frame(X, offsets, truth)
    perm = np.random.default_rng(0).permutation(3000)
    seqs = build_sequences(frame[perm], X[perm], min_sequence_length=10)
    assert np.array_equal(seqs.X, X)
    p = HmmParams.from_hmmlearn(m)
    dec = decode(p, seqs).frame
    for col in ("hmm_state", "hmm_state_filtered", "hmm_prob_filtered_max", "hmm_state_entropy"):
        assert dec[col].null_count() == 0
    first = dec.group_by("ticker", maintain_order=True).head(1)
    assert first["hmm_state_prev"].null_count() == 3 and not first["hmm_state_changed"].any()
    s = dec["hmm_state"].to_numpy()
    ch = dec["hmm_state_changed"].to_numpy()
    assert np.array_equal(ch[1:1000], s[1:1000] != s[:999])
    rl = dec["hmm_state_run_length"].to_numpy()
    assert (rl[ch] == 1).all() and (dec["bs_hmm_state_change"].to_numpy() == rl - 1).all()
    diag = hmm_diagnostics(dec, seqs.offsets, p)
    tm = diag["transition_matrix"]
    assert tm.height == 9 and tm["transition_count"].sum() == 3000 - 3
    assert set(diag) >= {"dwell_stats", "state_frequency", "hmm_vs_flow_state_crosstab"}
    assert diag["state_frequency"]["row_count"].sum() == 3000


def test_dwell_excludes_censored_runs():
    states = np.array([0, 0, 1, 1, 1, 0, 2, 2, 2, 2])
    offsets = np.array([0, 6, 10])
    r = runs(states, offsets)
    assert r["length"].to_list() == [2, 3, 1, 4]
    assert r["censored"].to_list() == [True, False, True, True]
    p = HmmParams(np.full(3, 1 / 3), np.full((3, 3), 1 / 3), np.zeros((3, 1)), np.ones((3, 1, 1)))
    d = dwell_stats(states, offsets, p)
    assert d["dwell_count"].to_list() == [0, 1, 0]
    assert d["censored_run_count"].to_list() == [2, 0, 1]
    assert d["dwell_mean"][1] == 3.0 and d["expected_dwell_fitted"][0] == pytest.approx(1.5)
