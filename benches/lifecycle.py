"""Detached containers: supervisor memory per idle container, `run -d` latency and
`exec` latency, pyctr-fast against podman (conmon) and crun.

    python -m benches.lifecycle [--quick] [--rounds N] [--counts 1,10,100] [--total 200]
                                [--out docs/benchmarks-lifecycle.md]

Method:

* everything lives on a tmpfs the benchmark mounts on a fresh directory (and
  unmounts at the end): the busybox image (one copy per engine), pyctr-fast's
  data root, podman's ``--root``/``--runroot``/``--tmpdir`` (throwaway: the
  host's podman state is untouched), crun's state and bundle.  This VM's root
  disk is slow and is never timed;
* every container runs ``sleep`` from a busybox directory given with
  ``--rootfs`` (``podman import`` would write to the host's blob-info cache);
  podman runs with ``--network none`` (as pyctr-fast does here), cgroupfs,
  ``--events-backend none`` and the ulimits this VM needs (nofile 20000,
  nproc 32768); pyctr-fast's image path (the same tree imported as an image,
  overlay) is an extra ``run -d`` row;
* memory: for each count N, N idle ``sleep`` containers are started one after
  the other, left idle for 1 s, then RSS and PSS are read from
  /proc/PID/smaps_rollup of each supervisor: pyctr-fast's (``SupervisorPid``
  of state.json, checked to be a running ``pyctr-supervise``) and podman's
  conmon (``podman inspect`` ``ConmonPid``).  Per container is the mean RSS and
  the summed PSS / N (PSS splits the pages N supervisors share).  Then all are
  removed.  ``--total`` (200) starts that many pyctr-fast containers at once and
  reports the total;
* latency, as in benches.compare: rounds of every candidate once in a fresh
  random order; COLD sleeps 300 ms before the timed command, WARM runs it once
  untimed and then once timed; the time is from just before ``posix_spawn`` to
  just after ``waitpid`` of the CLI; a ``run -d`` container is removed (untimed)
  right after its timed start; ``exec CONTAINER true`` runs in one idle
  container per candidate; ratios are the median over rounds of (candidate /
  reference) in the same round.

The engines (pyctr-fast, podman, crun), the process helpers and the tmpfs
workspace are in benches/lifecycle_engines.py.

crun 1.8 may refuse a hybrid cgroup layout whose v2 hierarchy holds a
controller: then the benchmark mounts a v1 hugetlb hierarchy for it (as
benches.compare does) and says so.  Peers that are missing or fail are reported
as skipped, never guessed.  ``--quick``: counts 1 and 10, no total, 3 rounds, no
file unless ``--out``; fails unless every row that was not skipped has numbers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benches.compare import (
    Candidate,
    HugetlbFix,
    _first_line,
    _ratios,
    cgroup_mode,
    cpu_model,
    measure,
    pyctr_cli,
)
from benches.lifecycle_engines import (
    BenchError,
    Crun,
    Engine,
    Ours,
    Podman,
    Workspace,
    alive,
    remove_cgroup_parent,
    run,
    smaps_rollup,
    spawn_timed,
    start_crun,
    tar_dir,
)
from benches.rootfs import build_rootfs

IDLE_SECONDS = 1.0
IMAGE = "bench/busybox:latest"
DEFAULT_OUT = "docs/benchmarks-lifecycle.md"


# --------------------------------------------------------------------------- memory


@dataclass
class Memory:
    engine: str
    count: int
    rss: list[int] = field(default_factory=list)  # KiB per supervisor
    pss: list[int] = field(default_factory=list)
    start_ms: list[float] = field(default_factory=list)
    error: str | None = None

    def per_container(self) -> tuple[float, float]:
        """(mean RSS, total PSS / N) in KiB."""
        return statistics.mean(self.rss), sum(self.pss) / self.count


def measure_memory(engine: Engine, count: int, tag: str) -> Memory:
    mem = Memory(engine.name, count)
    names = [f"mem-{tag}-{count}-{i}" for i in range(count)]
    try:
        for name in names:
            mem.start_ms.append(engine.start(name))
        time.sleep(IDLE_SECONDS)
        pids = [engine.supervisor(name) for name in names]
        if len(set(pids)) != count:
            raise BenchError(f"{count} containers but {len(set(pids))} distinct supervisors")
        for pid in pids:
            rss, pss = smaps_rollup(pid)
            mem.rss.append(rss)
            mem.pss.append(pss)
        if isinstance(engine, Ours):
            gone = [n for n in names if not alive(engine.container_pid(n))]
            if gone:
                raise BenchError(f"container processes gone while idle: {gone[:3]}")
    except (BenchError, OSError, ValueError) as err:
        mem.error = f"{type(err).__name__}: {err}"
    finally:
        made = [n for n in names if n in engine.made]
        try:
            engine.remove(made)
        except BenchError as err:
            mem.error = mem.error or f"remove: {err}"
            engine.discard(made)
    mean_rss, mean_pss = mem.per_container() if mem.rss else (0.0, 0.0)
    log(
        f"memory {engine.name} x{count}: RSS {mean_rss:.0f} KiB, PSS {mean_pss:.0f} KiB each"
        + (f" ({mem.error})" if mem.error else "")
    )
    return mem


# --------------------------------------------------------------------------- latency


@dataclass
class Latency(Candidate):
    """A candidate of benches.compare's measuring (``run`` times one command)."""

    def ok(self) -> bool:
        return self.skipped is None and self.error is None and bool(self.cold and self.warm)


