"""Sensitivity-grid timings (issue #21, "Fast by design"): section ``grid`` of ``bench.run``.

``mf backtest-grid-run --input-type flow --input-file decoded_rows.parquet ... --json`` as a
user runs it, one child process per run (wall, the child's own CPU and peak RSS from
``wait4``), on the HMM run's decoded rows of split ``full`` (the rows the old tool's FLOW grid
read; built with :func:`bench.validation.prepare`). Two grids, settings defaults elsewhere:

* **100 combos**: hold 2,3,4,5,6,8,10,12,15,20 x fee 0,2,5,10,20 bps x exit ``horizon``,
  ``horizon_or_state``. Targets: < 10 s wall and < 2 GB peak for the whole command.
* **the old tool's 6**: hold 5,10,20 x fee 0,10 bps, the shape the old tool was timed on
  (186 s and 6.9 GB on the 300 x 20 y sample, 31 s per combo).

Each run also records the grid's own ``duration_sec`` and ``stage_seconds`` (load, simulate,
score, write) from its ``grid_summary.json``; the trades are summed from its metrics table.

``python -m bench.grid --input-file F`` measures on a lake that already exists (the pipeline
paths come from the environment) and merges the section into ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench import validation as val
from bench.common import PROJECT_ROOT, last_json_object, median_records, run_child, say
from bench.universe import mf_executable

SUMMARY = "grid_summary.json"
METRICS = "grid_metrics_table.parquet"
STAGES = ("load", "simulate", "score", "write")
GRIDS: dict[str, dict[str, str]] = {
    "100 combos": {"--hold-bars-grid": "2,3,4,5,6,8,10,12,15,20",
                   "--fee-bps-grid": "0,2,5,10,20",
                   "--exit-mode-grid": "horizon,horizon_or_state"},
    "old tool's 6": {"--hold-bars-grid": "5,10,20", "--fee-bps-grid": "0,10"},
}
"""Grid label -> its dimension options (the others are ``backtest_sensitivity.default_grid``)."""
TARGET_GRID = "100 combos"
OLD_S, OLD_PEAK_MB, OLD_COMBOS = 186.0, 6.9 * 1024, 6
TARGET_WALL_S, TARGET_PEAK_MB = 10.0, 2048.0


def command(path: Path, grid: str) -> list[str]:
    """The ``mf`` command line of one grid on ``path``."""
    dims = [part for option, value in GRIDS[grid].items() for part in (option, value)]
    return [mf_executable(), "backtest-grid-run", "--input-type", "flow", "--input-file",
            str(path), *dims, "--json"]


def _run_record(child: Any) -> dict[str, Any]:
    """One run: process facts, the asset's own seconds, the summary's seconds and counts."""
    import polars as pl

    out = last_json_object(child.stdout) or {}
    folder = Path(out["output_dir"])
    summary = json.loads((folder / SUMMARY).read_text())
    stages = summary.get("stage_seconds") or {}
    table = pl.read_parquet(folder / METRICS, columns=["trade_count", "rows_input"])
    asset = [float(m.group("s")) for _, text in child.lines
             if (m := val.ASSET_LINE.search(text))]
    return {**val._record(child), "asset_s": asset[-1] if asset else None,
            "duration_sec": summary["duration_sec"],
            **{f"{name}_s": stages.get(name) for name in STAGES},
            "combos": summary["total_combos"], "successful": summary["successful_combos"],
            "prepared": summary.get("combos_prepared"),
            "trades": int(table["trade_count"].sum()),
            "rows": int(table["rows_input"].max()) if table.height else None}


def _commit() -> str | None:
    """The measured commit, ``+dirty`` when ``mf_pipeline/`` has uncommitted changes (the tree
    is shared with work in progress)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True,
                              text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "mf_pipeline")
    return (head + ("+dirty" if dirty else "")) or None


def measure_grids(path: Path, env: dict[str, str] | None, repeat: int) -> dict[str, Any]:
    """``repeat`` runs of each grid of :data:`GRIDS` on ``path``; medians per grid."""
    result: dict[str, Any] = {"input": path.name, "repeat": repeat, "commit": _commit(),
                              "grids": {}}
    for grid in GRIDS:
        runs = []
        for index in range(repeat):
            say(f"backtest-grid-run flow, {grid}: run {index + 1}/{repeat} ({path.name})")
            child = run_child(command(path, grid), env=env, merge_stderr=True)
            if child.returncode != 0:
                raise RuntimeError(f"mf backtest-grid-run failed:\n{child.stdout[-4000:]}")
            rec = _run_record(child)
            runs.append(rec)
            print(f"    grid {rec['duration_sec']:6.2f} s ("
                  + ", ".join(f"{s} {rec[f'{s}_s'] or 0:.2f}" for s in STAGES)
                  + f")  wall {rec['wall_s']:6.2f} s  CPU {rec['cpu_s']:6.2f} s  peak "
                  f"{rec['peak_rss_mb']:6.0f} MB  {rec['combos']} combos  {rec['trades']:,} "
                  f"trades  load {rec['load_before'][0]:.1f}", flush=True)
        result["grids"][grid] = {"options": GRIDS[grid], "median": median_records(runs),
                                 "runs": runs}
    return result


