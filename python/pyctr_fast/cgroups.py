"""Per-container cgroups: where they are, for cgroup v1 and v2.

A container started with a supervisor (or with limits) gets its own cgroup
``<parent>/<id>`` (``parent`` is ``pyctr-fast``, ``$PYCTR_CGROUP_PARENT`` or
the container's ``--cgroup-parent``):

* **v1** (a hybrid or legacy host): one such directory in each mounted
  hierarchy of the freezer, memory, pids, cpu, cpuacct, cpuset and blkio
  controllers (found in /proc/self/mountinfo; co-mounted controllers share a
  directory);
* **v2** (a pure unified hierarchy at /sys/fs/cgroup): one directory, with the
  controllers it needs enabled in each ancestor's ``cgroup.subtree_control``.

This module *plans* (:class:`CgroupPlan`: which directory holds which
controller) and *reads* (``pids``, ``is_frozen``; statistics are in
:mod:`stats`).  Every write -- making the group with its limits, ``update``,
freezing, removal -- is done by the Rust driver (``pyctr_core::cgroups``)
through ``_native.cgroup_*``, given the plan as launch.json records it
(docs/lifecycle.md).

Only directories under the parent are ever created or removed: cgroups
created by anyone else are left alone.
"""

from __future__ import annotations

import os

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

__all__ = [
    "DEFAULT_PARENT",
    "PARENT_ENV",
    "CgroupPlan",
    "Driver",
    "V1Driver",
    "V2Driver",
    "create",
    "create_plan",
    "driver",
    "exists",
    "freeze",
    "is_frozen",
    "parent",
    "pids",
    "plan",
    "remove",
    "thaw",
    "update",
]

DEFAULT_PARENT = "pyctr-fast"
PARENT_ENV = "PYCTR_CGROUP_PARENT"

#: v1 controllers a container gets a directory in (when their hierarchy is mounted).
V1_CONTROLLERS = ("freezer", "memory", "pids", "cpu", "cpuacct", "cpuset", "blkio")
#: v2 controllers enabled for containers (when the hierarchy offers them).
V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "pids")


def parent(environ: Mapping[str, str] | None = None) -> str:
    """The parent group, relative to each hierarchy's root (``pyctr-fast``
    unless ``$PYCTR_CGROUP_PARENT`` says otherwise)."""
    env = os.environ if environ is None else environ
    value = (env.get(PARENT_ENV) or DEFAULT_PARENT).strip("/")
    if not value or ".." in value.split("/"):
        raise UserError(f"invalid {PARENT_ENV}: {env.get(PARENT_ENV)!r}")
    return value


