"""Container lifecycle operations: create, start, stop, kill, restart, rm,
wait, rename, pause, unpause, prune.

A typed function API used by the CLI (:mod:`pyctr_fast.lifecycle_cli`) and
the docker-py-style client.  Every function takes the state ``root`` (None:
$PYCTR_ROOT, else /var/lib/pyctr-fast) and a container reference (full id,
name, or unique id prefix).  Errors are :class:`UserError` with Docker's
messages (exit status 1 for "daemon" errors, 125 for bad options) or
``ContainerError`` when a container cannot be started.

Started containers run under a per-container supervisor
(``_native.start_supervisor``) that outlives the CLI; the files involved are
described in docs/lifecycle.md.  Mutating commands take the container's
``lock`` (flock) so that concurrent start/rm/rename never interleave; the
process-level pieces (locks, pidfds, waits) are in :mod:`pyctr_fast.supervision`.
"""

from __future__ import annotations

import os
import time

from . import cgroups, records, statefiles, trace
from . import supervision as sv
from .container import (
    check_native,
    claim_name,
    exit_code_for,
    prepare,
    remove_dir,
    remove_tree,
    require_root,
    resolve_root,
)
from .errors import UserError
from .records import Record
from .signals import SIGKILL, parse_signal
from .spec import new_container_id, parse_log_opts, parse_restart
from .supervision import SUPERVISOR_GRACE, stop_signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from ._native import Supervised
    from .resources import Limits
    from .spec import RunOptions

__all__ = [
    "create",
    "kill",
    "pause",
    "prune",
    "remove",
    "rename",
    "restart",
    "run_attached",
    "run_detached",
    "start",
    "stop",
    "stop_signal",
    "unpause",
    "update_resources",
    "wait",
]

#: How long ``kill -s KILL`` waits for the container to be reported stopped.
KILL_WAIT = 2.0


_err = sv.daemon_error


# --------------------------------------------------------------------------- create/start


