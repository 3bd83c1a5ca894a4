"""HTML reports (#21 item 6): the pictures carry the right numbers (equity = cumulative sum,
drawdown from the running peak, heatmap cells = means by hand, …) and every page is one
self-contained file: plotly.js inlined once, no CDN script, the Markdown rendered."""

import json
import math
import re
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from plotly.offline import get_plotlyjs

from mf_pipeline.lib.grids import wf_aggregates
from mf_pipeline.lib.grids.combos import GridDimensions
from mf_pipeline.lib.grids.compare import compare_grids
from mf_pipeline.lib.grids.run import GridOptions, GridSource, run_grid
from mf_pipeline.lib.reports import figures, hybrid_eval, pages, realism
from mf_pipeline.lib.reports.html import Section, page
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.lib.steps.backtest.calibrate import calibrate
from mf_pipeline.lib.steps.backtest.options import backtest_options
from mf_pipeline_tests.unit.test_grid_engine import _inputs
from mf_pipeline_tests.unit.test_report_discover import build_lake

D = [date(2020, 1, d) for d in (2, 3, 6, 7)]


def _metrics(**columns) -> pl.DataFrame:
    """A small metrics table: defaults for the columns the pictures read."""
    n = len(next(iter(columns.values())))
    base = {"source_type": ["flow"] * n, "combo_id": [f"id{i}" for i in range(n)],
            "combo_index": list(range(1, n + 1)), "hold_bars": [5] * n,
            "total_cost_bps": [0.0] * n, "expectancy": [0.0] * n,
            "robustness_score_v2": [50.0] * n}
    return pl.DataFrame({**base, **columns})


def _z(trace) -> list[list]:
    """A heatmap's z as lists (plotly stores a tuple of lists)."""
    return [list(row) for row in trace.z]


def _figure_data(text: str, number: int) -> list[dict]:
    """The trace list a page hands to ``Plotly.newPlot`` for its ``number``-th figure."""
    match = re.search(rf'Plotly\.newPlot\(\s*"figure-{number}",\s*', text)
    assert match, f"figure-{number} not in the page"
    return json.JSONDecoder().raw_decode(text, match.end())[0]


def _single_script_bundle(text: str) -> None:
    assert text.count(get_plotlyjs()) == 1
    assert not re.search(r"<script[^>]*\bsrc=", text)  # nothing loaded from the network


# --- grid pictures -------------------------------------------------------------------------


def test_equity_is_the_cumulative_sum_and_drawdown_is_from_the_running_peak() -> None:
    returns = pl.DataFrame({
        "source_type": "flow", "combo_id": ["b"] * 4 + ["a"] * 4,
        "trade_date": [D[3], D[1], D[0], D[2]] + D,  # unsorted on purpose
        "period_return": [0.01, 0.03, -0.01, -0.02, 0.01, None, 0.02, -0.05]})
    curves = figures.equity_curves(returns)
    b = curves.filter(pl.col("combo_id") == "b")
    assert b["trade_date"].to_list() == D
    # b in date order: -0.01, 0.03, -0.02, 0.01 -> equity -0.01, 0.02, 0.00, 0.01
    assert b["equity"].to_list() == pytest.approx([-0.01, 0.02, 0.0, 0.01])
    # peak starts at 0: first day already under water; later peak 0.02
    assert b["drawdown"].to_list() == pytest.approx([-0.01, 0.0, -0.02, -0.01])
    a = curves.filter(pl.col("combo_id") == "a")
    assert a["equity"].to_list() == pytest.approx([0.01, 0.01, 0.03, -0.02])  # null -> 0
    assert a["drawdown"].to_list() == pytest.approx([0.0, 0.0, 0.0, -0.05])
    assert (curves["drawdown"] <= 0).all()