class CgroupPlan:
    """The cgroup of one container.

    ``version`` is 1 or 2 and ``path`` the group's path relative to each
    hierarchy's root (``pyctr-fast/<id>``).  ``controllers`` maps each
    controller to its directory (v2: every controller to the one directory)
    and ``mounts`` each controller to its hierarchy's mount point.  ``dirs``
    are the distinct directories (freezer's first: its ``cgroup.procs`` lists
    the container), ``procs`` their ``cgroup.procs`` files and ``oom_file``
    the file that counts OOM kills.  ``own_parent``: the parent group is the
    engine's (``pyctr-fast``), removed with its last container.
    """

    __slots__ = (
        "controllers",
        "dirs",
        "mounts",
        "oom_file",
        "own_parent",
        "path",
        "procs",
        "version",
    )

    def __init__(
        self,
        version: int,
        path: str,
        controllers: Mapping[str, str],
        mounts: Mapping[str, str],
        dirs: Sequence[str],
        oom_file: str | None,
        own_parent: bool = False,
    ) -> None:
        self.own_parent = own_parent
        self.version = version
        self.path = path
        self.controllers = dict(controllers)
        self.mounts = dict(mounts)
        self.dirs = list(dirs)
        self.procs = [os.path.join(d, "cgroup.procs") for d in self.dirs]
        self.oom_file = oom_file

    def dir_for(self, controller: str) -> str | None:
        """The directory holding ``controller``'s files (None: not mounted)."""
        return self.controllers.get(controller)

    def to_json(self) -> str:
        from .compact_json import dumps

        return dumps(self.to_doc())

    def to_doc(self) -> dict[str, object]:
        """launch.json's ``cgroup`` object (docs/lifecycle.md)."""
        return {
            "version": self.version,
            "path": self.path,
            "controllers": dict(self.controllers),
            "mounts": dict(self.mounts),
            "dirs": list(self.dirs),
            "oom_file": self.oom_file,
            "own_parent": self.own_parent,
        }

    @classmethod
    def from_doc(cls, doc: object) -> CgroupPlan | None:
        """The plan launch.json recorded, None when there is none or it is malformed."""
        if not isinstance(doc, dict):
            return None
        try:
            version = int(doc["version"])
            path = str(doc["path"])
            controllers = {str(k): str(v) for k, v in dict(doc["controllers"]).items()}
            mounts = {str(k): str(v) for k, v in dict(doc["mounts"]).items()}
            dirs = [str(d) for d in doc["dirs"]]
            oom = doc.get("oom_file")
        except (KeyError, TypeError, ValueError):
            return None
        oom = None if oom is None else str(oom)
        return cls(version, path, controllers, mounts, dirs, oom, bool(doc.get("own_parent")))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CgroupPlan):
            return NotImplemented
        return self.to_doc() == other.to_doc()

    def __repr__(self) -> str:
        return f"CgroupPlan(version={self.version}, path={self.path!r}, dirs={self.dirs!r})"


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


def _pids_in(procs: str) -> list[int]:
    try:
        return [int(x) for x in _read(procs).split()]
    except FileNotFoundError:
        return []


def _native_call(verb: str, plan: CgroupPlan, call: Callable[[str], None]) -> None:
    """Run one ``_native.cgroup_*`` call on ``plan``; its ContainerError
    becomes a one-line UserError naming the file and the errno."""
    from ._native import ContainerError

    try:
        call(plan.to_json())
    except ContainerError as err:
        path = getattr(err, "path", None) or ""
        code = getattr(err, "errno", 0) or 0
        if code and path and getattr(err, "step", "") != "devices":  # devices: say which rule
            raise UserError(f"cannot {verb} cgroup {path}: {os.strerror(code)}") from None
        raise UserError(f"cannot {verb} cgroup: {err}") from None


def create_plan(plan: CgroupPlan, resources: str = "") -> None:
    """Make ``plan``'s group with ``resources`` (OCI ``linux.resources`` as
    JSON) written before anything joins it; nothing is left on failure."""
    from ._native import cgroup_create

    _native_call("create", plan, lambda doc: cgroup_create(doc, resources))


def update(plan: CgroupPlan, resources: str) -> None:
    """Write ``resources`` into a running container's group (``update``)."""
    from ._native import cgroup_update

    _native_call("update", plan, lambda doc: cgroup_update(doc, resources))


def remove(plan: CgroupPlan) -> None:
    """Remove the group (waiting ~2 s while its last processes leave), and
    its parent when that is empty and the engine's own (a ``--cgroup-parent``
    group is somebody else's to remove)."""
    from ._native import cgroup_remove

    _native_call("remove", plan, lambda doc: cgroup_remove(doc, plan.own_parent))


def freeze(plan: CgroupPlan) -> None:
    from ._native import cgroup_freeze

    _native_call("freeze", plan, lambda doc: cgroup_freeze(doc, True))


def thaw(plan: CgroupPlan) -> None:
    from ._native import cgroup_freeze

    _native_call("thaw", plan, lambda doc: cgroup_freeze(doc, False))


def is_frozen(plan: CgroupPlan | None) -> bool:
    """True while the freezer is FROZEN or FREEZING (v1) or ``cgroup.freeze``
    is 1 (v2); False when there is no such group."""
    d = plan.dir_for("freezer") if plan is not None else None
    if d is None:
        return False
    try:
        if plan is not None and plan.version == 2:
            return _read(os.path.join(d, "cgroup.freeze")).strip() == "1"
        return _read(os.path.join(d, "freezer.state")).strip() in ("FROZEN", "FREEZING")
    except OSError:
        return False


