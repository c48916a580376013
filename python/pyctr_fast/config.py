"""Engine configuration: Docker's ``daemon.json`` keys for registries.

Read from ``$PYCTR_CONFIG`` or ``/etc/pyctr-fast/daemon.json`` (a missing file
means defaults)::

    {
      "insecure-registries": ["myregistry:5000"],
      "registry-mirrors": ["https://mirror.example"],
      "mirrors": {"quay.io": ["http://127.0.0.1:5001"]}
    }

``registry-mirrors`` are Docker's mirrors of Docker Hub; ``mirrors`` extends
the idea to any registry.  A mirror given as ``http://`` is used without TLS.
Mirrors are tried in order before the registry itself.
"""

from __future__ import annotations

import os

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .reference import Reference
    from .registry import RegistryClient

__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG", "EngineConfig", "load_config"]

CONFIG_ENV = "PYCTR_CONFIG"
DEFAULT_CONFIG = "/etc/pyctr-fast/daemon.json"


class EngineConfig:
    """What the engine reads from daemon.json."""

    __slots__ = ("insecure_registries", "mirrors", "path")

    def __init__(
        self,
        *,
        insecure_registries: tuple[str, ...] = (),
        mirrors: dict[str, tuple[str, ...]] | None = None,
        path: str | None = None,
    ) -> None:
        self.insecure_registries = insecure_registries
        self.mirrors: dict[str, tuple[str, ...]] = mirrors or {}
        self.path = path

    def mirror_netlocs(self, domain: str) -> list[tuple[str, bool]]:
        """``(host[:port], plain_http)`` of each mirror of ``domain``, in order."""
        out = []
        for url in self.mirrors.get(domain, ()):
            scheme, _, rest = url.partition("://")
            out.append((rest.rstrip("/"), scheme == "http"))
        return out

    def client(self) -> RegistryClient:
        """A registry client honouring the insecure registries and mirrors."""
        from .auth import CredentialStore
        from .registry import RegistryClient

        insecure = set(self.insecure_registries)
        for domain in self.mirrors:
            insecure.update(n for n, plain in self.mirror_netlocs(domain) if plain)
        return RegistryClient(credentials=CredentialStore(), insecure=sorted(insecure))

    def sources(self, ref: Reference) -> list[Reference]:
        """Where to pull ``ref`` from: its mirrors in order, then itself."""
        from .reference import Reference as Ref

        mirrored = [
            Ref(n, ref.path, ref.tag, ref.digest) for n, _ in self.mirror_netlocs(ref.domain)
        ]
        return [*mirrored, ref]


def _strings(value: object, key: str, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{path}: {key!r} must be a list of strings")
    return tuple(value)


def _mirror_urls(value: object, key: str, path: str) -> tuple[str, ...]:
    urls = _strings(value, key, path)
    for u in urls:
        if not u.startswith(("http://", "https://")) or not u.partition("://")[2].strip("/"):
            raise UserError(f"{path}: invalid mirror {u!r}: must be an http:// or https:// URL")
    return urls


def load_config(path: str | None = None) -> EngineConfig:
    """Read daemon.json; a missing file gives the defaults, a bad one an error."""
    path = path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return EngineConfig(path=None)
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None
    import json

    try:
        data = json.loads(text)
    except ValueError as err:
        raise UserError(f"{path}: invalid JSON: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: must hold a JSON object")
    mirrors: dict[str, tuple[str, ...]] = {}
    if "registry-mirrors" in data:
        mirrors["docker.io"] = _mirror_urls(data["registry-mirrors"], "registry-mirrors", path)
    extra = data.get("mirrors", {})
    if not isinstance(extra, dict):
        raise UserError(f"{path}: 'mirrors' must map registry names to lists of URLs")
    for domain, urls in extra.items():
        mirrors[domain] = mirrors.get(domain, ()) + _mirror_urls(urls, f"mirrors.{domain}", path)
    insecure = _strings(data.get("insecure-registries", []), "insecure-registries", path)
    return EngineConfig(insecure_registries=insecure, mirrors=mirrors, path=path)
