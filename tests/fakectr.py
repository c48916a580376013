"""Container directories written by the tests themselves (not tests).

:class:`FakeRoot` writes ``<root>/containers/<id>/`` exactly as
docs/lifecycle.md describes (``container.json``, ``state.json``,
``config.json``, ``launch.json``, the name link, json-file logs), so the
reading commands can be pinned on states a real container would take long to
reach (exited hours ago, dead, restarting...).  A "live" one is made live the
way the contract defines it: some process holds ``supervisor.lock`` (this
test process, through :meth:`FakeRoot.hold_lock`).  :meth:`FakeRoot.cleanup`
removes everything it wrote and releases the locks.

:class:`Detached` starts real containers with ``run -d`` and removes them
with ``rm -f`` at teardown.

The ``fake`` and ``detached`` fixtures give a test one of each (import them
into the test module).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import ctrkit
import pytest

NEVER = "0001-01-01T00:00:00Z"


def rfc3339(seconds: float) -> str:
    """A Unix time as the engine writes times (UTC, nanoseconds)."""
    secs = int(seconds)
    frac = min(round((seconds - secs) * 1e9), 999_999_999)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def ago(seconds: float) -> str:
    return rfc3339(time.time() - seconds)


def log_line(stream: str, text: str | bytes, when: float) -> bytes:
    """One json-file record."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    record = {"log": text, "stream": stream, "time": rfc3339(when)}
    return json.dumps(record, separators=(",", ":")).encode("utf-8", "surrogateescape") + b"\n"


def launch_doc(root: Path, cdir: Path, name: str, **fields: Any) -> dict[str, Any]:
    """launch.json (docs/lifecycle.md) of container directory ``cdir``: no
    stdin, no overlay, no restart, an unrotated json-file log, no cgroup;
    ``fields`` replace any of these."""
    cid = cdir.name
    doc: dict[str, Any] = {
        "id": cid,
        "name": name,
        "root": str(root),
        "stdin_open": False,
        "overlay": None,
        "log_path": str(cdir / f"{cid}-json.log"),
        "log_max_size": 0,
        "log_max_files": 1,
        "restart": {"name": "no", "max_retries": 0},
        "auto_remove": False,
        "cgroup_procs": [],
        "cgroup_dirs": [],
        "oom_file": None,
    }
    doc.update(fields)
    return doc


