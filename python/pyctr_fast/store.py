"""The content-addressed image store under the data root.

Layout (``<root>`` is ``--root``/$PYCTR_ROOT, the same root containers use)::

    blobs/sha256/<hex>            verified blobs: manifests, configs, layer blobs
    layers/<chain-hex>/diff/      a layer, extracted once per chain id
    layers/<chain-hex>/meta.json  {"diff_id", "size", "parent", "blob", "media_type"}
    images/<config-hex>.json      image records (id = config digest)
    repositories.json             {"refs": {"docker.io/library/redis:latest": "sha256:..."}}
    tmp/                          staging, on the same filesystem (atomic renames)
    locks/                        per chain id / named lock files (removed after use)

Invariants: a layer directory appears (one ``rename``) only once its diff id
matched the image config; if ``layers/X`` exists so do its parents; an image
record exists only when all its layers and its config blob do.  Readers of
images and layers hold the *store lock* shared (``flock`` on the root
directory itself); deleting anything holds it exclusively.
"""

from __future__ import annotations

import os

from .errors import UserError
from .filelock import FileLock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from contextlib import AbstractContextManager
    from typing import Any

__all__ = ["ImageRecord", "Store", "chain_ids", "digest_hex", "sha256_digest"]


def digest_hex(digest: str) -> str:
    """The hex part of ``sha256:<hex>``; anything else is refused."""
    algo, sep, hexpart = digest.partition(":")
    if (
        algo != "sha256"
        or not sep
        or len(hexpart) != 64
        or not all(c in "0123456789abcdef" for c in hexpart)
    ):
        raise UserError(f"invalid digest {digest!r}: only sha256 digests are supported")
    return hexpart


