"""Network definitions: the built-in ``bridge``, ``host`` and ``none``, and
user-defined bridge networks (``network create``).

A user-defined network is a JSON file under the data root,
``<root>/networks/<id>.json``, in Docker's ``network inspect`` shape plus
the bridge's name.  Its bridge (``pcbr-<id[:10]>``) is made at ``network
create`` and again on first use after a reboot; its address leases live in
the host-wide run directory beside the default bridge's
(``<run>/networks/ipam/<id>.json``), keyed by id so that two data roots
cannot mix up two networks of the same name.

Subnets: ``--subnet`` (any IPv4 prefix up to /30) or the first ``/24`` of
``10.120.0.0``-``10.127.255.0`` that overlaps neither a host route nor
another network of this data root (Docker's 172.17.0.0/16, podman's
10.88.0.0/16 and 10.89.x.0/24 are outside that range).
"""

from __future__ import annotations

import os
import time

from . import compact_json
from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

__all__ = [
    "BUILTIN",
    "Network",
    "create",
    "default_bridge",
    "find",
    "list_networks",
    "lookup",
    "remove_definition",
    "valid_name",
]

BUILTIN = ("bridge", "host", "none")
#: sha256("pyctr-fast default bridge network"): the same in every data root.
DEFAULT_BRIDGE_ID = "6afa163a5e90b077b2b301d6fafafc87a72106bc3c4a533e50220db2560672fe"
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_HEX = frozenset("0123456789abcdef")


def _pool() -> Iterator[str]:
    """Candidate subnets of new networks, in order."""
    for second in range(120, 128):
        for third in range(256):
            yield f"10.{second}.{third}.0/24"


class NetworkNotFound(UserError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"network {ref} not found", exit_code=1)


class Network:
    """One bridge network: the default ``bridge`` or a user-defined one.

    A plain class, not a dataclass: :mod:`dataclasses` costs ~8 ms to
    import, and this is on the start path of every bridged container."""

    __slots__ = ("bridge", "created", "gateway", "id", "internal", "labels", "name", "subnet")

    def __init__(
        self,
        name: str,
        id: str,
        bridge: str,
        subnet: str,
        gateway: str,
        created: str = "",
        labels: dict[str, str] | None = None,
        internal: bool = False,
    ) -> None:
        self.name = name
        self.id = id
        self.bridge = bridge
        self.subnet = subnet
        self.gateway = gateway
        self.created = created
        self.labels = dict(labels or {})
        self.internal = internal

    def __repr__(self) -> str:
        return f"Network(name={self.name!r}, id={self.id[:12]!r}, subnet={self.subnet!r})"

    @property
    def user_defined(self) -> bool:
        return self.name not in BUILTIN

    @property
    def ipam_table(self) -> str:
        """The lease table's name under ``<run>/networks/ipam``."""
        return "bridge" if not self.user_defined else self.id

    def to_doc(self) -> dict[str, Any]:
        """The definition file (Docker's inspect shape + our bridge)."""
        return {
            "Name": self.name,
            "Id": self.id,
            "Created": self.created,
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv6": False,
            "IPAM": {
                "Driver": "default",
                "Options": {},
                "Config": [{"Subnet": self.subnet, "Gateway": self.gateway}],
            },
            "Internal": self.internal,
            "Attachable": False,
            "Ingress": False,
            "Options": {"com.docker.network.bridge.name": self.bridge},
            "Labels": dict(self.labels),
        }

    @staticmethod
    def from_doc(doc: Mapping[str, Any]) -> Network:
        config = ((doc.get("IPAM") or {}).get("Config") or [{}])[0]
        return Network(
            name=str(doc["Name"]),
            id=str(doc["Id"]),
            bridge=str((doc.get("Options") or {})["com.docker.network.bridge.name"]),
            subnet=str(config["Subnet"]),
            gateway=str(config["Gateway"]),
            created=str(doc.get("Created") or ""),
            labels={str(k): str(v) for k, v in (doc.get("Labels") or {}).items()},
            internal=bool(doc.get("Internal")),
        )


def valid_name(name: str) -> bool:
    """Docker's rule for a network's name."""
    # Docker's rule, [a-zA-Z0-9][a-zA-Z0-9_.-]* (no `re`: ~3 ms to import).
    return bool(name) and name[0] in _ALNUM and all(c in _ALNUM or c in "_.-" for c in name)


