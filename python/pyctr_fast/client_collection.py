"""``client.containers``: docker-py's ``ContainerCollection`` (run, create,
get, list, prune) over :mod:`pyctr_fast.lifecycle` and :mod:`pyctr_fast.views`;
the :class:`~pyctr_fast.client_containers.Container` objects it returns are
in :mod:`pyctr_fast.client_containers`."""

from __future__ import annotations

import builtins
import os

from .client import engine_errors
from .client_containers import Container
from .client_images import Image
from .errors import APIError, ContainerExitError, ImageNotFound, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Unpack

    from .client import DockerClient
    from .client_options import CreateKwargs, Extras
    from .records import Record

__all__ = ["ContainerCollection"]


class ContainerCollection:
    """docker-py's ``client.containers``."""

    def __init__(self, client: DockerClient) -> None:
        self.client = client

    def get(self, container_id: str) -> Container:
        """A container by name, full id or unique id prefix.  Raises
        :class:`~pyctr_fast.errors.NotFound` (or APIError for an ambiguous prefix)."""
        from . import records, views

        with engine_errors():
            rec = records.resolve(self.client.root, container_id)
            try:
                attrs = views.inspect_container(rec)
            except FileNotFoundError:
                raise NotFound(f"No such container: {container_id}") from None
        return Container(attrs, self)

    def list(
        self,
        all: bool = False,
        before: str | None = None,
        filters: dict[str, Any] | None = None,
        limit: int = -1,
        since: str | None = None,
        sparse: bool = False,
        ignore_removed: bool = False,
    ) -> builtins.list[Container]:
        """Containers, newest first (``docker ps``): running ones, or ``all``.
        ``filters`` is docker-py's dict (``{"status": "exited", "label":
        ["a=b"], "name": "web"}``): id, name, status, exited, label, ancestor,
        before, since.  ``limit`` keeps the N newest (of all containers).
        ``sparse`` and ``ignore_removed`` are accepted for parity (a container
        removed while listing is always skipped)."""
        from . import views

        del sparse, ignore_removed
        flat = _flatten_filters(filters)
        if before:
            flat.append(f"before={before}")
        if since:
            flat.append(f"since={since}")
        with engine_errors():
            recs = views.list_containers(self.client.root, all=all, filters=flat, last=limit)
            out = []
            for rec in recs:
                try:
                    out.append(Container(views.inspect_container(rec), self))
                except FileNotFoundError:
                    continue
        return out

    def prune(self, filters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Remove every stopped container: ``{"ContainersDeleted": [ids],
        "SpaceReclaimed": 0}``.  Filters are not supported."""
        from . import lifecycle

        if filters:
            raise APIError("container prune filters are not supported")
        with engine_errors():
            removed = lifecycle.prune(self.client.root)
        return {"ContainersDeleted": list(removed), "SpaceReclaimed": 0}

    def create(
        self,
        image: str | Image | None,
        command: str | builtins.list[str] | None = None,
        *,
        rootfs: str | None = None,
        detach: bool = True,
        **kwargs: Unpack[CreateKwargs],
    ) -> Container:
        """Create a container without starting it (``docker create``).

        ``image`` (a name, id or :class:`Image`; not pulled: ImageNotFound if
        missing) or ``rootfs=`` (a directory, the CLI's ``--rootfs``; pass
        ``image=None``) and docker-py's keywords: ``environment``,
        ``volumes``, ``name``, ``entrypoint``, ``working_dir``, ``user``,
        ``hostname``, ``network_mode`` (``none`` (default), ``host``, ``bridge``
        or ``container:NAME``),
        ``cap_add``, ``cap_drop``, ``privileged``, ``read_only``, ``tty``,
        ``stdin_open``, ``restart_policy``, ``stop_signal``, ``labels``,
        the resource keywords (``mem_limit``, ``nano_cpus``, ``cpu_quota``,
        ``pids_limit``, ...: enforced through the container's cgroup),
        ``tmpfs``, ``log_config``, ``auto_remove``, ``platform``.  Other
        docker-py keywords raise TypeError.
        """
        return self._create("create", image, command, rootfs, detach, dict(kwargs), "never")

    def _create(
        self,
        method: str,
        image: str | Image | None,
        command: str | builtins.list[str] | None,
        rootfs: str | None,
        detach: bool,
        kwargs: dict[str, Any],
        pull: str,
    ) -> Container:
        from . import lifecycle
        from .client_options import build_options

        name = image.id if isinstance(image, Image) else image
        opts, extras = build_options(
            method, name, command, kwargs, rootfs=rootfs, detach=detach, pull=pull
        )
        with engine_errors():
            rec = lifecycle.create(opts, root=self.client.root)
        if extras:
            _record_extras(rec, extras)
        return self.get(rec.id)

    def run(
        self,
        image: str | Image | None,
        command: str | builtins.list[str] | None = None,
        stdout: bool = True,
        stderr: bool = False,
        remove: bool = False,
        *,
        detach: bool = False,
        stream: bool = False,
        rootfs: str | None = None,
        **kwargs: Unpack[CreateKwargs],
    ) -> Any:
        """Run a container, like ``docker run`` (keywords as :meth:`create`).

        Detached: returns the running :class:`Container` (with ``remove`` it
        removes itself when it exits).  Otherwise waits for it to exit and
        returns its logs (stdout, and stderr if ``stderr``) as bytes, or an
        iterator of chunks with ``stream``; a non-zero exit raises
        :class:`pyctr_fast.client.ContainerError` with ``exit_status`` and
        ``stderr``.  ``remove`` removes the container afterwards (also when
        it failed or the wait was interrupted).  A missing image is pulled
        first (quietly).
        """
        args = dict(kwargs)
        if detach and remove:
            args["auto_remove"] = True
        foreground_remove = not detach and (remove or bool(args.pop("auto_remove", False)))
        try:
            container = self._create("run", image, command, rootfs, detach, args, "never")
        except ImageNotFound:
            if image is None or isinstance(image, Image):
                raise
            self.client.images.pull(image, platform=kwargs.get("platform"))
            container = self._create("run", image, command, rootfs, detach, args, "never")
        try:
            container.start()
        except BaseException:
            if foreground_remove or (detach and remove):
                _remove_quietly(container)
            raise
        if detach:
            return container
        return self._finish(container, image, command, stdout, stderr, foreground_remove, stream)

    def _finish(
        self,
        container: Container,
        image: str | Image | None,
        command: str | builtins.list[str] | None,
        stdout: bool,
        stderr: bool,
        remove: bool,
        stream: bool,
    ) -> Any:
        try:
            status = int(container.wait()["StatusCode"])
            out = container.logs(stdout=stdout, stderr=stderr)
            err = container.logs(stdout=False, stderr=True) if status != 0 else None
        except BaseException:
            if remove:
                _remove_quietly(container)
            raise
        if remove:
            container.remove(force=True)
        if status != 0:
            name = image.id if isinstance(image, Image) else (image or container.attrs.get("Image"))
            raise ContainerExitError(container, status, command, name, err)
        return iter([out]) if stream else out


def _remove_quietly(container: Container) -> None:
    try:
        container.remove(force=True)
    except APIError:
        pass


def _flatten_filters(filters: dict[str, Any] | None) -> list[str]:
    """docker-py's ``{"label": ["a=b", "c"], "status": "exited"}`` as the
    CLI's ``--filter`` strings; a boolean/number value is spelled like Go."""
    out = []
    for key, value in (filters or {}).items():
        values = value if isinstance(value, (list, tuple, set)) else [value]
        for v in values:
            text = str(v).lower() if isinstance(v, bool) else str(v)
            out.append(f"{key}={text}")
    return out


def _record_extras(rec: Record, extras: Extras) -> None:
    """Write what RunOptions has no field for into ``container.json`` (under
    the container's ``lock``, as rename does)."""
    import fcntl

    from .records import read_json, write_json

    path = rec.path("container.json")
    fd = os.open(rec.path("lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = read_json(path)
        if extras.labels is not None:
            (data.setdefault("Config", {}) or {})["Labels"] = extras.labels
        write_json(path, data)
    finally:
        os.close(fd)
