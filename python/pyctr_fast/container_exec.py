"""``exec``: starting a process inside a running container.

The process is described by a spec derived from the container's own
``config.json``: the same root, every namespace of the container given by
path (``/proc/<pid>/ns/<kind>``, the pid namespace included), and the
container's process with Docker's exec overrides (command, ``-e``, ``-u``,
``-w``, ``-t``, ``--privileged``).  The native side joins those namespaces
from pyctr-init running out of its sealed memfd (no host binary ever runs in
the container) and writes the process into the container's cgroups
(``launch.json``'s ``cgroup_procs``) before it starts.

Exit statuses follow ``docker exec``: the program's status; 127 when the
program does not exist, 126 when it cannot be started (not executable,
unknown user, bad working directory...), with a one-line ``exec failed: ...``
error; 1 for a container that is unknown, not running or paused (the docker
CLI exits 1 for the daemon's refusals; usage errors stay 125).
"""

from __future__ import annotations

import errno
import os

from . import environment, records, rootfs_files, trace, users
from .errors import APIError, UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

__all__ = ["NS_FILES", "build_exec_spec", "exec_in", "running_pid"]

#: The file under /proc/<pid>/ns/ of each OCI namespace type.
NS_FILES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}

NEEDS_ROOT = "exec needs root (CAP_SYS_ADMIN to join a container's namespaces)"


def _read_json(path: str, what: str) -> Any:
    try:
        return records.read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise APIError(f"cannot read the container's {what}: {err}") from None


def running_pid(rec: records.Record, cgroup_dirs: Sequence[str] | None = None) -> int:
    """The host pid of a running container, or the error ``docker exec`` gives.
    ``cgroup_dirs``: the container's cgroup as launch.json records it (see
    :meth:`records.Record.state`)."""
    status = rec.state(cgroup_dirs)["Status"]
    if status == "paused":
        raise APIError(f"Container {rec.id} is paused, unpause the container before exec")
    if status == "restarting":
        raise APIError(f"Container {rec.id} is restarting, wait until the container is running")
    pid = int(rec.raw_state.get("Pid") or 0)
    if status != "running" or pid <= 0 or not rec.pid_alive():
        raise APIError(f"Container {rec.id} is not running")
    return pid


def _recorded_cgroup_dirs(launch: object) -> list[str] | None:
    """launch.json's ``cgroup_dirs``, or None when there is no such list
    (then the paused check looks where :mod:`cgroups` plans them)."""
    dirs = launch.get("cgroup_dirs") if isinstance(launch, dict) else None
    return [str(d) for d in dirs] if isinstance(dirs, list) else None


def _exec_user(
    container_root: str, spec_user: str | None, base: dict[str, Any], passwd: str | None
) -> users.ExecUser:
    """``-u`` resolved against the container's own /etc/passwd and /etc/group
    (read inside its root: symlinks cannot lead out); without ``-u`` the
    container's user."""
    if spec_user is None or spec_user == "":
        uid = int(base.get("uid", 0))
        gid = int(base.get("gid", 0))
        extra = tuple(int(g) for g in base.get("additionalGids") or ())
        return users.ExecUser(uid, gid, extra, _home_of(passwd, uid))
    group = rootfs_files.read_text_in_root(container_root, "/etc/group")
    try:
        return users.resolve_user(spec_user, passwd, group)
    except UserError as err:
        raise UserError(f"exec failed: {err.message}", exit_code=126) from None


def _home_of(passwd: str | None, uid: int) -> str:
    for entry in users.parse_passwd(passwd or ""):
        if entry.uid == uid:
            return entry.home
    return "/"


def _workdir(workdir: str) -> str:
    from .mounts import clean_path

    if not workdir.startswith("/"):
        raise UserError(
            f"the working directory '{workdir}' is invalid, it needs to be an absolute path"
        )
    return clean_path(workdir)


