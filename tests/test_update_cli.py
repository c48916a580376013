"""``pyctr-fast update``: Docker's update rules (:func:`update_limits`: the
daemon's checks, the merge into the container's ``HostConfig``, the OCI delta
to write) and the command's front end (flags, containers, messages, exit
codes).

For the front end, the containers are directories written by the test
(tests/fakectr.py) and the CLI runs in this process;
:func:`pyctr_fast.lifecycle.update_resources` (the cgroup writer's side,
pinned end to end by the lead's tests) is replaced by a recorder, so what is
pinned here is what the front end hands it: the container, the OCI delta and
the merged ``HostConfig``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakectr import FakeRoot, fake
from pyctr_fast import lifecycle
from pyctr_fast.cli import _main
from pyctr_fast.errors import UserError
from pyctr_fast.flags import parse_flags
from pyctr_fast.records import Record
from pyctr_fast.resources import (
    HOST_CONFIG_DEFAULTS,
    RESOURCE_FLAGS,
    UPDATE_FLAGS,
    Host,
    Limits,
    UpdateConflict,
    update_limits,
)
from pyctr_fast.resources_host import ALL_FEATURES
from test_resources import V1, block_device, hc

__all__ = ["fake"]  # the fixture

MiB = 1024 * 1024


def update(current: dict[str, Any], *args: str, host: Host = V1) -> Limits:
    parsed, rest = parse_flags(args, UPDATE_FLAGS)
    assert rest == []
    return update_limits(current, parsed, host)


# --------------------------------------------------------------------------- the rules


SET = hc(Memory=32 * MiB, MemorySwap=64 * MiB, CpuShares=512, PidsLimit=20)


def test_update_writes_only_what_was_asked_and_records_the_merge() -> None:
    got = update(dict(SET, NetworkMode="none"), "--cpus", "1", "--pids-limit", "30")
    assert got.oci == {"cpu": {"period": 100000, "quota": 100000}, "pids": {"limit": 30}}
    assert got.host_config == dict(SET, NanoCpus=10**9, PidsLimit=30)
    assert "NetworkMode" not in got.host_config


def test_update_memory_within_the_swap_limit() -> None:
    got = update(SET, "-m", "48m")
    assert got.oci == {"memory": {"limit": 48 * MiB}}
    assert got.host_config == dict(SET, Memory=48 * MiB)


def test_update_memory_above_the_swap_limit_needs_memory_swap_too() -> None:
    with pytest.raises(UpdateConflict) as info:
        update(SET, "-m", "128m")
    assert info.value.message == (
        "Memory limit should be smaller than already set memoryswap limit, "
        "update the memoryswap at the same time"
    )
    assert info.value.exit_code == 1
    got = update(SET, "-m", "128m", "--memory-swap", "256m")
    assert got.oci == {"memory": {"limit": 128 * MiB, "swap": 256 * MiB}}
    assert got.host_config == dict(SET, Memory=128 * MiB, MemorySwap=256 * MiB)


def test_update_memory_swap_minus_one_makes_swap_unlimited_and_memory_free_to_grow() -> None:
    got = update(SET, "--memory-swap", "-1")
    assert got.oci == {"memory": {"swap": -1}}
    assert got.host_config == dict(SET, MemorySwap=-1)
    grown = update(got.host_config, "-m", "1g")
    assert grown.oci == {"memory": {"limit": 1024 * MiB}}
    assert grown.host_config == dict(SET, Memory=1024 * MiB, MemorySwap=-1)


def test_update_of_a_container_without_memory_limit_gets_swap_twice_the_memory() -> None:
    got = update({}, "-m", "32m")
    assert got.oci == {"memory": {"limit": 32 * MiB, "swap": 64 * MiB}}
    assert got.host_config == hc(Memory=32 * MiB, MemorySwap=64 * MiB)


def test_update_refuses_swap_below_the_memory_it_would_have() -> None:
    with pytest.raises(UserError, match=r"^Minimum memoryswap limit should be larger than memory"):
        update(SET, "--memory-swap", "16m")
    with pytest.raises(UserError, match=r"^You should always set the Memory limit"):
        update({}, "--memory-swap", "64m")


@pytest.mark.parametrize(
    ("current", "args", "message"),
    [
        (
            hc(CpuPeriod=50000),
            ("--cpus", "1"),
            "Nano CPUs cannot be updated as CPU Period has already been set",
        ),
        (
            hc(CpuQuota=50000),
            ("--cpus", "1"),
            "Nano CPUs cannot be updated as CPU Quota has already been set",
        ),
        (
            hc(NanoCpus=10**9),
            ("--cpu-period", "50000"),
            "CPU Period cannot be updated as NanoCPUs has already been set",
        ),
        (
            hc(NanoCpus=10**9),
            ("--cpu-quota", "50000"),
            "CPU Quota cannot be updated as NanoCPUs has already been set",
        ),
    ],
)
def test_update_cannot_mix_cpus_with_quota_and_period(
    current: dict[str, Any], args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(UpdateConflict) as info:
        update(current, *args)
    assert info.value.message == f"Conflicting options: {message}"


def test_update_pids_limit_minus_one_is_unlimited_and_zero_is_not_given() -> None:
    got = update(SET, "--pids-limit", "-1")
    assert got.oci == {"pids": {"limit": -1}}
    assert got.host_config == dict(SET, PidsLimit=0)
    got = update(SET, "--pids-limit", "0")
    assert got.oci == {} and got.host_config == SET


def test_update_cpus_zero_changes_nothing_as_in_docker() -> None:
    got = update(hc(NanoCpus=10**9), "--cpus", "0")
    assert got.oci == {} and got.host_config == hc(NanoCpus=10**9)


def test_update_cpuset_shares_weight_and_reservation() -> None:
    got = update(
        SET, "--cpuset-cpus", "1", "-c", "64", "--blkio-weight", "700",
        "--memory-reservation", "8m",
    )  # fmt: skip
    assert got.oci == {
        "memory": {"reservation": 8 * MiB},
        "cpu": {"shares": 64, "cpus": "1"},
        "blockIO": {"weight": 700},
    }
    assert got.host_config == dict(
        SET, CpusetCpus="1", CpuShares=64, BlkioWeight=700, MemoryReservation=8 * MiB
    )


def test_update_device_throttles_replace_the_same_device_and_keep_others() -> None:
    path, major, minor = block_device()
    current = hc(BlkioDeviceReadBps=[{"Path": "/dev/other", "Rate": 5}, {"Path": path, "Rate": 1}])
    got = update(current, "--device-read-bps", f"{path}:2k")
    assert got.oci == {
        "blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 2048}]}
    }
    assert got.host_config["BlkioDeviceReadBps"] == [
        {"Path": "/dev/other", "Rate": 5},
        {"Path": path, "Rate": 2048},
    ]


def test_update_checks_values_like_the_daemon() -> None:
    with pytest.raises(UserError, match=r"^Minimum memory limit allowed is 6MB$"):
        update(SET, "-m", "1m")
    with pytest.raises(UserError, match=r"^Range of CPUs is from 0.01 to 2.00"):
        update(SET, "--cpus", "8")
    with pytest.raises(UserError, match=r"^Requested CPUs are not available"):
        update(SET, "--cpuset-cpus", "5")


def test_update_without_swap_accounting_warns_and_leaves_swap_alone() -> None:
    host = Host(cpu_count=2, features=ALL_FEATURES - {"memsw"})
    got = update(hc(Memory=32 * MiB, MemorySwap=-1), "-m", "64m", host=host)
    assert got.oci == {"memory": {"limit": 64 * MiB}}
    assert got.host_config == hc(Memory=64 * MiB, MemorySwap=-1)
    assert got.warnings == [
        "Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
        "Memory limited without swap."
    ]


def test_update_has_no_swappiness_or_oom_flags() -> None:
    names = {f.long for f in UPDATE_FLAGS}
    assert "memory-swappiness" not in names and "oom-kill-disable" not in names
    assert {f.long for f in RESOURCE_FLAGS} - names == {"memory-swappiness", "oom-kill-disable"}


# --------------------------------------------------------------------------- the command


class Recorder:
    """Stands in for lifecycle.update_resources; ``fail`` maps a container
    id to the error to raise for it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Limits]] = []
        self.fail: dict[str, str] = {}

    def __call__(self, rec: Record, limits_for: Limits | Callable[..., Limits]) -> Limits:
        limits = (
            limits_for(rec.container.get("HostConfig") or {})
            if callable(limits_for)
            else limits_for
        )
        if rec.id in self.fail:
            raise UserError(self.fail[rec.id], 1)
        self.calls.append((rec.id, limits))
        return limits


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(lifecycle, "update_resources", rec, raising=False)
    v1 = Host(cpu_count=2, cpus={0, 1}, features=ALL_FEATURES)
    monkeypatch.setattr(Host, "detect", classmethod(lambda cls: v1))
    return rec


