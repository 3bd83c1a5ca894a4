"""ML dataset export rules (spec/etl.md §9): column selection, filters, sampling, metadata."""

import datetime as dt
import itertools
import json

import polars as pl
import pyarrow.parquet as pq
import pytest

from mf_pipeline.lib import lake
from mf_pipeline.lib.layers.dataset import (
    EXPORT_COLUMNS,
    export_metadata,
    keys_sorted,
    new_export_run_id,
    plan_batches,
    sample_rows,
    sample_tickers,
    select_export,
)
from mf_pipeline.lib.settings import ParquetSettings
from mf_pipeline.lib.steps import panel_batches
from mf_pipeline.lib.steps.dataset_step import export_ml_dataset, export_root


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
    assert a.join(df, on=df.columns, how="anti", nulls_equal=True).height == 0  # input rows
    for (ticker,), rows in df.group_by("ticker"):  # each ticker drawn alone, int(frac * n)
        assert a.filter(pl.col("ticker") == ticker).equals(sample_rows(rows, 0.3))
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


# --- the batched export over a lake on disk -------------------------------------------------

PANEL_LAYERS = ("features", "events", "indicators", "silver")
# "A" < "A.US" < "AB.US" by ticker but not by shard (11, 01, 07); both exchanges interleave
LAKE_TICKERS = (("AB.US", "NYSE"), ("A.US", "NASDAQ"), ("A", "NYSE"), ("ZZ.US", "NASDAQ"),
                ("B.US", "NASDAQ"), ("C.US", "NYSE"))


def _layer_rows(ticker: str, exchange: str, days: int, offset: int) -> dict[str, pl.DataFrame]:
    """One ticker's four layer frames over the same ``days`` bars (warm-up null in tmf_21)."""
    dates = [dt.date(2021, 1, 4) + dt.timedelta(days=offset + i) for i in range(days)]
    keys = {"ticker": [ticker] * days, "exchange": [exchange] * days, "trade_date": dates}
    seed = sum(map(ord, ticker))
    values = [float((seed * (i + 3)) % 17) for i in range(days)]
    f32, i8 = pl.Float32, pl.Int8
    return {
        "features": pl.DataFrame({**keys, "long_flow_score_20": values, "delta_flow_20": values,
                                  "flow_activity_20": values, "state_prev": [1] * days,
                                  "feature_calc_version": ["gold_features_v1"] * days},
                                 schema_overrides={"long_flow_score_20": f32, "state_prev": i8}),
        "events": pl.DataFrame({**keys, "flow_state_code": [i % 5 for i in range(days)],
                                "flow_state_label": ["S0"] * days},
                               schema_overrides={"flow_state_code": i8}),
        "indicators": pl.DataFrame({**keys, "tmf_21": [None if i < 2 else v / 17
                                                       for i, v in enumerate(values)],
                                    "close": [-1.0] * days},  # silver's close is not taken
                                   schema_overrides={"tmf_21": f32}),
        "silver": pl.DataFrame({**keys, "trade_dt": [dt.datetime(d.year, d.month, d.day)
                                                     for d in dates],
                                "close": [10 + v for v in values],
                                "quality_warn_count": [0] * days},
                               schema_overrides={"close": f32}),
    }


def _write_lake(settings, tickers=LAKE_TICKERS, days: int = 9) -> None:
    """The four layers for ``tickers``, one commit per ticker and layer; the last ticker also
    gets later bars appended by another commit (its rows in two files per layer)."""
    for index, (ticker, exchange) in enumerate(tickers):
        for layer, frame in _layer_rows(ticker, exchange, days + index, 0).items():
            lake.write_symbol_files(frame, lake.LAYERS[layer].root(settings))
    ticker, exchange = tickers[-1]
    for layer, frame in _layer_rows(ticker, exchange, 3, days + len(tickers)).items():
        root = lake.LAYERS[layer].root(settings)
        lake.write_symbol_files(frame, root, append=True)
        assert len(lake.snapshot(root).of([ticker]).files()) == 2


