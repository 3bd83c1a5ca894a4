"""Dagster-aware runtime shared by the CLI, the viewer and the tests.

``instance`` finds or creates the project's Dagster instance (``DAGSTER_HOME``, the one
``dagster.yaml`` text, the empty-storage template), ``event_log`` is the pooled SQLite event
log that instance uses, ``planning`` decides which assets and tickers a command materializes,
and ``runner`` launches those runs in process so they show in the UI.
"""
