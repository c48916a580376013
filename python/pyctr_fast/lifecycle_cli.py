"""The container lifecycle commands, with Docker's names, flags, output and
exit codes: ``create``, ``start``, ``stop``, ``kill``, ``restart``, ``rm``,
``wait``, ``rename``, ``pause``, ``unpause`` and ``container SUBCOMMAND``.

Commands that take several containers act on each; a container that fails
is reported (``pyctr-fast: <error>``) and the others still run; the status
is then 1.  Flags may come before, between or after the container names.
"""

from __future__ import annotations

import sys

from .errors import UserError
from .flags import BOOL, VALUE, Flag, format_flags, parse_flags, write_out

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .flags import ParsedFlags

__all__ = ["COMMANDS"]

PROG = "pyctr-fast"

HELP = Flag("help", BOOL, "Print usage")
TIME = Flag("time", VALUE, "Seconds to wait before killing the container", short="t", metavar="int")
SIGNAL_STOP = Flag("signal", VALUE, "Signal to send to the container", short="s")

START_FLAGS = (
    Flag("attach", BOOL, "Attach STDOUT/STDERR and forward signals", short="a"),
    HELP,
    Flag("interactive", BOOL, "Attach container's STDIN", short="i"),
)
STOP_FLAGS = (HELP, SIGNAL_STOP, TIME)
KILL_FLAGS = (
    HELP,
    Flag("signal", VALUE, 'Signal to send to the container (default "KILL")', short="s"),
)
RM_FLAGS = (
    Flag("force", BOOL, "Force the removal of a running container (uses SIGKILL)", short="f"),
    HELP,
    Flag("volumes", BOOL, "Remove anonymous volumes associated with the container", short="v"),
)
PRUNE_FLAGS = (Flag("force", BOOL, "Do not prompt for confirmation", short="f"), HELP)
PLAIN_FLAGS = (HELP,)


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def _split(args: Sequence[str], table: Sequence[Flag]) -> tuple[list[str], list[str]]:
    """Separate flags (anywhere, as cobra allows) from positional words."""
    by_long = {f.long: f for f in table}
    by_short = {f.short: f for f in table if f.short}
    flags: list[str] = []
    words: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            words.extend(args[i:])
            break
        if arg.startswith("--"):
            flags.append(arg)
            flag = by_long.get(arg[2:].partition("=")[0])
            if flag is not None and flag.kind != BOOL and "=" not in arg and i < len(args):
                flags.append(args[i])
                i += 1
        elif arg.startswith("-") and len(arg) > 1:
            flags.append(arg)
            for j, letter in enumerate(arg[1:], 1):
                flag = by_short.get(letter)
                if flag is None or flag.kind == BOOL:
                    if arg[j + 1 : j + 2] == "=":
                        break
                    continue
                if j == len(arg) - 1 and i < len(args):
                    flags.append(args[i])
                    i += 1
                break
        else:
            words.append(arg)
    return flags, words


def _parse(
    command: str, args: Sequence[str], table: Sequence[Flag], usage: str, about: str
) -> tuple[ParsedFlags, list[str]] | None:
    """Flags and words, or None after printing ``--help``."""
    flags, words = _split(args, table)
    parsed, extra = parse_flags(flags, table)
    words = extra + words
    if parsed.flag("help"):
        write_out(
            f"Usage:  {PROG} {command} {usage}\n\n{about}\n\nOptions:\n{format_flags(table)}\n"
        )
        return None
    return parsed, words


def _need(command: str, words: Sequence[str], least: int, most: int | None = None) -> None:
    """Docker's argument-count errors (exit status 1)."""
    if least <= len(words) and (most is None or len(words) <= most):
        return
    how = "exactly" if most == least else "at least"
    what = "argument" if least == 1 else "arguments"
    raise UserError(
        f"\"{command}\" requires {how} {least} {what}; see '{PROG} {command} --help'",
        exit_code=1,
    )


def _os_message(err: OSError) -> str:
    """One line for an unexpected OS error (a read-only or vanished state dir)."""
    where = f" {err.filename}" if err.filename else ""
    return f"{err.strerror or err}:{where}" if where else str(err.strerror or err)


def _refs(
    command: str, args: Sequence[str], table: Sequence[Flag], about: str
) -> tuple[ParsedFlags, list[str]] | None:
    """Flags and at least one container (``command [OPTIONS] CONTAINER
    [CONTAINER...]``), or None after printing ``--help``."""
    options = "" if table is PLAIN_FLAGS else "[OPTIONS] "
    got = _parse(command, args, table, options + "CONTAINER [CONTAINER...]", about)
    if got is not None:
        _need(command, got[1], 1)
    return got


def _each(refs: Sequence[str], act: Callable[[str], object]) -> int:
    """Run ``act`` for every container and print what it returns (the
    container as named when that is None); report failures and carry on;
    1 if any failed."""
    from ._native import ContainerError

    status = 0
    for ref in refs:
        try:
            shown = act(ref)
        except (UserError, ContainerError) as err:
            _error(str(err))
            status = 1
            continue
        except OSError as err:
            _error(_os_message(err))
            status = 1
            continue
        write_out(f"{ref if shown is None else shown}\n")
    return status


