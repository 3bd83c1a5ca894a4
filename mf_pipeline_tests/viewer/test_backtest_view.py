"""The backtests in the viewer, over what ``mf demo``'s ``backtest_<source>`` assets wrote
(conftest): discovery by the assets' records, the mark-to-market equity curve against Silver
closes, the chart's trade markers and the Backtest tab's values."""

import base64
import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib import lake
from mf_pipeline.lib.steps.backtest.run import SUMMARY
from mf_pipeline_tests.viewer.test_app import figure, run_app, toggles
from mf_pipeline_tests.viewer.test_validation_view import chart_of, record
from viewer import backtest_data as bd

SOURCES = ("flow", "hmm", "cluster")
HMM_RUN = "HMM · split full"


def run_trades(settings, source: str) -> pl.DataFrame:
    """The trades the asset's run wrote (read without the viewer)."""
    folder = Path(record(settings, f"backtest_{source}")["output_dir"])
    return pl.read_parquet(folder / "trades.parquet")


def values(column) -> list:
    """A plotly JSON array: a list, or plotly's base64 ``bdata`` for numpy arrays."""
    if isinstance(column, dict):
        return np.frombuffer(base64.b64decode(column["bdata"]), column["dtype"]).tolist()
    return column


def out_of_sample_copy(settings, tmp_path: Path, split: str) -> Path:
    """The flow run recorded again for ``split``, as a walk-forward run (not in sample)."""
    old = record(settings, "backtest_flow")
    copy = tmp_path / split
    shutil.copytree(old["output_dir"], copy)
    summary = json.loads((copy / SUMMARY).read_text())
    (copy / SUMMARY).write_text(json.dumps({**summary, "in_sample": False}))
    path = settings.data_root / "_io" / "backtest_flow" / f"{split}.json"
    path.write_text(json.dumps({**old, "output_dir": str(copy), "split_id": split}))
    return copy


def test_discovery_follows_the_records_of_every_source(demo_settings, tmp_path):
    runs, missing = bd.load_runs(demo_settings)
    assert missing == {}
    assert list(runs) == ["Flow · split full", HMM_RUN, "Cluster · split full"]
    for source, run in zip(SOURCES, runs.values(), strict=True):
        rec = record(demo_settings, f"backtest_{source}")
        assert (run.source, run.split, run.in_sample) == (source, "full", True)
        assert run.folder == Path(rec["output_dir"])
        assert run.headline["trade_count"] == rec["trade_count"] == run_trades(
            demo_settings, source).height
    assert runs[HMM_RUN].headline["trade_count"] > 0
    # a newer, unrecorded folder under backtest_runs/ is not what the viewer shows
    decoy = runs[HMM_RUN].folder.parent / f"{runs[HMM_RUN].folder.name}_later"
    shutil.copytree(runs[HMM_RUN].folder, decoy)
    try:
        again, _ = bd.load_runs(demo_settings)
        assert again[HMM_RUN].folder == runs[HMM_RUN].folder != decoy
    finally:
        shutil.rmtree(decoy)
    # another split's record is another choice, after `full`
    out_of_sample_copy(demo_settings, tmp_path, "wf_2015-12-31")
    assert bd.record_splits(demo_settings, "flow") == ["full", "wf_2015-12-31"]
    again, _ = bd.load_runs(demo_settings)
    assert not again["Flow · split wf_2015-12-31"].in_sample


@pytest.mark.parametrize("source", ["flow", "hmm"])
def test_the_equity_curve_marks_each_position_at_the_silver_closes(demo_settings, source):
    run = bd.load_runs(demo_settings)[0][f"{bd.SOURCES[source]} · split full"]
    trades = bd.trades(run)
    assert (trades["fees"] + trades["slippage"]).max() == 0  # the demo trades without costs
    view = bd.equity_view(demo_settings, run, trades)
    curve = view.curve
    assert "computed from `trades.parquet`" in view.origin
    # final equity = capital * product of (1 + daily return)
    growth = float(np.prod(1 + curve["daily_return"].to_numpy()))
    assert curve["equity"][-1] == pytest.approx(growth)
    assert view.metrics["cumulative_return"] == pytest.approx(curve["equity"][-1] - 1)
    # the calendar: every Silver date of the traded tickers from the first entry to the last exit
    silver = lake.read_layer(demo_settings, "silver", trades["ticker"].unique().to_list())
    calendar = (silver.select(pl.col("trade_date").cast(pl.Date)).unique()
                .filter(pl.col("trade_date").is_between(trades["entry_date"].min(),
                                                        trades["exit_date"].max()))
                .sort("trade_date"))
    assert curve["trade_date"].to_list() == calendar["trade_date"].to_list()
    # a lone position (no other trade open on any of its days) moves the book by its own
    # return over its holding days, and by its ticker's close-to-close move in between
    spans = trades.select("position_id", "entry_date", "exit_date")
    overlaps = (spans.join(spans, how="cross", suffix="_o")
                .filter((pl.col("position_id") != pl.col("position_id_o"))
                        & (pl.col("entry_date_o") <= pl.col("exit_date"))
                        & (pl.col("exit_date_o") >= pl.col("entry_date")))["position_id"])
    lone = trades.filter(~pl.col("position_id").is_in(overlaps.implode()))
    assert lone.height >= 5, lone.height
    equity = dict(zip(curve["trade_date"], curve["equity"], strict=True))
    daily = dict(zip(curve["trade_date"], curve["daily_return"], strict=True))
    closes = {(t, d): c for t, d, c in silver.select("ticker", pl.col("trade_date").cast(pl.Date),
                                                     "close").rows()}
    mid_checked = 0
    for trade in lone.iter_rows(named=True):
        before = [d for d in equity if d < trade["entry_date"]]
        start = equity[before[-1]] if before else 1.0
        assert equity[trade["exit_date"]] / start == pytest.approx(1 + trade["net_return"])
        held = sorted(d for (t, d) in closes if t == trade["ticker"]
                      and trade["entry_date"] < d < trade["exit_date"])
        for prev, day in zip([trade["entry_date"], *held], held, strict=False):
            ratio = closes[(trade["ticker"], day)] / closes[(trade["ticker"], prev)]
            move = ratio - 1 if trade["side"] == "LONG" else 1 / ratio - 1
            assert daily[day] == pytest.approx(move)
            mid_checked += 1
    assert mid_checked >= 10


