"""The /etc/hostname, /etc/hosts and /etc/resolv.conf the engine provides.

They are written into the container's directory and bind-mounted over the
rootfs's own files, as Docker does:

* ``--network none``: a hosts file with the loopback entries and
  ``127.0.1.1 <hostname>``, and a resolv.conf with the host's usable
  nameservers (loopback and IPv6 ones dropped, the systemd-resolved upstream
  file used when the host points at its stub resolver), empty if none is left;
* ``--network host``: copies of the host's /etc/hosts and /etc/resolv.conf.

``--add-host`` entries (``NAME:IP``) go after the loopback entries (after the
host's, with ``host``).  ``--dns``, ``--dns-search`` and ``--dns-option``
(:class:`DnsConfig`) each replace the matching part of the resolv.conf above,
as Docker builds it: ``search``, then ``nameserver`` lines, then ``options``
(``--dns-search .`` means no search line).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .mounts import Mount

__all__ = [
    "ETC_FILES",
    "DnsConfig",
    "engine_mounts",
    "hosts_content",
    "resolv_conf_content",
    "write_etc_files",
]

# (file name in the container directory, destination), in Docker's order.
ETC_FILES: tuple[tuple[str, str], ...] = (
    ("resolv.conf", "/etc/resolv.conf"),
    ("hostname", "/etc/hostname"),
    ("hosts", "/etc/hosts"),
)

HOST_HOSTS = "/etc/hosts"
HOST_RESOLV_CONF = "/etc/resolv.conf"
SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"

_LOOPBACK_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def _read_host_file(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return None


class DnsConfig:
    """``--dns`` servers, ``--dns-search`` domains and ``--dns-option`` options."""

    __slots__ = ("options", "search", "servers")

    def __init__(
        self, servers: Sequence[str] = (), search: Sequence[str] = (), options: Sequence[str] = ()
    ) -> None:
        self.servers = list(servers)
        self.search = list(search)
        self.options = list(options)

    def __bool__(self) -> bool:
        return bool(self.servers or self.search or self.options)


def _extra_lines(extra_hosts: Sequence[str]) -> str:
    """``NAME:IP`` entries as hosts lines (``IP\tNAME``, Docker's form)."""
    out = []
    for entry in extra_hosts:
        name, _, ip = entry.partition(":")
        out.append(f"{ip}\t{name}\n")
    return "".join(out)


def hosts_content(
    hostname: str,
    network: str,
    host_hosts: str | None = None,
    extra_hosts: Sequence[str] = (),
) -> str:
    """The container's /etc/hosts (``host_hosts``: the host's, for ``host``;
    ``extra_hosts``: ``--add-host``'s ``NAME:IP`` entries)."""
    extra = _extra_lines(extra_hosts)
    if network == "host" and host_hosts is not None:
        if host_hosts and not host_hosts.endswith("\n"):
            host_hosts += "\n"
        return host_hosts + extra
    names = hostname
    short = hostname.split(".", 1)[0]
    if short != hostname:
        names = f"{hostname} {short}"
    return f"{_LOOPBACK_HOSTS}{extra}127.0.1.1\t{names}\n"


def _nameservers(text: str) -> list[str]:
    servers = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            servers.append(fields[1])
    return servers


def resolv_conf_content(
    network: str,
    host_resolv: str | None,
    systemd_resolv: str | None = None,
    dns: DnsConfig | None = None,
) -> str:
    """The container's /etc/resolv.conf.

    ``host_resolv`` is the host's /etc/resolv.conf (None if missing) and
    ``systemd_resolv`` systemd-resolved's upstream file, used instead when the
    host's only nameserver is the 127.0.0.53 stub.  ``dns``: the ``--dns*``
    flags, which replace the matching parts.
    """
    if dns:
        return _with_overrides(resolv_conf_content(network, host_resolv, systemd_resolv), dns)
    if host_resolv is None:
        return ""
    if network == "host":
        return host_resolv
    source = host_resolv
    if systemd_resolv is not None and _nameservers(host_resolv) == ["127.0.0.53"]:
        source = systemd_resolv
    kept: list[str] = []
    nameservers = 0
    for line in source.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            # Loopback servers are unreachable from the container's network
            # namespace, and it has no IPv6 yet.
            if fields[1].startswith("127.") or ":" in fields[1]:
                continue
            nameservers += 1
            kept.append(f"nameserver {fields[1]}")
        elif fields[0] in ("search", "domain", "options"):
            kept.append(" ".join(fields))
    if not nameservers:
        return ""
    return "\n".join(kept) + "\n"


def _with_overrides(base: str, dns: DnsConfig) -> str:
    """Docker's ``resolvconf.Build``: the base file's servers, search domains
    and options, each replaced by the flags' when given."""
    servers = _nameservers(base)
    search: list[str] = []
    options: list[str] = []
    for line in base.splitlines():
        fields = line.split()
        if fields and fields[0] in ("search", "domain"):
            search = fields[1:]
        elif fields and fields[0] == "options":
            options += fields[1:]
    servers = dns.servers or servers
    search = dns.search or search
    options = dns.options or options
    lines = []
    if search and " ".join(search).strip() != ".":
        lines.append("search " + " ".join(search))
    lines += [f"nameserver {s}" for s in servers]
    if options:
        lines.append("options " + " ".join(options))
    return "".join(line + "\n" for line in lines)


def _write(path: str, content: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o644)
    try:
        os.fchmod(fd, 0o644)
        data = content.encode("utf-8", "surrogateescape")
        while data:
            written = os.write(fd, data)
            data = data[written:]
    finally:
        os.close(fd)


def write_etc_files(
    container_dir: str,
    hostname: str,
    network: str,
    *,
    dns: DnsConfig | None = None,
    extra_hosts: Sequence[str] = (),
) -> None:
    """Write hostname, hosts and resolv.conf into ``container_dir``
    (``dns``: the ``--dns*`` flags; ``extra_hosts``: ``--add-host``'s ``NAME:IP``)."""
    if network == "host":
        hosts = hosts_content(hostname, network, _read_host_file(HOST_HOSTS), extra_hosts)
        resolv = resolv_conf_content(network, _read_host_file(HOST_RESOLV_CONF), dns=dns)
    else:
        hosts = hosts_content(hostname, network, extra_hosts=extra_hosts)
        host_resolv = _read_host_file(HOST_RESOLV_CONF)
        systemd = None
        if host_resolv is not None and _nameservers(host_resolv) == ["127.0.0.53"]:
            systemd = _read_host_file(SYSTEMD_RESOLV_CONF)
        resolv = resolv_conf_content(network, host_resolv, systemd, dns)
    contents = {"hostname": hostname + "\n", "hosts": hosts, "resolv.conf": resolv}
    for name, _ in ETC_FILES:
        _write(os.path.join(container_dir, name), contents[name])


def engine_mounts(container_dir: str, read_only: bool = False) -> list[Mount]:
    """Bind mounts of the files :func:`write_etc_files` writes (read-only with
    ``--read-only``, like Docker)."""
    access = "ro" if read_only else "rw"
    return [
        {
            "destination": dest,
            "type": "bind",
            "source": os.path.join(container_dir, name),
            "options": ["rbind", "rprivate", access],
        }
        for name, dest in ETC_FILES
    ]
