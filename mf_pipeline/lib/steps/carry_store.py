"""Where the derived layers keep their carries, and what a ticker's stored state describes.

A *carry* (``lib/layers/carry.py``) is what a layer needs to continue a ticker's series exactly
where its last build stopped: the last input rows (``context``) and the kernels' states
(``state``). Each derived layer keeps both in ONE file, ``<tier root>/_carry/<layer>.parquet``
(a ``_part`` column tells the two apart; the column lists are in the file's metadata), so a
crash can never leave a new context beside an old state: the file is replaced atomically, as a
unit.

Each ticker's state row also records **what it was built from and what it wrote**: the listing
of the ticker in the layer after the build (``_own``) and in its input layers when it read them
(``_input``). A listing is ``version:rows:last date`` from the layer's snapshot
(``lib/lake_table.py``): the version changes whenever the ticker's rows are replaced, the row
count whenever bars are appended. Staleness and the append path compare those listings with the
lake *for equality* — never by comparing times — so rows committed after the carry (a run
killed between its layer commit and its carry commit), a carry older than its rows (a restored
or half-saved carry), or an input rewritten since the build are all noticed, and the ticker is
rebuilt in full, which is always correct.

A ticker takes the append path when every carried layer's carry ends on the same date ``D``,
every layer's own listing is unchanged, Silver's recorded Bronze listing has only grown since
(same version, more rows: bars appended), and the layers' input listings match the layers
below them; its new Bronze rows are then exactly the rows after ``D``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from mf_pipeline.lib import lake, lake_table, registry
from mf_pipeline.lib.layers.carry import Carry
from mf_pipeline.lib.settings import Settings

log = logging.getLogger(__name__)
PART = "_part"
OWN = "_own"
INPUT = "_input"
"""State columns: the listing of the ticker in its own layer and (JSON) in its input layers."""


def carry_path(settings: Settings, layer: str) -> Path:
    """The one carry file of a layer (context and state together)."""
    return registry.spec(layer).root(settings).parent / "_carry" / f"{layer}.parquet"


# ------------------------------------------------------------------------- ticker listings


def listings(settings: Settings, layer: str, tickers: Iterable[str] | None = None
             ) -> dict[str, str]:  # fmt: skip
    """``{ticker: listing}`` of a layer's tickers (all, or ``tickers``'), from its snapshot:
    ``version:rows:last date``, equal exactly when the ticker's rows are the same."""
    return lake.listings(registry.spec(layer).root(settings), tickers)


def _only_grew(recorded: str, current: str) -> bool:
    """True when ``current`` is ``recorded``'s rows plus appended ones: the same version (no
    rewrite since) and at least as many rows."""
    old, new = recorded.split(":"), current.split(":")
    if len(old) != 3 or len(new) != 3:  # nothing recorded, or a v1 folder listing
        return False
    return old[0] == new[0] and int(new[1]) >= int(old[1])


# ------------------------------------------------------------------------- reading and writing


def _read(settings: Settings, layer: str, tickers: Sequence[str] | None
          ) -> tuple[pl.DataFrame, pl.DataFrame] | None:  # fmt: skip
    """(context, state) stored for ``tickers`` (all when None); None when there is no usable
    carry file. An unreadable file is derived state: it is ignored with a warning (its tickers
    are rebuilt in full) and replaced by the next save."""
    path = carry_path(settings, layer)
    if not path.exists():
        return None
    try:
        meta = pl.read_parquet_metadata(path)
        columns = {part: json.loads(meta[f"mf_{part}_columns"]) for part in ("context", "state")}
        scan = pl.scan_parquet(path)
        if tickers is not None:
            scan = scan.filter(pl.col("ticker").is_in(list(tickers)))
        frame = scan.collect()
    except Exception as error:  # noqa: BLE001 - any damage: rebuild from the sources
        log.warning("carry file %s is unreadable (%s: %s); its tickers are rebuilt in full",
                    path, type(error).__name__, error)
        return None
    return tuple(frame.filter(pl.col(PART) == part).select(columns[part])  # type: ignore[return-value]
                 for part in ("context", "state"))


