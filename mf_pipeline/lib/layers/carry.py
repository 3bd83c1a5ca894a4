"""Carries: what a per-ticker layer needs to continue a ticker exactly where its last build stopped.

Appending one bar must not mean recomputing a ticker's whole history. Each layer's ``*_step``
takes the new bars plus the :class:`Carry` of its previous build and returns the same rows a
full rebuild would, bit for bit:

* windows of finite length (lags, rolling max/min/std, integer counts) are recomputed from the
  ``context`` rows, the last input rows of each ticker, prepended to the new bars;
* everything with unbounded memory (EWMs, compensated running sums, counters) continues from
  kernel states kept in ``state``, one row per ticker;
* bar-count conditions (warm-up flags) use the absolute bar index, ``bars_total`` based.

:func:`open_segments` builds the context + new-bars frame and the kernels' resume arguments;
:meth:`Segments.carry` turns the kernels' final states and the frame's tail into the next carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from mf_pipeline.lib.kernels.offsets import bar_index, readonly, ticker_offsets

NEW = "_new"  # internal column: True for the rows of the input, False for context rows
ABS_INDEX = "_abs"  # internal column: bar index inside the ticker's whole history


@dataclass
class Carry:
    """What a layer needs to continue each ticker exactly where its last build stopped."""

    # per ticker, the last rows of the layer's INPUT(s) as the layer received them (after its
    # own select/cast), sorted by (ticker, trade_date)
    context: pl.DataFrame
    # one row per ticker: "ticker" (String), "bars_total" (Int64: input bars processed so far)
    # and kernel state columns "{output}__{field}" (Float64/Int64)
    state: pl.DataFrame


@dataclass(frozen=True)
class StateSpec:
    """Names and dtypes of one resumable kernel's state columns (``{prefix}__{field}``)."""

    fields: tuple[tuple[str, pl.DataType], ...]

    @property
    def width(self) -> int:
        return len(self.fields)


EWM_STATE = StateSpec((("mean", pl.Float64()), ("weight", pl.Float64()), ("count", pl.Int64())))
TMF_TTI_STATE = StateSpec(
    tuple((f"{ewm}_{name}", dtype) for ewm in ("ad", "vol", "proxy", "den")
          for name, dtype in EWM_STATE.fields)
)  # fmt: skip
MEAN_STATE = StateSpec((("total", pl.Float64()), ("comp", pl.Float64()), ("count", pl.Int64())))
SUM_STATE = StateSpec((("total", pl.Float64()), ("since_reset", pl.Int64())))
COUNTER_STATE = StateSpec((("value", pl.Int64()),))


def merge_carries(older: Carry | None, newer: Carry) -> Carry:
    """``older`` with every ticker of ``newer`` replaced by ``newer``'s rows."""
    if older is None:
        return newer
    fresh = newer.state.get_column("ticker")
    keep = ~pl.col("ticker").is_in(fresh.implode())
    return Carry(
        context=pl.concat([older.context.filter(keep), newer.context], how="diagonal_relaxed")
        .sort("ticker", "trade_date", maintain_order=True),
        state=pl.concat([older.state.filter(keep), newer.state], how="diagonal_relaxed")
        .sort("ticker", maintain_order=True),
    )  # fmt: skip


def tail_rows(df: pl.DataFrame, offsets: np.ndarray, n: int) -> pl.DataFrame:
    """The last ``n`` rows (fewer when it has fewer) of every ticker, via offsets."""
    counts = np.minimum(np.diff(offsets), n)
    firsts = offsets[1:] - counts
    pos = np.arange(int(counts.sum()), dtype=np.int64)
    pos += np.repeat(firsts - (np.cumsum(counts) - counts), counts)
    return df[pos]


