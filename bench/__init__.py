"""Benchmark harness for mf_pipeline (``python -m bench.run``; see docs/BENCHMARKS.md)."""
