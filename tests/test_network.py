"""``--network bridge`` and ``--network container:NAME`` on a real kernel:
addresses, routes, reachability, ``inspect``, and that every way a
container ends (rm, stop, a failed start, a dead supervisor) leaves no
veth, namespace file, lease or rule behind.

Traffic goes only to the bridge's gateway address (a server this test
runs) and to containers' addresses on that bridge.  The session's
``network_session`` fixture (conftest.py) removes the bridge and our nft
table at the end if the session made them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import ctrkit
import pytest
from conftest import NET_RUN_DIR, port_leases
from ctrkit import Engine, assert_ok, finish

pytestmark = pytest.mark.timeout(120)

BRIDGE = ["--network", "bridge"]


def _table() -> dict[str, object]:
    doc: dict[str, object] = json.loads(
        (NET_RUN_DIR / "networks" / "ipam" / "bridge.json").read_text()
    )
    return doc


def _nft_table() -> str:
    done = subprocess.run(["nft", "list", "table", "ip", "pyctr"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def _host_links() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


def _in_subnet(address: str, subnet: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(address) in ipaddress.ip_network(subnet)


@pytest.fixture(scope="module")
def net(cli: list[str], rootfs_template: Path, session_base: Path) -> dict[str, str]:
    """The bridge network set up by one throw-away container: its subnet and gateway."""
    root = session_base / "network-warmup"
    argv = [*cli, "--root", str(root), "run", "--rm", *BRIDGE]
    res = subprocess.run(
        [*argv, "--rootfs", str(rootfs_template), "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res
    table = _table()
    return {"subnet": str(table["subnet"]), "gateway": str(table["gateway"])}


@pytest.fixture
def clean(net: dict[str, str]) -> Iterator[ctrkit.NetSnapshot]:
    """A snapshot of links, namespace files, leases and our nft table taken
    before the test; the test may compare against it (the leak guard does too)."""
    before_links, before_nft = _host_links(), _nft_table()
    snap = ctrkit.NetSnapshot.take(NET_RUN_DIR)
    yield snap
    assert _links_added_since(before_links) == set()
    assert _nft_table() == before_nft


def _links_added_since(before: list[str]) -> set[str]:
    """The host's links beyond ``before``, once those a foreground ``run
    --rm`` left to the kernel (destroyed with their namespace, 20-40 ms
    later) are gone.  Only additions count: ``before`` itself may hold a
    link of an earlier test that the kernel was still destroying."""
    now = ctrkit.wait_settled(_host_links, lambda links: set(links) <= set(before))
    return set(now) - set(before)


def _assert_back_to(snap: ctrkit.NetSnapshot) -> None:
    assert snap.changes(snap.settled(NET_RUN_DIR)) == []


def _ip_of(engine: Engine, name: str) -> str:
    return assert_ok(
        engine.cli_run("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name)
    ).strip()


def test_bridge_container_has_eth0_an_address_and_a_default_route(
    engine: Engine, net: dict[str, str], clean: ctrkit.NetSnapshot
) -> None:
    out = assert_ok(engine.sh("ip -4 -o addr; echo ==; ip route; echo ==; ip -o link", opts=BRIDGE))
    addrs, routes, links = out.split("==\n")
    eth0 = [line.split()[3] for line in addrs.splitlines() if " eth0 " in line]
    assert len(eth0) == 1, out
    address, prefix = eth0[0].split("/")
    assert _in_subnet(address, net["subnet"]) and prefix == net["subnet"].split("/")[1]
    assert address != net["gateway"]
    assert f"default via {net['gateway']} dev eth0" in routes, out
    assert "127.0.0.1/8" in addrs and "lo" in links and "UP" in links.split("lo:")[1], out
    _assert_back_to(clean)


def test_none_still_has_only_loopback(engine: Engine, clean: ctrkit.NetSnapshot) -> None:
    out = assert_ok(engine.sh("ip -o link", opts=["--network", "none"]))
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"], out


def test_container_reaches_a_server_on_the_gateway_address(
    engine: Engine, net: dict[str, str], clean: ctrkit.NetSnapshot
) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((net["gateway"], 0))
    server.listen(1)
    server.settimeout(20)
    port = server.getsockname()[1]
    got: list[bytes] = []
    peer: list[str] = []

    def serve() -> None:
        try:
            conn, addr = server.accept()
        except OSError:
            return
        with conn:
            peer.append(addr[0])
            conn.sendall(b"hello-from-host\n")
            conn.settimeout(10)
            got.append(conn.recv(100))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        out = assert_ok(
            engine.sh(f"echo hello-from-container | nc -w 5 {net['gateway']} {port}", opts=BRIDGE)
        )
    finally:
        t.join(20)
        server.close()
    assert out == "hello-from-host\n"
    assert got == [b"hello-from-container\n"]
    assert _in_subnet(peer[0], net["subnet"]), peer


def test_two_containers_on_the_bridge_reach_each_other_by_ip(
    engine: Engine, net: dict[str, str], clean: ctrkit.NetSnapshot
) -> None:
    script = "while :; do echo pong-from-a | nc -l -p 7000; done"
    assert_ok(engine.run("sh", "-c", script, opts=[*BRIDGE, "-d", "--name", "srv-a"], rm=False))
    try:
        a_ip = _ip_of(engine, "srv-a")
        assert _in_subnet(a_ip, net["subnet"])
        probe = (
            f"for i in $(seq 100); do out=$(nc -w 1 {a_ip} 7000 </dev/null); "
            '[ -n "$out" ] && echo "$out" && exit 0; sleep 0.1; done; exit 1'
        )
        assert assert_ok(engine.sh(probe, opts=BRIDGE)) == "pong-from-a\n"
    finally:
        assert_ok(engine.cli_run("rm", "-f", "srv-a"))
    _assert_back_to(clean)


def test_container_mode_shares_the_network_namespace_and_inspect_shows_it(
    engine: Engine, net: dict[str, str], clean: ctrkit.NetSnapshot
) -> None:
    assert_ok(engine.run("sleep", "60", opts=[*BRIDGE, "-d", "--name", "box"], rm=False))
    try:
        doc = json.loads(assert_ok(engine.cli_run("inspect", "box")))[0]
        ns = doc["NetworkSettings"]
        ip, gw, mac = ns["IPAddress"], ns["Gateway"], ns["MacAddress"]
        assert _in_subnet(ip, net["subnet"]) and gw == net["gateway"]
        assert ns["IPPrefixLen"] == int(net["subnet"].split("/")[1])
        assert mac == "02:42:" + ":".join(f"{int(o):02x}" for o in ip.split("."))
        assert ns["Networks"]["bridge"]["IPAddress"] == ip
        assert ns["Networks"]["bridge"]["Gateway"] == gw
        assert ns["Networks"]["bridge"]["MacAddress"] == mac
        assert doc["HostConfig"]["NetworkMode"] == "bridge"
        pid = doc["State"]["Pid"]
        host_view = os.readlink(f"/proc/{pid}/ns/net")
        out = assert_ok(
            engine.sh(
                "readlink /proc/self/ns/net; ip -4 -o addr show eth0",
                opts=["--net", "container:box"],
            )
        )
        inode, addr = out.splitlines()
        assert inode == host_view
        assert f" {ip}/" in addr
        assert ip in (engine.root / "containers" / doc["Id"] / "hosts").read_text()
        assert_ok(engine.cli_run("stop", "-t", "0", "box"))
        stopped = json.loads(assert_ok(engine.cli_run("inspect", "box")))[0]["NetworkSettings"]
        assert (stopped["IPAddress"], stopped["Gateway"]) == ("", "")
        _assert_back_to(clean)
    finally:
        assert_ok(engine.cli_run("rm", "-f", "box"))
    _assert_back_to(clean)


def test_joining_a_missing_or_stopped_container_is_an_error(
    engine: Engine, clean: ctrkit.NetSnapshot
) -> None:
    res = engine.sh("true", opts=["--network", "container:nope"])
    assert res.returncode == 125 and "No such container: nope" in res.stderr, res
    assert_ok(engine.cli_run("create", "--name", "idle", "--rootfs", str(engine.rootfs), "true"))
    try:
        res = engine.sh("true", opts=["--network", "container:idle"])
        assert res.returncode == 125, res
        assert "cannot join network of a non running container: idle" in res.stderr
    finally:
        assert_ok(engine.cli_run("rm", "idle"))


def test_failed_starts_and_rm_leave_nothing_behind(
    engine: Engine, clean: ctrkit.NetSnapshot
) -> None:
    res = engine.run("/no/such/program", opts=BRIDGE)
    assert res.returncode == 127, res
    _assert_back_to(clean)
    res = engine.run("/no/such/program", opts=[*BRIDGE, "-d"])
    assert res.returncode == 127, res
    _assert_back_to(clean)
    res = engine.run("/no/such/program", opts=[*BRIDGE, "--name", "kept"], rm=False)
    assert res.returncode == 127, res
    _assert_back_to(clean)
    assert_ok(engine.cli_run("rm", "kept"))
    assert_ok(engine.run("sleep", "60", opts=[*BRIDGE, "-d", "--name", "up"], rm=False))
    assert clean.changes(ctrkit.NetSnapshot.take(NET_RUN_DIR)) != []
    assert_ok(engine.cli_run("rm", "-f", "up"))
    _assert_back_to(clean)


def test_a_dead_supervisors_endpoint_is_removed_by_rm(
    engine: Engine, clean: ctrkit.NetSnapshot
) -> None:
    cid = assert_ok(engine.run("sleep", "60", opts=[*BRIDGE, "-d"], rm=False)).strip()
    state = json.loads((engine.root / "containers" / cid / "state.json").read_text())
    ctrkit.kill_pid(state["SupervisorPid"])
    ctrkit.wait_gone([state["SupervisorPid"]])
    assert clean.changes(ctrkit.NetSnapshot.take(NET_RUN_DIR)) != []
    assert_ok(engine.cli_run("rm", "-f", cid))
    _assert_back_to(clean)


def test_detached_auto_remove_cleans_up_when_the_container_ends(
    engine: Engine, clean: ctrkit.NetSnapshot
) -> None:
    cid = assert_ok(engine.run("true", opts=[*BRIDGE, "-d", "--rm"], rm=False)).strip()
    deadline = time.monotonic() + 10
    while (engine.root / "containers" / cid).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not (engine.root / "containers" / cid).exists()
    _assert_back_to(clean)


def test_a_hundred_run_rm_cycles_leave_ipam_links_and_rules_unchanged(
    engine: Engine, clean: ctrkit.NetSnapshot
) -> None:
    links, nft = _host_links(), _nft_table()
    seen = set()
    for i in range(100):
        if i % 2:  # foreground, with a published port (a DNAT element each time)
            out = assert_ok(
                engine.run("ip", "-4", "-o", "addr", "show", "eth0", opts=[*BRIDGE, "-p", "80"])
            )
        else:  # detached, removed by rm -f while it runs
            cid = assert_ok(engine.run("sleep", "60", opts=[*BRIDGE, "-d"], rm=False)).strip()
            out = assert_ok(engine.cli_run("exec", cid, "ip", "-4", "-o", "addr", "show", "eth0"))
            assert_ok(engine.cli_run("rm", "-f", cid))
        seen.add(out.split()[3])
    assert len(seen) > 50  # round robin: addresses are not reused at once
    assert _links_added_since(links) == set() and _nft_table() == nft
    assert port_leases() == {} and _table()["leases"] == {}
    _assert_back_to(clean)


def test_concurrent_starts_get_distinct_addresses(
    engine: Engine, net: dict[str, str], clean: ctrkit.NetSnapshot
) -> None:
    procs = [
        engine.tracker.add(
            subprocess.Popen(
                engine.run_argv("sleep", "60", opts=[*BRIDGE, "-d", "--name", f"c{i}"], rm=False),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=engine.base_env(),
                start_new_session=True,
            )
        )
        for i in range(6)
    ]
    try:
        for p in procs:
            res = finish(p)  # type: ignore[arg-type]
            assert res.returncode == 0, res
        ips = [_ip_of(engine, f"c{i}") for i in range(6)]
        assert len(set(ips)) == 6, ips
        assert all(_in_subnet(ip, net["subnet"]) for ip in ips)
        assert sorted(dict(ctrkit.NetSnapshot.take(NET_RUN_DIR).leases)) == sorted(
            set(ips) | set(dict(clean.leases))
        )
    finally:
        assert_ok(engine.cli_run("rm", "-f", *[f"c{i}" for i in range(6)]))
    _assert_back_to(clean)


# --------------------------------------------------------------------------- -p


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _fetch(host: str, port: int, timeout: float = 10.0) -> bytes:
    """The first line a TCP server at host:port sends, retrying while it starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as c:
                data = c.recv(100)
                if data:
                    return data
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing from {host}:{port}")
        time.sleep(0.05)


