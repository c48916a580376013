"""pyctr_fast.resources: Docker's resource flags and docker-py's keywords as
OCI ``linux.resources`` and ``HostConfig`` fields, with Docker's checks,
messages and warnings (``update``'s rules: test_update_cli.py).

Pure translation (no cgroup is written here): hosts are constructed
(:class:`Host`), or probed on directory trees shaped like cgroup
hierarchies, or read from this machine (2 CPUs, cgroup v1).  Throttled
devices are a real block device of this VM (from /sys/block).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from pyctr_fast.errors import APIError, UserError
from pyctr_fast.flags import VALUE, Flag, parse_flags
from pyctr_fast.resources import (
    HOST_CONFIG_DEFAULTS,
    RESOURCE_FLAGS,
    Host,
    Limits,
    limits_from_flags,
    limits_from_kwargs,
    oci_from_host_config,
)
from pyctr_fast.resources_flags import parse_cpus, parse_throttle, ram_in_bytes
from pyctr_fast.resources_host import ALL_FEATURES, V2_FEATURES, format_list, parse_list

MiB = 1024 * 1024
V1 = Host(cpu_count=2, cpus={0, 1}, mems={0}, version=1, features=ALL_FEATURES)
V2 = Host(cpu_count=2, cpus={0, 1}, mems={0}, version=2, features=V2_FEATURES)


def block_device() -> tuple[str, int, int]:
    """A block device of this machine: its /dev path, major and minor."""
    for name in sorted(os.listdir("/sys/block"), key=lambda n: (n.startswith("loop"), n)):
        path = f"/dev/{name}"
        try:
            if not stat.S_ISBLK(os.stat(path).st_mode):
                continue
            major, minor = Path(f"/sys/block/{name}/dev").read_text().strip().split(":")
        except OSError:
            continue
        return path, int(major), int(minor)
    pytest.skip("no block device in /sys/block with a /dev node")


def limits(*args: str, host: Host = V1) -> Limits:
    parsed, rest = parse_flags(args, RESOURCE_FLAGS)
    assert rest == []
    return limits_from_flags(parsed, host)


def error(*args: str, host: Host = V1) -> str:
    with pytest.raises(UserError) as info:
        limits(*args, host=host)
    assert info.value.exit_code == 125
    return info.value.message


def hc(**fields: Any) -> dict[str, Any]:
    """HostConfig's resource fields: Docker's defaults and ``fields``."""
    return {**HOST_CONFIG_DEFAULTS, **fields}


# --------------------------------------------------------------------------- value syntax


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512", 512),
        ("32m", 32 * MiB),
        ("32M", 32 * MiB),
        ("32mb", 32 * MiB),
        ("32MiB", 32 * MiB),
        ("32 m", 32 * MiB),
        ("1.5g", 1536 * MiB),
        ("4k", 4096),
        ("10b", 10),
        ("1t", 1024**4),
    ],
)
def test_sizes_take_go_units_binary_suffixes(text: str, value: int) -> None:
    assert ram_in_bytes(text) == value


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("x", "invalid size: 'x'"),
        ("", "invalid size: ''"),
        ("-1", "invalid size: '-1'"),
        ("12q", "invalid size: '12q'"),
        ("1e3", "invalid size: '1e3'"),
        (" 32m", "invalid size: ' 32m'"),
        ("1.2.3", 'strconv.ParseFloat: parsing "1.2.3": invalid syntax'),
    ],
)
def test_bad_sizes_are_refused_with_go_units_messages(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(why)}$"):
        ram_in_bytes(text)


def test_cpus_are_decimals_or_ratios_in_nano_cpus() -> None:
    assert parse_cpus("1.5") == 1_500_000_000
    assert parse_cpus("3/2") == 1_500_000_000
    assert parse_cpus("0.25") == 250_000_000
    with pytest.raises(ValueError, match=r"^value is too precise$"):
        parse_cpus("0.0000000001")
    for bad in ("abc", "1/0", " 1", ""):
        with pytest.raises(ValueError, match=r"as a rational number$"):
            parse_cpus(bad)


def test_throttle_devices_parse_path_and_rate() -> None:
    assert parse_throttle("/dev/sda:1mb", iops=False) == {"Path": "/dev/sda", "Rate": MiB}
    assert parse_throttle("/dev/sda:300", iops=True) == {"Path": "/dev/sda", "Rate": 300}


def test_cpuset_lists_parse_and_format_like_the_kernel() -> None:
    assert parse_list("0-2,4") == {0, 1, 2, 4}
    assert parse_list("") == set()
    assert format_list({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
    assert format_list({3}) == "3"


def test_integer_flags_take_go_prefixes() -> None:
    assert limits("-c", "0x200").oci == {"cpu": {"shares": 512}}
    assert limits("--cpu-shares", "010").oci == {"cpu": {"shares": 8}}  # Go: octal


# ---------------------------------------------------------------- run/create: happy paths


def test_no_resource_flag_means_no_limit_and_docker_defaults_without_probing_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(cls: type[Host]) -> Host:
        raise AssertionError("the host was probed")

    monkeypatch.setattr(Host, "detect", classmethod(boom))
    parsed, _ = parse_flags(["--name", "x"], [*RESOURCE_FLAGS, Flag("name", VALUE, "Name")])
    got = limits_from_flags(parsed)
    assert got.empty() and got.oci == {} and got.warnings == []
    assert got.host_config == hc()
    assert got.host_config["MemorySwappiness"] is None and got.host_config["PidsLimit"] is None


def test_memory_alone_gets_twice_as_much_memory_plus_swap() -> None:
    got = limits("-m", "32m")
    assert got.oci == {"memory": {"limit": 32 * MiB, "swap": 64 * MiB}}
    assert got.host_config == hc(Memory=32 * MiB, MemorySwap=64 * MiB)
    assert not got.empty()


def test_memory_flags_all_together() -> None:
    got = limits(
        "--memory=64m",
        "--memory-swap",
        "128m",
        "--memory-reservation",
        "16m",
        "--memory-swappiness",
        "60",
        "--oom-kill-disable",
    )
    assert got.oci == {
        "memory": {
            "limit": 64 * MiB,
            "reservation": 16 * MiB,
            "swap": 128 * MiB,
            "swappiness": 60,
            "disableOOMKiller": True,
        }
    }
    assert got.host_config == hc(
        Memory=64 * MiB,
        MemorySwap=128 * MiB,
        MemoryReservation=16 * MiB,
        MemorySwappiness=60,
        OomKillDisable=True,
    )
    assert got.warnings == []


def test_memory_swap_minus_one_is_unlimited_swap() -> None:
    got = limits("-m", "32m", "--memory-swap", "-1")
    assert got.oci == {"memory": {"limit": 32 * MiB}}  # a new group's swap is unlimited
    assert got.host_config == hc(Memory=32 * MiB, MemorySwap=-1)


def test_cpus_become_a_quota_of_a_100ms_period() -> None:
    got = limits("--cpus", "0.5")
    assert got.oci == {"cpu": {"period": 100000, "quota": 50000}}
    assert got.host_config == hc(NanoCpus=500_000_000)
    assert limits("--cpus", "2").oci == {"cpu": {"period": 100000, "quota": 200000}}


def test_cpu_quota_period_and_shares_pass_through() -> None:
    got = limits("--cpu-quota", "50000", "--cpu-period", "100000", "-c", "512")
    assert got.oci == {"cpu": {"shares": 512, "period": 100000, "quota": 50000}}
    assert got.host_config == hc(CpuQuota=50000, CpuPeriod=100000, CpuShares=512)
    assert limits("--cpu-quota", "-1").oci == {"cpu": {"quota": -1}}


def test_cpuset_cpus_and_mems() -> None:
    got = limits("--cpuset-cpus", "0-1", "--cpuset-mems", "0")
    assert got.oci == {"cpu": {"cpus": "0-1", "mems": "0"}}
    assert got.host_config == hc(CpusetCpus="0-1", CpusetMems="0")


def test_pids_limit_positive_limits_and_zero_or_negative_is_unlimited() -> None:
    got = limits("--pids-limit", "20")
    assert got.oci == {"pids": {"limit": 20}}
    assert got.host_config == hc(PidsLimit=20)
    for value in ("0", "-1"):
        got = limits("--pids-limit", value)
        assert got.oci == {} and got.empty()
        assert got.host_config["PidsLimit"] is None


def test_blkio_weight() -> None:
    got = limits("--blkio-weight", "500")
    assert got.oci == {"blockIO": {"weight": 500}}
    assert got.host_config == hc(BlkioWeight=500)
    assert limits("--blkio-weight", "0").oci == {}  # 0: not set


def test_device_throttles_name_the_real_block_device_by_its_numbers() -> None:
    path, major, minor = block_device()
    got = limits(
        "--device-read-bps",
        f"{path}:1mb",
        "--device-write-bps",
        f"{path}:2m",
        "--device-read-iops",
        f"{path}:100",
        "--device-write-iops",
        f"{path}:200",
    )
    dev = {"major": major, "minor": minor}
    assert got.oci == {
        "blockIO": {
            "throttleReadBpsDevice": [{**dev, "rate": MiB}],
            "throttleWriteBpsDevice": [{**dev, "rate": 2 * MiB}],
            "throttleReadIOPSDevice": [{**dev, "rate": 100}],
            "throttleWriteIOPSDevice": [{**dev, "rate": 200}],
        }
    }
    assert got.host_config == hc(
        BlkioDeviceReadBps=[{"Path": path, "Rate": MiB}],
        BlkioDeviceWriteBps=[{"Path": path, "Rate": 2 * MiB}],
        BlkioDeviceReadIOps=[{"Path": path, "Rate": 100}],
        BlkioDeviceWriteIOps=[{"Path": path, "Rate": 200}],
    )


def test_a_throttled_path_that_is_missing_or_not_a_block_device_is_refused() -> None:
    assert error("--device-read-bps", "/dev/pyctr-no-such-disk:1mb") == (
        "stat /dev/pyctr-no-such-disk: no such file or directory"
    )
    assert error("--device-write-iops", "/dev/null:10") == "/dev/null is not a block device"


def test_oci_from_host_config_rebuilds_what_create_wrote() -> None:
    path, _, _ = block_device()
    got = limits("-m", "32m", "--cpus", "1", "--pids-limit", "9", "--device-read-bps", f"{path}:1k")
    assert oci_from_host_config(got.host_config) == got.oci
    # After an update to "unlimited" a new group needs nothing.
    assert oci_from_host_config({"PidsLimit": 0, "MemorySwap": -1, "CpuQuota": 0}) == {}


# ---------------------------------------------------------------- run/create: Docker's errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-m", "x"), 'invalid argument "x" for "-m, --memory" flag: invalid size: \'x\''),
        (
            ("--memory-reservation", "1q"),
            'invalid argument "1q" for "--memory-reservation" flag: invalid size: \'1q\'',
        ),
        (
            ("--memory-swap", "-2"),
            'invalid argument "-2" for "--memory-swap" flag: invalid size: \'-2\'',
        ),
        (
            ("-c", "x"),
            'invalid argument "x" for "-c, --cpu-shares" flag: '
            'strconv.ParseInt: parsing "x": invalid syntax',
        ),
        (
            ("--cpu-quota", "1.5"),
            'invalid argument "1.5" for "--cpu-quota" flag: '
            'strconv.ParseInt: parsing "1.5": invalid syntax',
        ),
        (
            ("--pids-limit", "99999999999999999999"),
            'invalid argument "99999999999999999999" for "--pids-limit" flag: '
            'strconv.ParseInt: parsing "99999999999999999999": value out of range',
        ),
        (
            ("--blkio-weight", "70000"),
            'invalid argument "70000" for "--blkio-weight" flag: '
            'strconv.ParseUint: parsing "70000": value out of range',
        ),
        (
            ("--blkio-weight", "-5"),
            'invalid argument "-5" for "--blkio-weight" flag: '
            'strconv.ParseUint: parsing "-5": invalid syntax',
        ),
        (
            ("--cpus", "abc"),
            'invalid argument "abc" for "--cpus" flag: failed to parse abc as a rational number',
        ),
        (("--cpus", "1/3"), 'invalid argument "1/3" for "--cpus" flag: value is too precise'),
        (
            ("--device-read-bps", "/dev/sda"),
            'invalid argument "/dev/sda" for "--device-read-bps" flag: bad format: /dev/sda',
        ),
        (
            ("--device-write-bps", "sda:1mb"),
            'invalid argument "sda:1mb" for "--device-write-bps" flag: '
            "bad format for device path: sda:1mb",
        ),
        (
            ("--device-read-bps", "/dev/sda:fast"),
            'invalid argument "/dev/sda:fast" for "--device-read-bps" flag: invalid rate for '
            "device: /dev/sda:fast. The correct format is <device-path>:<number>[<unit>]. "
            "Number must be a positive integer. Unit is optional and can be kb, mb, or gb",
        ),
        (
            ("--device-read-iops", "/dev/sda:1k"),
            'invalid argument "/dev/sda:1k" for "--device-read-iops" flag: invalid rate for '
            "device: /dev/sda:1k. The correct format is <device-path>:<number>. "
            "Number must be a positive integer",
        ),
        (
            ("--memory-swappiness", "101"),
            "invalid value: 101. Valid memory swappiness range is 0-100",
        ),
        (("-m", "5m"), "Minimum memory limit allowed is 6MB"),
        (
            ("-m", "64m", "--memory-swap", "32m"),
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ),
        (
            ("--memory-swap", "64m"),
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ),
        (("--memory-reservation", "1m"), "Minimum memory reservation allowed is 6MB"),
        (
            ("-m", "16m", "--memory-reservation", "32m"),
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ),
        (
            ("--cpus", "1", "--cpu-period", "50000"),
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ),
        (
            ("--cpus", "1", "--cpu-quota", "50000"),
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ),
        (
            ("--cpus", "-1"),
            "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available",
        ),
        (
            ("--cpus", "0.001"),
            "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available",
        ),
        (
            ("--cpu-period", "999"),
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ),
        (
            ("--cpu-period", "1000001"),
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ),
        (("--cpu-quota", "999"), "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
        (("-c", "-2"), "shares: invalid argument"),
        (("--blkio-weight", "5"), "Range of blkio weight is from 10 to 1000"),
        (("--blkio-weight", "1001"), "Range of blkio weight is from 10 to 1000"),
        (
            ("--cpuset-cpus", "1-x"),
            "Invalid value 1-x for cpuset cpus: invalid format: 1-x",
        ),
        (
            ("--cpuset-cpus", "3-1"),
            "Invalid value 3-1 for cpuset cpus: invalid format: 3-1",
        ),
        (
            ("--cpuset-cpus", "9000"),
            "Invalid value 9000 for cpuset cpus: value of out range, maximum is 8192",
        ),
        (
            ("--cpuset-cpus", "0-2"),
            "Requested CPUs are not available - requested 0-2, available: 0-1",
        ),
        (
            ("--cpuset-mems", "0,x"),
            "Invalid value 0,x for cpuset mems: invalid format: 0,x",
        ),
        (
            ("--cpuset-mems", "1"),
            "Requested memory nodes are not available - requested 1, available: 0",
        ),
    ],
)
def test_bad_values_get_dockers_message_and_exit_125(args: tuple[str, ...], message: str) -> None:
    assert error(*args) == message


def test_cpus_are_checked_against_the_host_cpu_count() -> None:
    four = Host(cpu_count=4)
    assert limits("--cpus", "4", host=four).oci == {"cpu": {"period": 100000, "quota": 400000}}
    assert limits("--cpus", "0.01", host=four).oci == {"cpu": {"period": 100000, "quota": 1000}}
    assert error("--cpus", "4.01", host=four) == (
        "Range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available"
    )


def test_cpus_beyond_this_machines_cpus_are_refused() -> None:
    host = Host.detect()
    n = len(os.sched_getaffinity(0))
    assert host.cpu_count == n
    assert error("--cpus", str(n + 1), host=host) == (
        f"Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
    )
    parsed, _ = parse_flags(["--cpus", str(n + 1)], RESOURCE_FLAGS)
    with pytest.raises(UserError, match=rf"^Range of CPUs is from 0\.01 to {n}\.00"):
        limits_from_flags(parsed)  # Host.detect() by default


def test_cpusets_are_checked_against_the_hosts_cpus_and_nodes() -> None:
    host = Host(cpu_count=2, cpus={0, 2, 3}, mems={0, 1})
    assert limits("--cpuset-cpus", "2-3", "--cpuset-mems", "1", host=host).oci == {
        "cpu": {"cpus": "2-3", "mems": "1"}
    }
    assert error("--cpuset-cpus", "1", host=host) == (
        "Requested CPUs are not available - requested 1, available: 0,2-3"
    )


# ---------------------------------------------------------------- what the host cannot do


def test_cgroup_v2_drops_swappiness_and_the_oom_killer_switch_with_dockers_warnings() -> None:
    got = limits("-m", "32m", "--memory-swappiness", "60", "--oom-kill-disable", host=V2)
    assert got.oci == {"memory": {"limit": 32 * MiB, "swap": 64 * MiB}}
    assert got.host_config == hc(Memory=32 * MiB, MemorySwap=64 * MiB)
    assert got.warnings == [
        "Your kernel does not support memory swappiness capabilities or the cgroup is not "
        "mounted. Memory swappiness discarded.",
        "Your kernel does not support OomKillDisable. OomKillDisable discarded.",
    ]


def test_cgroup_v2_keeps_everything_else() -> None:
    got = limits("--cpus", "1.5", "-c", "100", "--pids-limit", "5", "--blkio-weight", "20", host=V2)
    assert got.warnings == []
    assert got.oci == {
        "cpu": {"shares": 100, "period": 100000, "quota": 150000},
        "pids": {"limit": 5},
        "blockIO": {"weight": 20},
    }


def test_without_swap_accounting_memory_is_limited_without_swap() -> None:
    host = Host(cpu_count=2, features=ALL_FEATURES - {"memsw"})
    got = limits("-m", "32m", "--memory-swap", "64m", host=host)
    assert got.oci == {"memory": {"limit": 32 * MiB}}
    assert got.host_config == hc(Memory=32 * MiB, MemorySwap=-1)
    assert got.warnings == [
        "Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
        "Memory limited without swap."
    ]


@pytest.mark.parametrize(
    ("missing", "args", "warning"),
    [
        (
            "memory",
            ("-m", "32m"),
            "Your kernel does not support memory limit capabilities or the cgroup is not "
            "mounted. Limitation discarded.",
        ),
        (
            "memory_reservation",
            ("--memory-reservation", "32m"),
            "Your kernel does not support memory soft limit capabilities or the cgroup is not "
            "mounted. Limitation discarded.",
        ),
        (
            "pids",
            ("--pids-limit", "10"),
            "Your kernel does not support PIDs limit capabilities or the cgroup is not mounted. "
            "PIDs limit discarded.",
        ),
        (
            "cpu_shares",
            ("-c", "10"),
            "Your kernel does not support CPU shares or the cgroup is not mounted. "
            "Shares discarded.",
        ),
        (
            "cpu_cfs",
            ("--cpu-quota", "5000"),
            "Your kernel does not support CPU CFS scheduler. CPU period/quota discarded.",
        ),
        (
            "cpuset",
            ("--cpuset-cpus", "0"),
            "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded.",
        ),
        (
            "blkio_weight",
            ("--blkio-weight", "100"),
            "Your kernel does not support Block I/O weight or the cgroup is not mounted. "
            "Weight discarded.",
        ),
        (
            "blkio_throttle",
            ("--device-read-bps", "/dev/x:1"),
            "Your kernel does not support BPS Block I/O read limit or the cgroup is not "
            "mounted. Block I/O BPS read limit discarded.",
        ),
        (
            "blkio_throttle",
            ("--device-write-bps", "/dev/x:1"),
            "Your kernel does not support BPS Block I/O write limit or the cgroup is not "
            "mounted. Block I/O BPS write limit discarded.",
        ),
        (
            "blkio_throttle",
            ("--device-read-iops", "/dev/x:1"),
            "Your kernel does not support IOPS Block read limit or the cgroup is not mounted. "
            "Block I/O IOPS read limit discarded.",
        ),
        (
            "blkio_throttle",
            ("--device-write-iops", "/dev/x:1"),
            "Your kernel does not support IOPS Block write limit or the cgroup is not mounted. "
            "Block I/O IOPS write limit discarded.",
        ),
    ],
)
def test_a_limit_the_host_lacks_is_dropped_with_dockers_warning(
    missing: str, args: tuple[str, ...], warning: str
) -> None:
    got = limits(*args, host=Host(cpu_count=2, features=ALL_FEATURES - {missing}))
    assert got.warnings == [warning]
    assert got.oci == {}
    assert got.empty()


def test_cpus_need_the_cfs_scheduler() -> None:
    assert error("--cpus", "1", host=Host(cpu_count=2, features=ALL_FEATURES - {"cpu_cfs"})) == (
        "NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the "
        "cgroup is not mounted"
    )


def test_disabling_the_oom_killer_without_a_memory_limit_warns() -> None:
    got = limits("--oom-kill-disable")
    assert got.oci == {"memory": {"disableOOMKiller": True}}
    assert got.warnings == [
        "OOM killer is disabled for the container, but no memory limit is set, this can "
        "result in the system running out of resources."
    ]


# --------------------------------------------------------------------------- the host


def test_probe_v2_reads_the_controllers_and_the_effective_cpuset(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    (tmp_path / "cpuset.cpus.effective").write_text("0-3\n")
    (tmp_path / "cpuset.mems.effective").write_text("0-1\n")
    host = Host.probe_v2(str(tmp_path), cpu_count=4)
    assert host == Host(
        cpu_count=4, cpus={0, 1, 2, 3}, mems={0, 1}, version=2, features=V2_FEATURES
    )
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    assert Host.probe_v2(str(tmp_path)).features == {
        "memory",
        "memsw",
        "memory_reservation",
        "pids",
    }


def test_probe_v1_finds_files_in_the_root_or_in_a_child_group(tmp_path: Path) -> None:
    mem, blkio, cpuset = tmp_path / "memory", tmp_path / "blkio", tmp_path / "cpuset"
    for d in (mem, blkio / "some-child", cpuset):
        d.mkdir(parents=True)
    for name in ("memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.oom_control"):
        (mem / name).write_text("")
    (blkio / "blkio.throttle.read_bps_device").write_text("")
    (cpuset / "cpuset.cpus").write_text("0,2\n")
    (cpuset / "cpuset.mems").write_text("0\n")
    hierarchies = {"memory": str(mem), "blkio": str(blkio), "cpuset": str(cpuset)}
    host = Host.probe_v1(hierarchies, cpu_count=2)
    assert host.features == {
        "memory",
        "memory_reservation",
        "oom_kill_disable",
        "blkio_throttle",
        "cpuset",
    }
    assert host.cpus == {0, 2} and host.mems == {0} and host.version == 1
    (blkio / "some-child" / "blkio.bfq.weight").write_text("")  # only below the root
    assert "blkio_weight" in Host.probe_v1(hierarchies, cpu_count=2).features


def test_detect_on_this_machine_matches_its_cgroup_files() -> None:
    host = Host.detect()
    assert host is Host.detect()  # cached
    assert host.cpu_count == len(os.sched_getaffinity(0))
    if not Path("/sys/fs/cgroup/memory").is_dir():
        pytest.skip("not the cgroup v1 layout of this VM")
    assert host.version == 1
    memsw = Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
    assert ("memsw" in host.features) == memsw
    assert {"memory", "pids", "cpu_cfs", "cpu_shares", "cpuset"} <= host.features
    cpus = Path("/sys/fs/cgroup/cpuset/cpuset.effective_cpus").read_text().strip()
    assert host.cpus == parse_list(cpus)


# --------------------------------------------------------------------------- docker-py keywords


def test_docker_py_keywords_give_the_same_limits_as_the_flags() -> None:
    path, _, _ = block_device()
    flags = limits(
        "-m", "64m", "--memory-swap", "128m", "--memory-reservation", "32m",
        "--memory-swappiness", "10", "--oom-kill-disable", "--cpus", "0.5", "-c", "256",
        "--cpuset-cpus", "0", "--cpuset-mems", "0", "--pids-limit", "30",
        "--blkio-weight", "300", "--device-read-bps", f"{path}:1024",
        "--device-write-iops", f"{path}:7",
    )  # fmt: skip
    kwargs = limits_from_kwargs(
        {
            "mem_limit": "64m",
            "memswap_limit": 128 * MiB,
            "mem_reservation": "32m",
            "mem_swappiness": 10,
            "oom_kill_disable": True,
            "nano_cpus": 500_000_000,
            "cpu_shares": 256,
            "cpuset_cpus": "0",
            "cpuset_mems": "0",
            "pids_limit": 30,
            "blkio_weight": 300,
            "device_read_bps": [{"Path": path, "Rate": 1024}],
            "device_write_iops": [{"Path": path, "Rate": 7}],
            "name": "ignored",
        },
        V1,
    )
    assert kwargs == flags


def test_docker_py_memory_and_pids_conventions() -> None:
    got = limits_from_kwargs({"mem_limit": 32 * MiB, "memswap_limit": -1, "pids_limit": -1}, V1)
    assert got.oci == {"memory": {"limit": 32 * MiB}}
    assert got.host_config == hc(Memory=32 * MiB, MemorySwap=-1)
    assert limits_from_kwargs({"cpu_period": 50000, "cpu_quota": 25000}, V1).oci == {
        "cpu": {"period": 50000, "quota": 25000}
    }
    none = limits_from_kwargs({"mem_limit": None, "name": "x"})
    assert none.empty() and none.host_config == hc()


def test_docker_py_bad_values_raise_api_errors_with_the_daemons_messages() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"mem_limit": "1m"}, "Minimum memory limit allowed is 6MB"),
        ({"mem_swappiness": 101}, "Invalid value: 101, valid memory swappiness range is 0-100"),
        ({"nano_cpus": 3 * 10**9}, "Range of CPUs is from 0.01 to 2.00"),
        ({"blkio_weight": 5}, "Range of blkio weight is from 10 to 1000"),
        ({"memswap_limit": "64m"}, "You should always set the Memory limit"),
        ({"cpuset_cpus": "7"}, "Requested CPUs are not available - requested 7, available: 0-1"),
        ({"device_read_bps": [{"Path": "/dev/sda"}]}, "invalid device_read_bps entry"),
        ({"device_read_bps": [{"Path": "/dev/pyctr-none", "Rate": 1}]}, "stat /dev/pyctr-none"),
        ({"mem_limit": "lots"}, "lots"),
    ]
    for kwargs, message in cases:
        with pytest.raises(APIError) as info:
            limits_from_kwargs(kwargs, V1)
        assert info.value.message.startswith(message) or message in info.value.message, kwargs


def test_docker_py_wrong_types_raise_type_errors_like_docker_py() -> None:
    with pytest.raises(TypeError, match=r"^Invalid type for nano_cpus param: expected int"):
        limits_from_kwargs({"nano_cpus": 0.5}, V1)
    with pytest.raises(TypeError, match=r"^Invalid type for cpuset_cpus param: expected str"):
        limits_from_kwargs({"cpuset_cpus": 0}, V1)
