"""Image references: Docker's normalisation, short forms and rejections."""

from __future__ import annotations

import pytest
from pyctr_fast.errors import UserError
from pyctr_fast.reference import Reference, parse

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "name", "familiar"),
    [
        ("redis", "docker.io/library/redis:latest", "redis:latest"),
        ("redis:7", "docker.io/library/redis:7", "redis:7"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("docker.io/redis", "docker.io/library/redis:latest", "redis:latest"),
        ("index.docker.io/user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
        ("host:5000/ns/app:tag", "host:5000/ns/app:tag", "host:5000/ns/app:tag"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app:latest"),
        (
            "registry.example.com/a/b/c",
            "registry.example.com/a/b/c:latest",
            "registry.example.com/a/b/c:latest",
        ),
        ("[::1]:5000/app:t", "[::1]:5000/app:t", "[::1]:5000/app:t"),
        (f"app@{D}", f"docker.io/library/app@{D}", f"app@{D}"),
        (f"app:tag@{D}", f"docker.io/library/app:tag@{D}", f"app:tag@{D}"),
        ("a__b-c---d/f_g.h", "docker.io/a__b-c---d/f_g.h:latest", "a__b-c---d/f_g.h:latest"),
        ("Foo.com/app", "Foo.com/app:latest", "Foo.com/app:latest"),
    ],
)
def test_parse_normalises_like_docker(text: str, name: str, familiar: str) -> None:
    ref = parse(text)
    assert ref.name == name
    assert str(ref) == name
    assert ref.familiar == familiar
    assert parse(ref.name) == ref  # normalised form parses back to itself


def test_parts_of_a_normalised_reference() -> None:
    ref = parse("redis")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (
        "docker.io",
        "library/redis",
        "latest",
        None,
    )
    assert ref.repository == "docker.io/library/redis"
    assert ref.registry_host == "registry-1.docker.io"
    assert repr(ref) == "Reference('docker.io/library/redis:latest')"


def test_registry_host_is_the_domain_outside_docker_hub() -> None:
    assert parse("host:5000/ns/app").registry_host == "host:5000"


def test_digest_only_reference_gets_no_default_tag() -> None:
    ref = parse(f"app@{D}")
    assert ref.tag is None and ref.digest == D
    assert ref.reference == D


def test_tag_and_digest_both_kept_and_digest_wins_for_fetching() -> None:
    ref = parse(f"app:tag@{D}")
    assert (ref.tag, ref.digest) == ("tag", D)
    assert ref.reference == D


def test_default_tag_none_leaves_reference_untagged() -> None:
    assert parse("redis", default_tag=None).tag is None


def test_equality_and_hash_follow_the_normalised_name() -> None:
    assert parse("redis") == parse("docker.io/library/redis:latest")
    assert hash(parse("redis")) == hash(parse("library/redis:latest"))
    assert parse("redis") != parse("redis:7")
    assert parse("redis") != Reference("docker.io", "library/redis", None, None)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "at least one component"),
        ("Redis", "must be lowercase"),
        ("user/App", "must be lowercase"),
        ("redis:", "invalid tag"),
        ("redis:-bad", "invalid tag"),
        ("redis:" + "t" * 129, "invalid tag"),
        ("redis:a/b", "invalid"),
        ("app@sha256:abc", "digest"),
        ("app@sha256:" + "AB" * 32, "digest"),
        ("app@md5:" + "ab" * 16, "unsupported digest algorithm"),
        ("app@", "empty digest"),
        ("a" * 64, "64-byte hexadecimal"),
        ("ab" * 32, "64-byte hexadecimal"),
        ("host:5000/" + "a" * 250, "more than 255 characters"),
        ("a//b", "invalid repository name"),
        ("a-/b", "invalid repository name"),
        ("-host.com/app", "invalid registry host"),
        ("red is", "whitespace"),
        (" redis", "whitespace"),
        ("a/b:1:2", "invalid"),
    ],
)
def test_invalid_references_are_rejected_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(UserError) as err:
        parse(text)
    assert str(err.value).startswith("invalid reference format")
    assert reason in str(err.value)


def test_longest_valid_name_is_accepted() -> None:
    ref = parse("docker.io/x/" + "a" * (255 - len("docker.io/x/")))
    assert len(ref.repository) == 255
