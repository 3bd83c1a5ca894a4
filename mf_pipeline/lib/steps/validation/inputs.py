"""What a split-partitioned validation reads: the test rows of a split with their HMM,
cluster and flow states, all three on the SAME rows.

The old walk-forward judged Flow on HMM-decoded rows and clusters on all scaled test rows, so
the three models were compared on different row sets. Here the rows of a split are the rows
that both the HMM run and the clustering run labelled (inner join on ticker and date); each
source is validated on exactly those. With non-overlapping tests (the default) a split's rows
end at the next train end, so the splits' test windows do not overlap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.research.labels import FORWARD_COLUMNS
from mf_pipeline.lib.research.splits import FULL_SPLIT_ID
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.research.options import WF_PREFIX, split_keys
from mf_pipeline.lib.validation.walkforward import test_windows

SOURCES: dict[str, tuple[str, str]] = {
    "flow": ("flow", "flow_state_code"),
    "hmm": ("hmm", "hmm_state_filtered"),
    "cluster": ("cluster", "cluster_id"),
}
"""State source → (adapter input type, state column). HMM states are judged by the causal
forward-filtered state, never the Viterbi path."""
MODEL_NAMES = {"hmm": "HMM", "flow": "Flow", "cluster": "Cluster"}
HMM_COLUMNS = ("ticker", "trade_date", "exchange", "close", "flow_state_code", "tmf_21",
               "hmm_state", "hmm_state_filtered", "hmm_prob_filtered_max", *FORWARD_COLUMNS)
CLUSTER_COLUMNS = ("ticker", "trade_date", "cluster_id", "flow_bias_20", "oscillation_index_20",
                   "flow_activity_20", "delta_flow_20")  # fmt: skip


@dataclass
class SplitRows:
    frame: pl.DataFrame
    info: dict[str, Any]


def test_end_of(settings: Settings, split_key: str, non_overlapping: bool) -> dt.date | None:
    """Last test date of a walk-forward split among the default train ends
    (:func:`walkforward.test_windows`: the next train end when tests do not overlap; the last
    split and ``full`` run to the end of data)."""
    if split_key == FULL_SPLIT_ID:
        return None
    ends = {dt.date.fromisoformat(k.removeprefix(WF_PREFIX))
            for k in split_keys(settings) if k.startswith(WF_PREFIX)}
    own = dt.date.fromisoformat(split_key.removeprefix(WF_PREFIX))
    return dict(test_windows(sorted(ends | {own}), None, non_overlapping))[own]


def split_rows(settings: Settings, split_key: str, hmm_run_dir: str | Path,
               cluster_run_dir: str | Path, non_overlapping: bool = True,
               test_end: dt.date | None = None) -> SplitRows:  # fmt: skip
    """The split's rows labelled by both model runs, with every state column, up to
    ``test_end`` (default :func:`test_end_of`: the next default train end)."""
    hmm_path = Path(hmm_run_dir) / "decoded_rows.parquet"
    cluster_path = Path(cluster_run_dir) / "clustered_dataset_full.parquet"
    for path in (hmm_path, cluster_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: rerun the model of split {split_key}")
    hmm = pl.scan_parquet(hmm_path)
    clusters = pl.scan_parquet(cluster_path)
    hmm_cols = [c for c in HMM_COLUMNS if c in hmm.collect_schema().names()]
    cluster_cols = [c for c in CLUSTER_COLUMNS if c in clusters.collect_schema().names()]
    rows_hmm = hmm.select(pl.len()).collect().item()
    rows_cluster = clusters.select(pl.len()).collect().item()
    frame = hmm.select(hmm_cols).join(clusters.select(cluster_cols),
                                      on=["ticker", "trade_date"], how="inner")
    if test_end is None:
        test_end = test_end_of(settings, split_key, non_overlapping)
    if test_end is not None:
        frame = frame.filter(pl.col("trade_date") <= test_end)
    out = frame.sort("ticker", "trade_date").collect()
    return SplitRows(out, {
        "split_id": split_key, "hmm_run_dir": str(hmm_run_dir),
        "cluster_run_dir": str(cluster_run_dir), "rows_hmm": rows_hmm,
        "rows_cluster": rows_cluster, "common_rows": out.height,
        "test_end": test_end.isoformat() if test_end else None,
        "non_overlapping_test": non_overlapping, "in_sample": split_key == FULL_SPLIT_ID,
    })  # fmt: skip
