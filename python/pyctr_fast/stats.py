"""Resource usage of a container, as Docker's ``GET /containers/{id}/stats``.

:func:`sample` reads one sample of a container: its cgroup's counters (CPU,
memory, block I/O, pids), the host's CPU time from /proc/stat and the
interfaces of its network namespace, shaped as the Engine API's stats object
(``read``, ``preread``, ``cpu_stats``, ``precpu_stats``, ``memory_stats``,
``blkio_stats``, ``pids_stats``, ``networks``, ``name``, ``id``), with Go's
``omitempty`` fields left out when zero.  ``precpu_stats`` is the previous
sample's ``cpu_stats`` (zeros for a first sample).

The cgroup readers are pure functions of directories, so they run as well on
a temp tree shaped like the kernel's: :func:`read_cgroup_v1` takes the
directory of each v1 controller (``cpu``, ``cpuacct``, ``memory``, ``pids``,
``blkio``), :func:`read_cgroup_v2` the one v2 directory.  What moby does is
mirrored: CPU times in nanoseconds (v1 ``cpuacct.stat`` is in USER_HZ, v2
``cpu.stat`` in microseconds), the memory limit clamped to the host's
``MemTotal`` (an unlimited group shows the host's memory), a ``pids.max`` of
``max`` as 0, v2 ``io.stat`` as ``read``/``write`` entries.  The host's
figure is moby's: the first seven fields of /proc/stat's ``cpu`` line.

:func:`collect` and :func:`stream` answer the Engine API's
``stream=false``/``stream=true``; :mod:`pyctr_fast.stats_cli` computes the
docker CLI's figures from such objects.  Stats are read, never written:
nothing here needs a lock.
"""

from __future__ import annotations

import os
import time

from . import records
from .errors import UserError
from .records import NEVER, Record, now

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

__all__ = [
    "collect",
    "empty_sample",
    "host_cpu_ns",
    "host_memory",
    "is_empty",
    "read_cgroup_v1",
    "read_cgroup_v2",
    "read_networks",
    "sample",
    "stream",
]

_NS = 1_000_000_000


# --------------------------------------------------------------------------- small readers


