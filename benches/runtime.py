"""`pyctr-fast-runtime` create+start+delete on a prepared bundle against crun and
runc, timed by hyperfine (youki's method: 100 runs, 10 warm-up runs).

    python -m benches.runtime [--quick] [--runs N] [--warmup N] [--idle S]
                              [--out docs/benchmarks.md] [--json-dir DIR]

Method:

* one bundle for all three runtimes, on a tmpfs (/dev/shm when it allows exec,
  as benches.compare): the busybox image of benches/rootfs.py, read-only, and
  ``runc spec`` edited by benches.compare.make_bundle (``/bin/true``, no
  terminal, pid/ipc/uts/mount/network namespaces, runc's default mounts, masked
  paths, devices cgroup and capabilities) with ``linux.cgroupsPath`` set to
  ``/pyctr-bench-rt-PID``: each runtime makes that group (in every hierarchy it
  manages) per container and removes it at ``delete``; an absolute path keeps
  runc from nesting it under the benchmark's own groups.
  ``process.capabilities.ambient`` is dropped: with an empty inheritable set it
  cannot be raised (runc and crun skip it silently).  Every runtime gets the
  identical config.json;
* every runtime has a private ``--root`` state directory and one fixed id (each
  run deletes its container, so the id is free again);
* row "create+start+wait+delete", one shell line per run, identical for the
  three runtimes: ``RT --root R create --bundle B --pid-file P ID && RT --root R
  start ID && { pidwait -F P; RT --root R delete ID; }``: ``pidwait`` (procps)
  waits for the container's init through a pidfd, so ``delete`` (without
  ``--force``) always finds the container stopped.  hyperfine runs the line with
  ``sh -c`` and subtracts its measured cost of an empty ``sh -c`` (its default);
* row "run": ``RT --root R run --bundle B ID`` (create + start + wait + delete in
  one runtime process), with ``hyperfine -N`` (no shell);
* one hyperfine invocation per row kind and phase holds all three runtimes
  (pyctr-fast-runtime, crun, runc, in that order; each gets its warm-up runs
  then its timed runs).  WARM is youki's method as published: back-to-back runs.
  COLD follows ``--idle`` seconds (30) of idle machine and runs ``sleep 0.3``
  as hyperfine ``--prepare`` before every run (untimed: 300 ms idle before each
  start, benches.compare's definition of cold; on this VM the first cgroup write
  after an idle moment waits out an RCU grace period);
* reported: median, min-max, mean ± sd (ms) and median / crun's median.

crun 1.8 may refuse a hybrid cgroup layout whose v2 hierarchy holds a
controller: then a v1 hugetlb hierarchy is mounted for it as benches.compare
does, and the report says so.  A runtime that is missing or fails its probe is
reported as skipped, never guessed; without hyperfine (``apt-get install
hyperfine``) or pidwait every row is skipped with a note.  ``--quick``: 10 runs,
2 warm-up runs, no idle wait, no file unless ``--out``; exit 1 unless every row
that was not skipped has numbers (and pyctr-fast-runtime's rows are not skipped
while hyperfine is installed).  The full run replaces its section of
docs/benchmarks.md (between the markers below; benches.compare keeps it).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNTIMES = ("pyctr-fast-runtime", "crun", "runc")
REFERENCE = "crun"
COLD_PREPARE = "sleep 0.3"
SECTION_BEGIN = "<!-- benches.runtime:begin -->"
SECTION_END = "<!-- benches.runtime:end -->"
DEFAULT_OUT = "docs/benchmarks.md"
METHODS = {
    "csd": "create+start+wait+delete",
    "run": "`run` (create+start+wait+delete in one process)",
}
PHASES = ("cold", "warm")


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Stats:
    """One hyperfine result, in milliseconds."""

    runs: int
    median: float
    mean: float
    sd: float | None
    min: float
    max: float


def parse_hyperfine(doc: Mapping[str, Any]) -> list[Stats]:
    """The results of a ``hyperfine --export-json`` document, in command order.
    A result with a non-zero exit code is an error (hyperfine stops on one
    anyway unless ``-i`` is given)."""
    out = []
    for res in doc["results"]:
        codes = [c for c in res.get("exit_codes") or [] if c != 0]
        if codes:
            raise ValueError(f"{res.get('command', '?')}: exit codes {sorted(set(codes))}")
        times = [float(t) * 1000 for t in res.get("times") or []]
        sd = res.get("stddev")
        out.append(
            Stats(
                runs=len(times),
                median=float(res["median"]) * 1000,
                mean=float(res["mean"]) * 1000,
                sd=None if sd is None else float(sd) * 1000,
                min=float(res["min"]) * 1000,
                max=float(res["max"]) * 1000,
            )
        )
    return out


def fmt_stats(s: Stats | None, ref: Stats | None) -> list[str]:
    """Table cells: median, min-max, mean ± sd, median / reference median."""
    if s is None:
        return ["-", "-", "-", "-"]
    sd = f" ± {s.sd:.1f}" if s.sd is not None else ""
    ratio = f"{s.median / ref.median:.2f}x" if ref is not None and ref.median > 0 else "-"
    return [f"{s.median:.1f}", f"{s.min:.1f}-{s.max:.1f}", f"{s.mean:.1f}{sd}", ratio]


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of module ``name``'s section of a markdown file."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


#: The sections other modules splice into docs/benchmarks.md, which
#: benches.compare (rewriting the whole file) keeps.
KEPT_SECTIONS = (
    "benches.runtime",
    "benches.throughput",
    "benches.phases",
    "benches.network",
    "benches.report",
)


def section_of(doc: str, name: str = "benches.runtime") -> str | None:
    """Module ``name``'s section of a markdown file (markers included), if any."""
    begin, end_marker = markers(name)
    start = doc.find(begin)
    end = doc.find(end_marker, start)
    if start < 0 or end < 0:
        return None
    return doc[start : end + len(end_marker)]


