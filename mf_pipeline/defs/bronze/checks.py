"""Blocking checks on Bronze: the ledger must account for every raw line."""

import dagster as dg

from mf_pipeline.defs.bronze.assets import bronze
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib.steps import bronze_step
from mf_pipeline.orchestration.accounting import counted


@dg.asset_check(asset=bronze, blocking=True)
@counted("check body: bronze ledger_reconciles")
def ledger_reconciles(settings: PipelineSettings) -> dg.AssetCheckResult:
    """lines_total = header + blank + rejected + valid + invalid, for every raw file."""
    failures = bronze_step.reconciliation_failures(settings.get())
    return dg.AssetCheckResult(
        passed=failures.is_empty(),
        metadata={
            "files_not_reconciling": failures.height,
            "examples": failures.head(20)["source_file"].to_list() if failures.height else [],
        },
    )
