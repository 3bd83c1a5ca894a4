"""Render ``docs/BENCHMARKS.md`` from ``bench/results.json`` (``python -m bench.report``)."""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.backtest import report_lines as backtest_lines
from bench.grid import report_lines as grid_lines

SIZE_ORDER = ("tiny", "small", "medium", "large")


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "–"
        if abs(value) < 0.0005:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"
    return str(value)


def _rate(value: Any) -> str:
    if not isinstance(value, int | float):
        return "–"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.0f} k"
    return f"{value:.0f}"


def _pct(value: Any) -> str:
    return "–" if not isinstance(value, int | float) else f"{100 * value:.0f}%"


def _load(value: Any) -> str:
    """First (1-minute) load average of one record, or the range over several runs."""
    if not value:
        return "–"
    if isinstance(value[0], list):
        ones = [v[0] for v in value if v]
        lo, hi = min(ones), max(ones)
        return f"{lo:.1f}" if lo == hi else f"{lo:.1f}–{hi:.1f}"
    return f"{value[0]:.1f}"


def _when(section: dict[str, Any]) -> str:
    return f", measured {section['measured']}" if section.get("measured") else ""


def _runs(d: dict[str, Any]) -> list[Any]:
    return (d.get("with_subset_env") or d.get("without_subset_env") or {}).get("runs") or []


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out + [""]


def _machine(entry: dict[str, Any]) -> str:
    m = entry.get("machine") or {}
    fs = m.get("filesystem") or {}
    return (f"{m.get('usable_cpus') or m.get('logical_cpus')} CPUs ({m.get('cpu_model')}), "
            f"{m.get('ram_gib')} GiB RAM ({m.get('ram_available_gib')} available), swap "
            f"{m.get('swap_gib')} GiB, Linux {m.get('kernel')}, Python {m.get('python')}, "
            f"THP `{m.get('thp')}`, {fs.get('fstype', '?')} on {fs.get('device', '?')}"
            f"{_probe(m)}")


def _probe(machine: dict[str, Any]) -> str:
    if machine.get("cpu_probe_ms") is None:
        return ""
    return (f"; CPU probe {machine['cpu_probe_ms']:.0f} ms ({machine['cpu_probe_steps']:,}-step "
            "Python loop, best of 3; this shared VM's speed varies by day: compare entries "
            "by it)")


def _layers(entry: dict[str, Any]) -> list[str]:
    layers = entry.get("layers")
    if not layers:
        return []
    out = [f"#### Layers through the pure functions (no Dagster) — median of "
           f"{layers['repeat']} run(s){_when(layers)}", ""]
    rows = []
    for r in layers["median"]:
        unit = r.get("unit", "rows")
        rows.append([
            f"**{r['layer']}**" if r["layer"] == "total" else r["layer"],
            f"{_num(r['rows'])} {unit if unit != 'rows' else ''}".strip(),
            _num(r["wall_s"]), _num(r["compute_wall_s"]), _num(r["write_wall_s"]),
            _num(r.get("one_file_write_wall_s")) if "one_file_write_wall_s" in r else "–",
            _num(r["cpu_s"]), f"{_rate(r.get('rows_per_s'))}/s",
            _num(r.get("peak_rss_mb")), _num(r.get("files_written")),
            _num((r.get("bytes_written") or 0) / 1e6), _pct(r.get("others_cpu_frac")),
            _load(r.get("load_before")),
        ])
    out += _table(["layer", "rows", "wall s", "compute s", "write s", "as one file: write s",
                   "CPU s", "rows/s",
                   "peak RSS MB", "files", "MB written", "others' CPU", "load"], rows)
    imports = layers.get("import_s") or []
    procs = layers.get("process") or []
    if imports and procs:
        out.append(f"Per process: imports {_num(min(imports))}–{_num(max(imports))} s, "
                   f"warm-up pass {_num(min(layers['warmup_s']))} s, whole process peak RSS "
                   f"{_num(max(p['peak_rss_mb'] for p in procs))} MB. `total` rows/s = Bronze "
                   "bars / summed wall of every layer. \"as one file\": the same rows "
                   "written as one Parquet file per layer instead of one per ticker (timed "
                   "apart, not in the wall).")
        out.append("")
    return out


