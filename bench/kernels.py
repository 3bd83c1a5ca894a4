"""Kernel micro-benchmarks: our Numba recursions vs polars ``ewm_mean().over()`` vs TA-Lib.

``python -m bench.kernels [--tickers 2000 --bars 5000] [--repeat 5] --json OUT`` builds a
seeded synthetic panel (geometric random-walk closes, one long frame sorted by ticker, flat
float64 arrays + ticker offsets), measures this machine's memory bandwidth (``np.copyto`` of
1 GiB of float64, as perf_anchors §6), then times each method: one warm-up call, then the
median of ``--repeat`` calls. Each row reports Mrows/s and the fraction of the measured
read+write bandwidth its minimum memory traffic (bytes/row below) represents. TA-Lib rows are
skipped with a note when ``talib`` is not installed (it is a bench-only dependency).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Meter, write_json

SEED = 20240601
ALPHA = 1.0 / 21.0


@dataclass
class Panel:
    """Flat per-column arrays over a long panel sorted by ticker, with ticker offsets."""

    ticker: list[str]
    offsets: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.offsets[-1])


def make_panel(n_tickers: int, n_bars: int, seed: int = SEED) -> Panel:
    """Seeded synthetic OHLCV panel: ``n_tickers`` x ``n_bars`` rows (perf_anchors' recipe)."""
    rng = np.random.default_rng(seed)
    vol = rng.uniform(0.01, 0.035, n_tickers)[:, None]
    start = rng.uniform(5.0, 300.0, n_tickers)[:, None]
    rets = rng.standard_normal((n_tickers, n_bars)) * vol
    close = start * np.exp(np.cumsum(rets, axis=1))
    prev = np.concatenate([start, close[:, :-1]], axis=1)
    opn = prev * (1.0 + 0.002 * rng.standard_normal((n_tickers, n_bars)))
    spread = np.abs(rng.standard_normal((n_tickers, n_bars))) * vol * 0.5
    high = np.maximum(opn, close) * (1.0 + spread)
    low = np.minimum(opn, close) * (1.0 - spread)
    level = rng.uniform(11.0, 15.0, n_tickers)[:, None]
    volume = np.exp(level + 0.5 * rng.standard_normal((n_tickers, n_bars)))
    offsets = np.arange(0, (n_tickers + 1) * n_bars, n_bars, dtype=np.int64)

    def flat(a: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(a.reshape(-1), dtype=np.float64)
        out.flags.writeable = False
        return out

    return Panel([f"T{i:05d}" for i in range(n_tickers)], offsets, flat(opn), flat(high),
                 flat(low), flat(close), flat(volume))


def time_call(fn: Callable[[], Any], repeat: int) -> dict[str, Any]:
    """One warm-up call, then the median (and min) of ``repeat`` timed calls, with load."""
    fn()
    times: list[float] = []
    with Meter() as meter:
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "min_seconds": min(times),
            "repeat": repeat, "load_before": meter.load_before, "load_after": meter.load_after,
            "others_cpu_frac": meter.others_cpu_frac, "steal_frac": meter.steal_frac}


def memory_bandwidth(mib: int, repeat: int) -> dict[str, Any]:
    """``np.copyto`` between two preallocated, touched float64 arrays of ``mib`` MiB."""
    n = mib * 1024 * 1024 // 8
    src = np.ones(n)
    dst = np.zeros(n)
    rec = time_call(lambda: np.copyto(dst, src), repeat)
    nbytes = n * 8
    rec.update(method="numpy copyto (1 thread)", bytes=nbytes,
               gb_per_s_copied=nbytes / rec["seconds"] / 1e9,
               gb_per_s_read_write=2 * nbytes / rec["seconds"] / 1e9)
    return rec


def run(n_tickers: int, n_bars: int, repeat: int, mem_mib: int) -> dict[str, Any]:
    """Every method on one panel; returns bandwidth, rows and correctness checks."""
    import polars as pl

    from mf_pipeline.lib.kernels import recursive as rk

    try:
        import talib
    except ImportError:  # bench-only dependency
        talib = None

    bandwidth = memory_bandwidth(mem_mib, repeat)
    bw = bandwidth["gb_per_s_read_write"] * 1e9
    p = make_panel(n_tickers, n_bars)
    n = p.rows
    out = np.empty(n)
    out2 = np.empty(n)
    out.fill(0.0)
    out2.fill(0.0)
    tr = np.empty(n)
    rk.true_range(p.high, p.low, p.close, p.offsets, tr)
    tr.flags.writeable = False
    rows: list[dict[str, Any]] = []

    def add(group: str, method: str, fn: Callable[[], Any], bytes_per_row: int,
            note: str = "") -> None:
        rec = time_call(fn, repeat)
        rec.update(group=group, method=method, rows=n, bytes_per_row=bytes_per_row, note=note,
                   mrows_per_s=n / rec["seconds"] / 1e6,
                   ns_per_row=rec["seconds"] / n * 1e9,
                   bandwidth_fraction=bytes_per_row * n / rec["seconds"] / bw)
        rows.append(rec)
        print(f"  {group:7s} {method:62s} {rec['seconds'] * 1000:9.2f} ms "
              f"{rec['mrows_per_s']:8.1f} Mrows/s", flush=True)

    def fresh(kernel: Callable[..., None], *args: Any) -> Callable[[], np.ndarray]:
        def call() -> np.ndarray:
            result = np.empty(n)
            kernel(*args, result)
            return result

        return call

    # Wilder / EMA(alpha=1/21), one recursion per ticker.
    add("ema", "numba wilder(n=21), preallocated output",
        lambda: rk.wilder(p.close, 21, p.offsets, out), 16)
    add("ema", "numba wilder(n=21), fresh np.empty output per call",
        fresh(rk.wilder, p.close, 21, p.offsets), 16)
    add("ema", "numba ewm_adjust_false(alpha=1/21), preallocated output",
        lambda: rk.ewm_adjust_false(p.close, ALPHA, 1, p.offsets, out), 16)
    frame = pl.DataFrame({
        "ticker": pl.Series(p.ticker).gather(np.repeat(np.arange(n_tickers), n_bars)),
        "close": p.close,
    }).with_columns(ticker_id=pl.col("ticker").rank("dense").cast(pl.UInt32))
    ewm = pl.col("close").ewm_mean(alpha=ALPHA, adjust=False)
    add("ema", "polars ewm_mean(alpha=1/21, adjust=False).over('ticker') (String)",
        lambda: frame.select(ewm.over("ticker")), 16)
    add("ema", "polars same, .over() on a UInt32 ticker id",
        lambda: frame.select(ewm.over("ticker_id")), 16)
    add("ema", "polars ewm_mean on the whole column, no .over() (bound)",
        lambda: frame.select(ewm), 16, "not per ticker")
    starts, ends = p.offsets[:-1].tolist(), p.offsets[1:].tolist()
    if talib is not None:
        add("ema", "TA-Lib EMA(41) per-ticker Python loop (same alpha 2/42)",
            lambda: [talib.EMA(p.close[a:b], timeperiod=41) for a, b in zip(starts, ends,
                                                                            strict=True)],
            16, "SMA-seeded, NaN for the first 40 bars")

    # TMF/TTI fused kernel vs a comparable C recursion (ATR).
    add("tmf", "numba fused tmf_tti(21, 21), preallocated outputs",
        lambda: rk.tmf_tti(p.high, p.low, p.close, p.volume, tr, 21, 21, 1e-12, p.offsets,
                           out, out2), 56, "5 inputs + 2 outputs, 4 recursions")
    add("tmf", "numba wilder(tr, 14) (ATR-14 from a precomputed true range)",
        lambda: rk.wilder(tr, 14, p.offsets, out), 16)
    if talib is not None:
        add("tmf", "TA-Lib ATR(14) per-ticker Python loop",
            lambda: [talib.ATR(p.high[a:b], p.low[a:b], p.close[a:b], timeperiod=14)
                     for a, b in zip(starts, ends, strict=True)], 32, "3 inputs + 1 output")

    # Correctness of what is compared.
    rk.ewm_adjust_false(p.close, ALPHA, 1, p.offsets, out)
    pol = frame.select(ewm.over("ticker")).to_series().to_numpy()
    checks: dict[str, Any] = {
        "numba_vs_polars_ewm_max_rel_diff": float(np.max(np.abs(out - pol) / np.abs(pol))),
    }
    if talib is not None:
        ta = np.concatenate([talib.EMA(p.close[a:b], timeperiod=41)
                             for a, b in zip(starts, ends, strict=True)])
        tail = np.arange(n) - np.repeat(p.offsets[:-1], n_bars) >= min(600, n_bars - 1)
        checks["numba_vs_talib_ema_max_rel_diff_after_600_bars"] = float(
            np.max(np.abs(out[tail] - ta[tail]) / np.abs(ta[tail])))
    return {
        "panel": {"tickers": n_tickers, "bars": n_bars, "rows": n, "seed": SEED},
        "memory_bandwidth": bandwidth,
        "talib": talib.__version__ if talib is not None else None,
        "talib_note": None if talib is not None else
        "ta-lib not installed (pip install ta-lib): TA-Lib rows skipped",
        "polars_threads": pl.thread_pool_size(),
        "rows": rows,
        "checks": checks,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickers", type=int, default=2000)
    parser.add_argument("--bars", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mem-mib", type=int, default=1024)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    write_json(run(args.tickers, args.bars, args.repeat, args.mem_mib), args.json)


if __name__ == "__main__":
    main()
