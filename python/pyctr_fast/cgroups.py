"""Per-container cgroups: a tiny driver for cgroup v1 and v2.

A container started with a supervisor gets its own cgroup ``<parent>/<id>``
(``parent`` is ``pyctr-fast``, or ``$PYCTR_CGROUP_PARENT``):

* **v1** (a hybrid or legacy host): one such directory in each mounted
  hierarchy of the ``freezer``, ``memory``, ``pids``, ``cpu`` and ``cpuacct``
  controllers (found in /proc/self/mountinfo; co-mounted controllers share a
  directory);
* **v2** (a pure unified hierarchy at /sys/fs/cgroup): one directory, with the
  controllers it needs enabled in the parent's ``cgroup.subtree_control``.

:func:`plan` says which directories (and ``cgroup.procs`` files) a container
has, :func:`create` makes them, :func:`remove` removes them (and the parent
once it is empty), :func:`freeze`/:func:`thaw`/:func:`is_frozen` drive the
freezer and :func:`pids` lists the processes.  The supervisor writes the
container's pid into the ``procs`` files and removes the directories when the
container is done (docs/lifecycle.md).  Limits and statistics will be further
methods of the :class:`Driver` classes.

Only directories under the parent are ever created or removed: cgroups
created by anyone else are left alone.
"""

from __future__ import annotations

import errno
import os
import time

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "DEFAULT_PARENT",
    "PARENT_ENV",
    "CgroupPlan",
    "Driver",
    "V1Driver",
    "V2Driver",
    "create",
    "driver",
    "freeze",
    "is_frozen",
    "parent",
    "pids",
    "plan",
    "remove",
    "thaw",
]

DEFAULT_PARENT = "pyctr-fast"
PARENT_ENV = "PYCTR_CGROUP_PARENT"

#: v1 controllers a container gets a directory in (when their hierarchy is mounted).
V1_CONTROLLERS = ("freezer", "memory", "pids", "cpu", "cpuacct")
#: v2 controllers enabled for containers (when the hierarchy offers them).
V2_CONTROLLERS = ("memory", "pids", "cpu")

_FREEZE_TIMEOUT = 10.0
_RMDIR_TIMEOUT = 2.0


def parent(environ: Mapping[str, str] | None = None) -> str:
    """The parent group, relative to each hierarchy's root (``pyctr-fast``
    unless ``$PYCTR_CGROUP_PARENT`` says otherwise)."""
    env = os.environ if environ is None else environ
    value = (env.get(PARENT_ENV) or DEFAULT_PARENT).strip("/")
    if not value or ".." in value.split("/"):
        raise UserError(f"invalid {PARENT_ENV}: {env.get(PARENT_ENV)!r}")
    return value


class CgroupPlan:
    """The cgroup of one container: its directories, the ``cgroup.procs``
    files a process is joined through, and the file that counts OOM kills."""

    __slots__ = ("dirs", "oom_file", "procs")

    def __init__(self, dirs: Sequence[str], procs: Sequence[str], oom_file: str | None) -> None:
        self.dirs = list(dirs)
        self.procs = list(procs)
        self.oom_file = oom_file

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CgroupPlan):
            return NotImplemented
        return (self.dirs, self.procs, self.oom_file) == (other.dirs, other.procs, other.oom_file)

    def __repr__(self) -> str:
        return f"CgroupPlan(dirs={self.dirs!r}, procs={self.procs!r}, oom_file={self.oom_file!r})"


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def cgroup_mounts(mountinfo: str | None = None) -> list[tuple[str, str, frozenset[str]]]:
    """``(mountpoint, fstype, super options)`` of every cgroup/cgroup2 mount."""
    if mountinfo is None:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            mountinfo = f.read()
    found = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        rf = right.split()
        if not rf or rf[0] not in ("cgroup", "cgroup2"):
            continue
        lf = left.split()
        if len(lf) < 5 or lf[3] != "/":
            continue  # a bind of a subtree (e.g. inside a cgroup namespace)
        opts = frozenset(rf[2].split(",")) if len(rf) > 2 else frozenset()
        found.append((_unescape(lf[4]), rf[0], opts))
    return found


def _read(path: str) -> str:
    # Bytes, then ASCII: a text-mode open would import the ascii codec.
    with open(path, "rb") as f:
        return f.read().decode("ascii", "replace")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _mkdir(path: str) -> bool:
    """Create ``path``; True if it was created here, False if it existed."""
    try:
        os.mkdir(path, 0o755)
        return True
    except FileExistsError:
        return False


