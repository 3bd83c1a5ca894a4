"""Resources shared by every asset: the effective settings and the run's ticker work list."""

from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from mf_pipeline.defs.partitions import run_lock_scope
from mf_pipeline.lib import lake_lock
from mf_pipeline.lib.partitions import in_shards
from mf_pipeline.lib.settings import Settings, load_settings
from mf_pipeline.lib.steps.shards import TickerListError, checked_tickers
from mf_pipeline.orchestration.accounting import part


class PipelineSettings(dg.ConfigurableResource):
    """The effective settings (YAML + MF_PIPELINE_* env) for each asset that asks.

    ``load_settings`` memoizes on its inputs, so a call per asset costs ~1 ms, not a parse.

    Every asset that reads or writes the lake asks for it, so it also holds the lake lock
    (``lib/lake_lock.py``) for the whole run: a run launched from the UI, the sensor or the
    daemon waits for another run on the same lake instead of doing its work again. Re-entrant:
    a CLI run already holds it, and a step of such a run on a Celery worker proceeds under the
    CLI's lock (the run's ``mf/lake_lock`` tag names it). Outside a run (a sensor evaluation)
    it takes no lock.
    """

    settings_file: str | None = None

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Generator["PipelineSettings"]:
        if getattr(context, "dagster_run", None) is None:
            yield self
            return
        log = context.log.warning if context.log is not None else print
        run = context.dagster_run
        with lake_lock.hold(self.get(), log=log, on_behalf_of=run.tags.get(lake_lock.RUN_TAG),
                            shards=run_lock_scope(run.tags, run.asset_selection)):
            yield self

    def get(self) -> Settings:
        return load_settings(self.settings_file)


class TickerWork(dg.ConfigurableResource):
    """Which tickers of the run's shards the per-ticker assets process.

    Left empty (a run launched from the UI or the sensor), each asset works out its own list:
    tickers whose raw files changed for Bronze, tickers whose inputs changed for the derived
    layers. Given a list, every per-ticker asset of the run rebuilds exactly those tickers:
    the CLI fills it with the list it planned (``--limit``, ``--full``, the one-ticker
    commands), a UI user in the launchpad (``resources: ticker_work: config: tickers:
    [AAPL.US]``, on the ticker's shard). A ticker the lake does not know, or one outside the
    run's shards, fails the run with a message naming it (and its close matches or shard).
    """

    tickers: list[str] | None = Field(
        default=None,
        description="Rebuild exactly these tickers (e.g. [AAPL.US]) in every per-ticker asset "
                    "of the run; they must lie in the run's shards (a ticker's shard is a "
                    "fixed hash of its name). Leave empty to process what changed.",
    )

    def select(self, settings: Settings, shards: Sequence[str],
               automatic: Callable[[], Iterable[str]]) -> list[str]:
        """The tickers to process in ``shards``: the configured list (checked), else
        ``automatic()``."""
        try:
            with part("asset planning: each per-ticker asset finds or checks its tickers"):
                if self.tickers is None:
                    return in_shards(automatic(), shards)
                return checked_tickers(settings, self.tickers, shards)
        except TickerListError as error:
            raise dg.Failure(description=str(error), allow_retries=False) from error
