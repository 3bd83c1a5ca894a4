"""Candidate re-run pack (CRP, backtest_ops.md §10): re-run every locked candidate of a
production candidate pack on the lake's current bars and say whether it still behaves as when
it was locked.

Per candidate, in label order: the locked model decodes the bars up to ``as_of`` causally
(:func:`lib.candidates.locked.locked_inputs`: no refit, forward filtering), one backtest runs
with the locked strategy (its own content-addressed folder under ``backtest_runs/``), the
observed metrics are compared with the packet's expected snapshot (:mod:`.drift`), and the
overlay coverage drift is merged in. Optional: a micro-grid around the locked hold and fee
(§10.1 step 7, never changes the status) and a walk-forward check that reads the locked combo's
rows of a walk-forward grid folder.

Output: ``<artifacts_root>/candidate_reruns/crp-<12hex>_candidate_rerun_pack_v1/`` with
``candidates/<LABEL>/`` and the §10.4 files; the id is a digest of the pack, the as-of date and
the options, so re-running a night replaces its folder (written whole, then swapped in).

Differences from the old tool, on purpose:
- the bars come from the locked model, not from the old run's input file (no
  ``--override-input-file``);
- fault 22: cluster candidates re-run (their locked cluster model and policy), and a failed
  candidate or walk-forward split is recorded (``drift_status`` ``ERROR`` with the message, a
  failed split row) instead of aborting the pack;
- fault 21: ``robustness_v2`` is observed (:func:`.drift.observed_robustness`) and ret_cv,
  ret_p10 and downside_std share one definition with the snapshot (edge metrics, ddof 0);
- the summary adds ``overall_status`` (the worst candidate status, ERROR worst) and
  ``finished_ts``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake, reports
from mf_pipeline.lib.candidates import drift, locked, pack
from mf_pipeline.lib.grids.combos import GridDimensions
from mf_pipeline.lib.grids.run import GridOptions, GridSource, run_grid
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.options import BacktestOptions, backtest_options
from mf_pipeline.lib.steps.backtest.run import (
    SUMMARY,
    BacktestInputs,
    backtest_run,
    finite_json,
)
from mf_pipeline.lib.steps.research.artifacts import now
from mf_pipeline.lib.steps.validation.options import digest

LOGGER = logging.getLogger(__name__)
CRP_VERSION = "candidate_rerun_pack_v1"
RERUNS_DIR = "candidate_reruns"
PACKET, PACK_SUMMARY = pack.PACKET, pack.SUMMARY
GRID_METRICS = "grid_metrics_table.parquet"
TABLE = "rerun_candidates_table.csv"
MANIFEST = "rerun_manifest.json"
RERUN_SUMMARY = "rerun_summary.json"
REPORT = "rerun_report.md"
WF_CSV = "wf_single_combo_summary.csv"
WF_MD = "wf_single_combo_report.md"
ERROR = "ERROR"
COVERAGE_KEYS = ("min_match_rate_warn", "min_match_rate_fail", "min_year_match_rate_warn",
                 "min_year_match_rate_fail", "unknown_rate_warn", "unknown_rate_fail")  # fmt: skip
"""The six overlay coverage thresholds (``overlay_coverage_policy`` names)."""
SNAPSHOT_KEYS = {"expectancy": "best_expectancy", "profit_factor": "PF",
                 "robustness_v2": "robustness_v2", "ret_cv": "ret_cv",
                 "trade_count": "trade_count", "zero_trade_share": "zero_trade_share",
                 "ret_p10": "ret_p10", "downside_std": "downside_std"}  # fmt: skip
"""Drift metric -> key of the packet's ``expected_behavior_snapshot`` (§9.3)."""
TABLE_COLUMNS = [
    "candidate_label", "combo_id", "source_type", "backtest_run_dir", "micro_grid_dir",
    "wf_grid_dir", "expected_expectancy", "observed_expectancy", "delta_expectancy_abs",
    "delta_expectancy_pct", "expected_profit_factor", "observed_profit_factor",
    "delta_profit_factor_abs", "delta_profit_factor_pct", "expected_robustness_v2",
    "observed_robustness_v2", "delta_robustness_v2_abs", "expected_ret_cv", "observed_ret_cv",
    "delta_ret_cv_abs", "delta_ret_cv_pct", "expected_trade_count", "observed_trade_count",
    "delta_trade_count_abs", "delta_trade_count_pct", "expected_exec_eligibility_rate",
    "observed_exec_eligibility_rate", "delta_exec_eligibility_rate_pct",
    "expected_overlay_match_rate", "observed_overlay_match_rate", "delta_overlay_match_rate_abs",
    "expected_overlay_unknown_rate", "observed_overlay_unknown_rate",
    "coverage_match_rate_drop_abs", "coverage_unknown_rate_increase_abs",
    "coverage_drift_status", "drift_status", "drift_reasons", "error_message",
]  # fmt: skip
"""§10.4 columns plus ``source_type`` and ``error_message`` (the message of an ERROR)."""
TABLE_SCHEMA = {c: pl.Float64 for c in TABLE_COLUMNS} | {
    c: pl.String for c in ("candidate_label", "combo_id", "source_type", "backtest_run_dir",
                           "micro_grid_dir", "wf_grid_dir", "coverage_drift_status",
                           "drift_status", "drift_reasons", "error_message")}  # fmt: skip
