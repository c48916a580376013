"""Controlling supervised containers: the per-container command lock, pidfd
signals and waits, waiting for a supervisor to let go, repairing the state
of a container whose supervisor died, and keeping supervisor starts apart
from the writing of the supervisor binary.  Used by :mod:`pyctr_fast.lifecycle`.

Neither :mod:`contextlib` nor :mod:`threading` is imported here (they cost
~10 ms on the ``run -d`` path): the context managers are small classes.
"""

from __future__ import annotations

import fcntl
import os
import time

from . import cgroups, records, statefiles
from .errors import UserError
from .records import Record
from .signals import SIGKILL, SIGTERM, parse_signal
from .spec import DEFAULT_STOP_TIMEOUT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType
    from typing import Any

__all__ = [
    "FORKS",
    "SUPERVISOR_GRACE",
    "ForkGuard",
    "block_on_lock",
    "cgroup_dirs",
    "daemon_error",
    "end_process",
    "exit_after",
    "finish",
    "launch_doc",
    "locked",
    "pidfd",
    "repair_if_orphaned",
    "send",
    "stop_signal",
    "stop_timeout",
    "stored",
    "suppress",
    "touch",
    "unlink",
    "wait_fd",
    "wait_supervisor",
]

#: How long ``rm -f`` and ``stop`` wait for a supervisor to record the end.
SUPERVISOR_GRACE = 10.0


def daemon_error(message: str) -> UserError:
    """A "daemon" error: Docker's CLI exits 1 for those."""
    return UserError(message, exit_code=1)


class suppress:
    """``contextlib.suppress``: ignore the given exceptions in the block."""

    __slots__ = ("exceptions",)

    def __init__(self, *exceptions: type[BaseException]) -> None:
        self.exceptions = exceptions

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return kind is not None and issubclass(kind, self.exceptions)


