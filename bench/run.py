"""Benchmark harness: ``python -m bench.run --size small|medium|large [--repeat 3]``.

Generates (once, cached under ``bench/cache/<size>/``) a sample universe with ``mf sample-data``,
then measures, each in child processes so every measurement gets its own peak RSS:

* ``layers``  — every layer through the pure functions (no Dagster), ``bench.layers``;
* ``mf_run``  — the whole ``mf run --until <last layer>`` cold, the no-change rerun and the
  run after one bar was appended to every file;
* ``startup`` — the CLI's fixed start-up cost (``mf --help``);
* ``dagster`` — Dagster's own bookkeeping per asset-partition (``bench.dagster_probe``), with
  and without ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1``;
* ``kernels`` — the 10M-row kernel micro-benchmarks (``bench.kernels``);
* ``validation`` — ``mf validation-run --input-file`` on the decoded HMM rows (flow and HMM
  states) and the clustered rows of split ``full``, plus the library calls of one run timed
  apart (``bench.validation``);
* ``validation_wf`` — ``mf validation-wf-run`` over the default train ends (``--wf-repeat``
  runs, default 1: minutes each);
* ``backtest`` — the backtest kernel on a synthetic 1.09M-row panel and the flow
  ``backtest-run`` step on a lake of its own (``bench.backtest``);
* ``grid`` — ``mf backtest-grid-run`` on the decoded flow rows: 100 combos and the old tool's
  6-combo shape, on a lake of its own (``bench.grid``).

``validation`` and ``validation_wf`` share one lake built for them (``mf run --until
ml_dataset``, then the HMM and clustering runs on ``full``), not timed against a target.

Results are merged into ``bench/results.json`` (one entry per size, plus ``kernels``) and
``docs/BENCHMARKS.md`` is regenerated from that file. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from bench import backtest as bt
from bench import grid as grid_bench
from bench import mfrun
from bench import validation as val
from bench.common import (
    BENCH_DIR,
    CACHE_DIR,
    PROJECT_ROOT,
    library_versions,
    machine_info,
    median_records,
    rounded,
    run_json_child,
    say,
    write_json,
)
from bench.universe import SIZES, Size, custom, ensure_universe

SECTIONS = ("layers", "mf_run", "startup", "dagster", "kernels", "validation", "validation_wf",
            "backtest", "grid")
DEFAULT_OUT = BENCH_DIR / "results.json"
DEFAULT_DOC = PROJECT_ROOT / "docs" / "BENCHMARKS.md"
EMIT_SUBSET = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
WF_MIN_YEARS = 15.0
"""Universe years ``validation_wf`` needs: every default train end has bars before it."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def measure_layers(raw: Path, work: Path, repeat: int, keep: bool = False) -> dict[str, Any]:
    """``repeat`` fresh processes of ``bench.layers``; per-layer medians."""
    runs = []
    for index in range(repeat):
        say(f"layers: run {index + 1}/{repeat}")
        shutil.rmtree(work, ignore_errors=True)
        args = ["--raw", str(raw), "--work", str(work)] + (["--keep"] if keep else [])
        runs.append(run_json_child("bench.layers", args))
        _print_layers(runs[-1]["layers"])
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    names = [r["layer"] for r in runs[0]["layers"]]
    median = [median_records([next(r for r in run["layers"] if r["layer"] == name)
                              for run in runs]) for name in names]
    return {
        "repeat": repeat,
        "median": median,
        "import_s": [r["import_s"] for r in runs],
        "warmup_s": [r["warmup_s"] for r in runs],
        "process": [r["process"] for r in runs],
        "runs": [r["layers"] for r in runs],
    }


def _print_layers(layers: list[dict[str, Any]]) -> None:
    for r in layers:
        rate = r.get("rows_per_s") or 0.0
        print(f"    {r['layer']:12s} {r['rows']:>11,} {r['unit']:5s} {r['wall_s']:8.3f} s "
              f"(compute {r['compute_wall_s']:.3f}, write {r['write_wall_s']:.3f}) "
              f"{rate:>12,.0f} {r['unit']}/s  peak {r['peak_rss_mb']:7.0f} MB", flush=True)


