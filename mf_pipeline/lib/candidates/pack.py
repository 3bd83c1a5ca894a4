"""The production candidate pack (backtest_ops.md §9): the configurations worth trading,
selected from finished grids and LOCKED so they can be re-run on new bars every night.

Inputs (:data:`INPUT_KEYS`): the HMM grids ``alpha`` (overlay none, profile none), ``exec``
(overlay allow_only, profile lite) and ``exec2`` (overlay none, profile lite), and optionally the
walk-forward grids ``wf_baseline`` (none, lite) / ``wf_hybrid`` (allow_only, lite) and an
execution realism report ``realism``. A folder not given is discovered by its RECORDED settings,
newest ``finished_ts`` (never a hard-coded folder, fault 16); grids are discovered only when
their ``hmm`` source is a split (it names its HMM run), the only kind that can be locked.
A missing ``alpha`` grid is an error; a missing ``exec``/``exec2`` grid skips that candidate
with a warning. Candidates are selected among the grid's ``hmm`` rows (:mod:`.select`).

Beyond the old tool, each candidate carries what a re-run needs: ``strategy`` (the
:class:`BacktestOptions` payload of the combo: the grid row's parameters with the grid's
overlay mode, execution profile, overrides and report thresholds), ``locked/<LABEL>/`` (the
fitted scaler, HMM parameters, directions and, with an overlay, the cluster model and policy,
written by :func:`locked.lock`), the settings fingerprints and the last date of the locked rows.
Fixes: ``thresholds_used`` are the resolved thresholds (profile base + overrides), never null
just because only a profile was named (fault 23); the walk-forward fallback never subtracts a
null (fault 24); ``notes`` are real notes.

The pack id ``pcp-<12hex>`` is a digest of the resolved input folders and the options, so a
rerun lands in the same folder, which is written whole under a temp name and swapped in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.candidates import select
from mf_pipeline.lib.reports import discover, md_table, md_value, publish
from mf_pipeline.lib.reports.realism import REPORTS_DIR as REALISM_DIR
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps import calc_settings
from mf_pipeline.lib.steps.backtest.options import BacktestOptions, backtest_options
from mf_pipeline.lib.steps.backtest.run import _execution_params, finite_json
from mf_pipeline.lib.steps.backtest.split_inputs import DECODED
from mf_pipeline.lib.steps.research.artifacts import now
from mf_pipeline.lib.steps.validation.options import digest
from mf_pipeline.orchestration.freshness import research_settings_digest

PACKS_DIR = "production_candidates"
PCP_VERSION = "production_candidate_pack_v1"
PACKET = "production_policy_packet_v1.json"
TABLE = "production_candidates_table.csv"
SUMMARY = "production_candidates_summary.json"
REPORT = "production_candidate_pack_report.md"
FILES = (PACKET, TABLE, SUMMARY, REPORT)
LOCKED_DIR = "locked"
GRID_TARGETS = {"alpha": (select.ALPHA, "none", "none"),
                "exec": (select.EXEC, "allow_only", "lite"),
                "exec2": (select.EXEC_2, "none", "lite")}  # fmt: skip
"""Input key -> (candidate label, overlay mode, execution profile) of its grid."""
WF_TARGETS = {"wf_baseline": ("none", "lite"), "wf_hybrid": ("allow_only", "lite")}
INPUT_KEYS = (*GRID_TARGETS, *WF_TARGETS, "realism")
SOURCE_ARTIFACT_KEYS = {"a1_grid_dir": "alpha", "a2_grid_dir": "exec2", "a3_grid_dir": None,
                        "b_grid_dir": "exec", "c_grid_dir": None,
                        "wf_baseline_dir": "wf_baseline", "wf_hybrid_dir": "wf_hybrid",
                        "execution_realism_report_dir": "realism"}  # fmt: skip
"""The packet's §9.3 ``source_artifacts`` keys and our input keys (a3/c grids are unused)."""
TABLE_COLUMNS = ("label", "selected_from_grid_dir", "combo_id", "signal_mode", "exit_mode",
                 "hold_bars", "fee_bps_per_side", "slippage_bps_per_side", "overlay_mode",
                 "execution_profile", "trade_count", "expectancy", "profit_factor",
                 "robustness_score_v2", "ret_cv", "zero_trade_combo", "overlay_match_rate",
                 "overlay_vetoed_signal_share", "exec_eligibility_rate",
                 "exec_suppressed_signal_share", "selection_trade_threshold_used",
                 "profit_factor_inf", "locked_dir")  # fmt: skip
