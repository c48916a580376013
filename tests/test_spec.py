"""Spec building: Docker's defaults and every run option, without running anything."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from types import SimpleNamespace
from typing import Any

import pytest
from pyctr_fast import caps, compact_json, container, environment, etcfiles, mounts, rootfs_files
from pyctr_fast.errors import UserError
from pyctr_fast.spec import RunOptions, build_spec, new_container_id, validate_hostname
from pyctr_fast.users import resolve_user

CID = "0123456789ab" + "c" * 52
STATE = "/state/containers/" + CID

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
alice:x:1000:1000:Alice:/home/alice:/bin/sh
+nisuser::::::
bob:x:1001:1001::/home/bob:/bin/sh
"""

GROUP = """\
root:x:0:root
bin:x:1:root,daemon
wheel:x:10:root,alice
alice:x:1000:
audio:x:29:bob,alice
staff:x:50:
"""

DOCKER_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]


def _native_available() -> bool:
    try:
        from pyctr_fast import _native  # noqa: F401
    except ImportError:
        return False
    return True


NATIVE = _native_available()


@pytest.fixture(autouse=True)
def _rootfs_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until the extension is built, read rootfs files plainly (tests only)."""
    if NATIVE:
        return

    def plain(root: str, path: str, limit: int = 1 << 20) -> bytes | None:
        try:
            with open(os.path.join(root, path.lstrip("/")), "rb") as f:
                return f.read(limit)
        except FileNotFoundError:
            return None

    monkeypatch.setattr(rootfs_files, "read_file_in_root", plain)


@pytest.fixture
def rootfs(tmp_path: Any) -> str:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return str(root)


def build(
    rootfs: str,
    *command: str,
    environ: dict[str, str] | None = None,
    netns: str | None = None,
    **kw: Any,
) -> Any:
    opts = RunOptions(rootfs, command or ("true",), **kw)
    return build_spec(
        opts, container_id=CID, container_dir=STATE, environ=environ or {}, netns=netns
    )


def mount_at(spec: Any, dest: str) -> Any:
    found = [m for m in spec["mounts"] if m["destination"] == dest]
    assert len(found) == 1, found
    return found[0]


def fails(message: str) -> Any:
    return pytest.raises(UserError, match="^" + re.escape(message))


# --- defaults -----------------------------------------------------------------


def test_default_spec_is_oci_1_0_2_with_command_root_and_cwd(rootfs: str) -> None:
    spec = build(rootfs, "sh", "-c", "echo hi")
    assert spec["ociVersion"] == "1.0.2"
    assert spec["process"]["args"] == ["sh", "-c", "echo hi"]
    assert spec["process"]["cwd"] == "/"
    assert spec["process"]["terminal"] is False
    assert spec["root"] == {"path": os.path.realpath(rootfs), "readonly": False}


def test_default_capabilities_are_dockers_14_with_empty_inheritable_and_ambient(
    rootfs: str,
) -> None:
    c = build(rootfs)["process"]["capabilities"]
    assert c["bounding"] == DOCKER_CAPS
    assert c["effective"] == DOCKER_CAPS
    assert c["permitted"] == DOCKER_CAPS
    assert c["inheritable"] == []
    assert c["ambient"] == []


def test_no_new_privileges_is_false_and_no_rlimits_by_default(rootfs: str) -> None:
    process = build(rootfs)["process"]
    assert process["noNewPrivileges"] is False
    assert "rlimits" not in process


def test_default_mounts_are_dockers_in_order_then_etc_files(rootfs: str) -> None:
    spec = build(rootfs)
    got = [(m["destination"], m["type"], m["source"], m["options"]) for m in spec["mounts"]]
    assert got[:7] == [
        ("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        ("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        ("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        ("/sys/fs/cgroup", "cgroup", "cgroup", ["ro", "nosuid", "noexec", "nodev"]),
        ("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        ("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
    ]
    assert got[7:] == [
        ("/etc/resolv.conf", "bind", STATE + "/resolv.conf", ["rbind", "rprivate", "rw"]),
        ("/etc/hostname", "bind", STATE + "/hostname", ["rbind", "rprivate", "rw"]),
        ("/etc/hosts", "bind", STATE + "/hosts", ["rbind", "rprivate", "rw"]),
    ]


def test_masked_and_readonly_paths_are_dockers(rootfs: str) -> None:
    linux = build(rootfs)["linux"]
    assert linux["maskedPaths"][:12] == [
        "/proc/asound",
        "/proc/acpi",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ]
    assert all(p.endswith("/thermal_throttle") for p in linux["maskedPaths"][12:])
    assert linux["readonlyPaths"] == [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]


def test_masked_paths_add_each_host_cpu_thermal_throttle_dir(tmp_path: Any) -> None:
    for name in ("cpu10", "cpu2", "cpufreq", "cpu3"):
        (tmp_path / name).mkdir()
    (tmp_path / "cpu10" / "thermal_throttle").mkdir()
    (tmp_path / "cpu2" / "thermal_throttle").mkdir()
    extra = mounts.masked_paths(str(tmp_path))[len(mounts.MASKED_PATHS) :]
    assert extra == [
        "/sys/devices/system/cpu/cpu2/thermal_throttle",
        "/sys/devices/system/cpu/cpu10/thermal_throttle",
    ]


def test_namespaces_are_pid_ipc_uts_mount_cgroup_network(rootfs: str) -> None:
    spec = build(rootfs)
    assert [n["type"] for n in spec["linux"]["namespaces"]] == [
        "pid",
        "ipc",
        "uts",
        "mount",
        "cgroup",
        "network",
    ]


def test_host_network_omits_network_namespace_and_uses_host_hostname(rootfs: str) -> None:
    spec = build(rootfs, network="host")
    assert "network" not in [n["type"] for n in spec["linux"]["namespaces"]]
    assert spec["hostname"] == os.uname().nodename
    assert "sysctl" not in spec["linux"]


def test_own_network_namespace_gets_dockers_unprivileged_port_and_ping_sysctls(
    rootfs: str,
) -> None:
    sysctl = build(rootfs)["linux"].get("sysctl", {})
    for key, value in (
        ("net.ipv4.ip_unprivileged_port_start", "0"),
        ("net.ipv4.ping_group_range", "0 2147483647"),
    ):
        if os.path.exists("/proc/sys/" + key.replace(".", "/")):
            assert sysctl[key] == value


def test_malformed_network_mode_is_an_error(rootfs: str) -> None:
    # A well-formed name may be a user-defined network (looked up at create,
    # tests/test_networks.py); one that cannot be is refused here.
    with fails('network "my/net" not found: use --network none, host, bridge, container:NAME'):
        build(rootfs, network="my/net")
    with fails('invalid network mode "container:": container name is empty'):
        build(rootfs, network="container:")


def test_a_bridge_or_joined_network_namespace_is_given_by_path(rootfs: str) -> None:
    spec = build(rootfs, network="bridge", netns="/run/pyctr-fast/netns/" + CID)
    (net,) = [ns for ns in spec["linux"]["namespaces"] if ns["type"] == "network"]
    assert net == {"type": "network", "path": "/run/pyctr-fast/netns/" + CID}
    assert "net.ipv4.ip_unprivileged_port_start" in spec["linux"].get("sysctl", {}) or not (
        os.path.exists("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    )


# --- hostname, name, id -----------------------------------------------------------


def test_container_id_is_64_hex_chars_and_random() -> None:
    a, b = new_container_id(), new_container_id()
    assert len(a) == 64 and int(a, 16) >= 0 and a != b


def test_default_hostname_is_first_12_chars_of_container_id(rootfs: str) -> None:
    spec = build(rootfs)
    assert spec["hostname"] == "0123456789ab"
    assert "HOSTNAME=0123456789ab" in spec["process"]["env"]


def test_hostname_flag_sets_uts_hostname_and_env(rootfs: str) -> None:
    spec = build(rootfs, hostname="web-1.example")
    assert spec["hostname"] == "web-1.example"
    assert "HOSTNAME=web-1.example" in spec["process"]["env"]


@pytest.mark.parametrize("good", ["a", "web-1", "A1.b2.c3", "x" * 63, "a-b.c-d"])
def test_valid_rfc1123_hostnames_are_accepted(good: str) -> None:
    assert validate_hostname(good) == good


@pytest.mark.parametrize(
    "bad", ["", "-a", "a-", "a..b", "a.", "a_b", "a b", "x" * 64, "a." + "b" * 62, "é"]
)
def test_invalid_hostnames_are_rejected_with_dockers_message(bad: str) -> None:
    with fails(f"invalid hostname format: {bad}"):
        validate_hostname(bad)


def test_name_goes_into_annotations(rootfs: str) -> None:
    assert build(rootfs, name="web_1.a-b")["annotations"] == {"io.pyctr-fast.name": "web_1.a-b"}
    assert "annotations" not in build(rootfs)


@pytest.mark.parametrize("bad", ["a", "-ab", "a b", "a/b", "_ab"])
def test_invalid_container_names_are_rejected(rootfs: str, bad: str) -> None:
    with fails(f"invalid container name ({bad})"):
        build(rootfs, name=bad)


# --- rootfs, command, workdir ---------------------------------------------------------


def test_rootfs_is_resolved_to_absolute_real_path(rootfs: str, tmp_path: Any) -> None:
    link = tmp_path / "link"
    link.symlink_to(rootfs)
    assert build(str(link))["root"]["path"] == os.path.realpath(rootfs)


def test_rootfs_must_exist_and_be_a_directory(tmp_path: Any) -> None:
    with fails("rootfs "):
        build(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("")
    with fails(f"rootfs {tmp_path / 'file'} is not a directory"):
        build(str(tmp_path / "file"))


def test_empty_command_is_an_error(rootfs: str) -> None:
    with fails("no command specified"):
        build_spec(RunOptions(rootfs, []), container_id=CID, container_dir=STATE, environ={})


def test_command_given_as_a_single_string_is_rejected(rootfs: str) -> None:
    with fails("command must be a sequence of strings"):
        RunOptions(rootfs, "echo hi")


def test_workdir_must_be_absolute_and_is_cleaned(rootfs: str) -> None:
    assert build(rootfs, workdir="/srv//app/../data/")["process"]["cwd"] == "/srv/data"
    with fails("the working directory 'rel' is invalid, it needs to be an absolute path"):
        build(rootfs, workdir="rel")


# --- environment ----------------------------------------------------------------------


def test_default_env_is_path_hostname_then_home_of_user(rootfs: str) -> None:
    assert build(rootfs)["process"]["env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOSTNAME=0123456789ab",
        "HOME=/root",
    ]


def test_tty_sets_terminal_and_term_xterm(rootfs: str) -> None:
    spec = build(rootfs, tty=True)
    assert spec["process"]["terminal"] is True
    assert spec["process"]["env"][2] == "TERM=xterm"


def test_env_values_replace_defaults_in_place_and_append_others_in_order(rootfs: str) -> None:
    env = build(rootfs, env=["B=2", "PATH=/bin", "A=1", "B=3", "HOME=/h"])["process"]["env"]
    assert env == ["PATH=/bin", "HOSTNAME=0123456789ab", "B=3", "A=1", "HOME=/h"]


def test_bare_env_key_takes_callers_value_or_unsets_it(rootfs: str) -> None:
    env = build(rootfs, env=["FOO", "HOSTNAME", "EMPTY"], environ={"FOO": "bar", "EMPTY": ""})
    assert env["process"]["env"][1:] == ["FOO=bar", "EMPTY=", "HOME=/root"]


def test_env_with_empty_name_is_an_error(rootfs: str) -> None:
    with fails("invalid environment variable: =x"):
        build(rootfs, env=["=x"])


def test_env_file_follows_dockers_format(tmp_path: Any) -> None:
    text = (
        "\ufeffFIRST=1\r\n"
        "\n"
        "   # comment\n"
        "  INDENTED=  keeps trailing spaces  \n"
        "EQ=a=b\n"
        "FROM_CALLER\n"
        "NOT_SET\n"
        "EMPTY=\n"
    )
    assert environment.parse_env_file(text, {"FROM_CALLER": "yes"}) == [
        "FIRST=1",
        "INDENTED=  keeps trailing spaces  ",
        "EQ=a=b",
        "FROM_CALLER=yes",
        "EMPTY=",
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("BAD KEY=1", "poorly formatted environment: variable 'BAD KEY' contains whitespaces"),
        ("=1", "poorly formatted environment: no variable name on line '=1'"),
    ],
)
def test_env_file_rejects_bad_variable_names(line: str, message: str) -> None:
    with fails(message):
        environment.parse_env_file(line + "\n", {})


def test_env_file_rejects_invalid_utf8(tmp_path: Any) -> None:
    path = tmp_path / "env"
    path.write_bytes(b"A=1\nB=\xff\n")
    with fails(f"env file {path} contains invalid utf8 bytes at line 2"):
        environment.read_env_file(str(path), {})


def test_env_files_apply_before_env_flags(rootfs: str, tmp_path: Any) -> None:
    f1, f2 = tmp_path / "one.env", tmp_path / "two.env"
    f1.write_text("A=file1\nB=file1\n")
    f2.write_text("B=file2\nC=file2\n")
    env = build(rootfs, env=["A=flag"], env_files=[str(f1), str(f2)])["process"]["env"]
    assert env[2:] == ["A=flag", "B=file2", "C=file2", "HOME=/root"]


def test_missing_env_file_is_an_error(rootfs: str, tmp_path: Any) -> None:
    with fails(f"open {tmp_path / 'nope'}: No such file or directory"):
        build(rootfs, env_files=[str(tmp_path / "nope")])


# --- user -----------------------------------------------------------------------------


def test_default_user_is_root_with_roots_supplementary_groups(rootfs: str) -> None:
    assert build(rootfs)["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [0, 1, 10]}


def test_user_name_resolves_uid_gid_home_and_supplementary_groups(rootfs: str) -> None:
    spec = build(rootfs, user="alice")
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 29]}
    assert spec["process"]["env"][-1] == "HOME=/home/alice"


def test_numeric_uid_in_passwd_uses_its_entry(rootfs: str) -> None:
    assert build(rootfs, user="1001")["process"]["user"] == {
        "uid": 1001,
        "gid": 1001,
        "additionalGids": [29],
    }


def test_numeric_uid_not_in_passwd_runs_with_gid_0_and_home_slash(rootfs: str) -> None:
    spec = build(rootfs, user="4242")
    assert spec["process"]["user"] == {"uid": 4242, "gid": 0, "additionalGids": []}
    assert spec["process"]["env"][-1] == "HOME=/"


def test_explicit_group_replaces_gid_and_drops_supplementary_groups(rootfs: str) -> None:
    assert build(rootfs, user="alice:staff")["process"]["user"] == {
        "uid": 1000,
        "gid": 50,
        "additionalGids": [],
    }
    assert build(rootfs, user="4242:777")["process"]["user"]["gid"] == 777


def test_unknown_user_name_is_dockers_error(rootfs: str) -> None:
    with fails("unable to find user nobody: no matching entries in passwd file"):
        build(rootfs, user="nobody")


def test_unknown_group_name_is_dockers_error(rootfs: str) -> None:
    with fails("unable to find group nogroup: no matching entries in group file"):
        build(rootfs, user="alice:nogroup")


def test_uid_out_of_range_is_an_error() -> None:
    with fails("uids and gids must be in range 0-2147483647"):
        resolve_user("2147483648", "", "")


def test_user_name_without_passwd_file_is_an_error_but_uid_works(tmp_path: Any) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with fails("unable to find user alice"):
        build(str(empty), user="alice")
    assert build(str(empty), user="7")["process"]["user"] == {
        "uid": 7,
        "gid": 0,
        "additionalGids": [],
    }
    assert build(str(empty))["process"]["env"][-1] == "HOME=/"


@pytest.mark.skipif(not NATIVE, reason="needs the native resolver")
def test_passwd_symlink_cannot_lead_out_of_the_rootfs(tmp_path: Any) -> None:
    (tmp_path / "outside").write_text("evil:x:0:0::/:/bin/sh\n")
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to("../../outside")
    with fails("unable to find user evil"):
        build(str(root), user="evil")
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to(str(tmp_path / "outside"))
    with fails("unable to find user evil"):
        build(str(root), user="evil")


# --- volumes and tmpfs ----------------------------------------------------------------


def test_volume_is_an_rbind_mount_rw_by_default_or_ro(rootfs: str, tmp_path: Any) -> None:
    src = tmp_path / "data"
    src.mkdir()
    spec = build(rootfs, volumes=[f"{src}:/data", f"{src}/:/ro//:ro"])
    assert mount_at(spec, "/data") == {
        "destination": "/data",
        "type": "bind",
        "source": str(src),
        "options": ["rbind", "rw", "rprivate"],
    }
    assert mount_at(spec, "/ro")["options"] == ["rbind", "ro", "rprivate"]


def test_volume_mounts_come_after_defaults_parents_first(rootfs: str, tmp_path: Any) -> None:
    spec = build(rootfs, volumes=[f"{tmp_path}:/a/b/c", f"{tmp_path}:/a"])
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.index("/a") < dests.index("/a/b/c")
    assert dests.index("/dev/shm") < dests.index("/a")


@pytest.mark.parametrize(
    ("volume", "detail"),
    [
        ("/x", ": anonymous volumes are not supported yet, use SRC:DST"),
        ("a:b:c:d", ""),
        (":/x", ""),
        ("{src}:", ""),
        ("rel:/x", ": invalid mount config for type \"bind\": source 'rel' must be an absolute"),
        ("{src}:rel", ": invalid mount config for type \"bind\": invalid mount path: 'rel' mount"),
        ("{src}:/", ': invalid mount config for type "bind": invalid specification: destination'),
        ("{src}:/x:rx", ": invalid mode: rx"),
        ("{src}:/x:ro,rw", ": invalid mode: ro,rw"),
        (
            "{src}/missing:/x",
            ': invalid mount config for type "bind": '
            "bind source path does not exist: {src}/missing",
        ),
    ],
)
def test_malformed_volumes_are_clear_errors_naming_the_spec(
    rootfs: str, tmp_path: Any, volume: str, detail: str
) -> None:
    volume = volume.format(src=tmp_path)
    with fails(f"invalid volume specification: '{volume}'" + detail.format(src=tmp_path)):
        build(rootfs, volumes=[volume])


def test_duplicate_mount_points_are_an_error(rootfs: str, tmp_path: Any) -> None:
    with fails("duplicate mount point: /x"):
        build(rootfs, volumes=[f"{tmp_path}:/x", f"{tmp_path}:/x/"])


def test_user_mount_replaces_default_and_etc_file_mounts(rootfs: str, tmp_path: Any) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    spec = build(rootfs, volumes=[f"{hosts}:/etc/hosts:ro"], tmpfs=["/dev/shm:size=1m"])
    assert mount_at(spec, "/etc/hosts")["source"] == str(hosts)
    assert mount_at(spec, "/dev/shm")["type"] == "tmpfs"
    assert mount_at(spec, "/dev/shm")["options"][-1] == "size=1m"


def test_user_mount_on_dev_replaces_every_default_under_dev(rootfs: str) -> None:
    dests = [m["destination"] for m in build(rootfs, tmpfs=["/dev"])["mounts"]]
    assert [d for d in dests if d.startswith("/dev")] == ["/dev"]


def test_tmpfs_gets_dockers_default_options_overridable_by_later_ones(rootfs: str) -> None:
    spec = build(rootfs, tmpfs=["/run", "/tmp:exec,size=64m,mode=1777"])
    assert mount_at(spec, "/run") == {
        "destination": "/run",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["noexec", "nosuid", "nodev", "rprivate"],
    }
    assert mount_at(spec, "/tmp")["options"] == [
        "nosuid",
        "nodev",
        "rprivate",
        "exec",
        "size=64m",
        "mode=1777",
    ]


@pytest.mark.parametrize(
    ("tmpfs", "message"),
    [
        ("run", "invalid mount path: 'run' mount path must be absolute"),
        ("/", "invalid specification: destination can't be '/'"),
        ("/run:bogus", 'invalid tmpfs option "bogus"'),
        ("/run:color=red", 'invalid tmpfs option "color=red"'),
    ],
)
def test_bad_tmpfs_specs_are_clear_errors(rootfs: str, tmpfs: str, message: str) -> None:
    with fails(message):
        build(rootfs, tmpfs=[tmpfs])


# --- read-only, privileged, capabilities ----------------------------------------------


def test_read_only_sets_root_readonly_and_ro_on_default_mounts_except_proc_and_dev(
    rootfs: str, tmp_path: Any
) -> None:
    spec = build(rootfs, read_only=True, volumes=[f"{tmp_path}:/data"], tmpfs=["/tmp"])
    assert spec["root"]["readonly"] is True
    for m in spec["mounts"]:
        if m["destination"] in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"):
            assert "ro" not in m["options"], m
        elif m["destination"] in ("/data", "/tmp"):
            assert "ro" not in m["options"], m
        else:
            assert "ro" in m["options"], m
    assert mount_at(spec, "/etc/hosts")["options"] == ["rbind", "rprivate", "ro"]


def test_privileged_gets_all_caller_caps_no_masking_and_rw_sys(rootfs: str) -> None:
    spec = build(rootfs, privileged=True, cap_drop=["CHOWN"])
    held = caps.bounding_capabilities()
    c = spec["process"]["capabilities"]
    assert c["bounding"] == c["effective"] == c["permitted"] == held
    assert c["inheritable"] == c["ambient"] == []
    assert "maskedPaths" not in spec["linux"] and "readonlyPaths" not in spec["linux"]
    assert "ro" not in mount_at(spec, "/sys")["options"]
    assert "ro" not in mount_at(spec, "/sys/fs/cgroup")["options"]


def test_privileged_read_only_keeps_sys_read_only(rootfs: str) -> None:
    spec = build(rootfs, privileged=True, read_only=True)
    assert "ro" in mount_at(spec, "/sys")["options"]
    assert "ro" not in mount_at(spec, "/sys/fs/cgroup")["options"]


def test_cap_names_are_case_insensitive_with_or_without_prefix() -> None:
    for name in ("sys_admin", "CAP_SYS_ADMIN", "cap_sys_admin", "Sys_Admin"):
        assert caps.normalize_capability(name) == "CAP_SYS_ADMIN"
    assert caps.normalize_capability("all") == "ALL"


def test_cap_add_appends_after_defaults_and_cap_drop_removes(rootfs: str) -> None:
    c = build(rootfs, cap_add=["sys_admin", "CHOWN"], cap_drop=["net_raw", "cap_kill"])
    bounding = c["process"]["capabilities"]["bounding"]
    expected = [x for x in DOCKER_CAPS if x not in ("CAP_NET_RAW", "CAP_KILL")]
    assert bounding == [*expected, "CAP_SYS_ADMIN"]


def test_cap_drop_all_then_add_keeps_only_the_added(rootfs: str) -> None:
    c = build(rootfs, cap_drop=["ALL"], cap_add=["net_bind_service"])
    assert c["process"]["capabilities"]["bounding"] == ["CAP_NET_BIND_SERVICE"]
    assert build(rootfs, cap_drop=["all"])["process"]["capabilities"]["bounding"] == []


def test_cap_add_all_gives_every_available_cap_minus_drops() -> None:
    available = ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_KILL"]
    got = caps.resolve_capabilities(["ALL"], ["kill"], available=available)
    assert got == ["CAP_CHOWN", "CAP_SYS_ADMIN"]


@pytest.mark.parametrize("field", ["cap_add", "cap_drop"])
def test_unknown_capability_is_an_error(rootfs: str, field: str) -> None:
    for name in ("CAP_FOO", "bogus"):
        kw: dict[str, Any] = {field: [name]}
        with fails(f"unknown capability: {name}"):
            build(rootfs, **kw)


def test_capabilities_from_mask_maps_bits_and_skips_unknown_ones() -> None:
    mask = (1 << 0) | (1 << 21) | (1 << 40) | (1 << 62)
    assert caps.capabilities_from_mask(mask) == [
        "CAP_CHOWN",
        "CAP_SYS_ADMIN",
        "CAP_CHECKPOINT_RESTORE",
    ]


def test_bounding_set_is_read_from_capbnd_line() -> None:
    status = "Name:\tx\nCapInh:\t0000000000000000\nCapBnd:\t00000000a80425fb\n"
    assert caps.bounding_capabilities(status) == DOCKER_CAPS_SORTED_BY_BIT


DOCKER_CAPS_SORTED_BY_BIT = [c for c in caps.CAPABILITIES if c in DOCKER_CAPS]


# --- /etc files -------------------------------------------------------------------------


def test_hosts_for_no_network_has_loopback_and_hostname() -> None:
    text = etcfiles.hosts_content("box", "none")
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[1] == "::1\tlocalhost ip6-localhost ip6-loopback"
    assert lines[-1] == "127.0.1.1\tbox"
    assert etcfiles.hosts_content("a.b.c", "none").endswith("127.0.1.1\ta.b.c a\n")


def test_hosts_for_host_network_is_the_hosts_file() -> None:
    assert etcfiles.hosts_content("box", "host", "1.2.3.4 h\n") == "1.2.3.4 h\n"


def test_resolv_conf_keeps_usable_nameservers_search_and_options() -> None:
    host = (
        "# generated\nnameserver 127.0.0.1\nnameserver 10.0.0.2\nnameserver fe80::1\n"
        "search corp.example\noptions ndots:2\n"
    )
    assert etcfiles.resolv_conf_content("none", host) == (
        "nameserver 10.0.0.2\nsearch corp.example\noptions ndots:2\n"
    )
    assert etcfiles.resolv_conf_content("host", host) == host


def test_resolv_conf_is_empty_without_usable_nameserver() -> None:
    assert etcfiles.resolv_conf_content("none", "nameserver 127.0.0.1\nsearch x\n") == ""
    assert etcfiles.resolv_conf_content("none", None) == ""


def test_resolv_conf_uses_systemd_upstream_file_behind_the_stub() -> None:
    stub = "nameserver 127.0.0.53\noptions edns0\n"
    upstream = "nameserver 192.0.2.1\n"
    assert etcfiles.resolv_conf_content("none", stub, upstream) == "nameserver 192.0.2.1\n"


def test_write_etc_files_writes_three_world_readable_files(tmp_path: Any) -> None:
    etcfiles.write_etc_files(str(tmp_path), "box", "none")
    assert sorted(os.listdir(tmp_path)) == ["hostname", "hosts", "resolv.conf"]
    assert (tmp_path / "hostname").read_text() == "box\n"
    assert "127.0.1.1\tbox" in (tmp_path / "hosts").read_text()
    for name in ("hostname", "hosts", "resolv.conf"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644


# --- run path helpers -------------------------------------------------------------------


def test_spec_json_is_compact_and_equal_to_json_dumps(rootfs: str, tmp_path: Any) -> None:
    spec = build(rootfs, env=['Q="quoted"\\ é ☃ \x01\n'], name="n1", volumes=[f"{tmp_path}:/x"])
    text = compact_json.dumps(spec)
    assert text == json.dumps(spec, separators=(",", ":"))
    assert json.loads(text) == spec


def test_compact_json_matches_json_dumps_for_all_native_types() -> None:
    value = {"a": [1, -2, 3.5, True, False, None, "x"], "b": {}, "c": [], "d": (1, 2)}
    assert compact_json.dumps(value) == json.dumps(value, separators=(",", ":"))
    with pytest.raises(TypeError):
        compact_json.dumps({"a": object()})


@pytest.mark.parametrize(
    ("step", "err", "code"),
    [
        ("execve", errno.ENOENT, 127),
        ("execve", errno.EACCES, 126),
        ("execve", errno.EPERM, 126),
        ("execve", errno.ENOEXEC, 126),
        ("execve", errno.EIO, 125),
        ("pivot_root", errno.ENOENT, 125),
        ("spec", 0, 125),
    ],
)
def test_start_failures_map_to_dockers_exit_codes(step: str, err: int, code: int) -> None:
    fake = SimpleNamespace(step=step, errno=err, path=None)
    assert container.exit_code_for(fake) == code  # type: ignore[arg-type]


def test_state_root_comes_from_argument_then_env_then_default() -> None:
    assert container.resolve_root("/a", {"PYCTR_ROOT": "/b"}) == "/a"
    assert container.resolve_root(None, {"PYCTR_ROOT": "/b"}) == "/b"
    assert container.resolve_root(None, {}) == "/var/lib/pyctr-fast"
    assert container.resolve_root("rel", {}) == os.path.abspath("rel")


def test_container_dir_is_under_root_containers(tmp_path: Any) -> None:
    assert container.container_dir("/r", CID) == f"/r/containers/{CID}"


def test_building_the_spec_writes_nothing(rootfs: str, tmp_path: Any) -> None:
    state = tmp_path / "state"
    opts = RunOptions(rootfs, ["true"])
    build_spec(opts, container_id=CID, container_dir=str(state / CID), environ={})
    assert not state.exists()


class _FakeNative:
    """Stands in for the extension to check what the run path hands it."""

    class ContainerError(Exception):
        step = "execve"
        errno = errno.ENOENT
        path = None

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[Any, ...]] = []

    def run(
        self,
        config: str,
        bundle: str,
        *,
        stdin: bool,
        forward_signals: bool,
        on_start: Any = None,
    ) -> int:
        self.calls.append((json.loads(config), bundle, stdin, forward_signals, os.listdir(bundle)))
        if self.fail:
            raise self.ContainerError("execve /nope: No such file or directory")
        on_start(os.getpid())  # the run path registers the "container" as running
        with open(os.path.join(bundle, "state.json")) as f:
            state = json.load(f)
        self.calls.append(state)
        return 3


@pytest.fixture
def fake_native(monkeypatch: pytest.MonkeyPatch) -> _FakeNative:
    import sys

    import pyctr_fast

    fake = _FakeNative()
    if NATIVE:
        from pyctr_fast import _native

        fake.read_file_in_root = _native.read_file_in_root  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyctr_fast._native", fake)
    monkeypatch.setattr(pyctr_fast, "_native", fake, raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return fake


def test_run_writes_bundle_runs_and_leaves_nothing_under_root(
    rootfs: str, tmp_path: Any, fake_native: _FakeNative
) -> None:
    state = tmp_path / "state"
    # A fake native side: no network namespace to plug into a bridge.
    opts = RunOptions(rootfs, ["true"], interactive=True, network="none")
    assert container.run_container(opts, root=str(state), environ={}) == 3
    (spec, bundle, stdin, forward, files) = fake_native.calls[0]
    assert os.path.dirname(bundle) == str(state / "containers")
    assert len(os.path.basename(bundle)) == 64
    assert spec["hostname"] == os.path.basename(bundle)[:12]
    # Registered while it runs (state.json comes with the pid, from on_start).
    assert sorted(files) == [
        "config.json", "container.json", "hostname", "hosts", "resolv.conf", "supervisor.lock",
    ]  # fmt: skip
    assert (stdin, forward) == (True, False)
    registered = fake_native.calls[1]
    assert (registered["Status"], registered["Pid"]) == ("running", os.getpid())
    # The container and its name are gone; only the empty names dir stays.
    assert [p.name for p in state.iterdir()] == ["names"]
    assert list((state / "names").iterdir()) == []


def test_run_removes_the_bundle_when_the_container_fails_to_start(
    rootfs: str, tmp_path: Any, fake_native: _FakeNative, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_native.fail = True
    state = tmp_path / "state"
    (state / "containers" / "other").mkdir(parents=True)
    opts = RunOptions(rootfs, ["/nope"], remove=True, network="none")
    status = container.run_from_cli(opts, str(state))
    assert status == 127
    assert capsys.readouterr().err == "pyctr-fast: execve /nope: No such file or directory\n"
    assert fake_native.calls[0][3] is True  # the CLI forwards signals
    assert [p.name for p in (state / "containers").iterdir()] == ["other"]


def test_invalid_options_fail_before_anything_is_created(
    rootfs: str, tmp_path: Any, fake_native: _FakeNative
) -> None:
    state = tmp_path / "state"
    with fails("invalid hostname format: -x"):
        container.run_container(RunOptions(rootfs, ["true"], hostname="-x"), root=str(state))
    assert not state.exists() and fake_native.calls == []
