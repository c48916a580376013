"""The ``run`` path: state directory, /etc files, spec, native run, clean-up.

A container lives in ``<root>/containers/<id>/`` while it runs: that directory
is the OCI bundle and holds the engine's /etc files.  It is always removed
afterwards (as is ``<root>/containers`` when that leaves it empty): nothing
stays under the root once ``run`` returns, whatever happened.
"""

from __future__ import annotations

import errno
import os
import sys

from . import compact_json, etcfiles, trace
from .errors import UserError
from .spec import RunOptions, build_spec, new_container_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._native import ContainerError, Overlay

__all__ = [
    "DEFAULT_ROOT",
    "ROOT_ENV",
    "container_dir",
    "exit_code_for",
    "require_root",
    "resolve_root",
    "run_container",
    "run_from_cli",
]

DEFAULT_ROOT = "/var/lib/pyctr-fast"
ROOT_ENV = "PYCTR_ROOT"

NEEDS_ROOT = (
    "run needs root (CAP_SYS_ADMIN to create namespaces and mounts); run it as root or with sudo"
)


def resolve_root(root: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``root``, else $PYCTR_ROOT, else /var/lib/pyctr-fast; made absolute."""
    if environ is None:
        environ = os.environ
    chosen = root or environ.get(ROOT_ENV) or DEFAULT_ROOT
    return os.path.abspath(chosen)


def container_dir(root: str, container_id: str) -> str:
    return os.path.join(root, "containers", container_id)


_CAP_SYS_ADMIN = 21


def _has_cap_sys_admin() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("CapEff:"):
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


def _check_native() -> None:
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
    for _ in range(5):
        try:
            os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
            os.mkdir(path, 0o700)
            return
        except FileNotFoundError:
            continue
        except OSError as err:
            raise UserError(f"cannot create {path}: {err.strerror or err}") from None
    raise UserError(f"cannot create {path}: its parent keeps disappearing")


def _remove_tree(path: str) -> None:
    with os.scandir(path) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _remove_tree(entry.path)
        else:
            os.unlink(entry.path)
    os.rmdir(path)


def _remove_dir(path: str) -> None:
    """Remove a container's directory, then ``containers/`` if that is now empty.
    A failure is reported, not raised: it must not hide the container's status."""
    try:
        _remove_tree(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        sys.stderr.write(f"pyctr-fast: warning: cannot remove {path}: {err.strerror or err}\n")
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass  # not empty: other containers are running


def run_container(
    opts: RunOptions,
    *,
    root: str | None = None,
    forward_signals: bool = False,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run a container in the foreground and return its Docker status.

    Raises :class:`UserError` for invalid options and ``ContainerError`` when
    the container cannot be started.
    """
    require_root()
    _check_native()
    from . import _native

    state_root = resolve_root(root, environ)
    cid = new_container_id()
    bundle = container_dir(state_root, cid)
    if opts.image is not None:
        return _run_image(opts, state_root, cid, bundle, forward_signals, environ)
    spec = build_spec(opts, container_id=cid, container_dir=bundle, environ=environ)
    config = compact_json.dumps(spec)
    trace.mark("python: spec built")
    _make_dir(bundle)
    try:
        etcfiles.write_etc_files(bundle, spec["hostname"], opts.network)
        trace.mark("python: container dir and /etc files written")
        return _native.run(config, bundle, stdin=opts.interactive, forward_signals=forward_signals)
    finally:
        trace.mark("python: container exited")
        _remove_dir(bundle)
        trace.mark("python: container dir removed")


def _run_image(
    opts: RunOptions,
    state_root: str,
    cid: str,
    bundle: str,
    forward_signals: bool,
    environ: Mapping[str, str] | None,
) -> int:
    """Run on an overlay of the image's layers: ``<bundle>/rootfs`` is the
    mount point, ``upper/`` and ``work/`` the container's copy-on-write layer;
    ``<bundle>/image`` records the image id (``rmi`` refuses images in use)."""
    from . import _native
    from .image_run import ImageRun
    from .store import Store

    store = Store(state_root)
    # Shared store lock: rmi/prune cannot remove the image between the lookup
    # and the moment <bundle>/image says it is in use.
    with store.shared():
        image = ImageRun.find(store, opts)
        spec = build_spec(
            opts, container_id=cid, container_dir=bundle, environ=environ, image=image
        )
        config = compact_json.dumps(spec)
        _make_dir(bundle)
        try:
            for sub in ("rootfs", "upper", "work"):
                os.mkdir(os.path.join(bundle, sub), 0o755)
            with open(os.path.join(bundle, "image"), "w", encoding="ascii") as f:
                f.write(image.image_id + "\n")
        except OSError as err:
            _remove_dir(bundle)
            raise UserError(f"cannot prepare {bundle}: {err.strerror or err}") from None
        except BaseException:
            _remove_dir(bundle)
            raise
    overlay: Overlay = {
        "lower": image.layer_dirs,
        "upper": os.path.join(bundle, "upper"),
        "work": os.path.join(bundle, "work"),
        "volatile": opts.remove,
    }
    trace.mark("python: image resolved, spec built, container dir made")
    try:
        etcfiles.write_etc_files(bundle, spec["hostname"], opts.network)
        return _native.run(
            config,
            bundle,
            stdin=opts.interactive,
            forward_signals=forward_signals,
            overlay=overlay,
        )
    finally:
        trace.mark("python: container exited")
        _remove_dir(bundle)
        trace.mark("python: container dir removed")


def run_from_cli(opts: RunOptions, root: str | None) -> int:
    """:func:`run_container` for the CLI: signals forwarded, a failure to start
    reported as ``pyctr-fast: <error>`` with Docker's exit status."""
    require_root()
    _check_native()
    from ._native import ContainerError

    try:
        return run_container(opts, root=root, forward_signals=True)
    except ContainerError as err:
        print(f"pyctr-fast: {err}", file=sys.stderr, flush=True)
        return exit_code_for(err)
