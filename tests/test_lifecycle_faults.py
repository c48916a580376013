"""Container lifecycle faults (issue 4's list: supervisor or container killed
from the host, a read-only state dir, a vanished volume), 50 parallel
starts, and bad input: clear one-line errors, nothing leaked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from ctrkit import assert_engine_error, assert_ok, kill_pid, wait_gone
from lifecycle_kit import ID, SLEEP, Ctrs, ctrs

pytestmark = pytest.mark.timeout(120)

__all__ = ["ctrs"]  # the fixture


# --------------------------------------------------------------------------- faults


def test_supervisor_killed_then_state_follows_the_process_and_rm_f_cleans_up(
    ctrs: Ctrs,
) -> None:
    cid = ctrs.run_d(*SLEEP, opts=("--name", "orphan"))
    st = ctrs.state(cid)
    kill_pid(st["SupervisorPid"])
    assert wait_gone([st["SupervisorPid"]]) == []
    # The container process still runs: still running (no more logs, though).
    st2 = ctrs.state(cid)
    assert st2["Status"] == "running" and st2["Pid"] == st["Pid"], st2
    assert "supervisor is gone" in st2["Error"]
    # Now the process is killed too: never reported running again.
    kill_pid(st["Pid"])
    assert wait_gone([st["Pid"]]) == []
    st3 = ctrs.state(cid)
    assert (st3["Status"], st3["Running"], st3["ExitCode"]) == ("exited", False, 255), st3
    assert_ok(ctrs.cli("rm", "-f", "orphan"))
    assert ctrs.ids() == [] and ctrs.cgroup_dirs(cid) == []


def test_supervisor_killed_with_the_container_running_rm_f_still_cleans_up(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP)
    st = ctrs.state(cid)
    kill_pid(st["SupervisorPid"])
    assert wait_gone([st["SupervisorPid"]]) == []
    assert_ok(ctrs.cli("rm", "-f", cid))
    assert wait_gone([st["Pid"]]) == []
    assert ctrs.ids() == [] and ctrs.cgroup_dirs(cid) == []


def test_container_process_killed_from_the_host_is_exited_137(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP)
    pid = ctrs.state(cid)["Pid"]
    kill_pid(pid)
    st = ctrs.wait_for(cid, lambda s: not s["Running"])
    assert (st["Status"], st["ExitCode"]) == ("exited", 137), st
    assert assert_ok(ctrs.cli("wait", cid)) == "137\n"
    ctrs.wait_for(cid, lambda s: not ctrs.cgroup_dirs(cid))


def _bind_ro(path: Path) -> None:
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)


def _unmount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=False)


def test_a_read_only_state_root_is_a_clear_error_and_leaves_nothing(ctrs: Ctrs) -> None:
    root = ctrs.engine.root
    (root / "containers").mkdir(exist_ok=True)
    _bind_ro(root)
    try:
        res = ctrs.cli("run", "-d", "--name", "ro", "--rootfs", str(ctrs.engine.rootfs), *SLEEP)
        assert_engine_error(res, 125, "Read-only file system")
    finally:
        _unmount(root)
    assert ctrs.ids() == [] and not (root / "names" / "ro").is_symlink()
    assert not ctrs.engine.scanner.processes()


def test_a_read_only_container_dir_fails_start_cleanly(ctrs: Ctrs) -> None:
    cid = ctrs.create(*SLEEP)
    cdir = ctrs.dir(cid)
    _bind_ro(cdir)
    try:
        res = ctrs.cli("start", cid)
        line = assert_engine_error(res, 1)
        assert "Read-only file system" in line, res
        assert not ctrs.engine.scanner.processes()
        assert ctrs.cgroup_dirs(cid) == []
    finally:
        _unmount(cdir)
    assert ctrs.state(cid)["Status"] == "created"
    assert_ok(ctrs.cli("start", cid))  # writable again: it starts
    assert ctrs.state(cid)["Status"] == "running"


def test_a_volume_removed_from_the_host_while_running(ctrs: Ctrs, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("data\n")
    cid = ctrs.run_d(*SLEEP, opts=("-v", f"{vol}:/data"))
    subprocess.run(["rm", "-rf", str(vol)], check=True)
    assert ctrs.state(cid)["Status"] == "running"  # the bind mount keeps it alive
    assert_ok(ctrs.cli("stop", "-t", "0", cid))
    res = ctrs.cli("start", cid)
    line = assert_engine_error(res, 1)
    assert str(vol) in line or "No such file or directory" in line, res
    assert not ctrs.engine.scanner.processes() and ctrs.cgroup_dirs(cid) == []
    assert_ok(ctrs.cli("rm", cid))
    assert ctrs.ids() == []


# --------------------------------------------------------------------------- concurrency


N_PARALLEL = 50


def _check_parallel(ctrs: Ctrs, ids: list[str]) -> None:
    assert len(ids) == N_PARALLEL and len(set(ids)) == N_PARALLEL
    assert all(ID.match(i) for i in ids)
    assert sorted(ctrs.ids()) == sorted(ids)
    names = {ctrs.doc(i)["Name"] for i in ids}
    assert len(names) == N_PARALLEL
    links = os.listdir(ctrs.engine.root / "names")
    assert len(links) == N_PARALLEL
    assert all(ctrs.state(i)["Status"] == "running" for i in ids)


def test_50_parallel_run_d_from_processes_all_succeed_with_unique_ids_and_names(
    ctrs: Ctrs,
) -> None:
    argv = ctrs.engine.argv("run", "-d", "--rootfs", str(ctrs.engine.rootfs), *SLEEP)
    procs = [
        ctrs.engine.tracker.add(
            subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=ctrs.engine.base_env(),
                start_new_session=True,
            )
        )
        for _ in range(N_PARALLEL)
    ]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0 and err == b"", err
        ids.append(out.decode().strip())
    _check_parallel(ctrs, ids)
    res = ctrs.cli("rm", "-f", *ids, timeout=90)
    assert res.returncode == 0 and res.stdout.split() == ids, res
    assert ctrs.ids() == []


def test_50_parallel_run_d_from_threads_all_succeed_with_unique_ids_and_names(
    ctrs: Ctrs,
) -> None:
    code = f"""