class FakeRoot:
    """Writes fake containers under ``root``; :meth:`cleanup` undoes it all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ids: list[str] = []
        self.lock_fds: list[int] = []
        self.counter = 0

    def add(
        self,
        name: str,
        *,
        created: str | None = None,
        status: str = "exited",
        exit_code: int = 0,
        started: str | None = None,
        finished: str | None = None,
        labels: dict[str, str] | None = None,
        image: str = "",
        image_name: str = "",
        args: list[str] | None = None,
        rootfs: str = "/nonexistent-rootfs",
        pid: int = 0,
        pid_start: int | None = None,
        overlay: dict[str, Any] | None = None,
        binds: Sequence[tuple[str, str, bool]] = (),
        network: str = "none",
        readonly: bool = False,
        cid: str | None = None,
    ) -> str:
        """Write a container; returns its id.  ``started``/``finished`` default
        to Docker's zero time for ``created`` and to ``created`` otherwise."""
        self.counter += 1
        cid = cid or os.urandom(32).hex()
        cdir = self.root / "containers" / cid
        cdir.mkdir(parents=True, mode=0o700)
        self.ids.append(cid)
        created = created or ago(60)
        if started is None:
            started = NEVER if status == "created" else created
        if finished is None:
            finished = created if status in ("exited", "dead") else NEVER
        argv = args or ["sh", "-c", "exit 0"]
        namespaces = ["pid", "ipc", "uts", "mount", "cgroup"] + (
            ["network"] if network == "none" else []
        )
        mounts = [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": []},
            {
                "destination": "/etc/hosts",
                "type": "bind",
                "source": str(cdir / "hosts"),
                "options": ["rbind", "rprivate", "rw"],
            },
        ]
        for source, dest, ro in binds:
            mounts.append(
                {
                    "destination": dest,
                    "type": "bind",
                    "source": source,
                    "options": ["rbind", "ro" if ro else "rw", "rprivate"],
                }
            )
        spec = {
            "ociVersion": "1.0.2",
            "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": argv,
                        "env": ["PATH=/bin"], "cwd": "/"},
            "root": {"path": rootfs, "readonly": readonly},
            "hostname": cid[:12],
            "mounts": mounts,
            "linux": {"namespaces": [{"type": t} for t in namespaces]},
        }  # fmt: skip
        doc = {
            "Id": cid,
            "Name": "/" + name,
            "Created": created,
            "Image": image,
            "ImageName": image_name or image or rootfs,
            "Path": argv[0],
            "Args": argv[1:],
            "Config": {"Labels": dict(labels or {}), "Image": image_name or image or rootfs},
            "HostConfig": {"NetworkMode": network},
        }
        state: dict[str, Any] = {
            "Status": status,
            "Pid": pid,
            "ExitCode": exit_code,
            "OOMKilled": False,
            "Error": "",
            "StartedAt": started,
            "FinishedAt": finished,
            "RestartCount": 0,
            "SupervisorPid": 0,
        }
        if pid_start is not None:
            state["PidStartTime"] = pid_start
        launch = launch_doc(self.root, cdir, name, overlay=overlay)
        for fname, obj in (
            ("config.json", spec),
            ("launch.json", launch),
            ("state.json", state),
            ("container.json", doc),
        ):
            (cdir / fname).write_text(json.dumps(obj))
        names = self.root / "names"
        names.mkdir(exist_ok=True, mode=0o700)
        os.symlink(cid, names / name)
        return cid

    def cdir(self, cid: str) -> Path:
        return self.root / "containers" / cid

    def log_path(self, cid: str) -> Path:
        return self.cdir(cid) / f"{cid}-json.log"

    def hold_lock(self, cid: str) -> int:
        """Hold ``supervisor.lock`` as a supervisor would (until :meth:`release`)."""
        fd = os.open(self.cdir(cid) / "supervisor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.lock_fds.append(fd)
        return fd

    def release(self, fd: int) -> None:
        if fd in self.lock_fds:
            self.lock_fds.remove(fd)
            os.close(fd)

    def cleanup(self) -> None:
        for fd in self.lock_fds:
            os.close(fd)
        self.lock_fds.clear()
        for cid in self.ids:
            shutil.rmtree(self.cdir(cid), ignore_errors=True)
        shutil.rmtree(self.root / "names", ignore_errors=True)
        self.ids.clear()


class Detached:
    """Real detached containers of one engine, removed at :meth:`cleanup`."""

    def __init__(self, engine: ctrkit.Engine) -> None:
        self.engine = engine
        self.ids: list[str] = []

    def run(self, *cmd: str, opts: Sequence[str] = (), image: str | None = None) -> str:
        """``run -d OPTS (--rootfs ROOTFS | IMAGE) CMD...``; returns the id."""
        where = [image] if image is not None else ["--rootfs", str(self.engine.rootfs)]
        res = self.engine.cli_run("run", "-d", *opts, *where, *cmd)
        assert res.returncode == 0, res
        cid = res.stdout.strip()
        assert len(cid) == 64, res
        self.ids.append(cid)
        return cid

    def pid(self, cid: str) -> int:
        state = json.loads((self.engine.root / "containers" / cid / "state.json").read_text())
        return int(state["Pid"])

    def cleanup(self) -> None:
        for cid in self.ids:
            self.engine.cli_run("rm", "-f", cid)
            cdir = self.engine.root / "containers" / cid
            if cdir.exists():  # rm failed: the leak guard reports (and ends) what is left
                shutil.rmtree(cdir, ignore_errors=True)
        self.ids.clear()


@pytest.fixture
def fake(root: Path) -> Iterator[FakeRoot]:
    f = FakeRoot(root)
    yield f
    f.cleanup()


@pytest.fixture
def detached(engine: ctrkit.Engine) -> Iterator[Detached]:
    d = Detached(engine)
    yield d
    d.cleanup()
