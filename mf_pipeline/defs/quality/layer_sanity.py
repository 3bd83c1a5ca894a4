"""Whole-lake sanity summary assets of the derived layers (old ``*-sanity`` artifacts)."""

import dagster as dg

from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib import registry
from mf_pipeline.lib.steps.sanity_step import layer_sanity

HEADLINE = ("ticker_count", "symbol_count", "total_rows", "global_min_trade_date",
            "global_max_trade_date", "file_count")


def _sanity_asset(layer: str) -> dg.AssetsDefinition:
    @dg.asset(name=f"{layer}_sanity", deps=[layer], group_name="quality", kinds={"polars"},
              description=f"Sanity summary of `{layer}` over the whole lake (old "
                          f"`{layer}-sanity` JSON artifact).")
    def summary_asset(settings: PipelineSettings) -> dg.MaterializeResult:
        summary, path = layer_sanity(settings.get(), layer)
        headline = {k: summary[k] for k in HEADLINE if k in summary}
        return dg.MaterializeResult(metadata={**headline, "path": str(path)})
    return summary_asset


sanity_assets = [_sanity_asset(layer) for layer in registry.PER_TICKER
                 if registry.LAYERS[layer].sanity]
