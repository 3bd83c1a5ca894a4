"""Bronze: raw Stooq text -> typed, validated rows, a rejects table and a per-file ledger.

Pure polars, no Dagster. One module per job, imported by its own path (nothing is re-exported
here): ``lines`` (text -> line table), ``read`` (raw files -> raw rows, also appended bytes),
``parse`` (raw rows -> typed rows), ``validate`` (rules, flags, reasons), ``ledger`` (per-file
accounting and reconciliation), ``build`` (the full build), ``append`` (the nightly append
path) and ``qa`` (symbol master, sanity report, problem tickers).
"""