def splice(doc: str, section: str, name: str = "benches.runtime") -> str:
    """``doc`` with its section replaced by ``section`` (appended when absent)."""
    old = section_of(doc, name)
    if old is not None:
        return doc.replace(old, section, 1)
    return doc.rstrip("\n") + ("\n\n" if doc.strip() else "") + section + "\n"


def keep_section(path: Path, new_doc: str) -> str:
    """``new_doc`` plus the sections that ``path`` already holds (for
    benches.compare, which rewrites the whole file)."""
    try:
        text = path.read_text()
    except OSError:
        return new_doc
    for name in KEPT_SECTIONS:
        old = section_of(text, name)
        if old and section_of(new_doc, name) is None:
            new_doc = splice(new_doc, old, name)
    return new_doc


# --------------------------------------------------------------------------- runtimes


@dataclass
class Runtime:
    name: str
    path: str | None
    state: Path
    pidfile: Path
    cid: str
    version: str = ""
    skipped: str | None = None
    stats: dict[tuple[str, str], Stats] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # method -> why it has no row

    def base(self) -> list[str]:
        return [str(self.path), "--root", str(self.state)]

    def csd_line(self, bundle: Path) -> str:
        b, cid, pid = shlex.join(self.base()), self.cid, shlex.quote(str(self.pidfile))
        return (
            f"{b} create --bundle {shlex.quote(str(bundle))} --pid-file {pid} {cid} && "
            f"{b} start {cid} && {{ pidwait -F {pid}; {b} delete {cid}; }}"
        )

    def run_argv(self, bundle: Path) -> list[str]:
        return [*self.base(), "run", "--bundle", str(bundle), self.cid]


def find_runtime(name: str) -> str | None:
    """The binary; for ours the one next to this interpreter (a pyenv shim on PATH
    would add 50-90 ms of bash to every call)."""
    if name == "pyctr-fast-runtime":
        script = Path(sysconfig.get_path("scripts")) / name
        if script.is_file() and os.access(script, os.X_OK):
            return str(script)
    found = shutil.which(name)
    return found if found and "/shims/" not in found else None


def cgroup_name() -> str:
    return f"pyctr-bench-rt-{os.getpid()}"


def prepare_bundle(work: Path) -> Path:
    """The shared bundle: busybox rootfs + runc's spec edited as benches.compare does."""
    from benches.compare import make_bundle
    from benches.rootfs import build_rootfs

    rootfs = build_rootfs(work / "rootfs")
    bundle = work / "bundle"
    generator = next((p for p in (find_runtime(n) for n in ("runc", *RUNTIMES)) if p), None)
    if generator is None:
        raise SystemExit("benches.runtime: no runtime installed to write a spec")
    make_bundle(generator, bundle, rootfs)
    path = bundle / "config.json"
    config = json.loads(path.read_text())
    config["process"].get("capabilities", {}).pop("ambient", None)
    config["linux"]["cgroupsPath"] = "/" + cgroup_name()
    path.write_text(json.dumps(config, indent=2))
    return bundle


def probe(rt: Runtime, bundle: Path, env: dict[str, str]) -> None:
    """One untimed run of each row's command: sets ``skipped``/``errors``."""
    from benches.lifecycle_engines import BenchError, run

    try:
        run(["sh", "-c", rt.csd_line(bundle)], env, timeout=60)
    except BenchError as err:
        rt.skipped = str(err)
        return
    try:
        run(rt.run_argv(bundle), env, timeout=60)
    except BenchError as err:
        rt.errors["run"] = str(err)


