"""IPv4 address management: one file-locked lease table per network.

Layout under the data root (``--root``/$PYCTR_ROOT)::

    networks/ipam/<network>.json   {"subnet": "10.89.0.0/24", "gateway": "10.89.0.1",
                                    "last": "10.89.0.7", "leases": {"10.89.0.2": "<owner>"}}
    networks/ipam/<network>.lock   flock'd exclusively around every read-modify-write

Every change happens under the lock and is written to a sibling file that
is renamed over the table, so a reader or a crashed writer never sees half
a table.  An address is leased to one owner (a container id) until that
owner releases it; the network address, the broadcast address and the
gateway are never handed out.  Allocation goes round-robin from the last
address handed out, as CNI's host-local does, so that a just-freed address
(still in other containers' ARP caches) is the last to be reused.  The table
is not fsync'd: after a power loss no container is running, and
:meth:`Ipam.prune` with the surviving owners puts it right.

Pure integer arithmetic: :mod:`ipaddress` costs ~8 ms to import.
"""

from __future__ import annotations

import os

from . import compact_json
from .errors import UserError
from .filelock import FileLock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = ["Ipam", "IpamError", "format_ipv4", "parse_cidr", "parse_ipv4"]


class IpamError(UserError):
    """No address could be leased (exhausted, taken, outside the subnet) or
    the lease table is unusable."""


def parse_ipv4(text: str) -> int:
    """``"a.b.c.d"`` as an integer; IpamError if it is not one."""
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        raise IpamError(f"invalid IPv4 address {text!r}")
    value = 0
    for p in parts:
        octet = int(p)
        if octet > 255:
            raise IpamError(f"invalid IPv4 address {text!r}")
        value = value << 8 | octet
    return value


def format_ipv4(value: int) -> str:
    return ".".join(str(value >> shift & 0xFF) for shift in (24, 16, 8, 0))


def parse_cidr(text: str) -> tuple[int, int]:
    """``"10.89.0.0/24"`` as ``(network, prefix)``; host bits must be zero."""
    addr, sep, prefix = text.partition("/")
    if not sep or not prefix.isdigit() or int(prefix) > 32:
        raise IpamError(f"invalid subnet {text!r}: expected a.b.c.d/prefix")
    plen = int(prefix)
    value = parse_ipv4(addr)
    if value & ~_mask(plen) & 0xFFFFFFFF:
        raise IpamError(f"invalid subnet {text!r}: host bits are set")
    return value, plen


def _mask(prefix: int) -> int:
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF


