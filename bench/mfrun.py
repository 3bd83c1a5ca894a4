"""The whole pipeline as users run it: ``mf run --until ml_dataset`` in a child process.

Each measurement uses fresh data, artifacts and ``DAGSTER_HOME`` folders (so the first run is
a cold full build, every file NEW), then reruns the same command unchanged (every file
UNCHANGED) and, on a copy of the universe, after one new bar was appended to every file (every
file APPENDED: the nightly update). Wall time, the child's own CPU and peak RSS (``wait4``)
and a timeline from the moment each output line arrived are recorded, with the per-asset
metadata the command prints and the parts of its wall time the command measured itself
(``mf_pipeline/orchestration/accounting.py``: ``<logs>/runs/<run_id>.seconds.json``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
from pathlib import Path
from typing import Any

from bench import lake_reads
from bench.common import last_json_object, run_child
from bench.universe import mf_executable
from mf_pipeline.lib.sample_append import append_one_bar

PER_TICKER_ASSETS = ("bronze", "silver", "indicators", "events", "features")
RUN_LINE = re.compile(r"\brun: ")
DONE_LINE = re.compile(r"done in ([\d.]+)s \(Dagster run ([0-9a-f-]+)\)")


def pipeline_env(raw: Path, work: Path) -> dict[str, str]:
    """Environment pointing the pipeline at ``raw`` and fresh folders under ``work``."""
    env = dict(os.environ)
    env.update({
        "MF_PIPELINE_PATHS__RAW_ROOT": str(raw),
        "MF_PIPELINE_PATHS__DATA_ROOT": str(work / "data"),
        "MF_PIPELINE_PATHS__ARTIFACTS_ROOT": str(work / "artifacts"),
        "MF_PIPELINE_PATHS__LOGS_ROOT": str(work / "logs"),
        "DAGSTER_HOME": str(work / "dagster_home"),
    })
    (work / "dagster_home").mkdir(parents=True, exist_ok=True)
    return env


def _dir_mb(folder: Path) -> float:
    if not folder.exists():
        return 0.0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def asset_seconds(metadata: dict[str, Any]) -> dict[str, float]:
    """Seconds each asset reports for its own work (Bronze: compute + write)."""
    found: dict[str, float] = {}
    for name, meta in metadata.items():
        if not isinstance(meta, dict):
            continue
        seconds = meta.get("run_seconds", meta.get("seconds"))  # per-ticker assets: run_*
        if "run_compute_seconds" in meta or "run_write_seconds" in meta:
            found[name] = float(meta.get("run_compute_seconds") or 0) + float(
                meta.get("run_write_seconds") or 0)
        elif isinstance(seconds, int | float):
            found[name] = float(seconds)
    return found


def seconds_record(lines: list[tuple[float, str]], work: Path) -> dict[str, Any] | None:
    """The parts the command measured itself (``orchestration/accounting.py``), from the
    record its first Dagster run names under ``<work>/logs/runs/``."""
    run_id = next((m.group(2) for _, text in lines if (m := DONE_LINE.search(text))), None)
    path = work / "logs" / "runs" / f"{run_id}.seconds.json"
    if run_id is None or not path.exists():
        return None
    return json.loads(path.read_text())


def summarize(child: Any, work: Path) -> dict[str, Any]:
    """One ``mf run`` child as a flat record (timeline, metadata, overhead estimate)."""
    lines = child.lines
    metadata = last_json_object(child.stdout) or {}
    run_start = next((t for t, text in lines if RUN_LINE.search(text)), None)
    dagster_run_s = sum(float(m.group(1)) for _, text in lines
                        if (m := DONE_LINE.search(text))) or None
    seconds = asset_seconds(metadata)
    bronze = metadata.get("bronze", {}) if isinstance(metadata.get("bronze"), dict) else {}
    manifest = metadata.get("manifest", {}) if isinstance(metadata.get("manifest"), dict) else {}
    tickers = int(manifest.get("tickers_to_process") or bronze.get("tickers") or 0)
    partitioned = [a for a in PER_TICKER_ASSETS if a in metadata]
    bars = int(bronze.get("rows_valid") or 0)
    overhead = (dagster_run_s - sum(seconds.values())) if dagster_run_s else None
    mats = tickers * len(partitioned)
    record = seconds_record(lines, work) or {}
    parts = record.get("parts_s") or {}
    return {
        "returncode": child.returncode,
        "wall_s": child.wall_s,
        "cpu_s": child.user_s + child.sys_s,
        "peak_rss_mb": child.peak_rss_mb,
        "first_output_s": lines[0][0] if lines else None,
        "run_start_s": run_start,
        "dagster_run_s": dagster_run_s,
        "after_run_s": (child.wall_s - run_start - dagster_run_s)
        if run_start is not None and dagster_run_s else None,
        "sum_asset_seconds": sum(seconds.values()),
        "run_minus_asset_seconds": overhead,
        "tickers": tickers,
        "per_ticker_assets": len(partitioned),
        "overhead_ms_per_asset_partition": 1000 * overhead / mats if overhead and mats else None,
        "bars": bars,
        "bars_per_s": bars / child.wall_s if bars else None,
        "dagster_home_mb": _dir_mb(work / "dagster_home"),
        "status_counts": manifest.get("status_counts"),
        "asset_seconds": seconds,
        "parts_s": parts,
        "part_calls": record.get("calls") or {},
        "parts_remainder_s": child.wall_s - sum(parts.values()) if parts else None,
        "metadata": metadata,
        **{k: v for k, v in child.meter.items() if k not in ("wall_s", "cpu_s")},
    }


def _run(cmd: list[str], env: dict[str, str], work: Path, label: str) -> dict[str, Any]:
    child = run_child(cmd, env=env, merge_stderr=True)
    if child.returncode != 0:
        raise RuntimeError(f"mf run ({label}) failed ({child.returncode}):\n"
                           f"{child.stdout[-4000:]}")
    return summarize(child, work)


def measure(raw: Path, work: Path, until: str = "ml_dataset", noop: bool = True,
            keep: bool = False, append: bool = False,
            ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """A cold full ``mf run`` into fresh folders, then (``noop``) the unchanged rerun, then
    (``append``) the run after one bar was appended to every file of a copy of ``raw``."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if append:
        shutil.copytree(raw, work / "raw")
        raw = work / "raw"
    env = pipeline_env(raw, work)
    cmd = [mf_executable(), "run", "--until", until, "--json"]
    cold = _run(cmd, env, work, "cold")
    again = _run(cmd, env, work, "no change") if noop else None
    appended = None
    if append:
        append_one_bar(raw)
        appended = _run(cmd, env, work, "append")
        appended.update({f"lake_reads.{k}": v for k, v in lake_reads.measure(work).items()
                         if not isinstance(v, dict)})
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return cold, again, appended


def startup(repeat: int = 3) -> dict[str, Any]:
    """Fixed cost of the CLI: ``mf --help`` wall time (imports of the command modules)."""
    times = []
    for _ in range(max(repeat, 1)):
        child = run_child([mf_executable(), "--help"])
        times.append(child.wall_s)
    return {"mf_help_s": statistics.median(times), "runs": len(times)}
