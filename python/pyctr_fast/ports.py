"""Port publishing (``-p``) for bridge containers: parsing, a host-wide
registry of published ports, and the nftables DNAT entries.

Kernel path, no proxy process: our table (``table ip pyctr``, see
:mod:`pyctr_fast.nat`) gets a ``prerouting`` and an ``output`` nat chain
that DNAT connections to a *local* address (``fib daddr type local``)
through four maps, one per protocol and with or without a host address::

    map pub-tcp    { type inet_service : ipv4_addr . inet_service }   # -p 8080:80
    map pub-tcp-ip { type ipv4_addr . inet_service : ipv4_addr . inet_service }
                                                        # -p 127.0.0.1:8080:80

A container adds and deletes only its own map elements (keyed by host
port), so nothing is flushed while other containers' ports are live, and
teardown is a fixed ``delete element`` script recorded in network.json.
``output`` covers connections made on the host itself, to 127.0.0.1
included: the bridge gets ``route_localnet=1`` (a loopback source may leave
through it) and such connections are masqueraded to the gateway address,
as Docker does without its userland proxy.  A filter chain drops what
route_localnet would otherwise let in: packets from the bridge to
127.0.0.0/8 that are not replies of a DNAT'd connection (CVE-2020-8558).

A host port is checked free by binding it (TCP or UDP, on the given
address) and against the registry (``<run>/networks/ports.json``, a lease
table like :mod:`pyctr_fast.ipam`'s: ``{"leases": {"tcp:0.0.0.0:8080":
owner}}``), both before anything is changed.
"""

from __future__ import annotations

import os

from . import compact_json
from .errors import UserError
from .filelock import FileLock
from .nat import TABLE

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

__all__ = [
    "Binding",
    "PortTable",
    "bindings_from_host_config",
    "describe",
    "nft_add_script",
    "nft_delete_script",
    "parse_publish",
    "port_bindings",
    "setup_script",
]

ANY = "0.0.0.0"


class Binding:
    """One published port: ``host_ip`` ("" for every address) and
    ``host_port`` (0: pick one) to ``container_port``/``proto``."""

    __slots__ = ("container_port", "host_ip", "host_port", "proto")

    def __init__(self, host_ip: str, host_port: int, container_port: int, proto: str) -> None:
        self.host_ip = host_ip
        self.host_port = host_port
        self.container_port = container_port
        self.proto = proto

    def key(self) -> str:
        return f"{self.proto}:{self.host_ip or ANY}:{self.host_port}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "proto": self.proto,
            "host_ip": self.host_ip,
            "host_port": self.host_port,
            "container_port": self.container_port,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Binding:
        return Binding(
            str(d["host_ip"]), int(d["host_port"]), int(d["container_port"]), str(d["proto"])
        )


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UserError(f"invalid port {text!r} in publish spec {spec!r}")
    return int(text)


def parse_publish(spec: str) -> Binding:
    """Docker's ``-p [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]`` (no ranges)."""
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise UserError(f"invalid proto {proto!r} in publish spec {spec!r}: use tcp or udp")
    if "-" in body:
        raise UserError(f"port ranges are not supported yet: {spec!r}")
    parts = body.split(":")
    if len(parts) > 3 or not parts[-1]:
        raise UserError(f"invalid publish spec {spec!r}: expected [IP:][HOSTPORT:]CONTAINERPORT")
    host_ip, host_port = "", 0
    if len(parts) == 3:
        host_ip = parts[0]
        if host_ip:
            from .ipam import format_ipv4, parse_ipv4

            try:
                host_ip = format_ipv4(parse_ipv4(host_ip))
            except UserError:
                raise UserError(f"invalid IPv4 address {host_ip!r} in {spec!r}") from None
    if len(parts) >= 2 and parts[-2]:
        host_port = _port(parts[-2], spec)
    return Binding(host_ip, host_port, _port(parts[-1], spec), proto)


def port_bindings(specs: Iterable[str]) -> dict[str, list[dict[str, str]]] | None:
    """``HostConfig.PortBindings`` in Docker's shape; None without ``-p``."""
    out: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        b = parse_publish(spec)
        out.setdefault(f"{b.container_port}/{b.proto}", []).append(
            {"HostIp": b.host_ip, "HostPort": str(b.host_port) if b.host_port else ""}
        )
    return out or None


def bindings_from_host_config(pb: Mapping[str, Any] | None) -> list[Binding]:
    out = []
    for key, entries in (pb or {}).items():
        port, _, proto = str(key).partition("/")
        for e in entries or [{}]:
            host_port = str(e.get("HostPort") or "")
            out.append(
                Binding(
                    str(e.get("HostIp") or ""),
                    int(host_port) if host_port else 0,
                    int(port),
                    proto or "tcp",
                )
            )
    return out


