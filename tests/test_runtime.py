"""pyctr-fast-runtime, the runc-compatible OCI runtime CLI, driven as a binary.

Each test gets a private ``--root`` and bundles over a private copy of the
busybox rootfs; every container is ``delete --force``d afterwards and the
leak guard checks that no process, mount or cgroup is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import Runtime, cgroup_dirs, one_error_line

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def rt(tmp_path: Path, cgroup_parent: str, integration_ready: None) -> Iterator[Runtime]:
    r = Runtime(tmp_path / "rt-root", tmp_path, cgroup_parent)
    try:
        yield r
    finally:
        r.cleanup()


def wait_for(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_create_blocks_before_the_program_and_start_releases_it(
    rt: Runtime, rootfs: Path, cgroup_parent: str
) -> None:
    bundle = rt.bundle("c1", rootfs, ["sh", "-c", "touch /started; exec sleep 100"])
    res = rt.create("c1", bundle)
    assert res.returncode == 0, res.stderr
    st = rt.state("c1")
    assert st["status"] == "created" and st["pid"] > 0
    assert st["bundle"] == str(bundle) and st["rootfs"] == str(rootfs) and st["id"] == "c1"
    assert Path(f"/proc/{st['pid']}").exists()
    time.sleep(0.2)
    assert not (rootfs / "started").exists(), "the program ran before start"
    assert (rt.root / "c1" / "exec.fifo").exists()
    # the init is already in the container's cgroup, with everything set up
    procs = (cgroup_dirs(f"{cgroup_parent}/c1")[0] / "cgroup.procs").read_text().split()
    assert str(st["pid"]) in procs

    rt("start", "c1", check=True)
    wait_for(lambda: (rootfs / "started").exists())
    assert rt.state("c1")["status"] == "running"
    assert not (rt.root / "c1" / "exec.fifo").exists()

    rt("kill", "c1", "KILL", check=True)
    st = rt.wait_status("c1", "stopped")
    assert st["pid"] == 0
    rt("delete", "c1", check=True)
    assert not (rt.root / "c1").exists()
    assert not any(d.exists() for d in cgroup_dirs(f"{cgroup_parent}/c1"))
    one_error_line(rt("state", "c1"), "container does not exist")


def test_pid_file_is_written_relative_to_the_cwd(rt: Runtime, rootfs: Path) -> None:
    bundle = rt.bundle("p1", rootfs)
    rt.create("p1", bundle, "--pid-file", "p1.pid", check=True)
    pid = int((rt.workdir / "p1.pid").read_text())
    assert pid == rt.state("p1")["pid"]
    assert not list(rt.workdir.glob("*.tmp"))


@pytest.mark.parametrize("signame", ["KILL", "SIGKILL", "9"])
def test_kill_takes_signal_names_with_or_without_sig_and_numbers(
    rt: Runtime, rootfs: Path, signame: str
) -> None:
    bundle = rt.bundle("k1", rootfs, ["sleep", "100"])
    rt.create("k1", bundle, check=True)
    rt("start", "k1", check=True)
    rt("kill", "k1", signame, check=True)
    rt.wait_status("k1", "stopped")
    one_error_line(rt("kill", "k1", "KILL"), "container not running")
    one_error_line(rt("kill", "k1", "NOSUCHSIG"), "unknown signal")


def test_default_kill_signal_is_term_and_user_signals_reach_the_program(
    rt: Runtime, rootfs: Path
) -> None:
    script = (
        "trap 'touch /got-usr1' USR1; trap 'exit 0' TERM; touch /ready; "
        "while :; do sleep 0.05; done"
    )
    bundle = rt.bundle("k2", rootfs, ["sh", "-c", script])
    rt.create("k2", bundle, check=True)
    rt("start", "k2", check=True)
    wait_for(lambda: (rootfs / "ready").exists())
    rt("kill", "k2", "USR1", check=True)
    wait_for(lambda: (rootfs / "got-usr1").exists())
    rt("kill", "k2", check=True)
    rt.wait_status("k2", "stopped")


def test_delete_of_a_created_container_fails_and_changes_nothing(
    rt: Runtime, rootfs: Path, cgroup_parent: str
) -> None:
    bundle = rt.bundle("d1", rootfs)
    rt.create("d1", bundle, check=True)
    before = rt.state("d1")
    one_error_line(rt("delete", "d1"), "not stopped", "created")
    assert rt.state("d1") == before
    assert (rt.root / "d1" / "exec.fifo").exists()
    assert all(d.is_dir() for d in cgroup_dirs(f"{cgroup_parent}/d1"))
    rt("delete", "--force", "d1", check=True)
    assert not (rt.root / "d1").exists()
    assert not Path(f"/proc/{before['pid']}/ns").exists() or not _alive(before["pid"])
    assert not any(d.exists() for d in cgroup_dirs(f"{cgroup_parent}/d1"))


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def test_delete_of_a_running_container_needs_force(rt: Runtime, rootfs: Path) -> None:
    bundle = rt.bundle("d2", rootfs)
    rt.create("d2", bundle, check=True)
    rt("start", "d2", check=True)
    one_error_line(rt("delete", "d2"), "not stopped", "running")
    assert rt.state("d2")["status"] == "running"
    pid = rt.state("d2")["pid"]
    rt("delete", "--force", "d2", check=True)
    assert not _alive(pid)
    assert not (rt.root / "d2").exists()


def test_unknown_capability_is_an_error_at_create(
    rt: Runtime, rootfs: Path, cgroup_parent: str
) -> None:
    def edit(c: dict[str, Any]) -> None:
        c["process"]["capabilities"]["bounding"].append("CAP_NO_SUCH_THING")

    bundle = rt.bundle("cap1", rootfs, edit=edit)
    one_error_line(rt.create("cap1", bundle), "process.capabilities.bounding", "CAP_NO_SUCH_THING")
    assert not (rt.root / "cap1").exists()
    assert not any(d.exists() for d in cgroup_dirs(f"{cgroup_parent}/cap1"))


def test_the_executable_is_looked_up_at_start_not_create(rt: Runtime, rootfs: Path) -> None:
    bundle = rt.bundle("x1", rootfs, ["/no/such/program"])
    rt.create("x1", bundle, check=True)
    assert rt.state("x1")["status"] == "created"
    one_error_line(rt("start", "x1"), "/no/such/program")
    rt.wait_status("x1", "stopped")
    rt("delete", "x1", check=True)


def test_create_without_process_succeeds_and_start_fails(rt: Runtime, rootfs: Path) -> None:
    bundle = rt.bundle("np", rootfs, edit=lambda c: c.pop("process"))
    rt.create("np", bundle, check=True)
    assert rt.state("np")["status"] == "created"
    one_error_line(rt("start", "np"), "no process")
    rt.wait_status("np", "stopped")
    rt("delete", "np", check=True)


def test_start_twice_and_start_of_a_stopped_container_fail(rt: Runtime, rootfs: Path) -> None:
    bundle = rt.bundle("s2", rootfs, ["sleep", "100"])
    rt.create("s2", bundle, check=True)
    rt("start", "s2", check=True)
    one_error_line(rt("start", "s2"), "already running")
    rt("kill", "s2", "KILL", check=True)
    rt.wait_status("s2", "stopped")
    one_error_line(rt("start", "s2"), "stopped")


def test_limits_and_device_rules_are_in_the_cgroup_before_start(
    rt: Runtime, rootfs: Path, cgroup_parent: str
) -> None:
    def edit(c: dict[str, Any]) -> None:
        c["linux"]["resources"].update(
            {"memory": {"limit": 64 << 20}, "pids": {"limit": 42}, "cpu": {"shares": 512}}
        )

    bundle = rt.bundle("lim", rootfs, edit=edit)
    rt.create("lim", bundle, check=True)
    base = Path("/sys/fs/cgroup")
    rel = f"{cgroup_parent}/lim"
    assert int((base / "memory" / rel / "memory.limit_in_bytes").read_text()) == 64 << 20
    assert (base / "pids" / rel / "pids.max").read_text().strip() == "42"
    assert (base / "cpu" / rel / "cpu.shares").read_text().strip() == "512"
    devices = (base / "devices" / rel / "devices.list").read_text().split("\n")
    assert "c 1:3 rwm" in devices and "a *:* rwm" not in devices
    # update changes a limit of the running container
    rt("start", "lim", check=True)
    (rt.workdir / "res.json").write_text(json.dumps({"pids": {"limit": 50}}))
    rt("update", "--resources", "res.json", "lim", check=True)
    assert (base / "pids" / rel / "pids.max").read_text().strip() == "50"
    rt("update", "--memory", "32m", "lim", check=True)
    assert int((base / "memory" / rel / "memory.limit_in_bytes").read_text()) == 32 << 20


def test_cgroups_path_relative_is_under_the_callers_own_group(
    rt: Runtime, rootfs: Path, cgroup_parent: str
) -> None:
    # The runtime runs in a group of this test's own, so "relative" lands there.
    own = f"{cgroup_parent}/rel-caller"
    dirs = cgroup_dirs(own)
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        if d.parts[4] == "cpuset":
            for level in (d.parent, d):
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if not (level / f).read_text().strip():
                        (level / f).write_text((level.parent / f).read_text())

    def enter() -> None:
        for d in dirs:
            (d / "tasks").write_text("0")

    try:
        bundle = rt.bundle("rel", rootfs, edit=lambda c: c["linux"].update(cgroupsPath="sub/rel"))
        res = rt.create("rel", bundle, preexec_fn=enter)
        assert res.returncode == 0, res.stderr
        pid = rt.state("rel")["pid"]
        for d in cgroup_dirs(f"{own}/sub/rel"):
            assert str(pid) in (d / "cgroup.procs").read_text().split(), d
        rt("delete", "--force", "rel", check=True)
        assert not any(d.exists() for d in cgroup_dirs(f"{own}/sub/rel"))
    finally:
        for d in dirs:
            for leftover in (d / "sub/rel", d / "sub", d):
                if leftover.exists():
                    leftover.rmdir()


def test_bad_inputs_fail_with_one_line_and_leave_nothing(
    rt: Runtime, rootfs: Path, cgroup_parent: str
) -> None:
    one_error_line(rt.create("b1", rt.workdir / "missing"), "missing")
    bad_json = rt.workdir / "bad-json"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{nope")
    one_error_line(rt.create("b2", bad_json), "config.json", "invalid JSON")
    bundle = rt.bundle("b3", rootfs, edit=lambda c: c["process"].update(args="sh"))
    one_error_line(rt.create("b3", bundle), "config.json: process.args")
    bundle = rt.bundle(
        "b4", rootfs, edit=lambda c: c["linux"]["namespaces"].append({"type": "bogus"})
    )
    one_error_line(rt.create("b4", bundle), "linux.namespaces[5].type")
    one_error_line(rt.create("bad/id", rt.bundle("b5", rootfs)), "invalid container id")
    for b in ("b1", "b2", "b3", "b4", "b5"):
        assert not (rt.root / b).exists()
        assert not any(d.exists() for d in cgroup_dirs(f"{cgroup_parent}/{b}"))
    assert not os.path.isdir(rt.root) or os.listdir(rt.root) == []
    for cmd in (["start"], ["state"], ["kill"], ["delete"], ["pause"], ["ps"], ["exec"]):
        one_error_line(rt(*cmd))
    for cmd in (["start", "nope"], ["state", "nope"], ["kill", "nope"], ["delete", "nope"]):
        one_error_line(rt(*cmd), "does not exist")
    bundle = rt.bundle("dup", rootfs)
    rt.create("dup", bundle, check=True)
    one_error_line(rt.create("dup", bundle), "container with id exists: dup")
    assert rt.state("dup")["status"] == "created"
    one_error_line(rt("--systemd-cgroup", "state", "dup"), "systemd cgroup driver")
    one_error_line(rt("frobnicate"), "unknown command")


def test_errors_are_logged_as_json_with_log_format_json(rt: Runtime) -> None:
    log = rt.workdir / "rt.log"
    one_error_line(rt("--log", str(log), "--log-format", "json", "state", "ghost"))
    rec = json.loads(log.read_text().splitlines()[-1])
    assert rec["level"] == "error" and "does not exist" in rec["msg"] and rec["time"]


def test_list_ps_pause_resume_events(rt: Runtime, rootfs: Path) -> None:
    bundle = rt.bundle("l1", rootfs, ["sleep", "100"])
    rt.create("l1", bundle, check=True)
    rt("start", "l1", check=True)
    pid = rt.state("l1")["pid"]
    table = rt("list", check=True).stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert table[1].split()[:3] == ["l1", str(pid), "running"]
    listed = json.loads(rt("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in listed] == ["l1"]
    assert rt("list", "-q", check=True).stdout.split() == ["l1"]
    assert json.loads(rt("ps", "--format", "json", "l1", check=True).stdout) == [pid]
    assert str(pid) in rt("ps", "l1", check=True).stdout
    rt("pause", "l1", check=True)
    assert rt.state("l1")["status"] == "paused"
    one_error_line(rt("pause", "l1"), "already paused")
    rt("resume", "l1", check=True)
    assert rt.state("l1")["status"] == "running"
    ev = json.loads(rt("events", "--stats", "l1", check=True).stdout)
    assert ev["type"] == "stats" and ev["data"]["pids"]["current"] >= 1


def test_exec_runs_in_the_container_and_returns_its_status(rt: Runtime, rootfs: Path) -> None:
    bundle = rt.bundle("e1", rootfs, ["sleep", "100"])
    rt.create("e1", bundle, check=True)
    rt("start", "e1", check=True)
    res = rt("exec", "e1", "sh", "-c", "hostname; exit 7")
    assert res.returncode == 7, res.stderr
    assert res.stdout.strip() == "rt"
    proc = {"args": ["cat", "/proc/self/cgroup"], "cwd": "/", "env": ["PATH=/bin"]}
    (rt.workdir / "proc.json").write_text(json.dumps(proc))
    res = rt("exec", "--process", "proc.json", "e1", check=True)
    assert "e1" in res.stdout


def test_run_foreground_returns_the_status_and_deletes(rt: Runtime, rootfs: Path) -> None:
    bundle = rt.bundle("r1", rootfs, ["sh", "-c", "echo out; exit 3"])
    res = rt("run", "--bundle", str(bundle), "r1")
    assert res.returncode == 3, res.stderr
    assert res.stdout == "out\n"
    assert not (rt.root / "r1").exists()


def test_seccomp_from_the_config_applies_even_when_it_forbids_close_range(
    rt: Runtime, rootfs: Path
) -> None:
    """Without no_new_privs the init holds CAP_SYS_ADMIN until the filter is in,
    right before execve, then drops it: a profile that forbids close_range (or
    getcwd, as the OCI suite's) does not break the init's own steps."""

    def edit(config: dict[str, Any]) -> None:
        config["process"]["noNewPrivileges"] = False
        config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {
                    "names": ["close_range", "getcwd", "mkdir", "mkdirat"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 1,
                }
            ],
        }

    script = "mkdir /tmp/x; echo rc=$?; grep -E '^Cap(Eff|Prm)' /proc/self/status"
    bundle = rt.bundle("sc1", rootfs, ["sh", "-c", script], edit=edit)
    res = rt("run", "--bundle", str(bundle), "sc1")
    assert res.returncode == 0, res.stderr
    # CAP_SYS_ADMIN, held to install the filter, is gone: KILL, NET_BIND_SERVICE
    # and AUDIT_WRITE only.
    assert res.stdout.split() == [
        "rc=1",
        "CapPrm:",
        "0000000020000420",
        "CapEff:",
        "0000000020000420",
    ]
    assert "Operation not permitted" in res.stderr
    feats = json.loads(rt("features", check=True).stdout)["linux"]["seccomp"]
    assert feats["enabled"] is True and "SCMP_ACT_ERRNO" in feats["actions"]


def test_preserve_fds_passes_descriptors_into_the_container(rt: Runtime, rootfs: Path) -> None:
    bundle = rt.bundle("f1", rootfs, ["sh", "-c", "echo through-fd3 >&3"])
    r, w = os.pipe()
    try:
        # The runtime gets the pipe as its fd 3 (dup2 in the child, kept open).
        res = rt.create(
            "f1", bundle, "--preserve-fds", "1", pass_fds=(3,), preexec_fn=lambda: os.dup2(w, 3)
        )
        assert res.returncode == 0, res.stderr
        os.close(w)
        w = -1
        rt("start", "f1", check=True)
        with os.fdopen(r, "rb", closefd=False) as f:
            assert f.readline() == b"through-fd3\n"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_hooks_run_with_the_state_on_stdin(rt: Runtime, rootfs: Path) -> None:
    out = rt.workdir / "hooks"
    out.mkdir()

    def hook(name: str) -> list[dict[str, Any]]:
        return [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/{name}"]}]

    def edit(c: dict[str, Any]) -> None:
        c["hooks"] = {k: hook(k) for k in ("prestart", "createRuntime", "poststart", "poststop")}

    bundle = rt.bundle("h1", rootfs, ["sleep", "100"], edit=edit)
    rt.create("h1", bundle, check=True)
    pid = rt.state("h1")["pid"]
    for k in ("prestart", "createRuntime"):
        st = json.loads((out / k).read_text())
        # as crun and the OCI suite's hooks_stdin: `created` for create-time hooks
        assert st["status"] == "created" and st["id"] == "h1" and st["pid"] == pid
    rt("start", "h1", check=True)
    st = json.loads((out / "poststart").read_text())
    assert st["status"] == "running" and st["pid"] == pid
    rt("delete", "--force", "h1", check=True)
    assert json.loads((out / "poststop").read_text())["status"] == "stopped"


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def _hook(path: str, **extra: Any) -> dict[str, Any]:
    return {"path": path, "args": [Path(path).name], "env": ["PATH=/usr/bin:/bin"], **extra}


def test_each_hook_runs_at_its_point_in_its_namespaces(rt: Runtime, rootfs: Path) -> None:
    """prestart, createRuntime: the runtime's namespaces, the init not yet
    pivoted; createContainer: the container's namespaces, still before
    pivot_root (its path is a host file); startContainer: after start, in the
    container's root (its path is a file of the rootfs); then poststart and,
    at delete, poststop.  Every hook appends its name to one file."""
    out = rt.workdir / "out"
    out.mkdir()
    marker = rt.workdir / "host-marker"
    marker.touch()
    order = f"echo $(basename $0) >> {out}/order\n"
    runtime_side = (
        "st=$(cat)\n"
        f'echo "$st" > {out}/$(basename $0).json\n'
        'pid=$(echo "$st" | sed -n \'s/.*"pid":\\([0-9]*\\).*/\\1/p\')\n'
        f"readlink /proc/self/ns/mnt > {out}/$(basename $0).own-mnt\n"
        f"readlink /proc/$pid/ns/mnt > {out}/$(basename $0).ctr-mnt\n"
        f"test -e /proc/$pid/root{marker} && echo not-pivoted > {out}/$(basename $0).root\n" + order
    )
    hooks_dir = rt.workdir / "hook-scripts"
    hooks_dir.mkdir()
    host = {k: _script(hooks_dir / k, runtime_side) for k in ("prestart", "createRuntime")}
    host["createContainer"] = _script(
        hooks_dir / "createContainer",
        f"cat > {out}/createContainer.json\n"
        f"readlink /proc/self/ns/mnt > {out}/createContainer.mnt\n"
        f"readlink /proc/self/ns/pid > {out}/createContainer.pid-ns\n"
        f"cat /proc/sys/kernel/hostname > {out}/createContainer.hostname\n"
        f"test -e {marker} && echo host-root > {out}/createContainer.root\n" + order,
    )
    for k in ("poststart", "poststop"):
        host[k] = _script(hooks_dir / k, order)
    # Only in the container: /hooks/startContainer writes through the /out bind.
    (rootfs / "hooks").mkdir()
    _script(
        rootfs / "hooks" / "startContainer",
        "cat > /out/startContainer.json\n"
        "readlink /proc/self/ns/mnt > /out/startContainer.mnt\n"
        f"test -e {marker} || echo container-root > /out/startContainer.root\n"
        "echo startContainer >> /out/order\n",
    )
    assert not Path("/hooks/startContainer").exists()

    def edit(c: dict[str, Any]) -> None:
        c["hooks"] = {k: [_hook(p)] for k, p in host.items()}
        c["hooks"]["startContainer"] = [_hook("/hooks/startContainer")]
        c["mounts"].append(
            {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]}
        )

    args = ["sh", "-c", "echo program >> /out/order; exec sleep 100"]
    bundle = rt.bundle("hk", rootfs, args, edit=edit)
    rt.create("hk", bundle, check=True)
    pid = rt.state("hk")["pid"]
    lines = (out / "order").read_text().split()
    assert lines == ["prestart", "createRuntime", "createContainer"]
    ctr_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
    host_mnt = os.readlink("/proc/self/ns/mnt")
    assert ctr_mnt != host_mnt
    for k in ("prestart", "createRuntime"):
        st = json.loads((out / f"{k}.json").read_text())
        assert (st["status"], st["pid"], st["id"]) == ("created", pid, "hk")
        assert (out / f"{k}.own-mnt").read_text().strip() == host_mnt
        assert (out / f"{k}.ctr-mnt").read_text().strip() == ctr_mnt
        # the init's root was still the host's: not pivoted yet
        assert (out / f"{k}.root").read_text().strip() == "not-pivoted"
    # ... and it is now (the check above can tell the difference)
    assert not Path(f"/proc/{pid}/root{marker}").exists()
    # hooks in the container's namespaces get the pid as the container sees it
    st = json.loads((out / "createContainer.json").read_text())
    assert (st["status"], st["pid"], st["id"]) == ("created", 1, "hk")
    assert (out / "createContainer.mnt").read_text().strip() == ctr_mnt
    assert (out / "createContainer.pid-ns").read_text().strip() == os.readlink(
        f"/proc/{pid}/ns/pid"
    )
    assert (out / "createContainer.hostname").read_text().strip() == "rt"
    assert (out / "createContainer.root").read_text().strip() == "host-root"
    assert not (out / "startContainer.json").exists()

    rt("start", "hk", check=True)
    wait_for(lambda: "program" in (out / "order").read_text().split())
    lines = (out / "order").read_text().split()
    assert lines[:4] == ["prestart", "createRuntime", "createContainer", "startContainer"]
    assert sorted(lines[4:]) == ["poststart", "program"]
    st = json.loads((out / "startContainer.json").read_text())
    assert (st["status"], st["pid"]) == ("created", 1)
    assert (out / "startContainer.mnt").read_text().strip() == ctr_mnt
    assert (out / "startContainer.root").read_text().strip() == "container-root"

    rt("delete", "--force", "hk", check=True)
    assert (out / "order").read_text().split()[-1] == "poststop"


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook_fails_create_and_leaves_nothing(
    rt: Runtime, rootfs: Path, cgroup_parent: str, kind: str
) -> None:
    def edit(c: dict[str, Any]) -> None:
        failing = {"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 4"]}
        c["hooks"] = {kind: [failing], "poststart": [failing]}

    bundle = rt.bundle("h2", rootfs, edit=edit)
    one_error_line(rt.create("h2", bundle), f"{kind} hook #0", "exit status 4", "nope")
    assert not (rt.root / "h2").exists()
    assert not any(d.exists() for d in cgroup_dirs(f"{cgroup_parent}/h2"))
    # (the leak guard checks that no process or mount is left)


def test_a_hook_past_its_timeout_is_killed_and_fails_create(
    rt: Runtime, rootfs: Path, cgroup_parent: str
) -> None:
    child = rt.workdir / "child.pid"
    slow = {
        "path": "/bin/sh",
        "args": ["sh", "-c", f"sleep 60 & echo $! > {child}; wait"],
        "timeout": 1,
    }
    bundle = rt.bundle("h3", rootfs, edit=lambda c: c.update(hooks={"createRuntime": [slow]}))
    t0 = time.monotonic()
    one_error_line(rt.create("h3", bundle), "createRuntime hook #0", "timed out after 1 s")
    assert time.monotonic() - t0 < 10
    wait_for(lambda: not _alive(int(child.read_text())))
    assert not (rt.root / "h3").exists()
    assert not any(d.exists() for d in cgroup_dirs(f"{cgroup_parent}/h3"))


def test_failing_start_container_hook_fails_start_and_stops_the_container(
    rt: Runtime, rootfs: Path
) -> None:
    failing = {"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 5"]}
    bundle = rt.bundle(
        "h4",
        rootfs,
        ["sh", "-c", "touch /started; exec sleep 100"],
        edit=lambda c: c.update(hooks={"startContainer": [failing]}),
    )
    rt.create("h4", bundle, check=True)
    one_error_line(rt("start", "h4"), "startContainer hook #0", "exit status 5", "nope")
    rt.wait_status("h4", "stopped")
    assert not (rootfs / "started").exists()
    rt("delete", "h4", check=True)
    assert not (rt.root / "h4").exists()


def test_features_and_spec(rt: Runtime) -> None:
    feats = json.loads(rt("features", check=True).stdout)
    assert "CAP_SYS_ADMIN" in feats["linux"]["capabilities"]
    assert feats["linux"]["cgroup"]["systemd"] is False
    d = rt.workdir / "spec-bundle"
    d.mkdir()
    rt("spec", "--bundle", str(d), check=True)
    spec = json.loads((d / "config.json").read_text())
    assert spec["process"]["args"] == ["sh"] and spec["process"]["terminal"] is True
    one_error_line(rt("spec", "--bundle", str(d)), "File config.json exists. Remove it first")


def test_console_socket_receives_the_pty_master(rt: Runtime, rootfs: Path, tmp_path: Path) -> None:
    import array
    import socket

    sock_path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    bundle = rt.bundle(
        "tty1",
        rootfs,
        ["sh", "-c", "tty; sleep 100"],
        edit=lambda c: (
            c["process"].update(terminal=True),
            c["mounts"].append(
                {
                    "destination": "/dev/pts",
                    "type": "devpts",
                    "source": "devpts",
                    "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
                }
            ),
        ),
    )
    proc = subprocess.Popen(
        [
            rt.binary,
            "--root",
            str(rt.root),
            "create",
            "--bundle",
            str(bundle),
            "--console-socket",
            str(sock_path),
            "tty1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rt.ids.append("tty1")
    server.settimeout(20)
    conn, _ = server.accept()
    fds = array.array("i")
    msg, anc, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
    assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data)
    assert len(fds) == 1 and msg.startswith(b"/dev/pts/")
    master = fds[0]
    try:
        rt("start", "tty1", check=True)
        got = b""
        deadline = time.monotonic() + 10
        while b"/dev/pts/" not in got and time.monotonic() < deadline:
            got += os.read(master, 1024)
        assert b"/dev/pts/0" in got
    finally:
        os.close(master)
        conn.close()
        server.close()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_a_config_without_namespaces_shares_the_runtimes_and_mounts_nothing(
    rt: Runtime, rootfs: Path
) -> None:
    """A namespace the config leaves out is inherited (runtime-spec); without a
    mount namespace nothing is mounted in the host's tree: chroot only."""

    def edit(config: dict[str, Any]) -> None:
        config["linux"]["namespaces"] = []
        del config["hostname"]

    mounts_before = Path("/proc/self/mountinfo").read_text().count("\n")
    bundle = rt.bundle("nons", rootfs, ["sleep", "100"], edit=edit)
    rt.create("nons", bundle, check=True)
    pid = rt.state("nons")["pid"]
    for ns in ("mnt", "pid", "net", "ipc", "uts"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/self/ns/{ns}"), ns
    assert os.readlink(f"/proc/{pid}/root") == str(rootfs)
    assert Path("/proc/self/mountinfo").read_text().count("\n") == mounts_before
    rt("delete", "--force", "nons", check=True)


def test_shared_and_unbindable_rootfs_propagation_are_applied_after_the_pivot(
    rt: Runtime, rootfs: Path
) -> None:
    """runc gets `shared` wrong; an unbindable tree applied before the rootfs
    bind makes the bind fail (EINVAL)."""
    for prop, seen in (
        ("shared", "shared:"),
        ("rshared", "shared:"),
        ("unbindable", "unbindable"),
        ("runbindable", "unbindable"),
    ):
        cid = f"prop-{prop}"
        bundle = rt.bundle(
            cid,
            rootfs,
            ["awk", '$5 == "/"', "/proc/self/mountinfo"],
            edit=lambda c, p=prop: c["linux"].update(rootfsPropagation=p),
        )
        res = rt("run", "--bundle", str(bundle), cid)
        assert res.returncode == 0, res.stderr
        assert seen in res.stdout, (prop, res.stdout)


def test_unsupported_versions_and_settings_are_errors_naming_the_field(
    rt: Runtime, rootfs: Path
) -> None:
    cases: list[tuple[str, Any, str]] = [
        ("v1", lambda c: c.update(ociVersion="invalid"), "config.json: ociVersion"),
        ("v2", lambda c: c.update(ociVersion="2.0.0"), "config.json: ociVersion"),
        (
            "hp",
            lambda c: c["linux"]["resources"].update(
                hugepageLimits=[{"pageSize": "2MB", "limit": 1 << 21}]
            ),
            "linux.resources.hugepageLimits",
        ),
        (
            "nc",
            lambda c: c["linux"]["resources"].update(network={"classID": 1}),
            "linux.resources.network",
        ),
    ]
    apparmor = Path("/sys/module/apparmor/parameters/enabled")
    if not apparmor.exists() or apparmor.read_text().strip() != "Y":
        cases.append(
            ("aa", lambda c: c["process"].update(apparmorProfile="acme"), "apparmorProfile")
        )
    for cid, edit, needle in cases:
        one_error_line(rt.create(cid, rt.bundle(cid, rootfs, edit=edit)), needle)
        assert not (rt.root / cid).exists()


def test_ambient_capabilities_outside_the_inheritable_set_are_left_out(
    rt: Runtime, rootfs: Path
) -> None:
    """runc's default spec lists ambient capabilities with no inheritable set;
    the kernel refuses to raise those, and runtimes leave them out."""

    def edit(config: dict[str, Any]) -> None:
        config["process"]["capabilities"]["ambient"] = ["CAP_KILL"]
        config["process"]["user"] = {"uid": 1000, "gid": 1000}

    bundle = rt.bundle("amb", rootfs, ["grep", "CapAmb", "/proc/self/status"], edit=edit)
    res = rt("run", "--bundle", str(bundle), "amb")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["CapAmb:", "0000000000000000"]


def test_device_rules_apply_in_order_the_later_winning(
    rt: Runtime, rootfs: Path, cgroup_parent: str
) -> None:
    """The spec's rules are written in order after `deny a` (runc lets its
    defaults override them: `c 10:229` is one of those)."""

    def edit(c: dict[str, Any]) -> None:
        c["linux"]["resources"]["devices"] = [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "w"},
        ]

    rt.create("dev", rt.bundle("dev", rootfs, edit=edit), check=True)
    listed = Path("/sys/fs/cgroup/devices", cgroup_parent, "dev", "devices.list").read_text()
    assert "c 10:229 rm" in listed.splitlines(), listed
    rt("delete", "--force", "dev", check=True)


def test_selinux_labels_are_accepted_where_selinux_is_off(rt: Runtime, rootfs: Path) -> None:
    if Path("/sys/fs/selinux/enforce").exists():
        pytest.skip("SELinux is on here: labels would have to be applied")

    def edit(c: dict[str, Any]) -> None:
        c["process"]["selinuxLabel"] = "system_u:system_r:svirt_lxc_net_t:s0:c124,c675"
        c["linux"]["mountLabel"] = "system_u:object_r:svirt_sandbox_file_t:s0:c715,c811"

    res = rt("run", "--bundle", str(rt.bundle("se", rootfs, ["true"], edit=edit)), "se")
    assert res.returncode == 0, res.stderr


def test_events_streams_stats_and_oom_kills_until_the_container_stops(
    rt: Runtime, rootfs: Path
) -> None:
    script = "sleep 0.5; dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 0.8"

    def edit(c: dict[str, Any]) -> None:
        c["linux"]["resources"]["memory"] = {"limit": 32 << 20, "swap": 32 << 20}

    rt.create("ev", rt.bundle("ev", rootfs, ["sh", "-c", script], edit=edit), check=True)
    rt("start", "ev", check=True)
    res = rt("events", "--interval", "200ms", "ev", timeout=20)
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds.count("oom") == 1, kinds
    assert kinds.count("stats") >= 3, kinds
    assert all(e["id"] == "ev" for e in events)
    stats = [e["data"] for e in events if e["type"] == "stats"]
    assert stats[0]["memory"]["usage"]["limit"] == 32 << 20
    assert rt.state("ev")["status"] == "stopped"
    one_error_line(rt("events", "ev"), "container not running")
