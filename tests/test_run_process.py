"""The container process: capabilities, user and groups, environment, working
directory, stdio, exit codes and signals."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from ctrkit import (
    CAP_NUMBERS,
    DEFAULT_CAPS,
    DOCKER_PATH,
    Engine,
    assert_ok,
    finish,
    parse_env,
    parse_status,
    read_line,
)

pytestmark = pytest.mark.timeout(60)

CAP_FIELDS = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]


def caps_of(engine: Engine, opts: list[str]) -> dict[str, int]:
    status = parse_status(assert_ok(engine.run("cat", "/proc/self/status", opts=opts)))
    return {f: int(status[f], 16) for f in CAP_FIELDS}


def bit(name: str) -> int:
    return 1 << CAP_NUMBERS[name]


# ----------------------------------------------------------------- capabilities

CAP_CASES = [
    pytest.param([], DEFAULT_CAPS, id="default"),
    pytest.param(["--cap-drop", "ALL"], 0, id="drop-all"),
    pytest.param(["--cap-drop", "CHOWN"], DEFAULT_CAPS & ~bit("CHOWN"), id="drop-chown"),
    pytest.param(
        ["--cap-drop", "NET_RAW", "--cap-drop", "MKNOD"],
        DEFAULT_CAPS & ~bit("NET_RAW") & ~bit("MKNOD"),
        id="drop-two",
    ),
    pytest.param(["--cap-add", "SYS_ADMIN"], DEFAULT_CAPS | bit("SYS_ADMIN"), id="add-sys-admin"),
    pytest.param(
        ["--cap-add", "CAP_SYS_ADMIN"], DEFAULT_CAPS | bit("SYS_ADMIN"), id="add-cap-prefix"
    ),
    pytest.param(["--cap-add", "sys_ptrace"], DEFAULT_CAPS | bit("SYS_PTRACE"), id="add-lowercase"),
    pytest.param(
        ["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE"],
        bit("NET_BIND_SERVICE"),
        id="drop-all-add-one",
    ),
    pytest.param(
        ["--cap-add", "NET_BIND_SERVICE", "--cap-drop", "ALL"],
        bit("NET_BIND_SERVICE"),
        id="add-then-drop-all-order-irrelevant",
    ),
]


@pytest.mark.parametrize(("opts", "expected"), CAP_CASES)
def test_capability_sets_follow_cap_add_and_cap_drop(
    engine: Engine, opts: list[str], expected: int
) -> None:
    caps = caps_of(engine, opts)
    assert caps == {
        "CapInh": 0,
        "CapPrm": expected,
        "CapEff": expected,
        "CapBnd": expected,
        "CapAmb": 0,
    }, {k: hex(v) for k, v in caps.items()}


@pytest.mark.parametrize(
    "opts", [["--privileged"], ["--cap-add", "ALL"]], ids=["privileged", "cap-add-all"]
)
def test_privileged_gets_the_callers_bounding_set(
    engine: Engine, opts: list[str], caller_cap_bnd: int
) -> None:
    caps = caps_of(engine, opts)
    assert caps["CapBnd"] == caller_cap_bnd, hex(caps["CapBnd"])
    assert caps["CapEff"] == caller_cap_bnd, hex(caps["CapEff"])
    assert caps["CapPrm"] == caller_cap_bnd, hex(caps["CapPrm"])
    assert caps["CapInh"] == 0 and caps["CapAmb"] == 0


def test_non_root_user_has_no_effective_caps_but_docker_bounding_set(engine: Engine) -> None:
    caps = caps_of(engine, ["-u", "alice"])
    assert caps == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": DEFAULT_CAPS, "CapAmb": 0}


@pytest.mark.parametrize("opts", [[], ["-u", "alice"], ["--privileged"]], ids=str)
def test_no_new_privs_is_off(engine: Engine, opts: list[str]) -> None:
    status = parse_status(assert_ok(engine.run("cat", "/proc/self/status", opts=opts)))
    assert status["NoNewPrivs"] == "0"


def test_dropped_capability_is_really_gone(engine: Engine) -> None:
    ok = engine.sh("chown 1000 /tmp && echo chowned")
    assert ok.stdout == "chowned\n", ok
    res = engine.sh("chown 1000 /root", opts=["--cap-drop", "CHOWN"])
    assert res.returncode != 0, res
    assert "Operation not permitted" in res.stderr, res


# ----------------------------------------------------------------- user and groups

USER_CASES = [
    # spec, uid, gid, supplementary groups (besides the primary gid), HOME
    pytest.param(None, 0, 0, {10}, "/root", id="default-root"),
    pytest.param("alice", 1000, 1000, {29, 50}, "/home/alice", id="name"),
    pytest.param("1000", 1000, 1000, {29, 50}, "/home/alice", id="uid-in-passwd"),
    pytest.param("1000:50", 1000, 50, set(), "/home/alice", id="uid-gid"),
    pytest.param("alice:staff", 1000, 50, set(), "/home/alice", id="name-groupname"),
    pytest.param("alice:4343", 1000, 4343, set(), "/home/alice", id="name-unknown-gid"),
    pytest.param("daemon", 1, 1, {50}, "/usr/sbin", id="daemon"),
    pytest.param("nobody", 65534, 65534, set(), "/nonexistent", id="nobody"),
    pytest.param("4242", 4242, 0, set(), "/", id="uid-not-in-passwd"),
    pytest.param("4242:4343", 4242, 4343, set(), "/", id="uid-gid-not-in-files"),
    pytest.param("0:audio", 0, 29, set(), "/root", id="root-with-group"),
]


@pytest.mark.parametrize(("spec", "uid", "gid", "groups", "home"), USER_CASES)
def test_user_flag_sets_ids_groups_and_home(
    engine: Engine, spec: str | None, uid: int, gid: int, groups: set[int], home: str
) -> None:
    opts = ["-u", spec] if spec is not None else []
    out = assert_ok(engine.sh('cat /proc/self/status; echo "HOME=$HOME"', opts=opts))
    status = parse_status(out)
    assert status["Uid"].split() == [str(uid)] * 4, status["Uid"]
    assert status["Gid"].split() == [str(gid)] * 4, status["Gid"]
    assert {int(g) for g in status["Groups"].split()} - {gid} == groups, status["Groups"]
    assert f"HOME={home}\n" in out


def test_user_name_resolves_inside(engine: Engine) -> None:
    assert assert_ok(engine.run("id", "-un", opts=["-u", "alice"])) == "alice\n"


def test_files_created_by_user_are_owned_by_its_uid_on_the_host(engine: Engine) -> None:
    assert_ok(engine.run("touch", "/tmp/by-alice", opts=["-u", "alice"]))
    st = os.stat(engine.rootfs / "tmp/by-alice")
    assert (st.st_uid, st.st_gid) == (1000, 1000)


# ----------------------------------------------------------------- environment


def env_of(engine: Engine, opts: list[str], **kw: object) -> dict[str, str]:
    return parse_env(assert_ok(engine.run("env", opts=opts, **kw)))  # type: ignore[arg-type]


def test_default_environment_is_path_hostname_home_only(engine: Engine) -> None:
    env = env_of(engine, ["--hostname", "envbox"])
    assert env == {"PATH": DOCKER_PATH, "HOSTNAME": "envbox", "HOME": "/root"}


def test_env_flag_sets_values(engine: Engine) -> None:
    env = env_of(engine, ["-e", "FOO=bar", "-e", "EMPTY=", "-e", "EQ=a=b", "-e", "SP=a b"])
    assert (env["FOO"], env["EMPTY"], env["EQ"], env["SP"]) == ("bar", "", "a=b", "a b")


def test_env_flag_overrides_defaults(engine: Engine) -> None:
    out = assert_ok(engine.run("env", opts=["-e", "PATH=/bin", "-e", "HOME=/custom"]))
    assert out.count("PATH=") == 1 and out.count("HOME=") == 1, out
    env = parse_env(out)
    assert (env["PATH"], env["HOME"]) == ("/bin", "/custom")


def test_bare_env_name_is_taken_from_the_caller(engine: Engine) -> None:
    base = {**engine.base_env(), "PASSED_THROUGH": "from-host"}
    base.pop("NOT_IN_CALLER", None)
    env = env_of(engine, ["-e", "PASSED_THROUGH", "-e", "NOT_IN_CALLER"], env=base)
    assert env["PASSED_THROUGH"] == "from-host"
    assert "NOT_IN_CALLER" not in env


def test_env_file_is_read_like_docker(engine: Engine, tmp_path: Path) -> None:
    f = tmp_path / "vars.env"
    f.write_text(
        "# a comment\n"
        "FROM_FILE=file value with spaces\n"
        "\n"
        'QUOTED="kept as is"\n'
        "PASSED_THROUGH\n"
        "NOT_IN_CALLER\n"
        "OVERRIDDEN=from-file\n"
    )
    base = {**engine.base_env(), "PASSED_THROUGH": "from-host"}
    base.pop("NOT_IN_CALLER", None)
    # -e wins over --env-file whatever their order on the command line.
    env = env_of(engine, ["-e", "OVERRIDDEN=from-flag", "--env-file", str(f)], env=base)
    assert env["FROM_FILE"] == "file value with spaces"
    assert env["QUOTED"] == '"kept as is"'
    assert env["PASSED_THROUGH"] == "from-host"
    assert "NOT_IN_CALLER" not in env
    assert env["OVERRIDDEN"] == "from-flag"
    assert "# a comment" not in env


# ----------------------------------------------------------------- working directory


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ([], "/"),
        (["-w", "/tmp"], "/tmp"),
        (["-w", "/tmp/"], "/tmp"),
        (["-w", "/created/by/engine"], "/created/by/engine"),
        (["-u", "alice", "-w", "/home/alice"], "/home/alice"),
    ],
    ids=["default", "existing", "trailing-slash", "missing-is-created", "as-user"],
)
def test_workdir_flag_sets_the_cwd(engine: Engine, opts: list[str], expected: str) -> None:
    assert assert_ok(engine.run("pwd", opts=opts)) == expected + "\n"


# ----------------------------------------------------------------- stdio


def test_stdout_and_stderr_are_kept_apart(engine: Engine) -> None:
    res = engine.sh("echo out; echo err >&2; echo out2")
    assert (res.returncode, res.stdout, res.stderr) == (0, "out\nout2\n", "err\n"), res


def test_large_output_is_complete(engine: Engine) -> None:
    res = engine.sh("seq 1 200000")
    assert res.returncode == 0, res
    assert res.stdout == "".join(f"{i}\n" for i in range(1, 200001))


def test_stdin_is_dev_null_without_interactive(engine: Engine) -> None:
    res = engine.run("cat", input="this must not reach the container\n")
    assert (res.returncode, res.stdout) == (0, ""), res


def test_interactive_passes_stdin(engine: Engine) -> None:
    data = "".join(f"line {i}\n" for i in range(20000))
    res = engine.run("cat", opts=["-i"], input=data)
    assert res.returncode == 0, res
    assert res.stdout == data


# ----------------------------------------------------------------- exit codes and signals


@pytest.mark.parametrize("code", [0, 1, 3, 42, 126, 127, 255])
def test_exit_code_is_the_commands(engine: Engine, code: int) -> None:
    res = engine.sh(f"exit {code}")
    assert res.returncode == code, res
    assert res.stderr == "", res


def test_command_killed_by_sigkill_gives_137(engine: Engine) -> None:
    proc = engine.popen("sleep", "41.0")
    info = engine.wait_for_container("41.0", proc=proc)
    os.kill(info.pid, signal.SIGKILL)
    res = finish(proc)
    assert res.returncode == 128 + signal.SIGKILL, res


@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2],
    ids=lambda s: signal.Signals(s).name,
)
def test_signal_to_the_cli_is_forwarded_to_the_container(
    engine: Engine, sig: signal.Signals
) -> None:
    name = signal.Signals(sig).name.removeprefix("SIG")
    proc = engine.popen("wait-for-signal", name, "7")
    assert proc.stdout is not None
    assert read_line(proc.stdout, 10) == b"ready\n"
    proc.send_signal(sig)
    res = finish(proc)
    assert res.returncode == 7, res
    assert res.stdout == f"got-{name}\n", res


def test_sigterm_to_cli_with_command_ignoring_it_keeps_running(engine: Engine) -> None:
    # Like docker: PID 1 without a handler ignores SIGTERM; the CLI must not
    # exit (or leave the container behind) just because it got one.
    proc = engine.popen("sh", "-c", "echo ready; exec sleep 37.5")
    assert proc.stdout is not None
    assert read_line(proc.stdout, 10) == b"ready\n"
    info = engine.wait_for_container("37.5", proc=proc)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=0.5)
    except Exception:
        pass
    assert proc.poll() is None, "the CLI exited on SIGTERM while its container was running"
    os.kill(info.pid, signal.SIGKILL)
    assert finish(proc).returncode == 137


def test_umask_is_0022_whatever_the_callers(engine: Engine) -> None:
    res = engine.run("sh", "-c", "umask", prefix=["sh", "-c", 'umask 077; exec "$@"', "sh"])
    assert assert_ok(res) == "0022\n"


def test_valid_name_is_accepted(engine: Engine) -> None:
    assert assert_ok(engine.run("echo", "named", opts=["--name", "web_1.test-x"])) == "named\n"
