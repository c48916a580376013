"""``cp``: copies between containers and the host, with Docker's rules, never
out of the container.

Running containers are reached through ``/proc/<pid>/root`` (their mounts
included), stopped image containers through their layers and upper dir,
stopped ``--rootfs`` containers through their rootfs.  Every view is checked
against symlinks that point out of the container (``/``, ``../../..``, an
absolute host path): nothing on the host may be read or written through them.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import ctrkit
import imagekit
import pytest
from ctrkit import Engine, assert_engine_error, assert_ok
from fakectr import Detached, detached

pytestmark = pytest.mark.usefixtures("integration_ready")

__all__ = ["detached"]  # the fixture


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host tree to copy from: a file owned by 1000, a directory with a
    subdirectory, a symlink and a hard link."""
    src = tmp_path / "src"
    (src / "tree" / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    os.chown(src / "a.txt", 1000, 1000)
    os.chmod(src / "a.txt", 0o640)
    (src / "tree" / "sub" / "b.txt").write_text("beta\n")
    (src / "tree" / "top.txt").write_text("top\n")
    os.symlink("sub/b.txt", src / "tree" / "link")
    os.link(src / "tree" / "top.txt", src / "tree" / "hard")
    os.chmod(src / "tree" / "sub", 0o750)
    return src


def cp(engine: Engine, *args: str, **kw: object) -> ctrkit.Result:
    return engine.cli_run("cp", *args, **kw)  # type: ignore[arg-type]


def owner(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


# --------------------------------------------------------------------------- running


def test_cp_host_to_running_container_and_back_follows_docker_rules(
    engine: Engine, detached: Detached, host: Path, tmp_path: Path
) -> None:
    cid = detached.run("sleep", "100", opts=["--name", "box"])
    croot = Path(f"/proc/{detached.pid(cid)}/root")

    assert_ok(cp(engine, str(host / "a.txt"), "box:/tmp/"))  # into a directory
    assert (croot / "tmp/a.txt").read_text() == "alpha\n"
    assert owner(croot / "tmp/a.txt") == (0, 0, 0o640)  # root's without -a, mode kept
    assert_ok(cp(engine, "-a", str(host / "a.txt"), "box:/tmp/kept.txt"))  # a new name
    assert owner(croot / "tmp/kept.txt") == (1000, 1000, 0o640)
    assert_ok(cp(engine, "-a", str(host / "a.txt"), "box:/tmp/over.txt"))
    (host / "a.txt").write_text("alpha 2\n")
    assert_ok(cp(engine, str(host / "a.txt"), "box:/tmp/over.txt"))  # overwrite a file
    assert (croot / "tmp/over.txt").read_text() == "alpha 2\n"
    assert owner(croot / "tmp/over.txt") == (0, 0, 0o640)

    assert_ok(cp(engine, str(host / "tree"), "box:/tmp"))  # a directory lands inside
    tree = croot / "tmp/tree"
    assert (tree / "sub/b.txt").read_text() == "beta\n"
    assert owner(tree / "sub") == (0, 0, 0o750)
    assert os.readlink(tree / "link") == "sub/b.txt"
    assert os.stat(tree / "hard").st_ino == os.stat(tree / "top.txt").st_ino
    assert_ok(cp(engine, str(host / "tree"), "box:/tmp/renamed"))  # a missing path: created
    assert sorted(os.listdir(croot / "tmp/renamed")) == ["hard", "link", "sub", "top.txt"]
    (croot / "tmp/into").mkdir()
    assert_ok(cp(engine, str(host / "tree") + "/.", "box:/tmp/into"))  # contents only
    assert sorted(os.listdir(croot / "tmp/into")) == ["hard", "link", "sub", "top.txt"]

    out = tmp_path / "out"
    out.mkdir()
    assert_ok(cp(engine, "box:/tmp/tree", str(out)))
    assert (out / "tree/sub/b.txt").read_text() == "beta\n"
    assert os.readlink(out / "tree/link") == "sub/b.txt"
    assert_ok(cp(engine, "box:/tmp/a.txt", str(out / "copy.txt")))
    assert (out / "copy.txt").read_text() == "alpha\n"
    assert_ok(cp(engine, "-a", "box:/tmp/kept.txt", str(out)))
    assert owner(out / "kept.txt") == (1000, 1000, 0o640)
    # /etc/hosts is the engine's file bind-mounted over the image's: the copy
    # sees the container's mounts, not its bare rootfs.
    assert_ok(cp(engine, "box:/etc/hosts", str(out / "hosts")))
    hosts = (engine.root / "containers" / cid / "hosts").read_text()
    assert (out / "hosts").read_text() == hosts != ctrkit.IMAGE_HOSTS


def test_cp_tar_streams_in_and_out(engine: Engine, detached: Detached, host: Path) -> None:
    cid = detached.run("sleep", "100", opts=["--name", "tarbox"])
    croot = Path(f"/proc/{detached.pid(cid)}/root")
    assert_ok(cp(engine, str(host / "tree"), "tarbox:/tmp"))

    res = subprocess.run(
        engine.argv("cp", "tarbox:/tmp/tree", "-"), capture_output=True, timeout=30
    )
    assert res.returncode == 0, res
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == [
            "tree", "tree/hard", "tree/link", "tree/sub", "tree/sub/b.txt", "tree/top.txt",
        ]  # fmt: skip
        assert members["tree/link"].issym() and members["tree/link"].linkname == "sub/b.txt"
        assert members["tree/hard"].islnk() or members["tree/top.txt"].islnk()
        f = tar.extractfile("tree/sub/b.txt")
        assert f is not None and f.read() == b"beta\n"

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("in/x.txt", b"x\n"), ("y.txt", b"y\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid = len(data), 0o604, 1000
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("in/l")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    assert_ok(cp(engine, "-", "tarbox:/tmp", input=buf.getvalue()))
    assert (croot / "tmp/in/x.txt").read_text() == "x\n"
    assert owner(croot / "tmp/in/x.txt") == (0, 0, 0o604)
    assert owner(croot / "tmp/in") == (0, 0, 0o755)  # a missing parent: made by cp
    assert os.readlink(croot / "tmp/in/l") == "/etc/passwd"
    assert (croot / "tmp/y.txt").read_text() == "y\n"

    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"!"))
    res = cp(engine, "-", "tarbox:/tmp", input=evil.getvalue())
    assert_engine_error(res, 1, "invalid path in archive")
    assert not (croot / "escaped.txt").exists() and not (croot / "tmp/escaped.txt").exists()
    res = cp(engine, "-", "tarbox:/etc/passwd", input=buf.getvalue())
    assert_engine_error(res, 1, 'destination "tarbox:/etc/passwd" must be a directory')


# --------------------------------------------------------------------------- stopped


LAYER2 = [
    ("data", "d", None, 0o755, 0, 0),
    ("data/keep", "f", "keep\n", 0o644, 0, 0),
    ("data/gone", "f", "gone\n", 0o644, 0, 0),
    ("data/dir", "d", None, 0o755, 0, 0),
    ("data/dir/old", "f", "old\n", 0o644, 0, 0),
    ("data/link", "l", "keep", 0o777, 0, 0),
    ("data/owned", "f", "o\n", 0o640, 1000, 1000),
]
LAYER3 = [
    ("data/gone", "w", None, 0, 0, 0),
    ("data/dir", "o", None, 0, 0, 0),
    ("data/dir/new", "f", "new\n", 0o600, 0, 0),
]
SCRIPT = (
    "if [ -e /data/stage2 ]; then ls -A /data/dir; cat /data/fresh; "
    "else rm -r /data/dir; echo removed; fi"
)


def load_image(engine: Engine, tmp_path: Path, tag: str, extra: list[imagekit.Entry]) -> str:
    archive = tmp_path / f"{tag.replace('/', '_')}.tar"
    layers = [
        imagekit.busybox_layer(tmp_path),
        imagekit.layer_tar(LAYER2 + extra),
        imagekit.layer_tar(LAYER3),
    ]
    image_id = imagekit.docker_archive(archive, layers, [tag], {"Cmd": ["/bin/sh"]})
    assert_ok(engine.cli_run("load", "-i", str(archive)))
    return image_id


def test_cp_stopped_image_container_reads_the_layers_and_writes_the_upper_dir(
    engine: Engine, detached: Detached, tmp_path: Path
) -> None:
    load_image(engine, tmp_path, "test/cp:1", [])
    cid = assert_ok(engine.cli_run("create", "--name", "img", "test/cp:1", "sh", "-c", SCRIPT))
    cid = cid.strip()
    detached.ids.append(cid)
    upper = engine.root / "containers" / cid / "upper"
    out = tmp_path / "out"
    out.mkdir()

    assert_ok(cp(engine, "img:/data/keep", str(out)))
    assert (out / "keep").read_text() == "keep\n"
    assert_ok(cp(engine, "-a", "img:/data/owned", str(out)))
    assert owner(out / "owned") == (1000, 1000, 0o640)
    assert_ok(cp(engine, "img:/data/dir", str(out)))  # opaque in layer 3: "old" is hidden
    assert sorted(os.listdir(out / "dir")) == ["new"]
    assert_ok(cp(engine, "img:/data/link", str(out)))
    assert os.readlink(out / "link") == "keep"
    assert_ok(cp(engine, "-L", "img:/data/link", str(out / "followed")))
    assert (out / "followed").read_text() == "keep\n"
    assert_engine_error(cp(engine, "img:/data/gone", str(out)), 1, "No such container:path")
    assert not (out / "gone").exists()

    # Writing: into the upper dir, whose /data is made like overlayfs' copy-up.
    (tmp_path / "fresh").write_text("fresh\n")
    assert_ok(cp(engine, str(tmp_path / "fresh"), "img:/data/"))
    assert (upper / "data/fresh").read_text() == "fresh\n"
    assert owner(upper / "data") == (0, 0, 0o755)
    assert not any(p.name == "fresh" for p in (engine.root / "layers").rglob("fresh"))
    [obj] = json.loads(assert_ok(engine.cli_run("inspect", "--size", "img")))
    keys = list(obj)
    assert keys[keys.index("GraphDriver") + 1 : keys.index("GraphDriver") + 3] == [
        "SizeRw",
        "SizeRootFs",
    ]
    assert obj["SizeRw"] == len("fresh\n")  # only the container's own layer
    assert obj["SizeRootFs"] > 100_000  # and the image's (busybox)

    # The container deletes /data/dir (a whiteout in upper); a directory copied
    # there replaces the whiteout and is opaque: layer 3's "new" stays hidden.
    res = engine.cli_run("start", "-a", "img", timeout=30)
    assert assert_ok(res) == "removed\n"
    assert stat.S_ISCHR(os.lstat(upper / "data/dir").st_mode)
    mine = tmp_path / "dir"
    mine.mkdir()
    (mine / "mine").write_text("m\n")
    assert_ok(cp(engine, str(mine), "img:/data/"))
    assert os.getxattr(upper / "data/dir", "trusted.overlay.opaque") == b"y"
    (tmp_path / "stage2").write_text("")
    assert_ok(cp(engine, str(tmp_path / "stage2"), "img:/data/stage2"))
    res = engine.cli_run("start", "-a", "img", timeout=30)
    assert assert_ok(res) == "mine\nfresh\n"


# --------------------------------------------------------------------------- escapes


def _escape_links(tmp_path: Path) -> list[tuple[str, str]]:
    rel = os.path.relpath(tmp_path, "/")
    return [
        ("evil", "/"),
        ("up", "../../../../../../../../../.."),
        ("abs", str(tmp_path)),  # the host's test dir, by absolute path
        ("deep", "../../../../../../../../../../" + rel),
        ("sneaky", str(tmp_path / "victim" / "pwned")),  # a dangling final component
    ]


@pytest.mark.parametrize("kind", ["running", "stopped-rootfs", "stopped-image"])
def test_cp_symlinks_in_the_container_never_lead_to_host_files(
    engine: Engine, detached: Detached, tmp_path: Path, kind: str
) -> None:
    links = _escape_links(tmp_path)
    (tmp_path / "canary").mkdir()
    (tmp_path / "canary" / "secret.txt").write_text("HOST SECRET\n")
    (tmp_path / "victim").mkdir()
    (tmp_path / "payload").write_text("payload\n")
    if kind == "stopped-image":
        extra = [(f"data/{name}", "l", target, 0o777, 0, 0) for name, target in links]
        load_image(engine, tmp_path, "test/escape:1", extra)
        cid = assert_ok(engine.cli_run("create", "--name", "esc", "test/escape:1")).strip()
        detached.ids.append(cid)
    else:
        (engine.rootfs / "data").mkdir()
        for name, target in links:
            os.symlink(target, engine.rootfs / "data" / name)
        if kind == "running":
            detached.run("sleep", "100", opts=["--name", "esc"])
        else:
            res = engine.cli_run("create", "--name", "esc", "--rootfs", str(engine.rootfs), "true")
            detached.ids.append(assert_ok(res).strip())
    before = ctrkit.snapshot_tree(tmp_path / "canary"), ctrkit.snapshot_tree(tmp_path / "victim")
    out = tmp_path / "out"
    out.mkdir()
    rel = os.path.relpath(tmp_path, "/")

    # Reading through the links finds nothing of the host's.
    for src in (
        "esc:/data/abs/canary/secret.txt",
        f"esc:/data/up/{rel}/canary/secret.txt",
        "esc:/data/deep/canary/secret.txt",
        f"esc:/data/evil/{rel}/canary",
    ):
        assert_engine_error(cp(engine, src, str(out / "got")), 1, "No such container:path")
    assert_engine_error(cp(engine, "-L", "esc:/data/abs", str(out / "got")), 1, "No such")
    assert not (out / "got").exists()
    # "/" through a link is the container's root: its /etc/passwd, not the host's.
    assert_ok(cp(engine, "esc:/data/evil/etc/passwd", str(out / "passwd")))
    assert_ok(cp(engine, "esc:/data/up/etc/passwd", str(out / "passwd2")))
    assert (out / "passwd").read_text() == ctrkit.PASSWD == (out / "passwd2").read_text()
    # Without -L the link itself is copied, as a link.
    assert_ok(cp(engine, "esc:/data/abs", str(out / "abs")))
    assert os.readlink(out / "abs") == str(tmp_path)

    # Writing through the links never reaches the host either.
    payload = str(tmp_path / "payload")
    for dst in (
        "esc:/data/abs/victim/",
        "esc:/data/abs/victim/pwned",
        f"esc:/data/up/{rel}/victim/pwned",
        "esc:/data/deep/victim/pwned",
        "esc:/data/sneaky",
    ):
        res = cp(engine, payload, dst)
        assert_engine_error(res, 1)
    assert_ok(cp(engine, payload, "esc:/data/evil/tmp/"))  # "/" is the container's
    assert (
        ctrkit.snapshot_tree(tmp_path / "canary"),
        ctrkit.snapshot_tree(tmp_path / "victim"),
    ) == before
    assert not (tmp_path / "victim" / "pwned").exists()
    if kind == "stopped-image":
        res = engine.cli_run("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "esc")
        upper = assert_ok(res).strip()
        assert (Path(upper) / "tmp/payload").read_text() == "payload\n"
    elif kind == "stopped-rootfs":
        assert (engine.rootfs / "tmp/payload").read_text() == "payload\n"
    else:
        pid = json.loads(assert_ok(engine.cli_run("inspect", "esc")))[0]["State"]["Pid"]
        assert Path(f"/proc/{pid}/root/tmp/payload").read_text() == "payload\n"


# --------------------------------------------------------------------------- errors


def test_cp_errors_are_one_line_and_change_nothing(
    engine: Engine, detached: Detached, host: Path, tmp_path: Path
) -> None:
    cid = detached.run("sleep", "100", opts=["--name", "errbox"])
    croot = Path(f"/proc/{detached.pid(cid)}/root")
    out = tmp_path / "out"
    out.mkdir()
    a = str(host / "a.txt")
    cases = [
        (("errbox:/nope", str(out)), "No such container:path: errbox:/nope"),
        (("ghost:/etc", str(out)), "No such container: ghost"),
        ((a, str(out / "x")), "must specify at least one container source"),
        (("errbox:/etc", "errbox:/tmp"), "copying between containers is not supported"),
        ((str(host / "missing"), "errbox:/tmp"), "no such file or directory"),
        ((str(host / "tree"), "errbox:/etc/passwd"), "cannot copy a directory to a file"),
        ((a, "errbox:/no/such/dir/x"), "No such container:path: errbox:/no/such/dir/x"),
        ((a, "errbox:/tmp/newdir/"), "no such directory"),
        ((a, "errbox:/etc/passwd/"), "not a directory: errbox:/etc/passwd/"),
        (("errbox:/etc", str(host / "a.txt")), "cannot copy a directory to a file"),
        (("errbox:/etc/passwd/", str(out)), "not a directory"),
    ]
    for args, needle in cases:
        assert_engine_error(cp(engine, *args), 1, needle)
    assert os.listdir(out) == []
    assert not (croot / "tmp/newdir").exists() and not (croot / "tmp/x").exists()
    (croot / "tmp/adir").mkdir()
    (croot / "tmp/adir/inside").write_text("keep\n")
    adir = tmp_path / "adir"
    adir.write_text("a file now\n")  # a file named like the container's directory
    assert_engine_error(cp(engine, str(adir), "errbox:/tmp/"), 1, "cannot overwrite directory")
    assert (croot / "tmp/adir/inside").read_text() == "keep\n"
    assert_engine_error(cp(engine, "errbox:/etc"), 125, '"cp" requires exactly 2 arguments')


def test_cp_into_a_read_only_container_is_refused(
    engine: Engine, detached: Detached, host: Path
) -> None:
    detached.run("sleep", "100", opts=["--name", "ro", "--read-only"])
    res = cp(engine, str(host / "a.txt"), "ro:/tmp/")
    assert_engine_error(res, 1, "read-only")
    assert_ok(engine.cli_run("stop", "-t", "1", "ro"))
    res = cp(engine, str(host / "a.txt"), "ro:/tmp/")
    assert_engine_error(res, 1, "container rootfs is marked read-only")
    assert not (engine.rootfs / "tmp/a.txt").exists()
