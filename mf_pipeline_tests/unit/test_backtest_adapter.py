"""Backtest input adapter (spec §1.1): every normalisation step on hand-made frames."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest

from mf_pipeline.lib.backtest.adapter import OUTPUT_COLS, normalize, read_input


def d(day: int) -> str:
    return f"2024-01-{day:02d}"


def flow_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ticker": [" aaa", "aaa", "bbb", "bbb", "bbb", "ccc"],
            "exchange": ["nyse ", "nyse", "nasdaq", "nasdaq", "nasdaq", "amex"],
            "trade_date": [d(2), d(3), d(2), d(3), d(4), d(2)],
            "close": [10.0, 11.0, 20.0, 21.0, 22.0, 30.0],
            "flow_state_code": [0, 1, 2, 3, 4, 7],
        }
    )


def test_flow_labels_text_derived_prices_and_output_schema() -> None:
    out, summary = normalize(flow_frame(), "flow", "flow.parquet")
    assert out.columns == list(OUTPUT_COLS)
    assert out["ticker"].to_list() == ["AAA", "AAA", "BBB", "BBB", "BBB", "CCC"]
    assert out["exchange"].to_list() == ["NYSE", "NYSE", "NASDAQ", "NASDAQ", "NASDAQ", "AMEX"]
    assert out["state_label"].to_list() == [
        "S0_QUIET", "S1_EARLY_DEMAND", "S2_PERSISTENT_DEMAND", "S3_EARLY_SUPPLY",
        "S4_PERSISTENT_SUPPLY", "FLOW_UNKNOWN",
    ]  # fmt: skip
    # open/high/low absent -> copies of close
    for col in ("open", "high", "low"):
        assert out[col].to_list() == out["close"].to_list()
    assert out["row_id"][0] == "AAA|2024-01-02|FLOW|0"
    assert out["state_source"].unique().to_list() == ["FLOW"]
    assert out.schema["state_id"] == pl.Int32
    assert out.schema["trade_date"] == pl.Date
    assert out.schema["close"] == pl.Float64
    assert out["state_direction_hint"].unique().to_list() == ["UNCONFIRMED"]
    assert out["state_class"].unique().to_list() == ["NA"]
    assert out["state_score"].null_count() == 6
    assert not out["signal_eligible"].any()
    for col in ("confidence", "run_id", "trade_dt", "volume", "atr_pct_14", "fwd_ret_10",
                "timeframe"):  # fmt: skip
        assert out[col].null_count() == 6, col
    assert out.schema["built_ts"] == pl.Datetime("us", "UTC")
    assert summary == {
        "input_file": "flow.parquet",
        "input_type": "flow",
        "rows_in": 6,
        "rows_out": 6,
        "rows_dropped_missing_essential": 0,
        "rows_dropped_bad_price": 0,
        "rows_deduped_ticker_date": 0,
        "derived_open_from_close_rows": 6,
        "derived_high_from_close_rows": 6,
        "derived_low_from_close_rows": 6,
        "ticker_count": 3,
        "state_count": 6,
        "min_date": "2024-01-02",
        "max_date": "2024-01-04",
    }


def test_only_missing_price_columns_are_derived_and_carried_columns_copied() -> None:
    df = flow_frame().with_columns(
        open=pl.col("close") - 1, low=pl.col("close") - 2, volume=pl.lit(100),
        fwd_ret_10=pl.lit(0.5), timeframe=pl.lit("1D"), run_id=pl.lit("run-1"),
    )  # fmt: skip
    out, summary = normalize(df.drop("exchange"), "flow")
    assert summary["derived_open_from_close_rows"] == 0
    assert summary["derived_high_from_close_rows"] == 6
    assert summary["derived_low_from_close_rows"] == 0
    assert summary["input_file"] is None
    assert out["open"][0] == 9.0 and out["low"][0] == 8.0 and out["high"][0] == 10.0
    assert out["exchange"].unique().to_list() == ["UNKNOWN"]
    assert out["volume"].to_list() == [100.0] * 6 and out.schema["volume"] == pl.Float64
    assert out["fwd_ret_10"].to_list() == [0.5] * 6
    assert out["timeframe"].to_list() == ["1D"] * 6
    assert out["run_id"].to_list() == ["run-1"] * 6


def test_drop_counts_are_independent() -> None:
    nan, inf = float("nan"), float("inf")
    df = pl.DataFrame(
        {
            "ticker": ["A", None, "A", "A", "A", "A", "A", "A"],
            "trade_date": [d(1), d(2), d(3), "not a date", d(5), d(6), d(7), d(8)],
            "open": [1.0, 1.0, None, 1.0, 1.0, 1.0, 1.0, 1.0],
            "high": [1.0, 1.0, 1.0, 1.0, inf, 1.0, 1.0, 1.0],
            "low": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            "close": [1.0, 1.0, 1.0, 1.0, 1.0, nan, 1.0, 1.0],
            "cluster_id": [1, 1, 1, 1, 1, 1, None, 2],
        }
    )
    out, summary = normalize(df, "cluster", "c.csv")
    # missing: null ticker, null open, bad date, null state = 4 rows
    # bad price: null open (counted again), inf high, NaN close = 3 rows
    assert summary["rows_dropped_missing_essential"] == 4
    assert summary["rows_dropped_bad_price"] == 3
    assert summary["rows_out"] == 2
    assert out["trade_date"].to_list() == [dt.date(2024, 1, 1), dt.date(2024, 1, 8)]
    assert out["state_label"].to_list() == ["CLUSTER_1", "CLUSTER_2"]


def test_dedupe_keeps_first_by_trade_dt_on_the_normalised_ticker() -> None:
    t = dt.datetime(2024, 1, 2, 16)
    df = pl.DataFrame(
        {
            "ticker": ["AAA", "AAA", "BBB", "BBB", " bbb", "AAA"],
            "trade_date": [d(2), d(2), d(2), d(2), d(2), d(3)],
            "trade_dt": [t + dt.timedelta(hours=1), t, t, None, t, t],
            "close": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "flow_state_code": [1, 2, 1, 3, 4, 1],
        }
    )
    out, summary = normalize(df, "flow")
    # AAA: the earlier trade_dt (close 2) wins; BBB: a null trade_dt sorts first (close 4)
    assert out.select("ticker", "close").rows() == [("AAA", 2.0), ("AAA", 6.0), ("BBB", 4.0)]
    assert summary["rows_deduped_ticker_date"] == 3
    assert summary["ticker_count"] == 2


def test_hmm_uses_the_filtered_state_and_its_confidence() -> None:
    df = pl.DataFrame(
        {
            "ticker": ["A", "A"],
            "trade_date": [dt.date(2024, 1, 2), dt.date(2024, 1, 3)],
            "close": [1.0, 2.0],
            "hmm_state": [5, 6],
            "hmm_state_filtered": [1, 2],
            "hmm_state_prob_max": [0.9, 0.8],
            "hmm_prob_filtered_max": [0.6, 0.7],
        }
    )
    out, _ = normalize(df, "hmm", "decoded.parquet")
    assert out["state_id"].to_list() == [1, 2]
    assert out["state_label"].to_list() == ["HMM_1", "HMM_2"]
    assert out["confidence"].to_list() == [0.6, 0.7]
    assert out["row_id"].to_list() == ["A|2024-01-02|HMM|1", "A|2024-01-03|HMM|2"]
    viterbi, _ = normalize(df, "hmm", state_col="hmm_state")
    assert viterbi["state_id"].to_list() == [5, 6]
    assert viterbi["confidence"].to_list() == [0.9, 0.8]
    # filtered state without its own probability falls back to the smoothed one
    fallback, _ = normalize(df.drop("hmm_prob_filtered_max"), "hmm")
    assert fallback["confidence"].to_list() == [0.9, 0.8]


def test_hmm_without_filtered_state_refuses_viterbi_and_names_the_file() -> None:
    df = pl.DataFrame({"ticker": ["A"], "trade_date": [d(2)], "close": [1.0], "hmm_state": [1]})
    with pytest.raises(ValueError, match="decoded_rows.parquet") as err:
        normalize(df, "hmm", "decoded_rows.parquet")
    assert "looks ahead" in str(err.value)
    assert "state_col='hmm_state'" in str(err.value)


def test_cluster_confidence_and_datetime_trade_date() -> None:
    df = pl.DataFrame(
        {
            "ticker": ["A"],
            "trade_date": [dt.datetime(2024, 1, 2, 0, 0)],
            "close": [1.0],
            "cluster_id": [3],
            "cluster_prob_max": [0.4],
        }
    )
    out, summary = normalize(df, "cluster")
    assert out["trade_date"].to_list() == [dt.date(2024, 1, 2)]
    assert out["confidence"].to_list() == [0.4]
    assert out["state_label"].to_list() == ["CLUSTER_3"]
    assert summary["state_count"] == 1


@pytest.mark.parametrize(
    ("drop", "input_type", "needle"),
    [
        ("trade_date", "flow", "trade_date"),
        ("close", "flow", "close"),
        ("ticker", "flow", "ticker"),
        ("flow_state_code", "flow", "flow_state_code"),
        (None, "cluster", "cluster_id"),
    ],
)
def test_missing_required_columns(drop: str | None, input_type: str, needle: str) -> None:
    df = flow_frame() if drop is None else flow_frame().drop(drop)
    with pytest.raises(ValueError, match=f"in.csv.*{needle}"):
        normalize(df, input_type, "in.csv")


def test_unknown_input_type_and_empty_result() -> None:
    with pytest.raises(ValueError, match="input_type"):
        normalize(flow_frame(), "generic")
    empty, summary = normalize(flow_frame().with_columns(close=pl.lit(math.nan)), "flow")
    assert empty.height == 0
    assert summary["min_date"] is None and summary["ticker_count"] == 0


def test_read_input_parquet_csv_and_other(tmp_path) -> None:
    df = flow_frame()
    df.write_parquet(tmp_path / "x.parquet")
    df.write_csv(tmp_path / "x.csv")
    assert read_input(tmp_path / "x.parquet").equals(df)
    from_csv = read_input(tmp_path / "x.csv")
    assert from_csv.schema["trade_date"] == pl.Date
    assert normalize(from_csv, "flow")[0].height == 6
    with pytest.raises(ValueError, match="x.json"):
        read_input(tmp_path / "x.json")
