"""docker-py's ``containers.run``/``create`` keyword arguments turned into the
engine's :class:`~pyctr_fast.spec.RunOptions` (the CLI's ``run`` flags).

What ``RunOptions`` has no field for yet is returned as *extras* that the
client records in the container's ``container.json`` after ``create``
(``Config.Labels``): they show in ``attrs`` and in ``ps --filter label=...``.
The resource keywords (``mem_limit``, ``nano_cpus``, ...) become
``RunOptions.limits`` (:func:`pyctr_fast.resources.limits_from_kwargs`).
"""

from __future__ import annotations

import shlex

from .errors import APIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, TypedDict, Union

    from .spec import RunOptions

    Env = Union[Mapping[str, Any], Iterable[str]]

    class CreateKwargs(TypedDict, total=False):
        """The docker-py keywords ``create`` and ``run`` accept."""

        auto_remove: bool
        cap_add: list[str]
        cap_drop: list[str]
        entrypoint: str | list[str]
        environment: Env
        hostname: str
        labels: dict[str, str] | list[str]
        log_config: dict[str, Any]
        mem_limit: int | str
        name: str
        network_disabled: bool
        network_mode: str
        platform: str
        privileged: bool
        read_only: bool
        restart_policy: dict[str, Any]
        stdin_open: bool
        stop_signal: str | int
        stop_timeout: int
        tmpfs: dict[str, str] | list[str]
        tty: bool
        user: str | int
        volumes: dict[str, Any] | list[str]
        working_dir: str


__all__ = ["KNOWN_KWARGS", "Extras", "build_options", "parse_bytes"]

#: docker-py's resource keywords (:func:`pyctr_fast.resources.limits_from_kwargs`).
RESOURCE_KWARGS = frozenset(
    (
        "blkio_weight cpu_period cpu_quota cpu_shares cpuset_cpus cpuset_mems "
        "device_read_bps device_read_iops device_write_bps device_write_iops mem_limit "
        "mem_reservation mem_swappiness memswap_limit nano_cpus oom_kill_disable pids_limit"
    ).split()
)

KNOWN_KWARGS = (
    frozenset(
        (
            "auto_remove cap_add cap_drop cgroup_parent dns dns_opt dns_search entrypoint "
            "environment extra_hosts hostname labels log_config name network_disabled "
            "network_mode platform ports privileged publish_all_ports read_only restart_policy "
            "stdin_open stop_signal stop_timeout tmpfs tty user volumes working_dir"
        ).split()
    )
    | RESOURCE_KWARGS
)

#: docker-py keywords the engine does not implement (yet): a TypeError names them.
UNSUPPORTED_KWARGS = frozenset(
    (
        "blkio_weight_device cgroupns cpu_count cpu_percent cpu_rt_period cpu_rt_runtime "
        "device_cgroup_rules device_requests devices domainname "
        "group_add healthcheck init init_path ipc_mode isolation kernel_memory "
        "links lxc_conf mac_address mounts network networking_config oom_score_adj pid_mode "
        "runtime security_opt shm_size storage_opt "
        "sysctls ulimits use_config_proxy userns_mode uts_mode volume_driver volumes_from"
    ).split()
)


class Extras:
    """What is recorded in ``container.json`` after create (no RunOptions field)."""

    __slots__ = ("labels",)

    def __init__(self) -> None:
        self.labels: dict[str, str] | None = None

    def __bool__(self) -> bool:
        return self.labels is not None


def check_kwargs(method: str, kwargs: Mapping[str, Any]) -> None:
    """TypeError for keywords docker-py does not have or the engine lacks."""
    for key in kwargs:
        if key in KNOWN_KWARGS:
            continue
        if key in UNSUPPORTED_KWARGS:
            raise TypeError(f"{method}(): the docker-py argument {key!r} is not supported")
        raise TypeError(f"{method}() got an unexpected keyword argument {key!r}")


