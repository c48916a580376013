"""Outbound NAT (masquerade) and IP forwarding for the bridge network.

nftables first (what current distributions use): everything lives in a
table of our own, ``table ip pyctr``, so no rule of anybody else's is ever
read, changed or flushed::

    table ip pyctr {
        chain postrouting { type nat hook postrouting priority srcnat; policy accept;
            jump masq-pyctr0 }
        chain masq-pyctr0 { ip saddr 10.77.0.0/24 ip daddr != 10.77.0.0/24 masquerade
                            ip saddr 10.77.0.0/24 ip daddr 10.77.0.0/24 ct status dnat masquerade }
    }

The script is idempotent (``add`` does not fail on what exists; our own
chains are flushed and refilled), so concurrent first starts are harmless.
Only when ``nft`` is missing, iptables is used the same way: a chain of our
own, ``PYCTR-POSTROUTING`` in the ``nat`` table, jumped to once from
``POSTROUTING``.

This does not open the host's firewall: a host whose own rules drop
forwarded traffic (Docker's ``FORWARD`` policy DROP) needs an accept for the
bridge in *its* table, which we never touch.
"""

from __future__ import annotations

import os

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "TABLE",
    "NatError",
    "enable_forwarding",
    "ensure_masquerade",
    "find_tool",
    "forget_bridge",
    "remove",
    "run_script",
]

TABLE = "pyctr"
IPTABLES_CHAIN = "PYCTR-POSTROUTING"
_FORWARD = "/proc/sys/net/ipv4/ip_forward"
_SEARCH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


class NatError(UserError):
    """The NAT rules or IP forwarding could not be set up."""


