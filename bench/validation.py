"""Validation timings (issue #19): ``mf validation-run`` and ``mf validation-wf-run`` as users
run them, each in a child process (wall, the child's own CPU and peak RSS from ``wait4``).

:func:`prepare` builds one lake per measurement session (not timed against a target):
``mf run --until ml_dataset``, then ``mf research-hmm-run`` and ``mf research-cluster-run`` on
split ``full``. Their outputs are the state-labelled files a researcher validates:

* ``flow``    — the decoded HMM rows judged by ``flow_state_code`` (``--input-type flow``);
* ``hmm``     — the same rows judged by the causal ``hmm_state_filtered``;
* ``cluster`` — the clustered rows (``clustered_dataset_full.parquet``) by ``cluster_id``.

:func:`measure_validation` runs ``mf validation-run --input-file F --input-type T`` per source;
:func:`measure_phases` times the library calls of one run in a child process (``python -m
bench.validation``), so the report can say which part dominates; :func:`measure_wf` runs
``mf validation-wf-run --force`` over the default train ends and takes each split's Dagster
run and asset seconds from the progress lines.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Meter,
    last_json_object,
    median_records,
    peak_rss_mb,
    reset_peak_rss,
    run_child,
    run_json_child,
    say,
    write_json,
)
from bench.mfrun import pipeline_env
from bench.universe import mf_executable

SOURCES: dict[str, tuple[str, str]] = {
    "flow": ("hmm", "flow"),
    "hmm": ("hmm", "hmm"),
    "cluster": ("cluster", "cluster"),
}
"""Source → (model whose output file is validated, ``--input-type``)."""
MODEL_FILES = {"hmm": "decoded_rows.parquet", "cluster": "clustered_dataset_full.parquet"}
RUN_LINE = re.compile(r"\brun: (?P<assets>.*?)(?: \[(?P<key>[^\]]+)\])?$")
ASSET_LINE = re.compile(r"\] (?P<name>[\w, ]+): done in (?P<s>[\d.]+)s$")
DONE_LINE = re.compile(r"done in (?P<s>[\d.]+)s \(Dagster run ")
PHASES = ("read", "adapt", "bootstrap", "event_study", "stability", "scorecards")


def _mf(args: list[str], env: dict[str, str], label: str) -> Any:
    """Run ``mf args`` (progress merged into the timed lines); raise with its tail on failure."""
    child = run_child([mf_executable(), *args], env=env, merge_stderr=True)
    if child.returncode != 0:
        raise RuntimeError(f"mf {label} failed ({child.returncode}):\n{child.stdout[-4000:]}")
    return child


def prepare(raw: Path, work: Path) -> dict[str, Any]:
    """Build the lake and the ``full``-split model outputs under ``work`` (fresh folders)."""
    env = pipeline_env(raw, work)
    started = time.perf_counter()
    say("validation: building the lake (mf run --until ml_dataset)")
    _mf(["run", "--until", "ml_dataset", "--json"], env, "run --until ml_dataset")
    folders: dict[str, Path] = {}
    for model, command in (("hmm", "research-hmm-run"), ("cluster", "research-cluster-run")):
        say(f"validation: mf {command} --split full")
        child = _mf([command, "--split", "full", "--json"], env, command)
        out = last_json_object(child.stdout) or {}
        folders[model] = Path(out["output_dir"])
    files = {source: folders[model] / MODEL_FILES[model]
             for source, (model, _) in SOURCES.items()}
    return {"env": env, "files": files, "prepare_s": time.perf_counter() - started}


def _record(child: Any) -> dict[str, Any]:
    """Wall, CPU, peak RSS, when the Dagster run started and how long it took."""
    run_start = next((t for t, text in child.lines if RUN_LINE.search(text)), None)
    done = [float(m.group("s")) for _, text in child.lines if (m := DONE_LINE.search(text))]
    return {"wall_s": child.wall_s, "cpu_s": child.user_s + child.sys_s,
            "peak_rss_mb": child.peak_rss_mb, "run_start_s": run_start,
            "dagster_run_s": sum(done) if done else None,
            **{k: v for k, v in child.meter.items() if k not in ("wall_s", "cpu_s")}}


def measure_validation(prepared: dict[str, Any], repeat: int) -> dict[str, Any]:
    """``repeat`` runs of ``mf validation-run --input-file`` per source; medians per source."""
    result: dict[str, Any] = {"repeat": repeat}
    for source, (_, input_type) in SOURCES.items():
        path = prepared["files"][source]
        runs = []
        for index in range(repeat):
            say(f"validation-run {source}: run {index + 1}/{repeat} ({path.name})")
            child = _mf(["validation-run", "--input-file", str(path), "--input-type",
                         input_type, "--json"], prepared["env"], "validation-run")
            out = last_json_object(child.stdout) or {}
            rec = {**_record(child), "rows": out.get("rows"), "states": out.get("state_count"),
                   "tickers": out.get("ticker_count"), "step_s": out.get("duration_sec"),
                   "block_length": out.get("block_length")}
            runs.append(rec)
            print(f"    wall {rec['wall_s']:6.2f} s  CPU {rec['cpu_s']:6.2f} s  step "
                  f"{rec['step_s'] or 0:6.2f} s  peak {rec['peak_rss_mb']:6.0f} MB  "
                  f"{rec['rows'] or 0:,} rows  load {rec['load_before'][0]:.1f}", flush=True)
        result[source] = {"file": path.name, "input_type": input_type,
                          "median": median_records(runs), "runs": runs}
    return result


def measure_phases(prepared: dict[str, Any]) -> dict[str, Any]:
    """One child per source timing the library calls of a validation run (no Dagster)."""
    out: dict[str, Any] = {}
    for source, (_, input_type) in SOURCES.items():
        say(f"validation phases {source}")
        out[source] = run_json_child("bench.validation", [
            "--input", str(prepared["files"][source]), "--input-type", input_type],
            env=prepared["env"])
        phases = out[source]["phases"]
        print("    " + "  ".join(f"{p['phase']} {p['wall_s']:.2f}s" for p in phases),
              flush=True)
    return out


def split_timeline(lines: list[tuple[float, str]]) -> list[dict[str, Any]]:
    """Each Dagster run of a command: its partition key, wall from its ``run:`` line to its
    ``done in`` line, the run's own seconds and every asset's reported seconds."""
    runs: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for t, text in lines:
        if (m := RUN_LINE.search(text)) and "done in" not in text:
            current = {"key": m.group("key"), "start_s": t, "assets": {}}
            runs.append(current)
        elif current is not None and (m := DONE_LINE.search(text)):
            current["dagster_run_s"] = float(m.group("s"))
            current["wall_s"] = t - current["start_s"]
            current = None
        elif current is not None and (m := ASSET_LINE.search(text)):
            current["assets"][m.group("name")] = float(m.group("s"))
    return runs


def measure_wf(prepared: dict[str, Any], repeat: int) -> dict[str, Any]:
    """``repeat`` runs of ``mf validation-wf-run --force`` over the default train ends."""
    runs = []
    for index in range(repeat):
        say(f"validation-wf-run: run {index + 1}/{repeat} (default train ends, --force)")
        child = _mf(["validation-wf-run", "--force", "--json"], prepared["env"],
                    "validation-wf-run")
        out = last_json_object(child.stdout) or {}
        manifest = json.loads((Path(out["wf_run_dir"]) / "wf_manifest.json").read_text())
        rows = {f"wf{s['train_end']}": s.get("common_rows") for s in manifest["splits"]}
        splits = split_timeline(child.lines)
        for split in splits:
            split["common_rows"] = rows.get(split["key"])
            print(f"    {split['key'] or 'aggregate':15s} {split.get('wall_s', 0):7.1f} s  "
                  f"{split['common_rows'] or 0:>9,} rows  "
                  + ", ".join(f"{k} {v:.1f}" for k, v in split["assets"].items()), flush=True)
        rec = {**_record(child), "splits_total": out.get("splits_total"),
               "splits_successful": out.get("splits_successful"), "runs": splits}
        print(f"    total wall {rec['wall_s']:.1f} s  CPU {rec['cpu_s']:.1f} s  peak "
              f"{rec['peak_rss_mb']:.0f} MB  load {rec['load_before'][0]:.1f}", flush=True)
        runs.append(rec)
    flat = [{k: v for k, v in r.items() if k != "runs"} for r in runs]
    return {"repeat": repeat, "median": median_records(flat), "runs": runs}


# --------------------------------------------------------------------------- phases child


def run_phases(path: Path, input_type: str) -> list[dict[str, Any]]:
    """The calls of one validation run with settings defaults, each timed (writes left out).

    Peak RSS is per phase (``VmHWM`` reset before each) so the largest buffer shows.
    """
    from mf_pipeline.lib.settings import load_settings
    from mf_pipeline.lib.steps.validation.options import validation_options
    from mf_pipeline.lib.validation.adapter import adapt, read_state_file
    from mf_pipeline.lib.validation.bootstrap import run_bootstrap
    from mf_pipeline.lib.validation.events import transition_event_study
    from mf_pipeline.lib.validation.scorecards import build_scorecards
    from mf_pipeline.lib.validation.stability import rolling_stability

    o = validation_options(load_settings())
    held: dict[str, Any] = {}

    def bootstrap() -> Any:
        held["boot"] = run_bootstrap(
            held["frame"], n_boot=o.n_boot, ci=o.ci, mode=o.bootstrap_mode,
            block_length=o.block_length, random_state=o.random_state,
            max_points_per_state=o.max_points_per_state, alpha=o.alpha)

    def stability() -> Any:
        held["stability"] = rolling_stability(
            held["frame"], window_months=o.window_months, step_months=o.step_months,
            eps=o.eps, transition_stability=held["label"] == "hmm")

    def adapted() -> None:
        out = adapt(held.pop("raw"), input_type=input_type, input_file=str(path))
        held["frame"], held["label"] = out.frame, out.summary["state_label_type"]

    steps = {
        "read": lambda: held.update(raw=read_state_file(path)),
        "adapt": adapted,
        "bootstrap": bootstrap,
        "event_study": lambda: transition_event_study(
            held["frame"], window_pre=o.window_pre, window_post=o.window_post,
            min_events_per_transition=o.min_events_per_transition, max_gap_days=o.max_gap_days),
        "stability": stability,
        "scorecards": lambda: build_scorecards(held["frame"], held["label"], held["boot"],
                                               held["stability"], weights=o.weights,
                                               eps=o.eps, alpha=o.alpha),
    }
    records = []
    for name in PHASES:
        reset_peak_rss()
        with Meter() as meter:
            steps[name]()
        records.append({"phase": name, **meter.record(), "peak_rss_mb": peak_rss_mb()})
    records.append({"phase": "rows", "rows": held["frame"].height})
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--input-type", required=True)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    import mf_pipeline.lib.validation.bootstrap  # noqa: F401  (import cost, measured)

    import_s = time.perf_counter() - started
    records = run_phases(args.input, args.input_type)
    rows = records.pop()["rows"]
    write_json({"import_s": import_s, "rows": rows, "phases": records}, args.json)


if __name__ == "__main__":
    main()
