"""Fixtures for pyctr-fast's integration tests.

* ``rootfs_template`` (session): a busybox image built once from Debian's
  busybox-static; ``rootfs`` (per test): a private copy of it, so a test may
  write to its image freely; ``make_rootfs`` makes more copies.
* ``root`` (per test): a fresh data root (``--root``/``PYCTR_ROOT``); tests
  never touch /var/lib/pyctr-fast.
* ``engine`` (per test): runs the ``pyctr-fast`` CLI (or the API in a child
  interpreter) with that root and rootfs, always with a timeout.
* ``leak_guard`` (autouse): after every test, passed or failed, ends
  stragglers and fails the test's teardown if anything was left behind: a
  subprocess still running, a container process (identified by its mount
  table or executable pointing into this session's temporary directory, and
  killed by pid through a pidfd), a mount under that directory in our mount
  namespace, or per-container state in a data root.

Integration tests need root and a built extension (``pyctr_fast._native``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ctrkit
import pytest

pytest_plugins = ["conftest_registry"]

# No test may reach a registry off this machine (a pull of an image the test
# did not push would otherwise go to Docker Hub): the engine refuses.
os.environ["PYCTR_LOOPBACK_ONLY"] = "1"

# Containers' cgroups go under a parent of this session's own (in every
# hierarchy), so that the leak guard can tell ours apart and nothing touches
# the real "pyctr-fast" parent; removed at the end of the session.
CGROUP_PARENT = f"pyctr-fast-test-{os.getpid()}"
os.environ["PYCTR_CGROUP_PARENT"] = CGROUP_PARENT

# The bridge network's host-wide state (namespace files, leases) goes to a
# run directory of this session's own, removed at the end of the session;
# the bridge (pyctr0) and our nftables table too if the session made them.
NET_RUN_DIR = Path(f"/run/pyctr-fast-test-{os.getpid()}")
os.environ["PYCTR_RUN_DIR"] = str(NET_RUN_DIR)
BRIDGE = "pyctr0"


def port_leases() -> dict[str, str]:
    """The published ports' registry (``<run>/networks/ports.json``) now."""
    import json

    try:
        doc = json.loads((NET_RUN_DIR / "networks" / "ports.json").read_text())
    except FileNotFoundError:
        return {}
    leases: dict[str, str] = doc["leases"]
    return leases


def cgroup_parent_dirs() -> list[Path]:
    """The session's parent group in every mounted cgroup hierarchy."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] in (["cgroup"], ["cgroup2"]):
            found.append(Path(left.split()[4]) / CGROUP_PARENT)
    return found


def leftover_cgroups() -> list[Path]:
    """Container cgroups still present under the session's parent."""
    return sorted(
        child for d in cgroup_parent_dirs() if d.is_dir() for child in d.iterdir() if child.is_dir()
    )


def rmdir_cgroup(path: Path) -> None:
    """Remove an empty cgroup, retrying for up to ~2 s while it is busy."""
    for _ in range(100):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)  # still busy: its last process is being torn down


@pytest.fixture(scope="session", autouse=True)
def cgroup_parent() -> Iterator[str]:
    """The session's cgroup parent; removed (with anything left in it) at the end."""
    yield CGROUP_PARENT
    for child in leftover_cgroups():
        rmdir_cgroup(child)
    for d in cgroup_parent_dirs():
        if d.is_dir():
            rmdir_cgroup(d)


def _nft_table_exists() -> bool:
    import subprocess

    try:
        done = subprocess.run(["nft", "list", "table", "ip", "pyctr"], capture_output=True)
    except OSError:
        return False
    return done.returncode == 0


@pytest.fixture(scope="session", autouse=True)
def network_session() -> Iterator[Path]:
    """The session's run directory; at the end, whatever the session made of
    the bridge network goes: namespace files, the bridge, our nft table, and
    ip_forward back to 0 if it was."""
    import subprocess

    bridge_before = os.path.exists(f"/sys/class/net/{BRIDGE}")
    user_bridges_before = {n for n in os.listdir("/sys/class/net") if n.startswith("pcbr-")}
    table_before = _nft_table_exists()
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    forward_before = forward.read_text().strip() if forward.exists() else "1"
    yield NET_RUN_DIR
    netns = NET_RUN_DIR / "netns"
    if netns.is_dir():
        for entry in netns.iterdir():
            subprocess.run(["umount", "-l", str(entry)], capture_output=True, check=False)
    shutil.rmtree(NET_RUN_DIR, ignore_errors=True)
    if not bridge_before and os.path.exists(f"/sys/class/net/{BRIDGE}"):
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
    # User-defined networks' bridges (tests/test_networks.py removes its
    # networks; this is for a run interrupted before its finalizers).
    for name in sorted(os.listdir("/sys/class/net")):
        if name.startswith("pcbr-") and name not in user_bridges_before:
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
    if not table_before and _nft_table_exists():
        subprocess.run(["nft", "delete", "table", "ip", "pyctr"], capture_output=True, check=False)
    if forward_before == "0" and forward.read_text().strip() == "1":
        forward.write_text("0\n")


