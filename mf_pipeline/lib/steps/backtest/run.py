"""One backtest run (backtest_ops.md §1): normalize → map states → overlay → execution gates
→ signals → Numba simulation → metrics → artifacts under
``<artifacts_root>/backtest_runs/<run_id>_<input_type>_<tag>/``.

The run id is a digest of the inputs' identity and the options (fault 35), so a rerun lands in
the same folder. The folder is built under a hidden temporary name and swapped in at the end:
a killed run leaves the previous complete folder (or none), never half of one. A strict
overlay-coverage failure raises before anything is written (§6.5).
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.backtest import (
    adapter,
    engine,
    equity,
    execution,
    mapping,
    metrics,
    overlay,
    signals,
)
from mf_pipeline.lib.backtest import report as report_md
from mf_pipeline.lib.backtest.engine import BacktestConfig, BacktestResult, run_trades
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.options import BacktestOptions
from mf_pipeline.lib.steps.research.artifacts import now
from mf_pipeline.lib.steps.validation.options import digest

SUMMARY = "backtest_summary.json"
RUNS_DIR = "backtest_runs"
CARRY = ("state_label", "state_class", "state_direction_hint", "state_score",
         "overlay_cluster_state", "overlay_policy_class", "overlay_direction_hint",
         "overlay_tradability_score")  # fmt: skip
"""Columns copied from an entry's trigger row into the trade as ``entry_<name>``."""


@dataclass
class BacktestInputs:
    """What one run trades and where its directions come from.

    ``rows``: state-labelled bars (any §1.1 input); ``identity``: what they are (file and
    content hash, or split, source and model runs) — with the options it fixes the run id.
    HMM directions: ``state_map`` (parsed ``--state-map-file``) else ``scorecard`` (a
    ``state_scorecard.csv``-shaped table; ``scorecard_source`` names it). Cluster classes:
    ``cluster_policy`` (parsed ``cluster_hardening_policy.json``). ``in_sample``: true when the
    directions/policy were judged on the traded rows themselves, None when unknown.
    """

    rows: pl.DataFrame
    input_type: str
    tag: str
    identity: dict[str, Any]
    input_file: str | None = None
    state_col: str | None = None
    state_map: dict[str, Any] | None = None
    scorecard: pl.DataFrame | None = None
    scorecard_source: str = "validation_scorecard"
    cluster_policy: dict[str, Any] | None = None
    overlay_rows: pl.DataFrame | None = None
    overlay_policy: dict[str, Any] | None = None
    in_sample: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    load_sec: float = 0.0
    """Seconds spent reading the rows (part of the run's ``duration_sec``)."""


