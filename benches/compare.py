"""Start->exit latency of ``/bin/true`` in a container: pyctr-fast against crun,
runc, udocker (P1 mode; benches/udocker.py) and two floors.

    python -m benches.compare [--quick] [--runs N] [--out docs/benchmarks.md] [--no-udocker]

Method:

* every candidate runs the same busybox image, built here on a tmpfs (/dev/shm
  when it allows exec, else the system temp directory: the report says which);
* a round runs every candidate once, in a fresh random order; COLD rounds sleep
  300 ms before each timed start (what a user typing ``run`` sees), WARM rounds
  run each candidate once untimed and then immediately once timed;
* each process is started with ``posix_spawn`` and reaped with ``waitpid``: the
  time is from just before the spawn to just after the reap; the in-process API
  is timed around one ``pyctr_fast.api.run`` call in this interpreter;
* the report gives medians, min/max and, per round, the ratio to crun's time in
  the same round (the median of those ratios): compare ratios, never absolute
  times across runs, on this noisy VM.

crun 1.8 refuses a hybrid cgroup layout whose v2 hierarchy holds a controller
(hugetlb on this VM): when its first start fails that way, the benchmark mounts
a cgroup v1 hugetlb hierarchy at /sys/fs/cgroup/hugetlb (the known workaround,
``--no-cgroup-fix`` to skip crun instead), unmounts it at the end, and says so
in the report.  Peers that are not installed (or fail) are reported as skipped,
never guessed.  ``--quick`` runs 5 rounds, writes no file unless ``--out`` is
given, and fails unless every row that was not skipped has a number.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benches.rootfs import build_rootfs
from benches.udocker import NAME as UDOCKER
from benches.udocker import Udocker

COLD_SLEEP = 0.3

CLI = "`pyctr-fast run --rm --network none` (CLI)"
API = "`pyctr_fast.api.run(...)` (in-process)"
#: The same with limits: the container gets a cgroup (made with its limits,
#: joined before the program runs, removed after it).
LIMIT_FLAGS = ["-m", "64m", "--cpus", "1", "--pids-limit", "100"]
LIMIT_KWARGS = {"mem_limit": "64m", "nano_cpus": 1_000_000_000, "pids_limit": 100}
LIMITED_CLI = "same CLI with `-m 64m --cpus 1 --pids-limit 100` (own cgroup)"
LIMITED_API = "same API call with those limits (own cgroup)"
HYBRID_MARKER = "hybrid mode not supported"
REFERENCE = "`crun run` (default config)"


# --------------------------------------------------------------------------- running


def _devnull_actions() -> list[tuple[int, int, str, int, int]]:
    return [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)]


def spawn_wait(argv: list[str], env: dict[str, str]) -> float:
    """Milliseconds from spawn to reap; raises if the exit status is not 0."""
    actions = _devnull_actions()
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    elapsed = (time.perf_counter_ns() - start) / 1e6
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {code}")
    return elapsed


def probe(argv: list[str], env: dict[str, str]) -> str | None:
    """Run once with output captured: None if it works, else the error text."""
    try:
        res = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    if res.returncode != 0:
        text = (res.stderr or res.stdout).strip()
        return text.splitlines()[-1] if text else f"exit {res.returncode}"
    return None


@dataclass
class Candidate:
    name: str
    run: Callable[[], float]
    version: str = ""
    note: str = ""
    skipped: str | None = None
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    error: str | None = None


def _bind(argv: list[str], env: dict[str, str]) -> Callable[[], float]:
    return lambda: spawn_wait(argv, env)


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def next(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{os.getpid()}-{self.n}"


# --------------------------------------------------------------------------- peers


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""


#: LIMIT_FLAGS as OCI ``linux.resources`` (crun's row with limits).
LIMIT_RESOURCES = {
    "memory": {"limit": 64 << 20},
    "cpu": {"quota": 100_000, "period": 100_000},
    "pids": {"limit": 100},
}


def make_bundle(
    runtime: str, bundle: Path, rootfs: Path, resources: Mapping[str, object] | None = None
) -> None:
    """``<runtime> spec`` edited to run /bin/true without a terminal, in a network
    namespace, on the shared rootfs (with ``resources`` as its limits)."""
    bundle.mkdir(parents=True, exist_ok=True)
    subprocess.run([runtime, "spec"], cwd=bundle, check=True, capture_output=True)
    path = bundle / "config.json"
    config = json.loads(path.read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    config["root"] = {"path": str(rootfs), "readonly": True}
    namespaces = config["linux"].setdefault("namespaces", [])
    if not any(ns.get("type") == "network" for ns in namespaces):
        namespaces.append({"type": "network"})
    if resources is not None:
        config["linux"].setdefault("resources", {}).update(resources)
    path.write_text(json.dumps(config, indent=2))


def cgroup_mode() -> str:
    fs = _fstype("/sys/fs/cgroup")
    if fs == "cgroup2":
        return "v2 (unified)"
    if os.path.isdir("/sys/fs/cgroup/unified") and _fstype("/sys/fs/cgroup/unified") == "cgroup2":
        controllers = Path("/sys/fs/cgroup/unified/cgroup.controllers").read_text().split()
        held = f", v2 holds: {' '.join(controllers)}" if controllers else ""
        return f"hybrid (v1 controllers + v2 at /sys/fs/cgroup/unified{held})"
    return "v1 (legacy)"


def _fstype(path: str) -> str:
    best, best_fs = "", ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        mountpoint = left.split()[4]
        if (path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")) and len(
            mountpoint
        ) >= len(best):
            best, best_fs = mountpoint, right.split()[0]
    return best_fs


class HugetlbFix:
    """Mount a cgroup v1 hugetlb hierarchy so that crun 1.8 accepts the layout."""

    PATH = Path("/sys/fs/cgroup/hugetlb")

    def __init__(self) -> None:
        self.mounted = False
        self.created = False

    def apply(self) -> str | None:
        try:
            if not self.PATH.exists():
                self.PATH.mkdir()
                self.created = True
            res = subprocess.run(
                ["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(self.PATH)],
                capture_output=True,
                text=True,
            )
        except OSError as err:
            return str(err)
        if res.returncode != 0:
            return res.stderr.strip()
        self.mounted = True
        return None

    def undo(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.PATH)], capture_output=True)
        if self.created:
            try:
                self.PATH.rmdir()
            except OSError:
                pass


# --------------------------------------------------------------------------- candidates


def pyctr_cli() -> str | None:
    """The console script next to this interpreter (never a pyenv shim)."""
    script = Path(sys.executable).parent / "pyctr-fast"
    if script.is_file() and os.access(script, os.X_OK):
        return str(script)
    found = shutil.which("pyctr-fast")
    if found and "/shims/" not in found:
        return found
    return None


def build_candidates(
    work: Path, rootfs: Path, env: dict[str, str], args: argparse.Namespace, notes: list[str]
) -> tuple[list[Candidate], HugetlbFix]:
    ids = Counter()
    cands: list[Candidate] = []
    fix = HugetlbFix()

    true_bin = shutil.which("true") or "/bin/true"
    cands.append(Candidate("fork+exec `/bin/true`", lambda: spawn_wait([true_bin], env)))

    # What any Python CLI pays before its first line runs (site and .pth files included).
    py = os.path.realpath(sys.executable)
    for label, flags in (("`python -c pass`", []), ("`python -I -S -c pass`", ["-I", "-S"])):
        py_argv = [py, *flags, "-c", "pass"]
        cands.append(Candidate(f"{label} (the CLI's interpreter)", _bind(py_argv, env)))

    unshare = shutil.which("unshare")
    floor_argv = [unshare or "unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net"]
    floor_argv.append(true_bin)
    c = Candidate(
        "`unshare --fork --pid --mount --uts --ipc --net true`",
        lambda: spawn_wait(floor_argv, env),
    )
    c.skipped = "unshare not installed" if not unshare else probe(floor_argv, env)
    cands.append(c)

    # pyctr-fast, CLI
    cli = pyctr_cli()
    root = work / "pyctr-root"
    cli_argv = [str(cli), "--root", str(root), "run", "--rm", "--network", "none"]
    cli_argv += ["--rootfs", str(rootfs), "/bin/true"]
    c = Candidate(
        CLI,
        lambda: spawn_wait(cli_argv, env),
        version=_first_line([str(cli), "--version"]) if cli else "",
    )
    c.skipped = (
        "the pyctr-fast console script is not installed" if not cli else probe(cli_argv, env)
    )
    cands.append(c)
    limited_argv = [*cli_argv[:7], *LIMIT_FLAGS, *cli_argv[7:]]
    c2 = Candidate(LIMITED_CLI, lambda: spawn_wait(limited_argv, env), version=c.version)
    c2.skipped = c.skipped or probe(limited_argv, env)
    cands.append(c2)

    # pyctr-fast, in-process API
    try:
        from pyctr_fast import api

        def run_api() -> float:
            start = time.perf_counter_ns()
            code = api.run(str(rootfs), ["/bin/true"], network="none", root=str(root))
            elapsed = (time.perf_counter_ns() - start) / 1e6
            if code != 0:
                raise RuntimeError(f"api.run exited {code}")
            return elapsed

        def run_api_limited() -> float:
            start = time.perf_counter_ns()
            code = api.run(
                str(rootfs), ["/bin/true"], network="none", root=str(root), limits=LIMIT_KWARGS
            )
            elapsed = (time.perf_counter_ns() - start) / 1e6
            if code != 0:
                raise RuntimeError(f"api.run exited {code}")
            return elapsed

        c = Candidate(API, run_api)
        c2 = Candidate(LIMITED_API, run_api_limited)
        for cand in (c, c2):
            try:
                cand.run()
            except Exception as err:
                cand.skipped = f"{type(err).__name__}: {err}"
    except ImportError as err:
        c = Candidate(API, lambda: 0.0, skipped=str(err))
        c2 = Candidate(LIMITED_API, lambda: 0.0, skipped=str(err))
    cands += [c, c2]

    # crun: default config, then with cgroups disabled
    crun = shutil.which("crun")
    crun_state = work / "crun-state"
    if crun:
        make_bundle(crun, work / "crun-bundle", rootfs)
        make_bundle(crun, work / "crun-limited", rootfs, LIMIT_RESOURCES)

    def crun_argv(*extra: str, bundle: str = "crun-bundle") -> list[str]:
        return [str(crun), "--root", str(crun_state), *extra, "run", "--bundle",
                str(work / bundle), ids.next("crun")]  # fmt: skip

    version = _first_line([crun, "--version"]) if crun else ""
    c = Candidate(REFERENCE, lambda: spawn_wait(crun_argv(), env), version)
    c2 = Candidate(
        "`crun --cgroup-manager=disabled run`",
        lambda: spawn_wait(crun_argv("--cgroup-manager=disabled"), env),
        version,
    )
    c3 = Candidate(
        "`crun run` with the same limits (`linux.resources`)",
        lambda: spawn_wait(crun_argv(bundle="crun-limited"), env),
        version,
    )
    if not crun:
        c.skipped = c2.skipped = c3.skipped = "crun not installed"
    else:
        err = probe(crun_argv(), env)
        if err and HYBRID_MARKER in err:
            if args.no_cgroup_fix:
                c.skipped = f"crun refuses this cgroup layout: {err}"
            else:
                fix_err = fix.apply()
                if fix_err:
                    c.skipped = f"{err}; mounting a v1 hugetlb hierarchy failed: {fix_err}"
                else:
                    notes.append(
                        "crun 1.8 refused the hybrid cgroup layout (hugetlb on the v2 "
                        "hierarchy): this run mounted a cgroup v1 hugetlb hierarchy at "
                        "/sys/fs/cgroup/hugetlb for crun, unmounted at the end."
                    )
                    err = probe(crun_argv(), env)
        if c.skipped is None:
            c.skipped = err
            c2.skipped = probe(crun_argv("--cgroup-manager=disabled"), env)
            c3.skipped = probe(crun_argv(bundle="crun-limited"), env)
        else:
            c2.skipped = c3.skipped = c.skipped
    cands += [c, c2, c3]

    # runc
    runc = shutil.which("runc")
    runc_state = work / "runc-state"
    if runc:
        make_bundle(runc, work / "runc-bundle", rootfs)

    def runc_argv() -> list[str]:
        return [str(runc), "--root", str(runc_state), "run", "--bundle",
                str(work / "runc-bundle"), ids.next("runc")]  # fmt: skip

    c = Candidate(
        "`runc run`",
        lambda: spawn_wait(runc_argv(), env),
        _first_line([runc, "--version"]) if runc else "",
    )
    c.skipped = "runc not installed" if not runc else probe(runc_argv(), env)
    cands.append(c)

    # udocker (PyPI), P1 mode: a private install in the work directory
    ud = Udocker(work)
    ud_argv = ud.run_argv()
    c = Candidate(UDOCKER, lambda: spawn_wait(ud_argv, ud.env))
    c.skipped = "not asked for (--no-udocker)" if args.no_udocker else ud.setup(rootfs)
    c.version = ud.version
    if c.skipped is None:
        notes.append(
            "udocker: pip-installed from PyPI into this run's work directory, the busybox tree "
            "`udocker import`-ed offline, one container set up with `--execmode=P1`; PRoot is "
            "Debian's `proot` (udocker's own tools tarball is not reachable here); each start "
            "is `python -S udocker -q run --nobanner C /bin/true`"
        )
    cands.append(c)
    return cands, fix


# --------------------------------------------------------------------------- measuring


def measure(
    cands: Sequence[Candidate],
    rounds: int,
    rng: random.Random,
    errors: tuple[type[Exception], ...] = (Exception,),
) -> None:
    """Rounds of every candidate once in a fresh random order, cold then warm;
    a candidate's first error (one of ``errors``) ends its measuring."""
    active = [c for c in cands if c.skipped is None]
    for phase in ("cold", "warm"):
        for _ in range(rounds):
            order = active[:]
            rng.shuffle(order)
            for c in order:
                if c.error:
                    continue
                try:
                    if phase == "cold":
                        time.sleep(COLD_SLEEP)
                        c.cold.append(c.run())
                    else:
                        c.run()
                        c.warm.append(c.run())
                except errors as err:
                    c.error = f"{type(err).__name__}: {err}"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ratios(c: Candidate, ref: Candidate, phase: str) -> list[float]:
    """(candidate / reference) of each round of ``phase``."""
    mine, theirs = getattr(c, phase), getattr(ref, phase)
    return [a / b for a, b in zip(mine, theirs) if b > 0]


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def _span(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}" if values else "-"


