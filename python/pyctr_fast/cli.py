"""The ``pyctr-fast`` command (Docker-style).

Start-up time is part of the product: this module imports only ``sys`` and the
tiny flag parser; ``run`` loads what it needs when it runs, and ``--version``
and ``--help`` load nothing else.
"""

from __future__ import annotations

import sys

from . import trace  # first: the trace origin is the CLI's import
from .errors import UserError
from .flags import BOOL, LIST, VALUE, Flag, ParsedFlags, format_flags, parse_flags, write_out
from .resources_flags import RESOURCE_FLAGS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .spec import RunOptions

__all__ = [
    "GLOBAL_FLAGS",
    "RUN_FLAGS",
    "main",
    "options_from_run_args",
    "parse_int_flag",
    "run_cli",
]

PROG = "pyctr-fast"

GLOBAL_FLAGS: tuple[Flag, ...] = (
    Flag(
        "root",
        VALUE,
        'Root directory of the engine\'s state (default "/var/lib/pyctr-fast", or $PYCTR_ROOT)',
    ),
    Flag("version", BOOL, "Print version information and quit", short="v"),
    Flag("help", BOOL, "Print usage", short="h"),
)

RUN_FLAGS: tuple[Flag, ...] = (
    Flag("add-host", LIST, "Add a custom host-to-IP mapping (host:ip)"),
    Flag("cap-add", LIST, "Add Linux capabilities"),
    Flag("cap-drop", LIST, "Drop Linux capabilities"),
    Flag("cgroup-parent", VALUE, "Optional parent cgroup for the container", metavar="string"),
    Flag("detach", BOOL, "Run container in background and print container ID", short="d"),
    Flag("dns", LIST, "Set custom DNS servers"),
    Flag("dns-option", LIST, "Set DNS options"),
    Flag("dns-opt", LIST, "Alias of --dns-option", dest="dns-option"),
    Flag("dns-search", LIST, "Set custom DNS search domains"),
    Flag("entrypoint", VALUE, "Overwrite the default ENTRYPOINT of the image"),
    Flag("env", LIST, "Set environment variables", short="e"),
    Flag("env-file", LIST, "Read in a file of environment variables"),
    Flag("expose", LIST, "Expose a port or a range of ports"),
    Flag("help", BOOL, "Print usage"),
    Flag("hostname", VALUE, "Container host name", short="h"),
    Flag("interactive", BOOL, "Keep STDIN open", short="i"),
    Flag("log-driver", VALUE, 'Logging driver for the container (only "json-file")'),
    Flag("log-opt", LIST, "Log driver options (max-size, max-file)"),
    Flag("name", VALUE, "Assign a name to the container"),
    Flag(
        "network",
        VALUE,
        'Connect a container to a network: "bridge" (default), "none", "host", '
        '"container:NAME" or a user-defined network',
    ),
    Flag("net", VALUE, "Alias of --network", dest="network"),
    Flag("network-alias", LIST, "Add network-scoped alias for the container"),
    Flag("ip", VALUE, "IPv4 address (e.g., 172.30.100.104)"),
    Flag("mac-address", VALUE, "Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    Flag(
        "publish",
        LIST,
        "Publish a container's port to the host ([IP:][HOSTPORT:]PORT[/udp]; bridge network)",
        short="p",
    ),
    Flag(
        "publish-all",
        BOOL,
        "Publish all exposed ports to random ports (bridge network)",
        short="P",
    ),
    Flag("platform", VALUE, "Set platform if server is multi-platform capable"),
    Flag("privileged", BOOL, "Give extended privileges to this container"),
    Flag("pull", VALUE, 'Pull image before running ("always", "missing", "never")'),
    Flag("read-only", BOOL, "Mount the container's root filesystem as read only"),
    Flag(
        "restart",
        VALUE,
        'Restart policy to apply when a container exits (default "no")',
    ),
    Flag("rm", BOOL, "Automatically remove the container when it exits"),
    Flag("rootfs", VALUE, "Root filesystem directory to run instead of an image", metavar="dir"),
    Flag("security-opt", LIST, "Security options (seccomp=PROFILE|unconfined, no-new-privileges)"),
    Flag("stop-signal", VALUE, "Signal to stop the container"),
    Flag("stop-timeout", VALUE, "Timeout (in seconds) to stop a container", metavar="int"),
    Flag("tmpfs", LIST, "Mount a tmpfs directory"),
    Flag("tty", BOOL, "Allocate a pseudo-TTY", short="t"),
    Flag("user", VALUE, "Username or UID (format: <name|uid>[:<group|gid>])", short="u"),
    Flag("volume", LIST, "Bind mount a volume (SRC:DST[:ro|rw])", short="v"),
    Flag("workdir", VALUE, "Working directory inside the container", short="w"),
    *RESOURCE_FLAGS,
)

