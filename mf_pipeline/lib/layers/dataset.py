"""ML dataset export v1 (spec/etl.md §9) as pure functions, no Dagster and no file I/O.

The caller (asset/CLI) reads the joined per-ticker panel (silver + indicators + events +
features) in batches of tickers (``plan_batches``), optionally restricted to
``sample_tickers(...)``; on each batch it applies ``select_export`` and ``sample_rows``,
appends it to the Parquet file and to an ``ExportStats``, and finally writes
``export_metadata(...)`` as JSON. Every rule works ticker by ticker, so the result does not
depend on the batch size.

Deliberate differences from the old tool (documented for docs/):
* ``--symbols-limit N`` draws a deterministic *random* sample of N tickers (``sample_tickers``,
  seeded), not the first N file paths (weakness 21: those were all NASDAQ).
* Filters are pushed into one lazy scan instead of loading every file first.
* ``--sample-frac F`` samples each ticker on its own (``sample_rows``), not the whole stack.
* An empty result keeps the real column dtypes instead of 44 String columns.
"""

import datetime as dt
import random
import re
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.layers.events import is_positive_int
from mf_pipeline.lib.layers.features import FEATURE_CALC_VERSION, FEATURE_SCHEMA_VERSION

EXPORT_COLUMNS: tuple[str, ...] = (
    # identity
    "ticker",
    "exchange",
    "trade_date",
    "trade_dt",
    "flow_state_code",
    # TMF and TTI
    "tmf_21",
    "tmf_abs",
    "tmf_slope_1",
    "tmf_slope_5",
    "tmf_slope_10",
    "tmf_curvature_1",
    "tti_proxy_v1_21",
    "tti_proxy_slope_1",
    "tti_proxy_slope_5",
    "tmf_tti_sign_agree",
    "tmf_tti_divergence",
    # flow
    "long_flow_score_20",
    "short_flow_score_20",
    "delta_flow_20",
    "flow_activity_20",
    "flow_bias_20",
    "long_burst_20",
    "short_burst_20",
    "persistence_pos_20",
    "persistence_neg_20",
    "oscillation_index_20",
    "respect_fail_balance_20",
    # recency
    "rec_tmf_zero_up_20",
    "rec_tmf_zero_down_20",
    "rec_tmf_burst_up_20",
    "rec_tmf_burst_down_20",
    # state
    "state_prev",
    "state_changed",
    "state_run_length",
    "state_transition_code",
    "bs_state_change",
    # market and metadata
    "close",
    "volume",
    "atr_14",
    "atr_pct_14",
    "dollar_volume",
    "quality_warn_count",
    "feature_calc_version",
    "feature_schema_version",
)

