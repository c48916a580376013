"""``pyctr-fast stats [OPTIONS] [CONTAINER...]``, as ``docker stats``.

Without containers it shows the running ones (``-a``: all), refreshing the
screen every second until interrupted; ``--no-stream`` prints one table.
Each row comes from two samples of :mod:`pyctr_fast.stats` a second apart
and is computed as the docker CLI does: CPU % over the host's CPU time,
memory without the inactive file cache over the limit, network and block
I/O totals, and the number of processes.  Sizes print as Docker's go-units:
memory in binary units (``1.5MiB / 23.54GiB``), I/O in decimal ones
(``1.2kB / 0B``).  A container that does not run shows zeros with
``--no-stream`` and ``--`` while streaming (docker's "timeout waiting for
stats").  ``--format`` takes ``table``, ``json`` or a Go template over
``.Container .Name .ID .CPUPerc .MemUsage .MemPerc .NetIO .BlockIO .PIDs``.
"""

from __future__ import annotations

import sys
import time

from .errors import UserError
from .flags import BOOL, VALUE, Flag, write_out

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from .records import Record

__all__ = [
    "COMMANDS",
    "STATS_HEADERS",
    "StatsRow",
    "block_io",
    "bytes_size",
    "cpu_percent",
    "human_size",
    "memory_usage",
    "network_io",
    "stats_cli",
]

PROG = "pyctr-fast"
INTERVAL = 1.0
CLEAR = "\x1b[2J\x1b[H"

STATS_FLAGS = (
    Flag("all", BOOL, "Show all containers (default shows just running)", short="a"),
    Flag("format", VALUE, "Format output using a custom template"),
    Flag("help", BOOL, "Print usage"),
    Flag("no-stream", BOOL, "Disable streaming stats and only pull the first result"),
    Flag("no-trunc", BOOL, "Do not truncate output"),
)

DEFAULT_FORMAT = (
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}"
    "\t{{.BlockIO}}\t{{.PIDs}}"
)

STATS_HEADERS = {
    "Container": "CONTAINER",
    "Name": "NAME",
    "ID": "CONTAINER ID",
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}

_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def _go_g(value: float, precision: int) -> str:
    """Go's ``%.<precision>g`` (Python's agrees but for the exponent's
    two-digit minimum, which both have)."""
    return f"{value:.{precision}g}"


def _custom_size(size: float, base: float, units: Sequence[str], precision: int) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return _go_g(size, precision) + units[i]


def bytes_size(size: float) -> str:
    """go-units ``BytesSize``: binary units, 4 significant digits (``1.5MiB``)."""
    return _custom_size(size, 1024.0, _BINARY, 4)


def human_size(size: float, precision: int = 3) -> str:
    """go-units ``HumanSizeWithPrecision``: decimal units (``1.2kB``)."""
    return _custom_size(size, 1000.0, _DECIMAL, precision)


def cpu_percent(stats: Mapping[str, Any]) -> float:
    """The docker CLI's CPU %: the container's CPU time over the host's
    between ``precpu_stats`` and ``cpu_stats``, times the online CPUs."""
    cur = stats.get("cpu_stats") or {}
    pre = stats.get("precpu_stats") or {}
    cpu_delta = float((cur.get("cpu_usage") or {}).get("total_usage", 0)) - float(
        (pre.get("cpu_usage") or {}).get("total_usage", 0)
    )
    system_delta = float(cur.get("system_cpu_usage", 0)) - float(pre.get("system_cpu_usage", 0))
    online = float(cur.get("online_cpus", 0)) or float(
        len((cur.get("cpu_usage") or {}).get("percpu_usage") or [])
    )
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def memory_usage(stats: Mapping[str, Any]) -> tuple[int, int]:
    """``(usage without the inactive file cache, limit)``, as the docker CLI
    computes them (v1 ``total_inactive_file``, v2 ``inactive_file``)."""
    mem = stats.get("memory_stats") or {}
    usage = int(mem.get("usage", 0))
    raw = mem.get("stats") or {}
    if "total_inactive_file" in raw and int(raw["total_inactive_file"]) < usage:
        usage -= int(raw["total_inactive_file"])
    elif int(raw.get("inactive_file", 0)) < usage:
        usage -= int(raw.get("inactive_file", 0))
    return usage, int(mem.get("limit", 0))


