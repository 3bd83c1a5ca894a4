"""Viewer helpers: pure transforms and the chart on in-memory frames; the lake reads on what
``mf demo``'s assets wrote (conftest), never on files written here."""

import datetime as dt
import json
import shutil

import polars as pl
import pytest

from mf_pipeline.lib import lake
from mf_pipeline.lib import registry as lake_registry
from mf_pipeline.lib.partitions import shard_of
from mf_pipeline.lib.settings import load_settings
from viewer import chart, core, data, registry, sources

UNIVERSE = frozenset({"AAPL.US", "MSFT.US", "BRK.B", "BF.A", "BF.B", "SPY"})
D0 = dt.date(2024, 1, 1)


def days(n: int) -> pl.Series:
    return pl.Series("trade_date", [D0 + dt.timedelta(days=i) for i in range(n)])


# ---------------------------------------------------------------- ticker and window


@pytest.mark.parametrize(
    ("typed", "expected", "changed"),
    [
        ("aapl", "AAPL.US", True),
        ("  msft.us ", "MSFT.US", False),
        ("SPY.US", "SPY", True),
        ("brk", "BRK.B", True),
        ("bf", "BF", False),  # two symbols start with BF.: ambiguous, unchanged
        ("nope", "NOPE", False),
        ("", "", False),
        (None, "", False),
    ],
)
def test_normalize_ticker(typed, expected, changed):
    ticker, note = core.normalize_ticker(typed, UNIVERSE)
    assert ticker == expected
    assert (note is not None) == changed
    if changed:
        assert expected in note


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        # APPL~APP 2*3/7=.857 > APPL~AAPL 2*3/8=.75 (stems); APPL~AAL .571 < .6: left out
        ("APPL", ["APP.US", "AAPL.US"]),
        ("msft", ["MSFT.US"]),  # stems equal: 1.0
        ("AMZN.UK", ["AMZN.US"]),  # another exchange suffix, same stem
        ("SPYY", ["SPY"]),  # 2*3/7
        ("ZZZZ", []),
        ("", []),
    ],
)
def test_closest_tickers(typed, expected):
    universe = ["AAPL.US", "AAL.US", "APP.US", "MSFT.US", "AMZN.US", "SPY", "BRK.B"]
    assert core.closest_tickers(typed, universe) == expected


def test_closest_tickers_keeps_the_best_n_with_ties_alphabetical():
    universe = ["ABD", "ABC", "ABE", "XYZ"]  # each ABx~ABF = 2*2/6 < .6; ~AB = 2*2/5 = .8
    assert core.closest_tickers("ab", universe, n=2) == ["ABC", "ABD"]


def test_default_window_is_the_last_year_or_everything():
    assert core.default_window(dt.date(2000, 1, 1), dt.date(2020, 6, 30)) == (
        dt.date(2019, 7, 1), dt.date(2020, 6, 30))
    assert core.default_window(dt.date(2020, 3, 1), dt.date(2020, 6, 30)) == (
        dt.date(2020, 3, 1), dt.date(2020, 6, 30))


def test_clip_window_is_inclusive():
    frame = pl.DataFrame({"trade_date": days(10)})
    out = core.clip_window(frame, D0 + dt.timedelta(days=2), D0 + dt.timedelta(days=4))
    assert out.height == 3


# ---------------------------------------------------------------- downsampling


def ohlcv(n: int) -> pl.DataFrame:
    i = pl.int_range(0, n, eager=True).cast(pl.Float64)
    return pl.DataFrame({"trade_date": days(n), "open": i, "high": i + 10, "low": i - 10,
                         "close": i + 1, "volume": pl.Series([1.0] * n)})


def test_downsample_keeps_small_frames_untouched():
    frame = ohlcv(100)
    out, factor = core.downsample_ohlc(frame, 100)
    assert factor == 1 and out.equals(frame)


def test_downsample_buckets_consecutive_bars_into_candles():
    out, factor = core.downsample_ohlc(ohlcv(10_000), 1500)
    assert factor == 7
    assert out.height == 1429 <= 1500
    first = out.row(0, named=True)
    assert first["trade_date"] == D0
    assert (first["open"], first["high"], first["low"], first["close"]) == (0, 16, -10, 7)
    assert first["volume"] == 7
    assert out["volume"].sum() == 10_000  # every bar is in exactly one candle


