"""An exclusive ``flock`` on a lock file that may be unlinked by its holder.

A waiter that gets the lock on a file its holder has since unlinked (or
replaced) re-opens the path and waits again, so unlinking the lock file
while holding it is safe: the store does it on every release to keep its
``locks/`` directory empty; a network's IPAM does it when the network is
removed.
"""

from __future__ import annotations

import os

__all__ = ["FileLock"]


class FileLock:
    """``with FileLock(path):`` holds ``flock(LOCK_EX)`` on ``path``; with
    ``unlink_on_release`` the file is removed (still locked) on release."""

    def __init__(self, path: str, *, unlink_on_release: bool = False) -> None:
        self.path = path
        self.unlink_on_release = unlink_on_release
        self.fd = -1

    def __enter__(self) -> FileLock:
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                held = os.fstat(fd)
                try:
                    now = os.stat(self.path)
                except FileNotFoundError:
                    now = None
            except BaseException:
                os.close(fd)
                raise
            if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
                self.fd = fd
                return self
            os.close(fd)  # the holder unlinked or replaced it: take the new file

    def __exit__(self, *exc: object) -> None:
        if self.unlink_on_release:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self.fd)  # releases the lock
        self.fd = -1