def default_bridge(subnet: str, gateway: str) -> Network:
    """The built-in ``bridge`` network on ``pyctr0`` (its id is fixed so that
    every data root names it alike)."""
    return Network("bridge", DEFAULT_BRIDGE_ID, "pyctr0", subnet, gateway)


def _dir(root: str) -> str:
    return os.path.join(root, "networks")


def _definitions(root: str) -> Iterator[Network]:
    try:
        names = sorted(os.listdir(_dir(root)))
    except FileNotFoundError:
        return
    for fname in names:
        if not fname.endswith(".json"):
            continue
        try:
            with open(os.path.join(_dir(root), fname), "rb") as f:
                yield Network.from_doc(compact_json.loads(f.read().decode()))
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue  # a torn or foreign file is not a network


def list_networks(root: str) -> list[Network]:
    """The user-defined networks of data root ``root``, by name."""
    return sorted(_definitions(root), key=lambda n: n.name)


def find(root: str, ref: str) -> Network | None:
    """The user-defined network named ``ref``, or whose id starts with it."""
    nets = list_networks(root)
    for net in nets:
        if net.name == ref or net.id == ref:
            return net
    if ref and all(c in _HEX for c in ref):
        matches = [n for n in nets if n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
    return None


def lookup(root: str, ref: str) -> Network:
    net = find(root, ref)
    if net is None:
        raise NetworkNotFound(ref)
    return net


def _overlaps(a: str, b: str) -> bool:
    from .ipam import parse_cidr

    (abase, aprefix), (bbase, bprefix) = parse_cidr(a), parse_cidr(b)
    prefix = min(aprefix, bprefix)
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return abase & mask == bbase & mask


def _route_subnets() -> list[str]:
    """Every IPv4 route of the host as a prefix (the default route aside)."""
    from .ipam import format_ipv4
    from .network import host_routes

    return [f"{format_ipv4(dest)}/{bin(mask).count('1')}" for dest, mask in host_routes()]


def _check_subnet(text: str) -> str:
    from .ipam import IpamError, format_ipv4, parse_cidr

    try:
        base, prefix = parse_cidr(text)
    except IpamError as err:
        raise UserError(err.message) from None
    if prefix > 30:
        raise UserError(f"invalid subnet {text}: a bridge network needs at least /30")
    return f"{format_ipv4(base)}/{prefix}"


def create(
    root: str,
    name: str,
    *,
    subnet: str | None = None,
    gateway: str | None = None,
    labels: Mapping[str, str] | None = None,
    internal: bool = False,
    in_use: list[str] | None = None,
) -> Network:
    """Define network ``name`` (the caller makes its bridge).  ``in_use`` are
    subnets to avoid besides the host's routes and our other networks."""
    from . import timefmt
    from .filelock import FileLock
    from .ipam import Ipam, IpamError

    if name in BUILTIN:
        raise UserError(f"network with name {name} already exists")
    if not valid_name(name):
        raise UserError(f'invalid network name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] allowed')
    os.makedirs(_dir(root), mode=0o700, exist_ok=True)
    with FileLock(os.path.join(_dir(root), ".lock")):
        if find(root, name) is not None:
            raise UserError(f"network with name {name} already exists")
        taken = [n.subnet for n in list_networks(root)] + list(in_use or ())
        if subnet is not None:
            subnet = _check_subnet(subnet)
            clash = next((t for t in taken if _overlaps(subnet, t)), None)
            if clash is not None:
                raise UserError(f"invalid pool request: Pool overlaps with other one ({clash})")
        else:
            busy = taken + _route_subnets()
            subnet = next((c for c in _pool() if not any(_overlaps(c, t) for t in busy)), None)
            if subnet is None:
                raise UserError("could not find an available, non-overlapping IPv4 address pool")
        import secrets

        ident = secrets.token_hex(32)
        try:  # the gateway's checks are the lease table's
            gw = Ipam("/nonexistent", "check", subnet, gateway).gateway
        except IpamError as err:
            raise UserError(f"invalid gateway: {err}") from None
        net = Network(
            name=name,
            id=ident,
            bridge=f"pcbr-{ident[:10]}",
            subnet=subnet,
            gateway=gw,
            created=timefmt.format_rfc3339_nano(time.time_ns()),
            labels=dict(labels or {}),
            internal=internal,
        )
        from .statefiles import write_json

        write_json(os.path.join(_dir(root), f"{ident}.json"), net.to_doc())
    return net


def remove_definition(root: str, net: Network) -> None:
    try:
        os.unlink(os.path.join(_dir(root), f"{net.id}.json"))
    except FileNotFoundError:
        pass
