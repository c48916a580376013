"""The seed's session, word for word, with a real redis image:

    pyctr-fast run -d --name myredis redis
    pyctr-fast exec -it myredis /bin/sh        (or redis-cli)

The image (tests/redis_image.py: Debian's redis binaries and libraries on the
busybox rootfs) is pushed once per session to the loopback docker-registry,
pulled into each test's data root and tagged ``redis``.  Every test that
starts ``myredis`` has a finalizer that ``rm -f``s it whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ctrkit
import pytest
import redis_image
from ctrkit import Engine, Result, assert_ok, close_pty, spawn_pty

pytestmark = [pytest.mark.usefixtures("integration_ready"), pytest.mark.timeout(180)]

NAME = "myredis"
#: Namespaces every container of this engine gets (network: ``--network none``),
#: by OCI type (inspect's ``Namespaces`` keys) → /proc/PID/ns/ file name.
PRIVATE_NS = {"mount": "mnt", "pid": "pid", "network": "net", "uts": "uts", "ipc": "ipc"}
#: busybox ash's prompt for a non-root user in /data.
PROMPT = re.compile(rb"/data \$ ")
NL = rb"\r+\n"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def redis(engine: Engine, redis_ref: str) -> Engine:
    """``engine`` whose data root holds the image, pulled and tagged ``redis``."""
    assert_ok(engine.cli_run("pull", redis_ref, timeout=120))
    assert_ok(engine.cli_run("tag", redis_ref, "redis"))
    return engine


@pytest.fixture
def cleanup(redis: Engine) -> Iterator[Callable[[str], None]]:
    """``cleanup(name)``: ``rm -f`` that container at teardown, whatever happened."""
    names: list[str] = []
    yield names.append
    for name in names:
        redis.cli_run("rm", "-f", name)


@pytest.fixture
def myredis(redis: Engine, cleanup: Callable[[str], None]) -> str:
    """``myredis`` started (``run -d``) and answering PING; its id."""
    cleanup(NAME)
    res = redis.cli_run("run", "-d", "--name", NAME, "redis")
    cid = assert_ok(res).strip()
    wait_for_pong(redis, NAME)
    return cid


# --------------------------------------------------------------------------- helpers


def inspect(engine: Engine, name: str) -> dict[str, Any]:
    res = engine.cli_run("inspect", name)
    objs = json.loads(assert_ok(res))
    assert isinstance(objs, list) and len(objs) == 1, res
    obj: dict[str, Any] = objs[0]
    return obj


def wait_for_pong(engine: Engine, name: str, timeout: float = 10.0) -> Result:
    """``exec NAME redis-cli ping`` until the server answers (it starts in ms,
    but ``run -d`` returns as soon as the process exists)."""
    deadline = time.monotonic() + timeout
    while True:
        res = engine.cli_run("exec", name, "redis-cli", "ping")
        if (res.returncode == 0 and res.stdout == "PONG\n") or time.monotonic() > deadline:
            return res
        time.sleep(0.1)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def ns_inode(path: str) -> int:
    return os.stat(path).st_ino


# --------------------------------------------------------------------------- the scenario


def test_seed_session_run_d_ps_host_pid_namespaces_exec_upper_dir_logs_stop_rm(
    redis: Engine, cleanup: Callable[[str], None]
) -> None:
    engine = redis
    cleanup(NAME)

    # 1. `run -d --name myredis redis` prints a 64-hex id and returns.
    res = engine.cli_run("run", "-d", "--name", NAME, "redis")
    out = assert_ok(res)
    assert re.fullmatch(r"[0-9a-f]{64}\n", out), res
    cid = out.strip()
    assert res.seconds < 10, f"run -d took {res.seconds:.1f}s\n{res}"
    assert engine.container_dirs() == [cid]

    # 2. `ps` shows it Up.
    ps = assert_ok(engine.cli_run("ps"))
    rows = [line for line in ps.splitlines()[1:] if line.split()[-1:] == [NAME]]
    assert len(rows) == 1, ps
    assert rows[0].startswith(cid[:12]) and " Up " in rows[0], ps
    assert ps.splitlines()[0].split()[:2] == ["CONTAINER", "ID"], ps

    # 3. The host sees redis-server as an ordinary process whose pid is inspect's.
    pid_text = assert_ok(engine.cli_run("inspect", "-f", "{{.State.Pid}}", NAME)).strip()
    assert pid_text.isdigit() and int(pid_text) > 0, pid_text
    pid = int(pid_text)
    # The entrypoint script execs redis-server, which then sets its process title.
    argv = wait_for(
        "redis-server's process title",
        lambda: (a := cmdline(pid)) and a[0].startswith("redis-server") and a,
    )
    assert re.fullmatch(r"redis-server \*:6379", argv[0]), argv
    assert os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "redis-check-rdb"
    host_ps = subprocess.run(
        ["ps", "-o", "pid=,user=,args=", "-p", str(pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert host_ps[0] == str(pid) and host_ps[2].startswith("redis-server"), host_ps
    status = ctrkit.host_status(pid)
    assert status["Uid"].split()[0] == str(redis_image.REDIS_UID), status["Uid"]
    # Its own pid namespace, where it is pid 1 (no init in between); its host
    # parent is the container's supervisor, which outlived the `run -d` CLI.
    assert status["NSpid"].split() == [str(pid), "1"], status["NSpid"]
    ppid = int(status["PPid"])
    assert cmdline(ppid)[:1] == ["pyctr-supervise"], (ppid, cmdline(ppid))

    # 4. Its namespace inodes differ from the host's and match inspect's paths.
    obj = inspect(engine, NAME)
    assert obj["Id"] == cid and obj["Name"] == "/" + NAME
    assert obj["State"]["Status"] == "running" and obj["State"]["Running"] is True
    assert obj["State"]["Pid"] == pid
    namespaces = obj["Namespaces"]
    assert set(PRIVATE_NS) <= set(namespaces), namespaces
    for kind, path in namespaces.items():
        name = PRIVATE_NS.get(kind, os.path.basename(path))
        assert path == f"/proc/{pid}/ns/{name}", (kind, path)
        assert ns_inode(path) == ns_inode(f"/proc/{pid}/ns/{name}")
    for kind, name in PRIVATE_NS.items():
        assert ns_inode(namespaces[kind]) != ns_inode(f"/proc/self/ns/{name}"), kind

    # 5. `exec myredis redis-cli ping` prints PONG; set and get a key.
    assert assert_ok(wait_for_pong(engine, NAME)) == "PONG\n"
    assert assert_ok(engine.cli_run("exec", NAME, "redis-cli", "set", "k", "v")) == "OK\n"
    assert assert_ok(engine.cli_run("exec", NAME, "redis-cli", "get", "k")) == "v\n"

    # 6. Writes through exec, and redis's own dump, land in the upper dir only.
    assert_ok(engine.cli_run("exec", NAME, "sh", "-c", "echo hi > /data/x"))
    assert assert_ok(engine.cli_run("exec", NAME, "cat", "/data/x")) == "hi\n"
    assert assert_ok(engine.cli_run("exec", NAME, "redis-cli", "save")) == "OK\n"
    graph = obj["GraphDriver"]["Data"]
    upper = Path(graph["UpperDir"])
    lowers = [Path(p) for p in graph["LowerDir"].split(":") if p]
    assert upper.is_dir() and lowers, graph
    assert (upper / "data/x").read_text() == "hi\n"
    dump = upper / "data/dump.rdb"
    assert dump.read_bytes().startswith(b"REDIS"), dump
    assert dump.stat().st_uid == redis_image.REDIS_UID
    for lower in lowers:
        assert lower.is_dir(), lower
        assert not (lower / "data/x").exists() and not (lower / "data/dump.rdb").exists(), lower

    # 7. `logs myredis` shows redis's startup lines.
    logs = wait_for(
        "the ready line in the logs",
        lambda: (
            (r := engine.cli_run("logs", NAME)).returncode == 0
            and redis_image.READY_LINE in r.stdout
            and r
        ),
    )
    assert "Redis version=" in logs.stdout, logs
    assert "Server initialized" in logs.stdout, logs

    # 8. `stop myredis`: SIGTERM, redis saves and exits 0.
    res = engine.cli_run("stop", NAME, timeout=30)
    assert assert_ok(res) == NAME + "\n"
    assert ctrkit.wait_gone([pid]) == []
    state = assert_ok(
        engine.cli_run("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", NAME)
    ).split()
    assert state == ["exited", "0"], state
    assert "ready to exit, bye bye" in assert_ok(engine.cli_run("logs", NAME))
    ps_a = assert_ok(engine.cli_run("ps", "-a"))
    assert re.search(r"Exited \(0\) .*" + NAME, ps_a), ps_a
    assert NAME not in assert_ok(engine.cli_run("ps"))

    # 9. `rm myredis`: nothing left (the leak guard checks processes and mounts).
    assert assert_ok(engine.cli_run("rm", NAME)) == NAME + "\n"
    assert engine.container_dirs() == []
    assert NAME not in assert_ok(engine.cli_run("ps", "-a"))
    assert not upper.exists()


def test_exec_it_shell_in_myredis_through_a_pty(redis: Engine, myredis: str) -> None:
    child = spawn_pty(redis, redis.argv("exec", "-it", NAME, "/bin/sh"))
    child.expect(PROMPT)
    child.sendline("id -u; redis-cli ping; tty")
    child.expect(rb"999" + NL)
    child.expect(rb"PONG" + NL)
    child.expect(rb"/dev/pts/\d+" + NL)
    child.expect(PROMPT)
    child.sendline("exit 7")
    assert close_pty(child) == 7
    # The shell is gone, the server is not.
    assert assert_ok(redis.cli_run("exec", NAME, "redis-cli", "ping")) == "PONG\n"


def test_exec_it_redis_cli_prompt_through_a_pty(redis: Engine, myredis: str) -> None:
    # redis-cli edits lines itself (linenoise, raw mode): Enter is a carriage return.
    child = spawn_pty(redis, redis.argv("exec", "-it", NAME, "redis-cli"))
    child.expect(rb"127\.0\.0\.1:6379> ")
    child.send("set greeting hello\r")
    child.expect(rb"OK" + NL)
    child.expect(rb"127\.0\.0\.1:6379> ")
    child.send("get greeting\r")
    child.expect(rb'"hello"' + NL)
    child.expect(rb"127\.0\.0\.1:6379> ")
    child.send("quit\r")
    assert close_pty(child) == 0
    assert assert_ok(redis.cli_run("exec", NAME, "redis-cli", "get", "greeting")) == "hello\n"


def test_run_d_name_already_in_use_is_refused_and_the_first_keeps_running(
    redis: Engine, myredis: str
) -> None:
    res = redis.cli_run("run", "-d", "--name", NAME, "redis")
    ctrkit.assert_engine_error(res, 125, NAME, "already in use")
    assert redis.container_dirs() == [myredis]
    assert assert_ok(redis.cli_run("exec", NAME, "redis-cli", "ping")) == "PONG\n"


def test_rm_f_of_running_myredis_leaves_nothing(redis: Engine, myredis: str) -> None:
    pid = int(assert_ok(redis.cli_run("inspect", "-f", "{{.State.Pid}}", NAME)))
    assert assert_ok(redis.cli_run("rm", "-f", NAME)) == NAME + "\n"
    assert ctrkit.wait_gone([pid]) == []
    assert redis.container_dirs() == []
    res = redis.cli_run("exec", NAME, "redis-cli", "ping")
    ctrkit.assert_engine_error(res, 1, "No such container", NAME)
