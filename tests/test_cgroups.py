"""pyctr_fast.cgroups: the v1 and v2 drivers on the real kernel.

v1 is this host's layout (one hierarchy per controller); v2 is exercised on
the (controller-less, but freeze-capable) cgroup2 hierarchy this VM mounts at
/sys/fs/cgroup/unified, under a throwaway parent.  Every group made here is
removed by the test itself (the leak guard checks the session's parent).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CGROUP_PARENT, rmdir_cgroup
from pyctr_fast import cgroups
from pyctr_fast.errors import UserError

UNIFIED = Path("/sys/fs/cgroup/unified")

pytestmark = pytest.mark.timeout(60)


def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("cgroups need root")


@pytest.fixture
def v1() -> cgroups.V1Driver:
    _root_only()
    drv = cgroups.driver()
    if not isinstance(drv, cgroups.V1Driver):
        pytest.skip("this host is not cgroup v1")
    return drv


@pytest.fixture
def v2(tmp_path: Path) -> Iterator[cgroups.V2Driver]:
    """A v2 driver on /sys/fs/cgroup/unified under a parent of its own."""
    _root_only()
    if not (UNIFIED / "cgroup.procs").exists():
        pytest.skip("no cgroup2 hierarchy at /sys/fs/cgroup/unified")
    parent = f"{CGROUP_PARENT}-v2-{os.getpid()}"
    drv = cgroups.V2Driver(parent, str(UNIFIED))
    yield drv
    top = UNIFIED / parent
    if top.exists():
        for child in top.iterdir():
            if child.is_dir():
                rmdir_cgroup(child)
        rmdir_cgroup(top)


class Counter:
    """A host process counting in a file (through short sleeps): frozen, it stops."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last = 0
        script = f"i=0; while :; do i=$((i+1)); echo $i > {path}; sleep 0.01; done"
        self.proc = subprocess.Popen(["sh", "-c", script])

    def value(self) -> int:
        """The count (the last one read while the file is caught mid-rewrite,
        which is how a process frozen between truncate and write leaves it)."""
        for _ in range(200 if self.last == 0 else 5):
            try:
                text = self.path.read_text().strip()
                if text:
                    self.last = int(text)
                    return self.last
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        if self.last == 0:
            raise AssertionError("the counter never wrote")
        return self.last

    def advances(self, seconds: float = 0.3) -> bool:
        before = self.value()
        time.sleep(seconds)
        return self.value() > before

    def end(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def counter(tmp_path: Path) -> Iterator[Counter]:
    c = Counter(tmp_path / "count")
    yield c
    c.end()


def _join(plan: cgroups.CgroupPlan, pid: int) -> None:
    for procs in plan.procs:
        Path(procs).write_text(str(pid))


# --------------------------------------------------------------------------- pure


MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /mnt/mem\\040ory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:34 /nested /elsewhere/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_v1_hierarchies_come_from_mountinfo_with_comounted_controllers_sharing_a_dir() -> None:
    drv = cgroups.V1Driver.detect("par", cgroups.cgroup_mounts(MOUNTINFO))
    assert drv is not None
    plan = drv.plan("abc")
    # freezer first (its cgroup.procs lists the container), cpu,cpuacct once,
    # the escaped mount point decoded, the subtree bind ignored, no pids here.
    assert plan.dirs == [
        "/sys/fs/cgroup/freezer/par/abc",
        "/mnt/mem ory/par/abc",
        "/sys/fs/cgroup/cpu,cpuacct/par/abc",
    ]
    assert plan.procs == [d + "/cgroup.procs" for d in plan.dirs]
    assert plan.oom_file == "/mnt/mem ory/par/abc/memory.oom_control"
    assert plan.dir_for("cpuacct") == plan.dir_for("cpu") == "/sys/fs/cgroup/cpu,cpuacct/par/abc"
    assert plan.dir_for("pids") is None
    assert plan.version == 1 and plan.path == "par/abc"


def test_a_plan_survives_launch_json_and_a_cgroup_parent_replaces_the_default() -> None:
    drv = cgroups.V1Driver.detect("par", cgroups.cgroup_mounts(MOUNTINFO))
    assert drv is not None
    plan = drv.plan("abc", "/custom/group/")
    assert plan.path == "custom/group/abc"
    assert plan.dir_for("memory") == "/mnt/mem ory/custom/group/abc"
    assert cgroups.CgroupPlan.from_doc(plan.to_doc()) == plan
    assert cgroups.CgroupPlan.from_doc({"version": 1}) is None
    assert cgroups.CgroupPlan.from_doc(None) is None


def test_the_parent_is_pyctr_fast_unless_the_environment_says_otherwise() -> None:
    assert cgroups.parent({}) == "pyctr-fast"
    assert cgroups.parent({"PYCTR_CGROUP_PARENT": "/a/b/"}) == "a/b"
    assert cgroups.parent() == CGROUP_PARENT  # the test session's own
    with pytest.raises(UserError, match="invalid PYCTR_CGROUP_PARENT"):
        cgroups.parent({"PYCTR_CGROUP_PARENT": "../escape"})


def test_the_host_driver_is_v1_here_with_every_controller_found() -> None:
    _root_only()
    drv = cgroups.driver()
    mounted = {
        ctl
        for mp, fstype, opts in cgroups.cgroup_mounts()
        if fstype == "cgroup"
        for ctl in opts
        if ctl in cgroups.V1_CONTROLLERS
    }
    if not mounted:
        pytest.skip("no cgroup v1 controllers mounted")
    assert isinstance(drv, cgroups.V1Driver)
    assert set(drv.hierarchies) == mounted
    assert all(d.endswith(f"/{CGROUP_PARENT}/x") for d in drv.plan("x").dirs)


# --------------------------------------------------------------------------- v1


def test_v1_create_makes_a_dir_per_hierarchy_and_remove_takes_them_and_the_parent(
    v1: cgroups.V1Driver,
) -> None:
    plan = v1.create("t-create")
    try:
        assert all(os.path.isdir(d) for d in plan.dirs)
        assert len(plan.dirs) == len(set(v1.hierarchies.values()))
        assert plan.oom_file is not None and os.path.exists(plan.oom_file)
        other = v1.create("t-other")
    finally:
        cgroups.remove(plan)
    assert not any(os.path.exists(d) for d in plan.dirs)
    assert all(os.path.isdir(p) for p in v1.parent_dirs())  # t-other still there
    cgroups.remove(other)
    assert not any(os.path.exists(p) for p in v1.parent_dirs())
    assert not any(os.path.exists(d) for d in other.dirs)


def test_v1_cpuset_group_inherits_the_parents_cpus_and_mems(v1: cgroups.V1Driver) -> None:
    if "cpuset" not in v1.hierarchies:
        pytest.skip("no cpuset hierarchy")
    plan = v1.create("t-cpuset")
    try:
        root = Path(v1.hierarchies["cpuset"])
        d = Path(plan.dir_for("cpuset") or "")
        for name in ("cpuset.cpus", "cpuset.mems"):
            assert (d / name).read_text().strip() == (root / name).read_text().strip() != ""
    finally:
        cgroups.remove(plan)


def test_v1_limits_are_in_the_files_before_anything_joins(v1: cgroups.V1Driver) -> None:
    resources = {
        "memory": {"limit": 32 << 20, "swap": 64 << 20, "reservation": 16 << 20, "swappiness": 10},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
        "pids": {"limit": 20},
    }
    import json

    plan = v1.create("t-limits", json.dumps(resources))
    try:

        def read(ctl: str, name: str) -> str:
            return Path(plan.dir_for(ctl) or "", name).read_text().strip()

        assert read("memory", "memory.limit_in_bytes") == str(32 << 20)
        assert read("memory", "memory.memsw.limit_in_bytes") == str(64 << 20)
        assert read("memory", "memory.soft_limit_in_bytes") == str(16 << 20)
        assert read("memory", "memory.swappiness") == "10"
        assert read("cpu", "cpu.shares") == "512"
        assert read("cpu", "cpu.cfs_quota_us") == "50000"
        assert read("cpu", "cpu.cfs_period_us") == "100000"
        assert read("cpuset", "cpuset.cpus") == "0"
        assert read("pids", "pids.max") == "20"
        assert cgroups.pids(plan) == []
        # update: raising memory above memsw reorders the writes
        cgroups.update(plan, json.dumps({"memory": {"limit": 128 << 20, "swap": 256 << 20}}))
        assert read("memory", "memory.limit_in_bytes") == str(128 << 20)
        assert read("memory", "memory.memsw.limit_in_bytes") == str(256 << 20)
        cgroups.update(plan, json.dumps({"memory": {"limit": 8 << 20, "swap": 16 << 20}}))
        assert read("memory", "memory.limit_in_bytes") == str(8 << 20)
        cgroups.update(plan, json.dumps({"pids": {"limit": 0}, "cpu": {"quota": -1}}))
        assert read("pids", "pids.max") == "max"
        assert read("cpu", "cpu.cfs_quota_us") == "-1"
    finally:
        cgroups.remove(plan)


def test_v1_a_rejected_limit_leaves_no_group(v1: cgroups.V1Driver) -> None:
    plan = v1.plan("t-bad-limit")
    with pytest.raises(UserError, match=r"^cannot create cgroup .*cpuset\.cpus: "):
        v1.create("t-bad-limit", '{"cpu": {"cpus": "63"}}')
    assert not any(os.path.exists(d) for d in plan.dirs)
    assert not any(os.path.exists(p) for p in v1.parent_dirs())


def test_v1_freeze_stops_every_process_and_thaw_resumes_them(
    v1: cgroups.V1Driver, counter: Counter
) -> None:
    plan = v1.create("t-freeze")
    try:
        _join(plan, counter.proc.pid)
        assert counter.proc.pid in cgroups.pids(plan)
        assert counter.advances()
        cgroups.freeze(plan)
        assert cgroups.is_frozen(plan)
        assert Path(plan.dirs[0], "freezer.state").read_text().strip() == "FROZEN"
        assert not counter.advances()
        cgroups.thaw(plan)
        assert not cgroups.is_frozen(plan)
        assert counter.advances()
    finally:
        counter.end()
        cgroups.remove(plan)


def test_remove_waits_out_a_group_whose_last_process_is_still_leaving(
    v1: cgroups.V1Driver, counter: Counter
) -> None:
    plan = v1.create("t-busy")
    _join(plan, counter.proc.pid)
    counter.proc.kill()  # not reaped yet: the group may still be busy
    cgroups.remove(plan)
    counter.proc.wait(timeout=10)
    assert not any(os.path.exists(d) for d in plan.dirs)


def test_a_failed_create_leaves_nothing_behind(v1: cgroups.V1Driver, tmp_path: Path) -> None:
    freezer = v1.hierarchies["freezer"]
    broken = cgroups.V1Driver(
        CGROUP_PARENT, {"freezer": freezer, "memory": str(tmp_path / "missing" / "memory")}
    )
    broken_plan = broken.plan("t-broken")
    (tmp_path / "missing").mkdir()
    (tmp_path / "missing" / "memory").write_text("a file, not a hierarchy")
    with pytest.raises(UserError, match=r"^cannot create cgroup .*: Not a directory$"):
        broken.create("t-broken")
    assert not os.path.exists(broken_plan.dirs[0])
    assert not os.path.exists(os.path.join(freezer, CGROUP_PARENT))


def test_a_container_without_a_cgroup_is_not_frozen_and_has_no_pids(v1: cgroups.V1Driver) -> None:
    missing = v1.plan("no-such-container")
    assert not cgroups.is_frozen(missing) and not cgroups.is_frozen(None)
    assert cgroups.pids(missing) == [] and cgroups.pids(None) == []


# --------------------------------------------------------------------------- v2


def test_v2_create_enables_available_controllers_and_makes_one_dir(v2: cgroups.V2Driver) -> None:
    plan = v2.create("t-v2")
    try:
        assert plan.dirs == [str(UNIFIED / v2.parent / "t-v2")]
        assert plan.procs == [str(UNIFIED / v2.parent / "t-v2" / "cgroup.procs")]
        assert os.path.isdir(plan.dirs[0])
        offered = (UNIFIED / "cgroup.controllers").read_text().split()
        enabled = (UNIFIED / v2.parent / "cgroup.subtree_control").read_text().split()
        assert set(enabled) >= {c for c in cgroups.V2_CONTROLLERS if c in offered}
        assert (plan.oom_file is None) == ("memory" not in offered)
    finally:
        cgroups.remove(plan)
    assert not (UNIFIED / v2.parent).exists()


def test_v2_freeze_stops_every_process_and_thaw_resumes_them(
    v2: cgroups.V2Driver, counter: Counter
) -> None:
    plan = v2.create("t-v2f")
    if not os.path.exists(os.path.join(plan.dirs[0], "cgroup.freeze")):
        cgroups.remove(plan)
        pytest.skip("this kernel's cgroup2 has no freezer")
    try:
        _join(plan, counter.proc.pid)
        assert cgroups.pids(plan) and counter.proc.pid in cgroups.pids(plan)
        assert counter.advances()
        cgroups.freeze(plan)
        assert cgroups.is_frozen(plan)
        assert "frozen 1" in Path(plan.dirs[0], "cgroup.events").read_text().splitlines()
        assert not counter.advances()
        cgroups.thaw(plan)
        assert not cgroups.is_frozen(plan)
        assert counter.advances()
    finally:
        counter.end()
        cgroups.remove(plan)
    assert not (UNIFIED / v2.parent).exists()


# ------------------------------------------------- v2 writes on a tree shaped like cgroup2

V2_KNOBS = (
    "cgroup.procs cgroup.freeze cgroup.events cpu.max cpu.weight cpuset.cpus cpuset.mems "
    "io.max io.weight memory.max memory.swap.max memory.low pids.max"
).split()


def _fake_level(d: Path, knobs: bool) -> None:
    """A directory as the kernel populates it: the controllers it offers,
    an empty subtree_control and (for a leaf) the knobs."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (d / "cgroup.subtree_control").write_text("")
    for name in V2_KNOBS if knobs else ():
        (d / name).write_text("")
    if knobs:
        (d / "cpu.max").write_text("max 100000\n")
        (d / "cgroup.events").write_text("populated 0\nfrozen 1\n")


@pytest.fixture
def fake_v2(tmp_path: Path) -> tuple[cgroups.V2Driver, Path]:
    root = tmp_path / "cgroup2"
    _fake_level(root, knobs=False)
    _fake_level(root / "engine", knobs=False)
    _fake_level(root / "engine" / "c1", knobs=True)
    return cgroups.V2Driver("engine", str(root)), root / "engine" / "c1"


def test_v2_writes_each_limit_to_its_file_in_v2_units(
    fake_v2: tuple[cgroups.V2Driver, Path],
) -> None:
    import json

    drv, leaf = fake_v2
    resources = {
        "memory": {"limit": 32 << 20, "swap": 64 << 20, "reservation": 16 << 20},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 20},
        "blockIO": {
            "weight": 500,
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        },
        "unified": {"memory.low": "8388608"},
    }
    plan = drv.create("c1", json.dumps(resources))
    assert plan.version == 2 and plan.dirs == [str(leaf)]
    root = leaf.parent.parent
    # Controllers enabled top-down in every ancestor, not in the leaf.
    assert (root / "cgroup.subtree_control").read_text() == "+cpu +cpuset +io +memory +pids"
    assert (leaf.parent / "cgroup.subtree_control").read_text() == (
        "+cpu +cpuset +io +memory +pids"
    )
    assert (leaf / "cgroup.subtree_control").read_text() == ""
    files = {name: (leaf / name).read_text() for name in V2_KNOBS}
    assert files["cpu.max"] == "50000 100000"
    assert files["cpu.weight"] == "39"  # shares 1024 -> weight 1 + (1022 * 9999) // 262142
    assert files["cpuset.cpus"] == "0" and files["cpuset.mems"] == "0"
    assert files["memory.max"] == str(32 << 20)
    assert files["memory.swap.max"] == str(32 << 20)  # OCI swap is memory + swap
    assert files["memory.low"] == "8388608"  # unified wins: written last
    assert files["pids.max"] == "20"
    assert files["io.weight"] == "4950"  # blkio 500 -> io.weight 1 + (490 * 9999) // 990
    assert files["io.max"] == "8:0 rbps=1048576"
    assert files["cgroup.procs"] == ""  # nothing joined by create


def test_v2_update_keeps_the_period_and_unlimited_is_max(
    fake_v2: tuple[cgroups.V2Driver, Path],
) -> None:
    drv, leaf = fake_v2
    plan = drv.create("c1", '{"cpu": {"quota": 50000, "period": 200000}}')
    cgroups.update(plan, '{"cpu": {"quota": 25000}}')
    assert (leaf / "cpu.max").read_text() == "25000 200000"
    cgroups.update(plan, '{"cpu": {"quota": -1}, "memory": {"limit": -1, "swap": -1}}')
    assert (leaf / "cpu.max").read_text() == "max 200000"
    assert (leaf / "memory.max").read_text() == "max"
    assert (leaf / "memory.swap.max").read_text() == "max"
    cgroups.update(plan, '{"pids": {"limit": 0}}')
    assert (leaf / "pids.max").read_text() == "max"


def test_v2_freeze_writes_cgroup_freeze_and_waits_for_the_event(
    fake_v2: tuple[cgroups.V2Driver, Path],
) -> None:
    drv, leaf = fake_v2
    plan = drv.create("c1")
    cgroups.freeze(plan)
    assert (leaf / "cgroup.freeze").read_text() == "1"
    assert cgroups.is_frozen(plan)


def test_v2_refuses_what_only_v1_has_with_a_one_line_error(
    fake_v2: tuple[cgroups.V2Driver, Path],
) -> None:
    drv, leaf = fake_v2
    plan = drv.plan("c1")
    for resources, needle in (
        ('{"memory": {"swappiness": 10}}', "swappiness is not supported on cgroup v2"),
        ('{"memory": {"disableOOMKiller": true}}', "OOM killer is not supported on cgroup v2"),
        ('{"memory": {"swap": 1048576}}', "a swap limit needs a memory limit"),
    ):
        with pytest.raises(UserError) as info:
            cgroups.update(plan, resources)
        assert needle in str(info.value) and "\n" not in str(info.value)
    (leaf / "memory.swap.max").unlink()  # a host without swap accounting
    with pytest.raises(UserError, match=r"memory\.swap\.max, which this cgroup v2 host does not"):
        cgroups.update(plan, '{"memory": {"limit": 33554432, "swap": 67108864}}')
