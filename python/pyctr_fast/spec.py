"""Building the OCI runtime spec (config.json) for ``run``, with Docker's defaults.

:class:`RunOptions` holds what the user asked for, in Docker's terms, whether
it came from the command line or the Python API; :func:`build_spec` validates
it and turns it into the spec dict the native side executes.  Nothing here
touches the engine's state directory.
"""

from __future__ import annotations

import os

from . import caps, environment, etcfiles, mounts, users
from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from .image_run import ImageRun
    from .resources import Limits

__all__ = [
    "ANNOTATION_NAME",
    "NAMESPACES",
    "NETWORK_MODES",
    "OCI_VERSION",
    "RESTART_POLICIES",
    "RunOptions",
    "build_spec",
    "check_run_options",
    "default_hostname",
    "new_container_id",
    "parse_log_opts",
    "parse_restart",
    "parse_size",
    "resolve_rootfs",
    "validate_hostname",
    "validate_name",
]

OCI_VERSION = "1.0.2"
ANNOTATION_NAME = "io.pyctr-fast.name"
ANNOTATION_IMAGE = "io.pyctr-fast.image"
ANNOTATION_STOP_SIGNAL = "io.pyctr-fast.stop-signal"
NETWORK_MODES = ("none", "host", "bridge")  # and container:NAME
#: Docker's default: a network namespace of its own on the default bridge.
DEFAULT_NETWORK = "bridge"
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
LOG_DRIVER = "json-file"
#: Docker's defaults: SIGTERM, then SIGKILL after 10 seconds.
DEFAULT_STOP_SIGNAL = "SIGTERM"
DEFAULT_STOP_TIMEOUT = 10
NAMESPACES = ("pid", "ipc", "uts", "mount", "cgroup", "network")

# Docker sets these for containers with their own network namespace, so that
# non-root users can bind ports below 1024 and use ping sockets.
_NETNS_SYSCTLS = (
    ("net.ipv4.ip_unprivileged_port_start", "0"),
    ("net.ipv4.ping_group_range", "0 2147483647"),
)

_HOSTNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_CHARS = _NAME_FIRST | frozenset("_.-")


