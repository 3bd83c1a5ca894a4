"""Layer sanity summaries and blocking checks (spec etl.md §5.5, §6.5, §7.8, §8.8; weakness 25).

The old ``*-sanity`` commands looped over every per-symbol file. Here each function takes the
whole layer as ONE long panel (all tickers; the layer's columns plus ``ticker, exchange,
trade_date``) and computes the same keys with whole-panel Polars aggregations. Pure: no
Dagster, no I/O; the caller writes the dict as JSON (Silver's summary too, with the same keys
the old tool only printed).

Conventions shared by the four summaries (decisions, spec is silent or per-layer):

* A column missing from the panel is treated as an all-null column (the §5.5 Silver rule,
  applied to every layer), so a summary never fails on a narrow panel.
* Any aggregate over no non-null values is null, never an error (weakness 25): per-ticker
  means/maxima, event counts of an all-null or missing flag, null rates of an empty panel.
* NaN and ±inf are ignored by the numeric aggregates, so the summary stays valid JSON; they
  are reported by :func:`sanity_failures` instead.
* ``ticker_count`` / ``symbol_count`` count distinct non-null tickers.
* Top-20 lists rank tickers by the value descending, ties by ticker ascending; tickers whose
  value is null are left out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import polars as pl

from mf_pipeline.lib.layers.events import STATE_LABELS
from mf_pipeline.lib.layers.silver import KEY_COLUMNS

TOP_N = 20
MAX_TICKERS_IN_MESSAGE = 10
NULL_TICKER = "<null>"  # how a null ticker is named in failure messages
RANGE_TOLERANCE = 1e-9
FLOW_STATE_CODES = (0, 4)  # inclusive bounds of flow_state_code

SILVER_NULL_RATE_COLUMNS: tuple[str, ...] = ("ret_1d", "atr_14", "vol_ratio_20", "close_sma_50")
INDICATOR_CROSS_COLUMNS: tuple[str, ...] = (
    "tmf_zero_cross_up",
    "tmf_zero_cross_down",
    "tti_proxy_zero_cross_up",
    "tti_proxy_zero_cross_down",
)
KEY_EVENT_COLUMNS: tuple[str, ...] = (
    "ev_tmf_zero_up",
    "ev_tmf_zero_down",
    "ev_tmf_respect_zero_up",
    "ev_tmf_respect_zero_down",
    "ev_tmf_burst_up",
    "ev_tmf_burst_down",
)
RESPECT_FAIL_COLUMNS: tuple[str, str] = ("ev_tmf_respect_fail_up", "ev_tmf_respect_fail_down")
FEATURE_NULL_RATE_COLUMNS: tuple[str, ...] = (
    "tmf_21",
    "long_flow_score_20",
    "delta_flow_20",
    "flow_bias_20",
    "oscillation_index_20",
    "state_run_length",
)

# Columns whose absence blocks downstream assets: the keys plus the layer's OWN columns that
# its summary and range rules read. ``tmf_21`` is not required of features: the feature layer
# file does not carry it (features.py), so features_sanity wants the joined panel for it.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "silver": (*KEY_COLUMNS, *SILVER_NULL_RATE_COLUMNS),
    "indicators": (*KEY_COLUMNS, "tmf_21", "tti_proxy_v1_21", *INDICATOR_CROSS_COLUMNS),
    "events": (
        *KEY_COLUMNS,
        *KEY_EVENT_COLUMNS,
        *RESPECT_FAIL_COLUMNS,
        "tmf_event_activity_20",
        "flow_state_code",
        "flow_state_label",
    ),
    "features": (*KEY_COLUMNS, *FEATURE_NULL_RATE_COLUMNS[1:], "flow_activity_20"),
}
LAYERS: tuple[str, ...] = tuple(REQUIRED_COLUMNS)

# Columns bounded by construction (spec §6.2, §6.3, §8.3); checked wherever present.
BOUNDED_COLUMNS: dict[str, tuple[float, float]] = {
    "tmf_21": (-1.0, 1.0),
    "tti_proxy_v1_21": (-1.0, 1.0),
    "flow_bias_20": (-1.0, 1.0),
}

_KEY_DTYPES: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "exchange": pl.String(),
    "trade_date": pl.Date(),
}


# --------------------------------------------------------------------------------------------
# shared helpers


def _utc_iso(ts: dt.datetime) -> str:
    """ISO string with a ``+00:00`` offset; a naive timestamp is taken as UTC (spec §0)."""
    aware = ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)
    return aware.isoformat()


def _iso(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _ensure(panel: pl.DataFrame, columns: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Add each missing column as an all-null column, so missing == all-null downstream."""
    have = set(panel.columns)
    missing = [pl.lit(None, dtype).alias(c) for c, dtype in columns.items() if c not in have]
    return panel.with_columns(missing) if missing else panel


