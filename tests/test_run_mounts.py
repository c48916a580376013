"""The container's mount table: Docker's default mounts, devices, masked and
read-only paths, bind mounts, --tmpfs, --read-only and the engine's /etc files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from ctrkit import (
    IMAGE_HOSTS,
    IMAGE_RESOLV,
    MASKED_PATHS,
    READONLY_PATHS,
    Engine,
    Mount,
    assert_ok,
    parse_mountinfo,
    present_on_host,
    top_mount,
)

pytestmark = pytest.mark.timeout(60)


def container_mounts(engine: Engine, opts: list[str] | tuple[str, ...] = ()) -> list[Mount]:
    return parse_mountinfo(assert_ok(engine.run("cat", "/proc/self/mountinfo", opts=opts)))


def must_mount(mounts: list[Mount], mountpoint: str) -> Mount:
    m = top_mount(mounts, mountpoint)
    assert m is not None, f"nothing mounted at {mountpoint}:\n" + "\n".join(x.line for x in mounts)
    return m


# ----------------------------------------------------------------- default mounts

DEFAULT_MOUNTS = [
    pytest.param("/proc", {"proc"}, {"nosuid", "nodev", "noexec"}, id="proc"),
    pytest.param("/dev", {"tmpfs"}, {"nosuid"}, id="dev"),
    pytest.param("/dev/pts", {"devpts"}, {"nosuid", "noexec"}, id="dev-pts"),
    pytest.param("/dev/shm", {"tmpfs"}, {"nosuid", "nodev", "noexec"}, id="dev-shm"),
    pytest.param("/dev/mqueue", {"mqueue"}, {"nosuid", "nodev", "noexec"}, id="dev-mqueue"),
    pytest.param("/sys", {"sysfs"}, {"ro", "nosuid", "nodev", "noexec"}, id="sys"),
    pytest.param("/sys/fs/cgroup", {"tmpfs", "cgroup", "cgroup2"}, {"ro"}, id="sys-fs-cgroup"),
]


@pytest.mark.parametrize(("mountpoint", "fstypes", "options"), DEFAULT_MOUNTS)
def test_default_mount_has_docker_type_and_flags(
    engine: Engine, mountpoint: str, fstypes: set[str], options: set[str]
) -> None:
    m = must_mount(container_mounts(engine), mountpoint)
    assert m.fstype in fstypes, m.line
    assert options <= m.options, m.line


def test_everything_under_sys_fs_cgroup_is_read_only(engine: Engine) -> None:
    mounts = container_mounts(engine)
    under = [m for m in mounts if m.mountpoint.startswith("/sys/fs/cgroup")]
    assert under, "no /sys/fs/cgroup mount"
    assert all(m.read_only for m in under), "\n".join(m.line for m in under if not m.read_only)


def test_sys_is_not_writable_even_with_all_caps(engine: Engine) -> None:
    res = engine.sh("mkdir /sys/fs/cgroup/pyctr-test-escape", opts=["--cap-add", "SYS_ADMIN"])
    assert res.returncode != 0, res
    assert "Read-only file system" in res.stderr, res


def test_devpts_is_a_new_instance_with_docker_options(engine: Engine) -> None:
    m = must_mount(container_mounts(engine), "/dev/pts")
    assert {"ptmxmode=666", "mode=620", "gid=5"} <= m.super_options, m.line
    inside_dev = assert_ok(engine.run("stat", "-c", "%d", "/dev/pts")).strip()
    assert int(inside_dev) != os.stat("/dev/pts").st_dev


def test_devpts_shows_no_host_terminals(engine: Engine) -> None:
    assert assert_ok(engine.run("ls", "/dev/pts")).split() == ["ptmx"]


def test_dev_ptmx_points_to_the_containers_devpts(engine: Engine) -> None:
    assert assert_ok(engine.run("readlink", "/dev/ptmx")).strip() == "pts/ptmx"


def test_no_mount_propagates_back_to_the_host(engine: Engine) -> None:
    mounts = container_mounts(engine)
    shared = [m.line for m in mounts if any(o.startswith("shared:") for o in m.optional)]
    assert shared == []


def test_root_mount_is_the_rootfs(engine: Engine) -> None:
    m = must_mount(container_mounts(engine), "/")
    assert m.root == str(engine.rootfs) or str(engine.rootfs) in m.line, m.line
    assert not m.read_only, m.line


# ----------------------------------------------------------------- devices

DEVICES = [
    pytest.param("null", "1:3", id="null"),
    pytest.param("zero", "1:5", id="zero"),
    pytest.param("full", "1:7", id="full"),
    pytest.param("random", "1:8", id="random"),
    pytest.param("urandom", "1:9", id="urandom"),
    pytest.param("tty", "5:0", id="tty"),
]


@pytest.mark.parametrize(("name", "numbers"), DEVICES)
def test_dev_has_docker_device_node(engine: Engine, name: str, numbers: str) -> None:
    out = assert_ok(engine.run("stat", "-c", "%F %t:%T %a", f"/dev/{name}"))
    kind, nums, mode = out.strip().rsplit(" ", 2)
    assert kind == "character special file", out
    assert nums == numbers, out
    assert mode == "666", out


def test_dev_contains_only_docker_entries(engine: Engine) -> None:
    allowed = {
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "mqueue",
        "fd", "stdin", "stdout", "stderr", "core", "console",
    }  # fmt: skip
    entries = set(assert_ok(engine.run("ls", "-A", "/dev")).split())
    assert entries - allowed == set()
    assert assert_ok(engine.sh("find /dev -type b")) == ""


def test_dev_devices_work(engine: Engine) -> None:
    out = assert_ok(
        engine.sh(
            "echo gone > /dev/null && head -c 4 /dev/zero | od -An -tx1 && "
            "head -c 16 /dev/urandom | wc -c && (echo x > /dev/full) 2>&1; true"
        )
    )
    lines = out.splitlines()
    assert lines[0].split() == ["00", "00", "00", "00"], out
    assert lines[1].strip() == "16", out
    assert "No space left on device" in lines[2], out


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ],
)
def test_dev_has_docker_fd_symlinks(engine: Engine, link: str, target: str) -> None:
    assert assert_ok(engine.run("readlink", link)).strip() == target


# ----------------------------------------------------------------- masked / read-only paths


@pytest.mark.parametrize("path", present_on_host(MASKED_PATHS))
def test_masked_path_has_a_mount_over_it(engine: Engine, path: str) -> None:
    m = must_mount(container_mounts(engine), path)
    if os.path.isdir(path):
        assert m.fstype == "tmpfs" and m.read_only, m.line
    else:
        assert m.root in ("/null", "/dev/null") or m.fstype in ("devtmpfs", "tmpfs"), m.line


@pytest.mark.parametrize("path", present_on_host(READONLY_PATHS))
def test_readonly_path_is_mounted_read_only(engine: Engine, path: str) -> None:
    m = must_mount(container_mounts(engine), path)
    assert m.read_only, m.line


def test_proc_sys_write_fails_read_only_even_with_sys_admin(engine: Engine) -> None:
    # With CAP_SYS_ADMIN only the read-only mount stops this write (it would
    # otherwise just rename the container's own UTS namespace).
    res = engine.sh("echo evil > /proc/sys/kernel/hostname", opts=["--cap-add", "SYS_ADMIN"])
    assert res.returncode != 0, res
    assert "Read-only file system" in res.stderr, res


# ----------------------------------------------------------------- bind mounts


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    d = tmp_path / "host-data"
    d.mkdir()
    (d / "from-host.txt").write_text("hello from the host\n")
    return d


def test_bind_mount_is_read_write_by_default(engine: Engine, host_dir: Path) -> None:
    out = assert_ok(
        engine.sh(
            "cat /data/from-host.txt && echo written > /data/from-container.txt",
            opts=["-v", f"{host_dir}:/data"],
        )
    )
    assert out == "hello from the host\n"
    assert (host_dir / "from-container.txt").read_text() == "written\n"
    m = must_mount(container_mounts(engine, ["-v", f"{host_dir}:/data"]), "/data")
    assert not m.read_only, m.line


def test_bind_mount_rw_mode_is_accepted(engine: Engine, host_dir: Path) -> None:
    assert_ok(engine.sh("echo rw > /data/rw.txt", opts=["-v", f"{host_dir}:/data:rw"]))
    assert (host_dir / "rw.txt").read_text() == "rw\n"


def test_bind_mount_ro_is_read_only(engine: Engine, host_dir: Path) -> None:
    before = sorted(os.listdir(host_dir))
    res = engine.sh(
        "cat /data/from-host.txt; echo x > /data/new.txt", opts=["-v", f"{host_dir}:/data:ro"]
    )
    assert res.returncode != 0, res
    assert res.stdout == "hello from the host\n", res
    assert "Read-only file system" in res.stderr, res
    assert sorted(os.listdir(host_dir)) == before
    m = must_mount(container_mounts(engine, ["-v", f"{host_dir}:/data:ro"]), "/data")
    assert m.read_only, m.line


def test_bind_mount_of_a_single_file(engine: Engine, tmp_path: Path) -> None:
    f = tmp_path / "app.conf"
    f.write_text("setting=1\n")
    out = assert_ok(engine.run("cat", "/etc/app.conf", opts=["-v", f"{f}:/etc/app.conf:ro"]))
    assert out == "setting=1\n"


def test_bind_mount_destination_is_created_in_the_container(engine: Engine, host_dir: Path) -> None:
    out = assert_ok(
        engine.run("cat", "/srv/a/b/from-host.txt", opts=["-v", f"{host_dir}:/srv/a/b"])
    )
    assert out == "hello from the host\n"


def test_several_bind_mounts_at_once(engine: Engine, host_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "o.txt").write_text("other\n")
    out = assert_ok(
        engine.sh(
            "cat /one/from-host.txt /two/o.txt",
            opts=["-v", f"{host_dir}:/one:ro", "-v", f"{other}:/two"],
        )
    )
    assert out == "hello from the host\nother\n"


# ----------------------------------------------------------------- --tmpfs and --read-only


def test_tmpfs_flag_mounts_a_writable_noexec_tmpfs(engine: Engine) -> None:
    mounts = container_mounts(engine, ["--tmpfs", "/scratch"])
    m = must_mount(mounts, "/scratch")
    assert m.fstype == "tmpfs", m.line
    assert {"nosuid", "nodev", "noexec"} <= m.options, m.line
    assert not m.read_only, m.line


def test_tmpfs_contents_do_not_reach_the_image(engine: Engine) -> None:
    out = assert_ok(
        engine.sh("echo data > /scratch/f && cat /scratch/f", opts=["--tmpfs", "/scratch"])
    )
    assert out == "data\n"
    assert not (engine.rootfs / "scratch" / "f").exists()


def test_tmpfs_is_noexec(engine: Engine) -> None:
    res = engine.sh("cp /bin/busybox /scratch/bb && /scratch/bb true", opts=["--tmpfs", "/scratch"])
    assert res.returncode == 126, res
    assert "Permission denied" in res.stderr, res


def test_read_only_rootfs_refuses_writes(engine: Engine) -> None:
    res = engine.sh("touch /newfile", opts=["--read-only"])
    assert res.returncode != 0, res
    assert "Read-only file system" in res.stderr, res
    assert not (engine.rootfs / "newfile").exists()
    m = must_mount(container_mounts(engine, ["--read-only"]), "/")
    assert m.read_only, m.line


def test_read_only_rootfs_keeps_dev_shm_and_tmpfs_writable(engine: Engine) -> None:
    out = assert_ok(
        engine.sh(
            "echo a > /dev/shm/a && echo b > /tmp/b && cat /dev/shm/a /tmp/b && echo > /dev/null",
            opts=["--read-only", "--tmpfs", "/tmp"],
        )
    )
    assert out == "a\nb\n"


def test_read_only_rootfs_still_gets_engine_etc_files(engine: Engine) -> None:
    out = assert_ok(
        engine.run("cat", "/etc/hostname", opts=["--read-only", "--hostname", "ro-box"])
    )
    assert out == "ro-box\n"


def test_writes_without_read_only_land_in_the_rootfs(engine: Engine) -> None:
    # --rootfs runs the directory itself (no copy-on-write layer).
    assert_ok(engine.sh("echo kept > /root/kept.txt"))
    assert (engine.rootfs / "root/kept.txt").read_text() == "kept\n"


# ----------------------------------------------------------------- /etc files


@pytest.mark.parametrize("path", ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"])
def test_engine_provides_etc_file_as_a_mount(engine: Engine, path: str) -> None:
    must_mount(container_mounts(engine), path)


def test_etc_hosts_is_the_engines_not_the_images(engine: Engine) -> None:
    out = assert_ok(engine.run("cat", "/etc/hosts", opts=["--hostname", "hbox"]))
    assert "image-provided-hosts-entry" not in out
    assert any(line.split()[:2] == ["127.0.0.1", "localhost"] for line in out.splitlines()), out
    assert (engine.rootfs / "etc/hosts").read_text() == IMAGE_HOSTS


def test_etc_resolv_conf_is_the_engines_not_the_images(engine: Engine) -> None:
    out = assert_ok(engine.run("cat", "/etc/resolv.conf"))
    assert "image-provided-resolv-conf" not in out
    assert (engine.rootfs / "etc/resolv.conf").read_text() == IMAGE_RESOLV


def test_etc_hostname_matches_the_hostname(engine: Engine) -> None:
    out = assert_ok(engine.sh("cat /etc/hostname; hostname"))
    name_file, name_uts = out.split()
    assert name_file == name_uts


def test_etc_files_are_provided_when_the_image_has_no_etc(
    engine: Engine, make_rootfs: Callable[[str], Path]
) -> None:
    bare = make_rootfs("bare")
    for name in ("hosts", "resolv.conf"):
        (bare / "etc" / name).unlink()
    out = assert_ok(
        engine.sh(
            "cat /etc/hostname; grep -c localhost /etc/hosts; test -f /etc/resolv.conf && echo ok",
            opts=["--hostname", "bare-box"],
            rootfs=bare,
        )
    )
    assert out.split()[0] == "bare-box"
    assert int(out.split()[1]) >= 1
    assert out.split()[2] == "ok"
