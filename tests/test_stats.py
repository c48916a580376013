"""``stats`` (docker stats) and the API's ``Container.stats()``.

The cgroup readers run on temp trees shaped like the kernel's cgroup v1
controllers and cgroup v2 directory, with exact file contents and exact
numbers asserted; the command and the API run on real detached containers
(busybox ``rootfs`` fixture) in this host's cgroups.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from ctrkit import assert_ok, kill_group
from lifecycle_kit import SLEEP, Ctrs, ctrs
from pyctr_fast import stats
from pyctr_fast.stats_cli import (
    StatsRow,
    block_io,
    bytes_size,
    cpu_percent,
    human_size,
    memory_usage,
    network_io,
)

pytestmark = pytest.mark.timeout(120)

__all__ = ["ctrs"]  # the fixture

BUSY = ("sh", "-c", "while :; do :; done")
HEADER = re.compile(
    r"^CONTAINER ID +NAME +CPU % +MEM USAGE / LIMIT +MEM % +NET I/O +BLOCK I/O +PIDS$"
)
GIB = 1024**3
CLEAR = b"\x1b[2J\x1b[H"


def _write(d: Path, files: dict[str, str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def _host_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


# --------------------------------------------------------------------------- cgroup v2 reader


V2_FILES = {
    "cpu.stat": (
        "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"
        "nr_periods 40\nnr_throttled 7\nthrottled_usec 123456\n"
    ),
    "memory.current": "10485760\n",
    "memory.max": "67108864\n",
    "memory.stat": "anon 4096000\nfile 6389760\ninactive_file 2097152\nactive_file 1048576\n",
    "memory.events": "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n",
    "pids.current": "5\n",
    "pids.max": "20\n",
    "io.stat": (
        "8:0 rbytes=1048576 wbytes=4096 rios=10 wios=1 dbytes=0 dios=0\n"
        "253:1 rbytes=512 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n"
    ),
}


def test_v2_reader_gives_docker_numbers_from_a_cgroup2_shaped_tree(tmp_path: Path) -> None:
    d = _write(tmp_path / "pyctr-fast" / "c1", V2_FILES)
    got = stats.read_cgroup_v2(str(d), machine_memory=8 * GIB)
    assert got["cpu_stats"] == {
        "cpu_usage": {
            "total_usage": 2_500_000_000,
            "usage_in_kernelmode": 500_000_000,
            "usage_in_usermode": 2_000_000_000,
        },
        "throttling_data": {"periods": 40, "throttled_periods": 7, "throttled_time": 123_456_000},
    }
    assert got["memory_stats"] == {
        "usage": 10485760,
        "stats": {
            "anon": 4096000,
            "file": 6389760,
            "inactive_file": 2097152,
            "active_file": 1048576,
        },
        "failcnt": 2,
        "limit": 67108864,
    }
    assert got["pids_stats"] == {"current": 5, "limit": 20}
    assert got["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 1048576},
        {"major": 8, "minor": 0, "op": "write", "value": 4096},
        {"major": 253, "minor": 1, "op": "read", "value": 512},
        {"major": 253, "minor": 1, "op": "write", "value": 0},
    ]
    assert got["blkio_stats"]["io_serviced_recursive"] is None
    # The CLI's figures: usage minus inactive_file, I/O summed over devices.
    assert memory_usage(got) == (10485760 - 2097152, 67108864)
    assert block_io(got) == (1048576 + 512, 4096)


def test_v2_reader_unlimited_memory_is_the_hosts_and_pids_max_is_left_out(tmp_path: Path) -> None:
    files = dict(V2_FILES, **{"memory.max": "max\n", "pids.max": "max\n", "io.stat": ""})
    d = _write(tmp_path / "c2", files)
    got = stats.read_cgroup_v2(str(d), machine_memory=3 * GIB)
    assert got["memory_stats"]["limit"] == 3 * GIB
    assert got["pids_stats"] == {"current": 5}  # Go's omitempty: a limit of 0 is not shown
    assert got["blkio_stats"]["io_service_bytes_recursive"] is None


def test_v2_reader_of_a_directory_without_files_gives_zeros_not_errors(tmp_path: Path) -> None:
    got = stats.read_cgroup_v2(str(tmp_path), machine_memory=GIB)
    assert got["cpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert got["memory_stats"] == {} and got["pids_stats"] == {}


# --------------------------------------------------------------------------- cgroup v1 reader


def _v1_tree(base: Path, limit: str = "33554432\n") -> dict[str, str]:
    dirs = {
        "cpuacct": _write(
            base / "cpuacct" / "c",
            {
                "cpuacct.usage": "3000000000\n",
                "cpuacct.usage_percpu": "1000000000 2000000000 \n",
                "cpuacct.stat": "user 250\nsystem 50\n",
            },
        ),
        "cpu": _write(
            base / "cpu" / "c",
            {"cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 999\nnr_bursts 0\n"},
        ),
        "memory": _write(
            base / "memory" / "c",
            {
                "memory.usage_in_bytes": "20971520\n",
                "memory.max_usage_in_bytes": "31457280\n",
                "memory.failcnt": "3\n",
                "memory.limit_in_bytes": limit,
                "memory.stat": (
                    "cache 8388608\nrss 12582912\ninactive_file 100\n"
                    "hierarchical_memory_limit 9223372036854771712\n"
                    "total_cache 8388608\ntotal_inactive_file 4194304\n"
                ),
            },
        ),
        "pids": _write(base / "pids" / "c", {"pids.current": "3\n", "pids.max": "max\n"}),
        "blkio": _write(
            base / "blkio" / "c",
            {
                "blkio.throttle.io_service_bytes_recursive": (
                    "8:0 Read 8192\n8:0 Write 1024\n8:0 Sync 9216\n8:0 Async 0\n"
                    "8:0 Discard 0\n8:0 Total 9216\nTotal 9216\n"
                ),
                "blkio.throttle.io_serviced_recursive": "8:0 Read 2\n8:0 Write 1\nTotal 3\n",
            },
        ),
    }
    return {k: str(v) for k, v in dirs.items()}


def test_v1_reader_gives_docker_numbers_from_controller_directories(tmp_path: Path) -> None:
    got = stats.read_cgroup_v1(_v1_tree(tmp_path), machine_memory=8 * GIB, clock_ticks=100)
    assert got["cpu_stats"] == {
        "cpu_usage": {
            "total_usage": 3_000_000_000,
            "percpu_usage": [1_000_000_000, 2_000_000_000],
            "usage_in_kernelmode": 500_000_000,  # 50 ticks at USER_HZ 100
            "usage_in_usermode": 2_500_000_000,
        },
        "throttling_data": {"periods": 10, "throttled_periods": 4, "throttled_time": 999},
    }
    mem = got["memory_stats"]
    assert list(mem) == ["usage", "max_usage", "stats", "failcnt", "limit"]
    assert (mem["usage"], mem["max_usage"], mem["failcnt"], mem["limit"]) == (
        20971520,
        31457280,
        3,
        33554432,
    )
    assert mem["stats"]["total_inactive_file"] == 4194304 and mem["stats"]["rss"] == 12582912
    assert got["pids_stats"] == {"current": 3}
    blk = got["blkio_stats"]
    assert blk["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": op, "value": v}
        for op, v in (
            ("Read", 8192),
            ("Write", 1024),
            ("Sync", 9216),
            ("Async", 0),
            ("Discard", 0),
            ("Total", 9216),
        )
    ]
    assert blk["io_serviced_recursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 2},
        {"major": 8, "minor": 0, "op": "Write", "value": 1},
    ]
    # v1: the CLI takes total_inactive_file off, and only Read/Write count.
    assert memory_usage(got) == (20971520 - 4194304, 33554432)
    assert block_io(got) == (8192, 1024)


def test_v1_reader_unlimited_group_shows_the_hosts_memory_as_limit(tmp_path: Path) -> None:
    dirs = _v1_tree(tmp_path, limit="9223372036854771712\n")
    got = stats.read_cgroup_v1(dirs, machine_memory=5 * GIB, clock_ticks=100)
    assert got["memory_stats"]["limit"] == 5 * GIB


def test_v1_reader_skips_controllers_that_are_not_mounted(tmp_path: Path) -> None:
    dirs: dict[str, str | None] = dict(_v1_tree(tmp_path))
    dirs["memory"] = None
    del dirs["blkio"]
    got = stats.read_cgroup_v1(dirs, machine_memory=GIB, clock_ticks=100)
    assert got["memory_stats"] == {}
    assert got["blkio_stats"]["io_service_bytes_recursive"] is None
    assert got["cpu_stats"]["cpu_usage"]["total_usage"] == 3_000_000_000


# --------------------------------------------------------------------------- host, network, figures


def test_host_cpu_is_the_first_seven_fields_of_the_cpu_line_in_ns(tmp_path: Path) -> None:
    f = tmp_path / "stat"
    f.write_text("cpu  100 2 30 400 5 6 7 8 9 10\ncpu0 1 1 1 1 1 1 1 1 1 1\n")
    assert stats.host_cpu_ns(str(f), clock_ticks=100) == (100 + 2 + 30 + 400 + 5 + 6 + 7) * 10**7


def test_networks_leave_out_the_loopback(tmp_path: Path) -> None:
    f = tmp_path / "dev"
    f.write_text(
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
        "drop fifo colls carrier compressed\n"
        "    lo:    5000      50    0    0    0     0          0         0     5000      50    0 "
        "   0    0     0       0          0\n"
        "  eth0: 1234567     890    1    2    0     0          0         0   765432     321    3 "
        "   4    0     0       0          0\n"
    )
    nets = stats.read_networks(str(f))
    assert nets == {
        "eth0": {
            "rx_bytes": 1234567,
            "rx_packets": 890,
            "rx_errors": 1,
            "rx_dropped": 2,
            "tx_bytes": 765432,
            "tx_packets": 321,
            "tx_errors": 3,
            "tx_dropped": 4,
        }
    }
    assert network_io({"networks": nets}) == (1234567, 765432)


def test_cpu_percent_is_the_docker_cli_formula() -> None:
    sample = {
        "cpu_stats": {
            "cpu_usage": {"total_usage": 1_500_000_000},
            "system_cpu_usage": 104_000_000_000,
            "online_cpus": 2,
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": 500_000_000},
            "system_cpu_usage": 102_000_000_000,
        },
    }
    # 1 s of CPU over 2 s of host time (2 CPUs for 1 s) times 2 CPUs: 100 %.
    assert cpu_percent(sample) == pytest.approx(100.0)
    sample["cpu_stats"]["online_cpus"] = 0
    sample["cpu_stats"]["cpu_usage"]["percpu_usage"] = [1, 2, 3, 4]
    assert cpu_percent(sample) == pytest.approx(200.0)  # no online_cpus: len(percpu)
    assert cpu_percent({"cpu_stats": {}, "precpu_stats": {}}) == 0.0


def test_sizes_are_printed_as_go_units() -> None:
    assert [bytes_size(v) for v in (0, 1000, 1536, 1.5 * 1024**2, 31.23 * GIB, 1023.99)] == [
        "0B",
        "1000B",
        "1.5KiB",
        "1.5MiB",
        "31.23GiB",
        "1024B",
    ]
    assert [human_size(v) for v in (0, 999, 1200, 1_234_567, 10**12)] == [
        "0B",
        "999B",
        "1.2kB",
        "1.23MB",
        "1TB",
    ]


def test_a_row_shows_docker_columns_and_an_invalid_row_shows_dashes() -> None:
    data = {
        "name": "/web",
        "id": "ab" * 32,
        "cpu_stats": {"cpu_usage": {"total_usage": 3}, "system_cpu_usage": 10, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 1}, "system_cpu_usage": 6},
        "memory_stats": {"usage": 3 * 1024**2, "limit": 12 * 1024**2, "stats": {}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "read", "value": 1200}]},
        "networks": {"eth0": {"rx_bytes": 1000, "tx_bytes": 0}},
        "pids_stats": {"current": 4},
    }
    row = StatsRow("web", data, trunc=True)
    assert (row.Container, row.Name, row.ID) == ("web", "web", "ab" * 6)
    assert (row.CPUPerc, row.MemUsage, row.MemPerc) == ("100.00%", "3MiB / 12MiB", "25.00%")
    assert (row.NetIO, row.BlockIO, row.PIDs) == ("1kB / 0B", "1.2kB / 0B", "4")
    assert StatsRow("web", data, trunc=False).ID == "ab" * 32
    bad = StatsRow("web", {"name": "/web", "id": "ab" * 32}, invalid=True)
    assert (bad.CPUPerc, bad.MemUsage, bad.MemPerc, bad.NetIO, bad.BlockIO, bad.PIDs) == (
        "--",
        "-- / --",
        "--",
        "--",
        "--",
        "--",
    )
    assert bad.Name == "web"


# --------------------------------------------------------------------------- the command


def _rows(out: str) -> dict[str, list[str]]:
    """``--format '{{.Name}}|...'`` lines by their first field."""
    rows = {}
    for line in out.splitlines():
        fields = line.split("|")
        rows[fields[0]] = fields[1:]
    return rows


def test_busy_container_shows_high_cpu_and_idle_one_near_zero(ctrs: Ctrs) -> None:
    busy = ctrs.run_d(*BUSY, opts=("--name", "busy", "--network", "none"))
    idle = ctrs.run_d(*SLEEP, opts=("--name", "idle", "--network", "none"))
    time.sleep(0.3)  # let the busy loop get going
    res = ctrs.cli(
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.CPUPerc}}|{{.PIDs}}|{{.MemUsage}}|{{.MemPerc}}|{{.NetIO}}|{{.ID}}",
        "busy",
        "idle",
    )
    rows = _rows(assert_ok(res))
    assert set(rows) == {"busy", "idle"}, res
    busy_cpu = float(rows["busy"][0].rstrip("%"))
    idle_cpu = float(rows["idle"][0].rstrip("%"))
    assert busy_cpu > 50, res
    assert idle_cpu < 5, res
    assert rows["busy"][1] == "1" and rows["idle"][1] == "1", res  # sh / sleep alone
    limit = bytes_size(_host_memory())
    for name, cid in (("busy", busy), ("idle", idle)):
        used, _, shown_limit = rows[name][2].partition(" / ")
        assert shown_limit == limit, res  # unlimited: the host's MemTotal
        assert re.fullmatch(r"[0-9.]+(B|KiB|MiB)", used) and used != "0B", res
        assert rows[name][3].endswith("%"), res
        assert rows[name][4] == "0B / 0B", res  # --network none: only lo, not counted
        assert rows[name][5] == cid[:12], res


def test_default_table_has_docker_columns_and_lists_running_containers(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP, opts=("--name", "tabled"))
    stopped = ctrs.create(*SLEEP, opts=("--name", "notrunning"))
    res = ctrs.cli("stats", "--no-stream")
    lines = assert_ok(res).splitlines()
    assert HEADER.match(lines[0]), res
    assert len(lines) == 2, res
    fields = re.split(r"\s{3,}", lines[1])
    assert fields[0] == cid[:12] and fields[1] == "tabled", res
    assert re.fullmatch(r"\d+\.\d\d%", fields[2]) and fields[6] == "0B / 0B", res
    assert fields[7] == "1", res
    assert stopped[:12] not in res.stdout


def test_all_shows_a_stopped_container_with_zeros(ctrs: Ctrs) -> None:
    ctrs.run_d(*SLEEP, opts=("--name", "up"))
    ctrs.create(*SLEEP, opts=("--name", "down"))
    res = ctrs.cli(
        "stats",
        "-a",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.MemPerc}}|{{.NetIO}}|{{.BlockIO}}|{{.PIDs}}",
    )
    rows = _rows(assert_ok(res))
    assert set(rows) == {"up", "down"}, res
    assert rows["down"] == ["0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0"], res
    assert rows["up"][-1] == "1", res


def test_no_stream_without_containers_prints_nothing(ctrs: Ctrs) -> None:
    res = ctrs.cli("stats", "--no-stream")
    assert assert_ok(res) == "", res


def test_json_format_and_no_trunc(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP, opts=("--name", "jsoned", "--network", "none"))
    res = ctrs.cli("stats", "--no-stream", "--no-trunc", "--format", "json", "jsoned")
    line = assert_ok(res).strip()
    doc = json.loads(line)
    assert list(doc) == sorted(
        ["BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage", "Name", "NetIO", "PIDs"]
    )
    assert doc["ID"] == cid and doc["Name"] == "jsoned" and doc["Container"] == "jsoned"
    assert doc["PIDs"] == "1" and doc["NetIO"] == "0B / 0B"
    res = ctrs.cli("stats", "--no-stream", "--no-trunc", "--format", "table {{.ID}}", cid[:10])
    assert assert_ok(res).splitlines() == ["CONTAINER ID", cid], res


def test_unknown_container_is_dockers_error_with_exit_1(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP)
    res = ctrs.cli("stats", "--no-stream", cid, "nosuchthing", "alsonot")
    assert res.returncode == 1, res
    assert res.stdout == "", res
    assert res.stderr.splitlines() == [
        "pyctr-fast: No such container: nosuchthing",
        "pyctr-fast: No such container: alsonot",
    ], res


def test_a_bad_template_fails_at_once_with_one_line(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP)
    for fmt in ("{{.Nope", "{{.Nope}}"):
        res = ctrs.cli("stats", "--no-stream", "--format", fmt, cid)
        assert res.returncode != 0 and res.stdout == "" and "template" in res.stderr, res
        assert len(res.stderr.splitlines()) == 1 and res.seconds < 5, res


def _read_until(proc: subprocess.Popen[bytes], done: Any, timeout: float) -> bytes:
    """stdout of ``proc`` until ``done(bytes so far)`` or ``timeout`` s."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(got):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.05)
            continue
        if not chunk:
            break
        got += chunk
    return got


