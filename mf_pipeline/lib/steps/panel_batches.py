"""The joined per-ticker panel of several layers, read a batch of tickers at a time.

``lake.scan_panel`` over the whole universe must hold every row at once, and its hash join
is the slow part of the read. Here each batch reads its tickers' files, in ticker order, from
every layer, and the layers are put side by side when their (ticker, trade_date) keys are the
same rows (the normal case, all layers are built from the same Silver rows); only a batch
where they differ pays for ``scan_panel``'s left join. The result is the same rows, columns
and dtypes as ``lake.scan_panel(...).collect().sort(lake.KEYS)``, batch by batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from mf_pipeline.lib import lake, lake_table
from mf_pipeline.lib.layers import dataset
from mf_pipeline.lib.settings import Settings


@dataclass(frozen=True)
class LayerPart:
    """One layer's share of the panel: its snapshot (of the wanted tickers) and the columns
    taken from it."""

    snapshot: lake_table.Snapshot
    schema: dict[str, pl.DataType]  # whole-universe dtypes of the columns it gives (+ keys)

    def scan(self, tickers: Sequence[str], dates: pl.Expr | None) -> pl.LazyFrame | None:
        """Lazy scan of ``tickers``' rows in this layer (None when it has none)."""
        scan = self.snapshot.of(tickers).scan()
        if scan is None:
            return None
        have = scan.collect_schema().names()
        scan = scan.select([c for c in dict.fromkeys([*lake.KEYS, *self.schema]) if c in have])
        return scan if dates is None else scan.filter(dates)

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` (keys first, sorted by them) with exactly the planned columns and dtypes,
        nulls for the planned columns its files lack."""
        height = frame.height
        frame = dataset.sort_keys(frame)
        return frame.select(
            *[k for k in lake.KEYS if k not in self.schema],
            *[pl.col(c).cast(t) if c in frame.columns
              else pl.repeat(None, height, dtype=t).alias(c) for c, t in self.schema.items()],
        )

    def nulls(self, height: int) -> list[pl.Series]:
        """Its columns for rows it has no file for, as a left join would give them."""
        return [pl.repeat(None, height, dtype=t, eager=True).alias(c)
                for c, t in self.schema.items()]


def plan_panel(
    settings: Settings, layers: Sequence[str], columns: Sequence[str], tickers: Sequence[str]
) -> list[LayerPart] | None:
    """Which columns each layer gives, by ``lake.scan_panel``'s rule (the first listed layer
    that has a column gives it; rows come from the first layer); None if it has no rows."""
    parts: list[LayerPart] = []
    have: set[str] = set()
    for layer in layers:
        snapshot = lake.snapshot(lake.LAYERS[layer].root(settings)).of(tickers)
        if snapshot.is_empty:
            if not parts:
                return None
            continue
        scan = snapshot.scan()
        assert scan is not None
        schema = scan.collect_schema()
        take = [c for c in schema if c not in have and c in columns]
        if not parts:
            take = [*[k for k in lake.KEYS if k not in take], *take]
        elif not any(c not in lake.KEYS for c in take):
            continue
        parts.append(LayerPart(snapshot, {c: schema[c] for c in take}))
        have.update(take)
    return parts


def estimated_rows(first: LayerPart) -> dict[str, int]:
    """Rows per ticker in the first layer (exact: from its snapshot index)."""
    table = first.snapshot.per_ticker()
    return dict(zip(table["ticker"].to_list(), table["rows"].to_list(), strict=True))


def _attach(panel: pl.DataFrame, part: pl.DataFrame, unique_sorted: bool) -> pl.DataFrame:
    """``panel`` with the non-key columns of ``part``: side by side when both hold the same
    unique key rows in the same order, else by ``scan_panel``'s left join."""
    if unique_sorted and all(part[k].equals(panel[k]) for k in lake.KEYS):
        return panel.hstack(part.drop(lake.KEYS).get_columns())
    return panel.join(part, on=list(lake.KEYS), how="left", maintain_order="left")


def read_batch(
    parts: Sequence[LayerPart],
    tickers: Sequence[str],
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> pl.DataFrame:
    """The joined panel of ``tickers`` between ``start`` and ``end`` (inclusive, either open),
    sorted by (ticker, trade_date), with the whole-universe schema."""
    dates = _date_filter(start, end)
    scans = [part.scan(tickers, dates) for part in parts]
    collected = iter(pl.collect_all([scan for scan in scans if scan is not None]))
    frames = [None if scan is None else next(collected) for scan in scans]
    assert frames[0] is not None  # the tickers come from the first layer's files
    panel = parts[0].conform(frames[0])
    unique_sorted = dataset.keys_sorted(panel)
    for part, frame in zip(parts[1:], frames[1:], strict=True):
        if frame is None:
            panel = panel.hstack(part.nulls(panel.height))
            continue
        joined = _attach(panel, part.conform(frame), unique_sorted)
        # a left join keeps a unique sorted panel as it is, unless duplicate keys in
        # ``part`` multiplied its rows
        unique_sorted = unique_sorted and joined.height == panel.height
        panel = joined
    return panel if unique_sorted else dataset.sort_keys(panel)


def _date_filter(start: dt.date | None, end: dt.date | None) -> pl.Expr | None:
    """The trade_date bounds pushed into every layer's scan (keys stay aligned: each layer
    loses the same rows)."""
    bounds = [pl.col("trade_date") >= start] if start is not None else []
    if end is not None:
        bounds.append(pl.col("trade_date") <= end)
    return pl.all_horizontal(bounds) if bounds else None