WF_COLUMNS = ["candidate_label", "wf_grid_dir", "splits_total", "splits_covered",
              "splits_failed", "expectancy_mean", "profit_factor_mean", "ret_cv_median",
              "robustness_v2_mean", "exec_eligibility_rate_mean",
              "exec_suppressed_signal_share_mean"]  # fmt: skip


@dataclass(frozen=True)
class RerunOptions:
    """What a re-run computes with besides the pack and the date (all part of the CRP id).

    ``overlay_coverage_mode`` / ``coverage`` (the six thresholds by their
    ``overlay_coverage_policy`` names): settings defaults for what is not given; the locked
    strategy's own values are not used (coverage is the night's policy, not the strategy's).
    ``coverage_drift_warn_drop`` / ``coverage_drift_fail_match``: §10.3 thresholds (settings
    ``candidate_rerun.drift`` when None; the fail rate falls back to an explicit
    ``coverage["min_match_rate_fail"]`` first). ``run_micro_grid`` None:
    ``candidate_rerun.micro_grid.enabled_default``. ``wf_grid_dir``: a walk-forward grid folder
    (``wfgrid-*``) whose split grids' rows of each locked combo are summarised (the WF check).
    """

    run_micro_grid: bool | None = None
    overlay_coverage_mode: str | None = None
    overlay_coverage_bypass: bool = False
    coverage: Mapping[str, float] = field(default_factory=dict)
    coverage_drift_warn_drop: float | None = None
    coverage_drift_fail_match: float | None = None
    wf_grid_dir: Path | None = None

    def payload(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["coverage"] = dict(sorted(self.coverage.items()))
        out["wf_grid_dir"] = str(self.wf_grid_dir) if self.wf_grid_dir else None
        return out

    def check(self) -> None:
        unknown = set(self.coverage) - set(COVERAGE_KEYS)
        if unknown:
            raise ValueError(f"unknown coverage threshold(s) {sorted(unknown)}; "
                             f"known {list(COVERAGE_KEYS)}")


def read_packet(pack_dir: Path) -> dict[str, Any]:
    """The pack's policy packet; an error naming the folder when it is missing or empty."""
    path = pack_dir / PACKET
    if not path.is_file():
        raise FileNotFoundError(f"{pack_dir} is not a production candidate pack (no {PACKET})")
    packet = json.loads(path.read_text())
    if not packet.get("candidates"):
        raise ValueError(f"{path} holds no candidate")
    return packet


def pack_id(pack_dir: Path) -> str:
    """The pack's ``run_id`` (its summary), else its folder name."""
    path = pack_dir / PACK_SUMMARY
    summary = json.loads(path.read_text()) if path.is_file() else {}
    return str(summary.get("run_id") or pack_dir.name)


def rerun_folder(settings: Settings, pack_dir: Path, as_of: dt.date,
                 options: RerunOptions) -> tuple[str, Path]:  # fmt: skip
    """``(rerun_id, folder)``: rerun_id = ``crp-<12 hex of pack id, as-of date, options>``."""
    rerun_id = "crp-" + digest({"pack": pack_id(pack_dir), "as_of": as_of.isoformat(),
                                "options": options.payload()})  # fmt: skip
    return rerun_id, settings.artifacts_root / RERUNS_DIR / f"{rerun_id}_{CRP_VERSION}"


def rerun_options(settings: Settings, candidate: Mapping[str, Any],
                  options: RerunOptions) -> BacktestOptions:  # fmt: skip
    """The locked strategy (``candidate["strategy"]``, a BacktestOptions payload) with the
    night's overlay coverage policy."""
    strategy = dict(candidate.get("strategy") or {})
    if not strategy:
        raise ValueError(f"{candidate.get('label')}: the packet has no locked strategy")
    c = settings.overlay_coverage_policy
    night = {f"overlay_{k}": options.coverage.get(k, getattr(c, k)) for k in COVERAGE_KEYS}
    night |= {"overlay_coverage_mode": options.overlay_coverage_mode or c.coverage_mode,
              "overlay_coverage_bypass": options.overlay_coverage_bypass}
    return backtest_options(settings, **{**strategy, **night})


def expected_metrics(candidate: Mapping[str, Any]) -> dict[str, Any]:
    """The packet's expectations (§10.1 step 4): the snapshot, the eligibility rate and the
    overlay match and unknown rates at lock time."""
    snapshot = candidate.get("expected_behavior_snapshot") or {}
    out = {name: snapshot.get(key) for name, key in SNAPSHOT_KEYS.items()}
    overlay = candidate.get("overlay") or {}
    out["exec_eligibility_rate"] = (candidate.get("execution_realism") or {}).get(
        "eligibility_rate")
    out["overlay_match_rate"] = overlay.get("match_rate")
    out["overlay_unknown_rate"] = overlay.get("unknown_rate")
    return out


def observed_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The re-run's metrics from its in-memory backtest summary (raw: a +inf profit factor is
    kept for the robustness score). Names are the grid metrics table's plus the drift's."""
    head = summary["headline"]
    edge = summary["edge_metrics"]
    execution = summary.get("execution") or {}
    overlay = summary.get("overlay") or {}
    out = {k: head.get(k) for k in ("trade_count", "win_rate", "avg_return", "median_return",
                                    "profit_factor", "profit_factor_inf", "expectancy",
                                    "return_std", "avg_hold_bars")}  # fmt: skip
    equity = summary.get("equity_metrics") or {}
    out |= {"max_drawdown": equity.get("max_drawdown"),
            "sharpe_proxy": equity.get("sharpe_proxy")}
    out |= {k: edge.get(k) for k in ("ret_cv", "ret_p10", "downside_std",
                                     "is_zero_trade_combo")}  # fmt: skip
    out["zero_trade_share"] = 1.0 if edge.get("is_zero_trade_combo") else 0.0
    out |= {k: execution.get(k) for k in (
        "exec_eligibility_rate", "exec_suppressed_signal_share",
        *(f"exec_suppressed_by_{r}_share" for r in ("price", "liquidity", "vol", "warmup")))}
    out |= {k: overlay.get(k) for k in ("overlay_match_rate", "overlay_unknown_rate",
                                        "overlay_vetoed_signal_share")}  # fmt: skip
    return out


def fingerprint_warnings(label: str, locked: Mapping[str, Any] | None,
                         current: Mapping[str, Any]) -> list[str]:  # fmt: skip
    """What changed in the settings since the candidate was locked (the packet's
    ``fingerprints`` vs :func:`pack.fingerprints` now): the research settings digest and each
    lake layer's settings fingerprint. A change does not stop the re-run; it explains drift."""
    if not locked:
        return [f"{label}: the packet records no settings fingerprints"]
    out = []
    if locked.get("research_settings_digest") != current.get("research_settings_digest"):
        out.append(f"{label}: research settings changed since the lock "
                   f"({locked.get('research_settings_digest')} -> "
                   f"{current.get('research_settings_digest')})")
    before, now_ = locked.get("lake_settings") or {}, current.get("lake_settings") or {}
    out += [f"{label}: lake layer {layer} settings changed since the lock "
            f"({before.get(layer)} -> {now_.get(layer)})"
            for layer in sorted(set(before) | set(now_)) if before.get(layer) != now_.get(layer)]
    return out