def with_limits(fake: FakeRoot, name: str, **fields: Any) -> str:
    """A fake (exited) container whose HostConfig has ``fields``."""
    cid = fake.add(name)
    path = fake.cdir(cid) / "container.json"
    doc = json.loads(path.read_text())
    doc["HostConfig"].update(fields)
    path.write_text(json.dumps(doc))
    return cid


def run(root: Path, *args: str) -> int:
    return _main(["--root", str(root), "update", *args])


def test_each_container_named_is_updated_and_printed_as_named(
    fake: FakeRoot, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    web = with_limits(fake, "web", Memory=32 * MiB, MemorySwap=64 * MiB)
    db = with_limits(fake, "db")
    assert run(fake.root, "--cpus", "0.5", "-m", "48m", "web", db[:12]) == 0
    out = capsys.readouterr()
    assert out.out == f"web\n{db[:12]}\n" and out.err == ""
    assert [cid for cid, _ in recorder.calls] == [web, db]
    first, second = (limits for _, limits in recorder.calls)
    assert first.oci == {
        "memory": {"limit": 48 * MiB},
        "cpu": {"period": 100000, "quota": 50000},
    }
    assert first.host_config == {
        **HOST_CONFIG_DEFAULTS,
        "Memory": 48 * MiB,
        "MemorySwap": 64 * MiB,
        "NanoCpus": 500_000_000,
    }
    # The second had no memory limit: swap defaults to twice the memory, as at create.
    assert second.oci["memory"] == {"limit": 48 * MiB, "swap": 96 * MiB}


def test_flags_may_follow_the_container_names(fake: FakeRoot, recorder: Recorder) -> None:
    cid = with_limits(fake, "web")
    assert run(fake.root, "web", "--pids-limit", "20") == 0
    assert [(c, lim.oci) for c, lim in recorder.calls] == [(cid, {"pids": {"limit": 20}})]


def test_no_flag_is_an_error_and_nothing_is_updated(
    fake: FakeRoot, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    with_limits(fake, "web")
    assert run(fake.root, "web") == 1
    assert capsys.readouterr().err == (
        "pyctr-fast: you must provide one or more flags when using this command\n"
    )
    assert recorder.calls == []


def test_no_container_is_an_error(
    fake: FakeRoot, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(fake.root, "-m", "32m") == 1
    assert capsys.readouterr().err == (
        "pyctr-fast: \"update\" requires at least 1 argument; see 'pyctr-fast update --help'\n"
    )


def test_a_malformed_value_is_refused_before_any_container_is_looked_up(
    fake: FakeRoot, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    with_limits(fake, "web")
    assert run(fake.root, "-m", "lots", "web", "no-such-container") == 125
    out = capsys.readouterr()
    assert out.err == (
        'pyctr-fast: invalid argument "lots" for "-m, --memory" flag: invalid size: \'lots\'\n'
    )
    assert out.out == "" and recorder.calls == []


def test_an_unknown_flag_is_refused(
    fake: FakeRoot, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    with_limits(fake, "web")
    assert run(fake.root, "--oom-kill-disable", "web") == 125
    assert capsys.readouterr().err == "pyctr-fast: unknown flag: --oom-kill-disable\n"
    assert recorder.calls == []


def test_a_failing_container_is_reported_and_the_others_still_updated(
    fake: FakeRoot, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    web = with_limits(fake, "web")
    db = with_limits(fake, "db")
    recorder.fail[db] = f"Container {db} is gone"
    assert run(fake.root, "-c", "100", "ghost", "db", "web") == 1
    out = capsys.readouterr()
    assert out.out == "web\n"
    assert out.err == f"pyctr-fast: No such container: ghost\npyctr-fast: Container {db} is gone\n"
    assert [cid for cid, _ in recorder.calls] == [web]


def test_a_conflict_with_the_current_limits_names_the_container(
    fake: FakeRoot, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = with_limits(fake, "web", Memory=32 * MiB, MemorySwap=64 * MiB, CpuPeriod=50000)
    assert run(fake.root, "-m", "128m", "web") == 1
    assert capsys.readouterr().err == (
        f"pyctr-fast: Cannot update container {cid}: Memory limit should be smaller than "
        "already set memoryswap limit, update the memoryswap at the same time\n"
    )
    assert run(fake.root, "--cpus", "1", "web") == 1
    assert capsys.readouterr().err == (
        f"pyctr-fast: Cannot update container {cid}: Conflicting options: Nano CPUs cannot "
        "be updated as CPU Period has already been set\n"
    )
    assert recorder.calls == []


def test_a_value_the_daemon_refuses_is_reported_per_container(
    fake: FakeRoot, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    with_limits(fake, "web")
    assert run(fake.root, "--cpus", "3", "web") == 1
    assert capsys.readouterr().err == (
        "pyctr-fast: Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available\n"
    )
    assert recorder.calls == []


def test_warnings_are_printed_after_the_containers(
    fake: FakeRoot,
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_weight = Host(cpu_count=2, features=ALL_FEATURES - {"blkio_weight"})
    monkeypatch.setattr(Host, "detect", classmethod(lambda cls: no_weight))
    with_limits(fake, "web")
    with_limits(fake, "db")
    assert run(fake.root, "--blkio-weight", "300", "web", "db") == 0
    warning = (
        "Your kernel does not support Block I/O weight or the cgroup is not mounted. "
        "Weight discarded."
    )
    assert capsys.readouterr().out == f"web\ndb\n{warning}\n{warning}\n"
    assert [lim.oci for _, lim in recorder.calls] == [{}, {}]


def test_restart_is_checked_then_refused_for_now(
    fake: FakeRoot, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    with_limits(fake, "web")
    assert run(fake.root, "--restart", "sometimes", "web") == 1
    assert "invalid restart policy" in capsys.readouterr().err
    assert run(fake.root, "--restart", "always", "web") == 1
    assert capsys.readouterr().err == (
        "pyctr-fast: update --restart is not supported yet (set it at create or run)\n"
    )
    assert recorder.calls == []


def test_help_lists_the_update_flags(
    fake: FakeRoot, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(fake.root, "--help") == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage:  pyctr-fast update [OPTIONS] CONTAINER [CONTAINER...]\n")
    for flag in ("-m, --memory bytes", "--memory-swap bytes", "--cpus decimal", "--restart"):
        assert flag in out
    assert "--oom-kill-disable" not in out
    assert recorder.calls == []
