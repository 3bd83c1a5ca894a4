"""One validation run (research.md §6.6): bootstrap, transition event study, rolling
stability and scorecards of an adapted state-labelled frame, written as the old artifacts
under ``<artifacts_root>/validation_runs/<run_id>_<input_type>_<state_tag>/``.

The run id is derived from what was validated and how (``identity`` + the options' digest), so
the same input and options always land in the same folder and a rerun converges. Every file is
written atomically and ``run_summary.json`` last: a folder without it is an interrupted run,
which the sanity check and the consumers refuse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.research.artifacts import now, write_table
from mf_pipeline.lib.steps.validation.options import ValidationOptions, digest
from mf_pipeline.lib.validation.adapter import Adapted
from mf_pipeline.lib.validation.bootstrap import run_bootstrap
from mf_pipeline.lib.validation.events import transition_event_study
from mf_pipeline.lib.validation.scorecards import build_scorecards
from mf_pipeline.lib.validation.stability import rolling_stability

RUN_SUMMARY = "run_summary.json"
ADAPTED_SAMPLE_ROWS = 200_000
TABLES = ("bootstrap_state_summary", "bootstrap_pairwise_diff", "transition_event_summary",
          "transition_event_path_summary", "rolling_state_metrics", "state_stability_summary",
          "state_scorecard")  # fmt: skip
"""Tables written as .csv and .parquet (spec §6.6 step 4)."""


@dataclass
class ValidationOutcome:
    run_id: str
    output_dir: Path
    summary: dict[str, Any]
    adapted: pl.DataFrame


def run_folder(settings: Settings, run_id: str, adapted: Adapted, state_tag: str | None) -> Path:
    summary = adapted.summary
    tag = state_tag or summary.get("state_column") or "state"
    kind = summary.get("input_type_resolved") or summary.get("state_label_type")
    return settings.artifacts_root / "validation_runs" / f"{run_id}_{kind}_{tag}"


def validation_run(settings: Settings, adapted: Adapted, options: ValidationOptions, *,
                   identity: dict[str, Any], state_tag: str | None = None,
                   in_sample: bool | None = False, rows_file: str | None = None
                   ) -> ValidationOutcome:  # fmt: skip
    """Validate ``adapted`` with ``options``; ``identity`` says what was validated (file and
    its content hash, or split, source and model runs) and, with the options, fixes the id.
    ``in_sample``: true when the states were fitted on these rows, None when unknown (a file).
    ``rows_file``: the state-labelled rows a policy export joins (default the input file)."""
    started, t0 = now(), time.perf_counter()
    frame, label_type = adapted.frame, adapted.summary["state_label_type"]
    run_id = "validation-" + digest({"identity": identity, "options": options.payload()})
    folder = run_folder(settings, run_id, adapted, state_tag)
    boot = run_bootstrap(
        frame, n_boot=options.n_boot, ci=options.ci, mode=options.bootstrap_mode,
        block_length=options.block_length, random_state=options.random_state,
        max_points_per_state=options.max_points_per_state, alpha=options.alpha)
    events = transition_event_study(
        frame, window_pre=options.window_pre, window_post=options.window_post,
        min_events_per_transition=options.min_events_per_transition,
        max_gap_days=options.max_gap_days)
    stability = rolling_stability(
        frame, window_months=options.window_months, step_months=options.step_months,
        eps=options.eps, transition_stability=label_type == "hmm")
    scorecard, overall = build_scorecards(frame, label_type, boot, stability,
                                          weights=options.weights, eps=options.eps,
                                          alpha=options.alpha)  # fmt: skip
    overall = {**overall, "in_sample": in_sample, "causal_states":
               adapted.summary.get("causal_states"), "alpha": options.alpha}
    tables = {"bootstrap_state_summary": boot.state_summary,
              "bootstrap_pairwise_diff": boot.pairwise,
              "transition_event_summary": events.summary,
              "transition_event_path_summary": events.path_summary,
              "rolling_state_metrics": stability.rolling,
              "state_stability_summary": stability.state_summary,
              "state_scorecard": scorecard}  # fmt: skip
    out: dict[str, str] = {
        "adapter_summary": str(lake.write_json(adapted.summary, folder / "adapter_summary.json")),
        "bootstrap_meta": str(lake.write_json(boot.meta, folder / "bootstrap_meta.json")),
        "transition_top_codes": str(lake.write_json(events.top_codes,
                                                    folder / "transition_top_codes.json")),
        "validation_scorecard_json": str(lake.write_json(overall,
                                                         folder / "validation_scorecard.json")),
    }  # fmt: skip
    for name, table in tables.items():
        out |= write_table(table, folder, name, ("csv", "parquet"), settings)
    out["transition_matrix_stability_csv"] = str(
        lake.write_csv(stability.transition_matrix, folder / "transition_matrix_stability.csv"))
    if options.write_large_artifacts:
        out["transition_events"] = str(lake.write_parquet(
            events.events, folder / "transition_events.parquet", settings.parquet))
        out["adapted_rows_sample"] = str(lake.write_parquet(
            frame.sample(n=min(ADAPTED_SAMPLE_ROWS, frame.height), seed=options.random_state)
            .sort("ticker", "trade_date"), folder / "adapted_rows_sample.parquet",
            settings.parquet))
    summary = {
        "run_id": run_id, "input_file": adapted.summary.get("input_file"),
        "rows_file": rows_file or adapted.summary.get("input_file"),
        "input_type": adapted.summary.get("input_type_resolved"),
        "state_label_type": label_type, "state_column": adapted.summary.get("state_column"),
        "identity": identity, "in_sample": in_sample,
        "causal_states": adapted.summary.get("causal_states"),
        "options": options.payload(), "config_digest": options.digest(),
        "started_ts": started, "finished_ts": now(),
        "duration_sec": round(time.perf_counter() - t0, 3),
        "rows": frame.height, "state_count": frame["state_id"].n_unique(),
        "ticker_count": frame["ticker"].n_unique(),
        "bounds": {"rows": frame.height,
                   "min_trade_date": _iso(frame["trade_date"].min()),
                   "max_trade_date": _iso(frame["trade_date"].max())},
        "bootstrap": boot.meta,
        "event_study": {"event_rows": events.events.height,
                        "transition_summary_rows": events.summary.height,
                        "path_summary_rows": events.path_summary.height},
        "rolling_stability": {"rolling_rows": stability.rolling.height,
                              "state_summary_rows": stability.state_summary.height},
        "validation_grade": overall.get("validation_grade"),
        "write_large_artifacts": options.write_large_artifacts,
        "outputs": {**{key: value for key, value in out.items()},
                    "run_summary": str(folder / RUN_SUMMARY),
                    "bootstrap_pairwise_diff_csv": out["bootstrap_pairwise_diff_csv"],
                    "validation_scorecard_json": out["validation_scorecard_json"]},
    }  # fmt: skip
    lake.write_json(summary, folder / RUN_SUMMARY)
    return ValidationOutcome(run_id, folder, summary, frame)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def read_run(folder: Path) -> dict[str, Any]:
    """The ``run_summary.json`` of a finished validation run (error naming the folder else)."""
    import json

    path = Path(folder) / RUN_SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a finished validation run: no {RUN_SUMMARY} "
                                "(run `mf validation-run` first, or the run was interrupted)")
    return json.loads(path.read_text())
