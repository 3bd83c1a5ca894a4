"""Resources shared by every asset: the effective settings and the run's ticker work list."""

from collections.abc import Callable, Generator, Iterable
from contextlib import contextmanager

import dagster as dg

from mf_pipeline.lib import lake_lock
from mf_pipeline.lib.partitions import in_shards
from mf_pipeline.lib.settings import Settings, load_settings


class PipelineSettings(dg.ConfigurableResource):
    """The effective settings (YAML + MF_PIPELINE_* env) for each asset that asks.

    ``load_settings`` memoizes on its inputs, so a call per asset costs ~1 ms, not a parse.

    Every asset that reads or writes the lake asks for it, so it also holds the lake lock
    (``lib/lake_lock.py``) for the whole run: a run launched from the UI, the sensor or the
    daemon waits for another run on the same lake instead of doing its work again. Re-entrant:
    a CLI run already holds it. Outside a run (a sensor evaluation) it takes no lock.
    """

    settings_file: str | None = None

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Generator["PipelineSettings"]:
        if getattr(context, "dagster_run", None) is None:
            yield self
            return
        log = context.log.warning if context.log is not None else print
        with lake_lock.hold(self.get(), log=log):
            yield self

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