MAIN_HELP = f"""\
Usage:  {PROG} [OPTIONS] COMMAND

A daemonless, Docker-compatible container engine

Options:
{{options}}

Commands:
  run         Create and run a new container from an image or a root filesystem
  create      Create a new container
  start       Start one or more stopped containers
  ps          List containers
  exec        Execute a command in a running container
  logs        Fetch the logs of a container
  inspect     Return low-level information on containers or images
  stop        Stop one or more running containers
  kill        Kill one or more running containers
  restart     Restart one or more containers
  rm          Remove one or more containers
  wait        Block until one or more containers stop, then print their exit codes
  top         Display the running processes of a container
  port        List port mappings or a specific mapping for the container
  stats       Display a live stream of container(s) resource usage statistics
  rename      Rename a container
  pause       Pause all processes within one or more containers
  unpause     Unpause all processes within one or more containers
  update      Update configuration of one or more containers
  cp          Copy files/folders between a container and the local filesystem
  container   Manage containers (ls, prune, rm, inspect, ...)
  network     Manage networks (create, ls, inspect, rm, connect, disconnect, prune)
  pull        Download an image from a registry
  images      List images
  image       Manage images (inspect, prune, ls, rm, ...)
  rmi         Remove one or more images
  tag         Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
  load        Load an image from a tar archive or STDIN
  save        Save one or more images to a tar archive
  import      Import the contents of a tarball to create a filesystem image
  login       Log in to a registry
  logout      Log out from a registry
  version     Show the {PROG} version information

Run '{PROG} COMMAND --help' for more information on a command.
"""

RUN_HELP = f"""\
Usage:  {PROG} run [OPTIONS] --rootfs DIR COMMAND [ARG...]
        {PROG} run [OPTIONS] IMAGE [COMMAND] [ARG...]

Create and run a new container from a root filesystem or an image

Options:
{{options}}
"""

VERSION_HELP = f"""\
Usage:  {PROG} version

Show the {PROG} version information
"""


def _version() -> str:
    from . import __version__

    return __version__


def options_from_run_args(args: Sequence[str]) -> tuple[RunOptions | None, ParsedFlags]:
    """Parse ``run``'s arguments into :class:`RunOptions` (None with ``--help``)."""
    parsed, rest = parse_flags(args, RUN_FLAGS)
    if parsed.flag("help"):
        return None, parsed
    rootfs = parsed.value("rootfs")
    image = None
    if not rootfs:
        if not rest:
            raise UserError(f"\"run\" requires --rootfs DIR or an image; see '{PROG} run --help'")
        image, rest = rest[0], rest[1:]
    elif not rest:
        raise UserError(f"\"run\" requires a command to run; see '{PROG} run --help'")
    from .spec import RunOptions

    stop_timeout = parse_int_flag(parsed, "stop-timeout")
    limits = None
    if any(parsed.given(f.dest) for f in RESOURCE_FLAGS):
        from .resources import limits_from_flags

        limits = limits_from_flags(parsed)
        for warning in limits.warnings:
            print(f"WARNING: {warning}", file=sys.stderr)
    opts = RunOptions(
        rootfs or "",
        rest,
        image=image,
        entrypoint=parsed.value("entrypoint"),
        pull=parsed.value("pull") or "missing",
        platform=parsed.value("platform"),
        env=parsed.values("env"),
        env_files=parsed.values("env-file"),
        hostname=parsed.value("hostname"),
        name=parsed.value("name"),
        user=parsed.value("user"),
        workdir=parsed.value("workdir"),
        volumes=parsed.values("volume"),
        tmpfs=parsed.values("tmpfs"),
        network=parsed.value("network") or "bridge",  # spec.DEFAULT_NETWORK
        cap_add=parsed.values("cap-add"),
        cap_drop=parsed.values("cap-drop"),
        privileged=parsed.flag("privileged"),
        read_only=parsed.flag("read-only"),
        tty=parsed.flag("tty"),
        interactive=parsed.flag("interactive"),
        remove=parsed.flag("rm"),
        detach=parsed.flag("detach"),
        restart=parsed.value("restart") or "no",
        log_driver=parsed.value("log-driver") or "json-file",
        log_opts=parsed.values("log-opt"),
        stop_signal=parsed.value("stop-signal"),
        stop_timeout=stop_timeout,
        limits=limits,
        cgroup_parent=parsed.value("cgroup-parent") or None,
        security_opt=parsed.values("security-opt"),
        publish=parsed.values("publish"),
        network_aliases=parsed.values("network-alias"),
        ip=parsed.value("ip"),
        mac_address=parsed.value("mac-address"),
        publish_all=parsed.flag("publish-all"),
        expose=parsed.values("expose"),
        dns=parsed.values("dns"),
        dns_search=parsed.values("dns-search"),
        dns_options=parsed.values("dns-option"),
        extra_hosts=parsed.values("add-host"),
    )
    return opts, parsed