def run_d_candidate(
    label: str, tag: str, engine: Engine, argv_for: Callable[[str], list[str]]
) -> Latency:
    counter = [0]

    def once() -> float:
        counter[0] += 1
        name = f"rund-{tag}-{counter[0]}"
        try:
            ms = engine.start(name, argv_for(name))
        except BenchError:
            engine.discard([name])
            raise
        engine.remove([name])
        return ms

    c = Latency(label, once, engine.version, skipped=engine.skipped)
    if c.skipped is None:
        try:
            once()
        except BenchError as err:
            c.skipped = str(err)
    return c


def exec_candidate(
    label: str,
    argv: list[str],
    env: dict[str, str],
    scratch: Path,
    version: str,
    skipped: str | None,
) -> Latency:
    c = Latency(label, lambda: spawn_timed(argv, env, scratch)[0], version, skipped=skipped)
    if c.skipped is None:
        try:
            c.run()
        except (BenchError, OSError) as err:
            c.skipped = str(err)
    return c


def measure_latency(cands: list[Latency], rounds: int, rng: random.Random) -> None:
    measure(cands, rounds, rng, (BenchError, OSError))


# --------------------------------------------------------------------------- report


def _ratio(c: Latency, ref: Latency | None, phase: str) -> str:
    if ref is None or not ref.ok() or not c.ok():
        return "-"
    pairs = _ratios(c, ref, phase)
    return f"{statistics.median(pairs):.2f}x" if pairs else "-"


def _cell(text: str, limit: int = 240) -> str:
    """Text fit for a markdown table cell."""
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_latency(title: str, cands: list[Latency], refs: list[Latency | None]) -> list[str]:
    ref_cols = [f"vs {r.name}" for r in refs if r is not None]
    head = ["what", "version", "cold median ms", "cold min-max"]
    head += [f"cold {x}" for x in ref_cols] + ["warm median ms", "warm min-max"]
    head += [f"warm {x}" for x in ref_cols]
    lines = [f"## {title}", "", "| " + " | ".join(head) + " |"]
    lines.append("|---|---|" + "---:|" * (len(head) - 2))
    for c in cands:
        if not c.ok():
            why = c.skipped if c.skipped is not None else (c.error or "no numbers")
            lines.append(
                f"| {c.name} | {c.version} | skipped: {_cell(why)} |" + " |" * (len(head) - 3)
            )
            continue
        row = [c.name, c.version]
        for phase in ("cold", "warm"):
            values = getattr(c, phase)
            row += [f"{statistics.median(values):.1f}", f"{min(values):.1f}-{max(values):.1f}"]
            row += [_ratio(c, r, phase) for r in refs if r is not None]
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