def _finite(name: str) -> pl.Expr:
    """The column as Float64 with NaN/±inf turned into null (aggregates stay JSON-safe)."""
    x = pl.col(name).cast(pl.Float64)
    return pl.when(x.is_finite()).then(x)


def _flag_count(name: str) -> pl.Expr:
    """Number of True values; null when the column has no non-null value (weakness 25)."""
    return pl.when(pl.col(name).count() > 0).then(pl.col(name).cast(pl.Int64).sum())


def _headline(panel: pl.DataFrame, count_key: str) -> dict[str, Any]:
    """Ticker count, row count and the global date range shared by every summary."""
    row = panel.select(
        pl.col("ticker").drop_nulls().n_unique().alias(count_key),
        pl.len().alias("total_rows"),
        pl.col("trade_date").min().alias("min_date"),
        pl.col("trade_date").max().alias("max_date"),
    ).row(0, named=True)
    return {
        count_key: int(row[count_key]),
        "total_rows": int(row["total_rows"]),
        "global_min_trade_date": _iso(row["min_date"]),
        "global_max_trade_date": _iso(row["max_date"]),
    }


def _null_rates(panel: pl.DataFrame, columns: Sequence[str]) -> dict[str, float | None]:
    """``null_count / rows`` per column; null for an empty panel (no rows, no rate)."""
    if panel.height == 0:
        return dict.fromkeys(columns)
    counts = panel.select(pl.col(c).null_count() for c in columns).row(0)
    return {c: n / panel.height for c, n in zip(columns, counts, strict=True)}


def _flag_counts(panel: pl.DataFrame, columns: Sequence[str]) -> dict[str, int | None]:
    return panel.select(_flag_count(c).alias(c) for c in columns).row(0, named=True)


def _top(panel: pl.DataFrame, agg: pl.Expr, name: str) -> list[dict[str, Any]]:
    """``{ticker, name}`` for the TOP_N tickers by the per-ticker ``agg``, nulls excluded."""
    ranked = (
        panel.group_by("ticker")
        .agg(agg.alias(name))
        .filter(pl.col("ticker").is_not_null() & pl.col(name).is_not_null())
        .sort([name, "ticker"], descending=[True, False])
        .head(TOP_N)
    )
    return ranked.select("ticker", name).to_dicts()


# --------------------------------------------------------------------------------------------
# summaries


def silver_sanity(panel: pl.DataFrame, generated_ts: dt.datetime) -> dict[str, Any]:
    """The §5.5 ``silver-sanity`` summary (now also written to a file, same keys).

    ``feature_columns_present`` is the sorted column list of the panel itself (the old union
    of per-file columns); ``silver_file_count`` and ``read_errors`` were only printed and have
    no meaning for a single panel.
    """
    df = _ensure(panel, {**_KEY_DTYPES, **dict.fromkeys(SILVER_NULL_RATE_COLUMNS, pl.Float64())})
    return {
        "generated_ts": _utc_iso(generated_ts),
        **_headline(df, "ticker_count"),
        "feature_columns_present": sorted(panel.columns),
        "key_feature_null_rates": _null_rates(df, SILVER_NULL_RATE_COLUMNS),
    }


def indicators_sanity(panel: pl.DataFrame, generated_ts: dt.datetime) -> dict[str, Any]:
    """The §6.5 ``indicator_sanity_summary.json`` keys for one panel."""
    df = _ensure(
        panel,
        {
            **_KEY_DTYPES,
            "tmf_21": pl.Float64(),
            "tti_proxy_v1_21": pl.Float64(),
            **dict.fromkeys(INDICATOR_CROSS_COLUMNS, pl.Boolean()),
        },
    )
    rates = _null_rates(df, ("tmf_21", "tti_proxy_v1_21"))
    counts = _flag_counts(df, INDICATOR_CROSS_COLUMNS)
    return {
        "generated_ts": _utc_iso(generated_ts),
        **_headline(df, "symbol_count"),
        **{f"{c}_null_rate": rate for c, rate in rates.items()},
        **{f"{c}_count": n for c, n in counts.items()},
        "top_20_symbols_by_max_abs_tmf_21": _top(
            df, _finite("tmf_21").abs().max(), "max_abs_tmf_21"
        ),
    }


