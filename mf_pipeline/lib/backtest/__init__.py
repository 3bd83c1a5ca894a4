"""Backtest engine (backtest_ops.md §1-§2): trade simulation from per-row states and directions.

Pure library code (no Dagster): the simulation runs in one Numba kernel over all tickers
(:mod:`mf_pipeline.lib.kernels.backtest`); :mod:`.engine` turns a polars frame into trades.
"""
