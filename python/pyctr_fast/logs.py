"""Reading a container's json-file logs (``docker logs``).

The supervisor writes one JSON object per line,
``{"log": "text\\n", "stream": "stdout", "time": "<RFC 3339 nanoseconds>"}``,
to ``<id>-json.log`` and rotates it to ``.1``, ``.2``... (docs/lifecycle.md).
:func:`read_logs` reads the rotated files oldest first and then the live one,
with Docker's ``--tail`` (counted over both streams, read backwards in blocks
so a big file costs only its end), ``--since``/``--until`` and ``--follow``
(which keeps reading the live file, re-opens it when its inode changes, and
ends once the supervisor is gone and the file is drained).
"""

from __future__ import annotations

import json
import os
import time

from . import timefmt
from .records import supervisor_alive

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from .records import Record

__all__ = ["Entry", "log_files", "read_logs"]

Entry = tuple[str, str, bytes]
"""``(stream, time, data)``: ``stdout``/``stderr``, the RFC 3339 time, the raw bytes."""

_BLOCK = 64 * 1024
POLL_SECONDS = 0.05


def _live_path(rec: Record) -> str:
    from .views import log_path

    return log_path(rec)


def log_files(rec: Record) -> list[str]:
    """The rotated log files that exist, oldest first (``.N`` ... ``.1``), then
    the live file (listed even if it does not exist yet)."""
    live = _live_path(rec)
    rotated = []
    n = 1
    while os.path.exists(f"{live}.{n}"):
        rotated.append(f"{live}.{n}")
        n += 1
    return [*reversed(rotated), live]


def _decode(line: bytes) -> Entry | None:
    try:
        obj = json.loads(line)
        text = obj["log"]
        stream = str(obj.get("stream", "stdout"))
        stamp = str(obj.get("time", ""))
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(text, str):
        return None
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
    return stream, stamp, data


