"""Statistical validation of state labels (HMM states, clusters, flow states).

Polars in, polars out, no Dagster: the adapter normalises a labelled frame, the bootstrap,
event study and rolling stability measure each state's forward outcomes, the scorecards, QA
flags and policy turn them into a per-state verdict (ALLOW / WATCH / BLOCK), and the compare
functions set two runs side by side with their states matched by outcome profile. The Dagster
assets in ``mf_pipeline/defs/validation/`` call these functions; docs/VALIDATION.md explains
the figures and how they differ from the old tool.
"""
