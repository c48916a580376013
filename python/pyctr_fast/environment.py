"""The container's environment: ``-e``, ``--env-file`` and Docker's defaults.

Docker's rules:

* ``-e K=V`` sets K; ``-e K`` takes K from the caller's environment, and when
  the caller has no K it *unsets* K in the container (it removes a default);
* an env file has one ``K=V`` or bare ``K`` per line; blank lines and lines
  starting with ``#`` (after leading whitespace) are skipped; the value is
  everything after the first ``=``, untouched; a bare K unset in the caller's
  environment is dropped; a name with whitespace is an error;
* env files are applied first, then ``-e`` (whatever the order of the flags);
* the defaults are ``PATH``, ``HOSTNAME`` and, with ``-t``, ``TERM=xterm``;
  user values replace a default in place and are otherwise appended in order;
* ``HOME`` comes last from the user's passwd entry when not set (runc does
  this at exec time; doing it here gives the same environment).
"""

from __future__ import annotations

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "DEFAULT_PATH",
    "build_env",
    "merge_env",
    "parse_env_arg",
    "parse_env_file",
    "read_env_file",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_BOM = "\ufeff"


def parse_env_arg(entry: str, environ: Mapping[str, str]) -> str:
    """One ``-e`` value: ``"K=V"`` as is, ``"K"`` -> ``"K=<caller's K>"``, or ``"K"``
    (meaning unset) when the caller has no K."""
    key, sep, _ = entry.partition("=")
    if not key:
        raise UserError(f"invalid environment variable: {entry}")
    if sep:
        return entry
    value = environ.get(key)
    return entry if value is None else f"{key}={value}"


def parse_env_file(text: str, environ: Mapping[str, str], filename: str = "") -> list[str]:
    """The ``K=V`` entries of an env file's text, Docker's format."""
    out: list[str] = []
    lines = text.split("\n")
    for number, raw in enumerate(lines, 1):
        if any("\udc80" <= ch <= "\udcff" for ch in raw):
            raise UserError(f"env file {filename} contains invalid utf8 bytes at line {number}")
        if number == 1 and raw.startswith(_BOM):
            raw = raw[1:]
        if raw.endswith("\r"):
            raw = raw[:-1]
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if " " in key or "\t" in key:
            raise UserError(f"poorly formatted environment: variable '{key}' contains whitespaces")
        if not key:
            raise UserError(f"poorly formatted environment: no variable name on line '{line}'")
        if sep:
            out.append(f"{key}={value}")
        elif key in environ:
            out.append(f"{key}={environ[key]}")
    return out


def read_env_file(path: str, environ: Mapping[str, str]) -> list[str]:
    """:func:`parse_env_file` on the host file ``path``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise UserError(f"open {path}: {err.strerror or err}") from None
    return parse_env_file(data.decode("utf-8", "surrogateescape"), environ, path)


def merge_env(defaults: Iterable[str], overrides: Iterable[str]) -> list[str]:
    """Docker's ``ReplaceOrAppendEnvValues``: ``K=V`` replaces K in place or is
    appended; a bare ``K`` removes K."""
    keys: list[str] = []
    values: dict[str, str | None] = {}
    for entry in defaults:
        key, _, _ = entry.partition("=")
        if key not in values:
            keys.append(key)
        values[key] = entry
    for entry in overrides:
        key, sep, _ = entry.partition("=")
        if not sep:
            if key in values:
                values[key] = None
            continue
        if key not in values:
            keys.append(key)
        values[key] = entry
    return [v for v in (values[k] for k in keys) if v is not None]


def build_env(
    *,
    hostname: str,
    tty: bool,
    home: str,
    env: Iterable[str] = (),
    env_files: Iterable[str] = (),
    environ: Mapping[str, str],
    image_env: Iterable[str] = (),
) -> list[str]:
    """The container's full environment (``image_env``: the image config's
    Env, under the user's entries as Docker's ``merge`` puts it)."""
    defaults = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if tty:
        defaults.append("TERM=xterm")
    overrides: list[str] = []
    for path in env_files:
        overrides.extend(read_env_file(path, environ))
    overrides.extend(parse_env_arg(e, environ) for e in env)
    image_env = list(image_env)
    if image_env:
        keys = {e.partition("=")[0] for e in overrides}
        overrides += [e for e in image_env if e.partition("=")[0] not in keys]
    merged = merge_env(defaults, overrides)
    if not any(e.startswith("HOME=") for e in merged):
        merged.append(f"HOME={home}")
    return merged
