"""``pyctr-fast network COMMAND``, like ``docker network``: create, ls,
inspect, rm, connect, disconnect and prune user-defined bridge networks
(:mod:`pyctr_fast.networks`; endpoints in :mod:`pyctr_fast.network`).

A network is in use while any container holds an address on it (its lease
table under the run directory, which every data root shares): ``rm``
refuses it then, as Docker refuses a network with active endpoints.
"""

from __future__ import annotations

import hashlib
import sys

from .errors import UserError
from .flags import BOOL, LIST, VALUE, Flag, write_out

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from .networks import Network
    from .records import Record

__all__ = ["COMMANDS", "network_cli"]

PROG = "pyctr-fast"
HELP = Flag("help", BOOL, "Print usage")

USAGE = f"""\
Usage:  {PROG} network COMMAND

Manage networks

Commands:
  connect     Connect a container to a network
  create      Create a network
  disconnect  Disconnect a container from a network
  inspect     Display detailed information on one or more networks
  ls          List networks
  prune       Remove all unused networks
  rm          Remove one or more networks

Run '{PROG} network COMMAND --help' for more information on a command.
"""


def _parse(
    sub: str, args: Sequence[str], table: Sequence[Flag], usage: str, about: str
) -> tuple[Any, list[str]] | None:
    from .lifecycle_cli import _parse as parse

    return parse(f"network {sub}", args, (*table, HELP), usage, about)


def _need(sub: str, words: Sequence[str], least: int, most: int | None = None) -> None:
    from .lifecycle_cli import _need as need

    need(f"network {sub}", words, least, most)


def _root(root: str | None) -> str:
    from .records import resolve_root

    return resolve_root(root)


def _rundir() -> str:
    from .network import run_dir

    return run_dir()


def _builtin_id(name: str) -> str:
    if name == "bridge":
        from .networks import default_bridge

        return default_bridge("", "").id
    return hashlib.sha256(f"pyctr-fast {name} network".encode()).hexdigest()


# --------------------------------------------------------------------------- create


def _create(args: Sequence[str], root: str | None) -> int:
    table = (
        Flag("driver", VALUE, 'Driver to manage the Network (only "bridge")', short="d"),
        Flag("gateway", LIST, "IPv4 Gateway for the master subnet"),
        Flag("label", LIST, "Set metadata on a network"),
        Flag("subnet", LIST, "Subnet in CIDR format that represents a network segment"),
    )
    got = _parse("create", args, table, "[OPTIONS] NETWORK", "Create a network")
    if got is None:
        return 0
    parsed, words = got
    _need("create", words, 1, 1)
    driver = parsed.value("driver") or "bridge"
    if driver != "bridge":
        raise UserError(f'plugin "{driver}" not found: only the "bridge" driver is supported')
    subnets, gateways = parsed.values("subnet"), parsed.values("gateway")
    if len(subnets) > 1 or len(gateways) > 1:
        raise UserError("only one IPv4 --subnet (and --gateway) per network is supported")
    if gateways and not subnets:
        raise UserError("every ip-range or gateway must have a corresponding subnet")
    labels = {}
    for label in parsed.values("label"):
        key, _, value = label.partition("=")
        labels[key] = value
    from . import network, networks

    rundir = _rundir()
    # Keep clear of the default bridge's subnet (or the one it will take).
    default = network.resolve("bridge", _root(root))
    net = networks.create(
        _root(root),
        words[0],
        subnet=subnets[0] if subnets else None,
        gateway=gateways[0] if gateways else None,
        labels=labels,
        in_use=[default.subnet],
    )
    try:
        network.ensure_bridge(rundir, net)
    except BaseException:
        networks.remove_definition(_root(root), net)
        _quiet_remove_bridge(rundir, net)
        raise
    write_out(net.id + "\n")
    return 0


def _quiet_remove_bridge(rundir: str, net: Network) -> None:
    from . import network

    try:
        network.remove_bridge(rundir, net)
    except Exception:
        pass


# --------------------------------------------------------------------------- ls, inspect


def _ls(args: Sequence[str], root: str | None) -> int:
    table = (
        Flag("quiet", BOOL, "Only display network IDs", short="q"),
        Flag("no-trunc", BOOL, "Do not truncate the output"),
    )
    got = _parse("ls", args, table, "[OPTIONS]", "List networks")
    if got is None:
        return 0
    parsed, words = got
    _need("ls", words, 0, 0)
    from .networks import list_networks

    rows = [(_builtin_id(n), n) for n in ("bridge", "host", "none")]
    rows += [(n.id, n.name) for n in list_networks(_root(root))]
    rows.sort(key=lambda r: r[1])
    width = 64 if parsed.flag("no-trunc") else 12
    if parsed.flag("quiet"):
        write_out("".join(ident[:width] + "\n" for ident, _ in rows))
        return 0
    drivers = {"host": "host", "none": "null"}
    lines = [f"{'NETWORK ID':<{width + 3}}{'NAME':<15}{'DRIVER':<10}SCOPE"]
    for ident, name in rows:
        driver = drivers.get(name, "bridge")
        lines.append(f"{ident[:width]:<{width + 3}}{name:<15}{driver:<10}local")
    write_out("\n".join(lines) + "\n")
    return 0


