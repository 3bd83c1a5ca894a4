"""Walk-forward backtest aggregation (backtest_ops.md §4): rows per split x model, per-model and
overlay summaries, the aggregate summary and the markdown report. Pure: the caller runs the
backtests and writes the files.

Differences from the old tool (§13), on purpose:
- fix 29: a split counts as successful only when at least one of its model runs succeeded
  (the old one counted every split that was attempted), and every failed model run is listed
  with its error in the aggregate summary and the report;
- profit factor is +inf for a run without a losing trade (fix 10); its per-model mean is over
  the finite values (the old tool stored such runs as null, which a mean skips, so the number
  is the same) and the inf runs are counted beside it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.backtest.report import fmt, frame_table, profit_factor_of

MODELS: tuple[str, ...] = ("HMM", "FLOW", "CLUSTER")
SUCCESS, FAILED = "SUCCESS", "FAILED"
FAILED_UPSTREAM = "FAILED_UPSTREAM"
F64 = pl.Float64
EXEC_COLUMNS = ("exec_eligibility_rate", "exec_suppressed_signal_share",
                "exec_trade_avg_dollar_vol_20")  # fmt: skip
SPLIT_SCHEMA: dict[str, pl.DataType] = {
    "train_end": pl.Utf8, "model": pl.Utf8, "run_dir": pl.Utf8, "trade_count": pl.Int64,
    "win_rate": F64, "avg_return": F64, "profit_factor": F64, "expectancy": F64,
    **dict.fromkeys(EXEC_COLUMNS, F64), "execution_profile": pl.Utf8, "status": pl.Utf8,
    "error": pl.Utf8,
}  # fmt: skip
OVERLAY_RATES = ("overlay_match_rate", "overlay_unknown_rate", "overlay_vetoed_signal_share",
                 "overlay_direction_conflict_share")  # fmt: skip
OVERLAY_SPLIT_SCHEMA: dict[str, pl.DataType] = {
    "train_end": pl.Utf8, "model": pl.Utf8, "overlay_enabled": pl.Boolean,
    "overlay_mode": pl.Utf8, "overlay_coverage_mode": pl.Utf8, "overlay_match_rate": F64,
    "overlay_unknown_rate": F64, "overlay_coverage_status": pl.Utf8,
    "overlay_vetoed_signal_share": F64, "overlay_direction_conflict_share": F64,
}  # fmt: skip
# plain means over a model's successful splits; profit factor is handled apart (finite only)
MEAN_METRICS = ("win_rate", "avg_return", "expectancy", *EXEC_COLUMNS)
MODEL_SUMMARY_COLUMNS = (
    "model", "splits", "splits_failed", "trade_count_sum", "win_rate_mean", "avg_return_mean",
    "avg_return_trade_weighted", "expectancy_mean", "profit_factor_mean",
    "profit_factor_inf_splits", *(f"{c}_mean" for c in EXEC_COLUMNS),
)  # fmt: skip
RUN_KEYS = ("overlay_enabled", "overlay_mode", "overlay_coverage_mode", "overlay_coverage_bypass",
            "execution_profile", "exec_overrides")  # fmt: skip
EXEC_OVERRIDE_KEYS = ("exec_min_price", "exec_min_dollar_vol20", "exec_max_vol_pct",
                      "exec_min_history_bars")  # fmt: skip


def split_row(
    train_end: dt.date | str,
    model: str,
    run_dir: Path | str | None,
    summary: Mapping[str, Any] | None,
    status: str,
    error: str | None,
) -> dict[str, Any]:
    """The by-split row of one model run (§4). A FAILED run has null metrics; a SUCCESS run
    needs its ``backtest_summary`` content."""
    if status not in (SUCCESS, FAILED):
        raise ValueError(f"status must be {SUCCESS} or {FAILED}, not {status!r}")
    if status == SUCCESS and summary is None:
        raise ValueError("a SUCCESS row needs the run's summary")
    ok = status == SUCCESS
    headline = (summary or {}).get("headline") or {} if ok else {}
    execution = (summary or {}).get("execution") or {} if ok else {}
    return {
        "train_end": str(train_end), "model": model,
        "run_dir": None if run_dir is None else str(run_dir),
        **{k: headline.get(k) for k in ("trade_count", "win_rate", "avg_return")},
        "profit_factor": profit_factor_of(headline) if ok else None,
        "expectancy": headline.get("expectancy"),
        **{k: execution.get(k) for k in (*EXEC_COLUMNS, "execution_profile")},
        "status": status, "error": error,
    }  # fmt: skip


def overlay_split_row(
    train_end: dt.date | str, model: str, summary: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The overlay row of one model run (§4), from its summary's ``overlay`` block; null
    values when the run has no summary (it failed)."""
    block = (summary or {}).get("overlay") or {}
    row = {"train_end": str(train_end), "model": model}
    return row | {k: block.get(k) for k in OVERLAY_SPLIT_SCHEMA if k not in row}