def _valid_network_name(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    return bool(name) and name[0].isalnum() and name.isascii() and set(name) <= allowed


class Ipam:
    """The lease table of network ``network`` on ``subnet`` under ``root``.

    ``gateway`` defaults to the subnet's first host address.  Opening is
    free; each call locks, reads, changes and replaces the table.
    """

    def __init__(self, root: str, network: str, subnet: str, gateway: str | None = None) -> None:
        if not _valid_network_name(network):
            raise IpamError(f"invalid network name {network!r}")
        self.network = network
        self.base, self.prefix = parse_cidr(subnet)
        self.subnet = f"{format_ipv4(self.base)}/{self.prefix}"
        size = 1 << (32 - self.prefix)
        # /31 and /32 have no network or broadcast address (RFC 3021).
        self.first = self.base + 1 if self.prefix < 31 else self.base
        self.last = self.base + size - 2 if self.prefix < 31 else self.base + size - 1
        gw = parse_ipv4(gateway) if gateway is not None else self.first
        if not self.first <= gw <= self.last:
            raise IpamError(f"gateway {format_ipv4(gw)} is not a host address of {self.subnet}")
        self.gateway = format_ipv4(gw)
        self.dir = os.path.join(root, "networks", "ipam")
        self.path = os.path.join(self.dir, f"{network}.json")

    def cidr(self, address: str) -> str:
        """``address`` with the subnet's prefix (``"10.89.0.2/24"``)."""
        return f"{address}/{self.prefix}"

    def _lock(self) -> FileLock:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        return FileLock(os.path.join(self.dir, f"{self.network}.lock"))

    def _read(self) -> dict[str, Any]:
        fresh: dict[str, Any] = {"subnet": self.subnet, "gateway": self.gateway, "leases": {}}
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return fresh
        try:
            state = compact_json.loads(text)
        except ValueError as err:
            raise IpamError(f"{self.path}: corrupt lease table: {err}") from None
        if not isinstance(state, dict) or not isinstance(state.get("leases"), dict):
            raise IpamError(f"{self.path}: corrupt lease table")
        same = (state.get("subnet"), state.get("gateway")) == (self.subnet, self.gateway)
        if not same:
            if state["leases"]:
                raise IpamError(
                    f"network {self.network} has leases on {state.get('subnet')} "
                    f"(gateway {state.get('gateway')}), not {self.subnet} (gateway {self.gateway})"
                )
            return fresh
        return state

    def _write(self, state: dict[str, Any]) -> None:
        tmp = f"{self.path}.tmp.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            data = compact_json.dumps(state).encode()
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def _check_host(self, value: int, text: str) -> None:
        if not self.first <= value <= self.last:
            raise IpamError(f"address {text} is not a host address of {self.subnet}")
        if format_ipv4(value) == self.gateway:
            raise IpamError(f"address {text} is the gateway of network {self.network}")

    def allocate(
        self, owner: str, address: str | None = None, member: Mapping[str, Any] | None = None
    ) -> str:
        """Lease an address to ``owner``: ``address`` if given (IpamError if
        it is taken or not a host address here), else the next free one.
        An owner that holds a lease gets it back (a retried start).
        ``member`` is kept beside the lease (:mod:`pyctr_fast.peers`: the
        names other containers resolve the owner by, and its hosts file)."""
        if not owner:
            raise IpamError("an address lease needs an owner")
        with self._lock():
            state = self._read()
            leases: dict[str, str] = state["leases"]
            held = next((a for a, o in leases.items() if o == owner), None)
            if address is not None:
                value = parse_ipv4(address)
                self._check_host(value, address)
                chosen = format_ipv4(value)
                if held is not None and held != chosen:
                    raise IpamError(f"{owner} already holds {held} on network {self.network}")
                if leases.get(chosen, owner) != owner:
                    raise IpamError(f"address {chosen} is already in use on network {self.network}")
            elif held is not None and member is None:
                return held
            else:
                chosen = held or self._next_free(state)
            leases[chosen] = owner
            state["last"] = chosen
            owners = set(leases.values())
            members = {o: m for o, m in (state.get("members") or {}).items() if o in owners}
            if member is not None:
                members[owner] = dict(member)
            if members:
                state["members"] = members
            else:
                state.pop("members", None)
            self._write(state)
            return chosen

    def _next_free(self, state: dict[str, Any]) -> str:
        leases = state["leases"]
        count = self.last - self.first + 1
        try:
            start = parse_ipv4(state.get("last") or "")
        except IpamError:
            start = self.last
        if not self.first <= start <= self.last:
            start = self.last
        for step in range(1, count + 1):
            candidate = format_ipv4(self.first + (start - self.first + step) % count)
            if candidate != self.gateway and candidate not in leases:
                return candidate
        raise IpamError(
            f"no available IPv4 address on network {self.network} ({self.subnet}): "
            f"all {len(leases)} leased"
        )

    def release(self, owner: str) -> str | None:
        """Give back ``owner``'s lease; the address it held, or None."""
        with self._lock():
            state = self._read()
            leases: dict[str, str] = state["leases"]
            held = next((a for a, o in leases.items() if o == owner), None)
            if held is not None:
                del leases[held]
                (state.get("members") or {}).pop(owner, None)
                self._write(state)
            return held

    def prune(self, keep: Iterable[str]) -> list[str]:
        """Release every lease whose owner is not in ``keep`` (the
        containers that still exist); the addresses freed."""
        keep = set(keep)
        with self._lock():
            state = self._read()
            leases: dict[str, str] = state["leases"]
            freed = sorted(a for a, o in leases.items() if o not in keep)
            for address in freed:
                del leases[address]
            if freed:
                self._write(state)
            return freed

    def members(self) -> list[tuple[str, str, dict[str, Any]]]:
        """``(address, owner, member)`` of every lease that has member data."""
        with self._lock():
            state = self._read()
        members = state.get("members") or {}
        return sorted(
            (address, owner, dict(members[owner]))
            for address, owner in state["leases"].items()
            if isinstance(members.get(owner), dict)
        )

    def leases(self) -> dict[str, str]:
        """``{address: owner}`` as of now."""
        with self._lock():
            return dict(self._read()["leases"])

    def remove(self) -> None:
        """Delete the table (``network rm``); IpamError while anything is leased."""
        with self._lock() as lock:
            leases = self._read()["leases"]
            if leases:
                raise IpamError(
                    f"network {self.network} has active leases: {', '.join(sorted(leases))}"
                )
            hosts_lock = os.path.join(self.dir, f"{self.network}.hosts.lock")  # pyctr_fast.peers
            for path in (self.path, lock.path, hosts_lock):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
