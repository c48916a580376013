"""Typed surface of the Rust extension (rust/src/lib.rs).

The contract between Python and Rust is the OCI runtime spec: Python builds a
``config.json`` (as a JSON string), Rust executes it.  Every call that blocks or
does I/O releases the GIL.
"""

from collections.abc import Callable
from typing import TypedDict

__version__: str
#: Capability names indexed by their kernel bit number.
CAPABILITIES: tuple[str, ...]
SECCOMP_ARCHITECTURES: tuple[str, ...]
SECCOMP_ACTIONS: tuple[str, ...]
SECCOMP_OPERATORS: tuple[str, ...]
SECCOMP_FLAGS: tuple[str, ...]

class ContainerError(Exception):
    """A container could not be set up or started.

    ``step`` names what failed (``"pivot_root"``, ``"mount /proc"``,
    ``"execve"``, ``"lookup"``, ``"spec"``, ...), ``errno`` is the OS error number
    (0 when the failure is not an OS error) and ``path`` the path involved, if
    any.  ``str(err)`` is a one-line message such as
    ``"execve /bin/nope: No such file or directory"``.
    """

    step: str
    errno: int
    path: str | None

class Process:
    """A started container process (the container's PID 1 on the host)."""

    @property
    def pid(self) -> int: ...
    def wait(self) -> int:
        """Block until the process exits; return Docker's status: the exit code,
        or 128+N when it was killed by signal N.  Idempotent."""
    def poll(self) -> int | None:
        """The status if the process has exited, else None (never blocks)."""
    def kill(self, signal: int) -> None:
        """Send ``signal`` through a pidfd (never hits a recycled PID)."""

class Overlay(TypedDict, total=False):
    """An overlay rootfs the init mounts on ``root.path`` inside the
    container's own mount namespace (so it disappears with the container)."""

    lower: list[str]  # layer dirs, TOP-most first (overlayfs order); required
    upper: str  # the container's copy-on-write dir; required
    work: str  # overlay work dir on the same filesystem as upper; required
    volatile: bool  # skip syncs (for --rm containers); default False

def spawn(
    config: str,
    bundle: str,
    *,
    stdio: tuple[int, int, int] | None = None,
    overlay: Overlay | None = None,
) -> Process:
    """Create and start the container described by ``config`` (OCI config.json
    text) with ``root.path`` relative to ``bundle``.  Returns once the user
    program has been exec'd; raises ContainerError if any step before that
    failed (nothing is left behind then).  ``stdio`` are host fds to use as the
    container's 0/1/2 (default: inherit the caller's)."""

def run(
    config: str,
    bundle: str,
    *,
    stdin: bool = True,
    forward_signals: bool = False,
    overlay: Overlay | None = None,
    on_start: Callable[[int], None] | None = None,
    cgroup_procs: list[str] = ...,
) -> int:
    """Foreground run: spawn, then wait and return the Docker status.

    With ``process.terminal`` true in the config, a pty is allocated; the
    caller's stdin (if it is a terminal it is put in raw mode and restored) and
    stdout are relayed to it and the window size follows SIGWINCH.  Without a
    terminal, the container inherits the caller's stdio.  ``stdin=False`` gives
    the container /dev/null as stdin (Docker without ``-i``); with a terminal it
    means the caller's input is not relayed.  With
    ``forward_signals`` SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2
    received by the calling process are forwarded to the container; use it only
    from the main thread of a CLI.  ``on_start(pid)`` is called (with the GIL,
    briefly) with the container's host pid right after its program was exec'd,
    before waiting; if it raises, the container is killed and reaped and the
    exception propagates."""

def exec_process(
    config: str,
    *,
    cgroup_procs: list[str] = ...,
    stdio: tuple[int, int, int] | None = None,
    stdin: bool = True,
    forward_signals: bool = False,
    detach: bool = False,
) -> int | Process:
    """Start a process inside a running container (``docker exec``).

    ``config`` is a spec whose ``process`` is the process to start and whose
    ``linux.namespaces`` all carry paths (``/proc/<pid>/ns/<kind>``, the mount
    namespace among them).  The pid namespace is joined for the child by the
    caller's thread; the child runs pyctr-init from the sealed memfd (no host
    file is executed), which opens every namespace file, joins them (user
    first), then sets rlimits, a NEW pty from the container's /dev/ptmx when
    ``process.terminal``, umask, user, capabilities, no_new_privs and cwd, and
    execs.  The child is written into each ``cgroup_procs`` file before it
    gets its request.  Without a terminal the process gets its own session.

    Foreground (default): like :func:`run` (``stdin``, ``forward_signals``,
    pty relay) and returns the Docker status.  ``detach=True``: returns a
    :class:`Process` as soon as the program is exec'd.  ``stdio`` are host fds
    for 0/1/2 (default: the caller's; foreground with ``stdin=False``: stdin
    is /dev/null).  Raises ContainerError when the process cannot be started
    (``step == "execve"`` with ENOENT/EACCES for a missing or non-executable
    program)."""

