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
import datetime as _dt
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benches.compare import _first_line, _fstype
from benches.pull_image import CACHE_BASE, Image, Registry, build_image, push
from benches.pull_rows import (
    Ext4Loop,
    Filesystem,
    Row,
    Tmpfs,
    _mountpoints_under,
    _native_version,
    build_rows,
    measure,
)

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
