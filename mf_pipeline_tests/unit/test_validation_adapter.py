"""Validation adapter: strict state casts (fault #32), causal HMM states, whole-ticker
sampling (#33), forward outcomes from close, and the errors that used to be silent nulls."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mf_pipeline.lib.research.labels import FORWARD_COLUMNS, add_forward_labels
from mf_pipeline.lib.validation.adapter import adapt, read_state_file

D0 = date(2022, 3, 1)


def _panel(n_tickers: int = 3, n_days: int = 40, seed: int = 0, **state_cols) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_tickers, n_days)), axis=1))
    frame = pl.DataFrame(
        {
            "ticker": np.repeat([f"t{i}.us" for i in range(n_tickers)], n_days),
            "trade_date": [D0 + timedelta(days=j) for j in range(n_days)] * n_tickers,
            "close": close.ravel(),
        }
    )
    if not state_cols:
        state_cols = {"cluster_id": rng.integers(0, 3, n_tickers * n_days)}
    return frame.with_columns(pl.Series(k, v) for k, v in state_cols.items())


def test_string_labels_become_ids_in_sorted_order_with_their_names():
    labels = ["calm", "bull", None, "bear", "bull", "calm"]
    frame = _panel(1, 6, cluster_label=labels)
    out = adapt(frame)
    f = out.frame
    assert f["state_id"].dtype == pl.Int32
    assert f["state_id"].to_list() == [2, 1, 0, 1, 2]  # bear 0, bull 1, calm 2
    assert f["state_label_name"].to_list() == ["calm", "bull", "bear", "bull", "calm"]
    assert out.summary["rows_dropped_null_state"] == 1
    assert out.summary["state_labels"] == {"0": "bear", "1": "bull", "2": "calm"}
    assert out.summary["state_label_type"] == "cluster"


def test_integer_valued_labels_are_cast_strictly():
    frame = _panel(1, 4, cluster_id=[1.0, 2.0, float("nan"), -1.0])
    f = adapt(frame).frame
    assert f["state_id"].to_list() == [1, 2, -1]
    assert f["state_label_name"].to_list() == ["1", "2", "-1"]
    text = adapt(_panel(1, 3, cluster_label=["3", " 10", "-1"])).frame
    assert text["state_id"].to_list() == [3, 10, -1]


def test_non_integral_float_labels_raise_naming_the_column():
    with pytest.raises(ValueError, match=r"'my_state'.*2\.5"):
        adapt(_panel(1, 3, my_state=[1.0, 2.5, 3.0]), state_col="my_state")


def test_generic_and_flow_inputs_are_labelled_as_such():
    generic = adapt(_panel(1, 3, regime=[0, 1, 1]), state_col="regime")
    assert generic.summary["input_type_resolved"] == "generic"
    assert generic.frame["state_label_type"].unique().to_list() == ["generic"]
    assert generic.summary["causal_states"] is None
    flow = adapt(_panel(1, 3, flow_state_code=[0, 1, 1], flow_state_label=["A", None, "B"]))
    assert flow.frame["state_label_type"].unique().to_list() == ["flow"]
    assert flow.frame["state_label_name"].to_list() == ["A", "1", "B"]
    with pytest.raises(ValueError, match="detect"):
        adapt(_panel(1, 3, regime=[0, 1, 1]))


def test_hmm_input_uses_the_filtered_states_when_present():
    both = adapt(_panel(1, 3, hmm_state=[0, 0, 1], hmm_state_filtered=[1, 1, 0]))
    assert both.summary["state_column"] == "hmm_state_filtered"
    assert both.summary["causal_states"] is True
    assert both.frame["state_id"].to_list() == [1, 1, 0]
    viterbi = adapt(_panel(1, 3, hmm_state=[0, 0, 1]))
    assert viterbi.summary["state_column"] == "hmm_state"
    assert viterbi.summary["causal_states"] is False


def test_sample_frac_keeps_whole_tickers_with_their_forward_outcomes():
    frame = _panel(10, 30, seed=3)
    full = adapt(frame).frame
    out = adapt(frame, sample_frac=0.3, sample_seed=7)
    sampled = out.frame
    assert sampled["ticker"].n_unique() == 3 == out.summary["tickers_sampled"]
    assert out.summary["sample_unit"] == "ticker"
    kept = full.filter(pl.col("ticker").is_in(sampled["ticker"].unique().implode()))
    # every kept ticker has all its rows, in order, with the labels of the unsampled frame
    assert sampled.select("ticker", "trade_date", *FORWARD_COLUMNS).equals(
        kept.select("ticker", "trade_date", *FORWARD_COLUMNS)
    )
    again = adapt(frame, sample_frac=0.3, sample_seed=7).frame
    other = adapt(frame, sample_frac=0.3, sample_seed=8).frame
    assert again.equals(sampled)
    assert set(other["ticker"].unique()) != set(sampled["ticker"].unique())
    with pytest.raises(ValueError, match="sample_frac"):
        adapt(frame, sample_frac=0.0)


def test_duplicated_ticker_date_raises():
    frame = _panel(2, 5)
    dup = pl.concat([frame, frame.slice(7, 1).with_columns(pl.col("ticker").str.to_uppercase())])
    with pytest.raises(ValueError, match=r"T1\.US.*2022-03-03"):
        adapt(dup)


def test_unparsable_dates_raise_naming_the_values():
    frame = _panel(1, 4).with_columns(
        pl.Series("trade_date", ["2022-03-01", "2022-02-30", "soon", "2022-03-04"])
    )
    with pytest.raises(ValueError, match=r"2 unparsable.*'2022-02-30', 'soon'"):
        adapt(frame)
    with pytest.raises(ValueError, match="date_from"):
        adapt(_panel(1, 4), date_from="03/01/2022")


def test_missing_forward_columns_are_recomputed_from_close_before_null_states_drop():
    frame = _panel(2, 30, seed=5)
    states = np.arange(60) % 3
    frame = frame.with_columns(
        pl.Series("cluster_id", np.where(np.arange(60) == 12, -99, states))
    ).with_columns(
        pl.when(pl.col("cluster_id") == -99)
        .then(None)
        .otherwise(pl.col("cluster_id"))
        .alias("cluster_id")
    )
    out = adapt(frame.with_columns(pl.lit(0.5).alias("fwd_ret_5")))  # one label present only
    expected = add_forward_labels(frame).filter(pl.col("cluster_id").is_not_null())
    assert out.summary["forward_recomputed"] is True
    assert out.summary["rows_dropped_null_state"] == 1
    for col in FORWARD_COLUMNS:
        assert out.frame[col].to_list() == pytest.approx(expected[col].to_list(), nan_ok=True)
    # row 7 of ticker 0 reads the close of row 12 (null state) for its 5-day return
    close = frame["close"].to_numpy()
    row7 = out.frame.filter(pl.col("trade_date") == D0 + timedelta(days=7)).row(0, named=True)
    assert row7["fwd_ret_5"] == pytest.approx(close[12] / close[7] - 1)


def test_forward_values_are_finite_or_null_and_kept_when_all_present():
    frame = _panel(1, 4).with_columns(
        pl.Series(c, [0.1, float("nan"), float("inf"), None]) for c in FORWARD_COLUMNS
    )
    out = adapt(frame)
    assert out.summary["forward_recomputed"] is False
    for c in FORWARD_COLUMNS:
        assert out.frame[c].to_list() == [0.1, None, None, None]


def test_date_bounds_are_inclusive_and_counted():
    out = adapt(_panel(2, 10), date_from="2022-03-03", date_to="2022-03-05")
    assert out.frame["trade_date"].unique().sort().to_list() == [
        date(2022, 3, 3),
        date(2022, 3, 4),
        date(2022, 3, 5),
    ]
    assert out.summary["rows_dropped_date_range"] == 14
    assert out.summary["rows"] == 6 and out.summary["ticker_count"] == 2


def test_read_state_file_reads_parquet_and_csv_and_refuses_others(tmp_path):
    frame = _panel(2, 5)
    frame.write_parquet(tmp_path / "s.parquet")
    frame.write_csv(tmp_path / "s.csv")
    assert read_state_file(tmp_path / "s.parquet").equals(frame)
    from_csv = adapt(read_state_file(tmp_path / "s.csv")).frame
    assert from_csv.select("ticker", "trade_date", "state_id").equals(
        adapt(frame).frame.select("ticker", "trade_date", "state_id")
    )
    with pytest.raises(ValueError, match=r"s\.txt"):
        read_state_file(tmp_path / "s.txt")


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["aa", "bb", " cc", "DD"]),
            st.integers(0, 30),
            st.one_of(st.none(), st.integers(-2, 4)),
            st.floats(-0.5, 0.5) | st.just(float("nan")),
        ),
        max_size=40,
        unique_by=lambda r: (r[0].strip().upper(), r[1]),
    )
)
def test_adapted_frame_invariants(rows):
    frame = pl.DataFrame(
        {
            "ticker": [r[0] for r in rows],
            "trade_date": [D0 + timedelta(days=r[1]) for r in rows],
            "cluster_id": pl.Series([r[2] for r in rows], dtype=pl.Int64),
            **{c: pl.Series([r[3] for r in rows], dtype=pl.Float64) for c in FORWARD_COLUMNS},
        },
        schema_overrides={"ticker": pl.Utf8, "trade_date": pl.Date},
    )
    out = adapt(frame)
    f = out.frame
    assert f["state_id"].dtype == pl.Int32 and f["state_id"].null_count() == 0
    assert f.height == len(rows) - out.summary["rows_dropped_null_state"]
    assert out.summary["rows_dropped_null_state"] == sum(r[2] is None for r in rows)
    assert f.select("ticker", "trade_date").equals(f.select("ticker", "trade_date").sort(pl.all()))
    assert all(t == t.strip().upper() for t in f["ticker"])
    for c in FORWARD_COLUMNS:
        assert f[c].is_nan().sum() == 0


def test_null_ticker_raises_and_tickers_are_normalised():
    frame = _panel(1, 3).with_columns(pl.Series("ticker", [" ab.us", "ab.US", None]))
    with pytest.raises(ValueError, match="1 rows have a null ticker"):
        adapt(frame)
    ok = adapt(frame.head(2).with_columns(pl.Series("trade_date", [D0, D0 + timedelta(1)])))
    assert ok.frame["ticker"].to_list() == ["AB.US", "AB.US"]
