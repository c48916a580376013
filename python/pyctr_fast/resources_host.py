"""What this machine's cgroups can limit: :class:`Host` (Docker's ``sysinfo``).

:meth:`Host.detect` reads it once per process (cached): the CPUs the engine
may use, the allowed CPU and memory-node sets, the cgroup version and the
*features*, the limits the mounted controllers offer, found the way Docker's
``pkg/sysinfo`` finds them (a file of the controller in the hierarchy).  Tests
construct a :class:`Host` directly, or probe a directory tree shaped like a
cgroup hierarchy with :meth:`Host.probe_v1` / :meth:`Host.probe_v2`.

Also the cpuset list syntax (``0-2,4``): :func:`parse_list` (Docker's
``parsers.ParseUintList``) and :func:`format_list`.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "ALL_FEATURES",
    "BLKIO_THROTTLE",
    "BLKIO_WEIGHT",
    "CPUSET",
    "CPU_CFS",
    "CPU_RT",
    "CPU_SHARES",
    "MEMORY",
    "MEMORY_RESERVATION",
    "MEMSW",
    "OOM_KILL_DISABLE",
    "PIDS",
    "SWAPPINESS",
    "V2_FEATURES",
    "Host",
    "format_list",
    "parse_list",
]

MEMORY = "memory"  # memory limit
MEMSW = "memsw"  # memory+swap limit (v1 memory.memsw.*, v2 memory.swap.max)
MEMORY_RESERVATION = "memory_reservation"  # v1 soft limit, v2 memory.low
SWAPPINESS = "swappiness"  # v1 only
OOM_KILL_DISABLE = "oom_kill_disable"  # v1 only
PIDS = "pids"
CPU_SHARES = "cpu_shares"  # v1 cpu.shares, v2 cpu.weight
CPU_CFS = "cpu_cfs"  # quota and period
CPU_RT = "cpu_rt"  # v1 only
CPUSET = "cpuset"
BLKIO_WEIGHT = "blkio_weight"  # v1 blkio.weight or blkio.bfq.weight, v2 io.weight
BLKIO_THROTTLE = "blkio_throttle"  # v1 blkio.throttle.*, v2 io.max

ALL_FEATURES = frozenset(
    (
        MEMORY,
        MEMSW,
        MEMORY_RESERVATION,
        SWAPPINESS,
        OOM_KILL_DISABLE,
        PIDS,
        CPU_SHARES,
        CPU_CFS,
        CPU_RT,
        CPUSET,
        BLKIO_WEIGHT,
        BLKIO_THROTTLE,
    )
)
#: What cgroup v2 offers at most (no swappiness, no OOM-killer switch, no RT).
V2_FEATURES = ALL_FEATURES - {SWAPPINESS, OOM_KILL_DISABLE, CPU_RT}

#: v1: the file whose presence in a controller's hierarchy means a feature
#: (Docker's sysinfo checks; any of several names).
_V1_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    MEMORY: ("memory", ("memory.limit_in_bytes",)),
    MEMSW: ("memory", ("memory.memsw.limit_in_bytes",)),
    MEMORY_RESERVATION: ("memory", ("memory.soft_limit_in_bytes",)),
    SWAPPINESS: ("memory", ("memory.swappiness",)),
    OOM_KILL_DISABLE: ("memory", ("memory.oom_control",)),
    PIDS: ("pids", ("cgroup.procs",)),  # Docker: the hierarchy is mounted
    CPU_SHARES: ("cpu", ("cpu.shares",)),
    CPU_CFS: ("cpu", ("cpu.cfs_quota_us",)),
    CPU_RT: ("cpu", ("cpu.rt_period_us",)),
    CPUSET: ("cpuset", ("cpuset.cpus",)),
    BLKIO_WEIGHT: ("blkio", ("blkio.weight", "blkio.bfq.weight")),
    BLKIO_THROTTLE: ("blkio", ("blkio.throttle.read_bps_device",)),
}

#: v2: the controller each feature needs in the root's cgroup.controllers.
_V2_CONTROLLER = {
    MEMORY: "memory",
    MEMSW: "memory",
    MEMORY_RESERVATION: "memory",
    PIDS: "pids",
    CPU_SHARES: "cpu",
    CPU_CFS: "cpu",
    CPUSET: "cpuset",
    BLKIO_WEIGHT: "io",
    BLKIO_THROTTLE: "io",
}


class ListError(ValueError):
    """A cpuset list that does not parse (Docker's wording in ``str()``)."""


def parse_list(text: str, maximum: int = 0) -> set[int]:
    """Docker's ``parsers.ParseUintList``: ``"0-2,4"`` -> ``{0, 1, 2, 4}``;
    ``""`` is the empty set.  Raises :class:`ListError` ("invalid format:
    ..." or "value of out range, maximum is N", Docker's words)."""
    if text == "":
        return set()
    bad = ListError(f"invalid format: {text}")
    found: set[int] = set()
    for part in text.split(","):
        low_s, dash, high_s = part.partition("-")
        low = _atoi(low_s, bad)
        high = _atoi(high_s, bad) if dash else low
        if high < low:
            raise bad
        if maximum and high > maximum:
            raise ListError(f"value of out range, maximum is {maximum}")
        found.update(range(low, high + 1))
    return found


def _atoi(text: str, bad: ListError) -> int:
    # Go's strconv.Atoi: an optional sign, then ASCII digits only.
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise bad
    return int(text)


def format_list(values: Iterable[int]) -> str:
    """The kernel's list syntax: ``{0, 1, 2, 4}`` -> ``"0-2,4"``."""
    out: list[str] = []
    run: list[int] = []
    for v in sorted(set(values)):
        if run and v == run[-1] + 1:
            run.append(v)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [v]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("ascii", "replace").strip()
    except OSError:
        return None


def _read_list(*paths: str) -> frozenset[int] | None:
    """The first of ``paths`` that reads as a non-empty list."""
    for path in paths:
        text = _read(path)
        if text:
            try:
                return frozenset(parse_list(text))
            except ListError:
                continue
    return None


_CHILDREN = 8  # child groups looked into at most


def _has_file(mountpoint: str, names: tuple[str, ...]) -> bool:
    """A file of ``names`` in the hierarchy's root, or else in an existing
    child group (some files, e.g. ``blkio.bfq.weight``, only exist below the
    root).  Read-only: nothing is created."""
    if any(os.path.exists(os.path.join(mountpoint, n)) for n in names):
        return True
    try:
        with os.scandir(mountpoint) as it:
            children = [e.path for e in it if e.is_dir(follow_symlinks=False)][:_CHILDREN]
    except OSError:
        return False
    return any(os.path.exists(os.path.join(c, n)) for c in children for n in names)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _online_cpus() -> frozenset[int]:
    return _read_list("/sys/devices/system/cpu/online") or frozenset(range(_cpu_count()))


def _online_mems() -> frozenset[int]:
    return _read_list("/sys/devices/system/node/online") or frozenset({0})


class Host:
    """What the host offers: ``cpu_count`` (CPUs this process may run on),
    ``cpus``/``mems`` (the CPUs and memory nodes a cpuset may name),
    ``version`` (1 or 2) and ``features`` (a subset of :data:`ALL_FEATURES`)."""

    __slots__ = ("cpu_count", "cpus", "features", "mems", "version")

    def __init__(
        self,
        *,
        cpu_count: int,
        cpus: Iterable[int] | None = None,
        mems: Iterable[int] = (0,),
        version: int = 1,
        features: Iterable[str] = ALL_FEATURES,
    ) -> None:
        self.cpu_count = cpu_count
        self.cpus = frozenset(range(cpu_count) if cpus is None else cpus)
        self.mems = frozenset(mems)
        self.version = version
        self.features = frozenset(features)

    def has(self, feature: str) -> bool:
        return feature in self.features

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Host):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, k) for k in self.__slots__))

    def __repr__(self) -> str:
        return (
            f"Host(cpu_count={self.cpu_count}, cpus={format_list(self.cpus)!r}, "
            f"mems={format_list(self.mems)!r}, version={self.version}, "
            f"features={sorted(self.features)!r})"
        )

    @classmethod
    def probe_v1(cls, hierarchies: Mapping[str, str], cpu_count: int | None = None) -> Host:
        """A v1 host whose controllers are mounted at ``hierarchies``
        (controller -> mount point)."""
        features = {
            feature
            for feature, (controller, names) in _V1_FILES.items()
            if controller in hierarchies and _has_file(hierarchies[controller], names)
        }
        cpus = mems = None
        cpuset = hierarchies.get("cpuset")
        if cpuset is not None:
            cpus = _read_list(
                os.path.join(cpuset, "cpuset.effective_cpus"), os.path.join(cpuset, "cpuset.cpus")
            )
            mems = _read_list(
                os.path.join(cpuset, "cpuset.effective_mems"), os.path.join(cpuset, "cpuset.mems")
            )
        return cls(
            cpu_count=_cpu_count() if cpu_count is None else cpu_count,
            cpus=cpus or _online_cpus(),
            mems=mems or _online_mems(),
            version=1,
            features=features,
        )

    @classmethod
    def probe_v2(cls, mountpoint: str, cpu_count: int | None = None) -> Host:
        """A v2 host whose unified hierarchy is mounted at ``mountpoint``."""
        offered = set((_read(os.path.join(mountpoint, "cgroup.controllers")) or "").split())
        features = {f for f, ctl in _V2_CONTROLLER.items() if ctl in offered}
        cpus = _read_list(os.path.join(mountpoint, "cpuset.cpus.effective"))
        mems = _read_list(os.path.join(mountpoint, "cpuset.mems.effective"))
        return cls(
            cpu_count=_cpu_count() if cpu_count is None else cpu_count,
            cpus=cpus or _online_cpus(),
            mems=mems or _online_mems(),
            version=2,
            features=features,
        )

    @classmethod
    def detect(cls) -> Host:
        """This machine (read once per process)."""
        global _detected
        if _detected is None:
            _detected = _detect()
        return _detected


_detected: Host | None = None


def _detect() -> Host:
    from . import cgroups
    from .errors import UserError

    mounts = cgroups.cgroup_mounts()
    try:
        version = cgroups.driver().version
    except UserError:
        version = 0
    v2 = [mp for mp, fstype, _ in mounts if fstype == "cgroup2" and mp == "/sys/fs/cgroup"]
    if version == 2 or (version == 0 and v2):
        return Host.probe_v2(v2[0] if v2 else "/sys/fs/cgroup")
    hierarchies: dict[str, str] = {}
    for mountpoint, fstype, opts in mounts:
        if fstype != "cgroup":
            continue
        for ctl in ("memory", "pids", "cpu", "cpuset", "blkio"):
            if ctl in opts:
                hierarchies.setdefault(ctl, mountpoint)
    return Host.probe_v1(hierarchies)
