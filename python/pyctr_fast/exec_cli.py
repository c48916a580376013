"""``pyctr-fast exec [OPTIONS] CONTAINER COMMAND [ARG...]`` (Docker's flags).

Flags stop at the first word that is not a flag (the container), as with
Docker: everything after it is the command, untouched.
"""

from __future__ import annotations

import sys

from .errors import UserError
from .flags import BOOL, LIST, VALUE, Flag, format_flags, parse_flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["COMMANDS", "EXEC_FLAGS", "exec_cli"]

PROG = "pyctr-fast"

EXEC_FLAGS: tuple[Flag, ...] = (
    Flag("detach", BOOL, "Detached mode: run command in the background", short="d"),
    Flag("env", LIST, "Set environment variables", short="e"),
    Flag("env-file", LIST, "Read in a file of environment variables"),
    Flag("help", BOOL, "Print usage"),
    Flag("interactive", BOOL, "Keep STDIN open even if not attached", short="i"),
    Flag("privileged", BOOL, "Give extended privileges to the command"),
    Flag("tty", BOOL, "Allocate a pseudo-TTY", short="t"),
    Flag("user", VALUE, "Username or UID (format: <name|uid>[:<group|gid>])", short="u"),
    Flag("workdir", VALUE, "Working directory inside the container", short="w"),
)

EXEC_HELP = f"""\
Usage:  {PROG} exec [OPTIONS] CONTAINER COMMAND [ARG...]

Execute a command in a running container

Options:
{{options}}
"""


def exec_cli(args: Sequence[str], root: str | None) -> int:
    """``pyctr-fast exec ...``: the program's status, or Docker's for failures."""
    parsed, rest = parse_flags(args, EXEC_FLAGS)
    if parsed.flag("help"):
        try:
            sys.stdout.write(EXEC_HELP.format(options=format_flags(EXEC_FLAGS)))
            sys.stdout.flush()
        except BrokenPipeError:
            pass
        return 0
    if len(rest) < 2:
        raise UserError(
            f'"exec" requires at least 2 arguments (a container and a command); '
            f"see '{PROG} exec --help'"
        )
    from .container_exec import exec_in

    return exec_in(
        root,
        rest[0],
        rest[1:],
        env=parsed.values("env"),
        env_files=parsed.values("env-file"),
        user=parsed.value("user"),
        workdir=parsed.value("workdir"),
        tty=parsed.flag("tty"),
        interactive=parsed.flag("interactive"),
        privileged=parsed.flag("privileged"),
        detach=parsed.flag("detach"),
        forward_signals=True,
    )


COMMANDS: dict[str, Callable[[Sequence[str], str | None], int]] = {"exec": exec_cli}
