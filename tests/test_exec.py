"""``pyctr-fast exec``: joining a running container (namespaces, cgroups,
capabilities, user, env, cwd), exit statuses, terminals, detached processes,
refusals, and the CVE-2019-5736 rule (no host binary runs in the container).

The container under test is started with the foreground ``run --rm`` path;
the record ``exec`` resolves (``container.json``, ``state.json``,
``config.json``, ``launch.json``, a held ``supervisor.lock``) is written by
the fixture, as a supervisor would.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ctrkit import (
    DOCKER_PATH,
    HOST_ONLY_VAR,
    Engine,
    Result,
    assert_engine_error,
    assert_ok,
    close_pty,
    kill_pid,
    parse_env,
    parse_status,
    read_line,
    spawn_pty,
    wait_gone,
)

pytestmark = pytest.mark.timeout(90)

FREEZER = Path("/sys/fs/cgroup/freezer")
UNIFIED = Path("/sys/fs/cgroup/unified")  # this VM's (hybrid) cgroup2 hierarchy
NS_KINDS = ("cgroup", "ipc", "mnt", "net", "pid", "uts", "user", "time")
CAP_LINES = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


# --------------------------------------------------------------------------- fixtures


@dataclass
class Ctr:
    """A running container and the record ``exec`` finds it by."""

    id: str
    name: str
    pid: int
    dir: Path
    config: dict[str, Any]

    def write_launch(self, **fields: Any) -> None:
        (self.dir / "launch.json").write_text(json.dumps({"id": self.id, **fields}))


@dataclass
class Containers:
    engine: Engine
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    records: list[Path] = field(default_factory=list)
    locks: list[int] = field(default_factory=list)

    def start(self, *, opts: list[str] | tuple[str, ...] = (), name: str | None = None) -> Ctr:
        """``run --rm OPTS sh -c 'sleep 1000'`` in the background, plus its record."""
        from pyctr_fast.cli import options_from_run_args
        from pyctr_fast.spec import build_spec

        marker = f"exec-test-{secrets.token_hex(6)}"
        cmd = ("sh", "-c", f"sleep 1000; : {marker}")
        before = set(self.engine.container_dirs())
        proc = self.engine.popen(*cmd, opts=opts)
        self.procs.append(proc)
        info = self.engine.wait_for_container(marker, proc=proc)
        self.pids.append(info.pid)
        ours = {p.name for p in self.records}
        real = [d for d in self.engine.container_dirs() if d not in before and d not in ours]
        assert len(real) == 1, real
        real_dir = self.engine.root / "containers" / real[0]
        if (real_dir / "config.json").is_file():
            config = json.loads((real_dir / "config.json").read_text())
        else:
            run_opts, _ = options_from_run_args(
                ["--rm", *opts, "--rootfs", str(self.engine.rootfs), *cmd]
            )
            assert run_opts is not None
            config = build_spec(run_opts, container_id=real[0], container_dir=str(real_dir))
        return self.record(config, pid=info.pid, name=name)

    def record(
        self,
        config: dict[str, Any],
        *,
        pid: int,
        name: str | None = None,
        status: str = "running",
        lock: bool = True,
        start_time: int | None = None,
    ) -> Ctr:
        from pyctr_fast import records
        from pyctr_fast.spec import new_container_id

        cid = new_container_id()
        name = name or f"exec-{cid[:8]}"
        cdir = self.engine.root / "containers" / cid
        cdir.mkdir(parents=True)
        self.records.append(cdir)
        (cdir / "config.json").write_text(json.dumps(config))
        created = records.now()
        (cdir / "container.json").write_text(
            json.dumps({"Id": cid, "Name": "/" + name, "Created": created})
        )
        state: dict[str, Any] = {"Status": status, "Pid": pid if status == "running" else 0}
        if status == "running":
            state["PidStartTime"] = (
                start_time if start_time is not None else records.pid_start_time(pid)
            )
            state["StartedAt"] = created
        else:
            state.update(ExitCode=0, StartedAt=created, FinishedAt=records.now())
        (cdir / "state.json").write_text(json.dumps(state))
        names = self.engine.root / "names"
        names.mkdir(exist_ok=True)
        os.symlink(cid, names / name)
        if lock:
            fd = os.open(cdir / "supervisor.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            self.locks.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        return Ctr(cid, name, pid, cdir, config)

    def cleanup(self) -> None:
        for pid in self.pids:
            kill_pid(pid)
        wait_gone(self.pids)
        for proc in self.procs:
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                pass  # the leak guard reports and kills it
        for fd in self.locks:
            os.close(fd)
        ids = {cdir.name for cdir in self.records}
        for cdir in self.records:
            for entry in cdir.iterdir():
                entry.unlink()
            cdir.rmdir()
        names = self.engine.root / "names"
        for link in names.iterdir() if names.is_dir() else ():
            if os.readlink(link) in ids:
                link.unlink()
        containers = self.engine.root / "containers"
        if containers.is_dir() and not any(containers.iterdir()):
            containers.rmdir()


@pytest.fixture
def containers(engine: Engine) -> Iterator[Containers]:
    made = Containers(engine)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def ctr(containers: Containers) -> Ctr:
    return containers.start()


@pytest.fixture
def freezer_cgroup() -> Iterator[Path]:
    """A throwaway v1 freezer cgroup (thawed, emptied and removed afterwards)."""
    if not FREEZER.is_dir():
        pytest.skip("the cgroup v1 freezer is not mounted")
    path = FREEZER / f"pyctr-fast-test-{secrets.token_hex(4)}"
    path.mkdir()
    try:
        yield path
    finally:
        _remove_cgroup(path)


@pytest.fixture
def v2_group() -> Iterator[Path]:
    """A throwaway cgroup v2 group (under a parent of its own), removed afterwards."""
    if not (UNIFIED / "cgroup.procs").is_file():
        pytest.skip("no cgroup2 hierarchy at /sys/fs/cgroup/unified")
    parent = UNIFIED / f"pyctr-fast-test-exec-{secrets.token_hex(4)}"
    group = parent / "ctr"
    group.mkdir(parents=True)
    try:
        yield group
    finally:
        for path in (group, parent):
            deadline = time.monotonic() + 10
            while path.is_dir():
                try:
                    path.rmdir()
                except OSError as err:
                    if err.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)


def _own_freezer_cgroup(pid: int | str = "self") -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, rel = line.split(":", 2)
        if "freezer" in controllers.split(","):
            return FREEZER / rel.lstrip("/")
    raise AssertionError("no freezer line in /proc/self/cgroup")


def _set_freezer(path: Path, state: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        (path / "freezer.state").write_text(state)
        if (path / "freezer.state").read_text().strip() == state:
            return
        assert time.monotonic() < deadline, f"{path} did not reach {state}"
        time.sleep(0.005)


def _remove_cgroup(path: Path) -> None:
    """Thaw, move every process back to our own freezer cgroup, rmdir (depth first)."""
    if not path.is_dir():
        return
    for child in [p for p in path.iterdir() if p.is_dir()]:
        _remove_cgroup(child)
    _set_freezer(path, "THAWED")
    home = _own_freezer_cgroup()
    deadline = time.monotonic() + 10
    while True:
        for pid in (path / "cgroup.procs").read_text().split():
            try:
                (home / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # gone meanwhile
        try:
            path.rmdir()
            return
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _processes_in_pid_ns(ns: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/ns/pid") == ns:
                found.append(int(entry))
        except OSError:
            pass
    return found


def ex(engine: Engine, *args: str, **kw: Any) -> Result:
    """``pyctr-fast --root ROOT exec ARGS...``"""
    return engine.cli_run("exec", *args, **kw)


def host_ns(pid: int) -> dict[str, str]:
    return {kind: os.readlink(f"/proc/{pid}/ns/{kind}") for kind in NS_KINDS}


def cap_lines(status_text: str) -> dict[str, str]:
    status = parse_status(status_text)
    return {k: status[k] for k in CAP_LINES}


# --------------------------------------------------------------------------- joining


def test_exec_joins_every_namespace_of_the_container(engine: Engine, ctr: Ctr) -> None:
    script = "for n in " + " ".join(NS_KINDS) + "; do echo $n $(readlink /proc/self/ns/$n); done"
    out = assert_ok(ex(engine, ctr.name, "sh", "-c", script))
    seen = dict(line.split(" ", 1) for line in out.splitlines())
    assert seen == host_ns(ctr.pid)
    # The container really has its own namespaces: joining them is observable.
    mine = host_ns(os.getpid())
    for kind in ("cgroup", "ipc", "mnt", "net", "pid", "uts"):
        assert seen[kind] != mine[kind], kind


def test_exec_sees_the_containers_processes_and_root(engine: Engine, ctr: Ctr) -> None:
    script = "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /"
    out = assert_ok(ex(engine, ctr.name, "sh", "-c", script))
    first, _, listing = out.partition("\n")
    assert first.startswith("sh -c sleep 1000"), out
    assert sorted(listing.split()) == sorted(os.listdir(engine.rootfs)), out


def test_exec_joins_the_cgroups_listed_in_launch_json(
    engine: Engine, ctr: Ctr, freezer_cgroup: Path
) -> None:
    def freezer_line() -> str:
        out = assert_ok(ex(engine, ctr.name, "cat", "/proc/self/cgroup"))
        return next(line for line in out.splitlines() if ":freezer:" in line)

    assert not freezer_line().endswith("/" + freezer_cgroup.name)
    ctr.write_launch(cgroup_procs=[str(freezer_cgroup / "cgroup.procs")])
    assert freezer_line().endswith("/" + freezer_cgroup.name)
    assert (freezer_cgroup / "cgroup.procs").read_text() == ""


def test_exec_into_a_missing_cgroup_fails_with_one_line_and_starts_nothing(
    engine: Engine, ctr: Ctr, tmp_path: Path
) -> None:
    flag = engine.rootfs / "tmp" / "ran"
    ctr.write_launch(cgroup_procs=[str(FREEZER / "pyctr-fast-test-gone" / "cgroup.procs")])
    res = ex(engine, ctr.name, "touch", "/tmp/ran")
    assert_engine_error(res, 126, "exec failed", "join cgroup")
    assert not flag.exists()


def test_exec_is_born_in_its_cgroup_v2_group_and_moves_itself_into_v1_ones(
    engine: Engine, ctr: Ctr, v2_group: Path, freezer_cgroup: Path
) -> None:
    # cgroup v2: clone3(CLONE_INTO_CGROUP); v1: the child writes 0 to the
    # group's tasks file.  No cgroup.procs write of a pid (which waits out an
    # RCU grace period) either way.
    ctr.write_launch(
        cgroup_procs=[str(v2_group / "cgroup.procs"), str(freezer_cgroup / "cgroup.procs")]
    )
    env = {**engine.base_env(), "PYCTR_TRACE": "1"}
    res = ex(engine, ctr.name, "cat", "/proc/self/cgroup", env=env)
    assert res.returncode == 0, res
    lines = res.stdout.splitlines()
    out = res.stdout
    assert any(line.startswith("0::/") and line.endswith("/ctr") for line in lines), out
    assert next(line for line in lines if ":freezer:" in line).endswith("/" + freezer_cgroup.name)
    assert "engine: cgroups joined (v2 by clone3, 1 v1 by the child, 0 written)" in res.stderr, (
        res.stderr
    )
    assert (v2_group / "cgroup.procs").read_text() == ""


def test_exec_into_a_missing_cgroup_v2_group_fails_with_one_line_and_starts_nothing(
    engine: Engine, ctr: Ctr, v2_group: Path
) -> None:
    flag = engine.rootfs / "tmp" / "ran"
    ctr.write_launch(cgroup_procs=[str(v2_group / "gone" / "cgroup.procs")])
    res = ex(engine, ctr.name, "touch", "/tmp/ran")
    assert_engine_error(res, 126, "exec failed", "join cgroup")
    assert not flag.exists()


# --------------------------------------------------------------------------- the process


def test_exec_has_the_containers_capabilities(
    engine: Engine, containers: Containers, caller_cap_bnd: int
) -> None:
    c = containers.start(opts=["--cap-drop", "ALL", "--cap-add", "CHOWN", "--cap-add", "KILL"])
    out = assert_ok(ex(engine, c.name, "cat", "/proc/self/status"))
    caps = cap_lines(out)
    assert caps == cap_lines(Path(f"/proc/{c.pid}/status").read_text())
    assert int(caps["CapEff"], 16) == (1 << 0) | (1 << 5)
    out = assert_ok(ex(engine, "--privileged", c.name, "cat", "/proc/self/status"))
    assert int(parse_status(out)["CapEff"], 16) == caller_cap_bnd
    assert int(parse_status(out)["CapBnd"], 16) == caller_cap_bnd


def test_exec_takes_no_new_privileges_from_the_container(
    engine: Engine, ctr: Ctr, containers: Containers
) -> None:
    def nnp(name: str) -> str:
        return parse_status(assert_ok(ex(engine, name, "cat", "/proc/self/status")))["NoNewPrivs"]

    assert nnp(ctr.name) == parse_status(Path(f"/proc/{ctr.pid}/status").read_text())["NoNewPrivs"]
    assert nnp(ctr.name) == "0"
    strict = dict(ctr.config, process=dict(ctr.config["process"], noNewPrivileges=True))
    other = containers.record(strict, pid=ctr.pid)
    assert nnp(other.name) == "1"


def test_exec_environment_is_the_containers_with_e_overrides(
    engine: Engine, containers: Containers
) -> None:
    c = containers.start(opts=["-e", "CTR=1", "-e", "SHARED=ctr", "-e", "GONE=x"])
    env = {**engine.base_env(), "FROMHOST": "host value"}
    out = assert_ok(
        ex(
            engine, "-e", "SHARED=exec", "-e", "FROMHOST", "-e", "GONE", "-e", HOST_ONLY_VAR + "X",
            c.name, "env", env=env,
        )
    )  # fmt: skip
    assert parse_env(out) == {
        "PATH": DOCKER_PATH,
        "HOSTNAME": c.config["hostname"],
        "CTR": "1",
        "SHARED": "exec",
        "FROMHOST": "host value",
        "HOME": "/root",
    }


def test_exec_env_file_and_tty_term(engine: Engine, ctr: Ctr, tmp_path: Path) -> None:
    env_file = tmp_path / "exec.env"
    env_file.write_text("# comment\nFROM_FILE=f\nBOTH=file\n")
    out = assert_ok(ex(engine, "--env-file", str(env_file), "-e", "BOTH=flag", ctr.name, "env"))
    env = parse_env(out)
    assert (env["FROM_FILE"], env["BOTH"]) == ("f", "flag")
    assert "TERM" not in env
    res = ex(engine, "-t", ctr.name, "sh", "-c", "echo TERM=$TERM")
    assert res.returncode == 0, res
    assert res.stdout.replace("\r", "") == "TERM=xterm\n"


def test_exec_user_defaults_to_the_containers_and_u_resolves_in_the_container(
    engine: Engine, containers: Containers
) -> None:
    c = containers.start(opts=["-u", "daemon"])

    def ids(*args: str) -> tuple[str, str, str, str]:
        out = assert_ok(ex(engine, *args, c.name, "sh", "-c", "cat /proc/self/status; env"))
        st = parse_status(out)
        return st["Uid"].split()[0], st["Gid"].split()[0], st["Groups"], parse_env(out)["HOME"]

    assert ids() == ("1", "1", "50", "/usr/sbin")
    assert ids("-u", "alice") == ("1000", "1000", "29 50", "/home/alice")
    assert ids("-u", "1000:staff") == ("1000", "50", "", "/home/alice")
    assert ids("--user", "4242") == ("4242", "0", "", "/")
    res = ex(engine, "-u", "nosuchuser", c.name, "true")
    assert_engine_error(res, 126, "exec failed", "unable to find user nosuchuser")


def test_exec_workdir_defaults_to_the_containers_and_w_overrides(
    engine: Engine, containers: Containers
) -> None:
    c = containers.start(opts=["-w", "/home"])
    assert assert_ok(ex(engine, c.name, "pwd")) == "/home\n"
    assert assert_ok(ex(engine, "-w", "/tmp/../var", c.name, "pwd")) == "/var\n"
    assert_engine_error(ex(engine, "-w", "/nonexistent", c.name, "pwd"), 126, "chdir")
    assert_engine_error(ex(engine, "-w", "rel", c.name, "pwd"), 125, "absolute path")


def test_exec_exit_status_and_output_are_the_programs(engine: Engine, ctr: Ctr) -> None:
    res = ex(engine, ctr.name, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (res.returncode, res.stdout, res.stderr) == (7, "out\n", "err\n"), res
    res = ex(engine, ctr.name, "sh", "-c", "kill -KILL $$")
    assert res.returncode == 128 + 9, res


def test_exec_missing_command_is_127_and_not_executable_is_126(engine: Engine, ctr: Ctr) -> None:
    assert_engine_error(ex(engine, ctr.name, "no-such-cmd"), 127, "exec failed", "no-such-cmd")
    res = ex(engine, ctr.name, "/usr/local/bin/not-executable")
    assert_engine_error(res, 126, "exec failed", "Permission denied")


def test_exec_stdin_is_relayed_only_with_i(engine: Engine, ctr: Ctr) -> None:
    assert assert_ok(ex(engine, "-i", ctr.name, "cat", input="piped\n")) == "piped\n"
    assert assert_ok(ex(engine, ctr.name, "cat", input="piped\n")) == ""


def test_exec_forwards_signals_to_the_process(engine: Engine, ctr: Ctr) -> None:
    proc = engine.tracker.add(
        subprocess.Popen(
            engine.argv("exec", ctr.name, "wait-for-signal", "TERM", "5"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=engine.base_env(),
            start_new_session=True,
        )
    )
    assert proc.stdout is not None
    assert read_line(proc.stdout, 15) == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert (proc.returncode, out, err) == (5, b"got-TERM\n", b"")


def test_exec_detached_returns_at_once_and_the_process_runs(engine: Engine, ctr: Ctr) -> None:
    flag = engine.rootfs / "tmp" / "detached"
    res = ex(engine, "-d", ctr.name, "sh", "-c", "sleep 2; echo done > /tmp/detached; echo lost")
    assert (res.returncode, res.stdout, res.stderr) == (0, "", ""), res
    assert res.seconds < 2, res
    assert not flag.exists()
    deadline = time.monotonic() + 15
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.05)
    assert flag.read_text() == "done\n"


# --------------------------------------------------------------------------- terminals


def test_exec_it_is_an_interactive_session_on_a_new_pty(engine: Engine, ctr: Ctr) -> None:
    child = spawn_pty(engine, engine.argv("exec", "-it", ctr.name, "sh"), (31, 97))
    child.expect(rb"/ # ")
    child.sendline("tty; stty size; echo TERM=$TERM; readlink /proc/$$/fd/0; exit 3")
    child.expect(rb"/dev/pts/\d+\r\n")
    child.expect(rb"31 97\r\n")
    child.expect(rb"TERM=xterm\r\n")
    child.expect(rb"/dev/pts/\d+\r\n")
    assert close_pty(child) == 3


# --------------------------------------------------------------------------- refusals


def test_exec_into_a_stopped_container_is_a_one_line_error(
    engine: Engine, ctr: Ctr, containers: Containers
) -> None:
    stopped = containers.record(ctr.config, pid=0, status="exited", lock=False)
    res = ex(engine, stopped.name, "touch", "/tmp/ran")
    assert_engine_error(res, 1, f"Container {stopped.id} is not running")
    # A record that still says running but whose process is gone (pid reused
    # or exited): refused as well, never joined.
    stale = containers.record(ctr.config, pid=ctr.pid, start_time=1)
    res = ex(engine, stale.name, "touch", "/tmp/ran")
    assert_engine_error(res, 1, f"Container {stale.id} is not running")
    assert not (engine.rootfs / "tmp" / "ran").exists()


def test_exec_into_a_paused_container_is_a_one_line_error(
    engine: Engine, ctr: Ctr, freezer_cgroup: Path
) -> None:
    # The container's cgroup as launch.json records it.
    group = freezer_cgroup / ctr.id
    group.mkdir()
    for pid in _processes_in_pid_ns(os.readlink(f"/proc/{ctr.pid}/ns/pid")):
        (group / "cgroup.procs").write_text(str(pid))
    _set_freezer(group, "FROZEN")
    ctr.write_launch(cgroup_dirs=[str(group)], cgroup_procs=[str(group / "cgroup.procs")])
    res = ex(engine, ctr.name, "true")
    assert_engine_error(res, 1, f"Container {ctr.id} is paused, unpause the container before exec")


def test_exec_reads_paused_from_the_freezer_of_launch_jsons_cgroup_dirs(
    engine: Engine, ctr: Ctr, freezer_cgroup: Path
) -> None:
    # launch.json records where the container's cgroup is (another
    # $PYCTR_CGROUP_PARENT at start): that freezer, not the planned one, says
    # whether it is paused.
    group = freezer_cgroup / "elsewhere"
    group.mkdir()
    for pid in _processes_in_pid_ns(os.readlink(f"/proc/{ctr.pid}/ns/pid")):
        (group / "cgroup.procs").write_text(str(pid))
    ctr.write_launch(cgroup_dirs=[str(group)], cgroup_procs=[str(group / "cgroup.procs")])
    assert_ok(ex(engine, ctr.name, "true"))
    _set_freezer(group, "FROZEN")
    res = ex(engine, ctr.name, "true")
    assert_engine_error(res, 1, f"Container {ctr.id} is paused, unpause the container before exec")


def test_exec_unknown_container_and_bad_usage(engine: Engine) -> None:
    assert_engine_error(ex(engine, "nosuchcontainer", "true"), 1, "No such container")
    assert_engine_error(ex(engine, "onlyname"), 125, "requires at least 2 arguments")
    assert_engine_error(ex(engine, "--bogus", "x", "true"), 125, "unknown flag: --bogus")
    res = ex(engine, "--help")
    assert res.returncode == 0 and "Usage:  pyctr-fast exec" in res.stdout, res


def test_exec_flags_stop_at_the_container_name(engine: Engine, ctr: Ctr) -> None:
    out = assert_ok(ex(engine, ctr.name, "echo", "-u", "x", "--privileged", "-t"))
    assert out == "-u x --privileged -t\n"


# --------------------------------------------------------------------------- CVE-2019-5736


def test_exec_program_is_the_containers_and_its_parent_is_not_visible(
    engine: Engine, ctr: Ctr
) -> None:
    out = assert_ok(
        ex(engine, ctr.name, "sh", "-c", "readlink /proc/self/exe; grep PPid /proc/$$/status")
    )
    assert out.split("\n")[:2] == ["/bin/busybox", "PPid:\t0"]


def test_exec_setup_runs_from_the_sealed_memfd_never_a_host_file(
    engine: Engine, ctr: Ctr, freezer_cgroup: Path
) -> None:
    """Catch the exec'd process mid-setup (frozen right after it was written
    into the container's cgroup) and look at what it runs: a sealed memfd
    that cannot be written, holding no descriptor of the host install."""
    import pyctr_fast

    install = str(Path(pyctr_fast.__file__).resolve().parent)
    ctr.write_launch(cgroup_procs=[str(freezer_cgroup / "cgroup.procs")])
    caught = None
    for _attempt in range(20):
        _set_freezer(freezer_cgroup, "FROZEN")
        proc = engine.tracker.add(
            subprocess.Popen(
                engine.argv("exec", ctr.name, "readlink", "/proc/self/exe"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=engine.base_env(),
                start_new_session=True,
            )
        )
        deadline = time.monotonic() + 10
        while not (pids := (freezer_cgroup / "cgroup.procs").read_text().split()):
            assert proc.poll() is None and time.monotonic() < deadline, "never joined the cgroup"
            time.sleep(0.005)
        (pid,) = pids
        # Step the process until it runs the init (it may have been frozen
        # before execveat, still a copy of the engine).
        for _step in range(200):
            exe = os.readlink(f"/proc/{pid}/exe")
            if exe != sys.executable and not exe.startswith(os.path.realpath(sys.executable)):
                break
            _set_freezer(freezer_cgroup, "THAWED")
            _set_freezer(freezer_cgroup, "FROZEN")
        if exe == "/memfd:pyctr-init (deleted)":
            fds = {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
            fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY)
            try:
                seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            finally:
                os.close(fd)
            with pytest.raises(OSError) as err:
                os.open(f"/proc/{pid}/exe", os.O_WRONLY)
            caught = (fds, seals, err.value.errno)
        _set_freezer(freezer_cgroup, "THAWED")
        out, errs = proc.communicate(timeout=15)
        assert (proc.returncode, out, errs) == (0, b"/bin/busybox\n", b""), errs
        # Mid-setup the process is either the engine's fork, the memfd init or
        # (stepped past setup) the program; never any other file.
        assert exe in ("/memfd:pyctr-init (deleted)",) or exe.endswith("/bin/busybox"), exe
        if caught:
            break
    assert caught is not None, "never caught the exec'd process while it ran pyctr-init"
    fds, seals, write_errno = caught
    assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL, hex(seals)
    assert write_errno in (errno.ETXTBSY, errno.EPERM), write_errno
    assert not [t for t in fds.values() if t.startswith(install)], fds


# --------------------------------------------------------------------------- the API


def test_exec_in_api_and_detached_process(engine: Engine, ctr: Ctr) -> None:
    code = f"""
