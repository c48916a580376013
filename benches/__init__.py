"""Benchmarks: ``python -m benches.compare`` (start latency against crun/runc) and
pytest-benchmark benches of the in-process API (``python -m pytest benches``)."""
