"""The entries of a copy, where they come from and where they go (for ``cp``).

A copy is a stream of :class:`Entry` objects, tar's model (path parts, kind,
mode, owner, time, data).  Sources: :func:`tree_entries` (a tree in a
:mod:`~pyctr_fast.containerfs` view) and :func:`tar_entries` (a tar read
from a stream).  Sinks: :func:`write_tar` and :class:`DirWriter`, which
creates entries below a directory fd with ``*at`` calls that never follow a
symlink (and, for a stopped image container, writes into its upper dir so that
the overlay shows the result: a whiteout replaced by a directory makes it
opaque, a directory of a lower layer is copied up with its owner and mode).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile

from . import containerfs as cfs
from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import BinaryIO

__all__ = [
    "DirWriter",
    "Entry",
    "Target",
    "fail",
    "os_fail",
    "tar_entries",
    "tree_entries",
    "write_tar",
]

_KINDS = {
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
}


def fail(message: str) -> UserError:
    return UserError(message, exit_code=1)


def os_fail(err: OSError, what: str) -> UserError:
    where = f" {err.filename}" if err.filename else ""
    return fail(f"{what}{where}: {err.strerror or err}")


class Entry:
    """One object of a copy; ``parts`` is its path below the destination
    directory (``()``: the destination itself, when copying contents)."""

    __slots__ = (
        "gid",
        "kind",
        "link",
        "mode",
        "mtime_ns",
        "opener",
        "parts",
        "rdev",
        "size",
        "uid",
    )

    def __init__(self, parts: tuple[str, ...], kind: str, st: os.stat_result | None = None) -> None:
        self.parts = parts
        self.kind = kind
        self.mode = stat.S_IMODE(st.st_mode) if st is not None else 0o755
        self.uid = st.st_uid if st is not None else 0
        self.gid = st.st_gid if st is not None else 0
        self.mtime_ns = st.st_mtime_ns if st is not None else 0
        self.size = st.st_size if st is not None and kind == "file" else 0
        self.rdev = st.st_rdev if st is not None else 0
        self.link = ""
        self.opener: Callable[[], BinaryIO] | None = None


# --------------------------------------------------------------------------- sources


def _node_entries(
    node: cfs.Node, parts: tuple[str, ...], links: dict[tuple[int, int], str]
) -> Iterator[Entry]:
    st = node.st
    if node.kind == "dir":
        yield Entry(parts, "dir", st)
        yield from _contents(node, parts, links)
        return
    if node.kind == "symlink":
        entry = Entry(parts, "symlink", st)
        entry.link = node.readlink()
        yield entry
        return
    if node.kind == "file":
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            entry = Entry(parts, "hardlink", st)
            entry.link = links[key]
            yield entry
            return
        if st.st_nlink > 1:
            links[key] = "/".join(parts)
        entry = Entry(parts, "file", st)
        entry.opener = node.open_file
        yield entry
        return
    kind = _KINDS.get(stat.S_IFMT(st.st_mode))
    if kind is not None:  # sockets cannot be copied (tar has no type for them)
        yield Entry(parts, kind, st)


def _dir_entries(
    d: cfs.Dir, parts: tuple[str, ...], links: dict[tuple[int, int], str]
) -> Iterator[Entry]:
    for name in d.names():
        child = d.lookup(name)
        if child is not None:
            yield from _node_entries(child, (*parts, name), links)


def _contents(
    node: cfs.Node, parts: tuple[str, ...], links: dict[tuple[int, int], str]
) -> Iterator[Entry]:
    """What directory ``node`` holds, under ``parts``."""
    sub = node.open_dir()
    try:
        yield from _dir_entries(sub, parts, links)
    finally:
        sub.close()


def tree_entries(parent: cfs.Dir, name: str | None, parts: tuple[str, ...]) -> Iterator[Entry]:
    """The tree at ``name`` in ``parent`` (``None``: ``parent`` itself) as entries
    under ``parts`` (``()`` for a directory's contents only)."""
    links: dict[tuple[int, int], str] = {}
    if name is None:
        if parts:
            yield Entry(parts, "dir", parent.stat())
        yield from _dir_entries(parent, parts, links)
        return
    node = parent.lookup(name)
    if node is None:
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    if not parts:
        yield from _contents(node, parts, links)
        return
    yield from _node_entries(node, parts, links)


def _archive_parts(name: str) -> tuple[str, ...]:
    parts = tuple(p for p in name.split("/") if p and p != ".")
    if ".." in parts:
        raise fail(f'invalid path in archive: {name!r} (".." is not allowed)')
    return parts


#: An archive member's kind (as :class:`Entry` names it), by TarInfo test.
_MEMBER_KINDS: tuple[tuple[Callable[[tarfile.TarInfo], bool], str], ...] = (
    (tarfile.TarInfo.isdir, "dir"),
    (tarfile.TarInfo.isreg, "file"),
    (tarfile.TarInfo.issym, "symlink"),
    (tarfile.TarInfo.islnk, "hardlink"),
    (tarfile.TarInfo.isfifo, "fifo"),
    (tarfile.TarInfo.ischr, "char"),
    (tarfile.TarInfo.isblk, "block"),
)


def tar_entries(stream: BinaryIO) -> Iterator[Entry]:
    """The members of a tar read from ``stream`` (any compression tarfile knows)."""
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")
    except tarfile.TarError as err:
        raise fail(f"cannot read the archive: {err}") from None
    with tar:
        try:
            for member in tar:
                parts = _archive_parts(member.name)
                kind = next((k for is_kind, k in _MEMBER_KINDS if is_kind(member)), None)
                if kind is None:
                    continue
                entry = Entry(parts, kind)
                entry.mode = member.mode & 0o7777
                entry.uid, entry.gid = member.uid, member.gid
                entry.mtime_ns = int(member.mtime * 1_000_000_000)
                entry.size = member.size
                entry.rdev = os.makedev(member.devmajor, member.devminor)
                if kind in ("symlink", "hardlink"):
                    entry.link = member.linkname
                if kind == "file":
                    entry.opener = _member_opener(tar, member)
                yield entry
        except tarfile.TarError as err:
            raise fail(f"cannot read the archive: {err}") from None


def _member_opener(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], BinaryIO]:
    def opener() -> BinaryIO:
        f = tar.extractfile(member)
        if f is None:
            raise fail(f"cannot read {member.name} from the archive")
        return f  # type: ignore[return-value]

    return opener


