"""Nightly operations (backtest_ops.md §11): the ledger, the ops run folder, its sanity check,
the systemd units, and the dates a night works on.

The as-of date of a night is the lake's last trade date (the newest ML dataset export's last
``trade_date``), not the calendar date: a night whose raw files did not arrive re-runs the same
as-of date, and the freshness checks say so.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mf_pipeline.lib.settings import Settings


def lake_last_date(settings: Settings) -> dt.date | None:
    """The last trade date of the lake's current ML dataset (None before the first export)."""
    import polars as pl

    from mf_pipeline.lib.steps.dataset_step import latest_export

    path = latest_export(settings)
    if path is None or not path.exists():
        return None
    return pl.scan_parquet(path).select(pl.col("trade_date").max()).collect().item()


def previous_weekday(day: dt.date) -> dt.date:
    """The weekday before ``day`` (Monday → Friday): the last session a night at ``day`` can
    have bars for. Exchange holidays are not known here; a check may warn on the day after one."""
    back = {0: 3, 6: 2}.get(day.weekday(), 1)
    return day - dt.timedelta(days=back)


def local_today(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """Today in the schedule's timezone (``ops_nightly.timezone``)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(settings.ops_nightly.timezone)
    return (now or dt.datetime.now(dt.UTC)).astimezone(zone).date()
