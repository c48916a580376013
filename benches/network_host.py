"""What benches.network may add to the host, as it was before the run, and
its removal afterwards (only what appeared during the run, and of that only
what the benchmark's starts make: our ``pyctr0`` and ``table ip pyctr``,
podman's bridge, its ``CNI-*``/``NETAVARK*`` firewall chains and the jumps to
them, the iptables-nft tables then left empty, ``/var/lib/cni``, podman's
cgroup parent, ``cni-*``/``netns-*`` namespaces, ``net.ipv4.ip_forward``)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benches.lifecycle_engines import cgroup_parent_dirs

FIREWALL_PREFIXES = ("CNI-", "NETAVARK")
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
PODMAN_CGROUP_PARENT = "libpod_parent"
NETNS_DIR = Path("/run/netns")


def nft_ruleset() -> list[dict[str, Any]]:
    """``nft -j list ruleset`` (empty when nft is missing or fails)."""
    nft = shutil.which("nft")
    if nft is None:
        return []
    res = subprocess.run([nft, "-j", "list", "ruleset"], capture_output=True, text=True)
    try:
        data = json.loads(res.stdout)["nftables"] if res.returncode == 0 else []
    except (ValueError, KeyError):
        return []
    return [e for e in data if isinstance(e, dict)]


def _of(ruleset: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e[kind] for e in ruleset if kind in e]


def _jump_targets(node: object) -> Iterator[str]:
    """Every chain a rule's expression jumps or goes to."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("jump", "goto") and isinstance(value, dict) and "target" in value:
                yield str(value["target"])
            else:
                yield from _jump_targets(value)
    elif isinstance(node, list):
        for item in node:
            yield from _jump_targets(item)


def firewall_cleanup(
    before: Sequence[dict[str, Any]], now: Sequence[dict[str, Any]]
) -> list[list[str]]:
    """nft commands removing what appeared since ``before`` in podman's chains
    (``CNI-*``/``NETAVARK*``): the chains made since, their rules, and every new
    rule that jumps to one of them.  Nothing else is touched."""

    def ours(chain: str) -> bool:
        return chain.startswith(FIREWALL_PREFIXES)

    old_chains = {(c["family"], c["table"], c["name"]) for c in _of(before, "chain")}
    old_rules = {(r["family"], r["table"], r["chain"], r["handle"]) for r in _of(before, "rule")}
    new_chains = [
        (c["family"], c["table"], c["name"])
        for c in _of(now, "chain")
        if ours(c["name"]) and (c["family"], c["table"], c["name"]) not in old_chains
    ]
    cmds = []
    for r in _of(now, "rule"):
        where = (r["family"], r["table"], r["chain"])
        if (*where, r["handle"]) in old_rules or where in new_chains:
            continue
        if ours(r["chain"]) or any(ours(t) for t in _jump_targets(r.get("expr", []))):
            cmds.append(["delete", "rule", *where, "handle", str(r["handle"])])
    cmds += [["flush", "chain", *c] for c in new_chains]
    cmds += [["delete", "chain", *c] for c in new_chains]
    return cmds


def empty_new_tables(
    before: Sequence[dict[str, Any]], now: Sequence[dict[str, Any]]
) -> list[list[str]]:
    """Delete commands for the iptables-nft tables made since ``before`` that
    hold nothing but empty base chains now."""
    old = {(t["family"], t["name"]) for t in _of(before, "table")}
    cmds = []
    for t in _of(now, "table"):
        key = (t["family"], t["name"])
        if key in old or t["family"] not in ("ip", "ip6") or t["name"] not in IPTABLES_TABLES:
            continue
        chains = [c for c in _of(now, "chain") if (c["family"], c["table"]) == key]
        rules = [r for r in _of(now, "rule") if (r["family"], r["table"]) == key]
        if not rules and all("hook" in c for c in chains):
            cmds.append(["delete", "table", *key])
    return cmds


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _netns() -> set[str]:
    try:
        return set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return set()


def _master(link: str) -> str:
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{link}/master"))
    except OSError:
        return ""


def _running(comm: str) -> bool:
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/comm").read_text().strip() == comm:
                return True
        except OSError:
            continue
    return False


def quiet(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True).returncode == 0


