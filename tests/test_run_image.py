"""``run IMAGE``: the image config with Docker's override rules, the overlay
rootfs (merged tree, copy-on-write), and images in use.

These run the real CLI, so they need ``_native.extract_layer`` and
``overlay=`` support in ``_native.run`` (skipped with the reason until the
extension has them).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import ctrkit
import imagekit
import pytest
from pyctr_fast.store import Store


@pytest.fixture(scope="session")
def native_images(integration_ready: None) -> None:
    if imagekit.native_extract() is None:
        pytest.skip("pyctr_fast._native has no extract_layer/overlay yet (the lead's Rust work)")


pytestmark = pytest.mark.usefixtures("native_images")

LAYER2 = [
    ("data", "d", None, 0o755, 0, 0),
    ("data/keep", "f", "keep\n", 0o644, 0, 0),
    ("data/gone", "f", "gone\n", 0o644, 0, 0),
    ("data/dir", "d", None, 0o755, 0, 0),
    ("data/dir/old", "f", "old\n", 0o644, 0, 0),
    ("data/suid", "f", "#!/bin/sh\n", 0o4755, 0, 0),
    ("data/owned", "f", "o\n", 0o640, 1000, 1000),
    ("data/link", "l", "keep", 0o777, 0, 0),
    ("data/hard", "h", "data/keep", 0o644, 0, 0),
    ("data/empty", "d", None, 0o700, 1000, 50),
]
LAYER3 = [
    ("data/gone", "w", None, 0, 0, 0),
    ("data/dir", "o", None, 0, 0, 0),
    ("data/dir/new", "f", "new\n", 0o600, 0, 0),
    ("data/sticky", "d", None, 0o1777, 0, 0),
]
EXPECTED = sorted(
    [
        "/data drwxr-xr-x 0:0",
        "/data/keep -rw-r--r-- 0:0 2",
        "/data/hard -rw-r--r-- 0:0 2",
        "/data/dir drwxr-xr-x 0:0",
        "/data/dir/new -rw------- 0:0 1",
        "/data/suid -rwsr-xr-x 0:0 1",
        "/data/owned -rw-r----- 1000:1000 1",
        "/data/link lrwxrwxrwx 0:0 1",
        "/data/empty drwx------ 1000:50",
        "/data/sticky drwxrwxrwt 0:0",
    ]
)
LISTING = (
    "find /data | while read -r p; do "
    'if [ -d "$p" ] && [ ! -L "$p" ]; then stat -c "%n %A %u:%g" "$p"; '
    'else stat -c "%n %A %u:%g %h" "$p"; fi; done'
)


@pytest.fixture
def image(engine: ctrkit.Engine, tmp_path: Path) -> str:
    archive = tmp_path / "img.tar"
    layers = [
        imagekit.busybox_layer(tmp_path),
        imagekit.layer_tar(LAYER2),
        imagekit.layer_tar(LAYER3),
    ]
    image_id = imagekit.docker_archive(
        archive,
        layers,
        ["test/app:1"],
        {
            "Cmd": ["/bin/sh", "-c", 'echo "$A $B $(pwd) $(id -u):$(id -g)"'],
            "Env": ["PATH=/usr/local/bin:/bin", "A=image-a", "B=image-b"],
            "WorkingDir": "/data",
            "User": "alice",
            "StopSignal": "SIGQUIT",
            "Labels": {"org.example": "yes"},
        },
    )
    ctrkit.assert_ok(engine.cli_run("load", "-i", str(archive)))
    return image_id


def test_run_image_applies_cmd_env_workdir_and_user(engine: ctrkit.Engine, image: str) -> None:
    res = engine.cli_run("run", "--rm", "test/app:1")
    assert ctrkit.assert_ok(res) == "image-a image-b /data 1000:1000\n"


def test_cli_overrides_replace_image_defaults(engine: ctrkit.Engine, image: str) -> None:
    res = engine.cli_run(
        "run", "--rm", "-e", "A=cli", "-w", "/tmp", "-u", "0", "test/app:1",
        "/bin/sh", "-c", 'echo "$A $B $(pwd) $(id -u)"',
    )  # fmt: skip
    assert ctrkit.assert_ok(res) == "cli image-b /tmp 0\n"
    res = engine.cli_run("run", "--rm", "--entrypoint", "/bin/echo", "test/app:1", "x")
    assert ctrkit.assert_ok(res) == "x\n"


def test_merged_tree_shows_whiteouts_opaque_dirs_links_modes_and_owners(
    engine: ctrkit.Engine, image: str
) -> None:
    res = engine.cli_run("run", "--rm", "-u", "0", "test/app:1", "/bin/sh", "-c", LISTING)
    got = sorted(ctrkit.assert_ok(res).splitlines())
    assert got == EXPECTED


def _start(engine: ctrkit.Engine, *args: str) -> subprocess.Popen[bytes]:
    return engine.tracker.add(
        subprocess.Popen(
            engine.argv("run", "--rm", *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=engine.base_env(),
            start_new_session=True,
        )
    )


def test_write_lands_in_the_container_upper_dir_and_the_layer_is_unchanged(
    engine: ctrkit.Engine, image: str
) -> None:
    proc = _start(
        engine, "-i", "-u", "0", "test/app:1", "/bin/sh", "-c",
        "echo changed > /data/keep; echo ready; read line || true",
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert ctrkit.read_line(proc.stdout, 15) == b"ready\n"
        (cid,) = engine.container_dirs()
        upper = engine.root / "containers" / cid / "upper"
        assert (upper / "data/keep").read_text() == "changed\n"
        store = Store(str(engine.root))
        layer = Path(store.layer_diff_dir(store.get_image(image).layers[1]))
        assert (layer / "data/keep").read_text() == "keep\n"
        # The image is in use: rmi refuses.
        res = engine.cli_run("rmi", "test/app:1")
        assert res.returncode == 1 and "is using its referenced image" in res.stderr
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # `read` sees EOF: the container exits
        proc.stdin = None
        res = ctrkit.finish(proc)
    assert res.returncode == 0, res
    assert engine.container_dirs() == []
    assert os.path.exists(Store(str(engine.root)).image_path(image))


def test_pull_never_with_a_missing_image_fails(engine: ctrkit.Engine) -> None:
    res = engine.cli_run("run", "--rm", "--pull", "never", "no/such:image")
    ctrkit.assert_engine_error(res, 125, "No such image")


def test_rootfs_runs_still_work_next_to_images(engine: ctrkit.Engine, image: str) -> None:
    assert ctrkit.assert_ok(engine.run("echo", "hi")) == "hi\n"


def test_an_image_with_130_layers_runs_and_shows_every_layer(
    engine: ctrkit.Engine, tmp_path: Path
) -> None:
    layers = [imagekit.busybox_layer(tmp_path)]
    layers += [imagekit.layer_tar([(f"l{i:03d}", "f", f"{i}\n", 0o644, 0, 0)]) for i in range(129)]
    archive = tmp_path / "many.tar"
    imagekit.docker_archive(archive, layers, ["many:1"])
    ctrkit.assert_ok(engine.cli_run("load", "-i", str(archive), timeout=120))
    res = engine.cli_run(
        "run", "--rm", "many:1", "/bin/sh", "-c", "cat /l000 /l128; ls / | grep -c '^l[0-9]'"
    )
    assert ctrkit.assert_ok(res) == "0\n128\n129\n"
