"""Decision reports over finished grids (backtest_ops.md §7.8 execution realism, §8 hybrid
overlay evaluation): they read grid and walk-forward grid folders and write one report folder.

A report folder is named by a digest of its resolved inputs, so the same inputs land in the
same folder; it is written under a hidden temp name and renamed into place when complete.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.steps.backtest.run import swap_in
from mf_pipeline.lib.steps.validation.options import digest

_INF = float("inf")


def report_folder(out_root: Path, prefix: str, suffix: str,
                  inputs: Mapping[str, Path | None]) -> tuple[str, Path]:  # fmt: skip
    """``(run_id, folder)``: run_id = ``<prefix>-<12 hex of the resolved input folders>``,
    folder = ``<out_root>/<run_id>_<suffix>``."""
    run_id = f"{prefix}-" + digest({k: None if v is None else str(v) for k, v in inputs.items()})
    return run_id, out_root / f"{run_id}_{suffix}"


def publish(folder: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temp)`` on a fresh hidden temp folder next to ``folder``, then swap it in;
    a failure leaves any previous ``folder`` untouched and removes the temp folder."""
    temp = folder.parent / f".{folder.name}.tmp-{lake.writer_tag()}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    try:
        write(temp)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    swap_in(temp, folder)
    return folder


def non_finite_cells(table: pl.DataFrame) -> int:
    """NaN/±inf cells of the numeric columns, a flagged +inf best_pf excepted."""
    count = 0
    for name, dtype in table.schema.items():
        if dtype.is_float():
            bad = table[name].is_nan() | table[name].is_infinite()
            if name == "best_pf" and "best_pf_inf" in table.columns:
                bad = bad & ~(table[name] == _INF)
            count += int(bad.fill_null(False).sum())
    return count


def md_value(x: Any) -> str:
    if isinstance(x, float):
        return "inf" if x == _INF else f"{x:.4f}"
    return "" if x is None else str(x)


def md_table(frame: pl.DataFrame, columns: list[str]) -> str:
    """A Markdown table of ``columns`` (floats to 4 decimals, null blank, +inf as inf)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(md_value(r[c]) for c in columns) + " |"
              for r in frame.select(columns).iter_rows(named=True)]
    return "\n".join(lines)
