"""Clustering engine (research.md §4.1): KMeans, GaussianMixture, HDBSCAN and their metrics.

Speed decisions (the old run spent 270 of 300 s in a 200k-row silhouette): the silhouette is
computed on a bounded random sample (default 20,000 rows) and reported as sampled; KMeans
runs its ``n_init`` restarts on a bounded row sample and polishes the best start with one
Lloyd run on all rows; HDBSCAN (quadratic) fits on a bounded sample and labels every other
row by its nearest fitted neighbour. Every bound is a parameter and recorded in the metadata.
``ClusterConfig.fit_procedure = "spec"`` drops both fit bounds (the old tool's procedure:
KMeans restarts and HDBSCAN on every fit row — HDBSCAN's cost then grows quadratically).
"""

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
METHODS = ("kmeans", "gmm", "hdbscan")
FIT_PROCEDURES = ("fast", "spec")


@dataclass(frozen=True)
class ClusterConfig:
    """Every knob of a clustering run (defaults: settings ``research_clustering``).

    ``fit_procedure``: ``fast`` applies ``kmeans_init_sample_max`` and
    ``hdbscan_fit_sample_max``; ``spec`` ignores them and fits on all rows.
    """

    n_clusters: int = 5
    random_state: int = 42
    fit_procedure: str = "fast"
    silhouette_sample_max: int = 20_000
    kmeans_n_init: int = 20
    kmeans_max_iter: int = 300
    kmeans_init_sample_max: int | None = 50_000
    gmm_covariance_type: str = "diag"
    gmm_reg_covar: float = 1e-6
    gmm_max_iter: int = 200
    hdbscan_min_cluster_size: int | None = None
    hdbscan_fit_sample_max: int | None = 20_000


@dataclass(frozen=True)
class ClusterModel:
    """A fitted model reduced to the arrays that label new rows (:func:`predict_clusters`):
    KMeans ``centers``; GMM ``weights``, ``means``, ``covariances``, ``precisions_cholesky``
    (scikit-learn's shapes for ``covariance_type``); HDBSCAN the fitted ``rows`` and their
    ``labels`` (new rows take their nearest fitted row's label, as the run's own labelling)."""

    method: str
    arrays: dict[str, np.ndarray]
    covariance_type: str | None = None


@dataclass
class ClusterResult:
    """Labels (and GMM confidence) per predict set, metrics on the primary set, model meta."""

    method: str
    labels: dict[str, np.ndarray]
    prob_max: dict[str, np.ndarray] = field(default_factory=dict)
    entropy: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    model_meta: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    fitted: ClusterModel | None = None


def _sample_index(n: int, cap: int | None, random_state: int) -> np.ndarray | None:
    """Sorted row sample without replacement (numpy ``default_rng``); None when n <= cap."""
    if cap is None or n <= cap:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=int(cap), replace=False))


def silhouette(X: np.ndarray, labels: np.ndarray, chunk_cells: int = 16_000_000) -> float:
    """Mean Euclidean silhouette, same definition as scikit-learn's ``silhouette_score``.

    Per-cluster distance sums come from BLAS (x·y, in-place |x|² + |y|² − 2x·y, then a
    one-hot matmul) instead of scikit-learn's per-row ``np.add.at`` reduction, which is most
    of its cost. Row chunks hold about ``chunk_cells`` distances (128 MB). Singleton clusters
    score 0, as in scikit-learn.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    n = X.shape[0]
    _, lab = np.unique(labels, return_inverse=True)
    k = int(lab.max()) + 1
    onehot = np.zeros((n, k))
    onehot[np.arange(n), lab] = 1.0
    counts = onehot.sum(axis=0)
    sq = np.einsum("ij,ij->i", X, X)
    xt = np.ascontiguousarray(X.T)
    sums = np.empty((n, k))
    step = max(64, chunk_cells // max(n, 1))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        d = X[lo:hi] @ xt
        d *= -2.0
        d += sq[None, :]
        d += sq[lo:hi, None]
        np.maximum(d, 0.0, out=d)
        d[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        np.sqrt(d, out=d)
        sums[lo:hi] = d @ onehot
    rows = np.arange(n)
    own_n = counts[lab]
    a = sums[rows, lab] / np.maximum(own_n - 1.0, 1.0)
    mean_other = sums / counts
    mean_other[rows, lab] = np.inf
    b = mean_other.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sil = (b - a) / np.maximum(a, b)
    sil[(own_n <= 1) | ~np.isfinite(sil)] = 0.0
    return float(sil.mean())


def cluster_metrics(
    X: np.ndarray, labels: np.ndarray, silhouette_sample_max: int = 20_000, random_state: int = 42
) -> dict[str, Any]:
    """Core metrics: silhouette on a bounded sample (flagged), Davies–Bouldin and
    Calinski–Harabasz on all rows. Noise (-1) counts as a cluster, as in the old tool."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

    labels = np.asarray(labels)
    n = labels.shape[0]
    valid = np.unique(labels[labels >= 0])
    out: dict[str, Any] = {
        "n_clusters_detected": int(valid.size),
        "has_noise_cluster": bool((labels < 0).any()),
        "noise_share": float((labels < 0).mean()) if n else 0.0,
        "metrics_rows": int(n),
        "silhouette": None,
        "silhouette_sampled": False,
        "silhouette_sample_rows": 0,
        "silhouette_sample_max": silhouette_sample_max,
        "davies_bouldin": None,
        "calinski_harabasz": None,
    }
    if valid.size < 2 or n < 3:
        return out
    idx = _sample_index(n, silhouette_sample_max, random_state)
    xs, ls = (X, labels) if idx is None else (X[idx], labels[idx])
    n_lab = np.unique(ls).size
    if 2 <= n_lab < ls.shape[0]:
        out["silhouette"] = silhouette(xs, ls)
    out["silhouette_sampled"] = idx is not None
    out["silhouette_sample_rows"] = int(ls.shape[0])
    n_all = np.unique(labels).size
    if 2 <= n_all < n:
        out["davies_bouldin"] = float(davies_bouldin_score(X, labels))
        out["calinski_harabasz"] = float(calinski_harabasz_score(X, labels))
    return out


