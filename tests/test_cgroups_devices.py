"""The cgroup v2 device controller: the eBPF program generated from a rule
list (rust/core/src/cgroups/devices.rs), on the real kernel.

Device programs attach to any cgroup2 directory, so these run on the
(controller-less) cgroup2 hierarchy this VM mounts at /sys/fs/cgroup/unified:
each test makes a group of its own under a throwaway parent, moves a child
process it started into it (``cgroup.procs``) and has the child try opens
and mknods.  Every group and process made here is removed by the test, also
when it fails.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CGROUP_PARENT, rmdir_cgroup
from pyctr_fast import _native, cgroups
from pyctr_fast.errors import UserError

UNIFIED = Path("/sys/fs/cgroup/unified")

pytestmark = pytest.mark.timeout(60)

# Runs in the group: each action is tried and reported as "ok" or the errno's name.
CHILD = r"""
import errno, json, os, sys
actions = json.loads(sys.stdin.readline())
out = []
for act in actions:
    try:
        if act[0] == "open":
            os.close(os.open(act[1], {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[act[2]]))
        elif act[0] == "mknod":
            kind = {"c": 0o020000, "b": 0o060000}[act[2]]
            os.mknod(act[1], kind | 0o600, os.makedev(act[3], act[4]))
            os.unlink(act[1])
        elif act[0] == "openpty":
            for fd in os.openpty():
                os.close(fd)
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(out), flush=True)
"""

DENY_ALL = {"allow": False, "access": "rwm"}


def rule(
    allow: bool, kind: str, major: int | None, minor: int | None, access: str
) -> dict[str, Any]:
    r: dict[str, Any] = {"allow": allow, "type": kind, "access": access}
    if major is not None:
        r["major"] = major
    if minor is not None:
        r["minor"] = minor
    return r


@pytest.fixture
def parent() -> Iterator[Path]:
    """A cgroup2 parent of the test's own; removed with its children."""
    if os.geteuid() != 0:
        pytest.skip("cgroups and bpf(2) need root")
    if not (UNIFIED / "cgroup.procs").exists():
        pytest.skip("no cgroup2 hierarchy at /sys/fs/cgroup/unified")
    top = UNIFIED / f"{CGROUP_PARENT}-devices-{os.getpid()}"
    top.mkdir()
    try:
        yield top
    finally:
        for child in top.iterdir():
            if child.is_dir():
                rmdir_cgroup(child)
        rmdir_cgroup(top)
        assert not top.exists()


_made = iter(range(1_000_000))


def group(parent: Path, rules: list[dict[str, Any]] | None = None, container: bool = False) -> Path:
    """A new group under ``parent`` with the program for ``rules`` attached."""
    d = parent / f"g{next(_made)}"
    d.mkdir()
    if rules is not None:
        _native.cgroup_v2_devices_attach(str(d), json.dumps(rules), container)
    return d


