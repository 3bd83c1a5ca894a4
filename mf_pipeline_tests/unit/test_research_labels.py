"""Forward labels, walk-forward splits and the embargo: no train label reads a test price."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.research.labels import (
    add_forward_labels,
    label_horizon,
    labelled_split,
)
from mf_pipeline.lib.research.splits import (
    FULL_SPLIT_ID,
    Split,
    resolve_split,
    split_from_id,
    walkforward_splits,
)


def _panel(days: int = 200, tickers: tuple[str, ...] = ("AAA.US", "BBB.US"), seed: int = 0):
    rng = np.random.default_rng(seed)
    start = date(2020, 1, 1)
    dates = [start + timedelta(days=i) for i in range(days)]
    frames = []
    for t in tickers:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, days)))
        frames.append(pl.DataFrame({"ticker": t, "trade_date": dates, "close": close}))
    return pl.concat(frames).sample(fraction=1.0, shuffle=True, seed=1)


def test_forward_returns_and_vol_proxy_match_the_definition():
    df = add_forward_labels(_panel(60))
    a = df.filter(pl.col("ticker") == "AAA.US")
    c = a["close"].to_numpy()
    np.testing.assert_allclose(a["fwd_ret_5"].to_numpy()[:55], c[5:] / c[:-5] - 1)
    assert a["fwd_ret_5"][55:].null_count() == 5 and a["fwd_ret_20"][40:].null_count() == 20
    np.testing.assert_allclose(a["fwd_abs_ret_10"].to_numpy()[:50], np.abs(c[10:] / c[:-10] - 1))
    r = c[1:] / c[:-1] - 1
    t = 7
    assert a["fwd_vol_proxy_10"][t] == pytest.approx(np.std(r[t : t + 10]))
    assert a["fwd_vol_proxy_10"][49] is not None and a["fwd_vol_proxy_10"][50] is None


def test_zero_close_gives_null_not_inf():
    df = _panel(40, ("AAA.US",)).sort("trade_date")
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(0.0).otherwise("close").alias("close")
    )
    out = add_forward_labels(df)
    for col in ("fwd_ret_5", "fwd_vol_proxy_10"):
        vals = out[col].drop_nulls().to_numpy()
        assert np.isfinite(vals).all()
    assert out["fwd_ret_5"][3] is None


def test_train_labels_never_read_test_period_prices():
    df = _panel(200)
    train_end = date(2020, 4, 30)
    split = Split("2020-04-30", train_end, embargo_bars=20)
    res = resolve_split(split, df["trade_date"])
    # Poison every price from the first embargo date on: a leaking label would be huge.
    poisoned = df.with_columns(
        pl.when(pl.col("trade_date") > train_end)
        .then(pl.col("close") * 1e9)
        .otherwise("close")
        .alias("close")
    )
    sf = labelled_split(poisoned, split)
    for col in ("fwd_ret_5", "fwd_ret_10", "fwd_ret_20", "fwd_abs_ret_10", "fwd_vol_proxy_10"):
        vals = sf.train[col].drop_nulls().abs()
        assert vals.len() > 0 and vals.max() < 1.0, col
    assert sf.train["trade_date"].max() == train_end
    # Purge: the last 20 train rows of each ticker have no 20-bar label.
    last = sf.train.sort("trade_date").group_by("ticker").tail(20)
    assert last["fwd_ret_20"].null_count() == last.height
    # Embargo: 20 calendar dates after train_end belong to neither side.
    assert sf.test["trade_date"].min() == res.test_start == train_end + timedelta(days=21)
    assert sf.summary["rows_embargoed"] == 2 * 20 and not sf.summary["in_sample"]
    # Test labels come from test prices only (all poisoned by the same factor: finite, small).
    assert sf.test["fwd_ret_5"].drop_nulls().abs().max() < 1.0


def test_embargo_shorter_than_the_longest_horizon_is_refused():
    with pytest.raises(ValueError, match="embargo"):
        labelled_split(_panel(100), Split("2020-02-15", date(2020, 2, 15), embargo_bars=10))
    assert label_horizon((5, 10, 20), 10) == 20 and label_horizon((3,), 10) == 10


def test_full_split_is_in_sample_and_labels_everything():
    df = _panel(50)
    sf = labelled_split(df, split_from_id(FULL_SPLIT_ID))
    assert (
        sf.test is None and sf.summary["in_sample"] and sf.summary["split_kind"] == "full_in_sample"
    )
    assert sf.train.height == df.height


def test_walkforward_splits_sorted_deduplicated_truncated():
    splits = walkforward_splits("2016-12-31, 2012-12-31,2016-12-31", max_splits=5)
    assert [s.split_id for s in splits] == ["2012-12-31", "2016-12-31", "full"]
    assert splits[-1].in_sample and not splits[0].in_sample
    assert [s.split_id for s in walkforward_splits(max_splits=2, include_full=False)] == [
        "2012-12-31",
        "2014-12-31",
    ]
    assert split_from_id("2014-12-31").train_end == date(2014, 12, 31)
    with pytest.raises(ValueError):
        resolve_split(Split("x", date(2030, 1, 1)), _panel(30)["trade_date"])
