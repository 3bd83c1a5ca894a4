"""Append fast path: resuming a layer from its carry gives exactly what a full rebuild gives.

For a history H split into a prefix P and a suffix S, ``step(S, carry of P)`` must return
the rows of S bit-identical to ``step(H)`` (nulls and NaN included) and the carry of H, in
every layer, chained silver → indicators → events → features with float32 storage between
layers as the derived step stores them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from mf_pipeline.lib.layers import manifest as mf
from mf_pipeline.lib.layers.bronze.build import build_bronze
from mf_pipeline.lib.layers.bronze.validate import ValidationThresholds
from mf_pipeline.lib.layers.carry import Carry, merge_carries, tail_rows
from mf_pipeline.lib.layers.events import EventParams, events_step
from mf_pipeline.lib.layers.features import FeatureParams, features_step
from mf_pipeline.lib.layers.indicators import indicators_step
from mf_pipeline.lib.layers.silver import silver_step
from mf_pipeline.lib.sample import generate_universe
from mf_pipeline_tests.unit.test_silver import make_bronze

EPS = 1e-12
LAYERS = ("silver", "indicators", "events", "features")
Carries = dict[str, Carry | None]
NO_CARRY: Carries = dict.fromkeys(LAYERS)


def stored(frame: pl.DataFrame) -> pl.DataFrame:
    """What the next layer reads: Float64 cast to float32 for storage, widened back."""
    return frame.with_columns(pl.col(pl.Float64).cast(pl.Float32)).with_columns(
        pl.col(pl.Float32).cast(pl.Float64)
    )


def chain(
    bronze: pl.DataFrame,
    carries: Carries,
    ev: EventParams | None = None,
    fp: FeatureParams | None = None,
) -> tuple[dict[str, pl.DataFrame], dict[str, Carry]]:
    """All four steps on new Bronze bars, each continuing from its own carry."""
    ev, fp = ev or EventParams(), fp or FeatureParams()
    silver, c_s = silver_step(bronze, EPS, carries["silver"])
    ind, c_i = indicators_step(stored(silver), 21, 21, EPS, carries["indicators"])
    events, c_e = events_step(stored(ind), ev, carries["events"])
    feats, c_f = features_step(stored(ind), stored(events), fp, carries["features"])
    outs = {"silver": silver, "indicators": ind, "events": events, "features": feats}
    return outs, {"silver": c_s, "indicators": c_i, "events": c_e, "features": c_f}


def messy_bronze(lengths: list[int], seed: int, null_rate: float = 0.04) -> pl.DataFrame:
    """Random tickers with null and NaN prices/volumes, a long null gap and missing dates."""
    rng = np.random.default_rng(seed)
    df = make_bronze(lengths, seed=seed)
    n = df.height

    def mask(rate: float) -> pl.Series:
        return pl.Series(rng.random(n) < rate)

    gap = pl.int_range(pl.len()).over("ticker").is_between(60, 75)  # a 16-bar hole in closes
    df = df.with_columns(
        pl.when(mask(null_rate) | gap).then(None).otherwise(pl.col("close")).alias("close"),
        pl.when(mask(null_rate)).then(None).otherwise(pl.col("high")).alias("high"),
        pl.when(mask(null_rate)).then(None).otherwise(pl.col("low")).alias("low"),
        pl.when(mask(null_rate)).then(float("nan")).otherwise(pl.col("volume")).alias("volume"),
    )
    return df.filter(~mask(0.03) | (pl.int_range(pl.len()).over("ticker") == 0))  # date gaps


def with_bar_no(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.int_range(pl.len()).over("ticker").alias("_k"))


def split(history: pl.DataFrame, cut: pl.Expr) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows before the cut, rows from the cut) of a frame numbered by :func:`with_bar_no`."""
    prefix = history.filter(pl.col("_k") < cut).drop("_k")
    return prefix, history.filter(pl.col("_k") >= cut).drop("_k")


def resumed(
    prefix: pl.DataFrame,
    suffix: pl.DataFrame,
    tamper: Callable[[str, Carry], Carry] = lambda _, c: c,
    **params: object,
) -> tuple[dict[str, pl.DataFrame], dict[str, Carry]]:
    """Rows of prefix then suffix (the suffix resumed from the prefix's carries) and the
    merged carries after both; ``tamper`` may corrupt the carries in between."""
    out_p, c_p = chain(prefix, NO_CARRY, **params)
    out_s, c_s = chain(suffix, {k: tamper(k, c) for k, c in c_p.items()}, **params)
    outs = {
        k: pl.concat([out_p[k], out_s[k]]).sort("ticker", "trade_date", maintain_order=True)
        for k in LAYERS
    }
    return outs, {k: merge_carries(c_p[k], c_s[k]) for k in LAYERS}