def _entropy(prob: np.ndarray) -> np.ndarray:
    return -(prob * np.log(np.maximum(prob, 1e-12))).sum(axis=1)


def _fit_cap(cap: int | None, cfg: ClusterConfig) -> int | None:
    """A fit sample bound as the procedure applies it (``spec``: none)."""
    return None if cfg.fit_procedure == "spec" else cap


def fit_kmeans(X: np.ndarray, cfg: ClusterConfig) -> tuple[Any, dict[str, Any]]:
    """KMeans per ``cfg`` (fast: restarts on a row sample, then one Lloyd run on all rows)."""
    from sklearn.cluster import KMeans

    idx = _sample_index(X.shape[0], _fit_cap(cfg.kmeans_init_sample_max, cfg), cfg.random_state)
    k = cfg.n_clusters
    if idx is None:
        model = KMeans(k, n_init=cfg.kmeans_n_init, max_iter=cfg.kmeans_max_iter,
                       random_state=cfg.random_state).fit(X)  # fmt: skip
    else:
        seed = KMeans(k, n_init=cfg.kmeans_n_init, max_iter=cfg.kmeans_max_iter,
                      random_state=cfg.random_state).fit(X[idx])  # fmt: skip
        model = KMeans(k, init=seed.cluster_centers_, n_init=1, max_iter=cfg.kmeans_max_iter,
                       random_state=cfg.random_state).fit(X)  # fmt: skip
    meta = {
        "method": "kmeans",
        "n_clusters": k,
        "n_init": cfg.kmeans_n_init,
        "max_iter": cfg.kmeans_max_iter,
        "init_sample_rows": int(X.shape[0] if idx is None else idx.size),
        "n_iter_final": int(model.n_iter_),
    }
    return model, meta


def _fit_gmm(X: np.ndarray, cfg: ClusterConfig) -> tuple[Any, dict[str, Any]]:
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(
        n_components=cfg.n_clusters,
        covariance_type=cfg.gmm_covariance_type,
        reg_covar=cfg.gmm_reg_covar,
        max_iter=cfg.gmm_max_iter,
        random_state=cfg.random_state,
    ).fit(X)
    meta = {
        "method": "gmm",
        "n_components": cfg.n_clusters,
        "covariance_type": cfg.gmm_covariance_type,
        "reg_covar": cfg.gmm_reg_covar,
        "max_iter": cfg.gmm_max_iter,
        "converged": bool(model.converged_),
        "n_iter_used": int(model.n_iter_),
    }
    return model, meta


def _fit_hdbscan(X: np.ndarray, cfg: ClusterConfig) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """Fit HDBSCAN on (a sample of) X; return the model, the fitted rows and meta."""
    from sklearn.cluster import HDBSCAN

    min_size = cfg.hdbscan_min_cluster_size or max(5, cfg.n_clusters)
    idx = _sample_index(X.shape[0], _fit_cap(cfg.hdbscan_fit_sample_max, cfg), cfg.random_state)
    if idx is None and X.shape[0] > (cfg.hdbscan_fit_sample_max or X.shape[0]):
        log.warning("HDBSCAN fit on all %d rows (fit_procedure spec): time and memory grow with "
                    "the square of the rows (about 7 min at 60,000 rows on 2 cores)", X.shape[0])
    xs = X if idx is None else X[idx]
    model = HDBSCAN(min_cluster_size=min_size, min_samples=None, copy=True).fit(xs)
    meta = {
        "method": "hdbscan",
        "min_cluster_size": min_size,
        "n_clusters_requested_hint": cfg.n_clusters,
        "fit_sample_rows": int(xs.shape[0]),
        "fit_sampled": idx is not None,
        "assignment": "exact" if idx is None else "nearest_fitted_neighbour",
    }
    return model, xs, meta