@dataclass
class Segments:
    """A layer's working frame: each ticker's context rows, then its new rows.

    ``start[t]`` is the row of ticker ``t``'s first new bar (the resumable kernels' ``start``),
    ``bars_before[t]`` how many of its bars earlier builds processed.
    """

    frame: pl.DataFrame
    offsets: np.ndarray
    start: np.ndarray
    bars_before: np.ndarray
    state: pl.DataFrame | None  # the carry's state rows, one per ticker of ``frame``
    resumed: bool  # some ticker has context rows

    def local_index(self) -> np.ndarray:
        """Row index inside the ticker's segment: lags masked with it read context rows."""
        return bar_index(self.offsets)

    def absolute_index(self) -> np.ndarray:
        """Bar index inside the ticker's whole history (for warm-up conditions)."""
        base = self.bars_before - (self.start - self.offsets[:-1])
        return bar_index(self.offsets) + np.repeat(base, np.diff(self.offsets))

    def init(self, prefix: str, spec: StateSpec) -> np.ndarray:
        """The carried state of one kernel (n_tickers x width float64, NaN when fresh), read-only
        (one kernel overload whether it was made here or by Polars)."""
        n_t = self.offsets.shape[0] - 1
        if self.state is None:
            return readonly(np.full((n_t, spec.width), np.nan))
        cols = [f"{prefix}__{name}" for name, _ in spec.fields]
        return readonly(np.ascontiguousarray(
            self.state.select(pl.col(cols).cast(pl.Float64)).to_numpy(), dtype=np.float64
        ))

    def final(self, spec: StateSpec) -> np.ndarray:
        """An output state array for one kernel."""
        return np.empty((self.offsets.shape[0] - 1, spec.width), dtype=np.float64)

    def new_rows(self, df: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
        """Only the input's rows (a no-op when nothing was resumed)."""
        return df.filter(pl.col(NEW)) if self.resumed else df

    def carry(
        self,
        frame: pl.DataFrame,
        columns: Sequence[str],
        length: int,
        states: Sequence[tuple[str, StateSpec, np.ndarray]],
    ) -> Carry:
        """The carry after these rows: ``columns`` of each ticker's last ``length`` rows of
        ``frame`` (the working frame or one derived from it, same rows) and the kernels' final
        ``(prefix, spec, final)`` states."""
        context = tail_rows(frame.select(columns), self.offsets, length)
        tickers = frame.get_column("ticker").gather(self.offsets[:-1])
        cols: list[pl.Series] = [
            tickers,
            pl.Series("bars_total", self.bars_before + (self.offsets[1:] - self.start)),
        ]
        for prefix, spec, final in states:
            cols += [
                pl.Series(f"{prefix}__{name}", final[:, j]).cast(dtype)
                for j, (name, dtype) in enumerate(spec.fields)
            ]
        return Carry(context=context, state=pl.DataFrame(cols))


def open_segments(new: pl.DataFrame, carry: Carry | None) -> Segments:
    """Prepend each ticker's carried context rows to its new rows (``new`` sorted by ticker).

    Context columns missing from ``new`` (or the reverse) become null; tickers of the carry
    that are not in ``new`` are ignored.
    """
    offsets = ticker_offsets(new.get_column("ticker"))
    n_t = offsets.shape[0] - 1
    tickers = new.get_column("ticker").gather(offsets[:-1])
    context = None
    if carry is not None and carry.context.height:
        context = carry.context.filter(pl.col("ticker").is_in(tickers.implode()))
    if context is None or context.height == 0:
        return Segments(
            frame=new.with_columns(pl.lit(True).alias(NEW)),
            offsets=offsets,
            start=offsets[:-1].copy(),
            bars_before=np.zeros(n_t, dtype=np.int64),
            state=None,
            resumed=False,
        )
    frame = pl.concat(
        [context.with_columns(pl.lit(False).alias(NEW)), new.with_columns(pl.lit(True).alias(NEW))],
        how="diagonal_relaxed",
    ).sort("ticker", maintain_order=True)
    offsets = ticker_offsets(frame.get_column("ticker"))
    n_context = np.add.reduceat((~frame.get_column(NEW)).to_numpy().astype(np.int64), offsets[:-1])
    state = pl.DataFrame(tickers).join(carry.state, on="ticker", how="left", maintain_order="left")
    bars_before = state.get_column("bars_total").fill_null(0).to_numpy().astype(np.int64)
    if ((bars_before > 0) != (n_context > 0)).any():
        raise ValueError("carry is inconsistent: a ticker has state without context or vice versa")
    return Segments(
        frame=frame,
        offsets=offsets,
        start=offsets[:-1] + n_context,
        bars_before=bars_before,
        state=state,
        resumed=True,
    )