def assert_same(
    got: tuple[dict[str, pl.DataFrame], dict[str, Carry]],
    want: tuple[dict[str, pl.DataFrame], dict[str, Carry]],
) -> None:
    for layer in LAYERS:
        pairs = [(got[0][layer], want[0][layer], "rows")]
        pairs += [
            (getattr(got[1][layer], part), getattr(want[1][layer], part), f"carry {part}")
            for part in ("context", "state")
        ]
        for a, b, what in pairs:
            try:
                assert_frame_equal(a, b, check_exact=True)
            except AssertionError as err:
                raise AssertionError(f"{layer} {what}: {err}") from None


def mismatching_layers(got: dict[str, pl.DataFrame], want: dict[str, pl.DataFrame]) -> list[str]:
    return [k for k in LAYERS if not got[k].equals(want[k])]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def history() -> pl.DataFrame:
    """Short histories (1, 5, 150 bars) next to ones past the 200-bar window."""
    return with_bar_no(messy_bronze([1, 5, 150, 230, 320], seed=3))


@pytest.fixture(scope="module")
def full(history: pl.DataFrame) -> tuple[dict[str, pl.DataFrame], dict[str, Carry]]:
    return chain(history.drop("_k"), NO_CARRY)


# --------------------------------------------------------------------------- the invariant


def test_full_chain_matches_independent_references(history, full) -> None:
    """The carry-less chain (what every resumed run is compared with) against references
    written independently in the unit tests: Silver's literal ``over("ticker")`` formulas
    and the plain-Python events and features, per ticker, on the messy history. (Indicators
    are checked against their reference on clean bars in test_indicators.py; its Polars
    ``ewm_mean`` does not skip nulls the way the recursions do.)"""
    from mf_pipeline.lib.layers.silver import SILVER_FLOAT_COLUMNS
    from mf_pipeline_tests.unit.test_events import col, ref_events
    from mf_pipeline_tests.unit.test_features import ref_features
    from mf_pipeline_tests.unit.test_silver import silver_reference

    outs = full[0]
    ref = silver_reference(history.drop("_k"))
    checked = [c for c in SILVER_FLOAT_COLUMNS if c in ref.columns]
    assert len(checked) >= 25
    for c in checked:
        a, b = outs["silver"][c].fill_nan(None), ref[c].fill_nan(None)
        assert (a.is_null() == b.is_null()).all(), c
        np.testing.assert_allclose(a.drop_nulls().to_numpy(), b.drop_nulls().to_numpy(),
                                   rtol=1e-10, atol=1e-12, err_msg=c)  # fmt: skip
    ind, ev = stored(outs["indicators"]), stored(outs["events"])
    for ticker in ind["ticker"].unique().sort().to_list():
        src = ind.filter(pl.col("ticker") == ticker)
        m, q = col(src, "tmf_21"), col(src, "tti_proxy_v1_21")
        got_ev = outs["events"].filter(pl.col("ticker") == ticker)
        for name, values in ref_events(m, q, EventParams()).items():
            assert col(got_ev, name) == values, (ticker, name)
        got_ft = outs["features"].filter(pl.col("ticker") == ticker)
        want = ref_features(m, q, ev.filter(pl.col("ticker") == ticker), FeatureParams())
        for name, values in want.items():
            # float32 storage between layers: differences of stored values agree to ~1e-7
            got = col(got_ft, name)
            assert [v is None for v in got] == [v is None for v in values], (ticker, name)
            pairs = [(a, b) for a, b in zip(got, values, strict=True) if a is not None]
            assert [a for a, _ in pairs] == pytest.approx(
                [b for _, b in pairs], rel=1e-5, abs=1e-6, nan_ok=True), (ticker, name)  # fmt: skip


@pytest.mark.parametrize(
    "cut",
    [1, 2, 4, 13, 14, 15, 19, 20, 21, 22, 49, 50, 60, 70, 149, 150, 198, 199, 200, 201, 229, 319],
)
def test_split_anywhere_equals_full_build(history, full, cut: int) -> None:
    """Inside warm-ups, just before/after each window fills, inside the null gap, one-bar and
    long suffixes; tickers shorter than the cut are wholly in the prefix (carried, absent
    from the suffix)."""
    assert_same(resumed(*split(history, pl.lit(cut))), full)


def test_split_at_different_bars_per_ticker(history, full) -> None:
    cuts = {"T00.US": 1, "T01.US": 3, "T02.US": 149, "T03.US": 199, "T04.US": 300}
    cut = pl.col("ticker").replace_strict(cuts, return_dtype=pl.Int64)
    assert_same(resumed(*split(history, cut)), full)


def test_new_ticker_in_the_suffix_starts_fresh(history, full) -> None:
    """A ticker absent from the carry: its first suffix bar is its first bar ever."""
    cut = pl.when(pl.col("ticker") == "T03.US").then(0).otherwise(100)
    assert_same(resumed(*split(history, cut)), full)