def by_split_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """``wf_backtest_by_split`` from :func:`split_row` rows, with fixed dtypes."""
    return pl.DataFrame(list(rows), schema=SPLIT_SCHEMA)


def overlay_split_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """``wf_overlay_split_summary`` from :func:`overlay_split_row` rows, with fixed dtypes."""
    return pl.DataFrame(list(rows), schema=OVERLAY_SPLIT_SCHEMA)


def _model_order(frame: pl.DataFrame) -> pl.DataFrame:
    rank = pl.col("model").replace_strict(
        {m: i for i, m in enumerate(MODELS)}, default=len(MODELS), return_dtype=pl.Int64
    )
    return frame.sort(rank, "model")


def model_summary(by_split: pl.DataFrame) -> pl.DataFrame:
    """``wf_backtest_model_summary`` (§4): per model, over its SUCCESS rows, ``splits``,
    ``trade_count_sum`` and plain means ``<metric>_mean`` (every split weighs the same, as in
    the old tool), plus ``splits_failed`` (fix 29), ``profit_factor_inf_splits`` and
    ``avg_return_trade_weighted``.

    ``avg_return_trade_weighted`` = Σ avg_return·trade_count / Σ trade_count over the
    successful splits with trades: the mean net return per trade of all the model's trades
    pooled. The plain mean gives a split with 3 trades the same say as one with 300, so a few
    thin splits can dominate it; when the two differ much, the edge sits in the thin splits.
    (``trade_count`` includes the rare invalid trades, which ``avg_return`` excludes.)
    """
    ok = pl.col("status") == SUCCESS
    traded = ok & pl.col("avg_return").is_not_null() & (pl.col("trade_count") > 0)
    weight = pl.col("trade_count").filter(traded).sum()
    pf = pl.col("profit_factor")
    summary = by_split.with_columns(pl.col(F64).fill_nan(None)).group_by("model").agg(
        ok.sum().cast(pl.Int64).alias("splits"),
        (~ok).sum().cast(pl.Int64).alias("splits_failed"),
        pl.col("trade_count").filter(ok).sum().alias("trade_count_sum"),
        *(pl.col(m).filter(ok).mean().alias(f"{m}_mean") for m in MEAN_METRICS),
        pl.when(weight > 0)
        .then((pl.col("avg_return") * pl.col("trade_count")).filter(traded).sum() / weight)
        .alias("avg_return_trade_weighted"),
        pf.filter(ok & pf.is_finite()).mean().alias("profit_factor_mean"),
        (ok & pf.is_infinite()).sum().cast(pl.Int64).alias("profit_factor_inf_splits"),
    )
    return _model_order(summary).select(MODEL_SUMMARY_COLUMNS)


def overlay_source_summary(overlay_by_split: pl.DataFrame) -> pl.DataFrame:
    """``wf_overlay_source_summary`` (§4): per model, ``rows`` and the plain means
    ``<rate>_mean`` of match rate, unknown rate, veto share and conflict share. Pass the rows
    of the successful model runs (a failed run's row is all null and would count in rows)."""
    summary = overlay_by_split.group_by("model").agg(
        pl.len().cast(pl.Int64).alias("rows"),
        *(pl.col(c).fill_nan(None).mean().alias(f"{c}_mean") for c in OVERLAY_RATES),
    )
    return _model_order(summary)


def _first(frame: pl.DataFrame | None, column: str) -> Any:
    """The first non-null value of a column (None when there is none)."""
    if frame is None or column not in frame.columns:
        return None
    values = frame[column].drop_nulls()
    return values[0] if values.len() else None