# rows missing any of these (those present) are dropped when drop_null_key_features is on
KEY_FEATURES: tuple[str, ...] = (
    "tmf_21",
    "long_flow_score_20",
    "delta_flow_20",
    "flow_activity_20",
)
EXPORT_SEED = 42
KEYS = ("ticker", "trade_date")
RUN_ID_PREFIX = "ml-dataset-v1"

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_iso_date(value: str | dt.date | None, name: str) -> dt.date | None:
    """``YYYY-MM-DD`` string (or a date) -> date; None stays None; anything else raises."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        raise ValueError(f"{name} must be a date (YYYY-MM-DD), got a datetime {value!r}")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be an ISO date YYYY-MM-DD, got {value!r}")


def validate_date_range(
    start_date: str | dt.date | None, end_date: str | dt.date | None
) -> tuple[dt.date | None, dt.date | None]:
    """Parse both bounds and check start <= end (either may be open)."""
    start = parse_iso_date(start_date, "start_date")
    end = parse_iso_date(end_date, "end_date")
    if start is not None and end is not None and start > end:
        raise ValueError(f"start_date {start} is after end_date {end}")
    return start, end


def validate_symbols_limit(n: int | None) -> int | None:
    """``symbols_limit`` must be None or an integer >= 1."""
    if n is None:
        return None
    if not is_positive_int(n):
        raise ValueError(f"symbols_limit must be an integer >= 1, got {n!r}")
    return int(n)


def validate_sample_frac(frac: float | None) -> float | None:
    """``sample_frac`` must be None or in (0, 1]."""
    if frac is None:
        return None
    if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 < frac <= 1:
        raise ValueError(f"sample_frac must be in (0, 1], got {frac!r}")
    return float(frac)


def select_export(
    features_panel: pl.LazyFrame,
    start_date: str | dt.date | None = None,
    end_date: str | dt.date | None = None,
    drop_null_key_features: bool = True,
    *,
    tickers: Sequence[str] | None = None,
) -> pl.LazyFrame:
    """The §9 export columns and row filters over the joined panel, lazily.

    Keeps whichever of ``EXPORT_COLUMNS`` exist (missing ones are skipped, as before), in
    that order; keeps ``start_date <= trade_date <= end_date`` (inclusive, either open);
    then, if ``drop_null_key_features``, drops rows where any present ``KEY_FEATURES`` column
    is null (in practice the first 20 warm-up bars of each ticker). ``tickers`` restricts
    the export to those tickers (e.g. the result of ``sample_tickers``).
    """
    start, end = validate_date_range(start_date, end_date)
    names = features_panel.collect_schema().names()
    for col in ("ticker", "trade_date"):
        if col not in names:
            raise ValueError(f"select_export: the panel has no {col!r} column")
    lf = features_panel.select([c for c in EXPORT_COLUMNS if c in names])
    if tickers is not None:
        lf = lf.filter(pl.col("ticker").is_in(list(tickers)))
    if start is not None:
        lf = lf.filter(pl.col("trade_date") >= start)
    if end is not None:
        lf = lf.filter(pl.col("trade_date") <= end)
    if drop_null_key_features:
        keys = [c for c in KEY_FEATURES if c in names]
        if keys:
            lf = lf.filter(pl.all_horizontal(pl.col(keys).is_not_null()))
    return lf


def sample_tickers(tickers: Sequence[str], n: int, seed: int = EXPORT_SEED) -> list[str]:
    """A deterministic random sample of ``n`` distinct tickers, returned sorted.

    The draw depends only on the set of tickers, ``n`` and ``seed`` (the input order and
    duplicates do not matter). All tickers are returned when ``n`` exceeds their number.
    """
    if not is_positive_int(n):
        raise ValueError(f"symbols_limit must be an integer >= 1, got {n!r}")
    n = int(n)
    universe = sorted(set(tickers))
    if n >= len(universe):
        return universe
    return sorted(random.Random(seed).sample(universe, n))


def keys_sorted(df: pl.DataFrame) -> bool:
    """True when the rows are in strictly increasing (ticker, trade_date) order (so unique)."""
    ticker, date = pl.col("ticker"), pl.col("trade_date")
    later = (ticker > ticker.shift()) | ((ticker == ticker.shift()) & (date > date.shift()))
    return bool(df.select(later.slice(1).fill_null(False).all()).item())


def sort_keys(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` by (ticker, trade_date), skipping the sort when it is already in that order."""
    return df if keys_sorted(df) else df.sort(list(KEYS), maintain_order=True)


def _ticker_rng(ticker: str, seed: int) -> np.random.Generator:
    """A generator that depends only on the ticker and the seed (crc32 is stable across runs,
    unlike ``hash``)."""
    return np.random.default_rng([seed, zlib.crc32(ticker.encode())])


