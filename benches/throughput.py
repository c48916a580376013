"""Throughput: N containers running ``/bin/true`` started and finished one after
the other, and N with 2-way parallelism (the crun README's experiment), for the
in-process API, the CLI, ``crun run`` and ``podman run --rm``.

    python -m benches.throughput [--quick] [--reps R] [--count N]

Method: the busybox image of benches/rootfs.py on a tmpfs (as benches.compare);
``--network none`` everywhere; a batch is ``count`` starts, each waited for,
by one worker (sequential) or two threads taking the next start as soon as
theirs finished (parallel; the API releases the GIL while it waits, the other
rows wait in ``waitpid``).  A repetition runs every row's sequential batch
then every row's parallel batch, rows shuffled; the report gives the median
total time over repetitions, scaled to ``count`` containers, and the ratio to
crun's in the same repetition.  podman runs ``PODMAN_COUNT`` (20) containers
per batch (it is ~15x slower) and its time is scaled (marked).  Rows whose
peer is missing or fails are skipped, never guessed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benches.compare import (
    HYBRID_MARKER,
    HugetlbFix,
    _first_line,
    _workdir_base,
    make_bundle,
    probe,
    pyctr_cli,
    spawn_wait,
)
from benches.lifecycle_engines import PODMAN_ULIMITS, Podman, mountpoints_under
from benches.rootfs import build_rootfs

COUNT = 100
PODMAN_COUNT = 20
MODES = ("sequential", "2 in parallel")
REFERENCE = "`crun run`"


@dataclass
class Row:
    name: str
    one: Callable[[int], None]
    count: int
    version: str = ""
    skipped: str | None = None
    error: str | None = None
    #: mode -> total seconds of each repetition, scaled to the full count.
    totals: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})


def batch(one: Callable[[int], None], count: int, workers: int) -> float:
    """Seconds to run ``one(i)`` for i < count with ``workers`` in flight."""
    ids = itertools.count()
    errors: list[BaseException] = []

    def worker() -> None:
        while not errors:
            i = next(ids)
            if i >= count:
                return
            try:
                one(i)
            except BaseException as err:
                errors.append(err)

    start = time.perf_counter()
    if workers == 1:
        worker()
    else:
        threads = [threading.Thread(target=worker) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{type(errors[0]).__name__}: {errors[0]}")
    return elapsed


def measure(rows: Sequence[Row], reps: int, count: int, rng: random.Random) -> None:
    active = [r for r in rows if r.skipped is None]
    for _ in range(reps):
        for mode, workers in zip(MODES, (1, 2)):
            order = active[:]
            rng.shuffle(order)
            for r in order:
                if r.error:
                    continue
                try:
                    secs = batch(r.one, r.count, workers)
                except RuntimeError as err:
                    r.error = str(err)
                    continue
                r.totals[mode].append(secs * count / r.count)


def _ratio(row: Row, ref: Row | None, mode: str) -> str:
    if ref is None or not ref.totals[mode]:
        return "-"
    pairs = [a / b for a, b in zip(row.totals[mode], ref.totals[mode]) if b > 0]
    return f"{statistics.median(pairs):.2f}x" if pairs else "-"


def render(rows: Sequence[Row], reps: int, count: int) -> list[str]:
    ref = next((r for r in rows if r.name == REFERENCE and not r.error and not r.skipped), None)
    lines = [
        f"Throughput: {count} containers running `/bin/true`, total seconds (median of "
        f"{reps} repetitions; ratios: median over repetitions of row / crun's in the same "
        "repetition). Sequential: one start after the other; 2 in parallel: two workers "
        "(threads) each taking the next start as soon as theirs finished; rows in a fresh "
        "random order in every mode and repetition; `--network none` on a busybox tree on tmpfs:",
        "",
        "| what | version | sequential s | vs crun | 2 in parallel s | vs crun |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        why = r.skipped if r.skipped is not None else r.error
        if why is not None:
            lines.append(f"| {r.name} | {r.version} | skipped: {why} | | | |")
            continue
        cells = []
        for mode in MODES:
            v = r.totals[mode]
            cells += [f"{statistics.median(v):.2f}" if v else "-", _ratio(r, ref, mode)]
        name = r.name
        if r.count != count:
            name += f" ({r.count} per batch, scaled x{count / r.count:g})"
        lines.append(f"| {name} | {r.version} | " + " | ".join(cells) + " |")
    return lines


def missing(rows: Sequence[Row]) -> list[str]:
    out = [f"throughput {r.name}" for r in rows if r.skipped is None and r.error]
    out += [f"throughput {r.name}" for r in rows if r.name.startswith("`pyctr") and r.skipped]
    for r in rows:
        if r.skipped is None and not r.error:
            out += [f"throughput {r.name} {m}" for m in MODES if not r.totals[m]]
    return out


def _spawn_row(
    name: str, argv_of: Callable[[int], list[str]], env: Mapping[str, str], count: int, version: str
) -> Row:
    env = dict(env)

    def one(i: int) -> None:
        spawn_wait(argv_of(i), env)

    row = Row(name, one, count, version)
    row.skipped = probe(argv_of(-1), env)
    return row


def _same(argv: list[str]) -> Callable[[int], list[str]]:
    return lambda i: argv


class Bench:
    """The rows' set-up and clean-up (crun's hugetlb fix, podman's state)."""

    def __init__(self, work: Path, env: Mapping[str, str], count: int, podman_count: int):
        self.work, self.env, self.count = work, dict(env), count
        self.podman_count = podman_count
        self.fix = HugetlbFix()
        self.podman: Podman | None = None
        self.notes: list[str] = []

    def rows(self, no_cgroup_fix: bool) -> list[Row]:
        work, env = self.work, self.env
        rootfs = build_rootfs(work / "rootfs")
        root = str(work / "pyctr-root")
        rows = []
        try:
            from pyctr_fast import api

            def api_one(i: int) -> None:
                code = api.run(str(rootfs), ["/bin/true"], network="none", root=root)
                if code != 0:
                    raise RuntimeError(f"api.run exited {code}")

            row = Row("`pyctr_fast.api.run(...)` (in-process)", api_one, self.count)
            try:
                api_one(-1)
            except Exception as err:
                row.skipped = f"{type(err).__name__}: {err}"
        except ImportError as err:
            row = Row("`pyctr_fast.api.run(...)` (in-process)", lambda i: None, 0, skipped=str(err))
        rows.append(row)

        cli = pyctr_cli()
        cli_argv = [str(cli), "--root", root, "run", "--rm", "--network", "none"]
        cli_argv += ["--rootfs", str(rootfs), "/bin/true"]
        name = "`pyctr-fast run --rm --network none` (CLI)"
        if cli is None:
            rows.append(Row(name, lambda i: None, 0, skipped="pyctr-fast is not installed"))
        else:
            version = _first_line([cli, "--version"])
            rows.append(_spawn_row(name, _same(cli_argv), env, self.count, version))

        crun = shutil.which("crun")
        if crun is None:
            rows.append(Row(REFERENCE, lambda i: None, 0, skipped="crun not installed"))
        else:
            make_bundle(crun, work / "crun-bundle", rootfs)
            state, pid = str(work / "crun-state"), os.getpid()

            def crun_argv(i: int) -> list[str]:
                return [
                    crun,
                    "--root",
                    state,
                    "run",
                    "--bundle",
                    str(work / "crun-bundle"),
                    f"tp-{pid}-{i}",
                ]

            refused = probe(crun_argv(-2), env)
            if (
                refused
                and HYBRID_MARKER in refused
                and not no_cgroup_fix
                and self.fix.apply() is None
            ):
                self.notes.append(
                    "crun 1.8 refused the hybrid cgroup layout: a cgroup v1 hugetlb "
                    "hierarchy was mounted at /sys/fs/cgroup/hugetlb, unmounted at the end."
                )
            version = _first_line([crun, "--version"])
            rows.append(_spawn_row(REFERENCE, crun_argv, env, self.count, version))

        podman = shutil.which("podman")
        name = "`podman run --rm --network none`"
        if podman is None:
            rows.append(Row(name, lambda i: None, 0, skipped="podman not installed"))
        else:
            self.podman = Podman(podman, work / "podman", rootfs, env, work)
            base = [*self.podman.base, "run", "--rm", "--network", "none", *PODMAN_ULIMITS]
            tail = ["--rootfs", str(rootfs), "/bin/true"]
            row = Row(name, lambda i: None, 0)
            # podman with crun (the peer); its default runtime if that fails.
            for runtime in (["--runtime", "crun"] if crun else [], []):
                argv = [*base, *runtime, *tail]
                label = f"`podman run --rm --network none{' --runtime crun' if runtime else ''}`"
                row = _spawn_row(label, _same(argv), env, self.podman_count, self.podman.version)
                if row.skipped is None:
                    break
            rows.append(row)
        return rows

    def close(self) -> None:
        if self.podman is not None:
            self.notes += self.podman.close()
        for mp in mountpoints_under(str(self.work)):
            if os.system(f"umount {mp!r} 2>/dev/null") != 0:
                os.system(f"umount -l {mp!r} 2>/dev/null")
        self.fix.undo()