def render_memory(rows: list[Memory], total: Memory | None, counts: list[int]) -> list[str]:
    lines = [
        "## Supervisor memory per idle detached `sleep` container",
        "",
        "| containers | pyctr-supervise RSS KiB | pyctr-supervise PSS KiB | "
        "conmon RSS KiB | conmon PSS KiB | PSS pyctr / conmon | RSS pyctr / conmon |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(m: Memory | None) -> tuple[str, str, float, float]:
        if m is None:
            return "skipped", "", 0.0, 0.0
        if m.error or not m.rss:
            return f"failed: {_cell(m.error or 'no numbers')}", "", 0.0, 0.0
        rss, pss = m.per_container()
        return f"{rss:.0f}", f"{pss:.0f}", rss, pss

    for n in counts:
        ours = next((m for m in rows if m.count == n and m.engine == "pyctr-fast"), None)
        peer = next((m for m in rows if m.count == n and m.engine == "podman"), None)
        o_rss, o_pss, orv, opv = cell(ours)
        p_rss, p_pss, prv, ppv = cell(peer)
        pr = f"{opv / ppv:.2f}" if opv and ppv else "-"
        rr = f"{orv / prv:.2f}" if orv and prv else "-"
        lines.append(f"| {n} | {o_rss} | {o_pss} | {p_rss} | {p_pss} | {pr} | {rr} |")
    lines += ["", "Per container: mean RSS, and the summed PSS divided by the count.", ""]
    if total is not None:
        if total.error or not total.rss:
            lines += [
                f"{total.count} idle pyctr-fast containers at once: failed: {total.error}",
                "",
            ]
        else:
            lines += [
                f"{total.count} idle pyctr-fast containers at once: total supervisor memory "
                f"RSS {sum(total.rss) / 1024:.1f} MiB, PSS {sum(total.pss) / 1024:.1f} MiB "
                f"({sum(total.pss) / total.count:.0f} KiB PSS per container); the "
                f"{total.count} `run -d` took {sum(total.start_ms) / 1000:.1f} s one after "
                f"the other (median {statistics.median(total.start_ms):.0f} ms).",
                "",
            ]
    return lines


METHOD = """\
## Method

- Every container runs `sleep 100000` from the same busybox tree (one copy per
  engine), given with `--rootfs`; pyctr-fast's image path (the tree imported
  with `pyctr-fast import`, run on overlayfs) is one more `run -d` row.  Podman
  runs with a throwaway `--root`/`--runroot`/`--tmpdir`, `--cgroup-manager
  cgroupfs`, `--events-backend none`, `--network none` (as pyctr-fast here)
  and the ulimits this VM needs; crun runs one container from a bundle made
  with `crun spec`.
- Memory: N idle containers started one after the other, 1 s idle, then `Rss`
  and `Pss` of /proc/PID/smaps_rollup of every supervisor: pyctr-fast's
  `SupervisorPid` from state.json (checked to be `pyctr-supervise`), podman's
  `ConmonPid` from `podman inspect`.  Per container: the mean RSS, and the
  summed PSS / N (PSS splits the pages the N supervisors share).
- Latency: each round runs every candidate once in a fresh random order;
  cold rounds sleep 300 ms before the timed command, warm ones run it once
  untimed right before.  Time from just before `posix_spawn` to just after
  `waitpid` of the CLI.  A `run -d` container is removed (untimed) right after
  its timed start.  Ratios: the median over rounds of (row / reference) in
  the same round; compare ratios, not absolute times across runs, on this
  noisy 2-core VM.

## Reproduce

As root, after `bash .ci/setup` (podman, conmon and crun are optional peers:
their rows say "skipped" when missing):

    python3 -m benches.lifecycle                 # writes docs/benchmarks-lifecycle.md
    python3 -m benches.lifecycle --quick         # CI smoke: 1 and 10 containers, 3 rounds
    python3 -m benches.lifecycle --counts 1,10,100 --total 200 --rounds 20 --out FILE
"""


def render(sections: list[list[str]], header: list[str], notes: list[str]) -> str:
    lines = ["# Detached containers: supervisor memory, `run -d` and `exec` latency", ""]
    lines += ["Generated by `python3 -m benches.lifecycle` (benches/lifecycle.py).", ""]
    lines += [f"- {h}" for h in header] + [""]
    for s in sections:
        lines += s
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines) + "\n" + METHOD


