"""The in-process API ``pyctr_fast.api.run``: same containers as the CLI,
exit codes returned, bad input raised, and the calling process left as it was."""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ctrkit import DEFAULT_CAPS, Engine, assert_ok, parse_status

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def api_run(engine: Engine) -> Callable[..., int]:
    """``api.run`` with the test's rootfs and root filled in."""
    from pyctr_fast import api

    def run(command: list[str], **kw: Any) -> int:
        kw.setdefault("root", str(engine.root))
        return api.run(str(kw.pop("rootfs", engine.rootfs)), command, **kw)

    return run


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_api_returns_the_exit_code(api_run: Callable[..., int], code: int) -> None:
    assert api_run(["sh", "-c", f"exit {code}"]) == code


def test_api_output_goes_to_the_callers_stdout_and_stderr(
    api_run: Callable[..., int], capfd: pytest.CaptureFixture[str]
) -> None:
    assert api_run(["sh", "-c", "echo out; echo err >&2"]) == 0
    assert capfd.readouterr() == ("out\n", "err\n")


STATUS = ["cat", "/proc/self/status"]
NETDEVS = ["ls", "/sys/class/net"]

SAME_AS_CLI = [
    # command, CLI flags, API keywords
    pytest.param(["hostname"], [], {}, id="hostname"),
    pytest.param(["env"], ["-e", "A=1", "-e", "B=x y"], {"env": {"A": "1", "B": "x y"}},
                 id="env-mapping"),
    pytest.param(["env"], ["-e", "A=1"], {"env": ["A=1"]}, id="env-list"),
    pytest.param(STATUS, ["-u", "alice"], {"user": "alice"}, id="user"),
    pytest.param(["pwd"], ["-w", "/tmp"], {"workdir": "/tmp"}, id="workdir"),
    pytest.param(STATUS, ["--cap-drop", "ALL", "--cap-add", "KILL"],
                 {"cap_drop": ["ALL"], "cap_add": ["KILL"]}, id="caps"),
    pytest.param(STATUS, ["--privileged"], {"privileged": True}, id="privileged"),
    pytest.param(["sh", "-c", "touch /x 2>&1; true"], ["--read-only"], {"read_only": True},
                 id="read-only"),
    pytest.param(NETDEVS, ["--network", "host"], {"network": "host"}, id="network-host"),
    pytest.param(NETDEVS, [], {}, id="network-default"),
    pytest.param(["sh", "-c", "grep -c tmpfs /proc/self/mountinfo"], ["--tmpfs", "/scratch"],
                 {"tmpfs": ["/scratch"]}, id="tmpfs"),
]  # fmt: skip


#: /proc/PID/status fields that define the container's process (the rest, like
#: pids, memory use or the size of the fd table, differ between any two runs).
STATUS_FIELDS = ("Name", "Umask", "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff",
                 "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")  # fmt: skip


def _normalize(out: str) -> str:
    if "CapBnd:" not in out:
        return out
    status = parse_status(out)
    return "\n".join(f"{k}: {status.get(k)}" for k in STATUS_FIELDS)


@pytest.mark.parametrize(("cmd", "cli_opts", "api_kw"), SAME_AS_CLI)
def test_api_gives_the_same_container_as_the_cli(
    engine: Engine,
    api_run: Callable[..., int],
    capfd: pytest.CaptureFixture[str],
    cmd: list[str],
    cli_opts: list[str],
    api_kw: dict[str, Any],
) -> None:
    cli_out = assert_ok(engine.run(*cmd, opts=["--hostname", "same", *cli_opts]))
    capfd.readouterr()
    assert api_run(cmd, hostname="same", **api_kw) == 0
    api_out, api_err = capfd.readouterr()
    assert api_err == ""
    assert _normalize(api_out) == _normalize(cli_out)