def test_streaming_refreshes_the_screen_until_interrupted(ctrs: Ctrs) -> None:
    ctrs.run_d(*SLEEP, opts=("--name", "streamed"))
    ctrs.create(*SLEEP, opts=("--name", "stopped"))
    proc = ctrs.engine.tracker.add(
        subprocess.Popen(
            ctrs.engine.argv("stats", "-a"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ctrs.engine.base_env(),
            start_new_session=True,
        )
    )
    try:
        out = _read_until(proc, lambda b: b.count(CLEAR) >= 3, 30)
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=10)
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            kill_group(proc)
            proc.wait()
    text = out.decode()
    assert text.startswith(CLEAR.decode()), text
    frames = [f for f in text.split(CLEAR.decode()) if f]
    assert len(frames) >= 2, (text, err)
    last = frames[1].splitlines()  # a complete frame
    assert HEADER.match(last[0]), text
    by_name = {re.split(r"\s{3,}", line)[1]: re.split(r"\s{3,}", line) for line in last[1:]}
    assert set(by_name) == {"streamed", "stopped"}, text
    assert by_name["stopped"][2:] == ["--", "-- / --", "--", "--", "--", "--"], text
    assert by_name["streamed"][7] == "1", text
    assert proc.returncode == 130, err  # ^C, as the CLI's other commands
    assert "Traceback" not in err, err


