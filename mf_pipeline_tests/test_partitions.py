import pytest
from hypothesis import given
from hypothesis import strategies as st

from mf_pipeline.lib.partitions import plan_ranges

KEYS = [f"T{i:03d}" for i in range(200)]


def test_contiguous_and_bridged_ranges():
    ranges = plan_ranges(["T005", "T007", "T100"], KEYS, max_gap=3)
    assert [(r.start, r.end, r.selected, r.extra) for r in ranges] == [
        ("T005", "T007", 2, 1), ("T100", "T100", 1, 0)]


def test_single_key_and_empty():
    assert [(r.start, r.end) for r in plan_ranges(["T042"], KEYS)] == [("T042", "T042")]
    assert plan_ranges([], KEYS) == []


def test_unknown_key_is_an_error():
    with pytest.raises(KeyError, match="ZZZ"):
        plan_ranges(["ZZZ"], KEYS)


@given(st.sets(st.sampled_from(KEYS), min_size=1), st.integers(0, 20), st.integers(1, 6))
def test_every_selected_key_is_covered_once(selected, max_gap, max_ranges):
    ranges = plan_ranges(selected, KEYS, max_gap=max_gap, max_ranges=max_ranges)
    covered = [key for r in ranges for key in r.keys]
    assert len(covered) == len(set(covered))
    assert selected <= set(covered)
    assert len(ranges) <= max_ranges
    assert sum(r.selected for r in ranges) == len(selected)