def _grid_table(candidate: Mapping[str, Any]) -> pl.DataFrame | None:
    grid = candidate.get("source_grid_dir")
    path = Path(grid) / GRID_METRICS if grid else None
    return pl.read_parquet(path) if path is not None and path.is_file() else None


def micro_dimensions(options: BacktestOptions, hold_offsets: list[int],
                     fee_offsets: list[float]) -> GridDimensions:  # fmt: skip
    """§10.1 step 7: holds max(1, hold + o); fees max(0, fee + o) plus 0 and the locked fee;
    everything else locked, event returns only."""
    holds = sorted({max(1, options.hold_bars + o) for o in hold_offsets})
    fee = options.fee_bps_per_side
    fees = sorted({max(0.0, fee + o) for o in fee_offsets} | {0.0, fee})
    return GridDimensions(hold_bars=tuple(holds), signal_mode=(options.signal_mode,),
                          exit_mode=(options.exit_mode,), fee_bps_per_side=tuple(fees),
                          slippage_bps_per_side=(options.slippage_bps_per_side,),
                          equity_mode=("event_returns_only",),
                          include_watch=(options.include_watch,),
                          include_state_sets=(options.include_state_ids,))  # fmt: skip


@dataclass
class _Outcome:
    """One candidate's re-run: what the folder, table and manifest say about it."""

    label: str
    combo_id: str | None
    source_type: str | None
    status: str = ERROR
    error: str | None = None
    run_dir: Path | None = None
    record: dict[str, Any] | None = None
    coverage: dict[str, Any] | None = None
    micro_grid_dir: Path | None = None
    wf_row: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