def attempt(d: Path, actions: list[list[Any]]) -> list[str]:
    """Run ``actions`` in a child moved into ``d``; what each one gave."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        (d / "cgroup.procs").write_text(str(proc.pid))
        out, _ = proc.communicate(json.dumps(actions) + "\n", timeout=30)
        assert proc.returncode == 0
        return list(json.loads(out))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def opens(d: Path, *modes: tuple[str, str]) -> list[str]:
    return attempt(d, [["open", path, mode] for path, mode in modes])


def test_deny_all_then_a_read_only_null(parent: Path, tmp_path: Path) -> None:
    d = group(parent, [DENY_ALL, rule(True, "c", 1, 3, "r")])
    got = attempt(
        d,
        [
            ["open", "/dev/null", "r"],
            ["open", "/dev/null", "w"],
            ["open", "/dev/null", "rw"],
            ["open", "/dev/zero", "r"],
            ["mknod", str(tmp_path / "null"), "c", 1, 3],
        ],
    )
    assert got == ["ok", "EPERM", "EPERM", "EPERM", "EPERM"]
    # A group without a program (in the same hierarchy) is not affected.
    assert opens(group(parent), ("/dev/null", "rw"), ("/dev/zero", "r")) == ["ok", "ok"]


def test_the_last_matching_rule_wins(parent: Path) -> None:
    null_rwm = rule(True, "c", 1, 3, "rwm")
    deny_null = rule(False, "c", 1, 3, "rwm")
    assert opens(group(parent, [DENY_ALL, null_rwm, deny_null]), ("/dev/null", "r")) == ["EPERM"]
    assert opens(group(parent, [DENY_ALL, deny_null, null_rwm]), ("/dev/null", "r")) == ["ok"]
    # a wildcard allowed after a specific deny, and a specific deny after it
    mem_any = rule(True, "c", 1, None, "rwm")
    got = opens(
        group(parent, [DENY_ALL, deny_null, mem_any]), ("/dev/null", "rw"), ("/dev/zero", "rw")
    )
    assert got == ["ok", "ok"]
    got = opens(
        group(parent, [DENY_ALL, mem_any, deny_null]), ("/dev/null", "rw"), ("/dev/zero", "rw")
    )
    assert got == ["EPERM", "ok"]
    # a later `a` rule resets everything before it
    assert opens(group(parent, [null_rwm, DENY_ALL]), ("/dev/null", "r")) == ["EPERM"]
    assert opens(group(parent, [DENY_ALL, {"allow": True, "type": "a"}]), ("/dev/zero", "rw")) == [
        "ok"
    ]


def test_access_bits_are_decided_one_by_one(parent: Path) -> None:
    # allow rwm, then deny w: reading still works, anything writing does not
    d = group(parent, [DENY_ALL, rule(True, "c", 1, 3, "rwm"), rule(False, "c", 1, 3, "w")])
    assert opens(d, ("/dev/null", "r"), ("/dev/null", "w"), ("/dev/null", "rw")) == [
        "ok",
        "EPERM",
        "EPERM",
    ]
    # r and w allowed by separate rules: O_RDWR needs (and has) both
    d = group(parent, [DENY_ALL, rule(True, "c", 1, 3, "r"), rule(True, "c", 1, 3, "w")])
    assert opens(d, ("/dev/null", "rw")) == ["ok"]
    # default allow with one deny exception (-1: any minor)
    d = group(parent, [{"allow": True}, rule(False, "c", 1, -1, "w")])
    assert opens(d, ("/dev/null", "r"), ("/dev/zero", "w"), ("/dev/kmsg", "r")) == [
        "ok",
        "EPERM",
        "ok",
    ]


def test_mknod_needs_m(parent: Path, tmp_path: Path) -> None:
    node = str(tmp_path / "node")
    d = group(parent, [DENY_ALL, rule(True, "c", 1, 3, "rw")])
    got = attempt(d, [["mknod", node, "c", 1, 3], ["open", "/dev/null", "rw"]])
    assert got == ["EPERM", "ok"]
    d = group(parent, [DENY_ALL, rule(True, "c", None, None, "m")])
    got = attempt(
        d, [["mknod", node, "c", 1, 3], ["mknod", node, "b", 7, 0], ["open", "/dev/null", "r"]]
    )
    assert got == ["ok", "EPERM", "EPERM"]


def test_the_container_defaults_after_deny_all(parent: Path, tmp_path: Path) -> None:
    d = group(parent, [], container=True)
    allowed = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/ptmx"]
    got = opens(d, *[(p, "rw") for p in allowed])
    assert got == ["ok"] * len(allowed)
    actions: list[list[Any]] = [
        ["openpty"],  # /dev/ptmx, then the slave in /dev/pts (136:N)
        ["open", "/dev/tty", "rw"],  # allowed: no controlling terminal, so ENXIO, not EPERM
        ["mknod", str(tmp_path / "c"), "c", 1, 1],  # c *:* m
        ["mknod", str(tmp_path / "b"), "b", 7, 0],  # b *:* m
    ]
    for path in ("/dev/kmsg", "/dev/loop-control"):
        if os.path.exists(path):
            actions.append(["open", path, "r"])
    got = attempt(d, actions)
    # /dev/tty: ENXIO without a controlling terminal, which is not a refusal
    assert got[0] == "ok" and got[1] in ("ok", "ENXIO") and got[2:4] == ["ok", "ok"]
    assert got[4:] == ["EPERM"] * (len(actions) - 4)
    assert attempt(group(parent), actions[4:]) == ["ok"] * (len(actions) - 4)  # without the program
    # the spec's rules come before the defaults, which re-allow what they deny
    d = group(parent, [rule(True, "c", 1, 11, "r"), rule(False, "c", 1, 3, "rwm")], container=True)
    assert opens(d, ("/dev/kmsg", "r"), ("/dev/null", "rw")) == ["ok", "ok"]
    # `deny a` alone: nothing
    assert opens(group(parent, [DENY_ALL]), ("/dev/null", "r"), ("/dev/urandom", "r")) == [
        "EPERM",
        "EPERM",
    ]


def test_large_numbers_and_long_lists_pass_the_verifier(parent: Path) -> None:
    rules = [
        DENY_ALL,
        rule(True, "c", 2**31 + 1, None, "rwm"),
        rule(False, "b", None, 2**32 - 1, "r"),
    ]
    rules += [rule(i % 2 == 0, "c", 200 + i, i, "rw") for i in range(500)]
    rules.append(rule(True, "c", 1, 3, "r"))
    assert opens(group(parent, rules), ("/dev/null", "r"), ("/dev/zero", "r")) == ["ok", "EPERM"]


def test_programs_of_ancestors_keep_their_say(parent: Path) -> None:
    outer = group(parent, [{"allow": True}, rule(False, "c", 1, 5, "rwm")])
    inner = outer / "inner"
    inner.mkdir()
    try:
        _native.cgroup_v2_devices_attach(str(inner), "[]", True)
        assert opens(inner, ("/dev/null", "rw"), ("/dev/zero", "r")) == ["ok", "EPERM"]
    finally:
        rmdir_cgroup(inner)


def test_the_v2_driver_enforces_resources_devices(parent: Path) -> None:
    drv = cgroups.V2Driver(parent.name, str(UNIFIED))
    res = {"devices": [DENY_ALL, rule(True, "c", 1, 3, "rw")]}
    plan = drv.create("drv", json.dumps(res))
    d = Path(plan.dirs[0])
    assert d.parent == parent
    assert opens(d, ("/dev/null", "rw"), ("/dev/zero", "r")) == ["ok", "EPERM"]
    # update leaves the program as it is
    cgroups.update(plan, json.dumps({"devices": [{"allow": True}]}))
    assert opens(d, ("/dev/zero", "r")) == ["EPERM"]


@pytest.mark.parametrize(
    "rules",
    [
        [rule(True, "p", 1, 3, "rwm")],
        [rule(True, "c", 1, 3, "rx")],
        [rule(True, "c", 2**32, 3, "r")],
    ],
)
def test_bad_rules_fail_with_the_devices_step(parent: Path, rules: list[dict[str, Any]]) -> None:
    d = group(parent)
    with pytest.raises(_native.ContainerError) as info:
        _native.cgroup_v2_devices_attach(str(d), json.dumps(rules))
    err: Any = info.value
    assert (err.step, err.errno, err.path) == ("devices", errno.EINVAL, str(d))
    # and the driver leaves nothing behind
    drv = cgroups.V2Driver(parent.name, str(UNIFIED))
    with pytest.raises(UserError, match=r"cannot create cgroup: devices .*: Invalid argument"):
        drv.create("bad", json.dumps({"devices": rules}))
    assert not (parent / "bad").exists()


def test_a_directory_that_is_not_a_cgroup_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("bpf(2) needs root")
    with pytest.raises(_native.ContainerError) as info:
        _native.cgroup_v2_devices_attach(str(tmp_path), json.dumps([DENY_ALL]))
    err: Any = info.value
    assert err.step == "devices" and err.errno != 0 and err.path == str(tmp_path)