class HostState:
    """What the bench may add to the host, as it was before, and its removal."""

    CNI_DIRS = (Path("/var/lib/cni"), Path("/var/lib/cni/networks/podman"))
    #: podman's lock files (removed only when no podman or conmon runs).
    LOCKS = (Path("/dev/shm/libpod_lock"), Path("/etc/cni/net.d/cni.lock"))

    def __init__(self) -> None:
        self.links, self.netns, self.nft = _links(), _netns(), nft_ruleset()
        self.netns_dir = NETNS_DIR.is_dir()
        self.dirs = {d: d.exists() for d in (*self.CNI_DIRS, *self.LOCKS)}
        self.podman_cgroup = bool(cgroup_parent_dirs(PODMAN_CGROUP_PARENT))
        self.forward = IP_FORWARD.read_text().strip() if IP_FORWARD.exists() else ""
        self.pyctr_table = any(
            (t["family"], t["name"]) == ("ip", "pyctr") for t in _of(self.nft, "table")
        )

    def restore(self, bridges: Sequence[str], notes: list[str]) -> None:
        """Remove what the run made (``bridges``: ours and podman's)."""
        removed = []
        for ns in sorted(_netns() - self.netns):
            if ns.startswith(("cni-", "netns-")) and quiet(["ip", "netns", "delete", ns]):
                notes.append(f"network namespace {ns} was left by podman (deleted)")
        if not self.netns_dir and NETNS_DIR.is_dir() and not _netns():
            with contextlib.suppress(OSError):
                NETNS_DIR.rmdir()
                removed.append(str(NETNS_DIR))
        for bridge in bridges:
            if bridge in self.links or bridge not in _links():
                continue
            for link in sorted(_links() - self.links):
                if _master(link) == bridge and quiet(["ip", "link", "delete", link]):
                    notes.append(f"{link} was left on {bridge} (deleted)")
            if quiet(["ip", "link", "delete", bridge]):
                removed.append(bridge)
        nft = shutil.which("nft")
        if nft:
            if not self.pyctr_table and quiet([nft, "delete", "table", "ip", "pyctr"]):
                removed.append("table ip pyctr")
            for cmd in firewall_cleanup(self.nft, nft_ruleset()):
                if quiet([nft, *cmd]) and cmd[:2] == ["delete", "chain"]:
                    removed.append(f"chain {' '.join(cmd[2:])}")
            for cmd in empty_new_tables(self.nft, nft_ruleset()):
                if quiet([nft, *cmd]):
                    removed.append(f"table {' '.join(cmd[2:])}")
        for d in self.CNI_DIRS:
            if not self.dirs[d] and d.exists():
                shutil.rmtree(d, ignore_errors=True)
                removed.append(str(d))
                break  # the first is the parent of the second
        if not any(_running(name) for name in ("podman", "conmon")):
            for lock in self.LOCKS:
                if not self.dirs[lock] and lock.exists():
                    with contextlib.suppress(OSError):
                        lock.unlink()
                        removed.append(str(lock))
        made = [] if self.podman_cgroup else cgroup_parent_dirs(PODMAN_CGROUP_PARENT)
        for d in made:
            for child in [c for c in d.iterdir() if c.is_dir()]:  # conmon, libpod-ID
                with contextlib.suppress(OSError):
                    child.rmdir()
            try:
                d.rmdir()
            except OSError as err:
                notes.append(f"cgroup {d} not removed: {err.strerror}")
        if made and not cgroup_parent_dirs(PODMAN_CGROUP_PARENT):
            removed.append(f"podman's cgroup parent /{PODMAN_CGROUP_PARENT}")
        if self.forward and IP_FORWARD.read_text().strip() != self.forward:
            with contextlib.suppress(OSError):
                IP_FORWARD.write_text(self.forward + "\n")
                removed.append(f"net.ipv4.ip_forward back to {self.forward}")
        if removed:
            notes.append(
                "made on the host by this run (bridges' first starts, podman), removed: "
                + ", ".join(removed)
            )
        left = sorted((_links() - self.links) | {f"netns {n}" for n in _netns() - self.netns})
        if left:
            notes.append("left on the host: " + ", ".join(left))


def podman_bridge(backend: str) -> str:
    """The bridge of podman's default network (``podman``)."""
    if backend == "cni":
        for conf in sorted(Path("/etc/cni/net.d").glob("*.conflist")):
            try:
                data = json.loads(conf.read_text())
            except (OSError, ValueError):
                continue
            if data.get("name") == "podman":
                for plugin in data.get("plugins", []):
                    if plugin.get("type") == "bridge":
                        return str(plugin.get("bridge", "cni0"))
        return "cni-podman0"
    return "podman0"
