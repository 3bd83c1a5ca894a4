"""Backtest assets per walk-forward split and state source (group ``backtest``).

``backtest_<source>`` trades the split's test rows (the rows its validation judged) with the
strategy given as run config: flow states by the flow mapping, HMM by its causal filtered
state with directions from the train rows (``train_state_scorecard.csv`` of the split's HMM
run), clusters by a policy judged on the split's train rows (``full``: the split's
``state_policy_cluster``; ``allow_only`` by default). A blocking
``backtest_sanity`` check keeps an inconsistent run from consumers. ``wf_backtest`` aggregates
the splits. Every asset only wires ``mf_pipeline.lib.steps.backtest`` to storage.
"""

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg

from mf_pipeline.defs.backtest.config import SplitBacktestConfig, WfBacktestConfig
from mf_pipeline.defs.research.partitions import REGIME_TAGS, research_splits
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.backtest.sanity import backtest_sanity
from mf_pipeline.lib.steps.backtest import split_inputs, walkforward
from mf_pipeline.lib.steps.backtest.run import backtest_run
from mf_pipeline.orchestration.freshness import (
    OPTIONS,
    SETTINGS_DIGEST,
    latest_materialization,
    research_settings_digest,
)
from mf_pipeline.orchestration.planning import ON_DEMAND_TAG

SPLIT = {"partitions_def": research_splits, "group_name": "backtest",
         "io_manager_key": "lake_io", "tags": REGIME_TAGS}  # fmt: skip
HEADLINE = ("trade_count", "win_rate", "avg_return", "profit_factor", "expectancy")


def _check(asset: str, report: dict[str, Any]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="backtest_sanity", asset_key=dg.AssetKey(asset),
        passed=report["status"] == "PASS",
        metadata={"errors": "; ".join(report["errors"]) or "none",
                  "warnings": "; ".join(str(w) for w in report["warnings"]) or "none"})


def record_of(summary: dict[str, Any], source: str, split_id: str) -> dict[str, Any]:
    """What the asset stores: the run folder and its headline (read by the aggregate)."""
    head = summary["headline"]
    return {"run_id": summary["run_id"], "output_dir": summary["output_dir"], "source": source,
            "split_id": split_id, "in_sample": summary.get("in_sample"),
            "mapping_source": summary.get("mapping_source"),
            **{k: head.get(k) for k in HEADLINE},
            "profit_factor_inf": head.get("profit_factor_inf")}  # fmt: skip


def _backtest_asset(source: str) -> dg.AssetsDefinition:
    name = f"backtest_{source}"
    ins = {"hmm_model": dg.AssetIn("hmm_model"), "cluster_model": dg.AssetIn("cluster_model"),
           "policy": dg.AssetIn("state_policy_cluster")}
    direction = {"flow": "the flow mapping (1,2 long; 3,4 short)",
                 "hmm": "the causal filtered HMM state, directions from the train rows",
                 "cluster": "a policy judged on the train rows (full: the split's "
                            "state_policy_cluster; ALLOW only by default)"}[source]
    description = (f"Backtest of the {source} states of a split on its test rows "
                   f"(backtest_ops.md §1): {direction}; signal at the close, fill at the next "
                   "open, Numba simulation, trades and metrics.")

    @dg.asset(name=name, kinds={"numba", "polars"}, description=description, ins=ins, **SPLIT,
              check_specs=[dg.AssetCheckSpec("backtest_sanity", asset=name, blocking=True,
                                             description="Trades consistent with the headline; "
                                             "dates ordered, prices positive (§1.9).")])
    def _asset(context: dg.AssetExecutionContext, config: SplitBacktestConfig,
               settings: PipelineSettings, **upstream: dict) -> Any:
        s = settings.get()
        non_overlapping = config.non_overlapping_test
        if non_overlapping is None:
            non_overlapping = s.validation_walkforward.non_overlapping_test
        inputs = split_inputs.split_inputs(
            s, context.partition_key, source, upstream["hmm_model"]["output_dir"],
            upstream["cluster_model"]["output_dir"], upstream["policy"]["output_dir"],
            non_overlapping=non_overlapping,
            test_end=dt.date.fromisoformat(config.test_end) if config.test_end else None,
            overlay=bool(config.overlay or config.overlay_mode not in (None, "none")))
        out = backtest_run(s, inputs, config.options(s))
        record = record_of(out.summary, source, context.partition_key)
        yield dg.Output(record, metadata={
            **{k: v for k, v in record.items()
               if v is not None and k != "output_dir" and v == v and v != float("inf")},
            "output_dir": dg.MetadataValue.path(str(out.output_dir)),
            "rows": out.summary["adapter_summary"]["rows_out"],
            "test_end": inputs.identity.get("test_end"),
            "duration_sec": out.summary["duration_sec"],
            OPTIONS: config.given(), SETTINGS_DIGEST: research_settings_digest(s)})
        yield _check(name, backtest_sanity(out.output_dir))

    return _asset