def cleanup(rt: Runtime, env: dict[str, str]) -> None:
    """Remove this runtime's container whatever state a failure left it in."""
    if rt.path is None or not rt.state.is_dir():
        return
    from benches.lifecycle_engines import BenchError, run

    try:
        run([*rt.base(), "delete", "--force", rt.cid], env, timeout=30)
    except BenchError:
        pass


def remove_cgroups(name: str) -> None:
    """Remove the benchmark's own (empty) group wherever a failed run left it."""
    root = Path("/sys/fs/cgroup")
    for group in [*root.glob(name), *root.glob(f"*/{name}")]:
        try:
            group.rmdir()
        except OSError:
            pass


# --------------------------------------------------------------------------- hyperfine


def hyperfine_argv(
    hyperfine: str,
    method: str,
    phase: str,
    rts: Sequence[Runtime],
    bundle: Path,
    runs: int,
    warmup: int,
    export: Path,
) -> list[str]:
    argv = [hyperfine, "--runs", str(runs), "--warmup", str(warmup), "--style", "basic"]
    argv += ["--export-json", str(export)]
    if method == "run":
        argv.append("-N")
    if phase == "cold":
        argv += ["--prepare", COLD_PREPARE]
    for rt in rts:
        cmd = rt.csd_line(bundle) if method == "csd" else shlex.join(rt.run_argv(bundle))
        argv += ["--command-name", rt.name, cmd]
    return argv