def _rerun_one(settings: Settings, pack_dir: Path, out: _Outcome, candidate: Mapping[str, Any],
               as_of: dt.date, options: RerunOptions, micro: bool) -> None:  # fmt: skip
    """Fill ``out`` with one candidate's re-run; raises when the re-run itself fails."""
    label, source_type = out.label, out.source_type
    out.warnings += fingerprint_warnings(label, candidate.get("fingerprints"),
                                         pack.fingerprints(settings))
    locked_dir = candidate.get("locked_dir")
    if not locked_dir:
        raise ValueError(f"{label}: the packet has no locked_dir (pack built before locking)")
    bt = rerun_options(settings, candidate, options)
    overlay = bool((candidate.get("overlay") or {}).get("enabled"))
    tag = f"{as_of.isoformat()}-{label.lower()}"
    inputs = locked.locked_inputs(settings, pack_dir / locked_dir, str(source_type), as_of,
                                  overlay, tag)
    run = backtest_run(settings, inputs, bt)
    out.run_dir = run.output_dir
    observed = observed_metrics(run.summary)
    table = _grid_table(candidate)
    if table is None:
        out.warnings.append(f"{label}: source grid metrics table not found; observed "
                            "robustness_v2 is null")
    else:
        weights = settings.backtest_sensitivity.robustness_score_weights.model_dump()
        observed["robustness_v2"] = drift.observed_robustness(
            table, str(out.combo_id), str(source_type), observed, weights)
        if observed["robustness_v2"] is None:
            out.warnings.append(f"{label}: combo {out.combo_id} not in its source grid; "
                                "observed robustness_v2 is null")
    expected = expected_metrics(candidate)
    c = settings.candidate_rerun
    thresholds = drift.coverage_thresholds(
        c.drift, warn_drop=options.coverage_drift_warn_drop,
        fail_match=options.coverage_drift_fail_match,
        overlay_min_match_rate_fail=options.coverage.get("min_match_rate_fail"))
    out.coverage = drift.coverage_drift(expected["overlay_match_rate"],
                                        expected["overlay_unknown_rate"],
                                        observed["overlay_match_rate"],
                                        observed["overlay_unknown_rate"], thresholds)
    out.record = drift.drift_record(expected, observed, out.coverage, c.drift, c.eps)
    out.record["execution_params_used"] = (run.summary.get("execution") or {}).get(
        "params_used")
    if micro:
        out.micro_grid_dir = _micro_grid(settings, inputs, bt, tag, out.warnings, label)
    out.status = out.record["drift_status"]


