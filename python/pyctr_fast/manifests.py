"""Image manifests: media types, descriptors, parsing and platform selection.

Docker v2 schema 2 and OCI image manifests, Docker manifest lists and OCI
image indexes.  Schema 1 is refused with Docker's message.  Platforms are
``os/arch[/variant]``; the default is the host's (``linux`` and
``platform.machine()`` in Go's spelling).
"""

from __future__ import annotations

from .errors import UserError
from .reference import check_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ACCEPT_MANIFESTS",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "Manifest",
    "Platform",
    "RegistryError",
    "host_platform",
    "parse_image_manifest",
    "parse_platform",
    "select_manifest",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1_TYPES = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
#: The ``Accept`` header for manifests: without it registries rewrite or 404.
ACCEPT_MANIFESTS = ", ".join((DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX))
#: The most a manifest may weigh (containerd's limit).
MAX_MANIFEST_BYTES = 4 << 20

_SCHEMA1_MESSAGE = (
    "unsupported manifest: Docker image manifest schema 1 is deprecated; "
    "the image must be pushed again with a newer client (schema 2 or OCI)"
)

# Go's GOARCH spelling of platform.machine().
_ARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v7"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "mips64": ("mips64", ""),
    "loongarch64": ("loong64", ""),
}


class RegistryError(UserError):
    """A registry or transfer failure: a one-line message naming what failed."""


class Platform:
    """``os/arch[/variant]`` (``variant`` is "" when not given)."""

    __slots__ = ("architecture", "os", "variant")

    def __init__(self, os: str, architecture: str, variant: str = "") -> None:
        self.os = os
        self.architecture = architecture
        self.variant = variant

    def __str__(self) -> str:
        out = f"{self.os}/{self.architecture}"
        return f"{out}/{self.variant}" if self.variant else out

    def __repr__(self) -> str:
        return f"Platform({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Platform):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def matches(self, os: str, architecture: str, variant: str) -> bool:
        """Does an index entry's platform fit this (requested) one?"""
        if os != self.os or architecture != self.architecture:
            return False
        if not self.variant:
            return True
        # arm64 images rarely say "v8"; treat "" and "v8" alike there.
        if self.architecture == "arm64":
            return (variant or "v8") == self.variant
        return variant == self.variant


def host_platform() -> Platform:
    import platform as _platform

    machine = _platform.machine().lower()
    arch, variant = _ARCH.get(machine, (machine, ""))
    return Platform("linux", arch, variant)


def parse_platform(text: str) -> Platform:
    """``linux/amd64``, ``linux/arm64/v8``, ``linux/arm/v7`` → Platform."""
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UserError(f'invalid platform "{text}": expected os/arch[/variant]')
    arch, variant = parts[1], parts[2] if len(parts) == 3 else ""
    arch, implied = {"x86_64": ("amd64", ""), "aarch64": ("arm64", "")}.get(arch, (arch, ""))
    return Platform(parts[0], arch, variant or implied)


class Descriptor:
    """A content descriptor: media type, digest, size and optional URLs."""

    __slots__ = ("digest", "media_type", "platform", "size", "urls")

    def __init__(
        self,
        media_type: str,
        digest: str,
        size: int,
        urls: Sequence[str] = (),
        platform: Platform | None = None,
    ) -> None:
        self.media_type = media_type
        self.digest = digest
        self.size = size
        self.urls = list(urls)
        self.platform = platform

    def __repr__(self) -> str:
        return f"Descriptor({self.media_type!r}, {self.digest!r}, {self.size})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Descriptor):
            return NotImplemented
        return (self.media_type, self.digest, self.size, self.urls) == (
            other.media_type,
            other.digest,
            other.size,
            other.urls,
        )

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_json(cls, data: object, what: str) -> Descriptor:
        if not isinstance(data, dict):
            raise RegistryError(f"invalid manifest: {what} is not an object")
        media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
        if not isinstance(digest, str):
            raise RegistryError(f"invalid manifest: {what} has no digest")
        try:
            check_digest(digest)
        except UserError as e:
            raise RegistryError(f"invalid manifest: {what}: {e.message}") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RegistryError(f"invalid manifest: {what} {digest} has no valid size")
        urls = data.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise RegistryError(f"invalid manifest: {what} {digest} has invalid urls")
        plat = None
        p = data.get("platform")
        if isinstance(p, dict):
            plat = Platform(
                str(p.get("os", "")), str(p.get("architecture", "")), str(p.get("variant", ""))
            )
        return cls(str(media_type or ""), digest, size, urls, plat)


