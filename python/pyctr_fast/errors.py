"""Errors raised by pyctr-fast.

``UserError`` is a problem with what was asked (a bad flag, a missing file, an
unknown user...): Docker exits 125 for those.  ``ContainerError`` comes from the
native extension when the container cannot be set up or started; it is
re-exported here lazily so importing this module stays free.

The docker-py-style client (:mod:`pyctr_fast.client`) raises docker-py's
names, all subclasses of ``UserError``: ``APIError`` (the engine refused),
``NotFound`` and ``ImageNotFound`` (no such container / image), ``WaitTimeout``
(``Container.wait(timeout=...)`` ran out) and ``ContainerExitError``, which
the client exports as ``pyctr_fast.client.ContainerError`` (docker-py's
``ContainerError``: a container run by ``containers.run`` exited non-zero).
It is *not* ``pyctr_fast.ContainerError`` (the native error: a container
that could not be set up or started at all).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._native import ContainerError as ContainerError

__all__ = [
    "APIError",
    "ContainerError",
    "ContainerExitError",
    "ImageNotFound",
    "NotFound",
    "UserError",
    "WaitTimeout",
]


class UserError(Exception):
    """A usage or configuration error, reported as one line and ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class APIError(UserError):
    """docker-py's ``APIError``: the engine refused a request (a conflict, a
    container that is not running, a container that could not start...)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message, exit_code)

    @property
    def explanation(self) -> str:
        """docker-py's name for the message."""
        return self.message


class NotFound(APIError):
    """docker-py's ``NotFound``: no container (or other object) by that name or id."""


class ImageNotFound(NotFound):
    """docker-py's ``ImageNotFound``: no image by that name or id."""


class WaitTimeout(APIError, TimeoutError):
    """``Container.wait(timeout=...)`` gave up before the container stopped
    (docker-py raises its HTTP library's read timeout there)."""


class ContainerExitError(UserError):
    """docker-py's ``ContainerError``: a container run in the foreground by
    ``client.containers.run`` exited with a non-zero status.

    Exported as ``pyctr_fast.client.ContainerError``; ``container`` is the
    :class:`pyctr_fast.client.Container` (already removed with ``remove=True``),
    ``exit_status`` its status, ``command`` and ``image`` what was run,
    ``stderr`` the bytes it wrote to stderr (None if they are gone).
    """

    def __init__(
        self, container: Any, exit_status: int, command: Any, image: Any, stderr: bytes | None
    ) -> None:
        self.container = container
        self.exit_status = exit_status
        self.command = command
        self.image = image
        self.stderr = stderr
        err = f": {stderr!r}" if stderr is not None else ""
        super().__init__(
            f"Command '{command}' in image '{image}' returned non-zero exit status "
            f"{exit_status}{err}",
            exit_code=exit_status if 0 < exit_status < 256 else 1,
        )


def __getattr__(name: str) -> object:
    if name == "ContainerError":
        from ._native import ContainerError

        return ContainerError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
