"""Gaussian HMM regimes (research.md §5) on the SCALED features, one sequence per ticker.

Fit, two declared procedures (``HmmConfig.fit_procedure``):

* ``fast`` (default): hmmlearn ``GaussianHMM`` Baum–Welch, but (i) on a bounded random sample
  of whole sequences, (ii) started from a KMeans on a row sample (means, covariances, and start
  and transition counts of the KMeans label path) instead of hmmlearn's own full-data k-means,
  and (iii) with a per-row convergence tolerance (hmmlearn's ``tol`` is on the total
  log-likelihood, which at a million rows means ~200 iterations of noise-level gains).
  Optional full-data "polish" iterations follow the sample fit.
* ``spec``: the old tool's call exactly (research.md §5.3): ``GaussianHMM(n_components,
  covariance_type, n_iter, tol, random_state)`` with hmmlearn's own initialisation, fitted on
  every fit row, ``tol`` absolute on the total log-likelihood.

Decoding uses our Numba kernels on all sequences at once: Viterbi ``hmm_state`` (in-sample
description), smoothed posteriors for ``hmm_state_prob_max``/``hmm_state_entropy``, and the
causal forward filter for ``hmm_state_filtered``/``hmm_prob_filtered_max`` — the series that
trading code must use, since it reads bars <= t only.
"""

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.kernels.hmm import (
    forward_filter_kernel,
    smoothed_posterior_kernel,
    viterbi_kernel,
)
from mf_pipeline.lib.kernels.offsets import ticker_offsets

COVARIANCE_TYPES = ("diag", "full", "tied", "spherical")
FIT_PROCEDURES = ("fast", "spec")
SPEC_TOL = 1e-3
"""The spec's absolute tolerance (``research_hmm.hmm.tol`` default)."""
ROW_KEY_COLUMNS: tuple[str, ...] = (
    "ticker",
    "trade_date",
    "trade_dt",
    "flow_state_code",
    "flow_state_label",
    "cluster_id",
    "close",
    "fwd_ret_5",
    "fwd_ret_10",
    "fwd_ret_20",
    "fwd_abs_ret_10",
    "fwd_vol_proxy_10",
)
_CHUNK = 1 << 17


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class HmmParams:
    """Model parameters as plain arrays; ``covars`` is always (K, D, D) full."""

    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray
    covars: np.ndarray
    covariance_type: str = "diag"

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])

    @classmethod
    def from_hmmlearn(cls, model: Any) -> "HmmParams":
        """Copy a fitted ``GaussianHMM``; covariances expanded from its internal storage
        (hmmlearn 0.3.3's ``covars_`` property mis-expands the spherical case)."""
        means = np.array(model.means_, dtype=np.float64)
        k, d = means.shape
        raw = np.asarray(model._covars_, dtype=np.float64)
        kind = model.covariance_type
        if kind == "full":
            covars = raw.copy()
        elif kind == "tied":
            covars = np.tile(raw, (k, 1, 1))
        else:
            var = raw if kind == "diag" else np.repeat(raw.reshape(k, -1)[:, :1], d, axis=1)
            covars = var[:, :, None] * np.eye(d)[None, :, :]
        return cls(
            startprob=np.array(model.startprob_, dtype=np.float64),
            transmat=np.array(model.transmat_, dtype=np.float64),
            means=means,
            covars=covars,
            covariance_type=kind,
        )

    def n_free_parameters(self) -> int:
        """Free scalars: start (K-1), transitions K(K-1), means KD, covariances by type."""
        k, d = self.n_components, self.n_features
        cov = {"diag": k * d, "full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2}.get(
            self.covariance_type, k
        )
        return (k - 1) + k * (k - 1) + k * d + cov

    def payload(self) -> dict[str, Any]:
        """JSON-ready matrices: diagonal variances for diag/spherical (small), plus the full
        ``covars`` for full/tied, so :meth:`from_payload` rebuilds the model exactly."""
        diag = np.diagonal(self.covars, axis1=1, axis2=2)
        out = {
            "covariance_type": self.covariance_type,
            "startprob": self.startprob.tolist(),
            "transmat": self.transmat.tolist(),
            "means": self.means.tolist(),
            "variances": diag.tolist(),
        }
        if self.covariance_type in ("full", "tied"):
            out["covars"] = self.covars.tolist()
        return out

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "HmmParams":
        """The parameters :meth:`payload` wrote (JSON floats round-trip exactly), e.g. the
        ``params`` of ``hmm_model_meta.json``; a locked model decodes new bars with them."""
        kind = str(payload["covariance_type"])
        if kind in ("full", "tied"):
            if "covars" not in payload:
                raise ValueError(f"{kind} covariances were not saved by this run (only their "
                                 "diagonal): rerun the HMM model to lock it")
            covars = np.array(payload["covars"], dtype=np.float64)
        else:
            var = np.array(payload["variances"], dtype=np.float64)
            covars = var[:, :, None] * np.eye(var.shape[1])[None, :, :]
        return cls(startprob=np.array(payload["startprob"], dtype=np.float64),
                   transmat=np.array(payload["transmat"], dtype=np.float64),
                   means=np.array(payload["means"], dtype=np.float64), covars=covars,
                   covariance_type=kind)  # fmt: skip