def events_sanity(panel: pl.DataFrame, generated_ts: dt.datetime) -> dict[str, Any]:
    """The §7.8 ``events_sanity_summary.json`` keys for one panel.

    ``state_distribution`` always lists the five S0..S4 labels (0 when absent, like the run
    summary's ``state_counts_global``) plus any unexpected non-null label found.
    """
    df = _ensure(
        panel,
        {
            **_KEY_DTYPES,
            **dict.fromkeys((*KEY_EVENT_COLUMNS, *RESPECT_FAIL_COLUMNS), pl.Boolean()),
            "tmf_event_activity_20": pl.Int32(),
            "flow_state_label": pl.String(),
        },
    )
    observed = (
        df.select(pl.col("flow_state_label").drop_nulls().value_counts(name="n"))
        .unnest("flow_state_label")
        .rows()
    )
    distribution = dict.fromkeys(STATE_LABELS.values(), 0)
    distribution.update({label: int(n) for label, n in observed})
    up, down = RESPECT_FAIL_COLUMNS
    fail_count = pl.when((pl.col(up).count() + pl.col(down).count()) > 0).then(
        pl.col(up).cast(pl.Int64).sum() + pl.col(down).cast(pl.Int64).sum()
    )
    return {
        "generated_ts": _utc_iso(generated_ts),
        **_headline(df, "symbol_count"),
        "key_event_counts": _flag_counts(df, KEY_EVENT_COLUMNS),
        "state_distribution": distribution,
        "top_20_symbols_by_max_tmf_event_activity_20": _top(
            df, pl.col("tmf_event_activity_20").max(), "max_tmf_event_activity_20"
        ),
        "top_20_symbols_by_tmf_respect_fail_count": _top(df, fail_count, "tmf_respect_fail_count"),
    }


def features_sanity(panel: pl.DataFrame, generated_ts: dt.datetime) -> dict[str, Any]:
    """The §8.8 ``features_sanity_summary.json`` keys for one panel.

    ``tmf_21`` lives in the indicator layer, so pass the joined panel to get its null rate;
    without it the rate reads 1.0 (missing == all-null).
    """
    df = _ensure(
        panel,
        {
            **_KEY_DTYPES,
            **dict.fromkeys(FEATURE_NULL_RATE_COLUMNS, pl.Float64()),
            "flow_activity_20": pl.Float64(),
        },
    )
    return {
        "generated_ts": _utc_iso(generated_ts),
        **_headline(df, "symbol_count"),
        "null_rates": _null_rates(df, FEATURE_NULL_RATE_COLUMNS),
        "top_20_symbols_by_avg_flow_activity_20": _top(
            df, _finite("flow_activity_20").mean(), "avg_flow_activity_20"
        ),
        "top_20_symbols_by_max_abs_delta_flow_20": _top(
            df, _finite("delta_flow_20").abs().max(), "max_abs_delta_flow_20"
        ),
        "top_20_symbols_by_avg_oscillation_index_20": _top(
            df, _finite("oscillation_index_20").mean(), "avg_oscillation_index_20"
        ),
    }


# --------------------------------------------------------------------------------------------
# blocking checks


def _in_key_order(panel: pl.DataFrame) -> bool:
    """True when tickers are sorted and dates strictly increase inside each ticker.

    The usual case (layers write sorted panels); proving it takes one adjacent-row comparison
    of dates, and it rules out duplicates and disorder without the hash-based checks
    (~1 s per 5M rows).
    """
    tk, d = panel.get_column("ticker"), panel.get_column("trade_date")
    if tk.null_count() or d.null_count() or not tk.is_sorted():
        return False
    # a date not after the previous row's must start a new ticker; such rows are few (at most
    # one per ticker), so only they have their tickers compared
    drops = (d <= d.shift(1)).fill_null(False).arg_true()
    return bool((tk.gather(drops) != tk.gather(drops - 1)).all())


class Rule(NamedTuple):
    """A row rule: ``offending`` marks the rows that break it; ``clean``, when given, is a
    cheap whole-column aggregate that is True only if no row can be offending (then the
    row masks are not built: the usual healthy batch costs a few reductions per column)."""

    offending: pl.Expr
    clean: pl.Expr | None = None


