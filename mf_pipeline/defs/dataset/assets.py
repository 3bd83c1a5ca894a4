"""The ML dataset asset: the export of the Gold feature panel used by research."""

import dagster as dg

from mf_pipeline.defs.research.partitions import research_splits
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.registry import LAYERS
from mf_pipeline.lib.steps.dataset_step import export_ml_dataset
from mf_pipeline.lib.steps.research.options import split_keys


class MlDatasetConfig(dg.Config):
    symbols_limit: int | None = None
    """A seeded random sample of N tickers (not the first N paths)."""
    start_date: str | None = None
    end_date: str | None = None
    sample_frac: float | None = None


@dg.asset(deps=list(LAYERS["ml_dataset"].inputs), group_name="dataset",
          kinds={"polars", "parquet"}, description=LAYERS["ml_dataset"].description)
def ml_dataset(context: dg.AssetExecutionContext, config: MlDatasetConfig,
               settings: PipelineSettings) -> dg.MaterializeResult:
    # The 44 export columns for every ticker and bar with ready key features.
    run_id = "ml-dataset-v1-" + context.run_id.replace("-", "")[:12]
    outcome = export_ml_dataset(settings.get(), run_id, config.symbols_limit, config.start_date,
                                config.end_date, config.sample_frac)
    meta = outcome.metadata
    # The research assets' split partitions: full and the default walk-forward train ends.
    context.instance.add_dynamic_partitions(research_splits.name, split_keys(settings.get()))
    return dg.MaterializeResult(metadata={
        "run_id": run_id,
        "row_count": meta["row_count"],
        "symbol_count": meta["symbol_count"],
        "dataset_path": str(outcome.dataset_path),
        "global_min_trade_date": str(meta.get("global_min_trade_date")),
        "global_max_trade_date": str(meta.get("global_max_trade_date")),
    })
