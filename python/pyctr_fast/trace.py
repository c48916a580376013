"""``PYCTR_TRACE=1``: start-path timestamps on stderr, one line per phase.

The Rust side (rust/core/src/trace.rs) prints its phases in the same format
and on the same clock (CLOCK_MONOTONIC), relative to the same origin: this
module's import, which it exports as ``PYCTR_TRACE_T0``.  The interpreter's
own start-up (about 15 ms here with ``-I -S``) comes before the origin.
"""

from __future__ import annotations

import os
import time

ENABLED = os.environ.get("PYCTR_TRACE", "") not in ("", "0")
_T0 = int(os.environ.get("PYCTR_TRACE_T0") or time.monotonic_ns())
_prev = _T0
if ENABLED:
    os.environ["PYCTR_TRACE_T0"] = str(_T0)


def mark(name: str) -> None:
    """Print ``name`` with the time since the origin and since the last mark."""
    global _prev
    if not ENABLED:
        return
    import sys

    now = time.monotonic_ns()
    at, step = (now - _T0) / 1e6, (now - _prev) / 1e6
    sys.stderr.write(f"pyctr-trace {at:9.3f} ms  (+{step:7.3f})  {name}\n")
    _prev = now
