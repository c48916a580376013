"""Container lifecycle through the CLI: run -d, create/start, stop, kill,
restart, rm, wait, rename, pause/unpause, prune, restart policies and the
foreground paths (faults, concurrency and bad input: test_lifecycle_faults.py).

Real containers on the busybox ``rootfs`` fixture, each under its own
supervisor; the ``ctrs`` fixture ``rm -f``s whatever a test left so that
the leak guard (processes, mounts, container dirs, cgroups) stays strict.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from conftest import CGROUP_PARENT
from ctrkit import assert_engine_error, assert_ok, kill_pid, wait_gone
from lifecycle_kit import FREEZER, ID, SLEEP, Ctrs, ctrs
from lifecycle_kit import alive as _alive
from lifecycle_kit import ppid as _ppid

pytestmark = pytest.mark.timeout(120)

__all__ = ["ctrs"]  # the fixture


# --------------------------------------------------------------------------- run -d, create, start


def test_run_d_prints_a_64_hex_id_and_returns_while_the_container_runs(ctrs: Ctrs) -> None:
    res = ctrs.cli("run", "-d", "--rootfs", str(ctrs.engine.rootfs), *SLEEP)
    cid = assert_ok(res).strip()
    assert ID.match(cid) and res.stdout == cid + "\n", res
    assert res.seconds < 10
    st = ctrs.state(cid)
    assert st["Status"] == "running" and st["Running"] is True, st
    assert _alive(st["Pid"])
    assert Path(f"/proc/{st['Pid']}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"1000"]
    doc = ctrs.doc(cid)
    assert doc["Id"] == cid and doc["Name"].startswith("/") and doc["Path"] == "sleep"
    assert doc["Args"] == ["1000"] and doc["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert doc["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert doc["Config"]["Image"] == os.path.realpath(ctrs.engine.rootfs)


def test_the_supervisor_is_not_a_child_of_the_cli_and_not_python(ctrs: Ctrs) -> None:
    res = ctrs.cli("run", "-d", "--rootfs", str(ctrs.engine.rootfs), *SLEEP)
    cid = assert_ok(res).strip()
    st = ctrs.state(cid)
    sup = st["SupervisorPid"]
    assert _alive(sup), st
    cli_pid = ctrs.engine.tracker.procs[-1].pid  # exited already; the supervisor lives on
    assert _ppid(sup) != cli_pid
    session = int(Path(f"/proc/{sup}/stat").read_text().rpartition(")")[2].split()[3])
    assert session not in (cli_pid, os.getsid(0))  # setsid: its own session
    exe = os.readlink(f"/proc/{sup}/exe")
    assert "pyctr-supervise" in exe and "python" not in exe, exe
    assert _ppid(st["Pid"]) == sup


def test_create_makes_no_process_or_cgroup_and_start_runs_it(ctrs: Ctrs) -> None:
    cid = ctrs.create(*SLEEP, opts=("--name", "made"))
    st = ctrs.state(cid)
    assert (st["Status"], st["Pid"], st["StartedAt"]) == ("created", 0, "0001-01-01T00:00:00Z")
    assert ctrs.cgroup_dirs(cid) == []
    assert os.readlink(ctrs.engine.root / "names" / "made") == cid
    launch = ctrs.doc(cid, "launch.json")
    assert launch["name"] == "made" and launch["cgroup_dirs"] and not launch["auto_remove"]
    assert all(f"/{CGROUP_PARENT}/{cid}" in d for d in launch["cgroup_dirs"])
    res = ctrs.cli("start", "made")
    assert assert_ok(res) == "made\n"
    st = ctrs.state(cid)
    assert st["Status"] == "running" and _alive(st["Pid"])
    procs = (FREEZER / CGROUP_PARENT / cid / "cgroup.procs").read_text().split()
    assert str(st["Pid"]) in procs
    # Starting a running container changes nothing (Docker prints the name).
    assert assert_ok(ctrs.cli("start", cid[:12])) == cid[:12] + "\n"
    assert ctrs.state(cid)["Pid"] == st["Pid"]


def test_create_refuses_run_only_flags(ctrs: Ctrs) -> None:
    res = ctrs.cli("create", "-d", "--rootfs", str(ctrs.engine.rootfs), *SLEEP)
    assert_engine_error(res, 125, "unknown shorthand flag: 'd' in -d")
    assert ctrs.ids() == []


def test_a_start_that_fails_leaves_no_process_or_cgroup_and_keeps_the_error(ctrs: Ctrs) -> None:
    cid = ctrs.create("/no/such/program")
    res = ctrs.cli("start", cid)
    assert_engine_error(res, 1, "/no/such/program")
    st = ctrs.state(cid)
    assert st["Status"] == "created" and st["ExitCode"] == 127 and st["Error"], st
    assert ctrs.cgroup_dirs(cid) == []
    assert not ctrs.engine.scanner.processes()
    # run -d: Docker's exit status for a missing command, the container kept...
    res = ctrs.cli("run", "-d", "--name", "bad", "--rootfs", str(ctrs.engine.rootfs), "/nope")
    assert_engine_error(res, 127, "/nope")
    assert len(ctrs.ids()) == 2
    # ... unless --rm: then nothing at all is left.
    res = ctrs.cli("run", "-d", "--rm", "--rootfs", str(ctrs.engine.rootfs), "/nope")
    assert_engine_error(res, 127, "/nope")
    assert len(ctrs.ids()) == 2
    assert all(not ctrs.cgroup_dirs(c) for c in ctrs.ids())


def test_run_d_rm_removes_everything_once_the_container_exits(ctrs: Ctrs) -> None:
    cid = ctrs.run_d("sh", "-c", "sleep 0.3", opts=("--rm", "--name", "gone"))
    deadline = time.monotonic() + 15
    while ctrs.dir(cid).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ctrs.dir(cid).exists()
    assert not (ctrs.engine.root / "names" / "gone").is_symlink()
    assert ctrs.cgroup_dirs(cid) == []


# --------------------------------------------------------------------------- foreground run


def test_foreground_run_without_rm_leaves_an_exited_container_with_its_logs(
    ctrs: Ctrs,
) -> None:
    res = ctrs.cli(
        "run", "--name", "fg", "--rootfs", str(ctrs.engine.rootfs),
        "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3",
    )  # fmt: skip
    assert res.returncode == 3, res
    assert res.stdout == "to-stdout\n" and res.stderr == "to-stderr\n", res
    (cid,) = ctrs.ids()
    st = ctrs.state(cid)
    assert (st["Status"], st["ExitCode"]) == ("exited", 3), st
    assert st["FinishedAt"] != "0001-01-01T00:00:00Z"
    assert sorted(ctrs.log_lines(cid)) == ["to-stderr\n", "to-stdout\n"]
    assert ctrs.cgroup_dirs(cid) == []
    assert assert_ok(ctrs.cli("wait", "fg")) == "3\n"
    # It can be started again, attached (its log keeps growing), and removed.
    res = ctrs.cli("start", "-a", "fg")
    assert (res.returncode, res.stdout, res.stderr) == (3, "to-stdout\n", "to-stderr\n"), res
    assert len(ctrs.log_lines(cid)) == 4
    assert assert_ok(ctrs.cli("rm", "fg")) == "fg\n"
    assert ctrs.ids() == []


def test_foreground_run_rm_is_registered_while_it_runs_and_stop_reaches_it(
    ctrs: Ctrs,
) -> None:
    proc = ctrs.engine.popen("/usr/local/bin/wait-for-signal", "TERM", "7", opts=["--name", "fgrm"])
    cid = ctrs.engine.wait_for_container_dir()
    st = ctrs.wait_for(cid, lambda s: s["Status"] == "running")
    assert _alive(st["Pid"]) and st["SupervisorPid"] == proc.pid
    assert ctrs.doc(cid)["Name"] == "/fgrm" and ctrs.doc(cid)["HostConfig"]["AutoRemove"]
    assert os.readlink(ctrs.engine.root / "names" / "fgrm") == cid[:48]  # a short link
    res = ctrs.cli("pause", "fgrm")
    assert_engine_error(res, 1, "cannot be paused")
    assert assert_ok(ctrs.cli("stop", "fgrm")) == "fgrm\n"
    assert proc.wait(timeout=10) == 7
    assert ctrs.ids() == [] and not (ctrs.engine.root / "names" / "fgrm").is_symlink()


def test_wait_on_a_foreground_rm_container_gets_its_exit_code(ctrs: Ctrs) -> None:
    proc = ctrs.engine.popen("sh", "-c", "sleep 0.5; exit 5")
    cid = ctrs.engine.wait_for_container_dir()
    ctrs.wait_for(cid, lambda s: s["Status"] == "running")
    res = ctrs.cli("wait", cid)
    assert proc.wait(timeout=10) == 5
    assert assert_ok(res) == "5\n"


# --------------------------------------------------------------------------- stop / kill


def test_stop_sends_the_stop_signal_and_the_container_may_exit_cleanly(ctrs: Ctrs) -> None:
    cid = ctrs.run_d("/usr/local/bin/wait-for-signal", "TERM", "3")
    ctrs.wait_for(cid, lambda s: "ready\n" in ctrs.log_lines(cid) or not s["Running"])
    res = ctrs.cli("stop", cid)
    assert assert_ok(res) == cid + "\n" and res.seconds < 5, res
    st = ctrs.state(cid)
    assert (st["Status"], st["ExitCode"]) == ("exited", 3), st
    assert "got-TERM\n" in ctrs.log_lines(cid)
    assert ctrs.cgroup_dirs(cid) == []
    assert (ctrs.dir(cid) / "stopped").exists()


def test_stop_kills_after_the_grace_period(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP)  # PID 1 ignores SIGTERM (no handler)
    res = ctrs.cli("stop", "-t", "1", cid)
    assert_ok(res)
    assert 0.9 <= res.seconds < 6, res
    st = ctrs.state(cid)
    assert (st["Status"], st["ExitCode"]) == ("exited", 137), st


def test_stop_uses_the_stop_signal_given_at_run(ctrs: Ctrs) -> None:
    cid = ctrs.run_d("/usr/local/bin/wait-for-signal", "USR1", "4", opts=("--stop-signal", "USR1"))
    ctrs.wait_for(cid, lambda s: "ready\n" in ctrs.log_lines(cid))
    res = ctrs.cli("stop", "-t", "20", cid)
    assert_ok(res)
    assert res.seconds < 10
    assert ctrs.state(cid)["ExitCode"] == 4
    assert ctrs.doc(cid)["Config"]["StopSignal"] == "USR1"


def test_stop_of_a_stopped_container_is_not_an_error(ctrs: Ctrs) -> None:
    cid = ctrs.run_d("true")
    ctrs.wait_for(cid, lambda s: not s["Running"])
    assert assert_ok(ctrs.cli("stop", cid)) == cid + "\n"
    created = ctrs.create("true")
    assert assert_ok(ctrs.cli("stop", created)) == created + "\n"


def test_kill_sends_the_signal_given_by_name_or_number(ctrs: Ctrs) -> None:
    a = ctrs.run_d("/usr/local/bin/wait-for-signal", "USR1", "21")
    b = ctrs.run_d("/usr/local/bin/wait-for-signal", "USR2", "22")
    for cid in (a, b):
        ctrs.wait_for(cid, lambda s, c=cid: "ready\n" in ctrs.log_lines(c))
    assert assert_ok(ctrs.cli("kill", "-s", "SIGUSR1", a)) == a + "\n"
    assert assert_ok(ctrs.cli("kill", "--signal=12", b)) == b + "\n"
    assert assert_ok(ctrs.cli("wait", a, b)) == "21\n22\n"
    # Not running any more: Docker's error.
    res = ctrs.cli("kill", a)
    assert_engine_error(res, 1, f"Container {a} is not running")
    res = ctrs.cli("kill", "-s", "BOGUS", a)
    assert_engine_error(res, 125, "Invalid signal: BOGUS")


def test_kill_defaults_to_sigkill(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP)
    assert_ok(ctrs.cli("kill", cid))
    st = ctrs.state(cid)
    assert (st["Status"], st["ExitCode"]) == ("exited", 137), st


def test_one_failing_container_is_reported_and_the_others_still_stop(ctrs: Ctrs) -> None:
    a = ctrs.run_d(*SLEEP)
    b = ctrs.run_d(*SLEEP)
    res = ctrs.cli("stop", "-t", "0", a, "no-such-ctr", b)
    assert res.returncode == 1, res
    assert res.stdout == f"{a}\n{b}\n"
    assert res.stderr == "pyctr-fast: No such container: no-such-ctr\n"
    assert not ctrs.state(a)["Running"] and not ctrs.state(b)["Running"]


# --------------------------------------------------------------------------- rm / prune


def test_rm_of_a_running_container_without_force_fails_and_changes_nothing(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP, opts=("--name", "busy"))
    before = sorted(os.listdir(ctrs.dir(cid)))
    pid = ctrs.state(cid)["Pid"]
    res = ctrs.cli("rm", "busy")
    assert_engine_error(
        res, 1,
        f"You cannot remove a running container {cid}. "
        "Stop the container before attempting removal or force remove",
    )  # fmt: skip
    assert sorted(os.listdir(ctrs.dir(cid))) == before
    assert _alive(pid) and ctrs.state(cid)["Status"] == "running"
    assert (ctrs.engine.root / "names" / "busy").is_symlink()
    assert not (ctrs.dir(cid) / "stopped").exists()


def test_rm_force_cleans_everything_up(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP, opts=("--name", "doomed", "--restart", "always"))
    st = ctrs.state(cid)
    assert ctrs.cgroup_dirs(cid)
    res = ctrs.cli("rm", "-f", "-v", "doomed")
    assert assert_ok(res) == "doomed\n"
    assert not ctrs.dir(cid).exists()
    assert not (ctrs.engine.root / "names" / "doomed").is_symlink()
    assert ctrs.cgroup_dirs(cid) == []
    assert wait_gone([st["Pid"], st["SupervisorPid"]]) == []
    assert_engine_error(ctrs.cli("rm", "doomed"), 1, "No such container: doomed")


def test_prune_removes_stopped_containers_only(ctrs: Ctrs) -> None:
    running = ctrs.run_d(*SLEEP)
    exited = ctrs.run_d("true")
    created = ctrs.create("true")
    ctrs.wait_for(exited, lambda s: not s["Running"])
    res = ctrs.cli("container", "prune", "-f")
    out = assert_ok(res)
    assert out.startswith("Deleted Containers:\n") and out.endswith("Total reclaimed space: 0B\n")
    assert set(out.split()) >= {exited, created}
    assert ctrs.ids() == [running]
    # Without -f it asks; anything but "y" keeps everything.
    ctrs.cli("stop", "-t", "0", running)
    res = ctrs.cli("container", "prune", input="n\n")
    assert res.returncode == 0 and "Are you sure you want to continue? [y/N]" in res.stdout
    assert ctrs.ids() == [running]


# --------------------------------------------------------------------------- names, prefixes


def test_names_are_unique_and_a_taken_name_is_a_conflict(ctrs: Ctrs) -> None:
    first = ctrs.run_d(*SLEEP, opts=("--name", "taken"))
    res = ctrs.cli("run", "-d", "--name", "taken", "--rootfs", str(ctrs.engine.rootfs), *SLEEP)
    assert_engine_error(res, 125, 'The container name "/taken" is already in use', first)
    res = ctrs.cli("create", "--name", "taken", "--rootfs", str(ctrs.engine.rootfs), *SLEEP)
    assert_engine_error(res, 125, "already in use")
    assert ctrs.ids() == [first]
    generated = {ctrs.doc(ctrs.create("true"))["Name"] for _ in range(5)}
    assert len(generated) == 5
    assert all(re.match(r"^/[a-z]+_[a-z]+[0-9]?$", n) for n in generated), generated


def test_ids_unique_prefixes_and_ambiguous_prefixes(ctrs: Ctrs) -> None:
    ids = [ctrs.create("true") for _ in range(17)]  # two must share a first digit
    by_first: dict[str, list[str]] = {}
    for cid in ids:
        by_first.setdefault(cid[0], []).append(cid)
    shared = next(v for v in by_first.values() if len(v) > 1)
    res = ctrs.cli("rm", shared[0][0])
    assert_engine_error(res, 1, f"multiple containers found with provided prefix: {shared[0][0]}")
    assert len(ctrs.ids()) == 17
    others = [cid for cid in ids if cid != shared[0]]
    prefix = next(
        shared[0][:n] for n in range(2, 64) if not any(o.startswith(shared[0][:n]) for o in others)
    )
    assert assert_ok(ctrs.cli("rm", prefix)) == prefix + "\n"
    assert shared[0] not in ctrs.ids() and shared[1] in ctrs.ids()
    assert assert_ok(ctrs.cli("rm", shared[1])) == shared[1] + "\n"


def test_rename_moves_the_name(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP, opts=("--name", "old"))
    other = ctrs.create("true", opts=("--name", "other"))
    assert_ok(ctrs.cli("rename", "old", "new"))
    assert ctrs.doc(cid)["Name"] == "/new" and ctrs.doc(cid, "launch.json")["name"] == "new"
    assert not (ctrs.engine.root / "names" / "old").is_symlink()
    assert_engine_error(ctrs.cli("stop", "old"), 1, "No such container: old")
    assert_engine_error(ctrs.cli("rename", "new", "other"), 1, "already in use", other)
    assert_engine_error(ctrs.cli("rename", "new", "new"), 1, "same name as its current name")
    assert_engine_error(ctrs.cli("rename", "new", "no!pe"), 1, "Invalid container name (no!pe)")
    assert_engine_error(ctrs.cli("rename", "new"), 1, "requires exactly 2 arguments")
    assert ctrs.doc(cid)["Name"] == "/new"
    assert assert_ok(ctrs.cli("rm", "-f", "new")) == "new\n"


# --------------------------------------------------------------------------- pause


def test_pause_freezes_the_container_and_unpause_thaws_it(ctrs: Ctrs) -> None:
    counter = ctrs.engine.rootfs / "tmp" / "count"
    script = (
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; "
        "mv /tmp/count.new /tmp/count; sleep 0.02; done"
    )
    cid = ctrs.run_d("sh", "-c", script, opts=("--name", "ticker"))

    def value() -> int:
        for _ in range(500):
            try:
                return int(counter.read_text())
            except (OSError, ValueError):
                time.sleep(0.01)
        raise AssertionError("the counter never wrote")

    first = value()
    time.sleep(0.2)
    assert value() > first
    assert assert_ok(ctrs.cli("pause", "ticker")) == "ticker\n"
    assert (FREEZER / CGROUP_PARENT / cid / "freezer.state").read_text().strip() == "FROZEN"
    st = ctrs.state(cid)
    assert (st["Status"], st["Paused"], st["Running"]) == ("paused", True, True)
    frozen = value()
    time.sleep(0.3)
    assert value() == frozen
    assert_engine_error(ctrs.cli("pause", "ticker"), 1, f"Container {cid} is already paused")
    assert assert_ok(ctrs.cli("unpause", "ticker")) == "ticker\n"
    time.sleep(0.3)
    assert value() > frozen
    assert ctrs.state(cid)["Status"] == "running"
    assert_engine_error(ctrs.cli("unpause", "ticker"), 1, f"Container {cid} is not paused")
    # A paused container can still be stopped (it is thawed to get the signal).
    assert_ok(ctrs.cli("pause", "ticker"))
    assert_ok(ctrs.cli("stop", "-t", "1", "ticker"))
    assert ctrs.state(cid)["Status"] == "exited"
    assert_engine_error(ctrs.cli("pause", "ticker"), 1, f"Container {cid} is not running")


# --------------------------------------------------------------------------- restart policies


def test_on_failure_restarts_up_to_the_maximum_then_gives_up(ctrs: Ctrs) -> None:
    cid = ctrs.run_d("sh", "-c", "echo run; exit 3", opts=("--restart", "on-failure:2"))
    assert assert_ok(ctrs.cli("wait", cid)) == "3\n"  # the first run's end
    st = ctrs.state(cid)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        st = ctrs.state(cid)
        if not st["Running"] and st["RestartCount"] == 2:
            break
        time.sleep(0.05)
    assert (st["Status"], st["ExitCode"], st["RestartCount"]) == ("exited", 3, 2), st
    assert ctrs.log_lines(cid) == ["run\n"] * 3
    assert ctrs.doc(cid)["HostConfig"]["RestartPolicy"] == {
        "Name": "on-failure",
        "MaximumRetryCount": 2,
    }


def test_always_restarts_until_stopped_and_stop_ends_it_for_good(ctrs: Ctrs) -> None:
    cid = ctrs.run_d("sh", "-c", "echo run; sleep 0.1", opts=("--restart", "always"))
    ctrs.wait_for(cid, lambda s: s["RestartCount"] >= 2)
    res = ctrs.cli("stop", "-t", "1", cid)
    assert_ok(res)
    st = ctrs.state(cid)
    assert st["Status"] == "exited", st
    count = len(ctrs.log_lines(cid))
    time.sleep(0.5)
    assert len(ctrs.log_lines(cid)) == count and ctrs.state(cid)["Status"] == "exited"
    assert ctrs.cgroup_dirs(cid) == []


def test_always_restarts_after_a_crash_but_not_after_a_kill_by_the_user(ctrs: Ctrs) -> None:
    cid = ctrs.run_d("sh", "-c", "echo run; sleep 1000", opts=("--restart", "always"))
    pid = ctrs.state(cid)["Pid"]
    kill_pid(pid)  # from the host, not the user's kill: restarted
    st = ctrs.wait_for(cid, lambda s: s["Status"] == "running" and s["Pid"] != pid)
    assert st["RestartCount"] == 1
    assert_ok(ctrs.cli("kill", cid))  # SIGKILL by the user: not restarted
    st = ctrs.wait_for(cid, lambda s: not s["Running"])
    time.sleep(0.5)
    st = ctrs.state(cid)
    assert (st["Status"], st["ExitCode"], st["RestartCount"]) == ("exited", 137, 1), st
    # start clears the user's stop: the policy applies again.
    assert_ok(ctrs.cli("start", cid))
    pid = ctrs.state(cid)["Pid"]
    kill_pid(pid)
    st = ctrs.wait_for(cid, lambda s: s["Status"] == "running" and s["Pid"] != pid)


def test_restart_stops_and_starts_again(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP)
    pid = ctrs.state(cid)["Pid"]
    assert assert_ok(ctrs.cli("restart", "-t", "0", cid)) == cid + "\n"
    st = ctrs.state(cid)
    assert st["Status"] == "running" and st["Pid"] != pid and _alive(st["Pid"])
    assert wait_gone([pid]) == []
