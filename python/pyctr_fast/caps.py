"""Linux capabilities: names, Docker's default set, --cap-add/--cap-drop.

The rules are Docker's (moby ``oci/caps``): names are accepted with or without
the ``CAP_`` prefix in any case, ``ALL`` is allowed, and the set is built by
first dropping (``--cap-drop ALL`` empties it) and then adding.  ``ALL`` and
``--privileged`` mean every capability the caller itself holds in its bounding
set (``CapBnd`` in /proc/self/status): a container cannot be given more.
"""

from __future__ import annotations

from . import _native
from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "bounding_capabilities",
    "capabilities_from_mask",
    "normalize_capability",
    "resolve_capabilities",
]

# Indexed by capability number; the Rust core holds the one list.
CAPABILITIES: tuple[str, ...] = _native.CAPABILITIES

# Docker's default set, in Docker's order.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

_ALL = "ALL"


def normalize_capability(name: str) -> str:
    """``"sys_admin"``, ``"CAP_SYS_ADMIN"``... -> ``"CAP_SYS_ADMIN"``; ``"all"`` -> ``"ALL"``."""
    upper = name.strip().upper()
    if upper == _ALL:
        return _ALL
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in CAPABILITIES:
        raise UserError(f"unknown capability: {name}")
    return upper


def capabilities_from_mask(mask: int) -> list[str]:
    """Names of the bits set in ``mask``, by number; bits with no known name are skipped."""
    return [name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1]


def bounding_capabilities(status_text: str | None = None) -> list[str]:
    """The capabilities in the caller's bounding set (``CapBnd`` of /proc/self/status).

    ``status_text`` is the content of that file (read when None).  If it cannot be
    read or has no ``CapBnd`` line, every known capability is returned.
    """
    if status_text is None:
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as f:
                status_text = f.read()
        except OSError:
            return list(CAPABILITIES)
    for line in status_text.splitlines():
        if line.startswith("CapBnd:"):
            try:
                return capabilities_from_mask(int(line[7:].strip(), 16))
            except ValueError:
                break
    return list(CAPABILITIES)


def resolve_capabilities(
    cap_add: Iterable[str] = (),
    cap_drop: Iterable[str] = (),
    *,
    privileged: bool = False,
    available: Sequence[str] | None = None,
) -> list[str]:
    """The container's capability set, Docker's way.

    ``available`` is what ``ALL`` and ``privileged`` stand for (default: the
    caller's bounding set).  Every name is validated, even when privileged.
    """
    adds = _unique(normalize_capability(c) for c in cap_add)
    drops = _unique(normalize_capability(c) for c in cap_drop)
    if privileged or _ALL in adds:
        everything = list(available) if available is not None else bounding_capabilities()
        if privileged:
            return everything
        return [c for c in everything if c not in drops]
    if _ALL in drops:
        return adds
    kept = [c for c in DEFAULT_CAPABILITIES if c not in drops]
    return _unique([*kept, *adds])


def _unique(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out