class locked:
    """``with locked(rec) as fresh``: hold the container's ``lock`` and get a
    fresh read of it; a container removed meanwhile is "No such container"."""

    __slots__ = ("fd", "rec")

    def __init__(self, rec: Record) -> None:
        self.rec = rec
        self.fd = -1

    def __enter__(self) -> Record:
        rec = self.rec
        try:
            # Read-only is enough for flock (and works on a read-only state dir).
            fd = os.open(rec.path("lock"), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise daemon_error(f"No such container: {rec.id}") from None
        except OSError as err:
            raise daemon_error(f"cannot lock container {rec.id}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                fresh = Record(rec.root, rec.id)
            except (OSError, ValueError):
                raise daemon_error(f"No such container: {rec.id}") from None
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return fresh

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fd, self.fd = self.fd, -1
        os.close(fd)


def touch(path: str) -> None:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as err:
        raise daemon_error(f"cannot write {path}: {err.strerror or err}") from None


def unlink(path: str) -> None:
    if os.path.lexists(path):  # (a read-only dir refuses even a missing file's unlink)
        with suppress(FileNotFoundError):
            os.unlink(path)


def launch_doc(rec: Record) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = records.read_json(rec.path("launch.json"))
        return doc
    except (OSError, ValueError):
        return {}


def cgroup_plan(rec: Record, launch: dict[str, Any] | None = None) -> cgroups.CgroupPlan | None:
    """The container's cgroup as launch.json records it (None: it has none).
    ``launch``: launch.json's contents when the caller has read it already."""
    doc = launch_doc(rec) if launch is None else launch
    return cgroups.CgroupPlan.from_doc(doc.get("cgroup"))


def cgroup_dirs(rec: Record) -> list[str]:
    plan = cgroup_plan(rec)
    return plan.dirs if plan is not None else []


def pidfd(rec: Record) -> int | None:
    """A pidfd for the container's process, or None when it no longer runs
    (checked against the recorded start time after opening: no pid reuse)."""
    pid = int(rec.raw_state.get("Pid") or 0)
    if pid <= 0:
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if rec.pid_alive():
        return fd
    os.close(fd)
    return None


def send(fd: int, sig: int) -> None:
    import signal

    with suppress(ProcessLookupError):
        signal.pidfd_send_signal(fd, sig)


def wait_fd(fd: int, timeout: float | None) -> bool:
    """Wait until the pidfd's process has exited; False on timeout."""
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def wait_supervisor(cdir: str, timeout: float) -> bool:
    """Wait until nobody holds ``supervisor.lock`` (True), up to ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while records.supervisor_alive(cdir):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
    return True


def stop_signal(rec: Record) -> int:
    """The container's stop signal: ``--stop-signal``, the image's
    StopSignal, else SIGTERM."""
    raw = (rec.container.get("Config") or {}).get("StopSignal")
    if raw:
        try:
            return parse_signal(str(raw))
        except UserError:
            pass
    return SIGTERM


def stop_timeout(rec: Record, timeout: int | None) -> int:
    if timeout is not None:
        return timeout
    value = (rec.container.get("Config") or {}).get("StopTimeout")
    return int(value) if isinstance(value, int) else DEFAULT_STOP_TIMEOUT


def repair_if_orphaned(rec: Record) -> None:
    """With no supervisor and no process left, record how it ended (as the
    readers' truth rule reports it) so the state stops changing."""
    if records.supervisor_alive(rec.dir):
        return
    try:
        fresh = Record(rec.root, rec.id)
    except (OSError, ValueError):
        return
    if fresh.raw_state.get("Status") in ("running", "restarting") and not fresh.pid_alive():
        state = fresh.state()
        with suppress(OSError):
            statefiles.write_json(fresh.path("state.json"), stored(state, state["Status"]))


def stored(state: Mapping[str, Any], status: str) -> dict[str, Any]:
    keep = (
        "Pid ExitCode OOMKilled Error StartedAt FinishedAt RestartCount SupervisorPid PidStartTime"
    )
    out = {k: state[k] for k in keep.split() if k in state}
    out["Status"] = status
    return out


def end_process(rec: Record, first: int, grace: float | None) -> None:
    """Send ``first`` to the container's process; SIGKILL it when it is still
    there after ``grace`` seconds (None: wait forever); wait for it to go.
    A paused container is thawed so that it can act on the signal."""
    fd = pidfd(rec)
    if fd is None:
        return
    try:
        send(fd, first)
        plan = cgroup_plan(rec)
        if plan is not None and rec.paused(plan.dirs):
            with suppress(UserError, OSError):
                cgroups.thaw(plan)
        if first != SIGKILL and wait_fd(fd, grace):
            return
        send(fd, SIGKILL)
        if not wait_fd(fd, SUPERVISOR_GRACE):
            raise daemon_error(f"container {rec.id} did not exit after SIGKILL")
    finally:
        os.close(fd)


def finish(rec: Record) -> None:
    """After the process is gone: wait for the supervisor (or the foreground
    CLI) to record the end and let go, then repair an orphaned state."""
    if not wait_supervisor(rec.dir, SUPERVISOR_GRACE):
        raise daemon_error(f"the supervisor of container {rec.id} did not finish in time")
    repair_if_orphaned(rec)


class ForkGuard:
    """Keeps this process's supervisor starts (forks) and the writing of the
    supervisor binary apart: a child forked while another thread holds the
    new binary open for writing would inherit that descriptor and could then
    never execute it (ETXTBSY).  Starts share; writing the binary excludes.

    A readers-writer exclusion over two plain ``_thread`` locks: ``idle`` is
    held while any start is in flight (taken by the first, released by the
    last: a plain lock may be released by another thread) or while the
    binary is written."""

    def __init__(self) -> None:
        import _thread

        self.mutex = _thread.allocate_lock()  # guards `forking`
        self.idle = _thread.allocate_lock()
        self.forking = 0
        self.ready: set[str] = set()

    def ensure_binary(self, root: str) -> None:
        """Write ``<root>/bin/pyctr-supervise-<hash>`` (once) with no fork
        of ours in flight."""
        from . import _native

        if root in self.ready:
            return
        with self.idle:
            if root in self.ready:
                return
            _native.supervisor_binary(root)
            self.ready.add(root)

    def forking_allowed(self) -> _Forking:
        """``with FORKS.forking_allowed():`` around a start (waits while
        the binary is being written)."""
        return _Forking(self)


class _Forking:
    __slots__ = ("guard",)

    def __init__(self, guard: ForkGuard) -> None:
        self.guard = guard

    def __enter__(self) -> None:
        g = self.guard
        with g.mutex:
            if g.forking == 0:
                g.idle.acquire()  # waits out a writer
            g.forking += 1

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        g = self.guard
        with g.mutex:
            g.forking -= 1
            if g.forking == 0:
                g.idle.release()


FORKS = ForkGuard()


def block_on_lock(rec: Record) -> int | None:
    """Block until the supervisor lets go of its lock; then the exit code if
    the state file held open meanwhile says how it ended (a foreground
    ``--rm`` run writes the end into that same file before letting go and
    removing the directory), else None: look again."""
    try:
        fd = os.open(rec.path("supervisor.lock"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        state_fd = os.open(rec.path("state.json"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        state_fd = -1
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        if state_fd < 0:
            return None
        import json

        try:
            last = json.loads(os.pread(state_fd, 1 << 16, 0))
        except ValueError:
            last = {}
        # A supervisor replaces the file (this one still says running): the
        # caller reads the directory again.
        if isinstance(last, dict) and last.get("Status") == "exited":
            return int(last.get("ExitCode") or 0)
        return None
    finally:
        os.close(fd)
        if state_fd >= 0:
            os.close(state_fd)


def exit_after(rec: Record, before: Mapping[str, Any]) -> int:
    """The exit code of the run whose process just ended, once the
    supervisor has recorded it (a new FinishedAt, or it let go)."""
    deadline = time.monotonic() + SUPERVISOR_GRACE
    while True:
        try:
            fresh = Record(rec.root, rec.id)
        except (OSError, ValueError):
            raise daemon_error(f"No such container: {rec.id}") from None
        st = fresh.state()
        finished = st.get("FinishedAt") != before.get("FinishedAt")
        if finished or not st["Running"] or time.monotonic() >= deadline:
            return int(st.get("ExitCode") or 0)
        time.sleep(0.005)
