"""``validation-compare`` and ``cluster-hardening-compare`` folders (research.md §6.8, §9.8).

State ids are arbitrary labels in each run, so states are matched by their outcome profiles
(``lib/validation/compare.py``); the raw id-aligned table is written too, labelled as such.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.validation.options import digest
from mf_pipeline.lib.steps.validation.policy import POLICY_FILE, read_table
from mf_pipeline.lib.steps.validation.run import read_run
from mf_pipeline.lib.validation.compare import (
    hardening_compare,
    outcome_profile,
    validation_compare,
)


def _profile(validation_dir: Path) -> pl.DataFrame:
    return outcome_profile(read_table(validation_dir, "bootstrap_state_summary"))


def _write(settings: Settings, kind: str, payload: dict[str, Any], tables: dict[str, pl.DataFrame],
           names: dict[str, str], summary: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    compare_id = f"{kind}-{digest(payload)}"
    folder = settings.artifacts_root / "validation_runs" / compare_id
    outputs = {key: str(lake.write_csv(tables[key], folder / name)) for key, name in names.items()}
    summary_name = f"{kind.replace('-', '_')}_summary.json"
    out = {"compare_id": compare_id, **payload, **summary,
           "outputs": {**outputs, "summary": str(folder / summary_name)}}
    lake.write_json(out, folder / summary_name)
    return {"compare_id": compare_id, "output_dir": str(folder), **payload,
            **{k: v for k, v in summary.items() if not isinstance(v, list)}}


def compare_validations(settings: Settings, run_dir_a: str | Path, run_dir_b: str | Path
                        ) -> dict[str, Any]:  # fmt: skip
    a, b = Path(run_dir_a), Path(run_dir_b)
    for folder in (a, b):
        read_run(folder)
    cards = [json.loads((f / "validation_scorecard.json").read_text()) for f in (a, b)]
    result = validation_compare(cards[0], cards[1], read_table(a, "state_scorecard"),
                                read_table(b, "state_scorecard"), _profile(a), _profile(b))
    return _write(settings, "validation-compare", {"run_dir_a": str(a), "run_dir_b": str(b)},
                  result.tables, {"metrics": "validation_compare_table.csv",
                                  "matched": "validation_compare_states_matched.csv",
                                  "id_aligned": "validation_compare_states_id_aligned.csv"},
                  result.summary)  # fmt: skip


def compare_policies(settings: Settings, dir_a: str | Path, dir_b: str | Path) -> dict[str, Any]:
    folders = (Path(dir_a), Path(dir_b))
    policies = []
    for folder in folders:
        path = folder / POLICY_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} has no {POLICY_FILE}: not a policy folder")
        policies.append(json.loads(path.read_text()))
    tables = [pl.read_csv(f / "cluster_hardening_state_table.csv") for f in folders]
    profiles = [_profile(Path(p["validation_run_dir"])) for p in policies]
    result = hardening_compare(tables[0], tables[1], profiles[0], profiles[1])
    exports = []
    for folder in folders:
        path = folder / "exports" / "cluster_hardening_export_summary.json"
        exports.append(json.loads(path.read_text()).get("tradable_rows") if path.is_file()
                       else None)
    summary = {**result.summary, "export_rows_a": exports[0], "export_rows_b": exports[1]}
    return _write(settings, "cluster-hardening-compare",
                  {"hardening_dir_a": str(folders[0]), "hardening_dir_b": str(folders[1])},
                  result.tables, {"matched": "cluster_hardening_compare_table.csv",
                                  "id_aligned": "cluster_hardening_compare_id_aligned.csv"},
                  summary)  # fmt: skip