class Manifest:
    """An image manifest as fetched: what the store needs to pull the image."""

    __slots__ = ("config", "digest", "index_digest", "layers", "media_type", "raw")

    def __init__(
        self,
        digest: str,
        index_digest: str | None,
        media_type: str,
        raw: bytes,
        config: Descriptor,
        layers: list[Descriptor],
    ) -> None:
        self.digest = digest
        self.index_digest = index_digest
        self.media_type = media_type
        self.raw = raw
        self.config = config
        self.layers = layers

    def __repr__(self) -> str:
        return f"Manifest({self.digest!r}, {self.media_type!r}, {len(self.layers)} layers)"


def _load(raw: bytes) -> dict[str, object]:
    import json

    try:
        data = json.loads(raw)
    except ValueError as e:
        raise RegistryError(f"invalid manifest: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise RegistryError("invalid manifest: not a JSON object")
    return data


def media_type_of(raw: bytes, content_type: str) -> tuple[str, dict[str, object]]:
    """The manifest's media type (its ``mediaType``, else Content-Type, else guessed)."""
    content_type = content_type.split(";")[0].strip().lower()
    if content_type in SCHEMA1_TYPES:
        raise RegistryError(_SCHEMA1_MESSAGE)
    data = _load(raw)
    if data.get("schemaVersion") == 1:
        raise RegistryError(_SCHEMA1_MESSAGE)
    media_type = data.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        if content_type in MANIFEST_TYPES + INDEX_TYPES:
            media_type = content_type
        elif "manifests" in data:
            media_type = OCI_INDEX
        else:
            media_type = OCI_MANIFEST
    if media_type in SCHEMA1_TYPES:
        raise RegistryError(_SCHEMA1_MESSAGE)
    if media_type not in MANIFEST_TYPES + INDEX_TYPES:
        raise RegistryError(f"unsupported manifest media type: {media_type}")
    return media_type, data


def select_manifest(data: dict[str, object], platform: Platform) -> Descriptor:
    """The index entry for ``platform``: the first exact match, else the first fit."""
    entries = data.get("manifests")
    if not isinstance(entries, list):
        raise RegistryError("invalid manifest list: no manifests")
    descs = [Descriptor.from_json(e, "manifest list entry") for e in entries]
    fits = [
        d
        for d in descs
        if d.platform is not None
        and platform.matches(d.platform.os, d.platform.architecture, d.platform.variant)
    ]
    if not fits:
        raise RegistryError(f"no matching manifest for {platform} in the manifest list entries")
    for d in fits:
        assert d.platform is not None
        if d.platform.variant == platform.variant:
            return d
    return fits[0]


def parse_image_manifest(
    raw: bytes, media_type: str, data: dict[str, object], digest: str, index_digest: str | None
) -> Manifest:
    if media_type not in MANIFEST_TYPES:
        raise RegistryError(f"expected an image manifest, got {media_type}")
    config = Descriptor.from_json(data.get("config"), "config")
    layers_json = data.get("layers")
    if not isinstance(layers_json, list):
        raise RegistryError("invalid manifest: no layers")
    layers = [Descriptor.from_json(item, "layer") for item in layers_json]
    return Manifest(digest, index_digest, media_type, raw, config, layers)
