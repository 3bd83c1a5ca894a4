"""Adapter: any state-labelled daily frame -> the validation frame (research.md §6.1).

Differences from the old tool, each one a silent data loss there:

* State labels are cast strictly (fault #32). Integer-valued labels become Int32; string labels
  (``"bull"``, ``"calm"``) become ids 0..k-1 in sorted label order with the text kept in
  ``state_label_name`` (the old non-strict cast turned them into nulls and dropped the rows);
  non-integral floats are an error naming the column. A generic state column is labelled
  ``generic``, not ``flow``.
* HMM input is judged on ``hmm_state_filtered`` (bars <= t) when present; Viterbi states read
  future bars, and the summary says which one was used (``causal_states``).
* Unparsable dates and duplicated (ticker, trade_date) rows are errors, not nulls or silent
  double counts.
* ``sample_frac`` keeps WHOLE tickers (fault #33), so consecutive rows of a kept ticker stay
  consecutive days for the event study and the transition statistics.
* Forward outcomes are recomputed before null-state rows are dropped, so an unlabelled day
  still supplies its close to the labels of the days before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib.research.labels import FORWARD_COLUMNS, add_forward_labels

INPUT_TYPES: tuple[str, ...] = ("auto", "hmm", "cluster", "flow", "generic")
CONTEXT_COLUMNS: tuple[str, ...] = (
    "tmf_21",
    "delta_flow_20",
    "flow_activity_20",
    "flow_bias_20",
    "oscillation_index_20",
)
LEADING_COLUMNS: tuple[str, ...] = (
    "ticker",
    "trade_date",
    "state_label_type",
    "state_id",
    "state_label_name",
    "flow_state_code",
    "flow_state_label",
    "cluster_id",
    "hmm_state",
    "hmm_state_filtered",
    *FORWARD_COLUMNS,
    *CONTEXT_COLUMNS,
    "close",
    "source_run_id",
    "built_ts",
)
_TYPE_OF_COLUMN = {
    "hmm_state": "hmm",
    "hmm_state_filtered": "hmm",
    "cluster_id": "cluster",
    "cluster_label": "cluster",
    "flow_state_code": "flow",
}
_SHOW = 5  # offending values quoted in an error message


@dataclass
class Adapted:
    """The validation frame and its ``adapter_summary.json`` payload."""

    frame: pl.DataFrame
    summary: dict[str, Any]


def read_state_file(path: Path) -> pl.DataFrame:
    """Read a ``.parquet`` or ``.csv`` state file; any other suffix is an error."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pl.read_parquet(path)
    if suffix == ".csv":
        return pl.read_csv(path, infer_schema_length=10_000)
    raise ValueError(f"{path}: unsupported state file type {suffix!r} (use .parquet or .csv)")


def _resolve(columns: list[str], input_type: str, state_col: str | None) -> tuple[str, str]:
    """(resolved input type, state column). An explicit ``state_col`` decides the type under
    ``auto``; otherwise the spec's detection order, with ``hmm_state_filtered`` preferred."""
    if input_type not in INPUT_TYPES:
        raise ValueError(f"input_type must be one of {INPUT_TYPES}, got {input_type!r}")
    if state_col is not None and state_col not in columns:
        raise ValueError(f"state column {state_col!r} not found in the input")
    kind = input_type
    if kind == "auto":
        if state_col is not None:
            kind = _TYPE_OF_COLUMN.get(state_col, "generic")
        elif "hmm_state" in columns or "hmm_state_filtered" in columns:
            kind = "hmm"
        elif "cluster_id" in columns or "cluster_label" in columns:
            kind = "cluster"
        elif "flow_state_code" in columns:
            kind = "flow"
        else:
            raise ValueError(
                "cannot detect the input type: no hmm_state, cluster_id, cluster_label or "
                "flow_state_code column; pass state_col"
            )
    if state_col is not None:
        return kind, state_col
    preferred = {
        "hmm": ("hmm_state_filtered", "hmm_state"),
        "cluster": ("cluster_id", "cluster_label"),
        "flow": ("flow_state_code",),
        "generic": (),
    }[kind]
    for col in preferred:
        if col in columns:
            return kind, col
    raise ValueError(f"input_type {kind!r} needs one of the columns {preferred} or state_col")