def _row_rules(panel: pl.DataFrame) -> dict[str, Rule]:
    """Problem description -> rule, for the columns present."""
    tk, d = pl.col("ticker"), pl.col("trade_date")
    keys = [c for c in KEY_COLUMNS if c in panel.columns]
    rules: dict[str, Rule] = {
        "null key values (" + ", ".join(keys) + ")": Rule(
            pl.any_horizontal(pl.col(c).is_null() for c in keys),
            pl.sum_horizontal(pl.col(c).null_count() for c in keys) == 0),
    }
    if not _in_key_order(panel):
        rules["duplicate (ticker, trade_date) rows"] = Rule(
            (pl.len().over(tk, d) > 1) & tk.is_not_null() & d.is_not_null())
        rules["trade_date decreasing within a ticker (rows out of order)"] = Rule(
            d < d.shift(1).over(tk))
    for name, (lo, hi) in BOUNDED_COLUMNS.items():
        if name in panel.columns:
            x = pl.col(name).cast(pl.Float64)
            outside = (x < lo - RANGE_TOLERANCE) | (x > hi + RANGE_TOLERANCE)
            # min/max skip NaN and nulls, which this rule does not flag either; compared as
            # float64 like the rows (a float32 bound could round onto an offending value)
            low, high = (pl.col(name).min().cast(pl.Float64), pl.col(name).max().cast(pl.Float64))
            rules[f"{name} outside [{lo:g}, {hi:g}]"] = Rule(
                x.is_finite() & outside,
                (low >= lo - RANGE_TOLERANCE) & (high <= hi + RANGE_TOLERANCE))
    if "flow_state_code" in panel.columns:
        lo, hi = FLOW_STATE_CODES
        code = pl.col("flow_state_code")
        rules[f"flow_state_code null or outside {lo}..{hi}"] = Rule(
            code.is_null() | ~code.is_between(lo, hi),
            (code.null_count() == 0) & (code.min() >= lo) & (code.max() <= hi))
    for name, dtype in panel.schema.items():
        if dtype.is_float():
            x = pl.col(name)
            # a NaN or an infinity makes the sum NaN or infinite (an overflow too: then the
            # rows are checked one by one)
            rules[f"non-finite values (NaN/inf) in {name}"] = Rule(~x.is_finite(),
                                                                   x.sum().is_finite())
    return rules


def _ticker_list(tickers: list[str], total: int) -> str:
    shown = ", ".join(tickers)
    more = total - len(tickers)
    return f"{shown} (+{more} more)" if more > 0 else shown


def sanity_failures(layer: str, panel: pl.DataFrame) -> list[str]:
    """ERROR-level problems of a layer panel, one readable message each; empty when healthy.

    Meant for a blocking asset check: any message means downstream assets must not run.
    Rules: required columns present (:data:`REQUIRED_COLUMNS`), no null keys, one row per
    (ticker, trade_date), dates never decreasing within a ticker in panel order (equal dates
    are the duplicate rule), bounded columns inside their range within 1e-9,
    ``flow_state_code`` in 0..4, no NaN/inf in any float column. Each row-level message
    names up to 10 offending tickers (sorted).

    A panel with no rows passes, whatever its columns: ``lake.read_layer`` returns a 0x0 frame
    when nothing is built yet, and there are no rows to block on.
    """
    if layer not in REQUIRED_COLUMNS:
        raise ValueError(f"unknown layer {layer!r}; expected one of {', '.join(LAYERS)}")
    if panel.height == 0:
        return []
    problems: list[str] = []
    missing = [c for c in REQUIRED_COLUMNS[layer] if c not in panel.columns]
    if missing:
        problems.append(f"{layer}: required columns missing: {', '.join(missing)}")
    if "ticker" not in panel.columns or "trade_date" not in panel.columns:
        return problems  # every row rule is keyed by ticker and trade_date

    rules = _row_rules(panel)
    proofs = {what: rule.clean for what, rule in rules.items() if rule.clean is not None}
    proven = panel.select(clean.fill_null(False).alias(what) for what, clean in proofs.items())
    suspect = [what for what in rules if not (what in proofs and proven[what][0])]
    if not suspect:
        return problems
    # each mask evaluated once; offending tickers are only listed for rules that fire
    masks = panel.select(
        pl.col("ticker").fill_null(NULL_TICKER),
        *(rules[what].offending.fill_null(False).alias(f"_m{i}")
          for i, what in enumerate(suspect)),
    )
    rows = masks.select(pl.col(f"_m{i}").sum() for i in range(len(suspect))).row(0)
    for i, (what, n_rows) in enumerate(zip(suspect, rows, strict=True)):
        if not n_rows:
            continue
        offenders = masks.filter(pl.col(f"_m{i}")).get_column("ticker").unique().sort()
        tickers = _ticker_list(offenders.head(MAX_TICKERS_IN_MESSAGE).to_list(), offenders.len())
        problems.append(
            f"{layer}: {what}: {n_rows} row(s) in {offenders.len()} ticker(s): {tickers}"
        )
    return problems
