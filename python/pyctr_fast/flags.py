"""A small, table-driven parser for Docker's command-line syntax (pflag's rules).

* long flags: ``--name VALUE`` or ``--name=VALUE``; booleans ``--rm`` or
  ``--rm=true|false``;
* short flags: ``-e VALUE``, ``-eVALUE``, ``-e=VALUE``, clusters such as
  ``-it`` or ``-ite K=V`` (a value flag takes the rest of the cluster, or the
  next word);
* list flags may be repeated and keep their order;
* options stop at ``--`` or at the first word that is not a flag (Docker's
  ``run IMAGE CMD...`` rule): everything after it is returned untouched.

Errors are :class:`~pyctr_fast.errors.UserError` with pflag's wording:
``unknown flag: --foo``, ``unknown shorthand flag: 'x' in -x``,
``flag needs an argument: --name``.

:func:`write_out` is the commands' way to print (a closed pipe is not an error).
"""

from __future__ import annotations

import sys

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BOOL",
    "LIST",
    "VALUE",
    "Flag",
    "ParsedFlags",
    "format_flags",
    "parse_flags",
    "write_out",
]

BOOL = "bool"
VALUE = "value"
LIST = "list"

_TRUE = frozenset(("1", "t", "T", "true", "TRUE", "True"))
_FALSE = frozenset(("0", "f", "F", "false", "FALSE", "False"))


class Flag:
    """One flag: ``long`` name (without ``--``), optional one-letter ``short``,
    ``kind`` (BOOL, VALUE or LIST), ``dest`` (defaults to the long name)."""

    __slots__ = ("dest", "help", "kind", "long", "metavar", "short")

    def __init__(
        self,
        long: str,
        kind: str,
        help: str,
        *,
        short: str = "",
        dest: str = "",
        metavar: str = "",
    ) -> None:
        if kind not in (BOOL, VALUE, LIST):
            raise ValueError(f"bad flag kind {kind!r}")
        self.long = long
        self.kind = kind
        self.help = help
        self.short = short
        self.dest = dest or long
        self.metavar = metavar or ("" if kind == BOOL else ("list" if kind == LIST else "string"))


class ParsedFlags:
    """The flags seen, by ``dest``."""

    __slots__ = ("_bools", "_lists", "_values")

    def __init__(self) -> None:
        self._bools: dict[str, bool] = {}
        self._values: dict[str, str] = {}
        self._lists: dict[str, list[str]] = {}

    def flag(self, dest: str) -> bool:
        """A boolean flag's value (False when not given)."""
        return self._bools.get(dest, False)

    def value(self, dest: str) -> str | None:
        """A value flag's last value (None when not given)."""
        return self._values.get(dest)

    def values(self, dest: str) -> list[str]:
        """A list flag's values, in order."""
        return list(self._lists.get(dest, ()))

    def given(self, dest: str) -> bool:
        return dest in self._bools or dest in self._values or dest in self._lists

    def _set(self, flag: Flag, value: str | None, shown: str) -> None:
        if flag.kind == BOOL:
            if value is None or value in _TRUE:
                self._bools[flag.dest] = True
            elif value in _FALSE:
                self._bools[flag.dest] = False
            else:
                raise UserError(f'invalid argument "{value}" for "{shown}" flag: not a boolean')
        elif flag.kind == VALUE:
            assert value is not None
            self._values[flag.dest] = value
        else:
            assert value is not None
            self._lists.setdefault(flag.dest, []).append(value)


def parse_flags(args: Sequence[str], table: Sequence[Flag]) -> tuple[ParsedFlags, list[str]]:
    """Parse the leading flags of ``args``; return them and the words after them."""
    by_long = {f.long: f for f in table}
    by_short = {f.short: f for f in table if f.short}
    parsed = ParsedFlags()
    i = 0
    n = len(args)
    while i < n:
        arg = args[i]
        if arg == "--":
            return parsed, list(args[i + 1 :])
        if arg.startswith("--"):
            name, sep, inline = arg[2:].partition("=")
            flag = by_long.get(name)
            if flag is None:
                raise UserError(f"unknown flag: --{name}")
            if sep or flag.kind == BOOL:
                parsed._set(flag, inline if sep else None, f"--{name}")
            elif i + 1 < n:
                i += 1
                parsed._set(flag, args[i], f"--{name}")
            else:
                raise UserError(f"flag needs an argument: --{name}")
            i += 1
            continue
        if arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                letter = arg[j]
                flag = by_short.get(letter)
                if flag is None:
                    raise UserError(f"unknown shorthand flag: '{letter}' in {arg}")
                rest = arg[j + 1 :]
                if flag.kind == BOOL:
                    if rest.startswith("="):
                        parsed._set(flag, rest[1:], f"-{letter}")
                        break
                    parsed._set(flag, None, f"-{letter}")
                    j += 1
                    continue
                if rest:
                    parsed._set(flag, rest[1:] if rest.startswith("=") else rest, f"-{letter}")
                elif i + 1 < n:
                    i += 1
                    parsed._set(flag, args[i], f"-{letter}")
                else:
                    raise UserError(f"flag needs an argument: '{letter}' in {arg}")
                break
            i += 1
            continue
        break
    return parsed, list(args[i:])


def format_flags(table: Sequence[Flag]) -> str:
    """Docker-style ``Options:`` lines for ``table``."""
    rows = []
    for f in table:
        head = f"-{f.short}, " if f.short else "    "
        head += f"--{f.long}"
        if f.metavar:
            head += f" {f.metavar}"
        rows.append((head, f.help))
    width = max((len(h) for h, _ in rows), default=0) + 3
    return "\n".join(f"  {h.ljust(width)}{text}".rstrip() for h, text in rows)


def write_out(text: str) -> None:
    """Write ``text`` to stdout at once; a reader that went away (``| head``)
    is not an error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        pass