def create(
    opts: RunOptions,
    *,
    root: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Record:
    """Create a container (``docker create``): resolve the image (pulling it
    per ``opts.pull``) or the rootfs, reserve the name (``opts.name`` or a
    generated one), and write the container directory: config.json,
    launch.json, state.json (``created``), container.json.

    Nothing runs and no cgroup is made yet (that is :func:`start`).  On
    failure nothing is left: no directory, no name.
    """
    require_root()
    check_native()
    from .spec import check_run_options, validate_name

    trace.mark("python: lifecycle modules imported")
    state_root = resolve_root(root, environ)
    check_run_options(opts)
    restart_policy = parse_restart(opts.restart)
    max_size, max_files, log_config = parse_log_opts(opts.log_driver, opts.log_opts)
    if opts.name is not None:
        validate_name(opts.name)
    cid = new_container_id()
    # The directory first (invisible until container.json is written), then
    # the name: a bad option leaves no names/ entry, a taken name no directory.
    prep = prepare(opts, state_root, cid, environ=environ, volatile=opts.remove, supervised=True)
    try:
        name = claim_name(state_root, opts.name, cid)
        try:
            plan = cgroups.plan_for_spec(prep.spec)
            launch = statefiles.launch_json(
                prep,
                opts,
                name,
                state_root,
                restart=restart_policy,
                log_max_size=max_size,
                log_max_files=max_files,
                cgroup=plan,
            )
            doc = statefiles.container_json(
                prep, opts, name, records.now(), restart=restart_policy, log_config=log_config
            )
            bundle = prep.bundle
            sv.touch(os.path.join(bundle, "lock"))
            statefiles.write_file(os.path.join(bundle, "config.json"), prep.config)
            statefiles.write_json(os.path.join(bundle, "launch.json"), launch)
            statefiles.write_json(os.path.join(bundle, "state.json"), statefiles.created_state())
            statefiles.write_json(os.path.join(bundle, "container.json"), doc)  # visible now
            trace.mark("python: created (name, config, launch, state, container.json)")
        except OSError as err:
            records.release_name(state_root, name, cid)
            raise UserError(
                f"cannot write the state of container {cid}: {err.strerror or err}"
            ) from None
        except BaseException:
            records.release_name(state_root, name, cid)
            raise
    except BaseException:
        remove_dir(prep.bundle)
        raise
    return Record(state_root, cid)


def _resources_json(rec: Record) -> str:
    """config.json's ``linux.resources``, as JSON text ("" when none)."""
    import json

    try:
        with open(rec.path("config.json"), "rb") as f:
            spec = json.loads(f.read())
    except (OSError, ValueError) as err:
        raise _err(f"cannot read {rec.path('config.json')}: {err}") from None
    res = (spec.get("linux") or {}).get("resources")
    return json.dumps(res) if res else ""


def _make_cgroup(rec: Record) -> cgroups.CgroupPlan | None:
    """Make the container's cgroup (launch.json's plan) with the spec's
    limits written, before anything runs in it."""
    plan = sv.cgroup_plan(rec)
    if plan is not None:
        cgroups.create_plan(plan, _resources_json(rec))
    return plan


def _attach_network(rec: Record) -> None:
    from .netopts import attach_record

    attach_record(rec)


def _detach_network(rec: Record) -> None:
    from . import network

    with sv.suppress(UserError):
        network.detach(rec.dir)


def _failed_start(rec: Record, plan: cgroups.CgroupPlan | None, err: BaseException) -> None:
    """Undo a start that failed: no supervisor, no process, no cgroup, no
    network endpoint; the state says why (Docker keeps the container, with
    the exit status)."""
    sv.wait_supervisor(rec.dir, SUPERVISOR_GRACE)
    _detach_network(rec)
    if plan is not None:
        with sv.suppress(UserError):
            cgroups.remove(plan)
    from ._native import ContainerError

    code = exit_code_for(err) if isinstance(err, ContainerError) else 125
    previous = rec.raw_state.get("Status", "created")
    state = dict(rec.raw_state)
    state.update(
        Status="created" if previous == "created" else "exited",
        Pid=0,
        ExitCode=code,
        Error=str(err),
        SupervisorPid=0,
    )
    with sv.suppress(OSError):
        statefiles.write_json(rec.path("state.json"), state)


def _start_locked(rec: Record, attach: bool) -> Supervised | None:
    from . import _native

    st = rec.state()
    if st["Paused"]:
        raise _err("cannot start a paused container, try unpause instead")
    if st["Running"]:
        return None  # Docker: starting a running container changes nothing
    if not sv.wait_supervisor(rec.dir, SUPERVISOR_GRACE):
        raise _err(f"the previous supervisor of container {rec.id} is still finishing")
    sv.unlink(rec.path("stopped"))
    plan = _make_cgroup(rec)
    trace.mark("python: cgroups made")
    try:
        _attach_network(rec)
        sv.FORKS.ensure_binary(rec.root)
        with sv.FORKS.forking_allowed():
            supervised = _native.start_supervisor(rec.root, rec.dir, attach=attach)
        trace.mark("python: the supervisor started the container")
        return supervised
    except BaseException as err:
        _failed_start(rec, plan, err)
        raise


def start(
    root: str | None,
    ref: str,
    *,
    attach: bool = False,
    forward_signals: bool = False,
) -> int | None:
    """Start a created or stopped container under a new supervisor
    (``docker start``).  Detached (default) it returns None once the process
    runs; with ``attach`` the container's output goes to this process's
    stdout/stderr too and its Docker exit status is returned.  Starting a
    running container does nothing.  Raises ``ContainerError`` when the
    container cannot start (no cgroup or process is left then)."""
    require_root()
    check_native()
    rec = records.resolve(resolve_root(root), ref)
    with sv.locked(rec) as fresh:
        supervised = _start_locked(fresh, attach)
    if supervised is None or not attach:
        return None
    return supervised.wait(forward_signals=forward_signals)


def run_detached(
    opts: RunOptions, *, root: str | None = None, environ: Mapping[str, str] | None = None
) -> Record:
    """``run -d``: create, then start under a detached supervisor.  A
    container that cannot start is removed with ``--rm`` and kept (created,
    with the error) otherwise, as Docker does."""
    rec = create(opts, root=root, environ=environ)
    try:
        start(rec.root, rec.id)
    except BaseException:
        if opts.remove:
            with sv.suppress(UserError):
                remove(rec.root, rec.id, force=True)
        raise
    return rec


def run_attached(
    opts: RunOptions,
    *,
    root: str | None = None,
    environ: Mapping[str, str] | None = None,
    forward_signals: bool = True,
) -> int:
    """``run`` without ``-d`` and ``--rm``: create, start with the
    supervisor attached (output to this terminal and to the log), return the
    exit status; the container stays (exited) afterwards, as with Docker."""
    rec = create(opts, root=root, environ=environ)
    status = start(rec.root, rec.id, attach=True, forward_signals=forward_signals)
    return 0 if status is None else status


# --------------------------------------------------------------------------- stop/kill


def stop(root: str | None, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
    """Stop a container (``docker stop``): its stop signal (or ``signal``),
    then SIGKILL after ``timeout`` seconds (default: its ``--stop-timeout``,
    else 10; negative: wait forever).  Not running is not an error.  The
    ``stopped`` marker keeps restart policies from restarting it."""
    rec = records.resolve(resolve_root(root), ref)
    with sv.locked(rec) as fresh:
        st = fresh.state()
        if not st["Running"]:
            sv.repair_if_orphaned(fresh)
            return
        sv.touch(fresh.path("stopped"))
    sig = parse_signal(signal) if signal is not None else stop_signal(fresh)
    grace = sv.stop_timeout(fresh, timeout)
    sv.end_process(fresh, sig, None if grace < 0 else float(grace))
    sv.finish(fresh)
    _detach_network(fresh)  # done by its supervisor, unless that one died


def kill(root: str | None, ref: str, signal: str | int = "KILL") -> None:
    """Send a signal (``docker kill -s``; a name with or without SIG, or a
    number) to a running container.  SIGKILL or the stop signal also mark it
    stopped by the user (no restart); SIGKILL waits briefly for the end to be
    recorded, as Docker does."""
    sig = parse_signal(signal)
    rec = records.resolve(resolve_root(root), ref)
    st = rec.state()
    fd = sv.pidfd(rec) if st["Running"] else None
    if fd is None:
        raise _err(f"Container {rec.id} is not running")
    try:
        if sig in (SIGKILL, stop_signal(rec)):
            with sv.locked(rec) as fresh:
                sv.touch(fresh.path("stopped"))
        sv.send(fd, sig)
        if sig == SIGKILL:
            plan = sv.cgroup_plan(rec)
            if plan is not None and rec.paused():
                with sv.suppress(UserError, OSError):
                    cgroups.thaw(plan)
            sv.wait_fd(fd, KILL_WAIT)
    finally:
        os.close(fd)
    if sig == SIGKILL:
        deadline = time.monotonic() + KILL_WAIT
        while time.monotonic() < deadline:
            try:
                if not Record(rec.root, rec.id).state()["Running"]:
                    break
            except (OSError, ValueError):
                break  # removed (auto-remove)
            time.sleep(0.005)
        sv.repair_if_orphaned(rec)


def restart(
    root: str | None, ref: str, timeout: int | None = None, signal: str | None = None
) -> None:
    """``docker restart``: stop (as :func:`stop`), then start."""
    stop(root, ref, timeout, signal=signal)
    start(root, ref)


# --------------------------------------------------------------------------- rm/prune


def _destroy(rec: Record) -> None:
    """Remove what is left of a stopped container: its cgroup, name and
    directory (first renamed aside, so it disappears at once); the network
    endpoint too if its supervisor died before undoing it."""
    _detach_network(rec)
    plan = sv.cgroup_plan(rec)
    if plan is not None:
        with sv.suppress(UserError):
            cgroups.remove(plan)
    records.release_name(rec.root, rec.name, rec.id)
    aside = os.path.join(records.containers_dir(rec.root), f".rm-{rec.id}")
    try:
        os.rename(rec.dir, aside)
    except FileNotFoundError:
        return  # removed by its supervisor (auto-remove) or a concurrent rm
    except OSError as err:
        raise _err(f"cannot remove container {rec.id}: {err.strerror or err}") from None
    remove_dir(aside)


def remove(root: str | None, ref: str, *, force: bool = False, volumes: bool = False) -> None:
    """Remove a container (``docker rm``).  A running one needs ``force``:
    it is killed (SIGKILL), its supervisor is waited for, then its cgroup,
    name and directory are removed, even when the supervisor was dead.
    ``volumes`` is accepted for Docker parity (there are no anonymous
    volumes)."""
    del volumes
    rec = records.resolve(resolve_root(root), ref)
    with sv.locked(rec) as fresh:
        st = fresh.state()
        if st["Running"] or st["Status"] == "restarting":
            if not force:
                raise _err(
                    f"You cannot remove a running container {fresh.id}. "
                    "Stop the container before attempting removal or force remove"
                )
            sv.touch(fresh.path("stopped"))
            sv.end_process(fresh, SIGKILL, 0)
            if not sv.wait_supervisor(fresh.dir, SUPERVISOR_GRACE):
                raise _err(f"the supervisor of container {fresh.id} did not finish in time")
        elif records.supervisor_alive(fresh.dir):
            # Exited, but its supervisor is still tidying up (auto-remove).
            sv.wait_supervisor(fresh.dir, SUPERVISOR_GRACE)
        _destroy(fresh)


def prune(root: str | None) -> list[str]:
    """Remove every stopped container (``docker container prune``); return
    their ids.  Leftovers of interrupted removals are swept too."""
    state_root = resolve_root(root)
    removed = []
    for rec in records.all_records(state_root):
        try:
            if rec.state()["Running"]:
                continue
            remove(state_root, rec.id)
            removed.append(rec.id)
        except UserError:
            continue  # started or removed meanwhile
    cdir = records.containers_dir(state_root)
    with sv.suppress(OSError):
        for entry in os.listdir(cdir):
            if entry.startswith(".rm-"):
                with sv.suppress(OSError):
                    remove_tree(os.path.join(cdir, entry))
    return removed


# --------------------------------------------------------------------------- wait/rename/pause


def wait(root: str | None, ref: str) -> int:
    """Block until the container is not running (``docker wait``) and
    return its exit code.  While a supervisor runs it blocks on its lock
    (flock LOCK_SH) or, with a restart policy, on the process (pidfd): it
    returns when the current run ends, even if it is restarted."""
    rec = records.resolve(resolve_root(root), ref)
    while True:
        try:
            rec = Record(rec.root, rec.id)
        except (OSError, ValueError):
            raise _err(f"No such container: {ref}") from None
        st = rec.state()
        if not st["Running"]:
            return int(st.get("ExitCode") or 0)
        policy = (rec.container.get("HostConfig") or {}).get("RestartPolicy") or {}
        if policy.get("Name", "no") in ("no", "") and records.supervisor_alive(rec.dir):
            code = sv.block_on_lock(rec)
            if code is not None:
                return code
            continue
        fd = sv.pidfd(rec)
        if fd is None:
            time.sleep(0.01)  # restarting, between two runs
            continue
        try:
            sv.wait_fd(fd, None)
        finally:
            os.close(fd)
        return sv.exit_after(rec, st)


def rename(root: str | None, ref: str, new_name: str) -> None:
    """Rename a container (``docker rename``)."""
    bare = new_name[1:] if new_name.startswith("/") else new_name
    if not records.valid_name(bare):
        raise _err(
            f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    rec = records.resolve(resolve_root(root), ref)
    with sv.locked(rec) as fresh:
        old = fresh.name
        if bare == old:
            raise _err("Renaming a container with the same name as its current name")
        try:
            records.claim_name(fresh.root, bare, fresh.id)
        except UserError as err:
            raise _err(err.message) from None
        try:
            doc = dict(fresh.container)
            doc["Name"] = "/" + bare
            statefiles.write_json(fresh.path("container.json"), doc)
            launch = sv.launch_doc(fresh)
            if launch:
                launch["name"] = bare
                statefiles.write_json(fresh.path("launch.json"), launch)
        except OSError as err:
            records.release_name(fresh.root, bare, fresh.id)
            raise _err(f"cannot rename container {fresh.id}: {err.strerror or err}") from None
        records.release_name(fresh.root, old, fresh.id)


def _freezable(rec: Record) -> cgroups.CgroupPlan:
    st = rec.state()
    if not st["Running"]:
        raise _err(f"Container {rec.id} is not running")
    if st["Restarting"]:
        raise _err(f"Container {rec.id} is restarting, wait until the container is running")
    plan = sv.cgroup_plan(rec)
    if plan is None or not cgroups.exists(plan):
        raise _err(
            f"Container {rec.id} has no cgroup to freeze "
            "(a foreground --rm container without limits cannot be paused)"
        )
    return plan


def pause(root: str | None, ref: str) -> None:
    """Freeze every process of the container (``docker pause``)."""
    rec = records.resolve(resolve_root(root), ref)
    with sv.locked(rec) as fresh:
        plan = _freezable(fresh)
        if fresh.paused():
            raise _err(f"Container {fresh.id} is already paused")
        cgroups.freeze(plan)


def unpause(root: str | None, ref: str) -> None:
    """Thaw a paused container (``docker unpause``)."""
    rec = records.resolve(resolve_root(root), ref)
    with sv.locked(rec) as fresh:
        if not fresh.paused():
            raise _err(f"Container {fresh.id} is not paused")
        plan = sv.cgroup_plan(fresh)
        if plan is not None:
            cgroups.thaw(plan)


# --------------------------------------------------------------------------- update


def _merge_resources(old: object, new: Mapping[str, Any]) -> dict[str, Any]:
    """``linux.resources`` with each section of ``new`` laid over the old one."""
    merged: dict[str, Any] = dict(old) if isinstance(old, dict) else {}
    for key, value in new.items():
        prev = merged.get(key)
        if isinstance(prev, dict) and isinstance(value, dict):
            merged[key] = {**prev, **value}
        else:
            merged[key] = value
    return merged


def update_resources(
    rec: Record, limits_for: Limits | Callable[[Mapping[str, Any]], Limits]
) -> Limits:
    """``docker update``: write the new limits into the container's cgroup
    when it runs (the kernel may refuse: a memory limit below what is in use),
    then record them in config.json's ``linux.resources`` (so the next start
    has them) and container.json's ``HostConfig``.  ``limits_for`` computes
    them from the current ``HostConfig``, read under the container's lock (so
    two concurrent updates merge one after the other); returns them."""
    import json

    with sv.locked(rec) as fresh:
        if callable(limits_for):
            limits = limits_for(fresh.container.get("HostConfig") or {})
        else:
            limits = limits_for
        st = fresh.state()
        plan = sv.cgroup_plan(fresh)
        if st["Running"]:
            if plan is None or not cgroups.exists(plan):
                raise _err(
                    f"Cannot update container {fresh.id}: it has no cgroup "
                    "(a foreground --rm container started without limits)"
                )
            if limits.oci:
                cgroups.update(plan, json.dumps(limits.oci))
        try:
            with open(fresh.path("config.json"), "rb") as f:
                spec = json.loads(f.read())
            linux = spec.setdefault("linux", {})
            linux["resources"] = _merge_resources(linux.get("resources"), limits.oci)
            doc = dict(fresh.container)
            doc["HostConfig"] = {**(doc.get("HostConfig") or {}), **limits.host_config}
            statefiles.write_json(fresh.path("config.json"), spec)
            statefiles.write_json(fresh.path("container.json"), doc)
        except (OSError, ValueError) as err:
            raise _err(f"cannot record the new limits of container {fresh.id}: {err}") from None
    return limits
