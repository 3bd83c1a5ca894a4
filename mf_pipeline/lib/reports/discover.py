"""Find and read the grid folders a decision report compares (§7.8, §8; faults 16 and 35).

A report input is either a folder the researcher names or the newest folder whose RECORDED
settings match (scope, overlay mode, execution profile). "Newest" is the summary's
``finished_ts`` (ISO-8601 UTC), never the folder's mtime, which a copy or a touch changes; ties
go to the greater folder name. Folders still being written (hidden ``.…tmp`` names) and folders
without a summary are never candidates. No run folder is hard-coded anywhere.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

GRIDS_DIR = "backtest_sensitivity"
WF_GRIDS_DIR = "backtest_sensitivity_walkforward"
GRID_SUMMARY = "grid_summary.json"
WF_SUMMARY = "wf_grid_summary.json"
COMPARE_SUMMARY = "grid_compare_summary.json"


@dataclass
class Loaded:
    """Which input files a report read and which it looked for in vain (its ``sanity``)."""

    files_loaded: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)

    def check_inputs(self, resolved: Mapping[str, Path | None], required: Iterable[str]) -> None:
        """Record each required input without a folder (none given or discovered) or whose
        folder does not exist."""
        for key in required:
            folder = resolved.get(key)
            if folder is None:
                self.missing_files.append(f"{key}: no folder given or discovered")
            elif not folder.is_dir():
                self.missing_files.append(str(folder))

    def json(self, path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            self.missing_files.append(str(path))
            return None
        self.files_loaded.append(str(path))
        return json.loads(path.read_text())

    def table(self, folder: Path, stem: str) -> pl.DataFrame | None:
        """``<stem>.parquet``, else ``<stem>.csv`` (every column inferred over all rows)."""
        parquet, csv = folder / f"{stem}.parquet", folder / f"{stem}.csv"
        if parquet.is_file():
            self.files_loaded.append(str(parquet))
            return pl.read_parquet(parquet)
        if csv.is_file():
            self.files_loaded.append(str(csv))
            return pl.read_csv(csv, infer_schema_length=None)
        self.missing_files.append(str(parquet))
        return None


@dataclass(frozen=True)
class Grid:
    """One grid folder as a report sees it: summary and SUCCESS metric rows (None if absent)."""

    folder: Path
    summary: dict[str, Any] | None
    metrics: pl.DataFrame | None


def read_grid(folder: Path, loaded: Loaded) -> Grid:
    summary = loaded.json(folder / GRID_SUMMARY)
    metrics = loaded.table(folder, "grid_metrics_table")
    if metrics is not None and "status" in metrics.columns:
        metrics = metrics.filter(pl.col("status") == "SUCCESS")
    return Grid(folder, summary, metrics)


def grid_share(grid: Grid) -> float | None:
    """The grid's zero-trade combo share: its summary's, else the mean flag of its rows."""
    share = (grid.summary or {}).get("zero_trade_combo_share")
    if share is None and grid.metrics is not None and not grid.metrics.is_empty():
        share = grid.metrics["is_zero_trade_combo"].cast(pl.Float64).fill_null(1.0).mean()
    return share


def grid_profile(folder: Path | None) -> str | None:
    """The recorded execution profile of a grid folder (None: no folder or no summary)."""
    path = None if folder is None else folder / GRID_SUMMARY
    if path is None or not path.is_file():
        return None
    return execution_profile_of(json.loads(path.read_text()), folder)


def overlay_mode_of(summary: Mapping[str, Any]) -> str:
    """The first source's overlay mode, else the summary's, else ``none`` (§7.8)."""
    sources = summary.get("sources") or []
    mode = (sources[0] or {}).get("overlay_mode") if sources else None
    return str(mode or summary.get("overlay_mode") or "none")


def execution_profile_of(summary: Mapping[str, Any], folder: Path | None = None) -> str:
    """The summary's execution profile, else the most frequent non-null one of the grid's
    metrics table (ties: the lexically smallest), else ``none`` (§7.8)."""
    if summary.get("execution_profile"):
        return str(summary["execution_profile"])
    values: list[str] = []
    if folder is not None:
        for path, read in ((folder / "grid_metrics_table.parquet", pl.read_parquet),
                           (folder / "grid_metrics_table.csv", pl.read_csv)):  # fmt: skip
            if path.is_file():
                frame = read(path)
                if "execution_profile" in frame.columns:
                    values = [v for v in frame["execution_profile"].to_list() if v]
                break
    if not values:
        return "none"
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], v))


def newest(candidates: list[tuple[Path, Mapping[str, Any]]]) -> Path | None:
    """The folder with the latest recorded ``finished_ts`` (a missing one is the oldest);
    ties by folder name, greatest wins. None for no candidate."""
    if not candidates:
        return None
    return max(candidates, key=lambda c: (str(c[1].get("finished_ts") or ""), c[0].name))[0]


def _summaries(root: Path, pattern: str, name: str) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for folder in sorted(root.glob(pattern)) if root.is_dir() else []:
        path = folder / name
        if folder.is_dir() and path.is_file():
            found.append((folder, json.loads(path.read_text())))
    return found


def find_grid(artifacts_root: Path, *, scope_prefix: str, overlay_mode: str,
              execution_profile: str | None) -> Path | None:  # fmt: skip
    """Newest grid under ``backtest_sensitivity/grid-*`` whose recorded scope starts with
    ``scope_prefix`` (e.g. ``single-hmm``), overlay mode equals ``overlay_mode`` and execution
    profile equals ``execution_profile`` (None: any profile)."""
    matches = [
        (folder, s) for folder, s in _summaries(artifacts_root / GRIDS_DIR, "grid-*", GRID_SUMMARY)
        if str(s.get("scope") or "").startswith(scope_prefix)
        and overlay_mode_of(s) == overlay_mode
        and (execution_profile is None or execution_profile_of(s, folder) == execution_profile)
    ]  # fmt: skip
    return newest(matches)


def find_grid_with_source(artifacts_root: Path, *, source: str, overlay_mode: str,
                          execution_profile: str | None,
                          where: Callable[[Mapping[str, Any]], bool] | None = None,
                          ) -> Path | None:  # fmt: skip
    """Newest grid under ``backtest_sensitivity/grid-*`` that has a ``source`` source (a
    ``single-<source>`` grid or a multi-source grid holding it) with this overlay mode and
    execution profile (None: any), and whose summary passes ``where`` (None: any)."""
    matches = [
        (folder, s) for folder, s in _summaries(artifacts_root / GRIDS_DIR, "grid-*", GRID_SUMMARY)
        if source in [(x or {}).get("source_type") for x in s.get("sources") or []]
        and overlay_mode_of(s) == overlay_mode
        and (execution_profile is None or execution_profile_of(s, folder) == execution_profile)
        and (where is None or where(s))
    ]  # fmt: skip
    return newest(matches)


def find_newest(root: Path, pattern: str, summary_name: str) -> Path | None:
    """Newest folder ``root/<pattern>`` by its ``summary_name`` JSON's ``finished_ts``."""
    return newest(_summaries(root, pattern, summary_name))


