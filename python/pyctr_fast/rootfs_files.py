"""Reading files of a container's root filesystem, safely.

Every read goes through the native resolver, which resolves the path as if the
rootfs were ``/``: a symlink such as ``etc/passwd -> /etc/shadow`` (or ``..``
components) cannot lead out of it.  There is deliberately no pure-Python
fallback.
"""

from __future__ import annotations

__all__ = ["read_file_in_root", "read_text_in_root"]

MAX_SIZE = 1 << 20


def read_file_in_root(root: str, path: str, limit: int = MAX_SIZE) -> bytes | None:
    """The bytes of ``path`` inside ``root`` (at most ``limit``), None if it does not exist."""
    from . import _native

    return _native.read_file_in_root(root, path, limit)


def read_text_in_root(root: str, path: str, limit: int = MAX_SIZE) -> str | None:
    """Like :func:`read_file_in_root`, decoded as UTF-8 (undecodable bytes escaped)."""
    data = read_file_in_root(root, path, limit)
    if data is None:
        return None
    return data.decode("utf-8", "surrogateescape")