def _rmdir(path: str, timeout: float = _RMDIR_TIMEOUT) -> None:
    """rmdir a cgroup, retried briefly while it is busy (its last process is
    still being torn down); gone already is fine."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _pids_in(procs: str) -> list[int]:
    try:
        return [int(x) for x in _read(procs).split()]
    except FileNotFoundError:
        return []


class Driver:
    """One cgroup version on this host.  ``parent`` is relative to the
    hierarchy roots; every method takes the container id."""

    version = 0

    def __init__(self, parent: str) -> None:
        self.parent = parent

    def plan(self, cid: str) -> CgroupPlan:
        raise NotImplementedError

    def parent_dirs(self) -> list[str]:
        raise NotImplementedError

    def create(self, cid: str) -> CgroupPlan:
        """Make the container's directories (and the parent's); on failure
        nothing that was made here is left."""
        plan = self.plan(cid)
        made: list[str] = []
        try:
            self._prepare_parents(made)
            for d in plan.dirs:
                # A concurrent remove() may take an empty parent away between
                # the two mkdirs: make it again then.
                for _ in range(20):
                    try:
                        if _mkdir(d):
                            made.append(d)
                        break
                    except FileNotFoundError:
                        p = os.path.dirname(d)
                        if _mkdir(p):
                            made.append(p)
                else:
                    raise OSError(errno.ENOENT, "its parent keeps disappearing", d)
        except OSError as err:
            for d in reversed(made):
                try:
                    _rmdir(d, 0.2)
                except OSError:
                    pass
            raise UserError(
                f"cannot create cgroup {err.filename or ''}: {err.strerror or err}".replace(
                    "cgroup : ", "cgroup: "
                )
            ) from None
        return plan

    def _prepare_parents(self, made: list[str]) -> None:
        for p in self.parent_dirs():
            if _mkdir(p):
                made.append(p)

    def remove(self, cid: str, dirs: Sequence[str] | None = None) -> None:
        """rmdir the container's directories (retried while busy), then the
        parent's when nothing else is in them.  Missing ones are fine."""
        first: OSError | None = None
        for d in dirs if dirs is not None else self.plan(cid).dirs:
            try:
                _rmdir(d)
            except OSError as err:
                first = first or err
            try:
                os.rmdir(os.path.dirname(d))
            except OSError:
                pass  # other containers, or not ours to remove
        if first is not None:
            raise UserError(f"cannot remove cgroup {first.filename}: {first.strerror or first}")

    def exists(self, cid: str) -> bool:
        return any(os.path.isdir(d) for d in self.plan(cid).dirs)

    def freeze(self, cid: str) -> None:
        raise NotImplementedError

    def thaw(self, cid: str) -> None:
        raise NotImplementedError

    def is_frozen(self, cid: str) -> bool:
        raise NotImplementedError

    def pids(self, cid: str) -> list[int]:
        """The processes in the container's cgroup (empty when it has none)."""
        plan = self.plan(cid)
        return _pids_in(plan.procs[0]) if plan.procs else []


class V1Driver(Driver):
    """cgroup v1: a directory per controller hierarchy."""

    version = 1

    def __init__(self, parent: str, hierarchies: Mapping[str, str]) -> None:
        """``hierarchies`` maps each controller to its mount point."""
        super().__init__(parent)
        self.hierarchies = dict(hierarchies)

    @classmethod
    def detect(cls, parent: str, mounts: list[tuple[str, str, frozenset[str]]]) -> V1Driver | None:
        found: dict[str, str] = {}
        for mountpoint, fstype, opts in mounts:
            if fstype != "cgroup":
                continue
            for ctl in V1_CONTROLLERS:
                if ctl in opts and ctl not in found:
                    found[ctl] = mountpoint
        return cls(parent, found) if found else None

    def _mountpoints(self) -> list[str]:
        # freezer first: its cgroup.procs lists the container's processes.
        seen: list[str] = []
        for ctl in V1_CONTROLLERS:
            mp = self.hierarchies.get(ctl)
            if mp is not None and mp not in seen:
                seen.append(mp)
        return seen

    def parent_dirs(self) -> list[str]:
        return [os.path.join(mp, self.parent) for mp in self._mountpoints()]

    def plan(self, cid: str) -> CgroupPlan:
        dirs = [os.path.join(mp, self.parent, cid) for mp in self._mountpoints()]
        memory = self.hierarchies.get("memory")
        oom = os.path.join(memory, self.parent, cid, "memory.oom_control") if memory else None
        return CgroupPlan(dirs, [os.path.join(d, "cgroup.procs") for d in dirs], oom)

    def _freezer(self, cid: str) -> str:
        mp = self.hierarchies.get("freezer")
        if mp is None:
            raise UserError("the cgroup v1 freezer is not mounted: cannot pause containers")
        return os.path.join(mp, self.parent, cid, "freezer.state")

    def _set(self, cid: str, want: str) -> None:
        path = self._freezer(cid)
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        delay = 0.001
        while True:
            _write(path, want)
            if _read(path).strip() == want:
                return
            if time.monotonic() >= deadline:
                raise UserError(f"the container's cgroup did not reach {want} in time")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def freeze(self, cid: str) -> None:
        self._set(cid, "FROZEN")

    def thaw(self, cid: str) -> None:
        self._set(cid, "THAWED")

    def is_frozen(self, cid: str) -> bool:
        mp = self.hierarchies.get("freezer")
        if mp is None:
            return False
        try:
            state = _read(os.path.join(mp, self.parent, cid, "freezer.state")).strip()
        except OSError:
            return False
        return state in ("FROZEN", "FREEZING")


