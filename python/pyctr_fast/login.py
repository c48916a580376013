"""``login`` and ``logout`` (credentials: :mod:`pyctr_fast.auth`)."""

from __future__ import annotations

import sys

from .errors import UserError
from .flags import BOOL, VALUE, Flag
from .flags import write_out as out
from .images import parse_args

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["login_cli", "logout_cli"]


def login_cli(args: Sequence[str], root: str | None) -> int:
    from .auth import CredentialStore

    got = parse_args(
        args,
        (
            Flag("username", VALUE, "Username", short="u"),
            Flag("password", VALUE, "Password", short="p"),
            Flag("password-stdin", BOOL, "Take the password from stdin"),
        ),
        "login [OPTIONS] [SERVER]",
        (0, 1),
    )
    if got is None:
        return 0
    parsed, rest = got
    host = rest[0] if rest else "docker.io"
    user = parsed.value("username")
    password = parsed.value("password")
    if parsed.flag("password-stdin"):
        if password is not None:
            raise UserError("--password and --password-stdin are mutually exclusive")
        if not user:
            raise UserError("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    if not user or password is None:
        raise UserError("login needs --username and --password (or --password-stdin)")
    if parsed.value("password") is not None:
        sys.stderr.write(
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n"
        )
    CredentialStore().login(host, user, password)
    out("Login Succeeded\n")
    return 0


def logout_cli(args: Sequence[str], root: str | None) -> int:
    from .auth import CredentialStore

    got = parse_args(args, (), "logout [SERVER]", (0, 1))
    if got is None:
        return 0
    _, rest = got
    host = rest[0] if rest else "docker.io"
    if CredentialStore().logout(host):
        out(f"Removing login credentials for {host}\n")
    else:
        out(f"Not logged in to {host}\n")
    return 0