def sha256_digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """OCI chain ids: ChainID(L0) = DiffID(L0),
    ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        digest_hex(diff_id)
        out.append(diff_id if not out else sha256_digest(f"{out[-1]} {diff_id}".encode()))
    return out


class ImageRecord:
    """``images/<hex>.json``: what the store knows about one image."""

    __slots__ = (
        "architecture",
        "created",
        "diff_ids",
        "id",
        "layer_blobs",
        "layers",
        "manifest_digest",
        "os",
        "repo_digests",
        "repo_tags",
        "size",
    )

    def __init__(self, data: dict[str, Any]) -> None:
        self.id: str = data["id"]
        self.manifest_digest: str | None = data.get("manifest_digest")
        self.repo_tags: list[str] = list(data.get("repo_tags", ()))
        self.repo_digests: list[str] = list(data.get("repo_digests", ()))
        self.layers: list[str] = list(data["layers"])
        self.diff_ids: list[str] = list(data["diff_ids"])
        # [{"digest", "mediaType", "size"}] of the layer blobs as stored.
        self.layer_blobs: list[dict[str, Any]] = list(data.get("layer_blobs", ()))
        self.created: str = data.get("created") or ""
        self.size: int = int(data.get("size", 0))
        self.architecture: str = data.get("architecture") or ""
        self.os: str = data.get("os") or ""

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _StoreLock:
    """``flock`` on the root directory itself: shared for users, exclusive for deleters."""

    def __init__(self, root: str, exclusive: bool) -> None:
        self.root = root
        self.exclusive = exclusive
        self.fd = -1

    def __enter__(self) -> _StoreLock:
        import fcntl

        self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self.fd, fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
        self.fd = -1


class Store:
    """The image store rooted at ``root`` (created on first write)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.blobs_dir = os.path.join(self.root, "blobs", "sha256")
        self.layers_dir = os.path.join(self.root, "layers")
        self.images_dir = os.path.join(self.root, "images")
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.locks_dir = os.path.join(self.root, "locks")
        self.repositories_path = os.path.join(self.root, "repositories.json")

    # ------------------------------------------------------------------ set-up

    def _ensure(self, path: str) -> str:
        try:
            os.makedirs(path, 0o700, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create {path}: {err.strerror or err}") from None
        return path

    def ensure_root(self) -> None:
        self._ensure(self.root)

    # ------------------------------------------------------------------ locks

    def lock(self, name: str) -> AbstractContextManager[object]:
        """An exclusive lock named ``name`` (a chain or blob hex, or a word)."""
        return FileLock(os.path.join(self._ensure(self.locks_dir), name), unlink_on_release=True)

    def shared(self) -> AbstractContextManager[object]:
        """Hold while using images or layers: deleters wait for it."""
        self.ensure_root()
        return _StoreLock(self.root, exclusive=False)

    def exclusive(self) -> AbstractContextManager[object]:
        """Hold while deleting images, layers or blobs."""
        self.ensure_root()
        return _StoreLock(self.root, exclusive=True)

    # ------------------------------------------------------------------ staging

    def staging_dir(self, prefix: str = "stage-") -> str:
        """A new private directory under ``tmp/`` (the caller removes it)."""
        import tempfile

        return tempfile.mkdtemp(prefix=prefix, dir=self._ensure(self.tmp_dir))

    @staticmethod
    def remove_tree(path: str) -> None:
        import shutil

        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)
            if os.path.lexists(path):
                shutil.rmtree(path)

    # ------------------------------------------------------------------ blobs

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.blobs_dir, digest_hex(digest))

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def read_blob(self, digest: str) -> bytes:
        try:
            with open(self.blob_path(digest), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise UserError(f"blob {digest} is not in the store") from None

    def commit_blob(self, staged: str, digest: str) -> bool:
        """Move the verified file ``staged`` to ``blobs/``; False (and ``staged``
        removed) if it was already there."""
        dest = self.blob_path(digest)
        self._ensure(self.blobs_dir)
        if os.path.exists(dest):
            os.unlink(staged)
            return False
        os.chmod(staged, 0o644)
        os.rename(staged, dest)
        return True

    def stage_bytes(self, data: bytes, staging: str) -> tuple[str, str]:
        """Write ``data`` to a file in ``staging``; return (digest, path)."""
        digest = sha256_digest(data)
        path = os.path.join(staging, digest_hex(digest))
        with open(path, "wb") as f:
            f.write(data)
        return digest, path

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` as a blob; its digest."""
        digest = sha256_digest(data)
        if self.has_blob(digest):
            return digest
        staging = self.staging_dir("blob-")
        try:
            _, path = self.stage_bytes(data, staging)
            self.commit_blob(path, digest)
        finally:
            self.remove_tree(staging)
        return digest

    def remove_blob(self, digest: str) -> bool:
        try:
            os.unlink(self.blob_path(digest))
            return True
        except FileNotFoundError:
            return False

    def blob_digests(self) -> list[str]:
        try:
            return ["sha256:" + n for n in os.listdir(self.blobs_dir)]
        except FileNotFoundError:
            return []

    # ------------------------------------------------------------------ layers

    def layer_path(self, chain_id: str) -> str:
        return os.path.join(self.layers_dir, digest_hex(chain_id))

    def layer_diff_dir(self, chain_id: str) -> str:
        """The extracted tree of a layer (an overlay lower dir)."""
        return os.path.join(self.layer_path(chain_id), "diff")

    def has_layer(self, chain_id: str) -> bool:
        return os.path.isdir(self.layer_path(chain_id))

    def layer_meta(self, chain_id: str) -> dict[str, Any]:
        import json

        with open(os.path.join(self.layer_path(chain_id), "meta.json"), "rb") as f:
            meta: dict[str, Any] = json.loads(f.read())
        return meta

    def layer_ids(self) -> list[str]:
        try:
            return ["sha256:" + n for n in os.listdir(self.layers_dir)]
        except FileNotFoundError:
            return []

    def new_layer_stage(self) -> str:
        """A staging dir holding an empty ``diff/`` to extract into."""
        stage = self.staging_dir("layer-")
        os.mkdir(os.path.join(stage, "diff"), 0o755)
        return stage

    def commit_layer(self, stage: str, chain_id: str, meta: dict[str, Any]) -> bool:
        """Write ``meta.json`` into ``stage`` and rename it to ``layers/<chain>``.
        The parent layer must already be in the store.  False if the layer was
        already there (``stage`` is left for the caller to remove)."""
        import json

        parent = meta.get("parent")
        if parent and not self.has_layer(parent):
            raise UserError(f"layer {chain_id}: parent {parent} is not in the store")
        dest = self.layer_path(chain_id)
        if os.path.exists(dest):
            return False
        with open(os.path.join(stage, "meta.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(meta, sort_keys=True))
        os.chmod(stage, 0o700)
        self._ensure(self.layers_dir)
        os.rename(stage, dest)
        return True

    def remove_layer(self, chain_id: str) -> bool:
        """Move the layer out of ``layers/`` (atomically), then delete it."""
        path = self.layer_path(chain_id)
        if not os.path.exists(path):
            return False
        trash = self.staging_dir("trash-")
        os.rename(path, os.path.join(trash, "layer"))
        self.remove_tree(trash)
        return True

    # ------------------------------------------------------------------ images

    def image_path(self, image_id: str) -> str:
        return os.path.join(self.images_dir, digest_hex(image_id) + ".json")

    def has_image(self, image_id: str) -> bool:
        return os.path.exists(self.image_path(image_id))

    def get_image(self, image_id: str) -> ImageRecord:
        import json

        try:
            with open(self.image_path(image_id), "rb") as f:
                return ImageRecord(json.loads(f.read()))
        except FileNotFoundError:
            raise UserError(f"No such image: {image_id}") from None

    def images(self) -> list[ImageRecord]:
        try:
            names = os.listdir(self.images_dir)
        except FileNotFoundError:
            return []
        out = []
        for name in sorted(names):
            if name.endswith(".json"):
                try:
                    out.append(self.get_image("sha256:" + name[:-5]))
                except UserError:
                    continue  # removed meanwhile
        return out

    def _write_json(self, path: str, obj: object) -> None:
        import json

        self._ensure(os.path.dirname(path))
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(obj, indent=1, sort_keys=True))
        os.rename(tmp, path)

    def put_image(self, record: ImageRecord) -> None:
        """Write (or replace) an image record; hold ``lock("repositories")``."""
        for chain in record.layers:
            if not self.has_layer(chain):
                raise UserError(f"image {record.id}: layer {chain} is not in the store")
        self._write_json(self.image_path(record.id), record.to_dict())

    def remove_image_record(self, image_id: str) -> None:
        try:
            os.unlink(self.image_path(image_id))
        except FileNotFoundError:
            pass

    def image_config(self, image_id: str) -> dict[str, Any]:
        import json

        config: dict[str, Any] = json.loads(self.read_blob(image_id))
        return config

    # ------------------------------------------------------------------ tags

    def refs(self) -> dict[str, str]:
        """{normalised reference: image id}."""
        import json

        try:
            with open(self.repositories_path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            return {}
        refs: dict[str, str] = data.get("refs", {})
        return refs

    def _write_refs(self, refs: dict[str, str]) -> None:
        self._write_json(self.repositories_path, {"refs": dict(sorted(refs.items()))})

    def set_tag(self, name: str, image_id: str) -> str | None:
        """Point the normalised ``name`` at ``image_id``; the image it pointed at
        before (if another).  Hold ``lock("repositories")``."""
        refs = self.refs()
        old = refs.get(name)
        refs[name] = image_id
        record = self.get_image(image_id)
        if name not in record.repo_tags:
            record.repo_tags.append(name)
            self._write_json(self.image_path(image_id), record.to_dict())
        self._write_refs(refs)
        if old is not None and old != image_id and self.has_image(old):
            prev = self.get_image(old)
            prev.repo_tags = [t for t in prev.repo_tags if t != name]
            self._write_json(self.image_path(old), prev.to_dict())
        return old if old != image_id else None

    def remove_tag(self, name: str) -> str | None:
        """Drop the tag ``name``; the image id it pointed at.  Hold ``lock("repositories")``."""
        refs = self.refs()
        image_id = refs.pop(name, None)
        if image_id is None:
            return None
        self._write_refs(refs)
        if self.has_image(image_id):
            record = self.get_image(image_id)
            record.repo_tags = [t for t in record.repo_tags if t != name]
            self._write_json(self.image_path(image_id), record.to_dict())
        return image_id

    # ------------------------------------------------------------------ containers

    def containers_using(self) -> dict[str, str]:
        """{container id: image id} of the containers of this root that record an image."""
        base = os.path.join(self.root, "containers")
        try:
            names = os.listdir(base)
        except FileNotFoundError:
            return {}
        out = {}
        for name in names:
            try:
                with open(os.path.join(base, name, "image"), encoding="ascii") as f:
                    out[name] = f.read().strip()
            except OSError:
                continue
        return out

    # ------------------------------------------------------------------ garbage

    def collect_garbage(self) -> tuple[list[str], int]:
        """Delete layers and blobs no image record refers to (hold :meth:`exclusive`).
        Returns (removed chain ids, bytes reclaimed)."""
        keep_layers: set[str] = set()
        keep_blobs: set[str] = set()
        for record in self.images():
            keep_layers.update(record.layers)
            keep_blobs.add(record.id)
            if record.manifest_digest:
                keep_blobs.add(record.manifest_digest)
            keep_blobs.update(b["digest"] for b in record.layer_blobs)
        removed: list[str] = []
        reclaimed = 0
        # Children before parents: the layer list is unordered, so drop by depth.
        doomed = [c for c in self.layer_ids() if c not in keep_layers]
        depth: dict[str, int] = {}
        for chain in doomed:
            try:
                meta = self.layer_meta(chain)
            except OSError:
                meta = {}
            depth[chain] = int(meta.get("depth", 0))
            reclaimed += int(meta.get("size", 0))
        for chain in sorted(doomed, key=lambda c: -depth[c]):
            if self.remove_layer(chain):
                removed.append(chain)
        for digest in self.blob_digests():
            if digest not in keep_blobs:
                try:
                    reclaimed += os.path.getsize(self.blob_path(digest))
                except OSError:
                    pass
                self.remove_blob(digest)
        return removed, reclaimed

    def walk_state(self) -> Iterator[str]:
        """Every path under the root except ``tmp/``, ``locks/`` and ``containers/``
        (for tests and diagnostics)."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            if dirpath == self.root:
                dirnames[:] = [d for d in dirnames if d not in ("tmp", "locks", "containers")]
            for name in dirnames + filenames:
                yield os.path.relpath(os.path.join(dirpath, name), self.root)
