"""A container's file system, seen safely from the host (for ``cp``).

Two views share one small interface (:class:`Dir` / :class:`Node`):

* :class:`FdDir`: a directory reached through file descriptors, for a running
  container (``/proc/<pid>/root``, which sees the container's own mounts) or a
  plain directory (a stopped ``--rootfs`` container, a host directory).  Every
  step is an ``*at`` call on a directory fd with ``O_NOFOLLOW``: a symlink is
  never followed by the kernel, only by :func:`resolve`, which interprets it
  inside the root;
* :class:`LayeredDir`: the overlay of a stopped image container computed
  without mounting: its upper dir over the image layers (top-most first),
  with overlayfs' whiteouts (0:0 character devices) and opaque directories.

:func:`resolve` walks a path as ``openat2(RESOLVE_IN_ROOT)`` does: ``..``
never climbs above the root and an absolute symlink restarts at the root, so
``/etc/evil -> /`` or ``../../..`` cannot lead out of the container.
:class:`UpperDir` writes into a stopped container's upper dir so that the
merged view shows the result (a whiteout replaced by a directory makes it
opaque).
"""

from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = [
    "DIR_FLAGS",
    "Dir",
    "FdDir",
    "LayeredDir",
    "Node",
    "UpperDir",
    "open_root",
    "resolve",
]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_LINKS = 40
OPAQUE_XATTR = "trusted.overlay.opaque"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


class Node:
    """One object found in a directory: its name, ``lstat`` result and kind
    (``dir``, ``file``, ``symlink`` or ``other``)."""

    def __init__(self, parent: Dir, name: str, st: os.stat_result) -> None:
        self.parent = parent
        self.name = name
        self.st = st
        self.kind = _kind(st.st_mode)

    def open_dir(self) -> Dir:
        return self.parent.open_dir(self)

    def open_file(self) -> BinaryIO:
        return self.parent.open_file(self)

    def readlink(self) -> str:
        return self.parent.readlink(self)


class LayeredNode(Node):
    """A node of a :class:`LayeredDir`: ``path`` is its host path in the
    top-most layer holding it, ``subs`` (directories) the same directory in
    every layer that contributes to it."""

    def __init__(
        self, parent: Dir, name: str, st: os.stat_result, path: str, subs: list[str]
    ) -> None:
        super().__init__(parent, name, st)
        self.path = path
        self.subs = subs