def _exec_env(
    base: Sequence[str],
    *,
    tty: bool,
    container_tty: bool,
    container_home: str,
    home: str,
    env: Iterable[str],
    env_files: Iterable[str],
    environ: Mapping[str, str],
) -> list[str]:
    """The container's environment with Docker's exec rules: ``TERM=xterm``
    only with ``-t`` (unless the container's user set TERM), env files then
    ``-e`` on top (``-e K`` takes K from the caller, or unsets it), and HOME
    from the exec user's passwd entry unless it was set explicitly."""
    entries = list(base)
    if container_tty and not tty and "TERM=xterm" in entries:
        entries.remove("TERM=xterm")
    # The container's HOME came from its own user's passwd entry unless it
    # differs from that: recompute it for the exec user.
    if f"HOME={container_home}" in entries:
        entries.remove(f"HOME={container_home}")
    if tty and not any(e.startswith("TERM=") for e in entries):
        entries.append("TERM=xterm")
    overrides: list[str] = []
    for path in env_files:
        overrides.extend(environment.read_env_file(path, environ))
    overrides.extend(environment.parse_env_arg(e, environ) for e in env)
    merged = environment.merge_env(entries, overrides)
    if not any(e.startswith("HOME=") for e in merged):
        merged.append(f"HOME={home}")
    return merged