def test_a_foreground_container_without_cgroup_is_counted_from_proc(ctrs: Ctrs) -> None:
    proc = ctrs.engine.popen(*BUSY, opts=["--name", "fg"])
    try:
        cid = ctrs.engine.wait_for_container_dir()
        ctrs.wait_for(cid, lambda s: s["Status"] == "running")
        time.sleep(0.3)
        res = ctrs.cli(
            "stats", "--no-stream", "--format", "{{.Name}}|{{.CPUPerc}}|{{.PIDs}}|{{.MemUsage}}"
        )
        rows = _rows(assert_ok(res))
        assert list(rows) == ["fg"], res
        assert float(rows["fg"][0].rstrip("%")) > 50, res
        assert rows["fg"][1] == "1", res
        assert rows["fg"][2] == "0B / " + bytes_size(_host_memory()), res
    finally:
        assert_ok(ctrs.cli("kill", "fg"))
        proc.wait(timeout=10)


def _memory_flag() -> bool:
    from pyctr_fast.cli import RUN_FLAGS

    return any(f.long == "memory" for f in RUN_FLAGS)


@pytest.mark.skipif(not _memory_flag(), reason="run has no -m/--memory yet")
def test_memory_limit_is_the_cgroups_limit(ctrs: Ctrs) -> None:
    ctrs.run_d(*SLEEP, opts=("--name", "limited", "-m", "64m"))
    res = ctrs.cli("stats", "--no-stream", "--format", "{{.MemUsage}}|{{.MemPerc}}", "limited")
    used, _, limit = assert_ok(res).strip().split("|")[0].partition(" / ")
    assert limit == "64MiB", res
    assert used != "0B", res


