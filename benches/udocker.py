"""udocker (PyPI) as a peer of the start-latency rows: ``udocker run`` in its P1
mode (PRoot with seccomp filtering), on the same busybox tree.

Set up offline, in the benchmark's own work directory, never globally:

* ``pip install --target WORK/udocker-pkg udocker==VERSION`` (from PyPI, or
  pip's cache; the only network use, and pip's own);
* udocker's "udockertools" tarball comes from GitHub, which this machine cannot
  reach: udocker is pointed at Debian's ``proot`` (``apt-get install proot``)
  with ``UDOCKER_USE_PROOT_EXECUTABLE``, and ``lib/VERSION`` of its private
  ``UDOCKER_DIR`` names the tools release it asks for so that it does not try
  to download them at every start (every binary it runs is real: the report
  says that PRoot is Debian's);
* the image is the busybox tree as a tarball, ``udocker import``-ed; one
  container is ``create``-d and ``setup --execmode=P1``;
* each timed start is ``python -S udocker --allow-root -q run --nobanner C
  /bin/true`` (``-S`` as the pyctr-fast console script's ``-I -S``: no
  site-packages ``.pth`` files).

Anything missing or failing makes the row skipped with the reason, never faked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

VERSION = "1.3.17"
TOOLS_RELEASE = "1.2.11"  # what udocker 1.3.17 asks for
NAME = "`udocker run` (P1: PRoot + seccomp)"
CONTAINER = "bench"


def _tar(rootfs: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w") as tar:
        for entry in sorted(os.listdir(rootfs)):
            tar.add(rootfs / entry, arcname=entry)
    return dest


class Udocker:
    """A private udocker install with one P1 container of ``rootfs``."""

    def __init__(self, work: Path) -> None:
        self.pkg = work / "udocker-pkg"
        self.top = work / "udocker-dir"
        self.proot = shutil.which("proot")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C.UTF-8",
            "HOME": str(work),
            "PYTHONPATH": str(self.pkg),
            "UDOCKER_DIR": str(self.top),
            "UDOCKER_TMP": str(work / "udocker-tmp"),
            "UDOCKER_USE_PROOT_EXECUTABLE": self.proot or "",
            "UDOCKER_DEFAULT_EXECUTION_MODE": "P1",
            # No download: a tarball that does not exist fails at once.
            "UDOCKER_TARBALL": str(work / "no-udockertools.tar.gz"),
        }
        self.version = ""

    def cmd(self, *args: str) -> list[str]:
        script = str(self.pkg / "bin" / "udocker")
        return [os.path.realpath(sys.executable), "-S", script, "--allow-root", *args]

    def run_argv(self) -> list[str]:
        return self.cmd("-q", "run", "--nobanner", CONTAINER, "/bin/true")

    def _call(self, argv: list[str], timeout: float = 300) -> str:
        res = subprocess.run(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if res.returncode != 0:
            text = (res.stderr or res.stdout).strip()
            raise RuntimeError(text.splitlines()[-1] if text else f"exit {res.returncode}")
        return res.stdout

    def setup(self, rootfs: Path) -> str | None:
        """None when ready, else why the row is skipped."""
        if not self.proot:
            return "proot not installed (apt-get install proot): udocker's P1 mode needs it"
        pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        pip += ["--no-input", "--target", str(self.pkg), f"udocker=={VERSION}"]
        try:
            self._call(pip)
            (self.top / "lib").mkdir(parents=True, exist_ok=True)
            (self.top / "lib" / "VERSION").write_text(TOOLS_RELEASE + "\n")
            Path(self.env["UDOCKER_TMP"]).mkdir(parents=True, exist_ok=True)
            image = _tar(rootfs, self.top.parent / "udocker-busybox.tar")
            self._call(self.cmd("-q", "import", str(image), "bench/busybox:latest"))
            self._call(self.cmd("-q", "create", f"--name={CONTAINER}", "bench/busybox:latest"))
            self._call(self.cmd("-q", "setup", "--execmode=P1", CONTAINER))
            self._call(self.run_argv(), timeout=60)
            out = self._call(self.cmd("version"))
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
            return f"udocker set-up failed: {err}"
        version = next((x for x in out.splitlines() if x.startswith("version:")), "")
        dpkg = ["dpkg-query", "-W", "-f=${Version}", "proot"]
        try:
            pv = subprocess.run(dpkg, capture_output=True, text=True).stdout.strip()
        except OSError:
            pv = "?"
        self.version = f"udocker {version.split(':', 1)[-1].strip()}; Debian proot {pv}"
        return None
