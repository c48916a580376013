"""The redis test image, built from files on this machine (no Docker Hub).

Nothing here is a test.  :func:`build_redis_layout` writes an OCI image layout
with two layers:

1. the busybox rootfs of the other tests (:func:`ctrkit.build_busybox_rootfs`);
2. Debian's redis binaries (package ``redis-tools``, installed by .ci/setup):
   ``/usr/bin/redis-check-rdb`` is redis's multi-call binary, which runs as the
   server when ``argv[0]`` is ``redis-server`` (Debian's ``redis-server``
   package ships that name as a symlink to it: so does this image), and
   ``/usr/bin/redis-cli``; every shared library ``ldd`` lists for them,
   dynamic loader included, at the paths the loader looks for them (a
   merged-/usr tree: ``/lib`` → ``usr/lib``, ``/lib64`` → ``usr/lib64``); a
   ``redis`` user (uid and gid 999, as in the official image) owning ``/data``;
   a ``docker-entrypoint.sh`` in the official image's spirit.

The image config follows the official image: ``Entrypoint
["docker-entrypoint.sh"]``, ``Cmd ["redis-server"]``, ``WorkingDir /data``,
``ExposedPorts 6379/tcp``, but with ``User redis`` instead of the official
entrypoint's gosu step (busybox cannot change uid), and without declaring
``/data`` a volume, so that what redis and ``exec`` write there lands in the
container's upper dir (the seed scenario checks it).  The entrypoint turns
protected mode off, as the official image's patched default does.

:func:`push_redis` pushes the layout to a registry with skopeo
(:func:`registry_kit.skopeo_push`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import ctrkit
import imagekit
import registry_kit as kit

#: redis's multi-call binary (server, check-rdb, check-aof) in Debian's redis-tools.
REDIS_MULTI = Path("/usr/bin/redis-check-rdb")
REDIS_CLI = Path("/usr/bin/redis-cli")
REDIS_UID = 999
REDIS_REPO = "test/redis"
REDIS_TAG = "7"
#: What the server logs once it listens (redis 7: "Ready to accept connections tcp").
READY_LINE = "Ready to accept connections"

ENTRYPOINT = """\
#!/bin/sh
set -e
# The official image's rules: a first argument that is an option or a .conf
# file means "redis-server with these arguments".
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
\tset -- redis-server "$@"
fi
# The official image builds redis with protected mode off by default.
if [ "$1" = "redis-server" ]; then
\tshift
\tset -- redis-server --protected-mode no "$@"
fi
exec "$@"
"""

CONFIG = {
    "Entrypoint": ["docker-entrypoint.sh"],
    "Cmd": ["redis-server"],
    "User": "redis",
    "WorkingDir": "/data",
    "Env": [f"PATH={ctrkit.DOCKER_PATH}", "REDIS_VERSION=debian-redis-tools"],
    "ExposedPorts": {"6379/tcp": {}},
}


def missing_tools() -> list[str]:
    """What this machine lacks to build and push the image ("" when nothing)."""
    needed = [str(REDIS_MULTI), str(REDIS_CLI), "skopeo", "ldd", kit.DOCKER_REGISTRY]
    return [p for p in needed if shutil.which(p) is None and not os.path.exists(p)]


_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")


def shared_libraries(binaries: list[Path]) -> list[str]:
    """Every library (and the dynamic loader) ``ldd`` lists for ``binaries``, as
    the absolute paths the loader opens, sorted, without duplicates."""
    found: set[str] = set()
    for binary in binaries:
        out = subprocess.run(
            ["ldd", str(binary)], check=True, capture_output=True, text=True, timeout=30
        ).stdout
        for line in out.splitlines():
            if "not found" in line:
                raise RuntimeError(f"{binary}: a library is missing on this host: {line.strip()}")
            m = _LDD_LINE.match(line)
            if m:
                found.add(m.group(1))
    if not any("ld-linux" in p for p in found):
        raise RuntimeError(f"ldd listed no dynamic loader for {binaries}")
    return sorted(found)


def _canonical_dir(path: str) -> str:
    """``path`` with its directory resolved (``/lib/x.so`` → ``usr/lib/x.so`` on a
    merged-/usr host) and the leading ``/`` dropped, the file name kept."""
    directory, name = os.path.split(path)
    return os.path.join(os.path.realpath(directory), name).lstrip("/")


def redis_layer() -> bytes:
    """The second layer: binaries, libraries, users, /data, the entrypoint."""
    m = kit.member
    entries = [
        m("usr", kind=tarfile.DIRTYPE, mode=0o755),
        m("usr/bin", kind=tarfile.DIRTYPE, mode=0o755),
        m("usr/local", kind=tarfile.DIRTYPE, mode=0o755),
        m("usr/local/bin", kind=tarfile.DIRTYPE, mode=0o755),
        m("usr/lib", kind=tarfile.DIRTYPE, mode=0o755),
        m("usr/lib64", kind=tarfile.DIRTYPE, mode=0o755),
        m("lib", kind=tarfile.SYMTYPE, link="usr/lib", mode=0o777),
        m("lib64", kind=tarfile.SYMTYPE, link="usr/lib64", mode=0o777),
        m("usr/bin/redis-check-rdb", REDIS_MULTI.read_bytes(), mode=0o755),
        m("usr/bin/redis-server", kind=tarfile.SYMTYPE, link="redis-check-rdb", mode=0o777),
        m("usr/bin/redis-check-aof", kind=tarfile.SYMTYPE, link="redis-check-rdb", mode=0o777),
        m("usr/bin/redis-cli", REDIS_CLI.read_bytes(), mode=0o755),
        m("usr/local/bin/docker-entrypoint.sh", ENTRYPOINT.encode(), mode=0o755),
        m("etc", kind=tarfile.DIRTYPE, mode=0o755),
        m(
            "etc/passwd",
            (ctrkit.PASSWD + f"redis:x:{REDIS_UID}:{REDIS_UID}::/home/redis:/bin/sh\n").encode(),
        ),
        m("etc/group", (ctrkit.GROUP + f"redis:x:{REDIS_UID}:\n").encode()),
        m("data", kind=tarfile.DIRTYPE, mode=0o755, uid=REDIS_UID, gid=REDIS_UID),
    ]
    dirs = {"usr/lib", "usr/lib64"}
    for lib in shared_libraries([REDIS_MULTI, REDIS_CLI]):
        target = _canonical_dir(lib)
        parent = os.path.dirname(target)
        missing = []
        while parent and parent not in dirs:
            missing.append(parent)
            parent = os.path.dirname(parent)
        for d in reversed(missing):
            entries.append(m(d, kind=tarfile.DIRTYPE, mode=0o755))
            dirs.add(d)
        # The file's content under the name the loader asks for (soname links resolved).
        entries.append(m(target, Path(os.path.realpath(lib)).read_bytes(), mode=0o755))
    return kit.tar_layer(entries)


def build_redis_layout(workdir: Path) -> tuple[kit.OCILayout, kit.BuiltImage]:
    """An OCI layout under ``workdir`` holding the redis image, tagged ``redis``."""
    layout = kit.OCILayout(workdir / "oci-layout")
    base = imagekit.busybox_layer(workdir)
    image = layout.add_image([base, redis_layer()], config=dict(CONFIG))
    layout.tag_image("redis", image)
    return layout, image


def push_redis(workdir: Path, registry: kit.Registry) -> tuple[str, kit.BuiltImage]:
    """Build the image and push it to ``registry``; returns (reference, image)."""
    layout, image = build_redis_layout(workdir)
    ref = f"{REDIS_REPO}:{REDIS_TAG}"
    kit.skopeo_push(layout.dir, "redis", registry, ref)
    return f"{registry.host}/{ref}", image
