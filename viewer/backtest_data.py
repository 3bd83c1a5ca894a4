"""Reads of the recorded backtests (issue #20) for the viewer's Backtest tab and trade markers.

The split-partitioned assets ``backtest_<source>`` store one record per split through the lake
IO manager at ``<data_root>/_io/backtest_<source>/<split>.json`` (``output_dir``, headline,
``in_sample``…). The viewer lists those records and follows them to the run folders, never to
the newest folder under ``backtest_runs/``, so it shows what the asset graph holds. Tables are
the run's own files; the one thing computed here is the daily mark-to-market equity curve
(``equity.mark_to_market_curve``) when the run did not write it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.backtest import equity
from mf_pipeline.lib.backtest.metrics import valid_trades
from mf_pipeline.lib.backtest.report import profit_factor_of
from mf_pipeline.lib.research.splits import FULL_SPLIT_ID
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.run import SUMMARY
from viewer.data import FileRef, Reader, lake_file, read, read_parquet_columns
from viewer.validation_data import IO_DIR, SOURCES, _record

TRADES, BY_STATE, CURVE = "trades.parquet", "summary_by_state.parquet", "equity_curve.parquet"
MTM = "daily_mark_to_market"  # the equity_mode whose stored curve is the one the tab draws
TRADE_COLUMNS = (
    "position_id", "ticker", "side", "entry_signal_date", "entry_date", "entry_price",
    "exit_date", "exit_price", "hold_bars_realized", "entry_state_id", "entry_state_label",
    "exit_reason", "gross_return", "net_return", "max_favorable_excursion",
    "max_adverse_excursion", "fees", "slippage", "exit_fill_fallback", "is_valid_trade",
)  # fmt: skip
STATE_COLUMNS = (
    "entry_state_id", "entry_state_label", "entry_state_direction_hint", "entry_state_class",
    "trade_count", "trade_share", "win_rate", "avg_return", "median_return", "avg_hold_bars",
    "profit_factor_proxy", "net_pnl", "contribution_share",
)  # fmt: skip


@dataclass(frozen=True)
class BacktestRun:
    """One source's backtest of one split, as its asset recorded it."""

    source: str
    split: str
    folder: Path
    summary: dict[str, Any]  # backtest_summary.json

    @property
    def label(self) -> str:
        return f"{SOURCES[self.source]} · split {self.split}"

    @property
    def in_sample(self) -> bool:
        return bool(self.summary.get("in_sample"))

    @property
    def headline(self) -> dict[str, Any]:
        return self.summary.get("headline") or {}


def record_splits(settings: Settings, source: str) -> list[str]:
    """The splits ``backtest_<source>`` has a record of (``full`` first, then by name)."""
    folder = settings.data_root / IO_DIR / f"backtest_{source}"
    splits = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    return sorted(splits, key=lambda s: (s != FULL_SPLIT_ID, s))


def load_run(settings: Settings, source: str, split: str) -> tuple[BacktestRun | None, str]:
    """``source``'s recorded backtest of ``split``, or None and why."""
    _, folder, why = _record(settings, f"backtest_{source}", split)
    if folder is None:
        return None, why or "no record"
    if not (folder / SUMMARY).is_file():
        return None, f"`{folder}` has no {SUMMARY}: the backtest did not finish"
    return BacktestRun(source, split, folder, json.loads((folder / SUMMARY).read_text())), ""


def load_runs(settings: Settings) -> tuple[dict[str, BacktestRun], dict[str, str]]:
    """Every recorded backtest by its label (sources in page order, ``full`` first), and
    why a source has none."""
    runs: dict[str, BacktestRun] = {}
    missing: dict[str, str] = {}
    for source in SOURCES:
        splits = record_splits(settings, source)
        if not splits:
            missing[source] = (f"no `backtest_{source}` record under "
                               f"`{settings.data_root / IO_DIR / f'backtest_{source}'}`")
        for split in splits:
            run, why = load_run(settings, source, split)
            if run is None:
                missing[f"{source}/{split}"] = why
            else:
                runs[run.label] = run
    return runs, missing


