"""Mounts: Docker's defaults, ``-v``, ``--tmpfs`` and how they combine.

Docker's rules (moby ``oci/defaults.go`` and ``daemon/oci_linux.go``):

* a user mount (volume, tmpfs, or the engine's /etc files) replaces the
  default mount at the same destination; a user mount on /dev also replaces
  every default under /dev/;
* user mounts come after the defaults, sorted so parents mount before children;
* ``--read-only`` adds ``ro`` to the default mounts other than /proc, /dev,
  /dev/pts, /dev/shm and /dev/mqueue;
* ``--privileged`` makes /sys read-write (unless the rootfs is read-only) and
  the cgroup mount read-write;
* binds get ``rbind``, ``ro``/``rw`` and a propagation mode (``rprivate`` by
  default); tmpfs mounts get ``noexec,nosuid,nodev`` unless overridden.
"""

from __future__ import annotations

import os
import posixpath

from .errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import TypedDict

    class Mount(TypedDict):
        destination: str
        type: str
        source: str
        options: list[str]


__all__ = [
    "MASKED_PATHS",
    "READONLY_PATHS",
    "assemble_mounts",
    "bind_mount",
    "clean_path",
    "default_mounts",
    "masked_paths",
    "merge_tmpfs_options",
    "parse_tmpfs",
    "parse_volume",
]

