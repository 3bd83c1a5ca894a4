"""Walk-forward split partitions shared by every research asset (research.md §7.1).

Keys: ``wf<train_end>`` for each ``validation_walkforward.train_end_list_default`` date (train
= dates <= train_end, an embargo, then test to the end of data) and ``full``: fit and predict
on every row, an IN-SAMPLE description, labelled as such in every artifact.
"""

import dagster as dg

from mf_pipeline.lib.steps.research_step import split_keys

splits_partitions = dg.StaticPartitionsDefinition(split_keys())