def _reference(settings, tickers=None, start=None, end=None) -> pl.DataFrame:
    """Today's export rows: the whole panel joined, filtered, collected and sorted."""
    panel = lake.scan_panel(settings, PANEL_LAYERS, EXPORT_COLUMNS, tickers)
    return select_export(panel, start, end, True).collect().sort("ticker", "trade_date")


def _export(settings, batch_rows: int, **options) -> tuple[pl.DataFrame, dict]:
    outcome = export_ml_dataset(settings, f"run-{batch_rows}", batch_rows=batch_rows, **options)
    frame = pl.read_parquet(outcome.dataset_path)
    meta = {k: v for k, v in outcome.metadata.items()
            if k not in ("run_id", "generated_ts", "dataset_path")}
    assert meta["row_count"] == frame.height and meta["columns"] == frame.columns
    return frame, meta


@pytest.fixture
def lake_settings(isolated, tmp_path):
    settings = isolated(tmp_path / "raw")
    _write_lake(settings)
    return settings


@pytest.mark.parametrize("options", [{}, {"start_date": "2021-01-07", "end_date": "2021-01-12"},
                                     {"symbols_limit": 3}])
def test_export_equals_the_joined_panel_whatever_the_batch_size(lake_settings, options) -> None:
    whole, meta = _export(lake_settings, 10**9, **options)
    tickers = (sample_tickers([t for t, _ in LAKE_TICKERS], options["symbols_limit"])
               if "symbols_limit" in options else None)
    expected = _reference(lake_settings, tickers, options.get("start_date"),
                          options.get("end_date"))
    assert whole.equals(expected) and whole.schema == expected.schema
    assert whole.height > 0 and keys_sorted(whole)
    assert meta["symbol_count"] == expected["ticker"].n_unique()
    assert meta["global_min_trade_date"] == expected["trade_date"].min().isoformat()
    assert meta["global_max_trade_date"] == expected["trade_date"].max().isoformat()
    for batch_rows in (1, 12, 40):  # one ticker per batch, a few, about half
        batched, batched_meta = _export(lake_settings, batch_rows, **options)
        assert batched.equals(whole) and batched.schema == whole.schema
        assert batched_meta == meta


def test_export_row_order_is_ticker_then_date(lake_settings) -> None:
    frame, _ = _export(lake_settings, 1)
    assert frame["ticker"].unique(maintain_order=True).to_list() == sorted(
        t for t, _ in LAKE_TICKERS)
    assert frame.equals(frame.sort("ticker", "trade_date"))
    last = frame.filter(pl.col("ticker") == "C.US")["trade_date"]  # base + appended rows
    assert last.is_sorted() and last.n_unique() == last.len() == (9 + 5 - 2) + (3 - 2)


def test_export_with_a_ticker_missing_from_layers(lake_settings) -> None:
    """Left join semantics: the missing layers' columns are null for that ticker only; a
    layer that lost one row of a ticker still joins on the keys."""
    for layer, ticker in (("events", "A.US"), ("silver", "A.US"), ("silver", "B.US")):
        lake.remove_symbol_files(lake.LAYERS[layer].root(lake_settings), [ticker])
    root = lake.LAYERS["indicators"].root(lake_settings)
    zz = lake.read_tickers(root, ["ZZ.US"])  # 12 bars, the first 2 without tmf_21
    lake.write_symbol_files(zz.head(zz.height - 1), root)  # loses its last bar in indicators
    expected = _reference(lake_settings)
    zz_dates = expected.filter(pl.col("ticker") == "ZZ.US")["trade_date"]
    assert zz_dates.to_list() == [dt.date(2021, 1, 6) + dt.timedelta(days=i) for i in range(9)]
    gone = expected.filter(pl.col("ticker") == "A.US")
    assert gone["flow_state_code"].null_count() == gone["trade_dt"].null_count() == gone.height
    no_silver = expected.filter(pl.col("trade_dt").is_null())["ticker"].unique().sort()
    assert gone.height > 0 and no_silver.to_list() == ["A.US", "B.US"]
    # batch_rows=1: A.US's batch has no events nor silver rows at all, yet gets their columns
    for batch_rows in (1, 10**9):
        frame, meta = _export(lake_settings, batch_rows)
        assert frame.equals(expected) and frame.schema == expected.schema
        assert meta["symbol_count"] == 6