def describe(bindings: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """``NetworkSettings.Ports`` from network.json's ``ports``."""
    out: dict[str, list[dict[str, str]]] = {}
    for d in bindings:
        out.setdefault(f"{d['container_port']}/{d['proto']}", []).append(
            {"HostIp": str(d["host_ip"] or ANY), "HostPort": str(d["host_port"])}
        )
    return out


# --------------------------------------------------------------------------- registry


class PortTable:
    """The host's published ports (``<run>/networks/ports.json``)."""

    def __init__(self, rundir: str) -> None:
        self.dir = os.path.join(rundir, "networks")
        self.path = os.path.join(self.dir, "ports.json")
        self.lock_path = os.path.join(self.dir, "ports.lock")

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as f:
                doc = compact_json.loads(f.read().decode())
        except FileNotFoundError:
            return {"leases": {}}
        except (OSError, ValueError) as err:
            raise UserError(f"{self.path}: unreadable port table: {err}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("leases"), dict):
            raise UserError(f"{self.path}: corrupt port table")
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        from .statefiles import write_json

        write_json(self.path, doc)

    def claim(self, owner: str, wanted: list[Binding]) -> list[Binding]:
        """Reserve every binding for ``owner`` (a 0 host port gets a free
        one); all or nothing.  UserError when a port is taken, by another
        container or by a socket on the host."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        with FileLock(self.lock_path):
            doc = self._read()
            leases: dict[str, str] = doc["leases"]
            chosen: list[Binding] = []
            for b in wanted:
                port = b.host_port or _free_port(b.proto, b.host_ip, leases, chosen)
                got = Binding(b.host_ip, port, b.container_port, b.proto)
                if _clashes(got, leases, chosen) or not _bindable(got):
                    raise UserError(
                        f"Bind for {got.host_ip or ANY}:{port} failed: port is already allocated"
                    )
                chosen.append(got)
            for b in chosen:
                leases[b.key()] = owner
            if chosen:
                self._write(doc)
            return chosen

    def release(self, owner: str) -> None:
        """Drop every port of ``owner`` (network.json's teardown does the same)."""
        if not os.path.isdir(self.dir):
            return
        with FileLock(self.lock_path):
            doc = self._read()
            leases: dict[str, str] = doc["leases"]
            mine = [k for k, o in leases.items() if o == owner]
            for k in mine:
                del leases[k]
            if mine:
                self._write(doc)

    def leases(self) -> dict[str, str]:
        if not os.path.isdir(self.dir):
            return {}
        with FileLock(self.lock_path):
            return dict(self._read()["leases"])


def _overlaps(a_ip: str, b_ip: str) -> bool:
    return not a_ip or not b_ip or a_ip == ANY or b_ip == ANY or a_ip == b_ip


def _clashes(b: Binding, leases: Mapping[str, str], chosen: list[Binding]) -> bool:
    for key in leases:
        proto, ip, port = key.split(":")
        if proto == b.proto and int(port) == b.host_port and _overlaps(ip, b.host_ip):
            return True
    return any(
        c.proto == b.proto and c.host_port == b.host_port and _overlaps(c.host_ip, b.host_ip)
        for c in chosen
    )


def _socket(proto: str) -> socket.socket:
    import socket  # (lazily: only a start that publishes ports needs it)

    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    return socket.socket(socket.AF_INET, kind)


def _bindable(b: Binding) -> bool:
    with _socket(b.proto) as s:
        try:
            s.bind((b.host_ip or ANY, b.host_port))
        except OSError:
            return False
    return True


def _free_port(proto: str, host_ip: str, leases: Mapping[str, str], chosen: list[Binding]) -> int:
    for _ in range(64):
        with _socket(proto) as s:
            s.bind((host_ip or ANY, 0))
            port = int(s.getsockname()[1])
        if not _clashes(Binding(host_ip, port, 0, proto), leases, chosen):
            return port
    raise UserError("no free host port to publish on")


# --------------------------------------------------------------------------- nftables


def setup_script(bridges: Sequence[str]) -> str:
    """The publishing chains and maps for every bridge in ``bridges``
    (idempotent: our own chains are flushed and refilled; the maps keep
    their elements)."""
    t = f"ip {TABLE}"
    lines = [
        f"add table {t}",
        f"add chain {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}",
        f"add chain {t} output {{ type nat hook output priority -100; policy accept; }}",
        f"add chain {t} localnet-guard "
        "{ type filter hook input priority filter; policy accept; }",
        f"add chain {t} publish",
    ]
    lines += [f"add chain {t} masq-local-{bridge}" for bridge in bridges]
    for proto in ("tcp", "udp"):
        lines.append(f"add map {t} pub-{proto} {{ type inet_service : ipv4_addr . inet_service; }}")
        lines.append(
            f"add map {t} pub-{proto}-ip "
            "{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }"
        )
    chains = ["prerouting", "output", "localnet-guard", "publish"]
    chains += [f"masq-local-{bridge}" for bridge in bridges]
    lines += [f"flush chain {t} {chain}" for chain in chains]
    lines += [
        f"add rule {t} prerouting fib daddr type local jump publish",
        f"add rule {t} output fib daddr type local jump publish",
    ]
    for bridge in bridges:
        lines += [
            f'add rule {t} localnet-guard iifname "{bridge}" ip daddr 127.0.0.0/8 '
            "ct status and dnat == 0 drop",
            f'add rule {t} masq-local-{bridge} ip saddr 127.0.0.0/8 oifname "{bridge}" masquerade',
            f"add rule {t} postrouting jump masq-local-{bridge}",
        ]
    for proto in ("tcp", "udp"):
        lines.append(
            f"add rule {t} publish dnat ip to ip daddr . {proto} dport map @pub-{proto}-ip"
        )
        lines.append(f"add rule {t} publish dnat ip to {proto} dport map @pub-{proto}")
    return "\n".join(lines) + "\n"


def _element(b: Binding, ip: str | None) -> str:
    t = f"ip {TABLE}"
    key = f"{b.host_ip} . {b.host_port}" if b.host_ip and b.host_ip != ANY else str(b.host_port)
    m = f"pub-{b.proto}-ip" if b.host_ip and b.host_ip != ANY else f"pub-{b.proto}"
    if ip is None:
        return f"delete element {t} {m} {{ {key} }}"
    return f"add element {t} {m} {{ {key} : {ip} . {b.container_port} }}"


def nft_add_script(bindings: Iterable[Binding], ip: str) -> str:
    return "".join(_element(b, ip) + "\n" for b in bindings)


def nft_delete_script(bindings: Iterable[Binding]) -> str:
    return "".join(_element(b, None) + "\n" for b in bindings)