def test_a_v2_cgroup_recorded_in_launch_json_is_read_as_v2(ctrs: Ctrs, tmp_path: Path) -> None:
    """The sample follows the plan launch.json records: pointed at a tree
    shaped like cgroup2, the real container's figures are that tree's."""
    cid = ctrs.run_d(*SLEEP, opts=("--name", "twotree"))
    d = _write(tmp_path / "unified" / "pyctr-fast" / cid, V2_FILES)
    launch = ctrs.dir(cid) / "launch.json"
    original = launch.read_bytes()
    doc = json.loads(original)
    doc["cgroup"] = {
        "version": 2,
        "path": f"pyctr-fast/{cid}",
        "controllers": {c: str(d) for c in ("cpu", "memory", "pids", "io")},
        "mounts": {c: str(tmp_path / "unified") for c in ("cpu", "memory", "pids", "io")},
        "dirs": [str(d)],
        "oom_file": str(d / "memory.events"),
    }
    launch.write_text(json.dumps(doc))
    try:
        res = ctrs.cli(
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}}|{{.MemPerc}}|{{.BlockIO}}|{{.PIDs}}|{{.CPUPerc}}",
            "twotree",
        )
        fields = assert_ok(res).strip().split("|")
    finally:
        launch.write_bytes(original)
    # 10 MiB - 2 MiB inactive_file over 64 MiB; io.stat summed; pids.current.
    assert fields[:4] == ["8MiB / 64MiB", "12.50%", "1.05MB / 4.1kB", "5"], res
    assert fields[4] == "0.00%", res  # the same cpu.stat twice: no CPU time spent


