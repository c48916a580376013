"""``pyctr-fast update [OPTIONS] CONTAINER [CONTAINER...]``, like ``docker update``.

The flags (:data:`~pyctr_fast.resources.UPDATE_FLAGS`, anywhere on the line)
are checked first: a malformed value is refused before any container is
touched (exit 125, pflag's words).  Then each container in turn: its
``HostConfig`` and the flags give new limits
(:func:`~pyctr_fast.resources.update_limits`, Docker's checks and merge),
which :func:`pyctr_fast.lifecycle.update_resources` writes into the
container's cgroup and records.  Each container updated is printed as named;
one that fails is reported on stderr (``pyctr-fast: <error>``, a conflict with
its current limits as Docker's ``Cannot update container <id>: ...``) and the
others are still updated; the status is then 1.  Docker's warnings (what this
host cannot limit) are printed after all of them on stdout, as Docker does.

``--restart`` is parsed and checked but refused: the supervisor reads the
restart policy once, when it starts.
"""

from __future__ import annotations

from .errors import UserError
from .flags import BOOL, VALUE, Flag, write_out
from .resources_flags import UPDATE_FLAGS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from .resources import Limits

__all__ = ["COMMANDS", "TABLE", "update_cli"]

ABOUT = "Update configuration of one or more containers"

#: All of ``update``'s flags.
TABLE: tuple[Flag, ...] = tuple(
    sorted(
        (
            *UPDATE_FLAGS,
            Flag("help", BOOL, "Print usage"),
            Flag("restart", VALUE, "Restart policy to apply when a container exits"),
        ),
        key=lambda f: f.long,
    )
)


def update_cli(args: Sequence[str], root: str | None) -> int:
    """``update [OPTIONS] CONTAINER [CONTAINER...]``."""
    from .lifecycle_cli import _each, _refs

    got = _refs("update", args, TABLE, ABOUT)
    if got is None:
        return 0
    parsed, refs = got
    if not any(parsed.given(f.dest) for f in TABLE if f.long != "help"):
        raise UserError("you must provide one or more flags when using this command", 1)
    from .resources import Host, UpdateConflict, update_limits, update_request

    update_request(parsed)  # malformed values: before any container
    policy = parsed.value("restart")
    if policy is not None:
        from .spec import parse_restart

        try:
            parse_restart(policy)
        except UserError as err:
            raise UserError(err.message, 1) from None
        raise UserError("update --restart is not supported yet (set it at create or run)", 1)

    from . import lifecycle, records

    state_root = records.resolve_root(root)
    host = Host.detect()
    warnings: list[str] = []

    def update_one(ref: str) -> None:
        rec = records.resolve(state_root, ref)

        def limits_for(host_config: Mapping[str, Any]) -> Limits:
            try:
                return update_limits(host_config, parsed, host)
            except UpdateConflict as err:
                raise UserError(f"Cannot update container {rec.id}: {err.message}", 1) from None

        warnings.extend(lifecycle.update_resources(rec, limits_for).warnings)

    status = _each(refs, update_one)
    if warnings:
        write_out("\n".join(warnings) + "\n")
    return status


COMMANDS: dict[str, Callable[[Sequence[str], str | None], int]] = {"update": update_cli}
