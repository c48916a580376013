"""Resource limits end to end (issue 5): real containers under real cgroup v1
groups, driven through the CLI.

CPU use is measured from each container's ``cpuacct.usage`` over a few
seconds; CPU-bound containers are pinned with ``--cpuset-cpus`` so that they
do not compete with each other unless the test wants them to.  Memory limits
are proven with busybox ``dd bs=N``, which allocates and fills an N-byte
buffer; the pids limit with a fork bomb that only starts once the test has
seen ``pids.max`` written.  Every test leaves no container, process or cgroup
(the ``ctrs`` fixture ``rm -f``s, the autouse leak guard checks; several tests
also assert it explicitly).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import CGROUP_PARENT, cgroup_parent_dirs
from ctrkit import Engine, assert_engine_error, assert_ok, finish
from lifecycle_kit import SLEEP, Ctrs, ctrs
from limits_kit import (
    BUSY,
    MiB,
    Usage,
    cgroup_dir,
    cgroup_file,
    host_config,
    inspect,
    measure_cpu_settled,
    no_cgroups_left,
    status_field,
)

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.timeout(120)

__all__ = ["ctrs"]  # the fixture

#: Waits for /tmp/go (made by the test in the rootfs) before running "$@"-like work.
GATE = "while [ ! -e /tmp/go ]; do sleep 0.02; done; "
DD_64M = "dd if=/dev/zero of=/dev/null bs=64M count=1"
DD_16M = "dd if=/dev/zero of=/dev/null bs=16M count=1"


def _go(ctrs: Ctrs) -> None:
    (ctrs.engine.rootfs / "tmp" / "go").touch()


def _within(value: float, want: float, points: float) -> bool:
    return abs(value - want) <= points


# --------------------------------------------------------------------------- CPU


def test_busy_loop_uses_a_whole_cpu_unlimited_and_half_or_a_quarter_under_quota(
    ctrs: Ctrs,
) -> None:
    # The unlimited one alone on CPU 0; the 50% and 25% ones share CPU 1 (75% fits).
    free = ctrs.run_d(*BUSY, opts=("--cpuset-cpus", "0"))
    half = ctrs.run_d(*BUSY, opts=("--cpuset-cpus", "1", "--cpu-quota", "50000"))
    quarter = ctrs.run_d(*BUSY, opts=("--cpuset-cpus", "1", "--cpus", "0.25"))
    assert cgroup_file(ctrs, free, "cpu", "cpu.cfs_quota_us") == "-1"
    assert cgroup_file(ctrs, half, "cpu", "cpu.cfs_quota_us") == "50000"
    assert cgroup_file(ctrs, half, "cpu", "cpu.cfs_period_us") == "100000"
    assert cgroup_file(ctrs, quarter, "cpu", "cpu.cfs_quota_us") == "25000"
    assert cgroup_file(ctrs, quarter, "cpu", "cpu.cfs_period_us") == "100000"
    time.sleep(0.3)

    def good(u: Usage) -> bool:
        p = u.percent
        return p[free] >= 80 and _within(p[half], 50, 10) and _within(p[quarter], 25, 10)

    tries = measure_cpu_settled(ctrs, [free, half, quarter], good)
    report = "\n".join(map(str, tries))
    print(f"\ncpu: unlimited / --cpu-quota 50000 / --cpus 0.25:\n{report}")
    last = tries[-1]
    usage = last.percent
    # What holds whatever else the machine runs: the quotas cap, and the
    # unlimited group is never throttled.
    assert usage[half] <= 60 and usage[quarter] <= 35, report
    throttled = {
        cid: int(cgroup_file(ctrs, cid, "cpu", "cpu.stat").split("nr_throttled")[1].split()[0])
        for cid in (free, half, quarter)
    }
    assert throttled[free] == 0, throttled
    # The shares themselves, unless other work (builds, other test sessions)
    # took the CPU: CPU 0 is the unlimited one's, CPU 1 the capped pair's.
    other = [last.host_busy[0] - usage[free], last.host_busy[1] - usage[half] - usage[quarter]]
    if other[0] < 15:
        assert usage[free] >= 80, report
    if other[1] < 15:
        assert throttled[half] > 0 and throttled[quarter] > 0, throttled
        assert _within(usage[half], 50, 10), report
        assert _within(usage[quarter], 25, 10), report


def test_cpu_shares_split_one_cpu_in_the_ratio_of_the_shares(ctrs: Ctrs) -> None:
    big = ctrs.run_d(*BUSY, opts=("--cpuset-cpus", "0", "--cpu-shares", "1024"))
    small = ctrs.run_d(*BUSY, opts=("--cpuset-cpus", "0", "--cpu-shares", "512"))
    assert cgroup_file(ctrs, big, "cpu", "cpu.shares") == "1024"
    assert cgroup_file(ctrs, small, "cpu", "cpu.shares") == "512"
    time.sleep(0.3)

    def ratio(u: Usage) -> float:
        return u.percent[big] / max(u.percent[small], 0.01)

    tries = measure_cpu_settled(ctrs, [big, small], lambda u: 1.7 <= ratio(u) <= 2.3)
    report = "\n".join(f"ratio {ratio(u):.2f} {u}" for u in tries)
    print(f"\ncpu-shares 1024 vs 512 on CPU 0:\n{report}")
    assert 2 * 0.85 <= ratio(tries[-1]) <= 2 * 1.15, report
    # Both were pinned to CPU 0: together they used at most one CPU.
    assert tries[-1].percent[big] + tries[-1].percent[small] <= 105, report


def test_cpuset_cpus_is_the_only_cpu_the_process_may_run_on(ctrs: Ctrs) -> None:
    show = "grep Cpus_allowed_list /proc/self/status; exec sleep 1000"
    on0 = ctrs.run_d("sh", "-c", show, opts=("--cpuset-cpus", "0"))
    on1 = ctrs.run_d("sh", "-c", show, opts=("--cpuset-cpus", "1"))
    anywhere = ctrs.run_d("sh", "-c", show)
    for cid, want in ((on0, "0"), (on1, "1"), (anywhere, "0-1")):
        st = ctrs.wait_for(cid, lambda s: s["Status"] == "running")
        assert status_field(st["Pid"], "Cpus_allowed_list") == want, cid
        deadline = time.monotonic() + 10
        while not ctrs.log_lines(cid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ctrs.log_lines(cid) == [f"Cpus_allowed_list:\t{want}\n"], cid
        assert cgroup_file(ctrs, cid, "cpuset", "cpuset.cpus") == want
    assert host_config(ctrs, on0, "CpusetCpus") == {"CpusetCpus": "0"}
    assert host_config(ctrs, anywhere, "CpusetCpus") == {"CpusetCpus": ""}
    # A process exec'd into the container is in the same cpuset.
    res = ctrs.cli("exec", on0, "grep", "Cpus_allowed_list", "/proc/self/status")
    assert assert_ok(res) == "Cpus_allowed_list:\t0\n"
    # The foreground path too.
    res = ctrs.engine.run("grep", "Cpus_allowed_list", "/proc/self/status",
                          opts=["--cpuset-cpus", "1"])  # fmt: skip
    assert assert_ok(res) == "Cpus_allowed_list:\t1\n"


# --------------------------------------------------------------------------- memory and OOM


def test_allocating_past_the_memory_limit_is_oom_killed_and_below_it_survives(
    ctrs: Ctrs,
) -> None:
    big = ctrs.run_d("sh", "-c", GATE + DD_64M, opts=("-m", "32m"))
    small = ctrs.run_d("sh", "-c", GATE + DD_16M, opts=("-m", "32m"))
    for cid in (big, small):
        assert cgroup_file(ctrs, cid, "memory", "memory.limit_in_bytes") == str(32 * MiB)
    _go(ctrs)
    assert assert_ok(ctrs.cli("wait", big)) == "137\n"
    assert assert_ok(ctrs.cli("wait", small)) == "0\n"
    st = inspect(ctrs, big)["State"]
    assert (st["Status"], st["OOMKilled"], st["ExitCode"]) == ("exited", True, 137), st
    st = inspect(ctrs, small)["State"]
    assert (st["Status"], st["OOMKilled"], st["ExitCode"]) == ("exited", False, 0), st
    assert "1+0 records out\n" in ctrs.log_lines(small)
    # The group is gone once the container has exited for good.
    assert ctrs.cgroup_dirs(big) == [] and ctrs.cgroup_dirs(small) == []


def test_foreground_run_rm_with_memory_limit_exits_137_when_oom_killed(engine: Engine) -> None:
    res = engine.run("sh", "-c", DD_64M, opts=["-m", "32m"])
    assert res.returncode == 137, res
    res = engine.run("sh", "-c", DD_16M, opts=["-m", "32m"])
    assert res.returncode == 0, res
    assert "1+0 records out" in res.stderr, res
    no_cgroups_left()
    assert engine.container_dirs() == []


def test_oom_killed_is_about_the_last_run_and_a_clean_restart_clears_it(
    ctrs: Ctrs,
) -> None:
    cid = ctrs.create("sh", "-c", f"[ -e /tmp/go ] && {DD_16M} || {DD_64M}", opts=("-m", "32m"))
    assert_ok(ctrs.cli("start", cid))
    assert assert_ok(ctrs.cli("wait", cid)) == "137\n"
    assert inspect(ctrs, cid)["State"]["OOMKilled"] is True
    _go(ctrs)
    assert_ok(ctrs.cli("start", cid))
    assert assert_ok(ctrs.cli("wait", cid)) == "0\n"
    st = inspect(ctrs, cid)["State"]
    assert (st["OOMKilled"], st["ExitCode"]) == (False, 0), st


# --------------------------------------------------------------------------- pids


def test_pids_limit_contains_a_fork_bomb_and_the_container_stays_removable(
    ctrs: Ctrs,
) -> None:
    # The bomb only starts once the test has seen pids.max written (never unlimited).
    bomb = GATE + "f(){ f|f& }; f; exec sleep 1000"
    cid = ctrs.run_d("sh", "-c", bomb, opts=("--pids-limit", "20"))
    pids_dir = cgroup_dir(ctrs, cid, "pids")
    assert (pids_dir / "pids.max").read_text().strip() == "20"
    pid = ctrs.state(cid)["Pid"]
    assert str(pid) in (pids_dir / "cgroup.procs").read_text().split()
    _go(ctrs)
    seen = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        seen.append(int((pids_dir / "pids.current").read_text()))
        time.sleep(0.01)
    assert max(seen) <= 20, seen
    assert max(seen) == 20, f"the bomb never reached the limit: {seen}"
    events = (pids_dir / "pids.events").read_text().split()
    assert events[0] == "max" and int(events[1]) > 0, events  # forks were refused
    # The host is unaffected: the test process forks more than 20 children at once.
    children = [subprocess.Popen(["sleep", "0.2"]) for _ in range(30)]
    assert [c.wait(timeout=10) for c in children] == [0] * 30
    assert inspect(ctrs, cid)["State"]["Status"] == "running"
    res = ctrs.cli("rm", "-f", cid)
    assert assert_ok(res) == cid + "\n"
    assert res.seconds < 10, res
    assert ctrs.ids() == []
    assert not [d for d in cgroup_parent_dirs() if (d / cid).exists()]
    no_cgroups_left()


# --------------------------------------------------------------------------- pause


def test_a_paused_container_makes_no_progress_and_resumes_after_unpause(ctrs: Ctrs) -> None:
    ticker = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done"
    cid = ctrs.run_d("sh", "-c", ticker, opts=("--name", "ticker"))
    usage_file = cgroup_dir(ctrs, cid, "cpuacct") / "cpuacct.usage"

    def progress() -> tuple[int, int]:
        return len(ctrs.log_lines(cid)), int(usage_file.read_text())

    time.sleep(0.3)
    lines0, _ = progress()
    assert lines0 > 0
    assert assert_ok(ctrs.cli("pause", "ticker")) == "ticker\n"
    assert cgroup_file(ctrs, cid, "freezer", "freezer.state") == "FROZEN"
    ps = assert_ok(ctrs.cli("ps"))
    row = next(line for line in ps.splitlines() if line.startswith(cid[:12]))
    assert "(Paused)" in row, ps
    time.sleep(0.1)  # whatever was in the supervisor's pipe reaches the log
    frozen = progress()
    time.sleep(0.5)
    assert progress() == frozen, "the paused container still ran"
    assert inspect(ctrs, cid)["State"]["Paused"] is True
    assert assert_ok(ctrs.cli("unpause", "ticker")) == "ticker\n"
    time.sleep(0.3)
    after = progress()
    assert after[0] > frozen[0] and after[1] > frozen[1], (frozen, after)
    assert "(Paused)" not in assert_ok(ctrs.cli("ps"))
    # The counter went on from where it stopped: the same process, not a restart.
    numbers = [int(x) for x in ctrs.log_lines(cid)]
    assert numbers == list(range(1, len(numbers) + 1))


# --------------------------------------------------------------------------- update


def test_update_memory_of_a_running_container_changes_the_limit_and_is_enforced(
    ctrs: Ctrs,
) -> None:
    cid = ctrs.run_d("sh", "-c", GATE + DD_64M)
    limit = cgroup_dir(ctrs, cid, "memory") / "memory.limit_in_bytes"
    assert int(limit.read_text()) > 1 << 60  # unlimited
    assert assert_ok(ctrs.cli("update", "-m", "32m", cid)) == cid + "\n"
    assert limit.read_text().strip() == str(32 * MiB)
    assert host_config(ctrs, cid, "Memory")["Memory"] == 32 * MiB
    _go(ctrs)  # now allocate 64 MB: above the new limit
    assert assert_ok(ctrs.cli("wait", cid)) == "137\n"
    st = inspect(ctrs, cid)["State"]
    assert (st["OOMKilled"], st["ExitCode"]) == (True, 137), st


def test_a_foreground_container_with_limits_can_be_updated_and_paused(ctrs: Ctrs) -> None:
    # A foreground run --rm gets a cgroup when a limit is given: update and pause reach it.
    proc = ctrs.engine.popen("sh", "-c", GATE + DD_64M, opts=["--name", "fg", "-m", "128m"])
    cid = ctrs.engine.wait_for_container_dir()
    ctrs.wait_for(cid, lambda s: s["Status"] == "running")
    limit = cgroup_dir(ctrs, cid, "memory") / "memory.limit_in_bytes"
    assert limit.read_text().strip() == str(128 * MiB)
    assert assert_ok(ctrs.cli("pause", "fg")) == "fg\n"
    assert cgroup_file(ctrs, cid, "freezer", "freezer.state") == "FROZEN"
    assert assert_ok(ctrs.cli("update", "-m", "32m", "fg")) == "fg\n"
    assert limit.read_text().strip() == str(32 * MiB)
    assert assert_ok(ctrs.cli("unpause", "fg")) == "fg\n"
    _go(ctrs)
    res = finish(proc)
    assert res.returncode == 137, res
    assert ctrs.ids() == []
    no_cgroups_left()


def test_update_cpu_quota_and_cpus_of_running_containers_changes_the_measured_usage(
    ctrs: Ctrs,
) -> None:
    by_quota = ctrs.run_d(*BUSY, opts=("--cpuset-cpus", "1", "--cpu-quota", "50000"))
    by_cpus = ctrs.run_d(*BUSY, opts=("--cpuset-cpus", "0", "--cpus", "0.5"))
    time.sleep(0.3)

    def near(want_quota: float, want_cpus: float) -> Callable[[Usage], bool]:
        def good(u: Usage) -> bool:
            return _within(u.percent[by_quota], want_quota, 10) and _within(
                u.percent[by_cpus], want_cpus, 10
            )

        return good

    tries = measure_cpu_settled(ctrs, [by_quota, by_cpus], near(50, 50), 2.0)
    report = "\n".join(map(str, tries))
    print(f"\nupdate: before (50% and 50%):\n{report}")
    assert near(50, 50)(tries[-1]), report

    assert assert_ok(ctrs.cli("update", "--cpu-quota", "20000", by_quota)) == by_quota + "\n"
    assert assert_ok(ctrs.cli("update", "--cpus", "0.25", by_cpus)) == by_cpus + "\n"
    assert cgroup_file(ctrs, by_quota, "cpu", "cpu.cfs_quota_us") == "20000"
    assert cgroup_file(ctrs, by_cpus, "cpu", "cpu.cfs_quota_us") == "25000"
    assert cgroup_file(ctrs, by_cpus, "cpu", "cpu.cfs_period_us") == "100000"
    keys = ("CpuQuota", "CpuPeriod", "NanoCpus")
    assert host_config(ctrs, by_quota, *keys) == {"CpuQuota": 20000, "CpuPeriod": 0, "NanoCpus": 0}
    assert host_config(ctrs, by_cpus, *keys) == {
        "CpuQuota": 0, "CpuPeriod": 0, "NanoCpus": 250_000_000,
    }  # fmt: skip
    time.sleep(0.2)
    tries = measure_cpu_settled(ctrs, [by_quota, by_cpus], near(20, 25), 2.0)
    report = "\n".join(map(str, tries))
    print(f"\nupdate: after (20% and 25%):\n{report}")
    assert near(20, 25)(tries[-1]), report


def test_update_of_a_stopped_container_is_applied_by_the_next_start(ctrs: Ctrs) -> None:
    show = (
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
        "/sys/fs/cgroup/pids/pids.max"
    )
    cid = ctrs.create("sh", "-c", show, opts=("-m", "64m", "--cpu-quota", "50000"))
    # Never started yet.
    res = ctrs.cli("update", "-m", "48m", "--cpu-quota", "30000", "--pids-limit", "40", cid)
    assert assert_ok(res) == cid + "\n"
    assert ctrs.cgroup_dirs(cid) == []  # update made no group for a container not running
    assert assert_ok(ctrs.cli("start", "-a", cid)) == f"{48 * MiB}\n30000\n40\n"
    # Exited after a run.
    assert ctrs.cgroup_dirs(cid) == []
    res = ctrs.cli("update", "-m", "40m", "--cpu-quota", "40000", cid)
    assert assert_ok(res) == cid + "\n"
    assert assert_ok(ctrs.cli("start", "-a", cid)) == f"{40 * MiB}\n40000\n40\n"
    hc = host_config(ctrs, cid, "Memory", "MemorySwap", "CpuQuota", "PidsLimit")
    # MemorySwap keeps what create made of -m 64m (twice it), as Docker's update does.
    assert hc == {"Memory": 40 * MiB, "MemorySwap": 128 * MiB, "CpuQuota": 40000, "PidsLimit": 40}


def test_update_errors_are_one_line_and_change_nothing(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP, opts=("-m", "32m", "--cpus", "0.5"))
    limit = cgroup_dir(ctrs, cid, "memory") / "memory.limit_in_bytes"
    keys = ("Memory", "MemorySwap", "NanoCpus", "CpuQuota")
    before = host_config(ctrs, cid, *keys)
    assert before == {"Memory": 32 * MiB, "MemorySwap": 64 * MiB, "NanoCpus": 500_000_000,
                      "CpuQuota": 0}  # fmt: skip

    assert_engine_error(ctrs.cli("update", "-m", "32m", "nosuch"), 1, "No such container: nosuch")
    assert_engine_error(
        ctrs.cli("update", "-m", "4m", cid), 1, "Minimum memory limit allowed is 6MB"
    )
    # Above the memory-swap limit set at run (64m) without raising it.
    assert_engine_error(
        ctrs.cli("update", "-m", "100m", cid),
        1,
        f"Cannot update container {cid}",
        "Memory limit should be smaller than already set memoryswap limit, "
        "update the memoryswap at the same time",
    )
    # --cpu-quota when --cpus was given (Docker: they exclude each other).
    assert_engine_error(ctrs.cli("update", "--cpu-quota", "20000", cid), 1, "Conflicting options")
    assert_engine_error(ctrs.cli("update", cid), 1, "you must provide one or more flags")
    assert host_config(ctrs, cid, *keys) == before
    assert limit.read_text().strip() == str(32 * MiB)
    assert cgroup_file(ctrs, cid, "cpu", "cpu.cfs_quota_us") == "50000"
    # Raising both together is fine.
    res = ctrs.cli("update", "-m", "100m", "--memory-swap", "200m", cid)
    assert assert_ok(res) == cid + "\n"
    assert limit.read_text().strip() == str(100 * MiB)
    assert cgroup_file(ctrs, cid, "memory", "memory.memsw.limit_in_bytes") == str(200 * MiB)


# --------------------------------------------------------------------------- cleanup


def test_an_unavailable_cpuset_is_refused_before_anything_is_made(ctrs: Ctrs) -> None:
    rootfs = str(ctrs.engine.rootfs)
    for verb in (("run", "-d"), ("create",), ("run", "--rm")):
        res = ctrs.cli(*verb, "--cpuset-cpus", "1-7", "--rootfs", rootfs, *SLEEP)
        assert_engine_error(
            res, 125, "Requested CPUs are not available - requested 1-7, available: 0-1"
        )
        assert ctrs.ids() == [], verb
        no_cgroups_left()
    assert not ctrs.engine.scanner.processes()


def test_a_start_that_fails_after_the_cgroup_was_made_leaves_no_cgroup(ctrs: Ctrs) -> None:
    rootfs = str(ctrs.engine.rootfs)
    limits = ("-m", "32m", "--pids-limit", "10", "--cpu-quota", "50000")
    # run -d: the container is kept (Docker), its group is not.
    res = ctrs.cli("run", "-d", *limits, "--rootfs", rootfs, "/no/such/program")
    assert_engine_error(res, 127, "/no/such/program")
    (cid,) = ctrs.ids()
    assert ctrs.cgroup_dirs(cid) == []
    no_cgroups_left()
    # start of a created one.
    res = ctrs.cli("create", *limits, "--rootfs", rootfs, "/no/such/program")
    created = assert_ok(res).strip()
    assert_engine_error(ctrs.cli("start", created), 1, "/no/such/program")
    assert ctrs.state(created)["ExitCode"] == 127
    no_cgroups_left()
    # Foreground run --rm with limits (its group is made in the CLI): nothing left at all.
    res = ctrs.engine.run("/no/such/program", opts=list(limits))
    assert_engine_error(res, 127, "/no/such/program")
    assert sorted(ctrs.ids()) == sorted([cid, created])
    no_cgroups_left()
    assert not ctrs.engine.scanner.processes()
    assert_ok(ctrs.cli("rm", cid, created))
    no_cgroups_left()


# --------------------------------------------------------------------------- inside the container


def _inside_script() -> str:
    return (
        "cat /proc/self/cgroup; echo ---; "
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
        "echo ---; find /sys/fs/cgroup/memory -mindepth 1 -type d; echo ---; "
        "mkdir /sys/fs/cgroup/memory/escape 2>&1; "
        "(echo 0 > /sys/fs/cgroup/memory/memory.limit_in_bytes) 2>&1; echo ---; "
        "grep ' /sys/fs/cgroup' /proc/self/mountinfo"
    )


def _check_inside(out: str) -> None:
    cgroup, limits, children, writes, mounts = out.split("---\n")
    lines = cgroup.splitlines()
    assert lines and all(line.endswith(":/") for line in lines), cgroup
    assert CGROUP_PARENT not in out
    assert limits.split() == [str(32 * MiB), "25"]
    assert children.split() == [], "the container sees other groups"
    assert writes.count("Read-only file system") == 2, writes
    for line in mounts.splitlines():
        assert "ro" in line.split()[5].split(","), line
    assert any(line.split()[4] == "/sys/fs/cgroup/memory" for line in mounts.splitlines())


def test_inside_cgroupfs_is_read_only_and_rooted_at_the_containers_own_group(
    ctrs: Ctrs,
) -> None:
    limits = ("-m", "32m", "--pids-limit", "25")
    cid = ctrs.run_d("sh", "-c", _inside_script(), opts=limits)
    assert assert_ok(ctrs.cli("wait", cid)) == "0\n"
    _check_inside("".join(ctrs.log_lines(cid)))
    # The foreground run --rm path with limits.
    res = ctrs.engine.run("sh", "-c", _inside_script(), opts=list(limits))
    _check_inside(assert_ok(res))


# --------------------------------------------------------------------------- inspect


HC_KEYS = (
    "Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuQuota", "CpuPeriod",
    "CpuShares", "CpusetCpus", "PidsLimit",
)  # fmt: skip


def test_inspect_host_config_shows_the_limits_as_docker_does(ctrs: Ctrs) -> None:
    a = ctrs.run_d(*SLEEP, opts=(
        "-m", "32m", "--memory-swap", "96m", "--memory-reservation", "16m", "--cpus", "0.5",
        "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "50",
    ))  # fmt: skip
    assert host_config(ctrs, a, *HC_KEYS) == {
        "Memory": 32 * MiB, "MemorySwap": 96 * MiB, "MemoryReservation": 16 * MiB,
        "NanoCpus": 500_000_000, "CpuQuota": 0, "CpuPeriod": 0, "CpuShares": 512,
        "CpusetCpus": "0", "PidsLimit": 50,
    }  # fmt: skip
    files = {
        ("memory", "memory.limit_in_bytes"): str(32 * MiB),
        ("memory", "memory.memsw.limit_in_bytes"): str(96 * MiB),
        ("memory", "memory.soft_limit_in_bytes"): str(16 * MiB),
        ("cpu", "cpu.cfs_quota_us"): "50000",
        ("cpu", "cpu.cfs_period_us"): "100000",
        ("cpu", "cpu.shares"): "512",
        ("cpuset", "cpuset.cpus"): "0",
        ("pids", "pids.max"): "50",
    }
    assert {k: cgroup_file(ctrs, a, *k) for k in files} == files

    # -m alone: Docker doubles it for the swap limit; quota and period as given.
    b = ctrs.run_d(*SLEEP, opts=("-m", "32m", "--cpu-quota", "30000", "--cpu-period", "50000"))
    assert host_config(ctrs, b, *HC_KEYS) == {
        "Memory": 32 * MiB, "MemorySwap": 64 * MiB, "MemoryReservation": 0, "NanoCpus": 0,
        "CpuQuota": 30000, "CpuPeriod": 50000, "CpuShares": 0, "CpusetCpus": "",
        "PidsLimit": None,
    }  # fmt: skip
    assert cgroup_file(ctrs, b, "memory", "memory.memsw.limit_in_bytes") == str(64 * MiB)
    assert cgroup_file(ctrs, b, "cpu", "cpu.cfs_quota_us") == "30000"
    assert cgroup_file(ctrs, b, "cpu", "cpu.cfs_period_us") == "50000"

    # No flags: zeros, an empty cpuset and no pids limit (null), as Docker shows.
    c = ctrs.create(*SLEEP)
    assert host_config(ctrs, c, *HC_KEYS) == {
        "Memory": 0, "MemorySwap": 0, "MemoryReservation": 0, "NanoCpus": 0, "CpuQuota": 0,
        "CpuPeriod": 0, "CpuShares": 0, "CpusetCpus": "", "PidsLimit": None,
    }  # fmt: skip
    # --memory-swap -1: unlimited swap, stored as -1.
    d = ctrs.create(*SLEEP, opts=("-m", "32m", "--memory-swap", "-1"))
    assert host_config(ctrs, d, "Memory", "MemorySwap") == {"Memory": 32 * MiB, "MemorySwap": -1}
    # What inspect shows is what container.json records.
    assert json.loads((ctrs.dir(a) / "container.json").read_text())["HostConfig"]["NanoCpus"] == (
        500_000_000
    )


def test_cgroup_parent_from_the_environment_holds_every_group(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP, opts=("-m", "32m"))
    dirs = [Path(d) for d in ctrs.doc(cid, "launch.json")["cgroup"]["dirs"]]
    assert dirs and all(d.parent.name == CGROUP_PARENT and d.name == cid for d in dirs), dirs
    pid = ctrs.state(cid)["Pid"]
    own = {
        line.split(":")[1]: line.split(":")[2]
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    }
    for ctl in ("memory", "pids", "freezer", "cpuset", "blkio"):
        assert own[ctl] == f"/{CGROUP_PARENT}/{cid}", own