def _state_ids(s: pl.Series) -> tuple[pl.Series, pl.Series | None]:
    """Strict Int32 state ids and, for text labels, the label text (fault #32)."""
    name = s.name
    dtype = s.dtype
    if dtype == pl.Boolean or dtype.is_integer():
        try:
            return s.cast(pl.Int32, strict=True), None
        except pl.exceptions.InvalidOperationError as exc:
            raise ValueError(f"state column {name!r} has values outside Int32") from exc
    if dtype.is_float():
        s = s.fill_nan(None)
        bad = s.filter(s.is_not_null() & (~s.is_finite() | (s.round(0) != s)))
        if bad.len():
            raise ValueError(
                f"state column {name!r} has non-integral values, e.g. "
                f"{bad.unique(maintain_order=True).head(_SHOW).to_list()}"
            )
        return s.cast(pl.Int32, strict=True), None
    if dtype in (pl.Utf8, pl.Categorical) or isinstance(dtype, pl.Enum):
        text = s.cast(pl.Utf8).str.strip_chars()
        text = pl.Series(name, text).replace("", None)
        as_int = text.cast(pl.Int64, strict=False)
        if as_int.null_count() == text.null_count():
            return _state_ids(as_int.rename(name))
        labels = text.drop_nulls().unique().sort()
        ids = text.replace_strict(
            labels, pl.int_range(labels.len(), eager=True), default=None, return_dtype=pl.Int32
        )
        return ids.rename(name), text
    raise ValueError(f"state column {name!r} has unsupported dtype {dtype}")


def _dates(s: pl.Series) -> pl.Series:
    """``trade_date`` as Date; a value that is present but not a date is an error."""
    if s.dtype == pl.Date:
        return s
    if isinstance(s.dtype, pl.Datetime):
        return s.dt.date()
    if s.dtype != pl.Utf8:
        raise ValueError(f"trade_date has unsupported dtype {s.dtype}")
    text = s.str.strip_chars().replace("", None)
    try:
        parsed = text.str.to_date(strict=False)
    except pl.exceptions.ComputeError:
        parsed = text.str.to_date("%Y-%m-%d", strict=False)
    bad = text.filter(text.is_not_null() & parsed.is_null())
    if bad.len():
        raise ValueError(
            f"trade_date has {bad.len()} unparsable values, e.g. {bad.head(_SHOW).to_list()}"
        )
    return parsed


def _tickers(s: pl.Series) -> pl.Series:
    """Trimmed, upper-cased tickers; normalised once per distinct value, not per row."""
    s = s.cast(pl.Utf8)
    distinct = s.unique()
    norm = distinct.str.strip_chars().str.to_uppercase()
    if distinct.equals(norm):
        return s
    return s.replace_strict(distinct, norm)


def _bound(value: str | None, what: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"{what} {value!r} is not a YYYY-MM-DD date") from exc


def _float_column(df: pl.DataFrame, col: str) -> pl.Expr:
    """Float64 with NaN and +-inf as null (finite-only outcomes, spec §3 step 6)."""
    if not (df[col].dtype.is_numeric() or df[col].dtype == pl.Null):
        raise ValueError(f"column {col!r} must be numeric, got {df[col].dtype}")
    x = pl.col(col).cast(pl.Float64)
    return pl.when(x.is_finite()).then(x).otherwise(None).alias(col)


def _sample_tickers(df: pl.DataFrame, frac: float, seed: int) -> tuple[pl.DataFrame, int]:
    """Keep a seeded random ``frac`` of the tickers, each with all of its rows (fault #33)."""
    tickers = df["ticker"].unique().sort()
    k = max(1, round(frac * tickers.len())) if tickers.len() else 0
    rng = np.random.default_rng(seed)
    keep = tickers.gather(np.sort(rng.choice(tickers.len(), size=k, replace=False)))
    return df.filter(pl.col("ticker").is_in(keep.implode())), k


