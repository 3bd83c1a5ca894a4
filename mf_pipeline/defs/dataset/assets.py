"""The ML dataset asset: the export of the Gold feature panel used by research."""

from pathlib import Path

import dagster as dg
import polars as pl

from mf_pipeline.defs.research.partitions import research_splits
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.registry import LAYERS
from mf_pipeline.lib.research.splits import infeasible_reason
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.dataset_step import export_ml_dataset
from mf_pipeline.lib.steps.research.options import split_keys, split_of
from mf_pipeline.orchestration.accounting import counted, part


class MlDatasetConfig(dg.Config):
    symbols_limit: int | None = None
    """A seeded random sample of N tickers (not the first N paths)."""
    start_date: str | None = None
    end_date: str | None = None
    sample_frac: float | None = None


@dg.asset(deps=list(LAYERS["ml_dataset"].inputs), group_name="dataset",
          kinds={"polars", "parquet"}, description=LAYERS["ml_dataset"].description)
@counted("asset body: ml_dataset")
def ml_dataset(context: dg.AssetExecutionContext, config: MlDatasetConfig,
               settings: PipelineSettings) -> dg.MaterializeResult:
    # The 44 export columns for every ticker and bar with ready key features.
    run_id = "ml-dataset-v1-" + context.run_id.replace("-", "")[:12]
    outcome = export_ml_dataset(settings.get(), run_id, config.symbols_limit, config.start_date,
                                config.end_date, config.sample_frac)
    meta = outcome.metadata
    with part("asset metadata: research splits registered (the export's dates read back)"):
        dropped = _register_splits(context.instance, settings.get(), outcome.dataset_path)
    for key, reason in dropped.items():
        context.log.info(f"split {key} removed: {reason}")
    return dg.MaterializeResult(metadata={
        "run_id": run_id,
        "row_count": meta["row_count"],
        "symbol_count": meta["symbol_count"],
        "dataset_path": str(outcome.dataset_path),
        "global_min_trade_date": str(meta.get("global_min_trade_date")),
        "global_max_trade_date": str(meta.get("global_max_trade_date")),
        "splits_removed": dropped,
    })


def _register_splits(instance: dg.DagsterInstance, cfg: Settings, dataset: Path) -> dict:
    """Register the research splits this dataset can fill (``full`` and the default train ends
    with train and test dates) and remove registered splits it cannot: a train end before the
    data starts or too close to its end would fail forever and keep the graph red."""
    calendar = pl.scan_parquet(dataset).select(pl.col("trade_date").unique()).collect()
    dates = calendar["trade_date"]
    name = research_splits.name
    registered = instance.get_dynamic_partitions(name)
    reasons = {key: infeasible_reason(split_of(key), dates)
               for key in dict.fromkeys([*split_keys(cfg), *registered])}
    instance.add_dynamic_partitions(name, [key for key in split_keys(cfg) if not reasons[key]])
    dropped = {key: reason for key in registered if (reason := reasons[key])}
    for key in dropped:
        instance.delete_dynamic_partition(name, key)
    return dropped
