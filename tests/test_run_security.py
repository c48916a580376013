"""Known container-escape classes, each tried for real against the engine.

* CVE-2024-21626 (runc "Leaky Vessels"): a host fd leaked into the container,
  and ``-w /proc/self/fd/N`` as a way to start with a cwd outside the rootfs.
* CVE-2019-5736 (runc /proc/self/exe overwrite): the process that execs the
  user's command must not be a host binary, or ``#!/proc/self/exe`` runs that
  host binary inside the container, under the attacker's environment.
* Images whose /proc, /dev, /sys, /etc or a volume destination is a symlink to
  a host path: the engine must resolve them inside the rootfs.
* Masked paths must really be masked.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from ctrkit import (
    MASKED_PATHS,
    Engine,
    assert_engine_error,
    assert_ok,
    present_on_host,
    snapshot_tree,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A host directory that no container may see or change."""
    d = tmp_path / "canary"
    d.mkdir()
    (d / f"CANARY-{uuid.uuid4().hex}").write_text("host secret\n")
    (d / "passwd").write_text("canaryuser:x:4321:4321::/:/bin/sh\n")
    (d / "group").write_text("canarygroup:x:4321:\n")
    return d


def free_fd(at_least: int) -> int:
    """The lowest descriptor number >= ``at_least`` not open in this process
    (pytest's own capture files must not be clobbered)."""
    fd = at_least
    while True:
        try:
            os.fstat(fd)
        except OSError:
            return fd
        fd += 1


def canary_name(canary: Path) -> str:
    return next(p.name for p in canary.iterdir() if p.name.startswith("CANARY-"))


# ----------------------------------------------------------------- CVE-2024-21626


@pytest.mark.parametrize("fd", [5, 9, 42, 200])
def test_fd_leaked_by_api_caller_is_not_in_the_container(
    engine: Engine, canary: Path, fd: int
) -> None:
    res = engine.api(
        f"leak = os.open({str(canary)!r}, os.O_RDONLY | os.O_DIRECTORY)\n"
        f"os.dup2(leak, {fd}, inheritable=True)\n"
        f"assert os.get_inheritable({fd})\n"
        "sys.exit(api.run(ROOTFS, ['ls', '-l', '/proc/self/fd'], root=ROOT))\n"
    )
    assert res.returncode == 0, res
    fds = {line.split()[-3] for line in res.stdout.splitlines() if "->" in line}
    assert fds <= {"0", "1", "2", "3"}, res.stdout  # 3: the directory ls is reading
    assert str(canary) not in res.stdout


@pytest.mark.parametrize("at_least", [5, 42, 200])
def test_fd_leaked_by_cli_caller_is_not_in_the_container(
    engine: Engine, canary: Path, at_least: int
) -> None:
    leak = os.open(canary, os.O_RDONLY | os.O_DIRECTORY)
    fd = free_fd(at_least)
    try:
        os.dup2(leak, fd, inheritable=True)
        res = engine.execute(engine.run_argv("ls", "/proc/self/fd"), pass_fds=(fd,))
    finally:
        os.close(leak)
        os.close(fd)
    assert set(assert_ok(res).split()) <= {"0", "1", "2", "3"}, res


def test_container_pid_1_starts_with_only_stdio(engine: Engine) -> None:
    # The engine's own descriptors (state files, pipes, the init's memfd...)
    # must all be closed before the user's program runs.
    out = assert_ok(engine.run("ls", "/proc/self/fd"))
    assert set(out.split()) <= {"0", "1", "2", "3"}, out


@pytest.mark.parametrize("fd", ["leaked", 3, 4, 5, 6, 7, 8, 9])
def test_workdir_through_proc_self_fd_cannot_escape(
    engine: Engine, canary: Path, fd: int | str
) -> None:
    # The caller leaks a descriptor to the canary (the CVE's setup) and asks for
    # it as the workdir; every low fd is tried too, in case the engine itself
    # leaks one into the container's PID 1.
    leak = os.open(canary, os.O_RDONLY | os.O_DIRECTORY)
    leaked = free_fd(20)
    number = leaked if fd == "leaked" else fd
    try:
        os.dup2(leak, leaked, inheritable=True)
        argv = engine.run_argv(
            "sh",
            "-c",
            "pwd; ls -a . .. ../.. ../../.. 2>&1",
            opts=["-w", f"/proc/self/fd/{number}"],
        )
        res = engine.execute(argv, pass_fds=(leaked,))
    finally:
        os.close(leak)
        os.close(leaked)
    name = canary_name(canary)
    assert name not in res.stdout + res.stderr, f"the container saw the host canary\n{res}"
    if res.returncode != 0:
        assert res.stderr.startswith("pyctr-fast: ") and res.stderr.count("\n") == 1, res


