"""The content-addressed store: chain ids, layer sharing, locks, garbage
collection, and reading files through layers without mounting them."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import imagekit
import pytest
from pyctr_fast.archive import load_archive
from pyctr_fast.errors import UserError
from pyctr_fast.image_run import command_for, read_layered_file
from pyctr_fast.store import Store, chain_ids, sha256_digest

pytestmark = pytest.mark.usefixtures("integration_ready")

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def test_chain_ids_follow_the_oci_formula() -> None:
    c = chain_ids([D1, D2, D3])
    assert c[0] == D1
    assert c[1] == sha256_digest(f"{D1} {D2}".encode())
    assert c[2] == sha256_digest(f"{c[1]} {D3}".encode())


def test_invalid_digests_are_refused() -> None:
    for bad in ("sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64, "../" + "0" * 64):
        with pytest.raises(UserError, match="invalid digest"):
            chain_ids([bad])


def test_named_lock_excludes_other_threads_and_leaves_no_lock_file(root: Path) -> None:
    store = Store(str(root))
    inside = []
    order: list[str] = []

    def worker(tag: str) -> None:
        with store.lock("x" * 64):
            inside.append(tag)
            assert len(inside) == 1
            order.append(tag)
            threading.Event().wait(0.02)
            inside.remove(tag)

    threads = [threading.Thread(target=worker, args=(str(i),)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(order) == [str(i) for i in range(6)]
    assert os.listdir(root / "locks") == []


def _load(root: Path, tmp_path: Path, layers: list[bytes], tags: list[str]) -> str:
    archive = tmp_path / f"img-{len(os.listdir(tmp_path))}.tar"
    imagekit.docker_archive(archive, layers, tags)
    ((image_id, _),) = load_archive(Store(str(root)), str(archive))
    return image_id


@pytest.fixture
def extractor(monkeypatch: pytest.MonkeyPatch) -> None:
    imagekit.use_extractor(monkeypatch)


BASE = imagekit.layer_tar([("etc", "d", None, 0o755, 0, 0), ("etc/a", "f", "a", 0o644, 0, 0)])
TOP1 = imagekit.layer_tar([("one", "f", "1", 0o644, 0, 0)])
TOP2 = imagekit.layer_tar([("two", "f", "2", 0o644, 0, 0)])


def test_layers_are_shared_by_chain_id_and_collected_when_unused(
    root: Path, tmp_path: Path, extractor: None
) -> None:
    a = _load(root, tmp_path, [BASE, TOP1], ["a:1"])
    b = _load(root, tmp_path, [BASE, TOP2], ["b:1"])
    store = Store(str(root))
    assert len(store.layer_ids()) == 3
    base_chain = store.get_image(a).layers[0]
    assert store.get_image(b).layers[0] == base_chain
    meta = store.layer_meta(store.get_image(a).layers[1])
    assert meta["parent"] == base_chain and meta["diff_id"] == store.get_image(a).diff_ids[1]
    a_top = store.get_image(a).layers[1]
    with store.exclusive():
        store.remove_image_record(a)
        removed, _ = store.collect_garbage()
    assert removed == [a_top]
    assert store.has_layer(base_chain)
    assert sorted(store.layer_ids()) == sorted(store.get_image(b).layers)
    # a's config blob went with it; b's stayed.
    assert not store.has_blob(a) and store.has_blob(b)


def test_layer_dir_holds_diff_and_meta_only(root: Path, tmp_path: Path, extractor: None) -> None:
    image_id = _load(root, tmp_path, [BASE], ["a:1"])
    store = Store(str(root))
    (chain,) = store.get_image(image_id).layers
    assert sorted(os.listdir(store.layer_path(chain))) == ["diff", "meta.json"]
    assert (Path(store.layer_diff_dir(chain)) / "etc/a").read_text() == "a"


def test_tag_moves_between_images_and_records_follow(
    root: Path, tmp_path: Path, extractor: None
) -> None:
    a = _load(root, tmp_path, [BASE], ["app:v"])
    b = _load(root, tmp_path, [BASE, TOP1], ["app:v"])
    store = Store(str(root))
    assert store.refs() == {"docker.io/library/app:v": b}
    assert store.get_image(a).repo_tags == []
    assert store.get_image(b).repo_tags == ["docker.io/library/app:v"]


def _mk_layer(base: Path, files: dict[str, str]) -> str:
    for rel, kind in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "whiteout":
            os.mknod(p, stat.S_IFCHR, os.makedev(0, 0))
        elif kind == "opaque":
            p.mkdir(exist_ok=True)
            os.setxattr(p, "trusted.overlay.opaque", b"y")
        else:
            p.write_text(kind)
    return str(base)


def test_layered_read_takes_the_top_file_and_respects_whiteouts_and_opaque_dirs(
    tmp_path: Path,
) -> None:
    low = _mk_layer(tmp_path / "low", {"etc/passwd": "low", "etc/group": "lowg", "x/f": "x"})
    mid = _mk_layer(tmp_path / "mid", {"etc/passwd": "mid", "x": "opaque"})
    top = _mk_layer(tmp_path / "top", {"etc/group": "whiteout", "y": "y"})
    layers = [top, mid, low]
    assert read_layered_file(layers, "/etc/passwd") == b"mid"
    assert read_layered_file(layers, "/etc/group") is None
    assert read_layered_file(layers, "/x/f") is None
    assert read_layered_file([low], "/x/f") == b"x"
    assert read_layered_file(layers, "/y") == b"y"
    assert read_layered_file(layers, "/../etc/passwd") is None


def test_whiteout_of_parent_directory_hides_file(tmp_path: Path) -> None:
    low = _mk_layer(tmp_path / "low", {"etc/passwd": "low"})
    top = _mk_layer(tmp_path / "top", {"etc": "whiteout"})
    assert read_layered_file([top, low], "/etc/passwd") is None


def test_docker_command_override_rules() -> None:
    cfg = {"Entrypoint": ["/ep"], "Cmd": ["a", "b"]}
    assert command_for(cfg, [], None) == ["/ep", "a", "b"]
    assert command_for(cfg, ["x"], None) == ["/ep", "x"]
    assert command_for(cfg, [], "/other") == ["/other"]
    assert command_for(cfg, ["y"], "") == ["y"]
    with pytest.raises(UserError, match="no command specified"):
        command_for({}, [], None)
