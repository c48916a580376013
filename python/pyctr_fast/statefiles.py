"""The files Python writes into a container directory: ``container.json``
(Docker's view), ``launch.json`` (what the supervisor needs), ``state.json``
(``created``, and repairs) and ``config.json`` (the OCI spec).

See docs/lifecycle.md.  Written with :mod:`compact_json` (never :mod:`json`,
which is slow to import) and replaced atomically.
"""

from __future__ import annotations

import os

from . import compact_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .cgroups import CgroupPlan
    from .container import Prepared
    from .spec import RunOptions

__all__ = [
    "container_json",
    "created_state",
    "launch_json",
    "log_path",
    "running_state",
    "write_file",
    "write_json",
]

NEVER = "0001-01-01T00:00:00Z"


def write_file(path: str, text: str) -> None:
    """Replace ``path`` atomically with ``text`` (a sibling, then rename)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_json(path: str, obj: object) -> None:
    write_file(path, compact_json.dumps(obj))


def log_path(cdir: str, cid: str) -> str:
    return os.path.join(cdir, f"{cid}-json.log")


def created_state() -> dict[str, Any]:
    return {
        "Status": "created",
        "Pid": 0,
        "ExitCode": 0,
        "OOMKilled": False,
        "Error": "",
        "StartedAt": NEVER,
        "FinishedAt": NEVER,
        "RestartCount": 0,
        "SupervisorPid": 0,
    }


def running_state(pid: int, start_time: int | None, started_at: str) -> dict[str, Any]:
    """The state of a foreground container run by the CLI itself."""
    state = created_state()
    state.update(
        Status="running",
        Pid=pid,
        StartedAt=started_at,
        SupervisorPid=os.getpid(),
        PidStartTime=start_time,
    )
    return state


def _tmpfs_map(specs: tuple[str, ...]) -> dict[str, str] | None:
    if not specs:
        return None
    out = {}
    for spec in specs:
        dest, _, options = spec.partition(":")
        out[dest] = options
    return out


def _command_parts(prep: Prepared, opts: RunOptions) -> tuple[list[str] | None, list[str] | None]:
    """Docker's ``Config.Entrypoint`` and ``Config.Cmd``."""
    if prep.image is None:
        return None, list(opts.command)
    cfg = prep.image.container_config
    if opts.entrypoint is not None:
        return ([opts.entrypoint] if opts.entrypoint else None), list(opts.command) or None
    entrypoint = list(cfg.get("Entrypoint") or []) or None
    cmd = list(opts.command) if opts.command else list(cfg.get("Cmd") or []) or None
    return entrypoint, cmd