def test_curve_combos_are_the_top_five_nulls_last_ties_by_index_plus_the_worst() -> None:
    scores = [70.0, None, 90.0, 70.0, 20.0, 80.0, 10.0, 60.0]
    chosen = figures.curve_combos(_metrics(robustness_score_v2=scores))
    # 90 (#3), 80 (#6), 70 tie -> #1 before #4, then 60 (#8); worst 10 (#7); null never
    assert chosen["combo_index"].to_list() == [3, 6, 1, 4, 8, 7]
    assert chosen["role"].to_list() == ["top 1", "top 2", "top 3", "top 4", "top 5", "worst"]
    same = figures.curve_combos(_metrics(robustness_score_v2=scores).reverse())
    assert same["combo_index"].to_list() == [3, 6, 1, 4, 8, 7]  # row order does not matter
    two = figures.curve_combos(_metrics(robustness_score_v2=[1.0, None]))
    assert two["combo_index"].to_list() == [1, 2]  # the worst is already in the top


def test_equity_drawdown_figure_traces_hold_the_curves() -> None:
    returns = pl.DataFrame({"source_type": "flow", "combo_id": ["id0"] * 4 + ["id1"] * 4,
                            "trade_date": D + D,
                            "period_return": [0.02, -0.03, 0.01, 0.0, -0.01, -0.01, 0.0, 0.05]})
    metrics = _metrics(robustness_score_v2=[80.0, 10.0], total_cost_bps=[0.0, 20.0])
    fig = figures.equity_drawdown_figure(figures.equity_curves(returns),
                                         figures.curve_combos(metrics, top_n=1))
    top_eq, top_dd, worst_eq, worst_dd = fig.data
    assert list(top_eq.y) == pytest.approx([0.02, -0.01, 0.0, 0.0])
    assert list(top_dd.y) == pytest.approx([0.0, -0.03, -0.02, -0.02])
    assert list(worst_eq.y) == pytest.approx([-0.01, -0.02, -0.02, 0.03])
    assert list(worst_dd.y) == pytest.approx([-0.01, -0.02, -0.02, 0.0])
    assert list(top_eq.x) == D and top_dd.yaxis == "y2"
    assert top_eq.name == "top 1: flow #1 hold 5, cost 0 bps (v2 80.0)"
    assert worst_eq.line.dash == "dash" and top_eq.line.dash is None
    assert top_eq.line.color == top_dd.line.color != worst_eq.line.color
    assert top_eq.showlegend and not top_dd.showlegend


def test_heatmap_cells_are_means_over_the_other_dimensions() -> None:
    metrics = _metrics(
        source_type=["flow"] * 6 + ["hmm"] * 2,
        hold_bars=[5, 5, 10, 10, 5, 10, 5, 10],
        fee_bps_per_side=[0.0, 0.0, 0.0, 0.0, 10.0, 10.0, 0.0, 0.0],
        exit_mode=["horizon", "horizon_or_state"] * 3 + ["horizon"] * 2,
        signal_mode=["state_entry"] * 8,  # constant: never a default axis
        robustness_score_v2=[10.0, 30.0, 50.0, None, 70.0, 90.0, 1.0, 2.0])
    assert figures.default_heatmap_dims(metrics) == ("hold_bars", "fee_bps_per_side")
    flow = metrics.filter(pl.col("source_type") == "flow")
    xs, ys, z = figures.heatmap_matrix(flow, "hold_bars", "fee_bps_per_side")
    # (fee 0, hold 5) = mean(10, 30); (fee 0, hold 10) = mean(50) — the null is skipped
    assert (xs, ys, z) == ([5, 10], [0.0, 10.0], [[20.0, 50.0], [70.0, 90.0]])
    heat = figures.robustness_heatmaps(metrics)
    assert [_z(h.data[0]) for h in heat] == [[[20.0, 50.0], [70.0, 90.0]], [[1.0, 2.0]]]
    assert heat[0].data[0].x == ("5", "10") and heat[0].data[0].y == ("0", "10")
    assert heat[1].layout.title.text.startswith("hmm:")
    chosen = figures.robustness_heatmaps(metrics, ("exit_mode", "hold_bars"))[0].data[0]
    assert chosen.x == ("horizon", "horizon_or_state")
    assert _z(chosen) == [[40.0, 30.0], [50.0, 90.0]]  # hold 5: (10+70)/2, 30; 10: 50, 90
    with pytest.raises(ValueError, match="not in the metrics table"):
        figures.robustness_heatmaps(metrics, ("hold_bars", "nope"))
    assert figures.robustness_heatmaps(metrics.select(pl.exclude("fee_bps_per_side",
                                                                 "exit_mode"))) == []


