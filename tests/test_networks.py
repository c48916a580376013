"""User-defined networks on a real kernel: ``network create/ls/inspect/rm/
connect/disconnect/prune``, ``--network NAME``, name and alias resolution
through /etc/hosts, ``--ip``, ``--mac-address``, and that nothing (bridge,
veth, lease, nft chain, definition) is left behind.

Traffic goes only to addresses on bridges these tests create (containers
on them and their gateways) and to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import ctrkit
import pytest
from conftest import NET_RUN_DIR
from ctrkit import Engine, assert_ok

pytestmark = pytest.mark.timeout(120)

SERVER = ["nc", "-ll", "-p", "8080", "-e", "/bin/echo", "pong"]


def _nft_table() -> str:
    done = subprocess.run(["nft", "list", "table", "ip", "pyctr"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def _links() -> set[str]:
    """Our user-defined networks' bridges and the links plugged into them."""
    out = set()
    for name in os.listdir("/sys/class/net"):
        master = os.path.basename(os.path.realpath(f"/sys/class/net/{name}/master"))
        if name.startswith("pcbr-") or master.startswith("pcbr-") or name.startswith("vp"):
            out.add(name)
    return out


def _ipam_tables() -> set[str]:
    d = NET_RUN_DIR / "networks" / "ipam"
    return set(os.listdir(d)) if d.is_dir() else set()


def _leases(net_id: str) -> dict[str, str]:
    path = NET_RUN_DIR / "networks" / "ipam" / f"{net_id}.json"
    if not path.exists():
        return {}
    leases: dict[str, str] = json.loads(path.read_text())["leases"]
    return leases


