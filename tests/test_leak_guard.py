"""The leak guard itself: an inner pytest session whose tests leak on purpose
must report each leak as a teardown error and clean it up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

LEAKY_TESTS = """
import subprocess, time

def test_leaks_a_container_like_process(rootfs, leak_guard):
    subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount --bind {rootfs} {rootfs} && exec sleep 98.765"],
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not any("98.765" in " ".join(p.cmdline) for p in leak_guard.scanner.processes()):
        assert time.monotonic() < deadline
        time.sleep(0.01)

def test_leaks_a_host_mount(rootfs):
    subprocess.run(["mount", "--bind", str(rootfs / "tmp"), str(rootfs / "mnt")], check=True)

def test_leaks_container_state(root):
    (root / "containers" / "0123456789ab").mkdir(parents=True)

def test_leaks_a_running_cli(engine):
    engine.popen("sleep", "97.531")
    engine.wait_for_container("97.531")

def test_leaks_a_cgroup():
    from conftest import cgroup_parent_dirs
    (cgroup_parent_dirs()[0] / "leaky-cgroup-86420").mkdir(parents=True)

def test_clean(engine):
    assert engine.run("true").returncode == 0
"""


def _alive_with(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker.encode() in cmd and b"unshare" not in cmd:
                pids.append(int(entry))
    return pids


def test_leak_guard_reports_and_cleans_every_kind_of_leak(tmp_path: Path) -> None:
    here = Path(__file__).parent
    inner = tmp_path / "inner"
    inner.mkdir()
    shutil.copy(here / "conftest.py", inner / "conftest.py")
    for helper in ("ctrkit.py", "conftest_registry.py", "registry_kit.py"):
        shutil.copy(here / helper, inner / helper)
    (inner / "test_leaky.py").write_text(LEAKY_TESTS)
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "--basetemp", str(tmp_path / "inner-tmp"), "--rootdir", str(inner), str(inner)],
        capture_output=True, text=True, timeout=100, check=False, cwd=inner,
    )  # fmt: skip
    out = res.stdout + res.stderr
    assert "6 passed, 5 errors" in out, out
    assert "cgroups left" in out and "leaky-cgroup-86420" in out, out
    assert "container processes left running (killed)" in out and "98.765" in out, out
    assert "mounts left in the host mount namespace (detached)" in out, out
    assert "per-container state left in" in out and "0123456789ab" in out, out
    assert "subprocesses still running (killed)" in out and "97.531" in out, out
    # ...and everything was cleaned up.
    assert _alive_with("sleep 98.765") == []
    assert _alive_with("sleep 97.531") == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(tmp_path / "inner-tmp") not in mounts
    assert list(Path("/sys/fs/cgroup").glob("*/pyctr-fast-test-*/leaky-cgroup-86420")) == []
