"""One sensitivity grid (backtest_ops.md §5.1–5.5): every combo of the dimensions on every
source, one manifest row each, robustness scores, aggregates, the overfitting measures and
the reports, under ``<artifacts_root>/backtest_sensitivity/grid-<12hex>_<scope>_<tag>/``.

Fast by design (issue #21): each source's rows are loaded and prepared once per signal key
(:mod:`lib.grids.engine`), a combo is a Numba simulation plus its metrics, and the trades of
all combos go to one hive-partitioned Parquet dataset (``grid_trades/source_type=<src>/``)
instead of a backtest folder per combo (``write_combo_runs`` asks for those too).

The grid id is a digest of the sources' identity, the dimensions and the options, so a rerun
lands in the same folder; the folder is built under a hidden name and swapped in whole.

Beyond the old tool: ``grid_period_returns.parquet`` holds each combo's per-exit-day return
(the mean net return of its trades exiting that day, 0 on the source's other exit days), and
the summary's ``overfitting`` block gives, per source, the Deflated Sharpe Ratio of the
robustness winner given all the combos tried and the Probability of Backtest Overfitting by
CSCV over those series (:mod:`lib.grids.overfitting`).
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.backtest import metrics
from mf_pipeline.lib.grids import aggregates, overfitting
from mf_pipeline.lib.grids import report as grid_report
from mf_pipeline.lib.grids.combos import GridDimensions, combos
from mf_pipeline.lib.grids.engine import (
    ComboResult,
    Preparations,
    by_signal_key,
    combo_options,
    combo_result,
    simulate_batch,
)
from mf_pipeline.lib.grids.robustness import nan_warning_total, robustness_scores
from mf_pipeline.lib.reports import pages
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.options import BacktestOptions, backtest_options
from mf_pipeline.lib.steps.backtest.run import (
    BacktestInputs,
    backtest_run,
    finite_json,
    swap_in,
)
from mf_pipeline.lib.steps.research.artifacts import now
from mf_pipeline.lib.steps.validation.options import digest

LOGGER = logging.getLogger(__name__)
GRIDS_DIR = "backtest_sensitivity"
SUMMARY = "grid_summary.json"
TRADES_DIR = "grid_trades"
PERIOD_RETURNS = "grid_period_returns.parquet"
TAIL_COLUMNS = ("ret_p10", "ret_p90", "downside_std", "worst_trade_return", "best_trade_return")
DIMENSION_KEYS = ("signal_mode", "exit_mode", "hold_bars", "fee_bps_per_side",
                  "slippage_bps_per_side", "equity_mode", "include_watch", "include_state_ids")
"""Combo values passed to the backtest options (allow_overlap is always false)."""


@dataclass
class GridSource:
    """One source of a grid: its rows (a backtest's inputs) and, for clusters, which policy
    classes trade (``allow_only`` by default)."""

    inputs: BacktestInputs
    policy_filter_mode: str | None = None

    @property
    def source_type(self) -> str:
        return self.inputs.input_type


@dataclass
class GridOptions:
    """What a grid computes besides its dimensions; ``base`` carries the overlay, execution
    and report options every combo shares (settings defaults when None)."""

    base: BacktestOptions | None = None
    include_ret_cv: bool = True
    include_tail_metrics: bool = True
    report_top_n: int = 10
    max_combos: int = 500
    shuffle: bool = False
    seed: int = 42
    stop_on_error: bool = False
    write_combo_runs: bool = False
    write_run_manifest: bool = True
    progress_every: int = 10
    tag: str = "default"
    heatmap_dims: tuple[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Recorded in the summary as is (e.g. the walk-forward split it belongs to)."""

    def payload(self) -> dict[str, Any]:
        """What identifies the grid (its id): the results' options and the tag, not progress or
        report layout."""
        base = self.base.payload() if self.base else None
        return {"base": base, "include_ret_cv": self.include_ret_cv,
                "include_tail_metrics": self.include_tail_metrics,
                "max_combos": self.max_combos, "shuffle": self.shuffle, "seed": self.seed,
                "write_combo_runs": self.write_combo_runs, "tag": self.tag}  # fmt: skip


@dataclass
class GridOutcome:
    grid_run_id: str
    output_dir: Path
    summary: dict[str, Any]
    metrics: pl.DataFrame
    manifest: pl.DataFrame


def grid_options(settings: Settings, **overrides: Any) -> GridOptions:
    """Grid options with the ``backtest_sensitivity`` defaults for what is not given."""
    g = settings.backtest_sensitivity
    values: dict[str, Any] = {
        "include_ret_cv": g.include_ret_cv_default,
        "include_tail_metrics": g.include_tail_metrics_default,
        "report_top_n": g.report_top_n_default, "max_combos": g.max_combos,
        "stop_on_error": g.stop_on_error, "progress_every": g.progress_every,
    }  # fmt: skip
    values |= {k: v for k, v in overrides.items() if v is not None}
    return GridOptions(**values)


def default_dimensions(settings: Settings, **overrides: Sequence[Any] | None) -> GridDimensions:
    """The settings' ``default_grid`` with the given dimensions replaced (None: default)."""
    grid = settings.backtest_sensitivity.default_grid.model_dump()
    grid |= {k: v for k, v in overrides.items() if v is not None}
    return GridDimensions(**{k: tuple(tuple(s) if k == "include_state_sets" else s for s in v)
                             for k, v in grid.items()})


def scope_of(sources: Sequence[GridSource]) -> str:
    names = sorted(s.source_type for s in sources)
    return f"single-{names[0]}" if len(names) == 1 else "multi-" + "-".join(names)


def grid_run_id_of(sources: Sequence[GridSource], dims: GridDimensions,
                   options: GridOptions) -> str:  # fmt: skip
    return "grid-" + digest({
        "sources": [{"type": s.source_type, "identity": s.inputs.identity,
                     "policy_filter_mode": s.policy_filter_mode} for s in sources],
        "dims": {k: list(v) for k, v in vars(dims).items()}, "options": options.payload()})


def grid_folder(settings: Settings, grid_run_id: str, scope: str, tag: str) -> Path:
    return settings.artifacts_root / GRIDS_DIR / f"{grid_run_id}_{scope}_{tag.replace(' ', '-')}"


def _source_base(base: BacktestOptions, source: GridSource) -> BacktestOptions:
    mode = (source.policy_filter_mode or "allow_only") if source.source_type == "cluster" \
        else "allow_only"  # fmt: skip
    return replace(base, policy_filter_mode=mode)


def _combo_values(combo: dict[str, Any], source_type: str) -> dict[str, Any]:
    values = {k: combo[k] for k in DIMENSION_KEYS}
    if source_type != "cluster":  # WATCH is a cluster policy class
        values["include_watch"] = False
    return values


def _exec_fields(block: dict[str, Any]) -> dict[str, Any]:
    out = {k: block.get(k) for k in (
        "execution_profile", "execution_filters_enabled", "exec_eligibility_rate",
        "exec_suppressed_signal_count", "exec_suppressed_signal_share",
        "exec_trade_avg_dollar_vol_20", "exec_trade_p10_dollar_vol_20", "exec_trade_avg_vol_pct",
        "realism_profile_status",
        *[f"exec_suppressed_by_{n}_{s}" for n in ("price", "liquidity", "vol", "warmup")
          for s in ("count", "share")])}  # fmt: skip
    out |= {"exec_vol_metric_source": block.get("vol_metric_source"),
            "exec_vol_unit_detected": block.get("vol_unit_detected"),
            "exec_vol_threshold_input": block.get("vol_threshold_input"),
            "exec_vol_threshold_effective_decimal": block.get("vol_threshold_effective_decimal"),
            "exec_vol_threshold_effective_pct": block.get("vol_threshold_effective_pct"),
            "exec_candidate_signals_before_filters": block.get("candidate_signals_before_filters"),
            "exec_candidate_signals_after_filters": block.get("candidate_signals_after_filters")}
    return out


def _overlay_fields(block: dict[str, Any], source: GridSource) -> dict[str, Any]:
    enabled = bool(block.get("overlay_enabled")) or source.inputs.overlay_rows is not None
    return {"overlay_enabled": enabled, **{k: block.get(k) for k in (
        "overlay_mode", "overlay_coverage_mode", "overlay_match_rate", "overlay_unknown_rate",
        "overlay_year_min_match_rate", "overlay_year_p10_match_rate", "overlay_coverage_status",
        "overlay_allow_rate", "overlay_watch_rate", "overlay_block_rate",
        "overlay_vetoed_signal_count", "overlay_vetoed_signal_share",
        "overlay_passed_signal_count", "overlay_direction_conflict_share")}}  # fmt: skip


def _params(grid_run_id: str, combo: dict[str, Any], source: GridSource,
            options: BacktestOptions | None) -> dict[str, Any]:  # fmt: skip
    cluster = source.source_type == "cluster"
    extra = source.inputs.extra
    return {
        "grid_run_id": grid_run_id, "combo_id": combo["combo_id"],
        "combo_index": combo["combo_index"], "source_type": source.source_type,
        "hold_bars": combo["hold_bars"], "signal_mode": combo["signal_mode"],
        "exit_mode": combo["exit_mode"], "fee_bps_per_side": combo["fee_bps_per_side"],
        "slippage_bps_per_side": combo["slippage_bps_per_side"],
        "allow_overlap": combo["allow_overlap"], "equity_mode": combo["equity_mode"],
        "include_watch": combo["include_watch"] if cluster else False,
        "policy_filter_mode": (options.policy_filter_mode if options else
                               source.policy_filter_mode or "allow_only") if cluster else None,
        "state_subset_key": combo["state_subset_key"],
        "input_file": source.inputs.input_file,
        "validation_run_dir": extra.get("validation_run_dir"),
        "cluster_hardening_dir": extra.get("cluster_hardening_dir"),
        "in_sample": source.inputs.in_sample,
    }  # fmt: skip


def _success_row(params: dict[str, Any], result: ComboResult, prep_summary: dict[str, Any],
                 source: GridSource, run_dir: str | None) -> dict[str, Any]:  # fmt: skip
    head, edge, eq = result.headline, result.edge, result.equity or {}
    raw = {k: head.get(k) for k in ("trade_count", "win_rate", "avg_return", "median_return",
                                    "profit_factor", "expectancy", "return_std",
                                    "avg_hold_bars")}  # fmt: skip
    raw |= {"max_drawdown": eq.get("max_drawdown"), "sharpe_proxy": eq.get("sharpe_proxy")}
    adapter = prep_summary["adapter"]
    return {
        **params, "status": "SUCCESS", "error_message": None, "backtest_run_dir": run_dir,
        **raw, "profit_factor_inf": bool(head.get("profit_factor_inf")),
        "nan_warning_total": int(nan_warning_total(pl.DataFrame([raw],
                                                                 infer_schema_length=None))[0]),
        "rows_input": adapter["rows_in"],
        "rows_eligible": prep_summary["mapping"]["eligible_rows"],
        "rows_skipped": adapter["rows_dropped_missing_essential"]
        + adapter["rows_dropped_bad_price"] + adapter["rows_deduped_ticker_date"],
        **edge,
        "policy_trade_class_mix": metrics.policy_trade_class_mix(result.trades)
        if source.source_type == "cluster" else None,
        **_overlay_fields(result.overlay, source), **_exec_fields(result.execution),
        "built_ts": now(),
    }  # fmt: skip


def _period_returns(trades: pl.DataFrame) -> pl.DataFrame:
    """Per exit day, the mean net return of the valid trades exiting that day."""
    return (metrics.valid_trades(trades).filter(pl.col("exit_date").is_not_null())
            .group_by("exit_date").agg(period_return=pl.col("net_return").mean())
            .rename({"exit_date": "trade_date"}))  # fmt: skip


def _dense_returns(per_combo: list[pl.DataFrame]) -> pl.DataFrame:
    """Long (source_type, combo_id, trade_date, period_return), 0.0 on a source's exit days
    where the combo had no exit (combos without a trade are left out)."""
    schema = {"source_type": pl.Utf8, "combo_id": pl.Utf8, "trade_date": pl.Date,
              "period_return": pl.Float64}
    if not per_combo:
        return pl.DataFrame(schema=schema)
    long = pl.concat(per_combo, how="vertical_relaxed")
    keys = long.select("source_type", "combo_id").unique()
    days = long.select("source_type", "trade_date").unique()
    grid = keys.join(days, on="source_type", how="inner")
    return (grid.join(long, on=["source_type", "combo_id", "trade_date"], how="left")
            .with_columns(pl.col("period_return").fill_null(0.0))
            .sort("source_type", "combo_id", "trade_date").cast(schema))  # fmt: skip


def _sharpe_period(returns: pl.DataFrame) -> pl.DataFrame:
    r = pl.col("period_return")
    return returns.group_by("source_type", "combo_id").agg(
        sharpe_period=pl.when(r.std(ddof=1) > 0).then(r.mean() / r.std(ddof=1))
        .otherwise(pl.when(r.count() >= 2).then(0.0)))  # fmt: skip


def _fluke_risk(dsr: float | None, pbo: float | None) -> str:
    if dsr is None:
        return "UNKNOWN"
    if (pbo is not None and pbo >= 0.5) or dsr < 0.5:
        return "HIGH"
    if dsr >= 0.95 and (pbo is None or pbo < 0.2):
        return "LOW"
    return "MODERATE"


def overfitting_of(table: pl.DataFrame, returns: pl.DataFrame, source_type: str,
                   n_splits: int) -> dict[str, Any]:  # fmt: skip
    """The ``overfitting`` block of one source (see the contract in docs/GRIDS.md)."""
    rows = table.filter(pl.col("source_type") == source_type)
    mine = returns.filter(pl.col("source_type") == source_type)
    matrix_frame = mine.pivot(on="combo_id", index="trade_date", values="period_return") \
        .sort("trade_date") if mine.height else pl.DataFrame()  # fmt: skip
    columns = [c for c in rows.sort("combo_index")["combo_id"] if c in matrix_frame.columns]
    out: dict[str, Any] = {"n_trials": len(columns), "periods": matrix_frame.height,
                           "period": "exit_day", "note": None}  # fmt: skip
    ranked = metrics.sort_best_first(rows, "robustness_score_v2", ("combo_index",))
    winner = next((c for c in ranked["combo_id"] if c in columns), None)
    out["best_combo_id"] = winner
    if len(columns) < 2 or winner is None:
        out |= dict.fromkeys(("best_sharpe", "sr0", "dsr", "max_sharpe_combo_id", "max_sharpe",
                              "dsr_max_sharpe", "pbo", "pbo_n_splits", "pbo_n_combinations",
                              "pbo_degradation_slope", "pbo_prob_oos_loss"))
        out["note"] = "fewer than 2 combos traded: no selection to deflate"
        out["fluke_risk"] = "UNKNOWN"
        return out
    matrix = matrix_frame.select(columns).to_numpy().astype(float)
    best = overfitting.dsr_of_returns(matrix, best=columns.index(winner))
    top = overfitting.dsr_of_returns(matrix)
    out |= {"best_sharpe": best["best_sharpe"], "sr0": best["sr0"], "dsr": best["dsr"],
            "max_sharpe_combo_id": columns[top["best"]], "max_sharpe": top["best_sharpe"],
            "dsr_max_sharpe": top["dsr"], "pbo_n_splits": n_splits}  # fmt: skip
    try:
        pbo = overfitting.pbo_cscv(matrix, n_splits=n_splits)
        out |= {"pbo": pbo["pbo"], "pbo_n_combinations": pbo["n_combinations"],
                "pbo_degradation_slope": pbo["degradation_slope"],
                "pbo_prob_oos_loss": pbo["prob_oos_loss"]}
    except ValueError as error:
        out |= {"pbo": None, "pbo_n_combinations": None, "pbo_degradation_slope": None,
                "pbo_prob_oos_loss": None}
        out["note"] = f"PBO not computed: {error}"
    out = finite_json(out)
    out["fluke_risk"] = _fluke_risk(out["dsr"], out["pbo"])
    return out


def _sanitise(table: pl.DataFrame) -> pl.DataFrame:
    """Non-finite floats -> null, except a flagged +inf profit factor (a defined value)."""
    exprs = []
    for name, dtype in table.schema.items():
        if not dtype.is_float():
            continue
        keep = pl.col(name).is_finite()
        if name == "profit_factor" and "profit_factor_inf" in table.columns:
            keep = keep | (pl.col("profit_factor_inf").fill_null(False)
                           & (pl.col(name) == float("inf")))
        exprs.append(pl.when(keep).then(pl.col(name)).alias(name))
    return table.with_columns(exprs) if exprs else table


def _null_cells(table: pl.DataFrame) -> int:
    numeric = [c for c, t in table.schema.items() if t.is_numeric()]
    return int(table.select(numeric).null_count().sum_horizontal().item()) if numeric else 0


class _Progress:
    def __init__(self, total: int, every: int, log: Callable[[str], None] | None) -> None:
        self.total, self.every, self.log, self.done, self.t0 = total, every, log, 0, \
            time.perf_counter()  # fmt: skip

    def step(self, source: str) -> None:
        self.done += 1
        if self.log and (self.done % self.every == 0 or self.done == self.total):
            self.log(f"grid: {self.done}/{self.total} combos ({source}), "
                     f"{time.perf_counter() - self.t0:.1f} s")


def run_grid(settings: Settings, sources: Sequence[GridSource], dims: GridDimensions,
             options: GridOptions, *, folder: Path | None = None,
             grid_run_id: str | None = None,
             log: Callable[[str], None] | None = None) -> GridOutcome:  # fmt: skip
    """Run every combo of ``dims`` on every source and write the grid folder (§5.2–5.5)."""
    if not sources:
        raise ValueError("a grid needs at least one source")
    types = [s.source_type for s in sources]
    if len(set(types)) != len(types):
        raise ValueError(f"each source type may appear once in a grid, got {types}")
    started, t0 = now(), time.perf_counter()
    stages: dict[str, float] = {"load": round(sum(s.inputs.load_sec for s in sources), 3)}
    scope = scope_of(sources)
    grid_run_id = grid_run_id or grid_run_id_of(sources, dims, options)
    folder = folder or grid_folder(settings, grid_run_id, scope, options.tag)
    base = options.base or backtest_options(settings)
    plans = [(s, combos(dims, s.source_type, options.shuffle, options.seed, options.max_combos))
             for s in sources]
    progress = _Progress(sum(len(p) for _, p in plans), options.progress_every, log)
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    trades: dict[str, list[pl.DataFrame]] = {}
    returns: list[pl.DataFrame] = []
    state_edges: list[pl.DataFrame] = []
    n_prepared = 0

    def done(source: GridSource, combo: dict[str, Any], combo_opts: BacktestOptions,
             result: ComboResult, preparations: Preparations) -> None:
        prep = preparations.get(combo_opts).prep
        run_dir = None
        if options.write_combo_runs:
            tag = f"{options.tag}-{grid_run_id}-{source.source_type}-c{combo['combo_index']:04d}"
            run_dir = str(backtest_run(settings, replace(source.inputs, tag=tag),
                                       combo_opts).output_dir)
        params = _params(grid_run_id, combo, source, combo_opts)
        rows.append(_success_row(params, result, {"adapter": prep.adapter_summary,
                                                  "mapping": prep.mapping_summary},
                                 source, run_dir))  # fmt: skip
        ids = {"combo_id": combo["combo_id"], "combo_index": combo["combo_index"]}
        trades.setdefault(source.source_type, []).append(
            result.trades.with_columns(**{k: pl.lit(v) for k, v in ids.items()}))
        returns.append(_period_returns(result.trades).with_columns(
            source_type=pl.lit(source.source_type), combo_id=pl.lit(combo["combo_id"])))
        if source.source_type == "cluster":
            state_edges.append(metrics.edge_by_state(result.trades).with_columns(
                **{k: pl.lit(v) for k, v in ids.items()},
                policy_filter_mode=pl.lit(combo_opts.policy_filter_mode)))
        progress.step(source.source_type)

    def fail(source: GridSource, combo: dict[str, Any], combo_opts: BacktestOptions | None,
             error: Exception) -> None:
        LOGGER.warning("grid combo %s (%s) failed: %s", combo["combo_id"], source.source_type,
                       error)
        rows.append({**_params(grid_run_id, combo, source, combo_opts), "status": "FAILED",
                     "error_message": str(error), "backtest_run_dir": None, "built_ts": now()})
        failures.append({"source_type": source.source_type, "combo_id": combo["combo_id"],
                         "combo_index": combo["combo_index"], "error_message": str(error),
                         "traceback": "".join(traceback.format_exception(error))[-4000:]})
        progress.step(source.source_type)

    for source, plan in plans:
        preparations = Preparations(settings, source.inputs)
        source_base = _source_base(base, source)
        ready: list[tuple[dict[str, Any], BacktestOptions]] = []
        for combo in plan:
            try:
                ready.append((combo, combo_options(source_base,
                                                   _combo_values(combo, source.source_type))))
            except Exception as error:  # a failed combo is a manifest row (§5.2)
                if options.stop_on_error:
                    raise
                fail(source, combo, None, error)
        for group in by_signal_key([o for _, o in ready]):
            members = [ready[i] for i in group]
            try:
                batch = simulate_batch(preparations, [o for _, o in members])
            except Exception as error:
                if options.stop_on_error:
                    raise
                for combo, combo_opts in members:
                    fail(source, combo, combo_opts, error)
                continue
            for (combo, combo_opts), simulated in zip(members, batch, strict=True):
                try:
                    done(source, combo, combo_opts,
                         combo_result(preparations, combo_opts, simulated), preparations)
                except Exception as error:
                    if options.stop_on_error:
                        raise
                    fail(source, combo, combo_opts, error)
        n_prepared += preparations.count
    stages["simulate"] = round(time.perf_counter() - t0, 3)
    dense = _dense_returns(returns)
    manifest = pl.DataFrame(rows, infer_schema_length=None).join(
        _sharpe_period(dense), on=["source_type", "combo_id"], how="left") \
        .sort("source_type", "combo_index")  # fmt: skip
    weights = settings.backtest_sensitivity.robustness_score_weights.model_dump()
    table = robustness_scores(manifest, weights)
    nulled = ([] if options.include_ret_cv else ["ret_cv"]) + \
        ([] if options.include_tail_metrics else list(TAIL_COLUMNS))  # fmt: skip
    nulled = [c for c in nulled if c in table.columns]
    if nulled:  # scored with, reported without (§5.3)
        table = table.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in nulled)
    raw_nulls = _null_cells(table)
    table, manifest = _sanitise(table), _sanitise(manifest)
    cells = {"non_finite_cells": _null_cells(table) - raw_nulls,
             "null_metric_cells": _null_cells(table)}
    over = {t: overfitting_of(table, dense, t, settings.backtest_sensitivity.pbo_splits)
            for t in sorted(types)}
    stages["score"] = round(time.perf_counter() - t0 - sum(v for k, v in stages.items()
                                                           if k != "load"), 3)
    summary = _summary(grid_run_id, scope, sources, dims, options, base, manifest, table, over)
    summary |= {**cells, "started_ts": started, "combos_prepared": n_prepared,
                "extra": options.extra}
    _write(folder, summary, manifest, table, trades, dense, state_edges, failures, options,
           stages, t0)
    return GridOutcome(grid_run_id, folder, summary, table, manifest)


