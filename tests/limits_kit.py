"""Shared by the resource-limit tests (test_limits.py): where a container's
cgroup files are, what ``inspect`` says, and CPU usage measured from
``cpuacct.usage`` over a window, with the host's other load in the same
window for the failure message (the machine has 2 CPUs and other work may
run on them)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conftest import leftover_cgroups
from ctrkit import assert_ok
from lifecycle_kit import Ctrs

if TYPE_CHECKING:
    from collections.abc import Callable

#: A container program that spins one CPU with shell builtins only (no fork).
BUSY = ("sh", "-c", "while :; do :; done")
MiB = 1024 * 1024


def cgroup_dir(ctrs: Ctrs, cid: str, controller: str) -> Path:
    """The container's directory of ``controller`` as launch.json's plan records it."""
    plan = ctrs.doc(cid, "launch.json")["cgroup"]
    assert plan is not None, f"container {cid} has no cgroup plan"
    return Path(plan["controllers"][controller])


def cgroup_file(ctrs: Ctrs, cid: str, controller: str, name: str) -> str:
    """One file of the container's group, stripped."""
    return (cgroup_dir(ctrs, cid, controller) / name).read_text().strip()


def inspect(ctrs: Ctrs, cid: str) -> dict[str, Any]:
    """``inspect CID``'s one object."""
    doc: list[dict[str, Any]] = json.loads(assert_ok(ctrs.cli("inspect", cid)))
    assert len(doc) == 1, doc
    return doc[0]


def host_config(ctrs: Ctrs, cid: str, *keys: str) -> dict[str, Any]:
    """The ``keys`` of ``inspect``'s HostConfig."""
    hc = inspect(ctrs, cid)["HostConfig"]
    return {k: hc.get(k, "<missing>") for k in keys}


def status_field(pid: int, name: str) -> str:
    """A field of /proc/PID/status (the host's view of a process)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def no_cgroups_left() -> None:
    """No container group is left under the session's parent, in any hierarchy."""
    left = leftover_cgroups()
    assert left == [], f"cgroups left behind: {[str(p) for p in left]}"


def _cpu_busy_ns() -> list[int]:
    """Busy time (ns) of each CPU from /proc/stat (everything but idle and iowait)."""
    tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    busy = []
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0].startswith("cpu") and fields[0] != "cpu":
            values = [int(v) for v in fields[1:8]]
            busy.append((sum(values) - values[3] - values[4]) * tick_ns)
    return busy


@dataclass
class Usage:
    """What a :func:`measure_cpu` window saw: each container's usage in
    percent of one CPU, and each host CPU's busy percentage (all work)."""

    percent: dict[str, float]
    host_busy: list[float]
    seconds: float

    def __str__(self) -> str:
        ours = ", ".join(f"{cid[:12]}: {p:.1f}%" for cid, p in self.percent.items())
        host = ", ".join(f"cpu{i}: {p:.0f}%" for i, p in enumerate(self.host_busy))
        return f"over {self.seconds:.2f}s: {ours} (host CPUs busy, all work: {host})"


def measure_cpu(ctrs: Ctrs, cids: list[str], seconds: float = 3.0) -> Usage:
    """Each container's CPU use over ``seconds``: the growth of its group's
    ``cpuacct.usage`` (ns) divided by the wall time, in percent of one CPU."""
    files = {cid: cgroup_dir(ctrs, cid, "cpuacct") / "cpuacct.usage" for cid in cids}

    def sample() -> dict[str, int]:
        return {cid: int(f.read_text()) for cid, f in files.items()}

    host0 = _cpu_busy_ns()
    t0 = time.monotonic()
    before = sample()
    time.sleep(seconds)
    after = sample()
    dt = time.monotonic() - t0
    host1 = _cpu_busy_ns()
    return Usage(
        {cid: 100.0 * (after[cid] - before[cid]) / (dt * 1e9) for cid in cids},
        [100.0 * (b - a) / (dt * 1e9) for a, b in zip(host0, host1, strict=True)],
        dt,
    )


def measure_cpu_settled(
    ctrs: Ctrs,
    cids: list[str],
    good: Callable[[Usage], bool],
    seconds: float = 3.0,
    attempts: int = 3,
) -> list[Usage]:
    """:func:`measure_cpu` again (up to ``attempts`` windows) while ``good``
    says no: other work on this 2-CPU machine (other test sessions) comes in
    bursts and takes CPU time from the containers.  A wrong limit is wrong in
    every window, so retrying only rides out the noise.  Every window, the
    last one last (the caller asserts on it and prints them all)."""
    seen: list[Usage] = []
    for _ in range(attempts):
        seen.append(measure_cpu(ctrs, cids, seconds))
        if good(seen[-1]):
            break
    return seen