def information_criteria(loglik: float, n_rows: int, params: HmmParams) -> dict[str, Any]:
    """AIC = 2p − 2LL and BIC = p·ln(n) − 2LL, with LL over the ``n_rows`` it was computed on."""
    p = params.n_free_parameters()
    return {
        "n_parameters": p,
        "aic": float(2 * p - 2 * loglik),
        "bic": float(p * np.log(max(n_rows, 1)) - 2 * loglik),
        "ic_rows": int(n_rows),
    }


def log_emissions(params: HmmParams, X: np.ndarray) -> np.ndarray:
    """(n, K) Gaussian log densities, computed in row chunks to bound temporaries."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    n, d = X.shape
    k = params.n_components
    out = np.empty((n, k), dtype=np.float64)
    const = d * np.log(2.0 * np.pi)
    if params.covariance_type in ("diag", "spherical"):
        var = np.diagonal(params.covars, axis1=1, axis2=2)  # (K, D)
        prec = 1.0 / var
        base = const + np.log(var).sum(axis=1) + (params.means**2 * prec).sum(axis=1)
        lin = (params.means * prec).T  # (D, K)
        for lo in range(0, n, _CHUNK):
            xc = X[lo : lo + _CHUNK]
            q = (xc * xc) @ prec.T - 2.0 * (xc @ lin) + base
            out[lo : lo + _CHUNK] = -0.5 * q
        return out
    chol = np.linalg.cholesky(params.covars)  # (K, D, D) lower
    for c in range(k):
        inv_l = np.linalg.inv(chol[c])
        logdet = 2.0 * np.log(np.diagonal(chol[c])).sum()
        for lo in range(0, n, _CHUNK):
            z = (X[lo : lo + _CHUNK] - params.means[c]) @ inv_l.T
            out[lo : lo + _CHUNK, c] = -0.5 * (const + logdet + (z * z).sum(axis=1))
    return out


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(p, dtype=np.float64))


def _offsets(offsets: np.ndarray, n: int) -> np.ndarray:
    off = np.ascontiguousarray(offsets, dtype=np.int64)
    if off[0] != 0 or off[-1] != n:
        raise ValueError("offsets must start at 0 and end at the number of rows")
    return off


def forward_filter(
    params: HmmParams, X: np.ndarray, offsets: np.ndarray, log_b: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Causal filtered probabilities (n, K) and log-likelihood per sequence."""
    lb = log_emissions(params, X) if log_b is None else log_b
    off = _offsets(offsets, lb.shape[0])
    log_alpha = np.empty_like(lb)
    ll = np.empty(off.shape[0] - 1)
    forward_filter_kernel(lb, _log(params.startprob), _log(params.transmat), off, log_alpha, ll)
    return np.exp(log_alpha), ll


def total_loglik(params: HmmParams, X: np.ndarray, offsets: np.ndarray) -> float:
    """Sum of per-sequence log-likelihoods (forward algorithm)."""
    return float(forward_filter(params, X, offsets)[1].sum())