def _summary(grid_run_id: str, scope: str, sources: Sequence[GridSource], dims: GridDimensions,
             options: GridOptions, base: BacktestOptions, manifest: pl.DataFrame,
             table: pl.DataFrame, over: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    status = manifest["status"]
    success = int((status == "SUCCESS").sum())
    zero = int(table["is_zero_trade_combo"].sum()) if table.height else 0
    failed = manifest.filter(pl.col("status") == "FAILED")
    coverage_failures = int(failed["error_message"].str.contains("overlay_coverage_strict_fail")
                            .sum()) if failed.height else 0  # fmt: skip
    broken = False
    if base.exec_profile != "none" and table.height:
        cands = table.filter(pl.col("exec_candidate_signals_before_filters").fill_null(0) > 0)
        broken = cands.height > 0 and bool(
            (cands["exec_candidate_signals_after_filters"].fill_null(0) <= 0).all())
    exec_overrides = {k: getattr(base, k) for k in ("exec_min_price", "exec_min_dollar_vol20",
                                                    "exec_max_vol_pct", "exec_min_history_bars")
                      if getattr(base, k) is not None}  # fmt: skip
    return {
        "grid_run_id": grid_run_id, "scope": scope, "tag": options.tag,
        "total_combos": manifest.height, "successful_combos": success,
        "failed_combos": manifest.height - success, "skipped_combos": 0,
        "overlay_coverage_failures": coverage_failures, "zero_trade_combos": zero,
        "zero_trade_combo_share": zero / success if success else None,
        "realism_profile_broken_for_universe": broken,
        "sources": [{"source_type": s.source_type, "input_file": s.inputs.input_file,
                     "validation_run_dir": s.inputs.extra.get("validation_run_dir"),
                     "cluster_hardening_dir": s.inputs.extra.get("cluster_hardening_dir"),
                     "policy_filter_mode": (s.policy_filter_mode or "allow_only")
                     if s.source_type == "cluster" else None,
                     "overlay_mode": base.overlay_mode, "in_sample": s.inputs.in_sample,
                     "identity": s.inputs.identity} for s in sources],
        "dimensions": {k: [list(x) for x in v] if k == "include_state_sets" else list(v)
                       for k, v in vars(dims).items()},
        "include_ret_cv": options.include_ret_cv,
        "include_tail_metrics": options.include_tail_metrics,
        "report_top_n": options.report_top_n, "execution_profile": base.exec_profile,
        "overlay_mode": base.overlay_mode, "exec_overrides": exec_overrides,
        "report_threshold_overrides": {"min_trades_required": base.report_min_trades,
                                       "max_zero_trade_share_warn":
                                       base.report_max_zero_trade_share,
                                       "max_ret_cv_warn": base.report_max_ret_cv},
        "drawdown_ranked": bool(table["drawdown_scored"].any()) if table.height else False,
        "in_sample": any(bool(s.inputs.in_sample) for s in sources),
        "overfitting": over,
    }  # fmt: skip


def _write(folder: Path, summary: dict[str, Any], manifest: pl.DataFrame, table: pl.DataFrame,
           trades: dict[str, list[pl.DataFrame]], dense: pl.DataFrame,
           state_edges: list[pl.DataFrame], failures: list[dict[str, Any]],
           options: GridOptions, stages: dict[str, float], t0: float) -> None:  # fmt: skip
    """Build the folder under a temporary name, then swap it in (summary written last)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = folder.parent / f".{folder.name}.tmp-{lake.writer_tag()}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    out: dict[str, str] = {}
    tables = {"grid_metrics_table": table, "grid_robustness_v2_table": table}
    if options.write_run_manifest:
        tables["grid_manifest"] = manifest
    for name, frame in tables.items():
        out[f"{name}_parquet"] = str(lake.write_parquet(frame, temp / f"{name}.parquet"))
        out[f"{name}_csv"] = str(lake.write_csv(frame, temp / f"{name}.csv"))
    for source_type, frames in trades.items():
        part = temp / TRADES_DIR / f"source_type={source_type}"
        part.mkdir(parents=True, exist_ok=True)
        lake.write_parquet(pl.concat(frames, how="diagonal_relaxed"), part / "trades.parquet")
    out["grid_trades"] = str(temp / TRADES_DIR)
    out["grid_period_returns"] = str(lake.write_parquet(dense, temp / PERIOD_RETURNS))
    out["grid_failures"] = str(lake.write_json(failures, temp / "grid_failures.json"))
    edges = pl.concat(state_edges, how="diagonal_relaxed") if state_edges else None
    written = aggregates.write_aggregates(temp, table, manifest, edges, options.report_top_n)
    out |= written.get("outputs", {})
    summary["comparability"] = written.get("comparability")
    summary["hold_shapes"] = written.get("hold_shapes")
    stages["write"] = round(time.perf_counter() - t0 - sum(v for k, v in stages.items()
                                                           if k != "load"), 3)
    summary |= {"stage_seconds": stages, "finished_ts": now(), "output_dir": str(folder),
                "duration_sec": round(time.perf_counter() - t0 + stages["load"], 3)}
    out |= {"grid_summary": str(temp / SUMMARY), "grid_report": str(temp / "grid_report.md"),
            "grid_report_html": str(temp / "grid_report.html")}
    summary["outputs"] = {k: v.replace(str(temp), str(folder)) for k, v in out.items()}
    payload = finite_json(summary)
    lake.write_json(payload, temp / "grid_run_config.json")
    lake.write_json(payload, temp / SUMMARY)
    lake.write_text(grid_report.grid_report_md(temp), temp / "grid_report.md")
    pages.grid_html(temp, heatmap_dims=options.heatmap_dims)
    swap_in(temp, folder)


def read_grid_summary(folder: str | Path) -> dict[str, Any]:
    """A finished grid's summary; an error naming the folder when it is not one."""
    import json

    path = Path(folder) / SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a finished grid (no {SUMMARY})")
    return json.loads(path.read_text())
