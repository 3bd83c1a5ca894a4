"""Validate a split's states from its model runs, or any state-labelled file.

Both paths end in :func:`run.validation_run`; they differ in where the rows come from and
what identifies them (the run id is a digest of that identity and the options).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.validation.inputs import SOURCES, split_rows
from mf_pipeline.lib.steps.validation.options import ValidationOptions, digest
from mf_pipeline.lib.steps.validation.run import ValidationOutcome, validation_run
from mf_pipeline.lib.validation.adapter import adapt, read_state_file


def validate_split(settings: Settings, split_key: str, source: str, hmm_run_dir: str | Path,
                   cluster_run_dir: str | Path, options: ValidationOptions,
                   non_overlapping: bool = True, test_end: dt.date | None = None
                   ) -> ValidationOutcome:  # fmt: skip
    """Validate the ``source`` states of split ``split_key`` on the rows both runs labelled
    (up to ``test_end``, default: the next default train end with ``non_overlapping``)."""
    if source not in SOURCES:
        raise ValueError(f"unknown state source {source!r}: one of {', '.join(SOURCES)}")
    rows = split_rows(settings, split_key, hmm_run_dir, cluster_run_dir, non_overlapping,
                      test_end)
    input_type, state_col = SOURCES[source]
    adapted = adapt(rows.frame, input_type=input_type, state_col=state_col)
    adapted.summary["split"] = rows.info
    rows_file = Path(cluster_run_dir) / "clustered_dataset_full.parquet" if source == "cluster" \
        else Path(hmm_run_dir) / "decoded_rows.parquet"  # fmt: skip
    identity = {"split_id": split_key, "source": source, "hmm_run_dir": str(hmm_run_dir),
                "cluster_run_dir": str(cluster_run_dir), "common_rows": rows.info["common_rows"],
                "test_end": rows.info["test_end"]}  # fmt: skip
    return validation_run(settings, adapted, options, identity=identity,
                          state_tag=f"{split_key}_{source}", in_sample=rows.info["in_sample"],
                          rows_file=str(rows_file))


def validate_file(settings: Settings, input_file: str | Path, options: ValidationOptions, *,
                  input_type: str = "auto", state_col: str | None = None,
                  sample_frac: float | None = None, date_from: str | None = None,
                  date_to: str | None = None) -> ValidationOutcome:  # fmt: skip
    """``mf validation-run --input-file``: validate any state-labelled Parquet/CSV file."""
    path = Path(input_file)
    if not path.is_file():
        raise FileNotFoundError(f"--input-file {path} does not exist")
    adapted = adapt(read_state_file(path), input_type=input_type, state_col=state_col,
                    date_from=date_from, date_to=date_to, sample_frac=sample_frac,
                    sample_seed=options.random_state, input_file=str(path))
    identity = {"input_file": str(path.resolve()), "content": _content_hash(path),
                "input_type": input_type, "state_col": state_col, "sample_frac": sample_frac,
                "date_from": date_from, "date_to": date_to}  # fmt: skip
    # whether a file's labels were fitted on these rows is the user's knowledge, not ours
    return validation_run(settings, adapted, options, identity=identity, state_tag=state_col,
                          in_sample=None)


def _content_hash(path: Path) -> str:
    import xxhash

    h = xxhash.xxh3_128()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            h.update(block)
    return digest(h.hexdigest())