def test_heatmap_labels_a_null_state_subset_as_all_and_leaves_empty_cells_blank() -> None:
    metrics = _metrics(hold_bars=[5, 10, 5], state_subset_key=[None, None, "1|2"],
                       robustness_score_v2=[40.0, 60.0, 80.0])
    heat = figures.robustness_heatmaps(metrics)[0].data[0]
    assert heat.y == ("all", "1|2") and _z(heat) == [[40.0, 60.0], [80.0, None]]


def test_cost_fragility_lines_are_mean_expectancy_per_cost_and_hold() -> None:
    metrics = _metrics(hold_bars=[5, 5, 5, 10, 10], total_cost_bps=[0.0, 0.0, 20.0, 0.0, 20.0],
                       expectancy=[0.01, 0.03, 0.0, 0.02, -0.01])
    (fig,) = figures.cost_fragility_figures(metrics)
    assert [t.name for t in fig.data] == ["hold 5", "hold 10"]
    assert fig.data[0].x == (0.0, 20.0) and fig.data[0].y == pytest.approx((0.02, 0.0))
    assert fig.data[1].y == pytest.approx((0.02, -0.01))


# --- walk-forward, compare, calibration, decision pictures --------------------------------


WINNERS = pl.DataFrame({
    "train_end": ["2019-12-31"] * 2 + ["2020-12-31"] * 2,
    "metric": ["expectancy", "robustness_v2"] * 2,
    "winner_source_type": ["hmm", "flow", "hmm", None],
    "winner_value": [0.004, 71.5, 0.002, None]})


def test_winner_map_puts_one_marker_per_split_and_metric_coloured_by_source() -> None:
    fig = figures.winner_map(WINNERS)
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"flow", "hmm", "none"}
    assert by_name["hmm"].x == ("2019-12-31", "2020-12-31")
    assert by_name["hmm"].y == ("expectancy", "expectancy")
    assert by_name["flow"].text == ("71.5",) and by_name["none"].text == ("n/a",)
    assert fig.layout.yaxis.categoryarray == ("expectancy", "robustness_v2")


def test_split_lines_show_mean_and_best_robustness_dsr_and_pbo() -> None:
    by_split = pl.DataFrame({"train_end": [date(2020, 12, 31), date(2019, 12, 31)],
                             "robustness_score_v2_mean": [40.0, 55.0], "dsr": [0.3, None],
                             "pbo": [0.6, 0.25]})
    fig = figures.split_lines(by_split, WINNERS)
    lines = {t.name: t for t in fig.data}
    assert lines["mean robustness v2"].x == ("2019-12-31", "2020-12-31")
    assert lines["mean robustness v2"].y == (55.0, 40.0)
    assert lines["best robustness v2"].y == (71.5, None)
    assert lines["DSR"].y == (None, 0.3) and lines["PBO"].y == (0.25, 0.6)
    assert sorted(s.y0 for s in fig.layout.shapes) == [0.5, 0.95]


def test_compare_bars_one_panel_per_metric_and_inf_profit_factor_written() -> None:
    table = pl.DataFrame({"grid_run_dir": ["/a/grid-1_single-flow_x", None],
                          "grid_run_id": ["g1", "g2"], "best_expectancy": [0.01, 0.002],
                          "best_profit_factor": [math.inf, 1.3],
                          "best_robustness_score_v2": [80.0, None], "best_dsr": [0.97, 0.4]})
    fig = figures.compare_bars(table)
    assert [t.name for t in fig.data] == ["best expectancy", "best profit factor",
                                          "best robustness v2", "DSR of the best"]
    assert fig.data[1].y == (None, 1.3) and fig.data[1].text == ("+inf", "1.3")
    assert fig.data[2].y == (80.0, None) and fig.data[0].x == ("grid-1_single-flow_x", "g2")
    assert fig.data[3].xaxis == "x4"


