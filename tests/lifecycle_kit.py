"""Shared by the lifecycle tests: :class:`Ctrs` runs lifecycle commands for
one test and ``rm -f``s every container it made at the end (the ``ctrs``
fixture), so that the leak guard stays strict."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import cgroup_parent_dirs
from ctrkit import Engine, Result, _proc_alive, assert_ok

ID = re.compile(r"^[0-9a-f]{64}$")
FREEZER = Path("/sys/fs/cgroup/freezer")
SLEEP = ("sleep", "1000")


@dataclass
class Ctrs:
    """Runs lifecycle commands for one test and removes every container it
    made (``rm -f``) at the end, whatever happened."""

    engine: Engine

    def cli(self, *args: str, **kw: Any) -> Result:
        return self.engine.cli_run(*args, **kw)

    def run_d(self, *cmd: str, opts: tuple[str, ...] | list[str] = ()) -> str:
        """``run -d OPTS --rootfs ROOTFS CMD``: the new container's id."""
        res = self.cli("run", "-d", *opts, "--rootfs", str(self.engine.rootfs), *cmd)
        out = assert_ok(res).strip()
        assert ID.match(out), res
        return out

    def create(self, *cmd: str, opts: tuple[str, ...] | list[str] = ()) -> str:
        res = self.cli("create", *opts, "--rootfs", str(self.engine.rootfs), *cmd)
        out = assert_ok(res).strip()
        assert ID.match(out), res
        return out

    def ids(self) -> list[str]:
        return self.engine.container_dirs()

    def dir(self, cid: str) -> Path:
        return self.engine.root / "containers" / cid

    def record(self, cid: str) -> Any:
        from pyctr_fast import records

        return records.Record(str(self.engine.root), cid)

    def state(self, cid: str) -> dict[str, Any]:
        state: dict[str, Any] = self.record(cid).state()
        return state

    def doc(self, cid: str, name: str = "container.json") -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir(cid) / name).read_text())
        return data

    def wait_for(
        self, cid: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                st = self.state(cid)
            except FileNotFoundError:  # still being created
                st = {}
            if st and pred(st):
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"state never matched: {st}")
            time.sleep(0.02)

    def log_lines(self, cid: str) -> list[str]:
        path = self.dir(cid) / f"{cid}-json.log"
        if not path.exists():
            return []
        return [json.loads(line)["log"] for line in path.read_text().splitlines()]

    def cgroup_dirs(self, cid: str) -> list[Path]:
        return [d / cid for d in cgroup_parent_dirs() if (d / cid).exists()]

    def cleanup(self) -> None:
        left = self.ids()
        if left:
            self.cli("rm", "-f", *left, timeout=60)


@pytest.fixture
def ctrs(engine: Engine) -> Iterator[Ctrs]:
    c = Ctrs(engine)
    try:
        yield c
    finally:
        c.cleanup()


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    return _proc_alive(pid)


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