def _wf_sources(summary: Mapping[str, Any]) -> list[str]:
    sources = summary.get("sources") or []
    if isinstance(sources, str):
        sources = sources.split(",")
    return [s.get("source_type") if isinstance(s, dict) else str(s).strip() for s in sources]


def find_wf_grid(artifacts_root: Path, *, source: str, overlay_mode: str,
                 execution_profile: str | None) -> Path | None:  # fmt: skip
    """Newest walk-forward grid under ``backtest_sensitivity_walkforward/wfgrid-*`` whose
    ``wf_grid_summary.json`` lists ``source`` among its sources and records this overlay mode
    (missing: ``none``) and execution profile (missing: ``none``; None: any profile)."""
    matches = [
        (folder, s) for folder, s in _summaries(artifacts_root / WF_GRIDS_DIR, "wfgrid-*",
                                                WF_SUMMARY)
        if source in _wf_sources(s)
        and str(s.get("overlay_mode") or "none") == overlay_mode
        and (execution_profile is None
             or str(s.get("execution_profile") or "none") == execution_profile)
    ]  # fmt: skip
    return newest(matches)


def resolve_inputs(dirs: Mapping[str, Path | str | None], known: tuple[str, ...],
                   finders: Mapping[str, Callable[[Mapping[str, Path | None]], Path | None]],
                   ) -> tuple[dict[str, Path | None], dict[str, dict[str, str | None]]]:
    """Every label of ``known``: the given folder, else (labels of ``finders``, in their order,
    each seeing the folders resolved so far) the discovered one, else None.

    Returns the folders and, for the summary, label -> {dir, how} with how = ``given``,
    ``discovered`` or ``missing``. A label outside ``known`` is an error (a typo would
    otherwise silently fall back to discovery).
    """
    unknown = sorted(set(dirs) - set(known))
    if unknown:
        raise ValueError(f"unknown report input(s) {unknown}; known: {list(known)}")
    resolved: dict[str, Path | None] = {}
    how: dict[str, str] = {}
    for label in known:
        given = dirs.get(label)
        if given is not None:
            resolved[label], how[label] = Path(given).resolve(), "given"
        else:
            resolved[label], how[label] = None, "missing"
    for label, find in finders.items():
        if resolved[label] is None:
            found = find(resolved)
            if found is not None:
                resolved[label], how[label] = found.resolve(), "discovered"
    inputs = {label: {"dir": None if resolved[label] is None else str(resolved[label]),
                      "how": how[label]} for label in known}  # fmt: skip
    return resolved, inputs


