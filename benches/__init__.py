"""Benchmarks: ``python -m benches.compare`` (start latency against crun/runc),
``python -m benches.runtime`` (pyctr-fast-runtime create+start+delete against
crun/runc, with hyperfine) and pytest-benchmark benches of the in-process API
(``python -m pytest benches``)."""
