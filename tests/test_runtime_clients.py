"""pyctr-fast-runtime driven by real clients: containerd (`ctr run --runc-binary`)
and podman (`--runtime`, with its own conmon).

Each client runs with private state (a containerd daemon on its own socket,
root and state dirs; podman with a throwaway --root/--runroot) and pulls the
busybox image from the test registry on loopback.  ``PYCTR_RUNTIME_UNDER_TEST``
may name another runtime binary (runc, crun) to check the harness itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest_registry import Pushed

pytestmark = pytest.mark.timeout(240)

IMAGE = "test/busybox:oci"


def _runtime() -> str:
    override = os.environ.get("PYCTR_RUNTIME_UNDER_TEST")
    if override:
        return shutil.which(override) or override
    here = Path(sys.executable).parent / "pyctr-fast-runtime"
    found = str(here) if here.exists() else shutil.which("pyctr-fast-runtime")
    if not found:
        pytest.fail("pyctr-fast-runtime is not installed next to this interpreter or on PATH")
    return found


def _need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (installed by .ci/setup)")
    if os.geteuid() != 0:
        pytest.skip("needs root")


def _mounts_under(path: str) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == path or point.startswith(path.rstrip("/") + "/"):
            found.append(point)
    return found


def _unmount_under(path: str) -> None:
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _cgroups_named(name: str) -> set[Path]:
    """``name`` directly under every mounted cgroup hierarchy."""
    return {p for p in Path("/sys/fs/cgroup").glob(f"*/{name}") if p.is_dir()}


def _remove_new_cgroups(name: str, before: set[Path]) -> None:
    """The parent groups a client made for its containers (containerd's
    namespace, podman's ``libpod_parent``) and left behind, deepest first;
    only those that were not there before, only empty ones (rmdir)."""
    for top in _cgroups_named(name) - before:
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, f"{res.args} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


# --------------------------------------------------------------------------- containerd


@dataclass
class Containerd:
    dir: Path
    proc: subprocess.Popen[bytes]

    @property
    def socket(self) -> str:
        return str(self.dir / "containerd.sock")

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run(["ctr", "--address", self.socket, "--namespace", "pyctr", *args], timeout)


CONTAINERD_CONFIG = """\
version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
]
[grpc]
  address = "{dir}/containerd.sock"
[ttrpc]
  address = "{dir}/containerd-ttrpc.sock"
[plugins."io.containerd.runtime.v1.linux"]
  shim_debug = false
