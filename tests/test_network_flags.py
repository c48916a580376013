"""``--dns``, ``--dns-search``, ``--dns-option``, ``--add-host``, ``--expose``,
``-P``, the ``port`` command, UDP publishing and a published redis, on a real
kernel with real containers.

Traffic goes only to 127.0.0.1 (published ports of containers this test
starts); the addresses in /etc/hosts and resolv.conf are documentation
addresses (RFC 5737 / RFC 3849) that nothing here ever contacts.  Every
container is removed by a finalizer, and the bridge's veths, namespace
files, leases and published ports are checked back to what they were.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ctrkit
import imagekit
import pytest
from conftest import NET_RUN_DIR, port_leases
from ctrkit import Engine, assert_engine_error, assert_ok, finish
from pyctr_fast.client_options import build_options
from pyctr_fast.errors import UserError
from pyctr_fast.netopts import check_network_options
from pyctr_fast.spec import RunOptions

pytestmark = pytest.mark.timeout(180)

BRIDGE = ["--network", "bridge"]


# --------------------------------------------------------------------------- helpers


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _exchange(port: int, payload: bytes, size: int = 0, timeout: float = 15.0) -> bytes:
    """What a TCP server on 127.0.0.1:port answers to ``payload``: ``size``
    bytes, or everything until it closes (``size`` 0); retried while the
    server starts."""
    deadline = time.monotonic() + timeout
    while True:
        got = b""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=3) as c:
                c.sendall(payload)
                while not size or len(got) < size:
                    data = c.recv(4096)
                    if not data:
                        break
                    got += data
        except OSError:
            pass
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer from 127.0.0.1:{port}")
        time.sleep(0.05)


def _inspect(engine: Engine, name: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(assert_ok(engine.cli_run("inspect", name)))[0]
    return doc


@pytest.fixture
def clean() -> Iterator[ctrkit.NetSnapshot]:
    """The bridge's leftovers (veths, namespace files, address and port
    leases) must be back to what they were when the test ends."""
    snap = ctrkit.NetSnapshot.take(NET_RUN_DIR)
    ports = port_leases()
    yield snap
    assert snap.changes(ctrkit.NetSnapshot.take(NET_RUN_DIR)) == []
    assert port_leases() == ports


@pytest.fixture
def removed(engine: Engine) -> Iterator[Callable[[str], None]]:
    """``removed(name)``: ``rm -f`` that container at teardown, whatever happened."""
    names: list[str] = []
    yield names.append
    if names:
        engine.cli_run("rm", "-f", *names)


# --------------------------------------------------------------------------- resolv.conf, hosts


def test_dns_flags_replace_nameservers_search_and_options_in_resolv_conf(engine: Engine) -> None:
    opts = ["--dns", "192.0.2.53", "--dns", "2001:db8::53", "--dns-search", "example.test"]
    opts += ["--dns-search", "corp.test", "--dns-option", "ndots:3", "--dns-opt", "timeout:1"]
    out = assert_ok(engine.run("cat", "/etc/resolv.conf", opts=opts))
    assert out == (
        "search example.test corp.test\n"
        "nameserver 192.0.2.53\n"
        "nameserver 2001:db8::53\n"
        "options ndots:3 timeout:1\n"
    )


def test_dns_search_dot_means_no_search_line(engine: Engine) -> None:
    opts = ["--dns", "192.0.2.1", "--dns-search", "."]
    assert assert_ok(engine.run("cat", "/etc/resolv.conf", opts=opts)) == "nameserver 192.0.2.1\n"


def test_add_host_entries_come_after_the_loopback_lines_and_before_the_own_name(
    engine: Engine,
) -> None:
    opts = ["--network", "none", "--hostname", "box", "--add-host", "db.test:192.0.2.10"]
    opts += ["--add-host", "v6.test=[2001:db8::5]", "--add-host", "db.test:192.0.2.11"]
    lines = assert_ok(engine.run("cat", "/etc/hosts", opts=opts)).splitlines()
    at = lines.index("192.0.2.10\tdb.test")
    assert lines[at : at + 3] == [
        "192.0.2.10\tdb.test",
        "2001:db8::5\tv6.test",
        "192.0.2.11\tdb.test",
    ]
    assert lines[0] == "127.0.0.1\tlocalhost" and lines[-1] == "127.0.1.1\tbox"


def test_create_records_the_flags_as_docker_inspect_shows_them(
    engine: Engine, removed: Callable[[str], None]
) -> None:
    removed("rec")
    args = ["create", "--name", "rec", "--dns", "192.0.2.53", "--dns-search", "example.test"]
    args += ["--dns-option", "ndots:2", "--add-host", "a.test=192.0.2.1"]
    args += ["--add-host", "b.test:2001:db8::1", "--expose", "7000-7001/udp", "--expose", "80"]
    assert_ok(engine.cli_run(*args, "--rootfs", str(engine.rootfs), "true"))
    doc = _inspect(engine, "rec")
    host_config = doc["HostConfig"]
    assert isinstance(host_config, dict)
    assert host_config["Dns"] == ["192.0.2.53"]
    assert host_config["DnsSearch"] == ["example.test"]
    assert host_config["DnsOptions"] == ["ndots:2"]
    assert host_config["ExtraHosts"] == ["a.test:192.0.2.1", "b.test:2001:db8::1"]
    assert host_config["PublishAllPorts"] is False
    config = doc["Config"]
    assert isinstance(config, dict)
    assert config["ExposedPorts"] == {"7000/udp": {}, "7001/udp": {}, "80/tcp": {}}
    plain = _inspect(
        engine, assert_ok(engine.cli_run("create", "--rootfs", str(engine.rootfs), "true")).strip()
    )
    removed(str(plain["Id"]))
    assert isinstance(plain["HostConfig"], dict) and isinstance(plain["Config"], dict)
    assert (plain["HostConfig"]["Dns"], plain["HostConfig"]["ExtraHosts"]) == ([], None)
    assert "ExposedPorts" not in plain["Config"]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (
            ["--dns", "1.2.3"],
            'invalid argument "1.2.3" for "--dns" flag: 1.2.3 is not an ip address',
        ),
        (["--add-host", "foo"], 'bad format for add-host: "foo"'),
        (["--add-host", "foo:not-an-ip"], 'invalid IP address in add-host: "not-an-ip"'),
        (["--expose", "http"], "invalid range format for --expose: http"),
        (
            ["--network", "none", "-P"],
            "port publishing (-P) needs --network bridge or a user-defined network, not none",
        ),
        (
            ["--network", "none", "--add-host", "gw:host-gateway"],
            "host-gateway needs --network bridge",
        ),
    ],
)
@pytest.mark.parametrize("command", ["run", "create"])
def test_bad_values_are_one_line_errors_that_leave_no_container(
    engine: Engine, clean: ctrkit.NetSnapshot, command: str, flags: list[str], needle: str
) -> None:
    res = engine.cli_run(command, "--name", "bad", *flags, "--rootfs", str(engine.rootfs), "true")
    assert_engine_error(res, 125, needle)
    assert engine.container_dirs() == []
    assert assert_ok(engine.cli_run("ps", "-a", "-q")) == ""
    # The name was never taken.
    assert_ok(engine.cli_run("create", "--name", "bad", "--rootfs", str(engine.rootfs), "true"))
    assert_ok(engine.cli_run("rm", "bad"))


def test_container_network_mode_conflicts_with_dns_hosts_and_ports() -> None:
    def check(**kw: object) -> str:
        opts = RunOptions("/", ["true"], network="container:x", **kw)  # type: ignore[arg-type]
        with pytest.raises(UserError) as info:
            check_network_options(opts, "container:x")
        return info.value.message

    assert check(dns=["192.0.2.1"]) == "conflicting options: dns and the network mode"
    assert check(dns_search=["a.test"]) == "conflicting options: dns and the network mode"
    assert "host-to-IP mapping" in check(extra_hosts=["a:192.0.2.1"])
    assert "port publishing and the container" in check(publish_all=True)
    assert "port exposing and the container" in check(expose=["80"])


def test_docker_py_keywords_map_to_the_network_options() -> None:
    kwargs = {
        "dns": ["192.0.2.53"],
        "dns_search": ["example.test"],
        "dns_opt": ["ndots:2"],
        "extra_hosts": {"b.test": "192.0.2.2", "a.test": "192.0.2.1"},
        "publish_all_ports": True,
        "network_mode": "bridge",
    }
    opts, _ = build_options("run", "img", None, kwargs)
    assert (opts.dns, opts.dns_search, opts.dns_options) == (
        ("192.0.2.53",),
        ("example.test",),
        ("ndots:2",),
    )
    assert opts.extra_hosts == ("a.test:192.0.2.1", "b.test:192.0.2.2")
    assert opts.publish_all is True
    listed, _ = build_options("run", "img", None, {"extra_hosts": ["c.test:192.0.2.3"]})
    assert (listed.extra_hosts, listed.publish_all) == (("c.test:192.0.2.3",), False)


def test_host_gateway_is_the_bridge_gateway_in_foreground_and_detached_runs(
    engine: Engine, clean: ctrkit.NetSnapshot, removed: Callable[[str], None]
) -> None:
    removed("gw")
    opts = [*BRIDGE, "-d", "--name", "gw", "--add-host", "host.test:host-gateway"]
    assert_ok(engine.run("sleep", "60", opts=opts, rm=False))
    settings = _inspect(engine, "gw")["NetworkSettings"]
    assert isinstance(settings, dict)
    gateway, ip = str(settings["Gateway"]), str(settings["IPAddress"])
    assert gateway and ip
    lines = assert_ok(engine.cli_run("exec", "gw", "cat", "/etc/hosts")).splitlines()
    # Docker's order: the --add-host entries, then the container's own address.
    assert lines[-2:] == [f"{gateway}\thost.test", f"{ip}\t{_hostname(engine, 'gw')}"], lines
    host_config = _inspect(engine, "gw")["HostConfig"]
    assert isinstance(host_config, dict)
    assert host_config["ExtraHosts"] == ["host.test:host-gateway"]
    assert_ok(engine.cli_run("rm", "-f", "gw"))
    out = assert_ok(
        engine.run("cat", "/etc/hosts", opts=[*BRIDGE, "--add-host", "host.test=host-gateway"])
    )
    assert f"{gateway}\thost.test" in out.splitlines(), out


def _hostname(engine: Engine, name: str) -> str:
    config = _inspect(engine, name)["Config"]
    assert isinstance(config, dict)
    return str(config["Hostname"])


# --------------------------------------------------------------------------- -P and port


@pytest.fixture
def exposing_image(engine: Engine, tmp_path: Path) -> str:
    """An image whose config exposes 8080/tcp and 9090/tcp."""
    archive = tmp_path / "exposing.tar"
    config = {"Cmd": ["/bin/sh"], "ExposedPorts": {"8080/tcp": {}, "9090/tcp": {}}}
    imagekit.docker_archive(
        archive, [imagekit.busybox_layer(tmp_path)], ["test/exposing:1"], config
    )
    assert_ok(engine.cli_run("load", "-i", str(archive)))
    return "test/exposing:1"


SERVERS = (
    "mkdir -p /tmp/www && echo hello-http > /tmp/www/index.html && "
    "httpd -p 8080 -h /tmp/www && exec nc -ll -p 9090 -e /bin/echo pong"
)


def test_publish_all_publishes_the_images_exposed_ports_and_port_lists_them(
    engine: Engine, exposing_image: str, clean: ctrkit.NetSnapshot, removed: Callable[[str], None]
) -> None:
    removed("web")
    leases_before = set(port_leases())
    run = ["run", "-d", "--name", "web", *BRIDGE, "-P", exposing_image, "sh", "-c", SERVERS]
    assert_ok(engine.cli_run(*run))
    doc = _inspect(engine, "web")
    host_config, config, settings = doc["HostConfig"], doc["Config"], doc["NetworkSettings"]
    assert isinstance(host_config, dict) and isinstance(config, dict)
    assert isinstance(settings, dict)
    assert host_config["PublishAllPorts"] is True and host_config["PortBindings"] == {}
    assert config["ExposedPorts"] == {"8080/tcp": {}, "9090/tcp": {}}
    ports = settings["Ports"]
    assert sorted(ports) == ["8080/tcp", "9090/tcp"]
    http_port, nc_port = (int(ports[k][0]["HostPort"]) for k in ("8080/tcp", "9090/tcp"))
    assert all(ports[k][0]["HostIp"] == "0.0.0.0" for k in ports)
    assert http_port != nc_port and http_port > 0 and nc_port > 0

    reply = _exchange(http_port, b"GET /index.html HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n")[0], reply
    assert reply.endswith(b"hello-http\n"), reply
    assert _exchange(nc_port, b"") == b"pong\n"

    out = assert_ok(engine.cli_run("port", "web"))
    assert out == f"8080/tcp -> 0.0.0.0:{http_port}\n9090/tcp -> 0.0.0.0:{nc_port}\n"
    assert assert_ok(engine.cli_run("port", "web", "9090")) == f"0.0.0.0:{nc_port}\n"
    assert assert_ok(engine.cli_run("port", "web", "8080/tcp")) == f"0.0.0.0:{http_port}\n"
    ps = assert_ok(engine.cli_run("ps", "--format", "{{.Names}} {{.Ports}}"))
    assert f"0.0.0.0:{http_port}->8080/tcp" in ps and f"0.0.0.0:{nc_port}->9090/tcp" in ps, ps
    assert sorted(set(port_leases()) - leases_before) == sorted(
        [f"tcp:0.0.0.0:{http_port}", f"tcp:0.0.0.0:{nc_port}"]
    )
    assert_ok(engine.cli_run("rm", "-f", "web"))


def test_publish_all_with_p_and_expose_in_a_foreground_run(
    engine: Engine, clean: ctrkit.NetSnapshot
) -> None:
    fixed = _free_port()
    script = "nc -ll -p 7000 -e /bin/echo seven & nc -ll -p 7001 -e /bin/echo eight & "
    script += "sleep 0.2; echo started; sleep 60"
    opts = [*BRIDGE, "--name", "fg", "-P", "--expose", "7000-7001", "-p", f"127.0.0.1:{fixed}:7000"]
    proc = engine.popen("sh", "-c", script, opts=opts)
    try:
        assert proc.stdout is not None
        assert ctrkit.read_line(proc.stdout, 20) == b"started\n"
        lines = assert_ok(engine.cli_run("port", "fg")).splitlines()
        assert lines[0] == f"7000/tcp -> 127.0.0.1:{fixed}", lines
        assert len(lines) == 2 and lines[1].startswith("7001/tcp -> 0.0.0.0:"), lines
        random_port = int(lines[1].rsplit(":", 1)[1])
        assert _exchange(fixed, b"") == b"seven\n"
        assert _exchange(random_port, b"") == b"eight\n"
    finally:
        assert_ok(engine.cli_run("stop", "-t", "0", "fg"))
        finish(proc)


def test_port_errors_and_a_container_without_ports(
    engine: Engine, removed: Callable[[str], None]
) -> None:
    removed("quiet")
    assert_ok(engine.run("sleep", "60", opts=["-d", "--name", "quiet"], rm=False))
    assert assert_ok(engine.cli_run("port", "quiet")) == ""
    res = engine.cli_run("port", "quiet", "81")
    assert_engine_error(res, 1, "Error: No public port '81/tcp' published for quiet")
    res = engine.cli_run("port", "quiet", "53/udp")
    assert_engine_error(res, 1, "Error: No public port '53/udp' published for quiet")
    assert_engine_error(engine.cli_run("port", "quiet", "http"), 1, "Error: invalid port (http)")
    assert_engine_error(engine.cli_run("port", "nosuch"), 1, "No such container: nosuch")
    assert_engine_error(engine.cli_run("port"), 125, "requires at least 1 and at most 2 arguments")


# --------------------------------------------------------------------------- UDP, redis

UDP_ECHO_C = r"""
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(argc > 1 ? atoi(argv[1]) : 5353);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0)
        return 1;
    for (;;) {
        char buf[1500];
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(s, buf + 5, sizeof buf - 5, 0, (struct sockaddr *)&peer, &len);
        if (n < 0)
            continue;
        memcpy(buf, "echo:", 5);
        sendto(s, buf, (size_t)n + 5, 0, (struct sockaddr *)&peer, len);
    }
}
"""


@pytest.fixture(scope="session")
def udp_echo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static UDP echo server (busybox-static has no UDP server applet:
    its ``nc`` has no ``-u`` and there is no ``udpsvd``)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        msg = "the UDP test compiles a static echo server: it needs a C compiler"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    d = tmp_path_factory.mktemp("udp-echo")
    (d / "udpecho.c").write_text(UDP_ECHO_C)
    subprocess.run(
        [cc, "-static", "-O2", "-o", str(d / "udpecho"), str(d / "udpecho.c")],
        check=True,
        capture_output=True,
    )
    return d / "udpecho"


def test_a_udp_datagram_through_a_published_port_gets_its_answer(
    engine: Engine, udp_echo: Path, clean: ctrkit.NetSnapshot, removed: Callable[[str], None]
) -> None:
    shutil.copy(udp_echo, engine.rootfs / "usr/local/bin/udpecho")
    host_port = _free_port(socket.SOCK_DGRAM)
    removed("udp")
    opts = [*BRIDGE, "-d", "--name", "udp", "-p", f"{host_port}:5353/udp"]
    assert_ok(engine.run("udpecho", "5353", opts=opts, rm=False))
    assert assert_ok(engine.cli_run("port", "udp", "5353/udp")) == f"0.0.0.0:{host_port}\n"
    answer = b""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        deadline = time.monotonic() + 15
        while not answer and time.monotonic() < deadline:
            s.sendto(b"ping-over-udp", ("127.0.0.1", host_port))
            try:
                answer, peer = s.recvfrom(1500)
            except OSError:  # not listening yet (refused) or lost: again
                continue
            assert peer == ("127.0.0.1", host_port)
    assert answer == b"echo:ping-over-udp"
    assert_ok(engine.cli_run("rm", "-f", "udp"))


@pytest.mark.usefixtures("integration_ready")
def test_a_published_redis_answers_ping_on_the_hosts_loopback(
    engine: Engine, redis_ref: str, clean: ctrkit.NetSnapshot, removed: Callable[[str], None]
) -> None:
    assert_ok(engine.cli_run("pull", redis_ref, timeout=120))
    host_port = _free_port()
    removed("netredis")
    run = ["run", "-d", "--name", "netredis", *BRIDGE, "-p", f"{host_port}:6379", redis_ref]
    assert_ok(engine.cli_run(*run))
    # RESP: an array of one bulk string.
    assert _exchange(host_port, b"*1\r\n$4\r\nPING\r\n", size=7) == b"+PONG\r\n"
    set_k = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n"
    assert _exchange(host_port, set_k, size=5) == b"+OK\r\n"
    get_k = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert _exchange(host_port, get_k, size=11) == b"$5\r\nhello\r\n"
    assert assert_ok(engine.cli_run("port", "netredis")) == f"6379/tcp -> 0.0.0.0:{host_port}\n"
    assert_ok(engine.cli_run("rm", "-f", "netredis"))