def _members(root: str, name: str) -> dict[str, dict[str, Any]]:
    """Docker's ``Containers`` of network ``name``: the containers of this
    data root with an endpoint on it now."""
    from .network import endpoint
    from .records import all_records

    out = {}
    for rec in all_records(root):
        record = endpoint(rec.dir) or {}
        for ep in (record, *(record.get("endpoints") or ())):
            if ep.get("network") == name and ep.get("ip"):
                out[rec.id] = {
                    "Name": rec.name,
                    "EndpointID": str(ep.get("veth") or ""),
                    "MacAddress": str(ep.get("mac") or ""),
                    "IPv4Address": f"{ep['ip']}/{ep.get('prefix')}",
                    "IPv6Address": "",
                }
    return out


def _doc(root: str, ref: str) -> dict[str, Any]:
    from . import networks

    if ref in networks.BUILTIN:
        doc: dict[str, Any] = {"Name": ref, "Id": _builtin_id(ref), "Scope": "local"}
        if ref == "bridge":
            from .network import resolve

            net = resolve("bridge", root)
            doc = net.to_doc()
        else:
            doc["Driver"] = {"host": "host", "none": "null"}[ref]
            doc["IPAM"] = {"Driver": "default", "Options": None, "Config": []}
    else:
        doc = networks.lookup(root, ref).to_doc()
    doc["Containers"] = _members(root, ref if ref in networks.BUILTIN else doc["Name"])
    return doc


def _inspect(args: Sequence[str], root: str | None) -> int:
    table = (Flag("format", VALUE, "Format the output using the given Go template", short="f"),)
    usage = "[OPTIONS] NETWORK [NETWORK...]"
    got = _parse("inspect", args, table, usage, "Display detailed information on networks")
    if got is None:
        return 0
    parsed, words = got
    _need("inspect", words, 1)
    state_root = _root(root)
    docs, status = [], 0
    for ref in words:
        try:
            docs.append(_doc(state_root, ref))
        except UserError as err:
            sys.stderr.write(f"Error: {err.message}\n")
            status = 1
    fmt = parsed.value("format")
    if fmt is not None:
        from .gotemplate import render

        write_out("".join(render(fmt, doc) + "\n" for doc in docs))
    else:
        import json

        write_out(json.dumps(docs, indent=4) + "\n")
    return status


# --------------------------------------------------------------------------- rm, prune


def _in_use(net: Network) -> list[str]:
    from .ipam import Ipam

    return sorted(Ipam(_rundir(), net.ipam_table, net.subnet, net.gateway).leases().values())


def _remove(root: str, ref: str) -> str:
    from . import network, networks
    from .ipam import Ipam

    if ref in networks.BUILTIN:
        raise UserError(f"{ref} is a pre-defined network and cannot be removed", 1)
    net = networks.lookup(root, ref)
    users = _in_use(net)
    if users:
        raise UserError(
            f"error while removing network: network {net.name} id {net.id} has active "
            f"endpoints ({', '.join(u[:12] for u in users)})",
            1,
        )
    rundir = _rundir()
    network.remove_bridge(rundir, net)
    Ipam(rundir, net.ipam_table, net.subnet, net.gateway).remove()
    networks.remove_definition(root, net)
    return ref


def _rm(args: Sequence[str], root: str | None) -> int:
    table = (Flag("force", BOOL, "Do not error if the network does not exist", short="f"),)
    got = _parse("rm", args, table, "NETWORK [NETWORK...]", "Remove one or more networks")
    if got is None:
        return 0
    parsed, words = got
    _need("rm", words, 1)
    state_root, status = _root(root), 0
    for ref in words:
        try:
            write_out(_remove(state_root, ref) + "\n")
        except UserError as err:
            if parsed.flag("force") and "not found" in err.message:
                continue
            sys.stderr.write(f"{PROG}: {err.message}\n")
            status = 1
    return status