def test_cwd_of_container_is_inside_its_root(engine: Engine) -> None:
    out = assert_ok(engine.sh("readlink /proc/self/cwd; readlink /proc/1/root"))
    assert out.split() == ["/", "/"], out


# ----------------------------------------------------------------- CVE-2019-5736

PY_PAYLOAD = """\
import os
st = os.stat("/proc/self/exe")
fd = os.open("/HOST_BINARY_RAN", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.write(fd, f"{st.st_dev} {st.st_ino} {os.readlink('/proc/self/exe')}\\n".encode())
os._exit(66)
"""

C_PAYLOAD = r"""
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
__attribute__((constructor)) static void payload(void) {
    struct stat st;
    char path[512] = "", line[700];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n > 0) path[n] = 0;
    if (stat("/proc/self/exe", &st) != 0) return;
    int fd = open("/HOST_BINARY_RAN", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    int len = snprintf(line, sizeof line, "%lu %lu %s\n",
                       (unsigned long)st.st_dev, (unsigned long)st.st_ino, path);
    if (len > 0) write(fd, line, (size_t)len);
    close(fd);
    _exit(66);
}
"""


def _ldd_paths(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    return sorted(set(re.findall(r"(/\S+)", out)))


def _host_binaries() -> list[str]:
    import pyctr_fast._native as native

    exe = os.path.realpath(sys.executable)
    paths = [exe, os.path.realpath(native.__file__), *_ldd_paths(exe)]
    cli = shutil.which("pyctr-fast", path=os.path.dirname(sys.executable))
    if cli:
        paths.append(os.path.realpath(cli))
    return [p for p in dict.fromkeys(paths) if os.path.isfile(p)]


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def poisoned_rootfs(make_rootfs: Callable[[str], Path], tmp_path: Path) -> Path:
    """An image that turns any dynamically linked host binary (or the host's
    Python) run inside it into a witness: it records which executable it was
    in /HOST_BINARY_RAN and exits 66."""
    r = make_rootfs("poisoned")
    exe = os.path.realpath(sys.executable)
    for lib in _ldd_paths(exe):  # copies: the host's loader and libraries
        dest = r / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib, dest)
        os.chmod(dest, 0o755)
    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    enc = r / "pyhome/lib" / ver / "encodings"
    enc.mkdir(parents=True)
    (enc / "__init__.py").write_text(PY_PAYLOAD)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        src = tmp_path / "payload.c"
        src.write_text(C_PAYLOAD)
        subprocess.run(
            [cc, "-shared", "-fPIC", "-O1", "-o", str(r / "payload.so"), str(src)], check=True
        )
    (r / "bin/evil").write_text("#!/proc/self/exe\n")
    os.chmod(r / "bin/evil", 0o755)
    return r


EVIL_ENV = ["-e", "PYTHONHOME=/pyhome", "-e", "LD_PRELOAD=/payload.so"]


def test_poisoned_image_catches_a_host_binary_doing_the_exec(poisoned_rootfs: Path) -> None:
    """The control for the next test: when a host binary (here: this Python,
    chrooted the way a naive engine would) execs /bin/evil, the witness fires."""
    r = poisoned_rootfs
    code = (
        f"import os; os.chroot({str(r)!r}); os.chdir('/'); "
        "os.execve('/bin/evil', ['/bin/evil'], "
        "{'PYTHONHOME': '/pyhome', 'LD_PRELOAD': '/payload.so'})"
    )
    res = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount -t proc proc "$0/proc" && exec "$1" -c "$2"',
         str(r), os.path.realpath(sys.executable), code],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert res.returncode == 66, res
    witness = (r / "HOST_BINARY_RAN").read_text().split()
    st = os.stat(os.path.realpath(sys.executable))
    assert (int(witness[0]), int(witness[1])) == (st.st_dev, st.st_ino), witness