@dataclass
class BacktestOutcome:
    run_id: str
    output_dir: Path
    summary: dict[str, Any]
    trades: pl.DataFrame


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (the spec's JSON rule)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def run_id_of(inputs: BacktestInputs, options: BacktestOptions) -> str:
    return "bt-" + digest({"identity": inputs.identity, "options": options.payload(),
                           "input_type": inputs.input_type})  # fmt: skip


def run_folder(settings: Settings, run_id: str, input_type: str, tag: str) -> Path:
    return settings.artifacts_root / RUNS_DIR / f"{run_id}_{input_type}_{tag.replace(' ', '-')}"


def _directions(inputs: BacktestInputs, settings: Settings
                ) -> tuple[dict[int, str] | None, str]:  # fmt: skip
    """HMM direction map and its source (§3: state map first, then a scorecard)."""
    if inputs.input_type != "hmm":
        return None, "none"
    if inputs.state_map is not None:
        return mapping.directions_from_state_map(inputs.state_map), "state_map"
    if inputs.scorecard is not None:
        threshold = settings.backtest.hmm_direction_inference.min_abs_forward_mean_for_direction
        return mapping.directions_from_scorecard(inputs.scorecard, threshold), \
            inputs.scorecard_source  # fmt: skip
    return None, "none"


def _coverage(options: BacktestOptions) -> overlay.CoverageThresholds:
    """The options' ``overlay_<name>`` values as the overlay's thresholds (same names)."""
    names = [f.name for f in fields(overlay.CoverageThresholds)]
    return overlay.CoverageThresholds(**{n: getattr(options, f"overlay_{n}") for n in names})


def _execution_params(settings: Settings, options: BacktestOptions) -> execution.ExecutionParams:
    e = settings.backtest_execution_realism
    profiles = {name: p.model_dump() for name, p in e.profiles.items()}
    overrides = {"min_price": options.exec_min_price,
                 "min_dollar_vol_20": options.exec_min_dollar_vol20,
                 "max_vol_pct": options.exec_max_vol_pct,
                 "min_history_bars_for_execution": options.exec_min_history_bars}
    return execution.resolve(
        options.exec_profile, {k: v for k, v in overrides.items() if v is not None},
        profiles=profiles, dollar_vol_window=e.dollar_vol_window,
        dollar_vol_rolling_method=e.dollar_vol_rolling_method,
        vol_input_unit_mode=e.vol_input_unit_mode,
        min_trades_required=options.report_min_trades,
        max_zero_trade_share_warn=options.report_max_zero_trade_share,
        max_ret_cv_warn=options.report_max_ret_cv,
    )  # fmt: skip


@dataclass
class _Overlaid:
    frame: pl.DataFrame
    result: Any = None  # overlay.OverlayResult when enabled


def _apply_overlay(frame: pl.DataFrame, inputs: BacktestInputs,
                   options: BacktestOptions) -> _Overlaid:  # fmt: skip
    """§6.1: the overlay needs both the rows and the policy; a gating mode needs both."""
    if (inputs.overlay_rows is None) != (inputs.overlay_policy is None):
        raise ValueError("the overlay needs both --overlay-cluster-file and "
                         "--overlay-cluster-hardening-dir (got only one)")
    if inputs.overlay_rows is None:
        if options.overlay_mode != "none":
            raise ValueError(f"--overlay-mode {options.overlay_mode} needs "
                             "--overlay-cluster-file and --overlay-cluster-hardening-dir")
        return _Overlaid(overlay.no_overlay(frame))
    result = overlay.apply_overlay(
        frame, overlay.read_overlay_rows(inputs.overlay_rows),
        overlay.policy_table(inputs.overlay_policy), options.overlay_mode,
        list(options.overlay_join_keys), _coverage(options))  # fmt: skip
    overlay.check_strict(result.verdict, options.overlay_coverage_mode,
                         options.overlay_coverage_bypass)
    return _Overlaid(result.frame, result)


@dataclass
class Prepared:
    """A run's rows up to the signals (§1.1–1.4): everything a strategy's simulation reads.
    A grid prepares once per signal-defining option set and simulates many combos on it."""

    adapter_summary: dict[str, Any]
    mapping_summary: dict[str, Any]
    snapshot: dict[str, Any] | None
    over: _Overlaid
    params: execution.ExecutionParams
    exe: execution.ExecutionResult
    signals: pl.DataFrame
    generator_diag: dict[str, Any]


def prepare(settings: Settings, inputs: BacktestInputs, options: BacktestOptions,
            stages: _Stages | None = None) -> Prepared:  # fmt: skip
    """Normalize, map states, overlay, execution gates and signals of ``inputs``."""
    stages = stages or _Stages({})
    warming = threading.Thread(target=_warm_kernels, daemon=True)
    warming.start()  # overlaps Numba's one-time start with the polars work below
    frame, adapter_summary = adapter.normalize(inputs.rows, inputs.input_type,
                                               inputs.input_file, inputs.state_col,
                                               row_ids=options.export_joined_rows)
    stages.lap("normalize")
    directions, source = _directions(inputs, settings)
    b = settings.backtest
    mapped, mapping_summary, snapshot = mapping.map_states(
        frame, inputs.input_type,
        flow_mapping=mapping.FlowMapping(tuple(b.flow_mapping.long_states),
                                         tuple(b.flow_mapping.short_states),
                                         tuple(b.flow_mapping.ignore_states)),
        hmm_directions=directions, hmm_mapping_source=source,
        cluster_policy=inputs.cluster_policy, policy_filter_mode=options.policy_filter_mode,
        include_watch=options.include_watch,
        default_classes=tuple(b.cluster_policy.default_classes),
        include_state_ids=options.include_state_ids,
        allow_unconfirmed=options.allow_unconfirmed,
    )  # fmt: skip
    stages.lap("map_states")
    over = _apply_overlay(mapped, inputs, options)
    stages.lap("overlay")
    params = _execution_params(settings, options)
    warming.join()
    exe = execution.apply_execution(over.frame, params)
    stages.lap("execution")
    sig, gen_diag = signals.generate_signals(exe.frame, options.signal_mode)
    stages.lap("signals")
    return Prepared(adapter_summary, mapping_summary, snapshot, over, params, exe, sig,
                    gen_diag)


def simulate(prepared: Prepared, options: BacktestOptions) -> BacktestResult:
    """The trades of ``options``' exit mode, hold and costs on prepared signals (§1.5)."""
    config = BacktestConfig(options.signal_mode, options.exit_mode, options.hold_bars,
                            options.fee_bps_per_side, options.slippage_bps_per_side)
    return run_trades(prepared.signals, config, state_col="state_id",
                      direction_col="direction", eligible_col="signal_eligible",
                      entry_col="entry_signal", carry=CARRY)  # fmt: skip


def backtest_run(settings: Settings, inputs: BacktestInputs, options: BacktestOptions, *,
                 run_id: str | None = None, folder: Path | None = None) -> BacktestOutcome:
    """Run one backtest and write its artifacts (§1.7); see the module docstring."""
    started, t0 = now(), time.perf_counter()
    stages = _Stages({"load": round(inputs.load_sec, 3)})
    run_id = run_id or run_id_of(inputs, options)
    folder = folder or run_folder(settings, run_id, inputs.input_type, inputs.tag)
    prep = prepare(settings, inputs, options, stages)
    adapter_summary, mapping_summary, snapshot = (prep.adapter_summary, prep.mapping_summary,
                                                  prep.snapshot)  # fmt: skip
    over, params, exe, sig, gen_diag = (prep.over, prep.params, prep.exe, prep.signals,
                                        prep.generator_diag)  # fmt: skip
    result = simulate(prep, options)
    stages.lap("simulate")
    trades = result.trades
    tables = _tables(trades, sig, options)
    headline = metrics.trade_summary(trades, result.diagnostics)
    summary: dict[str, Any] = {
        "run_id": run_id, "input_type": inputs.input_type, "input_file": inputs.input_file,
        **{k: v for k, v in options.payload().items() if not k.startswith(("overlay_", "exec_",
                                                                            "report_"))},
        "include_state_ids": list(options.include_state_ids), "allow_overlap": False,
        "started_ts": started, "adapter_summary": adapter_summary,
        "mapping_summary": mapping_summary, "signal_diagnostics": gen_diag,
        "engine_diagnostics": result.diagnostics, "headline": headline,
        "exit_reason_summary": tables["exit_reason_summary"].to_dicts(),
        "equity_metrics": tables.pop("_equity_metrics", None),
        "edge_metrics": metrics.edge_metrics(trades, adapter_summary["rows_in"],
                                             mapping_summary["eligible_rows"]),
        "in_sample": inputs.in_sample, "mapping_source": mapping_summary.get("mapping_source"),
        "identity": inputs.identity, **inputs.extra,
    }  # fmt: skip
    summary["overlay"] = overlay_block(over, gen_diag, options)
    trade_ctx = execution.trade_context(trades, sig)
    summary["execution"] = execution.execution_block(params, exe, gen_diag, trade_ctx)
    stages.lap("metrics")
    summary["stage_seconds"] = stages.seconds
    exec_files = params.filters_enabled or options.exec_profile != "none"
    _write(folder, summary, trades, tables, sig, snapshot, over, exe if exec_files else None,
           trade_ctx, gen_diag, options, t0, inputs)
    return BacktestOutcome(run_id, folder, summary, trades)


def _warm_kernels() -> None:
    engine.warm_up()
    execution.warm_up()


class _Stages:
    """Seconds per stage of a run (``stage_seconds`` in the summary; ``write`` is filled in
    when the folder is written): where the time of a slow run went."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds, self._last = seconds, time.perf_counter()

    def lap(self, name: str) -> None:
        now_ = time.perf_counter()
        self.seconds[name] = round(now_ - self._last, 3)
        self._last = now_


def _tables(trades: pl.DataFrame, sig: pl.DataFrame, options: BacktestOptions
            ) -> dict[str, Any]:  # fmt: skip
    tables: dict[str, Any] = {
        "summary_by_state": metrics.by_state(trades),
        "summary_by_symbol": metrics.by_symbol(trades),
        "exit_reason_summary": metrics.exit_reason_summary(trades),
    }
    curve = equity_of(trades, sig, options)
    if curve is not None:
        tables["equity_curve"], tables["_equity_metrics"] = curve
    return tables


def equity_of(trades: pl.DataFrame, sig: pl.DataFrame, options: BacktestOptions
              ) -> tuple[pl.DataFrame, dict[str, Any]] | None:  # fmt: skip
    """The equity curve and its metrics of ``options.equity_mode`` (None: event returns only)."""
    if options.equity_mode == "daily_equity_curve":
        return equity.exit_date_curve(trades, options.capital_base)
    if options.equity_mode == "daily_mark_to_market":
        return equity.mark_to_market_curve(trades, sig.select("ticker", "trade_date", "close"),
                                           options.capital_base)
    return None


def overlay_block(over: _Overlaid, gen: dict[str, Any], options: BacktestOptions
                   ) -> dict[str, Any]:  # fmt: skip
    """The summary's ``overlay`` block (§1.7)."""
    block: dict[str, Any] = {
        "overlay_enabled": over.result is not None, "overlay_mode": options.overlay_mode,
        "overlay_coverage_mode": options.overlay_coverage_mode,
        "overlay_coverage_bypass": options.overlay_coverage_bypass,
        "overlay_unknown_handling": options.overlay_unknown_handling,
        **{k: gen.get(k) for k in ("overlay_vetoed_signal_count", "overlay_vetoed_signal_share",
                                   "overlay_passed_signal_count",
                                   "overlay_direction_conflict_count",
                                   "overlay_direction_conflict_share")},
    }  # fmt: skip
    if over.result is None:
        return block
    join, verdict = over.result.join_summary, over.result.verdict
    block |= {
        "overlay_match_rate": join.get("match_rate"),
        "overlay_unknown_rate": join.get("unknown_rate"),
        "overlay_year_min_match_rate": join.get("year_min_match_rate"),
        "overlay_year_p10_match_rate": join.get("year_p10_match_rate"),
        "overlay_year_fail_years": join.get("year_fail_years"),
        "overlay_coverage_status": verdict.get("status"),
        "overlay_coverage_reasons": verdict.get("reasons"),
        "overlay_allow_rate": join.get("overlay_allow_rate"),
        "overlay_watch_rate": join.get("overlay_watch_rate"),
        "overlay_block_rate": join.get("overlay_block_rate"),
        "overlay_join_summary": join, "overlay_coverage_verdict": verdict,
    }
    return block


def _write_table(frame: pl.DataFrame, folder: Path, name: str, settings_parquet: Any = None,
                 csv: bool = True, parquet: bool = True) -> dict[str, str]:  # fmt: skip
    out = {}
    if parquet:
        out[f"{name}_parquet"] = str(lake.write_parquet(frame, folder / f"{name}.parquet",
                                                        settings_parquet))  # fmt: skip
    if csv:
        out[f"{name}_csv"] = str(lake.write_csv(_csv_safe(frame), folder / f"{name}.csv"))
    return out


def _csv_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """CSV cannot hold nested values or datetimes with zones reliably: stringify them."""
    nested = [c for c, t in frame.schema.items() if isinstance(t, pl.List | pl.Struct)]
    return frame.with_columns(pl.col(c).cast(pl.Utf8, strict=False) for c in nested) \
        if nested else frame  # fmt: skip


def _write(folder: Path, summary: dict[str, Any], trades: pl.DataFrame,
           tables: dict[str, Any], sig: pl.DataFrame, snapshot: dict[str, Any] | None,
           over: _Overlaid, exe: Any, trade_ctx: dict[str, Any], gen: dict[str, Any],
           options: BacktestOptions, t0: float, inputs: BacktestInputs) -> None:
    """Build the folder under a temporary name, then swap it in (summary written last)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = folder.parent / f".{folder.name}.tmp-{lake.writer_tag()}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    out: dict[str, Any] = {}
    js = {"backtest_run_config.json": {**options.payload(), "input_type": inputs.input_type,
                                       "input_file": inputs.input_file,
                                       "identity": inputs.identity},
          "signal_diagnostics.json": summary["engine_diagnostics"],
          "state_policy_join_summary.json": summary["mapping_summary"]}  # fmt: skip
    if snapshot is not None:
        js["policy_snapshot.json"] = snapshot
    out |= _write_table(trades, temp, "trades")
    for name in ("summary_by_state", "summary_by_symbol"):
        out |= _write_table(tables[name], temp, name)
    if "equity_curve" in tables:
        out |= _write_table(tables["equity_curve"], temp, "equity_curve")
        js["equity_metrics.json"] = summary["equity_metrics"]
    if options.export_joined_rows:
        out |= _write_table(sig, temp, "normalized_rows_with_policy", csv=False)
    if over.result is not None:
        r = over.result
        js["overlay_join_summary.json"] = r.join_summary
        js["overlay_coverage_verdict.json"] = r.verdict
        js["overlay_signal_effect_summary.json"] = overlay.signal_effect_summary(sig, gen)
        out |= _write_table(r.coverage_by_year, temp, "overlay_join_coverage_by_year",
                            parquet=False)
        out |= _write_table(r.policy_mix, temp, "overlay_policy_mix_on_primary", parquet=False)
        out |= _write_table(overlay.performance_breakdown(trades), temp,
                            "overlay_performance_breakdown", parquet=False)
        if r.duplicate_keys is not None:
            out |= _write_table(r.duplicate_keys, temp, "overlay_join_duplicate_keys",
                                parquet=False)
    if exe is not None:
        js["execution_filter_summary.json"] = exe.summary
        js["execution_trade_context_summary.json"] = trade_ctx
        out |= _write_table(exe.by_reason, temp, "execution_filter_by_reason", parquet=False)
        out |= _write_table(exe.by_year, temp, "execution_filter_by_year", parquet=False)
    for name, payload in js.items():
        out[name.removesuffix(".json")] = str(lake.write_json(finite_json(payload), temp / name))
    summary["finished_ts"] = now()
    summary["load_sec"] = round(inputs.load_sec, 3)
    summary["stage_seconds"]["write"] = round(
        time.perf_counter() - t0 - sum(v for k, v in summary["stage_seconds"].items()
                                       if k != "load"), 3)
    summary["duration_sec"] = round(time.perf_counter() - t0 + inputs.load_sec, 3)
    summary["output_dir"] = str(folder)
    out["backtest_report"] = str(temp / "backtest_report.md")
    out["backtest_summary"] = str(temp / SUMMARY)
    summary["outputs"] = {k: v.replace(str(temp), str(folder)) for k, v in out.items()}
    policy_counts = (inputs.cluster_policy or {}).get("summary") if inputs.input_type == \
        "cluster" else None  # fmt: skip
    lake.write_text(report_md.backtest_report_md(summary, tables["summary_by_state"],
                                                 tables["summary_by_symbol"], policy_counts),
                    temp / "backtest_report.md")  # fmt: skip
    lake.write_json(finite_json(summary), temp / SUMMARY)
    swap_in(temp, folder)


def swap_in(temp: Path, folder: Path) -> None:
    """Replace ``folder`` by the complete ``temp`` folder (two renames)."""
    old = folder.parent / f".{folder.name}.old-{lake.writer_tag()}"
    if folder.exists():
        folder.rename(old)
    temp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """A finished run's summary; error naming the folder when it is not a finished run."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished backtest run (no {SUMMARY})")
    import json

    return json.loads(path.read_text())
