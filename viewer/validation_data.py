"""Reads of the statistical validation and the state policy (issue #19) for the viewer.

The split-partitioned assets ``state_validation_<source>`` and ``state_policy_<source>`` each
store a record (``output_dir`` among its fields) through the lake IO manager at
``<data_root>/_io/<asset>/<split>.json``. The viewer follows those records to the run folders
the assets wrote, never the newest folder on disk, so what it shows is what the asset graph
holds. It reads the validation's files and the policy file and computes nothing of them: the
tables here only select, join and name what the validation step wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib.research.splits import FULL_SPLIT_ID
from mf_pipeline.lib.settings import Settings
from viewer import registry
from viewer.data import FileRef, Reader, read, read_parquet_columns

SOURCES: dict[str, str] = {"flow": "Flow", "hmm": "HMM", "cluster": "Cluster"}
"""Validated state sources and their names on the page."""
STATE_COLUMNS: dict[str, str] = {
    "flow": "flow_state_code", "hmm": "hmm_state_filtered", "cluster": "cluster_label",
}  # fmt: skip
"""The chart frame's column holding the state each source's validation judged (HMM: the
causal forward-filtered state, as the validation; cluster: the id the labels publish)."""
IO_DIR = "_io"  # the lake IO manager's folder under the data root (defs/io_managers.py)
# File names the validation and policy steps write (lib/steps/validation/run.py, policy.py).
RUN_SUMMARY, SCORECARD_JSON = "run_summary.json", "validation_scorecard.json"
STATE_SCORECARD = "state_scorecard.parquet"
TRANSITIONS, TRANSITION_PATHS = ("transition_event_summary.parquet",
                                 "transition_event_path_summary.parquet")
POLICY_FILE = "cluster_hardening_policy.json"
OUTCOME = "fwd_ret_10"  # the outcome the policy's edge test and the pairwise tests use


def record_path(settings: Settings, asset: str, split: str = FULL_SPLIT_ID) -> Path:
    """Where the IO manager stores ``asset``'s record of ``split``."""
    return settings.data_root / IO_DIR / asset / f"{split}.json"


@dataclass(frozen=True)
class ValidationRun:
    """One source's validation of a split as the assets recorded it, with its policy."""

    source: str
    split: str
    folder: Path
    summary: dict[str, Any]  # run_summary.json
    overall: dict[str, Any]  # validation_scorecard.json
    policy: pl.DataFrame | None  # one row per state of the policy file; None: no policy yet
    policy_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def in_sample(self) -> bool:
        return bool(self.summary.get("in_sample"))


def _record(settings: Settings, asset: str, split: str
            ) -> tuple[dict[str, Any], Path | None, str | None]:
    """``asset``'s record and its ``output_dir``, or why there is none."""
    path = record_path(settings, asset, split)
    if not path.is_file():
        return {}, None, f"no `{asset}` record for split `{split}` at `{path}`"
    record = json.loads(path.read_text())
    folder = Path(record.get("output_dir") or "")
    if not folder.is_dir():
        return record, None, f"`{path}` points at `{folder}`, which does not exist"
    return record, folder, None


def state_names(source: str, states: pl.Expr) -> pl.Expr:
    """A state id as the page names it: the flow state's label, else the id."""
    text = states.cast(pl.String)
    if source == "flow":
        return states.replace_strict(registry.FLOW_LABELS, default=None, return_dtype=pl.String
                                     ).fill_null(text)
    return text


def policy_table(policy: dict[str, Any]) -> pl.DataFrame:
    """The policy file's states: ``state_id, class_label, allow_direction_hint,
    tradability_score, reasons, class_code`` (``class_code``: a key of
    ``registry.POLICY_CLASS_LABELS``: ALLOW split by its direction hint)."""
    rows = [{"state_id": int(s["state_id"]), "class_label": s["class_label"],
             "allow_direction_hint": s.get("allow_direction_hint") or "UNCONFIRMED",
             "tradability_score": s.get("tradability_score"),
             "reasons": ", ".join(s.get("reasons") or [])} for s in policy["per_state"]]
    schema = {"state_id": pl.Int64, "class_label": pl.String, "allow_direction_hint": pl.String,
              "tradability_score": pl.Float64, "reasons": pl.String}
    frame = pl.DataFrame(rows, schema=schema)
    hint = pl.col("allow_direction_hint")
    label = pl.col("class_label")
    code = (pl.when(label == "BLOCK").then(registry.CLASS_BLOCK)
            .when(label == "WATCH").then(registry.CLASS_WATCH)
            .when(label != "ALLOW").then(registry.CLASS_NONE)
            .when(hint == "LONG_BIAS").then(registry.CLASS_ALLOW_LONG)
            .when(hint == "SHORT_BIAS").then(registry.CLASS_ALLOW_SHORT)
            .otherwise(registry.CLASS_ALLOW))  # fmt: skip
    return frame.with_columns(code.cast(pl.Int64).alias("class_code")).sort("state_id")