def render(
    cands: list[Candidate], rounds: int, notes: list[str], workfs: str, ref_name: str
) -> str:
    ref = next((c for c in cands if c.name == ref_name and c.cold and not c.error), None)
    lines = [
        "# Container start->exit latency of `/bin/true`",
        "",
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- kernel: {platform.release()}",
        f"- cgroup mode: {cgroup_mode()}",
        f"- CPU: {cpu_model()} ({os.cpu_count()} cores)",
        f"- Python: {platform.python_version()} ({sys.executable})",
        f"- image and state on: {workfs}",
        f"- rounds: {rounds} cold (300 ms idle before each start) and {rounds} warm "
        "(each start right after an untimed one of the same candidate), candidates "
        "shuffled in every round",
        "- ratios: median over rounds of (candidate / crun default) in the same round",
        "",
        "| what | version | cold median ms | cold min-max | cold vs crun | "
        "warm median ms | warm min-max | warm vs crun |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cands:
        if c.skipped is not None or c.error:
            why = c.skipped if c.skipped is not None else c.error
            lines.append(f"| {c.name} | {c.version} | skipped: {why} | | | | | |")
            continue
        cr = f"{statistics.median(_ratios(c, ref, 'cold')):.2f}x" if ref else "-"
        wr = f"{statistics.median(_ratios(c, ref, 'warm')):.2f}x" if ref else "-"
        lines.append(
            f"| {c.name} | {c.version} | {_ms(c.cold)} | {_span(c.cold)} | {cr} | "
            f"{_ms(c.warm)} | {_span(c.warm)} | {wr} |"
        )
    lines += cgroup_cost(cands)
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    lines.append("")
    return "\n".join(lines)


def _paired(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b)]


