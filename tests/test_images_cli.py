"""The image commands through the CLI entry point: load, images, image
inspect, tag, rmi, image prune, save, import.

They call ``pyctr_fast.cli._main`` in this process (so that imagekit's
stand-in extractor applies until ``_native.extract_layer`` exists) with a
per-test ``--root``.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import ctrkit
import imagekit
import pytest
from pyctr_fast import cli
from pyctr_fast.store import Store

pytestmark = pytest.mark.usefixtures("integration_ready")

PASSWD = "root:x:0:0::/root:/bin/sh\n"
BASE = imagekit.layer_tar(
    [("etc", "d", None, 0o755, 0, 0), ("etc/passwd", "f", PASSWD, 0o644, 0, 0)]
)
TOP = imagekit.layer_tar([("srv", "d", None, 0o750, 1, 2), ("srv/data", "f", "d", 0o600, 1, 2)])


@pytest.fixture(autouse=True)
def extractor(monkeypatch: pytest.MonkeyPatch) -> None:
    imagekit.use_extractor(monkeypatch)


def main(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli._main(["--root", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def app(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    archive = tmp_path / "app.tar"
    image_id = imagekit.docker_archive(
        archive, [BASE, TOP], ["app:1.0", "example.com:5000/team/app:latest"],
        {"Cmd": ["/bin/sh"], "Env": ["A=1"]},
    )  # fmt: skip
    code, out, err = main(root, capsys, "load", "-i", str(archive))
    assert (code, err) == (0, ""), err
    assert out == "Loaded image: app:1.0\nLoaded image: example.com:5000/team/app:latest\n"
    return image_id


def test_images_lists_every_tag_with_docker_columns(
    root: Path, app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = main(root, capsys, "images")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    rows = sorted(line.split()[:3] for line in lines[1:])
    assert rows == [["app", "1.0", app[7:19]], ["example.com:5000/team/app", "latest", app[7:19]]]
    code, out, _ = main(root, capsys, "images", "-q")
    assert out == app[7:19] + "\n"


def test_image_inspect_gives_dockers_fields(
    root: Path, app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = main(root, capsys, "image", "inspect", "app:1.0")
    assert code == 0
    (data,) = json.loads(out)
    assert data["Id"] == app
    assert sorted(data["RepoTags"]) == ["app:1.0", "example.com:5000/team/app:latest"]
    assert data["RepoDigests"] == []
    assert data["Config"] == {"Cmd": ["/bin/sh"], "Env": ["A=1"]}
    assert (data["Architecture"], data["Os"]) == ("amd64", "linux")
    assert data["RootFS"] == {
        "Type": "layers",
        "Layers": [imagekit.sha256(BASE), imagekit.sha256(TOP)],
    }
    assert data["Size"] == len(BASE) + len(TOP)
    code, out, err = main(root, capsys, "image", "inspect", "nope")
    assert code == 1 and err == "Error: No such image: nope\n"


def test_image_found_by_id_prefix_and_full_id(
    root: Path, app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (app, app[7:], app[7:15]):
        code, out, _ = main(root, capsys, "image", "inspect", name)
        assert code == 0 and json.loads(out)[0]["Id"] == app


def test_tag_then_rmi_by_tag_only_untags_until_the_last_tag(
    root: Path, app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(root, capsys, "tag", "app:1.0", "other/thing:x")[0] == 0
    code, out, _ = main(root, capsys, "rmi", "other/thing:x")
    assert (code, out) == (0, "Untagged: other/thing:x\n")
    code, out, _ = main(root, capsys, "rmi", "app:1.0")
    assert (code, out) == (0, "Untagged: app:1.0\n")
    store = Store(str(root))
    chains = store.get_image(app).layers
    code, out, _ = main(root, capsys, "rmi", "example.com:5000/team/app")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Untagged: example.com:5000/team/app:latest"
    assert lines[1] == f"Deleted: {app}"
    assert sorted(lines[2:]) == sorted(f"Deleted: {c}" for c in chains)
    assert store.images() == [] and store.layer_ids() == [] and store.blob_digests() == []
    assert store.refs() == {}


def test_rmi_by_id_with_several_tags_needs_force(
    root: Path, app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = main(root, capsys, "rmi", app[7:19])
    assert code == 1 and "must be forced" in err and "multiple repositories" in err
    code, out, _ = main(root, capsys, "rmi", "-f", app[7:19])
    assert code == 0 and f"Deleted: {app}" in out.splitlines()


def test_rmi_refuses_an_image_a_container_uses_unless_forced(
    root: Path, app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cdir = root / "containers" / ("c" * 64)
    cdir.mkdir(parents=True)
    try:
        (cdir / "image").write_text(app + "\n")
        main(root, capsys, "rmi", "example.com:5000/team/app")
        code, out, err = main(root, capsys, "rmi", "app:1.0")
        assert code == 1 and out == ""
        assert "container cccccccccccc is using its referenced image" in err
        # -f untags, but the image and its layers stay while the container uses them.
        code, out, _ = main(root, capsys, "rmi", "-f", "app:1.0")
        assert (code, out) == (0, "Untagged: app:1.0\n")
        store = Store(str(root))
        assert store.has_image(app) and len(store.layer_ids()) == 2
        code, out, _ = main(root, capsys, "image", "prune")
        assert store.has_image(app)
    finally:
        (cdir / "image").unlink()
        cdir.rmdir()
        (root / "containers").rmdir()
    code, out, _ = main(root, capsys, "image", "prune")
    assert code == 0 and f"deleted: {app}" in out
    assert Store(str(root)).layer_ids() == []


def test_save_then_load_into_another_root_round_trips(
    root: Path, app: str, tmp_path: Path, make_root: object, capsys: pytest.CaptureFixture[str]
) -> None:
    out_tar = tmp_path / "saved.tar"
    code, _, err = main(root, capsys, "save", "-o", str(out_tar), "app:1.0")
    assert (code, err) == (0, "")
    with tarfile.open(out_tar) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"manifest.json", "index.json", "oci-layout"} <= names
    assert manifest[0]["RepoTags"] == ["app:1.0"]
    other = tmp_path / "other-root"
    code, out, _ = main(other, capsys, "load", "-i", str(out_tar))
    assert (code, out) == (0, "Loaded image: app:1.0\n")
    a, b = Store(str(root)), Store(str(other))
    assert b.get_image(app).layers == a.get_image(app).layers
    for chain in a.get_image(app).layers:
        assert imagekit.tree_listing(Path(a.layer_diff_dir(chain))) == imagekit.tree_listing(
            Path(b.layer_diff_dir(chain))
        )


def test_load_of_an_oci_layout_archive(
    root: Path, app: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "saved.tar"
    assert main(root, capsys, "save", "-o", str(saved), "app:1.0")[0] == 0
    oci = tmp_path / "oci.tar"
    with tarfile.open(saved) as src, tarfile.open(oci, "w") as dst:
        for m in src.getmembers():
            if m.name != "manifest.json":
                dst.addfile(m, src.extractfile(m))
    other = tmp_path / "oci-root"
    code, out, err = main(other, capsys, "load", "-i", str(oci))
    assert (code, err) == (0, ""), err
    assert out == "Loaded image: app:1.0\n"
    assert Store(str(other)).get_image(app).diff_ids == Store(str(root)).get_image(app).diff_ids


def test_import_makes_a_one_layer_image_from_a_rootfs_tarball(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(BASE)
    code, out, err = main(root, capsys, "import", str(tarball), "imported:v1")
    assert (code, err) == (0, "")
    image_id = out.strip()
    store = Store(str(root))
    record = store.get_image(image_id)
    assert record.diff_ids == [imagekit.sha256(BASE)]
    assert store.refs() == {"docker.io/library/imported:v1": image_id}
    assert (Path(store.layer_diff_dir(record.layers[0])) / "etc/passwd").exists()
    assert os.listdir(root / "tmp") == []


def test_load_of_a_corrupt_layer_leaves_the_store_unchanged(
    root: Path, app: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = imagekit.store_snapshot(root)
    bad = tmp_path / "bad.tar"
    layer = imagekit.layer_tar([("x", "f", "x", 0o644, 0, 0)])
    imagekit.docker_archive(bad, [BASE, layer], ["bad:1"])
    # Swap the second layer's content after the config recorded its diff id.
    with tarfile.open(bad) as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(bad, "w") as dst:
        for m, data in members:
            if m.name.endswith("/layer.tar") and data == layer:
                data = imagekit.layer_tar([("y", "f", "y", 0o644, 0, 0)])
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    code, _, err = main(root, capsys, "load", "-i", str(bad))
    assert code == 125 and "diff id" in err
    assert imagekit.store_snapshot(root) == before


def test_load_of_a_layer_escaping_its_dir_fails_and_changes_nothing(
    root: Path, app: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if imagekit.native_extract() is None:
        pytest.skip("the stand-in extractor makes no safety claims")
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("keep")
    before_canary = ctrkit.snapshot_tree(canary)
    before = imagekit.store_snapshot(root)
    evil = imagekit.layer_tar(
        [
            ("link", "l", str(canary), 0o777, 0, 0),
            ("link/pwned", "f", "x", 0o644, 0, 0),
        ]
    )
    bad = tmp_path / "evil.tar"
    imagekit.docker_archive(bad, [BASE, evil], ["evil:1"])
    code, _, err = main(root, capsys, "load", "-i", str(bad))
    assert code == 125 and err.startswith("pyctr-fast: extracting layer 2:"), err
    assert imagekit.store_snapshot(root) == before
    assert ctrkit.snapshot_tree(canary) == before_canary