def _text(path: str) -> str | None:
    """A small (cgroup or proc) file's text, None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("ascii", "replace")
    except OSError:
        return None


def _int(path: str) -> int | None:
    """A file holding one integer (``max`` reads as None too)."""
    text = _text(path)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _flat_keyed(path: str) -> dict[str, int]:
    """A ``key value`` per line file (``memory.stat``, ``cpu.stat``...)."""
    out: dict[str, int] = {}
    for line in (_text(path) or "").splitlines():
        fields = line.split()
        if len(fields) == 2:
            try:
                out[fields[0]] = int(fields[1])
            except ValueError:
                continue
    return out


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (ValueError, OSError):
        return 100


def _pids_max(path: str) -> int:
    """``pids.max``: the limit, 0 for ``max`` (as moby reports it)."""
    value = _int(path)
    return value if value is not None and value > 0 else 0


def _zero_cpu() -> dict[str, Any]:
    return {
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }


def _blkio(
    service_bytes: list[dict[str, Any]] | None, serviced: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "io_service_bytes_recursive": service_bytes,
        "io_serviced_recursive": serviced,
        "io_queue_recursive": None,
        "io_service_time_recursive": None,
        "io_wait_time_recursive": None,
        "io_merged_recursive": None,
        "io_time_recursive": None,
        "sectors_recursive": None,
    }


def _memory(
    usage: int | None,
    limit: int | None,
    stats: dict[str, int],
    machine_memory: int,
    **extra: int | None,
) -> dict[str, Any]:
    """``memory_stats`` with moby's clamp of the limit and Go's omitempty."""
    if limit is None or (machine_memory > 0 and limit > machine_memory):
        limit = machine_memory
    out: dict[str, Any] = {}
    if usage:
        out["usage"] = usage
    for key, value in extra.items():
        if value:
            out[key] = value
    if stats:
        out["stats"] = stats
    if limit:
        out["limit"] = limit
    return out


# --------------------------------------------------------------------------- cgroup v1


def _v1_blkio(path: str) -> list[dict[str, Any]] | None:
    """``MAJ:MIN Op N`` lines (the closing ``Total N`` line is not an entry)."""
    text = _text(path)
    if text is None:
        return None
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or ":" not in fields[0]:
            continue
        major, _, minor = fields[0].partition(":")
        try:
            out.append(
                {"major": int(major), "minor": int(minor), "op": fields[1], "value": int(fields[2])}
            )
        except ValueError:
            continue
    return out


def read_cgroup_v1(
    dirs: Mapping[str, str | None], *, machine_memory: int = 0, clock_ticks: int | None = None
) -> dict[str, Any]:
    """``cpu_stats`` (without the host's figures), ``memory_stats``,
    ``blkio_stats`` and ``pids_stats`` of a v1 cgroup whose controllers'
    directories ``dirs`` gives (``cpuacct``, ``cpu``, ``memory``, ``pids``,
    ``blkio``; a missing one contributes nothing).  ``machine_memory``: the
    host's memory, the limit of an unlimited group."""
    ticks = clock_ticks or _clock_ticks()
    cpu = _zero_cpu()
    acct = dirs.get("cpuacct")
    if acct:
        try:
            percpu = [
                int(x) for x in (_text(os.path.join(acct, "cpuacct.usage_percpu")) or "").split()
            ]
        except ValueError:
            percpu = []
        times = _flat_keyed(os.path.join(acct, "cpuacct.stat"))
        usage: dict[str, Any] = {"total_usage": _int(os.path.join(acct, "cpuacct.usage")) or 0}
        if percpu:
            usage["percpu_usage"] = percpu
        usage["usage_in_kernelmode"] = times.get("system", 0) * _NS // ticks
        usage["usage_in_usermode"] = times.get("user", 0) * _NS // ticks
        cpu["cpu_usage"] = usage
    cpudir = dirs.get("cpu")
    if cpudir:
        st = _flat_keyed(os.path.join(cpudir, "cpu.stat"))
        cpu["throttling_data"] = {
            "periods": st.get("nr_periods", 0),
            "throttled_periods": st.get("nr_throttled", 0),
            "throttled_time": st.get("throttled_time", 0),
        }
    memory: dict[str, Any] = {}
    mem = dirs.get("memory")
    if mem:
        stats = _flat_keyed(os.path.join(mem, "memory.stat"))
        limit = _int(os.path.join(mem, "memory.limit_in_bytes"))
        hierarchical = stats.get("hierarchical_memory_limit")
        if hierarchical is not None and (limit is None or hierarchical < limit):
            limit = hierarchical
        memory = _memory(
            _int(os.path.join(mem, "memory.usage_in_bytes")),
            limit,
            stats,
            machine_memory,
            max_usage=_int(os.path.join(mem, "memory.max_usage_in_bytes")),
            failcnt=_int(os.path.join(mem, "memory.failcnt")),
        )
        # Go's order: usage, max_usage, stats, failcnt, limit.
        memory = {
            k: memory[k] for k in ("usage", "max_usage", "stats", "failcnt", "limit") if k in memory
        }
    pids: dict[str, Any] = {}
    pdir = dirs.get("pids")
    if pdir:
        current = _int(os.path.join(pdir, "pids.current")) or 0
        limit = _pids_max(os.path.join(pdir, "pids.max"))
        pids = {k: v for k, v in (("current", current), ("limit", limit)) if v}
    blk = dirs.get("blkio")
    service_bytes = serviced = None
    if blk:
        service_bytes = _v1_blkio(os.path.join(blk, "blkio.io_service_bytes_recursive"))
        serviced = _v1_blkio(os.path.join(blk, "blkio.io_serviced_recursive"))
        if service_bytes is None:  # no CFQ accounting: the throttle layer's
            service_bytes = _v1_blkio(
                os.path.join(blk, "blkio.throttle.io_service_bytes_recursive")
            )
            serviced = _v1_blkio(os.path.join(blk, "blkio.throttle.io_serviced_recursive"))
    return {
        "pids_stats": pids,
        "blkio_stats": _blkio(service_bytes or None, serviced or None),
        "cpu_stats": cpu,
        "memory_stats": memory,
    }


# --------------------------------------------------------------------------- cgroup v2


def _v2_io(path: str) -> list[dict[str, Any]] | None:
    """``io.stat`` lines ``MAJ:MIN rbytes=.. wbytes=.. ...`` as moby's
    ``read``/``write`` entries."""
    out = []
    for line in (_text(path) or "").splitlines():
        fields = line.split()
        if not fields or ":" not in fields[0]:
            continue
        major, _, minor = fields[0].partition(":")
        kv = dict(f.partition("=")[::2] for f in fields[1:])
        try:
            dev = {"major": int(major), "minor": int(minor)}
            read, write = int(kv.get("rbytes", 0)), int(kv.get("wbytes", 0))
        except ValueError:
            continue
        out.append({**dev, "op": "read", "value": read})
        out.append({**dev, "op": "write", "value": write})
    return out or None


def read_cgroup_v2(path: str, *, machine_memory: int = 0) -> dict[str, Any]:
    """``cpu_stats`` (without the host's figures), ``memory_stats``,
    ``blkio_stats`` and ``pids_stats`` of the cgroup v2 directory ``path``."""
    cpu = _zero_cpu()
    st = _flat_keyed(os.path.join(path, "cpu.stat"))
    if st:
        cpu["cpu_usage"] = {
            "total_usage": st.get("usage_usec", 0) * 1000,
            "usage_in_kernelmode": st.get("system_usec", 0) * 1000,
            "usage_in_usermode": st.get("user_usec", 0) * 1000,
        }
        cpu["throttling_data"] = {
            "periods": st.get("nr_periods", 0),
            "throttled_periods": st.get("nr_throttled", 0),
            "throttled_time": st.get("throttled_usec", 0) * 1000,
        }
    memory: dict[str, Any] = {}
    usage = _int(os.path.join(path, "memory.current"))
    if usage is not None:
        events = _flat_keyed(os.path.join(path, "memory.events"))
        memory = _memory(
            usage,
            _int(os.path.join(path, "memory.max")),
            _flat_keyed(os.path.join(path, "memory.stat")),
            machine_memory,
            failcnt=events.get("oom"),
        )
        memory = {k: memory[k] for k in ("usage", "stats", "failcnt", "limit") if k in memory}
    pids: dict[str, Any] = {}
    current = _int(os.path.join(path, "pids.current"))
    if current is not None:
        limit = _pids_max(os.path.join(path, "pids.max"))
        pids = {k: v for k, v in (("current", current), ("limit", limit)) if v}
    return {
        "pids_stats": pids,
        "blkio_stats": _blkio(_v2_io(os.path.join(path, "io.stat"))),
        "cpu_stats": cpu,
        "memory_stats": memory,
    }


# --------------------------------------------------------------------------- host, network


def host_cpu_ns(proc_stat: str = "/proc/stat", clock_ticks: int | None = None) -> int:
    """The host's CPU time in nanoseconds as moby counts it: the first seven
    fields of the ``cpu`` line (user nice system idle iowait irq softirq)."""
    for line in (_text(proc_stat) or "").splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                ticks = sum(int(x) for x in fields[1:8])
            except ValueError:
                return 0
            return ticks * _NS // (clock_ticks or _clock_ticks())
    return 0


def host_memory(meminfo: str = "/proc/meminfo") -> int:
    """``MemTotal`` in bytes (0 when unknown)."""
    for line in (_text(meminfo) or "").splitlines():
        if line.startswith("MemTotal:"):
            fields = line.split()
            try:
                return int(fields[1]) * (1024 if fields[2:3] == ["kB"] else 1)
            except (IndexError, ValueError):
                return 0
    return 0


def _online_cpus() -> int:
    try:
        return int(os.sysconf("SC_NPROCESSORS_ONLN"))
    except (ValueError, OSError):
        return os.cpu_count() or 0


_NET_FIELDS = (
    "rx_bytes",
    "rx_packets",
    "rx_errors",
    "rx_dropped",
    None,
    None,
    None,
    None,
    "tx_bytes",
    "tx_packets",
    "tx_errors",
    "tx_dropped",
)


_NET_ORDER = (
    "rx_bytes",
    "rx_packets",
    "rx_errors",
    "rx_dropped",
    "tx_bytes",
    "tx_packets",
    "tx_errors",
    "tx_dropped",
)


def read_networks(net_dev: str) -> dict[str, dict[str, int]]:
    """The interfaces of a ``/proc/<pid>/net/dev`` but the loopback, as
    moby's ``networks`` (moby reports the interfaces it put in the
    container's namespace: never ``lo``)."""
    out: dict[str, dict[str, int]] = {}
    for line in (_text(net_dev) or "").splitlines()[2:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or not name or name == "lo":
            continue
        values = rest.split()
        entry: dict[str, int] = {}
        for key, value in zip(_NET_FIELDS, values):
            if key is not None:
                try:
                    entry[key] = int(value)
                except ValueError:
                    entry[key] = 0
        out[name] = {k: entry.get(k, 0) for k in _NET_ORDER}
    return out


def _own_netns(pid: int) -> bool:
    """Whether ``pid`` has a network namespace of its own (not the host's)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


# --------------------------------------------------------------------------- samples


def empty_sample(rec: Record) -> dict[str, Any]:
    """What moby answers for a container that does not run: zeros."""
    return {
        "read": NEVER,
        "preread": NEVER,
        "pids_stats": {},
        "blkio_stats": _blkio(None),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _zero_cpu(),
        "precpu_stats": _zero_cpu(),
        "memory_stats": {},
        "name": "/" + rec.name,
        "id": rec.id,
    }


def is_empty(data: Mapping[str, Any]) -> bool:
    """Whether a sample is :func:`empty_sample`'s (the container did not run)."""
    return bool(data.get("read", NEVER) == NEVER)


def _cgroup_part(rec: Record, machine_memory: int) -> dict[str, Any] | None:
    """The cgroup's counters, None when the container has no cgroup."""
    from . import supervision

    plan = supervision.cgroup_plan(rec)
    if plan is None:
        return None
    if plan.version == 2:
        d = plan.dir_for("memory") or plan.dir_for("cpu") or (plan.dirs[0] if plan.dirs else None)
        if d is None or not os.path.isdir(d):
            return None
        return read_cgroup_v2(d, machine_memory=machine_memory)
    dirs = {c: plan.dir_for(c) for c in ("cpuacct", "cpu", "memory", "pids", "blkio")}
    if not any(d and os.path.isdir(d) for d in dirs.values()):
        return None
    return read_cgroup_v1(dirs, machine_memory=machine_memory)


def _procfs_part(rec: Record) -> dict[str, Any]:
    """Counters for a container without a cgroup (a foreground ``run``): the
    CPU time and number of the processes of its pid namespace."""
    from .inspection import container_pids

    try:
        pids = container_pids(rec)
    except (UserError, OSError):  # it stopped meanwhile: nothing to count
        pids = []
    ticks = _clock_ticks()
    user = system = 0
    for p in pids:
        raw = _text(f"/proc/{p}/stat") or ""
        fields = raw[raw.rfind(")") + 2 :].split()
        try:
            user += int(fields[11])
            system += int(fields[12])
        except (IndexError, ValueError):
            continue
    cpu = _zero_cpu()
    cpu["cpu_usage"] = {
        "total_usage": (user + system) * _NS // ticks,
        "usage_in_kernelmode": system * _NS // ticks,
        "usage_in_usermode": user * _NS // ticks,
    }
    return {
        "pids_stats": {"current": len(pids)} if pids else {},
        "blkio_stats": _blkio(None),
        "cpu_stats": cpu,
        "memory_stats": {},
    }


def sample(
    rec: Record, previous: Mapping[str, Any] | None = None, *, machine_memory: int | None = None
) -> dict[str, Any]:
    """One stats object of the container (Docker's shape); ``previous``, an
    earlier sample of it, gives ``preread`` and ``precpu_stats``.  A
    container that is not running (or is restarting) gives zeros."""
    state = rec.state()
    pid = int(state.get("Pid") or 0)
    if not state.get("Running") or state.get("Restarting") or pid <= 0:
        return empty_sample(rec)
    memory = host_memory() if machine_memory is None else machine_memory
    read = now()
    part = _cgroup_part(rec, memory)
    if part is None:
        part = _procfs_part(rec)
        part["memory_stats"] = {"limit": memory} if memory else {}
    cpu = part["cpu_stats"]
    system = host_cpu_ns()
    if system:
        cpu["system_cpu_usage"] = system
    online = _online_cpus()
    if online:
        cpu["online_cpus"] = online
    cpu["throttling_data"] = cpu.pop("throttling_data")
    if previous is not None and is_empty(previous):
        previous = None
    prev_cpu = previous.get("cpu_stats") if previous else None
    out: dict[str, Any] = {
        "read": read,
        "preread": str(previous.get("read", NEVER)) if previous else NEVER,
        "pids_stats": part["pids_stats"],
        "blkio_stats": part["blkio_stats"],
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu,
        "precpu_stats": dict(prev_cpu) if isinstance(prev_cpu, dict) else _zero_cpu(),
        "memory_stats": part["memory_stats"],
        "name": "/" + rec.name,
        "id": rec.id,
    }
    if _own_netns(pid):
        networks = read_networks(f"/proc/{pid}/net/dev")
        if networks:
            out["networks"] = networks
    return out


def collect(
    root: str, ref: str, *, one_shot: bool = False, interval: float = 1.0
) -> dict[str, Any]:
    """The Engine API's ``stream=false`` answer for container ``ref``: a
    sample whose ``precpu_stats`` is one taken ``interval`` seconds earlier
    (``one_shot``: a single sample, zeros as ``precpu_stats``)."""
    rec = records.resolve(root, ref)
    first = sample(rec)
    if one_shot or is_empty(first):
        return first
    time.sleep(interval)
    try:
        rec = Record(root, rec.id)
    except (OSError, ValueError):
        return first  # removed meanwhile
    return sample(rec, first)


def stream(root: str, ref: str, *, interval: float = 1.0) -> Iterator[dict[str, Any]]:
    """The Engine API's ``stream=true`` answer for container ``ref``
    (resolved now: an unknown one raises at once): a sample at once, then one
    every ``interval`` seconds while the container runs.  A container that
    does not run gives one sample of zeros."""
    return _samples(records.resolve(root, ref), interval)


def _samples(rec: Record, interval: float) -> Iterator[dict[str, Any]]:
    data = sample(rec)
    yield data
    while not is_empty(data):
        time.sleep(interval)
        try:
            rec = Record(rec.root, rec.id)
        except (OSError, ValueError):
            return  # removed
        data = sample(rec, data)
        if is_empty(data):
            return  # it stopped: the stream ends, as moby's does
        yield data
