"""Backtest timings (issue #20, "Speed and memory"): section ``backtest`` of ``bench.run``.

Two measurements, each in a child process so each has its own peak RSS:

* **kernel** (``python -m bench.backtest kernel``): the Numba simulation alone —
  ``entry_signals`` + ``simulate_trades`` with preallocated trade tables — and the same through
  ``engine.run_trades`` (polars in, trade table out), on a seeded synthetic panel shaped like
  the 300 x 20 y sample (300 tickers x 3,630 bars = 1.09M rows; OHLC from
  :func:`bench.kernels.make_panel`, flow states 0-4 that persist ~5 bars), FLOW defaults:
  ``state_transition_entry``, ``horizon_or_state``, hold 10, states 1, 2 long and 3, 4 short.
  One warm-up call, then the median of ``--repeat`` calls. Target: >= 20M rows/s.
* **step**: ``mf backtest-run --input-type flow --input-file decoded_rows.parquet --json``
  (settings defaults = FLOW defaults) on the lake of the universe, as a user runs it: the
  run's own ``duration_sec`` (load, simulate, metrics, artifacts) and the whole command's wall,
  CPU and peak RSS (``wait4``). The input is the HMM run's decoded rows of split ``full``
  (built with :func:`bench.validation.prepare`), the rows the old tool's flow run read.
  Targets: the old tool's 40.7 s / 6.9 GB ->
  ``duration_sec`` <= 40.7 / 50 s and peak < 1 GB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import validation as val
from bench.common import (
    Meter,
    last_json_object,
    median_records,
    peak_rss_mb,
    run_child,
    run_json_child,
    say,
    write_json,
)
from bench.universe import mf_executable

TICKERS, BARS, SEED = 300, 3_630, 20_261_206
SIDE_OF_STATE = np.array([0, 1, 1, -1, -1], dtype=np.int8)
STATE_CHANGE_P = 0.2
HOLD_BARS = 10
KERNEL_TARGET_ROWS_S = 20e6
SUMMARY = "backtest_summary.json"
OLD_STEP_S, OLD_PEAK_MB, STEP_SPEEDUP, PEAK_TARGET_MB = 40.7, 6.9 * 1024, 50.0, 1024.0


# --------------------------------------------------------------------------- kernel child


def _states(n_tickers: int, n_bars: int, rng: np.random.Generator) -> np.ndarray:
    """Per-ticker flow states 0-4 that change with probability ``STATE_CHANGE_P`` a bar."""
    draw = rng.integers(0, 5, (n_tickers, n_bars))
    change = rng.uniform(size=(n_tickers, n_bars)) < STATE_CHANGE_P
    change[:, 0] = True
    # the state of each bar = the draw at its latest change (forward fill by index)
    last = np.maximum.accumulate(np.where(change, np.arange(n_bars), 0), axis=1)
    return np.take_along_axis(draw, last, axis=1).ravel()


def measure_kernel(n_tickers: int, n_bars: int, repeat: int) -> dict[str, Any]:
    """Median seconds of the kernel pair and of ``run_trades`` on the synthetic panel."""
    import polars as pl

    from bench.kernels import make_panel
    from mf_pipeline.lib.backtest import modes
    from mf_pipeline.lib.backtest.engine import BacktestConfig, run_trades
    from mf_pipeline.lib.kernels import backtest as kb

    panel = make_panel(n_tickers, n_bars, SEED)
    n = panel.rows
    state = _states(n_tickers, n_bars, np.random.default_rng(SEED))
    side = SIDE_OF_STATE[state]
    eligible = side != 0
    gate = np.ones(n, dtype=np.bool_)
    offsets = panel.offsets
    signal_mode = modes.SIGNAL_MODES.index("state_transition_entry")
    exit_mode = modes.EXIT_MODES.index("horizon_or_state")

    def kernel() -> int:
        entry = np.zeros(n, dtype=np.bool_)
        kb.entry_signals(state, side, eligible, gate, offsets, signal_mode, entry)
        m = int(entry.sum())
        ti = np.zeros((m, kb.N_TRADE_INT), dtype=np.int64)
        tf = np.full((m, kb.N_TRADE_FLOAT), np.nan)
        diag = np.zeros(kb.N_DIAG, dtype=np.int64)
        return kb.simulate_trades(panel.open, panel.high, panel.low, panel.close, side,
                                  eligible, entry, offsets, exit_mode, HOLD_BARS, 0.0, ti, tf,
                                  diag)

    tickers = np.repeat(np.array([f"T{i:04d}" for i in range(n_tickers)]), n_bars)
    days = np.tile(np.arange(n_bars), n_tickers).astype("datetime64[D]")
    frame = pl.DataFrame({"ticker": tickers, "trade_date": days, "open": panel.open,
                          "high": panel.high, "low": panel.low, "close": panel.close,
                          "state_id": state, "direction": side})
    config = BacktestConfig("state_transition_entry", "horizon_or_state", HOLD_BARS)

    def engine() -> int:
        return run_trades(frame, config).trades.height

    rows = []
    for method, fn in (("kernel: entry_signals + simulate_trades", kernel),
                       ("engine.run_trades (polars in, trade table out)", engine)):
        trades = fn()  # warm-up: Numba cache load, first-call costs
        seconds = []
        with Meter() as meter:  # over all calls: one call is too short for /proc/stat
            for _ in range(repeat):
                started = time.perf_counter()
                fn()
                seconds.append(time.perf_counter() - started)
        median = statistics.median(seconds)
        rows.append({"method": method, "rows": n, "trades": trades, "seconds": median,
                     "rows_per_s": n / median, "seconds_all": seconds,
                     "others_cpu_frac": meter.others_cpu_frac,
                     "load_before": meter.load_before})
    return {"tickers": n_tickers, "bars": n_bars, "rows": n, "seed": SEED, "repeat": repeat,
            "hold_bars": HOLD_BARS, "results": rows, "peak_rss_mb": peak_rss_mb()}


# --------------------------------------------------------------------------- step


def measure_step(prepared: dict[str, Any], repeat: int) -> dict[str, Any]:
    """``repeat`` runs of the flow step with settings defaults; medians."""
    path = prepared["files"]["flow"]
    env = prepared["env"]
    runs = []
    for index in range(repeat):
        say(f"backtest-run flow: run {index + 1}/{repeat} ({path.name})")
        child = run_child([mf_executable(), "backtest-run", "--input-type", "flow",
                           "--input-file", str(path), "--json"], env=env, merge_stderr=True)
        if child.returncode != 0:
            raise RuntimeError(f"mf backtest-run failed:\n{child.stdout[-4000:]}")
        out = last_json_object(child.stdout) or {}
        summary = json.loads((Path(out["output_dir"]) / SUMMARY).read_text())
        rec = {**val._record(child), "duration_sec": summary["duration_sec"],
               "load_sec": summary.get("load_sec"),
               "rows": summary["adapter_summary"]["rows_in"],
               "trades": summary["headline"]["trade_count"]}
        runs.append(rec)
        print(f"    step {rec['duration_sec'] or 0:6.3f} s  wall {rec['wall_s']:6.2f} s  CPU "
              f"{rec['cpu_s']:6.2f} s  peak {rec['peak_rss_mb']:6.0f} MB  "
              f"{rec.get('trades') or 0:,} trades  load {rec['load_before'][0]:.1f}",
              flush=True)
    return {"input": path.name, "repeat": repeat, "median": median_records(runs),
            "runs": runs}


def measure(raw: Path, work: Path, repeat: int, kernel_repeat: int = 20) -> dict[str, Any]:
    """The ``backtest`` section: kernel child, then the step on a lake built for it."""
    say(f"backtest kernel: {TICKERS} x {BARS:,} rows, repeat {kernel_repeat}")
    result: dict[str, Any] = {"kernel": run_json_child(
        "bench.backtest", ["kernel", "--repeat", str(kernel_repeat)])}
    for r in result["kernel"]["results"]:
        print(f"    {r['method']:48s} {1000 * r['seconds']:8.1f} ms "
              f"{r['rows_per_s'] / 1e6:7.1f} Mrows/s  {r['trades']:,} trades", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    prepared = val.prepare(raw, work)
    result["step"] = measure_step(prepared, repeat)
    result["prepare_s"] = prepared["prepare_s"]
    return result


# --------------------------------------------------------------------------- report


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def report_lines(entry: dict[str, Any]) -> list[str]:
    """Markdown of the ``backtest`` section of a size entry (empty when not measured)."""
    b = entry.get("backtest")
    if not b:
        return []
    k = b["kernel"]
    out = [f"#### Backtest (issue #20): kernel and `backtest-run`, measured "
           f"{b.get('measured', '?')}", "",
           f"Kernel on a synthetic panel {k['tickers']} tickers x {k['bars']:,} bars = "
           f"{k['rows']:,} rows (seed {k['seed']}), FLOW defaults (`state_transition_entry`, "
           f"`horizon_or_state`, hold {k['hold_bars']}); median of {k['repeat']} calls after a "
           "warm-up, one process:", "",
           "| method | rows | trades | ms | Mrows/s | others' CPU | load |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in k["results"]:
        out.append(f"| {r['method']} | {r['rows']:,} | {r['trades']:,} | "
                   f"{_fmt(1000 * r['seconds'])} | {_fmt(r['rows_per_s'] / 1e6)} | "
                   f"{100 * r['others_cpu_frac']:.0f}% | {r['load_before'][0]:.1f} |")
    rate = k["results"][0]["rows_per_s"]
    out += ["", f"Target >= {KERNEL_TARGET_ROWS_S / 1e6:.0f}M rows/s for the kernel alone: "
            f"**{'met' if rate >= KERNEL_TARGET_ROWS_S else 'not met'}** "
            f"({rate / 1e6:.1f}M rows/s).", ""]
    s = b.get("step")
    if s:
        m = s["median"]
        command = "`mf backtest-run --input-type flow --input-file decoded_rows.parquet`"
        step_s, peak = m.get("duration_sec"), m.get("peak_rss_mb")
        loads = [x[0] for x in m.get("load_before") or []]
        out += [f"Step: {command}, settings defaults, median of {s['repeat']} run(s):", "",
                "| input | rows | trades | step s (`duration_sec`) | start → run s | "
                "Dagster run s | wall s | CPU s | peak RSS MB | others' CPU | load | old tool | "
                "speed-up (step) |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
                f"| {s['input']} | {m.get('rows') or 0:,.0f} | {m.get('trades') or 0:,.0f} | "
                f"{_fmt(step_s)} | {_fmt(m.get('run_start_s'))} | "
                f"{_fmt(m.get('dagster_run_s'))} | {_fmt(m.get('wall_s'))} | "
                f"{_fmt(m.get('cpu_s'))} | {_fmt(peak)} | "
                f"{100 * (m.get('others_cpu_frac') or 0):.0f}% | "
                f"{min(loads, default=0):.1f}–{max(loads, default=0):.1f} | "
                f"{OLD_STEP_S} s, {OLD_PEAK_MB / 1024:.1f} GB | "
                f"{_fmt(OLD_STEP_S / step_s) + 'x' if step_s else '–'} |", "",
                "`duration_sec` is what the run records: reading (and hashing, for the run id) "
                "the input, normalizing, simulating, metrics and written artifacts; the wall "
                "adds the interpreter, imports and the Dagster run around it. The decoded rows "
                "carry only the close (open = high = low = close, as in the old tool's run); the "
                "old tool's 27,716 trades were on its own sample, not this synthetic one.", ""]
        fast = step_s is not None and step_s <= OLD_STEP_S / STEP_SPEEDUP
        small = peak is not None and peak < PEAK_TARGET_MB
        out += [f"Targets: step >= {STEP_SPEEDUP:.0f}x faster (<= "
                f"{OLD_STEP_S / STEP_SPEEDUP:.3f} s): **{'met' if fast else 'not met'}**; "
                f"peak of the whole command < {PEAK_TARGET_MB:.0f} MB: "
                f"**{'met' if small else 'not met'}**.", ""]
    return out


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=("kernel",))
    parser.add_argument("--tickers", type=int, default=TICKERS)
    parser.add_argument("--bars", type=int, default=BARS)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    write_json(measure_kernel(args.tickers, args.bars, args.repeat), args.json)


if __name__ == "__main__":
    main()