from pyctr_fast.container_exec import exec_in
import os
r, w = os.pipe()
status = exec_in(ROOT, {ctr.name!r}, ["sh", "-c", "echo api-$0; exit 4", "x"], stdio=(0, w, 2))
os.close(w)
print(status, os.read(r, 100).decode().strip())
"""
    out = assert_ok(engine.api(code))
    assert out == "4 api-x\n"


def test_run_on_start_is_called_with_the_running_container_pid(
    engine: Engine, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    code = f"""
from pyctr_fast import _native, etcfiles, records
from pyctr_fast.cli import options_from_run_args
from pyctr_fast.spec import build_spec
import json, os
bundle = {str(bundle)!r}
os.mkdir(bundle)
seen = []
def on_start(pid):
    seen.append((pid, os.readlink(f"/proc/{{pid}}/exe"), records.pid_start_time(pid) is not None))
for cmd, hook in ((["sh", "-c", "sleep 0.3; exit 6"], on_start), (["sleep", "100"], None)):
    opts, _ = options_from_run_args(["--rootfs", ROOTFS, *cmd])
    spec = build_spec(opts, container_id="c" * 64, container_dir=bundle)
    if hook is not None:
        etcfiles.write_etc_files(bundle, spec["hostname"], "none")
        print(_native.run(json.dumps(spec), bundle, stdin=False, on_start=hook))
        print(seen[0][1].endswith("/bin/busybox"), seen[0][2])
    else:
        def boom(pid):
            seen.append(pid)
            raise KeyError("from on_start")
        try:
            _native.run(json.dumps(spec), bundle, stdin=False, on_start=boom)
        except KeyError as err:
            print("raised", err, os.path.exists(f"/proc/{{seen[-1]}}/status"))
