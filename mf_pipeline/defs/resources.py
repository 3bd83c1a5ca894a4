"""Resources shared by every asset: the effective settings and the run's ticker work list."""

from collections.abc import Callable, Iterable

import dagster as dg

from mf_pipeline.lib.partitions import in_shards
from mf_pipeline.lib.settings import Settings, load_settings


class PipelineSettings(dg.ConfigurableResource):
    """The effective settings (YAML + MF_PIPELINE_* env) for each asset that asks.

    ``load_settings`` memoizes on its inputs, so a call per asset costs ~1 ms, not a parse.
    """

    settings_file: str | None = None

    def get(self) -> Settings:
        return load_settings(self.settings_file)


class TickerWork(dg.ConfigurableResource):
    """Which tickers of the run's shards the per-ticker assets process.

    Left empty (a run launched from the UI or the sensor), each asset works out
    its own list: tickers whose raw files changed for Bronze, tickers whose inputs are newer
    than their files for the derived layers. The CLI fills it with the list it planned, e.g.
    for ``--limit``, ``--full`` or one-ticker commands.
    """

    tickers: list[str] | None = None

    def select(self, shards: Iterable[str], automatic: Callable[[], Iterable[str]]) -> list[str]:
        """The tickers to process in ``shards``: the configured list, else ``automatic()``."""
        chosen = self.tickers if self.tickers is not None else automatic()
        return in_shards(chosen, shards)
