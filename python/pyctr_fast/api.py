"""The in-process Python API.

>>> import pyctr_fast
>>> pyctr_fast.run("/srv/alpine", ["echo", "hello"])   # doctest: +SKIP
0

It goes through exactly what ``pyctr-fast run`` does (same :class:`RunOptions`,
same :func:`~pyctr_fast.container.run_container`), except that signals are not
forwarded (that needs the main thread of a CLI) and failures are raised, not
printed.
"""

from __future__ import annotations

from .container import run_container
from .errors import UserError
from .spec import RunOptions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

    from .resources import Limits

__all__ = ["run"]


def _env_entries(env: Mapping[str, str] | Iterable[str] | None) -> list[str]:
    if env is None:
        return []
    if isinstance(env, str):
        raise UserError("env must be a mapping or a sequence of 'K=V' strings, not a string")
    if hasattr(env, "keys"):
        mapping: Mapping[str, str] = env  # type: ignore[assignment]
        return [f"{key}={value}" for key, value in mapping.items()]
    return list(env)


def run(
    rootfs: str,
    command: Sequence[str],
    *,
    env: Mapping[str, str] | Iterable[str] | None = None,
    env_files: Iterable[str] = (),
    hostname: str | None = None,
    name: str | None = None,
    user: str | None = None,
    workdir: str | None = None,
    volumes: Iterable[str] = (),
    tmpfs: Iterable[str] = (),
    network: str = "bridge",  # spec.DEFAULT_NETWORK
    cap_add: Iterable[str] = (),
    cap_drop: Iterable[str] = (),
    privileged: bool = False,
    read_only: bool = False,
    tty: bool = False,
    interactive: bool = False,
    root: str | None = None,
    remove: bool = True,
    limits: Mapping[str, Any] | None = None,
    cgroup_parent: str | None = None,
) -> int:
    """Run ``command`` in a container on ``rootfs`` in the foreground and return
    its Docker status (exit code, 128+N if killed by signal N).

    ``env`` is a mapping or Docker-style ``"K=V"``/``"K"`` entries; ``volumes``
    are ``"SRC:DST[:ro|rw]"``, ``tmpfs`` ``"DST[:OPTIONS]"``; ``root`` is the
    state directory (default: $PYCTR_ROOT or /var/lib/pyctr-fast).  Without
    ``interactive`` the container's stdin is /dev/null.  ``remove`` is accepted
    for Docker parity: the container's state is always removed once it exits.
    ``limits`` takes docker-py's resource keywords (``{"mem_limit": "64m",
    "nano_cpus": 500_000_000, "pids_limit": 100}``); with limits (or
    ``cgroup_parent``) the container runs in a cgroup of its own, made with
    them before it starts and removed after it.

    Raises :class:`pyctr_fast.errors.UserError` for invalid arguments and
    :class:`pyctr_fast.errors.ContainerError` when the container cannot start.
    """
    if isinstance(command, str):
        raise UserError("command must be a sequence of strings, not a string")
    opts = RunOptions(
        rootfs,
        command,
        env=_env_entries(env),
        env_files=env_files,
        hostname=hostname,
        name=name,
        user=user,
        workdir=workdir,
        volumes=volumes,
        tmpfs=tmpfs,
        network=network,
        cap_add=cap_add,
        cap_drop=cap_drop,
        privileged=privileged,
        read_only=read_only,
        tty=tty,
        interactive=interactive,
        remove=remove,
        limits=_limits(limits),
        cgroup_parent=cgroup_parent,
    )
    return run_container(opts, root=root, forward_signals=False)


def _limits(kwargs: Mapping[str, Any] | None) -> Limits | None:
    if not kwargs:
        return None
    from .resources import limits_from_kwargs

    return limits_from_kwargs(kwargs)
