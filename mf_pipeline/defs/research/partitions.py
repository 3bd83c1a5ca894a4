"""Walk-forward split partitions shared by every research asset (research.md §7.1).

Keys: ``wf<train_end>`` (train = dates <= train_end, an embargo, then test to the end of data)
and ``full`` (fit and predict on every row: an IN-SAMPLE description, labelled as such in
every artifact). The set is dynamic: the ``ml_dataset`` asset registers ``full`` and the
default train ends (``validation_walkforward.train_end_list_default``), and a run for any
other train end (``mf research-hmm-run --train-end 2019-06-30``) registers its key first, so
every research run, standard or not, is a Dagster run on its own split partition.
"""

import dagster as dg

from mf_pipeline.orchestration.planning import SPLIT_TAG

research_splits = dg.DynamicPartitionsDefinition(name="research_splits")
REGIME_TAGS = {SPLIT_TAG: "true"}
"""Tags of the research models and their published labels: what ``mf demo`` fits on ``full``
(the experiments — sweeps, stability — are not tagged)."""
SPLIT_SCOPED_ASSETS = frozenset({"cluster_model", "cluster_labels", "hmm_model", "hmm_states",
                                 "cluster_sweep", "cluster_stability", "hmm_sweep",
                                 "hmm_stability"})
"""The research assets whose runs write only their split's files (a run folder under a fresh
id, the split's published labels; the ``full`` split's state bands besides): a run of them needs
only its split's lock, so runs on different splits run side by side on a cluster
(``defs/partitions.run_lock_scope``)."""