def load(settings: Settings, layer: str, tickers: Sequence[str]) -> Carry | None:
    """The stored carry of ``tickers`` in ``layer``; None when the layer has none."""
    found = _read(settings, layer, tickers)
    if found is None:
        return None
    context, state = found
    return Carry(context=context, state=state.drop(OWN, INPUT, strict=False))


def save(settings: Settings, layer: str, carries: Sequence[Carry], replaced: Sequence[str],
         forget: Iterable[str] = ()) -> None:
    """Store ``carries`` for their tickers, each stamped with the listings of its own rows
    and its inputs' rows as they are now; ``replaced`` tickers without a new carry (no rows
    any more) and ``forget`` tickers (e.g. a failed check: rebuilt next run) lose theirs. One
    atomic replace of the layer's carry file."""
    parts = [c for c in carries if c.state.height]
    new_context = pl.concat([c.context for c in parts], how="diagonal_relaxed") if parts \
        else None
    new_state = pl.concat([c.state for c in parts], how="diagonal_relaxed") if parts else None
    dropped = set(forget)
    if new_state is not None:
        new_state = _stamped(settings, layer, new_state.filter(~pl.col("ticker").is_in(dropped)))
        new_context = new_context.filter(~pl.col("ticker").is_in(dropped))
    touched = {*replaced, *dropped, *(new_state["ticker"] if new_state is not None else [])}
    path = carry_path(settings, layer)
    with lake.file_lock(path):
        old = _read(settings, layer, None)
        if old is None and new_state is None:
            path.unlink(missing_ok=True)
            return
        context, state = _merged(old, new_context, new_state, touched)
        _write(settings, path, context, state)


def _stamped(settings: Settings, layer: str, state: pl.DataFrame) -> pl.DataFrame:
    tickers = state["ticker"].to_list()
    own = listings(settings, layer, tickers)
    inputs = {name: listings(settings, name, tickers) for name in registry.spec(layer).inputs}
    return state.with_columns(
        pl.Series(OWN, [own.get(t, "") for t in tickers], dtype=pl.String()),
        pl.Series(INPUT, [json.dumps({name: found.get(t, "") for name, found in inputs.items()},
                                     sort_keys=True) for t in tickers], dtype=pl.String()),
    )


def _merged(old: tuple[pl.DataFrame, pl.DataFrame] | None, context: pl.DataFrame | None,
            state: pl.DataFrame | None, touched: set[str]
            ) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    keep = ~pl.col("ticker").is_in(list(touched))
    frames = [[], []]
    if old is not None:
        frames[0].append(old[0].filter(keep))
        frames[1].append(old[1].filter(keep))
    if state is not None:
        frames[0].append(context)
        frames[1].append(state)
    return (pl.concat(frames[0], how="diagonal_relaxed").sort("ticker", "trade_date"),
            pl.concat(frames[1], how="diagonal_relaxed").sort("ticker"))


def _write(settings: Settings, path: Path, context: pl.DataFrame, state: pl.DataFrame) -> None:
    both = pl.concat([context.with_columns(pl.lit("context").alias(PART)),
                      state.with_columns(pl.lit("state").alias(PART))], how="diagonal_relaxed")
    meta = {f"mf_{name}_columns": json.dumps(frame.columns)
            for name, frame in (("context", context), ("state", state))}
    lake.write_parquet(both, path, settings.parquet, metadata=meta)


# ------------------------------------------------------------------------- what is current


def recorded(settings: Settings, layer: str) -> pl.DataFrame:
    """``ticker, last_date, own, input`` of every ticker with a carry in ``layer``: read
    lazily (the listings and the context's dates only, not the carried rows and states),
    since staleness and the append check ask it of every ticker on every run."""
    schema = {"ticker": pl.String(), "last_date": pl.Date(), OWN: pl.String(),
              INPUT: pl.String()}
    path = carry_path(settings, layer)
    if not path.exists():
        return pl.DataFrame(schema=schema)
    try:
        scan = pl.scan_parquet(path)
        state = scan.filter(pl.col(PART) == "state").select("ticker", OWN, INPUT)
        last = (scan.filter(pl.col(PART) == "context").group_by("ticker")
                .agg(pl.col("trade_date").max().alias("last_date")))
        return state.join(last, on="ticker", how="left").select(list(schema)).collect()
    except Exception as error:  # noqa: BLE001 - any damage: rebuild from the sources
        log.warning("carry file %s is unreadable (%s: %s); its tickers are rebuilt in full",
                    path, type(error).__name__, error)
        return pl.DataFrame(schema=schema)


