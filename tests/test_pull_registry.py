"""``pull`` and ``run`` against real registries: Debian's docker-registry
(images pushed with skopeo) and registry_kit's fault-injecting server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import ctrkit
import imagekit
import pytest
import registry_kit as kit
from conftest_registry import Pushed
from pyctr_fast.store import Store

pytestmark = [pytest.mark.usefixtures("integration_ready"), pytest.mark.timeout(300)]

BASE = [("etc", "d", None, 0o755, 0, 0), ("etc/os", "f", "base\n", 0o644, 0, 0)]
APP = [("app", "d", None, 0o755, 0, 0), ("app/run", "f", "#!/bin/sh\n", 0o755, 0, 0)]
OTHER = [("other", "f", "x", 0o644, 0, 0)]


# --------------------------------------------------------------------------- real registries


def _status_lines(text: str, key: str) -> list[str]:
    return [ln.split(": ", 1)[1] for ln in text.splitlines() if ln.startswith(key + ": ")]


@pytest.mark.parametrize("tag", ["oci", "v2s2", "zstd"])
def test_cli_pull_from_docker_registry_then_run_it(
    engine: ctrkit.Engine, pushed: Pushed, tag: str
) -> None:
    name = f"{pushed.registry.host}/test/busybox:{tag}"
    res = engine.cli_run("pull", name, timeout=120)
    out = ctrkit.assert_ok(res)
    lines = out.splitlines()
    assert lines[0] == f"{tag}: Pulling from test/busybox"
    assert lines[-3].startswith("Digest: sha256:")
    assert lines[-2] == f"Status: Downloaded newer image for {name}"
    assert lines[-1] == name
    built = pushed.images["zstd" if tag == "zstd" else "oci"]
    for layer in built.layers:
        statuses = _status_lines(out, kit.sha256(layer)[7:19])
        assert statuses[0] == "Pulling fs layer" and statuses[-1] == "Pull complete", out
    res = engine.cli_run("run", "--rm", name, "/bin/busybox", "cat", "/hello.txt")
    assert ctrkit.assert_ok(res) == "hello from layer 2\n"
    # Second pull: nothing downloaded again.
    again = ctrkit.assert_ok(engine.cli_run("pull", name, timeout=60))
    for layer in built.layers:
        assert _status_lines(again, kit.sha256(layer)[7:19]) == ["Already exists"]
    assert f"Status: Image is up to date for {name}" in again


def test_cli_pull_of_a_multi_arch_index_picks_the_platform(
    engine: ctrkit.Engine, pushed: Pushed
) -> None:
    name = f"{pushed.registry.host}/test/multi:latest"
    ctrkit.assert_ok(engine.cli_run("pull", "--platform", "linux/arm64", name, timeout=120))
    store = Store(str(engine.root))
    record = store.get_image(store.refs()[name])
    assert record.id == kit.sha256(pushed.images["arm64"].config)
    assert record.repo_digests == [f"{pushed.registry.host}/test/multi@{pushed.index_digest}"]
    layer = Path(store.layer_diff_dir(record.layers[1]))
    assert (layer / "arch").read_text() == "arm64"


def test_run_pulls_a_missing_image_first(engine: ctrkit.Engine, pushed: Pushed) -> None:
    name = f"{pushed.registry.host}/test/busybox:oci"
    res = engine.cli_run("run", "--rm", name, "/bin/busybox", "cat", "/hello.txt", timeout=120)
    assert res.returncode == 0, res
    assert res.stdout == "hello from layer 2\n"
    assert f"Unable to find image '{name}' locally" in res.stderr


def _fault_image(reg: kit.FaultRegistry) -> tuple[str, list[str]]:
    tars = [imagekit.layer_tar(BASE), imagekit.layer_tar(APP), imagekit.layer_tar(OTHER)]
    gz = [kit.compress(t, "gzip") for t in tars]
    cfg = imagekit.image_config([kit.sha256(t) for t in tars])
    manifest = {
        "schemaVersion": 2,
        "mediaType": kit.OCI_MANIFEST,
        "config": reg.add_blob(cfg, kit.OCI_CONFIG),
        "layers": [reg.add_blob(b) for b in gz],
    }
    reg.add_manifest("test/app", "v1", json.dumps(manifest).encode())
    return f"{reg.host}/test/app:v1", [kit.sha256(b) for b in gz]


@pytest.mark.parametrize("fault", ["wrong-digest", "short", "500"])
def test_failed_pull_from_a_misbehaving_registry_leaves_the_store_unchanged(
    engine: ctrkit.Engine, fault_registry: kit.FaultRegistry, pushed: Pushed, fault: str
) -> None:
    ctrkit.assert_ok(engine.cli_run("pull", f"{pushed.registry.host}/test/busybox:oci"))
    before = imagekit.store_snapshot(engine.root)
    name, digests = _fault_image(fault_registry)
    fault_registry.plans[digests[2]] = [fault] * 10
    res = engine.cli_run("pull", name, timeout=120)
    assert res.returncode != 0, res
    assert imagekit.store_snapshot(engine.root) == before
    assert os.listdir(engine.root / "tmp") == []
    images = ctrkit.assert_ok(engine.cli_run("images"))
    assert "test/app" not in images and "test/busybox" in images


def test_dropped_connection_is_resumed_and_the_pull_succeeds(
    engine: ctrkit.Engine, fault_registry: kit.FaultRegistry
) -> None:
    name, digests = _fault_image(fault_registry)
    fault_registry.plans[digests[1]] = ["drop"]
    ctrkit.assert_ok(engine.cli_run("pull", name, timeout=120))
    assert len(Store(str(engine.root)).layer_ids()) == 3
