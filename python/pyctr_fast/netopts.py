"""The per-container network options besides ``--network`` and ``-p``:
``--dns``, ``--dns-search``, ``--dns-option``, ``--add-host``, ``--expose``
and ``-P``/``--publish-all`` (docs/networking.md).

Validation follows Docker's CLI (its messages too); what it accepts is
recorded as Docker's inspect shows it (``HostConfig.Dns``, ``DnsSearch``,
``DnsOptions``, ``ExtraHosts``, ``PublishAllPorts``; ``Config.ExposedPorts``)
and written into the container's /etc files by :mod:`pyctr_fast.etcfiles`.

``--add-host NAME:host-gateway`` stands for the bridge's gateway address: the
hosts file holds the literal ``host-gateway`` until the endpoint exists, and
:func:`resolve_host_gateway` puts the address in at start.
"""

from __future__ import annotations

import os

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from .ports import Binding
    from .records import Record
    from .spec import RunOptions

__all__ = [
    "HOST_GATEWAY",
    "attach_record",
    "check_endpoint_options",
    "check_network_options",
    "effective_bindings",
    "exposed_ports",
    "parse_dns",
    "parse_expose",
    "parse_extra_host",
    "publish_all_bindings",
    "resolve_host_gateway",
    "with_published_exposed",
]

#: Docker's special ``--add-host`` address: the host as the container sees it.
HOST_GATEWAY = "host-gateway"


def _valid_ip(text: str) -> bool:
    import ipaddress  # (lazily: only a run with --dns or --add-host needs it)

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_dns(values: Iterable[str]) -> list[str]:
    """``--dns`` values: IPv4 or IPv6 addresses (pflag's error otherwise)."""
    out = []
    for value in values:
        text = value.strip()
        if not _valid_ip(text):
            raise UserError(
                f'invalid argument "{value}" for "--dns" flag: {value} is not an ip address'
            )
        out.append(text)
    return out


def parse_extra_host(value: str) -> str:
    """One ``--add-host`` value, ``NAME:IP`` or ``NAME=IP`` (IPv6 may be in
    brackets; ``host-gateway`` allowed), as Docker records it: ``NAME:IP``."""
    name, sep, ip = value.partition("=")
    if not sep:
        name, sep, ip = value.partition(":")
    if not sep or not name or ":" in name or any(c.isspace() for c in name):
        raise UserError(
            f'invalid argument "{value}" for "--add-host" flag: bad format for add-host: "{value}"'
        )
    if ip != HOST_GATEWAY:
        if len(ip) > 2 and ip[0] == "[" and ip[-1] == "]":
            ip = ip[1:-1]
        if not _valid_ip(ip):
            raise UserError(
                f'invalid argument "{value}" for "--add-host" flag: '
                f'invalid IP address in add-host: "{ip}"'
            )
    return f"{name}:{ip}"


def parse_expose(values: Iterable[str]) -> list[str]:
    """``--expose PORT[-END][/tcp|udp]`` values as ``ExposedPorts`` keys."""
    out: list[str] = []
    for value in values:
        body, _, proto = value.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp"):
            raise UserError(f"invalid proto {proto!r} in --expose {value!r}: use tcp or udp")
        first, _, last = body.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise UserError(f"invalid range format for --expose: {value}")
        low, high = int(first), int(last or first)
        if not 0 < low <= high < 65536:
            raise UserError(f"invalid range format for --expose: {value}")
        out += [f"{p}/{proto}" for p in range(low, high + 1) if f"{p}/{proto}" not in out]
    return out


def check_network_options(opts: RunOptions, network: str) -> None:
    """Validate the options against each other and the network mode
    (Docker's conflicts for ``container:NAME``)."""
    parse_dns(opts.dns)
    hosts = [parse_extra_host(h) for h in opts.extra_hosts]
    parse_expose(opts.expose)
    if network.startswith("container:"):
        if opts.dns or opts.dns_search or opts.dns_options:
            raise UserError("conflicting options: dns and the network mode")
        if hosts:
            raise UserError("conflicting options: custom host-to-IP mapping and the network mode")
        if opts.publish or opts.publish_all:
            raise UserError(
                "conflicting options: port publishing and the container type network mode"
            )
        if opts.expose:
            raise UserError(
                "conflicting options: port exposing and the container type network mode"
            )
    from .network import is_bridged

    bridged = is_bridged(network)
    if opts.publish_all and not bridged:
        raise UserError(
            f"port publishing (-P) needs --network bridge or a user-defined network, not {network}"
        )
    if not bridged and any(h.endswith(":" + HOST_GATEWAY) for h in hosts):
        raise UserError(
            f"--add-host NAME:{HOST_GATEWAY} needs --network bridge or a user-defined network, "
            f"not {network}"
        )


