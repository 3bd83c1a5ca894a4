"""The "every second of a run" tables of docs/BENCHMARKS.md (``bench/report.py``) and the
record ``bench/mfrun.py`` reads, from hand-made runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if not (ROOT / "bench" / "report.py").is_file():  # pragma: no cover - installed without checkout
    pytest.skip("bench/ is not in this checkout", allow_module_level=True)
sys.path.insert(0, str(ROOT))

from bench import mfrun, report  # noqa: E402


def _run(wall: float, body: float, events: float, reported: float) -> dict[str, Any]:
    parts = {"process start: interpreter and the CLI's imports": 0.5,
             "Dagster definitions: load (defs modules and their imports)": 1.0,
             "asset body: bronze": body, "Dagster event log: writes, other events": events}
    return {"wall_s": wall, "parts_s": parts, "sum_asset_seconds": reported,
            "parts_remainder_s": wall - sum(parts.values())}


def test_the_tables_take_the_median_of_each_part_and_group_them() -> None:
    runs = [_run(8.0, 4.0, 0.5, 3.0), _run(10.0, 6.0, 0.25, 2.0), _run(12.0, 8.0, 1.0, 1.0)]
    entry = {"mf_run": {"cold": {"runs": runs}, "no_change": {"runs": []}}}
    lines = report._accounting(entry)
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines
             if line.startswith("| ") and not line.startswith("| part")]
    rows = {row[0]: row[1:] for row in cells}
    # Medians: wall 10, body 6, events 0.5, remainder 2 (8 - 6, 10 - 7.75, 12 - 10.5).
    assert rows["start-up: interpreter, imports, settings, definitions, instance"][:2] == \
        ["1.500", "15.0%"]
    assert rows["asset and check bodies"][:2] == ["6.000", "60.0%"]
    assert rows["… of which the assets report as their own seconds"][:2] == ["2.000", "20.0%"]
    assert rows["Dagster's own run machinery and event-log writes"][:2] == ["0.500", "5.0%"]
    assert rows["**unexplained remainder**"][:2] == ["2.000", "20.0%"]
    assert rows["asset body: bronze"][:2] == ["6.000", "60.0%"]
    assert rows["**wall**"] == ["10.0", "100.0%"]
    assert all("no change" not in line for line in lines)  # a kind without records: no column
    names = [row[0] for row in cells]
    assert names.index("process start: interpreter and the CLI's imports") < \
        names.index("Dagster definitions: load (defs modules and their imports)") < \
        names.index("asset body: bronze") < names.index("Dagster event log: writes, other events")


def test_the_record_is_found_by_the_first_run_id(tmp_path: Path) -> None:
    runs = tmp_path / "logs" / "runs"
    runs.mkdir(parents=True)
    (runs / "ab12-cd.seconds.json").write_text(json.dumps({"parts_s": {"x": 1.0}}))
    lines = [(0.5, "[10:00:00] run: manifest"),
             (2.0, "[10:00:02] done in 1.50s (Dagster run ab12-cd)"),
             (3.0, "[10:00:03] done in 0.10s (Dagster run ff-00)")]
    assert mfrun.seconds_record(lines, tmp_path) == {"parts_s": {"x": 1.0}}
    assert mfrun.seconds_record(lines[:1], tmp_path) is None