"""
    t0 = time.monotonic()
    out = assert_ok(engine.api(code))
    assert out == "6\nTrue True\nraised 'from on_start' False\n"
    assert time.monotonic() - t0 < 30


def test_exec_leaves_nothing_when_the_container_is_gone(
    engine: Engine, containers: Containers, ctr: Ctr
) -> None:
    kill_pid(ctr.pid)
    assert wait_gone([ctr.pid]) == []
    res = ex(engine, ctr.name, "true")
    assert_engine_error(res, 1, "is not running")


# --------------------------------------------------------------------------- the spec


def test_exec_spec_gives_every_container_namespace_by_path_plus_pid() -> None:
    from pyctr_fast.container_exec import build_exec_spec

    config = {
        "ociVersion": "1.0.2",
        "root": {"path": "/some/rootfs", "readonly": True},
        "process": {
            "user": {"uid": 0, "gid": 0, "umask": 0o027},
            "env": ["PATH=/bin", "HOME=/root"],
            "cwd": "/srv",
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 64, "soft": 64}],
            "oomScoreAdj": 500,
            "noNewPrivileges": True,
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
        },
        "linux": {"namespaces": [{"type": "mount"}, {"type": "network"}, {"type": "uts"}]},
    }
    me = os.getpid()
    spec = build_exec_spec(config, me, ["ls", "-l"], environ={})
    assert spec["root"] == config["root"]
    assert spec["linux"] == {
        "namespaces": [
            {"type": "pid", "path": f"/proc/{me}/ns/pid"},
            {"type": "mount", "path": f"/proc/{me}/ns/mnt"},
            {"type": "network", "path": f"/proc/{me}/ns/net"},
            {"type": "uts", "path": f"/proc/{me}/ns/uts"},
        ]
    }
    proc = spec["process"]
    assert proc["args"] == ["ls", "-l"] and proc["cwd"] == "/srv" and proc["terminal"] is False
    assert proc["user"] == {"uid": 0, "gid": 0, "additionalGids": [], "umask": 0o027}
    assert proc["rlimits"] == config["process"]["rlimits"]  # type: ignore[index]
    assert (proc["oomScoreAdj"], proc["noNewPrivileges"]) == (500, True)
    assert proc["capabilities"] == config["process"]["capabilities"]  # type: ignore[index]
    assert proc["env"] == ["PATH=/bin", "HOME=/root"]
    tty = build_exec_spec(config, me, ["sh"], tty=True, privileged=True, environ={})
    assert tty["process"]["terminal"] is True and "TERM=xterm" in tty["process"]["env"]
    everything = tty["process"]["capabilities"]
    assert set(everything["bounding"]) == set(everything["effective"])
    assert set(everything["bounding"]) > {"CAP_KILL", "CAP_SYS_ADMIN"}
