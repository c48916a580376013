"""``docker inspect``'s container object and ``docker top``.

:func:`inspect_container` starts from what ``container.json`` says (written
at create) and fills what it lacks from the spec, ``launch.json`` and the
state checked against the kernel; it adds ``Namespaces``
(``{kind: "/proc/<pid>/ns/<kind>"}``) while the container runs.
:func:`top` runs the host's ``ps`` and keeps the container's processes: the
members of its cgroup, or of its pid namespace when it has no cgroup.
"""

from __future__ import annotations

import os
import stat

from .container_exec import NS_FILES
from .errors import UserError
from .records import NEVER, Record
from .resources_flags import defaults as resource_defaults
from .views import (
    _command_line,
    _image_id,
    _image_name,
    _network_mode,
    _user_binds,
    launch_of,
    log_path,
    spec_of,
    state_of,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["NS_FILES", "container_pids", "inspect_container", "top"]


def _state_object(state: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "Status",
        "Running",
        "Paused",
        "Restarting",
        "OOMKilled",
        "Dead",
        "Pid",
        "ExitCode",
        "Error",
        "StartedAt",
        "FinishedAt",
    )
    return {k: state.get(k) for k in keys}


def _config(rec: Record, spec: dict[str, Any], image_name: str) -> dict[str, Any]:
    process = spec.get("process") or {}
    user = process.get("user") or {}
    given = dict(rec.container.get("Config") or {})
    path, args = _command_line(rec, spec)
    defaults: dict[str, Any] = {
        "Hostname": spec.get("hostname", rec.id[:12]),
        "Domainname": "",
        "User": "" if not user.get("uid") else f"{user.get('uid')}:{user.get('gid', 0)}",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": bool(process.get("terminal")),
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": list(process.get("env") or []),
        "Cmd": [path, *args] if path else None,
        "Image": image_name,
        "Volumes": None,
        "WorkingDir": process.get("cwd", "/"),
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": {},
    }
    for key, value in defaults.items():
        given.setdefault(key, value)
    return given


def _host_config(rec: Record, spec: dict[str, Any], launch: dict[str, Any]) -> dict[str, Any]:
    given = dict(rec.container.get("HostConfig") or {})
    restart = launch.get("restart") or {}
    binds = [
        f"{m['Source']}:{m['Destination']}" + (":ro" if not m["RW"] else "")
        for m in _user_binds(rec, spec)
    ]
    defaults: dict[str, Any] = {
        "Binds": binds or None,
        "NetworkMode": _network_mode(rec, spec),
        "PortBindings": {},
        "PublishAllPorts": False,
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": None,
        "RestartPolicy": {
            "Name": restart.get("name", "no"),
            "MaximumRetryCount": int(restart.get("max_retries", 0)),
        },
        "AutoRemove": bool(launch.get("auto_remove", False)),
        "LogConfig": {
            "Type": "json-file",
            "Config": {
                k: v
                for k, v in (
                    ("max-size", str(launch.get("log_max_size") or "")),
                    ("max-file", str(launch.get("log_max_files") or "")),
                )
                if v and v != "0" and not (k == "max-file" and v == "1")
            },
        },
        "CapAdd": None,
        "CapDrop": None,
        "Privileged": False,
        "ReadonlyRootfs": bool((spec.get("root") or {}).get("readonly")),
        "Tmpfs": {
            str(m.get("destination")): ",".join(m.get("options") or [])
            for m in spec.get("mounts") or []
            if m.get("type") == "tmpfs"
            and m.get("source") == "tmpfs"
            and m.get("destination") != "/dev"
        }
        or None,
        "CgroupParent": "",
        **resource_defaults(),
        "PidMode": "",
        "IpcMode": "private",
        "UTSMode": "",
        "Runtime": "pyctr-fast",
    }
    for key, value in defaults.items():
        given.setdefault(key, value)
    return given


def _graph_driver(rec: Record, spec: dict[str, Any], launch: dict[str, Any]) -> dict[str, Any]:
    overlay = launch.get("overlay")
    if overlay is None and os.path.isdir(rec.path("upper")):
        overlay = {"lower": [], "upper": rec.path("upper"), "work": rec.path("work")}
    if overlay:
        return {
            "Name": "overlay2",
            "Data": {
                "LowerDir": ":".join(overlay.get("lower") or []),
                "MergedDir": rec.path("rootfs"),
                "UpperDir": str(overlay.get("upper", "")),
                "WorkDir": str(overlay.get("work", "")),
            },
        }
    return {"Name": "rootfs", "Data": {"MergedDir": str((spec.get("root") or {}).get("path", ""))}}


def _namespaces(spec: dict[str, Any], pid: int, cid: str) -> dict[str, str]:
    """The container's own namespaces, by type: new ones, and the network
    namespace file a bridged container was given (``<run>/netns/<id>``);
    not those it joined (another container's, the host's)."""
    if pid <= 0:
        return {}
    out = {}
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        kind = str(ns.get("type", ""))
        name = NS_FILES.get(kind)
        path = str(ns.get("path") or "")
        own = not path or (kind == "network" and os.path.basename(path) == cid)
        if name is not None and own:
            out[kind] = f"/proc/{pid}/ns/{name}"
    return out


def _endpoint_settings(ep: dict[str, Any], name: str) -> dict[str, Any]:
    """One entry of ``NetworkSettings.Networks`` from a network.json endpoint."""
    ip = str(ep.get("ip") or "")
    aliases = [str(a) for a in ep.get("aliases") or ()]
    return {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": aliases or None,
        "MacAddress": str(ep.get("mac") or "") if ip else "",
        "NetworkID": str(ep.get("network_id") or ""),
        "EndpointID": str(ep.get("veth") or "") if ip else "",
        "Gateway": str(ep.get("gateway") or "") if ip else "",
        "IPAddress": ip,
        "IPPrefixLen": int(ep.get("prefix") or 0) if ip else 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DriverOpts": None,
        "DNSNames": [n for n in (name, *aliases) if n] if ip and name else None,
    }


def _network_settings(
    mode: str, pid: int, ep: dict[str, Any] | None, name: str = ""
) -> dict[str, Any]:
    """Docker's ``NetworkSettings``; ``ep`` is the bridged container's
    ``network.json`` while it has one (its first endpoint, and further ones
    under ``endpoints``)."""
    ep = ep or {}
    primary = _endpoint_settings(ep, name)
    if not ep.get("network_id") and mode == "bridge":
        from .networks import default_bridge

        primary["NetworkID"] = default_bridge("", "").id
    sandbox = str(ep.get("netns") or "") or (f"/proc/{pid}/ns/net" if pid > 0 else "")
    networks = {} if mode.startswith("container:") else {mode: primary}
    for extra in ep.get("endpoints") or ():
        networks[str(extra.get("network"))] = _endpoint_settings(extra, name)
    return {
        "Bridge": str(ep.get("bridge") or "") if primary["IPAddress"] else "",
        "SandboxID": "",
        "SandboxKey": sandbox,
        "Ports": _ports(ep),
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": primary["EndpointID"],
        "Gateway": primary["Gateway"],
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": primary["IPAddress"],
        "IPPrefixLen": primary["IPPrefixLen"],
        "IPv6Gateway": "",
        "MacAddress": primary["MacAddress"],
        "Networks": networks,
    }


def _ports(ep: dict[str, Any]) -> dict[str, Any]:
    if not ep.get("ports"):
        return {}
    from .ports import describe

    return describe(ep["ports"])


def _endpoint(rec: Record) -> dict[str, Any] | None:
    from .network import endpoint

    return endpoint(rec.dir)


#: container.json keys that are not Docker's (left out of ``inspect``).
_PRIVATE = frozenset(("ImageName", "NetworkingConfig"))


def _tree_size(path: str) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def _sizes(rec: Record, graph: dict[str, Any]) -> dict[str, int]:
    """Docker's ``SizeRw`` (the container's own layer) and ``SizeRootFs``
    (everything it sees: its layer and the image's; a ``--rootfs``
    container's rootfs is all its own)."""
    data = graph.get("Data") or {}
    upper = data.get("UpperDir")
    if upper:
        rw = _tree_size(str(upper))
        lower = [d for d in str(data.get("LowerDir") or "").split(":") if d]
        return {"SizeRw": rw, "SizeRootFs": rw + sum(_tree_size(d) for d in lower)}
    merged = str(data.get("MergedDir") or "")
    rw = _tree_size(merged) if merged else 0
    return {"SizeRw": rw, "SizeRootFs": rw}


def inspect_container(rec: Record, *, size: bool = False) -> dict[str, Any]:
    """``docker inspect``'s object for one container (Docker's keys and order),
    plus ``Namespaces``: ``{kind: "/proc/<pid>/ns/<kind>"}`` while it runs.
    What ``container.json`` holds is taken as given; the rest is derived.
    ``size`` adds ``SizeRw`` and ``SizeRootFs`` (``inspect --size``)."""
    spec = spec_of(rec)
    launch = launch_of(rec)
    state = state_of(rec)
    pid = int(state.get("Pid") or 0) if state.get("Running") else 0
    path, args = _command_line(rec, spec)
    image_name = _image_name(rec, spec)
    mode = _network_mode(rec, spec)
    graph = _graph_driver(rec, spec, launch)
    out: dict[str, Any] = {
        "Id": rec.id,
        "Created": NEVER,
        "Path": path,
        "Args": args,
        "State": _state_object(state),
        "Image": _image_id(rec),
        "ResolvConfPath": rec.path("resolv.conf"),
        "HostnamePath": rec.path("hostname"),
        "HostsPath": rec.path("hosts"),
        "LogPath": log_path(rec, launch),
        "Name": "/" + rec.name,
        "RestartCount": int(state.get("RestartCount") or 0),
        "Driver": graph["Name"],
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": None,
        "GraphDriver": graph,
        "Mounts": _user_binds(rec, spec),
        "Config": None,
        "NetworkSettings": _network_settings(
            mode,
            pid,
            _endpoint(rec) if pid > 0 else None,
            str(rec.container.get("Name") or "").lstrip("/"),
        ),
        "Namespaces": _namespaces(spec, pid, rec.id),
    }
    for key, value in rec.container.items():
        if key not in _PRIVATE and key not in ("State", "HostConfig", "Config"):
            out[key] = value
    out["HostConfig"] = _host_config(rec, spec, launch)
    out["Config"] = _config(rec, spec, image_name)
    if size:  # Docker puts them right after GraphDriver
        sizes = _sizes(rec, out["GraphDriver"] if isinstance(out["GraphDriver"], dict) else {})
        ordered: dict[str, Any] = {}
        for key, value in out.items():
            ordered[key] = value
            if key == "GraphDriver":
                ordered.update(sizes)
        out = ordered
    return out


# --------------------------------------------------------------------------- top


def _pid_ns(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def container_pids(rec: Record) -> list[int]:
    """The host pids of the container's processes: its cgroup's members when
    it has a cgroup, else every process in its pid namespace."""
    state = state_of(rec)
    pid = int(state.get("Pid") or 0)
    if not state.get("Running") or pid <= 0:
        raise UserError(f"container {rec.id} is not running", exit_code=1)
    launch = launch_of(rec)
    if launch.get("cgroup"):
        from . import cgroups

        try:
            found = cgroups.pids(cgroups.CgroupPlan.from_doc(launch["cgroup"]))
        except (OSError, UserError):
            found = []
        if found:
            return sorted(found)
    ino = _pid_ns(pid)
    if ino is None:
        raise UserError(f"container {rec.id} is not running", exit_code=1)
    if ino == _pid_ns(os.getpid()):
        return [pid]  # shares the host's pid namespace: only its init is known
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _pid_ns(int(entry)) == ino:
            out.append(int(entry))
    return sorted(out)


def top(rec: Record, ps_args: Sequence[str] = ()) -> tuple[list[str], list[list[str]]]:
    """``docker top``: run the host's ``ps`` (default ``-ef``) and keep the
    rows of the container's processes: ``(titles, rows)``."""
    import subprocess

    pids = set(container_pids(rec))
    argv = ["ps", *(ps_args or ["-ef"])]
    try:
        res = subprocess.run(argv, capture_output=True, check=False)
    except OSError as err:
        raise UserError(f"Error running ps: {err.strerror or err}", exit_code=1) from None
    text = res.stdout.decode("utf-8", "replace")
    if res.returncode != 0:
        detail = res.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UserError(
            f"Error running ps: exit status {res.returncode}"
            + (f": {detail[0]}" if detail else ""),
            exit_code=1,
        )
    lines = text.splitlines()
    if not lines:
        raise UserError("Couldn't find PID field in ps output", exit_code=1)
    titles = lines[0].split()
    if "PID" not in titles:
        raise UserError("Couldn't find PID field in ps output", exit_code=1)
    at = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) <= at:
            continue
        try:
            pid = int(fields[at])
        except ValueError:
            raise UserError(f"Unexpected pid '{fields[at]}'", exit_code=1) from None
        if pid in pids:
            rows.append(fields)
    return titles, rows
