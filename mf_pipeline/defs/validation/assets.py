"""Validation assets per walk-forward split and state source (group ``validation``).

For each source (``flow``, ``hmm`` — judged by ``hmm_state_filtered`` —, ``cluster``):
``state_validation_<source>`` validates the split's rows (the rows both model runs labelled,
so the three sources are compared on the same rows), ``cluster_qa_<source>`` flags its
states, ``state_policy_<source>`` classifies them ALLOW / WATCH / BLOCK from the validation
and the QA flags it receives explicitly. Each has a blocking check: a consumer never reads a
failed validation or an inconsistent policy. ``wf_validation`` aggregates the walk-forward
splits. Every asset only wires ``mf_pipeline.lib.steps.validation`` to storage.
"""

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg

from mf_pipeline.defs.research.partitions import REGIME_TAGS, research_splits
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.defs.validation.config import (
    PolicyConfig,
    QaConfig,
    StateValidationConfig,
    WfValidationConfig,
)
from mf_pipeline.lib.steps.validation import policy as policy_step
from mf_pipeline.lib.steps.validation import sanity, split_validation
from mf_pipeline.lib.steps.validation import walkforward as wf_step
from mf_pipeline.lib.steps.validation.inputs import SOURCES
from mf_pipeline.orchestration.freshness import (
    OPTIONS,
    SETTINGS_DIGEST,
    latest_materialization,
    research_settings_digest,
)
from mf_pipeline.orchestration.planning import ON_DEMAND_TAG

SPLIT = {"partitions_def": research_splits, "group_name": "validation",
         "io_manager_key": "lake_io", "tags": REGIME_TAGS}  # fmt: skip
"""Split-partitioned like the research models (and, like them, run by ``mf demo`` on
``full``)."""


def _check(name: str, asset: str, report: dict[str, Any]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name, asset_key=dg.AssetKey(asset), passed=bool(report["passed"]),
        metadata={"problems": "; ".join(report["problems"]) or "none",
                  **{k: v for k, v in report.items() if k.endswith("nan_count")}})


def _validation_asset(source: str) -> dg.AssetsDefinition:
    name = f"state_validation_{source}"
    description = (f"Validation of the {source} states of a split (research.md §6): "
                   "date-block bootstrap CIs with Holm-corrected edge and pairwise tests, "
                   "transition event study, rolling stability, scorecards.")

    @dg.asset(name=name, kinds={"polars"}, description=description, **SPLIT,
              check_specs=[dg.AssetCheckSpec("validation_sanity", asset=name, blocking=True,
                                             description="Finished run, one scorecard row per "
                                             "state, no NaN cell (research.md §6.7).")])
    def _asset(context: dg.AssetExecutionContext, config: StateValidationConfig,
               settings: PipelineSettings, hmm_model: dict, cluster_model: dict) -> Any:
        s = settings.get()
        non_overlapping = config.non_overlapping_test
        if non_overlapping is None:
            non_overlapping = s.validation_walkforward.non_overlapping_test
        out = split_validation.validate_split(
            s, context.partition_key, source, hmm_model["output_dir"],
            cluster_model["output_dir"], config.options(s), non_overlapping,
            dt.date.fromisoformat(config.test_end) if config.test_end else None)
        summary = out.summary
        record = {"run_id": out.run_id, "output_dir": str(out.output_dir), "source": source,
                  "split_id": context.partition_key, "rows": summary["rows"],
                  "state_count": summary["state_count"], "in_sample": summary["in_sample"],
                  "validation_grade": summary.get("validation_grade")}
        yield dg.Output(record, metadata={
            **record, "output_dir": dg.MetadataValue.path(str(out.output_dir)),
            OPTIONS: config.given(), SETTINGS_DIGEST: research_settings_digest(s),
            "config_digest": summary["config_digest"],
            "block_length": summary["bootstrap"].get("block_length"),
            "common_rows": summary["identity"].get("common_rows"),
            "test_end": summary["identity"].get("test_end")})
        yield _check("validation_sanity", name, sanity.validation_sanity(out.output_dir))

    return _asset


def _qa_asset(source: str) -> dg.AssetsDefinition:
    name, upstream = f"cluster_qa_{source}", f"state_validation_{source}"
    description = (f"QA flags of the {source} states of a split (research.md §8; named after "
                   "the old cluster-qa-run, it applies to every source).")

    @dg.asset(name=name, description=description, **SPLIT,
              ins={"validation": dg.AssetIn(upstream)})
    def _asset(config: QaConfig, settings: PipelineSettings, validation: dict) -> dg.Output:
        out = policy_step.qa_run(validation["output_dir"], config.qa(settings.get()))
        summary = out["summary"]
        record = {"output_dir": out["output_dir"], "validation_dir": validation["output_dir"],
                  "labels": {str(k): v for k, v in out["labels"].items()},
                  "states_flagged": summary.get("states_flagged")}
        return dg.Output(record, metadata={
            "output_dir": dg.MetadataValue.path(out["output_dir"]),
            "states_total": summary.get("states_total"),
            "states_flagged": summary.get("states_flagged"),
            "issue_counts": summary.get("issue_counts") or {}, OPTIONS: config.given(),
            SETTINGS_DIGEST: research_settings_digest(settings.get())})

    return _asset