def run_throughput(
    reps: int, count: int, podman_count: int, seed: int | None, no_cgroup_fix: bool = False
) -> tuple[list[Row], list[str]]:
    """Set up, measure, clean up: the rows and the notes."""
    work = Path(tempfile.mkdtemp(prefix="pyctr-bench-tp-", dir=_workdir_base()[0]))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": "/root"}
    bench = Bench(work, env, count, min(podman_count, count))
    rows: list[Row] = []
    try:
        rows = bench.rows(no_cgroup_fix)
        started = time.monotonic()
        measure(rows, reps, count, random.Random(seed))
        bench.notes.append(f"throughput measured in {time.monotonic() - started:.0f} s")
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    return rows, bench.notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.throughput")
    parser.add_argument("--quick", action="store_true", help="1 repetition of 10 (podman 4)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5)")
    parser.add_argument("--count", type=int, default=None, help=f"containers ({COUNT})")
    parser.add_argument("--podman-count", type=int, default=None, help=f"({PODMAN_COUNT})")
    parser.add_argument("--no-cgroup-fix", action="store_true")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 5)
    count = args.count or (10 if args.quick else COUNT)
    pcount = args.podman_count or (4 if args.quick else PODMAN_COUNT)
    if os.geteuid() != 0:
        print("benches.throughput: containers need root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    rows, notes = run_throughput(reps, count, pcount, args.seed, args.no_cgroup_fix)
    print("\n".join(render(rows, reps, count) + [""] + [f"- {n}" for n in notes]))
    lacking = missing(rows)
    if lacking:
        print("benches.throughput: rows without a number: " + "; ".join(lacking), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