import concurrent.futures, json
from pyctr_fast import lifecycle
from pyctr_fast.spec import RunOptions

def one(i):
    opts = RunOptions(ROOTFS, ["sleep", "1000"], detach=True)
    return lifecycle.run_detached(opts, root=ROOT).id

with concurrent.futures.ThreadPoolExecutor({N_PARALLEL}) as pool:
    ids = list(pool.map(one, range({N_PARALLEL})))
print(json.dumps(ids))
"""
    res = ctrs.engine.api(code, timeout=90)
    assert res.returncode == 0, res
    ids = json.loads(res.stdout)
    _check_parallel(ctrs, ids)
    res = ctrs.cli("rm", "-f", *ids, timeout=90)
    assert res.returncode == 0, res


# --------------------------------------------------------------------------- bad input


BAD_RUN = [
    (["--restart", "sometimes"], "invalid restart policy: unknown policy 'sometimes'"),
    (["--restart", "always:3"], "maximum retry count can only be used with 'on-failure'"),
    (["--restart", "on-failure:x"], "maximum retry count must be an integer"),
    (["--restart", "on-failure:-1"], "maximum retry count cannot be negative"),
    (["--restart", ":1"], "no policy provided before colon"),
    (["--rm", "--restart", "always"], "Conflicting options: --restart and --rm"),
    (["--log-opt", "max-size=lots"], "invalid size: 'lots'"),
    (["--log-opt", "max-file=0"], "max-file cannot be less than 1"),
    (["--log-opt", "compress=true"], "unknown log opt 'compress' for json-file log driver"),
    (["--log-driver", "syslog"], "no log driver named 'syslog'"),
    (["--stop-signal", "SIGNOPE"], "Invalid signal: SIGNOPE"),
    (["--stop-timeout", "soon"], 'invalid argument "soon" for "--stop-timeout" flag'),
    (["--name", "-x"], "invalid container name (-x)"),
]


@pytest.mark.parametrize(("opts", "needle"), BAD_RUN, ids=[b[1][:40] for b in BAD_RUN])
@pytest.mark.parametrize("command", ["run", "create"])
def test_bad_lifecycle_options_are_one_line_errors_and_create_nothing(
    ctrs: Ctrs, opts: list[str], needle: str, command: str
) -> None:
    args = ["-d"] if command == "run" else []
    res = ctrs.cli(command, *args, *opts, "--rootfs", str(ctrs.engine.rootfs), *SLEEP)
    assert_engine_error(res, 125, needle)
    assert ctrs.ids() == []
    assert not (ctrs.engine.root / "names").exists() or not os.listdir(ctrs.engine.root / "names")


def test_log_options_reach_launch_json_with_docker_units(ctrs: Ctrs) -> None:
    cid = ctrs.create(
        "true",
        opts=("--log-driver", "json-file", "--log-opt", "max-size=1.5k", "--log-opt", "max-file=3"),
    )
    launch = ctrs.doc(cid, "launch.json")
    assert (launch["log_max_size"], launch["log_max_files"]) == (1500, 3)
    assert ctrs.doc(cid)["HostConfig"]["LogConfig"]["Config"] == {
        "max-size": "1.5k",
        "max-file": "3",
    }


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["stop"], 1, '"stop" requires at least 1 argument'),
        (["rm", "--bogus", "x"], 125, "unknown flag: --bogus"),
        (["stop", "-t", "x", "c"], 125, 'invalid argument "x" for "--time" flag'),
        (["wait", "nosuch"], 1, "No such container: nosuch"),
        (["start", "-a", "a", "b"], 1, "you cannot start and attach multiple containers"),
        (["container", "frob"], 125, "'container frob' is not a pyctr-fast command"),
    ],
)
def test_lifecycle_usage_errors(ctrs: Ctrs, args: list[str], code: int, needle: str) -> None:
    assert_engine_error(ctrs.cli(*args), code, needle)


def test_container_subcommands_map_onto_the_commands(ctrs: Ctrs) -> None:
    cid = ctrs.create("true", opts=("--name", "sub"))
    assert assert_ok(ctrs.cli("container", "start", "sub")) == "sub\n"
    assert assert_ok(ctrs.cli("container", "wait", "sub")) == "0\n"
    assert assert_ok(ctrs.cli("container", "rm", "sub")) == "sub\n"
    assert cid not in ctrs.ids()
    assert "Manage containers" in assert_ok(ctrs.cli("container", "--help"))


def test_lifecycle_api_is_usable_in_process(ctrs: Ctrs) -> None:
    code = """
from pyctr_fast import lifecycle
from pyctr_fast.errors import UserError
from pyctr_fast.spec import RunOptions
rec = lifecycle.create(RunOptions(ROOTFS, ["sh", "-c", "exit 9"], name="api"), root=ROOT)
print(rec.status)
lifecycle.start(ROOT, "api")
print(lifecycle.wait(ROOT, "api"))
try:
    lifecycle.kill(ROOT, "api")
except UserError as err:
    print(err.exit_code, err)
lifecycle.remove(ROOT, rec.id)
print(lifecycle.prune(ROOT))
"""
    res = ctrs.engine.api(code)
    assert res.returncode == 0, res
    lines = res.stdout.splitlines()
    assert lines[:2] == ["created", "9"]
    assert lines[2].startswith("1 Container ") and lines[2].endswith(" is not running")
    assert lines[3] == "[]"
