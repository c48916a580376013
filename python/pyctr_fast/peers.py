"""Name resolution on user-defined networks, through /etc/hosts.

Containers on the same user-defined network find each other by name, short
id and ``--network-alias``.  Docker answers those from a DNS server in its
daemon (127.0.0.11); a daemonless engine has no process to run one, so each
member's own ``/etc/hosts`` (a file of its container directory, bind-mounted
by path) is kept up to date instead: whenever a container joins or leaves a
network, every member's file is rewritten in place with one line per other
member::

    10.120.0.3\tweb alias1 0123456789ab\t# network mynet

Why hosts and not DNS: every libc (glibc, musl, busybox's static one) reads
it with no resolver configuration, it costs no process per network and no
port, and a lookup costs nothing at run time.  The price: a container that
exits by itself is taken off the others' files at the next join or leave
on that network (its supervisor releases the address but does not rewrite
them), and programs that cache /etc/hosts at start see later joiners late.

The members are the lease table's (:class:`pyctr_fast.ipam.Ipam`): each
lease on a user-defined network carries the names and the hosts file of its
owner.  Rewrites are serialised by ``<table>.hosts.lock``.
"""

from __future__ import annotations

import os

from .filelock import FileLock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .networks import Network

    Members = Callable[[], list[tuple[str, str, dict[str, Any]]]]

__all__ = ["refresh", "refresh_table"]

_MARK = "\t# network "


def refresh(rundir: str, net: Network) -> None:
    """Rewrite the /etc/hosts of every member of ``net``."""
    from .ipam import Ipam

    ipam = Ipam(rundir, net.ipam_table, net.subnet, net.gateway)
    _rewrite_all(ipam.path, net.name, ipam.members)


def refresh_table(table: str, network: str) -> None:
    """:func:`refresh` from the lease table's path (teardown knows only that)."""
    from . import compact_json
    from .errors import UserError

    def members() -> list[tuple[str, str, dict[str, Any]]]:
        try:
            with open(table, "rb") as f:
                state = compact_json.loads(f.read().decode())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as err:
            raise UserError(f"{table}: {err}") from None
        info = state.get("members") or {}
        return sorted(
            (address, owner, dict(info[owner]))
            for address, owner in (state.get("leases") or {}).items()
            if isinstance(info.get(owner), dict)
        )

    _rewrite_all(table, network, members)


def _rewrite_all(table: str, network: str, members_of: Members) -> None:
    lock = table[: -len(".json")] + ".hosts.lock"
    if not os.path.isdir(os.path.dirname(lock)):
        return
    with FileLock(lock):
        members = members_of()
        for _address, owner, member in members:
            lines = [
                f"{ip}\t{' '.join(m.get('names') or ())}{_MARK}{network}"
                for ip, other, m in members
                if other != owner and m.get("names")
            ]
            hosts = member.get("hosts")
            if hosts:
                _rewrite(str(hosts), network, lines)


def _rewrite(path: str, network: str, lines: list[str]) -> None:
    """Replace ``network``'s lines in the hosts file ``path`` in place (it
    is bind-mounted by path: a rename would not reach the container)."""
    try:
        with open(path, "r+", encoding="utf-8", errors="surrogateescape") as f:
            kept = [ln for ln in f.read().splitlines() if not ln.endswith(_MARK + network)]
            f.seek(0)
            f.write("\n".join(kept + lines) + "\n")
            f.truncate()
    except FileNotFoundError:
        pass  # the container is being removed
