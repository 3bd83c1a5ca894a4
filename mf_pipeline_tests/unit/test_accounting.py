"""The seconds record of a command (``orchestration/accounting.py``): exclusive parts on a
fake clock, so every figure is hand-computed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mf_pipeline.orchestration import accounting


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(accounting.time, "perf_counter", fake)
    monkeypatch.setattr(accounting, "_BOOK", accounting._Book())
    return fake


def test_nested_parts_keep_only_their_own_seconds(clock: Clock) -> None:
    with accounting.part("outer"):
        clock.tick(1.0)
        with accounting.part("inner"):
            clock.tick(0.25)
            with accounting.part("write"):
                clock.tick(0.5)
        clock.tick(2.0)
        with accounting.part("write"):
            clock.tick(0.125)
    record = accounting.snapshot(wall=4.0)
    assert record["parts_s"] == {"outer": 3.0, "write": 0.625, "inner": 0.25}
    assert record["calls"] == {"outer": 1, "inner": 1, "write": 2}
    assert record["sum_parts_s"] == 3.875
    assert record["remainder_s"] == 0.125


def test_run_events_move_the_run_part_through_its_phases_only_when_innermost(
        clock: Clock) -> None:
    with accounting.part("cli"):
        clock.tick(0.5)
        with accounting.part(accounting.RUN_START):
            clock.tick(1.0)
            accounting.run_event("STEP_START")
            clock.tick(0.25)
            with accounting.part("asset body: a"):
                clock.tick(3.0)
                accounting.run_event("PIPELINE_SUCCESS")  # inside an asset: no phase change
                clock.tick(1.0)
            accounting.run_event("STEP_START")  # already around the steps
            clock.tick(0.75)
            accounting.run_event("PIPELINE_SUCCESS")
            clock.tick(0.125)
        clock.tick(0.5)
    parts = accounting.snapshot(wall=7.125)["parts_s"]
    assert parts == {"asset body: a": 4.0, accounting.RUN_START: 1.0, "cli": 1.0,
                     accounting.RUN_STEPS: 1.0, accounting.RUN_END: 0.125}


def test_a_counted_generator_leaves_out_what_its_consumer_does(clock: Clock) -> None:
    @accounting.counted("body")
    def steps(n: int) -> Iterator[int]:
        """A body that yields."""
        clock.tick(1.0)
        for i in range(n):
            yield i
            clock.tick(0.5)

    with accounting.part("runner"):
        for _ in steps(2):
            clock.tick(10.0)  # the consumer's own work
    parts = accounting.snapshot(wall=22.0)["parts_s"]
    assert parts == {"runner": 20.0, "body": 2.0}
    assert steps.__name__ == "steps" and steps.__doc__ == "A body that yields."


def test_a_counted_function_keeps_its_signature_and_result(clock: Clock) -> None:
    import inspect

    @accounting.counted("body")
    def body(context: object, settings: int = 3) -> int:
        clock.tick(0.5)
        return settings * 2

    assert body(None, settings=4) == 8
    assert list(inspect.signature(body).parameters) == ["context", "settings"]
    assert accounting.snapshot(wall=1.0)["parts_s"] == {"body": 0.5}


def test_the_record_goes_where_the_first_run_said_with_every_run_id(
        clock: Clock, tmp_path: Path) -> None:
    assert accounting.write() is None  # no run, no record
    with accounting.part("x"):
        clock.tick(2.0)
    accounting.record_to(tmp_path / "runs" / "a.seconds.json", run_ids=["a"])
    accounting.record_to(tmp_path / "runs" / "b.seconds.json", run_ids=["b"])
    path = accounting.write()
    assert path == tmp_path / "runs" / "a.seconds.json"
    record = json.loads(path.read_text())
    assert record["run_ids"] == ["a", "b"]
    assert record["parts_s"]["x"] == 2.0


def test_process_age_is_positive_and_below_this_tests_run_time() -> None:
    age = accounting.process_age()
    assert age is not None and 0 < age < 3600
