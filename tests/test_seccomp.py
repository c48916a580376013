"""Seccomp: ``--security-opt seccomp=PROFILE`` (Docker's profile format)
compiled by the core to a BPF filter and enforced on real containers;
``seccomp=unconfined``, ``no-new-privileges``; bad profiles are one-line
errors that leave nothing behind.  The translation of profile features
(``archMap``, ``includes``/``excludes``) is checked on its own at the end."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from ctrkit import Engine, assert_engine_error, assert_ok, parse_status
from pyctr_fast.errors import UserError
from pyctr_fast.seccomp_profile import parse_security_opts, profile_to_oci

pytestmark = pytest.mark.timeout(60)

NNP = ["--security-opt", "no-new-privileges"]

# What a static busybox `sh -c 'echo ok'` calls once exec'd (x86_64 and aarch64).
BUSYBOX_ECHO = [
    "arch_prctl",
    "brk",
    "execve",
    "exit_group",
    "getcwd",
    "getpid",
    "getppid",
    "getrandom",
    "getuid",
    "mprotect",
    "prctl",
    "prlimit64",
    "readlink",
    "readlinkat",
    "rseq",
    "set_robust_list",
    "set_tid_address",
    "write",
]
# What the init itself calls after installing the filter when the filter
# needs CAP_SYS_ADMIN (no no-new-privileges): dropping the held capability
# and the exec record to the parent.
INIT_AFTER_INSTALL_WITH_CAP_HELD = ["capset", "sendto"]


def profile(tmp_path: Path, body: dict[str, Any], name: str = "profile.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(body))
    return str(path)


def seccomp_opt(tmp_path: Path, body: dict[str, Any]) -> list[str]:
    return ["--security-opt", f"seccomp={profile(tmp_path, body)}"]


def status_of(out: str) -> dict[str, str]:
    return parse_status(out)


# ------------------------------------------------------------------ enforcement


@pytest.mark.parametrize("nnp", [False, True], ids=["caps-still-held", "no-new-privileges"])
def test_errno_rule_makes_mkdir_fail_with_eperm_and_everything_else_works(
    engine: Engine, tmp_path: Path, nnp: bool
) -> None:
    body = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    res = engine.sh(
        "mkdir /made; echo mkdir=$?; touch /touched && echo touched; cat /proc/self/status",
        opts=seccomp_opt(tmp_path, body) + (NNP if nnp else []),
    )
    assert res.returncode == 0, res
    assert "mkdir=1" in res.stdout and "touched" in res.stdout, res
    assert "Operation not permitted" in res.stderr, res
    status = status_of(res.stdout)
    assert status["Seccomp"] == "2", status
    assert status["NoNewPrivs"] == ("1" if nnp else "0"), status


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL"])
def test_kill_action_ends_the_program_with_sigsys_exit_159(
    engine: Engine, tmp_path: Path, action: str
) -> None:
    body = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["uname"], "action": action}]}
    opts = seccomp_opt(tmp_path, body)
    res = engine.run("uname", opts=opts)
    assert res.returncode == 128 + 31, res  # SIGSYS
    assert res.stdout == "", res
    # A child killed that way leaves its shell running.
    res = engine.sh("echo before; uname; echo status=$?", opts=opts)
    assert res.returncode == 0, res
    assert res.stdout.split() == ["before", "status=159"], res


def test_argument_filter_denies_personality_only_for_the_given_value(
    engine: Engine, tmp_path: Path
) -> None:
    body = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 13,
                "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],  # PER_LINUX32
            }
        ],
    }
    res = engine.sh(
        "linux32 echo l32; echo rc=$?; linux64 echo l64; echo rc=$?",
        opts=seccomp_opt(tmp_path, body),
    )
    assert res.returncode == 0, res
    assert res.stdout.split() == ["rc=1", "l64", "rc=0"], res
    assert "Permission denied" in res.stderr, res  # errnoRet 13 = EACCES


def test_errno_default_with_a_small_allowlist_runs_echo_under_no_new_privileges(
    engine: Engine, tmp_path: Path
) -> None:
    """With no_new_privs the filter is installed right before execve: the
    profile allows what the program needs, not what the init does."""
    body = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": BUSYBOX_ECHO, "action": "SCMP_ACT_ALLOW"}],
    }
    assert assert_ok(engine.sh("echo ok", opts=seccomp_opt(tmp_path, body) + NNP)) == "ok\n"
    # Nothing else is allowed: forking or opening a file fails.
    res = engine.sh("cat /etc/passwd; echo rc=$?", opts=seccomp_opt(tmp_path, body) + NNP)
    assert res.returncode != 0 and "can't fork: Operation not permitted" in res.stderr, res
    res = engine.run("cat", "/etc/passwd", opts=seccomp_opt(tmp_path, body) + NNP)
    assert res.returncode == 1 and res.stdout == "", res
    assert "Operation not permitted" in res.stderr, res


def test_without_no_new_privileges_the_allowlist_must_cover_capset_and_the_exec_record(
    engine: Engine, tmp_path: Path
) -> None:
    """Without no_new_privs, installing needs CAP_SYS_ADMIN: the init holds it
    until the filter is in, right before execve, and then drops it (capset)
    and reports the exec (sendto) under the filter.  A profile without those
    fails the start; nothing else the init does (getcwd, the lookup) is
    filtered."""
    small = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": BUSYBOX_ECHO, "action": "SCMP_ACT_ALLOW"}],
    }
    res = engine.sh("echo ok", opts=seccomp_opt(tmp_path, small))
    assert_engine_error(res, 125, "init")
    assert engine.container_dirs() == []
    enough = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": BUSYBOX_ECHO + INIT_AFTER_INSTALL_WITH_CAP_HELD, "action": "SCMP_ACT_ALLOW"}
        ],
    }
    assert assert_ok(engine.sh("echo ok", opts=seccomp_opt(tmp_path, enough))) == "ok\n"


def test_exec_into_a_container_gets_its_filter(engine: Engine, tmp_path: Path) -> None:
    body = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    run = engine.cli_run(
        "run", "-d", *seccomp_opt(tmp_path, body), "--rootfs", str(engine.rootfs), "sleep", "60"
    )
    assert run.returncode == 0, run
    cid = run.stdout.strip()
    try:
        res = engine.cli_run(
            "exec", cid, "sh", "-c", "mkdir /x; echo rc=$?; grep Seccomp: /proc/self/status"
        )
        assert res.returncode == 0, res
        assert res.stdout.split() == ["rc=1", "Seccomp:", "2"], res
    finally:
        assert engine.cli_run("rm", "-f", cid).returncode == 0


# ------------------------------------------------------------- unconfined, nnp


def test_unconfined_and_no_security_opt_run_without_a_filter(engine: Engine) -> None:
    for opts in (["--security-opt", "seccomp=unconfined"], []):
        status = status_of(assert_ok(engine.run("cat", "/proc/self/status", opts=opts)))
        assert status["Seccomp"] == "0", opts
        assert status["NoNewPrivs"] == "0", opts


def test_privileged_ignores_the_profile_as_docker_does(engine: Engine, tmp_path: Path) -> None:
    body = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}],
    }
    out = assert_ok(
        engine.sh(
            "uname >/dev/null; grep Seccomp: /proc/self/status",
            opts=[*seccomp_opt(tmp_path, body), "--privileged"],
        )
    )
    assert out.split() == ["Seccomp:", "0"]


@pytest.mark.parametrize(
    "opt", ["no-new-privileges", "no-new-privileges=true", "no-new-privileges:true"]
)
def test_no_new_privileges_sets_the_flag_without_a_filter(engine: Engine, opt: str) -> None:
    status = status_of(
        assert_ok(engine.run("cat", "/proc/self/status", opts=["--security-opt", opt]))
    )
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "0")


# ----------------------------------------------------------------- bad input

BAD_PROFILES: list[tuple[str, Any, str]] = [
    (
        "unknown-action",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["a"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["b"], "action": "X"},
            ],
        },
        "syscalls[1].action: unknown action 'X'",
    ),
    (
        "unknown-default",
        {"defaultAction": "SCMP_ACT_NOPE"},
        "defaultAction: unknown action 'SCMP_ACT_NOPE'",
    ),
    ("missing-default", {"syscalls": []}, "defaultAction: unknown action None"),
    ("notify", {"defaultAction": "SCMP_ACT_NOTIFY"}, "SCMP_ACT_NOTIFY is not supported"),
    (
        "listener",
        {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"},
        "listenerPath",
    ),
    (
        "bad-op",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["a"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ISH"}],
                }
            ],
        },
        "syscalls[0].args[0].op: unknown operator",
    ),
    (
        "bad-index",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["a"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}],
                }
            ],
        },
        "syscalls[0].args[0].index: 6 is not an argument index",
    ),
    (
        "negative-value",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["a"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}],
                }
            ],
        },
        "syscalls[0].args[0].value: -1 is not an unsigned 64-bit integer",
    ),
    (
        "name-and-names",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}],
        },
        "use either 'name' or 'names'",
    ),
    (
        "no-names",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}],
        },
        "syscalls[0].names: must not be empty",
    ),
    (
        "arches-and-archmap",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "archMap": [{"architecture": "SCMP_ARCH_X86_64"}],
        },
        "either 'architectures' or 'archMap'",
    ),
    (
        "bad-flag",
        {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]},
        "flags[0]: unknown flag",
    ),
    (
        "errno-range",
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000},
        "defaultErrnoRet: 70000 is not an unsigned 16-bit",
    ),
    (
        "unknown-arch",
        {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]},
        "architectures[1]: unknown architecture 'SCMP_ARCH_Z80'",
    ),
    ("not-an-object", ["SCMP_ACT_ALLOW"], "not a JSON object"),
]


@pytest.mark.parametrize(
    ("body", "needle"), [p[1:] for p in BAD_PROFILES], ids=[p[0] for p in BAD_PROFILES]
)
def test_bad_profile_is_a_one_line_error_naming_the_field_and_leaves_nothing(
    engine: Engine, tmp_path: Path, body: Any, needle: str
) -> None:
    path = profile(tmp_path, body)
    res = engine.run("true", opts=["--security-opt", f"seccomp={path}"])
    assert_engine_error(
        res, 125, f"seccomp profile {path}: " if "object" not in needle else path, needle
    )
    assert engine.container_dirs() == []


def test_unreadable_or_invalid_profile_file_is_a_one_line_error(
    engine: Engine, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.json"
    res = engine.run("true", opts=["--security-opt", f"seccomp={missing}"])
    assert_engine_error(res, 125, f"opening seccomp profile ({missing}) failed", "No such file")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    res = engine.run("true", opts=["--security-opt", f"seccomp={garbage}"])
    assert_engine_error(res, 125, f"decoding seccomp profile ({garbage}) failed")
    assert engine.container_dirs() == []


@pytest.mark.parametrize(
    ("opt", "needle"),
    [
        ("bogus", "invalid --security-opt: 'bogus'"),
        ("bogus=1", "invalid --security-opt: 'bogus=1'"),
        ("no-new-privileges=maybe", '"maybe" is not a boolean'),
        ("apparmor=docker-default", "apparmor options are not supported"),
        ("label=type:svirt_t", "label options are not supported"),
    ],
)
def test_bad_security_opt_is_a_one_line_error(engine: Engine, opt: str, needle: str) -> None:
    res = engine.run("true", opts=["--security-opt", opt])
    assert_engine_error(res, 125, needle)
    assert engine.container_dirs() == []


def test_create_with_a_bad_profile_leaves_no_container(engine: Engine, tmp_path: Path) -> None:
    path = profile(tmp_path, {"defaultAction": "SCMP_ACT_BOGUS"})
    res = engine.cli_run(
        "create", "--security-opt", f"seccomp={path}", "--rootfs", str(engine.rootfs), "true"
    )
    assert_engine_error(res, 125, "defaultAction: unknown action")
    assert engine.container_dirs() == []


# ------------------------------------------------- profile translation (no container)

NATIVE = {"x86_64": ("SCMP_ARCH_X86_64", "amd64"), "aarch64": ("SCMP_ARCH_AARCH64", "arm64")}[
    os.uname().machine
]


def test_archmap_gives_the_native_entry_with_its_sub_architectures() -> None:
    body = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [
            {"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]},
            {"architecture": NATIVE[0], "subArchitectures": ["SCMP_ARCH_X86"]},
        ],
    }
    oci = profile_to_oci(body, capabilities=[])
    assert oci == {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": [NATIVE[0], "SCMP_ARCH_X86"],
        "syscalls": [],
    }


def test_includes_and_excludes_select_rules_by_capability_arch_and_kernel() -> None:
    rules = [
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["uname"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"name": "getpid", "action": "SCMP_ACT_ALLOW", "includes": {"arches": [NATIVE[1]]}},
        {"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": [NATIVE[1]]}},
        {"names": ["getuid"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
        {"names": ["getgid"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "3.10"}},
    ]
    body = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules}

    def names(caps: list[str]) -> list[str]:
        return [n for s in profile_to_oci(body, capabilities=caps)["syscalls"] for n in s["names"]]

    assert names(["CAP_CHOWN"]) == ["uname", "getpid", "getgid"]
    assert names(["CAP_CHOWN", "CAP_SYS_ADMIN"]) == ["mount", "getpid", "getgid"]


def test_args_and_errno_are_carried_in_oci_form() -> None:
    body = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "defaultErrnoRet": 38,
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 13,
                "comment": "ignored",
                "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}],
            }
        ],
    }
    assert profile_to_oci(body, capabilities=[]) == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "defaultErrnoRet": 38,
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 13,
                "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}],
            }
        ],
    }


def test_security_opts_parse_unconfined_and_trivial_values() -> None:
    opts = parse_security_opts(
        ["seccomp=unconfined", "apparmor=unconfined", "label=disable", "no-new-privileges=false"]
    )
    assert opts.seccomp is None and opts.no_new_privileges is False
    with pytest.raises(UserError, match="invalid --security-opt"):
        parse_security_opts(["seccomp"])


# ------------------------------------------------------- the core, spec level


def test_core_rejects_a_bad_linux_seccomp_naming_the_field_and_leaks_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    """The core's own check (the runtime's path, no Python validation): a
    structured error from the container init, step "seccomp"."""
    bundle = tmp_path / "bundle"
    code = f"""
from pyctr_fast import _native, etcfiles
from pyctr_fast.cli import options_from_run_args
from pyctr_fast.spec import build_spec
import json, os
bundle = {str(bundle)!r}
os.mkdir(bundle)
opts, _ = options_from_run_args(["--rootfs", ROOTFS, "true"])
spec = build_spec(opts, container_id="c" * 64, container_dir=bundle)
etcfiles.write_etc_files(bundle, spec["hostname"], "none")
spec["linux"]["seccomp"] = {{
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}},
                 {{"names": ["mkdir"], "action": "SCMP_ACT_BOGUS"}}],
}}
try:
    _native.run(json.dumps(spec), bundle, stdin=False)
except _native.ContainerError as err:
    print(err.step, "|", err)
"""
    out = assert_ok(engine.api(code))
    assert out.startswith("seccomp | "), out
    assert 'linux.seccomp.syscalls[1].action: unknown action "SCMP_ACT_BOGUS"' in out, out
