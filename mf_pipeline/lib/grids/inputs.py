"""The sources of a grid (backtest_ops.md §5.2): a split's test rows (one read shared by its
flow, HMM and cluster sources) or state-labelled files, with the same direction and policy
sources a single backtest uses."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from mf_pipeline.lib.grids.run import GridSource
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest import split_inputs as split
from mf_pipeline.lib.steps.backtest.file_inputs import INPUT_TYPES, file_inputs
from mf_pipeline.lib.steps.validation.inputs import test_end_of


def check_sources(sources: Sequence[str]) -> list[str]:
    """Lower-cased, de-duplicated source names in the given order; error on an unknown one."""
    names = list(dict.fromkeys(s.strip().lower() for s in sources if s.strip()))
    bad = [s for s in names if s not in INPUT_TYPES]
    if bad or not names:
        raise ValueError(f"grid sources must be some of {', '.join(INPUT_TYPES)}; got "
                         f"{list(sources)}")
    return names


def split_sources(settings: Settings, split_key: str, sources: Sequence[str], hmm_dir: str,
                  cluster_dir: str, policy_dir: str | None, *, policy_filter_mode: str,
                  non_overlapping: bool = True, test_end: dt.date | None = None,
                  overlay: bool = False) -> list[GridSource]:  # fmt: skip
    """Each named source on the split's test rows, read from disk once."""
    names = check_sources(sources)
    end = test_end or test_end_of(settings, split_key, non_overlapping)
    started = time.perf_counter()
    bars = split.split_bars(settings, split_key, hmm_dir, cluster_dir, end)
    load = time.perf_counter() - started
    out = []
    for name in names:
        inputs = split.split_inputs(settings, split_key, name, hmm_dir, cluster_dir, policy_dir,
                                    non_overlapping=non_overlapping, test_end=end,
                                    overlay=overlay, bars=bars)  # fmt: skip
        inputs.load_sec += load / len(names)
        out.append(GridSource(inputs, policy_filter_mode if name == "cluster" else None))
    return out


def file_sources(files: Mapping[str, Path], *, policy_filter_mode: str,
                 hmm_state_col: str = "hmm_state_filtered",
                 validation_run_dir: str | None = None, state_map_file: str | None = None,
                 cluster_hardening_dir: str | None = None,
                 overlay_cluster_file: str | None = None,
                 overlay_cluster_hardening_dir: str | None = None,
                 tag: str | None = None) -> list[GridSource]:  # fmt: skip
    """One source per given file (``--flow/--hmm/--cluster-input-file``)."""
    if not files:
        raise ValueError("a grid needs at least one input file (--input-file, or with "
                         "--multi-source two of --flow/--hmm/--cluster-input-file)")
    out = []
    for name in check_sources(list(files)):
        inputs = file_inputs(
            name, files[name], hmm_state_col=hmm_state_col,
            validation_run_dir=validation_run_dir if name == "hmm" else None,
            state_map_file=state_map_file if name == "hmm" else None,
            cluster_hardening_dir=cluster_hardening_dir if name == "cluster" else None,
            overlay_cluster_file=overlay_cluster_file,
            overlay_cluster_hardening_dir=overlay_cluster_hardening_dir, tag=tag)
        extra = {"validation_run_dir": validation_run_dir if name == "hmm" else None,
                 "cluster_hardening_dir": cluster_hardening_dir if name == "cluster" else None}
        inputs.extra |= {k: v for k, v in extra.items() if v}
        out.append(GridSource(inputs, policy_filter_mode if name == "cluster" else None))
    return out