@dataclass
class Guard:
    scanner: ctrkit.LeakScanner
    tracker: ctrkit.Tracker = field(default_factory=ctrkit.Tracker)
    roots: list[Path] = field(default_factory=list)
    #: Image copies to delete once the guard has checked (and detached) mounts.
    disposable: list[Path] = field(default_factory=list)


def _default_root_entries() -> set[str]:
    d = ctrkit.DEFAULT_DATA_ROOT / "containers"
    try:
        return set(os.listdir(d))
    except OSError:
        return set()


@pytest.fixture(scope="session")
def session_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary directory: every rootfs, data root and canary lives here."""
    return tmp_path_factory.getbasetemp().resolve()


@pytest.fixture(autouse=True)
def leak_guard(session_base: Path) -> Iterator[Guard]:
    guard = Guard(ctrkit.LeakScanner(session_base))
    default_before = _default_root_entries()
    net_before = ctrkit.NetSnapshot.take(NET_RUN_DIR)
    yield guard

    problems: list[str] = []
    left = guard.tracker.end_all()
    if left:
        problems.append("subprocesses still running (killed): " + "; ".join(left))

    procs = guard.scanner.processes()
    if procs:
        problems.append(
            "container processes left running (killed): "
            + "; ".join(f"pid {p.pid} {p.cmdline} ({p.reason})" for p in procs)
        )
        for p in procs:
            ctrkit.kill_pid(p.pid)
        still = ctrkit.wait_gone([p.pid for p in procs])
        if still:
            problems.append(f"processes survived SIGKILL: {still}")

    mounts = guard.scanner.mounts()
    if mounts:
        problems.append(
            "mounts left in the host mount namespace (detached): "
            + "; ".join(m.line for m in mounts)
        )
        ctrkit.unmount_all(mounts)

    for root in guard.roots:
        cdir = root / "containers"
        if cdir.is_dir() and os.listdir(cdir):
            problems.append(f"per-container state left in {cdir}: {sorted(os.listdir(cdir))}")
            shutil.rmtree(cdir, ignore_errors=True)

    cgroups_left = leftover_cgroups()
    if cgroups_left:
        problems.append(f"cgroups left: {[str(p) for p in cgroups_left]}")
        for path in cgroups_left:
            rmdir_cgroup(path)

    net_after = net_before.settled(NET_RUN_DIR)
    net_left = net_before.changes(net_after)
    if net_left:
        problems.extend(net_left)
        net_before.clean_up_after(net_after, NET_RUN_DIR)

    new_default = _default_root_entries() - default_before
    if new_default:
        problems.append(
            f"state written under {ctrkit.DEFAULT_DATA_ROOT} (tests must use their own root): "
            f"{sorted(new_default)}"
        )

    for path in guard.disposable:
        shutil.rmtree(path, ignore_errors=True)

    if problems:
        pytest.fail("leak guard:\n- " + "\n- ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def integration_ready() -> None:
    """Root and an importable extension, or a clear reason why not."""
    if os.geteuid() != 0:
        msg = "the integration tests start real containers and must run as root"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    try:
        import pyctr_fast._native  # noqa: F401
    except ImportError as err:
        pytest.fail(
            f"pyctr_fast._native is not importable ({err}): run the README's set-up command",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def cli(integration_ready: None) -> list[str]:
    return ctrkit.cli_command()


@pytest.fixture(scope="session")
def rootfs_template(session_base: Path, integration_ready: None) -> Path:
    return ctrkit.build_busybox_rootfs(session_base / "image-template")


@pytest.fixture
def make_rootfs(rootfs_template: Path, tmp_path: Path, leak_guard: Guard) -> Callable[[str], Path]:
    """``make_rootfs(name)``: a private copy of the busybox image under the test's
    tmp_path (deleted after the leak guard's checks)."""

    def make(name: str) -> Path:
        path = ctrkit.copy_tree(rootfs_template, tmp_path / name)
        leak_guard.disposable.append(path)
        return path

    return make


@pytest.fixture
def rootfs(make_rootfs: Callable[[str], Path]) -> Path:
    return make_rootfs("rootfs")


@pytest.fixture
def make_root(leak_guard: Guard, tmp_path: Path) -> Callable[[str], Path]:
    """``make_root(name)``: a fresh data root path (not created), checked by the leak guard."""

    def make(name: str) -> Path:
        path = tmp_path / name
        leak_guard.roots.append(path)
        return path

    return make


@pytest.fixture
def root(make_root: Callable[[str], Path]) -> Path:
    path = make_root("pyctr-root")
    path.mkdir()
    return path


@pytest.fixture
def engine(cli: list[str], root: Path, rootfs: Path, leak_guard: Guard) -> ctrkit.Engine:
    return ctrkit.Engine(cli, root, rootfs, leak_guard.scanner, leak_guard.tracker)


@pytest.fixture(scope="session")
def caller_cap_bnd() -> int:
    """The test process's bounding set: what --privileged must give."""
    return int(ctrkit.host_status()["CapBnd"], 16)
