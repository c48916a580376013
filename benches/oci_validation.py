"""Run the OCI runtime-tools validation suite against OCI runtimes.

    python -m benches.oci_validation [--suite DIR] [--runtime NAME_OR_PATH ...]
                                     [--timeout S] [--out FILE]

The suite is built outside this repository (docs/oci-validation.md, "How to build
the suite"): DIR holds ``bin/runtimetest`` (static), ``bin/validation/<program>``
and ``rootfs-<arch>.tar.gz``.  DIR defaults to $PYCTR_OCI_SUITE, else
/opt/oci-runtime-tools.  When the suite is not built the command says so and exits
2 (CI skips it).

Every program runs once per runtime, in a fresh temporary directory that holds the
rootfs tarball and runtimetest (the programs find both in their working directory)
and is also the TMPDIR for the bundles.  RUNTIME points at a small wrapper that
runs the real runtime with a private ``--root`` in that directory, so leftover
containers can be listed and deleted by id afterwards (``delete -f ID``).  Cgroups
that appear during a program under the suite's own paths (``cgrouptest``,
``testdir``) or named after one of its containers are removed afterwards (only
empty ones, deepest first); nothing else is touched.

A program passes when it exits 0 within the timeout and every TAP test line is
``ok`` (skips count as ok).  A crash, a timeout or a non-zero exit is a failure.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SUITE = "/opt/oci-runtime-tools"
DEFAULT_RUNTIMES = ("crun", "runc", "pyctr-fast-runtime")
CGROUP_ROOT = Path("/sys/fs/cgroup")
SUITE_CGROUP_NAMES = frozenset({"cgrouptest", "testdir"})
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TAP_LINE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
PLAN_LINE = re.compile(r"^1\.\.(\d+)")


@dataclass
class TapResult:
    """What one program printed and how it ended."""

    passed: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    planned: int | None = None
    exit_code: int | None = None
    timed_out: bool = False
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        # The *_fail programs print nothing and exit 0 when the runtime rightly
        # refuses the config: no TAP line with exit 0 is a pass.
        return not (self.timed_out or self.exit_code != 0 or self.failed)

    def reason(self) -> str:
        if self.timed_out:
            return "timeout"
        parts = list(self.failed)
        if self.exit_code not in (0, None) and not parts:
            tail = self.stderr_tail.strip().splitlines()[-1:] if self.stderr_tail.strip() else []
            parts.append(f"exit {self.exit_code}" + (f": {tail[0][:160]}" if tail else ""))
        elif self.exit_code not in (0, None):
            parts.append(f"exit {self.exit_code}")
        return "; ".join(parts)


def parse_tap(text: str) -> TapResult:
    """Count ok / not ok / skip lines (TODO lines do not count as failures)."""
    res = TapResult()
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.startswith((" ", "\t")):
            continue  # YAML diagnostics
        plan = PLAN_LINE.match(line)
        if plan:
            res.planned = int(plan.group(1))
            continue
        m = TAP_LINE.match(line)
        if not m:
            continue
        status, desc = m.group(1), m.group(3).strip()
        directive = desc.upper()
        if "# SKIP" in directive or directive.startswith("# SKIP"):
            res.skipped += 1
        elif "# TODO" in directive:
            res.passed += 1
        elif status == "ok":
            res.passed += 1
        else:
            res.failed.append(desc or f"test {m.group(2)}")
    return res


# --------------------------------------------------------------------------- discovery


def suite_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("PYCTR_OCI_SUITE") or DEFAULT_SUITE)


def rootfs_name() -> str:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return f"rootfs-{arch}.tar.gz"


def suite_problem(suite: Path) -> str | None:
    """Why the suite cannot run, or None when it is built."""
    if not (suite / "bin" / "runtimetest").is_file():
        return f"{suite}/bin/runtimetest is missing"
    if not (suite / rootfs_name()).is_file():
        return f"{suite}/{rootfs_name()} is missing"
    if not programs(suite):
        return f"no programs in {suite}/bin/validation"
    return None


def programs(suite: Path) -> list[Path]:
    d = suite / "bin" / "validation"
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and os.access(p, os.X_OK))


def resolve_runtime(name: str) -> str | None:
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name)


# --------------------------------------------------------------------------- cleanup


def cgroup_dirs() -> set[Path]:
    """Every cgroup directory up to depth 5 in every mounted hierarchy."""
    found: set[Path] = set()
    if not CGROUP_ROOT.is_dir():
        return found
    for hier in CGROUP_ROOT.iterdir():
        if not hier.is_dir() or hier.is_symlink():
            continue
        stack: list[tuple[Path, int]] = [(hier, 0)]
        while stack:
            cur, depth = stack.pop()
            if depth >= 5:
                continue
            try:
                children = [c for c in cur.iterdir() if c.is_dir() and not c.is_symlink()]
            except OSError:
                continue
            for child in children:
                found.add(child)
                stack.append((child, depth + 1))
    return found


def is_suite_cgroup(path: Path, ids: set[str]) -> bool:
    parts = path.relative_to(CGROUP_ROOT).parts[1:]
    return any(p in SUITE_CGROUP_NAMES or p in ids or UUID_RE.match(p) for p in parts)


def remove_cgroups(before: set[Path], ids: set[str]) -> list[str]:
    """Remove (empty) cgroups the program left under the suite's own names."""
    left: list[str] = []
    new = [p for p in cgroup_dirs() - before if is_suite_cgroup(p, ids)]
    for path in sorted(new, key=lambda p: len(p.parts), reverse=True):
        for _ in range(10):
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
        else:
            left.append(str(path))
    return left


