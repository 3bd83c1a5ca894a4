"""The test window a split-partitioned validation judges (fix #18 for the split assets)."""

import datetime as dt

import pytest

from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.validation import inputs


@pytest.mark.parametrize(("key", "non_overlapping", "end"), [
    ("wf2012-12-31", True, dt.date(2014, 12, 31)),   # the next default train end
    ("wf2019-06-30", True, dt.date(2020, 12, 31)),   # off the list: the next one after it
    ("wf2020-12-31", True, None),                    # the last split: to the end of data
    ("wf2012-12-31", False, None),                   # the old expanding design
    ("full", True, None),
])  # fmt: skip
def test_a_split_is_judged_up_to_the_next_train_end(key, non_overlapping, end) -> None:
    assert inputs.test_end_of(Settings(), key, non_overlapping) == end
