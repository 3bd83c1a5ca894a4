"""Numba kernels for HMM inference over many sequences in one call (float64, log space).

Inputs are a (n, K) matrix of log emission densities, log start probabilities, a log
transition matrix and int64 ``offsets`` (sequence ``s`` owns rows ``offsets[s]:offsets[s+1]``).
Outputs are preallocated by the caller. Everything runs in log space with a per-row
normalisation, so there is neither underflow on long sequences nor a problem with exact
zeros in the transition matrix (they are ``-inf``).

The forward filter at row t reads rows <= t of its own sequence only; that is what makes
``hmm_state_filtered`` causal, and the test-suite checks it by truncation.
"""

import numpy as np

from mf_pipeline.lib.kernels.jit import njit
from mf_pipeline.lib.kernels.recursive import check_offsets


@njit(cache=True)
def _logsumexp(v: np.ndarray) -> float:
    m = -np.inf
    for i in range(v.shape[0]):
        if v[i] > m:
            m = v[i]
    if m == -np.inf:
        return -np.inf
    s = 0.0
    for i in range(v.shape[0]):
        s += np.exp(v[i] - m)
    return m + np.log(s)


@njit(cache=True)
def forward_filter_kernel(
    log_b: np.ndarray,
    log_start: np.ndarray,
    log_trans: np.ndarray,
    offsets: np.ndarray,
    out_log_alpha: np.ndarray,
    out_loglik: np.ndarray,
) -> None:
    """Normalised log forward variables: ``out_log_alpha[t] = log P(z_t | x_{<=t})``.

    ``out_loglik[s]`` = log P(x of sequence s), the sum of the per-row normalisers.
    """
    n, k = log_b.shape
    check_offsets(offsets, n)
    tmp = np.empty(k)
    col = np.empty(k)
    for s in range(offsets.shape[0] - 1):
        a, b = offsets[s], offsets[s + 1]
        ll = 0.0
        for t in range(a, b):
            if t == a:
                for j in range(k):
                    tmp[j] = log_start[j] + log_b[t, j]
            else:
                for j in range(k):
                    for i in range(k):
                        col[i] = out_log_alpha[t - 1, i] + log_trans[i, j]
                    tmp[j] = _logsumexp(col) + log_b[t, j]
            c = _logsumexp(tmp)
            ll += c
            for j in range(k):
                out_log_alpha[t, j] = tmp[j] - c
        out_loglik[s] = ll


@njit(cache=True)
def smoothed_posterior_kernel(
    log_b: np.ndarray,
    log_trans: np.ndarray,
    offsets: np.ndarray,
    log_alpha: np.ndarray,
    out_post: np.ndarray,
) -> None:
    """Forward–backward posteriors P(z_t | whole sequence) from the filter's ``log_alpha``.

    In-sample only (reads future rows); used for ``hmm_state_prob_max``/``entropy``.
    """
    n, k = log_b.shape
    check_offsets(offsets, n)
    beta = np.empty(k)
    nxt = np.empty(k)
    col = np.empty(k)
    row = np.empty(k)
    for s in range(offsets.shape[0] - 1):
        a, b = offsets[s], offsets[s + 1]
        if b == a:
            continue
        for j in range(k):
            beta[j] = 0.0
        for t in range(b - 1, a - 1, -1):
            if t < b - 1:
                for i in range(k):
                    for j in range(k):
                        col[j] = log_trans[i, j] + log_b[t + 1, j] + nxt[j]
                    beta[i] = _logsumexp(col)
                m = _logsumexp(beta)
                if m != -np.inf:
                    for i in range(k):
                        beta[i] -= m
            for j in range(k):
                row[j] = log_alpha[t, j] + beta[j]
            c = _logsumexp(row)
            for j in range(k):
                out_post[t, j] = np.exp(row[j] - c)
                nxt[j] = beta[j]


@njit(cache=True)
def viterbi_kernel(
    log_b: np.ndarray,
    log_start: np.ndarray,
    log_trans: np.ndarray,
    offsets: np.ndarray,
    back: np.ndarray,
    out_state: np.ndarray,
    out_logprob: np.ndarray,
) -> None:
    """Most likely state path per sequence; ties go to the lowest state id.

    ``back`` is an (n, K) int32 scratch array for the back-pointers.
    """
    n, k = log_b.shape
    check_offsets(offsets, n)
    delta = np.empty(k)
    new = np.empty(k)
    for s in range(offsets.shape[0] - 1):
        a, b = offsets[s], offsets[s + 1]
        if b == a:
            out_logprob[s] = 0.0
            continue
        for j in range(k):
            delta[j] = log_start[j] + log_b[a, j]
            back[a, j] = 0
        for t in range(a + 1, b):
            for j in range(k):
                best = -np.inf
                arg = 0
                for i in range(k):
                    v = delta[i] + log_trans[i, j]
                    if v > best:
                        best = v
                        arg = i
                new[j] = best + log_b[t, j]
                back[t, j] = arg
            for j in range(k):
                delta[j] = new[j]
        best = -np.inf
        arg = 0
        for j in range(k):
            if delta[j] > best:
                best = delta[j]
                arg = j
        out_logprob[s] = best
        out_state[b - 1] = arg
        for t in range(b - 1, a, -1):
            out_state[t - 1] = back[t, out_state[t]]
