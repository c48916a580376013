"""``pull`` into the store: progress, sharing, concurrency, all-or-nothing.

These run the pull in-process against :class:`imagekit.FakeRegistry` (the
``RegistryClient`` surface from memory, with injectable faults); the real
registry is exercised by the registry tests.  Extraction is the native
``extract_layer`` when built, else imagekit's stand-in.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import threading
from pathlib import Path

import imagekit
import pytest
from pyctr_fast.errors import UserError
from pyctr_fast.pull import pull_image
from pyctr_fast.store import Store, chain_ids

pytestmark = pytest.mark.usefixtures("integration_ready")

BASE = [("etc", "d", None, 0o755, 0, 0), ("etc/os", "f", "base\n", 0o644, 0, 0)]
APP = [("app", "d", None, 0o755, 0, 0), ("app/run", "f", "#!/bin/sh\n", 0o755, 0, 0)]
OTHER = [("other", "f", "x", 0o644, 0, 0)]


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> imagekit.FakeRegistry:
    imagekit.use_extractor(monkeypatch)
    reg = imagekit.FakeRegistry()
    reg.add("docker.io/library/app:latest", [imagekit.layer_tar(BASE), imagekit.layer_tar(APP)])
    reg.add("docker.io/library/other:latest", [imagekit.layer_tar(BASE), imagekit.layer_tar(OTHER)])
    return reg


def _pull(root: Path, reg: imagekit.FakeRegistry, name: str) -> tuple[str, str]:
    out = io.StringIO()
    image_id = pull_image(Store(str(root)), name, client=reg, out=out, tty=False)
    return image_id, out.getvalue()


def test_pull_stores_layers_by_chain_id_and_prints_docker_progress(
    root: Path, registry: imagekit.FakeRegistry
) -> None:
    image_id, text = _pull(root, registry, "app")
    store = Store(str(root))
    record = store.get_image(image_id)
    assert record.repo_tags == ["docker.io/library/app:latest"]
    assert record.layers == chain_ids(record.diff_ids)
    for chain in record.layers:
        assert store.has_layer(chain)
    assert (Path(store.layer_diff_dir(record.layers[1])) / "app/run").read_text() == "#!/bin/sh\n"
    short = [d.digest[7:19] for d in registry.images["docker.io/library/app:latest"].layers]
    lines = text.splitlines()
    assert lines[0] == "Using default tag: latest"
    assert lines[1] == "latest: Pulling from library/app"
    for key in short:
        statuses = [ln.split(": ", 1)[1] for ln in lines if ln.startswith(key + ":")]
        assert statuses[0] == "Pulling fs layer"
        assert "Download complete" in statuses and "Extracting" in statuses
        assert statuses[-1] == "Pull complete"
    assert lines[-2] == f"Digest: {registry.images['docker.io/library/app:latest'].digest}"
    assert lines[-1] == "Status: Downloaded newer image for app:latest"
    assert store.refs() == {"docker.io/library/app:latest": image_id}
    # Verified blobs are kept: manifest, config, layers.
    m = registry.images["docker.io/library/app:latest"]
    for digest in (m.digest, m.config.digest, *[d.digest for d in m.layers]):
        assert store.has_blob(digest)


def test_second_pull_says_already_exists_and_up_to_date(
    root: Path, registry: imagekit.FakeRegistry
) -> None:
    _pull(root, registry, "app")
    before = dict(registry.fetched)
    _, text = _pull(root, registry, "app:latest")
    assert text.count("Already exists") == 2
    assert text.splitlines()[-1] == "Status: Image is up to date for app:latest"
    layer_digests = [d.digest for d in registry.images["docker.io/library/app:latest"].layers]
    assert all(registry.fetched[d] == before[d] for d in layer_digests)


def test_shared_base_layer_is_downloaded_and_stored_once(
    root: Path, registry: imagekit.FakeRegistry
) -> None:
    _pull(root, registry, "app")
    _, text = _pull(root, registry, "other")
    base_key = registry.images["docker.io/library/other:latest"].layers[0].digest[7:19]
    assert f"{base_key}: Already exists" in text
    assert len(os.listdir(root / "layers")) == 3


def test_concurrent_pulls_in_threads_store_one_copy(
    root: Path, registry: imagekit.FakeRegistry
) -> None:
    registry.gate = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _pull(root, registry, "app")
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    store = Store(str(root))
    assert len(store.layer_ids()) == 2
    assert len(store.images()) == 1
    assert os.listdir(root / "tmp") == [] and os.listdir(root / "locks") == []


def _child_pull(root: str, name: str, gate: multiprocessing.synchronize.Barrier) -> None:
    reg = imagekit.FakeRegistry()
    reg.add("docker.io/library/app:latest", [imagekit.layer_tar(BASE), imagekit.layer_tar(APP)])
    from pyctr_fast import _native

    if imagekit.native_extract() is None:
        _native.extract_layer = imagekit.py_extract_layer  # type: ignore[attr-defined]
    gate.wait(timeout=20)
    pull_image(Store(root), name, client=reg, out=io.StringIO(), tty=False)


def test_concurrent_pulls_in_processes_store_one_copy(root: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    gate = ctx.Barrier(3)
    procs = [ctx.Process(target=_child_pull, args=(str(root), "app", gate)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    store = Store(str(root))
    assert len(store.layer_ids()) == 2 and len(store.images()) == 1
    assert os.listdir(root / "tmp") == []


def test_failed_download_leaves_the_store_unchanged(
    root: Path, registry: imagekit.FakeRegistry
) -> None:
    _pull(root, registry, "app")
    before = imagekit.store_snapshot(root)
    bad = registry.images["docker.io/library/other:latest"].layers[1].digest
    registry.fail[bad] = UserError("blob unknown: truncated")
    with pytest.raises(UserError, match="truncated"):
        _pull(root, registry, "other")
    assert imagekit.store_snapshot(root) == before
    assert os.listdir(root / "tmp") == [] and os.listdir(root / "locks") == []


def test_diff_id_mismatch_fails_the_pull_and_stores_nothing(
    root: Path, registry: imagekit.FakeRegistry
) -> None:
    m = registry.images["docker.io/library/app:latest"]
    # Serve different (validly digested) content under the second layer's descriptor.
    import gzip

    evil = gzip.compress(imagekit.layer_tar(OTHER), mtime=0)
    registry.blobs[m.layers[1].digest] = evil
    m.layers[1].digest = imagekit.sha256(evil)
    registry.blobs[m.layers[1].digest] = evil
    with pytest.raises(UserError, match="diff id"):
        _pull(root, registry, "app")
    assert not (root / "layers").exists() or os.listdir(root / "layers") == []
    assert not (root / "images").exists() or os.listdir(root / "images") == []
    assert Store(str(root)).refs() == {}


def test_progress_on_a_terminal_rewrites_each_layer_line_in_place() -> None:
    from pyctr_fast.pull import Progress

    out = io.StringIO()
    p = Progress(out, tty=True)
    p.layer("aaa", "Pulling fs layer")
    p.layer("bbb", "Pulling fs layer")
    p.layer("aaa", "Downloading", 500, 1000)
    p.layer("bbb", "Pull complete")
    text = out.getvalue()
    assert text.startswith("aaa: Pulling fs layer\nbbb: Pulling fs layer\n")
    # Two lines up, clear, rewrite, two lines down; then one line up for bbb.
    assert "\x1b[2A\r\x1b[2Kaaa: Downloading [" in text and "500B/1kB" in text
    assert text.endswith("\x1b[1A\r\x1b[2Kbbb: Pull complete\x1b[1B\r")


def test_progress_without_a_terminal_prints_each_status_change_once() -> None:
    from pyctr_fast.pull import Progress

    out = io.StringIO()
    p = Progress(out, tty=False)
    for done in (1, 2, 3):
        p.layer("aaa", "Downloading", done, 3)
    p.layer("aaa", "Pull complete")
    assert out.getvalue() == "aaa: Downloading\naaa: Pull complete\n"
