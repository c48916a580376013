"""Docker's resource flags (and docker-py's keywords) as OCI ``linux.resources``.

``run``/``create`` flags (:data:`RESOURCE_FLAGS`), ``update`` flags
(:data:`UPDATE_FLAGS`) and docker-py's ``containers.run`` keywords
(:data:`RESOURCE_KWARGS`) are parsed and checked the way Docker does it, in
Docker's order and words:

1. the CLI's flag parsing (pflag: ``invalid argument "x" for "-m, --memory"
   flag: invalid size: 'x'``; the throttle devices' ``bad format: ...``; the
   client's swappiness check);
2. the daemon's ``verifyPlatformContainerResources`` against the
   :class:`~pyctr_fast.resources_host.Host`: errors, or *warnings* for what
   the host cannot limit (the value is then dropped, as Docker does);
3. at create, Docker's defaults (``MemorySwap`` = 2 x ``Memory``); at update,
   Docker's merge into the container's ``HostConfig`` (``UpdateContainer``).

The result is a :class:`Limits`: ``oci`` (only what was asked, for the cgroup
writer), ``host_config`` (the ``HostConfig`` fields ``docker inspect`` shows)
and ``warnings`` (the daemon's messages, without the CLI's ``WARNING: ``
prefix: ``run`` prints ``WARNING: <msg>`` on stderr, ``update`` prints them
bare on stdout).  Errors are :class:`~pyctr_fast.errors.UserError` (exit 125,
Docker's ``run``), :class:`~pyctr_fast.errors.APIError` from
:func:`limits_from_kwargs`, and :class:`UpdateConflict` for ``update``'s
merge conflicts (Docker prefixes those with ``Cannot update container ID:``).

Deliberate differences from Docker: ``--cpus`` below 0.01 is refused with
Docker's range message (Docker leaves it to the kernel, which refuses it at
start); a throttle device that is not a block device is refused at create;
``update --memory`` on a container without a swap limit (``MemorySwap`` 0 or
-1) is accepted (Docker's long-standing bug, moby#39541/#47874) and a container
that had no memory limit then gets ``MemorySwap`` = 2 x ``Memory`` as at
create; ``update`` checks memory against swap in the merged result (Docker
lets the kernel refuse); ``update``'s throttle devices are applied and
recorded (Docker accepts and ignores them).
"""

from __future__ import annotations

import os

