"""The ``run`` paths: the container directory, the spec, and how it is run.

A container lives in ``<root>/containers/<id>/``: that directory is the OCI
bundle and holds the engine's /etc files (docs/lifecycle.md).
:func:`prepare` makes it, for both paths:

* ``run --rm`` in the foreground (:func:`run_container`, also the Python
  API's ``run``) is the fast path: the container runs in-process under the
  CLI, which registers it while it runs (``container.json``, ``state.json``
  with its pid, ``supervisor.lock`` held) so that ``ps``, ``exec`` and
  ``stop`` see it, and removes everything once it is done (as well as
  ``<root>/containers`` when that leaves it empty);
* ``run -d`` and ``run`` without ``--rm`` create the container and start it
  under a supervisor (:mod:`pyctr_fast.lifecycle`), detached or attached.
"""

from __future__ import annotations

import errno
import os
import sys

from . import compact_json, trace
from .errors import UserError
from .records import DEFAULT_ROOT, ROOT_ENV, resolve_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from ._native import ContainerError, Overlay
    from .cgroups import CgroupPlan
    from .image_run import ImageRun
    from .spec import RunOptions

__all__ = [
    "DEFAULT_ROOT",
    "ROOT_ENV",
    "Prepared",
    "check_native",
    "claim_name",
    "container_dir",
    "exit_code_for",
    "prepare",
    "remove_dir",
    "remove_tree",
    "require_root",
    "resolve_root",
    "run_container",
    "run_from_cli",
]


NEEDS_ROOT = (
    "run needs root (CAP_SYS_ADMIN to create namespaces and mounts); run it as root or with sudo"
)


def container_dir(root: str, container_id: str) -> str:
    return os.path.join(root, "containers", container_id)


_CAP_SYS_ADMIN = 21


def _has_cap_sys_admin() -> bool:
    try:
        with open("/proc/self/status", "rb") as f:  # (text mode: the ascii codec's import)
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line[7:].strip(), 16) >> _CAP_SYS_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return True  # cannot tell: let the kernel decide


def require_root() -> None:
    """Refuse early, with a clear message, when namespaces cannot be created:
    not root, or root without CAP_SYS_ADMIN (rootless comes later)."""
    if os.geteuid() != 0 or not _has_cap_sys_admin():
        raise UserError(NEEDS_ROOT)


def exit_code_for(err: ContainerError) -> int:
    """Docker's status for a container that could not start: 127 when the
    command was not found, 126 when it could not be executed, else 125."""
    if err.step == "execve":
        if err.errno == errno.ENOENT:
            return 127
        if err.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC):
            return 126
    return 125


def check_native() -> None:
    try:
        from . import _native  # noqa: F401
    except ImportError as err:
        raise UserError(
            f"the native extension pyctr_fast._native is not available ({err}); "
            "build it with `pip install -e .`"
        ) from None


def _make_dir(path: str) -> None:
    # A concurrent run's clean-up may remove <root>/containers between the two
    # mkdirs; try again then.
    for _ in range(20):
        try:
            os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
            os.mkdir(path, 0o700)
            return
        except FileNotFoundError:
            continue
        except OSError as err:
            raise UserError(f"cannot create {path}: {err.strerror or err}") from None
    raise UserError(f"cannot create {path}: its parent keeps disappearing")


def remove_tree(path: str) -> None:
    """``rm -rf path`` without following symlinks; entries that vanish
    meanwhile (another remover) are fine; a missing ``path`` raises
    FileNotFoundError."""
    with os.scandir(path) as it:
        entries = list(it)
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                remove_tree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass
    os.rmdir(path)


