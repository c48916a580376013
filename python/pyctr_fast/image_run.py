"""Running an image: its config applied with Docker's override rules, its
layers as the overlay's lower dirs, and file reads through the layers.

Docker's rules (moby ``daemon/create.go``, ``runconfig/merge``):

* ``--entrypoint X`` replaces the image's Entrypoint (``""`` removes it) and
  then the image's Cmd is dropped; CMD arguments replace the image's Cmd;
  the process is Entrypoint + Cmd; nothing at all is "no command specified";
* ``-e``/``--env-file`` entries come first, then the image's Env entries for
  names the user did not set (Docker's ``merge``);
* ``-w`` and ``-u`` replace WorkingDir and User.
"""

from __future__ import annotations

import os
import stat

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from .spec import RunOptions
    from .store import Store

__all__ = ["PULL_POLICIES", "ImageRun", "command_for", "read_layered_file"]

PULL_POLICIES = ("missing", "always", "never")
_OPAQUE = "trusted.overlay.opaque"


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def read_layered_file(layers: Sequence[str], path: str, limit: int = 1 << 20) -> bytes | None:
    """The bytes of ``path`` as the overlay of ``layers`` (top-most first) shows
    it, without mounting: the first layer holding it wins; a whiteout (0:0 char
    device) of it or of a parent dir, or an opaque parent dir, hides the layers
    below.  Symlinks are not followed (a symlinked file is read only through
    :func:`pyctr_fast.rootfs_files.read_file_in_root` of its own layer)."""
    parts = [p for p in path.split("/") if p and p != "."]
    if not parts or ".." in parts:
        return None
    for layer in layers:
        hidden = False
        cur = layer
        for i, part in enumerate(parts):
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                break  # not in this layer: look below
            except OSError:
                return None
            if _is_whiteout(st):
                return None
            if i == len(parts) - 1:
                if stat.S_ISREG(st.st_mode):
                    with open(cur, "rb") as f:
                        return f.read(limit)
                if stat.S_ISLNK(st.st_mode):
                    from .rootfs_files import read_file_in_root

                    return read_file_in_root(layer, "/" + "/".join(parts), limit)
                return None
            if not stat.S_ISDIR(st.st_mode):
                return None  # a file or symlink hides the directory below
            if _opaque(cur):
                hidden = True
        else:
            continue
        if hidden:
            return None
    return None


def command_for(
    config: dict[str, Any], command: Sequence[str], entrypoint: str | None
) -> list[str]:
    """Entrypoint + Cmd with Docker's override rules."""
    if entrypoint is not None:
        ep = [entrypoint] if entrypoint else []
        cmd = list(command)
    else:
        ep = list(config.get("Entrypoint") or [])
        cmd = list(command) if command else list(config.get("Cmd") or [])
    args = ep + cmd
    if not args:
        raise UserError("no command specified")
    return args


class ImageRun:
    """What ``run`` needs of an image: its id, config and lower dirs (top first)."""

    __slots__ = ("config", "image_id", "layer_dirs")

    def __init__(self, image_id: str, config: dict[str, Any], layer_dirs: list[str]) -> None:
        self.image_id = image_id
        self.config = config
        self.layer_dirs = layer_dirs

    @property
    def container_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = self.config.get("config") or {}
        return cfg

    def read_text(self, path: str) -> str | None:
        data = read_layered_file(self.layer_dirs, path)
        return None if data is None else data.decode("utf-8", "surrogateescape")

    @classmethod
    def find(cls, store: Store, opts: RunOptions, *, out: Any = None) -> ImageRun:
        """The image for ``opts.image``, pulled first per ``opts.pull``.  Call
        with the store lock held shared."""
        import sys

        from .images import resolve_image

        policy = opts.pull or "missing"
        if policy not in PULL_POLICIES:
            raise UserError(
                f'invalid pull option: "{policy}": must be one of "missing", "always" or "never"'
            )
        record = None
        if policy != "always":
            try:
                record = resolve_image(store, opts.image or "")
            except UserError:
                if policy == "never":
                    raise
        if record is None:
            from .pull import pull_image
            from .reference import parse

            stream = out if out is not None else sys.stderr
            if policy == "missing":
                stream.write(f"Unable to find image '{parse(opts.image or '').familiar}' locally\n")
            image_id = pull_image(
                store,
                opts.image or "",
                platform=opts.platform,
                out=stream,
                announce_default_tag=False,
            )
            record = store.get_image(image_id)
        if not record.layers:
            raise UserError(f"image {record.id} has no layers")
        config = store.image_config(record.id)
        layer_dirs = [store.layer_diff_dir(c) for c in reversed(record.layers)]
        return cls(record.id, config, layer_dirs)
