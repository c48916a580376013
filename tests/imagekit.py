"""Helpers for the image tests (not tests themselves).

* :func:`layer_tar` builds a layer tarball from a compact entry list;
* :func:`docker_archive` writes a docker-archive (manifest.json + config + layers);
* :func:`busybox_layer` is the busybox-static rootfs as a layer;
* :func:`py_extract_layer` is a *test stand-in* for ``_native.extract_layer``
  (same contract, Python tarfile, no safety claims) so the store and pull
  logic can be tested in-process before the Rust one exists;
  :func:`use_extractor` installs it unless the native one is there;
* :class:`FakeRegistry` serves manifests and blobs from memory through the
  ``RegistryClient`` surface that ``pull`` uses, with injectable faults;
* :func:`store_snapshot` lists a store tree to prove it did not change.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ctrkit

# (name, kind, data/target, mode, uid, gid); kind: f file, d dir, l symlink,
# h hardlink (data = target name), c char device 0:0 (unused), w whiteout, o opaque
Entry = tuple[str, str, Any, int, int, int]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, mode, uid, gid in entries:
            if kind == "w":
                d, _, base = name.rpartition("/")
                name, kind, data = (f"{d}/" if d else "") + ".wh." + base, "f", b""
            elif kind == "o":
                name, kind, data = name.rstrip("/") + "/.wh..wh..opq", "f", b""
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, 1_700_000_000
            payload = None
            if kind == "f":
                raw = data.encode() if isinstance(data, str) else data
                info.size = len(raw)
                payload = io.BytesIO(raw)
            elif kind == "d":
                info.type = tarfile.DIRTYPE
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, data
            elif kind == "h":
                info.type, info.linkname = tarfile.LNKTYPE, data
            tar.addfile(info, payload)
    return buf.getvalue()


def busybox_layer(tmp: Path) -> bytes:
    """The test busybox rootfs (ctrkit's) as one uncompressed layer."""
    root = ctrkit.build_busybox_rootfs(tmp / "busybox-src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(root)):
            tar.add(root / entry, arcname=entry)
    return buf.getvalue()


def image_config(diff_ids: list[str], config: dict[str, Any] | None = None) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": config or {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()


def diff_id(blob: bytes) -> str:
    return sha256(gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob)


def docker_archive(
    path: Path, layers: list[bytes], tags: list[str], config: dict[str, Any] | None = None
) -> str:
    """Write a docker-archive; return the image id (config digest)."""
    cfg = image_config([diff_id(b) for b in layers], config)
    image_id = sha256(cfg)
    names = [f"{sha256(b)[7:]}/layer.tar" for b in layers]
    manifest = [{"Config": f"{image_id[7:]}.json", "RepoTags": tags, "Layers": names}]
    with tarfile.open(path, "w") as tar:
        for name, data in [
            ("manifest.json", json.dumps(manifest).encode()),
            (f"{image_id[7:]}.json", cfg),
            *zip(names, layers),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return image_id


# --------------------------------------------------------------------------- extraction


def py_extract_layer(blob: str, dest: str, media_type: str = "") -> tuple[str, int]:
    """Test stand-in for ``_native.extract_layer`` (trusted input only)."""
    with open(blob, "rb") as f:
        raw = f.read()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for m in tar.getmembers():
            name = os.path.normpath(m.name).lstrip("/")
            if name.startswith(".."):
                raise RuntimeError(f"escape: {m.name}")
            d, _, base = name.rpartition("/")
            target = os.path.join(dest, name)
            if base == ".wh..wh..opq":
                os.makedirs(os.path.join(dest, d), exist_ok=True)
                os.setxattr(os.path.join(dest, d), "trusted.overlay.opaque", b"y")
                continue
            if base.startswith(".wh."):
                os.mknod(os.path.join(dest, d, base[4:]), stat.S_IFCHR | 0o000, os.makedev(0, 0))
                continue
            if m.isdir():
                os.makedirs(target, exist_ok=True)
            elif m.issym():
                os.symlink(m.linkname, target)
            elif m.islnk():
                os.link(os.path.join(dest, m.linkname), target)
            else:
                f = tar.extractfile(m)
                assert f is not None
                with open(target, "wb") as out:
                    out.write(f.read())
            os.lchown(target, m.uid, m.gid)
            if not m.issym():
                os.chmod(target, m.mode)
        # Directory modes after their content.
        for m in tar.getmembers():
            if m.isdir():
                os.chmod(os.path.join(dest, os.path.normpath(m.name)), m.mode)
    return sha256(data), len(data)


def native_extract() -> Callable[..., tuple[str, int]] | None:
    from pyctr_fast import _native

    return getattr(_native, "extract_layer", None)


def use_extractor(monkeypatch: Any) -> None:
    """Make ``extract_layer`` available in this process (the native one if built)."""
    from pyctr_fast import _native

    if native_extract() is None:
        monkeypatch.setattr(_native, "extract_layer", py_extract_layer, raising=False)


# --------------------------------------------------------------------------- registry


class Desc:
    def __init__(self, media_type: str, data: bytes) -> None:
        self.media_type = media_type
        self.digest = sha256(data)
        self.size = len(data)
        self.urls: list[str] = []


class FakeManifest:
    def __init__(self, config: bytes, layers: list[bytes]) -> None:
        self.config = Desc("application/vnd.oci.image.config.v1+json", config)
        self.layers = [Desc("application/vnd.oci.image.layer.v1.tar+gzip", b) for b in layers]
        self.raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": vars(self.config),
                "layers": [vars(d) for d in self.layers],
            }
        ).encode()
        self.digest = sha256(self.raw)
        self.index_digest: str | None = None
        self.media_type = "application/vnd.oci.image.manifest.v1+json"


class FakeRegistry:
    """The part of ``RegistryClient`` that ``pull`` uses, from memory.

    ``fail`` maps a blob digest to an exception to raise from ``fetch_blob``;
    ``fetched`` counts downloads per digest; ``gate``, if set, is waited on
    before each layer download (to line concurrent pulls up)."""

    def __init__(self) -> None:
        self.images: dict[str, FakeManifest] = {}
        self.blobs: dict[str, bytes] = {}
        self.fail: dict[str, Exception] = {}
        self.fetched: dict[str, int] = {}
        self.lock = threading.Lock()
        self.gate: threading.Barrier | None = None

    def add(self, name: str, layers: list[bytes], config: dict[str, Any] | None = None) -> str:
        gz = [gzip.compress(b, mtime=0) for b in layers]
        cfg = image_config([sha256(b) for b in layers], config)
        m = FakeManifest(cfg, gz)
        self.images[name] = m
        self.blobs[m.config.digest] = cfg
        for b in gz:
            self.blobs[sha256(b)] = b
        return m.config.digest

    def get_manifest(self, ref: Any, platform: str | None = None) -> FakeManifest:
        return self.images[ref.name]

    def fetch_blob(
        self, ref: Any, desc: Any, dest: str, progress: Callable[[int, int], None] | None = None
    ) -> None:
        with self.lock:
            self.fetched[desc.digest] = self.fetched.get(desc.digest, 0) + 1
        if self.gate is not None and desc.digest != self.images[ref.name].config.digest:
            self.gate.wait(timeout=10)
        if desc.digest in self.fail:
            raise self.fail[desc.digest]
        data = self.blobs[desc.digest]
        with open(dest, "wb") as f:
            f.write(data)
        if progress is not None:
            progress(len(data), len(data))


def store_snapshot(root: Path) -> dict[str, tuple[int, int, bytes | str | None]]:
    """{path: (mode, size, content)} of a store, without tmp/, locks/ and containers/."""
    out: dict[str, tuple[int, int, bytes | str | None]] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d not in ("tmp", "locks", "containers")]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            content: bytes | str | None = None
            if stat.S_ISREG(st.st_mode):
                content = Path(full).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(full)
            out[os.path.relpath(full, root)] = (st.st_mode, st.st_size, content)
    return out


def tree_listing(root: Path) -> list[str]:
    """``path mode uid:gid kind [target|nlink]`` for every entry under ``root``."""
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            extra = ""
            if stat.S_ISLNK(st.st_mode):
                extra = " -> " + os.readlink(full)
            lines.append(f"{rel} {stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}{extra}")
    return sorted(lines)