# --------------------------------------------------------------------------- the API


def _client(ctrs: Ctrs) -> Any:
    from pyctr_fast.client import DockerClient

    return DockerClient(str(ctrs.engine.root))


def test_api_stats_without_stream_is_one_engine_api_object(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*BUSY, opts=("--name", "apistats", "--network", "none"))
    box = _client(ctrs).containers.get(cid)
    started = time.monotonic()
    doc = box.stats(stream=False)
    assert time.monotonic() - started >= 0.9  # two samples a second apart
    assert isinstance(doc, dict)
    for key in (
        "read",
        "preread",
        "pids_stats",
        "blkio_stats",
        "num_procs",
        "storage_stats",
        "cpu_stats",
        "precpu_stats",
        "memory_stats",
        "name",
        "id",
    ):
        assert key in doc, key
    assert doc["id"] == cid and doc["name"] == "/apistats"
    assert "networks" not in doc  # --network none: moby reports no interface
    assert doc["preread"] < doc["read"]
    cpu, pre = doc["cpu_stats"], doc["precpu_stats"]
    assert cpu["online_cpus"] == os.cpu_count()
    assert cpu["system_cpu_usage"] > pre["system_cpu_usage"] > 0
    assert cpu["cpu_usage"]["total_usage"] > pre["cpu_usage"]["total_usage"] > 0
    assert cpu_percent(doc) > 50
    assert doc["memory_stats"]["usage"] > 0 and doc["memory_stats"]["limit"] == _host_memory()
    assert doc["pids_stats"]["current"] == 1
    one = box.stats(stream=False, one_shot=True)
    assert one["preread"] == "0001-01-01T00:00:00Z"
    assert one["precpu_stats"]["cpu_usage"]["total_usage"] == 0


