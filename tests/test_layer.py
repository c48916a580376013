"""Layer extraction (rust/core/src/layer.rs through ``_native.extract_layer``).

Layers are written with ``tarfile`` in the test; malicious ones must fail the
whole extraction with a one-line ``extract`` error and leave everything
outside the layer directory exactly as it was (a canary tree is compared
byte for byte).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import ctrkit
import pytest

native = pytest.importorskip("pyctr_fast._native")

Entry = Callable[[tarfile.TarFile], None]


def _file(name: str, data: bytes = b"", **attrs: object) -> Entry:
    def add(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        for k, v in attrs.items():
            setattr(info, k, v)
        tf.addfile(info, io.BytesIO(data))

    return add


def _special(name: str, kind: bytes, linkname: str = "", **attrs: object) -> Entry:
    def add(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        for k, v in attrs.items():
            setattr(info, k, v)
        tf.addfile(info)

    return add


def _tar(*entries: Entry, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for add in entries:
            add(tf)
    return buf.getvalue()


@pytest.fixture
def layer_dir(tmp_path: Path) -> Path:
    d = tmp_path / "layer"
    d.mkdir()
    return d


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A tree beside the layer that no extraction may touch."""
    c = tmp_path / "canary"
    (c / "sub").mkdir(parents=True)
    (c / "file").write_text("precious\n")
    (c / "sub" / "x").write_text("x\n")
    return c


def _extract(tmp_path: Path, data: bytes, dest: Path, media_type: str = "") -> tuple[str, int]:
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    return native.extract_layer(str(blob), str(dest), media_type)


def test_extract_reports_the_sha256_of_the_uncompressed_tar_as_diff_id(
    tmp_path: Path, layer_dir: Path
) -> None:
    data = _tar(_file("a.txt", b"hello\n"))
    diff_id, size = _extract(tmp_path, data, layer_dir)
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert size == len(data)


def test_gzip_and_zstd_layers_give_the_same_tree_and_diff_id(tmp_path: Path) -> None:
    data = _tar(_special("d/", tarfile.DIRTYPE), _file("d/f", b"x" * 100_000))
    plain, gz, zs = tmp_path / "p", tmp_path / "g", tmp_path / "z"
    for d in (plain, gz, zs):
        d.mkdir()
    want = _extract(tmp_path, data, plain)
    assert (
        _extract(tmp_path, gzip.compress(data), gz, "application/vnd.oci.image.layer.v1.tar+gzip")
        == want
    )
    if shutil.which("zstd"):
        z = subprocess.run(
            ["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True
        ).stdout
        assert _extract(tmp_path, z, zs) == want  # detected from the magic bytes
        assert (zs / "d" / "f").read_bytes() == b"x" * 100_000
    assert (gz / "d" / "f").read_bytes() == b"x" * 100_000


def test_every_entry_type_keeps_its_kind_owner_mode_and_mtime(
    tmp_path: Path, layer_dir: Path
) -> None:
    long_name = "dir/" + "ü" * 60 + "-long-utf8-name.txt"  # > 100 bytes: needs PAX
    data = _tar(
        _special("./dir/", tarfile.DIRTYPE, uid=1234, gid=5678, mode=0o750, mtime=1_000_000),
        _file("./dir/suid", b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0, mtime=2_000_000),
        _file(long_name, b"long\n"),
        _special("dir/link", tarfile.SYMTYPE, linkname="suid", uid=7, gid=8),
        _special("dir/hard", tarfile.LNKTYPE, linkname="dir/suid"),
        _special("dir/fifo", tarfile.FIFOTYPE),
        _special("dir/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        _file("no/parent/entry/file", b"p"),
        _file("xattr", b"x", pax_headers={"SCHILY.xattr.user.pyctr": "yes"}),
    )
    _extract(tmp_path, data, layer_dir)
    d = layer_dir / "dir"
    st = d.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), int(st.st_mtime)) == (
        1234,
        5678,
        0o750,
        1_000_000,
    )
    s = (d / "suid").stat()
    assert stat.S_IMODE(s.st_mode) == 0o4755 and int(s.st_mtime) == 2_000_000
    assert (layer_dir / long_name).read_bytes() == b"long\n"
    assert os.readlink(d / "link") == "suid"
    assert os.lstat(d / "link").st_uid == 7
    assert (d / "hard").stat().st_ino == s.st_ino
    assert stat.S_ISFIFO(os.lstat(d / "fifo").st_mode)
    n = os.lstat(d / "null")
    assert stat.S_ISCHR(n.st_mode) and (os.major(n.st_rdev), os.minor(n.st_rdev)) == (1, 3)
    parent = (layer_dir / "no" / "parent").stat()
    assert stat.S_IMODE(parent.st_mode) == 0o755 and parent.st_uid == 0
    try:
        assert os.getxattr(layer_dir / "xattr", "user.pyctr") == b"yes"
    except OSError as err:  # a filesystem without user xattrs
        pytest.skip(f"user xattrs unsupported here: {err}")


