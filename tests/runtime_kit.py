"""Drive the real ``pyctr-fast-runtime`` binary in tests: a private ``--root``,
bundles made from the busybox rootfs fixture, and cleanup of every container."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TIMEOUT = 30.0


def runtime_binary() -> str:
    """The installed runtime: next to this interpreter, else on PATH."""
    here = Path(sys.executable).parent / "pyctr-fast-runtime"
    if here.exists():
        return str(here)
    found = shutil.which("pyctr-fast-runtime")
    if not found:
        raise RuntimeError("pyctr-fast-runtime is not installed (pip install -e .)")
    return found


def base_config(rootfs: Path, args: list[str] | None, cgroups_path: str | None) -> dict[str, Any]:
    """A runc-like config.json for the busybox rootfs (no terminal, writable root)."""
    config: dict[str, Any] = {
        "ociVersion": "1.2.0",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args or ["sleep", "100"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {
                k: ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]
                for k in ("bounding", "effective", "permitted")
            },
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": "rt",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        },
    }
    if cgroups_path is not None:
        config["linux"]["cgroupsPath"] = cgroups_path
    return config


class Runtime:
    """``pyctr-fast-runtime --root ROOT ...`` with a timeout; remembers ids to clean."""

    def __init__(self, root: Path, workdir: Path, cgroup_parent: str) -> None:
        self.binary = runtime_binary()
        self.root = root
        self.workdir = workdir
        self.cgroup_parent = cgroup_parent
        self.ids: list[str] = []

    def __call__(
        self, *args: str, check: bool = False, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        kw.setdefault("timeout", TIMEOUT)
        kw.setdefault("cwd", self.workdir)
        kw.setdefault("stdin", subprocess.DEVNULL)
        # Files, not pipes: a created container keeps the runtime's stdio
        # (as with runc), so a pipe would not reach EOF while it lives.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                [self.binary, "--root", str(self.root), *args],
                stdout=out,
                stderr=err,
                check=False,
                **kw,
            )
            out.seek(0)
            err.seek(0)
            res = subprocess.CompletedProcess(
                proc.args,
                proc.returncode,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )
        if check:
            assert res.returncode == 0, f"{args} -> {res.returncode}: {res.stderr}"
        return res

    def bundle(
        self,
        name: str,
        rootfs: Path,
        args: list[str] | None = None,
        *,
        cgroup: bool = True,
        edit: Any = None,
    ) -> Path:
        """A bundle dir whose config runs ``args`` in ``rootfs``; its group is
        ``/<session parent>/<name>``.  ``edit(config)`` may change the config."""
        path = self.workdir / f"bundle-{name}"
        path.mkdir()
        cg = f"/{self.cgroup_parent}/{name}" if cgroup else None
        config = base_config(rootfs, args, cg)
        if edit is not None:
            edit(config)
        (path / "config.json").write_text(json.dumps(config))
        return path

    def create(
        self, cid: str, bundle: Path, *extra: str, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        self.ids.append(cid)
        return self("create", "--bundle", str(bundle), *extra, cid, **kw)

    def state(self, cid: str) -> dict[str, Any]:
        res = self("state", cid, check=True)
        doc: dict[str, Any] = json.loads(res.stdout)
        return doc

    def wait_status(self, cid: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st["status"] == status or time.monotonic() > deadline:
                assert st["status"] == status, st
                return st
            time.sleep(0.02)

    def cleanup(self) -> None:
        """``delete --force`` every container, then remove the root."""
        if self.root.is_dir():
            for cid in set(self.ids) | set(os.listdir(self.root)):
                self("delete", "--force", cid)
            shutil.rmtree(self.root, ignore_errors=True)


def cgroup_dirs(relative: str) -> list[Path]:
    """``relative`` (a group path) in every mounted v1 controller hierarchy we use."""
    out = []
    for ctrl in ("freezer", "memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "devices"):
        base = Path("/sys/fs/cgroup") / ctrl
        if base.is_dir() and (base / "cgroup.procs").exists():
            out.append(base / relative.strip("/"))
    return out


def one_error_line(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert runc's failure shape: exit 1, one line on stderr naming ``needles``."""
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("pyctr-fast-runtime: "), lines
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