def test_a_stored_mark_to_market_curve_is_read_not_recomputed(demo_settings, tmp_path):
    run = bd.load_runs(demo_settings)[0][HMM_RUN]
    copy = tmp_path / "stored"
    shutil.copytree(run.folder, copy)
    stored = pl.DataFrame({"trade_date": [dt.date(2020, 1, 2), dt.date(2020, 1, 3)],
                           "daily_return": [0.5, -0.5], "equity": [1.5, 0.75],
                           "drawdown": [0.0, -0.5], "open_positions": [1, 1]})
    stored.write_parquet(copy / bd.CURVE)
    summary = {**run.summary, "equity_mode": bd.MTM,
               "equity_metrics": {"cumulative_return": -0.25}}
    view = bd.equity_view(demo_settings, bd.BacktestRun("hmm", "full", copy, summary),
                          bd.trades(run))
    assert view.curve.equals(stored) and view.metrics["cumulative_return"] == -0.25
    # the old exit-date curve of `daily_equity_curve` is not drawn as the daily book
    view = bd.equity_view(demo_settings, bd.BacktestRun(
        "hmm", "full", copy, {**summary, "equity_mode": "daily_equity_curve"}), bd.trades(run))
    assert view.curve.height > 2 and "computed" in view.origin


def test_profit_factor_text():
    assert bd.profit_factor_text({"profit_factor": None, "profit_factor_inf": True}) == \
        "+inf (no losing trade)"
    assert bd.profit_factor_text({"profit_factor": 1.4094, "profit_factor_inf": False}) == "1.41"
    assert bd.profit_factor_text({"profit_factor": None, "profit_factor_inf": False}) == "n/a"


def marker_points(at, name: str) -> list[tuple[str, float, str]]:
    traces = [t for t in figure(at)["data"] if t.get("name") == name]
    if not traces:
        return []
    [trace] = traces
    return list(zip(trace["x"], values(trace["y"]), trace["text"], strict=True))


@pytest.mark.parametrize("source", ["hmm", "flow"])
def test_the_chart_marks_the_tickers_entries_and_exits(demo_lake, demo_settings, source):
    ticker = demo_lake.banded
    trades = run_trades(demo_settings, source).filter(pl.col("ticker") == ticker)
    assert trades.height >= 10 and trades["side"].n_unique() == 2
    first = trades["entry_date"].min()
    at = run_app(ticker=ticker, show_backtest_trades=True,
                 backtest_markers_run=f"{bd.SOURCES[source]} · split full",
                 **{f"from_{ticker}": first})
    for side in ("LONG", "SHORT"):
        mine = trades.filter(pl.col("side") == side).sort("entry_date")
        entries = marker_points(at, f"{side.lower()} entry")
        assert [x for x, _, _ in entries] == [d.isoformat() for d in mine["entry_date"]]
        assert [y for _, y, _ in entries] == pytest.approx(mine["entry_price"].to_list())
        assert all(text.startswith(side) for _, _, text in entries)
        exits = marker_points(at, f"{side.lower()} exit")
        assert [x for x, _, _ in exits] == [d.isoformat() for d in mine["exit_date"]]
        assert [y for _, y, _ in exits] == pytest.approx(mine["exit_price"].to_list())
        for (_, _, text), (reason, hold) in zip(
                exits, mine.select("exit_reason", "hold_bars_realized").rows(), strict=True):
            assert text.startswith(f"{reason}, net ") and text.endswith(f", {hold} bars")
    long = int((trades["side"] == "LONG").sum())
    assert (f"{trades.height} trades of {ticker} ({long} long, {trades.height - long} short)"
            in " ".join(c.value for c in at.caption))
    # a ticker the backtest did not trade: no marker, and the page names the traded ones
    plain = demo_lake.plain
    at = run_app(ticker=plain, show_backtest_trades=True,
                 backtest_markers_run=f"{bd.SOURCES[source]} · split full")
    traded = ", ".join(sorted(run_trades(demo_settings, source)["ticker"].unique()))
    assert f"no trade of {plain}. Traded: {traded}." in " ".join(c.value for c in at.caption)
    assert not any(t.get("name", "").endswith(("entry", "exit")) for t in figure(at)["data"])
    # off by default: no trade drawn
    at = run_app(ticker=ticker)
    assert toggles(at)["Show backtest trades"] == (False, False)
    assert not any(t.get("name", "").endswith(("entry", "exit")) for t in figure(at)["data"])