def _micro_grid(settings: Settings, inputs: BacktestInputs, bt: BacktestOptions, tag: str,
                warnings: list[str], label: str) -> Path | None:  # fmt: skip
    """The §10.1 step 7 micro-grid; a failure is a warning (it never changes the status)."""
    m = settings.candidate_rerun.micro_grid
    dims = micro_dimensions(bt, list(m.hold_bars_offsets), list(m.fee_bps_offsets))
    grid = GridOptions(base=replace(bt, equity_mode="event_returns_only"),
                       max_combos=m.max_combos, report_top_n=5, tag=f"{tag}-micro")
    source = GridSource(replace(inputs, tag=f"{tag}-micro"),
                        bt.policy_filter_mode if inputs.input_type == "cluster" else None)
    try:
        return run_grid(settings, [source], dims, grid).output_dir
    except Exception as error:  # the micro-grid is informative only
        LOGGER.warning("%s: micro-grid failed: %s", label, error)
        warnings.append(f"{label}: micro-grid failed: {error}")
        return None


def wf_single_combo(wf_grid_dir: Path, label: str, combo_id: str, source_type: str
                    ) -> dict[str, Any]:  # fmt: skip
    """The locked combo's rows in every split grid of a walk-forward grid folder (its
    ``wf_grid_plan.json``): one WF summary row. A split that failed, or whose grid lacks the
    combo, is counted in ``splits_failed``; nothing raises for a split (fault 22)."""
    plan = json.loads((wf_grid_dir / "wf_grid_plan.json").read_text())
    rows, failed = [], 0
    for split in plan.get("splits") or []:
        grid_dir = split.get("grid_run_dir")
        path = Path(grid_dir) / GRID_METRICS if grid_dir else None
        if split.get("status") != "SUCCESS" or path is None or not path.is_file():
            failed += 1
            continue
        mine = pl.read_parquet(path).filter(pl.col("combo_id") == combo_id,
                                            pl.col("source_type") == source_type)
        if mine.is_empty():
            failed += 1
            continue
        rows.append(mine.head(1))
    stacked = pl.concat(rows, how="diagonal_relaxed") if rows else None

    def stat(column: str, how: str) -> float | None:
        if stacked is None or column not in stacked.columns:
            return None
        values = stacked[column].cast(pl.Float64)
        values = values.filter(values.is_finite())
        return drift.finite(values.median() if how == "median" else values.mean())

    return {"candidate_label": label, "wf_grid_dir": str(wf_grid_dir),
            "splits_total": len(plan.get("splits") or []), "splits_covered": len(rows),
            "splits_failed": failed, "expectancy_mean": stat("expectancy", "mean"),
            "profit_factor_mean": stat("profit_factor", "mean"),
            "ret_cv_median": stat("ret_cv", "median"),
            "robustness_v2_mean": stat("robustness_score_v2", "mean"),
            "exec_eligibility_rate_mean": stat("exec_eligibility_rate", "mean"),
            "exec_suppressed_signal_share_mean": stat("exec_suppressed_signal_share", "mean")}