# --------------------------------------------------------------------------- sinks


def write_tar(entries: Iterable[Entry], out: BinaryIO) -> None:
    """Write ``entries`` as a tar stream (owners and modes kept)."""
    types = {
        "dir": tarfile.DIRTYPE,
        "file": tarfile.REGTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "fifo": tarfile.FIFOTYPE,
        "char": tarfile.CHRTYPE,
        "block": tarfile.BLKTYPE,
    }
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            name = "/".join(e.parts) or "."
            info = tarfile.TarInfo(name)
            info.type = types[e.kind]
            info.mode, info.uid, info.gid = e.mode, e.uid, e.gid
            info.mtime = e.mtime_ns // 1_000_000_000
            info.linkname = e.link
            if e.kind in ("char", "block"):
                info.devmajor, info.devminor = os.major(e.rdev), os.minor(e.rdev)
            if e.kind == "file" and e.opener is not None:
                with e.opener() as f:
                    info.size = os.fstat(f.fileno()).st_size if hasattr(f, "fileno") else e.size
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


class Target:
    """A destination directory: ``fd`` is where entries are created; with
    ``merged`` (a stopped image container) existence is judged in the overlay
    view and ``fd`` is the directory in the upper dir."""

    def __init__(self, fd: int, merged: cfs.Dir | None = None) -> None:
        self.fd = fd
        self.merged = merged
        self.mtime_ns: int | None = None

    def lookup(self, name: str) -> str | None:
        """The kind of what the destination shows at ``name``, or None."""
        if self.merged is not None:
            node = self.merged.lookup(name)
            return None if node is None else node.kind
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return _kind_of(st)

    def here(self, name: str) -> os.stat_result | None:
        """What is at ``name`` in ``fd`` itself (a whiteout, in an upper dir)."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def close(self) -> None:
        if self.merged is not None:
            self.merged.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _kind_of(st: os.stat_result) -> str:
    return "dir" if stat.S_ISDIR(st.st_mode) else "other"


class DirWriter:
    """Writes entries below ``base``.  Every call is relative to a directory fd
    with no-follow semantics; ``owner`` (uid, gid) replaces the entries' owners
    unless None."""

    def __init__(self, base: Target, owner: tuple[int, int] | None, shown: str) -> None:
        self.base = base
        self.owner = owner
        self.shown = shown.rstrip("/") or "/"
        self.chain: list[tuple[tuple[str, ...], Target]] = []

    def _show(self, parts: tuple[str, ...]) -> str:
        return "/".join((self.shown.rstrip("/"), *parts)) if parts else self.shown

    def _ids(self, e: Entry) -> tuple[int, int]:
        return self.owner if self.owner is not None else (e.uid, e.gid)

    def _finish(self, target: Target) -> None:
        if target.mtime_ns is not None:
            os.utime(target.fd, ns=(target.mtime_ns, target.mtime_ns))
        target.close()

    def _dir(self, parts: tuple[str, ...]) -> Target:
        """The open directory at ``parts``; missing ones (a tar without its
        directory entries) are made 0755, owned by root or the caller."""
        while self.chain and self.chain[-1][0] != parts[: len(self.chain[-1][0])]:
            self._finish(self.chain.pop()[1])
        if not parts:
            return self.base
        if self.chain and self.chain[-1][0] == parts:
            return self.chain[-1][1]
        done = len(self.chain[-1][0]) if self.chain else 0
        current = self.chain[-1][1] if self.chain else self.base
        for i in range(done, len(parts)):
            current = self._make_dir(current, parts[: i + 1], None)
            self.chain.append((parts[: i + 1], current))
        return current

    def _make_dir(self, parent: Target, parts: tuple[str, ...], e: Entry | None) -> Target:
        """Open (making it if needed) the directory ``parts[-1]`` of ``parent``.
        An entry's mode, owner and time are applied to it (Docker does so
        even when it exists); without an entry an existing one is untouched."""
        name = parts[-1]
        kind = parent.lookup(name)
        if kind is not None and kind != "dir":
            raise fail(f'cannot overwrite non-directory "{self._show(parts)}" with directory')
        here = parent.here(name)
        opaque = False
        if here is not None and not stat.S_ISDIR(here.st_mode):
            os.unlink(name, dir_fd=parent.fd)  # a whiteout in an upper dir
            here = None
            opaque = parent.merged is not None
        made = here is None
        if made:
            os.mkdir(name, 0o700, dir_fd=parent.fd)
        fd = os.open(name, cfs.DIR_FLAGS, dir_fd=parent.fd)
        merged: cfs.Dir | None = None
        try:
            node = None
            if parent.merged is not None and kind == "dir":
                node = parent.merged.lookup(name)
                if node is not None:
                    merged = node.open_dir()
            if opaque:
                os.setxattr(fd, cfs.OPAQUE_XATTR, b"y")
            if e is not None:
                uid, gid = self._ids(e)
                mode = e.mode
            elif node is not None:  # copy-up of a directory of a lower layer
                uid, gid, mode = node.st.st_uid, node.st.st_gid, stat.S_IMODE(node.st.st_mode)
            else:
                uid, gid = self.owner or (0, 0)
                mode = 0o755
            if e is not None or made:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            if merged is not None:
                merged.close()
            raise
        target = Target(fd, merged)
        if e is not None:
            target.mtime_ns = e.mtime_ns
        return target

    def write(self, entries: Iterable[Entry]) -> None:
        old_umask = os.umask(0)
        try:
            for e in entries:
                self._write_one(e)
        finally:
            os.umask(old_umask)
            while self.chain:
                self._finish(self.chain.pop()[1])

    def _write_one(self, e: Entry) -> None:
        if not e.parts:
            return  # the destination itself: left as it is
        parent = self._dir(e.parts[:-1])
        name = e.parts[-1]
        if e.kind == "dir":
            self.chain.append((e.parts, self._make_dir(parent, e.parts, e)))
            return
        if parent.lookup(name) == "dir":
            raise fail(f'cannot overwrite directory "{self._show(e.parts)}" with non-directory')
        if parent.here(name) is not None:
            os.unlink(name, dir_fd=parent.fd)
        uid, gid = self._ids(e)
        if e.kind == "file":
            self._write_file(parent, name, e, uid, gid)
            return
        if e.kind == "symlink":
            os.symlink(e.link, name, dir_fd=parent.fd)
        elif e.kind == "hardlink":
            self._link(parent, name, e)
            return
        elif e.kind == "fifo":
            os.mkfifo(name, e.mode, dir_fd=parent.fd)
        else:
            kind = stat.S_IFCHR if e.kind == "char" else stat.S_IFBLK
            os.mknod(name, kind | e.mode, e.rdev, dir_fd=parent.fd)
        os.chown(name, uid, gid, dir_fd=parent.fd, follow_symlinks=False)
        os.utime(name, ns=(e.mtime_ns, e.mtime_ns), dir_fd=parent.fd, follow_symlinks=False)

    def _write_file(self, parent: Target, name: str, e: Entry, uid: int, gid: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent.fd)
        with os.fdopen(fd, "wb") as out:
            if e.opener is not None:
                with e.opener() as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fchown(fd, uid, gid)
            os.fchmod(fd, e.mode)  # after chown, which clears set-id bits
            os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))

    def _link(self, parent: Target, name: str, e: Entry) -> None:
        parts = _archive_parts(e.link)
        if not parts:
            raise fail(f"invalid hard link target {e.link!r}")
        fd = os.open(".", cfs.DIR_FLAGS, dir_fd=self.base.fd)
        try:
            for part in parts[:-1]:
                sub = os.open(part, cfs.DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = sub
            os.link(parts[-1], name, src_dir_fd=fd, dst_dir_fd=parent.fd, follow_symlinks=False)
        finally:
            os.close(fd)
