"""Container start with networking: pyctr-fast's ``--network none``, ``host``
and ``bridge`` beside podman's ``none``, ``host`` and default network (issue 7's
benchmark; issue 8: "bridge adds <= 5 ms to our start"), in one interleaved run.

    python -m benches.network [--quick] [--rounds N] [--gap S] [--out docs/benchmarks.md]

Method:

* the busybox tree of benches/rootfs.py on a tmpfs the benchmark mounts, a
  pyctr-fast data root and run directory (``PYCTR_RUN_DIR``) of its own, and
  podman (``--runtime crun``) with throwaway ``--root``/``--runroot``/``--tmpdir``
  running the same tree with ``--rootfs``; every container runs ``/bin/true``:
  nothing is sent anywhere, a bridge only gets the container's address;
* one untimed start of every row first (it makes the bridges and their NAT);
  then a round runs every row once in a fresh random order, each start after
  ``--gap`` idle seconds (the kernel destroys network namespaces
  asynchronously); the time is posix_spawn -> waitpid of the CLI;
* pyctr-fast runs with ``PYCTR_TRACE=1``: its *start* (spawn -> the program
  exec'd, the issue's number) and the bridge's set-up and teardown phases are
  read from the marks;
* medians and min-max; ratios and differences are paired: the median over
  rounds of (row / the same engine's ``none`` row), (ours / podman's row of the
  same mode) and (bridge - none), each in the same round.

Clean-up (``finally``): both engines' containers, the tmpfs, the hugetlb fix
(crun 1.8 on a hybrid cgroup layout, as benches.compare), and what the first
bridged starts made on the host if it was not there before
(benches/network_host.py): ``pyctr0``, ``table ip pyctr``, podman's bridge
(``cni-podman0``/``podman0``), its ``CNI-*``/``NETAVARK*`` firewall chains and
the jumps to them, the iptables-nft tables that are then empty,
``/var/lib/cni``, podman's cgroup parent, leftover ``cni-*``/``netns-*``
namespaces.  When ``pyctr0`` exists already, the bench's
run directory gets its NAT marker, so the host's rules are never rewritten.
The report lists anything left over.  Peers missing or failing: skipped with
the reason, never guessed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import random
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benches.compare import HYBRID_MARKER, HugetlbFix, _first_line, pyctr_cli
from benches.lifecycle_engines import (
    PODMAN_ULIMITS,
    BenchError,
    Podman,
    Workspace,
    run,
    spawn_timed,
)
from benches.network_host import HostState, podman_bridge, quiet
from benches.network_latency import MARK
from benches.rootfs import build_rootfs
from benches.runtime import markers

OURS, PODMAN = "pyctr-fast", "podman"
MODES = ("none", "host", "bridge")
#: Issue 8's "with and without a memory+CPU limit": the same on both engines,
#: with ``--network none`` (the row's mode is "limits").
LIMITS = ["-m", "64m", "--cpus", "1", "--pids-limit", "100"]
ROUNDS, GAP = 30, 0.2
QUICK_ROUNDS, QUICK_GAP = 5, 0.05
TARGET_MS = 5.0
SECTION = "benches.network"
EXEC_MARK = "engine: program exec'd"
REG, ATT = "python: container registered", "python: network attached"
#: Our CLI's phases, between trace marks ("spawn": 0, "exec": the program
#: exec'd): (label, interval with ``none``, interval with ``bridge``).
PHASES = (
    ("CLI start-up to the container registered (imports, spec, files)",
     ("spawn", REG), ("spawn", REG)),
    ("bridge: lease an address (bridge checked)", None, (REG, "python: network: address leased")),
    ("bridge: network namespace made", None,
     ("python: network: address leased", "python: network: namespace made")),
    ("bridge: veth pair into it (address, route)", None, ("python: network: namespace made", ATT)),
    ("**bridge: endpoint set-up, total**", None, (REG, ATT)),
    ("spawn, init, exec (after the set-up)", (REG, "exec"), (ATT, "exec")),
    ("**start (spawn -> program exec'd)**", ("spawn", "exec"), ("spawn", "exec")),
    ("bridge: teardown after the exit (start->exit only)", None,
     ("python: container exited", "python: network detached")),
)  # fmt: skip


@dataclass
class Row:
    name: str
    engine: str
    mode: str  # none, host, bridge (podman's default network counts) or limits (none + LIMITS)
    argv: list[str]
    version: str = ""
    skipped: str | None = None
    error: str | None = None
    wall: list[float] = field(default_factory=list)
    start: list[float] = field(default_factory=list)  # ours: spawn -> exec (trace)
    marks: list[dict[str, float]] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return self.skipped is None and self.error is None and bool(self.wall)


# --------------------------------------------------------------------------- running


def trace_marks(stderr: str) -> dict[str, float]:
    """``{mark: ms since the spawn}`` of PYCTR_TRACE output (first of each)."""
    marks: dict[str, float] = {"spawn": 0.0}
    for ms, name in MARK.findall(stderr):
        marks.setdefault("exec" if name.startswith(EXEC_MARK) else name.strip(), float(ms))
    return marks


def run_once(
    row: Row, env: dict[str, str], scratch: Path
) -> tuple[float, float | None, dict[str, float]]:
    """(start->exit ms, ours: spawn->exec ms, ours: the trace marks)."""
    env = dict(env)
    if row.engine == OURS:
        env.update(PYCTR_TRACE="1", PYCTR_TRACE_T0=str(time.monotonic_ns()))
    wall, _ = spawn_timed(row.argv, env, scratch)
    if row.engine != OURS:
        return wall, None, {}
    marks = trace_marks((scratch / "err").read_text())
    if "exec" not in marks:
        raise BenchError("no `program exec'd` mark in the PYCTR_TRACE output")
    return wall, marks["exec"], marks


def measure(
    rows: Sequence[Row],
    rounds: int,
    gap: float,
    env: dict[str, str],
    scratch: Path,
    seed: int | None,
) -> None:
    """Rounds of every row once in a fresh random order; a row's first error ends it."""
    rng = random.Random(seed)
    active = [r for r in rows if r.skipped is None]
    for _ in range(rounds):
        order = active[:]
        rng.shuffle(order)
        for row in order:
            if row.error:
                continue
            time.sleep(gap)
            try:
                wall, start, marks = run_once(row, env, scratch)
            except (BenchError, OSError) as err:
                row.error = str(err)
                continue
            row.wall.append(wall)
            if start is not None:
                row.start.append(start)
                row.marks.append(marks)


