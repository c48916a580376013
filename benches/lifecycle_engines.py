"""The engines benches/lifecycle.py drives, and its processes and workspace.

* :class:`Ours` (the ``pyctr-fast`` CLI on one data root), :class:`Podman`
  (podman with throwaway ``--root``/``--runroot``/``--tmpdir``; conmon is its
  supervisor) and :class:`Crun` (one idle container from a bundle, for
  ``crun exec``);
* :func:`spawn_timed` (posix_spawn to waitpid, output to files) and :func:`run`;
* :class:`Workspace`: a directory with a tmpfs mounted on it, and the clean-up
  that ends what was left there (processes by pidfd, mounts).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benches.compare import HYBRID_MARKER, HugetlbFix, _first_line, make_bundle

SLEEP = ["sleep", "100000"]
PODMAN_ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
TMPFS_SIZE = "4g"
CMD_TIMEOUT = 120


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------- processes


def _tail(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return " | ".join(lines[-2:]) if lines else ""


def spawn_timed(argv: list[str], env: dict[str, str], scratch: Path) -> tuple[float, str]:
    """(ms from spawn to reap, stdout) of ``argv``; stdout and stderr go to files
    (a detached child holding a pipe open cannot stall the clock)."""
    out, err = scratch / "out", scratch / "err"
    wr = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(out), wr, 0o600),
        (os.POSIX_SPAWN_OPEN, 2, str(err), wr, 0o600),
    ]
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:  # e.g. SystemExit from the SIGTERM handler: end the child first
        _kill(pid)
        os.waitpid(pid, 0)
        raise
    elapsed = (time.perf_counter_ns() - start) / 1e6
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise BenchError(f"`{shlex.join(argv[-6:])}` exited {code}: {_tail(err.read_text())}")
    return elapsed, out.read_text()


def run(argv: list[str], env: dict[str, str], timeout: float = CMD_TIMEOUT) -> str:
    """Run untimed; stdout, or BenchError with the end of stderr.  Output goes
    through files: a container started by ``argv`` may keep a pipe open."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            res = subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BenchError(f"`{shlex.join(argv[-6:])}`: {exc}") from None
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if res.returncode != 0:
        raise BenchError(f"`{shlex.join(argv[-6:])}` exited {res.returncode}: {_tail(stderr)}")
    return stdout


