"""Terminals: ``-it`` sessions through a real pty (pexpect), ``-t`` alone, and
no terminal at all."""

from __future__ import annotations

import re

import pexpect
import pytest
from ctrkit import Engine, assert_ok, close_pty, spawn_pty

pytestmark = pytest.mark.timeout(60)

# busybox ash prints "/ # " and then asks the terminal for the cursor position.
PROMPT = re.compile(rb"/ # ")
#: A line end on a pty: "\r\n", or "\r\r\n" when the caller's terminal is not
#: in raw mode (as with docker -t without -i).
NL = rb"\r+\n"


def spawn(
    engine: Engine, *cmd: str, opts: list[str], rows: int = 24, cols: int = 80
) -> pexpect.spawn:
    return spawn_pty(engine, engine.run_argv(*cmd, opts=opts), (rows, cols))


def test_interactive_tty_session(engine: Engine) -> None:
    child = spawn(engine, "sh", opts=["-it"])
    child.expect(PROMPT)
    child.sendline("tty; echo TERM=$TERM; exit 3")
    child.expect(rb"/dev/pts/0" + NL)
    child.expect(rb"TERM=xterm" + NL)
    assert close_pty(child) == 3


def test_tty_without_interactive_is_still_a_terminal(engine: Engine) -> None:
    child = spawn(engine, "tty", opts=["-t"])
    child.expect(rb"/dev/pts/0" + NL)
    assert close_pty(child) == 0


def test_no_tty_means_not_a_tty(engine: Engine) -> None:
    res = engine.sh("tty; echo rc=$?; echo TERM=${TERM-unset}")
    assert res.returncode == 0, res
    assert res.stdout == "not a tty\nrc=1\nTERM=unset\n", res


def test_no_tty_even_when_the_caller_has_one(engine: Engine) -> None:
    child = spawn(engine, "sh", "-c", "tty; echo rc=$?", opts=[])
    child.expect(rb"not a tty" + NL + rb"rc=1" + NL)
    assert close_pty(child) == 0


@pytest.mark.parametrize("attempt", range(5))
def test_tty_has_the_callers_window_size_before_the_command_starts(
    engine: Engine, attempt: int
) -> None:
    # Repeated: a size set only after the exec is a race the command can win.
    child = spawn(engine, "stty", "size", opts=["-t"], rows=33, cols=101 + attempt)
    child.expect(rb"33 %d" % (101 + attempt) + NL)
    assert close_pty(child) == 0


def test_window_size_change_is_relayed(engine: Engine) -> None:
    child = spawn(engine, "sh", opts=["-it"], rows=24, cols=80)
    child.expect(PROMPT)
    child.sendline("stty size")
    child.expect(rb"24 80" + NL)
    child.expect(PROMPT)
    child.setwinsize(40, 132)
    child.sendline("stty size")
    child.expect(rb"40 132" + NL)
    child.sendline("exit 0")
    assert close_pty(child) == 0


def test_ctrl_c_goes_to_the_container(engine: Engine) -> None:
    child = spawn(
        engine,
        "sh", "-c", 'trap "echo caught-INT; exit 9" INT; echo ready; while :; do sleep 0.05; done',
        opts=["-it"],
    )  # fmt: skip
    child.expect(rb"ready" + NL)
    child.sendcontrol("c")
    child.expect(rb"caught-INT")
    assert close_pty(child) == 9


def test_tty_merges_stderr_into_the_terminal(engine: Engine) -> None:
    child = spawn(engine, "sh", "-c", "echo to-stderr >&2", opts=["-t"])
    child.expect(rb"to-stderr" + NL)
    assert close_pty(child) == 0


def test_caller_terminal_is_restored_after_the_session(engine: Engine) -> None:
    # Run the CLI from a shell on a pty, then ask that shell for its terminal
    # modes: raw mode must be undone.
    argv = engine.run_argv("sh", "-c", "exit 4", opts=["-it"])
    script = " ".join(f"'{a}'" for a in argv) + "; echo rc=$?; stty -a"
    child = spawn_pty(engine, ["/bin/sh", "-c", script])
    child.expect(rb"rc=4")
    child.expect(pexpect.EOF)
    modes = child.before.decode(errors="replace").split()
    for flag in ("icanon", "echo", "isig", "icrnl", "opost"):
        assert flag in modes, f"-{flag}: the terminal was left in raw mode\n{child.before!r}"
    child.close()


def test_tty_output_is_complete(engine: Engine) -> None:
    child = spawn(engine, "seq", "1", "20000", opts=["-t"])
    child.expect(NL + rb"20000" + NL)
    assert close_pty(child) == 0


def test_no_tty_stdout_is_binary_clean(engine: Engine) -> None:
    # Without -t there is no line discipline in between: no \r is added.
    assert assert_ok(engine.run("printf", "a\\nb\\n")) == "a\nb\n"
