"""The registry client against Debian's docker-registry and an in-test fault server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import registry_kit as kit
from conftest_registry import Pushed
from pyctr_fast import reference
from pyctr_fast.auth import Credentials, CredentialStore, parse_challenge
from pyctr_fast.errors import UserError
from pyctr_fast.manifests import ACCEPT_MANIFESTS, Descriptor, RegistryError, host_platform
from pyctr_fast.registry import RegistryClient

pytestmark = pytest.mark.timeout(120)

FOUR_TYPES = {
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
}


@pytest.fixture
def make_client() -> Iterator[Callable[..., RegistryClient]]:
    made: list[RegistryClient] = []

    def make(**options: object) -> RegistryClient:
        options.setdefault("retry_delay", 0.01)
        options.setdefault("certs_dir", "/nonexistent-certs.d")
        c = RegistryClient(**options)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def client(make_client: Callable[..., RegistryClient]) -> RegistryClient:
    return make_client()


def ref(host: str, rest: str) -> reference.Reference:
    return reference.parse(f"{host}/{rest}")


def write_config(tmp_path: Path, config: dict[str, object]) -> CredentialStore:
    d = tmp_path / "docker-config"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(config))
    return CredentialStore(str(d))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ------------------------------------------------------------------ manifests (real registry)


def test_oci_manifest_from_registry_lists_config_and_layers(
    pushed: Pushed, client: RegistryClient
) -> None:
    built = pushed.images["oci"]
    m = client.get_manifest(ref(pushed.registry.host, "test/busybox:oci"))
    assert m.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert m.digest == built.manifest_digest
    assert m.digest == "sha256:" + hashlib.sha256(m.raw).hexdigest()
    assert m.index_digest is None
    assert m.config.digest == kit.sha256(built.config)
    assert [(d.digest, d.size) for d in m.layers] == [(kit.sha256(b), len(b)) for b in built.layers]
    assert {d.media_type for d in m.layers} == {"application/vnd.oci.image.layer.v1.tar+gzip"}


def test_docker_v2s2_manifest_keeps_docker_media_types(
    pushed: Pushed, client: RegistryClient
) -> None:
    m = client.get_manifest(ref(pushed.registry.host, "test/busybox:v2s2"))
    assert m.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert m.config.media_type == "application/vnd.docker.container.image.v1+json"
    assert {d.media_type for d in m.layers} == {kit.DOCKER_LAYER}
    assert [d.digest for d in m.layers] == [kit.sha256(b) for b in pushed.images["oci"].layers]


def test_zstd_layers_are_listed_with_their_media_type(
    pushed: Pushed, client: RegistryClient
) -> None:
    m = client.get_manifest(ref(pushed.registry.host, "test/busybox:zstd"))
    assert {d.media_type for d in m.layers} == {"application/vnd.oci.image.layer.v1.tar+zstd"}


def test_pinned_digest_fetches_that_manifest(pushed: Pushed, client: RegistryClient) -> None:
    digest = pushed.images["oci"].manifest_digest
    m = client.get_manifest(ref(pushed.registry.host, f"test/busybox@{digest}"))
    assert m.digest == digest


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_index_resolves_the_requested_platform(
    pushed: Pushed, client: RegistryClient, arch: str
) -> None:
    m = client.get_manifest(ref(pushed.registry.host, "test/multi:latest"), f"linux/{arch}")
    assert m.digest == pushed.images[arch].manifest_digest
    assert m.index_digest == pushed.index_digest


def test_index_defaults_to_the_host_platform(pushed: Pushed, client: RegistryClient) -> None:
    host = host_platform()
    if host.architecture not in ("amd64", "arm64"):
        pytest.skip(f"test index has no {host}")
    m = client.get_manifest(ref(pushed.registry.host, "test/multi:latest"))
    assert m.digest == pushed.images[host.architecture].manifest_digest


def test_index_without_the_platform_says_no_matching_manifest(
    pushed: Pushed, client: RegistryClient
) -> None:
    with pytest.raises(RegistryError) as err:
        client.get_manifest(ref(pushed.registry.host, "test/multi:latest"), "linux/s390x")
    assert str(err.value) == "no matching manifest for linux/s390x in the manifest list entries"


def test_missing_tag_is_manifest_unknown(pushed: Pushed, client: RegistryClient) -> None:
    with pytest.raises(RegistryError, match="not found: manifest unknown"):
        client.get_manifest(ref(pushed.registry.host, "test/busybox:nosuchtag"))


def test_blob_download_is_verified_and_complete(
    pushed: Pushed, client: RegistryClient, tmp_path: Path
) -> None:
    r = ref(pushed.registry.host, "test/busybox:zstd")
    m = client.get_manifest(r)
    seen: list[tuple[int, int]] = []
    for i, desc in enumerate(m.layers):
        dest = tmp_path / f"layer{i}"
        client.fetch_blob(r, desc, str(dest), progress=lambda d, t: seen.append((d, t)))
        assert dest.read_bytes() == pushed.images["zstd"].layers[i]
    assert seen[-1] == (m.layers[-1].size, m.layers[-1].size)
    assert all(d <= t for d, t in seen)


def test_blob_fetch_overwrites_an_existing_dest(
    pushed: Pushed, client: RegistryClient, tmp_path: Path
) -> None:
    r = ref(pushed.registry.host, "test/busybox:oci")
    m = client.get_manifest(r)
    dest = tmp_path / "cfg"
    dest.write_bytes(b"x" * 100_000)
    client.fetch_blob(r, m.config, str(dest))
    assert dest.read_bytes() == pushed.images["oci"].config


# --------------------------------------------------------------------------- auth (real registry)


def test_basic_auth_registry_with_stored_credentials(
    auth_registry: kit.Registry, tmp_path: Path, make_client: Callable[..., RegistryClient]
) -> None:
    layout = kit.OCILayout(tmp_path / "layout")
    img = layout.add_image([kit.tar_layer([kit.member("f", b"basic")])])
    layout.tag_image("t", img)
    kit.skopeo_push(layout.dir, "t", auth_registry, "auth/img:t")
    store = write_config(
        tmp_path, {"auths": {auth_registry.host: {"auth": b64("tester:s3cret-pw")}}}
    )
    c = make_client(credentials=store)
    r = ref(auth_registry.host, "auth/img:t")
    m = c.get_manifest(r)
    assert m.digest == img.manifest_digest
    c.fetch_blob(r, m.layers[0], str(tmp_path / "l"))
    assert (tmp_path / "l").read_bytes() == img.layers[0]


def test_basic_auth_registry_without_credentials_is_pull_access_denied(
    auth_registry: kit.Registry, client: RegistryClient
) -> None:
    with pytest.raises(RegistryError, match=r"pull access denied for 127\.0\.0\.1"):
        client.get_manifest(ref(auth_registry.host, "auth/img:t"))


def test_basic_auth_registry_with_wrong_password_is_unauthorized(
    auth_registry: kit.Registry, tmp_path: Path, make_client: Callable[..., RegistryClient]
) -> None:
    store = write_config(tmp_path, {"auths": {auth_registry.host: {"auth": b64("tester:nope")}}})
    c = make_client(credentials=store)
    with pytest.raises(RegistryError) as err:
        c.get_manifest(ref(auth_registry.host, "auth/img:t"))
    assert str(err.value) == f"unauthorized: authentication required for {auth_registry.host}"


def test_login_checks_the_password_and_stores_it_in_auths(
    auth_registry: kit.Registry, tmp_path: Path, client: RegistryClient
) -> None:
    store = CredentialStore(str(tmp_path / "cfg"))
    with pytest.raises(RegistryError, match="unauthorized"):
        store.login(auth_registry.host, "tester", "wrong", client=client)
    assert not (tmp_path / "cfg" / "config.json").exists()
    store.login(auth_registry.host, "tester", "s3cret-pw", client=client)
    config = json.loads((tmp_path / "cfg" / "config.json").read_text())
    assert config["auths"][auth_registry.host]["auth"] == b64("tester:s3cret-pw")
    assert stat.S_IMODE((tmp_path / "cfg" / "config.json").stat().st_mode) == 0o600
    assert store.get(auth_registry.host) == Credentials("tester", "s3cret-pw")
    assert store.logout(auth_registry.host) is True
    assert store.get(auth_registry.host) is None
    assert store.logout(auth_registry.host) is False


# --------------------------------------------------------------------------- TLS (real registry)


def _push_small(registry: kit.Registry, tmp_path: Path, name: str) -> kit.BuiltImage:
    layout = kit.OCILayout(tmp_path / "layout")
    img = layout.add_image([kit.tar_layer([kit.member("f", b"tls")])])
    layout.tag_image("t", img)
    kit.skopeo_push(layout.dir, "t", registry, name)
    return img


def test_tls_registry_verified_with_the_ca_from_certs_dir(
    tls_registry: kit.Registry,
    test_ca: kit.TestCA,
    certs_dir: Path,
    tmp_path: Path,
    make_client: Callable[..., RegistryClient],
) -> None:
    img = _push_small(tls_registry, tmp_path, "tls/img:t")
    test_ca.certs_dir(certs_dir, tls_registry.host)
    c = make_client(certs_dir=str(certs_dir))
    m = c.get_manifest(ref(tls_registry.host, "tls/img:t"))
    assert m.digest == img.manifest_digest
    assert c._schemes[tls_registry.host] == "https"


def test_tls_registry_with_an_untrusted_ca_is_refused(
    tls_registry: kit.Registry,
    certs_dir: Path,
    tmp_path: Path,
    make_client: Callable[..., RegistryClient],
) -> None:
    other = kit.TestCA.make(tmp_path / "other-ca", name="another CA")
    other.certs_dir(certs_dir, tls_registry.host)
    c = make_client(certs_dir=str(certs_dir))
    with pytest.raises(RegistryError, match=r"certificate of 127\.0\.0\.1:\d+ not trusted"):
        c.get_manifest(ref(tls_registry.host, "tls/img:t"))


def test_plain_http_registry_on_loopback_falls_back_to_http(
    pushed: Pushed, client: RegistryClient
) -> None:
    client.get_manifest(ref(pushed.registry.host, "test/busybox:oci"))
    assert client._schemes[pushed.registry.host] == "http"


def test_plain_http_is_refused_for_other_hosts(client: RegistryClient) -> None:
    assert not client.is_insecure("registry.example.com")
    assert not client.is_insecure("10.0.0.1:5000")
    with pytest.raises(RegistryError, match=r"refusing plain HTTP to registry\.example\.com"):
        client._send("GET", "http://registry.example.com/v2/", {})


def test_insecure_hosts_and_loopback_may_use_http(
    make_client: Callable[..., RegistryClient],
) -> None:
    c = make_client(insecure=["myreg:5000"])
    assert c.is_insecure("myreg:5000")
    assert not c.is_insecure("myreg:5001")
    for host in ("localhost", "localhost:5000", "127.0.0.1", "127.8.9.10:80", "[::1]:5000"):
        assert c.is_insecure(host), host


# ------------------------------------------------------------------ fault server: manifests


def test_manifest_request_accepts_all_four_media_types(
    fault_registry: kit.FaultRegistry, client: RegistryClient
) -> None:
    fault_registry.add_image("a/b", "t", [b"layer"])
    client.get_manifest(ref(fault_registry.host, "a/b:t"))
    accept = next(s for s in fault_registry.seen if "/manifests/" in s.path).headers["Accept"]
    assert {t.strip() for t in accept.split(",")} == FOUR_TYPES
    assert {t.strip() for t in ACCEPT_MANIFESTS.split(",")} == FOUR_TYPES


def test_pinned_manifest_with_other_content_is_refused(
    fault_registry: kit.FaultRegistry, client: RegistryClient
) -> None:
    digest, _ = fault_registry.add_image("a/b", None, [b"layer"])
    wrong = "sha256:" + "0" * 64
    fault_registry.manifests[("a/b", wrong)] = fault_registry.manifests[("a/b", digest)]
    with pytest.raises(RegistryError, match=f"manifest digest mismatch.*expected {wrong}"):
        client.get_manifest(ref(fault_registry.host, f"a/b@{wrong}"))


def test_docker_content_digest_that_disagrees_is_refused(
    make_fault_registry: Callable[..., kit.FaultRegistry], client: RegistryClient
) -> None:
    reg = make_fault_registry(send_digest_header="sha256:" + "1" * 64)
    reg.add_image("a/b", "t", [b"layer"])
    with pytest.raises(RegistryError, match="registry says sha256:1111"):
        client.get_manifest(ref(reg.host, "a/b:t"))


def test_schema1_manifest_is_refused_as_deprecated(
    fault_registry: kit.FaultRegistry, client: RegistryClient
) -> None:
    raw = json.dumps({"schemaVersion": 1, "name": "a/b", "tag": "t", "fsLayers": []}).encode()
    fault_registry.add_manifest(
        "a/b", "t", raw, "application/vnd.docker.distribution.manifest.v1+prettyjws"
    )
    with pytest.raises(RegistryError) as err:
        client.get_manifest(ref(fault_registry.host, "a/b:t"))
    assert str(err.value).startswith(
        "unsupported manifest: Docker image manifest schema 1 is deprecated;"
    )


def test_requests_reuse_one_connection(
    fault_registry: kit.FaultRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    fault_registry.add_image("a/b", "t", [b"one", b"two"])
    r = ref(fault_registry.host, "a/b:t")
    m = client.get_manifest(r)
    for i, d in enumerate(m.layers):
        client.fetch_blob(r, d, str(tmp_path / str(i)))
    assert len(fault_registry.seen) == 4
    assert len({s.client_port for s in fault_registry.seen}) == 1


# --------------------------------------------------------------------------- fault server: blobs


def _blob(reg: kit.FaultRegistry, size: int = 300_000) -> tuple[Descriptor, bytes]:
    data = os.urandom(size)
    d = reg.add_blob(data)
    return Descriptor(d["mediaType"], d["digest"], d["size"]), data


def test_blob_with_wrong_digest_fails_and_leaves_no_file(
    fault_registry: kit.FaultRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    desc, _ = _blob(fault_registry)
    fault_registry.plans[desc.digest] = ["wrong-digest"]
    dest = tmp_path / "blob"
    with pytest.raises(RegistryError) as err:
        client.fetch_blob(ref(fault_registry.host, "a/b"), desc, str(dest))
    assert desc.digest in str(err.value) and "digest mismatch" in str(err.value)
    assert "\n" not in str(err.value)
    assert not dest.exists()


@pytest.mark.parametrize("action", ["long", "short"])
def test_blob_of_wrong_size_fails_and_leaves_no_file(
    fault_registry: kit.FaultRegistry, client: RegistryClient, tmp_path: Path, action: str
) -> None:
    desc, _ = _blob(fault_registry)
    fault_registry.plans[desc.digest] = [action]
    dest = tmp_path / "blob"
    with pytest.raises(RegistryError, match=f"{desc.digest}: size mismatch"):
        client.fetch_blob(ref(fault_registry.host, "a/b"), desc, str(dest))
    assert not dest.exists()
    assert len(fault_registry.blob_gets(desc.digest)) == 1  # not retried


def test_blob_truncated_every_time_fails_after_the_retries(
    make_fault_registry: Callable[..., kit.FaultRegistry],
    make_client: Callable[..., RegistryClient],
    tmp_path: Path,
) -> None:
    reg = make_fault_registry(ranges=False)
    desc, _ = _blob(reg)
    reg.plans[desc.digest] = ["drop"] * 10
    dest = tmp_path / "blob"
    c = make_client(max_retries=2)
    with pytest.raises(RegistryError, match=f"{desc.digest}: connection lost .*after 3 attempts"):
        c.fetch_blob(ref(reg.host, "a/b"), desc, str(dest))
    assert not dest.exists()
    assert len(reg.blob_gets(desc.digest)) == 3


def test_dropped_blob_download_resumes_with_range(
    fault_registry: kit.FaultRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    desc, data = _blob(fault_registry)
    fault_registry.plans[desc.digest] = ["drop"]
    dest = tmp_path / "blob"
    client.fetch_blob(ref(fault_registry.host, "a/b"), desc, str(dest))
    assert dest.read_bytes() == data
    gets = fault_registry.blob_gets(desc.digest)
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    assert gets[1].headers["Range"] == f"bytes={len(data) // 2}-"


def test_dropped_blob_restarts_when_the_server_ignores_range(
    make_fault_registry: Callable[..., kit.FaultRegistry],
    client: RegistryClient,
    tmp_path: Path,
) -> None:
    reg = make_fault_registry(ranges=False)
    desc, data = _blob(reg)
    reg.plans[desc.digest] = ["drop"]
    dest = tmp_path / "blob"
    client.fetch_blob(ref(reg.host, "a/b"), desc, str(dest))
    assert dest.read_bytes() == data
    assert len(reg.blob_gets(desc.digest)) == 2


def test_server_error_is_retried_then_succeeds(
    fault_registry: kit.FaultRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    desc, data = _blob(fault_registry)
    fault_registry.plans[desc.digest] = ["500", "500"]
    client.fetch_blob(ref(fault_registry.host, "a/b"), desc, str(tmp_path / "b"))
    assert (tmp_path / "b").read_bytes() == data
    assert len(fault_registry.blob_gets(desc.digest)) == 3


def test_too_many_server_errors_fail_with_the_status(
    fault_registry: kit.FaultRegistry, make_client: Callable[..., RegistryClient], tmp_path: Path
) -> None:
    desc, _ = _blob(fault_registry)
    fault_registry.plans[desc.digest] = ["500"] * 5
    with pytest.raises(RegistryError, match=r"HTTP 500 \(after 2 attempts\)"):
        make_client(max_retries=1).fetch_blob(
            ref(fault_registry.host, "a/b"), desc, str(tmp_path / "b")
        )
    assert not (tmp_path / "b").exists()


def test_429_waits_for_retry_after(
    fault_registry: kit.FaultRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    desc, data = _blob(fault_registry)
    fault_registry.plans[desc.digest] = ["429:1"]
    start = time.monotonic()
    client.fetch_blob(ref(fault_registry.host, "a/b"), desc, str(tmp_path / "b"))
    assert time.monotonic() - start >= 0.95  # the backoff alone is 0.01 s
    assert (tmp_path / "b").read_bytes() == data


def test_retry_after_is_capped(
    fault_registry: kit.FaultRegistry, make_client: Callable[..., RegistryClient], tmp_path: Path
) -> None:
    desc, _ = _blob(fault_registry)
    fault_registry.plans[desc.digest] = ["429:3600"]
    start = time.monotonic()
    make_client(max_retry_after=0.2).fetch_blob(
        ref(fault_registry.host, "a/b"), desc, str(tmp_path / "b")
    )
    assert time.monotonic() - start < 5


def test_missing_blob_is_not_found(
    fault_registry: kit.FaultRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    desc = Descriptor("x", "sha256:" + "2" * 64, 3)
    with pytest.raises(RegistryError, match="not found"):
        client.fetch_blob(ref(fault_registry.host, "a/b"), desc, str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()


def test_blob_with_malformed_digest_is_refused_before_any_request(
    fault_registry: kit.FaultRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    desc = Descriptor("x", "sha256:../../etc/passwd", 3)
    with pytest.raises(RegistryError, match="invalid digest"):
        client.fetch_blob(ref(fault_registry.host, "a/b"), desc, str(tmp_path / "b"))
    assert fault_registry.seen == []


def test_redirect_to_another_host_drops_authorization(
    make_fault_registry: Callable[..., kit.FaultRegistry],
    tmp_path: Path,
    make_client: Callable[..., RegistryClient],
) -> None:
    storage = make_fault_registry()
    reg = make_fault_registry(auth="basic", users={"u": "p"}, redirect_to=storage)
    desc, data = _blob(reg)
    storage.blobs[desc.digest] = data
    reg.plans[desc.digest] = ["redirect"]
    store = write_config(tmp_path, {"auths": {reg.host: {"username": "u", "password": "p"}}})
    make_client(credentials=store).fetch_blob(ref(reg.host, "a/b"), desc, str(tmp_path / "b"))
    assert (tmp_path / "b").read_bytes() == data
    assert reg.blob_gets(desc.digest)[-1].headers["Authorization"].startswith("Basic ")
    (hop,) = storage.blob_gets(desc.digest)
    assert "Authorization" not in hop.headers


# --------------------------------------------------------------------------- Bearer tokens


def test_anonymous_bearer_token_is_scoped_and_cached(
    make_fault_registry: Callable[..., kit.FaultRegistry],
    client: RegistryClient,
    tmp_path: Path,
) -> None:
    reg = make_fault_registry(auth="bearer")
    reg.add_image("ns/app", "t", [b"layer"])
    r = ref(reg.host, "ns/app:t")
    m = client.get_manifest(r)
    client.fetch_blob(r, m.layers[0], str(tmp_path / "b"))
    client.get_manifest(r)
    assert len(reg.token_requests) == 1
    query = reg.token_requests[0].path
    assert "scope=repository%3Ans%2Fapp%3Apull" in query and "service=fault-registry" in query
    assert "Authorization" not in reg.token_requests[0].headers
    authed = [s for s in reg.seen if s.path != "/v2/"]
    assert all(s.headers.get("Authorization") == "Bearer tok-1" for s in authed)


def test_bearer_token_is_fetched_again_after_it_expires(
    make_fault_registry: Callable[..., kit.FaultRegistry], client: RegistryClient
) -> None:
    reg = make_fault_registry(auth="bearer", token_expires_in=1)
    reg.add_image("ns/app", "t", [b"layer"])
    r = ref(reg.host, "ns/app:t")
    client.get_manifest(r)
    client.get_manifest(r)
    assert len(reg.token_requests) == 1
    time.sleep(1.0)
    client.get_manifest(r)
    assert len(reg.token_requests) == 2


def test_bearer_token_with_credentials_sends_them_to_the_token_server(
    make_fault_registry: Callable[..., kit.FaultRegistry],
    make_client: Callable[..., RegistryClient],
    tmp_path: Path,
) -> None:
    reg = make_fault_registry(auth="bearer", users={"alice": "pw"})
    reg.add_image("ns/app", "t", [b"layer"])
    store = write_config(tmp_path, {"auths": {f"http://{reg.host}/v2/": {"auth": b64("alice:pw")}}})
    make_client(credentials=store).get_manifest(ref(reg.host, "ns/app:t"))
    assert reg.token_requests[0].headers["Authorization"] == "Basic " + b64("alice:pw")


def test_bearer_token_with_bad_credentials_is_unauthorized(
    make_fault_registry: Callable[..., kit.FaultRegistry],
    make_client: Callable[..., RegistryClient],
    tmp_path: Path,
) -> None:
    reg = make_fault_registry(auth="bearer", users={"alice": "pw"})
    reg.add_image("ns/app", "t", [b"layer"])
    store = write_config(tmp_path, {"auths": {reg.host: {"auth": b64("alice:bad")}}})
    with pytest.raises(RegistryError) as err:
        make_client(credentials=store).get_manifest(ref(reg.host, "ns/app:t"))
    assert str(err.value) == f"unauthorized: authentication required for {reg.host}"


def test_login_against_a_token_registry_checks_the_credentials(
    make_fault_registry: Callable[..., kit.FaultRegistry],
    client: RegistryClient,
    tmp_path: Path,
) -> None:
    reg = make_fault_registry(auth="bearer", users={"alice": "pw"})
    store = CredentialStore(str(tmp_path / "cfg"))
    with pytest.raises(RegistryError, match="unauthorized"):
        store.login(reg.host, "alice", "bad", client=client)
    store.login(reg.host, "alice", "pw", client=client)
    assert store.get(reg.host) == Credentials("alice", "pw")


def test_identity_token_uses_the_oauth2_refresh_grant(
    make_fault_registry: Callable[..., kit.FaultRegistry],
    make_client: Callable[..., RegistryClient],
    tmp_path: Path,
) -> None:
    reg = make_fault_registry(auth="bearer")
    reg.add_image("ns/app", "t", [b"layer"])
    store = write_config(tmp_path, {"auths": {reg.host: {"identitytoken": "refresh-me"}}})
    make_client(credentials=store).get_manifest(ref(reg.host, "ns/app:t"))
    assert reg.token_requests[0].method == "POST"


def test_parse_challenge_reads_quoted_parameters() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/redis:pull,push"'
    )
    assert c is not None and c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/redis:pull,push",
    }


# --------------------------------------------------------------------------- credential store


def test_credentials_from_auths_username_and_password(tmp_path: Path) -> None:
    store = write_config(tmp_path, {"auths": {"reg:5000": {"username": "u", "password": "p"}}})
    assert store.get("reg:5000") == Credentials("u", "p")
    assert store.get("other") is None


def test_docker_hub_credentials_use_the_index_v1_key(tmp_path: Path) -> None:
    store = write_config(
        tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": b64("hub:pw")}}}
    )
    assert store.get("registry-1.docker.io") == Credentials("hub", "pw")
    assert store.get("docker.io") == Credentials("hub", "pw")


def test_docker_config_env_var_chooses_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, {"auths": {"r": {"auth": b64("a:b")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    assert CredentialStore().get("r") == Credentials("a", "b")


def test_broken_auth_entry_is_a_user_error(tmp_path: Path) -> None:
    store = write_config(tmp_path, {"auths": {"r": {"auth": b64("no-colon")}}})
    with pytest.raises(UserError, match="invalid auth configuration for r"):
        store.get("r")


def _helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / f"{name}.log"
    script = bindir / f"docker-credential-{name}"
    script.write_text(
        f"#!{sys.executable}\nimport sys, json\nact = sys.argv[1]\ndata = sys.stdin.read()\n"
        f"open({str(log)!r}, 'a').write(act + ' ' + data + '\\n')\n{body}\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return log


def test_cred_helper_for_the_host_is_asked_with_the_server_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = "print(json.dumps({'ServerURL': data, 'Username': 'hu', 'Secret': 'hs'}))"
    log = _helper(tmp_path, monkeypatch, "fake", reply)
    store = write_config(
        tmp_path,
        {
            "credHelpers": {"reg.example:443": "fake"},
            "auths": {"reg.example:443": {"auth": b64("no:used")}},
        },
    )
    assert store.get("reg.example:443") == Credentials("hu", "hs")
    assert log.read_text() == "get reg.example:443\n"


def test_creds_store_helper_not_found_falls_back_to_auths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _helper(
        tmp_path,
        monkeypatch,
        "empty",
        "print('credentials not found in native keychain'); sys.exit(1)",
    )
    store = write_config(tmp_path, {"credsStore": "empty", "auths": {"r": {"auth": b64("a:b")}}})
    assert store.get("r") == Credentials("a", "b")
    assert store.get("s") is None


def test_helper_token_username_means_identity_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _helper(
        tmp_path, monkeypatch, "tok", "print(json.dumps({'Username': '<token>', 'Secret': 'rt'}))"
    )
    store = write_config(tmp_path, {"credsStore": "tok"})
    got = store.get("r")
    assert got is not None and got.identity_token == "rt"


def test_login_with_a_creds_store_saves_through_the_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _helper(tmp_path, monkeypatch, "keep", "")
    store = write_config(tmp_path, {"credsStore": "keep"})
    store.store("r:1", Credentials("u", "p"))
    act, _, payload = log.read_text().strip().partition(" ")
    assert act == "store"
    assert json.loads(payload) == {"ServerURL": "r:1", "Username": "u", "Secret": "p"}
    assert "auths" not in json.loads(Path(store.path).read_text())


def test_store_keeps_other_config_keys(tmp_path: Path) -> None:
    store = write_config(tmp_path, {"psFormat": "table", "auths": {"a": {"auth": b64("x:y")}}})
    store.store("b", Credentials("u", "p"))
    config = json.loads(Path(store.path).read_text())
    assert config["psFormat"] == "table"
    assert set(config["auths"]) == {"a", "b"}
