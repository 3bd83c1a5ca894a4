"""QA flags calibrated against noise: LIKELY_OUTLIER_WINDOW on pure noise window means."""

import numpy as np
import polars as pl
from scipy.stats import norm

from mf_pipeline.lib.validation.qa import window_stats


def _rolling(means: np.ndarray) -> pl.DataFrame:
    states, windows = means.shape
    return pl.DataFrame({
        "state_id": np.repeat(np.arange(states), windows).astype(np.int32),
        "window_seq": np.tile(np.arange(windows), states),
        "fwd_ret_10_mean": means.ravel(),
        "state_share": np.full(states * windows, 0.2),
        "row_count": np.full(states * windows, 100),
    })


def test_noise_rarely_has_an_outlier_window_whatever_the_window_count() -> None:
    rng = np.random.default_rng(5)
    for windows in (10, 50):
        stats = window_stats(_rolling(rng.normal(size=(400, windows))))
        share = stats["likely_outlier_window"].mean()
        assert share <= 0.09, (windows, share)  # ~5 % by construction; the old 2 std: 35-97 %
        old = (stats["outlier_z"] > 2.0).mean()
        assert old > 0.3


def test_a_real_outlier_window_is_flagged_at_the_bonferroni_level() -> None:
    means = np.zeros((2, 40))
    means[:, ::2] = 1.0
    means[:, 1::2] = -1.0
    means[1, 7] = 9.0
    stats = window_stats(_rolling(means)).sort("state_id")
    assert stats["likely_outlier_window"].to_list() == [False, True]
    z = stats["outlier_z"][1]
    assert z > norm.ppf(1 - 0.05 / 80) > 2.0
