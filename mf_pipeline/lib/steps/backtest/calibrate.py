"""``execution-realism-calibrate`` and ``execution-realism-calibration-report`` (backtest_ops.md
§7.7): the inputs of a backtest → a calibration folder
``<artifacts_root>/execution_realism_calibration/exec-calib-<12hex>/``.

The rows go through the backtest's own :func:`run.prepare` (adapter, state mapping, overlay,
execution columns), so calibration judges exactly the rows a backtest would trade. The rolling
dollar volume, the history count and the volatility unit are computed on the FULL history;
the date filter and the sample are applied afterwards (fault 28: the old tool sampled first,
which shortened every rolling window and history count). The adapter, mapping and overlay
summaries therefore describe the full history; ``rows_post_preparation`` counts the rows
calibrated. Calibration fixes what the spec fixes: cluster classes ``allow_only`` without
WATCH, overlay coverage ``warn_only``. Without a state map or a scorecard, HMM directions are
inferred from the (date-filtered) rows' own ``fwd_ret_10`` (§3; look-ahead, flagged
``in_sample``).

The folder name is a digest of the inputs' identity and every option, so a rerun replaces the
same folder; it is built under a hidden name and swapped in whole. "Latest" is the newest
summary by its recorded ``finished_ts``, never folder mtime (faults 16, 35).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.backtest import adapter
from mf_pipeline.lib.backtest import calibration as cal
from mf_pipeline.lib.reports import pages
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.options import BacktestOptions
from mf_pipeline.lib.steps.backtest.run import (
    BacktestInputs,
    Prepared,
    finite_json,
    prepare,
    swap_in,
)
from mf_pipeline.lib.steps.research.artifacts import now
from mf_pipeline.lib.steps.validation.options import digest

CALIB_DIR = "execution_realism_calibration"
PREFIX = "exec-calib-"
SUMMARY = "execution_calibration_summary.json"
RECOMMENDATIONS = "execution_calibration_recommendations.json"
GRID = "execution_calibration_grid.csv"
REPORT = "execution_calibration_report.md"
HTML = "execution_calibration_report.html"
INFERRED_SOURCE = "hmm_inferred_from_source_fwd_ret_10"
SAMPLE_SEED = 42


def _date(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _window(frame: pl.DataFrame, start: dt.date | None, end: dt.date | None,
            sample_frac: float | None) -> pl.DataFrame:  # fmt: skip
    """Rows in [start, end], then a seeded sample without replacement (row order kept)."""
    if start is not None:
        frame = frame.filter(pl.col("trade_date") >= start)
    if end is not None:
        frame = frame.filter(pl.col("trade_date") <= end)
    if sample_frac is None or sample_frac >= 1.0:
        return frame
    n = int(frame.height * sample_frac)
    picked = np.random.default_rng(SAMPLE_SEED).choice(frame.height, size=n, replace=False)
    return frame[np.sort(picked)]


def _inferred_inputs(inputs: BacktestInputs, start: dt.date | None,
                     end: dt.date | None) -> BacktestInputs:  # fmt: skip
    """HMM inputs without a direction source get a state map inferred from fwd_ret_10."""
    rows, _ = adapter.normalize(inputs.rows, "hmm", inputs.input_file, inputs.state_col,
                                row_ids=False)
    directions = cal.inferred_hmm_directions(_window(rows, start, end, None))
    return replace(inputs, state_map={"mapping": {str(k): v for k, v in directions.items()}},
                   in_sample=True)


def calibration_id(settings: Settings, inputs: BacktestInputs, options: BacktestOptions,
                   window: dict[str, Any]) -> str:  # fmt: skip
    """``exec-calib-<12hex>`` of the inputs' identity, options, window and settings."""
    return PREFIX + digest({
        "identity": inputs.identity, "input_type": inputs.input_type,
        "state_col": inputs.state_col, "options": options.payload(), "window": window,
        "calibration": settings.backtest_execution_calibration.model_dump(),
        "execution": settings.backtest_execution_realism.model_dump(),
    })  # fmt: skip