def read_file_in_root(root: str, path: str, limit: int = 1048576) -> bytes | None:
    """Read ``path`` resolved inside ``root`` as if ``root`` were ``/``
    (symlinks cannot lead out of it).  None if it does not exist."""

def extract_layer(blob: str, dest: str, media_type: str = "") -> tuple[str, int]:
    """Extract one image layer (tar, gzip or zstd: from ``media_type`` or the
    blob's magic bytes) into the existing empty directory ``dest``.

    OCI whiteouts become overlayfs whiteouts (``.wh.NAME`` -> a 0:0 char
    device NAME; ``.wh..wh..opq`` -> ``trusted.overlay.opaque=y`` on the
    directory).  Every path is resolved inside ``dest``: an entry that would
    escape it (``..``, absolute names, writing through a symlink) fails the
    whole extraction with ContainerError(step="extract", path=<entry>).
    Returns ``("sha256:<hex of the uncompressed tar>", uncompressed_bytes)``,
    the layer's diff id, for checking against the image config.  Releases the
    GIL, so layers extract in parallel from threads.  On error ``dest`` is
    left partially filled: the caller removes it."""

class Supervised:
    """A container started under its own supervisor (``pyctr-supervise``),
    which is not a child of the caller and outlives it."""

    @property
    def pid(self) -> int:
        """The container's pid (its init) on the host."""
    @property
    def supervisor_pid(self) -> int: ...
    def wait(self, forward_signals: bool = False) -> int:
        """Attached only: block (GIL released) until the supervisor reports the
        container done for good (after restarts and ``--rm`` clean-up); return
        Docker's status.  With ``forward_signals`` SIGINT, SIGTERM, SIGHUP,
        SIGQUIT, SIGUSR1 and SIGUSR2 received meanwhile are sent to the
        container (through a pidfd) and SIGWINCH to the supervisor (which
        resizes the pty).  Raises ContainerError(step="supervisor") if the
        supervisor dies first, or if the container was started detached.
        Restores the caller's terminal if it was put in raw mode."""

def supervisor_binary(root: str) -> str:
    """Make sure ``<root>/bin/pyctr-supervise-<hash>`` (the embedded
    ``pyctr-init`` bytes; the name changes with the build) exists and return
    its path.  ``<root>/bin`` is created with mode 0700."""

def start_supervisor(root: str, cdir: str, *, attach: bool = False) -> Supervised:
    """Start the supervisor of the container in ``cdir`` (``config.json``,
    ``launch.json``: see docs/lifecycle.md) through a double fork and return
    once the container runs.

    Detached, the supervisor's stdio is /dev/null; attached, it shares the
    caller's 0, 1, 2, relays the container's output to them (and the caller's
    input with ``stdin_open``), and :meth:`Supervised.wait` gives the exit
    status.  Attached with a terminal and ``stdin_open``, the caller's terminal
    (if stdin is one) is in raw mode until ``wait`` returns or the object is
    dropped.  A container that cannot start raises ContainerError with the
    step, errno and path of the failure (``state.json`` then holds ``Error``
    and Docker's exit code: 127 command not found, 126 not executable, else
    125); the supervisor has exited then and the caller owns the clean-up."""

def cgroup_create(plan: str, resources: str = "") -> None:
    """Make the container's cgroup from ``plan`` (launch.json's ``cgroup``
    object as JSON) and write ``resources`` (an OCI ``linux.resources``
    object as JSON) before anything joins it.  On failure nothing made here
    is left; raises ContainerError (step, errno, path)."""

def cgroup_update(plan: str, resources: str) -> None:
    """Write ``resources`` into the existing group (``update``)."""

def cgroup_freeze(plan: str, frozen: bool) -> None:
    """Freeze or thaw the group and wait (10 s at most) until the kernel is done."""

def cgroup_remove(plan: str, prune_parent: bool = False) -> None:
    """Remove the group's directories (retried while busy for 2 s); with
    ``prune_parent`` also each one's parent when it is empty."""