def find_tool(name: str) -> str | None:
    """``name`` in $PATH or the usual sbin directories (shutil costs an import)."""
    for d in (*os.environ.get("PATH", "").split(os.pathsep), *_SEARCH):
        path = os.path.join(d or ".", name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


def enable_forwarding() -> None:
    """``net.ipv4.ip_forward = 1`` (left on afterwards, as Docker does)."""
    try:
        with open(_FORWARD, "rb") as f:
            if f.read().strip() == b"1":
                return
        with open(_FORWARD, "wb") as f:
            f.write(b"1\n")
    except OSError as err:
        raise NatError(f"cannot enable IP forwarding ({_FORWARD}): {err.strerror or err}") from None


def _route_localnet(bridge: str) -> None:
    """Let DNAT'd connections from 127.0.0.1 leave through the bridge
    (pyctr_fast.ports; the localnet-guard chain drops the rest)."""
    path = f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet"
    try:
        with open(path, "wb") as f:
            f.write(b"1\n")
    except OSError as err:
        raise NatError(f"cannot set {path}: {err.strerror or err}") from None


def run_script(script: str) -> None:
    """Feed ``script`` to ``nft -f -`` (NatError when nft is missing or fails)."""
    nft = find_tool("nft")
    if nft is None:
        raise NatError("port publishing needs nftables (nft), which is not installed")
    _run([nft, "-f", "-"], script)


def _run(argv: list[str], stdin: str | None = None) -> None:
    import subprocess

    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NatError(f"{argv[0]}: {err}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise NatError(
            f"{os.path.basename(argv[0])} failed: {detail[0] if detail else done.returncode}"
        )


def nft_script(bridges: Mapping[str, str]) -> str:
    """The masquerade part of the table for every ``{bridge: subnet}``: a
    chain ``masq-<bridge>`` each, jumped to from ``postrouting``."""
    lines = [
        f"add table ip {TABLE}",
        f"add chain ip {TABLE} postrouting "
        "{ type nat hook postrouting priority srcnat; policy accept; }",
        f"flush chain ip {TABLE} postrouting",
    ]
    for bridge, subnet in sorted(bridges.items()):
        chain = f"masq-{bridge}"
        lines += [
            f"add chain ip {TABLE} {chain}",
            f"flush chain ip {TABLE} {chain}",
            f"add rule ip {TABLE} postrouting jump {chain}",
            f"add rule ip {TABLE} {chain} ip saddr {subnet} ip daddr != {subnet} masquerade",
            # Hairpin: a container reaching a published port through a host
            # address lands on its own subnet after DNAT; without this the
            # target would answer it directly, from an address it never
            # called.
            f"add rule ip {TABLE} {chain} ip saddr {subnet} ip daddr {subnet} "
            "ct status dnat masquerade",
        ]
    return "\n".join(lines) + "\n"


def isolation_script(bridges: Sequence[str]) -> str:
    """Networks do not reach each other (Docker's ``DOCKER-ISOLATION``): a
    packet from one of our bridges to another is dropped, unless it belongs
    to a connection DNAT'd to a published port (a container may use another
    network's published service through a host address, as the host can).
    A container connected to both networks talks on each directly."""
    t = f"ip {TABLE}"
    lines = [
        f"add chain {t} isolate {{ type filter hook forward priority filter; policy accept; }}",
        f"add set {t} bridges {{ type ifname; }}",
        f"flush chain {t} isolate",
        f"flush set {t} bridges",
    ]
    if bridges:
        names = ", ".join(f'"{b}"' for b in bridges)
        lines.append(f"add element {t} bridges {{ {names} }}")
    for bridge in bridges:
        lines.append(
            f'add rule {t} isolate iifname "{bridge}" oifname != "{bridge}" '
            "oifname @bridges ct status and dnat == 0 drop"
        )
    return "\n".join(lines) + "\n"


def _iptables(tool: str, subnets: list[str]) -> None:
    import subprocess

    def ok(*args: str) -> bool:
        return subprocess.run([tool, "-w", "-t", "nat", *args], capture_output=True).returncode == 0

    if not ok("-S", IPTABLES_CHAIN):
        _run([tool, "-w", "-t", "nat", "-N", IPTABLES_CHAIN])
    _run([tool, "-w", "-t", "nat", "-F", IPTABLES_CHAIN])
    for subnet in subnets:
        rule = ["-s", subnet, "!", "-d", subnet, "-j", "MASQUERADE"]
        _run([tool, "-w", "-t", "nat", "-A", IPTABLES_CHAIN, *rule])
    if not ok("-C", "POSTROUTING", "-j", IPTABLES_CHAIN):
        _run([tool, "-w", "-t", "nat", "-A", "POSTROUTING", "-j", IPTABLES_CHAIN])


def _markers(rundir: str) -> dict[str, str]:
    """``{bridge: subnet}`` of every bridge with rules (``<bridge>.nat``
    files); markers of bridges that no longer exist are dropped."""
    d = os.path.join(rundir, "networks")
    out: dict[str, str] = {}
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for fname in names:
        if not fname.endswith(".nat"):
            continue
        bridge = fname[: -len(".nat")]
        path = os.path.join(d, fname)
        if not os.path.exists(f"/sys/class/net/{bridge}"):
            try:
                os.unlink(path)
            except OSError:
                pass
            continue
        try:
            with open(path, encoding="ascii") as f:
                out[bridge] = f.read().strip()
        except OSError:
            continue
    return out


def _apply(bridges: Mapping[str, str], gone: tuple[str, ...] = ()) -> str:
    """Write the rules for ``bridges`` (and delete ``gone``'s chains);
    returns the tool used."""
    nft = find_tool("nft")
    if nft is not None:
        from .ports import setup_script

        script = nft_script(bridges) + setup_script(sorted(bridges))
        script += isolation_script(sorted(bridges))
        for bridge in gone:
            script += (
                f"delete chain ip {TABLE} masq-{bridge}\n"
                f"delete chain ip {TABLE} masq-local-{bridge}\n"
            )
        _run([nft, "-f", "-"], script)
        return "nft"
    iptables = find_tool("iptables")
    if iptables is not None:
        _iptables(iptables, sorted(set(bridges.values())))
        return "iptables"
    raise NatError("neither nft nor iptables is installed: the bridge network needs one for NAT")


def ensure_masquerade(rundir: str, bridge: str, subnet: str) -> str:
    """IP forwarding on and ``subnet`` masqueraded when it leaves through
    anything but ``bridge``, beside every other bridge's rules (all of them
    are rewritten under one lock, so concurrent first starts of different
    networks cannot drop each other's jumps); returns the tool used."""
    from .filelock import FileLock

    enable_forwarding()
    d = os.path.join(rundir, "networks")
    os.makedirs(d, mode=0o700, exist_ok=True)
    with FileLock(os.path.join(d, "nat.lock")):
        marker = os.path.join(d, f"{bridge}.nat")
        tmp = f"{marker}.tmp.{os.getpid()}"
        try:
            with open(tmp, "w", encoding="ascii") as f:
                f.write(subnet + "\n")
            os.replace(tmp, marker)
        except OSError as err:
            raise NatError(f"cannot write {marker}: {err.strerror or err}") from None
        tool = _apply(_markers(rundir))
        if tool == "nft":
            _route_localnet(bridge)
        return tool


def forget_bridge(rundir: str, bridge: str) -> None:
    """Drop ``bridge``'s rules (``network rm``); the others' stay."""
    from .filelock import FileLock

    d = os.path.join(rundir, "networks")
    if not os.path.isdir(d):
        return
    with FileLock(os.path.join(d, "nat.lock")):
        try:
            os.unlink(os.path.join(d, f"{bridge}.nat"))
        except FileNotFoundError:
            pass
        bridges = _markers(rundir)
        bridges.pop(bridge, None)
        try:
            _apply(bridges, gone=(bridge,))
        except NatError:
            _apply(bridges)  # its chains were never made (or are gone already)


def remove() -> None:
    """Delete our table (or our iptables chain); nothing else is touched."""
    import subprocess

    nft = find_tool("nft")
    if nft is not None:
        subprocess.run([nft, "delete", "table", "ip", TABLE], capture_output=True)
        return
    tool = find_tool("iptables")
    if tool is not None:
        base = [tool, "-w", "-t", "nat"]
        subprocess.run([*base, "-D", "POSTROUTING", "-j", IPTABLES_CHAIN], capture_output=True)
        subprocess.run([*base, "-F", IPTABLES_CHAIN], capture_output=True)
        subprocess.run([*base, "-X", IPTABLES_CHAIN], capture_output=True)
