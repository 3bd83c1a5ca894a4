"""Backtest input adapter: a FLOW, HMM or CLUSTER state file -> the common bar frame (spec §1.1).

The output is one row per (ticker, trade_date), sorted, with prices as Float64, the state as
``state_source``/``state_id``/``state_label`` and neutral mapping columns that
:func:`mf_pipeline.lib.backtest.mapping.map_states` fills in later.

Differences from the old tool, on purpose:

* HMM input trades ``hmm_state_filtered`` (the forward-filtered state: bars <= t) by default.
  The Viterbi ``hmm_state`` is decoded over the whole sequence, so the state at t depends on
  later bars (fault 5); it is accepted only when the caller asks for it with
  ``state_col="hmm_state"`` and labels the result in-sample. ``confidence`` follows the state:
  ``hmm_prob_filtered_max`` for the filtered state.
* A ``Datetime`` ``trade_date`` is reduced to its date (the old text parse turned it into null
  and dropped every row).
* Duplicates are detected on the trimmed, upper-cased ticker (the old tool deduplicated the raw
  text first, so ``aaa``/``AAA`` on the same day both survived as two rows of ``AAA``, which
  breaks the one-row-per-day rule every later step relies on).

Kept as in the old tool: non-parsable dates, prices and states become null and are dropped;
a null price counts both as a missing essential and as a bad (non-finite) price.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl

INPUT_TYPES: tuple[str, ...] = ("flow", "hmm", "cluster")
HMM_CAUSAL_STATE = "hmm_state_filtered"
HMM_VITERBI_STATE = "hmm_state"
DEFAULT_STATE_COLUMN: dict[str, str] = {
    "flow": "flow_state_code",
    "hmm": HMM_CAUSAL_STATE,
    "cluster": "cluster_id",
}
STATE_SOURCE: dict[str, str] = {"flow": "FLOW", "hmm": "HMM", "cluster": "CLUSTER"}
FLOW_STATE_LABELS: dict[int, str] = {
    0: "S0_QUIET",
    1: "S1_EARLY_DEMAND",
    2: "S2_PERSISTENT_DEMAND",
    3: "S3_EARLY_SUPPLY",
    4: "S4_PERSISTENT_SUPPLY",
}
PRICE_COLS: tuple[str, ...] = ("open", "high", "low", "close")
ESSENTIAL_COLS: tuple[str, ...] = ("ticker", "trade_date", *PRICE_COLS, "state_id")
# copied through for reports and execution filters; nothing in the signal path reads fwd_ret_10
CARRIED_COLS: dict[str, pl.DataType] = {
    "volume": pl.Float64(),
    "atr_pct_14": pl.Float64(),
    "fwd_ret_10": pl.Float64(),
    "timeframe": pl.Utf8(),
}
OUTPUT_COLS: tuple[str, ...] = (
    "ticker", "exchange", "trade_date", "trade_dt", *PRICE_COLS, "state_source", "state_id",
    "state_label", "state_direction_hint", "state_class", "state_score", "signal_eligible",
    "confidence", "row_id", "run_id", "built_ts", *CARRIED_COLS,
)  # fmt: skip


READ_COLS: tuple[str, ...] = (
    "ticker", "exchange", "trade_date", "trade_dt", *PRICE_COLS, *DEFAULT_STATE_COLUMN.values(),
    HMM_VITERBI_STATE, "hmm_state_prob_max", "hmm_prob_filtered_max", "cluster_prob_max",
    "run_id", *CARRIED_COLS,
)  # fmt: skip
"""Every column :func:`normalize` or the overlay join may read (a Parquet read projects them)."""


def read_input(path: str | Path, extra: tuple[str, ...] = (),
               input_type: str | None = None) -> pl.DataFrame:  # fmt: skip
    """Read a ``.parquet`` (only the :data:`READ_COLS` and ``extra`` columns it has; with
    ``input_type``, of the state columns only that type's) or ``.csv`` (dates inferred)
    backtest input; other types are errors."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        wanted = set(READ_COLS) | set(extra)
        if input_type is not None:
            others = {c for t, c in DEFAULT_STATE_COLUMN.items() if t != input_type}
            wanted -= (others | {HMM_VITERBI_STATE}) - set(extra)
        names = pl.read_parquet_schema(path)
        return pl.read_parquet(path, columns=[c for c in names if c in wanted])
    if suffix == ".csv":
        return pl.read_csv(path, try_parse_dates=True, infer_schema_length=10_000)
    raise ValueError(f"{path}: unsupported backtest input type {suffix!r} (use .parquet or .csv)")


def _state_column(columns: list[str], input_type: str, state_col: str | None, source: str) -> str:
    """The column holding the state: ``state_col`` if given, else the source's default."""
    col = state_col or DEFAULT_STATE_COLUMN[input_type]
    if col in columns:
        return col
    if state_col is None and input_type == "hmm":
        raise ValueError(
            f"{source}: HMM input has no {HMM_CAUSAL_STATE!r} column (the causal, forward-"
            f"filtered state). The Viterbi {HMM_VITERBI_STATE!r} is decoded over the whole "
            "sequence, so its state at t looks ahead at later bars; to backtest it anyway pass "
            f"state_col={HMM_VITERBI_STATE!r} explicitly and treat the result as in-sample"
        )
    raise ValueError(f"{source}: {input_type.upper()} input requires the column {col!r}")


def _confidence(columns: list[str], state_col: str) -> pl.Expr:
    """Probability of the traded state: the filtered one for filtered HMM states first."""
    chain = ["hmm_state_prob_max", "cluster_prob_max"]
    if state_col == HMM_CAUSAL_STATE:
        chain.insert(0, "hmm_prob_filtered_max")
    for col in chain:
        if col in columns:
            return pl.col(col).cast(pl.Float64, strict=False).alias("confidence")
    return pl.lit(None, dtype=pl.Float64).alias("confidence")


def _trade_date(dtype: pl.DataType) -> pl.Expr:
    col = pl.col("trade_date")
    if dtype == pl.Date:
        return col
    if isinstance(dtype, pl.Datetime):
        return col.dt.date()
    return col.cast(pl.Utf8, strict=False).str.to_date("%Y-%m-%d", strict=False)


def _trade_dt(df: pl.DataFrame) -> pl.Expr:
    """``trade_dt`` as a datetime (null when absent or unparsable); only a dedupe tie-break."""
    if "trade_dt" not in df.columns:
        return pl.lit(None, dtype=pl.Datetime("us")).alias("trade_dt")
    dtype = df.schema["trade_dt"]
    if isinstance(dtype, pl.Datetime):
        return pl.col("trade_dt")
    if dtype == pl.Utf8:
        try:
            df["trade_dt"].str.to_datetime(time_unit="us", strict=False)
        except pl.exceptions.ComputeError:
            return pl.lit(None, dtype=pl.Datetime("us")).alias("trade_dt")
        return pl.col("trade_dt").str.to_datetime(time_unit="us", strict=False)
    return pl.col("trade_dt").cast(pl.Datetime("us"), strict=False)


def _text(frame: pl.DataFrame, col: str) -> pl.Series:
    """``col`` as trimmed upper-case text. Cleaned on the distinct values (a few hundred
    tickers) and replaced only where they change: ~15 ms instead of ~85 ms per million rows."""
    values = frame[col].cast(pl.Utf8)
    distinct = values.unique()
    clean = distinct.str.strip_chars().str.to_uppercase()
    changed = (distinct != clean).fill_null(False)
    if changed.any():
        values = values.replace(distinct.filter(changed), clean.filter(changed))
    return values.alias(col)


def normalize(
    frame: pl.DataFrame,
    input_type: str,
    input_file: str | Path | None = None,
    state_col: str | None = None,
    row_ids: bool = True,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Normalise a raw state frame (spec §1.1 steps 1-8); return it and the adapter summary.

    ``state_col`` overrides the source's state column (HMM default ``hmm_state_filtered``;
    ``"hmm_state"`` is the in-sample Viterbi path). Errors name ``input_file``. ``row_ids``
    false leaves ``row_id`` null: a quarter of the time on a million rows, and only the
    exported joined rows show it.
    """
    if input_type not in INPUT_TYPES:
        raise ValueError(f"input_type must be one of {INPUT_TYPES}, got {input_type!r}")
    source = str(input_file) if input_file is not None else "backtest input frame"
    cols = frame.columns
    for required in ("trade_date", "close"):
        if required not in cols:
            raise ValueError(f"{source}: input is missing the required column {required!r}")
    state = _state_column(cols, input_type, state_col, source)
    if "ticker" not in cols:
        raise ValueError(f"{source}: input is missing the required column 'ticker'")
    rows_in = frame.height
    derived = {f"derived_{c}_from_close_rows": 0 if c in cols else rows_in for c in PRICE_COLS[:3]}

    state_id = pl.col(state).cast(pl.Int32, strict=False)
    if input_type == "flow":
        label = state_id.replace_strict(
            FLOW_STATE_LABELS, default="FLOW_UNKNOWN", return_dtype=pl.Utf8
        )
    else:  # "HMM_<id>": formatted once per distinct state, then looked up per row
        ids = frame.select(state_id.unique().drop_nulls()).to_series().to_list()
        label = state_id.replace_strict(
            {i: f"{STATE_SOURCE[input_type]}_{i}" for i in ids}, default=None,
            return_dtype=pl.Utf8)
    df = frame.select(
        _text(frame, "ticker"),
        _text(frame, "exchange") if "exchange" in cols else pl.lit("UNKNOWN").alias("exchange"),
        _trade_date(frame.schema["trade_date"]).alias("trade_date"),
        _trade_dt(frame).alias("trade_dt"),
        *[pl.col(c if c in cols else "close").cast(pl.Float64, strict=False).alias(c)
          for c in PRICE_COLS],
        pl.lit(STATE_SOURCE[input_type]).alias("state_source"),
        state_id.alias("state_id"),
        label.alias("state_label"),
        pl.lit("UNCONFIRMED").alias("state_direction_hint"),
        pl.lit("NA").alias("state_class"),
        pl.lit(None, dtype=pl.Float64).alias("state_score"),
        pl.lit(False).alias("signal_eligible"),
        _confidence(cols, state),
        (pl.col("run_id").cast(pl.Utf8) if "run_id" in cols
         else pl.lit(None, dtype=pl.Utf8)).alias("run_id"),
        pl.lit(dt.datetime.now(dt.UTC), dtype=pl.Datetime("us", "UTC")).alias("built_ts"),
        *[(pl.col(c).cast(t, strict=False) if c in cols else pl.lit(None, dtype=t)).alias(c)
          for c, t in CARRIED_COLS.items()],
    )  # fmt: skip

    missing = pl.any_horizontal(pl.col(c).is_null() for c in ESSENTIAL_COLS)
    bad_price = pl.any_horizontal(~pl.col(c).is_finite() for c in PRICE_COLS).fill_null(True)
    counts = df.select(missing.sum().alias("missing"), bad_price.sum().alias("bad"),
                       (missing | bad_price).sum().alias("either"))
    if counts["either"][0]:  # a filter copies every column: only when a row goes
        df = df.filter(~missing & ~bad_price)
    before_dedupe = df.height
    # sorted input with unique days (the usual case) skips the sort; otherwise the first row
    # of each (ticker, trade_date) run after the sort is the one to keep
    ticker, day = pl.col("ticker"), pl.col("trade_date")
    new_ticker = ticker != ticker.shift(1)
    in_order = (ticker > ticker.shift(1)) | ((ticker == ticker.shift(1)) & (day > day.shift(1)))
    if not df.select(in_order.fill_null(True).all()).item():
        df = df.sort("ticker", "trade_date", "trade_dt", maintain_order=True)
        df = df.filter((new_ticker | (day != day.shift(1))).fill_null(True))
    row_id = pl.concat_str(
        [pl.col("ticker"), pl.col("trade_date").cast(pl.Utf8), pl.col("state_source"),
         pl.col("state_id").cast(pl.Utf8)],
        separator="|",
    )  # fmt: skip
    if not row_ids:
        row_id = pl.lit(None, dtype=pl.Utf8)
    out = df.with_columns(row_id.alias("row_id")).select(OUTPUT_COLS)
    summary: dict[str, Any] = {
        "input_file": None if input_file is None else str(input_file),
        "input_type": input_type,
        "rows_in": rows_in,
        "rows_out": out.height,
        "rows_dropped_missing_essential": int(counts["missing"][0] or 0),
        "rows_dropped_bad_price": int(counts["bad"][0] or 0),
        "rows_deduped_ticker_date": before_dedupe - out.height,
        **derived,
        "ticker_count": out["ticker"].n_unique() if out.height else 0,
        "state_count": out["state_id"].n_unique() if out.height else 0,
        "min_date": out["trade_date"].min().isoformat() if out.height else None,
        "max_date": out["trade_date"].max().isoformat() if out.height else None,
    }
    return out, summary