def exposed_ports(opts: RunOptions, image_cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``Config.ExposedPorts``: the image's, ``--expose``'s and ``-p``'s
    container ports (Docker merges all three), in that order."""
    out: dict[str, dict[str, Any]] = {}
    for key in image_cfg.get("ExposedPorts") or {}:
        port, _, proto = str(key).partition("/")
        out[f"{port}/{proto or 'tcp'}"] = {}
    for key in parse_expose(opts.expose):
        out.setdefault(key, {})
    if opts.publish:
        from .ports import parse_publish

        for spec in opts.publish:
            b = parse_publish(spec)
            out.setdefault(f"{b.container_port}/{b.proto}", {})
    return out


def publish_all_bindings(
    exposed: Iterable[str], port_bindings: Mapping[str, Any] | None
) -> dict[str, list[dict[str, str]]]:
    """What ``-P`` adds to ``PortBindings``: a random host port for every
    exposed port that ``-p`` does not publish already."""
    bound = set(port_bindings or {})
    return {key: [{"HostIp": "", "HostPort": ""}] for key in exposed if key not in bound}


def effective_bindings(opts: RunOptions, exposed: Iterable[str]) -> list[Binding]:
    """The bindings a foreground run publishes: ``-p``'s, then ``-P``'s."""
    from .ports import bindings_from_host_config, parse_publish

    out = [parse_publish(p) for p in opts.publish]
    if opts.publish_all:
        keys = {f"{b.container_port}/{b.proto}" for b in out}
        out += bindings_from_host_config(publish_all_bindings(exposed, dict.fromkeys(keys)))
    return out


def attach_record(rec: Record) -> None:
    """:func:`pyctr_fast.network.attach_record` (a start's endpoint), with
    ``-P``'s ports published too and ``host-gateway`` resolved."""
    from . import network

    host_config = rec.container.get("HostConfig") or {}
    if host_config.get("PublishAllPorts"):
        import copy

        view = copy.copy(rec)  # in memory only: container.json keeps Docker's PortBindings
        view.container = with_published_exposed(rec.container)
        network.attach_record(view)
    else:
        network.attach_record(rec)
    if host_config.get("ExtraHosts"):
        ep = network.endpoint(rec.dir)
        if ep is not None and ep.get("gateway"):
            resolve_host_gateway(rec.dir, str(ep["gateway"]))


def with_published_exposed(container: Mapping[str, Any]) -> dict[str, Any]:
    """container.json as the endpoint set-up should see it with ``-P``:
    ``HostConfig.PortBindings`` plus a random port for each exposed port.
    In memory only: the record keeps Docker's ``PortBindings`` (what ``-p``
    asked for) and ``PublishAllPorts``."""
    host_config = dict(container.get("HostConfig") or {})
    bindings = dict(host_config.get("PortBindings") or {})
    exposed = (container.get("Config") or {}).get("ExposedPorts") or {}
    bindings.update(publish_all_bindings(exposed, bindings))
    host_config["PortBindings"] = bindings
    return {**container, "HostConfig": host_config}


def resolve_host_gateway(cdir: str, gateway: str) -> None:
    """Put the gateway address in for ``host-gateway`` in the container's
    /etc/hosts (rewritten in place: it is bind-mounted by path)."""
    path = os.path.join(cdir, "hosts")
    prefix = HOST_GATEWAY + "\t"
    try:
        with open(path, "r+", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
            if not any(ln.startswith(prefix) for ln in lines):
                return
            lines = [
                gateway + ln[len(HOST_GATEWAY) :] if ln.startswith(prefix) else ln for ln in lines
            ]
            f.seek(0)
            f.write("\n".join(lines) + "\n")
            f.truncate()
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None


def check_endpoint_options(opts: RunOptions, mode: str) -> None:
    """Docker's rules for ``-p``, ``--ip``, ``--mac-address`` and
    ``--network-alias`` against the network mode."""
    from .network import NETWORK, is_bridged

    if opts.publish and not is_bridged(mode):
        raise UserError(
            f"port publishing (-p) needs --network bridge or a user-defined network, not {mode}"
        )
    if opts.mac_address is not None:
        if not is_bridged(mode):
            raise UserError(f"conflicting options: mac-address and the network mode {mode}")
        parts = opts.mac_address.split(":")
        if len(parts) != 6 or not all(len(p) == 2 and _is_hex(p) for p in parts):
            raise UserError(f"invalid MAC address: {opts.mac_address}")
        if int(parts[0], 16) & 1:
            raise UserError(f"invalid MAC address: {opts.mac_address} is a multicast address")
    if (opts.ip or opts.network_aliases) and (not is_bridged(mode) or mode == NETWORK):
        what = "user specified IP address" if opts.ip else "network-scoped alias"
        raise UserError(f"{what} is supported on user defined networks only")
    if opts.ip:
        from .ipam import IpamError, parse_ipv4

        try:
            parse_ipv4(opts.ip)
        except IpamError:
            raise UserError(f"invalid IPv4 address: {opts.ip}") from None


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)