def parse_int_flag(parsed: ParsedFlags, dest: str) -> int | None:
    """An integer flag's value (None when not given), with pflag's error."""
    text = parsed.value(dest)
    if text is None:
        return None
    try:
        return int(text, 10)
    except ValueError:
        raise UserError(
            f'invalid argument "{text}" for "--{dest}" flag: '
            f'strconv.ParseInt: parsing "{text}": invalid syntax'
        ) from None


def run_cli(args: Sequence[str], root: str | None) -> int:
    """``pyctr-fast run ...``."""
    opts, _ = options_from_run_args(args)
    if opts is None:
        write_out(RUN_HELP.format(options=format_flags(RUN_FLAGS)))
        return 0
    from .container import run_from_cli

    return run_from_cli(opts, root)


def _version_cli(args: Sequence[str], root: str | None) -> int:
    parsed, rest = parse_flags(args, (Flag("help", BOOL, "Print usage", short="h"),))
    if parsed.flag("help"):
        write_out(VERSION_HELP)
        return 0
    if rest:
        raise UserError(f"\"version\" accepts no arguments; see '{PROG} version --help'")
    try:
        from . import _native

        native = _native.__version__
    except ImportError:
        native = "not built"
    write_out(
        f"{PROG} version {_version()}\n Python:   {sys.version.split()[0]}\n Native:   {native}\n"
    )
    return 0


def _help_cli(args: Sequence[str], root: str | None) -> int:
    if args:
        return _dispatch(args[0], ["--help"], root)
    write_out(MAIN_HELP.format(options=format_flags(GLOBAL_FLAGS)))
    return 0


COMMANDS: dict[str, Callable[[Sequence[str], str | None], int]] = {
    "run": run_cli,
    "version": _version_cli,
    "help": _help_cli,
}

#: Image commands, implemented in :mod:`pyctr_fast.images` (imported on use).
IMAGE_COMMANDS = frozenset(
    ("pull", "images", "image", "rmi", "tag", "load", "save", "import", "login", "logout")
)


#: Container commands: the module (imported on use) whose ``COMMANDS`` has each.
CONTAINER_COMMANDS: dict[str, str] = {
    **dict.fromkeys(
        (
            "create",
            "start",
            "stop",
            "kill",
            "restart",
            "rm",
            "wait",
            "rename",
            "pause",
            "unpause",
            "container",
        ),
        "lifecycle_cli",
    ),
    **dict.fromkeys(("ps", "inspect", "logs", "top", "cp", "port"), "views_cli"),
    "exec": "exec_cli",
    "update": "update_cli",
    "stats": "stats_cli",
    "network": "network_cli",
}


def _dispatch(command: str, args: Sequence[str], root: str | None) -> int:
    handler = COMMANDS.get(command)
    if handler is None and command in IMAGE_COMMANDS:
        from .images import COMMANDS as image_commands

        handler = image_commands[command]
    if handler is None and command in CONTAINER_COMMANDS:
        import importlib

        module = importlib.import_module(f".{CONTAINER_COMMANDS[command]}", __package__)
        handler = module.COMMANDS[command]
    if handler is None:
        raise UserError(f"'{command}' is not a {PROG} command; see '{PROG} --help'")
    return handler(args, root)


def _main(argv: Sequence[str]) -> int:
    trace.mark("python: cli imported")
    try:
        parsed, rest = parse_flags(argv, GLOBAL_FLAGS)
        if parsed.flag("version"):
            write_out(f"{PROG} version {_version()}\n")
            return 0
        if parsed.flag("help") or not rest:
            write_out(MAIN_HELP.format(options=format_flags(GLOBAL_FLAGS)))
            return 0
        return _dispatch(rest[0], rest[1:], parsed.value("root"))
    except UserError as err:
        sys.stderr.write(f"{PROG}: {err.message}\n")
        sys.stderr.flush()
        return err.exit_code
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the command and exit with its status."""
    raise SystemExit(_main(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