def test_eligibility_heatmap_slices_vol_off_and_the_shortest_history() -> None:
    rows = [(p, dv, vol, hist, p / 10 + dv / 1e7 + (0.5 if vol else 0) + hist / 1000)
            for p in (1.0, 5.0) for dv in (0.0, 1e6) for vol in (None, 8.0) for hist in (20, 60)]
    grid = pl.DataFrame(rows, schema=["min_price", "min_dollar_vol20", "max_vol_pct_input",
                                      "min_history_bars", "eligibility_rate"], orient="row")
    heat = figures.eligibility_heatmap(grid)
    cell = heat.data[0]
    assert cell.x == ("0", "1,000,000") and cell.y == ("1", "5")
    assert [pytest.approx(row) for row in _z(cell)] == [[0.12, 0.22], [0.52, 0.62]]
    assert "vol cap off" in heat.layout.title.text
    capped = figures.eligibility_heatmap(grid.filter(pl.col("max_vol_pct_input").is_not_null()))
    assert capped.data[0].z[0][0] == pytest.approx(0.62)  # price 1, dv 0, cap 8, history 20
    assert "vol cap ≤ 8" in capped.layout.title.text
    assert figures.eligibility_heatmap(grid.clear()) is None


def test_waterfall_bars_counts_and_shares() -> None:
    waterfall = {"candidate_signals_total": 200, "eligible_signals_total": 150,
                 "suppressed_signals_total": 50, "eligible_rate": 0.75,
                 "suppressed_rate": 0.25, "suppressed_by_price_count": 30,
                 "suppressed_by_price_share": 0.6, "suppressed_by_liquidity_count": 25,
                 "suppressed_by_liquidity_share": 0.5, "suppressed_by_vol_count": 0,
                 "suppressed_by_vol_share": 0.0, "suppressed_by_warmup_count": 5,
                 "suppressed_by_warmup_share": 0.1}
    bar = figures.waterfall_bars(waterfall).data[0]
    assert bar.y == (200, 150, 50, 30, 25, 0, 5)
    assert bar.text[0] == "200" and bar.text[1] == "150 (75.0%)" and bar.text[3] == "30 (60.0%)"


def test_score_bars_keep_table_order_and_colour_by_verdict() -> None:
    table = pl.DataFrame({"run_label": ["B", "A", "C"], "candidate_score": [80.0, 55.5, 0.0],
                          "realism_aware_verdict": ["TRADABLE", "TRADABLE", "NOT_TRADABLE"]})
    fig = figures.score_bars(table, "candidate_score", "realism_aware_verdict")
    bars = {t.name: t for t in fig.data}
    assert bars["TRADABLE"].y == ("B", "A") and bars["TRADABLE"].x == (80.0, 55.5)
    assert bars["NOT_TRADABLE"].x == (0.0,)
    assert fig.layout.yaxis.categoryarray == ("C", "A", "B")  # first row drawn on top


# --- pages ---------------------------------------------------------------------------------


def test_page_is_self_contained_and_renders_the_markdown() -> None:
    md = "# Grid\n\n| metric | value |\n|---|---|\n| dsr | 0.97 |\n\n<script>x()</script>\n"
    fig = figures.waterfall_bars({"candidate_signals_total": 3})
    text = page("T <1>", [Section("A", "note *here*", [fig, fig]), Section("B", "none")], md)
    _single_script_bundle(text)
    assert "<title>T &lt;1&gt;</title>" in text
    assert "<td>dsr</td>" in text and "<td>0.97</td>" in text and "<em>here</em>" in text
    assert "<script>x()</script>" not in text  # raw HTML in the Markdown is escaped
    assert 'id="figure-1"' in text and 'id="figure-2"' in text
    bare = page("T", [Section("A", "nothing")], None)
    assert get_plotlyjs()[:40] not in bare and "Markdown report not available" in bare