def viterbi(
    params: HmmParams, X: np.ndarray, offsets: np.ndarray, log_b: np.ndarray | None = None
) -> np.ndarray:
    """Most likely path per sequence (int16), ties to the lowest state id."""
    lb = log_emissions(params, X) if log_b is None else log_b
    off = _offsets(offsets, lb.shape[0])
    back = np.empty(lb.shape, dtype=np.int32)
    states = np.empty(lb.shape[0], dtype=np.int64)
    logprob = np.empty(off.shape[0] - 1)
    viterbi_kernel(lb, _log(params.startprob), _log(params.transmat), off, back, states, logprob)
    return states.astype(np.int16)


# --------------------------------------------------------------------------- sequences


@dataclass(frozen=True)
class Sequences:
    """Rows sorted by (ticker, trade_date), their matrix, and per-ticker offsets."""

    frame: pl.DataFrame
    X: np.ndarray
    offsets: np.ndarray
    tickers: list[str]
    dropped_tickers: list[str]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1])


def build_sequences(
    frame: pl.DataFrame,
    X: np.ndarray,
    min_sequence_length: int = 100,
    keep_columns: Sequence[str] | None = None,
) -> Sequences:
    """One sequence per ticker from a processed frame and its aligned scaled matrix ``X``.

    Tickers with fewer than ``min_sequence_length`` rows are dropped and listed (in full).
    Consecutive rows of a ticker form one sequence even across date gaps, as in the old tool.
    ``keep_columns`` (default: the spec's row keys present) are kept plus ``row_id``.
    """
    if min_sequence_length < 1:
        raise ValueError("min_sequence_length must be >= 1")
    if X.shape[0] != frame.height:
        raise ValueError("X and frame must have the same number of rows")
    for need in ("ticker", "trade_date"):
        if need not in frame.columns:
            raise ValueError(f"HMM sequences need a {need!r} column")
    wanted = keep_columns or ROW_KEY_COLUMNS
    cols = ["ticker", "trade_date"]
    cols += [c for c in wanted if c in frame.columns and c not in cols]
    order_df = frame.select(cols).with_row_index("__src").sort("ticker", "trade_date")
    counts = order_df.group_by("ticker", maintain_order=True).len()
    short = counts.filter(pl.col("len") < min_sequence_length)["ticker"].to_list()
    if short:
        order_df = order_df.filter(~pl.col("ticker").is_in(short))
    if order_df.height == 0:
        raise ValueError(f"no ticker has >= {min_sequence_length} rows")
    src = order_df["__src"].to_numpy()
    Xs = np.ascontiguousarray(X[src], dtype=np.float64)
    out = order_df.drop("__src").with_row_index("row_id")
    offsets = ticker_offsets(out["ticker"])
    tickers = out["ticker"].gather(offsets[:-1]).to_list()
    return Sequences(frame=out, X=Xs, offsets=offsets, tickers=tickers, dropped_tickers=short)


# --------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class HmmConfig:
    """Every knob of an HMM fit.

    ``fit_procedure``: ``fast`` or ``spec`` (module docstring). ``tol``: absolute hmmlearn
    tolerance on the gain of the TOTAL log-likelihood per EM iteration; when set it is used by
    either procedure; None: ``spec`` uses ``SPEC_TOL`` and ``fast`` uses ``tol_per_row`` × the
    rows the EM runs on. ``fit_max_rows``: bound on the rows of the random whole-sequence
    sample the fast EM runs on (None = all). ``init_*`` and ``polish_iter`` (extra EM
    iterations on all rows after a sampled fit) are fast-only; ``spec`` ignores them.
    """

    n_components: int = 5
    covariance_type: str = "diag"
    n_iter: int = 200
    fit_procedure: str = "fast"
    tol: float | None = None
    tol_per_row: float = 1e-5
    random_state: int = 42
    min_covar: float = 1e-3
    fit_max_rows: int | None = 300_000
    init_sample_rows: int = 50_000
    init_kmeans_n_init: int = 3
    polish_iter: int = 0


