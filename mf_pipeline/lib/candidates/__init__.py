"""Production candidates (backtest_ops.md §9, §10, issue #22): the pack that selects and locks
the configurations worth trading (:mod:`.select`, :mod:`.pack`, :mod:`.pack_sanity`), the
locked models that decode new bars causally (:mod:`.locked`) and the nightly re-run with drift.
"""