def remove_dir(path: str) -> None:
    """Remove a container's directory, then ``containers/`` if that is now empty.
    A failure is reported, not raised: it must not hide the container's status."""
    try:
        remove_tree(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        sys.stderr.write(f"pyctr-fast: warning: cannot remove {path}: {err.strerror or err}\n")
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass  # not empty: other containers are running


class Prepared:
    """A container directory made ready: the spec (and its text), the image
    (None for ``--rootfs``) and the overlay the native side mounts."""

    __slots__ = ("bundle", "cid", "config", "image", "overlay", "spec")

    def __init__(
        self,
        cid: str,
        bundle: str,
        spec: dict[str, Any],
        config: str,
        image: ImageRun | None,
        overlay: Overlay | None,
    ) -> None:
        self.cid = cid
        self.bundle = bundle
        self.spec = spec
        self.config = config
        self.image = image
        self.overlay = overlay


def prepare(
    opts: RunOptions,
    state_root: str,
    cid: str,
    *,
    environ: Mapping[str, str] | None = None,
    volatile: bool = False,
    supervised: bool = False,
) -> Prepared:
    """Resolve the image (pulling it per ``--pull``) or the rootfs, build the
    spec, and make ``<root>/containers/<id>/`` with the /etc files (and, for
    an image, ``rootfs/``, ``upper/``, ``work/`` and ``image``).

    Raises :class:`UserError` for invalid options; on any failure nothing
    is left behind.  ``volatile`` mounts the overlay without syncs (for
    containers removed when they exit).
    """
    from .spec import build_spec

    bundle = container_dir(state_root, cid)
    netns = None
    if opts.network not in ("none", "host"):
        from .network import check_mode, namespace_path

        netns = namespace_path(check_mode(opts.network), state_root, cid, environ)
    if opts.image is None:
        spec = build_spec(
            opts,
            container_id=cid,
            container_dir=bundle,
            environ=environ,
            supervised=supervised,
            netns=netns,
        )
        config = compact_json.dumps(spec)
        trace.mark("python: spec built")
        _make_dir(bundle)
        try:
            _write_etc_files(bundle, spec["hostname"], opts)
        except BaseException:
            remove_dir(bundle)
            raise
        trace.mark("python: container dir and /etc files written")
        return Prepared(cid, bundle, spec, config, None, None)

    from .image_run import ImageRun
    from .store import Store

    store = Store(state_root)
    # Shared store lock: rmi/prune cannot remove the image between the lookup
    # and the moment <bundle>/image says it is in use.
    with store.shared():
        image = ImageRun.find(store, opts)
        spec = build_spec(
            opts,
            container_id=cid,
            container_dir=bundle,
            environ=environ,
            image=image,
            supervised=supervised,
            netns=netns,
        )
        config = compact_json.dumps(spec)
        _make_dir(bundle)
        try:
            for sub in ("rootfs", "upper", "work"):
                os.mkdir(os.path.join(bundle, sub), 0o755)
            with open(os.path.join(bundle, "image"), "w", encoding="ascii") as f:
                f.write(image.image_id + "\n")
            _write_etc_files(bundle, spec["hostname"], opts)
        except OSError as err:
            remove_dir(bundle)
            raise UserError(f"cannot prepare {bundle}: {err.strerror or err}") from None
        except BaseException:
            remove_dir(bundle)
            raise
    overlay: Overlay = {
        "lower": image.layer_dirs,
        "upper": os.path.join(bundle, "upper"),
        "work": os.path.join(bundle, "work"),
        "volatile": volatile,
    }
    trace.mark("python: image resolved, spec built, container dir made")
    return Prepared(cid, bundle, spec, config, image, overlay)


def _write_etc_files(bundle: str, hostname: str, opts: RunOptions) -> None:
    """The container's /etc files (:mod:`pyctr_fast.etcfiles`), with the
    ``--dns*`` and ``--add-host`` flags (validated by ``build_spec``)."""
    from . import etcfiles

    dns = None
    if opts.dns or opts.dns_search or opts.dns_options:
        from .netopts import parse_dns

        dns = etcfiles.DnsConfig(parse_dns(opts.dns), opts.dns_search, opts.dns_options)
    hosts: list[str] = []
    if opts.extra_hosts:
        from .netopts import parse_extra_host

        hosts = [parse_extra_host(h) for h in opts.extra_hosts]
    etcfiles.write_etc_files(bundle, hostname, opts.network, dns=dns, extra_hosts=hosts)


def claim_name(state_root: str, wanted: str | None, cid: str, *, short: bool = False) -> str:
    """Reserve ``wanted`` (validated; a name in use is Docker's conflict
    error) or a generated free name for ``cid``; returns the name.
    ``short``: a short link (see :mod:`pyctr_fast.records`)."""
    from . import records
    from .spec import validate_name

    if wanted is not None:
        name = validate_name(wanted)
        records.claim_name(state_root, name, cid, short=short)
        return name
    for _ in range(32):
        name = records.generate_name(state_root)
        try:
            records.claim_name(state_root, name, cid, short=short)
            return name
        except UserError:
            continue  # taken meanwhile by a concurrent create: draw again
    raise UserError("cannot find a free container name")


def _register(prep: Prepared, opts: RunOptions, name: str) -> int:
    """Make a foreground container visible to the other commands while it
    runs: hold ``supervisor.lock`` (returned: close it to release), write
    config.json and, last, container.json (state.json comes with the pid;
    until then readers take the container as ``created``).  Minimal work:
    this is on the benchmarked start path."""
    from . import statefiles

    bundle = prep.bundle
    fd = os.open(
        os.path.join(bundle, "supervisor.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
    )
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        # Not atomic: nobody reads it before container.json exists.
        config_fd = os.open(
            os.path.join(bundle, "config.json"),
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
            0o600,
        )
        try:
            data = prep.config.encode()
            while data:
                data = data[os.write(config_fd, data) :]
        finally:
            os.close(config_fd)
        from .records import now

        doc = statefiles.container_json(prep, opts, name, now())
        statefiles.write_json(os.path.join(bundle, "container.json"), doc)
    except OSError as err:
        os.close(fd)
        raise UserError(f"cannot write the state of {bundle}: {err.strerror or err}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Registration:
    """The foreground container's state.json: ``running`` with its pid once
    it started (:meth:`on_start`), ``exited`` with its status at the end
    (:meth:`finish`)."""

    __slots__ = ("bundle", "state")

    def __init__(self, bundle: str) -> None:
        self.bundle = bundle
        self.state: dict[str, Any] | None = None

    def on_start(self, pid: int) -> None:
        from . import statefiles
        from .records import now, pid_start_time

        self.state = statefiles.running_state(pid, pid_start_time(pid), now())
        try:
            statefiles.write_json(os.path.join(self.bundle, "state.json"), self.state)
        except OSError:
            self.state = None  # the container runs regardless; ps reports it as created

    def finish(self, status: int) -> None:
        """Record the end in place (same inode: a ``wait`` that opened the
        file before the directory goes can still read it)."""
        if self.state is None:
            return
        from . import compact_json
        from .records import now

        self.state.update(Status="exited", Pid=0, ExitCode=status, FinishedAt=now())
        try:
            fd = os.open(os.path.join(self.bundle, "state.json"), os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            data = compact_json.dumps(self.state).encode()
            # Padded with JSON whitespace rather than truncated: a truncate
            # makes the later unlink cost a synchronous orphan-list update.
            data += b" " * (os.fstat(fd).st_size - len(data))
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            pass
        finally:
            os.close(fd)


def run_container(
    opts: RunOptions,
    *,
    root: str | None = None,
    forward_signals: bool = False,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run a container in the foreground, in-process, and return its Docker
    status; its state is removed afterwards whatever ``opts.remove`` says.

    While it runs it is registered under ``<root>/containers/<id>/`` (so
    ``ps``, ``exec``, ``stop`` see it) and its name is reserved.
    Raises :class:`UserError` for invalid options and ``ContainerError`` when
    the container cannot be started.
    """
    require_root()
    check_native()
    from . import _native
    from .network import is_bridged
    from .spec import new_container_id

    state_root = resolve_root(root, environ)
    cid = new_container_id()
    from .records import release_name

    prep = prepare(opts, state_root, cid, environ=environ, volatile=True)
    try:
        # A short link: releasing a long one costs milliseconds on this path.
        name = claim_name(state_root, opts.name, cid, short=True)
        try:
            lock = _register(prep, opts, name)
        except BaseException:
            release_name(state_root, name, cid)
            raise
    except BaseException:
        remove_dir(prep.bundle)
        raise
    trace.mark("python: container registered")
    reg = _Registration(prep.bundle)
    plan = None
    try:
        if is_bridged(opts.network):
            _attach_network(prep, opts, state_root, name, environ)
        extra: dict[str, Any] = {}
        if prep.overlay is not None:
            extra["overlay"] = prep.overlay
        if "cgroupsPath" in prep.spec["linux"]:
            plan = _foreground_cgroup(prep)
            extra["cgroup_procs"] = plan.procs
        status = _native.run(
            prep.config,
            prep.bundle,
            stdin=opts.interactive,
            forward_signals=forward_signals,
            on_start=reg.on_start,
            **extra,
        )
        reg.finish(status)
        return status
    finally:
        trace.mark("python: container exited")
        # Let go of supervisor.lock before its file is unlinked: closing the
        # last descriptor of an unlinked file costs milliseconds here (ext4
        # orphan handling), and waiters then read the final state.
        os.close(lock)
        if is_bridged(opts.network):
            # The container is dead: its veth pairs go with its namespace,
            # without the ~20 ms a deletion waits for on the way out.
            _detach_network(prep.bundle, lazy=True)
            trace.mark("python: network detached")
        if plan is not None:
            from . import cgroups

            try:
                cgroups.remove(plan)
            except UserError as err:
                print(f"pyctr-fast: {err}", file=sys.stderr)
        remove_dir(prep.bundle)
        release_name(state_root, name, cid)
        trace.mark("python: container dir removed")


def _attach_network(
    prep: Prepared,
    opts: RunOptions,
    state_root: str,
    name: str,
    environ: Mapping[str, str] | None,
) -> None:
    """The bridge endpoint of a foreground container (see :mod:`pyctr_fast.network`)."""
    from .network import attach, resolve

    publish = None
    if opts.publish or opts.publish_all:
        from .netopts import effective_bindings, exposed_ports

        cfg = prep.image.container_config if prep.image is not None else {}
        publish = effective_bindings(opts, exposed_ports(opts, cfg))
    netns = next(ns["path"] for ns in prep.spec["linux"]["namespaces"] if ns["type"] == "network")
    hostname = prep.spec.get("hostname")
    record = attach(
        prep.cid,
        prep.bundle,
        netns,
        net=resolve(opts.network, state_root, environ),
        hostname=hostname,
        publish=publish,
        environ=environ,
        names=[name, prep.cid[:12]],
        aliases=opts.network_aliases,
        ip=opts.ip,
        mac=opts.mac_address,
    )
    if opts.extra_hosts:
        from .netopts import resolve_host_gateway

        resolve_host_gateway(prep.bundle, str(record["gateway"]))
    trace.mark("python: network attached")


def _detach_network(bundle: str, lazy: bool = False) -> None:
    from .network import detach

    try:
        detach(bundle, lazy=lazy)
    except UserError as err:
        print(f"pyctr-fast: {err}", file=sys.stderr)


def _foreground_cgroup(prep: Prepared) -> CgroupPlan:
    """Make the cgroup of a foreground container that has limits (see
    :meth:`RunOptions.wants_cgroup`), with its limits written, and record it
    in launch.json so that ``pause``, ``stats`` and ``exec`` find it."""
    from . import cgroups, statefiles

    plan = cgroups.plan_for_spec(prep.spec)
    assert plan is not None  # the caller checked linux.cgroupsPath
    resources = prep.spec["linux"].get("resources")
    cgroups.create_plan(plan, compact_json.dumps(resources) if resources else "")
    try:
        doc = {"id": prep.cid, **statefiles.cgroup_fields(plan)}
        statefiles.write_json(os.path.join(prep.bundle, "launch.json"), doc)
    except OSError as err:
        cgroups.remove(plan)
        raise UserError(f"cannot write the state of {prep.bundle}: {err.strerror or err}") from None
    trace.mark("python: cgroup made")
    return plan


def run_from_cli(opts: RunOptions, root: str | None) -> int:
    """``pyctr-fast run``: ``-d`` creates and starts the container under a
    detached supervisor and prints its id; ``--rm`` runs it in the foreground
    in-process (:func:`run_container`); otherwise it is created and started
    attached, and stays (exited) afterwards, as with Docker.  Signals are
    forwarded; a failure to start is reported as ``pyctr-fast: <error>``
    with Docker's exit status."""
    require_root()
    check_native()
    from ._native import ContainerError

    try:
        if opts.detach:
            from . import lifecycle

            rec = lifecycle.run_detached(opts, root=root)
            sys.stdout.write(rec.id + "\n")
            sys.stdout.flush()
            return 0
        if not opts.remove:
            from . import lifecycle

            return lifecycle.run_attached(opts, root=root, forward_signals=True)
        return run_container(opts, root=root, forward_signals=True)
    except ContainerError as err:
        print(f"pyctr-fast: {err}", file=sys.stderr, flush=True)
        return exit_code_for(err)