class V2Driver(Driver):
    """cgroup v2: one directory in the unified hierarchy mounted at ``mountpoint``."""

    version = 2

    def __init__(self, parent: str, mountpoint: str = "/sys/fs/cgroup") -> None:
        super().__init__(parent)
        self.mountpoint = mountpoint

    def parent_dirs(self) -> list[str]:
        return [os.path.join(self.mountpoint, self.parent)]

    def plan(self, cid: str) -> CgroupPlan:
        d = os.path.join(self.mountpoint, self.parent, cid)
        oom = os.path.join(d, "memory.events") if "memory" in self._controllers() else None
        return CgroupPlan([d], [os.path.join(d, "cgroup.procs")], oom)

    def _controllers(self) -> list[str]:
        try:
            offered = _read(os.path.join(self.mountpoint, "cgroup.controllers")).split()
        except OSError:
            return []
        return [c for c in V2_CONTROLLERS if c in offered]

    def _prepare_parents(self, made: list[str]) -> None:
        # Enable the controllers top-down: in the root's subtree_control (so
        # the parent has them), then in each level down to the parent.
        wanted = self._controllers()
        level = self.mountpoint
        parts = self.parent.split("/")
        for part in ["", *parts]:
            if part:
                level = os.path.join(level, part)
                if _mkdir(level):
                    made.append(level)
            if wanted:
                self._enable(level, wanted)

    @staticmethod
    def _enable(level: str, wanted: list[str]) -> None:
        path = os.path.join(level, "cgroup.subtree_control")
        have = _read(path).split()
        missing = [c for c in wanted if c not in have]
        if missing:
            _write(path, " ".join("+" + c for c in missing))

    def _file(self, cid: str, name: str) -> str:
        return os.path.join(self.mountpoint, self.parent, cid, name)

    def _set(self, cid: str, value: str) -> None:
        path = self._file(cid, "cgroup.freeze")
        try:
            _write(path, value)
        except FileNotFoundError:
            raise UserError(
                "cgroup.freeze is missing: this kernel's cgroup v2 cannot freeze (5.2+ needed)"
            ) from None
        want = f"frozen {value}"
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        delay = 0.001
        while want not in _read(self._file(cid, "cgroup.events")).splitlines():
            if time.monotonic() >= deadline:
                raise UserError("the container's cgroup did not reach the requested state in time")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def freeze(self, cid: str) -> None:
        self._set(cid, "1")

    def thaw(self, cid: str) -> None:
        self._set(cid, "0")

    def is_frozen(self, cid: str) -> bool:
        try:
            return _read(self._file(cid, "cgroup.freeze")).strip() == "1"
        except OSError:
            return False


_cached: dict[str, Driver] = {}


def driver(environ: Mapping[str, str] | None = None) -> Driver:
    """The driver for this host: v2 when /sys/fs/cgroup is a cgroup2 mount
    (pure unified), else v1 over the mounted controller hierarchies."""
    par = parent(environ)
    found = _cached.get(par)
    if found is not None:
        return found
    mounts = cgroup_mounts()
    chosen: Driver | None = None
    for mountpoint, fstype, _ in mounts:
        if fstype == "cgroup2" and mountpoint == "/sys/fs/cgroup":
            chosen = V2Driver(par, mountpoint)
    if chosen is None:
        chosen = V1Driver.detect(par, mounts)
    if chosen is None:
        raise UserError("no cgroup hierarchy is mounted (neither cgroup v1 nor v2)")
    _cached[par] = chosen
    return chosen


def plan(cid: str) -> CgroupPlan:
    """The container's directories, ``cgroup.procs`` files and OOM counter file."""
    return driver().plan(cid)


def create(cid: str) -> CgroupPlan:
    """Make the container's cgroup; raises UserError (nothing left) on failure."""
    return driver().create(cid)


def remove(cid: str, dirs: Sequence[str] | None = None) -> None:
    """Remove the container's cgroup (``dirs``: as recorded at start, else the
    current plan), and the parent when it is empty."""
    driver().remove(cid, dirs)


def freeze(cid: str) -> None:
    driver().freeze(cid)


def thaw(cid: str) -> None:
    driver().thaw(cid)


def is_frozen(cid: str) -> bool:
    """True while the container's freezer is FROZEN or FREEZING (v1) or its
    ``cgroup.freeze`` is 1 (v2); False when it has no cgroup."""
    try:
        return driver().is_frozen(cid)
    except UserError:
        return False


def pids(cid: str) -> list[int]:
    return driver().pids(cid)