def measure_mf_run(raw: Path, work: Path, repeat: int, keep: bool = False,
                   until: str = "ml_dataset") -> dict[str, Any]:
    """``repeat`` cold ``mf run --until <until>`` builds, each followed by a no-change rerun
    and a run after one bar was appended to every file."""
    cold, noop, appends = [], [], []
    for index in range(repeat):
        say(f"mf run --until {until}: run {index + 1}/{repeat} (cold, no change, append)")
        first, again, appended = mfrun.measure(raw, work / f"run-{index}", until=until,
                                               keep=keep, append=True)
        cold.append(first)
        noop.append(again)
        appends.append(appended)
        for label, rec in (("cold", first), ("no change", again), ("append", appended)):
            if rec is None:
                continue
            per = rec.get("overhead_ms_per_asset_partition")
            per_text = "n/a" if per is None else f"{per:.1f}"
            print(f"    {label:9s} wall {rec['wall_s']:7.2f} s  dagster run "
                  f"{rec['dagster_run_s'] or 0:7.2f} s  assets {rec['sum_asset_seconds']:7.2f} s "
                  f"peak {rec['peak_rss_mb']:6.0f} MB  overhead/asset-partition "
                  f"{per_text} ms", flush=True)
    return {
        "repeat": repeat,
        "until": until,
        "cold": {"median": median_records(_flat(cold)), "runs": cold},
        "no_change": {"median": median_records(_flat([r for r in noop if r])),
                      "runs": [r for r in noop if r]},
        "append": {"median": median_records(_flat([r for r in appends if r])),
                   "runs": [r for r in appends if r]},
    }