"""


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    """A containerd daemon of the test's own (short path: socket names are
    limited to 108 bytes)."""
    _need("containerd", "ctr", "containerd-shim-runc-v2")
    groups_before = _cgroups_named("pyctr")
    directory = Path(tempfile.mkdtemp(prefix="pyctr-ctd-", dir="/tmp"))
    config = directory / "config.toml"
    config.write_text(CONTAINERD_CONFIG.format(dir=directory))
    log = open(directory / "containerd.log", "wb")  # closed below
    proc = subprocess.Popen(
        ["containerd", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    daemon = Containerd(directory, proc)
    try:
        deadline = time.monotonic() + 30
        while daemon.ctr("version", timeout=10).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((directory / "containerd.log").read_text()[-3000:])
            time.sleep(0.1)
        yield daemon
    finally:
        for task in daemon.ctr("tasks", "ls", "-q", timeout=30).stdout.split():
            daemon.ctr("tasks", "kill", "-s", "SIGKILL", task, timeout=30)
            daemon.ctr("tasks", "delete", "-f", task, timeout=30)
        for ctr_id in daemon.ctr("containers", "ls", "-q", timeout=30).stdout.split():
            daemon.ctr("containers", "delete", ctr_id, timeout=30)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()
        _unmount_under(str(directory))
        shutil.rmtree(directory, ignore_errors=True)
        # The runtime removes each container's group; the namespace's parent
        # group (`/pyctr`, from containerd's cgroupsPath) is ours to remove.
        _remove_new_cgroups("pyctr", groups_before)


@pytest.fixture(scope="module")
def ctr_image(containerd: Containerd, pushed: Pushed) -> str:
    ref = f"{pushed.registry.host}/{IMAGE}"
    _ok(containerd.ctr("images", "pull", "--plain-http", ref))
    return ref


def _logging_runtime(directory: Path) -> tuple[str, Path]:
    """A wrapper that records each command line the client runs, then
    executes the runtime under test (so the test sees it was ours)."""
    calls = directory / "runtime-calls.log"
    wrapper = directory / "runtime-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {_runtime()} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper), calls


def test_ctr_runs_a_container_through_pyctr_fast_runtime(
    containerd: Containerd, ctr_image: str
) -> None:
    name = f"t-{uuid.uuid4().hex[:12]}"
    runtime, calls = _logging_runtime(containerd.dir)
    res = containerd.ctr(
        "run", "--runc-binary", runtime, "--rm", ctr_image, name,
        "sh", "-c", "echo pid $$; cat /hello.txt; readlink /proc/self/ns/pid",
    )  # fmt: skip
    out = _ok(res).splitlines()
    commands = [line.split() for line in calls.read_text().splitlines()]
    for verb in ("create", "start", "delete"):
        assert any(verb in c and name in c for c in commands), (verb, commands)
    # The image's layers, as pid 1 of a pid namespace of its own.
    assert out[:2] == ["pid 1", "hello from layer 2"], out
    assert out[2] != os.readlink("/proc/self/ns/pid"), out
    assert name not in containerd.ctr("containers", "ls", "-q").stdout


def test_ctr_reports_the_exit_status_of_the_container(
    containerd: Containerd, ctr_image: str
) -> None:
    name = f"t-{uuid.uuid4().hex[:12]}"
    res = containerd.ctr(
        "run", "--runc-binary", _runtime(), "--rm", ctr_image, name, "sh", "-c", "exit 3"
    )
    assert res.returncode == 3, res


# --------------------------------------------------------------------------- podman


@dataclass
class Podman:
    dir: Path

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        d = self.dir
        argv = ["podman", "--root", str(d / "root"), "--runroot", str(d / "runroot"),
                "--tmpdir", str(d / "tmp"), "--runtime", _runtime(),
                "--cgroup-manager", "cgroupfs", "--events-backend", "none",
                "--storage-driver", "overlay", *args]  # fmt: skip
        return _run(argv, timeout)


#: What podman needs on this VM (its defaults exceed the VM's hard limits).
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


@pytest.fixture(scope="module")
def podman(pushed: Pushed) -> Iterator[tuple[Podman, str]]:
    _need("podman", "conmon")
    groups_before = _cgroups_named("libpod_parent")
    directory = Path(tempfile.mkdtemp(prefix="pyctr-podman-", dir="/tmp"))
    pm = Podman(directory)
    ref = f"{pushed.registry.host}/{IMAGE}"
    try:
        _ok(pm("pull", "--tls-verify=false", ref))
        yield pm, ref
    finally:
        for cid in pm("ps", "-aq", timeout=60).stdout.split():
            pm("rm", "-f", "-t", "0", cid, timeout=60)
        _unmount_under(str(directory))
        shutil.rmtree(directory, ignore_errors=True)
        _remove_new_cgroups("libpod_parent", groups_before)


def test_podman_run_rm_through_pyctr_fast_runtime(podman: tuple[Podman, str]) -> None:
    pm, ref = podman
    res = pm("run", "--rm", "--network", "none", *ULIMITS, ref, "sh", "-c", "echo hi; id -u")
    assert _ok(res).splitlines() == ["hi", "0"]


def test_podman_detached_exec_stop_and_rm_through_pyctr_fast_runtime(
    podman: tuple[Podman, str],
) -> None:
    pm, ref = podman
    name = f"p-{uuid.uuid4().hex[:12]}"
    cmd = ["busybox", "sleep", "1000"]
    _ok(pm("run", "-d", "--name", name, "--network", "none", *ULIMITS, ref, *cmd))
    try:
        assert _ok(pm("exec", name, "sh", "-c", "echo in; cat /hello.txt")).splitlines() == [
            "in",
            "hello from layer 2",
        ]
        inspect = _ok(pm("inspect", "--format", "{{.State.Status}} {{.OCIRuntime}}", name))
        assert inspect.split() == ["running", _runtime()]
        _ok(pm("stop", "-t", "1", name))
        assert _ok(pm("inspect", "--format", "{{.State.Status}}", name)).strip() == "exited"
    finally:
        _ok(pm("rm", "-f", name))
    assert name not in pm("ps", "-a", "--format", "{{.Names}}").stdout