def candidate_rerun(settings: Settings, pack_dir: str | Path, as_of: dt.date, *,
                    options: RerunOptions | None = None, out_dir: Path | None = None,
                    log: Callable[[str], None] | None = None, **overrides: Any,
                    ) -> dict[str, Any]:  # fmt: skip
    """Re-run every candidate of the pack at ``pack_dir`` on the bars up to ``as_of`` and
    write the CRP folder (see the module docstring); returns ``rerun_summary.json``'s content
    with ``output_dir``. ``overrides``: :class:`RerunOptions` fields (``run_micro_grid``,
    ``wf_grid_dir``, ``overlay_coverage_mode``, ``coverage``, ...) replacing ``options``'.
    Only a missing or empty packet raises; a candidate that fails is an ``ERROR`` row."""
    options = replace(options or RerunOptions(), **overrides)
    options.check()
    pack_dir = Path(pack_dir)
    started, t0 = now(), time.perf_counter()
    packet = read_packet(pack_dir)
    rerun_id, folder = rerun_folder(settings, pack_dir, as_of, options)
    folder = out_dir or folder
    micro = settings.candidate_rerun.micro_grid.enabled_default \
        if options.run_micro_grid is None else options.run_micro_grid  # fmt: skip
    outcomes = []
    for label in sorted(packet["candidates"]):
        candidate = packet["candidates"][label]
        outcome = _Outcome(label, candidate.get("combo_id"),
                           candidate.get("source_type") or candidate.get("input_type"))
        try:
            _rerun_one(settings, pack_dir, outcome, candidate, as_of, options, micro)
        except Exception as error:  # one candidate never aborts the pack (fault 22)
            LOGGER.warning("candidate %s failed: %s", label, error)
            outcome.status, outcome.error = ERROR, f"{type(error).__name__}: {error}"
        if options.wf_grid_dir is not None:
            try:
                outcome.wf_row = wf_single_combo(Path(options.wf_grid_dir), label,
                                                 str(outcome.combo_id), str(outcome.source_type))
            except Exception as error:
                outcome.warnings.append(f"{label}: walk-forward check failed: {error}")
        if log:
            log(f"candidate {label}: {outcome.status}" + (f" ({outcome.error})"
                                                          if outcome.error else ""))
        outcomes.append(outcome)
    head = {"rerun_id": rerun_id, "crp_version": CRP_VERSION, "pcp_pack_dir": str(pack_dir),
            "pcp_pack_id": pack_id(pack_dir), "policy_packet_path": str(pack_dir / PACKET),
            "as_of": as_of.isoformat(), "as_of_tag": as_of.isoformat(), "started_ts": started,
            "wf_run_dir": str(options.wf_grid_dir) if options.wf_grid_dir else None,
            "override_input_file": None, "micro_grid_enabled": micro,
            "options": options.payload(), "output_dir": str(folder)}  # fmt: skip
    summary: dict[str, Any] = {}

    def write(temp: Path) -> None:
        summary.update(_write(temp, folder, head, outcomes, t0))

    reports.publish(folder, write)
    return summary


def _table(outcomes: list[_Outcome]) -> pl.DataFrame:
    rows = []
    for o in outcomes:
        rec, cov = o.record or {}, o.coverage or {}
        exp, obs = rec.get("expected") or {}, rec.get("observed") or {}
        row: dict[str, Any] = {
            "candidate_label": o.label, "combo_id": o.combo_id, "source_type": o.source_type,
            "backtest_run_dir": str(o.run_dir) if o.run_dir else None,
            "micro_grid_dir": str(o.micro_grid_dir) if o.micro_grid_dir else None,
            "wf_grid_dir": (o.wf_row or {}).get("wf_grid_dir"),
            "expected_overlay_unknown_rate": cov.get("baseline_unknown_rate"),
            "observed_overlay_unknown_rate": cov.get("observed_unknown_rate"),
            "coverage_match_rate_drop_abs": cov.get("match_rate_drop_abs"),
            "coverage_unknown_rate_increase_abs": cov.get("unknown_rate_increase_abs"),
            "coverage_drift_status": cov.get("coverage_drift_status"),
            "drift_status": o.status,
            "drift_reasons": ",".join(rec.get("drift_flags") or []) or None,
            "error_message": o.error,
        }  # fmt: skip
        for name in drift.COMPARED:
            row[f"expected_{name}"], row[f"observed_{name}"] = exp.get(name), obs.get(name)
        row |= {k: v for k, v in rec.items() if k.startswith("delta_")}
        rows.append({c: row.get(c) for c in TABLE_COLUMNS})
    return pl.DataFrame(rows, schema=TABLE_SCHEMA).sort("candidate_label")