def overfit_of(summary: Mapping[str, Any] | None, source_type: str | None) -> dict[str, Any]:
    """``dsr``, ``pbo`` and ``fluke_risk`` of one source from a grid summary's ``overfitting``
    block (all None when the grid or the source has none)."""
    block = ((summary or {}).get("overfitting") or {}).get(source_type or "") or {}
    return {"dsr": block.get("dsr"), "pbo": block.get("pbo"),
            "fluke_risk": block.get("fluke_risk")}


@dataclass(frozen=True)
class WfGrid:
    """A walk-forward grid folder: summary, overlay source summary and its SUCCESS splits
    (train_end, that split's by-split row, its grid)."""

    folder: Path
    summary: dict[str, Any] | None
    overlay_sources: pl.DataFrame | None
    splits: list[tuple[str, dict[str, Any], Grid]]


def read_wf_grid(folder: Path, loaded: Loaded) -> WfGrid:
    """Read a walk-forward grid; a split's grid is its recorded ``grid_run_dir`` when that
    exists, else ``<folder>/splits/<train_end>`` (a moved WF folder stays readable)."""
    summary = loaded.json(folder / WF_SUMMARY)
    by_split = loaded.table(folder, "wf_grid_by_split")
    overlay_csv = folder / "wf_overlay_source_summary.csv"
    overlay = None
    if overlay_csv.is_file():
        loaded.files_loaded.append(str(overlay_csv))
        overlay = pl.read_csv(overlay_csv, infer_schema_length=None)
    splits = []
    if by_split is not None:
        for row in by_split.filter(pl.col("status") == "SUCCESS").iter_rows(named=True):
            train_end = str(row["train_end"])
            recorded = Path(row["grid_run_dir"]) if row.get("grid_run_dir") else None
            grid_dir = recorded if recorded and recorded.is_dir() else \
                folder / "splits" / train_end  # fmt: skip
            splits.append((train_end, row, read_grid(grid_dir, loaded)))
    return WfGrid(folder, summary, overlay, splits)
