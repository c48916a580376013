"""Reading containers for people: ``ps`` lists and rows, ``inspect`` objects, ``top``.

Everything is computed from the container directory (docs/lifecycle.md) and
:meth:`Record.state` (the state checked against the kernel).  The shapes and
wordings are Docker's:

* :func:`list_containers` is ``docker ps``'s selection: running containers or
  all, ``-n``/``-l``, and the filters ``id``, ``name``, ``status``,
  ``exited``, ``label``, ``ancestor``, ``before``, ``since`` (plus
  ``network``, ``volume``, ``health``, ``is-task``, ``publish``, ``expose``,
  ``isolation``, which this engine answers trivially);
* :class:`PsRow` is one line of ``docker ps`` (the fields ``--format`` sees);
* :func:`inspect_container` is ``docker inspect``'s object, plus
  ``Namespaces`` (``/proc/<pid>/ns/<kind>`` of a running container);
* :func:`top` is ``docker top``: host ``ps`` output restricted to the
  container's processes.
"""

from __future__ import annotations

import json
import re
import time

from . import timefmt
from .errors import UserError
from .records import NEVER, STATUSES, Record, all_records, resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

__all__ = [
    "PS_HEADERS",
    "PsRow",
    "go_quote",
    "inspect_container",
    "list_containers",
    "parse_filters",
    "top",
]

FILTER_KEYS = frozenset(
    (
        "ancestor",
        "before",
        "expose",
        "exited",
        "health",
        "id",
        "is-task",
        "isolation",
        "label",
        "name",
        "network",
        "publish",
        "since",
        "status",
        "volume",
    )
)


# --------------------------------------------------------------------------- container files


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def spec_of(rec: Record) -> dict[str, Any]:
    """The container's OCI spec (``config.json``), ``{}`` if unreadable."""
    data = _read_json(rec.path("config.json"))
    return data if isinstance(data, dict) else {}


def launch_of(rec: Record) -> dict[str, Any]:
    """The container's ``launch.json``, ``{}`` if there is none."""
    data = _read_json(rec.path("launch.json"))
    return data if isinstance(data, dict) else {}


def log_path(rec: Record, launch: dict[str, Any] | None = None) -> str:
    launch = launch_of(rec) if launch is None else launch
    return str(launch.get("log_path") or rec.path(f"{rec.id}-json.log"))


