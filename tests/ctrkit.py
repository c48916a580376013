"""Helpers for pyctr-fast's integration tests (imported by conftest.py and the tests).

Nothing here is a test.  The pieces:

* :func:`build_busybox_rootfs` makes the test image from Debian's busybox-static;
* :class:`Engine` runs the ``pyctr-fast`` CLI (or the in-process API in a child
  Python) against one data root and one rootfs, with timeouts;
* :class:`LeakScanner` finds what a test may have left on the host: mounts,
  container processes, per-container state;
* parsers for /proc/self/mountinfo and /proc/self/status text.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pexpect

T = TypeVar("T")

# --------------------------------------------------------------------------- constants

#: Docker's default capability set (CapEff/CapPrm/CapBnd of a root container).
DEFAULT_CAPS = 0x00000000A80425FB
#: Docker's default PATH.
DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Set in the CLI's environment by every test; must never reach a container.
HOST_ONLY_VAR = "PYCTR_TEST_HOST_ONLY"
#: Default per-command timeout (seconds) for one CLI invocation.
CLI_TIMEOUT = 30.0
#: Where the engine keeps state when neither --root nor PYCTR_ROOT is given.
DEFAULT_DATA_ROOT = Path("/var/lib/pyctr-fast")

CAP_NUMBERS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "DAC_READ_SEARCH": 2,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SETPCAP": 8,
    "NET_BIND_SERVICE": 10,
    "NET_RAW": 13,
    "SYS_CHROOT": 18,
    "SYS_PTRACE": 19,
    "SYS_ADMIN": 21,
    "MKNOD": 27,
    "AUDIT_WRITE": 29,
    "SETFCAP": 31,
}

#: Docker's read-only paths (moby oci/defaults.go).
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
#: Docker's masked paths: a file is covered by /dev/null, a directory by an empty ro tmpfs.
MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
]  # fmt: skip


def present_on_host(paths: list[str]) -> list[str]:
    """Masking only applies to what the kernel has: the paths this host has."""
    return [p for p in paths if os.path.exists(p)]


PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice Test:/home/alice:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""

GROUP = """\
root:x:0:
daemon:x:1:
wheel:x:10:root
audio:x:29:alice
staff:x:50:alice,daemon
alice:x:1000:
nogroup:x:65534:
"""

#: What the image ships in /etc/hosts and /etc/resolv.conf: the engine must
#: provide its own files instead, without changing these.
IMAGE_HOSTS = "203.0.113.9\timage-provided-hosts-entry\n"
IMAGE_RESOLV = "# image-provided-resolv-conf\nnameserver 203.0.113.53\n"

WAIT_FOR_SIGNAL = """\
#!/bin/sh
# wait-for-signal SIG CODE: print "ready", then exit CODE once SIG arrives.
trap "echo got-$1; exit $2" "$1"
echo ready
while :; do sleep 0.05; done
"""

# --------------------------------------------------------------------------- rootfs


def is_static_elf(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a 64-bit little-endian ELF without a PT_INTERP header."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return False
        phoff = struct.unpack_from("<Q", head, 0x20)[0]
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(
        struct.unpack_from("<I", table, i * phentsize)[0] != 3  # PT_INTERP
        for i in range(phnum)
    )


def find_static_busybox() -> str:
    """Debian's busybox-static binary (``apt-get install busybox-static``)."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox")):
        if candidate and os.path.isfile(candidate) and is_static_elf(candidate):
            return candidate
    raise RuntimeError(
        "a static busybox is needed for the test rootfs: apt-get install busybox-static"
    )


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def build_busybox_rootfs(dest: Path) -> Path:
    """Make a minimal image at ``dest``: busybox and its applets in /bin, users
    root/daemon/alice/nobody, empty mount points, a few helper scripts."""
    busybox = find_static_busybox()
    for d in (
        "bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc", "proc", "sys",
        "dev", "root", "home/alice", "mnt", "opt", "run", "srv", "tmp", "var/tmp",
    ):  # fmt: skip
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "var/tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    os.chown(dest / "home/alice", 1000, 1000)
    shutil.copyfile(busybox, dest / "bin/busybox")
    os.chmod(dest / "bin/busybox", 0o755)
    applets = subprocess.run(
        [busybox, "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            os.symlink("busybox", dest / "bin" / applet)
    _write(dest / "etc/passwd", PASSWD)
    _write(dest / "etc/group", GROUP)
    _write(dest / "etc/hosts", IMAGE_HOSTS)
    _write(dest / "etc/resolv.conf", IMAGE_RESOLV)
    # Helper programs.
    _write(dest / "usr/local/bin/hello", '#!/bin/sh\necho "hello $*"\n', 0o755)
    _write(dest / "usr/local/bin/not-executable", "#!/bin/sh\necho ran\n", 0o644)
    _write(dest / "usr/local/bin/bad-interpreter", "#!/no/such/interpreter\necho ran\n", 0o755)
    _write(dest / "usr/local/bin/wait-for-signal", WAIT_FOR_SIGNAL, 0o755)
    return dest


def copy_tree(src: Path, dst: Path) -> Path:
    """A full copy (ownership, modes, symlinks) of an image."""
    subprocess.run(["cp", "-a", "--", str(src), str(dst)], check=True)
    return dst


# --------------------------------------------------------------------------- parsing


def _unescape(field_: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


@dataclass(frozen=True)
class Mount:
    """One line of /proc/PID/mountinfo."""

    mount_id: int
    parent_id: int
    dev: str
    root: str
    mountpoint: str
    options: frozenset[str]
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: frozenset[str]
    line: str

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, _, right = line.partition(" - ")
        lf = left.split()
        rf = right.split()
        mounts.append(
            Mount(
                mount_id=int(lf[0]),
                parent_id=int(lf[1]),
                dev=lf[2],
                root=_unescape(lf[3]),
                mountpoint=_unescape(lf[4]),
                options=frozenset(lf[5].split(",")),
                optional=tuple(lf[6:]),
                fstype=rf[0],
                source=_unescape(rf[1]) if len(rf) > 1 else "",
                super_options=frozenset(rf[2].split(",")) if len(rf) > 2 else frozenset(),
                line=line,
            )
        )
    return mounts


def top_mount(mounts: list[Mount], mountpoint: str) -> Mount | None:
    """The mount visible at ``mountpoint`` (the last one stacked there)."""
    found = [m for m in mounts if m.mountpoint == mountpoint]
    return found[-1] if found else None


def parse_status(text: str) -> dict[str, str]:
    """/proc/PID/status as {field: value}."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_env(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def host_status(pid: int | str = "self") -> dict[str, str]:
    return parse_status(Path(f"/proc/{pid}/status").read_text())


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"$ {shlex.join(self.argv)}\n-> exit {self.returncode} in {self.seconds:.2f}s\n"
            f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"
        )

    __repr__ = __str__

    @property
    def out(self) -> str:
        """stdout without the trailing newline(s)."""
        return self.stdout.rstrip("\n")


def assert_ok(res: Result) -> str:
    """The run exited 0 and printed nothing on stderr; returns stdout."""
    assert res.returncode == 0, res
    assert res.stderr == "", res
    return res.stdout


def assert_engine_error(res: Result, code: int, *needles: str) -> str:
    """Docker-style failure: exit ``code``, nothing on stdout, exactly one line on
    stderr starting ``pyctr-fast: `` and containing every needle."""
    assert res.returncode == code, res
    assert res.stdout == "", res
    assert res.stderr.endswith("\n") and res.stderr.count("\n") == 1, (
        f"expected exactly one line on stderr\n{res}"
    )
    line = res.stderr[:-1]
    assert line.startswith("pyctr-fast: "), res
    for needle in needles:
        assert needle in line, f"{needle!r} not in the error message\n{res}"
    return line


# --------------------------------------------------------------------------- processes


def cli_command() -> list[str]:
    """How to start the CLI: the console script next to this interpreter (not a
    pyenv shim), else the one on PATH, else ``python -m pyctr_fast``."""
    script = Path(sys.executable).parent / "pyctr-fast"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("pyctr-fast")
    if found:
        return [found]
    return [sys.executable, "-m", "pyctr_fast"]


def _proc_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return data.rpartition(")")[2].split()[0] != "Z"


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal one process through a pidfd (never a recycled pid)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        signal.pidfd_send_signal(fd, sig)
    except OSError:
        pass
    finally:
        os.close(fd)


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """Wait until every pid has exited (or is a zombie); return those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if _proc_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if _proc_alive(p)]
    return alive


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


@dataclass
class ProcInfo:
    pid: int
    cmdline: list[str]
    reason: str

    def status(self) -> dict[str, str]:
        return host_status(self.pid)


class LeakScanner:
    """Finds host processes and mounts that belong to the tests' files.

    A process is ours when it lives in a mount namespace other than ours whose
    mount table mentions ``base`` (the session's temporary directory, which
    holds every rootfs and data root), or when its executable or root directory
    is a file or directory under ``base``.  Only such processes are ever killed.
    """

    def __init__(self, base: Path) -> None:
        self.base = str(base)
        # The base itself or a path under it, never a sibling like ".../pytest-12"
        # for base ".../pytest-1" (another session's containers are not ours).
        self._mentions = re.compile(re.escape(self.base) + r"(?=/|\s|$)", re.M)
        self.my_mnt = _readlink("/proc/self/ns/mnt")
        self.me = os.getpid()

    def _is_ours(self, pid: int) -> str | None:
        prefix = self.base + "/"
        for link in ("exe", "root"):
            target = _readlink(f"/proc/{pid}/{link}")
            if target is not None and (target + "/").startswith(prefix):
                return f"{link} -> {target}"
        mnt = _readlink(f"/proc/{pid}/ns/mnt")
        if mnt is not None and mnt != self.my_mnt:
            try:
                table = Path(f"/proc/{pid}/mountinfo").read_text()
            except OSError:
                return None
            if self._mentions.search(_unescape(table)):
                return f"mount namespace {mnt} mounts {self.base}"
        return None

    def processes(self) -> list[ProcInfo]:
        """Live processes identified as ours."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid == self.me or not _proc_alive(pid):
                continue
            reason = self._is_ours(pid)
            if reason is None:
                continue
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            found.append(
                ProcInfo(pid, [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]], reason)
            )
        return found

    def mounts(self, extra: tuple[str, ...] = ()) -> list[Mount]:
        """Mounts in our own namespace under ``base`` or any of ``extra``."""
        roots = (self.base, *extra)
        return [
            m
            for m in parse_mountinfo(Path("/proc/self/mountinfo").read_text())
            if any(m.mountpoint == r or m.mountpoint.startswith(r + "/") for r in roots)
            or any(m.root.startswith(r + "/") or m.root == r for r in roots)
        ]


def unmount_all(mounts: list[Mount]) -> None:
    """Detach the given mounts, deepest first."""
    for m in sorted(mounts, key=lambda m: m.mountpoint.count("/"), reverse=True):
        subprocess.run(["umount", "-l", m.mountpoint], capture_output=True, check=False)


# --------------------------------------------------------------------------- running


class Tracker:
    """Every subprocess a test starts, so that teardown can end stragglers."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []

    def add(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        self.procs.append(proc)
        return proc

    def stragglers(self) -> list[subprocess.Popen[Any]]:
        return [p for p in self.procs if p.poll() is None]

    def end_all(self) -> list[str]:
        """Kill every still-running subprocess (its whole process group)."""
        left = []
        for p in self.stragglers():
            left.append(shlex.join(str(a) for a in p.args))  # type: ignore[union-attr]
            kill_group(p)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    stream.close()
        return left


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a subprocess started with ``start_new_session=True`` and its group."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        kill_pid(proc.pid)


def read_line(stream: IO[bytes], timeout: float) -> bytes:
    """One line from a pipe, or whatever arrived before ``timeout`` (never blocks longer)."""
    fd = stream.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf


@dataclass
class Engine:
    """Runs pyctr-fast for one test: one data root, one (private copy of the) rootfs."""

    cli: list[str]
    root: Path
    rootfs: Path
    scanner: LeakScanner
    tracker: Tracker = field(default_factory=Tracker)

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYCTR_ROOT"}
        env[HOST_ONLY_VAR] = "must-not-reach-the-container"
        env.setdefault("LC_ALL", "C.UTF-8")
        return env

    # -- the CLI

    def argv(
        self,
        *args: str,
        root: Path | bool | None = True,
        prefix: tuple[str, ...] | list[str] = (),
    ) -> list[str]:
        """``[*prefix, pyctr-fast, --root ROOT, *args]`` (``root=False``: no --root)."""
        argv = [*prefix, *self.cli]
        if root is True:
            argv += ["--root", str(self.root)]
        elif root:
            argv += ["--root", str(root)]
        return argv + [str(a) for a in args]

    def run_argv(
        self,
        *cmd: str,
        opts: list[str] | tuple[str, ...] = (),
        rootfs: Path | str | None = None,
        rm: bool = True,
        root: Path | bool | None = True,
        prefix: tuple[str, ...] | list[str] = (),
    ) -> list[str]:
        args = ["run", *(["--rm"] if rm else []), *opts, "--rootfs", str(rootfs or self.rootfs)]
        return self.argv(*args, *cmd, root=root, prefix=prefix)

    def execute(
        self,
        argv: list[str],
        *,
        input: bytes | str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = CLI_TIMEOUT,
        pass_fds: tuple[int, ...] = (),
    ) -> Result:
        """Run ``argv`` to completion with a timeout (the whole process group
        and any container process of ours are killed when it expires)."""
        data = input.encode() if isinstance(input, str) else input
        start = time.monotonic()
        proc = self.tracker.add(
            subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env if env is not None else self.base_env(),
                start_new_session=True,
                pass_fds=pass_fds,
            )
        )
        try:
            out, err = proc.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            for p in self.scanner.processes():
                kill_pid(p.pid)
            try:
                out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                out, err = b"", b"(output lost: pipes still held open)"
            res = Result(argv, -1, out.decode(errors="replace"), err.decode(errors="replace"))
            raise AssertionError(f"timed out after {timeout}s\n{res}") from None
        return Result(
            argv,
            proc.returncode,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            time.monotonic() - start,
        )

    def cli_run(self, *args: str, root: Path | bool | None = True, **kw: Any) -> Result:
        """``pyctr-fast [--root ROOT] ARGS...``"""
        return self.execute(self.argv(*args, root=root), **kw)

    def run(
        self,
        *cmd: str,
        opts: list[str] | tuple[str, ...] = (),
        rootfs: Path | str | None = None,
        rm: bool = True,
        root: Path | bool | None = True,
        prefix: tuple[str, ...] | list[str] = (),
        **kw: Any,
    ) -> Result:
        """``pyctr-fast --root ROOT run --rm OPTS --rootfs ROOTFS CMD...``"""
        argv = self.run_argv(*cmd, opts=opts, rootfs=rootfs, rm=rm, root=root, prefix=prefix)
        return self.execute(argv, **kw)

    def sh(self, script: str, opts: list[str] | tuple[str, ...] = (), **kw: Any) -> Result:
        """Run a shell script as the container command (``/bin/sh -c SCRIPT``)."""
        return self.run("/bin/sh", "-c", script, opts=opts, **kw)

    def popen(
        self,
        *cmd: str,
        opts: list[str] | tuple[str, ...] = (),
        rootfs: Path | str | None = None,
        root: Path | bool | None = True,
        env: dict[str, str] | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """Start ``pyctr-fast run`` in the background (stdout/stderr are pipes)."""
        argv = self.run_argv(*cmd, opts=opts, rootfs=rootfs, root=root)
        return self.tracker.add(
            subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env if env is not None else self.base_env(),
                start_new_session=True,
            )
        )

    # -- the in-process API, in a child interpreter

    def api(self, code: str, *, timeout: float = CLI_TIMEOUT, **kw: Any) -> Result:
        """Run Python ``code`` in a fresh interpreter with ``ROOT`` and ``ROOTFS``
        defined (strings) and ``api`` imported from pyctr_fast."""
        prelude = (
            "import os, sys\n"
            "from pyctr_fast import api\n"
            f"ROOT = {str(self.root)!r}\n"
            f"ROOTFS = {str(self.rootfs)!r}\n"
        )
        return self.execute([sys.executable, "-c", prelude + code], timeout=timeout, **kw)

    # -- finding the container on the host

    def wait_for_container(
        self, marker: str, timeout: float = 10.0, proc: subprocess.Popen[Any] | None = None
    ) -> ProcInfo:
        """The host view of the container process whose command line contains
        ``marker`` (waits for it to appear)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.scanner.processes():
                if any(marker in arg for arg in p.cmdline):
                    return p
            if proc is not None and proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise AssertionError(
                    f"the CLI exited ({proc.returncode}) before a container with "
                    f"{marker!r} appeared\nstdout: {out}\nstderr: {err}"
                )
            time.sleep(0.01)
        raise AssertionError(f"no container process with {marker!r} in its command line")

    def container_dirs(self, root: Path | None = None) -> list[str]:
        d = (root or self.root) / "containers"
        return sorted(os.listdir(d)) if d.is_dir() else []

    def wait_for_container_dir(self, root: Path | None = None, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.container_dirs(root)
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"no container state appeared under {(root or self.root)}/containers")


def finish(proc: subprocess.Popen[bytes], timeout: float = CLI_TIMEOUT) -> Result:
    """Wait for a :meth:`Engine.popen` process and collect its output."""
    start = time.monotonic()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate(timeout=5)
        res = Result(
            list(map(str, proc.args)),
            -1,
            out.decode(errors="replace"),  # type: ignore[arg-type]
            err.decode(errors="replace"),
        )
        raise AssertionError(f"timed out after {timeout}s\n{res}") from None
    return Result(
        [str(a) for a in proc.args],  # type: ignore[union-attr]
        proc.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        time.monotonic() - start,
    )


# --------------------------------------------------------------------------- terminals


class _PexpectHandle:
    """Lets the leak guard's tracker end a pexpect child like a Popen."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.pid = child.pid
        self.args = child.args
        self.stdin = self.stdout = self.stderr = None

    def poll(self) -> int | None:
        return None if self.child.isalive() else 0

    def wait(self, timeout: float | None = None) -> int:
        self.child.close(force=True)
        return 0


def spawn_pty(
    engine: Engine, argv: list[str], dimensions: tuple[int, int] | None = None
) -> pexpect.spawn:
    """``argv`` on a new pty (pexpect, 15 s per expect) with the engine's
    environment, ended by the leak guard if the test does not."""
    import pexpect

    child = pexpect.spawn(
        argv[0], argv[1:], env=engine.base_env(), timeout=15, dimensions=dimensions
    )
    engine.tracker.add(_PexpectHandle(child))  # type: ignore[arg-type]
    return child


def close_pty(child: pexpect.spawn) -> int:
    """Wait for a :func:`spawn_pty` child's end; its exit status."""
    import pexpect

    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return int(child.exitstatus)


def snapshot_tree(path: Path) -> dict[str, tuple[int, int, int, bytes | str | None]]:
    """{relative path: (mode, size, mtime_ns, content or link target)} for a whole tree,
    to prove a host directory was left untouched."""
    out: dict[str, tuple[int, int, int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            content: bytes | str | None = None
            if stat.S_ISLNK(st.st_mode):
                content = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                content = Path(full).read_bytes()
            out[os.path.relpath(full, path)] = (st.st_mode, st.st_size, st.st_mtime_ns, content)
    st = os.lstat(path)
    out["."] = (st.st_mode, 0, st.st_mtime_ns, None)
    return out


# --------------------------------------------------------------------------- networking


def wait_settled(take: Callable[[], T], ok: Callable[[T], bool], timeout: float = 10.0) -> T:
    """``take()`` again until ``ok`` of it or ``timeout`` s; the last one."""
    deadline = time.monotonic() + timeout
    got = take()
    while not ok(got) and time.monotonic() < deadline:
        time.sleep(0.02)
        got = take()
    return got


@dataclass(frozen=True)
class NetSnapshot:
    """What the bridge network leaves on the host: veth links on the
    engine's bridge ``pyctr0`` (never anybody else's), namespace files under
    the run directory, address leases."""

    veths: frozenset[str]
    netns_files: frozenset[str]
    leases: tuple[tuple[str, str], ...]

    @staticmethod
    def take(run_dir: Path) -> NetSnapshot:
        try:
            names = os.listdir("/sys/class/net")
        except OSError:
            names = []
        links = frozenset(
            n
            for n in names
            if n.startswith("veth")
            and os.path.basename(_readlink(f"/sys/class/net/{n}/master") or "") == "pyctr0"
        )
        try:
            files = frozenset(os.listdir(run_dir / "netns"))
        except OSError:
            files = frozenset()
        leases: tuple[tuple[str, str], ...] = ()
        table = run_dir / "networks" / "ipam" / "bridge.json"
        try:
            import json

            leases = tuple(sorted(json.loads(table.read_text()).get("leases", {}).items()))
        except (OSError, ValueError):
            pass
        return NetSnapshot(links, files, leases)

    def settled(self, run_dir: Path, timeout: float = 10.0) -> NetSnapshot:
        """A snapshot taken once no veth beyond this one's is left: a
        foreground ``run --rm`` leaves its veth pair to the kernel, which
        destroys it with the namespace 20-40 ms after the CLI exits."""
        return wait_settled(
            lambda: NetSnapshot.take(run_dir), lambda s: s.veths <= self.veths, timeout
        )

    def changes(self, later: NetSnapshot) -> list[str]:
        out = []
        if later.veths - self.veths:
            out.append(f"veth links left: {sorted(later.veths - self.veths)}")
        if later.netns_files - self.netns_files:
            out.append(f"netns files left: {sorted(later.netns_files - self.netns_files)}")
        if set(later.leases) - set(self.leases):
            out.append(f"address leases left: {sorted(set(later.leases) - set(self.leases))}")
        return out

    def clean_up_after(self, later: NetSnapshot, run_dir: Path) -> None:
        """Undo what ``later`` has beyond this snapshot (only our names)."""
        for name in later.veths - self.veths:
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
        for name in later.netns_files - self.netns_files:
            path = run_dir / "netns" / name
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
            path.unlink(missing_ok=True)
        extra = set(later.leases) - set(self.leases)
        table = run_dir / "networks" / "ipam" / "bridge.json"
        if extra and table.exists():
            import json

            doc = json.loads(table.read_text())
            for address, _ in extra:
                doc.get("leases", {}).pop(address, None)
            table.write_text(json.dumps(doc))