def cgroup_cost(cands: list[Candidate]) -> list[str]:
    """The added cost of a cgroup with limits (setup, join, teardown): the
    median over rounds of (with limits - without) in the same round."""
    by_name = {c.name: c for c in cands if c.skipped is None and not c.error and c.cold}
    rows = []
    for plain, limited, label in ((CLI, LIMITED_CLI, "CLI"), (API, LIMITED_API, "API")):
        a, b = by_name.get(limited), by_name.get(plain)
        if a is None or b is None:
            continue
        cold, warm = _paired(a.cold, b.cold), _paired(a.warm, b.warm)
        rows.append(f"| {label} | {_ms(cold)} | {_ms(warm)} |")
    if not rows:
        return []
    return [
        "",
        "Added cost of a cgroup with limits (made with its limits before the start, "
        "joined, removed after the exit), median over rounds of (with - without), ms:",
        "",
        "| path | cold | warm |",
        "|---|---:|---:|",
        *rows,
    ]


def _workdir_base() -> tuple[str, str]:
    shm = Path("/dev/shm")
    if shm.is_dir():
        line = next(
            (
                x
                for x in Path("/proc/self/mountinfo").read_text().splitlines()
                if x.split()[4] == "/dev/shm"
            ),
            "",
        )
        if line and "noexec" not in line.split()[5].split(","):
            return str(shm), "tmpfs (/dev/shm)"
    tmp = tempfile.gettempdir()
    return tmp, f"{_fstype(tmp) or 'unknown fs'} ({tmp})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benches.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="5 rounds; check every row has a number"
    )
    parser.add_argument("--runs", type=int, default=None, help="rounds per phase (default 30)")
    parser.add_argument(
        "--out",
        default=None,
        help="markdown report (default docs/benchmarks.md; none with --quick)",
    )
    parser.add_argument(
        "--no-cgroup-fix",
        action="store_true",
        help="never mount a v1 hugetlb hierarchy for crun (skip crun instead)",
    )
    parser.add_argument(
        "--no-udocker", action="store_true", help="skip udocker (its set-up uses pip)"
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    args.rounds = args.runs if args.runs is not None else (5 if args.quick else 30)
    return args


def collect(args: argparse.Namespace) -> tuple[list[Candidate], str]:
    """Build, measure and clean up: the candidates with their times, and the report."""
    base, workfs = _workdir_base()
    work = Path(tempfile.mkdtemp(prefix="pyctr-bench-", dir=base))
    notes: list[str] = []
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    fix: HugetlbFix | None = None
    try:
        rootfs = build_rootfs(work / "rootfs")
        cands, fix = build_candidates(work, rootfs, env, args, notes)
        started = time.monotonic()
        measure(cands, args.rounds, random.Random(args.seed))
        notes.append(f"measured in {time.monotonic() - started:.0f} s")
        report = render(cands, args.rounds, notes, workfs, REFERENCE)
    finally:
        if fix is not None:
            fix.undo()
        shutil.rmtree(work, ignore_errors=True)
    return cands, report


def missing_rows(cands: Sequence[Candidate]) -> list[str]:
    """Rows that were measured but have no number, and our rows that were skipped."""
    ours = [c for c in cands if c.name.startswith("`pyctr")]
    missing = [c.name for c in cands if c.skipped is None and (c.error or not c.cold or not c.warm)]
    return missing + [f"{c.name} (skipped: {c.skipped})" for c in ours if c.skipped is not None]


def write_report(out: str, report: str) -> None:
    """Write ``report`` to ``out``, keeping the sections other modules wrote there."""
    from benches.runtime import keep_section

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(keep_section(Path(out), report))
    print(f"written to {out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out if args.out is not None else (None if args.quick else "docs/benchmarks.md")
    if os.geteuid() != 0:
        print("benches.compare: containers need root", file=sys.stderr)
        return 2
    # A `timeout` (SIGTERM) must still run the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    cands, report = collect(args)
    print(report)
    if out:
        write_report(out, report)
    missing = missing_rows(cands)
    if args.quick and missing:
        print("benches.compare: rows without a number: " + "; ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
