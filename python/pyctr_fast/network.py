"""Container networking modes and the default bridge network's endpoints.

Modes (``--network``): ``none`` (a namespace with only ``lo``, the
default), ``host``, ``bridge`` and ``container:NAME``.

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
    from collections.abc import Mapping
    from typing import Any

    from .ipam import Ipam
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
    "namespace_path",
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
    """A valid ``--network`` value, or Docker-like UserError."""
    if mode in MODES:
        return mode
    if mode.startswith("container:"):
        if not mode[len("container:") :]:
            raise UserError(f'invalid network mode "{mode}": container name is empty')
        return mode
    raise UserError(
        f'network "{mode}" not found: use --network none, host, bridge or container:NAME'
    )


def _netns_file(rundir: str, cid: str) -> str:
    return os.path.join(rundir, "netns", cid)


def namespace_path(
    mode: str, state_root: str, cid: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """The network namespace the spec names by path for ``mode``: the
    container's own persistent file (``bridge``), another container's
    (``container:NAME``: its file, else its init's), or None (a new
    namespace, or the host's)."""
    if mode == "bridge":
        return _netns_file(run_dir(environ), cid)
    if not mode.startswith("container:"):
        return None
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


def _host_routes() -> list[tuple[int, int]]:
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
    routes = _host_routes()
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


def _ensure_bridge(rundir: str, subnet: str, gateway: str, prefix: int) -> None:
    """``pyctr0`` up with the gateway address, and NAT for the subnet (set up
    when the bridge is new or the marker under the run dir disagrees)."""
    from . import _native, nat

    existed = _ifindex(BRIDGE) is not None
    marker = os.path.join(rundir, "networks", f"{BRIDGE}.nat")
    try:
        with open(marker, encoding="ascii") as f:
            current = f.read().strip() == subnet
    except OSError:
        current = False
    if existed and current:
        return  # set up by an earlier start (the bridge would be gone after a reboot)
    _native.net_bridge_ensure(BRIDGE, f"{gateway}/{prefix}")
    nat.ensure_masquerade(BRIDGE, subnet)
    tmp = f"{marker}.tmp.{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(marker), mode=0o700, exist_ok=True)
        with open(tmp, "w", encoding="ascii") as f:
            f.write(subnet + "\n")
        os.replace(tmp, marker)
    except OSError as err:
        raise UserError(f"cannot write {marker}: {err.strerror or err}") from None


# --------------------------------------------------------------------------- endpoints


def _lease(
    rundir: str,
    cid: str,
    cdir: str,
    netns: str,
    ipam: Ipam,
    publish: list[Binding] | None,
) -> dict[str, Any]:
    """Lease the address (and the ports), then write ``network.json``: the
    record every teardown works from.  All or nothing."""
    address = ipam.allocate(cid)
    trace.mark("python: network: address leased")
    octets = address.split(".")
    record: dict[str, Any] = {
        "network": NETWORK,
        "bridge": BRIDGE,
        "netns": netns,
        "veth": f"veth{cid[:11]}",
        "ip": address,
        "prefix": ipam.prefix,
        "gateway": ipam.gateway,
        "mac": "02:42:" + ":".join(f"{int(o):02x}" for o in octets),
        "ipam": {
            "table": ipam.path,
            "lock": os.path.join(ipam.dir, f"{NETWORK}.lock"),
            "owner": cid,
        },
    }
    if publish:
        record.update(_claim_ports(rundir, cid, publish, ipam, address))
    try:
        from .statefiles import write_json

        write_json(os.path.join(cdir, RECORD), record)
    except OSError as err:
        ipam.release(cid)
        if publish:
            from .ports import PortTable

            PortTable(rundir).release(cid)
        raise UserError(f"cannot write {cdir}/{RECORD}: {err.strerror or err}") from None
    return record


def attach(
    cid: str,
    cdir: str,
    netns: str,
    *,
    hostname: str | None = None,
    publish: list[Binding] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Give container ``cid`` (directory ``cdir``) its bridge endpoint in the
    namespace file ``netns`` (made here); returns the record written to
    ``network.json``.  On failure everything made is undone and the error
    (UserError or ContainerError) propagates."""
    from . import _native
    from .ipam import Ipam

    rundir = os.path.dirname(os.path.dirname(netns))
    detach(cdir)  # a leftover of a crashed run
    subnet, gateway = _choose_subnet(rundir, environ)
    ipam = Ipam(rundir, NETWORK, subnet, gateway)
    _ensure_bridge(rundir, ipam.subnet, ipam.gateway, ipam.prefix)
    os.makedirs(os.path.dirname(netns), mode=0o700, exist_ok=True)
    _native.net_netns_remove(netns)  # a stale file of a crashed run
    record = _lease(rundir, cid, cdir, netns, ipam, publish)
    address = record["ip"]
    try:
        _native.net_netns_create(netns)
        trace.mark("python: network: namespace made")
        _native.net_veth_attach(
            BRIDGE,
            record["veth"],
            netns,
            "eth0",
            addr_cidr=ipam.cidr(address),
            gateway=ipam.gateway,
            mac=record["mac"],
        )
        if publish:
            from . import nat
            from .ports import Binding, nft_add_script

            chosen = [Binding.from_dict(d) for d in record["ports"]]
            nat.run_script(nft_add_script(chosen, address))
        if hostname is not None:
            _add_host_entry(cdir, address, hostname)
    except BaseException:
        detach(cdir)
        raise
    return record


def _claim_ports(
    rundir: str, cid: str, publish: list[Binding], ipam: Any, address: str
) -> dict[str, Any]:
    """Reserve the host ports (releasing the address if that fails); the
    record's ``ports``, ``port_lease`` and ``nft`` (the undo script)."""
    from . import nat
    from .ports import PortTable, nft_delete_script

    table = PortTable(rundir)
    try:
        tool = nat.find_tool("nft")
        if tool is None:
            raise nat.NatError("port publishing needs nftables (nft), which is not installed")
        chosen = table.claim(cid, publish)
    except BaseException:
        ipam.release(cid)
        raise
    return {
        "ports": [b.to_dict() for b in chosen],
        "port_lease": {"table": table.path, "lock": table.lock_path, "owner": cid},
        "nft": {"tool": tool, "script": nft_delete_script(chosen)},
    }


def attach_record(rec: Record) -> None:
    """At ``start``, before the supervisor runs: a bridge container's
    endpoint (:func:`attach`); a ``container:NAME`` one's namespace path
    resolved again (NAME's init may have changed since create)."""
    host_config = rec.container.get("HostConfig") or {}
    mode = str(host_config.get("NetworkMode") or "")
    if mode != "bridge" and not mode.startswith("container:"):
        return
    from .statefiles import write_json

    try:
        with open(rec.path("config.json"), "rb") as f:
            spec = compact_json.loads(f.read().decode())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {rec.path('config.json')}: {err}") from None
    namespaces = (spec.get("linux") or {}).get("namespaces") or []
    nets = [ns for ns in namespaces if ns.get("type") == "network"]
    if mode != "bridge":
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
    attach(rec.id, rec.dir, str(paths[0]), hostname=spec.get("hostname"), publish=publish)
    trace.mark("python: network attached")


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


def detach(cdir: str) -> None:
    """Undo ``network.json`` if there is one (veth, namespace file, lease)."""
    if not os.path.exists(os.path.join(cdir, RECORD)):
        return
    from . import _native

    try:
        _native.net_teardown(cdir)
    except _native.ContainerError as err:
        raise UserError(f"network teardown of {cdir}: {err}") from None
