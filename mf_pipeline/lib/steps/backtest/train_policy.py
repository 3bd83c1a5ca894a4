"""The cluster policy a walk-forward backtest trades a split's test rows with, judged on the
split's TRAIN rows (``clustered_train_rows.parquet`` of its clustering run): validation, QA
and hardening with the settings' defaults, the same steps as the ``state_*_cluster`` assets.

The split's own ``state_policy_cluster`` judges the test rows, so trading those rows with it
would use their own future returns (the old tool's fault 6). Judged on the train rows, whose
forward labels end before the embargo, the policy is known when the test starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.research.cluster import TRAIN_ROWS
from mf_pipeline.lib.steps.validation.options import validation_options
from mf_pipeline.lib.steps.validation.policy import (
    POLICY_FILE,
    policy_run,
    policy_thresholds,
    qa_thresholds,
)
from mf_pipeline.lib.steps.validation.run import validation_run
from mf_pipeline.lib.validation.adapter import adapt


def train_rows_file(cluster_dir: str | Path) -> Path:
    return Path(cluster_dir) / f"{TRAIN_ROWS}.parquet"


def train_policy(settings: Settings, split_key: str, cluster_dir: str | Path
                 ) -> tuple[dict[str, Any], Path]:  # fmt: skip
    """Validate, QA and harden the clusters on the split's train rows; the policy and its file.
    The validation folder's id is a digest of the rows' identity and the options, so a rerun
    lands in the same folder (and the policy is reused when unchanged)."""
    path = train_rows_file(cluster_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: rerun the split's clustering model")
    rows = pl.read_parquet(path)
    adapted = adapt(rows, input_type="cluster", state_col="cluster_id", input_file=str(path))
    identity = {"split_id": split_key, "source": "cluster", "segment": "train",
                "cluster_run_dir": str(cluster_dir), "rows": rows.height}  # fmt: skip
    # judged on the rows the model was fitted on: in-sample for them, known at the train end
    run = validation_run(settings, adapted, validation_options(settings), identity=identity,
                         state_tag=f"{split_key}_train_cluster", in_sample=True,
                         rows_file=str(path))  # fmt: skip
    out = policy_run(run.output_dir, qa_thresholds(settings), policy_thresholds(settings),
                     export_filtered=False, parquet=settings.parquet)
    file = Path(out["output_dir"]) / POLICY_FILE
    return json.loads(file.read_text()), file