def calibration_rows(settings: Settings, inputs: BacktestInputs, options: BacktestOptions,
                     start: dt.date | None, end: dt.date | None,
                     sample_frac: float | None) -> tuple[Prepared, pl.DataFrame]:  # fmt: skip
    """The prepared full history and the calibrated rows: the execution columns are computed
    on every row first, then the window and the sample are taken (fault 28)."""
    prep = prepare(settings, inputs, options)
    return prep, _window(prep.exe.frame.select(cal.COLUMNS), start, end, sample_frac)


def calibrate(settings: Settings, inputs: BacktestInputs, options: BacktestOptions, *,
              sample_frac: float | None = None, start_date: dt.date | str | None = None,
              end_date: dt.date | str | None = None, by_year: bool | None = None,
              out_dir: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Run one calibration and write its folder; return the summary (see module doc).

    ``by_year`` None → ``by_year_default``; False writes no by-year distribution (fault 28).
    """
    started, t0 = now(), time.perf_counter()
    cfg = settings.backtest_execution_calibration
    if sample_frac is not None and not 0 < sample_frac <= 1:
        raise ValueError(f"--sample-frac must be in (0, 1], got {sample_frac}")
    start, end = _date(start_date), _date(end_date)
    if start is not None and end is not None and start > end:
        raise ValueError(f"--start-date {start} is after --end-date {end}")
    by_year = cfg.by_year_default if by_year is None else bool(by_year)
    options = replace(options, policy_filter_mode="allow_only", include_watch=False,
                      overlay_coverage_mode="warn_only", export_joined_rows=False)
    mapping_source = None
    if inputs.input_type == "hmm" and inputs.state_map is None and inputs.scorecard is None:
        inputs, mapping_source = _inferred_inputs(inputs, start, end), INFERRED_SOURCE
    window = {"sample_frac": sample_frac, "start_date": start and start.isoformat(),
              "end_date": end and end.isoformat(), "by_year": by_year}
    run_id = calibration_id(settings, inputs, options, window)
    folder = Path(out_dir) if out_dir is not None else settings.artifacts_root / CALIB_DIR / run_id

    prep, rows = calibration_rows(settings, inputs, options, start, end, sample_frac)
    unit_mode = prep.params.vol_input_unit_mode
    mapping_summary = dict(prep.mapping_summary)
    if mapping_source is not None:
        mapping_summary["mapping_source"] = mapping_source
    axes = cal.SweepAxes.of(cfg.sweep.model_dump())
    t_sweep = time.perf_counter()
    grid = cal.grid_table(cal.sweep(cal.RowQuantities.of(rows), axes, unit_mode),
                          prep.exe.summary)
    sweep_sec = time.perf_counter() - t_sweep
    recs = cal.recommendations(grid, cal.Targets.of(cfg))
    exec_summary = cal.filter_summary(rows, prep.exe.summary)
    over = prep.over.result
    summary: dict[str, Any] = {
        "run_id": run_id, "source_file": inputs.input_file, "source_type": inputs.input_type,
        "state_col": inputs.state_col, "overlay_mode": options.overlay_mode,
        "signal_mode": options.signal_mode, "execution_profile": options.exec_profile,
        **window, "started_ts": started, "rows_post_preparation": rows.height,
        "sampling_after_rolling": True, "in_sample": inputs.in_sample,
        "identity": inputs.identity, "adapter_summary": prep.adapter_summary,
        "mapping_summary": mapping_summary,
        "overlay_summary": {"overlay_enabled": over is not None}
        | ({"join_summary": over.join_summary, "verdict": over.verdict} if over else {}),
        "execution_summary": exec_summary,
        "eligibility_rate": exec_summary["eligibility_rate"],
        "candidate_eligibility_rate": exec_summary["candidate_eligibility_rate"],
        "eligibility_basis": "target bands use the row-level eligibility_rate; "
                             "candidate_eligibility_rate = kept / candidate signals",
        "waterfall": cal.waterfall(rows), "sweep_summary": cal.grid_summary(grid),
        "units": cal.units(prep.exe.summary, unit_mode), "sweep_seconds": round(sweep_sec, 3),
    }  # fmt: skip
    _write(folder, summary, rows, grid, recs, by_year, t0)
    return summary


def _write(folder: Path, summary: dict[str, Any], rows: pl.DataFrame, grid: pl.DataFrame,
           recs: dict[str, Any], by_year: bool, t0: float) -> None:  # fmt: skip
    """Every §7.7 file under a hidden temporary folder, summary last, then swapped in."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = folder.parent / f".{folder.name}.tmp-{lake.writer_tag()}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    tables = {"execution_calibration_distribution.csv": cal.distributions(rows),
              "execution_calibration_reason_overlap.csv": cal.reason_overlap(rows),
              "execution_calibration_first_fail.csv": cal.first_fail(rows), GRID: grid}
    if by_year:
        tables["execution_calibration_distribution_by_year.csv"] = cal.distributions(rows, True)
    jsons = {"execution_calibration_waterfall.json": summary["waterfall"],
             "execution_calibration_units.json": summary["units"],
             "execution_calibration_grid_summary.json": summary["sweep_summary"],
             RECOMMENDATIONS: recs}
    outputs = {}
    for name, table in tables.items():
        lake.write_csv(table, temp / name)
        outputs[name.rsplit(".", 1)[0]] = str(folder / name)
    for name, payload in jsons.items():
        lake.write_json(finite_json(payload), temp / name)
        outputs[name.rsplit(".", 1)[0]] = str(folder / name)
    outputs |= {"execution_calibration_report": str(folder / REPORT),
                "execution_calibration_summary": str(folder / SUMMARY)}
    outputs["execution_calibration_report_html"] = str(folder / HTML)
    summary |= {"finished_ts": now(), "duration_sec": round(time.perf_counter() - t0, 3),
                "output_dir": str(folder), "outputs": outputs}
    lake.write_text(cal.report_markdown(summary, recs, grid), temp / REPORT)
    lake.write_json(finite_json(summary), temp / SUMMARY)
    pages.calibration_html(temp)
    swap_in(temp, folder)


def calibration_report(folder: Path) -> Path:
    """Re-render ``execution_calibration_report.md`` from the folder's summary,
    recommendations and grid csv (``execution-realism-calibration-report``)."""
    folder = Path(folder)
    missing = [n for n in (SUMMARY, RECOMMENDATIONS, GRID) if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a finished calibration (missing {missing})")
    summary = json.loads((folder / SUMMARY).read_text())
    recs = json.loads((folder / RECOMMENDATIONS).read_text())
    grid = pl.read_csv(folder / GRID, infer_schema_length=None)
    return lake.write_text(cal.report_markdown(summary, recs, grid), folder / REPORT)


def latest_calibration(root: Path) -> Path:
    """The calibration folder under ``<root>/execution_realism_calibration/`` (``root`` = the
    artifacts root) whose summary has the newest ``finished_ts``; ties by folder name."""
    base = Path(root) / CALIB_DIR
    found: list[tuple[str, str, Path]] = []
    for folder in base.glob(f"{PREFIX}*") if base.is_dir() else ():
        path = folder / SUMMARY
        if path.is_file():
            finished = json.loads(path.read_text()).get("finished_ts")
            if finished:
                found.append((str(finished), folder.name, folder))
    if not found:
        raise FileNotFoundError(f"no finished calibration under {base} (no {PREFIX}* folder "
                                f"with {SUMMARY}): run mf execution-realism-calibrate first")
    return max(found)[2]