def _nearest_labels(fitted: np.ndarray, fitted_labels: np.ndarray, X: np.ndarray) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=1).fit(fitted)
    _, ind = nn.kneighbors(X)
    return fitted_labels[ind[:, 0]]


def run_clustering(
    X: np.ndarray,
    method: str,
    config: ClusterConfig = ClusterConfig(),
    predict_sets: Mapping[str, np.ndarray] | None = None,
    primary_set: str = "predict",
) -> ClusterResult:
    """Fit ``method`` on ``X`` and label every predict set (default ``{"predict": X}``).

    Metrics are computed on ``predict_sets[primary_set]``; KMeans adds the fit ``inertia``,
    GMM adds ``bic``/``aic`` on the fit matrix and per-row ``prob_max``/``entropy`` (float32).
    """
    method = str(method).strip().lower()
    if method not in METHODS:
        raise ValueError("method must be one of: kmeans, gmm, hdbscan")
    if config.fit_procedure not in FIT_PROCEDURES:
        raise ValueError(f"fit_procedure must be one of {', '.join(FIT_PROCEDURES)}, "
                         f"got {config.fit_procedure!r}")  # fmt: skip
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError("X must be 2-D with at least 2 rows")
    sets = {"predict": X} if predict_sets is None else dict(predict_sets)
    for name, m in sets.items():
        if m.ndim != 2 or m.shape[1] != X.shape[1] or m.shape[0] == 0:
            raise ValueError(f"predict set {name!r} must be non-empty 2-D with {X.shape[1]} cols")
    if primary_set not in sets:
        raise ValueError(f"primary set {primary_set!r} not among predict sets")

    result = ClusterResult(method=method, labels={})
    extra: dict[str, Any] = {}
    if method == "kmeans":
        model, meta = fit_kmeans(X, config)
        for name, m in sets.items():
            result.labels[name] = model.predict(m).astype(np.int32)
        extra["inertia"] = float(model.inertia_)
        result.fitted = ClusterModel("kmeans", {"centers": model.cluster_centers_})
    elif method == "gmm":
        model, meta = _fit_gmm(X, config)
        result.fitted = ClusterModel("gmm", {
            "weights": model.weights_, "means": model.means_, "covariances": model.covariances_,
            "precisions_cholesky": model.precisions_cholesky_}, config.gmm_covariance_type)
        for name, m in sets.items():
            prob = model.predict_proba(m)
            result.labels[name] = prob.argmax(axis=1).astype(np.int32)
            result.prob_max[name] = prob.max(axis=1).astype(np.float32)
            result.entropy[name] = _entropy(prob).astype(np.float32)
        extra["bic"] = float(model.bic(X))
        extra["aic"] = float(model.aic(X))
    else:
        model, fitted, meta = _fit_hdbscan(X, config)
        fitted_labels = model.labels_.astype(np.int32)
        for name, m in sets.items():
            exact = m is X and fitted is X
            labs = fitted_labels if exact else _nearest_labels(fitted, fitted_labels, m)
            result.labels[name] = labs.astype(np.int32)
        result.fitted = ClusterModel("hdbscan", {"rows": fitted, "labels": fitted_labels})
    meta["fit_rows"] = int(X.shape[0])
    meta["fit_procedure"] = config.fit_procedure
    meta["predict_rows"] = int(sets[primary_set].shape[0])
    result.model, result.model_meta = model, meta
    result.metrics = {
        **cluster_metrics(
            sets[primary_set],
            result.labels[primary_set],
            config.silhouette_sample_max,
            config.random_state,
        ),
        **extra,
    }
    return result


def predict_clusters(model: ClusterModel, X: np.ndarray) -> np.ndarray:
    """Cluster ids (int32) of the scaled rows ``X`` under a fitted ``model``, without refitting:
    the nearest centre (KMeans), the most probable component (GMM, through scikit-learn's own
    ``predict_proba``) or the nearest fitted row's label (HDBSCAN)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    a = model.arrays
    if model.method == "kmeans":
        centers = a["centers"]
        dist = (centers * centers).sum(axis=1)[None, :] - 2.0 * (X @ centers.T)
        return dist.argmin(axis=1).astype(np.int32)
    if model.method == "gmm":
        from sklearn.mixture import GaussianMixture

        gmm = GaussianMixture(n_components=a["weights"].shape[0],
                              covariance_type=model.covariance_type or "full")
        gmm.weights_, gmm.means_ = a["weights"], a["means"]
        gmm.covariances_, gmm.precisions_cholesky_ = a["covariances"], a["precisions_cholesky"]
        gmm.n_features_in_ = a["means"].shape[1]
        return gmm.predict_proba(X).argmax(axis=1).astype(np.int32)
    if model.method == "hdbscan":
        return _nearest_labels(a["rows"], a["labels"], X).astype(np.int32)
    raise ValueError(f"unknown cluster model method {model.method!r}")


def config_payload(config: ClusterConfig) -> dict[str, Any]:
    """The config as a JSON-ready dict (for run summaries and metadata)."""
    return asdict(config)
