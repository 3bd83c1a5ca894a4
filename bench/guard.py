"""Regression guard: ``python -m bench.guard`` (under a minute on the 2-core machine).

Runs the pure layer functions once on the tiny universe (60 tickers x 10 y, cached) and one
``mf run --until ml_dataset`` through Dagster, then prints one ``bench-guard`` line per layer
with rows/s, so a slowdown shows in CI logs. It never asserts on time.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from bench import mfrun
from bench.common import CACHE_DIR, rounded, say, write_json
from bench.run import measure_layers
from bench.universe import SIZES, custom, ensure_universe


def guard(tickers: int | None = None, years: float | None = None,
          cache_dir: Path = CACHE_DIR, mf_run: bool = True) -> dict[str, Any]:
    """Measure the guard workload; return the record that :func:`report` prints."""
    tiny = SIZES["tiny"]
    size = tiny if tickers is None else custom(tickers, years or tiny.years)
    raw, facts = ensure_universe(size, cache_dir)
    work = cache_dir / size.name / "guard-work"
    result: dict[str, Any] = {"size": size.name, "universe": facts,
                              "loadavg": list(os.getloadavg())}
    result["layers"] = measure_layers(raw, work / "layers", repeat=1)["median"]
    if mf_run:
        say("mf run --until ml_dataset (cold)")
        cold, _, _ = mfrun.measure(raw, work / "mf_run", noop=False)
        result["mf_run"] = {k: v for k, v in cold.items() if k != "metadata"}
    shutil.rmtree(work, ignore_errors=True)
    return result


def report(result: dict[str, Any]) -> list[str]:
    """Grep-able lines: ``bench-guard <what> rows=… seconds=… rows_per_s=…``."""
    lines = [f"bench-guard universe={result['size']} bars={result['universe'].get('bars')} "
             f"load={result['loadavg'][0]:.2f}"]
    for r in result["layers"]:
        lines.append(f"bench-guard layer={r['layer']} rows={r['rows']} unit={r['unit']} "
                     f"seconds={r['wall_s']:.3f} rows_per_s={r['rows_per_s'] or 0:.0f} "
                     f"peak_rss_mb={r['peak_rss_mb']:.0f} others_cpu={r['others_cpu_frac']:.2f}")
    run = result.get("mf_run")
    if run:
        per = run.get("overhead_ms_per_asset_partition")
        lines.append(f"bench-guard mf_run wall={run['wall_s']:.2f} "
                     f"dagster_run={run['dagster_run_s'] or 0:.2f} "
                     f"assets={run['sum_asset_seconds']:.2f} "
                     f"bars_per_s={run['bars_per_s'] or 0:.0f} "
                     f"overhead_ms_per_asset_partition={per if per is None else round(per, 2)} "
                     f"peak_rss_mb={run['peak_rss_mb']:.0f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.guard", description=__doc__)
    parser.add_argument("--tickers", type=int, help="Custom universe instead of tiny.")
    parser.add_argument("--years", type=float)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--no-mf-run", action="store_true", help="Skip the Dagster run.")
    parser.add_argument("--json", type=Path, help="Also write the record here.")
    args = parser.parse_args(argv)
    result = guard(args.tickers, args.years, args.cache_dir, not args.no_mf_run)
    for line in report(result):
        print(line, flush=True)
    if args.json:
        write_json(rounded(result), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