def _policy_asset(source: str) -> dg.AssetsDefinition:
    name = f"state_policy_{source}"
    description = (f"Tradable-state policy of the {source} states of a split "
                   "(research.md §9): ALLOW / WATCH / BLOCK with reasons, tradability score "
                   "and direction; ALLOW needs a Holm-significant edge.")

    @dg.asset(name=name, description=description, **SPLIT,
              ins={"validation": dg.AssetIn(f"state_validation_{source}"),
                   "qa": dg.AssetIn(f"cluster_qa_{source}")},
              check_specs=[dg.AssetCheckSpec("hardening_sanity", asset=name, blocking=True,
                                             description="Policy written; ALLOW + WATCH + "
                                             "BLOCK = states (research.md §9.8).")])
    def _asset(config: PolicyConfig, settings: PipelineSettings, validation: dict,
               qa: dict) -> Any:
        s = settings.get()
        labels = {int(k): list(v) for k, v in qa["labels"].items()}
        out = policy_step.policy_run(validation["output_dir"], config.qa(s), config.thresholds(s),
                                     qa_labels=labels, export_filtered=config.export_filtered,
                                     force=config.force, parquet=s.parquet)
        summary = out["summary"]
        record = {"output_dir": out["output_dir"], "validation_dir": validation["output_dir"],
                  "source": source, "in_sample": validation.get("in_sample"),
                  **{k: summary.get(k) for k in ("allow_count", "watch_count", "block_count",
                                                 "allow_state_ids", "watch_state_ids",
                                                 "block_state_ids")}}
        yield dg.Output(record, metadata={
            **{k: v for k, v in record.items() if not k.endswith("_ids")},
            "output_dir": dg.MetadataValue.path(out["output_dir"]),
            "allow": str(summary.get("allow_state_ids")), "reused": out["reused"],
            OPTIONS: config.given(), SETTINGS_DIGEST: research_settings_digest(s)})
        yield _check("hardening_sanity", name, sanity.hardening_sanity(out["output_dir"]))

    return _asset


ASSETS = [make(source) for source in SOURCES
          for make in (_validation_asset, _qa_asset, _policy_asset)]


@dg.asset(group_name="validation", kinds={"polars"}, tags={ON_DEMAND_TAG: "true"},
          deps=[f"state_policy_{source}" for source in SOURCES],
          check_specs=[dg.AssetCheckSpec("wf_sanity", asset="wf_validation", blocking=True,
                                         description="Manifest and aggregates written; no "
                                         "split failed (research.md §7.5).")])
def wf_validation(context: dg.AssetExecutionContext, config: WfValidationConfig,
                  settings: PipelineSettings) -> Any:
    """Walk-forward aggregate over the splits (research.md §7.3–7.5, §8.4, §9.7): per-model
    scorecards, wins, comparisons, QA issue frequency, policy counts and the threshold
    recommendation, with `wf_full_report.md`."""
    s = settings.get()
    if config.wf_run_dir:
        folder = Path(config.wf_run_dir)
        manifest = wf_step.load_manifest(folder)
        if manifest is None:
            raise FileNotFoundError(f"{folder} has no {wf_step.MANIFEST}")
    else:
        folder, manifest = _latest_manifest(context, s)
    summary = wf_step.write_aggregate(s, folder, manifest, config.thresholds(s))
    yield dg.MaterializeResult(metadata={
        "wf_run_dir": dg.MetadataValue.path(str(folder)), "wf_run_id": folder.name,
        "splits_total": summary["splits_total"],
        "splits_successful": summary["splits_successful"],
        "splits_failed": summary["splits_failed"],
        "wins_by_metric": summary.get("wins_by_metric") or {},
        "report": dg.MetadataValue.path(str(folder / "wf_full_report.md"))})
    yield _check("wf_sanity", "wf_validation", sanity.wf_sanity(folder))


def _latest_manifest(context: dg.AssetExecutionContext, settings: Any
                     ) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """A manifest of the default walk-forward splits from the latest recorded
    materializations of their validations (newest by Dagster's records, never by mtime)."""
    from mf_pipeline.lib.steps.research.options import WF_PREFIX, split_keys

    splits = []
    for key in (k for k in split_keys(settings) if k.startswith(WF_PREFIX)):
        dirs = {}
        for source in SOURCES:
            record = latest_materialization(context.instance,
                                            dg.AssetKey(f"state_validation_{source}"), key)
            mat = record.asset_materialization if record is not None else None
            if mat is not None and "output_dir" in mat.metadata:
                dirs[f"val_{source}_dir"] = str(mat.metadata["output_dir"].value)
        status = "SUCCESS" if len(dirs) == len(SOURCES) else "MISSING"
        splits.append({"train_end": key.removeprefix(WF_PREFIX), "split_id": key,
                       "status": status, "error": None if dirs else "not validated", **dirs})
    sig = {"splits": splits}
    folder = wf_step.wf_folder(settings, sig)
    return folder, wf_step.save_manifest(folder, {"train_end_list": [
        s["train_end"] for s in splits], "source": "latest materializations"}, splits)