def _strings(value: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        raise UserError(f"{what} must be a sequence of strings, not a single string")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise UserError(f"{what} must hold strings, not {type(item).__name__}")
    return items


class RunOptions:
    """Everything ``run`` accepts, as Docker spells it.

    ``env`` holds ``-e`` values (``K=V`` or ``K``), ``env_files`` paths of
    ``--env-file`` files (applied before ``env``), ``volumes`` ``-v`` specs
    (``SRC:DST[:MODE]``) and ``tmpfs`` ``--tmpfs`` specs (``DST[:OPTIONS]``).

    Lifecycle: ``detach`` (``-d``), ``restart`` (``no``, ``always``,
    ``unless-stopped``, ``on-failure[:N]``), ``log_driver`` (``json-file``
    only) and ``log_opts`` (``max-size=10m``, ``max-file=3``),
    ``stop_signal`` (name or number; default the image's, else SIGTERM) and
    ``stop_timeout`` (seconds; default 10).  :func:`check_run_options`
    validates them with Docker's messages.

    Network: ``publish`` (``-p`` specs), ``publish_all`` (``-P``), ``expose``
    (``--expose`` specs), ``dns``, ``dns_search``, ``dns_options`` and
    ``extra_hosts`` (``--add-host`` values), see :mod:`pyctr_fast.netopts`;
    ``network_aliases``, ``ip`` and ``mac_address`` for the endpoint on a
    user-defined network (:mod:`pyctr_fast.network`).
    """

    __slots__ = (
        "cap_add",
        "cap_drop",
        "cgroup_parent",
        "command",
        "detach",
        "dns",
        "dns_options",
        "dns_search",
        "entrypoint",
        "env",
        "env_files",
        "expose",
        "extra_hosts",
        "hostname",
        "image",
        "interactive",
        "ip",
        "limits",
        "log_driver",
        "log_opts",
        "mac_address",
        "name",
        "network",
        "network_aliases",
        "platform",
        "privileged",
        "publish",
        "publish_all",
        "pull",
        "read_only",
        "remove",
        "restart",
        "rootfs",
        "security_opt",
        "stop_signal",
        "stop_timeout",
        "tmpfs",
        "tty",
        "user",
        "volumes",
        "workdir",
    )

    def __init__(
        self,
        rootfs: str,
        command: Iterable[str],
        *,
        env: Iterable[str] = (),
        env_files: Iterable[str] = (),
        hostname: str | None = None,
        name: str | None = None,
        user: str | None = None,
        workdir: str | None = None,
        volumes: Iterable[str] = (),
        tmpfs: Iterable[str] = (),
        network: str = DEFAULT_NETWORK,
        cap_add: Iterable[str] = (),
        cap_drop: Iterable[str] = (),
        privileged: bool = False,
        read_only: bool = False,
        tty: bool = False,
        interactive: bool = False,
        remove: bool = False,
        image: str | None = None,
        entrypoint: str | None = None,
        pull: str = "missing",
        platform: str | None = None,
        detach: bool = False,
        restart: str = "no",
        log_driver: str = LOG_DRIVER,
        log_opts: Iterable[str] = (),
        stop_signal: str | None = None,
        stop_timeout: int | None = None,
        limits: Limits | None = None,
        cgroup_parent: str | None = None,
        security_opt: Iterable[str] = (),
        publish: Iterable[str] = (),
        publish_all: bool = False,
        expose: Iterable[str] = (),
        dns: Iterable[str] = (),
        dns_search: Iterable[str] = (),
        dns_options: Iterable[str] = (),
        extra_hosts: Iterable[str] = (),
        network_aliases: Iterable[str] = (),
        ip: str | None = None,
        mac_address: str | None = None,
    ) -> None:
        self.rootfs = rootfs
        self.image = image
        self.entrypoint = entrypoint
        self.pull = pull
        self.platform = platform
        self.command = _strings(command, "command")
        self.env = _strings(env, "env")
        self.env_files = _strings(env_files, "env_files")
        self.hostname = hostname
        self.name = name
        self.user = user
        self.workdir = workdir
        self.volumes = _strings(volumes, "volumes")
        self.tmpfs = _strings(tmpfs, "tmpfs")
        self.network = network
        self.cap_add = _strings(cap_add, "cap_add")
        self.cap_drop = _strings(cap_drop, "cap_drop")
        self.privileged = privileged
        self.read_only = read_only
        self.tty = tty
        self.interactive = interactive
        self.remove = remove
        self.detach = detach
        self.restart = restart
        self.log_driver = log_driver
        self.log_opts = _strings(log_opts, "log_opts")
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.limits = limits
        self.cgroup_parent = cgroup_parent
        self.security_opt = _strings(security_opt, "security_opt")
        self.publish = _strings(publish, "publish")
        self.publish_all = publish_all
        self.expose = _strings(expose, "expose")
        self.dns = _strings(dns, "dns")
        self.dns_search = _strings(dns_search, "dns_search")
        self.dns_options = _strings(dns_options, "dns_options")
        self.extra_hosts = _strings(extra_hosts, "extra_hosts")
        self.network_aliases = _strings(network_aliases, "network_aliases")
        self.ip = ip
        self.mac_address = mac_address

    def wants_cgroup(self, supervised: bool) -> bool:
        """Whether the container gets a cgroup of its own: always under a
        supervisor (``run -d``, ``create``/``start``), and in the in-process
        foreground path (``run --rm``, ``api.run``) only when limits or
        ``--cgroup-parent`` are given (joining a cgroup v1 group waits out an
        RCU grace period, milliseconds after an idle moment; docs/cgroups.md)."""
        if supervised or self.cgroup_parent is not None:
            return True
        return self.limits is not None and not self.limits.empty()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, f) for f in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunOptions):
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"RunOptions({args})"