# ---------------------------------------------------------------- HMM display


def test_mode_smoothing_is_trailing_and_breaks_ties_by_recency():
    states = pl.Series([1, 1, 2, 2, None, 3, 3, 3, 1])
    assert core.smooth_states(states, 3, "mode").to_list() == [1, 1, 1, 2, 2, 3, 3, 3, 3]


def test_median_smoothing_rounds_half_to_even():
    states = pl.Series([1, 1, 2, 2, None, 3, 3, 3, 1])
    assert core.smooth_states(states, 3, "median").to_list() == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert core.smooth_states(pl.Series([1, 4, 3]), 3, "median").to_list() == [1, 2, 3]


def test_smoothing_of_an_all_null_window_is_null_and_small_windows_are_raised():
    states = pl.Series([None, None, 2, None, None, None], dtype=pl.Int64)
    assert core.smooth_states(states, 3, "mode").to_list() == [None, None, 2, 2, 2, None]
    assert core.smooth_states(states, 1, "mode").equals(core.smooth_states(states, 3, "mode"))
    assert core.smooth_states(pl.Series([1.0, float("nan"), 1.0]), 3).to_list() == [1, 1, 1]


@pytest.mark.parametrize("method", core.SMOOTHING_METHODS)
def test_smoothing_reads_no_future_bar(method):
    base = pl.Series([0, 1, 1, 2, 0, 2, 2, 1, 0, 0, 3, 3, 1, 2, 2, 0] * 4)
    cut = 30
    changed = pl.concat([base.head(cut), base.tail(base.len() - cut).reverse()])
    a = core.smooth_states(base, 5, method)
    b = core.smooth_states(changed, 5, method)
    assert a.head(cut).equals(b.head(cut))


def test_past_state_scores_read_only_rows_before_the_window():
    frame = pl.DataFrame({
        "trade_date": days(8),
        "st": [0, 1, 0, 1, 0, 1, 0, 1],
        "ret_1d": [0.01, -0.02, 0.03, -0.01, 9.0, -9.0, 9.0, -9.0],
    })
    start = D0 + dt.timedelta(days=4)
    scores = core.past_state_scores(frame, "st", "ret_1d", start)
    assert scores.rows() == [(0, pytest.approx(0.02), 2), (1, pytest.approx(-0.015), 2)]
    flipped = frame.with_columns(
        pl.when(pl.col("trade_date") >= start).then(-pl.col("ret_1d")).otherwise("ret_1d")
        .alias("ret_1d"))
    assert core.past_state_scores(flipped, "st", "ret_1d", start).equals(scores)
    assert core.past_state_scores(frame, "missing", "ret_1d", start).is_empty()


def test_rank_states_for_both_schemes():
    scores = pl.DataFrame({"state": [0, 1, 2, 3], "score": [0.1, -0.3, 0.5, float("nan")]})
    assert core.rank_states(scores, "LONG_NEUTRAL_SHORT", 1, 1) == ([2], [1])
    assert core.rank_states(scores, "LONG_NEUTRAL_SHORT", 2, 2) == ([2, 0], [1])
    assert core.rank_states(scores, "LONG_OTHER", 2, 5) == ([2, 0], [])
    with pytest.raises(ValueError):
        core.rank_states(scores, "BOTH", 1, 1)


def test_group_states_codes_and_labels():
    states = pl.Series([0, 1, 2, None])
    code, label = core.group_states(states, [2], [1], "LONG_NEUTRAL_SHORT")
    assert code.to_list() == [0, -1, 1, None]
    assert label.to_list() == ["NEUTRAL", "SHORT", "LONG", "NA"]
    code, label = core.group_states(states, [2], [1], "LONG_OTHER")
    assert code.to_list() == [0, 0, 1, None]
    assert label.to_list() == ["OTHER", "OTHER", "LONG", "NA"]


def hmm_frame() -> pl.DataFrame:
    return pl.DataFrame({"trade_date": days(9), "hmm_state": [1, 1, 2, 2, None, 3, 3, 3, 1]})