def test_every_page_says_not_available_for_an_empty_folder(tmp_path: Path) -> None:
    writers = {"grid_report": pages.grid_html, "wf_grid_report": pages.wf_grid_html,
               "grid_compare_report": pages.grid_compare_html,
               "execution_calibration_report": pages.calibration_html,
               "execution_realism_report": pages.realism_html,
               "hybrid_eval_report": pages.hybrid_eval_html}
    for name, write in writers.items():
        out = write(tmp_path)
        assert out == tmp_path / f"{name}.html"
        text = out.read_text()
        assert "not available" in text and "Plotly.newPlot" not in text, name



# --- whole pages on folders made by the real producers -------------------------------------


DIMS = GridDimensions(hold_bars=(3, 10), fee_bps_per_side=(0.0, 10.0),
                      exit_mode=("horizon", "horizon_or_state"))


@pytest.fixture(scope="module")
def grid_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("grid") / "grid-html"
    return run_grid(load_settings(), [GridSource(_inputs())], DIMS, GridOptions(tag="t"),
                    folder=folder).output_dir


def test_grid_page_draws_the_grid_folder(grid_folder: Path) -> None:
    metrics = pl.read_parquet(grid_folder / "grid_metrics_table.parquet")
    summary = json.loads((grid_folder / "grid_summary.json").read_text())
    text = (grid_folder / "grid_report.html").read_text()  # written by the grid run itself
    _single_script_bundle(text)
    assert f"Sensitivity grid — {summary['grid_run_id']}</title>" in text
    assert f"fluke risk <strong>{summary['overfitting']['flow']['fluke_risk']}</strong>" in text
    assert "<table>" in text and "Report text" in text  # the Markdown report, rendered
    # equity/drawdown: first line = best robustness_score_v2, from the stored returns
    best = metrics.sort("robustness_score_v2", "combo_index", descending=[True, False]).row(
        0, named=True)
    returns = (pl.read_parquet(grid_folder / "grid_period_returns.parquet")
               .filter(pl.col("combo_id") == best["combo_id"]).sort("trade_date"))
    equity = np.cumsum(returns["period_return"].to_numpy())
    drawdown = equity - np.maximum.accumulate(np.maximum(equity, 0.0))
    traces = _figure_data(text, 1)
    assert traces[0]["name"].startswith(f"top 1: flow #{best['combo_index']} ")
    assert traces[0]["y"] == pytest.approx(equity.tolist())
    assert traces[1]["y"] == pytest.approx(drawdown.tolist())
    assert traces[0]["x"] == [d.isoformat() for d in returns["trade_date"]]
    assert len(traces) == 12  # top 5 + worst, equity and drawdown each
    # default heatmap: hold_bars (x) × fee (y), each cell the mean over exit modes
    heat = _figure_data(text, 2)[0]
    for i, fee in enumerate((0.0, 10.0)):
        for j, hold in enumerate((3, 10)):
            cell = metrics.filter(pl.col("fee_bps_per_side") == fee, pl.col("hold_bars") == hold)
            assert heat["z"][i][j] == pytest.approx(cell["robustness_score_v2"].mean())
    cost = _figure_data(text, 3)
    assert [t["name"] for t in cost] == ["hold 3", "hold 10"]
    for trace, hold in zip(cost, (3, 10), strict=True):
        assert trace["x"] == [0.0, 10.0]  # total_cost_bps = fee + slippage per side
        assert trace["y"] == pytest.approx([
            metrics.filter(pl.col("hold_bars") == hold, pl.col("total_cost_bps") == c)
            ["expectancy"].mean() for c in (0.0, 10.0)])
    # re-rendered with chosen dimensions
    again = pages.grid_html(grid_folder, heatmap_dims=("exit_mode", "hold_bars")).read_text()
    assert _figure_data(again, 2)[0]["x"] == ["horizon", "horizon_or_state"]
    with pytest.raises(ValueError, match="not in the metrics table"):
        pages.grid_html(grid_folder, heatmap_dims=("hold_bars", "colour"))


