"""``docker cp``: copies between a container and the host, or a tar stream.

A copy is a stream of :class:`~pyctr_fast.treecopy.Entry` objects (tar's
model) from a *source* (a tree in a container view, a host tree, or a tar read
from stdin) to a *sink* (a directory, or a tar written to stdout); see
:mod:`pyctr_fast.treecopy`.  This module decides what goes where.  The
container side is always reached through :mod:`pyctr_fast.containerfs`: a
running container through
``/proc/<pid>/root`` with fd-relative, no-follow calls; a stopped image
container through its upper dir and image layers (written into the upper dir,
with the container's ``lock`` held); a stopped ``--rootfs`` container through
its rootfs directory.  Container paths are resolved inside the container's
root, so no symlink can lead a copy out of it.

Docker's rules: a file to a missing path creates it (its parent must exist), to
a file overwrites it, to a directory lands inside it; a directory to a missing
path creates it, into a directory lands inside it (``SRC/.``: its contents); a
directory never replaces a file nor a file a directory.  Without ``-a`` what
is written into a container belongs to root and what is written on the host to
the caller; with ``-a`` owners are kept.  ``-L`` follows a symlink named by
the source path.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys

from . import containerfs as cfs
from .errors import UserError
from .treecopy import DirWriter, Entry, Target, fail, os_fail, tar_entries, tree_entries, write_tar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any, BinaryIO

    from .records import Record

__all__ = ["Entry", "copy", "split_arg"]

# --------------------------------------------------------------------------- containers


class _Side:
    """A container's file system opened for one copy."""

    def __init__(self, view: cfs.Dir, upper: str | None, lock_fd: int | None) -> None:
        self.view = view
        self.upper = upper
        self.lock_fd = lock_fd

    def close(self) -> None:
        self.view.close()
        if self.lock_fd is not None:
            os.close(self.lock_fd)