def test_proc_self_exe_shebang_does_not_run_a_host_binary(
    engine: Engine, poisoned_rootfs: Path
) -> None:
    binaries = _host_binaries()
    before = {p: _digest(p) for p in binaries}
    ids = {(os.stat(p).st_dev, os.stat(p).st_ino): p for p in binaries}
    res = engine.run("/bin/evil", opts=EVIL_ENV, rootfs=poisoned_rootfs)
    witness = poisoned_rootfs / "HOST_BINARY_RAN"
    if witness.exists():
        for line in witness.read_text().splitlines():
            dev, ino, path = line.split(" ", 2)
            assert (int(dev), int(ino)) not in ids, (
                f"the host binary {ids[(int(dev), int(ino))]} ran inside the container\n{res}"
            )
            if os.path.exists(path):
                st = os.stat(path)
                assert (st.st_dev, st.st_ino) != (int(dev), int(ino)), (
                    f"the host file {path} ran inside the container\n{res}"
                )
    after = {p: _digest(p) for p in binaries}
    assert after == before


def test_engine_binaries_are_not_visible_in_the_container(engine: Engine) -> None:
    # After exec, /proc/self/exe is the container's own program; the engine's
    # binaries must not be reachable from inside at all.
    import pyctr_fast._native as native

    so = os.path.realpath(native.__file__)
    res = engine.sh(f"test -e {so} && echo visible; readlink /proc/self/exe")
    assert res.returncode == 0, res
    assert "visible" not in res.stdout
    assert res.stdout.splitlines()[-1] == "/bin/busybox"


# ----------------------------------------------------------------- symlinks to host paths

SYMLINK_CASES = [
    pytest.param("proc", [], id="proc"),
    pytest.param("dev", [], id="dev"),
    pytest.param("sys", [], id="sys"),
    pytest.param("etc", [], id="etc"),
    pytest.param("tmp", ["--tmpfs", "/tmp"], id="tmpfs-destination"),
    pytest.param("data", ["-v", "{src}:/data/sub"], id="volume-destination-parent"),
    pytest.param("data", ["-v", "{src}:/data"], id="volume-destination"),
]


@pytest.mark.parametrize(("name", "opts"), SYMLINK_CASES)
def test_image_symlink_to_host_path_is_resolved_inside_the_rootfs(
    engine: Engine, canary: Path, tmp_path: Path, name: str, opts: list[str]
) -> None:
    src = tmp_path / "volume-src"
    src.mkdir()
    target = engine.rootfs / name
    if target.exists():
        shutil.rmtree(target)
    target.symlink_to(canary)  # absolute: a host path if followed outside the rootfs
    before = snapshot_tree(canary)
    res = engine.sh(
        "echo ran; echo x > /tmp/x 2>/dev/null; echo y > /data/sub/y 2>/dev/null; true",
        opts=[o.format(src=src) for o in opts],
    )
    assert snapshot_tree(canary) == before, f"the host directory was changed\n{res}"
    assert canary_name(canary) not in res.stdout
    if res.returncode != 0:
        assert_engine_error(res, 125)
    else:
        assert res.stdout.startswith("ran\n"), res


def test_image_etc_symlink_is_not_used_for_user_lookup(engine: Engine, canary: Path) -> None:
    shutil.rmtree(engine.rootfs / "etc")
    (engine.rootfs / "etc").symlink_to(canary)
    res = engine.run("id", "-u", opts=["-u", "canaryuser"])
    assert "4321" not in res.stdout, f"the host's passwd file was used\n{res}"
    assert_engine_error(res, 125, "canaryuser")


def test_image_passwd_symlink_to_host_file_is_not_followed(engine: Engine, canary: Path) -> None:
    passwd = engine.rootfs / "etc/passwd"
    passwd.unlink()
    passwd.symlink_to(canary / "passwd")
    res = engine.run("id", "-u", opts=["-u", "canaryuser"])
    assert "4321" not in res.stdout, f"the host's passwd file was used\n{res}"
    assert_engine_error(res, 125, "canaryuser")


# ----------------------------------------------------------------- masked paths


@pytest.mark.parametrize("path", present_on_host(MASKED_PATHS))
def test_masked_path_shows_nothing(engine: Engine, path: str) -> None:
    if os.path.isdir(path):
        out = assert_ok(engine.sh(f"ls -A {path} | wc -l; touch {path}/x 2>&1; true"))
        count, err = out.split("\n", 1)
        assert count.strip() == "0", out
        assert "Read-only file system" in err, out
    else:
        out = assert_ok(engine.sh(f"stat -c '%F %t:%T' {path}; wc -c < {path}"))
        kind, size = out.splitlines()
        assert kind == "character special file 1:3", out
        assert size.strip() == "0", out
