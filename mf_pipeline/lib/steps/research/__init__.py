"""Research runs (research.md §1–5): clustering and Gaussian-HMM regimes per split.

Dagster-free: the research assets and the ``mf research-*`` commands call these modules.
Each run loads the ML dataset, cuts one split (labels per segment, embargo between train and
test), fits the scaler on the fit rows, fits the model, and writes the old artifacts under
``<artifacts_root>/research_runs/`` or ``<artifacts_root>/hmm_runs/``. On the generated sample
universe (``<raw_root>/_truth/regimes.parquet`` exists) every run also reports the adjusted
Rand index of its labels against the true regimes (``regime_recovery``).

Modules:

- ``options``: split keys (``wf<train_end>`` / ``full``), ``PrepOptions`` and
  ``check_options``, and the settings-based builders (``prep_options``, ``cluster_config``,
  ``hmm_config``, ``min_sequence_length``).
- ``prepare``: dataset resolution, the sample's true regimes, and ``prepare`` → ``Prepared``
  (one split, labelled, scaled on its fit rows).
- ``artifacts``: what both model kinds share: run ids, timestamps, table and preprocessing
  writers, regime recovery, seed-pair ARI, sanity-report helpers, ``read_run_summary``.
- ``cluster``: clustering run, sweep, seed stability and sanity report (research.md §4).
- ``hmm``: HMM run, sweep, seed stability and sanity report, ``read_cluster_labels``
  (research.md §5).
- ``publish``: the gold ``cluster_labels``/``hmm_states`` tables of a split and the
  per-ticker viewer files (``write_state_files``).
"""