from .errors import APIError, UserError
from .resources_flags import (
    HOST_CONFIG_DEFAULTS,
    MIN_MEMORY,
    RESOURCE_FLAGS,
    THROTTLES,
    UPDATE_FLAGS,
    defaults,
    request_from_flags,
)
from .resources_host import (
    BLKIO_THROTTLE,
    BLKIO_WEIGHT,
    CPU_CFS,
    CPU_SHARES,
    CPUSET,
    MEMORY,
    MEMORY_RESERVATION,
    MEMSW,
    OOM_KILL_DISABLE,
    PIDS,
    SWAPPINESS,
    Host,
    ListError,
    format_list,
    parse_list,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, NoReturn

    from .flags import ParsedFlags

__all__ = [
    "HOST_CONFIG_DEFAULTS",
    "RESOURCE_FLAGS",
    "RESOURCE_KWARGS",
    "UPDATE_FLAGS",
    "Host",
    "Limits",
    "UpdateConflict",
    "limits_from_flags",
    "limits_from_kwargs",
    "oci_from_host_config",
    "update_limits",
    "update_request",
]

_PERIOD = 100000  # --cpus: the CFS period Docker uses, in microseconds
_NANO = 1_000_000_000

_OCI_THROTTLE = {
    "BlkioDeviceReadBps": "throttleReadBpsDevice",
    "BlkioDeviceWriteBps": "throttleWriteBpsDevice",
    "BlkioDeviceReadIOps": "throttleReadIOPSDevice",
    "BlkioDeviceWriteIOps": "throttleWriteIOPSDevice",
}

#: docker-py's keywords handled by :func:`limits_from_kwargs`.
RESOURCE_KWARGS = frozenset(
    (
        "mem_limit memswap_limit mem_reservation mem_swappiness oom_kill_disable nano_cpus "
        "cpu_period cpu_quota cpu_shares cpuset_cpus cpuset_mems pids_limit blkio_weight "
        "device_read_bps device_write_bps device_read_iops device_write_iops"
    ).split()
)


class UpdateConflict(UserError):
    """``update`` asks for something the container's current limits forbid
    (Docker: ``Cannot update container <id>: <message>``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


class Limits:
    """Resource limits: ``oci`` (OCI ``LinuxResources``, only what to write),
    ``host_config`` (Docker's ``HostConfig`` resource fields) and
    ``warnings`` (Docker's messages for what was dropped)."""

    __slots__ = ("host_config", "oci", "warnings")

    def __init__(
        self, oci: dict[str, Any], host_config: dict[str, Any], warnings: list[str] | None = None
    ) -> None:
        self.oci = oci
        self.host_config = host_config
        self.warnings = list(warnings or ())

    def empty(self) -> bool:
        """No limit to write."""
        return not self.oci

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Limits):
            return NotImplemented
        return (self.oci, self.host_config, self.warnings) == (
            other.oci,
            other.host_config,
            other.warnings,
        )

    def __repr__(self) -> str:
        return f"Limits(oci={self.oci!r}, warnings={self.warnings!r})"


def _fail(message: str) -> NoReturn:
    raise UserError(message)


# --------------------------------------------------------------------------- the daemon's checks


def _check_list(text: str, available: frozenset[int], what: str, missing: str) -> None:
    """Docker's ``isCpusetListAvailable`` with its messages."""
    if not text:
        return
    try:
        wanted = parse_list(text, max(8192, *available) if available else 8192)
    except ListError as err:
        _fail(f"Invalid value {text} for cpuset {what}: {err}")
    if not wanted <= available:
        _fail(
            f"Requested {missing} are not available - requested {text}, available: "
            f"{format_list(available)}"
        )


_THROTTLE_WORDS = (
    ("BlkioDeviceReadBps", "BPS Block I/O read limit", "Block I/O BPS read limit"),
    ("BlkioDeviceWriteBps", "BPS Block I/O write limit", "Block I/O BPS write limit"),
    ("BlkioDeviceReadIOps", "IOPS Block read limit", "Block I/O IOPS read limit"),
    ("BlkioDeviceWriteIOps", "IOPS Block write limit", "Block I/O IOPS write limit"),
)


def _verify(r: dict[str, Any], host: Host, update: bool) -> list[str]:
    """Docker's ``verifyPlatformContainerResources``: errors (UserError) and
    warnings; what the host cannot do is dropped from ``r``."""
    warn: list[str] = []
    if r["MemorySwappiness"] == -1:
        r["MemorySwappiness"] = None
    if r["Memory"] != 0 and r["Memory"] < MIN_MEMORY:
        _fail("Minimum memory limit allowed is 6MB")
    if r["Memory"] > 0 and not host.has(MEMORY):
        warn.append(
            "Your kernel does not support memory limit capabilities or the cgroup is "
            "not mounted. Limitation discarded."
        )
        r["Memory"], r["MemorySwap"] = 0, -1
    if r["Memory"] > 0 and r["MemorySwap"] != -1 and not host.has(MEMSW):
        warn.append(
            "Your kernel does not support swap limit capabilities or the cgroup is not "
            "mounted. Memory limited without swap."
        )
        r["MemorySwap"] = -1
    if r["Memory"] > 0 and r["MemorySwap"] > 0 and r["MemorySwap"] < r["Memory"]:
        _fail("Minimum memoryswap limit should be larger than memory limit, see usage")
    if r["Memory"] == 0 and r["MemorySwap"] > 0 and not update:
        _fail("You should always set the Memory limit when using Memoryswap limit, see usage")
    if r["MemorySwappiness"] is not None and not host.has(SWAPPINESS):
        warn.append(
            "Your kernel does not support memory swappiness capabilities or the cgroup "
            "is not mounted. Memory swappiness discarded."
        )
        r["MemorySwappiness"] = None
    swappiness = r["MemorySwappiness"]
    if swappiness is not None and not 0 <= swappiness <= 100:
        _fail(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    if r["MemoryReservation"] > 0 and not host.has(MEMORY_RESERVATION):
        warn.append(
            "Your kernel does not support memory soft limit capabilities or the cgroup "
            "is not mounted. Limitation discarded."
        )
        r["MemoryReservation"] = 0
    if 0 < r["MemoryReservation"] < MIN_MEMORY:
        _fail("Minimum memory reservation allowed is 6MB")
    if r["Memory"] > 0 and r["MemoryReservation"] > 0 and r["Memory"] < r["MemoryReservation"]:
        _fail("Minimum memory limit can not be less than memory reservation limit, see usage")
    if r["OomKillDisable"] is not None and not host.has(OOM_KILL_DISABLE):
        if r["OomKillDisable"]:
            warn.append("Your kernel does not support OomKillDisable. OomKillDisable discarded.")
        r["OomKillDisable"] = None
    if r["OomKillDisable"] and r["Memory"] == 0:
        warn.append(
            "OOM killer is disabled for the container, but no memory limit is set, "
            "this can result in the system running out of resources."
        )
    if r["PidsLimit"] is not None and not host.has(PIDS):
        if r["PidsLimit"] > 0:
            warn.append(
                "Your kernel does not support PIDs limit capabilities or the cgroup is "
                "not mounted. PIDs limit discarded."
            )
        r["PidsLimit"] = None

    nano = r["NanoCpus"]
    if nano > 0 and r["CpuPeriod"] > 0:
        _fail("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and r["CpuQuota"] > 0:
        _fail("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if nano > 0 and not host.has(CPU_CFS):
        _fail(
            "NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or "
            "the cgroup is not mounted"
        )
    if nano < 0 or nano > host.cpu_count * _NANO or 0 < nano < _NANO // 100:
        n = host.cpu_count
        _fail(f"Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available")
    if r["CpuShares"] < 0:
        _fail("shares: invalid argument")
    if r["CpuShares"] > 0 and not host.has(CPU_SHARES):
        warn.append(
            "Your kernel does not support CPU shares or the cgroup is not mounted. "
            "Shares discarded."
        )
        r["CpuShares"] = 0
    if (r["CpuPeriod"] != 0 or r["CpuQuota"] != 0) and not host.has(CPU_CFS):
        warn.append("Your kernel does not support CPU CFS scheduler. CPU period/quota discarded.")
        r["CpuPeriod"] = r["CpuQuota"] = 0
    if r["CpuPeriod"] != 0 and not 1000 <= r["CpuPeriod"] <= 1000000:
        _fail(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if 0 < r["CpuQuota"] < 1000:
        _fail("CPU cfs quota can not be less than 1ms (i.e. 1000)")

    if (r["CpusetCpus"] or r["CpusetMems"]) and not host.has(CPUSET):
        warn.append(
            "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded."
        )
        r["CpusetCpus"] = r["CpusetMems"] = ""
    _check_list(r["CpusetCpus"], host.cpus, "cpus", "CPUs")
    _check_list(r["CpusetMems"], host.mems, "mems", "memory nodes")

    if r["BlkioWeight"] > 0 and not host.has(BLKIO_WEIGHT):
        warn.append(
            "Your kernel does not support Block I/O weight or the cgroup is not "
            "mounted. Weight discarded."
        )
        r["BlkioWeight"] = 0
    if r["BlkioWeight"] > 0 and not 10 <= r["BlkioWeight"] <= 1000:
        _fail("Range of blkio weight is from 10 to 1000")
    for key, what, shown in _THROTTLE_WORDS:
        if r[key] and not host.has(BLKIO_THROTTLE):
            warn.append(
                f"Your kernel does not support {what} or the cgroup is not mounted. "
                f"{shown} discarded."
            )
            r[key] = []
    return warn


# --------------------------------------------------------------------------- OCI


def _device(path: str) -> tuple[int, int]:
    """A block device's major and minor numbers (Docker stats the path)."""
    import stat

    try:
        st = os.stat(path)
    except OSError as err:
        why = err.strerror or str(err)
        raise UserError(f"stat {path}: {why[:1].lower()}{why[1:]}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise UserError(f"{path} is not a block device")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def _throttle_oci(devices: list[dict[str, Any]]) -> list[dict[str, int]]:
    out = []
    for d in devices:
        major, minor = _device(str(d["Path"]))
        out.append({"major": major, "minor": minor, "rate": int(d["Rate"])})
    return out


def _sections(**parts: dict[str, Any]) -> dict[str, Any]:
    return {name: part for name, part in parts.items() if part}


def _cpu_limits(cpu: dict[str, Any], r: Mapping[str, Any]) -> None:
    if r["NanoCpus"] > 0:
        cpu["period"] = _PERIOD
        cpu["quota"] = r["NanoCpus"] * _PERIOD // _NANO
    else:
        if r["CpuPeriod"] != 0:
            cpu["period"] = r["CpuPeriod"]
        if r["CpuQuota"] != 0:
            cpu["quota"] = r["CpuQuota"] if r["CpuQuota"] > 0 else -1
    if r["CpusetCpus"]:
        cpu["cpus"] = r["CpusetCpus"]
    if r["CpusetMems"]:
        cpu["mems"] = r["CpusetMems"]


def _block_io(r: Mapping[str, Any]) -> dict[str, Any]:
    io: dict[str, Any] = {}
    if r["BlkioWeight"] > 0:
        io["weight"] = r["BlkioWeight"]
    for key in THROTTLES:
        if r[key]:
            io[_OCI_THROTTLE[key]] = _throttle_oci(r[key])
    return io


def _fields(hc: Mapping[str, Any]) -> dict[str, Any]:
    """``hc``'s resource fields, Docker's defaults for the missing ones."""
    out = defaults()
    for key in HOST_CONFIG_DEFAULTS:
        if hc.get(key) is not None:
            value = hc[key]
            out[key] = [dict(d) for d in value] if key in THROTTLES else value
    return out


def oci_from_host_config(host_config: Mapping[str, Any]) -> dict[str, Any]:
    """OCI ``linux.resources`` for a new cgroup from ``HostConfig``'s resource
    fields (what Docker's ``createSpec`` writes; unset and unlimited values,
    a new group's defaults, are left out).  Stats the throttled devices:
    UserError if one is missing or not a block device."""
    r = _fields(host_config)
    memory: dict[str, Any] = {}
    if r["Memory"] > 0:
        memory["limit"] = r["Memory"]
    if r["MemoryReservation"] > 0:
        memory["reservation"] = r["MemoryReservation"]
    if r["MemorySwap"] > 0:
        memory["swap"] = r["MemorySwap"]
    if r["MemorySwappiness"] is not None:
        memory["swappiness"] = r["MemorySwappiness"]
    if r["OomKillDisable"]:
        memory["disableOOMKiller"] = True
    cpu: dict[str, Any] = {}
    if r["CpuShares"] > 0:
        cpu["shares"] = r["CpuShares"]
    _cpu_limits(cpu, r)
    pids = {"limit": r["PidsLimit"]} if (r["PidsLimit"] or 0) > 0 else {}
    return _sections(memory=memory, cpu=cpu, pids=pids, blockIO=_block_io(r))


def _create(req: dict[str, Any], host: Host | None) -> Limits:
    warnings = _verify(req, host or Host.detect(), update=False)
    # Docker's adaptContainerSettings: swap defaults to twice the memory.
    if req["Memory"] > 0 and req["MemorySwap"] == 0:
        req["MemorySwap"] = 2 * req["Memory"]
    if req["OomKillDisable"] is None:
        req["OomKillDisable"] = False
    return Limits(oci_from_host_config(req), req, warnings)


# --------------------------------------------------------------------------- run / create


def limits_from_flags(parsed: ParsedFlags, host: Host | None = None) -> Limits:
    """``run``/``create``'s limits from its flags (:data:`RESOURCE_FLAGS`);
    ``host`` defaults to :meth:`Host.detect` (not read when no resource flag
    is given).  UserError (exit 125) with Docker's message on bad values."""
    if not any(parsed.given(f.dest) for f in RESOURCE_FLAGS):
        return Limits({}, defaults())
    return _create(request_from_flags(parsed, update=False), host)


def _py_int(kwargs: Mapping[str, Any], key: str) -> int:
    value = kwargs[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Invalid type for {key} param: expected int but found {type(value)}")
    return value


def _py_str(kwargs: Mapping[str, Any], key: str) -> str:
    value = kwargs[key]
    if not isinstance(value, str):
        raise TypeError(f"Invalid type for {key} param: expected str but found {type(value)}")
    return value


def _py_bytes(kwargs: Mapping[str, Any], key: str) -> int:
    from .client_options import parse_bytes

    value = kwargs[key]
    if key == "memswap_limit" and value in (-1, "-1"):
        return -1
    return parse_bytes(value)


def _py_devices(kwargs: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = kwargs[key]
    out = []
    for item in value if isinstance(value, (list, tuple)) else [value]:
        path = item.get("Path") if hasattr(item, "get") else None
        rate = item.get("Rate") if hasattr(item, "get") else None
        if not isinstance(path, str) or isinstance(rate, bool) or not isinstance(rate, int):
            raise APIError(f'invalid {key} entry {item!r}: expected {{"Path": str, "Rate": int}}')
        if rate < 0:
            raise APIError(f"invalid {key} entry {item!r}: the rate cannot be negative")
        out.append({"Path": path, "Rate": rate})
    return out


_KWARG_FIELDS = (
    ("mem_limit", "Memory", _py_bytes),
    ("memswap_limit", "MemorySwap", _py_bytes),
    ("mem_reservation", "MemoryReservation", _py_bytes),
    ("mem_swappiness", "MemorySwappiness", _py_int),
    ("nano_cpus", "NanoCpus", _py_int),
    ("cpu_period", "CpuPeriod", _py_int),
    ("cpu_quota", "CpuQuota", _py_int),
    ("cpu_shares", "CpuShares", _py_int),
    ("cpuset_cpus", "CpusetCpus", _py_str),
    ("cpuset_mems", "CpusetMems", _py_str),
    ("pids_limit", "PidsLimit", _py_int),
    ("blkio_weight", "BlkioWeight", _py_int),
    ("device_read_bps", "BlkioDeviceReadBps", _py_devices),
    ("device_write_bps", "BlkioDeviceWriteBps", _py_devices),
    ("device_read_iops", "BlkioDeviceReadIOps", _py_devices),
    ("device_write_iops", "BlkioDeviceWriteIOps", _py_devices),
)


def limits_from_kwargs(kwargs: Mapping[str, Any], host: Host | None = None) -> Limits:
    """docker-py's ``containers.run``/``create`` resource keywords
    (:data:`RESOURCE_KWARGS`; None means not given; others are ignored).
    APIError with the daemon's message on bad values, TypeError (docker-py's)
    on a value of the wrong type."""
    if all(kwargs.get(key) is None for key in RESOURCE_KWARGS):
        return Limits({}, defaults())
    req = defaults()
    req["OomKillDisable"] = None
    for key, field, convert in _KWARG_FIELDS:
        if kwargs.get(key) is not None:
            req[field] = convert(kwargs, key)
    if kwargs.get("oom_kill_disable") is not None:
        req["OomKillDisable"] = bool(kwargs["oom_kill_disable"])
    if req["PidsLimit"] is not None and req["PidsLimit"] <= 0:
        req["PidsLimit"] = None  # the API: 0 and -1 mean no limit
    try:
        return _create(req, host)
    except APIError:
        raise
    except UserError as err:
        raise APIError(err.message) from None


# --------------------------------------------------------------------------- update


def update_request(parsed: ParsedFlags) -> dict[str, Any]:
    """``update``'s request from its flags (:data:`UPDATE_FLAGS`), in
    ``HostConfig`` names with zero values for what was not given; UserError
    (exit 125) for a malformed value.  :func:`update_limits` parses it too:
    call this first to refuse bad flags before touching any container."""
    return request_from_flags(parsed, update=True)


def _merge(current: Mapping[str, Any], req: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Docker's ``UpdateContainer``: the merged resource fields, and whether
    the swap limit was implied (a first memory limit: twice the memory)."""
    cur = _fields(current)
    for asked, had, message in (
        ("NanoCpus", "CpuPeriod", "Nano CPUs cannot be updated as CPU Period has already been set"),
        ("NanoCpus", "CpuQuota", "Nano CPUs cannot be updated as CPU Quota has already been set"),
        ("CpuPeriod", "NanoCpus", "CPU Period cannot be updated as NanoCPUs has already been set"),
        ("CpuQuota", "NanoCpus", "CPU Quota cannot be updated as NanoCPUs has already been set"),
    ):
        if req[asked] > 0 and cur[had] > 0:
            raise UpdateConflict(f"Conflicting options: {message}")
    merged = dict(cur)
    for key in (
        "BlkioWeight",
        "CpuShares",
        "NanoCpus",
        "CpuPeriod",
        "CpuQuota",
        "MemoryReservation",
    ):
        if req[key] != 0:
            merged[key] = req[key]
    for key in ("CpusetCpus", "CpusetMems"):
        if req[key]:
            merged[key] = req[key]
    implied = False
    if req["Memory"] != 0:
        if 0 < cur["MemorySwap"] < req["Memory"] and req["MemorySwap"] == 0:
            raise UpdateConflict(
                "Memory limit should be smaller than already set memoryswap limit, "
                "update the memoryswap at the same time"
            )
        merged["Memory"] = req["Memory"]
        if req["MemorySwap"] == 0 and cur["MemorySwap"] == 0:
            merged["MemorySwap"] = 2 * req["Memory"]
            implied = True
    if req["MemorySwap"] != 0:
        merged["MemorySwap"] = req["MemorySwap"]
    if req["PidsLimit"] is not None:
        merged["PidsLimit"] = req["PidsLimit"]
    for key in THROTTLES:
        if req[key]:
            paths = {d["Path"] for d in req[key]}
            merged[key] = [d for d in cur[key] if d.get("Path") not in paths] + req[key]
    # What the kernel would refuse (memory.memsw.limit_in_bytes >= the limit).
    if merged["MemorySwap"] > 0 and merged["Memory"] == 0:
        _fail("You should always set the Memory limit when using Memoryswap limit, see usage")
    if 0 < merged["MemorySwap"] < merged["Memory"]:
        _fail("Minimum memoryswap limit should be larger than memory limit, see usage")
    return merged, implied


def update_limits(
    current: Mapping[str, Any], parsed: ParsedFlags, host: Host | None = None
) -> Limits:
    """``docker update``: ``current`` is the container's ``HostConfig``.
    ``oci`` holds only what to write now; ``host_config`` the merged resource
    fields.  UserError with the daemon's message (UpdateConflict for a
    conflict with the current limits)."""
    req = update_request(parsed)
    host = host or Host.detect()
    warnings = _verify(req, host, update=True)
    merged, implied = _merge(current, req)
    memory: dict[str, Any] = {}
    if req["Memory"] > 0:
        memory["limit"] = req["Memory"]
    if req["MemoryReservation"] > 0:
        memory["reservation"] = req["MemoryReservation"]
    if host.has(MEMSW) and (req["MemorySwap"] != 0 or implied):
        memory["swap"] = merged["MemorySwap"] if merged["MemorySwap"] > 0 else -1
    cpu: dict[str, Any] = {}
    if req["CpuShares"] > 0:
        cpu["shares"] = req["CpuShares"]
    _cpu_limits(cpu, req)
    pids = {} if req["PidsLimit"] is None else {"limit": req["PidsLimit"] or -1}
    oci = _sections(memory=memory, cpu=cpu, pids=pids, blockIO=_block_io(req))
    return Limits(oci, merged, warnings)