def _int_flag(parsed: ParsedFlags, dest: str) -> int | None:
    from .cli import parse_int_flag

    return parse_int_flag(parsed, dest)


# --------------------------------------------------------------------------- commands


def create_cli(args: Sequence[str], root: str | None) -> int:
    """``create [OPTIONS] IMAGE|--rootfs DIR [COMMAND] [ARG...]``: prints the id."""
    from .cli import RUN_FLAGS, options_from_run_args

    table = tuple(f for f in RUN_FLAGS if f.long != "detach")
    # Docker's "unknown flag" for run-only flags such as -d.
    parsed, _ = parse_flags(args, table)
    if parsed.flag("help"):
        write_out(
            f"Usage:  {PROG} create [OPTIONS] --rootfs DIR COMMAND [ARG...]\n"
            f"        {PROG} create [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n"
            f"Create a new container\n\nOptions:\n{format_flags(table)}\n"
        )
        return 0
    opts, _ = options_from_run_args(args)
    if opts is None:
        return 0
    from . import lifecycle

    rec = lifecycle.create(opts, root=root)
    write_out(rec.id + "\n")
    return 0


def start_cli(args: Sequence[str], root: str | None) -> int:
    """``start [-a] [-i] CONTAINER...``: prints each name given; with ``-a``
    the container's output, and its exit status is returned."""
    got = _refs("start", args, START_FLAGS, "Start one or more stopped containers")
    if got is None:
        return 0
    parsed, words = got
    from . import lifecycle

    attach = parsed.flag("attach") or parsed.flag("interactive")
    if attach:
        if len(words) > 1:
            raise UserError("you cannot start and attach multiple containers at once", 1)
        from ._native import ContainerError

        try:
            status = lifecycle.start(root, words[0], attach=True, forward_signals=True)
        except ContainerError as err:
            _error(str(err))
            return 1
        return 0 if status is None else status
    return _each(words, lambda ref: lifecycle.start(root, ref))


# Each ``prepare(flags, root)`` below checks a command's flags and returns
# what it does to one container (see _each).


def _stop(parsed: ParsedFlags, root: str | None) -> Callable[[str], object]:
    """``stop [-t N] [-s SIG] CONTAINER...``."""
    from . import lifecycle

    timeout = _int_flag(parsed, "time")
    sig = parsed.value("signal")
    if sig is not None:
        from .signals import parse_signal

        parse_signal(sig)
    return lambda ref: lifecycle.stop(root, ref, timeout, signal=sig)


def _kill(parsed: ParsedFlags, root: str | None) -> Callable[[str], object]:
    """``kill [-s SIG] CONTAINER...``."""
    from . import lifecycle
    from .signals import parse_signal

    sig = parsed.value("signal") or "KILL"
    parse_signal(sig)
    return lambda ref: lifecycle.kill(root, ref, sig)


def _restart(parsed: ParsedFlags, root: str | None) -> Callable[[str], object]:
    """``restart [-t N] [-s SIG] CONTAINER...``."""
    from . import lifecycle

    timeout = _int_flag(parsed, "time")
    sig = parsed.value("signal")
    return lambda ref: lifecycle.restart(root, ref, timeout, signal=sig)


def _rm(parsed: ParsedFlags, root: str | None) -> Callable[[str], object]:
    """``rm [-f] [-v] CONTAINER...``."""
    from . import lifecycle

    force, volumes = parsed.flag("force"), parsed.flag("volumes")
    return lambda ref: lifecycle.remove(root, ref, force=force, volumes=volumes)


def _wait(parsed: ParsedFlags, root: str | None) -> Callable[[str], object]:
    """``wait CONTAINER...``: prints each exit code."""
    from . import lifecycle

    return lambda ref: lifecycle.wait(root, ref)


def _pause(parsed: ParsedFlags, root: str | None) -> Callable[[str], object]:
    """``pause CONTAINER...``."""
    from . import lifecycle

    return lambda ref: lifecycle.pause(root, ref)


def _unpause(parsed: ParsedFlags, root: str | None) -> Callable[[str], object]:
    """``unpause CONTAINER...``."""
    from . import lifecycle

    return lambda ref: lifecycle.unpause(root, ref)


#: The commands that act on each container named: their flags, help line and
#: ``prepare``.
_EACH: dict[
    str, tuple[tuple[Flag, ...], str, Callable[[ParsedFlags, str | None], Callable[[str], object]]]
] = {
    "stop": (STOP_FLAGS, "Stop one or more running containers", _stop),
    "kill": (KILL_FLAGS, "Kill one or more running containers", _kill),
    "restart": (STOP_FLAGS, "Restart one or more containers", _restart),
    "rm": (RM_FLAGS, "Remove one or more containers", _rm),
    "wait": (
        PLAIN_FLAGS,
        "Block until one or more containers stop, then print their exit codes",
        _wait,
    ),
    "pause": (PLAIN_FLAGS, "Pause all processes within one or more containers", _pause),
    "unpause": (PLAIN_FLAGS, "Unpause all processes within one or more containers", _unpause),
}


