"""Container networking modes and the default bridge network's endpoints.

Modes (``--network``): ``none`` (a namespace with only ``lo``, the
default), ``host``, ``bridge``, ``container:NAME`` and the name of a
user-defined network (:mod:`pyctr_fast.networks`), which is a bridge of its
own and works as ``bridge`` does, plus name resolution (:mod:`pyctr_fast.peers`).

``bridge``: one Linux bridge, ``pyctr0``, with the gateway address of its
subnet, IP forwarding and outbound masquerade (:mod:`pyctr_fast.nat`).
Per container (docs/networking.md):

1. an address leased from a file-locked :class:`~pyctr_fast.ipam.Ipam`
   table (owner: the container id);
2. ``<cdir>/network.json`` written *before* anything is made, so that
   every teardown path knows what to undo;
3. a persistent network namespace bind-mounted on ``<run>/netns/<id>``
   (``_native.net_netns_create``), which the spec's ``network`` namespace
   names by path: the init joins it, and it survives restarts;
4. a veth pair: ``veth<id[:11]>`` on the bridge, ``eth0`` born inside the
   namespace with the address, ``lo`` up and the default route.

Teardown (``_native.net_teardown``, the same code the supervisor runs when
the container is done for good): delete the veth, unmount and unlink the
namespace file, release the lease, remove ``network.json``.  Idempotent.

The bridge, its address table and the namespace files are host-wide, so
they live under a run directory (``$PYCTR_RUN_DIR``, default
``/run/pyctr-fast``: gone at reboot, like the namespaces and the rules),
not under one data root: every data root on the host shares ``pyctr0``
and must share its leases too.
"""

from __future__ import annotations

import os

from . import compact_json, trace
from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from .ipam import Ipam
    from .networks import Network
    from .ports import Binding
    from .records import Record

__all__ = [
    "BRIDGE",
    "MODES",
    "RECORD",
    "attach",
    "check_mode",
    "detach",
    "endpoint",
    "is_bridged",
    "namespace_path",
    "resolve",
    "run_dir",
]

MODES = ("none", "host", "bridge")
BRIDGE = "pyctr0"
NETWORK = "bridge"  # the IPAM table's name, and Docker's name of the default network
RUN_DIR_ENV = "PYCTR_RUN_DIR"
DEFAULT_RUN_DIR = "/run/pyctr-fast"
SUBNET_ENV = "PYCTR_BRIDGE_SUBNET"
RECORD = "network.json"
#: Subnets tried in order for a new bridge: the first that overlaps no
#: route on the host (so never Docker's 172.17.0.0/16 nor podman's
#: 10.88.0.0/16 when they are in use; these lie outside both anyway).
CANDIDATES = tuple(f"10.{second}.0.0/24" for second in range(77, 88))