def smaps_rollup(pid: int) -> tuple[int, int]:
    """(Rss, Pss) in KiB of ``pid``."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key] = int(rest.split()[0])
    return values["Rss"], values["Pss"]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _kill(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _pids_named(comm: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/comm").read_text().strip() == comm:
                found.append(int(entry))
        except OSError:
            continue
    return found


def mountpoints_under(path: str) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp == path or mp.startswith(path.rstrip("/") + "/"):
            found.append(mp)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def processes_under(base: str) -> list[int]:
    """Live processes whose executable or root is under ``base``, or that live in
    another mount namespace whose mount table mentions ``base``."""
    found = []
    prefix = base.rstrip("/") + "/"
    mine = os.readlink("/proc/self/ns/mnt")
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid() or not alive(int(entry)):
            continue
        try:
            links = [os.readlink(f"/proc/{entry}/{link}") for link in ("exe", "root")]
            ns = os.readlink(f"/proc/{entry}/ns/mnt")
            ours = any((t + "/").startswith(prefix) for t in links)
            if not ours and ns != mine:
                ours = prefix in Path(f"/proc/{entry}/mountinfo").read_text()
        except OSError:
            continue
        if ours:
            found.append(int(entry))
    return found


# --------------------------------------------------------------------------- engines


@dataclass
class Engine:
    """One container engine: start an idle container, find its supervisor, remove."""

    name: str
    env: dict[str, str]
    scratch: Path
    version: str = ""
    skipped: str | None = None
    made: list[str] = field(default_factory=list)

    def run_argv(self, name: str) -> list[str]:
        raise NotImplementedError

    def exec_argv(self, name: str) -> list[str]:
        raise NotImplementedError

    def supervisor(self, name: str) -> int:
        raise NotImplementedError

    def remove(self, names: list[str]) -> None:
        raise NotImplementedError

    def discard(self, names: list[str]) -> list[str]:
        """Remove each container that may exist; the errors other than "no such"."""
        errors = []
        for name in names:
            try:
                self.remove([name])
            except BenchError as err:
                if "no such container" not in str(err).lower():
                    errors.append(str(err))
            if name in self.made:
                self.made.remove(name)
        return errors

    def start(self, name: str, argv: list[str] | None = None) -> float:
        self.made.append(name)
        ms, _ = spawn_timed(argv or self.run_argv(name), self.env, self.scratch)
        return ms


class Ours(Engine):
    def __init__(self, cli: str, root: Path, rootfs: Path, env: dict[str, str], scratch: Path):
        super().__init__("pyctr-fast", env, scratch, _first_line([cli, "--version"]))
        self.cli, self.root, self.rootfs = cli, root, rootfs
        self.ids: dict[str, str] = {}

    def argv(self, *args: str) -> list[str]:
        return [self.cli, "--root", str(self.root), *args]

    def run_argv(self, name: str, image: str | None = None) -> list[str]:
        where = [image] if image else ["--rootfs", str(self.rootfs)]
        return self.argv("run", "-d", "--network", "none", "--name", name, *where, *SLEEP)

    def exec_argv(self, name: str) -> list[str]:
        return self.argv("exec", name, "true")

    def start(self, name: str, argv: list[str] | None = None) -> float:
        self.made.append(name)
        ms, out = spawn_timed(argv or self.run_argv(name), self.env, self.scratch)
        cid = out.strip().splitlines()[-1] if out.strip() else ""
        if len(cid) != 64:
            raise BenchError(f"run -d printed {out!r}, not a container id")
        self.ids[name] = cid
        return ms

    def state(self, name: str) -> dict[str, object]:
        path = self.root / "containers" / self.ids[name] / "state.json"
        data: dict[str, object] = json.loads(path.read_text())
        return data

    def supervisor(self, name: str) -> int:
        state = self.state(name)
        pid = state.get("SupervisorPid")
        if state.get("Status") != "running" or not isinstance(pid, int) or not alive(pid):
            raise BenchError(f"{name}: no running supervisor in state.json: {state}")
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        if argv0 != b"pyctr-supervise":
            raise BenchError(f"{name}: SupervisorPid {pid} is {argv0!r}, not pyctr-supervise")
        return pid

    def container_pid(self, name: str) -> int:
        pid = self.state(name).get("Pid")
        if not isinstance(pid, int):
            raise BenchError(f"{name}: no Pid in state.json")
        return pid

    def remove(self, names: list[str]) -> None:
        for i in range(0, len(names), 50):
            run(self.argv("rm", "-f", *names[i : i + 50]), self.env)
        for name in names:
            self.ids.pop(name, None)
            if name in self.made:
                self.made.remove(name)


class Podman(Engine):
    def __init__(self, exe: str, work: Path, rootfs: Path, env: dict[str, str], scratch: Path):
        super().__init__("podman", env, scratch, _first_line([exe, "--version"]))
        self.base = [
            exe,
            "--root",
            str(work / "storage"),
            "--runroot",
            str(work / "run"),
            "--tmpdir",
            str(work / "tmp"),
            "--events-backend",
            "none",
            "--cgroup-manager",
            "cgroupfs",
        ]
        self.rootfs = rootfs
        self.conmons: list[int] = []
        conmon = shutil.which("conmon")
        self.version += f"; {_first_line([conmon, '--version'])}" if conmon else ""

    def run_argv(self, name: str) -> list[str]:
        return [
            *self.base,
            "run",
            "-d",
            "--network",
            "none",
            *PODMAN_ULIMITS,
            "--name",
            name,
            "--rootfs",
            str(self.rootfs),
            *SLEEP,
        ]

    def exec_argv(self, name: str) -> list[str]:
        return [*self.base, "exec", name, "true"]

    def supervisor(self, name: str) -> int:
        out = run([*self.base, "inspect", "--format", "{{.State.ConmonPid}}", name], self.env)
        pid = int(out.strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        if comm != "conmon":
            raise BenchError(f"{name}: ConmonPid {pid} is {comm!r}, not conmon")
        self.conmons.append(pid)
        return pid

    def remove(self, names: list[str]) -> None:
        for i in range(0, len(names), 50):
            run([*self.base, "rm", "-f", "-t", "0", *names[i : i + 50]], self.env)
        for name in names:
            if name in self.made:
                self.made.remove(name)

    def close(self) -> list[str]:
        """Remove every container of this podman root; wait for its conmons."""
        try:
            run([*self.base, "rm", "-a", "-f", "-t", "0"], self.env)
        except BenchError as err:
            return [f"podman rm -a -f failed: {err}"]
        # conmon runs podman's exit command, then exits on its own.
        mine = [p for p in _pids_named("conmon") if self.base[2].encode() in _cmdline(p)]
        left = _wait_gone(self.conmons + mine, 20)
        for pid in left:
            _kill(pid)
        return (
            [f"conmon processes still running 20 s after podman rm (killed): {left}"]
            if left
            else []
        )


class Crun:
    """crun running one idle container from a bundle, for ``crun exec``."""

    def __init__(self, exe: str, work: Path, rootfs: Path, env: dict[str, str]) -> None:
        self.exe, self.env = exe, env
        self.state = work / "crun-state"
        self.bundle = work / "crun-bundle"
        make_bundle(exe, self.bundle, rootfs)
        config = json.loads((self.bundle / "config.json").read_text())
        config["process"]["args"] = SLEEP
        (self.bundle / "config.json").write_text(json.dumps(config, indent=2))
        self.id = f"bench-exec-{os.getpid()}"
        self.started = False

    def start(self) -> None:
        argv = [self.exe, "--root", str(self.state), "run", "--detach", "--bundle"]
        self.started = True  # close() deletes whatever a failed start left
        run([*argv, str(self.bundle), self.id], self.env)

    def exec_argv(self) -> list[str]:
        return [self.exe, "--root", str(self.state), "exec", self.id, "/bin/true"]

    def close(self) -> None:
        if self.started:
            for verb in (["kill", self.id, "KILL"], ["delete", "-f", self.id]):
                try:
                    run([self.exe, "--root", str(self.state), *verb], self.env)
                except BenchError:
                    pass
            self.started = False


# --------------------------------------------------------------------------- workspace


class Workspace:
    """A fresh directory with a tmpfs mounted on it; everything is made inside."""

    def __init__(self, prefix: str = "pyctr-bench-lifecycle-") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.mounted = False

    def mount(self) -> str:
        argv = ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700"]
        subprocess.run([*argv, "pyctr-bench", str(self.dir)], check=True, capture_output=True)
        self.mounted = True
        return f"a tmpfs (size={TMPFS_SIZE}) mounted by the benchmark on {self.dir}"

    def close(self, notes: list[str]) -> None:
        leaked = processes_under(str(self.dir))
        if leaked:
            notes.append(f"processes left under the workspace (killed): {leaked}")
            for pid in leaked:
                _kill(pid)
            _wait_gone(leaked, 10)
        for mp in mountpoints_under(str(self.dir)):
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)
        self.mounted = False
        shutil.rmtree(self.dir, ignore_errors=True)


def cgroup_parent_dirs(parent: str) -> list[Path]:
    """``parent`` in every mounted cgroup hierarchy (where it exists)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] in (["cgroup"], ["cgroup2"]):
            d = Path(left.split()[4].replace("\\040", " ")) / parent
            if d.is_dir():
                found.append(d)
    return found


