"""``mf run`` accounts for its wall time: the seconds record it writes beside its run's logs."""

import json
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from mf_pipeline.orchestration import accounting, runner
from mf_pipeline.orchestration.event_log import EVENT_WRITES

MF = Path(sys.executable).parent / "mf"


def test_a_run_writes_where_its_seconds_went(isolated, messy_universe):
    settings = isolated(messy_universe)
    done = subprocess.run([str(MF), "run", "--until", "silver", "--json"], capture_output=True,
                          text=True, check=True)
    [run_id] = re.findall(r"done in [\d.]+s \(Dagster run ([0-9a-f-]+)\)", done.stderr)
    record = json.loads((settings.logs_root / "runs" / f"{run_id}.seconds.json").read_text())
    parts, calls = record["parts_s"], record["calls"]
    assert record["run_ids"] == [run_id]
    assert record["argv"] == ["run", "--until", "silver", "--json"]
    for name in ("asset body: manifest", "asset body: bronze",
                 "asset body: silver, indicators, events, features (one step)",
                 "check body: bronze ledger_reconciles", accounting.PROCESS_START,
                 accounting.RUN_START, accounting.RUN_STEPS, accounting.RUN_END,
                 "Dagster definitions: load (defs modules and their imports)"):
        assert parts[name] > 0, name
    # Every event the run stored went through the timed write, materializations counted apart.
    records = runner.instance(settings).get_records_for_run(run_id, limit=100_000).records
    stored = [r.event_log_entry.dagster_event_type for r in records]
    materialized = stored.count(dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert materialized == calls[EVENT_WRITES["materialization"]] > 2
    assert len(stored) == sum(calls.get(name, 0) for name in EVENT_WRITES.values())
    # The parts never overlap: together they fit in the process's wall time.
    assert sum(parts.values()) == pytest.approx(record["sum_parts_s"], abs=1e-4)  # µs rounding
    assert 0 < record["sum_parts_s"] <= record["wall_s"] + 0.02  # /proc's 10 ms ticks
    assert record["remainder_s"] == pytest.approx(record["wall_s"] - record["sum_parts_s"])
