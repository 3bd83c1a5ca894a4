"""DuckDB over the lake: one read-only view per thing the pipeline writes, for ad-hoc SQL.

:data:`VIEWS` is the one list of views: every layer of ``registry.LAYERS`` (the per-ticker
layers and the newest ML dataset) plus the Bronze bookkeeping tables and the research outputs.
A new output gets its view by a line here (or, for a new layer, by its ``registry`` record).
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from mf_pipeline.lib import lake, lake_table, registry
from mf_pipeline.lib.settings import Settings


@dataclass(frozen=True)
class View:
    """One view: a name, what it holds, and the file(s) it reads."""

    name: str
    description: str
    where: Callable[[Settings], Path | None]
    """The file, or a glob over files, that the view reads (None: nothing to read yet)."""
    reader: str = "parquet"
    """``parquet``, ``json`` (one row per JSON file, columns by name) or ``lake`` (a lake
    table's live rows, ``lib/lake_table.py``)."""
    hive: bool = False
    """Folders named ``key=value`` in the glob become columns (e.g. ``split``)."""

    def pattern(self, settings: Settings) -> str | None:
        """The view's file or glob, or None when no file matches yet."""
        where = self.where(settings)
        if where is None:
            return None
        if self.reader == "lake":
            if lake_table.is_v1(where):
                raise lake_table.LakeFormatError(str(where))
            has_rows = lake_table.is_table(where) and not lake.snapshot(where).is_empty
            return str(where) if has_rows else None
        if next(glob.iglob(str(where)), None) is None:
            return None
        return str(where)


def _per_ticker(spec: registry.LayerSpec) -> View:
    return View(spec.name, spec.description, spec.root, reader="lake")


def _ml_dataset(settings: Settings) -> Path | None:
    from mf_pipeline.lib.steps.dataset_step import latest_export

    return latest_export(settings)


def _bronze(name: str) -> Callable[[Settings], Path]:
    def where(settings: Settings) -> Path:
        from mf_pipeline.lib.steps.bronze_step import paths

        return getattr(paths(settings), name)

    return where


def _symbol_master(settings: Settings) -> Path:
    from mf_pipeline.lib.layers.bronze.qa import symbol_master_paths

    return symbol_master_paths(settings.bronze_root)[0]


def _research(table: str) -> Callable[[Settings], Path]:
    return lambda s: s.gold_root / "research" / table / "split=*" / f"{table}.parquet"


def _run_summaries(folder: str) -> Callable[[Settings], Path]:
    return lambda s: s.artifacts_root / folder / "*" / "run_summary.json"


VIEWS: tuple[View, ...] = (
    *(_per_ticker(spec) for spec in registry.LAYERS.values() if spec.per_ticker),
    View("ml_dataset", f"{registry.LAYERS['ml_dataset'].description} The newest export.",
         _ml_dataset),
    View("symbol_master", "One row per Bronze ticker: rows, dates, invalid/warned/rejected "
         "counts.", _symbol_master),
    View("manifest", "Every raw file of the last classification, with its status (NEW, "
         "CHANGED, APPENDED, UNCHANGED, DELETED).", _bronze("current_manifest")),
    View("ledger", "One row per raw file: how every line was accounted for.", _bronze("ledger")),
    View("rejects", "Every rejected line and invalid row, with its line number and reason.",
         _bronze("rejects")),
    View("cluster_labels", "Cluster label per ticker and date, per research split (column "
         "split).", _research("cluster_labels"), hive=True),
    View("hmm_states", "HMM state (Viterbi and causal filtered) per ticker and date, per "
         "research split (column split).", _research("hmm_states"), hive=True),
    View("cluster_runs", "One row per clustering run: its run_summary.json (column "
         "filename: the file).", _run_summaries("research_runs"), reader="json"),
    View("hmm_runs", "One row per HMM run: its run_summary.json (column filename: the file).",
         _run_summaries("hmm_runs"), reader="json"),
)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _files(paths: list[Path]) -> str:
    return "[" + ", ".join(_quoted(str(p)) for p in paths) + "]"


def _lake_select(root: Path) -> str:
    """The live rows of one committed snapshot: whole files in one scan, each partly
    superseded file filtered to its live tickers."""
    snapshot = lake.snapshot(root)
    per_file = (snapshot.index.group_by("file")
                .agg(pl.col("rows").sum().alias("live"), pl.col("file_rows").first(),
                     pl.col("ticker"))
                .sort("file"))
    whole = [root / f for f in per_file.filter(pl.col("live") == pl.col("file_rows"))["file"]]
    parts = [f"SELECT * FROM read_parquet({_files(whole)}, union_by_name = true)"] if whole \
        else []
    for name, tickers in per_file.filter(pl.col("live") != pl.col("file_rows")).select(
            "file", "ticker").iter_rows():
        listed = ", ".join(_quoted(t) for t in tickers)
        parts.append(f"SELECT * FROM read_parquet({_quoted(str(root / name))}) "
                     f"WHERE ticker IN ({listed})")
    return " UNION ALL BY NAME ".join(parts)


def _select(view: View, pattern: str) -> str:
    if view.reader == "lake":
        return _lake_select(Path(pattern))
    if view.reader == "json":
        return (f"SELECT * FROM read_json_auto({_quoted(pattern)}, union_by_name = true, "
                "filename = true)")
    return (f"SELECT * FROM read_parquet({_quoted(pattern)}, hive_partitioning = "
            f"{str(view.hive).lower()}, union_by_name = true)")


def connect(settings: Settings) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    """An in-memory connection with a view for every entry of :data:`VIEWS` that has files;
    returns it and, per view not created, why (no files yet, or the files do not read)."""
    connection = duckdb.connect()
    missing: dict[str, str] = {}
    for view in VIEWS:
        try:
            pattern = view.pattern(settings)
        except lake_table.LakeFormatError:
            missing[view.name] = "v1 lake layout: run `mf doctor --repair` once to convert it"
            continue
        if pattern is None:
            missing[view.name] = "no files yet"
            continue
        try:
            connection.execute(f"CREATE VIEW {view.name} AS {_select(view, pattern)}")
        except duckdb.Error as error:
            missing[view.name] = f"unreadable: {error}"
    return connection, missing
