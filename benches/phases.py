"""Where the CLI's start->exit time goes, phase by phase, from the timestamps the
start path records when ``PYCTR_TRACE=1`` (python/pyctr_fast/trace.py and
rust/core/src/trace.rs: one line per mark on stderr, CLOCK_MONOTONIC, relative
to ``PYCTR_TRACE_T0``).

    python -m benches.phases [--runs N]

The benchmark sets ``PYCTR_TRACE_T0`` to its own clock just before it spawns the
CLI, so the first phase holds the interpreter's start-up and the imports, and
the time from the last mark to the reap of the CLI is counted as teardown.  Each
interval between two consecutive marks (in time order) is charged to the phase
of the mark that ends it (``PHASE_OF``); the table gives the median over runs
of each phase's sum, in ms.  Runs the CLI with ``--network none`` on the
busybox image, without and with limits (which add the cgroup phase).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

TRACE_LINE = re.compile(r"^pyctr-trace +(\d+\.\d+) ms +\(\+ *\d+\.\d+\) +(.+)$")

#: The phases, in start-path order, and the mark-name prefixes that end an
#: interval of each.  A mark that matches none is charged to "other".
PHASE_OF: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Python start-up + imports", ("python: cli imported", "python: lifecycle modules")),
    (
        "spec building + state files",
        (
            "python: spec built",
            "python: container dir and",
            "python: container registered",
            "python: image resolved",
            "python: created",
        ),
    ),
    ("cgroup setup", ("python: cgroup", "engine: cgroups")),
    ("clone (spawn, clone3, child ready)", ("engine: spawn", "engine: clone3", "init: request")),
    ("network setup (hostname, loopback)", ("init: hostname",)),
    (
        "mounts (rootfs, spec mounts, /dev, masks, pivot_root)",
        (
            "init: rootfs",
            "init: spec mounts",
            "init: devices",
            "init: sysctls",
            "init: readonly",
            "init: pivot_root",
        ),
    ),
    ("exec (process set-up, hooks, execve)", ("init: process", "init: ", "engine: program")),
    ("the program runs + wait", ("python: container exited",)),
    ("teardown (dir removed, CLI exit)", ("python: container dir removed", "exit")),
)
OTHER = "other"
PHASES = (*(p for p, _ in PHASE_OF), OTHER)


def parse_trace(stderr: str) -> list[tuple[str, float]]:
    """The ``(name, ms since T0)`` of every trace line, in time order."""
    marks = []
    for line in stderr.splitlines():
        m = TRACE_LINE.match(line.strip())
        if m:
            marks.append((m.group(2).strip(), float(m.group(1))))
    return sorted(marks, key=lambda x: x[1])


def phase_of(name: str) -> str:
    for phase, prefixes in PHASE_OF:
        if any(name.startswith(p) for p in prefixes):
            return phase
    return OTHER


def split_phases(marks: Sequence[tuple[str, float]], end_ms: float | None) -> dict[str, float]:
    """ms per phase: each interval is charged to the phase of the mark ending it;
    ``end_ms`` (the reap, ms since T0) closes a last interval, charged to teardown."""
    out = dict.fromkeys(PHASES, 0.0)
    prev = 0.0
    points = list(marks) + ([("exit", end_ms)] if end_ms is not None else [])
    for name, at in points:
        out[phase_of(name)] += max(at - prev, 0.0)
        prev = max(prev, at)
    return out


def measure_phases(argv: list[str], env: Mapping[str, str], runs: int) -> dict[str, list[float]]:
    """Run ``argv`` ``runs`` times with a trace; ms per phase of each run."""
    per: dict[str, list[float]] = {p: [] for p in PHASES}
    per["total"] = []
    for _ in range(runs):
        t0 = time.monotonic_ns()
        res = subprocess.run(
            argv,
            env={**env, "PYCTR_TRACE": "1", "PYCTR_TRACE_T0": str(t0)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        end = (time.monotonic_ns() - t0) / 1e6
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {res.returncode}: {res.stderr[-300:]}")
        marks = parse_trace(res.stderr)
        if not marks:
            raise RuntimeError("PYCTR_TRACE=1 printed no trace line")
        for phase, ms in split_phases(marks, end).items():
            per[phase].append(ms)
        per["total"].append(end)
    return per


def render_phases(columns: Mapping[str, Mapping[str, list[float]]], runs: int) -> list[str]:
    """A markdown table: one row per phase, one column per measured command."""
    names = list(columns)
    lines = [
        f"Phase breakdown of the CLI's start path (`PYCTR_TRACE=1`, median ms over {runs} "
        "runs; `PYCTR_TRACE_T0` is set just before the spawn, so the first phase includes "
        "the interpreter's start-up):",
        "",
        "| phase | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for phase in (*PHASES, "total"):
        cells = []
        for n in names:
            values = columns[n].get(phase) or []
            cells.append(f"{statistics.median(values):.2f}" if values else "-")
        if phase == OTHER and all(c in ("-", "0.00") for c in cells):
            continue
        label = "**total (spawn to reap)**" if phase == "total" else phase
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def missing(columns: Mapping[str, Mapping[str, list[float]]]) -> list[str]:
    return [f"phases of {n}" for n, col in columns.items() if not col.get("total")]


def run_phases(
    cli: str, root: str, rootfs: str, env: Mapping[str, str], runs: int, limit_flags: list[str]
) -> tuple[dict[str, dict[str, list[float]]], list[str]]:
    """The CLI without and with limits; (columns, errors)."""
    base = [cli, "--root", root, "run", "--rm", "--network", "none"]
    tail = ["--rootfs", rootfs, "/bin/true"]
    columns: dict[str, dict[str, list[float]]] = {}
    errors = []
    for label, extra in (("CLI", []), ("CLI with limits", limit_flags)):
        try:
            columns[label] = measure_phases([*base, *extra, *tail], env, runs)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
            columns[label] = {}
            errors.append(f"{label}: {err}")
    return columns, errors


def main(argv: list[str] | None = None) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    from benches.compare import LIMIT_FLAGS, _workdir_base, pyctr_cli
    from benches.rootfs import build_rootfs

    parser = argparse.ArgumentParser(prog="python -m benches.phases")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    cli = pyctr_cli()
    if cli is None or os.geteuid() != 0:
        print("benches.phases: needs root and the pyctr-fast console script", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="pyctr-bench-ph-", dir=_workdir_base()[0]))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    try:
        rootfs = build_rootfs(work / "rootfs")
        cols, errors = run_phases(cli, str(work / "root"), str(rootfs), env, args.runs, LIMIT_FLAGS)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(render_phases(cols, args.runs) + [f"- {e}" for e in errors]))
    return 1 if missing(cols) else 0


if __name__ == "__main__":
    sys.exit(main())
