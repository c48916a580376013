"""pyctr-fast: a daemonless, Docker-compatible container engine.

The public names are imported on first use, so ``import pyctr_fast`` (and the
CLI's start-up) stays cheap::

    client = pyctr_fast.from_env()        # docker-py's shape: see pyctr_fast.client
    pyctr_fast.run(rootfs, command, ...)  # see pyctr_fast.api.run
    pyctr_fast.RunOptions, pyctr_fast.UserError, pyctr_fast.ContainerError

``pyctr_fast.ContainerError`` is the native error (a container that could not
be set up or started); docker-py's ``ContainerError`` (a non-zero exit in
``client.containers.run``) is ``pyctr_fast.client.ContainerError``.
"""

from __future__ import annotations

__version__ = "0.1.0"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._native import ContainerError as ContainerError
    from .api import run as run
    from .client import DockerClient as DockerClient
    from .client import from_env as from_env
    from .errors import UserError as UserError
    from .spec import RunOptions as RunOptions

__all__ = [
    "ContainerError",
    "DockerClient",
    "RunOptions",
    "UserError",
    "__version__",
    "from_env",
    "run",
]

_LAZY = {
    "run": ("api", "run"),
    "RunOptions": ("spec", "RunOptions"),
    "UserError": ("errors", "UserError"),
    "ContainerError": ("_native", "ContainerError"),
    "from_env": ("client", "from_env"),
    "DockerClient": ("client", "DockerClient"),
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