class Networks:
    """Makes networks through the CLI and removes what is left of them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.made: list[str] = []

    def create(self, name: str, *opts: str) -> dict[str, object]:
        out = assert_ok(self.engine.cli_run("network", "create", *opts, name))
        self.made.append(name)
        ident = out.strip()
        assert len(ident) == 64, out
        return self.inspect(name)

    def inspect(self, name: str) -> dict[str, object]:
        doc: dict[str, object] = json.loads(
            assert_ok(self.engine.cli_run("network", "inspect", name))
        )[0]
        return doc

    def cleanup(self) -> None:
        for name in self.made:
            self.engine.cli_run("network", "rm", "-f", name)


@pytest.fixture
def networks(engine: Engine) -> Iterator[Networks]:
    """Networks made by the test; each test's containers are removed by the
    test itself (before this finalizer removes the networks)."""
    links, tables, nft = _links(), _ipam_tables(), _nft_table()
    nets = Networks(engine)
    yield nets
    nets.cleanup()
    left = ctrkit.wait_settled(lambda: _links() - links, lambda extra: not extra)
    assert left == set(), "links left behind"
    assert _ipam_tables() - tables <= {"bridge.json", "bridge.lock"}
    if nft:  # the table existed before: our chains for these networks are gone
        assert "pcbr-" not in _nft_table().replace(nft, "")


def _bridge(doc: dict[str, object]) -> str:
    options = doc["Options"]
    assert isinstance(options, dict)
    return str(options["com.docker.network.bridge.name"])


def _subnet(doc: dict[str, object]) -> tuple[str, str]:
    ipam = doc["IPAM"]
    assert isinstance(ipam, dict)
    config = ipam["Config"][0]
    return str(config["Subnet"]), str(config["Gateway"])


def test_create_ls_inspect_rm_make_and_remove_the_bridge_and_its_rules(
    engine: Engine, networks: Networks
) -> None:
    doc = networks.create("front", "--subnet", "10.131.7.0/24", "--gateway", "10.131.7.254")
    assert _subnet(doc) == ("10.131.7.0/24", "10.131.7.254")
    assert doc["Driver"] == "bridge" and doc["Containers"] == {}
    bridge = _bridge(doc)
    addrs = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True
    )
    assert " 10.131.7.254/24 " in addrs.stdout, addrs
    assert f"masq-{bridge}" in _nft_table()
    ls = assert_ok(engine.cli_run("network", "ls")).splitlines()
    assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    names = [line.split()[1] for line in ls[1:]]
    assert names == sorted(names) and {"bridge", "host", "none", "front"} <= set(names)
    quiet = assert_ok(engine.cli_run("network", "ls", "-q")).split()
    assert str(doc["Id"])[:12] in quiet
    assert assert_ok(engine.cli_run("network", "rm", "front")) == "front\n"
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    assert bridge not in _nft_table()
    assert "front" not in assert_ok(engine.cli_run("network", "ls"))
    res = engine.cli_run("network", "inspect", "front")
    assert res.returncode == 1 and "network front not found" in res.stderr, res


def test_a_network_without_subnet_gets_a_free_one_distinct_from_the_others(
    networks: Networks,
) -> None:
    a, b = networks.create("auto-a"), networks.create("auto-b")
    (sa, ga), (sb, gb) = _subnet(a), _subnet(b)
    assert sa != sb and sa.startswith("10.") and sa.endswith("/24")
    assert ga == sa.replace(".0/24", ".1") and gb == sb.replace(".0/24", ".1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subnet", "10.131.8.0/33", "bad1"], "invalid subnet"),
        (["--subnet", "10.131.8.1/24", "bad2"], "host bits are set"),
        (["--subnet", "10.131.8.0/24", "--gateway", "10.131.9.1", "bad3"], "invalid gateway"),
        (["--gateway", "10.131.8.1", "bad4"], "corresponding subnet"),
        (["--driver", "overlay", "bad5"], 'only the "bridge" driver'),
        (["bridge"], "already exists"),
        (["-bad6"], "unknown"),
        (["bad/7"], "invalid network name"),
    ],
)
def test_bad_network_definitions_are_refused_with_nothing_made(
    engine: Engine, networks: Networks, args: list[str], message: str
) -> None:
    links = _links()
    res = engine.cli_run("network", "create", *args)
    assert res.returncode != 0 and message in res.stderr, res
    assert len(res.stderr.strip().splitlines()) == 1, res
    assert _links() == links
    assert assert_ok(engine.cli_run("network", "ls", "-q")).count("\n") == 3


def test_overlapping_subnets_and_duplicate_names_are_refused(
    engine: Engine, networks: Networks
) -> None:
    networks.create("first", "--subnet", "10.131.10.0/24")
    res = engine.cli_run("network", "create", "--subnet", "10.131.0.0/16", "second")
    assert res.returncode == 125 and "overlaps" in res.stderr, res
    res = engine.cli_run("network", "create", "first")
    assert res.returncode == 125 and "already exists" in res.stderr, res
    res = engine.cli_run("network", "rm", "bridge")
    assert res.returncode == 1 and "pre-defined network" in res.stderr, res
    res = engine.cli_run("network", "rm", "no-such-net")
    assert res.returncode == 1 and "not found" in res.stderr, res


def test_containers_resolve_each_other_by_name_alias_and_short_id(
    engine: Engine, networks: Networks
) -> None:
    doc = networks.create("app")
    subnet, gateway = _subnet(doc)
    opts = ["-d", "--name", "web", "--network", "app", "--network-alias", "www"]
    cid = assert_ok(engine.run(*SERVER, opts=opts, rm=False)).strip()
    try:
        script = (
            "for n in web www $0; do nc -w 2 $n 8080 </dev/null || echo fail $n; done; "
            "grep -c '# network app' /etc/hosts; ip -4 -o addr show eth0"
        )
        out = assert_ok(
            engine.run("sh", "-c", script, cid[:12], opts=["--network", "app", "--name", "cli"])
        )
        lines = out.splitlines()
        assert lines[:3] == ["pong"] * 3, out
        assert lines[3] == "1", out
        prefix = subnet.rsplit(".", 1)[0] + "."
        assert f" inet {prefix}" in lines[4], out
        inspect = json.loads(assert_ok(engine.cli_run("inspect", "web")))[0]
        ep = inspect["NetworkSettings"]["Networks"]["app"]
        assert ep["Aliases"] == ["www"] and ep["Gateway"] == gateway
        assert ep["NetworkID"] == doc["Id"]
        members = networks.inspect("app")["Containers"]
        assert isinstance(members, dict) and list(members) == [cid]
        # The client has left: web's /etc/hosts no longer names it.
        hosts = assert_ok(engine.cli_run("exec", "web", "cat", "/etc/hosts"))
        assert "cli" not in hosts, hosts
    finally:
        assert_ok(engine.cli_run("rm", "-f", "web"))
    assert _leases(str(doc["Id"])) == {}


def test_fixed_ip_and_mac_address_on_a_user_network(engine: Engine, networks: Networks) -> None:
    networks.create("fixed", "--subnet", "10.131.11.0/24")
    opts = ["--network", "fixed", "--ip", "10.131.11.77", "--mac-address", "92:d0:c6:0a:29:33"]
    out = assert_ok(
        engine.sh("ip -4 -o addr show eth0; cat /sys/class/net/eth0/address", opts=opts)
    )
    assert " inet 10.131.11.77/24 " in out and "92:d0:c6:0a:29:33" in out, out


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["--network", "bridge", "--ip", "10.77.0.9"], "user defined networks only"),
        (["--network", "none", "--mac-address", "92:d0:c6:0a:29:33"], "mac-address"),
        (["--network", "fixed2", "--ip", "10.131.99.5"], "not a host address"),
        (["--network", "fixed2", "--ip", "10.131.12.1"], "is the gateway"),
        (["--network", "fixed2", "--mac-address", "zz:00:00:00:00:00"], "invalid MAC"),
        (["--network", "nonesuch"], "network nonesuch not found"),
    ],
)
def test_bad_endpoint_options_fail_with_nothing_left(
    engine: Engine, networks: Networks, opts: list[str], message: str
) -> None:
    doc = networks.create("fixed2", "--subnet", "10.131.12.0/24")
    links = _links()
    res = engine.run("true", opts=opts)
    assert res.returncode == 125 and message in res.stderr, res
    assert _links() == links
    assert _leases(str(doc["Id"])) == {}
    assert not (NET_RUN_DIR / "netns").is_dir() or os.listdir(NET_RUN_DIR / "netns") == []


def test_connect_and_disconnect_a_running_container(engine: Engine, networks: Networks) -> None:
    back = networks.create("back", "--subnet", "10.131.13.0/24")
    networks.create("front2", "--subnet", "10.131.14.0/24")
    cid = assert_ok(
        engine.run(*SERVER, opts=["-d", "--name", "api", "--network", "front2"], rm=False)
    ).strip()
    try:
        assert_ok(engine.cli_run("network", "connect", "--alias", "db-api", "back", "api"))
        addrs = assert_ok(engine.cli_run("exec", "api", "ip", "-4", "-o", "addr"))
        assert " eth1 " in addrs and "10.131.13." in addrs, addrs
        routes = assert_ok(engine.cli_run("exec", "api", "ip", "route"))
        assert "default via 10.131.14.1 dev eth0" in routes, routes
        out = assert_ok(engine.run("nc", "-w", "2", "db-api", "8080", opts=["--network", "back"]))
        assert out == "pong\n"
        nets = json.loads(assert_ok(engine.cli_run("inspect", "api")))[0]["NetworkSettings"][
            "Networks"
        ]
        assert sorted(nets) == ["back", "front2"] and nets["back"]["Aliases"] == ["db-api"]
        res = engine.cli_run("network", "connect", "back", "api")
        assert res.returncode == 1 and "already exists" in res.stderr, res
        assert_ok(engine.cli_run("network", "disconnect", "back", "api"))
        addrs = assert_ok(engine.cli_run("exec", "api", "ip", "-4", "-o", "addr"))
        assert " eth1 " not in addrs, addrs
        assert _leases(str(back["Id"])) == {}
        res = engine.cli_run("network", "disconnect", "back", "api")
        assert res.returncode == 1 and "not connected" in res.stderr, res
    finally:
        assert_ok(engine.cli_run("rm", "-f", cid))


def test_a_stopped_container_connected_gets_the_network_when_it_starts(
    engine: Engine, networks: Networks
) -> None:
    networks.create("later", "--subnet", "10.131.15.0/24")
    opts = ["--name", "late", "--network", "bridge", "--rootfs", str(engine.rootfs)]
    assert_ok(engine.cli_run("create", *opts, "sleep", "300"))
    try:
        assert_ok(engine.cli_run("network", "connect", "--ip", "10.131.15.9", "later", "late"))
        assert_ok(engine.cli_run("start", "late"))
        addrs = assert_ok(engine.cli_run("exec", "late", "ip", "-4", "-o", "addr"))
        assert " eth0 " in addrs and " inet 10.131.15.9/24 " in addrs, addrs
    finally:
        assert_ok(engine.cli_run("rm", "-f", "late"))


def test_a_network_in_use_cannot_be_removed_and_prune_keeps_it(
    engine: Engine, networks: Networks
) -> None:
    networks.create("busy", "--subnet", "10.131.16.0/24")
    networks.create("idle", "--subnet", "10.131.17.0/24")
    assert_ok(
        engine.run("sleep", "300", opts=["-d", "--name", "b1", "--network", "busy"], rm=False)
    )
    try:
        res = engine.cli_run("network", "rm", "busy")
        assert res.returncode == 1 and "has active endpoints" in res.stderr, res
        pruned = assert_ok(engine.cli_run("network", "prune", "-f"))
        assert "idle" in pruned and "busy" not in pruned, pruned
    finally:
        assert_ok(engine.cli_run("rm", "-f", "b1"))
    assert assert_ok(engine.cli_run("network", "rm", "busy")) == "busy\n"


def test_user_network_container_reaches_a_server_on_its_gateway(
    engine: Engine, networks: Networks
) -> None:
    import socket
    import threading

    doc = networks.create("out", "--subnet", "10.131.18.0/24")
    _, gateway = _subnet(doc)
    with socket.socket() as srv:
        srv.bind((gateway, 0))
        srv.listen(1)
        port = srv.getsockname()[1]

        def answer() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"hello from the gateway\n")

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        out = assert_ok(engine.run("nc", "-w", "3", gateway, str(port), opts=["--network", "out"]))
        t.join(5)
    assert out == "hello from the gateway\n"


def test_networks_are_isolated_from_each_other_but_published_ports_are_not(
    engine: Engine, networks: Networks
) -> None:
    networks.create("iso-a", "--subnet", "10.131.19.0/24")
    networks.create("iso-b", "--subnet", "10.131.20.0/24")
    port = _free_port()
    opts = ["-d", "--name", "srv-b", "--network", "iso-b", "-p", f"{port}:8080"]
    cid = assert_ok(engine.run(*SERVER, opts=opts, rm=False)).strip()
    try:
        ip_b = assert_ok(
            engine.cli_run("inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid)
        ).strip()
        assert ip_b.startswith("10.131.20."), ip_b
        # From the other network: its address is unreachable ...
        res = engine.run("nc", "-w", "2", ip_b, "8080", opts=["--network", "iso-a"])
        assert res.stdout == "" and res.returncode != 0, res
        # ... and from the default bridge too,
        res = engine.run("nc", "-w", "2", ip_b, "8080", opts=["--network", "bridge"])
        assert res.stdout == "" and res.returncode != 0, res
        # but its published port, through iso-a's gateway (a host address), answers.
        gateway_a = "10.131.19.1"
        out = engine.run("nc", "-w", "3", gateway_a, str(port), opts=["--network", "iso-a"])
        assert assert_ok(out) == "pong\n"
        # A container on both networks reaches it directly.
        assert_ok(engine.cli_run("network", "connect", "iso-a", "srv-b"))
        both = engine.cli_run("exec", "srv-b", "nc", "-w", "2", ip_b, "8080")
        assert assert_ok(both) == "pong\n"
    finally:
        assert_ok(engine.cli_run("rm", "-f", cid))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
