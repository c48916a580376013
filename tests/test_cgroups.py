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
        v1.remove("t-create")
    assert not any(os.path.exists(d) for d in plan.dirs)
    assert all(os.path.isdir(p) for p in v1.parent_dirs())  # t-other still there
    v1.remove("t-other")
    assert not any(os.path.exists(p) for p in v1.parent_dirs())
    assert not any(os.path.exists(d) for d in other.dirs)


def test_v1_freeze_stops_every_process_and_thaw_resumes_them(
    v1: cgroups.V1Driver, counter: Counter
) -> None:
    plan = v1.create("t-freeze")
    try:
        _join(plan, counter.proc.pid)
        assert counter.proc.pid in v1.pids("t-freeze")
        assert counter.advances()
        v1.freeze("t-freeze")
        assert v1.is_frozen("t-freeze") and cgroups.is_frozen("t-freeze")
        assert Path(plan.dirs[0], "freezer.state").read_text().strip() == "FROZEN"
        assert not counter.advances()
        v1.thaw("t-freeze")
        assert not v1.is_frozen("t-freeze")
        assert counter.advances()
    finally:
        counter.end()
        v1.remove("t-freeze")


def test_remove_waits_out_a_group_whose_last_process_is_still_leaving(
    v1: cgroups.V1Driver, counter: Counter
) -> None:
    plan = v1.create("t-busy")
    _join(plan, counter.proc.pid)
    counter.proc.kill()  # not reaped yet: the group may still be busy
    v1.remove("t-busy")
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
    assert not cgroups.is_frozen("no-such-container")
    assert cgroups.pids("no-such-container") == []


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
        v2.remove("t-v2")
    assert not (UNIFIED / v2.parent).exists()


def test_v2_freeze_stops_every_process_and_thaw_resumes_them(
    v2: cgroups.V2Driver, counter: Counter
) -> None:
    plan = v2.create("t-v2f")
    if not os.path.exists(os.path.join(plan.dirs[0], "cgroup.freeze")):
        v2.remove("t-v2f")
        pytest.skip("this kernel's cgroup2 has no freezer")
    try:
        _join(plan, counter.proc.pid)
        assert v2.pids("t-v2f") and counter.proc.pid in v2.pids("t-v2f")
        assert counter.advances()
        v2.freeze("t-v2f")
        assert v2.is_frozen("t-v2f")
        assert "frozen 1" in Path(plan.dirs[0], "cgroup.events").read_text().splitlines()
        assert not counter.advances()
        v2.thaw("t-v2f")
        assert not v2.is_frozen("t-v2f")
        assert counter.advances()
    finally:
        counter.end()
        v2.remove("t-v2f")
    assert not (UNIFIED / v2.parent).exists()
