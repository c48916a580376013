"""``PYCTR_TRACE=1``: the start path reports its phases on stderr
(python/pyctr_fast/trace.py and rust/core/src/trace.rs), in order, on one
clock; without it, nothing extra is printed."""

from __future__ import annotations

import re

import ctrkit
import pytest

pytestmark = pytest.mark.usefixtures("integration_ready")

LINE = re.compile(r"^pyctr-trace +(\d+\.\d{3}) ms  \(\+ *\d+\.\d{3}\)  (.+)$")


def test_trace_lists_every_start_phase_in_time_order(engine: ctrkit.Engine) -> None:
    env = {**engine.base_env(), "PYCTR_TRACE": "1"}
    env.pop("PYCTR_TRACE_T0", None)
    res = engine.run("/bin/echo", "hi", env=env)
    assert res.returncode == 0 and res.stdout == "hi\n", res
    phases = [LINE.match(line) for line in res.stderr.splitlines()]
    assert all(phases), res.stderr
    names = [m.group(2) for m in phases if m]
    times = [float(m.group(1)) for m in phases if m]
    for expected in (
        "python: cli imported",
        "python: spec built",
        "engine: clone3 returned",
        "init: request received",
        "init: spec mounts",
        "init: pivot_root",
        "engine: program exec'd (socket closed)",
        "python: container exited",
    ):
        assert expected in names, (expected, names)
    assert times == sorted(times), res.stderr


def test_no_trace_output_unless_asked(engine: ctrkit.Engine) -> None:
    env = {k: v for k, v in engine.base_env().items() if not k.startswith("PYCTR_TRACE")}
    res = engine.run("/bin/true", env=env)
    assert res.returncode == 0 and res.stderr == "", res