SERVER = ["nc", "-ll", "-p", "8080", "-e", "/bin/echo", "pong"]


def test_published_port_is_reachable_from_the_host_loopback_and_gateway(
    engine: Engine, net: dict[str, str], clean: ctrkit.NetSnapshot
) -> None:
    loop_port, any_port = _free_port(), _free_port()
    opts = [*BRIDGE, "-d", "--name", "web", "-p", f"127.0.0.1:{loop_port}:8080"]
    opts += ["-p", f"{any_port}:8080", "-p", "9999/udp"]
    assert_ok(engine.run(*SERVER, opts=opts, rm=False))
    try:
        assert _fetch("127.0.0.1", loop_port) == b"pong\n"
        # Published on every address: the gateway's is one of the host's.
        assert _fetch(net["gateway"], any_port) == b"pong\n"
        assert _fetch("127.0.0.1", any_port) == b"pong\n"
        ports = json.loads(assert_ok(engine.cli_run("inspect", "web")))[0]["NetworkSettings"][
            "Ports"
        ]
        udp = ports["9999/udp"][0]
        assert ports["8080/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(loop_port)},
            {"HostIp": "0.0.0.0", "HostPort": str(any_port)},
        ]
        assert udp["HostIp"] == "0.0.0.0" and int(udp["HostPort"]) > 0
        ps = assert_ok(engine.cli_run("ps", "--format", "{{.Ports}}"))
        assert f"127.0.0.1:{loop_port}->8080/tcp" in ps and "->9999/udp" in ps, ps
        assert len(port_leases()) == 3
    finally:
        assert_ok(engine.cli_run("rm", "-f", "web"))
    assert port_leases() == {}
    _assert_back_to(clean)