def test_whiteouts_become_overlay_whiteouts_and_opaque_keeps_siblings(
    tmp_path: Path, layer_dir: Path
) -> None:
    data = _tar(
        _special("etc/", tarfile.DIRTYPE),
        _file("etc/.wh.passwd"),
        _special("opq/", tarfile.DIRTYPE),
        _file("opq/kept", b"mine\n"),  # before the marker: must survive it
        _file("opq/.wh..wh..opq"),
    )
    _extract(tmp_path, data, layer_dir)
    wh = os.lstat(layer_dir / "etc" / "passwd")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(layer_dir / "opq", "trusted.overlay.opaque") == b"y"
    assert (layer_dir / "opq" / "kept").read_text() == "mine\n"


def test_a_later_entry_replaces_an_earlier_one_of_another_kind(
    tmp_path: Path, layer_dir: Path
) -> None:
    data = _tar(
        _special("x/", tarfile.DIRTYPE),
        _file("x/inner", b"1"),
        _file("x", b"now a file"),
        _file("y", b"file"),
        _special("y/", tarfile.DIRTYPE),
    )
    _extract(tmp_path, data, layer_dir)
    assert (layer_dir / "x").read_bytes() == b"now a file"
    assert (layer_dir / "y").is_dir()


def _escapes(canary: Path) -> dict[str, bytes]:
    rel = os.path.relpath(canary, "/")
    return {
        "dotdot": _tar(_file("../canary/file", b"pwned")),
        "deep-dotdot": _tar(_file("a/../../canary/file", b"pwned")),
        "absolute": _tar(_file(f"/{rel}/file", b"pwned")),
        "symlink-out-then-write": _tar(
            _special("esc", tarfile.SYMTYPE, linkname=str(canary)), _file("esc/file", b"pwned")
        ),
        "relative-symlink-out-then-write": _tar(
            _special("esc", tarfile.SYMTYPE, linkname="../canary"), _file("esc/new", b"pwned")
        ),
        "symlink-replaces-dir-then-write": _tar(
            _special("d/", tarfile.DIRTYPE),
            _special("d", tarfile.SYMTYPE, linkname=str(canary / "sub")),
            _file("d/x", b"pwned"),
        ),
        "hardlink-to-outside": _tar(_special("h", tarfile.LNKTYPE, linkname="../canary/file")),
        "hardlink-absolute": _tar(_special("h", tarfile.LNKTYPE, linkname=str(canary / "file"))),
        "hardlink-through-symlink": _tar(
            _special("s", tarfile.SYMTYPE, linkname=str(canary)),
            _special("h", tarfile.LNKTYPE, linkname="s/file"),
        ),
        "empty-whiteout": _tar(_file("dir/.wh.")),
    }


@pytest.mark.parametrize("case", list(_escapes(Path("/x")).keys()))
def test_malicious_layer_fails_with_an_extract_error_and_touches_nothing_outside(
    tmp_path: Path, layer_dir: Path, canary: Path, case: str
) -> None:
    before = ctrkit.snapshot_tree(canary)
    with pytest.raises(native.ContainerError) as err:
        _extract(tmp_path, _escapes(canary)[case], layer_dir)
    assert err.value.step == "extract"
    assert "\n" not in str(err.value)
    assert ctrkit.snapshot_tree(canary) == before
    assert sorted(os.listdir(tmp_path)) == ["blob", "canary", "layer"]


def test_truncated_gzip_layer_is_an_error(tmp_path: Path, layer_dir: Path) -> None:
    data = gzip.compress(_tar(_file("f", b"x" * 50_000)))
    with pytest.raises(native.ContainerError):
        _extract(
            tmp_path,
            data[: len(data) // 2],
            layer_dir,
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