def table_with(at, column: str) -> pl.DataFrame:
    """The one table of the page with ``column`` (by state: ``contribution_share``; exit
    reasons: ``share``; trades: ``position_id``)."""
    [table] = [d for d in at.dataframe if column in d.value.columns]
    return pl.from_pandas(table.value)


def metric_values(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_the_backtest_tab_shows_the_runs_values(demo_lake, demo_settings):
    at = run_app(view="Backtest")
    assert at.selectbox(key="backtest_source").value == "hmm"
    assert at.selectbox(key="backtest_split").options == ["full"]
    assert any(m.value.startswith(":red-badge[IN-SAMPLE]") for m in at.markdown)
    captions = " ".join(c.value for c in at.caption)
    assert "Directions: `train_scorecard`" in captions
    # the headline, against the trades the asset wrote
    trades = run_trades(demo_settings, "hmm")
    r = trades["net_return"]
    shown = metric_values(at)
    assert shown["Trades"] == f"{trades.height:,}"
    assert shown["Win rate"] == f"{(r > 0).mean():.2%}"
    assert shown["Avg return"] == f"{r.mean():.2%}"
    assert shown["Median return"] == f"{r.median():.2%}"
    assert shown["Profit factor"] == f"{r.filter(r > 0).sum() / -r.filter(r < 0).sum():.2f}"
    assert shown["Avg hold"] == f"{trades['hold_bars_realized'].mean():.1f} bars"
    assert f"Expectancy {r.mean():.2%} = the average return" in captions
    # the equity figure: the final equity is the product of (1 + the day's return)
    equity, drawdown = chart_of(at, "backtest_equity")["data"]
    day = np.array(values(equity["customdata"])) / 100
    assert values(equity["y"])[-1] == pytest.approx(float(np.prod(1 + day)))
    assert shown["Cumulative return"] == f"{values(equity['y'])[-1] - 1:.2%}"
    peak = np.maximum.accumulate(np.maximum(values(equity["y"]), 1.0))
    assert values(drawdown["y"]) == pytest.approx(list((values(equity["y"]) / peak - 1) * 100))
    assert shown["Max drawdown"] == f"{min(values(drawdown['y'])) / 100:.2%}"
    # by state, exit reasons and the trades table
    states = table_with(at, "contribution_share")
    assert sorted(states["entry_state_id"]) == sorted(trades["entry_state_id"].unique())
    assert dict(states.select("entry_state_id", "trade_count").rows()) == dict(
        trades.group_by("entry_state_id").len().rows())
    exits = table_with(at, "share")
    assert dict(exits.select("exit_reason", "trade_count").rows()) == dict(
        trades.group_by("exit_reason").len().rows())
    assert exits["share"].sum() == pytest.approx(1.0)
    assert table_with(at, "position_id").height == trades.height


def test_the_tab_filters_trades_and_switches_runs(demo_lake, demo_settings, tmp_path):
    ticker = demo_lake.banded
    trades = run_trades(demo_settings, "flow")
    at = run_app(view="Backtest", backtest_source="flow", backtest_tickers=[ticker])
    shown = table_with(at, "position_id")
    assert set(shown["ticker"]) == {ticker}
    assert shown["position_id"].sort().to_list() == trades.filter(
        pl.col("ticker") == ticker)["position_id"].sort().to_list()
    # a run without a trade (the demo's cluster policy ALLOWs no state) says so
    at = run_app(view="Backtest", backtest_source="cluster")
    assert metric_values(at)["Trades"] == "0"
    assert metric_values(at)["Profit factor"] == "n/a"
    assert any(i.value == "No valid trade: no equity curve." for i in at.info)
    # a walk-forward split's run: no IN-SAMPLE banner
    copy = out_of_sample_copy(demo_settings, tmp_path, "wf_2015-12-31")
    at = run_app(view="Backtest", backtest_source="flow", backtest_split="wf_2015-12-31")
    assert not any("IN-SAMPLE" in m.value for m in at.markdown)
    assert f"Backtest folder: `{copy}`" in " ".join(c.value for c in at.caption)


def test_without_a_backtest_the_page_says_so(demo_lake, demo_settings):
    for source in SOURCES:
        shutil.rmtree(demo_settings.data_root / "_io" / f"backtest_{source}")
    at = run_app(view="Backtest", ticker=demo_lake.banded)
    assert "No backtest recorded yet" in at.info[0].value
    assert "backtest_hmm" in at.info[0].value
    assert toggles(at)["Show backtest trades"] == (False, True)
    assert len(at.get("plotly_chart")) == 1  # the chart only
