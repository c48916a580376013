"""``load``, ``save`` and ``import``: images as tar archives.

* ``save`` writes a docker-archive that is also an OCI image layout (as
  Docker 25+ does): ``manifest.json`` (Docker's index of images), ``index.json``
  and ``oci-layout``, and ``blobs/sha256/<hex>`` holding each config, layer blob
  and a generated OCI manifest.
* ``load`` reads either a docker-archive (``manifest.json``: a config and layer
  tars per image; older layouts with ``<id>/layer.tar`` too) or an OCI layout
  archive (``index.json``; nested indexes resolved for the host platform).
* ``import`` makes a one-layer image from a rootfs tarball (tar, gzip, zstd).

All three go through :func:`pyctr_fast.ingest.ingest_image`, so layers are
verified against the config's diff ids and a failure stores nothing.
"""

from __future__ import annotations

import os

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import tarfile
    from collections.abc import Callable, Sequence
    from typing import IO, Any

    from .store import Store

__all__ = ["import_tarball", "load_archive", "save_archive"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_CHUNK = 1 << 20


def _copy_hashing(
    src: IO[bytes], dest: str, progress: Callable[[int, int], None] | None = None, total: int = 0
) -> str:
    import hashlib

    h = hashlib.sha256()
    done = 0
    with open(dest, "wb") as f:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
            f.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return "sha256:" + h.hexdigest()


def _member_bytes(tar: tarfile.TarFile, name: str, limit: int = 64 << 20) -> bytes:
    f = _open_member(tar, name)
    with f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UserError(f"invalid archive: {name} is too large")
    return data


def _open_member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    name = os.path.normpath(name).lstrip("/")
    seen: set[str] = set()
    while True:
        try:
            member = tar.getmember(name)
        except KeyError:
            raise UserError(f"invalid archive: {name} is missing") from None
        if member.issym() and name not in seen:  # Docker's archives symlink shared layers
            seen.add(name)
            name = os.path.normpath(os.path.join(os.path.dirname(name), member.linkname))
            continue
        f = tar.extractfile(member)
        if f is None:
            raise UserError(f"invalid archive: {name} is not a file")
        return f


def _json(data: bytes, what: str) -> Any:
    import json

    try:
        return json.loads(data)
    except ValueError as err:
        raise UserError(f"invalid archive: {what}: {err}") from None


_tar_locks: dict[int, Any] = {}


def _member_source(tar: tarfile.TarFile, name: str, media_type: str, digest: str | None) -> Any:
    """A layer read from the archive: one reader at a time (a TarFile shares
    one file position), while extraction of earlier layers goes on."""
    import threading

    from .ingest import LayerSource

    lock = _tar_locks.setdefault(id(tar), threading.Lock())

    def fetch(dest: str, progress: Callable[[int, int], None]) -> str:
        with lock, _open_member(tar, name) as src:
            return _copy_hashing(src, dest, progress)

    return LayerSource(digest, media_type, 0, fetch)


def _normalise_tags(tags: Sequence[str]) -> list[str]:
    from .reference import parse

    return [parse(t).name for t in tags]


def _load_docker(store: Store, tar: tarfile.TarFile, workers: int) -> list[tuple[str, list[str]]]:
    from .ingest import ingest_image

    entries = _json(_member_bytes(tar, "manifest.json"), "manifest.json")
    if not isinstance(entries, list):
        raise UserError("invalid archive: manifest.json is not a list")
    out = []
    for entry in entries:
        config_bytes = _member_bytes(tar, entry["Config"])
        tags = _normalise_tags(entry.get("RepoTags") or [])
        layers = [_member_source(tar, name, "", None) for name in entry.get("Layers") or []]
        image_id, _ = ingest_image(
            store, config_bytes=config_bytes, layers=layers, tags=tags, workers=workers
        )
        out.append((image_id, tags))
    return out


def _load_oci(store: Store, tar: tarfile.TarFile, workers: int) -> list[tuple[str, list[str]]]:
    from .ingest import ingest_image
    from .manifests import host_platform

    def blob(digest: str) -> str:
        from .store import digest_hex

        return "blobs/sha256/" + digest_hex(digest)

    index = _json(_member_bytes(tar, "index.json"), "index.json")
    want = host_platform()
    out = []
    for desc in index.get("manifests") or []:
        annotations = desc.get("annotations") or {}
        name = annotations.get("io.containerd.image.name") or annotations.get(
            "org.opencontainers.image.ref.name"
        )
        while desc.get("mediaType") in (OCI_INDEX, DOCKER_LIST):
            nested = _json(_member_bytes(tar, blob(desc["digest"])), "index")
            matches = [
                m
                for m in nested.get("manifests") or []
                if want.matches(
                    (m.get("platform") or {}).get("os", ""),
                    (m.get("platform") or {}).get("architecture", ""),
                    (m.get("platform") or {}).get("variant", ""),
                )
            ]
            if not matches:
                raise UserError(f"invalid archive: no manifest for {want} in the index")
            desc = matches[0]
        manifest_bytes = _member_bytes(tar, blob(desc["digest"]))
        manifest = _json(manifest_bytes, "manifest")
        config_bytes = _member_bytes(tar, blob(manifest["config"]["digest"]))
        layers = [
            _member_source(tar, blob(layer["digest"]), layer.get("mediaType", ""), layer["digest"])
            for layer in manifest.get("layers") or []
        ]
        tags: list[str] = []
        if name and ("/" in name or ":" in name) and not name.startswith("sha256:"):
            tags = _normalise_tags([name])
        image_id, _ = ingest_image(
            store,
            config_bytes=config_bytes,
            layers=layers,
            manifest_bytes=manifest_bytes,
            tags=tags,
            workers=workers,
        )
        out.append((image_id, tags))
    return out


def load_archive(store: Store, path: str, *, workers: int = 3) -> list[tuple[str, list[str]]]:
    """Load every image of the archive at ``path``; [(image id, tags)]."""
    import tarfile

    try:
        tar = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as err:
        raise UserError(f"cannot read archive {path}: {err}") from None
    try:
        with tar:
            names = set(tar.getnames())
            if "manifest.json" in names:
                return _load_docker(store, tar, workers)
            if "index.json" in names:
                return _load_oci(store, tar, workers)
    except (OSError, tarfile.TarError) as err:
        raise UserError(f"cannot read archive {path}: {err}") from None
    finally:
        _tar_locks.pop(id(tar), None)
    raise UserError(f"{path}: neither a docker-archive (manifest.json) nor an OCI layout")


def import_tarball(
    store: Store,
    path: str,
    *,
    tag: str | None = None,
    changes: dict[str, Any] | None = None,
) -> str:
    """A one-layer image from the rootfs tarball at ``path``; its id."""
    import json
    import time

    from .ingest import LayerSource, extract_layer, ingest_image
    from .manifests import host_platform

    staging = store.staging_dir("import-")
    try:
        probe = os.path.join(staging, "probe")
        os.mkdir(probe)
        # The diff id is needed for the config before the ingest: extract once
        # to a throwaway dir to learn it (the ingest extracts again, verified).
        diff_id, _ = extract_layer(path, probe, "")
        store.remove_tree(probe)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        plat = host_platform()
        config: dict[str, Any] = {
            "architecture": plat.architecture,
            "os": "linux",
            "created": created,
            "config": changes or {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "pyctr-fast import"}],
        }
        if plat.variant:
            config["variant"] = plat.variant
        config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()

        def fetch(dest: str, progress: Callable[[int, int], None]) -> str:
            with open(path, "rb") as src:
                return _copy_hashing(src, dest, progress)

        tags = _normalise_tags([tag]) if tag else []
        image_id, _ = ingest_image(
            store,
            config_bytes=config_bytes,
            layers=[LayerSource(None, "", 0, fetch)],
            tags=tags,
        )
        return image_id
    finally:
        store.remove_tree(staging)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _layer_media_type(stored: str, blob_head: bytes) -> str:
    if stored:
        return stored
    if blob_head.startswith(b"\x1f\x8b"):
        return OCI_LAYER_TAR + "+gzip"
    if blob_head.startswith(b"\x28\xb5\x2f\xfd"):
        return OCI_LAYER_TAR + "+zstd"
    return OCI_LAYER_TAR


