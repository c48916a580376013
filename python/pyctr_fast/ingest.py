"""Bringing an image into the store, all or nothing: ``pull``, ``load`` and
``import`` all end here.

Given the image config and, per layer, a way to produce its blob, this

1. computes the chain ids from the config's ``rootfs.diff_ids``;
2. takes the lock of every chain id that is missing, in chain order (a chain
   id fixes its position, so every process takes them in the same order: no
   deadlock), and re-checks: a layer another pull stored meanwhile "Already
   exists";
3. fetches the missing blobs in parallel (``workers``) into the pull's own
   staging dir under ``tmp/``, and extracts each one with
   ``_native.extract_layer`` as soon as it is there (extractions run in
   parallel, while later blobs still download), checking its diff id;
4. only when every layer is verified, commits them in chain order (one
   rename each), then the blobs, then the image record and tags.

Anything that fails before step 4 leaves the store as it was: the staging dir
is removed in ``finally``.  The whole run holds the store lock shared, so
``rmi``/``prune`` cannot collect layers between their commit and the record.
"""

from __future__ import annotations

import os

from .errors import UserError
from .store import ImageRecord, Store, chain_ids, digest_hex, sha256_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Future
    from typing import Any

    #: fetch(dest_path, progress(done, total)) -> digest of what was written
    Fetch = Callable[[str, Callable[[int, int], None]], str]
    #: status(layer index, text, done bytes, total bytes)
    Status = Callable[[int, str, int, int], None]

__all__ = ["LayerSource", "extract_layer", "ingest_image", "parse_config"]


class LayerSource:
    """One layer to bring in: its blob's ``digest`` (None when only known once
    fetched), media type, size (0 if unknown) and ``fetch``."""

    __slots__ = ("digest", "fetch", "media_type", "size")

    def __init__(self, digest: str | None, media_type: str, size: int, fetch: Fetch) -> None:
        self.digest = digest
        self.media_type = media_type
        self.size = size
        self.fetch = fetch


def extract_layer(blob: str, dest: str, media_type: str) -> tuple[str, int]:
    """``_native.extract_layer`` (with a clear error when the build lacks it)."""
    from . import _native

    extract = getattr(_native, "extract_layer", None)
    if extract is None:
        raise UserError(
            "this build of pyctr_fast._native cannot extract layers (no extract_layer): "
            "rebuild it with `pip install -e .`"
        )
    result: tuple[str, int] = extract(blob, dest, media_type)
    return result


def parse_config(data: bytes) -> dict[str, Any]:
    """The image config JSON, checked for what the store relies on."""
    import json

    try:
        config = json.loads(data)
    except ValueError as err:
        raise UserError(f"invalid image config: {err}") from None
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise UserError("invalid image config: no rootfs.diff_ids")
    for d in diff_ids:
        digest_hex(d)
    result: dict[str, Any] = config
    return result


def _noop_status(index: int, text: str, done: int, total: int) -> None:
    pass


class _Pipeline:
    """Parallel fetch, then extract, of the missing layers into ``staging``."""

    def __init__(
        self,
        staging: str,
        layers: Sequence[LayerSource],
        diff_ids: Sequence[str],
        workers: int,
        status: Status,
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor
        from threading import Event, Lock

        self.staging = staging
        self.layers = layers
        self.diff_ids = diff_ids
        self.status = status
        self.failed = Event()
        self.lock = Lock()
        self.fetch_pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="fetch")
        self.extract_pool = ThreadPoolExecutor(
            max(2, os.cpu_count() or 2), thread_name_prefix="extract"
        )
        self.fetches: dict[str, Future[tuple[str, str]]] = {}
        self.results: dict[int, Future[tuple[str, str, int]]] = {}

    def _fetch(self, index: int, key: str) -> tuple[str, str]:
        if self.failed.is_set():
            raise UserError("cancelled")
        source = self.layers[index]
        path = os.path.join(self.staging, f"blob-{index}")

        def progress(done: int, total: int) -> None:
            self.status(index, "Downloading", done, total or source.size)

        digest = source.fetch(path, progress)
        if source.digest is not None and digest != source.digest:
            raise UserError(f"blob {source.digest}: content has digest {digest}")
        self.status(index, "Verifying Checksum", 0, 0)
        self.status(index, "Download complete", 0, 0)
        return digest, path

    def _extract(self, index: int, blob: str) -> tuple[str, int]:
        if self.failed.is_set():
            raise UserError("cancelled")
        stage = os.path.join(self.staging, f"layer-{index}")
        os.mkdir(stage, 0o700)
        diff = os.path.join(stage, "diff")
        os.mkdir(diff, 0o755)
        self.status(index, "Extracting", 0, 0)
        try:
            diff_id, size = extract_layer(blob, diff, self.layers[index].media_type)
        except UserError:
            raise
        except Exception as err:
            raise UserError(f"extracting layer {index + 1}: {err}") from None
        if diff_id != self.diff_ids[index]:
            raise UserError(
                f"layer {index + 1}: its content has diff id {diff_id}, but the image "
                f"config says {self.diff_ids[index]}"
            )
        return stage, size

    def start(self, index: int) -> None:
        from concurrent.futures import Future

        source = self.layers[index]
        key = source.digest or f"#{index}"
        with self.lock:
            fetched = self.fetches.get(key)
            if fetched is None:
                fetched = self.fetch_pool.submit(self._fetch, index, key)
                self.fetches[key] = fetched
        result: Future[tuple[str, str, int]] = Future()
        self.results[index] = result

        def fetched_done(fut: Future[tuple[str, str]]) -> None:
            err = fut.exception()
            if err is not None:
                result.set_exception(err)
                return
            digest, path = fut.result()
            try:
                extracting = self.extract_pool.submit(self._extract, index, path)
            except RuntimeError as exc:  # pool shut down: we failed
                result.set_exception(exc)
                return

            def extracted(ef: Future[tuple[str, int]]) -> None:
                exc = ef.exception()
                if exc is not None:
                    result.set_exception(exc)
                else:
                    stage, size = ef.result()
                    result.set_result((digest, stage, size))

            extracting.add_done_callback(extracted)

        fetched.add_done_callback(fetched_done)

    def close(self) -> None:
        self.failed.set()
        self.fetch_pool.shutdown(wait=True, cancel_futures=True)
        self.extract_pool.shutdown(wait=True, cancel_futures=True)