def _mf_run(entry: dict[str, Any]) -> list[str]:
    run = entry.get("mf_run")
    if not run:
        return []
    out = [f"#### Whole pipeline: `mf run --until {run.get('until', 'ml_dataset')}` "
           f"(one process, through Dagster) — "
           f"median of {run['repeat']} run(s){_when(run)}", ""]
    rows = []
    for label, key in (("cold (all NEW)", "cold"), ("no change (all UNCHANGED)", "no_change"),
                       ("one bar appended to every file (all APPENDED)", "append")):
        r = (run.get(key) or {}).get("median")
        if not r:
            continue
        rows.append([
            label, _num(r.get("wall_s")), _num(r.get("cpu_s")), _num(r.get("peak_rss_mb")),
            _num(r.get("run_start_s")), _num(r.get("dagster_run_s")),
            _num(r.get("sum_asset_seconds")), _num(r.get("run_minus_asset_seconds")),
            _num(r.get("overhead_ms_per_asset_partition")), f"{_rate(r.get('bars_per_s'))}/s",
            _num(r.get("dagster_home_mb")), _pct(r.get("others_cpu_frac")),
            _load(r.get("load_before")),
        ])
    out += _table(["run", "wall s", "CPU s", "peak RSS MB", "start → run s", "Dagster run s",
                   "Σ asset s", "run − assets s", "ms / asset-partition", "bars/s",
                   "DAGSTER_HOME MB", "others' CPU", "load"], rows)
    reads = ((run.get("append") or {}).get("median") or {})
    if reads.get("lake_reads.viewer_read_ms_again") is not None:
        out += [f"Readers on the lake after the append (`bench/lake_reads.py`): the viewer reads "
                f"one ticker in {_num(reads.get('lake_reads.viewer_read_ms_first'))} ms "
                f"({_num(reads.get('lake_reads.viewer_read_ms_again'))} ms again; median of "
                f"20 tickers); `mf sql` `SELECT ticker, count(*), avg(close), max(trade_date) "
                f"FROM silver GROUP BY ticker` takes "
                f"{_num(reads.get('lake_reads.sql_aggregate_s'))} s; the data folder holds "
                f"{_num(reads.get('lake_reads.parquet_files'))} Parquet files.", ""]
    cold_runs = (run.get("cold") or {}).get("runs") or []
    if cold_runs:
        per_asset: dict[str, list[float]] = {}
        for rec in cold_runs:
            for name, seconds in (rec.get("asset_seconds") or {}).items():
                per_asset.setdefault(name, []).append(seconds)
        pure = {r["layer"]: r for r in (entry.get("layers") or {}).get("median", [])}
        rows = []
        for name in ("manifest", "bronze", "silver", "indicators", "events", "features"):
            if name not in per_asset:
                continue
            values = sorted(per_asset[name])
            layer = pure.get(name, {})
            pure_s = layer.get("wall_s")
            if name == "silver" and "bronze_read" in pure and pure_s is not None:
                pure_s += pure["bronze_read"]["wall_s"]
            rows.append([name, _num(values[len(values) // 2]), _num(pure_s)])
        out.append("Seconds each asset reports in the cold run (median) next to the same "
                   "layer through the pure functions (silver includes reading Bronze back):")
        out.append("")
        out += _table(["asset", "in `mf run` s", "pure functions s"], rows)
    startup = entry.get("startup")
    if startup:
        out.append(f"CLI start-up: `mf --help` takes {_num(startup['mf_help_s'])} s "
                   f"(median of {startup['runs']}).")
        out.append("")
    return out


PART_ORDER = ("process start", "CLI: imports", "CLI: settings", "Dagster definitions",
              "lake lock", "CLI: raw tree", "CLI: planning", "Dagster instance",
              "Dagster run: start", "asset body", "asset planning", "check body", "asset metadata",
              "Dagster event log", "Dagster run: around", "Dagster run: end", "CLI: the run",
              "CLI: summary")
"""How the parts of a run are listed: in the order a run passes through them."""
PART_GROUPS = (
    ("start-up: interpreter, imports, settings, definitions, instance",
     ("process start", "CLI: imports", "CLI: settings", "Dagster definitions",
      "Dagster instance")),
    ("planning: lake lock, raw classification, stale tickers", ("lake lock", "CLI: raw tree",
                                                               "CLI: planning")),
    ("asset and check bodies", ("asset body", "asset planning", "check body",
                                "asset metadata")),
    ("Dagster's own run machinery and event-log writes", ("Dagster run", "Dagster event log")),
    ("the CLI's summary and output", ("CLI: the run", "CLI: summary")),
)
"""The parts in five groups, for the short table."""
RUN_KINDS = (("cold", "cold"), ("no change", "no_change"), ("appended", "append"))


def _part_rank(name: str) -> tuple[int, str]:
    rank = next((i for i, prefix in enumerate(PART_ORDER) if name.startswith(prefix)),
                len(PART_ORDER))
    return rank, name


def _accounting(entry: dict[str, Any]) -> list[str]:
    """Every second of the runs: the parts each ``mf run`` measured itself (median over the
    repetitions), grouped and in full, and what is left of the wall once they are taken off."""
    run = entry.get("mf_run") or {}
    columns = [(label, (run.get(key) or {}).get("runs") or []) for label, key in RUN_KINDS]
    columns = [(label, [r for r in runs if r.get("parts_s")]) for label, runs in columns]
    columns = [(label, runs) for label, runs in columns if runs]
    if not columns:
        return []
    walls = {label: statistics.median(r["wall_s"] for r in runs) for label, runs in columns}

    def row(label: str, pick: Any) -> list[str]:
        cells = [label]
        for kind, runs in columns:
            value = statistics.median(pick(r) for r in runs)
            cells += [_num(value), f"{100 * value / walls[kind]:.1f}%"]
        return cells

    def summed(prefixes: Sequence[str]) -> Any:
        return lambda r: sum(v for n, v in r["parts_s"].items() if n.startswith(tuple(prefixes)))

    remainder = row("**unexplained remainder**", lambda r: r["parts_remainder_s"])
    wall = row("**wall**", lambda r: r["wall_s"])
    header = ["part"] + [f"{label} {unit}" for label, _ in columns for unit in ("s", "of wall")]
    grouped = [row(label, summed(prefixes)) for label, prefixes in PART_GROUPS]
    grouped.insert(3, row("… of which the assets report as their own seconds",
                          lambda r: r.get("sum_asset_seconds") or 0.0))
    names = sorted({name for _, runs in columns for r in runs for name in r["parts_s"]},
                   key=_part_rank)
    out = ["#### Every second of a run: the parts `mf run` measures itself — median of "
           f"{max(len(runs) for _, runs in columns)} run(s){_when(run)}", ""]
    out += _table(header, [*grouped, remainder, wall])
    out += ["Each part (parts nest; each keeps only its own seconds):", ""]
    out += _table(header, [*(row(name, lambda r, n=name: r["parts_s"].get(n, 0.0))
                             for name in names), remainder, wall])
    return out


# Issue #4: the old tool's six layer processes take ~35 s on 300 tickers x 20 y; ours must be
# >= 15x faster, Dagster's start, imports and run bookkeeping included.
OLD_TOOL_SMALL_S = 35.0
TARGET_SPEEDUP = 15


def _budget(entry: dict[str, Any]) -> list[str]:
    """The cold run against the 15x target, taken apart with this entry's own measurements."""
    total = next((r for r in (entry.get("layers") or {}).get("median", [])
                  if r["layer"] == "total"), None)
    run = entry.get("mf_run") or {}
    cold = (run.get("cold") or {}).get("median")
    fixed = (run.get("no_change") or {}).get("median")
    if not (total and cold and fixed and "one_file_write_cpu_s" in total):
        return []
    cores = (entry.get("machine") or {}).get("usable_cpus") or 1
    target = OLD_TOOL_SMALL_S / TARGET_SPEEDUP
    compute, per_ticker, one_file = (total["compute_cpu_s"], total["write_cpu_s"],
                                     total["one_file_write_cpu_s"])
    rows = [
        ["target: the old tool's ~35 s / 15", _num(target), "issue #4"],
        ["cold `mf run --until ml_dataset`, measured", _num(cold["wall_s"]),
         f"{_num(cold['cpu_s'])} CPU s; {OLD_TOOL_SMALL_S / cold['wall_s']:.1f}x the old tool"],
        ["fixed cost: the same run with nothing to do", _num(fixed["wall_s"]),
         "imports, settings, raw classification, Dagster definitions, instance, run start "
         "and bookkeeping"],
        ["every layer's compute, CPU s", _num(compute),
         "pure functions after a warm-up; with reading Bronze back and the ML export"],
        ["per-ticker Parquet files, CPU s", _num(per_ticker),
         f"{_num(total['files_written'])} files, zstd"],
        ["the same rows as one file per layer, CPU s", _num(one_file), "same settings"],
        [f"lower bound, per-ticker files: fixed + (compute + writes) / {cores} cores",
         _num(fixed["wall_s"] + (compute + per_ticker) / cores), "perfect use of every core"],
        ["lower bound, one file per layer", _num(fixed["wall_s"] + (compute + one_file) / cores),
         "a different storage contract"],
    ]
    out = ["#### The 15x target: what a cold run is made of", ""]
    out += _table(["part", "s", "how measured"], rows, "lrl")
    return out


def _dagster(entry: dict[str, Any]) -> list[str]:
    d = entry.get("dagster")
    if not d:
        return []
    out = [f"#### Dagster bookkeeping: no-IO partitioned asset, fresh SQLite `DAGSTER_HOME` "
           f"({d['partitions']:,} partitions in one range run; {d['runs_per_partition']} "
           f"one-partition runs; median of {len(_runs(d))} process(es)){_when(d)}", ""]
    rows = []
    for label, key in (("stock SQLite, env unset", "without_subset_env"),
                       ("stock SQLite, env `=1`", "with_subset_env"),
                       ("`mf`'s dagster.yaml, env `=1`", "project_with_subset_env")):
        r = (d.get(key) or {}).get("median")
        if not r:
            continue
        rows.append([
            label, _num(r.get("one_partition_run_s")), _num(r.get("range_run_s")),
            _num(r.get("range_ms_per_asset_partition")),
            _num(r.get("range_marginal_ms_per_asset_partition")),
            _num(r.get("per_partition_run_s")), _num(r.get("range_kb_per_materialization")),
            _num(r.get("shard_range_run_s")), _num(r.get("shard_ms_per_asset_ticker")),
            _num(r.get("import_dagster_s")), _pct(r.get("others_cpu_frac")),
            _load(r.get("load_before")),
        ])
    out += _table(["instance, EMIT_PARTITION_SUBSET", "1-partition run s", "range run s",
                   "ms / asset-partition", "marginal ms", "s per 1-partition run",
                   "KB / materialization", "27-shard run s", "shards: ms / asset-ticker",
                   "import dagster s", "others' CPU", "load"], rows)
    return out


# Issue #19: the old tool on the 300 x 20 y sample (1.09M rows, 5 states, one process each).
# Ours: one validation-run >= 10x faster (<= 5 s) under 1.5 GB peak; the whole walk-forward
# over the default splits >= 10x faster.
OLD_VALIDATION_S = {"flow": 50.0, "hmm": 36.0, "cluster": 40.0}
OLD_VALIDATION_NOTE = {"flow": "45 CPU s, 1.35 GB"}
OLD_WF_SPLIT_S = 8.7 * 60  # one split, silhouette 6.6 min of it
OLD_WF_ALL_S = 45 * 60  # all five default splits
VALIDATION_TARGET_S = 5.0
VALIDATION_TARGET_MB = 1.5 * 1024
WF_SPEEDUP = 10
WF_GROUPS = (("HMM fit + decode", ("hmm_model", "hmm_states")),
             ("clustering fit + labels", ("cluster_model", "cluster_labels")),
             ("validations", ("state_validation_flow", "state_validation_hmm",
                              "state_validation_cluster")),
             ("QA + policy", ("cluster_qa_flow", "cluster_qa_hmm", "cluster_qa_cluster",
                              "state_policy_flow", "state_policy_hmm", "state_policy_cluster")))
"""Asset groups of one walk-forward split (the run's assets, as its progress lines name them)."""


def _ratio(old: float | None, new: Any) -> str:
    return f"{old / new:.1f}x" if old and isinstance(new, int | float) and new > 0 else "–"


def _validation(entry: dict[str, Any], old: bool) -> list[str]:
    """``mf validation-run`` per source, then the library calls of one run, phase by phase."""
    v = entry.get("validation")
    if not v:
        return []
    sources = [s for s in ("flow", "hmm", "cluster") if s in v]
    out = [f"#### Validation: `mf validation-run --input-file` (one process, through Dagster) "
           f"— median of {v['repeat']} run(s){_when(v)}", ""]
    rows = []
    for source in sources:
        r = v[source]["median"]
        row = [f"{source} (`{v[source]['file']}`)", _num(r.get("rows")), _num(r.get("states")),
               _num(r.get("wall_s")), _num(r.get("cpu_s")), _num(r.get("peak_rss_mb")),
               _num(r.get("run_start_s")), _num(r.get("dagster_run_s")), _num(r.get("step_s")),
               _num(r.get("block_length")), _pct(r.get("others_cpu_frac")),
               _load(r.get("load_before"))]
        if old:
            base = OLD_VALIDATION_S[source]
            note = OLD_VALIDATION_NOTE.get(source)
            row += [f"{base:.0f}" + (f" ({note})" if note else ""),
                    _ratio(base, r.get("wall_s"))]
        rows.append(row)
    header = ["states of", "rows", "states", "wall s", "CPU s", "peak RSS MB",
              "start → run s", "Dagster run s", "step s", "block", "others' CPU", "load"]
    out += _table(header + (["old tool s", "speed-up"] if old else []), rows)
    if old:
        walls = [v[s]["median"].get("wall_s") or 0 for s in sources]
        peaks = [v[s]["median"].get("peak_rss_mb") or 0 for s in sources]
        met = max(walls) <= VALIDATION_TARGET_S and max(peaks) <= VALIDATION_TARGET_MB
        out += [f"Target (issue #19): each run <= {VALIDATION_TARGET_S:.0f} s wall (>= 10x the "
                f"old tool) under {VALIDATION_TARGET_MB / 1024:.1f} GB peak: "
                f"**{'met' if met else 'not met'}** at this load (slowest {max(walls):.2f} s, "
                f"largest peak {max(peaks):.0f} MB).", ""]
    phases = v.get("phases") or {}
    if phases:
        names = [p["phase"] for p in phases[sources[0]]["phases"]]
        rows = []
        for name in names:
            recs = [next(p for p in phases[s]["phases"] if p["phase"] == name) for s in sources]
            rows.append([name, *(f"{_num(r['wall_s'])} ({_num(r['cpu_s'])})" for r in recs),
                         _num(max(r["peak_rss_mb"] for r in recs))])
        rows.append(["import", *(_num(phases[s]["import_s"]) for s in sources), "–"])
        out += ["Where one run's time goes: the library calls of a run with settings defaults "
                "in a child process (no Dagster, output files not written), wall s per phase "
                "with CPU s in brackets; peak RSS is each phase's own (the frames still held "
                "count):", ""]
        out += _table(["phase", *(f"{s} s" for s in sources), "peak RSS MB"], rows)
        out += _dominant(v, phases, sources)
    return out


def _dominant(v: dict[str, Any], phases: dict[str, Any], sources: list[str]) -> list[str]:
    """One sentence per source: fixed cost, the Dagster run, and the largest library phase."""
    parts = []
    for s in sources:
        r = v[s]["median"]
        recs = phases[s]["phases"]
        top = max(recs, key=lambda p: p["wall_s"])
        wall, cpu = (sum(p[k] for p in recs) for k in ("wall_s", "cpu_s"))
        parts.append(f"{s}: {_num(r.get('run_start_s'))} s before the Dagster run starts "
                     f"(imports, settings, definitions), {_num(r.get('dagster_run_s'))} s run; "
                     f"the library calls {_num(wall)} s ({_num(cpu)} CPU s), {top['phase']} "
                     f"{_num(top['wall_s'])} s the largest")
    return ["What dominates: " + "; ".join(parts) + ".", ""]


def _wf(entry: dict[str, Any], old: bool) -> list[str]:
    """``mf validation-wf-run`` per split (asset groups) and in total."""
    w = entry.get("validation_wf")
    if not w:
        return []
    out = [f"#### Walk-forward validation: `mf validation-wf-run --force` over the default "
           f"train ends (one process) — {w['repeat']} run(s){_when(w)}", ""]
    run = min(w["runs"], key=lambda r: r["wall_s"]) if w["runs"] else None
    if run is None:
        return []
    rows = []
    totals = {label: 0.0 for label, _ in WF_GROUPS}
    for split in run["runs"]:
        assets = split.get("assets") or {}
        groups = [[assets[a] for a in names if a in assets] for _, names in WF_GROUPS]
        for (label, _), values in zip(WF_GROUPS, groups, strict=True):
            totals[label] += sum(values)
        rows.append([split.get("key") or "aggregate (`wf_validation`)",
                     _num(split.get("common_rows")), _num(split.get("wall_s")),
                     _num(split.get("dagster_run_s")),
                     *(_num(sum(g)) if g else "–" for g in groups)])
    out += _table(["split", "common rows", "wall s", "Dagster run s",
                   *(f"{label} s" for label, _ in WF_GROUPS)], rows)
    r = w["median"]
    text = (f"Whole command (fastest of {len(w['runs'])}): **{_num(run['wall_s'])} s wall**, "
            f"{_num(run['cpu_s'])} CPU s, peak RSS {_num(run['peak_rss_mb'])} MB, "
            f"{r.get('splits_successful')}/{r.get('splits_total')} splits, others' CPU "
            f"{_pct(run.get('others_cpu_frac'))}, load {_load(run.get('load_before'))}. ")
    asset_total = sum(totals.values())
    if asset_total > 0:
        text += ("Asset seconds summed over the splits: " + ", ".join(
            f"{label} {_num(value)} s ({100 * value / asset_total:.0f}%)"
            for label, value in totals.items()) + ".")
    out += [text, ""]
    if old:
        splits = [s for s in run["runs"] if s.get("key")]
        per_split = max((s.get("wall_s") or 0 for s in splits), default=None)
        target = OLD_WF_ALL_S / WF_SPEEDUP
        out += _table(["run", "old tool", "ours", "speed-up", "target"], [
            ["slowest split", f"{OLD_WF_SPLIT_S:.0f} s (silhouette 6.6 min of it)",
             _num(per_split), _ratio(OLD_WF_SPLIT_S, per_split), "–"],
            ["all default splits + aggregate", f"~{OLD_WF_ALL_S:.0f} s (45 min)",
             _num(run["wall_s"]), _ratio(OLD_WF_ALL_S, run["wall_s"]),
             f"<= {target:.0f} s: **{'met' if run['wall_s'] <= target else 'not met'}**"],
        ], "llrrl")
    return out


def _kernels(k: dict[str, Any] | None) -> list[str]:
    if not k:
        return []
    bw = k["memory_bandwidth"]
    panel = k["panel"]
    out = ["## Kernel micro-benchmarks", "",
           f"Synthetic panel {panel['tickers']:,} tickers x {panel['bars']:,} bars = "
           f"{panel['rows']:,} rows (seed {panel['seed']}), measured {k.get('measured', '?')} "
           f"at load {_load(bw.get('load_before'))}. Memory bandwidth on this machine: "
           f"`np.copyto` of {bw['bytes'] / 2**30:.0f} GiB float64 in "
           f"{_num(1000 * bw['seconds'])} ms = **{_num(bw['gb_per_s_copied'])} GB/s copied, "
           f"{_num(bw['gb_per_s_read_write'])} GB/s read+write** (the 100% below).", "",
           f"Machine: {_machine(k)}.", ""]
    rows = []
    for r in k["rows"]:
        rows.append([
            r["group"], r["method"], _num(1000 * r["seconds"]), _num(r["mrows_per_s"]),
            _num(r["ns_per_row"]), str(r["bytes_per_row"]), _pct(r["bandwidth_fraction"]),
            _pct(r.get("others_cpu_frac")), r.get("note") or "",
        ])
    out += _table(["group", "method", "ms", "Mrows/s", "ns/row", "bytes/row", "of bandwidth",
                   "others' CPU", "note"], rows, align="llrrrrrrl")
    if k.get("talib_note"):
        out += [f"**{k['talib_note']}**", ""]
    checks = k.get("checks") or {}
    if checks:
        out.append("Checks: " + "; ".join(f"{name} = {value:.2g}" for name, value in
                                          sorted(checks.items())) + ".")
        out.append("")
    return out


HOW = """\
## How measured

* **Universes** come from `mf sample-data --tickers N --years Y --seed 7` (clean, not messy),
  generated once and cached in `bench/cache/<size>/raw` (git-ignored); `universe.json` there
  records files, bars, bytes and generation time. Sizes: tiny 60 x 10 y (regression guard),
  small 300 x 20 y (~1.1M bars), medium 2,000 x 20 y, large 8,000 x 25 y.
* **Layers** (`bench/layers.py`): one child process per repetition runs raw → manifest
  (`discover` + `classify`) → Bronze (`build_bronze`, then one Parquet file per ticker) →
  Bronze read back (as the derived step reads it) → Silver → indicators → events → features
  (each `build_*`, then cast to storage precision and written per ticker with
  `lake.write_symbol_files`), Bronze to features in batches of 1,000 tickers like the
  derived step (a layer's row sums its batches) → ML dataset
  (`dataset_step.export_ml_dataset`, which reads the four layers back and writes one file).
  A warm-up pass over 5 tickers runs first in the same process (Numba cache loads, first-call
  costs). Wall = `time.perf_counter`, CPU =
  `time.process_time` (all threads of the process), peak RSS = `VmHWM` reset before each layer
  via `/proc/self/clear_refs` (so it is the layer's own peak, including the frames the chain
  still holds: see `rss_before_mb` in the JSON). Median over repetitions, field by field.
  After each per-ticker write the same rows are written once more as a single Parquet file
  (same compression), timed apart: "as one file" shows what the one-file-per-ticker layout
  costs. Most of that cost is per file: polars' writer estimates the cardinality of every
  float and string column (a HyperLogLog sketch) to decide on dictionary encoding, ~30 µs per
  column per file whatever its rows — over half the CPU of a one-row nightly delta file, about
  a third of a 2,000-row file; polars 2.1 has no switch for it, and pyarrow's writer without
  dictionaries costs more per file here.
* **The 15x target** (small size): the issue's old-tool time (~35 s) / 15 against the cold run,
  the no-change run as the fixed cost, and lower bounds that assume both cores stay busy:
  fixed + (compute CPU + write CPU) / cores, with per-ticker files and with one file per layer.
* **Whole pipeline** (`bench/mfrun.py`): `mf run --until ml_dataset` (large: `--until
  features`, the issue's scale target) as a child process on a copy of the universe with
  fresh `MF_PIPELINE_PATHS__DATA_ROOT`, `..._ARTIFACTS_ROOT` and `DAGSTER_HOME`, then the same
  command again with nothing changed, then again after `mf_pipeline/lib/sample_append.py`
  appended one new bar (the next weekday) to every raw file — the nightly update, which takes
  the append path. CPU and peak RSS are the child's own (`wait4`); the
  timeline uses the time each output line arrived ("start → run" = imports, settings and raw
  classification before the Dagster run starts). "Σ asset s" sums
  the seconds each asset reports in its metadata (Bronze: compute + write); "run − assets" is
  the Dagster run's wall minus that sum: Dagster bookkeeping plus anything the assets do not
  report (the ML dataset export, the checks, derived-layer file writes that finish after the
  last layer's compute, Numba's one-time start); "ms / asset-partition" divides it by tickers
  x per-ticker assets. The next table measures that split instead of inferring it.
* **Every second of a run** (`mf_pipeline/orchestration/accounting.py`): each `mf run` times
  named parts of its main thread and writes them to `<logs>/runs/<run_id>.seconds.json` as it
  exits; the bench reads that file. Parts nest and keep only their own seconds, so they never
  overlap and add up to at most the wall: process start (interpreter + CLI imports, from
  `/proc/self/stat`), the CLI's steps (settings, the runner's imports, raw classification,
  planning), the Dagster definitions' load (with the imports of every `defs/` module), the
  lake lock, the instance, the run's own machinery in three phases (before the first step,
  around the steps, after the run's end event), each asset's and check's body (the wrapped
  compute function; a generator's steps only), what the per-ticker assets read back of the
  lake for their shards' metadata, and every event-log write (our storage class's
  `store_event`: materializations, log messages and other events apart). Writer threads
  overlap the main thread and are not parts; the main thread's wait for them is inside the
  asset's body. "Unexplained remainder" is the child's wall (`wait4` in the bench) minus all
  parts: exit, argument parsing, and what no part covers. Under a profiler (`py-spy record
  --idle -f speedscope -- .venv/bin/mf run …`) the same split holds.
* **Dagster bookkeeping** (`bench/dagster_probe.py`): a throwaway code location with a chain
  of 5 no-IO assets (like bronze → features) over a dynamic partition set
  (`BackfillPolicy.single_run()`), run in process
  (`dg.materialize`, console log level WARNING) against a fresh SQLite `DAGSTER_HOME` in a new
  process per repetition: a first 1-partition run, a timed 1-partition run, one range run over
  N partitions (range tags, as `mf run` launches), then one-partition runs. "marginal ms" =
  (range run − 1-partition run) / (N − 1); "KB / materialization" is the growth of
  `DAGSTER_HOME` on disk over the range run (SQLite WAL files included, not checkpointed).
  "27-shard run" is one range run of the same chain over the ticker shards the pipeline
  used then (27 first letters; 16 hash shards since lake v2); "shards: ms / asset-ticker"
  spreads it over N tickers × 5 assets.
  Measured on Dagster's stock SQLite instance with
  `DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS` unset and `=1`, and with the `dagster.yaml`
  that `mf` writes (`orchestration/dagster.yaml`: its tuned event-log storage, with
  `DAGSTER_EVENT_BATCH_SIZE=1000` as `mf`'s code location sets it: batched writes). The stock
  instance commits (and fsyncs) every event, so its numbers swing with other processes' disk
  traffic.
* **Kernels** (`bench/kernels.py`): one process, seeded 10M-row panel, one warm-up call then the
  median of 5 calls per method (perf_anchors' method). Bandwidth fraction = bytes/row (minimum
  traffic: every input read once, every output written once) x rows / seconds / the measured
  `np.copyto` read+write rate. Polars runs on its default pool (2 threads here); Numba kernels
  and TA-Lib are single-threaded.
* **Validation** (`bench/validation.py`, sections `validation` and `validation_wf`): one lake
  per session from the universe (`mf run --until ml_dataset`, then `mf research-hmm-run` and
  `mf research-cluster-run` on split `full`, settings defaults; not timed against a target).
  `validation` runs `mf validation-run --input-file F --input-type T --json` as a child
  process per source: the decoded HMM rows judged by `flow_state_code` (flow) and by the
  causal `hmm_state_filtered` (hmm), the clustered rows by `cluster_id` (cluster); settings
  defaults (1,000 date-block bootstrap replicates). Wall, the child's CPU and peak RSS
  (`wait4`); "start → run" is when the `run:` line arrived (imports, settings, Dagster
  definitions), "step" the run's own `duration_sec` (bootstrap to written files, after the
  file was read and adapted). The phase table runs the same library calls once more in a
  plain child process (`python -m bench.validation`), each phase timed with its own peak RSS.
  `validation_wf` runs `mf validation-wf-run --force --json` (default train ends, models
  refitted) once by default (`--wf-repeat`); each split's wall, Dagster run and asset seconds
  come from the progress lines (`run: … [wfYYYY-MM-DD]`, `<asset>: done in …s`), its common
  rows from `wf_manifest.json`.
* **Shared machine.** Other work runs on these cores (load 2–4 is normal). Every measurement
  records the 1-minute load average before it ("load"), the share of all CPU time other
  processes used while it ran ("others' CPU", from `/proc/stat` minus our own CPU) and the
  hypervisor steal share (in the JSON). Numbers taken at high "others' CPU" are upper bounds;
  compare like with like. The VM itself also runs faster on some days than on others with no
  load or steal showing (the large cold run took 158 s one day and 339 s another although an
  A/B of both commits on one day found the newer ~10% faster; `import dagster` took 0.5 s one
  day and 1.0–1.8 s another), so each size also records a "CPU
  probe" on its machine line: a fixed pure-Python loop, best of 3. Compare entries measured at
  similar probes. Nothing asserts on time; CI only runs a tiny smoke version.
"""

RUN = """\
## How to run

```bash
make bench                                   # small size, every section (~25 min)
.venv/bin/mf bench --size medium             # or: .venv/bin/python -m bench.run --size medium
.venv/bin/python -m bench.run --size large   # 1 repetition by default; the lead's scale target
.venv/bin/python -m bench.run --size small --only layers,mf_run --repeat 3
.venv/bin/python -m bench.run --size small --only validation,validation_wf   # issue #19 rows
.venv/bin/python -m bench.grid --input-file decoded_rows.parquet  # grid rows on a lake you have
.venv/bin/python -m bench.guard              # < 60 s regression guard: rows/s per layer
.venv/bin/python -m bench.report             # re-render this file from bench/results.json
```

Each run merges its size into `bench/results.json` (machine-readable: every repetition, not
only the medians) and regenerates this file from it.
"""


def _research(entry: dict[str, Any] | None) -> list[str]:
    """Research model timings (issue #5), recorded in results.json by hand when re-measured."""
    if not entry:
        return []
    out = ["## Research models", "", f"Measured: {entry.get('measured', '?')}.", ""]
    out += _table(["run", "old tool", "ours", "target"], entry.get("rows") or [], "llll")
    return out


def _profile(entry: dict[str, Any] | None) -> list[str]:
    """Where validation's CPU goes (issue #19), cProfile findings recorded in results.json by
    hand when re-profiled (``validation_profile``)."""
    if not entry:
        return []
    out = ["## Validation profile", "", f"Measured: {entry.get('measured', '?')}.", ""]
    for table in entry.get("tables") or []:
        out += [f"{table['title']}:", ""]
        out += _table(["part", "CPU s", "what"], table.get("rows") or [], "lrl")
    return out


def _targets(entry: dict[str, Any] | None) -> list[str]:
    """The storage issue's targets side by side (issue #23): recorded in results.json
    (``lake_v2_targets``) from the measurements named in each row."""
    if not entry:
        return []
    out = ["## Lake v2 targets (issue #23)", "", f"Measured: {entry.get('measured', '?')}. "
           f"{entry.get('note', '')}".rstrip(), ""]
    out += _table(["run", "before (v1 layout)", "target", "lake v2", "how measured"],
                  entry.get("rows") or [], "lllll")
    return out


def render(results: dict[str, Any]) -> str:
    """The whole Markdown document for ``results`` (the merged ``bench/results.json``)."""
    out = ["# Benchmarks", "",
           "Generated by `python -m bench.run` (`make bench`, `mf bench`) from "
           "`bench/results.json`; do not edit by hand. The machine is shared with other work: "
           "every row carries the load it was measured under.", ""]
    sizes = results.get("sizes") or {}
    ordered = sorted(sizes, key=lambda s: (SIZE_ORDER.index(s) if s in SIZE_ORDER else 99, s))
    newest = max(sizes.values(), key=lambda e: e.get("finished", ""), default=None)
    versions = (newest or results.get("kernels") or {}).get("versions") or {}
    if versions:
        out += ["## Library versions", ""]
        out += _table(["package", "version"],
                      [[name, str(value)] for name, value in sorted(versions.items())], "ll")
    for name in ordered:
        entry = sizes[name]
        u = entry.get("universe") or {}
        out += [f"## {name}: {entry.get('label', '')}", ""]
        if u:
            out.append(f"Universe: {u.get('files', 0):,} files, {u.get('bars') or 0:,} bars, "
                       f"{(u.get('bytes') or 0) / 1e6:.1f} MB of text (generated in "
                       f"{u.get('generate_seconds')} s, cached in `bench/cache/{name}/`). "
                       f"Last updated {entry.get('finished')}.")
            out.append("")
        out += [f"Machine: {_machine(entry)}.", ""]
        out += _layers(entry) + _mf_run(entry) + _accounting(entry)
        out += (_budget(entry) if name == "small" else []) + _dagster(entry)
        out += _validation(entry, name == "small") + _wf(entry, name == "small")
        out += backtest_lines(entry) + grid_lines(entry)
    out += _targets(results.get("lake_v2_targets"))
    out += _kernels(results.get("kernels"))
    out += _research(results.get("research")) + _profile(results.get("validation_profile"))
    out += [RUN, HOW]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    from bench.run import DEFAULT_DOC, DEFAULT_OUT

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC)
    args = parser.parse_args(argv)
    args.doc.write_text(render(json.loads(args.results.read_text())))
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
