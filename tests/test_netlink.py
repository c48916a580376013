"""The rtnetlink layer (``net_*`` in ``pyctr_fast._native``) against the real kernel.

Every test works on a bridge, veth pairs and a network namespace (``ip netns
add``) with test-unique names that it creates itself, on a 10.x.y.0/24
subnet that overlaps nothing on the host; traffic goes only between that
namespace and that bridge.  Finalizers delete whatever is left even when a
test fails, and each test checks that the host's links are back to what
they were before it.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import secrets
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("integration_ready")

IP_TIMEOUT = 10.0


def ip_json(*args: str) -> Any:
    out = subprocess.run(
        ["ip", "-j", *args], check=True, capture_output=True, text=True, timeout=IP_TIMEOUT
    )
    return json.loads(out.stdout or "[]")


def host_link_names() -> set[str]:
    return {link["ifname"] for link in ip_json("link", "show")}


def unique(prefix: str) -> str:
    return prefix + secrets.token_hex(4)  # e.g. "pctb1a2b3c4d": 12 bytes, within 15


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no address or route on the host overlaps."""
    used = [
        ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
        for link in ip_json("-4", "addr", "show")
        for a in link.get("addr_info", [])
    ]
    used += [
        ipaddress.ip_network(r["dst"], strict=False)
        for r in ip_json("-4", "route", "show", "table", "all")
        if r.get("dst") not in (None, "default") and r["dst"][0].isdigit()
    ]
    for _ in range(100):
        net = ipaddress.IPv4Network(
            f"10.{secrets.randbelow(55) + 200}.{secrets.randbelow(256)}.0/24"
        )
        if not any(net.overlaps(u) for u in used):
            return net
    pytest.skip("no free 10.x.y.0/24 subnet on this host")


@pytest.fixture
def host_links() -> Iterator[set[str]]:
    """The host's link names before the test; after it (and after every
    fixture that depends on this one is torn down) they must be the same."""
    before = host_link_names()
    yield before
    after = host_link_names()
    assert after == before, f"links added {after - before}, removed {before - after}"


@pytest.fixture
def link_names(host_links: set[str]) -> Iterator[Callable[[str], str]]:
    """``link_names(prefix)``: a fresh, unused name; deleted at teardown if it exists."""
    made: list[str] = []

    def make(prefix: str) -> str:
        name = unique(prefix)
        assert name not in host_links
        made.append(name)
        return name

    yield make
    for name in reversed(made):
        subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=IP_TIMEOUT)


@dataclass
class Netns:
    name: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def ip(self, *args: str) -> Any:
        return ip_json("-n", self.name, *args)

    def run(self, *argv: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def link_names(self) -> list[str]:
        return [link["ifname"] for link in self.ip("link", "show")]


@pytest.fixture
def netns(host_links: set[str]) -> Iterator[Netns]:
    ns = Netns(unique("pctn"))
    subprocess.run(["ip", "netns", "add", ns.name], check=True, timeout=IP_TIMEOUT)
    try:
        yield ns
    finally:
        # Deleting the namespace destroys its links, and with them their veth peers.
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=IP_TIMEOUT)


@pytest.fixture
def subnet() -> ipaddress.IPv4Network:
    return free_subnet()


def native() -> Any:
    import pyctr_fast._native as n

    return n


