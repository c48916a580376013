"""Bad input: Docker's exit code, ONE line on stderr starting ``pyctr-fast: ``,
nothing on stdout, and nothing left behind (the leak guard checks processes,
mounts and state after every test)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from ctrkit import Engine, assert_engine_error

pytestmark = pytest.mark.timeout(60)


def assert_no_state(engine: Engine) -> None:
    assert engine.container_dirs() == []


# ----------------------------------------------------------------- the rootfs


def test_missing_rootfs_is_125(engine: Engine, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-rootfs"
    res = engine.run("true", rootfs=missing)
    assert_engine_error(res, 125, str(missing))
    assert_no_state(engine)


def test_rootfs_that_is_a_file_is_125(engine: Engine, tmp_path: Path) -> None:
    f = tmp_path / "a-file"
    f.write_text("not a directory\n")
    res = engine.run("true", rootfs=f)
    assert_engine_error(res, 125, str(f))
    assert_no_state(engine)


def test_run_without_rootfs_or_image_is_125(engine: Engine) -> None:
    res = engine.cli_run("run", "--rm")
    assert_engine_error(res, 125, "--rootfs")


def test_run_of_a_missing_image_with_pull_never_is_125_and_contacts_nothing(engine: Engine) -> None:
    res = engine.cli_run("run", "--rm", "--pull", "never", "true")
    assert_engine_error(res, 125, "true")


def test_missing_command_is_125(engine: Engine) -> None:
    res = engine.cli_run("run", "--rm", "--rootfs", str(engine.rootfs))
    assert_engine_error(res, 125)


def test_unknown_flag_is_125(engine: Engine) -> None:
    res = engine.run("true", opts=["--no-such-flag"])
    assert_engine_error(res, 125, "--no-such-flag")


def test_unknown_subcommand_is_125(engine: Engine) -> None:
    res = engine.cli_run("no-such-command")
    assert_engine_error(res, 125, "no-such-command")


# ----------------------------------------------------------------- the command

COMMAND_CASES = [
    pytest.param(["no-such-command-xyz"], 127, "no-such-command-xyz", id="not-in-path"),
    pytest.param(["/bin/no-such-binary"], 127, "/bin/no-such-binary", id="absolute-missing"),
    pytest.param(
        ["/usr/local/bin/not-executable"], 126, "/usr/local/bin/not-executable", id="not-executable"
    ),
    pytest.param(["/tmp"], 126, "/tmp", id="a-directory"),
    pytest.param(
        ["/usr/local/bin/bad-interpreter"],
        127,
        "/usr/local/bin/bad-interpreter",
        id="bad-interpreter",
    ),
]


@pytest.mark.parametrize(("cmd", "code", "needle"), COMMAND_CASES)
def test_command_that_cannot_run(engine: Engine, cmd: list[str], code: int, needle: str) -> None:
    res = engine.run(*cmd)
    assert_engine_error(res, code, needle)
    assert_no_state(engine)


def test_command_lookup_uses_the_containers_path_not_the_hosts(engine: Engine) -> None:
    # `python3` exists on the host but not in the busybox image.
    assert shutil.which("python3")
    res = engine.run("python3", "-c", "print(1)")
    assert_engine_error(res, 127, "python3")


def test_script_in_path_runs(engine: Engine) -> None:
    # The positive control for the cases above.
    res = engine.run("hello", "world")
    assert (res.returncode, res.stdout, res.stderr) == (0, "hello world\n", ""), res


# ----------------------------------------------------------------- flags

FLAG_CASES = [
    pytest.param(["-u", "bob"], "bob", id="unknown-user"),
    pytest.param(["-u", "alice:no-such-group"], "no-such-group", id="unknown-group"),
    pytest.param(["-u", "bob:staff"], "bob", id="unknown-user-known-group"),
    pytest.param(["-e", "=value"], "=value", id="env-without-name"),
    pytest.param(["--cap-add", "NOT_A_CAP"], "NOT_A_CAP", id="cap-add-unknown"),
    pytest.param(["--cap-drop", "NOT_A_CAP"], "NOT_A_CAP", id="cap-drop-unknown"),
    pytest.param(["--network", "no-such-net"], "no-such-net", id="network-unknown"),
    pytest.param(["-w", "relative/dir"], "relative/dir", id="workdir-relative"),
    pytest.param(["--tmpfs", "relative"], "relative", id="tmpfs-relative"),
    pytest.param(["--hostname", "bad host"], "bad host", id="hostname-space"),
    pytest.param(["--hostname", "bad/host"], "bad/host", id="hostname-slash"),
    pytest.param(["--hostname=-leading-dash"], "-leading-dash", id="hostname-leading-dash"),
    pytest.param(["--hostname", "a" * 65], "a" * 65, id="hostname-too-long"),
    pytest.param(["--env-file", "/no/such/env-file"], "/no/such/env-file", id="env-file-missing"),
    pytest.param(["--name", "bad name"], "bad name", id="name-with-space"),
    pytest.param(["--name", "-dash"], "-dash", id="name-leading-dash"),
]


@pytest.mark.parametrize(("opts", "needle"), FLAG_CASES)
def test_bad_flag_value_is_125(engine: Engine, opts: list[str], needle: str) -> None:
    res = engine.run("true", opts=opts)
    assert_engine_error(res, 125, needle)
    assert_no_state(engine)


VOLUME_CASES = [
    # spec, what the message must name
    pytest.param("{src}:/a:/b:/c", "{src}:/a:/b:/c", id="too-many-fields"),
    pytest.param("{src}:relative", "relative", id="relative-destination"),
    pytest.param("{src}:/data:bogus", "bogus", id="unknown-mode"),
    pytest.param(":/data", ":/data", id="empty-source"),
    pytest.param("{src}:", "{src}:", id="empty-destination"),
]


@pytest.mark.parametrize(("spec", "needle"), VOLUME_CASES)
def test_malformed_volume_is_125(engine: Engine, tmp_path: Path, spec: str, needle: str) -> None:
    res = engine.run("true", opts=["-v", spec.format(src=tmp_path)])
    assert_engine_error(res, 125, needle.format(src=tmp_path))
    assert_no_state(engine)


def test_missing_bind_source_is_125(engine: Engine, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    res = engine.run("true", opts=["-v", f"{missing}:/data"])
    assert_engine_error(res, 125, str(missing))
    assert not missing.exists(), "docker's --mount semantics: a missing source is not created"
    assert_no_state(engine)


# ----------------------------------------------------------------- the caller

NON_ROOT = [
    pytest.param(
        [
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            # Only to reach the interpreter under /root (mode 0700 here):
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
        ],
        id="uid-65534",
    ),
    pytest.param(["setpriv", "--bounding-set=-sys_admin"], id="root-without-cap-sys-admin"),
]  # fmt: skip


@pytest.mark.parametrize("prefix", NON_ROOT)
def test_unprivileged_caller_is_told_it_needs_root(engine: Engine, prefix: list[str]) -> None:
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed"
    res = engine.run("true", prefix=prefix)
    line = assert_engine_error(res, 125)
    assert "root" in line or "CAP_SYS_ADMIN" in line, line
    assert_no_state(engine)


def test_error_does_not_change_the_rootfs(engine: Engine) -> None:
    before = sorted(os.listdir(engine.rootfs))
    assert_engine_error(engine.run("true", opts=["-u", "bob"]), 125)
    assert_engine_error(engine.run("no-such-command-xyz"), 127)
    assert sorted(os.listdir(engine.rootfs)) == before