@dataclass
class HmmFit:
    """Fitted parameters, the hmmlearn model, convergence and likelihood on all fit rows."""

    params: HmmParams
    model: Any
    converged: bool
    n_iter_used: int
    fit_rows: int
    fit_sequences: int
    em_rows: int
    em_sequences: int
    loglik: float
    tol: float
    seconds: dict[str, float]

    @property
    def loglik_per_row(self) -> float:
        return self.loglik / max(1, self.fit_rows)

    def meta(self, config: HmmConfig) -> dict[str, Any]:
        """``hmm_model_meta.json`` fields (plus AIC/BIC and the sampling figures)."""
        return {
            "model_type": "GaussianHMM",
            "n_components": self.params.n_components,
            "covariance_type": self.params.covariance_type,
            "n_iter_requested": config.n_iter,
            "fit_procedure": config.fit_procedure,
            "tol": self.tol,
            # set only when the EM's tol came from it (fast procedure, no absolute tol given)
            "tol_per_row": config.tol_per_row
            if config.tol is None and config.fit_procedure == "fast" else None,
            "random_state": config.random_state,
            "converged": self.converged,
            "n_iter_used": self.n_iter_used,
            "train_loglik": self.loglik,
            "train_loglik_per_obs": self.loglik_per_row,
            "train_rows": self.fit_rows,
            "train_sequences": self.fit_sequences,
            "em_rows": self.em_rows,
            "em_sequences": self.em_sequences,
            "em_sampled": self.em_rows < self.fit_rows,
            "polish_iter": config.polish_iter,
            "seconds": dict(self.seconds),
            **information_criteria(self.loglik, self.fit_rows, self.params),
        }


def sample_sequences(offsets: np.ndarray, max_rows: int | None, random_state: int) -> np.ndarray:
    """Indices (ascending) of a random set of whole sequences holding about ``max_rows`` rows.

    Sequences are drawn in a seeded random order until the bound is reached, so the sample
    keeps temporal adjacency (row sampling would break the Markov structure).
    """
    n_seq = offsets.shape[0] - 1
    if max_rows is None or offsets[-1] <= max_rows:
        return np.arange(n_seq)
    order = np.random.default_rng(random_state).permutation(n_seq)
    rows = np.cumsum(np.diff(offsets)[order])
    take = int(np.searchsorted(rows, max_rows, side="left")) + 1
    return np.sort(order[: min(take, n_seq)])


def _gather_sequences(X: np.ndarray, offsets: np.ndarray, idx: np.ndarray) -> tuple:
    lengths = np.diff(offsets)[idx]
    starts = offsets[:-1][idx]
    rows = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    rows += np.arange(lengths.sum())
    return np.ascontiguousarray(X[rows]), np.concatenate([[0], np.cumsum(lengths)])


def _init_params(X: np.ndarray, offsets: np.ndarray, cfg: HmmConfig) -> dict[str, np.ndarray]:
    """Start values from a KMeans on a row sample; transitions from its label path."""
    from sklearn.cluster import KMeans

    k, d = cfg.n_components, X.shape[1]
    rng = np.random.default_rng(cfg.random_state)
    n = X.shape[0]
    idx = np.sort(rng.choice(n, size=min(n, cfg.init_sample_rows), replace=False))
    km = KMeans(k, n_init=cfg.init_kmeans_n_init, random_state=cfg.random_state).fit(X[idx])
    lab = km.predict(X).astype(np.int64)
    has_prev = np.ones(n, dtype=bool)
    has_prev[offsets[:-1]] = False  # row t has a predecessor in its own sequence
    pair = lab[:-1][has_prev[1:]] * k + lab[1:][has_prev[1:]]
    # add-one smoothing keeps every transition possible for the EM
    trans = np.bincount(pair, minlength=k * k).reshape(k, k) + 1.0
    start = np.bincount(lab[offsets[:-1][np.diff(offsets) > 0]], minlength=k) + 1.0
    onehot = np.zeros((n, k))
    onehot[np.arange(n), lab] = 1.0
    counts = np.maximum(onehot.sum(axis=0), 1.0)[:, None]
    means = (onehot.T @ X) / counts
    var = np.maximum((onehot.T @ (X * X)) / counts - means**2, 0.0) + cfg.min_covar
    if cfg.covariance_type == "diag":
        covars: np.ndarray = var
    elif cfg.covariance_type == "spherical":
        covars = var.mean(axis=1)
    elif cfg.covariance_type == "tied":
        covars = np.cov(X[idx].T, bias=True) + cfg.min_covar * np.eye(d)
    else:
        covars = np.stack(
            [
                np.cov(X[idx][km.labels_ == c].T, bias=True) + cfg.min_covar * np.eye(d)
                if (km.labels_ == c).sum() > d
                else np.diag(var[c])
                for c in range(k)
            ]
        )
    return {
        "startprob": start / start.sum(),
        "transmat": trans / trans.sum(axis=1, keepdims=True),
        "means": means,
        "covars": covars,
    }