def described(settings: Settings, layer: str, records: pl.DataFrame,
              current: dict[str, dict[str, str]]) -> set[str]:
    """Tickers whose stored state in ``layer`` describes the lake: its own rows and every
    input's rows are exactly what they were when it was built. ``current`` maps layer names
    to their listings (computed once per run)."""
    inputs = registry.spec(layer).inputs
    out = set()
    for ticker, own, given in records.select("ticker", OWN, INPUT).iter_rows():
        built_from = json.loads(given or "{}")
        if own and own == current[layer].get(ticker) and all(
                built_from.get(name) == current[name].get(ticker) for name in inputs):
            out.add(ticker)
    return out


def split_appendable(settings: Settings, tickers: Sequence[str]
                     ) -> tuple[pl.DataFrame, list[str]]:  # fmt: skip
    """(``ticker, after`` of the tickers that take the append path, every other ticker).

    ``after`` is the last date every carried layer has already processed.
    """
    chain = registry.CARRIED
    wanted = sorted(set(tickers))
    current = {name: listings(settings, name, wanted) for name in ("bronze", *chain)}
    records = {layer: recorded(settings, layer) for layer in chain}
    ok = set(wanted)
    last: dict[str, object] = {}
    for index, layer in enumerate(chain):
        rows = records[layer].filter(pl.col("ticker").is_in(wanted))
        if index == 0:  # Silver: Bronze may have grown by deltas since (the new bars)
            ok &= _silver_continues(rows, current)
        else:
            ok &= described(settings, layer, rows, current)
        dates = dict(zip(rows["ticker"].to_list(), rows["last_date"].to_list(), strict=True))
        ok = {t for t in ok if dates.get(t) is not None and last.setdefault(t, dates[t])
              == dates[t]}
    appendable = pl.DataFrame({"ticker": sorted(ok), "after": [last[t] for t in sorted(ok)]},
                              schema={"ticker": pl.String(), "after": pl.Date()})
    return appendable, sorted(set(wanted) - ok)


def _silver_continues(rows: pl.DataFrame, current: dict[str, dict[str, str]]) -> set[str]:
    """Tickers whose Silver rows are as Silver left them and whose Bronze rows are what
    Silver read plus bars appended since."""
    out = set()
    for ticker, own, given in rows.select("ticker", OWN, INPUT).iter_rows():
        bronze = json.loads(given or "{}").get("bronze", "")
        if own and own == current["silver"].get(ticker) and _only_grew(
                bronze, current["bronze"].get(ticker, "")):
            out.add(ticker)
    return out


def new_bronze_rows(settings: Settings, appendable: pl.DataFrame,
                    columns: Sequence[str]) -> pl.DataFrame:
    """Bronze rows after each ticker's ``after`` date, read only from the data files whose
    rows of that ticker reach past it (the nightly deltas, not the large bases)."""
    root = registry.spec("bronze").root(settings)
    snapshot = lake.snapshot(root).of(appendable["ticker"].to_list())
    index = snapshot.index.join(appendable, on="ticker").filter(pl.col("high") > pl.col("after"))
    if index.is_empty():
        return pl.DataFrame()
    scan = lake_table.Snapshot(root, snapshot.generation, index.drop("after")).scan()
    assert scan is not None
    return (
        scan.select(columns)
        .join(appendable.lazy(), on="ticker", how="inner")
        .filter(pl.col("trade_date") > pl.col("after"))
        .drop("after")
        .collect()
        .sort(["ticker", "trade_date"])
    )
