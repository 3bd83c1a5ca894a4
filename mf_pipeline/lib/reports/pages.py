"""One HTML page per report, built from the report's folder (so any report can be re-rendered).

Each function reads the files its producer wrote (backtest_ops.md §5.5, §5.7, §5.8, §7.7,
§7.8, §8), draws the pictures of :mod:`figures` and writes
``<report>.html`` next to ``<report>.md``. A missing optional file makes its section say
"not available"; an empty table gives a sentence instead of a chart. The figure builders (and
plotly) are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.reports.html import NOT_AVAILABLE, Section, markdown_table, write_page

OVERFIT_COLUMNS = ("fluke_risk", "dsr", "pbo", "n_trials", "periods", "best_combo_id",
                   "best_sharpe", "sr0", "note")
"""The grid summary's overfitting fields shown on the page (all of them are in the Markdown)."""


def _read_table(folder: Path, stem: str) -> pl.DataFrame | None:
    """``<stem>.parquet`` if present, else ``<stem>.csv``, else None."""
    if (folder / f"{stem}.parquet").is_file():
        return pl.read_parquet(folder / f"{stem}.parquet")
    if (folder / f"{stem}.csv").is_file():
        return pl.read_csv(folder / f"{stem}.csv", infer_schema_length=None)
    return None


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _read_markdown(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _missing(name: str) -> str:
    return f"`{name}` {NOT_AVAILABLE}."


def _write(folder: Path, report: str, title: str, sections: list[Section],
           summary: dict[str, Any] | None, id_key: str) -> Path:
    """Write ``<report>.html`` beside ``<report>.md`` in ``folder``. The page is named by the
    run id recorded in ``summary`` (the folder may still be a hidden temp folder when the
    producer renders it) and shows the summary's output_dir when it has one."""
    summary = summary or {}
    name = summary.get(id_key) or folder.name
    return write_page(folder / f"{report}.html", f"{title} — {name}", sections,
                      _read_markdown(folder / f"{report}.md"),
                      subtitle=str(summary.get("output_dir") or ""))


# --- grid ----------------------------------------------------------------------------------


def _overfitting_section(summary: dict[str, Any] | None) -> Section:
    title = "Is the winner a fluke? (DSR / PBO)"
    overfitting = (summary or {}).get("overfitting")
    if not overfitting:
        return Section(title, _missing("grid_summary.json → overfitting"))
    rows = [{"source_type": source, **{k: (block or {}).get(k) for k in OVERFIT_COLUMNS}}
            for source, block in sorted(overfitting.items())]
    verdicts = "\n".join(f"- **{r['source_type']}**: fluke risk **{r['fluke_risk']}** (DSR "
                          f"{_number(r['dsr'])}, PBO {_number(r['pbo'])})" for r in rows)
    text = (
        verdicts + "\n\n" +
        "DSR = probability that the best configuration's per-period Sharpe beats the best of "
        "as many skill-less trials (≥ 0.95: significant). PBO = share of CSCV splits in which "
        "the in-sample winner ranks below the median out of sample (≥ 0.5: the choice is "
        "likely overfit). fluke_risk: HIGH if PBO ≥ 0.5 or DSR < 0.5, LOW if DSR ≥ 0.95 and "
        "PBO < 0.2.\n\n" + markdown_table(pl.DataFrame(rows, infer_schema_length=None)))
    return Section(title, text)


def grid_html(folder: Path, heatmap_dims: tuple[str, str] | None = None) -> Path:
    """``grid_report.html`` of a grid folder: DSR/PBO numbers, equity and drawdown of the
    top-5 combos by robustness_score_v2 (+ the worst), the robustness heatmap over
    ``heatmap_dims`` (x, y; default: the first two varying dimensions) per source, and the
    cost-fragility lines. Raises ValueError if a chosen dimension is not in the table."""
    from mf_pipeline.lib.reports import figures

    folder = Path(folder)
    metrics = _read_table(folder, "grid_metrics_table")
    summary = _read_json(folder / "grid_summary.json")
    sections = [_overfitting_section(summary)]
    curves_title = "Equity and drawdown (top 5 by robustness v2, worst dashed)"
    heat_title, cost_title = "Robustness heatmap", "Cost fragility"
    if metrics is None:
        note = _missing("grid_metrics_table")
        sections += [Section(t, note) for t in (curves_title, heat_title, cost_title)]
    elif metrics.height == 0:
        note = "No successful combo in this grid: nothing to draw."
        sections += [Section(t, note) for t in (curves_title, heat_title, cost_title)]
    else:
        returns_path = folder / "grid_period_returns.parquet"
        if returns_path.is_file():
            chosen = figures.curve_combos(metrics)
            keys = ["source_type", "combo_id"]
            curves = figures.equity_curves(pl.scan_parquet(returns_path).join(
                chosen.lazy().select(keys), on=keys, how="semi").collect())
            sections.append(Section(curves_title, figures=[
                figures.equity_drawdown_figure(curves, chosen)]))
        else:
            sections.append(Section(curves_title, _missing("grid_period_returns.parquet")))
        heatmaps = figures.robustness_heatmaps(metrics, heatmap_dims)
        sections.append(Section(heat_title, "" if heatmaps else
                                "Fewer than two grid dimensions vary: no heatmap.", heatmaps))
        sections.append(Section(cost_title, "Mean expectancy over the combos at each total "
                                "cost, one line per hold_bars.",
                                figures.cost_fragility_figures(metrics)))
    return _write(folder, "grid_report", "Sensitivity grid", sections, summary, "grid_run_id")


# --- walk-forward grid ---------------------------------------------------------------------


def wf_grid_html(folder: Path) -> Path:
    """``wf_grid_report.html``: winner source per split and metric, and per-split robustness,
    DSR and PBO lines."""
    from mf_pipeline.lib.reports import figures

    folder = Path(folder)
    winners = _read_table(folder, "wf_grid_winner_stability")
    by_split = _read_table(folder, "wf_grid_by_split")
    summary = _read_json(folder / "wf_grid_summary.json") or {}
    if winners is None:
        win = Section("Winners per split", _missing("wf_grid_winner_stability.csv"))
    elif winners.height == 0:
        win = Section("Winners per split", "No successful split: no winners.")
    else:
        win = Section("Winners per split", "Source with the best value of each metric in "
                      "each split (ret_cv: lowest; max_drawdown: closest to 0).",
                      [figures.winner_map(winners)])
    medians = (f"Median DSR over splits: {_number(summary.get('dsr_median'))}; median PBO: "
               f"{_number(summary.get('pbo_median'))}.")
    if by_split is None:
        lines = Section("Robustness and overfitting per split", _missing("wf_grid_by_split"))
    elif by_split.height == 0:
        lines = Section("Robustness and overfitting per split", "No split in the table.")
    else:
        lines = Section("Robustness and overfitting per split", medians,
                        [figures.split_lines(by_split, winners)])
    return _write(folder, "wf_grid_report", "Walk-forward grid", [win, lines], summary,
                  "wf_grid_id")


# --- compare -------------------------------------------------------------------------------


def grid_compare_html(folder: Path) -> Path:
    """``grid_compare_report.html``: best expectancy, profit factor, robustness v2 and DSR of
    each compared grid."""
    from mf_pipeline.lib.reports import figures

    folder = Path(folder)
    table = _read_table(folder, "grid_compare_table")
    title = "Best configuration per grid"
    if table is None:
        section = Section(title, _missing("grid_compare_table.csv"))
    elif table.height == 0:
        section = Section(title, "No grid in the table.")
    else:
        section = Section(title, "Bars in the table's order (best robustness v2 first).",
                          [figures.compare_bars(table)])
    return _write(folder, "grid_compare_report", "Grid compare", [section],
                  _read_json(folder / "grid_compare_summary.json"), "compare_id")


# --- calibration ---------------------------------------------------------------------------


def calibration_html(folder: Path) -> Path:
    """``execution_calibration_report.html``: the current profile's signal waterfall and the
    eligibility-rate heatmap of the threshold sweep."""
    from mf_pipeline.lib.reports import figures

    folder = Path(folder)
    waterfall = _read_json(folder / "execution_calibration_waterfall.json")
    grid = _read_table(folder, "execution_calibration_grid")
    sections = [
        Section("Current profile: signal waterfall", _missing(
            "execution_calibration_waterfall.json")) if waterfall is None else
        Section("Current profile: signal waterfall", figures=[figures.waterfall_bars(waterfall)])
    ]
    sweep = "Threshold sweep: eligibility rate"
    heatmap = figures.eligibility_heatmap(grid) if grid is not None else None
    if grid is None:
        sections.append(Section(sweep, _missing("execution_calibration_grid.csv")))
    elif heatmap is None:
        sections.append(Section(sweep, "The sweep has no rows."))
    else:
        sections.append(Section(sweep, "Row-level eligibility rate per min_price × "
                                "min_dollar_vol20.", [heatmap]))
    return _write(folder, "execution_calibration_report", "Execution realism calibration",
                  sections, _read_json(folder / "execution_calibration_summary.json"), "run_id")


# --- decision reports ----------------------------------------------------------------------


def _score_page(folder: Path, report: str, title: str, stem: str, score_col: str,
                verdict_col: str) -> Path:
    """A decision report's page: ``<stem>_table.csv`` drawn as score bars; the run id from
    ``<stem>_summary.json``."""
    from mf_pipeline.lib.reports import figures

    folder = Path(folder)
    table = _read_table(folder, f"{stem}_table")
    heading = f"{score_col} per run"
    if table is None:
        section = Section(heading, _missing(f"{stem}_table.csv"))
    elif table.height == 0:
        section = Section(heading, "No run in the table.")
    else:
        section = Section(heading, f"Colour = {verdict_col}.", [figures.score_bars(
            table, score_col, verdict_col, title=f"{score_col} (0–100)")])
    return _write(folder, report, title, [section],
                  _read_json(folder / f"{stem}_summary.json"), "run_id")


def realism_html(folder: Path) -> Path:
    """``execution_realism_report.html``: candidate_score per run label."""
    return _score_page(folder, "execution_realism_report", "Execution realism",
                       "execution_realism", "candidate_score", "realism_aware_verdict")


def hybrid_eval_html(folder: Path) -> Path:
    """``hybrid_eval_report.html``: single_candidate_score per run label."""
    return _score_page(folder, "hybrid_eval_report", "Hybrid overlay evaluation",
                       "hybrid_eval", "single_candidate_score", "recommendation_label")