def adapt(
    frame: pl.DataFrame,
    *,
    input_type: str = "auto",
    state_col: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    sample_frac: float | None = None,
    sample_seed: int = 42,
    input_file: str | None = None,
    metadata: dict | None = None,
) -> Adapted:
    """Normalise a state-labelled frame into the validation frame (see the module docstring).

    Output: sorted by (ticker, trade_date), one row per pair, non-null Int32 ``state_id``,
    finite-or-null forward outcomes, every input column kept (spec column order first).
    """
    if sample_frac is not None and not 0.0 < sample_frac <= 1.0:
        raise ValueError(f"sample_frac must be in (0, 1], got {sample_frac}")
    lo, hi = _bound(date_from, "date_from"), _bound(date_to, "date_to")
    kind, state_column = _resolve(frame.columns, input_type, state_col)
    for col in ("ticker", "trade_date"):
        if col not in frame.columns:
            raise ValueError(f"input has no {col!r} column")
    rows_input = frame.height

    ids, label_text = _state_ids(frame[state_column])
    if label_text is not None:
        names = label_text
    elif kind == "flow" and "flow_state_label" in frame.columns:
        names = frame["flow_state_label"].cast(pl.Utf8)
    else:
        names = pl.repeat(None, frame.height, dtype=pl.Utf8, eager=True)
    ticker = _tickers(frame["ticker"])
    if ticker.null_count():
        raise ValueError(f"{ticker.null_count()} rows have a null ticker")
    df = frame.with_columns(
        ticker.alias("ticker"),
        _dates(frame["trade_date"]).alias("trade_date"),
        ids.alias("state_id"),
        names.alias("state_label_name"),
        pl.lit(kind, dtype=pl.Utf8).alias("state_label_type"),
    ).with_columns(
        pl.coalesce("state_label_name", pl.col("state_id").cast(pl.Utf8)).alias("state_label_name")
    )
    null_dates = df["trade_date"].null_count()
    df = df.filter(pl.col("trade_date").is_not_null())
    keys = df.select("ticker", "trade_date")
    prev = keys.shift(1)
    in_order = (keys["ticker"] > prev["ticker"]) | (
        (keys["ticker"] == prev["ticker"]) & (keys["trade_date"] >= prev["trade_date"])
    )
    if not in_order.fill_null(True).all():
        df = df.sort("ticker", "trade_date")
        keys = df.select("ticker", "trade_date")
    # Sorted, a duplicated (ticker, trade_date) is a row equal to the previous one.
    dup = (keys == keys.shift(1)).select(pl.all_horizontal(pl.all()).fill_null(False))
    dup = dup.to_series()
    if dup.any():
        first = keys.filter(dup).unique(maintain_order=True).head(_SHOW)
        raise ValueError(
            f"{int(dup.sum())} rows repeat a (ticker, trade_date) of another row, e.g. "
            f"{[(t, d.isoformat()) for t, d in first.iter_rows()]}"
        )
    before_range = df.height
    if lo is not None:
        df = df.filter(pl.col("trade_date") >= lo)
    if hi is not None:
        df = df.filter(pl.col("trade_date") <= hi)
    dropped_range = before_range - df.height

    missing = [c for c in FORWARD_COLUMNS if c not in df.columns]
    recomputed = bool(missing) and "close" in df.columns
    if recomputed:
        df = add_forward_labels(df.with_columns(pl.col("close").cast(pl.Float64)))
    before_state = df.height
    df = df.filter(pl.col("state_id").is_not_null())
    dropped_state = before_state - df.height

    numeric = [c for c in (*FORWARD_COLUMNS, *CONTEXT_COLUMNS, "close") if c in df.columns]
    df = df.with_columns(_float_column(df, c) for c in numeric)
    tickers_sampled = None
    if sample_frac is not None:
        df, tickers_sampled = _sample_tickers(df, sample_frac, sample_seed)
    lead = [c for c in LEADING_COLUMNS if c in df.columns]
    df = df.select(lead + [c for c in df.columns if c not in lead])

    labels = df.group_by("state_id").agg(pl.col("state_label_name").first()).sort("state_id")
    summary: dict[str, Any] = {
        "input_file": input_file,
        "metadata": metadata,
        "input_type_requested": input_type,
        "input_type_resolved": kind,
        "state_label_type": kind,
        "state_column": state_column,
        "causal_states": {
            "hmm": state_column == "hmm_state_filtered",
            "cluster": True,
            "flow": True,
        }.get(kind),
        "state_labels_from_text": label_text is not None,
        "state_labels": {str(i): n for i, n in labels.iter_rows()},
        "rows_input": rows_input,
        "rows_dropped_null_date": null_dates,
        "rows_dropped_date_range": dropped_range,
        "rows_dropped_null_state": dropped_state,
        "rows": df.height,
        "ticker_count": df["ticker"].n_unique(),
        "state_count": df["state_id"].n_unique(),
        "min_trade_date": df["trade_date"].min().isoformat() if df.height else None,
        "max_trade_date": df["trade_date"].max().isoformat() if df.height else None,
        "sample_frac": sample_frac,
        "sample_unit": "ticker",
        "sample_seed": sample_seed if sample_frac is not None else None,
        "tickers_sampled": tickers_sampled,
        "date_from": date_from,
        "date_to": date_to,
        "forward_columns_present": [c for c in FORWARD_COLUMNS if c in df.columns],
        "forward_recomputed": recomputed,
    }
    return Adapted(frame=df, summary=summary)
