"""Bronze quality assets: the symbol master and the sanity report (old QA commands)."""

import dagster as dg

from mf_pipeline.defs.bronze.assets import bronze
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.steps import qa_step


@dg.asset(deps=[bronze], group_name="ingest", kinds={"polars", "parquet"})
def symbol_master(settings: PipelineSettings) -> dg.MaterializeResult:
    """One row per ticker: dates, row counts, price range, and real invalid/rejected counts."""
    outcome = qa_step.build_symbol_master(settings.get())
    master = outcome.master
    return dg.MaterializeResult(
        metadata={
            "symbol_count": master.height,
            "bronze_file_count": outcome.bronze_files,
            "bronze_read_errors": len(outcome.read_errors),
            "tickers_with_invalid_rows": int((master["invalid_row_count"] > 0).sum()),
            "path": str(outcome.outputs[0]),
        }
    )


@dg.asset(deps=[symbol_master], group_name="ingest", kinds={"polars"})
def bronze_sanity(settings: PipelineSettings) -> dg.MaterializeResult:
    """Global Bronze sanity summary, per-exchange and per-year tables (artifacts/bronze_qa)."""
    summary, written = qa_step.sanity_checks(settings.get())
    keys = ("ticker_count", "total_rows", "global_min_trade_date", "global_max_trade_date",
            "total_warn_rows", "total_invalid_rows", "empty_bronze_files_count")
    return dg.MaterializeResult(
        metadata={**{k: summary.get(k) for k in keys}, "files": [str(p) for p in written]}
    )