def aggregate_summary(
    manifest: Mapping[str, Any],
    by_split: pl.DataFrame,
    overlay_by_split: pl.DataFrame | None = None,
    generated_ts: str | None = None,
) -> dict[str, Any]:
    """``wf_backtest_aggregate_summary.json`` (§4) with fix 29.

    ``manifest`` is ``wf_backtest_manifest.json``'s content: ``wf_bt_id``,
    ``source_wf_run_dir``, ``splits`` (each with ``train_end`` and ``status``, FAILED_UPSTREAM
    for a split that never ran) and ``signature.config`` (the run options:
    ``overlay_coverage_bypass`` and the ``exec_*`` overrides are read from it).
    ``splits_successful`` = splits with at least one SUCCESS model run; ``splits_failed`` = the
    rest (failed upstream, or every model failed). Overlay mode/coverage mode and the
    execution profile are those the successful runs recorded (first non-null);
    ``generated_ts`` defaults to now (UTC).
    """
    splits = list(manifest.get("splits") or [])
    config = (manifest.get("signature") or {}).get("config") or {}
    ran = by_split["train_end"].unique()
    good = by_split.filter(pl.col("status") == SUCCESS)["train_end"].unique()
    failures = _model_order(by_split.filter(pl.col("status") != SUCCESS)).sort(
        "train_end", maintain_order=True
    )
    counts = by_split.group_by("model").agg(
        (pl.col("status") != SUCCESS).sum().cast(pl.Int64).alias("n")
    )
    overlay_on = overlay_by_split is not None and bool(
        overlay_by_split["overlay_enabled"].fill_null(False).any()
    )
    return {
        "wf_bt_id": manifest.get("wf_bt_id"),
        "wf_run_dir": manifest.get("source_wf_run_dir"),
        "splits_total": len(splits),
        "splits_successful": good.len(),
        "splits_failed": len(splits) - good.len(),
        "splits_failed_upstream": sum(s.get("status") == FAILED_UPSTREAM for s in splits),
        "splits_all_models_failed": sorted(set(ran.to_list()) - set(good.to_list())),
        "model_failure_counts": dict(_model_order(counts).rows()),
        "model_failures": failures.select("train_end", "model", "error").to_dicts(),
        "generated_ts": generated_ts or dt.datetime.now(dt.UTC).isoformat(),
        "overlay_enabled": overlay_on,
        "overlay_mode": _first(overlay_by_split, "overlay_mode"),
        "overlay_coverage_mode": _first(overlay_by_split, "overlay_coverage_mode"),
        "overlay_coverage_bypass": bool(config.get("overlay_coverage_bypass")),
        "execution_profile": _first(by_split, "execution_profile"),
        "exec_overrides": {k: config[k] for k in EXEC_OVERRIDE_KEYS
                           if config.get(k) is not None},
    }  # fmt: skip


_NOTES = (
    "Means are plain means over a model's successful splits: each split weighs the same, "
    "whatever its trade count. `avg_return_trade_weighted` weighs each split by its trades "
    "(the mean return per trade of all trades pooled); read the two together.",
    "`profit_factor_mean` is over the splits with a finite profit factor; "
    "`profit_factor_inf_splits` counts the splits without a losing trade (+inf).",
    "`expectancy` equals `avg_return` (a zero return counts as a loss).",
    "A split is successful when at least one of its model runs succeeded.",
)
SPLIT_COLUMNS = [c for c in SPLIT_SCHEMA if c not in ("run_dir", "error")]


def wf_report_md(
    aggregate: Mapping[str, Any],
    by_split: pl.DataFrame,
    models: pl.DataFrame,
    overlay_summary: pl.DataFrame | None = None,
    overlay_by_split: pl.DataFrame | None = None,
) -> str:
    """``wf_backtest_report.md``: split counts, settings, per-model summary, failed model runs,
    by-split rows and, when the overlay was on, its summaries."""
    out = [f"# Walk-forward backtest report: {aggregate.get('wf_bt_id', '—')}", "",
           f"- source walk-forward run: `{aggregate.get('wf_run_dir')}`",
           f"- generated_ts: {fmt(aggregate.get('generated_ts'))}", "", "## Splits", ""]
    out += [f"- {k}: {fmt(aggregate.get(k))}"
            for k in ("splits_total", "splits_successful", "splits_failed",
                      "splits_failed_upstream", "splits_all_models_failed")]
    out += ["", "## Settings", "", *(f"- {k}: {fmt(aggregate.get(k))}" for k in RUN_KEYS)]
    out += ["", "## Model summary (successful model runs)", "",
            *frame_table(models, list(models.columns))]
    out += ["", "## Failed model runs", ""]
    failures = aggregate.get("model_failures") or []
    out += [f"- {f['train_end']} {f['model']}: {fmt(f['error'])}" for f in failures] or ["none"]
    out += ["", "## By split", "", *frame_table(by_split, SPLIT_COLUMNS)]
    if aggregate.get("overlay_enabled"):
        if overlay_summary is not None:
            out += ["", "## Overlay by model", "",
                    *frame_table(overlay_summary, list(overlay_summary.columns))]
        if overlay_by_split is not None:
            out += ["", "## Overlay by split", "",
                    *frame_table(overlay_by_split, list(OVERLAY_SPLIT_SCHEMA))]
    out += ["", "## Notes", "", *(f"- {n}" for n in _NOTES), ""]
    return "\n".join(out)