def _prune(args: Sequence[str], root: str | None) -> int:
    table = (Flag("force", BOOL, "Do not prompt for confirmation", short="f"),)
    got = _parse("prune", args, table, "[OPTIONS]", "Remove all unused networks")
    if got is None:
        return 0
    parsed, words = got
    _need("prune", words, 0, 0)
    if not parsed.flag("force"):
        sys.stderr.write("WARNING! This will remove all custom networks not used by at least ")
        sys.stderr.write("one container.\nAre you sure you want to continue? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    from .networks import list_networks

    state_root = _root(root)
    gone = []
    for net in list_networks(state_root):
        if not _in_use(net):
            gone.append(_remove(state_root, net.name))
    if gone:
        write_out("Deleted Networks:\n" + "".join(n + "\n" for n in gone))
    return 0


# --------------------------------------------------------------------------- connect


def _connectable(rec: Record) -> str:
    mode = str((rec.container.get("HostConfig") or {}).get("NetworkMode") or "none")
    from .network import is_bridged

    if not is_bridged(mode):
        raise UserError(
            "container cannot be disconnected from host network or connected to host network"
            if mode == "host"
            else f"container sharing network namespace with another container or host "
            f"cannot be connected to any other network (network mode {mode})",
            1,
        )
    return mode


def _set_endpoint_config(rec: Record, name: str, settings: dict[str, Any] | None) -> None:
    from . import statefiles

    doc = dict(rec.container)
    config = dict(doc.get("NetworkingConfig") or {})
    endpoints = dict(config.get("EndpointsConfig") or {})
    if settings is None:
        endpoints.pop(name, None)
    else:
        endpoints[name] = settings
    config["EndpointsConfig"] = endpoints
    doc["NetworkingConfig"] = config
    statefiles.write_json(rec.path("container.json"), doc)


def _network_and_container(
    sub: str, args: Sequence[str], table: Sequence[Flag], root: str | None
) -> tuple[Any, Network, Record] | None:
    """``connect``/``disconnect``'s ``[OPTIONS] NETWORK CONTAINER`` resolved
    (None after ``--help``)."""
    to = "to" if sub == "connect" else "from"
    about = f"{sub.capitalize()} a container {to} a network"
    got = _parse(sub, args, table, "[OPTIONS] NETWORK CONTAINER", about)
    if got is None:
        return None
    parsed, words = got
    _need(sub, words, 2, 2)
    from . import network, networks, records

    state_root = _root(root)
    if words[0] in networks.BUILTIN and words[0] != "bridge":
        raise UserError(f"container cannot be {sub}ed {to} network {words[0]}", 1)
    return parsed, network.resolve(words[0], state_root), records.resolve(state_root, words[1])


def _connect(args: Sequence[str], root: str | None) -> int:
    table = (
        Flag("alias", LIST, "Add network-scoped alias for the container"),
        Flag("ip", VALUE, "IPv4 address (e.g., 172.30.100.104)"),
    )
    got = _network_and_container("connect", args, table, root)
    if got is None:
        return 0
    parsed, net, rec = got
    from . import network
    from . import supervision as sv

    if net.name == "bridge" and (parsed.values("alias") or parsed.value("ip")):
        raise UserError(
            "network-scoped aliases and --ip are supported on user defined networks only", 1
        )
    with sv.locked(rec) as fresh:
        _connectable(fresh)
        current = network.endpoint_settings(fresh)
        if net.name in current:
            raise UserError(
                f"endpoint with name {fresh.name} already exists in network {net.name}", 1
            )
        settings: dict[str, Any] = {}
        if parsed.values("alias"):
            settings["Aliases"] = parsed.values("alias")
        if parsed.value("ip"):
            settings["IPAddress"] = parsed.value("ip")
        if fresh.state().get("Running"):
            from .network_connect import connect_running

            connect_running(fresh, net, parsed.values("alias"), parsed.value("ip"))
        _set_endpoint_config(fresh, net.name, settings)
    return 0


def _disconnect(args: Sequence[str], root: str | None) -> int:
    table = (Flag("force", BOOL, "Force the container to disconnect from a network", short="f"),)
    got = _network_and_container("disconnect", args, table, root)
    if got is None:
        return 0
    _, net, rec = got
    from . import network
    from . import supervision as sv

    with sv.locked(rec) as fresh:
        mode = _connectable(fresh)
        if net.name == mode:
            raise UserError(
                f"container {fresh.id[:12]} cannot be disconnected from {net.name}, the network "
                "it was created on (not supported yet): stop and re-create it instead",
                1,
            )
        if net.name not in network.endpoint_settings(fresh):
            raise UserError(f"container {fresh.id[:12]} is not connected to network {net.name}", 1)
        if fresh.state().get("Running"):
            from .network_connect import disconnect_running

            disconnect_running(fresh, net.name)
        _set_endpoint_config(fresh, net.name, None)
    return 0


SUBCOMMANDS: dict[str, Callable[[Sequence[str], str | None], int]] = {
    "connect": _connect,
    "create": _create,
    "disconnect": _disconnect,
    "inspect": _inspect,
    "ls": _ls,
    "list": _ls,
    "prune": _prune,
    "rm": _rm,
    "remove": _rm,
}


def network_cli(args: Sequence[str], root: str | None) -> int:
    """``network COMMAND ...``."""
    if not args or args[0] in ("--help", "-h", "help"):
        write_out(USAGE)
        return 0
    handler = SUBCOMMANDS.get(args[0])
    if handler is None:
        raise UserError(f'unknown command "{args[0]}" for "{PROG} network"', 1)
    from .container import require_root

    require_root()
    return handler(args[1:], root)


COMMANDS = {"network": network_cli}
