"""pyctr-fast: a daemonless, Docker-compatible container engine.

The public names are imported on first use, so ``import pyctr_fast`` (and the
CLI's start-up) stays cheap::

    pyctr_fast.run(rootfs, command, ...)  # see pyctr_fast.api.run
    pyctr_fast.RunOptions, pyctr_fast.UserError, pyctr_fast.ContainerError
"""

from __future__ import annotations

__version__ = "0.1.0"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._native import ContainerError as ContainerError
    from .api import run as run
    from .errors import UserError as UserError
    from .spec import RunOptions as RunOptions

__all__ = ["ContainerError", "RunOptions", "UserError", "__version__", "run"]

_LAZY = {
    "run": ("api", "run"),
    "RunOptions": ("spec", "RunOptions"),
    "UserError": ("errors", "UserError"),
    "ContainerError": ("_native", "ContainerError"),
}


def __getattr__(name: str) -> object:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import sys

    module_name = f"{__name__}.{target[0]}"
    __import__(module_name)
    value = getattr(sys.modules[module_name], target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