ASSETS = [_backtest_asset(source) for source in split_inputs.SOURCE_TYPES]


@dg.asset(group_name="backtest", kinds={"polars"}, tags={ON_DEMAND_TAG: "true"},
          deps=[f"backtest_{source}" for source in split_inputs.SOURCE_TYPES],
          description="Walk-forward backtest aggregate (backtest_ops.md §4): per split and "
          "model the headline, per model the means over successful splits, overlay summaries "
          "and `wf_backtest_report.md`.",
          check_specs=[dg.AssetCheckSpec("wf_backtest_sanity", asset="wf_backtest",
                                         blocking=True, description="Manifest and aggregates "
                                         "written; every split has a successful model.")])
def wf_backtest(context: dg.AssetExecutionContext, config: WfBacktestConfig,
                settings: PipelineSettings) -> Any:
    s = settings.get()
    folder = Path(config.wf_bt_dir) if config.wf_bt_dir else _latest_folder(context, s)
    summary = walkforward.write_aggregate(folder)
    yield dg.MaterializeResult(metadata={
        "wf_bt_dir": dg.MetadataValue.path(str(folder)), "wf_bt_id": folder.name,
        **{k: summary.get(k) for k in ("splits_total", "splits_successful", "splits_failed")},
        "report": dg.MetadataValue.path(str(folder / "wf_backtest_report.md"))})
    problems = walkforward.wf_problems(folder)
    yield dg.AssetCheckResult(check_name="wf_backtest_sanity",
                              asset_key=dg.AssetKey("wf_backtest"), passed=not problems,
                              metadata={"problems": "; ".join(problems) or "none"})


def _latest_folder(context: dg.AssetExecutionContext, settings: Any) -> Path:
    """A folder for the latest recorded backtests of the default walk-forward splits (newest
    by Dagster's records, never by folder mtime)."""
    from mf_pipeline.lib.steps.research.options import WF_PREFIX, split_keys

    splits = []
    for key in (k for k in split_keys(settings) if k.startswith(WF_PREFIX)):
        runs = {}
        for source in split_inputs.SOURCE_TYPES:
            record = latest_materialization(context.instance,
                                            dg.AssetKey(f"backtest_{source}"), key)
            mat = record.asset_materialization if record is not None else None
            if mat is not None and "output_dir" in mat.metadata:
                runs[source] = {"run_dir": str(mat.metadata["output_dir"].value)}
        splits.append({"train_end": key.removeprefix(WF_PREFIX), "split_id": key,
                       "status": walkforward.split_status(runs) if runs else "MISSING",
                       "error": None if runs else "no backtest materialized", "runs": runs})
    signature = {"splits": splits, "source": "latest materializations"}
    folder = walkforward.wf_bt_folder(settings, signature)
    walkforward.save_manifest(folder, signature, splits)
    return folder