def _write(temp: Path, folder: Path, head: dict[str, Any], outcomes: list[_Outcome],
           t0: float) -> dict[str, Any]:  # fmt: skip
    """Every file of the CRP folder into ``temp`` (paths recorded as under ``folder``)."""
    entries, warnings = [], []
    for o in outcomes:
        cdir = temp / "candidates" / o.label
        cdir.mkdir(parents=True)
        summary_path = o.run_dir / SUMMARY if o.run_dir else None
        if o.run_dir is not None:
            lake.write_text(f"{o.run_dir}\n", cdir / "backtest_run_dir.txt")
            lake.write_text(f"{summary_path}\n", cdir / "backtest_summary_path.txt")
            shutil.copyfile(o.run_dir / SUMMARY, cdir / SUMMARY)
        if o.micro_grid_dir is not None:
            lake.write_text(f"{o.micro_grid_dir}\n", cdir / "micro_grid_dir.txt")
        if o.wf_row is not None:
            lake.write_text(f"{o.wf_row['wf_grid_dir']}\n", cdir / "wf_grid_dir.txt")
        drift_path = cdir / "drift_metrics.json"
        record = o.record or {"drift_status": ERROR, "drift_flags": [], "error": o.error}
        lake.write_json(finite_json({"candidate_label": o.label, "combo_id": o.combo_id,
                                     **record}), drift_path)  # fmt: skip
        coverage_path = None
        if o.coverage is not None:
            coverage_path = cdir / "coverage_drift_metrics.json"
            lake.write_json(finite_json(o.coverage), coverage_path)
        final = folder / "candidates" / o.label
        entries.append({
            "candidate_label": o.label, "combo_id": o.combo_id, "source_type": o.source_type,
            "backtest_run_dir": str(o.run_dir) if o.run_dir else None,
            "backtest_summary_path": str(summary_path) if summary_path else None,
            "trades_path": str(o.run_dir / "trades.parquet") if o.run_dir else None,
            "candidate_dir": str(final),
            "drift_metrics_path": str(final / drift_path.name),
            "coverage_drift_metrics_path": str(final / coverage_path.name)
            if coverage_path else None,
            "micro_grid_dir": str(o.micro_grid_dir) if o.micro_grid_dir else None,
            "wf_grid_dir": (o.wf_row or {}).get("wf_grid_dir"),
            "drift_status": o.status, "drift_flags": list((o.record or {}).get("drift_flags")
                                                          or []),
            "error_message": o.error,
        })  # fmt: skip
        warnings += o.warnings + ([f"{o.label}: ERROR {o.error}"] if o.error else [])
    table = _table(outcomes)
    lake.write_csv(table, temp / TABLE)
    wf_rows = [o.wf_row for o in outcomes if o.wf_row is not None]
    wf_enabled = head["wf_run_dir"] is not None
    if wf_enabled:
        wf = pl.DataFrame(wf_rows, schema={c: pl.Float64 for c in WF_COLUMNS} | {
            "candidate_label": pl.String, "wf_grid_dir": pl.String, "splits_total": pl.Int64,
            "splits_covered": pl.Int64, "splits_failed": pl.Int64})  # fmt: skip
        lake.write_csv(wf.select(WF_COLUMNS), temp / WF_CSV)
        lake.write_text(_wf_md(head, wf), temp / WF_MD)
    statuses = [o.status for o in outcomes]
    finished = now()
    counts = [{"drift_status": s, "count": statuses.count(s)} for s in drift.STATUSES
              if s in statuses]
    summary = {
        "rerun_id": head["rerun_id"], "crp_version": CRP_VERSION,
        "pcp_pack_dir": head["pcp_pack_dir"], "pcp_pack_id": head["pcp_pack_id"],
        "as_of": head["as_of"], "candidate_count": len(outcomes), "status_counts": counts,
        "overall_status": drift.worst_status(statuses), "warnings": warnings,
        "wf": {"enabled": wf_enabled, "candidates_with_wf": len(wf_rows),
               "wf_single_combo_summary_csv": str(folder / WF_CSV) if wf_enabled else None,
               "wf_single_combo_report_md": str(folder / WF_MD) if wf_enabled else None},
        "micro_grid_enabled": head["micro_grid_enabled"],
        "started_ts": head["started_ts"], "finished_ts": finished,
        "duration_sec": round(time.perf_counter() - t0, 3), "output_dir": str(folder),
    }  # fmt: skip
    manifest = {**head, "finished_ts": finished, "duration_sec": summary["duration_sec"],
                "candidates": entries}
    lake.write_json(finite_json(manifest), temp / MANIFEST)
    lake.write_text(_report_md(summary, table, outcomes), temp / REPORT)
    lake.write_json(finite_json(summary), temp / RERUN_SUMMARY)
    return summary