def _command_line(rec: Record, spec: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    path = rec.container.get("Path")
    args = rec.container.get("Args")
    if path is None:
        spec = spec_of(rec) if spec is None else spec
        argv = list((spec.get("process") or {}).get("args") or [])
        path, args = (argv[0] if argv else ""), argv[1:]
    return str(path), [str(a) for a in (args or [])]


def _labels(rec: Record) -> dict[str, str]:
    labels = (rec.container.get("Config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _network_mode(rec: Record, spec: dict[str, Any] | None = None) -> str:
    mode = (rec.container.get("HostConfig") or {}).get("NetworkMode")
    if mode:
        return str(mode)
    spec = spec_of(rec) if spec is None else spec
    kinds = {ns.get("type") for ns in (spec.get("linux") or {}).get("namespaces") or []}
    return "none" if "network" in kinds else "host"


def _user_binds(rec: Record, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Docker's ``Mounts``: the user's bind mounts (not the engine's /etc files)."""
    out = []
    for m in spec.get("mounts") or []:
        if m.get("type") != "bind":
            continue
        source = str(m.get("source", ""))
        if source == rec.dir or source.startswith(rec.dir + "/"):
            continue
        options = m.get("options") or []
        propagation = next(
            (o for o in options if o.lstrip("r") in ("private", "shared", "slave")), "rprivate"
        )
        out.append(
            {
                "Type": "bind",
                "Source": source,
                "Destination": str(m.get("destination", "")),
                "Mode": "ro" if "ro" in options else "",
                "RW": "ro" not in options,
                "Propagation": propagation,
            }
        )
    return out


def _image_id(rec: Record) -> str:
    image = rec.container.get("Image")
    if image:
        return str(image)
    try:
        with open(rec.path("image"), encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _image_name(rec: Record, spec: dict[str, Any] | None = None) -> str:
    name = rec.container.get("ImageName") or (rec.container.get("Config") or {}).get("Image")
    if name:
        return str(name)
    image = _image_id(rec)
    if image:
        return image
    spec = spec_of(rec) if spec is None else spec
    return str((spec.get("root") or {}).get("path") or "")


# --------------------------------------------------------------------------- listing


def parse_filters(filters: Iterable[str]) -> dict[str, list[str]]:
    """``["k=v", ...]`` as ``{k: [v, ...]}``, with Docker's errors."""
    out: dict[str, list[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError("bad format of filter (expected name=value)")
        key = key.strip().lower()
        if key not in FILTER_KEYS:
            raise UserError(f"invalid filter '{key}'", exit_code=1)
        out.setdefault(key, []).append(value.strip())
    return out


def _match_regex(values: list[str], source: str, extra: Sequence[str] = ()) -> bool:
    for value in values:
        if value == source or value in extra:
            return True
        try:
            if re.search(value, source):
                return True
        except re.error:
            continue
    return False


def _match_labels(values: list[str], labels: dict[str, str]) -> bool:
    for value in values:
        key, sep, want = value.partition("=")
        if key not in labels or (sep and labels[key] != want):
            return False
    return True


def _ancestors(root: str, values: list[str]) -> set[str]:
    """Image ids named by ``ancestor=`` values (unknown images match nothing)."""
    from .images import resolve_image
    from .store import Store

    found: set[str] = set()
    store = Store(root)
    for value in values:
        try:
            found.add(resolve_image(store, value).id)
        except (UserError, OSError, ValueError):
            continue
    return found


class _Selector:
    def __init__(self, root: str, filters: dict[str, list[str]]) -> None:
        self.f = filters
        for value in filters.get("status", ()):
            if value not in STATUSES:
                raise UserError(f"invalid filter 'status={value}'", exit_code=1)
        self.exited: list[int] = []
        for value in filters.get("exited", ()):
            try:
                self.exited.append(int(value))
            except ValueError:
                raise UserError(
                    f'strconv.Atoi: parsing "{value}": invalid syntax', exit_code=1
                ) from None
        for value in filters.get("health", ()):
            if value not in ("starting", "healthy", "unhealthy", "none"):
                raise UserError(f"invalid filter 'health={value}'", exit_code=1)
        for value in filters.get("is-task", ()):
            if value not in ("true", "false"):
                raise UserError(f"invalid filter 'is-task={value}'", exit_code=1)
        self.ancestors = _ancestors(root, filters["ancestor"]) if "ancestor" in filters else None
        self.before = self._ref(root, "before")
        self.since = self._ref(root, "since")

    def _ref(self, root: str, key: str) -> Record | None:
        values = self.f.get(key)
        if not values:
            return None
        return resolve(root, values[-1])

    def match(self, rec: Record, state: dict[str, Any]) -> bool:
        f = self.f
        if "id" in f and not _match_regex(f["id"], rec.id):
            return False
        if "name" in f and not _match_regex(f["name"], "/" + rec.name, (rec.name,)):
            return False
        if "status" in f and state["Status"] not in f["status"]:
            return False
        if self.exited:
            started = state.get("StartedAt", NEVER) != NEVER
            if state["Running"] or not started or int(state["ExitCode"]) not in self.exited:
                return False
        if "label" in f and not _match_labels(f["label"], _labels(rec)):
            return False
        if self.ancestors is not None and _image_id(rec) not in self.ancestors:
            return False
        if "health" in f and "none" not in f["health"]:
            return False
        if "is-task" in f and "false" not in f["is-task"]:
            return False
        if "publish" in f or "expose" in f:
            return False
        if "isolation" in f and "default" not in f["isolation"]:
            return False
        if "network" in f or "volume" in f:
            spec = spec_of(rec)
            if "network" in f and _network_mode(rec, spec) not in f["network"]:
                return False
            if "volume" in f:
                points = {
                    p for m in _user_binds(rec, spec) for p in (m["Source"], m["Destination"])
                }
                if not points.intersection(f["volume"]):
                    return False
        return True


def list_containers(
    root: str,
    *,
    all: bool = False,
    filters: Iterable[str] = (),
    last: int = -1,
    latest: bool = False,
) -> list[Record]:
    """``docker ps``: running containers (with ``all``, every one), newest
    first, that pass every filter; ``last`` N (``latest``: 1) keeps the N
    newest whatever their state."""
    parsed = parse_filters(filters)
    selector = _Selector(root, parsed)
    limit = 1 if latest else last
    show_all = all or "status" in parsed or limit > 0
    records = all_records(root)
    out: list[Record] = []
    skipping = selector.before is not None
    for rec in records:
        if limit > 0 and len(out) >= limit:
            break
        if selector.since is not None and rec.id == selector.since.id:
            break
        if skipping:
            if selector.before is not None and rec.id == selector.before.id:
                skipping = False
            continue
        try:
            state = rec.state()
        except (OSError, ValueError):
            continue
        rec.cached_state = state  # type: ignore[attr-defined]
        if not show_all and not state["Running"]:
            continue
        if selector.match(rec, state):
            out.append(rec)
    return out


def state_of(rec: Record) -> dict[str, Any]:
    """:meth:`Record.state`, computed once per record by the listing."""
    cached = getattr(rec, "cached_state", None)
    if cached is None:
        cached = rec.state()
        rec.cached_state = cached  # type: ignore[attr-defined]
    return dict(cached)


# --------------------------------------------------------------------------- ps rows


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable() and code != 0x7F:
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def ellipsis(text: str, width: int) -> str:
    """Docker's ``formatter.Ellipsis``: at most ``width`` characters, ``…`` last."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…"


def status_text(state: dict[str, Any], now: float | None = None) -> str:
    """Docker's ``State.String()``: "Up 3 seconds", "Exited (0) 2 minutes ago"..."""
    now = time.time() if now is None else now

    def since(field: str) -> str:
        ns = timefmt.parse_rfc3339(state.get(field))
        return timefmt.human_duration(now - ns / 1e9 if ns is not None else 0)

    status = state.get("Status")
    if state.get("Running"):
        if state.get("Paused"):
            return f"Up {since('StartedAt')} (Paused)"
        if state.get("Restarting"):
            return f"Restarting ({state.get('ExitCode', 0)}) {since('FinishedAt')} ago"
        return f"Up {since('StartedAt')}"
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    if state.get("StartedAt", NEVER) == NEVER:
        return "Created"
    if state.get("FinishedAt", NEVER) == NEVER:
        return ""
    return f"Exited ({state.get('ExitCode', 0)}) {since('FinishedAt')} ago"


PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "Status": "STATUS",
    "State": "STATE",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "LocalVolumes": "LOCAL VOLUMES",
    "Networks": "NETWORKS",
    "Platform": "PLATFORM",
}


class PsRow:
    """One container as ``docker ps --format`` sees it (``{{.ID}}``, ``{{.Status}}``,
    ``{{.Label "k"}}``...); ``trunc`` is the opposite of ``--no-trunc``."""

    def __init__(self, rec: Record, *, trunc: bool = True, now: float | None = None) -> None:
        self._rec = rec
        self._state = state_of(rec)
        self._spec_cache: dict[str, Any] | None = None
        self._trunc = trunc
        self._now = time.time() if now is None else now

    @property
    def _spec(self) -> dict[str, Any]:
        """The OCI spec, read only when a field needs it."""
        if self._spec_cache is None:
            self._spec_cache = spec_of(self._rec)
        return self._spec_cache

    @property
    def ID(self) -> str:
        return self._rec.id[:12] if self._trunc else self._rec.id

    @property
    def Names(self) -> str:
        return self._rec.name

    @property
    def Image(self) -> str:
        name = _image_name(self._rec, self._spec_cache)
        if not name:
            return "<no image>"
        if self._trunc and name.startswith("sha256:") and len(name) == 71:
            return name[7:19]
        if self._trunc and "@" in name:
            return name.partition("@")[0]
        return name

    @property
    def Command(self) -> str:
        path, args = _command_line(self._rec, self._spec_cache)
        words = [f"'{a}'" if " " in a else a for a in args]
        command = " ".join([path, *words]) if words else path
        return go_quote(ellipsis(command, 20) if self._trunc else command)

    def _created(self) -> float:
        ns = timefmt.parse_rfc3339(str(self._rec.container.get("Created", "")))
        return ns / 1e9 if ns is not None else self._now

    @property
    def CreatedAt(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(int(self._created())))

    @property
    def RunningFor(self) -> str:
        return timefmt.human_duration(self._now - self._created()) + " ago"

    @property
    def Ports(self) -> str:
        """Docker's ``0.0.0.0:8080->80/tcp, ...`` while it has published ports."""
        from .network import endpoint

        ep = endpoint(self._rec.dir) if self._state.get("Running") else None
        return ", ".join(
            f"{p['host_ip'] or '0.0.0.0'}:{p['host_port']}->{p['container_port']}/{p['proto']}"
            for p in (ep or {}).get("ports") or ()
        )

    @property
    def Status(self) -> str:
        return status_text(self._state, self._now)

    @property
    def State(self) -> str:
        return str(self._state["Status"])

    @property
    def Size(self) -> str:
        return "0B"

    @property
    def Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(_labels(self._rec).items()))

    def Label(self, key: str) -> str:
        return _labels(self._rec).get(key, "")

    @property
    def Mounts(self) -> str:
        names = [m["Source"] for m in _user_binds(self._rec, self._spec)]
        return ",".join(ellipsis(n, 15) if self._trunc else n for n in names)

    @property
    def LocalVolumes(self) -> str:
        return "0"

    @property
    def Networks(self) -> str:
        return _network_mode(self._rec, self._spec_cache)

    @property
    def Platform(self) -> str:
        return "linux"

    def __json__(self) -> dict[str, str]:
        """``{{json .}}``: every field, keys sorted (Go marshals a map)."""
        return {k: getattr(self, k) for k in sorted(PS_HEADERS)}


# --------------------------------------------------------------------------- inspect, top


def inspect_container(rec: Record, *, size: bool = False) -> dict[str, Any]:
    """``docker inspect``'s object (see :func:`pyctr_fast.inspection.inspect_container`)."""
    from .inspection import inspect_container as inspect

    return inspect(rec, size=size)


def top(rec: Record, ps_args: Sequence[str] = ()) -> tuple[list[str], list[list[str]]]:
    """``docker top`` (see :func:`pyctr_fast.inspection.top`)."""
    from .inspection import top as run_top

    return run_top(rec, ps_args)