def remove_cgroup_parent(parent: str) -> list[str]:
    """Remove the benchmark's own cgroup parent (pyctr-fast's containers were
    put under it); the container groups left in it, which are removed too."""
    left = [str(c) for d in cgroup_parent_dirs(parent) for c in d.iterdir() if c.is_dir()]
    for path in [*left, *map(str, cgroup_parent_dirs(parent))]:
        for _ in range(100):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
    return left


def start_crun(crun: Crun, fix: HugetlbFix, no_fix: bool, notes: list[str]) -> str | None:
    """Start crun's idle container (with the hugetlb fix if crun needs it);
    None, or why crun is skipped."""
    try:
        crun.start()
        return None
    except BenchError as err:
        if HYBRID_MARKER not in str(err) or no_fix:
            return str(err)
        crun.close()
        fix_err = fix.apply()
        if fix_err:
            return f"{err}; mounting a v1 hugetlb hierarchy failed: {fix_err}"
    notes.append(
        "crun 1.8 refused the hybrid cgroup layout (a controller on the v2 hierarchy): this "
        "run mounted a cgroup v1 hugetlb hierarchy at /sys/fs/cgroup/hugetlb, unmounted at the end."
    )
    try:
        crun.start()
    except BenchError as err:
        return str(err)
    return None


def tar_dir(src: Path, dest: Path) -> Path:
    subprocess.run(["tar", "-C", str(src), "-cf", str(dest), "."], check=True, capture_output=True)
    return dest