def pids(plan: CgroupPlan | None) -> list[int]:
    """The processes in the group (empty when it has none)."""
    return _pids_in(plan.procs[0]) if plan is not None and plan.procs else []


def exists(plan: CgroupPlan) -> bool:
    return any(os.path.isdir(d) for d in plan.dirs)


class Driver:
    """One cgroup version on this host.  ``parent`` is relative to the
    hierarchy roots."""

    version = 0

    def __init__(self, parent: str) -> None:
        self.parent = parent

    def plan(self, cid: str, cgroup_parent: str | None = None) -> CgroupPlan:
        """The group ``<parent>/<cid>`` (``cgroup_parent``: instead of the
        host's default parent, relative to each hierarchy's root)."""
        if cgroup_parent is None:
            plan = self.plan_path(f"{self.parent}/{cid}")
            plan.own_parent = True
            return plan
        par = cgroup_parent.strip("/")
        return self.plan_path(f"{par}/{cid}" if par else cid)

    def plan_path(self, path: str) -> CgroupPlan:
        """The group at ``path``, relative to each hierarchy's root."""
        raise NotImplementedError

    def parent_dirs(self) -> list[str]:
        raise NotImplementedError

    def create(self, cid: str, resources: str = "", cgroup_parent: str | None = None) -> CgroupPlan:
        """Make the container's group with ``resources`` written (see
        :func:`create_plan`)."""
        plan = self.plan(cid, cgroup_parent)
        create_plan(plan, resources)
        return plan


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

    def plan_path(self, path: str) -> CgroupPlan:
        controllers = {ctl: os.path.join(mp, path) for ctl, mp in self.hierarchies.items()}
        dirs = [os.path.join(mp, path) for mp in self._mountpoints()]
        memory = controllers.get("memory")
        oom = os.path.join(memory, "memory.oom_control") if memory else None
        return CgroupPlan(1, path, controllers, self.hierarchies, dirs, oom)


class V2Driver(Driver):
    """cgroup v2: one directory in the unified hierarchy mounted at ``mountpoint``."""

    version = 2

    def __init__(self, parent: str, mountpoint: str = "/sys/fs/cgroup") -> None:
        super().__init__(parent)
        self.mountpoint = mountpoint

    def parent_dirs(self) -> list[str]:
        return [os.path.join(self.mountpoint, self.parent)]

    def plan_path(self, path: str) -> CgroupPlan:
        d = os.path.join(self.mountpoint, path)
        wanted = self._controllers()
        oom = os.path.join(d, "memory.events") if "memory" in wanted else None
        controllers = {ctl: d for ctl in ("freezer", *wanted)}
        mounts = {ctl: self.mountpoint for ctl in controllers}
        return CgroupPlan(2, path, controllers, mounts, [d], oom)

    def _controllers(self) -> list[str]:
        try:
            offered = _read(os.path.join(self.mountpoint, "cgroup.controllers")).split()
        except OSError:
            return []
        return [c for c in V2_CONTROLLERS if c in offered]


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


def plan_for_spec(spec: Mapping[str, Any]) -> CgroupPlan | None:
    """The group an OCI spec's ``linux.cgroupsPath`` names on this host
    (relative to each hierarchy's root); None when it names none."""
    path = str((spec.get("linux") or {}).get("cgroupsPath") or "").strip("/")
    if not path:
        return None
    drv = driver()
    plan = drv.plan_path(path)
    plan.own_parent = os.path.dirname(path) == drv.parent
    return plan


def plan(cid: str, cgroup_parent: str | None = None) -> CgroupPlan:
    """The container's group on this host (see :meth:`Driver.plan`)."""
    return driver().plan(cid, cgroup_parent)


def create(cid: str, resources: str = "", cgroup_parent: str | None = None) -> CgroupPlan:
    """Make the container's group with ``resources``; raises UserError
    (nothing left) on failure."""
    return driver().create(cid, resources, cgroup_parent)
