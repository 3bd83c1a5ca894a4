"""Smoke test of the benchmark harness (``bench/``) on a tiny universe: no timing assertions.

Exercises universe caching, the per-layer child process, the Dagster probe, the kernel
micro-benchmarks, the results merge, the Markdown report and the regression guard's output,
all at a size that runs in seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if not (ROOT / "bench" / "run.py").is_file():  # pragma: no cover - installed without checkout
    pytest.skip("bench/ is not in this checkout", allow_module_level=True)
sys.path.insert(0, str(ROOT))

from bench import guard, kernels, run  # noqa: E402
from bench.common import last_json_object, median_records  # noqa: E402

LAYERS = ["manifest", "bronze", "bronze_read", "silver", "indicators", "events", "features",
          "ml_dataset", "total"]


def test_harness_end_to_end(tmp_path: Path) -> None:
    out, doc = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    code = run.main([
        "--tickers", "4", "--years", "1", "--repeat", "1", "--cache-dir", str(tmp_path / "c"),
        "--only", "layers,dagster,kernels", "--dagster-partitions", "3", "--dagster-runs", "1",
        "--dagster-configs", "without_subset_env,project_with_subset_env",
        "--kernel-tickers", "10", "--kernel-bars", "300", "--kernel-repeat", "1",
        "--kernel-mem-mib", "8", "--out", str(out), "--doc", str(doc),
    ])
    assert code == 0
    results = json.loads(out.read_text())
    entry = results["sizes"]["custom-4x1"]
    assert entry["universe"]["files"] == 4
    median = entry["layers"]["median"]
    assert [r["layer"] for r in median] == LAYERS
    bronze = next(r for r in median if r["layer"] == "bronze")
    assert bronze["rows"] > 0 and bronze["files_written"] == 4
    assert all(r["wall_s"] >= 0 and r["peak_rss_mb"] > 0 for r in median)
    per_ticker = [r for r in median if r["layer"] in LAYERS[1:7] and r["layer"] != "bronze_read"]
    assert all(r["one_file_bytes"] > 0 and r["one_file_write_wall_s"] > 0 for r in per_ticker)
    total = median[-1]
    assert total["one_file_bytes"] == sum(r["one_file_bytes"] for r in per_ticker)
    stock = entry["dagster"]["without_subset_env"]["median"]
    project = entry["dagster"]["project_with_subset_env"]["median"]
    assert stock["range_partitions_materialized"] == project["range_partitions_materialized"] == 3
    assert (stock["instance"], stock["emit_partition_subset"]) == ("stock", False)
    assert (project["instance"], project["emit_partition_subset"]) == ("project", True)
    assert "with_subset_env" not in entry["dagster"]
    assert results["kernels"]["panel"]["rows"] == 3000
    assert results["kernels"]["checks"]["numba_vs_polars_ewm_max_rel_diff"] < 1e-12
    text = doc.read_text()
    assert "## custom-4x1" in text and "## Kernel micro-benchmarks" in text
    assert "## How measured" in text
    assert entry["machine"]["cpu_probe_ms"] > 0
    assert f"CPU probe {entry['machine']['cpu_probe_ms']:.0f} ms" in text

    # A second size merges into the same file; the first is kept.
    run.merge_results(out, {**entry, "size": "other"}, None)
    assert set(json.loads(out.read_text())["sizes"]) == {"custom-4x1", "other"}

    lines = guard.report({"size": "custom-4x1", "universe": entry["universe"],
                          "loadavg": [1.0, 1.0, 1.0], "layers": median})
    assert len(lines) == 1 + len(LAYERS)
    assert all(line.startswith("bench-guard ") and "rows_per_s=" in line for line in lines[1:])


def test_budget_takes_the_cold_run_apart() -> None:
    from bench import report

    entry = {
        "machine": {"usable_cpus": 2},
        "layers": {"median": [{"layer": "total", "compute_cpu_s": 2.0, "write_cpu_s": 5.0,
                               "one_file_write_cpu_s": 1.0, "files_written": 1500}]},
        "mf_run": {"cold": {"median": {"wall_s": 7.0, "cpu_s": 12.0}},
                   "no_change": {"median": {"wall_s": 1.5}}},
    }
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1]
            for line in report._budget(entry) if line.startswith("| ")}
    assert rows["target: the old tool's ~35 s / 15"] == "2.333"
    assert rows["lower bound, per-ticker files: fixed + (compute + writes) / 2 cores"] == "5.000"
    assert rows["lower bound, one file per layer"] == "3.000"
    assert report._budget({**entry, "mf_run": {}}) == []


def test_kernels_in_process_without_talib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "talib", None)  # import fails: TA-Lib rows are skipped
    result = kernels.run(5, 200, repeat=1, mem_mib=4)
    assert result["talib"] is None and "skipped" in result["talib_note"]
    assert not any("TA-Lib" in r["method"] for r in result["rows"])
    assert all(r["mrows_per_s"] > 0 and r["bandwidth_fraction"] > 0 for r in result["rows"])


def test_helpers() -> None:
    text = "[12:00:00] log line\n{\n  \"bronze\": {\"rows\": 3}\n}\n"
    assert last_json_object(text) == {"bronze": {"rows": 3}}
    merged = median_records([{"a": 1.0, "load_before": [1, 1, 1]},
                             {"a": 3.0, "load_before": [2, 2, 2]},
                             {"a": 2.0, "load_before": [3, 3, 3]}])
    assert merged["a"] == 2.0 and merged["n"] == 3 and len(merged["load_before"]) == 3
