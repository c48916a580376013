"""``logs``: json-file records back as the container wrote them.

Log files are written by the tests exactly as docs/lifecycle.md says the
supervisor writes them (and, for the end-to-end cases, by the real
supervisor): rotated files are read oldest first, stdout records go to stdout
and stderr records to stderr, ``--tail`` counts records of both streams from
the end, ``--since``/``--until`` select by record time, ``-f`` follows the
live file across rotations until the supervisor is gone.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import ctrkit
import pytest
from ctrkit import Engine, assert_engine_error, assert_ok
from fakectr import Detached, FakeRoot, detached, fake, log_line, rfc3339

pytestmark = pytest.mark.usefixtures("integration_ready")

__all__ = ["detached", "fake"]  # the fixtures

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def write_logs(fake: FakeRoot, cid: str, files: list[list[tuple[str, str, float]]]) -> None:
    """``files`` oldest first: the last is the live file, the others ``.N`` ... ``.1``."""
    live = fake.log_path(cid)
    for i, records in enumerate(files):
        n = len(files) - 1 - i
        path = Path(f"{live}.{n}") if n else live
        path.write_bytes(b"".join(log_line(s, text, when) for s, text, when in records))


ROTATED = [
    [("stdout", "one\n", T0 + 1), ("stderr", "err-one\n", T0 + 2)],
    [("stdout", "par", T0 + 3), ("stdout", "tial\n", T0 + 3.5), ("stderr", "err-two\n", T0 + 4)],
    [("stdout", "héllo ✓\n", T0 + 5), ("stdout", "no newline at the end", T0 + 6)],
]


def test_logs_sends_each_stream_to_its_own_fd_oldest_file_first(
    engine: Engine, fake: FakeRoot
) -> None:
    cid = fake.add("talker")
    write_logs(fake, cid, ROTATED)
    res = engine.cli_run("logs", "talker")
    assert res.returncode == 0, res
    assert res.stdout == "one\npartial\nhéllo ✓\nno newline at the end"
    assert res.stderr == "err-one\nerr-two\n"


def test_logs_tail_counts_records_of_both_streams_across_rotated_files(
    engine: Engine, fake: FakeRoot
) -> None:
    cid = fake.add("tailer")
    write_logs(fake, cid, ROTATED)

    def logs(*args: str) -> tuple[str, str]:
        res = engine.cli_run("logs", *args, "tailer")
        assert res.returncode == 0, res
        return res.stdout, res.stderr

    # The last 3 records: "tial\n" and "err-two\n" from .1, then the live file.
    assert logs("--tail", "4") == ("tial\nhéllo ✓\nno newline at the end", "err-two\n")
    assert logs("-n", "2") == ("héllo ✓\nno newline at the end", "")
    assert logs("--tail", "0") == ("", "")
    assert logs("--tail", "all")[1] == "err-one\nerr-two\n"
    assert logs("--tail", "-1")[1] == "err-one\nerr-two\n"
    assert logs("--tail", "100")[0] == "one\npartial\nhéllo ✓\nno newline at the end"
    assert_engine_error(engine.cli_run("logs", "--tail", "x", "tailer"), 125, '"x"')


def test_logs_timestamps_prefix_each_record_with_its_time(engine: Engine, fake: FakeRoot) -> None:
    cid = fake.add("stamped")
    write_logs(fake, cid, [[("stdout", "a\n", T0 + 0.5), ("stderr", "b\n", T0 + 1.25)]])
    res = engine.cli_run("logs", "-t", "stamped")
    assert res.stdout == "2023-11-14T22:13:20.500000000Z a\n", res
    assert res.stderr == "2023-11-14T22:13:21.250000000Z b\n", res


def test_logs_since_and_until_select_by_record_time(engine: Engine, fake: FakeRoot) -> None:
    cid = fake.add("timed")
    now = time.time()
    write_logs(
        fake,
        cid,
        [
            [("stdout", "old\n", now - 3600), ("stdout", "mid\n", now - 600)],
            [("stdout", "new\n", now - 5)],
        ],
    )

    def out(*args: str) -> str:
        return assert_ok(engine.cli_run("logs", *args, "timed"))

    assert out("--since", "20m") == "mid\nnew\n"
    assert out("--since", "1m") == "new\n"
    assert out("--until", "1m") == "old\nmid\n"
    assert out("--since", "2h", "--until", "30m") == "old\n"
    assert out("--since", str(int(now - 601))) == "mid\nnew\n"
    assert out("--since", rfc3339(now - 601)) == "mid\nnew\n"
    assert out("--until", rfc3339(now - 3600)) == "old\n"  # inclusive, like Docker
    local = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now - 601))
    assert out("--since", local) == "mid\nnew\n"  # no zone: local time
    assert_engine_error(
        engine.cli_run("logs", "--since", "yesterday", "timed"),
        125,
        'failed to parse value as time or duration: "yesterday"',
    )


def test_logs_tail_reads_only_the_end_of_a_big_file(
    fake: FakeRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyctr_fast import logs, records

    cid = fake.add("big")
    line = log_line("stdout", "x" * 200 + "\n", T0)
    with open(fake.log_path(cid), "wb") as f:
        for _ in range(8):
            f.write(line * 10_000)  # 8 x 2.3 MB
        f.write(log_line("stdout", "last-but-one\n", T0) + log_line("stderr", "last\n", T0))
    size = fake.log_path(cid).stat().st_size
    assert size > 16 << 20
    read = 0
    real_pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        nonlocal read
        data = real_pread(fd, n, offset)
        read += len(data)
        return data

    monkeypatch.setattr(logs.os, "pread", counting_pread)
    rec = records.Record(str(fake.root), cid)
    got = list(logs.read_logs(rec, tail=2))
    assert [(s, d) for s, _, d in got] == [("stdout", b"last-but-one\n"), ("stderr", b"last\n")]
    assert read < 256 * 1024, f"read {read} bytes of a {size}-byte file for --tail 2"


def _popen_logs(engine: Engine, *args: str) -> subprocess.Popen[bytes]:
    return engine.tracker.add(
        subprocess.Popen(
            engine.argv("logs", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=engine.base_env(),
            start_new_session=True,
        )
    )


def test_logs_follow_reopens_the_live_file_after_rotation_and_ends_with_the_supervisor(
    engine: Engine, fake: FakeRoot
) -> None:
    cid = fake.add("followed", status="running", finished="0001-01-01T00:00:00Z")
    lock = fake.hold_lock(cid)  # the "supervisor" is this test
    live = fake.log_path(cid)
    live.write_bytes(log_line("stdout", "before\n", T0))
    proc = _popen_logs(engine, "-f", "followed")
    assert proc.stdout is not None
    assert ctrkit.read_line(proc.stdout, 10) == b"before\n"

    def supervisor() -> None:
        n = 0
        for _ in range(3):
            with open(live, "ab") as f:
                for _ in range(5):
                    f.write(log_line("stdout", f"line-{n}\n", T0 + n))
                    f.flush()
                    n += 1
                    time.sleep(0.01)
            # rotate like the supervisor: .1 -> .2, live -> .1, then a new live file
            if os.path.exists(f"{live}.1"):
                os.replace(f"{live}.1", f"{live}.2")
            os.replace(live, f"{live}.1")
            live.write_bytes(b"")
            time.sleep(0.15)
        with open(live, "ab") as f:
            f.write(log_line("stderr", "bye\n", T0 + 100))
        fake.release(lock)

    writer = threading.Thread(target=supervisor)
    writer.start()
    try:
        res = ctrkit.finish(proc, timeout=20)
    finally:
        writer.join()
    assert res.returncode == 0, res
    assert res.stdout.split() == [f"line-{i}" for i in range(15)], res
    assert res.stderr == "bye\n", res


def _rotate(live: Path, keep: int) -> None:
    """Rotate like the supervisor: .N-1 -> .N ... live -> .1, then a new live file."""
    for n in range(keep - 1, 0, -1):
        if os.path.exists(f"{live}.{n}"):
            os.replace(f"{live}.{n}", f"{live}.{n + 1}")
    os.replace(live, f"{live}.1")
    live.write_bytes(b"")


def test_logs_follow_reads_files_rotated_twice_between_two_polls(fake: FakeRoot) -> None:
    from pyctr_fast import logs, records

    cid = fake.add("busy", status="running", finished="0001-01-01T00:00:00Z")
    lock = fake.hold_lock(cid)
    live = fake.log_path(cid)
    live.write_bytes(log_line("stdout", "before\n", T0))
    seen: list[bytes] = []
    first = threading.Event()

    def follow() -> None:
        rec = records.Record(str(fake.root), cid)
        for _, _, data in logs.read_logs(rec, follow=True, poll=0.4):
            seen.append(data)
            first.set()

    reader = threading.Thread(target=follow)
    reader.start()
    try:
        assert first.wait(10)
        time.sleep(0.05)  # the reader is now asleep for its 0.4 s poll
        for n in range(15):
            with open(live, "ab") as f:
                f.write(log_line("stdout", f"line-{n}\n", T0 + n))
            if n % 5 == 4 and n < 14:
                _rotate(live, keep=5)
    finally:
        fake.release(lock)
        reader.join(10)
    assert not reader.is_alive()
    assert b"".join(seen).split() == [b"before"] + [f"line-{i}".encode() for i in range(15)]


def test_logs_follow_of_a_stopped_container_prints_and_returns(
    engine: Engine, fake: FakeRoot
) -> None:
    cid = fake.add("done")
    write_logs(fake, cid, [[("stdout", "all done\n", T0)]])
    res = engine.cli_run("logs", "-f", "done", timeout=10)
    assert assert_ok(res) == "all done\n"


def test_logs_of_a_real_container_follow_rotation_by_the_supervisor(
    engine: Engine, detached: Detached, tmp_path: Path
) -> None:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    script = (
        "echo start; while [ ! -e /ctl/go ]; do sleep 0.02; done; echo to-stderr >&2; "
        "i=0; while [ $i -lt 120 ]; do echo line-$i; i=$((i+1)); sleep 0.02; done"
    )
    cid = detached.run(
        "sh", "-c", script,
        opts=["-v", f"{ctl}:/ctl", "--log-opt", "max-size=1k", "--log-opt", "max-file=3"],
    )  # fmt: skip
    proc = _popen_logs(engine, "-f", cid)
    assert proc.stdout is not None
    assert ctrkit.read_line(proc.stdout, 10) == b"start\n"
    (ctl / "go").touch()
    res = ctrkit.finish(proc, timeout=30)
    assert res.returncode == 0, res
    assert res.stdout.split() == [f"line-{i}" for i in range(120)], res  # "start" was read
    assert res.stderr == "to-stderr\n", res
    log = Path(engine.root / "containers" / cid / f"{cid}-json.log")
    assert Path(f"{log}.2").exists()  # it did rotate: 120 lines are far more than 3 x 1 KiB
    assert not Path(f"{log}.3").exists()
    # Without -f, only what rotation kept is left: the newest records, still in order.
    kept = assert_ok(engine.cli_run("logs", cid)).split()
    assert kept == [f"line-{i}" for i in range(120 - len(kept), 120)]