def test_api_volume_binds_like_the_cli(
    api_run: Callable[..., int], capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol/f").write_text("via api\n")
    assert api_run(["sh", "-c", "cat /v/f; echo back > /v/g"], volumes=[f"{tmp_path}/vol:/v"]) == 0
    assert capfd.readouterr().out == "via api\n"
    assert (tmp_path / "vol/g").read_text() == "back\n"


def test_api_default_capabilities_are_dockers(
    api_run: Callable[..., int], capfd: pytest.CaptureFixture[str]
) -> None:
    assert api_run(["cat", "/proc/self/status"]) == 0
    status = parse_status(capfd.readouterr().out)
    assert int(status["CapEff"], 16) == DEFAULT_CAPS
    assert int(status["CapBnd"], 16) == DEFAULT_CAPS


def test_api_stdin_is_dev_null_unless_interactive(
    api_run: Callable[..., int], capfd: pytest.CaptureFixture[str]
) -> None:
    assert api_run(["sh", "-c", "readlink /proc/self/fd/0"]) == 0
    assert capfd.readouterr().out == "/dev/null\n"


BAD_INPUT = [
    pytest.param({"rootfs": "/no/such/rootfs"}, "/no/such/rootfs", id="missing-rootfs"),
    pytest.param({"user": "bob"}, "bob", id="unknown-user"),
    pytest.param({"hostname": "bad host"}, "bad host", id="bad-hostname"),
    pytest.param({"cap_add": ["NOT_A_CAP"]}, "NOT_A_CAP", id="bad-cap"),
    pytest.param({"workdir": "relative"}, "relative", id="relative-workdir"),
    pytest.param({"network": "no-such-net"}, "no-such-net", id="bad-network"),
    pytest.param({"volumes": ["/no/such/src:/data"]}, "/no/such/src", id="missing-bind-source"),
    pytest.param({"env": "A=1"}, "", id="env-as-string"),
]


@pytest.mark.parametrize(("kw", "needle"), BAD_INPUT)
def test_api_raises_user_error_on_bad_input(
    engine: Engine, api_run: Callable[..., int], kw: dict[str, Any], needle: str
) -> None:
    from pyctr_fast.errors import UserError

    with pytest.raises(UserError) as info:
        api_run(["true"], **kw)
    message = str(info.value)
    assert "\n" not in message and needle in message, message
    assert engine.container_dirs() == []


def test_api_raises_user_error_for_a_string_command(api_run: Callable[..., int]) -> None:
    from pyctr_fast.errors import UserError

    with pytest.raises(UserError):
        api_run("echo hi")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cmd", "err"),
    [(["no-such-command-xyz"], errno.ENOENT), (["/usr/local/bin/not-executable"], errno.EACCES)],
    ids=["not-found", "not-executable"],
)
def test_api_raises_container_error_when_the_command_cannot_start(
    engine: Engine, api_run: Callable[..., int], cmd: list[str], err: int
) -> None:
    from pyctr_fast.errors import ContainerError

    with pytest.raises(ContainerError) as info:
        api_run(cmd)
    assert info.value.step == "execve"
    assert info.value.errno == err
    assert cmd[0] in str(info.value) and "\n" not in str(info.value)
    assert engine.container_dirs() == []


def test_api_returns_128_plus_signal_when_killed(
    engine: Engine, api_run: Callable[..., int]
) -> None:
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(api_run(["sleep", "43.21"])), daemon=True)
    t.start()
    info = engine.wait_for_container("43.21")
    os.kill(info.pid, signal.SIGKILL)
    t.join(15)
    assert result == [137]


def _children() -> list[str]:
    out = []
    for task in os.listdir("/proc/self/task"):
        out += Path(f"/proc/self/task/{task}/children").read_text().split()
    return out


def test_api_leaves_the_calling_process_as_it_was(
    api_run: Callable[..., int], capfd: pytest.CaptureFixture[str]
) -> None:
    api_run(["true"])  # first call may initialise things once (e.g. the sealed init)
    before = {
        "fds": sorted(os.listdir("/proc/self/fd")),
        "cwd": os.getcwd(),
        "umask": os.umask(0o22),
        "children": _children(),
        "threads": threading.active_count(),
        "handlers": [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)],
        "blocked": signal.pthread_sigmask(signal.SIG_BLOCK, []),
        "env": dict(os.environ),
    }
    os.umask(before["umask"])  # type: ignore[arg-type]
    assert api_run(["sh", "-c", "echo hi; exit 3"]) == 3
    after = {
        "fds": sorted(os.listdir("/proc/self/fd")),
        "cwd": os.getcwd(),
        "umask": os.umask(0o22),
        "children": _children(),
        "threads": threading.active_count(),
        "handlers": [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)],
        "blocked": signal.pthread_sigmask(signal.SIG_BLOCK, []),
        "env": dict(os.environ),
    }
    os.umask(after["umask"])  # type: ignore[arg-type]
    assert after == before


def test_api_failure_leaves_no_fd_behind(api_run: Callable[..., int]) -> None:
    from pyctr_fast.errors import ContainerError, UserError

    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(ContainerError):
        api_run(["no-such-command-xyz"])
    with pytest.raises(UserError):
        api_run(["true"], user="bob")
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert _children() == []


def test_api_uses_pyctr_root_when_no_root_is_given(
    engine: Engine,
    make_root: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    api_run: Callable[..., int],
) -> None:
    env_root = make_root("env-root")
    monkeypatch.setenv("PYCTR_ROOT", str(env_root))
    seen: list[list[str]] = []
    t = threading.Thread(
        target=lambda: seen.append([str(api_run(["sleep", "29.9"], root=None))]), daemon=True
    )
    t.start()
    info = engine.wait_for_container("29.9")
    dirs = engine.container_dirs(env_root)
    os.kill(info.pid, signal.SIGKILL)
    t.join(15)
    assert len(dirs) == 1
    assert engine.container_dirs() == []
    assert engine.container_dirs(env_root) == []
    assert seen == [["137"]]


def test_api_many_runs_in_a_row_leak_nothing(
    api_run: Callable[..., int], capfd: pytest.CaptureFixture[str]
) -> None:
    api_run(["true"])
    fds = sorted(os.listdir("/proc/self/fd"))
    for i in range(20):
        assert api_run(["sh", "-c", f"exit {i}"]) == i
    assert sorted(os.listdir("/proc/self/fd")) == fds
    assert _children() == []