def run_dir(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return os.path.abspath(env.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)


def check_mode(mode: str) -> str:
    """A well-formed ``--network`` value, or Docker-like UserError (whether a
    user-defined network of that name exists is :func:`resolve`'s to say)."""
    if mode in MODES:
        return mode
    if mode.startswith("container:"):
        if not mode[len("container:") :]:
            raise UserError(f'invalid network mode "{mode}": container name is empty')
        return mode
    from .networks import valid_name

    if valid_name(mode):
        return mode
    raise UserError(
        f'network "{mode}" not found: use --network none, host, bridge, container:NAME '
        "or the name of a network made with `network create`"
    )


def is_bridged(mode: str) -> bool:
    """Does ``mode`` give the container an endpoint on a bridge of ours
    (``bridge`` or a user-defined network)?"""
    return mode not in ("none", "host") and not mode.startswith("container:")


def resolve(mode: str, state_root: str, environ: Mapping[str, str] | None = None) -> Network:
    """The bridge network ``mode`` names (:func:`is_bridged` modes only)."""
    from . import networks

    if mode == NETWORK:
        rundir = run_dir(environ)
        subnet, gateway = _choose_subnet(rundir, environ)
        from .ipam import Ipam

        ipam = Ipam(rundir, NETWORK, subnet, gateway)
        return networks.default_bridge(ipam.subnet, ipam.gateway)
    net = networks.find(state_root, mode)
    if net is None:
        raise UserError(f"network {mode} not found")
    return net


def _netns_file(rundir: str, cid: str) -> str:
    return os.path.join(rundir, "netns", cid)


def namespace_path(
    mode: str, state_root: str, cid: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """The network namespace the spec names by path for ``mode``: the
    container's own persistent file (``bridge``), another container's
    (``container:NAME``: its file, else its init's), or None (a new
    namespace, or the host's)."""
    if mode == "host" or mode == "none":
        return None
    if is_bridged(mode):
        if mode != NETWORK:
            resolve(mode, state_root, environ)  # it must exist
        return _netns_file(run_dir(environ), cid)
    from . import records

    ref = mode[len("container:") :]
    try:
        rec = records.resolve(state_root, ref)
    except UserError as err:  # run fails with Docker's 125 here, not rm's 1
        raise UserError(str(err)) from None
    if rec.id == cid:
        raise UserError("cannot join own network")
    ep = endpoint(rec.dir)
    if ep is not None and ep.get("netns"):
        return str(ep["netns"])
    st = rec.state()
    if not st["Running"] or not st.get("Pid"):
        raise UserError(f"cannot join network of a non running container: {ref}")
    spec_ns = _spec_netns(rec.path("config.json"))
    if spec_ns:  # it joined somebody else's: join the same
        return spec_ns
    return f"/proc/{int(st['Pid'])}/ns/net"


def _spec_netns(config_path: str) -> str | None:
    try:
        with open(config_path, "rb") as f:
            spec = compact_json.loads(f.read().decode())
    except (OSError, ValueError):
        return None
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") == "network" and ns.get("path"):
            return str(ns["path"])
    return None


def endpoint(cdir: str) -> dict[str, Any] | None:
    """The container's ``network.json`` (its bridge endpoint while it runs)."""
    try:
        with open(os.path.join(cdir, RECORD), "rb") as f:
            doc = compact_json.loads(f.read().decode())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# --------------------------------------------------------------------------- the bridge


def host_routes() -> list[tuple[int, int]]:
    """``(network, mask)`` of every IPv4 route of the host (/proc/net/route)."""
    out = []
    try:
        with open("/proc/net/route", encoding="ascii") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) >= 8:
                    dest = int.from_bytes(bytes.fromhex(fields[1]), "little")
                    mask = int.from_bytes(bytes.fromhex(fields[7]), "little")
                    if mask:  # the default route overlaps everything
                        out.append((dest, mask))
    except (OSError, ValueError):
        pass
    return out


def _choose_subnet(rundir: str, environ: Mapping[str, str] | None) -> tuple[str, str | None]:
    """The bridge's ``(subnet, gateway)``: $PYCTR_BRIDGE_SUBNET, else what the
    lease table says, else the bridge's address, else a free candidate."""
    from .ipam import format_ipv4, parse_cidr, parse_ipv4

    env = os.environ if environ is None else environ
    if env.get(SUBNET_ENV):
        return env[SUBNET_ENV], None
    try:
        with open(os.path.join(rundir, "networks", "ipam", f"{NETWORK}.json"), "rb") as f:
            table = compact_json.loads(f.read().decode())
    except (OSError, ValueError):
        table = None
    if isinstance(table, dict) and table.get("subnet") and table.get("gateway"):
        return str(table["subnet"]), str(table["gateway"])
    from . import _native

    index = _ifindex(BRIDGE)
    if index is not None:
        for ifindex, cidr in _native.net_addrs():
            if ifindex == index:
                addr, _, plen = cidr.partition("/")
                prefix = int(plen)
                mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
                return f"{format_ipv4(parse_ipv4(addr) & mask)}/{prefix}", addr
    routes = host_routes()
    for candidate in CANDIDATES:
        base, prefix = parse_cidr(candidate)
        mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
        # Two prefixes overlap when they agree on the shorter one's bits.
        if not any(base & m & mask == dest & m & mask for dest, m in routes):
            return candidate, None
    raise UserError(f"no free subnet for the bridge network: set {SUBNET_ENV}")


def _ifindex(name: str) -> int | None:
    try:
        with open(f"/sys/class/net/{name}/ifindex", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def ensure_bridge(rundir: str, net: Network) -> None:
    """``net``'s bridge up with its gateway address, and NAT for its subnet
    (set up when the bridge is new or the marker under the run dir
    disagrees: after a reboot both are gone)."""
    marker = os.path.join(rundir, "networks", f"{net.bridge}.nat")
    try:
        with open(marker, encoding="ascii") as f:
            current = f.read().strip() == net.subnet
    except OSError:
        current = False
    if current and _ifindex(net.bridge) is not None:
        return  # the common case: nothing to import or run
    from . import _native, nat
    from .ipam import parse_cidr

    prefix = parse_cidr(net.subnet)[1]
    _native.net_bridge_ensure(net.bridge, f"{net.gateway}/{prefix}")
    nat.ensure_masquerade(rundir, net.bridge, net.subnet)


def remove_bridge(rundir: str, net: Network) -> None:
    """Delete ``net``'s bridge and its rules (``network rm``)."""
    from . import _native, nat

    nat.forget_bridge(rundir, net.bridge)
    _native.net_link_delete(net.bridge)


# --------------------------------------------------------------------------- endpoints


def _ipam(rundir: str, net: Network) -> Ipam:
    from .ipam import Ipam

    return Ipam(rundir, net.ipam_table, net.subnet, net.gateway)


def _mac(address: str) -> str:
    """Docker's scheme: ``02:42`` and the address's four bytes."""
    return "02:42:" + ":".join(f"{int(o):02x}" for o in address.split("."))


def lease_endpoint(
    rundir: str,
    cid: str,
    net: Network,
    *,
    veth: str,
    ifname: str,
    names: Sequence[str],
    aliases: Sequence[str],
    hosts: str | None,
    ip: str | None,
    mac: str | None,
) -> dict[str, Any]:
    """Lease an address on ``net``: the endpoint's part of ``network.json``."""
    ipam = _ipam(rundir, net)
    member = {"names": [*names, *aliases], "hosts": hosts} if net.user_defined else None
    address = ipam.allocate(cid, ip, member=member)
    trace.mark("python: network: address leased")
    return {
        "network": net.name,
        "network_id": net.id,
        "bridge": net.bridge,
        "veth": veth,
        "ifname": ifname,
        "ip": address,
        "prefix": ipam.prefix,
        "gateway": ipam.gateway,
        "mac": mac or _mac(address),
        "aliases": list(aliases),
        "ipam": {
            "table": ipam.path,
            "lock": os.path.join(ipam.dir, f"{net.ipam_table}.lock"),
            "owner": cid,
        },
    }


def write_record(cdir: str, record: Mapping[str, Any]) -> None:
    from .statefiles import write_json

    write_json(os.path.join(cdir, RECORD), record)


def attach(
    cid: str,
    cdir: str,
    netns: str,
    *,
    net: Network | None = None,
    hostname: str | None = None,
    publish: list[Binding] | None = None,
    environ: Mapping[str, str] | None = None,
    names: Sequence[str] = (),
    aliases: Sequence[str] = (),
    ip: str | None = None,
    mac: str | None = None,
) -> dict[str, Any]:
    """Give container ``cid`` (directory ``cdir``) its endpoint on ``net``
    (default: the ``bridge`` network) in the namespace file ``netns`` (made
    here); returns the record written to ``network.json``.  ``names`` and
    ``aliases`` are what other containers on a user-defined network resolve
    it by; ``ip``/``mac`` are fixed ones (``--ip``, ``--mac-address``).  On
    failure everything made is undone and the error propagates."""
    from . import _native

    rundir = os.path.dirname(os.path.dirname(netns))
    detach(cdir)  # a leftover of a crashed run
    if net is None:
        net = resolve(NETWORK, "", environ)
    ensure_bridge(rundir, net)
    os.makedirs(os.path.dirname(netns), mode=0o700, exist_ok=True)
    _native.net_netns_remove(netns)  # a stale file of a crashed run
    hosts = os.path.join(cdir, "hosts")
    record = lease_endpoint(
        rundir,
        cid,
        net,
        veth=f"veth{cid[:11]}",
        ifname="eth0",
        names=names,
        aliases=aliases,
        hosts=hosts,
        ip=ip,
        mac=mac,
    )
    record["netns"] = netns
    try:
        if publish:
            record.update(_claim_ports(rundir, cid, publish))
        write_record(cdir, record)
    except BaseException as err:
        _native.net_teardown_endpoint(compact_json.dumps(record))
        if isinstance(err, OSError):
            raise UserError(f"cannot write {cdir}/{RECORD}: {err.strerror or err}") from None
        raise
    try:
        _native.net_netns_create(netns)
        trace.mark("python: network: namespace made")
        plug(record, netns, gateway=record["gateway"])
        if publish:
            from . import nat
            from .ports import Binding, nft_add_script

            chosen = [Binding.from_dict(d) for d in record["ports"]]
            nat.run_script(nft_add_script(chosen, record["ip"]))
        if hostname is not None:
            _add_host_entry(cdir, record["ip"], hostname)
        if net.user_defined:
            from . import peers

            peers.refresh(rundir, net)
    except BaseException:
        detach(cdir)
        raise
    return record


def plug(ep: Mapping[str, Any], netns: str, gateway: str | None) -> None:
    """The endpoint's veth pair into ``netns``, with hairpin mode on its
    bridge port."""
    from . import _native

    _native.net_veth_attach(
        ep["bridge"],
        ep["veth"],
        netns,
        ep["ifname"],
        addr_cidr=f"{ep['ip']}/{ep['prefix']}",
        gateway=gateway,
        mac=ep["mac"],
    )
    _hairpin(str(ep["veth"]))


def _hairpin(veth: str) -> None:
    """Let the bridge send a frame back out of the port it came in on: with
    br_netfilter loaded, a container calling its own published port through
    a host address is DNAT'd at the bridge back to itself (Docker sets the
    same without its userland proxy).  Best effort: without the sysfs file
    (no bridge port) only that case is lost."""
    try:
        with open(f"/sys/class/net/{veth}/brport/hairpin_mode", "wb") as f:
            f.write(b"1")
    except OSError:
        pass


def _claim_ports(rundir: str, cid: str, publish: list[Binding]) -> dict[str, Any]:
    """Reserve the host ports: the record's ``ports``, ``port_lease`` and
    ``nft`` (the undo script)."""
    from . import nat
    from .ports import PortTable, nft_delete_script

    table = PortTable(rundir)
    tool = nat.find_tool("nft")
    if tool is None:
        raise nat.NatError("port publishing needs nftables (nft), which is not installed")
    chosen = table.claim(cid, publish)
    return {
        "ports": [b.to_dict() for b in chosen],
        "port_lease": {"table": table.path, "lock": table.lock_path, "owner": cid},
        "nft": {"tool": tool, "script": nft_delete_script(chosen)},
    }


def endpoint_settings(rec: Record) -> dict[str, dict[str, Any]]:
    """``{network: {"Aliases": [...], "IPAddress": ..., "MacAddress": ...}}``
    as recorded at create and by ``network connect`` (Docker's
    ``NetworkingConfig.EndpointsConfig``)."""
    cfg = (rec.container.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    return {str(k): dict(v or {}) for k, v in cfg.items()}


def attach_record(rec: Record) -> None:
    """At ``start``, before the supervisor runs: a bridged container's
    endpoints (:func:`attach`, then :func:`connect` for each network it was
    connected to); a ``container:NAME`` one's namespace path resolved again
    (NAME's init may have changed since create)."""
    host_config = rec.container.get("HostConfig") or {}
    mode = str(host_config.get("NetworkMode") or "")
    if mode in ("", "none", "host"):
        return
    from .statefiles import write_json

    try:
        with open(rec.path("config.json"), "rb") as f:
            spec = compact_json.loads(f.read().decode())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {rec.path('config.json')}: {err}") from None
    namespaces = (spec.get("linux") or {}).get("namespaces") or []
    nets = [ns for ns in namespaces if ns.get("type") == "network"]
    if not is_bridged(mode):
        # container:NAME is resolved again at each start: NAME's init (and
        # so its /proc/PID/ns/net) may have changed since create.
        path = namespace_path(mode, rec.root, rec.id)
        if nets and path and nets[0].get("path") != path:
            nets[0]["path"] = path
            write_json(rec.path("config.json"), spec)
        return
    paths = [ns.get("path") for ns in nets]
    if not paths or not paths[0]:
        raise UserError(f"container {rec.id} has no network namespace file in its spec")
    publish = None
    if host_config.get("PortBindings"):
        from .ports import bindings_from_host_config

        publish = bindings_from_host_config(host_config["PortBindings"])
    settings = endpoint_settings(rec)
    own = settings.get(mode, {})
    attach(
        rec.id,
        rec.dir,
        str(paths[0]),
        net=resolve(mode, rec.root),
        hostname=spec.get("hostname"),
        publish=publish,
        names=member_names(rec),
        aliases=own.get("Aliases") or (),
        ip=own.get("IPAddress") or None,
        mac=own.get("MacAddress") or None,
    )
    from .network_connect import connect_running

    try:
        for name, cfg in settings.items():
            if name != mode:
                aliases = cfg.get("Aliases") or ()
                connect_running(rec, resolve(name, rec.root), aliases, cfg.get("IPAddress"))
    except BaseException:
        detach(rec.dir)
        raise
    trace.mark("python: network attached")


def member_names(rec: Record) -> list[str]:
    """What a container is known by on a user-defined network: its name and
    short id (Docker's DNS answers both)."""
    name = str(rec.container.get("Name") or "").lstrip("/")
    return [n for n in (name, rec.id[:12]) if n]


def _add_host_entry(cdir: str, address: str, hostname: str) -> None:
    """Docker's ``<ip>\\t<hostname>`` line in the container's /etc/hosts
    (rewritten in place: the file is bind-mounted by path at start)."""
    path = os.path.join(cdir, "hosts")
    try:
        with open(path, "r+", encoding="utf-8", errors="surrogateescape") as f:
            lines = [ln for ln in f.read().splitlines() if not ln.startswith("127.0.1.1\t")]
            lines = [ln for ln in lines if not ln.endswith(f"\t{hostname}")]
            lines.append(f"{address}\t{hostname}")
            f.seek(0)
            f.write("\n".join(lines) + "\n")
            f.truncate()
    except OSError:
        pass  # no hosts file (it is optional): the address is still right


def refresh_peers(cdir: str, eps: Sequence[Mapping[str, Any]]) -> None:
    """After endpoints on user-defined networks went away: rewrite the
    remaining members' /etc/hosts (best effort: teardown has happened)."""
    from . import peers

    for ep in eps:
        lease = ep.get("ipam") or {}
        if ep.get("network") in (None, NETWORK) or not lease.get("table"):
            continue
        try:
            peers.refresh_table(str(lease["table"]), str(ep["network"]))
        except (OSError, UserError):
            pass


def detach(cdir: str, lazy: bool = False) -> None:
    """Undo ``network.json`` if there is one (veths, namespace file, leases),
    then update the /etc/hosts of the containers left on its networks.
    ``lazy`` (the container is dead, its caller should not wait): the veth
    pairs are left to the kernel, which destroys them with the namespace
    once its file is gone, ~20-40 ms later, in its own worker."""
    record = endpoint(cdir)
    if record is None and not os.path.exists(os.path.join(cdir, RECORD)):
        return
    from . import _native

    try:
        _native.net_teardown(cdir, lazy=lazy)
    except _native.ContainerError as err:
        raise UserError(f"network teardown of {cdir}: {err}") from None
    if record is not None:
        refresh_peers(cdir, [record, *(record.get("endpoints") or [])])