def cgroup_v2_devices_attach(dir: str, rules: str, container: bool = False) -> None:
    """Test hook: attach the cgroup v2 device eBPF program for ``rules`` (an
    OCI ``linux.resources.devices`` list as JSON) to the cgroup2 directory
    ``dir``; with ``container`` the runtime's whole list (deny all,
    ``rules``, runc's default allow list).  Raises ContainerError (step
    ``devices``, errno, path)."""

# Networking over rtnetlink (rust/src/net.rs).  A network namespace is a
# path (``/proc/PID/ns/net``, ``/run/netns/NAME``) or a descriptor the caller
# keeps (an int).  Interface names are at most 15 bytes; a bad one raises
# ContainerError(step="interface name", errno=EINVAL, path=name).  Kernel
# refusals carry the request's step ("create bridge", "create veth", "add
# address", "add route", "set link up", "find bridge", "open netns",
# "setns net", ...), the errno and the link/address/namespace as ``path``.

class LinkInfo(TypedDict):
    index: int
    name: str
    kind: str | None  # "bridge", "veth", ...; None for lo and physical devices
    mtu: int
    up: bool  # IFF_UP
    master: int | None  # ifindex of the bridge it is attached to
    mac: str | None

class VethInfo(TypedDict):
    host: LinkInfo  # the host end (on the bridge, up)
    peer: LinkInfo  # the container end, as seen inside the namespace

def net_bridge_ensure(name: str, addr_cidr: str | None = None, mtu: int | None = None) -> int:
    """Make sure the bridge ``name`` exists and is up, with ``addr_cidr``
    (its gateway address, e.g. ``"10.89.0.1/24"``) among its addresses;
    return its ifindex.  Safe against concurrent callers.  ``mtu`` applies
    only when the bridge is created (with a fixed random MAC, so that its
    address does not follow its ports).  A non-bridge link of that name:
    ContainerError(step="ensure bridge", errno=EEXIST).  If it created the
    bridge and then fails, the bridge is deleted again."""

def net_veth_attach(
    bridge: str,
    host_name: str,
    netns: str | int,
    ifname: str = "eth0",
    addr_cidr: str | None = None,
    gateway: str | None = None,
    mac: str | None = None,
) -> VethInfo:
    """Plug ``netns`` into ``bridge``: a veth pair whose container end is
    created directly inside the namespace as ``ifname`` (it never appears on
    the host), both ends with the bridge's MTU; the host end ``host_name``
    attached to the bridge and up; inside the namespace ``lo`` up,
    ``addr_cidr`` on ``ifname``, ``ifname`` up and the default route via
    ``gateway``.  On failure the pair is deleted (nothing half-configured is
    left) and ContainerError is raised: EEXIST for a taken name, ENODEV
    (step "find bridge") for a missing bridge, ENOENT (step "open netns")
    for a missing namespace."""

def net_link_delete(name: str, netns: str | int | None = None) -> bool:
    """Delete the link ``name`` (in ``netns``, default: the caller's
    namespace); for a veth both ends go.  False if there was none."""

def net_links(netns: str | int | None = None) -> list[LinkInfo]:
    """Every link in ``netns`` (default: the caller's namespace)."""

def net_addrs(netns: str | int | None = None) -> list[tuple[int, str]]:
    """Every IPv4 address in ``netns`` as ``(ifindex, "a.b.c.d/prefix")``."""

def net_netns_create(path: str) -> None:
    """Make a new network namespace and bind-mount it onto ``path`` (created
    here; it must not exist), as ``ip netns add`` does.  A short-lived
    thread unshares it; the caller's namespaces never change.  On failure no
    file or mount is left."""

def net_netns_remove(path: str) -> bool:
    """Unmount (lazily) and unlink a namespace file made by
    :func:`net_netns_create`; False if there was none."""

def net_teardown(cdir: str, lazy: bool = False) -> None:
    """Undo ``<cdir>/network.json`` (pyctr_fast.network): delete the veth,
    remove the namespace file, release the address lease, then remove the
    record.  Idempotent; no record: nothing to do.  Every step is tried; the
    first failure is raised.  ``lazy``: the namespace file goes first and
    the veth pairs are left to the kernel, which destroys them with the
    namespace (asynchronously) once nothing else holds it."""

def net_teardown_endpoint(endpoint_json: str) -> None:
    """Undo one endpoint given in network.json's shape (its veth, its
    namespace file if it names one, its leases and its further
    ``endpoints``): a start that failed before the record was written, and
    ``network disconnect``."""
