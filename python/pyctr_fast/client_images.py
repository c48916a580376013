"""``client.images``: docker-py's ``ImageCollection`` and ``Image`` over the
image store (:mod:`pyctr_fast.images`, :mod:`pyctr_fast.pull`)."""

from __future__ import annotations

import builtins

from .client import engine_errors
from .errors import APIError, ImageNotFound, UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .client import DockerClient
    from .store import Store

__all__ = ["Image", "ImageCollection"]


class Image:
    """One image; ``attrs`` is what ``docker image inspect`` shows for it."""

    def __init__(self, attrs: dict[str, Any], collection: ImageCollection) -> None:
        self.attrs = attrs
        self.collection = collection

    @property
    def id(self) -> str:
        """``sha256:<64 hex>``."""
        return str(self.attrs["Id"])

    @property
    def short_id(self) -> str:
        """``sha256:`` and the first 12 hex digits of the id, as docker-py prints it."""
        return self.id[:19] if self.id.startswith("sha256:") else self.id[:12]

    @property
    def tags(self) -> builtins.list[str]:
        """The image's tags, familiar form (``busybox:latest``, ``host:5000/app:1``)."""
        return [str(t) for t in self.attrs.get("RepoTags") or () if t != "<none>:<none>"]

    @property
    def labels(self) -> dict[str, str]:
        """The image config's labels."""
        return dict((self.attrs.get("Config") or {}).get("Labels") or {})

    def reload(self) -> None:
        """Read ``attrs`` again (tags may have changed)."""
        self.attrs = self.collection.get(self.id).attrs

    def tag(self, repository: str, tag: str | None = None) -> bool:
        """Tag the image as ``repository[:tag]``; returns True like docker-py."""
        self.collection._tag(self.id, repository, tag)
        return True

    def remove(self, force: bool = False, noprune: bool = False) -> builtins.list[dict[str, str]]:
        """Remove this image (see :meth:`ImageCollection.remove`)."""
        return self.collection.remove(self.id, force=force, noprune=noprune)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<Image: '{', '.join(self.tags)}'>"


class ImageCollection:
    """docker-py's ``client.images``."""

    def __init__(self, client: DockerClient) -> None:
        self.client = client

    def _store(self) -> Store:
        from .store import Store

        return Store(self.client.root)

    def get(self, name: str) -> Image:
        """The image ``name`` names: a tag, ``name@digest``, ``sha256:<id>`` or
        an id prefix.  Raises :class:`~pyctr_fast.errors.ImageNotFound`."""
        from .images import inspect_data, resolve_image

        store = self._store()
        with engine_errors():
            try:
                record = resolve_image(store, name)
            except UserError as err:
                if err.message.startswith("No such image"):
                    raise ImageNotFound(err.message) from None
                raise
            try:
                return Image(inspect_data(store, record), self)
            except OSError as err:  # removed meanwhile
                raise ImageNotFound(f"No such image: {name}") from err

    def list(
        self, name: str | None = None, all: bool = False, filters: dict[str, Any] | None = None
    ) -> list[Image]:
        """Images, newest first; ``name`` (``repo`` or ``repo:tag``) keeps the
        images with a matching tag.  ``filters``: ``dangling`` (bool: untagged
        images only / tagged only), ``reference`` (like ``name``), ``label``
        (``key`` or ``key=value``, or a list of them).  ``all`` is accepted for
        docker-py parity (there are no intermediate images)."""
        from .images import inspect_data
        from .reference import parse

        del all
        store = self._store()
        wanted: list[Any] = []
        dangling: bool | None = None
        labels: list[str] = []
        with engine_errors():
            if name:
                wanted.append(parse(name, default_tag=None))
            for key, value in (filters or {}).items():
                values = value if isinstance(value, (list, tuple)) else [value]
                if key == "dangling":
                    dangling = str(values[0]).lower() in ("1", "true")
                elif key == "reference":
                    wanted.extend(parse(str(v), default_tag=None) for v in values)
                elif key == "label":
                    labels.extend(str(v) for v in values)
                else:
                    raise APIError(f"invalid filter '{key}'")
        out = []
        for record in sorted(store.images(), key=lambda r: r.created, reverse=True):
            refs = [parse(t) for t in record.repo_tags]
            if dangling is not None and dangling != (not refs):
                continue
            if wanted and not any(
                r.repository == w.repository and (w.tag is None or r.tag == w.tag)
                for r in refs
                for w in wanted
            ):
                continue
            try:
                image = Image(inspect_data(store, record), self)
            except OSError:
                continue  # removed meanwhile
            if not all_labels_match(image.labels, labels):
                continue
            out.append(image)
        return out

    def pull(
        self,
        repository: str,
        tag: str | None = None,
        all_tags: bool = False,
        *,
        platform: str | None = None,
        **kwargs: Any,
    ) -> Image:
        """Pull ``repository`` (``tag``, if given, is its tag, or a digest when
        it starts with ``sha256:``; default ``latest``) and return the
        :class:`Image`.  Progress is not printed.  ``all_tags`` and
        ``auth_config`` are not supported (log in with ``pyctr-fast login``)."""
        import io

        from .pull import pull_image

        if kwargs:
            raise TypeError(f"pull() got unsupported keyword arguments: {', '.join(kwargs)}")
        if all_tags:
            raise APIError("pull(all_tags=True) is not supported")
        name = repository
        if tag:
            name += ("@" if tag.startswith("sha256:") else ":") + tag
        store = self._store()
        with engine_errors():
            image_id = pull_image(
                store, name, platform=platform, out=io.StringIO(), announce_default_tag=False
            )
        return self.get(image_id)

    def remove(
        self, image: str | Image, force: bool = False, noprune: bool = False
    ) -> builtins.list[dict[str, str]]:
        """``docker rmi``: untag (and delete when that was its last tag) the
        image; returns ``[{"Untagged": ...}, {"Deleted": ...}]``.  Raises
        :class:`~pyctr_fast.errors.ImageNotFound` or, for a conflict (image in
        use, several tags without ``force``), :class:`~pyctr_fast.errors.APIError`.
        ``noprune`` is accepted for parity (unused layers are always collected)."""
        from .images import remove_images

        del noprune
        name = image.id if isinstance(image, Image) else image
        with engine_errors():
            lines = remove_images(self._store(), [name], force)
        out = []
        for line in lines:
            key, _, value = line.partition(": ")
            out.append({key: value})
        return out

    def _tag(self, image_id: str, repository: str, tag: str | None) -> None:
        from .reference import parse

        with engine_errors():
            target = parse(f"{repository}:{tag}" if tag else repository)
            if target.digest is not None:
                raise APIError("refusing to create a tag with a digest reference")
            store = self._store()
            with store.shared(), store.lock("repositories"):
                store.set_tag(target.name, image_id)


def all_labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    """Docker's ``label`` filter: every ``key`` present, every ``key=value`` equal."""
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True
