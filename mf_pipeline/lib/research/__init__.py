"""Dagster-free research layer: preprocessing, labels, splits, clustering, HMM, profiles.

Every module takes plain arguments (frames, arrays, small dataclasses) and imports
scikit-learn / hmmlearn lazily inside functions, so importing this package stays cheap for
the CLI. Contract: ``spec/research.md`` §1–5 and §7.1 with the decisions of ``spec/README.md``.
"""
