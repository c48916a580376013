"""Errors raised by pyctr-fast.

``UserError`` is a problem with what was asked (a bad flag, a missing file, an
unknown user...): Docker exits 125 for those.  ``ContainerError`` comes from the
native extension when the container cannot be set up or started; it is
re-exported here lazily so importing this module stays free.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._native import ContainerError as ContainerError

__all__ = ["ContainerError", "UserError"]


class UserError(Exception):
    """A usage or configuration error, reported as one line and ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


def __getattr__(name: str) -> object:
    if name == "ContainerError":
        from ._native import ContainerError

        return ContainerError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