RECOMMENDATIONS = {
    select.ALPHA: "raw alpha / benchmark: the most robust HMM combo without overlay or "
                  "execution filters",
    select.EXEC: "execution-focused: HMM gated by the cluster overlay (allow_only) under the "
                 "lite execution profile",
    select.EXEC_2: "realism control: HMM under the lite execution profile without overlay",
}  # fmt: skip
EDGE_DEFINITION = ("lib.backtest.metrics.edge_metrics: valid trades' finite net returns; "
                   "ret_cv = std0/|mean|, ret_p10 linear quantile, downside_std = std0 of r < 0")


def lock_candidate(settings: Settings, locked_dir: Path, grid_dir: Path, source_type: str,
                   overlay: bool) -> dict[str, Any]:  # fmt: skip
    """Write the locked model of one candidate with :func:`locked.lock` (imported on use: it
    pulls in the research models; tests replace this function to check the pack around it)."""
    from mf_pipeline.lib.candidates import locked

    return locked.lock(settings, locked_dir, grid_dir, source_type, overlay)


def _hmm_source(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    return next((s for s in summary.get("sources") or []
                 if (s or {}).get("source_type") == "hmm"), None)  # fmt: skip


def lockable(summary: Mapping[str, Any]) -> bool:
    """A grid whose ``hmm`` source is a split (its identity names the HMM and clustering
    runs whose models :func:`locked.lock` copies)."""
    identity = (_hmm_source(summary) or {}).get("identity") or {}
    return bool(identity.get("hmm_run_dir") and identity.get("cluster_run_dir"))


def resolve(settings: Settings, dirs: Mapping[str, Path | str | None], include_exec2: bool,
            ) -> tuple[dict[str, Path | None], dict[str, dict[str, str | None]]]:  # fmt: skip
    """The input folders: given, else discovered (see module doc), else None."""
    root = settings.artifacts_root
    finders: dict[str, Any] = {
        key: (lambda _, o=o, p=p: discover.find_grid_with_source(
            root, source="hmm", overlay_mode=o, execution_profile=p, where=lockable))
        for key, (_, o, p) in GRID_TARGETS.items() if key != "exec2" or include_exec2}
    finders |= {key: (lambda _, o=o, p=p: discover.find_wf_grid(
        root, source="hmm", overlay_mode=o, execution_profile=p))
        for key, (o, p) in WF_TARGETS.items()}
    finders["realism"] = lambda _: discover.find_newest(
        root / REALISM_DIR, "exec-realism-*", "execution_realism_summary.json")
    return discover.resolve_inputs(dirs, INPUT_KEYS, finders)


def pack_folder(settings: Settings, resolved: Mapping[str, Path | None], options: Mapping[str, Any]
                ) -> tuple[str, Path]:  # fmt: skip
    """``(run_id, folder)``: ``pcp-<12 hex of the resolved inputs and options>``."""
    run_id = "pcp-" + digest({"inputs": {k: None if v is None else str(v)
                                         for k, v in resolved.items()}, "options": options})
    return run_id, settings.artifacts_root / PACKS_DIR / f"{run_id}_{PCP_VERSION}"


def _read_grid(folder: Path, key: str) -> discover.Grid:
    for name in (discover.GRID_SUMMARY, "grid_metrics_table.parquet"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{key} grid {folder}: {name} is missing (not a finished "
                                    "grid folder)")
    grid = discover.read_grid(folder, discover.Loaded())
    if not lockable(grid.summary or {}):
        raise ValueError(f"{key} grid {folder} cannot be locked: its hmm source is not a split "
                         "(no hmm_run_dir/cluster_run_dir in its identity; a file grid has no "
                         "model to lock). Use a grid built on a research split.")
    return grid


def strategy_options(settings: Settings, row: Mapping[str, Any],
                     summary: Mapping[str, Any]) -> BacktestOptions:  # fmt: skip
    """The backtest options of a grid combo: the row's strategy parameters with the grid's
    overlay mode, execution profile, execution overrides and report thresholds."""
    subset = row.get("state_subset_key")
    thresholds = summary.get("report_threshold_overrides") or {}
    values: dict[str, Any] = {
        "signal_mode": row["signal_mode"], "exit_mode": row["exit_mode"],
        "hold_bars": int(row["hold_bars"]), "fee_bps_per_side": float(row["fee_bps_per_side"]),
        "slippage_bps_per_side": float(row["slippage_bps_per_side"]),
        "equity_mode": row.get("equity_mode"), "include_watch": row.get("include_watch"),
        "policy_filter_mode": row.get("policy_filter_mode"),
        "include_state_ids": tuple(int(s) for s in str(subset).split("|")) if subset else (),
        "overlay_coverage_mode": row.get("overlay_coverage_mode"),
        "overlay_mode": discover.overlay_mode_of(summary),
        "exec_profile": discover.execution_profile_of(summary),
        "report_min_trades": thresholds.get("min_trades_required"),
        "report_max_zero_trade_share": thresholds.get("max_zero_trade_share_warn"),
        "report_max_ret_cv": thresholds.get("max_ret_cv_warn"),
        **(summary.get("exec_overrides") or {}),
    }  # fmt: skip
    return backtest_options(settings, **values)


def thresholds_used(settings: Settings, options: BacktestOptions) -> dict[str, Any]:
    """The execution thresholds the combo ran with: its profile's, then its overrides (§7.1)."""
    params = _execution_params(settings, options)
    return {"min_price": params.min_price, "min_dollar_vol20": params.min_dollar_vol_20,
            "max_vol_pct": params.max_vol_pct,
            "min_history_bars": params.min_history_bars_for_execution}  # fmt: skip


def _delta(hybrid: Any, baseline: Any) -> float | None:
    """hybrid − baseline; null when either is missing (fault 24)."""
    if hybrid is None or baseline is None:
        return None
    return float(hybrid) - float(baseline)


def _hmm_row(path: Path, column: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    frame = pl.read_csv(path, infer_schema_length=None)
    if column not in frame.columns:
        return None
    rows = frame.filter(pl.col(column) == "hmm")
    return rows.row(0, named=True) if rows.height else None


def wf_consistency(realism: Path | None, wf_baseline: Path | None,
                   wf_hybrid: Path | None) -> dict[str, Any]:  # fmt: skip
    """Walk-forward support of CANDIDATE_EXEC (§9.2): the realism report's ``hmm`` WF row when
    its status is OK; else the two WF grids' ``hmm`` source summaries (hybrid − baseline, null
    when either side is null); else the realism row whatever its status; else ``{}``."""
    row = _hmm_row(realism / "execution_realism_wf_table.csv", "source") if realism else None
    if row is not None and row.get("status", "OK") == "OK":
        return {"from": "execution_realism_report", **row}
    name = "wf_grid_source_summary.csv"
    base = _hmm_row(wf_baseline / name, "source_type") if wf_baseline else None
    hyb = _hmm_row(wf_hybrid / name, "source_type") if wf_hybrid else None
    if base is not None and hyb is not None:
        return {"from": "wf_grid_source_summary", "source": "hmm",
                "split_count": hyb.get("splits_covered"),
                "avg_delta_expectancy": _delta(hyb.get("expectancy_mean"),
                                               base.get("expectancy_mean")),
                "avg_delta_pf": _delta(hyb.get("profit_factor_mean"),
                                       base.get("profit_factor_mean")),
                "avg_delta_robustness_v2": _delta(hyb.get("robustness_v2_mean"),
                                                  base.get("robustness_v2_mean")),
                "avg_delta_ret_cv": _delta(hyb.get("ret_cv_median"), base.get("ret_cv_median"))}
    return {"from": "execution_realism_report", **row} if row is not None else {}


def lake_last_date(identity: Mapping[str, Any]) -> str | None:
    """The last trade date of the rows the candidate's grid traded: the split's decoded rows
    up to its test end (the test end itself when the decoded rows are gone)."""
    test_end = identity.get("test_end")
    path = Path(identity["hmm_run_dir"]) / DECODED
    if not path.is_file():
        return test_end
    rows = pl.scan_parquet(path).select("trade_date")
    if test_end:
        rows = rows.filter(pl.col("trade_date") <= pl.lit(test_end).str.to_date())
    last = rows.select(pl.col("trade_date").max()).collect().item()
    return None if last is None else last.isoformat()


def fingerprints(settings: Settings) -> dict[str, Any]:
    """The settings the locked numbers depend on: the research settings digest the model
    assets record and, per lake layer with a settings record, its fingerprint."""
    lake_records = {layer: (calc_settings.stored(settings, layer) or {}).get("fingerprint")
                    for layer in lake.LAYERS}  # fmt: skip
    return {"research_settings_digest": research_settings_digest(settings),
            "lake_settings": {k: v for k, v in lake_records.items() if v is not None}}


def _notes(row: Mapping[str, Any], summary: Mapping[str, Any],
           selection: select.Selection) -> list[str]:  # fmt: skip
    notes = list(selection.warnings)
    if row.get("in_sample"):
        notes.append("in_sample: the HMM directions were judged on the traded rows")
    if row.get("realism_profile_status") not in (None, "OK", "NOT_APPLIED"):
        notes.append(f"realism_profile_status {row['realism_profile_status']}")
    if row.get("overlay_coverage_status") not in (None, "PASS", "OK"):
        notes.append(f"overlay_coverage_status {row['overlay_coverage_status']}")
    over = discover.overfit_of(summary, "hmm")
    if over["fluke_risk"] not in (None, "LOW"):
        notes.append(f"fluke_risk {over['fluke_risk']} of the grid's hmm robustness winner "
                     f"(dsr={md_value(over['dsr'])}, pbo={md_value(over['pbo'])})")
    return notes


def candidate(settings: Settings, label: str, grid: discover.Grid,
              selection: select.Selection) -> dict[str, Any]:  # fmt: skip
    """The packet object of one selected combo (§9.3 keys and ours, before locking)."""
    row, summary = selection.row, grid.summary or {}
    options = strategy_options(settings, row, summary)
    identity = dict((_hmm_source(summary) or {}).get("identity") or {})
    overlay_on = options.overlay_mode != "none"
    zero = bool(row.get("is_zero_trade_combo"))
    policy_file = identity.get("policy_file")
    return {
        "label": label, "input_type": row["source_type"], "source_type": row["source_type"],
        "input_file": row.get("input_file"), "validation_run_dir": row.get("validation_run_dir"),
        "selected_from_grid_dir": str(grid.folder), "source_grid_dir": str(grid.folder),
        "grid_run_id": summary.get("grid_run_id"), "combo_id": row["combo_id"],
        "combo_index": row.get("combo_index"), "backtest_run_dir": row.get("backtest_run_dir"),
        "selection_trade_threshold_used": selection.threshold,
        "overlay": {
            "enabled": overlay_on, "mode": options.overlay_mode,
            "overlay_cluster_file": identity.get("cluster_run_dir") if overlay_on else None,
            "overlay_cluster_hardening_dir":
                str(Path(policy_file).parent) if overlay_on and policy_file else None,
            "match_rate": row.get("overlay_match_rate"),
            "veto_share": row.get("overlay_vetoed_signal_share"),
            "unknown_rate": row.get("overlay_unknown_rate")},
        "execution_realism": {
            "profile": options.exec_profile,
            "thresholds_used": thresholds_used(settings, options),
            "eligibility_rate": row.get("exec_eligibility_rate"),
            "suppression_breakdown": {
                "suppressed_signal_share": row.get("exec_suppressed_signal_share"),
                **{f"{n}_share": row.get(f"exec_suppressed_by_{n}_share")
                   for n in ("price", "liquidity", "vol", "warmup")}},
            "vol_metric_source": row.get("exec_vol_metric_source"),
            "vol_unit_detected": row.get("exec_vol_unit_detected")},
        "strategy_params": {k: row.get(k) for k in (
            "signal_mode", "exit_mode", "hold_bars", "fee_bps_per_side",
            "slippage_bps_per_side", "allow_overlap")},
        "strategy": options.payload(),
        "expected_behavior_snapshot": {
            "best_expectancy": row.get("expectancy"), "PF": row.get("profit_factor"),
            "PF_inf": bool(row.get("profit_factor_inf")),
            "robustness_v2": row.get("robustness_score_v2"), "ret_cv": row.get("ret_cv"),
            "trade_count": row.get("trade_count"), "zero_trade_share": 1.0 if zero else 0.0,
            "ret_p10": row.get("ret_p10"), "downside_std": row.get("downside_std"),
            "edge": {"ret_cv": row.get("ret_cv"), "ret_p10": row.get("ret_p10"),
                     "downside_std": row.get("downside_std"), "definition": EDGE_DEFINITION}},
        "wf_consistency": {},
        "notes": _notes(row, summary, selection),
        "split": {k: identity.get(k) for k in ("split_id", "hmm_run_dir", "cluster_run_dir",
                                               "test_end", "direction_file", "policy_file")},
        "fingerprints": fingerprints(settings),
        "lake_last_date": lake_last_date(identity),
    }  # fmt: skip


def table_of(candidates: Mapping[str, Mapping[str, Any]], rows: Mapping[str, Mapping[str, Any]]
             ) -> pl.DataFrame:  # fmt: skip
    """``production_candidates_table.csv`` (§9.3 columns + ours), sorted by label."""
    records = []
    for label in sorted(candidates):
        c, r = candidates[label], rows[label]
        records.append({
            "label": label, "selected_from_grid_dir": c["selected_from_grid_dir"],
            **{k: r.get(k) for k in ("combo_id", "signal_mode", "exit_mode", "hold_bars",
                                     "fee_bps_per_side", "slippage_bps_per_side")},
            "overlay_mode": c["overlay"]["mode"],
            "execution_profile": c["execution_realism"]["profile"],
            **{k: r.get(k) for k in ("trade_count", "expectancy", "profit_factor",
                                     "robustness_score_v2", "ret_cv")},
            "zero_trade_combo": bool(r.get("is_zero_trade_combo")),
            **{k: r.get(k) for k in ("overlay_match_rate", "overlay_vetoed_signal_share",
                                     "exec_eligibility_rate", "exec_suppressed_signal_share")},
            "selection_trade_threshold_used": c["selection_trade_threshold_used"],
            "profit_factor_inf": bool(r.get("profit_factor_inf")),
            "locked_dir": c.get("locked_dir"),
        })  # fmt: skip
    schema = {"label": pl.String, "combo_id": pl.String, "hold_bars": pl.Int64,
              "trade_count": pl.Int64, "profit_factor": pl.Float64}
    if not records:
        return pl.DataFrame(schema={c: schema.get(c, pl.String) for c in TABLE_COLUMNS})
    return pl.DataFrame(records, infer_schema_length=None).select(TABLE_COLUMNS)


def rerun_command(pack_dir: Path) -> str:
    """The command that re-runs the pack's locked candidates on the lake's newest bars."""
    return f"mf candidate-rerun-run --pcp-pack-dir {pack_dir}"


def report_md(summary: Mapping[str, Any], packet: Mapping[str, Any], table: pl.DataFrame,
              pack_dir: Path) -> str:  # fmt: skip
    cands = packet["candidates"]
    lines = ["# Production candidate pack", "",
             f"- run_id: {summary['run_id']}", f"- as_of: {packet['as_of']}",
             f"- candidates: {summary['candidate_count']} "
             f"({', '.join(summary['selected_labels']) or 'none'})",
             f"- min_trades requested: {packet['selection_policy']['min_trades_requested']}"]
    lines += [f"- warning: {w}" for w in summary["warnings"]]
    lines += ["", "## Locked configurations", "",
              md_table(table, ["label", "combo_id", "hold_bars", "fee_bps_per_side",
                               "overlay_mode", "execution_profile", "trade_count",
                               "expectancy", "profit_factor", "robustness_score_v2", "ret_cv",
                               "selection_trade_threshold_used"]) if table.height
              else "No candidate was selected."]  # fmt: skip
    lines += ["", "Each candidate's `locked/<LABEL>/` holds the fitted scaler, HMM parameters "
              "and directions (and the cluster model and policy when an overlay gates it): new "
              "bars are decoded with these, forward-filtered, never refitted."]
    wf = summary["wf_consistency"]
    lines += ["", "## Walk-forward support (CANDIDATE_EXEC)", ""]
    lines += [f"- {k}: {v}" for k, v in wf.items()] if wf else \
        ["No walk-forward comparison was available."]  # fmt: skip
    lines += ["", "## Recommendations", ""]
    lines += [f"- {label}: {RECOMMENDATIONS[label]}" for label in sorted(cands)]
    lines += ["", "## Re-run", "", "Re-run every locked candidate on the newest bars "
              "(`--as-of-tag` defaults to the lake's last trade date):", "", "```",
              rerun_command(pack_dir), "```", ""]
    for label in sorted(cands):
        c, s = cands[label], cands[label]["strategy"]
        lines += [f"- {label} (combo {c['combo_id']}, split {c['split']['split_id']}, locked "
                  f"rows up to {c['lake_last_date']}): signal_mode={s['signal_mode']} "
                  f"exit_mode={s['exit_mode']} hold_bars={s['hold_bars']} "
                  f"fee_bps_per_side={s['fee_bps_per_side']} "
                  f"slippage_bps_per_side={s['slippage_bps_per_side']} "
                  f"overlay_mode={s['overlay_mode']} exec_profile={s['exec_profile']}"]
        lines += [f"  - note: {n}" for n in c["notes"]]
    lines += ["", "## Inputs", ""]
    lines += [f"- {k}: {i['dir']} ({i['how']})" for k, i in summary["inputs"].items()]
    return "\n".join(lines) + "\n"


def file_hashes(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def build_pack(settings: Settings, dirs: Mapping[str, Path | None], *, min_trades: int = 25,
               include_exec2: bool = True, out_dir: Path | None = None) -> dict[str, Any]:
    """Select, lock and write the pack (see module doc); returns its summary.

    ``dirs`` maps :data:`INPUT_KEYS` to folders (None or absent: discovered); ``out_dir`` is
    the pack folder itself (default ``<artifacts_root>/production_candidates/<run_id>_…``).
    """
    if min_trades < 1:
        raise ValueError(f"--min-trades must be >= 1, got {min_trades}")
    resolved, inputs = resolve(settings, dirs, include_exec2)
    options = {"min_trades": min_trades, "include_exec2": include_exec2}
    run_id, folder = pack_folder(settings, resolved, options)
    folder = Path(out_dir) if out_dir is not None else folder
    if folder.is_dir() and any(folder.iterdir()) and not (folder / SUMMARY).is_file():
        raise FileExistsError(f"{folder} exists and is not a candidate pack: the pack replaces "
                              "its folder whole, so give a new or an earlier pack's folder")
    if resolved["alpha"] is None:
        raise FileNotFoundError("no alpha grid given or discovered: build an HMM grid on a "
                                "research split with overlay none and execution profile none")
    warnings: list[str] = []
    candidates: dict[str, dict[str, Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    grids: dict[str, Path] = {}
    for key, (label, mode, profile) in GRID_TARGETS.items():
        if key == "exec2" and not include_exec2:
            continue
        if resolved[key] is None:
            warnings.append(f"{label}: skipped, no {key} grid given or discovered")
            continue
        grid = _read_grid(resolved[key], key)
        recorded = (discover.overlay_mode_of(grid.summary or {}),
                    discover.execution_profile_of(grid.summary or {}, grid.folder))
        if recorded != (mode, profile):
            warnings.append(f"{label}: the {key} grid {grid.folder} records overlay "
                            f"{recorded[0]} / profile {recorded[1]}, not {mode} / {profile}")
        try:
            selection = select.select(grid.metrics, label, min_trades)
        except ValueError as error:
            raise ValueError(f"{label} from {grid.folder}: {error}") from error
        warnings += selection.warnings
        candidates[label] = candidate(settings, label, grid, selection)
        rows[label], grids[label] = selection.row, grid.folder
    wf = wf_consistency(resolved["realism"], resolved["wf_baseline"], resolved["wf_hybrid"])
    if select.EXEC in candidates:
        candidates[select.EXEC]["wf_consistency"] = wf
    as_of = now()
    packet = {
        "as_of": as_of, "pcp_version": PCP_VERSION, "run_id": run_id,
        "source_artifacts": {k: None if v is None or resolved[v] is None else str(resolved[v])
                             for k, v in SOURCE_ARTIFACT_KEYS.items()},
        "selection_policy": {"alpha_ranking": list(select.ALPHA_RANKING),
                             "exec_ranking": list(select.EXEC_RANKING),
                             "min_trades_requested": min_trades,
                             "relaxed_min_trades": select.RELAXED_MIN_TRADES},
        "candidates": candidates,
    }  # fmt: skip
    summary: dict[str, Any] = {
        "run_id": run_id, "as_of": as_of, "candidate_count": len(candidates),
        "warnings": warnings, "wf_consistency": wf, "selected_labels": sorted(candidates),
        "inputs": inputs, "options": options, "output_dir": str(folder),
        "outputs": {n.replace(".", "_"): str(folder / n) for n in FILES},
    }  # fmt: skip

    def write(temp: Path) -> None:
        for label, c in candidates.items():
            relative = f"{LOCKED_DIR}/{label}"
            c["locked"] = lock_candidate(settings, temp / relative, grids[label], "hmm",
                                         c["overlay"]["enabled"])
            c["locked_dir"] = relative
            c["locked_files"] = file_hashes(temp / relative)
        table = table_of(candidates, rows)
        lake.write_json(finite_json(packet), temp / PACKET)
        lake.write_csv(table, temp / TABLE)
        lake.write_text(report_md(summary, packet, table, folder), temp / REPORT)
        summary["finished_ts"] = now()
        lake.write_json(finite_json(summary), temp / SUMMARY)

    publish(folder, write)
    return finite_json(summary)


def latest_pack(artifacts_root: Path) -> Path:
    """The newest pack under ``<artifacts_root>/production_candidates`` by its recorded
    ``finished_ts`` (ties: the greater folder name); FileNotFoundError when there is none."""
    found = discover.find_newest(Path(artifacts_root) / PACKS_DIR, f"pcp-*_{PCP_VERSION}",
                                 SUMMARY)
    if found is None:
        raise FileNotFoundError(f"no production candidate pack under {artifacts_root}/"
                                f"{PACKS_DIR}: run mf production-candidates-build")
    return found


def read_packet(pack_dir: Path) -> dict[str, Any]:
    return json.loads((Path(pack_dir) / PACKET).read_text())
