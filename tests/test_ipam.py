"""The file-locked IPAM (pyctr_fast.ipam): unique leases, exhaustion,
release and reuse, persistence, and concurrent processes."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from pyctr_fast.ipam import Ipam, IpamError, format_ipv4, parse_cidr, parse_ipv4


def test_address_arithmetic() -> None:
    assert parse_ipv4("10.89.0.1") == 0x0A590001
    assert format_ipv4(0x0A5900FF) == "10.89.0.255"
    assert parse_cidr("10.89.0.0/24") == (0x0A590000, 24)
    for bad in ("10.89.0", "10.89.0.256", "a.b.c.d", "10.89.0.1/", "1.2.3.4/33", "10.89.0.1/24"):
        with pytest.raises(IpamError):
            parse_cidr(bad if "/" in bad else bad + "/24")


def test_leases_are_unique_and_skip_network_gateway_broadcast(tmp_path: Path) -> None:
    ipam = Ipam(str(tmp_path), "bridge", "10.89.0.0/29")
    assert ipam.gateway == "10.89.0.1"
    got = [ipam.allocate(f"c{i}") for i in range(5)]
    assert got == [f"10.89.0.{i}" for i in range(2, 7)]
    with pytest.raises(IpamError, match="no available IPv4 address on network bridge"):
        ipam.allocate("one-too-many")
    assert ipam.allocate("c3") == "10.89.0.5", "an owner gets its lease back"
    assert ipam.cidr("10.89.0.5") == "10.89.0.5/29"
    assert ipam.leases() == {f"10.89.0.{i + 2}": f"c{i}" for i in range(5)}


def test_release_and_reuse_round_robin(tmp_path: Path) -> None:
    ipam = Ipam(str(tmp_path), "bridge", "10.89.0.0/24")
    a, b = ipam.allocate("a"), ipam.allocate("b")
    assert (a, b) == ("10.89.0.2", "10.89.0.3")
    assert ipam.release("a") == a
    assert ipam.release("a") is None
    assert ipam.allocate("c") == "10.89.0.4", "a freed address is not reused first"
    small = Ipam(str(tmp_path), "small", "10.90.0.0/30")  # one address besides the gateway
    assert small.allocate("x") == "10.90.0.2"
    with pytest.raises(IpamError):
        small.allocate("y")
    small.release("x")
    assert small.allocate("y") == "10.90.0.2", "released addresses come back"


def test_requested_addresses(tmp_path: Path) -> None:
    ipam = Ipam(str(tmp_path), "user", "192.168.50.0/24", gateway="192.168.50.254")
    assert ipam.allocate("a", "192.168.50.1") == "192.168.50.1"
    assert ipam.allocate("a", "192.168.50.1") == "192.168.50.1"
    for taken_or_bad in ("192.168.50.1", "192.168.50.254", "192.168.50.0", "192.168.50.255"):
        with pytest.raises(IpamError):
            ipam.allocate("b", taken_or_bad)
    with pytest.raises(IpamError, match="not a host address"):
        ipam.allocate("b", "10.0.0.2")
    with pytest.raises(IpamError, match="already holds"):
        ipam.allocate("a", "192.168.50.2")
    assert ipam.allocate("b") == "192.168.50.2", "allocation continues after the last lease"


def test_state_file_is_json_replaced_atomically(tmp_path: Path) -> None:
    Ipam(str(tmp_path), "bridge", "10.89.0.0/24").allocate("ctr1")
    state_dir = tmp_path / "networks" / "ipam"
    assert sorted(os.listdir(state_dir)) == ["bridge.json", "bridge.lock"], "no temporary left"
    state = json.loads((state_dir / "bridge.json").read_text())
    assert state["subnet"] == "10.89.0.0/24"
    assert state["gateway"] == "10.89.0.1"
    assert state["leases"] == {"10.89.0.2": "ctr1"}
    again = Ipam(str(tmp_path), "bridge", "10.89.0.0/24")
    assert again.allocate("ctr2") == "10.89.0.3", "a new instance sees the table"


def test_subnet_change_prune_remove_and_corruption(tmp_path: Path) -> None:
    root = str(tmp_path)
    ipam = Ipam(root, "net1", "10.89.0.0/24")
    for owner in ("a", "b", "c"):
        ipam.allocate(owner)
    with pytest.raises(IpamError, match=r"has leases on 10\.89\.0\.0/24"):
        Ipam(root, "net1", "10.99.0.0/24").allocate("d")
    with pytest.raises(IpamError, match="active leases"):
        ipam.remove()
    assert ipam.prune(keep=["b"]) == ["10.89.0.2", "10.89.0.4"]
    assert ipam.leases() == {"10.89.0.3": "b"}
    ipam.release("b")
    ipam.remove()
    assert os.listdir(tmp_path / "networks" / "ipam") == []
    assert Ipam(root, "net1", "10.99.0.0/24").allocate("d") == "10.99.0.2"
    (tmp_path / "networks" / "ipam" / "net1.json").write_text("{not json")
    with pytest.raises(IpamError, match="corrupt lease table"):
        ipam.leases()
    for bad in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(IpamError, match="invalid network name"):
            Ipam(root, bad, "10.89.0.0/24")
    with pytest.raises(IpamError, match="not a host address"):
        Ipam(root, "gw", "10.89.0.0/24", gateway="10.89.1.1")


def _allocate_many(root: str, worker: int, count: int, barrier: Any, out: Any) -> None:
    barrier.wait(timeout=30)
    ipam = Ipam(root, "busy", "10.77.0.0/24")
    got, refused = [], 0
    for i in range(count):
        try:
            got.append(ipam.allocate(f"w{worker}-{i}"))
        except IpamError:
            refused += 1
    out.put((got, refused))


def run_workers(root: str, workers: int, count: int) -> list[tuple[list[str], int]]:
    """``workers`` processes, released together, each allocating ``count``."""
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_allocate_many, args=(root, w, count, barrier, out))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    assert [p.exitcode for p in procs] == [0] * workers
    return results


def test_concurrent_processes_never_share_an_address(tmp_path: Path) -> None:
    results = run_workers(str(tmp_path), workers=8, count=20)
    leased = [a for got, _ in results for a in got]
    assert len(leased) == 160
    assert len(set(leased)) == 160, "an address was handed out twice"
    assert sum(refused for _, refused in results) == 0
    table = Ipam(str(tmp_path), "busy", "10.77.0.0/24").leases()
    assert sorted(table) == sorted(leased)


def test_concurrent_exhaustion_hands_out_each_address_once(tmp_path: Path) -> None:
    # A /24 has 253 addresses besides the gateway; 8 x 40 = 320 asked for.
    results = run_workers(str(tmp_path), workers=8, count=40)
    leased = [a for got, _ in results for a in got]
    assert len(leased) == len(set(leased)) == 253
    assert sum(refused for _, refused in results) == 320 - 253
    assert not {"10.77.0.0", "10.77.0.1", "10.77.0.255"} & set(leased)
