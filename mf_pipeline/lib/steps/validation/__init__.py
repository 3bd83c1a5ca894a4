"""Validation runs (research.md §6–9): what the validation assets, jobs and ``mf`` commands call.

- ``options``: the run options from settings + overrides, and their digest.
- ``inputs``: a split's rows with their flow, HMM (filtered) and cluster states, on common rows.
- ``run``: one validation run folder (bootstrap, events, stability, scorecards).
- ``split_validation``: validate a split's source, or any state-labelled file.
- ``policy``: cluster QA and hardening of a validation folder (and its exports).
- ``sanity``: read-only reports and the pass rule of the blocking checks.
"""
