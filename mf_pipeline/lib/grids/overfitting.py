"""How much of a grid's best result is selection luck (issue #21, item 4).

Two measures, both on the per-period returns of every combo of a grid (rows = periods,
columns = combos):

* the Deflated Sharpe Ratio (Bailey & López de Prado, "The Deflated Sharpe Ratio", JPM 2014):
  the probability that the best combo's Sharpe beats the Sharpe one would expect from the best
  of ``N`` skill-less trials, corrected for the sample length, skew and fat tails;
* the Probability of Backtest Overfitting by combinatorially symmetric cross-validation
  (Bailey, Borwein, López de Prado & Zhu, "The Probability of Backtest Overfitting", J. Comp.
  Finance 2017): how often the in-sample best combo lands in the bottom half out of sample.

Written here, in numpy/scipy, because no maintained implementation is installed in the
project's environment (skfolio, which has both, is not a dependency and is not added).

Sharpe ratios are per period (not annualised); kurtosis is the plain fourth standardised
moment (3 for a normal law), as in the papers.

Missing values (a combo with no trade in a period, or none at all) follow one rule everywhere:

* a column with fewer than two finite values (a combo that never traded) is not a trial: it is
  dropped and its index reported in ``dropped_columns``;
* a row with no finite value (a period no combo covers) is dropped before anything else;
* any other NaN is a missing observation: each statistic uses the finite values it sees; in
  CSCV, a combo with fewer than two finite values in one half gets the worst possible score in
  that half (never chosen in-sample, ranked last out of sample);
* a series with zero variance (flat, e.g. a combo that is always out of the market and reports
  0 returns) has Sharpe 0.

A grid's caller that wants flat periods counted as zero returns must write 0, not NaN.
"""

from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Literal

import numpy as np

EULER_MASCHERONI = 0.5772156649015329

Metric = Literal["sharpe", "mean"]


def expected_max_sharpe(n_trials: int, sharpe_variance_across_trials: float) -> float:
    """Expected maximum of ``n_trials`` Sharpe estimates whose true value is 0 (the DSR's SR0).

    Extreme-value approximation of the papers: sqrt(V) * ((1-g) Z^-1(1-1/N) + g Z^-1(1-1/(N e))),
    g the Euler-Mascheroni constant. A single trial has no selection, so its benchmark is 0.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    from scipy import stats  # imported where used: ~0.6 s that every `mf` run paid at load

    quantiles = stats.norm.ppf([1.0 - 1.0 / n_trials, 1.0 - 1.0 / (n_trials * np.e)])
    weighted = (1.0 - EULER_MASCHERONI) * quantiles[0] + EULER_MASCHERONI * quantiles[1]
    return float(np.sqrt(sharpe_variance_across_trials) * weighted)


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark: float, n_obs: int, skew: float, kurtosis: float
) -> float:
    """P(true Sharpe > benchmark) given an estimate from ``n_obs`` returns with these moments."""
    spread = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if spread <= 0.0 or n_obs < 2:
        return float("nan")
    from scipy import stats

    return float(stats.norm.cdf((sharpe - benchmark) * np.sqrt(n_obs - 1) / np.sqrt(spread)))


def deflated_sharpe_ratio(
    best_sharpe: float,
    n_trials: int,
    sharpe_variance_across_trials: float,
    n_obs: int,
    skew: float,
    kurtosis: float,
) -> dict[str, float]:
    """DSR of the best of ``n_trials`` configurations (all Sharpes per period, not annualised).

    ``dsr`` is the probability that the best configuration's true Sharpe exceeds ``sr0``, the
    best Sharpe expected from ``n_trials`` skill-less trials; >= 0.95 is the usual bar.
    """
    sr0 = expected_max_sharpe(n_trials, sharpe_variance_across_trials)
    return {
        "dsr": probabilistic_sharpe_ratio(best_sharpe, sr0, n_obs, skew, kurtosis),
        "sr0": sr0,
        "best_sharpe": float(best_sharpe),
        "n_trials": int(n_trials),
        "sharpe_variance_across_trials": float(sharpe_variance_across_trials),
        "n_obs": int(n_obs),
        "skew": float(skew),
        "kurtosis": float(kurtosis),
    }


def _valid_matrix(returns_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Drop empty rows and untradeable columns; return (matrix, kept column indices, dropped)."""
    matrix = np.asarray(returns_matrix, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"returns_matrix must be 2-D (periods x combos), got {matrix.ndim}-D")
    finite = np.isfinite(matrix)
    matrix = np.where(finite, matrix, np.nan)  # +-inf count as missing too
    keep_cols = finite.sum(axis=0) >= 2
    kept = np.flatnonzero(keep_cols)
    dropped = np.flatnonzero(~keep_cols).tolist()
    matrix = matrix[:, keep_cols]
    matrix = matrix[np.isfinite(matrix).any(axis=1)]
    return matrix, kept, dropped