def container_json(
    prep: Prepared,
    opts: RunOptions,
    name: str,
    created: str,
    *,
    restart: tuple[str, int] = ("no", 0),
    log_config: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Docker's shape of the container (what ``inspect`` shows besides State)."""
    spec = prep.spec
    proc = spec["process"]
    args = list(proc["args"])
    image = prep.image
    cfg = image.container_config if image is not None else {}
    entrypoint, cmd = _command_parts(prep, opts)
    bundle = prep.bundle
    image_name = opts.image if opts.image is not None else spec["root"]["path"]
    config: dict[str, Any] = {
        "Hostname": spec["hostname"],
        "Domainname": "",
        "User": opts.user or cfg.get("User") or "",
        "AttachStdin": opts.interactive and not opts.detach,
        "AttachStdout": not opts.detach,
        "AttachStderr": not opts.detach,
        "Tty": opts.tty,
        "OpenStdin": opts.interactive,
        "StdinOnce": opts.interactive and not opts.detach,
        "Env": list(proc["env"]),
        "Cmd": cmd,
        "Image": image_name,
        "Volumes": None,
        "WorkingDir": opts.workdir or cfg.get("WorkingDir") or "",
        "Entrypoint": entrypoint,
        "Labels": dict(cfg.get("Labels") or {}),
    }
    stop_signal = opts.stop_signal or cfg.get("StopSignal")
    if stop_signal:
        config["StopSignal"] = str(stop_signal)
    if opts.stop_timeout is not None:
        config["StopTimeout"] = opts.stop_timeout
    exposed = _exposed_ports(opts, cfg)
    if exposed:
        config["ExposedPorts"] = exposed
    if prep.overlay is not None:
        graph = {
            "Name": "overlay",
            "Data": {
                "LowerDir": ":".join(prep.overlay["lower"]),
                "UpperDir": prep.overlay["upper"],
                "MergedDir": os.path.join(bundle, "rootfs"),
                "WorkDir": prep.overlay["work"],
            },
        }
    else:
        graph = {"Name": "rootfs", "Data": {"MergedDir": spec["root"]["path"]}}
    return {
        "Id": prep.cid,
        "Created": created,
        "Path": args[0],
        "Args": args[1:],
        "Image": image.image_id if image is not None else "",
        "ImageName": image_name,
        "Name": "/" + name,
        "Driver": graph["Name"],
        "Platform": "linux",
        "ResolvConfPath": os.path.join(bundle, "resolv.conf"),
        "HostnamePath": os.path.join(bundle, "hostname"),
        "HostsPath": os.path.join(bundle, "hosts"),
        "LogPath": log_path(bundle, prep.cid),
        "Config": config,
        "HostConfig": {
            "Binds": list(opts.volumes) or None,
            "AutoRemove": opts.remove,
            "RestartPolicy": {"Name": restart[0], "MaximumRetryCount": restart[1]},
            "LogConfig": {"Type": "json-file", "Config": dict(log_config or {})},
            "NetworkMode": opts.network,
            "PortBindings": _port_bindings(opts),
            "PublishAllPorts": opts.publish_all,
            "Dns": list(opts.dns),
            "DnsOptions": list(opts.dns_options),
            "DnsSearch": list(opts.dns_search),
            "ExtraHosts": _extra_hosts(opts),
            "Privileged": opts.privileged,
            "ReadonlyRootfs": opts.read_only,
            "CapAdd": list(opts.cap_add) or None,
            "CapDrop": list(opts.cap_drop) or None,
            "Tmpfs": _tmpfs_map(opts.tmpfs),
            "CgroupParent": opts.cgroup_parent or "",
            **(opts.limits.host_config if opts.limits is not None else {}),
        },
        "GraphDriver": graph,
        **_networking_config(opts),
    }


def _networking_config(opts: RunOptions) -> dict[str, Any]:
    """Docker's ``NetworkingConfig`` for a bridged container: the endpoint
    settings of its network (``--network-alias``, ``--ip``,
    ``--mac-address``), which ``network connect`` extends."""
    mode = opts.network
    if mode in ("none", "host") or mode.startswith("container:"):
        return {}
    settings: dict[str, Any] = {}
    if opts.network_aliases:
        settings["Aliases"] = list(opts.network_aliases)
    if opts.ip:
        settings["IPAddress"] = opts.ip
    if opts.mac_address:
        settings["MacAddress"] = opts.mac_address
    return {"NetworkingConfig": {"EndpointsConfig": {mode: settings}}}


def _exposed_ports(opts: RunOptions, image_cfg: dict[str, Any]) -> dict[str, Any]:
    """``Config.ExposedPorts``: the image's, ``--expose``'s and ``-p``'s."""
    if not (opts.expose or opts.publish or image_cfg.get("ExposedPorts")):
        return {}
    from .netopts import exposed_ports

    return exposed_ports(opts, image_cfg)


def _extra_hosts(opts: RunOptions) -> list[str] | None:
    """``HostConfig.ExtraHosts`` (``NAME:IP``, as Docker records them)."""
    if not opts.extra_hosts:
        return None
    from .netopts import parse_extra_host

    return [parse_extra_host(h) for h in opts.extra_hosts]


def _port_bindings(opts: RunOptions) -> dict[str, Any]:
    if not opts.publish:
        return {}
    from .ports import port_bindings

    return port_bindings(opts.publish) or {}


def launch_json(
    prep: Prepared,
    opts: RunOptions,
    name: str,
    state_root: str,
    *,
    restart: tuple[str, int],
    log_max_size: int,
    log_max_files: int,
    cgroup: CgroupPlan | None,
) -> dict[str, Any]:
    """What the supervisor needs besides the spec (docs/lifecycle.md)."""
    return {
        "id": prep.cid,
        "name": name,
        "root": state_root,
        "stdin_open": opts.interactive,
        "overlay": dict(prep.overlay) if prep.overlay is not None else None,
        "log_path": log_path(prep.bundle, prep.cid),
        "log_max_size": log_max_size,
        "log_max_files": log_max_files,
        "restart": {"name": restart[0], "max_retries": restart[1]},
        "auto_remove": opts.remove,
        **cgroup_fields(cgroup),
    }


def cgroup_fields(plan: CgroupPlan | None) -> dict[str, Any]:
    """launch.json's cgroup entries: the plan, and the three fields the
    supervisor reads (the directories it removes, the ``cgroup.procs`` files
    the container joins, the file that counts OOM kills)."""
    if plan is None:
        return {"cgroup": None, "cgroup_procs": [], "cgroup_dirs": [], "oom_file": None}
    return {
        "cgroup": plan.to_doc(),
        "cgroup_procs": plan.procs,
        "cgroup_dirs": plan.dirs,
        "oom_file": plan.oom_file,
    }
