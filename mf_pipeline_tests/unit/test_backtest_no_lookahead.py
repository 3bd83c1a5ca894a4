"""No look-ahead in an HMM backtest: states decoded on a history cut at date D give the same
filtered states up to D and the same trades for every position closed before D.

The chain is the real one: forward-filtered decoding (``research.hmm.decode``), directions from
a scorecard of the TRAIN rows (``train_state_scorecard``), then ``steps.backtest.run``.
"""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.research.hmm import HmmParams, build_sequences, decode
from mf_pipeline.lib.research.train_scorecard import train_state_scorecard
from mf_pipeline.lib.settings import BootstrapSettings, load_settings
from mf_pipeline.lib.steps.backtest.options import backtest_options
from mf_pipeline.lib.steps.backtest.run import BacktestInputs, backtest_run

N_TICKERS, N_BARS, TRAIN_BARS = 3, 700, 300


def _model():
    from hmmlearn.hmm import GaussianHMM

    m = GaussianHMM(3, "diag", init_params="", random_state=1)
    m.startprob_ = np.array([0.4, 0.3, 0.3])
    m.transmat_ = np.array([[0.92, 0.05, 0.03], [0.04, 0.92, 0.04], [0.03, 0.05, 0.92]])
    m.means_ = np.array([[0.0, 0.0], [2.5, -2.5], [-2.5, 2.5]])
    m.covars_ = np.full((3, 2), 1.0)
    return m


@pytest.fixture(scope="module")
def panel():
    """Three tickers: HMM features X, and prices whose drift follows the hidden state."""
    m = _model()
    frames, xs = [], []
    start = date(2010, 1, 4)
    for t in range(N_TICKERS):
        x, z = m.sample(N_BARS, random_state=50 + t)
        rng = np.random.default_rng(t)
        ret = np.array([0.002, 0.004, -0.004])[z] + rng.normal(0, 0.01, N_BARS)
        close = 50 * np.exp(np.cumsum(ret))
        open_ = close * np.exp(rng.normal(0, 0.003, N_BARS))
        frames.append(pl.DataFrame({
            "ticker": f"T{t}", "trade_date": [start + timedelta(days=i) for i in range(N_BARS)],
            "open": open_, "high": np.maximum(open_, close) * 1.01,
            "low": np.minimum(open_, close) * 0.99, "close": close,
            "flow_state_code": np.zeros(N_BARS, dtype=np.int8)}))
        xs.append(x)
    frame = pl.concat(frames)
    fwd = (pl.col("close").shift(-10).over("ticker") / pl.col("close") - 1).alias("fwd_ret_10")
    return HmmParams.from_hmmlearn(m), frame.with_columns(fwd), np.vstack(xs)


def _decoded(params, frame, X, last: date | None) -> pl.DataFrame:
    keep = (frame["trade_date"] <= last).to_numpy() if last else np.ones(frame.height, bool)
    part = frame.filter(pl.Series(keep))
    seqs = build_sequences(part, X[keep], 10, [c for c in part.columns if c != "ticker"])
    return decode(params, seqs).frame


def _run(frame: pl.DataFrame, card: pl.DataFrame, test_from: date, tag: str
         ) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """Trades and the per-row signal frame of a backtest of the test rows."""
    settings = load_settings()
    rows = frame.filter(pl.col("trade_date") >= test_from).drop("fwd_ret_10")
    inputs = BacktestInputs(rows=rows, input_type="hmm", tag=tag, identity={"case": tag},
                            scorecard=card, scorecard_source="train_scorecard")
    options = backtest_options(settings, exit_mode="horizon_or_state", export_joined_rows=True)
    out = backtest_run(settings, inputs, options)
    assert out.summary["mapping_source"] == "train_scorecard"
    signals = pl.read_parquet(out.output_dir / "normalized_rows_with_policy.parquet")
    return out.trades, signals.select("ticker", "trade_date", "state_id",
                                      "state_direction_hint", "entry_signal")


@pytest.mark.parametrize("cut_bar", [420, 555, 690])
def test_trades_before_the_cut_do_not_depend_on_later_bars(isolated, panel, cut_bar):
    """``isolated``: the run folders go to a temporary artifacts root."""
    params, frame, X = panel
    start = frame["trade_date"].min()
    train_end = start + timedelta(days=TRAIN_BARS - 1)
    test_from = train_end + timedelta(days=20)  # an embargo of the longest horizon
    cut = start + timedelta(days=cut_bar)

    full = _decoded(params, frame, X, None)
    train = full.filter(pl.col("trade_date") <= train_end)
    # labels of train rows that would read a test price are not used (the embargo's job)
    train = train.with_columns(pl.when(pl.col("trade_date") <= train_end - timedelta(days=10))
                               .then(pl.col("fwd_ret_10")).alias("fwd_ret_10"))
    card = train_state_scorecard(train, BootstrapSettings(n_boot=50))
    assert card.height == 3 and card["fwd_ret_10_mean"].is_finite().all()

    short = _decoded(params, frame, X, cut)
    keys = ["ticker", "trade_date"]
    joined = full.select(*keys, "hmm_state_filtered").join(
        short.select(*keys, pl.col("hmm_state_filtered").alias("short")), on=keys)
    assert joined.height == short.height
    assert (joined["hmm_state_filtered"] == joined["short"]).all()

    trades_a, rows_a = _run(full, card, test_from, "full")
    trades_b, rows_b = _run(short, card, test_from, f"cut{cut_bar}")
    assert rows_a.filter(pl.col("trade_date") <= cut).equals(rows_b)
    a, b = (t.filter(pl.col("exit_date") < cut) for t in (trades_a, trades_b))
    assert a.height > 10
    assert a.equals(b)