def profit_factor_text(headline: dict[str, Any]) -> str:
    """The profit factor as shown: ``+inf (no losing trade)`` from the run's flag (JSON keeps
    the inf as null), ``n/a`` when there is neither a win nor a loss."""
    value = profit_factor_of(headline)
    if value is None:
        return "n/a"
    return "+inf (no losing trade)" if value == float("inf") else f"{value:.2f}"


def _parquet(run: BacktestRun, name: str, columns: tuple[str, ...], reader: Reader,
             ticker: str | None = None) -> pl.DataFrame:
    path = run.folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{run.folder} has no {name}")
    return read(reader, FileRef.of(path), columns, ticker)


def trades(run: BacktestRun, reader: Reader = read_parquet_columns,
           ticker: str | None = None) -> pl.DataFrame:
    """The run's trades (``TRADE_COLUMNS``; one ticker's when given), by entry date."""
    return _parquet(run, TRADES, TRADE_COLUMNS, reader, ticker).sort("entry_date", "ticker")


def by_state(run: BacktestRun, reader: Reader = read_parquet_columns) -> pl.DataFrame:
    return _parquet(run, BY_STATE, STATE_COLUMNS, reader)


def exit_mix(run: BacktestRun) -> pl.DataFrame:
    """The run's exit reasons with their share of all trades (``exit_reason_summary``)."""
    schema = {"exit_reason": pl.String, "trade_count": pl.Int64, "avg_return": pl.Float64,
              "median_return": pl.Float64}
    rows = pl.DataFrame(run.summary.get("exit_reason_summary") or [], schema=schema)
    share = pl.col("trade_count") / pl.col("trade_count").sum()
    return rows.select("exit_reason", "trade_count", share.alias("share"), "avg_return",
                       "median_return")


def silver_closes(settings: Settings, tickers: list[str],
                  reader: Reader = read_parquet_columns) -> pl.DataFrame:
    """``ticker, trade_date, close`` of the Silver bars of ``tickers`` (the prices the split
    backtests fill at)."""
    parts = []
    for ticker in tickers:
        ref = lake_file(settings, "silver", ticker)
        if ref is None:
            raise FileNotFoundError(f"no Silver bars for {ticker}: materialize `silver` first")
        part = read(reader, ref, ("trade_date", "close"), ticker)
        parts.append(part.select(pl.lit(ticker).alias("ticker"),
                                 pl.col("trade_date").cast(pl.Date), pl.col("close")))
    schema = {"ticker": pl.String, "trade_date": pl.Date, "close": pl.Float64}
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


@dataclass(frozen=True)
class EquityView:
    curve: pl.DataFrame  # trade_date, daily_return, equity, drawdown, open_positions
    metrics: dict[str, Any]
    origin: str  # where the curve comes from, as the page says it


def equity_view(settings: Settings, run: BacktestRun, traded: pl.DataFrame,
                reader: Reader = read_parquet_columns) -> EquityView:
    """The daily mark-to-market curve of ``run``: its ``equity_curve.parquet`` when it wrote
    one in that mode, else computed from ``traded`` (its trades) and the Silver closes of the
    traded tickers. The computed curve's calendar is those tickers' bars (the run's own
    calendar also holds untraded tickers' dates, which only add flat days)."""
    capital = float(run.summary.get("capital_base") or 1.0)
    stored = run.folder / CURVE
    if run.summary.get("equity_mode") == MTM and stored.is_file():
        curve = read(reader, FileRef.of(stored), ("trade_date", "daily_return", "equity",
                                                  "drawdown", "open_positions"))
        return EquityView(curve, run.summary.get("equity_metrics") or {},
                          f"the run's `{CURVE}` ({MTM})")
    tickers = valid_trades(traded)["ticker"].unique().sort().to_list()
    bars = silver_closes(settings, tickers, reader)
    curve, metrics = equity.mark_to_market_curve(traded, bars, capital)
    return EquityView(curve, metrics, f"computed from `{TRADES}` and the Silver closes of "
                      f"the {len(tickers)} traded tickers (`equity.mark_to_market_curve`)")