def test_export_of_an_empty_lake(isolated, tmp_path) -> None:
    frame, meta = _export(isolated(tmp_path / "raw"), 1)
    assert frame.height == 0 and frame.columns == list(EXPORT_COLUMNS)
    assert set(frame.schema.values()) == {pl.String}
    assert meta["row_count"] == meta["symbol_count"] == 0
    assert meta["global_min_trade_date"] is None and meta["columns"] == list(EXPORT_COLUMNS)


def test_export_with_no_row_left_keeps_the_dtypes(lake_settings) -> None:
    frame, meta = _export(lake_settings, 1, start_date="2030-01-01")
    assert frame.height == 0 and frame.schema == _reference(lake_settings).schema
    assert meta["row_count"] == meta["symbol_count"] == 0
    assert meta["global_max_trade_date"] is None


def test_export_sample_is_per_ticker_and_batch_independent(lake_settings) -> None:
    whole, meta = _export(lake_settings, 10**9, sample_frac=0.5)
    full = _reference(lake_settings)
    assert whole.join(full, on=full.columns, how="anti", nulls_equal=True).height == 0
    for ticker, rows in full.group_by("ticker"):
        picked = whole.filter(pl.col("ticker") == ticker[0])
        assert picked.height == int(0.5 * rows.height)
        assert picked.equals(sample_rows(rows, 0.5))  # the ticker alone draws the same rows
    batched, batched_meta = _export(lake_settings, 1, sample_frac=0.5)
    assert batched.equals(whole) and batched_meta == meta
    assert meta["filters"]["sample_frac"] == 0.5


def test_plan_batches_and_keys_sorted() -> None:
    rows = {"B": 5, "A": 3, "D": 20, "C": 1}
    assert plan_batches(rows, 8) == [["A", "B"], ["C"], ["D"]]
    assert plan_batches(rows, 10**6) == [["A", "B", "C", "D"]]
    assert plan_batches(rows, 1) == [["A"], ["B"], ["C"], ["D"]]
    with pytest.raises(ValueError, match="batch_rows"):
        plan_batches(rows, 0)
    df = panel(days=3)
    assert keys_sorted(df) and keys_sorted(df.head(1)) and keys_sorted(df.head(0))
    assert not keys_sorted(df.reverse()) and not keys_sorted(pl.concat([df, df.tail(1)]))


@pytest.mark.parametrize(("compression", "codec"), [("zstd", "ZSTD"), ("gzip", "GZIP"),
                                                    ("none", "UNCOMPRESSED")])
def test_export_honours_the_parquet_settings(lake_settings, compression, codec) -> None:
    parquet = ParquetSettings(compression=compression, statistics=compression != "none")
    settings = lake_settings.model_copy(update={"parquet": parquet})
    meta = pq.read_metadata(export_ml_dataset(settings, "run-codec", batch_rows=12).dataset_path)
    chunks = [meta.row_group(g).column(c)
              for g in range(meta.num_row_groups) for c in range(meta.num_columns)]
    assert {chunk.compression for chunk in chunks} == {codec}
    assert {chunk.is_stats_set for chunk in chunks} == {parquet.statistics}


def test_a_batch_failing_mid_export_leaves_no_file(lake_settings, monkeypatch) -> None:
    """The error of a batch read after others were encoded comes out of the sink as it is,
    and the atomic write leaves neither the dataset nor its temp file."""
    read_batch, calls = panel_batches.read_batch, itertools.count()

    def failing_third(*args, **kwargs):
        if next(calls) == 2:
            raise OSError("disk gone")
        return read_batch(*args, **kwargs)

    monkeypatch.setattr(panel_batches, "read_batch", failing_third)
    with pytest.raises(OSError, match="disk gone"):
        export_ml_dataset(lake_settings, "run-fail", batch_rows=1)
    assert not [path for path in export_root(lake_settings).rglob("*") if path.is_file()]