def _wf_md(head: Mapping[str, Any], wf: pl.DataFrame) -> str:
    return "\n".join([
        "# Walk-forward check of the locked candidates", "",
        f"- walk-forward grid: {head['wf_run_dir']}",
        "- per candidate, its locked combo's rows in every split grid (a split that failed "
        "or lacks the combo counts in splits_failed)", "",
        reports.md_table(wf, WF_COLUMNS[:1] + WF_COLUMNS[2:]), ""])  # fmt: skip


def _report_md(summary: Mapping[str, Any], table: pl.DataFrame,
               outcomes: list[_Outcome]) -> str:  # fmt: skip
    lines = [
        f"# Candidate re-run {summary['rerun_id']}", "",
        f"- pack: {summary['pcp_pack_dir']} ({summary['pcp_pack_id']})",
        f"- as of: {summary['as_of']}; overall status: **{summary['overall_status']}**",
        f"- candidates: {summary['candidate_count']}; micro-grid: "
        f"{'on' if summary['micro_grid_enabled'] else 'off'}; walk-forward check: "
        f"{'on' if summary['wf']['enabled'] else 'off'}", "",
        "## Drift (expected at lock time vs observed now)", "",
        reports.md_table(table, ["candidate_label", "drift_status", "expected_expectancy",
                                 "observed_expectancy", "delta_expectancy_pct",
                                 "expected_profit_factor", "observed_profit_factor",
                                 "expected_robustness_v2", "observed_robustness_v2",
                                 "expected_ret_cv", "observed_ret_cv", "expected_trade_count",
                                 "observed_trade_count"]), "",
        "## Drift flags", "",
    ]  # fmt: skip
    for o in outcomes:
        flags = ", ".join((o.record or {}).get("drift_flags") or []) or "none"
        lines.append(f"- {o.label}: {o.status} — " + (f"error: {o.error}" if o.error else flags))
    lines += ["", "## Coverage drift", "",
              reports.md_table(table, ["candidate_label", "expected_overlay_match_rate",
                                       "observed_overlay_match_rate",
                                       "coverage_match_rate_drop_abs",
                                       "expected_overlay_unknown_rate",
                                       "observed_overlay_unknown_rate",
                                       "coverage_unknown_rate_increase_abs",
                                       "coverage_drift_status"]), ""]  # fmt: skip
    if summary["warnings"]:
        lines += ["## Warnings", "", *[f"- {w}" for w in summary["warnings"]], ""]
    return "\n".join(lines)