def test_calibration_page_draws_the_calibration_folder(tmp_path: Path) -> None:
    settings = load_settings()
    summary = calibrate(settings, _inputs(), backtest_options(settings, exec_profile="lite"),
                        out_dir=tmp_path / "calib")
    text = pages.calibration_html(tmp_path / "calib").read_text()
    _single_script_bundle(text)
    assert f"— {summary['run_id']}</title>" in text
    wf = summary["waterfall"]
    bars = _figure_data(text, 1)[0]
    assert bars["y"][:3] == [wf["candidate_signals_total"], wf["eligible_signals_total"],
                             wf["suppressed_signals_total"]]
    grid = pl.read_csv(tmp_path / "calib" / "execution_calibration_grid.csv")
    base = grid.filter(pl.col("max_vol_pct_input").is_null(),
                       pl.col("min_history_bars") == grid["min_history_bars"].min())
    heat = _figure_data(text, 2)[0]
    prices = sorted(base["min_price"].unique())
    dollar = sorted(base["min_dollar_vol20"].unique())
    assert len(heat["z"]) == len(prices) and len(heat["z"][0]) == len(dollar)
    for row in base.iter_rows(named=True):
        i, j = prices.index(row["min_price"]), dollar.index(row["min_dollar_vol20"])
        assert heat["z"][i][j] == pytest.approx(row["eligibility_rate"])


def test_grid_page_degrades_to_sentences(grid_folder: Path, tmp_path: Path) -> None:
    """A grid without its return series, then with no successful combo: sentences, no crash."""
    folder = Path(shutil.copytree(grid_folder, tmp_path / "grid"))
    (folder / "grid_period_returns.parquet").unlink()
    text = pages.grid_html(folder).read_text()
    assert "<code>grid_period_returns.parquet</code> not available" in text
    assert "figure-1" in text  # the heatmap still drawn
    for suffix in ("parquet", "csv"):
        (folder / f"grid_metrics_table.{suffix}").unlink()
    pl.read_parquet(grid_folder / "grid_metrics_table.parquet").clear().write_parquet(
        folder / "grid_metrics_table.parquet")
    text = pages.grid_html(folder).read_text()
    assert text.count("No successful combo in this grid") == 3 and "Plotly.newPlot" not in text


def test_compare_page_draws_the_compare_folder(grid_folder: Path, tmp_path: Path) -> None:
    settings = load_settings()
    lite = run_grid(settings, [GridSource(_inputs())], DIMS,
                    GridOptions(tag="lite", base=backtest_options(settings, exec_profile="lite")),
                    folder=tmp_path / "lite").output_dir
    summary = compare_grids([grid_folder, lite], None, "expectancy", tmp_path / "cmp")
    folder = Path(summary["output_dir"])
    text = pages.grid_compare_html(folder).read_text()
    _single_script_bundle(text)
    assert f"— {summary['compare_id']}</title>" in text
    table = pl.read_csv(folder / "grid_compare_table.csv")
    traces = {t["name"]: t for t in _figure_data(text, 1)}
    assert traces["best expectancy"]["x"] == [Path(d).name for d in table["grid_run_dir"]]
    for name, column in (("best expectancy", "best_expectancy"),
                         ("best robustness v2", "best_robustness_score_v2"),
                         ("DSR of the best", "best_dsr")):
        assert traces[name]["y"] == pytest.approx(table[column].to_list()), name


