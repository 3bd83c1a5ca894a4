"""Backtest steps: one run, its sanity report, run comparison and the walk-forward backtest
(backtest_ops.md §1, §4), wiring the pure ``mf_pipeline.lib.backtest`` modules to files."""
