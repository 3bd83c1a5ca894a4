"""Regime recovery: agreement of a label column with known true regimes.

On the bundled sample universe the generator's regimes are known, so the adjusted Rand index
(permutation-invariant, chance-corrected) of ``hmm_state_filtered``, ``hmm_state`` and
cluster ids against the truth is a regression figure users can trust.
"""

from typing import Any

import numpy as np
import polars as pl


def adjusted_rand(frame: pl.DataFrame, label_col: str, truth_col: str) -> dict[str, Any]:
    """ARI and NMI (arithmetic) of ``label_col`` vs ``truth_col`` on rows where both are set."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    for c in (label_col, truth_col):
        if c not in frame.columns:
            raise ValueError(f"column {c!r} not in frame")
    both = frame.select(label_col, truth_col).drop_nulls()
    if both.height == 0:
        return {"label_col": label_col, "truth_col": truth_col, "rows_compared": 0,
                "ari": None, "nmi": None}  # fmt: skip
    a, b = both[label_col].to_numpy(), both[truth_col].to_numpy()
    return {
        "label_col": label_col,
        "truth_col": truth_col,
        "rows_compared": both.height,
        "ari": float(adjusted_rand_score(b, a)),
        "nmi": float(normalized_mutual_info_score(b, a, average_method="arithmetic")),
    }


def recovery_report(
    frame: pl.DataFrame,
    truth_col: str = "regime",
    label_cols: tuple[str, ...] = ("hmm_state_filtered", "hmm_state", "cluster_id"),
) -> list[dict[str, Any]]:
    """:func:`adjusted_rand` for each label column present in ``frame``."""
    return [adjusted_rand(frame, c, truth_col) for c in label_cols if c in frame.columns]


def match_states(pred: np.ndarray, truth: np.ndarray) -> dict[int, int]:
    """Map each predicted state to a true state maximising total overlap (Hungarian), so
    matrices of a fitted model can be compared with the truth's."""
    from scipy.optimize import linear_sum_assignment

    p_ids, p = np.unique(np.asarray(pred), return_inverse=True)
    t_ids, t = np.unique(np.asarray(truth), return_inverse=True)
    table = np.zeros((p_ids.size, t_ids.size))
    np.add.at(table, (p, t), 1.0)
    rows, cols = linear_sum_assignment(-table)
    return {int(p_ids[r]): int(t_ids[c]) for r, c in zip(rows, cols, strict=True)}