def em_tol(config: HmmConfig, em_rows: int) -> float:
    """The absolute tolerance hmmlearn gets for an EM over ``em_rows`` rows (``HmmConfig``)."""
    if config.tol is not None:
        return float(config.tol)
    return SPEC_TOL if config.fit_procedure == "spec" else config.tol_per_row * em_rows


def check_config(config: HmmConfig) -> None:
    """Refuse unknown choices and non-positive tolerances, naming the field."""
    if config.covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {', '.join(COVARIANCE_TYPES)}")
    if config.fit_procedure not in FIT_PROCEDURES:
        raise ValueError(f"fit_procedure must be one of {', '.join(FIT_PROCEDURES)}, "
                         f"got {config.fit_procedure!r}")  # fmt: skip
    if config.tol is not None and not config.tol > 0:
        raise ValueError(f"tol must be > 0, got {config.tol}")


def fit_hmm(X: np.ndarray, offsets: np.ndarray, config: HmmConfig = HmmConfig()) -> HmmFit:
    """Fit a GaussianHMM on ``X`` (rows grouped by ``offsets``); deterministic for a seed.

    The returned log-likelihood is over ALL fit rows, whatever subset the EM ran on.
    """
    from hmmlearn.hmm import GaussianHMM

    check_config(config)
    X = np.ascontiguousarray(X, dtype=np.float64)
    off = _offsets(offsets, X.shape[0])
    spec = config.fit_procedure == "spec"
    t0 = time.perf_counter()
    idx = np.arange(off.shape[0] - 1) if spec else sample_sequences(
        off, config.fit_max_rows, config.random_state)
    Xe, off_e = (X, off) if spec else _gather_sequences(X, off, idx)
    tol = em_tol(config, Xe.shape[0])
    model = GaussianHMM(
        n_components=config.n_components,
        covariance_type=config.covariance_type,
        min_covar=config.min_covar,
        n_iter=config.n_iter,
        tol=tol,
        random_state=config.random_state,
        **({} if spec else {"init_params": "", "params": "stmc"}),
    )
    if not spec:
        model.n_features = X.shape[1]
        for name, value in _init_params(Xe, off_e, config).items():
            setattr(model, f"{name}_", value)
    t1 = time.perf_counter()
    model.fit(Xe, np.diff(off_e))
    n_used = int(model.monitor_.iter)
    converged = bool(model.monitor_.converged)
    t2 = time.perf_counter()
    if not spec and config.polish_iter > 0 and Xe.shape[0] < X.shape[0]:
        model.n_iter = config.polish_iter
        model.tol = em_tol(config, X.shape[0])
        # hmmlearn's EM stops by its monitor, which copied n_iter and tol at construction
        model.monitor_.n_iter, model.monitor_.tol = model.n_iter, model.tol
        model.fit(X, np.diff(off))
        n_used += int(model.monitor_.iter)
        converged = bool(model.monitor_.converged)
    t3 = time.perf_counter()
    params = HmmParams.from_hmmlearn(model)
    ll = total_loglik(params, X, off)
    t4 = time.perf_counter()
    return HmmFit(
        params=params,
        model=model,
        converged=converged,
        n_iter_used=n_used,
        fit_rows=int(X.shape[0]),
        fit_sequences=int(off.shape[0] - 1),
        em_rows=int(Xe.shape[0]),
        em_sequences=int(idx.size),
        loglik=ll,
        tol=tol,
        seconds={
            "init": t1 - t0,
            "em": t2 - t1,
            "polish": t3 - t2,
            "loglik": t4 - t3,
            "total": t4 - t0,
        },
    )


