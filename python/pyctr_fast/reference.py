"""Image references: Docker's normalisation and validation.

The grammar is distribution/reference's::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] path
    domain           := host [":" port]
    host             := domain-name | "[" IPv6 "]"
    domain-name      := domain-component ("." domain-component)*
    domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
    path             := path-component ("/" path-component)*
    path-component   := [a-z0-9]+ (separator [a-z0-9]+)*
    separator        := [_.] | "__" | "-"+
    tag              := [\\w][\\w.-]{0,127}
    digest           := algorithm ":" hex   (only sha256, 64 lowercase hex, is accepted)

and Docker's normalisation: the first component is a registry only if it
holds ``.`` or ``:``, is ``localhost``, or has an uppercase letter; otherwise
the registry is ``docker.io``, where one-component names live under
``library/``.  ``index.docker.io`` is ``docker.io``.  With neither tag nor
digest the tag is ``latest``; with both, both are kept.  The name (domain and
path) is at most 255 characters.
"""

from __future__ import annotations

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "DOCKER_HUB_REGISTRY",
    "Reference",
    "check_digest",
    "parse",
]

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
#: The host serving the Distribution API for ``docker.io``.
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
NAME_TOTAL_LENGTH_MAX = 255

_patterns: dict[str, re.Pattern[str]] = {}


def _pattern(name: str) -> re.Pattern[str]:
    """Compiled grammar pieces, built on first use (``re`` stays out of start-up)."""
    if not _patterns:
        import re

        alnum = r"[a-z0-9]+"
        sep = r"(?:[_.]|__|[-]+)"
        component = rf"{alnum}(?:{sep}{alnum})*"
        dcomp = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
        host = rf"(?:{dcomp}(?:\.{dcomp})*|\[[a-fA-F0-9:]+\])"
        _patterns["domain"] = re.compile(rf"{host}(?::[0-9]+)?\Z")
        _patterns["path"] = re.compile(rf"{component}(?:/{component})*\Z")
        _patterns["path_any_case"] = re.compile(
            rf"{component}(?:/{component})*\Z".replace("a-z0-9", "a-zA-Z0-9")
        )
        _patterns["tag"] = re.compile(r"[\w][\w.-]{0,127}\Z", re.ASCII)
        _patterns["digest"] = re.compile(
            r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}\Z"
        )
        _patterns["sha256"] = re.compile(r"sha256:[0-9a-f]{64}\Z")
        _patterns["hex64"] = re.compile(r"[a-f0-9]{64}\Z")
    return _patterns[name]


def _invalid(reason: str) -> UserError:
    return UserError(f"invalid reference format: {reason}")


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:`` and 64 lowercase hex digits, else raise UserError."""
    if _pattern("sha256").match(digest):
        return digest
    if not _pattern("digest").match(digest):
        raise UserError(f"invalid digest format: {digest!r}")
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256":
        raise UserError(f"unsupported digest algorithm: {algorithm}")
    if len(hexpart) != 64:
        raise UserError(f"invalid checksum digest length: {digest!r}")
    raise UserError(f"invalid checksum digest format: {digest!r}")


class Reference:
    """A normalised image reference (``docker.io/library/redis:latest``)."""

    __slots__ = ("digest", "domain", "path", "tag")

    def __init__(self, domain: str, path: str, tag: str | None, digest: str | None) -> None:
        self.domain = domain
        self.path = path
        self.tag = tag
        self.digest = digest

    @property
    def repository(self) -> str:
        """``docker.io/library/redis``."""
        return f"{self.domain}/{self.path}"

    @property
    def name(self) -> str:
        """The full normalised reference: ``docker.io/library/redis:latest``."""
        out = self.repository
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    @property
    def familiar_repository(self) -> str:
        """Docker's short repository name: ``redis``, ``user/app``, ``host:5000/app``."""
        if self.domain == DEFAULT_DOMAIN:
            if self.path.startswith(_OFFICIAL_PREFIX) and self.path.count("/") == 1:
                return self.path[len(_OFFICIAL_PREFIX) :]
            return self.path
        return self.repository

    @property
    def familiar(self) -> str:
        """Docker's short form: ``redis:latest``."""
        out = self.familiar_repository
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    @property
    def registry_host(self) -> str:
        """Where the Distribution API is served: ``registry-1.docker.io`` for ``docker.io``."""
        return DOCKER_HUB_REGISTRY if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest if pinned, else the tag."""
        return self.digest if self.digest is not None else (self.tag or DEFAULT_TAG)

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.domain, self.path, tag, self.digest)

    def with_digest(self, digest: str | None) -> Reference:
        return Reference(self.domain, self.path, self.tag, digest)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Reference({self.name!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reference):
            return NotImplemented
        return (self.domain, self.path, self.tag, self.digest) == (
            other.domain,
            other.path,
            other.tag,
            other.digest,
        )

    def __hash__(self) -> int:
        return hash((self.domain, self.path, self.tag, self.digest))


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if not slash or not (
        "." in first or ":" in first or first == "localhost" or first.lower() != first
    ):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == _LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    return domain, path


def parse(text: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse and normalise an image reference the way ``docker pull`` does.

    ``default_tag`` is added when the reference has neither tag nor digest
    (``None`` leaves it without).  Raises UserError("invalid reference format: ...").
    """
    if not text:
        raise _invalid("repository name must have at least one component")
    if text != text.strip() or any(c.isspace() for c in text):
        raise _invalid(f"{text!r} contains whitespace")
    if _pattern("hex64").match(text):
        raise _invalid(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    name, at, digest = text.partition("@")
    if at:
        if not digest:
            raise _invalid("empty digest")
        try:
            check_digest(digest)
        except UserError as e:
            raise _invalid(e.message) from None
    # A ':' after the last '/' starts the tag (a ':' before it is a port).
    tag: str | None = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if not _pattern("tag").match(tag):
            raise _invalid(f"invalid tag {tag!r}")
    if not name:
        raise _invalid("repository name must have at least one component")
    domain, path = _split_domain(name)
    if not _pattern("domain").match(domain):
        raise _invalid(f"invalid registry host {domain!r}")
    if not _pattern("path").match(path):
        if _pattern("path_any_case").match(path):
            raise _invalid(f"repository name ({path}) must be lowercase")
        raise _invalid(f"invalid repository name {path!r}")
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    if tag is None and not at:
        tag = default_tag
    return Reference(domain, path, tag, digest if at else None)