def sample_rows(df: pl.DataFrame, frac: float | None, seed: int = EXPORT_SEED) -> pl.DataFrame:
    """Row sample of fraction ``frac`` without replacement, sorted by (ticker, trade_date).

    Only ``0 < frac < 1`` samples (``None`` or 1 keep every row). Each ticker is sampled on
    its own: of its ``n`` rows (by date) ``int(frac * n)`` are drawn by a generator seeded
    with ``seed`` and the ticker. A ticker's sample therefore depends only on its own rows,
    whatever else is exported with it and however the export is batched. (The old tool drew
    ``int(frac * N)`` rows over the whole stacked frame, which a batched export cannot.)
    """
    frac = validate_sample_frac(frac)
    df = sort_keys(df)
    if frac is None or frac == 1 or df.height == 0:
        return df
    keep = np.zeros(df.height, dtype=bool)
    start = 0
    for ticker, n in df.group_by("ticker", maintain_order=True).len().iter_rows():
        picked = _ticker_rng(ticker, seed).choice(n, size=int(frac * n), replace=False)
        keep[start + picked] = True
        start += n
    return df.filter(pl.Series(keep))


def plan_batches(rows: dict[str, int], batch_rows: int) -> list[list[str]]:
    """Tickers in sorted order cut into consecutive batches of about ``batch_rows`` rows
    (``rows`` per ticker, an estimate is fine); a bigger ticker gets a batch of its own."""
    if not is_positive_int(batch_rows):
        raise ValueError(f"batch_rows must be an integer >= 1, got {batch_rows!r}")
    batches: list[list[str]] = []
    total = 0
    for ticker in sorted(rows):
        if not batches or (total and total + rows[ticker] > batch_rows):
            batches.append([])
            total = 0
        batches[-1].append(ticker)
        total += rows[ticker]
    return batches


@dataclass
class ExportStats:
    """What ``export_metadata`` records, accumulated batch by batch (no frame kept)."""

    columns: list[str]
    row_count: int = 0
    tickers: set[str | None] = field(default_factory=set)
    min_date: dt.date | None = None
    max_date: dt.date | None = None

    @classmethod
    def of(cls, df: pl.DataFrame) -> "ExportStats":
        stats = cls(list(df.columns))
        stats.add(df)
        return stats

    def add(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        self.row_count += frame.height
        self.tickers.update(frame.get_column("ticker").unique().to_list())
        dates = frame.get_column("trade_date")
        # filter(None) skips a missing bound (no rows yet, or a batch of null dates)
        self.min_date = min(filter(None, (self.min_date, dates.min())), default=None)
        self.max_date = max(filter(None, (self.max_date, dates.max())), default=None)


def new_export_run_id() -> str:
    """``ml-dataset-v1-<12 hex>``, the old run id format."""
    return f"{RUN_ID_PREFIX}-{uuid.uuid4().hex[:12]}"


def _iso(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def export_metadata(
    data: pl.DataFrame | ExportStats,
    *,
    run_id: str,
    dataset_path: str,
    start_date: str | dt.date | None = None,
    end_date: str | dt.date | None = None,
    symbols_limit: int | None = None,
    sample_frac: float | None = None,
    drop_null_key_features: bool = True,
    read_errors: int = 0,
    generated_ts: dt.datetime | None = None,
) -> dict[str, Any]:
    """The §9 ``metadata.json`` content for the exported rows (JSON-ready values): a whole
    frame, or the ``ExportStats`` of the batches written."""
    start, end = validate_date_range(start_date, end_date)
    validate_symbols_limit(symbols_limit)
    validate_sample_frac(sample_frac)
    stats = data if isinstance(data, ExportStats) else ExportStats.of(data)
    ts = generated_ts or dt.datetime.now(dt.UTC)
    return {
        "run_id": run_id,
        "generated_ts": ts.astimezone(dt.UTC).isoformat(),
        "row_count": stats.row_count,
        "symbol_count": len(stats.tickers),
        "columns": stats.columns,
        "global_min_trade_date": _iso(stats.min_date),
        "global_max_trade_date": _iso(stats.max_date),
        "feature_calc_version": FEATURE_CALC_VERSION,
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "filters": {
            "start_date": _iso(start),
            "end_date": _iso(end),
            "symbols_limit": symbols_limit,
            "sample_frac": sample_frac,
            "drop_null_key_features": drop_null_key_features,
        },
        "read_errors": read_errors,
        "dataset_path": str(dataset_path),
    }