def _flat(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without nested fields (medians are taken over the scalar ones)."""
    return [{k: v for k, v in r.items() if not isinstance(v, dict)} for r in records]


EVENT_BATCH = "DAGSTER_EVENT_BATCH_SIZE"
DAGSTER_CONFIGS = (
    ("stock", "without_subset_env", None),
    ("stock", "with_subset_env", "1"),
    ("project", "project_with_subset_env", "1"),
)


def measure_dagster(work: Path, partitions: int, runs: int, repeat: int, assets: int = 5,
                    configs: set[str] | None = None) -> dict[str, Any]:
    """The no-IO probe in fresh processes: stock SQLite instance with and without the
    planned-events env var, and the instance configuration ``mf`` itself writes."""
    result: dict[str, Any] = {"partitions": partitions, "runs_per_partition": runs,
                              "assets": assets}
    for instance, label, value in DAGSTER_CONFIGS:
        if configs is not None and label not in configs:
            continue
        env = dict(os.environ)
        env.pop(EMIT_SUBSET, None)
        env.pop(EVENT_BATCH, None)
        if value is not None:
            env[EMIT_SUBSET] = value
        if instance == "project":  # as mf's code location sets it (definitions.py)
            env[EVENT_BATCH] = "1000"
        records = []
        for index in range(repeat):
            home = work / f"{label}-{index}"
            shutil.rmtree(home, ignore_errors=True)
            say(f"dagster probe {label}: run {index + 1}/{repeat} ({partitions} partitions)")
            rec = run_json_child("bench.dagster_probe",
                                 ["--home", str(home), "--partitions", str(partitions),
                                  "--runs", str(runs), "--assets", str(assets),
                                  "--instance", instance], env=env)
            shutil.rmtree(home, ignore_errors=True)
            process = rec.pop("process")
            rec.update(load_before=process["load_before"], load_after=process["load_after"],
                       others_cpu_frac=process["others_cpu_frac"],
                       steal_frac=process.get("steal_frac"))
            records.append(rec)
            print(f"    range {rec['range_run_s']:.2f} s = "
                  f"{rec['range_ms_per_asset_partition']:.2f} ms/asset-partition "
                  f"(marginal {rec['range_marginal_ms_per_asset_partition']:.2f}); "
                  f"1-partition run {rec['one_partition_run_s']:.3f} s; per-partition runs "
                  f"{rec['per_partition_run_s'] or 0:.3f} s each", flush=True)
        result[label] = {"median": median_records(records), "runs": records}
    return result


def measure_kernels(tickers: int, bars: int, repeat: int, mem_mib: int) -> dict[str, Any]:
    say(f"kernels: {tickers:,} x {bars:,} = {tickers * bars:,} rows, repeat {repeat}")
    payload = run_json_child("bench.kernels", ["--tickers", str(tickers), "--bars", str(bars),
                                               "--repeat", str(repeat), "--mem-mib",
                                               str(mem_mib)])
    payload.update(machine=machine_info(), versions=library_versions(), measured=_now())
    return payload


def measure_validation(raw: Path, work: Path, sections: set[str], repeat: int,
                       wf_repeat: int, years: float) -> dict[str, Any]:
    """The ``validation`` and ``validation_wf`` sections on one lake built for them."""
    shutil.rmtree(work, ignore_errors=True)
    prepared = val.prepare(raw, work)
    out: dict[str, Any] = {}
    if "validation" in sections:
        out["validation"] = val.measure_validation(prepared, repeat)
        out["validation"]["phases"] = val.measure_phases(prepared)
        out["validation"].update(prepare_s=prepared["prepare_s"], measured=_now())
    if "validation_wf" in sections and years < WF_MIN_YEARS:
        say(f"validation_wf skipped: the default train ends start at 2012-12-31 and sample "
            f"universes end 2025-12-31, so {years:g} y of bars leave the first splits empty")
    elif "validation_wf" in sections:
        out["validation_wf"] = val.measure_wf(prepared, wf_repeat)
        out["validation_wf"]["measured"] = _now()
    return out


def measure_size(size: Size, sections: set[str], repeat: int, cache_dir: Path = CACHE_DIR,
                 dagster_partitions: int = 300, dagster_runs: int = 10,
                 keep: bool = False, dagster_configs: set[str] | None = None,
                 wf_repeat: int = 1) -> dict[str, Any]:
    """Every requested section except ``kernels`` for one universe size."""
    entry: dict[str, Any] = {
        "size": size.name, "label": size.label, "repeat": repeat, "started": _now(),
        "machine": machine_info(cache_dir if cache_dir.exists() else BENCH_DIR),
        "versions": library_versions(),
    }
    validation = sections & {"validation", "validation_wf"}
    needs_universe = bool(sections & {"layers", "mf_run", "backtest", "grid"} or validation)
    work = cache_dir / size.name / "work"
    if needs_universe:
        raw, facts = ensure_universe(size, cache_dir)
        entry["universe"] = facts
        say(f"universe {size.name}: {facts['files']:,} files, {facts.get('bars') or 0:,} bars, "
            f"{facts['bytes'] / 1e6:.1f} MB ({'cached' if facts.get('cached') else 'generated'})")
        if "layers" in sections:
            entry["layers"] = measure_layers(raw, work / "layers", repeat, keep)
            entry["layers"]["measured"] = _now()
        if "mf_run" in sections:
            entry["mf_run"] = measure_mf_run(raw, work / "mf_run", repeat, keep, size.until)
            entry["mf_run"]["measured"] = _now()
        if validation:
            entry.update(measure_validation(raw, work / "validation", validation, repeat,
                                            wf_repeat, size.years))
        if "backtest" in sections:
            entry["backtest"] = bt.measure(raw, work / "backtest", repeat)
            entry["backtest"]["measured"] = _now()
        if "grid" in sections:
            entry["grid"] = grid_bench.measure(raw, work / "grid", repeat)
            entry["grid"]["measured"] = _now()
    if "startup" in sections:
        say("start-up: mf --help")
        entry["startup"] = mfrun.startup(repeat)
        entry["startup"]["measured"] = _now()
    if "dagster" in sections:
        entry["dagster"] = measure_dagster(work / "dagster", dagster_partitions, dagster_runs,
                                           repeat, configs=dagster_configs)
        entry["dagster"]["measured"] = _now()
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    entry["finished"] = _now()
    entry["loadavg_after"] = list(os.getloadavg())
    return entry


def merge_results(path: Path, size_entry: dict[str, Any] | None,
                  kernels: dict[str, Any] | None) -> dict[str, Any]:
    """Update ``path`` in place (other sizes are kept) and return the whole document."""
    results: dict[str, Any] = {"schema": 1, "sizes": {}, "kernels": None}
    if path.exists():
        try:
            results.update(json.loads(path.read_text()))
        except json.JSONDecodeError:
            say(f"warning: {path} is not valid JSON; starting a new one")
    if size_entry is not None:
        # Sections measured now replace their old values; the others are kept.
        kept = results["sizes"].get(size_entry["size"]) or {}
        results["sizes"][size_entry["size"]] = {**kept, **rounded(size_entry)}
    if kernels is not None:
        results["kernels"] = rounded(kernels)
    results["updated"] = _now()
    write_json(results, path)
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--tickers", type=int, help="Custom universe (overrides --size).")
    parser.add_argument("--years", type=float, default=20.0, help="With --tickers.")
    parser.add_argument("--repeat", type=int,
                        help="Runs per measurement, median reported (default 3; large 1).")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"Comma-separated sections of {', '.join(SECTIONS)}.")
    parser.add_argument("--skip", default="", help="Comma-separated sections to leave out.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--doc", type=Path,
                        help="Report to regenerate (default docs/BENCHMARKS.md for the default "
                        "--out, else next to --out with suffix .md).")
    parser.add_argument("--no-doc", action="store_true", help="Do not regenerate the doc.")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--dagster-partitions", type=int, default=300)
    parser.add_argument("--dagster-runs", type=int, default=10)
    parser.add_argument("--dagster-configs",
                        help="Comma-separated probe configurations (default all): "
                        + ", ".join(label for _, label, _ in DAGSTER_CONFIGS))
    parser.add_argument("--wf-repeat", type=int, default=1,
                        help="Runs of mf validation-wf-run (section validation_wf).")
    parser.add_argument("--kernel-tickers", type=int, default=2000)
    parser.add_argument("--kernel-bars", type=int, default=5000)
    parser.add_argument("--kernel-repeat", type=int, default=5)
    parser.add_argument("--kernel-mem-mib", type=int, default=1024)
    parser.add_argument("--keep-work", action="store_true", help="Keep written lakes.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = custom(args.tickers, args.years) if args.tickers else SIZES[args.size]
    repeat = args.repeat or (1 if size.name == "large" else 3)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    sections -= {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        print(f"unknown sections: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    say(f"size {size.name} ({size.label}), repeat {repeat}, sections "
        f"{', '.join(s for s in SECTIONS if s in sections)}; load {os.getloadavg()}")
    entry = None
    if sections - {"kernels"}:
        configs = set(args.dagster_configs.split(",")) if args.dagster_configs else None
        entry = measure_size(size, sections, repeat, args.cache_dir, args.dagster_partitions,
                             args.dagster_runs, args.keep_work, configs, args.wf_repeat)
    kernels = None
    if "kernels" in sections:
        kernels = measure_kernels(args.kernel_tickers, args.kernel_bars, args.kernel_repeat,
                                  args.kernel_mem_mib)
    results = merge_results(args.out, entry, kernels)
    say(f"results: {args.out}")
    if not args.no_doc:
        from bench.report import render

        doc = args.doc or (DEFAULT_DOC if args.out.resolve() == DEFAULT_OUT.resolve()
                           else args.out.with_suffix(".md"))
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(render(results))
        say(f"report: {doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
