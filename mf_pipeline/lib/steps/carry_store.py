"""Where the derived layers keep their carries, and which tickers may take the append path.

A *carry* (``lib/layers/carry.py``) is what a layer needs to continue a ticker's series exactly
where its last build stopped: the last input rows and the kernels' states. Each derived layer
keeps one small table pair for all tickers, ``<layer root>/_carry/<layer>_{context,state}.parquet``,
rewritten (locked, atomic) for the tickers a run touched.

A ticker takes the append path when every derived layer's carry ends on the same date ``D``,
its Bronze base file is older than its Silver files (Silver saw the whole base), no layer file
is newer than that layer's saved carries, and no layer folder is inconsistent; its new Bronze
rows are then exactly the rows after ``D`` in Bronze's delta files. Anything else is rebuilt
in full, which is always correct.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.layers.carry import Carry
from mf_pipeline.lib.settings import Settings


def carry_paths(settings: Settings, layer: str) -> tuple[Path, Path]:
    """(context table, state table) of a layer's carries."""
    folder = lake.LAYERS[layer].root(settings).parent / "_carry"
    return folder / f"{layer}_context.parquet", folder / f"{layer}_state.parquet"


def _scan(path: Path, tickers: Sequence[str] | None) -> pl.LazyFrame | None:
    if not path.exists():
        return None
    scan = pl.scan_parquet(path)
    return scan if tickers is None else scan.filter(pl.col("ticker").is_in(list(tickers)))


def load(settings: Settings, layer: str, tickers: Sequence[str]) -> Carry | None:
    """The stored carry of ``tickers`` in ``layer``; None when the layer has none yet."""
    context_path, state_path = carry_paths(settings, layer)
    context, state = _scan(context_path, tickers), _scan(state_path, tickers)
    if context is None or state is None:
        return None
    return Carry(context=context.collect(), state=state.collect())


def save(settings: Settings, layer: str, carries: Sequence[Carry], rebuilt: Sequence[str]) -> None:
    """Store ``carries`` (replacing those of their tickers); ``rebuilt`` tickers (rebuilt in
    full) without a new carry had no rows any more and lose theirs."""
    context_path, state_path = carry_paths(settings, layer)
    parts = [c for c in carries if c.state.height]
    if not parts and not (context_path.exists() and rebuilt):
        return
    replaced = {*rebuilt, *(t for c in parts for t in c.state["ticker"].to_list())}
    for path, name, order in ((context_path, "context", ["ticker", "trade_date"]),
                              (state_path, "state", ["ticker"])):
        if parts:
            rows = pl.concat([getattr(c, name) for c in parts], how="diagonal_relaxed")
        else:
            rows = pl.read_parquet(path).clear()
        lake.upsert_parquet(path, rows, "ticker", replaced, settings.parquet, sort_by=order)


def _last_dates(settings: Settings, layer: str, tickers: Sequence[str]) -> pl.DataFrame:
    context = _scan(carry_paths(settings, layer)[0], tickers)
    if context is None:
        return pl.DataFrame(schema={"ticker": pl.String(), layer: pl.Date()})
    return context.group_by("ticker").agg(pl.col("trade_date").max().alias(layer)).collect()


def _carries_current(settings: Settings, tickers: Sequence[str]) -> set[str]:
    """Tickers whose carries describe their files: every folder is consistent, Silver saw the
    whole Bronze base (the base is not newer than its Silver files), and no layer file is newer
    than the layer's stored carries (a run killed after writing files but before saving
    carries fails this)."""
    saved = {layer: carry_paths(settings, layer)[1] for layer in registry.CARRIED}
    if not all(path.exists() for path in saved.values()):
        return set()
    saved_at = {layer: path.stat().st_mtime for layer, path in saved.items()}
    times = {layer: lake.folder_times(lake.LAYERS[layer].root(settings))
             for layer in ("bronze", *registry.CARRIED)}
    bronze, silver = times["bronze"], times["silver"]

    def current(ticker: str) -> bool:
        base = bronze.get(ticker)
        if base is None or base.base is None or not base.consistent:
            return False
        if ticker not in silver or base.base > silver[ticker].newest:
            return False
        return all(ticker in times[layer] and times[layer][ticker].consistent
                   and times[layer][ticker].newest <= saved_at[layer] for layer in registry.CARRIED)

    return {t for t in tickers if current(t)}


def split_appendable(settings: Settings, tickers: Sequence[str]) -> tuple[pl.DataFrame, list[str]]:
    """(``ticker, after`` of the tickers that take the append path, every other ticker).

    ``after`` is the last date every derived layer has already processed.
    """
    frame = pl.DataFrame({"ticker": sorted(set(tickers))}, schema={"ticker": pl.String()})
    for layer in registry.CARRIED:
        frame = frame.join(_last_dates(settings, layer, tickers), on="ticker", how="left")
    chain = registry.CARRIED
    same = pl.all_horizontal(pl.col(layer).is_not_null() for layer in chain) & pl.all_horizontal(
        pl.col(layer) == pl.col(chain[0]) for layer in chain[1:]
    )
    ok = _carries_current(settings, frame["ticker"].to_list())
    appendable = frame.filter(same & pl.col("ticker").is_in(list(ok))).select(
        "ticker", after=pl.col(chain[0])
    )
    rest = sorted(set(frame["ticker"]) - set(appendable["ticker"]))
    return appendable, rest


def new_bronze_rows(settings: Settings, appendable: pl.DataFrame,
                    columns: Sequence[str]) -> pl.DataFrame:
    """Bronze rows after each ticker's ``after`` date, read from its delta files only.

    A delta named after a date on or before ``after`` was complete when the layers last ran
    (files appear atomically), so only the deltas named after a later date are read.
    """
    root = lake.LAYERS["bronze"].root(settings)
    after = dict(zip(appendable["ticker"].to_list(), appendable["after"].to_list(), strict=True))
    deltas = [
        path for path in lake.symbol_files(root, list(after))
        if path.name != lake.PART_FILE
        and lake.delta_date(path.name) > after[path.parent.name.removeprefix("ticker=")]
    ]
    if not deltas:
        return pl.DataFrame()
    return (
        pl.scan_parquet(deltas, hive_partitioning=False, missing_columns="insert")
        .select(columns)
        .join(appendable.lazy(), on="ticker", how="inner")
        .filter(pl.col("trade_date") > pl.col("after"))
        .drop("after")
        .collect()
        .sort(["ticker", "trade_date"])
    )