def cgroups_path(
    cgroup_parent: str | None, container_id: str, environ: Mapping[str, str] | None = None
) -> str:
    """``linux.cgroupsPath``: ``/<parent>/<id>``, the parent being
    ``--cgroup-parent`` (relative to each hierarchy's root, as Docker's
    cgroupfs driver takes it) or the host default (:func:`cgroups.parent`)."""
    from .cgroups import parent

    par = parent(environ) if cgroup_parent is None else cgroup_parent.strip("/")
    if ".." in par.split("/"):
        raise UserError(f"invalid --cgroup-parent: {cgroup_parent!r}")
    return f"/{par}/{container_id}" if par else f"/{container_id}"


def new_container_id() -> str:
    """64 random hex digits, like Docker's container ids."""
    return os.urandom(32).hex()


def default_hostname(container_id: str) -> str:
    return container_id[:12]


def validate_hostname(hostname: str) -> str:
    """RFC 1123: dot-separated labels of ``[a-zA-Z0-9-]`` not starting or ending
    with ``-``, each at most 63 characters.  The whole name is limited to 63
    characters as Docker does (the kernel's limit is 64)."""
    labels = hostname.split(".")
    ok = 0 < len(hostname) <= 63 and all(
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(c in _HOSTNAME_CHARS for c in label)
        for label in labels
    )
    if not ok:
        raise UserError(f"invalid hostname format: {hostname}")
    return hostname