class Dir:
    """A directory of a view."""

    def lookup(self, name: str) -> Node | None:
        raise NotImplementedError

    def names(self) -> list[str]:
        raise NotImplementedError

    def open_dir(self, node: Node) -> Dir:
        raise NotImplementedError

    def open_file(self, node: Node) -> BinaryIO:
        raise NotImplementedError

    def readlink(self, node: Node) -> str:
        raise NotImplementedError

    def stat(self) -> os.stat_result:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FdDir(Dir):
    """A directory held open by fd; lookups never follow symlinks."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, path: str, *, follow: bool = True) -> FdDir:
        flags = DIR_FLAGS if not follow else DIR_FLAGS & ~os.O_NOFOLLOW
        return cls(os.open(path, flags))

    def lookup(self, name: str) -> Node | None:
        try:
            return Node(self, name, os.stat(name, dir_fd=self.fd, follow_symlinks=False))
        except FileNotFoundError:
            return None

    def names(self) -> list[str]:
        return sorted(os.listdir(self.fd))

    def open_dir(self, node: Node) -> FdDir:
        return FdDir(os.open(node.name, DIR_FLAGS, dir_fd=self.fd))

    def open_file(self, node: Node) -> BinaryIO:
        return _open_regular(node.name, node.name, self.fd)

    def readlink(self, node: Node) -> str:
        return os.readlink(node.name, dir_fd=self.fd)

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _open_regular(path: str, name: str, dir_fd: int | None = None) -> BinaryIO:
    """``path`` (``name`` in errors) opened for reading with FILE_FLAGS (a
    last-component symlink or a FIFO is not followed or waited on), then made
    blocking; EINVAL when it is not a regular file (any more)."""
    fd = os.open(path, FILE_FLAGS, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "changed while being copied", name)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


class LayeredDir(Dir):
    """A directory of an unmounted overlay: the same directory in each layer
    that contributes to it (top-most first; a lower layer stops contributing
    below an opaque directory, a whiteout or a non-directory).  ``layers`` are
    host paths of real directories, never symlinks."""

    def __init__(self, layers: list[str]) -> None:
        self.layers = layers

    def _find(self, name: str) -> tuple[str, os.stat_result, list[str]] | None:
        for i, layer in enumerate(self.layers):
            path = os.path.join(layer, name)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if _is_whiteout(st):
                return None
            if not stat.S_ISDIR(st.st_mode):
                return path, st, []
            subs = [path]
            if not _opaque(path):
                for lower in self.layers[i + 1 :]:
                    below = os.path.join(lower, name)
                    try:
                        bst = os.lstat(below)
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    if not stat.S_ISDIR(bst.st_mode):
                        break
                    subs.append(below)
                    if _opaque(below):
                        break
            return path, st, subs
        return None

    def lookup(self, name: str) -> Node | None:
        found = self._find(name)
        if found is None:
            return None
        return LayeredNode(self, name, found[1], found[0], found[2])

    def names(self) -> list[str]:
        seen: set[str] = set()
        for layer in self.layers:
            try:
                seen.update(os.listdir(layer))
            except OSError:
                continue
        return sorted(n for n in seen if self._find(n) is not None)

    def open_dir(self, node: Node) -> LayeredDir:
        assert isinstance(node, LayeredNode)
        return LayeredDir(list(node.subs))

    def open_file(self, node: Node) -> BinaryIO:
        assert isinstance(node, LayeredNode)
        return _open_regular(node.path, node.name)

    def readlink(self, node: Node) -> str:
        assert isinstance(node, LayeredNode)
        return os.readlink(node.path)

    def stat(self) -> os.stat_result:
        return os.lstat(self.layers[0])


def resolve(root: Dir, path: str, *, follow_last: bool) -> tuple[Dir, str | None, list[str]]:
    """Walk ``path`` inside ``root`` as if ``root`` were ``/``.

    Returns ``(parent, name, parts)``: the directory holding the last
    component (opened here: the caller closes it unless it is ``root``), that
    component's name (None when the path names a directory itself, e.g. ``/``
    or ``a/..``) and the canonical path from the root as a list.  The last
    component may not exist; a missing or non-directory parent raises
    ``OSError`` (ENOENT, ENOTDIR), too many symlinks ELOOP."""
    stack: list[Dir] = [root]
    canon: list[str] = []
    todo = [c for c in path.split("/") if c and c != "."]
    links = 0

    def pop_to_root() -> None:
        while len(stack) > 1:
            stack.pop().close()
        canon.clear()

    def take() -> Dir:
        return stack.pop() if len(stack) > 1 else root

    try:
        while todo:
            comp = todo.pop(0)
            if comp == "..":
                if len(stack) > 1:
                    stack.pop().close()
                    canon.pop()
                continue
            last = not todo
            if last and not follow_last:
                return take(), comp, [*canon, comp]
            node = stack[-1].lookup(comp)
            if node is None:
                if last:
                    return take(), comp, [*canon, comp]
                raise OSError(
                    errno.ENOENT, os.strerror(errno.ENOENT), "/" + "/".join([*canon, comp])
                )
            if node.kind == "symlink":
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/" + "/".join(canon))
                target = node.readlink()
                if target.startswith("/"):
                    pop_to_root()
                todo = [c for c in target.split("/") if c and c != "."] + todo
                continue
            if last:
                return take(), comp, [*canon, comp]
            if node.kind != "dir":
                raise OSError(
                    errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/" + "/".join([*canon, comp])
                )
            stack.append(node.open_dir())
            canon.append(comp)
        return take(), None, canon
    finally:
        for d in stack[1:]:
            d.close()


def open_root(path: str) -> FdDir:
    """The directory ``path`` (the caller's own path resolution) as a root."""
    return FdDir.open(path, follow=True)


class UpperDir:
    """Where a copy into a stopped image container is written: ``merged`` is
    the directory in the container's overlay view, ``fd`` the same directory
    in its upper dir (created as needed by :meth:`materialize`)."""

    def __init__(self, merged: Dir, fd: int) -> None:
        self.merged = merged
        self.fd = fd

    @classmethod
    def materialize(cls, view: Dir, upper: str, parts: list[str]) -> UpperDir:
        """The directory ``parts`` (canonical, from :func:`resolve` on ``view``)
        in the upper dir, created like overlayfs' copy-up (mode and owner of
        the merged directory) where it is missing."""
        fd = os.open(upper, DIR_FLAGS)
        merged: Dir = view
        try:
            for name in parts:
                node = merged.lookup(name)
                if node is None or node.kind != "dir":
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), name)
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    os.mkdir(name, 0o700, dir_fd=fd)
                    st = None
                if st is not None and not stat.S_ISDIR(st.st_mode):
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), name)
                sub = os.open(name, DIR_FLAGS, dir_fd=fd)
                if st is None:
                    os.fchown(sub, node.st.st_uid, node.st.st_gid)
                    os.fchmod(sub, stat.S_IMODE(node.st.st_mode))
                os.close(fd)
                fd = sub
                merged = node.open_dir()
            return cls(merged, fd)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