def save_archive(store: Store, images: Sequence[tuple[str, list[str]]], out: IO[bytes]) -> None:
    """Write ``images`` ([(image id, tags to record)]) as one archive to ``out``."""
    import json
    import tarfile

    from .store import digest_hex

    docker_manifest: list[dict[str, Any]] = []
    index: list[dict[str, Any]] = []
    written: set[str] = set()
    with store.shared(), tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:

        def add_blob(digest: str, data: bytes | None = None) -> str:
            name = "blobs/sha256/" + digest_hex(digest)
            if digest not in written:
                written.add(digest)
                if data is not None:
                    _add_bytes(tar, name, data)
                else:
                    tar.add(store.blob_path(digest), arcname=name, recursive=False)
            return name

        for image_id, tags in images:
            record = store.get_image(image_id)
            config_bytes = store.read_blob(image_id)
            layer_descs = []
            layer_names = []
            for blob in record.layer_blobs:
                digest = blob.get("digest") or ""
                if not digest or not store.has_blob(digest):
                    raise UserError(f"cannot save {image_id}: layer blob {digest} is missing")
                with open(store.blob_path(digest), "rb") as f:
                    head = f.read(4)
                size = os.path.getsize(store.blob_path(digest))
                media = _layer_media_type(blob.get("mediaType") or "", head)
                media = media.replace(
                    "application/vnd.docker.image.rootfs.diff.tar.gzip", OCI_LAYER_TAR + "+gzip"
                )
                layer_descs.append({"mediaType": media, "digest": digest, "size": size})
                layer_names.append(add_blob(digest))
            config_name = add_blob(image_id, config_bytes)
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": image_id, "size": len(config_bytes)},
                "layers": layer_descs,
            }
            manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
            from .store import sha256_digest

            manifest_digest = sha256_digest(manifest_bytes)
            add_blob(manifest_digest, manifest_bytes)
            familiar = [_familiar(t) for t in tags]
            docker_manifest.append(
                {"Config": config_name, "RepoTags": familiar or None, "Layers": layer_names}
            )
            tag_list: list[str | None] = [*tags] or [None]
            for tag in tag_list:
                desc: dict[str, Any] = {
                    "mediaType": OCI_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest_bytes),
                }
                if tag:
                    desc["annotations"] = {
                        "io.containerd.image.name": tag,
                        "org.opencontainers.image.ref.name": tag.rpartition(":")[2],
                    }
                index.append(desc)
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(
            tar,
            "index.json",
            json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}).encode(),
        )
        _add_bytes(tar, "manifest.json", json.dumps(docker_manifest).encode())


def _familiar(name: str) -> str:
    from .reference import parse

    return parse(name).familiar