def split_command(value: str | Iterable[str] | None, what: str) -> list[str]:
    """docker-py's rule: a string is split like a shell would (no expansion)."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, bytes):
        raise TypeError(f"{what} must be a string or a list of strings, not bytes")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{what} must hold strings, not {type(item).__name__}")
    return items


def env_entries(env: Env | None) -> list[str]:
    """``{"K": "v", "F": None}`` or ``["K=v", "F"]`` as ``K=v`` entries."""
    if env is None:
        return []
    if isinstance(env, (str, bytes)):
        raise TypeError("environment must be a dict or a list of 'K=V' strings")
    if hasattr(env, "items"):
        return [k if v is None else f"{k}={v}" for k, v in env.items()]
    return [str(e) for e in env]


def volume_specs(volumes: Mapping[str, Any] | Iterable[str] | None) -> list[str]:
    """docker-py's ``{host: {"bind": path, "mode": "ro"}}`` (or ``{host:
    path}``) or ``["src:dst[:mode]"]`` as ``-v`` specs."""
    if volumes is None:
        return []
    if isinstance(volumes, (str, bytes)):
        raise TypeError("volumes must be a dict or a list of 'src:dst[:mode]' strings")
    if not hasattr(volumes, "items"):
        return [str(v) for v in volumes]
    out = []
    for host, bind in volumes.items():
        if isinstance(bind, dict):
            if "bind" not in bind:
                raise TypeError(f"volumes[{host!r}] needs a 'bind' key")
            if "ro" in bind and "mode" in bind:
                raise TypeError(f"volumes[{host!r}]: give 'mode' or 'ro', not both")
            mode = bind.get("mode") or ("ro" if bind.get("ro") else "rw")
            out.append(f"{host}:{bind['bind']}:{mode}")
        else:
            out.append(f"{host}:{bind}:rw")
    return out


def tmpfs_specs(tmpfs: Mapping[str, str] | Iterable[str] | None) -> list[str]:
    """``{"/run": "size=64m"}`` or ``["/run:size=64m"]`` as ``--tmpfs`` specs."""
    if tmpfs is None:
        return []
    if isinstance(tmpfs, (str, bytes)):
        raise TypeError("tmpfs must be a dict or a list of 'path[:options]' strings")
    if hasattr(tmpfs, "items"):
        return [f"{path}:{opts}" if opts else str(path) for path, opts in tmpfs.items()]
    return [str(t) for t in tmpfs]


_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_bytes(value: int | str) -> int:
    """docker-py's ``parse_bytes``: ``512m``, ``1g``, ``100k``, ``4096``, ``"1.5g"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        number: float = value
    elif isinstance(value, str) and value.strip():
        text = value.strip().lower()
        if text.endswith("b") and len(text) > 1 and text[-2] in "kmg":
            text = text[:-1]
        unit = 1
        if text[-1] in _UNITS:
            unit = _UNITS[text[-1]]
            text = text[:-1]
        try:
            number = float(text) * unit
        except ValueError:
            raise APIError(f"invalid memory size: {value!r}") from None
    else:
        raise APIError(f"invalid memory size: {value!r}")
    if number < 0:
        raise APIError(f"invalid memory size: {value!r}")
    return int(number)


def restart_spec(policy: Mapping[str, Any] | None) -> str | None:
    """``{"Name": "on-failure", "MaximumRetryCount": 3}`` as ``on-failure:3``."""
    if not policy:
        return None
    name = str(policy.get("Name") or "no")
    retries = int(policy.get("MaximumRetryCount") or 0)
    if name == "on-failure" and retries:
        return f"on-failure:{retries}"
    return name


def label_dict(labels: Mapping[str, Any] | Iterable[str] | None) -> dict[str, str] | None:
    """docker-py accepts a dict or a list of keys (values empty)."""
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)):
        raise TypeError("labels must be a dict or a list of strings")
    if hasattr(labels, "items"):
        return {str(k): str(v) for k, v in labels.items()}
    return {str(k): "" for k in labels}


def _fields() -> frozenset[str]:
    from .spec import RunOptions

    return frozenset(RunOptions.__slots__)


def publish_specs(ports: Mapping[Any, Any]) -> list[str]:
    """docker-py's ``ports`` (``{"80/tcp": 8080, "53/udp": ("127.0.0.1", 5353),
    "90": None, 91: [8081, 8082]}``) as ``-p`` specs."""
    specs = []
    for key, value in ports.items():
        port, _, proto = str(key).partition("/")
        target = f"{port}/{proto or 'tcp'}"
        for one in value if isinstance(value, list) else [value]:
            if one is None:
                specs.append(target)
            elif isinstance(one, tuple):
                ip = str(one[0])
                host = str(one[1]) if len(one) > 1 and one[1] is not None else ""
                specs.append(f"{ip}:{host}:{target}")
            else:
                specs.append(f"{one}:{target}")
    return specs


def extra_host_entries(value: Mapping[str, Any] | Iterable[str]) -> list[str]:
    """docker-py's ``extra_hosts``: ``{"name": "ip"}`` (sorted, as docker-py
    formats it) or ``["name:ip"]``."""
    if isinstance(value, dict):
        return [f"{k}:{v}" for k, v in sorted(value.items())]
    if isinstance(value, (str, bytes)):
        raise TypeError("extra_hosts must be a dict or a list of 'name:ip' strings")
    return [str(v) for v in value]


