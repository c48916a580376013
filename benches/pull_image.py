"""The pull benchmark's image (benches.pull): a synthetic OCI image built from
files on this machine, cached on tmpfs, and pushed to loopback registries."""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.registry_kit import Registry  # noqa: E402

CACHE_VERSION = "pull-image-v2"
CACHE_BASE = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())
SOURCES = ("/root/.pyenv/versions/3.11.7", "/usr/share")
QUICK_SOURCES = ("/root/.pyenv/versions/3.11.7/lib/python3.11", "/usr/share")
FULL = {"bytes": 448_000_000, "layers": 6}  # ~480 MB of tar
QUICK = {"bytes": 20_000_000, "layers": 3, "max_file": 1_000_000}
#: errors that mean "this tool cannot do this at all": the row is skipped, saying why
UNSUPPORTED = {"blob is not correct mediatype": "cannot unpack this layer media type"}
GZIP_LEVEL = 6  # gzip(1)'s and pigz's default
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
REPO = "bench/pull"
RUN_TIMEOUT = 600


# --------------------------------------------------------------------------- the image


def _walk(root: str) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        yield dirpath
        for name in sorted(filenames):
            yield os.path.join(dirpath, name)


def select_files(
    target_bytes: int, sources: tuple[str, ...] = SOURCES, max_file: int = 1 << 62
) -> tuple[list[tuple[str, int]], int]:
    """(path, regular-file size) in walk order until ``target_bytes``."""
    picked: list[tuple[str, int]] = []
    total = 0
    for root in sources:
        if not os.path.isdir(root):
            continue
        for path in _walk(root):
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not (
                stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)
            ):
                continue
            if stat.S_ISREG(st.st_mode) and not os.access(path, os.R_OK):
                continue
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            if size > max_file:
                continue
            picked.append((path, size))
            total += size
            if total >= target_bytes:
                return picked, total
    return picked, total


def split_layers(files: list[tuple[str, int]], total: int, n: int) -> list[list[str]]:
    layers: list[list[str]] = [[] for _ in range(n)]
    acc = 0
    for path, size in files:
        index = min(n - 1, acc * n // max(total, 1))
        layers[index].append(path)
        acc += size
    return [layer for layer in layers if layer]


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uname = info.gname = ""
    info.mtime = int(info.mtime)  # a float would add a PAX header to every entry
    return info


def write_layer_tar(paths: list[str], out: str) -> int:
    """A PAX tar of ``paths`` (missing parent dirs added first); the entry count."""
    count = 0
    emitted: set[str] = set()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in paths:
            parents: list[str] = []
            parent = os.path.dirname(path)
            while parent not in ("/", "") and parent not in emitted:
                parents.append(parent)
                parent = os.path.dirname(parent)
            for p in reversed(parents):
                tar.add(p, arcname=p.lstrip("/"), recursive=False, filter=_normalise)
                emitted.add(p)
                count += 1
            if path in emitted:
                continue
            try:
                tar.add(path, arcname=path.lstrip("/"), recursive=False, filter=_normalise)
            except OSError:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                emitted.add(path)
            count += 1
    return count


def _sha256_file(path: str) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def _build_one(paths: list[str], workdir: str, index: int, zstd: bool) -> dict[str, Any]:
    tar_path = os.path.join(workdir, f"layer{index}.tar")
    entries = write_layer_tar(paths, tar_path)
    diff_id, size = _sha256_file(tar_path)
    out: dict[str, Any] = {"entries": entries, "diff_id": diff_id, "size": size}
    gz_path = tar_path + ".gz"
    pigz = shutil.which("pigz")
    if pigz:
        with open(gz_path, "wb") as f:
            subprocess.run([pigz, f"-{GZIP_LEVEL}", "-n", "-c", tar_path], stdout=f, check=True)
    else:
        with open(tar_path, "rb") as src, open(gz_path, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gz:
                shutil.copyfileobj(src, gz, 1 << 20)
    out["gzip"] = gz_path
    if zstd:
        zst_path = tar_path + ".zst"
        subprocess.run(["zstd", "-q", "-f", "-T1", tar_path, "-o", zst_path], check=True)
        out["zstd"] = zst_path
    os.unlink(tar_path)
    return out


@dataclass
class Image:
    layout: Path
    compressions: list[str]
    layers: int
    entries: int
    uncompressed: int
    sizes: dict[str, int]  # compression -> total blob bytes
    blobs: dict[str, list[tuple[str, str]]]  # compression -> [(path, media type)]
    digests: dict[str, list[str]]  # compression -> [config digest, layer digests...]
    gzip_tool: str


def _add_blob(layout: Path, src: str | None, data: bytes | None = None) -> tuple[str, int]:
    blobs = layout / "blobs" / "sha256"
    if data is not None:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (blobs / digest[7:]).write_bytes(data)
        return digest, len(data)
    assert src is not None
    digest, size = _sha256_file(src)
    os.replace(src, blobs / digest[7:])
    return digest, size


def build_image(quick: bool, log: Callable[[str], None]) -> Image:
    spec = QUICK if quick else FULL
    zstd = shutil.which("zstd") is not None
    key = f"{CACHE_VERSION}-{'quick' if quick else 'full'}-{'gz+zst' if zstd else 'gz'}"
    cache = CACHE_BASE / f"pyctr-bench-pull-cache-{key}"
    meta_path = cache / "meta.json"
    if meta_path.is_file():
        return _image_from_meta(cache, json.loads(meta_path.read_text()))
    log(f"building the benchmark image in {cache} (once) ...")
    started = time.monotonic()
    shutil.rmtree(cache, ignore_errors=True)
    layout = cache / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    work = cache / "build"
    work.mkdir()
    files, total = select_files(
        int(spec["bytes"]), QUICK_SOURCES if quick else SOURCES, int(spec.get("max_file", 1 << 62))
    )
    layer_paths = split_layers(files, total, int(spec["layers"]))
    with concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        built = list(
            pool.map(
                _build_one,
                layer_paths,
                [str(work)] * len(layer_paths),
                range(len(layer_paths)),
                [zstd] * len(layer_paths),
            )
        )
    diff_ids = [str(b["diff_id"]) for b in built]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"benches.pull layer {i}"} for i in range(len(built))],
    }
    cfg = json.dumps(config, sort_keys=True).encode()
    cfg_digest, cfg_size = _add_blob(layout, None, cfg)
    refs = []
    variants: dict[str, Any] = {}
    meta: dict[str, Any] = {
        "entries": sum(int(b["entries"]) for b in built),
        "uncompressed": sum(int(b["size"]) for b in built),
        "layers": len(built),
        "gzip_tool": f"pigz -{GZIP_LEVEL}"
        if shutil.which("pigz")
        else f"Python gzip level {GZIP_LEVEL}",
        "variants": variants,
    }
    for comp in ["gzip"] + (["zstd"] if zstd else []):
        descs: list[dict[str, Any]] = []
        for b in built:
            digest, size = _add_blob(layout, str(b[comp]))
            descs.append({"mediaType": LAYER_TYPES[comp], "digest": digest, "size": size})
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": cfg_size},
            "layers": descs,
        }
        raw = json.dumps(manifest, indent=2).encode()
        m_digest, m_size = _add_blob(layout, None, raw)
        refs.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": m_digest,
                "size": m_size,
                "annotations": {"org.opencontainers.image.ref.name": comp},
            }
        )
        variants[comp] = {
            "config": cfg_digest,
            "layers": [[d["digest"], d["mediaType"]] for d in descs],
            "size": sum(int(d["size"]) for d in descs),
        }
    (layout / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": refs})
    )
    shutil.rmtree(work)
    meta_path.write_text(json.dumps(meta, indent=2))  # last: marks the cache complete
    log(f"built in {time.monotonic() - started:.0f} s")
    return _image_from_meta(cache, meta)


