"""The Numba rolling median equals polars' rolling_median per ticker (NaN/null as missing)."""

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mf_pipeline.lib.kernels.offsets import ticker_offsets
from mf_pipeline.lib.kernels.rolling_median import rolling_median


def _reference(values: np.ndarray, tickers: list[str], window: int, min_samples: int):
    frame = pl.DataFrame({"t": tickers, "x": values}).with_columns(pl.col("x").fill_nan(None))
    out = frame.select(pl.col("x").rolling_median(window, min_samples=min_samples).over("t"))
    return out.to_series().fill_null(np.nan).to_numpy()


def test_hand_computed_window_of_three() -> None:
    x = np.array([5.0, 1.0, 3.0, np.nan, 2.0, 8.0, 4.0])
    out = np.empty(7)
    rolling_median(x, 3, 2, np.array([0, 7]), out)
    # windows: [5] [5,1] [5,1,3] [1,3,-] [3,-,2] [-,2,8] [2,8,4]
    np.testing.assert_array_equal(out, [np.nan, 3.0, 3.0, 2.0, 2.5, 5.0, 4.0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6) | st.just(float("nan")), min_size=1, max_size=80),
       st.integers(1, 8), st.integers(0, 8), st.integers(1, 4))
def test_equals_polars_per_ticker(values, window, min_samples, n_tickers) -> None:
    min_samples = min(min_samples, window)  # polars refuses more samples than the window
    x = np.array(values)
    tickers = sorted(f"T{i % n_tickers}" for i in range(x.size))
    out = np.empty(x.size)
    rolling_median(x, window, min_samples, ticker_offsets(pl.Series(tickers)), out)
    np.testing.assert_allclose(out, _reference(x, tickers, window, min_samples), equal_nan=True,
                               rtol=0, atol=1e-9)


def test_rejects_a_zero_window() -> None:
    with pytest.raises(ValueError):
        rolling_median(np.ones(3), 0, 1, np.array([0, 3]), np.empty(3))