def measure(raw: Path, work: Path, repeat: int) -> dict[str, Any]:
    """The ``grid`` section on a lake built for it from the universe ``raw``."""
    shutil.rmtree(work, ignore_errors=True)
    prepared = val.prepare(raw, work)
    result = measure_grids(prepared["files"]["flow"], prepared["env"], repeat)
    result["prepare_s"] = prepared["prepare_s"]
    return result


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def report_lines(entry: dict[str, Any]) -> list[str]:
    """Markdown of the ``grid`` section of a size entry (empty when not measured)."""
    g = entry.get("grid")
    if not g:
        return []
    old_per_combo = OLD_S / OLD_COMBOS
    out = [f"#### Sensitivity grid (issue #21): `backtest-grid-run`, measured "
           f"{g.get('measured', '?')} at commit {g.get('commit') or '?'}", "",
           f"`mf backtest-grid-run --input-type flow --input-file {g['input']} <dimensions> "
           f"--json` on the decoded HMM rows of split `full`, settings defaults for the "
           f"dimensions not given; median of {g['repeat']} run(s) per grid:", "",
           "| grid | dimensions | combos | rows | trades | grid s (`duration_sec`) | load | "
           "simulate | score | write | asset s | start → run s | wall s | CPU s | peak RSS MB | "
           "wall s / combo | others' CPU | load avg | old tool | speed-up / combo |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
           "|---:|---|---:|"]
    for name, grid in g["grids"].items():
        m = grid["median"]
        dims = ", ".join(f"`{k} {v}`" for k, v in grid["options"].items())
        combos = m.get("combos") or 0
        per_combo = m["wall_s"] / combos if combos else None
        loads = [x[0] for x in m.get("load_before") or []]
        old = (f"{OLD_S:.0f} s, {OLD_PEAK_MB / 1024:.1f} GB" if combos == OLD_COMBOS
               else f"{old_per_combo:.0f} s / combo")
        out.append(
            f"| {name} | {dims} | {combos:,.0f} | {m.get('rows') or 0:,.0f} | "
            f"{m.get('trades') or 0:,.0f} | {_fmt(m.get('duration_sec'))} | "
            + " | ".join(_fmt(m.get(f"{s}_s")) for s in STAGES)
            + " | " + " | ".join(_fmt(m.get(k)) for k in ("asset_s", "run_start_s", "wall_s",
                                                         "cpu_s", "peak_rss_mb"))
            + f" | {_fmt(per_combo)} | "
            f"{100 * (m.get('others_cpu_frac') or 0):.0f}% | "
            f"{min(loads, default=0):.1f}–{max(loads, default=0):.1f} | {old} | "
            f"{_fmt(old_per_combo / per_combo) + 'x' if per_combo else '–'} |")
    out += ["", "`duration_sec` is what the grid records: reading the rows, simulating every "
            "combo with its metrics (`simulate`), the manifest, robustness scores, per-exit-day "
            "returns and DSR/PBO (`score`), and the tables and aggregates (`write`); the "
            "Markdown and HTML reports are written after it and count in the asset's seconds "
            "(`<asset>: done in`) and the wall, which also adds the interpreter, imports and "
            "definitions (start → run: when the `run:` line arrived) and the Dagster run. "
            "The old tool's time is the whole command's.", ""]
    target = g["grids"].get(TARGET_GRID)
    if target:
        m = target["median"]
        wall, peak = m.get("wall_s"), m.get("peak_rss_mb")
        fast = wall is not None and wall < TARGET_WALL_S
        small = peak is not None and peak < TARGET_PEAK_MB
        out += [f"Targets for the {TARGET_GRID}: wall < {TARGET_WALL_S:.0f} s: "
                f"**{'met' if fast else 'not met'}** ({_fmt(wall)} s); peak of the whole command "
                f"< {TARGET_PEAK_MB / 1024:.0f} GB: **{'met' if small else 'not met'}** "
                f"({_fmt(peak)} MB). Each run's wall (others' CPU): "
                + ", ".join(f"{_fmt(r['wall_s'])} s ({100 * r['others_cpu_frac']:.0f}%)"
                            for r in target.get("runs") or []) + ".", ""]
    return out


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    from bench.report import render
    from bench.run import DEFAULT_DOC, DEFAULT_OUT, merge_results

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-file", type=Path, required=True,
                        help="Decoded HMM rows (decoded_rows.parquet) of an existing lake.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", default="small", help="Size entry of results.json to update.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC)
    args = parser.parse_args(argv)
    result = measure_grids(args.input_file, None, args.repeat)
    result["measured"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    results = merge_results(args.out, {"size": args.size, "grid": result}, None)
    args.doc.write_text(render(results))
    say(f"results: {args.out}; report: {args.doc}")


if __name__ == "__main__":
    main()