def measure(
    hyperfine: str,
    method: str,
    phase: str,
    rts: Sequence[Runtime],
    bundle: Path,
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str],
) -> str | None:
    """One hyperfine invocation for every runtime in ``rts``; None or the error."""
    import subprocess

    export = work / f"hyperfine-{method}-{phase}.json"
    argv = hyperfine_argv(hyperfine, method, phase, rts, bundle, args.runs, args.warmup, export)
    print(f"benches.runtime: {method} {phase}: {shlex.join(argv)}", file=sys.stderr)
    res = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=subprocess.PIPE
    )
    sys.stderr.write(res.stderr.decode(errors="replace"))
    if res.returncode != 0:
        tail = res.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return f"hyperfine exited {res.returncode}" + (f": {tail[0]}" if tail else "")
    try:
        results = parse_hyperfine(json.loads(export.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable hyperfine output: {err}"
    if len(results) != len(rts):
        return f"hyperfine gave {len(results)} results for {len(rts)} commands"
    for rt, stats in zip(rts, results):
        rt.stats[(method, phase)] = stats
    if args.json_dir:
        Path(args.json_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy(export, Path(args.json_dir) / export.name)
    return None


# --------------------------------------------------------------------------- report


def render(
    rts: Sequence[Runtime], args: argparse.Namespace, notes: list[str], workfs: str, tools: str
) -> str:
    from benches.compare import cgroup_mode, cpu_model

    ref = next((r for r in rts if r.name == REFERENCE), None)
    lines = [
        SECTION_BEGIN,
        "## OCI runtime CLI: create+start+delete of `/bin/true` (`python3 -m benches.runtime`)",
        "",
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- kernel: {platform.release()}",
        f"- cgroup mode: {cgroup_mode()}",
        f"- CPU: {cpu_model()} ({os.cpu_count()} cores)",
        f"- tools: {tools}",
        f"- bundle and state on: {workfs}",
        f"- hyperfine: {args.runs} runs after {args.warmup} warm-up runs per runtime and row; "
        f"cold: `--prepare '{COLD_PREPARE}'` before every run, after {args.idle:g} s idle; "
        "warm: back to back",
        "- create+start+wait+delete: `RT --root R create --bundle B --pid-file P ID && RT "
        "--root R start ID && { pidwait -F P; RT --root R delete ID; }` (hyperfine subtracts "
        "an empty `sh -c`); run: `RT --root R run --bundle B ID` with `hyperfine -N`",
        "- bundle: busybox rootfs (read-only), `runc spec` with `/bin/true`, no terminal, "
        "pid/ipc/uts/mount/network namespaces, `cgroupsPath` `/pyctr-bench-rt-PID`, ambient "
        "capabilities dropped",
        "- vs crun: median / crun's median in the same hyperfine invocation",
        "",
        "| what | runtime | cold median ms | cold min-max | cold mean ± sd | cold vs crun | "
        "warm median ms | warm min-max | warm mean ± sd | warm vs crun |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, label in METHODS.items():
        for rt in rts:
            why = rt.skipped or rt.errors.get(method)
            if why is not None:
                lines.append(f"| {label} | `{rt.name}` | skipped: {why} | | | | | | | |")
                continue
            cells = [f"| {label} | `{rt.name}`"]
            for phase in PHASES:
                mine = rt.stats.get((method, phase))
                theirs = ref.stats.get((method, phase)) if ref else None
                cells += fmt_stats(mine, theirs)
            lines.append(" | ".join(cells) + " |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    lines.append(SECTION_END)
    return "\n".join(lines)


def missing_numbers(rts: Sequence[Runtime]) -> list[str]:
    """Rows that were not skipped but lack a number, and our rows that were skipped."""
    out = []
    for rt in rts:
        if rt.skipped is not None:
            if rt.name == "pyctr-fast-runtime":
                out.append(f"{rt.name} (skipped: {rt.skipped})")
            continue
        for method in METHODS:
            if method in rt.errors:
                if rt.name == "pyctr-fast-runtime":
                    out.append(f"{rt.name} {method} (skipped: {rt.errors[method]})")
                continue
            out += [f"{rt.name} {method} {p}" for p in PHASES if (method, p) not in rt.stats]
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benches.runtime", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="10 runs; check every row")
    parser.add_argument("--runs", type=int, default=None, help="timed runs (default 100)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up runs (default 10)")
    parser.add_argument("--idle", type=float, default=None, help="idle s before cold (30)")
    parser.add_argument("--out", default=None, help=f"markdown (default {DEFAULT_OUT})")
    parser.add_argument("--json-dir", default=None, help="keep hyperfine's JSON exports here")
    parser.add_argument("--no-cgroup-fix", action="store_true", help="skip crun if it refuses")
    args = parser.parse_args(argv)
    args.runs = args.runs if args.runs is not None else (10 if args.quick else 100)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 10)
    args.idle = args.idle if args.idle is not None else (0.0 if args.quick else 30.0)
    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    if os.geteuid() != 0:
        print("benches.runtime: containers need root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))

    from benches.compare import HYBRID_MARKER, HugetlbFix, _first_line, _workdir_base

    base, workfs = _workdir_base()
    work = Path(tempfile.mkdtemp(prefix="pyctr-bench-rt-", dir=base))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    notes: list[str] = []
    fix = HugetlbFix()
    rts = [
        Runtime(n, find_runtime(n), work / f"state-{n}", work / f"{n}.pid", f"rtb-{os.getpid()}")
        for n in RUNTIMES
    ]
    hyperfine, pidwait = shutil.which("hyperfine"), shutil.which("pidwait")
    tools = ", ".join(
        [_first_line([hyperfine, "--version"]) if hyperfine else "hyperfine: not installed"]
        + [_first_line([rt.path, "--version"]) for rt in rts if rt.path]
    )
    try:
        bundle = prepare_bundle(work)
        lacking = None if hyperfine else "hyperfine (apt-get install hyperfine)"
        lacking = lacking or (None if pidwait else "pidwait (procps)")
        for rt in rts:
            rt.state.mkdir()
            if rt.path is None:
                rt.skipped = f"{rt.name} not installed"
                continue
            rt.version = _first_line([rt.path, "--version"])
            if lacking:
                continue
            probe(rt, bundle, env)
            if rt.name == "crun" and rt.skipped and HYBRID_MARKER in rt.skipped:
                if not args.no_cgroup_fix and fix.apply() is None:
                    notes.append(
                        "crun 1.8 refused the hybrid cgroup layout: this run mounted a cgroup "
                        "v1 hugetlb hierarchy at /sys/fs/cgroup/hugetlb, unmounted at the end."
                    )
                    rt.skipped = None
                    probe(rt, bundle, env)
        if lacking or hyperfine is None:
            note = f"{lacking} is not installed: no row was measured"
            for rt in rts:
                rt.skipped = rt.skipped or note
            notes.append(note)
            print(f"benches.runtime: {note}", file=sys.stderr)
        else:
            if args.idle > 0:
                print(f"benches.runtime: {args.idle:g} s idle before cold", file=sys.stderr)
                time.sleep(args.idle)
            started, load = time.monotonic(), os.getloadavg()[0]
            for phase in PHASES:
                for method in METHODS:
                    active = [r for r in rts if r.skipped is None and method not in r.errors]
                    if not active:
                        continue
                    err = measure(hyperfine, method, phase, active, bundle, args, work, env)
                    if err:
                        for rt in active:
                            rt.errors[method] = f"{phase}: {err}"
            notes.append(
                f"measured in {time.monotonic() - started:.0f} s; 1-min load average "
                f"{load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
            )
        report = render(rts, args, notes, workfs, tools)
    finally:
        for rt in rts:
            cleanup(rt, env)
        remove_cgroups(cgroup_name())
        fix.undo()
        shutil.rmtree(work, ignore_errors=True)

    print(report)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(splice(path.read_text() if path.exists() else "", report))
        print(f"benches.runtime: written to {out}", file=sys.stderr)
    missing = missing_numbers(rts) if hyperfine and pidwait else []
    if args.quick and missing:
        print("benches.runtime: rows without a number: " + "; ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
