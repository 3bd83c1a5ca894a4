"""mf_pipeline: the Dagster asset-graph research platform (README.md).

Importing the package first tunes Polars' memory allocator (jemalloc) for the whole process:
it keeps freed pages for 3 s instead of 0.5 s before returning them to the kernel. The layer
steps free and reallocate buffers of the same sizes batch after batch; at Polars' default the
kernel zeroed them again every time, and a cold 8,000-ticker run spent 29 % of its CPU in the
kernel (80 of 277 CPU s); with 3 s, about half of that, for ~0.3 GB more peak memory
(docs/BENCHMARKS.md, "Lake v2 targets"; 5 s saved no more time and kept more memory).
jemalloc reads the variable once, when Polars is first loaded, so this must run before any
``import polars``; a value the user set is kept.
"""

import os

ALLOCATOR_ENV = "_RJEM_MALLOC_CONF"
ALLOCATOR_CONF = "dirty_decay_ms:3000"

os.environ.setdefault(ALLOCATOR_ENV, ALLOCATOR_CONF)