@pytest.mark.parametrize("mode", core.HMM_MODES)
def test_apply_hmm_display_band_column_per_mode(mode):
    scores = pl.DataFrame({"state": [1, 2, 3], "score": [0.0, -1.0, 1.0]})
    opts = core.HmmDisplay(mode=mode, state_col="hmm_state", window=3)
    result = core.apply_hmm_display(hmm_frame(), opts, scores, "model")
    expected = {"RAW": "hmm_state", "SMOOTHED": "hmm_state_smoothed",
                "GROUPED": "hmm_group_code", "SMOOTHED+GROUPED": "hmm_group_code"}[mode]
    assert result.band_col == expected == result.summary["band_col"]
    assert result.frame["hmm_display"].equals(result.frame[expected].alias("hmm_display"),
                                              check_dtypes=False)
    assert result.grouped == ("GROUPED" in mode)
    if mode == "SMOOTHED+GROUPED":  # grouping applies to the smoothed path
        assert result.frame["hmm_group_code"].to_list() == [0, 0, 0, -1, -1, 1, 1, 1, 1]
        assert result.summary["long_states"] == [3] and result.summary["short_states"] == [2]


def test_grouping_without_scores_falls_back_with_a_warning():
    opts = core.HmmDisplay(mode="GROUPED", state_col="hmm_state")
    result = core.apply_hmm_display(hmm_frame(), opts, None)
    assert not result.grouped and result.band_col == "hmm_state"
    assert "unavailable" in result.warnings[0]
    missing = core.apply_hmm_display(hmm_frame(), core.HmmDisplay(state_col="nope"))
    assert missing.band_col is None and missing.warnings


# ---------------------------------------------------------------- bands


def test_segment_runs_merge_equal_values_and_keep_null_gaps():
    segs = core.segment_runs(days(7), pl.Series([2, 2, None, None, 2, 4, 4]))
    assert segs["value"].to_list() == [2, None, 2, 4]
    assert segs["bars"].to_list() == [2, 2, 1, 2]
    assert segs["start"].to_list() == [D0 + dt.timedelta(days=d) for d in (0, 2, 4, 5)]
    # each segment ends where the next starts; the last one a day after its last bar
    assert segs["end"].to_list() == [D0 + dt.timedelta(days=d) for d in (2, 4, 5, 7)]
    assert segs["last"][-1] == D0 + dt.timedelta(days=6)


def test_segment_runs_of_nothing_and_of_one_run():
    assert core.segment_runs(days(0), pl.Series([], dtype=pl.Int64)).is_empty()
    assert core.segment_runs(days(5), pl.Series(["A"] * 5)).height == 1


def test_band_colors_follow_the_spec_palettes():
    flow = chart.band_colors(pl.Series([0, 2, 4, 7], dtype=pl.Int8), registry.FLOW_BAND)
    assert flow.to_list() == [registry.GREY, registry.GREEN, "#e53935", None]
    policy = registry.OPTIONAL_BY_NAME["policy"].bands[0]
    assert chart.band_colors(pl.Series(["allow", "BLOCK", None]), policy).to_list() == [
        registry.GREEN, registry.RED, None]
    hmm = chart.band_colors(pl.Series([0, 9]), registry.HMM_BAND)
    assert hmm.to_list() == [registry.STATE_PALETTE[0], registry.STATE_PALETTE[1]]


def test_band_legend_names_each_painted_state_with_the_strip_colour():
    frame = pl.DataFrame({"trade_date": days(7),
                          "flow_state_code": pl.Series([4, 4, 0, None, 7, 0, 2], dtype=pl.Int8)})
    segments = chart.band_segments(frame, registry.FLOW_BAND)
    # state order; the null run and state 7 (no colour) are not in the legend
    assert chart.band_legend(segments) == [
        ("S0_QUIET", registry.GREY),
        ("S2_PERSISTENT_DEMAND", registry.GREEN),
        ("S4_PERSISTENT_SUPPLY", "#e53935"),
    ]
    assert segments["label"].to_list() == [
        "S4_PERSISTENT_SUPPLY", "S0_QUIET", "NA", "7", "S0_QUIET", "S2_PERSISTENT_DEMAND"]
    clusters = pl.DataFrame({"trade_date": days(4), "cluster_label": [3, 1, 3, 11]})
    band = registry.OPTIONAL_BY_NAME["cluster"].bands[0]
    palette = registry.STATE_PALETTE
    assert chart.band_legend(chart.band_segments(clusters, band)) == [
        ("1", palette[1]), ("3", palette[3]), ("11", palette[11 % len(palette)])]


