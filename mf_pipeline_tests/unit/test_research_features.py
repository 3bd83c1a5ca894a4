"""Research preprocessing: missing values, scalers, per-ticker scope, unseen tickers, clipping."""

from datetime import date

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.research.features import (
    DEFAULT_FEATURES,
    fit_scaler,
    missing_as_null,
    transform,
)


def _frame(rows: int = 40, tickers: tuple[str, ...] = ("AAA.US", "BBB.US"), seed: int = 0):
    rng = np.random.default_rng(seed)
    n = rows * len(tickers)
    return pl.DataFrame(
        {
            "ticker": np.repeat(tickers, rows),
            "trade_date": [date(2020, 1, 1)] * n,
            "close": rng.uniform(10, 20, n),
            "f1": rng.normal(5, 2, n),
            "f2": rng.normal(-1, 0.5, n),
        }
    )


def test_default_feature_list_is_the_25_of_the_spec():
    assert len(DEFAULT_FEATURES) == 25
    assert DEFAULT_FEATURES[0] == "tmf_21" and DEFAULT_FEATURES[-1] == "state_run_length"


def test_nan_and_inf_are_missing_like_null():
    df = pl.DataFrame({"f1": [1.0, np.nan, np.inf, -np.inf, None, 2.0]})
    assert missing_as_null(df, ["f1"])["f1"].null_count() == 4
    full = _frame().with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(np.nan).otherwise(pl.col("f1")).alias("f1"),
        pl.when(pl.int_range(pl.len()) == 5).then(np.inf).otherwise(pl.col("f2")).alias("f2"),
    )
    model = fit_scaler(full, ["f1", "f2"])
    assert model.fit_rows_after_null_filter == full.height - 2
    assert np.isfinite(model.center).all() and np.isfinite(model.spread).all()
    out = transform(full, model)
    assert out.summary["rows_dropped_null_features"] == 2
    assert out.summary["null_counts_per_feature"] == {"f1": 1, "f2": 1}
    assert out.summary["nonfinite_counts_per_feature"] == {"f1": 1, "f2": 1}
    assert np.isfinite(out.X).all() and out.X.shape == (full.height - 2, 2)


def test_global_standard_and_robust_statistics():
    df = _frame()
    x = df["f1"].to_numpy()
    std = fit_scaler(df, ["f1"], "standard")
    assert std.center[0] == pytest.approx(x.mean()) and std.spread[0] == pytest.approx(x.std())
    rob = fit_scaler(df, ["f1"], "Robust ")
    q25, q75 = np.quantile(x, [0.25, 0.75])
    assert rob.center[0] == pytest.approx(np.median(x)) and rob.spread[0] == pytest.approx(
        q75 - q25
    )
    z = transform(df, std, clip_zscore=None).X[:, 0]
    assert z.mean() == pytest.approx(0.0, abs=1e-12) and z.std() == pytest.approx(1.0)
    assert std.fit_ticker_count == 2  # counted in global scope too


def test_constant_feature_scales_by_one_and_clipping():
    df = _frame().with_columns(pl.lit(3.0).alias("f2"))
    model = fit_scaler(df, ["f1", "f2"])
    assert model.spread[1] == 1.0
    spiky = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(1e6).otherwise("f1").alias("f1")
    )
    out = transform(spiky, fit_scaler(spiky, ["f1"]), clip_zscore=2.5)
    assert out.X.max() == 2.5 and out.summary["clipping_applied"]


def test_per_ticker_scaling_and_unseen_tickers_are_reported():
    train = _frame(tickers=("AAA.US", "BBB.US"))
    model = fit_scaler(train, ["f1", "f2"], scaling_scope="per_ticker")
    assert model.per_ticker is not None and model.per_ticker.height == 2
    test = pl.concat([_frame(10, ("AAA.US",), 1), _frame(7, ("NEW1.US", "NEW2.US"), 2)])
    dropped = transform(test, model, unseen_policy="drop")
    s = dropped.summary
    assert s["rows_dropped_unseen_tickers"] == 14 and s["unseen_ticker_count"] == 2
    assert s["unseen_tickers"] == ["NEW1.US", "NEW2.US"]
    assert dropped.frame["ticker"].unique().to_list() == ["AAA.US"]
    kept = transform(test, model, unseen_policy="global")
    assert (
        kept.frame.height == test.height and kept.summary["rows_scaled_with_pooled_fallback"] == 14
    )
    # A seen ticker is scaled by its own statistics, an unseen one by the pooled ones.
    aaa = train.filter(pl.col("ticker") == "AAA.US")["f1"].to_numpy()
    row = test.filter(pl.col("ticker") == "AAA.US")["f1"][0]
    assert kept.X[0, 0] == pytest.approx((row - aaa.mean()) / aaa.std())
    new_row = test.filter(pl.col("ticker") == "NEW1.US")["f1"][0]
    i = kept.frame["ticker"].to_list().index("NEW1.US")
    assert kept.X[i, 0] == pytest.approx((new_row - model.center[0]) / model.spread[0])


def test_missing_requested_features_are_recorded():
    model = fit_scaler(_frame(), ["f1", "nope", "f2"])
    assert model.features == ("f1", "f2") and model.missing_requested_features == ("nope",)
    with pytest.raises(ValueError):
        fit_scaler(_frame(), ["nope"])