def network_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """docker-py's ``dns``, ``dns_search``, ``dns_opt``, ``extra_hosts`` and
    ``publish_all_ports`` as :class:`RunOptions` fields."""
    out: dict[str, Any] = {}
    for key, field in (("dns", "dns"), ("dns_search", "dns_search"), ("dns_opt", "dns_options")):
        value = kwargs.get(key)
        if value is not None:
            if isinstance(value, (str, bytes)):
                raise TypeError(f"{key} must be a list of strings, not a single string")
            out[field] = [str(v) for v in value]
    if kwargs.get("extra_hosts") is not None:
        out["extra_hosts"] = extra_host_entries(kwargs["extra_hosts"])
    if kwargs.get("publish_all_ports"):
        out["publish_all"] = True
    return out


def build_options(
    method: str,
    image: str | None,
    command: str | Iterable[str] | None,
    kwargs: Mapping[str, Any],
    *,
    rootfs: str | None = None,
    detach: bool = True,
    pull: str = "never",
) -> tuple[RunOptions, Extras]:
    """The :class:`RunOptions` for docker-py's ``create``/``run`` arguments.

    ``image`` or ``rootfs`` (a directory: the CLI's ``--rootfs``) says what
    to run; ``detach`` and ``kwargs["auto_remove"]`` map to ``run -d`` and
    ``--rm``.  TypeError for unknown keywords.
    """
    from .spec import RunOptions

    check_kwargs(method, kwargs)
    if (image is None) == (rootfs is None):
        raise TypeError(f"{method}() needs an image or a rootfs= directory (not both)")
    args = split_command(command, "command")
    entrypoint: str | None = None
    if "entrypoint" in kwargs and kwargs["entrypoint"] is not None:
        ep = split_command(kwargs["entrypoint"], "entrypoint")
        entrypoint = ep[0] if ep else ""
        args = ep[1:] + args
    network = kwargs.get("network_mode") or "bridge"  # Docker's default
    if kwargs.get("network_disabled"):
        network = "none"
    user = kwargs.get("user")
    fields = _fields()
    extras = Extras()
    more: dict[str, Any] = {}
    optional: dict[str, Any] = {
        "detach": detach,
        "restart": restart_spec(kwargs.get("restart_policy")),
        "stop_signal": None if kwargs.get("stop_signal") is None else str(kwargs["stop_signal"]),
        "stop_timeout": kwargs.get("stop_timeout"),
        "log_opts": _log_opts(kwargs.get("log_config")),
    }
    labels = label_dict(kwargs.get("labels"))
    if labels is not None:
        optional["labels"] = labels
    if any(kwargs.get(k) is not None for k in RESOURCE_KWARGS):
        from .resources import limits_from_kwargs

        more["limits"] = limits_from_kwargs(kwargs)
    if kwargs.get("cgroup_parent"):
        more["cgroup_parent"] = str(kwargs["cgroup_parent"])
    if kwargs.get("ports"):
        more["publish"] = publish_specs(kwargs["ports"])
    more.update(network_kwargs(kwargs))
    for key, value in optional.items():
        if value is None:
            continue
        if key in fields:
            more[key] = value
        elif key == "labels":
            extras.labels = labels
        elif key != "detach" and value != "no":
            raise APIError(f"{key} is not supported by this engine yet")
    opts = RunOptions(
        rootfs or "",
        args,
        env=env_entries(kwargs.get("environment")),
        hostname=kwargs.get("hostname"),
        name=kwargs.get("name"),
        user=None if user in (None, "") else str(user),
        workdir=kwargs.get("working_dir"),
        volumes=volume_specs(kwargs.get("volumes")),
        tmpfs=tmpfs_specs(kwargs.get("tmpfs")),
        network=str(network),
        cap_add=list(kwargs.get("cap_add") or ()),
        cap_drop=list(kwargs.get("cap_drop") or ()),
        privileged=bool(kwargs.get("privileged", False)),
        read_only=bool(kwargs.get("read_only", False)),
        tty=bool(kwargs.get("tty", False)),
        interactive=bool(kwargs.get("stdin_open", False)),
        remove=bool(kwargs.get("auto_remove", False)),
        image=image,
        entrypoint=entrypoint,
        pull=pull,
        platform=kwargs.get("platform"),
        **more,
    )
    return opts, extras


def _log_opts(config: Mapping[str, Any] | None) -> list[str] | None:
    """docker-py's ``LogConfig`` dict (``{"Type": "json-file", "Config": {...}}``)
    as ``--log-opt`` ``key=value`` entries."""
    if not config:
        return None
    kind = config.get("Type") or config.get("type") or "json-file"
    if kind != "json-file":
        raise APIError(f"log driver {kind!r} is not supported: only json-file")
    opts = config.get("Config") or config.get("config") or {}
    return [f"{k}={v}" for k, v in opts.items()]
