"""The docker-py-style API (``pyctr_fast.from_env()``): real containers on the
busybox ``rootfs`` fixture and images pulled from the loopback registry.

Every test that makes containers uses the ``client`` fixture, whose
finalizer force-removes whatever is left in its root, so the leak guard
stays strict even when a test fails half-way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyctr_fast
import pytest
from conftest_registry import Pushed
from pyctr_fast.client import Container, ContainerError, DockerClient, ExecResult
from pyctr_fast.client_options import (
    build_options,
    env_entries,
    parse_bytes,
    restart_spec,
    volume_specs,
)
from pyctr_fast.errors import APIError, ImageNotFound, NotFound, UserError, WaitTimeout

pytestmark = pytest.mark.timeout(120)

RFC3339 = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z $")


# --------------------------------------------------------------------------- fixtures


def _remove_everything(client: DockerClient) -> None:
    cdir = Path(client.root) / "containers"
    ids = sorted(os.listdir(cdir)) if cdir.is_dir() else []
    for cid in ids:
        try:
            client.containers.get(cid).remove(force=True)
        except NotFound:
            pass
        except Exception as err:  # report, and let the leak guard judge the rest
            print(f"cleanup: cannot remove {cid}: {err}", file=sys.stderr)


@pytest.fixture
def client(root: Path, integration_ready: None) -> Iterator[DockerClient]:
    c = pyctr_fast.from_env(str(root))
    yield c
    _remove_everything(c)


Run = Callable[..., Any]


@pytest.fixture
def run(client: DockerClient, rootfs: Path) -> Run:
    """``client.containers.run`` on the busybox rootfs."""

    def go(command: Any, **kw: Any) -> Any:
        return client.containers.run(None, command, rootfs=str(rootfs), **kw)

    return go


def _until(what: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _container_dirs(client: DockerClient) -> list[str]:
    cdir = Path(client.root) / "containers"
    return sorted(os.listdir(cdir)) if cdir.is_dir() else []


# --------------------------------------------------------------------------- options (pure)


def test_parse_bytes_understands_docker_py_units() -> None:
    assert parse_bytes(4096) == 4096
    assert parse_bytes("512m") == 512 * 1024**2
    assert parse_bytes("1G") == 1024**3
    assert parse_bytes("100kb") == 100 * 1024
    assert parse_bytes("1.5g") == int(1.5 * 1024**3)
    for bad in ("", "lots", "-1m"):
        with pytest.raises(APIError):
            parse_bytes(bad)


def test_volumes_environment_and_restart_policy_take_docker_py_shapes() -> None:
    assert volume_specs({"/h": {"bind": "/c", "mode": "ro"}, "/x": "/y"}) == [
        "/h:/c:ro",
        "/x:/y:rw",
    ]
    assert volume_specs({"/h": {"bind": "/c", "ro": True}}) == ["/h:/c:ro"]
    assert volume_specs(["/a:/b:ro"]) == ["/a:/b:ro"]
    with pytest.raises(TypeError):
        volume_specs("/a:/b")
    assert env_entries({"A": "1", "B": None}) == ["A=1", "B"]
    assert env_entries(["A=1"]) == ["A=1"]
    assert restart_spec({"Name": "on-failure", "MaximumRetryCount": 3}) == "on-failure:3"
    assert restart_spec({"Name": "always"}) == "always"
    assert restart_spec(None) is None


def test_command_strings_are_split_like_docker_py_and_a_list_entrypoint_prefixes_it() -> None:
    opts, _ = build_options("run", "img", "echo 'a b' c", {})
    assert opts.command == ("echo", "a b", "c")
    opts, _ = build_options("run", "img", ["x"], {"entrypoint": ["/bin/sh", "-c"]})
    assert (opts.entrypoint, opts.command) == ("/bin/sh", ("-c", "x"))
    opts, _ = build_options("run", "img", None, {"entrypoint": ""})
    assert opts.entrypoint == ""


def test_unknown_and_unsupported_keywords_raise_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        build_options("run", "img", None, {"bogus": 1})
    with pytest.raises(TypeError, match="'sysctls' is not supported"):
        build_options("run", "img", None, {"sysctls": {"net.ipv4.ip_forward": "1"}})
    with pytest.raises(TypeError, match="image or a rootfs"):
        build_options("run", None, None, {})


def test_ports_become_publish_specs() -> None:
    ports = {"80/tcp": 8080, "53/udp": ("127.0.0.1", 5353), "90": None, 91: [8081, 8082]}
    opts, _ = build_options("run", "img", None, {"ports": ports, "network_mode": "bridge"})
    assert opts.publish == (
        "8080:80/tcp",
        "127.0.0.1:5353:53/udp",
        "90/tcp",
        "8081:91/tcp",
        "8082:91/tcp",
    )
    assert opts.network == "bridge"


def test_from_env_honours_the_root_argument_then_pyctr_root(tmp_path: Path) -> None:
    assert pyctr_fast.from_env(str(tmp_path / "a")).root == str(tmp_path / "a")
    env = {"PYCTR_ROOT": str(tmp_path / "b")}
    assert pyctr_fast.from_env(environment=env).root == str(tmp_path / "b")
    assert pyctr_fast.from_env(environment={}).root == "/var/lib/pyctr-fast"
    assert not (tmp_path / "a").exists()  # a client touches nothing on disk


def test_import_pyctr_fast_stays_lazy_until_from_env_is_used() -> None:
    code = (
        "import sys, pyctr_fast\n"
        "before = sorted(m for m in sys.modules if m.startswith('pyctr'))\n"
        "pyctr_fast.from_env('/nonexistent-root')\n"
        "print(before, 'pyctr_fast.client' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "['pyctr_fast'] True"


def test_error_classes_are_docker_py_shaped_and_distinct_from_the_native_error() -> None:
    assert issubclass(ImageNotFound, NotFound) and issubclass(NotFound, APIError)
    assert issubclass(APIError, UserError) and issubclass(ContainerError, UserError)
    assert issubclass(WaitTimeout, TimeoutError)
    assert pyctr_fast.client.ContainerError is not pyctr_fast.ContainerError
    err = ContainerError(None, 3, ["false"], "busybox", b"bad\n")
    assert (err.exit_status, err.stderr, err.exit_code) == (3, b"bad\n", 3)
    assert (
        str(err)
        == "Command '['false']' in image 'busybox' returned non-zero exit status 3: b'bad\\n'"
    )


# --------------------------------------------------------------------------- run


def test_run_returns_stdout_and_keeps_the_exited_container(run: Run, client: DockerClient) -> None:
    out = run(["sh", "-c", "echo out; echo err >&2"])
    assert out == b"out\n"
    [c] = client.containers.list(all=True)
    assert c.status == "exited"
    assert c.attrs["State"]["ExitCode"] == 0
    assert client.containers.list() == []  # not running


def test_run_with_stderr_returns_both_streams(run: Run) -> None:
    out = run(["sh", "-c", "echo out; echo err >&2"], stderr=True, remove=True)
    assert sorted(out.splitlines()) == [b"err", b"out"]
    assert run(["sh", "-c", "echo err >&2"], stdout=False, stderr=True, remove=True) == b"err\n"


def test_run_with_remove_leaves_no_container(run: Run, client: DockerClient) -> None:
    assert run(["echo", "hi"], remove=True) == b"hi\n"
    assert client.containers.list(all=True) == []
    assert _container_dirs(client) == []


def test_run_stream_returns_an_iterator_of_the_output(run: Run) -> None:
    out = run(["sh", "-c", "echo a; echo b"], stream=True, remove=True)
    assert not isinstance(out, bytes)
    assert b"".join(out) == b"a\nb\n"


def test_nonzero_exit_raises_container_error_with_status_and_stderr(
    run: Run, client: DockerClient
) -> None:
    cmd = ["sh", "-c", "echo partial; echo bad >&2; exit 3"]
    with pytest.raises(ContainerError) as info:
        run(cmd, remove=True)
    err = info.value
    assert err.exit_status == 3
    assert err.stderr == b"bad\n"
    assert err.command == cmd
    assert isinstance(err.container, Container) and len(err.container.id) == 64
    assert not isinstance(err, pyctr_fast.ContainerError)
    assert _container_dirs(client) == []  # remove=True also after a failure


def test_nonzero_exit_without_remove_keeps_the_container_for_inspection(
    run: Run, client: DockerClient
) -> None:
    with pytest.raises(ContainerError) as info:
        run(["sh", "-c", "exit 7"])
    c = client.containers.get(info.value.container.id)
    assert (c.status, c.attrs["State"]["ExitCode"]) == ("exited", 7)


def test_a_command_that_cannot_start_raises_api_error_and_remove_cleans_up(
    run: Run, client: DockerClient
) -> None:
    with pytest.raises(APIError, match="nope"):
        run(["/no/such/nope"], remove=True)
    assert _container_dirs(client) == []


def test_detached_run_returns_a_running_container(run: Run, client: DockerClient) -> None:
    c = run(["sleep", "1000"], detach=True, name="sleeper")
    assert isinstance(c, Container)
    assert re.fullmatch("[0-9a-f]{64}", c.id) and c.short_id == c.id[:12]
    assert (c.name, c.status) == ("sleeper", "running")
    pid = c.attrs["State"]["Pid"]
    assert pid > 0 and Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0")
    assert c.image is None  # a rootfs container has no image
    assert [x.id for x in client.containers.list()] == [c.id]


def test_detached_run_with_remove_removes_itself_when_it_exits(
    run: Run, client: DockerClient
) -> None:
    c = run(["sh", "-c", "sleep 0.2"], detach=True, remove=True)
    assert c.attrs["HostConfig"]["AutoRemove"] is True
    _until(lambda: _container_dirs(client) == [])
    with pytest.raises(NotFound):
        c.reload()


# --------------------------------------------------------------------------- logs


def test_logs_split_streams_tail_and_timestamps(run: Run) -> None:
    # The pause orders the records: stdout and stderr are separate pipes.
    c = run(["sh", "-c", "echo one; echo two >&2; sleep 0.2; echo three; sleep 1000"], detach=True)
    _until(lambda: b"three" in c.logs())
    assert c.logs(stderr=False) == b"one\nthree\n"
    assert c.logs(stdout=False) == b"two\n"
    assert c.logs(tail=1) == b"three\n"  # counted over both streams, as docker does
    stamped = c.logs(stderr=False, timestamps=True).splitlines(keepends=True)
    assert [line[31:] for line in stamped] == [b"one\n", b"three\n"]
    assert all(RFC3339.match(line[:31]) for line in stamped), stamped
    chunks = c.logs(stream=True, follow=False)
    assert sorted(b"".join(chunks).splitlines()) == [b"one", b"three", b"two"]


def test_streamed_logs_follow_until_the_container_exits(run: Run) -> None:
    c = run(["sh", "-c", "echo a; sleep 1; echo b"], detach=True)
    assert b"".join(c.logs(stream=True)) == b"a\nb\n"
    assert c.wait() == {"StatusCode": 0, "Error": None}


# --------------------------------------------------------------------------- exec


@pytest.fixture
def sleeper(run: Run) -> Container:
    c = run(["sleep", "1000"], detach=True)
    assert isinstance(c, Container)
    return c


def test_exec_run_returns_exit_code_and_output(sleeper: Container) -> None:
    res = sleeper.exec_run(["sh", "-c", "echo hi; echo oops >&2; exit 5"])
    assert isinstance(res, ExecResult)
    assert res.exit_code == 5
    assert sorted(res.output.splitlines()) == [b"hi", b"oops"]
    res = sleeper.exec_run("sh -c 'echo hi; echo oops >&2'", demux=True)
    assert res == (0, (b"hi\n", b"oops\n"))
    assert sleeper.exec_run("sh -c 'echo hi; echo oops >&2'", stdout=False).output == b"oops\n"


def test_exec_run_honours_environment_workdir_and_user(sleeper: Container) -> None:
    res = sleeper.exec_run(
        ["sh", "-c", 'echo "$A $(pwd) $(id -u)"'],
        environment={"A": "from-api"},
        workdir="/tmp",
        user="alice",
    )
    assert res == (0, b"from-api /tmp 1000\n")


def test_exec_run_of_a_missing_command_gives_127(sleeper: Container) -> None:
    res = sleeper.exec_run("/no/such/cmd")
    assert res.exit_code == 127
    assert b"/no/such/cmd" in res.output


def test_exec_run_stream_and_detach(sleeper: Container) -> None:
    res = sleeper.exec_run(["sh", "-c", "echo a; sleep 0.2; echo b"], stream=True)
    assert res.exit_code is None
    assert b"".join(res.output) == b"a\nb\n"
    assert sleeper.exec_run(["sh", "-c", "echo x > /tmp/flag"], detach=True) == (None, b"")
    _until(lambda: sleeper.exec_run(["cat", "/tmp/flag"]).output == b"x\n")


def test_an_abandoned_exec_stream_closes_its_pipes_and_ends_the_program(
    sleeper: Container,
) -> None:
    import gc

    def pipes() -> set[str]:
        out = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue  # the listing's own descriptor
            if target.startswith("pipe:"):
                out.add(target)
        return out

    before = pipes()
    res = sleeper.exec_run(["sh", "-c", "yes | head -c 4000000"], stream=True)
    assert pipes() - before  # the output pipe is open while the stream exists
    del res  # never read: the program must not stay blocked on a full pipe
    gc.collect()
    _until(lambda: pipes() <= before)
    _until(lambda: b"yes" not in sleeper.exec_run("ps -o args").output)


def test_exec_into_a_stopped_container_raises_api_error(run: Run) -> None:
    c = run(["true"], detach=True)
    c.wait()
    with pytest.raises(APIError, match="is not running"):
        c.exec_run("true")
    with pytest.raises(APIError, match="is not running"):
        c.exec_run("true", stream=True)


# --------------------------------------------------------------------------- stop/kill/wait/rm


def test_stop_honours_the_stop_signal_then_wait_reports_the_status(run: Run) -> None:
    script = 'trap "exit 3" TERM; echo ready; while :; do sleep 0.05; done'
    c = run(["sh", "-c", script], detach=True)
    _until(lambda: c.logs() == b"ready\n")
    c.stop(timeout=10)
    assert c.status == "exited"
    assert c.wait() == {"StatusCode": 3, "Error": None}


def test_stop_kills_after_the_grace_period_a_process_ignoring_sigterm(sleeper: Container) -> None:
    started = time.monotonic()
    sleeper.stop(timeout=1)  # sleep as PID 1 ignores SIGTERM
    assert time.monotonic() - started >= 0.9
    assert sleeper.wait()["StatusCode"] == 137
    sleeper.stop()  # stopping a stopped container is not an error


def test_kill_sends_sigkill_or_the_named_signal(run: Run, sleeper: Container) -> None:
    sleeper.kill()
    assert sleeper.wait()["StatusCode"] == 137
    c = run(
        ["sh", "-c", 'trap "exit 4" USR1; echo ready; while :; do sleep 0.05; done'], detach=True
    )
    _until(lambda: c.logs() == b"ready\n")
    c.kill("SIGUSR1")
    assert c.wait()["StatusCode"] == 4
    with pytest.raises(APIError, match="is not running"):
        c.kill()


def test_wait_with_a_timeout_raises_while_the_container_runs(sleeper: Container) -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        sleeper.wait(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 5
    assert sleeper.status == "running"


def test_remove_of_a_running_container_needs_force(
    client: DockerClient, sleeper: Container
) -> None:
    with pytest.raises(APIError, match="cannot remove a running container"):
        sleeper.remove()
    sleeper.reload()
    assert sleeper.status == "running"
    sleeper.remove(force=True)
    with pytest.raises(NotFound):
        client.containers.get(sleeper.id)
    assert _container_dirs(client) == []


# --------------------------------------------------------------------------- get/list/create


def test_get_by_name_id_and_prefix_and_not_found(client: DockerClient, run: Run) -> None:
    c = run(["sleep", "1000"], detach=True, name="findme")
    assert client.containers.get("findme") == c
    assert client.containers.get(c.id).name == "findme"
    assert client.containers.get(c.id[:7]).id == c.id
    with pytest.raises(APIError, match="already in use"):
        run(["true"], name="findme")
    assert _container_dirs(client) == [c.id]  # the refused create left nothing
    with pytest.raises(NotFound, match="No such container: nothing-here") as info:
        client.containers.get("nothing-here")
    assert isinstance(info.value, APIError)


def test_list_shows_running_ones_by_default_and_filters(client: DockerClient, run: Run) -> None:
    web = run(["sleep", "1000"], detach=True, name="web1", labels={"role": "web"})
    with pytest.raises(ContainerError):
        run(["sh", "-c", "exit 2"], name="db1", labels=["db"])
    db = client.containers.get("db1")
    assert web.labels == {"role": "web"} and db.labels == {"db": ""}
    assert [c.name for c in client.containers.list()] == ["web1"]
    assert {c.name for c in client.containers.list(all=True)} == {"web1", "db1"}
    assert client.containers.list(filters={"status": "exited"}) == [db]
    assert client.containers.list(all=True, filters={"label": "role=web"}) == [web]
    assert client.containers.list(all=True, filters={"label": ["db"]}) == [db]
    assert client.containers.list(all=True, filters={"exited": 2}) == [db]
    assert client.containers.list(all=True, filters={"name": "web"}) == [web]
    assert client.containers.list(limit=1) == [db]  # the newest, running or not


def test_create_records_the_settings_and_start_runs_it(client: DockerClient, rootfs: Path) -> None:
    c = client.containers.create(
        None,
        ["sh", "-c", 'echo "$X"; sleep 1000'],
        rootfs=str(rootfs),
        name="made",
        environment={"X": "from-create"},
        labels={"k": "v"},
        mem_limit="64m",
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 2},
        hostname="box",
    )
    assert (c.status, c.name, c.labels) == ("created", "made", {"k": "v"})
    assert c.attrs["HostConfig"]["Memory"] == 64 * 1024**2
    assert c.attrs["HostConfig"]["MemorySwap"] == 128 * 1024**2  # Docker: twice the memory
    assert c.attrs["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert "X=from-create" in c.attrs["Config"]["Env"]
    c.start()
    assert c.status == "running"
    _until(lambda: c.logs() == b"from-create\n")
    assert c.exec_run("hostname").output == b"box\n"
    # mem_limit is enforced: the container's cgroup holds it.
    limit = c.exec_run("cat /sys/fs/cgroup/memory/memory.limit_in_bytes").output
    assert limit == b"%d\n" % (64 * 1024**2)


def test_pause_unpause_and_rename(client: DockerClient, sleeper: Container) -> None:
    sleeper.pause()
    assert sleeper.status == "paused"
    with pytest.raises(APIError, match="paused"):
        sleeper.exec_run("true")
    sleeper.unpause()
    assert sleeper.status == "running"
    sleeper.rename("renamed")
    assert sleeper.name == "renamed"
    assert client.containers.get("renamed") == sleeper


def test_prune_removes_the_stopped_containers_only(
    client: DockerClient, run: Run, sleeper: Container
) -> None:
    run(["true"])
    done = client.containers.list(filters={"status": "exited"})
    assert len(done) == 1
    result = client.containers.prune()
    assert result["ContainersDeleted"] == [done[0].id]
    assert client.containers.list(all=True) == [sleeper]


def test_volumes_dict_binds_a_host_directory_read_only(run: Run, tmp_path: Path) -> None:
    host = tmp_path / "shared"
    host.mkdir()
    (host / "f").write_text("content\n")
    out = run(
        ["sh", "-c", "cat /data/f; touch /data/g 2>/dev/null || echo read-only"],
        volumes={str(host): {"bind": "/data", "mode": "ro"}},
        remove=True,
    )
    assert out == b"content\nread-only\n"
    assert not (host / "g").exists()


def test_top_lists_the_container_processes(sleeper: Container) -> None:
    top = sleeper.top()
    assert "PID" in top["Titles"]
    pid_col = top["Titles"].index("PID")
    assert [row[pid_col] for row in top["Processes"]] == [str(sleeper.attrs["State"]["Pid"])]


def _tar(name: str, body: bytes, uid: int = 0) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid = len(body), 0o640, uid
        tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _untar(data: bytes, name: str) -> bytes:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def test_put_archive_and_get_archive_stay_inside_the_container(sleeper: Container) -> None:
    assert sleeper.put_archive("/tmp", _tar("hello.txt", b"hi there\n", uid=1000)) is True
    assert sleeper.exec_run("stat -c '%u %a' /tmp/hello.txt").output == b"1000 640\n"
    chunks, stat = sleeper.get_archive("/tmp/hello.txt")
    assert _untar(b"".join(chunks), "hello.txt") == b"hi there\n"
    assert (stat["name"], stat["size"], stat["mode"]) == ("hello.txt", 9, 0o640)
    # A symlink to / inside the container leads to the container's root, not the host's.
    assert sleeper.exec_run("ln -s / /tmp/up").exit_code == 0
    chunks, _ = sleeper.get_archive("/tmp/up/etc/passwd")
    assert _untar(b"".join(chunks), "passwd") == sleeper.exec_run("cat /etc/passwd").output
    with pytest.raises(NotFound):
        sleeper.get_archive("/no/such/path")


def test_exec_run_with_a_tty_is_refused_until_the_pty_can_be_captured(
    sleeper: Container,
) -> None:
    with pytest.raises(APIError, match="tty"):
        sleeper.exec_run("true", tty=True)


# --------------------------------------------------------------------------- images


def test_images_pull_list_get_run_and_remove(client: DockerClient, pushed: Pushed) -> None:
    name = f"{pushed.registry.host}/test/busybox:oci"
    image = client.images.pull(f"{pushed.registry.host}/test/busybox", tag="oci")
    assert image.tags == [name]
    assert image.short_id == image.id[:19] and image.id.startswith("sha256:")
    assert client.images.get(name) == image
    assert client.images.get(image.id[7:19]) == image
    assert client.images.list() == [image]
    assert client.images.list(name=f"{pushed.registry.host}/test/busybox") == [image]
    assert client.images.list(name="nothing/like/this") == []
    assert image.attrs["RootFS"]["Layers"]

    out = client.containers.run(name, ["/bin/busybox", "cat", "/hello.txt"], remove=True)
    assert out == b"hello from layer 2\n"
    c = client.containers.run(image, ["/bin/busybox", "sleep", "1000"], detach=True)
    assert c.image == image
    with pytest.raises(APIError, match="is using its referenced image"):
        client.images.remove(name)
    c.remove(force=True)

    removed = client.images.remove(name)
    assert {"Untagged": name} in removed and {"Deleted": image.id} in removed
    with pytest.raises(ImageNotFound):
        client.images.get(name)
    with pytest.raises(ImageNotFound):
        client.images.remove(name)
    # run pulls a missing image, quietly, as docker-py does
    assert client.containers.run(name, ["/bin/busybox", "echo", "again"], remove=True) == b"again\n"
    assert client.images.get(name).id == image.id


def test_create_does_not_pull_a_missing_image(client: DockerClient) -> None:
    with pytest.raises(ImageNotFound):
        client.containers.create("127.0.0.1:9/not/here:1", ["true"])
    assert _container_dirs(client) == []