def validate_name(name: str) -> str:
    """Docker's container name rule: ``/?[a-zA-Z0-9][a-zA-Z0-9_.-]+``."""
    bare = name[1:] if name.startswith("/") else name
    if len(bare) < 2 or bare[0] not in _NAME_FIRST or not all(c in _NAME_CHARS for c in bare):
        raise UserError(
            f"invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return bare


def resolve_rootfs(path: str) -> str:
    """The rootfs as an absolute real path; it must be an existing directory."""
    if not path:
        raise UserError("rootfs must not be empty")
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise UserError(f"rootfs {path} does not exist")
    if not os.path.isdir(real):
        raise UserError(f"rootfs {path} is not a directory")
    return real


def parse_restart(policy: str | None) -> tuple[str, int]:
    """Docker's ``--restart`` syntax -> ``(name, maximum retry count)``."""
    if not policy:
        return "no", 0
    name, sep, count_text = policy.partition(":")
    if sep and not name:
        raise UserError("invalid restart policy format: no policy provided before colon")
    count = 0
    if count_text:
        try:
            count = int(count_text)
        except ValueError:
            raise UserError(
                "invalid restart policy format: maximum retry count must be an integer"
            ) from None
    if name in ("no", "always", "unless-stopped"):
        if count != 0:
            msg = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
            raise UserError(msg + (" and cannot be negative" if count < 0 else ""))
    elif name == "on-failure":
        if count < 0:
            raise UserError("invalid restart policy: maximum retry count cannot be negative")
    else:
        raise UserError(
            f"invalid restart policy: unknown policy '{name}'; use one of "
            "'no', 'always', 'on-failure', or 'unless-stopped'"
        )
    return name, count


_SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def parse_size(text: str) -> int:
    """Docker's ``units.FromHumanSize`` (what json-file's ``max-size`` uses):
    ``10m`` = 10,000,000 bytes; ``k``/``m``/``g``/``t``/``p``, an optional
    ``i`` and ``b``, any case; decimal units."""
    body = text.strip().lower()
    if body.endswith("b"):
        body = body[:-1]
    if body.endswith("i"):
        body = body[:-1]
    unit = body[-1:] if body[-1:] in _SIZE_UNITS else ""
    number = body[: len(body) - len(unit)].rstrip(" ")
    digits = number.replace(".", "", 1)
    if not digits.isdigit() or not digits.isascii() or number.startswith("."):
        raise UserError(f"invalid size: '{text}'")
    return int(float(number) * _SIZE_UNITS[unit])


def parse_log_opts(driver: str, opts: Iterable[str]) -> tuple[int, int, dict[str, str]]:
    """``--log-driver``/``--log-opt`` -> ``(max_size bytes (0: no rotation),
    max_files, config as given)`` for the json-file driver."""
    if driver != LOG_DRIVER:
        raise UserError(
            f"logger: no log driver named '{driver}' is registered (only {LOG_DRIVER} is supported)"
        )
    config: dict[str, str] = {}
    for item in opts:
        key, _, value = item.partition("=")
        config[key] = value
    max_size = 0
    max_files = 1
    for key, value in config.items():
        if key == "max-size":
            max_size = parse_size(value)
            if max_size <= 0:
                raise UserError("max-size must be a positive number")
        elif key == "max-file":
            try:
                max_files = int(value)
            except ValueError:
                raise UserError(f'strconv.Atoi: parsing "{value}": invalid syntax') from None
            if max_files < 1:
                raise UserError("max-file cannot be less than 1")
        else:
            raise UserError(f"unknown log opt '{key}' for {LOG_DRIVER} log driver")
    return max_size, max_files, config


def check_run_options(opts: RunOptions) -> None:
    """Validate the lifecycle options (restart policy, logging, stop signal
    and timeout) with Docker's messages."""
    name, _ = parse_restart(opts.restart)
    if opts.remove and name != "no":
        raise UserError("Conflicting options: --restart and --rm")
    parse_log_opts(opts.log_driver, opts.log_opts)
    if opts.stop_signal is not None:
        from .signals import parse_signal

        parse_signal(opts.stop_signal)
    if opts.stop_timeout is not None and not isinstance(opts.stop_timeout, int):
        raise UserError(f"stop timeout must be an integer, not {opts.stop_timeout!r}")


def _check_network(network: str) -> str:
    from .network import check_mode

    return check_mode(network)


def _check_workdir(workdir: str | None) -> str:
    if workdir is None or workdir == "":
        return "/"
    if not workdir.startswith("/"):
        raise UserError(
            f"the working directory '{workdir}' is invalid, it needs to be an absolute path"
        )
    return mounts.clean_path(workdir)


def _sysctls(network: str) -> dict[str, str]:
    if network == "host":
        return {}
    return {
        key: value
        for key, value in _NETNS_SYSCTLS
        if os.path.exists("/proc/sys/" + key.replace(".", "/"))
    }


def build_spec(
    opts: RunOptions,
    *,
    container_id: str,
    container_dir: str,
    environ: Mapping[str, str] | None = None,
    image: ImageRun | None = None,
    supervised: bool = False,
    netns: str | None = None,
) -> dict[str, Any]:
    """Validate ``opts`` and build the OCI spec (``supervised``: for a
    container run by a supervisor, which always has a cgroup; ``netns``:
    the network namespace to join by path, see
    :func:`pyctr_fast.network.namespace_path`).

    ``container_dir`` is where the engine's /etc files will be (they are bound
    from there); ``environ`` is where ``-e K`` looks K up (default: os.environ).
    With ``image``, its config supplies the command, Env, WorkingDir and User
    (Docker's override rules) and the rootfs is ``<container_dir>/rootfs``, on
    which the native side mounts the overlay.
    Raises :class:`UserError` for anything invalid.
    """
    if environ is None:
        environ = os.environ
    check_run_options(opts)
    image_cfg: dict[str, Any] = image.container_config if image is not None else {}
    if image is not None:
        from .image_run import command_for

        command = command_for(image_cfg, opts.command, opts.entrypoint)
    else:
        command = list(opts.command)
    if not command:
        raise UserError("no command specified")
    network = _check_network(opts.network)
    if opts.publish or opts.ip or opts.mac_address or opts.network_aliases:
        from .netopts import check_endpoint_options

        check_endpoint_options(opts, network)
    if opts.publish:
        from .ports import port_bindings

        port_bindings(opts.publish)  # validates
    netflags = (opts.expose, opts.dns, opts.dns_search, opts.dns_options, opts.extra_hosts)
    if opts.publish_all or any(netflags):
        from .netopts import check_network_options

        check_network_options(opts, network)
    if opts.hostname:
        hostname = validate_hostname(opts.hostname)
    elif network == "host":
        hostname = os.uname().nodename
    else:
        hostname = default_hostname(container_id)
    name = validate_name(opts.name) if opts.name is not None else None
    cwd = _check_workdir(opts.workdir or image_cfg.get("WorkingDir") or None)
    capabilities = caps.resolve_capabilities(
        opts.cap_add, opts.cap_drop, privileged=opts.privileged
    )
    seccomp, no_new_privileges = None, False
    if opts.security_opt:
        from .seccomp_profile import security_spec

        seccomp, no_new_privileges = security_spec(
            opts.security_opt, capabilities=capabilities, privileged=opts.privileged
        )
    user_mounts = [mounts.parse_volume(v) for v in opts.volumes]
    user_mounts += [mounts.parse_tmpfs(t) for t in opts.tmpfs]
    all_mounts = mounts.assemble_mounts(
        user_mounts,
        etcfiles.engine_mounts(container_dir, opts.read_only),
        read_only=opts.read_only,
        privileged=opts.privileged,
    )
    if image is None:
        rootfs = resolve_rootfs(opts.rootfs)
        user = users.lookup_user(rootfs, opts.user)
    else:
        rootfs = os.path.join(container_dir, "rootfs")
        user_spec = opts.user or image_cfg.get("User") or None
        user = users.resolve_user(
            user_spec, image.read_text("/etc/passwd"), image.read_text("/etc/group")
        )
    env = environment.build_env(
        hostname=hostname,
        tty=opts.tty,
        home=user.home,
        env=opts.env,
        env_files=opts.env_files,
        environ=environ,
        image_env=image_cfg.get("Env") or (),
    )

    namespaces: list[dict[str, str]] = []
    for ns in NAMESPACES:
        if ns == "network" and network == "host":
            continue
        if ns == "network" and netns is not None:
            namespaces.append({"type": ns, "path": netns})
        else:
            namespaces.append({"type": ns})
    linux: dict[str, Any] = {"namespaces": namespaces}
    if not opts.privileged:
        linux["maskedPaths"] = mounts.masked_paths()
        linux["readonlyPaths"] = list(mounts.READONLY_PATHS)
    sysctl = _sysctls(network)
    if sysctl:
        linux["sysctl"] = sysctl
    if opts.limits is not None and opts.limits.oci:
        linux["resources"] = opts.limits.oci
    if seccomp is not None:
        linux["seccomp"] = seccomp
    if opts.wants_cgroup(supervised):
        linux["cgroupsPath"] = cgroups_path(opts.cgroup_parent, container_id, environ)

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": opts.tty,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                "additionalGids": list(user.additional_gids),
            },
            "args": command,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": capabilities,
                "effective": list(capabilities),
                "inheritable": [],
                "permitted": list(capabilities),
                "ambient": [],
            },
            "noNewPrivileges": no_new_privileges,
        },
        "root": {"path": rootfs, "readonly": opts.read_only},
        "hostname": hostname,
        "mounts": all_mounts,
        "linux": linux,
    }
    annotations: dict[str, str] = {}
    if name is not None:
        annotations[ANNOTATION_NAME] = name
    if image is not None:
        annotations[ANNOTATION_IMAGE] = image.image_id
        stop_signal = image_cfg.get("StopSignal")
        if stop_signal:
            annotations[ANNOTATION_STOP_SIGNAL] = str(stop_signal)
        for key, value in (image_cfg.get("Labels") or {}).items():
            annotations.setdefault(str(key), str(value))
    if opts.stop_signal:
        annotations[ANNOTATION_STOP_SIGNAL] = opts.stop_signal
    if annotations:
        spec["annotations"] = annotations
    return spec
