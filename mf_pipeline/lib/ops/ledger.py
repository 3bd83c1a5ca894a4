"""The nightly ops ledger (backtest_ops.md §11.1, §11.3): one row per as-of date.

A night that is run again replaces its row (the latest attempt wins, also a failed one), so the
ledger never holds two rows for one as-of date. The file is rewritten whole under a lock and
renamed into place: a reader never sees half a ledger, two writers never lose a row.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.settings import Settings

CANDIDATE_PREFIXES = {"CANDIDATE_ALPHA": "alpha", "CANDIDATE_EXEC": "exec",
                      "CANDIDATE_EXEC_2": "exec2"}  # fmt: skip
"""Candidate label → the column prefix of its figures in the ledger."""
_PER_CANDIDATE = {"expectancy": pl.Float64, "pf": pl.Float64, "ret_cv": pl.Float64,
                  "trades": pl.Int64, "drift_status": pl.String}  # fmt: skip

SCHEMA: dict[str, pl.DataType] = {
    "as_of_tag": pl.String, "ops_run_id": pl.String, "ops_status": pl.String,
    "built_ts": pl.String, "exec_overlay_match_rate": pl.Float64,
    "wf_split_success_count": pl.Int64,
    **{f"{p}_{k}": t for p in CANDIDATE_PREFIXES.values() for k, t in _PER_CANDIDATE.items()},
    # ours: how the night's run ended, where, and why
    "status": pl.String, "failed_step": pl.String, "error": pl.String,
    "dagster_run_id": pl.String, "ops_run_dir": pl.String,
}  # fmt: skip
"""The §11.1 columns ``ops-ledger-view`` reads, then ours. ``status`` is SUCCESS or FAILED (the
run), ``ops_status`` the worst candidate drift status of a successful night."""

SUCCESS, FAILED = "SUCCESS", "FAILED"


def ledger_path(settings: Settings, path: str | Path | None = None) -> Path:
    """``path`` (default ``ops_nightly.default_ledger_path``); relative = under artifacts root."""
    chosen = Path(path or settings.ops_nightly.default_ledger_path)
    return chosen if chosen.is_absolute() else settings.artifacts_root / chosen


def read(path: Path) -> pl.DataFrame:
    """The ledger with its full schema (columns an older file lacks are null); empty if absent."""
    if not path.is_file():
        return pl.DataFrame(schema=SCHEMA)
    frame = pl.read_parquet(path) if path.suffix == ".parquet" else \
        pl.read_csv(path, schema_overrides=SCHEMA, infer_schema_length=0)
    missing = [pl.lit(None, dtype).alias(name) for name, dtype in SCHEMA.items()
               if name not in frame.columns]
    return frame.with_columns(missing).select(
        [pl.col(name).cast(dtype) for name, dtype in SCHEMA.items()])


def _write(frame: pl.DataFrame, path: Path) -> None:
    if path.suffix == ".parquet":
        lake.write_parquet(frame, path)
    else:
        lake.write_csv(frame, path)


def upsert(path: Path, row: Mapping[str, Any]) -> pl.DataFrame:
    """Put ``row`` in the ledger at ``path``, replacing the row of its ``as_of_tag``; returns the
    ledger written (sorted by as-of). Keys outside the schema are refused (a typo would else
    vanish silently)."""
    unknown = sorted(set(row) - set(SCHEMA))
    if unknown:
        raise ValueError(f"ledger row has unknown columns: {unknown}")
    if not row.get("as_of_tag"):
        raise ValueError("ledger row needs an as_of_tag")
    new = pl.DataFrame([{name: row.get(name) for name in SCHEMA}], schema=SCHEMA)
    with lake.file_lock(path):
        old = read(path)
        frame = pl.concat([old.filter(pl.col("as_of_tag") != new["as_of_tag"][0]), new])
        frame = frame.sort("as_of_tag")
        _write(frame, path)
    return frame


def view(ledger: pl.DataFrame, last: int = 10, candidate: str | None = None) -> pl.DataFrame:
    """The ``ops-ledger-view`` table: the ``last`` newest rows by ``built_ts`` with the night's
    columns, or one candidate's figures (``CANDIDATE_ALPHA`` | ``_EXEC`` | ``_EXEC_2``)."""
    if candidate is not None and candidate not in CANDIDATE_PREFIXES:
        raise ValueError(f"unknown candidate {candidate!r}; one of "
                         f"{', '.join(CANDIDATE_PREFIXES)}")
    rows = ledger.sort("built_ts", descending=True, nulls_last=True).head(last)
    base = [pl.col("ops_run_id"), pl.col("as_of_tag").alias("as_of"),
            pl.col("ops_status").alias("status"), pl.col("status").alias("run")]
    if candidate is None:
        return rows.select(*base, pl.col("alpha_expectancy").alias("alpha_exp"),
                           pl.col("exec_expectancy").alias("exec_exp"),
                           pl.col("exec_overlay_match_rate").alias("exec_match"),
                           pl.col("wf_split_success_count").alias("wf_success"),
                           "failed_step")
    p = CANDIDATE_PREFIXES[candidate]
    return rows.select(*base, *(pl.col(f"{p}_{k}").alias(f"{p}_{short}") for k, short in (
        ("expectancy", "exp"), ("pf", "pf"), ("ret_cv", "ret_cv"), ("trades", "trades"),
        ("drift_status", "drift"))))