@pytest.mark.e2e  # exhaustive: the whole chain over many cuts
@pytest.mark.parametrize("first, last", [(1, 32), (188, 206)])
def test_repeated_one_bar_appends(first: int, last: int) -> None:
    """Chaining many one-bar appends (through the 14/20/21-bar and 200-bar warm-ups)."""
    history = with_bar_no(messy_bronze([last, last - 3, 8], seed=11))
    want = chain(history.drop("_k"), NO_CARRY)
    outs, carries = chain(history.filter(pl.col("_k") < first).drop("_k"), NO_CARRY)
    parts = {k: [v] for k, v in outs.items()}
    merged: dict[str, Carry] = dict(carries)
    for bar in range(first, last):
        out, new = chain(history.filter(pl.col("_k") == bar).drop("_k"), dict(merged))
        for k in LAYERS:
            parts[k].append(out[k])
            merged[k] = merge_carries(merged[k], new[k])
    got = {
        k: pl.concat(v).sort("ticker", "trade_date", maintain_order=True) for k, v in parts.items()
    }
    assert_same((got, merged), want)


def test_sample_universe_split_at_a_date(tmp_path) -> None:
    generate_universe(tmp_path, n_tickers=6, years=1.5, seed=9)
    files = mf.discover(tmp_path).select("source_file", "path", "ticker", "exchange", "fail_reason")
    bronze = build_bronze(files, ValidationThresholds(), "test", dt.datetime.now(dt.UTC)).valid
    bronze = bronze.sort("ticker", "trade_date")
    dates = bronze["trade_date"].unique().sort()
    cut = dates[len(dates) - 3]
    want = chain(bronze, NO_CARRY)
    got = resumed(
        bronze.filter(pl.col("trade_date") < cut), bronze.filter(pl.col("trade_date") >= cut)
    )
    assert_same(got, want)


@st.composite
def cases(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.Expr, EventParams, FeatureParams]:
    lengths = draw(st.lists(st.integers(1, 240), min_size=1, max_size=4))
    seed = draw(st.integers(0, 10_000))
    history = with_bar_no(messy_bronze(lengths, seed, draw(st.sampled_from([0.0, 0.05, 0.3]))))
    cuts = [draw(st.integers(0, n)) for n in lengths]
    tickers = history["ticker"].unique().sort().to_list()
    cut = pl.col("ticker").replace_strict(
        dict(zip(tickers, cuts, strict=True)), return_dtype=pl.Int64
    )
    windows = tuple(draw(st.sets(st.sampled_from([2, 3, 5, 10, 20, 30]), min_size=1)))
    ev = EventParams(
        respect_fail_lookback_bars=draw(st.integers(1, 25)),
        hold_consecutive_bars=draw(st.integers(1, 8)),
        activity_windows=windows,
    )
    return history, cut, ev, FeatureParams(activity_windows=windows)


@pytest.mark.e2e  # exhaustive: the whole chain over many cuts
@settings(max_examples=25, deadline=None)
@given(cases())
def test_resume_matches_full_build_property(
    case: tuple[pl.DataFrame, pl.Expr, EventParams, FeatureParams],
) -> None:
    history, cut, ev, fp = case
    want = chain(history.drop("_k"), NO_CARRY, ev, fp)
    assert_same(resumed(*split(history, cut), ev=ev, fp=fp), want)


# --------------------------------------------------------------------------- the tests can fail


def _zero_kernel_states(_: str, carry: Carry) -> Carry:
    kernel = [c for c in carry.state.columns if "__" in c]
    return Carry(carry.context, carry.state.with_columns(pl.col(kernel) * 0))


def _halve_context(_: str, carry: Carry) -> Carry:
    rank = pl.int_range(pl.len()).over("ticker")
    return Carry(carry.context.filter(rank >= pl.len().over("ticker") // 2), carry.state)


def _bars_total_off_by_one(_: str, carry: Carry) -> Carry:
    return Carry(carry.context, carry.state.with_columns(pl.col("bars_total") + 1))


@pytest.mark.parametrize(
    "tamper, cut, broken",
    [
        (_zero_kernel_states, 230, LAYERS),  # every layer has unbounded-memory state
        (_halve_context, 230, ("silver", "indicators")),  # SMA-200 / tmf_slope_5 look back
        (_bars_total_off_by_one, 198, ("silver",)),  # warmup_200_complete flips a bar early
    ],
)
def test_a_wrong_carry_is_detected(history, full, tamper, cut: int, broken) -> None:
    got, _ = resumed(*split(history, pl.lit(cut)), tamper=tamper)
    assert set(broken) <= set(mismatching_layers(got, full[0]))


def test_tail_rows_and_merge_carries() -> None:
    df = pl.DataFrame({"ticker": ["A"] * 3 + ["B"] + ["C"] * 4, "x": range(8)})
    offsets = np.array([0, 3, 4, 8])
    assert tail_rows(df, offsets, 2)["x"].to_list() == [1, 2, 3, 6, 7]
    old = Carry(df.with_columns(trade_date=pl.col("x")), pl.DataFrame({"ticker": ["A", "B"]}))
    new = Carry(
        pl.DataFrame({"ticker": ["B"], "x": [9], "trade_date": [9]}),
        pl.DataFrame({"ticker": ["B"]}),
    )
    merged = merge_carries(old, new)
    assert merged.context.filter(pl.col("ticker") == "B")["x"].to_list() == [9]
    assert merged.context.height == 8 and merged.state["ticker"].to_list() == ["A", "B"]