def build_exec_spec(
    config: dict[str, Any],
    pid: int,
    cmd: Sequence[str],
    *,
    env: Iterable[str] = (),
    env_files: Iterable[str] = (),
    user: str | None = None,
    workdir: str | None = None,
    tty: bool = False,
    privileged: bool = False,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The spec of a process started by ``exec`` in the container whose
    ``config.json`` is ``config`` and whose init has host pid ``pid``."""
    if not cmd:
        raise UserError("exec requires a command to run")
    if environ is None:
        environ = os.environ
    cproc: dict[str, Any] = config.get("process") or {}
    container_root = f"/proc/{pid}/root"
    base_user: dict[str, Any] = cproc.get("user") or {}
    passwd = rootfs_files.read_text_in_root(container_root, "/etc/passwd")
    exec_user = _exec_user(container_root, user, base_user, passwd)
    container_home = _home_of(passwd, int(base_user.get("uid", 0)))
    cwd = _workdir(workdir) if workdir else (cproc.get("cwd") or "/")

    if privileged:
        from . import caps

        everything = caps.bounding_capabilities()
        capabilities: dict[str, list[str]] = {
            "bounding": everything,
            "effective": list(everything),
            "inheritable": [],
            "permitted": list(everything),
            "ambient": [],
        }
    else:
        capabilities = cproc.get("capabilities") or {}

    process: dict[str, Any] = {
        "terminal": tty,
        "user": {
            "uid": exec_user.uid,
            "gid": exec_user.gid,
            "additionalGids": list(exec_user.additional_gids),
        },
        "args": list(cmd),
        "env": _exec_env(
            cproc.get("env") or (),
            tty=tty,
            container_tty=bool(cproc.get("terminal")),
            container_home=container_home,
            home=exec_user.home,
            env=env,
            env_files=env_files,
            environ=environ,
        ),
        "cwd": cwd,
        "capabilities": capabilities,
        "rlimits": list(cproc.get("rlimits") or ()),
        "noNewPrivileges": bool(cproc.get("noNewPrivileges")),
    }
    umask = base_user.get("umask")
    if umask is not None:
        process["user"]["umask"] = umask
    if cproc.get("oomScoreAdj") is not None:
        process["oomScoreAdj"] = cproc["oomScoreAdj"]

    kinds = [ns.get("type", "") for ns in (config.get("linux") or {}).get("namespaces") or ()]
    if "pid" not in kinds:
        kinds.insert(0, "pid")
    namespaces = []
    for kind in kinds:
        if kind not in NS_FILES:
            raise APIError(f"the container's config.json has an unknown namespace {kind!r}")
        namespaces.append({"type": kind, "path": f"/proc/{pid}/ns/{NS_FILES[kind]}"})
    oci_version = config.get("ociVersion")
    if not oci_version:
        from .spec import OCI_VERSION

        oci_version = OCI_VERSION
    linux: dict[str, Any] = {"namespaces": namespaces}
    seccomp = (config.get("linux") or {}).get("seccomp")
    if seccomp:
        # The container's filter binds its exec'd processes too (runc's exec).
        linux["seccomp"] = seccomp
    return {
        "ociVersion": oci_version,
        "process": process,
        "root": config.get("root") or {"path": container_root},
        "linux": linux,
    }


def _exit_status(err: Exception) -> int:
    if getattr(err, "step", "") == "execve" and getattr(err, "errno", 0) == errno.ENOENT:
        return 127
    return 126


def _reap_in_background(proc: Any) -> None:
    """A detached exec'd process is our child until we exit: reap it when it
    ends so that a long-lived caller (the API) does not collect zombies."""
    import threading

    threading.Thread(target=proc.wait, name="pyctr-exec-reaper", daemon=True).start()


def exec_in(
    root: str | None,
    ref: str,
    cmd: Sequence[str],
    *,
    env: Iterable[str] = (),
    env_files: Iterable[str] = (),
    user: str | None = None,
    workdir: str | None = None,
    tty: bool = False,
    interactive: bool = False,
    privileged: bool = False,
    detach: bool = False,
    stdio: tuple[int, int, int] | None = None,
    forward_signals: bool = False,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run ``cmd`` in the running container ``ref`` (name, id or id prefix).

    Foreground: returns the program's Docker status.  ``detach``: returns 0
    once the program has been exec'd; it runs with /dev/null as stdio unless
    ``stdio`` is given, and without a terminal (nothing would hold the pty).
    Raises :class:`UserError` (``APIError`` for a container that is unknown,
    not running or paused, exit status 1; ``exec failed: ...`` with 126/127
    when the process cannot be started).
    """
    if os.geteuid() != 0:
        raise UserError(NEEDS_ROOT)
    from . import _native, compact_json

    trace.mark("python: exec modules imported")
    state_root = records.resolve_root(root)
    rec = records.resolve(state_root, ref)
    # launch.json says where the container's cgroup is: the paused check
    # reads its freezer there, without planning cgroups from mountinfo.
    launch: Any = None
    launch_error: APIError | None = None
    try:
        launch = _read_json(rec.path("launch.json"), "launch.json")
    except APIError as err:
        launch_error = err
    pid = running_pid(rec, _recorded_cgroup_dirs(launch))
    trace.mark("python: container resolved, running")
    config = _read_json(rec.path("config.json"), "config.json")
    if not isinstance(config, dict):
        raise APIError(f"Container {rec.id} has no runtime configuration (config.json)")
    if launch_error is not None:
        raise launch_error
    cgroup_procs = [str(p) for p in (launch or {}).get("cgroup_procs") or ()]
    use_tty = tty and not detach
    spec = build_exec_spec(
        config,
        pid,
        cmd,
        env=env,
        env_files=env_files,
        user=user,
        workdir=workdir,
        tty=use_tty,
        privileged=privileged,
        environ=environ,
    )
    text = compact_json.dumps(spec)
    trace.mark("python: exec spec built")
    # The container may have stopped while the spec was built: joining the
    # namespaces of a recycled pid must not happen.
    if not rec.pid_alive():
        raise APIError(f"Container {rec.id} is not running")
    try:
        if detach:
            null = None
            if stdio is None:
                null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                stdio = (null, null, null)
            try:
                proc = _native.exec_process(
                    text, cgroup_procs=cgroup_procs, stdio=stdio, detach=True
                )
            finally:
                if null is not None:
                    os.close(null)
            assert not isinstance(proc, int)
            _reap_in_background(proc)
            return 0
        status = _native.exec_process(
            text,
            cgroup_procs=cgroup_procs,
            stdio=stdio,
            stdin=interactive,
            forward_signals=forward_signals,
        )
    except _native.ContainerError as err:
        raise UserError(f"exec failed: {err}", exit_code=_exit_status(err)) from None
    assert isinstance(status, int)
    return status
