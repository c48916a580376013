"""``network connect`` and ``network disconnect`` of a running container:
one more endpoint (``eth<n>``, its own veth and lease, no default route: that
stays on the container's first network) in the namespace file the container
already has, recorded under ``endpoints`` in its ``network.json`` so that
every teardown path (:func:`pyctr_fast.network.detach`, the supervisor's)
undoes it with the rest.
"""

from __future__ import annotations

import os

from . import compact_json
from .errors import UserError
from .network import (
    RECORD,
    endpoint,
    ensure_bridge,
    lease_endpoint,
    member_names,
    plug,
    refresh_peers,
    write_record,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from .networks import Network
    from .records import Record

__all__ = ["connect_running", "disconnect_running"]


def connect_running(
    rec: Record, net: Network, aliases: Sequence[str], ip: str | None
) -> dict[str, Any]:
    """Plug a running bridged container into one more network: ``eth<n>``
    (no default route: that stays on its first network)."""
    from . import _native

    record = endpoint(rec.dir)
    if record is None or not record.get("netns"):
        raise UserError(f"container {rec.id[:12]} has no network namespace of its own to connect")
    extra: list[dict[str, Any]] = list(record.get("endpoints") or [])
    if net.name == record.get("network") or any(e["network"] == net.name for e in extra):
        raise UserError(
            f"endpoint with name {member_names(rec)[0]} already exists in network {net.name}"
        )
    rundir = os.path.dirname(os.path.dirname(str(record["netns"])))
    ensure_bridge(rundir, net)
    used = {str(record.get("ifname") or "eth0"), *(str(e["ifname"]) for e in extra)}
    n = next(i for i in range(1, 100) if f"eth{i}" not in used)
    ep = lease_endpoint(
        rundir,
        rec.id,
        net,
        veth=f"vp{rec.id[:10]}-{n}",
        ifname=f"eth{n}",
        names=member_names(rec),
        aliases=aliases,
        hosts=rec.path("hosts"),
        ip=ip,
        mac=None,
    )
    record["endpoints"] = [*extra, ep]
    try:
        write_record(rec.dir, record)
    except OSError as err:
        _native.net_teardown_endpoint(compact_json.dumps(ep))
        raise UserError(f"cannot write {rec.dir}/{RECORD}: {err.strerror or err}") from None
    try:
        plug(ep, str(record["netns"]), gateway=None)
        if net.user_defined:
            from . import peers

            peers.refresh(rundir, net)
    except BaseException:
        disconnect_running(rec, net.name)
        raise
    return ep


def disconnect_running(rec: Record, network: str) -> bool:
    """Unplug a running container from ``network`` (not its first one);
    False if it was not connected."""
    from . import _native

    record = endpoint(rec.dir)
    if record is None:
        return False
    extra = list(record.get("endpoints") or [])
    ep = next((e for e in extra if e["network"] == network), None)
    if ep is None:
        return False
    try:
        _native.net_teardown_endpoint(compact_json.dumps(ep))
    except _native.ContainerError as err:
        raise UserError(f"network teardown of {rec.dir} on {network}: {err}") from None
    record["endpoints"] = [e for e in extra if e is not ep]
    write_record(rec.dir, record)
    refresh_peers(rec.dir, [ep])
    return True