def test_bridge_and_veth_into_netns(
    netns: Netns, link_names: Callable[[str], str], subnet: ipaddress.IPv4Network
) -> None:
    n = native()
    bridge, host_end = link_names("pctb"), link_names("pctv")
    gw, ctr = subnet[1], subnet[2]

    index = n.net_bridge_ensure(bridge, f"{gw}/24", 1400)
    assert n.net_bridge_ensure(bridge, f"{gw}/24", 1400) == index, "ensure is idempotent"
    [br] = ip_json("-d", "addr", "show", "dev", bridge)
    assert br["ifindex"] == index
    assert br["linkinfo"]["info_kind"] == "bridge"
    assert br["mtu"] == 1400
    assert "UP" in br["flags"]
    assert [(a["local"], a["prefixlen"]) for a in br["addr_info"]] == [(str(gw), 24)]

    mac = "02:42:0a:fe:00:02"
    got = n.net_veth_attach(bridge, host_end, netns.path, "eth0", f"{ctr}/24", str(gw), mac)
    assert got["host"]["name"] == host_end
    assert got["host"]["master"] == index
    assert got["peer"]["name"] == "eth0"
    assert got["peer"]["mac"] == mac

    [host_link] = ip_json("-d", "link", "show", "dev", host_end)
    assert host_link["master"] == bridge
    assert host_link["linkinfo"]["info_kind"] == "veth"
    assert host_link["mtu"] == 1400
    assert "UP" in host_link["flags"]

    links = {link["ifname"]: link for link in netns.ip("addr", "show")}
    assert set(links) == {"lo", "eth0"}
    assert "UP" in links["lo"]["flags"]
    eth0 = links["eth0"]
    assert (eth0["address"], eth0["mtu"]) == (mac, 1400)
    assert "UP" in eth0["flags"]
    v4 = [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"]
    assert v4 == [(str(ctr), 24)]
    routes = netns.ip("-4", "route", "show")
    assert {"dst": "default", "gateway": str(gw), "dev": "eth0"}.items() <= routes[0].items()
    assert n.net_addrs(netns.path).count((eth0["ifindex"], f"{ctr}/24")) == 1

    # Traffic between the namespace and the bridge, both made here.
    ping = netns.run("busybox", "ping", "-c", "1", "-W", "3", str(gw))
    assert ping.returncode == 0, ping.stdout + ping.stderr
    with socket.socket() as server:
        server.bind((str(gw), 0))
        server.listen(1)
        server.settimeout(10)
        port = server.getsockname()[1]
        client = (
            "import socket;"
            f"s = socket.create_connection(({str(gw)!r}, {port}), timeout=5);"
            "s.sendall(b'hello from ' + s.getsockname()[0].encode())"
        )
        sent = netns.run("python3", "-c", client)
        assert sent.returncode == 0, sent.stderr
        conn, peer = server.accept()
        with conn:
            conn.settimeout(5)
            assert peer[0] == str(ctr)
            assert conn.recv(100) == f"hello from {ctr}".encode()

    # Removal: deleting the host end takes the container end with it.
    assert n.net_link_delete(host_end) is True
    assert n.net_link_delete(host_end) is False
    assert netns.link_names() == ["lo"]
    assert n.net_link_delete(bridge) is True
    assert bridge not in host_link_names()


def test_netns_given_as_fd(
    netns: Netns, link_names: Callable[[str], str], subnet: ipaddress.IPv4Network
) -> None:
    n = native()
    bridge, host_end = link_names("pctb"), link_names("pctv")
    n.net_bridge_ensure(bridge, f"{subnet[1]}/24")
    fd = os.open(netns.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        got = n.net_veth_attach(bridge, host_end, fd, "net0", f"{subnet[9]}/24")
        assert got["peer"]["name"] == "net0"
        names = [link["name"] for link in n.net_links(fd)]
        assert names == ["lo", "net0"]
        assert n.net_link_delete("net0", fd) is True
        assert host_end not in {link["name"] for link in n.net_links()}
    finally:
        os.close(fd)
    assert netns.link_names() == ["lo"]
    assert n.net_link_delete(bridge)


def test_links_lists_the_host(host_links: set[str]) -> None:
    links = native().net_links()
    assert {link["name"] for link in links} == host_links
    lo = next(link for link in links if link["name"] == "lo")
    assert (lo["index"], lo["kind"], lo["up"]) == (1, None, True)


def expect_error(fn: Callable[[], object], step: str, err: int, path: str | None) -> Any:
    n = native()
    with pytest.raises(n.ContainerError) as info:
        fn()
    e = info.value
    assert (e.step, e.errno, e.path) == (step, err, path), str(e)
    return e


def test_bad_names_are_refused_before_the_kernel(netns: Netns) -> None:
    n = native()
    long = "pct" + "x" * 13  # 16 bytes
    e = expect_error(lambda: n.net_bridge_ensure(long), "interface name", errno.EINVAL, long)
    assert "longer than 15 bytes" in str(e)
    expect_error(
        lambda: n.net_veth_attach("pyctr0", "pct/bad", netns.path),
        "interface name",
        errno.EINVAL,
        "pct/bad",
    )
    expect_error(lambda: n.net_link_delete(long), "interface name", errno.EINVAL, long)
    expect_error(
        lambda: n.net_veth_attach("pyctr0", "pctv0", netns.path, addr_cidr="10.0.0.1"),
        "ipv4 address",
        errno.EINVAL,
        "10.0.0.1",
    )
    expect_error(
        lambda: n.net_veth_attach("pyctr0", "pctv0", netns.path, mac="01:00:5e:00:00:01"),
        "mac address",
        errno.EINVAL,
        "01:00:5e:00:00:01",
    )


def test_missing_netns_bridge_and_wrong_namespace_kind(
    netns: Netns, link_names: Callable[[str], str], subnet: ipaddress.IPv4Network
) -> None:
    n = native()
    bridge, host_end = link_names("pctb"), link_names("pctv")
    missing = f"/run/netns/{unique('pctn')}"
    expect_error(
        lambda: n.net_veth_attach(bridge, host_end, missing), "open netns", errno.ENOENT, missing
    )
    expect_error(lambda: n.net_links(missing), "open netns", errno.ENOENT, missing)
    expect_error(
        lambda: n.net_veth_attach(bridge, host_end, netns.path), "find bridge", errno.ENODEV, bridge
    )
    expect_error(
        lambda: n.net_links("/proc/self/ns/uts"), "setns net", errno.EINVAL, "/proc/self/ns/uts"
    )
    assert host_end not in host_link_names()
    assert netns.link_names() == ["lo"]


def test_duplicates_and_failed_attach_leave_nothing(
    netns: Netns, link_names: Callable[[str], str], subnet: ipaddress.IPv4Network
) -> None:
    n = native()
    bridge, host_end, other = link_names("pctb"), link_names("pctv"), link_names("pctv")
    n.net_bridge_ensure(bridge, f"{subnet[1]}/24")
    n.net_veth_attach(bridge, host_end, netns.path, "eth0", f"{subnet[2]}/24", str(subnet[1]))

    # The host name is taken: nothing is created.
    e = expect_error(
        lambda: n.net_veth_attach(bridge, host_end, netns.path, "eth1"),
        "create veth",
        errno.EEXIST,
        host_end,
    )
    assert "File exists" in str(e)
    # The name inside the namespace is taken: the kernel refuses the pair.
    expect_error(
        lambda: n.net_veth_attach(bridge, other, netns.path, "eth0"),
        "create veth",
        errno.EEXIST,
        other,
    )
    assert other not in host_link_names()
    # A link of the bridge's name that is not a bridge.
    expect_error(lambda: n.net_bridge_ensure(host_end), "ensure bridge", errno.EEXIST, host_end)
    assert host_end in host_link_names(), "ensure never deletes what it did not create"
    # A failure half-way (the namespace has a default route already) rolls
    # the pair back.
    gw = str(subnet[1])
    expect_error(
        lambda: n.net_veth_attach(bridge, other, netns.path, "eth1", f"{subnet[3]}/24", gw),
        "add route",
        errno.EEXIST,
        f"0.0.0.0/0 via {gw}",
    )
    assert other not in host_link_names()
    assert sorted(netns.link_names()) == ["eth0", "lo"]
    # A gateway off-subnet: the route fails, the pair goes.
    e = expect_error(
        lambda: n.net_veth_attach(bridge, other, netns.path, "eth1", f"{subnet[3]}/24", "10.1.2.3"),
        "add route",
        errno.ENETUNREACH,
        "0.0.0.0/0 via 10.1.2.3",
    )
    assert other not in host_link_names()
    assert sorted(netns.link_names()) == ["eth0", "lo"]
    assert n.net_link_delete(host_end)
    assert n.net_link_delete(bridge)