def ingest_image(
    store: Store,
    *,
    config_bytes: bytes,
    layers: Sequence[LayerSource],
    manifest_bytes: bytes | None = None,
    repo_digest: str | None = None,
    tags: Sequence[str] = (),
    workers: int = 3,
    status: Status | None = None,
) -> tuple[str, bool]:
    """Store the image; return (image id, True if anything new was stored)."""
    from contextlib import ExitStack

    report = status or _noop_status
    config = parse_config(config_bytes)
    diff_ids: list[str] = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(layers):
        raise UserError(
            f"invalid image: the config lists {len(diff_ids)} layers, the manifest {len(layers)}"
        )
    chains = chain_ids(diff_ids)
    image_id = sha256_digest(config_bytes)
    store.ensure_root()

    with store.shared(), ExitStack() as held:
        missing: list[int] = []
        for i, chain in enumerate(chains):
            if store.has_layer(chain):
                report(i, "Already exists", 0, 0)
                continue
            lock = store.lock(digest_hex(chain))
            lock.__enter__()
            if store.has_layer(chain):
                lock.__exit__(None, None, None)
                report(i, "Already exists", 0, 0)
                continue
            held.callback(lock.__exit__, None, None, None)
            missing.append(i)

        staging = store.staging_dir("ingest-")
        held.callback(store.remove_tree, staging)
        done: dict[int, tuple[str, str, int]] = {}
        if missing:
            for i in missing:
                report(i, "Pulling fs layer", 0, 0)
            pipeline = _Pipeline(staging, layers, diff_ids, workers, report)
            try:
                for i in missing:
                    pipeline.start(i)
                for i in missing:
                    try:
                        done[i] = pipeline.results[i].result()
                    except UserError:
                        raise
                    except Exception as err:  # OSError, a registry client's own errors...
                        raise UserError(f"layer {i + 1}: {err}") from None
                    report(i, "Pull complete", 0, 0)
            finally:
                pipeline.close()

        # Everything is verified: commit, in chain order.
        committed: list[str] = []
        new_blobs: list[str] = []
        try:
            layer_blobs: list[dict[str, Any]] = []
            total = 0
            for i, chain in enumerate(chains):
                meta: dict[str, Any]
                if i in done:
                    digest, stage, size = done[i]
                    meta = {
                        "diff_id": diff_ids[i],
                        "size": size,
                        "parent": chains[i - 1] if i else None,
                        "depth": i,
                        "blob": digest,
                        "media_type": layers[i].media_type,
                    }
                    if store.commit_layer(stage, chain, meta):
                        committed.append(chain)
                    blob_path = os.path.join(staging, f"blob-{i}")
                    if os.path.exists(blob_path) and store.commit_blob(blob_path, digest):
                        new_blobs.append(digest)
                else:
                    meta = store.layer_meta(chain)
                layer_blobs.append(
                    {
                        "digest": meta.get("blob") or "",
                        "mediaType": meta.get("media_type") or "",
                        "size": _blob_size(store, meta.get("blob")),
                    }
                )
                total += int(meta.get("size", 0))
            for data in (config_bytes, manifest_bytes):
                if data is not None:
                    digest, path = store.stage_bytes(data, staging)
                    if store.commit_blob(path, digest):
                        new_blobs.append(digest)
            with store.lock("repositories"):
                fresh = not store.has_image(image_id)
                old = None if fresh else store.get_image(image_id)
                record = ImageRecord(
                    {
                        "id": image_id,
                        "manifest_digest": (
                            sha256_digest(manifest_bytes)
                            if manifest_bytes is not None
                            else (old.manifest_digest if old else None)
                        ),
                        "repo_tags": old.repo_tags if old else [],
                        "repo_digests": _merge(old.repo_digests if old else [], repo_digest),
                        "layers": chains,
                        "diff_ids": diff_ids,
                        "layer_blobs": layer_blobs,
                        "created": config.get("created") or "",
                        "size": total,
                        "architecture": config.get("architecture") or "",
                        "os": config.get("os") or "",
                    }
                )
                store.put_image(record)
                for tag in tags:
                    store.set_tag(tag, image_id)
        except BaseException:
            for chain in reversed(committed):
                store.remove_layer(chain)
            for digest in new_blobs:
                store.remove_blob(digest)
            raise
    return image_id, bool(committed) or fresh


def _merge(items: list[str], extra: str | None) -> list[str]:
    if extra is None or extra in items:
        return list(items)
    # One digest per repository, as Docker keeps it.
    repo = extra.partition("@")[0]
    return [d for d in items if d.partition("@")[0] != repo] + [extra]


def _blob_size(store: Store, digest: str | None) -> int:
    if not digest:
        return 0
    try:
        return os.path.getsize(store.blob_path(digest))
    except OSError:
        return 0