def _image_from_meta(cache: Path, meta: dict[str, Any]) -> Image:
    layout = cache / "layout"
    variants: dict[str, Any] = meta["variants"]
    blobs = {
        comp: [(str(layout / "blobs/sha256" / d[7:]), mt) for d, mt in v["layers"]]
        for comp, v in variants.items()
    }
    digests = {
        comp: [str(v["config"])] + [d for d, _ in v["layers"]] for comp, v in variants.items()
    }
    return Image(
        layout=layout,
        compressions=list(variants),
        layers=int(meta["layers"]),
        entries=int(meta["entries"]),
        uncompressed=int(meta["uncompressed"]),
        sizes={comp: int(v["size"]) for comp, v in variants.items()},
        blobs=blobs,
        digests=digests,
        gzip_tool=str(meta["gzip_tool"]),
    )


def push(image: Image, registries: dict[str, Registry]) -> dict[str, str]:
    """Each variant to its own registry: skopeo's blob-info cache would otherwise
    "reuse" the gzip blobs already in the registry for the zstd manifest."""
    refs = {}
    for comp in image.compressions:
        ref = f"{registries[comp].host}/{REPO}:{comp}"
        cmd = ["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false"]
        cmd += [f"oci:{image.layout}:{comp}", f"docker://{ref}"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
        _check_pushed(registries[comp], comp, image.digests[comp])
        refs[comp] = ref
    return refs


def _check_pushed(registry: Registry, comp: str, digests: list[str]) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    try:
        conn.request("GET", f"/v2/{REPO}/manifests/{comp}", headers={"Accept": OCI_MANIFEST})
        resp = conn.getresponse()
        manifest = json.loads(resp.read())
    finally:
        conn.close()
    got = [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]
    types = {layer["mediaType"] for layer in manifest["layers"]}
    if got != digests or types != {LAYER_TYPES[comp]}:
        raise RuntimeError(f"the registry's {comp} manifest is not the image built: {got} {types}")
