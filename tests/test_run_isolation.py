"""Namespaces, PID 1, hostname, network and per-container state of ``pyctr-fast run``."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ctrkit import Engine, assert_ok, finish, parse_status

pytestmark = pytest.mark.timeout(60)

NAMESPACES = ["pid", "mnt", "uts", "ipc", "net", "cgroup"]


def host_namespace_refs(ns: str) -> list[str]:
    """The host's namespace of kind ``ns``: the test process's, and PID 1's when
    this machine lets us read it."""
    refs = [os.readlink(f"/proc/self/ns/{ns}")]
    try:
        refs.append(os.readlink(f"/proc/1/ns/{ns}"))
    except OSError:
        pass
    return refs


def test_command_runs_as_pid_1(engine: Engine) -> None:
    assert assert_ok(engine.sh("echo $$")) == "1\n"


def test_ps_shows_only_the_container_processes(engine: Engine) -> None:
    out = assert_ok(engine.sh("ps -o pid,comm; echo end"))
    rows = [line.split() for line in out.splitlines()[1:-1]]
    assert sorted(comm for _, comm in rows) == ["ps", "sh"], out
    assert ["1", "sh"] in rows, out


def test_ps_as_the_command_is_pid_1_and_alone(engine: Engine) -> None:
    out = assert_ok(engine.run("ps", "-o", "pid,comm"))
    assert [line.split() for line in out.splitlines()[1:]] == [["1", "ps"]], out


def test_proc_shows_only_container_pids(engine: Engine) -> None:
    out = assert_ok(engine.sh("cd /proc && for p in [0-9]*; do echo $p; done"))
    # The glob runs inside sh itself: PID 1 is the only process there is.
    assert {int(p) for p in out.split()} == {1}, out


def test_container_pid_1_is_an_ordinary_host_process(engine: Engine) -> None:
    proc = engine.popen("sleep", "31.4159")
    info = engine.wait_for_container("31.4159", proc=proc)
    status = info.status()
    nspid = status["NSpid"].split()
    assert len(nspid) == 2 and nspid[1] == "1", status["NSpid"]
    assert int(nspid[0]) == info.pid != 1
    assert os.readlink(f"/proc/{info.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    os.kill(info.pid, 9)
    assert finish(proc).returncode == 137


@pytest.mark.parametrize("ns", NAMESPACES)
def test_container_gets_its_own_namespace(engine: Engine, ns: str) -> None:
    inside = assert_ok(engine.run("readlink", f"/proc/self/ns/{ns}")).strip()
    assert re.fullmatch(rf"{ns}:\[\d+\]", inside), inside
    assert inside not in host_namespace_refs(ns)


@pytest.mark.parametrize("ns", NAMESPACES)
def test_running_container_namespaces_differ_from_host_seen_from_host(
    engine: Engine, ns: str
) -> None:
    proc = engine.popen("sleep", "27.1828")
    info = engine.wait_for_container("27.1828", proc=proc)
    try:
        assert os.readlink(f"/proc/{info.pid}/ns/{ns}") not in host_namespace_refs(ns)
    finally:
        os.kill(info.pid, 9)
        finish(proc)


def test_user_namespace_is_the_hosts(engine: Engine) -> None:
    # Docker without userns-remap: container root is host root, so caps are real.
    inside = assert_ok(engine.run("readlink", "/proc/self/ns/user")).strip()
    assert inside == os.readlink("/proc/self/ns/user")


def test_hostname_flag_sets_the_uts_hostname(engine: Engine) -> None:
    out = assert_ok(
        engine.sh("hostname; uname -n; cat /etc/hostname", opts=["--hostname", "box-1"])
    )
    assert out.split() == ["box-1", "box-1", "box-1"]


def test_default_hostname_is_short_container_id(engine: Engine) -> None:
    # The marker appears only once sh has exec'd sleep (after `hostname`):
    # sh's own argv holds "$s.456", so killing the match never races the print.
    proc = engine.popen("sh", "-c", "s=23; hostname; exec sleep $s.456")
    info = engine.wait_for_container("23.456", proc=proc)
    cid = engine.wait_for_container_dir()
    os.kill(info.pid, 9)
    res = finish(proc)
    hostname = res.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{12}", hostname), res
    assert cid.startswith(hostname), (cid, hostname)


def test_hostname_changed_inside_leaves_host_hostname_alone(engine: Engine) -> None:
    before = socket.gethostname()
    out = assert_ok(
        engine.sh("hostname changed-inside && hostname", opts=["--cap-add", "SYS_ADMIN"])
    )
    assert out == "changed-inside\n"
    assert socket.gethostname() == before
    assert Path("/proc/sys/kernel/hostname").read_text().strip() == before


def test_default_network_is_the_bridge_with_eth0(engine: Engine) -> None:
    # Docker's default: a namespace of its own on the default bridge.
    out = assert_ok(engine.sh("ls /sys/class/net; ip -4 -o route show default"))
    assert out.split()[:2] == ["eth0", "lo"] and " dev eth0" in out, out


def test_network_none_has_only_loopback_and_it_is_up(engine: Engine) -> None:
    script = "ls /sys/class/net; cat /sys/class/net/lo/flags"
    out = assert_ok(engine.sh(script, opts=["--network", "none"]))
    names, flags = out.split()[:-1], out.split()[-1]
    assert names == ["lo"], out
    assert int(flags, 16) & 0x1, f"lo is not up: flags {flags}"


def test_network_none_loopback_has_127_0_0_1(engine: Engine) -> None:
    out = assert_ok(
        engine.run("ip", "-4", "-o", "addr", "show", "dev", "lo", opts=["--network", "none"])
    )
    assert "inet 127.0.0.1/8" in out, out


def test_network_none_cannot_see_host_interfaces(engine: Engine) -> None:
    host_ifaces = set(os.listdir("/sys/class/net")) - {"lo"}
    out = assert_ok(engine.run("cat", "/proc/net/dev", opts=["--network", "none"]))
    seen = {line.split(":")[0].strip() for line in out.splitlines()[2:]}
    assert seen == {"lo"}, out
    assert not (seen & host_ifaces)


def test_network_host_shares_the_host_network_namespace(engine: Engine) -> None:
    inside = assert_ok(engine.run("readlink", "/proc/self/ns/net", opts=["--network", "host"]))
    assert inside.strip() == os.readlink("/proc/self/ns/net")
    out = assert_ok(engine.run("ls", "/sys/class/net", opts=["--network", "host"]))
    assert set(out.split()) == set(os.listdir("/sys/class/net"))


def test_state_lives_under_root_during_run_and_is_removed_after(engine: Engine) -> None:
    proc = engine.popen("sleep", "19.87")
    info = engine.wait_for_container("19.87", proc=proc)
    cid = engine.wait_for_container_dir()
    assert re.fullmatch(r"[0-9a-f]{12,64}", cid), cid
    assert (engine.root / "containers" / cid).is_dir()
    os.kill(info.pid, 9)
    assert finish(proc).returncode == 137
    assert engine.container_dirs() == []


def test_pyctr_root_env_selects_the_data_root(
    engine: Engine, make_root: Callable[[str], Path]
) -> None:
    env_root = make_root("env-root")
    env = {**engine.base_env(), "PYCTR_ROOT": str(env_root)}
    proc = engine.popen("sleep", "17.23", root=False, env=env)
    info = engine.wait_for_container("17.23", proc=proc)
    engine.wait_for_container_dir(env_root)
    assert engine.container_dirs() == []  # nothing under the fixture's root
    os.kill(info.pid, 9)
    finish(proc)
    assert engine.container_dirs(env_root) == []


def test_root_flag_wins_over_pyctr_root_env(
    engine: Engine, make_root: Callable[[str], Path]
) -> None:
    env_root = make_root("env-root")
    env = {**engine.base_env(), "PYCTR_ROOT": str(env_root)}
    proc = engine.popen("sleep", "13.57", env=env)
    info = engine.wait_for_container("13.57", proc=proc)
    engine.wait_for_container_dir()
    assert not (env_root / "containers").exists() or engine.container_dirs(env_root) == []
    os.kill(info.pid, 9)
    finish(proc)


def test_missing_data_root_is_created(engine: Engine, make_root: Callable[[str], Path]) -> None:
    fresh = make_root("not-yet") / "nested"
    res = engine.run("true", root=fresh)
    assert_ok(res)
    assert fresh.is_dir()
    assert engine.container_dirs(fresh) == []


def test_two_containers_run_at_once_with_distinct_ids_and_pids(engine: Engine) -> None:
    a = engine.popen("sleep", "11.111")
    b = engine.popen("sleep", "12.222")
    pa = engine.wait_for_container("11.111", proc=a)
    pb = engine.wait_for_container("12.222", proc=b)
    deadline = time.monotonic() + 10
    while len(engine.container_dirs()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(engine.container_dirs()) == 2
    assert pa.pid != pb.pid
    assert parse_status(Path(f"/proc/{pa.pid}/status").read_text())["NSpid"].split()[-1] == "1"
    assert parse_status(Path(f"/proc/{pb.pid}/status").read_text())["NSpid"].split()[-1] == "1"
    assert os.readlink(f"/proc/{pa.pid}/ns/pid") != os.readlink(f"/proc/{pb.pid}/ns/pid")
    os.kill(pa.pid, 9)
    os.kill(pb.pid, 9)
    assert finish(a).returncode == 137
    assert finish(b).returncode == 137
    assert engine.container_dirs() == []


def test_container_exits_when_pid_1_exits_even_with_children_left(engine: Engine) -> None:
    res = engine.sh("sleep 1000 & exit 5", timeout=20)
    assert res.returncode == 5, res
    assert res.seconds < 10, res
