"""``mf backtest-run --input-file``: the inputs of a backtest of any state-labelled file, with
the old options' sources of directions (state map, validation scorecard) and classes (a
hardening folder), and the optional overlay (backtest_ops.md §1, §3, §6.1)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.backtest import adapter
from mf_pipeline.lib.layers.manifest import content_hash
from mf_pipeline.lib.steps.backtest.run import BacktestInputs
from mf_pipeline.lib.steps.validation.policy import POLICY_FILE

INPUT_TYPES = ("flow", "hmm", "cluster")
SCORECARD = "state_scorecard.csv"


def _file(path: str | Path, option: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{option} {p} does not exist")
    return p


def _policy(folder: str | Path, option: str) -> tuple[dict[str, Any], Path]:
    path = Path(folder) / POLICY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{option} {folder} has no {POLICY_FILE}: run "
                                "mf cluster-hardening-run first")
    return json.loads(path.read_text()), path


def file_inputs(input_type: str, input_file: str | Path, *, hmm_state_col: str =
                "hmm_state_filtered", validation_run_dir: str | Path | None = None,
                cluster_hardening_dir: str | Path | None = None,
                state_map_file: str | Path | None = None,
                overlay_cluster_file: str | Path | None = None,
                overlay_cluster_hardening_dir: str | Path | None = None,
                tag: str | None = None) -> BacktestInputs:  # fmt: skip
    """Read the file and its direction/policy/overlay sources; the identity hashes every
    file's content, so a changed input gets a new run id."""
    if input_type not in INPUT_TYPES:
        raise ValueError(f"--input-type must be one of {', '.join(INPUT_TYPES)}")
    started = time.perf_counter()
    path = _file(input_file, "--input-file")
    identity: dict[str, Any] = {"input_file": str(path.resolve()),
                                "content": content_hash(path)}
    extra = (hmm_state_col,) if input_type == "hmm" else ()
    inputs = BacktestInputs(rows=adapter.read_input(path, extra, input_type), input_type=input_type,
                            tag=(tag or path.parent.name).replace(" ", "-"), identity=identity,
                            input_file=str(path), in_sample=None)  # fmt: skip
    if input_type == "hmm":
        inputs.state_col = hmm_state_col
        identity["hmm_state_col"] = hmm_state_col
        if hmm_state_col == "hmm_state":  # Viterbi states read the whole sequence
            inputs.in_sample = True
        if state_map_file is not None:
            smap = _file(state_map_file, "--state-map-file")
            inputs.state_map = json.loads(smap.read_text())
            identity["state_map"] = content_hash(smap)
        elif validation_run_dir is not None:
            card = _file(Path(validation_run_dir) / SCORECARD, "--validation-run-dir: scorecard")
            inputs.scorecard = pl.read_csv(card)
            identity["scorecard"] = content_hash(card)
    if input_type == "cluster":
        if cluster_hardening_dir is None:
            raise ValueError("--input-type cluster needs --cluster-hardening-dir (a folder with "
                             f"{POLICY_FILE}: run mf cluster-hardening-run first)")
        inputs.cluster_policy, ppath = _policy(cluster_hardening_dir, "--cluster-hardening-dir")
        identity["policy"] = content_hash(ppath)
    if (overlay_cluster_file is None) != (overlay_cluster_hardening_dir is None):
        raise ValueError("the overlay needs both --overlay-cluster-file and "
                         "--overlay-cluster-hardening-dir (got only one)")
    if overlay_cluster_file is not None:
        opath = _file(overlay_cluster_file, "--overlay-cluster-file")
        inputs.overlay_rows = adapter.read_input(opath)
        inputs.overlay_policy, ppath = _policy(overlay_cluster_hardening_dir or "",
                                               "--overlay-cluster-hardening-dir")
        identity["overlay"] = [content_hash(opath), content_hash(ppath)]
    inputs.load_sec = time.perf_counter() - started
    return inputs


def _columns(path: Path) -> list[str]:
    if path.suffix.lower() == ".parquet":
        return list(pl.read_parquet_schema(path))
    return pl.read_csv(path, n_rows=0).columns


def calibration_file_inputs(source_file: str | Path, source_type: str = "auto", *,
                            state_col: str | None = None,
                            validation_run_dir: str | Path | None = None,
                            cluster_hardening_dir: str | Path | None = None,
                            state_map_file: str | Path | None = None,
                            overlay_cluster_file: str | Path | None = None,
                            overlay_cluster_hardening_dir: str | Path | None = None,
                            ) -> BacktestInputs:  # fmt: skip
    """``execution-realism-calibrate --source-file``: the type detected from the columns when
    ``auto`` (§7.7 step 1), then the same inputs as a backtest of that file. Without a state
    map or validation folder an HMM file's directions are inferred by the calibration."""
    from mf_pipeline.lib.backtest.calibration import detect_source_type

    path = _file(source_file, "--source-file")
    kind = source_type.strip().lower()
    if kind == "auto":
        kind = detect_source_type(_columns(path), state_col)
    hmm_col = state_col or ("hmm_state_filtered" if "hmm_state_filtered" in _columns(path)
                            else "hmm_state")  # fmt: skip
    return file_inputs(kind, path, hmm_state_col=hmm_col, validation_run_dir=validation_run_dir,
                       cluster_hardening_dir=cluster_hardening_dir, state_map_file=state_map_file,
                       overlay_cluster_file=overlay_cluster_file,
                       overlay_cluster_hardening_dir=overlay_cluster_hardening_dir)
