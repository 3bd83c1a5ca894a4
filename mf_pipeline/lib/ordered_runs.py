"""Sorting long frames that are already sorted run by run, without sorting every row.

Rows often come as runs that are each in order: a ticker's rows from one Parquet file of the
lake (sorted by ticker and date) or one raw file's lines. Putting the runs in order is a copy of
contiguous slices; sorting every row by its keys (strings among them) and gathering every
column costs several times that (Bronze: 0.45 s to sort and 0.6 s to gather 4.5 M rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

Blocks = list[tuple[int, int]]
"""``(first row, rows)`` of each run, in the order the runs must take."""


def rising(keys: pl.DataFrame, columns: Sequence[str], within: str | None = None) -> bool:
    """Whether every row's ``columns`` are strictly below the next row's, lexicographically
    (a null key is never below); with ``within``, only between rows of one ``within`` value."""
    if keys.height < 2:
        return True
    below = pl.lit(False)
    for name in reversed(columns):
        this, after = pl.col(name), pl.col(name).shift(-1)
        below = (this < after) | ((this == after) & below)
    if within is not None:
        below = below | (pl.col(within) != pl.col(within).shift(-1))
    return bool(keys.select(below.head(keys.height - 1).fill_null(False).all()).item())


def run_blocks(keys: pl.DataFrame, group: str, order: Sequence[str]) -> Blocks | None:
    """The runs of ``keys`` in (``group``, *``order``) order, when every ``group`` value is
    one run whose rows rise strictly by ``order``; None otherwise (sort the rows instead)."""
    if keys.is_empty():
        return []
    runs = (keys.select(pl.col(group).rle_id().alias("_run"), group)
            .group_by("_run", maintain_order=True)
            .agg(pl.len().alias("rows"), pl.col(group).first()))
    if (runs[group].null_count() or runs[group].n_unique() != runs.height
            or not rising(keys, order, within=group)):
        return None
    rows = runs["rows"].to_numpy().astype(np.int64)
    starts = np.cumsum(rows) - rows
    return [(int(starts[i]), int(rows[i])) for i in runs[group].arg_sort().to_numpy()]


def take_blocks(frame: pl.DataFrame, blocks: Blocks, rechunk: bool = False) -> pl.DataFrame:
    """``frame``'s rows in the order of ``blocks`` (``frame`` itself when they are already)."""
    if all(start == (prev_start + prev_rows) for (prev_start, prev_rows), (start, _)
           in zip([(0, 0), *blocks], blocks, strict=False)):
        return frame
    return pl.concat([frame.slice(start, rows) for start, rows in blocks], rechunk=rechunk)


def sort_by_runs(frame: pl.DataFrame, group: str, order: Sequence[str],
                 rechunk: bool = False) -> pl.DataFrame:
    """``frame.sort(group, *order)`` (keys unique), by moving runs when that is enough; like
    the sort, the result is flagged as sorted by ``group`` (and with ``rechunk`` contiguous)."""
    blocks = run_blocks(frame.select(group, *order), group, order)
    if blocks is None:
        return frame.sort(group, *order)
    moved = take_blocks(frame, blocks, rechunk)
    return (moved.rechunk() if rechunk else moved).with_columns(pl.col(group).set_sorted())
