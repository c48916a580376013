"""The console script (python/pyctr_fast.data/scripts/pyctr-fast): it starts
Python without `site` and must find the package installed next to it, in
whatever prefix (venv, pyenv, /usr/local) it was installed into."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LAUNCHER = (
    Path(__file__).resolve().parent.parent / "python" / "pyctr_fast.data" / "scripts" / "pyctr-fast"
)


def _prefix(tmp_path: Path, layout: str) -> Path:
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "pyctr-fast").write_bytes(LAUNCHER.read_bytes())
    (prefix / "bin" / "pyctr-fast").chmod(0o755)
    (prefix / "bin" / "python3").symlink_to(os.path.realpath(sys.executable))
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = prefix / "lib" / version / "site-packages"
    site.mkdir(parents=True)
    fake = tmp_path / "src" / "pyctr_fast" if layout == "editable" else site / "pyctr_fast"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "cli.py").write_text(
        "import sys\ndef main():\n    print(__file__, 'site' in sys.modules, sys.argv[1:])\n"
    )
    if layout == "editable":
        (site / "pyctr_fast.pth").write_text(str(tmp_path / "src") + "\n")
    return prefix


def _run(prefix: Path) -> str:
    out = subprocess.run(
        [str(prefix / "bin" / "pyctr-fast"), "run", "--rm", "x"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip()


def test_launcher_finds_the_package_in_its_own_prefix_without_site(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path, "installed")
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    want = str(prefix / "lib" / version / "site-packages" / "pyctr_fast" / "cli.py")
    assert _run(prefix) == f"{want} False ['run', '--rm', 'x']"


def test_launcher_follows_an_editable_install_pth(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path, "editable")
    want = str(tmp_path / "src" / "pyctr_fast" / "cli.py")
    assert _run(prefix) == f"{want} False ['run', '--rm', 'x']"