def test_containers_reach_published_ports_through_the_gateway_address_hairpin(
    engine: Engine, net: dict[str, str], clean: ctrkit.NetSnapshot
) -> None:
    port = _free_port()
    opts = [*BRIDGE, "-d", "--name", "hp", "-p", f"{port}:8080"]
    assert_ok(engine.run(*SERVER, opts=opts, rm=False))
    try:
        # Another container on the bridge, and the publishing container itself.
        other = engine.run("nc", "-w", "3", net["gateway"], str(port), opts=BRIDGE)
        assert assert_ok(other) == "pong\n"
        itself = engine.cli_run("exec", "hp", "nc", "-w", "3", net["gateway"], str(port))
        assert assert_ok(itself) == "pong\n"
    finally:
        assert_ok(engine.cli_run("rm", "-f", "hp"))
    _assert_back_to(clean)


def test_a_random_host_port_from_a_foreground_run(
    engine: Engine, clean: ctrkit.NetSnapshot
) -> None:
    script = "nc -ll -p 8080 -e /bin/echo pong & sleep 0.2; echo started; sleep 30"
    proc = engine.popen("sh", "-c", script, opts=[*BRIDGE, "--name", "fg", "-p", "8080"])
    try:
        assert proc.stdout is not None
        assert ctrkit.read_line(proc.stdout, 20) == b"started\n"
        port = json.loads(assert_ok(engine.cli_run("inspect", "fg")))[0]["NetworkSettings"][
            "Ports"
        ]["8080/tcp"][0]["HostPort"]
        assert _fetch("127.0.0.1", int(port)) == b"pong\n"
    finally:
        assert_ok(engine.cli_run("stop", "-t", "0", "fg"))
        finish(proc)
    assert port_leases() == {}
    _assert_back_to(clean)