def test_wf_grid_page_draws_the_walk_forward_folder(tmp_path: Path) -> None:
    """Two real split grids (first 150 / all 250 days) and a split failed upstream,
    aggregated by the walk-forward writer, then drawn."""
    settings, base = load_settings(), _inputs()
    root = tmp_path / "wfgrid-html"
    dirs = {}
    for train_end, last in (("2015-05-31", date(2015, 5, 31)), ("2015-12-31", date(2015, 12, 31))):
        rows = replace(base, rows=base.rows.filter(pl.col("trade_date") <= last),
                       identity={"case": "wf-html", "train_end": train_end})
        dirs[train_end] = run_grid(settings, [GridSource(rows)], DIMS, GridOptions(tag="s"),
                                   folder=root / "splits" / train_end).output_dir
    by_split = [{"train_end": t, "status": "SUCCESS", "grid_run_dir": str(d), "error": None}
                for t, d in dirs.items()]
    by_split.append({"train_end": "2016-12-31", "status": "FAILED_UPSTREAM",
                     "grid_run_dir": None, "error": "upstream"})
    summary = wf_aggregates.write_wf_aggregates(root, by_split, dirs, {
        "wf_grid_id": "wfgrid-html", "sources": ["flow"], "tag": "t",
        "selected_train_ends": [*dirs, "2016-12-31"], "min_successful_splits": 1})
    text = pages.wf_grid_html(root).read_text()
    _single_script_bundle(text)
    assert "Walk-forward grid — wfgrid-html</title>" in text
    winners = pl.read_csv(root / "wf_grid_winner_stability.csv")
    markers = {t["name"]: list(zip(t["x"], t["y"], strict=True)) for t in _figure_data(text, 1)}
    expected = {}  # event_returns_only: no drawdown, so no max_drawdown winner ("none")
    for row in winners.iter_rows(named=True):
        expected.setdefault(row["winner_source_type"] or "none", []).append(
            (str(row["train_end"]), row["metric"]))
    assert markers == expected and set(markers) == {"flow", "none"}
    lines = {t["name"]: t for t in _figure_data(text, 2)}
    ends = ["2015-05-31", "2015-12-31", "2016-12-31"]
    assert lines["DSR"]["x"] == ends
    assert lines["DSR"]["y"] == pytest.approx(
        [summary["overfitting_by_split"][0]["dsr"], summary["overfitting_by_split"][1]["dsr"],
         None])
    by = pl.read_parquet(root / "wf_grid_by_split.parquet").sort("train_end")
    assert lines["mean robustness v2"]["y"] == pytest.approx(
        by["robustness_score_v2_mean"].to_list())
    best = winners.filter(pl.col("metric") == "robustness_v2").sort("train_end")
    assert lines["best robustness v2"]["y"] == pytest.approx(best["winner_value"].to_list())


lake_fixture = pytest.fixture(scope="module", name="lake")(build_lake)


@pytest.mark.parametrize(("write", "stem", "score", "verdict"), [
    (realism.execution_realism_report, "execution_realism", "candidate_score",
     "realism_aware_verdict"),
    (hybrid_eval.hybrid_eval_report, "hybrid_eval", "single_candidate_score",
     "recommendation_label")])
def test_decision_pages_draw_their_report_folders(lake, tmp_path, write, stem, score,
                                                  verdict) -> None:
    """The report builders render their own page; its bars are the table's scores."""
    settings, _ = lake
    summary = write(settings, {}, tmp_path)
    folder = Path(summary["output_dir"])
    text = (folder / f"{stem}_report.html").read_text()
    _single_script_bundle(text)
    assert f"— {summary['run_id']}</title>" in text and "Report text" in text
    table = pl.read_csv(folder / f"{stem}_table.csv", infer_schema_length=None)
    drawn = {(label, value, t["name"]) for t in _figure_data(text, 1)
             for label, value in zip(t["y"], t["x"], strict=True)}
    assert drawn == {(r["run_label"], r[score], r[verdict] or "n/a")
                     for r in table.iter_rows(named=True)}
    again = {"hybrid_eval": pages.hybrid_eval_html, "execution_realism": pages.realism_html}
    assert again[stem](folder).read_text() == text  # re-rendered from the folder alone