# --------------------------------------------------------------------------- the run


def log(msg: str) -> None:
    print(f"[benches.lifecycle {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    """One run: set-up, the three measurements, and a clean-up that always runs."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cgroup_parent = f"pyctr-bench-{os.getpid()}"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C.UTF-8",
            "HOME": "/root",
            # pyctr-fast's container groups go under a parent of this run's own.
            "PYCTR_CGROUP_PARENT": self.cgroup_parent,
        }
        self.notes: list[str] = []
        self.ws = Workspace()
        self.workfs = "?"
        self.fix = HugetlbFix()
        self.ours: Ours | None = None
        self.podman: Podman | None = None
        self.crun: Crun | None = None
        self.crun_skip: str | None = "crun not installed"
        self.scratch = self.ws.dir / "scratch"
        self.rng = random.Random(args.seed)

    def setup(self) -> Ours:
        self.workfs = self.ws.mount()
        work = self.ws.dir
        self.scratch.mkdir()
        rootfs = {k: build_rootfs(work / "images" / k) for k in ("ours", "podman", "crun")}
        cli = pyctr_cli()
        if cli is None:
            raise BenchError("the pyctr-fast console script is not installed")
        ours = self.ours = Ours(cli, work / "pyctr-root", rootfs["ours"], self.env, self.scratch)
        run(ours.argv("import", str(tar_dir(rootfs["ours"], work / "bb.tar")), IMAGE), self.env)
        crun_exe, podman_exe = shutil.which("crun"), shutil.which("podman")
        if crun_exe:
            self.crun = Crun(crun_exe, work, rootfs["crun"], self.env)
            self.crun_skip = start_crun(self.crun, self.fix, self.args.no_cgroup_fix, self.notes)
        if podman_exe and shutil.which("conmon"):
            self.podman = Podman(
                podman_exe, work / "podman", rootfs["podman"], self.env, self.scratch
            )
        else:
            self.notes.append("podman or conmon is not installed: their rows are skipped")
        return ours

    def memory(
        self, ours: Ours, counts: list[int], total: int
    ) -> tuple[list[Memory], Memory | None]:
        rows = []
        for n in counts:
            rows.append(measure_memory(ours, n, "a"))
            if self.podman is not None:
                rows.append(measure_memory(self.podman, n, "a"))
        return rows, measure_memory(ours, total, "total") if total else None

    def run_d(self, ours: Ours, rounds: int) -> tuple[list[Latency], Latency | None]:
        cands = [
            run_d_candidate("`pyctr-fast run -d --rootfs`", "dir", ours, ours.run_argv),
            run_d_candidate(
                "`pyctr-fast run -d IMAGE` (overlay)",
                "image",
                ours,
                lambda n: ours.run_argv(n, IMAGE),
            ),
        ]
        ref = None
        if self.podman is not None:
            ref = run_d_candidate(
                "`podman run -d --rootfs`", "podman", self.podman, self.podman.run_argv
            )
            cands.append(ref)
        log("run -d latency")
        measure_latency(cands, rounds, self.rng)
        return cands, ref

    def execs(self, ours: Ours, rounds: int) -> tuple[list[Latency], list[Latency | None]]:
        log("exec latency")
        env, scratch = self.env, self.scratch
        skip = _start(ours, "exec-target")
        cands = [
            exec_candidate(
                "`pyctr-fast exec C true`",
                ours.exec_argv("exec-target"),
                env,
                scratch,
                ours.version,
                skip,
            )
        ]
        ref_podman = ref_crun = None
        if self.podman is not None:
            ref_podman = exec_candidate(
                "`podman exec C true`",
                self.podman.exec_argv("exec-target"),
                env,
                scratch,
                self.podman.version,
                _start(self.podman, "exec-target"),
            )
            cands.append(ref_podman)
        if self.crun is not None:
            ref_crun = exec_candidate(
                "`crun exec ID /bin/true`",
                self.crun.exec_argv(),
                env,
                scratch,
                _first_line([self.crun.exe, "--version"]),
                self.crun_skip,
            )
            cands.append(ref_crun)
        nsenter = shutil.which("nsenter")
        if nsenter and skip is None:
            pid = str(ours.container_pid("exec-target"))
            cands.append(
                exec_candidate(
                    "floor: `nsenter -t PID -m -u -i -n -p true` (no cgroup, caps or seccomp)",
                    [nsenter, "-t", pid, "-m", "-u", "-i", "-n", "-p", "true"],
                    env,
                    scratch,
                    _first_line([nsenter, "--version"]),
                    None,
                )
            )
        measure_latency(cands, rounds, self.rng)
        return cands, [ref_crun, ref_podman]

    def close(self) -> None:
        if self.ours is not None:
            errors = self.ours.discard(list(self.ours.made))
            self.notes += [f"pyctr-fast rm -f failed: {e}" for e in errors]
        if self.podman is not None:
            self.notes += self.podman.close()
        if self.crun is not None:
            self.crun.close()
        self.ws.close(self.notes)
        left = remove_cgroup_parent(self.cgroup_parent)
        if left:
            self.notes.append(f"container cgroups left by pyctr-fast (removed): {left[:5]}")
        self.fix.undo()