def test_a_port_in_use_is_refused_with_nothing_set_up(
    engine: Engine, clean: ctrkit.NetSnapshot
) -> None:
    nft_before = _nft_table()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        res = engine.run("true", opts=[*BRIDGE, "-p", f"127.0.0.1:{port}:80"])
        assert res.returncode == 125, res
        assert f"Bind for 127.0.0.1:{port} failed: port is already allocated" in res.stderr
    _assert_back_to(clean)
    assert _nft_table() == nft_before and port_leases() == {}
    free = _free_port()
    assert_ok(
        engine.run(
            "sleep", "60", opts=[*BRIDGE, "-d", "--name", "p1", "-p", f"{free}:80"], rm=False
        )
    )
    try:
        res = engine.run(
            "true", opts=[*BRIDGE, "-d", "--name", "p2", "-p", f"127.0.0.1:{free}:81"], rm=False
        )
        assert res.returncode == 125 and "port is already allocated" in res.stderr, res
        assert list(port_leases()) == [f"tcp:0.0.0.0:{free}"]
        assert_ok(engine.cli_run("rm", "p2"))
    finally:
        assert_ok(engine.cli_run("rm", "-f", "p1"))
    assert _nft_table() == nft_before and port_leases() == {}
    _assert_back_to(clean)