def test_the_strip_paints_each_run_in_its_legend_colour():
    frame = chart_frame()
    segments = chart.band_segments(frame, registry.FLOW_BAND)
    trace = chart.band_trace(segments, registry.FLOW_BAND, 5)
    legend = dict(chart.band_legend(segments))
    # the colour scale maps code k to the k-th colour of the trace's (sorted) colours
    colours = [trace.colorscale[2 * int(k)][1] for k in trace.z[0]]
    assert colours == [legend[label] for label in trace.text[0]]
    assert (trace.xaxis, trace.yaxis) == ("x5", "y5")


# ---------------------------------------------------------------- chart


def chart_frame(n: int = 60) -> pl.DataFrame:
    base = ohlcv(n)
    i = pl.int_range(0, n, eager=True)
    return base.with_columns(
        ((i % 7 - 3) / 10).alias("tmf_21"),
        ((i % 5 - 2) / 10).alias("tti_proxy_v1_21"),
        (i % 5).cast(pl.Int8).alias("flow_state_code"),
        ((i // 4) % 3).alias("hmm_display"),
        (i % 7 == 3).alias("ev_tmf_zero_up"),
    )


def test_grid_stacks_fixed_band_strips_under_the_panels():
    # 850 px - 100 px margins = 750 px of panels, one 22 px gap: 728 px split 0.62 : 0.20;
    # two bands add 2 x (26 + 18) = 88 px, so the plot area is 838 px.
    layout = chart.grid(["price", "tmf"], 2, 850)
    assert layout.height == 938
    price = 728 * 0.62 / 0.82
    expected = {
        "price": (838 - price, 838),
        "tmf": (838 - price - 22 - 728 * 0.20 / 0.82, 838 - price - 22),
        "band0": (88 - 26 - 18, 88 - 26),
        "band1": (0, 18),
    }
    for row, (lo, hi) in expected.items():
        assert layout.domains[row] == (pytest.approx(lo / 838, abs=1e-6),
                                       pytest.approx(hi / 838, abs=1e-6)), row
    assert chart.grid(["price"], 0, 850) == chart.Grid(850, {"price": (0.0, 1.0)})


def test_bands_are_strips_below_the_candles_each_with_its_legend():
    frame = chart_frame()
    fig = chart.build_figure(frame, frame, [registry.FLOW_BAND, registry.HMM_BAND],
                             registry.EVENT_MARKERS, chart.ChartOptions())
    layout = fig.layout.to_plotly_json()
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert [(t.name, t.xaxis, t.yaxis) for t in heatmaps] == [
        ("Flow state", "x5", "y5"), ("HMM state", "x6", "y6")]
    lowest_panel = min(layout[a]["domain"][0] for a in ("yaxis", "yaxis2", "yaxis3"))
    flow, hmm = layout["yaxis5"]["domain"], layout["yaxis6"]["domain"]
    assert hmm[1] < flow[0] < flow[1] < lowest_panel  # stacked, under every panel
    for axis in ("xaxis5", "xaxis6"):
        assert layout[axis]["matches"] == "x"  # one date axis for panels and strips
    # dates are printed once, under the last strip
    shown = [a for a in ("xaxis", "xaxis2", "xaxis3", "xaxis5", "xaxis6")
             if layout[a]["showticklabels"]]
    assert shown == ["xaxis6"]
    # each band has its legend (title + one swatch per state), just above its strip
    assert layout["legend2"]["title"]["text"] == "<b>Flow state</b>"
    assert layout["legend2"]["y"] == flow[1] and layout["legend3"]["y"] == hmm[1]
    swatches = [(t.legend, t.name, t.marker.color) for t in fig.data if t.legend]
    assert swatches == [
        ("legend2", label, registry.FLOW_COLORS[code])
        for code, label in registry.FLOW_LABELS.items()
    ] + [("legend3", str(state), registry.STATE_PALETTE[state]) for state in (0, 1, 2)]
    assert fig.layout.height == 850 + 2 * (chart.BAND_LEGEND_PX + chart.BAND_PX)


def test_figure_has_candles_bands_volume_and_the_tmf_panel():
    frame = chart_frame()
    fig = chart.build_figure(frame, frame, [registry.FLOW_BAND, registry.HMM_BAND],
                             registry.EVENT_MARKERS, chart.ChartOptions(annotation="HMM: RAW"))
    types = [t.type for t in fig.data]
    assert types.count("heatmap") == 2 and "candlestick" in types and "bar" in types
    names = {t.name for t in fig.data}
    assert {"TMF", "TTI proxy", "TMF zero up"} <= names
    assert fig.layout.yaxis3.title.text == "TMF / TTI"
    assert fig.layout.yaxis.title.text == "Price"
    flow = next(t for t in fig.data if t.name == "Flow state")
    segments = core.segment_runs(frame["trade_date"], frame["flow_state_code"]).height
    assert len(flow.z[0]) == segments and len(flow.x) == segments + 1
    levels = sorted(s.y0 for s in fig.layout.shapes)
    assert levels == [-0.3, -0.2, 0.0, 0.2, 0.3]


def test_figure_without_optional_panels_and_with_overlaid_volume():
    frame = chart_frame().drop("tmf_21", "tti_proxy_v1_21")
    options = chart.ChartOptions(volume_mode="overlay", scale_pct=True)
    fig = chart.build_figure(frame, frame, [], registry.EVENT_MARKERS, options)
    assert [t.type for t in fig.data] == ["candlestick", "bar"]
    assert fig.layout.yaxis4.overlaying == "y" and "yaxis3" not in fig.layout.to_plotly_json()
    assert fig.layout.yaxis.domain == (0.0, 1.0) and fig.layout.xaxis.showticklabels


def test_markers_skip_layers_whose_columns_are_missing():
    frame = chart_frame()
    for spec in registry.OPTIONAL_BY_NAME["signals"].markers:
        assert chart.marker_trace(frame, spec, 1.0) is None


# ---------------------------------------------------------------- registry and reads


def test_registry_layers_draw_only_declared_columns():
    price = {"open", "high", "low", "close", "volume"}
    for layer in registry.OPTIONAL_LAYERS:
        assert set(layer.required) <= set(layer.columns)
        for spec in layer.markers:
            used = {*spec.when.meta.root_names(), spec.anchor, spec.text} - {None}
            assert used <= set(layer.columns) | price, layer.name
        for band in layer.bands:
            assert band.column in layer.columns or band.column == "hmm_display"


def test_the_viewer_reads_the_registry_layers_in_their_order():
    assert set(registry.LAKE_COLUMNS) <= set(lake_registry.PER_TICKER)
    assert set(data.READ_LAYERS) == set(registry.LAKE_COLUMNS)
    assert data.READ_LAYERS[0] == "bronze"  # the join base
    assert list(data.READ_LAYERS) == sorted(data.READ_LAYERS, key=lake_registry.PER_TICKER.index)
    assert set(lake_registry.STATE_BANDS) <= set(registry.OPTIONAL_BY_NAME)


def test_state_bands_are_read_where_the_research_assets_wrote_them(demo_lake, demo_settings):
    paths = sources.optional_layer_paths(demo_settings)
    for name in lake_registry.STATE_BANDS:
        assert paths[name] == lake_registry.state_band_root(demo_settings, name)
    td = data.load_ticker(demo_settings, demo_lake.banded)
    assert td.available["hmm"] and td.available["cluster"]
    assert td.frame.height == demo_lake.bars[demo_lake.banded]
    for column in ("hmm_state", "hmm_state_filtered", "cluster_label"):
        assert td.frame[column].drop_nulls().n_unique() >= 2, column


def test_load_ticker_joins_what_exists_and_says_what_is_missing(demo_lake, demo_settings):
    ticker = demo_lake.plain
    lake.remove_symbol_files(lake_registry.LAYERS["events"].root(demo_settings), [ticker])
    td = data.load_ticker(demo_settings, ticker)
    assert td.frame.height == demo_lake.bars[ticker]
    assert {"close", "ret_1d", "tmf_21"} <= set(td.frame.columns)
    assert td.available["bronze"] and td.available["indicators"]
    assert not td.available["hmm"] and not td.available["cluster"] and td.state_scores is None
    assert not data.load_ticker(demo_settings, "ZZZ.US").has_bars
    # each unavailable layer names where it was looked for (the switch's tooltip shows it):
    # the ticker's shard folder, the one its Bronze rows are in
    shard = bronze_shard(demo_settings, ticker)
    events = lake_registry.LAYERS["events"].root(demo_settings)
    assert not td.available["events"]
    assert td.notes["events"] == (f"`events` is not materialized for {ticker}: no rows in "
                                  f"`{events}/shard={shard}`")
    hmm = lake_registry.state_band_root(demo_settings, "hmm")
    assert lake.symbol_tickers(hmm)  # the demo wrote other tickers' HMM rows, not this one's
    assert ticker not in lake.symbol_tickers(hmm)
    assert td.notes["hmm"] == f"HMM states: no rows in `{hmm}/shard={shard}`"
    policy = demo_settings.gold_root / "overlay_policy_by_symbol"
    assert td.notes["policy"] == f"Overlay class ALLOW/WATCH/BLOCK: nothing at `{policy}`"


def test_universe_is_the_symbol_master_else_the_bronze_folders(demo_lake, demo_settings):
    assert data.load_universe(demo_settings) == demo_lake.universe
    master, _csv = data.symbol_master_paths(demo_settings.bronze_root)
    master.unlink()
    folders = data.load_universe(demo_settings)
    assert folders == sorted(demo_lake.bars) and set(folders) <= set(demo_lake.universe)


def bronze_shard(settings, ticker: str) -> str:
    """The shard folder holding ``ticker``'s Bronze rows, read from the layer's snapshot."""
    [shard] = lake.snapshot(lake_registry.LAYERS["bronze"].root(settings)).of(
        [ticker]).index["shard"].unique().to_list()
    assert shard == shard_of(ticker)
    return shard


def test_file_ref_changes_when_the_file_is_rematerialized(demo_lake, demo_settings):
    """The page caches reads by FileRef: the same while nothing is committed, another once the
    ticker's rows are written again (a new commit of its table)."""
    ticker = demo_lake.banded
    root = lake_registry.LAYERS["bronze"].root(demo_settings)
    before = data.lake_file(demo_settings, "bronze", ticker)
    assert before == data.lake_file(demo_settings, "bronze", ticker)  # nothing committed
    assert (before.path, before.size) == (str(root), demo_lake.bars[ticker])
    rows = lake.read_tickers(root, [ticker])
    lake.write_symbol_files(rows.head(rows.height - 1), root)  # its last bar is gone
    after = data.lake_file(demo_settings, "bronze", ticker)
    assert after.path == before.path and after.mtime_ns != before.mtime_ns
    assert after.size == demo_lake.bars[ticker] - 1
    fresh = data.read(data.read_parquet_columns, after, ("trade_date",), ticker)
    assert fresh["trade_date"].to_list() == rows["trade_date"].to_list()[:-1]


def test_a_configured_long_file_replaces_the_per_ticker_folder(demo_lake, demo_settings,
                                                               monkeypatch):
    """``overlay_viewer.optional_layers.hmm`` pointing at the hmm_states asset's split table
    (one long file, all tickers) instead of its per-ticker files."""
    ticker = demo_lake.banded
    expected = data.load_ticker(demo_settings, ticker).frame
    [long_file] = (demo_settings.gold_root / "research").rglob("split=full/hmm_states.parquet")
    shutil.rmtree(lake_registry.state_band_root(demo_settings, "hmm"))
    assert not data.load_ticker(demo_settings, ticker).available["hmm"]
    monkeypatch.setenv("MF_PIPELINE_OVERLAY_VIEWER",
                       json.dumps({"optional_layers": {"hmm": str(long_file)}}))
    settings = load_settings()
    assert sources.optional_layer_paths(settings)["hmm"] == long_file
    td = data.load_ticker(settings, ticker)
    assert td.available["hmm"] and td.files["hmm"].path == str(long_file)
    columns = ["trade_date", "hmm_state", "hmm_state_filtered"]
    assert td.frame.select(columns).equals(expected.select(columns))