def _start(engine: Engine, name: str) -> str | None:
    """Start an idle container for exec; None, or why its row is skipped."""
    try:
        engine.start(name)
    except BenchError as err:
        return str(err)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benches.lifecycle", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="counts 1,10, no total, 3 rounds; all rows must work"
    )
    parser.add_argument("--rounds", type=int, default=None, help="latency rounds (default 20)")
    parser.add_argument("--counts", default=None, help="idle containers (default 1,10,100)")
    parser.add_argument("--total", type=int, default=None, help="pyctr-fast at once (200)")
    parser.add_argument(
        "--out", default=None, help="markdown report (default docs/benchmarks-lifecycle.md)"
    )
    parser.add_argument("--no-cgroup-fix", action="store_true", help="never mount hugetlb")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 20)
    counts = [int(x) for x in (args.counts or ("1,10" if args.quick else "1,10,100")).split(",")]
    total = args.total if args.total is not None else (0 if args.quick else 200)
    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    if os.geteuid() != 0:
        print("benches.lifecycle: containers need root", file=sys.stderr)
        return 2
    # A `timeout` (SIGTERM) must still run the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))

    load_before = os.getloadavg()
    bench = Bench(args)
    mem_rows: list[Memory] = []
    total_row: Memory | None = None
    rund: list[Latency] = []
    execs: list[Latency] = []
    try:
        ours = bench.setup()
        mem_rows, total_row = bench.memory(ours, counts, total)
        rund, ref_run = bench.run_d(ours, rounds)
        execs, exec_refs = bench.execs(ours, rounds)
        sections = [
            render_memory(mem_rows, total_row, counts),
            render_latency(
                "`run -d` latency (the CLI returns once the container runs)", rund, [ref_run]
            ),
            render_latency("`exec` latency (`true` in a running idle container)", execs, exec_refs),
        ]
    except BenchError as err:
        log(f"failed: {err}")
        sections = [[f"failed: {err}", ""]]
    finally:
        bench.close()

    header = [
        f"date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"kernel: {platform.release()}; cgroup mode: {cgroup_mode()}",
        f"CPU: {cpu_model()} ({os.cpu_count()} cores); load average (1 min) "
        f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after",
        f"data roots, images and state on: {bench.workfs}",
        f"latency: {rounds} cold rounds (300 ms idle before each command) and {rounds} warm "
        "(each right after an untimed one), candidates shuffled in every round",
        f"idle containers: {', '.join(map(str, counts))}"
        + (f"; {total} pyctr-fast containers at once" if total else ""),
    ]
    report = render(sections, header, bench.notes)
    print(report)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(report)
        print(f"written to {out}", file=sys.stderr)
    missing = [c.name for c in rund + execs if c.skipped is None and not c.ok()]
    missing += [c.name for c in rund + execs if c.name.startswith("`pyctr") and not c.ok()]
    missing += [f"memory {m.engine} x{m.count}" for m in mem_rows if m.error or not m.rss]
    if total_row is not None and (total_row.error or not total_row.rss):
        missing.append(f"{total} containers at once")
    if not rund:
        missing.append("everything (set-up failed)")
    if missing:
        print("benches.lifecycle: rows without a number: " + "; ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