def test_publishing_needs_the_bridge_network(engine: Engine) -> None:
    res = engine.run("true", opts=["--network", "none", "-p", "8080:80"])
    assert res.returncode == 125, res
    assert "port publishing (-p) needs --network bridge or a user-defined network, not none" in (
        res.stderr
    )
    res = engine.run("true", opts=[*BRIDGE, "-p", "80-90:80"])
    assert res.returncode == 125 and "port ranges are not supported yet" in res.stderr, res


def test_a_restarted_bridge_container_gets_its_endpoint_again(
    engine: Engine, net: dict[str, str], clean: ctrkit.NetSnapshot
) -> None:
    assert_ok(engine.run("sleep", "60", opts=[*BRIDGE, "-d", "--name", "again"], rm=False))
    try:
        assert_ok(engine.cli_run("stop", "-t", "0", "again"))
        _assert_back_to(clean)
        assert_ok(engine.cli_run("start", "again"))
        ip = _ip_of(engine, "again")
        assert _in_subnet(ip, net["subnet"])
        out = assert_ok(engine.cli_run("exec", "again", "ip", "-4", "-o", "addr", "show", "eth0"))
        assert f" {ip}/" in out
    finally:
        assert_ok(engine.cli_run("rm", "-f", "again"))
    _assert_back_to(clean)


def test_container_mode_follows_the_target_across_its_restart(
    engine: Engine, clean: ctrkit.NetSnapshot
) -> None:
    def netns_of(name: str) -> str:
        doc = json.loads(assert_ok(engine.cli_run("inspect", name)))[0]
        return os.readlink(f"/proc/{doc['State']['Pid']}/ns/net")

    assert_ok(engine.run("sleep", "60", opts=["-d", "--name", "target"], rm=False))
    try:
        create = ["create", "--name", "joiner", "--network", "container:target"]
        assert_ok(engine.cli_run(*create, "--rootfs", str(engine.rootfs), "sleep", "60"))
        assert_ok(engine.cli_run("restart", "-t", "0", "target"))
        assert_ok(engine.cli_run("start", "joiner"))
        assert netns_of("joiner") == netns_of("target")
    finally:
        assert_ok(engine.cli_run("rm", "-f", "joiner", "target"))


def test_the_in_process_api_runs_on_the_bridge(
    engine: Engine, net: dict[str, str], clean: ctrkit.NetSnapshot
) -> None:
    code = (
        "sys.exit(api.run(ROOTFS, ['ip', '-4', '-o', 'addr', 'show', 'eth0'], "
        "network='bridge', root=ROOT))"
    )
    out = assert_ok(engine.api(code))
    address = out.split()[3].split("/")[0]
    assert _in_subnet(address, net["subnet"]), out
    _assert_back_to(clean)