def container_ids(state_root: Path) -> set[str]:
    if not state_root.is_dir():
        return set()
    return {p.name for p in state_root.iterdir() if p.is_dir()}


def delete_leftovers(runtime: str, state_root: Path) -> list[str]:
    ids = sorted(container_ids(state_root))
    for cid in ids:
        subprocess.run(
            [runtime, "--root", str(state_root), "delete", "-f", cid],
            capture_output=True,
            timeout=30,
            check=False,
        )
    return ids


def unmount_under(top: Path) -> None:
    """Lazily unmount anything still mounted under our temp dir (deepest first)."""
    prefix = str(top).rstrip("/") + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            mp = fields[4].replace("\\040", " ")
            if mp.startswith(prefix):
                points.append(mp)
    for mp in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True, check=False)


# --------------------------------------------------------------------------- running


def write_wrapper(path: Path, runtime: str, state_root: Path) -> None:
    path.write_text(f'#!/bin/sh\nexec {runtime} --root {state_root} "$@"\n')
    path.chmod(0o755)


def run_program(
    suite: Path, program: Path, runtime: str, timeout: float
) -> tuple[TapResult, list[str]]:
    """Run one program against one runtime; return its result and cleanup notes."""
    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix=f"oci-{program.name}-"))
    state_root = work / "state"
    state_root.mkdir()
    os.symlink(suite / rootfs_name(), work / rootfs_name())
    shutil.copy2(suite / "bin" / "runtimetest", work / "runtimetest")
    wrapper = work / "runtime"
    write_wrapper(wrapper, runtime, state_root)
    env = dict(os.environ, RUNTIME=str(wrapper), TMPDIR=str(work))
    before = cgroup_dirs()
    proc = subprocess.Popen(
        [str(program)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)  # the program's own session, started above
        out, err = proc.communicate()
    res = parse_tap(out)
    res.exit_code = proc.returncode
    res.timed_out = timed_out
    res.stderr_tail = err[-2000:]
    ids = container_ids(state_root)
    left = delete_leftovers(runtime, state_root)
    if left:
        notes.append(f"deleted leftover containers {', '.join(left)}")
    stuck = remove_cgroups(before, ids)
    if stuck:
        notes.append(f"cgroups not removable: {', '.join(stuck)}")
    unmount_under(work)
    shutil.rmtree(work, ignore_errors=True)
    return res, notes


# --------------------------------------------------------------------------- report


def md_cell(res: TapResult) -> str:
    if res.ok:
        return "pass"
    return "FAIL: " + res.reason().replace("|", "\\|").replace("\n", " ")


def report(
    suite: Path,
    names: list[str],
    runtimes: dict[str, str],
    results: dict[str, dict[str, TapResult]],
    skipped: list[str],
) -> str:
    cols = list(runtimes)
    lines = [
        "# OCI runtime-tools validation results",
        "",
        f"Suite: `{suite}` ({len(names)} programs).  Runtimes: "
        + ", ".join(f"{n} (`{p}`)" for n, p in runtimes.items())
        + ".",
    ]
    if skipped:
        lines.append(f"Not on PATH, skipped: {', '.join(skipped)}.")
    lines += ["", "| program | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name in names:
        cells = [md_cell(results[rt][name]) for rt in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for rt in cols:
        n = sum(1 for name in names if results[rt][name].ok)
        lines.append(f"- {rt}: programs passing: {n} of {len(names)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benches.oci_validation", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--suite", help=f"built suite (default $PYCTR_OCI_SUITE or {DEFAULT_SUITE})")
    ap.add_argument("--runtime", action="append", help="runtime name or path (repeatable)")
    ap.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per program (default 120)"
    )
    ap.add_argument("--out", help="write the markdown report here (default: stdout only)")
    ap.add_argument("--program", action="append", help="run only these programs (repeatable)")
    args = ap.parse_args(argv)

    suite = suite_dir(args.suite)
    problem = suite_problem(suite)
    if problem:
        print(
            f"oci_validation: the suite is not built ({problem}); see docs/oci-validation.md",
            file=sys.stderr,
        )
        return 2
    progs = programs(suite)
    if args.program:
        wanted = set(args.program)
        progs = [p for p in progs if p.name in wanted]
        if not progs:
            print(f"oci_validation: no such program: {', '.join(sorted(wanted))}", file=sys.stderr)
            return 2
    runtimes: dict[str, str] = {}
    skipped: list[str] = []
    for name in args.runtime or list(DEFAULT_RUNTIMES):
        path = resolve_runtime(name)
        if path is None:
            if args.runtime:
                print(f"oci_validation: runtime not found: {name}", file=sys.stderr)
                return 2
            skipped.append(name)
        else:
            runtimes[Path(name).name] = path
    if not runtimes:
        print("oci_validation: no runtime found", file=sys.stderr)
        return 2

    results: dict[str, dict[str, TapResult]] = {rt: {} for rt in runtimes}
    for rt, path in runtimes.items():
        for prog in progs:
            t0 = time.monotonic()
            res, notes = run_program(suite, prog, path, args.timeout)
            results[rt][prog.name] = res
            status = "pass" if res.ok else "FAIL " + res.reason()[:200]
            extra = f" [{'; '.join(notes)}]" if notes else ""
            print(
                f"{rt:20} {prog.name:40} {time.monotonic() - t0:5.1f}s {status}{extra}",
                file=sys.stderr,
            )
    text = report(suite, [p.name for p in progs], runtimes, results, skipped)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
