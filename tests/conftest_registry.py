"""Registry fixtures (a pytest plugin: ``pytest_plugins = ["conftest_registry"]``).

* ``registry`` (session): Debian's docker-registry over plain HTTP on 127.0.0.1.
* ``auth_registry`` (session): the same with Basic auth (htpasswd, bcrypt).
* ``tls_registry`` (session): the same over TLS with a certificate from a test CA.
* ``pushed`` (session): busybox images pushed to ``registry`` with skopeo.
* ``fault_registry`` / ``make_fault_registry``: in-test Distribution servers
  that misbehave on request; stopped after the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import registry_kit as kit


def _need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (installed by .ci/setup)")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kit.Registry]:
    _need(kit.DOCKER_REGISTRY)
    reg = kit.Registry.start(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kit.Registry]:
    _need(kit.DOCKER_REGISTRY)
    reg = kit.Registry.start(
        tmp_path_factory.mktemp("auth-registry"), htpasswd=("tester", "s3cret-pw")
    )
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> kit.TestCA:
    _need("openssl")
    return kit.TestCA.make(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory, test_ca: kit.TestCA
) -> Iterator[kit.Registry]:
    _need(kit.DOCKER_REGISTRY)
    reg = kit.Registry.start(tmp_path_factory.mktemp("tls-registry"), ca=test_ca)
    yield reg
    reg.stop()


@dataclass
class Pushed:
    """What ``pushed`` put in ``registry``: name → the built image (or index)."""

    registry: kit.Registry
    images: dict[str, kit.BuiltImage]
    index_raw: bytes
    index_digest: str


@pytest.fixture(scope="session")
def pushed(registry: kit.Registry, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    """Busybox images in ``registry``:

    * ``test/busybox:oci`` (OCI, two gzip layers), ``test/busybox:v2s2`` (the
      same as Docker v2 schema 2), ``test/busybox:zstd`` (OCI, zstd layers);
    * ``test/multi:latest``: an OCI index with amd64 and arm64 entries whose
      second layer's ``/arch`` names the architecture.
    """
    _need("skopeo", "zstd", str(kit.BUSYBOX))
    layout = kit.OCILayout(tmp_path_factory.mktemp("oci-layout"))
    base = kit.busybox_layer()
    top = kit.tar_layer([kit.member("hello.txt", b"hello from layer 2\n")])
    images = {}
    images["oci"] = layout.add_image([base, top])
    layout.tag_image("oci", images["oci"])
    images["zstd"] = layout.add_image([base, top], compression="zstd")
    layout.tag_image("zstd", images["zstd"])
    for arch in ("amd64", "arm64"):
        arch_layer = kit.tar_layer([kit.member("arch", arch.encode())])
        images[arch] = layout.add_image([base, arch_layer], arch=arch)
    index_raw, index_digest = layout.add_index(
        [images["amd64"].descriptor("amd64"), images["arm64"].descriptor("arm64")]
    )
    layout.tag("multi", kit.OCI_INDEX, index_digest, len(index_raw))

    kit.skopeo_push(layout.dir, "oci", registry, "test/busybox:oci")
    kit.skopeo_push(layout.dir, "oci", registry, "test/busybox:v2s2", fmt="v2s2")
    kit.skopeo_push(layout.dir, "zstd", registry, "test/busybox:zstd")
    kit.skopeo_push(layout.dir, "multi", registry, "test/multi:latest", all_images=True)
    return Pushed(registry, images, index_raw, index_digest)


@pytest.fixture
def make_fault_registry() -> Iterator[Callable[..., kit.FaultRegistry]]:
    started: list[kit.FaultRegistry] = []

    def make(**options: object) -> kit.FaultRegistry:
        reg = kit.FaultRegistry(**options).start()  # type: ignore[arg-type]
        started.append(reg)
        return reg

    yield make
    for reg in started:
        reg.stop()


@pytest.fixture
def fault_registry(make_fault_registry: Callable[..., kit.FaultRegistry]) -> kit.FaultRegistry:
    return make_fault_registry()


@pytest.fixture
def certs_dir(tmp_path: Path) -> Path:
    d = tmp_path / "certs.d"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def redis_ref(registry: kit.Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The redis image (tests/redis_image.py) in the loopback registry:
    ``127.0.0.1:PORT/test/redis:7``."""

    import redis_image  # here: the leak guard's own tests load this plugin without it

    missing = redis_image.missing_tools()
    if missing:
        msg = f"the redis image needs {', '.join(missing)} (installed by .ci/setup)"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    ref, _ = redis_image.push_redis(tmp_path_factory.mktemp("redis-image"), registry)
    return ref