def test_api_stats_stream_yields_decoded_dicts_or_json_bytes(ctrs: Ctrs) -> None:
    cid = ctrs.run_d(*SLEEP)
    box = _client(ctrs).containers.get(cid)
    gen = box.stats(decode=True)
    first, second = next(gen), next(gen)
    assert first["id"] == cid and second["preread"] == first["read"]
    assert second["precpu_stats"] == first["cpu_stats"]
    raw = box.stats(stream=True)
    chunk = next(raw)
    assert isinstance(chunk, bytes) and chunk.endswith(b"\n")
    assert json.loads(chunk)["id"] == cid


def test_api_stats_of_a_stopped_container_is_zeros_and_bad_arguments_refused(
    ctrs: Ctrs,
) -> None:
    from pyctr_fast.errors import APIError, NotFound

    cid = ctrs.create(*SLEEP, opts=("--name", "idlebox"))
    client = _client(ctrs)
    box = client.containers.get(cid)
    doc = box.stats(stream=False)
    assert doc["name"] == "/idlebox" and doc["memory_stats"] == {} and doc["pids_stats"] == {}
    assert doc["read"] == "0001-01-01T00:00:00Z"
    assert list(box.stats(decode=True)) == [doc]  # one sample of zeros, then the end
    with pytest.raises(APIError):
        box.stats(stream=False, decode=True)
    with pytest.raises(APIError):
        box.stats(stream=True, one_shot=True)
    assert_ok(ctrs.cli("rm", cid))
    with pytest.raises(NotFound):
        box.stats(stream=False)


def test_a_bridged_containers_eth0_traffic_is_counted(ctrs: Ctrs) -> None:
    # The default network is the bridge: pinging its gateway (an address of
    # this host the test's own bridge holds) shows up in NetIO and networks.
    cid = ctrs.run_d(
        "sh",
        "-c",
        "ping -c 3 -i 0.2 -s 1000 $(ip route | awk '/default/ {print $3}'); exec sleep 60",
    )
    time.sleep(1.2)
    doc = json.loads(assert_ok(ctrs.cli("stats", "--no-stream", "--format", "json", cid)).strip())
    received, _, sent = doc["NetIO"].partition(" / ")
    assert received.endswith("kB") and sent.endswith("kB"), doc
    assert float(sent[:-2]) >= 3.0, doc  # three 1 kB echo requests at least
    api = _client(ctrs).containers.get(cid).stats(stream=False)
    assert list(api["networks"]) == ["eth0"], api["networks"]