def _each_cli(command: str) -> Callable[[Sequence[str], str | None], int]:
    """The handler of one of the commands in :data:`_EACH`."""
    table, about, prepare = _EACH[command]

    def run(args: Sequence[str], root: str | None) -> int:
        got = _refs(command, args, table, about)
        if got is None:
            return 0
        parsed, refs = got
        return _each(refs, prepare(parsed, root))

    run.__doc__ = prepare.__doc__
    return run


def rename_cli(args: Sequence[str], root: str | None) -> int:
    """``rename CONTAINER NEW_NAME``."""
    got = _parse("rename", args, PLAIN_FLAGS, "CONTAINER NEW_NAME", "Rename a container")
    if got is None:
        return 0
    _, words = got
    _need("rename", words, 2, 2)
    from . import lifecycle

    lifecycle.rename(root, words[0], words[1])
    return 0


def prune_cli(args: Sequence[str], root: str | None) -> int:
    """``container prune [-f]``: asks first unless ``-f``."""
    got = _parse("container prune", args, PRUNE_FLAGS, "[OPTIONS]", "Remove all stopped containers")
    if got is None:
        return 0
    parsed, words = got
    if words:
        raise UserError(
            f"\"container prune\" accepts no arguments; see '{PROG} container prune --help'", 1
        )
    if not parsed.flag("force"):
        write_out(
            "WARNING! This will remove all stopped containers.\n"
            "Are you sure you want to continue? [y/N] "
        )
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    from . import lifecycle

    removed = lifecycle.prune(root)
    text = "".join(cid + "\n" for cid in removed)
    write_out(
        ("Deleted Containers:\n" + text + "\n" if removed else "") + "Total reclaimed space: 0B\n"
    )
    return 0


CONTAINER_HELP = f"""\
Usage:  {PROG} container COMMAND

Manage containers

Commands:
  create      Create a new container
  exec        Execute a command in a running container
  inspect     Display detailed information on one or more containers
  kill        Kill one or more running containers
  logs        Fetch the logs of a container
  ls          List containers
  pause       Pause all processes within one or more containers
  prune       Remove all stopped containers
  rename      Rename a container
  restart     Restart one or more containers
  rm          Remove one or more containers
  run         Create and run a new container
  start       Start one or more stopped containers
  stats       Display a live stream of container(s) resource usage statistics
  stop        Stop one or more running containers
  top         Display the running processes of a container
  unpause     Unpause all processes within one or more containers
  update      Update configuration of one or more containers
  wait        Block until one or more containers stop, then print their exit codes
  cp          Copy files/folders between a container and the local filesystem

Run '{PROG} container COMMAND --help' for more information on a command.
"""

#: ``container SUB``: the module (imported on use) and command that do it.
_ELSEWHERE = {
    "ls": ("views_cli", "ps"),
    "list": ("views_cli", "ps"),
    "ps": ("views_cli", "ps"),
    "inspect": ("views_cli", "inspect"),
    "logs": ("views_cli", "logs"),
    "top": ("views_cli", "top"),
    "cp": ("views_cli", "cp"),
    "exec": ("exec_cli", "exec"),
    "stats": ("stats_cli", "stats"),
    "update": ("update_cli", "update"),
}


def container_cli(args: Sequence[str], root: str | None) -> int:
    """``container SUBCOMMAND ...``."""
    if not args or args[0] in ("-h", "--help", "help"):
        write_out(CONTAINER_HELP)
        return 0
    sub, rest = args[0], args[1:]
    if sub == "prune":
        return prune_cli(rest, root)
    if sub == "run":
        from .cli import run_cli

        return run_cli(rest, root)
    handler = COMMANDS.get(sub) if sub != "container" else None
    if handler is not None:
        return handler(rest, root)
    if sub in _ELSEWHERE:
        import importlib

        module_name, command = _ELSEWHERE[sub]
        module = importlib.import_module(f".{module_name}", __package__)
        found: Callable[[Sequence[str], str | None], int] = module.COMMANDS[command]
        return found(rest, root)
    raise UserError(f"'container {sub}' is not a {PROG} command; see '{PROG} container --help'")


def _guarded(
    handler: Callable[[Sequence[str], str | None], int], code: int
) -> Callable[[Sequence[str], str | None], int]:
    """``handler`` with unexpected OS errors as one-line errors (exit ``code``)."""

    def run(args: Sequence[str], root: str | None) -> int:
        try:
            return handler(args, root)
        except OSError as err:
            raise UserError(_os_message(err), code) from None

    run.__doc__ = handler.__doc__
    return run


COMMANDS: dict[str, Callable[[Sequence[str], str | None], int]] = {
    "create": _guarded(create_cli, 125),
    "start": _guarded(start_cli, 1),
    **{name: _guarded(_each_cli(name), 1) for name in _EACH},
    "rename": _guarded(rename_cli, 1),
    "container": _guarded(container_cli, 1),
}
