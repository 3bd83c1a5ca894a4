"""ML dataset export v1 (spec/etl.md §9) as pure functions, no Dagster and no file I/O.

The caller (asset/CLI) reads the joined per-ticker panel (silver + indicators + events +
features) lazily, optionally restricts it to ``sample_tickers(...)``, applies
``select_export``, collects, applies ``sample_rows``, writes the Parquet file and
``export_metadata(...)`` as JSON.

Deliberate differences from the old tool (documented for docs/):
* ``--symbols-limit N`` draws a deterministic *random* sample of N tickers (``sample_tickers``,
  seeded), not the first N file paths (weakness 21: those were all NASDAQ).
* Filters are pushed into one lazy scan instead of loading every file first.
* An empty result keeps the real column dtypes instead of 44 String columns.
"""

import datetime as dt
import random
import re
import uuid
from collections.abc import Sequence
from typing import Any

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


def sample_rows(df: pl.DataFrame, frac: float | None, seed: int = EXPORT_SEED) -> pl.DataFrame:
    """Row sample of fraction ``frac`` without replacement, then sorted by (ticker, trade_date).

    Only ``0 < frac < 1`` samples (``None`` or 1 keep every row), over the whole frame, not
    stratified by ticker. The frame is first put in the old tool's stacking order (exchange,
    prefix, ticker as in the partition paths, then date) so the same seed draws the same
    rows as the old per-file concatenation did, given the same polars sampler.
    """
    frac = validate_sample_frac(frac)
    if frac is not None and frac < 1 and df.height > 0:
        order = [pl.col("ticker").str.slice(0, 1), pl.col("ticker") + "/", "trade_date"]
        if "exchange" in df.columns:
            order.insert(0, pl.col("exchange"))
        df = df.sort(order).sample(fraction=frac, with_replacement=False, shuffle=True, seed=seed)
    return df.sort("ticker", "trade_date") if df.height else df


def new_export_run_id() -> str:
    """``ml-dataset-v1-<12 hex>``, the old run id format."""
    return f"{RUN_ID_PREFIX}-{uuid.uuid4().hex[:12]}"


def _iso(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def export_metadata(
    df: pl.DataFrame,
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
    """The §9 ``metadata.json`` content for the exported frame ``df`` (JSON-ready values)."""
    start, end = validate_date_range(start_date, end_date)
    validate_symbols_limit(symbols_limit)
    validate_sample_frac(sample_frac)
    ts = generated_ts or dt.datetime.now(dt.UTC)
    has_rows = df.height > 0
    dates = df.get_column("trade_date") if has_rows and "trade_date" in df.columns else None
    return {
        "run_id": run_id,
        "generated_ts": ts.astimezone(dt.UTC).isoformat(),
        "row_count": df.height,
        "symbol_count": df.get_column("ticker").n_unique() if has_rows else 0,
        "columns": list(df.columns),
        "global_min_trade_date": _iso(dates.min()) if dates is not None else None,
        "global_max_trade_date": _iso(dates.max()) if dates is not None else None,
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
