"""ML dataset export rules (spec/etl.md §9): column selection, filters, sampling, metadata."""

import datetime as dt
import json

import polars as pl
import pytest

from mf_pipeline.lib.layers.dataset import (
    EXPORT_COLUMNS,
    export_metadata,
    new_export_run_id,
    sample_rows,
    sample_tickers,
    select_export,
)


def panel(days: int = 5) -> pl.DataFrame:
    """3 tickers x ``days`` of a joined panel with a warm-up null and non-exported columns."""
    rows = []
    for ticker, exchange in (("AA.US", "NYSE"), ("BB.US", "NASDAQ"), ("CC.US", "NYSE")):
        for i in range(days):
            rows.append(
                {
                    "ticker": ticker,
                    "exchange": exchange,
                    "trade_date": dt.date(2021, 1, 4) + dt.timedelta(days=i),
                    "flow_state_code": i % 5,
                    "flow_state_label": "S0_QUIET",
                    "tmf_21": None if i == 0 else 0.1 * i,
                    "long_flow_score_20": 1.0,
                    "long_flow_score_5": 1.0,
                    "delta_flow_20": 0.5,
                    "close": 10.0 + i,
                    "feature_calc_version": "gold_features_v1",
                }
            )
    return pl.DataFrame(rows)


def test_export_columns_are_the_44_names() -> None:
    assert len(EXPORT_COLUMNS) == 44 == len(set(EXPORT_COLUMNS))
    for name in ("flow_state_label", "long_flow_score_5", "rec_tmf_respect_up_20"):
        assert name not in EXPORT_COLUMNS


def test_select_export_columns_and_filters() -> None:
    out = select_export(panel().lazy(), "2021-01-05", "2021-01-07", True).collect()
    # present export columns only, in EXPORT_COLUMNS order; others dropped
    assert out.columns == [c for c in EXPORT_COLUMNS if c in panel().columns]
    assert out.get_column("trade_date").min() == dt.date(2021, 1, 5)
    assert out.get_column("trade_date").max() == dt.date(2021, 1, 7)  # inclusive bounds
    assert out.height == 9
    # the null-key drop removes the warm-up row, which the date filter did not already remove
    kept = select_export(panel().lazy(), None, None, drop_null_key_features=True).collect()
    assert kept.height == 12 and kept.get_column("tmf_21").null_count() == 0
    everything = select_export(panel().lazy(), None, None, drop_null_key_features=False)
    assert everything.collect().height == 15
    only = select_export(panel().lazy(), dt.date(2021, 1, 4), None, False, tickers=["BB.US"])
    assert only.collect().get_column("ticker").unique().to_list() == ["BB.US"]


def test_sample_tickers_is_deterministic_random_not_first_n() -> None:
    universe = [f"T{i:03d}.US" for i in range(200)]
    picked = sample_tickers(universe, 10, seed=42)
    assert picked == sample_tickers(list(reversed(universe)) + universe[:5], 10, seed=42)
    assert len(picked) == 10 == len(set(picked)) and picked == sorted(picked)
    assert picked != universe[:10]
    assert sample_tickers(universe, 10, seed=7) != picked
    assert sample_tickers(["B", "A", "B"], 5, seed=1) == ["A", "B"]
    with pytest.raises(ValueError, match="symbols_limit"):
        sample_tickers(universe, 0, seed=1)


def test_sample_rows_fixed_seed() -> None:
    df = panel(days=40)
    a = sample_rows(df, 0.3)
    assert a.equals(sample_rows(df.reverse(), 0.3, seed=42))  # input order does not matter
    assert a.height == int(df.height * 0.3)
    assert a.equals(a.sort("ticker", "trade_date"))
    assert not a.equals(sample_rows(df, 0.3, seed=1))
    assert a.join(df, on=df.columns, how="anti").height == 0  # rows come from the input
    assert sample_rows(df, 1.0).equals(df.sort("ticker", "trade_date"))
    assert sample_rows(df, None).height == df.height
    for bad in (0, 0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="sample_frac"):
            sample_rows(df, bad)


def test_export_metadata_keys_and_values() -> None:
    df = select_export(panel().lazy(), "2021-01-05", None, True).collect()
    ts = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    meta = export_metadata(
        df,
        run_id="ml-dataset-v1-abc",
        dataset_path="/x/dataset.parquet",
        start_date="2021-01-05",
        symbols_limit=2,
        sample_frac=0.5,
        read_errors=1,
        generated_ts=ts,
    )
    assert set(meta) == {
        "run_id",
        "generated_ts",
        "row_count",
        "symbol_count",
        "columns",
        "global_min_trade_date",
        "global_max_trade_date",
        "feature_calc_version",
        "feature_schema_version",
        "filters",
        "read_errors",
        "dataset_path",
    }
    assert set(meta["filters"]) == {
        "start_date",
        "end_date",
        "symbols_limit",
        "sample_frac",
        "drop_null_key_features",
    }
    assert meta["row_count"] == 12 and meta["symbol_count"] == 3
    assert meta["global_min_trade_date"] == "2021-01-05"
    assert meta["global_max_trade_date"] == "2021-01-08"
    assert meta["filters"]["start_date"] == "2021-01-05" and meta["filters"]["end_date"] is None
    assert meta["generated_ts"] == "2026-01-02T03:04:05+00:00"
    assert meta["feature_calc_version"] == "gold_features_v1"
    json.dumps(meta)  # JSON-ready
    empty = export_metadata(df.head(0), run_id="r", dataset_path="p")
    assert empty["symbol_count"] == 0 and empty["global_min_trade_date"] is None


def test_run_id_format() -> None:
    run_id = new_export_run_id()
    assert run_id.startswith("ml-dataset-v1-") and len(run_id) == len("ml-dataset-v1-") + 12


@pytest.mark.parametrize(
    ("start", "end", "match"),
    [
        ("2021-13-01", None, "start_date"),
        ("20210101", None, "start_date"),
        ("2021/01/01", None, "start_date"),
        (None, "yesterday", "end_date"),
        ("2021-02-01", "2021-01-01", "after"),
    ],
)
def test_bad_dates_raise(start: str | None, end: str | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select_export(panel().lazy(), start, end, True)


def test_bad_metadata_arguments_raise() -> None:
    with pytest.raises(ValueError, match="symbols_limit"):
        export_metadata(panel(), run_id="r", dataset_path="p", symbols_limit=0)
    with pytest.raises(ValueError, match="sample_frac"):
        export_metadata(panel(), run_id="r", dataset_path="p", sample_frac=2)