def _sharpe_from_sums(
    count: np.ndarray, centred_sum: np.ndarray, centred_sq: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """Sharpe (ddof=1) from counts and sums of values minus ``shift``; -inf where count < 2."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_c = centred_sum / count
        var = np.maximum(centred_sq - centred_sum * mean_c, 0.0) / (count - 1)
        sharpe = np.where(var > 0.0, (mean_c + shift) / np.sqrt(var), 0.0)
    return np.where(count >= 2, sharpe, -np.inf)


def dsr_of_returns(returns_matrix: np.ndarray, best: int | None = None) -> dict[str, float]:
    """DSR of one column of a (periods x combos) return matrix against all its columns.

    ``best`` is the column index in ``returns_matrix`` (default: the highest Sharpe). The trials
    are the columns with at least two finite returns; the skew and kurtosis are those of the
    best column's finite returns.
    """
    from scipy import stats

    matrix, kept, dropped = _valid_matrix(returns_matrix)
    if kept.size == 0:
        raise ValueError("no combo has two finite returns")
    finite = np.isfinite(matrix)
    count = finite.sum(axis=0)
    shift = np.nanmedian(matrix, axis=0)
    centred = np.where(finite, matrix - shift, 0.0)
    sharpes = _sharpe_from_sums(count, centred.sum(axis=0), (centred**2).sum(axis=0), shift)
    if best is None:
        position = int(np.argmax(sharpes))
    else:
        hits = np.flatnonzero(kept == best)
        if hits.size == 0:
            raise ValueError(f"column {best} has fewer than two finite returns")
        position = int(hits[0])
    column = matrix[:, position]
    column = column[np.isfinite(column)]
    variance = float(np.var(sharpes, ddof=1)) if sharpes.size > 1 else 0.0
    result = deflated_sharpe_ratio(
        best_sharpe=float(sharpes[position]),
        n_trials=int(sharpes.size),
        sharpe_variance_across_trials=variance,
        n_obs=int(column.size),
        skew=float(stats.skew(column)) if np.ptp(column) > 0 else 0.0,
        kurtosis=float(stats.kurtosis(column, fisher=False)) if np.ptp(column) > 0 else 3.0,
    )
    return {**result, "best": int(kept[position]), "dropped_columns": dropped}


def pbo_cscv(returns_matrix: np.ndarray, n_splits: int = 16, metric: Metric = "sharpe") -> dict:
    """Probability of Backtest Overfitting by combinatorially symmetric cross-validation.

    The rows (in time order) are cut into ``n_splits`` equal blocks (the oldest ``T mod S``
    rows are dropped so they divide evenly); every choice of half the blocks is a training
    set, the other half its test set. For each, the combo with the best training ``metric``
    (first one on ties) is ranked among all combos on the test set: relative rank
    w = rank / (N + 1) (ties share the mean rank), logit = ln(w / (1 - w)). PBO is the share
    of logits <= 0, i.e. of splits where the in-sample winner is at or below the median out
    of sample. ``degradation_slope``/``degradation_intercept`` regress the winner's test
    metric on its training metric (a slope below 0 means in-sample excellence predicts
    out-of-sample disappointment); ``prob_oos_loss`` is the share of splits where the winner's
    test metric is below 0.
    """
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be an even number >= 2, got {n_splits}")
    if metric not in ("sharpe", "mean"):
        raise ValueError(f"metric must be 'sharpe' or 'mean', got {metric!r}")
    matrix, kept, dropped = _valid_matrix(returns_matrix)
    n_combos = kept.size
    if n_combos < 2:
        raise ValueError("PBO needs at least two combos with finite returns")
    block = matrix.shape[0] // n_splits
    if block < 1:
        raise ValueError(f"{matrix.shape[0]} usable periods cannot form {n_splits} blocks")
    matrix = matrix[matrix.shape[0] - block * n_splits :]

    finite = np.isfinite(matrix)
    shift = np.nanmedian(matrix, axis=0)  # centring keeps sums of squares well conditioned
    centred = np.where(finite, matrix - shift, 0.0).reshape(n_splits, block, n_combos)
    per_block = np.stack(
        [
            finite.reshape(n_splits, block, n_combos).sum(axis=1),
            centred.sum(axis=1),
            (centred**2).sum(axis=1),
        ]
    )  # (3 sums, S blocks, N combos)
    chosen = np.zeros((comb(n_splits, n_splits // 2), n_splits))
    for row, blocks in enumerate(combinations(range(n_splits), n_splits // 2)):
        chosen[row, list(blocks)] = 1.0
    train = chosen @ per_block  # (3, C, N) by broadcasting over the leading axis
    test = per_block.sum(axis=1, keepdims=True) - train

    def score(sums: np.ndarray) -> np.ndarray:
        if metric == "sharpe":
            return _sharpe_from_sums(sums[0], sums[1], sums[2], shift)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sums[0] >= 2, sums[1] / sums[0] + shift, -np.inf)

    train_score, test_score = score(train), score(test)
    if not np.isfinite(train_score.max(axis=1)).all():
        raise ValueError("a training half has no combo with two finite returns")
    winner = np.argmax(train_score, axis=1)
    from scipy import stats

    rank = stats.rankdata(test_score, axis=1)[np.arange(winner.size), winner]
    omega = rank / (n_combos + 1)
    logits = np.log(omega / (1.0 - omega))
    is_best = train_score[np.arange(winner.size), winner]
    oos_best = test_score[np.arange(winner.size), winner]
    usable = np.isfinite(oos_best)
    if np.ptp(is_best[usable]) > 0:
        slope, intercept = np.polyfit(is_best[usable], oos_best[usable], 1)
    else:  # every split's winner scored the same in-sample: no line to fit
        slope = intercept = float("nan")
    return {
        "pbo": float(np.mean(logits <= 0.0)),
        "logits": logits,
        "n_combinations": int(winner.size),
        "degradation_slope": float(slope),
        "degradation_intercept": float(intercept),
        "prob_oos_loss": float(np.mean(oos_best < 0.0)),
        "is_best": is_best,
        "oos_best": oos_best,
        "winners": kept[winner],
        "n_periods_used": int(matrix.shape[0]),
        "n_combos": int(n_combos),
        "dropped_columns": dropped,
        "metric": metric,
    }