# --------------------------------------------------------------------------- the rows


class Bench:
    """The rows, their set-up and the clean-up of everything they made."""

    def __init__(self, no_cgroup_fix: bool) -> None:
        self.no_fix = no_cgroup_fix
        self.host = HostState()
        self.ws = Workspace("pyctr-bench-net-")
        self.fix = HugetlbFix()
        self.notes: list[str] = []
        self.podman: Podman | None = None
        self.bridges = ["pyctr0"]
        self.cli = pyctr_cli()
        self.root = self.ws.dir / "pyctr-root"
        self.rundir = self.ws.dir / "run"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C.UTF-8",
            "HOME": "/root",
            "PYCTR_RUN_DIR": str(self.rundir),
        }

    def rows(self) -> list[Row]:
        self.notes.append(f"image and state: {self.ws.mount()}")
        rootfs = build_rootfs(self.ws.dir / "rootfs")
        return [*self._ours(rootfs), *self._podman(rootfs)]

    def _probe(self, row: Row) -> None:
        try:
            run_once(row, self.env, self.ws.dir)
        except (BenchError, OSError) as err:
            row.skipped = str(err)

    def _ours(self, rootfs: Path) -> list[Row]:
        cli = self.cli
        version = _first_line([cli, "--version"]) if cli else ""
        rows = []
        for mode in (*MODES, "limits"):
            net = ["--network", "none", *LIMITS] if mode == "limits" else ["--network", mode]
            argv = [str(cli), "--root", str(self.root), "run", "--rm", *net]
            name = f"`pyctr-fast run --rm {' '.join(net)}`"
            rows.append(Row(name, OURS, mode, [*argv, "--rootfs", str(rootfs), "/bin/true"]))
            rows[-1].version = version
            rows[-1].skipped = None if cli else "the pyctr-fast console script is not installed"
        shared = bool(cli) and os.path.exists("/sys/class/net/pyctr0")
        if shared:
            self._share_pyctr0()
        for row in rows:
            if row.skipped is None:
                self._probe(row)
        if shared and (self.rundir / "networks" / "nat.lock").exists():
            self.notes.append("the first bridged start rewrote `table ip pyctr` all the same")
        return rows

    def _share_pyctr0(self) -> None:
        """pyctr0 exists (somebody else's run directory leases on it): give the
        bench's run directory its NAT marker, so that the first bridged start
        does not rewrite the host's ``table ip pyctr``, and start its leases
        three quarters up the subnet, away from the others' first addresses
        (an address also makes the MAC address: a duplicate would disturb them)."""
        from pyctr_fast import network
        from pyctr_fast.ipam import Ipam, format_ipv4

        subnet, gateway = network._choose_subnet(str(self.rundir), self.env)
        marker = self.rundir / "networks" / "pyctr0.nat"
        marker.parent.mkdir(parents=True, mode=0o700)
        marker.write_text(subnet + "\n")
        ipam = Ipam(str(self.rundir), "bridge", subnet, gateway)
        seed = format_ipv4(ipam.first + (ipam.last - ipam.first) * 3 // 4)
        ipam.allocate("pyctr-bench-seed", seed)
        ipam.release("pyctr-bench-seed")
        self.notes.append(
            f"pyctr0 ({subnet}) was there before the run: used as it was, its NAT rules never "
            f"rewritten (the bench's run directory was given its marker), leases after {seed}"
        )

    def _podman(self, rootfs: Path) -> list[Row]:
        exe, crun = shutil.which("podman"), shutil.which("crun")
        runtime = ["--runtime", "crun"] if crun else []
        specs: list[tuple[str, list[str]]] = [
            ("none", ["--network", "none"]),
            ("host", ["--network", "host"]),
            ("bridge", []),  # podman's default network
            ("limits", ["--network", "none", *LIMITS]),
        ]
        rows = []
        for mode, net in specs:
            label = " ".join(["podman run --rm", *net, *runtime])
            rows.append(Row(f"`{label}`", PODMAN, mode, []))
        if exe is None:
            for row in rows:
                row.skipped = "podman not installed"
            return rows
        self.podman = Podman(exe, self.ws.dir / "podman", rootfs, self.env, self.ws.dir)
        backend = _first_line([*self.podman.base, "info", "--format", "{{.Host.NetworkBackend}}"])
        bridge = podman_bridge(backend)
        self.bridges.append(bridge)
        rows[2].name += f" (default network: {backend or '?'} bridge `{bridge}`)"
        tail = [*PODMAN_ULIMITS, "--rootfs", str(rootfs), "/bin/true"]
        for row, (_, net) in zip(rows, specs):
            row.argv = [*self.podman.base, "run", "--rm", *net, *runtime, *tail]
            row.version = self.podman.version
        self._probe(rows[0])
        if rows[0].skipped and HYBRID_MARKER in rows[0].skipped and not self.no_fix:
            fix_err = self.fix.apply()
            if fix_err:
                rows[0].skipped += f"; mounting a v1 hugetlb hierarchy failed: {fix_err}"
            else:
                self.notes.append(
                    "crun 1.8 refused the hybrid cgroup layout: a cgroup v1 hugetlb hierarchy "
                    "was mounted at /sys/fs/cgroup/hugetlb for podman's crun, unmounted at the end"
                )
                rows[0].skipped = None
                self._probe(rows[0])
        for row in rows[1:]:
            self._probe(row)
        return rows

    def close(self) -> None:
        """Everything the rows made, whatever happened (each step on its own)."""
        steps = [self._close_ours]
        if self.podman is not None:
            steps.append(lambda: self.notes.extend(self.podman.close() if self.podman else []))
        steps += [
            lambda: self.ws.close(self.notes),
            self.fix.undo,
            lambda: self.host.restore(self.bridges, self.notes),
        ]
        for step in steps:
            try:
                step()
            except Exception as err:  # the next steps still run
                self.notes.append(f"clean-up: {type(err).__name__}: {err}")

    def _close_ours(self) -> None:
        """Containers a killed run left in the bench's root, then their endpoints."""
        cdir = self.root / "containers"
        ids = sorted(p.name for p in cdir.iterdir()) if cdir.is_dir() else []
        if ids and self.cli:
            self.notes.append(f"pyctr-fast containers left (removed): {len(ids)}")
            try:
                run([self.cli, "--root", str(self.root), "rm", "-f", *ids], self.env)
            except BenchError as err:
                self.notes.append(f"pyctr-fast rm -f: {err}")
        nsdir = self.rundir / "netns"
        for ns in sorted(nsdir.iterdir()) if nsdir.is_dir() else []:
            self.notes.append(f"endpoint of {ns.name[:12]} left (removed)")
            quiet(["ip", "link", "delete", f"veth{ns.name[:11]}"])
            quiet(["umount", str(ns)])


def collect(
    rounds: int, gap: float, no_cgroup_fix: bool = False, seed: int | None = None
) -> tuple[list[Row], list[str]]:
    """Set up, measure, clean up: the rows and the notes."""
    bench = Bench(no_cgroup_fix)
    rows: list[Row] = []
    try:
        rows = bench.rows()
        started = time.monotonic()
        measure(rows, rounds, gap, bench.env, bench.ws.dir, seed)
        bench.notes.append(f"measured in {time.monotonic() - started:.0f} s")
    finally:
        bench.close()
    return rows, bench.notes


# --------------------------------------------------------------------------- the report


def _med(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    return fmt.format(statistics.median(values)) if values else "-"


def _span(values: Sequence[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}" if values else "-"


def _paired(a: Row | None, b: Row | None, attr: str = "wall", ratio: bool = True) -> list[float]:
    if a is None or b is None or not a.measured or not b.measured:
        return []
    pairs = zip(getattr(a, attr), getattr(b, attr))
    return [x / y if ratio else x - y for x, y in pairs if not ratio or y > 0]


def _find(rows: Sequence[Row], engine: str, mode: str) -> Row | None:
    return next((r for r in rows if r.engine == engine and r.mode == mode), None)


def render(rows: Sequence[Row], rounds: int, gap: float, notes: Sequence[str]) -> list[str]:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## Start latency with networking and limits (`python3 -m benches.network`, {now})",
        "",
        f"`run --rm` of `/bin/true`, {rounds} rounds of every row once in a fresh random "
        f"order, {gap:g} s idle before each start; start->exit: posix_spawn to waitpid of "
        "the CLI; *start* (ours): spawn to the program exec'd, from the `PYCTR_TRACE` marks. "
        "Ratios: median over rounds of (row / the same engine's `none` row) and (ours / "
        "podman's row of the same mode) in the same round.",
        "",
        "| what | version | start->exit median ms | min-max | vs own `none` | vs podman "
        "| start median ms | start min-max |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        why = r.skipped if r.skipped is not None else r.error
        if why is not None:
            lines.append(f"| {r.name} | {r.version} | skipped: {why} | | | | | |")
            continue
        own = _paired(r, _find(rows, r.engine, "none"))
        peer = _paired(r, _find(rows, PODMAN, r.mode)) if r.engine == OURS else []
        lines.append(
            f"| {r.name} | {r.version} | {_med(r.wall)} | {_span(r.wall)} | "
            f"{_med(own, '{:.2f}x')} | {_med(peer, '{:.2f}x')} | {_med(r.start)} | "
            f"{_span(r.start)} |"
        )
    lines += added_cost(rows)
    lines += bridge_phases(rows)
    if notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in notes]]
    return lines


def added_cost(rows: Sequence[Row]) -> list[str]:
    """The paired (mode - none) differences, per engine."""
    body = []
    for mode, label in (
        ("host", "`--network host`"),
        ("bridge", "bridge (podman: default)"),
        ("limits", f"`--network none {' '.join(LIMITS)}`"),
    ):
        cells = []
        for engine, attr in ((OURS, "start"), (OURS, "wall"), (PODMAN, "wall")):
            diffs = _paired(_find(rows, engine, mode), _find(rows, engine, "none"), attr, False)
            cells.append(_med(diffs, "{:+.1f}"))
        body.append(f"| {label} | " + " | ".join(cells) + " |")
    ours = _paired(_find(rows, OURS, "bridge"), _find(rows, OURS, "none"), "start", False)
    lines = [
        "",
        "Added over `--network none`, median over rounds of the difference in the same round, ms:",
        "",
        "| network | pyctr-fast start | pyctr-fast start->exit | podman start->exit |",
        "|---|---:|---:|---:|",
        *body,
    ]
    if ours:
        verdict = "met" if statistics.median(ours) <= TARGET_MS else "not met"
        lines += [
            "",
            f"Issue 7's target, bridge adds <= {TARGET_MS:g} ms to our start: "
            f"{statistics.median(ours):+.1f} ms in this run ({verdict}).",
        ]
    return lines


def bridge_phases(rows: Sequence[Row]) -> list[str]:
    """Our CLI's start with and without the bridge, from the trace marks."""
    none, bridge = _find(rows, OURS, "none"), _find(rows, OURS, "bridge")
    if bridge is None or not bridge.measured:
        return []
    body = []
    for label, *spans in PHASES:
        cells = []
        for row, span in zip((none, bridge), spans):
            got = _between(row, span) if row is not None and row.measured else []
            cells.append(_med(got, "{:.2f}"))
        cells.append(_span(_between(bridge, spans[1])))
        body.append(f"| {label} | " + " | ".join(cells) + " |")
    return [
        "",
        "Where pyctr-fast's start goes, between its `PYCTR_TRACE` marks (ms, medians):",
        "",
        "| phase | `none` | `bridge` | `bridge` min-max |",
        "|---|---:|---:|---:|",
        *body,
    ]


def _between(row: Row, span: tuple[str, str] | None) -> list[float]:
    if span is None:
        return []
    first, last = span
    return [m[last] - m[first] for m in row.marks if first in m and last in m]


def missing(rows: Sequence[Row]) -> list[str]:
    """Rows measured without a number, our rows skipped, our trace numbers missing."""
    out = []
    for r in rows:
        if r.skipped is not None:
            if r.engine == OURS:
                out.append(f"network {r.name} (skipped: {r.skipped})")
        elif not r.measured:
            out.append(f"network {r.name}" + (f" ({r.error})" if r.error else ""))
        elif r.engine == OURS and not r.start:
            out.append(f"network {r.name} start")
    bridge = _find(rows, OURS, "bridge")
    if bridge is not None and bridge.measured:
        if not _between(bridge, (REG, ATT)):
            out.append("network: the bridge's set-up marks")
    return out


def section(lines: Sequence[str]) -> str:
    begin, end = markers(SECTION)
    return "\n".join([begin, *lines, end])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.network", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds; every row has a number"
    )
    parser.add_argument("--rounds", type=int, default=None, help=f"(default {ROUNDS})")
    parser.add_argument("--gap", type=float, default=None, help=f"idle s (default {GAP})")
    parser.add_argument(
        "--out", default=None, help="splice into (default docs/benchmarks.md; none with --quick)"
    )
    parser.add_argument("--no-cgroup-fix", action="store_true", help="skip podman's crun instead")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    gap = args.gap if args.gap is not None else (QUICK_GAP if args.quick else GAP)
    out = args.out if args.out is not None else (None if args.quick else "docs/benchmarks.md")
    if os.geteuid() != 0:
        print("benches.network: containers and bridges need root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))  # the clean-up still runs
    rows, notes = collect(rounds, gap, args.no_cgroup_fix, args.seed)
    text = section(render(rows, rounds, gap, notes))
    print(text)
    if out:
        from benches.runtime import splice

        path = Path(out)
        doc = path.read_text() if path.exists() else ""
        path.write_text(splice(doc, text, SECTION))
        print(f"written to {out}", file=sys.stderr)
    lacking = missing(rows)
    if lacking:
        print("benches.network: rows without a number: " + "; ".join(lacking), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
