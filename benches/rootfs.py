"""The benchmarks' image: Debian's static busybox with its applets in /bin."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def find_busybox() -> str:
    for path in (*BUSYBOX_CANDIDATES, shutil.which("busybox")):
        if path and os.path.isfile(path):
            return path
    raise SystemExit("busybox is needed: apt-get install busybox-static")


def build_rootfs(dest: Path) -> Path:
    """A minimal busybox image at ``dest`` (created)."""
    busybox = find_busybox()
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copyfile(busybox, dest / "bin/busybox")
    os.chmod(dest / "bin/busybox", 0o755)
    applets = subprocess.run(
        [busybox, "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            os.symlink("busybox", dest / "bin" / applet)
    (dest / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc/group").write_text("root:x:0:\n")
    return dest