def load_run(settings: Settings, source: str, split: str = FULL_SPLIT_ID
             ) -> tuple[ValidationRun | None, str | None]:
    """``source``'s recorded validation of ``split`` with its policy, or why there is none."""
    _, folder, why = _record(settings, f"state_validation_{source}", split)
    if folder is None:
        return None, why
    summary_file = folder / RUN_SUMMARY
    if not summary_file.is_file():
        return None, f"`{folder}` has no {RUN_SUMMARY}: the validation did not finish"
    overall_file = folder / SCORECARD_JSON
    overall = json.loads(overall_file.read_text()) if overall_file.is_file() else {}
    record, policy_dir, why_policy = _record(settings, f"state_policy_{source}", split)
    policy, notes = None, []
    if policy_dir is None:
        notes.append(why_policy or "no policy")
    elif Path(record.get("validation_dir") or "") != folder:
        notes.append(f"the recorded `state_policy_{source}` classified another validation run "
                     f"(`{record.get('validation_dir')}`): materialize it again")
        policy_dir = None
    elif not (policy_dir / POLICY_FILE).is_file():
        notes.append(f"`{policy_dir}` has no {POLICY_FILE}")
        policy_dir = None
    else:
        policy = policy_table(json.loads((policy_dir / POLICY_FILE).read_text()))
    return ValidationRun(source, split, folder, json.loads(summary_file.read_text()), overall,
                         policy, policy_dir, notes), None


def load_runs(settings: Settings, split: str = FULL_SPLIT_ID
              ) -> tuple[dict[str, ValidationRun], dict[str, str]]:
    """Every source's validation of ``split``: (runs by source, why-missing by source)."""
    runs, missing = {}, {}
    for source in SOURCES:
        run, why = load_run(settings, source, split)
        if run is None:
            missing[source] = why or "not found"
        else:
            runs[source] = run
    return runs, missing


def _parquet(run: ValidationRun, name: str, columns: tuple[str, ...], reader: Reader
             ) -> pl.DataFrame | None:
    path = run.folder / name
    return read(reader, FileRef.of(path), columns) if path.is_file() else None


def scorecard(run: ValidationRun, reader: Reader = read_parquet_columns) -> pl.DataFrame:
    """One row per validated state: ``state_id, state, n_rows``, the ``fwd_ret_10`` mean and
    its bootstrap CI, the edge p-value after multiple-testing correction, and the policy's
    ``class_code, class_label, allow_direction_hint, tradability_score, reasons`` (null
    without a policy)."""
    columns = ("state_id", "n_rows", f"{OUTCOME}_mean", f"{OUTCOME}_ci_lo", f"{OUTCOME}_ci_hi",
               "edge_p_adjusted", "edge_significant")
    card = _parquet(run, STATE_SCORECARD, columns, reader)
    if card is None:
        raise FileNotFoundError(f"{run.folder} has no {STATE_SCORECARD}")
    card = card.with_columns(pl.col("state_id").cast(pl.Int64))
    policy = run.policy if run.policy is not None else policy_table({"per_state": []})
    return (card.join(policy, on="state_id", how="left")
            .with_columns(state_names(run.source, pl.col("state_id")).alias("state"))
            .select("state_id", "state", *columns[1:], *policy.columns[1:])
            .sort("state_id"))  # fmt: skip


def transition_paths(run: ValidationRun, top: int, reader: Reader = read_parquet_columns
                     ) -> pl.DataFrame:
    """The mean cumulative return from the event bar, by ``rel_bar``, of the ``top``
    transitions with the most events: ``transition_code, count_events, rel_bar,
    cumulative_ret_from_event_mean`` (empty when the run has no event study)."""
    events = _parquet(run, TRANSITIONS, ("transition_code", "count_events"), reader)
    paths = _parquet(run, TRANSITION_PATHS,
                     ("transition_code", "rel_bar", "cumulative_ret_from_event_mean"), reader)
    if events is None or paths is None or events.is_empty():
        return pl.DataFrame(schema={"transition_code": pl.String, "count_events": pl.Int64,
                                    "rel_bar": pl.Int32,
                                    "cumulative_ret_from_event_mean": pl.Float64})
    chosen = events.sort(["count_events", "transition_code"], descending=[True, False]
                         ).head(top).with_row_index("rank")
    return (paths.join(chosen, on="transition_code", how="inner")
            .sort("rank", "rel_bar").drop("rank")
            .select("transition_code", "count_events", "rel_bar",
                    "cumulative_ret_from_event_mean"))  # fmt: skip


def policy_codes(states: pl.Series, policy: pl.DataFrame) -> pl.Series:
    """The policy class code (``registry.POLICY_CLASS_LABELS``) of every state in ``states``:
    ``no policy`` for a state the policy does not list, null where there is no state."""
    if states.dtype.is_float():
        states = states.fill_nan(None)
    state = pl.col("state").cast(pl.Int64, strict=False)
    mapping = dict(zip(policy["state_id"], policy["class_code"], strict=True))
    coded = state.replace_strict(mapping, default=registry.CLASS_NONE, return_dtype=pl.Int64)
    return (pl.DataFrame({"state": states})
            .select(pl.when(state.is_not_null()).then(coded).alias("policy_class_code"))
            .to_series())  # fmt: skip