def _complete_end(fd: int) -> int:
    """The offset just past the last newline of the file (a writer may be in
    the middle of the next line)."""
    size = os.fstat(fd).st_size
    pos = size
    while pos > 0:
        start = max(0, pos - _BLOCK)
        chunk = os.pread(fd, pos - start, start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


def _lines(fd: int, start: int, end: int) -> Iterator[bytes]:
    """The lines of ``fd`` between two offsets (read forwards in blocks)."""
    rest = b""
    pos = start
    while pos < end:
        chunk = os.pread(fd, min(_BLOCK, end - pos), pos)
        if not chunk:
            break
        pos += len(chunk)
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def _last_lines(fd: int, end: int, count: int) -> list[bytes]:
    """The last ``count`` lines before ``end``, reading backwards in blocks."""
    if count <= 0 or end <= 0:
        return []
    pieces: list[bytes] = []
    newlines = 0
    pos = end
    # The byte at end-1 is the newline ending the last line: skip it.
    while pos > 0 and newlines <= count - 1 + 1:
        start = max(0, pos - _BLOCK)
        chunk = os.pread(fd, pos - start, start)
        pieces.append(chunk)
        newlines += chunk.count(b"\n")
        pos = start
    data = b"".join(reversed(pieces))
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if pos > 0:
        lines = lines[1:]  # the first one may be cut
    return lines[-count:]


def _open(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _history(
    paths: list[str], live_fd: int | None, live_end: int, tail: int | None
) -> Iterable[bytes]:
    """The lines already written: everything, or the last ``tail``."""
    rotated = paths[:-1]
    if tail is None or tail < 0:

        def everything() -> Iterator[bytes]:
            for path in rotated:
                fd = _open(path)
                if fd is None:
                    continue
                try:
                    yield from _lines(fd, 0, os.fstat(fd).st_size)
                finally:
                    os.close(fd)
            if live_fd is not None:
                yield from _lines(live_fd, 0, live_end)

        return everything()
    chunks: list[list[bytes]] = []
    need = tail
    if live_fd is not None and need > 0:
        got = _last_lines(live_fd, live_end, need)
        chunks.append(got)
        need -= len(got)
    for path in reversed(rotated):
        if need <= 0:
            break
        fd = _open(path)
        if fd is None:
            continue
        try:
            got = _last_lines(fd, os.fstat(fd).st_size, need)
        finally:
            os.close(fd)
        chunks.append(got)
        need -= len(got)
    return [line for chunk in reversed(chunks) for line in chunk]


class _Filter:
    """Stream selection, ``since``/``until`` (nanoseconds) and the ``-t`` prefix."""

    def __init__(
        self, stdout: bool, stderr: bool, since: int | None, until: int | None, stamps: bool
    ) -> None:
        self.streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
        self.since = since
        self.until = until
        self.stamps = stamps
        self.done = False

    def apply(self, lines: Iterable[bytes]) -> Iterator[Entry]:
        for line in lines:
            if not line.strip():
                continue
            entry = _decode(line)
            if entry is None:
                continue
            stream, stamp, data = entry
            if self.since is not None or self.until is not None:
                ns = timefmt.parse_rfc3339(stamp)
                if ns is not None and self.since is not None and ns < self.since:
                    continue
                if ns is not None and self.until is not None and ns > self.until:
                    self.done = True
                    return
            if stream not in self.streams:
                continue
            if self.stamps:
                data = _fixed(stamp).encode() + b" " + data
            yield stream, stamp, data


def _fixed(stamp: str) -> str:
    """Docker's ``RFC3339NanoFixed`` (nine digits, UTC)."""
    if len(stamp) == 30 and stamp.endswith("Z"):
        return stamp
    ns = timefmt.parse_rfc3339(stamp)
    return timefmt.format_rfc3339_nano(ns) if ns is not None else stamp


def _ns(value: float | None) -> int | None:
    return None if value is None else round(value * 1_000_000_000)


def read_logs(
    rec: Record,
    *,
    stdout: bool = True,
    stderr: bool = True,
    timestamps: bool = False,
    tail: int | None = None,
    since: float | None = None,
    until: float | None = None,
    follow: bool = False,
    since_ns: int | None = None,
    until_ns: int | None = None,
    poll: float = POLL_SECONDS,
) -> Iterator[Entry]:
    """The container's log records as ``(stream, time, data)``.

    ``tail``: only the last N records (counted over both streams, as Docker
    does; None or negative: all).  ``since``/``until``: Unix times in seconds
    (records at or after ``since``, at or before ``until``); ``since_ns`` and
    ``until_ns`` say the same in nanoseconds, exactly.  ``timestamps``
    prefixes ``data`` with the record's time and a space (``logs -t``).
    ``follow`` keeps reading new records, across rotations, until the
    container's supervisor is gone and the live file is drained (or a record
    is past ``until``)."""
    paths = log_files(rec)
    live = paths[-1]
    fd = _open(live)
    try:
        end = _complete_end(fd) if fd is not None else 0
        lower = since_ns if since_ns is not None else _ns(since)
        upper = until_ns if until_ns is not None else _ns(until)
        filt = _Filter(stdout, stderr, lower, upper, timestamps)
        yield from filt.apply(_history(paths, fd, end, tail))
        if follow and not filt.done:
            yield from _follow(rec, live, fd, end, filt, poll)
    finally:
        if fd is not None:
            os.close(fd)


class _Tailer:
    """The live file being followed: its fd, inode, offset and unfinished line."""

    def __init__(self, fd: int | None, offset: int) -> None:
        self.fd = fd
        self.own = False  # whether this object opened (and must close) fd
        self.ino = os.fstat(fd).st_ino if fd is not None else None
        self.offset = offset
        self.rest = b""

    def drain(self) -> list[bytes]:
        lines: list[bytes] = []
        if self.fd is None:
            return lines
        while True:
            chunk = os.pread(self.fd, _BLOCK, self.offset)
            if not chunk:
                return lines
            self.offset += len(chunk)
            parts = (self.rest + chunk).split(b"\n")
            self.rest = parts.pop()
            lines.extend(parts)

    def switch(self, path: str) -> None:
        if self.own and self.fd is not None:
            os.close(self.fd)
        self.fd = _open(path)
        self.own = self.fd is not None
        self.ino = os.fstat(self.fd).st_ino if self.fd is not None else None
        self.offset = 0
        self.rest = b""

    def close(self) -> None:
        if self.own and self.fd is not None:
            os.close(self.fd)
        self.fd = None


def _skipped(live: str, old_ino: int | None) -> list[bytes]:
    """The lines of files rotated after the one being followed (several
    rotations between two polls): the rotated files newer than it, oldest
    first.  When it is gone already, every rotated file is newer."""
    rotated = []
    n = 1
    while True:
        try:
            ino = os.stat(f"{live}.{n}").st_ino
        except FileNotFoundError:
            break
        if ino == old_ino:
            break
        rotated.append(f"{live}.{n}")
        n += 1
    lines: list[bytes] = []
    for path in reversed(rotated):
        fd = _open(path)
        if fd is None:
            continue
        try:
            lines.extend(_lines(fd, 0, os.fstat(fd).st_size))
        finally:
            os.close(fd)
    return lines


def _follow(
    rec: Record, live: str, fd: int | None, offset: int, filt: _Filter, poll: float
) -> Iterator[Entry]:
    tailer = _Tailer(fd, offset)
    try:
        while True:
            gone = not supervisor_alive(rec.dir)
            lines = tailer.drain()
            try:
                ino: int | None = os.stat(live).st_ino
            except FileNotFoundError:
                ino = None
            rotated = ino is not None and ino != tailer.ino
            if rotated:
                # The writer renamed the file before making the new one: what
                # it wrote to the old one is there now.
                lines += tailer.drain()
                if tailer.rest:
                    lines.append(tailer.rest)
                lines += _skipped(live, tailer.ino)
                tailer.switch(live)
            elif gone and tailer.rest:
                lines.append(tailer.rest)
                tailer.rest = b""
            yield from filt.apply(lines)
            if filt.done:
                return
            if gone and not lines and not rotated:
                return
            if filt.until is not None and time.time_ns() > filt.until:
                return
            if not lines and not rotated:
                time.sleep(poll)
    finally:
        tailer.close()