def _open_container(rec: Record, *, write: bool) -> _Side:
    """The live root of a running container, else its layered (or rootfs)
    view; for a write to a stopped container, its ``lock`` is held."""
    import json

    lock_fd = None
    if write:
        lock_fd = os.open(rec.path("lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        state = rec.state()
        pid = int(state.get("Pid") or 0)
        try:
            with open(rec.path("config.json"), encoding="utf-8") as f:
                spec: dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            spec = {}
        if write and (spec.get("root") or {}).get("readonly"):
            raise fail("container rootfs is marked read-only")
        if state.get("Running") and pid > 0:
            view = cfs.FdDir.open(f"/proc/{pid}/root")
            if not rec.pid_alive():
                view.close()
                raise fail(f"container {rec.id} stopped while being opened")
            if lock_fd is not None:
                os.close(lock_fd)
            return _Side(view, None, None)
        try:
            with open(rec.path("launch.json"), encoding="utf-8") as f:
                launch: dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            launch = {}
        overlay = launch.get("overlay")
        if overlay:
            layers = [str(overlay["upper"]), *[str(x) for x in overlay.get("lower") or []]]
            return _Side(cfs.LayeredDir(layers), layers[0], lock_fd)
        rootfs = (spec.get("root") or {}).get("path")
        if not rootfs:
            raise fail(f"container {rec.id} has no root filesystem recorded")
        if not os.path.isabs(rootfs):
            rootfs = rec.path(rootfs)
        return _Side(cfs.FdDir.open(rootfs), None, lock_fd)
    except BaseException:
        if lock_fd is not None:
            try:
                os.close(lock_fd)
            except OSError:
                pass
        raise


def split_arg(arg: str) -> tuple[str | None, str]:
    """Docker's ``CONTAINER:PATH`` rule: ``(container, path)``; a local path
    (absolute, ``./x:y``, or without ``:``) gives ``(None, arg)``."""
    if arg.startswith("/"):
        return None, arg
    name, sep, path = arg.partition(":")
    if not sep or name.startswith("."):
        return None, arg
    return name, path


def _name_of(path: str) -> str | None:
    """The source's own name (None: copy its contents, for ``/`` and ``X/.``)."""
    if path.endswith("/.") or path == ".":
        return None
    comps = [c for c in path.split("/") if c and c != "."]
    if not comps or comps[-1] == "..":
        return None
    return comps[-1]


class _Source:
    """What is copied: ``(parent, name)`` in a view, its kind, its own name."""

    def __init__(self, parent: cfs.Dir, name: str | None, kind: str, own: str | None) -> None:
        self.parent = parent
        self.name = name
        self.kind = kind
        self.own = own

    def entries(self, parts: tuple[str, ...]) -> Iterator[Entry]:
        return tree_entries(self.parent, self.name, parts)


def _find_source(root: cfs.Dir, path: str, follow: bool, shown: str, missing: str) -> _Source:
    """The source ``path`` in ``root``; ``missing`` is the error when it does not exist."""
    trailing = path.endswith("/") or path.endswith("/.")
    try:
        parent, name, _ = cfs.resolve(root, path, follow_last=follow or trailing)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            raise fail(missing) from None
        raise os_fail(err, "cannot resolve") from None
    kind = "dir"
    if name is not None:
        node = parent.lookup(name)
        if node is None:
            if parent is not root:
                parent.close()
            raise fail(missing)
        kind = node.kind
    if trailing and kind != "dir":
        if parent is not root:
            parent.close()
        raise fail(f"not a directory: {shown}")
    return _Source(parent, name, kind, _name_of(path))


def _plan(src: _Source, dst_kind: str | None, dst_trailing: bool, shown: str) -> str:
    """Docker's rules: "into" (land inside the destination directory),
    "contents" (the source directory's contents into it) or "as" (become the
    destination path)."""
    if dst_kind == "dir":
        return "contents" if src.kind == "dir" and src.own is None else "into"
    if dst_kind is not None:
        if dst_trailing:
            raise fail(f"not a directory: {shown}")
        if src.kind == "dir":
            raise fail(f'cannot copy a directory to a file: "{shown}" is not a directory')
        return "as"
    if dst_trailing and src.kind != "dir":
        raise fail(f"no such directory: {shown}")
    return "as"


# --------------------------------------------------------------------------- cp


def copy(
    root: str,
    src: str,
    dst: str,
    *,
    archive: bool = False,
    follow_link: bool = False,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> None:
    """``docker cp SRC DST`` with ``root`` as the engine's data root."""
    from .records import resolve

    if src == "-" and dst == "-":
        raise fail("must specify at least one container source")
    src_ctr, src_path = split_arg(src) if src != "-" else (None, "-")
    dst_ctr, dst_path = split_arg(dst) if dst != "-" else (None, "-")
    if src_ctr is not None and dst_ctr is not None:
        raise fail("copying between containers is not supported")
    if src_ctr is None and dst_ctr is None:
        raise fail("must specify at least one container source")
    try:
        if src_ctr is not None:
            rec = resolve(root, src_ctr)
            _from_container(rec, src_path, src, dst_path, archive, follow_link, stdout)
        else:
            assert dst_ctr is not None
            rec = resolve(root, dst_ctr)
            _to_container(rec, src_path, dst_path, dst, archive, follow_link, stdin)
    except OSError as err:
        raise os_fail(err, "cp") from None


def _from_container(
    rec: Record,
    path: str,
    shown: str,
    dst: str,
    archive: bool,
    follow: bool,
    stdout: BinaryIO | None,
) -> None:
    side = _open_container(rec, write=False)
    try:
        source = _find_source(
            side.view, "/" + path.lstrip("/"), follow, shown, f"No such container:path: {shown}"
        )
        try:
            own = source.own or "."
            if dst == "-":
                out = stdout if stdout is not None else sys.stdout.buffer
                parts = (own,) if source.own is not None else ()
                write_tar(source.entries(parts), out)
                out.flush()
                return
            _write_host(source, dst, archive)
        finally:
            if source.parent is not side.view:
                source.parent.close()
    finally:
        side.close()


def _write_host(source: _Source, dst: str, archive: bool) -> None:
    trailing = dst.endswith("/")
    try:
        st: os.stat_result | None = os.stat(dst)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise fail(f"not a directory: {dst}") from None
    kind = None if st is None else ("dir" if stat.S_ISDIR(st.st_mode) else "file")
    how = _plan(source, kind, trailing, dst)
    owner = None if archive else (os.getuid(), os.getgid())
    parts: tuple[str, ...]
    if how == "as":
        parent_path = os.path.dirname(os.path.abspath(dst.rstrip("/") or "/"))
        name = os.path.basename(dst.rstrip("/"))
        if not os.path.isdir(parent_path):
            raise fail(f"no such directory: {parent_path}")
        base, parts = parent_path, (name,)
    elif how == "into":
        base, parts = dst, (source.own or "",)
    else:
        base, parts = dst, ()
    target = Target(os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    try:
        DirWriter(target, owner, base).write(source.entries(parts))
    finally:
        target.close()


def _to_container(
    rec: Record,
    src: str,
    path: str,
    shown: str,
    archive: bool,
    follow: bool,
    stdin: BinaryIO | None,
) -> None:
    path = "/" + path.lstrip("/")
    host_root: cfs.FdDir | None = None
    source: _Source | None = None
    if src != "-":
        host_root = cfs.open_root("/")
        abs_src = os.path.abspath(src)
        if src.endswith("/."):
            abs_src += "/."
        elif src.endswith("/") and abs_src != "/":
            abs_src += "/"
        try:
            source = _find_source(
                host_root, abs_src, follow, src, f"lstat {abs_src}: no such file or directory"
            )
        except UserError:
            host_root.close()
            raise
    try:
        side = _open_container(rec, write=True)
        try:
            _write_container(side, source, path, shown, archive, stdin)
        finally:
            side.close()
    finally:
        if source is not None and source.parent is not host_root:
            source.parent.close()
        if host_root is not None:
            host_root.close()


def _write_container(
    side: _Side,
    source: _Source | None,
    path: str,
    shown: str,
    archive: bool,
    stdin: BinaryIO | None,
) -> None:
    try:
        parent, name, canon = cfs.resolve(side.view, path, follow_last=True)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            raise fail(f"No such container:path: {shown}") from None
        raise
    try:
        kind: str | None = "dir"
        parts: tuple[str, ...] | None
        if name is not None:
            node = parent.lookup(name)
            kind = None if node is None else node.kind
        if source is None:  # a tar stream: the destination must be a directory
            if kind != "dir":
                raise fail(f'destination "{shown}" must be a directory')
            base_parts, parts = canon, None
        else:
            how = _plan(source, kind, path.endswith("/"), shown)
            if how == "as":
                base_parts, parts = canon[:-1], (canon[-1],)
            elif how == "into":
                base_parts, parts = canon, (source.own or "",)
            else:
                base_parts, parts = canon, ()
        target = _container_target(side, base_parts)
        try:
            owner = None if archive else (0, 0)
            if source is None:
                stream = stdin if stdin is not None else sys.stdin.buffer
                entries: Iterable[Entry] = tar_entries(stream)
            else:
                assert parts is not None
                entries = source.entries(parts)
            DirWriter(target, owner, shown).write(entries)
        finally:
            target.close()
    finally:
        if parent is not side.view:
            parent.close()


def _container_target(side: _Side, parts: list[str]) -> Target:
    """The directory ``parts`` (canonical) of the container, opened for writing."""
    if side.upper is not None:
        upper = cfs.UpperDir.materialize(side.view, side.upper, parts)
        return Target(upper.fd, upper.merged)
    parent, name, _ = cfs.resolve(side.view, "/".join(parts), follow_last=False)
    try:
        if name is None:
            fd = os.open(".", cfs.DIR_FLAGS, dir_fd=_fd_of(parent))
        else:
            fd = os.open(name, cfs.DIR_FLAGS, dir_fd=_fd_of(parent))
    finally:
        if parent is not side.view:
            parent.close()
    return Target(fd)


def _fd_of(d: cfs.Dir) -> int:
    assert isinstance(d, cfs.FdDir)
    return d.fd
