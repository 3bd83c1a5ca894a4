"""How often the validation policy ALLOWs a state of a pure random walk, per bootstrap mode
(issue #19's false-discovery check; docs/VALIDATION.md, "False-discovery check").

For each of ``--universes`` null universes (``mf sample-data --null``, seeds 1..N, ``--tickers``
x ``--years``) it builds the ML dataset (``mf run --until ml_dataset``), labels its rows with
``--states`` sticky random states that know nothing of the prices, and for every mode of
``--modes`` runs ``mf validation-run --bootstrap-mode M`` then ``mf cluster-hardening-run``.
Every ALLOW is a false discovery. ALLOW needs a Holm-significant edge at alpha 0.05 across a
run's states, so a calibrated bootstrap gives a run with any ALLOW at most ~5 % of the time;
the row-iid mode (the old tool's) treats ten-day overlapping returns as independent, so its
intervals are too narrow and it should exceed that rate.

Reported per mode: runs with any ALLOW (share and a 95 % Wilson interval), ALLOWs per run,
states whose edge test rejected (``edge_p_adjusted < 0.05``, before the policy's other gates)
and the median width of the states' ``fwd_ret_10`` mean intervals.

    python -m bench.validation_null_calibration --universes 20 --work /tmp/null_calibration
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.common import rounded, say, write_json
from bench.mfrun import pipeline_env
from bench.universe import mf_executable

SWITCH_PROB = 0.05  # a new state draw on 5 % of the days: spells of 20 days on average
ALPHA = 0.05


def sticky_states(n: int, k: int, seed: int) -> np.ndarray:
    """``n`` labels of ``k`` states, independent of prices: spells of geometric length (a new
    uniform draw with probability ``SWITCH_PROB`` each row)."""
    rng = np.random.default_rng(seed)
    spell = np.cumsum(rng.random(n) < SWITCH_PROB)
    return rng.integers(0, k, spell[-1] + 1)[spell]


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a share: honest at 0 of 20, where the normal one collapses."""
    if n == 0:
        return math.nan, math.nan
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _mf(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([mf_executable(), *args, "--json"], env=env, check=True, text=True,
                         capture_output=True).stdout
    return json.loads(out)


def _labelled(work: Path, env: dict[str, str], seed: int, states: int) -> Path:
    """The universe's ML dataset rows (ticker, trade_date, close) with random states."""
    subprocess.run([mf_executable(), "run", "--until", "ml_dataset"], env=env, check=True,
                   capture_output=True)
    [dataset] = (work / "data" / "gold" / "datasets").rglob("dataset.parquet")
    rows = pl.read_parquet(dataset, columns=["ticker", "trade_date", "close"]).sort(
        "ticker", "trade_date")
    path = work / "random_states.parquet"
    rows.with_columns(regime=pl.Series(sticky_states(rows.height, states, seed))).write_parquet(
        path)
    return path


def one_universe(work: Path, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Validate and harden one null universe's random states in every mode: one record each."""
    raw = work / "raw"
    subprocess.run([mf_executable(), "sample-data", "--out", str(raw), "--null", "--seed",
                    str(seed), "--tickers", str(args.tickers), "--years", str(args.years)],
                   check=True, capture_output=True)
    env = pipeline_env(raw, work) | {"MF_PIPELINE_PATHS__LOGS_ROOT": str(work / "logs")}
    labels = _labelled(work, env, seed, args.states)
    records = []
    for mode in args.modes:
        run = _mf(env, "validation-run", "--input-file", str(labels), "--input-type", "generic",
                  "--state-col", "regime", "--bootstrap-mode", mode)
        policy = _mf(env, "cluster-hardening-run", "--validation-run-dir", run["output_dir"],
                     "--force")  # a rerun rewrites the same run folder: no stale policy
        card = pl.read_parquet(Path(run["output_dir"]) / "state_scorecard.parquet")
        records.append({
            "seed": seed, "mode": mode, "rows": run["rows"], "states": run["state_count"],
            "block_length": run["block_length"], "allow": policy["allow_count"],
            "edge_rejections": int((card["edge_p_adjusted"] < ALPHA).sum()),
            "median_ci_width": float(card["ci_width"].median()),
        })  # fmt: skip
        say(f"seed {seed} {mode}: {records[-1]['allow']} ALLOW, "
            f"{records[-1]['edge_rejections']} edge rejections")
    return records


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for mode in dict.fromkeys(r["mode"] for r in records):
        runs = [r for r in records if r["mode"] == mode]
        hits = sum(r["allow"] > 0 for r in runs)
        out[mode] = {
            "runs": len(runs),
            "runs_with_any_allow": hits,
            "share_runs_with_any_allow": hits / len(runs),
            "share_wilson_95": wilson(hits, len(runs)),
            "allow_per_run": statistics.fmean(r["allow"] for r in runs),
            "runs_with_any_edge_rejection": sum(r["edge_rejections"] > 0 for r in runs),
            "median_ci_width": statistics.median(r["median_ci_width"] for r in runs),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--universes", type=int, default=20)
    parser.add_argument("--tickers", type=int, default=50)
    parser.add_argument("--years", type=float, default=8.0)
    parser.add_argument("--states", type=int, default=5)
    parser.add_argument("--modes", nargs="+", default=["block", "iid"])
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/validation_null_calibration"))
    args = parser.parse_args()
    records: list[dict[str, Any]] = []
    for seed in range(args.first_seed, args.first_seed + args.universes):
        work = args.work / f"seed{seed}"
        (work / "dagster_home").mkdir(parents=True, exist_ok=True)
        records += one_universe(work, seed, args)
    summary = summarise(records)
    write_json(rounded({"config": {k: str(v) if isinstance(v, Path) else v
                                   for k, v in vars(args).items()},
                        "code": os.environ.get("PYTHONPATH", "working tree"),
                        "summary": summary, "runs": records}),
               args.work / "calibration.json")  # fmt: skip
    for mode, s in summary.items():
        lo, hi = s["share_wilson_95"]
        say(f"{mode}: {s['runs_with_any_allow']}/{s['runs']} runs with a false ALLOW "
            f"(95 % {lo:.2f}-{hi:.2f}), {s['allow_per_run']:.2f} ALLOW per run, "
            f"median CI width {s['median_ci_width']:.4f}")


if __name__ == "__main__":
    main()