def config_payload(config: HmmConfig) -> dict[str, Any]:
    return asdict(config)


# --------------------------------------------------------------------------- decoding


def state_change_columns(
    states: np.ndarray, offsets: np.ndarray, prefix: str = "hmm"
) -> dict[str, pl.Series]:
    """Per-row ``<prefix>_state_prev/changed``, ``<prefix>_transition_code`` (prev*100+cur),
    ``<prefix>_state_run_length`` and ``bs_<prefix>_state_change``, reset at sequence starts."""
    s = np.asarray(states, dtype=np.int64)
    n = s.shape[0]
    first = np.zeros(n, dtype=bool)
    first[offsets[:-1][np.diff(offsets) > 0]] = True
    prev = np.empty(n, dtype=np.int64)
    prev[0:1] = -1
    prev[1:] = s[:-1]
    changed = ~first & (s != prev)
    run_start = first | changed
    start_pos = np.maximum.accumulate(np.where(run_start, np.arange(n), 0))
    run_len = np.arange(n) - start_pos + 1

    def null_first(name: str, values: np.ndarray, dtype: type[pl.DataType]) -> pl.Series:
        arr = np.where(first, np.nan, values.astype(np.float64))
        return pl.Series(name, arr, nan_to_null=True).cast(dtype)

    return {
        f"{prefix}_state_prev": null_first(f"{prefix}_state_prev", prev, pl.Int16),
        f"{prefix}_state_changed": pl.Series(f"{prefix}_state_changed", changed),
        f"{prefix}_transition_code": null_first(
            f"{prefix}_transition_code", prev * 100 + s, pl.Int32
        ),
        f"{prefix}_state_run_length": pl.Series(
            f"{prefix}_state_run_length", run_len, dtype=pl.Int32
        ),
        f"bs_{prefix}_state_change": pl.Series(
            f"bs_{prefix}_state_change", run_len - 1, dtype=pl.Int32
        ),
    }


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.maximum(p, 1e-12))).sum(axis=1)


@dataclass(frozen=True)
class Decoded:
    """Decoded rows plus the raw arrays diagnostics need."""

    frame: pl.DataFrame
    offsets: np.ndarray
    filtered_prob: np.ndarray
    loglik: float


def decode(params: HmmParams, seqs: Sequences) -> Decoded:
    """Viterbi path, smoothed confidence, causal filtered state and state-change columns.

    Columns added to ``seqs.frame``: ``hmm_state`` (Int16), ``hmm_state_prob_max`` and
    ``hmm_state_entropy`` (Float32, smoothed: in-sample), ``hmm_state_filtered`` (Int16) and
    ``hmm_prob_filtered_max`` (Float64, causal), then the Viterbi change columns.
    """
    lb = log_emissions(params, seqs.X)
    off = seqs.offsets
    log_alpha = np.empty_like(lb)
    ll = np.empty(off.shape[0] - 1)
    log_start, log_trans = _log(params.startprob), _log(params.transmat)
    forward_filter_kernel(lb, log_start, log_trans, off, log_alpha, ll)
    post = np.empty_like(lb)
    smoothed_posterior_kernel(lb, log_trans, off, log_alpha, post)
    filt = np.exp(log_alpha)
    states = viterbi(params, seqs.X, off, log_b=lb)
    cols = [
        pl.Series("hmm_state", states, dtype=pl.Int16),
        pl.Series("hmm_state_prob_max", post.max(axis=1), dtype=pl.Float32),
        pl.Series("hmm_state_entropy", _entropy(post), dtype=pl.Float32),
        pl.Series("hmm_state_filtered", filt.argmax(axis=1), dtype=pl.Int16),
        pl.Series("hmm_prob_filtered_max", filt.max(axis=1), dtype=pl.Float64),
        *state_change_columns(states, off, "hmm").values(),
    ]
    frame = seqs.frame.with_columns(cols)
    return Decoded(frame=frame, offsets=off, filtered_prob=filt, loglik=float(ll.sum()))
