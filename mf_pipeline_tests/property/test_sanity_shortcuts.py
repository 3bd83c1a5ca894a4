"""The layer sanity check's shortcuts (a column's sum, min and max proving that no row breaks
a rule; dates alone proving key order) never hide a problem: on any panel the messages are
exactly those of checking every rule row by row."""

import datetime as dt
import math

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from mf_pipeline.lib.layers import sanity

DAY = dt.date(2020, 1, 1)
# values around the [-1, 1] bounds and every kind of non-finite or overflowing float
FLOATS = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 1.0 + 5e-10, -1.0 - 5e-10, 1.0 + 2e-9, -1.0000001,
                     1.0000001, math.nan, math.inf, -math.inf, 3e38, -3e38, 1e308]),
    st.floats(-2, 2), st.none())


@st.composite
def panels(draw) -> tuple[str, pl.DataFrame]:
    """A layer panel: tickers mostly sorted with rising dates, sometimes duplicated, out of
    order or null; bounded and other float columns in float32 or float64; state codes."""
    layer = draw(st.sampled_from(sanity.LAYERS))
    n = draw(st.integers(1, 12))
    tickers = sorted(draw(st.lists(st.sampled_from(["A", "B", "C"]), min_size=n, max_size=n)))
    days = [draw(st.integers(0, 3)) for _ in range(n)]
    rows = sorted(zip(tickers, days, strict=True)) if draw(st.booleans()) else list(
        zip(tickers, days, strict=True))
    if draw(st.booleans()):
        rows = draw(st.permutations(rows))
    frame = pl.DataFrame({
        "ticker": [t if draw(st.integers(0, 9)) else None for t, _ in rows],
        "exchange": "NYSE",
        "trade_date": [DAY + dt.timedelta(days=d) for _, d in rows],
    })
    for name in ("tmf_21", "tti_proxy_v1_21", "flow_bias_20", "ret_1d"):
        if draw(st.booleans()):
            dtype = draw(st.sampled_from([pl.Float32, pl.Float64]))
            values = [draw(FLOATS) for _ in range(n)]
            frame = frame.with_columns(pl.Series(name, values, dtype=pl.Float64).cast(dtype))
    if draw(st.booleans()):
        codes = [draw(st.one_of(st.integers(-1, 5), st.none())) for _ in range(n)]
        frame = frame.with_columns(pl.Series("flow_state_code", codes, dtype=pl.Int8))
    return layer, frame


def _row_by_row(panel: pl.DataFrame) -> dict[str, sanity.Rule]:
    return {what: sanity.Rule(rule.offending) for what, rule in RULES(panel).items()}


RULES = sanity._row_rules


@settings(max_examples=400, deadline=None)
@given(panels())
def test_shortcuts_give_the_messages_of_the_row_by_row_check(case) -> None:
    layer, panel = case
    fast = sanity.sanity_failures(layer, panel)
    sanity._row_rules = _row_by_row
    try:
        slow = sanity.sanity_failures(layer, panel)
    finally:
        sanity._row_rules = RULES
    assert fast == slow


def test_key_order_is_proven_from_dates_and_ticker_changes() -> None:
    def in_order(tickers: list[str], days: list[int]) -> bool:
        return sanity._in_key_order(pl.DataFrame({
            "ticker": tickers, "trade_date": [DAY + dt.timedelta(days=d) for d in days]}))

    assert in_order(["A", "A", "B", "B"], [1, 2, 0, 5])
    assert not in_order(["A", "A", "B", "B"], [1, 1, 0, 5])  # duplicate date
    assert not in_order(["A", "A", "B", "B"], [2, 1, 0, 5])  # decreasing within A
    assert in_order(["A", "B"], [3, 3])  # the same date in two tickers
    assert not in_order(["B", "A"], [1, 2])  # tickers not sorted
