"""``pull``: manifest, config, layers, with Docker-style progress.

The registry side is :mod:`pyctr_fast.registry`; storing (locks, parallel
download and extraction, verification, all-or-nothing commit) is
:func:`pyctr_fast.ingest.ingest_image`.  This module fetches the manifest and
config, feeds the layers to the ingest and prints progress.
"""

from __future__ import annotations

import sys

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from .reference import Reference
    from .store import Store

__all__ = ["DEFAULT_WORKERS", "Progress", "human_size", "pull_image"]

DEFAULT_WORKERS = 3
_BAR_WIDTH = 50


def human_size(n: float) -> str:
    """Docker's decimal units: ``7.8MB``, ``512B``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(n)}B"
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}B"  # pragma: no cover


class Progress:
    """Docker's per-layer status lines.

    On a terminal every layer keeps one line, rewritten in place (ANSI cursor
    movement) with a bar while downloading; otherwise a line is printed each
    time a layer's status changes (byte counts are not repeated).
    """

    def __init__(self, stream: TextIO, tty: bool | None = None) -> None:
        from threading import Lock

        self.stream = stream
        if tty is None:
            try:
                tty = stream.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.lock = Lock()
        self.rows: list[str] = []
        self.last: dict[str, str] = {}

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            pass

    def message(self, text: str) -> None:
        """A line outside the layer table."""
        with self.lock:
            self._write(text + "\n")
            if self.tty:
                self.rows = []  # the table scrolled away: start a new one

    def layer(self, key: str, status: str, done: int = 0, total: int = 0) -> None:
        line = f"{key}: {status}"
        if status == "Downloading" and self.tty:
            line += " " + _bar(done, total)
        with self.lock:
            if not self.tty:
                if self.last.get(key) != status:
                    self.last[key] = status
                    self._write(line + "\n")
                return
            if key not in self.rows:
                self.rows.append(key)
                self._write(line + "\n")
                return
            up = len(self.rows) - self.rows.index(key)
            self._write(f"\x1b[{up}A\r\x1b[2K{line}\x1b[{up}B\r")


def _bar(done: int, total: int) -> str:
    if total <= 0:
        return human_size(done)
    filled = min(_BAR_WIDTH, done * _BAR_WIDTH // total)
    arrow = "=" * max(0, filled - 1) + (">" if filled else "")
    return f"[{arrow.ljust(_BAR_WIDTH)}]  {human_size(done)}/{human_size(total)}"


def _short(digest: str) -> str:
    return digest.partition(":")[2][:12]


def pull_image(
    store: Store,
    name: str,
    *,
    platform: str | None = None,
    workers: int = DEFAULT_WORKERS,
    client: Any = None,
    out: TextIO | None = None,
    tty: bool | None = None,
    announce_default_tag: bool = True,
) -> str:
    """Pull ``name`` into ``store``; print progress to ``out`` (default
    stdout); return the image id.  (``run`` does not print Docker's "Using
    default tag" line: ``announce_default_tag=False``.)"""
    from . import reference

    stream = out if out is not None else sys.stdout
    bare = reference.parse(name, default_tag=None)
    ref: Reference = bare if bare.digest is not None else bare.with_tag(bare.tag or "latest")
    progress = Progress(stream, tty)
    if announce_default_tag and bare.tag is None and bare.digest is None:
        progress.message("Using default tag: latest")
    from .config import load_config

    config = load_config()
    if client is None:
        client = config.client()
    source, manifest = _first_answering(client, config.sources(ref), platform)
    progress.message(f"{ref.digest or ref.tag}: Pulling from {ref.path}")
    image_id, had = _ingest(store, client, ref, source, manifest, workers, progress)
    progress.message(f"Digest: {manifest.index_digest or manifest.digest}")
    if had:
        progress.message(f"Status: Image is up to date for {ref.familiar}")
    else:
        progress.message(f"Status: Downloaded newer image for {ref.familiar}")
    return image_id


def _first_answering(
    client: Any, sources: list[Reference], platform: str | None
) -> tuple[Reference, Any]:
    """The manifest from the first source (mirrors first) that serves it."""
    from .errors import UserError

    for source in sources[:-1]:
        # A mirror gets one try, as with Docker: a dead one must not cost
        # the whole backoff schedule before the next source is asked.
        retries, client.max_retries = client.max_retries, 0
        try:
            return source, client.get_manifest(source, platform=platform or None)
        except (UserError, OSError):
            continue
        finally:
            client.max_retries = retries
    return sources[-1], client.get_manifest(sources[-1], platform=platform or None)


def _ingest(
    store: Store,
    client: Any,
    ref: Reference,
    source: Reference,
    manifest: Any,
    workers: int,
    progress: Progress,
) -> tuple[str, bool]:
    import os

    from .ingest import LayerSource, ingest_image

    staging = store.staging_dir("config-")
    try:
        config_desc = manifest.config
        if store.has_blob(config_desc.digest):
            config_bytes = store.read_blob(config_desc.digest)
        else:
            path = os.path.join(staging, "config")
            client.fetch_blob(source, config_desc, path)
            with open(path, "rb") as f:
                config_bytes = f.read()
    finally:
        store.remove_tree(staging)

    def fetcher(desc: Any) -> Any:
        def fetch(dest: str, progress_cb: Any) -> str:
            client.fetch_blob(source, desc, dest, progress=progress_cb)
            digest: str = desc.digest
            return digest

        return fetch

    layers = [LayerSource(d.digest, d.media_type, d.size, fetcher(d)) for d in manifest.layers]
    keys = [_short(d.digest) for d in manifest.layers]

    def status(index: int, text: str, done: int, total: int) -> None:
        progress.layer(keys[index], text, done, total)

    repo_digest = f"{ref.repository}@{manifest.index_digest or manifest.digest}"
    tags = [ref.name] if ref.digest is None else []
    config_id = _config_id(config_bytes)
    refs = store.refs()
    had = (
        store.has_image(config_id)
        and all(store.has_layer(c) for c in _chains(config_bytes))
        and all(refs.get(t) == config_id for t in tags)
    )
    image_id, _ = ingest_image(
        store,
        config_bytes=config_bytes,
        layers=layers,
        manifest_bytes=bytes(manifest.raw),
        repo_digest=repo_digest,
        tags=tags,
        workers=workers,
        status=status,
    )
    return image_id, had


def _config_id(config_bytes: bytes) -> str:
    from .store import sha256_digest

    return sha256_digest(config_bytes)


def _chains(config_bytes: bytes) -> list[str]:
    from .ingest import parse_config
    from .store import chain_ids

    try:
        return chain_ids(parse_config(config_bytes)["rootfs"]["diff_ids"])
    except UserError:
        return []
