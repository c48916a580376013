"""Command-line parsing: Docker's flag syntax, run's options, global flags, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from pyctr_fast import api, cli
from pyctr_fast.errors import UserError
from pyctr_fast.flags import BOOL, LIST, VALUE, Flag, parse_flags
from pyctr_fast.spec import RunOptions

PYTHON_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python")

TABLE = (
    Flag("interactive", BOOL, "", short="i"),
    Flag("tty", BOOL, "", short="t"),
    Flag("rm", BOOL, ""),
    Flag("env", LIST, "", short="e"),
    Flag("name", VALUE, ""),
    Flag("workdir", VALUE, "", short="w"),
)


def opts(*args: str) -> RunOptions:
    parsed, _ = cli.options_from_run_args(args)
    assert parsed is not None
    return parsed


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    out, err = capsys.readouterr()
    code = exc.value.code
    assert isinstance(code, int)
    return code, out, err


# --- the flag parser ----------------------------------------------------------------------


def test_short_bool_flags_cluster() -> None:
    parsed, rest = parse_flags(["-it", "cmd"], TABLE)
    assert parsed.flag("interactive") and parsed.flag("tty")
    assert rest == ["cmd"]


@pytest.mark.parametrize(
    "args",
    [
        ["-e", "K=V"],
        ["-eK=V"],
        ["-e=K=V"],
        ["--env", "K=V"],
        ["--env=K=V"],
        ["-ite", "K=V"],
        ["-iteK=V"],
    ],
)
def test_value_flag_spellings_all_give_the_value(args: list[str]) -> None:
    parsed, rest = parse_flags([*args, "cmd"], TABLE)
    assert parsed.values("env") == ["K=V"]
    assert rest == ["cmd"]


def test_list_flags_repeat_in_order_and_value_flags_keep_the_last() -> None:
    parsed, _ = parse_flags(["-e", "A=1", "--env=B=2", "-eC=3", "--name", "x", "--name=y"], TABLE)
    assert parsed.values("env") == ["A=1", "B=2", "C=3"]
    assert parsed.value("name") == "y"


def test_value_flag_takes_next_word_even_if_it_looks_like_a_flag() -> None:
    parsed, rest = parse_flags(["--name", "--rm", "cmd"], TABLE)
    assert parsed.value("name") == "--rm" and not parsed.flag("rm")
    assert rest == ["cmd"]


def test_empty_value_is_allowed() -> None:
    parsed, _ = parse_flags(["--name=", "-w", ""], TABLE)
    assert parsed.value("name") == "" and parsed.value("workdir") == ""


def test_options_stop_at_first_positional_word() -> None:
    parsed, rest = parse_flags(["-i", "sh", "-c", "--rm", "-t"], TABLE)
    assert parsed.flag("interactive") and not parsed.flag("tty") and not parsed.flag("rm")
    assert rest == ["sh", "-c", "--rm", "-t"]


def test_double_dash_ends_options() -> None:
    parsed, rest = parse_flags(["--rm", "--", "-t", "x"], TABLE)
    assert parsed.flag("rm") and not parsed.flag("tty")
    assert rest == ["-t", "x"]


def test_lone_dash_is_a_positional_word() -> None:
    assert parse_flags(["-", "x"], TABLE)[1] == ["-", "x"]


@pytest.mark.parametrize(
    ("args", "value"),
    [(["--rm=false"], False), (["--rm=true"], True), (["--rm=1"], True), (["-i=false"], False)],
)
def test_bool_flags_accept_explicit_values(args: list[str], value: bool) -> None:
    parsed, _ = parse_flags(args, TABLE)
    assert parsed.flag("rm" if args[0].startswith("--") else "interactive") is value


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--foo"], "unknown flag: --foo"),
        (["--foo=bar"], "unknown flag: --foo"),
        (["-x"], "unknown shorthand flag: 'x' in -x"),
        (["-itx"], "unknown shorthand flag: 'x' in -itx"),
        (["--name"], "flag needs an argument: --name"),
        (["-w"], "flag needs an argument: 'w' in -w"),
        (["-iw"], "flag needs an argument: 'w' in -iw"),
        (["--rm=maybe"], 'invalid argument "maybe" for "--rm" flag: not a boolean'),
    ],
)
def test_flag_errors_use_pflags_wording_and_exit_125(args: list[str], message: str) -> None:
    with pytest.raises(UserError) as exc:
        parse_flags(args, TABLE)
    assert exc.value.message == message
    assert exc.value.exit_code == 125


# --- run's options --------------------------------------------------------------------------


def test_run_flags_fill_run_options() -> None:
    got = opts(
        "--rm", "-it", "--name", "web", "-h", "box", "-e", "A=1", "--env-file", "/f.env",
        "-w", "/srv", "-u", "alice:staff", "-v", "/a:/b:ro", "--tmpfs", "/run:size=1m",
        "--read-only", "--cap-add", "NET_ADMIN", "--cap-drop=ALL", "--privileged",
        "--network", "host", "--rootfs", "/r", "sh", "-c", "echo hi",
    )  # fmt: skip
    assert got == RunOptions(
        "/r",
        ["sh", "-c", "echo hi"],
        env=["A=1"],
        env_files=["/f.env"],
        hostname="box",
        name="web",
        user="alice:staff",
        workdir="/srv",
        volumes=["/a:/b:ro"],
        tmpfs=["/run:size=1m"],
        network="host",
        cap_add=["NET_ADMIN"],
        cap_drop=["ALL"],
        privileged=True,
        read_only=True,
        tty=True,
        interactive=True,
        remove=True,
    )


def test_run_defaults_are_dockers() -> None:
    got = opts("--rootfs", "/r", "true")
    assert got == RunOptions("/r", ["true"])
    assert got.network == "bridge" and not got.tty and not got.interactive and not got.remove


def test_long_flag_spellings_for_run() -> None:
    got = opts(
        "--interactive", "--tty", "--hostname=h", "--user=1", "--workdir=/w",
        "--volume=/a:/b", "--net=host", "--rootfs=/r", "true",
    )  # fmt: skip
    assert (got.interactive, got.tty, got.hostname, got.user) == (True, True, "h", "1")
    assert (got.workdir, got.volumes, got.network) == ("/w", ("/a:/b",), "host")


def test_command_words_after_the_first_are_never_parsed_as_flags() -> None:
    got = opts("--rootfs", "/r", "ls", "-la", "--rm", "-e", "X")
    assert got.command == ("ls", "-la", "--rm", "-e", "X")
    assert not got.remove and got.env == ()


def test_run_without_rootfs_or_command_is_an_error() -> None:
    with pytest.raises(UserError, match=r'^"run" requires --rootfs DIR'):
        cli.options_from_run_args([])
    parsed, _ = cli.options_from_run_args(["true"])
    assert parsed is not None and parsed.image == "true"
    with pytest.raises(UserError, match=r'^"run" requires a command'):
        cli.options_from_run_args(["--rootfs", "/r"])


def test_run_help_returns_no_options() -> None:
    parsed, flags = cli.options_from_run_args(["--help"])
    assert parsed is None and flags.flag("help")


# --- main -------------------------------------------------------------------------------------


def test_version_flag_prints_version(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--version", "-v"):
        code, out, _ = run_main([flag], capsys)
        assert (code, out) == (0, "pyctr-fast version 0.1.0\n")


def test_help_and_no_arguments_print_usage(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["-h"], []):
        code, out, _ = run_main(argv, capsys)
        assert code == 0 and out.startswith("Usage:  pyctr-fast [OPTIONS] COMMAND")
        assert "  run " in out and "--root string" in out


def test_per_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["run", "--help"], ["help", "run"]):
        code, out, _ = run_main(argv, capsys)
        assert code == 0 and out.startswith("Usage:  pyctr-fast run [OPTIONS] --rootfs DIR")
        assert "-e, --env list" in out and "--cap-add list" in out
    code, out, _ = run_main(["version", "--help"], capsys)
    assert code == 0 and out.startswith("Usage:  pyctr-fast version")


def test_version_command_prints_versions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["version"], capsys)
    assert code == 0 and out.startswith("pyctr-fast version 0.1.0\n Python:")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--foo"], "pyctr-fast: unknown flag: --foo\n"),
        (["bogus"], "pyctr-fast: 'bogus' is not a pyctr-fast command; see 'pyctr-fast --help'\n"),
        (["run", "--bogus"], "pyctr-fast: unknown flag: --bogus\n"),
        (["run", "-Z"], "pyctr-fast: unknown shorthand flag: 'Z' in -Z\n"),
        (["--root"], "pyctr-fast: flag needs an argument: --root\n"),
    ],
)
def test_usage_errors_are_one_line_on_stderr_with_status_125(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(argv, capsys)
    assert (code, out, err) == (125, "", message)


def test_run_as_non_root_is_refused_with_status_125(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, out, err = run_main(["run", "--rootfs", str(tmp_path), "true"], capsys)
    assert code == 125 and out == ""
    assert err == (
        "pyctr-fast: run needs root (CAP_SYS_ADMIN to create namespaces and mounts); "
        "run it as root or with sudo\n"
    )


def test_root_without_cap_sys_admin_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyctr_fast import container

    monkeypatch.setattr(container, "_has_cap_sys_admin", lambda: False)
    with pytest.raises(UserError, match=r"^run needs root \(CAP_SYS_ADMIN"):
        container.require_root()


def test_global_root_flag_comes_before_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Any] = []

    def fake_run(args: Any, root: str | None) -> int:
        seen.append((list(args), root))
        return 0

    monkeypatch.setitem(cli.COMMANDS, "run", fake_run)
    code, _, _ = run_main(["--root", "/state", "run", "--rootfs", "/r", "true"], capsys)
    assert code == 0 and seen == [(["--rootfs", "/r", "true"], "/state")]
    code, _, _ = run_main(["--root=/s2", "run"], capsys)
    assert seen[-1] == ([], "/s2")


# --- the Python API shares the options ---------------------------------------------------------


def test_api_rejects_a_command_given_as_one_string() -> None:
    with pytest.raises(UserError, match=r"^command must be a sequence of strings"):
        api.run("/r", "echo hi")


def test_api_env_mapping_becomes_docker_env_entries() -> None:
    assert api._env_entries({"A": "1", "B": ""}) == ["A=1", "B="]
    assert api._env_entries(["A=1", "B"]) == ["A=1", "B"]
    assert api._env_entries(None) == []
    with pytest.raises(UserError):
        api._env_entries("A=1")


# --- start-up cost ------------------------------------------------------------------------------


def _modules_after(code: str) -> set[str]:
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    out = subprocess.run(
        [sys.executable, "-S", "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


HEAVY = {"argparse", "json", "subprocess", "ctypes", "dataclasses", "re", "typing", "inspect"}


def test_version_and_help_import_nothing_heavy() -> None:
    for flag in ("--version", "--help"):
        loaded = _modules_after(
            f"from pyctr_fast.cli import _main\nimport contextlib, io\n"
            f"with contextlib.redirect_stdout(io.StringIO()): _main(['{flag}'])"
        )
        assert not loaded & HEAVY, loaded & HEAVY
        assert "pyctr_fast.spec" not in loaded and "pyctr_fast._native" not in loaded


def test_run_path_modules_import_nothing_heavy() -> None:
    loaded = _modules_after("import pyctr_fast.container, pyctr_fast.api, pyctr_fast.cli")
    assert not loaded & HEAVY, loaded & HEAVY


def test_package_import_is_lazy() -> None:
    loaded = _modules_after("import pyctr_fast")
    assert not {m for m in loaded if m.startswith("pyctr_fast.")}
    loaded = _modules_after("import pyctr_fast\npyctr_fast.RunOptions")
    assert "pyctr_fast.spec" in loaded