_DEFAULT_MOUNTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("/proc", "proc", "proc", ("nosuid", "noexec", "nodev")),
    ("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
    (
        "/dev/pts",
        "devpts",
        "devpts",
        ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
    ),
    ("/sys", "sysfs", "sysfs", ("nosuid", "noexec", "nodev", "ro")),
    # The native side turns this into cgroup2 or the v1 hierarchies.
    ("/sys/fs/cgroup", "cgroup", "cgroup", ("ro", "nosuid", "noexec", "nodev")),
    ("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
    ("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")),
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# Left writable by --read-only, as Docker does.
_KEEP_WRITABLE = frozenset(("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"))

_PROPAGATION = frozenset(("private", "rprivate", "shared", "rshared", "slave", "rslave"))

# Mount flags a tmpfs accepts, each with the key of the setting it controls
# (a later flag for the same key wins).
_TMPFS_FLAGS: dict[str, str] = {
    "ro": "rdonly",
    "rw": "rdonly",
    "suid": "suid",
    "nosuid": "suid",
    "dev": "dev",
    "nodev": "dev",
    "exec": "exec",
    "noexec": "exec",
    "sync": "sync",
    "async": "sync",
    "dirsync": "dirsync",
    "mand": "mand",
    "nomand": "mand",
    "atime": "atime",
    "noatime": "atime",
    "diratime": "diratime",
    "nodiratime": "diratime",
    "relatime": "relatime",
    "norelatime": "relatime",
    "strictatime": "strictatime",
    "nostrictatime": "strictatime",
    **{p: "propagation" for p in _PROPAGATION},
}
_TMPFS_DATA = frozenset(("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"))
_TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev", "rprivate")


def default_mounts() -> list[Mount]:
    """Docker's default mounts (fresh, mutable copies)."""
    return [
        {"destination": d, "type": t, "source": s, "options": list(o)}
        for d, t, s, o in _DEFAULT_MOUNTS
    ]


def masked_paths(cpu_dir: str = "/sys/devices/system/cpu") -> list[str]:
    """Docker's masked paths, plus each ``cpuN/thermal_throttle`` of the host."""
    paths = list(MASKED_PATHS)
    try:
        with os.scandir(cpu_dir) as it:
            cpus = [e.name for e in it if e.name.startswith("cpu") and e.name[3:].isdigit()]
    except OSError:
        return paths
    for name in sorted(cpus, key=lambda n: int(n[3:])):
        path = f"{cpu_dir}/{name}/thermal_throttle"
        if os.path.isdir(path):
            paths.append(f"/sys/devices/system/cpu/{name}/thermal_throttle")
    return paths


def clean_path(path: str) -> str:
    """Lexically clean an absolute or relative path (Go's ``filepath.Clean``)."""
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def _check_destination(dest: str) -> str:
    if not dest.startswith("/"):
        raise UserError(f"invalid mount path: '{dest}' mount path must be absolute")
    cleaned = clean_path(dest)
    if cleaned == "/":
        raise UserError("invalid specification: destination can't be '/'")
    return cleaned


def bind_mount(source: str, destination: str, mode: str = "") -> Mount:
    """A ``-v SRC:DST[:MODE]`` bind mount; SRC must be an existing absolute host path."""
    if not source.startswith("/"):
        raise UserError(
            f"invalid mount config for type \"bind\": source '{source}' must be an absolute "
            "host path (named volumes are not supported yet)"
        )
    try:
        dest = _check_destination(destination)
    except UserError as err:
        raise UserError(f'invalid mount config for type "bind": {err.message}') from None
    access = "rw"
    propagation = "rprivate"
    seen_access = seen_propagation = False
    for item in mode.split(",") if mode else ():
        if item in ("ro", "rw") and not seen_access:
            access, seen_access = item, True
        elif item in _PROPAGATION and not seen_propagation:
            propagation, seen_propagation = item, True
        else:
            raise UserError(f"invalid mode: {mode}")
    src = clean_path(source)
    if not os.path.exists(src):
        raise UserError(
            f'invalid mount config for type "bind": bind source path does not exist: {src}'
        )
    return {
        "destination": dest,
        "type": "bind",
        "source": src,
        "options": ["rbind", access, propagation],
    }


def parse_volume(spec: str) -> Mount:
    """``-v SRC:DST[:MODE]`` (MODE: ``ro``/``rw`` and/or a propagation, comma-separated)."""
    parts = spec.split(":")
    if len(parts) == 1 and parts[0]:
        raise UserError(
            f"invalid volume specification: '{spec}': anonymous volumes are not supported "
            "yet, use SRC:DST"
        )
    if len(parts) not in (2, 3) or not all(parts):
        raise UserError(f"invalid volume specification: '{spec}'")
    try:
        return bind_mount(parts[0], parts[1], parts[2] if len(parts) == 3 else "")
    except UserError as err:
        raise UserError(f"invalid volume specification: '{spec}': {err.message}") from None


def merge_tmpfs_options(options: Iterable[str]) -> list[str]:
    """Merge tmpfs options, a later one overriding an earlier one for the same setting."""
    items = list(options)
    seen: set[str] = set()
    merged: list[str] = []
    for option in reversed(items):
        if option in ("", "defaults"):
            continue
        key = _TMPFS_FLAGS.get(option)
        if key is None:
            name, sep, _ = option.partition("=")
            if not sep or name not in _TMPFS_DATA:
                raise UserError(f'invalid tmpfs option "{option}"')
            key = "=" + name
        if key not in seen:
            seen.add(key)
            merged.append(option)
    merged.reverse()
    return merged


def parse_tmpfs(spec: str) -> Mount:
    """``--tmpfs DST[:OPTIONS]``."""
    dest, _, options = spec.partition(":")
    cleaned = _check_destination(dest)
    extra = options.split(",") if options else []
    return {
        "destination": cleaned,
        "type": "tmpfs",
        "source": "tmpfs",
        "options": merge_tmpfs_options([*_TMPFS_DEFAULTS, *extra]),
    }


def _depth(mount: Mount) -> int:
    return len(mount["destination"].rstrip("/").split("/"))


def assemble_mounts(
    user_mounts: Iterable[Mount],
    engine_mounts: Iterable[Mount] = (),
    *,
    read_only: bool = False,
    privileged: bool = False,
) -> list[Mount]:
    """The spec's mount list: defaults not overridden, then the user's mounts and
    the engine's (/etc files, skipped where the user mounted something), by depth."""
    mine = list(user_mounts)
    taken: set[str] = set()
    for m in mine:
        if m["destination"] in taken:
            raise UserError(f"duplicate mount point: {m['destination']}")
        taken.add(m["destination"])
    mine.extend(m for m in engine_mounts if m["destination"] not in taken)
    taken.update(m["destination"] for m in mine)

    over_dev = "/dev" in taken
    defaults = [
        m
        for m in default_mounts()
        if m["destination"] not in taken and not (over_dev and m["destination"].startswith("/dev/"))
    ]
    for m in defaults:
        opts = m["options"]
        if read_only and m["destination"] not in _KEEP_WRITABLE and "ro" not in opts:
            opts.append("ro")
        if privileged and (m["type"] == "cgroup" or (m["destination"] == "/sys" and not read_only)):
            m["options"] = [o for o in opts if o != "ro"]
    mine.sort(key=_depth)
    return defaults + mine
