"""Cold pull + unpack of a ~500 MB, 6-layer, ~38,500-entry image from a loopback
registry: pyctr-fast against podman, skopeo+umoci and the floors.

    python -m benches.pull [--quick] [--rounds N] [--out docs/benchmarks-pull.md]

Method:

* the image is built once from files on this machine (the pyenv Python tree,
  then /usr/share, without ``__pycache__``, in sorted walk order, cut into 6
  layers of about equal size), gzip at level 6 (``pigz`` when installed, else
  Python's gzip) and zstd at its default level (when the ``zstd`` CLI exists),
  as an OCI layout cached under /dev/shm keyed by :data:`CACHE_VERSION`;
  ``--quick`` uses a ~20 MB, 3-layer image;
* every run starts Debian's ``docker-registry`` on a free 127.0.0.1 port with
  its storage on tmpfs and pushes both variants with ``skopeo``;
* every row runs on two filesystems, never compared with each other: tmpfs
  (/dev/shm) and a journaled ext4 made here (``mkfs.ext4`` on a sparse file in
  /dev/shm, loop-mounted; unmounted and deleted at the end).  This VM's root
  ext4 has no journal and turns slow and erratic after mass deletes, so it is
  never used;
* each run gets an empty destination; after it the destination is removed,
  ``sync``-ed and (ext4) trimmed, untimed; a round runs every (row, filesystem)
  once in a fresh random order;
* times are wall-clock from just before the first process is spawned to just
  after the last one is reaped; MB/s is uncompressed image bytes (10^6) per
  second; ratios are the median over rounds of (row / reference) in the same
  round on the same filesystem, the reference being ``podman pull`` of the same
  compression (else sequential ``tar -x``, and the report says so).

Peers that are not installed or fail are reported as skipped, never guessed.
Exit status: 1 if a pyctr-fast row produced no number (``--quick``: if any
row that was not skipped produced no number), 2 on a setup problem.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as _dt
import gzip
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benches.compare import _first_line, _fstype, pyctr_cli

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


# --------------------------------------------------------------------------- filesystems


def _mountpoints_under(path: str) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp == path or mp.startswith(path.rstrip("/") + "/"):
            found.append(mp)
    return sorted(found, key=len, reverse=True)


class Filesystem:
    """Where destinations are made: a directory on tmpfs or a loop ext4."""

    def __init__(self, name: str, base: Path, describe: str) -> None:
        self.name = name
        self.base = base
        self.describe = describe
        self.n = 0

    def fresh(self) -> Path:
        self.n += 1
        dest = self.base / f"d{self.n}"
        dest.mkdir()
        return dest

    def clean(self, dest: Path) -> None:
        for mp in _mountpoints_under(str(dest)):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(dest, ignore_errors=True)
        if dest.exists():  # e.g. immutable files: try harder, then give up loudly
            subprocess.run(["rm", "-rf", "--one-file-system", str(dest)], capture_output=True)
        os.sync()


class Tmpfs(Filesystem):
    pass


class Ext4Loop(Filesystem):
    """``mkfs.ext4`` (journaled) on a sparse file in /dev/shm, loop-mounted."""

    def __init__(self, work: Path, size: int) -> None:
        self.image = work / "ext4.img"
        self.mnt = work / "ext4-mnt"
        self.mounted = False
        self.size = size
        self.fstrim = shutil.which("fstrim")
        super().__init__("ext4", self.mnt / "bench", "")

    def setup(self) -> None:
        size = self.size
        work = self.mnt.parent
        self.mnt.mkdir()
        with open(self.image, "wb") as f:
            f.truncate(size)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-O", "has_journal", "-L", "pyctrbench", str(self.image)],
            check=True,
            capture_output=True,
        )
        subprocess.run(["mount", "-o", "loop", str(self.image), str(self.mnt)], check=True)
        self.mounted = True
        self.base.mkdir()
        opts = next(
            (
                line.split()[5]
                for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if line.split()[4] == str(self.mnt)
            ),
            "?",
        )
        self.describe = (
            f"ext4 with journal, {size >> 20} MiB, on a loop device backed by a sparse file "
            f"in {work.parent} (tmpfs); mount options {opts}"
        )

    def clean(self, dest: Path) -> None:
        super().clean(dest)
        if self.fstrim:  # give the freed blocks back to tmpfs
            subprocess.run([self.fstrim, str(self.mnt)], capture_output=True)

    def close(self) -> None:
        if self.mounted:
            for mp in _mountpoints_under(str(self.mnt)):
                res = subprocess.run(["umount", mp], capture_output=True)
                if res.returncode != 0:
                    subprocess.run(["umount", "-l", mp], capture_output=True)
            self.mounted = False
        try:
            self.image.unlink()
        except FileNotFoundError:
            pass
        try:
            self.mnt.rmdir()
        except OSError:
            pass


# --------------------------------------------------------------------------- rows


class RowError(Exception):
    pass


def _run(argv: list[str], env: dict[str, str]) -> None:
    res = subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=RUN_TIMEOUT,
    )
    if res.returncode != 0:
        tail = res.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RowError(f"`{' '.join(argv[:4])} ...` exited {res.returncode}: {' | '.join(tail)}")


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Row:
    name: str
    comp: str
    kind: str  # "ours", "peer", "floor", "native"
    run: Callable[[Path, Filesystem], float]
    version: str = ""
    skipped: str | None = None
    times: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def build_rows(
    image: Image, refs: dict[str, str], env: dict[str, str], work: Path
) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    cli = pyctr_cli()
    podman = shutil.which("podman")
    skopeo = shutil.which("skopeo")
    umoci = shutil.which("umoci")
    curl = shutil.which("curl")
    tar = shutil.which("tar") or "tar"
    runroots = [0]

    for comp in image.compressions:
        ref = refs[comp]
        blobs = image.blobs[comp]
        tar_flag = ["-xzf"] if comp == "gzip" else ["--zstd", "-xf"]
        label = comp

        def pyctr(dest: Path, fs: Filesystem, ref: str = ref) -> float:
            argv = [str(cli), "--root", str(dest / "root"), "pull", ref]
            return _timed(lambda: _run(argv, env))

        rows.append(
            Row(
                f"`pyctr-fast pull` ({label})",
                comp,
                "ours",
                pyctr,
                _first_line([cli, "--version"]) if cli else "",
                None if cli else "the pyctr-fast console script is not installed",
            )
        )

        def podman_pull(dest: Path, fs: Filesystem, ref: str = ref) -> float:
            runroots[0] += 1
            runroot = work / f"podman-run-{runroots[0]}"
            argv = [str(podman), "--root", str(dest / "root"), "--runroot", str(runroot)]
            argv += ["pull", "--tls-verify=false", ref]
            try:
                return _timed(lambda: _run(argv, env))
            finally:
                for mp in _mountpoints_under(str(runroot)):
                    subprocess.run(["umount", "-l", mp], capture_output=True)
                shutil.rmtree(runroot, ignore_errors=True)

        rows.append(
            Row(
                f"`podman pull` ({label})",
                comp,
                "peer",
                podman_pull,
                _first_line([podman, "--version"]) if podman else "",
                None if podman else "podman not installed (apt-get install podman)",
            )
        )

        def skopeo_umoci(dest: Path, fs: Filesystem, ref: str = ref) -> float:
            copy = [str(skopeo), "--insecure-policy", "copy", "-q", "--src-tls-verify=false"]
            copy += [f"docker://{ref}", f"oci:{dest / 'oci'}:img"]
            unpack = [str(umoci), "raw", "unpack", "--image", f"{dest / 'oci'}:img"]
            unpack.append(str(dest / "rootfs"))

            def go() -> None:
                _run(copy, env)
                _run(unpack, env)

            return _timed(go)

        missing = [n for n, p in (("skopeo", skopeo), ("umoci", umoci)) if not p]
        rows.append(
            Row(
                f"`skopeo copy` + `umoci raw unpack` ({label})",
                comp,
                "peer",
                skopeo_umoci,
                f"{_first_line([skopeo, '--version']) if skopeo else ''}; "
                f"{_first_line([umoci, '--version']) if umoci else ''}",
                f"{' and '.join(missing)} not installed" if missing else None,
            )
        )

        host = ref.partition("/")[0]
        urls = [f"http://{host}/v2/{REPO}/blobs/{d}" for d in image.digests[comp]]

        def curl_all(dest: Path, fs: Filesystem, urls: list[str] = urls) -> float:
            argv = [str(curl), "-sSf"]
            for i, url in enumerate(urls):
                argv += ["-o", str(dest / f"blob{i}"), url]
            return _timed(lambda: _run(argv, env))

        rows.append(
            Row(
                f"floor: `curl` of all blobs, sequential ({label})",
                comp,
                "floor",
                curl_all,
                _first_line([curl, "--version"]) if curl else "",
                None if curl else "curl not installed",
            )
        )

        def tar_seq(
            dest: Path,
            fs: Filesystem,
            blobs: list[tuple[str, str]] = blobs,
            flag: list[str] = tar_flag,
        ) -> float:
            dirs = [dest / f"L{i}" for i in range(len(blobs))]
            for d in dirs:
                d.mkdir()

            def go() -> None:
                for (blob, _), d in zip(blobs, dirs):
                    _run([tar, *flag, blob, "-C", str(d)], env)

            return _timed(go)

        def tar_par(
            dest: Path,
            fs: Filesystem,
            blobs: list[tuple[str, str]] = blobs,
            flag: list[str] = tar_flag,
        ) -> float:
            dirs = [dest / f"L{i}" for i in range(len(blobs))]
            for d in dirs:
                d.mkdir()

            def go() -> None:
                procs = [
                    subprocess.Popen(
                        [tar, *flag, blob, "-C", str(d)],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    )
                    for (blob, _), d in zip(blobs, dirs)
                ]
                failed = []
                for p in procs:
                    _, err = p.communicate(timeout=RUN_TIMEOUT)
                    if p.returncode != 0:
                        failed.append(err.decode(errors="replace").strip()[-200:])
                if failed:
                    raise RowError("tar failed: " + " | ".join(failed))

            return _timed(go)

        tar_version = _first_line([tar, "--version"])
        rows.append(
            Row(
                f"floor: `tar {' '.join(tar_flag)}` per layer, one after another ({label})",
                comp,
                "floor",
                tar_seq,
                tar_version,
            )
        )
        rows.append(
            Row(
                f"floor: `tar {' '.join(tar_flag)}`, all layers at once ({label})",
                comp,
                "floor",
                tar_par,
                tar_version,
            )
        )

        native_fn = _native_extract()
        native_skip = None if native_fn else "pyctr_fast._native.extract_layer not importable"
        native: NativeExtract = native_fn or _no_native

        def native_seq(
            dest: Path,
            fs: Filesystem,
            blobs: list[tuple[str, str]] = blobs,
            native: NativeExtract = native,
        ) -> float:
            dirs = [dest / f"L{i}" for i in range(len(blobs))]
            for d in dirs:
                d.mkdir()

            def go() -> None:
                for (blob, mt), d in zip(blobs, dirs):
                    native(blob, str(d), mt)

            return _timed(go)

        def native_par(
            dest: Path,
            fs: Filesystem,
            blobs: list[tuple[str, str]] = blobs,
            native: NativeExtract = native,
        ) -> float:
            dirs = [dest / f"L{i}" for i in range(len(blobs))]
            for d in dirs:
                d.mkdir()

            def go() -> None:
                with concurrent.futures.ThreadPoolExecutor(len(blobs)) as pool:
                    futures = [
                        pool.submit(native, b, str(d), mt) for (b, mt), d in zip(blobs, dirs)
                    ]
                    for f in futures:
                        f.result()

            return _timed(go)

        rows.append(
            Row(
                f"`_native.extract_layer` per layer, one after another ({label})",
                comp,
                "native",
                native_seq,
                "",
                native_skip,
            )
        )
        rows.append(
            Row(
                f"`_native.extract_layer`, all layers at once in threads ({label})",
                comp,
                "native",
                native_par,
                "",
                native_skip,
            )
        )
    if "zstd" not in image.compressions:
        notes.append("the zstd CLI is missing: no zstd variant")
    return rows, notes


NativeExtract = Callable[[str, str, str], "tuple[str, int]"]


def _no_native(blob: str, dest: str, media_type: str) -> tuple[str, int]:
    raise RowError("pyctr_fast._native.extract_layer not importable")


def _native_extract() -> NativeExtract | None:
    try:
        from pyctr_fast import _native
    except ImportError:
        return None
    return getattr(_native, "extract_layer", None)


def _native_version() -> str:
    try:
        from pyctr_fast import _native
    except ImportError:
        return "not importable"
    return str(getattr(_native, "__version__", "?"))


# --------------------------------------------------------------------------- measuring


def measure(
    rows: list[Row],
    fss: list[Filesystem],
    rounds: int,
    rng: random.Random,
    log: Callable[[str], None],
) -> None:
    for r in range(rounds):
        order = [(row, fs) for row in rows if row.skipped is None for fs in fss]
        rng.shuffle(order)
        started = time.monotonic()
        for row, fs in order:
            if fs.name in row.errors or row.skipped is not None:
                continue
            dest = fs.fresh()
            try:
                row.times.setdefault(fs.name, []).append(row.run(dest, fs))
            except (RowError, OSError, subprocess.SubprocessError, RuntimeError) as err:
                why = next((v for k, v in UNSUPPORTED.items() if k in str(err)), None)
                if why is not None:
                    row.skipped = f"{why} ({err})"
                    row.times.clear()
                    log(f"  {row.name}: skipped: {row.skipped}")
                else:
                    row.errors[fs.name] = f"{type(err).__name__}: {err}"
                    log(f"  {row.name} on {fs.name}: {row.errors[fs.name]}")
            finally:
                fs.clean(dest)
        log(f"round {r + 1}/{rounds} done in {time.monotonic() - started:.0f} s")


# --------------------------------------------------------------------------- report


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ref_row(rows: list[Row], row: Row, fs: str) -> tuple[Row | None, str]:
    for r in rows:
        if r.kind == "peer" and r.name.startswith("`podman pull`") and r.comp == row.comp:
            if r.times.get(fs) and fs not in r.errors:
                return r, "podman"
    for r in rows:
        if r.kind == "floor" and "one after another" in r.name and r.comp == row.comp:
            if r.times.get(fs) and fs not in r.errors:
                return r, "tar sequential"
    return None, ""


def _par_row(rows: list[Row], row: Row, fs: str) -> Row | None:
    for r in rows:
        if r.kind == "floor" and "all layers at once" in r.name and r.comp == row.comp:
            if r.times.get(fs) and fs not in r.errors:
                return r
    return None


def _ratio(a: list[float], b: list[float]) -> str:
    pairs = [x / y for x, y in zip(a, b) if y > 0]
    return f"{statistics.median(pairs):.2f}x" if pairs else "-"


def render(
    rows: list[Row],
    fss: list[Filesystem],
    image: Image,
    rounds: int,
    notes: list[str],
    versions: list[str],
) -> str:
    mb = image.uncompressed / 1e6
    sizes = ", ".join(f"{c} {image.sizes[c] / 1e6:.1f} MB" for c in image.compressions)
    lines = [
        "# Cold pull + unpack from a loopback registry",
        "",
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- kernel: {platform.release()}",
        f"- CPU: {_cpu()} ({os.cpu_count()} cores)",
        f"- Python: {platform.python_version()} ({sys.executable})",
        f"- image: {image.layers} layers, {mb:.1f} MB uncompressed, {image.entries:,} tar "
        f"entries; blobs: {sizes} (gzip by {image.gzip_tool}, zstd level 3)",
        "- registry: Debian's docker-registry on 127.0.0.1, storage on tmpfs, one per "
        "compression (so skopeo's blob-info cache cannot swap the zstd blobs for the gzip "
        "ones), pushed with skopeo (OCI manifests), digests checked after the push",
        f"- rounds: {rounds}, every (row, filesystem) once per round in a shuffled order; "
        "an empty destination for each run",
        "- MB/s: uncompressed image MB (10^6 bytes) / median seconds; ratios: median over "
        "rounds of row/reference in the same round on the same filesystem",
        "- versions: " + "; ".join(dict.fromkeys(v for v in versions if v)),
        "",
    ]
    for fs in fss:
        lines += [
            f"## {fs.name}: {fs.describe}",
            "",
            "| what | median s | min-max s | MB/s | vs podman pull (same compression) "
            "| vs parallel `tar` floor |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in rows:
            if row.skipped is not None:
                lines.append(f"| {row.name} | skipped: {row.skipped} | | | | |")
                continue
            if fs.name in row.errors:
                lines.append(f"| {row.name} | failed: {row.errors[fs.name]} | | | | |")
                continue
            t = row.times.get(fs.name, [])
            if not t:
                lines.append(f"| {row.name} | - | | | | |")
                continue
            med = statistics.median(t)
            ref, ref_kind = _ref_row(rows, row, fs.name)
            ratio = _ratio(t, ref.times[fs.name]) if ref else "-"
            if ref and ref_kind != "podman":
                ratio += " (vs tar sequential: podman missing)"
            par = _par_row(rows, row, fs.name)
            pratio = _ratio(t, par.times[fs.name]) if par else "-"
            mbs = (
                f"{mb / med:.0f}"
                if row.kind != "floor" or "curl" not in row.name
                else (f"{image.sizes[row.comp] / 1e6 / med:.0f} (compressed)")
            )
            lines.append(
                f"| {row.name} | {med:.3f} | {min(t):.3f}-{max(t):.3f} | {mbs} | {ratio} | "
                f"{pratio} |"
            )
        lines.append("")
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benches.pull", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="~20 MB image, 3 rounds; check every row has a number"
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5; quick 3)")
    parser.add_argument(
        "--out",
        default=None,
        help="markdown report (default docs/benchmarks-pull.md; none with --quick)",
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 5)
    out = args.out if args.out is not None else (None if args.quick else "docs/benchmarks-pull.md")
    if os.geteuid() != 0:
        print("benches.pull: needs root (loop mounts, podman)", file=sys.stderr)
        return 2
    for tool in ("skopeo", "mkfs.ext4", "mount"):
        if not shutil.which(tool):
            print(f"benches.pull: {tool} is needed", file=sys.stderr)
            return 2
    if not os.path.exists("/usr/bin/docker-registry"):
        print(
            "benches.pull: docker-registry is needed (apt-get install docker-registry)",
            file=sys.stderr,
        )
        return 2
    # A `timeout` (SIGTERM) must still run the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))

    def log(msg: str) -> None:
        print(f"[benches.pull {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": "/root"}
    work = Path(tempfile.mkdtemp(prefix="pyctr-bench-pull-", dir=CACHE_BASE))
    registries: dict[str, Registry] = {}
    ext4: Ext4Loop | None = None
    try:
        image = build_image(args.quick, log)
        log(
            f"image: {image.layers} layers, {image.uncompressed / 1e6:.1f} MB, "
            f"{image.entries} entries, "
            + ", ".join(f"{c} {s / 1e6:.1f} MB" for c, s in image.sizes.items())
        )
        for comp in image.compressions:
            registries[comp] = Registry.start(work / f"registry-{comp}")
        refs = push(image, registries)
        log("pushed: " + ", ".join(refs.values()))
        tmp_base = work / "tmpfs"
        tmp_base.mkdir()
        tmpfs = Tmpfs("tmpfs", tmp_base, f"{_fstype(str(tmp_base)) or '?'} ({CACHE_BASE})")
        size = (1 << 29) if args.quick else (6 << 30)
        ext4 = Ext4Loop(work, size)
        ext4.setup()
        fss: list[Filesystem] = [tmpfs, ext4]
        rows, notes = build_rows(image, refs, env, work)
        versions = [
            _first_line(["skopeo", "--version"]),
            _first_line(["/usr/bin/docker-registry", "--version"]),
            _first_line(["zstd", "--version"]) if shutil.which("zstd") else "",
        ]
        started = time.monotonic()
        measure(rows, fss, rounds, random.Random(args.seed), log)
        notes.append(f"measured in {time.monotonic() - started:.0f} s")
        notes.append(
            "rows named `floor` and `_native` read the blobs from the image cache on tmpfs "
            "(already downloaded); each layer goes to its own directory, as in a layer store"
        )
        for row in rows:
            versions += [v.strip() for v in row.version.split(";")]
        versions.append(f"pyctr_fast._native {_native_version()}")
        report = render(rows, fss, image, rounds, notes, versions)
    finally:
        if ext4 is not None:
            ext4.close()
        for reg in registries.values():
            reg.stop()
        for mp in _mountpoints_under(str(work)):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(report)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(report)
        print(f"written to {out}", file=sys.stderr)

    def has_numbers(row: Row) -> bool:
        return all(row.times.get(fs.name) and fs.name not in row.errors for fs in fss)

    missing = [
        r.name for r in rows if r.kind == "ours" and not (r.skipped is None and has_numbers(r))
    ]
    if args.quick:
        missing += [
            r.name for r in rows if r.kind != "ours" and r.skipped is None and not has_numbers(r)
        ]
    if missing:
        print("benches.pull: rows without a number: " + "; ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
