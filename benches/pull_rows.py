"""The pull benchmark's rows (benches.pull): the filesystems destinations are
made on, pyctr-fast's pulls, the peers (podman, skopeo+umoci) and the floors
(curl, tar), and the interleaved measuring."""

from __future__ import annotations

import concurrent.futures
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benches.compare import _first_line, pyctr_cli
from benches.pull_image import REPO, RUN_TIMEOUT, UNSUPPORTED, Image

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