def block_io(stats: Mapping[str, Any]) -> tuple[int, int]:
    """``(bytes read, bytes written)``: entries whose op starts with r / w."""
    read = write = 0
    for entry in (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op", ""))[:1].lower()
        if op == "r":
            read += int(entry.get("value", 0))
        elif op == "w":
            write += int(entry.get("value", 0))
    return read, write


def network_io(stats: Mapping[str, Any]) -> tuple[int, int]:
    """``(bytes received, bytes sent)`` over every interface."""
    rx = tx = 0
    for entry in (stats.get("networks") or {}).values():
        rx += int(entry.get("rx_bytes", 0))
        tx += int(entry.get("tx_bytes", 0))
    return rx, tx


def _percent(value: float) -> str:
    return f"{value:.2f}%"


class StatsRow:
    """One container as ``docker stats --format`` sees it.  ``data`` is a
    sample (:func:`pyctr_fast.stats.sample`); an ``invalid`` row (or one
    without data) shows ``--`` in every figure, as docker's invalid entry."""

    def __init__(
        self,
        container: str,
        data: Mapping[str, Any] | None,
        *,
        trunc: bool = True,
        invalid: bool = False,
    ) -> None:
        self._container = container
        self._trunc = trunc
        self._invalid = invalid or data is None
        data = data or {}
        self._name = str(data.get("name") or "")
        self._id = str(data.get("id") or "")
        self._cpu = cpu_percent(data)
        self._mem, self._limit = memory_usage(data)
        self._net = network_io(data)
        self._blk = block_io(data)
        self._pids = int((data.get("pids_stats") or {}).get("current", 0))

    @property
    def Container(self) -> str:
        return self._container

    @property
    def Name(self) -> str:
        return self._name[1:] if len(self._name) > 1 else "--"

    @property
    def ID(self) -> str:
        return self._id[:12] if self._trunc else self._id

    @property
    def CPUPerc(self) -> str:
        return "--" if self._invalid else _percent(self._cpu)

    @property
    def MemUsage(self) -> str:
        if self._invalid:
            return "-- / --"
        return f"{bytes_size(self._mem)} / {bytes_size(self._limit)}"

    @property
    def MemPerc(self) -> str:
        if self._invalid:
            return "--"
        return _percent(self._mem / self._limit * 100.0 if self._limit else 0.0)

    @property
    def NetIO(self) -> str:
        if self._invalid:
            return "--"
        return f"{human_size(self._net[0])} / {human_size(self._net[1])}"

    @property
    def BlockIO(self) -> str:
        if self._invalid:
            return "--"
        return f"{human_size(self._blk[0])} / {human_size(self._blk[1])}"

    @property
    def PIDs(self) -> str:
        return "--" if self._invalid else str(self._pids)

    def __json__(self) -> dict[str, str]:
        """``{{json .}}``: every field, keys sorted (Go marshals a map)."""
        return {k: getattr(self, k) for k in sorted(STATS_HEADERS)}


class _Watch:
    """The containers shown and their last samples.  ``refs``: the
    containers named on the command line (resolved once), else None: the
    running ones (all with ``everything``), listed again at each refresh."""

    def __init__(self, root: str, refs: list[tuple[str, Record]] | None, everything: bool) -> None:
        from . import stats

        self.root = root
        self.refs = refs
        self.everything = everything
        self.order: list[str] = []
        self.shown: dict[str, str] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.memory = stats.host_memory()

    def _current(self) -> list[tuple[str, Record | None]]:
        from . import records

        if self.refs is not None:
            out: list[tuple[str, Record | None]] = []
            for shown, rec in self.refs:
                try:
                    out.append((shown, records.Record(self.root, rec.id)))
                except (OSError, ValueError):
                    out.append((shown, None))  # removed meanwhile
            return out
        recs = {}
        for rec in records.all_records(self.root):
            if self.everything or rec.state()["Running"]:
                recs[rec.id] = rec
        self.order = [cid for cid in self.order if cid in recs]
        self.order += [cid for cid in recs if cid not in self.order]
        return [(cid, recs[cid]) for cid in self.order]

    def take(self) -> list[tuple[str, Record | None, dict[str, Any] | None]]:
        """A new sample of every container shown (None: it is gone)."""
        from . import stats

        out: list[tuple[str, Record | None, dict[str, Any] | None]] = []
        fresh: dict[str, dict[str, Any]] = {}
        for shown, rec in self._current():
            data = None
            if rec is not None:
                try:
                    data = stats.sample(rec, self.last.get(rec.id), machine_memory=self.memory)
                except (OSError, ValueError):
                    data = None
                if data is not None:
                    fresh[rec.id] = data
            out.append((shown, rec, data))
        self.last = fresh
        return out


def _rows(
    taken: list[tuple[str, Record | None, dict[str, Any] | None]], trunc: bool, streaming: bool
) -> list[StatsRow]:
    from .stats import is_empty

    rows = []
    for shown, rec, data in taken:
        # Streaming, a container that does not run is docker's invalid row
        # (its "timeout waiting for stats"); once, it is zeros.
        invalid = data is None or (streaming and is_empty(data))
        if invalid and rec is not None:
            data = {"name": "/" + rec.name, "id": rec.id}
        rows.append(StatsRow(shown, data, trunc=trunc, invalid=invalid))
    return rows


def _render(fmt: str, rows: Sequence[StatsRow]) -> str:
    from .views_cli import render_rows

    return render_rows(fmt, rows, STATS_HEADERS)


def stats_cli(args: Sequence[str], root: str | None) -> int:
    from . import records
    from .lifecycle_cli import _parse
    from .views_cli import _root

    got = _parse(
        "stats",
        args,
        STATS_FLAGS,
        "[OPTIONS] [CONTAINER...]",
        "Display a live stream of container(s) resource usage statistics",
    )
    if got is None:
        return 0
    parsed, words = got
    fmt = parsed.value("format") or "table"
    if fmt == "table":
        fmt = DEFAULT_FORMAT
    _render(fmt, [])  # a bad template fails before anything is read
    state_root = _root(root)
    refs: list[tuple[str, Record]] | None = None
    if words:
        refs = []
        errors = []
        for word in words:
            try:
                refs.append((word, records.resolve(state_root, word)))
            except UserError as err:
                errors.append(err.message)
        if errors:
            sys.stderr.write("".join(f"{PROG}: {e}\n" for e in errors))
            return 1
    watch = _Watch(state_root, refs, parsed.flag("all"))
    trunc = not parsed.flag("no-trunc")
    try:
        if parsed.flag("no-stream"):
            return _once(watch, fmt, trunc)
        _stream(watch, fmt, trunc)
    except BrokenPipeError:
        return 0
    return 0


def _once(watch: _Watch, fmt: str, trunc: bool) -> int:
    from .stats import is_empty

    taken = watch.take()
    if any(data is not None and not is_empty(data) for *_, data in taken):
        time.sleep(INTERVAL)  # a second sample, for the CPU's delta
        taken = watch.take()
    if not taken:
        return 0  # docker prints nothing, not even the header
    write_out(_render(fmt, _rows(taken, trunc, streaming=False)))
    return 0


def _stream(watch: _Watch, fmt: str, trunc: bool, frames: int | None = None) -> None:
    """Refresh the screen every :data:`INTERVAL` until interrupted (or
    ``frames`` times)."""
    watch.take()
    deadline = time.monotonic()
    shown = 0
    while frames is None or shown < frames:
        deadline += INTERVAL
        time.sleep(max(0.0, deadline - time.monotonic()))
        text = _render(fmt, _rows(watch.take(), trunc, streaming=True))
        sys.stdout.write(CLEAR + text)
        sys.stdout.flush()
        shown += 1


COMMANDS: dict[str, Callable[[Sequence[str], str | None], int]] = {"stats": stats_cli}
