""""Compute this ticker": materialize one ticker through Dagster.

The viewer has no private compute pipeline: it runs the same per-ticker assets the CLI,
the sensor and the UI run, recorded in the same Dagster instance.
"""

from __future__ import annotations

from collections.abc import Callable

from mf_pipeline.lib.settings import Settings


def per_ticker_assets() -> tuple[str, ...]:
    """The per-ticker (shard-partitioned) assets of the code location, in graph order."""
    from mf_pipeline.orchestration import runner
    from mf_pipeline.orchestration.planning import everything

    return everything(runner.definitions()).per_ticker


def compute_ticker(settings: Settings, ticker: str, log: Callable[[str], None]) -> list[str]:
    """Materialize the manifest and every per-ticker asset for ``ticker``; returns run ids.

    The stable manifest is not promoted (a one-ticker run is a partial run, as the CLI's
    ``--limit``), so a later full run still sees the other changed files.
    """
    from mf_pipeline.orchestration import runner

    per_ticker = per_ticker_assets()
    run_config = (
        {"ops": {"bronze": {"config": {"promote_manifest": False}}}}
        if "bronze" in per_ticker
        else None
    )
    outcome = runner.run_partitioned(
        settings,
        head=("manifest",),
        per_ticker=per_ticker,
        tail=(),
        tickers=[ticker],
        run_config=run_config,
        log=log,
    )
    return outcome.run_ids
