"""A docker-py-shaped Python API over the engine.

>>> import pyctr_fast
>>> client = pyctr_fast.from_env()                          # doctest: +SKIP
>>> client.containers.run("busybox", "echo hello")          # doctest: +SKIP
b'hello\\n'
>>> c = client.containers.run("redis", detach=True, name="r")  # doctest: +SKIP
>>> c.exec_run("redis-cli ping")                            # doctest: +SKIP
ExecResult(exit_code=0, output=b'PONG\\n')

There is no daemon: every call works on the engine's data root (``root``,
else ``$PYCTR_ROOT``, else /var/lib/pyctr-fast) through the same modules as
the CLI (:mod:`~pyctr_fast.lifecycle`, :mod:`~pyctr_fast.views`,
:mod:`~pyctr_fast.logs`, :mod:`~pyctr_fast.container_exec`,
:mod:`~pyctr_fast.images`, :mod:`~pyctr_fast.pull`), so a container made
here is the CLI's and the other way round.

Errors are docker-py's names (:mod:`pyctr_fast.errors`): ``NotFound``,
``ImageNotFound``, ``APIError`` and, from ``containers.run``, this module's
:class:`ContainerError` (a non-zero exit).  Note that the package-level
``pyctr_fast.ContainerError`` is a different class: the native error for a
container that could not be set up at all (the client turns that into
``APIError``).  Everything here is a ``pyctr_fast.errors.UserError``.
"""

from __future__ import annotations

import contextlib

from .errors import APIError, ImageNotFound, NotFound, UserError
from .errors import ContainerExitError as ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

    from .client_collection import ContainerCollection
    from .client_containers import Container, ExecResult
    from .client_images import Image, ImageCollection

__all__ = [
    "APIError",
    "Container",
    "ContainerError",
    "DockerClient",
    "ExecResult",
    "Image",
    "ImageNotFound",
    "NotFound",
    "from_env",
]


class DockerClient:
    """The engine seen through docker-py's ``DockerClient`` shape.

    ``root`` is the data root (default: ``$PYCTR_ROOT`` from ``environment``
    or the process environment, else /var/lib/pyctr-fast).  Creating a client
    touches nothing on disk.
    """

    def __init__(self, root: str | None = None, environment: Mapping[str, str] | None = None):
        from .container import resolve_root

        self.root: str = resolve_root(root, environment)
        self._containers: ContainerCollection | None = None
        self._images: ImageCollection | None = None

    @property
    def containers(self) -> ContainerCollection:
        """Create, run, find and list containers (:class:`ContainerCollection`)."""
        if self._containers is None:
            from .client_collection import ContainerCollection

            self._containers = ContainerCollection(self)
        return self._containers

    @property
    def images(self) -> ImageCollection:
        """Pull, find, list and remove images (:class:`ImageCollection`)."""
        if self._images is None:
            from .client_images import ImageCollection

            self._images = ImageCollection(self)
        return self._images

    def ping(self) -> bool:
        """True (there is no daemon to reach; the data root is used directly)."""
        return True

    def version(self) -> dict[str, Any]:
        """docker-py's ``version()``: a dict like ``docker version``'s engine part."""
        import os
        import platform

        from . import __version__

        uname = os.uname()
        return {
            "Platform": {"Name": "pyctr-fast"},
            "Version": __version__,
            "ApiVersion": "1.41",
            "Os": "linux",
            "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine),
            "KernelVersion": uname.release,
            "PythonVersion": platform.python_version(),
            "Root": self.root,
        }

    def close(self) -> None:
        """Nothing to close (docker-py closes its HTTP session here)."""

    def __enter__(self) -> DockerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DockerClient root={self.root!r}>"


def from_env(
    root: str | None = None, *, environment: Mapping[str, str] | None = None
) -> DockerClient:
    """A :class:`DockerClient` configured like the CLI: ``root`` if given,
    else ``$PYCTR_ROOT`` (from ``environment``, default ``os.environ``), else
    /var/lib/pyctr-fast."""
    return DockerClient(root, environment)


@contextlib.contextmanager
def engine_errors(image: str | None = None) -> Iterator[None]:
    """Turn the engine's errors into docker-py's classes.

    ``UserError("No such container: x")`` becomes :class:`NotFound`, "No such
    image" :class:`ImageNotFound`, any other ``UserError`` :class:`APIError`
    (same message and exit code); the native ``ContainerError`` (a container
    that could not be set up or started) becomes :class:`APIError` too.
    """
    try:
        yield
    except (APIError, ContainerError):
        raise
    except UserError as err:
        raise translate(err) from err
    except Exception as err:
        if _is_native_error(err):
            raise APIError(str(err), 125) from err
        raise


def translate(err: UserError) -> APIError:
    """The docker-py-style error for an engine ``UserError``."""
    message = err.message
    for prefix in ("Error response from daemon: ", "Error: "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if message.startswith("No such image"):
        return ImageNotFound(message, err.exit_code)
    if message.startswith(("No such container", "No such object")):
        return NotFound(message, err.exit_code)
    return APIError(message, err.exit_code)


def _is_native_error(err: BaseException) -> bool:
    try:
        from ._native import ContainerError as NativeError
    except ImportError:
        return False
    return isinstance(err, NativeError)


def __getattr__(name: str) -> object:
    # Container, Image and ExecResult live in the collection modules, imported on use.
    if name in ("Container", "ExecResult"):
        from . import client_containers

        return getattr(client_containers, name)
    if name == "ContainerCollection":
        from .client_collection import ContainerCollection

        return ContainerCollection
    if name in ("Image", "ImageCollection"):
        from . import client_images

        return getattr(client_images, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
